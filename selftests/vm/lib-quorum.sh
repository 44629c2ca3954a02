#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Helpers of the bgraph-quorum tests (quorum-*.sh), sourced by each.
# bgraph-quorum (targets/quorum.c): QEMU's quorum as a node kind, its table,
# status, stats, reports and messages checked from outside.  Children
# are loop devices, dm-linear devices over them (reloaded to "error" to make
# a child fail), and nbd devices served from other network namespaces.  A
# child is corrupted underneath the node by writing its loop device
# directly; every byte of the range is changed (XOR), so where the copies
# first differ is known.

Q_MB=32		# MiB of each child
Q_SECTORS=$((Q_MB * 2048))
Q_REF_MB=4	# MiB of known data written through a node first
# The range the corruption tests break and read: 64 KiB at 1 MiB (one
# request, under the 128 KiB split), of which the 8 KiB at 1 MiB + 8 KiB
# are corrupted.
Q_RD_OFF=$((1 << 20))
Q_RD_LEN=$((64 << 10))
Q_BAD_OFF=$(((1 << 20) + (8 << 10)))
Q_BAD_LEN=$((8 << 10))
Q_RANGE="$((Q_RD_OFF / 512))\\+$((Q_RD_LEN / 512))"	# the range in the log, a regex

# ---- helpers --------------------------------------------------------

# q_begin: tear down whatever the test made, even when it fails: uevent
# listeners, dm devices (before the nbd devices under them), nbd
# connections, nbd servers, network namespaces.
q_begin() {
	Q_LISTENER="" Q_NBD_DEVS="" Q_NBD_PIDS="" Q_NETNS=""
	trap q_teardown EXIT
}

# q_mark_log: mark_log once 5 s have passed since the last quorum test
# ended.  The node's log lines are DMERR_LIMIT's: 10 a call site in a
# 5-second window, so a test that looks for a line must not run in the
# window of an earlier test that logged a burst (a lost nbd host's I/O
# errors, a storm of bad reads).
q_mark_log() {
	local last now left
	last=$(cat "$SCRATCH/q-last-end" 2>/dev/null || echo 0)
	now=$EPOCHREALTIME
	left=$((5000000 - (${now/./} - ${last/./})))
	if [ "$left" -gt 0 ]; then
		sleep "$((left / 1000000)).$(printf '%06d' $((left % 1000000)))"
	fi
	mark_log
}

q_teardown() {
	local x
	echo "$EPOCHREALTIME" >"$SCRATCH/q-last-end"
	[ -n "$Q_LISTENER" ] && kill "$Q_LISTENER" 2>/dev/null
	# The runner removes dm and loop devices after each test; those
	# over nbd devices must go before their disconnection.
	[ -n "$Q_NBD_DEVS" ] && cleanup_devices
	# Under errexit (the test's): a server a test killed is no error.
	for x in $Q_NBD_DEVS; do
		qemu-nbd -d "$x" >/dev/null 2>&1 || true
	done
	for x in $Q_NBD_PIDS; do
		kill "$x" 2>/dev/null || true
	done
	for x in $Q_NETNS; do
		ip netns del "$x" 2>/dev/null || true
	done
	return 0
}

# q_loops N [MB]: N loop devices of MB (default Q_MB) MiB; prints paths.
q_loops() {
	local i
	for ((i = 0; i < $1; i++)); do
		mkloop "q$i" "${2:-$Q_MB}"
	done
}

# q_mm DEV: major:minor of /dev/<kernel name> (a fork, no exec: under TCG
# each exec costs a good part of a second).
q_mm() {
	local mm
	read -r mm <"/sys/block/${1##*/}/dev"
	echo "$mm"
}

# q_create NODE THRESHOLD "OPTS" DEV...: a quorum node over DEVs, as long
# as the first; OPTS is the optional part with its count ("" for none).
q_create() {
	local node=$1 thr=$2 opts=$3
	shift 3
	dmsetup create "$node" --table \
		"0 $(blockdev --getsz "$1") bgraph-quorum $thr $# $*${opts:+ $opts}"
}

# q_linear NAME DEV: a dm-linear device over DEV; prints its path.
q_linear() {
	dmsetup create "$1" --table "0 $(blockdev --getsz "$2") linear $2 0" &&
		echo "/dev/mapper/$1"
}

# q_break NAME: dm-linear NAME fails every I/O from now on.
q_break() {
	local s
	s=$(blockdev --getsz "/dev/mapper/$1")
	dmsetup suspend "$1"
	dmsetup reload "$1" --table "0 $s error"
	dmsetup resume "$1"
}

# q_fill NODE: write Q_REF_MB MiB of random data at the start of NODE
# (O_DIRECT); prints the file that holds it.
q_fill() {
	local ref
	ref=$(mkref "$1" "$Q_REF_MB")
	dd if="$ref" of="/dev/mapper/$1" bs=1M oflag=direct status=none
	echo "$ref"
}

# q_corrupt DEV OFF LEN XOR: XOR every byte of LEN bytes at OFF of DEV
# with XOR, straight on DEV, with O_DIRECT.  OFF and LEN in 4 KiB units.
q_corrupt() {
	local t=$SCRATCH/corrupt.bin
	dd if="$1" of="$t" bs=4096 skip=$(($2 / 4096)) count=$(($3 / 4096)) \
		iflag=direct status=none
	perl -0777 -i -pe "\$_ ^= chr($4) x length" "$t"
	dd if="$t" of="$1" bs=4096 seek=$(($2 / 4096)) oflag=direct conv=notrunc status=none
}

# q_read DEV OFF LEN OUT: read LEN bytes at OFF of DEV with O_DIRECT into
# OUT; the exit status and error output are dd's.
q_read() {
	dd if="$1" of="$4" bs="$3" skip=$(($2 / $3)) count=1 iflag=direct status=none
}

# q_slice FILE OFF LEN: LEN bytes of FILE at OFF.
q_slice() { tail -c +$(($2 + 1)) "$1" | head -c "$3"; }

# q_stats_want NODE QUORUM_FAILURES ROLE:CHILD:BAD_READS:REWRITES:IO_ERRORS...:
# nodes/NODE/stats is exactly this (no events dropped).
q_stats_want() {
	local node=$1 qf=$2 want="" c
	local -a f
	shift 2
	for c in "$@"; do
		IFS=: read -ra f <<<"$c"
		want+="${f[0]} ${f[1]} bad_reads=${f[2]} rewrites=${f[3]} io_errors=${f[4]}"$'\n'
	done
	want+="quorum_failures=$qf events_dropped=0"
	expect_eq "$(cat "$CFS/nodes/$node/stats")" "$want" "stats of $node"
}

# q_stat NODE ROLE KEY: one counter of nodes/NODE/stats (ROLE "-" for the
# node's own counters).
q_stat() {
	if [ "$2" = - ]; then
		sed -nE "s/.*\\b$3=([0-9]+).*/\\1/p" "$CFS/nodes/$1/stats" | tail -n 1
	else
		sed -nE "s/^$2 .*\\b$3=([0-9]+).*/\\1/p" "$CFS/nodes/$1/stats"
	fi
}

# q_graph NODE: NODE's lines of the graph, sorted, ';'-separated.
q_graph() { grep "^$1 " "$CFS/graph" | sort | tr '\n' ';'; }

# q_iostat DEV FIELD: field FIELD (from 1) of /sys/block/<kernel name>/stat.
q_iostat() {
	local f
	read -ra f <"/sys/block/${1##*/}/stat"
	echo "${f[$2 - 1]}"
}

# q_reads DEV, q_writes DEV: reads (field 1), writes (field 5) completed.
q_reads() { q_iostat "$1" 1; }

# q_dm_module NAME: load dm target module NAME, else skip the test (the
# debug kernel has only the targets built in).
q_dm_module() {
	[ -d "/lib/modules/$(uname -r)" ] && modprobe "dm_$1" 2>/dev/null
	dmsetup targets | grep -q "^$1 " || skip "no dm-$1 in this kernel"
}

# q_listen: receive kernel uevents from now on; those of bgraph go to
# $SCRATCH/uevents, one a line: ACTION DEVNAME (of the devpath) and the
# BGRAPH_ fields, sorted.  Returns once the socket is bound.  The listener
# writes to files: a child holding the test's stdout would keep the runner
# waiting.
q_listen() {
	local ready=$SCRATCH/uevents.ready
	rm -f "$ready" "$SCRATCH/uevents"
	: >"$SCRATCH/uevents"
	python3 - "$SCRATCH/uevents" "$ready" <<-"PY" >"$SCRATCH/uevents.err" 2>&1 &
	import os, socket, sys
	s = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 15)
	s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
	s.bind((0, 1))
	out = open(sys.argv[1], "a", buffering=1)
	open(sys.argv[2], "w").close()
	while True:
	    f = [x.decode(errors="replace") for x in s.recv(1 << 16).split(b"\0") if x]
	    kv = dict(x.split("=", 1) for x in f[1:] if "=" in x)
	    bg = sorted(x for x in f[1:] if x.startswith("BGRAPH_"))
	    if bg:
	        out.write("%s %s %s\n" % (kv.get("ACTION"),
	                  os.path.basename(kv.get("DEVPATH", "?")), " ".join(bg)))
	PY
	Q_LISTENER=$!
	for _ in $(seq 100); do
		[ -e "$ready" ] && return 0
		sleep 0.1
	done
	fail "the uevent listener did not start"
}

# q_event REGEX: the first uevent line received matching REGEX (waits up to
# 30 s for it: the target sends uevents from a worker).
q_event() {
	local line
	for _ in $(seq 300); do
		line=$(grep -E -m 1 -- "$1" "$SCRATCH/uevents" || true)
		[ -n "$line" ] && { echo "$line"; return 0; }
		sleep 0.1
	done
	diag "uevents: $(cat "$SCRATCH/uevents")"
	fail "no uevent matching /$1/"
}

# q_one_corrupted NODE OPTS: NODE over three loop devices, threshold 2,
# Q_REF_MB MiB written, child 1 corrupted in the Q_BAD range; sets Q_L
# (the loop devices) and Q_REF.
q_one_corrupted() {
	mapfile -t Q_L < <(q_loops 3)
	q_create "$1" 2 "$2" "${Q_L[@]}"
	Q_REF=$(q_fill "$1")
	q_corrupt "${Q_L[1]}" $Q_BAD_OFF $Q_BAD_LEN 0xff
}
