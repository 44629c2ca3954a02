#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The quorum part of `make bench`, sourced by tools/bench.sh (it uses its
# compare, fio_run, fio_wrun, row, status_of and $tmp, $runtime, $reps):
#   a 3-way bgraph-quorum (vote threshold 2) vs md raid1 with three legs
#   (quorum_vs_md):
#     1M sequential write iodepth 4 (goal >= 0.9): both write every leg;
#     1M sequential read iodepth 4 and 4k random read iodepth 16 (a report,
#       no goal): the quorum reads all three children and compares them,
#       md reads one leg;
#   a read-pattern fifo quorum vs its first child alone, 4k random read
#     iodepth 16 (goal >= 0.95), and vs dm-linear over that child: the
#     first ratio includes what any dm device costs over the child, the
#     second is the node's own cost (fifo_vs_child).
#   Both on three kinds of device: brd (memory; the least work per bio, so
#   the most a dm device can cost in proportion), loop devices over tmpfs
#   files (the quorum tests' children; fifo only) and, when the VM has
#   them (make bench gives them: vm-run -b), virtio-blk disks, the devices
#   a guest has, whose bios cost a round trip to the host.  The fifo pair
#   also on null_blk with a 2 ms completion timer: a device whose latency,
#   not this VM's CPU, sets the rate.
#
# Fairness.  Six devices of one kind and size: md's legs on three, the
# quorum's children on the other three, so that both sides exist at once
# and compare can alternate them (ABBA) rep after rep; taking turns on
# three shared devices would mean stopping md and loading the quorum
# between every two runs.  All six hold the same random data before
# anything is measured, so no side pays for a first write (brd allocating
# a page, a hole of the host's file), and md's legs start in sync
# (--assume-clean is then true).  md runs without a write-intent bitmap
# (--bitmap=none), as the quorum has none.  The quorum's table is as long
# as the md array (whose data starts after its superblock), so fio covers
# the same number of bytes on both.  The fifo node's peers are its own
# child 0, the same device with and without the node, and a dm-linear
# device over it.

qmb=128				# MiB per brd device; six of them
qsectors=$((qmb * 2048))

modprobe raid1

# fill_same DEV...: the same qmb MiB of random data on every DEV.
fill_same() {
	local d
	head -c $((qmb << 20)) /dev/urandom |
		dd of="$1" bs=1M iflag=fullblock oflag=direct status=none
	for d in "${@:2}"; do
		dd if="$1" of="$d" bs=1M count="$qmb" iflag=direct oflag=direct status=none
	done
}

# quorum_vs_md KIND MD_LEG... CHILD... (three of each): the md array and
# the quorum node side by side.
quorum_vs_md() {
	local kind=$1 ms
	mdadm --create /dev/md0 --run --quiet --level=1 --raid-devices=3 \
		--assume-clean --metadata=1.2 --bitmap=none "$2" "$3" "$4"
	ms=$(blockdev --getsz /dev/md0)
	echo "# quorum vs md on $kind: md0 $(cat /sys/block/md0/md/array_state)," \
		"sync $(cat /sys/block/md0/md/sync_action), $ms sectors on both sides"
	if dmsetup create bench-q --table "0 $ms bgraph-quorum 2 3 $5 $6 $7"; then
		row workload device IOPS MiB/s ratio
		measure=fio_wrun compare "write 1M 4" /dev/md0 "md-raid1-3-$kind" \
			/dev/mapper/bench-q "quorum-3-$kind"
		echo "# goal: quorum-3 / md-raid1-3 >= 0.9 ($kind)"
		compare "read 1M 4" /dev/md0 "md-raid1-3-$kind" /dev/mapper/bench-q "quorum-3-$kind"
		compare "randread 4k 16" /dev/md0 "md-raid1-3-$kind" /dev/mapper/bench-q "quorum-3-$kind"
		echo "# report (no goal): quorum reads 3 children and compares, md reads 1"
		echo "# status (threshold #children [dev bad_reads rewrites io_errors]..." \
			"quorum_failures): $(status_of bench-q)"
		dmsetup remove bench-q
	else
		echo "# quorum: the bgraph-quorum table was refused; skipped"
	fi
	mdadm --stop --quiet /dev/md0
}

# fifo_vs_child KIND CHILD...: a read-pattern fifo node over the CHILDs
# vs CHILD 0 alone and vs dm-linear over CHILD 0.  On brd, where all
# three do their work in the submitting thread, each pair runs together
# (bench.sh's fio_pair); a loop device's I/O is done by its own thread,
# a virtio disk's by the host: ABBA.
fifo_vs_child() {
	local kind=$1 c0=$2 together=
	# shellcheck disable=SC2034 # compare() reads it
	[ "$kind" != brd ] || together=1
	shift
	dmsetup create bench-qf --table \
		"0 $qsectors bgraph-quorum 2 $# $* 2 read-pattern fifo" || return 0
	dmsetup create bench-qlin --table "0 $qsectors linear $c0 0"
	fio_run /dev/mapper/bench-qf randread 4k 16 >/dev/null	# warm-up
	row workload device IOPS MiB/s ratio
	compare "randread 4k 16" "$c0" "$kind-child0" /dev/mapper/bench-qf "quorum-fifo-$kind"
	echo "# goal: quorum-fifo / its child alone >= 0.95 ($kind)"
	compare "randread 4k 16" /dev/mapper/bench-qlin "dm-linear-$kind" \
		/dev/mapper/bench-qf "quorum-fifo-$kind"
	echo "# context (no goal): the node's own cost; the goal above pays for dm too"
	compare "randread 4k 16" "$c0" "$kind-child0" /dev/mapper/bench-qlin "dm-linear-$kind"
	echo "# context (no goal): what any dm device costs over the bare child, in this VM"
	echo "# fifo status: $(status_of bench-qf)"
	dmsetup remove bench-qlin bench-qf
}

echo "# quorum: ${runtime}s x $reps reps per device, ABBA order (fifo on brd: together)"
modprobe brd rd_nr=6 rd_size=$((qmb * 1024))
fill_same /dev/ram{0..5}
quorum_vs_md brd /dev/ram{0..5}
fifo_vs_child brd /dev/ram3 /dev/ram4 /dev/ram5

# Loop devices over files in a tmpfs, the children of the quorum tests:
# a device that does some work per bio.
qtmp=$(mktemp -d)
mount -t tmpfs -o size=$((3 * qmb + 16))m none "$qtmp"
lq=()
for i in 3 4 5; do
	dd if=/dev/ram$i of="$qtmp/c$i" bs=1M iflag=direct status=none
	lq+=("$(losetup -f --show "$qtmp/c$i")")
done
fifo_vs_child loop "${lq[@]}"
losetup -d "${lq[@]}"
umount "$qtmp"
rmdir "$qtmp"
rmmod brd

# null_blk completing each bio after 2 ms (irqmode=2, a timer; no memory,
# reads return no data, fifo only reads): a device whose latency sets the
# rate, as a disk's or a network volume's does, not this VM's CPU.  The
# CPU a dm device spends per bio then delays a bio, not the next one.
if modprobe null_blk nr_devices=3 irqmode=2 completion_nsec=2000000 gb=1 bs=4096; then
	echo "# null_blk: 2 ms per bio, so at most 8000 IOPS at iodepth 16"
	fifo_vs_child null_blk /dev/nullb0 /dev/nullb1 /dev/nullb2
	rmmod null_blk
else
	echo "# quorum on null_blk: skipped, no null_blk module"
fi

# Six virtio-blk disks after the first blank one (which the writes use).
vd=(/dev/vd{c..h})
if [ -b "${vd[5]}" ]; then
	fill_same "${vd[@]}"
	quorum_vs_md virtio "${vd[@]}"
	fifo_vs_child virtio "${vd[0]}" "${vd[1]}" "${vd[2]}"
else
	echo "# quorum on virtio-blk: skipped, the VM has no /dev/vdh (vm-run -b)"
fi
