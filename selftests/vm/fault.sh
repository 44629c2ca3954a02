#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Fault injection: allocation failures in the constructor and I/O errors
# from a child come back as errors, leave nothing behind and never oops.
# Needs CONFIG_FAILSLAB / CONFIG_FAIL_MAKE_REQUEST (the debug kernel); the
# Debian kernels skip these.

FI=/sys/kernel/debug

# fi_set DIR KEY=VALUE...
fi_set() {
	local d=$1 kv
	shift
	for kv in "$@"; do
		echo "${kv#*=}" >"$FI/$d/${kv%%=*}"
	done
}

# load_failing_nth N TABLE: load TABLE into f1 with the Nth fault-injection
# site of the loading dmsetup failing.  dmsetup is started first and reads
# the table from a fifo, so the failure lands in the ioctl, not in exec:
# failing exec's own allocations over 9p can poison the page cache.
load_failing_nth() {
	local fifo=$SCRATCH/table.fifo pid i w
	rm -f "$fifo"
	mkfifo "$fifo"
	dmsetup load f1 <"$fifo" >/dev/null 2>&1 &
	pid=$!
	exec 7>"$fifo"
	# Wait until dmsetup sleeps in read(2) on the fifo.  Built-ins only
	# (read, and a read of fd 9 that times out as a sleep): on the debug
	# kernel every process started costs a good part of a second.
	for ((i = 0; i < 100; i++)); do
		w=
		read -r w </proc/$pid/wchan 2>/dev/null || true
		[ "$w" = pipe_read ] && break
		read -rt 0.05 -u 9 _ || true
	done
	echo "$1" >/proc/$pid/fail-nth
	echo "$2" >&7
	exec 7>&-
	wait $pid
}

# fs_nodes: the names under configfs' nodes/, on one line (no process).
fs_nodes() {
	local a=("$CFS"/nodes/*)
	[ -e "${a[0]}" ] || a=()
	echo "${a[*]##*/}"
}

test_failslab_in_constructor_fails_cleanly() {
	local l k n ok=0 refused=0 ours=0 after=0 sectors t log base reasons=""
	local re_ours='bgraph-raw: (Cannot|Node|Child)|device-mapper: bgraph'
	local re_reason='bgraph-raw: [^('$'\n'']*'	# to "(" or the line's end
	[ -d $FI/failslab ] && [ -e /proc/self/fail-nth ] || skip "kernel has no failslab/fail-nth"
	l=$(mkloop a 8)
	k=$(mkloop k 8)
	sectors=$(($(blockdev --getsize64 "$l") / 512))
	t="0 $sectors bgraph-raw $l"
	# A live table of the same shape keeps dm's bio slab alive, so that a
	# failure after our constructor does not create a slab (whose failure
	# dumps a stack on purpose).
	dmsetup create keep --table "0 $sectors bgraph-raw $k"
	dmsetup create f1 --notable
	base=$(fs_nodes)
	rm -f "$SCRATCH/tick.fifo"
	mkfifo "$SCRATCH/tick.fifo"
	exec 9<>"$SCRATCH/tick.fifo"	# never written: load_failing_nth's sleep
	# No random failures: fail-nth alone picks the one that fails.
	fi_set failslab verbose=0 probability=0 ignore-gfp-wait=N cache-filter=N
	# Fail the 1st, 4th, 7th ... fault site of the table load (each load
	# costs two seconds under TCG and KASAN): dm's own first, which come
	# before our constructor, then our constructor's; stop 4 loads after
	# the last one that failed in our constructor.
	n=-2
	while [ $n -lt 200 ]; do
		n=$((n + 3))
		mark_log
		if load_failing_nth "$n" "$t"; then
			ok=$((ok + 1))
			[ -n "${BGRAPH_FAULT_DEBUG:-}" ] && diag "n=$n loaded"
			dmsetup clear f1
			log=""
		else
			refused=$((refused + 1))
			log=$(log_since_mark)
			[ -n "${BGRAPH_FAULT_DEBUG:-}" ] && diag "n=$n refused: $(tr '\n' '|' <<<"$log")"
		fi
		# Our constructor's reasons (dm's own, like "couldn't split
		# parameters", name the target too).
		if [[ $log =~ $re_ours ]]; then
			ours=$((ours + 1)) after=0
			[[ $log =~ $re_reason ]] && reasons+="${BASH_REMATCH[0]};"
		elif [ $ours -gt 0 ]; then
			after=$((after + 1))
			[ $after -lt 4 ] || break
		fi
		# Nothing of a refused or cleared table may stay behind.
		[ "$(fs_nodes)" = "$base" ] ||
			fail "n=$n: nodes now $(fs_nodes), were $base"
		[ "$(dmsetup table f1)" = "" ] || fail "n=$n: table left"
	done
	fi_set failslab ignore-gfp-wait=Y
	exec 9<&-
	diag "fail-nth sweep over $n sites: $refused loads refused ($ours in our constructor), $ok loaded"
	diag "reasons: $(tr ';' '\n' <<<"$reasons" | sort -u | tr '\n' ';')"
	[ "$(tr ';' '\n' <<<"$reasons" | sort -u | grep -c .)" -ge 3 ] ||
		fail "fewer than 3 distinct failures landed in the constructor"
	# The node works afterwards.
	dmsetup load f1 --table "$t"
	dmsetup resume f1
	expect_match "$(cat $CFS/graph)" "^f1 file $(devname "$l")$" "graph after the sweep"
}

test_child_io_errors_reach_the_top() {
	local l ref
	[ -d $FI/fail_make_request ] || skip "kernel has no fail_make_request"
	l=$(mkloop a 16)
	ref=$(mkref io 4)
	dmsetup create r1 --table "0 32768 bgraph-raw $l"
	dmsetup create r2 --table "0 32768 bgraph-raw /dev/mapper/r1"
	dd if="$ref" of=/dev/mapper/r2 bs=1M oflag=direct status=none
	# Only bios to devices with make-it-fail set are failed.
	fi_set fail_make_request verbose=0 interval=1 times=-1 space=0 probability=100
	echo 1 >/sys/block/"$(devname "$l")"/make-it-fail
	if dd if=/dev/mapper/r2 of=/dev/null bs=4k count=1 iflag=direct status=none 2>/dev/null; then
		echo 0 >/sys/block/"$(devname "$l")"/make-it-fail
		fail "read succeeded with the child failing every bio"
	fi
	if dd if=/dev/zero of=/dev/mapper/r2 bs=4k count=1 oflag=direct status=none 2>/dev/null; then
		echo 0 >/sys/block/"$(devname "$l")"/make-it-fail
		fail "write succeeded with the child failing every bio"
	fi
	echo 0 >/sys/block/"$(devname "$l")"/make-it-fail
	fi_set fail_make_request probability=0
	cmp "$ref" <(dd if=/dev/mapper/r2 bs=1M count=4 iflag=direct status=none) ||
		fail "data changed by the failed write"
}
