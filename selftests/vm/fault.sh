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

test_failslab_in_constructor_fails_cleanly() {
	local l space ok=0 refused=0 sectors
	[ -d $FI/failslab ] || skip "kernel has no failslab"
	l=$(mkloop a 8)
	sectors=$(($(blockdev --getsize64 "$l") / 512))
	# task-filter first: until it is set, probability applies to everyone.
	fi_set failslab task-filter=Y verbose=0 interval=1 times=-1 \
		ignore-gfp-wait=N cache-filter=N space=0 probability=100
	# Give the dmsetup process an allocation budget of $space bytes, then
	# fail every allocation: a sweep walks the failure through ctr.
	for space in $(seq 0 256 24576); do
		fi_set failslab space=$space
		if (echo 1 >/proc/self/make-it-fail &&
		    exec dmsetup create f1 --table "0 $sectors bgraph-raw $l") \
			>/dev/null 2>&1; then
			ok=$((ok + 1))
		else
			refused=$((refused + 1))
		fi
		dmsetup remove f1 >/dev/null 2>&1 || true
		[ -z "$(ls $CFS/nodes)" ] || { fi_set failslab probability=0; fail "space=$space: nodes left: $(ls $CFS/nodes)"; }
	done
	fi_set failslab probability=0 task-filter=N
	diag "failslab sweep: $refused creates refused, $ok succeeded"
	[ $refused -gt 0 ] || fail "no allocation was ever failed"
	[ $ok -gt 0 ] || fail "the budget never sufficed"
	# The node still works afterwards.
	dmsetup create f1 --table "0 $sectors bgraph-raw $l"
	expect_eq "$(cat $CFS/graph)" "f1 file $(devname "$l")" "graph after the sweep"
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
