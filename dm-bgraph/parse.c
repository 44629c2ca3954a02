// SPDX-License-Identifier: GPL-2.0
/*
 * Parsing of untrusted table arguments.  Pure logic; see pure.h.
 *
 * These do not use dm_read_arg_group()/dm_shift_arg(): those live in
 * dm-table.c and would keep this file out of the host unit tests and
 * fuzzers, which must run the very code the module runs.
 */
#include "parse.h"

int bg_parse_u64(const char *s, u64 *val)
{
	u64 v = 0;

	if (!s || !*s)
		return -EINVAL;
	for (; *s; s++) {
		unsigned int d;

		if (*s < '0' || *s > '9')
			return -EINVAL;
		d = *s - '0';
		if (v > (U64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	*val = v;
	return 0;
}

int bg_parse_size(const char *s, u64 *bytes)
{
	char digits[24];
	size_t len;
	unsigned int shift = 0;
	u64 v;
	int r;

	if (!s)
		return -EINVAL;
	len = strlen(s);
	if (!len || len >= sizeof(digits))
		return -EINVAL;
	memcpy(digits, s, len + 1);
	switch (digits[len - 1]) {
	case 'k':
	case 'K':
		shift = 10;
		break;
	case 'M':
		shift = 20;
		break;
	case 'G':
		shift = 30;
		break;
	case 'T':
		shift = 40;
		break;
	}
	if (shift)
		digits[len - 1] = '\0';
	r = bg_parse_u64(digits, &v);
	if (r)
		return r;
	if (shift && v > (U64_MAX >> shift))
		return -ERANGE;
	*bytes = v << shift;
	return 0;
}

/* "<#opt_args> <key> <value>...": the count must match, pairs only. */
static int parse_opt_count(unsigned int argc, char **argv, const char **error)
{
	u64 nopt;

	if (bg_parse_u64(argv[0], &nopt)) {
		*error = "Invalid number of optional arguments";
		return -EINVAL;
	}
	if (nopt != argc - 1) {
		*error = "Optional argument count does not match the arguments given";
		return -EINVAL;
	}
	if (nopt % 2) {
		*error = "Optional arguments must be <key> <value> pairs";
		return -EINVAL;
	}
	return 0;
}

int bg_raw_parse_opts(unsigned int argc, char **argv,
		      struct bg_raw_args *a, const char **error)
{
	bool seen_offset = false;
	unsigned int i;

	memset(a, 0, sizeof(*a));
	if (!argc)
		return 0;
	if (parse_opt_count(argc, argv, error))
		return -EINVAL;
	for (i = 1; i < argc; i += 2) {
		const char *key = argv[i], *val = argv[i + 1];
		u64 v;

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
	return 0;
}

int bg_qcow2_parse_opts(unsigned int argc, char **argv,
			struct bg_qcow2_args *a, const char **error)
{
	unsigned int i;
	u64 nopt;

	memset(a, 0, sizeof(*a));
	if (!argc)
		return 0;
	if (bg_parse_u64(argv[0], &nopt)) {
		*error = "Invalid number of optional arguments";
		return -EINVAL;
	}
	if (nopt != argc - 1) {
		*error = "Optional argument count does not match the arguments given";
		return -EINVAL;
	}
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
		if (strcmp(key, "backing") && strcmp(key, "l2_cache_size")) {
			*error = "Unknown optional argument";
			return -EINVAL;
		}
		if (!val) {
			*error = "Option backing and l2_cache_size need a value";
			return -EINVAL;
		}
		i++;
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
			    !a->l2_cache_size || a->l2_cache_size > BG_QCOW2_MAX_CACHE) {
				*error = "Invalid l2_cache_size: a byte count from 1 to 1G";
				return -EINVAL;
			}
		}
	}
	return 0;
}

int bg_raw_window(const struct bg_raw_args *a, u64 dev_bytes,
		  u64 target_bytes, u64 *window, const char **error)
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
