#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# bgraph killed (SIGKILL) at every step of a live change, then recovered
# from its record of the change in progress (/run/bgraph/change.json):
# bgraph recover, or the next bgraph that changes the graph, finishes or
# undoes it.  BGRAPH_TEST_KILL=N kills bgraph right after its N-th step;
# each loop raises N until bgraph ends by itself, so every step is
# killed once.  After each recovery: no device suspended, the graph
# exactly as before the change or exactly as after it, no record, no
# device, loop device, node record or overlay file left over; fio writing
# through the id with verify=crc32c the whole time sees no error, and
# qemu-img check and convert agree with the id device at the end.  Also
# bgraph transaction: two snapshots at one instant, and bad transactions
# that change nothing.

# cli_tool, cli_state, cli_node_under_vm0, cli_quorum_tree.
# shellcheck source=cli.sh
source "$(dirname "${BASH_SOURCE[0]}")/cli.sh"

RC_JR=/run/bgraph/change.json

# rc_fio_start DEV: lv_fio_start's verified writes, at a rate that leaves
# the guest's CPU to the kill loops (each bgraph run and check is a few
# processes; under TCG fio at full speed would take most of their time).
rc_fio_start() {
	fio_start "$LV_FIO" --name=live --filename="$1" --direct=1 \
		--ioengine=libaio --iodepth=4 --rw=randrw --bssplit=4k/75:64k/25 \
		--verify=crc32c --verify_backlog=16 --size=$((LV_MB / 2))M --rate_iops=40
	trap 'lv_unsuspend; { kill -INT "$FIO_PID" && wait "$FIO_PID"; } 2>/dev/null || true' EXIT
}

# The checks run after every kill, with few processes: under TCG each
# process started costs far more than the shell's built-ins.

# rc_graph: configfs's graph, sorted, loop devices named "loop".
rc_graph() {
	local l
	local -a out=()
	while read -r l; do
		[[ $l =~ ^(.*\ )loop[0-9]+$ ]] && l="${BASH_REMATCH[1]}loop"
		out+=("$l")
	done <"$CFS/graph"
	printf '%s\n' "${out[@]}" | sort
}

# rc_parent NODE: the parent of NODE's one edge in the graph.
rc_parent() {
	local p r c
	while read -r p r c; do
		[ "$c" != "$1" ] || echo "$p"
	done <"$CFS/graph"
}

# rc_child NODE ROLE: NODE's child of ROLE.
rc_child() {
	local p r c
	while read -r p r c; do
		[ "$p" != "$1" ] || [ "$r" != "$2" ] || echo "$c"
	done <"$CFS/graph"
}

# rc_state: the dm devices, the loop devices and their files, bgraph's
# node records.
rc_state() {
	local f l
	dmsetup ls 2>&1
	for f in /sys/block/loop*/loop/backing_file; do
		[ -e "$f" ] || continue
		read -r l <"$f"
		echo "$f $l"
	done
	for f in /run/bgraph/nodes/*; do
		[ ! -e "$f" ] || echo "$f"
	done
}

# rc_clean WHAT: nothing suspended (dmsetup info's attr has an s), no
# record of a change left.
rc_clean() {
	local n a
	while IFS=: read -r n a; do
		[[ $a != *s* ]] || fail "$1: $n left suspended"
	done < <(dmsetup info -c --noheadings -o name,attr 2>/dev/null)
	[ ! -e "$RC_JR" ] || fail "$1: the record is left: $(cat "$RC_JR")"
}

# rc_run KILL CMD...: run bgraph CMD with BGRAPH_TEST_KILL=KILL; RC_RC is
# its exit status (137: killed), RC_OUT its stderr.
rc_run() {
	local k=$1
	shift
	RC_RC=0
	RC_OUT=$(BGRAPH_TEST_KILL=$k "$BG" "$@" 2>&1 >/dev/null) || RC_RC=$?
}

# rc_recover WHAT: bgraph recover; it says what it did.
rc_recover() {
	local out
	out=$("$BG" recover 2>&1) || fail "$1: recover failed: $out"
	diag "$1: $out"
	expect_match "$out" "^(undid|finished) the " "$1: what recover did"
}

# rc_is STATE-BEFORE GRAPH-BEFORE WHAT AFTER-CMD...: the graph is
# exactly as before (and then so are the devices, loops and records:
# rc_state) or exactly what AFTER-CMD prints; RC_AFTER says which.
rc_is() {
	local g state=$1 before=$2 what=$3 after
	shift 3
	g=$(rc_graph)
	RC_AFTER=0
	if [ "$g" = "$before" ]; then
		expect_eq "$(rc_state)" "$state" "$what: devices, loops and records as before"
		return
	fi
	RC_AFTER=1
	after=$("$@")
	[ "$g" = "$after" ] && return
	diag "before: $before"
	diag "after: $after"
	fail "$what: the graph is neither as before nor as after: $g"
}

# The graph after a snapshot of TOP (under vm0) as kN, after a filter fN
# inserted above BASE (under PARENT), after the filter F between PARENT
# and BASE removed: from the graph BEFORE.
rc_snap_after() {
	{ grep -vx "vm0 file $2" <<<"$1"
	  echo "vm0 file k$3"; echo "k$3 backing $2"; echo "k$3 file loop"; } | sort
}
rc_ins_after() {
	{ grep -vx "$2 [a-z.0-9]* $3" <<<"$1"
	  grep -x "$2 [a-z.0-9]* $3" <<<"$1" | sed "s/ $3\$/ f$4/"
	  echo "f$4 file $3"; } | sort
}
rc_rm_after() {
	{ grep -vx -e "$2 [a-z.0-9]* $3" -e "$3 file $4" <<<"$1"
	  grep -x "$2 [a-z.0-9]* $3" <<<"$1" | sed "s/ $3\$/ $4/"; } | sort
}

# Snapshot, reopen, insert and remove-filter of the node under vm0, each
# killed at every step under one fio: recovered each time by bgraph
# recover (killed itself at every step once), or by the next bgraph
# verb.
test_bgraph_killed_at_every_step_of_a_change_is_recovered_under_fio() {
	local n base top before state k img imgs=node out parent f tbefore tafter
	on_6_12_only "bgraph's recovery: user space, the kernel paths of live-snapshot.sh"
	cli_node_under_vm0 || fail "add"
	mkdir -p $CFS/throttle-groups/rc
	rc_fio_start /dev/mapper/vm0
	lv_wait_writes /dev/mapper/vm0 16

	# Snapshots of the top node under vm0, k1.img, k2.img, ...
	for ((n = 1; ; n++)); do
		top=$(rc_child vm0 file)
		img=$SCRATCH/k$n.img
		before=$(rc_graph)
		state=$(rc_state)
		rc_run "$n" snapshot "$top" --overlay "$img" --node-name "k$n"
		[ "$RC_RC" = 137 ] || break
		diag "snapshot: $RC_OUT"
		if [[ $RC_OUT == *"(suspend vm0)"* ]]; then
			lv_suspended vm0 || fail "vm0 not suspended by the kill after its suspend"
			# The next verb recovers first (here one that then fails).
			out=$("$BG" del nosuch 2>&1) && fail "del nosuch"
			expect_match "$out" "^bgraph: recover: undid the snapshot" "recovered by del"
		elif [[ $RC_OUT == *"(load vm0)"* ]]; then
			# recover killed at each of its own steps, then run again.
			for ((k = 1; ; k++)); do
				rc_run "$k" recover
				[ "$RC_RC" = 137 ] || break
				diag "recover: $RC_OUT"
			done
			expect_eq "$RC_RC" 0 "recover after its kills: $RC_OUT"
			out=$("$BG" recover 2>&1) || fail "recover again: $out"
			expect_eq "$out" "" "a recover after the recovery has nothing to do"
		else
			rc_recover "snapshot $n"
		fi
		rc_clean "snapshot $n"
		rc_is "$state" "$before" "snapshot $n" rc_snap_after "$before" "$top" "$n"
		if [ "$RC_AFTER" = 1 ]; then
			imgs+=" k$n"
		else
			[ ! -e "$img" ] || fail "snapshot $n: overlay file left"
		fi
	done
	expect_eq "$RC_RC" 0 "snapshot $n ends by itself: $RC_OUT"
	imgs+=" k$n"
	expect_eq "$(rc_graph)" "$(rc_snap_after "$before" "$top" "$n")" "snapshot $n"
	diag "snapshot: $n steps"

	# Reopen of the node under vm0: its table old or new, not suspended.
	top=$(rc_child vm0 file)
	tbefore=$(dmsetup table "$top")
	for ((n = 1; ; n++)); do
		rc_run "$n" reopen "$top" l2-cache-size=$((65536 * (n + 1)))
		[ "$RC_RC" = 137 ] || break
		diag "reopen: $RC_OUT"
		rc_recover "reopen $n"
		rc_clean "reopen $n"
		tafter=$(dmsetup table "$top")
		if [ "$tafter" != "$tbefore" ]; then
			expect_match "$tafter" "l2_cache_size $((65536 * (n + 1)))" "reopen $n: new table"
			tbefore=$tafter
		fi
	done
	expect_eq "$RC_RC" 0 "reopen ends by itself: $RC_OUT"
	expect_match "$(dmsetup table "$top")" "l2_cache_size $((65536 * n + 65536))" "reopen's table"
	diag "reopen: $n steps"

	# Throttle filters f1, f2, ... inserted above the top qcow2 node base
	# (on its one edge, whatever is above it by then).
	base=$(rc_child vm0 file)
	for ((n = 1; ; n++)); do
		echo "{\"driver\": \"throttle\", \"node-name\": \"f$n\", \"throttle-group\": \"rc\"}" \
			>"$SCRATCH/f.json"
		parent=$(rc_parent "$base")
		before=$(rc_graph)
		state=$(rc_state)
		rc_run "$n" insert --above "$base" "$SCRATCH/f.json"
		[ "$RC_RC" = 137 ] || break
		diag "insert: $RC_OUT"
		rc_recover "insert $n"
		rc_clean "insert $n"
		rc_is "$state" "$before" "insert $n" rc_ins_after "$before" "$parent" "$base" "$n"
	done
	expect_eq "$RC_RC" 0 "insert ends by itself: $RC_OUT"
	expect_eq "$(rc_graph)" "$(rc_ins_after "$before" "$parent" "$base" "$n")" "insert $n"
	diag "insert: $n steps"

	# remove-filter of the filter above "node", one inserted again when
	# none is left.
	for ((n = 1; ; n++)); do
		f=$(rc_parent "$base")
		if [[ $f != [fg][0-9]* ]]; then
			echo "{\"driver\": \"throttle\", \"node-name\": \"g$n\", \"throttle-group\": \"rc\"}" \
				>"$SCRATCH/f.json"
			"$BG" insert --above "$base" "$SCRATCH/f.json" >/dev/null || fail "insert g$n"
			f=g$n
		fi
		parent=$(rc_parent "$f")
		before=$(rc_graph)
		state=$(rc_state)
		rc_run "$n" remove-filter "$f"
		[ "$RC_RC" = 137 ] || break
		diag "remove-filter: $RC_OUT"
		rc_recover "remove-filter $n"
		rc_clean "remove-filter $n"
		rc_is "$state" "$before" "remove-filter $n" rc_rm_after "$before" "$parent" "$f" "$base"
		[ "$RC_AFTER" = 0 ] || [ ! -e "$CFS/nodes/$f" ] || fail "remove-filter $n: $f left"
	done
	expect_eq "$RC_RC" 0 "remove-filter ends by itself: $RC_OUT"
	expect_eq "$(rc_graph)" "$(rc_rm_after "$before" "$parent" "$f" "$base")" "remove-filter $n"
	diag "remove-filter: $n steps"

	lv_wait_writes /dev/mapper/vm0 16
	lv_fio_stop
	rc_clean "the end"
	lv_dump /dev/mapper/vm0
	top=$(rc_child vm0 file)
	while [[ $top == [fg]* ]]; do
		top=$(rc_child "$top" file)
	done
	q2_teardown
	rmdir $CFS/throttle-groups/rc
	for img in $imgs; do
		qemu-img check -q "$SCRATCH/$img.img" || fail "qemu-img check of $img"
	done
	qemu-img convert -O raw "$SCRATCH/$top.img" "$SCRATCH/lv-conv.ref"
	cmp -s "$SCRATCH/lv-conv.ref" "$SCRATCH/lv-dump.ref" ||
		fail "QEMU reads $top's chain unlike vm0"
}

# An add killed at every step is undone by recover: no device, loop
# device or record is left; the add that ends by itself made the tree.
test_bgraph_add_killed_at_every_step_leaves_nothing() {
	local n state json
	on_6_12_only "bgraph's recovery: user space"
	cli_tool
	qemu-img create -q -f qcow2 "$SCRATCH/a.img" 16M
	qemu-img create -q -f qcow2 -b "$SCRATCH/a.img" -F qcow2 "$SCRATCH/b.img" 16M
	truncate -s 32M "$SCRATCH/b.img"
	json="{\"driver\": \"qcow2\", \"node-name\": \"b\", \"id\": \"vmb\",
	       \"file\": {\"driver\": \"file\", \"filename\": \"$SCRATCH/b.img\"}}"
	state=$(rc_state)
	for ((n = 1; ; n++)); do
		RC_RC=0
		RC_OUT=$(BGRAPH_TEST_KILL=$n "$BG" add - <<<"$json" 2>&1) || RC_RC=$?
		[ "$RC_RC" = 137 ] || break
		diag "add: $RC_OUT"
		rc_recover "add $n"
		rc_clean "add $n"
		expect_eq "$(rc_state)" "$state" "add $n: devices, loops and records"
	done
	expect_eq "$RC_RC" 0 "add ends by itself: $RC_OUT"
	diag "add: $n steps"
	expect_eq "$(rc_graph | tr '\n' ';')" \
		"b backing b#backing;b file b#file;b#backing file b#backing#file;b#backing#file file loop;b#file file loop;vmb file b;" \
		"the tree"
}

# bgraph transaction: two of the three children of a quorum under the id
# snapshotted at one instant (one suspend of the quorum) under fio; a
# transaction whose second action fails (its overlay exists), one with an
# unknown action, malformed JSON, and one failing after its suspend, at
# its load (BGRAPH_TEST_FAIL), change nothing; a snapshot below the
# filters killed after its load is undone by recover.
test_bgraph_transaction_of_two_snapshots_at_one_instant_under_fio() {
	local out state dir=$SCRATCH/tx i
	on_6_12_only "bgraph transaction: user space, the kernel paths of live-snapshot.sh"
	cli_tool
	for i in a b c; do
		qemu-img create -q -f qcow2 "$SCRATCH/$i.img" "${LV_MB}M"
		truncate -s $((LV_MB * 2))M "$SCRATCH/$i.img"
	done
	"$BG" add - <<-EOF || fail "add"
	{"driver": "quorum", "node-name": "q", "id": "vmt", "vote-threshold": 2,
	 "children": [
	  {"driver": "qcow2", "file": {"driver": "file", "filename": "$SCRATCH/a.img"}},
	  {"driver": "qcow2", "file": {"driver": "file", "filename": "$SCRATCH/b.img"}},
	  {"driver": "qcow2", "file": {"driver": "file", "filename": "$SCRATCH/c.img"}}]}
	EOF
	rm -rf "$dir"
	mkdir "$dir"
	state="$(cli_state) $(rc_graph)"
	txn() {
		printf '{"actions": [{"type": "blockdev-snapshot-sync", "data": {"node-name": "q#children.0", "snapshot-file": "%s", "snapshot-node-name": "s0"}}, {"type": "%s", "data": {"node-name": "q#children.1", "snapshot-file": "%s", "format": "qcow2"}}]}' \
			"$dir/s0.qcow2" "$1" "$2"
	}
	touch "$dir/exists"
	out=$(txn blockdev-snapshot-sync "$dir/exists" | "$BG" transaction - 2>&1) &&
		fail "a transaction over an existing overlay: accepted"
	expect_match "$out" "^bgraph: q#children.1: overlay .*/exists exists$" "existing overlay"
	out=$(txn blockdev-backup "$dir/s1.qcow2" | "$BG" transaction - 2>&1) &&
		fail "an unknown action: accepted"
	expect_match "$out" "^bgraph: actions\[1\]: action type 'blockdev-backup' is not supported" \
		"unknown action"
	out=$(echo '{"actions": [' | "$BG" transaction - 2>&1) && fail "malformed JSON: accepted"
	expect_match "$out" "^bgraph: -: malformed JSON" "malformed JSON"
	expect_eq "$(cli_state) $(rc_graph)" "$state" "nothing changed by the refusals"
	[ ! -e "$dir/s0.qcow2" ] || fail "a refused transaction left an overlay"
	rc_fio_start /dev/mapper/vmt
	lv_wait_writes /dev/mapper/vmt 4
	out=$(txn blockdev-snapshot-sync "$dir/s1.qcow2" |
		BGRAPH_TEST_FAIL=load "$BG" transaction - 2>&1) && fail "a failing load: accepted"
	expect_eq "$(wc -l <<<"$out")" 1 "a failing load: one line"
	expect_eq "$(cli_state) $(rc_graph)" "$state" "nothing changed by the failed load"
	rc_clean "the failed load"
	[ ! -e "$dir/s0.qcow2" ] && [ ! -e "$dir/s1.qcow2" ] || fail "the failed transaction left an overlay"
	lv_wait_writes /dev/mapper/vmt 4
	out=$(txn blockdev-snapshot-sync "$dir/s1.qcow2" | "$BG" transaction - 2>&1) ||
		fail "transaction: $out"
	expect_eq "$(tr '\n' ' ' <<<"$out")" "s0 q#children.1-snap1 " "overlay nodes"
	lv_wait_writes /dev/mapper/vmt 4
	# A snapshot below the filters killed with its three overlay nodes
	# made and the quorum loaded with them: undone.
	state="$(cli_state) $(rc_graph)"
	mkdir "$dir/below"
	rc_run "load q" snapshot --below-filters vmt --overlay-dir "$dir/below"
	expect_eq "$RC_RC" 137 "below the filters: killed: $RC_OUT"
	lv_suspended q || fail "q not suspended by the kill after its load"
	rc_recover "below the filters"
	rc_clean "below the filters"
	expect_eq "$(cli_state) $(rc_graph)" "$state" "below the filters: as before"
	expect_eq "$(ls "$dir/below")" "" "below the filters: overlay files left"
	lv_wait_writes /dev/mapper/vmt 4
	lv_fio_stop
	rc_clean "the transaction"
	grep -qx "q children.0 s0" $CFS/graph && grep -qx "s0 backing q#children.0" $CFS/graph &&
		grep -qx "q children.1 q#children.1-snap1" $CFS/graph &&
		grep -qx "q children.2 q#children.2" $CFS/graph ||
		fail "the graph after the transaction: $(cat $CFS/graph)"
	lv_dump /dev/mapper/vmt
	q2_teardown
	for i in s0 s1; do
		qemu-img check -q "$dir/$i.qcow2" || fail "qemu-img check of $i"
	done
	# The quorum's children hold the same data: one chain is read back.
	qemu-img convert -O raw "$dir/s1.qcow2" "$SCRATCH/lv-conv.ref"
	cmp -s "$SCRATCH/lv-conv.ref" "$SCRATCH/lv-dump.ref" ||
		fail "QEMU reads s1's chain unlike vmt"
}
