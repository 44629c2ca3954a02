#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The bgraph command (tools/bgraph): add, del and show, checked against
# configfs, dmsetup, losetup and QEMU's tools (qemu-img convert reads
# what the guest device shows).  Uses build/tools/bgraph (make tools,
# which make check runs first) when it is current, else builds it here.
# Debian's 6.1 runs add, a snapshot under fio and the throttled quorum
# (the kernel paths where 6.1 differs are the nodes' own, run by their
# files); the rest is the tool's logic, run on 6.12.

QBREAK=$BGRAPH_SRC/selftests/vm/qcow2-break.py

# lv_fio_start, lv_mark, lv_reads, ... for the snapshot test.
# shellcheck source=lib-live.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-live.sh"

# cli_tool: set BG to the bgraph binary; forget the records of earlier
# tests (cleanup_devices removed their devices).
cli_tool() {
	local src=$BGRAPH_SRC/tools/bgraph f
	rm -rf /run/bgraph
	BG=$BGRAPH_SRC/build/tools/bgraph
	if [ -x "$BG" ]; then
		for f in "$src"/*.[ch] "$BGRAPH_SRC"/targets/qcow2-format.c; do
			[ "$BG" -nt "$f" ] || { BG=; break; }
		done
		[ -z "$BG" ] || return 0
	fi
	BG=$SCRATCH/bgraph-build/bgraph
	[ -x "$BG" ] && return 0
	make -s -C "$src" O="$SCRATCH/bgraph-build" >/dev/null || fail "cannot build bgraph"
}

# cli_state: what exists: dm devices, loop devices, bgraph's records.
cli_state() {
	dmsetup ls 2>&1 | sort
	losetup -a | sort
	ls /run/bgraph/nodes 2>/dev/null || true
}

# cli_refused WHAT JSON: bgraph add refuses JSON with one line on stderr
# ("bgraph: <node>: <reason>"), a non-zero status, and changes nothing:
# cli_state is still CLI_BEFORE.
cli_refused() {
	local what=$1 json=$2 err rc
	rc=0
	err=$(printf '%s' "$json" | "$BG" add - 2>&1 >/dev/null) || rc=$?
	diag "$what: $err"
	[ "$rc" -ne 0 ] || fail "$what: accepted"
	expect_eq "$(wc -l <<<"$err")" 1 "$what: lines on stderr"
	expect_match "$err" '^bgraph: [^ ]+: .' "$what: error line"
	expect_eq "$(cli_state)" "$CLI_BEFORE" "$what: devices, loops and records after"
}

# cli_raw_of IMAGE OUT: what QEMU reads of IMAGE, as a raw file.
cli_raw_of() {
	qemu-img convert -O raw "$1" "$2"
}

# A qcow2 image of 16 MiB holding random data, its file grown so that a
# node can write to it; prints its path.
cli_qcow2() {
	local f=$SCRATCH/$1.img
	head -c 16M /dev/urandom >"$SCRATCH/$1.ref"
	qemu-img convert -q -O qcow2 "$SCRATCH/$1.ref" "$f"
	truncate -s 48M "$f"
	echo "$f"
}

test_bgraph_add_qcow2_over_file_with_id_reads_and_writes_like_qemu() {
	local img dev
	cli_tool
	img=$(cli_qcow2 a)
	"$BG" add - <<-EOF
	{"driver": "qcow2", "node-name": "disk", "id": "vm0",
	 "file": {"driver": "file", "filename": "$img"}}
	EOF
	[ -b /dev/mapper/vm0 ] || fail "no /dev/mapper/vm0"
	expect_eq "$(sort $CFS/graph | sed 's/loop[0-9]*/LOOP/' | tr '\n' ';')" \
		"disk file disk#file;disk#file file LOOP;vm0 file disk;" "graph"
	expect_eq "$(cat $CFS/nodes/disk/kind)" qcow2 "disk kind"
	expect_eq "$(cat $CFS/nodes/vm0/size)" $((16 << 20)) "vm0 size"
	expect_eq "$(losetup -n -O back-file -j "$img" | tr -d ' ')" "$img" "loop over the image"
	cmp /dev/mapper/vm0 "$SCRATCH/a.ref" || fail "vm0 does not read the image's data"
	# Write through the guest device; QEMU reads the same afterwards.
	dd if=/dev/urandom of=/dev/mapper/vm0 bs=64k seek=17 count=40 oflag=direct status=none
	dd if=/dev/mapper/vm0 of="$SCRATCH/dev.ref" bs=1M iflag=direct status=none
	"$BG" del vm0
	"$BG" del disk
	expect_eq "$(cli_state)" "No devices found" "nothing left after del"
	qemu-img check -q "$img" || fail "qemu-img check"
	cli_raw_of "$img" "$SCRATCH/qemu.ref"
	cmp "$SCRATCH/dev.ref" "$SCRATCH/qemu.ref" || fail "QEMU reads other data than vm0 did"
}

# detect-zeroes and discard set on the top reach the qcow2 node's table
# (the id device is a passthrough of its own); zeros written through the
# id become zero clusters QEMU sees.
test_bgraph_detect_zeroes_and_discard_reach_the_tables() {
	on_6_12_only "the tool's logic; 6.1 runs add and snapshot"
	local img
	cli_tool
	img=$(cli_qcow2 dz)
	"$BG" add - <<-EOF || fail "add"
	{"driver": "qcow2", "node-name": "disk", "id": "vm0",
	 "detect-zeroes": "unmap", "discard": "unmap",
	 "file": {"driver": "file", "filename": "$img"}}
	EOF
	expect_match "$(dmsetup table disk)" " 2 detect_zeroes unmap$" "disk's table"
	dd if=/dev/zero of=/dev/mapper/vm0 bs=1M seek=4 count=2 oflag=direct status=none
	"$BG" del vm0
	"$BG" del disk
	qemu-img check -q "$img" || fail "qemu-img check"
	qemu-img map --output=json "$img" | python3 -c '
import json, sys
m = json.load(sys.stdin)
bad = [e for e in m if e["start"] < 6 << 20 and e["start"] + e["length"] > 4 << 20
       and (e["data"] or not e["zero"])]
sys.exit(1 if bad else 0)' || fail "the zeros written are not zero clusters"
	cli_raw_of "$img" "$SCRATCH/qemu.ref"
	cmp -s -n $((2 << 20)) -i $((4 << 20)):0 "$SCRATCH/qemu.ref" /dev/zero ||
		fail "QEMU does not read zeros there"
}

test_bgraph_add_opens_the_backing_chain_the_headers_name() {
	on_6_12_only "the tool's logic; 6.1 runs add and snapshot"
	local dev
	cli_tool
	head -c 8M /dev/urandom >"$SCRATCH/base.ref"
	(
		cd "$SCRATCH"
		qemu-img convert -q -O qcow2 base.ref base.img
		# Relative names, against the overlay's directory.
		qemu-img create -q -f qcow2 -b base.img -F qcow2 mid.img 8M
		qemu-io -c 'write -P 0x5a 1M 1M' mid.img >/dev/null
		qemu-img create -q -f qcow2 -b mid.img -F qcow2 top.img 8M
		qemu-io -c 'write -P 0xa5 3M 64k' top.img >/dev/null
		truncate -s 16M top.img
	)
	# A writable top: its file writable, the backing chain read-only.
	"$BG" add - <<-EOF
	{"driver": "qcow2", "node-name": "top", "id": "vm1",
	 "file": {"driver": "file", "filename": "$SCRATCH/top.img"}}
	EOF
	# vm1, then each image: its file (and the file's loop device) and
	# its backing.
	expect_eq "$(grep -c . $CFS/graph)" 9 "edges"
	grep -qx "top backing top#backing" $CFS/graph || fail "no top#backing"
	grep -qx "top#backing backing top#backing2" $CFS/graph || fail "no top#backing2"
	grep -qx "top#backing2 file top#backing2#file" $CFS/graph || fail "no top#backing2#file"
	expect_eq "$(cat $CFS/nodes/top/read_only)" 0 "top writable"
	expect_eq "$(cat $CFS/nodes/top#backing/read_only)" 1 "backing read-only"
	expect_eq "$(cat $CFS/nodes/top#backing2#file/read_only)" 1 "backing's file read-only"
	expect_eq "$(losetup -n -O ro -j "$SCRATCH/top.img" | tr -d ' ')" 0 "top's loop device writable"
	expect_eq "$(losetup -n -O ro -j "$SCRATCH/mid.img" | tr -d ' ')" 1 "mid's loop device read-only"
	expect_eq "$(losetup -n -O back-file -j "$SCRATCH/base.img" | tr -d ' ')" "$SCRATCH/base.img" \
		"base image, from the relative name in mid.img"
	cli_raw_of "$SCRATCH/top.img" "$SCRATCH/qemu.ref"
	cmp /dev/mapper/vm1 "$SCRATCH/qemu.ref" || fail "vm1 reads other data than QEMU"
	"$BG" del vm1
	"$BG" del top
	expect_eq "$(cli_state)" "No devices found" "nothing left after del"

	# backing: null opens none: unallocated clusters read zeros.
	"$BG" add - <<-EOF
	{"driver": "qcow2", "node-name": "top", "read-only": true, "backing": null,
	 "file": {"driver": "file", "filename": "$SCRATCH/top.img"}}
	EOF
	expect_eq "$(grep -c . $CFS/graph)" 2 "edges without backing"
	cmp -n 1M /dev/mapper/top /dev/zero || fail "unallocated cluster does not read zeros"
}

test_bgraph_host_device_under_a_raw_window_reads_at_its_offset() {
	on_6_12_only "the tool's logic; 6.1 runs add and snapshot"
	local l ref
	cli_tool
	l=$(mkloop hd 16)
	ref=$(mkref win 4)
	dd if="$ref" of="$l" bs=1M seek=2 conv=notrunc status=none
	"$BG" add - <<-EOF
	{"driver": "raw", "node-name": "win", "read-only": true, "offset": 2097152, "size": 4194304,
	 "file": {"driver": "host_device", "filename": "$l"}}
	EOF
	expect_eq "$(dmsetup table win)" "0 8192 bgraph-raw $(cat $CFS/nodes/win#file/dev) 4 offset 2097152 size 4194304" "window table"
	expect_eq "$(dmsetup table win#file)" "0 32768 bgraph-raw $(cat /sys/block/"$(devname "$l")"/dev)" "host_device table"
	expect_eq "$(cat $CFS/nodes/win#file/read_only)" 1 "inherited read-only"
	cmp "$ref" /dev/mapper/win || fail "window does not read at its offset"
	"$BG" del win
	[ ! -e $CFS/nodes/win#file ] || fail "win#file left"
	[ -b "$l" ] || fail "host device went with the node"
}

test_bgraph_quorum_of_three_qcow2_under_a_throttle_group() {
	local a b c i
	cli_tool
	head -c 16M /dev/urandom >"$SCRATCH/q.ref"
	for i in a b c; do
		qemu-img convert -q -O qcow2 "$SCRATCH/q.ref" "$SCRATCH/$i.img"
		truncate -s 48M "$SCRATCH/$i.img"
	done
	mkdir $CFS/throttle-groups/g0
	"$BG" add - <<-EOF
	{"driver": "throttle", "node-name": "thr", "id": "vm2", "throttle-group": "g0",
	 "file": {"driver": "quorum", "node-name": "q", "vote-threshold": 2,
	  "rewrite-corrupted": true, "children": [
	   {"driver": "qcow2", "file": {"driver": "file", "filename": "$SCRATCH/a.img"}},
	   {"driver": "qcow2", "file": {"driver": "file", "filename": "$SCRATCH/b.img"}},
	   {"driver": "qcow2", "file": {"driver": "file", "filename": "$SCRATCH/c.img"}}]}}
	EOF
	grep -qx "vm2 file thr" $CFS/graph || fail "no vm2 -> thr"
	grep -qx "thr file q" $CFS/graph || fail "no thr -> q"
	for i in 0 1 2; do
		grep -qx "q children.$i q#children.$i" $CFS/graph || fail "no children.$i"
	done
	expect_match "$(dmsetup table thr)" " bgraph-throttle [0-9]+:[0-9]+ g0$" "throttle table"
	expect_match "$(dmsetup table q)" " bgraph-quorum 2 3 .* 1 rewrite-corrupted$" "quorum table"
	cmp /dev/mapper/vm2 "$SCRATCH/q.ref" || fail "vm2 does not read the images' data"
	dd if=/dev/urandom of=/dev/mapper/vm2 bs=64k seek=5 count=20 oflag=direct status=none
	dd if=/dev/mapper/vm2 of="$SCRATCH/dev.ref" bs=1M iflag=direct status=none
	"$BG" del vm2
	"$BG" del thr
	expect_eq "$(cli_state)" "No devices found" "nothing left after del"
	rmdir $CFS/throttle-groups/g0
	for i in a b c; do
		qemu-img check -q "$SCRATCH/$i.img" || fail "qemu-img check $i"
		cli_raw_of "$SCRATCH/$i.img" "$SCRATCH/qemu.ref"
		cmp "$SCRATCH/dev.ref" "$SCRATCH/qemu.ref" || fail "child $i differs from what vm2 read"
	done
}

test_bgraph_bad_inputs_are_refused_with_one_line_and_change_nothing() {
	on_6_12_only "the tool's logic; 6.1 runs add and snapshot"
	local img
	cli_tool
	img=$(cli_qcow2 a)
	# Something to collide with and to refer to.
	"$BG" add - <<-EOF
	{"driver": "raw", "node-name": "base", "file": {"driver": "file", "filename": "$img"}}
	EOF
	CLI_BEFORE=$(cli_state)
	cli_refused "malformed JSON" '{"driver": "raw", "node-name": "x"'
	cli_refused "unknown driver" '{"driver": "vmdk", "node-name": "x", "file": "base"}'
	cli_refused "unknown option" '{"driver": "raw", "node-name": "x", "file": "base", "cache": "none"}'
	cli_refused "missing required option" '{"driver": "throttle", "node-name": "x", "file": "base"}'
	cli_refused "missing driver" '{"node-name": "x", "file": "base"}'
	cli_refused "name collision" '{"driver": "raw", "node-name": "base", "file": "base#file"}'
	cli_refused "name collision with a loop device" "{\"driver\": \"raw\", \"node-name\": \"x\", \"id\": \"$(basename "$(losetup -n -O name -j "$img")")\", \"file\": \"base\"}"
	cli_refused "reference to nothing" '{"driver": "raw", "node-name": "x", "file": "nothing"}'
	cli_refused "cycle" '{"driver": "raw", "node-name": "x", "file": {"driver": "raw", "node-name": "y", "file": "x"}}'
	cli_refused "file that does not exist" "{\"driver\": \"raw\", \"node-name\": \"x\", \"file\": {\"driver\": \"file\", \"filename\": \"$SCRATCH/none.img\"}}"
	cli_refused "throttle group that does not exist" '{"driver": "throttle", "node-name": "x", "throttle-group": "nog", "file": "base"}'
	cli_refused "detect-zeroes unmap without discard unmap" \
		'{"driver": "raw", "node-name": "x", "file": "base", "detect-zeroes": "unmap", "discard": "ignore"}'
	cli_refused "not a qcow2 image" "{\"driver\": \"qcow2\", \"node-name\": \"x\", \"file\": {\"driver\": \"file\", \"filename\": \"$SCRATCH/a.ref\"}}"
	cli_refused "window past the end" '{"driver": "raw", "node-name": "x", "file": "base", "offset": 536870912}'
}

test_bgraph_a_table_the_kernel_refuses_halfway_leaves_nothing() {
	on_6_12_only "the tool's logic; 6.1 runs add and snapshot"
	local before err rc
	cli_tool
	cli_qcow2 good >/dev/null
	cli_qcow2 bad >/dev/null
	python3 "$QBREAK" "$SCRATCH/bad.img" header incompatible_features 'cur | 2'
	before=$(cli_state)
	# Made in this order: children.0's file, children.0, children.1's
	# file, then children.1, which the kernel refuses writable.
	rc=0
	err=$("$BG" add - 2>&1 <<-EOF
	{"driver": "quorum", "node-name": "q", "vote-threshold": 1, "children": [
	 {"driver": "qcow2", "file": {"driver": "file", "filename": "$SCRATCH/good.img"}},
	 {"driver": "qcow2", "file": {"driver": "file", "filename": "$SCRATCH/bad.img"}}]}
	EOF
	) || rc=$?
	expect_eq "$rc" 1 "exit status"
	diag "$err"
	expect_eq "$(wc -l <<<"$err")" 1 "lines on stderr"
	expect_match "$err" "^bgraph: q#children.1: bgraph-qcow2: .*corrupt" "the kernel's reason, for the node"
	expect_eq "$(cli_state)" "$before" "devices, loops and records after"
}

test_bgraph_del_is_refused_while_a_node_has_parents() {
	on_6_12_only "the tool's logic; 6.1 runs add and snapshot"
	local img err rc n
	cli_tool
	img=$(cli_qcow2 a)
	"$BG" add - <<-EOF
	{"driver": "raw", "node-name": "base", "file": {"driver": "file", "filename": "$img"}}
	EOF
	echo '{"driver": "raw", "node-name": "top", "id": "vm3", "offset": 1048576, "file": "base"}' |
		"$BG" add -
	expect_eq "$(cat $CFS/nodes/vm3/size)" $((47 << 20)) "window size"
	for n in base top base#file; do
		rc=0
		err=$("$BG" del "$n" 2>&1) || rc=$?
		expect_eq "$rc" 1 "del $n: exit status"
		expect_match "$err" "^bgraph: $n: the node has parents: " "del $n"
	done
	expect_match "$(cat $CFS/nodes/vm3/size)" . "vm3 still there"
	"$BG" del vm3
	# top goes; base, given by reference, stays.
	"$BG" del top
	[ ! -e $CFS/nodes/top ] || fail "top still there"
	[ -e $CFS/nodes/base ] || fail "base went with top"
	"$BG" del base
	expect_eq "$(cli_state)" "No devices found" "nothing left"
	expect_fail "$BG" del base
}

test_bgraph_show_json_names_the_edges_dot_and_svg_draw_them() {
	on_6_12_only "the tool's logic; 6.1 runs add and snapshot"
	local img loop
	cli_tool
	img=$(cli_qcow2 a)
	"$BG" add - <<-EOF
	{"driver": "qcow2", "node-name": "disk", "id": "vm4", "l2-cache-size": 262144,
	 "file": {"driver": "file", "filename": "$img"}}
	EOF
	loop=$(basename "$(losetup -n -O name -j "$img")")
	"$BG" show >"$SCRATCH/show.txt"
	diag "$(cat "$SCRATCH/show.txt")"
	grep -q "^disk .*qcow2 .*l2-cache-size=262144" "$SCRATCH/show.txt" || fail "text: disk's line"
	"$BG" show --json >"$SCRATCH/show.json"
	python3 - "$SCRATCH/show.json" "$loop" "$img" <<-"PY" || fail "show --json"
	import json, sys
	j = json.load(open(sys.argv[1]))
	loop, img = sys.argv[2], sys.argv[3]
	nodes = {n["node-name"]: n for n in j["nodes"]}
	assert set(nodes) == {"vm4", "disk", "disk#file", loop}, set(nodes)
	assert nodes["vm4"]["id"] is True
	assert nodes["disk"]["kind"] == "qcow2" and nodes["disk"]["size"] == 16 << 20
	assert nodes["disk"]["options"] == {"l2-cache-size": 262144}, nodes["disk"]["options"]
	assert nodes["disk#file"]["driver"] == "file" and nodes["disk#file"]["filename"] == img
	assert nodes["disk"]["parents"] == [{"node": "vm4", "role": "file"}]
	assert nodes["disk"]["blockers"] == []
	edges = {(e["parent"], e["role"], e["child"]): e for e in j["edges"]}
	assert set(edges) == {("vm4", "file", "disk"), ("disk", "file", "disk#file"),
			      ("disk#file", "file", loop)}, set(edges)
	e = edges[("disk", "file", "disk#file")]
	assert "write" in e["perm"] and "consistent-read" in e["perm"], e
	assert "resize" not in e["shared"], e
	print("# show --json: %d nodes, %d edges" % (len(nodes), len(edges)))
	PY
	# One node: it and what is below it.
	"$BG" show disk --json | python3 -c 'import json, sys
n = [x["node-name"] for x in json.load(sys.stdin)["nodes"]]
assert "vm4" not in n and "disk#file" in n, n' || fail "show disk --json"
	"$BG" show --dot | grep -q '"disk" -> "disk#file"' || fail "dot edge"
	"$BG" show --svg "$SCRATCH/g.svg"
	grep -q "<svg" "$SCRATCH/g.svg" || fail "no SVG"
	expect_fail "$BG" show nothing
}

# cli_node_under_vm0: a writable qcow2 node "node" over an empty image
# $SCRATCH/node.img with room to grow, under the id vm0 (bgraph add).
cli_node_under_vm0() {
	cli_tool
	qemu-img create -q -f qcow2 "$SCRATCH/node.img" "${LV_MB}M" &&
		truncate -s $((LV_MB * 2))M "$SCRATCH/node.img" || return 1
	"$BG" add - <<-EOF
	{"driver": "qcow2", "node-name": "node", "id": "vm0",
	 "file": {"driver": "file", "filename": "$SCRATCH/node.img"}}
	EOF
}

# bgraph snapshot under fio verify through the id: the overlay takes the
# writes from the switch on, the node keeps the ones before, and QEMU
# reads the chain as the id device did; bad snapshots change nothing.
test_bgraph_snapshot_under_the_id_device_under_fio() {
	local img out over=$SCRATCH/over.img
	cli_node_under_vm0 || fail "add"
	img=$SCRATCH/node.img
	rm -f "$over"
	CLI_BEFORE=$(cli_state)
	out=$("$BG" snapshot nosuch --overlay "$over" 2>&1) && fail "snapshot of no node"
	expect_match "$out" "^bgraph: nosuch: no such node$" "no such node"
	touch "$over"
	out=$("$BG" snapshot node --overlay "$over" 2>&1) && fail "overlay over an existing file"
	expect_match "$out" "^bgraph: node: overlay .* exists$" "existing overlay"
	rm -f "$over"
	out=$("$BG" snapshot node --overlay "$over" --node-name node 2>&1) && fail "a name in use"
	expect_match "$out" "^bgraph: node: the node-name is in use$" "name in use"
	expect_eq "$(cli_state)" "$CLI_BEFORE" "nothing changed by the refusals"
	[ ! -e "$over" ] || fail "a refused snapshot left its overlay file"

	lv_fio_start /dev/mapper/vm0
	lv_wait_writes /dev/mapper/vm0 "$LV_IOS"
	lv_mark /dev/mapper/vm0 "$LV_MARK1" 0xa1
	out=$("$BG" snapshot node --overlay "$over" 2>&1) || fail "snapshot: $out"
	expect_eq "$out" node-snap1 "the overlay node's name"
	lv_mark /dev/mapper/vm0 "$LV_MARK2" 0xb2
	lv_wait_writes /dev/mapper/vm0 "$LV_IOS"
	lv_fio_stop
	expect_eq "$(lv_graph | grep -v '#' | tr '\n' ';')" \
		"node-snap1 backing node;node-snap1 file loop;vm0 file node-snap1;" "graph"
	expect_eq "$(lv_ro node)" 1 "node read-only under its overlay"
	expect_match "$(qemu-img info "$over")" "backing file: $img" "overlay's backing file"
	lv_dump /dev/mapper/vm0
	"$BG" del vm0 && "$BG" del node-snap1 && "$BG" del node || fail "del"
	expect_eq "$(cli_state)" "No devices found" "nothing left after del"
	qemu-img check -q "$img" || fail "qemu-img check of the node's image"
	qemu-img check -q "$over" || fail "qemu-img check of the overlay"
	qemu-img convert -O raw "$over" "$SCRATCH/lv-conv.ref"
	cmp -s "$SCRATCH/lv-conv.ref" "$SCRATCH/lv-dump.ref" ||
		fail "QEMU reads the overlay chain unlike vm0"
	lv_reads "$img" "$LV_MARK1" 0xa1
	lv_reads "$img" "$LV_MARK2" 0
	lv_reads "$over" "$LV_MARK2" 0xb2 null
	lv_reads "$over" "$LV_MARK1" 0 null
}

# A snapshot failing at its steps (BGRAPH_TEST_FAIL: after the overlay
# node is made, after the parents' tables are loaded) is undone under fio:
# one error line, the graph and the devices as before, no overlay file,
# nothing suspended, no I/O error.
test_bgraph_snapshot_failing_at_each_step_is_undone_under_fio() {
	on_6_12_only "the tool's logic; 6.1 runs add and snapshot"
	local img out step over=$SCRATCH/over.img
	cli_node_under_vm0 || fail "add"
	img=$SCRATCH/node.img
	rm -f "$over"
	CLI_BEFORE="$(cli_state) $(lv_graph)"
	lv_fio_start /dev/mapper/vm0
	for step in create load; do
		lv_wait_writes /dev/mapper/vm0 "$LV_IOS"
		out=$(BGRAPH_TEST_FAIL=$step "$BG" snapshot node --overlay "$over" 2>&1) &&
			fail "$step: the snapshot succeeded"
		diag "$step: $out"
		expect_eq "$(wc -l <<<"$out")" 1 "$step: lines of output"
		expect_eq "$(cli_state) $(lv_graph)" "$CLI_BEFORE" "$step: devices and graph after"
		[ ! -e "$over" ] || fail "$step: the overlay file is left"
		for d in vm0 node; do
			lv_suspended $d && fail "$step: $d left suspended"
		done
		expect_eq "$(lv_ro node)" 0 "$step: node writable again"
	done
	lv_wait_writes /dev/mapper/vm0 "$LV_IOS"
	lv_fio_stop
	lv_dump /dev/mapper/vm0
	"$BG" del vm0 && "$BG" del node || fail "del"
	qemu-img check -q "$img" || fail "qemu-img check"
	qemu-img convert -O raw "$img" "$SCRATCH/lv-conv.ref"
	cmp -s "$SCRATCH/lv-conv.ref" "$SCRATCH/lv-dump.ref" || fail "QEMU reads the image unlike vm0"
}

# cli_quorum_tree ID: three qcow2 images of random data (the same), a
# throttle in group g0 over a quorum q of them, the id ID on top.
cli_quorum_tree() {
	local i
	head -c 16M /dev/urandom >"$SCRATCH/q.ref"
	for i in a b c; do
		qemu-img convert -q -O qcow2 "$SCRATCH/q.ref" "$SCRATCH/$i.img"
		truncate -s 48M "$SCRATCH/$i.img"
	done
	mkdir -p $CFS/throttle-groups/g0
	"$BG" add - <<-EOF2
	{"driver": "throttle", "node-name": "thr", "id": "$1", "throttle-group": "g0",
	 "file": {"driver": "quorum", "node-name": "q", "vote-threshold": 2,
	  "children": [
	   {"driver": "qcow2", "file": {"driver": "file", "filename": "$SCRATCH/a.img"}},
	   {"driver": "qcow2", "file": {"driver": "file", "filename": "$SCRATCH/b.img"}},
	   {"driver": "qcow2", "file": {"driver": "file", "filename": "$SCRATCH/c.img"}}]}}
	EOF2
}

# Seed 001's picture: the three qcow2 children of a quorum under a
# throttle snapshotted at one instant under fio; the filters stay on top.
test_bgraph_snapshot_below_the_filters_of_a_throttled_quorum_under_fio() {
	on_6_12_only "the tool's logic; 6.1 runs add and snapshot"
	local out i n dir=$SCRATCH/ov
	cli_tool
	cli_quorum_tree vm3 || fail "add"
	rm -rf "$dir"
	mkdir "$dir"
	CLI_BEFORE=$(cli_state)
	out=$("$BG" snapshot --below-filters "q#children.0" --overlay-dir "$dir" 2>&1) &&
		fail "below the filters of a qcow2 node: accepted"
	expect_match "$out" "^bgraph: q#children.0: not a filter" "not a filter"
	out=$("$BG" snapshot --below-filters vm3 --overlay-dir "$dir/none" 2>&1) &&
		fail "an overlay directory that does not exist: accepted"
	expect_eq "$(cli_state)" "$CLI_BEFORE" "nothing changed by the refusals"
	lv_fio_start /dev/mapper/vm3
	lv_wait_writes /dev/mapper/vm3 "$LV_IOS"
	out=$("$BG" snapshot --below-filters vm3 --overlay-dir "$dir" 2>&1) || fail "snapshot: $out"
	expect_eq "$(tr '\n' ' ' <<<"$out")" "q#children.0-snap1 q#children.1-snap1 q#children.2-snap1 " "overlay nodes"
	lv_wait_writes /dev/mapper/vm3 "$LV_IOS"
	lv_fio_stop
	for i in 0 1 2; do
		n="q#children.$i"
		grep -qx "q children.$i $n-snap1" $CFS/graph || fail "q's children.$i is not its overlay"
		grep -qx "$n-snap1 backing $n" $CFS/graph || fail "$n-snap1's backing is not $n"
	done
	grep -qx "vm3 file thr" $CFS/graph && grep -qx "thr file q" $CFS/graph ||
		fail "the filters are not on top any more"
	lv_dump /dev/mapper/vm3
	"$BG" del vm3 && "$BG" del thr || fail "del"
	for i in 0 1 2; do
		"$BG" del "q#children.$i-snap1" 2>/dev/null || true
	done
	q2_teardown
	rmdir $CFS/throttle-groups/g0
	for i in 0 1 2; do
		n="$dir/q#children.$i.qcow2"
		qemu-img check -q "$n" || fail "qemu-img check of overlay $i"
		qemu-img convert -O raw "$n" "$SCRATCH/lv-conv.ref"
		cmp -s "$SCRATCH/lv-conv.ref" "$SCRATCH/lv-dump.ref" ||
			fail "QEMU reads overlay $i's chain unlike vm3"
	done
	for i in a b c; do
		qemu-img check -q "$SCRATCH/$i.img" || fail "qemu-img check of $i"
	done
}

# A throttle inserted above the qcow2 node under the id, and on the inner
# edge between the qcow2 node and its file, then removed, under fio.
test_bgraph_insert_and_remove_filter_under_fio() {
	on_6_12_only "the tool's logic; 6.1 runs add and snapshot"
	local img out
	cli_tool
	img=$(cli_qcow2 ins)
	mkdir -p $CFS/throttle-groups/g1
	"$BG" add - <<-EOF || fail "add"
	{"driver": "qcow2", "node-name": "disk", "id": "vm4",
	 "file": {"driver": "file", "filename": "$img"}}
	EOF
	echo '{"driver": "throttle", "node-name": "f1", "throttle-group": "g1"}' >"$SCRATCH/f1.json"
	echo '{"driver": "throttle", "node-name": "f2", "throttle-group": "g1"}' >"$SCRATCH/f2.json"
	CLI_BEFORE=$(cli_state)
	out=$("$BG" insert --edge disk:backing "$SCRATCH/f1.json" 2>&1) && fail "insert on no edge"
	expect_match "$out" "^bgraph: disk: no edge backing$" "no such edge"
	echo '{"driver": "quorum", "node-name": "f1"}' >"$SCRATCH/bad.json"
	out=$("$BG" insert --above disk "$SCRATCH/bad.json" 2>&1) && fail "a quorum as a filter"
	expect_match "$out" "a filter is a throttle or raw node" "not a filter"
	expect_eq "$(cli_state)" "$CLI_BEFORE" "nothing changed by the refusals"
	lv_fio_start /dev/mapper/vm4
	lv_wait_writes /dev/mapper/vm4 "$LV_IOS"
	"$BG" insert --above disk "$SCRATCH/f1.json" >/dev/null || fail "insert above disk"
	grep -qx "vm4 file f1" $CFS/graph && grep -qx "f1 file disk" $CFS/graph ||
		fail "f1 is not between vm4 and disk: $(cat $CFS/graph)"
	lv_wait_writes /dev/mapper/vm4 "$LV_IOS"
	"$BG" insert --edge disk:file "$SCRATCH/f2.json" >/dev/null || fail "insert on disk's file edge"
	grep -qx "disk file f2" $CFS/graph && grep -qx "f2 file disk#file" $CFS/graph ||
		fail "f2 is not between disk and its file: $(cat $CFS/graph)"
	lv_wait_writes /dev/mapper/vm4 "$LV_IOS"
	"$BG" remove-filter f1 || fail "remove f1"
	"$BG" remove-filter f2 || fail "remove f2"
	lv_wait_writes /dev/mapper/vm4 "$LV_IOS"
	lv_fio_stop
	grep -qx "vm4 file disk" $CFS/graph && grep -qx "disk file disk#file" $CFS/graph ||
		fail "the graph is not as before: $(cat $CFS/graph)"
	[ ! -e $CFS/nodes/f1 ] && [ ! -e $CFS/nodes/f2 ] || fail "a filter node is left"
	lv_dump /dev/mapper/vm4
	"$BG" del vm4 && "$BG" del disk || fail "del"
	rmdir $CFS/throttle-groups/g1
	qemu-img check -q "$img" || fail "qemu-img check"
	qemu-img convert -O raw "$img" "$SCRATCH/lv-conv.ref"
	cmp -s "$SCRATCH/lv-conv.ref" "$SCRATCH/lv-dump.ref" || fail "QEMU reads the image unlike vm4"
}

cli_edges() { lv_graph | grep -v ' file loop' | tr '\n' ';'; }

# A node with two parents stacked on each other: a quorum q over the
# node n0 and over a throttle t over n0.  bgraph suspends q (above) before
# t: t suspended first would hold bios q's suspend waits for.
test_bgraph_insert_above_a_node_whose_parents_are_stacked_under_fio() {
	on_6_12_only "the parents' order: pure tool logic"
	cli_tool
	lv_qcow2 n0
	mkdir -p "$TG/lv"
	dmsetup create t --table "0 $LV_SZ bgraph-throttle /dev/mapper/n0 lv"
	dmsetup create q --table "0 $LV_SZ bgraph-quorum 2 2 /dev/mapper/t /dev/mapper/n0"
	lv_raw id q
	echo '{"driver": "throttle", "node-name": "f", "throttle-group": "lv"}' >"$SCRATCH/f.json"
	lv_fio_start /dev/mapper/id
	lv_wait_writes /dev/mapper/id "$LV_IOS"
	BGRAPH_TEST_KILL=list "$BG" insert --above n0 "$SCRATCH/f.json" >"$SCRATCH/steps" 2>&1 ||
		fail "insert above n0: $(cat "$SCRATCH/steps")"
	expect_match "$(tr '\n' ';' <"$SCRATCH/steps")" "suspend q;.*suspend t;.*resume t;.*resume q;" \
		"q suspended before t, resumed after it"
	expect_eq "$(cli_edges)" "f file n0;id file q;q children.0 t;q children.1 f;t file f;" \
		"graph with the filter"
	lv_wait_writes /dev/mapper/id "$LV_IOS"
	"$BG" remove-filter f || fail "remove-filter f"
	expect_eq "$(cli_edges)" "id file q;q children.0 t;q children.1 n0;t file n0;" \
		"graph without the filter"
	lv_wait_writes /dev/mapper/id "$LV_IOS"
	lv_fio_stop
	lv_dump /dev/mapper/id
	lv_finish n0
	lv_cleanup
}

# QEMU's iotest 245 for our options: what changes live under fio, what is
# refused with QEMU's message, read-only both ways on a node nobody
# writes (a write to it refused meanwhile).
test_bgraph_reopen_changes_options_live_and_refuses_the_fixed_ones() {
	on_6_12_only "the tool's logic; 6.1 runs add and snapshot"
	local img spare out
	cli_tool
	img=$(cli_qcow2 ro1)
	spare=$(cli_qcow2 ro2)
	cli_quorum_tree vm6 || fail "add the quorum tree"
	mkdir -p $CFS/throttle-groups/g2
	"$BG" add - <<-EOF || fail "add"
	{"driver": "qcow2", "node-name": "disk", "id": "vm5",
	 "file": {"driver": "file", "filename": "$img"}}
	EOF
	"$BG" add - <<-EOF || fail "add spare"
	{"driver": "qcow2", "node-name": "spare",
	 "file": {"driver": "file", "filename": "$spare"}}
	EOF
	CLI_BEFORE=$(cli_state)
	for out in "driver=raw:Cannot change the option 'driver'" \
		   "node-name=x:Cannot change the option 'node-name'" \
		   "file=y:Cannot change the option 'file'" \
		   "foo=1:Invalid option 'foo' for a qcow2 node" \
		   "read-only=on:Cannot make the node read-only: vm5 writes to it" \
		   "l2-cache-size=zero:l2-cache-size: a byte count"; do
		expect_eq "$("$BG" reopen disk "${out%%:*}" 2>&1 || :)" "bgraph: disk: ${out#*:}" "reopen ${out%%:*}"
	done
	expect_eq "$("$BG" reopen nosuch read-only=on 2>&1 || :)" "bgraph: nosuch: no such node" "no such node"
	expect_eq "$("$BG" reopen thr throttle-group=nosuch 2>&1 || :)" \
		"bgraph: thr: throttle group 'nosuch' does not exist (mkdir $CFS/throttle-groups/nosuch)" "no such group"
	expect_eq "$(cli_state)" "$CLI_BEFORE" "nothing changed by the refusals"

	lv_fio_start /dev/mapper/vm5
	lv_wait_writes /dev/mapper/vm5 "$LV_IOS"
	"$BG" reopen disk l2-cache-size=65536 detect-zeroes=on || fail "reopen disk"
	expect_match "$(dmsetup table disk)" " 4 l2_cache_size 65536 detect_zeroes on$" "disk's table"
	lv_wait_writes /dev/mapper/vm5 "$LV_IOS"
	"$BG" reopen disk detect-zeroes=off || fail "reopen disk back"
	expect_match "$(dmsetup table disk)" " 2 l2_cache_size 65536$" "disk's table back"
	lv_wait_writes /dev/mapper/vm5 "$LV_IOS"
	lv_fio_stop
	"$BG" reopen thr throttle-group=g2 || fail "reopen thr"
	expect_match "$(dmsetup table thr)" " g2$" "thr's group"
	"$BG" reopen q rewrite-corrupted=on || fail "reopen q rewrite-corrupted"
	expect_match "$(dmsetup table q)" " 1 rewrite-corrupted$" "q's rewrite-corrupted"
	# A combination the kernel refuses at load: its reason, nothing changed.
	expect_eq "$("$BG" reopen q read-pattern=fifo 2>&1 || :)" \
		"bgraph: q: bgraph-quorum: rewrite-corrupted needs read-pattern quorum (-EINVAL)" "refused by the kernel"
	expect_match "$(dmsetup table q)" " 1 rewrite-corrupted$" "q's table unchanged"
	lv_suspended q && fail "q left suspended"
	"$BG" reopen q rewrite-corrupted=off read-pattern=fifo || fail "reopen q read-pattern"
	expect_match "$(dmsetup table q)" " 2 read-pattern fifo$" "q's read-pattern"
	cmp -n $((8 << 20)) /dev/mapper/vm6 "$SCRATCH/q.ref" || fail "vm6 reads other data after the reopen"

	# read-only both ways on spare, which has no parent.
	"$BG" reopen spare read-only=on || fail "spare read-only"
	expect_eq "$(blockdev --getro /dev/mapper/spare)" 1 "spare read-only"
	dd if=/dev/zero of=/dev/mapper/spare bs=4k count=1 oflag=direct status=none 2>/dev/null &&
		fail "a write to the read-only spare succeeded"
	"$BG" reopen spare read-only=off || fail "spare read-write"
	expect_eq "$(blockdev --getro /dev/mapper/spare)" 0 "spare writable again"
	dd if=/dev/zero of=/dev/mapper/spare bs=4k count=1 oflag=direct status=none ||
		fail "a write to the writable spare failed"
	"$BG" del vm5 && "$BG" del disk && "$BG" del spare && "$BG" del vm6 && "$BG" del thr || fail "del"
	rmdir $CFS/throttle-groups/g0 $CFS/throttle-groups/g2
	qemu-img check -q "$img" || fail "qemu-img check disk"
	qemu-img check -q "$spare" || fail "qemu-img check spare"
	qemu-io -r -c "read -P 0 0 4k" "$spare" | grep -q "^read 4096/4096" || fail "QEMU does not read spare's zeros"
}
