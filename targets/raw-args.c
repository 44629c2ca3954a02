// SPDX-License-Identifier: GPL-2.0
/*
 * bgraph-raw's table arguments.  Pure logic; see dm-bgraph/pure.h.
 */
#include "raw-args.h"

int raw_parse_opts(unsigned int argc, char **argv, struct raw_args *a,
		   const char **error)
{
	bool seen_offset = false;
	unsigned int i;

	memset(a, 0, sizeof(*a));
	if (!argc)
		return 0;
	if (bg_parse_opt_count(argc, argv, true, error))
		return -EINVAL;
	for (i = 1; i < argc; i += 2) {
		const char *key = argv[i], *val = argv[i + 1];
		u64 v;
		int r;

		r = bg_parse_io_opt(key, val, &a->io, error);
		if (r < 0)
			return r;
		if (r)
			continue;
		if (!strcmp(key, "offset")) {
			if (seen_offset) {
				*error = "Option offset given twice";
				return -EINVAL;
			}
			seen_offset = true;
			if (bg_parse_size(val, &v)) {
				*error = "Invalid offset: not a byte count";
				return -EINVAL;
			}
			if (v % BG_SECTOR_SIZE) {
				*error = "Invalid offset: not a multiple of 512";
				return -EINVAL;
			}
			a->offset = v;
		} else if (!strcmp(key, "size")) {
			if (a->has_size) {
				*error = "Option size given twice";
				return -EINVAL;
			}
			if (bg_parse_size(val, &v)) {
				*error = "Invalid size: not a byte count";
				return -EINVAL;
			}
			if (!v || v % BG_SECTOR_SIZE) {
				*error = "Invalid size: zero or not a multiple of 512";
				return -EINVAL;
			}
			a->size = v;
			a->has_size = true;
		} else {
			*error = "Unknown optional argument";
			return -EINVAL;
		}
	}
	return bg_io_opts_check(&a->io, error);
}

int raw_window(const struct raw_args *a, u64 dev_bytes, u64 target_bytes,
	       u64 *window, const char **error)
{
	u64 w;

	if (a->offset >= dev_bytes) {
		*error = "offset is at or past the end of the device";
		return -EINVAL;
	}
	if (a->has_size) {
		if (a->size > dev_bytes - a->offset) {
			*error = "offset + size is past the end of the device";
			return -EINVAL;
		}
		w = a->size;
	} else {
		w = dev_bytes - a->offset;
	}
	if (target_bytes > w) {
		*error = "Target length is larger than the device window";
		return -EINVAL;
	}
	*window = w;
	return 0;
}
