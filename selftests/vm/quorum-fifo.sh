#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# bgraph-quorum's fifo read pattern: the next child read when one fails.

# shellcheck source=lib-quorum.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-quorum.sh"

test_fifo_reads_the_next_child_when_the_first_fails() {
	local l c0 ref r1 r2
	q_begin
	mapfile -t l < <(q_loops 3)
	c0=$(q_linear qlin0 "${l[0]}")
	q_create qn 2 "2 read-pattern fifo" "$c0" "${l[1]}" "${l[2]}"
	ref=$(q_fill qn)
	q_break qlin0
	r1=$(q_reads "${l[1]}") r2=$(q_reads "${l[2]}")
	q_read /dev/mapper/qn $Q_RD_OFF $Q_RD_LEN "$SCRATCH/got"
	cmp "$SCRATCH/got" <(q_slice "$ref" $Q_RD_OFF $Q_RD_LEN) || fail "read returned wrong data"
	[ "$(q_reads "${l[1]}")" -gt "$r1" ] || fail "child 1 not read"
	expect_eq "$(q_reads "${l[2]}")" "$r2" "reads of child 2"
	q_stats_want qn 0 "children.0:qlin0:0:0:1" \
		"children.1:${l[1]##*/}:0:0:0" "children.2:${l[2]##*/}:0:0:0"
}

test_fifo_read_fails_only_when_every_child_fails() {
	local l c out
	q_begin
	mapfile -t l < <(q_loops 3)
	c=("$(q_linear qlin0 "${l[0]}")" "$(q_linear qlin1 "${l[1]}")" "$(q_linear qlin2 "${l[2]}")")
	q_create qn 2 "2 read-pattern fifo" "${c[@]}"
	q_break qlin0
	q_break qlin1
	q_read /dev/mapper/qn 0 4096 /dev/null || fail "read with the last child working"
	q_break qlin2
	if out=$(q_read /dev/mapper/qn 0 4096 /dev/null 2>&1); then
		fail "read succeeded with every child failing"
	fi
	expect_match "$out" "Input/output error" "error of the read"
	q_stats_want qn 1 "children.0:qlin0:0:0:2" "children.1:qlin1:0:0:2" "children.2:qlin2:0:0:1"
}
