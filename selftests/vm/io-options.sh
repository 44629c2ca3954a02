#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# QEMU's node options discard (ignore/unmap) and detect-zeroes
# (off/on/unmap) on bgraph-raw and bgraph-qcow2: what reaches the image or
# the file under the loop device, seen by qemu-img map and by the file's
# extents (SEEK_DATA for holes, filefrag for unwritten extents).

# shellcheck source=lib-qcow2-write.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-qcow2-write.sh"

# io_hole FILE OFF LEN: is [OFF, OFF + LEN) of FILE a hole?
io_hole() {
	python3 - "$@" <<-"PY"
	import os, sys
	fd = os.open(sys.argv[1], os.O_RDONLY)
	off, n = int(sys.argv[2]), int(sys.argv[3])
	try:
	    sys.exit(0 if os.lseek(fd, off, os.SEEK_DATA) >= off + n else 1)
	except OSError:
	    sys.exit(0)
	PY
}

# io_unwritten FILE OFF LEN: is all of [OFF, OFF + LEN) of FILE in
# unwritten extents (allocated, reading zeros)?
io_unwritten() {
	filefrag -v -b1 "$1" | python3 -c '
import re, sys
off, n = int(sys.argv[1]), int(sys.argv[2])
covered = 0
for line in sys.stdin:
    m = re.match(r"\s*\d+:\s*(\d+)\.\.\s*(\d+):\s*\d+\.\.\s*\d+:\s*(\d+):?(.*)", line)
    if not m:
        continue
    s, e = int(m.group(1)), int(m.group(2)) + 1
    lo, hi = max(s, off), min(e, off + n)
    if lo < hi and "unwritten" in m.group(4):
        covered += hi - lo
sys.exit(0 if covered == n else 1)' "$2" "$3"
}

# io_raw NAME FILE OPTS...: a bgraph-raw node NAME over a loop device on
# FILE (made 8 MiB of random data), with the optional arguments OPTS.
io_raw() {
	local name=$1 f=$2 l
	shift 2
	head -c 8M /dev/urandom >"$f"
	l=$(losetup -f --show "$f") || return 1
	dmsetup create "$name" --table "0 16384 bgraph-raw $l${1:+ $# $*}" ||
		{ fail "table of $name refused"; return 1; }
}

test_raw_detect_zeroes_makes_zero_writes_write_zeroes() {
	local m=$((1 << 20)) d
	io_raw dzoff "$SCRATCH/dzoff.img"
	io_raw dzon "$SCRATCH/dzon.img" detect_zeroes on
	io_raw dzun "$SCRATCH/dzun.img" detect_zeroes unmap
	for d in dzoff dzon dzun; do
		qw_write /dev/mapper/$d $m:$m:0 $((3 * m)):64K:0x5a ||
			fail "writes through $d"
		cmp -s -n $m -i 0:$m /dev/zero /dev/mapper/$d ||
			fail "$d does not read the zeros written"
	done
	expect_match "$(dmsetup table dzun)" " 2 detect_zeroes unmap$" "dzun table"
	# off: zeros written as data; on: unwritten extents; unmap: a hole.
	io_hole "$SCRATCH/dzoff.img" $m $m && fail "off: a hole where zeros were written"
	io_unwritten "$SCRATCH/dzoff.img" $m $m && fail "off: unwritten extents"
	io_unwritten "$SCRATCH/dzon.img" $m $m || fail "on: not unwritten extents"
	io_hole "$SCRATCH/dzun.img" $m $m || fail "unmap: no hole where zeros were written"
	# A write that is not zeros is written as it is.
	for d in dzon dzun; do
		expect_eq "$(od -An -tx1 -N1 -j $((3 * m)) "$SCRATCH/$d.img" | tr -d ' ')" 5a "$d data write"
	done
	q2_teardown
}

test_raw_discard_ignore_keeps_the_data() {
	local m=$((1 << 20)) sum
	io_raw dign "$SCRATCH/dign.img" discard ignore
	io_raw dmap "$SCRATCH/dmap.img"
	sum=$(dd if=/dev/mapper/dign bs=1M skip=1 count=1 iflag=direct status=none | md5sum)
	blkdiscard -o $m -l $m /dev/mapper/dign || fail "discard on dign"
	blkdiscard -o $m -l $m /dev/mapper/dmap || fail "discard on dmap"
	expect_eq "$(dd if=/dev/mapper/dign bs=1M skip=1 count=1 iflag=direct status=none | md5sum)" \
		"$sum" "dign reads its data after the discard"
	io_hole "$SCRATCH/dign.img" $m $m && fail "ignore: the discard reached the file"
	io_hole "$SCRATCH/dmap.img" $m $m || fail "unmap: the discard did not reach the file"
	expect_match "$(dmsetup table dign)" " 2 discard ignore$" "dign table"
	q2_teardown
}

test_io_options_refused_with_a_reason() {
	local l
	l=$(mkloop bad 8)
	mark_log
	expect_fail dmsetup create bad --table "0 16384 bgraph-raw $l 4 discard ignore detect_zeroes unmap"
	expect_match "$(log_since_mark)" "detect_zeroes unmap needs discard unmap" "reason for raw"
	mark_log
	expect_fail dmsetup create bad --table "0 16384 bgraph-raw $l 2 detect_zeroes yes"
	expect_match "$(log_since_mark)" "Invalid detect_zeroes: off, on or unmap" "reason for a bad value"
	dm_any && fail "a device was left: $(dmsetup ls)"
	q2_teardown
}

# One image of 64 KiB clusters, 4 MiB of data; the same writes through
# nodes with detect_zeroes off, on and unmap: whole clusters of zeros,
# over data and over unallocated clusters, a part of one, and data.
test_qcow2_detect_zeroes_makes_zero_clusters() {
	local m=$((1 << 20)) img model dz alloc0
	local -A alloc=()
	for dz in off on unmap; do
		img=$(q2_new dz$dz 8M cluster_size=65536)
		q2_io "$img" "write -s $(q2_pat 1) 0 4M"
		qw_check "$img" "before"
		alloc0=$QW_ALLOC
		model=$(qw_model "$img")
		qw_dm dz$dz "$img" 16M detect_zeroes $dz
		qw_write /dev/mapper/dz$dz --ref "$model" $m:512K:0 $((6 * m)):256K:0 \
			$((2 * m + 4096)):8192:0 $((3 * m)):64K:0x5a ||
			fail "$dz: writes"
		qw_expect dz$dz "$model" "$dz: after the writes"
		qw_finish dz$dz "$img" "$dz: after the writes"
		alloc[$dz]=$((QW_ALLOC - alloc0))
		case $dz in
		off)	qw_map "$img" $m:512K:data $((6 * m)):256K:data ;;
		*)	qw_map "$img" $m:512K:zero $((6 * m)):256K:zero ;;
		esac
		qw_map "$img" $((2 * m)):64K:data $((3 * m)):64K:data
	done
	diag "clusters allocated by the writes: off ${alloc[off]}, on ${alloc[on]}, unmap ${alloc[unmap]}"
	# off allocates the 4 unallocated clusters; on keeps the 8 it zeroes;
	# unmap frees them.
	expect_eq "${alloc[off]}" 4 "off: clusters allocated"
	expect_eq "${alloc[on]}" 0 "on: clusters allocated"
	expect_eq "${alloc[unmap]}" -8 "unmap: clusters allocated"
}
