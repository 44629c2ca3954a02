// SPDX-License-Identifier: GPL-2.0
/* Host unit tests of dm-bgraph/parse.c: table arguments. */
#include "kselftest_harness.h"
#include "parse.h"

#define ARGV(...) ((char *[]){ __VA_ARGS__ })
#define ARGC(...) (sizeof((char *[]){ __VA_ARGS__ }) / sizeof(char *))
#define PARSE(a, err, ...) \
	bg_raw_parse_opts(ARGC(__VA_ARGS__), ARGV(__VA_ARGS__), (a), (err))

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
	struct bg_raw_args a;
	const char *err = NULL;

	EXPECT_EQ(0, bg_raw_parse_opts(0, NULL, &a, &err));
	EXPECT_EQ(0, a.offset);
	EXPECT_FALSE(a.has_size);
	EXPECT_EQ(0, PARSE(&a, &err, "0"));
}

TEST(raw_offset_and_size)
{
	struct bg_raw_args a;
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
		struct bg_raw_args a;
		const char *err = NULL;

		EXPECT_EQ(-EINVAL, bg_raw_parse_opts(c->argc, (char **)c->argv,
						     &a, &err)) {
			TH_LOG("case %u accepted", i);
		}
		ASSERT_NE(NULL, err);
		EXPECT_STREQ(c->error, err);
	}
}

TEST(raw_window)
{
	struct bg_raw_args a = { 0 };
	const char *err = NULL;
	u64 w;

	EXPECT_EQ(0, bg_raw_window(&a, 1 << 20, 1 << 20, &w, &err));
	EXPECT_EQ(1 << 20, w);
	a.offset = 4096;
	EXPECT_EQ(0, bg_raw_window(&a, 1 << 20, (1 << 20) - 4096, &w, &err));
	EXPECT_EQ((1 << 20) - 4096, w);
	EXPECT_EQ(-EINVAL, bg_raw_window(&a, 1 << 20, 1 << 20, &w, &err));
	EXPECT_STREQ("Target length is larger than the device window", err);
	a.has_size = true;
	a.size = 8192;
	EXPECT_EQ(0, bg_raw_window(&a, 1 << 20, 8192, &w, &err));
	EXPECT_EQ(8192, w);
	a.size = (1 << 20) - 4096 + 512;
	EXPECT_EQ(-EINVAL, bg_raw_window(&a, 1 << 20, 512, &w, &err));
	EXPECT_STREQ("offset + size is past the end of the device", err);
	a.offset = 1 << 20;
	a.has_size = false;
	EXPECT_EQ(-EINVAL, bg_raw_window(&a, 1 << 20, 512, &w, &err));
	EXPECT_STREQ("offset is at or past the end of the device", err);
}

TEST(raw_window_does_not_overflow)
{
	struct bg_raw_args a = { .offset = 512, .size = UINT64_MAX - 511,
				 .has_size = true };
	const char *err = NULL;
	u64 w;

	EXPECT_EQ(-EINVAL, bg_raw_window(&a, 1 << 20, 512, &w, &err));
}

TEST_HARNESS_MAIN
