# SPDX-License-Identifier: GPL-2.0
#
# dm-bgraph: QEMU's block-layer graph as device-mapper targets.
#
#   make            build dm-bgraph.ko for KVER (default: newest 6.1 kernel)
#   make run        boot a VM, build a small named graph, use it, show it
#   make check      the tests: host unit tests, then selftests in VMs, each
#                   kernel its tier, within 40 minutes (selftests/run)
#   make check-all  every test on every kernel (before a release)
#   make bench      fio in a VM: bgraph vs. dm-linear, as ratios
#   make unit       host unit tests only
#   make fuzz       libFuzzer over the pure-logic sources, FUZZ_SECONDS each
#   make tools      user-space tools into build/tools/ (log-writes-replay,
#                   bgraph)
#   make install    the module (kbuild's modules_install) and bgraph with
#                   its man page, under DESTDIR; install-tools: bgraph and
#                   the man page only (DKMS installs the module)
#   make C=1        sparse;  make W=1  extra warnings
#
# Each kernel gets its own build directory build/<release>/, a tree of
# symlinks to the sources, so the two kernel generations never share
# objects.  KDIR= overrides the kernel build tree.

SHELL := /bin/bash
SRC := $(CURDIR)

# Newest installed release of each Debian generation we test.
kver_of = $(shell ls /lib/modules 2>/dev/null | grep -E '^$(1)' | \
	    grep -v -e rt -e cloud | sort -V | tail -n1)
KVER_6_1 = $(call kver_of,6\.1\.[0-9]+-[0-9]+-amd64$$)
KVER_6_12 = $(call kver_of,6\.12\.[0-9]+\+deb12-amd64$$)

KVER ?= $(KVER_6_1)
KDIR ?= /lib/modules/$(KVER)/build
BUILD = $(SRC)/build/$(KVER)
KO = $(BUILD)/dm-bgraph.ko

# make bench: six more blank virtio-blk disks (/dev/vdc-vdh) for the
# quorum part's md raid1 and quorum on virtio-blk, 128 MiB each.
BENCH_QUORUM_DISKS := $(foreach d,1 2 3 4 5 6,-b 128M)

MODULE_SRCS := Kbuild $(wildcard dm-bgraph/*.[ch] targets/*.[ch] jobs/*.[ch])

KBUILD_ARGS := $(if $(C),C=$(C)) $(if $(W),W=$(W))

.PHONY: all module modules-all unit fuzz check check-all run bench setup clean sparse tools \
	install install-tools

all: module

module:
	@test -n "$(KVER)" || { echo "no kernel headers found: run tools/setup" >&2; exit 1; }
	@test -d "$(KDIR)" || { echo "no kernel build tree at $(KDIR)" >&2; exit 1; }
	@mkdir -p $(BUILD)
	@cd $(BUILD) && cp -rsf $(addprefix $(SRC)/,Kbuild dm-bgraph targets jobs) .
	$(MAKE) -C $(KDIR) M=$(BUILD) $(KBUILD_ARGS) modules

# The module for every kernel the selftests boot.
modules-all:
	$(MAKE) module KVER=$(KVER_6_1)
	$(MAKE) module KVER=$(KVER_6_12)

sparse:
	$(MAKE) modules-all C=2

setup:
	@tools/setup

unit:
	@$(MAKE) -s -C selftests/unit run

# FUZZ_SECONDS (default 120) per fuzzer; fails on any crash it finds.
fuzz:
	@$(MAKE) -s -C selftests/fuzz run

tools: build/tools/log-writes-replay build/tools/bgraph

build/tools/bgraph: $(wildcard tools/bgraph/*.[ch]) targets/qcow2-format.c \
		    targets/qcow2-format.h dm-bgraph/pure.h selftests/lib/uspace.h
	@$(MAKE) -s -C tools/bgraph O=$(SRC)/build/tools

build/tools/%: tools/%.c
	@mkdir -p $(@D)
	$(CC) -O2 -Wall -Wextra -o $@ $<

install: module install-tools
	$(MAKE) -C $(KDIR) M=$(BUILD) INSTALL_MOD_PATH=$(DESTDIR) modules_install

install-tools: build/tools/bgraph
	install -D -m 0755 build/tools/bgraph $(DESTDIR)/usr/sbin/bgraph
	install -D -m 0644 tools/bgraph/bgraph.8 $(DESTDIR)/usr/share/man/man8/bgraph.8

check: setup
	@selftests/run

check-all: setup
	@selftests/run --all

run: setup
	@$(MAKE) -s module tools
	@set -o pipefail; tools/vm-run -k 6.1 tools/demo.sh | tools/demo-svg $(SRC)/build/demo

bench: setup
	@$(MAKE) -s module tools
	@tools/vm-run -k 6.1 -m 3072 -b 8G $(BENCH_QUORUM_DISKS) -t 6000 tools/bench.sh

clean:
	rm -rf build
	@$(MAKE) -s -C selftests/unit clean
