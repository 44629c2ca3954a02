#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# bgraph-raw nodes and the graph core, seen through dmsetup and configfs.

sectors() { echo $(($(blockdev --getsize64 "$1") / 512)); }

test_raw_node_appears_in_configfs_with_its_leaf() {
	local l
	l=$(mkloop a 16)
	dmsetup create r1 --table "0 $(sectors "$l") bgraph-raw $l"
	[ -d $CFS/nodes/r1 ] || fail "no nodes/r1"
	expect_eq "$(cat $CFS/nodes/r1/kind)" raw "r1 kind"
	expect_eq "$(cat $CFS/nodes/r1/size)" $((16 << 20)) "r1 size"
	expect_eq "$(cat $CFS/nodes/r1/read_only)" 0 "r1 read_only"
	expect_eq "$(cat $CFS/nodes/r1/dev)" "$(dmsetup info -c --noheadings -o major,minor r1 | tr -d ' ')" "r1 dev"
	expect_eq "$(cat $CFS/nodes/r1/children)" "file $(devname "$l")" "r1 children"
	expect_eq "$(cat $CFS/nodes/"$(devname "$l")"/kind)" host_device "leaf kind"
	expect_eq "$(cat $CFS/nodes/"$(devname "$l")"/parents)" "r1 file" "leaf parents"
	expect_eq "$(cat $CFS/nodes/r1/parents)" "" "r1 parents"
	expect_match "$(cat $CFS/nodes/r1/permissions)" \
		"^file $(devname "$l") perm=consistent-read,write,write-unchanged shared=consistent-read,write,write-unchanged$" \
		"r1 permissions"
	expect_eq "$(cat $CFS/graph)" "r1 file $(devname "$l")" "graph"
}

test_reload_keeps_node_and_follows_new_child() {
	local a b ino
	a=$(mkloop a 16)
	b=$(mkloop b 16)
	dmsetup create r1 --table "0 $(sectors "$a") bgraph-raw $a"
	ino=$(stat -c %i $CFS/nodes/r1)
	dmsetup reload r1 --table "0 $(sectors "$b") bgraph-raw $b"
	# Loaded, not yet live: the graph still shows the live table.
	expect_eq "$(cat $CFS/nodes/r1/children)" "file $(devname "$a")" "children before resume"
	dmsetup resume r1
	expect_eq "$(stat -c %i $CFS/nodes/r1)" "$ino" "configfs dir kept across reload"
	expect_eq "$(cat $CFS/nodes/r1/children)" "file $(devname "$b")" "children after resume"
	[ ! -e $CFS/nodes/"$(devname "$a")" ] || fail "old leaf still there"
	expect_eq "$(cat $CFS/graph)" "r1 file $(devname "$b")" "graph"
}

test_cleared_inactive_table_leaves_live_graph() {
	local a b
	a=$(mkloop a 16)
	b=$(mkloop b 16)
	dmsetup create r1 --table "0 $(sectors "$a") bgraph-raw $a"
	dmsetup reload r1 --table "0 $(sectors "$b") bgraph-raw $b"
	[ -d $CFS/nodes/"$(devname "$b")" ] || fail "no leaf for the loaded table"
	dmsetup clear r1
	[ ! -e $CFS/nodes/"$(devname "$b")" ] || fail "leaf of cleared table kept"
	expect_eq "$(cat $CFS/graph)" "r1 file $(devname "$a")" "graph"
}

test_remove_takes_node_and_leaf_away() {
	local l
	l=$(mkloop a 16)
	dmsetup create r1 --table "0 $(sectors "$l") bgraph-raw $l"
	dmsetup remove r1
	[ -z "$(ls $CFS/nodes)" ] || fail "left in nodes/: $(ls $CFS/nodes)"
	expect_eq "$(cat $CFS/graph)" "" "graph"
}

test_three_level_stack_in_graph_and_dmsetup_tree() {
	local l tree
	l=$(mkloop a 32)
	dmsetup create base --table "0 $(sectors "$l") bgraph-raw $l"
	dmsetup create mid --table "0 $(sectors "$l") bgraph-raw /dev/mapper/base"
	dmsetup create top --table "0 $(sectors "$l") bgraph-raw /dev/mapper/mid"
	expect_eq "$(sort $CFS/graph | tr '\n' ';')" \
		"base file $(devname "$l");mid file base;top file mid;" "graph"
	expect_eq "$(cat $CFS/nodes/mid/parents)" "top file" "mid parents"
	expect_eq "$(cat $CFS/nodes/mid/children)" "file base" "mid children"
	tree=$(dmsetup ls --tree -o ascii)
	diag "$tree"
	# top at the root, then mid, then base, then the loop device.
	expect_match "$(tr -d '\n' <<<"$tree")" \
		"^top \([0-9]+:[0-9]+\) +\`-mid \([0-9]+:[0-9]+\) +\`-base \([0-9]+:[0-9]+\) +\`- ?\(7:[0-9]+\)" \
		"dmsetup ls --tree"
}

test_data_written_through_window_lands_at_offset() {
	local l ref
	l=$(mkloop a 16)
	ref=$(mkref win 4)
	dmsetup create r1 --table "0 8192 bgraph-raw $l 4 offset 1M size 4M"
	dd if="$ref" of=/dev/mapper/r1 bs=1M oflag=direct status=none
	cmp "$ref" <(dd if="$l" bs=1M skip=1 count=4 iflag=direct status=none) ||
		fail "data not at offset 1M of the child"
	cmp <(head -c 1M /dev/zero) <(dd if="$l" bs=1M count=1 status=none) ||
		fail "bytes before the window were touched"
	cmp <(head -c 11M /dev/zero) <(dd if="$l" bs=1M skip=5 status=none) ||
		fail "bytes after the window were touched"
	cmp "$ref" /dev/mapper/r1 || fail "read back through the node differs"
}

test_table_status_round_trips() {
	local l t
	l=$(mkloop a 16)
	dmsetup create r1 --table "0 8192 bgraph-raw $l 4 offset 4k size 4M"
	t=$(dmsetup table r1)
	expect_eq "$t" "0 8192 bgraph-raw $(cat /sys/block/"$(devname "$l")"/dev) 4 offset 4096 size 4194304" "table"
	dmsetup reload r1 --table "$t"
	dmsetup resume r1
	expect_eq "$(dmsetup table r1)" "$t" "table after reload of itself"
	expect_eq "$(dmsetup status r1)" "0 8192 bgraph-raw 0" "status"
}

test_flush_reaches_the_child() {
	local l before after
	l=$(mkloop a 16)
	dmsetup create r1 --table "0 $(sectors "$l") bgraph-raw $l"
	dd if=/dev/urandom of=/dev/mapper/r1 bs=4k count=16 status=none
	# Field 16 of /sys/block/*/stat: flush requests completed.
	before=$(awk '{print $16}' /sys/block/"$(devname "$l")"/stat)
	python3 -c 'import os; f=os.open("/dev/mapper/r1", os.O_WRONLY); os.fsync(f)'
	after=$(awk '{print $16}' /sys/block/"$(devname "$l")"/stat)
	[ "$after" -gt "$before" ] || fail "no flush reached $(devname "$l") ($before -> $after)"
}

test_discard_and_write_zeroes_pass_through() {
	local l
	l=$(mkloop a 16)
	dmsetup create r1 --table "0 16384 bgraph-raw $l 2 offset 8M"
	[ "$(cat /sys/block/"$(devname /dev/mapper/r1)"/queue/discard_max_bytes)" -gt 0 ] ||
		fail "node does not advertise discard"
	dd if=/dev/urandom of=/dev/mapper/r1 bs=1M count=8 oflag=direct status=none
	blkdiscard -o 0 -l 4M /dev/mapper/r1
	cmp <(head -c 4M /dev/zero) <(dd if="$l" bs=1M skip=8 count=4 iflag=direct status=none) ||
		fail "discarded range on the child is not zero"
	blkdiscard -z -o 4M -l 4M /dev/mapper/r1
	cmp <(head -c 4M /dev/zero) <(dd if="$l" bs=1M skip=12 count=4 iflag=direct status=none) ||
		fail "write-zeroes range on the child is not zero"
}

test_fio_verify_through_three_level_stack() {
	local l
	l=$(mkloop a 64)
	dmsetup create base --table "0 $(sectors "$l") bgraph-raw $l"
	dmsetup create mid --table "0 $(sectors "$l") bgraph-raw /dev/mapper/base"
	dmsetup create top --table "0 $(sectors "$l") bgraph-raw /dev/mapper/mid"
	# Two jobs, each verifying its own 32 MiB half.
	fio_ok --name=verify --filename=/dev/mapper/top --rw=randwrite --bs=4k \
		--numjobs=2 --offset_increment=32M --size=${FIO_MB}M --ioengine=libaio \
		--iodepth=8 --direct=1 --verify=crc32c --verify_fatal=1 \
		--do_verify=1
}

test_reload_under_io_loses_nothing() {
	local a pid i
	a=$(mkloop a 64)
	dmsetup create r1 --table "0 $(sectors "$a") bgraph-raw $a"
	fio_ok --name=rl --filename=/dev/mapper/r1 --rw=randwrite --bs=4k \
		--size=$((FIO_MB * 3 / 2))M --ioengine=libaio --iodepth=16 --direct=1 \
		--verify=crc32c --verify_fatal=1 --do_verify=1 >$SCRATCH/fio.out &
	pid=$!
	for i in 1 2 3 4 5 6; do
		sleep 0.3
		dmsetup reload r1 --table "0 $(sectors "$a") bgraph-raw $a"
		dmsetup suspend r1
		dmsetup resume r1
	done
	wait $pid || { cat $SCRATCH/fio.out; fail "fio failed across reloads"; }
	cat $SCRATCH/fio.out
	expect_eq "$(cat $CFS/graph)" "r1 file $(devname "$a")" "graph after reloads"
}

test_two_raw_targets_in_one_table() {
	local a b
	a=$(mkloop a 8)
	b=$(mkloop b 8)
	dmsetup create cat <<-EOT
	0 16384 bgraph-raw $a
	16384 16384 bgraph-raw $b
	EOT
	expect_eq "$(cat $CFS/nodes/cat/children | tr '\n' ';')" \
		"file $(devname "$a");file $(devname "$b");" "children of a concatenation"
	expect_eq "$(cat $CFS/nodes/cat/size)" $((16 << 20)) "size"
}

test_cycle_refused() {
	local l
	l=$(mkloop a 16)
	dmsetup create a1 --table "0 $(sectors "$l") bgraph-raw $l"
	dmsetup create b1 --table "0 $(sectors "$l") bgraph-raw /dev/mapper/a1"
	mark_log
	expect_fail dmsetup reload a1 --table "0 $(sectors "$l") bgraph-raw /dev/mapper/b1"
	expect_match "$(log_since_mark)" "would close a cycle" "kernel log"
	expect_eq "$(sort $CFS/graph | tr '\n' ';')" "a1 file $(devname "$l");b1 file a1;" "graph unchanged"
}

test_name_taken_by_a_leaf_refused() {
	local a b leaf
	a=$(mkloop a 8)
	b=$(mkloop b 8)
	leaf=$(devname "$a")
	dmsetup create r1 --table "0 16384 bgraph-raw $a"
	mark_log
	expect_fail dmsetup create "$leaf" --table "0 16384 bgraph-raw $b"
	expect_match "$(log_since_mark)" "Node name is already used by another device" "kernel log"
	expect_eq "$(cat $CFS/nodes/"$leaf"/kind)" host_device "leaf unchanged"
}

test_nodes_dir_is_not_user_writable() {
	local l
	l=$(mkloop a 8)
	dmsetup create r1 --table "0 16384 bgraph-raw $l"
	expect_fail mkdir $CFS/nodes/mine
	expect_fail rmdir $CFS/nodes/r1
	expect_fail sh -c "echo x > $CFS/nodes/r1/kind"
	[ -d $CFS/nodes/r1 ] || fail "rmdir removed a node"
}

test_op_blocker_table_is_readable() {
	local t
	t=$(cat $CFS/op_blockers)
	expect_eq "$(wc -l <<<"$t")" 12 "rows (header + 11 ops)"
	expect_match "$t" "^backup-source +\. +\. +x +\. +x +\. +x( +x){4}$" "backup-source row"
	expect_match "$t" "^remove( +x){11}$" "remove row"
}

# bad_table NAME TABLE REASON: refused, with REASON in the kernel log, and
# nothing left behind.
bad_table() {
	mark_log
	expect_fail dmsetup create "$1" --table "$2"
	expect_match "$(log_since_mark)" "bgraph-raw: $3" "reason for '$2'"
	[ -z "$(dmsetup ls | grep -w "$1")" ] || fail "device $1 left behind"
	[ -z "$(ls $CFS/nodes)" ] || fail "nodes left behind: $(ls $CFS/nodes)"
}

test_bad_tables_refused_with_a_reason() {
	local l
	l=$(mkloop a 8)
	bad_table b1 "0 16384 bgraph-raw" "Invalid argument count"
	bad_table b2 "0 16384 bgraph-raw /dev/no-such-device" "Cannot open the child device"
	bad_table b3 "0 16384 bgraph-raw $l 2 offset abc" "Invalid offset: not a byte count"
	bad_table b4 "0 16384 bgraph-raw $l 2 offset 100" "Invalid offset: not a multiple of 512"
	bad_table b5 "0 8192 bgraph-raw $l 4 offset 4M size 8M" "offset \\+ size is past the end of the device"
	bad_table b6 "0 16384 bgraph-raw $l 2 offset 1M" "Target length is larger than the device window"
	bad_table b7 "0 16384 bgraph-raw $l 2 colour red" "Unknown optional argument"
	bad_table b8 "0 16384 bgraph-raw $l 3 offset 0" "Optional argument count does not match"
	bad_table b9 "0 16384 bgraph-raw $l x" "Invalid number of optional arguments"
	bad_table b10 "0 16384 bgraph-raw $l 1 offset" "Optional arguments must be <key> <value> pairs"
	bad_table b11 "0 16384 bgraph-raw $l 2 size -1" "Invalid size: not a byte count"
	bad_table b12 "0 16384 bgraph-raw $l 4 offset 0 offset 0" "Option offset given twice"
}
