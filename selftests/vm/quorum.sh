#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
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

q_teardown() {
	local x
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
q_writes() { q_iostat "$1" 5; }

# q_msg_refused NODE REASON MSG...: message MSG to NODE fails with REASON
# in the kernel log.
q_msg_refused() {
	local node=$1 why=$2
	shift 2
	mark_log
	expect_fail dmsetup message "$node" 0 "$@"
	expect_match "$(log_since_mark)" "bgraph-quorum.*$why" "reason for '$*'"
}

# q_dm_module NAME: load dm target module NAME, else skip the test (the
# debug kernel has only the targets built in).
q_dm_module() {
	[ -d "/lib/modules/$(uname -r)" ] && modprobe "dm_$1" 2>/dev/null
	dmsetup targets | grep -q "^$1 " || skip "no dm-$1 in this kernel"
}

# q_delay NAME DEV MS: a dm-delay device over DEV whose writes (and
# flushes) take MS ms, reads none; prints its path.
q_delay() {
	dmsetup create "$1" --table \
		"0 $(blockdev --getsz "$2") delay $2 0 0 $2 0 $3" && echo "/dev/mapper/$1"
}

# q_held_writes NAME: the writes dm-delay device NAME holds now (its
# status: reads, writes and flushes held).  Its queue keeps no in-flight
# count (iostats 0 on 6.1).
q_held_writes() {
	dmsetup status "$1" | awk '{ print $5 }'
}

# q_wait_held NAME: wait until dm-delay device NAME holds a write.
q_wait_held() {
	for _ in $(seq 100); do
		[ "$(q_held_writes "$1")" -gt 0 ] && return 0
		sleep 0.1
	done
	diag "status of $1: $(dmsetup status "$1")"
	fail "no write held by $1"
}

# q_fsync DEV: fsync(2) DEV (a flush); the exit status is its success.
q_fsync() {
	python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_WRONLY); os.fsync(fd)' "$1"
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

# q_events_seen: the uevent lines received so far.
q_events_seen() { cat "$SCRATCH/uevents"; }

# q_dm_events NODE: the event counter of dm device NODE.
q_dm_events() { dmsetup info -c --noheadings -o events "$1" | tr -d ' '; }

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

# q_one_corrupted NODE OPTS: NODE over three loop devices, threshold 2,
# Q_REF_MB MiB written, child 1 corrupted in the Q_BAD range; sets Q_L
# (the loop devices) and Q_REF.
q_one_corrupted() {
	mapfile -t Q_L < <(q_loops 3)
	q_create "$1" 2 "$2" "${Q_L[@]}"
	Q_REF=$(q_fill "$1")
	q_corrupt "${Q_L[1]}" $Q_BAD_OFF $Q_BAD_LEN 0xff
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

# ---- reads and writes -----------------------------------------------

test_fio_verify_through_quorum_leaves_the_children_equal() {
	local l
	q_begin
	mapfile -t l < <(q_loops 3)
	q_create qn 2 "" "${l[@]}"
	fio_ok --name=qv --filename=/dev/mapper/qn --rw=randwrite --bsrange=4k-64k \
		--numjobs=4 --size=$((FIO_MB / 4))M --offset_increment=$((FIO_MB / 4))M \
		--ioengine=libaio --iodepth=16 --direct=1 --verify=crc32c \
		--verify_fatal=1 --do_verify=1
	cmp "${l[0]}" "${l[1]}" || fail "children 0 and 1 differ"
	cmp "${l[0]}" "${l[2]}" || fail "children 0 and 2 differ"
	q_stats_want qn 0 "children.0:${l[0]##*/}:0:0:0" \
		"children.1:${l[1]##*/}:0:0:0" "children.2:${l[2]##*/}:0:0:0"
}

test_quorum_reads_every_child_and_fifo_only_the_first() {
	local l r0 r1 r2
	q_begin
	mapfile -t l < <(q_loops 3)
	q_create qn 2 "" "${l[@]}"
	r0=$(q_reads "${l[0]}") r1=$(q_reads "${l[1]}") r2=$(q_reads "${l[2]}")
	q_read /dev/mapper/qn 0 65536 /dev/null
	[ "$(q_reads "${l[0]}")" -gt "$r0" ] || fail "read-pattern quorum: child 0 not read"
	[ "$(q_reads "${l[1]}")" -gt "$r1" ] || fail "read-pattern quorum: child 1 not read"
	[ "$(q_reads "${l[2]}")" -gt "$r2" ] || fail "read-pattern quorum: child 2 not read"
	dmsetup reload qn --table "0 $Q_SECTORS bgraph-quorum 2 3 ${l[*]} 2 read-pattern fifo"
	dmsetup resume qn
	r0=$(q_reads "${l[0]}") r1=$(q_reads "${l[1]}") r2=$(q_reads "${l[2]}")
	q_read /dev/mapper/qn 0 65536 /dev/null
	[ "$(q_reads "${l[0]}")" -gt "$r0" ] || fail "read-pattern fifo: child 0 not read"
	expect_eq "$(q_reads "${l[1]}")" "$r1" "read-pattern fifo: reads of child 1"
	expect_eq "$(q_reads "${l[2]}")" "$r2" "read-pattern fifo: reads of child 2"
}

test_flush_and_discard_reach_every_child() {
	local l n before=()
	q_begin
	mapfile -t l < <(q_loops 3)
	q_create qn 2 "" "${l[@]}"
	q_fill qn >/dev/null
	# Field 16 of /sys/block/*/stat: flush requests completed.
	for n in 0 1 2; do
		before[n]=$(awk '{ print $16 }' "/sys/block/${l[$n]##*/}/stat")
	done
	python3 -c 'import os; f = os.open("/dev/mapper/qn", os.O_WRONLY); os.fsync(f)'
	for n in 0 1 2; do
		[ "$(awk '{ print $16 }' "/sys/block/${l[$n]##*/}/stat")" -gt "${before[$n]}" ] ||
			fail "no flush reached child $n"
	done
	blkdiscard -o 0 -l 1M /dev/mapper/qn
	for n in 0 1 2; do
		cmp <(head -c 1M /dev/zero) <(dd if="${l[$n]}" bs=1M count=1 iflag=direct status=none) ||
			fail "discarded range of child $n is not zero"
	done
}

# A write goes to each child whole, as it would to the child alone (md
# raid1's way; a child such as a virtio disk pays per request); a read
# with read-pattern quorum is voted on in pieces of 128 KiB.
test_a_write_reaches_each_child_whole_and_reads_are_voted_per_128k() {
	local l n d0 before=() mm segs most
	q_begin
	mapfile -t l < <(q_loops 3)
	for n in 0 1 2; do
		cat "/sys/block/${l[$n]##*/}/queue/max_hw_sectors_kb" \
			>"/sys/block/${l[$n]##*/}/queue/max_sectors_kb"
	done
	[ "$(cat "/sys/block/${l[0]##*/}/queue/max_sectors_kb")" -ge 1024 ] ||
		skip "loop devices take requests of less than 1 MiB here"
	q_create qn 2 "" "${l[@]}"
	Q_REF=$(q_fill qn)
	# The same MiB of zeros at 8 MiB: on child 0 alone, then through qn.
	before[0]=$(q_writes "${l[0]}")
	dd if=/dev/zero of="${l[0]}" bs=1M seek=8 count=1 oflag=direct status=none
	d0=$(($(q_writes "${l[0]}") - before[0]))
	for n in 0 1 2; do
		before[n]=$(q_writes "${l[$n]}")
	done
	dd if=/dev/zero of=/dev/mapper/qn bs=1M seek=8 count=1 oflag=direct status=none
	# How many segments (and so requests) a 1 MiB write needs depends on
	# how contiguous dd's pages happen to be, from one dd to the next:
	# allow what the child alone took, or what 256 separate pages take,
	# whichever is more.  Cut at 128 KiB, the write would be 8 requests.
	segs=$(cat "/sys/block/${l[0]##*/}/queue/max_segments")
	most=$(((256 + segs - 1) / segs))
	[ "$d0" -le "$most" ] || most=$d0
	[ "$most" -lt 8 ] || skip "a 1 MiB write may take 8 requests on these loop devices"
	for n in 0 1 2; do
		[ "$(($(q_writes "${l[$n]}") - before[n]))" -le "$most" ] ||
			fail "write requests to child $n for one 1 MiB write:" \
				"$(($(q_writes "${l[$n]}") - before[n])), child alone $d0," \
				"256 pages in segments of $segs: $most"
	done
	# Child 1 broken in two 128 KiB pieces of one 1 MiB read: two votes lost.
	q_corrupt "${l[1]}" $((1 << 20)) 4096 0xff
	q_corrupt "${l[1]}" $(((1 << 20) + (512 << 10))) 4096 0xff
	q_read /dev/mapper/qn $((1 << 20)) $((1 << 20)) "$SCRATCH/got"
	cmp "$SCRATCH/got" <(q_slice "$Q_REF" $((1 << 20)) $((1 << 20))) ||
		fail "read returned wrong data"
	q_stats_want qn 0 "children.0:${l[0]##*/}:0:0:0" \
		"children.1:${l[1]##*/}:2:0:0" "children.2:${l[2]##*/}:0:0:0"
	mm=$(q_mm "${l[1]}")
	expect_match "$(dmsetup status qn)" " $mm 2 0 0 " "status of child 1"
}

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
	mark_log
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
	mark_log
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
	mark_log
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

test_two_children_corrupted_differently_fail_the_read_at_threshold_2() {
	local l ev out
	q_begin
	mapfile -t l < <(q_loops 3)
	q_create qn 2 "" "${l[@]}"
	q_fill qn >/dev/null
	q_corrupt "${l[1]}" $Q_BAD_OFF $Q_BAD_LEN 0xff
	q_corrupt "${l[2]}" $Q_BAD_OFF $Q_BAD_LEN 0x55
	q_listen
	mark_log
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

# ---- failing children -----------------------------------------------

test_a_failing_child_is_outvoted_and_counted_in_io_errors() {
	local l c2 ref out
	q_begin
	mapfile -t l < <(q_loops 3)
	c2=$(q_linear qlin2 "${l[2]}")
	q_create qn 2 "" "${l[0]}" "${l[1]}" "$c2"
	ref=$(q_fill qn)
	q_break qlin2
	mark_log
	q_read /dev/mapper/qn $Q_RD_OFF 4096 "$SCRATCH/got"
	cmp "$SCRATCH/got" <(q_slice "$ref" $Q_RD_OFF 4096) || fail "read returned wrong data"
	q_stats_want qn 0 "children.0:${l[0]##*/}:0:0:0" \
		"children.1:${l[1]##*/}:0:0:0" "children.2:qlin2:0:0:1"
	head -c 4096 /dev/urandom >"$SCRATCH/new"
	dd if="$SCRATCH/new" of=/dev/mapper/qn bs=4096 seek=$((Q_RD_OFF / 4096)) oflag=direct status=none ||
		fail "write with one child of three failing"
	q_stats_want qn 0 "children.0:${l[0]##*/}:0:0:0" \
		"children.1:${l[1]##*/}:0:0:0" "children.2:qlin2:0:0:2"
	q_read /dev/mapper/qn $Q_RD_OFF 4096 "$SCRATCH/got"
	cmp "$SCRATCH/got" "$SCRATCH/new" || fail "the write did not read back"
	q_read "${l[0]}" $Q_RD_OFF 4096 "$SCRATCH/got"
	cmp "$SCRATCH/got" "$SCRATCH/new" || fail "the write did not reach child 0"
	out=$(log_since_mark)
	expect_match "$out" "bgraph-quorum: qn: children\\.2 \\(qlin2\\): write error -5 at sector $((Q_RD_OFF / 512))\\+8" "kernel log of the write"
}

test_an_io_error_is_reported_by_uevent() {
	local l c2 ev
	q_begin
	mapfile -t l < <(q_loops 3)
	c2=$(q_linear qlin2 "${l[2]}")
	q_create qn 2 "" "${l[0]}" "${l[1]}" "$c2"
	q_break qlin2
	q_listen
	q_read /dev/mapper/qn $Q_RD_OFF 4096 /dev/null
	ev=$(q_event "BGRAPH_EVENT=QUORUM_REPORT_BAD")
	expect_eq "$ev" "change $(devname /dev/mapper/qn) BGRAPH_CHILD=qlin2 BGRAPH_ERROR=5 BGRAPH_EVENT=QUORUM_REPORT_BAD BGRAPH_NODE=qn BGRAPH_OP=read BGRAPH_ROLE=children.2 BGRAPH_SECTOR=$((Q_RD_OFF / 512)) BGRAPH_SECTORS=8" \
		"the uevent"
}

test_a_write_fails_when_fewer_than_threshold_children_succeed() {
	local l c2 out
	q_begin
	mapfile -t l < <(q_loops 3)
	c2=$(q_linear qlin2 "${l[2]}")
	q_create qn 3 "" "${l[0]}" "${l[1]}" "$c2"
	q_break qlin2
	mark_log
	if out=$(dd if=/dev/urandom of=/dev/mapper/qn bs=4096 count=1 oflag=direct status=none 2>&1); then
		fail "write succeeded on 2 children of 3 with threshold 3"
	fi
	expect_match "$out" "Input/output error" "error of the write"
	q_stats_want qn 1 "children.0:${l[0]##*/}:0:0:0" \
		"children.1:${l[1]##*/}:0:0:0" "children.2:qlin2:0:0:1"
	expect_match "$(log_since_mark)" "bgraph-quorum: qn: quorum failure: write at sector 0\\+8: -5" "kernel log"
}

# A flush and a discard are votes too: each child that fails one is
# counted and reported with the operation's name; the node's request
# fails when fewer than the threshold succeed.  The failing child is
# dm-flakey always down with error_writes: it fails every write, flushes
# and discards too (it keeps its device's write cache, where dm's error
# target has none, and the block layer would answer a flush to it
# without sending one).
test_flushes_and_discards_are_voted_and_a_failing_child_reported() {
	local l f s ev out
	q_begin
	q_dm_module flakey
	mapfile -t l < <(q_loops 3)
	s=$(blockdev --getsz "${l[2]}")
	dmsetup create qflk2 --table "0 $s flakey ${l[2]} 0 0 3600 1 error_writes"
	f=/dev/mapper/qflk2
	q_create qn 2 "" "${l[0]}" "${l[1]}" "$f"
	q_listen
	mark_log
	blkdiscard -o $Q_RD_OFF -l $Q_RD_LEN /dev/mapper/qn ||
		fail "discard with 2 children of 3 working"
	ev=$(q_event "BGRAPH_OP=discard")
	expect_eq "$ev" "change $(devname /dev/mapper/qn) BGRAPH_CHILD=qflk2 BGRAPH_ERROR=5 BGRAPH_EVENT=QUORUM_REPORT_BAD BGRAPH_NODE=qn BGRAPH_OP=discard BGRAPH_ROLE=children.2 BGRAPH_SECTOR=$((Q_RD_OFF / 512)) BGRAPH_SECTORS=$((Q_RD_LEN / 512))" \
		"the discard's uevent"
	q_fsync /dev/mapper/qn || fail "flush with 2 children of 3 working"
	ev=$(q_event "BGRAPH_OP=flush")
	expect_match "$ev" "BGRAPH_CHILD=qflk2 BGRAPH_ERROR=5 BGRAPH_EVENT=QUORUM_REPORT_BAD BGRAPH_NODE=qn BGRAPH_OP=flush BGRAPH_ROLE=children\\.2 " \
		"the flush's uevent"
	q_stats_want qn 0 "children.0:${l[0]##*/}:0:0:0" \
		"children.1:${l[1]##*/}:0:0:0" "children.2:qflk2:0:0:2"
	out=$(log_since_mark)
	expect_match "$out" "qn: children\\.2 \\(qflk2\\): discard error -5 at sector $((Q_RD_OFF / 512))\\+$((Q_RD_LEN / 512))" "log of the discard"
	expect_match "$out" "qn: children\\.2 \\(qflk2\\): flush error -5" "log of the flush"
	dmsetup remove qn
	# Threshold 3: both fail.
	q_create qn 3 "" "${l[0]}" "${l[1]}" "$f"
	mark_log
	if out=$(blkdiscard -o $Q_RD_OFF -l $Q_RD_LEN /dev/mapper/qn 2>&1); then
		fail "discard succeeded on 2 children of 3 with threshold 3"
	fi
	q_fsync /dev/mapper/qn 2>/dev/null && fail "flush succeeded on 2 children of 3 with threshold 3"
	expect_eq "$(q_stat qn - quorum_failures)" 2 "quorum failures"
	out=$(log_since_mark)
	expect_match "$out" "qn: quorum failure: discard at sector $((Q_RD_OFF / 512))\\+$((Q_RD_LEN / 512)): -5" "log of the failed discard"
	expect_match "$out" "qn: quorum failure: flush at sector [0-9]+\\+0: -5" "log of the failed flush"
}

# One child of three on dm-flakey, up 1 s and down 1 s (its writes fail
# while down; its reads then return what it has, stale where a write
# failed), for 6 s of fio verify: reads and writes go on with two
# children, the flaky child's failures are counted, its stale reads are
# outvoted, and the two good children end equal.
test_fio_verify_goes_on_while_a_child_is_flaky() {
	local l s
	q_begin
	q_dm_module flakey
	mapfile -t l < <(q_loops 3)
	s=$(blockdev --getsz "${l[2]}")
	dmsetup create qflk2 --table "0 $s flakey ${l[2]} 0 1 1 1 error_writes"
	q_create qn 2 "" "${l[0]}" "${l[1]}" /dev/mapper/qflk2
	fio_ok --name=qf --filename=/dev/mapper/qn --rw=randrw --bsrange=4k-64k \
		--numjobs=2 --size=$((FIO_MB / 2))M --offset_increment=$((FIO_MB / 2))M \
		--ioengine=libaio --iodepth=8 --direct=1 --verify=crc32c \
		--verify_backlog=32 --verify_fatal=1 --time_based --runtime=6 ||
		fail "fio through the node with a flaky child"
	[ "$(q_stat qn children.2 io_errors)" -gt 0 ] || fail "no I/O errors counted for the flaky child"
	expect_eq "$(q_stat qn children.0 io_errors)" 0 "I/O errors of child 0"
	expect_eq "$(q_stat qn children.1 io_errors)" 0 "I/O errors of child 1"
	expect_eq "$(q_stat qn - quorum_failures)" 0 "quorum failures"
	cmp "${l[0]}" "${l[1]}" || fail "children 0 and 1 differ"
	diag "$(cat "$CFS/nodes/qn/stats")"
}

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

# ---- live child changes ---------------------------------------------

test_remove_child_refused_below_the_threshold_or_for_no_such_child() {
	local l
	q_begin
	mapfile -t l < <(q_loops 3)
	q_create qn 3 "" "${l[@]}"
	q_msg_refused qn "remove_child children.2 refused: The number of children cannot be lower than the vote threshold" \
		remove_child 2
	dmsetup reload qn --table "0 $Q_SECTORS bgraph-quorum 2 3 ${l[*]}"
	dmsetup resume qn
	q_msg_refused qn "remove_child: no child children.3" remove_child 3
	q_msg_refused qn "remove_child: not a child index: x" remove_child x
	expect_eq "$(q_graph qn)" \
		"qn children.0 ${l[0]##*/};qn children.1 ${l[1]##*/};qn children.2 ${l[2]##*/};" "graph"
	expect_eq "$(dmsetup table qn)" "0 $Q_SECTORS bgraph-quorum 2 3 $(q_mm "${l[0]}") $(q_mm "${l[1]}") $(q_mm "${l[2]}")" "table"
}

test_remove_child_drops_the_edge_and_stops_io_to_it() {
	local l sum
	q_begin
	mapfile -t l < <(q_loops 3)
	q_create qn 2 "" "${l[@]}"
	q_fill qn >/dev/null
	dmsetup message qn 0 remove_child 2
	expect_eq "$(q_graph qn)" \
		"qn children.0 ${l[0]##*/};qn children.1 ${l[1]##*/};" "graph"
	expect_eq "$(dmsetup table qn)" "0 $Q_SECTORS bgraph-quorum 2 2 $(q_mm "${l[0]}") $(q_mm "${l[1]}")" "table"
	sum=$(md5sum <"${l[2]}")
	dd if=/dev/urandom of=/dev/mapper/qn bs=64k count=16 oflag=direct status=none
	python3 -c 'import os; f = os.open("/dev/mapper/qn", os.O_WRONLY); os.fsync(f)'
	expect_eq "$(md5sum <"${l[2]}")" "$sum" "content of the removed child"
	cmp <(dd if="${l[0]}" bs=64k count=16 iflag=direct status=none) \
		<(dd if=/dev/mapper/qn bs=64k count=16 iflag=direct status=none) ||
		fail "the write did not reach child 0"
}

test_add_child_appends_at_the_next_index_and_gets_writes() {
	local l extra
	q_begin
	mapfile -t l < <(q_loops 3)
	extra=$(mkloop extra "$Q_MB")
	q_create qn 2 "" "${l[@]}"
	q_fill qn >/dev/null
	dmsetup message qn 0 remove_child 2
	# In sync as the user declares it: a copy of child 0.
	dd if="${l[0]}" of="$extra" bs=1M iflag=direct oflag=direct status=none
	dmsetup message qn 0 add_child "$extra"
	expect_eq "$(q_graph qn)" \
		"qn children.0 ${l[0]##*/};qn children.1 ${l[1]##*/};qn children.3 ${extra##*/};" \
		"graph"
	expect_eq "$(dmsetup table qn)" \
		"0 $Q_SECTORS bgraph-quorum 2 3 $(q_mm "${l[0]}") $(q_mm "${l[1]}") $(q_mm "$extra")" "table"
	head -c 1M /dev/urandom >"$SCRATCH/new"
	dd if="$SCRATCH/new" of=/dev/mapper/qn bs=1M seek=2 oflag=direct status=none
	cmp "$SCRATCH/new" <(dd if="$extra" bs=1M skip=2 count=1 iflag=direct status=none) ||
		fail "the write did not reach the added child"
	q_read /dev/mapper/qn 0 $((4 << 20)) /dev/null
	q_stats_want qn 0 "children.0:${l[0]##*/}:0:0:0" \
		"children.1:${l[1]##*/}:0:0:0" "children.3:${extra##*/}:0:0:0"
}

# remove_child returns only once the writes sent to that child have
# ended (QEMU drains the node around a child change): the child is
# dm-delay holding writes 1.5 s, and one write is in flight on it when
# the message is sent.  After the message nothing is in flight on it,
# the write is on it, and it gets nothing more.
test_remove_child_returns_once_its_writes_in_flight_have_ended() {
	local l c2 pid sum
	q_begin
	q_dm_module delay
	mapfile -t l < <(q_loops 3)
	c2=$(q_delay qdel2 "${l[2]}" 1500)
	q_create qn 2 "" "${l[0]}" "${l[1]}" "$c2"
	head -c 4096 /dev/urandom >"$SCRATCH/new"
	dd if="$SCRATCH/new" of=/dev/mapper/qn bs=4096 seek=$((Q_RD_OFF / 4096)) \
		oflag=direct status=none &
	pid=$!
	q_wait_held qdel2
	dmsetup message qn 0 remove_child 2
	expect_eq "$(q_held_writes qdel2)" 0 "writes held by children.2 after remove_child"
	wait $pid || fail "the write in flight"
	q_read "${l[2]}" $Q_RD_OFF 4096 "$SCRATCH/got"
	cmp "$SCRATCH/got" "$SCRATCH/new" || fail "the write in flight did not reach the removed child"
	sum=$(md5sum <"${l[2]}")
	dd if=/dev/urandom of=/dev/mapper/qn bs=4096 count=16 oflag=direct status=none
	expect_eq "$(md5sum <"${l[2]}")" "$sum" "the removed child after more writes"
}

# add_child returns only once the writes sent before it have ended: no
# write that ends after it misses the new child.  Child 0 is dm-delay
# holding writes 1.5 s, one write in flight on it.
test_add_child_returns_once_the_writes_sent_before_it_have_ended() {
	local l c0 pid
	q_begin
	q_dm_module delay
	mapfile -t l < <(q_loops 3)
	c0=$(q_delay qdel0 "${l[0]}" 1500)
	q_create qn 2 "" "$c0" "${l[1]}"
	dd if=/dev/urandom of=/dev/mapper/qn bs=4096 count=1 oflag=direct status=none &
	pid=$!
	q_wait_held qdel0
	dmsetup message qn 0 add_child "${l[2]}"
	expect_eq "$(q_held_writes qdel0)" 0 "writes sent before add_child, held by children.0 after it"
	wait $pid || fail "the write in flight"
	expect_eq "$(q_graph qn)" "qn children.0 qdel0;qn children.1 ${l[1]##*/};qn children.2 ${l[2]##*/};" "graph"
}

test_add_child_refused_for_another_size_no_device_or_blkverify() {
	local l small
	q_begin
	mapfile -t l < <(q_loops 3)
	small=$(mkloop small 16)
	q_create qn 2 "" "${l[0]}" "${l[1]}"
	q_msg_refused qn "add_child $small refused: Children differ in size" add_child "$small"
	q_msg_refused qn "add_child /dev/no-such-device refused: Cannot open the child device" \
		add_child /dev/no-such-device
	expect_eq "$(q_graph qn)" "qn children.0 ${l[0]##*/};qn children.1 ${l[1]##*/};" "graph"
	expect_eq "$(dmsetup table qn)" "0 $Q_SECTORS bgraph-quorum 2 2 $(q_mm "${l[0]}") $(q_mm "${l[1]}")" "table"
	dmsetup reload qn --table "0 $Q_SECTORS bgraph-quorum 2 2 ${l[0]} ${l[1]} 1 blkverify"
	dmsetup resume qn
	q_msg_refused qn "Cannot add a child to a quorum in blkverify mode" add_child "${l[2]}"
	expect_eq "$(q_graph qn)" "qn children.0 ${l[0]##*/};qn children.1 ${l[1]##*/};" "graph in blkverify mode"
}

# A refused add_child of a current child changes nothing: not the vote,
# not the graph.
test_add_child_of_a_current_child_is_refused_and_changes_nothing() {
	local l
	q_begin
	mapfile -t l < <(q_loops 2)
	q_create qn 2 "" "${l[0]}" "${l[1]}"
	q_msg_refused qn "add_child ${l[1]} refused: The same device is given twice as a child" \
		add_child "${l[1]}"
	expect_eq "$(dmsetup table qn)" "0 $Q_SECTORS bgraph-quorum 2 2 $(q_mm "${l[0]}") $(q_mm "${l[1]}")" "table"
	q_stats_want qn 0 "children.0:${l[0]##*/}:0:0:0" "children.1:${l[1]##*/}:0:0:0"
	expect_eq "$(q_graph qn)" "qn children.0 ${l[0]##*/};qn children.1 ${l[1]##*/};" "graph"
	expect_eq "$(cat "$CFS/nodes/${l[1]##*/}/parents")" "qn children.1" "parents of child 1"
}

test_reload_of_the_table_after_live_changes_keeps_the_children() {
	local l extra t
	q_begin
	mapfile -t l < <(q_loops 3)
	extra=$(mkloop extra "$Q_MB")
	q_create qn 2 "1 rewrite-corrupted" "${l[@]}"
	dmsetup message qn 0 remove_child 0
	dmsetup message qn 0 add_child "$extra"
	t=$(dmsetup table qn)
	expect_eq "$t" "0 $Q_SECTORS bgraph-quorum 2 3 $(q_mm "${l[1]}") $(q_mm "${l[2]}") $(q_mm "$extra") 1 rewrite-corrupted" "table"
	dmsetup reload qn --table "$t"
	dmsetup resume qn
	expect_eq "$(dmsetup table qn)" "$t" "table after the reload"
	# A new table numbers its children from 0 again.
	expect_eq "$(q_graph qn)" \
		"qn children.0 ${l[1]##*/};qn children.1 ${l[2]##*/};qn children.2 ${extra##*/};" \
		"graph after the reload"
	[ ! -e "$CFS/nodes/${l[0]##*/}" ] || fail "the removed child is still a node"
}

# ---- children elsewhere ---------------------------------------------

# q_nbd_host N FILE: network namespace qhN, a veth pair 10.231.N.1 (here)
# - 10.231.N.2 (there), and qemu-nbd serving FILE as export "exp" there;
# connects /dev/nbd<N-1> to it.  Not in a $(...): it records what
# q_teardown undoes, and the qemu-nbd processes it leaves running write
# to files, not to a pipe someone waits on.
q_nbd_host() {
	local n=$1 ns=qh$1 dev=/dev/nbd$(($1 - 1)) i
	ip netns add "$ns"
	Q_NETNS+=" $ns"
	ip link add "qv$n" type veth peer name "qv${n}p"
	ip link set "qv${n}p" netns "$ns"
	ip addr add "10.231.$n.1/24" dev "qv$n"
	ip link set "qv$n" up
	ip netns exec "$ns" ip addr add "10.231.$n.2/24" dev "qv${n}p"
	ip netns exec "$ns" ip link set "qv${n}p" up
	ip netns exec "$ns" ip link set lo up
	ip netns exec "$ns" qemu-nbd -f raw -x exp --bind "10.231.$n.2" --port 10809 \
		--persistent --fork --pid-file "$SCRATCH/nbd$n.pid" "$2" \
		</dev/null >"$SCRATCH/nbd-server$n.log" 2>&1 ||
		{ diag "$(cat "$SCRATCH/nbd-server$n.log")"; fail "qemu-nbd server in $ns"; return 1; }
	Q_NBD_PIDS+=" $(cat "$SCRATCH/nbd$n.pid")"
	# qemu-nbd -c locks /var/lock/qemu-nbd-<dev>; /var/lock points into
	# /run, which is empty in the VM.
	mkdir -p "$(readlink -f /var/lock)"
	[ "$(cat "/sys/block/${dev#/dev/}/size")" = 0 ] || { fail "$dev is in use"; return 1; }
	qemu-nbd -c "$dev" -f raw "nbd://10.231.$n.2:10809/exp" \
		</dev/null >"$SCRATCH/nbd-client$n.log" 2>&1 ||
		{ diag "$(cat "$SCRATCH/nbd-client$n.log")"; fail "qemu-nbd -c $dev"; return 1; }
	Q_NBD_DEVS+=" $dev"
	for i in $(seq 100); do
		[ "$(cat "/sys/block/${dev#/dev/}/size")" != 0 ] && break
		sleep 0.1
	done
}

# q_nbd_hosts FILE1 FILE2: 16 MiB files FILE1 and FILE2, served by hosts 1
# and 2 (q_nbd_host) as /dev/nbd0 and /dev/nbd1.  Small: nbd over veth
# under TCG moves a few MB/s.  Skips without nbd, veth or ip.
q_nbd_hosts() {
	[ -d "/lib/modules/$(uname -r)" ] || skip "no modules for $(uname -r) (nbd, veth)"
	command -v ip >/dev/null || skip "no ip (iproute2)"
	modprobe nbd 2>/dev/null || skip "no nbd module for $(uname -r)"
	modprobe veth 2>/dev/null || skip "no veth module for $(uname -r)"
	truncate -s 16M "$1" "$2"
	q_nbd_host 1 "$1"
	q_nbd_host 2 "$2"
}

test_children_on_nbd_in_other_network_namespaces_vote_with_a_loop() {
	local l n1=/dev/nbd0 n2=/dev/nbd1 f1=$SCRATCH/host1.img f2=$SCRATCH/host2.img
	q_begin
	l=$(mkloop q0 16)
	q_nbd_hosts "$f1" "$f2"
	expect_eq "$(blockdev --getsize64 "$n1")" $((16 << 20)) "size of $n1"
	q_create qn 2 "" "$l" "$n1" "$n2"
	expect_eq "$(q_graph qn)" \
		"qn children.0 ${l##*/};qn children.1 nbd0;qn children.2 nbd1;" "graph"
	fio_ok --name=qnbd --filename=/dev/mapper/qn --rw=randwrite --bsrange=4k-64k \
		--numjobs=2 --size=$((FIO_MB / 8))M --offset_increment=$((FIO_MB / 8))M \
		--ioengine=libaio --iodepth=8 --direct=1 --verify=crc32c \
		--verify_fatal=1 --do_verify=1
	q_stats_want qn 0 "children.0:${l##*/}:0:0:0" "children.1:nbd0:0:0:0" "children.2:nbd1:0:0:0"
	dmsetup remove qn
	qemu-nbd -d "$n1" >/dev/null
	qemu-nbd -d "$n2" >/dev/null
	Q_NBD_DEVS=""
	# What the remote hosts hold is what the loop device holds.
	cmp "$l" "$f1" || fail "host 1's file differs from the loop child"
	cmp "$l" "$f2" || fail "host 2's file differs from the loop child"
}

# Host 1's copy is corrupted on the host itself: the read returns the
# loop device's and host 2's data and rewrite-corrupted repairs host 1
# over the network.  Then host 2's server dies: writes and reads go on
# with 2 of 3, and its failures are counted as I/O errors.
test_a_remote_host_corrupted_or_lost_is_outvoted_repaired_and_counted() {
	local l n1=/dev/nbd0 n2=/dev/nbd1 f1=$SCRATCH/host1.img f2=$SCRATCH/host2.img
	local ref ref2 got
	q_begin
	l=$(mkloop q0 16)
	q_nbd_hosts "$f1" "$f2"
	q_create qn 2 "1 rewrite-corrupted" "$l" "$n1" "$n2"
	ref=$(mkref qr 1)
	dd if="$ref" of=/dev/mapper/qn bs=1M oflag=direct status=none
	# On host 1, behind its server's back.
	dd if=/dev/urandom of="$f1" bs=4k seek=16 count=2 conv=notrunc status=none
	q_listen
	q_read /dev/mapper/qn 0 $((1 << 20)) "$SCRATCH/got"
	cmp "$SCRATCH/got" "$ref" || fail "read returned host 1's bad copy"
	got=$(q_event "BGRAPH_ROLE=children.1")
	expect_match "$got" "BGRAPH_CHILD=nbd0 BGRAPH_ERROR=0 BGRAPH_EVENT=QUORUM_REPORT_BAD BGRAPH_NODE=qn BGRAPH_OP=read" "the uevent"
	cmp <(head -c $((1 << 20)) "$f1") "$ref" || fail "host 1 not repaired"
	# Host 2 is lost.
	kill "$(cat "$SCRATCH/nbd2.pid")"
	ref2=$(mkref qr2 1)
	dd if="$ref2" of=/dev/mapper/qn bs=1M seek=2 oflag=direct status=none ||
		fail "a write with host 2 lost"
	q_read /dev/mapper/qn $((2 << 20)) $((1 << 20)) "$SCRATCH/got"
	cmp "$SCRATCH/got" "$ref2" || fail "read after host 2 was lost"
	fio_ok --name=qlost --filename=/dev/mapper/qn --rw=randwrite --bsrange=4k-64k \
		--size=1M --offset=4M --ioengine=libaio --iodepth=8 --direct=1 \
		--verify=crc32c --verify_fatal=1 --do_verify=1
	q_event "BGRAPH_ROLE=children.2" >/dev/null
	expect_eq "$(q_stat qn children.1 bad_reads)/$(q_stat qn children.1 rewrites)" 1/1 \
		"host 1's bad reads/rewrites"
	[ "$(q_stat qn children.2 io_errors)" -gt 0 ] || fail "host 2's failures not counted"
	expect_eq "$(q_stat qn children.0 io_errors)$(q_stat qn - quorum_failures)" 00 \
		"loop child errors, quorum failures"
	diag "host 2 lost: $(q_stat qn children.2 io_errors) I/O errors counted"
	dmsetup remove qn
	qemu-nbd -d "$n1" >/dev/null
	qemu-nbd -d "$n2" >/dev/null 2>&1 || true
	Q_NBD_DEVS=""
	cmp "$l" "$f1" || fail "host 1's file differs from the loop child"
}

# ---- everything at once ---------------------------------------------

# q_garbage DEV MIB...: 64 KiB of random bytes at each MIB MiB of DEV,
# straight on DEV, with O_DIRECT.
q_garbage() {
	local dev=$1 m
	shift
	for m in "$@"; do
		dd if=/dev/urandom of="$dev" bs=64k seek=$((m * 16)) count=1 \
			iflag=fullblock oflag=direct conv=notrunc status=none
	done
}

# fio verifies while child 1 is corrupted, removed, corrupted, added back
# and corrupted again; children 0 and 2 always outvote it.  A read of the
# whole node then repairs it (rewrite-corrupted): all three end equal.
test_fio_verify_survives_corruption_and_a_child_removed_and_added_back() {
	local l pid i dm
	q_begin
	mapfile -t l < <(q_loops 3)
	q_create qn 2 "1 rewrite-corrupted" "${l[@]}"
	dm=$(devname /dev/mapper/qn)
	fio_ok --name=qc --filename=/dev/mapper/qn --rw=randwrite --bsrange=4k-64k \
		--numjobs=4 --size=$((FIO_MB / 4))M --offset_increment=$((FIO_MB / 4))M \
		--ioengine=libaio --iodepth=16 --direct=1 --verify=crc32c \
		--verify_backlog=64 --verify_fatal=1 --do_verify=1 >"$SCRATCH/fio.out" 2>&1 &
	pid=$!
	for i in $(seq 100); do
		[ "$(awk '{ print $5 }' "/sys/block/$dm/stat")" -gt 100 ] && break
		sleep 0.1
	done
	q_garbage "${l[1]}" 1 3 5 7
	dmsetup message qn 0 remove_child 1
	q_garbage "${l[1]}" 9 11
	dmsetup message qn 0 add_child "${l[1]}"
	q_garbage "${l[1]}" 13 15
	kill -0 $pid 2>/dev/null || diag "fio ended before the last corruption"
	wait $pid || { cat "$SCRATCH/fio.out"; fail "fio failed"; }
	cat "$SCRATCH/fio.out"
	expect_eq "$(q_graph qn)" \
		"qn children.0 ${l[0]##*/};qn children.2 ${l[2]##*/};qn children.3 ${l[1]##*/};" \
		"graph"
	# Known damage after fio: the full read below must repair it.
	q_garbage "${l[1]}" 17
	dd if=/dev/mapper/qn of=/dev/null bs=1M iflag=direct status=none
	cmp "${l[0]}" "${l[2]}" || fail "children 0 and 2 differ"
	cmp "${l[0]}" "${l[1]}" || fail "the re-added child was not repaired"
	[ "$(q_stat qn children.3 rewrites)" -gt 0 ] || fail "no rewrites counted for the re-added child"
	expect_eq "$(q_stat qn - quorum_failures)" 0 "quorum failures"
	diag "$(cat "$CFS/nodes/qn/stats")"
}
