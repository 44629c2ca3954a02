// SPDX-License-Identifier: GPL-2.0
/*
 * bgraph's pure part: QMP transaction JSON -> the snapshots to take at
 * one instant.  See txn.h; the system part is bg_transaction() in
 * change.c.
 */
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "txn.h"

#define fail bg_fail

/* Every member of @o is one of @keys (NULL-terminated); else fail. */
static int only_keys(struct json_object *o, const char *const *keys,
		     const char *what, const char *node, struct bg_err *err)
{
	unsigned int i;

	json_object_object_foreach(o, key, val) {
		(void)val;
		for (i = 0; keys[i]; i++)
			if (!strcmp(key, keys[i]))
				break;
		if (!keys[i])
			return fail(err, node, "%s: unknown member '%s'", what, key);
	}
	return 0;
}

/* @o's string member @key into @buf (@size): 1 if absent, -1 if bad. */
static int get_str(struct json_object *o, const char *key, char *buf,
		   size_t size, const char *node, struct bg_err *err)
{
	struct json_object *v;
	const char *s;

	if (!json_object_object_get_ex(o, key, &v))
		return 1;
	if (!json_object_is_type(v, json_type_string))
		return fail(err, node, "'%s' must be a string", key);
	s = json_object_get_string(v);
	if (!*s)
		return fail(err, node, "'%s' is empty", key);
	if (strlen(s) >= size)
		return fail(err, node, "'%s' is longer than %zu bytes", key, size - 1);
	snprintf(buf, size, "%s", s);
	return 0;
}

static int parse_snap(struct bg_txn_snap *s, struct json_object *data,
		      unsigned int i, struct bg_err *err)
{
	static const char *const keys[] = { "node-name", "device", "snapshot-file",
		"snapshot-node-name", "format", "mode", NULL };
	char where[32], dev[BG_NAME_MAX + 1], fmt[16], mode[32];
	int a, b;

	snprintf(where, sizeof(where), "actions[%u]", i);
	if (!json_object_is_type(data, json_type_object))
		return fail(err, where, "'data' must be an object");
	if (only_keys(data, keys, "blockdev-snapshot-sync", where, err))
		return -1;
	a = get_str(data, "node-name", s->node, sizeof(s->node), where, err);
	b = get_str(data, "device", dev, sizeof(dev), where, err);
	if (a < 0 || b < 0)
		return -1;
	if (!a && !b)
		return fail(err, where, "give node-name or device, not both");
	if (a && b)
		return fail(err, where, "missing 'node-name' (or 'device')");
	if (!b)
		snprintf(s->node, sizeof(s->node), "%s", dev);
	a = get_str(data, "snapshot-file", s->file, sizeof(s->file), s->node, err);
	if (a < 0)
		return -1;
	if (a)
		return fail(err, s->node, "missing 'snapshot-file'");
	a = get_str(data, "snapshot-node-name", s->name, sizeof(s->name), s->node, err);
	if (a < 0)
		return -1;
	if (!a && !bg_name_valid(s->name, BG_USER_NAME_MAX))
		return fail(err, s->node, "invalid snapshot-node-name '%s': a letter, then letters, digits, '-', '.' or '_'",
			    s->name);
	a = get_str(data, "format", fmt, sizeof(fmt), s->node, err);
	if (a < 0)
		return -1;
	if (!a && strcmp(fmt, "qcow2"))
		return fail(err, s->node, "format %s: only qcow2 overlays", fmt);
	a = get_str(data, "mode", mode, sizeof(mode), s->node, err);
	if (a < 0)
		return -1;
	if (!a && strcmp(mode, "absolute-paths"))
		return fail(err, s->node, "mode %s: only absolute-paths (bgraph creates the overlay)",
			    mode);
	return 0;
}

int bg_txn_parse(struct bg_txn *t, const char *text, size_t len,
		 const char *source, struct bg_err *err)
{
	static const char *const root_keys[] = { "actions", NULL };
	static const char *const action_keys[] = { "type", "data", NULL };
	struct json_object *root, *actions, *v;
	unsigned int i, k, n;
	int r = -1;

	memset(t, 0, sizeof(*t));
	root = bg_json_parse(text, len, source, err);
	if (!root)
		return -1;
	if (!json_object_is_type(root, json_type_object)) {
		fail(err, source, "the JSON must be an object with 'actions'");
		goto out;
	}
	if (only_keys(root, root_keys, "transaction", source, err))
		goto out;
	if (!json_object_object_get_ex(root, "actions", &actions) ||
	    !json_object_is_type(actions, json_type_array)) {
		fail(err, source, "'actions' must be an array");
		goto out;
	}
	n = json_object_array_length(actions);
	if (!n) {
		fail(err, source, "no actions");
		goto out;
	}
	if (n > BG_TXN_MAX) {
		fail(err, source, "%u actions: at most %d", n, BG_TXN_MAX);
		goto out;
	}
	for (i = 0; i < n; i++) {
		struct json_object *act = json_object_array_get_idx(actions, i);
		char where[32];
		const char *type;

		snprintf(where, sizeof(where), "actions[%u]", i);
		if (!json_object_is_type(act, json_type_object)) {
			fail(err, where, "an action must be an object");
			goto out;
		}
		if (only_keys(act, action_keys, "action", where, err))
			goto out;
		if (!json_object_object_get_ex(act, "type", &v) ||
		    !json_object_is_type(v, json_type_string)) {
			fail(err, where, "missing 'type'");
			goto out;
		}
		type = json_object_get_string(v);
		if (strcmp(type, "blockdev-snapshot-sync")) {
			fail(err, where, "action type '%s' is not supported (blockdev-snapshot-sync)",
			     type);
			goto out;
		}
		if (!json_object_object_get_ex(act, "data", &v)) {
			fail(err, where, "missing 'data'");
			goto out;
		}
		if (parse_snap(&t->snap[i], v, i, err))
			goto out;
		for (k = 0; k < i; k++) {
			const struct bg_txn_snap *a = &t->snap[k], *b = &t->snap[i];

			if (!strcmp(a->node, b->node)) {
				fail(err, b->node, "two actions on one node");
				goto out;
			}
			if (!strcmp(a->file, b->file)) {
				fail(err, b->node, "snapshot-file %s is %s's too", b->file, a->node);
				goto out;
			}
			if (b->name[0] && !strcmp(a->name, b->name)) {
				fail(err, b->node, "snapshot-node-name %s is %s's too", b->name, a->node);
				goto out;
			}
		}
		t->n++;
	}
	r = 0;
out:
	json_object_put(root);
	return r;
}
