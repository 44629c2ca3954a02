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

# A table loaded but not resumed writes nothing: a reload of the overlay
# on a writable passthrough over its backing child (the same node: its
# tables are never live together, so the load is allowed) must not make
# the child writable for everyone while the overlay's live table still
# reads it as backing.  Once that table is live, the child is writable.
test_an_inactive_table_does_not_make_a_backing_child_writable() {
	local dm out before
	backing_fixture
	dm=$(devname /dev/mapper/rbase)
	attach_overlay
	dmsetup load top --table "0 $sz bgraph-raw /dev/mapper/rbase"
	expect_eq "$(cat /sys/block/"$dm"/ro)" 1 "ro with a writable table loaded above"
	expect_eq "$(cat $CFS/nodes/rbase/read_only)" 1 "configfs read_only"
	before=$(md5sum <"$base")
	out=$(dd if=/dev/zero of=/dev/mapper/rbase bs=4k count=1 oflag=direct 2>&1) &&
		fail "a write to the backing node succeeded"
	expect_match "$out" "not permitted|Read-only|Permission denied" "write refused"
	expect_eq "$(md5sum <"$base")" "$before" "backing data unchanged"
	dmsetup clear top
	expect_eq "$(cat /sys/block/"$dm"/ro)" 1 "ro once the inactive table is cleared"
	dmsetup load top --table "0 $sz bgraph-raw /dev/mapper/rbase"
	dmsetup resume top
	expect_eq "$(cat /sys/block/"$dm"/ro)" 0 "writable once the passthrough is live"
	dd if=/dev/zero of=/dev/mapper/rbase bs=4k count=1 oflag=direct status=none
}

# write_after_attach DEV TABLE: open DEV for writing, create the node "top"
# with TABLE (which attaches DEV below it), then write 4 KiB at 0 through
# the fd opened before.  Succeeds when that write fails.
write_after_attach() {
	python3 - "$1" "$2" <<-"PY"
	import mmap, os, subprocess, sys
	fd = os.open(sys.argv[1], os.O_RDWR | os.O_DIRECT)
	subprocess.run(["dmsetup", "create", "--readonly", "top", "--table",
	                sys.argv[2]], check=True)
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
}

test_writes_through_an_fd_opened_before_attach_fail() {
	local before after
	backing_fixture
	before=$(md5sum <"$base")
	write_after_attach /dev/mapper/rbase \
		"0 $sz bgraph-qcow2 $over 2 backing /dev/mapper/rbase"
	after=$(md5sum <"$base")
	expect_eq "$after" "$before" "backing data unchanged"
}

# The same rule for a qcow2 node below, met by a writer in the kernel that
# had it open before: a dm-linear device stacked on it (the block layer
# only warns about its writes to a read-only disk; a write through a file
# descriptor is refused earlier, with EPERM).  The qcow2 node's own map()
# refuses them, and the image stays as it was, to QEMU too.
test_a_qcow2_node_attached_as_backing_refuses_writes_from_an_old_opener() {
	local img loop before out
	img=$SCRATCH/qbase.img
	qemu-img create -q -f qcow2 "$img" 8M
	qemu-io -c "write -P 0x5a 0 64k" "$img" >/dev/null
	truncate -s 16M "$img"		# room to allocate: a write would land
	loop=$(losetup -f --show "$img")
	sz=$((8 << 11))
	dmsetup create qbase --table "0 $sz bgraph-qcow2 $loop"
	dmsetup create lin --table "0 $sz linear /dev/mapper/qbase 0"
	qemu-img create -q -f qcow2 -u -b qbase -F qcow2 "$SCRATCH/over.img" 8M
	over=$(losetup -r -f --show "$SCRATCH/over.img")
	before=$(md5sum </dev/mapper/qbase)
	dmsetup create --readonly top \
		--table "0 $sz bgraph-qcow2 $over 2 backing /dev/mapper/qbase"
	expect_eq "$(cat $CFS/nodes/qbase/read_only)" 1 "configfs read_only"
	out=$(dd if=/dev/zero of=/dev/mapper/lin bs=4k count=1 seek=100 \
		oflag=direct 2>&1) && fail "a write through dm-linear reached the backing node"
	expect_match "$out" "Input/output error" "write failed with EIO"
	expect_eq "$(md5sum </dev/mapper/qbase)" "$before" "backing node's data unchanged"
	dmsetup remove top
	dmsetup remove lin
	dmsetup remove qbase
	losetup -d "$loop"
	qemu-img check -q "$img" || fail "qemu-img check of the base"
	out=$(qemu-io -c "read -P 0x5a 0 64k" -c "read -P 0 400k 4k" "$img")
	expect_eq "$(grep -c "^read 6553\|^read 4096" <<<"$out")" 2 \
		"qemu reads the base as before"
}

test_writable_parent_and_backing_edge_conflict() {
	backing_fixture
	dmsetup create rup --table "0 $sz bgraph-raw /dev/mapper/rbase"
	mark_log
	expect_fail attach_overlay
	expect_match "$(log_since_mark)" "bgraph-qcow2: Child permissions conflict with another parent" "refusal logged"
	[ ! -e $CFS/nodes/top ] || fail "node top left behind"
}

# QEMU counts every edge: a writable node whose backing child is its own
# file takes WRITE on the file that its backing edge does not share.
test_a_writable_qcow2_node_whose_backing_is_its_own_file_is_refused() {
	local img loop
	img=$SCRATCH/self.img
	qemu-img create -q -f qcow2 "$img" 8M
	qemu-img create -q -f qcow2 "$SCRATCH/over2.img" 8M
	truncate -s 16M "$img"		# room for the raw target below
	loop=$(losetup -f --show "$img")
	mark_log
	expect_fail dmsetup create self \
		--table "0 16384 bgraph-qcow2 $loop 2 backing $loop"
	expect_match "$(log_since_mark)" \
		"bgraph-qcow2: Child permissions conflict with another edge of this node" \
		"refusal logged"
	[ ! -e $CFS/nodes/self ] || fail "node self left behind"
	# Nor can two targets of one table split the two roles between them.
	mark_log
	printf '0 8192 bgraph-raw %s\n8192 16384 bgraph-qcow2 %s 2 backing %s\n' \
		"$loop" "$(losetup -f --show "$SCRATCH/over2.img")" "$loop" >"$SCRATCH/two.table"
	expect_fail dmsetup create self2 "$SCRATCH/two.table"
	expect_match "$(log_since_mark)" \
		"bgraph-qcow2: Child permissions conflict with another edge of this node" \
		"refusal of the two-target table logged"
	[ ! -e $CFS/nodes/self2 ] || fail "node self2 left behind"
	# Read-only, nothing is written and nothing conflicts (as in QEMU).
	dmsetup create --readonly self \
		--table "0 16384 bgraph-qcow2 $loop 2 backing $loop"
	expect_match "$(cat $CFS/nodes/self/children)" "backing" "read-only node made"
}
