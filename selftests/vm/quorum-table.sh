#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# bgraph-quorum's table: bad tables refused, children in the graph and in
# dmsetup ls --tree, table and status formats, reloads with each option.

# shellcheck source=lib-quorum.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-quorum.sh"

# q_bad_tables: each line of stdin, TABLE|REASON, is refused by dmsetup
# create, in order, with REASON as the constructor's error in the kernel
# log; nothing is left behind.  (One log read for all: each exec costs
# under TCG.)
q_bad_tables() {
	local table why got i=0
	local -a want=()
	mark_log
	while IFS='|' read -r table why; do
		[ -n "$table" ] || continue
		if dmsetup create qbad --table "$table" >/dev/null 2>&1; then
			dmsetup remove qbad
			fail "table accepted: $table"
		fi
		want+=("$why|$table")
	done
	mapfile -t got < <(log_since_mark | grep -E "device-mapper: table: [0-9]+:[0-9]+: bgraph-quorum: " |
		sed -E 's/.*bgraph-quorum: //')
	for i in "${!want[@]}"; do
		[[ ${got[$i]-} =~ ^${want[$i]%%|*} ]] ||
			fail "'${want[$i]#*|}': logged '${got[$i]-}', want '${want[$i]%%|*}'"
	done
	expect_eq "${#got[@]}" "${#want[@]}" "constructor errors logged"
	expect_eq "$(dmsetup ls | grep -c qbad || true)" 0 "dm devices left behind"
	expect_eq "$(ls "$CFS/nodes")" "" "nodes left behind"
}

# ---- table ----------------------------------------------------------

test_bad_tables_refused_with_a_reason_and_nothing_left() {
	local l s small d17 t
	q_begin
	mapfile -t l < <(q_loops 3)
	small=$(mkloop small 16)
	s=$(blockdev --getsz "${l[0]}")
	t="0 $s bgraph-quorum"
	# 17 paths: the count is refused before any device is opened.
	d17="${l[*]} ${l[*]} ${l[*]} ${l[*]} ${l[*]} ${l[0]} ${l[1]}"
	q_bad_tables <<-EOF
	$t|Not enough arguments
	$t x 3 ${l[*]}|Invalid vote threshold: not a number
	$t 0 3 ${l[*]}|Vote threshold must be 1 or more
	$t 4 3 ${l[*]}|Vote threshold may not exceed the number of children
	$t 2 17 $d17|Too many children: at most 16
	$t 2 0|Number of children must be 1 or more
	$t 2 3 ${l[0]} ${l[1]}|Fewer devices than the number of children
	$t 2 3 ${l[*]} 1 blkverify|blkverify needs exactly two children and vote threshold 2
	$t 1 2 ${l[0]} ${l[1]} 1 blkverify|blkverify needs exactly two children and vote threshold 2
	$t 2 2 ${l[0]} ${l[1]} 2 blkverify rewrite-corrupted|rewrite-corrupted cannot be used with blkverify
	$t 2 3 ${l[*]} 3 rewrite-corrupted read-pattern fifo|rewrite-corrupted needs read-pattern quorum
	$t 2 2 ${l[0]} ${l[1]} 3 read-pattern fifo blkverify|blkverify needs read-pattern quorum
	0 $(blockdev --getsz "$small") bgraph-quorum 2 3 ${l[0]} ${l[1]} $small|Children differ in size
	0 $((s + 8)) bgraph-quorum 2 3 ${l[*]}|Device is larger than its children
	$t 2 3 ${l[*]} 1 colour|Unknown optional argument
	$t 2 3 ${l[*]} 2 rewrite-corrupted|Optional argument count does not match the arguments given
	$t 2 3 ${l[*]} x rewrite-corrupted|Invalid number of optional arguments
	$t 2 3 ${l[*]} 2 read-pattern random|Invalid read-pattern: quorum or fifo
	$t 2 3 ${l[*]} 2 rewrite-corrupted rewrite-corrupted|Option rewrite-corrupted given twice
	$t 2 3 ${l[0]} ${l[1]} ${l[0]}|The same device is given twice as a child
	$t 2 3 ${l[0]} ${l[1]} /dev/no-such-device|Cannot open the child device
	EOF
	# Rewrites write: not in a read-only table.
	mark_log
	expect_fail dmsetup create qbad --readonly --table "$t 2 3 ${l[*]} 1 rewrite-corrupted"
	expect_match "$(log_since_mark)" "bgraph-quorum: rewrite-corrupted needs a writable table" "read-only reason"
	expect_eq "$(ls "$CFS/nodes")" "" "nodes left behind"
	dmsetup create qro --readonly --table "$t 2 3 ${l[*]}"
	dmsetup remove qro
}

test_children_show_as_children_n_in_graph_and_node_dir() {
	local l n
	q_begin
	mapfile -t l < <(q_loops 3)
	q_create qn 2 "" "${l[@]}"
	expect_eq "$(cat "$CFS/nodes/qn/kind")" quorum "kind"
	expect_eq "$(q_graph qn)" \
		"qn children.0 ${l[0]##*/};qn children.1 ${l[1]##*/};qn children.2 ${l[2]##*/};" \
		"graph"
	expect_eq "$(sort "$CFS/nodes/qn/children" | tr '\n' ';')" \
		"children.0 ${l[0]##*/};children.1 ${l[1]##*/};children.2 ${l[2]##*/};" \
		"nodes/qn/children"
	for n in 0 1 2; do
		expect_eq "$(cat "$CFS/nodes/${l[$n]##*/}/parents")" "qn children.$n" "parents of child $n"
	done
	expect_eq "$(cat "$CFS/nodes/qn/size")" $((Q_MB << 20)) "size"
}

test_dmsetup_ls_tree_shows_the_children_under_the_node() {
	local l tree n
	q_begin
	mapfile -t l < <(q_loops 3)
	q_create qn 2 "" "${l[@]}"
	tree=$(dmsetup ls --tree -o ascii)
	diag "$tree"
	expect_match "$(head -n 1 <<<"$tree")" "^qn \([0-9]+:[0-9]+\)$" "the node at the root"
	expect_eq "$(tail -n +2 <<<"$tree" | grep -c -- '-')" 3 "lines under the node"
	for n in 0 1 2; do
		expect_match "$(tail -n +2 <<<"$tree")" "^ [|\`]- ?\($(q_mm "${l[$n]}")\)$" "child $n under the node"
	done
}

test_table_and_status_formats() {
	local l mm
	q_begin
	mapfile -t l < <(q_loops 3)
	mm="$(q_mm "${l[0]}") $(q_mm "${l[1]}") $(q_mm "${l[2]}")"
	q_create qn 2 "" "${l[@]}"
	expect_eq "$(dmsetup table qn)" "0 $Q_SECTORS bgraph-quorum 2 3 $mm" "table"
	expect_eq "$(dmsetup status qn)" \
		"0 $Q_SECTORS bgraph-quorum 2 3 $(q_mm "${l[0]}") 0 0 0 $(q_mm "${l[1]}") 0 0 0 $(q_mm "${l[2]}") 0 0 0 0" \
		"status"
	q_stats_want qn 0 "children.0:${l[0]##*/}:0:0:0" \
		"children.1:${l[1]##*/}:0:0:0" "children.2:${l[2]##*/}:0:0:0"
}

test_table_round_trips_through_a_reload_with_each_option() {
	local l mm opts want t
	q_begin
	mapfile -t l < <(q_loops 3)
	mm="$(q_mm "${l[0]}") $(q_mm "${l[1]}") $(q_mm "${l[2]}")"
	q_create qn 2 "" "${l[@]}"
	# OPTS given|OPTS shown: read-pattern only when fifo, fixed order.
	while IFS='|' read -r opts want; do
		dmsetup reload qn --table "0 $Q_SECTORS bgraph-quorum 2 3 ${l[*]}${opts:+ $opts}"
		dmsetup resume qn
		t=$(dmsetup table qn)
		expect_eq "$t" "0 $Q_SECTORS bgraph-quorum 2 3 $mm${want:+ $want}" "table for '$opts'"
		[ "$opts" = "$want" ] || continue	# a table shown before
		dmsetup reload qn --table "$t"
		dmsetup resume qn
		expect_eq "$(dmsetup table qn)" "$t" "table after a reload of itself"
	done <<-EOF
	|
	1 rewrite-corrupted|1 rewrite-corrupted
	3 read-pattern quorum rewrite-corrupted|1 rewrite-corrupted
	2 read-pattern fifo|2 read-pattern fifo
	2 read-pattern quorum|
	EOF
	dmsetup reload qn --table "0 $Q_SECTORS bgraph-quorum 2 2 ${l[0]} ${l[1]} 1 blkverify"
	dmsetup resume qn
	t=$(dmsetup table qn)
	expect_eq "$t" "0 $Q_SECTORS bgraph-quorum 2 2 $(q_mm "${l[0]}") $(q_mm "${l[1]}") 1 blkverify" "blkverify table"
	dmsetup reload qn --table "$t"
	dmsetup resume qn
	expect_eq "$(dmsetup table qn)" "$t" "blkverify table after a reload of itself"
	expect_eq "$(q_graph qn)" \
		"qn children.0 ${l[0]##*/};qn children.1 ${l[1]##*/};" "graph after the reloads"
}
