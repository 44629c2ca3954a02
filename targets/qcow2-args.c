// SPDX-License-Identifier: GPL-2.0
/*
 * bgraph-qcow2's table arguments.  Pure logic; see dm-bgraph/pure.h.
 */
#include "qcow2-args.h"

int qcow2_parse_opts(unsigned int argc, char **argv, struct qcow2_args *a,
		     const char **error)
{
	unsigned int i;
	int r;

	memset(a, 0, sizeof(*a));
	if (bg_parse_opt_count(argc, argv, false, error))
		return -EINVAL;
	/* Keys with a value, and flags (dm-thin's style) without one. */
	for (i = 1; i < argc; i++) {
		const char *key = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(key, "read_only")) {
			if (a->read_only) {
				*error = "Option read_only given twice";
				return -EINVAL;
			}
			a->read_only = true;
			continue;
		}
		if (!strcmp(key, "error_if_no_space")) {
			if (a->error_if_no_space) {
				*error = "Option error_if_no_space given twice";
				return -EINVAL;
			}
			a->error_if_no_space = true;
			continue;
		}
		if (strcmp(key, "backing") && strcmp(key, "l2_cache_size") &&
		    strcmp(key, "discard") && strcmp(key, "detect_zeroes")) {
			*error = "Unknown optional argument";
			return -EINVAL;
		}
		if (!val) {
			if (!strcmp(key, "backing"))
				*error = "Option backing needs a value";
			else if (!strcmp(key, "l2_cache_size"))
				*error = "Option l2_cache_size needs a value";
			else if (!strcmp(key, "discard"))
				*error = "Option discard needs a value";
			else
				*error = "Option detect_zeroes needs a value";
			return -EINVAL;
		}
		i++;
		r = bg_parse_io_opt(key, val, &a->io, error);
		if (r < 0)
			return r;
		if (r)
			continue;
		if (!strcmp(key, "backing")) {
			if (a->backing) {
				*error = "Option backing given twice";
				return -EINVAL;
			}
			a->backing = val;
		} else {
			if (a->l2_cache_size) {
				*error = "Option l2_cache_size given twice";
				return -EINVAL;
			}
			if (bg_parse_size(val, &a->l2_cache_size) ||
			    !a->l2_cache_size || a->l2_cache_size > QCOW2_MAX_CACHE) {
				*error = "Invalid l2_cache_size: a byte count from 1 to 1G";
				return -EINVAL;
			}
		}
	}
	return bg_io_opts_check(&a->io, error);
}
