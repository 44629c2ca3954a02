// SPDX-License-Identifier: GPL-2.0
/*
 * Host unit tests of targets/throttle-core.c: QEMU's validation rules, the
 * attribute table, and the leaky buckets driven by a simulated clock with
 * an unbounded queue of requests (what a saturating fio job looks like).
 */
#include "kselftest_harness.h"
#include "throttle-core.h"

#define NS	THROTTLE_NSEC_PER_SEC
#define MS	(NS / 1000)

/*
 * Pass requests of @bytes as fast as the buckets allow from time @start
 * until @end: returns how many passed, and the time reached in *@t.
 */
static u64 run(struct throttle_state *s, bool is_write, u64 bytes, u64 start,
	       u64 end)
{
	u64 t = start, n = 0, w;

	while (t < end) {
		w = throttle_state_wait(s, is_write, t);
		if (w) {
			t += w;
			continue;
		}
		throttle_state_account(s, is_write, bytes);
		n++;
	}
	return n;
}

static void cfg_with(struct throttle_cfg *c, const char *name, u64 val)
{
	const char *err = NULL;
	int a = throttle_attr_find(name);

	if (a < 0 || throttle_cfg_set(c, a, val, &err)) {
		fprintf(stderr, "cannot set %s=%llu: %s\n", name,
			(unsigned long long)val, err);
		abort();
	}
}

static int try_set(struct throttle_cfg *c, const char *name, u64 val,
		   const char **err)
{
	return throttle_cfg_set(c, throttle_attr_find(name), val, err);
}

TEST(attribute_names_are_qemu_s_and_unique)
{
	static const char * const want[] = {
		"bps-total", "bps-read", "bps-write", "iops-total",
		"iops-read", "iops-write",
	};
	char name[64];
	unsigned int i, j;

	for (i = 0; i < ARRAY_SIZE(want); i++) {
		EXPECT_LE(0, throttle_attr_find(want[i]));
		snprintf(name, sizeof(name), "%s-max", want[i]);
		EXPECT_LE(0, throttle_attr_find(name));
		snprintf(name, sizeof(name), "%s-max-length", want[i]);
		EXPECT_LE(0, throttle_attr_find(name));
	}
	EXPECT_LE(0, throttle_attr_find("iops-size"));
	EXPECT_EQ(-ENOENT, throttle_attr_find("bps"));
	EXPECT_EQ(-ENOENT, throttle_attr_find("bps-total "));
	for (i = 0; i < THROTTLE_ATTR_COUNT; i++) {
		EXPECT_EQ(i, throttle_attr_find(throttle_attrs[i].name));
		for (j = i + 1; j < THROTTLE_ATTR_COUNT; j++)
			EXPECT_NE(0, strcmp(throttle_attrs[i].name, throttle_attrs[j].name));
	}
}

TEST(a_new_configuration_limits_nothing)
{
	struct throttle_cfg c;
	const char *err = NULL;
	unsigned int i;

	throttle_cfg_init(&c);
	EXPECT_EQ(0, throttle_cfg_check(&c, &err));
	EXPECT_FALSE(throttle_cfg_limits(&c, false));
	EXPECT_FALSE(throttle_cfg_limits(&c, true));
	for (i = 0; i < THROTTLE_ATTR_COUNT; i++)
		EXPECT_EQ(throttle_attrs[i].field == THROTTLE_FIELD_LENGTH ? 1 : 0,
			  throttle_cfg_get(&c, i));
}

TEST(total_excludes_read_and_write_of_the_same_kind)
{
	struct throttle_cfg c;
	const char *err = NULL;

	throttle_cfg_init(&c);
	cfg_with(&c, "bps-total", 1000);
	EXPECT_EQ(-EINVAL, try_set(&c, "bps-read", 10, &err));
	EXPECT_STREQ("A total limit excludes read and write limits of the same kind", err);
	EXPECT_EQ(-EINVAL, try_set(&c, "bps-write", 10, &err));
	/* Another kind is fine. */
	EXPECT_EQ(0, try_set(&c, "iops-read", 10, &err));
	EXPECT_EQ(0, try_set(&c, "iops-write", 10, &err));
	EXPECT_EQ(-EINVAL, try_set(&c, "iops-total", 10, &err));
	/* Clearing the total lets the directions in. */
	EXPECT_EQ(0, try_set(&c, "bps-total", 0, &err));
	EXPECT_EQ(0, try_set(&c, "bps-read", 10, &err));
	EXPECT_TRUE(throttle_cfg_limits(&c, false));
	EXPECT_TRUE(throttle_cfg_limits(&c, true));	/* iops-write */
}

TEST(total_max_excludes_read_and_write_max)
{
	struct throttle_cfg c;
	const char *err = NULL;

	throttle_cfg_init(&c);
	/* Averages of the directions with a total max: QEMU checks max too. */
	cfg_with(&c, "iops-read", 10);
	cfg_with(&c, "iops-read-max", 20);
	EXPECT_EQ(-EINVAL, try_set(&c, "iops-total", 10, &err));
	EXPECT_EQ(-EINVAL, try_set(&c, "iops-total-max", 20, &err));
	EXPECT_STREQ("A total limit excludes read and write limits of the same kind", err);
}

TEST(max_needs_the_average_and_is_at_least_it)
{
	struct throttle_cfg c;
	const char *err = NULL;

	throttle_cfg_init(&c);
	EXPECT_EQ(-EINVAL, try_set(&c, "bps-write-max", 100, &err));
	EXPECT_STREQ("A burst rate (-max) needs the average rate set first", err);
	cfg_with(&c, "bps-write", 100);
	EXPECT_EQ(-EINVAL, try_set(&c, "bps-write-max", 99, &err));
	EXPECT_STREQ("A burst rate (-max) cannot be lower than the average rate", err);
	EXPECT_EQ(0, try_set(&c, "bps-write-max", 100, &err));
	/* Lowering the average below max is fine, raising above it is not. */
	EXPECT_EQ(-EINVAL, try_set(&c, "bps-write", 101, &err));
	/* Clearing the average while a max is set: refused. */
	EXPECT_EQ(-EINVAL, try_set(&c, "bps-write", 0, &err));
	EXPECT_EQ(100, throttle_cfg_get(&c, throttle_attr_find("bps-write")));
}

TEST(max_length_needs_max_and_is_bounded)
{
	struct throttle_cfg c;
	const char *err = NULL;

	throttle_cfg_init(&c);
	cfg_with(&c, "iops-total", 100);
	EXPECT_EQ(-EINVAL, try_set(&c, "iops-total-max-length", 5, &err));
	EXPECT_STREQ("A burst length needs a burst rate (-max) first", err);
	EXPECT_EQ(-EINVAL, try_set(&c, "iops-total-max-length", 0, &err));
	EXPECT_STREQ("A burst length cannot be 0", err);
	cfg_with(&c, "iops-total-max", 1000);
	EXPECT_EQ(0, try_set(&c, "iops-total-max-length", 5, &err));
	EXPECT_EQ(-EINVAL, try_set(&c, "iops-total-max-length",
				   THROTTLE_VALUE_MAX / 1000 + 1, &err));
	EXPECT_STREQ("Burst length too long for this burst rate (max * length > 10^15)", err);
	/* max cannot go while the length is above 1. */
	EXPECT_EQ(-EINVAL, try_set(&c, "iops-total-max", 0, &err));
	EXPECT_EQ(0, try_set(&c, "iops-total-max-length", 1, &err));
	EXPECT_EQ(0, try_set(&c, "iops-total-max", 0, &err));
}

TEST(values_are_bounded_by_qemu_s_maximum)
{
	struct throttle_cfg c;
	const char *err = NULL;

	throttle_cfg_init(&c);
	EXPECT_EQ(0, try_set(&c, "bps-read", THROTTLE_VALUE_MAX, &err));
	EXPECT_EQ(-EINVAL, try_set(&c, "bps-write", THROTTLE_VALUE_MAX + 1,
				   &err));
	EXPECT_STREQ("Rates must be at most 10^15", err);
	EXPECT_EQ(-EINVAL, try_set(&c, "bps-write", UINT64_MAX, &err));
	EXPECT_EQ(0, throttle_cfg_get(&c, throttle_attr_find("bps-write")));
}

TEST(iops_size_needs_an_iops_limit)
{
	struct throttle_cfg c;
	const char *err = NULL;

	throttle_cfg_init(&c);
	EXPECT_EQ(-EINVAL, try_set(&c, "iops-size", 4096, &err));
	EXPECT_STREQ("iops-size needs an iops limit", err);
	cfg_with(&c, "bps-total", 1000);
	EXPECT_EQ(-EINVAL, try_set(&c, "iops-size", 4096, &err));
	cfg_with(&c, "iops-write", 100);
	EXPECT_EQ(0, try_set(&c, "iops-size", 4096, &err));
	EXPECT_EQ(-EINVAL, try_set(&c, "iops-write", 0, &err));
}

TEST(a_refused_set_changes_nothing)
{
	struct throttle_cfg c, before;
	const char *err = NULL;
	unsigned int i;

	throttle_cfg_init(&c);
	cfg_with(&c, "bps-total", 1000);
	cfg_with(&c, "bps-total-max", 2000);
	cfg_with(&c, "bps-total-max-length", 3);
	before = c;
	for (i = 0; i < THROTTLE_ATTR_COUNT; i++) {
		/* Every attribute to a value that breaks some rule. */
		throttle_cfg_set(&c, i, THROTTLE_VALUE_MAX + 1, &err);
		EXPECT_EQ(0, memcmp(&c, &before, sizeof(c)));
	}
	EXPECT_EQ(-EINVAL, throttle_cfg_set(&c, THROTTLE_ATTR_COUNT, 1, &err));
}

TEST(no_limit_never_waits)
{
	struct throttle_state s;
	struct throttle_cfg c;
	int i;

	throttle_cfg_init(&c);
	throttle_state_init(&s, &c, 0);
	for (i = 0; i < 100000; i++) {
		ASSERT_EQ(0, throttle_state_wait(&s, i & 1, 0));
		throttle_state_account(&s, i & 1, 1 << 20);
	}
}

/* QEMU lets avg / 10 units pass at once, then one per 1 / avg seconds. */
TEST(iops_bucket_passes_a_tenth_then_waits_exactly)
{
	struct throttle_state s;
	struct throttle_cfg c;
	int i;

	throttle_cfg_init(&c);
	cfg_with(&c, "iops-total", 100);
	throttle_state_init(&s, &c, 0);
	/* Level 0, 10, ..., 100 ms all pass: the bucket holds 100 ms. */
	for (i = 0; i < 11; i++) {
		ASSERT_EQ(0, throttle_state_wait(&s, false, 0));
		throttle_state_account(&s, false, 4096);
	}
	EXPECT_EQ(10 * MS, throttle_state_wait(&s, true, 0));
	EXPECT_EQ(5 * MS, throttle_state_wait(&s, true, 5 * MS));
	EXPECT_EQ(0, throttle_state_wait(&s, true, 10 * MS));
	/* Time going backwards does not refill the bucket. */
	EXPECT_EQ(0, throttle_state_wait(&s, true, 1 * MS));
}

TEST(iops_rate_over_ten_seconds)
{
	struct throttle_state s;
	struct throttle_cfg c;
	u64 n;

	throttle_cfg_init(&c);
	cfg_with(&c, "iops-read", 250);
	throttle_state_init(&s, &c, 0);
	n = run(&s, false, 4096, 0, 10 * NS);
	/* 2500 in ten seconds plus the 25 of the initial bucket. */
	EXPECT_LE(2500, n);
	EXPECT_GE(2527, n);
	/* Writes are not limited by a read limit. */
	EXPECT_EQ(0, throttle_state_wait(&s, true, 10 * NS));
}

TEST(bps_rate_counts_bytes)
{
	struct throttle_state s;
	struct throttle_cfg c;
	u64 n;

	throttle_cfg_init(&c);
	cfg_with(&c, "bps-write", 1 << 20);
	throttle_state_init(&s, &c, 0);
	n = run(&s, true, 65536, 0, 10 * NS);
	/* 10 MiB in 10 s is 160 requests of 64 KiB, plus 1.6 + 1 at t=0. */
	EXPECT_LE(160, n);
	EXPECT_GE(163, n);
	EXPECT_EQ(0, throttle_state_wait(&s, false, 10 * NS));
}

TEST(total_limits_both_directions_together)
{
	struct throttle_state s;
	struct throttle_cfg c;
	u64 t = 0, n = 0, w;
	bool dir = false;

	throttle_cfg_init(&c);
	cfg_with(&c, "iops-total", 200);
	throttle_state_init(&s, &c, 0);
	while (t < 10 * NS) {
		w = throttle_state_wait(&s, dir, t);
		if (w) {
			t += w;
			continue;
		}
		throttle_state_account(&s, dir, 4096);
		n++;
		dir = !dir;
	}
	EXPECT_LE(2000, n);
	EXPECT_GE(2022, n);
}

TEST(iops_size_counts_large_requests_as_several)
{
	struct throttle_state s;
	struct throttle_cfg c;
	u64 n;

	throttle_cfg_init(&c);
	cfg_with(&c, "iops-total", 160);
	cfg_with(&c, "iops-size", 4096);
	throttle_state_init(&s, &c, 0);
	/* A 64 KiB request is 16 operations: 10 per second. */
	n = run(&s, false, 65536, 0, 10 * NS);
	EXPECT_LE(100, n);
	EXPECT_GE(103, n);
	/* Smaller requests are one operation each. */
	throttle_state_init(&s, &c, 0);
	n = run(&s, false, 512, 0, 10 * NS);
	EXPECT_LE(1600, n);
	EXPECT_GE(1618, n);
}

/*
 * A burst: the bucket holds max * length units and fills at max - avg, so
 * the burst lasts max * length / (max - avg) seconds at max (docs/
 * throttle.txt), then the rate is the average.
 */
TEST(burst_runs_at_max_then_settles_at_avg)
{
	struct throttle_state s;
	struct throttle_cfg c;
	u64 first, next, later;

	throttle_cfg_init(&c);
	cfg_with(&c, "iops-total", 100);
	cfg_with(&c, "iops-total-max", 1000);
	cfg_with(&c, "iops-total-max-length", 3);
	throttle_state_init(&s, &c, 0);
	/* Each second of the burst runs at max (+ a tenth at its start). */
	first = run(&s, false, 4096, 0, NS);
	EXPECT_LE(1000, first);
	EXPECT_GE(1101, first);
	next = run(&s, false, 4096, NS, 3 * NS);
	EXPECT_LE(1980, next);
	EXPECT_GE(2001, next);
	/* The burst ends at 3000 / 900 = 3.33 s; then 100 per second. */
	run(&s, false, 4096, 3 * NS, 4 * NS);
	later = run(&s, false, 4096, 4 * NS, 14 * NS);
	EXPECT_LE(999, later);
	EXPECT_GE(1001, later);
}

TEST(burst_of_one_second_has_no_burst_bucket)
{
	struct throttle_state s;
	struct throttle_cfg c;
	u64 first, later;

	throttle_cfg_init(&c);
	cfg_with(&c, "bps-read", 1000000);
	cfg_with(&c, "bps-read-max", 4000000);
	throttle_state_init(&s, &c, 0);
	/*
	 * The bucket of max * 1 s = 4 MB passes at once, with no smoothing
	 * at max (that takes a length > 1), then 1 MB/s above a full bucket.
	 */
	first = run(&s, false, 100000, 0, 1);
	EXPECT_EQ(41, first);
	later = run(&s, false, 100000, 1, 10 * NS);
	EXPECT_LE(99, later);
	EXPECT_GE(100, later);
}

TEST(a_new_configuration_empties_the_buckets)
{
	struct throttle_state s;
	struct throttle_cfg c;

	throttle_cfg_init(&c);
	cfg_with(&c, "iops-write", 10);
	throttle_state_init(&s, &c, 0);
	run(&s, true, 4096, 0, NS);
	throttle_state_account(&s, true, 4096);
	throttle_state_account(&s, true, 4096);
	EXPECT_NE(0, throttle_state_wait(&s, true, NS));
	cfg_with(&c, "iops-write", 20);
	throttle_state_init(&s, &c, NS);
	EXPECT_EQ(0, throttle_state_wait(&s, true, NS));
}

TEST(huge_requests_and_rates_saturate_without_overflow)
{
	struct throttle_state s;
	struct throttle_cfg c;

	throttle_cfg_init(&c);
	cfg_with(&c, "bps-total", 1);
	cfg_with(&c, "bps-total-max", THROTTLE_VALUE_MAX);
	cfg_with(&c, "iops-total", 1);
	cfg_with(&c, "iops-size", 1);
	throttle_state_init(&s, &c, 0);
	EXPECT_EQ(0, throttle_state_wait(&s, true, 0));
	throttle_state_account(&s, true, UINT64_MAX);
	throttle_state_account(&s, true, UINT64_MAX);
	EXPECT_LT(0, throttle_state_wait(&s, true, 0));
	/* The bucket of max * 1 s at avg 1 is 10^15 s: never a wait past it. */
	EXPECT_GE(UINT64_MAX, throttle_state_wait(&s, true, UINT64_MAX));
}

TEST_HARNESS_MAIN
