// SPDX-License-Identifier: GPL-2.0
/*
 * Host unit tests of bgraph's pure part, tools/bgraph/plan.c: QMP
 * blockdev-add JSON to the ordered list of nodes and their dm tables,
 * generated names, option inheritance, references, backing chains from
 * image headers, sizes, and every kind of bad input refused with a node
 * and a one-line reason.  The running system is a fake struct bg_env.
 */
#include "kselftest_harness.h"
#include "plan.h"

/* The fake system: these nodes exist. */
static struct {
	const char *name, *dev, *file;
	uint64_t bytes;
	bool ro;
} existing[] = {
	{ "disk0", "253:9", "/img/disk0.img", 1 << 20, false },
	{ "ro0", "253:10", NULL, 1 << 20, true },
	{ "loop7", "7:7", NULL, 2 << 20, false },
};

static bool fake_used(void *arg, const char *name)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(existing); i++)
		if (!strcmp(existing[i].name, name))
			return true;
	return !strcmp(name, "taken");	/* a foreign dm device */
}

static bool fake_lookup(void *arg, struct bg_node *n)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(existing); i++) {
		if (strcmp(existing[i].name, n->name))
			continue;
		snprintf(n->dev, sizeof(n->dev), "%s", existing[i].dev);
		n->bytes = existing[i].bytes;
		n->read_only = existing[i].ro;
		n->filename = existing[i].file ? strdup(existing[i].file) : NULL;
		return true;
	}
	return false;
}

static const struct bg_env env = {
	.name_used = fake_used,
	.lookup = fake_lookup,
};

static int parse(struct bg_plan *p, const char *json, struct bg_err *err)
{
	memset(err, 0, sizeof(*err));
	return bg_plan_parse(p, json, strlen(json), "tree.json", &env, err);
}

/* The order as "a b c". */
static const char *order(const struct bg_plan *p)
{
	static char buf[2048];
	unsigned int i;
	int len = 0;

	buf[0] = '\0';
	for (i = 0; i < p->norder; i++)
		len += snprintf(buf + len, sizeof(buf) - len, "%s%s", i ? " " : "",
				p->order[i]->name);
	return buf;
}

static struct bg_node *node(const struct bg_plan *p, const char *name)
{
	unsigned int i;

	for (i = 0; i < p->nall; i++)
		if (!strcmp(p->all[i]->name, name))
			return p->all[i];
	return NULL;
}

/* Give every node to create a fake device number, in order. */
static void fake_devs(struct bg_plan *p)
{
	unsigned int i;

	for (i = 0; i < p->norder; i++)
		snprintf(p->order[i]->dev, sizeof(p->order[i]->dev), "253:%u", i);
}

static const char *params(const struct bg_node *n)
{
	static char buf[1024];

	bg_node_params(n, buf, sizeof(buf));
	return buf;
}

/* ---- good trees ---------------------------------------------------- */

TEST(qcow2_over_file_with_id_children_first)
{
	struct bg_plan p;
	struct bg_err err;
	struct bg_node *top, *f;
	char buf[64];

	ASSERT_EQ(0, parse(&p, "{\"driver\": \"qcow2\", \"node-name\": \"disk\", \"id\": \"vm0\","
			   " \"l2-cache-size\": 1048576,"
			   " \"file\": {\"driver\": \"file\", \"filename\": \"/img/a.qcow2\"}}", &err));
	EXPECT_STREQ("disk#file disk", order(&p));
	EXPECT_STREQ("vm0", p.id);
	top = node(&p, "disk");
	f = node(&p, "disk#file");
	ASSERT_NE(NULL, f);
	EXPECT_EQ(top, p.top);
	EXPECT_FALSE(top->implicit);
	EXPECT_TRUE(f->implicit);
	EXPECT_EQ(BG_BACKING_HEADER, top->backing);
	EXPECT_FALSE(top->read_only);
	EXPECT_FALSE(f->read_only);
	EXPECT_EQ(BG_DISCARD_UNMAP, f->discard);
	EXPECT_STREQ("/img/a.qcow2", bg_node_image_name(top));
	fake_devs(&p);
	snprintf(f->leaf_dev, sizeof(f->leaf_dev), "7:3");
	EXPECT_STREQ("bgraph-raw", bg_node_target(f));
	EXPECT_STREQ("7:3", params(f));
	EXPECT_STREQ("bgraph-qcow2", bg_node_target(top));
	EXPECT_STREQ("253:0 2 l2_cache_size 1048576", params(top));
	bg_id_params(top, buf, sizeof(buf));
	EXPECT_STREQ("253:1", buf);
	bg_plan_free(&p);
}

TEST(explicit_backing_chain_gets_short_generated_names)
{
	struct bg_plan p;
	struct bg_err err;

	ASSERT_EQ(0, parse(&p, "{\"driver\": \"qcow2\", \"node-name\": \"top\","
			   " \"file\": {\"driver\": \"file\", \"filename\": \"/i/c\"},"
			   " \"backing\": {\"driver\": \"qcow2\","
			   "   \"file\": {\"driver\": \"file\", \"filename\": \"/i/b\"},"
			   "   \"backing\": {\"driver\": \"qcow2\", \"backing\": null,"
			   "     \"file\": {\"driver\": \"file\", \"filename\": \"/i/a\"}}}}", &err));
	EXPECT_STREQ("top#file top#backing#file top#backing2#file top#backing2 top#backing top",
		     order(&p));
	EXPECT_EQ(BG_BACKING_NONE, node(&p, "top#backing2")->backing);
	fake_devs(&p);
	/* top#backing is order[4], top#backing2 order[3], its file order[2]. */
	EXPECT_STREQ("253:1 2 backing 253:3", params(node(&p, "top#backing")));
	EXPECT_STREQ("253:2", params(node(&p, "top#backing2")));
	bg_plan_free(&p);
}

TEST(read_only_inherits_to_file_and_backing_defaults_to_read_only)
{
	struct bg_plan p;
	struct bg_err err;

	/* A writable top: file writable, backing read-only, its file too. */
	ASSERT_EQ(0, parse(&p, "{\"driver\": \"qcow2\", \"node-name\": \"top\","
			   " \"file\": {\"driver\": \"file\", \"filename\": \"/i/c\"},"
			   " \"backing\": {\"driver\": \"qcow2\", \"node-name\": \"base\", \"backing\": null,"
			   "   \"file\": {\"driver\": \"file\", \"filename\": \"/i/b\"}}}", &err));
	EXPECT_FALSE(node(&p, "top#file")->read_only);
	EXPECT_TRUE(node(&p, "base")->read_only);
	EXPECT_TRUE(node(&p, "base#file")->read_only);
	bg_plan_free(&p);

	/* A read-only top: everything below read-only. */
	ASSERT_EQ(0, parse(&p, "{\"driver\": \"raw\", \"node-name\": \"top\", \"read-only\": true,"
			   " \"file\": {\"driver\": \"raw\", \"offset\": 512,"
			   "   \"file\": {\"driver\": \"host_device\", \"filename\": \"/dev/vdb\"}}}", &err));
	EXPECT_TRUE(node(&p, "top#file")->read_only);
	EXPECT_TRUE(node(&p, "top#file#file")->read_only);
	bg_plan_free(&p);

	/* A child's own setting wins: a writable backing, explicitly. */
	ASSERT_EQ(0, parse(&p, "{\"driver\": \"qcow2\", \"node-name\": \"top\","
			   " \"file\": {\"driver\": \"file\", \"filename\": \"/i/c\"},"
			   " \"backing\": {\"driver\": \"qcow2\", \"read-only\": false, \"backing\": null,"
			   "   \"file\": {\"driver\": \"file\", \"filename\": \"/i/b\"}}}", &err));
	EXPECT_FALSE(node(&p, "top#backing")->read_only);
	EXPECT_FALSE(node(&p, "top#backing#file")->read_only);
	EXPECT_FALSE(node(&p, "top#backing")->read_only_set == false);
	bg_plan_free(&p);
}

TEST(discard_and_detect_zeroes_inherit_unless_set)
{
	struct bg_plan p;
	struct bg_err err;
	char t[256];

	/* detect-zeroes is inherited by implicit children, not references. */
	ASSERT_EQ(0, parse(&p, "{\"driver\": \"quorum\", \"node-name\": \"q\", \"vote-threshold\": 1,"
			    " \"detect-zeroes\": \"unmap\", \"discard\": \"unmap\","
			    " \"children\": ["
			    "   {\"driver\": \"raw\", \"detect-zeroes\": \"off\","
			    "    \"file\": {\"driver\": \"file\", \"filename\": \"/i/a\"}},"
			    "   {\"driver\": \"raw\", \"file\": {\"driver\": \"file\", \"filename\": \"/i/b\"}},"
			    "   \"disk0\"]}", &err));
	EXPECT_EQ(BG_DZ_UNMAP, node(&p, "q")->detect_zeroes);
	EXPECT_EQ(BG_DZ_OFF, node(&p, "q#children.0")->detect_zeroes);
	EXPECT_EQ(BG_DZ_OFF, node(&p, "q#children.0#file")->detect_zeroes);
	EXPECT_EQ(BG_DZ_UNMAP, node(&p, "q#children.1")->detect_zeroes);
	EXPECT_EQ(BG_DZ_UNMAP, node(&p, "q#children.1#file")->detect_zeroes);
	/* A reference inherits nothing. */
	EXPECT_EQ(BG_DZ_OFF, node(&p, "disk0")->detect_zeroes);
	EXPECT_FALSE(node(&p, "disk0")->discard_set);
	bg_plan_free(&p);

	/* discard=ignore, inherited down, written into the tables. */
	ASSERT_EQ(0, parse(&p, "{\"driver\": \"qcow2\", \"node-name\": \"r\", \"discard\": \"ignore\","
			   " \"detect-zeroes\": \"on\","
			   " \"file\": {\"driver\": \"raw\", \"file\": \"disk0\"}, \"backing\": null}", &err));
	EXPECT_EQ(BG_DISCARD_IGNORE, node(&p, "r#file")->discard);
	EXPECT_EQ(BG_DZ_ON, node(&p, "r#file")->detect_zeroes);
	bg_node_params(node(&p, "r"), t, sizeof(t));
	EXPECT_NE(NULL, strstr(t, " 4 discard ignore detect_zeroes on"));
	bg_node_params(node(&p, "r#file"), t, sizeof(t));
	EXPECT_NE(NULL, strstr(t, " 4 discard ignore detect_zeroes on"));
	bg_plan_free(&p);

	/* Explicit values the kernel has are accepted. */
	ASSERT_EQ(0, parse(&p, "{\"driver\": \"raw\", \"node-name\": \"r\", \"discard\": \"unmap\","
			   " \"detect-zeroes\": \"off\","
			   " \"file\": {\"driver\": \"file\", \"filename\": \"/i/a\"}}", &err));
	EXPECT_EQ(BG_DISCARD_UNMAP, node(&p, "r#file")->discard);
	bg_plan_free(&p);
}

/*
 * reopen: options set on a node follow to the implicit children that
 * inherit from it and do not set them, recursively; a backing child stays
 * read-only when its parent goes read-write; a reference inherits nothing.
 */
TEST(reopen_passes_options_to_implicit_children_that_inherit)
{
	struct bg_plan p;
	struct bg_err err;
	struct bg_node *top;

	ASSERT_EQ(0, parse(&p, "{\"driver\": \"quorum\", \"node-name\": \"q\", \"vote-threshold\": 1,"
			    " \"children\": ["
			    "   {\"driver\": \"qcow2\", \"detect-zeroes\": \"off\","
			    "    \"file\": {\"driver\": \"file\", \"filename\": \"/i/a\"},"
			    "    \"backing\": {\"driver\": \"raw\","
			    "      \"file\": {\"driver\": \"file\", \"filename\": \"/i/base\"}}},"
			    "   {\"driver\": \"raw\", \"read-only\": false,"
			    "    \"file\": {\"driver\": \"file\", \"filename\": \"/i/b\"}},"
			    "   \"disk0\"]}", &err));
	top = node(&p, "q");
	/* reopen q read-only=on detect-zeroes=on discard=unmap */
	top->read_only = top->read_only_set = true;
	top->detect_zeroes = BG_DZ_ON;
	top->detect_zeroes_set = true;
	bg_reopen_inherit(top);
	EXPECT_TRUE(node(&p, "q#children.0")->read_only);
	EXPECT_TRUE(node(&p, "q#children.0#file")->read_only);
	EXPECT_TRUE(node(&p, "q#children.0#backing#file")->read_only);
	/* Its own detect-zeroes stays, and its children inherit from it. */
	EXPECT_EQ(BG_DZ_OFF, node(&p, "q#children.0")->detect_zeroes);
	EXPECT_EQ(BG_DZ_OFF, node(&p, "q#children.0#file")->detect_zeroes);
	/* read-only set on children.1 itself: it stays, and so its file. */
	EXPECT_FALSE(node(&p, "q#children.1")->read_only);
	EXPECT_FALSE(node(&p, "q#children.1#file")->read_only);
	EXPECT_EQ(BG_DZ_ON, node(&p, "q#children.1")->detect_zeroes);
	EXPECT_EQ(BG_DZ_ON, node(&p, "q#children.1#file")->detect_zeroes);
	/* A reference inherits nothing. */
	EXPECT_FALSE(node(&p, "disk0")->read_only);
	EXPECT_EQ(BG_DZ_OFF, node(&p, "disk0")->detect_zeroes);

	/* And back: read-write again, but a backing child stays read-only. */
	top->read_only = false;
	bg_reopen_inherit(top);
	EXPECT_FALSE(node(&p, "q#children.0")->read_only);
	EXPECT_FALSE(node(&p, "q#children.0#file")->read_only);
	EXPECT_TRUE(node(&p, "q#children.0#backing")->read_only);
	EXPECT_TRUE(node(&p, "q#children.0#backing#file")->read_only);

	/* A child that is implicit but another node's making: untouched. */
	node(&p, "q#children.1#file")->parent = node(&p, "q#children.0");
	top->discard = BG_DISCARD_IGNORE;
	bg_reopen_inherit(top);
	EXPECT_EQ(BG_DISCARD_IGNORE, node(&p, "q#children.1")->discard);
	EXPECT_EQ(BG_DISCARD_UNMAP, node(&p, "q#children.1#file")->discard);

	/* detect-zeroes unmap needs discard unmap, on each node. */
	top->detect_zeroes = BG_DZ_UNMAP;
	EXPECT_EQ(-1, bg_io_opts_check(top, &err));
	EXPECT_STREQ("q", err.node);
	top->discard = BG_DISCARD_UNMAP;
	EXPECT_EQ(0, bg_io_opts_check(top, &err));
	bg_plan_free(&p);
}

TEST(references_to_existing_and_in_tree_nodes_order_children_first)
{
	struct bg_plan p;
	struct bg_err err;
	struct bg_node *q;

	ASSERT_EQ(0, parse(&p, "{\"driver\": \"quorum\", \"node-name\": \"q\", \"vote-threshold\": 2,"
			   " \"rewrite-corrupted\": true,"
			   " \"children\": ["
			   "   {\"driver\": \"throttle\", \"throttle-group\": \"g1\", \"file\": \"b\"},"
			   "   {\"driver\": \"raw\", \"node-name\": \"b\","
			   "    \"file\": {\"driver\": \"file\", \"filename\": \"/i/b\"}},"
			   "   \"disk0\"]}", &err));
	EXPECT_STREQ("b#file b q#children.0 q", order(&p));
	q = node(&p, "q");
	EXPECT_EQ(BG_REF, node(&p, "disk0")->driver);
	fake_devs(&p);
	EXPECT_STREQ("2 3 253:2 253:1 253:9 1 rewrite-corrupted", params(q));
	EXPECT_STREQ("253:1 g1", params(node(&p, "q#children.0")));
	bg_plan_free(&p);
}

TEST(quorum_options_in_the_table_order_the_kernel_prints)
{
	struct bg_plan p;
	struct bg_err err;

	ASSERT_EQ(0, parse(&p, "{\"driver\": \"quorum\", \"node-name\": \"q\", \"vote-threshold\": 1,"
			   " \"read-pattern\": \"fifo\", \"children\": [\"disk0\", \"loop7\"]}", &err));
	EXPECT_STREQ("q", order(&p));
	EXPECT_STREQ("1 2 253:9 7:7 2 read-pattern fifo", params(p.top));
	bg_plan_free(&p);
	ASSERT_EQ(0, parse(&p, "{\"driver\": \"quorum\", \"node-name\": \"q\", \"vote-threshold\": 2,"
			   " \"blkverify\": true, \"children\": [\"disk0\", \"loop7\"]}", &err));
	EXPECT_STREQ("2 2 253:9 7:7 1 blkverify", params(p.top));
	bg_plan_free(&p);
}

TEST(sizes_of_raw_windows_throttle_and_quorum)
{
	struct bg_plan p;
	struct bg_err err;
	struct bg_node *r, *f;

	ASSERT_EQ(0, parse(&p, "{\"driver\": \"raw\", \"node-name\": \"r\", \"offset\": 4096,"
			   " \"size\": 8192, \"file\": {\"driver\": \"file\", \"filename\": \"/i/a\"}}", &err));
	r = p.top;
	f = node(&p, "r#file");
	f->bytes = 65536;
	EXPECT_EQ(0, bg_node_size(r, &err));
	EXPECT_EQ(8192, r->bytes);
	fake_devs(&p);
	EXPECT_STREQ("253:0 4 offset 4096 size 8192", params(r));
	f->bytes = 8192;
	EXPECT_EQ(-1, bg_node_size(r, &err));
	EXPECT_NE(NULL, strstr(err.msg, "offset + size is past the end"));
	f->bytes = 4096;
	EXPECT_EQ(-1, bg_node_size(r, &err));
	EXPECT_NE(NULL, strstr(err.msg, "at or past the end"));
	bg_plan_free(&p);

	/* Quorum children must agree: disk0 has 1 MiB, loop7 2 MiB. */
	ASSERT_EQ(0, parse(&p, "{\"driver\": \"quorum\", \"node-name\": \"q\", \"vote-threshold\": 1,"
			   " \"children\": [\"disk0\", \"loop7\"]}", &err));
	EXPECT_EQ(-1, bg_node_size(p.top, &err));
	EXPECT_STREQ("q", err.node);
	EXPECT_NE(NULL, strstr(err.msg, "children differ in size"));
	bg_plan_free(&p);
}

TEST(backing_chain_from_headers_relative_to_the_overlay)
{
	struct bg_plan p;
	struct bg_err err;
	struct bg_node *b, *b2;

	ASSERT_EQ(0, parse(&p, "{\"driver\": \"qcow2\", \"node-name\": \"top\", \"id\": \"vm\","
			   " \"file\": {\"driver\": \"file\", \"filename\": \"/i/c.qcow2\"}}", &err));
	EXPECT_EQ(0, bg_plan_add_backing(&p, p.top, "b.qcow2", "qcow2", &err));
	EXPECT_STREQ("top#file top#backing#file top#backing top", order(&p));
	b = node(&p, "top#backing");
	EXPECT_TRUE(b->from_header);
	EXPECT_TRUE(b->read_only);
	EXPECT_TRUE(node(&p, "top#backing#file")->read_only);
	EXPECT_STREQ("/i/b.qcow2", node(&p, "top#backing#file")->filename);
	EXPECT_EQ(BG_BACKING_NODE, p.top->backing);
	EXPECT_EQ(b, bg_node_child(p.top, "backing"));
	/* Its own header names a raw base, absolute. */
	EXPECT_EQ(0, bg_plan_add_backing(&p, b, "/base/a.raw", "raw", &err));
	EXPECT_STREQ("top#file top#backing#file top#backing2#file top#backing2 top#backing top",
		     order(&p));
	b2 = node(&p, "top#backing2");
	EXPECT_EQ(BG_RAW, b2->driver);
	EXPECT_STREQ("/base/a.raw", bg_node_image_name(b2));
	/* A chain that comes back to an image above is refused. */
	EXPECT_EQ(-1, bg_plan_add_backing(&p, b2, "/i/c.qcow2", "qcow2", &err));
	EXPECT_STREQ("top#backing2", err.node);
	EXPECT_NE(NULL, strstr(err.msg, "already in the chain"));
	bg_plan_free(&p);
}

TEST(backing_from_header_refusals)
{
	struct bg_plan p;
	struct bg_err err;

	ASSERT_EQ(0, parse(&p, "{\"driver\": \"qcow2\", \"node-name\": \"top\","
			   " \"file\": {\"driver\": \"file\", \"filename\": \"/i/c\"}}", &err));
	/* Never probe: no format in the header, no backing. */
	EXPECT_EQ(-1, bg_plan_add_backing(&p, p.top, "b", "", &err));
	EXPECT_NE(NULL, strstr(err.msg, "without its format"));
	EXPECT_EQ(-1, bg_plan_add_backing(&p, p.top, "b", "vmdk", &err));
	EXPECT_NE(NULL, strstr(err.msg, "'vmdk' is not supported"));
	EXPECT_EQ(-1, bg_plan_add_backing(&p, p.top, "json:{}", "qcow2", &err));
	EXPECT_EQ(-1, bg_plan_add_backing(&p, p.top, "/i/c", "qcow2", &err));
	EXPECT_NE(NULL, strstr(err.msg, "already in the chain"));
	EXPECT_STREQ("top#file top", order(&p));
	bg_plan_free(&p);

	/* A relative name over a node whose file name is not known. */
	ASSERT_EQ(0, parse(&p, "{\"driver\": \"qcow2\", \"node-name\": \"top\", \"file\": \"ro0\","
			   " \"read-only\": true}", &err));
	EXPECT_EQ(-1, bg_plan_add_backing(&p, p.top, "b", "qcow2", &err));
	EXPECT_NE(NULL, strstr(err.msg, "relative backing file name"));
	/* ... and an absolute one is fine. */
	EXPECT_EQ(0, bg_plan_add_backing(&p, p.top, "/i/b", "qcow2", &err));
	bg_plan_free(&p);
}

/* ---- bad input ----------------------------------------------------- */

struct bad {
	const char *json, *node, *msg;
};

static const struct bad bad_inputs[] = {
	/* malformed JSON */
	{ "{\"driver\": \"raw\"", "tree.json", "malformed JSON" },
	{ "{\"driver\": \"raw\",}", "tree.json", "malformed JSON" },
	{ "{} {}", "tree.json", "malformed JSON" },
	{ "{\"node-name\": \"a\", \"driver\": \"raw\", \"file\": \"disk0\"} x", "tree.json", "malformed JSON" },
	{ "", "tree.json", "malformed JSON" },
	{ "[1]", "tree.json", "must be an object" },
	{ "\"x\"", "tree.json", "must be an object" },
	/* driver */
	{ "{\"node-name\": \"a\"}", "a", "option 'driver' is required" },
	{ "{\"node-name\": \"a\", \"driver\": \"vmdk\"}", "a", "unknown driver 'vmdk'" },
	{ "{\"node-name\": \"a\", \"driver\": 5}", "a", "'driver' must be a string" },
	{ "{\"node-name\": \"a\", \"driver\": \"raw\", \"file\": {\"driver\": \"nbd\"}}",
	  "a#file", "unknown driver 'nbd'" },
	/* unknown options */
	{ "{\"node-name\": \"a\", \"driver\": \"file\", \"filename\": \"/x\", \"aio\": \"native\"}",
	  "a", "unknown option 'aio' for driver file" },
	{ "{\"node-name\": \"a\", \"driver\": \"raw\", \"file\": {\"driver\": \"file\","
	  " \"filename\": \"/x\", \"id\": \"b\"}}", "a#file", "unknown option 'id'" },
	{ "{\"node-name\": \"a\", \"driver\": \"qcow2\", \"offset\": 0, \"file\": \"disk0\"}",
	  "a", "unknown option 'offset' for driver qcow2" },
	/* missing required options */
	{ "{\"node-name\": \"a\", \"driver\": \"file\"}", "a", "needs option 'filename'" },
	{ "{\"node-name\": \"a\", \"driver\": \"raw\"}", "a", "needs option 'file'" },
	{ "{\"node-name\": \"a\", \"driver\": \"throttle\", \"file\": \"disk0\"}",
	  "a", "needs option 'throttle-group'" },
	{ "{\"node-name\": \"a\", \"driver\": \"quorum\", \"children\": [\"disk0\"]}",
	  "a", "needs option 'vote-threshold'" },
	{ "{\"driver\": \"raw\", \"file\": \"disk0\"}", "tree.json", "node-name is required" },
	/* types and values */
	{ "{\"node-name\": \"a\", \"driver\": \"raw\", \"file\": \"disk0\", \"read-only\": \"yes\"}",
	  "a", "'read-only' must be true or false" },
	{ "{\"node-name\": \"a\", \"driver\": \"raw\", \"file\": \"disk0\", \"offset\": -512}",
	  "a", "'offset' out of range" },
	{ "{\"node-name\": \"a\", \"driver\": \"raw\", \"file\": \"disk0\", \"offset\": 100}",
	  "a", "multiple of 512" },
	{ "{\"node-name\": \"a\", \"driver\": \"raw\", \"file\": \"disk0\", \"size\": 1.5}",
	  "a", "'size' must be an integer" },
	{ "{\"node-name\": \"a\", \"driver\": \"raw\", \"file\": 7}", "a", "must be an object or a node-name" },
	{ "{\"node-name\": \"a\", \"driver\": \"raw\", \"file\": \"disk0\", \"discard\": \"on\"}",
	  "a", "invalid discard 'on'" },
	{ "{\"node-name\": \"a\", \"driver\": \"qcow2\", \"file\": \"disk0\", \"l2-cache-size\": 0}",
	  "a", "l2-cache-size must be 1 to 1G" },
	{ "{\"node-name\": \"a\", \"driver\": \"throttle\", \"file\": \"disk0\", \"throttle-group\": \"9x\"}",
	  "a", "invalid throttle-group name" },
	{ "{\"node-name\": \"a\", \"driver\": \"quorum\", \"vote-threshold\": 1, \"children\": []}",
	  "a", "1 to 16 children" },
	{ "{\"node-name\": \"a\", \"driver\": \"quorum\", \"vote-threshold\": 3, \"children\": [\"disk0\", \"loop7\"]}",
	  "a", "cannot be lower than the vote threshold" },
	{ "{\"node-name\": \"a\", \"driver\": \"quorum\", \"vote-threshold\": 1, \"blkverify\": true,"
	  " \"children\": [\"disk0\", \"loop7\"]}", "a", "blkverify=on can only be set" },
	{ "{\"node-name\": \"a\", \"driver\": \"quorum\", \"vote-threshold\": 1, \"read-pattern\": \"fifo\","
	  " \"rewrite-corrupted\": true, \"children\": [\"disk0\"]}", "a", "needs read-pattern quorum" },
	{ "{\"node-name\": \"a\", \"driver\": \"quorum\", \"vote-threshold\": 1, \"read-only\": true,"
	  " \"rewrite-corrupted\": true, \"children\": [\"ro0\"]}", "a", "rewrite-corrupted needs a writable node" },
	/* names */
	{ "{\"node-name\": \"9a\", \"driver\": \"raw\", \"file\": \"disk0\"}", "9a", "invalid node-name" },
	{ "{\"node-name\": \"a#b\", \"driver\": \"raw\", \"file\": \"disk0\"}", "a#b", "invalid node-name" },
	{ "{\"node-name\": \"a\", \"id\": \"x/y\", \"driver\": \"raw\", \"file\": \"disk0\"}", "x/y", "invalid id" },
	{ "{\"node-name\": \"a\", \"driver\": \"raw\", \"file\": {\"node-name\": \"a\","
	  " \"driver\": \"file\", \"filename\": \"/x\"}}", "a", "used twice in the tree" },
	{ "{\"node-name\": \"disk0\", \"driver\": \"raw\", \"file\": \"loop7\"}", "disk0", "exists" },
	{ "{\"node-name\": \"a\", \"driver\": \"raw\", \"file\": {\"node-name\": \"taken\","
	  " \"driver\": \"file\", \"filename\": \"/x\"}}", "taken", "exists" },
	{ "{\"node-name\": \"a\", \"id\": \"a\", \"driver\": \"raw\", \"file\": \"disk0\"}", "a", "the id is also a node-name" },
	{ "{\"node-name\": \"a\", \"id\": \"taken\", \"driver\": \"raw\", \"file\": \"disk0\"}", "taken", "exists" },
	/* references and cycles */
	{ "{\"node-name\": \"a\", \"driver\": \"raw\", \"file\": \"nothing\"}", "a", "reference to 'nothing': no such node" },
	{ "{\"node-name\": \"a\", \"driver\": \"quorum\", \"vote-threshold\": 1, \"children\": [\"disk0\", \"\"]}",
	  "a", "empty reference" },
	{ "{\"node-name\": \"a\", \"driver\": \"raw\", \"file\": {\"node-name\": \"b\","
	  " \"driver\": \"raw\", \"file\": \"a\"}}", "a", "cycle" },
	{ "{\"node-name\": \"a\", \"driver\": \"raw\", \"file\": {\"driver\": \"raw\","
	  " \"file\": {\"driver\": \"raw\", \"file\": \"a#file\"}}}", "a#file", "cycle" },
	/* a writable node over a read-only one */
	{ "{\"node-name\": \"a\", \"driver\": \"raw\", \"file\": \"ro0\"}", "a", "'ro0' is read-only" },
	{ "{\"node-name\": \"a\", \"driver\": \"raw\", \"file\": {\"driver\": \"file\","
	  " \"filename\": \"/x\", \"read-only\": true}}", "a", "'a#file' is read-only" },
	/* QEMU's rule: detect-zeroes=unmap needs discard=unmap */
	{ "{\"node-name\": \"a\", \"driver\": \"raw\", \"file\": \"disk0\", \"detect-zeroes\": \"unmap\","
	  " \"discard\": \"ignore\"}",
	  "a", "setting detect-zeroes to unmap is not allowed without setting discard operation to unmap" },
};

TEST(every_bad_input_is_refused_with_its_node_and_one_line)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(bad_inputs); i++) {
		const struct bad *b = &bad_inputs[i];
		struct bg_plan p;
		struct bg_err err;
		int r = parse(&p, b->json, &err);

		EXPECT_EQ(-1, r) TH_LOG("accepted: %s", b->json);
		if (b->node)
			EXPECT_STREQ(b->node, err.node) TH_LOG("for: %s", b->json);
		EXPECT_NE(NULL, strstr(err.msg, b->msg))
			TH_LOG("for %s: got '%s', want '%s'", b->json, err.msg, b->msg);
		EXPECT_EQ(NULL, strchr(err.msg, '\n'));
		bg_plan_free(&p);
	}
}

TEST(trailing_white_space_is_fine)
{
	struct bg_plan p;
	struct bg_err err;

	EXPECT_EQ(0, parse(&p, "{\"node-name\": \"a\", \"driver\": \"raw\", \"file\": \"disk0\"}\n\n", &err));
	bg_plan_free(&p);
}

TEST(a_generated_name_past_dms_limit_is_refused)
{
	char json[4096];
	struct bg_plan p;
	struct bg_err err;
	int len, i;

	/* 31 + 20 * strlen("#file") > 127 */
	len = snprintf(json, sizeof(json), "{\"node-name\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\", \"driver\": \"raw\", \"file\": ");
	for (i = 0; i < 20; i++)
		len += snprintf(json + len, sizeof(json) - len, "{\"driver\": \"raw\", \"file\": ");
	len += snprintf(json + len, sizeof(json) - len, "\"disk0\"");
	for (i = 0; i < 21; i++)
		len += snprintf(json + len, sizeof(json) - len, "}");
	EXPECT_EQ(-1, parse(&p, json, &err));
	EXPECT_NE(NULL, strstr(err.msg, "give the child a node-name")) TH_LOG("got %s", err.msg);
	bg_plan_free(&p);
}

TEST(names_follow_qemus_id_rule)
{
	EXPECT_TRUE(bg_name_valid("a", 31));
	EXPECT_TRUE(bg_name_valid("disk-0.x_y", 31));
	EXPECT_FALSE(bg_name_valid("", 31));
	EXPECT_FALSE(bg_name_valid("0a", 31));
	EXPECT_FALSE(bg_name_valid("a b", 31));
	EXPECT_FALSE(bg_name_valid("a/b", 31));
	EXPECT_FALSE(bg_name_valid("#block1", 31));
	EXPECT_FALSE(bg_name_valid("abcdefghijabcdefghijabcdefghijab", 31));
	EXPECT_TRUE(bg_name_valid("abcdefghijabcdefghijabcdefghija", 31));
}

TEST_HARNESS_MAIN
