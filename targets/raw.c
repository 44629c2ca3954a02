// SPDX-License-Identifier: GPL-2.0
/*
 * bgraph-raw: a named passthrough to a block device, with an optional
 * window (QEMU's raw node with offset and size).
 *
 * Table: <dev> [<#opt_args> [offset <bytes>] [size <bytes>]
 *		  [discard ignore|unmap] [detect_zeroes off|on|unmap]]
 * See Documentation/bgraph-raw.rst.
 */
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/device-mapper.h>

#include "../dm-bgraph/bgraph.h"
#include "raw-args.h"

#define DM_MSG_PREFIX "bgraph-raw"

struct raw_target {
	struct bg_instance *inst;
	struct dm_dev *dev;		/* READ_ONCE; changes by re-point */
	sector_t start;			/* the window's start on dev */
	struct raw_args args;		/* as given, for the table status */

	/* A re-point of the file edge (raw_edge_quiesce(), raw_edge_switch()) */
	bool quiesced;			/* hold new bios (acquire/release) */
	atomic_t inflight;		/* bios sent to dev, not yet ended */
	wait_queue_head_t wait;		/* for inflight to reach 0 */
	spinlock_t lock;		/* held, quiesced's clearing, dev_name */
	struct bio_list held;
	char dev_name[16];		/* dev->name, for status */
};

BG_CONTEXT(struct raw_target);

/* ---------------------------------------------------------------- */
/* Bio helpers                                                      */
/* ---------------------------------------------------------------- */

static void raw_remap(struct dm_target *ti, struct raw_target *raw,
		      struct dm_dev *dev, struct bio *bio)
{
	if (raw->args.io.detect_zeroes)
		bg_bio_detect_zeroes(bio, raw->args.io.detect_zeroes,
				     dev->bdev);

	bio_set_dev(bio, dev->bdev);
	if (bio_sectors(bio) || op_is_zone_mgmt(bio_op(bio)))
		bio->bi_iter.bi_sector = raw->start +
			dm_target_offset(ti, bio->bi_iter.bi_sector);
}

/*
 * Count @bio in flight, or hold it while the file edge is quiesced.
 * Returns true when held.  The count comes first, then the flag is read
 * (paired with the smp_mb() in raw_edge_quiesce()): a bio that missed the
 * flag is counted and waited for.
 */
static bool raw_hold_or_count(struct raw_target *raw, struct bio *bio)
{
	unsigned long flags;

	atomic_inc(&raw->inflight);
	/* Count before the flag; paired with the smp_mb() of quiesce. */
	smp_mb__after_atomic();
	/* Flag before dev; paired with smp_store_release() in switch. */
	if (likely(!smp_load_acquire(&raw->quiesced)))
		return false;
	if (atomic_dec_and_test(&raw->inflight))
		wake_up(&raw->wait);

	spin_lock_irqsave(&raw->lock, flags);
	if (raw->quiesced) {
		bio_list_add(&raw->held, bio);
		spin_unlock_irqrestore(&raw->lock, flags);
		return true;
	}
	atomic_inc(&raw->inflight);	/* switched meanwhile */
	spin_unlock_irqrestore(&raw->lock, flags);
	return false;
}

/* ---------------------------------------------------------------- */
/* Target methods                                                   */
/* ---------------------------------------------------------------- */

static int raw_map(struct dm_target *ti, struct bio *bio)
{
	struct raw_target *raw = ti->private;

	if (bg_bio_write_refused(raw->inst, bio))
		return DM_MAPIO_KILL;
	/* From here every bio ends through raw_end_io(), held ones too. */
	if (raw_hold_or_count(raw, bio))
		return DM_MAPIO_SUBMITTED;
	if (unlikely(bio_op(bio) == REQ_OP_DISCARD &&
		     raw->args.io.discard == BG_DISCARD_IGNORE)) {
		bio_endio(bio);		/* QEMU's discard=ignore */
		return DM_MAPIO_SUBMITTED;
	}
	raw_remap(ti, raw, READ_ONCE(raw->dev), bio);
	return DM_MAPIO_REMAPPED;
}

static int raw_end_io(struct dm_target *ti, struct bio *bio,
		      blk_status_t *error)
{
	struct raw_target *raw = ti->private;

	/* Full barrier; paired with the smp_mb() in raw_edge_quiesce(). */
	if (atomic_dec_and_test(&raw->inflight) && READ_ONCE(raw->quiesced))
		wake_up(&raw->wait);
	return DM_ENDIO_DONE;
}

/*
 * Status.
 * INFO:  <write_blocked>  1 while edges above make this node read-only.
 * TABLE: the table line, with only the options that were given.
 * IMA:   target_name, target_version, device_name, offset, size.
 */
static void raw_status(struct dm_target *ti, status_type_t type,
		       unsigned int status_flags, char *result,
		       unsigned int maxlen)
{
	struct raw_target *raw = ti->private;
	struct bg_opt_args opts = {};
	unsigned int sz = 0;

	switch (type) {
	case STATUSTYPE_INFO:
		DMEMIT("%d", bg_node_write_blocked(raw->inst->node));
		break;
	case STATUSTYPE_TABLE:
		if (raw->args.offset)
			bg_opt_add(&opts, "offset %llu", raw->args.offset);
		if (raw->args.has_size)
			bg_opt_add(&opts, "size %llu", raw->args.size);
		bg_io_opts_emit(&opts, &raw->args.io);
		spin_lock_irq(&raw->lock);
		DMEMIT("%s", raw->dev_name);
		spin_unlock_irq(&raw->lock);
		sz = bg_opt_emit(result, maxlen, sz, &opts);
		break;
	case STATUSTYPE_IMA:
		DMEMIT_TARGET_NAME_VERSION(ti->type);
		spin_lock_irq(&raw->lock);
		DMEMIT(",device_name=%s,offset=%llu,size=%llu;",
		       raw->dev_name, raw->args.offset, raw->args.size);
		spin_unlock_irq(&raw->lock);
		break;
	}
}

/*
 * Messages.
 * repoint <role> <major:minor|/dev/path>: move the edge to that device
 * (bg_edge_repoint()); raw has one edge, file.
 */
static int raw_message(struct dm_target *ti, unsigned int argc, char **argv,
		       char *result, unsigned int maxlen)
{
	struct raw_target *raw = ti->private;
	unsigned int major, minor;
	dev_t devt;
	char dummy;
	int r;

	if (argc != 3 || strcasecmp(argv[0], "repoint")) {
		DMERR("%s: unknown message (repoint <role> <device>)",
		      raw->inst->node->name);
		return -EINVAL;
	}
	if (strcmp(argv[1], "file")) {
		DMERR("%s: cannot re-point %s: no such edge (raw has file)",
		      raw->inst->node->name, argv[1]);
		return -ENOENT;
	}
	if (sscanf(argv[2], "%u:%u%c", &major, &minor, &dummy) == 2) {
		devt = MKDEV(major, minor);
		if (MAJOR(devt) != major || MINOR(devt) != minor) {
			DMERR("%s: cannot re-point file to %s: no such device",
			      raw->inst->node->name, argv[2]);
			return -ENODEV;
		}
	} else {
		r = lookup_bdev(argv[2], &devt);
		if (r) {
			DMERR("%s: cannot re-point file to %s: %d",
			      raw->inst->node->name, argv[2], r);
			return r;
		}
	}
	return bg_edge_repoint(raw->inst, BG_ROLE_FILE, 0, devt);
}

static int raw_prepare_ioctl(struct dm_target *ti, struct block_device **bdev)
{
	struct raw_target *raw = ti->private;

	return bg_prepare_ioctl(ti, READ_ONCE(raw->dev), raw->start, bdev);
}

static int raw_iterate_devices(struct dm_target *ti,
			       iterate_devices_callout_fn fn, void *data)
{
	struct raw_target *raw = ti->private;

	return fn(ti, READ_ONCE(raw->dev), raw->start, ti->len, data);
}

/* ---------------------------------------------------------------- */
/* Re-point of the file edge                                        */
/* ---------------------------------------------------------------- */

static u64 raw_edge_need(struct bg_instance *inst, struct bg_edge *edge)
{
	struct raw_target *raw = inst->private;

	return raw->args.offset + ((u64)inst->ti->len << SECTOR_SHIFT);
}

static void raw_edge_switch(struct bg_instance *inst, struct bg_edge *edge,
			    struct dm_dev *dev)
{
	struct raw_target *raw = inst->private;
	struct dm_target *ti = inst->ti;
	struct bio_list held;
	struct blk_plug plug;
	struct bio *bio;

	spin_lock_irq(&raw->lock);
	WRITE_ONCE(raw->dev, dev);
	strscpy(raw->dev_name, dev->name, sizeof(raw->dev_name));
	held = raw->held;
	bio_list_init(&raw->held);
	smp_store_release(&raw->quiesced, false);	/* after dev */
	spin_unlock_irq(&raw->lock);

	blk_start_plug(&plug);
	while ((bio = bio_list_pop(&held))) {
		atomic_inc(&raw->inflight);
		if (unlikely(bio_op(bio) == REQ_OP_DISCARD &&
			     raw->args.io.discard == BG_DISCARD_IGNORE)) {
			bio_endio(bio);
			continue;
		}
		raw_remap(ti, raw, dev, bio);
		dm_submit_bio_remap(bio, NULL);
	}
	blk_finish_plug(&plug);
}

static int raw_edge_quiesce(struct bg_instance *inst, struct bg_edge *edge)
{
	struct raw_target *raw = inst->private;
	int r;

	WRITE_ONCE(raw->quiesced, true);
	smp_mb();	/* paired with raw_hold_or_count(), raw_end_io() */
	wait_event(raw->wait, !atomic_read(&raw->inflight));
	r = blkdev_issue_flush(raw->dev->bdev);
	if (r)
		raw_edge_switch(inst, edge, raw->dev);
	return r;
}

/* ---------------------------------------------------------------- */
/* Constructor and destructor                                       */
/* ---------------------------------------------------------------- */

static int raw_ctr(struct dm_target *ti, unsigned int argc, char **argv)
{
	const char *error = NULL;
	struct raw_target *raw;
	u64 window;
	int r;

	if (argc < 1) {
		ti->error = "Invalid argument count: <dev> [<#opt_args> <opt_args>...]";
		return -EINVAL;
	}

	raw = kzalloc(sizeof(*raw), GFP_KERNEL);
	if (!raw) {
		ti->error = "Cannot allocate the raw context";
		return -ENOMEM;
	}

	r = raw_parse_opts(argc - 1, argv + 1, &raw->args, &error);
	if (r) {
		ti->error = (char *)error;
		goto out_free;
	}
	raw->start = raw->args.offset >> SECTOR_SHIFT;

	raw->inst = bg_instance_create(ti, &raw_kind, raw);
	if (IS_ERR(raw->inst)) {
		r = PTR_ERR(raw->inst);
		goto out_free;
	}

	r = bg_instance_add_child(raw->inst, argv[0], BG_ROLE_FILE, 0, &raw->dev);
	if (r)
		goto out_instance;

	r = raw_window(&raw->args, bdev_nr_bytes(raw->dev->bdev),
		       (u64)ti->len << SECTOR_SHIFT, &window, &error);
	if (r) {
		ti->error = (char *)error;
		goto out_instance;
	}

	strscpy(raw->dev_name, raw->dev->name, sizeof(raw->dev_name));
	atomic_set(&raw->inflight, 0);
	init_waitqueue_head(&raw->wait);
	spin_lock_init(&raw->lock);
	bio_list_init(&raw->held);

	ti->num_flush_bios = 1;
	ti->num_discard_bios = 1;
	ti->num_secure_erase_bios = 1;
	ti->num_write_zeroes_bios = 1;
	ti->private = raw;
	return 0;

out_instance:
	bg_instance_destroy(raw->inst);	/* puts raw->dev too */
out_free:
	kfree(raw);
	return r;
}

static void raw_dtr(struct dm_target *ti)
{
	struct raw_target *raw = ti->private;

	bg_instance_destroy(raw->inst);
	kfree(raw);
}

static struct target_type raw_target_type = {
	.name		= "bgraph-raw",
	.version	= {1, 2, 0},
	.features	= DM_TARGET_NOWAIT | DM_TARGET_PASSES_CRYPTO,
	.module		= THIS_MODULE,
	.ctr		= raw_ctr,
	.dtr		= raw_dtr,
	.map		= raw_map,
	.end_io		= raw_end_io,
	.status		= raw_status,
	.message	= raw_message,
	.prepare_ioctl	= raw_prepare_ioctl,
	.iterate_devices = raw_iterate_devices,
	.postsuspend	= bg_target_postsuspend,
	.preresume	= bg_target_preresume,
	.resume		= bg_target_resume,
};

struct bg_kind raw_kind = {
	.name		= "raw",
	.target		= &raw_target_type,
	.edge_need	= raw_edge_need,
	.edge_quiesce	= raw_edge_quiesce,
	.edge_switch	= raw_edge_switch,
};

MODULE_ALIAS("dm-bgraph-raw");
