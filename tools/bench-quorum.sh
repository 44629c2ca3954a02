#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The quorum part of `make bench`, sourced by tools/bench.sh (it uses its
# compare, fio_run, fio_wrun, row, status_of and $tmp, $runtime, $reps):
#   a 3-way bgraph-quorum (vote threshold 2) vs md raid1 with three legs:
#     1M sequential write iodepth 4 (goal >= 0.9): both write every leg;
#     1M sequential read iodepth 4 and 4k random read iodepth 16 (a report,
#       no goal): the quorum reads all three children and compares them,
#       md reads one leg;
#   a read-pattern fifo quorum vs its first child alone, 4k random read
#     iodepth 16 (goal >= 0.95), and vs dm-linear over that child: the
#     first ratio includes what any dm device costs over brd, the second
#     is the node's own cost.  Then the same with the children on loop
#     devices over tmpfs files, as in the quorum tests: a child that does
#     some work per bio (dm-linear still got only 0.66 of it in one run).
#
# Fairness.  Six brd devices of the same size: md's legs on ram0-2, the
# quorum's children on ram3-5, so that both sides exist at once and compare
# can alternate them (ABBA) rep after rep; taking turns on three shared
# devices would mean stopping md and loading the quorum between every two
# runs.  brd devices are alike (memory, one per device), and all six hold
# the same random data before anything is measured, so no side pays for
# brd's first write of a page, and md's legs start in sync
# (--assume-clean is then true).  md runs without a write-intent bitmap
# (--bitmap=none), as the quorum has none.  The quorum's table is as long
# as the md array (whose data starts after its superblock), so fio covers
# the same number of bytes on both.  The fifo node's peers are its own
# child 0 (ram3), the same device with and without the node, and a
# dm-linear device over it.

qmb=128				# MiB per brd device; six of them
qsectors=$((qmb * 2048))

modprobe raid1
modprobe brd rd_nr=6 rd_size=$((qmb * 1024))
head -c $((qmb << 20)) /dev/urandom |
	dd of=/dev/ram0 bs=1M iflag=fullblock oflag=direct status=none
for i in 1 2 3 4 5; do
	dd if=/dev/ram0 of=/dev/ram$i bs=1M iflag=direct oflag=direct status=none
done

mdadm --create /dev/md0 --run --quiet --level=1 --raid-devices=3 \
	--assume-clean --metadata=1.2 --bitmap=none /dev/ram0 /dev/ram1 /dev/ram2
msectors=$(blockdev --getsz /dev/md0)
echo "# quorum: ${runtime}s x $reps reps per device, ABBA order;" \
	"md0 $(cat /sys/block/md0/md/array_state), sync $(cat /sys/block/md0/md/sync_action)," \
	"$msectors sectors on both sides"

if dmsetup create bench-q --table \
	"0 $msectors bgraph-quorum 2 3 /dev/ram3 /dev/ram4 /dev/ram5"; then
	row workload device IOPS MiB/s ratio
	measure=fio_wrun compare "write 1M 4" /dev/md0 md-raid1-3 \
		/dev/mapper/bench-q quorum-3
	echo "# goal: quorum-3 / md-raid1-3 >= 0.9"
	compare "read 1M 4" /dev/md0 md-raid1-3 /dev/mapper/bench-q quorum-3
	compare "randread 4k 16" /dev/md0 md-raid1-3 /dev/mapper/bench-q quorum-3
	echo "# report (no goal): quorum reads 3 children and compares, md reads 1"
	echo "# status (threshold #children [dev bad_reads rewrites io_errors]..." \
		"quorum_failures): $(status_of bench-q)"
	dmsetup remove bench-q

	dmsetup create bench-qf --table \
		"0 $qsectors bgraph-quorum 2 3 /dev/ram3 /dev/ram4 /dev/ram5 2 read-pattern fifo"
	dmsetup create bench-qlin --table "0 $qsectors linear /dev/ram3 0"
	row workload device IOPS MiB/s ratio
	compare "randread 4k 16" /dev/ram3 brd-child0 /dev/mapper/bench-qf quorum-fifo
	echo "# goal: quorum-fifo / brd-child0 >= 0.95"
	compare "randread 4k 16" /dev/mapper/bench-qlin dm-linear /dev/mapper/bench-qf quorum-fifo
	echo "# context (no goal): the node's own cost; the goal above pays for dm too"
	compare "randread 4k 16" /dev/ram3 brd-child0 /dev/mapper/bench-qlin dm-linear
	echo "# context (no goal): what any dm device costs over the bare child, in this VM"
	echo "# fifo status: $(status_of bench-qf)"
	dmsetup remove bench-qlin bench-qf

	# The same three on loop devices over files in a tmpfs, the children
	# of the issue's own tests: a device that does some work per bio.
	qtmp=$(mktemp -d)
	mount -t tmpfs -o size=$((3 * qmb + 16))m none "$qtmp"
	lq=()
	for i in 3 4 5; do
		dd if=/dev/ram$i of="$qtmp/c$i" bs=1M iflag=direct status=none
		lq+=("$(losetup -f --show "$qtmp/c$i")")
	done
	dmsetup create bench-qf --table \
		"0 $qsectors bgraph-quorum 2 3 ${lq[*]} 2 read-pattern fifo"
	dmsetup create bench-qlin --table "0 $qsectors linear ${lq[0]} 0"
	fio_run /dev/mapper/bench-qf randread 4k 16 >/dev/null	# warm-up
	row workload device IOPS MiB/s ratio
	compare "randread 4k 16" "${lq[0]}" loop-child0 /dev/mapper/bench-qf quorum-fifo-loop
	echo "# goal: quorum-fifo / its child alone >= 0.95, children on loop devices (tmpfs files)"
	compare "randread 4k 16" /dev/mapper/bench-qlin dm-linear-loop /dev/mapper/bench-qf quorum-fifo-loop
	compare "randread 4k 16" "${lq[0]}" loop-child0 /dev/mapper/bench-qlin dm-linear-loop
	dmsetup remove bench-qlin bench-qf
	losetup -d "${lq[@]}"
	umount "$qtmp"
	rmdir "$qtmp"
else
	echo "# quorum: the bgraph-quorum table was refused; quorum benchmarks skipped"
fi
mdadm --stop --quiet /dev/md0
rmmod brd
