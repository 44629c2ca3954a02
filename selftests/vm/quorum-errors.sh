#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# bgraph-quorum with failing children: I/O errors outvoted, counted and
# reported, writes below the threshold failed, flushes and discards voted.

# shellcheck source=lib-quorum.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-quorum.sh"

# q_fsync DEV: fsync(2) DEV (a flush); the exit status is its success.
q_fsync() {
	python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_WRONLY); os.fsync(fd)' "$1"
}

# ---- failing children -----------------------------------------------

test_a_failing_child_is_outvoted_and_counted_in_io_errors() {
	local l c2 ref out
	q_begin
	mapfile -t l < <(q_loops 3)
	c2=$(q_linear qlin2 "${l[2]}")
	q_create qn 2 "" "${l[0]}" "${l[1]}" "$c2"
	ref=$(q_fill qn)
	q_break qlin2
	q_mark_log
	q_read /dev/mapper/qn $Q_RD_OFF 4096 "$SCRATCH/got"
	cmp "$SCRATCH/got" <(q_slice "$ref" $Q_RD_OFF 4096) || fail "read returned wrong data"
	q_stats_want qn 0 "children.0:${l[0]##*/}:0:0:0" \
		"children.1:${l[1]##*/}:0:0:0" "children.2:qlin2:0:0:1"
	head -c 4096 /dev/urandom >"$SCRATCH/new"
	dd if="$SCRATCH/new" of=/dev/mapper/qn bs=4096 seek=$((Q_RD_OFF / 4096)) oflag=direct status=none ||
		fail "write with one child of three failing"
	q_stats_want qn 0 "children.0:${l[0]##*/}:0:0:0" \
		"children.1:${l[1]##*/}:0:0:0" "children.2:qlin2:0:0:2"
	q_read /dev/mapper/qn $Q_RD_OFF 4096 "$SCRATCH/got"
	cmp "$SCRATCH/got" "$SCRATCH/new" || fail "the write did not read back"
	q_read "${l[0]}" $Q_RD_OFF 4096 "$SCRATCH/got"
	cmp "$SCRATCH/got" "$SCRATCH/new" || fail "the write did not reach child 0"
	out=$(log_since_mark)
	expect_match "$out" "bgraph-quorum: qn: children\\.2 \\(qlin2\\): write error -5 at sector $((Q_RD_OFF / 512))\\+8" "kernel log of the write"
}

test_an_io_error_is_reported_by_uevent() {
	local l c2 ev
	q_begin
	mapfile -t l < <(q_loops 3)
	c2=$(q_linear qlin2 "${l[2]}")
	q_create qn 2 "" "${l[0]}" "${l[1]}" "$c2"
	q_break qlin2
	q_listen
	q_read /dev/mapper/qn $Q_RD_OFF 4096 /dev/null
	ev=$(q_event "BGRAPH_EVENT=QUORUM_REPORT_BAD")
	expect_eq "$ev" "change $(devname /dev/mapper/qn) BGRAPH_CHILD=qlin2 BGRAPH_ERROR=5 BGRAPH_EVENT=QUORUM_REPORT_BAD BGRAPH_NODE=qn BGRAPH_OP=read BGRAPH_ROLE=children.2 BGRAPH_SECTOR=$((Q_RD_OFF / 512)) BGRAPH_SECTORS=8" \
		"the uevent"
}

test_a_write_fails_when_fewer_than_threshold_children_succeed() {
	local l c2 out
	q_begin
	mapfile -t l < <(q_loops 3)
	c2=$(q_linear qlin2 "${l[2]}")
	q_create qn 3 "" "${l[0]}" "${l[1]}" "$c2"
	q_break qlin2
	q_mark_log
	if out=$(dd if=/dev/urandom of=/dev/mapper/qn bs=4096 count=1 oflag=direct status=none 2>&1); then
		fail "write succeeded on 2 children of 3 with threshold 3"
	fi
	expect_match "$out" "Input/output error" "error of the write"
	q_stats_want qn 1 "children.0:${l[0]##*/}:0:0:0" \
		"children.1:${l[1]##*/}:0:0:0" "children.2:qlin2:0:0:1"
	expect_match "$(log_since_mark)" "bgraph-quorum: qn: quorum failure: write at sector 0\\+8: -5" "kernel log"
}

# A flush and a discard are votes too: each child that fails one is
# counted and reported with the operation's name; the node's request
# fails when fewer than the threshold succeed.  The failing child is
# dm-flakey always down with error_writes: it fails every write, flushes
# and discards too (it keeps its device's write cache, where dm's error
# target has none, and the block layer would answer a flush to it
# without sending one).
test_flushes_and_discards_are_voted_and_a_failing_child_reported() {
	local l f s ev out
	q_begin
	q_dm_module flakey
	mapfile -t l < <(q_loops 3)
	s=$(blockdev --getsz "${l[2]}")
	dmsetup create qflk2 --table "0 $s flakey ${l[2]} 0 0 3600 1 error_writes"
	f=/dev/mapper/qflk2
	q_create qn 2 "" "${l[0]}" "${l[1]}" "$f"
	q_listen
	q_mark_log
	blkdiscard -o $Q_RD_OFF -l $Q_RD_LEN /dev/mapper/qn ||
		fail "discard with 2 children of 3 working"
	ev=$(q_event "BGRAPH_OP=discard")
	expect_eq "$ev" "change $(devname /dev/mapper/qn) BGRAPH_CHILD=qflk2 BGRAPH_ERROR=5 BGRAPH_EVENT=QUORUM_REPORT_BAD BGRAPH_NODE=qn BGRAPH_OP=discard BGRAPH_ROLE=children.2 BGRAPH_SECTOR=$((Q_RD_OFF / 512)) BGRAPH_SECTORS=$((Q_RD_LEN / 512))" \
		"the discard's uevent"
	q_fsync /dev/mapper/qn || fail "flush with 2 children of 3 working"
	ev=$(q_event "BGRAPH_OP=flush")
	expect_match "$ev" "BGRAPH_CHILD=qflk2 BGRAPH_ERROR=5 BGRAPH_EVENT=QUORUM_REPORT_BAD BGRAPH_NODE=qn BGRAPH_OP=flush BGRAPH_ROLE=children\\.2 " \
		"the flush's uevent"
	q_stats_want qn 0 "children.0:${l[0]##*/}:0:0:0" \
		"children.1:${l[1]##*/}:0:0:0" "children.2:qflk2:0:0:2"
	out=$(log_since_mark)
	expect_match "$out" "qn: children\\.2 \\(qflk2\\): discard error -5 at sector $((Q_RD_OFF / 512))\\+$((Q_RD_LEN / 512))" "log of the discard"
	expect_match "$out" "qn: children\\.2 \\(qflk2\\): flush error -5" "log of the flush"
	dmsetup remove qn
	# Threshold 3: both fail.
	q_create qn 3 "" "${l[0]}" "${l[1]}" "$f"
	q_mark_log
	if out=$(blkdiscard -o $Q_RD_OFF -l $Q_RD_LEN /dev/mapper/qn 2>&1); then
		fail "discard succeeded on 2 children of 3 with threshold 3"
	fi
	q_fsync /dev/mapper/qn 2>/dev/null && fail "flush succeeded on 2 children of 3 with threshold 3"
	expect_eq "$(q_stat qn - quorum_failures)" 2 "quorum failures"
	out=$(log_since_mark)
	expect_match "$out" "qn: quorum failure: discard at sector $((Q_RD_OFF / 512))\\+$((Q_RD_LEN / 512)): -5" "log of the failed discard"
	expect_match "$out" "qn: quorum failure: flush at sector [0-9]+\\+0: -5" "log of the failed flush"
}

# One child of three on dm-flakey, up 1 s and down 1 s (its writes fail
# while down; its reads then return what it has, stale where a write
# failed), for 6 s of fio verify: reads and writes go on with two
# children, the flaky child's failures are counted, its stale reads are
# outvoted, and the two good children end equal.
test_fio_verify_goes_on_while_a_child_is_flaky() {
	local l s
	q_begin
	q_dm_module flakey
	mapfile -t l < <(q_loops 3)
	s=$(blockdev --getsz "${l[2]}")
	dmsetup create qflk2 --table "0 $s flakey ${l[2]} 0 1 1 1 error_writes"
	q_create qn 2 "" "${l[0]}" "${l[1]}" /dev/mapper/qflk2
	fio_ok --name=qf --filename=/dev/mapper/qn --rw=randrw --bsrange=4k-64k \
		--numjobs=2 --size=$((FIO_MB / 2))M --offset_increment=$((FIO_MB / 2))M \
		--ioengine=libaio --iodepth=8 --direct=1 --verify=crc32c \
		--verify_backlog=32 --verify_fatal=1 --time_based --runtime=6 ||
		fail "fio through the node with a flaky child"
	[ "$(q_stat qn children.2 io_errors)" -gt 0 ] || fail "no I/O errors counted for the flaky child"
	expect_eq "$(q_stat qn children.0 io_errors)" 0 "I/O errors of child 0"
	expect_eq "$(q_stat qn children.1 io_errors)" 0 "I/O errors of child 1"
	expect_eq "$(q_stat qn - quorum_failures)" 0 "quorum failures"
	cmp "${l[0]}" "${l[1]}" || fail "children 0 and 1 differ"
	diag "$(cat "$CFS/nodes/qn/stats")"
}
