// SPDX-License-Identifier: GPL-2.0
/*
 * bgraph-raw: a named passthrough to a block device, with an optional
 * window (QEMU's raw node with offset and size).
 *
 * Table: <dev> [<#opt_args> [offset <bytes>] [size <bytes>]]
 * See Documentation/bgraph-raw.rst.
 */
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/device-mapper.h>

#include "../dm-bgraph/bgraph.h"
#include "../dm-bgraph/parse.h"

#define DM_MSG_PREFIX "bgraph-raw"

struct raw_c {
	struct bg_instance *inst;
	struct dm_dev *dev;
	sector_t start;			/* the window's start on dev */
	struct bg_raw_args args;	/* as given, for the table status */
};

/* ---------------------------------------------------------------- */
/* Target methods                                                   */
/* ---------------------------------------------------------------- */

static int raw_map(struct dm_target *ti, struct bio *bio)
{
	struct raw_c *rc = ti->private;

	/* A node under a backing edge takes no writes, from anyone. */
	if (unlikely(op_is_write(bio_op(bio)) && bio_sectors(bio) &&
		     bg_node_write_blocked(rc->inst->node)))
		return DM_MAPIO_KILL;

	bio_set_dev(bio, rc->dev->bdev);
	if (bio_sectors(bio) || op_is_zone_mgmt(bio_op(bio)))
		bio->bi_iter.bi_sector = rc->start +
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
	struct raw_c *rc = ti->private;
	unsigned int sz = 0;
	unsigned int nopt = 2 * (rc->args.offset != 0) +
			    2 * rc->args.has_size;

	switch (type) {
	case STATUSTYPE_INFO:
		DMEMIT("%d", bg_node_write_blocked(rc->inst->node));
		break;
	case STATUSTYPE_TABLE:
		DMEMIT("%s", rc->dev->name);
		if (nopt)
			DMEMIT(" %u", nopt);
		if (rc->args.offset)
			DMEMIT(" offset %llu", rc->args.offset);
		if (rc->args.has_size)
			DMEMIT(" size %llu", rc->args.size);
		break;
	case STATUSTYPE_IMA:
		DMEMIT_TARGET_NAME_VERSION(ti->type);
		DMEMIT(",device_name=%s,offset=%llu,size=%llu;",
		       rc->dev->name, rc->args.offset, rc->args.size);
		break;
	}
}

static int raw_prepare_ioctl(struct dm_target *ti, struct block_device **bdev)
{
	struct raw_c *rc = ti->private;

	*bdev = rc->dev->bdev;
	/* Only pass ioctls through when the node covers the whole device. */
	if (rc->start || ti->len != bdev_nr_sectors(rc->dev->bdev))
		return 1;
	return 0;
}

static int raw_iterate_devices(struct dm_target *ti,
			       iterate_devices_callout_fn fn, void *data)
{
	struct raw_c *rc = ti->private;

	return fn(ti, rc->dev, rc->start, ti->len, data);
}

static void raw_resume(struct dm_target *ti)
{
	struct raw_c *rc = ti->private;

	bg_instance_resume(rc->inst);
}

/* ---------------------------------------------------------------- */
/* Constructor and destructor                                       */
/* ---------------------------------------------------------------- */

static int raw_ctr(struct dm_target *ti, unsigned int argc, char **argv)
{
	const char *error = NULL;
	struct raw_c *rc;
	u64 window;
	int r;

	if (argc < 1) {
		ti->error = "Invalid argument count: <dev> [<#opt_args> <opt_args>...]";
		return -EINVAL;
	}

	rc = kzalloc(sizeof(*rc), GFP_KERNEL);
	if (!rc) {
		ti->error = "Cannot allocate the raw context";
		return -ENOMEM;
	}

	r = bg_raw_parse_opts(argc - 1, argv + 1, &rc->args, &error);
	if (r) {
		ti->error = (char *)error;
		goto out_free;
	}
	rc->start = rc->args.offset >> SECTOR_SHIFT;

	rc->inst = bg_instance_create(ti, "raw");
	if (IS_ERR(rc->inst)) {
		r = PTR_ERR(rc->inst);
		goto out_free;
	}

	r = bg_instance_add_child(rc->inst, argv[0], BG_ROLE_FILE, 0, &rc->dev);
	if (r)
		goto out_instance;

	r = bg_raw_window(&rc->args, bdev_nr_bytes(rc->dev->bdev),
			  (u64)ti->len << SECTOR_SHIFT, &window, &error);
	if (r) {
		ti->error = (char *)error;
		goto out_instance;
	}

	ti->num_flush_bios = 1;
	ti->num_discard_bios = 1;
	ti->num_secure_erase_bios = 1;
	ti->num_write_zeroes_bios = 1;
	ti->private = rc;
	return 0;

out_instance:
	bg_instance_destroy(rc->inst);	/* puts rc->dev too */
out_free:
	kfree(rc);
	return r;
}

static void raw_dtr(struct dm_target *ti)
{
	struct raw_c *rc = ti->private;

	bg_instance_destroy(rc->inst);
	kfree(rc);
}

static struct target_type raw_target = {
	.name		= "bgraph-raw",
	.version	= {1, 0, 0},
	.features	= DM_TARGET_NOWAIT | DM_TARGET_PASSES_CRYPTO,
	.module		= THIS_MODULE,
	.ctr		= raw_ctr,
	.dtr		= raw_dtr,
	.map		= raw_map,
	.status		= raw_status,
	.prepare_ioctl	= raw_prepare_ioctl,
	.iterate_devices = raw_iterate_devices,
	.resume		= raw_resume,
};

int bg_raw_init(void)
{
	return dm_register_target(&raw_target);
}

void bg_raw_exit(void)
{
	dm_unregister_target(&raw_target);
}
