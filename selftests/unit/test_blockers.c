// SPDX-License-Identifier: GPL-2.0
/* Host unit tests of dm-bgraph/blockers.c: the op-blocker table. */
#include "kselftest_harness.h"
#include "blockers.h"

static const enum bg_op jobs[] = {
	BG_OP_STREAM, BG_OP_COMMIT_SOURCE, BG_OP_COMMIT_TARGET,
	BG_OP_MIRROR_SOURCE, BG_OP_MIRROR_TARGET, BG_OP_BACKUP_SOURCE,
	BG_OP_BACKUP_TARGET,
};

/* Ops that leave a node's guest-visible content unchanged. */
static bool content_preserving(enum bg_op op)
{
	return op == BG_OP_STREAM || op == BG_OP_COMMIT_SOURCE ||
	       op == BG_OP_MIRROR_SOURCE || op == BG_OP_BACKUP_SOURCE;
}

TEST(every_op_has_a_unique_name_that_parses_back)
{
	int i, j;

	for (i = 0; i < BG_OP_NR; i++) {
		ASSERT_NE(NULL, bg_op_name(i));
		EXPECT_EQ(i, bg_op_parse(bg_op_name(i)));
		for (j = 0; j < i; j++)
			EXPECT_STRNE(bg_op_name(i), bg_op_name(j));
	}
	EXPECT_EQ(NULL, bg_op_name(BG_OP_NR));
	EXPECT_EQ(-EINVAL, bg_op_parse("nonsense"));
	EXPECT_EQ(-EINVAL, bg_op_parse(""));
}

TEST(a_job_blocks_a_second_job_of_its_kind)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(jobs); i++) {
		if (jobs[i] == BG_OP_BACKUP_SOURCE)
			continue;
		EXPECT_TRUE(bg_op_blocks(jobs[i], jobs[i])) {
			TH_LOG("%s does not block itself", bg_op_name(jobs[i]));
		}
	}
}

TEST(several_backups_may_read_one_source)
{
	EXPECT_FALSE(bg_op_blocks(BG_OP_BACKUP_SOURCE, BG_OP_BACKUP_SOURCE));
}

TEST(backup_source_coexists_exactly_with_content_preserving_ops)
{
	int op;

	for (op = 0; op < BG_OP_NR; op++) {
		bool want = !content_preserving(op);

		EXPECT_EQ(want, bg_op_blocks(BG_OP_BACKUP_SOURCE, op)) {
			TH_LOG("backup-source vs %s", bg_op_name(op));
		}
		EXPECT_EQ(want, bg_op_blocks(op, BG_OP_BACKUP_SOURCE)) {
			TH_LOG("%s vs backup-source", bg_op_name(op));
		}
	}
}

TEST(targets_block_everything)
{
	static const enum bg_op targets[] = {
		BG_OP_COMMIT_TARGET, BG_OP_MIRROR_TARGET, BG_OP_BACKUP_TARGET,
	};
	unsigned int i;
	int op;

	for (i = 0; i < ARRAY_SIZE(targets); i++)
		for (op = 0; op < BG_OP_NR; op++)
			EXPECT_TRUE(bg_op_blocks(targets[i], op));
}

TEST(short_ops_are_exclusive)
{
	static const enum bg_op shorts[] = {
		BG_OP_RESIZE, BG_OP_EXTERNAL_SNAPSHOT, BG_OP_GRAPH_CHANGE,
		BG_OP_REMOVE,
	};
	unsigned int i;
	int op;

	for (i = 0; i < ARRAY_SIZE(shorts); i++)
		for (op = 0; op < BG_OP_NR; op++) {
			EXPECT_TRUE(bg_op_blocks(shorts[i], op));
			EXPECT_TRUE(bg_op_blocks(op, shorts[i]));
		}
}

TEST(no_job_allows_resize_graph_change_or_remove)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(jobs); i++) {
		EXPECT_TRUE(bg_op_blocks(jobs[i], BG_OP_RESIZE));
		EXPECT_TRUE(bg_op_blocks(jobs[i], BG_OP_GRAPH_CHANGE));
		EXPECT_TRUE(bg_op_blocks(jobs[i], BG_OP_REMOVE));
	}
}

TEST(out_of_range_ops_are_blocked)
{
	EXPECT_TRUE(bg_op_blocks(BG_OP_NR, BG_OP_STREAM));
	EXPECT_TRUE(bg_op_blocks(BG_OP_BACKUP_SOURCE, BG_OP_NR));
	EXPECT_TRUE(bg_op_blocks((enum bg_op)-1, BG_OP_STREAM));
}

TEST(first_blocker_scans_the_held_set)
{
	u8 held[] = { BG_OP_BACKUP_SOURCE, BG_OP_BACKUP_SOURCE,
		      BG_OP_MIRROR_SOURCE };

	EXPECT_EQ(-1, bg_op_first_blocker(held, 0, BG_OP_STREAM));
	EXPECT_EQ(-1, bg_op_first_blocker(held, 2, BG_OP_BACKUP_SOURCE));
	EXPECT_EQ(2, bg_op_first_blocker(held, 3, BG_OP_MIRROR_SOURCE));
	EXPECT_EQ(0, bg_op_first_blocker(held, 3, BG_OP_RESIZE));
}

TEST(table_text_has_a_row_per_op)
{
	char buf[4096];
	int i, n = bg_op_table_format(buf, sizeof(buf));
	char *line;

	ASSERT_LT(n, (int)sizeof(buf));
	EXPECT_EQ(n, (int)strlen(buf));
	for (i = 0; i < BG_OP_NR; i++) {
		char key[40];

		snprintf(key, sizeof(key), "\n%s ", bg_op_name(i));
		EXPECT_NE(NULL, strstr(buf, key)) {
			TH_LOG("no row for %s", bg_op_name(i));
		}
	}
	/* backup-source row: '.' under ST (first column). */
	line = strstr(buf, "\nbackup-source ");
	ASSERT_NE(NULL, line);
	EXPECT_EQ('.', line[1 + 18 + 2]);
	line = strstr(buf, "\nstream ");
	ASSERT_NE(NULL, line);
	EXPECT_EQ('x', line[1 + 18 + 2]);
}

TEST(table_text_sizes_with_null_buffer)
{
	char buf[4096];

	EXPECT_EQ(bg_op_table_format(buf, sizeof(buf)),
		  bg_op_table_format(NULL, 0));
}

/* bg_block_parse() on a copy of @text. */
static int parse(const char *text, struct bg_block_req *req, char *buf,
		 size_t size, const char **error)
{
	snprintf(buf, size, "%s", text);
	*error = NULL;
	return bg_block_parse(buf, req, error);
}

TEST(block_line_names_an_op_and_its_nodes)
{
	struct bg_block_req req;
	const char *error;
	char buf[256];

	ASSERT_EQ(0, parse("graph-change disk0 vm0\n", &req, buf, sizeof(buf),
			   &error));
	EXPECT_EQ(BG_OP_GRAPH_CHANGE, req.op);
	ASSERT_EQ(2, req.n);
	EXPECT_STREQ("disk0", req.names[0]);
	EXPECT_STREQ("vm0", req.names[1]);

	ASSERT_EQ(0, parse("  remove\tdisk0  ", &req, buf, sizeof(buf), &error));
	EXPECT_EQ(BG_OP_REMOVE, req.op);
	ASSERT_EQ(1, req.n);
	EXPECT_STREQ("disk0", req.names[0]);
}

TEST(block_line_refuses_bad_syntax_with_a_reason)
{
	static const char *const bad[] = {
		"", "\n", "   ", "graph-change", "graph-change\n",
		"nonsense disk0", "Graph-change disk0", "graph-change a b a",
		"graph-change a\nb", "graph-change a\n\n", "graph-change a\rb",
		"graph-change a\x7f",
	};
	struct bg_block_req req;
	const char *error;
	char buf[256];
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		EXPECT_EQ(-EINVAL, parse(bad[i], &req, buf, sizeof(buf), &error)) {
			TH_LOG("accepted: '%s'", bad[i]);
		}
		EXPECT_NE(NULL, error);
	}
}

TEST(block_line_bounds_names_and_their_number)
{
	char line[BG_BLOCK_MAX_NODES * 8 + 64], name[BG_BLOCK_NAME_MAX + 2];
	struct bg_block_req req;
	const char *error;
	int i, len;

	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	snprintf(line, sizeof(line), "remove %s", name);
	EXPECT_EQ(-EINVAL, bg_block_parse(line, &req, &error));
	name[BG_BLOCK_NAME_MAX] = '\0';
	snprintf(line, sizeof(line), "remove %s", name);
	EXPECT_EQ(0, bg_block_parse(line, &req, &error));

	len = snprintf(line, sizeof(line), "resize");
	for (i = 0; i < BG_BLOCK_MAX_NODES; i++)
		len += snprintf(line + len, sizeof(line) - len, " n%d", i);
	ASSERT_EQ(0, bg_block_parse(line, &req, &error));
	EXPECT_EQ(BG_BLOCK_MAX_NODES, req.n);
	len = snprintf(line, sizeof(line), "resize");
	for (i = 0; i <= BG_BLOCK_MAX_NODES; i++)
		len += snprintf(line + len, sizeof(line) - len, " n%d", i);
	EXPECT_EQ(-EINVAL, bg_block_parse(line, &req, &error));
}

TEST_HARNESS_MAIN
