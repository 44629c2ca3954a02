#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# External snapshots of live qcow2 nodes under a guest-facing id device,
# done with dmsetup's reload choreography while fio writes through the id
# (verify=crc32c): one node, the three children of a quorum below a
# throttle at one instant, a rollback when an overlay cannot be made, and
# a resume refused while its edges conflict or close a cycle.  The
# kernel's part: a suspended node's edges are parked, and checked again
# at its resume ("Live graph changes" in Documentation/bgraph.rst).

# shellcheck source=lib-live.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-live.sh"

# The snapshot: suspend the id, make the overlay node over NODE (its
# backing edge takes NODE's WRITE away, which the id's parked edge has),
# load the id on the overlay, resume.  A write before lands in NODE, one
# after in the overlay; both images are clean and QEMU reads the overlay's
# chain as the id device did.
test_snapshot_of_a_qcow2_node_under_the_id_device_under_fio() {
	lv_qcow2 node
	lv_raw id node
	lv_fio_start /dev/mapper/id
	lv_wait_writes /dev/mapper/id "$LV_IOS"
	lv_mark /dev/mapper/id "$LV_MARK1" 0xa1
	dmsetup suspend id
	expect_match "$(cat "$CFS/nodes/id/permissions")" "^file node perm=.* parked$" \
		"the suspended id's edge is parked"
	lv_overlay over node
	expect_eq "$(lv_ro node)" 1 "node read-only under the overlay"
	dmsetup load id --table "0 $LV_SZ bgraph-raw /dev/mapper/over"
	dmsetup resume id
	lv_mark /dev/mapper/id "$LV_MARK2" 0xb2
	lv_wait_writes /dev/mapper/id "$LV_IOS"
	lv_fio_stop
	expect_eq "$(lv_graph | tr '\n' ';')" \
		"id file over;node file loop;over backing node;over file loop;" "graph"
	expect_no_match "$(cat "$CFS/nodes/id/permissions")" "parked" "id live again"
	lv_dump /dev/mapper/id
	lv_finish over
	lv_check node
	lv_reads "$SCRATCH/node.img" "$LV_MARK1" 0xa1
	lv_reads "$SCRATCH/node.img" "$LV_MARK2" 0
	lv_reads "$SCRATCH/over.img" "$LV_MARK2" 0xb2 null
	lv_reads "$SCRATCH/over.img" "$LV_MARK1" 0 null
	lv_reads "$SCRATCH/over.img" "$LV_MARK1" 0xa1
}

# Below the filters: the quorum is suspended (the throttle and the id
# above it queue their I/O), each of its three children gets an overlay,
# the quorum is loaded on the overlays and resumed: one instant for all
# three.  The filters stay on top.
test_snapshot_below_a_throttle_and_a_quorum_at_one_instant_under_fio() {
	local i
	lv_quorum_stack
	lv_fio_start /dev/mapper/id
	lv_wait_writes /dev/mapper/id "$LV_IOS"
	lv_mark /dev/mapper/id "$LV_MARK1" 0xa1
	dmsetup suspend q
	for i in 0 1 2; do
		lv_overlay "o$i" "n$i"
	done
	dmsetup load q --table \
		"0 $LV_SZ bgraph-quorum 2 3 /dev/mapper/o0 /dev/mapper/o1 /dev/mapper/o2"
	dmsetup resume q
	lv_mark /dev/mapper/id "$LV_MARK2" 0xb2
	lv_wait_writes /dev/mapper/id "$LV_IOS"
	lv_fio_stop
	expect_eq "$(lv_graph | grep -v ' file loop$' | tr '\n' ';')" \
		"id file t;o0 backing n0;o1 backing n1;o2 backing n2;q children.0 o0;q children.1 o1;q children.2 o2;t file q;" \
		"graph"
	lv_dump /dev/mapper/id
	lv_finish o0 o1 o2
	lv_check n0 n1 n2
	for i in 0 1 2; do
		lv_reads "$SCRATCH/n$i.img" "$LV_MARK1" 0xa1
		lv_reads "$SCRATCH/n$i.img" "$LV_MARK2" 0
		lv_reads "$SCRATCH/o$i.img" "$LV_MARK2" 0xb2 null
		lv_reads "$SCRATCH/o$i.img" "$LV_MARK1" 0 null
	done
	lv_cleanup
}

# A snapshot below the filters whose second overlay cannot be made (its
# table names a backing device that does not exist): the first is
# removed, the quorum resumes its old table, and the graph, the children's
# read-only state and the I/O are as before.
test_snapshot_failing_halfway_is_rolled_back_and_io_goes_on() {
	local before loop
	on_6_12_only "a rollback: the paths of the snapshots above"
	lv_quorum_stack
	lv_fio_start /dev/mapper/id
	lv_wait_writes /dev/mapper/id "$LV_IOS"
	before=$(lv_graph)
	dmsetup suspend q
	lv_overlay o0 n0
	expect_eq "$(lv_ro n0)" 1 "n0 read-only under its overlay"
	qemu-img create -q -f qcow2 -u -b "$SCRATCH/n1.img" -F qcow2 "$SCRATCH/o1.img" "${LV_MB}M"
	loop=$(losetup -f --show "$SCRATCH/o1.img")
	expect_fail dmsetup create o1 --table \
		"0 $LV_SZ bgraph-qcow2 $loop 2 backing /dev/mapper/no-such-node"
	# The rollback, newest step first.
	dmsetup remove o0
	dmsetup resume q
	expect_eq "$(lv_graph)" "$before" "graph as before"
	expect_eq "$(lv_ro n0)" 0 "n0 writable again"
	if [ -e "$CFS/nodes/o0" ] || [ -e "$CFS/nodes/o1" ]; then
		fail "overlay nodes left"
	fi
	lv_wait_writes /dev/mapper/id "$LV_IOS"
	lv_fio_stop
	lv_dump /dev/mapper/id
	lv_finish n0 n1 n2
	lv_cleanup
}

# The id resumed on its old table while the overlay is still there: its
# edge would write what the overlay's backing edge keeps read-only.  The
# resume is refused with the reason, the id stays suspended (fio waits);
# once the overlay is removed, the id resumes and fio goes on.
test_resume_whose_edges_conflict_now_is_refused_and_stays_suspended() {
	local log
	lv_qcow2 node
	lv_raw id node
	lv_fio_start /dev/mapper/id
	lv_wait_writes /dev/mapper/id "$LV_IOS"
	dmsetup suspend id
	lv_overlay over node
	mark_log
	expect_fail dmsetup resume id
	log=$(log_since_mark)
	expect_match "$log" "bgraph: id: cannot resume: file child node: permission conflict on write \(wants [a-z,-]*\) with over's edge backing" \
		"refusal logged with its reason"
	lv_suspended id || fail "id not suspended after the refused resume"
	expect_eq "$(lv_ro node)" 1 "node still read-only under the overlay"
	dmsetup remove over
	dmsetup resume id
	lv_suspended id && fail "id still suspended"
	expect_eq "$(lv_ro node)" 0 "node writable again"
	lv_wait_writes /dev/mapper/id "$LV_IOS"
	lv_fio_stop
	lv_dump /dev/mapper/id
	lv_finish node
}

# Cycles too are checked again at resume: with b (over a) suspended, a is
# loaded over b (b's parked edge is not followed) and resumes; b's resume
# would close the cycle and is refused, and b stays suspended until it is
# loaded on a leaf.
test_resume_that_would_close_a_cycle_is_refused() {
	local l1 l2
	l1=$(mkloop c1 4)
	l2=$(mkloop c2 4)
	dmsetup create a --table "0 8192 bgraph-raw $l1"
	dmsetup create b --table "0 8192 bgraph-raw /dev/mapper/a"
	dmsetup suspend b
	dmsetup suspend a
	dmsetup load a --table "0 8192 bgraph-raw /dev/mapper/b"
	dmsetup resume a
	mark_log
	expect_fail dmsetup resume b
	expect_match "$(log_since_mark)" "bgraph: b: cannot resume: file child a closes a cycle in the graph" \
		"refusal logged"
	lv_suspended b || fail "b not suspended after the refused resume"
	dmsetup load b --table "0 8192 bgraph-raw $l2"
	dmsetup resume b
	expect_eq "$(lv_graph | tr '\n' ';')" "a file b;b file loop;" "graph"
}
