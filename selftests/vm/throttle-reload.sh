#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# A bgraph-throttle node reloaded into another throttle group under I/O.

# shellcheck source=lib-throttle.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-throttle.sh"

# A reload into another group: I/O goes on, now under the new limit.
test_reload_moves_a_node_to_another_group_under_io() {
	local dev s r
	th_cleanup
	dev=$(th_devs 1)
	mkdir "$TG/slow" "$TG/fast"
	tg_set slow iops-total 50
	tg_set fast iops-total 300
	th_node t1 "$dev" slow
	# fio runs until stopped: on a slow host the window sampled after the
	# reload must not outlast a fixed runtime.
	fio_start "$SCRATCH/fio-move.json" --name=m --filename=/dev/mapper/t1 \
		--direct=1 --ioengine=libaio --iodepth=8 --rw=randrw --bs=4k \
		--verify=crc32c --verify_backlog=64 --size=16M
	sleep 2
	dmsetup reload t1 --table "0 $(blockdev --getsz "$dev") bgraph-throttle $dev fast"
	expect_match "$(cat "$TG/fast/members")" "^t1 inactive$" "inactive member"
	dmsetup resume t1
	expect_eq "$(cat "$TG/fast/members")" "t1" "members of fast"
	expect_eq "$(cat "$TG/slow/members")" "" "members of slow"
	s=$(sample_ios fast both 7.5 - - -)
	fio_stop "$SCRATCH/fio-move.json" "fio across the reload"
	diag "$(tr '\n' ' ' <<<"$s")"
	# Reads and writes together, under the new group's limit.  The
	# debug kernel may not reach it (two VMs share the host): there, the
	# rate must only be well above the old group's and not above the new.
	r=$(rate_between "$s" 0.5 7.5)
	if [ "$FIO_MB" -ge 32 ]; then
		within "$r" 300 10 "IOPS in the new group"
	else
		diag "IOPS in the new group: $r (old limit 50, new 300)"
		python3 -c "import sys; sys.exit(not 75 < float(sys.argv[1]) <= 330)" "$r" ||
			fail "IOPS in the new group: $r, not between 1.5 x the old limit and the new"
	fi
	expect_eq "$(cat "$TG/fast/members")" "t1" "members of fast"
	th_cleanup
}
