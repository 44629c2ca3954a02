#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# bgraph-quorum's blkverify mode: two children read and compared.

# shellcheck source=lib-quorum.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-quorum.sh"

# ---- blkverify ------------------------------------------------------

test_blkverify_reads_equal_children_and_fails_a_mismatch() {
	local l ref out
	q_begin
	mapfile -t l < <(q_loops 2)
	q_create qn 2 "1 blkverify" "${l[@]}"
	ref=$(q_fill qn)
	q_read /dev/mapper/qn $Q_RD_OFF $Q_RD_LEN "$SCRATCH/got" || fail "read of equal children"
	cmp "$SCRATCH/got" <(q_slice "$ref" $Q_RD_OFF $Q_RD_LEN) || fail "read returned wrong data"
	q_corrupt "${l[1]}" $Q_BAD_OFF $Q_BAD_LEN 0xff
	mark_log
	if out=$(q_read /dev/mapper/qn $Q_RD_OFF $Q_RD_LEN /dev/null 2>&1); then
		fail "read of a mismatch succeeded"
	fi
	expect_match "$out" "Input/output error" "error of the read"
	expect_match "$(log_since_mark)" \
		"bgraph-quorum: qn: blkverify mismatch at sector $((Q_BAD_OFF / 512)) \\(byte $Q_BAD_OFF\\)" \
		"kernel log"
	expect_eq "$(q_stat qn - quorum_failures)" 1 "quorum failures"
}
