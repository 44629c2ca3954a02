#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# bgraph-qcow2 metadata that writing changes beyond L2 entries and
# refcounts: the refcount table grows, a reloaded writable table reads
# the image again, and sub-cluster writes on 512-byte and 4K devices.
# QEMU is the oracle: qemu-img check clean (no errors, no leaks) after the
# node is removed, and qemu-img compare equal to what the node returned.

# The helpers of the write tests (qw_dm, qw_check; it sources lib-qcow2.sh);
# run.sh registers only this file's tests.
# shellcheck source=lib-qcow2-write.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-qcow2-write.sh"

test_qcow2_write_grows_the_refcount_table() {
	local img data=$SCRATCH/grow.data mb=6 rt1
	# 512-byte clusters with 64-bit refcounts: a refcount block covers
	# 32 KiB of file and the first table 2 MiB, so 6 MiB written grow
	# the table twice.
	img=$(q2_new grow 8M cluster_size=512,refcount_bits=64)
	head -c $((mb << 20)) /dev/urandom >"$data"
	qw_dm grow "$img" 16M
	mark_log
	dd if="$data" of=/dev/mapper/grow bs=256k oflag=direct status=none
	expect_match "$(log_since_mark)" "grow: refcount table grown to 4 clusters" "kernel log"
	cmp -n $((mb << 20)) "$data" /dev/mapper/grow || fail "the node reads other data"
	dmsetup remove grow
	losetup -d "/dev/${Q2_LOOP[grow]}"
	qw_check "$img" "after growing"
	rt1=$(od -An -tu4 --endian=big -j56 -N4 "$img" | tr -d ' ')
	expect_eq "$rt1" 4 "refcount_table_clusters in the header"
	qemu-io -f qcow2 -c "read -v 0 512" "$img" >/dev/null || fail "qemu-io cannot read it"
	qemu-img convert -O raw "$img" "$SCRATCH/grow.raw"
	cmp -n $((mb << 20)) "$data" "$SCRATCH/grow.raw" || fail "qemu reads other data"
}

test_qcow2_writable_reload_reads_the_image_again() {
	local img t a=$SCRATCH/rl.a b=$SCRATCH/rl.b
	img=$(q2_new rl 8M cluster_size=65536)
	head -c 1M /dev/urandom >"$a"
	head -c 1M /dev/urandom >"$b"
	qw_dm rl "$img" 16M
	t=$(dmsetup table rl)
	# The new table is read now; the old one then allocates clusters
	# the new one must know about when it takes over.
	dmsetup reload rl --table "$t"
	dd if="$a" of=/dev/mapper/rl bs=64k seek=16 oflag=direct status=none
	dmsetup resume rl
	dd if="$b" of=/dev/mapper/rl bs=64k seek=64 oflag=direct status=none
	cmp -n 1M "$a" <(dd if=/dev/mapper/rl bs=64k skip=16 count=16 status=none) ||
		fail "data written before the resume"
	cmp -n 1M "$b" <(dd if=/dev/mapper/rl bs=64k skip=64 count=16 status=none) ||
		fail "data written after the resume"
	dmsetup remove rl
	losetup -d "/dev/${Q2_LOOP[rl]}"
	qw_check "$img" "after a reload between writes"
	qemu-img convert -O raw "$img" "$SCRATCH/rl.raw"
	cmp -n 1M "$a" "$SCRATCH/rl.raw" 0 1048576 ||
		fail "qemu reads other data where the old table wrote"
	cmp -n 1M "$b" "$SCRATCH/rl.raw" 0 4194304 ||
		fail "qemu reads other data where the new table wrote"
}

# Sub-cluster writes: 512-byte ones on a 512-byte device mix allocated and
# unallocated subclusters in one bio (never read back and rewritten, since
# other bios may write the allocated ones in place); on a 4Kn device, 4K
# subclusters (128K clusters; 2K ones could not be remapped and are
# refused, with a reason).
test_qcow2_write_extended_l2_subclusters_on_512_and_4k_devices() {
	local base img ss l lb bs out cs
	base=$(q2_raw xbase 16)
	img=$(q2_new x2k 16M cluster_size=65536,extended_l2=on -b "$base" -F raw)
	truncate -s 32M "$img"
	l=$(losetup -b 4096 -f --show "$img")
	q2_refusals x2k "0 32768 bgraph-qcow2 $l" \
		"Subcluster size is smaller than the file device's logical block size"
	losetup -d "$l"
	for ss in 512 4096; do
		cs=65536
		[ "$ss" = 512 ] || cs=131072
		img=$(q2_new "x$ss" 16M cluster_size=$cs,extended_l2=on -b "$base" -F raw)
		q2_io "$img" "write -P 3 1M 6k" "write -P 4 3M 64k"
		truncate -s 32M "$img"
		lb=$(losetup -r -f --show "$base")
		l=$(losetup -b "$ss" -f --show "$img")
		dmsetup create "x$ss" --table "0 32768 bgraph-qcow2 $l 2 backing $lb"
		bs=512-16k
		[ "$ss" = 512 ] || bs=4k-16k
		out=$(fio --name=v --filename="/dev/mapper/x$ss" --rw=randwrite --bsrange=$bs \
			--direct=1 --ioengine=libaio --iodepth=16 --size=4M --offset=0 \
			--verify=crc32c --do_verify=1 --io_size=$((FIO_MB / 8))M \
			--randrepeat=0 2>&1) || { diag "$out"; fail "fio on ${ss}-byte sectors"; }
		dd if="/dev/mapper/x$ss" of="$SCRATCH/x$ss.raw" bs=1M status=none
		dmsetup remove "x$ss"
		losetup -d "$l" "$lb"
		qw_check "$img" "extended L2, ${ss}-byte sectors"
		out=$(qemu-img compare -F raw "$img" "$SCRATCH/x$ss.raw" 2>&1) ||
			{ diag "$out"; fail "qemu reads other data (${ss}-byte sectors)"; }
	done
}
