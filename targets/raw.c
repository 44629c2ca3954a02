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
	struct dm_dev *dev;
	sector_t start;			/* the window's start on dev */
	struct raw_args args;		/* as given, for the table status */
};

BG_CONTEXT(struct raw_target);

/* ---------------------------------------------------------------- */
/* Target methods                                                   */
/* ---------------------------------------------------------------- */

static int raw_map(struct dm_target *ti, struct bio *bio)
{
	struct raw_target *raw = ti->private;

	if (bg_bio_write_refused(raw->inst, bio))
		return DM_MAPIO_KILL;
	if (unlikely(bio_op(bio) == REQ_OP_DISCARD &&
		     raw->args.io.discard == BG_DISCARD_IGNORE)) {
		bio_endio(bio);		/* QEMU's discard=ignore */
		return DM_MAPIO_SUBMITTED;
	}
	if (raw->args.io.detect_zeroes)
		bg_bio_detect_zeroes(bio, raw->args.io.detect_zeroes,
				     raw->dev->bdev);

	bio_set_dev(bio, raw->dev->bdev);
	if (bio_sectors(bio) || op_is_zone_mgmt(bio_op(bio)))
		bio->bi_iter.bi_sector = raw->start +
			dm_target_offset(ti, bio->bi_iter.bi_sector);
	return DM_MAPIO_REMAPPED;
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
		DMEMIT("%s", raw->dev->name);
		sz = bg_opt_emit(result, maxlen, sz, &opts);
		break;
	case STATUSTYPE_IMA:
		DMEMIT_TARGET_NAME_VERSION(ti->type);
		DMEMIT(",device_name=%s,offset=%llu,size=%llu;",
		       raw->dev->name, raw->args.offset, raw->args.size);
		break;
	}
}

static int raw_prepare_ioctl(struct dm_target *ti, struct block_device **bdev)
{
	struct raw_target *raw = ti->private;

	return bg_prepare_ioctl(ti, raw->dev, raw->start, bdev);
}

static int raw_iterate_devices(struct dm_target *ti,
			       iterate_devices_callout_fn fn, void *data)
{
	struct raw_target *raw = ti->private;

	return fn(ti, raw->dev, raw->start, ti->len, data);
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
	.version	= {1, 1, 0},
	.features	= DM_TARGET_NOWAIT | DM_TARGET_PASSES_CRYPTO,
	.module		= THIS_MODULE,
	.ctr		= raw_ctr,
	.dtr		= raw_dtr,
	.map		= raw_map,
	.status		= raw_status,
	.prepare_ioctl	= raw_prepare_ioctl,
	.iterate_devices = raw_iterate_devices,
	.postsuspend	= bg_target_postsuspend,
	.preresume	= bg_target_preresume,
	.resume		= bg_target_resume,
};

struct bg_kind raw_kind = {
	.name		= "raw",
	.target		= &raw_target_type,
};

MODULE_ALIAS("dm-bgraph-raw");
