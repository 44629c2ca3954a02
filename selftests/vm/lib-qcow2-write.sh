#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Helpers of the tests writing through bgraph-qcow2 nodes (qcow2-write-*.sh,
# qcow2-discard.sh, qcow2-meta.sh, qcow2-crash.sh), checked against QEMU:
# a writable node reads back what it was given, and once it is removed the
# image is one `qemu-img check` finds clean (no errors, no leaked
# clusters) and qemu reads the same as the node did.  Images are made by
# qemu-img and qemu-io, broken ones by qcow2-break.py; the node's image
# file is grown first (the file device has a fixed size: the room the
# image may take).  Until the target writes, a writable table is refused
# and every test skips.

# The helpers of every qcow2 test (q2_new, q2_io, q2_dm, q2_same, q2_diff,
# Q2_SLOW, ...).
# shellcheck source=lib-qcow2.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-qcow2.sh"

# MiB of the range the fio tests write, with 4 jobs: a quarter on the
# debug kernel (lib.sh's FIO_MB), where the overlay's fio test covers
# allocation under concurrency for the empty image's (see Q2_SLOW in
# lib-qcow2.sh: 6.1 also leaves the empty and preallocated images' to 6.12).
QW_MB=32
[ "$FIO_MB" -ge 32 ] || QW_MB=8

# ---- writable nodes -------------------------------------------------

# qw_create NAME TABLE: create NAME writable from TABLE; skip the test if
# bgraph-qcow2 does not write yet.
qw_create() {
	local log
	mark_log
	dmsetup create "$1" --table "$2" >/dev/null 2>&1 && return 0
	log=$(log_since_mark)
	grep -q "bgraph-qcow2: Writing is not supported yet" <<<"$log" &&
		skip "bgraph-qcow2 does not write yet"
	diag "$(tail -n 5 <<<"$log")"
	fail "writable table of $1 refused: $2"
}

# qw_dm NAME IMG ROOM [KEY [VALUE]...]: a writable node NAME over a
# writable loop device on IMG, as long as its virtual size; IMG's file is
# first grown to ROOM bytes (truncate's size syntax; nothing if larger).
# KEY [VALUE]... are the optional arguments, counted here.
# Q2_LOOP[NAME] is the loop device's name.
qw_dm() {
	local name=$1 img=$2 room=$3 l s
	shift 3
	truncate -s ">$room" "$img" && truncate -s %512 "$img" || return 1
	s=$(q2_sectors "$img") || return 1
	l=$(losetup -f --show "$img") || return 1
	Q2_LOOP[$name]=${l##*/}
	qw_create "$name" "0 $s bgraph-qcow2 $l${1:+ $# $*}"
}

# qw_flags NAME: the flags word of NAME's status INFO (the last).
qw_flags() {
	q2_status "$1" | awk '{ print $NF }'
}

# qw_mode NAME: the mode word of NAME's status INFO (before the flags).
qw_mode() {
	q2_status "$1" | awk '{ print $(NF - 1) }'
}

# qw_remove NAME: remove node NAME (which must succeed: it writes the
# image's metadata), then every other dm and loop device.
qw_remove() {
	dmsetup remove "$1" || { fail "dmsetup remove $1"; return 1; }
	q2_teardown
}

# ---- writes and their model -----------------------------------------

# qw_write DEV [--ref FILE] SPEC...: write each SPEC to DEV with O_DIRECT,
# then fsync; with --ref, the same bytes to FILE, the model of what DEV
# must hold (DEV "-": only to FILE).  SPEC is OFF:LEN:DATA (OFF and LEN
# multiples of 512); DATA is a byte repeated (0x5a) or rSEED, random bytes
# from SEED; numbers may end in K or M.  Fails, printing the errors ([Errno 5] ...), if any write or
# the fsync fails.
qw_write() {
	python3 - "$@" <<-"PY"
	import mmap, os, random, sys
	args = sys.argv[1:]
	dev, ref = args.pop(0), None
	if args and args[0] == "--ref":
	    ref, args = args[1], args[2:]
	fd = None if dev == "-" else os.open(dev, os.O_WRONLY | os.O_DIRECT)
	rf = None if ref is None else os.open(ref, os.O_WRONLY)
	bad = 0
	def num(s):
	    m = {"K": 1 << 10, "M": 1 << 20}.get(s[-1], 1)
	    return int(s[:-1] if m > 1 else s, 0) * m
	for spec in args:
	    off, n, data = spec.split(":")
	    off, n = num(off), num(n)
	    if data[0] == "r":
	        b = random.Random(int(data[1:])).randbytes(n)
	    else:
	        b = bytes([int(data, 0)]) * n
	    if rf is not None:
	        os.pwrite(rf, b, off)
	    if fd is None:
	        continue
	    buf = mmap.mmap(-1, n)
	    buf[:] = b
	    try:
	        w = os.pwritev(fd, [buf], off)
	        if w != n:
	            print("# write %s: short, %d bytes" % (spec, w))
	            bad += 1
	    except OSError as e:
	        print("# write %s: %s" % (spec, e))
	        bad += 1
	if fd is not None:
	    try:
	        os.fsync(fd)
	    except OSError as e:
	        print("# fsync: %s" % e)
	        bad += 1
	sys.exit(1 if bad else 0)
	PY
}

# qw_model IMG: a raw copy of what qemu reads from IMG (with its backing
# chain), to apply writes to; prints its path.
qw_model() {
	local f=$SCRATCH/${1##*/}-model.ref
	qemu-img convert -O raw "$1" "$f" || return 1
	echo "$f"
}

# qw_expect NAME MODEL WHAT: /dev/mapper/NAME reads (O_DIRECT) what MODEL
# holds.  Leaves the read in $SCRATCH/NAME-dump.ref.
qw_expect() {
	local d=$SCRATCH/$1-dump.ref
	dd if="/dev/mapper/$1" of="$d" bs=1M iflag=direct status=none ||
		{ fail "$3: reading /dev/mapper/$1"; return 1; }
	cmp -s "$d" "$2" && return 0
	q2_diff "$d" "$2"
	fail "$3: /dev/mapper/$1 does not read what was written"
}

# ---- the oracle -----------------------------------------------------

# qw_check IMG WHAT [leaks]: `qemu-img check` finds no error in IMG and,
# unless "leaks", no leaked cluster (with it, prints their count).  Sets
# QW_ALLOC (allocated guest clusters) and QW_END (image end offset).
qw_check() {
	local out rc=0 leaks
	out=$(qemu-img check --output=json "$1" 2>&1) || rc=$?
	QW_ALLOC=$(sed -n 's/^ *"allocated-clusters": \([0-9]*\).*/\1/p' <<<"$out")
	QW_END=$(sed -n 's/^ *"image-end-offset": \([0-9]*\).*/\1/p' <<<"$out")
	leaks=$(sed -n 's/^ *"leaks": \([0-9]*\).*/\1/p' <<<"$out")
	if [ $rc -eq 3 ] && [ "${3:-}" = leaks ]; then
		diag "$2: qemu-img check: ${leaks:-?} leaked clusters (allowed here), no errors"
		return 0
	fi
	[ $rc -eq 0 ] && return 0
	diag "$(qemu-img check "$1" 2>&1 | head -n 20)"
	fail "$2: qemu-img check of $1 exits $rc (2: corruptions, 3: leaked clusters)"
}

# qw_compare IMG RAW WHAT: qemu reads IMG (with its backing chain) as the
# raw file RAW holds.
qw_compare() {
	local out want=$SCRATCH/${1##*/}-want.ref
	out=$(qemu-img compare -f qcow2 -F raw "$1" "$2" 2>&1) && return 0
	diag "qemu-img compare: $out"
	qemu-img convert -O raw "$1" "$want" && q2_diff "$want" "$2"
	fail "$3: qemu reads $1 differently from what the node read"
}

# qw_finish NAME IMG WHAT: read all of node NAME, remove it, check IMG
# clean and reading as the node did.  Sets QW_ALLOC and QW_END.  After
# qw_fio, qw_finish NAME IMG WHAT CS [REF] also checks with qw_untouched.
qw_finish() {
	local d=$SCRATCH/$1-dump.ref
	dd if="/dev/mapper/$1" of="$d" bs=1M iflag=direct status=none ||
		{ fail "$3: reading /dev/mapper/$1"; return 1; }
	[ -z "${4:-}" ] || qw_untouched "$1" "$d" "$4" "${5:-}"
	qw_remove "$1"
	qw_check "$2" "$3"
	qw_compare "$2" "$d" "$3"
}

# qw_map IMG SPEC...: `qemu-img map` of IMG says each SPEC, OFF:LEN:KIND,
# of all of [OFF, OFF + LEN): KIND data (allocated in IMG), zero (reads
# zeros from IMG itself: a zero flag, or unallocated without a backing
# file) or backing (left to the backing file).
qw_map() {
	python3 - "$@" <<-"PY" || { fail "qemu-img map of $1"; return 1; }
	import json, subprocess, sys
	out = subprocess.run(["qemu-img", "map", "--output=json", sys.argv[1]],
	                     check=True, capture_output=True, text=True).stdout
	m, bad = json.loads(out), 0
	def num(s):
	    k = {"K": 1 << 10, "M": 1 << 20}.get(s[-1], 1)
	    return int(s[:-1] if k > 1 else s, 0) * k
	def kind(e):
	    if e["depth"] > 0:
	        return "backing"
	    return "data" if e["data"] else "zero" if e["zero"] else "?"
	for spec in sys.argv[2:]:
	    off, n, want = spec.split(":")
	    off, n = num(off), num(n)
	    for e in m:
	        if e["start"] + e["length"] <= off or e["start"] >= off + n:
	            continue
	        if kind(e) != want:
	            print("# [%d, +%d) should be %s, qemu-img map: %s" % (off, n, want, json.dumps(e)))
	            bad += 1
	            break
	sys.exit(1 if bad else 0)
	PY
}

# qw_qemu_reads IMG MODEL: qemu-io's `read -P` finds in IMG every run of
# equal bytes of MODEL (a model of patterns, not of random data).
qw_qemu_reads() {
	local -a cmds
	mapfile -t cmds < <(python3 - "$2" <<-"PY"
	import sys
	b = open(sys.argv[1], "rb").read()
	runs = []
	def scan(lo, hi, step):
	    for i in range(lo, hi, step):
	        c = b[i:min(i + step, hi)]
	        if c.count(c[0]) != len(c):
	            scan(i, i + len(c), 1 if step == 512 else 512)
	        elif runs and runs[-1][0] == c[0] and runs[-1][2] == i:
	            runs[-1][2] = i + len(c)
	        else:
	            runs.append([c[0], i, i + len(c)])
	scan(0, len(b), 65536)
	for c, lo, hi in runs:
	    print("read -P 0x%02x %d %d" % (c, lo, hi - lo))
	PY
	)
	diag "qemu-io: ${#cmds[@]} pattern reads"
	q2_io "$1" "${cmds[@]}" || fail "qemu-io does not read in $1 what the node wrote"
}

# qw_untouched NAME DUMP CS [REF]: every sector of DUMP (what node NAME
# read after qw_fio) that no fio write covered reads as in REF (the raw
# view of the image chain before the writes; zeros without REF).  In the
# clusters of CS bytes that fio wrote in part, those are the sectors the
# node copied from the backing chain or zeroed around the new data.
qw_untouched() {
	python3 - "$SCRATCH/$1" "$2" "$3" "${4:-}" <<-"PY" || fail "sectors fio did not write changed"
	import glob, sys
	prefix, dump, cs, ref = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
	data = open(dump, "rb").read()
	want = open(ref, "rb").read() if ref else bytes(len(data))
	n, spc = len(data) // 512, int(sys.argv[3]) // 512
	written, writes = bytearray(n), 0
	for log in glob.glob(prefix + "-fio-*_lat.*.log"):
	    for line in open(log):
	        f = line.split(",")
	        if int(f[2]) != 1:		# the verify phase's reads
	            continue
	        off, length = int(f[4]), int(f[3])
	        written[off // 512:(off + length) // 512] = b"\1" * (length // 512)
	        writes += 1
	bad = partial = 0
	for c in range(0, n, spc):
	    w = written[c:c + spc]
	    if not any(w):
	        sectors = [(c, c + spc)]
	    else:
	        sectors = [(s, s + 1) for s in range(c, c + spc) if not w[s - c]]
	        partial += len(sectors)
	    for a, b in sectors:
	        if data[a * 512:b * 512] == want[a * 512:b * 512]:
	            continue
	        for s in range(a, b):
	            if data[s * 512:(s + 1) * 512] != want[s * 512:(s + 1) * 512]:
	                if bad < 5:
	                    print("# sector %d (offset %d): fio did not write it, it changed" % (s, s * 512))
	                bad += 1
	print("# %d fio writes; %d of %d sectors untouched by them, %d of those in clusters written in part; %d changed"
	      % (writes, n - sum(written), n, partial, bad))
	# No write logged, or no cluster written in part: the check saw nothing.
	sys.exit(1 if bad or not writes or not partial else 0)
	PY
	rm -f "$SCRATCH/$1"-fio-*.log
}
