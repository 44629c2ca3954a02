#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Throttle groups in configfs (mkdir, names, limits, rmdir) and
# bgraph-throttle's table.

# shellcheck source=lib-throttle.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-throttle.sh"

test_group_mkdir_shows_every_limit_and_nothing_set() {
	local a names
	th_cleanup
	mkdir "$TG/g1"
	names="bps-total bps-read bps-write iops-total iops-read iops-write"
	for a in $names; do
		expect_eq "$(cat "$TG/g1/$a")" 0 "$a"
		expect_eq "$(cat "$TG/g1/$a-max")" 0 "$a-max"
		expect_eq "$(cat "$TG/g1/$a-max-length")" 1 "$a-max-length"
	done
	expect_eq "$(cat "$TG/g1/iops-size")" 0 "iops-size"
	expect_eq "$(cat "$TG/g1/members")" "" "members"
	expect_match "$(cat "$TG/g1/stats")" '^read ios=0 bytes=0 delayed_ios=0 delayed_bytes=0 queued=0 wait_ns=0$' "stats"
	expect_eq "$(ls "$TG/g1" | wc -l)" 21 "files in a group"
	rmdir "$TG/g1"
	th_cleanup
}

test_group_names_follow_qemu_s_id_rule() {
	local bad
	th_cleanup
	for bad in 9lives _x 'a b' 'x:y' "$(printf 'g%.0s' {1..64})"; do
		mark_log
		if mkdir "$TG/$bad" 2>/dev/null; then
			rmdir "$TG/$bad"
			fail "mkdir '$bad' was allowed"
		fi
		expect_match "$(log_since_mark)" "throttle group name .* refused" "reason for '$bad'"
	done
	mkdir "$TG/Disk-1.a_b"
	rmdir "$TG/Disk-1.a_b"
	th_cleanup
}

# QEMU's throttle_is_valid() rules: each refused with a reason, no change.
test_bad_values_are_refused_with_a_reason_and_change_nothing() {
	local g=$TG/g1 case attr val why
	th_cleanup
	mkdir "$g"
	tg_set g1 bps-total 1000000
	tg_set g1 iops-read 100
	tg_set g1 iops-read-max 200
	while IFS='|' read -r attr val why; do
		[ -n "$attr" ] || continue
		local before
		before=$(cat "$g/$attr")
		mark_log
		expect_fail tg_set g1 "$attr" "$val"
		expect_eq "$(cat "$g/$attr")" "$before" "$attr after '$val'"
		expect_match "$(log_since_mark)" "throttle group g1: $attr.*$why" "reason for $attr=$val"
	done <<-EOF
	bps-read|10|A total limit excludes read and write limits
	iops-total|10|A total limit excludes read and write limits
	bps-write-max|100|needs the average rate
	iops-read-max|50|cannot be lower than the average
	iops-read|300|cannot be lower than the average
	iops-write-max-length|5|needs a burst rate
	iops-read-max-length|0|cannot be 0
	iops-read-max-length|5000000000000000|too long for this burst rate
	bps-total|1000000000000001|at most 10\^15
	iops-size|-1|not a decimal number
	iops-write|12abc|not a decimal number
	bps-total||not a decimal number
	iops-total|18446744073709551616|out of range
	EOF
	# And QEMU's rule for iops-size.
	tg_set g1 iops-read-max 0
	tg_set g1 iops-read 0
	mark_log
	expect_fail tg_set g1 iops-size 4096
	expect_match "$(log_since_mark)" "iops-size needs an iops limit" "iops-size reason"
	th_cleanup
}

test_table_refuses_a_missing_group_and_bad_lines() {
	local dev
	th_cleanup
	dev=$(th_devs 1)
	mark_log
	expect_fail dmsetup create t1 --table "0 $(blockdev --getsz "$dev") bgraph-throttle $dev nogroup"
	expect_match "$(log_since_mark)" "Throttle group does not exist" "missing group"
	mkdir "$TG/g1"
	mark_log
	expect_fail dmsetup create t1 --table "0 $(blockdev --getsz "$dev") bgraph-throttle $dev"
	expect_fail dmsetup create t1 --table "0 $(blockdev --getsz "$dev") bgraph-throttle $dev g1 extra"
	expect_match "$(log_since_mark)" "Invalid argument count: <dev> <group>" "argument count"
	mark_log
	expect_fail dmsetup create t1 --table "0 $(($(blockdev --getsz "$dev") + 8)) bgraph-throttle $dev g1"
	expect_match "$(log_since_mark)" "bgraph-throttle: Device is larger than its child" \
		"a table longer than its child, with throttle's own reason"
	expect_eq "$(dmsetup ls | grep -c t1 || true)" 0 "devices left behind"
	expect_eq "$(cat "$TG/g1/members")" "" "members left behind"
	th_cleanup
}

test_rmdir_of_a_group_with_members_is_busy() {
	local dev
	th_cleanup
	dev=$(th_devs 1)
	mkdir "$TG/g1"
	th_node t1 "$dev" g1
	if rmdir "$TG/g1" 2>/tmp/rmdir.err; then
		fail "rmdir of a group with a member succeeded"
	fi
	expect_match "$(cat /tmp/rmdir.err)" "busy" "rmdir error"
	dmsetup remove t1
	rmdir "$TG/g1"
	th_cleanup
}
