#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Bios bgraph-throttle holds: released by suspend and on removal, in
# arrival order, and never for REQ_NOWAIT (EAGAIN).

# shellcheck source=lib-throttle.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-throttle.sh"

# Suspend with bios held: they are released, nothing is lost or hangs.
test_suspend_releases_held_bios_and_loses_nothing() {
	local dev pid q
	th_cleanup
	dev=$(th_devs 1)
	mkdir "$TG/g1"
	tg_set g1 iops-write 20
	th_node t1 "$dev" g1
	fio --name=s --filename=/dev/mapper/t1 --direct=1 --ioengine=libaio \
		--iodepth=32 --rw=randwrite --bs=4k --size=2M --verify=crc32c \
		--do_verify=1 >/tmp/fio-susp.out 2>&1 &
	pid=$!
	for _ in $(seq 40); do
		q=$(node_stat t1 write queued)
		[ "$q" -gt 0 ] && break
		sleep 0.5
	done
	diag "held writes before suspend: $q"
	[ "$q" -gt 0 ] || { kill $pid; wait; fail "no writes held before the suspend"; }
	timeout 60 dmsetup suspend t1 || fail "suspend did not finish"
	expect_eq "$(node_stat t1 write queued)" 0 "held after suspend"
	dmsetup resume t1
	sleep 1
	dmsetup suspend --noflush t1
	expect_eq "$(node_stat t1 write queued)" 0 "held after noflush suspend"
	dmsetup resume t1
	tg_set g1 iops-write 0
	wait $pid || { cat /tmp/fio-susp.out; fail "fio verify failed"; }
	expect_match "$(cat /tmp/fio-susp.out)" "err= 0" "fio errors"
	th_cleanup
}

# Removing a node while its writes are held: they complete, no hang.
test_remove_after_held_io_completes() {
	local dev q=0
	th_cleanup
	dev=$(th_devs 1)
	mkdir "$TG/g1"
	tg_set g1 iops-total 5
	th_node t1 "$dev" g1
	dd if=/dev/urandom of=/dev/mapper/t1 bs=4k count=20 oflag=direct status=none &
	# The value seen, not a second read: dd's writes go one at a time,
	# and between a release and the next write none is held.
	for _ in $(seq 40); do
		q=$(node_stat t1 write queued)
		[ "$q" -gt 0 ] && break
		sleep 0.5
	done
	expect_eq "$q" 1 "writes held"
	timeout 60 dmsetup remove t1 2>/dev/null && fail "removed while open"
	wait
	timeout 60 dmsetup remove t1 || fail "remove failed"
	rmdir "$TG/g1"
	th_cleanup
}

# Held bios go out in arrival order: ten writes to one block, submitted in
# one io_submit() and held by the limit, leave the last one's data there.
test_held_writes_are_released_in_arrival_order() {
	local dev
	th_cleanup
	dev=$(th_devs 1)
	mkdir "$TG/g1"
	tg_set g1 iops-write 10
	th_node t1 "$dev" g1
	python3 - <<-"PY" || fail "arrival order"
	import ctypes, mmap, os, struct
	libc = ctypes.CDLL(None, use_errno=True)
	SYS_io_setup, SYS_io_submit, SYS_io_getevents = 206, 209, 208
	n = 10
	fd = os.open("/dev/mapper/t1", os.O_RDWR | os.O_DIRECT)
	ctx = ctypes.c_ulong(0)
	assert libc.syscall(SYS_io_setup, n, ctypes.byref(ctx)) == 0
	bufs = [mmap.mmap(-1, 4096) for _ in range(n)]
	iocbs = []
	for i, b in enumerate(bufs):
	    b.write(bytes([i + 1]) * 4096)
	    addr = ctypes.addressof(ctypes.c_char.from_buffer(b))
	    # struct iocb: data, key, rw_flags, opcode (1: pwrite), prio,
	    # fd, buf, nbytes, offset, reserved2, flags, resfd
	    iocbs.append(ctypes.create_string_buffer(struct.pack(
	        "=QIIHhIQQqQII", i, 0, 0, 1, 0, fd, addr, 4096, 0, 0, 0, 0), 64))
	ptrs = (ctypes.c_void_p * n)(*[ctypes.addressof(c) for c in iocbs])
	assert libc.syscall(SYS_io_submit, ctx, n, ptrs) == n
	events = ctypes.create_string_buffer(32 * n)
	got = 0
	while got < n:
	    r = libc.syscall(SYS_io_getevents, ctx, 1, n - got, events, None)
	    assert r > 0, ctypes.get_errno()
	    for k in range(r):
	        _, _, res, _ = struct.unpack_from("=QQqq", events, 32 * k)
	        assert res == 4096, res
	    got += r
	rd = mmap.mmap(-1, 4096)
	os.preadv(fd, [rd], 0)
	print("# block 0 holds write %d of %d" % (rd[0], n))
	raise SystemExit(0 if rd[:] == bytes([n]) * 4096 else 1)
	PY
	expect_match "$(node_stat t1 write delayed_ios)" '^[5-9]$' "writes held"
	th_cleanup
}

# A REQ_NOWAIT read that would wait gets EAGAIN instead.
test_nowait_read_that_would_wait_gets_eagain() {
	local dev
	th_cleanup
	dev=$(th_devs 1)
	mkdir "$TG/g1"
	tg_set g1 iops-read 10
	th_node t1 "$dev" g1
	python3 - <<-"PY" || fail "RWF_NOWAIT behaviour"
	import mmap, os, sys
	fd = os.open("/dev/mapper/t1", os.O_RDONLY | os.O_DIRECT)
	buf = mmap.mmap(-1, 4096)
	passed = 0
	for i in range(50):
	    try:
	        os.preadv(fd, [buf], 0, os.RWF_NOWAIT)
	        passed += 1
	    except BlockingIOError:
	        break
	    except OSError as e:
	        print("# RWF_NOWAIT not supported here: %s" % e)
	        sys.exit(4)
	else:
	    print("# 50 NOWAIT reads passed a 10 IOPS limit")
	    sys.exit(1)
	print("# %d reads passed, then EAGAIN" % passed)
	# A waiting read still succeeds.
	os.preadv(fd, [buf], 0)
	sys.exit(0 if passed >= 1 else 1)
	PY
	th_cleanup
}
