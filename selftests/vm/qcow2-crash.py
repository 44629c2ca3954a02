#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Workload and data checks of the crash-consistency tests (qcow2-crash.sh).

  qcow2-crash.py write DEV JOURNAL SEED WRITES SYNC_EVERY LOGW[,LOGW] [discard] [max=BYTES]
      O_DIRECT writes to DEV at random 4K-aligned offsets, 4K..1M (or
      4K..BYTES, a power of two) long (log-uniform), overlapping; every sector written holds a stamp of
      its byte offset and the write's generation (1, 2, ...).  Every
      SYNC_EVERY writes: fdatasync, then `dmsetup message LOGW 0 mark
      syncN` to each LOGW, so each log has a mark right after the flush
      that made the writes before it durable.  With "discard", one write in 8 is a
      BLKDISCARD of 64K..1M at a 64K boundary instead.  JOURNAL gets one JSON line per write, discard
      and mark.

  qcow2-crash.py check qcow2|raw TARGET JOURNAL ORIG MARK
      Check the data of TARGET (a qcow2 image, read with qemu-img
      convert, or a raw file) replayed up to the mark MARK against
      JOURNAL and ORIG (a raw file: the data before the workload), by
      the rules of a crash: each sector durable at the mark holds its
      durable generation or a later one written there, every other
      sector written by then its original bytes (zeros if discarded) or
      a stamp written there, and every sector never written its original
      bytes.  At the log's end mark (dm-log-writes-end) the data must be
      the last writes exactly.  Exit status 0: the exact state at the
      mark; 5: not exact, but right by those rules; 1: wrong (described).
"""

import fcntl
import json
import mmap
import os
import random
import struct
import subprocess
import sys
import tempfile

SECTOR = 512
MAGIC = b"BGCRASH1"
BLKDISCARD = 0x1277
M64 = (1 << 64) - 1


def stamp(off, gen):
    """The 512 bytes a write of generation gen puts at byte offset off."""
    h = struct.pack("<8sQQQ", MAGIC, off, gen,
                    (off * 0x9E3779B97F4A7C15 ^ gen * 0xC2B2AE3D27D4EB4F) & M64)
    return h * (SECTOR // len(h))


def parse(blk, off):
    """The generation stamped in blk if it is a good stamp for off, else
    None."""
    if blk[:8] != MAGIC or blk != blk[:32] * (SECTOR // 32):
        return None
    _, o, gen, chk = struct.unpack_from("<8sQQQ", blk)
    if o != off or chk != (o * 0x9E3779B97F4A7C15 ^ gen * 0xC2B2AE3D27D4EB4F) & M64:
        return None
    return gen


def write(dev, journal, seed, writes, sync_every, logw, discard=False, maxlen=1 << 20):
    rnd = random.Random(seed)
    fd = os.open(dev, os.O_WRONLY | os.O_DIRECT)
    size = os.lseek(fd, 0, os.SEEK_END)
    buf = mmap.mmap(-1, 1 << 20)
    nmark = 0
    with open(journal, "w") as j:
        for gen in range(1, writes + 1):
            n = 4096 << int(rnd.random() * (maxlen.bit_length() - 13 + 0.999))
            n = min(n, size)
            off = rnd.randrange(0, (size - n) // 4096 + 1) * 4096
            if discard and rnd.randrange(8) == 0:
                # Whole 64K clusters, which a qcow2 node frees (and
                # then reads as zeros); a partial one it may ignore.
                n = min(65536 << int(rnd.random() * 4.999), size)
                off = rnd.randrange(0, (size - n) // 65536 + 1) * 65536
                fcntl.ioctl(fd, BLKDISCARD, struct.pack("QQ", off, n))
                j.write(json.dumps({"d": [off, n, gen]}) + "\n")
            else:
                buf.seek(0)
                for s in range(off, off + n, SECTOR):
                    buf.write(stamp(s, gen))
                got = os.pwritev(fd, [memoryview(buf)[:n]], off)
                if got != n:
                    sys.exit("short write: %d of %d at %d" % (got, n, off))
                j.write(json.dumps({"w": [off, n, gen]}) + "\n")
            if gen % sync_every == 0 or gen == writes:
                os.fdatasync(fd)
                nmark += 1
                name = "sync%d" % nmark
                for lw in logw.split(","):
                    subprocess.run(["dmsetup", "message", lw, "0", "mark", name],
                                   check=True)
                j.write(json.dumps({"mark": name}) + "\n")
                j.flush()
    os.close(fd)
    print("# workload: %d writes, %d marks on %s (%d MiB)"
          % (writes, nmark, dev, size >> 20))


def states(journal, nsect, upto):
    """(durable, ever, disc, found): the generation of each sector's last
    write (-1: discarded) before mark upto (None: every write), the set of
    generations ever written to each sector and the set of sectors ever
    discarded (over the whole journal), and whether the mark was in the
    journal."""
    durable = [0] * nsect
    ever = {}
    disc = set()
    pending = []
    found = upto is None
    with open(journal) as j:
        for line in j:
            e = json.loads(line)
            if "mark" in e:
                if not found:
                    for s, n, g in pending:
                        durable[s:s + n] = [g] * n
                    pending = []
                    found = e["mark"] == upto
                continue
            kind = "w" if "w" in e else "d"
            off, n, gen = e[kind]
            s, n = off // SECTOR, n // SECTOR
            pending.append((s, n, gen if kind == "w" else -1))
            for i in range(s, s + n):
                if kind == "w":
                    ever.setdefault(i, set()).add(gen)
                else:
                    disc.add(i)
    if upto is None:
        for s, n, g in pending:
            durable[s:s + n] = [g] * n
    return durable, ever, disc, found


def compare(data, orig, durable, ever, disc, exact):
    """Problems of data against the journal, and the number of sectors
    whose data is right but not the exact state at the mark."""
    bad, inexact = [], 0
    nsect = len(durable)
    i = 0
    while i < nsect:
        if durable[i] == 0 and i not in ever and i not in disc:
            j = i
            while j < nsect and durable[j] == 0 and j not in ever and j not in disc:
                j += 1
            a, b = i * SECTOR, j * SECTOR
            if data[a:b] != orig[a:b]:
                k = next(k for k in range(i, j)
                         if data[k * SECTOR:(k + 1) * SECTOR] != orig[k * SECTOR:(k + 1) * SECTOR])
                bad.append("sector %d (byte 0x%x), never written: not its original bytes"
                           % (k, k * SECTOR))
            i = j
            continue
        blk = data[i * SECTOR:(i + 1) * SECTOR]
        want, gens = durable[i], ever.get(i, set())
        gen = parse(blk, i * SECTOR)
        isorig = blk == orig[i * SECTOR:(i + 1) * SECTOR]
        zero = blk == bytes(SECTOR)
        ok_exact = (gen == want) if want > 0 else (zero if want < 0 else isorig)
        if exact:
            ok = ok_exact
            why = "want generation %d" % want if want > 0 else \
                ("want zeros (discarded)" if want < 0 else "want original bytes")
        elif want > 0:
            ok = gen is not None and gen >= want and gen in gens
            why = "durable generation %d" % want
        else:
            # Not durable: original, discarded, or any stamp written there.
            ok = isorig or (zero and i in disc) or (gen is not None and gen in gens)
            why = "not durable; want original bytes or a stamp written there"
        if ok and not ok_exact:
            inexact += 1
        if not ok:
            what = "generation %d" % gen if gen is not None else \
                ("zeros" if zero else "garbage %s..." % blk[:16].hex())
            bad.append("sector %d (byte 0x%x): %s, %s" % (i, i * SECTOR, what, why))
        i += 1
    return bad, inexact


def check(mode, target, journal, orig, mark):
    where = "entry %s (%s %s)" % (os.environ.get("REPLAY_ENTRY", "?"),
                                  os.environ.get("REPLAY_FLAGS", "?"), mark)
    end = mark == "dm-log-writes-end"
    with open(orig, "rb") as f:
        ref = f.read()
    durable, ever, disc, found = states(journal, len(ref) // SECTOR,
                                        None if end else mark)
    if not found:
        print("# %s: mark %s is not in the journal" % (where, mark))
        return 1
    if mode == "qcow2":
        with tempfile.NamedTemporaryFile(dir=os.path.dirname(journal)) as t:
            p = subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw",
                                target, t.name], capture_output=True, text=True)
            if p.returncode:
                print("# %s: qemu-img convert failed: %s" % (where, p.stderr.strip()))
                return 1
            data = t.read()
    else:
        with open(target, "rb") as f:
            data = f.read(len(ref))
    if len(data) != len(ref):
        print("# %s: %d bytes of data, want %d" % (where, len(data), len(ref)))
        return 1
    bad, inexact = compare(data, ref, durable, ever, disc, end)
    if bad:
        print("# %s: %d bad sectors%s:" % (where, len(bad),
              " (end of the log: data must equal the last writes)" if end else ""))
        for b in bad[:8]:
            print("#   " + b)
        return 1
    if not inexact:
        return 0
    print("# %s: not the exact state at the mark: %d sectors hold later writes"
          % (where, inexact))
    return 5


def main():
    a = sys.argv[1:]
    if len(a) >= 7 and a[0] == "write":
        opts = dict(o.partition("=")[::2] for o in a[7:])
        write(a[1], a[2], int(a[3]), int(a[4]), int(a[5]), a[6],
              "discard" in opts, int(opts.get("max", 1 << 20)))
        return 0
    if len(a) == 6 and a[0] == "check" and a[1] in ("qcow2", "raw"):
        return check(*a[1:])
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main())
