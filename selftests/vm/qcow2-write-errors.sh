#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Writing bgraph-qcow2 nodes when the file device fails or is full: write
# errors fail writes not the image, out of space waits (or fails with
# error_if_no_space), held writes across suspends.

# shellcheck source=lib-qcow2-write.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-qcow2-write.sh"

# ---- faults ---------------------------------------------------------

qw_flakey() {
	[ -d "/lib/modules/$(uname -r)" ] && modprobe dm_flakey
	return 0
}

# qw_by SECS WHAT CMD...: run CMD, which must end within SECS seconds;
# sets QW_RC (its exit status) and QW_OUT (its output).  A CMD that does
# not end (a bio the node never completes) fails the test and says so in
# the kernel log too, as the test's own output shows only when it ends.
qw_by() {
	local secs=$1 what=$2 pid i out=$SCRATCH/qw-by.out
	shift 2
	"$@" >"$out" 2>&1 &
	pid=$!
	for ((i = 0; i < secs * 5; i++)); do
		kill -0 $pid 2>/dev/null || break
		sleep 0.2
	done
	if kill -0 $pid 2>/dev/null; then
		echo "qcow2-write: $what: not ended after ${secs}s" >/dev/kmsg
		diag "$(log_since_mark | grep -m 8 bgraph || true)"
		fail "$what: not ended after ${secs}s"
		return 1
	fi
	QW_RC=0
	wait $pid || QW_RC=$?
	QW_OUT=$(cat "$out")
}

# qw_write_by SECS WHAT ARGS...: qw_write ARGS... through qw_by.
qw_write_by() {
	local secs=$1 what=$2
	shift 2
	qw_by "$secs" "$what" qw_write "$@"
}

# qw_write_fails WHAT ARGS...: qw_write ARGS... fails with EIO (within 30s).
qw_write_fails() {
	local what=$1
	shift
	qw_write_by 30 "$what" "$@" || return 1
	diag "$what: ${QW_OUT:-succeeded}"
	[ "$QW_RC" -ne 0 ] || { fail "$what succeeded"; return 1; }
	expect_match "$QW_OUT" "Errno 5\]" "error of $what"
}

test_qcow2_write_errors_of_the_file_device_fail_writes_not_the_image() {
	local img l s
	qw_flakey
	img=$(q2_new ff 16M cluster_size=65536)
	q2_io "$img" "write -P 0x41 0 2M"
	truncate -s 8M "$img"
	l=$(losetup -f --show "$img")
	s=$(blockdev --getsz "$l")
	dmsetup create ff-file --table "0 $s linear $l 0"
	qw_create ff "0 32768 bgraph-qcow2 /dev/mapper/ff-file"
	qw_write /dev/mapper/ff 2M:1M:0x42
	# From now on every write to the file device fails; reads pass.
	dmsetup suspend ff-file
	dmsetup reload ff-file --table "0 $s flakey $l 0 0 3600 1 error_writes"
	dmsetup resume ff-file
	mark_log
	qw_write_fails "a write in place" /dev/mapper/ff 0:4096:0x44
	qw_write_fails "a write into a new cluster" /dev/mapper/ff $((4 << 20)):64K:0x43
	qw_write_fails "a write into a new L2 table's range" /dev/mapper/ff $((12 << 20)):8192:0x45
	diag "status: $(q2_status ff)"
	diag "$(log_since_mark | grep -m 8 bgraph || true)"
	dmsetup remove ff
	q2_teardown
	# What was written and flushed before the fault is there; the image
	# may leak the clusters of the failed writes, nothing worse.
	qw_check "$img" "after write errors" leaks
	q2_io "$img" "read -P 0x41 4096 $(((2 << 20) - 4096))" "read -P 0x42 2M 1M"
}

test_qcow2_write_error_hole_in_the_file_device_leaves_no_corruption() {
	local img l x s
	q2_slow_skip
	img=$(q2_new fh 64M cluster_size=65536)
	q2_io "$img" "write -P 0x51 0 2M"
	# New clusters go past the image's end: a 1M hole of dm-error there.
	x=$(($(stat -c %s "$img") / 512))
	truncate -s 16M "$img"
	l=$(losetup -f --show "$img")
	s=$(blockdev --getsz "$l")
	dmsetup create fh-file <<-EOT
	0 $x linear $l 0
	$x 2048 error
	$((x + 2048)) $((s - x - 2048)) linear $l $((x + 2048))
	EOT
	qw_create fh "0 131072 bgraph-qcow2 /dev/mapper/fh-file"
	mark_log
	qw_write_fails "a write into a cluster in the hole" /dev/mapper/fh $((4 << 20)):64K:0x52
	qw_write_fails "a second write into the hole" /dev/mapper/fh $((40 << 20)):4096:0x53
	# In place, outside the hole: may work, or the node may have stopped
	# writing after the errors.
	qw_write_by 30 "a write in place after the errors" /dev/mapper/fh $((1 << 20)):64K:0x54
	diag "write in place after the errors: exit $QW_RC ${QW_OUT}; status: $(q2_status fh)"
	diag "$(log_since_mark | grep -m 8 bgraph || true)"
	dmsetup remove fh
	q2_teardown
	qw_check "$img" "after writes into an error hole" leaks
	q2_io "$img" "read -P 0x51 0 1M" "read -P 0x51 $(((1 << 20) + 65536)) $(((1 << 20) - 65536))"
}

# ---- out of space ---------------------------------------------------

# qw_grow NAME IMG SIZE: grow IMG's file, its loop device and node NAME's
# idea of it.
qw_grow() {
	truncate -s "$3" "$2"
	losetup -c "/dev/${Q2_LOOP[$1]}"
	dmsetup message "$1" 0 resize
}

test_qcow2_write_out_of_space_waits_until_the_file_grows() {
	local img ref ev pid i rc=0 flags
	mark_log
	img=$(q2_new os 16M cluster_size=65536)
	ref=$(mkref os 4)
	# 1M of file device: room for about 11 clusters of data.
	qw_dm os "$img" 1M
	ev=$(dmsetup info -c --noheadings -o events os)
	dd if="$ref" of=/dev/mapper/os bs=64k oflag=direct status=none 2>"$SCRATCH/dd.err" &
	pid=$!
	for i in $(seq 300); do
		flags=$(qw_flags os)
		[[ $flags == *no_space* ]] && break
		kill -0 $pid 2>/dev/null || break
		sleep 0.2
	done
	diag "status when full: $(q2_status os), after ${i} polls"
	if ! kill -0 $pid 2>/dev/null; then
		wait $pid || rc=$?
		diag "$(cat "$SCRATCH/dd.err")"
		fail "the writer ended (exit $rc) instead of waiting for space"
		return 1
	fi
	expect_match "$flags" "(^|,)no_space(,|$)" "status flags when full" || { qw_grow os "$img" 32M; return 1; }
	timeout 10 dmsetup wait os "$ev" >/dev/null ||
		{ qw_grow os "$img" 32M; fail "no dm event raised (event count was $ev)"; return 1; }
	sleep 2
	kill -0 $pid 2>/dev/null || { fail "the writer ended while out of space"; return 1; }
	expect_match "$(qw_flags os)" "no_space" "status flags while waiting"
	expect_eq "$(qw_mode os)" no_space "status mode while waiting"
	qw_grow os "$img" 32M
	for i in $(seq 300); do
		kill -0 $pid 2>/dev/null || break
		sleep 0.2
	done
	kill -0 $pid 2>/dev/null && { fail "the writer still waits 60s after the resize"; return 1; }
	wait $pid || rc=$?
	[ $rc -eq 0 ] || { diag "$(cat "$SCRATCH/dd.err")"; fail "the held writes failed (dd exit $rc)"; }
	expect_no_match "$(qw_flags os)" "no_space" "status flags after the resize"
	expect_eq "$(qw_mode os)" write "status mode after the resize"
	cmp <(dd if=/dev/mapper/os bs=1M count=4 iflag=direct status=none) "$ref" ||
		{ diag "$(log_since_mark | grep -m 8 bgraph || true)"; fail "data written across the wait"; }
	dmsetup remove os
	q2_teardown
	qw_check "$img" "after waiting for space"
	qw_compare "$img" "$ref" "after waiting for space"
}

# qw_wait_held NAME PID: wait until node NAME holds writes for want of
# space (status flag no_space) while PID, the writer, still runs.
qw_wait_held() {
	for _ in $(seq 300); do
		[[ $(qw_flags "$1") == *no_space* ]] && return 0
		kill -0 "$2" 2>/dev/null || break
		sleep 0.2
	done
	fail "$1: no write held for want of space (status $(q2_status "$1"))"
}

# What the documentation says of a suspend while writes wait for space: a
# --noflush suspend requeues them in dm core, and after the device grew
# the resume sends them again (they succeed, data intact); a flushing
# suspend fails them with ENOSPC, and the image stays consistent.
test_qcow2_write_held_writes_wait_across_a_noflush_suspend_fail_at_a_flushing_one() {
	local img ref pid rc=0
	img=$(q2_new sh 16M cluster_size=65536)
	ref=$(mkref sh 4)
	qw_dm sh "$img" 1M || return 1
	dd if="$ref" of=/dev/mapper/sh bs=64k oflag=direct status=none 2>"$SCRATCH/dd.err" &
	pid=$!
	qw_wait_held sh $pid || { qw_grow sh "$img" 32M; return 1; }
	dmsetup suspend --noflush sh
	kill -0 $pid 2>/dev/null || fail "the writer ended at a --noflush suspend"
	truncate -s 32M "$img"
	losetup -c "/dev/${Q2_LOOP[sh]}"
	dmsetup resume sh
	wait $pid || rc=$?
	[ $rc -eq 0 ] || { diag "$(cat "$SCRATCH/dd.err")"; fail "the requeued writes failed (dd exit $rc)"; }
	cmp <(dd if=/dev/mapper/sh bs=1M count=4 iflag=direct status=none) "$ref" ||
		fail "data written across the --noflush suspend"
	expect_no_match "$(qw_flags sh)" "no_space" "status flags after the resume"
	qw_remove sh
	qw_check "$img" "after a --noflush suspend with writes held"
	qw_compare "$img" "$ref" "after a --noflush suspend with writes held"

	img=$(q2_new sf 16M cluster_size=65536)
	qw_dm sf "$img" 1M || return 1
	dd if="$ref" of=/dev/mapper/sf bs=64k oflag=direct status=none 2>"$SCRATCH/dd.err" &
	pid=$!
	qw_wait_held sf $pid || { qw_grow sf "$img" 32M; return 1; }
	dmsetup suspend sf
	rc=0
	wait $pid || rc=$?
	[ $rc -ne 0 ] || fail "the writer succeeded across a flushing suspend with no room"
	expect_match "$(cat "$SCRATCH/dd.err")" "No space left on device" "error of the held write"
	dmsetup resume sf
	qw_remove sf
	qw_check "$img" "after a flushing suspend failed the held writes" leaks
}

test_qcow2_write_error_if_no_space_fails_writes() {
	local img ref out n
	mark_log
	img=$(q2_new oe 16M cluster_size=65536)
	ref=$(mkref oe 4)
	qw_dm oe "$img" 1M error_if_no_space
	qw_by 60 "4M written into 1M of file device with error_if_no_space" \
		dd if="$ref" of=/dev/mapper/oe bs=64k oflag=direct
	out=$QW_OUT
	diag "$out"
	[ "$QW_RC" -ne 0 ] || { fail "4M written into 1M of file device"; return 1; }
	expect_match "$out" "No space left on device" "error of the write"
	n=$(sed -n 's/^\([0-9]*\) bytes.*copied.*/\1/p' <<<"$out")
	diag "written before the error: $n bytes; status: $(q2_status oe)"
	[ "${n:-0}" -gt 0 ] || fail "nothing written: the image had room for some clusters"
	cmp -n "$n" <(dd if=/dev/mapper/oe bs=64k iflag=direct status=none) "$ref" ||
		fail "data written before the error"
	# Grown, it writes again.
	qw_grow oe "$img" 32M
	dd if="$ref" of=/dev/mapper/oe bs=64k oflag=direct status=none
	cmp <(dd if=/dev/mapper/oe bs=1M count=4 iflag=direct status=none) "$ref" ||
		{ diag "$(log_since_mark | grep -m 8 bgraph || true)"; fail "data written after the resize"; }
	dmsetup remove oe
	q2_teardown
	qw_check "$img" "after running out of space" leaks
	qw_compare "$img" "$ref" "after running out of space"
}
