#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# bgraph-quorum's reads and writes: writes reach every child whole, reads
# are voted per 128 KiB (fifo reads one child), flush and discard reach
# every child.

# shellcheck source=lib-quorum.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-quorum.sh"

q_writes() { q_iostat "$1" 5; }

# ---- reads and writes -----------------------------------------------

test_fio_verify_through_quorum_leaves_the_children_equal() {
	local l
	q_begin
	mapfile -t l < <(q_loops 3)
	q_create qn 2 "" "${l[@]}"
	fio_ok --name=qv --filename=/dev/mapper/qn --rw=randwrite --bsrange=4k-64k \
		--numjobs=4 --size=$((FIO_MB / 4))M --offset_increment=$((FIO_MB / 4))M \
		--ioengine=libaio --iodepth=16 --direct=1 --verify=crc32c \
		--verify_fatal=1 --do_verify=1
	cmp "${l[0]}" "${l[1]}" || fail "children 0 and 1 differ"
	cmp "${l[0]}" "${l[2]}" || fail "children 0 and 2 differ"
	q_stats_want qn 0 "children.0:${l[0]##*/}:0:0:0" \
		"children.1:${l[1]##*/}:0:0:0" "children.2:${l[2]##*/}:0:0:0"
}

test_quorum_reads_every_child_and_fifo_only_the_first() {
	local l r0 r1 r2
	q_begin
	mapfile -t l < <(q_loops 3)
	q_create qn 2 "" "${l[@]}"
	r0=$(q_reads "${l[0]}") r1=$(q_reads "${l[1]}") r2=$(q_reads "${l[2]}")
	q_read /dev/mapper/qn 0 65536 /dev/null
	[ "$(q_reads "${l[0]}")" -gt "$r0" ] || fail "read-pattern quorum: child 0 not read"
	[ "$(q_reads "${l[1]}")" -gt "$r1" ] || fail "read-pattern quorum: child 1 not read"
	[ "$(q_reads "${l[2]}")" -gt "$r2" ] || fail "read-pattern quorum: child 2 not read"
	dmsetup reload qn --table "0 $Q_SECTORS bgraph-quorum 2 3 ${l[*]} 2 read-pattern fifo"
	dmsetup resume qn
	r0=$(q_reads "${l[0]}") r1=$(q_reads "${l[1]}") r2=$(q_reads "${l[2]}")
	q_read /dev/mapper/qn 0 65536 /dev/null
	[ "$(q_reads "${l[0]}")" -gt "$r0" ] || fail "read-pattern fifo: child 0 not read"
	expect_eq "$(q_reads "${l[1]}")" "$r1" "read-pattern fifo: reads of child 1"
	expect_eq "$(q_reads "${l[2]}")" "$r2" "read-pattern fifo: reads of child 2"
}

test_flush_and_discard_reach_every_child() {
	local l n before=()
	q_begin
	mapfile -t l < <(q_loops 3)
	q_create qn 2 "" "${l[@]}"
	q_fill qn >/dev/null
	# Field 16 of /sys/block/*/stat: flush requests completed.
	for n in 0 1 2; do
		before[n]=$(awk '{ print $16 }' "/sys/block/${l[$n]##*/}/stat")
	done
	python3 -c 'import os; f = os.open("/dev/mapper/qn", os.O_WRONLY); os.fsync(f)'
	for n in 0 1 2; do
		[ "$(awk '{ print $16 }' "/sys/block/${l[$n]##*/}/stat")" -gt "${before[$n]}" ] ||
			fail "no flush reached child $n"
	done
	blkdiscard -o 0 -l 1M /dev/mapper/qn
	for n in 0 1 2; do
		cmp <(head -c 1M /dev/zero) <(dd if="${l[$n]}" bs=1M count=1 iflag=direct status=none) ||
			fail "discarded range of child $n is not zero"
	done
}

# A write goes to each child whole, as it would to the child alone (md
# raid1's way; a child such as a virtio disk pays per request); a read
# with read-pattern quorum is voted on in pieces of 128 KiB.
test_a_write_reaches_each_child_whole_and_reads_are_voted_per_128k() {
	local l n d0 before=() mm segs most
	q_begin
	mapfile -t l < <(q_loops 3)
	for n in 0 1 2; do
		cat "/sys/block/${l[$n]##*/}/queue/max_hw_sectors_kb" \
			>"/sys/block/${l[$n]##*/}/queue/max_sectors_kb"
	done
	[ "$(cat "/sys/block/${l[0]##*/}/queue/max_sectors_kb")" -ge 1024 ] ||
		skip "loop devices take requests of less than 1 MiB here"
	q_create qn 2 "" "${l[@]}"
	Q_REF=$(q_fill qn)
	# The same MiB of zeros at 8 MiB: on child 0 alone, then through qn.
	before[0]=$(q_writes "${l[0]}")
	dd if=/dev/zero of="${l[0]}" bs=1M seek=8 count=1 oflag=direct status=none
	d0=$(($(q_writes "${l[0]}") - before[0]))
	for n in 0 1 2; do
		before[n]=$(q_writes "${l[$n]}")
	done
	dd if=/dev/zero of=/dev/mapper/qn bs=1M seek=8 count=1 oflag=direct status=none
	# How many segments (and so requests) a 1 MiB write needs depends on
	# how contiguous dd's pages happen to be, from one dd to the next:
	# allow what the child alone took, or what 256 separate pages take,
	# whichever is more.  Cut at 128 KiB, the write would be 8 requests.
	segs=$(cat "/sys/block/${l[0]##*/}/queue/max_segments")
	most=$(((256 + segs - 1) / segs))
	[ "$d0" -le "$most" ] || most=$d0
	[ "$most" -lt 8 ] || skip "a 1 MiB write may take 8 requests on these loop devices"
	for n in 0 1 2; do
		[ "$(($(q_writes "${l[$n]}") - before[n]))" -le "$most" ] ||
			fail "write requests to child $n for one 1 MiB write:" \
				"$(($(q_writes "${l[$n]}") - before[n])), child alone $d0," \
				"256 pages in segments of $segs: $most"
	done
	# Child 1 broken in two 128 KiB pieces of one 1 MiB read: two votes lost.
	q_corrupt "${l[1]}" $((1 << 20)) 4096 0xff
	q_corrupt "${l[1]}" $(((1 << 20) + (512 << 10))) 4096 0xff
	q_read /dev/mapper/qn $((1 << 20)) $((1 << 20)) "$SCRATCH/got"
	cmp "$SCRATCH/got" <(q_slice "$Q_REF" $((1 << 20)) $((1 << 20))) ||
		fail "read returned wrong data"
	q_stats_want qn 0 "children.0:${l[0]##*/}:0:0:0" \
		"children.1:${l[1]##*/}:2:0:0" "children.2:${l[2]##*/}:0:0:0"
	mm=$(q_mm "${l[1]}")
	expect_match "$(dmsetup status qn)" " $mm 2 0 0 " "status of child 1"
}
