#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# bgraph-quorum's rewrite-corrupted: the outvoted child repaired before
# the read ends; a failed rewrite counted and reported.

# shellcheck source=lib-quorum.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-quorum.sh"

test_rewrite_corrupted_repairs_the_child_before_the_read_ends() {
	q_begin
	q_one_corrupted qn "1 rewrite-corrupted"
	q_read /dev/mapper/qn $Q_RD_OFF $Q_RD_LEN "$SCRATCH/got"
	cmp "$SCRATCH/got" <(q_slice "$Q_REF" $Q_RD_OFF $Q_RD_LEN) || fail "read returned wrong data"
	q_read "${Q_L[1]}" $Q_RD_OFF $Q_RD_LEN "$SCRATCH/child1"
	cmp "$SCRATCH/child1" "$SCRATCH/got" || fail "child 1 still holds the bad copy"
	q_stats_want qn 0 "children.0:${Q_L[0]##*/}:0:0:0" \
		"children.1:${Q_L[1]##*/}:1:1:0" "children.2:${Q_L[2]##*/}:0:0:0"
	# Repaired: a second read finds nothing to report.
	q_read /dev/mapper/qn $Q_RD_OFF $Q_RD_LEN /dev/null
	expect_eq "$(q_stat qn children.1 bad_reads)" 1 "bad reads after a second read"
}

# rewrite-corrupted on a child that reads but cannot be written (dm-flakey
# always down with error_writes): the read returns the winners' data, the
# child's bad read is counted, and the failed rewrite is an I/O error
# reported as a rewrite, not as the read's.
test_a_failed_rewrite_is_counted_and_reported_as_a_rewrite() {
	local l ref s d out ev
	q_begin
	q_dm_module flakey
	mapfile -t l < <(q_loops 3)
	ref=$(mkref qrw $Q_REF_MB)
	for d in "${l[@]}"; do
		dd if="$ref" of="$d" bs=1M oflag=direct status=none
	done
	s=$(blockdev --getsz "${l[2]}")
	dmsetup create qflk2 --table "0 $s flakey ${l[2]} 0 0 3600 1 error_writes"
	q_create qn 2 "1 rewrite-corrupted" "${l[0]}" "${l[1]}" /dev/mapper/qflk2
	q_corrupt "${l[2]}" $Q_BAD_OFF $Q_BAD_LEN 0x5a
	q_listen
	q_mark_log
	q_read /dev/mapper/qn $Q_RD_OFF $Q_RD_LEN "$SCRATCH/got" || fail "the read"
	cmp "$SCRATCH/got" <(q_slice "$ref" $Q_RD_OFF $Q_RD_LEN) || fail "read returned wrong data"
	q_stats_want qn 0 "children.0:${l[0]##*/}:0:0:0" \
		"children.1:${l[1]##*/}:0:0:0" "children.2:qflk2:1:0:1"
	ev=$(q_event "BGRAPH_OP=rewrite")
	expect_eq "$ev" "change $(devname /dev/mapper/qn) BGRAPH_CHILD=qflk2 BGRAPH_ERROR=5 BGRAPH_EVENT=QUORUM_REPORT_BAD BGRAPH_NODE=qn BGRAPH_OP=rewrite BGRAPH_ROLE=children.2 BGRAPH_SECTOR=$((Q_RD_OFF / 512)) BGRAPH_SECTORS=$((Q_RD_LEN / 512))" \
		"the failed rewrite's uevent"
	out=$(log_since_mark)
	expect_match "$out" "qn: children\\.2 \\(qflk2\\): rewrite error -5 at sector $Q_RANGE" "log of the rewrite"
}
