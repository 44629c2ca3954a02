// SPDX-License-Identifier: GPL-2.0
/*
 * Deferred bios and the nodes' workqueues; see defer.h.
 */
#include <linux/blkdev.h>

#include "bgraph.h"
#include "defer.h"

static void bg_defer_work(struct work_struct *work)
{
	struct bg_deferred *d = container_of(work, struct bg_deferred, work);
	struct bio_list bios;
	struct blk_plug plug;
	struct bio *bio;

	spin_lock_irq(&d->lock);
	bios = d->bios;
	bio_list_init(&d->bios);
	spin_unlock_irq(&d->lock);

	blk_start_plug(&plug);
	while ((bio = bio_list_pop(&bios)))
		d->process(d, bio);
	blk_finish_plug(&plug);
}

void bg_defer_init(struct bg_deferred *d, struct workqueue_struct *wq,
		   void (*process)(struct bg_deferred *d, struct bio *bio))
{
	spin_lock_init(&d->lock);
	bio_list_init(&d->bios);
	INIT_WORK(&d->work, bg_defer_work);
	d->wq = wq;
	d->process = process;
}

void bg_defer_bio(struct bg_deferred *d, struct bio *bio)
{
	unsigned long flags;

	spin_lock_irqsave(&d->lock, flags);
	bio_list_add(&d->bios, bio);
	spin_unlock_irqrestore(&d->lock, flags);
	queue_work(d->wq, &d->work);
}

void bg_defer_flush(struct bg_deferred *d)
{
	flush_work(&d->work);
}

struct workqueue_struct *bg_node_wq(struct dm_target *ti,
				    const struct bg_kind *kind,
				    const char *suffix, unsigned int flags)
{
	return alloc_workqueue("bgraph-%s%s/%s", flags | WQ_MEM_RECLAIM, 0,
			       kind->name, suffix,
			       dm_table_device_name(ti->table));
}

struct workqueue_struct *bg_kind_wq(const struct bg_kind *kind,
				    unsigned int flags)
{
	return alloc_workqueue("bgraph-%s", flags | WQ_MEM_RECLAIM, 0,
			       kind->name);
}
