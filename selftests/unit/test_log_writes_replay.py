#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Host tests of tools/log-writes-replay.c over synthetic dm-log-writes logs.

Builds the tool (with ASan/UBSan) into a temporary directory, writes logs
in the kernel's format (drivers/md/dm-log-writes.c), replays them onto
files and compares with what the entries describe.  Prints KTAP; exit 0
when every test passed.
"""

import os
import random
import struct
import subprocess
import sys
import tempfile

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SRC = os.path.join(TOP, "tools", "log-writes-replay.c")

MAGIC = 0x6a736677736872
FLUSH, FUA, DISCARD, MARK, METADATA = 1, 2, 4, 8, 16


class Log:
    """A log being built: entries as the kernel writes them."""

    def __init__(self, ss=512):
        self.ss = ss
        self.body = bytearray()
        self.n = 0

    def _hdr(self, sector, nr, flags, data_len, extra=b""):
        h = struct.pack("<QQQQ", sector, nr, flags, data_len) + extra
        return h + bytes(self.ss - len(h))

    def write(self, sector, data, flags=0):
        assert len(data) % self.ss == 0
        self.body += self._hdr(sector, len(data) // self.ss, flags, 0) + data
        self.n += 1

    def flush(self):
        self.body += self._hdr(0, 0, FLUSH, 0)
        self.n += 1

    def discard(self, sector, nr):
        self.body += self._hdr(sector, nr, DISCARD, 0)
        self.n += 1

    def mark(self, name):
        b = name.encode()
        self.body += self._hdr(0, 0, MARK, len(b), b)
        self.n += 1

    def raw(self, block):
        self.body += block
        self.n += 1

    def image(self, nr_entries=None, magic=MAGIC, version=1, ss=None):
        sb = struct.pack("<QQQI", magic, version,
                         self.n if nr_entries is None else nr_entries,
                         self.ss if ss is None else ss)
        return sb + bytes(self.ss - len(sb)) + self.body


class Env:
    def __init__(self, tmp, tool):
        self.tmp, self.tool = tmp, tool

    def path(self, name):
        return os.path.join(self.tmp, name)

    def put(self, name, data):
        with open(self.path(name), "wb") as f:
            f.write(data)
        return self.path(name)

    def get(self, name):
        with open(self.path(name), "rb") as f:
            return f.read()

    def run(self, *args):
        p = subprocess.run([self.tool] + list(args), capture_output=True,
                           text=True)
        return p.returncode, p.stdout, p.stderr


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def pattern(rnd, n):
    return bytes(rnd.getrandbits(8) for _ in range(n))


def build_mixed(ss, dev_size, seed):
    """A log of writes, discards, flushes, FUA writes and marks; returns it
    with the expected device after each entry."""
    rnd = random.Random(seed)
    log = Log(ss)
    dev = bytearray(dev_size)
    states = []
    nsec = dev_size // ss
    for i in range(60):
        k = rnd.randrange(10)
        if k < 5 or i == 0:
            nr = rnd.randrange(1, 9)
            s = rnd.randrange(0, nsec - nr + 1)
            d = pattern(rnd, nr * ss)
            log.write(s, d, FUA if k == 0 else 0)
            dev[s * ss:(s + nr) * ss] = d
        elif k < 6:
            nr = rnd.randrange(1, 9)
            s = rnd.randrange(0, nsec - nr + 1)
            log.discard(s, nr)
            dev[s * ss:(s + nr) * ss] = bytes(nr * ss)
        elif k < 8:
            log.flush()
        else:
            log.mark("m%d" % i)
        states.append(bytes(dev))
    return log, states


def t_replay_matches_every_prefix(env):
    for ss in (512, 4096):
        size = 64 * ss
        log, states = build_mixed(ss, size, ss)
        lp = env.put("log", log.image())
        for limit in (0, 1, 7, 30, len(states)):
            rp = env.put("dev", b"\xee" * size)
            rc, out, err = env.run("--log", lp, "--replay", rp,
                                   "--limit", str(limit))
            expect(rc == 0, "ss %d limit %d: rc %d %s" % (ss, limit, rc, err))
            # Sectors no entry touched keep the device's old bytes.
            want = replay_model(log, ss, limit, b"\xee" * size)
            expect(env.get("dev") == want,
                   "ss %d limit %d: replayed device differs" % (ss, limit))
            expect(("replayed %d of %d entries" % (limit, len(states))) in out,
                   "summary line: %r" % out)


def replay_model(log, ss, limit, start):
    """What replaying the first limit entries of log onto start gives."""
    dev = bytearray(start)
    body = bytes(log.body)
    pos = 0
    for _ in range(limit):
        sector, nr, flags, dlen = struct.unpack_from("<QQQQ", body, pos)
        pos += ss
        if flags & DISCARD:
            dev[sector * ss:(sector + nr) * ss] = bytes(nr * ss)
        elif nr:
            dev[sector * ss:(sector + nr) * ss] = body[pos:pos + nr * ss]
            pos += nr * ss
    return bytes(dev)


def t_full_replay_equals_model(env):
    log, states = build_mixed(512, 32768, 7)
    lp = env.put("log", log.image())
    rp = env.put("dev", bytes(32768))
    rc, out, err = env.run("--log", lp, "--replay", rp)
    expect(rc == 0, "rc %d %s" % (rc, err))
    expect(env.get("dev") == states[-1], "full replay differs from the writes")


def t_list_prints_entries_and_marks(env):
    log = Log(512)
    log.write(3, b"a" * 1024)
    log.flush()
    log.write(8, b"b" * 512, FUA)
    log.discard(100, 16)
    log.mark("sync1")
    log.write(9, b"c" * 512, FLUSH | FUA | METADATA)
    lp = env.put("log", log.image())
    rc, out, err = env.run("--log", lp, "--list")
    expect(rc == 0, "rc %d %s" % (rc, err))
    lines = [ln for ln in out.splitlines() if not ln.startswith("#")]
    want = ["0\t3\t2\tNONE", "1\t0\t0\tFLUSH", "2\t8\t1\tFUA",
            "3\t100\t16\tDISCARD", "4\t0\t0\tMARK\tsync1",
            "5\t9\t1\tFLUSH|FUA|METADATA"]
    expect(lines == want, "list: %r" % lines)
    expect("1 discards, 2 flushes, 2 FUA, 1 marks" in out, "summary: %r" % out)


def t_end_mark_stops_after_the_mark(env):
    log = Log(512)
    log.write(0, b"1" * 512)
    log.mark("one")
    log.write(1, b"2" * 512)
    log.mark("two")
    log.write(2, b"3" * 512)
    lp = env.put("log", log.image())
    rp = env.put("dev", bytes(4096))
    rc, out, err = env.run("--log", lp, "--replay", rp, "--end-mark", "two")
    expect(rc == 0, "rc %d %s" % (rc, err))
    d = env.get("dev")
    expect(d[:1024] == b"1" * 512 + b"2" * 512 and d[1024:] == bytes(3072),
           "state at mark two")
    rc, out, err = env.run("--log", lp, "--replay", rp, "--end-mark", "three")
    expect(rc == 3 and "mark 'three' is not in the log" in err,
           "missing mark: rc %d %r" % (rc, err))


def t_start_mark_brings_a_state_forward(env):
    log, states = build_mixed(512, 16384, 3)
    lp = env.put("log", log.image())
    marks = [i for i in range(log.n) if struct.unpack_from(
        "<Q", log.body, entry_pos(log, i) + 16)[0] & MARK]
    expect(len(marks) >= 3, "marks in the mixed log: %d" % len(marks))
    rp = env.put("dev", bytes(16384))
    prev = None
    for i in marks:
        name = "m%d" % i
        args = ["--log", lp, "--replay", rp, "--end-mark", name]
        if prev:
            args += ["--start-mark", prev]
        rc, out, err = env.run(*args)
        expect(rc == 0, "to %s: rc %d %s" % (name, rc, err))
        expect(env.get("dev") == states[i], "state at %s" % name)
        prev = name
    rc, out, err = env.run("--log", lp, "--replay", rp, "--start-mark", prev)
    expect(rc == 0 and env.get("dev") == states[-1], "from the last mark to the end")
    rc, out, err = env.run("--log", lp, "--list", "--start-mark", "nosuch")
    expect(rc == 3 and "mark 'nosuch' is not in the log" in err, "missing start: %r" % err)
    rc, out, err = env.run("--log", lp, "--list", "--start-mark", prev,
                           "--end-mark", "m%d" % marks[0])
    expect(rc == 3 and "after mark" in err, "end before start: %r" % err)
    rc, out, err = env.run("--log", lp, "--list", "--start-mark", "m%d" % marks[0],
                           "--end-mark", "m%d" % marks[1])
    lines = [ln for ln in out.splitlines() if not ln.startswith("#")]
    expect(rc == 0 and lines[0].startswith("%d\t" % (marks[0] + 1)) and
           lines[-1].endswith("MARK\tm%d" % marks[1]) and
           "read %d of" % (marks[1] - marks[0]) in out, "listing between marks: %r" % out)


def entry_pos(log, index):
    """The byte offset in log.body of entry index's header."""
    pos = 0
    for _ in range(index):
        _, nr, flags, _ = struct.unpack_from("<QQQQ", log.body, pos)
        pos += log.ss + (0 if flags & DISCARD else nr * log.ss)
    return pos


def t_check_runs_at_each_kind_and_stops_on_failure(env):
    log = Log(512)
    log.write(0, b"x" * 512)
    log.flush()
    log.write(1, b"y" * 512, FUA)
    log.mark("s1")
    log.write(2, b"z" * 512)
    log.write(3, b"w" * 512, FLUSH)
    log.mark("s2")
    log.write(4, b"v" * 512)
    log.mark("s3")
    lp = env.put("log", log.image())
    rp = env.put("dev", bytes(4096))
    rec = env.path("rec")
    # The check reads the device: it must see the entry just replayed.
    cmd = ('printf "%%s %%s %%s %%s\\n" "$REPLAY_ENTRY" "$REPLAY_FLAGS" '
           '"${REPLAY_MARK:--}" "$(od -An -c -N1 -j$((REPLAY_ENTRY < 6 ? 512 : 1536)) %s '
           '| tr -d " ")" >>%s' % (rp, rec))
    rc, out, err = env.run("--log", lp, "--replay", rp, "--check",
                           "flush,mark", "--check-cmd", cmd)
    expect(rc == 0, "rc %d %s" % (rc, err))
    got = open(rec).read().splitlines()
    want = ["1 FLUSH - \\0", "3 MARK s1 y", "5 FLUSH - y", "6 MARK s2 w",
            "8 MARK s3 w"]
    expect(got == want, "checks: %r" % got)
    expect("5 checks passed" in out, "summary: %r" % out)

    os.unlink(rec)
    rc, out, err = env.run("--log", lp, "--replay", rp, "--check", "fua",
                           "--check-cmd", 'echo "$REPLAY_ENTRY" >>%s' % rec)
    expect(rc == 0 and open(rec).read().split() == ["2"],
           "fua checks: rc %d %r" % (rc, err))

    rp = env.put("dev", bytes(4096))
    cmd = '[ "$REPLAY_MARK" != s2 ]'
    rc, out, err = env.run("--log", lp, "--replay", rp, "--check", "mark",
                           "--check-cmd", cmd)
    expect(rc == 1, "failing check: rc %d" % rc)
    expect(err.strip() == "log-writes-replay: check failed at entry 6 "
           "(MARK s2): exit status 1", "message: %r" % err)
    d = env.get("dev")
    expect(d[2048:2560] == bytes(512) and d[1536:2048] == b"w" * 512,
           "replay went on after the failing check")


def t_torn_checks_each_write_of_an_epoch_undone(env):
    log = Log(512)
    log.write(0, b"o" * 2048)           # 0: before the epoch
    log.flush()                         # 1
    log.write(0, b"A" * 1024)           # 2: sectors 0-1
    log.write(1, b"B" * 1024)           # 3: sectors 1-2, covers A's sector 1
    log.discard(3, 1)                   # 4: sector 3
    log.write(5, b"C" * 512, FUA)       # 5: FUA, never undone
    log.write(0, b"D" * 512)            # 6: sector 0, covers A's sector 0
    log.flush()                         # 7
    log.mark("m")                       # 8
    lp = env.put("log", log.image())
    rp = env.put("dev", b"-" * 4096)
    rec = env.path("rec")
    if os.path.exists(rec):
        os.unlink(rec)
    cmd = 'printf "%%s\\n" "$REPLAY_ENTRY:${REPLAY_DROPPED:--}:$(head -c 3072 %s | ' \
          'od -An -v -c -w512 | cut -c1-4 | tr -d " \n")" >>%s' % (rp, rec)
    rc, out, err = env.run("--log", lp, "--replay", rp, "--check", "flush",
                           "--torn", "--check-cmd", cmd)
    expect(rc == 0, "rc %d %s" % (rc, err))
    got = open(rec).read().split()
    # sectors 0..5 as their first character ("\0" for zeros)
    want = ["1:0:------",               # without entry 0
            "1:-:oooo--",
            "7:3:DAo\\0-C",       # without B: sector 1 A's, 2 old
            "7:4:DBBo-C",         # without the discard: sector 3 old
            "7:6:ABB\\0-C",       # without D: sector 0 A's
            "7:-:DBB\\0-C"]
    expect(got == want, "torn checks: %r" % got)
    # A (entry 2) is covered by B and D: nothing to undo, no check.
    expect("6 checks passed (4 of torn epochs)" in out, "summary: %r" % out)
    expect(env.get("dev")[:3072] == b"D" * 512 + b"B" * 1024 + bytes(512) +
           b"-" * 512 + b"C" * 512, "state after the replay")
    rc, out, err = env.run("--log", lp, "--replay", rp, "--torn")
    expect(rc == 2, "--torn without --check: rc %d" % rc)


def t_bad_logs_give_one_line_errors(env):
    good = Log(512)
    good.write(1, b"q" * 1024)
    good.mark("m")
    img = good.image()
    cases = []
    cases.append(("bad magic", good.image(magic=0x1234), "bad magic"))
    cases.append(("version 2", good.image(version=2), "log version 2"))
    cases.append(("sectorsize 1000", good.image(ss=1000), "bad sectorsize"))
    cases.append(("too many entries", good.image(nr_entries=1000),
                  "do not fit"))
    cases.append(("more entries than written", good.image(nr_entries=3),
                  "past the log's end"))
    cases.append(("truncated data", img[:512 + 512 + 600], "data bytes past the end"))
    cases.append(("short super", img[:20], "too small"))
    bad = Log(512)
    bad.raw(struct.pack("<QQQQ", 0, 0, 0, 0) + bytes(480))
    cases.append(("zero entry", bad.image(), "empty entry"))
    bad = Log(512)
    bad.raw(struct.pack("<QQQQ", 0, 0, FLUSH, 0) + b"junk" + bytes(476))
    cases.append(("unpadded header", bad.image(), "not zero-padded"))
    bad = Log(512)
    bad.raw(struct.pack("<QQQQ", 0, 0, 1 << 9, 0) + bytes(480))
    cases.append(("unknown flag", bad.image(), "unknown flags 0x200"))
    bad = Log(512)
    bad.raw(struct.pack("<QQQQ", 0, 0, MARK, 500) + bytes(480))
    cases.append(("long mark", bad.image(), "bad mark"))
    bad = Log(512)
    bad.write(8, b"p" * 512)
    cases.append(("past the device", bad.image(), "past the end of"))
    bad = Log(512)
    bad.raw(struct.pack("<QQQQ", 0, 1 << 60, 0, 0) + bytes(480))
    cases.append(("huge entry", bad.image(), "is too many"))
    bad = Log(512)
    bad.raw(struct.pack("<QQQQ", 0, 1 << 40, 0, 0) + bytes(480))
    cases.append(("large entry", bad.image(), "data bytes past the end"))
    bad = Log(512)
    bad.discard(4, 5)
    cases.append(("discard past the device", bad.image(), "past the end of"))
    for what, data, msg in cases:
        lp = env.put("log", data)
        rp = env.put("dev", bytes(4096))
        rc, out, err = env.run("--log", lp, "--replay", rp)
        expect(rc == 3, "%s: rc %d, %r" % (what, rc, err))
        expect(msg in err and len(err.strip().splitlines()) == 1,
               "%s: stderr %r" % (what, err))
    rc, out, err = env.run("--log", env.path("nonexistent"), "--list")
    expect(rc == 3 and "No such file" in err, "missing log: %r" % err)


def t_usage_errors_exit_2(env):
    lp = env.put("log", Log(512).image())
    for args in (["--list"], ["--log", lp], ["--log", lp, "--list", "x"],
                 ["--log", lp, "--list", "--check", "flush"],
                 ["--log", lp, "--list", "--check", "flush",
                  "--check-cmd", "true"],
                 ["--log", lp, "--replay", lp, "--check", "sync",
                  "--check-cmd", "true"],
                 ["--log", lp, "--list", "--limit", "-1"],
                 ["--log", lp, "--list", "--limit", "1", "--end-mark", "a"],
                 ["--bogus"]):
        rc, out, err = env.run(*args)
        expect(rc == 2, "%r: rc %d" % (args, rc))
    rc, out, err = env.run("--log", lp, "--list")
    expect(rc == 0 and "read 0 of 0 entries" in out, "empty log: %r" % out)


TESTS = [t_replay_matches_every_prefix, t_full_replay_equals_model,
         t_list_prints_entries_and_marks, t_end_mark_stops_after_the_mark,
         t_start_mark_brings_a_state_forward,
         t_check_runs_at_each_kind_and_stops_on_failure,
         t_torn_checks_each_write_of_an_epoch_undone,
         t_bad_logs_give_one_line_errors, t_usage_errors_exit_2]


def main():
    print("TAP version 13")
    print("1..%d" % len(TESTS))
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        tool = os.path.join(tmp, "log-writes-replay")
        cc = os.environ.get("CC", "cc")
        b = subprocess.run([cc, "-O1", "-g", "-Wall", "-Wextra", "-Werror",
                            "-fsanitize=address,undefined",
                            "-fno-sanitize-recover=all", "-o", tool, SRC],
                           capture_output=True, text=True)
        if b.returncode:
            print("# " + b.stderr.replace("\n", "\n# "))
            print("Bail out! cannot build %s" % SRC)
            return 1
        env = Env(tmp, tool)
        for n, t in enumerate(TESTS, 1):
            name = t.__name__[2:]
            try:
                t(env)
                print("ok %d %s" % (n, name))
            except AssertionError as e:
                print("# %s" % e)
                print("not ok %d %s" % (n, name))
                failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
