#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Reads through bgraph-qcow2 nodes like QEMU: unaligned, concurrent with a
# small L2 cache, internal snapshots, two images in one table, far
# offsets, 4k-sector file devices, fio over a chain, reloads under reads.

# shellcheck source=lib-qcow2.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-qcow2.sh"

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
	local img n=0 c t0
	img=$(q2_new rl 8M cluster_size=4096)
	q2_io "$img" "write -s $(q2_pat 1) 0 6M" "write -z 1M 1M" "write -c -P 0x13 7M 64k"
	q2_dm rl "$img"
	# fio runs until stopped: the reloads, however slow the host, all
	# happen under it.
	fio_start "$SCRATCH/fio.json" --name=rl --filename=/dev/mapper/rl \
		--rw=randread --bsrange=4k-128k --numjobs=4 --iodepth=8 \
		--ioengine=libaio --direct=1
	sleep $((1 + 2 * Q2_SLOW))
	# Reload with another cache size, again and again while fio runs:
	# for 5 s (8 s where each process is slow), and at least twice.
	t0=$SECONDS
	while [ $n -lt 2 ] || [ $((SECONDS - t0)) -lt $((5 + 3 * Q2_SLOW)) ]; do
		c=$((64 << (n % 3)))K
		dmsetup reload --readonly rl --table \
			"0 16384 bgraph-qcow2 /dev/${Q2_LOOP[rl]} 2 l2_cache_size $c"
		dmsetup suspend rl
		dmsetup resume rl
		n=$((n + 1))
	done
	fio_stop "$SCRATCH/fio.json" "reads across the reloads"
	diag "$n reloads"
	expect_match "$(dmsetup table rl)" "l2_cache_size $((65536 << ((n - 1) % 3)))$" "table after the reloads"
	q2_same rl "$img" "after the reloads"
}
