/* SPDX-License-Identifier: GPL-2.0 */
/*
 * dm-bgraph graph core: nodes, their instances (one per constructed dm
 * target) and the edges from an instance to its children.
 *
 * A node is one dm device, named by its dm name, or a leaf: a block device
 * some node uses that is not one of ours (loop0, vdb, a dm-linear device),
 * named by its kernel or dm name.  Nodes are keyed by dev_t, so a node keeps
 * its identity and its configfs directory across table reloads: a reload
 * constructs a new instance, resume makes it the live one, and the old
 * instance goes with the old table.
 *
 * Locking: bg_graph_lock (a mutex) guards the node list and every node's
 * lists and counts.  configfs directories are added and removed under
 * bg_cfs_lock and never under bg_graph_lock, because configfs waits for
 * running show() callbacks, which take bg_graph_lock.  Order:
 * bg_cfs_lock -> configfs internals -> bg_graph_lock.
 */
#ifndef DM_BGRAPH_BGRAPH_H
#define DM_BGRAPH_BGRAPH_H

#include <linux/configfs.h>
#include <linux/device-mapper.h>
#include <linux/list.h>
#include <linux/mutex.h>

#include "compat.h"
#include "perm.h"
#include "blockers.h"

#define BG_NAME_LEN	128	/* DM_NAME_LEN */
#define BG_OWNER_LEN	64

struct bg_instance;

struct bg_node {
	struct config_group group;	/* nodes/<name>/, owns the memory */
	struct list_head entry;		/* on bg_nodes */
	dev_t devt;
	char name[BG_NAME_LEN];
	const char *kind;		/* of the last instance, or "host_device" */
	unsigned int refs;		/* instances + edges to this node */
	unsigned int ninstances;
	struct mapped_device *md;	/* ours: valid while ninstances > 0 */
	struct list_head instances;	/* bg_instance.entry */
	struct dm_table *live_table;	/* compared only, never followed */
	struct list_head parents;	/* bg_edge.child_entry */
	struct list_head blockers;	/* bg_blocker.entry */
	struct gendisk *ro_disk;	/* disk we made read-only, or NULL */
	bool ro_saved;			/* its read-only state before that */
	bool write_blocked;		/* edges forbid writes (READ_ONCE) */
};

struct bg_instance {
	struct list_head entry;		/* on node->instances */
	struct bg_node *node;
	struct dm_target *ti;
	const char *kind;
	bool writable;
	struct list_head children;	/* bg_edge.parent_entry */
	/*
	 * nodes/<name>/stats of the live instance: set by a kind that has
	 * counters, under bg_graph_lock, called with it held; bg_emit()
	 * semantics.
	 */
	int (*stats_text)(struct bg_instance *inst, char *buf, size_t size);
	void *private;			/* the target's, for stats_text */
};

struct bg_edge {
	struct bg_instance *parent;
	struct bg_node *child;
	struct list_head parent_entry;
	struct list_head child_entry;
	enum bg_role role;
	unsigned int index;		/* N of children.N */
	struct bg_perm_pair perm;
	struct dm_dev *dev;
};

struct bg_blocker {
	struct list_head entry;		/* on node->blockers */
	struct bg_node *node;		/* holds a reference */
	enum bg_op op;
	char owner[BG_OWNER_LEN];
};

/* A set of blockers taken together by bg_op_block(). */
struct bg_block_set {
	unsigned int n;
	struct bg_blocker *blockers;
};

extern struct mutex bg_graph_lock;
extern struct list_head bg_nodes;

/*
 * bg_instance_create() - start a node instance in a target constructor.
 * Finds or creates the node of the target's dm device.  Sleeps.  On error
 * sets ti->error and returns an ERR_PTR.
 */
struct bg_instance *bg_instance_create(struct dm_target *ti, const char *kind);

/*
 * bg_instance_add_child() - open @path as the child in @role (index @index
 * for children.N) with dm_get_device(), record the edge and check its
 * permissions against the child's other parents.  Sleeps.  On error sets
 * ti->error and returns a negative errno; the instance is unchanged.
 */
int bg_instance_add_child(struct bg_instance *inst, const char *path,
			  enum bg_role role, unsigned int index,
			  struct dm_dev **dev);

/*
 * A node whose table is writable but which writes nothing (a read_only
 * option): open its children read-only.  Before adding them.
 */
static inline void bg_instance_set_read_only(struct bg_instance *inst)
{
	inst->writable = false;
}

/*
 * bg_instance_child_name() - the node name of the child @dev of @inst (its
 * dm name or kernel name), into @name.  Sleeps.
 */
void bg_instance_child_name(struct bg_instance *inst, struct dm_dev *dev,
			    char name[BG_NAME_LEN]);

/*
 * bg_instance_detach_child() - drop the edge from @inst to @dev (the newest,
 * if @dev was added twice) from the graph while the table lives on (a child
 * removed at run time, or one just added and refused).  @dev
 * stays open: the caller puts it with dm_put_device() in its destructor,
 * because dm's device list of a live table is not ours to shorten.  Sleeps.
 */
void bg_instance_detach_child(struct bg_instance *inst, struct dm_dev *dev);

/* Tear an instance down: its edges, their devices, its node reference. */
void bg_instance_destroy(struct bg_instance *inst);

/* From a target's resume: make @inst the node's live instance. */
void bg_instance_resume(struct bg_instance *inst);

/* May a bio that writes pass to @node's children?  Hot path: lock-free. */
static inline bool bg_node_write_blocked(const struct bg_node *node)
{
	return READ_ONCE(node->write_blocked);
}

/* Is @inst part of its node's live table?  bg_graph_lock held. */
static inline bool bg_instance_live(const struct bg_instance *inst)
{
	return inst->node->live_table == inst->ti->table;
}

/* Size in bytes of @node as its device shows it now; bg_graph_lock held. */
u64 bg_node_size(struct bg_node *node);
bool bg_node_read_only(struct bg_node *node);

/*
 * bg_op_block() - take blockers for @op on @n nodes at once, owned by
 * @owner, or none: returns -EBUSY with a reason in @reason when a blocker
 * already on one of the nodes refuses @op.  Sleeps.
 */
int bg_op_block(struct bg_node **nodes, unsigned int n, enum bg_op op,
		const char *owner, struct bg_block_set *set,
		char *reason, size_t reason_len);
void bg_op_unblock(struct bg_block_set *set);

/* configfs.c */
int bg_configfs_init(void);
void bg_configfs_exit(void);
int bg_configfs_add_node(struct bg_node *node);
void bg_configfs_remove_node(struct bg_node *node);
/* Pin a user-made directory of ours: its rmdir fails with EBUSY. Sleeps. */
int bg_configfs_depend(struct config_item *item);
void bg_configfs_undepend(struct config_item *item);

/* targets */
int bg_raw_init(void);
void bg_raw_exit(void);
int bg_qcow2_init(void);
void bg_qcow2_exit(void);
int bg_throttle_init(void);
void bg_throttle_exit(void);
int bg_quorum_init(void);
void bg_quorum_exit(void);
/* throttle-groups/, set up before the configfs subsystem registers. */
struct config_group *bg_throttle_groups_group(void);

#endif /* DM_BGRAPH_BGRAPH_H */
