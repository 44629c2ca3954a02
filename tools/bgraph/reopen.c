// SPDX-License-Identifier: GPL-2.0
/*
 * bgraph reopen: QMP's blockdev-reopen on one live node.  The node's
 * table is read back and the options given are changed in it; read-only,
 * discard and detect-zeroes follow to the implicit children that inherit
 * them (bg_reopen_inherit(), QEMU's bdrv_reopen_queue_child()), and a
 * qcow2 node's backing child may be replaced or dropped.  Every node that
 * changes gets its new table at one time, all or nothing (reopen_commit()).
 * A writable qcow2 node writes its metadata back at the suspend and reads
 * its image again at the resume, so nothing is written twice.  Options
 * that cannot change are refused with QEMU's message.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bgraph.h"
#include "plan.h"
#include "sys.h"

#define BG_REOPEN_MAX_BLOCK	64
#define MAX_WORDS	64

/* A table line split: @pos positional words, then key/flag options. */
struct tline {
	char *pos[MAX_WORDS];
	unsigned int npos;
	char *key[MAX_WORDS], *val[MAX_WORDS];
	unsigned int nopt;
	char buf[4096];
};

static bool is_flag(const char *key)
{
	return !strcmp(key, "read_only") || !strcmp(key, "error_if_no_space") ||
	       !strcmp(key, "rewrite-corrupted") || !strcmp(key, "blkverify");
}

/* Split @params of a table of @kind; -1 if it does not read as one. */
static int tline_split(struct tline *t, const char *kind, const char *params)
{
	char *w[MAX_WORDS], *save = NULL, *tok;
	unsigned int n = 0, i, npos, count;

	memset(t, 0, sizeof(*t));
	snprintf(t->buf, sizeof(t->buf), "%s", params);
	for (tok = strtok_r(t->buf, " ", &save); tok && n < MAX_WORDS;
	     tok = strtok_r(NULL, " ", &save))
		w[n++] = tok;
	if (!strcmp(kind, "throttle"))
		npos = 2;
	else if (!strcmp(kind, "quorum"))
		npos = n >= 2 ? 2 + (unsigned int)strtoul(w[1], NULL, 10) : n + 1;
	else
		npos = 1;
	if (npos > n)
		return -1;
	for (i = 0; i < npos; i++)
		t->pos[t->npos++] = w[i];
	if (npos == n)
		return 0;
	count = strtoul(w[npos], NULL, 10);
	if (count != n - npos - 1)
		return -1;
	for (i = npos + 1; i < n; i++) {
		t->key[t->nopt] = w[i];
		if (!is_flag(w[i])) {
			if (++i >= n)
				return -1;
			t->val[t->nopt] = w[i];
		}
		t->nopt++;
	}
	return 0;
}

/* Set option @key to @val (NULL: a flag), or drop it with @drop. */
static void tline_set(struct tline *t, char *key, char *val, bool drop)
{
	unsigned int i;

	for (i = 0; i < t->nopt; i++)
		if (!strcmp(t->key[i], key))
			break;
	if (drop) {
		if (i == t->nopt)
			return;
		for (; i + 1 < t->nopt; i++) {
			t->key[i] = t->key[i + 1];
			t->val[i] = t->val[i + 1];
		}
		t->nopt--;
		return;
	}
	if (i == t->nopt) {
		if (t->nopt == MAX_WORDS)
			return;
		t->nopt++;
	}
	t->key[i] = key;
	t->val[i] = val;
}

static int tline_join(const struct tline *t, char *out, size_t size)
{
	unsigned int i, words = 0;
	size_t len = 0;

	for (i = 0; i < t->npos; i++)
		len += snprintf(out + len, len < size ? size - len : 0, "%s%s",
				i ? " " : "", t->pos[i]);
	for (i = 0; i < t->nopt; i++)
		words += t->val[i] ? 2 : 1;
	if (words)
		len += snprintf(out + len, len < size ? size - len : 0, " %u", words);
	for (i = 0; i < t->nopt; i++) {
		len += snprintf(out + len, len < size ? size - len : 0, " %s", t->key[i]);
		if (t->val[i])
			len += snprintf(out + len, len < size ? size - len : 0,
					" %s", t->val[i]);
	}
	return len < size ? 0 : -1;
}

static bool tline_has(const struct tline *t, const char *key)
{
	unsigned int i;

	for (i = 0; i < t->nopt; i++)
		if (!strcmp(t->key[i], key))
			return true;
	return false;
}

static const char *tline_get(const struct tline *t, const char *key)
{
	unsigned int i;

	for (i = 0; i < t->nopt; i++)
		if (!strcmp(t->key[i], key))
			return t->val[i];
	return NULL;
}

static bool parse_bool(const char *v, bool *b)
{
	if (!strcmp(v, "on") || !strcmp(v, "true")) {
		*b = true;
		return true;
	}
	if (!strcmp(v, "off") || !strcmp(v, "false")) {
		*b = false;
		return true;
	}
	return false;
}

static const char *const discard_words[] = { "ignore", "unmap", NULL };
static const char *const dz_words[] = { "off", "on", "unmap", NULL };

static int word_index(const char *s, const char *const *words)
{
	int i;

	for (i = 0; s && words[i]; i++)
		if (!strcmp(s, words[i]))
			return i;
	return -1;
}

/* ---------------------------------------------------------------- */
/* The nodes of one reopen                                          */
/* ---------------------------------------------------------------- */

#define MAX_NODES	64

/* Where a node is in reopen_commit(), for reopen_undo(). */
enum rn_state {
	RN_IDLE,
	RN_LOADED,	/* the new table inactive */
	RN_SUSPENDED,	/* and the node suspended, its old table live */
	RN_SWAPPED,	/* its resume refused: the new table in, suspended */
	RN_LIVE,	/* resumed with the new table */
};

/*
 * One node a reopen may change: the node given, or an implicit node that
 * inherits from one of the reopen (its maker, the record's
 * "inherits-from").  @n holds the new options and the inheritance tree
 * (bg_reopen_inherit()); @ro0, @discard0, @dz0 the options before.
 */
struct rn {
	struct bg_node n;
	bool ro0;
	enum bg_discard discard0;
	enum bg_dz dz0;
	char kind[32];
	bool io_in_table;		/* raw, qcow2: discard, detect_zeroes */
	struct json_object *rec;	/* bgraph's record, or NULL */
	struct bg_dm_target old, t;	/* the live table and the new one */
	struct tline tl;
	bool table;			/* gets the new table */
	char loop[32], loop_dev[32];	/* a new, writable loop device */
	enum rn_state state;
};

struct reopen {
	struct rn *rn[MAX_NODES];	/* top-down: a maker before its children */
	unsigned int nr;
	bool backing_given;
	char backing_old[BG_NAME_MAX + 1];	/* replaced; removed if implicit */
};

static struct rn *rn_find(const struct reopen *ro, const char *name)
{
	unsigned int i;

	for (i = 0; i < ro->nr; i++)
		if (!strcmp(ro->rn[i]->n.name, name))
			return ro->rn[i];
	return NULL;
}

static bool rec_bool(struct json_object *rec, const char *key)
{
	struct json_object *v;

	return rec && json_object_object_get_ex(rec, key, &v) &&
	       json_object_is_type(v, json_type_boolean) &&
	       json_object_get_boolean(v);
}

/* Does the record say the node sets @opt itself? */
static bool rec_explicit(struct json_object *rec, const char *opt)
{
	struct json_object *v;
	size_t i;

	if (!rec || !json_object_object_get_ex(rec, "explicit", &v) ||
	    !json_object_is_type(v, json_type_array))
		return false;
	for (i = 0; i < json_object_array_length(v); i++)
		if (!strcmp(json_object_get_string(json_object_array_get_idx(v, i)), opt))
			return true;
	return false;
}

/* Read @name's table, record and options into a new member of @ro. */
static struct rn *rn_read(struct reopen *ro, const char *name)
{
	const char *drv, *s;
	struct rn *r;
	int x;

	if (ro->nr == MAX_NODES) {
		bg_error(name, "more than %d nodes would change", MAX_NODES);
		return NULL;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		bg_error(name, "out of memory");
		return NULL;
	}
	ro->rn[ro->nr++] = r;
	snprintf(r->n.name, sizeof(r->n.name), "%s", name);
	if (bg_cfs_read(name, "kind", r->kind, sizeof(r->kind)) ||
	    bg_dm_target(name, &r->old)) {
		bg_error(name, "%s", bg_sys_error[0] ? bg_sys_error : "cannot read its table");
		return NULL;
	}
	r->t = r->old;
	if (tline_split(&r->tl, r->kind, r->old.params)) {
		bg_error(name, "its table does not read as a %s table", r->kind);
		return NULL;
	}
	r->rec = bg_rec_read(name);
	drv = bg_rec_str(r->rec, "driver");
	if (!drv)
		drv = r->kind;
	/* As add writes tables: file and host_device nodes carry neither. */
	r->io_in_table = !strcmp(drv, "raw") || !strcmp(drv, "qcow2");
	r->n.read_only = r->old.ro || tline_has(&r->tl, "read_only");
	r->n.discard = BG_DISCARD_UNMAP;
	r->n.detect_zeroes = BG_DZ_OFF;
	if (r->io_in_table) {
		s = tline_get(&r->tl, "discard");
		if (s && !strcmp(s, "ignore"))
			r->n.discard = BG_DISCARD_IGNORE;
		x = word_index(tline_get(&r->tl, "detect_zeroes"), dz_words);
	} else {
		x = word_index(bg_rec_str(r->rec, "discard"), discard_words);
		if (x >= 0)
			r->n.discard = x;
		x = word_index(bg_rec_str(r->rec, "detect-zeroes"), dz_words);
	}
	if (x >= 0)
		r->n.detect_zeroes = x;
	r->n.read_only_set = rec_explicit(r->rec, "read-only");
	r->n.discard_set = rec_explicit(r->rec, "discard");
	r->n.detect_zeroes_set = rec_explicit(r->rec, "detect-zeroes");
	r->n.implicit = rec_bool(r->rec, "implicit");
	r->ro0 = r->n.read_only;
	r->discard0 = r->n.discard;
	r->dz0 = r->n.detect_zeroes;
	return r;
}

/*
 * The children of @r that inherit from it, added to @ro with their edges
 * in @r->n: implicit nodes of @r's making (a child given by reference
 * inherits nothing).  Children by @skip_role are left out.
 */
static int rn_children(struct reopen *ro, struct rn *r, const char *skip_role)
{
	char buf[4096], *line, *save = NULL;

	if (bg_cfs_read(r->n.name, "children", buf, sizeof(buf)))
		return 0;
	for (line = strtok_r(buf, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		char *child = strchr(line, ' ');
		struct json_object *rec;
		struct bg_edge *e;
		const char *from;
		bool inherits;
		struct rn *c;

		if (!child)
			continue;
		*child++ = '\0';
		if (skip_role && !strcmp(line, skip_role))
			continue;
		rec = bg_rec_read(child);
		from = bg_rec_str(rec, "inherits-from");
		inherits = rec_bool(rec, "implicit") && from && !strcmp(from, r->n.name);
		json_object_put(rec);
		if (!inherits || rn_find(ro, child))
			continue;
		c = rn_read(ro, child);
		if (!c)
			return -1;
		c->n.parent = &r->n;
		e = realloc(r->n.edges, (r->n.nedges + 1) * sizeof(*e));
		if (!e) {
			bg_error(r->n.name, "out of memory");
			return -1;
		}
		r->n.edges = e;
		e = &e[r->n.nedges++];
		memset(e, 0, sizeof(*e));
		snprintf(e->role, sizeof(e->role), "%s", line);
		e->child = &c->n;
	}
	return 0;
}

static void reopen_free(struct reopen *ro)
{
	unsigned int i;

	for (i = 0; i < ro->nr; i++) {
		json_object_put(ro->rn[i]->rec);
		free(ro->rn[i]->n.edges);
		free(ro->rn[i]);
	}
}

/* ---------------------------------------------------------------- */
/* Checks                                                           */
/* ---------------------------------------------------------------- */

/* Does @parent's edge on @child take write (its permissions file)? */
static bool edge_writes(const char *parent, const char *child)
{
	char perms[4096], *l, *save = NULL;

	if (bg_cfs_read(parent, "permissions", perms, sizeof(perms)))
		return false;
	for (l = strtok_r(perms, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		char role[64], c[160], perm[256], *w;

		if (sscanf(l, "%63s %159s perm=%255s", role, c, perm) != 3 ||
		    strcmp(c, child))
			continue;
		for (w = strstr(perm, "write"); w; w = strstr(w + 1, "write"))
			if (strncmp(w, "write-unchanged", 15))
				return true;
	}
	return false;
}

/*
 * A parent that writes to @node and stays writable: one of the reopen
 * that stays read-write, or any other.  NULL if none.
 */
static const char *writer_of(const struct reopen *ro, const char *node,
			     char *who, size_t size)
{
	char buf[4096], *line, *save = NULL;
	const struct rn *p;

	if (bg_cfs_read(node, "parents", buf, sizeof(buf)))
		return NULL;
	for (line = strtok_r(buf, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		snprintf(who, size, "%.*s", (int)strcspn(line, " "), line);
		p = rn_find(ro, who);
		if (p && p->n.read_only)
			continue;
		if (edge_writes(who, node))
			return who;
	}
	return NULL;
}

/* Is the loop device @loop ("/dev/loopN") read-only? */
static bool loop_ro(const char *loop)
{
	const char *base = strrchr(loop, '/');
	char path[128], v[8] = "";
	FILE *f;

	snprintf(path, sizeof(path), "/sys/block/%s/ro", base ? base + 1 : loop);
	f = fopen(path, "re");
	if (!f)
		return false;
	if (!fgets(v, sizeof(v), f))
		v[0] = '\0';
	fclose(f);
	return v[0] == '1';
}

/*
 * @r becomes writable: each data child (not backing) must be writable
 * after the reopen.  A file node over a read-only loop device gets a new,
 * writable one (QEMU opens the file again, read-write).
 */
static int check_writable(struct reopen *ro, struct rn *r)
{
	char buf[4096], v[8], *line, *save = NULL;
	const char *loop = bg_rec_str(r->rec, "loop");
	const char *file = bg_rec_str(r->rec, "filename");
	uint64_t bytes;

	if (loop && file && loop_ro(loop)) {
		if (bg_loop_attach(file, false, r->loop, sizeof(r->loop), r->loop_dev,
				   sizeof(r->loop_dev), &bytes)) {
			r->loop[0] = '\0';
			return bg_error(r->n.name, "%s", bg_sys_error);
		}
		r->tl.pos[0] = r->loop_dev;
		return 0;
	}
	if (bg_cfs_read(r->n.name, "children", buf, sizeof(buf)))
		return 0;
	for (line = strtok_r(buf, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		char *child = strchr(line, ' ');
		const struct rn *c;

		if (!child)
			continue;
		*child++ = '\0';
		if (!strcmp(line, "backing"))
			continue;
		c = rn_find(ro, child);
		if (c ? c->n.read_only :
			!bg_cfs_read(child, "read_only", v, sizeof(v)) && v[0] == '1')
			return bg_error(r->n.name, "its %s child '%s' is read-only: reopen it read-write first",
					line, child);
	}
	return 0;
}

/* Does @from reach @target through children edges (configfs)? */
static bool reaches(const char *from, const char *target, unsigned int depth)
{
	char buf[4096], *line, *save = NULL;

	if (!strcmp(from, target))
		return true;
	if (depth > 64 || bg_cfs_read(from, "children", buf, sizeof(buf)))
		return false;
	for (line = strtok_r(buf, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		char *child = strchr(line, ' ');

		if (child && reaches(child + 1, target, depth + 1))
			return true;
	}
	return false;
}

/* The name of @node's child of @role, into @out; false if none. */
static bool child_of(const char *node, const char *role, char *out, size_t size)
{
	char buf[4096], *line, *save = NULL;
	size_t n = strlen(role);

	if (bg_cfs_read(node, "children", buf, sizeof(buf)))
		return false;
	for (line = strtok_r(buf, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		if (!strncmp(line, role, n) && line[n] == ' ') {
			snprintf(out, size, "%s", line + n + 1);
			return true;
		}
	}
	return false;
}

/*
 * backing=<node> or backing=null on the qcow2 node @r, as blockdev-reopen
 * takes them: the backing child is replaced (or dropped) in the running
 * graph; the image's header is not rewritten (that is qemu-img rebase's).
 */
static int set_backing(struct reopen *ro, struct rn *r, char *val)
{
	const char *drv = bg_rec_str(r->rec, "driver");
	static char dev[32];
	char cur[BG_NAME_MAX + 1] = "";

	if (strcmp(r->kind, "qcow2"))
		return bg_error(r->n.name, "Driver '%s' of node '%s' does not support backing files",
				drv ? drv : r->kind, r->n.name);
	child_of(r->n.name, "backing", cur, sizeof(cur));
	if (!strcmp(val, cur))
		return 0;
	ro->backing_given = true;
	if (!strcmp(val, "null")) {
		tline_set(&r->tl, "backing", NULL, true);
	} else {
		if (!bg_cfs_node(val))
			return bg_error(r->n.name, "Cannot find device='' nor node-name='%s'", val);
		if (reaches(val, r->n.name, 0))
			return bg_error(r->n.name, "Making '%s' a backing child of '%s' would create a cycle",
					val, r->n.name);
		if (bg_cfs_read(val, "dev", dev, sizeof(dev)) || !dev[0])
			return bg_error(r->n.name, "cannot read the device of '%s'", val);
		tline_set(&r->tl, "backing", dev, false);
	}
	if (cur[0])
		snprintf(ro->backing_old, sizeof(ro->backing_old), "%s", cur);
	r->table = true;
	return 0;
}

/* The options given, on the node given (the root of @ro). */
static int reopen_options(struct reopen *ro, struct rn *r, int argc, char **argv)
{
	static const char *const fixed[] = { "driver", "node-name", "file",
					     "children", "vote-threshold", NULL };
	const char *kind = r->kind, *node = r->n.name;
	char path[512];
	struct stat st;
	int i, k, x;

	for (i = 0; i < argc; i++) {
		char *eq = strchr(argv[i], '='), *key = argv[i], *val;
		bool b;

		if (!eq || eq == key)
			return bg_error(node, "'%s': key=value expected", argv[i]);
		*eq = '\0';
		val = eq + 1;
		for (k = 0; fixed[k]; k++)
			if (!strcmp(key, fixed[k]))
				return bg_error(node, "Cannot change the option '%s'", key);
		if (!strcmp(key, "read-only")) {
			if (!parse_bool(val, &b))
				return bg_error(node, "read-only: on or off");
			r->n.read_only = b;
			r->n.read_only_set = true;
		} else if (!strcmp(key, "discard")) {
			x = word_index(val, discard_words);
			if (x < 0)
				return bg_error(node, "discard: ignore or unmap");
			r->n.discard = x;
			r->n.discard_set = true;
		} else if (!strcmp(key, "detect-zeroes")) {
			x = word_index(val, dz_words);
			if (x < 0)
				return bg_error(node, "detect-zeroes: off, on or unmap");
			r->n.detect_zeroes = x;
			r->n.detect_zeroes_set = true;
		} else if (!strcmp(key, "backing")) {
			if (set_backing(ro, r, val))
				return -1;
		} else if (!strcmp(key, "l2-cache-size") && !strcmp(kind, "qcow2")) {
			if (!*val || strspn(val, "0123456789") != strlen(val) || !strcmp(val, "0"))
				return bg_error(node, "l2-cache-size: a byte count");
			tline_set(&r->tl, "l2_cache_size", val, false);
			r->table = true;
		} else if (!strcmp(key, "throttle-group") && !strcmp(kind, "throttle")) {
			snprintf(path, sizeof(path), BG_CFS "/throttle-groups/%s", val);
			if (!*val || strchr(val, '/') || stat(path, &st) || !S_ISDIR(st.st_mode))
				return bg_error(node, "throttle group '%s' does not exist (mkdir %s)",
						val, path);
			r->tl.pos[1] = val;
			r->table = true;
		} else if (!strcmp(key, "rewrite-corrupted") && !strcmp(kind, "quorum")) {
			if (!parse_bool(val, &b))
				return bg_error(node, "rewrite-corrupted: on or off");
			tline_set(&r->tl, "rewrite-corrupted", NULL, !b);
			r->table = true;
		} else if (!strcmp(key, "read-pattern") && !strcmp(kind, "quorum")) {
			if (strcmp(val, "quorum") && strcmp(val, "fifo"))
				return bg_error(node, "read-pattern: quorum or fifo");
			tline_set(&r->tl, "read-pattern", val, !strcmp(val, "quorum"));
			r->table = true;
		} else {
			return bg_error(node, "Invalid option '%s' for a %s node", key, kind);
		}
	}
	return 0;
}

/*
 * Each node's new options into its new table, and the checks that need
 * the whole reopen: read-only with the writers above, read-write with the
 * children below.
 */
static int reopen_check(struct reopen *ro)
{
	char who[BG_NAME_MAX + 1];
	struct bg_err err;
	unsigned int i;

	for (i = 0; i < ro->nr; i++) {
		struct rn *r = ro->rn[i];

		if (bg_io_opts_check(&r->n, &err))
			return bg_error(err.node, "%s", err.msg);
		if (r->io_in_table && r->n.discard != r->discard0) {
			tline_set(&r->tl, "discard", "ignore", r->n.discard == BG_DISCARD_UNMAP);
			r->table = true;
		}
		if (r->io_in_table && r->n.detect_zeroes != r->dz0) {
			tline_set(&r->tl, "detect_zeroes", (char *)dz_words[r->n.detect_zeroes],
				  r->n.detect_zeroes == BG_DZ_OFF);
			r->table = true;
		}
		if (r->n.read_only == r->ro0)
			continue;
		r->t.ro = r->n.read_only;
		tline_set(&r->tl, "read_only", NULL, true);
		r->table = true;
	}
	/* All new options known: who writes, who becomes writable. */
	for (i = 0; i < ro->nr; i++) {
		struct rn *r = ro->rn[i];

		if (r->n.read_only == r->ro0)
			continue;
		if (r->n.read_only && writer_of(ro, r->n.name, who, sizeof(who)))
			return bg_error(r->n.name, "Cannot make the node read-only: %s writes to it",
					who);
		if (!r->n.read_only && check_writable(ro, r))
			return -1;
	}
	for (i = 0; i < ro->nr; i++) {
		struct rn *r = ro->rn[i];

		if (r->table && tline_join(&r->tl, r->t.params, sizeof(r->t.params)))
			return bg_error(r->n.name, "table too long");
	}
	return 0;
}

/* ---------------------------------------------------------------- */
/* The change: every new table at one time, all or nothing          */
/* ---------------------------------------------------------------- */

/*
 * Back to the old tables from any point of reopen_commit(): inactive new
 * tables are cleared; a node whose new table is in (resumed, or its
 * resume refused) is suspended again, top-down, and loaded with its old
 * one; then every suspended node resumes, bottom-up, as in the change.
 */
static void reopen_undo(struct reopen *ro)
{
	unsigned int i;

	for (i = 0; i < ro->nr; i++) {
		struct rn *r = ro->rn[i];

		switch (r->state) {
		case RN_LOADED:
		case RN_SUSPENDED:
			bg_dm_clear(r->n.name);
			break;
		case RN_LIVE:
			if (bg_dm_suspend(r->n.name)) {
				bg_error(r->n.name, "undo: %s", bg_sys_error);
				break;
			}
			r->state = RN_SWAPPED;
			__attribute__((fallthrough));
		case RN_SWAPPED:
			if (bg_dm_load(r->n.name, &r->old))
				bg_error(r->n.name, "undo: %s", bg_sys_error);
			break;
		case RN_IDLE:
			break;
		}
	}
	for (i = ro->nr; i-- > 0;) {
		struct rn *r = ro->rn[i];

		if ((r->state == RN_SUSPENDED || r->state == RN_SWAPPED) &&
		    bg_dm_resume(r->n.name))
			bg_error(r->n.name, "left suspended: %s", bg_sys_error);
		r->state = RN_IDLE;
	}
}

/*
 * For the tests of the rollback: BGRAPH_TEST_FAIL=reopen-<step>:<node>
 * (step load, suspend or resume) makes that step of that node fail once
 * it is done, as change.c's hooks do.
 */
static bool test_fail(const char *step, const char *node)
{
	const char *e = getenv("BGRAPH_TEST_FAIL");
	size_t n = strlen(step);

	if (!e || strncmp(e, "reopen-", 7) || strncmp(e + 7, step, n) ||
	    e[7 + n] != ':' || strcmp(e + 8 + n, node))
		return false;
	snprintf(bg_sys_error, sizeof(bg_sys_error), "failed for the test (BGRAPH_TEST_FAIL)");
	return true;
}

/*
 * The new tables of every node that changes, at one time: load them all
 * (the kernel checks each table, its permissions and cycles, and nothing
 * has changed yet if one is refused), then suspend top-down and resume
 * bottom-up, as lvm2's deptree does.  @ro->rn is top-down: a maker comes
 * before the children that inherit from it.
 *
 * Why this order.  A node's suspend drains its I/O into its children and
 * a writable qcow2 node writes its metadata back through them, so its
 * children must still be live then: suspend parents first.  Once they are
 * suspended nothing reaches the children, and the parents' edges are
 * parked (count against nothing).  At its resume a node's edges are
 * checked again against its children as they are at that time: a node
 * made read-write takes write on its file child, which must be writable
 * by then -- so children resume first.  Made read-only, a child resumes
 * read-only while its parent is still suspended with no write in flight
 * (the suspend waited for them), and the parent then resumes read-only,
 * taking no write.  Doing it one node at a time, parents first, would
 * not work: a parent made read-only is fine, but a parent made read-write
 * would take write on a child still read-only; children first, a child
 * made read-only would refuse the writes of its parent, still live and
 * writable.
 */
static int reopen_commit(struct reopen *ro)
{
	unsigned int i;

	/*
	 * The record: a kill from here on is finished or undone by recover,
	 * which resumes the nodes in the reverse of this (top-down) order.
	 */
	bg_jr_begin("reopen");
	bg_jr_set("parents", json_object_new_array());
	for (i = 0; i < ro->nr; i++)
		if (ro->rn[i]->table)
			bg_jr_parent(ro->rn[i]->n.name, &ro->rn[i]->old, &ro->rn[i]->t);
	if (bg_jr_write("parents"))
		return 1;
	bg_test_step("record");
	for (i = 0; i < ro->nr; i++) {
		struct rn *r = ro->rn[i];

		if (!r->table)
			continue;
		if (bg_dm_load(r->n.name, &r->t))
			goto fail;
		r->state = RN_LOADED;
		bg_test_step("load %s", r->n.name);
		if (test_fail("load", r->n.name))
			goto fail;
	}
	for (i = 0; i < ro->nr; i++) {
		struct rn *r = ro->rn[i];

		if (!r->table)
			continue;
		if (bg_dm_suspend(r->n.name))
			goto fail;
		r->state = RN_SUSPENDED;
		bg_test_step("suspend %s", r->n.name);
		if (test_fail("suspend", r->n.name))
			goto fail;
	}
	for (i = ro->nr; i-- > 0;) {
		struct rn *r = ro->rn[i];

		if (!r->table)
			continue;
		/* dm swaps the tables before the resume can be refused. */
		r->state = RN_SWAPPED;
		if (bg_dm_resume(r->n.name))
			goto fail;
		r->state = RN_LIVE;
		bg_test_step("resume %s", r->n.name);
		if (test_fail("resume", r->n.name))
			goto fail;
	}
	return 0;
fail:
	{
		char why[512];

		snprintf(why, sizeof(why), "%s", bg_sys_error);
		bg_jr_write("undo");
		reopen_undo(ro);
		return bg_error(ro->rn[i]->n.name, "%s", why);
	}
}

/*
 * The records of the nodes changed, so that a later reopen sees them.
 * The change itself stands if one cannot be written (1: say so).
 */
static int reopen_records(struct reopen *ro)
{
	unsigned int i;
	int ret = 0;

	for (i = 0; i < ro->nr; i++) {
		struct rn *r = ro->rn[i];
		struct json_object *set, *rec = r->rec;
		char old[32] = "";
		const char *s;

		if (!rec)
			continue;
		json_object_object_add(rec, "read-only", json_object_new_boolean(r->n.read_only));
		json_object_object_add(rec, "discard",
				       json_object_new_string(discard_words[r->n.discard]));
		json_object_object_add(rec, "detect-zeroes",
				       json_object_new_string(dz_words[r->n.detect_zeroes]));
		set = json_object_new_array();
		if (r->n.read_only_set)
			json_object_array_add(set, json_object_new_string("read-only"));
		if (r->n.discard_set)
			json_object_array_add(set, json_object_new_string("discard"));
		if (r->n.detect_zeroes_set)
			json_object_array_add(set, json_object_new_string("detect-zeroes"));
		json_object_object_add(rec, "explicit", set);
		if (r->loop[0]) {
			s = bg_rec_str(rec, "loop");
			snprintf(old, sizeof(old), "%s", s ? s : "");
			json_object_object_add(rec, "loop", json_object_new_string(r->loop));
			json_object_object_add(rec, "loop-dev", json_object_new_string(r->loop_dev));
		}
		if (bg_rec_write(r->n.name, rec))
			ret = bg_error(r->n.name, "%s", bg_sys_error);
		/* The old, read-only loop device: no table uses it now. */
		if (old[0] && bg_loop_detach(old, bg_rec_str(rec, "filename")))
			ret = bg_error(r->n.name, "%s", bg_sys_error);
	}
	return ret;
}

/*
 * The backing child replaced: if it was an implicit node of the reopened
 * node's making and nothing else uses it, it goes, with the implicit
 * children of its own (QEMU drops the last reference to it).
 */
static int drop_old_backing(const struct reopen *ro)
{
	const char *node = ro->rn[0]->n.name, *from;
	char buf[4096], cur[BG_NAME_MAX + 1] = "";
	struct json_object *rec;
	bool ours;

	if (!ro->backing_old[0] ||
	    (child_of(node, "backing", cur, sizeof(cur)) && !strcmp(cur, ro->backing_old)))
		return 0;
	rec = bg_rec_read(ro->backing_old);
	from = bg_rec_str(rec, "inherits-from");
	ours = rec_bool(rec, "implicit") && from && !strcmp(from, node);
	json_object_put(rec);
	if (ours && !bg_cfs_read(ro->backing_old, "parents", buf, sizeof(buf)) && !buf[0])
		return cmd_del(ro->backing_old);
	return 0;
}

/* graph-change on every node whose table changes (its name in @ch). */
static int reopen_block(struct reopen *ro, const char *ch)
{
	const char *names[BG_REOPEN_MAX_BLOCK];
	unsigned int i, n = 0;

	for (i = 0; i < ro->nr; i++) {
		if (!ro->rn[i]->table)
			continue;
		if (n == BG_REOPEN_MAX_BLOCK)
			return bg_error(ro->rn[0]->n.name, "more than %d nodes change",
					BG_REOPEN_MAX_BLOCK);
		names[n++] = ro->rn[i]->n.name;
	}
	if (n && bg_change_begin(ch, "graph-change", names, n))
		return bg_error(bg_change_node, "%s", bg_sys_error);
	return 0;
}

int bg_reopen(const char *node, int argc, char **argv)
{
	struct reopen ro = { .nr = 0 };
	struct bg_change_id id;
	const char *ch = bg_change_name(&id, NULL);
	unsigned int i;
	struct rn *root;
	int r = 1;

	if (!bg_cfs_node(node) || !bg_dm_exists(node))
		return bg_error(node, "no such node");
	if (!argc)
		return bg_error(node, "nothing to change: give key=value");
	root = rn_read(&ro, node);
	if (!root || reopen_options(&ro, root, argc, argv))
		goto out;
	/* Top-down, breadth first; a replaced backing child inherits no more. */
	for (i = 0; i < ro.nr; i++)
		if (rn_children(&ro, ro.rn[i], !i && ro.backing_given ? "backing" : NULL))
			goto out;
	bg_reopen_inherit(&root->n);
	if (reopen_check(&ro) || reopen_block(&ro, ch))
		goto out_loops;
	if (reopen_commit(&ro)) {
		bg_change_end(ch);
		goto out_loops;
	}
	bg_change_end(ch);
	r = reopen_records(&ro);
	r |= drop_old_backing(&ro);	/* del's own change: remove */
	goto out;
out_loops:
	/* The new loop devices: no table uses them. */
	for (i = 0; i < ro.nr; i++)
		if (ro.rn[i]->loop[0])
			bg_loop_detach(ro.rn[i]->loop, bg_rec_str(ro.rn[i]->rec, "filename"));
out:
	reopen_free(&ro);
	return r;
}
