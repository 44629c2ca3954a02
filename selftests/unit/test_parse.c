// SPDX-License-Identifier: GPL-2.0
/*
 * Host unit tests of the table arguments: dm-bgraph/parse.c and text.c
 * (the optional-argument count and writer), targets/raw-args.c and
 * targets/qcow2-args.c.
 */
#include "kselftest_harness.h"
#include "raw-args.h"
#include "qcow2-args.h"

#define ARGV(...) ((char *[]){ __VA_ARGS__ })
#define ARGC(...) (sizeof((char *[]){ __VA_ARGS__ }) / sizeof(char *))
#define PARSE(a, err, ...) \
	raw_parse_opts(ARGC(__VA_ARGS__), ARGV(__VA_ARGS__), (a), (err))

TEST(u64_accepts_plain_decimal_only)
{
	u64 v;

	EXPECT_EQ(0, bg_parse_u64("0", &v));
	EXPECT_EQ(0, v);
	EXPECT_EQ(0, bg_parse_u64("18446744073709551615", &v));
	EXPECT_EQ(UINT64_MAX, v);
	EXPECT_EQ(-ERANGE, bg_parse_u64("18446744073709551616", &v));
	EXPECT_EQ(-EINVAL, bg_parse_u64("", &v));
	EXPECT_EQ(-EINVAL, bg_parse_u64(NULL, &v));
	EXPECT_EQ(-EINVAL, bg_parse_u64("-1", &v));
	EXPECT_EQ(-EINVAL, bg_parse_u64("+1", &v));
	EXPECT_EQ(-EINVAL, bg_parse_u64("0x10", &v));
	EXPECT_EQ(-EINVAL, bg_parse_u64("12 ", &v));
	EXPECT_EQ(-EINVAL, bg_parse_u64("1e3", &v));
}

TEST(size_suffixes_are_binary)
{
	u64 v;

	EXPECT_EQ(0, bg_parse_size("512", &v));
	EXPECT_EQ(512, v);
	EXPECT_EQ(0, bg_parse_size("4k", &v));
	EXPECT_EQ(4096, v);
	EXPECT_EQ(0, bg_parse_size("4K", &v));
	EXPECT_EQ(4096, v);
	EXPECT_EQ(0, bg_parse_size("3M", &v));
	EXPECT_EQ(3ULL << 20, v);
	EXPECT_EQ(0, bg_parse_size("2G", &v));
	EXPECT_EQ(2ULL << 30, v);
	EXPECT_EQ(0, bg_parse_size("1T", &v));
	EXPECT_EQ(1ULL << 40, v);
	EXPECT_EQ(-ERANGE, bg_parse_size("16777216T", &v));
	EXPECT_EQ(-EINVAL, bg_parse_size("K", &v));
	EXPECT_EQ(-EINVAL, bg_parse_size("1KB", &v));
	EXPECT_EQ(-EINVAL, bg_parse_size("1m", &v));
	EXPECT_EQ(-EINVAL, bg_parse_size("123456789012345678901234", &v));
}

TEST(raw_no_options)
{
	struct raw_args a;
	const char *err = NULL;

	EXPECT_EQ(0, raw_parse_opts(0, NULL, &a, &err));
	EXPECT_EQ(0, a.offset);
	EXPECT_FALSE(a.has_size);
	EXPECT_EQ(0, PARSE(&a, &err, "0"));
}

TEST(raw_offset_and_size)
{
	struct raw_args a;
	const char *err = NULL;

	ASSERT_EQ(0, PARSE(&a, &err, "4", "offset", "1M", "size", "4096"));
	EXPECT_EQ(1 << 20, a.offset);
	EXPECT_TRUE(a.has_size);
	EXPECT_EQ(4096, a.size);
	ASSERT_EQ(0, PARSE(&a, &err, "2", "size", "512"));
	EXPECT_EQ(0, a.offset);
	EXPECT_EQ(512, a.size);
}

struct bad_case {
	int argc;
	char *argv[6];
	const char *error;
};

static const struct bad_case bad_cases[] = {
	{ 1, { "x" }, "Invalid number of optional arguments" },
	{ 1, { "-2" }, "Invalid number of optional arguments" },
	{ 1, { "2" }, "Optional argument count does not match the arguments given" },
	{ 3, { "4", "offset", "0" }, "Optional argument count does not match the arguments given" },
	{ 2, { "1", "offset" }, "Optional arguments must be <key> <value> pairs" },
	{ 3, { "2", "colour", "red" }, "Unknown optional argument" },
	{ 3, { "2", "discard", "Unmap" }, "Invalid discard: ignore or unmap" },
	{ 5, { "4", "discard", "unmap", "discard", "unmap" }, "Option discard given twice" },
	{ 5, { "4", "detect_zeroes", "on", "detect_zeroes", "off" }, "Option detect_zeroes given twice" },
	{ 5, { "4", "discard", "ignore", "detect_zeroes", "unmap" }, "detect_zeroes unmap needs discard unmap" },
	{ 3, { "2", "offset", "abc" }, "Invalid offset: not a byte count" },
	{ 3, { "2", "offset", "-512" }, "Invalid offset: not a byte count" },
	{ 3, { "2", "offset", "100" }, "Invalid offset: not a multiple of 512" },
	{ 3, { "2", "size", "0" }, "Invalid size: zero or not a multiple of 512" },
	{ 3, { "2", "size", "513" }, "Invalid size: zero or not a multiple of 512" },
	{ 3, { "2", "size", "1x" }, "Invalid size: not a byte count" },
	{ 5, { "4", "offset", "0", "offset", "512" }, "Option offset given twice" },
	{ 5, { "4", "size", "512", "size", "512" }, "Option size given twice" },
};

TEST(raw_bad_options_each_get_their_reason)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(bad_cases); i++) {
		const struct bad_case *c = &bad_cases[i];
		struct raw_args a;
		const char *err = NULL;

		EXPECT_EQ(-EINVAL, raw_parse_opts(c->argc, (char **)c->argv,
						     &a, &err)) {
			TH_LOG("case %u accepted", i);
		}
		ASSERT_NE(NULL, err);
		EXPECT_STREQ(c->error, err);
	}
}

TEST(raw_window_fits_the_child_and_the_target)
{
	struct raw_args a = { 0 };
	const char *err = NULL;
	u64 w;

	EXPECT_EQ(0, raw_window(&a, 1 << 20, 1 << 20, &w, &err));
	EXPECT_EQ(1 << 20, w);
	a.offset = 4096;
	EXPECT_EQ(0, raw_window(&a, 1 << 20, (1 << 20) - 4096, &w, &err));
	EXPECT_EQ((1 << 20) - 4096, w);
	EXPECT_EQ(-EINVAL, raw_window(&a, 1 << 20, 1 << 20, &w, &err));
	EXPECT_STREQ("Target length is larger than the device window", err);
	a.has_size = true;
	a.size = 8192;
	EXPECT_EQ(0, raw_window(&a, 1 << 20, 8192, &w, &err));
	EXPECT_EQ(8192, w);
	a.size = (1 << 20) - 4096 + 512;
	EXPECT_EQ(-EINVAL, raw_window(&a, 1 << 20, 512, &w, &err));
	EXPECT_STREQ("offset + size is past the end of the device", err);
	a.offset = 1 << 20;
	a.has_size = false;
	EXPECT_EQ(-EINVAL, raw_window(&a, 1 << 20, 512, &w, &err));
	EXPECT_STREQ("offset is at or past the end of the device", err);
}

TEST(raw_window_does_not_overflow)
{
	struct raw_args a = { .offset = 512, .size = UINT64_MAX - 511,
				 .has_size = true };
	const char *err = NULL;
	u64 w;

	EXPECT_EQ(-EINVAL, raw_window(&a, 1 << 20, 512, &w, &err));
}

TEST(opt_count_matches_the_words_given)
{
	const char *err = NULL;

	EXPECT_EQ(0, bg_parse_opt_count(0, NULL, true, &err));
	EXPECT_EQ(0, bg_parse_opt_count(3, ARGV("2", "a", "b"), true, &err));
	EXPECT_EQ(0, bg_parse_opt_count(2, ARGV("1", "a"), false, &err));
	EXPECT_EQ(-EINVAL, bg_parse_opt_count(2, ARGV("1", "a"), true, &err));
	EXPECT_STREQ("Optional arguments must be <key> <value> pairs", err);
	EXPECT_EQ(-EINVAL, bg_parse_opt_count(2, ARGV("2", "a"), false, &err));
	EXPECT_STREQ("Optional argument count does not match the arguments given",
		     err);
	EXPECT_EQ(-EINVAL, bg_parse_opt_count(2, ARGV("x", "a"), false, &err));
	EXPECT_STREQ("Invalid number of optional arguments", err);
}

#define QPARSE(a, err, ...) \
	qcow2_parse_opts(ARGC(__VA_ARGS__), ARGV(__VA_ARGS__), (a), (err))

TEST(qcow2_options_keys_and_flags)
{
	struct qcow2_args a;
	const char *err = NULL;

	EXPECT_EQ(0, qcow2_parse_opts(0, NULL, &a, &err));
	EXPECT_EQ(NULL, a.backing);
	EXPECT_EQ(0, QPARSE(&a, &err, "6", "read_only", "backing", "/dev/x",
			    "l2_cache_size", "1M", "error_if_no_space"));
	EXPECT_STREQ("/dev/x", a.backing);
	EXPECT_EQ(1 << 20, a.l2_cache_size);
	EXPECT_TRUE(a.read_only);
	EXPECT_TRUE(a.error_if_no_space);
}

TEST(qcow2_bad_options_each_get_their_reason)
{
	static const struct {
		unsigned int argc;
		const char *argv[4];
		const char *error;
	} cases[] = {
		{ 2, { "1", "backing" }, "Option backing needs a value" },
		{ 2, { "1", "detect_zeroes" }, "Option detect_zeroes needs a value" },
		{ 3, { "2", "discard", "maybe" }, "Invalid discard: ignore or unmap" },
		{ 3, { "2", "detect_zeroes", "yes" }, "Invalid detect_zeroes: off, on or unmap" },
		{ 3, { "2", "read_only", "read_only" }, "Option read_only given twice" },
		{ 2, { "1", "bogus" }, "Unknown optional argument" },
		{ 3, { "2", "l2_cache_size", "0" }, "Invalid l2_cache_size: a byte count from 1 to 1G" },
		{ 3, { "2", "l2_cache_size", "2G" }, "Invalid l2_cache_size: a byte count from 1 to 1G" },
		{ 2, { "2", "read_only" }, "Optional argument count does not match the arguments given" },
	};
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		struct qcow2_args a;
		const char *err = NULL;

		EXPECT_EQ(-EINVAL, qcow2_parse_opts(cases[i].argc,
						    (char **)cases[i].argv,
						    &a, &err));
		EXPECT_STREQ(cases[i].error, err);
	}
}

/* qcow2's longest option line, with a 127-character name, fits twice. */
TEST(opt_args_hold_the_longest_line_and_say_when_one_does_not_fit)
{
	struct bg_opt_args o = {};
	char name[128], buf[600];
	unsigned int count;
	int len, i;

	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	bg_opt_add(&o, "backing %s", name);
	bg_opt_add(&o, "l2_cache_size %llu", 18446744073709551615ULL);
	bg_opt_add(&o, "read_only");
	bg_opt_add(&o, "error_if_no_space");
	EXPECT_FALSE(o.overflow);
	EXPECT_EQ(6, o.count);
	EXPECT_LT(2 * o.len, (int)sizeof(o.text));

	for (i = 0; i < 10 && !o.overflow; i++)
		bg_opt_add(&o, "backing %s", name);
	EXPECT_TRUE(o.overflow);		/* the last one left out */
	count = o.count;
	EXPECT_EQ(6 + 2 * (i - 1), count);
	bg_opt_add(&o, "read_only");		/* and any later one */
	EXPECT_EQ(count, o.count);
	len = bg_opt_emit(buf, sizeof(buf), 0, &o);
	EXPECT_EQ(strlen(buf), len);
	EXPECT_EQ(10, count);			/* two more fitted */
	EXPECT_EQ(0, strncmp(buf, " 10 backing nnn", 15));
	EXPECT_EQ(' ', buf[len - 127 - 1]);	/* ends with a whole name */
}

TEST(opt_args_are_written_with_their_word_count)
{
	struct bg_opt_args o = {};
	char buf[64];
	int len;

	len = bg_opt_emit(buf, sizeof(buf), 0, &o);
	EXPECT_EQ(0, len);
	bg_opt_add(&o, "backing %s", "253:1");
	bg_opt_add(&o, "read_only");
	len = bg_emit(buf, sizeof(buf), 0, "7:0");
	len = bg_opt_emit(buf, sizeof(buf), len, &o);
	EXPECT_STREQ("7:0 3 backing 253:1 read_only", buf);
	EXPECT_EQ(strlen(buf), len);
}

TEST(opt_args_never_cut_a_word_when_full)
{
	struct bg_opt_args o = {};
	char word[300];
	int i;

	memset(word, 'w', sizeof(word) - 1);
	word[sizeof(word) - 1] = '\0';
	bg_opt_add(&o, "k %s", word);		/* 302 bytes: fits */
	bg_opt_add(&o, "k %s", word);		/* does not fit: dropped */
	for (i = 0; i < 100; i++)
		bg_opt_add(&o, "flag");		/* nothing more is added */
	EXPECT_EQ(2, o.count);
	EXPECT_EQ(1 + 2 + strlen(word), strlen(o.text));
	EXPECT_EQ(' ', o.text[0]);
	EXPECT_TRUE(o.overflow);
}

TEST_HARNESS_MAIN

TEST(io_opts_are_read_and_written_back_as_given)
{
	struct raw_args a;
	struct qcow2_args q;
	struct bg_opt_args o = {};
	const char *err = NULL;

	EXPECT_EQ(0, PARSE(&a, &err, "4", "detect_zeroes", "unmap",
			    "discard", "unmap"));
	EXPECT_EQ(BG_DZ_UNMAP, a.io.detect_zeroes);
	EXPECT_EQ(BG_DISCARD_UNMAP, a.io.discard);
	bg_io_opts_emit(&o, &a.io);
	EXPECT_STREQ(" discard unmap detect_zeroes unmap", o.text);
	EXPECT_EQ(4, o.count);

	EXPECT_EQ(0, QPARSE(&q, &err, "5", "read_only", "discard", "ignore",
			    "detect_zeroes", "on"));
	EXPECT_TRUE(q.read_only);
	EXPECT_EQ(BG_DISCARD_IGNORE, q.io.discard);
	EXPECT_EQ(BG_DZ_ON, q.io.detect_zeroes);

	/* Not given: the defaults, and nothing written back. */
	EXPECT_EQ(0, PARSE(&a, &err, "2", "offset", "512"));
	EXPECT_EQ(BG_DISCARD_UNMAP, a.io.discard);
	EXPECT_EQ(BG_DZ_OFF, a.io.detect_zeroes);
	memset(&o, 0, sizeof(o));
	bg_io_opts_emit(&o, &a.io);
	EXPECT_EQ(0, o.count);
}
