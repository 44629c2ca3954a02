#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Discard and write-zeroes through writable bgraph-qcow2 nodes: whole
# clusters freed, zero flags set, zeros (not the backing) read after.

# shellcheck source=lib-qcow2-write.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-qcow2-write.sh"

# ---- discard and write-zeroes ---------------------------------------

# qw_limits NAME: the node's discard and write-zeroes queue limits.
qw_limits() {
	local q
	q=/sys/block/$(devname "/dev/mapper/$1")/queue
	diag "discard_granularity $(cat "$q/discard_granularity")" \
		"discard_max_bytes $(cat "$q/discard_max_bytes")" \
		"write_zeroes_max_bytes $(cat "$q/write_zeroes_max_bytes")"
}

test_qcow2_write_discard_frees_whole_clusters() {
	local img model m=$((1 << 20)) alloc hosts
	img=$(q2_new dc 8M cluster_size=65536)
	q2_io "$img" "write -s $(q2_pat 1) 0 4M"
	model=$(qw_model "$img")
	qw_check "$img" "before the discards"
	alloc=$QW_ALLOC
	# Where the 16 clusters of [1M, 2M) are in the file: holes after.
	hosts=$(qemu-img map --output=json "$img" | python3 -c '
import json, sys
for e in json.load(sys.stdin):
    if e["data"] and "offset" in e:
        for g in range(max(e["start"], 1 << 20), min(e["start"] + e["length"], 2 << 20), 65536):
            print(e["offset"] + g - e["start"])')
	expect_eq "$(wc -w <<<"$hosts")" 16 "clusters of [1M, 2M) in the file"
	qw_dm dc "$img" 16M
	qw_limits dc
	blkdiscard -o $m -l $m /dev/mapper/dc			# 16 clusters
	blkdiscard -o $((2 * m + 4096)) -l 8192 /dev/mapper/dc	# part of one: kept
	blkdiscard -o $((3 * m - 32768)) -l 196608 /dev/mapper/dc # 2 whole, 2 parts
	blkdiscard -o $((6 * m)) -l $m /dev/mapper/dc		# nothing there
	qw_write - --ref "$model" $m:$m:0 $((3 * m)):128K:0
	qw_expect dc "$model" "after the discards"
	qw_finish dc "$img" "after the discards"
	diag "allocated clusters: $alloc before, $QW_ALLOC after"
	expect_eq "$((alloc - QW_ALLOC))" 18 "clusters freed"
	# The discards reached the file device: its file has holes there.
	# shellcheck disable=SC2086
	python3 - "$img" $hosts <<-"PY" || fail "freed clusters still hold data in the image file"
	import os, sys
	fd = os.open(sys.argv[1], os.O_RDONLY)
	def data_in(h):
	    try:
	        return os.lseek(fd, h, os.SEEK_DATA) < h + 65536
	    except OSError:	# ENXIO: no data after h
	        return False
	bad = [h for h in map(int, sys.argv[2:]) if data_in(h)]
	print("# freed clusters: %d, holes in the file: %d" % (len(sys.argv) - 2, len(sys.argv) - 2 - len(bad)))
	sys.exit(1 if bad else 0)
	PY
	qw_map "$img" 0:$m:data $m:$m:zero $((2 * m)):$m:data $((3 * m)):128K:zero \
		$((3 * m + 131072)):$((m - 131072)):data $((4 * m)):$((4 * m)):zero
}

test_qcow2_write_zeroes_set_zero_flags() {
	local img model m=$((1 << 20))
	q2_slow_skip
	img=$(q2_new wz 8M cluster_size=65536)
	q2_io "$img" "write -s $(q2_pat 1) 0 4M"
	model=$(qw_model "$img")
	qw_dm wz "$img" 16M
	qw_limits wz
	blkdiscard -z -o $m -l 512K /dev/mapper/wz			# 8 clusters
	blkdiscard -z -o $((2 * m + 4096)) -l 8192 /dev/mapper/wz	# part of one
	blkdiscard -z -o $((6 * m)) -l 128K /dev/mapper/wz		# unallocated
	qw_write - --ref "$model" $m:512K:0 $((2 * m + 4096)):8192:0
	qw_expect wz "$model" "after write-zeroes"
	qw_finish wz "$img" "after write-zeroes"
	qw_map "$img" 0:$m:data $m:512K:zero $((m + 524288)):512K:data $((6 * m)):128K:zero
}

test_qcow2_write_discard_over_backing_reads_zeros_not_backing() {
	local base img model k=1024 sum
	base=$(q2_raw dbb 4)
	sum=$(md5sum <"$base")
	img=$(q2_new db 4M cluster_size=65536 -b "$base" -F raw)
	q2_io "$img" "write -P 0x51 0 1M"
	model=$(qw_model "$img")
	qw_dm db "$img" 8M backing "$(losetup -r -f --show "$base")"
	blkdiscard -o $((512 * k)) -l $((256 * k)) /dev/mapper/db	# allocated here
	blkdiscard -o $((2048 * k)) -l $((256 * k)) /dev/mapper/db	# the backing's
	blkdiscard -z -o $((3072 * k)) -l $((128 * k)) /dev/mapper/db	# the backing's
	blkdiscard -o $((1028 * k)) -l $((8 * k)) /dev/mapper/db	# part: kept
	qw_write - --ref "$model" $((512 * k)):$((256 * k)):0 $((2048 * k)):$((256 * k)):0 \
		$((3072 * k)):$((128 * k)):0
	qw_expect db "$model" "after discards over a backing file"
	qw_finish db "$img" "after discards over a backing file"
	qw_map "$img" 0:$((512 * k)):data $((512 * k)):$((256 * k)):zero \
		$((768 * k)):$((256 * k)):data $((1024 * k)):$((1024 * k)):backing \
		$((2048 * k)):$((256 * k)):zero $((2304 * k)):$((768 * k)):backing \
		$((3072 * k)):$((128 * k)):zero $((3200 * k)):$((896 * k)):backing
	expect_eq "$(md5sum <"$base")" "$sum" "backing file"
}
