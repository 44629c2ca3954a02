#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# bgraph reopen as QEMU's blockdev-reopen (iotest 245's cases that apply):
# inherited options following to the implicit children that inherited
# them (not to references), all of a reopen's nodes changed at one time;
# the backing child of a qcow2 node replaced, dropped and given back;
# cycles and bad values refused with one line and nothing changed; inner
# options and inherited ones reopened under fio verify=crc32c.  The fixed
# options and single-node changes are cli.sh's reopen test.

# cli_tool, cli_state, cli_qcow2, cli_quorum_tree, and lib-live.sh.
# shellcheck source=cli.sh
source "$(dirname "${BASH_SOURCE[0]}")/cli.sh"

# rp_rec NODE: the options in bgraph's record of NODE, "ro discard dz"
# (built-ins only: a process costs in a TCG guest).
rp_rec() {
	local j ro='?' d='?' z='?'
	j=$(<"/run/bgraph/nodes/$1.json")
	[[ $j =~ \"read-only\":\ *(true|false) ]] && ro=${BASH_REMATCH[1]}
	[[ $j =~ \"discard\":\ *\"([a-z]+)\" ]] && d=${BASH_REMATCH[1]}
	[[ $j =~ \"detect-zeroes\":\ *\"([a-z]+)\" ]] && z=${BASH_REMATCH[1]}
	[ "$ro" = true ] && ro=1
	[ "$ro" = false ] && ro=0
	echo "$ro $d $z"
}

# rp_ro NODE...: the read-only state of each node's disk, "1 0 ...".
rp_ro() {
	local n out=
	for n in "$@"; do
		out+="${out:+ }$(blockdev --getro "/dev/mapper/$n")"
	done
	echo "$out"
}

# rp_state: every dm table, suspended and read-only state, and bgraph's
# records, for "nothing changed".
rp_state() {
	dmsetup table
	dmsetup info -c --noheadings -o name,suspended,readonly
	cat /run/bgraph/nodes/*.json
}

# rp_refused NODE WANT ARGS...: bgraph reopen NODE ARGS fails with the one
# line "bgraph: NODE: WANT" and changes no table, device state or record.
rp_refused() {
	local node=$1 want=$2 before out
	shift 2
	before=$(rp_state)
	out=$("$BG" reopen "$node" "$@" 2>&1) && fail "reopen $node $*: accepted"
	expect_eq "$out" "bgraph: $node: $want" "reopen $node $*"
	expect_eq "$(rp_state)" "$before" "nothing changed by reopen $node $*"
}

# A raw node over an implicit qcow2 node (discard set on it) over its
# file, whose backing is the node base, given by reference: the options
# set on top reach top#file and top#file#file, unless set there, and
# never base; read-only both ways, each way all the nodes at one time.
test_reopen_inherited_options_follow_to_implicit_children_not_references() {
	on_6_12_only "bgraph's choreography: the kernel paths of cli.sh's reopen test"
	local base
	cli_tool
	base=$(cli_qcow2 base)
	qemu-img create -q -f qcow2 -b "$base" -F qcow2 "$SCRATCH/a.img" 16M
	truncate -s 48M "$SCRATCH/a.img"
	"$BG" add - <<-EOF || fail "add base"
	{"driver": "qcow2", "node-name": "base", "backing": null,
	 "file": {"driver": "file", "filename": "$base"}}
	EOF
	"$BG" add - <<-EOF || fail "add top"
	{"driver": "raw", "node-name": "top",
	 "file": {"driver": "qcow2", "discard": "unmap", "backing": "base",
	  "file": {"driver": "file", "filename": "$SCRATCH/a.img"}}}
	EOF
	local base_table
	base_table=$(dmsetup table base)

	"$BG" reopen top detect-zeroes=on discard=ignore || fail "reopen top detect-zeroes"
	expect_match "$(dmsetup table top)" " 4 discard ignore detect_zeroes on$" "top's table"
	expect_match "$(dmsetup table top#file)" " 4 backing [0-9:]+ detect_zeroes on$" \
		"top#file: detect-zeroes inherited, its own discard kept"
	expect_eq "$(rp_rec top#file#file)" "0 unmap on" "top#file#file inherits from top#file"
	expect_eq "$(dmsetup table base)" "$base_table" "base (a reference) unchanged"
	expect_eq "$(rp_rec base)" "0 unmap off" "base's record"

	"$BG" reopen top read-only=on || fail "reopen top read-only"
	expect_eq "$(rp_ro top top#file top#file#file)" "1 1 1" "read-only down the tree"
	expect_eq "$(rp_rec top#file#file)" "1 unmap on" "top#file#file's record"
	expect_eq "$(rp_rec base)" "0 unmap off" "base's record"
	dd if=/dev/zero of=/dev/mapper/top bs=4k count=1 oflag=direct status=none 2>/dev/null &&
		fail "a write to the read-only top succeeded"
	dd if=/dev/zero of=/dev/mapper/top#file#file bs=4k count=1 oflag=direct status=none 2>/dev/null &&
		fail "a write to the read-only top#file#file succeeded"
	cmp -n 4M /dev/mapper/top "$SCRATCH/base.ref" || fail "top reads other data"

	# A child made read-write under its read-only parent: allowed, and
	# now set on it, kept when the parent changes again.
	"$BG" reopen top#file read-only=off || fail "reopen top#file read-write"
	expect_eq "$(rp_ro top top#file top#file#file)" "1 0 0" "top#file read-write under top"
	"$BG" reopen top read-only=off detect-zeroes=off || fail "reopen top read-write"
	expect_eq "$(rp_ro top top#file top#file#file)" "0 0 0" "read-write again"
	expect_no_match "$(dmsetup table top#file)" "detect_zeroes" "top#file's detect-zeroes back"
	expect_eq "$(rp_rec top#file#file)" "0 unmap off" "top#file#file's record"
	dd if=/dev/urandom of=/dev/mapper/top bs=64k seek=3 count=4 oflag=direct status=none ||
		fail "a write to the writable top failed"
	dd if=/dev/mapper/top of="$SCRATCH/top.ref" bs=1M iflag=direct status=none

	# Refused, nothing changed: a writer above, a bad value, a
	# combination QEMU refuses, an unknown node (the fixed options and an
	# unknown one: cli.sh).
	rp_refused top#file "Cannot make the node read-only: top writes to it" read-only=on
	rp_refused top "detect-zeroes: off, on or unmap" detect-zeroes=yes
	rp_refused top#file "setting detect-zeroes to unmap is not allowed without setting discard operation to unmap" \
		discard=ignore detect-zeroes=unmap
	rp_refused nosuch "no such node" read-only=on
	"$BG" del top && "$BG" del base || fail "del"
	expect_eq "$(cli_state)" "No devices found" "nothing left"
	qemu-img check -q "$SCRATCH/a.img" || fail "qemu-img check"
	cli_raw_of "$SCRATCH/a.img" "$SCRATCH/qemu.ref"
	cmp "$SCRATCH/top.ref" "$SCRATCH/qemu.ref" || fail "QEMU reads other data than top did"
}

# iotest 245's backing cases: a qcow2 node over a chain qemu-img made
# (its backing opened from the header, implicit) gets another image's
# node as backing (the implicit one goes), none (unallocated clusters
# read as zeros), and a backing again; cycles, missing nodes and nodes
# without backing support are refused with QEMU's messages.
test_reopen_replaces_and_drops_the_backing_child_and_refuses_cycles() {
	on_6_12_only "bgraph's choreography: the kernel paths of live-snapshot.sh"
	local base other top=$SCRATCH/top.img
	cli_tool
	base=$(cli_qcow2 base)
	other=$(cli_qcow2 other)
	qemu-img create -q -f qcow2 -b "$base" -F qcow2 "$top" 16M
	qemu-io -c "write -P 0x5a 0 1M" "$top" >/dev/null
	truncate -s 48M "$top"
	head -c 1M /dev/zero | tr '\0' '\132' >"$SCRATCH/5a.ref"
	"$BG" add - <<-EOF || fail "add top"
	{"driver": "qcow2", "node-name": "top", "id": "vm1",
	 "file": {"driver": "file", "filename": "$top"}}
	EOF
	"$BG" add - <<-EOF || fail "add other"
	{"driver": "qcow2", "node-name": "other", "read-only": true, "backing": null,
	 "file": {"driver": "file", "filename": "$other"}}
	EOF
	cmp -n 1M /dev/mapper/vm1 "$SCRATCH/5a.ref" || fail "vm1 reads no 0x5a at 0"
	cmp -n 2M -i 4M /dev/mapper/vm1 "$SCRATCH/base.ref" || fail "vm1 reads no base data"

	# The implicit backing child, read-write and back (a new writable
	# loop device for its file, as QEMU opens the file again).
	"$BG" reopen top#backing read-only=off || fail "top#backing read-write"
	expect_eq "$(losetup -n -O ro -j "$base" | tr -d ' ')" 0 "top#backing#file's loop read-write"
	expect_eq "$(losetup -j "$base" | wc -l)" 1 "one loop device over base"
	dd if=/dev/zero of=/dev/mapper/top#backing bs=4k count=1 oflag=direct status=none 2>/dev/null &&
		fail "a write to top#backing, a backing child, succeeded"
	"$BG" reopen top#backing read-only=on || fail "top#backing read-only"

	rp_refused top "Cannot find device='' nor node-name='nosuch'" backing=nosuch
	rp_refused top "Making 'vm1' a backing child of 'top' would create a cycle" backing=vm1
	rp_refused top "Making 'top' a backing child of 'top' would create a cycle" backing=top
	rp_refused top#backing "Making 'top' a backing child of 'top#backing' would create a cycle" backing=top
	rp_refused top#file "Driver 'file' of node 'top#file' does not support backing files" backing=other

	"$BG" reopen top backing=other || fail "backing=other"
	grep -qx "top backing other" "$CFS/graph" || fail "top's backing is not other: $(cat "$CFS/graph")"
	[ ! -e "$CFS/nodes/top#backing" ] && [ ! -e "$CFS/nodes/top#backing#file" ] ||
		fail "the implicit backing nodes are left"
	expect_eq "$(losetup -j "$base" | wc -l)" 0 "no loop device over base"
	[ ! -e "/run/bgraph/nodes/top#backing.json" ] || fail "top#backing's record is left"
	cmp -n 1M /dev/mapper/vm1 "$SCRATCH/5a.ref" || fail "vm1 reads no 0x5a at 0 over other"
	cmp -n 2M -i 4M /dev/mapper/vm1 "$SCRATCH/other.ref" || fail "vm1 reads no other data"

	"$BG" reopen top backing=null || fail "backing=null"
	grep -q "^top backing " "$CFS/graph" && fail "top still has a backing child"
	cmp -n 1M /dev/mapper/vm1 "$SCRATCH/5a.ref" || fail "vm1 reads no 0x5a at 0 without backing"
	cmp -n 2M -i 4M:0 /dev/mapper/vm1 /dev/zero || fail "vm1 reads no zeros without backing"

	# Back to a backing: base again, as a node of its own.
	"$BG" add - <<-EOF || fail "add base"
	{"driver": "qcow2", "node-name": "base", "read-only": true, "backing": null,
	 "file": {"driver": "file", "filename": "$base"}}
	EOF
	"$BG" reopen top backing=base || fail "backing=base"
	rp_refused base "Making 'top' a backing child of 'base' would create a cycle" backing=top
	cmp -n 2M -i 4M /dev/mapper/vm1 "$SCRATCH/base.ref" || fail "vm1 reads no base data again"
	"$BG" del vm1 && "$BG" del top && "$BG" del base && "$BG" del other || fail "del"
	expect_eq "$(cli_state)" "No devices found" "nothing left"
	qemu-img check -q "$top" || fail "qemu-img check top"
	qemu-img check -q "$base" || fail "qemu-img check base"
	# The header still names base: reopen changes the graph, not the image.
	qemu-img convert -O raw "$top" "$SCRATCH/qemu.ref"
	cmp -n 2M -i 4M "$SCRATCH/qemu.ref" "$SCRATCH/base.ref" || fail "QEMU reads no base data"
}

# Under fio through the id of a throttled quorum of three qcow2 nodes:
# detect-zeroes set on the quorum reaches its three implicit children at
# one time (their tables loaded, then suspended and resumed together),
# and fails at each step (BGRAPH_TEST_FAIL: once all are loaded, once
# all are suspended, once two have resumed with their new tables) undone
# on all three; an inner l2-cache-size, rewrite-corrupted and the
# throttle group.
test_reopen_inner_and_inherited_options_under_fio() {
	on_6_12_only "bgraph's choreography: the kernel paths of cli.sh's reopen test"
	local i step before out
	cli_tool
	cli_quorum_tree vm7 || fail "add the quorum tree"
	mkdir -p "$CFS/throttle-groups/g2"
	lv_fio_start /dev/mapper/vm7
	lv_wait_writes /dev/mapper/vm7 "$LV_IOS"
	for step in "load:q#children.2" "suspend:q#children.2" "resume:q#children.1"; do
		before=$(rp_state)
		out=$(BGRAPH_TEST_FAIL=reopen-$step "$BG" reopen q detect-zeroes=on 2>&1) &&
			fail "$step: the reopen succeeded"
		expect_eq "$out" "bgraph: ${step#*:}: failed for the test (BGRAPH_TEST_FAIL)" "$step"
		expect_eq "$(rp_state)" "$before" "$step: tables, states and records after"
	done
	"$BG" reopen q detect-zeroes=on || fail "reopen q detect-zeroes"
	for i in 0 1 2; do
		expect_match "$(dmsetup table "q#children.$i")" " 2 detect_zeroes on$" "q#children.$i's table"
	done
	"$BG" reopen "q#children.1" l2-cache-size=65536 || fail "reopen l2-cache-size"
	"$BG" reopen q rewrite-corrupted=on || fail "reopen rewrite-corrupted"
	"$BG" reopen thr throttle-group=g2 || fail "reopen throttle-group"
	expect_eq "$(cat "$CFS/throttle-groups/g2/members")" thr "g2's members"
	lv_wait_writes /dev/mapper/vm7 "$LV_IOS"
	"$BG" reopen q detect-zeroes=off rewrite-corrupted=off || fail "reopen q back"
	lv_wait_writes /dev/mapper/vm7 "$LV_IOS"
	lv_fio_stop
	expect_no_match "$(dmsetup table)" "detect_zeroes|rewrite-corrupted" "every option back"
	lv_dump /dev/mapper/vm7
	"$BG" del vm7 && "$BG" del thr || fail "del"
	rmdir "$CFS/throttle-groups/g0" "$CFS/throttle-groups/g2"
	for i in a b c; do
		qemu-img check -q "$SCRATCH/$i.img" || fail "qemu-img check $i"
		qemu-img convert -O raw "$SCRATCH/$i.img" "$SCRATCH/lv-conv.ref"
		cmp -s "$SCRATCH/lv-conv.ref" "$SCRATCH/lv-dump.ref" || fail "QEMU reads $i unlike vm7"
	done
}
