#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# bgraph-quorum's live child changes (add_child, remove_child messages):
# refusals, the edge and I/O, waiting for writes in flight, reloads after
# them, and all of it under fio with corruption.

# shellcheck source=lib-quorum.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-quorum.sh"

# q_msg_refused NODE REASON MSG...: message MSG to NODE fails with REASON
# in the kernel log.
q_msg_refused() {
	local node=$1 why=$2
	shift 2
	mark_log
	expect_fail dmsetup message "$node" 0 "$@"
	expect_match "$(log_since_mark)" "bgraph-quorum.*$why" "reason for '$*'"
}

# q_delay NAME DEV MS: a dm-delay device over DEV whose writes (and
# flushes) take MS ms, reads none; prints its path.
q_delay() {
	dmsetup create "$1" --table \
		"0 $(blockdev --getsz "$2") delay $2 0 0 $2 0 $3" && echo "/dev/mapper/$1"
}

# q_held_writes NAME: the writes dm-delay device NAME holds now (its
# status: reads, writes and flushes held).  Its queue keeps no in-flight
# count (iostats 0 on 6.1).
q_held_writes() {
	dmsetup status "$1" | awk '{ print $5 }'
}

# q_wait_held NAME: wait until dm-delay device NAME holds a write.
q_wait_held() {
	for _ in $(seq 100); do
		[ "$(q_held_writes "$1")" -gt 0 ] && return 0
		sleep 0.1
	done
	diag "status of $1: $(dmsetup status "$1")"
	fail "no write held by $1"
}

# ---- live child changes ---------------------------------------------

test_remove_child_refused_below_the_threshold_or_for_no_such_child() {
	local l
	q_begin
	mapfile -t l < <(q_loops 3)
	q_create qn 3 "" "${l[@]}"
	q_msg_refused qn "remove_child children.2 refused: The number of children cannot be lower than the vote threshold" \
		remove_child 2
	dmsetup reload qn --table "0 $Q_SECTORS bgraph-quorum 2 3 ${l[*]}"
	dmsetup resume qn
	q_msg_refused qn "remove_child: no child children.3" remove_child 3
	q_msg_refused qn "remove_child: not a child index: x" remove_child x
	expect_eq "$(q_graph qn)" \
		"qn children.0 ${l[0]##*/};qn children.1 ${l[1]##*/};qn children.2 ${l[2]##*/};" "graph"
	expect_eq "$(dmsetup table qn)" "0 $Q_SECTORS bgraph-quorum 2 3 $(q_mm "${l[0]}") $(q_mm "${l[1]}") $(q_mm "${l[2]}")" "table"
}

test_remove_child_drops_the_edge_and_stops_io_to_it() {
	local l sum
	q_begin
	mapfile -t l < <(q_loops 3)
	q_create qn 2 "" "${l[@]}"
	q_fill qn >/dev/null
	dmsetup message qn 0 remove_child 2
	expect_eq "$(q_graph qn)" \
		"qn children.0 ${l[0]##*/};qn children.1 ${l[1]##*/};" "graph"
	expect_eq "$(dmsetup table qn)" "0 $Q_SECTORS bgraph-quorum 2 2 $(q_mm "${l[0]}") $(q_mm "${l[1]}")" "table"
	sum=$(md5sum <"${l[2]}")
	dd if=/dev/urandom of=/dev/mapper/qn bs=64k count=16 oflag=direct status=none
	python3 -c 'import os; f = os.open("/dev/mapper/qn", os.O_WRONLY); os.fsync(f)'
	expect_eq "$(md5sum <"${l[2]}")" "$sum" "content of the removed child"
	cmp <(dd if="${l[0]}" bs=64k count=16 iflag=direct status=none) \
		<(dd if=/dev/mapper/qn bs=64k count=16 iflag=direct status=none) ||
		fail "the write did not reach child 0"
}

test_add_child_appends_at_the_next_index_and_gets_writes() {
	local l extra
	q_begin
	mapfile -t l < <(q_loops 3)
	extra=$(mkloop extra "$Q_MB")
	q_create qn 2 "" "${l[@]}"
	q_fill qn >/dev/null
	dmsetup message qn 0 remove_child 2
	# In sync as the user declares it: a copy of child 0.
	dd if="${l[0]}" of="$extra" bs=1M iflag=direct oflag=direct status=none
	dmsetup message qn 0 add_child "$extra"
	expect_eq "$(q_graph qn)" \
		"qn children.0 ${l[0]##*/};qn children.1 ${l[1]##*/};qn children.3 ${extra##*/};" \
		"graph"
	expect_eq "$(dmsetup table qn)" \
		"0 $Q_SECTORS bgraph-quorum 2 3 $(q_mm "${l[0]}") $(q_mm "${l[1]}") $(q_mm "$extra")" "table"
	head -c 1M /dev/urandom >"$SCRATCH/new"
	dd if="$SCRATCH/new" of=/dev/mapper/qn bs=1M seek=2 oflag=direct status=none
	cmp "$SCRATCH/new" <(dd if="$extra" bs=1M skip=2 count=1 iflag=direct status=none) ||
		fail "the write did not reach the added child"
	q_read /dev/mapper/qn 0 $((4 << 20)) /dev/null
	q_stats_want qn 0 "children.0:${l[0]##*/}:0:0:0" \
		"children.1:${l[1]##*/}:0:0:0" "children.3:${extra##*/}:0:0:0"
}

# remove_child returns only once the writes sent to that child have
# ended (QEMU drains the node around a child change): the child is
# dm-delay holding writes 1.5 s, and one write is in flight on it when
# the message is sent.  After the message nothing is in flight on it,
# the write is on it, and it gets nothing more.
test_remove_child_returns_once_its_writes_in_flight_have_ended() {
	local l c2 pid sum
	q_begin
	q_dm_module delay
	mapfile -t l < <(q_loops 3)
	c2=$(q_delay qdel2 "${l[2]}" 1500)
	q_create qn 2 "" "${l[0]}" "${l[1]}" "$c2"
	head -c 4096 /dev/urandom >"$SCRATCH/new"
	dd if="$SCRATCH/new" of=/dev/mapper/qn bs=4096 seek=$((Q_RD_OFF / 4096)) \
		oflag=direct status=none &
	pid=$!
	q_wait_held qdel2
	dmsetup message qn 0 remove_child 2
	expect_eq "$(q_held_writes qdel2)" 0 "writes held by children.2 after remove_child"
	wait $pid || fail "the write in flight"
	q_read "${l[2]}" $Q_RD_OFF 4096 "$SCRATCH/got"
	cmp "$SCRATCH/got" "$SCRATCH/new" || fail "the write in flight did not reach the removed child"
	sum=$(md5sum <"${l[2]}")
	dd if=/dev/urandom of=/dev/mapper/qn bs=4096 count=16 oflag=direct status=none
	expect_eq "$(md5sum <"${l[2]}")" "$sum" "the removed child after more writes"
}

# add_child returns only once the writes sent before it have ended: no
# write that ends after it misses the new child.  Child 0 is dm-delay
# holding writes 1.5 s, one write in flight on it.
test_add_child_returns_once_the_writes_sent_before_it_have_ended() {
	local l c0 pid
	q_begin
	q_dm_module delay
	mapfile -t l < <(q_loops 3)
	c0=$(q_delay qdel0 "${l[0]}" 1500)
	q_create qn 2 "" "$c0" "${l[1]}"
	dd if=/dev/urandom of=/dev/mapper/qn bs=4096 count=1 oflag=direct status=none &
	pid=$!
	q_wait_held qdel0
	dmsetup message qn 0 add_child "${l[2]}"
	expect_eq "$(q_held_writes qdel0)" 0 "writes sent before add_child, held by children.0 after it"
	wait $pid || fail "the write in flight"
	expect_eq "$(q_graph qn)" "qn children.0 qdel0;qn children.1 ${l[1]##*/};qn children.2 ${l[2]##*/};" "graph"
}

test_add_child_refused_for_another_size_no_device_or_blkverify() {
	local l small
	q_begin
	mapfile -t l < <(q_loops 3)
	small=$(mkloop small 16)
	q_create qn 2 "" "${l[0]}" "${l[1]}"
	q_msg_refused qn "add_child $small refused: Children differ in size" add_child "$small"
	q_msg_refused qn "add_child /dev/no-such-device refused: Cannot open the child device" \
		add_child /dev/no-such-device
	expect_eq "$(q_graph qn)" "qn children.0 ${l[0]##*/};qn children.1 ${l[1]##*/};" "graph"
	expect_eq "$(dmsetup table qn)" "0 $Q_SECTORS bgraph-quorum 2 2 $(q_mm "${l[0]}") $(q_mm "${l[1]}")" "table"
	dmsetup reload qn --table "0 $Q_SECTORS bgraph-quorum 2 2 ${l[0]} ${l[1]} 1 blkverify"
	dmsetup resume qn
	q_msg_refused qn "Cannot add a child to a quorum in blkverify mode" add_child "${l[2]}"
	expect_eq "$(q_graph qn)" "qn children.0 ${l[0]##*/};qn children.1 ${l[1]##*/};" "graph in blkverify mode"
}

# A refused add_child of a current child changes nothing: not the vote,
# not the graph.
test_add_child_of_a_current_child_is_refused_and_changes_nothing() {
	local l
	q_begin
	mapfile -t l < <(q_loops 2)
	q_create qn 2 "" "${l[0]}" "${l[1]}"
	q_msg_refused qn "add_child ${l[1]} refused: The same device is given twice as a child" \
		add_child "${l[1]}"
	expect_eq "$(dmsetup table qn)" "0 $Q_SECTORS bgraph-quorum 2 2 $(q_mm "${l[0]}") $(q_mm "${l[1]}")" "table"
	q_stats_want qn 0 "children.0:${l[0]##*/}:0:0:0" "children.1:${l[1]##*/}:0:0:0"
	expect_eq "$(q_graph qn)" "qn children.0 ${l[0]##*/};qn children.1 ${l[1]##*/};" "graph"
	expect_eq "$(cat "$CFS/nodes/${l[1]##*/}/parents")" "qn children.1" "parents of child 1"
}

test_reload_of_the_table_after_live_changes_keeps_the_children() {
	local l extra t
	q_begin
	mapfile -t l < <(q_loops 3)
	extra=$(mkloop extra "$Q_MB")
	q_create qn 2 "1 rewrite-corrupted" "${l[@]}"
	dmsetup message qn 0 remove_child 0
	dmsetup message qn 0 add_child "$extra"
	t=$(dmsetup table qn)
	expect_eq "$t" "0 $Q_SECTORS bgraph-quorum 2 3 $(q_mm "${l[1]}") $(q_mm "${l[2]}") $(q_mm "$extra") 1 rewrite-corrupted" "table"
	dmsetup reload qn --table "$t"
	dmsetup resume qn
	expect_eq "$(dmsetup table qn)" "$t" "table after the reload"
	# A new table numbers its children from 0 again.
	expect_eq "$(q_graph qn)" \
		"qn children.0 ${l[1]##*/};qn children.1 ${l[2]##*/};qn children.2 ${extra##*/};" \
		"graph after the reload"
	[ ! -e "$CFS/nodes/${l[0]##*/}" ] || fail "the removed child is still a node"
}

# ---- everything at once ---------------------------------------------

# q_garbage DEV MIB...: 64 KiB of random bytes at each MIB MiB of DEV,
# straight on DEV, with O_DIRECT.
q_garbage() {
	local dev=$1 m
	shift
	for m in "$@"; do
		dd if=/dev/urandom of="$dev" bs=64k seek=$((m * 16)) count=1 \
			iflag=fullblock oflag=direct conv=notrunc status=none
	done
}

# fio verifies while child 1 is corrupted, removed, corrupted, added back
# and corrupted again; children 0 and 2 always outvote it.  A read of the
# whole node then repairs it (rewrite-corrupted): all three end equal.
test_fio_verify_survives_corruption_and_a_child_removed_and_added_back() {
	local l pid i dm
	q_begin
	mapfile -t l < <(q_loops 3)
	q_create qn 2 "1 rewrite-corrupted" "${l[@]}"
	dm=$(devname /dev/mapper/qn)
	fio_ok --name=qc --filename=/dev/mapper/qn --rw=randwrite --bsrange=4k-64k \
		--numjobs=4 --size=$((FIO_MB / 4))M --offset_increment=$((FIO_MB / 4))M \
		--ioengine=libaio --iodepth=16 --direct=1 --verify=crc32c \
		--verify_backlog=64 --verify_fatal=1 --do_verify=1 >"$SCRATCH/fio.out" 2>&1 &
	pid=$!
	for i in $(seq 100); do
		[ "$(awk '{ print $5 }' "/sys/block/$dm/stat")" -gt 100 ] && break
		sleep 0.1
	done
	q_garbage "${l[1]}" 1 3 5 7
	dmsetup message qn 0 remove_child 1
	q_garbage "${l[1]}" 9 11
	dmsetup message qn 0 add_child "${l[1]}"
	q_garbage "${l[1]}" 13 15
	kill -0 $pid 2>/dev/null || diag "fio ended before the last corruption"
	wait $pid || { cat "$SCRATCH/fio.out"; fail "fio failed"; }
	cat "$SCRATCH/fio.out"
	expect_eq "$(q_graph qn)" \
		"qn children.0 ${l[0]##*/};qn children.2 ${l[2]##*/};qn children.3 ${l[1]##*/};" \
		"graph"
	# Known damage after fio: the full read below must repair it.
	q_garbage "${l[1]}" 17
	dd if=/dev/mapper/qn of=/dev/null bs=1M iflag=direct status=none
	cmp "${l[0]}" "${l[2]}" || fail "children 0 and 2 differ"
	cmp "${l[0]}" "${l[1]}" || fail "the re-added child was not repaired"
	[ "$(q_stat qn children.3 rewrites)" -gt 0 ] || fail "no rewrites counted for the re-added child"
	expect_eq "$(q_stat qn - quorum_failures)" 0 "quorum failures"
	diag "$(cat "$CFS/nodes/qn/stats")"
}
