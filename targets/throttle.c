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
 * Locking: throttle_groups_lock (mutex) guards the list of groups; a group's
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
#include "../dm-bgraph/defer.h"
#include "throttle-core.h"

#define DM_MSG_PREFIX "bgraph-throttle"

#define THROTTLE_GROUP_NAME_LEN	64

struct throttle_group;

/* Counters of one direction; the group's lock. */
struct throttle_stats {
	u64 ios;		/* passed, delayed or not */
	u64 bytes;
	u64 delayed_ios;	/* had to wait */
	u64 delayed_bytes;
};

/* A group's scheduling of one direction. */
struct throttle_dir {
	struct throttle_group *grp;
	bool is_write;
	bool armed;		/* bios held: the timer or the worker will run */
	struct throttle_target *next;	/* member served first, or NULL */
	struct hrtimer timer;
	struct work_struct work;
};

struct throttle_group {
	struct config_group group;	/* owns the memory */
	struct list_head entry;		/* on throttle_groups */
	struct mutex cfg_lock;		/* serialises configuration stores */
	spinlock_t lock;		/* everything below; irq-safe */
	struct throttle_state ts;
	struct list_head members;	/* throttle_c.entry */
	struct throttle_dir dir[2];
	struct throttle_stats stats[2];
};

/* One bgraph-throttle target: a member of a group. */
struct throttle_target {
	struct bg_instance *inst;
	struct dm_dev *dev;
	struct throttle_group *grp;		/* holds a reference and a depend */
	struct list_head entry;		/* on grp->members */
	struct bio_list queue[2];	/* held bios, oldest first */
	unsigned int nqueued[2];
	bool draining;			/* suspending: nothing waits */
	struct throttle_stats stats[2];
};

BG_CONTEXT(struct throttle_target);

static DEFINE_MUTEX(throttle_groups_lock);
static LIST_HEAD(throttle_groups);
static struct workqueue_struct *throttle_wq;

static inline struct throttle_group *to_throttle_group(struct config_item *item)
{
	return container_of(to_config_group(item), struct throttle_group, group);
}

/* ---------------------------------------------------------------- */
/* Scheduling (the group's lock held)                               */
/* ---------------------------------------------------------------- */

/* Arm @d's timer for @wait ns; a day at most: a limit change re-arms. */
static void throttle_dir_arm(struct throttle_dir *d, u64 wait)
{
	wait = min_t(u64, wait, 86400 * NSEC_PER_SEC);
	hrtimer_start(&d->timer, ns_to_ktime(wait), HRTIMER_MODE_REL);
}

static void throttle_stats_add(struct throttle_target *thr, bool w, unsigned int bytes,
			       bool delayed)
{
	struct throttle_stats *s[2] = { &thr->stats[w], &thr->grp->stats[w] };
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

/* The member after @thr in the group's list, wrapping. */
static struct throttle_target *throttle_group_after(struct throttle_group *grp,
						    struct throttle_target *thr)
{
	if (list_is_last(&thr->entry, &grp->members))
		return list_first_entry(&grp->members, struct throttle_target, entry);
	return list_next_entry(thr, entry);
}

/*
 * The member whose held bio goes next: the first with one, from d->next
 * on (QEMU's next_throttle_token()).  NULL when nothing is held.
 */
static struct throttle_target *throttle_dir_next(struct throttle_dir *d)
{
	struct throttle_group *grp = d->grp;
	struct throttle_target *start, *thr;

	if (list_empty(&grp->members))
		return NULL;
	start = d->next ?: list_first_entry(&grp->members, struct throttle_target,
					    entry);
	thr = start;
	do {
		if (thr->nqueued[d->is_write])
			return thr;
		thr = throttle_group_after(grp, thr);
	} while (thr != start);
	return NULL;
}

static void throttle_pass(struct throttle_target *thr, bool w, struct bio *bio)
{
	throttle_state_account(&thr->grp->ts, w, bio->bi_iter.bi_size);
	throttle_stats_add(thr, w, bio->bi_iter.bi_size, false);
}

/*
 * throttle_dir_release() - take the held bios of @d that may go now onto @out:
 * all of a draining member's, then one per member in turn while the
 * buckets allow; arm the timer for the rest.
 */
static void throttle_dir_release(struct throttle_dir *d, struct bio_list *out)
{
	struct throttle_group *grp = d->grp;
	bool w = d->is_write;
	struct throttle_target *thr;
	struct bio *bio;
	u64 wait;

	list_for_each_entry(thr, &grp->members, entry) {
		if (!thr->draining)
			continue;
		while ((bio = bio_list_pop(&thr->queue[w]))) {
			throttle_pass(thr, w, bio);
			bio_list_add(out, bio);
		}
		thr->nqueued[w] = 0;
	}
	while ((thr = throttle_dir_next(d))) {
		wait = throttle_state_wait(&grp->ts, w, ktime_get_ns());
		if (wait) {
			throttle_dir_arm(d, wait);
			return;
		}
		bio = bio_list_pop(&thr->queue[w]);
		thr->nqueued[w]--;
		throttle_pass(thr, w, bio);
		bio_list_add(out, bio);
		d->next = throttle_group_after(grp, thr);
	}
	d->armed = false;
}

/* ---------------------------------------------------------------- */
/* Background work                                                  */
/* ---------------------------------------------------------------- */

static void throttle_dir_work(struct work_struct *work)
{
	struct throttle_dir *d = container_of(work, struct throttle_dir, work);
	struct bio_list out = BIO_EMPTY_LIST;
	struct blk_plug plug;
	struct bio *bio;

	spin_lock_irq(&d->grp->lock);
	if (d->armed)
		throttle_dir_release(d, &out);
	spin_unlock_irq(&d->grp->lock);

	blk_start_plug(&plug);
	while ((bio = bio_list_pop(&out)))
		dm_submit_bio_remap(bio, NULL);
	blk_finish_plug(&plug);
}

static enum hrtimer_restart throttle_dir_timer(struct hrtimer *timer)
{
	struct throttle_dir *d = container_of(timer, struct throttle_dir, timer);

	queue_work(throttle_wq, &d->work);
	return HRTIMER_NORESTART;
}

/* Run both directions' release now: limits changed, or a member drains. */
static void throttle_group_kick(struct throttle_group *grp)
{
	queue_work(throttle_wq, &grp->dir[0].work);
	queue_work(throttle_wq, &grp->dir[1].work);
}

/* ---------------------------------------------------------------- */
/* Throttle groups in configfs                                      */
/* ---------------------------------------------------------------- */

static ssize_t throttle_limit_show(struct config_item *item, char *page,
				   unsigned int attr)
{
	struct throttle_group *grp = to_throttle_group(item);
	u64 v;

	spin_lock_irq(&grp->lock);
	v = throttle_cfg_get(&grp->ts.cfg, attr);
	spin_unlock_irq(&grp->lock);
	return sysfs_emit(page, "%llu\n", v);
}

/*
 * A new value applies at once to every member: the buckets start empty (as
 * in QEMU) and held bios are looked at again under the new limits.
 */
static ssize_t throttle_limit_store(struct config_item *item, const char *page,
				    size_t count, unsigned int attr)
{
	struct throttle_group *grp = to_throttle_group(item);
	const char *error = NULL;
	struct throttle_cfg cfg;
	u64 v;
	int r;

	r = kstrtou64(page, 10, &v);
	if (r) {
		pr_warn("bgraph: throttle group %s: %s: %s\n",
			config_item_name(item), throttle_attrs[attr].name,
			r == -ERANGE ? "out of range (over 2^64 - 1)" :
				       "not a decimal number");
		return r;
	}
	mutex_lock(&grp->cfg_lock);
	spin_lock_irq(&grp->lock);
	cfg = grp->ts.cfg;
	spin_unlock_irq(&grp->lock);
	r = throttle_cfg_set(&cfg, attr, v, &error);
	if (r) {
		mutex_unlock(&grp->cfg_lock);
		pr_warn("bgraph: throttle group %s: %s %llu refused: %s\n",
			config_item_name(item), throttle_attrs[attr].name, v, error);
		return r;
	}
	spin_lock_irq(&grp->lock);
	throttle_state_init(&grp->ts, &cfg, ktime_get_ns());
	spin_unlock_irq(&grp->lock);
	mutex_unlock(&grp->cfg_lock);
	throttle_group_kick(grp);
	return count;
}

/* One show/store pair per attribute; names come from throttle_attrs at init. */
#define THROTTLE_LIMIT(_i)						\
static const unsigned int throttle_idx##_i = _i;			\
static ssize_t throttle_limit##_i##_show(struct config_item *item,	\
				      char *page)			\
{									\
	return throttle_limit_show(item, page, throttle_idx##_i);	\
}									\
static ssize_t throttle_limit##_i##_store(struct config_item *item,	\
				       const char *page, size_t count)	\
{									\
	return throttle_limit_store(item, page, count, throttle_idx##_i); \
}									\
static struct configfs_attribute throttle_attr_limit##_i = {		\
	.ca_mode	= 0644,						\
	.ca_owner	= THIS_MODULE,					\
	.show		= throttle_limit##_i##_show,			\
	.store		= throttle_limit##_i##_store,			\
}

THROTTLE_LIMIT(0); THROTTLE_LIMIT(1); THROTTLE_LIMIT(2); THROTTLE_LIMIT(3);
THROTTLE_LIMIT(4); THROTTLE_LIMIT(5); THROTTLE_LIMIT(6); THROTTLE_LIMIT(7);
THROTTLE_LIMIT(8); THROTTLE_LIMIT(9); THROTTLE_LIMIT(10); THROTTLE_LIMIT(11);
THROTTLE_LIMIT(12); THROTTLE_LIMIT(13); THROTTLE_LIMIT(14); THROTTLE_LIMIT(15);
THROTTLE_LIMIT(16); THROTTLE_LIMIT(17); THROTTLE_LIMIT(18);

static struct configfs_attribute *throttle_limit_attrs[THROTTLE_ATTR_COUNT] = {
	&throttle_attr_limit0, &throttle_attr_limit1, &throttle_attr_limit2,
	&throttle_attr_limit3, &throttle_attr_limit4, &throttle_attr_limit5,
	&throttle_attr_limit6, &throttle_attr_limit7, &throttle_attr_limit8,
	&throttle_attr_limit9, &throttle_attr_limit10, &throttle_attr_limit11,
	&throttle_attr_limit12, &throttle_attr_limit13, &throttle_attr_limit14,
	&throttle_attr_limit15, &throttle_attr_limit16, &throttle_attr_limit17,
	&throttle_attr_limit18,
};

/* "<dir> ios=.. bytes=.. delayed_ios=.. delayed_bytes=.. queued=..": */
static int throttle_stats_emit(char *buf, size_t size, int len, const char *dir,
			       const struct throttle_stats *s, unsigned int queued)
{
	return bg_emit(buf, size, len,
		       "%s ios=%llu bytes=%llu delayed_ios=%llu delayed_bytes=%llu queued=%u",
		       dir, s->ios, s->bytes, s->delayed_ios, s->delayed_bytes,
		       queued);
}

static ssize_t throttle_group_stats_show(struct config_item *item, char *page)
{
	struct throttle_group *grp = to_throttle_group(item);
	static const char * const dirs[2] = { "read", "write" };
	unsigned int queued;
	struct throttle_target *thr;
	ktime_t left;
	u64 wait;
	int len = 0, w;

	spin_lock_irq(&grp->lock);
	for (w = 0; w < 2; w++) {
		queued = 0;
		list_for_each_entry(thr, &grp->members, entry)
			queued += thr->nqueued[w];
		wait = 0;
		if (grp->dir[w].armed && hrtimer_active(&grp->dir[w].timer)) {
			left = hrtimer_get_remaining(&grp->dir[w].timer);
			wait = max_t(s64, 0, ktime_to_ns(left));
		}
		len = throttle_stats_emit(page, PAGE_SIZE, len, dirs[w],
					  &grp->stats[w], queued);
		len = bg_emit(page, PAGE_SIZE, len, " wait_ns=%llu\n", wait);
	}
	spin_unlock_irq(&grp->lock);
	return min_t(int, len, PAGE_SIZE - 1);
}

CONFIGFS_ATTR_RO(throttle_group_, stats);

/* One member node per line; a table loaded but not resumed says so. */
static int throttle_group_members_text(void *arg, char *buf, size_t size)
{
	struct throttle_group *grp = arg;
	struct throttle_target *thr;
	int len = 0;

	spin_lock_irq(&grp->lock);
	list_for_each_entry(thr, &grp->members, entry)
		len = bg_emit(buf, size, len, "%s%s\n", thr->inst->node->name,
			      bg_instance_live(thr->inst) ? "" : " inactive");
	spin_unlock_irq(&grp->lock);
	return len;
}

static ssize_t throttle_group_members_read(struct config_item *item, void *buf,
					   size_t size)
{
	return bg_configfs_text_read(throttle_group_members_text, to_throttle_group(item),
				     buf, size);
}

CONFIGFS_BIN_ATTR_RO(throttle_group_, members, NULL, 1024 * 1024);

static struct configfs_attribute *throttle_group_attrs[THROTTLE_ATTR_COUNT + 2];

static struct configfs_bin_attribute *throttle_group_bin_attrs[] = {
	&throttle_group_attr_members,
	NULL,
};

static void throttle_group_release(struct config_item *item)
{
	struct throttle_group *grp = to_throttle_group(item);
	int w;

	for (w = 0; w < 2; w++) {
		hrtimer_cancel(&grp->dir[w].timer);
		cancel_work_sync(&grp->dir[w].work);
	}
	kfree(grp);
}

static struct configfs_item_operations throttle_group_item_ops = {
	.release	= throttle_group_release,
};

static const struct config_item_type throttle_group_type = {
	.ct_item_ops	= &throttle_group_item_ops,
	.ct_attrs	= throttle_group_attrs,
	.ct_bin_attrs	= throttle_group_bin_attrs,
	.ct_owner	= THIS_MODULE,
};

/* QEMU's id rule (id_wellformed()): a letter, then letters, digits, -._ */
static bool throttle_group_name_ok(const char *name)
{
	const char *p;

	if (!isalpha(name[0]) || strlen(name) >= THROTTLE_GROUP_NAME_LEN)
		return false;
	for (p = name; *p; p++)
		if (!isalnum(*p) && !strchr("-._", *p))
			return false;
	return true;
}

static struct config_group *throttle_groups_make(struct config_group *parent,
						 const char *name)
{
	struct throttle_group *grp;
	struct throttle_cfg cfg;
	int w;

	if (!throttle_group_name_ok(name)) {
		pr_warn("bgraph: throttle group name '%s' refused: a letter, then letters, digits, '-', '.' or '_', at most %d\n",
			name, THROTTLE_GROUP_NAME_LEN - 1);
		return ERR_PTR(-EINVAL);
	}
	grp = kzalloc(sizeof(*grp), GFP_KERNEL);
	if (!grp)
		return ERR_PTR(-ENOMEM);
	mutex_init(&grp->cfg_lock);
	spin_lock_init(&grp->lock);
	throttle_cfg_init(&cfg);
	throttle_state_init(&grp->ts, &cfg, ktime_get_ns());
	INIT_LIST_HEAD(&grp->members);
	for (w = 0; w < 2; w++) {
		grp->dir[w].grp = grp;
		grp->dir[w].is_write = w;
		hrtimer_init(&grp->dir[w].timer, CLOCK_MONOTONIC,
			     HRTIMER_MODE_REL);
		grp->dir[w].timer.function = throttle_dir_timer;
		INIT_WORK(&grp->dir[w].work, throttle_dir_work);
	}
	config_group_init_type_name(&grp->group, name, &throttle_group_type);
	mutex_lock(&throttle_groups_lock);
	list_add_tail(&grp->entry, &throttle_groups);
	mutex_unlock(&throttle_groups_lock);
	return &grp->group;
}

/* rmdir: members make it fail with EBUSY first (configfs_depend_item). */
static void throttle_groups_drop(struct config_group *parent,
				 struct config_item *item)
{
	struct throttle_group *grp = to_throttle_group(item);

	mutex_lock(&throttle_groups_lock);
	list_del(&grp->entry);
	mutex_unlock(&throttle_groups_lock);
	config_item_put(item);
}

static struct configfs_group_operations throttle_groups_ops = {
	.make_group	= throttle_groups_make,
	.drop_item	= throttle_groups_drop,
};

static const struct config_item_type throttle_groups_type = {
	.ct_group_ops	= &throttle_groups_ops,
	.ct_owner	= THIS_MODULE,
};

static struct config_group throttle_groups_group;

/* throttle-groups/, before the configfs subsystem registers. */
static void throttle_groups_init(void)
{
	unsigned int i;

	for (i = 0; i < THROTTLE_ATTR_COUNT; i++) {
		throttle_limit_attrs[i]->ca_name = throttle_attrs[i].name;
		throttle_group_attrs[i] = throttle_limit_attrs[i];
	}
	throttle_group_attrs[THROTTLE_ATTR_COUNT] = &throttle_group_attr_stats;
	throttle_group_attrs[THROTTLE_ATTR_COUNT + 1] = NULL;
	config_group_init_type_name(&throttle_groups_group, "throttle-groups",
				    &throttle_groups_type);
}

/*
 * throttle_group_join() - make @thr a member of group @name: a reference, and a
 * configfs dependency so that rmdir of the group fails with EBUSY.
 */
static int throttle_group_join(struct throttle_target *thr, const char *name,
			       char **error)
{
	struct throttle_group *grp, *found = NULL;
	int r;

	mutex_lock(&throttle_groups_lock);
	list_for_each_entry(grp, &throttle_groups, entry) {
		if (!strcmp(config_item_name(&grp->group.cg_item), name)) {
			found = grp;
			config_item_get(&grp->group.cg_item);
			break;
		}
	}
	mutex_unlock(&throttle_groups_lock);
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
	thr->grp = found;
	spin_lock_irq(&found->lock);
	list_add_tail(&thr->entry, &found->members);
	spin_unlock_irq(&found->lock);
	return 0;
}

/* Out of the group's list: no scheduling or members reader sees @thr. */
static void throttle_group_unlink(struct throttle_target *thr)
{
	struct throttle_group *grp = thr->grp;
	int w;

	spin_lock_irq(&grp->lock);
	for (w = 0; w < 2; w++) {
		WARN_ON_ONCE(thr->nqueued[w]);
		if (grp->dir[w].next == thr)
			grp->dir[w].next = list_is_singular(&grp->members) ?
					  NULL : throttle_group_after(grp, thr);
	}
	list_del(&thr->entry);
	spin_unlock_irq(&grp->lock);
}

/* Drop what throttle_group_join() took: the group may go after this. */
static void throttle_group_put(struct throttle_group *grp)
{
	bg_configfs_undepend(&grp->group.cg_item);
	config_item_put(&grp->group.cg_item);
}

/* ---------------------------------------------------------------- */
/* Target methods                                                   */
/* ---------------------------------------------------------------- */

static int throttle_map(struct dm_target *ti, struct bio *bio)
{
	struct throttle_target *thr = ti->private;
	struct throttle_group *grp = thr->grp;
	bool w = op_is_write(bio_op(bio));
	unsigned long flags;
	struct throttle_dir *d;
	u64 wait = 0;

	if (bg_bio_write_refused(thr->inst, bio))
		return DM_MAPIO_KILL;

	bio_set_dev(bio, thr->dev->bdev);
	if (bio_sectors(bio))
		bio->bi_iter.bi_sector =
			dm_target_offset(ti, bio->bi_iter.bi_sector);

	/*
	 * Only reads and writes are counted: flushes, discards and
	 * write-zeroes carry no data (see the documentation).
	 */
	if (!bio_has_data(bio))
		return DM_MAPIO_REMAPPED;

	d = &grp->dir[w];
	spin_lock_irqsave(&grp->lock, flags);
	if (unlikely(thr->draining)) {
		/* Suspending: nothing waits, but nothing overtakes ours. */
		if (!thr->nqueued[w]) {
			throttle_pass(thr, w, bio);
			spin_unlock_irqrestore(&grp->lock, flags);
			return DM_MAPIO_REMAPPED;
		}
		bio_list_add(&thr->queue[w], bio);
		thr->nqueued[w]++;
		spin_unlock_irqrestore(&grp->lock, flags);
		queue_work(throttle_wq, &d->work);
		return DM_MAPIO_SUBMITTED;
	}
	if (likely(!d->armed)) {
		wait = throttle_state_wait(&grp->ts, w, ktime_get_ns());
		if (!wait) {
			throttle_pass(thr, w, bio);
			spin_unlock_irqrestore(&grp->lock, flags);
			return DM_MAPIO_REMAPPED;
		}
	}
	if (bio->bi_opf & REQ_NOWAIT) {
		spin_unlock_irqrestore(&grp->lock, flags);
		bio_wouldblock_error(bio);
		return DM_MAPIO_SUBMITTED;
	}
	bio_list_add(&thr->queue[w], bio);
	thr->nqueued[w]++;
	throttle_stats_add(thr, w, bio->bi_iter.bi_size, true);
	if (!d->armed) {
		d->armed = true;
		d->next = thr;
		throttle_dir_arm(d, wait);
	}
	spin_unlock_irqrestore(&grp->lock, flags);
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
	struct throttle_target *thr = ti->private;
	const char *group = config_item_name(&thr->grp->group.cg_item);
	struct throttle_stats s[2];
	unsigned int q[2];
	unsigned int sz = 0;
	int w;

	switch (type) {
	case STATUSTYPE_INFO:
		spin_lock_irq(&thr->grp->lock);
		memcpy(s, thr->stats, sizeof(s));
		q[0] = thr->nqueued[0];
		q[1] = thr->nqueued[1];
		spin_unlock_irq(&thr->grp->lock);
		DMEMIT("%s", group);
		for (w = 0; w < 2; w++)
			DMEMIT(" %llu %llu %llu %llu %u", s[w].ios, s[w].bytes,
			       s[w].delayed_ios, s[w].delayed_bytes, q[w]);
		break;
	case STATUSTYPE_TABLE:
		DMEMIT("%s %s", thr->dev->name, group);
		break;
	case STATUSTYPE_IMA:
		DMEMIT_TARGET_NAME_VERSION(ti->type);
		DMEMIT(",device_name=%s,group=%s;", thr->dev->name, group);
		break;
	}
}

/* nodes/<name>/stats: the same counters as the status, named. */
static int throttle_stats_text(struct bg_instance *inst, char *buf,
			       size_t size)
{
	struct throttle_target *thr = inst->private;
	static const char * const dirs[2] = { "read", "write" };
	int len = 0, w;

	len = bg_emit(buf, size, len, "group %s\n",
		      config_item_name(&thr->grp->group.cg_item));
	spin_lock_irq(&thr->grp->lock);
	for (w = 0; w < 2; w++) {
		len = throttle_stats_emit(buf, size, len, dirs[w], &thr->stats[w],
					  thr->nqueued[w]);
		len = bg_emit(buf, size, len, "\n");
	}
	spin_unlock_irq(&thr->grp->lock);
	return len;
}

static int throttle_prepare_ioctl(struct dm_target *ti,
				  struct block_device **bdev)
{
	struct throttle_target *thr = ti->private;

	return bg_prepare_ioctl(ti, thr->dev, 0, bdev);
}

static int throttle_iterate_devices(struct dm_target *ti,
				    iterate_devices_callout_fn fn, void *data)
{
	struct throttle_target *thr = ti->private;

	return fn(ti, thr->dev, 0, ti->len, data);
}

/* Suspending: release every held bio now and hold no more (QEMU drains). */
static void throttle_presuspend(struct dm_target *ti)
{
	struct throttle_target *thr = ti->private;

	spin_lock_irq(&thr->grp->lock);
	thr->draining = true;
	spin_unlock_irq(&thr->grp->lock);
	throttle_group_kick(thr->grp);
}

static void throttle_presuspend_undo(struct dm_target *ti)
{
	struct throttle_target *thr = ti->private;

	spin_lock_irq(&thr->grp->lock);
	thr->draining = false;
	spin_unlock_irq(&thr->grp->lock);
}

static void throttle_resume(struct dm_target *ti)
{
	struct throttle_target *thr = ti->private;

	throttle_presuspend_undo(ti);
	bg_instance_resume(thr->inst);
}

/* ---------------------------------------------------------------- */
/* Constructor and destructor                                       */
/* ---------------------------------------------------------------- */

static int throttle_ctr(struct dm_target *ti, unsigned int argc, char **argv)
{
	struct throttle_target *thr;
	int r;

	if (argc != 2) {
		ti->error = "Invalid argument count: <dev> <group>";
		return -EINVAL;
	}

	thr = kzalloc(sizeof(*thr), GFP_KERNEL);
	if (!thr) {
		ti->error = "Cannot allocate the throttle context";
		return -ENOMEM;
	}
	bio_list_init(&thr->queue[0]);
	bio_list_init(&thr->queue[1]);

	thr->inst = bg_instance_create(ti, &throttle_kind, thr);
	if (IS_ERR(thr->inst)) {
		r = PTR_ERR(thr->inst);
		goto out_free;
	}
	r = bg_instance_add_child(thr->inst, argv[0], BG_ROLE_FILE, 0, &thr->dev);
	if (r)
		goto out_instance;
	if (ti->len > bdev_nr_sectors(thr->dev->bdev)) {
		ti->error = "Device is larger than its child";
		r = -EINVAL;
		goto out_instance;
	}

	r = throttle_group_join(thr, argv[1], &ti->error);
	if (r)
		goto out_instance;

	ti->num_flush_bios = 1;
	ti->num_discard_bios = 1;
	ti->num_secure_erase_bios = 1;
	ti->num_write_zeroes_bios = 1;
	ti->private = thr;
	return 0;

out_instance:
	bg_instance_destroy(thr->inst);	/* puts thr->dev too */
out_free:
	kfree(thr);
	return r;
}

static void throttle_dtr(struct dm_target *ti)
{
	struct throttle_target *thr = ti->private;

	/*
	 * Out of the group's members (whose reader follows thr->inst), then
	 * out of the graph (whose stats reader follows thr->grp), then let the
	 * group go.
	 */
	throttle_group_unlink(thr);
	bg_instance_destroy(thr->inst);
	throttle_group_put(thr->grp);
	kfree(thr);
}

static struct target_type throttle_target_type = {
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
	.postsuspend	= bg_target_postsuspend,
	.preresume	= bg_target_preresume,
	.resume		= throttle_resume,
};

/*
 * One workqueue for the kind: its work items are the groups' releases,
 * short and never blocking on I/O, shared by every group and node.
 */
static int throttle_init(void)
{
	throttle_wq = bg_kind_wq(&throttle_kind, 0);
	if (!throttle_wq)
		return -ENOMEM;
	throttle_groups_init();
	return 0;
}

static void throttle_exit(void)
{
	destroy_workqueue(throttle_wq);
}

struct bg_kind throttle_kind = {
	.name		= "throttle",
	.target		= &throttle_target_type,
	.init		= throttle_init,
	.exit		= throttle_exit,
	.configfs_group	= &throttle_groups_group,
	.stats_text	= throttle_stats_text,
};

MODULE_ALIAS("dm-bgraph-throttle");
