// SPDX-License-Identifier: GPL-2.0
/*
 * The configfs tree at /sys/kernel/config/bgraph/:
 *
 *   graph		every live edge, one per line: "<parent> <role> <child>"
 *   op_blockers	the op-blocker table
 *   nodes/<name>/	one directory per node, made and removed by the kernel
 *	kind size read_only dev children parents permissions blockers stats
 *   changes/<name>/	a graph change in progress, made by users with mkdir:
 *	block		write "<op> <node>..." to take blockers; read them
 *   <kind's group>/	a directory a node kind owns (bg_kind.configfs_group),
 *			such as the throttle groups users make with mkdir
 *
 * The node directories follow the dm devices; users cannot mkdir or rmdir
 * them.  Multi-line files are configfs binary attributes so that a large
 * graph is never cut at a page.
 */
#include <linux/module.h>
#include <linux/slab.h>

#include "bgraph.h"

#define DM_MSG_PREFIX "bgraph"

#define BG_TEXT_MAX	(1024 * 1024)

static inline struct bg_node *to_bg_node(struct config_item *item)
{
	return container_of(to_config_group(item), struct bg_node, group);
}

/* ---------------------------------------------------------------- */
/* Text formatting (bg_graph_lock held)                             */
/* ---------------------------------------------------------------- */

/*
 * Each formatter has snprintf() semantics through bg_emit(): it returns the
 * length of the whole text, and with buf == NULL only measures it.
 */
ssize_t bg_configfs_text_read(int (*fn)(void *arg, char *buf, size_t size),
			      void *arg, void *buf, size_t size)
{
	char *tmp = NULL;
	int len;

	if (buf) {
		tmp = kmalloc(size + 1, GFP_KERNEL);
		if (!tmp)
			return -ENOMEM;
	}
	mutex_lock(&bg_graph_lock);
	len = fn(arg, tmp, tmp ? size + 1 : 0);
	mutex_unlock(&bg_graph_lock);
	if (tmp) {
		len = min_t(size_t, len, size);
		memcpy(buf, tmp, len);
		kfree(tmp);
	}
	return len;
}

/* "file", "children.2", ...: the role of @e, in @role. */
static const char *bg_edge_role(struct bg_edge *e, char *role, size_t size)
{
	bg_role_format(role, size, e->role, e->index);
	return role;
}

static int bg_children_text(void *arg, char *buf, size_t size)
{
	struct bg_node *node = arg;
	struct bg_instance *inst;
	struct bg_edge *e;
	char role[32];
	int len = 0;

	list_for_each_entry(inst, &node->instances, entry) {
		if (!bg_instance_live(inst))
			continue;
		list_for_each_entry(e, &inst->children, parent_entry)
			len = bg_emit(buf, size, len, "%s %s\n",
				      bg_edge_role(e, role, sizeof(role)),
				      e->child->name);
	}
	return len;
}

static int bg_parents_text(void *arg, char *buf, size_t size)
{
	struct bg_node *node = arg;
	struct bg_edge *e;
	char role[32];
	int len = 0;

	list_for_each_entry(e, &node->parents, child_entry) {
		if (!bg_instance_live(e->parent))
			continue;
		len = bg_emit(buf, size, len, "%s %s\n", e->parent->node->name,
			      bg_edge_role(e, role, sizeof(role)));
	}
	return len;
}

static int bg_perms_text(void *arg, char *buf, size_t size)
{
	struct bg_node *node = arg;
	struct bg_instance *inst;
	char perm[80], shared[80], role[32];
	struct bg_edge *e;
	int len = 0;

	list_for_each_entry(inst, &node->instances, entry) {
		if (!bg_instance_live(inst))
			continue;
		list_for_each_entry(e, &inst->children, parent_entry) {
			bg_perm_format(perm, sizeof(perm), e->perm.perm);
			bg_perm_format(shared, sizeof(shared), e->perm.shared);
			len = bg_emit(buf, size, len, "%s %s perm=%s shared=%s%s\n",
				      bg_edge_role(e, role, sizeof(role)),
				      e->child->name, perm, shared,
				      inst->state == BG_INST_PARKED ?
				      " parked" : "");
		}
	}
	return len;
}

static int bg_blockers_text(void *arg, char *buf, size_t size)
{
	struct bg_node *node = arg;
	struct bg_blocker *b;
	int len = 0;

	list_for_each_entry(b, &node->blockers, entry)
		len = bg_emit(buf, size, len, "%s %s\n", bg_op_name(b->op), b->owner);
	return len;
}

/* Counters of the node's kind, if it has any: the live instance's. */
static int bg_stats_text(void *arg, char *buf, size_t size)
{
	struct bg_node *node = arg;
	struct bg_instance *inst;

	list_for_each_entry(inst, &node->instances, entry)
		if (bg_instance_live(inst) && inst->kind->stats_text)
			return inst->kind->stats_text(inst, buf, size);
	return 0;
}

static int bg_graph_text(void *unused, char *buf, size_t size)
{
	struct bg_instance *inst;
	struct bg_node *node;
	struct bg_edge *e;
	char role[32];
	int len = 0;

	list_for_each_entry(node, &bg_nodes, entry) {
		list_for_each_entry(inst, &node->instances, entry) {
			if (!bg_instance_live(inst))
				continue;
			list_for_each_entry(e, &inst->children, parent_entry)
				len = bg_emit(buf, size, len, "%s %s %s\n",
					      node->name,
					      bg_edge_role(e, role, sizeof(role)),
					      e->child->name);
		}
	}
	return len;
}

/* ---------------------------------------------------------------- */
/* nodes/<name>/                                                    */
/* ---------------------------------------------------------------- */

/* A one-value attribute of a node, read under bg_graph_lock. */
#define BG_NODE_SHOW(_name, _fmt, _expr)				\
static ssize_t bg_node_##_name##_show(struct config_item *item,	\
				      char *page)			\
{									\
	struct bg_node *node = to_bg_node(item);			\
	ssize_t r;							\
									\
	mutex_lock(&bg_graph_lock);					\
	r = sysfs_emit(page, _fmt "\n", _expr);			\
	mutex_unlock(&bg_graph_lock);					\
	return r;							\
}

BG_NODE_SHOW(kind, "%s", node->kind)
BG_NODE_SHOW(size, "%llu", bg_node_size(node))
BG_NODE_SHOW(read_only, "%d", bg_node_read_only(node))

static ssize_t bg_node_dev_show(struct config_item *item, char *page)
{
	struct bg_node *node = to_bg_node(item);

	return sysfs_emit(page, "%u:%u\n", MAJOR(node->devt),
			  MINOR(node->devt));
}

CONFIGFS_ATTR_RO(bg_node_, kind);
CONFIGFS_ATTR_RO(bg_node_, size);
CONFIGFS_ATTR_RO(bg_node_, read_only);
CONFIGFS_ATTR_RO(bg_node_, dev);

static struct configfs_attribute *bg_node_attrs[] = {
	&bg_node_attr_kind,
	&bg_node_attr_size,
	&bg_node_attr_read_only,
	&bg_node_attr_dev,
	NULL,
};

#define BG_NODE_TEXT_ATTR(_name, _fn)					\
static ssize_t bg_node_##_name##_read(struct config_item *item,	\
				      void *buf, size_t size)		\
{									\
	return bg_configfs_text_read(_fn, to_bg_node(item), buf, size);		\
}									\
CONFIGFS_BIN_ATTR_RO(bg_node_, _name, NULL, BG_TEXT_MAX)

BG_NODE_TEXT_ATTR(children, bg_children_text);
BG_NODE_TEXT_ATTR(parents, bg_parents_text);
BG_NODE_TEXT_ATTR(permissions, bg_perms_text);
BG_NODE_TEXT_ATTR(blockers, bg_blockers_text);
BG_NODE_TEXT_ATTR(stats, bg_stats_text);

static struct configfs_bin_attribute *bg_node_bin_attrs[] = {
	&bg_node_attr_children,
	&bg_node_attr_parents,
	&bg_node_attr_permissions,
	&bg_node_attr_blockers,
	&bg_node_attr_stats,
	NULL,
};

static void bg_node_release(struct config_item *item)
{
	kfree(to_bg_node(item));
}

static struct configfs_item_operations bg_node_item_ops = {
	.release	= bg_node_release,
};

static const struct config_item_type bg_node_type = {
	.ct_item_ops	= &bg_node_item_ops,
	.ct_attrs	= bg_node_attrs,
	.ct_bin_attrs	= bg_node_bin_attrs,
	.ct_owner	= THIS_MODULE,
};

/* ---------------------------------------------------------------- */
/* changes/<name>/                                                  */
/* ---------------------------------------------------------------- */

/*
 * A graph change in progress: user space (bgraph, or anyone scripting
 * dmsetup) makes changes/<name>, writes "<op> <node>..." lines to its
 * block file, each taking blockers for that op on those nodes at once or
 * none, does its dm steps, and removes the directory, which releases them
 * all.  Its sets are guarded by bg_graph_lock, like the blockers.
 */
struct bg_change {
	struct config_group group;
	struct list_head sets;		/* bg_change_set.entry */
	char owner[BG_OWNER_LEN];	/* "change:<name>" */
};

struct bg_change_set {
	struct list_head entry;		/* on bg_change.sets */
	enum bg_op op;
	struct bg_block_set set;
};

static inline struct bg_change *to_bg_change(struct config_item *item)
{
	return container_of(to_config_group(item), struct bg_change, group);
}

/*
 * Each set as the line that took it, one per line; a node removed since
 * keeps its name, followed by "(removed)".
 */
static ssize_t bg_change_block_show(struct config_item *item, char *page)
{
	struct bg_change *ch = to_bg_change(item);
	struct bg_change_set *cs;
	unsigned int i;
	int len = 0;

	mutex_lock(&bg_graph_lock);
	list_for_each_entry(cs, &ch->sets, entry) {
		len = bg_emit(page, PAGE_SIZE, len, "%s", bg_op_name(cs->op));
		for (i = 0; i < cs->set.n; i++) {
			struct bg_node *node = cs->set.blockers[i].node;

			len = bg_emit(page, PAGE_SIZE, len, " %s%s", node->name,
				      node->removed ? "(removed)" : "");
		}
		len = bg_emit(page, PAGE_SIZE, len, "\n");
	}
	mutex_unlock(&bg_graph_lock);
	return min_t(int, len, PAGE_SIZE - 1);
}

/*
 * "<op> <node> [<node>...]": blockers for <op> on every node named, or
 * none.  -EINVAL for a line that does not parse or names no node, -EBUSY
 * when a blocker on a node refuses <op>; the reason goes to the kernel
 * log, naming the change and the node.
 */
static ssize_t bg_change_block_store(struct config_item *item,
				     const char *page, size_t count)
{
	struct bg_change *ch = to_bg_change(item);
	struct bg_change_set *cs;
	struct bg_block_req *req;
	const char *error;
	char reason[BG_NAME_LEN + 96];
	char *line;
	int r;

	line = kmemdup_nul(page, count, GFP_KERNEL);
	req = kmalloc(sizeof(*req), GFP_KERNEL);
	cs = kzalloc(sizeof(*cs), GFP_KERNEL);
	if (!line || !req || !cs) {
		r = -ENOMEM;
		goto out;
	}
	r = bg_block_parse(line, req, &error);
	if (r) {
		DMERR("change %s: %s", config_item_name(item), error);
		goto out;
	}
	r = bg_op_block_names(req->names, req->n, req->op, ch->owner,
			      &cs->set, reason, sizeof(reason));
	if (r) {
		if (r != -ENOMEM)
			DMERR("change %s: %s", config_item_name(item), reason);
		goto out;
	}
	cs->op = req->op;
	mutex_lock(&bg_graph_lock);
	list_add_tail(&cs->entry, &ch->sets);
	mutex_unlock(&bg_graph_lock);
	cs = NULL;
	r = count;
out:
	kfree(cs);
	kfree(req);
	kfree(line);
	return r;
}

CONFIGFS_ATTR(bg_change_, block);

static struct configfs_attribute *bg_change_attrs[] = {
	&bg_change_attr_block,
	NULL,
};

/* The last reference is gone (rmdir, and every open file closed). */
static void bg_change_release(struct config_item *item)
{
	struct bg_change *ch = to_bg_change(item);
	struct bg_change_set *cs, *tmp;

	list_for_each_entry_safe(cs, tmp, &ch->sets, entry) {
		bg_op_unblock(&cs->set);
		kfree(cs);
	}
	kfree(ch);
}

static struct configfs_item_operations bg_change_item_ops = {
	.release	= bg_change_release,
};

static const struct config_item_type bg_change_type = {
	.ct_item_ops	= &bg_change_item_ops,
	.ct_attrs	= bg_change_attrs,
	.ct_owner	= THIS_MODULE,
};

static struct config_group *bg_changes_make_group(struct config_group *group,
						  const char *name)
{
	struct bg_change *ch;

	/* The owner must fit whole: it names the change in every refusal. */
	if (strlen(BG_CHANGE_OWNER) + strlen(name) >= BG_OWNER_LEN)
		return ERR_PTR(-ENAMETOOLONG);
	ch = kzalloc(sizeof(*ch), GFP_KERNEL);
	if (!ch)
		return ERR_PTR(-ENOMEM);
	INIT_LIST_HEAD(&ch->sets);
	snprintf(ch->owner, sizeof(ch->owner), BG_CHANGE_OWNER "%s", name);
	config_group_init_type_name(&ch->group, name, &bg_change_type);
	return &ch->group;
}

static struct configfs_group_operations bg_changes_group_ops = {
	.make_group	= bg_changes_make_group,
};

static const struct config_item_type bg_changes_type = {
	.ct_group_ops	= &bg_changes_group_ops,
	.ct_owner	= THIS_MODULE,
};

static struct config_group bg_changes_group;

/* ---------------------------------------------------------------- */
/* The root: graph, op_blockers, nodes/                             */
/* ---------------------------------------------------------------- */

static ssize_t bg_root_graph_read(struct config_item *item, void *buf,
				  size_t size)
{
	return bg_configfs_text_read(bg_graph_text, NULL, buf, size);
}

static int bg_op_table_text(void *unused, char *buf, size_t size)
{
	return bg_op_table_format(buf, size);
}

static ssize_t bg_root_op_blockers_read(struct config_item *item, void *buf,
					size_t size)
{
	return bg_configfs_text_read(bg_op_table_text, NULL, buf, size);
}

CONFIGFS_BIN_ATTR_RO(bg_root_, graph, NULL, BG_TEXT_MAX);
CONFIGFS_BIN_ATTR_RO(bg_root_, op_blockers, NULL, BG_TEXT_MAX);

static struct configfs_bin_attribute *bg_root_bin_attrs[] = {
	&bg_root_attr_graph,
	&bg_root_attr_op_blockers,
	NULL,
};

static const struct config_item_type bg_root_type = {
	.ct_bin_attrs	= bg_root_bin_attrs,
	.ct_owner	= THIS_MODULE,
};

static const struct config_item_type bg_nodes_type = {
	.ct_owner	= THIS_MODULE,
};

static struct config_group bg_nodes_group;

static struct configfs_subsystem bg_subsys = {
	.su_group = {
		.cg_item = {
			.ci_namebuf	= "bgraph",
			.ci_type	= &bg_root_type,
		},
	},
};

int bg_configfs_add_node(struct bg_node *node)
{
	config_group_init_type_name(&node->group, node->name, &bg_node_type);
	return configfs_register_group(&bg_nodes_group, &node->group);
}

void bg_configfs_remove_node(struct bg_node *node)
{
	configfs_unregister_group(&node->group);
	config_group_put(&node->group);
}

int bg_configfs_depend(struct config_item *item)
{
	return configfs_depend_item(&bg_subsys, item);
}

void bg_configfs_undepend(struct config_item *item)
{
	configfs_undepend_item(item);
}

int bg_configfs_init(struct config_group **groups, unsigned int n)
{
	unsigned int i;

	config_group_init(&bg_subsys.su_group);
	mutex_init(&bg_subsys.su_mutex);
	config_group_init_type_name(&bg_nodes_group, "nodes", &bg_nodes_type);
	configfs_add_default_group(&bg_nodes_group, &bg_subsys.su_group);
	config_group_init_type_name(&bg_changes_group, "changes",
				    &bg_changes_type);
	configfs_add_default_group(&bg_changes_group, &bg_subsys.su_group);
	for (i = 0; i < n; i++)
		configfs_add_default_group(groups[i], &bg_subsys.su_group);
	return configfs_register_subsystem(&bg_subsys);
}

void bg_configfs_exit(void)
{
	configfs_unregister_subsystem(&bg_subsys);
}
