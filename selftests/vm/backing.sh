#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# A node under a backing edge is read-only: the graph core's permission
# rule, seen from user space through a bgraph-qcow2 overlay.

# backing_fixture: a raw image on a loop device as the writable raw node
# "rbase", and a qcow2 overlay over it (not attached yet).  Sets $base,
# $over and $sz.
backing_fixture() {
	base=$(mkloop base 8)
	head -c $((8 << 20)) /dev/urandom >"$base"
	sz=$((8 << 11))
	dmsetup create rbase --table "0 $sz bgraph-raw $base"
	qemu-img create -q -f qcow2 -u -b rbase.raw -F raw "$SCRATCH/over.img" 8M
	over=$(losetup -r -f --show "$SCRATCH/over.img")
}

attach_overlay() {
	dmsetup create --readonly top \
		--table "0 $sz bgraph-qcow2 $over 2 backing /dev/mapper/rbase"
}

test_backing_child_turns_read_only_while_attached() {
	local dm out
	backing_fixture
	dm=$(devname /dev/mapper/rbase)
	expect_eq "$(cat /sys/block/"$dm"/ro)" 0 "ro before attach"
	attach_overlay
	expect_eq "$(cat /sys/block/"$dm"/ro)" 1 "ro while attached"
	expect_eq "$(cat $CFS/nodes/rbase/read_only)" 1 "configfs read_only"
	expect_match "$(cat $CFS/nodes/top/children)" "^backing rbase$" "top children"
	out=$(dd if=/dev/zero of=/dev/mapper/rbase bs=4k count=1 oflag=direct 2>&1) &&
		fail "a write to the backing node succeeded"
	expect_match "$out" "not permitted|Read-only|Permission denied" "write refused"
	dmsetup remove top
	expect_eq "$(cat /sys/block/"$dm"/ro)" 0 "ro after detach"
	dd if=/dev/zero of=/dev/mapper/rbase bs=4k count=1 oflag=direct status=none
}

test_writes_through_an_fd_opened_before_attach_fail() {
	local before after
	backing_fixture
	before=$(md5sum <"$base")
	# Open for writing first, attach, then write through the old fd.
	python3 - /dev/mapper/rbase "$over" "$sz" <<-"PY"
	import mmap, os, subprocess, sys
	fd = os.open(sys.argv[1], os.O_RDWR | os.O_DIRECT)
	subprocess.run(["dmsetup", "create", "--readonly", "top", "--table",
	                "0 %s bgraph-qcow2 %s 2 backing %s" % (sys.argv[3], sys.argv[2], sys.argv[1])],
	               check=True)
	buf = mmap.mmap(-1, 4096)
	buf.write(b"\xee" * 4096)
	try:
	    os.pwrite(fd, buf, 0)
	except OSError as e:
	    print("# write failed: %s" % e)
	    sys.exit(0)
	print("# write through the old fd succeeded")
	sys.exit(1)
	PY
	after=$(md5sum <"$base")
	expect_eq "$after" "$before" "backing data unchanged"
}

test_writable_parent_and_backing_edge_conflict() {
	backing_fixture
	dmsetup create rup --table "0 $sz bgraph-raw /dev/mapper/rbase"
	mark_log
	expect_fail attach_overlay
	expect_match "$(log_since_mark)" "bgraph-qcow2: Child permissions conflict with another parent" "refusal logged"
	[ ! -e $CFS/nodes/top ] || fail "node top left behind"
}
