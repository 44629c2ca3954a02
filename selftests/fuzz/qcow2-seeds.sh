#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# qcow2-seeds.sh DIR: small qcow2 images made by qemu-img and qemu-io, the
# seed corpus of fuzz_qcow2.  Small clusters and virtual sizes, so every
# image fits in the fuzzer's -max_len, but each with a different feature:
# v2 and v3, refcount widths, extended L2, zero and preallocated-zero
# clusters, zlib and zstd compression, an internal snapshot, a backing
# file, a dirty image, a new image cut to whole sectors (its L1 table past
# the end, as on a loop device).
set -euo pipefail
dir=$1
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# img NAME CREATE-OPTIONS SIZE [QEMU-IO-COMMAND...]
img() {
	local name=$1 opts=$2 size=$3 c args=()
	shift 3
	qemu-img create -q -f qcow2 -o "$opts" "$tmp/$name" "$size"
	for c in "$@"; do
		args+=(-c "$c")
	done
	[ $# -eq 0 ] || qemu-io -f qcow2 "${args[@]}" "$tmp/$name" >/dev/null
	cp "$tmp/$name" "$dir/seed-$name"
}

img c512-v3 cluster_size=512 64k \
	'write -P 0x11 0 4k' 'write -P 0x22 8k 1k' 'write -z 2k 1k' \
	'write -c -P 0x33 16k 512' 'discard 9k 512'
img c512-v2 cluster_size=512,compat=0.10 32k \
	'write -P 0x44 0 2k' 'write -z 1k 512' 'write -P 0x55 20k 512'
img c4k-refcount1 cluster_size=4k,refcount_bits=1 64k \
	'write -P 0x66 0 8k' 'write -P 0x77 40k 4k'
img c4k-refcount64 cluster_size=4k,refcount_bits=64 64k \
	'write -P 0x66 4k 8k' 'write -z 4k 4k'
img c4k-prealloc-zero cluster_size=4k 64k \
	'write -P 0x88 0 16k' 'write -z 4k 8k' 'write -z 32k 4k'
img c16k-extl2 cluster_size=16k,extended_l2=on 256k \
	'write -P 0x99 0 512' 'write -P 0xaa 2k 1k' 'write -z 1k 512' \
	'write -z 16k 4k' 'write -P 0xbb 40k 512'
img c4k-zlib cluster_size=4k 64k \
	'write -c -P 0xcc 0 4k' 'write -c -P 0xdd 8k 4k' 'write -P 0xee 16k 4k'
img c4k-zstd cluster_size=4k,compression_type=zstd 64k \
	'write -c -P 0xcc 0 4k' 'write -c -P 0x12 4k 4k'
img c4k-snapshot cluster_size=4k 64k 'write -P 0x13 0 8k'
qemu-img snapshot -c snap1 "$tmp/c4k-snapshot"
qemu-io -f qcow2 -c 'write -P 0x14 4k 4k' "$tmp/c4k-snapshot" >/dev/null
cp "$tmp/c4k-snapshot" "$dir/seed-c4k-snapshot"
img c512-base cluster_size=512 16k 'write -P 0x15 0 4k'
qemu-img create -q -f qcow2 -o cluster_size=512 -b "$tmp/c512-base" \
	-F qcow2 "$tmp/c512-overlay"
qemu-io -f qcow2 -c 'write -P 0x16 1k 1k' "$tmp/c512-overlay" >/dev/null
cp "$tmp/c512-overlay" "$dir/seed-c512-overlay"
# lazy_refcounts and a crash: the dirty bit stays set.
qemu-img create -q -f qcow2 -o cluster_size=4k,lazy_refcounts=on \
	"$tmp/c4k-dirty" 64k
(qemu-io -f qcow2 -c 'write -P 0x17 0 4k' -c abort "$tmp/c4k-dirty" || true) \
	>/dev/null 2>&1
cp "$tmp/c4k-dirty" "$dir/seed-c4k-dirty"
qemu-img create -q -f qcow2 -o cluster_size=4k "$tmp/c4k-new-cut" 1M
truncate -s 12288 "$tmp/c4k-new-cut"
cp "$tmp/c4k-new-cut" "$dir/seed-c4k-new-cut"
