#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# `make run`: inside the VM, seed 001's tree built with `bgraph add` from
# a JSON file -- the guest device vm0 over a throttle over a quorum of
# three qcow2 images over files -- a workload on vm0 (fio, verifying what
# it writes), and while it runs: a snapshot of the three qcow2 nodes below
# the filters at one instant, a filter inserted above the quorum and taken
# out again, options reopened.  The graph before and after, as text and as
# SVG (printed between markers; `make run` writes them to build/demo/).
# Then QEMU's tools check every image and read the data back.
set -euo pipefail
export DM_DISABLE_UDEV=1
src=${BGRAPH_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
scratch=${BGRAPH_SCRATCH:-/tmp}
cfs=/sys/kernel/config/bgraph
BG=$src/build/tools/bgraph

step() { printf '\n== %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

# svg NAME: the graph as SVG between markers, for make run to save.
svg() {
	"$BG" show --svg "$scratch/$1.svg"
	echo "--- svg $1 begin"
	cat "$scratch/$1.svg"
	echo "--- svg $1 end"
}

step "load dm-bgraph on $(uname -r)"
[ -d /lib/modules/"$(uname -r)" ] && modprobe -a dm_mod configfs loop
mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config
insmod "$src/build/$(uname -r)/dm-bgraph.ko"
dmsetup targets | grep bgraph

step "three qcow2 images (qemu-img), files with room to grow; a throttle group"
for i in 0 1 2; do
	qemu-img create -q -f qcow2 "$scratch/disk$i.qcow2" 64M
	truncate -s 96M "$scratch/disk$i.qcow2"
done
run mkdir $cfs/throttle-groups/demo
echo 4000 >$cfs/throttle-groups/demo/iops-total
echo "iops-total $(cat $cfs/throttle-groups/demo/iops-total)"

step "bgraph add: the tree, in QMP's blockdev-add JSON"
cat >"$scratch/vm0.json" <<JSON
{"driver": "throttle", "node-name": "thr", "id": "vm0", "throttle-group": "demo",
 "file": {"driver": "quorum", "node-name": "q", "vote-threshold": 2,
  "children": [
   {"driver": "qcow2", "node-name": "n0", "file": {"driver": "file", "filename": "$scratch/disk0.qcow2"}},
   {"driver": "qcow2", "node-name": "n1", "file": {"driver": "file", "filename": "$scratch/disk1.qcow2"}},
   {"driver": "qcow2", "node-name": "n2", "file": {"driver": "file", "filename": "$scratch/disk2.qcow2"}}]}}
JSON
cat "$scratch/vm0.json"
run "$BG" add "$scratch/vm0.json"

step "the graph before"
run "$BG" show
svg before

step "a workload on /dev/mapper/vm0: fio writes and verifies (crc32c) until stopped"
fio --name=guest --filename=/dev/mapper/vm0 --direct=1 --ioengine=libaio \
	--iodepth=8 --rw=randrw --bssplit=4k/75:64k/25 --size=32M \
	--verify=crc32c --verify_backlog=64 --time_based --runtime=600 \
	--output-format=json >"$scratch/fio.json" 2>&1 &
fio_pid=$!
sleep 3

step "live: a snapshot of every node below the filters, at one instant"
mkdir -p "$scratch/overlays"
run "$BG" snapshot --below-filters vm0 --overlay-dir "$scratch/overlays"
sleep 2

step "live: a filter inserted above the quorum, then taken out"
echo '{"driver": "throttle", "node-name": "extra", "throttle-group": "demo"}' >"$scratch/extra.json"
run "$BG" insert --above q "$scratch/extra.json"
grep -E '^(thr|extra) ' $cfs/graph
sleep 2
run "$BG" remove-filter extra

step "live: options reopened"
run "$BG" reopen n0-snap1 l2-cache-size=1048576
run "$BG" reopen q rewrite-corrupted=on
echo 8000 >$cfs/throttle-groups/demo/iops-total
sleep 2

step "stop the workload"
kill -INT $fio_pid
wait $fio_pid || true
python3 - "$scratch/fio.json" <<'PY'
import json, sys
t = open(sys.argv[1]).read()
j = json.loads(t[t.index("{"):])["jobs"][0]
ios = j["write"]["total_ios"] + j["read"]["total_ios"]
print("fio: %d I/Os through vm0 during the changes, error %d, verify errors: %s"
      % (ios, j["error"], "none" if not j["error"] else "yes"))
sys.exit(1 if j["error"] or not ios else 0)
PY

step "the graph after"
run "$BG" show
svg after
run dmsetup ls --tree

step "tear down, then QEMU checks the images and reads them"
dd if=/dev/mapper/vm0 of="$scratch/vm0.raw" bs=1M iflag=direct status=none
run "$BG" del vm0
run "$BG" del thr	# and the quorum, which was made with it
for i in 0 1 2; do
	run "$BG" del n$i-snap1
	run "$BG" del n$i
done
run dmsetup ls
for f in "$scratch"/disk?.qcow2 "$scratch"/overlays/*.qcow2; do
	qemu-img check -q "$f" && echo "qemu-img check $(basename "$f"): clean"
done
qemu-img info --backing-chain "$scratch/overlays/n0.qcow2" | grep -E '^(image|backing file):'
for i in 0 1 2; do
	qemu-img convert -O raw "$scratch/overlays/n$i.qcow2" "$scratch/qemu$i.raw"
	cmp "$scratch/qemu$i.raw" "$scratch/vm0.raw" &&
		echo "QEMU reads overlay n$i's chain as vm0 read it: identical"
done
rmdir $cfs/throttle-groups/demo
rmmod dm_bgraph
echo "graph removed, module unloaded"
