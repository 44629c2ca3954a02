#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Writing through bgraph-qcow2 nodes, checked against QEMU: fio verify on
# an empty, a preallocated image and an overlay of a two-deep chain,
# round trips with qemu-io, suspend leaving the image clean.

# shellcheck source=lib-qcow2-write.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-qcow2-write.sh"

# ---- fio ------------------------------------------------------------

# qw_fio NAME: two fio runs over the first QW_MB MiB of node NAME, random
# writes of 4k, 64k and 1M, 4 jobs of queue depth 16:
# 1. the four jobs all over the range at once, racing for the same
#    clusters, L2 slices and refcount blocks;
# 2. verify=crc32c, each job on a quarter of the range (fio cannot verify
#    what another job overwrote), checking what it wrote as it goes
#    (verify_backlog) and at the end; one job fsyncs every 16 writes, one
#    writes with O_SYNC (FUA), one fdatasyncs every 8.  Each writes half
#    of its quarter, so that clusters written in part remain.
# Each write's offset and length go to a log for qw_untouched.
qw_fio() {
	local q=$((QW_MB / 4)) h=$((QW_MB * 128))
	local -a g=(--filename="/dev/mapper/$1" --rw=randwrite --bssplit=4k/70:64k/25:1M/5
		--ioengine=libaio --direct=1 --iodepth=16 --log_offset=1)
	rm -f "$SCRATCH/$1"-fio-*.log
	fio_ok "${g[@]}" --write_lat_log="$SCRATCH/$1-fio-race" \
		--name=race --numjobs=4 --size="${QW_MB}M" --io_size="${q}M"
	fio_ok "${g[@]}" --write_lat_log="$SCRATCH/$1-fio-v" \
		--verify=crc32c --verify_backlog=64 --size="${q}M" --io_size="${h}K" \
		--name=v0 --offset=0 \
		--name=v1 --offset="${q}M" --fsync=16 \
		--name=v2 --offset="$((2 * q))M" --sync=1 \
		--name=v3 --offset="$((3 * q))M" --fdatasync=8
}

# qw_fio_empty NAME [DIR]: qw_fio on an empty image (in DIR if given).
qw_fio_empty() {
	local img
	img=$(q2_new "$1" 64M cluster_size=65536)
	if [ -n "${2:-}" ]; then
		mv "$img" "$2/" && img=$2/${img##*/} || return 1
	fi
	qw_dm "$1" "$img" 80M
	qw_fio "$1"
	qw_finish "$1" "$img" "$1: empty image after fio" 65536
	diag "$1: allocated clusters: $QW_ALLOC, image end: $QW_END"
	[ "$QW_ALLOC" -gt 0 ] || fail "$1: no cluster allocated"
}

# On ext4, new clusters are zeroed around the data by write-zeroes; on
# tmpfs (write-zeroes refused) by the zero page in the data's bio.
test_qcow2_write_fio_on_an_empty_image_verifies_and_leaves_it_clean() {
	local d
	q2_slow_skip
	qw_fio_empty fe
	d=$(mktemp -d /dev/shm/qw.XXXXXX)
	if [ "$(stat -f -c %T "$d")" = tmpfs ]; then
		qw_fio_empty ft "$d"
	else
		diag "/dev/shm is not a tmpfs: no run without write-zeroes"
	fi
	rm -rf "$d"
}

test_qcow2_write_fio_on_a_preallocated_image_writes_in_place() {
	local img end alloc
	q2_slow_skip
	# Every cluster allocated with refcount 1: nothing to allocate.
	img=$(q2_new fp 64M cluster_size=65536,preallocation=metadata)
	qw_check "$img" "preallocated image"
	end=$QW_END alloc=$QW_ALLOC
	qw_dm fp "$img" 80M
	qw_fio fp
	qw_finish fp "$img" "preallocated image after fio" 65536
	expect_eq "$QW_ALLOC" "$alloc" "allocated clusters"
	expect_eq "$QW_END" "$end" "image end offset"
}

test_qcow2_write_fio_on_an_overlay_of_a_two_deep_chain_copies_from_backing() {
	local base mid top p1 p2 sums
	p1=$(q2_pat 1)
	p2=$(q2_pat 2)
	# base (64K clusters) <- mid (4K clusters) <- top (64K clusters, the
	# one written): 4k writes into top's clusters copy the rest from mid,
	# which has data, zeros and holes down to base.
	base=$(q2_new fb 64M cluster_size=65536)
	q2_io "$base" "write -s $p1 0 64M"
	mid=$(q2_new fm 64M cluster_size=4096 -b "$base" -F qcow2)
	q2_io "$mid" "write -s $p2 1M 3M" "write -z 8M 2M" "write -P 0x22 $((20 << 20)) 4M" \
		"write -s $p2 $(((30 << 20) + 512)) 100000"
	top=$(q2_new ft 64M cluster_size=65536 -b "$mid" -F qcow2)
	q2_io "$top" "write -P 0x33 $((5 << 20)) 1M" "write -z $((9 << 20)) 128k"
	q2_dm fb "$base"
	q2_dm fm "$mid" backing /dev/mapper/fb
	sums=$(md5sum "$base" "$mid")
	# What qemu reads of the chain before the writes: fio's writes aside,
	# the node must read the same afterwards.
	qemu-img convert -O raw "$top" "$SCRATCH/ft-before.ref"
	qw_dm ft "$top" 80M backing /dev/mapper/fm
	qw_fio ft
	qw_finish ft "$top" "overlay after fio" 65536 "$SCRATCH/ft-before.ref"
	expect_eq "$(md5sum "$base" "$mid")" "$sums" "backing images"
}

# ---- round trips ----------------------------------------------------

# qw_round_trip NAME OPTIONS CS: qemu-io writes patterns into an image of
# two L2 tables' reach, the node writes others over and between them
# (in place, into new clusters, into a compressed cluster and zero
# clusters, across the L2 tables' boundary, the last sector); qemu-io
# reads every one back; then qemu-io writes and the node reads.
qw_round_trip() {
	local name=$1 cs=$3 img l2 v model
	l2=$((cs * cs / 8))
	v=$((2 * l2))
	img=$(q2_new "$name" "$v" "$2")
	q2_io "$img" \
		"write -P 0x11 0 $((16 * cs))" \
		"write -P 0x12 $((20 * cs)) $cs" \
		"write -c -P 0x13 $((24 * cs)) $cs" \
		"write -z $((28 * cs)) $((2 * cs))" \
		"write -P 0x14 $((32 * cs)) $((2 * cs))" "write -z $((32 * cs)) $cs" \
		"write -P 0x15 $((l2 - cs)) $cs"
	model=$(qw_model "$img")
	qw_dm "$name" "$img" $((v + (4 << 20)))
	qw_write "/dev/mapper/$name" --ref "$model" \
		4608:512:0x21 \
		$((16 * cs - 4096)):8192:0x22 \
		$((20 * cs + 1024)):1024:0x23 \
		$((24 * cs + 1024)):1024:0x24 \
		$((29 * cs - 2048)):4096:0x25 \
		$((32 * cs + 1024)):1024:0x26 \
		$((l2 - 2048)):4096:0x27 \
		$((l2 + 8 * cs)):$((3 * cs)):0x28 \
		$((v - 512)):512:0x29
	qw_expect "$name" "$model" "$name after its writes"
	qw_remove "$name"
	qw_check "$img" "$name after the node's writes"
	qw_qemu_reads "$img" "$model"
	# And back: qemu-io over what the node allocated, the node reads.
	q2_io "$img" "write -P 0x31 $((16 * cs + 512)) 512" "write -P 0x32 $((l2 - cs)) $((2 * cs))" \
		"write -z $((l2 + 8 * cs)) $cs"
	q2_dm "$name" "$img"
	q2_same "$name" "$img" "$name after qemu-io wrote again"
}

test_qcow2_write_round_trips_with_qemu_io() {
	q2_fast && qw_round_trip rt2 compat=0.10,cluster_size=4096 4096
	qw_round_trip rt3 cluster_size=16384 16384
}

test_qcow2_write_suspend_leaves_the_image_clean() {
	local img model
	img=$(q2_new sus 16M cluster_size=65536)
	q2_io "$img" "write -P 0x41 0 1M"
	model=$(qw_model "$img")
	qw_dm sus "$img" 32M
	qw_write /dev/mapper/sus --ref "$model" $((512 << 10)):1M:r1 $(((3 << 20) + 4096)):4096:r2 \
		$((15 << 20)):1M:r3
	# Suspended, all metadata is on the file device: qemu reads the image.
	dmsetup suspend sus
	qw_check "$img" "image of the suspended node"
	qw_compare "$img" "$model" "image of the suspended node"
	dmsetup resume sus
	qw_write /dev/mapper/sus --ref "$model" 0:4096:r4 $((8 << 20)):64K:r5
	qw_expect sus "$model" "after resume"
	qw_finish sus "$img" "after suspend, resume and removal"
}
