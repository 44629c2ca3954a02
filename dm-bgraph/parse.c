// SPDX-License-Identifier: GPL-2.0
/*
 * Parsing of untrusted table arguments.  Pure logic; see pure.h.
 *
 * These do not use dm_read_arg_group()/dm_shift_arg(): those live in
 * dm-table.c, take a struct dm_arg_set and set ti->error, and would keep
 * this file out of the host unit tests and fuzzers, which must run the
 * very code the module runs.  Kernel library helpers (kstrtou64()) are
 * used, with user-space versions in selftests/lib/uspace.h.
 */
#include "parse.h"

int bg_parse_u64(const char *s, u64 *val)
{
	const char *c;

	/* Digits only: kstrtou64() would also take a '+' and a newline. */
	if (!s || !*s)
		return -EINVAL;
	for (c = s; *c; c++)
		if (*c < '0' || *c > '9')
			return -EINVAL;
	return kstrtou64(s, 10, val);
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

int bg_parse_opt_count(unsigned int argc, char **argv, bool pairs,
		       const char **error)
{
	u64 nopt;

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
	if (pairs && nopt % 2) {
		*error = "Optional arguments must be <key> <value> pairs";
		return -EINVAL;
	}
	return 0;
}

static const char *const bg_discard_names[] = {
	[BG_DISCARD_UNMAP] = "unmap",
	[BG_DISCARD_IGNORE] = "ignore",
};

static const char *const bg_dz_names[] = {
	[BG_DZ_OFF] = "off",
	[BG_DZ_ON] = "on",
	[BG_DZ_UNMAP] = "unmap",
};

/* The index of @val in @names, or -1. */
static int bg_lookup_name(const char *const *names, unsigned int n,
			  const char *val)
{
	unsigned int i;

	for (i = 0; val && i < n; i++)
		if (!strcmp(val, names[i]))
			return i;
	return -1;
}

int bg_parse_io_opt(const char *key, const char *val, struct bg_io_opts *o,
		    const char **error)
{
	int v;

	if (!strcmp(key, "discard")) {
		if (o->seen_discard) {
			*error = "Option discard given twice";
			return -EINVAL;
		}
		v = bg_lookup_name(bg_discard_names,
				   ARRAY_SIZE(bg_discard_names), val);
		if (v < 0) {
			*error = "Invalid discard: ignore or unmap";
			return -EINVAL;
		}
		o->discard = v;
		o->seen_discard = true;
		return 1;
	}
	if (!strcmp(key, "detect_zeroes")) {
		if (o->seen_detect_zeroes) {
			*error = "Option detect_zeroes given twice";
			return -EINVAL;
		}
		v = bg_lookup_name(bg_dz_names, ARRAY_SIZE(bg_dz_names), val);
		if (v < 0) {
			*error = "Invalid detect_zeroes: off, on or unmap";
			return -EINVAL;
		}
		o->detect_zeroes = v;
		o->seen_detect_zeroes = true;
		return 1;
	}
	return 0;
}

int bg_io_opts_check(const struct bg_io_opts *o, const char **error)
{
	if (o->detect_zeroes == BG_DZ_UNMAP &&
	    o->discard != BG_DISCARD_UNMAP) {
		*error = "detect_zeroes unmap needs discard unmap";
		return -EINVAL;
	}
	return 0;
}

void bg_io_opts_emit(struct bg_opt_args *args, const struct bg_io_opts *o)
{
	if (o->seen_discard)
		bg_opt_add(args, "discard %s", bg_discard_names[o->discard]);
	if (o->seen_detect_zeroes)
		bg_opt_add(args, "detect_zeroes %s",
			   bg_dz_names[o->detect_zeroes]);
}
