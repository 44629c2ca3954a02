#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# A filter node (bgraph-throttle in a group without limits) inserted on a
# live edge and removed again with dmsetup's reload choreography, while
# fio writes through the id device (verify=crc32c): directly under the id,
# between a qcow2 node and its file, between a quorum and a child.
# "Live graph changes" in Documentation/bgraph.rst gives the steps.

# shellcheck source=lib-live.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-live.sh"

# lv_edges: the graph without the edges to loop devices, on one line.
lv_edges() { lv_graph | grep -v ' file loop$' | tr '\n' ';'; }

# Insert: suspend the parent, make the filter over the child, load the
# parent on the filter, resume.  Remove: suspend the parent, load it on
# the child again, resume, remove the filter.
test_filter_inserted_and_removed_under_the_id_device_under_fio() {
	lv_qcow2 node
	lv_raw id node
	mkdir -p "$TG/lv"
	lv_fio_start /dev/mapper/id
	lv_wait_writes /dev/mapper/id "$LV_IOS"
	dmsetup suspend id
	dmsetup create f --table "0 $LV_SZ bgraph-throttle /dev/mapper/node lv"
	dmsetup load id --table "0 $LV_SZ bgraph-raw /dev/mapper/f"
	dmsetup resume id
	expect_eq "$(lv_edges)" "f file node;id file f;" "graph with the filter"
	expect_eq "$(cat "$TG/lv/members")" f "the filter's group"
	lv_wait_writes /dev/mapper/f "$LV_IOS"
	dmsetup suspend id
	dmsetup load id --table "0 $LV_SZ bgraph-raw /dev/mapper/node"
	dmsetup resume id
	dmsetup remove f
	expect_eq "$(lv_edges)" "id file node;" "graph without the filter"
	[ ! -e "$CFS/nodes/f" ] || fail "node f left"
	lv_wait_writes /dev/mapper/id "$LV_IOS"
	lv_fio_stop
	lv_dump /dev/mapper/id
	lv_finish node
	lv_cleanup
}

# On an inner edge: the qcow2 node's file.  The node is suspended (the id
# above queues its I/O) and reloaded over the filter: its new instance
# reads the image again at its resume, after the old one wrote it back.
test_filter_inserted_and_removed_between_a_qcow2_node_and_its_file() {
	local loop
	lv_qcow2 node
	loop=/dev/${Q2_LOOP[node]}
	lv_raw id node
	mkdir -p "$TG/lv"
	lv_fio_start /dev/mapper/id
	lv_wait_writes /dev/mapper/id "$LV_IOS"
	dmsetup suspend node
	dmsetup create f --table "0 $(blockdev --getsz "$loop") bgraph-throttle $loop lv"
	dmsetup load node --table "0 $LV_SZ bgraph-qcow2 /dev/mapper/f"
	dmsetup resume node
	expect_eq "$(lv_edges)" "id file node;node file f;" "graph with the filter"
	lv_wait_writes /dev/mapper/f "$LV_IOS"
	dmsetup suspend node
	dmsetup load node --table "0 $LV_SZ bgraph-qcow2 $loop"
	dmsetup resume node
	dmsetup remove f
	expect_eq "$(lv_graph | tr '\n' ';')" "id file node;node file loop;" \
		"graph without the filter"
	lv_wait_writes /dev/mapper/id "$LV_IOS"
	lv_fio_stop
	lv_dump /dev/mapper/id
	lv_finish node
	lv_cleanup
}

# On an inner edge below the filters: a quorum's second child.
test_filter_inserted_and_removed_between_a_quorum_and_a_child() {
	on_6_12_only "a quorum reload: the paths of the inner-edge test above"
	lv_quorum_stack
	lv_fio_start /dev/mapper/id
	lv_wait_writes /dev/mapper/id "$LV_IOS"
	dmsetup suspend q
	dmsetup create f --table "0 $LV_SZ bgraph-throttle /dev/mapper/n1 lv"
	dmsetup load q --table \
		"0 $LV_SZ bgraph-quorum 2 3 /dev/mapper/n0 /dev/mapper/f /dev/mapper/n2"
	dmsetup resume q
	expect_match "$(lv_edges)" "f file n1;id file t;q children.0 n0;q children.1 f;q children.2 n2;t file q;" \
		"graph with the filter"
	lv_wait_writes /dev/mapper/f "$LV_IOS"
	dmsetup suspend q
	dmsetup load q --table \
		"0 $LV_SZ bgraph-quorum 2 3 /dev/mapper/n0 /dev/mapper/n1 /dev/mapper/n2"
	dmsetup resume q
	dmsetup remove f
	expect_eq "$(lv_edges)" "id file t;q children.0 n0;q children.1 n1;q children.2 n2;t file q;" \
		"graph without the filter"
	lv_wait_writes /dev/mapper/id "$LV_IOS"
	lv_fio_stop
	lv_dump /dev/mapper/id
	lv_finish n0 n1 n2
	lv_cleanup
}
