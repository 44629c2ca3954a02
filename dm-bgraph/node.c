// SPDX-License-Identifier: GPL-2.0
/*
 * dm-bgraph graph core: the node registry, instances, edges, permissions
 * and op blockers.  See bgraph.h for the model and the locking rules.
 */
#include <linux/module.h>
#include <linux/slab.h>

#include "bgraph.h"

#define DM_MSG_PREFIX "bgraph"

/* Deepest chain of nodes the cycle check walks before refusing. */
#define BG_MAX_DEPTH	64

/* Guards bg_nodes and every node's lists and counts; see bgraph.h. */
DEFINE_MUTEX(bg_graph_lock);
LIST_HEAD(bg_nodes);

/* Serialises node creation and removal with their configfs directories. */
static DEFINE_MUTEX(bg_cfs_lock);

/* Serialises re-points (bg_edge_repoint()); taken before bg_cfs_lock. */
static DEFINE_MUTEX(bg_repoint_lock);

static const char bg_kind_leaf[] = "host_device";

/* ---------------------------------------------------------------- */
/* Registry (bg_graph_lock held)                                    */
/* ---------------------------------------------------------------- */

static struct bg_node *bg_find_devt(dev_t devt)
{
	struct bg_node *node;

	list_for_each_entry(node, &bg_nodes, entry)
		if (node->devt == devt)
			return node;
	return NULL;
}

static struct bg_node *bg_find_name(const char *name)
{
	struct bg_node *node;

	list_for_each_entry(node, &bg_nodes, entry)
		if (!strcmp(node->name, name))
			return node;
	return NULL;
}

/*
 * bg_node_get() - take a reference on the node of @devt, creating it (and
 * its configfs directory) under @name when there is none.  bg_cfs_lock held.
 */
static struct bg_node *bg_node_get(dev_t devt, const char *name,
				   const char *kind, char **error)
{
	struct bg_node *node, *fresh;
	int r;

	fresh = kzalloc(sizeof(*fresh), GFP_KERNEL);
	if (!fresh) {
		*error = "Cannot allocate a graph node";
		return ERR_PTR(-ENOMEM);
	}

	mutex_lock(&bg_graph_lock);
	node = bg_find_devt(devt);
	if (node) {
		node->refs++;
		mutex_unlock(&bg_graph_lock);
		kfree(fresh);
		return node;
	}
	if (bg_find_name(name)) {
		mutex_unlock(&bg_graph_lock);
		kfree(fresh);
		DMERR("node name %s is already used by another device", name);
		*error = "Node name is already used by another device";
		return ERR_PTR(-EEXIST);
	}
	node = fresh;
	node->devt = devt;
	strscpy(node->name, name, sizeof(node->name));
	node->kind = kind;
	node->refs = 1;
	INIT_LIST_HEAD(&node->instances);
	INIT_LIST_HEAD(&node->parents);
	INIT_LIST_HEAD(&node->blockers);
	list_add_tail(&node->entry, &bg_nodes);
	mutex_unlock(&bg_graph_lock);

	r = bg_configfs_add_node(node);
	if (r) {
		mutex_lock(&bg_graph_lock);
		list_del(&node->entry);
		mutex_unlock(&bg_graph_lock);
		/* Not yet in configfs: the group's release frees it. */
		config_group_put(&node->group);
		*error = "Cannot create the node's configfs directory";
		return ERR_PTR(r);
	}
	return node;
}

/* Drop a reference; the last one removes the node.  bg_cfs_lock held. */
static void bg_node_put(struct bg_node *node)
{
	bool last;

	mutex_lock(&bg_graph_lock);
	last = !--node->refs;
	if (last) {
		list_del(&node->entry);
		node->removed = true;	/* blockers may still point here */
	}
	mutex_unlock(&bg_graph_lock);

	if (last)
		bg_configfs_remove_node(node);	/* frees node */
}

u64 bg_node_size(struct bg_node *node)
{
	struct bg_edge *edge;

	if (node->md)
		return (u64)get_capacity(dm_disk(node->md)) << SECTOR_SHIFT;
	edge = list_first_entry_or_null(&node->parents, struct bg_edge,
					child_entry);
	return edge ? bdev_nr_bytes(edge->dev->bdev) : 0;
}

bool bg_node_read_only(struct bg_node *node)
{
	struct bg_edge *edge;

	if (node->md)
		return get_disk_ro(dm_disk(node->md));
	edge = list_first_entry_or_null(&node->parents, struct bg_edge,
					child_entry);
	return edge ? bdev_read_only(edge->dev->bdev) : false;
}

/* ---------------------------------------------------------------- */
/* Permissions (bg_graph_lock held)                                 */
/* ---------------------------------------------------------------- */

/*
 * Does @edge count against an edge of @self (but @skip, that edge itself
 * when it is on the list already)?  With @own false: all but those of
 * the other tables of @self's node (the table a reload replaces, or its
 * replacement: never live together with @self's table) and but the parked
 * ones (their devices are suspended; each is checked again at its own
 * resume).  With @own true: only those of @self's table, parked or not
 * (they go live together).  Each edge counts, as in QEMU: a node whose
 * file is also its own backing child conflicts with itself, and so do two
 * targets of one table.
 */
static bool bg_edge_meets(const struct bg_edge *edge,
			  const struct bg_instance *self,
			  const struct bg_edge *skip, bool own)
{
	bool same_table = edge->parent->ti->table == self->ti->table;

	if (edge == skip)
		return false;
	if (own || same_table)
		return same_table;
	return edge->parent->node != self->node &&
	       edge->parent->state != BG_INST_PARKED;
}

/* The edges on @child that bg_edge_meets(), folded.  bg_graph_lock held. */
static struct bg_perm_acc bg_parents_acc(struct bg_node *child,
					 const struct bg_instance *self,
					 const struct bg_edge *skip, bool own)
{
	struct bg_perm_acc acc = { 0, 0 };
	struct bg_edge *edge;

	list_for_each_entry(edge, &child->parents, child_entry)
		if (bg_edge_meets(edge, self, skip, own))
			bg_perm_acc_add(&acc, edge->perm);
	return acc;
}

/*
 * The first edge on @child that bg_edge_meets() and that @perm conflicts
 * with by itself: the other parent a refusal names.  bg_graph_lock held.
 */
static struct bg_edge *bg_conflicting_edge(struct bg_node *child,
					   const struct bg_instance *self,
					   const struct bg_edge *skip,
					   struct bg_perm_pair perm)
{
	struct bg_perm_acc acc;
	struct bg_edge *edge;

	list_for_each_entry(edge, &child->parents, child_entry) {
		if (!bg_edge_meets(edge, self, skip, false))
			continue;
		acc = (struct bg_perm_acc){ 0, 0 };
		bg_perm_acc_add(&acc, edge->perm);
		if (bg_perm_conflict(&acc, perm))
			return edge;
	}
	return NULL;
}

/*
 * Make @child read-only for every opener while its edges say so, and give
 * it back its own state when they stop saying so.  Writes that still reach
 * one of our nodes are failed in its map (bg_node_write_blocked()), since
 * the block layer only warns about writes to a read-only disk.
 *
 * Every edge's refusal to share WRITE counts, whatever the state of its
 * instance: an inactive table's backing edge, or a suspended one's, keeps
 * its child read-only for openers outside the graph, which no resume
 * checks.  Only a live instance's WRITE makes the child writable again:
 * an inactive table (a reload of the node above that turns its backing
 * edge into a file edge) writes nothing yet, and must not open its child
 * to every other writer before its node's live table lets go of it.
 */
static void bg_node_update_ro(struct bg_node *child, struct gendisk *disk)
{
	struct bg_perm_acc acc = { 0, 0 };
	struct bg_perm_pair p;
	struct bg_edge *edge;
	bool ro;

	list_for_each_entry(edge, &child->parents, child_entry) {
		p = edge->perm;
		if (edge->parent->state != BG_INST_LIVE)
			p.perm = 0;
		bg_perm_acc_add(&acc, p);
	}
	ro = bg_perm_read_only(&acc);

	WRITE_ONCE(child->write_blocked, ro);
	if (ro && !child->ro_disk) {
		child->ro_disk = disk;
		child->ro_saved = get_disk_ro(disk);
		set_disk_ro(disk, true);
	} else if (!ro && child->ro_disk) {
		set_disk_ro(child->ro_disk, child->ro_saved);
		child->ro_disk = NULL;
	}
}

/*
 * Is @target reachable from @from through child edges?  Parked instances'
 * edges are not followed: each is checked again at its own resume.
 */
static int bg_reaches(struct bg_node *from, struct bg_node *target,
		      unsigned int depth)
{
	struct bg_instance *inst;
	struct bg_edge *edge;
	int r;

	if (from == target)
		return 1;
	if (depth >= BG_MAX_DEPTH)
		return -ELOOP;
	list_for_each_entry(inst, &from->instances, entry) {
		if (inst->state == BG_INST_PARKED)
			continue;
		list_for_each_entry(edge, &inst->children, parent_entry) {
			r = bg_reaches(edge->child, target, depth + 1);
			if (r)
				return r;
		}
	}
	return 0;
}

/* ---------------------------------------------------------------- */
/* Instances                                                        */
/* ---------------------------------------------------------------- */

struct bg_instance *bg_instance_create(struct dm_target *ti,
				       const struct bg_kind *kind,
				       void *private)
{
	struct mapped_device *md = dm_table_get_md(ti->table);
	char name[BG_NAME_LEN];
	struct bg_instance *inst;
	struct bg_blocker *b;
	struct bg_node *node;

	if (dm_copy_name_and_uuid(md, name, NULL)) {
		ti->error = "Cannot read the dm device's name";
		return ERR_PTR(-ENXIO);
	}

	inst = kzalloc(sizeof(*inst), GFP_KERNEL);
	if (!inst) {
		ti->error = "Cannot allocate a node instance";
		return ERR_PTR(-ENOMEM);
	}
	inst->ti = ti;
	inst->kind = kind;
	inst->private = private;
	inst->writable = dm_table_get_mode(ti->table) & BG_OPEN_WRITE;
	INIT_LIST_HEAD(&inst->children);

	mutex_lock(&bg_cfs_lock);
	node = bg_node_get(disk_devt(dm_disk(md)), name, kind->name,
			   &ti->error);
	if (IS_ERR(node)) {
		mutex_unlock(&bg_cfs_lock);
		kfree(inst);
		return ERR_CAST(node);
	}

	mutex_lock(&bg_graph_lock);
	list_for_each_entry(b, &node->blockers, entry) {
		/* A change loads the tables of the nodes it holds itself. */
		if (bg_blocker_is_change(b))
			continue;
		if (bg_op_blocks(b->op, BG_OP_GRAPH_CHANGE)) {
			DMERR("%s: table refused: %s by %s blocks graph changes",
			      node->name, bg_op_name(b->op), b->owner);
			ti->error = "Node is busy: a running operation blocks graph changes";
			mutex_unlock(&bg_graph_lock);
			bg_node_put(node);
			mutex_unlock(&bg_cfs_lock);
			kfree(inst);
			return ERR_PTR(-EBUSY);
		}
	}
	inst->node = node;
	node->md = md;
	node->kind = kind->name;
	node->ninstances++;
	list_add_tail(&inst->entry, &node->instances);
	mutex_unlock(&bg_graph_lock);
	mutex_unlock(&bg_cfs_lock);
	return inst;
}

/*
 * The name a child gets as a node: its dm name, else its kernel name.
 * (dm_device_name() is "major:minor"; the dm name lives in dm-ioctl.)
 */
static void bg_child_name(struct block_device *bdev, char name[BG_NAME_LEN])
{
	struct mapped_device *md = dm_get_md(bdev->bd_dev);

	if (md) {
		if (dm_copy_name_and_uuid(md, name, NULL))
			snprintf(name, BG_NAME_LEN, "%pg", bdev);
		dm_put(md);
	} else {
		snprintf(name, BG_NAME_LEN, "%pg", bdev);
	}
}

int bg_instance_add_child(struct bg_instance *inst, const char *path,
			  enum bg_role role, unsigned int index,
			  struct dm_dev **devp)
{
	struct dm_target *ti = inst->ti;
	struct bg_node *node = inst->node, *child;
	bg_mode_t mode = dm_table_get_mode(ti->table);
	struct bg_perm_acc acc;
	struct bg_edge *edge;
	char name[BG_NAME_LEN];
	char role_name[32], pbuf[80], sbuf[80];
	unsigned int bad;
	int r;

	if (role == BG_ROLE_BACKING || !inst->writable)
		mode = BG_OPEN_READ;

	edge = kzalloc(sizeof(*edge), GFP_KERNEL);
	if (!edge) {
		ti->error = "Cannot allocate a graph edge";
		return -ENOMEM;
	}
	edge->parent = inst;
	edge->role = role;
	edge->index = index;
	edge->perm = bg_role_perms(role, mode & BG_OPEN_WRITE);
	bg_role_format(role_name, sizeof(role_name), role, index);

	r = dm_get_device(ti, path, mode, &edge->dev);
	if (r) {
		DMERR("%s: cannot open %s child %s: %d", node->name, role_name,
		      path, r);
		ti->error = "Cannot open the child device";
		goto out_free;
	}
	if (edge->dev->bdev->bd_dev == node->devt) {
		ti->error = "A node cannot be its own child";
		r = -EINVAL;
		goto out_put_dev;
	}
	bg_child_name(edge->dev->bdev, name);

	mutex_lock(&bg_cfs_lock);
	child = bg_node_get(edge->dev->bdev->bd_dev, name, bg_kind_leaf,
			    &ti->error);
	if (IS_ERR(child)) {
		r = PTR_ERR(child);
		goto out_unlock_cfs;
	}

	mutex_lock(&bg_graph_lock);
	r = bg_reaches(child, node, 0);
	if (r) {
		DMERR("%s: %s child %s would close a cycle in the graph",
		      node->name, role_name, child->name);
		ti->error = r < 0 ? "Graph is too deep" :
				    "Child would close a cycle in the graph";
		r = r < 0 ? r : -ELOOP;
		goto out_unlock_graph;
	}
	acc = bg_parents_acc(child, inst, NULL, false);
	bad = bg_perm_conflict(&acc, edge->perm);
	if (bad) {
		bool own;

		acc = bg_parents_acc(child, inst, NULL, true);
		own = bg_perm_conflict(&acc, edge->perm);
		bg_perm_format(pbuf, sizeof(pbuf), bad);
		bg_perm_format(sbuf, sizeof(sbuf), edge->perm.perm);
		DMERR("%s: %s child %s: permission conflict on %s (wants %s)%s",
		      node->name, role_name, child->name, pbuf, sbuf,
		      own ? " with another edge of this node" : "");
		ti->error = own ?
			"Child permissions conflict with another edge of this node" :
			"Child permissions conflict with another parent";
		r = -EPERM;
		goto out_unlock_graph;
	}
	edge->child = child;
	list_add_tail(&edge->parent_entry, &inst->children);
	list_add_tail(&edge->child_entry, &child->parents);
	bg_node_update_ro(child, edge->dev->bdev->bd_disk);
	mutex_unlock(&bg_graph_lock);
	mutex_unlock(&bg_cfs_lock);

	*devp = edge->dev;
	return 0;

out_unlock_graph:
	mutex_unlock(&bg_graph_lock);
	bg_node_put(child);
out_unlock_cfs:
	mutex_unlock(&bg_cfs_lock);
out_put_dev:
	dm_put_device(ti, edge->dev);
out_free:
	kfree(edge);
	return r;
}

/*
 * The newest edge of @inst to @dev, or NULL: when a device was just added
 * a second time, the one just added.  bg_graph_lock held.
 */
static struct bg_edge *bg_instance_edge(struct bg_instance *inst,
					struct dm_dev *dev)
{
	struct bg_edge *edge;

	list_for_each_entry_reverse(edge, &inst->children, parent_entry)
		if (edge->dev == dev)
			return edge;
	return NULL;
}

void bg_instance_child_name(struct bg_instance *inst, struct dm_dev *dev,
			    char name[BG_NAME_LEN])
{
	struct bg_edge *edge;

	mutex_lock(&bg_graph_lock);
	edge = bg_instance_edge(inst, dev);
	strscpy(name, edge ? edge->child->name : dev->name, BG_NAME_LEN);
	mutex_unlock(&bg_graph_lock);
}

void bg_instance_detach_child(struct bg_instance *inst, struct dm_dev *dev)
{
	struct bg_edge *edge;

	mutex_lock(&bg_cfs_lock);
	mutex_lock(&bg_graph_lock);
	edge = bg_instance_edge(inst, dev);
	if (edge) {
		list_del(&edge->parent_entry);
		list_del(&edge->child_entry);
		bg_node_update_ro(edge->child, dev->bdev->bd_disk);
	}
	mutex_unlock(&bg_graph_lock);
	if (edge) {
		bg_node_put(edge->child);
		kfree(edge);
	}
	mutex_unlock(&bg_cfs_lock);
}

/* Put an edge's device: dm's, or one bg_edge_repoint() opened.  Sleeps. */
static void bg_edge_put_dev(struct bg_instance *inst, struct dm_dev *dev,
			    bool own)
{
	if (own) {
		bg_bdev_close(dev);
		kfree(dev);
	} else {
		dm_put_device(inst->ti, dev);
	}
}

/* The edge of @inst in @role (children.@index).  bg_graph_lock held. */
static struct bg_edge *bg_instance_role_edge(struct bg_instance *inst,
					     enum bg_role role,
					     unsigned int index)
{
	struct bg_edge *edge;

	list_for_each_entry(edge, &inst->children, parent_entry)
		if (edge->role == role && edge->index == index)
			return edge;
	return NULL;
}

/*
 * May @edge of @inst move to @child, whose device is @bdev?  The old edge
 * is left out of the checks.  bg_graph_lock held.  Returns 0, or a
 * negative errno with the reason in @why.
 */
static int bg_repoint_check(struct bg_instance *inst, struct bg_edge *edge,
			    struct bg_node *child, struct block_device *bdev,
			    char *why, size_t why_len)
{
	u64 need = inst->kind->edge_need(inst, edge);
	char pbuf[80], orole[32];
	struct bg_perm_acc acc;
	struct bg_edge *other;
	unsigned int bad;
	int r;

	if (bdev_nr_bytes(bdev) < need) {
		snprintf(why, why_len, "%llu bytes, %llu needed",
			 (unsigned long long)bdev_nr_bytes(bdev),
			 (unsigned long long)need);
		return -ENOSPC;
	}
	r = bg_reaches(child, inst->node, 0);
	if (r) {
		snprintf(why, why_len, "%s", r < 0 ? "graph too deep" :
			 "it would close a cycle in the graph");
		return -ELOOP;
	}
	acc = bg_parents_acc(child, inst, edge, false);
	bad = bg_perm_conflict(&acc, edge->perm);
	if (!bad) {
		if (!(edge->perm.perm & BG_PERM_WRITE) || !bdev_read_only(bdev))
			return 0;
		snprintf(why, why_len, "it is read-only");
		return -EROFS;
	}
	other = bg_conflicting_edge(child, inst, edge, edge->perm);
	bg_perm_format(pbuf, sizeof(pbuf), bad);
	if (other)
		bg_role_format(orole, sizeof(orole), other->role, other->index);
	snprintf(why, why_len, "permission conflict on %s with %s%s%s", pbuf,
		 other ? other->parent->node->name : "its other parents",
		 other ? "'s edge " : "", other ? orole : "");
	return -EPERM;
}

int bg_edge_repoint(struct bg_instance *inst, enum bg_role role,
		    unsigned int index, dev_t devt)
{
	const struct bg_kind *kind = inst->kind;
	struct bg_node *node = inst->node, *child, *old_child = NULL;
	char role_name[32], name[BG_NAME_LEN], why[320] = "";
	struct dm_dev *dev, *old = NULL;
	struct bg_edge *edge;
	char *error = NULL;
	bool old_own = false;
	bg_mode_t mode = 0;
	int r = 0;

	bg_role_format(role_name, sizeof(role_name), role, index);
	if (!kind->edge_need || !kind->edge_quiesce || !kind->edge_switch) {
		DMERR("%s: cannot re-point %s to %u:%u: a %s node cannot",
		      node->name, role_name, MAJOR(devt), MINOR(devt),
		      kind->name);
		return -EOPNOTSUPP;
	}
	dev = kzalloc(sizeof(*dev), GFP_KERNEL);
	if (!dev)
		return -ENOMEM;

	mutex_lock(&bg_repoint_lock);
	mutex_lock(&bg_graph_lock);
	edge = bg_instance_role_edge(inst, role, index);
	if (!edge) {
		snprintf(why, sizeof(why), "no such edge");
		r = -ENOENT;
	} else if (!bg_instance_live(inst) || inst->state != BG_INST_LIVE) {
		snprintf(why, sizeof(why),
			 "the node is not live (suspended, or an inactive table)");
		r = -EINVAL;
	} else if (edge->child->devt == devt) {
		snprintf(why, sizeof(why), "already its child");
		r = -EINVAL;
	} else if (node->devt == devt) {
		snprintf(why, sizeof(why), "a node cannot be its own child");
		r = -EINVAL;
	} else {
		mode = edge->dev->mode;
	}
	mutex_unlock(&bg_graph_lock);
	if (r)
		goto out_unlock;

	r = bg_bdev_open(devt, mode, dev);
	if (r) {
		snprintf(why, sizeof(why), "cannot open it: %d", r);
		goto out_unlock;
	}
	snprintf(dev->name, sizeof(dev->name), "%u:%u", MAJOR(devt),
		 MINOR(devt));
	bg_child_name(dev->bdev, name);

	r = kind->edge_quiesce(inst, edge);
	if (r) {
		snprintf(why, sizeof(why), "cannot quiesce the edge: %d", r);
		goto out_close;
	}

	mutex_lock(&bg_cfs_lock);
	child = bg_node_get(devt, name, bg_kind_leaf, &error);
	if (IS_ERR(child)) {
		r = PTR_ERR(child);
		snprintf(why, sizeof(why), "%s", error);
		mutex_unlock(&bg_cfs_lock);
		kind->edge_switch(inst, edge, edge->dev);
		goto out_close;
	}
	mutex_lock(&bg_graph_lock);
	r = bg_repoint_check(inst, edge, child, dev->bdev, why, sizeof(why));
	if (!r) {
		old_child = edge->child;
		old = edge->dev;
		old_own = edge->own_dev;
		list_del(&edge->child_entry);
		bg_node_update_ro(old_child, old->bdev->bd_disk);
		edge->child = child;
		edge->dev = dev;
		edge->own_dev = true;
		list_add_tail(&edge->child_entry, &child->parents);
		bg_node_update_ro(child, dev->bdev->bd_disk);
	}
	mutex_unlock(&bg_graph_lock);
	bg_node_put(r ? child : old_child);
	mutex_unlock(&bg_cfs_lock);

	kind->edge_switch(inst, edge, edge->dev);
	if (r)
		goto out_close;
	bg_edge_put_dev(inst, old, old_own);
	DMINFO("%s: %s re-pointed to %s", node->name, role_name, name);
	mutex_unlock(&bg_repoint_lock);
	return 0;

out_close:
	bg_bdev_close(dev);
out_unlock:
	mutex_unlock(&bg_repoint_lock);
	kfree(dev);
	DMERR("%s: cannot re-point %s to %u:%u: %s", node->name, role_name,
	      MAJOR(devt), MINOR(devt), why);
	return r;
}

void bg_instance_destroy(struct bg_instance *inst)
{
	struct bg_node *node = inst->node;
	struct bg_edge *edge, *tmp;
	struct bg_instance *other;
	bool live_left = false;
	LIST_HEAD(gone);

	mutex_lock(&bg_cfs_lock);
	mutex_lock(&bg_graph_lock);
	list_for_each_entry_safe(edge, tmp, &inst->children, parent_entry) {
		list_del(&edge->child_entry);
		list_move_tail(&edge->parent_entry, &gone);
		bg_node_update_ro(edge->child, edge->dev->bdev->bd_disk);
	}
	list_del(&inst->entry);
	list_for_each_entry(other, &node->instances, entry)
		if (other->ti->table == node->live_table)
			live_left = true;
	if (!live_left)
		node->live_table = NULL;
	if (!--node->ninstances) {
		node->md = NULL;
		node->kind = bg_kind_leaf;
	}
	mutex_unlock(&bg_graph_lock);

	list_for_each_entry_safe(edge, tmp, &gone, parent_entry) {
		bg_edge_put_dev(inst, edge->dev, edge->own_dev);
		bg_node_put(edge->child);
		kfree(edge);
	}
	bg_node_put(node);
	mutex_unlock(&bg_cfs_lock);
	kfree(inst);
}

/*
 * Check one edge of @inst, which is on its child's list already, as
 * bg_instance_add_child() checks a new one; log the refusal.
 * bg_graph_lock held.  Returns 0 or a negative errno.
 */
static int bg_edge_recheck(struct bg_instance *inst, struct bg_edge *edge)
{
	struct bg_node *node = inst->node, *child = edge->child;
	char role_name[32], orole[32], pbuf[80], sbuf[80];
	struct bg_perm_acc acc;
	struct bg_edge *other;
	unsigned int bad;
	int r;

	bg_role_format(role_name, sizeof(role_name), edge->role, edge->index);
	r = bg_reaches(child, node, 0);
	if (r) {
		DMERR("%s: cannot resume: %s child %s %s", node->name,
		      role_name, child->name, r < 0 ?
		      "is in a graph too deep" : "closes a cycle in the graph");
		return -ELOOP;
	}
	acc = bg_parents_acc(child, inst, edge, false);
	bad = bg_perm_conflict(&acc, edge->perm);
	if (!bad)
		return 0;
	other = bg_conflicting_edge(child, inst, edge, edge->perm);
	bg_perm_format(pbuf, sizeof(pbuf), bad);
	bg_perm_format(sbuf, sizeof(sbuf), edge->perm.perm);
	if (other)
		bg_role_format(orole, sizeof(orole), other->role, other->index);
	DMERR("%s: cannot resume: %s child %s: permission conflict on %s (wants %s) with %s%s%s",
	      node->name, role_name, child->name, pbuf, sbuf,
	      other ? other->parent->node->name : "its other parents",
	      other ? "'s edge " : "", other ? orole : "");
	return -EPERM;
}

int bg_instance_preresume(struct bg_instance *inst)
{
	struct bg_edge *edge;
	int r = 0;

	mutex_lock(&bg_graph_lock);
	list_for_each_entry(edge, &inst->children, parent_entry) {
		r = bg_edge_recheck(inst, edge);
		if (r)
			break;
	}
	if (!r && inst->state != BG_INST_LIVE) {
		inst->state = BG_INST_LIVE;
		list_for_each_entry(edge, &inst->children, parent_entry)
			bg_node_update_ro(edge->child, edge->dev->bdev->bd_disk);
	}
	mutex_unlock(&bg_graph_lock);
	return r;
}

void bg_instance_postsuspend(struct bg_instance *inst)
{
	struct bg_edge *edge;

	mutex_lock(&bg_graph_lock);
	if (inst->state == BG_INST_LIVE) {
		inst->state = BG_INST_PARKED;
		list_for_each_entry(edge, &inst->children, parent_entry)
			bg_node_update_ro(edge->child, edge->dev->bdev->bd_disk);
	}
	mutex_unlock(&bg_graph_lock);
}

void bg_instance_resume(struct bg_instance *inst)
{
	struct bg_node *node = inst->node;
	struct gendisk *disk = dm_disk(node->md);

	mutex_lock(&bg_graph_lock);
	node->live_table = inst->ti->table;
	/*
	 * dm's resume ioctl has just set the disk's read-only state from the
	 * new table's mode; a backing edge above still wants it read-only.
	 */
	if (node->ro_disk == disk) {
		node->ro_saved = !(dm_table_get_mode(inst->ti->table) &
				   BG_OPEN_WRITE);
		set_disk_ro(disk, true);
	}
	mutex_unlock(&bg_graph_lock);
}

/* ---------------------------------------------------------------- */
/* Op blockers                                                      */
/* ---------------------------------------------------------------- */

/*
 * Check @op against the blockers on @nodes and take one on each, with the
 * entries of @blockers; bg_graph_lock held.  Returns 0, or -EBUSY with
 * the reason in @reason.
 */
static int bg_op_block_locked(struct bg_node **nodes, unsigned int n,
			      enum bg_op op, const char *owner,
			      struct bg_blocker *blockers,
			      char *reason, size_t reason_len)
{
	struct bg_blocker *b;
	unsigned int i;

	lockdep_assert_held(&bg_graph_lock);
	for (i = 0; i < n; i++) {
		list_for_each_entry(b, &nodes[i]->blockers, entry) {
			if (!bg_op_blocks(b->op, op))
				continue;
			snprintf(reason, reason_len,
				 "node %s: %s is blocked by %s (%s)",
				 nodes[i]->name, bg_op_name(op),
				 bg_op_name(b->op), b->owner);
			return -EBUSY;
		}
	}
	for (i = 0; i < n; i++) {
		blockers[i].op = op;
		blockers[i].node = nodes[i];
		strscpy(blockers[i].owner, owner, sizeof(blockers[i].owner));
		list_add_tail(&blockers[i].entry, &nodes[i]->blockers);
		/* The node's memory, not its place in the graph: see bgraph.h. */
		config_group_get(&nodes[i]->group);
	}
	return 0;
}

int bg_op_block(struct bg_node **nodes, unsigned int n, enum bg_op op,
		const char *owner, struct bg_block_set *set,
		char *reason, size_t reason_len)
{
	struct bg_blocker *blockers;
	int r;

	blockers = kcalloc(n, sizeof(*blockers), GFP_KERNEL);
	if (!blockers)
		return -ENOMEM;

	mutex_lock(&bg_graph_lock);
	r = bg_op_block_locked(nodes, n, op, owner, blockers, reason,
			       reason_len);
	mutex_unlock(&bg_graph_lock);
	if (r) {
		kfree(blockers);
		return r;
	}
	set->n = n;
	set->blockers = blockers;
	return 0;
}

int bg_op_block_names(const char *const *names, unsigned int n,
		      enum bg_op op, const char *owner,
		      struct bg_block_set *set, char *reason, size_t reason_len)
{
	struct bg_blocker *blockers;
	struct bg_node **nodes;
	unsigned int i;
	int r = 0;

	nodes = kcalloc(n, sizeof(*nodes), GFP_KERNEL);
	blockers = kcalloc(n, sizeof(*blockers), GFP_KERNEL);
	if (!nodes || !blockers) {
		r = -ENOMEM;
		goto out;
	}

	mutex_lock(&bg_graph_lock);
	for (i = 0; i < n; i++) {
		nodes[i] = bg_find_name(names[i]);
		if (!nodes[i]) {
			snprintf(reason, reason_len, "node %s: no such node",
				 names[i]);
			r = -EINVAL;
			break;
		}
	}
	if (!r)
		r = bg_op_block_locked(nodes, n, op, owner, blockers, reason,
				       reason_len);
	mutex_unlock(&bg_graph_lock);
	if (!r) {
		set->n = n;
		set->blockers = blockers;
		blockers = NULL;
	}
out:
	kfree(blockers);
	kfree(nodes);
	return r;
}

void bg_op_unblock(struct bg_block_set *set)
{
	unsigned int i;

	mutex_lock(&bg_graph_lock);
	for (i = 0; i < set->n; i++)
		list_del(&set->blockers[i].entry);
	mutex_unlock(&bg_graph_lock);
	/* A removed node's memory may go with its last blocker (release). */
	for (i = 0; i < set->n; i++)
		config_group_put(&set->blockers[i].node->group);
	kfree(set->blockers);
	set->blockers = NULL;
	set->n = 0;
}

int bg_target_preresume(struct dm_target *ti)
{
	return bg_instance_preresume(bg_target_instance(ti));
}

void bg_target_postsuspend(struct dm_target *ti)
{
	bg_instance_postsuspend(bg_target_instance(ti));
}

void bg_target_resume(struct dm_target *ti)
{
	bg_instance_resume(bg_target_instance(ti));
}
