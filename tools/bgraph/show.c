// SPDX-License-Identifier: GPL-2.0
/*
 * bgraph show: the graph as configfs shows it (nodes/<name>/: kind, size,
 * read_only, dev, children, parents, permissions, blockers), each dm
 * node's options read back from its table, and what bgraph's records add
 * (the driver a node was made with, its file and loop device, ids).  One
 * JSON model, printed as text, JSON, Graphviz dot or, through dot -Tsvg,
 * an SVG file.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "bgraph.h"
#include "sys.h"

#define TEXT_MAX	(64 * 1024)

/* A configfs list file's lines, each split in @nf words, into an array. */
static struct json_object *cfs_lines(const char *node, const char *attr,
				     const char *const *keys, int nf)
{
	struct json_object *a = json_object_new_array();
	char *buf = malloc(TEXT_MAX), *line, *save = NULL;

	if (!buf || bg_cfs_read(node, attr, buf, TEXT_MAX)) {
		free(buf);
		return a;
	}
	for (line = strtok_r(buf, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		struct json_object *o = json_object_new_object();
		char *w, *ws = NULL;
		int i = 0;

		for (w = strtok_r(line, " ", &ws); w && i < nf;
		     w = strtok_r(NULL, " ", &ws), i++) {
			const char *eq = strchr(w, '=');

			/* "perm=a,b": a list of words. */
			if (eq && !strncmp(w, keys[i], eq - w)) {
				struct json_object *l = json_object_new_array();
				char *p, *ps = NULL, *v = strdup(eq + 1);

				for (p = strtok_r(v, ",", &ps); p; p = strtok_r(NULL, ",", &ps))
					json_object_array_add(l, json_object_new_string(p));
				free(v);
				json_object_object_add(o, keys[i], l);
			} else {
				json_object_object_add(o, keys[i], json_object_new_string(w));
			}
		}
		json_object_array_add(a, o);
	}
	free(buf);
	return a;
}

static void add_u64(struct json_object *o, const char *k, const char *v)
{
	json_object_object_add(o, k, json_object_new_int64(strtoll(v, NULL, 10)));
}

/* The options of a node's table, by QMP's names. */
static struct json_object *table_options(const char *name, const char *kind)
{
	struct json_object *o = json_object_new_object();
	char type[64], params[4096], *w[64], *save = NULL, *t;
	int n = 0, i, first;

	if (bg_dm_table(name, type, sizeof(type), params, sizeof(params)))
		return o;
	for (t = strtok_r(params, " ", &save); t && n < 64; t = strtok_r(NULL, " ", &save))
		w[n++] = t;
	if (!strcmp(kind, "quorum") && n >= 2) {
		add_u64(o, "vote-threshold", w[0]);
		first = 2 + atoi(w[1]) + 1;
	} else if (!strcmp(kind, "throttle") && n >= 2) {
		json_object_object_add(o, "throttle-group", json_object_new_string(w[1]));
		return o;
	} else {
		first = 2;
	}
	for (i = first; i < n; i++) {
		if (!strcmp(w[i], "offset") && i + 1 < n)
			add_u64(o, "offset", w[++i]);
		else if (!strcmp(w[i], "size") && i + 1 < n)
			add_u64(o, "size", w[++i]);
		else if (!strcmp(w[i], "l2_cache_size") && i + 1 < n)
			add_u64(o, "l2-cache-size", w[++i]);
		else if (!strcmp(w[i], "backing") && i + 1 < n)
			i++;	/* an edge */
		else if (!strcmp(w[i], "read-pattern") && i + 1 < n)
			json_object_object_add(o, "read-pattern", json_object_new_string(w[++i]));
		else if (!strcmp(w[i], "rewrite-corrupted") || !strcmp(w[i], "blkverify"))
			json_object_object_add(o, w[i], json_object_new_boolean(1));
		else if (!strcmp(w[i], "read_only"))
			json_object_object_add(o, "read-only", json_object_new_boolean(1));
		else if (!strcmp(w[i], "error_if_no_space"))
			json_object_object_add(o, "error-if-no-space", json_object_new_boolean(1));
	}
	return o;
}

static struct json_object *node_model(const char *name)
{
	static const char *const child_keys[] = { "role", "node" };
	static const char *const parent_keys[] = { "node", "role" };
	static const char *const blocker_keys[] = { "op", "owner" };
	struct json_object *o = json_object_new_object(), *rec;
	char buf[256];
	const char *s;

	json_object_object_add(o, "node-name", json_object_new_string(name));
	bg_cfs_read(name, "kind", buf, sizeof(buf));
	json_object_object_add(o, "kind", json_object_new_string(buf));
	rec = bg_rec_read(name);
	s = bg_rec_str(rec, "driver");
	json_object_object_add(o, "driver", json_object_new_string(s ? s : buf));
	if (strcmp(buf, "host_device"))
		json_object_object_add(o, "options", table_options(name, buf));
	else
		json_object_object_add(o, "options", json_object_new_object());
	bg_cfs_read(name, "size", buf, sizeof(buf));
	add_u64(o, "size", buf);
	bg_cfs_read(name, "read_only", buf, sizeof(buf));
	json_object_object_add(o, "read-only", json_object_new_boolean(buf[0] == '1'));
	bg_cfs_read(name, "dev", buf, sizeof(buf));
	json_object_object_add(o, "dev", json_object_new_string(buf));
	json_object_object_add(o, "id", json_object_new_boolean(!!bg_rec_str(rec, "id")));
	json_object_object_add(o, "bgraph", json_object_new_boolean(!!rec));
	s = bg_rec_str(rec, "filename");
	if (s)
		json_object_object_add(o, "filename", json_object_new_string(s));
	s = bg_rec_str(rec, "loop");
	if (s)
		json_object_object_add(o, "loop", json_object_new_string(s));
	json_object_object_add(o, "children", cfs_lines(name, "children", child_keys, 2));
	json_object_object_add(o, "parents", cfs_lines(name, "parents", parent_keys, 2));
	json_object_object_add(o, "blockers", cfs_lines(name, "blockers", blocker_keys, 2));
	json_object_put(rec);
	return o;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Add @name and, recursively, its children to @nodes (once each). */
static void model_add(struct json_object *nodes, struct json_object *seen,
		      const char *name)
{
	struct json_object *n, *ch;
	size_t i;

	if (json_object_object_get_ex(seen, name, NULL))
		return;
	json_object_object_add(seen, name, NULL);
	n = node_model(name);
	json_object_array_add(nodes, n);
	json_object_object_get_ex(n, "children", &ch);
	for (i = 0; i < json_object_array_length(ch); i++) {
		struct json_object *c = json_object_array_get_idx(ch, i), *v;

		if (json_object_object_get_ex(c, "node", &v))
			model_add(nodes, seen, json_object_get_string(v));
	}
}

static struct json_object *model(const char *only)
{
	static const char *const perm_keys[] = { "role", "child", "perm", "shared" };
	struct json_object *m = json_object_new_object();
	struct json_object *nodes = json_object_new_array();
	struct json_object *edges = json_object_new_array();
	struct json_object *seen = json_object_new_object();
	char **names = NULL;
	size_t n = 0, i, j;
	struct dirent *d;
	DIR *dir;

	dir = opendir(BG_CFS "/nodes");
	while (dir && (d = readdir(dir))) {
		if (d->d_name[0] == '.')
			continue;
		names = realloc(names, (n + 1) * sizeof(*names));
		names[n++] = strdup(d->d_name);
	}
	if (dir)
		closedir(dir);
	if (n)
		qsort(names, n, sizeof(*names), by_name);
	if (only) {
		model_add(nodes, seen, only);
	} else {
		for (i = 0; i < n; i++)
			model_add(nodes, seen, names[i]);
	}
	for (i = 0; i < json_object_array_length(nodes); i++) {
		struct json_object *nd = json_object_array_get_idx(nodes, i), *v, *p;
		const char *name;

		json_object_object_get_ex(nd, "node-name", &v);
		name = json_object_get_string(v);
		p = cfs_lines(name, "permissions", perm_keys, 4);
		for (j = 0; j < json_object_array_length(p); j++) {
			struct json_object *e = json_object_get(json_object_array_get_idx(p, j));

			json_object_object_add(e, "parent", json_object_new_string(name));
			json_object_array_add(edges, e);
		}
		json_object_put(p);
	}
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
	json_object_put(seen);
	json_object_object_add(m, "nodes", nodes);
	json_object_object_add(m, "edges", edges);
	return m;
}

static const char *str(struct json_object *o, const char *k)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, k, &v) || !v)
		return "";
	return json_object_get_string(v);
}

static bool flag(struct json_object *o, const char *k)
{
	struct json_object *v;

	return json_object_object_get_ex(o, k, &v) && json_object_get_boolean(v);
}

/* "a,b,c" of a JSON array of strings. */
static void join(struct json_object *a, char *buf, size_t size)
{
	size_t i, len = 0;

	buf[0] = '\0';
	for (i = 0; i < json_object_array_length(a) && len < size; i++)
		len += snprintf(buf + len, size - len, "%s%s", i ? "," : "",
				json_object_get_string(json_object_array_get_idx(a, i)));
}

static void options_text(struct json_object *nd, char *buf, size_t size)
{
	struct json_object *opts;
	size_t len = 0;

	buf[0] = '\0';
	if (strcmp(str(nd, "driver"), str(nd, "kind")))
		len += snprintf(buf + len, size - len, "driver=%s ", str(nd, "driver"));
	if (*str(nd, "filename"))
		len += snprintf(buf + len, size - len, "filename=%s ", str(nd, "filename"));
	if (*str(nd, "loop") && len < size)
		len += snprintf(buf + len, size - len, "loop=%s ", str(nd, "loop"));
	json_object_object_get_ex(nd, "options", &opts);
	json_object_object_foreach(opts, k, v) {
		if (len < size)
			len += snprintf(buf + len, size - len, "%s=%s ", k,
					json_object_get_string(v));
	}
	if (len && len < size)
		buf[len - 1] = '\0';
}


/* An edge's perm and shared lists, joined, into @perm and @shared. */
static void edge_perms(struct json_object *e, char *perm, char *shared,
		       size_t size)
{
	struct json_object *v;

	json_object_object_get_ex(e, "perm", &v);
	join(v, perm, size);
	json_object_object_get_ex(e, "shared", &v);
	join(v, shared, size);
}
static void print_text(struct json_object *m)
{
	struct json_object *nodes, *edges, *nd, *e, *b, *v;
	char opts[1024], perm[128], shared[128];
	size_t i, j;

	json_object_object_get_ex(m, "nodes", &nodes);
	json_object_object_get_ex(m, "edges", &edges);
	printf("%-24s %-12s %14s %-3s %s\n", "NODE", "KIND", "SIZE", "RO", "OPTIONS");
	for (i = 0; i < json_object_array_length(nodes); i++) {
		nd = json_object_array_get_idx(nodes, i);
		options_text(nd, opts, sizeof(opts));
		json_object_object_get_ex(nd, "size", &v);
		printf("%-24s %-12s %14lld %-3s %s%s\n", str(nd, "node-name"),
		       flag(nd, "id") ? "id" : str(nd, "kind"),
		       (long long)json_object_get_int64(v),
		       flag(nd, "read-only") ? "ro" : "rw",
		       flag(nd, "id") ? "guest device " : "", opts);
	}
	printf("\n%-24s %-12s %-24s %s\n", "PARENT", "ROLE", "CHILD", "PERMISSIONS");
	for (i = 0; i < json_object_array_length(edges); i++) {
		e = json_object_array_get_idx(edges, i);
		edge_perms(e, perm, shared, sizeof(perm));
		printf("%-24s %-12s %-24s perm=%s shared=%s\n", str(e, "parent"),
		       str(e, "role"), str(e, "child"), perm, shared);
	}
	printf("\nBLOCKERS\n");
	for (i = 0; i < json_object_array_length(nodes); i++) {
		nd = json_object_array_get_idx(nodes, i);
		json_object_object_get_ex(nd, "blockers", &b);
		for (j = 0; j < json_object_array_length(b); j++)
			printf("%s %s %s\n", str(nd, "node-name"),
			       str(json_object_array_get_idx(b, j), "op"),
			       str(json_object_array_get_idx(b, j), "owner"));
	}
}

static void print_dot(struct json_object *m, FILE *f)
{
	struct json_object *nodes, *edges, *nd, *e, *v, *b;
	char opts[1024], perm[128], shared[128];
	size_t i, j;

	json_object_object_get_ex(m, "nodes", &nodes);
	json_object_object_get_ex(m, "edges", &edges);
	fprintf(f, "digraph bgraph {\n\trankdir=TB;\n\tnode [shape=box, fontname=\"monospace\"];\n");
	for (i = 0; i < json_object_array_length(nodes); i++) {
		nd = json_object_array_get_idx(nodes, i);
		options_text(nd, opts, sizeof(opts));
		json_object_object_get_ex(nd, "size", &v);
		fprintf(f, "\t\"%s\" [label=\"%s\\n%s, %lld bytes, %s\\n%s", str(nd, "node-name"),
			str(nd, "node-name"), flag(nd, "id") ? "id (guest device)" : str(nd, "kind"),
			(long long)json_object_get_int64(v),
			flag(nd, "read-only") ? "read-only" : "read-write", opts);
		json_object_object_get_ex(nd, "blockers", &b);
		for (j = 0; j < json_object_array_length(b); j++)
			fprintf(f, "\\nblocker: %s %s",
				str(json_object_array_get_idx(b, j), "op"),
				str(json_object_array_get_idx(b, j), "owner"));
		fprintf(f, "\"%s];\n", flag(nd, "id") ? ", shape=ellipse" :
			!strcmp(str(nd, "kind"), "host_device") ? ", style=dashed" : "");
	}
	for (i = 0; i < json_object_array_length(edges); i++) {
		e = json_object_array_get_idx(edges, i);
		edge_perms(e, perm, shared, sizeof(perm));
		fprintf(f, "\t\"%s\" -> \"%s\" [label=\"%s\\nperm: %s\\nshared: %s\"];\n",
			str(e, "parent"), str(e, "child"), str(e, "role"), perm, shared);
	}
	fprintf(f, "}\n");
}

int bg_show(const char *node, enum bg_show_fmt fmt, const char *svg)
{
	struct json_object *m;
	char cmd[4200];
	int r = 0, st;
	FILE *p;

	if (node && !bg_cfs_node(node))
		return bg_error(node, "no such node");
	if (!node && access(BG_CFS, F_OK))
		return bg_error("-", "no %s: is dm-bgraph loaded?", BG_CFS);
	m = model(node);
	switch (fmt) {
	case BG_SHOW_TEXT:
		print_text(m);
		break;
	case BG_SHOW_JSON:
		printf("%s\n", json_object_to_json_string_ext(m, JSON_C_TO_STRING_PRETTY |
							       JSON_C_TO_STRING_NOSLASHESCAPE));
		break;
	case BG_SHOW_DOT:
		print_dot(m, stdout);
		break;
	case BG_SHOW_SVG:
		if (strchr(svg, '\'')) {
			r = bg_error(svg, "a file name with a quote is not supported");
			break;
		}
		snprintf(cmd, sizeof(cmd), "dot -Tsvg -o '%s'", svg);
		p = popen(cmd, "w");
		if (!p) {
			r = bg_error(svg, "cannot run dot: %s", strerror(errno));
			break;
		}
		print_dot(m, p);
		st = pclose(p);
		if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st))
			r = bg_error(svg, "dot -Tsvg failed (is graphviz installed?)");
		break;
	}
	json_object_put(m);
	return r;
}
