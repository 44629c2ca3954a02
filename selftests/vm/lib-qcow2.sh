#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Helpers of the bgraph-qcow2 tests (qcow2-*.sh), sourced by each: nodes
# checked against QEMU, what a node reads must be what `qemu-img convert
# -O raw` makes of the same image or chain.  Images are made by qemu-img
# and qemu-io; broken ones by patching good ones with qcow2-break.py.

QBREAK=$BGRAPH_SRC/selftests/vm/qcow2-break.py
Q2_SPLAT='BUG:|WARNING:|Oops|KASAN|UBSAN|general protection|Call Trace|hung task'

# On the debug kernel (lib.sh gives it a smaller FIO_MB), KASAN and
# lockdep under TCG make each process cost seconds.  There, and on 6.1 to
# keep make check's time down, run each kernel code path once and leave
# the variations of the image format, which the same code reads, to 6.12:
# q2_slow_skip skips a test, and the matrix, broken-image and bad-entry
# tests keep one case per path.  make check-all (BG_ALL) runs the
# variations on 6.1 too; the debug kernel keeps to one case per path.
Q2_SLOW=0
[ "$FIO_MB" -ge 32 ] || Q2_SLOW=1
[ "$BG_ALL" = 1 ] || case $(uname -r) in 6.1.*) Q2_SLOW=1 ;; esac

q2_slow_skip() {
	[ $Q2_SLOW = 0 ] || skip "image format variations: run on 6.12"
}

# q2_fast: succeed where the variations run (to prefix the cases left out
# elsewhere).
q2_fast() { [ $Q2_SLOW = 0 ]; }

# ---- images ---------------------------------------------------------

# q2_pat N: a pattern file for `qemu-io -c "write -s FILE"` (the file
# repeats to fill the write).  1: 4093 random bytes, incompressible;
# 2: 1021 bytes of random and text, compressible.  Their odd lengths make
# every sector of a write different from the others.
q2_pat() {
	local f=$SCRATCH/pat$1.ref
	if [ ! -s "$f" ]; then
		case $1 in
		1) head -c 4093 /dev/urandom >"$f" ;;
		*) { head -c 200 /dev/urandom; yes bgraph-qcow2 | head -c 821; } >"$f" ;;
		esac
	fi
	echo "$f"
}

# q2_new NAME SIZE OPTIONS [QEMU-IMG ARGS...]: a new qcow2 image made with
# `qemu-img create -o OPTIONS` (may be ""); prints its path.
q2_new() {
	local f=$SCRATCH/$1.img size=$2 opts=$3
	shift 3
	qemu-img create -q -f qcow2 ${opts:+-o "$opts"} "$@" "$f" "$size" >&2 || return 1
	echo "$f"
}

# q2_raw NAME MB: a raw image of MB random MiB; prints its path.
q2_raw() {
	local f=$SCRATCH/$1.img
	head -c "$(($2 << 20))" /dev/urandom >"$f" || return 1
	echo "$f"
}

# q2_io IMG CMD...: run the qemu-io commands CMD... on IMG, in order.
q2_io() {
	local img=$1 c out
	local -a args=()
	shift
	for c in "$@"; do
		args+=(-c "$c")
	done
	out=$(qemu-io -f qcow2 "${args[@]}" "$img" 2>&1) ||
		{ diag "$out"; fail "qemu-io on $img"; return 1; }
}

# q2_vsize IMG: the virtual size of IMG in bytes, read from its header
# (qemu-img info costs a second in a TCG guest).
q2_vsize() {
	local v
	v=$(od -An -j24 -N8 -t u8 --endian=big "$1") || return 1
	echo $((v))
}

# q2_sectors IMG: the virtual size in 512-byte sectors, rounded up.
q2_sectors() {
	local b
	b=$(q2_vsize "$1") || return 1
	echo $(((b + 511) / 512))
}

# q2_fill_base CS: where q2_fill's second part starts: 8 clusters, at
# least 2M.  q2_fill_size CS: the virtual size q2_fill wants.
q2_fill_base() {
	echo $((8 * $1 > (2 << 20) ? 8 * $1 : 2 << 20))
}

q2_fill_size() {
	echo $(($(q2_fill_base "$1") + (3 << 20) + ($1 > (1 << 20) ? $1 : 1 << 20) + 1536))
}

# q2_fill IMG CS [nocompress]: the usual mix, for cluster size CS, in a
# q2_fill_size image: clusters 0-2 written, then 1 zeroed (a preallocated
# zero cluster in v3), a partial cluster 3, zero clusters 4-5 never
# written, a compressed cluster 6 (unless nocompress: QEMU writes those
# only to unallocated clusters); then from A = q2_fill_base: byte-unaligned
# writes across A + 1M and across A + 2M (the reach of an L2 table with 4K
# clusters), an unmapping zero write inside data, and a partial last
# cluster (the size is not a cluster multiple).
q2_fill() {
	local img=$1 cs=$2 v a p1 p2 c=()
	v=$(q2_fill_size "$cs")
	a=$(q2_fill_base "$cs")
	p1=$(q2_pat 1)
	p2=$(q2_pat 2)
	[ "${3:-}" = nocompress ] || c=("write -c -s $p2 $((6 * cs)) $cs")
	q2_io "$img" \
		"write -s $p1 0 $((3 * cs))" \
		"write -z $cs $cs" \
		"write -s $p2 $((3 * cs + 512)) 1000" \
		"write -z $((4 * cs)) $((2 * cs))" \
		"${c[@]}" \
		"write -s $p1 $((a + (1 << 20) - 1000)) 3000" \
		"write -s $p2 $((a + (2 << 20) - cs)) $((2 * cs))" \
		"write -s $p1 $((a + (2 << 20) + cs)) 512k" \
		"write -z -u $((a + (2 << 20) + cs + 131072)) 128k" \
		"write -s $p2 $((v - 3000)) 3000"
}

# q2_fill_sub IMG CS: the mix for extended L2 (CS >= 16K, subclusters of
# CS/32), in a q2_sub_size image: single subclusters, a zero subcluster in
# an unallocated cluster, byte-unaligned writes inside subclusters, zero
# subclusters inside an allocated cluster, a whole-cluster zero write, a
# compressed cluster, a write across a cluster boundary, and the last
# subcluster.
q2_fill_sub() {
	local img=$1 cs=$2 sc=$(($2 / 32)) v p1 p2 c=()
	v=$(q2_vsize "$img")
	p1=$(q2_pat 1)
	p2=$(q2_pat 2)
	[ "${3:-}" = nocompress ] || c=("write -c -s $p2 $((6 * cs)) $cs")
	q2_io "$img" \
		"write -s $p1 $((2 * sc)) $((2 * sc))" \
		"write -z $((5 * sc)) $sc" \
		"write -s $p2 $((cs + 1000)) 5000" \
		"write -s $p1 $((2 * cs)) $cs" \
		"write -z $((2 * cs + 4 * sc)) $((3 * sc))" \
		"write -z $((4 * cs)) $cs" \
		"${c[@]}" \
		"write -s $p1 $((8 * cs - sc)) $((2 * sc))" \
		"write -s $p2 $((v - sc)) $sc"
}

# ---- nodes ----------------------------------------------------------

# q2_loop IMG: a read-only loop device over IMG (padded to whole sectors
# first: the loop device would drop a partial one); prints it.
q2_loop() {
	truncate -s %512 "$1" && losetup -r -f --show "$1"
}

# q2_dm NAME IMG [KEY VALUE...]: a read-only bgraph-qcow2 node NAME over a
# loop device on IMG, as long as its virtual size; KEY VALUE... are the
# optional arguments.  Q2_LOOP[NAME] is the loop device's name (loop3).
declare -gA Q2_LOOP=()
q2_dm() {
	local name=$1 img=$2 l s
	shift 2
	s=$(q2_sectors "$img") || return 1
	l=$(q2_loop "$img") || return 1
	Q2_LOOP[$name]=${l##*/}
	dmsetup create --readonly "$name" --table "0 $s bgraph-qcow2 $l${1:+ $# $*}" ||
		{ diag "$(dmesg | tail -n 5)"; fail "table of $name refused"; return 1; }
}

# q2_status NAME: the INFO fields of NAME's status (after the target name).
q2_status() {
	dmsetup status "$1" | sed -n 's/^0 [0-9]* bgraph-qcow2 //p'
}

# q2_teardown: remove every dm device and loop device (images stay).
q2_teardown() {
	local d
	for _ in 1 2 3 4 5; do
		d=$(dmsetup ls 2>/dev/null | awk '$1 != "No" {print $1}')
		[ -z "$d" ] && break
		for d in $d; do
			dmsetup remove "$d" >/dev/null 2>&1 || true
		done
	done
	losetup -D 2>/dev/null || true
}

# ---- the oracle -----------------------------------------------------

# q2_diff GOT WANT: say where two files differ, as ranges of 512-byte
# sectors (at most 8), and what each side holds there.
q2_diff() {
	python3 - "$1" "$2" <<-"PY"
	import sys
	a, b = (open(p, "rb").read() for p in sys.argv[1:3])
	if len(a) != len(b):
	    print("# sizes differ: got %d bytes, want %d" % (len(a), len(b)))
	def kind(s):
	    return "zeros" if not s.strip(b"\0") else "data %s..." % s[:8].hex()
	n, runs, start = min(len(a), len(b)) // 512, [], None
	for i in range(n + 1):
	    d = i < n and a[i * 512:(i + 1) * 512] != b[i * 512:(i + 1) * 512]
	    if d and start is None:
	        start = i
	    elif not d and start is not None:
	        runs.append((start, i))
	        start = None
	total = sum(e - s for s, e in runs)
	print("# %d differing sectors in %d ranges" % (total, len(runs)))
	for s, e in runs[:8]:
	    print("# bytes [%d, %d) 0x%x: got %s, want %s" % (s * 512, e * 512,
	          s * 512, kind(a[s * 512:e * 512]), kind(b[s * 512:e * 512])))
	PY
}

# q2_same NODE SRC WHAT: /dev/mapper/NODE holds, byte for byte, what
# `qemu-img convert -O raw SRC` writes; SRC is a qcow2 image (with its
# backing chain) or a json: spec.  Checked with `qemu-img compare`, which
# reads both sides (O_DIRECT) in one process: each process costs a second
# in a TCG guest.  Convert, dd and cmp run only to describe a difference.
q2_same() {
	local dev=/dev/mapper/$1 want=$SCRATCH/$1-want.ref got=$SCRATCH/$1-got.ref out
	local -a fmt=(-F qcow2)
	[ "${2#json:}" = "$2" ] || fmt=()
	out=$(qemu-img compare -T none -f raw "${fmt[@]}" "$dev" "$2" 2>&1) && return 0
	diag "qemu-img compare: $out"
	qemu-img convert -O raw "$2" "$want" || { fail "$3: qemu-img convert $2"; return 1; }
	out=$(dd if="$dev" of="$got" bs=1M iflag=direct status=none 2>&1) ||
		{ diag "$out"; diag "$(dmesg | tail -n 5)"; fail "$3: reading $dev failed"; return 1; }
	cmp -s "$got" "$want" || q2_diff "$got" "$want"
	fail "$3: $dev differs from qemu-img convert of $2"
}

# ---- chains ---------------------------------------------------------

# q2_chain: base.img <- mid.img <- top.img, 16M each, as nodes base, mid
# (backing base) and top (backing mid); each layer overwrites parts of
# the one below, and top zeroes data of base.
q2_chain() {
	local base mid top p1 p2
	p1=$(q2_pat 1)
	p2=$(q2_pat 2)
	base=$(q2_new base 16M "")
	q2_io "$base" "write -s $p1 0 6M" "write -P 0x11 8M 4M" "write -s $p2 15M 1M"
	mid=$(q2_new mid 16M cluster_size=4096 -b "$base" -F qcow2)
	q2_io "$mid" "write -s $p2 1M 1M" "write -z 4M 1M" "write -P 0x22 9M 64k" \
		"write -s $p1 $(((10 << 20) + 512)) 100000"
	top=$(q2_new top 16M "" -b "$mid" -F qcow2)
	q2_io "$top" "write -s $p1 512K 100000" "write -z 2M 2M" "write -z 8M 64k" \
		"write -P 0x33 $(((15 << 20) + 512 * 1024)) 256k" "write -s $p2 $(((5 << 20) + 4096)) 4096"
	q2_dm base "$base"
	q2_dm mid "$mid" backing /dev/mapper/base
	q2_dm top "$top" backing /dev/mapper/mid
}

# ---- broken images --------------------------------------------------

# q2_refusals NAME TABLE REASON...: create each NAME from its TABLE (one
# process each, no more: a process costs a second in a TCG guest); each
# must be refused with "bgraph-qcow2: REASON" in the kernel log (the
# refusals in order), without a splat, leaving no dm device and no graph
# node behind.
q2_refusals() {
	local -a name=() table=() reason=() got=()
	local i j=0 n log bad=""
	while [ $# -ge 3 ]; do
		name+=("$1")
		table+=("$2")
		reason+=("$3")
		shift 3
	done
	n=${#name[@]}
	mark_log
	for ((i = 0; i < n; i++)); do
		if dmsetup create --readonly "${name[i]}" --table "${table[i]}" >/dev/null 2>&1; then
			diag "${name[i]}: loaded; want '${reason[i]}'"
			bad+=" ${name[i]}"
			dmsetup remove "${name[i]}"
			continue
		fi
		if [ -e /dev/mapper/"${name[i]}" ] || compgen -G "$CFS/nodes/*" >/dev/null; then
			diag "${name[i]}: left behind: $(ls /dev/mapper/"${name[i]}" $CFS/nodes 2>&1)"
			bad+=" ${name[i]}"
			q2_teardown
		fi
	done
	log=$(log_since_mark)
	expect_no_match "$log" "$Q2_SPLAT" "kernel log"
	mapfile -t got < <(sed -n 's/.*device-mapper: table: [0-9:]*: bgraph-qcow2: //p' <<<"$log")
	for ((i = 0; i < n; i++)); do
		[[ " $bad " == *" ${name[i]} "* ]] && continue
		if [[ "${got[j]:-}" != "${reason[i]}" && "${got[j]:-}" != "${reason[i]} ("* ]]; then
			diag "${name[i]}: refused with '${got[j]:-nothing}', want '${reason[i]}'"
			bad+=" ${name[i]}"
		fi
		j=$((j + 1))
	done
	diag "$n tables refused, wrongly:${bad:- none}"
	[ -z "$bad" ] || fail "not refused as they should be:$bad"
}
