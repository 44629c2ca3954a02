#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# bgraph-qcow2's table and status: the L2 cache's counters and size, table
# round trips, the read-only option, bad table arguments.

# shellcheck source=lib-qcow2.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-qcow2.sh"

# ---- status and the L2 cache ----------------------------------------

test_qcow2_status_counts_l2_cache_hits_and_misses() {
	local img s h m u t f h2
	img=$(q2_new s 8M cluster_size=4096)
	q2_io "$img" "write -s $(q2_pat 1) 0 8M"
	q2_dm s "$img"
	dd if=/dev/mapper/s of=/dev/null bs=64k iflag=direct status=none
	s=$(q2_status s)
	diag "after one pass: $s"
	expect_match "$s" "^[0-9]+ [0-9]+ [0-9]+ [0-9]+ read_only -$" "status INFO"
	read -r h m u t _ f <<<"$s"
	[ "$m" -gt 0 ] || fail "no L2 misses after reading it all"
	[ "$u" -gt 0 ] && [ "$u" -le "$t" ] || fail "slices used $u of $t"
	dd if=/dev/mapper/s of=/dev/null bs=64k iflag=direct status=none
	read -r h2 _ <<<"$(q2_status s)"
	[ "$h2" -gt "$h" ] || fail "no more L2 hits on the second pass ($h -> $h2)"
}

test_qcow2_l2_cache_size_sets_slices_total() {
	local img t big small
	img=$(q2_new c 4M cluster_size=4096)
	q2_io "$img" "write -s $(q2_pat 1) 0 3M" "write -z 1M 1M"
	q2_dm c "$img" l2_cache_size 1M
	dd if=/dev/mapper/c of=/dev/null bs=1M iflag=direct status=none
	read -r _ _ _ big _ <<<"$(q2_status c)"
	# Reloaded with a smaller cache: fewer slices, the same data.
	t=$(dmsetup table c)
	expect_match "$t" " bgraph-qcow2 [0-9]+:[0-9]+ 2 l2_cache_size 1048576$" "table"
	dmsetup reload --readonly c --table "${t% 2 l2_cache_size *} 2 l2_cache_size 64K"
	dmsetup resume c
	expect_match "$(dmsetup table c)" " 2 l2_cache_size 65536$" "table after reload"
	read -r _ _ _ small _ <<<"$(q2_status c)"
	diag "slices_total: $big with 1M, $small with 64K"
	[ "$small" -lt "$big" ] || fail "64K cache: $small slices, 1M cache: $big"
	[ "$small" -gt 0 ] || fail "no slices"
	q2_same c "$img" "after reload with l2_cache_size 64K"
}

test_qcow2_table_round_trips() {
	local base img lb li t
	base=$(q2_raw base 4)
	img=$(q2_new t 4M cluster_size=4096 -b "$base" -F raw)
	q2_io "$img" "write -P 0x5a 1M 64k"
	lb=$(losetup -r -f --show "$base")
	q2_dm t "$img" backing "$lb" l2_cache_size 128K
	li=/dev/${Q2_LOOP[t]}
	t=$(dmsetup table t)
	expect_eq "$t" "0 8192 bgraph-qcow2 $(cat /sys/block/${li#/dev/}/dev) 4 backing $(cat /sys/block/${lb#/dev/}/dev) l2_cache_size 131072" "table"
	dmsetup reload --readonly t --table "$t"
	dmsetup resume t
	expect_eq "$(dmsetup table t)" "$t" "table after a reload of itself"
	q2_same t "$img" "after a reload of its own table"
}

# ---- read-only ------------------------------------------------------

test_qcow2_read_only_table_and_option_refuse_writes() {
	local img l before t
	img=$(q2_new w 4M "")
	q2_io "$img" "write -P 0x31 0 1M"
	# As qemu-img made it, the file ends inside the L1 table: a loop
	# device drops that partial sector, so the image cannot be written.
	l=$(losetup -f --show "$img")
	if [ $(($(stat -c %s "$img") % 512)) -ne 0 ]; then
		q2_refusals w "0 8192 bgraph-qcow2 $l" \
			"image tables run past the end of the file device: grow the file to write"
	fi
	losetup -d "$l"
	truncate -s 8M "$img"
	l=$(losetup -f --show "$img")
	before=$(md5sum <"$img")
	# A writable table with the read_only flag: the target refuses.
	dmsetup create w --table "0 8192 bgraph-qcow2 $l 1 read_only"
	t=$(dmsetup table w)
	expect_match "$t" " bgraph-qcow2 [0-9]+:[0-9]+ 1 read_only$" "table"
	expect_fail dd if=/dev/zero of=/dev/mapper/w bs=4k count=1 oflag=direct
	expect_fail dd if=/dev/zero of=/dev/mapper/w bs=4k count=1 seek=100 conv=fsync
	expect_fail blkdiscard -o 0 -l 1M /dev/mapper/w
	dmsetup remove w
	# Loaded read-only, on the same loop device, writes fail too.
	dmsetup create --readonly w --table "0 8192 bgraph-qcow2 $l"
	expect_fail dd if=/dev/zero of=/dev/mapper/w bs=4k count=1 oflag=direct
	expect_fail blkdiscard -o 0 -l 1M /dev/mapper/w
	expect_eq "$(md5sum <"$img")" "$before" "image after the writes"
	q2_same w "$img" "after the writes"
}

test_qcow2_bad_table_arguments_refused_with_a_reason() {
	local l notq
	l=$(q2_loop "$(q2_new t 4M "")")
	notq=$(q2_loop "$(q2_raw notq 1)")
	q2_refusals \
		b1 "0 8192 bgraph-qcow2" "Invalid argument count: <file_dev> [<#opt_args> <opt_args>...]" \
		b2 "0 8192 bgraph-qcow2 $l 2 colour red" "Unknown optional argument" \
		b3 "0 8192 bgraph-qcow2 $l 2 l2_cache_size 0" "Invalid l2_cache_size: a byte count from 1 to 1G" \
		b4 "0 8192 bgraph-qcow2 $l 2 l2_cache_size 2G" "Invalid l2_cache_size: a byte count from 1 to 1G" \
		b5 "0 8192 bgraph-qcow2 $l 3 backing $l" \
		"Optional argument count does not match the arguments given" \
		b6 "0 8192 bgraph-qcow2 $l 4 backing $l backing $l" "Option backing given twice" \
		b7 "0 8192 bgraph-qcow2 $l 1 backing" "Option backing needs a value" \
		b8 "0 8192 bgraph-qcow2 /dev/no-such-device" "Cannot open the child device" \
		b9 "0 8192 bgraph-qcow2 $l 2 backing /dev/no-such-device" "Cannot open the child device" \
		b10 "0 2048 bgraph-qcow2 $notq" "bad magic: not a qcow2 image" \
		b11 "0 8193 bgraph-qcow2 $l" "Target length is larger than the image's virtual size" \
		b12 "0 8192 bgraph-qcow2 $l 2 read_only read_only" "Option read_only given twice" \
		b13 "0 8192 bgraph-qcow2 $l 3 error_if_no_space read_only error_if_no_space" \
		"Option error_if_no_space given twice"
}
