#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Writing through bgraph-qcow2 nodes, checked against QEMU: a writable
# node reads back what it was given, and once it is removed the image is
# one `qemu-img check` finds clean (no errors, no leaked clusters) and
# qemu reads the same as the node did.  Images are made by qemu-img and
# qemu-io, broken ones by qcow2-break.py; the node's image file is grown
# first (the file device has a fixed size: the room the image may take).
# Until the target writes, a writable table is refused and every test
# here skips.

# The helpers (q2_new, q2_io, q2_dm, q2_same, q2_diff, Q2_SLOW, ...); run.sh
# registers only the test_* functions of the file it is given, so this
# does not run qcow2.sh's tests again.
# shellcheck source=qcow2.sh
source "$(dirname "${BASH_SOURCE[0]}")/qcow2.sh"

# MiB of the range the fio tests write, with 4 jobs: a quarter on the
# debug kernel (lib.sh's FIO_MB), where the overlay's fio test covers
# allocation under concurrency for the empty image's (see Q2_SLOW in
# qcow2.sh: 6.1 also leaves the empty and preallocated images' to 6.12).
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

# qw_probe: skip the test unless bgraph-qcow2 loads a plain writable
# table (for tests whose first writable table is not plain).
qw_probe() {
	local img
	img=$(q2_new probe 1M "")
	qw_dm probe "$img" 2M
	qw_remove probe
}

# qw_flags NAME: the flags word of NAME's status INFO.
qw_flags() {
	q2_status "$1" | awk '{ print $5 }'
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

# ---- fio ------------------------------------------------------------

# qw_fio NAME: two fio runs over the first QW_MB MiB of node NAME, random
# writes of 4k, 64k and 1M, 4 jobs of queue depth 16:
# 1. the four jobs all over the range at once, racing for the same
#    clusters, L2 slices and refcount blocks;
# 2. verify=crc32c, each job on a quarter of the range (fio cannot verify
#    what another job overwrote), checking what it wrote as it goes
#    (verify_backlog) and at the end; one job fsyncs every 16 writes, one
#    writes with O_SYNC (FUA), one fdatasyncs every 8.  Each writes half
#    of its quarter, so that clusters written in part remain.
# Each write's offset and length go to a log for qw_untouched.
qw_fio() {
	local q=$((QW_MB / 4)) h=$((QW_MB * 128))
	local -a g=(--filename="/dev/mapper/$1" --rw=randwrite --bssplit=4k/70:64k/25:1M/5
		--ioengine=libaio --direct=1 --iodepth=16 --log_offset=1)
	rm -f "$SCRATCH/$1"-fio-*.log
	fio_ok "${g[@]}" --write_lat_log="$SCRATCH/$1-fio-race" \
		--name=race --numjobs=4 --size="${QW_MB}M" --io_size="${q}M"
	fio_ok "${g[@]}" --write_lat_log="$SCRATCH/$1-fio-v" \
		--verify=crc32c --verify_backlog=64 --size="${q}M" --io_size="${h}K" \
		--name=v0 --offset=0 \
		--name=v1 --offset="${q}M" --fsync=16 \
		--name=v2 --offset="$((2 * q))M" --sync=1 \
		--name=v3 --offset="$((3 * q))M" --fdatasync=8
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

# qw_fio_empty NAME [DIR]: qw_fio on an empty image (in DIR if given).
qw_fio_empty() {
	local img
	img=$(q2_new "$1" 64M cluster_size=65536)
	if [ -n "${2:-}" ]; then
		mv "$img" "$2/" && img=$2/${img##*/} || return 1
	fi
	qw_dm "$1" "$img" 80M
	qw_fio "$1"
	qw_finish "$1" "$img" "$1: empty image after fio" 65536
	diag "$1: allocated clusters: $QW_ALLOC, image end: $QW_END"
	[ "$QW_ALLOC" -gt 0 ] || fail "$1: no cluster allocated"
}

# On ext4, new clusters are zeroed around the data by write-zeroes; on
# tmpfs (write-zeroes refused) by the zero page in the data's bio.
test_qcow2_write_fio_on_an_empty_image_verifies_and_leaves_it_clean() {
	local d
	q2_slow_skip
	qw_fio_empty fe
	d=$(mktemp -d /dev/shm/qw.XXXXXX)
	if [ "$(stat -f -c %T "$d")" = tmpfs ]; then
		qw_fio_empty ft "$d"
	else
		diag "/dev/shm is not a tmpfs: no run without write-zeroes"
	fi
	rm -rf "$d"
}

test_qcow2_write_fio_on_a_preallocated_image_writes_in_place() {
	local img end alloc
	q2_slow_skip
	# Every cluster allocated with refcount 1: nothing to allocate.
	img=$(q2_new fp 64M cluster_size=65536,preallocation=metadata)
	qw_check "$img" "preallocated image"
	end=$QW_END alloc=$QW_ALLOC
	qw_dm fp "$img" 80M
	qw_fio fp
	qw_finish fp "$img" "preallocated image after fio" 65536
	expect_eq "$QW_ALLOC" "$alloc" "allocated clusters"
	expect_eq "$QW_END" "$end" "image end offset"
}

test_qcow2_write_fio_on_an_overlay_of_a_two_deep_chain_copies_from_backing() {
	local base mid top p1 p2 sums
	p1=$(q2_pat 1)
	p2=$(q2_pat 2)
	# base (64K clusters) <- mid (4K clusters) <- top (64K clusters, the
	# one written): 4k writes into top's clusters copy the rest from mid,
	# which has data, zeros and holes down to base.
	base=$(q2_new fb 64M cluster_size=65536)
	q2_io "$base" "write -s $p1 0 64M"
	mid=$(q2_new fm 64M cluster_size=4096 -b "$base" -F qcow2)
	q2_io "$mid" "write -s $p2 1M 3M" "write -z 8M 2M" "write -P 0x22 $((20 << 20)) 4M" \
		"write -s $p2 $(((30 << 20) + 512)) 100000"
	top=$(q2_new ft 64M cluster_size=65536 -b "$mid" -F qcow2)
	q2_io "$top" "write -P 0x33 $((5 << 20)) 1M" "write -z $((9 << 20)) 128k"
	q2_dm fb "$base"
	q2_dm fm "$mid" backing /dev/mapper/fb
	sums=$(md5sum "$base" "$mid")
	# What qemu reads of the chain before the writes: fio's writes aside,
	# the node must read the same afterwards.
	qemu-img convert -O raw "$top" "$SCRATCH/ft-before.ref"
	qw_dm ft "$top" 80M backing /dev/mapper/fm
	qw_fio ft
	qw_finish ft "$top" "overlay after fio" 65536 "$SCRATCH/ft-before.ref"
	expect_eq "$(md5sum "$base" "$mid")" "$sums" "backing images"
}

# ---- round trips ----------------------------------------------------

# qw_round_trip NAME OPTIONS CS: qemu-io writes patterns into an image of
# two L2 tables' reach, the node writes others over and between them
# (in place, into new clusters, into a compressed cluster and zero
# clusters, across the L2 tables' boundary, the last sector); qemu-io
# reads every one back; then qemu-io writes and the node reads.
qw_round_trip() {
	local name=$1 cs=$3 img l2 v model
	l2=$((cs * cs / 8))
	v=$((2 * l2))
	img=$(q2_new "$name" "$v" "$2")
	q2_io "$img" \
		"write -P 0x11 0 $((16 * cs))" \
		"write -P 0x12 $((20 * cs)) $cs" \
		"write -c -P 0x13 $((24 * cs)) $cs" \
		"write -z $((28 * cs)) $((2 * cs))" \
		"write -P 0x14 $((32 * cs)) $((2 * cs))" "write -z $((32 * cs)) $cs" \
		"write -P 0x15 $((l2 - cs)) $cs"
	model=$(qw_model "$img")
	qw_dm "$name" "$img" $((v + (4 << 20)))
	qw_write "/dev/mapper/$name" --ref "$model" \
		4608:512:0x21 \
		$((16 * cs - 4096)):8192:0x22 \
		$((20 * cs + 1024)):1024:0x23 \
		$((24 * cs + 1024)):1024:0x24 \
		$((29 * cs - 2048)):4096:0x25 \
		$((32 * cs + 1024)):1024:0x26 \
		$((l2 - 2048)):4096:0x27 \
		$((l2 + 8 * cs)):$((3 * cs)):0x28 \
		$((v - 512)):512:0x29
	qw_expect "$name" "$model" "$name after its writes"
	qw_remove "$name"
	qw_check "$img" "$name after the node's writes"
	qw_qemu_reads "$img" "$model"
	# And back: qemu-io over what the node allocated, the node reads.
	q2_io "$img" "write -P 0x31 $((16 * cs + 512)) 512" "write -P 0x32 $((l2 - cs)) $((2 * cs))" \
		"write -z $((l2 + 8 * cs)) $cs"
	q2_dm "$name" "$img"
	q2_same "$name" "$img" "$name after qemu-io wrote again"
}

test_qcow2_write_round_trips_with_qemu_io() {
	q2_fast && qw_round_trip rt2 compat=0.10,cluster_size=4096 4096
	qw_round_trip rt3 cluster_size=16384 16384
}

test_qcow2_write_suspend_leaves_the_image_clean() {
	local img model
	img=$(q2_new sus 16M cluster_size=65536)
	q2_io "$img" "write -P 0x41 0 1M"
	model=$(qw_model "$img")
	qw_dm sus "$img" 32M
	qw_write /dev/mapper/sus --ref "$model" $((512 << 10)):1M:r1 $(((3 << 20) + 4096)):4096:r2 \
		$((15 << 20)):1M:r3
	# Suspended, all metadata is on the file device: qemu reads the image.
	dmsetup suspend sus
	qw_check "$img" "image of the suspended node"
	qw_compare "$img" "$model" "image of the suspended node"
	dmsetup resume sus
	qw_write /dev/mapper/sus --ref "$model" 0:4096:r4 $((8 << 20)):64K:r5
	qw_expect sus "$model" "after resume"
	qw_finish sus "$img" "after suspend, resume and removal"
}

# ---- new clusters over old bytes ------------------------------------

# qw_old_bytes NAME OPTIONS [DIR]: 4k, 8k and 512-byte writes into new
# 64K clusters of an image on a loop device (whose write-zeroes is
# fallocate: the node zeroes the rest of a cluster that way, not by
# writing zeros) where the clusters taken held other bytes: clusters QEMU
# freed and left their data in, then the file past the image's old end.
# The rest of every cluster reads zeros, through the node and through
# qemu.  The image file is in DIR if given, else in $SCRATCH.
qw_old_bytes() {
	local name=$1 img model end room=$((16 << 20)) k=1024 i o n dd0 dd1 wz
	local -a w hosts
	img=$(q2_new "$name" 8M "cluster_size=65536${2:+,$2}")
	if [ -n "${3:-}" ]; then
		mv "$img" "$3/" && img=$3/${img##*/} || return 1
	fi
	# 16 clusters written, then freed (qemu may punch them out of the
	# file; they are filled with 0xdd again, which qemu-img check
	# accepts: nothing references them), then 0xee past the image's end.
	q2_io "$img" "write -P 0xdd 0 1M"
	mapfile -t hosts < <(qemu-img map --output=json "$img" |
		python3 -c 'import json,sys; [print(e["offset"], e["length"]) for e in json.load(sys.stdin) if e["data"]]')
	q2_io "$img" "write -z -u 0 1M"
	end=$(stat -c %s "$img")
	truncate -s $room "$img"
	for i in "${hosts[@]}" "$end $((room - end))"; do
		read -r o n <<<"$i"
		head -c "$n" /dev/zero | tr '\0' "$([ "$o" = "$end" ] && echo '\356' || echo '\335')" |
			dd of="$img" bs=64k seek="$o" oflag=seek_bytes conv=notrunc status=none
	done
	qw_check "$img" "$name before the node's writes" || return 1
	dd0=$(tr -cd '\335' <"$img" | wc -c)
	expect_eq "$dd0" $((1 << 20)) "0xdd bytes in the freed clusters"
	model=$(qw_model "$img")
	qw_dm "$name" "$img" $room
	wz=$(cat "/sys/block/${Q2_LOOP[$name]}/queue/write_zeroes_max_bytes")
	# 28 new clusters: the 16 freed ones, then 12 past the old end.
	w=(8K:4K:0x21 $((64 * k + 1536)):512:0x22 $((192 * k - 4 * k)):8K:0x23)
	for i in $(seq 0 23); do
		w+=($(((2048 + 64 * i + 20) * k)):4K:$((0x30 + i)))
	done
	qw_write "/dev/mapper/$name" --ref "$model" "${w[@]}"
	qw_expect "$name" "$model" "$name: new clusters over old bytes"
	diag "$name: write_zeroes_max_bytes of the loop device: $wz, then" \
		"$(cat "/sys/block/${Q2_LOOP[$name]}/queue/write_zeroes_max_bytes")"
	if [ -z "$2" ] && [ "$wz" -gt 0 ] && [ "$(stat -f -c %T "$img")" = ext2/ext3 ]; then
		# fallocate(ZERO_RANGE) leaves unwritten extents on ext4 (with
		# extended L2, only parts of 4K blocks are zeroed: no extents).
		n=$(filefrag -v "$img" | grep -c unwritten || true)
		diag "$name: $n unwritten extents in the image file"
		[ "$n" -gt 0 ] || fail "$name: the file device zeroed nothing (write_zeroes_max_bytes $wz)"
	fi
	qw_finish "$name" "$img" "$name after writes over old bytes"
	# The freed clusters are zeroed ahead (0xdd gone) whether or not
	# they are taken: where the data went says.
	n=$(qemu-img map --output=json "$img" | python3 -c 'import json,sys
print(sum(1 for e in json.load(sys.stdin) if e["data"] and e["offset"] < int(sys.argv[1])))' "$end")
	dd1=$(tr -cd '\335' <"$img" | wc -c)
	diag "$name: image end $end, then $QW_END; 0xdd bytes $dd0, then $dd1;" \
		"$n data extents in freed clusters"
	[ "$n" -gt 0 ] || fail "$name: no freed cluster taken again"
	[ "$QW_END" -gt "$end" ] || fail "$name: no cluster taken past the old end"
	qw_qemu_reads "$img" "$model"
}

test_qcow2_write_new_clusters_over_old_bytes_read_zeros_around_the_data() {
	qw_old_bytes og ""
	if q2_fast; then
		qw_old_bytes ogx extended_l2=on
	fi
}

# 4k writes into new clusters of an empty image on a loop device over
# ext4, the file past the image's end full of 0xee: the node zeroes free
# clusters ahead of the allocator, 4 MiB at a time (a write-zeroes each:
# fallocate), so that such a write sends the loop device its data only;
# zeroing around it would take two write-zeroes more.  The loop device's
# write count says (/sys/block/loopN/stat, field 5; write-zeroes count as
# writes).  The rest of every cluster reads zeros, through the node and
# through qemu, and qemu-img check finds no leak.
test_qcow2_write_new_clusters_are_zeroed_ahead_in_batches() {
	local name=oz img model end n=128 i w0 w1 wz l
	local -a w
	img=$(q2_new $name 64M cluster_size=65536)
	end=$(stat -c %s "$img")
	truncate -s 80M "$img"
	head -c $(((80 << 20) - end)) /dev/zero | tr '\0' '\356' |
		dd of="$img" bs=64k seek="$end" oflag=seek_bytes conv=notrunc status=none
	model=$(qw_model "$img")
	qw_dm $name "$img" 80M || return 1
	l=${Q2_LOOP[$name]}
	wz=$(cat "/sys/block/$l/queue/write_zeroes_max_bytes")
	# Clusters 0, 5, 10, ...; 4k at 4K to 60K into each: zeros both sides.
	for ((i = 0; i < n; i++)); do
		w+=($(((i * 5 * 64 + (i * 3 % 15 + 1) * 4) << 10)):4K:$((0x40 + i % 64)))
	done
	w0=$(awk '{ print $5 }' "/sys/block/$l/stat")
	qw_write "/dev/mapper/$name" --ref "$model" "${w[@]}"
	w1=$(awk '{ print $5 }' "/sys/block/$l/stat")
	diag "$name: $n writes into new clusters: $((w1 - w0)) writes to $l" \
		"(write_zeroes_max_bytes $wz), metadata at the fsync included"
	if [ "$wz" -gt 0 ]; then
		[ $((w1 - w0)) -le $((n + n / 2)) ] ||
			fail "$name: $((w1 - w0)) writes to $l for $n writes into new clusters"
	fi
	qw_expect $name "$model" "$name: new clusters zeroed ahead"
	qw_finish $name "$img" "$name after writes into clusters zeroed ahead"
	expect_eq "$QW_ALLOC" $n "allocated clusters"
	[ "$(tr -cd '\356' <"$img" | wc -c)" -lt $(((80 << 20) - end)) ] ||
		fail "$name: nothing written past the image's old end"
	qw_qemu_reads "$img" "$model"
}

# Sixteen fio jobs write at once, job i the 4 KiB block i of each of the
# first 64 clusters of an empty image, each its own byte (verify=pattern),
# one pass: the sixteen writes of a cluster race to allocate it, and every
# one must land (a write lost to another's allocation fails fio's verify
# and the model).  Meanwhile a reader, started first, reads those clusters
# again and again: each block must read zeros or its job's byte, never
# anything else (the file past the image's end holds 0xee: a cluster read
# before its zeros or data are down would show it).
test_qcow2_write_racing_writes_to_new_clusters_all_land_reads_see_old_or_new() {
	local name=rc img end i rpid rc=0
	local -a jobs=()
	img=$(q2_new $name 8M cluster_size=65536)
	end=$(stat -c %s "$img")
	truncate -s 16M "$img"
	head -c $(((16 << 20) - end)) /dev/zero | tr '\0' '\356' |
		dd of="$img" bs=64k seek="$end" oflag=seek_bytes conv=notrunc status=none
	qw_dm $name "$img" 16M || return 1
	rm -f "$SCRATCH/$name.ready" "$SCRATCH/$name.stop"
	python3 - "/dev/mapper/$name" "$SCRATCH/$name.stop" "$SCRATCH/$name.ready" \
		<<-"PY" >"$SCRATCH/$name.reader" 2>&1 &
	import mmap, os, random, sys
	fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)
	buf = mmap.mmap(-1, 65536)
	n = bad = 0
	while n < 8 or not os.path.exists(sys.argv[2]):
	    if n == 1:
	        open(sys.argv[3], "w").close()
	    c = random.randrange(64)
	    os.preadv(fd, [buf], c << 16)
	    for b in range(16):
	        blk = buf[b << 12:(b + 1) << 12]
	        if blk.count(0) != 4096 and blk.count(0x40 + b) != 4096:
	            if bad < 8:
	                print("# cluster %d block %d: neither zeros nor 0x%02x: %s..."
	                      % (c, b, 0x40 + b, blk[:16].hex()))
	            bad += 1
	    n += 1
	print("# reader: %d reads of a cluster during the writes, %d bad blocks" % (n, bad))
	sys.exit(1 if bad else 0)
	PY
	rpid=$!
	for _ in $(seq 100); do
		[ -e "$SCRATCH/$name.ready" ] && break
		sleep 0.1
	done
	for ((i = 0; i < 16; i++)); do
		jobs+=(--name="b$i" --offset=$((i * 4))k --verify_pattern="$(printf 0x%02x $((0x40 + i)))")
	done
	fio_ok --filename="/dev/mapper/$name" --rw=write:60k --bs=4k --size=4M --io_size=256k \
		--ioengine=libaio --iodepth=4 --direct=1 --verify=pattern "${jobs[@]}" ||
		rc=1
	touch "$SCRATCH/$name.stop"
	wait $rpid || { rc=1; diag "the reader saw garbage"; }
	cat "$SCRATCH/$name.reader"
	[ $rc -eq 0 ] || { fail "racing writes to new clusters"; return 1; }
	# Every block holds its job's byte; the rest of the image zeros.
	python3 -c 'import sys; sys.stdout.buffer.write(bytes(0x40 + b for b in range(16) for _ in range(4096)) * 64 + bytes(4 << 20))' \
		>"$SCRATCH/$name-model.ref"
	qw_expect $name "$SCRATCH/$name-model.ref" "$name: after racing writes"
	qw_finish $name "$img" "$name after racing writes to new clusters"
	expect_eq "$QW_ALLOC" 64 "allocated clusters"
}

# A loop device over tmpfs offers write-zeroes but fallocate(ZERO_RANGE)
# fails (6.12's loop then stops offering it, 6.1's does not): the node
# writes the zeros itself.
test_qcow2_write_file_device_refusing_write_zeroes_gets_the_zeros_written() {
	local d
	d=$(mktemp -d /dev/shm/qw.XXXXXX)
	[ "$(stat -f -c %T "$d")" = tmpfs ] || { rm -rf "$d"; skip "/dev/shm is not a tmpfs"; }
	qw_old_bytes ogt "" "$d"
	rm -rf "$d"
}

# ---- faults ---------------------------------------------------------

qw_flakey() {
	[ -d "/lib/modules/$(uname -r)" ] && modprobe dm_flakey
	return 0
}

# qw_by SECS WHAT CMD...: run CMD, which must end within SECS seconds;
# sets QW_RC (its exit status) and QW_OUT (its output).  A CMD that does
# not end (a bio the node never completes) fails the test and says so in
# the kernel log too, as the test's own output shows only when it ends.
qw_by() {
	local secs=$1 what=$2 pid i out=$SCRATCH/qw-by.out
	shift 2
	"$@" >"$out" 2>&1 &
	pid=$!
	for ((i = 0; i < secs * 5; i++)); do
		kill -0 $pid 2>/dev/null || break
		sleep 0.2
	done
	if kill -0 $pid 2>/dev/null; then
		echo "qcow2-write: $what: not ended after ${secs}s" >/dev/kmsg
		diag "$(log_since_mark | grep -m 8 bgraph || true)"
		fail "$what: not ended after ${secs}s"
		return 1
	fi
	QW_RC=0
	wait $pid || QW_RC=$?
	QW_OUT=$(cat "$out")
}

# qw_write_by SECS WHAT ARGS...: qw_write ARGS... through qw_by.
qw_write_by() {
	local secs=$1 what=$2
	shift 2
	qw_by "$secs" "$what" qw_write "$@"
}

# qw_write_fails WHAT ARGS...: qw_write ARGS... fails with EIO (within 30s).
qw_write_fails() {
	local what=$1
	shift
	qw_write_by 30 "$what" "$@" || return 1
	diag "$what: ${QW_OUT:-succeeded}"
	[ "$QW_RC" -ne 0 ] || { fail "$what succeeded"; return 1; }
	expect_match "$QW_OUT" "Errno 5\]" "error of $what"
}

test_qcow2_write_errors_of_the_file_device_fail_writes_not_the_image() {
	local img l s
	qw_flakey
	img=$(q2_new ff 16M cluster_size=65536)
	q2_io "$img" "write -P 0x41 0 2M"
	truncate -s 8M "$img"
	l=$(losetup -f --show "$img")
	s=$(blockdev --getsz "$l")
	dmsetup create ff-file --table "0 $s linear $l 0"
	qw_create ff "0 32768 bgraph-qcow2 /dev/mapper/ff-file"
	qw_write /dev/mapper/ff 2M:1M:0x42
	# From now on every write to the file device fails; reads pass.
	dmsetup suspend ff-file
	dmsetup reload ff-file --table "0 $s flakey $l 0 0 3600 1 error_writes"
	dmsetup resume ff-file
	mark_log
	qw_write_fails "a write in place" /dev/mapper/ff 0:4096:0x44
	qw_write_fails "a write into a new cluster" /dev/mapper/ff $((4 << 20)):64K:0x43
	qw_write_fails "a write into a new L2 table's range" /dev/mapper/ff $((12 << 20)):8192:0x45
	diag "status: $(q2_status ff)"
	diag "$(log_since_mark | grep -m 8 bgraph || true)"
	dmsetup remove ff
	q2_teardown
	# What was written and flushed before the fault is there; the image
	# may leak the clusters of the failed writes, nothing worse.
	qw_check "$img" "after write errors" leaks
	q2_io "$img" "read -P 0x41 4096 $(((2 << 20) - 4096))" "read -P 0x42 2M 1M"
}

test_qcow2_write_error_hole_in_the_file_device_leaves_no_corruption() {
	local img l x s
	q2_slow_skip
	img=$(q2_new fh 64M cluster_size=65536)
	q2_io "$img" "write -P 0x51 0 2M"
	# New clusters go past the image's end: a 1M hole of dm-error there.
	x=$(($(stat -c %s "$img") / 512))
	truncate -s 16M "$img"
	l=$(losetup -f --show "$img")
	s=$(blockdev --getsz "$l")
	dmsetup create fh-file <<-EOT
	0 $x linear $l 0
	$x 2048 error
	$((x + 2048)) $((s - x - 2048)) linear $l $((x + 2048))
	EOT
	qw_create fh "0 131072 bgraph-qcow2 /dev/mapper/fh-file"
	mark_log
	qw_write_fails "a write into a cluster in the hole" /dev/mapper/fh $((4 << 20)):64K:0x52
	qw_write_fails "a second write into the hole" /dev/mapper/fh $((40 << 20)):4096:0x53
	# In place, outside the hole: may work, or the node may have stopped
	# writing after the errors.
	qw_write_by 30 "a write in place after the errors" /dev/mapper/fh $((1 << 20)):64K:0x54
	diag "write in place after the errors: exit $QW_RC ${QW_OUT}; status: $(q2_status fh)"
	diag "$(log_since_mark | grep -m 8 bgraph || true)"
	dmsetup remove fh
	q2_teardown
	qw_check "$img" "after writes into an error hole" leaks
	q2_io "$img" "read -P 0x51 0 1M" "read -P 0x51 $(((1 << 20) + 65536)) $(((1 << 20) - 65536))"
}

# ---- out of space ---------------------------------------------------

# qw_grow NAME IMG SIZE: grow IMG's file, its loop device and node NAME's
# idea of it.
qw_grow() {
	truncate -s "$3" "$2"
	losetup -c "/dev/${Q2_LOOP[$1]}"
	dmsetup message "$1" 0 resize
}

test_qcow2_write_out_of_space_waits_until_the_file_grows() {
	local img ref ev pid i rc=0 flags
	mark_log
	img=$(q2_new os 16M cluster_size=65536)
	ref=$(mkref os 4)
	# 1M of file device: room for about 11 clusters of data.
	qw_dm os "$img" 1M
	ev=$(dmsetup info -c --noheadings -o events os)
	dd if="$ref" of=/dev/mapper/os bs=64k oflag=direct status=none 2>"$SCRATCH/dd.err" &
	pid=$!
	for i in $(seq 300); do
		flags=$(qw_flags os)
		[[ $flags == *no_space* ]] && break
		kill -0 $pid 2>/dev/null || break
		sleep 0.2
	done
	diag "status when full: $(q2_status os), after ${i} polls"
	if ! kill -0 $pid 2>/dev/null; then
		wait $pid || rc=$?
		diag "$(cat "$SCRATCH/dd.err")"
		fail "the writer ended (exit $rc) instead of waiting for space"
		return 1
	fi
	expect_match "$flags" "(^|,)no_space(,|$)" "status flags when full" || { qw_grow os "$img" 32M; return 1; }
	timeout 10 dmsetup wait os "$ev" >/dev/null ||
		{ qw_grow os "$img" 32M; fail "no dm event raised (event count was $ev)"; return 1; }
	sleep 2
	kill -0 $pid 2>/dev/null || { fail "the writer ended while out of space"; return 1; }
	expect_match "$(qw_flags os)" "no_space" "status flags while waiting"
	qw_grow os "$img" 32M
	for i in $(seq 300); do
		kill -0 $pid 2>/dev/null || break
		sleep 0.2
	done
	kill -0 $pid 2>/dev/null && { fail "the writer still waits 60s after the resize"; return 1; }
	wait $pid || rc=$?
	[ $rc -eq 0 ] || { diag "$(cat "$SCRATCH/dd.err")"; fail "the held writes failed (dd exit $rc)"; }
	expect_no_match "$(qw_flags os)" "no_space" "status flags after the resize"
	cmp <(dd if=/dev/mapper/os bs=1M count=4 iflag=direct status=none) "$ref" ||
		{ diag "$(log_since_mark | grep -m 8 bgraph || true)"; fail "data written across the wait"; }
	dmsetup remove os
	q2_teardown
	qw_check "$img" "after waiting for space"
	qw_compare "$img" "$ref" "after waiting for space"
}

# qw_wait_held NAME PID: wait until node NAME holds writes for want of
# space (status flag no_space) while PID, the writer, still runs.
qw_wait_held() {
	for _ in $(seq 300); do
		[[ $(qw_flags "$1") == *no_space* ]] && return 0
		kill -0 "$2" 2>/dev/null || break
		sleep 0.2
	done
	fail "$1: no write held for want of space (status $(q2_status "$1"))"
}

# What the documentation says of a suspend while writes wait for space: a
# --noflush suspend requeues them in dm core, and after the device grew
# the resume sends them again (they succeed, data intact); a flushing
# suspend fails them with ENOSPC, and the image stays consistent.
test_qcow2_write_held_writes_wait_across_a_noflush_suspend_fail_at_a_flushing_one() {
	local img ref pid rc=0
	img=$(q2_new sh 16M cluster_size=65536)
	ref=$(mkref sh 4)
	qw_dm sh "$img" 1M || return 1
	dd if="$ref" of=/dev/mapper/sh bs=64k oflag=direct status=none 2>"$SCRATCH/dd.err" &
	pid=$!
	qw_wait_held sh $pid || { qw_grow sh "$img" 32M; return 1; }
	dmsetup suspend --noflush sh
	kill -0 $pid 2>/dev/null || fail "the writer ended at a --noflush suspend"
	truncate -s 32M "$img"
	losetup -c "/dev/${Q2_LOOP[sh]}"
	dmsetup resume sh
	wait $pid || rc=$?
	[ $rc -eq 0 ] || { diag "$(cat "$SCRATCH/dd.err")"; fail "the requeued writes failed (dd exit $rc)"; }
	cmp <(dd if=/dev/mapper/sh bs=1M count=4 iflag=direct status=none) "$ref" ||
		fail "data written across the --noflush suspend"
	expect_no_match "$(qw_flags sh)" "no_space" "status flags after the resume"
	qw_remove sh
	qw_check "$img" "after a --noflush suspend with writes held"
	qw_compare "$img" "$ref" "after a --noflush suspend with writes held"

	img=$(q2_new sf 16M cluster_size=65536)
	qw_dm sf "$img" 1M || return 1
	dd if="$ref" of=/dev/mapper/sf bs=64k oflag=direct status=none 2>"$SCRATCH/dd.err" &
	pid=$!
	qw_wait_held sf $pid || { qw_grow sf "$img" 32M; return 1; }
	dmsetup suspend sf
	rc=0
	wait $pid || rc=$?
	[ $rc -ne 0 ] || fail "the writer succeeded across a flushing suspend with no room"
	expect_match "$(cat "$SCRATCH/dd.err")" "No space left on device" "error of the held write"
	dmsetup resume sf
	qw_remove sf
	qw_check "$img" "after a flushing suspend failed the held writes" leaks
}

test_qcow2_write_error_if_no_space_fails_writes() {
	local img ref out n
	mark_log
	img=$(q2_new oe 16M cluster_size=65536)
	ref=$(mkref oe 4)
	qw_dm oe "$img" 1M error_if_no_space
	qw_by 60 "4M written into 1M of file device with error_if_no_space" \
		dd if="$ref" of=/dev/mapper/oe bs=64k oflag=direct
	out=$QW_OUT
	diag "$out"
	[ "$QW_RC" -ne 0 ] || { fail "4M written into 1M of file device"; return 1; }
	expect_match "$out" "No space left on device" "error of the write"
	n=$(sed -n 's/^\([0-9]*\) bytes.*copied.*/\1/p' <<<"$out")
	diag "written before the error: $n bytes; status: $(q2_status oe)"
	[ "${n:-0}" -gt 0 ] || fail "nothing written: the image had room for some clusters"
	cmp -n "$n" <(dd if=/dev/mapper/oe bs=64k iflag=direct status=none) "$ref" ||
		fail "data written before the error"
	# Grown, it writes again.
	qw_grow oe "$img" 32M
	dd if="$ref" of=/dev/mapper/oe bs=64k oflag=direct status=none
	cmp <(dd if=/dev/mapper/oe bs=1M count=4 iflag=direct status=none) "$ref" ||
		{ diag "$(log_since_mark | grep -m 8 bgraph || true)"; fail "data written after the resize"; }
	dmsetup remove oe
	q2_teardown
	qw_check "$img" "after running out of space" leaks
	qw_compare "$img" "$ref" "after running out of space"
}

# ---- discard and write-zeroes ---------------------------------------

# qw_limits NAME: the node's discard and write-zeroes queue limits.
qw_limits() {
	local q
	q=/sys/block/$(devname "/dev/mapper/$1")/queue
	diag "discard_granularity $(cat "$q/discard_granularity")" \
		"discard_max_bytes $(cat "$q/discard_max_bytes")" \
		"write_zeroes_max_bytes $(cat "$q/write_zeroes_max_bytes")"
}

test_qcow2_write_discard_frees_whole_clusters() {
	local img model m=$((1 << 20)) alloc hosts
	img=$(q2_new dc 8M cluster_size=65536)
	q2_io "$img" "write -s $(q2_pat 1) 0 4M"
	model=$(qw_model "$img")
	qw_check "$img" "before the discards"
	alloc=$QW_ALLOC
	# Where the 16 clusters of [1M, 2M) are in the file: holes after.
	hosts=$(qemu-img map --output=json "$img" | python3 -c '
import json, sys
for e in json.load(sys.stdin):
    if e["data"] and "offset" in e:
        for g in range(max(e["start"], 1 << 20), min(e["start"] + e["length"], 2 << 20), 65536):
            print(e["offset"] + g - e["start"])')
	expect_eq "$(wc -w <<<"$hosts")" 16 "clusters of [1M, 2M) in the file"
	qw_dm dc "$img" 16M
	qw_limits dc
	blkdiscard -o $m -l $m /dev/mapper/dc			# 16 clusters
	blkdiscard -o $((2 * m + 4096)) -l 8192 /dev/mapper/dc	# part of one: kept
	blkdiscard -o $((3 * m - 32768)) -l 196608 /dev/mapper/dc # 2 whole, 2 parts
	blkdiscard -o $((6 * m)) -l $m /dev/mapper/dc		# nothing there
	qw_write - --ref "$model" $m:$m:0 $((3 * m)):128K:0
	qw_expect dc "$model" "after the discards"
	qw_finish dc "$img" "after the discards"
	diag "allocated clusters: $alloc before, $QW_ALLOC after"
	expect_eq "$((alloc - QW_ALLOC))" 18 "clusters freed"
	# The discards reached the file device: its file has holes there.
	# shellcheck disable=SC2086
	python3 - "$img" $hosts <<-"PY" || fail "freed clusters still hold data in the image file"
	import os, sys
	fd = os.open(sys.argv[1], os.O_RDONLY)
	def data_in(h):
	    try:
	        return os.lseek(fd, h, os.SEEK_DATA) < h + 65536
	    except OSError:	# ENXIO: no data after h
	        return False
	bad = [h for h in map(int, sys.argv[2:]) if data_in(h)]
	print("# freed clusters: %d, holes in the file: %d" % (len(sys.argv) - 2, len(sys.argv) - 2 - len(bad)))
	sys.exit(1 if bad else 0)
	PY
	qw_map "$img" 0:$m:data $m:$m:zero $((2 * m)):$m:data $((3 * m)):128K:zero \
		$((3 * m + 131072)):$((m - 131072)):data $((4 * m)):$((4 * m)):zero
}

test_qcow2_write_zeroes_set_zero_flags() {
	local img model m=$((1 << 20))
	q2_slow_skip
	img=$(q2_new wz 8M cluster_size=65536)
	q2_io "$img" "write -s $(q2_pat 1) 0 4M"
	model=$(qw_model "$img")
	qw_dm wz "$img" 16M
	qw_limits wz
	blkdiscard -z -o $m -l 512K /dev/mapper/wz			# 8 clusters
	blkdiscard -z -o $((2 * m + 4096)) -l 8192 /dev/mapper/wz	# part of one
	blkdiscard -z -o $((6 * m)) -l 128K /dev/mapper/wz		# unallocated
	qw_write - --ref "$model" $m:512K:0 $((2 * m + 4096)):8192:0
	qw_expect wz "$model" "after write-zeroes"
	qw_finish wz "$img" "after write-zeroes"
	qw_map "$img" 0:$m:data $m:512K:zero $((m + 524288)):512K:data $((6 * m)):128K:zero
}

test_qcow2_write_discard_over_backing_reads_zeros_not_backing() {
	local base img model k=1024 sum
	base=$(q2_raw dbb 4)
	sum=$(md5sum <"$base")
	img=$(q2_new db 4M cluster_size=65536 -b "$base" -F raw)
	q2_io "$img" "write -P 0x51 0 1M"
	model=$(qw_model "$img")
	qw_dm db "$img" 8M backing "$(losetup -r -f --show "$base")"
	blkdiscard -o $((512 * k)) -l $((256 * k)) /dev/mapper/db	# allocated here
	blkdiscard -o $((2048 * k)) -l $((256 * k)) /dev/mapper/db	# the backing's
	blkdiscard -z -o $((3072 * k)) -l $((128 * k)) /dev/mapper/db	# the backing's
	blkdiscard -o $((1028 * k)) -l $((8 * k)) /dev/mapper/db	# part: kept
	qw_write - --ref "$model" $((512 * k)):$((256 * k)):0 $((2048 * k)):$((256 * k)):0 \
		$((3072 * k)):$((128 * k)):0
	qw_expect db "$model" "after discards over a backing file"
	qw_finish db "$img" "after discards over a backing file"
	qw_map "$img" 0:$((512 * k)):data $((512 * k)):$((256 * k)):zero \
		$((768 * k)):$((256 * k)):data $((1024 * k)):$((1024 * k)):backing \
		$((2048 * k)):$((256 * k)):zero $((2304 * k)):$((768 * k)):backing \
		$((3072 * k)):$((128 * k)):zero $((3200 * k)):$((896 * k)):backing
	expect_eq "$(md5sum <"$base")" "$sum" "backing file"
}

# ---- copy-on-write --------------------------------------------------

test_qcow2_write_internal_snapshot_keeps_its_data() {
	local img model s1 m=$((1 << 20))
	img=$(q2_new sn 8M cluster_size=65536)
	q2_io "$img" "write -s $(q2_pat 1) 0 4M" "write -z $((5 * m)) 64k"
	qemu-img snapshot -c s1 "$img"
	s1=$SCRATCH/sn-s1.ref
	qemu-img convert -O raw -l snapshot.name=s1 "$img" "$s1"
	model=$(qw_model "$img")
	qw_dm sn "$img" 16M
	# Into shared clusters (copied first), twice into one of them (in
	# place the second time), into a shared zero cluster, into new ones.
	qw_write /dev/mapper/sn --ref "$model" 4096:4096:r1 $m:$m:r2 8192:4096:r3 \
		$((5 * m + 4096)):4096:r4 $((6 * m)):64K:r5 $((4 * m - 512)):1024:r6
	qw_expect sn "$model" "after writes over snapshot s1"
	qw_finish sn "$img" "after writes over snapshot s1"
	qemu-img convert -O raw -l snapshot.name=s1 "$img" "$SCRATCH/sn-s1-after.ref"
	cmp -s "$s1" "$SCRATCH/sn-s1-after.ref" ||
		{ q2_diff "$SCRATCH/sn-s1-after.ref" "$s1"; fail "snapshot s1 changed"; }
	expect_match "$(qemu-img snapshot -l "$img")" " s1 " "snapshot list"
}

test_qcow2_write_extended_l2_allocates_subclusters_over_backing() {
	local base img model k=1024
	base=$(q2_raw xb 4)
	img=$(q2_new xl 4M extended_l2=on,cluster_size=65536 -b "$base" -F raw)
	# Cluster 2 whole, subcluster 1 of cluster 3 (2K subclusters).
	q2_io "$img" "write -P 0x61 $((128 * k)) 64k" "write -P 0x62 $((194 * k)) 2k"
	model=$(qw_model "$img")
	qw_dm xl "$img" 8M backing "$(losetup -r -f --show "$base")"
	# 4k writes into new clusters, 512 bytes inside a subcluster (the
	# rest of it copied from backing), new subclusters of an allocated
	# cluster, in place, and across clusters 5 and 6.
	qw_write /dev/mapper/xl --ref "$model" 0:4096:r1 $((72 * k)):4096:r2 \
		$((84 * k + 512)):512:r3 $((198 * k)):4096:r4 $((132 * k)):4096:r5 \
		$((382 * k)):4096:r6
	qw_expect xl "$model" "after subcluster writes"
	qw_finish xl "$img" "after subcluster writes"
	qw_map "$img" 0:$((4 * k)):data $((4 * k)):$((68 * k)):backing \
		$((72 * k)):$((4 * k)):data $((76 * k)):$((8 * k)):backing \
		$((84 * k)):$((2 * k)):data $((86 * k)):$((42 * k)):backing \
		$((128 * k)):$((64 * k)):data $((192 * k)):$((2 * k)):backing \
		$((194 * k)):$((2 * k)):data $((196 * k)):$((2 * k)):backing \
		$((198 * k)):$((4 * k)):data $((202 * k)):$((180 * k)):backing \
		$((382 * k)):$((4 * k)):data $((386 * k)):$((62 * k)):backing
}

# ---- header bits ----------------------------------------------------

test_qcow2_write_dirty_or_corrupt_image_refused_writable() {
	local img good b l log
	img=$(q2_new dy 4M cluster_size=65536)
	q2_io "$img" "write -P 0x71 0 1M"
	qw_probe
	good=$(qw_model "$img")
	"$QBREAK" "$img" batch - <<-EOF
	$SCRATCH/dirty.img header incompatible_features cur|1
	$SCRATCH/corrupt.img header incompatible_features cur|2
	EOF
	for b in dirty corrupt; do
		truncate -s 8M "$SCRATCH/$b.img"
		l=$(losetup -f --show "$SCRATCH/$b.img")
		mark_log
		expect_fail dmsetup create "$b" --table "0 8192 bgraph-qcow2 $l"
		log=$(log_since_mark)
		diag "$(grep bgraph-qcow2 <<<"$log")"
		expect_match "$log" "bgraph-qcow2: .*qemu-img check -r all" "reason $b is refused writable"
		expect_no_match "$log" "$Q2_SPLAT" "kernel log"
		[ ! -e "/dev/mapper/$b" ] || fail "device $b left behind"
		[ ! -e "$CFS/nodes/$b" ] || fail "graph node $b left behind"
		# Read-only, it loads and reads.
		dmsetup create --readonly "$b" --table "0 8192 bgraph-qcow2 $l"
		cmp "$good" "/dev/mapper/$b" || fail "data of $b read-only"
		expect_match "$(qw_flags "$b")" "$b" "status flags of $b"
	done
}

# qw_incompat IMG: the header's incompatible feature bits.
qw_incompat() {
	local v
	v=$(od -An -j72 -N8 -t u8 --endian=big "$1") || return 1
	echo $((v))
}

test_qcow2_write_lazy_refcounts_image_dirty_while_written_clean_after() {
	local img model bits
	img=$(q2_new lz 8M cluster_size=65536,lazy_refcounts=on)
	q2_io "$img" "write -P 0x72 1M 1M"
	model=$(qw_model "$img")
	qw_dm lz "$img" 16M
	qw_write /dev/mapper/lz --ref "$model" 0:1M:r1 $((3 << 20)):4096:r2 $((1 << 20)):64K:r3
	bits=$(qw_incompat "$img")
	diag "incompatible features while written: $bits, status: $(q2_status lz)"
	[ $((bits & 1)) = 1 ] || fail "image not marked dirty while written"
	# A suspend writes everything back and clears the bit; the next
	# allocating write sets it again.
	dmsetup suspend lz
	bits=$(qw_incompat "$img")
	[ $((bits & 1)) = 0 ] || fail "image still dirty while suspended (incompatible features $bits)"
	qw_check "$img" "lazy refcounts image while suspended"
	dmsetup resume lz
	qw_write /dev/mapper/lz --ref "$model" $((5 << 20)):4096:r4
	bits=$(qw_incompat "$img")
	[ $((bits & 1)) = 1 ] || fail "image not marked dirty again after the resume"
	qw_expect lz "$model" "lazy refcounts image"
	qw_finish lz "$img" "lazy refcounts image after removal"
	bits=$(qw_incompat "$img")
	[ $((bits & 1)) = 0 ] || fail "image still dirty after removal (incompatible features $bits)"
}

# ---- the table ------------------------------------------------------

test_qcow2_write_read_only_option_refuses_writes() {
	local base img sum out
	qw_probe
	base=$(q2_raw rob 4)
	img=$(q2_new ro 4M cluster_size=65536 -b "$base" -F raw)
	q2_io "$img" "write -P 0x31 0 1M"
	qw_dm ro "$img" 8M backing "$(losetup -r -f --show "$base")" read_only
	sum=$(md5sum <"$img")
	out=$(dd if=/dev/zero of=/dev/mapper/ro bs=4k count=1 oflag=direct 2>&1) &&
		fail "a write to a read_only node succeeded"
	diag "$out"
	expect_match "$out" "Input/output error|Read-only file system|Operation not permitted" "write refused"
	out=$(dd if=/dev/zero of=/dev/mapper/ro bs=4k count=1 seek=300 conv=fsync 2>&1) &&
		fail "a buffered write to a read_only node succeeded"
	expect_fail blkdiscard -o 0 -l 1M /dev/mapper/ro
	expect_fail blkdiscard -z -o 2M -l 1M /dev/mapper/ro
	expect_eq "$(md5sum <"$img")" "$sum" "image after the writes"
	expect_match "$(dmsetup table ro)" " read_only( |$)" "table"
	q2_same ro "$img" "read_only node"
}

test_qcow2_write_table_flags_round_trip() {
	local base lb n img t w c rest opts o
	q2_slow_skip
	qw_probe
	base=$(q2_raw tfb 4)
	lb=$(losetup -r -f --show "$base")
	n=0
	for opts in "read_only" "error_if_no_space" \
		"backing $lb l2_cache_size 128K read_only error_if_no_space"; do
		n=$((n + 1))
		img=$(q2_new "tf$n" 4M cluster_size=65536 -b "$base" -F raw)
		# shellcheck disable=SC2086
		qw_dm "tf$n" "$img" 8M $opts
		t=$(dmsetup table "tf$n")
		# <start> <len> bgraph-qcow2 <file> <count> <words>...
		read -r _ _ _ _ c rest <<<"$t"
		w=$(wc -w <<<"$rest")
		expect_eq "$c" "$w" "option count of '$t'"
		for o in $opts; do
			case $o in
			/dev/*) o="backing $(cat "/sys/block/${o#/dev/}/dev")" ;;
			128K) o="l2_cache_size 131072" ;;
			backing | l2_cache_size) continue ;;
			esac
			[[ " $rest " == *" $o "* ]] || fail "'$o' not in table '$t'"
		done
		dmsetup reload "tf$n" --table "$t"
		dmsetup resume "tf$n"
		expect_eq "$(dmsetup table "tf$n")" "$t" "table after a reload of itself"
	done
}
