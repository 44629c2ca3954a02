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
	fio --name=g --filename=/dev/mapper/vm0 --rw=randwrite --bs=4k \
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
		live_fio 600 "$tmp/l-loop.json"
		t0=$(date +%s.%N)
		for ((k = 0; k < 20; k++)); do
			"$BG" snapshot "$top" --overlay "$ldir/l$r-$k.qcow2" --node-name "l$r-$k" >/dev/null ||
				echo "# loop snapshot $k failed"
			top=l$r-$k
		done
		t=$(python3 -c "import time; print(max(1, round($(date +%s.%N) - $t0)))")
		pkill -INT -x fio; wait
		live_fio "$t" "$tmp/l-idle.json"; wait
		li=$(live_stat "$tmp/l-loop.json" | cut -d' ' -f1)
		ii=$(live_stat "$tmp/l-idle.json" | cut -d' ' -f1)
		ratio+=("$(python3 -c "print('%.3f' % ($li / $ii))")")
		row "randwrite 4k qd8" "20 snapshots (${t}s)" "$li" "" "${ratio[-1]}"
		row "randwrite 4k qd8" "no change" "$ii" "" ""
	done
	echo "# goal: IOPS during 20 snapshots / without >= 0.8: ${ratio[*]} (chain $(ls "$ldir"/*.qcow2 | wc -l) images deep at the end)"
	live_teardown
fi
