#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# `make run`: inside the VM, build a small named graph out of bgraph-raw
# nodes, put a file system on it, use it, and show the graph.
#
#   disk0  raw over a loop device (a 64 MiB image file)
#   part1  raw window into disk0: offset 1 MiB, size 48 MiB
#   guest  raw over part1: what a guest or container would open
set -euo pipefail
export DM_DISABLE_UDEV=1
src=${BGRAPH_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
scratch=${BGRAPH_SCRATCH:-/tmp}
cfs=/sys/kernel/config/bgraph

step() { printf '\n== %s\n' "$*"; }

step "load dm-bgraph on $(uname -r)"
[ -d /lib/modules/"$(uname -r)" ] && modprobe -a dm_mod configfs loop
mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config
insmod "$src/build/$(uname -r)/dm-bgraph.ko"
dmsetup targets | grep bgraph

step "build the graph"
truncate -s 64M "$scratch/disk0.img"
loop=$(losetup -f --show "$scratch/disk0.img")
set -x
dmsetup create disk0 --table "0 131072 bgraph-raw $loop"
dmsetup create part1 --table "0 98304 bgraph-raw /dev/mapper/disk0 4 offset 1M size 48M"
dmsetup create guest --table "0 98304 bgraph-raw /dev/mapper/part1"
set +x

step "use it: ext4 on /dev/mapper/guest"
mkfs.ext4 -q /dev/mapper/guest
mkdir -p /mnt/guest
mount /dev/mapper/guest /mnt/guest
head -c 8M /dev/urandom >"$scratch/payload"
cp "$scratch/payload" /mnt/guest/payload
sync
umount /mnt/guest
mount -o ro /dev/mapper/guest /mnt/guest
cmp "$scratch/payload" /mnt/guest/payload && echo "8 MiB written and read back through guest -> part1 -> disk0 -> $(basename "$loop"): identical"
umount /mnt/guest

step "the graph ($cfs/graph: parent role child)"
cat $cfs/graph

step "the nodes ($cfs/nodes/)"
for n in $cfs/nodes/*; do
	printf '%-8s kind=%-12s size=%-9s ro=%s dev=%s\n' "$(basename "$n")" \
		"$(cat "$n/kind")" "$(cat "$n/size")" "$(cat "$n/read_only")" "$(cat "$n/dev")"
	sed 's/^/           child  /' "$n/children"
	sed 's/^/           parent /' "$n/parents"
	sed 's/^/           perm   /' "$n/permissions"
done

step "dmsetup ls --tree"
dmsetup ls --tree

step "dmsetup table / status"
dmsetup table
dmsetup status

step "tear down"
dmsetup remove guest part1 disk0
losetup -d "$loop"
rmmod dm_bgraph
echo "graph removed, module unloaded"
