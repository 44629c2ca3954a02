// SPDX-License-Identifier: GPL-2.0
/*
 * Host unit tests of targets/quorum-vote.c: QEMU's read vote (agreement,
 * corruption, ties, errors, blkverify), the write/flush rule, the table
 * line and its refusals, and random vote sets against two references: a
 * brute-force statement of the rule, and a literal model of QEMU's vote
 * lists (quorum_count_vote() / quorum_get_vote_winner()).
 */
#include "kselftest_harness.h"
#include "quorum-vote.h"

#define ARGV(...) ((char *[]){ __VA_ARGS__ })
#define ARGC(...) (sizeof((char *[]){ __VA_ARGS__ }) / sizeof(char *))
#define PARSE(a, err, ...) \
	quorum_parse(ARGC(__VA_ARGS__), ARGV(__VA_ARGS__), (a), (err))

#define MAX	QUORUM_MAX_CHILDREN
#define LEN	4096
#define MAXSEG	8

static u64 rng_next(u64 *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* The reads of one vote: data, segments, and the quorum_buf of each child. */
struct reads {
	u8 data[MAX][LEN];
	struct quorum_seg seg[MAX][MAXSEG];
	struct quorum_buf buf[MAX];
	int label[MAX];		/* content version, or -1 for an error */
	unsigned int n;
	size_t len;		/* of every read */
};

/*
 * Version @ver of a read of @len bytes: a common pattern, version 0 as is,
 * version v > 0 with byte at(v) xor-ed by v, so two versions always differ.
 */
static size_t version_at(int ver, size_t len)
{
	return (size_t)ver * 977 % len;
}

static void fill_version(u8 *d, size_t len, int ver)
{
	size_t i;

	for (i = 0; i < len; i++)
		d[i] = (u8)(i * 31 + 7);
	if (ver)
		d[version_at(ver, len)] ^= (u8)ver;
}

/* Cut child @i's @len bytes into @nseg pieces at pseudo-random points. */
static void cut(struct reads *r, unsigned int i, size_t len,
		unsigned int nseg, u64 *seed)
{
	size_t left = len, l;
	unsigned int s;

	for (s = 0; s < nseg; s++) {
		l = s == nseg - 1 ? left : (left ? rng_next(seed) % (left + 1) : 0);
		r->seg[i][s].base = &r->data[i][len - left];
		r->seg[i][s].len = l;
		left -= l;
	}
	r->buf[i].seg = r->seg[i];
	r->buf[i].nseg = nseg;
}

/*
 * One character per child: 'A'.. a content version (A = 0), 'E' -EIO,
 * 'N' -ENOSPC, 'D' -ENODEV.  Child i's read is cut into i % 4 + 1 pieces.
 */
static unsigned int setup(struct reads *r, const char *spec)
{
	u64 seed = 0x9e3779b97f4a7c15ULL;
	unsigned int i;

	memset(r, 0, sizeof(*r));
	for (i = 0; spec[i]; i++) {
		switch (spec[i]) {
		case 'E':
			r->buf[i].err = -EIO;
			r->label[i] = -1;
			continue;
		case 'N':
			r->buf[i].err = -ENOSPC;
			r->label[i] = -1;
			continue;
		case 'D':
			r->buf[i].err = -ENODEV;
			r->label[i] = -1;
			continue;
		}
		r->label[i] = spec[i] - 'A';
		fill_version(r->data[i], LEN, r->label[i]);
		cut(r, i, LEN, i % 4 + 1, &seed);
	}
	r->n = i;
	return i;
}

static struct reads R;

static int vote(const char *spec, unsigned int threshold, struct quorum_ballot *v)
{
	return quorum_vote(R.buf, setup(&R, spec), threshold, false, v);
}

/* ------------------------------------------------------------- equality */

TEST(equal_ignores_how_reads_are_cut)
{
	static u8 x[100], y[100];
	struct quorum_seg sa[] = { { x, 10 }, { x + 10, 0 }, { x + 10, 90 } };
	struct quorum_seg sb[] = { { y, 0 }, { y, 33 }, { y + 33, 67 }, { y, 0 } };
	struct quorum_buf a = { sa, ARRAY_SIZE(sa), 0 };
	struct quorum_buf b = { sb, ARRAY_SIZE(sb), 0 };
	u64 at = 12345;

	memset(x, 7, sizeof(x));
	memset(y, 7, sizeof(y));
	EXPECT_TRUE(quorum_buf_equal(&a, &b, &at));
	EXPECT_EQ(12345, at);	/* untouched when equal */
	y[50] = 8;
	EXPECT_FALSE(quorum_buf_equal(&a, &b, NULL));
	EXPECT_FALSE(quorum_buf_equal(&a, &b, &at));
	EXPECT_EQ(50, at);
	y[50] = 7;
	y[99] = 0;
	EXPECT_FALSE(quorum_buf_equal(&b, &a, &at));
	EXPECT_EQ(99, at);
}

TEST(equal_reads_of_different_lengths_differ)
{
	static u8 x[64];
	struct quorum_seg sa[] = { { x, 64 } }, sb[] = { { x, 32 } };
	struct quorum_buf a = { sa, 1, 0 }, b = { sb, 1, 0 }, e = { NULL, 0, 0 };
	u64 at = 0;

	EXPECT_FALSE(quorum_buf_equal(&a, &b, &at));
	EXPECT_EQ(32, at);
	EXPECT_FALSE(quorum_buf_equal(&b, &a, &at));
	EXPECT_EQ(32, at);
	EXPECT_TRUE(quorum_buf_equal(&e, &e, &at));
	EXPECT_FALSE(quorum_buf_equal(&e, &b, &at));
	EXPECT_EQ(0, at);
}

/* ---------------------------------------------------------- read votes */

TEST(all_agree_returns_the_first_read_and_reports_nobody)
{
	struct quorum_ballot v;

	EXPECT_EQ(0, vote("AAA", 2, &v));
	EXPECT_TRUE(v.unanimous);
	EXPECT_EQ(0, v.winner);
	EXPECT_EQ(0x7, v.winners);
	EXPECT_EQ(0x7, v.ok);
	EXPECT_EQ(0, v.failed);
	EXPECT_EQ(0, v.corrupt);
	EXPECT_EQ(0, v.losers);
	EXPECT_EQ(1, v.versions);
	EXPECT_FALSE(v.mismatch);
}

TEST(one_child_alone_is_unanimous)
{
	struct quorum_ballot v;

	EXPECT_EQ(0, vote("B", 1, &v));
	EXPECT_TRUE(v.unanimous);
	EXPECT_EQ(0x1, v.winners);
	EXPECT_EQ(0, v.losers);
}

TEST(one_corrupted_child_is_outvoted_and_reported)
{
	static const char * const spec[] = { "BAA", "ABA", "AAB" };
	struct quorum_ballot v;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(spec); i++) {
		EXPECT_EQ(0, vote(spec[i], 2, &v));
		EXPECT_FALSE(v.unanimous);
		EXPECT_EQ(2, v.versions);
		EXPECT_EQ(0x7 & ~BIT(i), v.winners);
		EXPECT_EQ(i ? 0 : 1, v.winner);
		EXPECT_EQ(BIT(i), v.corrupt);
		EXPECT_EQ(BIT(i), v.losers);
		EXPECT_EQ(0, v.failed);
	}
	/* Threshold 3 of 3: the same two agreeing are not enough. */
	EXPECT_EQ(-EIO, vote("AAB", 3, &v));
	EXPECT_EQ(0, v.winners);
	EXPECT_EQ(0, v.corrupt);
	EXPECT_EQ(0x7, v.losers);
}

TEST(two_corrupted_differently_with_threshold_2_is_a_quorum_failure)
{
	struct quorum_ballot v;

	EXPECT_EQ(-EIO, vote("ABC", 2, &v));
	EXPECT_EQ(3, v.versions);
	EXPECT_EQ(0, v.winners);
	EXPECT_EQ(0, v.corrupt);
	EXPECT_EQ(0x7, v.losers);
	EXPECT_EQ(0x7, v.ok);
	EXPECT_FALSE(v.unanimous);
}

TEST(tie_at_threshold_1_goes_to_the_last_version_first_seen)
{
	struct quorum_ballot v;

	/* quorum_get_vote_winner() over a head-inserted list: child 2. */
	EXPECT_EQ(0, vote("ABC", 1, &v));
	EXPECT_EQ(2, v.winner);
	EXPECT_EQ(BIT(2), v.winners);
	EXPECT_EQ(0x3, v.corrupt);
	EXPECT_EQ(0x3, v.losers);
	/* Failed children take no part; the last successful read wins. */
	EXPECT_EQ(0, vote("ABE", 1, &v));
	EXPECT_EQ(1, v.winner);
	EXPECT_EQ(BIT(1), v.winners);
	EXPECT_EQ(BIT(0), v.corrupt);
	EXPECT_EQ(BIT(0) | BIT(2), v.losers);
	EXPECT_EQ(BIT(2), v.failed);
}

TEST(tie_between_groups_goes_to_the_one_whose_first_member_is_last)
{
	struct quorum_ballot v;

	/* A = {0, 2}, B = {1, 3}: B was created last. */
	EXPECT_EQ(0, vote("ABAB", 2, &v));
	EXPECT_EQ(1, v.winner);
	EXPECT_EQ(BIT(1) | BIT(3), v.winners);
	EXPECT_EQ(BIT(0) | BIT(2), v.corrupt);
	/* B = {0, 3}, A = {1, 2}: A was created last. */
	EXPECT_EQ(0, vote("BAAB", 2, &v));
	EXPECT_EQ(1, v.winner);
	EXPECT_EQ(BIT(1) | BIT(2), v.winners);
	/* A larger group wins wherever it starts. */
	EXPECT_EQ(0, vote("AABBBC", 2, &v));
	EXPECT_EQ(2, v.winner);
	EXPECT_EQ(0x1c, v.winners);
	EXPECT_EQ(0x23, v.corrupt);
	EXPECT_EQ(0, vote("AAABBC", 2, &v));
	EXPECT_EQ(0, v.winner);
	EXPECT_EQ(0x7, v.winners);
}

TEST(failed_reads_are_reported_but_not_rewritten)
{
	struct quorum_ballot v;

	/* Fast path: the good reads agree. */
	EXPECT_EQ(0, vote("AEA", 2, &v));
	EXPECT_TRUE(v.unanimous);
	EXPECT_EQ(0x5, v.winners);
	EXPECT_EQ(BIT(1), v.failed);
	EXPECT_EQ(BIT(1), v.losers);
	EXPECT_EQ(0, v.corrupt);
	/* The first read failed: the vote starts at the first good one. */
	EXPECT_EQ(0, vote("EAB", 1, &v));
	EXPECT_EQ(2, v.winner);
	EXPECT_EQ(BIT(1), v.corrupt);
	EXPECT_EQ(BIT(0) | BIT(1), v.losers);
	/* An error never outvotes data. */
	EXPECT_EQ(0, vote("EEEEA", 1, &v));
	EXPECT_TRUE(v.unanimous);
	EXPECT_EQ(4, v.winner);
	EXPECT_EQ(0xf, v.losers);
}

TEST(too_few_good_reads_fail_with_the_errors_vote)
{
	struct quorum_ballot v;

	EXPECT_EQ(-EIO, vote("AEE", 2, &v));
	EXPECT_EQ(0x6, v.failed);
	EXPECT_EQ(0x7, v.losers);
	EXPECT_EQ(0, v.winners);
	EXPECT_EQ(0, v.corrupt);
	EXPECT_EQ(0, v.versions);
	/* Children that failed with the same code vote together. */
	EXPECT_EQ(-ENOSPC, vote("NENA", 2, &v));
	EXPECT_EQ(-EIO, vote("EENNE", 5, &v));
	/* A tie between codes goes to the code first seen last. */
	EXPECT_EQ(-ENOSPC, vote("ENA", 2, &v));
	EXPECT_EQ(-EIO, vote("NEA", 2, &v));
	EXPECT_EQ(-ENODEV, vote("ENNEDD", 1, &v));
	/* The good reads agreeing does not help below the threshold. */
	EXPECT_EQ(-ENODEV, vote("AAD", 3, &v));
	EXPECT_EQ(0x3, v.ok);
	EXPECT_FALSE(v.unanimous);
}

TEST(all_reads_failed)
{
	struct quorum_ballot v;

	EXPECT_EQ(-EIO, vote("EEE", 1, &v));
	EXPECT_EQ(0x7, v.failed);
	EXPECT_EQ(0, v.ok);
	EXPECT_EQ(0x7, v.losers);
	EXPECT_EQ(-ENOSPC, vote("N", 1, &v));
	EXPECT_EQ(-ENODEV, vote("EDND", 1, &v));
}

TEST(blkverify_agreeing_reads_pass)
{
	struct quorum_ballot v;

	setup(&R, "AA");
	EXPECT_EQ(0, quorum_vote(R.buf, 2, 2, true, &v));
	EXPECT_TRUE(v.unanimous);
	EXPECT_FALSE(v.mismatch);
	EXPECT_EQ(0x3, v.winners);
}

TEST(blkverify_mismatch_fails_with_the_first_differing_byte)
{
	struct quorum_ballot v;

	setup(&R, "AC");
	EXPECT_EQ(-EIO, quorum_vote(R.buf, 2, 2, true, &v));
	EXPECT_TRUE(v.mismatch);
	EXPECT_EQ(version_at(2, LEN), v.mismatch_at);
	EXPECT_EQ(0, v.winners);
	EXPECT_EQ(0x3, v.losers);
	/* One read failed: too few good reads, the error is returned. */
	setup(&R, "AN");
	EXPECT_EQ(-ENOSPC, quorum_vote(R.buf, 2, 2, true, &v));
	EXPECT_FALSE(v.mismatch);
	/* Without blkverify the same reads only fail the threshold. */
	setup(&R, "AC");
	EXPECT_EQ(-EIO, quorum_vote(R.buf, 2, 2, false, &v));
	EXPECT_FALSE(v.mismatch);
	EXPECT_EQ(0, v.mismatch_at);
}

TEST(vote_refuses_impossible_sizes)
{
	struct quorum_ballot v;

	setup(&R, "AAAA");
	EXPECT_EQ(-EINVAL, quorum_vote(R.buf, 0, 0, false, &v));
	EXPECT_EQ(-EINVAL, quorum_vote(R.buf, 2, 0, false, &v));
	EXPECT_EQ(-EINVAL, quorum_vote(R.buf, 2, 3, false, &v));
	EXPECT_EQ(-EINVAL, quorum_vote(R.buf, MAX + 1, 1, false, &v));
	EXPECT_EQ(-EINVAL, quorum_vote(R.buf, 3, 2, true, &v));
	EXPECT_EQ(-EINVAL, quorum_vote(R.buf, 2, 1, true, &v));
	EXPECT_EQ(-EINVAL, v.ret);
	EXPECT_EQ(0, v.losers);
}

TEST(sixteen_children_all_different_at_threshold_1)
{
	struct quorum_ballot v;

	EXPECT_EQ(0, vote("ABCDEFGHIJKLMNOP", 1, &v));
	/* 'E', 'N', 'D' are errors in this spelling: 13 versions. */
	EXPECT_EQ(13, v.versions);
	EXPECT_EQ(15, v.winner);
	EXPECT_EQ(BIT(15), v.winners);
	EXPECT_EQ(0xffff & ~BIT(15), v.losers);
	EXPECT_EQ(BIT(3) | BIT(4) | BIT(13), v.failed);
	EXPECT_EQ(-EIO, vote("ABCFGHIJKLMOPQRS", 2, &v));
	EXPECT_EQ(16, v.versions);
	EXPECT_EQ(0xffff, v.losers);
}

/* ------------------------------------------------- writes and flushes */

TEST(write_succeeds_with_threshold_successes)
{
	int ok3[] = { 0, 0, 0 }, one[] = { 0, -EIO, 0 }, two[] = { -EIO, 0, -EIO };
	u32 failed = 123;

	EXPECT_EQ(0, quorum_result(ok3, 3, 3, &failed));
	EXPECT_EQ(0, failed);
	EXPECT_EQ(0, quorum_result(one, 3, 2, &failed));
	EXPECT_EQ(BIT(1), failed);
	EXPECT_EQ(-EIO, quorum_result(one, 3, 3, &failed));
	EXPECT_EQ(BIT(1), failed);
	EXPECT_EQ(-EIO, quorum_result(two, 3, 2, &failed));
	EXPECT_EQ(0x5, failed);
	EXPECT_EQ(0, quorum_result(two, 3, 1, NULL));
}

TEST(write_failure_returns_the_errors_vote)
{
	int a[] = { -ENOSPC, -EIO, -ENOSPC, 0 };
	int tie[] = { -EIO, -ENOSPC, 0 };
	int all[] = { -ENODEV, -EIO, -EIO, -ENODEV, -ENOSPC };
	u32 failed;

	EXPECT_EQ(-ENOSPC, quorum_result(a, 4, 2, &failed));
	EXPECT_EQ(0x7, failed);
	EXPECT_EQ(-ENOSPC, quorum_result(tie, 3, 2, &failed));
	EXPECT_EQ(-EIO, quorum_result(all, 5, 1, &failed));
	EXPECT_EQ(0x1f, failed);
	EXPECT_EQ(-EINVAL, quorum_result(a, 4, 5, &failed));
	EXPECT_EQ(0, failed);
	EXPECT_EQ(-EINVAL, quorum_result(a, 0, 0, NULL));
}

/* ------------------------------------------------------------ table line */

TEST(parse_minimal_line)
{
	struct quorum_args a;
	const char *err = NULL;
	char *argv[] = { "2", "3", "/dev/a", "/dev/b", "8:16" };

	EXPECT_EQ(0, quorum_parse(ARRAY_SIZE(argv), argv, &a, &err));
	EXPECT_EQ(NULL, err);
	EXPECT_EQ(2, a.threshold);
	EXPECT_EQ(3, a.nr_children);
	EXPECT_EQ(argv[2], a.dev[0]);
	EXPECT_EQ(argv[3], a.dev[1]);
	EXPECT_EQ(argv[4], a.dev[2]);
	EXPECT_EQ(NULL, a.dev[3]);
	EXPECT_EQ(QUORUM_READ_QUORUM, a.read_pattern);
	EXPECT_FALSE(a.rewrite_corrupted);
	EXPECT_FALSE(a.blkverify);
}

TEST(parse_options)
{
	struct quorum_args a;
	const char *err = NULL;

	EXPECT_EQ(0, PARSE(&a, &err, "2", "3", "a", "b", "c", "0"));
	EXPECT_EQ(0, PARSE(&a, &err, "2", "3", "a", "b", "c", "3",
			   "read-pattern", "quorum", "rewrite-corrupted"));
	EXPECT_TRUE(a.rewrite_corrupted);
	EXPECT_EQ(QUORUM_READ_QUORUM, a.read_pattern);
	EXPECT_EQ(0, PARSE(&a, &err, "1", "3", "a", "b", "c", "2",
			   "read-pattern", "fifo"));
	EXPECT_EQ(QUORUM_READ_FIFO, a.read_pattern);
	EXPECT_EQ(1, a.threshold);
	EXPECT_EQ(0, PARSE(&a, &err, "2", "2", "a", "b", "1", "blkverify"));
	EXPECT_TRUE(a.blkverify);
	EXPECT_EQ(0, PARSE(&a, &err, "16", "16", "0", "1", "2", "3", "4", "5",
			   "6", "7", "8", "9", "10", "11", "12", "13", "14",
			   "15"));
	EXPECT_EQ(16, a.nr_children);
	EXPECT_STREQ("15", a.dev[15]);
	EXPECT_EQ(NULL, err);
}

#define REFUSE(reason, ...) do {					\
	struct quorum_args _a;					\
	const char *_err = NULL;					\
									\
	EXPECT_EQ(-EINVAL, PARSE(&_a, &_err, __VA_ARGS__));		\
	EXPECT_STREQ(reason, _err ? _err : "(none)");			\
} while (0)

TEST(parse_refuses_bad_positional_arguments)
{
	struct quorum_args a;
	const char *err = NULL;

	EXPECT_EQ(-EINVAL, quorum_parse(0, NULL, &a, &err));
	EXPECT_STREQ("Not enough arguments: <threshold> <#children> <dev>...", err);
	REFUSE("Not enough arguments: <threshold> <#children> <dev>...", "1");
	REFUSE("Invalid vote threshold: not a number", "x", "1", "a");
	REFUSE("Invalid vote threshold: not a number", "-1", "1", "a");
	REFUSE("Invalid vote threshold: not a number",
	       "18446744073709551616", "1", "a");
	REFUSE("Invalid number of children: not a number", "1", "", "a");
	REFUSE("Invalid number of children: not a number", "1", "2x", "a");
	REFUSE("Number of children must be 1 or more", "1", "0");
	REFUSE("Too many children: at most 16", "1", "17", "a");
	REFUSE("Fewer devices than the number of children", "1", "3", "a",
	       "b");
	REFUSE("Fewer devices than the number of children", "1", "1");
	REFUSE("Vote threshold must be 1 or more", "0", "2", "a", "b");
	REFUSE("Vote threshold may not exceed the number of children", "3",
	       "2", "a", "b");
	REFUSE("Vote threshold may not exceed the number of children",
	       "18446744073709551615", "2", "a", "b");
}

TEST(parse_refuses_bad_optional_arguments)
{
	REFUSE("Invalid number of optional arguments", "1", "1", "a", "x");
	REFUSE("Invalid number of optional arguments", "1", "1", "a", "");
	REFUSE("Optional argument count does not match the arguments given",
	       "1", "1", "a", "2", "blkverify");
	REFUSE("Optional argument count does not match the arguments given",
	       "1", "1", "a", "0", "blkverify");
	REFUSE("Unknown optional argument", "1", "1", "a", "1", "fifo");
	REFUSE("Unknown optional argument", "1", "1", "a", "2",
	       "rewrite-corrupted", "rewrite_corrupted");
	REFUSE("Option rewrite-corrupted given twice", "1", "1", "a", "2",
	       "rewrite-corrupted", "rewrite-corrupted");
	REFUSE("Option blkverify given twice", "2", "2", "a", "b", "2",
	       "blkverify", "blkverify");
	REFUSE("Option read-pattern given twice", "1", "1", "a", "4",
	       "read-pattern", "fifo", "read-pattern", "fifo");
	REFUSE("Option read-pattern needs a value: quorum or fifo", "1", "1",
	       "a", "1", "read-pattern");
	REFUSE("Invalid read-pattern: quorum or fifo", "1", "1", "a", "2",
	       "read-pattern", "FIFO");
	REFUSE("Invalid read-pattern: quorum or fifo", "1", "1", "a", "2",
	       "read-pattern", "blkverify");
}

TEST(parse_refuses_qemu_s_option_conflicts)
{
	REFUSE("blkverify needs exactly two children and vote threshold 2",
	       "2", "3", "a", "b", "c", "1", "blkverify");
	REFUSE("blkverify needs exactly two children and vote threshold 2",
	       "1", "2", "a", "b", "1", "blkverify");
	REFUSE("blkverify needs exactly two children and vote threshold 2",
	       "1", "1", "a", "1", "blkverify");
	REFUSE("rewrite-corrupted cannot be used with blkverify", "2", "2",
	       "a", "b", "2", "blkverify", "rewrite-corrupted");
	REFUSE("rewrite-corrupted cannot be used with blkverify", "2", "2",
	       "a", "b", "2", "rewrite-corrupted", "blkverify");
	/* QEMU ignores both with fifo; a table refuses them. */
	REFUSE("rewrite-corrupted needs read-pattern quorum", "2", "3", "a",
	       "b", "c", "3", "rewrite-corrupted", "read-pattern", "fifo");
	REFUSE("blkverify needs read-pattern quorum", "2", "2", "a", "b", "3",
	       "read-pattern", "fifo", "blkverify");
}

TEST(live_add_and_remove_follow_qemu)
{
	struct quorum_args a;
	const char *err = NULL;

	ASSERT_EQ(0, PARSE(&a, &err, "2", "3", "a", "b", "c"));
	EXPECT_EQ(0, quorum_can_add(&a, &err));
	EXPECT_EQ(0, quorum_can_remove(&a, &err));
	a.nr_children = 2;
	EXPECT_EQ(-EINVAL, quorum_can_remove(&a, &err));
	EXPECT_STREQ("The number of children cannot be lower than the vote threshold",
		     err);
	a.nr_children = MAX;
	EXPECT_EQ(-EINVAL, quorum_can_add(&a, &err));
	EXPECT_STREQ("Too many children: at most 16", err);

	ASSERT_EQ(0, PARSE(&a, &err, "2", "2", "a", "b", "1", "blkverify"));
	EXPECT_EQ(-EINVAL, quorum_can_add(&a, &err));
	EXPECT_STREQ("Cannot add a child to a quorum in blkverify mode", err);
	EXPECT_EQ(-EINVAL, quorum_can_remove(&a, &err));
}

/* ------------------------------------------------------ random checks */

/* The rule as the header states it, by brute force over the labels. */
static void reference(const struct reads *r, unsigned int threshold,
		      bool blkverify, struct quorum_ballot *want)
{
	unsigned int n = r->n, i, j, cnt, best_cnt = 0, good = 0;
	int best = -1;
	u32 all = (u32)(BIT(n) - 1), set;

	memset(want, 0, sizeof(*want));
	for (i = 0; i < n; i++) {
		if (r->label[i] < 0)
			want->failed |= BIT(i);
		else
			want->ok |= BIT(i);
	}
	for (i = 0; i < n; i++)
		good += r->label[i] >= 0;
	want->losers = all;
	if (good < threshold) {
		/* Most common code; a tie to the code whose first is last. */
		for (i = 0; i < n; i++) {
			bool first = true;

			if (r->label[i] >= 0)
				continue;
			for (j = 0; j < i; j++)
				if (r->buf[j].err == r->buf[i].err)
					first = false;
			if (!first)
				continue;
			for (cnt = 0, j = i; j < n; j++)
				cnt += r->buf[j].err == r->buf[i].err;
			if (cnt >= best_cnt) {
				best_cnt = cnt;
				best = r->buf[i].err;
			}
		}
		want->ret = best;
		return;
	}
	/* Versions: each label's set; count them; find the largest. */
	for (i = 0; i < n; i++) {
		bool first = true;

		if (r->label[i] < 0)
			continue;
		for (j = 0; j < i; j++)
			if (r->label[j] == r->label[i])
				first = false;
		if (!first)
			continue;
		want->versions++;
		for (set = 0, cnt = 0, j = i; j < n; j++)
			if (r->label[j] == r->label[i]) {
				set |= BIT(j);
				cnt++;
			}
		if (cnt >= best_cnt) {
			best_cnt = cnt;
			best = i;
			want->winners = set;
		}
	}
	if (want->versions == 1) {
		want->unanimous = true;
		want->winner = best;
		want->losers = want->failed;
		return;
	}
	if (blkverify) {
		want->winners = 0;
		want->mismatch = true;
		/* mismatch_at: the caller knows where versions differ. */
		want->ret = -EIO;
		return;
	}
	if (best_cnt < threshold) {
		want->winners = 0;
		want->ret = -EIO;
		return;
	}
	want->winner = best;
	want->corrupt = want->ok & ~want->winners;
	want->losers = all & ~want->winners;
}

/*
 * QEMU's lists, literally: quorum_count_vote() inserts a new version at
 * the head, quorum_get_vote_winner() takes the first strictly larger
 * count.  Returns the winner's index (its first voter), -1 if none.
 */
static int qemu_model(const int *value, const bool *votes, unsigned int n,
		      unsigned int *count_out)
{
	int list_value[MAX], list_index[MAX];
	unsigned int list_count[MAX], len = 0, i, k, max = 0;
	int winner = -1;

	for (i = 0; i < n; i++) {
		if (!votes[i])
			continue;
		for (k = 0; k < len; k++)
			if (list_value[k] == value[i])
				break;
		if (k == len) {
			memmove(list_value + 1, list_value, len * sizeof(int));
			memmove(list_index + 1, list_index, len * sizeof(int));
			memmove(list_count + 1, list_count,
				len * sizeof(list_count[0]));
			list_value[0] = value[i];
			list_index[0] = i;
			list_count[0] = 0;
			k = 0;
			len++;
		}
		list_count[k]++;
	}
	for (k = 0; k < len; k++)
		if (list_count[k] > max) {
			max = list_count[k];
			winner = list_index[k];
		}
	*count_out = max;
	return winner;
}

static void random_reads(struct reads *r, u64 *seed, unsigned int n)
{
	static const int errs[] = { -EIO, -ENOSPC, -ENODEV };
	unsigned int i, versions = 1 + rng_next(seed) % 4;
	unsigned int err_pct = rng_next(seed) % 60;
	size_t len = 1 + rng_next(seed) % LEN;

	memset(r, 0, sizeof(*r));
	r->n = n;
	r->len = len;
	for (i = 0; i < n; i++) {
		if (rng_next(seed) % 100 < err_pct) {
			r->label[i] = -1;
			r->buf[i].err = errs[rng_next(seed) % ARRAY_SIZE(errs)];
			continue;
		}
		r->label[i] = rng_next(seed) % versions;
		fill_version(r->data[i], len, r->label[i]);
		cut(r, i, len, 1 + rng_next(seed) % MAXSEG, seed);
	}
}

TEST(random_vote_sets_match_the_brute_force_rule_and_qemu_s_lists)
{
	u64 seed = 0x2545f4914f6cdd1dULL;
	struct quorum_ballot v, want;
	unsigned int iter, n, threshold, i, cnt;
	bool blkverify, good[MAX], bad[MAX];
	int value[MAX], w;

	for (iter = 0; iter < 5000; iter++) {
		n = 1 + rng_next(&seed) % MAX;
		threshold = 1 + rng_next(&seed) % n;
		blkverify = n == 2 && rng_next(&seed) % 2;
		if (blkverify)
			threshold = 2;
		random_reads(&R, &seed, n);
		reference(&R, threshold, blkverify, &want);
		if (want.mismatch) {
			/* Version 0 is the pattern, the others flip a byte. */
			size_t a = R.label[0] ? version_at(R.label[0], R.len) : R.len;
			size_t b = R.label[1] ? version_at(R.label[1], R.len) : R.len;

			want.mismatch_at = a < b ? a : b;
		}

		ASSERT_EQ(want.ret, quorum_vote(R.buf, n, threshold,
						   blkverify, &v))
			TH_LOG("iteration %u, n %u, threshold %u", iter, n,
			       threshold);
		ASSERT_EQ(want.ret, v.ret);
		ASSERT_EQ(want.ok, v.ok);
		ASSERT_EQ(want.failed, v.failed);
		ASSERT_EQ(want.winners, v.winners) TH_LOG("iteration %u", iter);
		ASSERT_EQ(want.corrupt, v.corrupt);
		ASSERT_EQ(want.losers, v.losers);
		ASSERT_EQ(want.unanimous, v.unanimous);
		ASSERT_EQ(want.mismatch, v.mismatch);
		if (v.mismatch) {
			ASSERT_EQ(want.mismatch_at, v.mismatch_at);
		}
		if (!v.ret) {
			ASSERT_EQ(want.winner, v.winner);
			ASSERT_NE(0, v.winners & BIT(v.winner));
		}
		ASSERT_EQ(want.versions, v.versions);

		/* QEMU's lists, literally, pick the same winners. */
		for (i = 0; i < n; i++) {
			good[i] = R.label[i] >= 0;
			bad[i] = !good[i];
			value[i] = good[i] ? R.label[i] : R.buf[i].err;
		}
		if (!want.unanimous && !blkverify &&
		    __builtin_popcount(want.ok) >= threshold) {
			w = qemu_model(value, good, n, &cnt);
			if (cnt >= threshold) {
				ASSERT_EQ((int)v.winner, w);
			} else {
				ASSERT_EQ(-EIO, v.ret);
			}
		}
		if (__builtin_popcount(want.ok) < threshold) {
			w = qemu_model(value, bad, n, &cnt);
			ASSERT_EQ(R.buf[w].err, v.ret);
		}
	}
}

TEST_HARNESS_MAIN
