/* SPDX-License-Identifier: GPL-2.0 */
/*
 * bgraph's system part: device-mapper ioctls (libdevmapper, udev cookies
 * as dmsetup handles them), loop devices, the configfs tree of dm-bgraph
 * and bgraph's own records under /run/bgraph/.
 */
#ifndef BGRAPH_SYS_H
#define BGRAPH_SYS_H

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#define BG_CFS		"/sys/kernel/config/bgraph"
#define BG_RUN_DIR	"/run/bgraph"

/* The last error libdevmapper or the kernel gave, for an error line. */
extern char bg_sys_error[512];

void bg_sys_init(void);

/* dm devices.  Each returns 0 or -1 with bg_sys_error set. */
int bg_dm_create(const char *name, const char *target, uint64_t sectors,
		 const char *params, bool ro, char *dev, size_t devsize);
int bg_dm_remove(const char *name);
bool bg_dm_exists(const char *name);
/* The first target's type and parameters of @name's live table. */
int bg_dm_table(const char *name, char *type, size_t tsize, char *params,
		size_t psize);

/* One target's table line, and the device's read-only flag and number. */
struct bg_dm_target {
	uint64_t start, length;
	char type[64];
	char params[4096];
	bool ro;
	char dev[32];			/* major:minor of the device */
};

/*
 * The live table of @name, which must have one target; for a table
 * change.  Suspend, load (an inactive table), clear it, resume: each
 * returns 0 or -1 with bg_sys_error set (a refused load or resume: the
 * kernel's reason).
 */
int bg_dm_target(const char *name, struct bg_dm_target *t);
int bg_dm_suspend(const char *name);
int bg_dm_load(const char *name, const struct bg_dm_target *t);
int bg_dm_clear(const char *name);
int bg_dm_resume(const char *name);
/* Is @name suspended, has it an inactive table?  -1 if there is no such device. */
int bg_dm_state(const char *name, bool *suspended, bool *inactive);

/* Loop devices. */
int bg_loop_attach(const char *file, bool ro, char *loop, size_t lsize,
		   char *dev, size_t devsize, uint64_t *bytes);
/* Detach @loop if it is still over @file (else leave it). */
int bg_loop_detach(const char *loop, const char *file);
/*
 * Detach every loop device over @file that nothing holds (a device a
 * killed bgraph set up before it could record it); the number detached.
 */
int bg_loop_detach_unheld(const char *file);

/* A block device's major:minor and size; its /dev path from major:minor. */
int bg_blockdev(const char *path, char *dev, size_t devsize, uint64_t *bytes);
int bg_dev_path(const char *dev, char *path, size_t size);

/*
 * configfs: nodes/<node>/<attr> into @buf (trailing newline dropped);
 * -1 if there is no such file.
 */
int bg_cfs_read(const char *node, const char *attr, char *buf, size_t size);
bool bg_cfs_node(const char *node);

/*
 * Graph changes (configfs changes/<name>/, Documentation/bgraph.rst): a
 * verb's change is named bg_change_name() ("bgraph-<pid>", or with a
 * suffix "bgraph-<pid>-<suffix>" for a change nested in another), so that
 * `bgraph recover` finds those a killed bgraph left behind by their pid.
 *
 * bg_change_begin() makes the change if it is not there yet and takes
 * blockers for @op ("graph-change", "external-snapshot", "remove") on the
 * @n nodes at once: 0, or -1 with the kernel's reason in bg_sys_error and
 * the node it names in bg_change_node (nothing taken; a change this call
 * made is removed again).  bg_change_end() releases all of the change's
 * blockers (rmdir); a change that is not there is fine.
 */
extern char bg_change_node[160];
struct bg_change_id {
	char name[64];
};
const char *bg_change_name(struct bg_change_id *id, const char *suffix);
int bg_change_begin(const char *name, const char *op,
		    const char *const *nodes, unsigned int n);
int bg_change_end(const char *name);

/*
 * Records of what bgraph made, one JSON object a node in
 * /run/bgraph/nodes/<name>.json.  bg_rec_read() returns NULL if none.
 */
int bg_rec_write(const char *name, struct json_object *rec);
struct json_object *bg_rec_read(const char *name);
void bg_rec_remove(const char *name);
/* A record's string member, or NULL. */
const char *bg_rec_str(struct json_object *rec, const char *key);

#endif /* BGRAPH_SYS_H */
