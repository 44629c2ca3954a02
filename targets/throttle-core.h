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

enum throttle_bucket_id {
	THROTTLE_BPS_TOTAL,
	THROTTLE_BPS_READ,
	THROTTLE_BPS_WRITE,
	THROTTLE_OPS_TOTAL,
	THROTTLE_OPS_READ,
	THROTTLE_OPS_WRITE,
	THROTTLE_BUCKET_COUNT
};

/* QEMU's THROTTLE_VALUE_MAX: bound of every rate and of max * length. */
#define THROTTLE_VALUE_MAX	1000000000000000ULL
#define THROTTLE_NSEC_PER_SEC		1000000000ULL

struct throttle_bucket {
	u64 avg;		/* units per second; 0: no limit */
	u64 max;		/* burst rate; 0: none */
	u64 burst_length;	/* seconds a burst at max may last; >= 1 */
};

struct throttle_cfg {
	struct throttle_bucket b[THROTTLE_BUCKET_COUNT];
	u64 op_size;		/* iops-size: n bytes count n / op_size ops */
};

struct throttle_state {
	struct throttle_cfg cfg;
	u64 level[THROTTLE_BUCKET_COUNT];	/* ns to drain at avg */
	u64 burst[THROTTLE_BUCKET_COUNT];	/* ns to drain at max */
	u64 prev_leak;		/* ns */
};

/* No limits: every rate 0, every burst length 1. */
void throttle_cfg_init(struct throttle_cfg *c);

/*
 * throttle_cfg_check() - QEMU's throttle_is_valid(): 0, or -EINVAL with a
 * one-line reason in *@error.
 */
int throttle_cfg_check(const struct throttle_cfg *c, const char **error);

/* Does @c limit requests of this direction at all? */
bool throttle_cfg_limits(const struct throttle_cfg *c, bool is_write);

/*
 * throttle_state_init() - start @s with configuration @c at @now, all buckets
 * empty.  Also how a configuration changes: QEMU empties the buckets too.
 */
void throttle_state_init(struct throttle_state *s, const struct throttle_cfg *c, u64 now);

/*
 * throttle_state_wait() - leak every bucket up to @now, then return how many ns a
 * request of this direction must wait before it may pass; 0: it may pass
 * now.  It does not account the request.
 */
u64 throttle_state_wait(struct throttle_state *s, bool is_write, u64 now);

/* throttle_state_account() - a request of @bytes passes: fill its buckets. */
void throttle_state_account(struct throttle_state *s, bool is_write, u64 bytes);

/* The attributes of a throttle group directory, as data. */
enum throttle_field {
	THROTTLE_FIELD_AVG,
	THROTTLE_FIELD_MAX,
	THROTTLE_FIELD_LENGTH,
	THROTTLE_FIELD_OP_SIZE,
};

struct throttle_attr {
	const char *name;	/* "bps-total", "iops-read-max-length", ... */
	enum throttle_bucket_id bucket;
	enum throttle_field field;
};

#define THROTTLE_ATTR_COUNT	19
extern const struct throttle_attr throttle_attrs[THROTTLE_ATTR_COUNT];

/* The index of attribute @name in throttle_attrs, or -ENOENT. */
int throttle_attr_find(const char *name);

u64 throttle_cfg_get(const struct throttle_cfg *c, unsigned int attr);

/*
 * throttle_cfg_set() - set attribute @attr of @c to @val if the whole
 * configuration stays valid; otherwise leave @c as it was and return
 * -EINVAL with the reason in *@error.
 */
int throttle_cfg_set(struct throttle_cfg *c, unsigned int attr, u64 val,
		     const char **error);

#endif /* DM_BGRAPH_THROTTLE_CORE_H */
