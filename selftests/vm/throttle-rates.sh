#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# bgraph-throttle's rates: fio on brd, the rate achieved against the limit
# set (IOPS and bytes, totals and per direction, bursts, a group shared,
# a limit changed).  Rates do not differ between kernels: 6.12 only
# (th_rates_here).

# shellcheck source=lib-throttle.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-throttle.sh"

# fio_rate DEV RW BS SECONDS [ARGS...]: run fio time-based on DEV; prints
# "<read iops> <read bytes/s> <write iops> <write bytes/s>".
fio_rate() {
	local dev=$1 rw=$2 bs=$3 secs=$4 out
	shift 4
	out=$(fio --output-format=json --name=rate --filename="$dev" \
		--direct=1 --ioengine=libaio --iodepth=8 --rw="$rw" --bs="$bs" \
		--time_based --runtime="$secs" "$@" 2>/dev/null) ||
		{ fail "fio failed on $dev"; return 1; }
	python3 -c '
import json, sys
t = sys.argv[1]
j = json.loads(t[t.index("{"):])
job = j["jobs"][0]
assert not job["error"], job["error"]
r, w = job["read"], job["write"]
print("%.1f %.1f %.1f %.1f" % (r["iops"], r["bw_bytes"], w["iops"], w["bw_bytes"]))
' "$out"
}

# ---------------------------------------------------------------------

# th_rates_here: skip a test that only measures a rate on the debug kernel
# and on 6.1 (on_6_12_only).
# A rate is the same measurement on every kernel and takes its full window
# of time whatever the kernel; the debug kernel's KASAN and lockdep look at
# the same code paths in the functional tests (reload, suspend, removal,
# order, NOWAIT, fio verify), which still run there.
th_rates_here() {
	[ "$FIO_MB" -ge 32 ] || skip "rate measurement: run on the Debian kernels"
	on_6_12_only "rate measurement"
}

test_iops_total_rate_is_within_5_percent() {
	local dev r
	th_rates_here
	th_cleanup
	dev=$(th_devs 1)
	mkdir "$TG/g1"
	tg_set g1 iops-total 300
	th_node t1 "$dev" g1
	r=$(fio_rate /dev/mapper/t1 randread 4k 10)
	within "$(awk '{print $1}' <<<"$r")" 300 5 "read IOPS"
	expect_match "$(node_stat t1 read delayed_ios)" '^[1-9][0-9]*$' "delayed reads"
	th_cleanup
}

test_bps_total_counts_reads_and_writes_together() {
	local dev r
	th_rates_here
	th_cleanup
	dev=$(th_devs 1)
	mkdir "$TG/g1"
	tg_set g1 bps-total $((4 * 1048576))
	th_node t1 "$dev" g1
	r=$(fio_rate /dev/mapper/t1 randrw 64k 10)
	within "$(awk '{print $2 + $4}' <<<"$r")" $((4 * 1048576)) 5 "read+write bytes/s"
	th_cleanup
}

test_read_and_write_limits_hold_separately() {
	local dev out rd wr
	th_rates_here
	th_cleanup
	dev=$(th_devs 1)
	mkdir "$TG/g1"
	tg_set g1 bps-read $((2 * 1048576))
	tg_set g1 iops-write 200
	th_node t1 "$dev" g1
	out=$(fio --output-format=json --direct=1 --ioengine=libaio --iodepth=8 \
		--time_based --runtime=10 --filename=/dev/mapper/t1 \
		--name=r --rw=randread --bs=64k --name=w --rw=randwrite --bs=4k 2>/dev/null)
	rd=$(python3 -c 'import json,sys; t=sys.argv[1]; j=json.loads(t[t.index("{"):]); print(j["jobs"][0]["read"]["bw_bytes"])' "$out")
	wr=$(python3 -c 'import json,sys; t=sys.argv[1]; j=json.loads(t[t.index("{"):]); print(j["jobs"][1]["write"]["iops"])' "$out")
	within "$rd" $((2 * 1048576)) 5 "read bytes/s"
	within "$wr" 200 5 "write IOPS"
	th_cleanup
}

# A burst of 400 IOPS for 3 s over an average of 100: the bucket of 1200
# fills at 300/s, so about 4 s at 400, then 100 (docs/throttle.txt).
test_burst_runs_at_max_then_settles_at_the_average() {
	local dev s early late
	th_rates_here
	th_cleanup
	dev=$(th_devs 1)
	mkdir "$TG/g1"
	tg_set g1 iops-total 100
	tg_set g1 iops-total-max 400
	tg_set g1 iops-total-max-length 3
	th_node t1 "$dev" g1
	s=$(sample_ios g1 read 10 - - - fio --output-format=json --name=b \
		--filename=/dev/mapper/t1 --direct=1 --ioengine=libaio \
		--iodepth=8 --rw=randread --bs=4k --time_based --runtime=300)
	diag "$(tr '\n' ' ' <<<"$s")"
	early=$(rate_between "$s" 0.5 3)
	late=$(rate_between "$s" 5.5 10)
	within "$early" 400 15 "IOPS during the burst"
	within "$late" 100 10 "IOPS after the burst"
	th_cleanup
}

# Three nodes over three devices share one group's 300 IOPS.
test_group_of_three_shares_its_limit_fairly() {
	local devs out i sum
	th_rates_here
	th_cleanup
	mapfile -t devs < <(th_devs 3)
	mkdir "$TG/g3"
	tg_set g3 iops-total 300
	for i in 0 1 2; do
		th_node "t$i" "${devs[$i]}" g3
	done
	expect_eq "$(sort "$TG/g3/members" | tr '\n' ' ')" "t0 t1 t2 " "members"
	out=$(fio --output-format=json --direct=1 --ioengine=libaio \
		--iodepth=8 --rw=randread --bs=4k --time_based --runtime=10 \
		--name=a --filename=/dev/mapper/t0 --name=b --filename=/dev/mapper/t1 \
		--name=c --filename=/dev/mapper/t2 2>/dev/null)
	mapfile -t ios < <(python3 -c 'import json,sys; t=sys.argv[1]; j=json.loads(t[t.index("{"):])
for job in j["jobs"]: print("%.1f" % job["read"]["iops"])' "$out")
	sum=$(python3 -c "print(sum(map(float, '${ios[*]}'.split())))")
	within "$sum" 300 5 "group IOPS"
	for i in 0 1 2; do
		within "${ios[$i]}" 100 15 "member t$i IOPS"
	done
	th_cleanup
}

test_a_limit_change_takes_effect_within_a_second() {
	local dev s before after
	th_rates_here
	th_cleanup
	dev=$(th_devs 1)
	mkdir "$TG/g1"
	tg_set g1 iops-read 100
	th_node t1 "$dev" g1
	s=$(sample_ios g1 read 10 4 "$TG/g1/iops-read" 400 fio \
		--output-format=json --name=c --filename=/dev/mapper/t1 \
		--direct=1 --ioengine=libaio --iodepth=16 --rw=randread --bs=4k \
		--time_based --runtime=300)
	diag "$(tr '\n' ' ' <<<"$s")"
	before=$(rate_between "$s" 0.5 4)
	after=$(rate_between "$s" 5 10)
	within "$before" 100 10 "IOPS before the change"
	within "$after" 400 10 "IOPS from 1 s after the change"
	th_cleanup
}
