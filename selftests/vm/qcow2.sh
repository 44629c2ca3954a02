#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# bgraph-qcow2 nodes, checked against QEMU: what a node reads must be what
# `qemu-img convert -O raw` makes of the same image or chain.  Images are
# made by qemu-img and qemu-io; broken ones by patching good ones with
# qcow2-break.py.

QBREAK=$BGRAPH_SRC/selftests/vm/qcow2-break.py
Q2_SPLAT='BUG:|WARNING:|Oops|KASAN|UBSAN|general protection|Call Trace|hung task'

# On the debug kernel (lib.sh gives it a smaller FIO_MB), KASAN and
# lockdep under TCG make each process cost seconds.  There, and on 6.1 to
# keep make check's time down, run each kernel code path once and leave
# the variations of the image format, which the same code reads, to 6.12:
# q2_slow_skip skips a test, and the matrix, broken-image and bad-entry
# tests keep one case per path.
Q2_SLOW=0
[ "$FIO_MB" -ge 32 ] || Q2_SLOW=1
case $(uname -r) in 6.1.*) Q2_SLOW=1 ;; esac

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

# q2_sub_size CS: the virtual size q2_fill_sub wants.
q2_sub_size() {
	echo $((16 * $1 > (4 << 20) ? 16 * $1 : 4 << 20))
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

# q2_reads DEV REF SPEC...: read DEV with python and compare every read
# with the same bytes of REF.  SPEC: direct:OFF:LEN, an O_DIRECT read;
# buffered:OFF:LEN, a page-cache read; random:THREADS:READS:ALIGN:MAXLEN:SEED,
# THREADS threads each doing READS reads at random ALIGN-aligned offsets
# and lengths (O_DIRECT if ALIGN is a multiple of 512).
q2_reads() {
	python3 - "$@" <<-"PY" || { fail "reads of $1 differ from $2"; return 1; }
	import mmap, os, random, sys, threading
	dev, ref, specs = sys.argv[1], sys.argv[2], sys.argv[3:]
	want = open(ref, "rb").read()
	bad, count = [], 0
	def one(fd, buf, off, n, how):
	    try:
	        if buf is None:
	            got = os.pread(fd, n, off)
	        else:
	            m = memoryview(buf)[:n]
	            got = bytes(m[:os.preadv(fd, [m], off)])
	    except OSError as e:
	        bad.append("%s read of %d at %d: %s" % (how, n, off, e))
	        return
	    exp = want[off:off + n]
	    if got != exp:
	        i = next((i for i in range(min(len(got), len(exp))) if got[i] != exp[i]),
	                 min(len(got), len(exp)))
	        bad.append("%s read of %d at %d: got %d bytes, first difference at %d"
	                   % (how, n, off, len(got), off + i))
	def opener(direct):
	    fd = os.open(dev, os.O_RDONLY | (os.O_DIRECT if direct else 0))
	    return fd, (mmap.mmap(-1, 8 << 20) if direct else None)
	fds = {d: opener(d) for d in (False, True)}
	for spec in specs:
	    mode, *a = spec.split(":")
	    if mode in ("direct", "buffered"):
	        one(*fds[mode == "direct"], int(a[0], 0), int(a[1], 0), mode)
	        count += 1
	        continue
	    threads, reads, align, maxlen, seed = (int(x) for x in a)
	    def worker(t):
	        r = random.Random(seed * 1000 + t)
	        fd, buf = opener(align % 512 == 0)
	        for _ in range(reads):
	            n = r.randrange(1, maxlen // align + 1) * align
	            off = r.randrange(0, (len(want) - n) // align + 1) * align
	            one(fd, buf, off, n, "random")
	        os.close(fd)
	    ts = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
	    for t in ts:
	        t.start()
	    for t in ts:
	        t.join()
	    count += threads * reads
	print("# %d reads, %d bad" % (count, len(bad)))
	for b in bad[:8]:
	    print("# " + b)
	sys.exit(1 if bad else 0)
	PY
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

# ---- reads ----------------------------------------------------------

test_qcow2_unaligned_reads_match_qemu() {
	local img base ref=$SCRATCH/sub.ref cs=65536 e
	base=$(q2_raw base 4)
	# 64K clusters of 2K subclusters over a raw backing: short reads
	# cross data, zero and backing subclusters and cluster boundaries.
	img=$(q2_new sub 4M extended_l2=on,cluster_size=$cs -b "$base" -F raw)
	q2_fill_sub "$img" $cs
	q2_dm sub "$img" backing "$(losetup -r -f --show "$base")"
	qemu-img convert -O raw "$img" "$ref"
	e=$((4 << 20))
	q2_reads /dev/mapper/sub "$ref" \
		direct:512:512 direct:3584:1024 direct:4096:2048 direct:7680:1024 \
		direct:$((cs - 512)):1024 direct:$((cs - 2048)):6144 direct:1536:$((259 * 512)) \
		direct:$((127 * 512)):1536 direct:$((7 * cs - 512)):$((1 << 20)) \
		direct:$((e - 1536)):1536 direct:$((6 * cs + 512)):1024 \
		buffered:12345:1000 buffered:0:1 buffered:$((cs - 1)):2 buffered:4095:4098 \
		buffered:$((e - 1)):1 buffered:$((6 * cs + 333)):70000 buffered:2047:3 \
		random:1:300:512:$((300 * 512)):1 random:1:300:1:100000:2
}

test_qcow2_concurrent_random_reads_with_small_l2_cache_are_right() {
	local base img ref=$SCRATCH/top.ref m t s
	# 512-byte clusters: 512-byte L2 slices, 161 of them to map the
	# image, in the smallest cache; unallocated clusters read the raw
	# backing.
	base=$(q2_raw base 4)
	img=$(q2_new top "$(q2_fill_size 512)" cluster_size=512 -b "$base" -F raw)
	q2_fill "$img" 512
	q2_dm top "$img" backing "$(losetup -r -f --show "$base")" l2_cache_size 4K
	qemu-img convert -O raw "$img" "$ref"
	# Eight threads of random sector-aligned reads up to 256K: slices
	# are evicted and reloaded all the time.
	q2_reads /dev/mapper/top "$ref" random:8:50:512:262144:4
	s=$(q2_status top)
	diag "status: $s"
	read -r _ m _ t _ <<<"$s"
	[ "$m" -gt "$t" ] || fail "$m misses with $t slices: no evictions"
}

test_qcow2_internal_snapshots_read_the_active_state() {
	local img snap=$SCRATCH/snap.ref
	q2_slow_skip
	img=$(q2_new snap 4M cluster_size=4096)
	q2_io "$img" "write -s $(q2_pat 1) 0 2M" "write -P 0x21 3M 512k"
	qemu-img snapshot -c s1 "$img"
	q2_io "$img" "write -P 0x22 1M 64k" "write -z 1536k 256k" "write -z -u 3M 4096" \
		"write -P 0x23 2M 256k"
	qemu-img snapshot -c s2 "$img"
	q2_io "$img" "write -P 0x24 $(((2 << 20) + 4096)) 4096"
	q2_dm snap "$img"
	q2_same snap "$img" "active state after two snapshots"
	# Snapshot s1 differs from the active state: the node reads the
	# active L1 table, not the snapshot's.
	qemu-img convert -O raw -l snapshot.name=s1 "$img" "$snap"
	! cmp -s "$snap" /dev/mapper/snap || fail "node reads snapshot s1"
}

test_qcow2_two_images_in_one_table_read_at_their_offsets() {
	local a b la lb
	a=$(q2_new a 4M cluster_size=4096)
	q2_io "$a" "write -s $(q2_pat 1) 0 3M" "write -z 1M 64k"
	b=$(q2_new b 4M cluster_size=65536)
	q2_io "$b" "write -s $(q2_pat 2) 512k 1M" "write -c -P 0x71 64k 64k"
	la=$(q2_loop "$a")
	lb=$(q2_loop "$b")
	# All of a, then the first 2M of b.
	dmsetup create --readonly ab <<-EOT
	0 8192 bgraph-qcow2 $la
	8192 4096 bgraph-qcow2 $lb
	EOT
	qemu-img convert -O raw "$a" "$SCRATCH/a.ref"
	qemu-img convert -O raw "$b" "$SCRATCH/b.ref"
	cmp <(cat "$SCRATCH/a.ref"; head -c 2M "$SCRATCH/b.ref") /dev/mapper/ab ||
		fail "a and the start of b differ"
	expect_eq "$(sort $CFS/nodes/ab/children | tr '\n' ';')" \
		"file ${la##*/};file ${lb##*/};" "children of the concatenation"
}

# q2_same_region NODE IMG OFF LEN WHAT: bytes [OFF, OFF + LEN) of NODE
# are those of IMG, as qemu reads them.
q2_same_region() {
	local out win='"driver":"raw","offset":'$3',"size":'$4
	out=$(qemu-img compare -T none \
		"json:{$win,\"file\":{\"driver\":\"host_device\",\"filename\":\"/dev/mapper/$1\"}}" \
		"json:{$win,\"file\":{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":\"$2\"}}}" 2>&1) ||
		{ diag "$out"; fail "$5: [$3, +$4) differs"; return 1; }
}

test_qcow2_far_offsets_of_a_4t_image_read_like_qemu() {
	local img p1 g=$((1 << 30)) t=$((1 << 40))
	q2_slow_skip
	p1=$(q2_pat 1)
	img=$(q2_new far 4T cluster_size=65536)
	# Across 4 GiB (byte offsets past 32 bits), across 2 TiB (sector
	# numbers past 32 bits) and at the very end.
	q2_io "$img" "write -s $p1 0 64k" "write -s $p1 $((4 * g - 2048)) 8192" \
		"write -s $p1 $((2 * t - 32768)) 128k" "write -z $((2 * t + 32768)) 4096" \
		"write -s $p1 $((4 * t - 65536)) 64k"
	q2_dm far "$img"
	expect_eq "$(blockdev --getsize64 /dev/mapper/far)" $((4 * t)) "size"
	q2_same_region far "$img" $((4 * g - 65536)) 131072 "across 4 GiB"
	q2_same_region far "$img" $((2 * t - 65536)) 262144 "across 2 TiB"
	q2_same_region far "$img" $((3 * t)) 65536 "unallocated, at 3 TiB"
	q2_same_region far "$img" $((4 * t - 131072)) 131072 "the end"
}

test_qcow2_file_device_with_4k_sectors_reads_like_qemu() {
	local img l
	# 64K clusters on a device of 4K logical blocks (a 4Kn disk): the
	# header, L2 tables and data clusters are 4K-aligned; the compressed
	# cluster's data is not, as with any qcow2 file.  QEMU reads it all.
	img=$(q2_new s4k 4M cluster_size=65536)
	q2_io "$img" "write -s $(q2_pat 1) 0 1M" "write -c -s $(q2_pat 2) 1M 64k" "write -z 2M 64k"
	truncate -s %4096 "$img"
	l=$(losetup -r -b 4096 -f --show "$img")
	dmsetup create --readonly s4k --table "0 8192 bgraph-qcow2 $l" ||
		{ diag "$(dmesg | tail -n 3)"; fail "refused over a 4K-sector device"; return 1; }
	expect_eq "$(blockdev --getss /dev/mapper/s4k)" 4096 "logical block size of the node"
	q2_same s4k "$img" "over a 4K-sector file device"
	# 2K clusters cannot be remapped onto 4K blocks: refused, with why.
	img=$(q2_new s2k 4M cluster_size=2048)
	truncate -s %4096 "$img"
	l=$(losetup -r -b 4096 -f --show "$img")
	dmsetup remove s4k
	q2_refusals s2k "0 8192 bgraph-qcow2 $l" \
		"Cluster size is smaller than the file device's logical block size"
}

# ---- status and the L2 cache ----------------------------------------

test_qcow2_status_counts_l2_cache_hits_and_misses() {
	local img s h m u t f h2
	img=$(q2_new s 8M cluster_size=4096)
	q2_io "$img" "write -s $(q2_pat 1) 0 8M"
	q2_dm s "$img"
	dd if=/dev/mapper/s of=/dev/null bs=64k iflag=direct status=none
	s=$(q2_status s)
	diag "after one pass: $s"
	expect_match "$s" "^[0-9]+ [0-9]+ [0-9]+ [0-9]+ -$" "status INFO"
	read -r h m u t f <<<"$s"
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
		b7 "0 8192 bgraph-qcow2 $l 1 backing" "Option backing and l2_cache_size need a value" \
		b8 "0 8192 bgraph-qcow2 /dev/no-such-device" "Cannot open the child device" \
		b9 "0 8192 bgraph-qcow2 $l 2 backing /dev/no-such-device" "Cannot open the child device" \
		b10 "0 2048 bgraph-qcow2 $notq" "bad magic: not a qcow2 image" \
		b11 "0 8193 bgraph-qcow2 $l" "Target length is larger than the image's virtual size" \
		b12 "0 8192 bgraph-qcow2 $l 2 read_only read_only" "Option read_only given twice" \
		b13 "0 8192 bgraph-qcow2 $l 3 error_if_no_space read_only error_if_no_space" \
		"Option error_if_no_space given twice"
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
	expect_match "$(q2_status dirty)" "^[0-9]+ [0-9]+ [0-9]+ [0-9]+ dirty$" "dirty status"
	expect_match "$(q2_status corrupt)" "^[0-9]+ [0-9]+ [0-9]+ [0-9]+ corrupt$" "corrupt status"
	expect_match "$(q2_status both)" "^[0-9]+ [0-9]+ [0-9]+ [0-9]+ dirty,corrupt$" "both status"
	log=$(log_since_mark)
	expect_match "$log" "bgraph-qcow2: dirty: image is marked dirty; reading only" "dirty warning"
	expect_match "$log" "bgraph-qcow2: corrupt: image is marked corrupt; reading only" "corrupt warning"
}

# ---- load -----------------------------------------------------------

test_qcow2_fio_randread_over_chain_keeps_data() {
	q2_chain
	# $FIO_MB in all, over 8 jobs of queue depth 16.
	q2_fast && fio_ok --name=rr4k --filename=/dev/mapper/top --rw=randread --bs=4k \
		--numjobs=8 --iodepth=16 --ioengine=libaio --direct=1 \
		--io_size=$((FIO_MB * 1024 / 16))k
	fio_ok --name=rrmix --filename=/dev/mapper/top --rw=randread \
		--bsrange=512-256k --numjobs=8 --iodepth=16 --ioengine=libaio \
		--direct=1 --io_size=$((FIO_MB * 1024 / 16))k
	# io_uring tries each read with REQ_NOWAIT first: a cache miss must
	# come back as EAGAIN, retried by io_uring, not as an error.
	fio_ok --name=rruring --filename=/dev/mapper/top --rw=randread \
		--bsrange=4k-64k --numjobs=4 --iodepth=16 --ioengine=io_uring \
		--direct=1 --io_size=$((FIO_MB * 1024 / 16))k
	q2_same top "$SCRATCH/top.img" "top after fio"
}

test_qcow2_reload_under_reads_loses_nothing() {
	local img pid n=0 c
	img=$(q2_new rl 8M cluster_size=4096)
	q2_io "$img" "write -s $(q2_pat 1) 0 6M" "write -z 1M 1M" "write -c -P 0x13 7M 64k"
	q2_dm rl "$img"
	fio_ok --name=rl --filename=/dev/mapper/rl --rw=randread --bsrange=4k-128k \
		--numjobs=4 --iodepth=8 --ioengine=libaio --direct=1 \
		--time_based --runtime=$((6 + 4 * Q2_SLOW)) >"$SCRATCH/fio.ref" &
	pid=$!
	sleep $((1 + 2 * Q2_SLOW))
	# Reload with another cache size, again and again while fio runs.
	while kill -0 $pid 2>/dev/null; do
		c=$((64 << (n % 3)))K
		dmsetup reload --readonly rl --table \
			"0 16384 bgraph-qcow2 /dev/${Q2_LOOP[rl]} 2 l2_cache_size $c"
		dmsetup suspend rl
		dmsetup resume rl
		n=$((n + 1))
	done
	wait $pid || { cat "$SCRATCH/fio.ref"; fail "reads failed across reloads"; }
	cat "$SCRATCH/fio.ref"
	diag "$n reloads"
	[ $n -ge 2 ] || fail "only $n reloads while fio ran"
	expect_match "$(dmsetup table rl)" "l2_cache_size $((65536 << ((n - 1) % 3)))$" "table after the reloads"
	q2_same rl "$img" "after the reloads"
}
