#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# I/O through bgraph-throttle: reads and writes counted in status and
# stats, flush, discard and write-zeroes passed uncounted, fio verify.

# shellcheck source=lib-throttle.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-throttle.sh"

# tg_ios GROUP DIR: ios passed so far in direction DIR (read, write, or
# both for their sum).
tg_ios() {
	awk -v d="$2" '($1 == d || d == "both") { sub("ios=", "", $2); n += $2 } END { print n }' \
		"$TG/$1/stats"
}

test_status_and_stats_count_every_read_and_write() {
	local dev st
	th_cleanup
	dev=$(th_devs 1)
	mkdir "$TG/g1"
	th_node t1 "$dev" g1
	dd if=/dev/mapper/t1 of=/dev/null bs=4k count=10 iflag=direct status=none
	dd if=/dev/zero of=/dev/mapper/t1 bs=64k count=3 oflag=direct status=none
	st=$(dmsetup status t1)
	expect_match "$st" "bgraph-throttle g1 10 40960 0 0 0 3 196608 0 0 0$" "status"
	expect_eq "$(node_stat t1 read ios)" 10 "node read ios"
	expect_eq "$(node_stat t1 write bytes)" 196608 "node write bytes"
	expect_match "$(cat "$CFS/nodes/t1/stats")" "^group g1$" "node group"
	expect_eq "$(tg_ios g1 read)" 10 "group read ios"
	expect_eq "$(cat "$TG/g1/members")" "t1" "members"
	expect_match "$(dmsetup table t1)" "bgraph-throttle $(printf '%d:%d' "$(stat -c 0x%t "$dev")" "$(stat -c 0x%T "$dev")") g1$" "table"
	expect_match "$(cat "$CFS/graph")" "^t1 file $(devname "$dev")$" "graph edge"
	th_cleanup
}

# Flushes, discards and write-zeroes pass uncounted and unheld.
test_flush_discard_and_zeroes_pass_uncounted() {
	local dev r0 w0
	th_cleanup
	# A loop device: brd of 6.1 takes no discard.
	dev=$(mkloop disc 64)
	mkdir "$TG/g1"
	tg_set g1 iops-total 1
	th_node t1 "$dev" g1
	dd if=/dev/mapper/t1 of=/dev/null bs=4k count=2 iflag=direct status=none
	r0=$(tg_ios g1 read) w0=$(tg_ios g1 write)
	# The bucket is now over: a counted request would wait about a second.
	# The ioctls themselves: blkdiscard(8) first reads the device (probing
	# for signatures), and those reads would be counted and held.
	python3 - <<-"PY"
	import fcntl, os, struct
	fd = os.open("/dev/mapper/t1", os.O_WRONLY)
	fcntl.ioctl(fd, 0x1277, struct.pack("QQ", 0, 32 << 20))	# BLKDISCARD
	fcntl.ioctl(fd, 0x127f, struct.pack("QQ", 0, 1 << 20))	# BLKZEROOUT
	os.fsync(fd)						# a flush
	PY
	expect_eq "$(tg_ios g1 read)" "$r0" "reads counted"
	expect_eq "$(tg_ios g1 write)" "$w0" "writes counted"
	expect_eq "$(node_stat t1 write delayed_ios)" 0 "delayed writes"
	th_cleanup
}

test_fio_verify_through_a_throttled_node() {
	local dev
	th_cleanup
	dev=$(th_devs 1)
	mkdir "$TG/g1"
	tg_set g1 bps-total $((8 * 1048576))
	tg_set g1 iops-total 2000
	th_node t1 "$dev" g1
	fio_ok --name=v --filename=/dev/mapper/t1 --direct=1 --ioengine=libaio \
		--iodepth=16 --numjobs=2 --rw=randwrite --bsrange=4k-64k \
		--size=8M --offset_increment=8M --verify=crc32c --do_verify=1
	th_cleanup
}
