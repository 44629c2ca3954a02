// SPDX-License-Identifier: GPL-2.0
/*
 * bgraph's live graph changes: snapshot (QMP blockdev-snapshot-sync).
 *
 * The dmsetup steps of Documentation/bgraph.rst ("Live graph changes"):
 * suspend the node's parents (their edges on it are parked), make the
 * overlay node with the node as its backing child, load each parent's
 * table with the overlay for the node, resume them.  A write completed
 * before the suspend is in the node's image, one after the resume in the
 * overlay.  Any failure undoes the steps done, newest first, and resumes
 * the parents with their old tables.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "bgraph.h"
#include "plan.h"
#include "sys.h"
#include "txn.h"

#define MAX_PARENTS	16
#define MAX_NODES	16

/* A parent whose table changes: @old is live, @new replaces it. */
struct parent {
	char name[160];
	struct bg_dm_target old, new;
	bool suspended, loaded, live_new;
};

/* A device number its parents' tables name, and what they name instead. */
struct swap {
	char node[160];
	char from[32], to[32];
	char to_node[160];		/* the node whose device @to is */
};

/*
 * One live change: @nsw nodes swapped for others in the tables of their
 * parents @p (all of them, or the one @only).  @make makes the new nodes
 * (before the suspend, or after it with @make_suspended: an overlay,
 * whose backing edge conflicts with the parents' live edges until they
 * are parked) and sets each swap's @to; @unmake removes them, @park
 * suspends them (see change_undo()).
 */
struct change {
	struct parent p[MAX_PARENTS];
	unsigned int np;
	struct swap sw[MAX_NODES];
	unsigned int nsw;
	const char *only;		/* a parent, or NULL for all */
	bool make_suspended;
	int (*make)(struct change *c);
	void (*unmake)(struct change *c);
	void (*park)(struct change *c);
	void *arg;
	struct bg_change_id id;		/* its op blockers (change_block()) */
};

/*
 * The image file under @node: down "file" edges through raw nodes without
 * a window to a loop device, whose backing file it is.
 */
static int image_of(const char *node, char *path, size_t size)
{
	char buf[4096], name[160], attr[PATH_MAX], type[64], params[4096];
	unsigned int depth;
	FILE *f;

	snprintf(name, sizeof(name), "%s", node);
	for (depth = 0; depth < 8; depth++) {
		char *line, *save = NULL, *child = NULL;

		if (bg_cfs_read(name, "children", buf, sizeof(buf)))
			return -1;
		for (line = strtok_r(buf, "\n", &save); line;
		     line = strtok_r(NULL, "\n", &save))
			if (!strncmp(line, "file ", 5))
				child = line + 5;
		if (!child)
			break;
		snprintf(name, sizeof(name), "%s", child);
		if (!strncmp(name, "loop", 4) && !bg_dm_exists(name)) {
			snprintf(attr, sizeof(attr), "/sys/block/%s/loop/backing_file", name);
			f = fopen(attr, "r");
			if (!f || !fgets(path, size, f)) {
				if (f)
					fclose(f);
				return -1;
			}
			fclose(f);
			path[strcspn(path, "\n")] = '\0';
			return 0;
		}
		if (bg_dm_table(name, type, sizeof(type), params, sizeof(params)) ||
		    strcmp(type, "bgraph-raw") || strchr(params, ' '))
			break;		/* a window, or not a passthrough */
	}
	return -1;
}

/*
 * For the tests of the rollback: BGRAPH_TEST_FAIL=create or load makes
 * that step fail once it is done (lvm2's test hooks do the same).  A
 * refused resume is not simulated: a table's edges were checked at its
 * load against every edge but parked ones, so the kernel refuses the
 * resume of a table just loaded only when its own preresume fails (a
 * qcow2 parent that cannot read its image again).
 */
static bool test_fail(const char *step)
{
	const char *e = getenv("BGRAPH_TEST_FAIL");

	return e && !strcmp(e, step);
}

int bg_replace_dev(char *params, size_t size, const char *from, const char *to)
{
	char out[4096], *tok, *save = NULL, copy[4096];
	size_t len = 0;
	int found = 0;

	snprintf(copy, sizeof(copy), "%s", params);
	out[0] = '\0';
	for (tok = strtok_r(copy, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
		if (!strcmp(tok, from)) {
			tok = (char *)to;
			found = 1;
		}
		len += snprintf(out + len, len < sizeof(out) ? sizeof(out) - len : 0,
				"%s%s", len ? " " : "", tok);
	}
	if (!found || len >= sizeof(out) || len >= size)
		return -1;
	snprintf(params, size, "%s", out);
	return 0;
}

/* Add the parents of @node (from configfs) to @c, each once. */
static int change_parents(struct change *c, const char *node)
{
	char buf[4096], *line, *save = NULL;
	unsigned int i;

	if (bg_cfs_read(node, "parents", buf, sizeof(buf)))
		buf[0] = '\0';
	for (line = strtok_r(buf, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		struct parent *p;
		char name[160];

		snprintf(name, sizeof(name), "%.*s", (int)strcspn(line, " "), line);
		if (c->only && strcmp(name, c->only))
			continue;
		for (i = 0; i < c->np; i++)
			if (!strcmp(c->p[i].name, name))
				break;
		if (i < c->np)
			continue;	/* one table for all its edges */
		if (c->np == MAX_PARENTS)
			return bg_error(node, "more than %d parents", MAX_PARENTS);
		p = &c->p[c->np];
		memset(p, 0, sizeof(*p));
		snprintf(p->name, sizeof(p->name), "%s", name);
		if (bg_dm_target(p->name, &p->old))
			return bg_error(p->name, "%s", bg_sys_error);
		p->new = p->old;
		c->np++;
	}
	return 0;
}

/*
 * Undo: the parents back on their old tables, the new nodes gone, resumed.
 * A parent whose new table went live (resumed, or a refused resume, which
 * swaps the tables all the same) gets its old table loaded, with the new
 * nodes suspended (an overlay's backing edge parked), and resumed.
 */
static void change_undo(struct change *c)
{
	bool parked = false;
	unsigned int i;

	/* Past the kernel's commit point: a recovery must undo too. */
	for (i = 0; i < c->np; i++)
		if (c->p[i].live_new) {
			bg_jr_write("undo");
			break;
		}

	for (i = 0; i < c->np; i++) {
		struct parent *p = &c->p[i];

		if (p->live_new) {
			if (bg_dm_suspend(p->name) == 0)
				p->suspended = true;
			if (!parked && c->park) {
				c->park(c);
				parked = true;
			}
			bg_dm_load(p->name, &p->old);
			if (!bg_dm_resume(p->name))
				p->suspended = false;
		} else if (p->loaded) {
			bg_dm_clear(p->name);
		}
	}
	if (c->unmake)
		c->unmake(c);
	for (i = c->np; i-- > 0;)
		if (c->p[i].suspended && bg_dm_resume(c->p[i].name))
			bg_error(c->p[i].name, "left suspended: %s (bgraph show; dmsetup resume)",
				 bg_sys_error);
}

/* Fail: undo, then the error line (undoing may overwrite bg_sys_error). */
__attribute__((format(printf, 3, 4)))
static int change_fail(struct change *c, const char *node, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	change_undo(c);
	return bg_error(node, "%s", msg);
}

/* Is @b below @a (down their children in configfs)? */
static bool is_below(const char *a, const char *b, unsigned int depth)
{
	char buf[4096], *line, *save = NULL;

	if (depth > 16 || bg_cfs_read(a, "children", buf, sizeof(buf)))
		return false;
	for (line = strtok_r(buf, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		const char *child = strchr(line, ' ');

		if (child++ && (!strcmp(child, b) || is_below(child, b, depth + 1)))
			return true;
	}
	return false;
}

/*
 * The parents top-down: one stacked above another (a quorum over the
 * node and over a filter over it) is suspended first, so that its
 * suspend's flush does not wait for bios held in one suspended already,
 * and resumed last.
 */
static void change_order(struct change *c)
{
	unsigned int i, j, k;
	struct parent tmp;

	for (i = 0; i < c->np; i++) {
		/* A top one of those left: none of them is above it. */
		for (j = i; j < c->np; j++) {
			for (k = i; k < c->np; k++)
				if (k != j && is_below(c->p[k].name, c->p[j].name, 0))
					break;
			if (k == c->np)
				break;
		}
		if (j == c->np || j == i)
			continue;	/* a cycle (refused by the kernel), or in place */
		tmp = c->p[i];
		c->p[i] = c->p[j];
		c->p[j] = tmp;
	}
}

/* Each parent's new table: every swapped node's number replaced. */
static int change_tables(struct change *c, bool placeholder)
{
	char ph[32];
	unsigned int i, k;

	if (placeholder)
		change_order(c);

	for (i = 0; i < c->np; i++) {
		struct parent *p = &c->p[i];

		p->new = p->old;
		for (k = 0; k < c->nsw; k++) {
			snprintf(ph, sizeof(ph), "NODE%u", k);
			if (!bg_replace_dev(p->new.params, sizeof(p->new.params),
					 c->sw[k].from, placeholder ? ph : c->sw[k].to))
				continue;
			/* A parent of some swapped nodes, not of this one. */
		}
		if (!strcmp(p->new.params, p->old.params))
			return bg_error(p->name, "its table names none of the nodes changed");
	}
	return 0;
}

/*
 * The parents' old and new tables (a node to make named NODE<k>) and the
 * swaps into the record, written.
 */
static int change_journal(struct change *c, const char *step)
{
	struct json_object *a;
	unsigned int i;

	if (!bg_jr)
		return 0;
	bg_jr_set("parents", json_object_new_array());
	for (i = 0; i < c->np; i++)
		bg_jr_parent(c->p[i].name, &c->p[i].old, &c->p[i].new);
	a = json_object_new_array();
	for (i = 0; i < c->nsw; i++) {
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "node", json_object_new_string(c->sw[i].node));
		json_object_object_add(o, "from", json_object_new_string(c->sw[i].from));
		json_object_object_add(o, "to", json_object_new_string(c->sw[i].to));
		json_object_object_add(o, "to-node", json_object_new_string(c->sw[i].to_node));
		json_object_array_add(a, o);
	}
	bg_jr_set("swaps", a);
	return bg_jr_write(step);
}

/*
 * Run @c: suspend the parents (top-down: in configfs order, a parent of
 * another is listed... each is suspended before any is loaded), make the
 * new nodes, load the parents' new tables, resume them (bottom-up).
 * Returns 0, or 1 after undoing (the error line printed).
 */
static int change_run(struct change *c)
{
	unsigned int i;

	if (!c->np)
		return 0;
	if (change_tables(c, true))
		return 1;
	/* The record before anything is touched, and complete before the suspend. */
	if (change_journal(c, "parents"))
		return 1;
	bg_test_step("record");
	if (!c->make_suspended && c->make) {
		if (c->make(c)) {
			change_undo(c);
			return 1;
		}
		if (change_journal(c, "made")) {
			change_undo(c);
			return 1;
		}
		bg_test_step("make");
	}
	for (i = 0; i < c->np; i++) {
		if (bg_dm_suspend(c->p[i].name))
			return change_fail(c, c->p[i].name, "%s", bg_sys_error);
		c->p[i].suspended = true;
		bg_test_step("suspend %s", c->p[i].name);
	}
	if (c->make_suspended && c->make && c->make(c)) {
		change_undo(c);
		return 1;
	}
	if (test_fail("create"))
		return change_fail(c, c->p[0].name, "failed for the test (BGRAPH_TEST_FAIL)");
	change_tables(c, false);
	for (i = 0; i < c->np; i++) {
		if (bg_dm_load(c->p[i].name, &c->p[i].new))
			return change_fail(c, c->p[i].name, "%s", bg_sys_error);
		c->p[i].loaded = true;
		bg_test_step("load %s", c->p[i].name);
	}
	if (test_fail("load"))
		return change_fail(c, c->p[0].name, "failed for the test (BGRAPH_TEST_FAIL)");
	/*
	 * Bottom-up.  A refused resume swapped the tables but ran no I/O on
	 * the new one: undone with the rest while no parent has resumed.
	 * Once one has, guest writes may have reached the new nodes: a later
	 * refusal is reported, not undone, and that parent stays suspended.
	 */
	for (i = c->np; i-- > 0;) {
		c->p[i].live_new = true;	/* resume swaps, even refused */
		if (!bg_dm_resume(c->p[i].name)) {
			c->p[i].suspended = false;
			bg_test_step("resume %s", c->p[i].name);
			continue;
		}
		if (i == c->np - 1)
			return change_fail(c, c->p[i].name, "%s", bg_sys_error);
		return bg_error(c->p[i].name, "changed, but this parent's resume was refused and it is left suspended: %s",
				bg_sys_error);
	}
	return 0;
}

/* ---------------------------------------------------------------- */
/* snapshot                                                         */
/* ---------------------------------------------------------------- */

struct overlay {
	char node[160];
	char dev[32];			/* the node's major:minor */
	char kind[32];
	uint64_t bytes;
	char image[PATH_MAX];		/* the node's image file */
	char path[PATH_MAX];		/* the overlay's */
	char name[64];			/* the overlay node's */
	char loop[32], loop_dev[32], over_dev[32];
	bool created_file, rec, dm;
};

struct snap {
	struct change c;
	struct bg_change_id id;
	struct overlay o[MAX_NODES];
	unsigned int no;
};

static int run_qemu_img(struct overlay *o)
{
	char size[32];
	pid_t pid;
	int st;

	snprintf(size, sizeof(size), "%" PRIu64, o->bytes);
	pid = fork();
	if (pid < 0)
		return -1;
	if (!pid) {
		int fd = open("/dev/null", O_WRONLY);

		if (fd >= 0)
			dup2(fd, STDOUT_FILENO);
		/* -u: the size is given; the backing image is in use. */
		execlp("qemu-img", "qemu-img", "create", "-q", "-f", "qcow2",
		       "-u", "-b", o->image, "-F",
		       strcmp(o->kind, "qcow2") ? "raw" : "qcow2", o->path, size,
		       (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
		return -1;
	return 0;
}

static void snap_unmake(struct change *c)
{
	struct snap *s = c->arg;
	unsigned int i;

	for (i = s->no; i-- > 0;) {
		struct overlay *o = &s->o[i];

		if (o->dm)
			bg_dm_remove(o->name);
		if (o->loop[0])
			bg_loop_detach(o->loop, o->path);
		if (o->rec)
			bg_rec_remove(o->name);
		if (o->created_file)
			unlink(o->path);
		o->dm = o->rec = o->created_file = false;
		o->loop[0] = '\0';
	}
}

static void snap_park(struct change *c)
{
	struct snap *s = c->arg;
	unsigned int i;

	for (i = 0; i < s->no; i++)
		if (s->o[i].dm)
			bg_dm_suspend(s->o[i].name);
}

/* The overlay file, its loop device and record (before any suspend). */
static int overlay_file(struct overlay *o)
{
	struct json_object *rec;
	uint64_t bytes;
	int r;

	if (run_qemu_img(o)) {
		unlink(o->path);
		return bg_error(o->node, "qemu-img create of %s failed", o->path);
	}
	o->created_file = true;
	/*
	 * A node's file device has a fixed size: make the (sparse) file as
	 * large as a fully allocated overlay could grow, data and metadata.
	 */
	if (truncate(o->path, (off_t)((o->bytes + o->bytes / 64 + (8 << 20)) & ~511ULL)))
		return bg_error(o->node, "%s: %s", o->path, strerror(errno));
	if (bg_loop_attach(o->path, false, o->loop, sizeof(o->loop), o->loop_dev,
			   sizeof(o->loop_dev), &bytes)) {
		o->loop[0] = '\0';
		return bg_error(o->node, "%s", bg_sys_error);
	}
	rec = json_object_new_object();
	json_object_object_add(rec, "node-name", json_object_new_string(o->name));
	json_object_object_add(rec, "driver", json_object_new_string("qcow2"));
	json_object_object_add(rec, "owner", json_object_new_string(o->name));
	json_object_object_add(rec, "implicit", json_object_new_boolean(false));
	json_object_object_add(rec, "filename", json_object_new_string(o->path));
	json_object_object_add(rec, "loop", json_object_new_string(o->loop));
	json_object_object_add(rec, "loop-dev", json_object_new_string(o->loop_dev));
	json_object_object_add(rec, "snapshot-of", json_object_new_string(o->node));
	r = bg_rec_write(o->name, rec);
	json_object_put(rec);
	if (r)
		return bg_error(o->name, "%s", bg_sys_error);
	o->rec = true;
	return 0;
}

/*
 * A flush of @node: what it holds in memory (a qcow2 node's metadata)
 * reaches its image before it becomes a backing file, as QEMU flushes
 * the old top in a snapshot.  Its parents are suspended: nothing writes.
 */
static int flush_node(const char *node, const char *dev)
{
	char path[64];
	int fd, r;

	if (bg_dev_path(dev, path, sizeof(path)))
		return bg_error(node, "%s", bg_sys_error);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return bg_error(node, "%s: %s", path, strerror(errno));
	r = fsync(fd);
	close(fd);
	if (r)
		return bg_error(node, "flush: %s", strerror(errno));
	return 0;
}

/* A flush of the device @dev, its errors ignored. */
static void preflush(const char *dev)
{
	char path[64];
	int fd;

	if (bg_dev_path(dev, path, sizeof(path)))
		return;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	fsync(fd);	/* an error: snap_make()'s flush reports it */
	close(fd);
}

/* After the suspend: the overlay nodes, with the nodes as backing. */
static int snap_make(struct change *c)
{
	struct snap *s = c->arg;
	char params[256];
	unsigned int i;

	for (i = 0; i < s->no; i++)
		if (flush_node(s->o[i].node, s->o[i].dev))
			return 1;
	for (i = 0; i < s->no; i++) {
		struct overlay *o = &s->o[i];

		snprintf(params, sizeof(params), "%s 2 backing %s", o->loop_dev, o->dev);
		if (bg_dm_create(o->name, "bgraph-qcow2", o->bytes / 512, params,
				 false, o->over_dev, sizeof(o->over_dev)))
			return bg_error(o->name, "%s", bg_sys_error);
		o->dm = true;
		snprintf(c->sw[i].to, sizeof(c->sw[i].to), "%s", o->over_dev);
		bg_test_step("create %s", o->name);
	}
	return 0;
}

/* Check @node and fill @o: a snapshot of @node to @path named @name. */
static int overlay_prepare(struct overlay *o, const char *node,
			   const char *path, const char *name)
{
	char buf[4096];
	struct stat st;
	unsigned int n;

	snprintf(o->node, sizeof(o->node), "%s", node);
	snprintf(o->path, sizeof(o->path), "%s", path);
	if (!bg_cfs_node(node) || !bg_dm_exists(node))
		return bg_error(node, "no such node");
	if (bg_cfs_read(node, "kind", o->kind, sizeof(o->kind)) ||
	    (strcmp(o->kind, "qcow2") && strcmp(o->kind, "raw")))
		return bg_error(node, "a %s node: only qcow2 and raw nodes are snapshotted",
				o->kind);
	if (bg_cfs_read(node, "size", buf, sizeof(buf)) ||
	    !(o->bytes = strtoull(buf, NULL, 10)))
		return bg_error(node, "cannot read its size");
	if (bg_cfs_read(node, "dev", o->dev, sizeof(o->dev)))
		return bg_error(node, "cannot read its device number");
	if (image_of(node, o->image, sizeof(o->image)))
		return bg_error(node, "no image file under it (a file child that is a loop device, through raw nodes without a window)");
	if (!lstat(path, &st) || errno != ENOENT)
		return bg_error(node, "overlay %s exists", path);
	if (bg_cfs_read(node, "blockers", buf, sizeof(buf)) == 0 && buf[0]) {
		buf[strcspn(buf, "\n")] = '\0';
		return bg_error(node, "the node is blocked by: %s", buf);
	}
	if (name) {
		if (!bg_name_valid(name, BG_USER_NAME_MAX))
			return bg_error(name, "invalid node-name: a letter, then letters, digits, '-', '.' or '_', at most %d characters",
					BG_USER_NAME_MAX);
		if (bg_cfs_node(name) || bg_dm_exists(name))
			return bg_error(name, "the node-name is in use");
		snprintf(o->name, sizeof(o->name), "%s", name);
		return 0;
	}
	for (n = 1; n < 1000; n++) {
		snprintf(o->name, sizeof(o->name), "%s-snap%u", node, n);
		if (!bg_cfs_node(o->name) && !bg_dm_exists(o->name))
			return 0;
	}
	return bg_error(node, "no free overlay name");
}

/*
 * The op blockers of a snapshot: external-snapshot on the nodes,
 * graph-change on their parents (bgraph.rst, "Op blockers").
 */
static int snap_block(struct snap *s)
{
	const char *nodes[MAX_PARENTS > MAX_NODES ? MAX_PARENTS : MAX_NODES];
	const char *ch = bg_change_name(&s->id, NULL);
	unsigned int i;

	for (i = 0; i < s->no; i++)
		nodes[i] = s->o[i].node;
	if (bg_change_begin(ch, "external-snapshot", nodes, s->no))
		return bg_error(bg_change_node, "%s", bg_sys_error);
	for (i = 0; i < s->c.np; i++)
		nodes[i] = s->c.p[i].name;
	if (bg_change_begin(ch, "graph-change", nodes, s->c.np)) {
		bg_error(bg_change_node, "%s", bg_sys_error);
		bg_change_end(ch);
		return 1;
	}
	return 0;
}

static int snap_run(struct snap *s, const char *verb)
{
	unsigned int i, k;

	for (i = 0; i < s->no; i++) {
		for (k = 0; k < i; k++)
			if (!strcmp(s->o[k].name, s->o[i].name) ||
			    !strcmp(s->o[k].path, s->o[i].path))
				return bg_error(s->o[i].node, "two overlays of one name or path");
		memcpy(s->c.sw[i].node, s->o[i].node, sizeof(s->c.sw[i].node));
		memcpy(s->c.sw[i].from, s->o[i].dev, sizeof(s->c.sw[i].from));
		memcpy(s->c.sw[i].to_node, s->o[i].name, sizeof(s->o[i].name));
		if (change_parents(&s->c, s->o[i].node))
			return 1;
	}
	s->c.nsw = s->no;
	s->c.make_suspended = true;
	s->c.make = snap_make;
	s->c.unmake = snap_unmake;
	s->c.park = snap_park;
	s->c.arg = s;
	if (change_tables(&s->c, true) || snap_block(s))
		return 1;
	/* What it will make, recorded before it makes any of it. */
	bg_jr_begin(verb);
	for (i = 0; i < s->no; i++) {
		bg_jr_list("nodes", s->o[i].name);
		bg_jr_list("files", s->o[i].path);
		bg_jr_list("loops", s->o[i].path);
	}
	if (change_journal(&s->c, "files")) {
		bg_change_end(s->id.name);
		return 1;
	}
	bg_test_step("record files");
	for (i = 0; i < s->no; i++) {
		if (overlay_file(&s->o[i])) {
			snap_unmake(&s->c);
			bg_change_end(s->id.name);
			return 1;
		}
		bg_test_step("overlay file %s", s->o[i].path);
	}
	/*
	 * A flush while the guest still runs: what the node's image has in
	 * the page cache goes out now, and the flush inside the suspended
	 * window (snap_make()) has only what came since.  Its failure is
	 * that one's to report.
	 */
	for (i = 0; i < s->no; i++)
		preflush(s->o[i].dev);
	if (change_run(&s->c)) {
		bg_change_end(s->id.name);
		return 1;
	}
	bg_change_end(s->id.name);
	for (i = 0; i < s->no; i++)
		printf("%s\n", s->o[i].name);
	return 0;
}

int bg_snapshot(const char *node, const char *overlay, const char *name,
		const char *format)
{
	struct snap *s;
	int r = 1;

	if (format && strcmp(format, "qcow2"))
		return bg_error(node, "format %s: only qcow2 overlays", format);
	s = calloc(1, sizeof(*s));
	if (!s)
		return bg_error(node, "out of memory");
	s->no = 1;
	if (!overlay_prepare(&s->o[0], node, overlay, name))
		r = snap_run(s, "snapshot");
	free(s);
	return r;
}

/* Filters: their nodes are passed through; the nodes below are formats. */
static bool is_filter(const char *node)
{
	char kind[32], type[64], params[4096];

	if (bg_cfs_read(node, "kind", kind, sizeof(kind)))
		return false;
	if (!strcmp(kind, "throttle") || !strcmp(kind, "quorum"))
		return true;
	/* A raw node without a window (an id device) over a dm node. */
	return !strcmp(kind, "raw") &&
	       !bg_dm_table(node, type, sizeof(type), params, sizeof(params)) &&
	       !strchr(params, ' ');
}

/* The format nodes directly below the filters from @node, into @s. */
static int below_filters(struct snap *s, const char *node, const char *dir,
			 unsigned int depth)
{
	char buf[4096], *line, *save = NULL, path[PATH_MAX];
	unsigned int i;

	if (depth > 16)
		return bg_error(node, "the filters are too deep");
	if (bg_cfs_read(node, "children", buf, sizeof(buf)))
		return bg_error(node, "no such node");
	for (line = strtok_r(buf, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		const char *child = strchr(line, ' ');

		if (!child++)
			continue;
		if (!bg_dm_exists(child))
			return bg_error(node, "its child %s is not a node (a device below filters)", child);
		if (is_filter(child)) {
			if (below_filters(s, child, dir, depth + 1))
				return 1;
			continue;
		}
		for (i = 0; i < s->no; i++)
			if (!strcmp(s->o[i].node, child))
				break;
		if (i < s->no)
			continue;
		if (s->no == MAX_NODES)
			return bg_error(node, "more than %d nodes below the filters", MAX_NODES);
		snprintf(path, sizeof(path), "%s/%s.qcow2", dir, child);
		if (overlay_prepare(&s->o[s->no], child, path, NULL))
			return 1;
		s->no++;
	}
	return 0;
}

int bg_snapshot_below(const char *id, const char *dir)
{
	struct snap *s = calloc(1, sizeof(*s));
	char real[PATH_MAX];
	int r = 1;

	if (!s)
		return bg_error(id, "out of memory");
	if (!realpath(dir, real)) {
		r = bg_error(id, "%s: %s", dir, strerror(errno));
		goto out;
	}
	if (!bg_cfs_node(id) || !bg_dm_exists(id)) {
		r = bg_error(id, "no such node");
		goto out;
	}
	if (!is_filter(id)) {
		r = bg_error(id, "not a filter: snapshot it with --overlay");
		goto out;
	}
	if (below_filters(s, id, real, 0))
		goto out;
	if (!s->no) {
		r = bg_error(id, "no node below the filters");
		goto out;
	}
	r = snap_run(s, "snapshot");
out:
	free(s);
	return r;
}

/* ---------------------------------------------------------------- */
/* insert and remove-filter                                         */
/* ---------------------------------------------------------------- */

/*
 * graph-change blockers on @node (and @also, if not NULL) and on the
 * parents of @c, as one set: 0, or 1 with the error line printed.
 */
static int change_block(struct change *c, const char *node, const char *also)
{
	const char *nodes[MAX_PARENTS + 2];
	unsigned int i, n = 0;

	nodes[n++] = node;
	if (also)
		nodes[n++] = also;
	for (i = 0; i < c->np; i++)
		nodes[n++] = c->p[i].name;
	if (bg_change_begin(bg_change_name(&c->id, NULL), "graph-change", nodes, n))
		return bg_error(bg_change_node, "%s", bg_sys_error);
	return 0;
}

struct insert {
	const char *text;
	size_t len;
	const char *source;
	char filter[160];
};

static int insert_make(struct change *c)
{
	struct insert *in = c->arg;

	if (bg_add_text(in->text, in->len, in->source, in->filter,
			sizeof(in->filter)))
		return 1;
	if (bg_cfs_read(in->filter, "dev", c->sw[0].to, sizeof(c->sw[0].to)))
		return bg_error(in->filter, "cannot read its device number");
	snprintf(c->sw[0].to_node, sizeof(c->sw[0].to_node), "%s", in->filter);
	return 0;
}

static void insert_unmake(struct change *c)
{
	struct insert *in = c->arg;

	if (in->filter[0])
		cmd_del(in->filter);
}

/* The child of @parent's edge @role ("file", "children.1"), from configfs. */
static int edge_child(const char *parent, const char *role, char *child,
		      size_t size)
{
	char buf[4096], *line, *save = NULL;
	size_t n = strlen(role);

	if (!bg_cfs_node(parent) || !bg_dm_exists(parent))
		return bg_error(parent, "no such node");
	if (bg_cfs_read(parent, "children", buf, sizeof(buf)))
		buf[0] = '\0';
	for (line = strtok_r(buf, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save))
		if (!strncmp(line, role, n) && line[n] == ' ') {
			snprintf(child, size, "%s", line + n + 1);
			return 0;
		}
	return bg_error(parent, "no edge %s", role);
}

int bg_insert(const char *above, const char *edge, const char *file)
{
	struct change c = { 0 };
	struct insert in = { .source = file };
	struct json_object *root = NULL, *v;
	char node[160], parent[160], role[64], *text = NULL;
	const char *colon, *drv;
	size_t len;
	int r = 1;

	if (edge) {
		colon = strrchr(edge, ':');
		if (!colon || colon == edge || !colon[1])
			return bg_error(edge, "--edge wants PARENT:ROLE (file, backing, children.N)");
		snprintf(parent, sizeof(parent), "%.*s", (int)(colon - edge), edge);
		snprintf(role, sizeof(role), "%s", colon + 1);
		if (edge_child(parent, role, node, sizeof(node)))
			return 1;
		c.only = parent;
	} else {
		snprintf(node, sizeof(node), "%s", above);
		if (!bg_cfs_node(node))
			return bg_error(node, "no such node");
	}
	text = read_input(file, &len);
	if (!text)
		return bg_error(file, "cannot read: %s", strerror(errno ? errno : EIO));
	root = json_tokener_parse(text);
	if (!root || !json_object_is_type(root, json_type_object)) {
		r = bg_error(file, "malformed JSON: not an object");
		goto out;
	}
	drv = json_object_object_get_ex(root, "driver", &v) ?
	      json_object_get_string(v) : NULL;
	if (!drv || (strcmp(drv, "throttle") && strcmp(drv, "raw"))) {
		r = bg_error(file, "a filter is a throttle or raw node, not %s",
			     drv ? drv : "a node without driver");
		goto out;
	}
	if (json_object_object_get_ex(root, "file", &v) &&
	    (!json_object_is_type(v, json_type_string) ||
	     strcmp(json_object_get_string(v), node))) {
		r = bg_error(file, "the filter's file is the node it goes above (%s): leave it out",
			     node);
		goto out;
	}
	if (json_object_object_get_ex(root, "id", &v)) {
		r = bg_error(file, "a filter has no id");
		goto out;
	}
	json_object_object_add(root, "file", json_object_new_string(node));
	in.text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN);
	in.len = strlen(in.text);
	c.nsw = 1;
	snprintf(c.sw[0].node, sizeof(c.sw[0].node), "%s", node);
	if (bg_cfs_read(node, "dev", c.sw[0].from, sizeof(c.sw[0].from))) {
		r = bg_error(node, "cannot read its device number");
		goto out;
	}
	if (change_parents(&c, node))
		goto out;
	if (!c.np) {
		r = bg_error(node, edge ? "no such edge" : "the node has no parents: nothing to insert into");
		goto out;
	}
	c.make = insert_make;
	c.unmake = insert_unmake;
	c.arg = &in;
	if (change_block(&c, node, NULL))
		goto out;
	bg_jr_begin("insert");
	r = change_run(&c);
	bg_change_end(c.id.name);
	if (!r)
		printf("%s\n", in.filter);
out:
	json_object_put(root);
	free(text);
	return r;
}

int bg_remove_filter(const char *node)
{
	struct change c = { 0 };
	char kind[32], buf[4096], type[64], params[4096];
	char *sp;
	int r;

	if (!bg_cfs_node(node) || !bg_dm_exists(node))
		return bg_error(node, "no such node");
	if (bg_cfs_read(node, "kind", kind, sizeof(kind)) ||
	    (strcmp(kind, "throttle") && strcmp(kind, "raw")) ||
	    bg_dm_table(node, type, sizeof(type), params, sizeof(params)) ||
	    (!strcmp(kind, "raw") && strchr(params, ' ')))
		return bg_error(node, "not a filter (a throttle, or a raw node without a window)");
	if (bg_cfs_read(node, "children", buf, sizeof(buf)) ||
	    strncmp(buf, "file ", 5) || strchr(buf, '\n'))
		return bg_error(node, "not one file child");
	if (bg_cfs_read(node, "blockers", buf, sizeof(buf)) == 0 && buf[0])
		return bg_error(node, "the node is blocked");
	c.nsw = 1;
	snprintf(c.sw[0].node, sizeof(c.sw[0].node), "%s", node);
	if (bg_cfs_read(node, "dev", c.sw[0].from, sizeof(c.sw[0].from)))
		return bg_error(node, "cannot read its device number");
	/* The child's device number, as the filter's table names it. */
	sp = strchr(params, ' ');
	if (sp)
		*sp = '\0';
	snprintf(c.sw[0].to, sizeof(c.sw[0].to), "%.31s", params);
	if (change_parents(&c, node))
		return 1;
	if (!c.np)
		return bg_error(node, "the node has no parents: delete it with del");
	if (bg_cfs_read(node, "children", buf, sizeof(buf)))
		buf[0] = '\0';
	if (change_block(&c, node, buf[0] ? buf + 5 : NULL))
		return 1;
	bg_jr_begin("remove-filter");
	/* Left to do once the parents run without it. */
	bg_jr_set("finish", json_object_new_string(node));
	r = change_run(&c);
	/* Released first: del takes remove on the node itself. */
	bg_change_end(c.id.name);
	if (r)
		return r;
	r = cmd_del(node);
	bg_test_step("del %s", node);
	return r;
}

/* ---------------------------------------------------------------- */
/* transaction                                                      */
/* ---------------------------------------------------------------- */

/*
 * QMP transaction of blockdev-snapshot-sync actions: every node checked
 * first, then all the snapshots as one change (snap_run: one suspend of
 * all the parents), all or nothing.
 */
int bg_transaction(const char *file)
{
	struct bg_err err;
	struct bg_txn t;
	struct snap *s;
	unsigned int i;
	char *text;
	size_t len;
	int r = 1;

	text = read_input(file, &len);
	if (!text)
		return bg_error(file, "cannot read: %s", strerror(errno ? errno : EIO));
	if (bg_txn_parse(&t, text, len, file, &err)) {
		free(text);
		return bg_error(err.node, "%s", err.msg);
	}
	free(text);
	s = calloc(1, sizeof(*s));
	if (!s)
		return bg_error(file, "out of memory");
	for (i = 0; i < t.n; i++)
		if (overlay_prepare(&s->o[i], t.snap[i].node, t.snap[i].file,
				    t.snap[i].name[0] ? t.snap[i].name : NULL))
			goto out;
	s->no = t.n;
	r = snap_run(s, "transaction");
out:
	free(s);
	return r;
}
