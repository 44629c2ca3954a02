// SPDX-License-Identifier: GPL-2.0
/*
 * bgraph's system part: dm ioctls through libdevmapper, loop devices,
 * configfs, and the records under /run/bgraph/.  See sys.h.
 *
 * udev: as dmsetup, each ioctl that makes, changes or removes a device
 * node carries a udev cookie (dm_task_set_cookie()) and bgraph waits on it
 * (dm_udev_wait()).  Where udev is not running (or DM_DISABLE_UDEV is set)
 * libdevmapper finds that out itself and makes the /dev/mapper nodes
 * directly, as dmsetup then does.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <linux/fs.h>
#include <linux/loop.h>

#include <libdevmapper.h>

#include "sys.h"

char bg_sys_error[512];

/* libdevmapper's log levels (lib/log/log.h, not in its public header). */
#define DM_LOG_ERR	3
#define DM_LOG_STDERR	128

/* ---------------------------------------------------------------- */
/* libdevmapper's messages and the kernel's reason                  */
/* ---------------------------------------------------------------- */

/* libdevmapper's errors are kept for the error line, not printed. */
__attribute__((format(printf, 5, 6)))
static void dm_log(int level, const char *file, int line, int dm_errno,
		   const char *f, ...)
{
	va_list ap;

	(void)file;
	(void)line;
	(void)dm_errno;
	if ((level & ~DM_LOG_STDERR) > DM_LOG_ERR)
		return;
	va_start(ap, f);
	vsnprintf(bg_sys_error, sizeof(bg_sys_error), f, ap);
	va_end(ap);
}

void bg_sys_init(void)
{
	dm_log_with_errno_init(dm_log);
}

/* The kernel log, from now on: a refused table's reason is there. */
static int kmsg_open(void)
{
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	if (fd >= 0)
		lseek(fd, 0, SEEK_END);
	return fd;
}

/*
 * Each kernel log record since kmsg_open(), its message (after the ';',
 * the first line), to @fn; closes @fd.
 */
static void kmsg_each(int fd, void (*fn)(char *msg, const char *arg),
		      const char *arg)
{
	char rec[1024], *msg, *nl;
	ssize_t n;

	if (fd < 0)
		return;
	while ((n = read(fd, rec, sizeof(rec) - 1)) > 0 || (n < 0 && errno == EPIPE)) {
		if (n <= 0)
			continue;
		rec[n] = '\0';
		msg = strchr(rec, ';');
		msg = msg ? msg + 1 : rec;
		nl = strchr(msg, '\n');
		if (nl)
			*nl = '\0';
		fn(msg, arg);
	}
	close(fd);
}

/* "device-mapper: table: ...: <target>: <reason>": the reason. */
static void table_reason(char *msg, const char *target)
{
	char *r;

	if (!strstr(msg, "device-mapper: table:"))
		return;
	r = strstr(msg, target);
	if (r && r[strlen(target)] == ':') {
		r += strlen(target) + 1;
	} else {
		r = strrchr(msg, ':');
		r = r ? r + 1 : msg;
	}
	while (*r == ' ')
		r++;
	snprintf(bg_sys_error, sizeof(bg_sys_error), "%s: %s", target, r);
}

/* The last refused table's reason since kmsg_open() into bg_sys_error. */
static void kmsg_reason(int fd, const char *target)
{
	kmsg_each(fd, table_reason, target);
}

/* A record that holds @what: the text from there on. */
static void line_with(char *msg, const char *what)
{
	char *m = strstr(msg, what);

	if (m)
		snprintf(bg_sys_error, sizeof(bg_sys_error), "%s", m);
}

/*
 * The last kernel log line since kmsg_open() that holds @what: the text
 * from there into bg_sys_error (a refused resume's reason).
 */
static void kmsg_line(int fd, const char *what)
{
	kmsg_each(fd, line_with, what);
}

/* ---------------------------------------------------------------- */
/* dm devices                                                       */
/* ---------------------------------------------------------------- */

int bg_dm_create(const char *name, const char *target, uint64_t sectors,
		 const char *params, bool ro, char *dev, size_t devsize)
{
	struct dm_task *dmt;
	struct dm_info info;
	uint32_t cookie = 0;
	int r = -1, kfd;

	bg_sys_error[0] = '\0';
	dmt = dm_task_create(DM_DEVICE_CREATE);
	if (!dmt)
		return -1;
	if (!dm_task_set_name(dmt, name) ||
	    !dm_task_add_target(dmt, 0, sectors, target, params) ||
	    (ro && !dm_task_set_ro(dmt)) ||
	    !dm_task_set_cookie(dmt, &cookie, 0))
		goto out;
	kfd = kmsg_open();
	if (!dm_task_run(dmt)) {
		dm_udev_wait(cookie);
		kmsg_reason(kfd, target);
		goto out;
	}
	if (kfd >= 0)
		close(kfd);
	dm_udev_wait(cookie);
	if (!dm_task_get_info(dmt, &info) || !info.exists)
		goto out;
	snprintf(dev, devsize, "%u:%u", info.major, info.minor);
	r = 0;
out:
	if (r && !bg_sys_error[0])
		snprintf(bg_sys_error, sizeof(bg_sys_error), "cannot create the dm device");
	dm_task_destroy(dmt);
	return r;
}

int bg_dm_remove(const char *name)
{
	struct dm_task *dmt;
	uint32_t cookie = 0;
	int r = -1;

	bg_sys_error[0] = '\0';
	dmt = dm_task_create(DM_DEVICE_REMOVE);
	if (!dmt)
		return -1;
	if (dm_task_set_name(dmt, name) && dm_task_retry_remove(dmt) &&
	    dm_task_set_cookie(dmt, &cookie, 0)) {
		r = dm_task_run(dmt) ? 0 : -1;
		dm_udev_wait(cookie);
	}
	if (r && !bg_sys_error[0])
		snprintf(bg_sys_error, sizeof(bg_sys_error), "cannot remove the dm device");
	dm_task_destroy(dmt);
	return r;
}

bool bg_dm_exists(const char *name)
{
	struct dm_task *dmt;
	struct dm_info info;
	bool r = false;

	dmt = dm_task_create(DM_DEVICE_INFO);
	if (!dmt)
		return false;
	if (dm_task_set_name(dmt, name) && dm_task_run(dmt) &&
	    dm_task_get_info(dmt, &info))
		r = info.exists;
	dm_task_destroy(dmt);
	return r;
}

int bg_dm_table(const char *name, char *type, size_t tsize, char *params,
		size_t psize)
{
	char *ttype = NULL, *tparams = NULL;
	uint64_t start, length;
	struct dm_task *dmt;
	int r = -1;

	dmt = dm_task_create(DM_DEVICE_TABLE);
	if (!dmt)
		return -1;
	if (dm_task_set_name(dmt, name) && dm_task_run(dmt)) {
		dm_get_next_target(dmt, NULL, &start, &length, &ttype, &tparams);
		if (ttype) {
			snprintf(type, tsize, "%s", ttype);
			snprintf(params, psize, "%s", tparams ? tparams : "");
			r = 0;
		}
	}
	dm_task_destroy(dmt);
	return r;
}

/* One ioctl on @name, with a udev cookie where it changes a device node. */
static int dm_simple(int type, const char *name, bool noflush, const char *err)
{
	struct dm_task *dmt;
	uint32_t cookie = 0;
	int r = -1, kfd;

	bg_sys_error[0] = '\0';
	dmt = dm_task_create(type);
	if (!dmt)
		return -1;
	if (!dm_task_set_name(dmt, name) ||
	    (noflush && !dm_task_no_flush(dmt)) ||
	    (type == DM_DEVICE_RESUME && !dm_task_set_cookie(dmt, &cookie, 0)))
		goto out;
	kfd = kmsg_open();
	r = dm_task_run(dmt) ? 0 : -1;
	if (type == DM_DEVICE_RESUME)
		dm_udev_wait(cookie);
	if (r)
		kmsg_line(kfd, "cannot resume:");
	else if (kfd >= 0)
		close(kfd);
out:
	if (r && !bg_sys_error[0])
		snprintf(bg_sys_error, sizeof(bg_sys_error), "%s", err);
	dm_task_destroy(dmt);
	return r;
}

int bg_dm_suspend(const char *name)
{
	return dm_simple(DM_DEVICE_SUSPEND, name, false, "cannot suspend");
}

int bg_dm_resume(const char *name)
{
	return dm_simple(DM_DEVICE_RESUME, name, false, "cannot resume");
}

int bg_dm_clear(const char *name)
{
	return dm_simple(DM_DEVICE_CLEAR, name, false, "cannot clear the inactive table");
}

int bg_dm_load(const char *name, const struct bg_dm_target *t)
{
	struct dm_task *dmt;
	int r = -1, kfd;

	bg_sys_error[0] = '\0';
	dmt = dm_task_create(DM_DEVICE_RELOAD);
	if (!dmt)
		return -1;
	if (!dm_task_set_name(dmt, name) ||
	    !dm_task_add_target(dmt, t->start, t->length, t->type, t->params) ||
	    (t->ro && !dm_task_set_ro(dmt)))
		goto out;
	kfd = kmsg_open();
	if (!dm_task_run(dmt)) {
		kmsg_reason(kfd, t->type);
		goto out;
	}
	if (kfd >= 0)
		close(kfd);
	r = 0;
out:
	if (r && !bg_sys_error[0])
		snprintf(bg_sys_error, sizeof(bg_sys_error), "cannot load the table");
	dm_task_destroy(dmt);
	return r;
}

int bg_dm_state(const char *name, bool *suspended, bool *inactive)
{
	struct dm_task *dmt;
	struct dm_info info;
	int r = -1;

	dmt = dm_task_create(DM_DEVICE_INFO);
	if (!dmt)
		return -1;
	if (dm_task_set_name(dmt, name) && dm_task_run(dmt) &&
	    dm_task_get_info(dmt, &info) && info.exists) {
		*suspended = info.suspended;
		*inactive = info.inactive_table;
		r = 0;
	}
	dm_task_destroy(dmt);
	return r;
}

int bg_dm_target(const char *name, struct bg_dm_target *t)
{
	char *ttype = NULL, *tparams = NULL;
	struct dm_task *dmt;
	struct dm_info info;
	void *next;
	int r = -1;

	bg_sys_error[0] = '\0';
	dmt = dm_task_create(DM_DEVICE_TABLE);
	if (!dmt)
		return -1;
	if (!dm_task_set_name(dmt, name) || !dm_task_run(dmt) ||
	    !dm_task_get_info(dmt, &info) || !info.exists) {
		snprintf(bg_sys_error, sizeof(bg_sys_error), "no such dm device");
		goto out;
	}
	next = dm_get_next_target(dmt, NULL, &t->start, &t->length, &ttype,
				  &tparams);
	if (!ttype || next) {
		snprintf(bg_sys_error, sizeof(bg_sys_error),
			 "its table has %s targets: one is changed live, not more",
			 ttype ? "several" : "no");
		goto out;
	}
	snprintf(t->type, sizeof(t->type), "%s", ttype);
	snprintf(t->params, sizeof(t->params), "%s", tparams ? tparams : "");
	t->ro = info.read_only;
	snprintf(t->dev, sizeof(t->dev), "%u:%u", info.major, info.minor);
	r = 0;
out:
	dm_task_destroy(dmt);
	return r;
}

/* ---------------------------------------------------------------- */
/* Block and loop devices                                           */
/* ---------------------------------------------------------------- */

int bg_blockdev(const char *path, char *dev, size_t devsize, uint64_t *bytes)
{
	struct stat st;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st)) {
		snprintf(bg_sys_error, sizeof(bg_sys_error), "cannot open %s: %s",
			 path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (!S_ISBLK(st.st_mode)) {
		snprintf(bg_sys_error, sizeof(bg_sys_error),
			 "%s is not a block device", path);
		close(fd);
		return -1;
	}
	if (ioctl(fd, BLKGETSIZE64, bytes)) {
		snprintf(bg_sys_error, sizeof(bg_sys_error), "size of %s: %s",
			 path, strerror(errno));
		close(fd);
		return -1;
	}
	snprintf(dev, devsize, "%u:%u", major(st.st_rdev), minor(st.st_rdev));
	close(fd);
	return 0;
}

int bg_dev_path(const char *dev, char *path, size_t size)
{
	char f[128], line[256];
	int r = -1;
	FILE *u;

	snprintf(f, sizeof(f), "/sys/dev/block/%s/uevent", dev);
	u = fopen(f, "re");
	if (!u)
		return -1;
	while (fgets(line, sizeof(line), u)) {
		if (!strncmp(line, "DEVNAME=", 8)) {
			line[strcspn(line, "\n")] = '\0';
			snprintf(path, size, "/dev/%s", line + 8);
			r = 0;
		}
	}
	fclose(u);
	return r;
}

int bg_loop_attach(const char *file, bool ro, char *loop, size_t lsize,
		   char *dev, size_t devsize, uint64_t *bytes)
{
	struct loop_config cfg;
	int ctl, ffd, lfd = -1, nr, tries;
	struct stat st;

	ffd = open(file, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (ffd < 0) {
		snprintf(bg_sys_error, sizeof(bg_sys_error), "cannot open %s: %s",
			 file, strerror(errno));
		return -1;
	}
	if (fstat(ffd, &st) || !S_ISREG(st.st_mode) || st.st_size < 512) {
		snprintf(bg_sys_error, sizeof(bg_sys_error),
			 "%s is not a regular file of 512 bytes or more (a block device is driver host_device)",
			 file);
		close(ffd);
		return -1;
	}
	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0) {
		snprintf(bg_sys_error, sizeof(bg_sys_error),
			 "cannot open /dev/loop-control: %s", strerror(errno));
		close(ffd);
		return -1;
	}
	memset(&cfg, 0, sizeof(cfg));
	cfg.fd = ffd;
	cfg.info.lo_flags = ro ? LO_FLAGS_READ_ONLY : 0;
	snprintf((char *)cfg.info.lo_file_name, LO_NAME_SIZE, "%s", file);
	/* Another process may take the free device first: try again. */
	for (tries = 0; tries < 16; tries++) {
		nr = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (nr < 0)
			break;
		snprintf(loop, lsize, "/dev/loop%d", nr);
		lfd = open(loop, O_RDWR | O_CLOEXEC);
		if (lfd < 0)
			continue;
		if (!ioctl(lfd, LOOP_CONFIGURE, &cfg))
			break;
		close(lfd);
		lfd = -1;
		if (errno != EBUSY)
			break;
	}
	close(ctl);
	close(ffd);
	if (lfd < 0) {
		snprintf(bg_sys_error, sizeof(bg_sys_error),
			 "cannot set up a loop device: %s", strerror(errno));
		return -1;
	}
	if (fstat(lfd, &st) || ioctl(lfd, BLKGETSIZE64, bytes)) {
		snprintf(bg_sys_error, sizeof(bg_sys_error), "%s: %s", loop,
			 strerror(errno));
		ioctl(lfd, LOOP_CLR_FD, 0);
		close(lfd);
		return -1;
	}
	snprintf(dev, devsize, "%u:%u", major(st.st_rdev), minor(st.st_rdev));
	close(lfd);
	return 0;
}

int bg_loop_detach(const char *loop, const char *file)
{
	char f[128], back[4096];
	int fd, r;
	FILE *b;

	/* Still ours?  A loop device number is reused once free. */
	snprintf(f, sizeof(f), "/sys/block/%s/loop/backing_file",
		 strrchr(loop, '/') ? strrchr(loop, '/') + 1 : loop);
	b = fopen(f, "re");
	if (!b)
		return 0;
	if (!fgets(back, sizeof(back), b))
		back[0] = '\0';
	fclose(b);
	back[strcspn(back, "\n")] = '\0';
	if (file && strcmp(back, file))
		return 0;
	fd = open(loop, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	r = ioctl(fd, LOOP_CLR_FD, 0);
	if (r)
		snprintf(bg_sys_error, sizeof(bg_sys_error), "cannot detach %s: %s",
			 loop, strerror(errno));
	close(fd);
	return r ? -1 : 0;
}

int bg_loop_detach_unheld(const char *file)
{
	char f[300], back[4096];
	struct dirent *d, *h;
	int n = 0;
	DIR *dir, *hd;
	FILE *b;

	dir = opendir("/sys/block");
	if (!dir)
		return 0;
	while ((d = readdir(dir))) {
		bool held = false;

		if (strncmp(d->d_name, "loop", 4))
			continue;
		snprintf(f, sizeof(f), "/sys/block/%s/loop/backing_file", d->d_name);
		b = fopen(f, "re");
		if (!b)
			continue;
		if (!fgets(back, sizeof(back), b))
			back[0] = '\0';
		fclose(b);
		back[strcspn(back, "\n")] = '\0';
		if (strcmp(back, file))
			continue;
		snprintf(f, sizeof(f), "/sys/block/%s/holders", d->d_name);
		hd = opendir(f);
		while (hd && (h = readdir(hd)))
			if (h->d_name[0] != '.')
				held = true;
		if (hd)
			closedir(hd);
		if (held)
			continue;
		snprintf(f, sizeof(f), "/dev/%s", d->d_name);
		if (!bg_loop_detach(f, file))
			n++;
	}
	closedir(dir);
	return n;
}

/* ---------------------------------------------------------------- */
/* configfs                                                         */
/* ---------------------------------------------------------------- */

int bg_cfs_read(const char *node, const char *attr, char *buf, size_t size)
{
	char path[512];
	ssize_t n;
	int fd;

	buf[0] = '\0';
	snprintf(path, sizeof(path), BG_CFS "/nodes/%s/%s", node, attr);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		return -1;
	while (n > 0 && buf[n - 1] == '\n')
		n--;
	buf[n] = '\0';
	return 0;
}

bool bg_cfs_node(const char *node)
{
	char path[512];
	struct stat st;

	snprintf(path, sizeof(path), BG_CFS "/nodes/%s", node);
	return !stat(path, &st) && S_ISDIR(st.st_mode);
}

/* ---------------------------------------------------------------- */
/* Graph changes: op blockers                                       */
/* ---------------------------------------------------------------- */

char bg_change_node[160];

const char *bg_change_name(struct bg_change_id *id, const char *suffix)
{
	snprintf(id->name, sizeof(id->name), "bgraph-%d%s%s", (int)getpid(),
		 suffix ? "-" : "", suffix ? suffix : "");
	return id->name;
}

/*
 * "device-mapper: bgraph: change <name>: node <node>: <why>": the node
 * into bg_change_node, "<why>" into bg_sys_error.
 */
static void change_reason(char *msg, const char *name)
{
	char key[128], *m, *colon;

	snprintf(key, sizeof(key), "change %s: ", name);
	m = strstr(msg, key);
	if (!m)
		return;
	m += strlen(key);
	if (!strncmp(m, "node ", 5) && (colon = strstr(m + 5, ": "))) {
		snprintf(bg_change_node, sizeof(bg_change_node), "%.*s",
			 (int)(colon - m - 5), m + 5);
		m = colon + 2;
	}
	snprintf(bg_sys_error, sizeof(bg_sys_error), "%s", m);
}

int bg_change_begin(const char *name, const char *op,
		    const char *const *nodes, unsigned int n)
{
	char path[256], line[8192];
	size_t len = 0;
	unsigned int i;
	bool made;
	ssize_t w;
	int fd, kfd, err;

	bg_sys_error[0] = '\0';
	snprintf(bg_change_node, sizeof(bg_change_node), "%s",
		 n ? nodes[0] : name);
	if (!n)
		return 0;
	len = snprintf(line, sizeof(line), "%s", op);
	for (i = 0; i < n && len < sizeof(line); i++)
		len += snprintf(line + len, sizeof(line) - len, " %s", nodes[i]);
	if (len >= sizeof(line) - 1) {
		snprintf(bg_sys_error, sizeof(bg_sys_error), "too many nodes to block");
		return -1;
	}
	line[len++] = '\n';
	snprintf(path, sizeof(path), BG_CFS "/changes/%s", name);
	made = !mkdir(path, 0755);
	if (!made && errno != EEXIST) {
		snprintf(bg_sys_error, sizeof(bg_sys_error), "cannot make %s: %s",
			 path, strerror(errno));
		return -1;
	}
	snprintf(path, sizeof(path), BG_CFS "/changes/%s/block", name);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		err = errno;
		w = -1;
	} else {
		kfd = kmsg_open();
		w = write(fd, line, len);
		err = errno;
		close(fd);
		if (w < 0)
			kmsg_each(kfd, change_reason, name);
		else if (kfd >= 0)
			close(kfd);
	}
	if (w == (ssize_t)len)
		return 0;
	if (!bg_sys_error[0])
		snprintf(bg_sys_error, sizeof(bg_sys_error), "cannot take %s blockers: %s",
			 op, strerror(w < 0 ? err : EIO));
	if (made)
		bg_change_end(name);
	return -1;
}

int bg_change_end(const char *name)
{
	char path[256];

	snprintf(path, sizeof(path), BG_CFS "/changes/%s", name);
	if (rmdir(path) && errno != ENOENT) {
		snprintf(bg_sys_error, sizeof(bg_sys_error), "cannot remove %s: %s",
			 path, strerror(errno));
		return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------- */
/* Records                                                          */
/* ---------------------------------------------------------------- */

static void rec_path(char *path, size_t size, const char *name)
{
	snprintf(path, size, BG_RUN_DIR "/nodes/%s.json", name);
}

int bg_rec_write(const char *name, struct json_object *rec)
{
	char path[512], tmp[520];

	mkdir(BG_RUN_DIR, 0755);
	mkdir(BG_RUN_DIR "/nodes", 0755);
	rec_path(path, sizeof(path), name);
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	if (json_object_to_file_ext(tmp, rec, JSON_C_TO_STRING_PRETTY) ||
	    rename(tmp, path)) {
		snprintf(bg_sys_error, sizeof(bg_sys_error),
			 "cannot write the record %.400s: %s", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

struct json_object *bg_rec_read(const char *name)
{
	struct json_object *o;
	char path[512];

	rec_path(path, sizeof(path), name);
	if (access(path, R_OK))
		return NULL;
	o = json_object_from_file(path);
	if (o && !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

void bg_rec_remove(const char *name)
{
	char path[512];

	rec_path(path, sizeof(path), name);
	unlink(path);
}

const char *bg_rec_str(struct json_object *rec, const char *key)
{
	struct json_object *v;

	if (!rec || !json_object_object_get_ex(rec, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}
