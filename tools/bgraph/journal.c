// SPDX-License-Identifier: GPL-2.0
/*
 * bgraph's record of the change in progress, /run/bgraph/change.json, and
 * its recovery (bgraph recover), as lvm2 keeps its own: a bgraph killed
 * at any step of a change leaves no device suspended for good and no
 * graph half-changed once the next bgraph that changes the graph (or
 * bgraph recover) has run.
 *
 * The record is written (a temporary file, fsync, rename) before the
 * change touches anything, and again when it learns what it makes, always
 * before it suspends a device: nothing is written while a guest's I/O
 * waits.  It holds the verb, each parent whose table changes with its old
 * and new table (a node the change makes is named NODE<k> in the new one,
 * the k-th swap's device), the nodes, loop devices and files the change
 * makes or will make, and what is left to do once every parent runs on
 * its new table (remove-filter's del of the filter).
 *
 * The commit point is the kernel's, not the record's: once any parent
 * runs on its new table (its live table is not the recorded old one, as a
 * resume swaps the tables), guest writes may have reached the new nodes,
 * so recovery finishes the change: every parent loaded with its new table
 * if it is not on it, resumed, then the rest (a filter deleted).  Before
 * that it undoes: the parents' inactive tables cleared, the nodes made
 * suspended (an overlay's backing edge parked), the parents resumed on
 * their old tables, bottom-up, then the nodes, loop devices, records and
 * files the change made removed.  A bgraph that was undoing its own failed
 * change wrote step "undo" first: recovery undoes it too.  Each step looks
 * at the kernel's state first, so recovery killed halfway runs again.
 *
 * Every bgraph that changes the graph holds an flock on /run/bgraph/lock
 * for its whole run; read verbs (show) take none.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "bgraph.h"
#include "sys.h"

#define JR_PATH		BG_RUN_DIR "/change.json"
#define JR_TMP		BG_RUN_DIR "/change.json.new"
#define LOCK_PATH	BG_RUN_DIR "/lock"

struct json_object *bg_jr;
static bool jr_written;

/* ---------------------------------------------------------------- */
/* The test hook                                                    */
/* ---------------------------------------------------------------- */

/*
 * BGRAPH_TEST_KILL=N or NAME: SIGKILL right after the N-th step (from 1)
 * or the step named NAME; "list" prints each step as it is passed.  A
 * test kills at every step by raising N until bgraph ends by itself.
 */
void bg_test_step(const char *fmt, ...)
{
	static unsigned int n;
	const char *e = getenv("BGRAPH_TEST_KILL");
	char name[256];
	va_list ap;
	char *end;

	if (!e || !*e)
		return;
	va_start(ap, fmt);
	vsnprintf(name, sizeof(name), fmt, ap);
	va_end(ap);
	n++;
	if (!strcmp(e, "list")) {
		fprintf(stderr, "bgraph: test step %u: %s\n", n, name);
		return;
	}
	if (e[0] >= '0' && e[0] <= '9') {
		if (strtoul(e, &end, 10) != n || *end)
			return;
	} else if (strcmp(e, name)) {
		return;
	}
	fprintf(stderr, "bgraph: killed after step %u (%s) for the test\n", n, name);
	fflush(NULL);
	raise(SIGKILL);
}

/* ---------------------------------------------------------------- */
/* The record                                                       */
/* ---------------------------------------------------------------- */

bool bg_jr_begin(const char *verb)
{
	if (bg_jr)
		return false;
	bg_jr = json_object_new_object();
	json_object_object_add(bg_jr, "verb", json_object_new_string(verb));
	json_object_object_add(bg_jr, "step", json_object_new_string("begin"));
	jr_written = false;
	return true;
}

void bg_jr_set(const char *key, struct json_object *v)
{
	if (bg_jr)
		json_object_object_add(bg_jr, key, v);
	else
		json_object_put(v);
}

void bg_jr_list(const char *key, const char *value)
{
	struct json_object *a;

	if (!bg_jr)
		return;
	if (!json_object_object_get_ex(bg_jr, key, &a)) {
		a = json_object_new_array();
		json_object_object_add(bg_jr, key, a);
	}
	json_object_array_add(a, json_object_new_string(value));
}

static struct json_object *jr_table(const struct bg_dm_target *t)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "start", json_object_new_int64(t->start));
	json_object_object_add(o, "length", json_object_new_int64(t->length));
	json_object_object_add(o, "type", json_object_new_string(t->type));
	json_object_object_add(o, "params", json_object_new_string(t->params));
	json_object_object_add(o, "read-only", json_object_new_boolean(t->ro));
	return o;
}

void bg_jr_parent(const char *name, const struct bg_dm_target *old,
		  const struct bg_dm_target *new)
{
	struct json_object *a, *p;

	if (!bg_jr)
		return;
	if (!json_object_object_get_ex(bg_jr, "parents", &a)) {
		a = json_object_new_array();
		json_object_object_add(bg_jr, "parents", a);
	}
	p = json_object_new_object();
	json_object_object_add(p, "name", json_object_new_string(name));
	json_object_object_add(p, "old", jr_table(old));
	json_object_object_add(p, "new", jr_table(new));
	json_object_array_add(a, p);
}

int bg_jr_write(const char *step)
{
	const char *text;
	size_t len;
	int fd;

	if (!bg_jr)
		return 0;
	if (step)
		json_object_object_add(bg_jr, "step", json_object_new_string(step));
	mkdir(BG_RUN_DIR, 0755);
	text = json_object_to_json_string_ext(bg_jr, JSON_C_TO_STRING_PRETTY);
	len = strlen(text);
	fd = open(JR_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, text, len) != (ssize_t)len || write(fd, "\n", 1) != 1 ||
	    fsync(fd) || close(fd) || rename(JR_TMP, JR_PATH)) {
		int e = errno;

		if (fd >= 0)
			close(fd);
		unlink(JR_TMP);
		return bg_error(JR_PATH, "cannot write the record of the change: %s",
				strerror(e));
	}
	jr_written = true;
	return 0;
}

void bg_jr_end(void)
{
	if (!bg_jr)
		return;
	if (jr_written)
		unlink(JR_PATH);
	json_object_put(bg_jr);
	bg_jr = NULL;
	jr_written = false;
}

/* ---------------------------------------------------------------- */
/* Recovery                                                         */
/* ---------------------------------------------------------------- */

static const char *jstr(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static size_t jlen(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_array))
		return 0;
	return json_object_array_length(v);
}

static struct json_object *jidx(struct json_object *o, const char *key, size_t i)
{
	struct json_object *v;

	json_object_object_get_ex(o, key, &v);
	return json_object_array_get_idx(v, i);
}

static const char *jstr_idx(struct json_object *o, const char *key, size_t i)
{
	struct json_object *v = jidx(o, key, i);

	return json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

/* A recorded table into @t; -1 if it is not one. */
static int jr_get_table(struct json_object *p, const char *key,
			struct bg_dm_target *t)
{
	struct json_object *o, *v;
	const char *s;

	memset(t, 0, sizeof(*t));
	if (!json_object_object_get_ex(p, key, &o))
		return -1;
	if (!json_object_object_get_ex(o, "start", &v))
		return -1;
	t->start = json_object_get_int64(v);
	if (!json_object_object_get_ex(o, "length", &v))
		return -1;
	t->length = json_object_get_int64(v);
	if (json_object_object_get_ex(o, "read-only", &v))
		t->ro = json_object_get_boolean(v);
	s = jstr(o, "type");
	if (!s || strlen(s) >= sizeof(t->type))
		return -1;
	snprintf(t->type, sizeof(t->type), "%s", s);
	s = jstr(o, "params");
	if (!s || strlen(s) >= sizeof(t->params))
		return -1;
	snprintf(t->params, sizeof(t->params), "%s", s);
	return 0;
}

/* Is @live not the table @old (a resume swapped the tables)? */
static bool switched(const struct bg_dm_target *live, const struct bg_dm_target *old)
{
	return strcmp(live->type, old->type) || strcmp(live->params, old->params) ||
	       live->ro != old->ro || live->length != old->length;
}

/* The new table with each NODE<k> the k-th swap's device. */
static int jr_resolve(struct json_object *jr, struct bg_dm_target *t,
		      const char *parent)
{
	char ph[32], dev[32];
	size_t k;

	for (k = 0; k < jlen(jr, "swaps"); k++) {
		struct json_object *s = jidx(jr, "swaps", k);
		const char *to = jstr(s, "to"), *node = jstr(s, "to-node");

		snprintf(ph, sizeof(ph), "NODE%zu", k);
		if (to && *to)
			snprintf(dev, sizeof(dev), "%s", to);
		else if (!node || bg_cfs_read(node, "dev", dev, sizeof(dev)))
			return bg_error(parent, "recover: the node of its new table is gone");
		while (!bg_replace_dev(t->params, sizeof(t->params), ph, dev))
			;
	}
	if (strstr(t->params, "NODE"))
		return bg_error(parent, "recover: its new table names a node not recorded");
	return 0;
}

/* Past the commit point: every parent on its new table, resumed; the rest. */
static int recover_forward(struct json_object *jr)
{
	size_t i, np = jlen(jr, "parents");
	const char *fin = jstr(jr, "finish");
	char buf[4096];
	int r = 0;

	for (i = np; i-- > 0;) {
		struct json_object *p = jidx(jr, "parents", i);
		const char *name = jstr(p, "name");
		struct bg_dm_target old, new, live;
		bool susp, inact;

		if (!name || jr_get_table(p, "old", &old) || jr_get_table(p, "new", &new))
			return bg_error(JR_PATH, "recover: a parent not readable in the record");
		if (bg_dm_state(name, &susp, &inact) || bg_dm_target(name, &live)) {
			r = bg_error(name, "recover: the parent is gone");
			continue;
		}
		if (!switched(&live, &old)) {
			if (jr_resolve(jr, &new, name)) {
				r = 1;
				continue;
			}
			if (!susp && bg_dm_suspend(name)) {
				r = bg_error(name, "recover: %s", bg_sys_error);
				continue;
			}
			susp = true;
			bg_test_step("recover suspend %s", name);
			if (bg_dm_load(name, &new)) {
				r = bg_error(name, "recover: %s", bg_sys_error);
				bg_dm_resume(name);
				continue;
			}
			bg_test_step("recover load %s", name);
		}
		if (susp) {
			if (bg_dm_resume(name)) {
				r = bg_error(name, "recover: left suspended: %s", bg_sys_error);
				continue;
			}
			bg_test_step("recover resume %s", name);
		}
	}
	if (r || !fin)
		return r;
	if (bg_cfs_node(fin)) {
		if (!bg_cfs_read(fin, "parents", buf, sizeof(buf)) && buf[0])
			return bg_error(fin, "recover: the node to delete has parents");
		if (cmd_del(fin))
			return 1;
	} else {
		bg_rec_remove(fin);
	}
	bg_test_step("recover del %s", fin);
	return 0;
}

/* Before the commit point: the parents on their old tables, resumed; the
 * nodes, loop devices, records and files made, removed.
 */
static int recover_back(struct json_object *jr)
{
	size_t i, np = jlen(jr, "parents"), nn = jlen(jr, "nodes");
	bool touched[64] = { 0 }, sw[64] = { 0 }, any = false;
	int r = 0;

	if (np > 64)
		return bg_error(JR_PATH, "recover: too many parents in the record");
	for (i = 0; i < np; i++) {
		struct json_object *p = jidx(jr, "parents", i);
		const char *name = jstr(p, "name");
		struct bg_dm_target old, live;
		bool susp, inact;

		if (!name || jr_get_table(p, "old", &old))
			return bg_error(JR_PATH, "recover: a parent not readable in the record");
		if (bg_dm_state(name, &susp, &inact) || bg_dm_target(name, &live))
			continue;	/* gone: nothing to resume */
		sw[i] = switched(&live, &old);
		if (!sw[i] && !susp && !inact)
			continue;
		if (!susp && bg_dm_suspend(name)) {
			r = bg_error(name, "recover: %s", bg_sys_error);
			continue;
		}
		touched[i] = any = true;
		bg_test_step("recover suspend %s", name);
	}
	/* The new nodes parked: an overlay's backing edge blocks the old. */
	for (i = 0; any && i < nn; i++) {
		const char *n = jstr_idx(jr, "nodes", i);

		if (n && bg_dm_exists(n))
			bg_dm_suspend(n);
	}
	for (i = 0; i < np; i++) {
		struct json_object *p = jidx(jr, "parents", i);
		const char *name = jstr(p, "name");
		struct bg_dm_target old;

		if (!touched[i])
			continue;
		jr_get_table(p, "old", &old);
		if (sw[i]) {
			if (bg_dm_load(name, &old))
				r = bg_error(name, "recover: its old table: %s", bg_sys_error);
			bg_test_step("recover load %s", name);
		} else {
			bg_dm_clear(name);
		}
	}
	for (i = np; i-- > 0;) {
		const char *name = jstr(jidx(jr, "parents", i), "name");

		if (!touched[i])
			continue;
		if (bg_dm_resume(name))
			r = bg_error(name, "recover: left suspended: %s (dmsetup resume)",
				     bg_sys_error);
		else
			bg_test_step("recover resume %s", name);
	}
	if (r)
		return r;	/* the record stays: run recover again */
	for (i = nn; i-- > 0;) {
		const char *n = jstr_idx(jr, "nodes", i);
		struct json_object *rec;
		const char *loop;

		if (!n)
			continue;
		if (bg_dm_exists(n) && bg_dm_remove(n)) {
			r = bg_error(n, "recover: cannot remove it: %s", bg_sys_error);
			continue;
		}
		rec = bg_rec_read(n);
		loop = bg_rec_str(rec, "loop");
		if (loop)
			bg_loop_detach(loop, bg_rec_str(rec, "filename"));
		json_object_put(rec);
		bg_rec_remove(n);
		bg_test_step("recover remove %s", n);
	}
	if (r)
		return r;
	/* Loop devices set up but not recorded yet: nothing holds them. */
	for (i = 0; i < jlen(jr, "loops"); i++) {
		const char *f = jstr_idx(jr, "loops", i);

		if (f)
			bg_loop_detach_unheld(f);
	}
	for (i = 0; i < jlen(jr, "files"); i++) {
		const char *f = jstr_idx(jr, "files", i);

		if (f && unlink(f) && errno != ENOENT)
			r = bg_error(f, "recover: cannot remove it: %s", strerror(errno));
	}
	return r;
}

/*
 * Recover from the record if there is one: 0 when there was none or it
 * is done (@what says what was done, or is ""), 1 with the error line.
 */
/*
 * The configfs changes (op blockers) of bgraph runs that ended without
 * removing them.  Called under the lock, which every bgraph holding a
 * change holds: any "bgraph-<pid>..." change but this run's is stale.
 * Others' changes (a job's, a script's) are left alone.
 */
static void drop_stale_changes(char *what, size_t size)
{
	char mine[64], path[PATH_MAX];
	struct dirent *de;
	unsigned int n = 0;
	size_t len;
	DIR *d;

	d = opendir(BG_CFS "/changes");
	if (!d)
		return;
	len = snprintf(mine, sizeof(mine), "bgraph-%d", (int)getpid());
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, "bgraph-", 7) ||
		    (!strncmp(de->d_name, mine, len) &&
		     (!de->d_name[len] || de->d_name[len] == '-')))
			continue;
		snprintf(path, sizeof(path), BG_CFS "/changes/%s", de->d_name);
		if (!rmdir(path))
			n++;
	}
	closedir(d);
	if (n)
		snprintf(what, size, "released the op blockers of %u change%s a bgraph left",
			 n, n == 1 ? "" : "s");
}

static int recover(char *what, size_t size)
{
	struct json_object *jr;
	const char *verb, *step;
	bool forward = false;
	size_t i;
	int r;

	what[0] = '\0';
	drop_stale_changes(what, size);
	if (access(JR_PATH, F_OK))
		return 0;
	jr = json_object_from_file(JR_PATH);
	if (!jr || !json_object_is_type(jr, json_type_object) ||
	    !(verb = jstr(jr, "verb")) || !(step = jstr(jr, "step"))) {
		json_object_put(jr);
		return bg_error(JR_PATH, "the record of a change in progress cannot be read: look at it, then remove it");
	}
	for (i = 0; strcmp(step, "undo") && i < jlen(jr, "parents"); i++) {
		struct json_object *p = jidx(jr, "parents", i);
		struct bg_dm_target old, live;
		const char *name = jstr(p, "name");

		if (name && !jr_get_table(p, "old", &old) &&
		    !bg_dm_target(name, &live) && switched(&live, &old))
			forward = true;
	}
	r = forward ? recover_forward(jr) : recover_back(jr);
	if (!r) {
		snprintf(what, size, "%s the %s left by a bgraph that did not end (step %s)",
			 forward ? "finished" : "undid", verb, step);
		unlink(JR_PATH);
	}
	json_object_put(jr);
	return r;
}

static int lock_fd = -1;

static int lock_take(void)
{
	if (lock_fd >= 0)
		return 0;
	mkdir(BG_RUN_DIR, 0755);
	lock_fd = open(LOCK_PATH, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lock_fd < 0)
		return bg_error(LOCK_PATH, "%s", strerror(errno));
	while (flock(lock_fd, LOCK_EX)) {
		if (errno != EINTR)
			return bg_error(LOCK_PATH, "%s", strerror(errno));
	}
	return 0;
}

int bg_lock(void)
{
	char what[256];

	if (lock_take())
		return 1;
	if (recover(what, sizeof(what)))
		return bg_error(JR_PATH, "a change in progress cannot be recovered: run bgraph recover");
	if (what[0])
		fprintf(stderr, "bgraph: recover: %s\n", what);
	return 0;
}

int bg_recover(void)
{
	char what[256];

	if (lock_take())
		return 1;
	if (recover(what, sizeof(what)))
		return 1;
	if (what[0])
		printf("%s\n", what);
	return 0;
}
