// SPDX-License-Identifier: GPL-2.0
/*
 * The op-blocker table.  Pure logic; see pure.h.
 *
 * QEMU blocks every operation on the nodes of a running job
 * (bdrv_op_block_all()).  We keep that rule, with one deliberate
 * relaxation: a backup only reads its source, so it coexists with the
 * operations that leave a node's guest-visible content unchanged (stream
 * into it, commit or mirror from it, another backup from it), both ways.
 * resize, external-snapshot, graph-change and remove are short and
 * exclusive.
 */
#include "blockers.h"

static const char *const bg_op_names[BG_OP_NR] = {
	[BG_OP_STREAM]			= "stream",
	[BG_OP_COMMIT_SOURCE]		= "commit-source",
	[BG_OP_COMMIT_TARGET]		= "commit-target",
	[BG_OP_MIRROR_SOURCE]		= "mirror-source",
	[BG_OP_MIRROR_TARGET]		= "mirror-target",
	[BG_OP_BACKUP_SOURCE]		= "backup-source",
	[BG_OP_BACKUP_TARGET]		= "backup-target",
	[BG_OP_RESIZE]			= "resize",
	[BG_OP_EXTERNAL_SNAPSHOT]	= "external-snapshot",
	[BG_OP_GRAPH_CHANGE]		= "graph-change",
	[BG_OP_REMOVE]			= "remove",
};

/*
 * bg_op_table[running][wanted]: 1 = refused.
 *
 * Columns: ST = stream, CS/CT = commit source/target, MS/MT = mirror
 * source/target, BS/BT = backup source/target, RS = resize,
 * SN = external-snapshot, GC = graph-change, RM = remove.
 */
static const bool bg_op_table[BG_OP_NR][BG_OP_NR] = {
	/*                          ST CS CT MS MT BS BT RS SN GC RM */
	[BG_OP_STREAM]          = { 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1 },
	[BG_OP_COMMIT_SOURCE]   = { 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1 },
	[BG_OP_COMMIT_TARGET]   = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 },
	[BG_OP_MIRROR_SOURCE]   = { 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1 },
	[BG_OP_MIRROR_TARGET]   = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 },
	[BG_OP_BACKUP_SOURCE]   = { 0, 0, 1, 0, 1, 0, 1, 1, 1, 1, 1 },
	[BG_OP_BACKUP_TARGET]   = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 },
	[BG_OP_RESIZE]          = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 },
	[BG_OP_EXTERNAL_SNAPSHOT] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 },
	[BG_OP_GRAPH_CHANGE]    = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 },
	[BG_OP_REMOVE]          = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 },
};

/* Two-letter column labels for bg_op_table_format(). */
static const char bg_op_abbrev[BG_OP_NR][3] = {
	"ST", "CS", "CT", "MS", "MT", "BS", "BT", "RS", "SN", "GC", "RM",
};

const char *bg_op_name(enum bg_op op)
{
	if ((unsigned int)op >= BG_OP_NR)
		return NULL;
	return bg_op_names[op];
}

int bg_op_parse(const char *name)
{
	int i;

	for (i = 0; i < BG_OP_NR; i++)
		if (!strcmp(name, bg_op_names[i]))
			return i;
	return -EINVAL;
}

bool bg_op_blocks(enum bg_op running, enum bg_op wanted)
{
	if ((unsigned int)running >= BG_OP_NR ||
	    (unsigned int)wanted >= BG_OP_NR)
		return true;
	return bg_op_table[running][wanted];
}

int bg_op_first_blocker(const u8 *held, unsigned int n, enum bg_op wanted)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		if (bg_op_blocks(held[i], wanted))
			return i;
	return -1;
}

int bg_op_table_format(char *buf, size_t size)
{
	int len = 0, r, w;

	len = bg_emit(buf, size, len, "%-18s", "# running \\ wanted");
	for (w = 0; w < BG_OP_NR; w++)
		len = bg_emit(buf, size, len, " %s", bg_op_abbrev[w]);
	len = bg_emit(buf, size, len, "\n");
	for (r = 0; r < BG_OP_NR; r++) {
		len = bg_emit(buf, size, len, "%-18s", bg_op_names[r]);
		for (w = 0; w < BG_OP_NR; w++)
			len = bg_emit(buf, size, len, "  %c",
				      bg_op_table[r][w] ? 'x' : '.');
		len = bg_emit(buf, size, len, "\n");
	}
	return len;
}

static bool bg_block_space(char c)
{
	return c == ' ' || c == '\t';
}

int bg_block_parse(char *line, struct bg_block_req *req, const char **error)
{
	unsigned int i, j, nwords = 0;
	size_t len = strlen(line);
	char *c, *word;
	int op;

	if (len && line[len - 1] == '\n')
		line[--len] = '\0';
	for (c = line; *c; c++) {
		if (((unsigned char)*c < 0x20 && *c != '\t') || *c == 0x7f) {
			*error = "Control character in the line";
			return -EINVAL;
		}
	}
	req->n = 0;
	c = line;
	for (;;) {
		while (bg_block_space(*c))
			c++;
		if (!*c)
			break;
		word = c;
		while (*c && !bg_block_space(*c))
			c++;
		if (*c)
			*c++ = '\0';
		if (!nwords++) {
			op = bg_op_parse(word);
			if (op < 0) {
				*error = "Unknown op: see op_blockers";
				return -EINVAL;
			}
			req->op = op;
			continue;
		}
		if (req->n == BG_BLOCK_MAX_NODES) {
			*error = "Too many nodes in one line";
			return -EINVAL;
		}
		if (strlen(word) > BG_BLOCK_NAME_MAX) {
			*error = "Node name too long";
			return -EINVAL;
		}
		req->names[req->n++] = word;
	}
	if (!nwords) {
		*error = "Empty line: <op> <node> [<node>...] expected";
		return -EINVAL;
	}
	if (!req->n) {
		*error = "No node: <op> <node> [<node>...] expected";
		return -EINVAL;
	}
	for (j = 1; j < req->n; j++)
		for (i = 0; i < j; i++)
			if (!strcmp(req->names[i], req->names[j])) {
				*error = "A node is named twice";
				return -EINVAL;
			}
	return 0;
}
