// SPDX-License-Identifier: GPL-2.0
/*
 * The vote of bgraph-quorum, after QEMU's block/quorum.c.  Pure logic: see
 * quorum-vote.h and pure.h.
 */
#include "quorum-vote.h"
#include "../dm-bgraph/parse.h"

/* ---------------------------------------------------------------- helpers */

static u32 quorum_mask(unsigned int n)
{
	return (u32)(BIT_ULL(n) - 1);
}

static unsigned int quorum_weight(u32 set)
{
	unsigned int w = 0;

	for (; set; set &= set - 1)
		w++;
	return w;
}

static bool quorum_sizes_ok(unsigned int n, unsigned int threshold)
{
	return n && n <= QUORUM_MAX_CHILDREN && threshold && threshold <= n;
}

/* The next byte of a read: skip the segments used up, and empty ones. */
static bool quorum_cursor(const struct quorum_buf *b, unsigned int *i, size_t *off)
{
	while (*i < b->nseg && *off == b->seg[*i].len) {
		(*i)++;
		*off = 0;
	}
	return *i < b->nseg;
}

bool quorum_buf_equal(const struct quorum_buf *a, const struct quorum_buf *b,
		      u64 *mismatch_at)
{
	unsigned int ia = 0, ib = 0;
	size_t oa = 0, ob = 0, len, k;
	bool more_a, more_b;
	const u8 *pa, *pb;
	u64 pos = 0;

	for (;;) {
		more_a = quorum_cursor(a, &ia, &oa);
		more_b = quorum_cursor(b, &ib, &ob);
		if (!more_a || !more_b)
			break;
		pa = (const u8 *)a->seg[ia].base + oa;
		pb = (const u8 *)b->seg[ib].base + ob;
		len = a->seg[ia].len - oa;
		if (len > b->seg[ib].len - ob)
			len = b->seg[ib].len - ob;
		/* memcmp() is the fast one; find the byte only when asked. */
		if (memcmp(pa, pb, len)) {
			if (mismatch_at) {
				for (k = 0; pa[k] == pb[k]; k++)
					;
				*mismatch_at = pos + k;
			}
			return false;
		}
		oa += len;
		ob += len;
		pos += len;
	}
	if (!more_a && !more_b)
		return true;
	if (mismatch_at)
		*mismatch_at = pos;
	return false;
}

/*
 * QEMU's quorum_vote_error(): group the children of @err that failed by
 * error code, in child order, and return the code of the largest group.
 * quorum_count_vote() puts each new group at the head of the list and
 * quorum_get_vote_winner() takes the first strictly larger count from the
 * head, so a tie goes to the group created last.  0 if none failed.
 */
static int quorum_error_vote(const int *err, unsigned int n)
{
	unsigned int count[QUORUM_MAX_CHILDREN], ng = 0, g, i, best;
	int code[QUORUM_MAX_CHILDREN];

	for (i = 0; i < n; i++) {
		if (!err[i])
			continue;
		for (g = 0; g < ng && code[g] != err[i]; g++)
			;
		if (g == ng) {
			code[ng] = err[i];
			count[ng++] = 0;
		}
		count[g]++;
	}
	if (!ng)
		return 0;
	/* Newest first, as QEMU's list; only a larger count takes over. */
	best = ng - 1;
	for (g = ng - 1; g-- > 0;)
		if (count[g] > count[best])
			best = g;
	return code[best];
}

/* ------------------------------------------------------------------ votes */

int quorum_vote(const struct quorum_buf *buf, unsigned int n,
		unsigned int threshold, bool blkverify, struct quorum_ballot *v)
{
	u32 members[QUORUM_MAX_CHILDREN], all = quorum_mask(n);
	unsigned int first[QUORUM_MAX_CHILDREN], ng, g, i, j, split, best;
	int err[QUORUM_MAX_CHILDREN];

	memset(v, 0, sizeof(*v));
	if (!quorum_sizes_ok(n, threshold) ||
	    (blkverify && (n != 2 || threshold != 2)))
		return v->ret = -EINVAL;

	for (i = 0; i < n; i++) {
		err[i] = buf[i].err;
		if (err[i])
			v->failed |= BIT(i);
		else
			v->ok |= BIT(i);
	}
	v->losers = all;

	/* quorum_has_too_much_io_failed(): errors vote for the error code. */
	if (quorum_weight(v->ok) < threshold)
		return v->ret = quorum_error_vote(err, n);

	/* The first successful read against the others, to the first miss. */
	for (i = 0; err[i]; i++)
		;
	first[0] = i;
	members[0] = BIT(i);
	for (j = i + 1; j < n; j++) {
		if (err[j])
			continue;
		if (!quorum_buf_equal(&buf[i], &buf[j],
				      blkverify ? &v->mismatch_at : NULL))
			break;
		members[0] |= BIT(j);
	}
	if (j == n) {
		v->unanimous = true;
		v->versions = 1;
		v->winner = i;
		v->winners = v->ok;
		v->losers = v->failed;
		return v->ret = 0;
	}
	if (blkverify) {
		/* QEMU prints the offset and exits; the I/O fails instead. */
		v->mismatch = true;
		v->versions = 2;
		return v->ret = -EIO;
	}

	/* Group the rest by content; child @split is known not to be in 0. */
	ng = 1;
	for (split = j; j < n; j++) {
		if (err[j])
			continue;
		for (g = j == split ? 1 : 0; g < ng; g++)
			if (quorum_buf_equal(&buf[first[g]], &buf[j], NULL))
				break;
		if (g == ng) {
			first[ng] = j;
			members[ng++] = 0;
		}
		members[g] |= BIT(j);
	}
	v->versions = ng;

	/* quorum_get_vote_winner(): a tie goes to the group created last. */
	best = ng - 1;
	for (g = ng - 1; g-- > 0;)
		if (quorum_weight(members[g]) > quorum_weight(members[best]))
			best = g;
	if (quorum_weight(members[best]) < threshold)
		return v->ret = -EIO;

	v->winner = first[best];
	v->winners = members[best];
	v->corrupt = v->ok & ~v->winners;
	v->losers = all & ~v->winners;
	return v->ret = 0;
}

int quorum_result(const int *err, unsigned int n, unsigned int threshold,
		  u32 *failed)
{
	unsigned int i, ok = 0;
	u32 f = 0;

	if (failed)
		*failed = 0;
	if (!quorum_sizes_ok(n, threshold))
		return -EINVAL;
	for (i = 0; i < n; i++) {
		if (err[i])
			f |= BIT(i);
		else
			ok++;
	}
	if (failed)
		*failed = f;
	return ok >= threshold ? 0 : quorum_error_vote(err, n);
}

/* ------------------------------------------------------------ table line */

static int quorum_parse_opts(unsigned int argc, char **argv,
			     struct quorum_args *a, const char **error)
{
	bool seen_pattern = false;
	unsigned int i;

	if (bg_parse_opt_count(argc, argv, false, error))
		return -EINVAL;
	for (i = 1; i < argc; i++) {
		const char *key = argv[i];

		if (!strcmp(key, "rewrite-corrupted")) {
			if (a->rewrite_corrupted) {
				*error = "Option rewrite-corrupted given twice";
				return -EINVAL;
			}
			a->rewrite_corrupted = true;
		} else if (!strcmp(key, "blkverify")) {
			if (a->blkverify) {
				*error = "Option blkverify given twice";
				return -EINVAL;
			}
			a->blkverify = true;
		} else if (!strcmp(key, "read-pattern")) {
			if (seen_pattern) {
				*error = "Option read-pattern given twice";
				return -EINVAL;
			}
			seen_pattern = true;
			if (i + 1 == argc) {
				*error = "Option read-pattern needs a value: quorum or fifo";
				return -EINVAL;
			}
			key = argv[++i];
			if (!strcmp(key, "quorum")) {
				a->read_pattern = QUORUM_READ_QUORUM;
			} else if (!strcmp(key, "fifo")) {
				a->read_pattern = QUORUM_READ_FIFO;
			} else {
				*error = "Invalid read-pattern: quorum or fifo";
				return -EINVAL;
			}
		} else {
			*error = "Unknown optional argument";
			return -EINVAL;
		}
	}
	return 0;
}

int quorum_parse(unsigned int argc, char **argv, struct quorum_args *a,
		 const char **error)
{
	u64 threshold, n;
	unsigned int i;

	memset(a, 0, sizeof(*a));
	if (argc < 2) {
		*error = "Not enough arguments: <threshold> <#children> <dev>...";
		return -EINVAL;
	}
	if (bg_parse_u64(argv[0], &threshold)) {
		*error = "Invalid vote threshold: not a number";
		return -EINVAL;
	}
	if (bg_parse_u64(argv[1], &n)) {
		*error = "Invalid number of children: not a number";
		return -EINVAL;
	}
	if (!n) {
		*error = "Number of children must be 1 or more";
		return -EINVAL;
	}
	if (n > QUORUM_MAX_CHILDREN) {
		*error = "Too many children: at most 16";
		return -EINVAL;
	}
	if (argc - 2 < n) {
		*error = "Fewer devices than the number of children";
		return -EINVAL;
	}
	/* QEMU's quorum_valid_threshold(). */
	if (!threshold) {
		*error = "Vote threshold must be 1 or more";
		return -EINVAL;
	}
	if (threshold > n) {
		*error = "Vote threshold may not exceed the number of children";
		return -EINVAL;
	}
	a->threshold = threshold;
	a->nr_children = n;
	for (i = 0; i < n; i++)
		a->dev[i] = argv[2 + i];

	if (argc > 2 + n &&
	    quorum_parse_opts(argc - 2 - n, argv + 2 + n, a, error))
		return -EINVAL;

	/* QEMU reads these two only with read-pattern quorum. */
	if (a->read_pattern == QUORUM_READ_FIFO && a->rewrite_corrupted) {
		*error = "rewrite-corrupted needs read-pattern quorum";
		return -EINVAL;
	}
	if (a->read_pattern == QUORUM_READ_FIFO && a->blkverify) {
		*error = "blkverify needs read-pattern quorum";
		return -EINVAL;
	}
	if (a->blkverify && (a->nr_children != 2 || a->threshold != 2)) {
		*error = "blkverify needs exactly two children and vote threshold 2";
		return -EINVAL;
	}
	if (a->blkverify && a->rewrite_corrupted) {
		*error = "rewrite-corrupted cannot be used with blkverify";
		return -EINVAL;
	}
	return 0;
}

int quorum_can_add(const struct quorum_args *a, const char **error)
{
	if (a->blkverify) {
		*error = "Cannot add a child to a quorum in blkverify mode";
		return -EINVAL;
	}
	if (a->nr_children >= QUORUM_MAX_CHILDREN) {
		*error = "Too many children: at most 16";
		return -EINVAL;
	}
	return 0;
}

int quorum_can_remove(const struct quorum_args *a, const char **error)
{
	if (a->nr_children <= a->threshold) {
		*error = "The number of children cannot be lower than the vote threshold";
		return -EINVAL;
	}
	return 0;
}
