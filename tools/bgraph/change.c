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

#define MAX_PARENTS	16

struct parent {
	char name[160];
	struct bg_dm_target old, new;
	bool suspended, loaded, live_new;
};

struct snap {
	const char *node;
	char dev[32];			/* the node's major:minor */
	char kind[32];
	uint64_t bytes;
	char image[PATH_MAX];		/* the node's image file */
	const char *overlay;		/* its path */
	char name[64];			/* the overlay node's name */
	char loop[32], loop_dev[32], over_dev[32];
	bool created_file, rec, dm;
	struct parent p[MAX_PARENTS];
	unsigned int np;
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

/* Replace the token @from of @params by @to; 0 if it was there. */
static int replace_dev(char *params, size_t size, const char *from,
		       const char *to)
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

static int run_qemu_img(struct snap *s, const char *fmt)
{
	char size[32];
	pid_t pid;
	int st;

	snprintf(size, sizeof(size), "%" PRIu64, s->bytes);
	pid = fork();
	if (pid < 0)
		return -1;
	if (!pid) {
		int fd = open("/dev/null", O_WRONLY);

		if (fd >= 0)
			dup2(fd, STDOUT_FILENO);
		/* -u: the size is given; the backing image is in use. */
		execlp("qemu-img", "qemu-img", "create", "-q", "-f", "qcow2",
		       "-u", "-b", s->image, "-F", fmt, s->overlay, size,
		       (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
		return -1;
	return 0;
}

/*
 * Undo: the parents back on their old tables, the overlay gone, resumed.
 * A parent whose new table went live (resumed, or a refused resume,
 * which swaps the tables all the same) gets its old table loaded, with
 * the overlay suspended (its backing edge parked), and resumed; once no
 * table names the overlay it is removed, and every parent resumed.
 */
static void snap_undo(struct snap *s)
{
	bool parked = false;
	unsigned int i;

	for (i = 0; i < s->np; i++) {
		struct parent *p = &s->p[i];

		if (p->live_new) {
			if (bg_dm_suspend(p->name) == 0)
				p->suspended = true;
			/*
			 * The overlay's backing edge on the node, suspended:
			 * parked, so that the old table may take write again.
			 */
			if (!parked && s->dm)
				parked = !bg_dm_suspend(s->name);
			bg_dm_load(p->name, &p->old);
			if (!bg_dm_resume(p->name))
				p->suspended = false;
		} else if (p->loaded) {
			bg_dm_clear(p->name);
		}
	}
	if (s->dm)
		bg_dm_remove(s->name);
	if (s->loop[0])
		bg_loop_detach(s->loop, s->overlay);
	if (s->rec)
		bg_rec_remove(s->name);
	if (s->created_file)
		unlink(s->overlay);
	for (i = s->np; i-- > 0;)
		if (s->p[i].suspended && bg_dm_resume(s->p[i].name))
			bg_error(s->p[i].name, "left suspended: %s (bgraph show; dmsetup resume)",
				 bg_sys_error);
}

/* Fail: undo, then the error line (undoing may overwrite bg_sys_error). */
__attribute__((format(printf, 3, 4)))
static int snap_fail(struct snap *s, const char *node, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snap_undo(s);
	return bg_error(node, "%s", msg);
}

static int snap_prepare(struct snap *s, const char *name)
{
	char buf[4096], *line, *save = NULL;
	struct stat st;
	unsigned int i, n;

	if (!bg_cfs_node(s->node) || !bg_dm_exists(s->node))
		return bg_error(s->node, "no such node");
	if (bg_cfs_read(s->node, "kind", s->kind, sizeof(s->kind)) ||
	    (strcmp(s->kind, "qcow2") && strcmp(s->kind, "raw")))
		return bg_error(s->node, "a %s node: only qcow2 and raw nodes are snapshotted",
				s->kind);
	if (bg_cfs_read(s->node, "size", buf, sizeof(buf)) ||
	    !(s->bytes = strtoull(buf, NULL, 10)))
		return bg_error(s->node, "cannot read its size");
	if (bg_cfs_read(s->node, "dev", s->dev, sizeof(s->dev)))
		return bg_error(s->node, "cannot read its device number");
	if (image_of(s->node, s->image, sizeof(s->image)))
		return bg_error(s->node, "no image file under it (a file child that is a loop device, through raw nodes without a window)");
	if (!lstat(s->overlay, &st) || errno != ENOENT)
		return bg_error(s->node, "overlay %s exists", s->overlay);
	if (name) {
		if (!bg_name_valid(name, BG_USER_NAME_MAX))
			return bg_error(name, "invalid node-name: a letter, then letters, digits, '-', '.' or '_', at most %d characters",
					BG_USER_NAME_MAX);
		if (bg_cfs_node(name) || bg_dm_exists(name))
			return bg_error(name, "the node-name is in use");
		snprintf(s->name, sizeof(s->name), "%s", name);
	} else {
		for (n = 1; n < 1000; n++) {
			snprintf(s->name, sizeof(s->name), "%s-snap%u", s->node, n);
			if (!bg_cfs_node(s->name) && !bg_dm_exists(s->name))
				break;
		}
	}
	if (bg_cfs_read(s->node, "blockers", buf, sizeof(buf)) == 0 && buf[0]) {
		buf[strcspn(buf, "\n")] = '\0';
		return bg_error(s->node, "the node is blocked by: %s", buf);
	}
	if (bg_cfs_read(s->node, "parents", buf, sizeof(buf)))
		buf[0] = '\0';
	for (line = strtok_r(buf, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		struct parent *p;

		if (s->np == MAX_PARENTS)
			return bg_error(s->node, "more than %d parents", MAX_PARENTS);
		p = &s->p[s->np];
		memset(p, 0, sizeof(*p));
		snprintf(p->name, sizeof(p->name), "%.*s", (int)strcspn(line, " "), line);
		for (i = 0; i < s->np; i++)
			if (!strcmp(s->p[i].name, p->name))
				break;
		if (i < s->np)
			continue;	/* two edges of one parent: one table */
		if (bg_dm_target(p->name, &p->old))
			return bg_error(p->name, "%s", bg_sys_error);
		p->new = p->old;
		s->np++;
	}
	return 0;
}

int bg_snapshot(const char *node, const char *overlay, const char *name,
		const char *format)
{
	struct snap *s = calloc(1, sizeof(*s));
	uint64_t bytes;
	char params[256];
	unsigned int i;
	int r = 1;

	if (!s)
		return bg_error(node, "out of memory");
	s->node = node;
	s->overlay = overlay;
	if (format && strcmp(format, "qcow2")) {
		r = bg_error(node, "format %s: only qcow2 overlays", format);
		goto out;
	}
	if (snap_prepare(s, name))
		goto out;

	if (run_qemu_img(s, strcmp(s->kind, "qcow2") ? "raw" : "qcow2")) {
		unlink(overlay);
		r = bg_error(node, "qemu-img create of %s failed", overlay);
		goto out;
	}
	s->created_file = true;
	/*
	 * A node's file device has a fixed size: make the (sparse) file as
	 * large as a fully allocated overlay could grow, data and metadata.
	 */
	if (truncate(overlay, (off_t)((s->bytes + s->bytes / 64 + (8 << 20)) & ~511ULL))) {
		r = snap_fail(s, node, "%s: %s", overlay, strerror(errno));
		goto out;
	}
	if (bg_loop_attach(overlay, false, s->loop, sizeof(s->loop), s->loop_dev,
			   sizeof(s->loop_dev), &bytes)) {
		s->loop[0] = '\0';
		r = snap_fail(s, node, "%s", bg_sys_error);
		goto out;
	}
	{
		struct json_object *rec = json_object_new_object();

		json_object_object_add(rec, "node-name", json_object_new_string(s->name));
		json_object_object_add(rec, "driver", json_object_new_string("qcow2"));
		json_object_object_add(rec, "owner", json_object_new_string(s->name));
		json_object_object_add(rec, "implicit", json_object_new_boolean(false));
		json_object_object_add(rec, "filename", json_object_new_string(overlay));
		json_object_object_add(rec, "loop", json_object_new_string(s->loop));
		json_object_object_add(rec, "loop-dev", json_object_new_string(s->loop_dev));
		json_object_object_add(rec, "snapshot-of", json_object_new_string(node));
		r = bg_rec_write(s->name, rec);
		json_object_put(rec);
		if (r) {
			r = snap_fail(s, s->name, "%s", bg_sys_error);
			goto out;
		}
		s->rec = true;
	}
	/* The parents' new tables name the overlay; checked before any suspend. */
	for (i = 0; i < s->np; i++)
		if (replace_dev(s->p[i].new.params, sizeof(s->p[i].new.params),
				s->dev, "OVERLAY")) {
			r = snap_fail(s, s->p[i].name, "its table does not name %s as %s",
				      node, s->dev);
			goto out;
		}

	for (i = 0; i < s->np; i++) {
		if (bg_dm_suspend(s->p[i].name)) {
			r = snap_fail(s, s->p[i].name, "%s", bg_sys_error);
			goto out;
		}
		s->p[i].suspended = true;
	}
	snprintf(params, sizeof(params), "%s 2 backing %s", s->loop_dev, s->dev);
	if (bg_dm_create(s->name, "bgraph-qcow2", s->bytes / 512, params, false,
			 s->over_dev, sizeof(s->over_dev))) {
		r = snap_fail(s, s->name, "%s", bg_sys_error);
		goto out;
	}
	s->dm = true;
	if (test_fail("create")) {
		r = snap_fail(s, s->name, "failed for the test (BGRAPH_TEST_FAIL)");
		goto out;
	}
	for (i = 0; i < s->np; i++) {
		replace_dev(s->p[i].new.params, sizeof(s->p[i].new.params),
			    "OVERLAY", s->over_dev);
		if (bg_dm_load(s->p[i].name, &s->p[i].new)) {
			r = snap_fail(s, s->p[i].name, "%s", bg_sys_error);
			goto out;
		}
		s->p[i].loaded = true;
	}
	if (test_fail("load")) {
		r = snap_fail(s, s->name, "failed for the test (BGRAPH_TEST_FAIL)");
		goto out;
	}
	/*
	 * Bottom-up.  A refused resume swapped the tables but ran no I/O on
	 * the new one: undone with the rest while no parent has resumed.
	 * Once one has, guest writes may be in the overlay: a later refusal
	 * is reported, not undone, and that parent stays suspended.
	 */
	for (i = s->np; i-- > 0;) {
		bool refused;

		s->p[i].live_new = true;	/* resume swaps, even refused */
		refused = bg_dm_resume(s->p[i].name) != 0;
		if (refused && i == s->np - 1) {
			r = snap_fail(s, s->p[i].name, "%s", bg_sys_error);
			goto out;
		}
		if (refused) {
			r = bg_error(s->p[i].name, "snapshot %s made, but this parent's resume was refused and it is left suspended: %s",
				     s->name, bg_sys_error);
			goto out;
		}
		s->p[i].suspended = false;
	}
	printf("%s\n", s->name);
	r = 0;
out:
	free(s);
	return r;
}
