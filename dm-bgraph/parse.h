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

/* QEMU's discard node option: what a node does with a discard. */
enum bg_discard {
	BG_DISCARD_UNMAP,	/* does it (the default of our tables) */
	BG_DISCARD_IGNORE,	/* completes it, doing nothing */
};

/* QEMU's detect-zeroes: what a node does with a write of zeros. */
enum bg_detect_zeroes {
	BG_DZ_OFF,		/* writes them (the default) */
	BG_DZ_ON,		/* makes it a write-zeroes that keeps blocks */
	BG_DZ_UNMAP,		/* makes it a write-zeroes that may free them */
};

/**
 * struct bg_io_opts - the node options of QEMU's that a kind writing to
 * its own children takes in its table: ``discard ignore|unmap`` and
 * ``detect_zeroes off|on|unmap``
 * @discard:		enum bg_discard
 * @detect_zeroes:	enum bg_detect_zeroes
 * @seen_discard:	given in the table
 * @seen_detect_zeroes:	given in the table
 */
struct bg_io_opts {
	enum bg_discard discard;
	enum bg_detect_zeroes detect_zeroes;
	bool seen_discard;
	bool seen_detect_zeroes;
};

/**
 * bg_parse_io_opt() - take @key and its @val if they are a struct
 * bg_io_opts option
 * @key:	the option's key
 * @val:	its value (NULL when there is none)
 * @o:		the options so far (zeroed before the first)
 * @error:	the reason, on -EINVAL
 *
 * Return: 1 when taken, 0 when @key is not one of these, -EINVAL.
 */
int bg_parse_io_opt(const char *key, const char *val, struct bg_io_opts *o,
		    const char **error);

/**
 * bg_io_opts_check() - the options together: detect_zeroes unmap needs
 * discard unmap, as QEMU requires
 * @o:		the options
 * @error:	the reason, on -EINVAL
 *
 * Return: 0 or -EINVAL.
 */
int bg_io_opts_check(const struct bg_io_opts *o, const char **error);

/**
 * bg_io_opts_emit() - add the options that were given to a table line
 * @args:	the line's optional arguments
 * @o:		the options
 */
void bg_io_opts_emit(struct bg_opt_args *args, const struct bg_io_opts *o);

#endif /* DM_BGRAPH_PARSE_H */
