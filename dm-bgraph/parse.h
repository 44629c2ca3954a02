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

/*
 * bg_parse_opt_count() - check "<#opt_args> <opt_args>...", @argc words in
 * @argv (none at all is fine): the count is a decimal that matches the
 * words given, and with @pairs an even one (<key> <value> pairs only).
 */
int bg_parse_opt_count(unsigned int argc, char **argv, bool pairs,
		       const char **error);

#endif /* DM_BGRAPH_PARSE_H */
