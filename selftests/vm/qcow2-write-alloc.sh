#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# bgraph-qcow2's new clusters over old bytes of the file device: zeroed
# around the data (ahead, in batches; by write-zeroes or written zeros),
# racing writes to new clusters.

# shellcheck source=lib-qcow2-write.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-qcow2-write.sh"

# ---- new clusters over old bytes ------------------------------------

# qw_old_bytes NAME OPTIONS [DIR]: 4k, 8k and 512-byte writes into new
# 64K clusters of an image on a loop device (whose write-zeroes is
# fallocate: the node zeroes the rest of a cluster that way, not by
# writing zeros) where the clusters taken held other bytes: clusters QEMU
# freed and left their data in, then the file past the image's old end.
# The rest of every cluster reads zeros, through the node and through
# qemu.  The image file is in DIR if given, else in $SCRATCH.
qw_old_bytes() {
	local name=$1 img model end room=$((16 << 20)) k=1024 i o n dd0 dd1 wz
	local -a w hosts
	img=$(q2_new "$name" 8M "cluster_size=65536${2:+,$2}")
	if [ -n "${3:-}" ]; then
		mv "$img" "$3/" && img=$3/${img##*/} || return 1
	fi
	# 16 clusters written, then freed (qemu may punch them out of the
	# file; they are filled with 0xdd again, which qemu-img check
	# accepts: nothing references them), then 0xee past the image's end.
	q2_io "$img" "write -P 0xdd 0 1M"
	mapfile -t hosts < <(qemu-img map --output=json "$img" |
		python3 -c 'import json,sys; [print(e["offset"], e["length"]) for e in json.load(sys.stdin) if e["data"]]')
	q2_io "$img" "write -z -u 0 1M"
	end=$(stat -c %s "$img")
	truncate -s $room "$img"
	for i in "${hosts[@]}" "$end $((room - end))"; do
		read -r o n <<<"$i"
		head -c "$n" /dev/zero | tr '\0' "$([ "$o" = "$end" ] && echo '\356' || echo '\335')" |
			dd of="$img" bs=64k seek="$o" oflag=seek_bytes conv=notrunc status=none
	done
	qw_check "$img" "$name before the node's writes" || return 1
	dd0=$(tr -cd '\335' <"$img" | wc -c)
	expect_eq "$dd0" $((1 << 20)) "0xdd bytes in the freed clusters"
	model=$(qw_model "$img")
	qw_dm "$name" "$img" $room
	wz=$(cat "/sys/block/${Q2_LOOP[$name]}/queue/write_zeroes_max_bytes")
	# 28 new clusters: the 16 freed ones, then 12 past the old end.
	w=(8K:4K:0x21 $((64 * k + 1536)):512:0x22 $((192 * k - 4 * k)):8K:0x23)
	for i in $(seq 0 23); do
		w+=($(((2048 + 64 * i + 20) * k)):4K:$((0x30 + i)))
	done
	qw_write "/dev/mapper/$name" --ref "$model" "${w[@]}"
	qw_expect "$name" "$model" "$name: new clusters over old bytes"
	diag "$name: write_zeroes_max_bytes of the loop device: $wz, then" \
		"$(cat "/sys/block/${Q2_LOOP[$name]}/queue/write_zeroes_max_bytes")"
	if [ -z "$2" ] && [ "$wz" -gt 0 ] && [ "$(stat -f -c %T "$img")" = ext2/ext3 ]; then
		# fallocate(ZERO_RANGE) leaves unwritten extents on ext4 (with
		# extended L2, only parts of 4K blocks are zeroed: no extents).
		n=$(filefrag -v "$img" | grep -c unwritten || true)
		diag "$name: $n unwritten extents in the image file"
		[ "$n" -gt 0 ] || fail "$name: the file device zeroed nothing (write_zeroes_max_bytes $wz)"
	fi
	qw_finish "$name" "$img" "$name after writes over old bytes"
	# The freed clusters are zeroed ahead (0xdd gone) whether or not
	# they are taken: where the data went says.
	n=$(qemu-img map --output=json "$img" | python3 -c 'import json,sys
print(sum(1 for e in json.load(sys.stdin) if e["data"] and e["offset"] < int(sys.argv[1])))' "$end")
	dd1=$(tr -cd '\335' <"$img" | wc -c)
	diag "$name: image end $end, then $QW_END; 0xdd bytes $dd0, then $dd1;" \
		"$n data extents in freed clusters"
	[ "$n" -gt 0 ] || fail "$name: no freed cluster taken again"
	[ "$QW_END" -gt "$end" ] || fail "$name: no cluster taken past the old end"
	qw_qemu_reads "$img" "$model"
}

test_qcow2_write_new_clusters_over_old_bytes_read_zeros_around_the_data() {
	qw_old_bytes og ""
	if q2_fast; then
		qw_old_bytes ogx extended_l2=on
	fi
}

# 4k writes into new clusters of an empty image on a loop device over
# ext4, the file past the image's end full of 0xee: the node zeroes free
# clusters ahead of the allocator, 4 MiB at a time (a write-zeroes each:
# fallocate), so that such a write sends the loop device its data only;
# zeroing around it would take two write-zeroes more.  The loop device's
# write count says (/sys/block/loopN/stat, field 5; write-zeroes count as
# writes).  The rest of every cluster reads zeros, through the node and
# through qemu, and qemu-img check finds no leak.
test_qcow2_write_new_clusters_are_zeroed_ahead_in_batches() {
	local name=oz img model end n=128 i w0 w1 wz l
	local -a w
	img=$(q2_new $name 64M cluster_size=65536)
	end=$(stat -c %s "$img")
	truncate -s 80M "$img"
	head -c $(((80 << 20) - end)) /dev/zero | tr '\0' '\356' |
		dd of="$img" bs=64k seek="$end" oflag=seek_bytes conv=notrunc status=none
	model=$(qw_model "$img")
	qw_dm $name "$img" 80M || return 1
	l=${Q2_LOOP[$name]}
	wz=$(cat "/sys/block/$l/queue/write_zeroes_max_bytes")
	# Clusters 0, 5, 10, ...; 4k at 4K to 60K into each: zeros both sides.
	for ((i = 0; i < n; i++)); do
		w+=($(((i * 5 * 64 + (i * 3 % 15 + 1) * 4) << 10)):4K:$((0x40 + i % 64)))
	done
	w0=$(awk '{ print $5 }' "/sys/block/$l/stat")
	qw_write "/dev/mapper/$name" --ref "$model" "${w[@]}"
	w1=$(awk '{ print $5 }' "/sys/block/$l/stat")
	diag "$name: $n writes into new clusters: $((w1 - w0)) writes to $l" \
		"(write_zeroes_max_bytes $wz), metadata at the fsync included"
	if [ "$wz" -gt 0 ]; then
		[ $((w1 - w0)) -le $((n + n / 2)) ] ||
			fail "$name: $((w1 - w0)) writes to $l for $n writes into new clusters"
	fi
	qw_expect $name "$model" "$name: new clusters zeroed ahead"
	qw_finish $name "$img" "$name after writes into clusters zeroed ahead"
	expect_eq "$QW_ALLOC" $n "allocated clusters"
	[ "$(tr -cd '\356' <"$img" | wc -c)" -lt $(((80 << 20) - end)) ] ||
		fail "$name: nothing written past the image's old end"
	qw_qemu_reads "$img" "$model"
}

# Sixteen fio jobs write at once, job i the 4 KiB block i of each of the
# first 64 clusters of an empty image, each its own byte (verify=pattern),
# one pass: the sixteen writes of a cluster race to allocate it, and every
# one must land (a write lost to another's allocation fails fio's verify
# and the model).  Meanwhile a reader, started first, reads those clusters
# again and again: each block must read zeros or its job's byte, never
# anything else (the file past the image's end holds 0xee: a cluster read
# before its zeros or data are down would show it).
test_qcow2_write_racing_writes_to_new_clusters_all_land_reads_see_old_or_new() {
	local name=rc img end i rpid rc=0
	local -a jobs=()
	img=$(q2_new $name 8M cluster_size=65536)
	end=$(stat -c %s "$img")
	truncate -s 16M "$img"
	head -c $(((16 << 20) - end)) /dev/zero | tr '\0' '\356' |
		dd of="$img" bs=64k seek="$end" oflag=seek_bytes conv=notrunc status=none
	qw_dm $name "$img" 16M || return 1
	rm -f "$SCRATCH/$name.ready" "$SCRATCH/$name.stop"
	python3 - "/dev/mapper/$name" "$SCRATCH/$name.stop" "$SCRATCH/$name.ready" \
		<<-"PY" >"$SCRATCH/$name.reader" 2>&1 &
	import mmap, os, random, sys
	fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)
	buf = mmap.mmap(-1, 65536)
	n = bad = 0
	while n < 8 or not os.path.exists(sys.argv[2]):
	    if n == 1:
	        open(sys.argv[3], "w").close()
	    c = random.randrange(64)
	    os.preadv(fd, [buf], c << 16)
	    for b in range(16):
	        blk = buf[b << 12:(b + 1) << 12]
	        if blk.count(0) != 4096 and blk.count(0x40 + b) != 4096:
	            if bad < 8:
	                print("# cluster %d block %d: neither zeros nor 0x%02x: %s..."
	                      % (c, b, 0x40 + b, blk[:16].hex()))
	            bad += 1
	    n += 1
	print("# reader: %d reads of a cluster during the writes, %d bad blocks" % (n, bad))
	sys.exit(1 if bad else 0)
	PY
	rpid=$!
	for _ in $(seq 100); do
		[ -e "$SCRATCH/$name.ready" ] && break
		sleep 0.1
	done
	for ((i = 0; i < 16; i++)); do
		jobs+=(--name="b$i" --offset=$((i * 4))k --verify_pattern="$(printf 0x%02x $((0x40 + i)))")
	done
	fio_ok --filename="/dev/mapper/$name" --rw=write:60k --bs=4k --size=4M --io_size=256k \
		--ioengine=libaio --iodepth=4 --direct=1 --verify=pattern "${jobs[@]}" ||
		rc=1
	touch "$SCRATCH/$name.stop"
	wait $rpid || { rc=1; diag "the reader saw garbage"; }
	cat "$SCRATCH/$name.reader"
	[ $rc -eq 0 ] || { fail "racing writes to new clusters"; return 1; }
	# Every block holds its job's byte; the rest of the image zeros.
	python3 -c 'import sys; sys.stdout.buffer.write(bytes(0x40 + b for b in range(16) for _ in range(4096)) * 64 + bytes(4 << 20))' \
		>"$SCRATCH/$name-model.ref"
	qw_expect $name "$SCRATCH/$name-model.ref" "$name: after racing writes"
	qw_finish $name "$img" "$name after racing writes to new clusters"
	expect_eq "$QW_ALLOC" 64 "allocated clusters"
}

# A loop device over tmpfs offers write-zeroes but fallocate(ZERO_RANGE)
# fails (6.12's loop then stops offering it, 6.1's does not): the node
# writes the zeros itself.
test_qcow2_write_file_device_refusing_write_zeroes_gets_the_zeros_written() {
	local d
	d=$(mktemp -d /dev/shm/qw.XXXXXX)
	[ "$(stat -f -c %T "$d")" = tmpfs ] || { rm -rf "$d"; skip "/dev/shm is not a tmpfs"; }
	qw_old_bytes ogt "" "$d"
	rm -rf "$d"
}
