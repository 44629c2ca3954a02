#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# bgraph-quorum's read vote: a corrupted child outvoted, counted and
# reported (uevent, dm event, log), storms of bad reads, thresholds and ties.

# shellcheck source=lib-quorum.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-quorum.sh"

# q_events_seen: the uevent lines received so far.
q_events_seen() { cat "$SCRATCH/uevents"; }

# q_dm_events NODE: the event counter of dm device NODE.
q_dm_events() { dmsetup info -c --noheadings -o events "$1" | tr -d ' '; }

# ---- bad reads ------------------------------------------------------

test_a_corrupted_child_is_outvoted_and_counted_alone() {
	local mm
	q_begin
	q_one_corrupted qn ""
	q_read /dev/mapper/qn $Q_RD_OFF $Q_RD_LEN "$SCRATCH/got"
	cmp "$SCRATCH/got" <(q_slice "$Q_REF" $Q_RD_OFF $Q_RD_LEN) || fail "read returned wrong data"
	mm=("$(q_mm "${Q_L[0]}")" "$(q_mm "${Q_L[1]}")" "$(q_mm "${Q_L[2]}")")
	expect_eq "$(dmsetup status qn)" \
		"0 $Q_SECTORS bgraph-quorum 2 3 ${mm[0]} 0 0 0 ${mm[1]} 1 0 0 ${mm[2]} 0 0 0 0" "status"
	q_stats_want qn 0 "children.0:${Q_L[0]##*/}:0:0:0" \
		"children.1:${Q_L[1]##*/}:1:0:0" "children.2:${Q_L[2]##*/}:0:0:0"
	# Without rewrite-corrupted the child keeps its bad copy.
	q_read "${Q_L[1]}" $Q_RD_OFF $Q_RD_LEN "$SCRATCH/child1"
	! cmp -s "$SCRATCH/child1" "$SCRATCH/got" || fail "child 1 rewritten without rewrite-corrupted"
}

test_a_bad_read_is_reported_by_uevent_dm_event_and_log() {
	local ev ev0
	q_begin
	q_one_corrupted qn ""
	ev0=$(q_dm_events qn)
	q_listen
	q_mark_log
	q_read /dev/mapper/qn $Q_RD_OFF $Q_RD_LEN /dev/null
	ev=$(q_event "BGRAPH_EVENT=QUORUM_REPORT_BAD")
	expect_eq "$ev" "change $(devname /dev/mapper/qn) BGRAPH_CHILD=${Q_L[1]##*/} BGRAPH_ERROR=0 BGRAPH_EVENT=QUORUM_REPORT_BAD BGRAPH_NODE=qn BGRAPH_OP=read BGRAPH_ROLE=children.1 BGRAPH_SECTOR=$((Q_RD_OFF / 512)) BGRAPH_SECTORS=$((Q_RD_LEN / 512))" \
		"the uevent"
	expect_eq "$(q_events_seen | wc -l)" 1 "bgraph uevents"
	expect_match "$(log_since_mark)" \
		"device-mapper: bgraph-quorum: qn: children\\.1 \\(${Q_L[1]##*/}\\): bad read at sector $Q_RANGE" \
		"kernel log"
	[ "$(q_dm_events qn)" -gt "$ev0" ] || fail "no dm event raised ($ev0 before and after)"
}

# 40 bad reads in a row: each is counted and each has its uevent (sent or
# counted as dropped), but the kernel log takes at most 10 lines per 5 s
# (pr_err_ratelimited's default burst and interval).
test_a_storm_of_bad_reads_is_counted_in_full_and_logged_ratelimited() {
	local n=40 t lines max ev seen dropped
	q_begin
	q_one_corrupted qn ""
	q_corrupt "${Q_L[1]}" $Q_RD_OFF $((n * 4096)) 0x5a
	# A window of the rate limit that began in an earlier test has ended.
	sleep 5
	q_listen
	q_mark_log
	t=$(python3 - /dev/mapper/qn "$Q_REF" $Q_RD_OFF $n <<-"PY"
	import mmap, os, sys, time
	fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)
	ref = open(sys.argv[2], "rb").read()
	off, n = int(sys.argv[3]), int(sys.argv[4])
	buf = mmap.mmap(-1, 4096)
	t0 = time.monotonic()
	for i in range(n):
	    o = off + i * 4096
	    if os.preadv(fd, [buf], o) != 4096 or buf[:] != ref[o:o + 4096]:
	        sys.exit("wrong data at %d" % o)
	print(int(time.monotonic() - t0) + 1)
	PY
	) || fail "reads through qn"
	expect_eq "$(q_stat qn children.1 bad_reads)" "$n" "bad reads counted"
	for _ in $(seq 300); do
		seen=$(grep -c "BGRAPH_EVENT=QUORUM_REPORT_BAD" "$SCRATCH/uevents" || true)
		dropped=$(q_stat qn - events_dropped)
		[ $((seen + dropped)) -ge $n ] && break
		sleep 0.1
	done
	diag "$n bad reads in at most $t s: $seen uevents received, $dropped dropped"
	expect_eq "$((seen + dropped))" "$n" "uevents received and dropped"
	lines=$(log_since_mark | grep -c "qn: children\.1 (${Q_L[1]##*/}): bad read at sector" || true)
	max=$((10 * ((t + 4) / 5)))
	diag "bad read lines in the kernel log: $lines (at most $max)"
	if [ "$lines" -lt 1 ] || [ "$lines" -gt "$max" ]; then
		fail "$lines kernel log lines for $n bad reads in $t s; want 1 to $max"
	fi
}

test_two_children_corrupted_differently_fail_the_read_at_threshold_2() {
	local l ev out
	q_begin
	mapfile -t l < <(q_loops 3)
	q_create qn 2 "" "${l[@]}"
	q_fill qn >/dev/null
	q_corrupt "${l[1]}" $Q_BAD_OFF $Q_BAD_LEN 0xff
	q_corrupt "${l[2]}" $Q_BAD_OFF $Q_BAD_LEN 0x55
	q_listen
	q_mark_log
	if out=$(q_read /dev/mapper/qn $Q_RD_OFF $Q_RD_LEN /dev/null 2>&1); then
		fail "read of three different copies succeeded with threshold 2"
	fi
	expect_match "$out" "Input/output error" "error of the read"
	# No winner: nobody is reported as a bad read (QEMU's rule).
	q_stats_want qn 1 "children.0:${l[0]##*/}:0:0:0" \
		"children.1:${l[1]##*/}:0:0:0" "children.2:${l[2]##*/}:0:0:0"
	ev=$(q_event "BGRAPH_EVENT=QUORUM_FAILURE")
	expect_eq "$ev" "change $(devname /dev/mapper/qn) BGRAPH_ERROR=5 BGRAPH_EVENT=QUORUM_FAILURE BGRAPH_NODE=qn BGRAPH_OP=read BGRAPH_SECTOR=$((Q_RD_OFF / 512)) BGRAPH_SECTORS=$((Q_RD_LEN / 512))" \
		"the uevent"
	expect_match "$(log_since_mark)" "bgraph-quorum: qn: quorum failure: read at sector $Q_RANGE: -5" "kernel log"
}

test_threshold_1_with_three_versions_returns_child_2_s_data() {
	local l
	q_begin
	mapfile -t l < <(q_loops 3)
	q_create qn 1 "" "${l[@]}"
	q_fill qn >/dev/null
	q_corrupt "${l[1]}" $Q_BAD_OFF $Q_BAD_LEN 0xff
	q_corrupt "${l[2]}" $Q_BAD_OFF $Q_BAD_LEN 0x55
	q_read /dev/mapper/qn $Q_RD_OFF $Q_RD_LEN "$SCRATCH/got"
	q_read "${l[2]}" $Q_RD_OFF $Q_RD_LEN "$SCRATCH/child2"
	cmp "$SCRATCH/got" "$SCRATCH/child2" || fail "the read did not return child 2's data"
	q_stats_want qn 0 "children.0:${l[0]##*/}:1:0:0" \
		"children.1:${l[1]##*/}:1:0:0" "children.2:${l[2]##*/}:0:0:0"
}

# Two pairs tie 2 to 2: the pair whose lowest member is higher wins.
test_a_tie_of_two_pairs_goes_to_the_pair_of_child_1() {
	local l
	q_begin
	mapfile -t l < <(q_loops 4)
	q_create qn 2 "" "${l[@]}"
	q_fill qn >/dev/null
	q_corrupt "${l[1]}" $Q_BAD_OFF $Q_BAD_LEN 0x5a
	q_corrupt "${l[3]}" $Q_BAD_OFF $Q_BAD_LEN 0x5a
	q_read /dev/mapper/qn $Q_RD_OFF $Q_RD_LEN "$SCRATCH/got"
	q_read "${l[1]}" $Q_RD_OFF $Q_RD_LEN "$SCRATCH/child1"
	cmp "$SCRATCH/got" "$SCRATCH/child1" || fail "the read did not return the pair {1, 3}'s data"
	q_stats_want qn 0 "children.0:${l[0]##*/}:1:0:0" \
		"children.1:${l[1]##*/}:0:0:0" "children.2:${l[2]##*/}:1:0:0" \
		"children.3:${l[3]##*/}:0:0:0"
}
