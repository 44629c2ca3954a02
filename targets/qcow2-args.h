/* SPDX-License-Identifier: GPL-2.0 */
/*
 * bgraph-qcow2's table arguments.  Pure logic (see dm-bgraph/pure.h):
 * built into the module and into the host unit tests.
 */
#ifndef DM_BGRAPH_QCOW2_ARGS_H
#define DM_BGRAPH_QCOW2_ARGS_H

#include "../dm-bgraph/parse.h"

/* The optional arguments of a bgraph-qcow2 table line. */
struct qcow2_args {
	const char *backing;	/* a device path, or NULL */
	u64 l2_cache_size;	/* bytes, 0 = the default */
	bool read_only;		/* flag: refuse writes, open the file read-only */
	bool error_if_no_space;	/* flag: -ENOSPC instead of waiting */
	struct bg_io_opts io;	/* discard, detect_zeroes */
};

#define QCOW2_MAX_CACHE	BIT_ULL(30)

/*
 * qcow2_parse_opts() - parse "[<#opt_args> <opt_args>...]" after
 * <file_dev>.  Keys: backing <dev>, l2_cache_size <bytes>, discard
 * ignore|unmap, detect_zeroes off|on|unmap; flags:
 * read_only, error_if_no_space.  @a->backing points into @argv.  Returns 0
 * or -EINVAL with a literal one-line reason in *@error.
 */
int qcow2_parse_opts(unsigned int argc, char **argv, struct qcow2_args *a,
		     const char **error);

#endif /* DM_BGRAPH_QCOW2_ARGS_H */
