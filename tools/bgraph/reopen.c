// SPDX-License-Identifier: GPL-2.0
/*
 * bgraph reopen: QMP's blockdev-reopen on one live node.  The node's
 * table is read back, the options given are changed in it, and the node
 * is suspended, loaded with it and resumed (a writable qcow2 node writes
 * its metadata back at the suspend and reads its image again at the
 * resume, so nothing is written twice).  Options that cannot change are
 * refused with QEMU's message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bgraph.h"
#include "sys.h"

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

/* Does a parent of @node take write on it (its permissions file)? */
static const char *writer_of(const char *node)
{
	static char who[160];
	char buf[4096], perms[4096], *line, *save = NULL, *l2, *s2;

	if (bg_cfs_read(node, "parents", buf, sizeof(buf)))
		return NULL;
	for (line = strtok_r(buf, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		snprintf(who, sizeof(who), "%.*s", (int)strcspn(line, " "), line);
		if (bg_cfs_read(who, "permissions", perms, sizeof(perms)))
			continue;
		s2 = NULL;
		for (l2 = strtok_r(perms, "\n", &s2); l2; l2 = strtok_r(NULL, "\n", &s2)) {
			char role[64], child[160], perm[256];

			if (sscanf(l2, "%63s %159s perm=%255s", role, child, perm) == 3 &&
			    !strcmp(child, node) && strstr(perm, "write") &&
			    strncmp(strstr(perm, "write"), "write-unchanged", 15))
				return who;
		}
	}
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

int bg_reopen(const char *node, int argc, char **argv)
{
	static const char *const fixed[] = { "driver", "node-name", "file", "backing",
					     "children", "vote-threshold", NULL };
	struct bg_dm_target t, old;
	struct stat st;
	struct tline tl;
	char kind[32], params[4096], path[512];
	int i, k;

	if (!bg_cfs_node(node) || !bg_dm_exists(node))
		return bg_error(node, "no such node");
	if (bg_cfs_read(node, "kind", kind, sizeof(kind)) || bg_dm_target(node, &t))
		return bg_error(node, "%s", bg_sys_error[0] ? bg_sys_error : "cannot read its table");
	old = t;
	if (tline_split(&tl, kind, t.params))
		return bg_error(node, "its table does not read as a %s table", kind);
	if (!argc)
		return bg_error(node, "nothing to change: give key=value");
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
		if (!strcmp(key, "read-only") &&
		    (!strcmp(kind, "qcow2") || !strcmp(kind, "raw"))) {
			if (!parse_bool(val, &b))
				return bg_error(node, "read-only: on or off");
			if (b && !t.ro && writer_of(node))
				return bg_error(node, "Cannot make the node read-only: %s writes to it",
						writer_of(node));
			t.ro = b;
			tline_set(&tl, "read_only", NULL, true);
		} else if (!strcmp(key, "discard") &&
			   (!strcmp(kind, "qcow2") || !strcmp(kind, "raw"))) {
			if (strcmp(val, "ignore") && strcmp(val, "unmap"))
				return bg_error(node, "discard: ignore or unmap");
			tline_set(&tl, "discard", val, !strcmp(val, "unmap"));
		} else if (!strcmp(key, "detect-zeroes") &&
			   (!strcmp(kind, "qcow2") || !strcmp(kind, "raw"))) {
			if (strcmp(val, "off") && strcmp(val, "on") && strcmp(val, "unmap"))
				return bg_error(node, "detect-zeroes: off, on or unmap");
			tline_set(&tl, "detect_zeroes", val, !strcmp(val, "off"));
		} else if (!strcmp(key, "l2-cache-size") && !strcmp(kind, "qcow2")) {
			if (!*val || strspn(val, "0123456789") != strlen(val) || !strcmp(val, "0"))
				return bg_error(node, "l2-cache-size: a byte count");
			tline_set(&tl, "l2_cache_size", val, false);
		} else if (!strcmp(key, "throttle-group") && !strcmp(kind, "throttle")) {
			snprintf(path, sizeof(path), BG_CFS "/throttle-groups/%s", val);
			if (!*val || strchr(val, '/') || stat(path, &st) || !S_ISDIR(st.st_mode))
				return bg_error(node, "throttle group '%s' does not exist (mkdir %s)",
						val, path);
			tl.pos[1] = val;
		} else if (!strcmp(key, "rewrite-corrupted") && !strcmp(kind, "quorum")) {
			if (!parse_bool(val, &b))
				return bg_error(node, "rewrite-corrupted: on or off");
			tline_set(&tl, "rewrite-corrupted", NULL, !b);
		} else if (!strcmp(key, "read-pattern") && !strcmp(kind, "quorum")) {
			if (strcmp(val, "quorum") && strcmp(val, "fifo"))
				return bg_error(node, "read-pattern: quorum or fifo");
			tline_set(&tl, "read-pattern", val, !strcmp(val, "quorum"));
		} else {
			return bg_error(node, "Invalid option '%s' for a %s node", key, kind);
		}
	}
	if (tline_join(&tl, params, sizeof(params)))
		return bg_error(node, "table too long");
	snprintf(t.params, sizeof(t.params), "%s", params);
	/* The record: a kill from here on is finished or undone by recover. */
	bg_jr_begin("reopen");
	bg_jr_parent(node, &old, &t);
	if (bg_jr_write("parents"))
		return 1;
	bg_test_step("record");
	if (bg_dm_load(node, &t))
		return bg_error(node, "%s", bg_sys_error);
	bg_test_step("load %s", node);
	if (bg_dm_suspend(node)) {
		bg_dm_clear(node);
		return bg_error(node, "%s", bg_sys_error);
	}
	bg_test_step("suspend %s", node);
	if (bg_dm_resume(node)) {
		char why[512];

		/* The tables were swapped all the same: the old one back. */
		snprintf(why, sizeof(why), "%s", bg_sys_error);
		bg_jr_write("undo");
		if (bg_dm_load(node, &old) || bg_dm_resume(node))
			bg_error(node, "left suspended: %s", bg_sys_error);
		return bg_error(node, "the new table was refused at resume: %s", why);
	}
	bg_test_step("resume %s", node);
	return 0;
}
