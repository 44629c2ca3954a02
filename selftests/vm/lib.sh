#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Helpers for the in-VM selftests: module handling, scratch devices,
# assertions, and a KTAP runner.  Sourced by run.sh and the test files.

BGRAPH_SRC=${BGRAPH_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
SCRATCH=${BGRAPH_SCRATCH:-/tmp}
CFS=/sys/kernel/config/bgraph
KO=${BGRAPH_KO:-$BGRAPH_SRC/build/$(uname -r)/dm-bgraph.ko}
export DM_DISABLE_UDEV=1

# I/O volume of the fio tests, in MiB per job: a quarter on the debug
# kernel, where KASAN and lockdep under TCG make each I/O far slower.
FIO_MB=32
BG_DEBUG=0
case $(uname -r) in *-bgraph-debug) FIO_MB=8 BG_DEBUG=1 ;; esac

# make check-all (run.sh --all): every test on every kernel, no tiers.
BG_ALL=${BGRAPH_ALL:-0}

# on_6_12_only WHAT: skip on Debian's 6.1 a test that measures (rates over
# their full windows) or checks in user space (crash replays) what does
# not differ between kernels; 6.12 runs it, and 6.1 every other test.
# The tag of make check's 6.1 tier (see selftests/run); keeps its time
# down.  make check-all runs these on 6.1 too.
on_6_12_only() {
	[ "$BG_ALL" = 0 ] || return 0
	case $(uname -r) in
	6.1.*) skip "$*: run on 6.12" ;;
	esac
}

# ---- diagnostics and assertions -------------------------------------

# diag TEXT: TEXT as KTAP diagnostics.  Bash built-ins only, here and in
# the runner: on the debug kernel every process started costs a good
# part of a second.
diag() {
	local l
	while IFS= read -r l; do
		printf '# %s\n' "$l"
	done <<<"$*"
}

fail() {
	diag "FAIL: $*"
	return 1
}

# skip WHY: end the current test as skipped.
skip() {
	echo "$*"
	exit 4
}

# expect_eq ACTUAL EXPECTED WHAT
expect_eq() {
	[ "$1" = "$2" ] || fail "$3: got '$1', want '$2'"
}

# expect_match TEXT REGEX WHAT
expect_match() {
	grep -Eq -- "$2" <<<"$1" || { diag "in: $1"; fail "$3: no match for /$2/"; }
}

expect_no_match() {
	! grep -Eq -- "$2" <<<"$1" || { diag "in: $1"; fail "$3: unexpected /$2/"; }
}

# expect_fail CMD...: CMD must exit non-zero.
expect_fail() {
	if "$@" >/dev/null 2>&1; then
		fail "succeeded but should fail: $*"
	fi
}

# The kernel log since the last mark_log.
mark_log() { LOG_MARK=$(dmesg | wc -l); }
log_since_mark() { dmesg | tail -n +"$((LOG_MARK + 1))"; }

# ---- the module -----------------------------------------------------

bg_load() {
	# Modules on Debian kernels; built in on the debug kernel.
	[ -d /lib/modules/"$(uname -r)" ] && modprobe -a dm_mod configfs loop
	mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config
	lsmod | grep -q '^dm_bgraph ' || insmod "$KO"
}

bg_unload() {
	lsmod | grep -q '^dm_bgraph ' && rmmod dm_bgraph
	return 0
}

# ---- scratch devices ------------------------------------------------

# mkloop NAME SIZE_MB: a loop device over a fresh file; prints /dev/loopN.
mkloop() {
	local f=$SCRATCH/$1.img
	rm -f "$f"
	truncate -s "$2M" "$f"
	losetup -f --show "$f"
}

# mkref NAME MB: a file of MB random MiB; prints its path.
mkref() {
	local f=$SCRATCH/$1.ref
	head -c "$(($2 * 1048576))" /dev/urandom >"$f"
	echo "$f"
}

# devname DEV: the kernel name (loop0, dm-3) of a block device node.
devname() {
	basename "$(readlink -f "/sys/dev/block/$(printf '%d:%d' \
		"0x$(stat -L -c %t "$1")" "0x$(stat -L -c %T "$1")")")"
}

# dm_devt NAME: the major:minor of dm device NAME.
dm_devt() {
	dmsetup info -c --noheadings -o major,minor "$1" | tr -d ' '
}

# bg_repoint NODE ROLE DEV: re-point NODE's edge ROLE to DEV (a path or
# major:minor) with the node's "repoint" message (bg_edge_repoint()).
bg_repoint() {
	dmsetup message "$1" 0 repoint "$2" "$3"
}

# fio_ok ARGS...: run fio with JSON output; fail unless every job ran
# without error.
fio_ok() {
	local out
	out=$(fio --output-format=json "$@" 2>/dev/null) || { diag "$out"; fail "fio exited non-zero"; return 1; }
	python3 - "$out" <<-"PY" || fail "fio reported errors"
	import json, sys
	text = sys.argv[1]
	j = json.loads(text[text.index("{"):])
	errs = [(job["jobname"], job["error"]) for job in j["jobs"] if job["error"]]
	ios = sum(job["write"]["total_ios"] + job["read"]["total_ios"] for job in j["jobs"])
	print("# fio: %d jobs, %d I/Os, errors: %s" % (len(j["jobs"]), ios, errs or "none"))
	sys.exit(1 if errs or ios == 0 else 0)
	PY
}

# fio_start OUT FIO-ARGS...: fio in the background, its JSON to OUT,
# time-based until fio_stop stops it (capped at 300 s); sets FIO_PID to
# its pid.  A workload the test measures or acts under runs until the test
# is done with it: a fixed runtime runs out early on a slow or busy host.
fio_start() {
	local out=$1
	shift
	fio --output-format=json --time_based --runtime=300 "$@" >"$out" 2>&1 &
	FIO_PID=$!
	# A test that fails before fio_stop leaves no fio holding its
	# devices (the test runs in a subshell: this trap is its own; it
	# keeps the test's exit status).
	trap '{ kill -INT "$FIO_PID" && wait "$FIO_PID"; } 2>/dev/null || true' EXIT
}

# fio_stop OUT WHAT: stop the fio of fio_start (SIGINT); fail if it
# had ended before (an error, or the cap) or if a job reported an error
# or did no I/O.
fio_stop() {
	if ! kill -0 "$FIO_PID" 2>/dev/null; then
		wait "$FIO_PID" || true
		diag "$(cat "$1")"
		fail "$2: fio ended before the test stopped it"
		return 1
	fi
	kill -INT "$FIO_PID"
	wait "$FIO_PID" || true
	trap - EXIT
	python3 - "$1" <<-"PY" || { diag "$(cat "$1")"; fail "$2: fio reported errors"; }
	import json, sys
	text = open(sys.argv[1]).read()
	j = json.loads(text[text.index("{"):])
	errs = [(job["jobname"], job["error"]) for job in j["jobs"] if job["error"]]
	ios = sum(job["write"]["total_ios"] + job["read"]["total_ios"] for job in j["jobs"])
	print("# fio: %d jobs, %d I/Os, errors: %s" % (len(j["jobs"]), ios, errs or "none"))
	sys.exit(1 if errs or ios == 0 else 0)
	PY
}

# Remove every dm device and loop device the tests made.
# dm_any: is there a dm device (a node in /dev/mapper, or a disk: one
# without a table yet has no disk)?
dm_any() {
	local a
	for a in /dev/mapper/* /sys/block/dm-*; do
		[ -e "$a" ] && [ "$a" != /dev/mapper/control ] && return 0
	done
	return 1
}

cleanup_devices() {
	local d
	# Graph changes a test left (configfs changes/): their blockers.
	for d in "$CFS"/changes/*/; do
		[ ! -d "$d" ] || rmdir "$d"
	done
	if dm_any; then
		# One ioctl for all of them, in an order that works for stacks.
		dmsetup remove_all >/dev/null 2>&1 || true
		for _ in 1 2 3 4 5; do
			dm_any || break
			for d in $(dmsetup ls 2>/dev/null | awk '$1 != "No" {print $1}'); do
				dmsetup remove "$d" >/dev/null 2>&1 || true
			done
		done
	fi
	if compgen -G '/sys/block/loop*/loop/backing_file' >/dev/null; then
		losetup -D 2>/dev/null || true
	fi
	if compgen -G "$SCRATCH/*.img" >/dev/null || compgen -G "$SCRATCH/*.ref" >/dev/null; then
		rm -f "$SCRATCH"/*.img "$SCRATCH"/*.ref
	fi
}

# ---- the KTAP runner ------------------------------------------------

# run_tests FILE...: run every function named test_* in FILEs, each in a
# subshell with errexit, with cleanup between; prints KTAP, and the wall
# time of each file's tests as a diagnostic line ("# time of F: N s, T
# tests"; make check's time budget, see selftests/run).
run_tests() {
	local f t n=0 total=0 rc out failed=0 t0 line cur="" ft0=0 fn=0 all0=$SECONDS
	local -a tests=()
	local -A file_of=()
	for f in "$@"; do
		# shellcheck disable=SC1090
		source "$f"
		for t in $(grep -oE '^test_[a-z0-9_]+' "$f" | grep -E "${ONLY:-.}"); do
			tests+=("$t")
			file_of[$t]=${f##*/}
		done
	done
	# The debug kernel runs only the tests named in debug.tests (unless
	# run.sh --all); with run.sh --not-debug-set, they are the ones skipped.
	local -A named=()
	while read -r line; do
		[[ $line == test_* ]] && named[$line]=1
	done <"$BGRAPH_SRC/selftests/vm/debug.tests"
	if [ "$BG_DEBUG" = 1 ] && [ "$BG_ALL" = 0 ] && [ -z "${BGRAPH_DEBUG_ALL:-}" ]; then
		local -a set=()
		for t in "${tests[@]}"; do
			[ -z "${named[$t]:-}" ] || set+=("$t")
		done
		diag "debug kernel: the ${#set[@]} of these ${#tests[@]} tests named in selftests/vm/debug.tests"
		tests=("${set[@]}")
	fi
	total=${#tests[@]}
	echo "TAP version 13"
	echo "1..$total"
	for t in "${tests[@]}"; do
		n=$((n + 1))
		if [ "${file_of[$t]}" != "$cur" ]; then
			[ -z "$cur" ] || diag "time of $cur: $((SECONDS - ft0)) s, $fn tests"
			cur=${file_of[$t]} ft0=$SECONDS fn=0
		fi
		fn=$((fn + 1))
		if [ -n "${NOT_DEBUG_SET:-}" ] && [ -n "${named[$t]:-}" ]; then
			echo "ok $n $t # SKIP run on the debug kernel (the same 6.12 source)"
			continue
		fi
		t0=$SECONDS
		out=$( (set -eE; trap 'diag "line $LINENO: $BASH_COMMAND"' ERR; "$t") 2>&1)
		rc=$?
		if [ $rc -ne 0 ] && [ $rc -ne 4 ]; then
			[ -n "$out" ] && diag "$out"
		else
			while IFS= read -r line; do
				[[ $line != "# "* ]] || printf '%s\n' "$line"
			done <<<"$out"
		fi
		diag "$t: $((SECONDS - t0)) s"
		if [ $rc -eq 0 ]; then
			echo "ok $n $t"
		elif [ $rc -eq 4 ]; then
			echo "ok $n $t # SKIP ${out##*$'\n'}"
		else
			echo "not ok $n $t"
			failed=$((failed + 1))
		fi
		cleanup_devices
	done
	[ -z "$cur" ] || diag "time of $cur: $((SECONDS - ft0)) s, $fn tests"
	diag "time of all files: $((SECONDS - all0)) s, $total tests"
	[ "$failed" -eq 0 ]
}
