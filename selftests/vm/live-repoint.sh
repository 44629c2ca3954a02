#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# An edge of a live node re-pointed from the kernel (bg_edge_repoint(),
# bgraph-raw's "repoint" message): under fio verify=crc32c, between two
# dm-linear devices over the same loop device (the same data), and every
# refusal seen to change nothing.  "Re-pointing an edge" in
# Documentation/bgraph.rst.

# shellcheck source=lib-live.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-live.sh"

# lr_linear NAME LOOP [SECTORS]: a dm-linear NAME over LOOP from 0.
lr_linear() {
	dmsetup create "$1" --table "0 ${3:-$LV_SZ} linear $2 0"
}

# lr_state: the graph and the id's table, on one line.
lr_state() {
	lv_graph | tr '\n' ';'
	dmsetup table id
}

# Each round re-points the id's file edge to the other device (by path,
# then by major:minor), sees the new edge at once, removes the old device
# while fio runs and makes it again; a reload of the table dmsetup prints
# keeps the last child.
test_repoint_under_fio_back_and_forth_loses_nothing() {
	local l i cur=a new=b dev rounds=4
	# Two rounds (a path, then a device number) on the debug kernel.
	[ "$BG_DEBUG" = 0 ] || rounds=2
	l=$(mkloop rp "$LV_MB")
	lr_linear a "$l"
	lr_linear b "$l"
	lv_raw id a
	lv_fio_start /dev/mapper/id
	lv_wait_writes /dev/mapper/id "$LV_IOS"
	for ((i = 1; i <= rounds; i++)); do
		dev=/dev/mapper/$new
		[ $((i % 2)) = 1 ] || dev=$(dm_devt "$new")
		bg_repoint id file "$dev"
		expect_eq "$(cat "$CFS/nodes/id/children")" "file $new" "round $i: children"
		expect_eq "$(cat "$CFS/nodes/$new/parents")" "id file" "round $i: new child's parents"
		[ ! -e "$CFS/nodes/$cur" ] || fail "round $i: old child $cur still a node"
		expect_match "$(dmsetup table id)" " bgraph-raw $(dm_devt "$new")\$" "round $i: table"
		dmsetup remove "$cur"
		lv_wait_writes /dev/mapper/id "$LV_IOS"
		lr_linear "$cur" "$l"
		dev=$cur cur=$new new=$dev
	done
	dmsetup suspend id
	dmsetup load id --table "$(dmsetup table id)"
	dmsetup resume id
	expect_eq "$(cat "$CFS/graph")" "id file $cur" "graph after a reload"
	lv_wait_writes /dev/mapper/id "$LV_IOS"
	lv_fio_stop
}

# lr_refused ROLE DEV REGEX: the message is refused with one log line
# matching REGEX, and the graph and the id's table are as before.
lr_refused() {
	local before
	before=$(lr_state)
	mark_log
	expect_fail bg_repoint id "$1" "$2"
	expect_match "$(log_since_mark)" "$3" "$1 $2: kernel log"
	expect_eq "$(lr_state)" "$before" "$1 $2: graph and table unchanged"
}

test_repoint_refusals_change_nothing() {
	on_6_12_only "refusals: the core's checks, the same on 6.1"
	local l
	l=$(mkloop rp "$LV_MB")
	lr_linear a "$l"
	lr_linear small "$l" $((LV_SZ - 8))
	dmsetup create ro --readonly --table "0 $LV_SZ linear $l 0"
	lv_raw id a
	dmsetup create up --table "0 $LV_SZ bgraph-raw /dev/mapper/id"
	lv_qcow2 base
	lv_overlay top base
	lr_refused backing /dev/mapper/small "id: cannot re-point backing: no such edge"
	lr_refused file /dev/mapper/none "id: cannot re-point file to /dev/mapper/none: -2"
	lr_refused file 240:5 "id: cannot re-point file to 240:5: cannot open it"
	lr_refused file /dev/mapper/small "to $(dm_devt small): $((LV_SZ * 512 - 4096)) bytes, $((LV_SZ * 512)) needed"
	lr_refused file /dev/mapper/up "it would close a cycle"
	lr_refused file /dev/mapper/id "a node cannot be its own child"
	lr_refused file /dev/mapper/a "already its child"
	lr_refused file /dev/mapper/base "permission conflict on write.* with top's edge backing"
	lr_refused file /dev/mapper/ro "it is read-only"
	mark_log
	expect_fail dmsetup message id 0 repoint
	expect_match "$(log_since_mark)" "id: unknown message" "bad message: kernel log"
	# Still the same edge, and I/O still flows through it.
	dd if=/dev/urandom of=/dev/mapper/id bs=64K count=4 oflag=direct status=none
	cmp -n 262144 /dev/mapper/id "$l"
}
