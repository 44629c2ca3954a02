// SPDX-License-Identifier: GPL-2.0
/*
 * QEMU's leaky-bucket throttling, in integers.  Pure logic: see
 * throttle-core.h and pure.h.
 */
#include "throttle-core.h"

/* a * b / c, saturated at U64_MAX; c > 0. */
static u64 throttle_mul_div(u64 a, u64 b, u64 c)
{
	/* The quotient fits in 64 bits exactly when the high half is < c. */
	if (mul_u64_u64_shr(a, b, 64) >= c)
		return U64_MAX;
	return mul_u64_u64_div_u64(a, b, c);
}

static u64 throttle_sat_add(u64 a, u64 b)
{
	return a > U64_MAX - b ? U64_MAX : a + b;
}

/* The buckets a request of each direction goes through. */
static const enum throttle_bucket_id throttle_bucket_dir[2][4] = {
	{ THROTTLE_BPS_TOTAL, THROTTLE_BPS_READ, THROTTLE_OPS_TOTAL, THROTTLE_OPS_READ },
	{ THROTTLE_BPS_TOTAL, THROTTLE_BPS_WRITE, THROTTLE_OPS_TOTAL, THROTTLE_OPS_WRITE },
};

static bool throttle_bucket_is_bps(enum throttle_bucket_id b)
{
	return b <= THROTTLE_BPS_WRITE;
}

void throttle_cfg_init(struct throttle_cfg *c)
{
	unsigned int i;

	memset(c, 0, sizeof(*c));
	for (i = 0; i < THROTTLE_BUCKET_COUNT; i++)
		c->b[i].burst_length = 1;
}

int throttle_cfg_check(const struct throttle_cfg *c, const char **error)
{
	const struct throttle_bucket *b = c->b;
	unsigned int i;

	if ((b[THROTTLE_BPS_TOTAL].avg &&
	     (b[THROTTLE_BPS_READ].avg || b[THROTTLE_BPS_WRITE].avg)) ||
	    (b[THROTTLE_OPS_TOTAL].avg &&
	     (b[THROTTLE_OPS_READ].avg || b[THROTTLE_OPS_WRITE].avg)) ||
	    (b[THROTTLE_BPS_TOTAL].max &&
	     (b[THROTTLE_BPS_READ].max || b[THROTTLE_BPS_WRITE].max)) ||
	    (b[THROTTLE_OPS_TOTAL].max &&
	     (b[THROTTLE_OPS_READ].max || b[THROTTLE_OPS_WRITE].max))) {
		*error = "A total limit excludes read and write limits of the same kind";
		return -EINVAL;
	}
	if (c->op_size && !b[THROTTLE_OPS_TOTAL].avg && !b[THROTTLE_OPS_READ].avg &&
	    !b[THROTTLE_OPS_WRITE].avg) {
		*error = "iops-size needs an iops limit";
		return -EINVAL;
	}
	if (c->op_size > THROTTLE_VALUE_MAX) {
		*error = "iops-size must be at most 10^15";
		return -EINVAL;
	}
	for (i = 0; i < THROTTLE_BUCKET_COUNT; i++) {
		if (b[i].avg > THROTTLE_VALUE_MAX ||
		    b[i].max > THROTTLE_VALUE_MAX) {
			*error = "Rates must be at most 10^15";
			return -EINVAL;
		}
		if (!b[i].burst_length) {
			*error = "A burst length cannot be 0";
			return -EINVAL;
		}
		if (b[i].burst_length > 1 && !b[i].max) {
			*error = "A burst length needs a burst rate (-max) first";
			return -EINVAL;
		}
		if (b[i].max &&
		    b[i].burst_length > THROTTLE_VALUE_MAX / b[i].max) {
			*error = "Burst length too long for this burst rate (max * length > 10^15)";
			return -EINVAL;
		}
		if (b[i].max && !b[i].avg) {
			*error = "A burst rate (-max) needs the average rate set first";
			return -EINVAL;
		}
		if (b[i].max && b[i].max < b[i].avg) {
			*error = "A burst rate (-max) cannot be lower than the average rate";
			return -EINVAL;
		}
	}
	return 0;
}

bool throttle_cfg_limits(const struct throttle_cfg *c, bool is_write)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(throttle_bucket_dir[0]); i++)
		if (c->b[throttle_bucket_dir[is_write][i]].avg)
			return true;
	return false;
}

void throttle_state_init(struct throttle_state *s, const struct throttle_cfg *c, u64 now)
{
	memset(s, 0, sizeof(*s));
	s->cfg = *c;
	s->prev_leak = now;
}

static void throttle_state_leak(struct throttle_state *s, u64 now)
{
	u64 dt = now > s->prev_leak ? now - s->prev_leak : 0;
	unsigned int i;

	/* Levels are drain times: each leaks by the time elapsed. */
	for (i = 0; i < THROTTLE_BUCKET_COUNT; i++) {
		s->level[i] = s->level[i] > dt ? s->level[i] - dt : 0;
		s->burst[i] = s->burst[i] > dt ? s->burst[i] - dt : 0;
	}
	if (now > s->prev_leak)
		s->prev_leak = now;
}

/*
 * QEMU's throttle_compute_wait() for one bucket, in drain-time terms.  QEMU
 * looks at the burst bucket only once the main one is within its size, and
 * so may wait twice; both leak together, so the request passes at the later
 * of the two, which is what this returns.
 */
static u64 throttle_bucket_wait(const struct throttle_bucket *b, u64 level, u64 burst)
{
	const u64 tenth = THROTTLE_NSEC_PER_SEC / 10;
	u64 size, wait = 0;

	if (!b->avg)
		return 0;
	/*
	 * The bucket holds max * burst_length units (avg / 10 without a
	 * burst rate, so that short bursts pass), which take this long to
	 * drain at avg.
	 */
	if (b->max)
		size = throttle_mul_div(b->max * b->burst_length, THROTTLE_NSEC_PER_SEC,
					b->avg);
	else
		size = tenth;
	if (level > size)
		wait = level - size;
	/* A burst longer than a second is held to max by a second bucket. */
	if (b->burst_length > 1 && burst > tenth && burst - tenth > wait)
		wait = burst - tenth;
	return wait;
}

u64 throttle_state_wait(struct throttle_state *s, bool is_write, u64 now)
{
	u64 wait = 0, w;
	unsigned int i;
	enum throttle_bucket_id t;

	throttle_state_leak(s, now);
	for (i = 0; i < ARRAY_SIZE(throttle_bucket_dir[0]); i++) {
		t = throttle_bucket_dir[is_write][i];
		w = throttle_bucket_wait(&s->cfg.b[t], s->level[t], s->burst[t]);
		if (w > wait)
			wait = w;
	}
	return wait;
}

void throttle_state_account(struct throttle_state *s, bool is_write, u64 bytes)
{
	const struct throttle_bucket *b;
	unsigned int i;
	u64 nunits;		/* units * 10^9 */
	enum throttle_bucket_id t;

	for (i = 0; i < ARRAY_SIZE(throttle_bucket_dir[0]); i++) {
		t = throttle_bucket_dir[is_write][i];
		b = &s->cfg.b[t];
		if (!b->avg)
			continue;
		if (throttle_bucket_is_bps(t))
			nunits = throttle_mul_div(bytes, THROTTLE_NSEC_PER_SEC, 1);
		else if (s->cfg.op_size && bytes > s->cfg.op_size)
			nunits = throttle_mul_div(bytes, THROTTLE_NSEC_PER_SEC,
						  s->cfg.op_size);
		else
			nunits = THROTTLE_NSEC_PER_SEC;
		s->level[t] = throttle_sat_add(s->level[t], nunits / b->avg);
		if (b->burst_length > 1)
			s->burst[t] = throttle_sat_add(s->burst[t], nunits / b->max);
	}
}

/* ---------------------------------------------------------------- */
/* The group's attributes                                           */
/* ---------------------------------------------------------------- */

/* QEMU's names (qapi ThrottleLimits), in the order of the attributes. */
const struct throttle_attr throttle_attrs[THROTTLE_ATTR_COUNT] = {
	{ "bps-total", THROTTLE_BPS_TOTAL, THROTTLE_FIELD_AVG },
	{ "bps-total-max", THROTTLE_BPS_TOTAL, THROTTLE_FIELD_MAX },
	{ "bps-total-max-length", THROTTLE_BPS_TOTAL, THROTTLE_FIELD_LENGTH },
	{ "bps-read", THROTTLE_BPS_READ, THROTTLE_FIELD_AVG },
	{ "bps-read-max", THROTTLE_BPS_READ, THROTTLE_FIELD_MAX },
	{ "bps-read-max-length", THROTTLE_BPS_READ, THROTTLE_FIELD_LENGTH },
	{ "bps-write", THROTTLE_BPS_WRITE, THROTTLE_FIELD_AVG },
	{ "bps-write-max", THROTTLE_BPS_WRITE, THROTTLE_FIELD_MAX },
	{ "bps-write-max-length", THROTTLE_BPS_WRITE, THROTTLE_FIELD_LENGTH },
	{ "iops-total", THROTTLE_OPS_TOTAL, THROTTLE_FIELD_AVG },
	{ "iops-total-max", THROTTLE_OPS_TOTAL, THROTTLE_FIELD_MAX },
	{ "iops-total-max-length", THROTTLE_OPS_TOTAL, THROTTLE_FIELD_LENGTH },
	{ "iops-read", THROTTLE_OPS_READ, THROTTLE_FIELD_AVG },
	{ "iops-read-max", THROTTLE_OPS_READ, THROTTLE_FIELD_MAX },
	{ "iops-read-max-length", THROTTLE_OPS_READ, THROTTLE_FIELD_LENGTH },
	{ "iops-write", THROTTLE_OPS_WRITE, THROTTLE_FIELD_AVG },
	{ "iops-write-max", THROTTLE_OPS_WRITE, THROTTLE_FIELD_MAX },
	{ "iops-write-max-length", THROTTLE_OPS_WRITE, THROTTLE_FIELD_LENGTH },
	{ "iops-size", THROTTLE_OPS_TOTAL, THROTTLE_FIELD_OP_SIZE },
};

int throttle_attr_find(const char *name)
{
	unsigned int i;

	for (i = 0; i < THROTTLE_ATTR_COUNT; i++)
		if (!strcmp(throttle_attrs[i].name, name))
			return i;
	return -ENOENT;
}

static u64 *throttle_cfg_field(struct throttle_cfg *c, unsigned int attr)
{
	const struct throttle_attr *a = &throttle_attrs[attr];

	switch (a->field) {
	case THROTTLE_FIELD_AVG:
		return &c->b[a->bucket].avg;
	case THROTTLE_FIELD_MAX:
		return &c->b[a->bucket].max;
	case THROTTLE_FIELD_LENGTH:
		return &c->b[a->bucket].burst_length;
	case THROTTLE_FIELD_OP_SIZE:
		break;
	}
	return &c->op_size;
}

u64 throttle_cfg_get(const struct throttle_cfg *c, unsigned int attr)
{
	return *throttle_cfg_field((struct throttle_cfg *)c, attr);
}

int throttle_cfg_set(struct throttle_cfg *c, unsigned int attr, u64 val,
		     const char **error)
{
	struct throttle_cfg n = *c;
	int r;

	if (attr >= THROTTLE_ATTR_COUNT) {
		*error = "No such attribute";
		return -EINVAL;
	}
	*throttle_cfg_field(&n, attr) = val;
	r = throttle_cfg_check(&n, error);
	if (!r)
		*c = n;
	return r;
}
