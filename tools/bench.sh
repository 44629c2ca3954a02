#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# `make bench`: fio inside the VM against a bgraph stack and a peer on the
# same backing device in the same run, printed as ratios.  Absolute numbers
# under TCG mean nothing; the ratio is the result.  Not a test: it asserts
# nothing and never fails on a number.
#
#   bgraph-raw vs dm-linear, both directly over brd (/dev/ram0):
#     4k random read, iodepth 16;  1M sequential read, iodepth 4
#
# BENCH_RUNTIME (s, default 5) and BENCH_REPS (default 5) per measurement;
# devices are measured alternately, the order flipping every rep (ABBA),
# and the median of the reps is kept.
set -euo pipefail
export DM_DISABLE_UDEV=1
src=${BGRAPH_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
runtime=${BENCH_RUNTIME:-5}
reps=${BENCH_REPS:-5}
size_mb=512

modprobe -a dm_mod configfs
modprobe brd rd_nr=1 rd_size=$((size_mb * 1024))
mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config
insmod "$src/build/$(uname -r)/dm-bgraph.ko"
sectors=$((size_mb * 2048))
# Fill brd so reads hit real pages, not the zero page.
dd if=/dev/urandom of=/dev/ram0 bs=1M count=$size_mb status=none
dmsetup create bench-linear --table "0 $sectors linear /dev/ram0 0"
dmsetup create bench-raw --table "0 $sectors bgraph-raw /dev/ram0"

# fio_run DEV RW BS DEPTH -> "iops bw_KiB"
fio_run() {
	fio --name=b --filename="$1" --rw="$2" --bs="$3" --iodepth="$4" \
		--ioengine=libaio --direct=1 --time_based --runtime="$runtime" \
		--ramp_time=1 --numjobs=1 --output-format=json 2>/dev/null |
		python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]["read"]; print(int(j["iops"]), int(j["bw"]))'
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "# kernel $(uname -r), $(nproc) vCPUs, ${runtime}s x $reps reps per device, ABBA order, medians"
printf '%-22s %-14s %12s %12s %8s\n' workload device IOPS MiB/s ratio
for w in "randread 4k 16" "read 1M 4"; do
	set -- $w
	: >/tmp/raw.txt
	: >/tmp/lin.txt
	for rep in $(seq "$reps"); do
		if [ $((rep % 2)) -eq 1 ]; then
			fio_run /dev/mapper/bench-linear "$1" "$2" "$3" >>/tmp/lin.txt
			fio_run /dev/mapper/bench-raw "$1" "$2" "$3" >>/tmp/raw.txt
		else
			fio_run /dev/mapper/bench-raw "$1" "$2" "$3" >>/tmp/raw.txt
			fio_run /dev/mapper/bench-linear "$1" "$2" "$3" >>/tmp/lin.txt
		fi
	done
	li=$(cut -d' ' -f1 /tmp/lin.txt | median)
	lb=$(cut -d' ' -f2 /tmp/lin.txt | median)
	ri=$(cut -d' ' -f1 /tmp/raw.txt | median)
	rb=$(cut -d' ' -f2 /tmp/raw.txt | median)
	label="$1 $2 qd$3"
	printf '%-22s %-14s %12s %12s %8s\n' "$label" dm-linear "$li" "$((lb / 1024))" ""
	printf '%-22s %-14s %12s %12s %8s\n' "$label" bgraph-raw "$ri" "$((rb / 1024))" \
		"$(python3 -c "print(f'{$ri/$li:.3f}')")"
done

dmsetup remove bench-raw bench-linear
rmmod dm_bgraph
rmmod brd
