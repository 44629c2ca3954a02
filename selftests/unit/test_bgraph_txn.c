// SPDX-License-Identifier: GPL-2.0
/*
 * Host unit tests of bgraph's transaction parser, tools/bgraph/txn.c: QMP
 * transaction JSON of blockdev-snapshot-sync actions into the snapshots
 * to take at one instant, and every bad input refused with a node and a
 * one-line reason.
 */
#include "kselftest_harness.h"
#include "txn.h"

static int parse(struct bg_txn *t, const char *json, struct bg_err *err)
{
	memset(err, 0, sizeof(*err));
	return bg_txn_parse(t, json, strlen(json), "txn.json", err);
}

#define SNAP(node, file) \
	"{\"type\": \"blockdev-snapshot-sync\", \"data\": {\"node-name\": \"" node \
	"\", \"snapshot-file\": \"" file "\"}}"

TEST(two_snapshots_in_order_with_their_names_and_files)
{
	struct bg_txn t;
	struct bg_err err;

	ASSERT_EQ(0, parse(&t, "{\"actions\": [" SNAP("n0", "/s/o0.qcow2") ","
			   "{\"type\": \"blockdev-snapshot-sync\", \"data\": "
			   "{\"node-name\": \"q#children.1\", \"snapshot-file\": \"/s/o1.qcow2\","
			   " \"snapshot-node-name\": \"o1\", \"format\": \"qcow2\","
			   " \"mode\": \"absolute-paths\"}}]}", &err));
	ASSERT_EQ(2, t.n);
	EXPECT_STREQ("n0", t.snap[0].node);
	EXPECT_STREQ("/s/o0.qcow2", t.snap[0].file);
	EXPECT_STREQ("", t.snap[0].name);
	EXPECT_STREQ("q#children.1", t.snap[1].node);
	EXPECT_STREQ("/s/o1.qcow2", t.snap[1].file);
	EXPECT_STREQ("o1", t.snap[1].name);
}

TEST(device_names_the_node_as_qmp_allows)
{
	struct bg_txn t;
	struct bg_err err;

	ASSERT_EQ(0, parse(&t, "{\"actions\": [{\"type\": \"blockdev-snapshot-sync\","
			   " \"data\": {\"device\": \"vm0\", \"snapshot-file\": \"/o\"}}]}", &err));
	EXPECT_STREQ("vm0", t.snap[0].node);
}

static const struct {
	const char *json, *node, *msg;
} bad[] = {
	{ "{\"actions\": [", "txn.json", "malformed JSON: unexpected end of input" },
	{ "{\"actions\": []} x", "txn.json", "malformed JSON at byte 16" },
	{ "[]", "txn.json", "the JSON must be an object with 'actions'" },
	{ "{\"actions\": {}}", "txn.json", "'actions' must be an array" },
	{ "{}", "txn.json", "'actions' must be an array" },
	{ "{\"actions\": []}", "txn.json", "no actions" },
	{ "{\"actions\": [], \"properties\": {}}", "txn.json",
	  "transaction: unknown member 'properties'" },
	{ "{\"actions\": [1]}", "actions[0]", "an action must be an object" },
	{ "{\"actions\": [{\"data\": {}}]}", "actions[0]", "missing 'type'" },
	{ "{\"actions\": [{\"type\": \"drive-backup\", \"data\": {}}]}", "actions[0]",
	  "action type 'drive-backup' is not supported" },
	{ "{\"actions\": [{\"type\": \"blockdev-snapshot-sync\"}]}", "actions[0]",
	  "missing 'data'" },
	{ "{\"actions\": [{\"type\": \"blockdev-snapshot-sync\", \"data\": {}, \"x\": 1}]}",
	  "actions[0]", "action: unknown member 'x'" },
	{ "{\"actions\": [{\"type\": \"blockdev-snapshot-sync\", \"data\": []}]}",
	  "actions[0]", "'data' must be an object" },
	{ "{\"actions\": [{\"type\": \"blockdev-snapshot-sync\", \"data\": "
	  "{\"snapshot-file\": \"/o\"}}]}", "actions[0]", "missing 'node-name'" },
	{ "{\"actions\": [{\"type\": \"blockdev-snapshot-sync\", \"data\": "
	  "{\"node-name\": \"n\", \"device\": \"n\", \"snapshot-file\": \"/o\"}}]}",
	  "actions[0]", "give node-name or device, not both" },
	{ "{\"actions\": [{\"type\": \"blockdev-snapshot-sync\", \"data\": "
	  "{\"node-name\": 7, \"snapshot-file\": \"/o\"}}]}", "actions[0]",
	  "'node-name' must be a string" },
	{ "{\"actions\": [{\"type\": \"blockdev-snapshot-sync\", \"data\": "
	  "{\"node-name\": \"n\"}}]}", "n", "missing 'snapshot-file'" },
	{ "{\"actions\": [{\"type\": \"blockdev-snapshot-sync\", \"data\": "
	  "{\"node-name\": \"n\", \"snapshot-file\": \"\"}}]}", "n", "'snapshot-file' is empty" },
	{ "{\"actions\": [{\"type\": \"blockdev-snapshot-sync\", \"data\": "
	  "{\"node-name\": \"n\", \"snapshot-file\": \"/o\", \"format\": \"raw\"}}]}",
	  "n", "format raw: only qcow2 overlays" },
	{ "{\"actions\": [{\"type\": \"blockdev-snapshot-sync\", \"data\": "
	  "{\"node-name\": \"n\", \"snapshot-file\": \"/o\", \"mode\": \"existing\"}}]}",
	  "n", "mode existing: only absolute-paths" },
	{ "{\"actions\": [{\"type\": \"blockdev-snapshot-sync\", \"data\": "
	  "{\"node-name\": \"n\", \"snapshot-file\": \"/o\", \"snapshot-node-name\": \"9x\"}}]}",
	  "n", "invalid snapshot-node-name '9x'" },
	{ "{\"actions\": [{\"type\": \"blockdev-snapshot-sync\", \"data\": "
	  "{\"node-name\": \"n\", \"snapshot-file\": \"/o\", \"size\": 1}}]}",
	  "actions[0]", "blockdev-snapshot-sync: unknown member 'size'" },
	{ "{\"actions\": [" SNAP("n", "/a") "," SNAP("n", "/b") "]}", "n",
	  "two actions on one node" },
	{ "{\"actions\": [" SNAP("n", "/a") "," SNAP("m", "/a") "]}", "m",
	  "snapshot-file /a is n's too" },
	{ "{\"actions\": [{\"type\": \"blockdev-snapshot-sync\", \"data\": {\"node-name\": \"n\","
	  " \"snapshot-file\": \"/a\", \"snapshot-node-name\": \"s\"}}, {\"type\": "
	  "\"blockdev-snapshot-sync\", \"data\": {\"node-name\": \"m\", \"snapshot-file\": \"/b\","
	  " \"snapshot-node-name\": \"s\"}}]}", "m", "snapshot-node-name s is n's too" },
};

TEST(bad_transactions_are_refused_with_their_node_and_reason)
{
	struct bg_txn t;
	struct bg_err err;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		EXPECT_EQ(-1, parse(&t, bad[i].json, &err)) TH_LOG("accepted: %s", bad[i].json);
		EXPECT_STREQ(bad[i].node, err.node) TH_LOG("%s", bad[i].json);
		EXPECT_TRUE(strstr(err.msg, bad[i].msg) != NULL)
			TH_LOG("%s: got '%s', want '%s'", bad[i].json, err.msg, bad[i].msg);
		EXPECT_TRUE(strchr(err.msg, '\n') == NULL);
	}
}

TEST(more_than_sixteen_actions_are_refused)
{
	char json[8192];
	struct bg_txn t;
	struct bg_err err;
	int i, len;

	len = snprintf(json, sizeof(json), "{\"actions\": [");
	for (i = 0; i < BG_TXN_MAX + 1; i++)
		len += snprintf(json + len, sizeof(json) - len,
				"%s{\"type\": \"blockdev-snapshot-sync\", \"data\": "
				"{\"node-name\": \"n%d\", \"snapshot-file\": \"/o%d\"}}",
				i ? "," : "", i, i);
	snprintf(json + len, sizeof(json) - len, "]}");
	ASSERT_EQ(-1, parse(&t, json, &err));
	EXPECT_STREQ("17 actions: at most 16", err.msg);
	/* Sixteen are taken. */
	len = snprintf(json, sizeof(json), "{\"actions\": [");
	for (i = 0; i < BG_TXN_MAX; i++)
		len += snprintf(json + len, sizeof(json) - len,
				"%s{\"type\": \"blockdev-snapshot-sync\", \"data\": "
				"{\"node-name\": \"n%d\", \"snapshot-file\": \"/o%d\"}}",
				i ? "," : "", i, i);
	snprintf(json + len, sizeof(json) - len, "]}");
	ASSERT_EQ(0, parse(&t, json, &err));
	EXPECT_EQ(BG_TXN_MAX, t.n);
}

TEST_HARNESS_MAIN
