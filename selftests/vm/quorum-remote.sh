#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# bgraph-quorum with children on nbd devices served from other network
# namespaces ("hosts"): votes with a local child, a remote host corrupted
# or lost.

# shellcheck source=lib-quorum.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-quorum.sh"

# ---- children elsewhere ---------------------------------------------

# q_nbd_host N FILE: network namespace qhN, a veth pair 10.231.N.1 (here)
# - 10.231.N.2 (there), and qemu-nbd serving FILE as export "exp" there;
# connects /dev/nbd<N-1> to it.  Not in a $(...): it records what
# q_teardown undoes, and the qemu-nbd processes it leaves running write
# to files, not to a pipe someone waits on.
q_nbd_host() {
	local n=$1 ns=qh$1 dev=/dev/nbd$(($1 - 1)) i
	ip netns add "$ns"
	Q_NETNS+=" $ns"
	ip link add "qv$n" type veth peer name "qv${n}p"
	ip link set "qv${n}p" netns "$ns"
	ip addr add "10.231.$n.1/24" dev "qv$n"
	ip link set "qv$n" up
	ip netns exec "$ns" ip addr add "10.231.$n.2/24" dev "qv${n}p"
	ip netns exec "$ns" ip link set "qv${n}p" up
	ip netns exec "$ns" ip link set lo up
	ip netns exec "$ns" qemu-nbd -f raw -x exp --bind "10.231.$n.2" --port 10809 \
		--persistent --fork --pid-file "$SCRATCH/nbd$n.pid" "$2" \
		</dev/null >"$SCRATCH/nbd-server$n.log" 2>&1 ||
		{ diag "$(cat "$SCRATCH/nbd-server$n.log")"; fail "qemu-nbd server in $ns"; return 1; }
	Q_NBD_PIDS+=" $(cat "$SCRATCH/nbd$n.pid")"
	# qemu-nbd -c locks /var/lock/qemu-nbd-<dev>; /var/lock points into
	# /run, which is empty in the VM.
	mkdir -p "$(readlink -f /var/lock)"
	[ "$(cat "/sys/block/${dev#/dev/}/size")" = 0 ] || { fail "$dev is in use"; return 1; }
	qemu-nbd -c "$dev" -f raw "nbd://10.231.$n.2:10809/exp" \
		</dev/null >"$SCRATCH/nbd-client$n.log" 2>&1 ||
		{ diag "$(cat "$SCRATCH/nbd-client$n.log")"; fail "qemu-nbd -c $dev"; return 1; }
	Q_NBD_DEVS+=" $dev"
	for i in $(seq 100); do
		[ "$(cat "/sys/block/${dev#/dev/}/size")" != 0 ] && break
		sleep 0.1
	done
}

# q_nbd_hosts FILE1 FILE2: 16 MiB files FILE1 and FILE2, served by hosts 1
# and 2 (q_nbd_host) as /dev/nbd0 and /dev/nbd1.  Small: nbd over veth
# under TCG moves a few MB/s.  Skips without nbd, veth or ip.
q_nbd_hosts() {
	[ -d "/lib/modules/$(uname -r)" ] || skip "no modules for $(uname -r) (nbd, veth)"
	command -v ip >/dev/null || skip "no ip (iproute2)"
	modprobe nbd 2>/dev/null || skip "no nbd module for $(uname -r)"
	modprobe veth 2>/dev/null || skip "no veth module for $(uname -r)"
	truncate -s 16M "$1" "$2"
	q_nbd_host 1 "$1"
	q_nbd_host 2 "$2"
}

test_children_on_nbd_in_other_network_namespaces_vote_with_a_loop() {
	local l n1=/dev/nbd0 n2=/dev/nbd1 f1=$SCRATCH/host1.img f2=$SCRATCH/host2.img
	q_begin
	l=$(mkloop q0 16)
	q_nbd_hosts "$f1" "$f2"
	expect_eq "$(blockdev --getsize64 "$n1")" $((16 << 20)) "size of $n1"
	q_create qn 2 "" "$l" "$n1" "$n2"
	expect_eq "$(q_graph qn)" \
		"qn children.0 ${l##*/};qn children.1 nbd0;qn children.2 nbd1;" "graph"
	fio_ok --name=qnbd --filename=/dev/mapper/qn --rw=randwrite --bsrange=4k-64k \
		--numjobs=2 --size=$((FIO_MB / 8))M --offset_increment=$((FIO_MB / 8))M \
		--ioengine=libaio --iodepth=8 --direct=1 --verify=crc32c \
		--verify_fatal=1 --do_verify=1
	q_stats_want qn 0 "children.0:${l##*/}:0:0:0" "children.1:nbd0:0:0:0" "children.2:nbd1:0:0:0"
	dmsetup remove qn
	qemu-nbd -d "$n1" >/dev/null
	qemu-nbd -d "$n2" >/dev/null
	Q_NBD_DEVS=""
	# What the remote hosts hold is what the loop device holds.
	cmp "$l" "$f1" || fail "host 1's file differs from the loop child"
	cmp "$l" "$f2" || fail "host 2's file differs from the loop child"
}

# Host 1's copy is corrupted on the host itself: the read returns the
# loop device's and host 2's data and rewrite-corrupted repairs host 1
# over the network.  Then host 2's server dies: writes and reads go on
# with 2 of 3, and its failures are counted as I/O errors.
test_a_remote_host_corrupted_or_lost_is_outvoted_repaired_and_counted() {
	local l n1=/dev/nbd0 n2=/dev/nbd1 f1=$SCRATCH/host1.img f2=$SCRATCH/host2.img
	local ref ref2 got
	q_begin
	l=$(mkloop q0 16)
	q_nbd_hosts "$f1" "$f2"
	q_create qn 2 "1 rewrite-corrupted" "$l" "$n1" "$n2"
	ref=$(mkref qr 1)
	dd if="$ref" of=/dev/mapper/qn bs=1M oflag=direct status=none
	# On host 1, behind its server's back.
	dd if=/dev/urandom of="$f1" bs=4k seek=16 count=2 conv=notrunc status=none
	q_listen
	q_read /dev/mapper/qn 0 $((1 << 20)) "$SCRATCH/got"
	cmp "$SCRATCH/got" "$ref" || fail "read returned host 1's bad copy"
	got=$(q_event "BGRAPH_ROLE=children.1")
	expect_match "$got" "BGRAPH_CHILD=nbd0 BGRAPH_ERROR=0 BGRAPH_EVENT=QUORUM_REPORT_BAD BGRAPH_NODE=qn BGRAPH_OP=read" "the uevent"
	cmp <(head -c $((1 << 20)) "$f1") "$ref" || fail "host 1 not repaired"
	# Host 2 is lost.
	kill "$(cat "$SCRATCH/nbd2.pid")"
	ref2=$(mkref qr2 1)
	dd if="$ref2" of=/dev/mapper/qn bs=1M seek=2 oflag=direct status=none ||
		fail "a write with host 2 lost"
	q_read /dev/mapper/qn $((2 << 20)) $((1 << 20)) "$SCRATCH/got"
	cmp "$SCRATCH/got" "$ref2" || fail "read after host 2 was lost"
	fio_ok --name=qlost --filename=/dev/mapper/qn --rw=randwrite --bsrange=4k-64k \
		--size=1M --offset=4M --ioengine=libaio --iodepth=8 --direct=1 \
		--verify=crc32c --verify_fatal=1 --do_verify=1
	q_event "BGRAPH_ROLE=children.2" >/dev/null
	expect_eq "$(q_stat qn children.1 bad_reads)/$(q_stat qn children.1 rewrites)" 1/1 \
		"host 1's bad reads/rewrites"
	[ "$(q_stat qn children.2 io_errors)" -gt 0 ] || fail "host 2's failures not counted"
	expect_eq "$(q_stat qn children.0 io_errors)$(q_stat qn - quorum_failures)" 00 \
		"loop child errors, quorum failures"
	diag "host 2 lost: $(q_stat qn children.2 io_errors) I/O errors counted"
	dmsetup remove qn
	qemu-nbd -d "$n1" >/dev/null
	qemu-nbd -d "$n2" >/dev/null 2>&1 || true
	Q_NBD_DEVS=""
	cmp "$l" "$f1" || fail "host 1's file differs from the loop child"
}
