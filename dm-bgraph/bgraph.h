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
#include <linux/dm-io.h>
#include <linux/list.h>
#include <linux/mutex.h>

#include "compat.h"
#include "parse.h"
#include "perm.h"
#include "blockers.h"

#define BG_NAME_LEN	128	/* DM_NAME_LEN */
#define BG_OWNER_LEN	64

struct bg_instance;
struct bg_edge;

/**
 * struct bg_kind - a node kind: one dm target type and what the core asks
 * of it.  Each kind defines one, named ``<kind>_kind``, in its own file; the
 * core learns the list from the build (Kbuild's ``bgraph-kinds``, see
 * main.c) and walks it, naming none.  Model: dm-cache's policy registry.
 *
 * @name:	the kind's name, as nodes/<name>/kind shows it ("raw"); its
 *		dm target is "bgraph-<name>" and its module alias
 *		"dm-bgraph-<name>" (MODULE_ALIAS in the kind's file).
 * @target:	its dm target type; registered by the core after @init.
 * @init:	optional.  Sets up what the kind shares between its nodes
 *		(workqueues, configfs groups), once at module load, before
 *		the configfs subsystem and the target are registered.
 *		Sleeps.  Returns 0 or a negative errno.
 * @exit:	optional.  Undoes @init, after the target and the configfs
 *		subsystem are gone.  Sleeps.
 * @configfs_group: optional.  A directory the kind owns under
 *		/sys/kernel/config/bgraph/ (throttle groups), made by @init;
 *		the core adds it as a default group of the subsystem.
 * @stats_text:	optional.  The text of nodes/<name>/stats of a live
 *		instance, whose ``private`` is the kind's context, with
 *		bg_emit() semantics (returns the whole length; @buf may be
 *		NULL with @size 0).  Called with bg_graph_lock held; may
 *		take spinlocks and rcu_read_lock(), must not sleep.  The
 *		kind's destructor calls bg_instance_destroy() before it
 *		frees anything @stats_text reads.
 * @edge_need:	optional, with @edge_quiesce and @edge_switch: a kind that
 *		can re-point an edge of a live node (bg_edge_repoint()) has
 *		all three.  The bytes a child in @edge must have.  Called
 *		with bg_graph_lock held; must not sleep.
 * @edge_quiesce: hold @inst's new I/O on @edge (bios held, not failed),
 *		wait for the I/O in flight on it, and flush its child, so
 *		that the child has everything and gets nothing more.  Sleeps;
 *		called with no lock of ours held.  Return: 0, or a negative
 *		errno with the I/O flowing again as before.
 * @edge_switch: send @inst's I/O on @edge to @dev from now on and release
 *		the held bios to it: the new child, or the old one when the
 *		re-point was refused after @edge_quiesce.  Sleeps; no lock of
 *		ours held.  The caller puts the old child after it returns.
 *
 * The operations the block jobs will ask of a node (block status, copy-up
 * writes) join this structure with the jobs.
 */
struct bg_kind {
	const char *name;
	struct target_type *target;
	int (*init)(void);
	void (*exit)(void);
	struct config_group *configfs_group;
	int (*stats_text)(struct bg_instance *inst, char *buf, size_t size);
	u64 (*edge_need)(struct bg_instance *inst, struct bg_edge *edge);
	int (*edge_quiesce)(struct bg_instance *inst, struct bg_edge *edge);
	void (*edge_switch)(struct bg_instance *inst, struct bg_edge *edge,
			    struct dm_dev *dev);
};

/*
 * Each kind's struct bg_kind, declared from Kbuild's list: BG_KIND_NAMES
 * is "raw_kind,qcow2_kind,...", set by Kbuild from bgraph-kinds.
 */
#ifndef BG_KIND_NAMES
#error "BG_KIND_NAMES is set by Kbuild from bgraph-kinds"
#endif
extern struct bg_kind BG_KIND_NAMES;

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
	bool removed;			/* out of the graph; blockers left */
};

/**
 * enum bg_inst_state - where an instance is in dm's reload choreography
 * @BG_INST_LOADED:	constructed, never resumed (an inactive table, or
 *			one whose resume was refused).  Its edges count
 *			against every new edge, and keep a child read-only,
 *			but do not make it writable again: it writes nothing.
 * @BG_INST_LIVE:	its preresume passed: it may do I/O.  Its edges count
 *			in full.
 * @BG_INST_PARKED:	its device was suspended after it was live (from its
 *			postsuspend on).  Its edges count against no new
 *			edge, nor as a writer of their child; they still
 *			keep a child read-only for openers outside the graph.
 *			Its preresume checks them again before it is live.
 *
 * Moves only in bg_instance_preresume() (to LIVE) and
 * bg_instance_postsuspend() (LIVE to PARKED), under bg_graph_lock.  See
 * "Live graph changes" in Documentation/bgraph.rst.
 */
enum bg_inst_state {
	BG_INST_LOADED,
	BG_INST_LIVE,
	BG_INST_PARKED,
};

struct bg_instance {
	struct list_head entry;		/* on node->instances */
	struct bg_node *node;
	struct dm_target *ti;
	const struct bg_kind *kind;
	void *private;			/* the kind's, for its ops */
	bool writable;
	enum bg_inst_state state;	/* bg_graph_lock */
	struct list_head children;	/* bg_edge.parent_entry */
};

struct bg_edge {
	struct bg_instance *parent;
	struct bg_node *child;
	struct list_head parent_entry;
	struct list_head child_entry;
	enum bg_role role;
	unsigned int index;		/* N of children.N */
	struct bg_perm_pair perm;
	struct dm_dev *dev;		/* bg_repoint_lock or bg_graph_lock */
	bool own_dev;			/* @dev opened by bg_edge_repoint() */
};

/*
 * A blocker holds its node's memory (a configfs item reference), not its
 * place in the graph: a node removed while blocked (dm's destructor cannot
 * refuse) leaves the graph, configfs and its name and dev_t as any other,
 * and is marked @removed; its blockers stay on its list, which only they
 * use from then on, until they are released.
 */
struct bg_blocker {
	struct list_head entry;		/* on node->blockers */
	struct bg_node *node;		/* holds node->group */
	enum bg_op op;
	char owner[BG_OWNER_LEN];
};

/* The owner of the blockers of changes/<name>: "change:<name>". */
#define BG_CHANGE_OWNER		"change:"

/*
 * Is @b held by a graph change (configfs changes/)?  Such a change's own
 * table loads on the nodes it holds are its work: they are not refused.
 */
static inline bool bg_blocker_is_change(const struct bg_blocker *b)
{
	return !strncmp(b->owner, BG_CHANGE_OWNER, strlen(BG_CHANGE_OWNER));
}

/* A set of blockers taken together by bg_op_block(). */
struct bg_block_set {
	unsigned int n;
	struct bg_blocker *blockers;
};

extern struct mutex bg_graph_lock;
extern struct list_head bg_nodes;

/**
 * bg_instance_create() - start a node instance in a target constructor
 * @ti:		the target being constructed
 * @kind:	its kind
 * @private:	the kind's context, for @kind's ops (stats_text); they see
 *		it only once the instance is live, after its resume
 *
 * Finds or creates the node of the target's dm device.
 *
 * Context: sleeps; takes bg_graph_lock.
 * Return: the instance, or an ERR_PTR with ti->error set.
 */
struct bg_instance *bg_instance_create(struct dm_target *ti,
				       const struct bg_kind *kind,
				       void *private);

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

/**
 * bg_edge_repoint() - re-point an edge of a live node to another device
 * @inst:	the node's live instance; its kind has the edge_ hooks
 * @role:	the edge's role
 * @index:	N of children.N, else 0
 * @devt:	the new child: a node's device or any block device
 *
 * Opens @devt itself (not with dm_get_device(): the live table's device
 * list is not ours to grow), in the old edge's mode, and has the kind
 * quiesce its I/O on the edge (bios held, not failed, the old child
 * flushed).  Then, under bg_graph_lock, checks the new edge with the old
 * one left out: the new child is large enough for the kind's need, not
 * read-only under a writable edge, closes no cycle, and its other parents'
 * permissions admit the edge's; and moves the edge to it (configfs shows
 * it at once, both children's read-only state follows).  The kind then
 * releases the held bios to the new child, and the old child is put.  A
 * refusal logs one line naming the node, the edge and the reason, and
 * leaves everything as it was.  The caller keeps @inst's table alive
 * across the call (a target message does: it holds the live table).
 *
 * Context: sleeps; takes bg_repoint_lock, bg_cfs_lock and bg_graph_lock;
 * call with none of ours held.
 * Return: 0, -EOPNOTSUPP (the kind cannot), -ENOENT (no such edge),
 * -EINVAL, -ENOSPC (too small), -EROFS, -ELOOP, -EPERM, or the errno of
 * the open or the quiesce.
 */
int bg_edge_repoint(struct bg_instance *inst, enum bg_role role,
		    unsigned int index, dev_t devt);

/* Tear an instance down: its edges, their devices, its node reference. */
void bg_instance_destroy(struct bg_instance *inst);

/**
 * bg_instance_preresume() - check @inst's edges again before it goes live
 * @inst:	the instance of a target being resumed
 *
 * Every kind's preresume calls this last, after its own work that may
 * fail.  Each edge of @inst is checked, as at load, against the other
 * edges on its child (but the parked ones and those of its node's other
 * tables), and for a cycle through the live graph: edges added while
 * @inst was parked, or while its table was inactive, may conflict with it
 * now.  On a conflict the resume is refused with one log line naming the
 * node, the child, the permission and the other parent, and the device
 * stays suspended; else @inst is live from here on (and its edges count
 * as writers of their children).
 *
 * Context: sleeps; takes bg_graph_lock.
 * Return: 0, -EPERM for a permission conflict, -ELOOP for a cycle.
 */
int bg_instance_preresume(struct bg_instance *inst);

/**
 * bg_instance_postsuspend() - park @inst's edges: its device is suspended
 * @inst:	the instance of a target being suspended
 *
 * Every kind's postsuspend calls this last, once the node sends nothing
 * more to its children (its metadata written back): from here until its
 * preresume, new edges may be made on its children that its own edges
 * would refuse.  That is what lets a reload insert a node between a live
 * parent and its child (an overlay whose backing is the parent's child).
 *
 * Context: sleeps; takes bg_graph_lock.
 */
void bg_instance_postsuspend(struct bg_instance *inst);

/* From a target's resume: make @inst the node's live instance. */
void bg_instance_resume(struct bg_instance *inst);

/*
 * Every kind's context (ti->private) starts with its instance pointer, so
 * that the core's target hooks below find it; each kind states it with
 * BG_CONTEXT(type), checked at build time.
 */
#define BG_CONTEXT(type)						\
	static_assert(offsetof(type, inst) == 0 &&			\
		      __same_type(((type *)NULL)->inst, struct bg_instance *), \
		      #type " must start with struct bg_instance *inst")

static inline struct bg_instance *bg_target_instance(struct dm_target *ti)
{
	return *(struct bg_instance **)ti->private;
}

/*
 * Target hooks for a kind with nothing of its own to do there (a
 * passthrough, a filter): the graph's steps alone.  A kind with work of
 * its own calls the bg_instance_ functions from its hooks, last.
 */
int bg_target_preresume(struct dm_target *ti);
void bg_target_postsuspend(struct dm_target *ti);
void bg_target_resume(struct dm_target *ti);

/* May a bio that writes pass to @node's children?  Hot path: lock-free. */
static inline bool bg_node_write_blocked(const struct bg_node *node)
{
	return READ_ONCE(node->write_blocked);
}

/**
 * bg_bio_write_refused() - must @inst's map() fail @bio with DM_MAPIO_KILL?
 * @inst:	the instance the bio came to
 * @bio:	the bio
 *
 * A node under a backing edge takes no writes, from anyone: not even from
 * an opener that had it open for writing before the edge was made.  Every
 * kind's map() asks this first.  Flushes (no sectors) pass.
 *
 * Context: any; lock-free.
 * Return: true when @bio writes and @inst's node is under a backing edge.
 */
static inline bool bg_bio_write_refused(const struct bg_instance *inst,
					struct bio *bio)
{
	return unlikely(op_is_write(bio_op(bio)) && bio_sectors(bio) &&
			bg_node_write_blocked(inst->node));
}

/**
 * bg_prepare_ioctl() - a filter's prepare_ioctl: pass ioctls to its child
 * @ti:		the target
 * @dev:	its one child
 * @start:	where the target starts on @dev, in sectors
 * @bdev:	set to @dev's block device
 *
 * Return: 0 when the target covers the whole of @dev (ioctls pass), else
 * 1 (dm then refuses the ioctls that would reach past the target).
 */
static inline int bg_prepare_ioctl(struct dm_target *ti, struct dm_dev *dev,
				   sector_t start, struct block_device **bdev)
{
	*bdev = dev->bdev;
	return start || ti->len != bdev_nr_sectors(dev->bdev);
}

/* Is @inst part of its node's live table?  bg_graph_lock held. */
static inline bool bg_instance_live(const struct bg_instance *inst)
{
	return inst->node->live_table == inst->ti->table;
}

/* Size in bytes of @node as its device shows it now; bg_graph_lock held. */
u64 bg_node_size(struct bg_node *node);
bool bg_node_read_only(struct bg_node *node);

/**
 * bg_op_block() - take blockers for @op on @n nodes at once, or none
 * @nodes:	the nodes, each once
 * @n:		how many
 * @op:		the op the caller runs on them
 * @owner:	who holds the blockers, as nodes/<name>/blockers shows it
 * @set:	filled with the blockers taken, for bg_op_unblock()
 * @reason:	on -EBUSY, one line: the node, and the op and owner that
 *		refuse @op there (by the op-blocker table)
 * @reason_len:	its size
 *
 * Context: sleeps; takes bg_graph_lock.
 * Return: 0, -EBUSY, or -ENOMEM.
 */
int bg_op_block(struct bg_node **nodes, unsigned int n, enum bg_op op,
		const char *owner, struct bg_block_set *set,
		char *reason, size_t reason_len);

/**
 * bg_op_block_names() - bg_op_block() on nodes named by user space
 * @names:	the node names, each once
 * @n:		how many
 * @op:		the op
 * @owner:	who holds the blockers
 * @set:	filled with the blockers taken
 * @reason:	on -EINVAL or -EBUSY, one line naming the node
 * @reason_len:	its size
 *
 * The names are looked up and the blockers taken under one hold of
 * bg_graph_lock: no node named can go in between.
 *
 * Context: sleeps; takes bg_graph_lock.
 * Return: 0, -EINVAL for a name that is no node, -EBUSY, or -ENOMEM;
 * nothing is taken on error.
 */
int bg_op_block_names(const char *const *names, unsigned int n,
		      enum bg_op op, const char *owner,
		      struct bg_block_set *set, char *reason, size_t reason_len);

/**
 * bg_op_unblock() - release the blockers of @set
 * @set:	a set bg_op_block() or bg_op_block_names() filled; emptied
 *
 * Context: sleeps; takes bg_graph_lock, and no other lock of ours (it
 * runs from a configfs item's release).
 */
void bg_op_unblock(struct bg_block_set *set);

/* io.c: synchronous I/O on a child, with dm-io */

/**
 * bg_sync_io() - synchronous dm-io of a whole range of @bdev
 * @client:	the caller's dm-io client
 * @bdev:	the child
 * @opf:	REQ_OP_READ or REQ_OP_WRITE, and flags (REQ_FUA ...)
 * @off:	byte offset, aligned to @bdev's logical block size
 * @buf:	kmalloc or vmalloc memory of @len bytes
 * @len:	bytes, aligned like @off
 *
 * Context: sleeps; never from map().
 * Return: 0 or a negative errno.
 */
int bg_sync_io(struct dm_io_client *client, struct block_device *bdev,
	       blk_opf_t opf, u64 off, void *buf, u64 len);

/**
 * bg_sync_read() - read any byte range of a child synchronously
 * @client:	the caller's dm-io client
 * @bdev:	the child
 * @off:	byte offset, any
 * @buf:	kmalloc or vmalloc memory of @len bytes
 * @len:	bytes, any
 *
 * Bytes past the device's end read as zeros.  A range the device's
 * logical blocks do not align (a compressed cluster, a 512-byte header on
 * a 4Kn disk) goes through a bounce buffer of whole blocks.
 *
 * Context: sleeps; never from map().
 * Return: 0 or a negative errno.
 */
int bg_sync_read(struct dm_io_client *client, struct block_device *bdev,
		 u64 off, void *buf, u64 len);

/**
 * bg_sync_write() - write an aligned range of a child synchronously
 * @client:	the caller's dm-io client
 * @bdev:	the child
 * @off:	byte offset, aligned to @bdev's logical block size
 * @buf:	kmalloc or vmalloc memory of @len bytes
 * @len:	bytes, aligned like @off
 *
 * Context: sleeps; never from map().
 * Return: 0, -EIO for a range past the device's end (never written), or
 * another negative errno.
 */
int bg_sync_write(struct dm_io_client *client, struct block_device *bdev,
		  u64 off, const void *buf, u64 len);

/**
 * bg_bio_all_zero() - does @bio carry only zero bytes?
 * @bio:	a bio with data
 *
 * Context: any; maps each page for a moment (kmap_local).
 * Return: true when every byte of its data is zero.
 */
bool bg_bio_all_zero(struct bio *bio);

/**
 * bg_bio_detect_zeroes() - QEMU's detect-zeroes for a node that passes
 * @bio to @child as it is: a write of zeros becomes a write-zeroes
 * @bio:	the bio, in map()
 * @dz:		the node's detect_zeroes option
 * @child:	the device it goes to
 *
 * With BG_DZ_ON the write-zeroes keeps the blocks (REQ_NOUNMAP), with
 * BG_DZ_UNMAP the child may free them.  A child without write-zeroes gets
 * the write as it was.
 *
 * Context: any (map()).
 * Return: true when @bio was made a write-zeroes.
 */
bool bg_bio_detect_zeroes(struct bio *bio, enum bg_detect_zeroes dz,
			  struct block_device *child);

/* configfs.c */
/*
 * bg_configfs_init() - register /sys/kernel/config/bgraph/ with the @n
 * kinds' directories @groups (already initialised) at its root.  Sleeps.
 */
int bg_configfs_init(struct config_group **groups, unsigned int n);
void bg_configfs_exit(void);
int bg_configfs_add_node(struct bg_node *node);
void bg_configfs_remove_node(struct bg_node *node);
/**
 * bg_configfs_text_read() - a configfs binary attribute's read
 * @fn:		formats the text with bg_emit() semantics: returns its whole
 *		length, and with a NULL buffer only measures it
 * @arg:	for @fn
 * @buf:	configfs's buffer, or NULL when configfs asks for the size
 * @size:	its size
 *
 * configfs first asks for the size, then for exactly that many bytes;
 * snprintf() needs room for a NUL the file must not contain, so @fn fills
 * a bounce buffer.
 *
 * Context: sleeps; calls @fn with bg_graph_lock held.
 * Return: the length read, or -ENOMEM.
 */
ssize_t bg_configfs_text_read(int (*fn)(void *arg, char *buf, size_t size),
			      void *arg, void *buf, size_t size);
/* Pin a user-made directory of ours: its rmdir fails with EBUSY. Sleeps. */
int bg_configfs_depend(struct config_item *item);
void bg_configfs_undepend(struct config_item *item);

#endif /* DM_BGRAPH_BGRAPH_H */
