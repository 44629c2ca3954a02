/* SPDX-License-Identifier: GPL-2.0 */
/*
 * QEMU's I/O throttling algorithm (util/throttle.c, docs/throttle.txt) for
 * bgraph-throttle: six leaky buckets, a configuration with QEMU's
 * validation rules, and the names of the throttle group attributes as data.
 * Pure logic (see pure.h): no locks, no clocks; callers pass the time in ns
 * and serialise calls on one state.
 *
 * A bucket fills by the units of each request that passes (bytes or
 * operations) and leaks at avg units per second.  A request may pass while
 * the bucket holds at most its size: max * burst_length units when a burst
 * rate is set, avg / 10 otherwise.  With burst_length > 1 a second bucket,
 * leaking at max, holds bursts to max / 10 units above the max rate.
 *
 * Levels are kept as the time the bucket needs to drain (ns at avg, and at
 * max for the burst bucket), so leaking is a subtraction and a wait is a
 * difference: integer arithmetic with no rounding but one division per
 * request.  QEMU keeps the same quantities as doubles in units.
 */
#ifndef DM_BGRAPH_THROTTLE_CORE_H
#define DM_BGRAPH_THROTTLE_CORE_H

#include "../dm-bgraph/pure.h"

enum bg_tb {
	BG_TB_BPS_TOTAL,
	BG_TB_BPS_READ,
	BG_TB_BPS_WRITE,
	BG_TB_OPS_TOTAL,
	BG_TB_OPS_READ,
	BG_TB_OPS_WRITE,
	BG_TB_COUNT
};

/* QEMU's THROTTLE_VALUE_MAX: bound of every rate and of max * length. */
#define BG_THROTTLE_VALUE_MAX	1000000000000000ULL
#define BG_NSEC_PER_SEC		1000000000ULL

struct bg_tbucket {
	u64 avg;		/* units per second; 0: no limit */
	u64 max;		/* burst rate; 0: none */
	u64 burst_length;	/* seconds a burst at max may last; >= 1 */
};

struct bg_tcfg {
	struct bg_tbucket b[BG_TB_COUNT];
	u64 op_size;		/* iops-size: n bytes count n / op_size ops */
};

struct bg_tstate {
	struct bg_tcfg cfg;
	u64 level[BG_TB_COUNT];	/* ns to drain at avg */
	u64 burst[BG_TB_COUNT];	/* ns to drain at max */
	u64 prev_leak;		/* ns */
};

/* No limits: every rate 0, every burst length 1. */
void bg_tcfg_init(struct bg_tcfg *c);

/*
 * bg_tcfg_check() - QEMU's throttle_is_valid(): 0, or -EINVAL with a
 * one-line reason in *@error.
 */
int bg_tcfg_check(const struct bg_tcfg *c, const char **error);

/* Does @c limit requests of this direction at all? */
bool bg_tcfg_limits(const struct bg_tcfg *c, bool is_write);

/*
 * bg_tstate_init() - start @s with configuration @c at @now, all buckets
 * empty.  Also how a configuration changes: QEMU empties the buckets too.
 */
void bg_tstate_init(struct bg_tstate *s, const struct bg_tcfg *c, u64 now);

/*
 * bg_tstate_wait() - leak every bucket up to @now, then return how many ns a
 * request of this direction must wait before it may pass; 0: it may pass
 * now.  It does not account the request.
 */
u64 bg_tstate_wait(struct bg_tstate *s, bool is_write, u64 now);

/* bg_tstate_account() - a request of @bytes passes: fill its buckets. */
void bg_tstate_account(struct bg_tstate *s, bool is_write, u64 bytes);

/* The attributes of a throttle group directory, as data. */
enum bg_tfield { BG_TF_AVG, BG_TF_MAX, BG_TF_LENGTH, BG_TF_OP_SIZE };

struct bg_tattr {
	const char *name;	/* "bps-total", "iops-read-max-length", ... */
	enum bg_tb bucket;
	enum bg_tfield field;
};

#define BG_TATTR_COUNT	19
extern const struct bg_tattr bg_tattrs[BG_TATTR_COUNT];

/* The index of attribute @name in bg_tattrs, or -ENOENT. */
int bg_tattr_find(const char *name);

u64 bg_tcfg_get(const struct bg_tcfg *c, unsigned int attr);

/*
 * bg_tcfg_set() - set attribute @attr of @c to @val if the whole
 * configuration stays valid; otherwise leave @c as it was and return
 * -EINVAL with the reason in *@error.
 */
int bg_tcfg_set(struct bg_tcfg *c, unsigned int attr, u64 val,
		const char **error);

#endif /* DM_BGRAPH_THROTTLE_CORE_H */
