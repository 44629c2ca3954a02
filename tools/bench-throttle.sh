#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The throttle part of `make bench`, sourced by tools/bench.sh (it uses its
# compare, fio_run, row, median and $tmp, $runtime, $reps):
#   an unlimited bgraph-throttle node vs dm-linear over the same brd
#     device, 4k random read iodepth 16 (goal >= 0.98);
#   accuracy: the rate achieved under a limit, bgraph-throttle vs the
#     kernel's cgroup v2 io.max on the same device with the same limit,
#     THROTTLE_SECONDS (default 10) each: the closer to the limit the better;
#   a group of three nodes over three devices sharing one limit, which
#     io.max cannot express: the sum and each member's share.

tsecs=${THROTTLE_SECONDS:-10}
tg=/sys/kernel/config/bgraph/throttle-groups

modprobe brd rd_nr=3 rd_size=$((size_mb * 1024))
for i in 0 1 2; do
	head -c $((size_mb << 20)) /dev/urandom |
		dd of=/dev/ram$i bs=1M iflag=fullblock oflag=direct status=none
done
mkdir "$tg/bench"
dmsetup create bench-tlin --table "0 $sectors linear /dev/ram0 0"
dmsetup create bench-thr --table "0 $sectors bgraph-throttle /dev/ram0 bench"

echo "# throttle: ${runtime}s x $reps reps per device, ABBA order"
row workload device IOPS MiB/s ratio
compare "randread 4k 16" /dev/mapper/bench-tlin dm-linear /dev/mapper/bench-thr throttle-nolimit
echo "# goal: throttle-nolimit / dm-linear >= 0.98"

# rate DEV RW BS [CGROUP] -> "iops bytes_per_s" of reads over tsecs.
rate() {
	local cmd="fio --name=t --filename=$1 --rw=$2 --bs=$3 --iodepth=8 \
--ioengine=libaio --direct=1 --time_based --runtime=$tsecs --readonly \
--ramp_time=${ramp:-0} --output-format=json"
	if [ -n "${4:-}" ]; then
		sh -c "echo \$\$ > $4/cgroup.procs && exec $cmd" 2>/dev/null
	else
		$cmd 2>/dev/null
	fi | python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]["read"]; print(j["iops"], j["bw_bytes"])'
}

# err ACHIEVED LIMIT -> signed error in percent.
err() { python3 -c "print(f'{($1 - $2) * 100 / $2:+.2f}%')"; }

cg=/sys/fs/cgroup
mountpoint -q $cg || mount -t cgroup2 none $cg
iomax=""
if echo +io >$cg/cgroup.subtree_control 2>/dev/null && mkdir -p $cg/bench &&
   [ -e $cg/bench/io.max ]; then
	iomax=$cg/bench
fi
dev=$(printf '%d:%d' "0x$(stat -c %t /dev/ram0)" "0x$(stat -c %T /dev/ram0)")

# Twice: from the start, and in the steady state (fio ramp_time 2 s, not
# counted).  QEMU's bucket lets a tenth of a second's worth pass at once
# (docs/throttle.txt), which shows in the first and not in the second.
# THROTTLE_REPS runs (default 3) of each, alternating ours and io.max;
# the mean of the absolute errors decides which is the more accurate.
treps=${THROTTLE_REPS:-3}
echo "# accuracy under a limit, ${tsecs}s each, fio iodepth 8, $treps runs each (error = achieved vs limit)"
printf '%-28s %-18s %-6s %12s %9s\n' limit mechanism ramp achieved error
: >"$tmp/acc"
for ramp in 0 2; do
for l in "iops-read 500 riops randread 4k" "bps-read 8388608 rbps read 64k"; do
	read -r attr val key rw bs <<<"$l"
	for ((i = 0; i < treps; i++)); do
		echo "$val" >"$tg/bench/$attr"
		read -r iops bw < <(rate /dev/mapper/bench-thr "$rw" "$bs")
		[ "$key" = riops ] && got=$iops || got=$bw
		printf '%-28s %-18s %-6s %12.0f %9s\n' "$attr=$val ($rw $bs)" bgraph-throttle "${ramp}s" "$got" "$(err "$got" "$val")"
		echo "ours $ramp $attr $got $val" >>"$tmp/acc"
		echo 0 >"$tg/bench/$attr"
		[ -n "$iomax" ] || continue
		echo "$dev $key=$val" >"$iomax/io.max"
		read -r iops bw < <(rate /dev/ram0 "$rw" "$bs" "$iomax")
		[ "$key" = riops ] && got=$iops || got=$bw
		printf '%-28s %-18s %-6s %12.0f %9s\n' "$key=$val ($rw $bs)" "cgroup io.max" "${ramp}s" "$got" "$(err "$got" "$val")"
		echo "io.max $ramp $attr $got $val" >>"$tmp/acc"
		echo "$dev $key=max" >"$iomax/io.max"
	done
done
done
[ -n "$iomax" ] || echo "# cgroup v2 io.max is not available on this kernel"
python3 - "$tmp/acc" <<"PY"
import collections, sys
errs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    who, ramp, attr, got, val = line.split()
    errs[(ramp, attr, who)].append((float(got) - float(val)) * 100 / float(val))
for (ramp, attr, who), e in sorted(errs.items()):
    print("# accuracy %-9s ramp %ss %-7s mean error %+.2f%%, mean |error| %.2f%%, worst %+.2f%%"
          % (attr, ramp, who, sum(e) / len(e), sum(map(abs, e)) / len(e), max(e, key=abs)))
PY

# Three nodes over three devices, one group of 600 IOPS.
dmsetup remove bench-thr
mkdir "$tg/shared"
echo 600 >"$tg/shared/iops-total"
for i in 0 1 2; do
	dmsetup create "bench-g$i" --table "0 $sectors bgraph-throttle /dev/ram$i shared"
done
fio --output-format=json --direct=1 --ioengine=libaio --iodepth=8 --rw=randread \
	--bs=4k --time_based --runtime="$tsecs" --readonly \
	--name=a --filename=/dev/mapper/bench-g0 --name=b --filename=/dev/mapper/bench-g1 \
	--name=c --filename=/dev/mapper/bench-g2 2>/dev/null >"$tmp/group.json"
python3 - "$tmp/group.json" <<"PY"
import json, sys
jobs = json.load(open(sys.argv[1]))["jobs"]
iops = [j["read"]["iops"] for j in jobs]
total = sum(iops)
print("# group of 3 nodes over 3 devices, iops-total=600: sum %.0f (%+.2f%%), members %s"
      % (total, (total - 600) * 100 / 600,
         " ".join("%.0f (%+.1f%% of a third)" % (i, (i - 200) * 100 / 200) for i in iops)))
PY
dmsetup remove bench-g0 bench-g1 bench-g2 bench-tlin
rmdir "$tg/shared" "$tg/bench"
[ -n "$iomax" ] && rmdir "$iomax"
rmmod brd
