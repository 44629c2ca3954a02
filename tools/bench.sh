#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# `make bench`: fio inside the VM against a bgraph node and a peer on the
# same device in the same run, printed as ratios.  Absolute numbers under
# TCG mean nothing; the ratio is the result.  Not a test: it asserts nothing
# and never fails on a number.
#
#   bgraph-raw vs dm-linear, both over brd
#   bgraph-qcow2 (a fully allocated image on brd) vs dm-linear over the
#     same brd device, and vs qemu-nbd --cache=none --aio=native serving
#     the same image through the nbd module
#   a 3-deep qcow2 chain (two empty overlays) vs the flat image
#   a warm L2 cache (covers the image) vs a thrashing one (16 slices)
#
# Workloads: 4k random read iodepth 16 and 1M sequential read iodepth 4.
# BENCH_RUNTIME (s, default 5) and BENCH_REPS (default 5) per measurement;
# the two devices of a pair are measured alternately, the order flipping
# every rep (ABBA), and the median of the reps is kept.
set -euo pipefail
export DM_DISABLE_UDEV=1
src=${BGRAPH_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
runtime=${BENCH_RUNTIME:-5}
reps=${BENCH_REPS:-5}
size_mb=256
work=/scratch/bench
tmp=$(mktemp -d)

modprobe -a dm_mod configfs nbd
modprobe brd rd_nr=5 rd_size=$(((size_mb + 16) * 1024))
mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config
insmod "$src/build/$(uname -r)/dm-bgraph.ko"
mkdir -p "$work"
sectors=$((size_mb * 2048))

# put IMAGE DEV: copy an image file onto a brd device.
put() { dd if="$1" of="$2" bs=1M oflag=direct status=none; }

# status_of NODE: its dmsetup status INFO fields.
status_of() { dmsetup status "$1" | cut -d' ' -f4-; }

# Random data, so reads hit real pages, not the zero page.
head -c $((size_mb << 20)) /dev/urandom >"$work/data.raw"
put "$work/data.raw" /dev/ram0
dmsetup create bench-linear --table "0 $sectors linear /dev/ram0 0"
dmsetup create bench-raw --table "0 $sectors bgraph-raw /dev/ram0"

# A fully allocated qcow2 image (64 KiB clusters) of the same data on ram1,
# two empty overlays over it on ram2 and ram3, and a 4 KiB-cluster copy
# on ram4 for the cache comparison.
qemu-img convert -f raw -O qcow2 -o cluster_size=64k "$work/data.raw" "$work/base.qcow2"
qemu-img create -q -f qcow2 -b "$work/base.qcow2" -F qcow2 "$work/mid.qcow2"
qemu-img create -q -f qcow2 -b "$work/mid.qcow2" -F qcow2 "$work/top.qcow2"
qemu-img convert -f raw -O qcow2 -o cluster_size=4k "$work/data.raw" "$work/small.qcow2"
put "$work/base.qcow2" /dev/ram1
put "$work/mid.qcow2" /dev/ram2
put "$work/top.qcow2" /dev/ram3
put "$work/small.qcow2" /dev/ram4
rm -f "$work/data.raw"

dmsetup create bench-qlinear --table "0 $sectors linear /dev/ram1 0"
dmsetup create --readonly bench-qcow2 --table "0 $sectors bgraph-qcow2 /dev/ram1"
dmsetup create --readonly bench-mid --table "0 $sectors bgraph-qcow2 /dev/ram2 2 backing /dev/mapper/bench-qcow2"
dmsetup create --readonly bench-top --table "0 $sectors bgraph-qcow2 /dev/ram3 2 backing /dev/mapper/bench-mid"
dmsetup create --readonly bench-warm --table "0 $sectors bgraph-qcow2 /dev/ram4"
dmsetup create --readonly bench-cold --table "0 $sectors bgraph-qcow2 /dev/ram4 2 l2_cache_size 64K"
mkdir -p "$(readlink -f /var/lock)"	# qemu-nbd -c keeps its socket there
qemu-nbd -r -f qcow2 --cache=none --aio=native -c /dev/nbd0 /dev/ram1
for _ in $(seq 50); do
	[ "$(blockdev --getsize64 /dev/nbd0 2>/dev/null || echo 0)" -gt 0 ] && break
	sleep 0.2
done

# fio_run DEV RW BS DEPTH -> "iops bw_KiB"
fio_run() {
	fio --name=b --filename="$1" --rw="$2" --bs="$3" --iodepth="$4" \
		--ioengine=libaio --direct=1 --time_based --runtime="$runtime" \
		--ramp_time=1 --numjobs=1 --readonly --output-format=json 2>/dev/null |
		python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]["read"]; print(int(j["iops"]), int(j["bw"]))'
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

row() { printf '%-20s %-16s %10s %8s %8s\n' "$@"; }

# compare WORKLOAD(rw bs depth) PEER_DEV PEER_NAME DEV NAME: ABBA medians,
# one row per device, the ratio NAME / PEER_NAME on NAME's row.
compare() {
	local rw bs qd rep pi pb di db
	read -r rw bs qd <<<"$1"
	: >"$tmp/peer"
	: >"$tmp/dev"
	for rep in $(seq "$reps"); do
		if [ $((rep % 2)) -eq 1 ]; then
			fio_run "$2" "$rw" "$bs" "$qd" >>"$tmp/peer"
			fio_run "$4" "$rw" "$bs" "$qd" >>"$tmp/dev"
		else
			fio_run "$4" "$rw" "$bs" "$qd" >>"$tmp/dev"
			fio_run "$2" "$rw" "$bs" "$qd" >>"$tmp/peer"
		fi
	done
	pi=$(cut -d' ' -f1 "$tmp/peer" | median)
	pb=$(cut -d' ' -f2 "$tmp/peer" | median)
	di=$(cut -d' ' -f1 "$tmp/dev" | median)
	db=$(cut -d' ' -f2 "$tmp/dev" | median)
	row "$rw $bs qd$qd" "$3" "$pi" "$((pb / 1024))" ""
	row "$rw $bs qd$qd" "$5" "$di" "$((db / 1024))" \
		"$(python3 -c "print(f'{$di/$pi:.3f}')")"
}

echo "# kernel $(uname -r), $(nproc) vCPUs, ${runtime}s x $reps reps per device, ABBA order, medians"
row workload device IOPS MiB/s ratio
for w in "randread 4k 16" "read 1M 4"; do
	compare "$w" /dev/mapper/bench-linear dm-linear /dev/mapper/bench-raw bgraph-raw
done
for w in "randread 4k 16" "read 1M 4"; do
	compare "$w" /dev/mapper/bench-qlinear dm-linear /dev/mapper/bench-qcow2 bgraph-qcow2
done
for w in "randread 4k 16" "read 1M 4"; do
	compare "$w" /dev/nbd0 qemu-nbd /dev/mapper/bench-qcow2 bgraph-qcow2
done
for w in "randread 4k 16" "read 1M 4"; do
	compare "$w" /dev/mapper/bench-qcow2 qcow2-flat /dev/mapper/bench-top qcow2-chain3
done
# Warm the big cache first, so it measures hits only.
dd if=/dev/mapper/bench-warm of=/dev/null bs=1M status=none
compare "randread 4k 16" /dev/mapper/bench-warm l2-warm /dev/mapper/bench-cold l2-thrash
echo "# L2 cache (hits misses used total flags): warm $(status_of bench-warm); thrash $(status_of bench-cold)"

qemu-nbd -d /dev/nbd0 >/dev/null
dmsetup remove bench-cold bench-warm bench-top bench-mid bench-qcow2 bench-qlinear bench-raw bench-linear
rmmod dm_bgraph
rmmod brd
rm -rf "$work" "$tmp"
