/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Parsing of untrusted table arguments.  Pure logic; see pure.h.  Every
 * function returns 0 or a negative errno and, through @error where it takes
 * one, a literal one-line reason for ti->error / the kernel log.
 */
#ifndef DM_BGRAPH_PARSE_H
#define DM_BGRAPH_PARSE_H

#include "pure.h"

#define BG_SECTOR_SIZE 512u

/* A plain decimal u64: digits only, no sign, no junk, no overflow. */
int bg_parse_u64(const char *s, u64 *val);

/*
 * A byte count: decimal with an optional binary suffix k/K, M, G, T
 * (QEMU's size syntax without fractions).
 */
int bg_parse_size(const char *s, u64 *bytes);

/* The optional arguments of a bgraph-raw table line. */
struct bg_raw_args {
	u64 offset;		/* bytes into the child */
	u64 size;		/* bytes of the window, 0 = to the end */
	bool has_size;
};

/*
 * bg_raw_parse_opts() - parse "[<#opt_args> <opt_args>...]", the words after
 * <dev>: @argc words in @argv.  Keys: offset <bytes>, size <bytes>; both
 * multiples of 512.
 */
int bg_raw_parse_opts(unsigned int argc, char **argv,
		      struct bg_raw_args *a, const char **error);

/*
 * bg_raw_window() - check the window against a child of @dev_bytes and a
 * target of @target_bytes; sets *@window to the window's length in bytes.
 */
int bg_raw_window(const struct bg_raw_args *a, u64 dev_bytes,
		  u64 target_bytes, u64 *window, const char **error);

/* The optional arguments of a bgraph-qcow2 table line. */
struct bg_qcow2_args {
	const char *backing;	/* a device path, or NULL */
	u64 l2_cache_size;	/* bytes, 0 = the default */
	bool read_only;		/* flag: refuse writes, open the file read-only */
	bool error_if_no_space;	/* flag: -ENOSPC instead of waiting */
};

#define BG_QCOW2_MAX_CACHE	BIT_ULL(30)

/*
 * bg_qcow2_parse_opts() - parse "[<#opt_args> <opt_args>...]" after
 * <file_dev>.  Keys: backing <dev>, l2_cache_size <bytes>; flags:
 * read_only, error_if_no_space.  @a->backing points into @argv.
 */
int bg_qcow2_parse_opts(unsigned int argc, char **argv,
			struct bg_qcow2_args *a, const char **error);

#endif /* DM_BGRAPH_PARSE_H */
