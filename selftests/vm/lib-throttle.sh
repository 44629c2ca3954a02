#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Helpers of the bgraph-throttle and throttle group tests (throttle-*.sh),
# sourced by each.  Rate tests run fio on brd for ten seconds or more and
# compare the rate achieved with the limit the test set, so they hold
# under TCG however slow the machine: every limit is far below what the
# device does unthrottled (brd ~20k IOPS under TCG).  A rate is sampled
# only while its workload runs: the workload runs until the test stops it.

TG=$CFS/throttle-groups
TH_MB=32

# th_devs N: N devices of TH_MB MiB: brd on the Debian kernels, loop
# devices on the debug kernel (its brd is built in, 4 MiB); prints paths.
th_devs() {
	local i
	if [ ! -d /lib/modules/"$(uname -r)" ]; then
		for ((i = 0; i < $1; i++)); do
			mkloop "th$i" "$TH_MB"
		done
		return
	fi
	lsmod | grep -q '^brd ' && rmmod brd
	modprobe brd rd_nr="$1" rd_size=$((TH_MB * 1024))
	for ((i = 0; i < $1; i++)); do
		[ -b /dev/ram$i ] || { fail "no /dev/ram$i"; return 1; }
		echo /dev/ram$i
	done
}

# th_node NAME DEV GROUP: a bgraph-throttle node over DEV in GROUP.
th_node() {
	dmsetup create "$1" --table "0 $(blockdev --getsz "$2") bgraph-throttle $2 $3"
}

# tg_set GROUP ATTR VALUE
tg_set() { echo "$3" >"$TG/$1/$2"; }

# node_stat NODE DIR KEY: a counter from nodes/NODE/stats.
node_stat() { sed -nE "s/^$2 .*\\b$3=([0-9]+).*/\1/p" "$CFS/nodes/$1/stats"; }

# within ACTUAL WANT PCT WHAT: |ACTUAL - WANT| <= PCT % of WANT.
within() {
	diag "$4: $1 (limit $2, tolerance ${3}%)"
	python3 -c "import sys; a, w, p = map(float, sys.argv[1:]); sys.exit(abs(a - w) > w * p / 100)" \
		"$1" "$2" "$3" || fail "$4: $1 is not within $3% of $2"
}

th_cleanup() {
	local g
	cleanup_devices
	for g in "$TG"/*/; do
		[ -d "$g" ] && rmdir "$g"
	done
	lsmod | grep -q '^brd ' && rmmod brd
	return 0
}

# sample_ios GROUP DIR SECONDS AT FILE VALUE [CMD...]: start CMD (a fio
# run, time-based with a runtime well past the window: the window must not
# outlast it on a slow host), wait for the group's first I/O in direction
# DIR (read, write, both), then print "<seconds since it> <ios>" every
# 0.25 s for SECONDS; unless AT is "-", write VALUE to FILE AT seconds
# after the first I/O.  Then stop CMD (SIGINT).  Fails if CMD ended before
# the window did or, given --output-format=json, if a job of it reported
# an error; without a CMD, the I/O of a workload the test runs itself is
# sampled.  One process that starts CMD itself: a fork per sample is slow
# under TCG, and so is python's start, which fio could otherwise beat.
sample_ios() {
	python3 - "$TG/$1/stats" "${@:2}" <<-"PY"
	import json, signal, subprocess, sys, tempfile, time
	path, d, secs, at, afile, aval = sys.argv[1:7]
	secs = float(secs)
	at = None if at == "-" else float(at)
	def ios():
	    n = 0
	    for line in open(path):
	        f = line.split()
	        if f[0] == d or d == "both":
	            n += int(f[1].split("=")[1])
	    return n
	base = ios()
	out = tempfile.TemporaryFile()
	cmd = None
	if sys.argv[7:]:
	    cmd = subprocess.Popen(sys.argv[7:], stdout=out,
	                           stderr=subprocess.STDOUT)
	deadline = time.monotonic() + 60
	while ios() == base and time.monotonic() < deadline:
	    time.sleep(0.005)
	t0 = time.monotonic()
	while True:
	    t = time.monotonic() - t0
	    print("%.3f %d" % (t, ios() - base), flush=True)
	    if cmd and cmd.poll() is not None:
	        print("the workload ended at %.3f s, before the window did" % t,
	              file=sys.stderr)
	        sys.exit(1)
	    if at is not None and t >= at:
	        open(afile, "w").write(aval + "\n")
	        print("# set %s to %s at %.3f s" % (afile, aval, t))
	        at = None
	    if t > secs:
	        break
	    time.sleep(0.25)
	if not cmd:
	    sys.exit(0)
	cmd.send_signal(signal.SIGINT)
	rc = cmd.wait()
	out.seek(0)
	text = out.read().decode(errors="replace")
	if "{" not in text:
	    sys.exit(0 if rc in (0, -signal.SIGINT) else 1)
	jobs = json.loads(text[text.index("{"):])["jobs"]
	errs = [(j["jobname"], j["error"]) for j in jobs if j["error"]]
	if errs:
	    print("fio errors: %s" % errs, file=sys.stderr)
	sys.exit(1 if errs else 0)
	PY
}

# rate_between SAMPLES T1 T2: ios per second between the samples nearest
# to T1 and T2 seconds.
rate_between() {
	python3 - "$1" "$2" "$3" <<-"PY"
	import sys
	pts = [tuple(map(float, l.split())) for l in sys.argv[1].splitlines()
	       if l.strip() and not l.startswith("#")]
	def near(t):
	    return min(pts, key=lambda p: abs(p[0] - t))
	a, b = near(float(sys.argv[2])), near(float(sys.argv[3]))
	print("%.1f" % ((b[1] - a[1]) / (b[0] - a[0])))
	PY
}
