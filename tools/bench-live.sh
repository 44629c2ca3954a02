#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The live-change part of `make bench`, sourced by tools/bench.sh (it uses
# its row, median and $tmp, $runtime, $src):
#   how long the guest device waits while bgraph snapshots the node under
#     it, and while it inserts a filter: fio's largest completion latency
#     of 4k random writes at iodepth 8 through the id device over a run
#     with one change against its largest over a run without one (the same
#     length, one after the other, LIVE_REPS times; reported, no goal);
#   the guest's IOPS during a loop of 20 snapshots (a chain 20 deep)
#     against its IOPS with no change over as long (goal >= 0.8).
# The node is a qcow2 image on a loop device over a file on /scratch's
# ext4, with bgraph add; the overlays are files there too.

# shellcheck disable=SC2154 # src, tmp: tools/bench.sh's
lreps=${LIVE_REPS:-3}
lsecs=${LIVE_SECONDS:-6}
BG=$src/build/tools/bgraph
ldir=${BGRAPH_SCRATCH:-/tmp}/bench-live

# live_fio SECS OUT: 4k random writes through vm0 for SECS seconds
# (in the background); OUT gets fio's JSON.
live_fio() {
	fio --name=g --filename="${ldev:-/dev/mapper/vm0}" --rw=randwrite --bs=4k \
		--iodepth=8 --ioengine=libaio --direct=1 --size=64M \
		--time_based --runtime="$1" --output-format=json >"$2" 2>/dev/null &
}

# live_stat OUT: "iops max_clat_ms" of a live_fio run.
live_stat() {
	python3 -c 'import json,sys; t=open(sys.argv[1]).read()
j=json.loads(t[t.index("{"):])["jobs"][0]["write"]
print("%.0f %.2f" % (j["iops"], j["clat_ns"]["max"] / 1e6))' "$1"
}

live_setup() {
	rm -rf "$ldir"
	mkdir -p "$ldir"
	qemu-img create -q -f qcow2 -o preallocation=metadata "$ldir/disk.qcow2" 128M
	truncate -s 512M "$ldir/disk.qcow2"
	mkdir -p /sys/kernel/config/bgraph/throttle-groups/live
	echo "{\"driver\": \"qcow2\", \"node-name\": \"disk\", \"id\": \"vm0\",
	       \"file\": {\"driver\": \"file\", \"filename\": \"$ldir/disk.qcow2\"}}" |
		"$BG" add - || return 1
	# Allocate what fio writes, so that every run writes in place.
	fio --name=fill --filename=/dev/mapper/vm0 --rw=write --bs=1M --size=64M \
		--direct=1 --output-format=terse >/dev/null 2>&1
}

live_teardown() {
	local n
	"$BG" del vm0 >/dev/null 2>&1
	for n in /sys/kernel/config/bgraph/nodes/*; do
		dmsetup remove "${n##*/}" >/dev/null 2>&1 || true
	done
	dmsetup remove_all >/dev/null 2>&1 || true
	losetup -D
	rmdir /sys/kernel/config/bgraph/throttle-groups/live 2>/dev/null || true
	rm -rf "$ldir" /run/bgraph
}

# bg_snap NAME: snapshot $top into overlay NAME; qsd_snap the same by QMP.
bg_snap() {
	"$BG" snapshot "$top" --overlay "$ldir/$1.qcow2" --node-name "$1" >/dev/null
}

qsd_snap() {
	qmp blockdev-snapshot-sync "{\"node-name\": \"$top\", \"snapshot-file\": \"$ldir/$1.qcow2\", \"snapshot-node-name\": \"$1\", \"format\": \"qcow2\"}"
}

# qmp CMD ARGS: one QMP command to qemu-storage-daemon; fails on an error.
qmp() {
	python3 - "$ldir/qmp.sock" "$1" "$2" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rw")
def cmd(c, a=None):
    f.write(json.dumps({"execute": c, "arguments": a or {}}) + "\n"); f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r: return
        if "error" in r: sys.exit("qmp: " + r["error"]["desc"])
json.loads(f.readline())
cmd("qmp_capabilities")
cmd(sys.argv[2], json.loads(sys.argv[3]))
PY
}

# live_loop TAG SNAP: fio's IOPS during 20 snapshots by SNAP, then as long
# without; sets loop_ratio and prints the rows.
live_loop() {
	local k t t0 li ii
	live_fio 600 "$tmp/l-loop.json"
	sleep 1
	t0=$(date +%s.%N)
	for ((k = 0; k < 20; k++)); do
		"$2" "$1-$k" || echo "# $1 snapshot $k failed"
		top=$1-$k
	done
	t=$(python3 -c "import time; print(max(1, round($(date +%s.%N) - $t0)))")
	pkill -INT -x fio; wait
	live_fio "$t" "$tmp/l-idle.json"; wait
	li=$(live_stat "$tmp/l-loop.json" | cut -d' ' -f1)
	ii=$(live_stat "$tmp/l-idle.json" | cut -d' ' -f1)
	loop_ratio=$(python3 -c "print('%.3f' % ($li / $ii))")
	row "randwrite 4k qd8" "$2 x20 (${t}s)" "$li" "" "$loop_ratio"
	row "randwrite 4k qd8" "no change" "$ii" "" ""
}

qsd_setup() {
	local i
	command -v qemu-storage-daemon >/dev/null && modprobe nbd 2>/dev/null || return 1
	rm -rf "$ldir"
	mkdir -p "$ldir" "$(readlink -f /var/lock)"
	qemu-img create -q -f qcow2 -o preallocation=metadata "$ldir/disk.qcow2" 128M
	qemu-storage-daemon \
		--blockdev "driver=file,node-name=f0,filename=$ldir/disk.qcow2" \
		--blockdev driver=qcow2,node-name=disk,file=f0 \
		--nbd-server "addr.type=unix,addr.path=$ldir/nbd.sock" \
		--export type=nbd,id=e0,node-name=disk,name=disk,writable=on \
		--chardev "socket,id=m0,path=$ldir/qmp.sock,server=on,wait=off" \
		--monitor chardev=m0 </dev/null >"$ldir/qsd.log" 2>&1 &
	qsd_pid=$!
	disown		# the loops' bare waits are for fio
	for i in $(seq 100); do
		[ -S "$ldir/nbd.sock" ] && [ -S "$ldir/qmp.sock" ] && break
		sleep 0.1
	done
	qemu-nbd -c /dev/nbd0 -f raw "nbd+unix:///disk?socket=$ldir/nbd.sock" \
		</dev/null >/dev/null 2>&1 || return 1
	for i in $(seq 100); do
		[ "$(cat /sys/block/nbd0/size)" != 0 ] && break
		sleep 0.1
	done
	fio --name=fill --filename=/dev/nbd0 --rw=write --bs=1M --size=64M \
		--direct=1 --output-format=terse >/dev/null 2>&1
}

qsd_teardown() {
	qemu-nbd -d /dev/nbd0 >/dev/null 2>&1 || true
	[ -z "${qsd_pid:-}" ] || kill "$qsd_pid" 2>/dev/null || true
	sleep 1
	rm -rf "$ldir"
}

echo "# live changes: a qcow2 node over a file on ext4 under the id vm0 (bgraph add), 4k random writes qd8"
if ! [ -x "$BG" ] || ! live_setup; then
	echo "# live: build/tools/bgraph missing or bgraph add failed; skipped"
else
	top=disk
	declare -a base_lat=() snap_lat=() ins_lat=()
	for ((r = 0; r < lreps; r++)); do
		live_fio "$lsecs" "$tmp/l-base.json"; wait
		live_fio "$lsecs" "$tmp/l-snap.json"
		sleep $((lsecs / 2))
		"$BG" snapshot "$top" --overlay "$ldir/s$r.qcow2" --node-name "s$r" >/dev/null ||
			echo "# snapshot $r failed"
		top=s$r
		wait
		echo '{"driver": "throttle", "node-name": "f", "throttle-group": "live"}' >"$tmp/f.json"
		live_fio "$lsecs" "$tmp/l-ins.json"
		sleep $((lsecs / 2))
		"$BG" insert --above "$top" "$tmp/f.json" >/dev/null || echo "# insert $r failed"
		wait
		"$BG" remove-filter f || echo "# remove-filter $r failed"
		base_lat+=("$(live_stat "$tmp/l-base.json" | cut -d' ' -f2)")
		snap_lat+=("$(live_stat "$tmp/l-snap.json" | cut -d' ' -f2)")
		ins_lat+=("$(live_stat "$tmp/l-ins.json" | cut -d' ' -f2)")
	done
	b=$(printf '%s\n' "${base_lat[@]}" | median)
	s=$(printf '%s\n' "${snap_lat[@]}" | median)
	i=$(printf '%s\n' "${ins_lat[@]}" | median)
	echo "# largest write latency (ms), run by run: no change ${base_lat[*]}; a snapshot ${snap_lat[*]}; a filter inserted ${ins_lat[*]}"
	echo "# report (no goal): largest latency with a snapshot / without: $(python3 -c "print('%.2f' % ($s / $b))") ($s ms / $b ms); with a filter insertion / without: $(python3 -c "print('%.2f' % ($i / $b))") ($i ms / $b ms)"

	# IOPS during 20 snapshots in a row against none, as long, ABBA.
	declare -a ratio=()
	for ((r = 0; r < 2; r++)); do
		live_loop "l$r" bg_snap
		ratio+=("$loop_ratio")
	done
	echo "# goal: IOPS during 20 snapshots / without >= 0.8: ${ratio[*]} (chain $(ls "$ldir"/l*.qcow2 | wc -l) images deep at the end)"
	live_teardown

	# The control: QEMU's own, qemu-storage-daemon serving the same kind
	# of image (on the same ext4, through the page cache as the loop
	# device) over NBD to the kernel's nbd client, with QMP's
	# blockdev-snapshot-sync, in the same VM.
	echo "# control: qemu-storage-daemon, a qcow2 node exported over NBD (/dev/nbd0 by qemu-nbd -c), blockdev-snapshot-sync by QMP"
	if qsd_setup; then
		declare -a qratio=()
		top=disk
		for ((r = 0; r < 2; r++)); do
			ldev=/dev/nbd0 live_loop "q$r" qsd_snap
			qratio+=("$loop_ratio")
		done
		echo "# control: QEMU's IOPS during 20 snapshots / without: ${qratio[*]} (bgraph: ${ratio[*]})"
	else
		echo "# control: qemu-storage-daemon or nbd unavailable; skipped"
	fi
	qsd_teardown
	live_teardown
fi
