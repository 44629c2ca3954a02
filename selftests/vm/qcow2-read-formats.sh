#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# bgraph-qcow2 reads images of every format variation like QEMU: cluster
# and refcount sizes, extended L2 (subclusters), compressed clusters,
# preallocation, resized images and bitmaps.

# shellcheck source=lib-qcow2.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-qcow2.sh"

# q2_sub_size CS: the virtual size q2_fill_sub wants.
q2_sub_size() {
	echo $((16 * $1 > (4 << 20) ? 16 * $1 : 4 << 20))
}

# q2_check NAME IMG WHAT [KEY VALUE...]: node NAME over IMG (with those
# optional arguments) reads like qemu.
q2_check() {
	local name=$1 img=$2 what=$3
	shift 3
	q2_dm "$name" "$img" "$@" || return 1
	q2_same "$name" "$img" "$what"
}

# q2_case WHAT CMD...: start one case of a matrix test, CMD, in the
# background, two at a time (the guest has two CPUs; most of a case is
# process start-up); a case must use its own names.  It runs with errexit
# (in a plain `CMD || ...` it would not); q2_cases_passed waits for all
# and fails the test if any failed, naming them.
Q2_JOBS=2
q2_case() {
	local what=$1
	shift
	q2_pat 1 >/dev/null
	q2_pat 2 >/dev/null
	while [ ${#Q2_PIDS[@]} -ge $Q2_JOBS ]; do
		q2_case_wait
	done
	("$@") &
	Q2_PIDS+=($!)
	Q2_WHATS+=("$what")
}

q2_case_wait() {
	local rc=0
	wait "${Q2_PIDS[0]}" || rc=$?
	[ $rc -eq 0 ] || {
		diag "case failed: ${Q2_WHATS[0]}"
		Q2_FAILED+="${Q2_FAILED:+; }${Q2_WHATS[0]}"
	}
	Q2_PIDS=("${Q2_PIDS[@]:1}")
	Q2_WHATS=("${Q2_WHATS[@]:1}")
}

q2_cases_passed() {
	while [ ${#Q2_PIDS[@]} -gt 0 ]; do
		q2_case_wait
	done
	[ -z "${Q2_FAILED:-}" ] || fail "failed cases: $Q2_FAILED"
}

# ---- the image matrix -----------------------------------------------

q2_fill_case() {	# NAME OPTIONS CS [nocompress]
	local img
	img=$(q2_new "$1" "$(q2_fill_size "$3")" "$2")
	q2_fill "$img" "$3" "${4:-}"
	q2_check "$1" "$img" "$1 ($2)"
}

test_qcow2_cluster_and_refcount_sizes_read_like_qemu() {
	q2_case "cluster_size=512 refcount_bits=64" \
		q2_fill_case c512 cluster_size=512,refcount_bits=64 512
	q2_fast && q2_case "cluster_size=4K refcount_bits=1" \
		q2_fill_case c4k cluster_size=4096,refcount_bits=1 4096
	q2_case "cluster_size=64K refcount_bits=16 lazy_refcounts=on" \
		q2_fill_case c64k cluster_size=65536,refcount_bits=16,lazy_refcounts=on 65536
	q2_fast && q2_case "cluster_size=2M refcount_bits=8 compression_type=zstd" \
		q2_fill_case c2m cluster_size=2097152,refcount_bits=8,compression_type=zstd 2097152
	q2_fast && q2_case "compat=0.10 cluster_size=4K" \
		q2_fill_case v2c4k compat=0.10,cluster_size=4096 4096
	q2_cases_passed
}

q2_sub_case() {	# NAME CS [RAW_BACKING_MB]
	local img base
	local -a opt=()
	if [ -n "${3:-}" ]; then
		base=$(q2_raw "$1-base" "$3")
		img=$(q2_new "$1" "$(q2_sub_size "$2")" "extended_l2=on,cluster_size=$2" -b "$base" -F raw)
		opt=(backing "$(losetup -r -f --show "$base")")
	else
		img=$(q2_new "$1" "$(q2_sub_size "$2")" "extended_l2=on,cluster_size=$2")
	fi
	q2_fill_sub "$img" "$2"
	q2_check "$1" "$img" "$1 extended_l2 ${3:+over raw}" "${opt[@]}"
}

test_qcow2_extended_l2_subclusters_read_like_qemu() {
	q2_fast && q2_case "extended_l2=on cluster_size=16K" q2_sub_case x16k 16384
	q2_case "extended_l2=on cluster_size=64K over raw" q2_sub_case x64k 65536 4
	q2_fast && q2_case "extended_l2=on cluster_size=2M over raw" q2_sub_case x2m 2097152 16
	q2_cases_passed
}

q2_compressed_case() {	# NAME SRC OPTIONS [qemu-io CMD...]
	local img=$SCRATCH/$1.img name=$1 src=$2 opts=$3
	shift 3
	qemu-img convert -c -O qcow2 -o "$opts" "$src" "$img"
	[ $# -eq 0 ] || q2_io "$img" "$@"
	q2_check "$name" "$img" "$name (convert -c $opts)"
}

test_qcow2_compressed_clusters_read_like_qemu() {
	local src p1
	p1=$(q2_pat 1)
	src=$(q2_new src "$(q2_fill_size 4096)" cluster_size=4096)
	q2_fill "$src" 4096
	q2_fast && q2_case "zstd cluster_size=64K" q2_compressed_case zs64k "$src" \
		cluster_size=65536,compression_type=zstd
	q2_case "zstd cluster_size=2M extended_l2=on" q2_compressed_case zs2m "$src" \
		cluster_size=2097152,compression_type=zstd,extended_l2=on
	q2_case "zlib compat=0.10 cluster_size=512" q2_compressed_case zv2 "$src" \
		compat=0.10,cluster_size=512
	# Compressed clusters overwritten in part (QEMU copies the rest to a
	# new cluster), with zeros, and unmapped.
	q2_fast && q2_case "zlib partly overwritten" q2_compressed_case zw "$src" cluster_size=65536 \
		"write -s $p1 1000 3000" "write -z 131072 65536" "write -z -u 196608 65536"
	q2_cases_passed
}

test_qcow2_preallocated_images_read_like_qemu() {
	q2_slow_skip
	q2_case "preallocation=metadata" q2_fill_case pm \
		preallocation=metadata,cluster_size=65536 65536 nocompress
	q2_case "preallocation=falloc compat=0.10" q2_fill_case pf \
		preallocation=falloc,compat=0.10,cluster_size=4096 4096 nocompress
	q2_case "preallocation=metadata extended_l2=on" q2_fill_case pmx \
		preallocation=metadata,extended_l2=on,cluster_size=65536 65536 nocompress
	q2_cases_passed
}

q2_resize_case() {	# NAME
	local img p1
	p1=$(q2_pat 1)
	img=$(q2_new "$1" 4M cluster_size=4096)
	q2_io "$img" "write -s $p1 0 4M"
	# Growing moves the L1 table; shrinking leaves it longer than needed.
	qemu-img resize -q "$img" +8M
	q2_io "$img" "write -s $p1 $(((10 << 20) + 512)) 1M" "write -z 1M 64k"
	qemu-img resize -q --shrink "$img" $(((11 << 20) + 4096))
	q2_check "$1" "$img" "$1 grown then shrunk"
}

q2_bitmap_case() {	# NAME
	local img
	img=$(q2_new "$1" 4M cluster_size=65536)
	q2_io "$img" "write -s $(q2_pat 2) 64k 1M"
	# Persistent dirty bitmaps: an autoclear bit, a header extension and
	# bitmap clusters the reader must leave alone.
	qemu-img bitmap --add "$img" b0
	qemu-img bitmap --add -g 4096 "$img" b1
	q2_check "$1" "$img" "$1 with bitmaps"
}

test_qcow2_resized_and_bitmap_images_read_like_qemu() {
	q2_slow_skip
	q2_case "grown and shrunk" q2_resize_case rsz
	q2_case "persistent bitmaps" q2_bitmap_case bmp
	q2_cases_passed
}
