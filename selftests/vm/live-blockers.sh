#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Op blockers taken by live graph changes: configfs changes/<name>/block
# ("<op> <node>...", all or nothing, refused by the op-blocker table with
# a reason in the kernel log), released by rmdir; a node removed while
# blocked; and the bgraph verbs refused, changing nothing, on a node
# another change holds.  "Op blockers" in Documentation/bgraph.rst.

# The bgraph helpers of cli.sh (cli_tool, cli_state, cli_qcow2; it sources
# lib-live.sh); its tests are run from it, not from here.
# shellcheck source=cli.sh
source "$(dirname "${BASH_SOURCE[0]}")/cli.sh"

CH=$CFS/changes

# lb_raw NAME: a bgraph-raw node over a fresh 8 MiB loop device.
lb_raw() {
	local l
	l=$(mkloop "$1" 8)
	dmsetup create "$1" --table "0 16384 bgraph-raw $l"
}

# lb_block CHANGE LINE: write LINE to CHANGE's block file; its status.
lb_block() { printf '%s\n' "$2" >"$CH/$1/block"; }

# lb_refused CHANGE LINE ERRNO_TEXT LOG_REGEX: the write is refused with
# that error and one kernel log line matching LOG_REGEX; CHANGE's blockers
# and every node's are unchanged.
lb_refused() {
	local before err
	before=$(cat "$CH/$1/block" "$CFS"/nodes/*/blockers)
	mark_log
	err=$( (printf '%s\n' "$2" >"$CH/$1/block") 2>&1) && fail "'$2' accepted"
	expect_match "$err" "$3" "'$2': error"
	expect_match "$(log_since_mark)" "$4" "'$2': reason in the kernel log"
	expect_eq "$(cat "$CH/$1/block" "$CFS"/nodes/*/blockers)" "$before" \
		"'$2': blockers after"
}

test_change_takes_blockers_all_or_nothing_and_rmdir_releases_them() {
	lb_raw a
	lb_raw b
	lb_raw c
	mkdir "$CH/x" "$CH/y"
	lb_block x "graph-change a b"
	expect_eq "$(cat "$CH/x/block")" "graph-change a b" "x's block"
	expect_eq "$(cat "$CFS/nodes/a/blockers")" "graph-change change:x" "a's blockers"
	expect_eq "$(cat "$CFS/nodes/b/blockers")" "graph-change change:x" "b's blockers"
	# Refused by the table: nothing taken, not even on the free node c.
	lb_refused y "remove c b" "Device or resource busy" \
		"change y: node b: remove is blocked by graph-change \(change:x\)"
	expect_eq "$(cat "$CFS/nodes/c/blockers")" "" "c after the refusal"
	lb_refused x "external-snapshot a" "Device or resource busy" \
		"change x: node a: external-snapshot is blocked by graph-change \(change:x\)"
	# Bad lines.
	lb_refused y "nonsense c" "Invalid argument" "change y: Unknown op"
	lb_refused y "graph-change" "Invalid argument" "change y: No node"
	lb_refused y "graph-change c nosuch" "Invalid argument" "change y: node nosuch: no such node"
	lb_refused y "graph-change c c" "Invalid argument" "change y: A node is named twice"
	# The table lets two backups read one node.
	mkdir "$CH/z"
	lb_block y "backup-source c"
	lb_block z "backup-source c"
	expect_eq "$(cat "$CFS/nodes/c/blockers")" "backup-source change:y
backup-source change:z" "c's blockers"
	rmdir "$CH/z"
	# The change's own table loads on the nodes it holds pass.
	dmsetup reload a --table "$(dmsetup table a)"
	dmsetup resume a
	rmdir "$CH/x"
	expect_eq "$(cat "$CFS/nodes/a/blockers" "$CFS/nodes/b/blockers")" "" "after rmdir x"
	lb_block y "remove a b"
	expect_eq "$(cat "$CH/y/block")" "backup-source c
remove a b" "y's two lines"
	rmdir "$CH/y"
	expect_eq "$(cat "$CFS"/nodes/*/blockers)" "" "after rmdir y"
	[ -z "$(ls "$CH")" ] || fail "changes left: $(ls "$CH")"
}

# dm's destructor cannot refuse: a node removed while blocked leaves the
# graph (its name and device number free again at once), and the change
# keeps its blocker on the removed node until rmdir.
test_a_node_removed_while_blocked_leaves_the_graph_and_rmdir_frees_it() {
	local la
	lb_raw a
	lb_raw b
	la=$(dmsetup table a | cut -d' ' -f4)
	mkdir "$CH/x"
	lb_block x "graph-change a b"
	dmsetup remove a
	[ ! -e "$CFS/nodes/a" ] || fail "node a still in configfs"
	expect_eq "$(cat "$CH/x/block")" "graph-change a(removed) b" \
		"x's block after the removal"
	# The name again, most likely on the freed minor: a new node, free.
	dmsetup create a --table "0 16384 bgraph-raw $la"
	expect_eq "$(cat "$CFS/nodes/a/blockers")" "" "the new a's blockers"
	lb_block x "graph-change a"
	dmsetup remove a
	dmsetup remove b
	expect_eq "$(cat "$CH/x/block")" "graph-change a(removed) b(removed)
graph-change a(removed)" "x's block after every removal"
	rmdir "$CH/x"
	[ -z "$(ls "$CFS/nodes")" ] || fail "nodes left: $(ls "$CFS/nodes")"
}

# bgraph's verbs take their blockers (bgraph-<pid>) after their checks:
# on a node a hand-made change holds, each is refused with one line naming
# the node and the holder, and nothing changes.
test_bgraph_verbs_refused_on_nodes_another_change_holds() {
	local img out v
	on_6_12_only "the kernel paths of the test above; bgraph is user space"
	cli_tool
	img=$(cli_qcow2 lb)
	"$BG" add - <<-EOF2 || fail "add"
	{"driver": "qcow2", "node-name": "disk", "id": "vm0",
	 "file": {"driver": "file", "filename": "$img"}}
	EOF2
	echo '{"driver": "throttle", "node-name": "f1", "throttle-group": "lb"}' >"$SCRATCH/f1.json"
	mkdir -p "$CFS/throttle-groups/lb" "$CH/x"
	lb_block x "graph-change vm0"
	# bgraph show names the blocker and its owner, as text and as JSON.
	"$BG" show | grep -qx "vm0 graph-change change:x" || fail "show: $("$BG" show)"
	"$BG" show --json | python3 -c '
import json, sys
n = {x["node-name"]: x for x in json.load(sys.stdin)["nodes"]}
sys.exit(n["vm0"]["blockers"] != [{"op": "graph-change", "owner": "change:x"}]
         or n["disk"]["blockers"] != [])' || fail "show --json: blockers"
	CLI_BEFORE=$(cli_state; cat "$CFS/graph")
	for v in "snapshot disk --overlay $SCRATCH/lb-snap.qcow2" \
		 "insert --above disk $SCRATCH/f1.json" "reopen vm0 discard=ignore" \
		 "del vm0"; do
		# shellcheck disable=SC2086
		out=$("$BG" $v 2>&1) && fail "bgraph $v: accepted"
		diag "bgraph $v: $out"
		expect_eq "$(wc -l <<<"$out")" 1 "bgraph $v: lines"
		expect_match "$out" "^bgraph: vm0: .*graph-change.*change:x" "bgraph $v: error"
		expect_eq "$(cli_state; cat "$CFS/graph")" "$CLI_BEFORE" "bgraph $v: changed"
		expect_eq "$(ls "$CH")" x "bgraph $v: changes after"
	done
	[ ! -e "$SCRATCH/lb-snap.qcow2" ] || fail "overlay image made"
	rmdir "$CH/x"
	# A change holding remove on disk: snapshot refused at disk itself.
	mkdir "$CH/x"
	lb_block x "remove disk"
	out=$("$BG" reopen disk l2-cache-size=1048576 2>&1) && fail "reopen of disk accepted"
	expect_match "$out" "^bgraph: disk: graph-change is blocked by remove \(change:x\)$" "reopen disk"
	rmdir "$CH/x"
	# Free again: the verbs work and leave no change behind.
	"$BG" snapshot disk --overlay "$SCRATCH/lb-snap.qcow2" >/dev/null || fail "snapshot"
	"$BG" reopen vm0 discard=ignore || fail "reopen"
	"$BG" insert --above disk-snap1 "$SCRATCH/f1.json" >/dev/null || fail "insert"
	"$BG" remove-filter f1 || fail "remove-filter"
	"$BG" del vm0 || fail "del"
	[ -z "$(ls "$CH")" ] || fail "changes left: $(ls "$CH")"
	rmdir "$CFS/throttle-groups/lb"
}
