/* SPDX-License-Identifier: GPL-2.0 */
/*
 * bgraph-raw's table arguments.  Pure logic (see dm-bgraph/pure.h): built
 * into the module and into the host unit tests.  Each function returns 0
 * or -EINVAL with a literal one-line reason in *@error.
 */
#ifndef DM_BGRAPH_RAW_ARGS_H
#define DM_BGRAPH_RAW_ARGS_H

#include "../dm-bgraph/parse.h"

/* The optional arguments of a bgraph-raw table line. */
struct raw_args {
	u64 offset;		/* bytes into the child */
	u64 size;		/* bytes of the window, 0 = to the end */
	bool has_size;
	struct bg_io_opts io;	/* discard, detect_zeroes */
};

/*
 * raw_parse_opts() - parse "[<#opt_args> <opt_args>...]", the words after
 * <dev>: @argc words in @argv.  Keys: offset <bytes>, size <bytes>; both
 * multiples of 512; discard ignore|unmap; detect_zeroes off|on|unmap.
 */
int raw_parse_opts(unsigned int argc, char **argv, struct raw_args *a,
		   const char **error);

/*
 * raw_window() - check the window against a child of @dev_bytes and a
 * target of @target_bytes; sets *@window to the window's length in bytes.
 */
int raw_window(const struct raw_args *a, u64 dev_bytes, u64 target_bytes,
	       u64 *window, const char **error);

#endif /* DM_BGRAPH_RAW_ARGS_H */
