/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The op-blocker table: which operation running on a node refuses which
 * other operation on that same node.  Data, not code; pure logic (pure.h).
 */
#ifndef DM_BGRAPH_BLOCKERS_H
#define DM_BGRAPH_BLOCKERS_H

#include "pure.h"

enum bg_op {
	BG_OP_STREAM,
	BG_OP_COMMIT_SOURCE,
	BG_OP_COMMIT_TARGET,
	BG_OP_MIRROR_SOURCE,
	BG_OP_MIRROR_TARGET,
	BG_OP_BACKUP_SOURCE,
	BG_OP_BACKUP_TARGET,
	BG_OP_RESIZE,
	BG_OP_EXTERNAL_SNAPSHOT,
	BG_OP_GRAPH_CHANGE,
	BG_OP_REMOVE,
	BG_OP_NR,
};

/* "stream", "commit-source", ...; NULL for an out-of-range value. */
const char *bg_op_name(enum bg_op op);

/* The op named @name, or -EINVAL. */
int bg_op_parse(const char *name);

/* Does @running, held on a node, refuse @wanted on the same node? */
bool bg_op_blocks(enum bg_op running, enum bg_op wanted);

/*
 * bg_op_first_blocker() - index into @held (the n ops held on one node) of
 * the first op that refuses @wanted, or -1 when @wanted may start.
 */
int bg_op_first_blocker(const u8 *held, unsigned int n, enum bg_op wanted);

/* The whole table as text, one row per running op; returns the length. */
int bg_op_table_format(char *buf, size_t size);

/* Most nodes one write to a change's ``block`` names. */
#define BG_BLOCK_MAX_NODES	64
/* Longest node name in it: a dm name (DM_NAME_LEN - 1). */
#define BG_BLOCK_NAME_MAX	127

/**
 * struct bg_block_req - one line written to changes/<name>/block
 * @op:		the op to block for
 * @n:		how many nodes
 * @names:	the node names, pointing into the parsed line
 */
struct bg_block_req {
	enum bg_op op;
	unsigned int n;
	const char *names[BG_BLOCK_MAX_NODES];
};

/**
 * bg_block_parse() - parse "<op> <node> [<node>...]"
 * @line:	the text, NUL-terminated; split in place
 * @req:	the request, filled on success
 * @error:	a literal one-line reason, on -EINVAL
 *
 * Words are separated by spaces or tabs; one trailing newline is allowed
 * (``echo``).  Refused: an unknown op, no node, more than
 * BG_BLOCK_MAX_NODES nodes, a name longer than BG_BLOCK_NAME_MAX, a name
 * given twice, any other control character.
 *
 * Context: any; pure logic.
 * Return: 0 or -EINVAL.
 */
int bg_block_parse(char *line, struct bg_block_req *req, const char **error);

#endif /* DM_BGRAPH_BLOCKERS_H */
