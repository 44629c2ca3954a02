#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Read and patch the metadata of a qcow2 image, to make broken images.

Start from a good image made by qemu-img and patch header fields, table
entries or header extensions in place (big-endian, offsets per QEMU's
docs/interop/qcow2.txt).

    qcow2-break.py IMAGE info
        Print the header fields and a few derived values as NAME=VALUE
        lines (eval-able by a shell).
    qcow2-break.py IMAGE get EXPR
        Print the value of EXPR (see below), in decimal.
    qcow2-break.py IMAGE header FIELD EXPR
        Set header FIELD to EXPR.
    qcow2-break.py IMAGE l1 INDEX EXPR
        Set entry INDEX of the active L1 table.
    qcow2-break.py IMAGE reftable INDEX EXPR
        Set entry INDEX of the refcount table.
    qcow2-break.py IMAGE l2 GUEST_OFFSET EXPR
        Set the L2 entry that maps byte GUEST_OFFSET (its first word, the
        one with the host offset and the flags).
    qcow2-break.py IMAGE l2bitmap GUEST_OFFSET EXPR
        Set the subcluster bitmap of that entry (extended L2 images).
    qcow2-break.py IMAGE ext TYPE DATA [--length N]
        Add a header extension of TYPE (e.g. 0x0537be77, crypto) holding
        DATA (hex digits, "" for none) before the end-of-extensions
        marker, keeping the backing file name after them.  With
        --length N the extension says it holds N bytes whatever DATA is.
    qcow2-break.py IMAGE batch SPECFILE
        Make many broken copies of IMAGE in one run (python starts slowly
        in a TCG guest): each line of SPECFILE ("-": stdin) is
        "COPY COMMAND ARGS... [; COMMAND ARGS...]...", shell-quoted; COPY
        is written as a copy of IMAGE with the commands (any of the above
        but info, get and batch) applied in order.  Blank lines and lines
        starting with # are skipped.

EXPR is a Python expression over these names:
    the header fields (magic, version, backing_file_offset,
    backing_file_size, cluster_bits, size, crypt_method, l1_size,
    l1_table_offset, refcount_table_offset, refcount_table_clusters,
    nb_snapshots, snapshots_offset, incompatible_features,
    compatible_features, autoclear_features, refcount_order, header_length,
    compression_type; v3 fields read as 0 in a v2 image),
    cluster_size, file_size (bytes of IMAGE), file_end (file_size rounded
    up to a cluster), l2_entries (entries per L2 table),
    cur (the value being replaced), l1[i], reftable[i], l2(guest_offset),
    COPIED (1 << 63), COMPRESSED (1 << 62), ZERO (1), OFFSET_MASK.
Integers may be written in hex (0x...).  Examples:

    qcow2-break.py a.img header magic 0x12345678
    qcow2-break.py a.img header incompatible_features 'cur | 1 << 5'
    qcow2-break.py a.img header l1_table_offset refcount_table_offset
    qcow2-break.py a.img l1 0 'cur + 512'
    qcow2-break.py a.img l2 0 'COPIED | file_end + 16 * cluster_size'

Exit status 0 on success, 1 on a bad image or argument.
"""

import argparse
import os
import shlex
import shutil
import struct
import sys

# name: (offset, struct format); v3 fields start at 72.
FIELDS = {
    "magic": (0, ">I"),
    "version": (4, ">I"),
    "backing_file_offset": (8, ">Q"),
    "backing_file_size": (16, ">I"),
    "cluster_bits": (20, ">I"),
    "size": (24, ">Q"),
    "crypt_method": (32, ">I"),
    "l1_size": (36, ">I"),
    "l1_table_offset": (40, ">Q"),
    "refcount_table_offset": (48, ">Q"),
    "refcount_table_clusters": (56, ">I"),
    "nb_snapshots": (60, ">I"),
    "snapshots_offset": (64, ">Q"),
    "incompatible_features": (72, ">Q"),
    "compatible_features": (80, ">Q"),
    "autoclear_features": (88, ">Q"),
    "refcount_order": (96, ">I"),
    "header_length": (100, ">I"),
    "compression_type": (104, ">B"),
}
V2_HEADER_LEN = 72
COPIED = 1 << 63
COMPRESSED = 1 << 62
ZERO = 1
OFFSET_MASK = 0x00FFFFFFFFFFFE00
MAX_TABLE_READ = 64 << 20   # refuse to read absurd tables from a broken image


class Image:
    def __init__(self, path):
        self.path = path
        self.f = open(path, "r+b")
        self.file_size = os.fstat(self.f.fileno()).st_size
        head = self.pread(0, 112)
        if len(head) < V2_HEADER_LEN:
            raise ValueError("%s: too short for a qcow2 header" % path)
        self.h = {}
        for name, (off, fmt) in FIELDS.items():
            size = struct.calcsize(fmt)
            if off >= V2_HEADER_LEN and not self.is_v3(head):
                self.h[name] = 0
            elif off + size <= len(head):
                self.h[name] = struct.unpack_from(fmt, head, off)[0]
            else:
                self.h[name] = 0
        if not 9 <= self.h["cluster_bits"] <= 30:
            raise ValueError("cluster_bits %d: patch a good image" % self.h["cluster_bits"])
        self.cluster_size = 1 << self.h["cluster_bits"]
        self.extended_l2 = bool(self.h["incompatible_features"] & (1 << 4))
        self.l2_entry_bytes = 16 if self.extended_l2 else 8
        self.l2_entries = self.cluster_size // self.l2_entry_bytes

    @staticmethod
    def is_v3(head):
        return struct.unpack_from(">I", head, 4)[0] >= 3

    def pread(self, off, n):
        self.f.seek(off)
        return self.f.read(n)

    def pwrite(self, off, data):
        self.f.seek(off)
        self.f.write(data)

    def table(self, off, n):
        n = min(n, MAX_TABLE_READ // 8)
        raw = self.pread(off, n * 8)
        raw += bytes(n * 8 - len(raw))
        return list(struct.unpack(">%dQ" % n, raw))

    def l1(self):
        return self.table(self.h["l1_table_offset"], self.h["l1_size"])

    def reftable(self):
        n = self.h["refcount_table_clusters"] * self.cluster_size // 8
        return self.table(self.h["refcount_table_offset"], n)

    def l2_entry_pos(self, guest):
        """Byte offset in the file of the L2 entry that maps guest."""
        idx1 = guest // (self.cluster_size * self.l2_entries)
        l1 = self.l1()
        if idx1 >= len(l1):
            raise ValueError("guest offset %d is past the L1 table" % guest)
        l2 = l1[idx1] & OFFSET_MASK
        if not l2:
            raise ValueError("guest offset %d: no L2 table (L1[%d] = 0)" % (guest, idx1))
        idx2 = (guest // self.cluster_size) % self.l2_entries
        return l2 + idx2 * self.l2_entry_bytes

    def l2(self, guest):
        return struct.unpack(">Q", self.pread(self.l2_entry_pos(guest), 8))[0]

    def names(self, cur=0):
        n = dict(self.h)
        n.update(
            cluster_size=self.cluster_size,
            file_size=self.file_size,
            file_end=-(-self.file_size // self.cluster_size) * self.cluster_size,
            l2_entries=self.l2_entries,
            cur=cur,
            l1=self.l1(),
            reftable=self.reftable(),
            l2=self.l2,
            COPIED=COPIED,
            COMPRESSED=COMPRESSED,
            ZERO=ZERO,
            OFFSET_MASK=OFFSET_MASK,
        )
        return n

    def eval(self, expr, cur=0):
        v = eval(expr, {"__builtins__": {}}, self.names(cur))  # noqa: S307
        if not isinstance(v, int):
            raise ValueError("%r is not an integer" % expr)
        return v


def pack(fmt, v, what):
    bits = struct.calcsize(fmt) * 8
    if not 0 <= v < 1 << bits:
        raise ValueError("%s: %d does not fit in %d bits" % (what, v, bits))
    return struct.pack(fmt, v)


def parser():
    p = argparse.ArgumentParser(
        prog="qcow2-break.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("image")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("info")
    g = sub.add_parser("get")
    g.add_argument("expr")
    h = sub.add_parser("header")
    h.add_argument("field", choices=FIELDS)
    h.add_argument("expr")
    for name in ("l1", "reftable"):
        t = sub.add_parser(name)
        t.add_argument("index", type=lambda s: int(s, 0))
        t.add_argument("expr")
    for name in ("l2", "l2bitmap"):
        t = sub.add_parser(name)
        t.add_argument("guest_offset", type=lambda s: int(s, 0))
        t.add_argument("expr")
    e = sub.add_parser("ext")
    e.add_argument("type", type=lambda s: int(s, 0))
    e.add_argument("data")
    e.add_argument("--length", type=lambda s: int(s, 0))
    b = sub.add_parser("batch")
    b.add_argument("specfile")
    return p


def patch(img, a):
    """Apply one patching command (parsed arguments @a) to @img."""
    if a.cmd == "header":
        off, fmt = FIELDS[a.field]
        if off >= V2_HEADER_LEN and img.h["version"] < 3:
            raise ValueError("%s is not in a version %d header" % (a.field, img.h["version"]))
        v = img.eval(a.expr, img.h[a.field])
        img.pwrite(off, pack(fmt, v, a.field))
        img.h[a.field] = v
    elif a.cmd in ("l1", "reftable"):
        base = img.h["l1_table_offset" if a.cmd == "l1" else "refcount_table_offset"]
        n = img.h["l1_size"] if a.cmd == "l1" else len(img.reftable())
        if not 0 <= a.index < n:
            raise ValueError("%s index %d not in 0..%d" % (a.cmd, a.index, n - 1))
        pos = base + 8 * a.index
        cur = struct.unpack(">Q", img.pread(pos, 8))[0]
        img.pwrite(pos, pack(">Q", img.eval(a.expr, cur), a.cmd))
    elif a.cmd in ("l2", "l2bitmap"):
        pos = img.l2_entry_pos(a.guest_offset)
        if a.cmd == "l2bitmap":
            if not img.extended_l2:
                raise ValueError("no subcluster bitmaps: not an extended L2 image")
            pos += 8
        cur = struct.unpack(">Q", img.pread(pos, 8))[0]
        img.pwrite(pos, pack(">Q", img.eval(a.expr, cur), a.cmd))
    elif a.cmd == "ext":
        add_extension(img, a.type, bytes.fromhex(a.data), a.length)
    else:
        raise ValueError("%s: not a patching command" % a.cmd)


def add_extension(img, etype, data, length):
    """Insert a header extension before the end marker (qcow2.txt, "Header
    extensions"): type, length, data padded to 8 bytes."""
    start = img.h["header_length"] if img.h["version"] >= 3 else V2_HEADER_LEN
    bfo, bfs = img.h["backing_file_offset"], img.h["backing_file_size"]
    end = bfo if bfo else img.cluster_size
    head = img.pread(0, img.cluster_size)
    off = start
    while off + 8 <= end:
        t, n = struct.unpack_from(">II", head, off)
        if t == 0:
            break
        off += 8 + (n + 7) // 8 * 8
    new = struct.pack(">II", etype, len(data) if length is None else length)
    new += data + bytes(-len(data) % 8)
    name = head[bfo:bfo + bfs] if bfo else b""
    if off + len(new) + 8 + len(name) > img.cluster_size:
        raise ValueError("no room for the extension in the header cluster")
    img.pwrite(off, new + bytes(8))
    if bfo:
        bfo = off + len(new) + 8
        img.pwrite(bfo, name)
        img.pwrite(FIELDS["backing_file_offset"][0], struct.pack(">Q", bfo))
        img.h["backing_file_offset"] = bfo


def batch(p, image, specfile):
    f = sys.stdin if specfile == "-" else open(specfile)
    for n, line in enumerate(f, 1):
        words = shlex.split(line, comments=True)
        if not words:
            continue
        out, words = words[0], words[1:]
        shutil.copyfile(image, out)
        img = Image(out)
        cmd = []
        for w in words + [";"]:
            if w != ";":
                cmd.append(w)
                continue
            if cmd:
                try:
                    patch(img, p.parse_args([out] + cmd))
                except SystemExit:
                    raise ValueError("line %d: bad command %s" % (n, " ".join(cmd)))
            cmd = []
        img.f.close()


def main():
    p = parser()
    a = p.parse_args()
    try:
        img = Image(a.image)
        if a.cmd == "info":
            for k, v in img.names().items():
                if isinstance(v, int):
                    print("%s=%d" % (k, v))
            print("extended_l2=%d" % img.extended_l2)
        elif a.cmd == "get":
            print(img.eval(a.expr))
        elif a.cmd == "batch":
            img.f.close()
            batch(p, a.image, a.specfile)
        else:
            patch(img, a)
    except (OSError, ValueError, SyntaxError, NameError, TypeError, IndexError) as e:
        print("qcow2-break: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
