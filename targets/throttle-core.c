// SPDX-License-Identifier: GPL-2.0
/*
 * QEMU's leaky-bucket throttling, in integers.  Pure logic: see
 * throttle-core.h and pure.h.
 */
#include "throttle-core.h"

#ifdef __KERNEL__
#include <linux/math64.h>
#endif

/* a * b / c, saturated at U64_MAX; c > 0. */
static u64 bg_mul_div(u64 a, u64 b, u64 c)
{
#ifdef __KERNEL__
	/* The quotient fits in 64 bits exactly when the high half is < c. */
	if (mul_u64_u64_shr(a, b, 64) >= c)
		return U64_MAX;
	return mul_u64_u64_div_u64(a, b, c);
#else
	__uint128_t q = (__uint128_t)a * b / c;

	return q > U64_MAX ? U64_MAX : (u64)q;
#endif
}

static u64 bg_sat_add(u64 a, u64 b)
{
	return a > U64_MAX - b ? U64_MAX : a + b;
}

/* The buckets a request of each direction goes through. */
static const enum bg_tb bg_tb_dir[2][4] = {
	{ BG_TB_BPS_TOTAL, BG_TB_BPS_READ, BG_TB_OPS_TOTAL, BG_TB_OPS_READ },
	{ BG_TB_BPS_TOTAL, BG_TB_BPS_WRITE, BG_TB_OPS_TOTAL, BG_TB_OPS_WRITE },
};

static bool bg_tb_is_bps(enum bg_tb b)
{
	return b <= BG_TB_BPS_WRITE;
}

void bg_tcfg_init(struct bg_tcfg *c)
{
	unsigned int i;

	memset(c, 0, sizeof(*c));
	for (i = 0; i < BG_TB_COUNT; i++)
		c->b[i].burst_length = 1;
}

int bg_tcfg_check(const struct bg_tcfg *c, const char **error)
{
	const struct bg_tbucket *b = c->b;
	unsigned int i;

	if ((b[BG_TB_BPS_TOTAL].avg &&
	     (b[BG_TB_BPS_READ].avg || b[BG_TB_BPS_WRITE].avg)) ||
	    (b[BG_TB_OPS_TOTAL].avg &&
	     (b[BG_TB_OPS_READ].avg || b[BG_TB_OPS_WRITE].avg)) ||
	    (b[BG_TB_BPS_TOTAL].max &&
	     (b[BG_TB_BPS_READ].max || b[BG_TB_BPS_WRITE].max)) ||
	    (b[BG_TB_OPS_TOTAL].max &&
	     (b[BG_TB_OPS_READ].max || b[BG_TB_OPS_WRITE].max))) {
		*error = "A total limit excludes read and write limits of the same kind";
		return -EINVAL;
	}
	if (c->op_size && !b[BG_TB_OPS_TOTAL].avg && !b[BG_TB_OPS_READ].avg &&
	    !b[BG_TB_OPS_WRITE].avg) {
		*error = "iops-size needs an iops limit";
		return -EINVAL;
	}
	if (c->op_size > BG_THROTTLE_VALUE_MAX) {
		*error = "iops-size must be at most 10^15";
		return -EINVAL;
	}
	for (i = 0; i < BG_TB_COUNT; i++) {
		if (b[i].avg > BG_THROTTLE_VALUE_MAX ||
		    b[i].max > BG_THROTTLE_VALUE_MAX) {
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
		    b[i].burst_length > BG_THROTTLE_VALUE_MAX / b[i].max) {
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

bool bg_tcfg_limits(const struct bg_tcfg *c, bool is_write)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(bg_tb_dir[0]); i++)
		if (c->b[bg_tb_dir[is_write][i]].avg)
			return true;
	return false;
}

void bg_tstate_init(struct bg_tstate *s, const struct bg_tcfg *c, u64 now)
{
	memset(s, 0, sizeof(*s));
	s->cfg = *c;
	s->prev_leak = now;
}

static void bg_tstate_leak(struct bg_tstate *s, u64 now)
{
	u64 dt = now > s->prev_leak ? now - s->prev_leak : 0;
	unsigned int i;

	/* Levels are drain times: each leaks by the time elapsed. */
	for (i = 0; i < BG_TB_COUNT; i++) {
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
static u64 bg_tbucket_wait(const struct bg_tbucket *b, u64 level, u64 burst)
{
	const u64 tenth = BG_NSEC_PER_SEC / 10;
	u64 size, wait = 0;

	if (!b->avg)
		return 0;
	/*
	 * The bucket holds max * burst_length units (avg / 10 without a
	 * burst rate, so that short bursts pass), which take this long to
	 * drain at avg.
	 */
	if (b->max)
		size = bg_mul_div(b->max * b->burst_length, BG_NSEC_PER_SEC,
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

u64 bg_tstate_wait(struct bg_tstate *s, bool is_write, u64 now)
{
	u64 wait = 0, w;
	unsigned int i;
	enum bg_tb t;

	bg_tstate_leak(s, now);
	for (i = 0; i < ARRAY_SIZE(bg_tb_dir[0]); i++) {
		t = bg_tb_dir[is_write][i];
		w = bg_tbucket_wait(&s->cfg.b[t], s->level[t], s->burst[t]);
		if (w > wait)
			wait = w;
	}
	return wait;
}

void bg_tstate_account(struct bg_tstate *s, bool is_write, u64 bytes)
{
	const struct bg_tbucket *b;
	unsigned int i;
	u64 nunits;		/* units * 10^9 */
	enum bg_tb t;

	for (i = 0; i < ARRAY_SIZE(bg_tb_dir[0]); i++) {
		t = bg_tb_dir[is_write][i];
		b = &s->cfg.b[t];
		if (!b->avg)
			continue;
		if (bg_tb_is_bps(t))
			nunits = bg_mul_div(bytes, BG_NSEC_PER_SEC, 1);
		else if (s->cfg.op_size && bytes > s->cfg.op_size)
			nunits = bg_mul_div(bytes, BG_NSEC_PER_SEC,
					    s->cfg.op_size);
		else
			nunits = BG_NSEC_PER_SEC;
		s->level[t] = bg_sat_add(s->level[t], nunits / b->avg);
		if (b->burst_length > 1)
			s->burst[t] = bg_sat_add(s->burst[t], nunits / b->max);
	}
}

/* ---------------------------------------------------------------- */
/* The group's attributes                                           */
/* ---------------------------------------------------------------- */

/* QEMU's names (qapi ThrottleLimits), in the order of the attributes. */
const struct bg_tattr bg_tattrs[BG_TATTR_COUNT] = {
	{ "bps-total", BG_TB_BPS_TOTAL, BG_TF_AVG },
	{ "bps-total-max", BG_TB_BPS_TOTAL, BG_TF_MAX },
	{ "bps-total-max-length", BG_TB_BPS_TOTAL, BG_TF_LENGTH },
	{ "bps-read", BG_TB_BPS_READ, BG_TF_AVG },
	{ "bps-read-max", BG_TB_BPS_READ, BG_TF_MAX },
	{ "bps-read-max-length", BG_TB_BPS_READ, BG_TF_LENGTH },
	{ "bps-write", BG_TB_BPS_WRITE, BG_TF_AVG },
	{ "bps-write-max", BG_TB_BPS_WRITE, BG_TF_MAX },
	{ "bps-write-max-length", BG_TB_BPS_WRITE, BG_TF_LENGTH },
	{ "iops-total", BG_TB_OPS_TOTAL, BG_TF_AVG },
	{ "iops-total-max", BG_TB_OPS_TOTAL, BG_TF_MAX },
	{ "iops-total-max-length", BG_TB_OPS_TOTAL, BG_TF_LENGTH },
	{ "iops-read", BG_TB_OPS_READ, BG_TF_AVG },
	{ "iops-read-max", BG_TB_OPS_READ, BG_TF_MAX },
	{ "iops-read-max-length", BG_TB_OPS_READ, BG_TF_LENGTH },
	{ "iops-write", BG_TB_OPS_WRITE, BG_TF_AVG },
	{ "iops-write-max", BG_TB_OPS_WRITE, BG_TF_MAX },
	{ "iops-write-max-length", BG_TB_OPS_WRITE, BG_TF_LENGTH },
	{ "iops-size", BG_TB_OPS_TOTAL, BG_TF_OP_SIZE },
};

int bg_tattr_find(const char *name)
{
	unsigned int i;

	for (i = 0; i < BG_TATTR_COUNT; i++)
		if (!strcmp(bg_tattrs[i].name, name))
			return i;
	return -ENOENT;
}

static u64 *bg_tcfg_field(struct bg_tcfg *c, unsigned int attr)
{
	const struct bg_tattr *a = &bg_tattrs[attr];

	switch (a->field) {
	case BG_TF_AVG:
		return &c->b[a->bucket].avg;
	case BG_TF_MAX:
		return &c->b[a->bucket].max;
	case BG_TF_LENGTH:
		return &c->b[a->bucket].burst_length;
	case BG_TF_OP_SIZE:
		break;
	}
	return &c->op_size;
}

u64 bg_tcfg_get(const struct bg_tcfg *c, unsigned int attr)
{
	return *bg_tcfg_field((struct bg_tcfg *)c, attr);
}

int bg_tcfg_set(struct bg_tcfg *c, unsigned int attr, u64 val,
		const char **error)
{
	struct bg_tcfg n = *c;
	int r;

	if (attr >= BG_TATTR_COUNT) {
		*error = "No such attribute";
		return -EINVAL;
	}
	*bg_tcfg_field(&n, attr) = val;
	r = bg_tcfg_check(&n, error);
	if (!r)
		*c = n;
	return r;
}
