#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Helpers of the live graph change tests (live-*.sh), sourced by each: a
# guest-facing "id" device (a bgraph-raw passthrough) over writable qcow2
# nodes, changed with dmsetup's reload choreography (suspend top-down,
# load, resume bottom-up; "Live graph changes" in Documentation/bgraph.rst)
# while fio writes through the id with verify=crc32c, and QEMU's tools as
# the oracle afterwards.

# shellcheck source=lib-qcow2-write.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-qcow2-write.sh"
# shellcheck source=lib-throttle.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-throttle.sh"

# Virtual size of every image, its sectors; fio writes the first half,
# the markers (lv_mark) land past it, at LV_MARK1 before a change and
# LV_MARK2 after it.  LV_IOS: the writes through a device each test waits
# for before and after a change (fewer on the debug kernel).
LV_MB=16
LV_SZ=$((LV_MB * 2048))
LV_MARK1=$((LV_MB * 5 / 8))M
LV_MARK2=$((LV_MB * 3 / 4))M
LV_IOS=60
[ "$BG_DEBUG" = 0 ] || LV_IOS=20
LV_FIO=$SCRATCH/lv-fio.json

# lv_qcow2 NAME: a fresh qcow2 image $SCRATCH/NAME.img and a writable
# node NAME over it (Q2_LOOP[NAME] is its loop device).
lv_qcow2() {
	qemu-img create -q -f qcow2 "$SCRATCH/$1.img" "${LV_MB}M" &&
		qw_dm "$1" "$SCRATCH/$1.img" $((LV_MB * 2))M
}

# lv_overlay NAME BACKING: an overlay image $SCRATCH/NAME.img whose
# backing file is node BACKING's image (-u: BACKING is in use, its header
# may say dirty), and a writable node NAME over it whose backing child is
# the node BACKING.  Step 2 of a snapshot.
lv_overlay() {
	qemu-img create -q -f qcow2 -u -b "$SCRATCH/$2.img" -F qcow2 \
		"$SCRATCH/$1.img" "${LV_MB}M" &&
		qw_dm "$1" "$SCRATCH/$1.img" $((LV_MB * 2))M backing "/dev/mapper/$2"
}

# lv_raw NAME CHILD: the id device NAME, a bgraph-raw node over CHILD.
lv_raw() {
	dmsetup create "$1" --table "0 $LV_SZ bgraph-raw /dev/mapper/$2"
}

# lv_quorum_stack: qcow2 nodes n0 n1 n2, the quorum q over them (2 of 3),
# the throttle t over q in group lv (no limits), the id over t.
lv_quorum_stack() {
	local i
	for i in 0 1 2; do
		lv_qcow2 "n$i" || return 1
	done
	dmsetup create q --table \
		"0 $LV_SZ bgraph-quorum 2 3 /dev/mapper/n0 /dev/mapper/n1 /dev/mapper/n2"
	mkdir -p "$TG/lv"
	dmsetup create t --table "0 $LV_SZ bgraph-throttle /dev/mapper/q lv"
	lv_raw id t
}

# lv_fio_start DEV: fio writing DEV's first half, 4k and 64k random
# writes verified as it goes (crc32c), until lv_fio_stop.
lv_fio_start() {
	fio_start "$LV_FIO" --name=live --filename="$1" --direct=1 \
		--ioengine=libaio --iodepth=8 --rw=randrw --bssplit=4k/75:64k/25 \
		--verify=crc32c --verify_backlog=64 --size=$((LV_MB / 2))M
	# fio_start's trap, but a device left suspended is resumed first.
	trap 'lv_unsuspend; { kill -INT "$FIO_PID" && wait "$FIO_PID"; } 2>/dev/null || true' EXIT
}

lv_fio_stop() { fio_stop "$LV_FIO" "fio through the id device"; }

# lv_unsuspend: resume every suspended dm device; one whose resume is
# refused gets the error table (dmsetup wipe_table), so that a test that
# fails halfway through a change leaves no fio waiting on it for good.
lv_unsuspend() {
	local d
	for d in $(dmsetup ls 2>/dev/null | awk '$1 != "No" {print $1}'); do
		lv_suspended "$d" || continue
		dmsetup resume "$d" 2>/dev/null || dmsetup wipe_table "$d" 2>/dev/null || true
	done
}


# lv_wait_writes DEV N: wait until N more writes through DEV complete
# (fio's progress, however slow the host; its stat's fifth field, read
# with built-ins only); fail after 5 minutes.
lv_wait_writes() {
	local stat i w0
	local -a s
	stat=/sys/block/$(devname "$1")/stat
	read -r -a s <"$stat"
	w0=${s[4]}
	for ((i = 0; i < 600; i++)); do
		read -r -a s <"$stat"
		[ $((s[4] - w0)) -lt "$2" ] || return 0
		sleep 0.5
	done
	fail "fewer than $2 writes through $1 in 5 minutes"
}

# lv_graph: configfs's graph, sorted, loop devices named "loop".
lv_graph() {
	sed -E 's/ loop[0-9]+$/ loop/' "$CFS/graph" | sort
}

# lv_ro NODE: the read-only state of node NODE's disk (1 or 0).
lv_ro() { cat "/sys/block/$(devname "/dev/mapper/$1")/ro"; }

# lv_suspended NAME: is dm device NAME suspended?
lv_suspended() { dmsetup info "$1" | grep -q "^State: *SUSPENDED"; }

# lv_mark DEV OFF BYTE: write 64 KiB of BYTE at OFF (past fio's range).
lv_mark() { qw_write "$1" "$2:64K:$3"; }

# lv_reads IMG OFF BYTE [null]: does qemu read 64 KiB of BYTE at OFF of
# IMG (with its backing chain; with "null", of IMG alone)?
lv_reads() {
	local spec=$1 out
	[ "${4:-}" != null ] ||
		spec="json:{\"driver\":\"qcow2\",\"backing\":null,\"file\":{\"driver\":\"file\",\"filename\":\"$1\"}}"
	out=$(qemu-io -r -c "read -P $3 $2 64k" "$spec" 2>&1)
	grep -q "^read 65536/65536" <<<"$out" || { diag "$out"; fail "qemu reads no $3 at $2 of $1${4:+ alone}"; }
}

# lv_dump DEV: what DEV reads now, into $SCRATCH/lv-dump.ref.
lv_dump() {
	dd if="$1" of="$SCRATCH/lv-dump.ref" bs=1M iflag=direct status=none
}

# lv_same IMG: QEMU reads IMG with its backing chain as lv_dump's file.
lv_same() {
	qemu-img convert -O raw "$SCRATCH/$1.img" "$SCRATCH/lv-conv.ref"
	cmp -s "$SCRATCH/lv-conv.ref" "$SCRATCH/lv-dump.ref" ||
		fail "QEMU reads $1's chain unlike the id device: $(cmp "$SCRATCH/lv-conv.ref" "$SCRATCH/lv-dump.ref" 2>&1)"
}

# lv_check IMG...: each IMG is clean to qemu-img check.
lv_check() {
	local img
	for img in "$@"; do
		qemu-img check -q "$SCRATCH/$img.img" || fail "qemu-img check of $img"
	done
}

# lv_finish IMG...: remove every device (the nodes write their metadata
# back), then each IMG must be clean to qemu-img check and read by QEMU,
# with its backing chain, as lv_dump's file.
lv_finish() {
	local img
	q2_teardown
	[ -z "$(dmsetup ls 2>/dev/null | awk '$1 != "No"')" ] ||
		fail "devices left: $(dmsetup ls)"
	lv_check "$@"
	for img in "$@"; do
		lv_same "$img"
	done
}

# lv_cleanup: devices and throttle groups.
lv_cleanup() { th_cleanup; }
