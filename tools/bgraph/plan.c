// SPDX-License-Identifier: GPL-2.0
/*
 * bgraph's pure part: QMP blockdev-add JSON -> nodes and their dm tables.
 * See plan.h for the contract and Documentation/bgraph-cli.rst for the
 * schema, the generated names and the inheritance rules.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "plan.h"
#include "../../targets/qcow2-format.h"

#define QCOW2_MAX_L2_CACHE_ARG	BIT_ULL(30)	/* bgraph-qcow2's limit */

/* ---------------------------------------------------------------- */
/* Helpers                                                          */
/* ---------------------------------------------------------------- */

int bg_fail(struct bg_err *err, const char *node, const char *fmt, ...)
{
	va_list ap;

	snprintf(err->node, sizeof(err->node), "%s", node ? node : "-");
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return -1;
}

#define fail bg_fail

struct json_object *bg_json_parse(const char *text, size_t len,
				  const char *source, struct bg_err *err)
{
	struct json_tokener *tok;
	struct json_object *root;
	enum json_tokener_error je;
	size_t end;

	tok = json_tokener_new();
	if (!tok) {
		fail(err, source, "out of memory");
		return NULL;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	root = json_tokener_parse_ex(tok, text, len);
	je = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (!root || je != json_tokener_success) {
		json_object_put(root);
		if (je == json_tokener_continue)
			fail(err, source, "malformed JSON: unexpected end of input");
		else
			fail(err, source, "malformed JSON at byte %zu: %s", end,
			     json_tokener_error_desc(je));
		return NULL;
	}
	for (; end < len; end++) {
		if (!strchr(" \t\r\n", text[end])) {
			fail(err, source, "malformed JSON: text after the object at byte %zu", end);
			json_object_put(root);
			return NULL;
		}
	}
	return root;
}

static const char *const driver_names[] = {
	[BG_FILE]		= "file",
	[BG_HOST_DEVICE]	= "host_device",
	[BG_RAW]		= "raw",
	[BG_QCOW2]		= "qcow2",
	[BG_THROTTLE]		= "throttle",
	[BG_QUORUM]		= "quorum",
	[BG_REF]		= "reference",
};

const char *bg_driver_name(enum bg_driver d)
{
	return driver_names[d];
}

static int driver_of(const char *s)
{
	unsigned int i;

	for (i = 0; i < BG_REF; i++)
		if (!strcmp(s, driver_names[i]))
			return i;
	return -1;
}

bool bg_name_valid(const char *s, size_t max)
{
	size_t i, n = strlen(s);

	if (!n || n > max)
		return false;
	if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
		return false;
	for (i = 1; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'))
			return false;
	}
	return true;
}

static struct bg_node *new_node(struct bg_plan *p)
{
	struct bg_node *n, **all;

	all = realloc(p->all, (p->nall + 1) * sizeof(*all));
	if (!all)
		return NULL;
	p->all = all;
	n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	p->all[p->nall++] = n;
	return n;
}

static struct bg_edge *add_edge(struct bg_node *n, const char *role)
{
	struct bg_edge *e;

	e = realloc(n->edges, (n->nedges + 1) * sizeof(*e));
	if (!e)
		return NULL;
	n->edges = e;
	e = &n->edges[n->nedges++];
	memset(e, 0, sizeof(*e));
	snprintf(e->role, sizeof(e->role), "%s", role);
	return e;
}

struct bg_node *bg_node_child(const struct bg_node *n, const char *role)
{
	unsigned int i;

	for (i = 0; i < n->nedges; i++)
		if (!strcmp(n->edges[i].role, role))
			return n->edges[i].child;
	return NULL;
}

static struct bg_node *find_node(const struct bg_plan *p, const char *name,
				 bool refs)
{
	unsigned int i;

	for (i = 0; i < p->nall; i++)
		if ((refs || p->all[i]->driver != BG_REF) &&
		    !strcmp(p->all[i]->name, name))
			return p->all[i];
	return NULL;
}

/*
 * The generated name of @parent's child of @role: "<parent>#<role>"; a
 * backing child of "x#backing" or "x#backingN" is "x#backing2" or
 * "x#backing<N+1>", so that a long chain keeps short names.  '#' is not
 * allowed in node-names, so a generated name never takes a user's.
 */
static int gen_name(char *out, const char *parent, const char *role,
		    struct bg_err *err)
{
	const char *h = strrchr(parent, '#');
	int len;

	if (!strcmp(role, "backing") && h && !strncmp(h, "#backing", 8)) {
		const char *d = h + 8;
		unsigned long k = 1;

		if (*d) {
			char *end;

			k = strtoul(d, &end, 10);
			if (*end)
				k = 0;
		}
		if (k) {
			len = snprintf(out, BG_NAME_MAX + 1, "%.*s#backing%lu",
				       (int)(h - parent), parent, k + 1);
			goto check;
		}
	}
	len = snprintf(out, BG_NAME_MAX + 1, "%s#%s", parent, role);
check:
	if (len > BG_NAME_MAX)
		return fail(err, parent, "the generated name of its %s child is longer than %d characters: give the child a node-name",
			    role, BG_NAME_MAX);
	return 0;
}

/* ---------------------------------------------------------------- */
/* JSON -> nodes                                                    */
/* ---------------------------------------------------------------- */

struct parse {
	const char *source;
	struct bg_plan *p;
	const struct bg_env *env;
	struct bg_err *err;
};

static int parse_node(struct parse *ps, struct json_object *o,
		      struct bg_node *parent, const char *role,
		      bool top, struct bg_node **out);

static const char *json_type_word(struct json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_null:	return "null";
	case json_type_boolean:	return "a boolean";
	case json_type_double:	return "a number";
	case json_type_int:	return "an integer";
	case json_type_object:	return "an object";
	case json_type_array:	return "an array";
	case json_type_string:	return "a string";
	}
	return "?";
}

static int want(struct parse *ps, struct bg_node *n, const char *key,
		struct json_object *v, enum json_type t, const char *what)
{
	if (json_object_get_type(v) == t)
		return 0;
	return fail(ps->err, n->name, "option '%s' must be %s, not %s",
		    key, what, json_type_word(v));
}

static int get_u64(struct parse *ps, struct bg_node *n, const char *key,
		   struct json_object *v, uint64_t *out)
{
	int64_t x;

	if (want(ps, n, key, v, json_type_int, "an integer"))
		return -1;
	errno = 0;
	x = json_object_get_int64(v);
	if (x < 0 || errno == ERANGE)
		return fail(ps->err, n->name, "option '%s' out of range", key);
	*out = x;
	return 0;
}

static int get_bool(struct parse *ps, struct bg_node *n, const char *key,
		    struct json_object *v, bool *out)
{
	if (want(ps, n, key, v, json_type_boolean, "true or false"))
		return -1;
	*out = json_object_get_boolean(v);
	return 0;
}

/* @v is one of the words of @words (NULL-terminated); its index. */
static int get_enum(struct parse *ps, struct bg_node *n, const char *key,
		    struct json_object *v, const char *const *words, int *out)
{
	const char *s;
	int i;

	if (want(ps, n, key, v, json_type_string, "a string"))
		return -1;
	s = json_object_get_string(v);
	for (i = 0; words[i]; i++) {
		if (!strcmp(s, words[i])) {
			*out = i;
			return 0;
		}
	}
	return fail(ps->err, n->name, "invalid %s '%s'", key, s);
}

/*
 * A child given as @v for @role: an object (a new, implicit node), or a
 * string (a reference, resolved once the whole tree is read).
 */
static int parse_child(struct parse *ps, struct bg_node *n, const char *role,
		       struct json_object *v)
{
	struct bg_edge *e;
	struct bg_node *c;

	if (json_object_is_type(v, json_type_string)) {
		const char *s = json_object_get_string(v);

		if (!*s)
			return fail(ps->err, n->name, "empty reference for its %s child", role);
		e = add_edge(n, role);
		if (e)
			e->ref = strdup(s);
		if (!e || !e->ref)
			return fail(ps->err, n->name, "out of memory");
		return 0;
	}
	if (!json_object_is_type(v, json_type_object))
		return fail(ps->err, n->name, "option '%s' must be an object or a node-name, not %s",
			    role, json_type_word(v));
	if (parse_node(ps, v, n, role, false, &c))
		return -1;
	e = add_edge(n, role);
	if (!e)
		return fail(ps->err, n->name, "out of memory");
	e->child = c;
	return 0;
}

static const char *const discard_words[] = { "ignore", "unmap", NULL };
static const char *const dz_words[] = { "off", "on", "unmap", NULL };
static const char *const rp_words[] = { "quorum", "fifo", NULL };

/* One option @key of @n; @top says whether "id" is allowed. */
static int parse_option(struct parse *ps, struct bg_node *n, const char *key,
			struct json_object *v, bool top)
{
	int x;

	if (!strcmp(key, "driver") || !strcmp(key, "node-name"))
		return 0;
	if (top && !strcmp(key, "id")) {
		if (want(ps, n, key, v, json_type_string, "a string"))
			return -1;
		return 0;
	}
	if (!strcmp(key, "read-only")) {
		n->read_only_set = true;
		return get_bool(ps, n, key, v, &n->read_only);
	}
	if (!strcmp(key, "discard")) {
		if (get_enum(ps, n, key, v, discard_words, &x))
			return -1;
		n->discard = x;
		n->discard_set = true;
		return 0;
	}
	if (!strcmp(key, "detect-zeroes")) {
		if (get_enum(ps, n, key, v, dz_words, &x))
			return -1;
		n->detect_zeroes = x;
		n->detect_zeroes_set = true;
		return 0;
	}
	switch (n->driver) {
	case BG_FILE:
	case BG_HOST_DEVICE:
		if (!strcmp(key, "filename")) {
			if (want(ps, n, key, v, json_type_string, "a string"))
				return -1;
			if (!*json_object_get_string(v))
				return fail(ps->err, n->name, "option 'filename' is empty");
			n->filename = strdup(json_object_get_string(v));
			return n->filename ? 0 : fail(ps->err, n->name, "out of memory");
		}
		break;
	case BG_RAW:
		if (!strcmp(key, "file"))
			return parse_child(ps, n, "file", v);
		if (!strcmp(key, "offset")) {
			n->has_offset = true;
			if (get_u64(ps, n, key, v, &n->offset))
				return -1;
			if (n->offset % 512)
				return fail(ps->err, n->name, "offset must be a multiple of 512");
			return 0;
		}
		if (!strcmp(key, "size")) {
			n->has_size = true;
			if (get_u64(ps, n, key, v, &n->size))
				return -1;
			if (!n->size || n->size % 512)
				return fail(ps->err, n->name, "size must be a multiple of 512, not 0");
			return 0;
		}
		break;
	case BG_QCOW2:
		if (!strcmp(key, "file"))
			return parse_child(ps, n, "file", v);
		if (!strcmp(key, "backing")) {
			if (json_object_is_type(v, json_type_null)) {
				n->backing = BG_BACKING_NONE;
				return 0;
			}
			n->backing = BG_BACKING_NODE;
			return parse_child(ps, n, "backing", v);
		}
		if (!strcmp(key, "l2-cache-size")) {
			if (get_u64(ps, n, key, v, &n->l2_cache_size))
				return -1;
			if (!n->l2_cache_size || n->l2_cache_size > QCOW2_MAX_L2_CACHE_ARG)
				return fail(ps->err, n->name, "l2-cache-size must be 1 to 1G bytes");
			return 0;
		}
		break;
	case BG_THROTTLE:
		if (!strcmp(key, "file"))
			return parse_child(ps, n, "file", v);
		if (!strcmp(key, "throttle-group")) {
			if (want(ps, n, key, v, json_type_string, "a string"))
				return -1;
			if (!bg_name_valid(json_object_get_string(v), 63))
				return fail(ps->err, n->name, "invalid throttle-group name '%s'",
					    json_object_get_string(v));
			n->group = strdup(json_object_get_string(v));
			return n->group ? 0 : fail(ps->err, n->name, "out of memory");
		}
		break;
	case BG_QUORUM:
		if (!strcmp(key, "children")) {
			size_t i, len;

			if (want(ps, n, key, v, json_type_array, "an array"))
				return -1;
			len = json_object_array_length(v);
			if (len < 1 || len > BG_MAX_CHILDREN)
				return fail(ps->err, n->name, "quorum needs 1 to %d children",
					    BG_MAX_CHILDREN);
			for (i = 0; i < len; i++) {
				char role[16];

				snprintf(role, sizeof(role), "children.%zu", i);
				if (parse_child(ps, n, role, json_object_array_get_idx(v, i)))
					return -1;
			}
			return 0;
		}
		if (!strcmp(key, "vote-threshold")) {
			uint64_t t;

			if (get_u64(ps, n, key, v, &t))
				return -1;
			if (t < 1 || t > BG_MAX_CHILDREN)
				return fail(ps->err, n->name, "vote-threshold must be at least 1 and at most %d",
					    BG_MAX_CHILDREN);
			n->threshold = t;
			return 0;
		}
		if (!strcmp(key, "read-pattern")) {
			if (get_enum(ps, n, key, v, rp_words, &x))
				return -1;
			n->read_pattern = x;
			return 0;
		}
		if (!strcmp(key, "rewrite-corrupted"))
			return get_bool(ps, n, key, v, &n->rewrite_corrupted);
		if (!strcmp(key, "blkverify"))
			return get_bool(ps, n, key, v, &n->blkverify);
		break;
	case BG_REF:
		break;
	}
	return fail(ps->err, n->name, "unknown option '%s' for driver %s",
		    key, bg_driver_name(n->driver));
}

/* The options @n's driver cannot go without. */
static int check_required(struct parse *ps, struct bg_node *n,
			  struct json_object *o)
{
	static const char *const need[][3] = {
		[BG_FILE]	 = { "filename" },
		[BG_HOST_DEVICE] = { "filename" },
		[BG_RAW]	 = { "file" },
		[BG_QCOW2]	 = { "file" },
		[BG_THROTTLE]	 = { "file", "throttle-group" },
		[BG_QUORUM]	 = { "children", "vote-threshold" },
	};
	unsigned int i;

	for (i = 0; i < 3 && need[n->driver][i]; i++)
		if (!json_object_object_get_ex(o, need[n->driver][i], NULL))
			return fail(ps->err, n->name, "driver %s needs option '%s'",
				    bg_driver_name(n->driver), need[n->driver][i]);
	return 0;
}

static int parse_node(struct parse *ps, struct json_object *o,
		      struct bg_node *parent, const char *role,
		      bool top, struct bg_node **out)
{
	struct json_object *v;
	struct bg_node *n;
	const char *s;
	int d;

	n = new_node(ps->p);
	if (!n)
		return fail(ps->err, parent ? parent->name : NULL, "out of memory");
	*out = n;
	n->parent = parent;
	n->implicit = !top;
	if (json_object_object_get_ex(o, "node-name", &v)) {
		if (!json_object_is_type(v, json_type_string))
			return fail(ps->err, parent ? parent->name : NULL,
				    "option 'node-name' must be a string, not %s",
				    json_type_word(v));
		s = json_object_get_string(v);
		if (!bg_name_valid(s, BG_USER_NAME_MAX))
			return fail(ps->err, s, "invalid node-name: a letter, then letters, digits, '-', '.' or '_', at most %d characters",
				    BG_USER_NAME_MAX);
		snprintf(n->name, sizeof(n->name), "%s", s);
	} else if (top) {
		return fail(ps->err, ps->source, "node-name is required at the top level");
	} else if (gen_name(n->name, parent->name, role, ps->err)) {
		return -1;
	}
	if (!json_object_object_get_ex(o, "driver", &v))
		return fail(ps->err, n->name, "option 'driver' is required");
	if (!json_object_is_type(v, json_type_string))
		return fail(ps->err, n->name, "option 'driver' must be a string, not %s",
			    json_type_word(v));
	d = driver_of(json_object_get_string(v));
	if (d < 0)
		return fail(ps->err, n->name, "unknown driver '%s'",
			    json_object_get_string(v));
	n->driver = d;
	if (check_required(ps, n, o))
		return -1;
	json_object_object_foreach(o, key, val) {
		if (parse_option(ps, n, key, val, top))
			return -1;
	}
	if (n->driver == BG_QUORUM) {
		if (n->threshold > n->nedges)
			return fail(ps->err, n->name, "The number of children cannot be lower than the vote threshold");
		if (n->blkverify && (n->nedges != 2 || n->threshold != 2))
			return fail(ps->err, n->name, "blkverify=on can only be set if there are exactly two files and vote-threshold is 2");
		if (n->blkverify && n->rewrite_corrupted)
			return fail(ps->err, n->name, "rewrite-corrupted=on cannot be used with blkverify=on");
		if (n->read_pattern == BG_RP_FIFO && (n->blkverify || n->rewrite_corrupted))
			return fail(ps->err, n->name, "%s needs read-pattern quorum",
				    n->blkverify ? "blkverify" : "rewrite-corrupted");
	}
	return 0;
}

/* ---------------------------------------------------------------- */
/* The whole tree: references, inheritance, names, order            */
/* ---------------------------------------------------------------- */

/*
 * QEMU's inheritance (block.c, bdrv_inherited_options()), for an implicit
 * child @c of @parent by @role: what the child does not set it takes from
 * the parent, but a backing child is read-only unless it says otherwise.
 * discard and detect-zeroes follow the parent whatever the role.
 */
static void inherit(struct bg_node *c, const struct bg_node *parent,
		    const char *role)
{
	if (!c->read_only_set)
		c->read_only = strcmp(role, "backing") ? parent->read_only : true;
	if (!c->discard_set)
		c->discard = parent->discard;
	if (!c->detect_zeroes_set)
		c->detect_zeroes = parent->detect_zeroes;
}

/* Top-down from @n: every implicit child inherits from its maker. */
static void inherit_tree(struct bg_node *n)
{
	unsigned int i;

	for (i = 0; i < n->nedges; i++) {
		struct bg_node *c = n->edges[i].child;

		if (n->edges[i].ref || !c)
			continue;
		inherit(c, n, n->edges[i].role);
		inherit_tree(c);
	}
}

void bg_reopen_inherit(struct bg_node *n)
{
	unsigned int i;

	for (i = 0; i < n->nedges; i++) {
		struct bg_node *c = n->edges[i].child;

		if (n->edges[i].ref || !c || !c->implicit || c->parent != n)
			continue;
		inherit(c, n, n->edges[i].role);
		bg_reopen_inherit(c);
	}
}

static int resolve_refs(struct parse *ps)
{
	struct bg_plan *p = ps->p;
	unsigned int i, j, nall = p->nall;

	for (i = 0; i < nall; i++) {
		struct bg_node *n = p->all[i];

		for (j = 0; j < n->nedges; j++) {
			struct bg_edge *e = &n->edges[j];
			struct bg_node *r;

			if (!e->ref)
				continue;
			r = find_node(p, e->ref, true);
			if (!r) {
				r = new_node(p);
				if (!r)
					return fail(ps->err, n->name, "out of memory");
				r->driver = BG_REF;
				snprintf(r->name, sizeof(r->name), "%s", e->ref);
				if (strlen(e->ref) > BG_NAME_MAX ||
				    !ps->env->lookup(ps->env->arg, r))
					return fail(ps->err, n->name, "reference to '%s': no such node",
						    e->ref);
			}
			e->child = r;
		}
	}
	return 0;
}

static int check_names(struct parse *ps)
{
	struct bg_plan *p = ps->p;
	unsigned int i, j;

	for (i = 0; i < p->nall; i++) {
		struct bg_node *n = p->all[i];

		if (n->driver == BG_REF)
			continue;
		for (j = 0; j < i; j++)
			if (p->all[j]->driver != BG_REF &&
			    !strcmp(p->all[j]->name, n->name))
				return fail(ps->err, n->name, "node-name is used twice in the tree");
		if (p->id && !strcmp(p->id, n->name))
			return fail(ps->err, n->name, "the id is also a node-name");
		if (ps->env->name_used(ps->env->arg, n->name))
			return fail(ps->err, n->name, "a node or device of this name exists");
	}
	if (p->id && ps->env->name_used(ps->env->arg, p->id))
		return fail(ps->err, p->id, "a node or device of this name exists");
	return 0;
}

/* Children first, depth first; a node met again on its own path: a cycle. */
static int order_from(struct parse *ps, struct bg_node *n)
{
	struct bg_plan *p = ps->p;
	unsigned int i;

	if (n->driver == BG_REF || n->mark == 2)
		return 0;
	if (n->mark == 1)
		return fail(ps->err, n->name, "cycle: the node would be below itself");
	n->mark = 1;
	for (i = 0; i < n->nedges; i++)
		if (order_from(ps, n->edges[i].child))
			return -1;
	n->mark = 2;
	p->order[p->norder++] = n;
	return 0;
}

/*
 * A writable node takes write on its data children (file, children.N):
 * refuse a read-only one.  QEMU: "Block node is read-only".
 */
static int check_writable(struct parse *ps, struct bg_node *n)
{
	unsigned int i;

	if (n->driver == BG_QUORUM && n->rewrite_corrupted && n->read_only)
		return fail(ps->err, n->name, "rewrite-corrupted needs a writable node");
	if (n->read_only)
		return 0;
	for (i = 0; i < n->nedges; i++) {
		struct bg_node *c = n->edges[i].child;

		if (!strcmp(n->edges[i].role, "backing") || !c->read_only)
			continue;
		return fail(ps->err, n->name, "its %s child '%s' is read-only: set read-only on this node too",
			    n->edges[i].role, c->name);
	}
	return 0;
}

/*
 * discard and detect-zeroes together, as QEMU checks them: unmap needs
 * discards passed down.  The raw and qcow2 nodes apply them (their
 * tables' discard and detect_zeroes); on a filter they reach the nodes
 * below by inheritance.
 */
int bg_io_opts_check(const struct bg_node *n, struct bg_err *err)
{
	if (n->detect_zeroes == BG_DZ_UNMAP && n->discard != BG_DISCARD_UNMAP)
		return fail(err, n->name, "setting detect-zeroes to unmap is not allowed without setting discard operation to unmap");
	return 0;
}

static int check_supported(struct parse *ps, struct bg_node *n)
{
	return bg_io_opts_check(n, ps->err);
}

int bg_plan_parse(struct bg_plan *p, const char *text, size_t len,
		  const char *source, const struct bg_env *env,
		  struct bg_err *err)
{
	struct parse ps = { .source = source, .p = p, .env = env, .err = err };
	struct json_object *root, *v;
	int i, r = -1;

	memset(p, 0, sizeof(*p));
	root = bg_json_parse(text, len, source, err);
	if (!root)
		return -1;
	if (!json_object_is_type(root, json_type_object)) {
		fail(err, source, "the JSON must be an object (a node), not %s",
		     json_type_word(root));
		goto out;
	}
	if (json_object_object_get_ex(root, "id", &v) &&
	    json_object_is_type(v, json_type_string)) {
		if (!bg_name_valid(json_object_get_string(v), BG_USER_NAME_MAX)) {
			fail(err, json_object_get_string(v), "invalid id: a letter, then letters, digits, '-', '.' or '_', at most %d characters",
			     BG_USER_NAME_MAX);
			goto out;
		}
		p->id = strdup(json_object_get_string(v));
	}
	if (parse_node(&ps, root, NULL, NULL, true, &p->top))
		goto out;
	/* The top's defaults: writable, discards passed down, no detection. */
	if (!p->top->discard_set)
		p->top->discard = BG_DISCARD_UNMAP;
	inherit_tree(p->top);
	if (check_names(&ps) || resolve_refs(&ps))
		goto out;
	p->order = calloc(p->nall + 1, sizeof(*p->order));
	if (!p->order) {
		fail(err, source, "out of memory");
		goto out;
	}
	if (order_from(&ps, p->top))
		goto out;
	/* Top-down, so an option is refused where it was set. */
	for (i = p->norder - 1; i >= 0; i--)
		if (check_supported(&ps, p->order[i]) ||
		    check_writable(&ps, p->order[i]))
			goto out;
	r = 0;
out:
	json_object_put(root);
	return r;
}

void bg_plan_free(struct bg_plan *p)
{
	unsigned int i, j;

	for (i = 0; i < p->nall; i++) {
		struct bg_node *n = p->all[i];

		for (j = 0; j < n->nedges; j++)
			free(n->edges[j].ref);
		free(n->edges);
		free(n->filename);
		free(n->group);
		free(n);
	}
	free(p->all);
	free(p->order);
	free(p->id);
	memset(p, 0, sizeof(*p));
}

/* ---------------------------------------------------------------- */
/* Backing chains from image headers                                */
/* ---------------------------------------------------------------- */

const char *bg_node_image_name(const struct bg_node *n)
{
	while (n) {
		if (n->filename)
			return n->filename;
		n = bg_node_child(n, "file");
	}
	return NULL;
}

long bg_qcow2_header(struct bg_node *n, const uint8_t *buf, size_t len,
		     uint64_t file_size, char *bname, char *bfmt,
		     struct bg_err *err)
{
	struct qcow2_info qi;
	const char *why;
	uint32_t bits;
	size_t need;

	bname[0] = bfmt[0] = '\0';
	if (len < QCOW2_V3_HEADER_LEN && len < file_size)
		return QCOW2_V3_HEADER_LEN;
	if (qcow2_probe(buf, len, &bits, &why))
		return fail(err, n->name, "its file is not a qcow2 image: %s", why);
	need = 1UL << bits;
	if (need > file_size)
		need = file_size;
	if (len < need)
		return need;
	if (qcow2_parse_header(buf, len, file_size, &qi, &why))
		return fail(err, n->name, "bad qcow2 header: %s", why);
	n->bytes = (qi.size + 511) / 512 * 512;
	if (!n->bytes)
		return fail(err, n->name, "the image's virtual size is 0");
	if (n->backing != BG_BACKING_HEADER || !qi.backing_file_offset)
		return 0;
	if (memchr(buf + qi.backing_file_offset, 0, qi.backing_file_size))
		return fail(err, n->name, "the backing file name in the header holds a NUL byte");
	memcpy(bname, buf + qi.backing_file_offset, qi.backing_file_size);
	bname[qi.backing_file_size] = '\0';
	snprintf(bfmt, 16, "%s", qi.backing_format);
	return 0;
}

/* @q's image and those above it in its header chain: is @path one? */
static const struct bg_node *chain_has(const struct bg_node *q, const char *path)
{
	for (; q; q = q->from_header ? q->parent : NULL) {
		const char *f = bg_node_image_name(q);

		if (f && !strcmp(f, path))
			return q;
	}
	return NULL;
}

int bg_plan_add_backing(struct bg_plan *p, struct bg_node *q,
			const char *bname, const char *bfmt,
			struct bg_err *err)
{
	const char *base = bg_node_image_name(q), *slash;
	struct bg_node *b, *f, **order;
	struct bg_edge *e;
	unsigned int i, at;
	char *path;
	int fmt;

	if (!*bfmt)
		return fail(err, q->name, "the image names backing file '%s' without its format: give \"backing\" (formats are never probed)",
			    bname);
	if (!strcmp(bfmt, "qcow2"))
		fmt = BG_QCOW2;
	else if (!strcmp(bfmt, "raw"))
		fmt = BG_RAW;
	else
		return fail(err, q->name, "backing format '%s' is not supported", bfmt);
	if (!strncmp(bname, "json:", 5))
		return fail(err, q->name, "a json: backing file name is not supported: give \"backing\"");
	if (bname[0] == '/') {
		path = strdup(bname);
	} else {
		if (!base)
			return fail(err, q->name, "relative backing file name '%s' but the image's own file name is not known: give \"backing\"",
				    bname);
		slash = strrchr(base, '/');
		if (asprintf(&path, "%.*s%s", slash ? (int)(slash - base + 1) : 0,
			     base, bname) < 0)
			path = NULL;
	}
	if (!path)
		return fail(err, q->name, "out of memory");
	if (chain_has(q, path)) {
		fail(err, q->name, "backing file '%s' is already in the chain above", path);
		free(path);
		return -1;
	}
	if (q->chain + 1 > BG_MAX_CHAIN) {
		free(path);
		return fail(err, q->name, "backing chain longer than %d images", BG_MAX_CHAIN);
	}
	b = new_node(p);
	f = b ? new_node(p) : NULL;
	order = f ? realloc(p->order, (p->nall + 1) * sizeof(*order)) : NULL;
	if (!order) {
		free(path);
		return fail(err, q->name, "out of memory");
	}
	p->order = order;
	f->filename = path;
	b->driver = fmt;
	b->implicit = f->implicit = true;
	b->from_header = f->from_header = true;
	b->parent = q;
	f->parent = b;
	b->backing = BG_BACKING_HEADER;
	b->chain = q->chain + 1;
	f->driver = BG_FILE;
	if (gen_name(b->name, q->name, "backing", err) ||
	    gen_name(f->name, b->name, "file", err))
		return -1;
	if (find_node(p, b->name, false) != b || find_node(p, f->name, false) != f)
		return fail(err, b->name, "node-name is used twice in the tree");
	inherit(b, q, "backing");
	inherit(f, b, "file");
	e = add_edge(b, "file");
	if (!e)
		return fail(err, q->name, "out of memory");
	e->child = f;
	e = add_edge(q, "backing");
	if (!e)
		return fail(err, q->name, "out of memory");
	e->child = b;
	q->backing = BG_BACKING_NODE;
	for (at = 0; at < p->norder && p->order[at] != q; at++)
		;
	for (i = p->norder; i > at; i--)
		p->order[i + 1] = p->order[i - 1];
	p->order[at] = f;
	p->order[at + 1] = b;
	p->norder += 2;
	return 0;
}

/* ---------------------------------------------------------------- */
/* Sizes and tables                                                 */
/* ---------------------------------------------------------------- */

int bg_node_size(struct bg_node *n, struct bg_err *err)
{
	struct bg_node *c = bg_node_child(n, "file");
	unsigned int i;

	switch (n->driver) {
	case BG_RAW:
		if (n->offset >= c->bytes)
			return fail(err, n->name, "offset %" PRIu64 " is at or past the end of '%s' (%" PRIu64 " bytes)",
				    n->offset, c->name, c->bytes);
		if (n->has_size && n->size > c->bytes - n->offset)
			return fail(err, n->name, "offset + size is past the end of '%s' (%" PRIu64 " bytes)",
				    c->name, c->bytes);
		n->bytes = n->has_size ? n->size : c->bytes - n->offset;
		return 0;
	case BG_THROTTLE:
		n->bytes = c->bytes;
		return 0;
	case BG_QUORUM:
		n->bytes = n->edges[0].child->bytes;
		for (i = 1; i < n->nedges; i++)
			if (n->edges[i].child->bytes != n->bytes)
				return fail(err, n->name, "children differ in size: '%s' has %" PRIu64 " bytes, '%s' %" PRIu64,
					    n->edges[0].child->name, n->bytes,
					    n->edges[i].child->name,
					    n->edges[i].child->bytes);
		return 0;
	default:
		return 0;	/* the caller's: files, devices, images */
	}
}

const char *bg_node_target(const struct bg_node *n)
{
	switch (n->driver) {
	case BG_QCOW2:		return "bgraph-qcow2";
	case BG_THROTTLE:	return "bgraph-throttle";
	case BG_QUORUM:		return "bgraph-quorum";
	default:		return "bgraph-raw";
	}
}

/* The optional arguments of a table being written: words and their count. */
struct opt_words {
	char text[256];
	int len;
	int count;
};

__attribute__((format(printf, 3, 4)))
static void opt_add(struct opt_words *o, int words, const char *fmt, ...)
{
	va_list ap;

	if (o->len >= (int)sizeof(o->text))
		return;
	va_start(ap, fmt);
	o->len += vsnprintf(o->text + o->len, sizeof(o->text) - o->len, fmt, ap);
	va_end(ap);
	o->count += words;
}

/* Append " <count> <words>" to @buf at @len (snprintf() semantics). */
static int opt_emit(char *buf, size_t size, int len, const struct opt_words *o)
{
	if (!o->count)
		return len;
	return len + snprintf(buf + len, (size_t)len < size ? size - len : 0,
			      " %d%s", o->count, o->text);
}

/* discard and detect_zeroes, where they differ from the table's defaults. */
static void io_opts_add(struct opt_words *o, const struct bg_node *n)
{
	if (n->discard == BG_DISCARD_IGNORE)
		opt_add(o, 2, " discard ignore");
	if (n->detect_zeroes != BG_DZ_OFF)
		opt_add(o, 2, " detect_zeroes %s", dz_words[n->detect_zeroes]);
}

int bg_node_params(const struct bg_node *n, char *buf, size_t size)
{
	struct bg_node *c = bg_node_child(n, "file"), *b;
	struct opt_words o = { .len = 0 };
	unsigned int i;
	int len;

	switch (n->driver) {
	case BG_FILE:
	case BG_HOST_DEVICE:
		return snprintf(buf, size, "%s", n->leaf_dev);
	case BG_RAW:
		if (n->has_offset)
			opt_add(&o, 2, " offset %" PRIu64, n->offset);
		if (n->has_size)
			opt_add(&o, 2, " size %" PRIu64, n->size);
		io_opts_add(&o, n);
		break;
	case BG_QCOW2:
		b = bg_node_child(n, "backing");
		if (b)
			opt_add(&o, 2, " backing %s", b->dev);
		if (n->l2_cache_size)
			opt_add(&o, 2, " l2_cache_size %" PRIu64, n->l2_cache_size);
		io_opts_add(&o, n);
		break;
	case BG_THROTTLE:
		return snprintf(buf, size, "%s %s", c->dev, n->group);
	case BG_QUORUM:
		len = snprintf(buf, size, "%u %u", n->threshold, n->nedges);
		for (i = 0; i < n->nedges; i++)
			len += snprintf(buf + len, (size_t)len < size ? size - len : 0,
					" %s", n->edges[i].child->dev);
		/* In the order the kernel prints them. */
		if (n->rewrite_corrupted)
			opt_add(&o, 1, " rewrite-corrupted");
		if (n->read_pattern == BG_RP_FIFO)
			opt_add(&o, 2, " read-pattern fifo");
		if (n->blkverify)
			opt_add(&o, 1, " blkverify");
		return opt_emit(buf, size, len, &o);
	case BG_REF:
		return snprintf(buf, size, "%s", "");
	}
	len = snprintf(buf, size, "%s", c->dev);
	return opt_emit(buf, size, len, &o);
}

int bg_id_params(const struct bg_node *top, char *buf, size_t size)
{
	return snprintf(buf, size, "%s", top->dev);
}
