#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Broken qcow2 images: refused at load with their reason, bad L2 entries
# failing only their cluster at read time, dirty and corrupt bits.

# shellcheck source=lib-qcow2.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-qcow2.sh"

# q2_bc NAME REASON PATCHES: a broken image for q2_broken_run: the good
# image with PATCHES (qcow2-break.py commands, ";" between them) must be
# refused with REASON.  With Q2_SLOW, only those in Q2_BC_SLOW: one per
# way out of the constructor (probe, header, unknown feature, tables,
# L1 entries, refcount table entries, overlaps).
Q2_BC_SLOW="magic hl96 inc5 aes l1big l2end rbend ovl2l1"
q2_bc() {
	[ $Q2_SLOW = 0 ] || [[ " $Q2_BC_SLOW " == *" $1 "* ]] || return 0
	Q2_BC+=("$1" "$2" "$3")
}

# q2_broken_run: make every q2_bc image (in one python run) from a good
# 4K-cluster image of 4M with two L2 tables (data at 0 and at 2M) and a
# compressed cluster, and check their refusals, each as a node over the
# whole 4M.
q2_broken_run() {
	local good spec=$SCRATCH/break.spec i
	local -a r=()
	good=$(q2_new good 4M cluster_size=4096)
	q2_io "$good" "write -s $(q2_pat 1) 0 64k" "write -P 0x41 2M 64k" \
		"write -c -P 0x42 $((3 << 20)) 4096"
	for ((i = 0; i < ${#Q2_BC[@]}; i += 3)); do
		echo "$SCRATCH/${Q2_BC[i]}.img ${Q2_BC[i + 2]}"
	done >"$spec"
	"$QBREAK" "$good" batch "$spec"
	for ((i = 0; i < ${#Q2_BC[@]}; i += 3)); do
		r+=("${Q2_BC[i]}" "0 8192 bgraph-qcow2 $(q2_loop "$SCRATCH/${Q2_BC[i]}.img")"
			"${Q2_BC[i + 1]}")
	done
	q2_refusals "${r[@]}"
}

test_qcow2_broken_images_refused_with_their_reason() {
	local -a Q2_BC=()
	local ov="image metadata overlaps (header, L1, L2 or refcount structures)"
	# The header.
	q2_bc magic "bad magic: not a qcow2 image" "header magic 0x514649fa"
	q2_bc v4 "unsupported qcow2 version (2 and 3 are)" "header version 4"
	q2_bc cb8 "cluster_bits out of range (9 to 21)" "header cluster_bits 8"
	q2_bc cb22 "cluster_bits out of range (9 to 21)" "header cluster_bits 22"
	q2_bc inc5 "unknown incompatible feature bits set" "header incompatible_features cur|1<<5"
	q2_bc hl96 "bad header_length (at least 104, a multiple of 8)" "header header_length 96"
	q2_bc hl108 "bad header_length (at least 104, a multiple of 8)" "header header_length 108"
	q2_bc hlbig "header_length larger than a cluster" "header header_length cluster_size+8"
	q2_bc ro7 "refcount_order out of range (0 to 6)" "header refcount_order 7"
	q2_bc ct1 "compression type and its incompatible bit disagree" "header compression_type 1"
	q2_bc xl2 "extended L2 entries need clusters of 16 KiB or more" \
		"header incompatible_features cur|1<<4"
	q2_bc aes "encrypted images are not supported" "header crypt_method 1"
	q2_bc luks "encrypted images are not supported" "header crypt_method 2"
	q2_bc extdata "external data files are not supported" "header incompatible_features cur|1<<2"
	q2_bc bfout "backing file name outside the header cluster" \
		"header backing_file_offset cluster_size-8 ; header backing_file_size 16"
	q2_bc nsnap "too many snapshots (QEMU's limit is 65536)" "header nb_snapshots 65537"
	# Header extensions.
	q2_bc cryptext "crypto header extension in an unencrypted image" \
		"ext 0x0537be77 00000000000000000000000000000000"
	q2_bc extbig "header extension overflows the header cluster" "ext 0x12345678 '' --length 100000"
	q2_bc bfmt "backing format name too long" "ext 0xe2792aca 7177777777777777777777777777777777777777"
	q2_bc dfext "external data files are not supported" "ext 0x44415441 2f6e6f77686572650000"
	# Table sizes and offsets.
	q2_bc l1big "L1 table too large (QEMU's limit is 32 MiB)" "header l1_size (32<<20)//8+1"
	q2_bc l1small "L1 table too small for the virtual size" \
		"header size (l1_size+1)*l2_entries*cluster_size"
	q2_bc rt0 "image has no refcount table" "header refcount_table_clusters 0"
	q2_bc rtbig "refcount table too large (QEMU's limit is 8 MiB)" \
		"header refcount_table_clusters (8<<20)//cluster_size+1"
	q2_bc l1al "L1 table offset not cluster-aligned" "header l1_table_offset cur+512"
	q2_bc l1end "L1 table outside the file device or in the header" \
		"header l1_table_offset file_end+16*cluster_size"
	q2_bc l1hdr "L1 table outside the file device or in the header" "header l1_table_offset 0"
	q2_bc rtal "refcount table offset not cluster-aligned" "header refcount_table_offset cur+512"
	q2_bc rtend "refcount table outside the file device or in the header" \
		"header refcount_table_offset file_end+cluster_size"
	q2_bc rthdr "refcount table outside the file device or in the header" \
		"header refcount_table_offset 0"
	# Table entries.
	q2_bc l2al "L2 table offset not cluster-aligned" "l1 0 cur+512"
	q2_bc l2end "L2 table outside the file device or in the header" \
		"l1 1 COPIED|file_end+16*cluster_size"
	q2_bc l1res "L1 entry has reserved bits set" "l1 0 cur|1<<56"
	q2_bc rbend "refcount block outside the file device or in the header" \
		"reftable 0 file_end+16*cluster_size"
	# Overlaps.
	q2_bc ovl1rt "$ov" "header l1_table_offset refcount_table_offset"
	q2_bc ovl2l1 "$ov" "l1 0 COPIED|l1_table_offset"
	q2_bc ovl2rt "$ov" "l1 0 COPIED|refcount_table_offset"
	q2_bc ovl2l2 "$ov" "l1 1 l1[0]"
	q2_bc ovrbl1 "$ov" "reftable 0 l1_table_offset"
	q2_broken_run
}

# ---- bad L2 entries, met at read time -------------------------------

# q2_bad_entries IMG CASE...: CASE is "NAME:CLUSTER:REASON:PATCHES".
# Each NAME (a copy of IMG with PATCHES; one python run for all) loads;
# reading it whole (O_DIRECT, a 64K cluster at a time, going on after
# errors) fails with EIO on cluster CLUSTER only, the rest reads what qemu
# reads from IMG, and the kernel log names the node, the guest offset and
# REASON.
q2_bad_entries() {
	local img=$1 ref=$SCRATCH/$1.ref spec=$SCRATCH/entry.spec cs=65536 c log out
	local name cl reason patches bad="" check=()
	img=$SCRATCH/$1.img
	shift
	qemu-img convert -O raw "$img" "$ref"
	for c in "$@"; do
		IFS=: read -r name cl reason patches <<<"$c"
		echo "$SCRATCH/$name.img $patches"
	done >"$spec"
	"$QBREAK" "$img" batch "$spec"
	mark_log
	for c in "$@"; do
		IFS=: read -r name cl reason patches <<<"$c"
		q2_dm "$name" "$SCRATCH/$name.img" || { bad+=" $name"; continue; }
		out=$(dd if=/dev/mapper/"$name" of="$SCRATCH/$name.ref" bs=$cs iflag=direct \
			conv=noerror,sync 2>&1) || true
		if [ "$(grep -c 'Input/output error' <<<"$out")" != 1 ]; then
			diag "$name: want one EIO, dd says: $out"
			bad+=" $name"
		fi
		check+=("$SCRATCH/$name.ref:$cl")
	done
	# Only the bad cluster differs (dd's conv=sync reads it as zeros).
	python3 - "$ref" "${check[@]}" <<-"PY" || bad+=" data"
	import sys
	want = open(sys.argv[1], "rb").read()
	cs, ok = 65536, True
	for arg in sys.argv[2:]:
	    path, c = arg.rsplit(":", 1)
	    got, lo, hi = open(path, "rb").read(), int(c) * cs, (int(c) + 1) * cs
	    if got[:lo] != want[:lo] or got[hi:] != want[hi:] or got[lo:hi].strip(b"\0"):
	        print("# %s: wrong data around or in cluster %s" % (path, c))
	        ok = False
	sys.exit(0 if ok else 1)
	PY
	log=$(log_since_mark)
	expect_no_match "$log" "$Q2_SPLAT" "kernel log"
	for c in "$@"; do
		IFS=: read -r name cl reason patches <<<"$c"
		grep -qF "$name: bad L2 entry for guest offset $((cl * cs)): $reason" <<<"$log" ||
			{ diag "$name: no '$name: bad L2 entry for guest offset $((cl * cs)): $reason'"; bad+=" $name"; }
	done
	[ -z "$bad" ] || { diag "$log"; fail "bad L2 entries not handled as they should be:$bad"; }
}

test_qcow2_bad_l2_entries_fail_only_their_cluster() {
	local img x v2 p1 c=65536
	p1=$(q2_pat 1)
	img=$(q2_new l2 2M cluster_size=$c)
	# Data in clusters 0-3, a compressed cluster 5, a zero cluster 7.
	q2_io "$img" "write -s $p1 0 256k" "write -c -P 0x51 $((5 * c)) 64k" \
		"write -z $((7 * c)) 64k"
	# The same with extended L2 entries, and in a version 2 image.
	x=$(q2_new l2x 2M extended_l2=on,cluster_size=$c)
	q2_io "$x" "write -s $p1 0 256k" "write -s $p1 $((2 * c + 4096)) 2048" \
		"write -c -P 0x52 $((5 * c)) 64k"
	v2=$(q2_new l2v2 2M compat=0.10,cluster_size=$c)
	q2_io "$v2" "write -s $p1 0 256k"
	if [ $Q2_SLOW = 1 ]; then
		# One per way to a bad entry: data, compressed, subclusters.
		q2_bad_entries l2 \
			"bdend:1:data cluster outside the file device:l2 $c COPIED|file_end+16*cluster_size" \
			"bcend:5:compressed cluster outside the file device:l2 $((5 * c)) COMPRESSED|file_end+16*cluster_size"
		q2_bad_entries l2x \
			"bxboth:1:subcluster both allocated and zero:l2bitmap $c cur|(cur&(1<<31))<<32"
		return
	fi
	q2_bad_entries l2 \
		"bdend:1:data cluster outside the file device:l2 $c COPIED|file_end+16*cluster_size" \
		"bdal:2:data cluster offset not cluster-aligned:l2 $((2 * c)) cur+512" \
		"bdres:1:L2 entry has reserved bits set:l2 $c cur|2" \
		"bzres:7:L2 entry has reserved bits set:l2 $((7 * c)) cur|1<<56" \
		"bcend:5:compressed cluster outside the file device:l2 $((5 * c)) COMPRESSED|file_end+16*cluster_size" \
		"bccop:5:compressed L2 entry has the copied flag:l2 $((5 * c)) cur|COPIED"
	# QEMU's rule: one subcluster both allocated and zero (here the last)
	# spoils its whole cluster.
	q2_bad_entries l2x \
		"bxboth:1:subcluster both allocated and zero:l2bitmap $c cur|(cur&(1<<31))<<32" \
		"bxun:4:unallocated cluster has allocated subclusters:l2bitmap $((4 * c)) 1" \
		"bxcbm:5:compressed L2 entry has a subcluster bitmap:l2bitmap $((5 * c)) 1"
	q2_bad_entries l2v2 "bv2z:1:zero cluster in a version 2 image:l2 $c cur|1"
}

test_qcow2_dirty_and_corrupt_bits_load_and_show_in_status() {
	local img good=$SCRATCH/good.ref b log
	q2_slow_skip
	img=$(q2_new flags 4M cluster_size=4096)
	q2_io "$img" "write -s $(q2_pat 1) 0 64k" "write -P 0x41 2M 64k"
	qemu-img convert -O raw "$img" "$good"
	"$QBREAK" "$img" batch - <<-EOF
	$SCRATCH/dirty.img header incompatible_features cur|1
	$SCRATCH/corrupt.img header incompatible_features cur|2
	$SCRATCH/both.img header incompatible_features cur|3
	EOF
	mark_log
	for b in dirty corrupt both; do
		q2_dm "$b" "$SCRATCH/$b.img"
		cmp "$good" /dev/mapper/"$b" || fail "data of $b"
	done
	expect_match "$(q2_status dirty)" "^[0-9]+ [0-9]+ [0-9]+ [0-9]+ read_only dirty$" "dirty status"
	expect_match "$(q2_status corrupt)" "^[0-9]+ [0-9]+ [0-9]+ [0-9]+ read_only corrupt$" "corrupt status"
	expect_match "$(q2_status both)" "^[0-9]+ [0-9]+ [0-9]+ [0-9]+ read_only dirty,corrupt$" "both status"
	log=$(log_since_mark)
	expect_match "$log" "bgraph-qcow2: dirty: image is marked dirty; reading only" "dirty warning"
	expect_match "$log" "bgraph-qcow2: corrupt: image is marked corrupt; reading only" "corrupt warning"
}
