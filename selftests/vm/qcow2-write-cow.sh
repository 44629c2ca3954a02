#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Copy-on-write in bgraph-qcow2: clusters shared with an internal
# snapshot, subclusters of extended L2 allocated over a backing image.

# shellcheck source=lib-qcow2-write.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-qcow2-write.sh"

# ---- copy-on-write --------------------------------------------------

test_qcow2_write_internal_snapshot_keeps_its_data() {
	local img model s1 m=$((1 << 20))
	img=$(q2_new sn 8M cluster_size=65536)
	q2_io "$img" "write -s $(q2_pat 1) 0 4M" "write -z $((5 * m)) 64k"
	qemu-img snapshot -c s1 "$img"
	s1=$SCRATCH/sn-s1.ref
	qemu-img convert -O raw -l snapshot.name=s1 "$img" "$s1"
	model=$(qw_model "$img")
	qw_dm sn "$img" 16M
	# Into shared clusters (copied first), twice into one of them (in
	# place the second time), into a shared zero cluster, into new ones.
	qw_write /dev/mapper/sn --ref "$model" 4096:4096:r1 $m:$m:r2 8192:4096:r3 \
		$((5 * m + 4096)):4096:r4 $((6 * m)):64K:r5 $((4 * m - 512)):1024:r6
	qw_expect sn "$model" "after writes over snapshot s1"
	qw_finish sn "$img" "after writes over snapshot s1"
	qemu-img convert -O raw -l snapshot.name=s1 "$img" "$SCRATCH/sn-s1-after.ref"
	cmp -s "$s1" "$SCRATCH/sn-s1-after.ref" ||
		{ q2_diff "$SCRATCH/sn-s1-after.ref" "$s1"; fail "snapshot s1 changed"; }
	expect_match "$(qemu-img snapshot -l "$img")" " s1 " "snapshot list"
}

test_qcow2_write_extended_l2_allocates_subclusters_over_backing() {
	local base img model k=1024
	base=$(q2_raw xb 4)
	img=$(q2_new xl 4M extended_l2=on,cluster_size=65536 -b "$base" -F raw)
	# Cluster 2 whole, subcluster 1 of cluster 3 (2K subclusters).
	q2_io "$img" "write -P 0x61 $((128 * k)) 64k" "write -P 0x62 $((194 * k)) 2k"
	model=$(qw_model "$img")
	qw_dm xl "$img" 8M backing "$(losetup -r -f --show "$base")"
	# 4k writes into new clusters, 512 bytes inside a subcluster (the
	# rest of it copied from backing), new subclusters of an allocated
	# cluster, in place, and across clusters 5 and 6.
	qw_write /dev/mapper/xl --ref "$model" 0:4096:r1 $((72 * k)):4096:r2 \
		$((84 * k + 512)):512:r3 $((198 * k)):4096:r4 $((132 * k)):4096:r5 \
		$((382 * k)):4096:r6
	qw_expect xl "$model" "after subcluster writes"
	qw_finish xl "$img" "after subcluster writes"
	qw_map "$img" 0:$((4 * k)):data $((4 * k)):$((68 * k)):backing \
		$((72 * k)):$((4 * k)):data $((76 * k)):$((8 * k)):backing \
		$((84 * k)):$((2 * k)):data $((86 * k)):$((42 * k)):backing \
		$((128 * k)):$((64 * k)):data $((192 * k)):$((2 * k)):backing \
		$((194 * k)):$((2 * k)):data $((196 * k)):$((2 * k)):backing \
		$((198 * k)):$((4 * k)):data $((202 * k)):$((180 * k)):backing \
		$((382 * k)):$((4 * k)):data $((386 * k)):$((62 * k)):backing
}
