// SPDX-License-Identifier: GPL-2.0
/*
 * bgraph: dm-bgraph's graph from the command line, as QMP's block
 * commands: add (blockdev-add), del (blockdev-del), show
 * (query-named-block-nodes and a picture).  See bgraph.8 and
 * Documentation/bgraph-cli.rst.
 *
 * Errors are one line on stderr, "bgraph: <node>: <reason>", and a
 * non-zero exit status; a failed add leaves nothing it made behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bgraph.h"
#include "plan.h"
#include "sys.h"

__attribute__((format(printf, 2, 3)))
int bg_error(const char *node, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "bgraph: %s: ", node);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

static void usage(FILE *f)
{
	fputs("Usage: bgraph add FILE|-\n"
	      "       bgraph del NODE\n"
	      "       bgraph show [NODE] [--json | --dot | --svg FILE]\n"
	      "       bgraph snapshot NODE --overlay PATH [--node-name NAME] [--format qcow2]\n"
	      "       bgraph snapshot --below-filters ID --overlay-dir DIR\n"
	      "       bgraph insert (--above NODE | --edge PARENT:ROLE) FILTER.json\n"
	      "       bgraph remove-filter NODE\n"
	      "       bgraph reopen NODE key=value...\n"
	      "       bgraph transaction FILE|-\n"
	      "       bgraph recover\n"
	      "       bgraph --help\n"
	      "\n"
	      "dm-bgraph's block graph, as QEMU's QMP block commands.\n"
	      "\n"
	      "  add FILE|-   blockdev-add: create the node tree FILE (or stdin) gives, in\n"
	      "               QMP's JSON shape, children first, all or nothing; a top-level\n"
	      "               \"id\" also makes the guest device /dev/mapper/<id>\n"
	      "  del NODE     blockdev-del: remove NODE (an id or a node-name) and the\n"
	      "               children bgraph made for it; refused while NODE has parents\n"
	      "               or blockers\n"
	      "  show [NODE]  query-named-block-nodes: every node (or NODE and the nodes\n"
	      "               below it) with kind, size, read-only, options, edges with\n"
	      "               role and permissions, and blockers\n"
	      "      --json       as JSON, for programs\n"
	      "      --dot        as a Graphviz graph\n"
	      "      --svg FILE   as an SVG picture in FILE (dot -Tsvg)\n"
	      "  snapshot NODE  blockdev-snapshot-sync: a new qcow2 overlay image PATH over\n"
	      "               NODE's image, its node (NAME, else NODE-snapN) with NODE as\n"
	      "               backing, and NODE's parents switched to it at one instant;\n"
	      "               all or nothing\n"
	      "  snapshot --below-filters ID  every node below the filters (throttle,\n"
	      "               quorum, raw passthroughs) under ID at one instant, overlays\n"
	      "               DIR/<node>.qcow2; the filters stay on top\n"
	      "  insert       put the filter FILTER.json (throttle or raw; its file is\n"
	      "               the node) above NODE for all its parents, or on one edge\n"
	      "  remove-filter NODE  reconnect NODE's parents to its child, delete it\n"
	      "  reopen NODE key=value...  blockdev-reopen: change options of a live\n"
	      "               node: read-only, discard, detect-zeroes (any node; they\n"
	      "               follow to the implicit children that inherited them),\n"
	      "               backing=NODE|null, l2-cache-size (qcow2), throttle-group\n"
	      "               (throttle), rewrite-corrupted, read-pattern (quorum);\n"
	      "               the others keep their values\n"
	      "  transaction FILE|-  QMP transaction: its blockdev-snapshot-sync\n"
	      "               actions at one instant (one suspend), all or nothing\n"
	      "  recover      finish or undo the change a killed bgraph left, from\n"
	      "               /run/bgraph/change.json (every verb that changes the\n"
	      "               graph does it first)\n"
	      "\n"
	      "Errors are one line, \"bgraph: <node>: <reason>\", exit status 1.\n"
	      "See bgraph(8).\n", f);
}

/* ---------------------------------------------------------------- */
/* add                                                              */
/* ---------------------------------------------------------------- */

static bool env_name_used(void *arg, const char *name)
{
	(void)arg;
	return bg_cfs_node(name) || bg_dm_exists(name);
}

static bool env_lookup(void *arg, struct bg_node *n)
{
	struct json_object *rec;
	char buf[64];
	const char *f;

	(void)arg;
	if (bg_cfs_read(n->name, "dev", n->dev, sizeof(n->dev)) ||
	    bg_cfs_read(n->name, "size", buf, sizeof(buf)))
		return false;
	n->bytes = strtoull(buf, NULL, 10);
	if (!bg_cfs_read(n->name, "read_only", buf, sizeof(buf)))
		n->read_only = buf[0] == '1';
	rec = bg_rec_read(n->name);
	f = bg_rec_str(rec, "filename");
	if (f)
		n->filename = strdup(f);
	json_object_put(rec);
	return true;
}

/* What an add made, to undo it. */
struct made {
	char name[BG_NAME_MAX + 1];
	char loop[32];
	char file[PATH_MAX];
	bool dm, rec;
};

struct add {
	struct bg_plan p;
	struct made *made;
	unsigned int nmade;
	const char *top;
};

static struct made *made_new(struct add *a, const char *name)
{
	struct made *m = realloc(a->made, (a->nmade + 1) * sizeof(*m));

	if (!m)
		return NULL;
	a->made = m;
	m = &a->made[a->nmade++];
	memset(m, 0, sizeof(*m));
	snprintf(m->name, sizeof(m->name), "%s", name);
	return m;
}

/* Undo, last made first. */
static void add_undo(struct add *a)
{
	unsigned int i;

	for (i = a->nmade; i-- > 0;) {
		struct made *m = &a->made[i];

		if (m->dm)
			bg_dm_remove(m->name);
		if (m->loop[0])
			bg_loop_detach(m->loop, m->file);
		if (m->rec)
			bg_rec_remove(m->name);
	}
}

static const char *const discard_words[] = { "ignore", "unmap" };
static const char *const dz_words[] = { "off", "on", "unmap" };

static int record(struct add *a, struct made *m, struct bg_node *n)
{
	struct json_object *r = json_object_new_object(), *set;
	int ret;

	json_object_object_add(r, "node-name", json_object_new_string(n->name));
	json_object_object_add(r, "driver", json_object_new_string(bg_driver_name(n->driver)));
	json_object_object_add(r, "owner", json_object_new_string(a->top));
	json_object_object_add(r, "implicit", json_object_new_boolean(n->implicit));
	if (n->filename)
		json_object_object_add(r, "filename", json_object_new_string(m->file[0] ? m->file : n->filename));
	if (m->loop[0]) {
		json_object_object_add(r, "loop", json_object_new_string(m->loop));
		json_object_object_add(r, "loop-dev", json_object_new_string(n->leaf_dev));
	}
	json_object_object_add(r, "read-only", json_object_new_boolean(n->read_only));
	json_object_object_add(r, "discard", json_object_new_string(discard_words[n->discard]));
	json_object_object_add(r, "detect-zeroes", json_object_new_string(dz_words[n->detect_zeroes]));
	/*
	 * For reopen: the node that made this one (its options follow that
	 * node's), and the options it sets itself, which it keeps.
	 */
	if (n->implicit && n->parent)
		json_object_object_add(r, "inherits-from", json_object_new_string(n->parent->name));
	set = json_object_new_array();
	if (n->read_only_set)
		json_object_array_add(set, json_object_new_string("read-only"));
	if (n->discard_set)
		json_object_array_add(set, json_object_new_string("discard"));
	if (n->detect_zeroes_set)
		json_object_array_add(set, json_object_new_string("detect-zeroes"));
	json_object_object_add(r, "explicit", set);
	ret = bg_rec_write(n->name, r);
	json_object_put(r);
	if (!ret)
		m->rec = true;
	return ret;
}

/* Read @n's qcow2 header from its file child; expand its backing chain. */
static int add_qcow2_header(struct add *a, struct bg_node *n)
{
	struct bg_node *f = bg_node_child(n, "file"), *b;
	char path[64], bname[1024], bfmt[16];
	struct bg_err err;
	size_t len = 0;
	uint8_t *buf = NULL;
	long need = 4096;
	int fd;

	if (bg_dev_path(f->dev, path, sizeof(path)))
		return bg_error(n->name, "cannot find the device of its file '%s'", f->name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return bg_error(n->name, "cannot open %s: %s", path, strerror(errno));
	for (;;) {
		ssize_t r;

		size_t asked = need;

		free(buf);
		buf = malloc(asked);
		if (!buf) {
			bg_error(n->name, "out of memory");
			goto fail;
		}
		r = pread(fd, buf, asked, 0);
		if (r < 0) {
			bg_error(n->name, "cannot read %s: %s", path, strerror(errno));
			goto fail;
		}
		len = r;
		need = bg_qcow2_header(n, buf, len, f->bytes, bname, bfmt, &err);
		if (need > 0 && len < asked) {
			bg_error(n->name, "short read of the image header from %s", path);
			goto fail;
		}
		if (need < 0) {
			bg_error(err.node, "%s", err.msg);
			goto fail;
		}
		if (!need || (size_t)need <= len)
			break;
	}
	close(fd);
	free(buf);
	n->header_read = true;
	if (!bname[0])
		return 0;
	if (bg_plan_add_backing(&a->p, n, bname, bfmt, &err))
		return bg_error(err.node, "%s", err.msg);
	/* The backing node and its file, new names: free ones? */
	b = bg_node_child(n, "backing");
	if (env_name_used(NULL, b->name))
		return bg_error(b->name, "a node or device of this name exists");
	b = bg_node_child(b, "file");
	if (env_name_used(NULL, b->name))
		return bg_error(b->name, "a node or device of this name exists");
	return 0;
fail:
	close(fd);
	free(buf);
	return 1;
}

static int add_node(struct add *a, struct bg_node *n)
{
	char params[4096];
	struct bg_err err;
	struct made *m;

	m = made_new(a, n->name);
	if (!m)
		return bg_error(n->name, "out of memory");
	switch (n->driver) {
	case BG_FILE:
		if (!realpath(n->filename, m->file))
			return bg_error(n->name, "%s: %s", n->filename, strerror(errno));
		if (bg_loop_attach(m->file, n->read_only, m->loop, sizeof(m->loop),
				   n->leaf_dev, sizeof(n->leaf_dev), &n->bytes)) {
			m->loop[0] = '\0';
			return bg_error(n->name, "%s", bg_sys_error);
		}
		n->bytes &= ~511ULL;
		/* Backing names in its header resolve against the real path. */
		free(n->filename);
		n->filename = strdup(m->file);
		if (!n->filename)
			return bg_error(n->name, "out of memory");
		break;
	case BG_HOST_DEVICE:
		if (bg_blockdev(n->filename, n->leaf_dev, sizeof(n->leaf_dev), &n->bytes))
			return bg_error(n->name, "%s", bg_sys_error);
		n->bytes &= ~511ULL;
		break;
	default:
		if (bg_node_size(n, &err))
			return bg_error(err.node, "%s", err.msg);
		break;
	}
	if (!n->bytes)
		return bg_error(n->name, "size is 0");
	if (bg_node_params(n, params, sizeof(params)) >= (int)sizeof(params))
		return bg_error(n->name, "table too long");
	/* The record first: a bgraph killed now leaves one to clean up by. */
	if (record(a, m, n))
		return bg_error(n->name, "%s", bg_sys_error);
	if (bg_dm_create(n->name, bg_node_target(n), n->bytes / 512, params,
			 n->read_only, n->dev, sizeof(n->dev)))
		return bg_error(n->name, "%s", bg_sys_error);
	m->dm = true;
	return 0;
}

static int add_id(struct add *a)
{
	struct bg_node *top = a->p.top;
	struct json_object *r;
	char params[64];
	struct made *m;
	char dev[32];

	m = made_new(a, a->p.id);
	if (!m)
		return bg_error(a->p.id, "out of memory");
	r = json_object_new_object();
	json_object_object_add(r, "id", json_object_new_string(a->p.id));
	json_object_object_add(r, "node-name", json_object_new_string(top->name));
	json_object_object_add(r, "owner", json_object_new_string(a->p.id));
	if (bg_rec_write(a->p.id, r)) {
		json_object_put(r);
		return bg_error(a->p.id, "%s", bg_sys_error);
	}
	json_object_put(r);
	m->rec = true;
	bg_id_params(top, params, sizeof(params));
	if (bg_dm_create(a->p.id, "bgraph-raw", top->bytes / 512, params,
			 top->read_only, dev, sizeof(dev)))
		return bg_error(a->p.id, "%s", bg_sys_error);
	m->dm = true;
	return 0;
}

/* Checks that need the system but make nothing: throttle groups. */
static int add_precheck(struct add *a)
{
	unsigned int i;
	char path[512];
	struct stat st;

	for (i = 0; i < a->p.norder; i++) {
		struct bg_node *n = a->p.order[i];

		if (n->driver != BG_THROTTLE)
			continue;
		snprintf(path, sizeof(path), BG_CFS "/throttle-groups/%s", n->group);
		if (stat(path, &st) || !S_ISDIR(st.st_mode))
			return bg_error(n->name, "throttle group '%s' does not exist (mkdir %s)",
					n->group, path);
	}
	return 0;
}

/*
 * The nodes the add makes (its plan's order, and the id), and the files it
 * puts loop devices over, into the record, written: before it makes any,
 * and again when a backing chain from a header adds nodes.
 */
static int add_journal(struct add *a)
{
	struct json_object *nodes = json_object_new_array();
	struct json_object *loops = json_object_new_array();
	char real[PATH_MAX];
	unsigned int i;

	for (i = 0; i < a->p.norder; i++) {
		struct bg_node *n = a->p.order[i];

		json_object_array_add(nodes, json_object_new_string(n->name));
		if (n->driver == BG_FILE && realpath(n->filename, real))
			json_object_array_add(loops, json_object_new_string(real));
	}
	if (a->p.id)
		json_object_array_add(nodes, json_object_new_string(a->p.id));
	bg_jr_set("nodes", nodes);
	bg_jr_set("loops", loops);
	return bg_jr_write(NULL);
}

char *read_input(const char *file, size_t *len)
{
	FILE *f = strcmp(file, "-") ? fopen(file, "re") : stdin;
	size_t cap = 0, n;
	char *buf = NULL, *nb;

	*len = 0;
	if (!f)
		return NULL;
	do {
		if (*len + 4096 > cap) {
			cap = cap ? cap * 2 : 8192;
			nb = realloc(buf, cap);
			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
		}
		n = fread(buf + *len, 1, cap - *len - 1, f);
		*len += n;
	} while (n > 0 && *len < (16 << 20));
	if (buf && ferror(f)) {
		free(buf);
		buf = NULL;
	}
	if (f != stdin)
		fclose(f);
	return buf;
}

int bg_add_text(const char *text, size_t len, const char *source,
		char *top, size_t topsize)
{
	struct bg_env env = {
		.name_used = env_name_used,
		.lookup = env_lookup,
	};
	struct add a = { 0 };
	struct bg_err err;
	unsigned int i;
	bool own;
	int r = 1;

	/* An add of its own, or the filter of an insert (in its record). */
	own = bg_jr_begin("add");

	if (bg_plan_parse(&a.p, text, len, source, &env, &err)) {
		bg_error(err.node, "%s", err.msg);
		goto out;
	}
	a.top = a.p.top->name;
	if (add_precheck(&a))
		goto out;
	if (add_journal(&a))
		goto out;
	bg_test_step("record add");
	for (i = 0; i < a.p.norder; i++) {
		struct bg_node *n = a.p.order[i];
		unsigned int before = a.p.norder;

		if (n->driver == BG_QCOW2 && !n->header_read) {
			if (add_qcow2_header(&a, n))
				goto undo;
			if (a.p.norder != before) {
				if (add_journal(&a))
					goto undo;
				i--;	/* its backing chain comes first */
				continue;
			}
		}
		if (add_node(&a, n))
			goto undo;
		bg_test_step("add %s", n->name);
	}
	if (a.p.id && add_id(&a))
		goto undo;
	if (a.p.id)
		bg_test_step("add %s", a.p.id);
	if (top)
		snprintf(top, topsize, "%s", a.p.id ? a.p.id : a.top);
	r = 0;
	goto out;
undo:
	add_undo(&a);
out:
	if (own)
		bg_jr_end();
	free(a.made);
	bg_plan_free(&a.p);
	return r;
}

static int cmd_add(const char *file)
{
	size_t len;
	char *text;
	int r;

	text = read_input(file, &len);
	if (!text)
		return bg_error(file, "cannot read: %s", strerror(errno ? errno : EIO));
	r = bg_add_text(text, len, file, NULL, 0);
	free(text);
	return r;
}

/* ---------------------------------------------------------------- */
/* del                                                              */
/* ---------------------------------------------------------------- */

/* Remove @name's device, its loop device and its record. */
static int del_one(const char *name)
{
	struct json_object *rec = bg_rec_read(name);
	const char *loop = bg_rec_str(rec, "loop");
	int r = 0;

	if (bg_dm_exists(name) && bg_dm_remove(name)) {
		r = bg_error(name, "%s", bg_sys_error[0] ? bg_sys_error : "cannot remove");
		goto out;
	}
	if (loop && bg_loop_detach(loop, bg_rec_str(rec, "filename")))
		r = bg_error(name, "%s", bg_sys_error);
	bg_rec_remove(name);
out:
	json_object_put(rec);
	return r;
}

/*
 * Does @child go with its maker @owner's removal: an implicit node of
 * @owner's tree that no node uses any more (its parents removed first)?
 */
static bool del_follows(const char *child, const char *owner)
{
	struct json_object *rec = bg_rec_read(child), *v;
	const char *o = bg_rec_str(rec, "owner");
	bool implicit = false, ok;
	char parents[64];

	if (rec && json_object_object_get_ex(rec, "implicit", &v))
		implicit = json_object_get_boolean(v);
	ok = implicit && o && owner && !strcmp(o, owner);
	json_object_put(rec);
	return ok && !bg_cfs_read(child, "parents", parents, sizeof(parents)) &&
	       !parents[0];
}

int cmd_del(const char *name)
{
	/* Its own change: insert and remove-filter call it inside theirs. */
	struct bg_change_id id;
	const char *ch = bg_change_name(&id, "del");
	char buf[8192], *gone[1024], *line, *save = NULL;
	struct json_object *rec;
	unsigned int ngone = 0, i;
	const char *owner;
	int r = 0;

	if (!bg_cfs_node(name))
		return bg_error(name, "no such node");
	if (!bg_dm_exists(name))
		return bg_error(name, "not a dm device (a leaf: delete its parents)");
	if (!bg_cfs_read(name, "parents", buf, sizeof(buf)) && buf[0]) {
		for (i = 0; buf[i]; i++)
			if (buf[i] == '\n')
				buf[i] = ',';
		return bg_error(name, "the node has parents: %s", buf);
	}
	if (!bg_cfs_read(name, "blockers", buf, sizeof(buf)) && buf[0]) {
		buf[strcspn(buf, "\n")] = '\0';
		return bg_error(name, "the node is blocked by: %s", buf);
	}
	if (bg_change_begin(ch, "remove", &name, 1))
		return bg_error(bg_change_node, "%s", bg_sys_error);
	rec = bg_rec_read(name);
	owner = bg_rec_str(rec, "owner");
	/* An id device stands alone: its node stays. */
	if (bg_rec_str(rec, "id")) {
		json_object_put(rec);
		r = del_one(name);
		bg_change_end(ch);
		return r;
	}
	gone[ngone++] = strdup(name);
	/*
	 * The node, then each implicit child of its tree once no node uses
	 * it: a child met again through another parent is looked at again.
	 */
	for (i = 0; i < ngone && !r; i++) {
		if (i && !del_follows(gone[i], owner))
			continue;
		if (!bg_cfs_read(gone[i], "children", buf, sizeof(buf))) {
			for (line = strtok_r(buf, "\n", &save); line;
			     line = strtok_r(NULL, "\n", &save)) {
				char *child = strchr(line, ' ');

				if (child && owner && ngone < 1024)
					gone[ngone++] = strdup(child + 1);
			}
		}
		r = del_one(gone[i]);
	}
	for (i = 0; i < ngone; i++)
		free(gone[i]);
	json_object_put(rec);
	bg_change_end(ch);
	return r;
}

/* The verbs that take the lock (and recover first). */
static bool changes_graph(const char *verb)
{
	static const char *const verbs[] = { "add", "del", "snapshot", "insert",
		"remove-filter", "reopen", "transaction", "recover", NULL };
	unsigned int i;

	for (i = 0; verbs[i]; i++)
		if (!strcmp(verb, verbs[i]))
			return true;
	return false;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "json", no_argument, NULL, 'j' },
		{ "dot", no_argument, NULL, 'd' },
		{ "svg", required_argument, NULL, 's' },
		{ "overlay", required_argument, NULL, 'o' },
		{ "node-name", required_argument, NULL, 'n' },
		{ "format", required_argument, NULL, 'f' },
		{ "below-filters", no_argument, NULL, 'b' },
		{ "overlay-dir", required_argument, NULL, 'D' },
		{ "above", required_argument, NULL, 'a' },
		{ "edge", required_argument, NULL, 'e' },
		{ 0 }
	};
	enum bg_show_fmt fmt = BG_SHOW_TEXT;
	const char *svg = NULL, *verb, *overlay = NULL, *nname = NULL,
		   *format = NULL, *odir = NULL, *above = NULL, *edge = NULL;
	bool below = false;
	int c, n, r;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage(stdout);
			return 0;
		case 'j':
			fmt = BG_SHOW_JSON;
			break;
		case 'd':
			fmt = BG_SHOW_DOT;
			break;
		case 's':
			fmt = BG_SHOW_SVG;
			svg = optarg;
			break;
		case 'o':
			overlay = optarg;
			break;
		case 'n':
			nname = optarg;
			break;
		case 'f':
			format = optarg;
			break;
		case 'b':
			below = true;
			break;
		case 'D':
			odir = optarg;
			break;
		case 'a':
			above = optarg;
			break;
		case 'e':
			edge = optarg;
			break;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	verb = argv[optind++];
	bg_sys_init();
	n = argc - optind;
	if (!strcmp(verb, "show") && n <= 1)
		return bg_show(n ? argv[optind] : NULL, fmt, svg);
	if (!strcmp(verb, "help")) {
		usage(stdout);
		return 0;
	}
	if (fmt != BG_SHOW_TEXT || !changes_graph(verb)) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(verb, "recover") && !n)
		return bg_recover();
	/* The verbs that change the graph: one at a time, each after recovery. */
	r = 2;
	if (!strcmp(verb, "add") && n == 1)
		r = bg_lock() ?: cmd_add(argv[optind]);
	else if (!strcmp(verb, "del") && n == 1)
		r = bg_lock() ?: cmd_del(argv[optind]);
	else if (!strcmp(verb, "snapshot") && n == 1 && overlay && !below)
		r = bg_lock() ?: bg_snapshot(argv[optind], overlay, nname, format);
	else if (!strcmp(verb, "snapshot") && n == 1 && below && odir && !overlay && !nname)
		r = bg_lock() ?: bg_snapshot_below(argv[optind], odir);
	else if (!strcmp(verb, "insert") && n == 1 && !above != !edge)
		r = bg_lock() ?: bg_insert(above, edge, argv[optind]);
	else if (!strcmp(verb, "reopen") && n >= 1)
		r = bg_lock() ?: bg_reopen(argv[optind], n - 1, argv + optind + 1);
	else if (!strcmp(verb, "remove-filter") && n == 1)
		r = bg_lock() ?: bg_remove_filter(argv[optind]);
	else if (!strcmp(verb, "transaction") && n == 1)
		r = bg_lock() ?: bg_transaction(argv[optind]);
	if (r == 2)
		usage(stderr);
	/* Done or undone: the record goes. */
	bg_jr_end();
	return r;
}
