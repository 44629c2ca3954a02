// SPDX-License-Identifier: GPL-2.0
/* Host unit tests of dm-bgraph/perm.c: per-edge permissions. */
#include "kselftest_harness.h"
#include "perm.h"

static struct bg_perm_acc fold(const struct bg_perm_pair *p, int n)
{
	struct bg_perm_acc acc = { 0, 0 };
	int i;

	for (i = 0; i < n; i++)
		bg_perm_acc_add(&acc, p[i]);
	return acc;
}

TEST(backing_takes_read_only_and_shares_no_write)
{
	struct bg_perm_pair p = bg_role_perms(BG_ROLE_BACKING, true);

	EXPECT_EQ(BG_PERM_CONSISTENT_READ, p.perm);
	EXPECT_EQ(0, p.shared & BG_PERM_WRITE);
	EXPECT_EQ(0, p.shared & BG_PERM_RESIZE);
	EXPECT_NE(0, p.shared & BG_PERM_WRITE_UNCHANGED);
}

TEST(writable_file_edge_takes_write)
{
	struct bg_perm_pair rw = bg_role_perms(BG_ROLE_FILE, true);
	struct bg_perm_pair ro = bg_role_perms(BG_ROLE_FILE, false);

	EXPECT_NE(0, rw.perm & BG_PERM_WRITE);
	EXPECT_EQ(0, ro.perm & BG_PERM_WRITE);
	EXPECT_NE(0, ro.perm & BG_PERM_CONSISTENT_READ);
}

TEST(two_passthrough_writers_coexist)
{
	struct bg_perm_pair a = bg_role_perms(BG_ROLE_FILE, true);
	struct bg_perm_acc acc = fold(&a, 1);

	EXPECT_EQ(0, bg_perm_conflict(&acc, bg_role_perms(BG_ROLE_FILE, true)));
	EXPECT_FALSE(bg_perm_read_only(&acc));
}

TEST(writer_refused_under_backing_edge)
{
	struct bg_perm_pair b = bg_role_perms(BG_ROLE_BACKING, true);
	struct bg_perm_acc acc = fold(&b, 1);

	EXPECT_EQ(BG_PERM_WRITE,
		  bg_perm_conflict(&acc, bg_role_perms(BG_ROLE_FILE, true)));
	/* A read-only parent may join a backing edge. */
	EXPECT_EQ(0, bg_perm_conflict(&acc,
				      bg_role_perms(BG_ROLE_FILE, false)));
}

TEST(backing_refused_under_writer)
{
	struct bg_perm_pair w = bg_role_perms(BG_ROLE_FILE, true);
	struct bg_perm_acc acc = fold(&w, 1);

	EXPECT_EQ(BG_PERM_WRITE,
		  bg_perm_conflict(&acc, bg_role_perms(BG_ROLE_BACKING, true)));
}

TEST(two_backing_edges_share_a_base)
{
	struct bg_perm_pair b = bg_role_perms(BG_ROLE_BACKING, true);
	struct bg_perm_acc acc = fold(&b, 1);

	EXPECT_EQ(0, bg_perm_conflict(&acc, b));
	bg_perm_acc_add(&acc, b);
	EXPECT_TRUE(bg_perm_read_only(&acc));
}

TEST(read_only_needs_an_unshared_write_and_no_writer)
{
	struct bg_perm_pair e[2] = {
		bg_role_perms(BG_ROLE_FILE, false),
		bg_role_perms(BG_ROLE_BACKING, false),
	};
	struct bg_perm_acc acc;

	acc = fold(e, 0);
	EXPECT_FALSE(bg_perm_read_only(&acc));
	acc = fold(e, 1);
	EXPECT_FALSE(bg_perm_read_only(&acc));
	acc = fold(e, 2);
	EXPECT_TRUE(bg_perm_read_only(&acc));
	/* An edge that writes itself (a qcow2 file child) is not read-only. */
	acc = fold(e, 0);
	bg_perm_acc_add(&acc, (struct bg_perm_pair){
		BG_PERM_CONSISTENT_READ | BG_PERM_WRITE,
		BG_PERM_CONSISTENT_READ });
	EXPECT_FALSE(bg_perm_read_only(&acc));
}

TEST(conflict_reports_resize_both_ways)
{
	struct bg_perm_pair resizer = { BG_PERM_RESIZE, BG_PERM_ALL };
	struct bg_perm_pair file = bg_role_perms(BG_ROLE_FILE, false);
	struct bg_perm_acc acc = fold(&file, 1);

	EXPECT_EQ(BG_PERM_RESIZE, bg_perm_conflict(&acc, resizer));
	acc = fold(&resizer, 1);
	EXPECT_EQ(BG_PERM_RESIZE, bg_perm_conflict(&acc, file));
}

TEST(perm_format)
{
	char buf[80];

	EXPECT_EQ(1, bg_perm_format(buf, sizeof(buf), 0));
	EXPECT_STREQ("-", buf);
	bg_perm_format(buf, sizeof(buf),
		       BG_PERM_CONSISTENT_READ | BG_PERM_WRITE_UNCHANGED);
	EXPECT_STREQ("consistent-read,write-unchanged", buf);
	bg_perm_format(buf, sizeof(buf), BG_PERM_ALL);
	EXPECT_STREQ("consistent-read,write,write-unchanged,resize", buf);
}

TEST(perm_format_truncates_safely)
{
	char buf[8];
	int n = bg_perm_format(buf, sizeof(buf), BG_PERM_ALL);

	EXPECT_EQ(strlen("consistent-read,write,write-unchanged,resize"), n);
	EXPECT_EQ(7, strlen(buf));
}

TEST(role_format)
{
	char buf[32];

	bg_role_format(buf, sizeof(buf), BG_ROLE_FILE, 0);
	EXPECT_STREQ("file", buf);
	bg_role_format(buf, sizeof(buf), BG_ROLE_BACKING, 0);
	EXPECT_STREQ("backing", buf);
	bg_role_format(buf, sizeof(buf), BG_ROLE_CHILD, 12);
	EXPECT_STREQ("children.12", buf);
	bg_role_format(buf, sizeof(buf), BG_ROLE_NR, 0);
	EXPECT_STREQ("?", buf);
}

TEST_HARNESS_MAIN
