#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The in-VM selftest suite: load dm-bgraph.ko, run every test_* function
# of the given files (default: module.sh, then every other *.sh here but
# run.sh and the helpers lib*.sh), print KTAP, unload.  Run by selftests/run through tools/vm-run, or by hand:
#   tools/vm-run -k 6.12 selftests/vm/run.sh [--only REGEX] [selftests/vm/raw.sh ...]
# --only runs just the tests whose names match REGEX.  --not-debug-set
# skips the tests named in debug.tests: make check gives it to Debian's
# 6.12 when the debug kernel, built from the same 6.12 source, runs them.
# --all (make check-all) runs every test whatever the kernel: the debug
# kernel not only those of debug.tests, 6.1 also those tagged
# on_6_12_only (the tiers: selftests/run).  Prints each file's wall time.

args=()
ONLY=.
NOT_DEBUG_SET=
while [ $# -gt 0 ]; do
	case $1 in
	--only) ONLY=$2; shift 2 ;;
	--not-debug-set) NOT_DEBUG_SET=1; shift ;;
	--all) export BGRAPH_ALL=1; shift ;;
	*) break ;;
	esac
done
for f in "$@"; do
	[ -f "$f" ] || { echo "Bail out! no test file $f"; exit 1; }
	args+=("$(readlink -f "$f")")
done
cd "$(dirname "$0")" || exit 1
set -- "${args[@]}"
# shellcheck source=lib.sh
source ./lib.sh

if [ $# -eq 0 ]; then
	set -- module.sh $(ls ./*.sh | grep -v -e '/lib[^/]*\.sh$' -e '/run.sh$' -e '/module.sh$')
fi

# One shell runs every file: a helper defined in two files would be the
# last one's in both.
dups=$(for f in "$@" lib*.sh; do
	sed -n -E "s|^([A-Za-z_][A-Za-z0-9_]*)\(\) *\{.*|\1 ${f##*/}|p" "$f"
done | sort -u | awk '{n[$1]++; w[$1] = w[$1] " " $2} END {for (k in n) if (n[k] > 1) print k ":" w[k]}')
[ -z "$dups" ] || { echo "Bail out! functions defined in two files: $dups"; exit 1; }

echo "# kernel $(uname -r)"
bg_load || { echo "Bail out! cannot load $KO"; exit 1; }
run_tests "$@"
rc=$?
bg_unload
exit $rc
