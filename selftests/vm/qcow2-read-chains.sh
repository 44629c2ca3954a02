#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# bgraph-qcow2 backing chains read like QEMU: three images deep, a raw
# backing image, an overlay larger than its backing, a backing file named
# in the header but no child.

# shellcheck source=lib-qcow2.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-qcow2.sh"

test_qcow2_three_image_chain_reads_like_qemu_and_shows_in_the_graph() {
	local lb lm lt tree n
	q2_chain
	q2_same top "$SCRATCH/top.img" "top of the chain"
	q2_same mid "$SCRATCH/mid.img" "mid of the chain"
	lb=${Q2_LOOP[base]} lm=${Q2_LOOP[mid]} lt=${Q2_LOOP[top]}
	for n in base mid top; do
		expect_eq "$(cat $CFS/nodes/$n/kind)" qcow2 "$n kind"
		expect_eq "$(cat $CFS/nodes/$n/read_only)" 1 "$n read_only"
	done
	expect_eq "$(sort $CFS/nodes/top/children | tr '\n' ';')" "backing mid;file $lt;" "top children"
	expect_eq "$(cat $CFS/nodes/mid/parents)" "top backing" "mid parents"
	expect_eq "$(sort $CFS/graph | tr '\n' ';')" \
		"base file $lb;mid backing base;mid file $lm;top backing mid;top file $lt;" "graph"
	tree=$(dmsetup ls --tree -o ascii)
	diag "$tree"
	# top at the root, mid below it, base below mid, three loop devices.
	expect_match "$(head -n1 <<<"$tree")" "^top \([0-9]+:[0-9]+\)$" "root of dmsetup ls --tree"
	expect_eq "$(awk 'index($0, "-mid (") { m = index($0, "mid (") }
		index($0, "-base (") { b = index($0, "base (") }
		END { print (m > 1 && b > m) }' <<<"$tree")" 1 "base nested under mid in dmsetup ls --tree"
	expect_eq "$(grep -c '(7:[0-9]*)' <<<"$tree")" 3 "loop devices in dmsetup ls --tree"
}

test_qcow2_raw_image_as_backing_reads_like_qemu() {
	local base top
	q2_slow_skip
	base=$(q2_raw base 4)
	top=$(q2_new top 4M cluster_size=4096 -b "$base" -F raw)
	q2_io "$top" "write -s $(q2_pat 1) 1M 1M" "write -z 3M 64k" "write -P 0x44 $(((2 << 20) + 512)) 1000"
	q2_dm top "$top" backing "$(losetup -r -f --show "$base")"
	q2_same top "$top" "qcow2 over raw"
}

test_qcow2_overlay_larger_than_backing_reads_zeros_past_its_end() {
	local base top
	# A backing 3 sectors longer than 4M: the overlay's unallocated
	# clusters there read the backing up to its end, then zeros.
	base=$SCRATCH/base.img
	head -c $(((4 << 20) + 1536)) /dev/urandom >"$base"
	top=$(q2_new top 8M cluster_size=4096 -b "$base" -F raw)
	q2_io "$top" "write -P 0x55 $(((4 << 20) - 8192)) 4096" "write -P 0x66 6M 4096"
	q2_dm top "$top" backing "$(losetup -r -f --show "$base")"
	q2_same top "$top" "8M overlay on a 4M + 1536 backing"
	cmp <(head -c 1M /dev/zero) <(dd if=/dev/mapper/top bs=1M skip=5 count=1 iflag=direct status=none) ||
		fail "5M..6M of the overlay, past the backing's end, is not zero"
}

test_qcow2_backing_file_in_header_without_child_reads_zeros() {
	local base top spec
	q2_slow_skip
	base=$(q2_raw base 4)
	top=$(q2_new top 4M "" -b "$base" -F raw)
	q2_io "$top" "write -P 0x12 1M 1M" "write -z 2M 1M"
	q2_dm top "$top"
	spec="json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":\"$top\"},\"backing\":null}"
	q2_same top "$spec" "overlay without its backing child"
	cmp <(head -c 1M /dev/zero) <(dd if=/dev/mapper/top bs=1M count=1 iflag=direct status=none) ||
		fail "unallocated 0..1M does not read zeros"
}
