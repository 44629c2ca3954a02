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
#
# Then writes, 4k random write iodepth 16, on fresh brd devices:
#   bgraph-qcow2 on a preallocated image (preallocation=full: every cluster
#     allocated, refcount 1, so writes go in place) vs dm-linear over brd
#     (goal >= 0.95; twice the reps, together, next to a dm-linear vs
#     dm-linear control and the same pair in ABBA) and vs writable
#     qemu-nbd on a copy of the image (goal >= 3)
#   an empty 4 GiB image (nearly every write allocates a cluster) vs the
#     preallocated one (goal >= 0.6); the same with extended_l2=on (no zero
#     fill); for scale, 64k vs 4k writes on dm-linear over brd
#   the same pair on loop devices over files on /scratch's ext4, whose
#     write-zeroes (fallocate) spares a new cluster the zeros brd must be
#     sent
#   a 64 KiB-cluster overlay over a raw backing (each write copies from
#     backing): extended_l2=on vs off
#   with a blank virtio-blk disk at /dev/vdb (`vm-run -b`, as make bench
#     runs it), the in-place pair and the allocating pair again on it: a
#     device with write-zeroes whose data the host moves, and whose bios
#     cost a round trip to the host
# The allocating runs are BENCH_WIOS writes (default 6000) instead of
# BENCH_RUNTIME seconds, each on a fresh copy of its image (removed,
# copied back onto its device, loaded again; a loop device's file is
# first all punched out again), so that they keep allocating.  Skipped
# while bgraph-qcow2 refuses writable tables.
#
# Then the throttle part, tools/bench-throttle.sh: an unlimited
# bgraph-throttle vs dm-linear, accuracy vs cgroup io.max, a shared group.
#
# Then the quorum part, tools/bench-quorum.sh: a 3-way bgraph-quorum vs md
# raid1 with three legs, and a read-pattern fifo quorum vs its first child,
# on brd, loop devices and (with /dev/vdc-vdh, as make bench gives them)
# virtio-blk disks.
#
# Then the live part, tools/bench-live.sh: how long the guest waits for a
# snapshot and a filter insertion by bgraph, and its IOPS during 20
# snapshots in a row.
#
# The arguments, else BENCH_PARTS (default "reads writes throttle quorum live"),
# pick the parts: `tools/vm-run -k 6.1 -m 3072 tools/bench.sh quorum`
# (vm-run does not pass the host's environment into the guest).
# BENCH_RUNTIME (s, default 5) and BENCH_REPS (default 5) per measurement;
# the two devices of a pair are measured alternately, the order flipping
# every rep (ABBA); a ratio is the median of the reps' ratios, shown with
# their range and with the ratio of the two devices' best reps.
# BGRAPH_KO: the module to load (default: the one built for this kernel),
# for A/B runs of two builds from a script in the guest.
#
# Pairs of brd-backed devices whose whole work per I/O is done by the
# thread that submits it (dm-linear, bgraph-raw, qcow2 reads and in-place
# writes, the fifo quorum) run together instead: both at once, a fio job
# each, on one vCPU (fio_pair).  This host's speed drifts by up to 2x
# within seconds (a CPU-bound loop on the host itself: 888 to 1673
# iterations per second, second to second), so two runs one after the
# other can differ by 30% on the same device; run together, the drift
# slows both alike.  Measured: brd against brd 1.008 (range 0.993-1.040)
# together, 1.041 (0.742-1.355) one after the other.  Not for pairs with
# work elsewhere (a worker, a loop device's thread, qemu-nbd, the host
# behind virtio-blk): those keep ABBA.
set -euo pipefail
trap 'echo "# bench: line $LINENO: a command failed (status $?)"' ERR
export DM_DISABLE_UDEV=1
src=${BGRAPH_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
runtime=${BENCH_RUNTIME:-5}
reps=${BENCH_REPS:-5}
wios=${BENCH_WIOS:-6000}
parts=${*:-${BENCH_PARTS:-reads writes throttle quorum live}}
size_mb=256
work=/scratch/bench
tmp=$(mktemp -d)

modprobe -a dm_mod configfs nbd
modprobe brd rd_nr=5 rd_size=$(((size_mb + 16) * 1024))
mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config
insmod "${BGRAPH_KO:-$src/build/$(uname -r)/dm-bgraph.ko}"
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

row() { printf '%-20s %-16s %10s %8s %s\n' "$@"; }

# fio_wrun DEV RW BS DEPTH -> "iops bw_KiB" of writes, for BENCH_RUNTIME s.
fio_wrun() {
	fio_write "$@" --time_based --runtime="$runtime" --ramp_time=1
}

# fio_wcount DEV RW BS DEPTH -> the same, for BENCH_WIOS writes.
fio_wcount() {
	fio_write "$@" --number_ios="$wios"
}

fio_write() {
	local dev=$1 rw=$2 bs=$3 qd=$4
	shift 4
	fio --name=b --filename="$dev" --rw="$rw" --bs="$bs" --iodepth="$qd" \
		--ioengine=libaio --direct=1 --numjobs=1 "$@" --output-format=json 2>/dev/null |
		python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]["write"]; print(int(j["iops"]), int(j["bw"]))'
}

# fio_pair DEV_A DEV_B RW BS DEPTH -> two lines "iops bw_KiB", A's then
# B's: the two devices at once, a fio job each, both jobs on one vCPU.
# The scheduler gives the two jobs equal shares of that CPU, taking turns
# every few milliseconds, so on a device that does its work in the
# submitting thread (brd, and the dm targets over it that map in map())
# the ratio of their IOPS is the inverse ratio of their CPU cost per I/O,
# and the host's drift (it changes this guest's speed by up to 2x within
# seconds) slows both alike.
fio_pair() {
	local dir=read ro=--readonly
	[[ $3 != *write* ]] || { dir=write ro=; }
	fio --ioengine=libaio --direct=1 --rw="$3" --bs="$4" --iodepth="$5" \
		--time_based --runtime="$runtime" --ramp_time=1 $ro \
		--cpus_allowed=$(($(nproc) - 1)) --output-format=json \
		--name=a --filename="$1" --name=b --filename="$2" 2>/dev/null |
		python3 -c 'import json,sys
for j in json.load(sys.stdin)["jobs"]:
    print(int(j[sys.argv[1]]["iops"]), int(j[sys.argv[1]]["bw"]))' "$dir"
}

# measure_one DEV: $reset DEV (if set), then $measure (default fio_run)
# with compare's workload.
measure_one() {
	[ -z "${reset:-}" ] || "$reset" "$1" >&2
	"${measure:-fio_run}" "$1" "$rw" "$bs" "$qd"
}

# compare WORKLOAD(rw bs depth) PEER_DEV PEER_NAME DEV NAME: $reps reps (or
# $pairs if set), the two devices one after the other, the order flipping
# every rep (ABBA).  One row per device with its median IOPS and MiB/s;
# on NAME's row the median of the reps' own ratios (NAME / PEER_NAME, each
# from two runs next to each other in time), the lowest and highest of
# them, and the ratio of the two devices' best reps.  Under TCG the
# host's load drifts by tens of percent within seconds; a ratio of two
# runs side by side follows it less than a ratio of medians taken minutes
# apart, and the range shows how far it moved.  With $together set, each
# rep runs the two devices at once instead (fio_pair, which job is first
# flipping every rep): for pairs whose work is all done by the submitting
# thread, where it cancels the drift.
compare() {
	local rw bs qd rep pi pb di db n=${pairs:-$reps}
	read -r rw bs qd <<<"$1"
	: >"$tmp/peer"
	: >"$tmp/dev"
	for rep in $(seq "$n"); do
		if [ -n "${together:-}" ]; then
			# The peer's line first, whichever job fio started first.
			if [ $((rep % 2)) -eq 1 ]; then
				fio_pair "$2" "$4" "$rw" "$bs" "$qd" >"$tmp/pair"
			else
				fio_pair "$4" "$2" "$rw" "$bs" "$qd" | tac >"$tmp/pair"
			fi
			sed -n 1p "$tmp/pair" >>"$tmp/peer"
			sed -n 2p "$tmp/pair" >>"$tmp/dev"
		elif [ $((rep % 2)) -eq 1 ]; then
			measure_one "$2" >>"$tmp/peer"
			measure_one "$4" >>"$tmp/dev"
		else
			measure_one "$4" >>"$tmp/dev"
			measure_one "$2" >>"$tmp/peer"
		fi
	done
	pi=$(cut -d' ' -f1 "$tmp/peer" | median)
	pb=$(cut -d' ' -f2 "$tmp/peer" | median)
	di=$(cut -d' ' -f1 "$tmp/dev" | median)
	db=$(cut -d' ' -f2 "$tmp/dev" | median)
	row "$rw $bs qd$qd" "$3" "$pi" "$((pb / 1024))" ""
	row "$rw $bs qd$qd" "$5" "$di" "$((db / 1024))" \
		"$(paste -d' ' "$tmp/peer" "$tmp/dev" | ratios)"
	echo "#   ${together:+together on one vCPU; }IOPS rep by rep, $3/$5:" \
		"$(paste -d/ <(cut -d' ' -f1 "$tmp/peer") <(cut -d' ' -f1 "$tmp/dev") | tr '\n' ' ')"
}

# ratios: lines "peer_iops peer_bw dev_iops dev_bw" -> "median  min-max
# best x" of dev_iops / peer_iops, x being the ratio of the two devices'
# best reps.  The host's noise only ever slows a run down (it takes the
# CPU away), so each device's fastest rep is the closest to its cost
# alone: the best-of-N estimate, as timeit and hyperfine report it.
ratios() {
	python3 -c '
import statistics, sys
rows = [list(map(int, f)) for f in map(str.split, sys.stdin) if f]
r = sorted(d[2] / max(d[0], 1) for d in rows)
best = max(d[2] for d in rows) / max(max(d[0] for d in rows), 1)
print(f"{statistics.median(r):.3f}  {r[0]:.3f}-{r[-1]:.3f}  best {best:.3f}")'
}

echo "# kernel $(uname -r), $(nproc) vCPUs, ${runtime}s x $reps reps per device, ABBA order" \
	"(or together on one vCPU where a row says so);" \
	"ratio: median of the reps' ratios, their range, and the ratio of the best reps"
row workload device IOPS MiB/s ratio
if [[ " $parts " == *" reads "* ]]; then
	# Both sides of these map in map() over brd: run together.
	for w in "randread 4k 16" "read 1M 4"; do
		together=1 compare "$w" /dev/mapper/bench-linear dm-linear \
			/dev/mapper/bench-raw bgraph-raw
	done
	for w in "randread 4k 16" "read 1M 4"; do
		together=1 compare "$w" /dev/mapper/bench-qlinear dm-linear \
			/dev/mapper/bench-qcow2 bgraph-qcow2
	done
	for w in "randread 4k 16" "read 1M 4"; do
		compare "$w" /dev/nbd0 qemu-nbd /dev/mapper/bench-qcow2 bgraph-qcow2
	done
	for w in "randread 4k 16" "read 1M 4"; do
		together=1 compare "$w" /dev/mapper/bench-qcow2 qcow2-flat \
			/dev/mapper/bench-top qcow2-chain3
	done
	# Warm the big cache first, so it measures hits only.
	dd if=/dev/mapper/bench-warm of=/dev/null bs=1M status=none
	compare "randread 4k 16" /dev/mapper/bench-warm l2-warm /dev/mapper/bench-cold l2-thrash
	echo "# L2 cache (hits misses used total mode flags): warm $(status_of bench-warm); thrash $(status_of bench-cold)"
fi

qemu-nbd -d /dev/nbd0 >/dev/null
dmsetup remove bench-cold bench-warm bench-top bench-mid bench-qcow2 bench-qlinear bench-raw bench-linear
rmmod brd
rm -f "$work"/*.qcow2

# ---- writes -------------------------------------------------------------

# Nine brd devices of 4 GiB; brd takes memory only for the pages written.
#   ram0  preallocated image (128 MiB)	bench-wq
#   ram1  128 MiB written once		bench-wlin (dm-linear)
#   ram2  a copy of ram0			/dev/nbd1 (qemu-nbd)
#   ram3  empty 4 GiB image		bench-walloc
#   ram4  raw backing, 256 MiB random data, zeros after
#   ram5  overlay of ram4, extended_l2=on	bench-xon
#   ram6  overlay of ram4, extended_l2=off	bench-xoff
#   ram7  empty 4 GiB image, extended_l2=on	bench-wxalloc
#   ram8  128 MiB written once		bench-wlin2 (dm-linear, the
#         noise control: dm-linear against itself)
# And two loop devices over files in $work (/scratch's ext4):
#   lpre.img    a copy of the preallocated image	bench-lq
#   lalloc.img  the empty image, sparse, with room for the clusters of a
#               run				bench-lalloc
modprobe brd rd_nr=9 rd_size=$((4 << 20))
modprobe loop
wsectors=$((128 * 2048))
gsectors=$((4 << 21))
qemu-img create -q -f qcow2 -o cluster_size=64k,preallocation=full "$work/wpre.qcow2" 128M
qemu-img create -q -f qcow2 -o cluster_size=64k "$work/walloc.qcow2" 4G
qemu-img create -q -f qcow2 -u -b /dev/ram4 -F raw -o cluster_size=64k,extended_l2=on "$work/xon.qcow2" 4G
qemu-img create -q -f qcow2 -u -b /dev/ram4 -F raw -o cluster_size=64k,extended_l2=off "$work/xoff.qcow2" 4G
qemu-img create -q -f qcow2 -o cluster_size=64k,extended_l2=on "$work/wxalloc.qcow2" 4G
put "$work/wpre.qcow2" /dev/ram0
dd if=/dev/zero of=/dev/ram1 bs=1M count=128 oflag=direct status=none
dd if=/dev/zero of=/dev/ram8 bs=1M count=128 oflag=direct status=none
# The devices of the allocating runs written once too, as far as a run
# allocates: brd takes (and clears) a page on a page's first write, a cost
# of brd, not of the node, that a disk does not have (measured on 6.1,
# 3 runs each: 4k allocating writes 0.117-0.136 of in place on untouched
# brd pages, 0.466-0.700 on pages written before).  Before, only the
# first rep paid it.
for d in /dev/ram3 /dev/ram5 /dev/ram6 /dev/ram7; do
	dd if=/dev/zero of=$d bs=1M count=$(((wios >> 4) + 16)) oflag=direct status=none
done
put "$work/wpre.qcow2" /dev/ram2
head -c 256M /dev/urandom | dd of=/dev/ram4 bs=1M iflag=fullblock oflag=direct status=none
cp --sparse=never "$work/wpre.qcow2" "$work/lpre.img"
truncate -s $(((wios >> 4) + 64))M "$work/lalloc.img"
lpre=$(losetup -f --show "$work/lpre.img")
lalloc=$(losetup -f --show "$work/lalloc.img")

# The tables of the nodes that fresh reloads, and their image and device.
declare -A wtable wimage wdev
wtable[bench-walloc]="0 $gsectors bgraph-qcow2 /dev/ram3"
wtable[bench-xon]="0 $gsectors bgraph-qcow2 /dev/ram5 2 backing /dev/ram4"
wtable[bench-xoff]="0 $gsectors bgraph-qcow2 /dev/ram6 2 backing /dev/ram4"
wtable[bench-lalloc]="0 $gsectors bgraph-qcow2 $lalloc"
wtable[bench-wxalloc]="0 $gsectors bgraph-qcow2 /dev/ram7"
wimage=([bench-walloc]=walloc [bench-xon]=xon [bench-xoff]=xoff [bench-lalloc]=walloc
	[bench-wxalloc]=wxalloc)
wdev=([bench-walloc]=/dev/ram3 [bench-xon]=/dev/ram5 [bench-xoff]=/dev/ram6
	[bench-lalloc]=$lalloc [bench-wxalloc]=/dev/ram7)

# fresh DEV: remove the node of /dev/mapper/DEV and load it again over a
# fresh copy of its image, so that the next run allocates again.  Nodes
# without an image (the in-place ones) stay.
fresh() {
	local node=${1#/dev/mapper/}
	[ -n "${wimage[$node]:-}" ] || return 0
	dmsetup remove "$node"
	# A loop device's file: all a hole again, as a new file is.
	[[ ${wdev[$node]} != /dev/loop* ]] || blkdiscard "${wdev[$node]}"
	put "$work/${wimage[$node]}.qcow2" "${wdev[$node]}"
	dmsetup create "$node" --table "${wtable[$node]}"
}

# sizes DEV NAME: randwrite 64k vs 4k qd16 on DEV (a dm-linear device),
# ABBA medians, the ratio of their IOPS.  Not a bound: fio's 64k writes
# also pin 16 user pages, where the zero fill is one page used again.
sizes() {
	local rep ma mb a=() b=()
	for rep in $(seq "$reps"); do
		if [ $((rep % 2)) -eq 1 ]; then
			a+=("$(fio_wrun "$1" randwrite 4k 16 | cut -d' ' -f1)")
			b+=("$(fio_wrun "$1" randwrite 64k 16 | cut -d' ' -f1)")
		else
			b+=("$(fio_wrun "$1" randwrite 64k 16 | cut -d' ' -f1)")
			a+=("$(fio_wrun "$1" randwrite 4k 16 | cut -d' ' -f1)")
		fi
	done
	ma=$(printf '%s\n' "${a[@]}" | median)
	mb=$(printf '%s\n' "${b[@]}" | median)
	row "randwrite 4k qd16" "$2" "$ma" "" ""
	row "randwrite 64k qd16" "$2" "$mb" "" "$(python3 -c "print(f'{$mb/$ma:.3f}')")"
	echo "# for scale: what a write 16 times larger costs there"
}

# virtio_writes: the in-place and allocating pairs again on /dev/vdb, the
# first blank virtio-blk disk of `vm-run -b` (make bench gives it): a device whose
# data the host moves natively and that has write-zeroes, so a new
# cluster's fill costs requests, not bytes copied by the guest's CPU.
# Three dm-linear parts of it: the preallocated image (256 MiB), the
# empty one (1 GiB: room for the clusters of a run) and 128 MiB for
# dm-linear, the in-place pair's peer (written once, as the image is).
# The peer is a second dm-linear over that part (bench-vlin2): the qcow2
# node sits on a part too, so both sides go through two dm devices.
virtio_writes() {
	dmsetup create bench-vpre --table "0 $((256 * 2048)) linear /dev/vdb 0"
	dmsetup create bench-vabase --table "0 $((1024 * 2048)) linear /dev/vdb $((256 * 2048))"
	dmsetup create bench-vlin --table "0 $wsectors linear /dev/vdb $((1280 * 2048))"
	put "$work/wpre.qcow2" /dev/mapper/bench-vpre
	dd if=/dev/zero of=/dev/mapper/bench-vlin bs=1M count=$((wsectors / 2048)) oflag=direct \
		status=none
	dmsetup create bench-vlin2 --table "0 $wsectors linear /dev/mapper/bench-vlin 0"
	dmsetup create bench-vq --table "0 $wsectors bgraph-qcow2 /dev/mapper/bench-vpre"
	fio_wrun /dev/mapper/bench-vlin2 randwrite 4k 16 >/dev/null
	fio_wrun /dev/mapper/bench-vq randwrite 4k 16 >/dev/null
	measure=fio_wrun pairs=$((2 * reps)) compare "randwrite 4k 16" \
		/dev/mapper/bench-vlin2 virtio-linear /dev/mapper/bench-vq virtio-inplace
	echo "# goal: qcow2-inplace / dm-linear >= 0.95 (both over the virtio-blk disk," \
		"whose bios cost a round trip to the host)"
	wtable[bench-valloc]="0 $gsectors bgraph-qcow2 /dev/mapper/bench-vabase"
	wimage[bench-valloc]=walloc
	wdev[bench-valloc]=/dev/mapper/bench-vabase
	put "$work/walloc.qcow2" /dev/mapper/bench-vabase
	dmsetup create bench-valloc --table "${wtable[bench-valloc]}"
	measure=fio_wcount reset=fresh compare "randwrite 4k 16" /dev/mapper/bench-vq virtio-inplace \
		/dev/mapper/bench-valloc virtio-alloc
	echo "# goal: virtio-alloc / virtio-inplace >= 0.6 (a virtio-blk disk;" \
		"write_zeroes_max_bytes $(cat /sys/block/vdb/queue/write_zeroes_max_bytes))"
	sizes /dev/mapper/bench-vlin virtio-linear
	dmsetup remove bench-valloc bench-vq bench-vlin2 bench-vlin bench-vabase bench-vpre
}

if [[ " $parts " != *" writes "* ]]; then
	:
elif dmsetup create bench-wq --table "0 $wsectors bgraph-qcow2 /dev/ram0" 2>/dev/null; then
	dmsetup create bench-wlin --table "0 $wsectors linear /dev/ram1 0"
	dmsetup create bench-wlin2 --table "0 $wsectors linear /dev/ram8 0"
	dmsetup create bench-lq --table "0 $wsectors bgraph-qcow2 $lpre"
	for n in bench-walloc bench-xon bench-xoff bench-lalloc bench-wxalloc; do
		put "$work/${wimage[$n]}.qcow2" "${wdev[$n]}"
		dmsetup create "$n" --table "${wtable[$n]}"
	done
	qemu-nbd -f qcow2 --cache=none --aio=native -c /dev/nbd1 /dev/ram2
	for _ in $(seq 50); do
		[ "$(blockdev --getsize64 /dev/nbd1 2>/dev/null || echo 0)" -gt 0 ] && break
		sleep 0.2
	done
	# One unmeasured run each first: the L2 slices, the page cache of
	# qemu-nbd's metadata and fio itself warm up.
	for d in /dev/mapper/bench-wq /dev/mapper/bench-wlin /dev/mapper/bench-wlin2 /dev/nbd1 \
		 /dev/mapper/bench-lq; do
		fio_wrun "$d" randwrite 4k 16 >/dev/null
	done
	echo "# writes: randwrite 4k qd16; in place ${runtime}s, allocating $wios writes per run"
	row workload device IOPS MiB/s ratio
	# The goal's pair, the two devices at once (both map in map(), over
	# brd), twice the reps; the same pair with dm-linear on both sides, how
	# far two equal devices are apart; and the goal's pair one device after
	# the other, as every pair was measured before fio_pair.
	together=1 pairs=$((2 * reps)) compare "randwrite 4k 16" \
		/dev/mapper/bench-wlin dm-linear /dev/mapper/bench-wq qcow2-inplace
	echo "# goal: qcow2-inplace / dm-linear >= 0.95 (together on one vCPU)"
	together=1 pairs=$((2 * reps)) compare "randwrite 4k 16" \
		/dev/mapper/bench-wlin dm-linear /dev/mapper/bench-wlin2 dm-linear-2
	echo "# noise control (no goal): dm-linear against dm-linear on another brd device"
	measure=fio_wrun pairs=$((2 * reps)) compare "randwrite 4k 16" \
		/dev/mapper/bench-wlin dm-linear /dev/mapper/bench-wq qcow2-inplace
	echo "# context: the goal's pair one device after the other (ABBA), exposed to the drift"
	measure=fio_wrun compare "randwrite 4k 16" /dev/nbd1 qemu-nbd /dev/mapper/bench-wq qcow2-inplace
	echo "# goal: qcow2-inplace / qemu-nbd >= 3"
	measure=fio_wcount reset=fresh compare "randwrite 4k 16" /dev/mapper/bench-wq qcow2-inplace \
		/dev/mapper/bench-walloc qcow2-alloc
	echo "# goal: qcow2-alloc / qcow2-inplace >= 0.6"
	measure=fio_wcount reset=fresh compare "randwrite 4k 16" /dev/mapper/bench-wq qcow2-inplace \
		/dev/mapper/bench-wxalloc qcow2-alloc-xl2
	echo "# context (no goal): the same on an empty image with extended_l2=on, whose 4k" \
		"writes allocate two 2K subclusters of a new cluster and need no zero fill"
	# For scale: a 4k write that allocates a 64K cluster writes 64K on
	# brd (the data and the zero fill, which brd copies like data), one in
	# place 4K.  The same two sizes of write on dm-linear over brd:
	sizes /dev/mapper/bench-wlin dm-linear
	measure=fio_wcount reset=fresh compare "randwrite 4k 16" /dev/mapper/bench-lq loop-inplace \
		/dev/mapper/bench-lalloc loop-alloc
	echo "# goal: loop-alloc / loop-inplace >= 0.6 (loop devices over files on ext4;" \
		"write_zeroes_max_bytes $(cat "/sys/block/${lalloc#/dev/}/queue/write_zeroes_max_bytes"))"
	measure=fio_wcount reset=fresh compare "randwrite 4k 16" /dev/mapper/bench-xoff overlay-xl2-off \
		/dev/mapper/bench-xon overlay-xl2-on
	echo "# status (hits misses used total mode flags): in place $(status_of bench-wq); alloc $(status_of bench-walloc); loop-alloc $(status_of bench-lalloc); xl2-on $(status_of bench-xon); alloc-xl2 $(status_of bench-wxalloc)"
	[ ! -b /dev/vdb ] || virtio_writes
	qemu-nbd -d /dev/nbd1 >/dev/null
	dmsetup remove bench-wxalloc bench-lalloc bench-lq bench-xoff bench-xon bench-walloc \
		bench-wlin2 bench-wlin bench-wq
else
	echo "# writes: a writable bgraph-qcow2 table is refused; write benchmarks skipped"
fi
losetup -d "$lalloc" "$lpre"
rmmod brd

# ---- throttle -----------------------------------------------------------

if [[ " $parts " == *" throttle "* ]]; then
	# shellcheck source=tools/bench-throttle.sh
	source "$src/tools/bench-throttle.sh"
fi

# ---- quorum -------------------------------------------------------------

if [[ " $parts " == *" quorum "* ]]; then
	# shellcheck source=tools/bench-quorum.sh
	source "$src/tools/bench-quorum.sh"
fi

# ---- live graph changes -------------------------------------------------

if [[ " $parts " == *" live "* ]]; then
	# shellcheck source=tools/bench-live.sh
	source "$src/tools/bench-live.sh"
fi
rmmod dm_bgraph || {
	echo "# rmmod dm_bgraph refused; left in configfs: $(cd /sys/kernel/config/bgraph && ls -R | tr '\n' ' ')"
	dmsetup ls
	exit 1
}
rm -rf "$work" "$tmp"
