#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Crash consistency of writable bgraph-qcow2 nodes, with dm-log-writes.
#
# The node's file device is a loop device under a log-writes target, so
# every write that reaches the image file is logged, in the order flushes
# made it durable; a second log-writes target above the node logs what
# the node was asked to write.  A workload (qcow2-crash.py write) writes
# stamped data with fdatasync and a mark in both logs every few writes.
# Then tools/log-writes-replay replays the lower log onto a copy of the
# image as it was before the workload, and at each flush, FUA and mark
# entry -- each a state a crash could have left -- qemu-img check must
# find no corruption (leaks are allowed, and counted).  At each mark the
# image must read (qemu-img compare) like the data before the workload
# with the upper log replayed up to the same mark; if not, qcow2-crash.py
# check says where and accepts it only if every write durable at the mark
# reads back, in full or overwritten by a later one, and nothing else
# changed.  At the end of the log, after the node was removed cleanly,
# there must be no leaks and the data must be exactly what was written.
# One test also checks, at each flush, every state that lacks one of the
# writes logged before it (log-writes-replay --torn).
#
# The replay tool is checked first, on a plain loop device, against the
# workload's own journal.

# shellcheck source-path=SCRIPTDIR source=lib-qcow2.sh
source "$BGRAPH_SRC/selftests/vm/lib-qcow2.sh"

export CRASH_PY=$BGRAPH_SRC/selftests/vm/qcow2-crash.py

# The replayed copies, the data they must read and the journals live in
# CRASH_DIR, on tmpfs in the VM: a check runs at every flush, and each
# begins with a sync of the copy, free on tmpfs.  crash_dir empties it.
CRASH_DIR=${CRASH_TMP:-/tmp}/bgraph-crash

crash_dir() {
	rm -rf "$CRASH_DIR"
	mkdir -p "$CRASH_DIR"
}

# crash_tool: set CRASH_REPLAY to tools/log-writes-replay, built by `make
# tools` if that is current, else here (cc costs seconds under TCG).
crash_tool() {
	local src=$BGRAPH_SRC/tools/log-writes-replay.c
	export CRASH_REPLAY
	CRASH_REPLAY=$BGRAPH_SRC/build/tools/log-writes-replay
	[ -x "$CRASH_REPLAY" ] && [ "$CRASH_REPLAY" -nt "$src" ] && return 0
	CRASH_REPLAY=$SCRATCH/log-writes-replay
	[ -x "$CRASH_REPLAY" ] && return 0
	cc -O0 -Wall -Wextra -o "$CRASH_REPLAY" "$src" || fail "cannot build $src"
}

# crash_logw NAME DEV: a log-writes target NAME over DEV, logging to a new
# 512M sparse loop device; sets CRASH_LOG to that.
crash_logw() {
	modprobe dm-log-writes 2>/dev/null || true
	dmsetup targets | grep -q '^log-writes ' || skip "no dm-log-writes in this kernel"
	CRASH_LOG=$(mkloop "$1-log" 512)
	dmsetup create "$1" --table "0 $(blockdev --getsz "$2") log-writes $2 $CRASH_LOG" ||
		{ diag "$(dmesg | tail -n 3)"; fail "log-writes target $1 refused"; }
}

# The check at each crash point, run by log-writes-replay with sh -c, with
# REPLAY_* and CRASH_* in the environment (see crash_replay).  qcow2: qemu-img
# check must find no corruption (exit 0, or 3 for leaks only; at the end of
# the log, exit 0).  At a mark, qcow2: bring CRASH_EXPECT forward to the
# mark with the upper log, and compare; raw: the journal decides.  A torn
# epoch (REPLAY_DROPPED: a write before the flush was lost) is checked
# with qemu-img check alone: what it lost was never durable.  Appends
# "<flags>[-TORN] <entry> <mark> <leaks>", and "DATA <entry> <mark>
# exact|later" after a data check, to CRASH_STATS.
# shellcheck disable=SC2016
CRASH_CHECK='
at="entry $REPLAY_ENTRY ($REPLAY_FLAGS${REPLAY_MARK:+ $REPLAY_MARK})"
at="$at${REPLAY_DROPPED:+ without entry $REPLAY_DROPPED}"
leaks=0
if [ "$CRASH_MODE" = qcow2 ]; then
	out=$(qemu-img check -f qcow2 "$CRASH_TARGET" 2>&1)
	rc=$?
	leaks=$(printf "%s\n" "$out" | sed -n "s/^\([0-9]*\) leaked clusters* w.*/\1/p")
	if { [ $rc -ne 0 ] && [ $rc -ne 3 ]; } ||
	   { [ "$REPLAY_MARK" = dm-log-writes-end ] && [ $rc -ne 0 ]; }; then
		echo "# $at: qemu-img check exit $rc:"
		printf "%s\n" "$out" | sed "s/^/#   /"
		exit 1
	fi
fi
echo "$REPLAY_FLAGS${REPLAY_DROPPED:+-TORN} $REPLAY_ENTRY ${REPLAY_MARK:--} ${leaks:-0}" \
	>>"$CRASH_STATS"
[ -z "$REPLAY_DROPPED" ] || exit 0
case $REPLAY_MARK in
sync*|dm-log-writes-end) ;;
*) exit 0 ;;
esac
how=exact
if [ "$CRASH_MODE" = qcow2 ]; then
	prev=$(cat "$CRASH_EXPECT.mark" 2>/dev/null)
	"$CRASH_REPLAY" --log "$CRASH_ULOG" --replay "$CRASH_EXPECT" \
		${prev:+--start-mark "$prev"} --end-mark "$REPLAY_MARK" >/dev/null || exit 1
	echo "$REPLAY_MARK" >"$CRASH_EXPECT.mark"
	qemu-img compare -q -f raw -F qcow2 "$CRASH_EXPECT" "$CRASH_TARGET" 2>/dev/null
else
	false
fi || {
	python3 "$CRASH_PY" check "$CRASH_MODE" "$CRASH_TARGET" "$CRASH_JOURNAL" \
		"$CRASH_ORIG" "$REPLAY_MARK"
	rc=$?
	[ $rc -eq 0 ] || [ $rc -eq 5 ] || exit 1
	[ $rc -eq 0 ] || how=later
}
echo "DATA $REPLAY_ENTRY $REPLAY_MARK $how" >>"$CRASH_STATS"
'

# crash_replay MODE NAME DEV TARGET ORIG [ULOG]: replay the log CRASH_LOG
# of the workload NAME onto DEV (a loop device over TARGET, which holds
# the data before the workload, ORIG as a raw file), CRASH_CHECK at every
# flush, FUA and mark; ULOG: the upper log, for MODE qcow2; with
# CRASH_TORN=1, torn epochs too.  Diagnostics, and sets CRASH_RC (the
# tool's exit status), CRASH_MARKS (sync marks whose data was checked),
# CRASH_FLUSHES (flush and FUA points checked), CRASH_TORN_CHECKS (torn
# epochs checked) and CRASH_END (1 if the end of the log was checked,
# data exact).
crash_replay() {
	local mode=$1 name=$2 dev=$3 target=$4 orig=$5 ulog=${6:-}
	local stats=$CRASH_DIR/$name.stats expect=$CRASH_DIR/$name-expect.raw
	rm -f "$stats" "$expect.mark"
	[ -z "$ulog" ] || cp "$orig" "$expect"
	CRASH_RC=0
	CRASH_MODE=$mode CRASH_TARGET=$target CRASH_STATS=$stats CRASH_ORIG=$orig \
		CRASH_JOURNAL=$CRASH_DIR/$name.journal CRASH_EXPECT=$expect \
		CRASH_ULOG=$ulog \
		"$CRASH_REPLAY" --log "$CRASH_LOG" --replay "$dev" --check flush,fua,mark \
		${CRASH_TORN:+--torn} --check-cmd "$CRASH_CHECK" || CRASH_RC=$?
	touch "$stats"
	CRASH_MARKS=$(grep -c '^DATA [0-9]* sync' "$stats" || true)
	CRASH_FLUSHES=$(grep -cE '^[A-Z|]*(FLUSH|FUA)[A-Z|]* ' "$stats" || true)
	CRASH_TORN_CHECKS=$(grep -c '^[A-Z|]*-TORN ' "$stats" || true)
	CRASH_END=$(grep -c '^DATA [0-9]* dm-log-writes-end exact' "$stats" || true)
	diag "$(awk -v m="$CRASH_MARKS" -v f="$CRASH_FLUSHES" -v t="$CRASH_TORN_CHECKS" '
		$1 == "DATA" && $4 != "exact" { later++ }
		$1 != "DATA" && $4 > 0 { n++; s += $4; if ($4 > x) x = $4 }
		END { printf "checked %d marks (%d not exact but right), %d flush/FUA points, %d torn epochs; leaks at %d points (%d clusters in all, at most %d)",
			m, later, f, t, n, s, x }' "$stats")"
}

# ---- the tool, on a plain device ------------------------------------

test_crash_replay_tool_reproduces_raw_writes_at_every_mark() {
	on_6_12_only "crash replay"
	local dev orig copy rl out rc
	crash_tool
	crash_dir
	orig=$(mkref raw-orig 8)
	copy=$CRASH_DIR/raw-copy.img
	cp "$orig" "$SCRATCH/raw.img"
	cp "$orig" "$copy"
	dev=$(losetup -f --show "$SCRATCH/raw.img")
	crash_logw rawlw "$dev"
	python3 "$CRASH_PY" write /dev/mapper/rawlw "$CRASH_DIR/raw.journal" 1 24 6 rawlw discard
	dmsetup remove rawlw

	out=$("$CRASH_REPLAY" --log "$CRASH_LOG" --list)
	expect_eq "$(grep -c $'\tMARK\tsync' <<<"$out")" 4 "sync marks in the log"
	expect_match "$(grep -v '^#' <<<"$out" | tail -n1)" $'\tMARK\tdm-log-writes-end$' "last entry"
	expect_match "$out" $'\tDISCARD$' "a discard in the log"
	diag "$(tail -n1 <<<"$out" | sed 's/^# //')"

	rl=$(losetup -f --show "$copy")
	crash_replay raw raw "$rl" "$copy" "$orig"
	expect_eq "$CRASH_RC" 0 "replay with checks"
	expect_eq "$CRASH_MARKS" 4 "marks checked"
	expect_eq "$CRASH_END" 1 "end of the log checked"
	[ "$CRASH_FLUSHES" -ge 4 ] || fail "only $CRASH_FLUSHES flush points"
	cmp "$SCRATCH/raw.img" "$copy" || fail "the replayed copy differs from the logged device"

	# The checker is not vacuous: the state at sync2 is not that of sync3.
	cp "$orig" "$copy"
	"$CRASH_REPLAY" --log "$CRASH_LOG" --replay "$rl" --end-mark sync2 >/dev/null
	rc=0
	out=$(python3 "$CRASH_PY" check raw "$copy" "$CRASH_DIR/raw.journal" "$orig" sync3) || rc=$?
	expect_eq "$rc" 1 "check of the sync2 state as sync3"
	expect_match "$out" "durable generation" "why the sync3 check failed"
	# Brought forward from sync2 to sync3, it is.
	"$CRASH_REPLAY" --log "$CRASH_LOG" --replay "$rl" --start-mark sync2 --end-mark sync3 >/dev/null
	python3 "$CRASH_PY" check raw "$copy" "$CRASH_DIR/raw.journal" "$orig" sync3 ||
		fail "sync2 state brought forward to sync3"
	losetup -d "$rl"
	crash_dir
}

# ---- bgraph-qcow2 ---------------------------------------------------

# crash_qcow2 NAME WRITES SYNC_EVERY SEED OPTIONS [BACKING_IMG BACKING_DEV]:
# the scenario above for a new 64M image NAME made with OPTIONS, over
# BACKING_IMG (qcow2) with BACKING_DEV as the node's backing child.
# CRASH_WRITE_OPTS: options of qcow2-crash.py write ("discard max=65536").
crash_qcow2() {
	local name=$1 writes=$2 every=$3 seed=$4 opts=$5 bimg=${6:-} bdev=${7:-}
	local -a wopt
	read -ra wopt <<<"${CRASH_WRITE_OPTS:-}"
	local img copy orig loop rl t rc=0 out lower upper
	local -a b=()
	crash_tool
	crash_dir
	[ -z "$bimg" ] || b=(-b "$bimg" -F qcow2)
	img=$(q2_new "$name" 64M "$opts" "${b[@]}")
	orig=$CRASH_DIR/$name-orig.raw
	qemu-img convert -O raw "$img" "$orig"
	# Room to allocate clusters, and a copy of the image as it is now.
	truncate -s 128M "$img"
	copy=$CRASH_DIR/$name-copy.img
	cp --sparse=always "$img" "$copy"
	loop=$(losetup -f --show "$img")
	crash_logw "$name-lw" "$loop"
	lower=$CRASH_LOG

	t="0 $(q2_sectors "$img") bgraph-qcow2 /dev/mapper/$name-lw${bdev:+ 2 backing $bdev}"
	mark_log
	out=$(dmsetup create "$name" --table "$t" 2>&1) || rc=$?
	if [ $rc -ne 0 ]; then
		if log_since_mark | grep -q "Writing is not supported"; then
			skip "writable bgraph-qcow2 nodes are refused: Writing is not supported yet"
		fi
		diag "$out"
		diag "$(log_since_mark | tail -n 5)"
		fail "table '$t' refused"
	fi
	crash_logw "$name-ulw" "/dev/mapper/$name"
	upper=$CRASH_LOG

	python3 "$CRASH_PY" write "/dev/mapper/$name-ulw" "$CRASH_DIR/$name.journal" \
		"$seed" "$writes" "$every" "$name-lw,$name-ulw" "${wopt[@]}"
	dmsetup remove "$name-ulw"
	dmsetup remove "$name"
	dmsetup remove "$name-lw"
	CRASH_LOG=$lower
	diag "$("$CRASH_REPLAY" --log "$lower" --list | tail -n1 | sed 's/^# read/file device log:/')"

	rl=$(losetup -f --show "$copy")
	crash_replay qcow2 "$name" "$rl" "$copy" "$orig" "$upper"
	[ "$CRASH_RC" -eq 0 ] || fail "$name: a replayed crash point is wrong (above)"
	expect_eq "$CRASH_MARKS" $(((writes + every - 1) / every)) "$name: marks checked"
	expect_eq "$CRASH_END" 1 "$name: end of the log checked (no leaks, data exact)"
	[ "$CRASH_FLUSHES" -gt 0 ] || fail "$name: no flush in the log"
	cmp "$img" "$copy" || fail "$name: the replayed copy differs from the image"
	losetup -d "$rl"
	crash_dir
}

# On 6.1 too, as the FUA test: how flushes and FUA reach the file device
# (the block layer's flush machinery, loop) differs between the kernels.
test_qcow2_crash_any_flush_or_mark_leaves_a_consistent_image() {
	local n=40
	q2_fast && n=60	# fewer on the debug kernel
	CRASH_WRITE_OPTS=discard crash_qcow2 plain $n 10 11 cluster_size=65536
}

test_qcow2_crash_extended_l2_image_stays_consistent() {
	on_6_12_only "crash replay"
	q2_slow_skip
	crash_qcow2 xl2 30 10 12 cluster_size=65536,extended_l2=on
}

test_qcow2_crash_top_of_a_two_image_chain_stays_consistent() {
	on_6_12_only "crash replay"
	local base mid
	q2_slow_skip
	base=$(q2_new cbase 64M cluster_size=65536)
	q2_io "$base" "write -s $(q2_pat 1) 0 8M" "write -P 0x11 20M 4M" "write -s $(q2_pat 2) 60M 4M"
	mid=$(q2_new cmid 64M cluster_size=65536 -b "$base" -F qcow2)
	q2_io "$mid" "write -s $(q2_pat 2) 1M 2M" "write -z 4M 1M" "write -P 0x22 21M 64k" \
		"write -s $(q2_pat 1) $(((40 << 20) + 512)) 100000"
	q2_dm cbase "$base"
	q2_dm cmid "$mid" backing /dev/mapper/cbase
	crash_qcow2 ctop 30 10 13 cluster_size=65536 "$mid" /dev/mapper/cmid
}

# A crash before a flush ends may keep any subset of the writes logged
# before it: here, each subset that lacks one of them (log-writes-replay
# --torn), for a short workload of short writes and discards.  What
# QEMU orders with flushes (refcounts before the L2 entries that use
# them, L2 tables before the L1 entries) must not depend on the order
# in which the disk keeps writes between flushes.
test_qcow2_crash_losing_any_write_before_a_flush_leaves_no_corruption() {
	on_6_12_only "crash replay"
	q2_slow_skip
	CRASH_TORN=1 CRASH_WRITE_OPTS="discard max=262144" \
		crash_qcow2 torn 8 4 14 cluster_size=65536
	[ "$CRASH_TORN_CHECKS" -gt 0 ] || fail "no torn epoch checked"
}

# A write with FUA is durable when it completes, with the metadata that
# finds it, though nothing flushes the node: the file device's log
# replayed only up to a mark set right after the write ends holds it,
# where qemu reads it.  An asynchronous O_DSYNC write (fio, libaio) is a
# bio with REQ_FUA and nothing after it; a synchronous one is followed by
# a flush (generic_write_sync()), which would hide a FUA not honoured.
# Two FUA writes, each into new clusters (4K into one, 128K across
# three), after a plain write that no flush made durable.
test_qcow2_crash_a_fua_write_is_durable_when_it_completes() {
	local img copy loop rl m=$((1 << 20)) rc
	crash_tool
	crash_dir
	img=$(q2_new fua 64M cluster_size=65536)
	truncate -s 128M "$img"
	copy=$CRASH_DIR/fua-copy.img
	cp --sparse=always "$img" "$copy"
	loop=$(losetup -f --show "$img")
	crash_logw fua-lw "$loop"
	dmsetup create fua --table "0 $(q2_sectors "$img") bgraph-qcow2 /dev/mapper/fua-lw" ||
		{ fail "writable table of fua refused"; return 1; }
	python3 -c 'import mmap, os; b = mmap.mmap(-1, 65536); b[:] = b"\x11" * 65536; os.pwritev(os.open("/dev/mapper/fua", os.O_WRONLY | os.O_DIRECT), [b], 1 << 20)' ||
		fail "the plain write"
	fio_ok --name=fua1 --filename=/dev/mapper/fua --rw=write --offset=$((5 * m + 4096)) \
		--size=4k --bs=4k --buffer_pattern=0x22 --ioengine=libaio --direct=1 --sync=1 ||
		fail "the first FUA write"
	dmsetup message fua-lw 0 mark fua1
	fio_ok --name=fua2 --filename=/dev/mapper/fua --rw=write --offset=$((9 * m + 32768)) \
		--size=128k --bs=128k --buffer_pattern=0x33 --ioengine=libaio --direct=1 --sync=1 ||
		fail "the second FUA write"
	dmsetup message fua-lw 0 mark fua2
	dmsetup remove fua
	dmsetup remove fua-lw
	diag "file device's log: $("$CRASH_REPLAY" --log "$CRASH_LOG" --list | grep -cE 'FLUSH|FUA' || true) entries with FLUSH or FUA"
	rl=$(losetup -f --show "$copy")
	"$CRASH_REPLAY" --log "$CRASH_LOG" --replay "$rl" --end-mark fua1 >/dev/null ||
		fail "replay to fua1"
	rc=0
	qemu-img check -q "$copy" >/dev/null 2>&1 || rc=$?
	[ $rc -eq 0 ] || [ $rc -eq 3 ] || fail "qemu-img check at fua1 exits $rc"
	q2_io "$copy" "read -P 0x22 $((5 * m + 4096)) 4096" "read -P 0 $((5 * m)) 4096" ||
		fail "the first FUA write is not in the image at its completion"
	"$CRASH_REPLAY" --log "$CRASH_LOG" --replay "$rl" --start-mark fua1 --end-mark fua2 \
		>/dev/null || fail "replay from fua1 to fua2"
	rc=0
	qemu-img check -q "$copy" >/dev/null 2>&1 || rc=$?
	[ $rc -eq 0 ] || [ $rc -eq 3 ] || fail "qemu-img check at fua2 exits $rc"
	q2_io "$copy" "read -P 0x33 $((9 * m + 32768)) 131072" "read -P 0x22 $((5 * m + 4096)) 4096" ||
		fail "the FUA writes are not in the image at the second one's completion"
	losetup -d "$rl"
	crash_dir
}
