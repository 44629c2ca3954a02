// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer harness for targets/quorum-vote.c.  The first byte picks the
 * part:
 *
 * - even: a table line, the rest of the input cut into words at spaces and
 *   NULs, as dmsetup hands them over.  Checked: a refusal gives a reason;
 *   an accepted line obeys QEMU's rules (1 <= threshold <= children <= 16,
 *   blkverify only with two children, threshold 2, no rewrite-corrupted,
 *   read-pattern quorum), and its device words are words of the line.
 *   The rules of adding and removing a child are checked on it too.
 * - odd: a read vote.  The input gives the number of children, the
 *   threshold, blkverify, and per child an error or data drawn from a few
 *   versions, cut into segments at arbitrary places.  Checked against a
 *   direct count: the winner's group is exactly the children holding its
 *   bytes and has at least threshold members, no group is larger, the bad
 *   reads are the other successful ones, failed reads are reported, a
 *   failed vote reports no winner, and blkverify fails a mismatch at the
 *   first byte that differs.  The same errors as a write's: it succeeds
 *   when at least threshold children did, and the failed ones are named.
 */
#include <string.h>
#include "fuzz.h"
#include "quorum-vote.h"

#define MAX_WORDS	64
#define LEN		64	/* bytes of each read */
#define VERSIONS	4

static unsigned int take(const u8 **p, size_t *n)
{
	unsigned int v = 0;

	if (*n) {
		v = **p;
		(*p)++;
		(*n)--;
	}
	return v;
}

static void fuzz_parse(const u8 *data, size_t size)
{
	static char line[4096];
	char *argv[MAX_WORDS], *s;
	struct quorum_args a;
	const char *error = NULL;
	unsigned int argc = 0, i, j;
	bool found;

	size = size < sizeof(line) - 1 ? size : sizeof(line) - 1;
	memcpy(line, data, size);
	line[size] = 0;
	for (i = 0; i < size; i++)
		if (line[i] == ' ')
			line[i] = 0;
	for (s = line; s < line + size && argc < MAX_WORDS; s += strlen(s) + 1)
		if (*s)
			argv[argc++] = s;
	memset(&a, 0x5a, sizeof(a));
	if (quorum_parse(argc, argv, &a, &error)) {
		CHECK(error && *error);
		return;
	}
	CHECK(a.threshold >= 1 && a.threshold <= a.nr_children);
	CHECK(a.nr_children <= QUORUM_MAX_CHILDREN);
	CHECK(a.read_pattern == QUORUM_READ_QUORUM || a.read_pattern == QUORUM_READ_FIFO);
	if (a.blkverify)
		CHECK(a.nr_children == 2 && a.threshold == 2 &&
		      !a.rewrite_corrupted && a.read_pattern == QUORUM_READ_QUORUM);
	if (a.rewrite_corrupted)
		CHECK(a.read_pattern == QUORUM_READ_QUORUM);
	CHECK(!quorum_can_add(&a, &error) ==
	      (!a.blkverify && a.nr_children < QUORUM_MAX_CHILDREN));
	CHECK(!quorum_can_remove(&a, &error) ==
	      (a.nr_children - 1 >= a.threshold));
	for (i = 0; i < a.nr_children; i++) {
		found = false;
		for (j = 0; j < argc; j++)
			found |= a.dev[i] == argv[j];
		CHECK(found);
	}
}

static void fuzz_vote(const u8 *data, size_t size)
{
	static u8 ver[VERSIONS][LEN];
	struct quorum_seg seg[QUORUM_MAX_CHILDREN][LEN];
	struct quorum_buf buf[QUORUM_MAX_CHILDREN];
	int which[QUORUM_MAX_CHILDREN];	/* version, or -1: failed */
	int err[QUORUM_MAX_CHILDREN];
	u32 failed;
	unsigned int n, thr, i, j, k, off, cut, count[VERSIONS] = { 0 };
	unsigned int best = 0, ok = 0;
	bool blkverify;
	struct quorum_ballot v;
	int r;

	/*
	 * Version k differs from version 0 by k XORed into one byte, at a
	 * place the input picks: all four differ, some only far in.
	 */
	for (k = 0; k < VERSIONS; k++) {
		memset(ver[k], 0xa5, LEN);
		if (k)
			ver[k][take(&data, &size) % LEN] ^= k;
	}
	n = take(&data, &size) % QUORUM_MAX_CHILDREN + 1;
	thr = take(&data, &size) % (n + 1);	/* 0: refused */
	blkverify = take(&data, &size) & 1;
	if (blkverify) {
		n = 2;
		thr = 2;
	}
	for (i = 0; i < n; i++) {
		k = take(&data, &size);
		which[i] = k % (VERSIONS + 1) == VERSIONS ? -1 :
			   (int)(k % (VERSIONS + 1));
		buf[i].seg = seg[i];
		buf[i].nseg = 0;
		buf[i].err = which[i] < 0 ? -(int)(k % 7 + 1) : 0;
		if (which[i] < 0)
			continue;
		for (off = 0; off < LEN; off += cut) {
			cut = take(&data, &size) % (LEN - off) + 1;
			seg[i][buf[i].nseg].base = ver[which[i]] + off;
			seg[i][buf[i].nseg++].len = cut;
		}
	}
	/* The same children's errors as a write's: the threshold decides. */
	for (i = 0, ok = 0; i < n; i++) {
		err[i] = buf[i].err;
		ok += !err[i];
	}
	r = quorum_result(err, n, thr, &failed);
	if (thr >= 1) {
		CHECK(!r == (ok >= thr));
		for (i = 0; i < n; i++)
			CHECK(!!(failed & (1u << i)) == (err[i] != 0));
	}
	ok = 0;

	r = quorum_vote(buf, n, thr, blkverify, &v);
	if (thr < 1) {
		CHECK(r == -EINVAL);
		return;
	}
	CHECK(r == v.ret);
	for (i = 0; i < n; i++) {
		if (which[i] < 0) {
			CHECK(v.failed & (1u << i));
			CHECK(!(v.ok & (1u << i)));
			continue;
		}
		CHECK(v.ok & (1u << i));
		ok++;
		count[which[i]]++;
	}
	for (k = 0; k < VERSIONS; k++)
		best = count[k] > best ? count[k] : best;
	if (ok < thr) {
		CHECK(r != 0 && !v.winners && !v.corrupt);
		return;
	}
	if (blkverify && ok == 2 && which[0] != which[1]) {
		CHECK(r == -EIO && v.mismatch);
		for (j = 0; j < LEN && ver[which[0]][j] == ver[which[1]][j]; j++)
			;
		CHECK(v.mismatch_at == j);
		return;
	}
	if (best < thr) {
		CHECK(r == -EIO && !v.winners && !v.corrupt);
		return;
	}
	CHECK(r == 0);
	CHECK(v.winner < n && (v.winners & (1u << v.winner)));
	k = which[v.winner];
	CHECK(count[k] == best);
	for (i = 0; i < n; i++) {
		if (which[i] < 0)
			continue;
		CHECK(!!(v.winners & (1u << i)) == (which[i] == (int)k));
		CHECK(!!(v.corrupt & (1u << i)) == (which[i] != (int)k));
	}
}

int LLVMFuzzerTestOneInput(const u8 *data, size_t size)
{
	unsigned int part;

	if (!size)
		return 0;
	part = data[0];
	if (part & 1)
		fuzz_vote(data + 1, size - 1);
	else
		fuzz_parse(data + 1, size - 1);
	return 0;
}
