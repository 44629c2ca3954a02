// SPDX-License-Identifier: GPL-2.0
/*
 * bgraph-throttle: a node that holds I/O to the limits of a throttle group,
 * as QEMU's throttle filter node and throttle groups do
 * (block/throttle.c, block/throttle-groups.c).
 *
 * Table: <dev> <group>
 * Groups: /sys/kernel/config/bgraph/throttle-groups/<group>/, made by
 * mkdir, set by echo.  See Documentation/bgraph-throttle.rst.
 *
 * Every member of a group fills the group's buckets (throttle-core.c).  A
 * bio that must wait is held on its member's queue for its direction, in
 * arrival order; one hrtimer per direction and group wakes a worker that
 * releases held bios, one per member in turn (round robin, QEMU's tokens),
 * for as long as the buckets allow, and re-arms the timer for the rest.
 * A bio that arrives while bios of its direction are held anywhere in the
 * group queues behind them, so nobody overtakes and nobody starves.
 *
 * Locking: bg_tgroups_lock (mutex) guards the list of groups; a group's
 * cfg_lock (mutex) serialises changes of its configuration; its lock
 * (spinlock, irq-safe) guards its buckets, members, queues and counters.
 * Order: bg_graph_lock -> group lock.
 */
#include <linux/module.h>
#include <linux/ctype.h>
#include <linux/slab.h>
#include <linux/hrtimer.h>
#include <linux/workqueue.h>
#include <linux/device-mapper.h>

#include "../dm-bgraph/bgraph.h"
#include "throttle-core.h"

#define DM_MSG_PREFIX "bgraph-throttle"

#define BG_TG_NAME_LEN	64

struct bg_tgroup;

/* Counters of one direction; the group's lock. */
struct bg_tstats {
	u64 ios;		/* passed, delayed or not */
	u64 bytes;
	u64 delayed_ios;	/* had to wait */
	u64 delayed_bytes;
};

/* A group's scheduling of one direction. */
struct bg_tdir {
	struct bg_tgroup *tg;
	bool is_write;
	bool armed;		/* bios held: the timer or the worker will run */
	struct throttle_c *next;	/* member served first, or NULL */
	struct hrtimer timer;
	struct work_struct work;
};

struct bg_tgroup {
	struct config_group group;	/* owns the memory */
	struct list_head entry;		/* on bg_tgroups */
	struct mutex cfg_lock;		/* serialises configuration stores */
	spinlock_t lock;		/* everything below; irq-safe */
	struct bg_tstate ts;
	struct list_head members;	/* throttle_c.entry */
	struct bg_tdir dir[2];
	struct bg_tstats stats[2];
};

/* One bgraph-throttle target: a member of a group. */
struct throttle_c {
	struct bg_instance *inst;
	struct dm_dev *dev;
	struct bg_tgroup *tg;		/* holds a reference and a depend */
	struct list_head entry;		/* on tg->members */
	struct bio_list queue[2];	/* held bios, oldest first */
	unsigned int nqueued[2];
	bool draining;			/* suspending: nothing waits */
	struct bg_tstats stats[2];
};

static DEFINE_MUTEX(bg_tgroups_lock);
static LIST_HEAD(bg_tgroups);
static struct workqueue_struct *bg_throttle_wq;

static inline struct bg_tgroup *to_bg_tgroup(struct config_item *item)
{
	return container_of(to_config_group(item), struct bg_tgroup, group);
}

/* ---------------------------------------------------------------- */
/* Scheduling (the group's lock held)                               */
/* ---------------------------------------------------------------- */

/* Arm @d's timer for @wait ns; a day at most: a limit change re-arms. */
static void bg_tdir_arm(struct bg_tdir *d, u64 wait)
{
	wait = min_t(u64, wait, 86400 * NSEC_PER_SEC);
	hrtimer_start(&d->timer, ns_to_ktime(wait), HRTIMER_MODE_REL);
}

static void bg_tstats_add(struct throttle_c *tc, bool w, unsigned int bytes,
			  bool delayed)
{
	struct bg_tstats *s[2] = { &tc->stats[w], &tc->tg->stats[w] };
	int i;

	for (i = 0; i < 2; i++) {
		if (delayed) {
			s[i]->delayed_ios++;
			s[i]->delayed_bytes += bytes;
		} else {
			s[i]->ios++;
			s[i]->bytes += bytes;
		}
	}
}

/* The member after @tc in the group's list, wrapping. */
static struct throttle_c *bg_tg_after(struct bg_tgroup *tg,
				      struct throttle_c *tc)
{
	if (list_is_last(&tc->entry, &tg->members))
		return list_first_entry(&tg->members, struct throttle_c, entry);
	return list_next_entry(tc, entry);
}

/*
 * The member whose held bio goes next: the first with one, from d->next
 * on (QEMU's next_throttle_token()).  NULL when nothing is held.
 */
static struct throttle_c *bg_tdir_next(struct bg_tdir *d)
{
	struct bg_tgroup *tg = d->tg;
	struct throttle_c *start, *tc;

	if (list_empty(&tg->members))
		return NULL;
	start = d->next ?: list_first_entry(&tg->members, struct throttle_c,
					    entry);
	tc = start;
	do {
		if (tc->nqueued[d->is_write])
			return tc;
		tc = bg_tg_after(tg, tc);
	} while (tc != start);
	return NULL;
}

static void bg_tpass(struct throttle_c *tc, bool w, struct bio *bio)
{
	bg_tstate_account(&tc->tg->ts, w, bio->bi_iter.bi_size);
	bg_tstats_add(tc, w, bio->bi_iter.bi_size, false);
}

/*
 * bg_tdir_release() - take the held bios of @d that may go now onto @out:
 * all of a draining member's, then one per member in turn while the
 * buckets allow; arm the timer for the rest.
 */
static void bg_tdir_release(struct bg_tdir *d, struct bio_list *out)
{
	struct bg_tgroup *tg = d->tg;
	bool w = d->is_write;
	struct throttle_c *tc;
	struct bio *bio;
	u64 wait;

	list_for_each_entry(tc, &tg->members, entry) {
		if (!tc->draining)
			continue;
		while ((bio = bio_list_pop(&tc->queue[w]))) {
			bg_tpass(tc, w, bio);
			bio_list_add(out, bio);
		}
		tc->nqueued[w] = 0;
	}
	while ((tc = bg_tdir_next(d))) {
		wait = bg_tstate_wait(&tg->ts, w, ktime_get_ns());
		if (wait) {
			bg_tdir_arm(d, wait);
			return;
		}
		bio = bio_list_pop(&tc->queue[w]);
		tc->nqueued[w]--;
		bg_tpass(tc, w, bio);
		bio_list_add(out, bio);
		d->next = bg_tg_after(tg, tc);
	}
	d->armed = false;
}

/* ---------------------------------------------------------------- */
/* Background work                                                  */
/* ---------------------------------------------------------------- */

static void bg_tdir_work(struct work_struct *work)
{
	struct bg_tdir *d = container_of(work, struct bg_tdir, work);
	struct bio_list out = BIO_EMPTY_LIST;
	struct blk_plug plug;
	struct bio *bio;

	spin_lock_irq(&d->tg->lock);
	if (d->armed)
		bg_tdir_release(d, &out);
	spin_unlock_irq(&d->tg->lock);

	blk_start_plug(&plug);
	while ((bio = bio_list_pop(&out)))
		dm_submit_bio_remap(bio, NULL);
	blk_finish_plug(&plug);
}

static enum hrtimer_restart bg_tdir_timer(struct hrtimer *timer)
{
	struct bg_tdir *d = container_of(timer, struct bg_tdir, timer);

	queue_work(bg_throttle_wq, &d->work);
	return HRTIMER_NORESTART;
}

/* Run both directions' release now: limits changed, or a member drains. */
static void bg_tgroup_kick(struct bg_tgroup *tg)
{
	queue_work(bg_throttle_wq, &tg->dir[0].work);
	queue_work(bg_throttle_wq, &tg->dir[1].work);
}

/* ---------------------------------------------------------------- */
/* Throttle groups in configfs                                      */
/* ---------------------------------------------------------------- */

static ssize_t bg_tg_limit_show(struct config_item *item, char *page,
				unsigned int attr)
{
	struct bg_tgroup *tg = to_bg_tgroup(item);
	u64 v;

	spin_lock_irq(&tg->lock);
	v = bg_tcfg_get(&tg->ts.cfg, attr);
	spin_unlock_irq(&tg->lock);
	return sysfs_emit(page, "%llu\n", v);
}

/*
 * A new value applies at once to every member: the buckets start empty (as
 * in QEMU) and held bios are looked at again under the new limits.
 */
static ssize_t bg_tg_limit_store(struct config_item *item, const char *page,
				 size_t count, unsigned int attr)
{
	struct bg_tgroup *tg = to_bg_tgroup(item);
	const char *error = NULL;
	struct bg_tcfg cfg;
	u64 v;
	int r;

	r = kstrtou64(page, 10, &v);
	if (r) {
		pr_warn("bgraph: throttle group %s: %s: not a decimal number\n",
			config_item_name(item), bg_tattrs[attr].name);
		return r;
	}
	mutex_lock(&tg->cfg_lock);
	spin_lock_irq(&tg->lock);
	cfg = tg->ts.cfg;
	spin_unlock_irq(&tg->lock);
	r = bg_tcfg_set(&cfg, attr, v, &error);
	if (r) {
		mutex_unlock(&tg->cfg_lock);
		pr_warn("bgraph: throttle group %s: %s %llu refused: %s\n",
			config_item_name(item), bg_tattrs[attr].name, v, error);
		return r;
	}
	spin_lock_irq(&tg->lock);
	bg_tstate_init(&tg->ts, &cfg, ktime_get_ns());
	spin_unlock_irq(&tg->lock);
	mutex_unlock(&tg->cfg_lock);
	bg_tgroup_kick(tg);
	return count;
}

/* One show/store pair per attribute; names come from bg_tattrs at init. */
#define BG_TG_LIMIT(_i)							\
static const unsigned int bg_tg_idx##_i = _i;				\
static ssize_t bg_tg_limit##_i##_show(struct config_item *item,		\
				      char *page)			\
{									\
	return bg_tg_limit_show(item, page, bg_tg_idx##_i);		\
}									\
static ssize_t bg_tg_limit##_i##_store(struct config_item *item,	\
				       const char *page, size_t count)	\
{									\
	return bg_tg_limit_store(item, page, count, bg_tg_idx##_i);	\
}									\
static struct configfs_attribute bg_tg_attr_limit##_i = {		\
	.ca_mode	= 0644,						\
	.ca_owner	= THIS_MODULE,					\
	.show		= bg_tg_limit##_i##_show,			\
	.store		= bg_tg_limit##_i##_store,			\
}

BG_TG_LIMIT(0); BG_TG_LIMIT(1); BG_TG_LIMIT(2); BG_TG_LIMIT(3);
BG_TG_LIMIT(4); BG_TG_LIMIT(5); BG_TG_LIMIT(6); BG_TG_LIMIT(7);
BG_TG_LIMIT(8); BG_TG_LIMIT(9); BG_TG_LIMIT(10); BG_TG_LIMIT(11);
BG_TG_LIMIT(12); BG_TG_LIMIT(13); BG_TG_LIMIT(14); BG_TG_LIMIT(15);
BG_TG_LIMIT(16); BG_TG_LIMIT(17); BG_TG_LIMIT(18);

static struct configfs_attribute *bg_tg_limit_attrs[BG_TATTR_COUNT] = {
	&bg_tg_attr_limit0, &bg_tg_attr_limit1, &bg_tg_attr_limit2,
	&bg_tg_attr_limit3, &bg_tg_attr_limit4, &bg_tg_attr_limit5,
	&bg_tg_attr_limit6, &bg_tg_attr_limit7, &bg_tg_attr_limit8,
	&bg_tg_attr_limit9, &bg_tg_attr_limit10, &bg_tg_attr_limit11,
	&bg_tg_attr_limit12, &bg_tg_attr_limit13, &bg_tg_attr_limit14,
	&bg_tg_attr_limit15, &bg_tg_attr_limit16, &bg_tg_attr_limit17,
	&bg_tg_attr_limit18,
};

/* "<dir> ios=.. bytes=.. delayed_ios=.. delayed_bytes=.. queued=..": */
static int bg_tstats_emit(char *buf, size_t size, int len, const char *dir,
			  const struct bg_tstats *s, unsigned int queued)
{
	return bg_emit(buf, size, len,
		       "%s ios=%llu bytes=%llu delayed_ios=%llu delayed_bytes=%llu queued=%u",
		       dir, s->ios, s->bytes, s->delayed_ios, s->delayed_bytes,
		       queued);
}

static ssize_t bg_tg_stats_show(struct config_item *item, char *page)
{
	struct bg_tgroup *tg = to_bg_tgroup(item);
	static const char * const dirs[2] = { "read", "write" };
	unsigned int queued;
	struct throttle_c *tc;
	ktime_t left;
	u64 wait;
	int len = 0, w;

	spin_lock_irq(&tg->lock);
	for (w = 0; w < 2; w++) {
		queued = 0;
		list_for_each_entry(tc, &tg->members, entry)
			queued += tc->nqueued[w];
		wait = 0;
		if (tg->dir[w].armed && hrtimer_active(&tg->dir[w].timer)) {
			left = hrtimer_get_remaining(&tg->dir[w].timer);
			wait = max_t(s64, 0, ktime_to_ns(left));
		}
		len = bg_tstats_emit(page, PAGE_SIZE, len, dirs[w],
				     &tg->stats[w], queued);
		len = bg_emit(page, PAGE_SIZE, len, " wait_ns=%llu\n", wait);
	}
	spin_unlock_irq(&tg->lock);
	return min_t(int, len, PAGE_SIZE - 1);
}

CONFIGFS_ATTR_RO(bg_tg_, stats);

/* One member node per line; a table loaded but not resumed says so. */
static ssize_t bg_tg_members_read(struct config_item *item, void *buf,
				  size_t size)
{
	struct bg_tgroup *tg = to_bg_tgroup(item);
	struct throttle_c *tc;
	char *tmp = NULL;
	int len = 0;

	if (buf) {
		tmp = kmalloc(size + 1, GFP_KERNEL);
		if (!tmp)
			return -ENOMEM;
	}
	mutex_lock(&bg_graph_lock);
	spin_lock_irq(&tg->lock);
	list_for_each_entry(tc, &tg->members, entry)
		len = bg_emit(tmp, tmp ? size + 1 : 0, len, "%s%s\n",
			      tc->inst->node->name,
			      bg_instance_live(tc->inst) ? "" : " inactive");
	spin_unlock_irq(&tg->lock);
	mutex_unlock(&bg_graph_lock);
	if (tmp) {
		len = min_t(size_t, len, size);
		memcpy(buf, tmp, len);
		kfree(tmp);
	}
	return len;
}

CONFIGFS_BIN_ATTR_RO(bg_tg_, members, NULL, 1024 * 1024);

static struct configfs_attribute *bg_tg_attrs[BG_TATTR_COUNT + 2];

static struct configfs_bin_attribute *bg_tg_bin_attrs[] = {
	&bg_tg_attr_members,
	NULL,
};

static void bg_tgroup_release(struct config_item *item)
{
	struct bg_tgroup *tg = to_bg_tgroup(item);
	int w;

	for (w = 0; w < 2; w++) {
		hrtimer_cancel(&tg->dir[w].timer);
		cancel_work_sync(&tg->dir[w].work);
	}
	kfree(tg);
}

static struct configfs_item_operations bg_tgroup_item_ops = {
	.release	= bg_tgroup_release,
};

static const struct config_item_type bg_tgroup_type = {
	.ct_item_ops	= &bg_tgroup_item_ops,
	.ct_attrs	= bg_tg_attrs,
	.ct_bin_attrs	= bg_tg_bin_attrs,
	.ct_owner	= THIS_MODULE,
};

/* QEMU's id rule (id_wellformed()): a letter, then letters, digits, -._ */
static bool bg_tgroup_name_ok(const char *name)
{
	const char *p;

	if (!isalpha(name[0]) || strlen(name) >= BG_TG_NAME_LEN)
		return false;
	for (p = name; *p; p++)
		if (!isalnum(*p) && !strchr("-._", *p))
			return false;
	return true;
}

static struct config_group *bg_tgroups_make(struct config_group *parent,
					    const char *name)
{
	struct bg_tgroup *tg;
	struct bg_tcfg cfg;
	int w;

	if (!bg_tgroup_name_ok(name)) {
		pr_warn("bgraph: throttle group name '%s' refused: a letter, then letters, digits, '-', '.' or '_', at most %d\n",
			name, BG_TG_NAME_LEN - 1);
		return ERR_PTR(-EINVAL);
	}
	tg = kzalloc(sizeof(*tg), GFP_KERNEL);
	if (!tg)
		return ERR_PTR(-ENOMEM);
	mutex_init(&tg->cfg_lock);
	spin_lock_init(&tg->lock);
	bg_tcfg_init(&cfg);
	bg_tstate_init(&tg->ts, &cfg, ktime_get_ns());
	INIT_LIST_HEAD(&tg->members);
	for (w = 0; w < 2; w++) {
		tg->dir[w].tg = tg;
		tg->dir[w].is_write = w;
		hrtimer_init(&tg->dir[w].timer, CLOCK_MONOTONIC,
			     HRTIMER_MODE_REL);
		tg->dir[w].timer.function = bg_tdir_timer;
		INIT_WORK(&tg->dir[w].work, bg_tdir_work);
	}
	config_group_init_type_name(&tg->group, name, &bg_tgroup_type);
	mutex_lock(&bg_tgroups_lock);
	list_add_tail(&tg->entry, &bg_tgroups);
	mutex_unlock(&bg_tgroups_lock);
	return &tg->group;
}

/* rmdir: members make it fail with EBUSY first (configfs_depend_item). */
static void bg_tgroups_drop(struct config_group *parent,
			    struct config_item *item)
{
	struct bg_tgroup *tg = to_bg_tgroup(item);

	mutex_lock(&bg_tgroups_lock);
	list_del(&tg->entry);
	mutex_unlock(&bg_tgroups_lock);
	config_item_put(item);
}

static struct configfs_group_operations bg_tgroups_ops = {
	.make_group	= bg_tgroups_make,
	.drop_item	= bg_tgroups_drop,
};

static const struct config_item_type bg_tgroups_type = {
	.ct_group_ops	= &bg_tgroups_ops,
	.ct_owner	= THIS_MODULE,
};

static struct config_group bg_tgroups_group;

struct config_group *bg_throttle_groups_group(void)
{
	unsigned int i;

	for (i = 0; i < BG_TATTR_COUNT; i++) {
		bg_tg_limit_attrs[i]->ca_name = bg_tattrs[i].name;
		bg_tg_attrs[i] = bg_tg_limit_attrs[i];
	}
	bg_tg_attrs[BG_TATTR_COUNT] = &bg_tg_attr_stats;
	bg_tg_attrs[BG_TATTR_COUNT + 1] = NULL;
	config_group_init_type_name(&bg_tgroups_group, "throttle-groups",
				    &bg_tgroups_type);
	return &bg_tgroups_group;
}

/*
 * bg_tgroup_join() - make @tc a member of group @name: a reference, and a
 * configfs dependency so that rmdir of the group fails with EBUSY.
 */
static int bg_tgroup_join(struct throttle_c *tc, const char *name,
			  char **error)
{
	struct bg_tgroup *tg, *found = NULL;
	int r;

	mutex_lock(&bg_tgroups_lock);
	list_for_each_entry(tg, &bg_tgroups, entry) {
		if (!strcmp(config_item_name(&tg->group.cg_item), name)) {
			found = tg;
			config_item_get(&tg->group.cg_item);
			break;
		}
	}
	mutex_unlock(&bg_tgroups_lock);
	if (!found) {
		DMERR("throttle group %s does not exist", name);
		*error = "Throttle group does not exist (mkdir it in throttle-groups/)";
		return -ENOENT;
	}
	r = bg_configfs_depend(&found->group.cg_item);
	if (r) {
		config_item_put(&found->group.cg_item);
		*error = "Throttle group is being removed";
		return r;
	}
	tc->tg = found;
	spin_lock_irq(&found->lock);
	list_add_tail(&tc->entry, &found->members);
	spin_unlock_irq(&found->lock);
	return 0;
}

/* Out of the group's list: no scheduling or members reader sees @tc. */
static void bg_tgroup_unlink(struct throttle_c *tc)
{
	struct bg_tgroup *tg = tc->tg;
	int w;

	spin_lock_irq(&tg->lock);
	for (w = 0; w < 2; w++) {
		WARN_ON_ONCE(tc->nqueued[w]);
		if (tg->dir[w].next == tc)
			tg->dir[w].next = list_is_singular(&tg->members) ?
					  NULL : bg_tg_after(tg, tc);
	}
	list_del(&tc->entry);
	spin_unlock_irq(&tg->lock);
}

/* Drop what bg_tgroup_join() took: the group may go after this. */
static void bg_tgroup_put(struct bg_tgroup *tg)
{
	bg_configfs_undepend(&tg->group.cg_item);
	config_item_put(&tg->group.cg_item);
}

/* ---------------------------------------------------------------- */
/* Target methods                                                   */
/* ---------------------------------------------------------------- */

static int throttle_map(struct dm_target *ti, struct bio *bio)
{
	struct throttle_c *tc = ti->private;
	struct bg_tgroup *tg = tc->tg;
	bool w = op_is_write(bio_op(bio));
	unsigned long flags;
	struct bg_tdir *d;
	u64 wait = 0;

	/* A node under a backing edge takes no writes, from anyone. */
	if (unlikely(w && bio_sectors(bio) &&
		     bg_node_write_blocked(tc->inst->node)))
		return DM_MAPIO_KILL;

	bio_set_dev(bio, tc->dev->bdev);
	if (bio_sectors(bio))
		bio->bi_iter.bi_sector =
			dm_target_offset(ti, bio->bi_iter.bi_sector);

	/*
	 * Only reads and writes are counted: flushes, discards and
	 * write-zeroes carry no data (see the documentation).
	 */
	if (!bio_has_data(bio))
		return DM_MAPIO_REMAPPED;

	d = &tg->dir[w];
	spin_lock_irqsave(&tg->lock, flags);
	if (unlikely(tc->draining)) {
		/* Suspending: nothing waits, but nothing overtakes ours. */
		if (!tc->nqueued[w]) {
			bg_tpass(tc, w, bio);
			spin_unlock_irqrestore(&tg->lock, flags);
			return DM_MAPIO_REMAPPED;
		}
		bio_list_add(&tc->queue[w], bio);
		tc->nqueued[w]++;
		spin_unlock_irqrestore(&tg->lock, flags);
		queue_work(bg_throttle_wq, &d->work);
		return DM_MAPIO_SUBMITTED;
	}
	if (likely(!d->armed)) {
		wait = bg_tstate_wait(&tg->ts, w, ktime_get_ns());
		if (!wait) {
			bg_tpass(tc, w, bio);
			spin_unlock_irqrestore(&tg->lock, flags);
			return DM_MAPIO_REMAPPED;
		}
	}
	if (bio->bi_opf & REQ_NOWAIT) {
		spin_unlock_irqrestore(&tg->lock, flags);
		bio_wouldblock_error(bio);
		return DM_MAPIO_SUBMITTED;
	}
	bio_list_add(&tc->queue[w], bio);
	tc->nqueued[w]++;
	bg_tstats_add(tc, w, bio->bi_iter.bi_size, true);
	if (!d->armed) {
		d->armed = true;
		d->next = tc;
		bg_tdir_arm(d, wait);
	}
	spin_unlock_irqrestore(&tg->lock, flags);
	return DM_MAPIO_SUBMITTED;
}

/*
 * Status.
 * INFO:  <group> then, for reads and then writes:
 *        <ios> <bytes> <delayed_ios> <delayed_bytes> <queued>
 * TABLE: <dev> <group>
 * IMA:   target_name, target_version, device_name, group.
 */
static void throttle_status(struct dm_target *ti, status_type_t type,
			    unsigned int status_flags, char *result,
			    unsigned int maxlen)
{
	struct throttle_c *tc = ti->private;
	const char *group = config_item_name(&tc->tg->group.cg_item);
	struct bg_tstats s[2];
	unsigned int q[2];
	unsigned int sz = 0;
	int w;

	switch (type) {
	case STATUSTYPE_INFO:
		spin_lock_irq(&tc->tg->lock);
		memcpy(s, tc->stats, sizeof(s));
		q[0] = tc->nqueued[0];
		q[1] = tc->nqueued[1];
		spin_unlock_irq(&tc->tg->lock);
		DMEMIT("%s", group);
		for (w = 0; w < 2; w++)
			DMEMIT(" %llu %llu %llu %llu %u", s[w].ios, s[w].bytes,
			       s[w].delayed_ios, s[w].delayed_bytes, q[w]);
		break;
	case STATUSTYPE_TABLE:
		DMEMIT("%s %s", tc->dev->name, group);
		break;
	case STATUSTYPE_IMA:
		DMEMIT_TARGET_NAME_VERSION(ti->type);
		DMEMIT(",device_name=%s,group=%s;", tc->dev->name, group);
		break;
	}
}

/* nodes/<name>/stats: the same counters as the status, named. */
static int throttle_stats_text(struct bg_instance *inst, char *buf,
			       size_t size)
{
	struct throttle_c *tc = inst->private;
	static const char * const dirs[2] = { "read", "write" };
	int len = 0, w;

	len = bg_emit(buf, size, len, "group %s\n",
		      config_item_name(&tc->tg->group.cg_item));
	spin_lock_irq(&tc->tg->lock);
	for (w = 0; w < 2; w++) {
		len = bg_tstats_emit(buf, size, len, dirs[w], &tc->stats[w],
				     tc->nqueued[w]);
		len = bg_emit(buf, size, len, "\n");
	}
	spin_unlock_irq(&tc->tg->lock);
	return len;
}

static int throttle_prepare_ioctl(struct dm_target *ti,
				  struct block_device **bdev)
{
	struct throttle_c *tc = ti->private;

	*bdev = tc->dev->bdev;
	/* Only pass ioctls through when the node covers the whole device. */
	return ti->len != bdev_nr_sectors(tc->dev->bdev);
}

static int throttle_iterate_devices(struct dm_target *ti,
				    iterate_devices_callout_fn fn, void *data)
{
	struct throttle_c *tc = ti->private;

	return fn(ti, tc->dev, 0, ti->len, data);
}

/* Suspending: release every held bio now and hold no more (QEMU drains). */
static void throttle_presuspend(struct dm_target *ti)
{
	struct throttle_c *tc = ti->private;

	spin_lock_irq(&tc->tg->lock);
	tc->draining = true;
	spin_unlock_irq(&tc->tg->lock);
	bg_tgroup_kick(tc->tg);
}

static void throttle_presuspend_undo(struct dm_target *ti)
{
	struct throttle_c *tc = ti->private;

	spin_lock_irq(&tc->tg->lock);
	tc->draining = false;
	spin_unlock_irq(&tc->tg->lock);
}

static void throttle_resume(struct dm_target *ti)
{
	struct throttle_c *tc = ti->private;

	throttle_presuspend_undo(ti);
	bg_instance_resume(tc->inst);
}

/* ---------------------------------------------------------------- */
/* Constructor and destructor                                       */
/* ---------------------------------------------------------------- */

static int throttle_ctr(struct dm_target *ti, unsigned int argc, char **argv)
{
	struct throttle_c *tc;
	int r;

	if (argc != 2) {
		ti->error = "Invalid argument count: <dev> <group>";
		return -EINVAL;
	}

	tc = kzalloc(sizeof(*tc), GFP_KERNEL);
	if (!tc) {
		ti->error = "Cannot allocate the throttle context";
		return -ENOMEM;
	}
	bio_list_init(&tc->queue[0]);
	bio_list_init(&tc->queue[1]);

	tc->inst = bg_instance_create(ti, "throttle");
	if (IS_ERR(tc->inst)) {
		r = PTR_ERR(tc->inst);
		goto out_free;
	}
	r = bg_instance_add_child(tc->inst, argv[0], BG_ROLE_FILE, 0, &tc->dev);
	if (r)
		goto out_instance;

	r = bg_tgroup_join(tc, argv[1], &ti->error);
	if (r)
		goto out_instance;

	mutex_lock(&bg_graph_lock);
	tc->inst->private = tc;
	tc->inst->stats_text = throttle_stats_text;
	mutex_unlock(&bg_graph_lock);
	ti->num_flush_bios = 1;
	ti->num_discard_bios = 1;
	ti->num_secure_erase_bios = 1;
	ti->num_write_zeroes_bios = 1;
	ti->private = tc;
	return 0;

out_instance:
	bg_instance_destroy(tc->inst);	/* puts tc->dev too */
out_free:
	kfree(tc);
	return r;
}

static void throttle_dtr(struct dm_target *ti)
{
	struct throttle_c *tc = ti->private;

	/*
	 * Out of the group's members (whose reader follows tc->inst), then
	 * out of the graph (whose stats reader follows tc->tg), then let the
	 * group go.
	 */
	bg_tgroup_unlink(tc);
	bg_instance_destroy(tc->inst);
	bg_tgroup_put(tc->tg);
	kfree(tc);
}

static struct target_type throttle_target = {
	.name		= "bgraph-throttle",
	.version	= {1, 0, 0},
	.features	= DM_TARGET_NOWAIT | DM_TARGET_PASSES_CRYPTO,
	.module		= THIS_MODULE,
	.ctr		= throttle_ctr,
	.dtr		= throttle_dtr,
	.map		= throttle_map,
	.status		= throttle_status,
	.prepare_ioctl	= throttle_prepare_ioctl,
	.iterate_devices = throttle_iterate_devices,
	.presuspend	= throttle_presuspend,
	.presuspend_undo = throttle_presuspend_undo,
	.resume		= throttle_resume,
};

int bg_throttle_init(void)
{
	int r;

	bg_throttle_wq = alloc_workqueue("bgraph_throttle", WQ_MEM_RECLAIM, 0);
	if (!bg_throttle_wq)
		return -ENOMEM;
	r = dm_register_target(&throttle_target);
	if (r)
		destroy_workqueue(bg_throttle_wq);
	return r;
}

void bg_throttle_exit(void)
{
	dm_unregister_target(&throttle_target);
	destroy_workqueue(bg_throttle_wq);
}
