// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer harness for targets/throttle-core.c.  The input is a program:
 * attribute writes (as a user echoes them into a throttle group), clock
 * steps and requests.  Checked: a refused write changes nothing and an
 * accepted one leaves a configuration QEMU's rules accept; a request told
 * to wait w ns may pass w ns later; a direction without limits never waits.
 */
#include "fuzz.h"
#include "throttle-core.h"

static u64 take(const u8 **p, size_t *n, unsigned int bytes)
{
	u64 v = 0;

	while (bytes-- && *n) {
		v = v << 8 | **p;
		(*p)++;
		(*n)--;
	}
	return v;
}

int LLVMFuzzerTestOneInput(const u8 *data, size_t size)
{
	struct throttle_cfg cfg, before;
	struct throttle_state s;
	const char *err;
	u64 now = 0, w, v;
	unsigned int op, attr;
	bool dir;
	int r;

	throttle_cfg_init(&cfg);
	throttle_state_init(&s, &cfg, now);
	while (size) {
		op = take(&data, &size, 1);
		dir = op & 0x80;
		switch (op & 3) {
		case 0:		/* echo VALUE > ATTR: small values mostly */
			attr = take(&data, &size, 1) % THROTTLE_ATTR_COUNT;
			v = take(&data, &size, 1 + (op >> 2) % 8);
			before = cfg;
			err = NULL;
			r = throttle_cfg_set(&cfg, attr, v, &err);
			if (r) {
				CHECK(r == -EINVAL && err);
				CHECK(!memcmp(&cfg, &before, sizeof(cfg)));
			} else {
				CHECK(throttle_cfg_check(&cfg, &err) == 0);
				CHECK(throttle_cfg_get(&cfg, attr) == v);
				throttle_state_init(&s, &cfg, now);
			}
			break;
		case 1:		/* time passes, and never wraps */
			v = take(&data, &size, 4);
			if (now + v >= now)
				now += v;
			break;
		case 2:		/* a request: wait as told, then it passes */
			v = take(&data, &size, 4);
			w = throttle_state_wait(&s, dir, now);
			if (!throttle_cfg_limits(&cfg, dir))
				CHECK(w == 0);
			if (w && now + w > now) {
				now += w;
				CHECK(throttle_state_wait(&s, dir, now) == 0);
			} else if (w) {
				break;	/* saturated: the clock cannot get there */
			}
			throttle_state_account(&s, dir, v);
			break;
		case 3:		/* a request that does not wait its turn */
			throttle_state_account(&s, dir, take(&data, &size, 4));
			break;
		}
	}
	return 0;
}
