#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Loading and unloading dm-bgraph.ko.

test_module_registers_target_and_configfs() {
	expect_match "$(dmsetup targets)" "^bgraph-raw +v1\.2\.0" "dmsetup targets"
	[ -d $CFS/nodes ] || fail "no $CFS/nodes"
	[ -f $CFS/graph ] || fail "no $CFS/graph"
}

test_module_is_pinned_while_a_node_exists() {
	local l
	l=$(mkloop a 8)
	dmsetup create r1 --table "0 16384 bgraph-raw $l"
	expect_fail rmmod dm_bgraph
	dmsetup remove r1
}

test_unload_and_reload_leave_nothing_behind() {
	local l
	l=$(mkloop a 8)
	dmsetup create r1 --table "0 16384 bgraph-raw $l"
	dmsetup remove r1
	rmmod dm_bgraph
	[ ! -e $CFS ] || fail "$CFS still there after rmmod"
	expect_no_match "$(dmsetup targets)" "bgraph" "targets after rmmod"
	[ ! -e /sys/module/dm_bgraph ] || fail "/sys/module/dm_bgraph still there"
	bg_load
	[ -z "$(ls $CFS/nodes)" ] || fail "nodes after reload: $(ls $CFS/nodes)"
}
