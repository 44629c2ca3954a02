#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Writable bgraph-qcow2 nodes and the image's header bits (dirty, corrupt,
# lazy refcounts) and the table's flags (read_only, round trips).

# shellcheck source=lib-qcow2-write.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-qcow2-write.sh"

# qw_probe: skip the test unless bgraph-qcow2 loads a plain writable
# table (for tests whose first writable table is not plain).
qw_probe() {
	local img
	img=$(q2_new probe 1M "")
	qw_dm probe "$img" 2M
	qw_remove probe
}

# ---- header bits ----------------------------------------------------

test_qcow2_write_dirty_or_corrupt_image_refused_writable() {
	local img good b l log
	img=$(q2_new dy 4M cluster_size=65536)
	q2_io "$img" "write -P 0x71 0 1M"
	qw_probe
	good=$(qw_model "$img")
	"$QBREAK" "$img" batch - <<-EOF
	$SCRATCH/dirty.img header incompatible_features cur|1
	$SCRATCH/corrupt.img header incompatible_features cur|2
	EOF
	for b in dirty corrupt; do
		truncate -s 8M "$SCRATCH/$b.img"
		l=$(losetup -f --show "$SCRATCH/$b.img")
		mark_log
		expect_fail dmsetup create "$b" --table "0 8192 bgraph-qcow2 $l"
		log=$(log_since_mark)
		diag "$(grep bgraph-qcow2 <<<"$log")"
		expect_match "$log" "bgraph-qcow2: .*qemu-img check -r all" "reason $b is refused writable"
		expect_no_match "$log" "$Q2_SPLAT" "kernel log"
		[ ! -e "/dev/mapper/$b" ] || fail "device $b left behind"
		[ ! -e "$CFS/nodes/$b" ] || fail "graph node $b left behind"
		# Read-only, it loads and reads.
		dmsetup create --readonly "$b" --table "0 8192 bgraph-qcow2 $l"
		cmp "$good" "/dev/mapper/$b" || fail "data of $b read-only"
		expect_match "$(qw_flags "$b")" "$b" "status flags of $b"
	done
}

# qw_incompat IMG: the header's incompatible feature bits.
qw_incompat() {
	local v
	v=$(od -An -j72 -N8 -t u8 --endian=big "$1") || return 1
	echo $((v))
}

test_qcow2_write_lazy_refcounts_image_dirty_while_written_clean_after() {
	local img model bits
	img=$(q2_new lz 8M cluster_size=65536,lazy_refcounts=on)
	q2_io "$img" "write -P 0x72 1M 1M"
	model=$(qw_model "$img")
	qw_dm lz "$img" 16M
	qw_write /dev/mapper/lz --ref "$model" 0:1M:r1 $((3 << 20)):4096:r2 $((1 << 20)):64K:r3
	bits=$(qw_incompat "$img")
	diag "incompatible features while written: $bits, status: $(q2_status lz)"
	[ $((bits & 1)) = 1 ] || fail "image not marked dirty while written"
	# A suspend writes everything back and clears the bit; the next
	# allocating write sets it again.
	dmsetup suspend lz
	bits=$(qw_incompat "$img")
	[ $((bits & 1)) = 0 ] || fail "image still dirty while suspended (incompatible features $bits)"
	qw_check "$img" "lazy refcounts image while suspended"
	dmsetup resume lz
	qw_write /dev/mapper/lz --ref "$model" $((5 << 20)):4096:r4
	bits=$(qw_incompat "$img")
	[ $((bits & 1)) = 1 ] || fail "image not marked dirty again after the resume"
	qw_expect lz "$model" "lazy refcounts image"
	qw_finish lz "$img" "lazy refcounts image after removal"
	bits=$(qw_incompat "$img")
	[ $((bits & 1)) = 0 ] || fail "image still dirty after removal (incompatible features $bits)"
}

# ---- the table ------------------------------------------------------

test_qcow2_write_read_only_option_refuses_writes() {
	local base img sum out
	qw_probe
	base=$(q2_raw rob 4)
	img=$(q2_new ro 4M cluster_size=65536 -b "$base" -F raw)
	q2_io "$img" "write -P 0x31 0 1M"
	qw_dm ro "$img" 8M backing "$(losetup -r -f --show "$base")" read_only
	sum=$(md5sum <"$img")
	out=$(dd if=/dev/zero of=/dev/mapper/ro bs=4k count=1 oflag=direct 2>&1) &&
		fail "a write to a read_only node succeeded"
	diag "$out"
	expect_match "$out" "Input/output error|Read-only file system|Operation not permitted" "write refused"
	out=$(dd if=/dev/zero of=/dev/mapper/ro bs=4k count=1 seek=300 conv=fsync 2>&1) &&
		fail "a buffered write to a read_only node succeeded"
	expect_fail blkdiscard -o 0 -l 1M /dev/mapper/ro
	expect_fail blkdiscard -z -o 2M -l 1M /dev/mapper/ro
	expect_eq "$(md5sum <"$img")" "$sum" "image after the writes"
	expect_match "$(dmsetup table ro)" " read_only( |$)" "table"
	q2_same ro "$img" "read_only node"
}

test_qcow2_write_table_flags_round_trip() {
	local base lb n img t w c rest opts o
	q2_slow_skip
	qw_probe
	base=$(q2_raw tfb 4)
	lb=$(losetup -r -f --show "$base")
	n=0
	for opts in "read_only" "error_if_no_space" \
		"backing $lb l2_cache_size 128K read_only error_if_no_space"; do
		n=$((n + 1))
		img=$(q2_new "tf$n" 4M cluster_size=65536 -b "$base" -F raw)
		# shellcheck disable=SC2086
		qw_dm "tf$n" "$img" 8M $opts
		t=$(dmsetup table "tf$n")
		# <start> <len> bgraph-qcow2 <file> <count> <words>...
		read -r _ _ _ _ c rest <<<"$t"
		w=$(wc -w <<<"$rest")
		expect_eq "$c" "$w" "option count of '$t'"
		for o in $opts; do
			case $o in
			/dev/*) o="backing $(cat "/sys/block/${o#/dev/}/dev")" ;;
			128K) o="l2_cache_size 131072" ;;
			backing | l2_cache_size) continue ;;
			esac
			[[ " $rest " == *" $o "* ]] || fail "'$o' not in table '$t'"
		done
		dmsetup reload "tf$n" --table "$t"
		dmsetup resume "tf$n"
		expect_eq "$(dmsetup table "tf$n")" "$t" "table after a reload of itself"
	done
}
