// SPDX-License-Identifier: GPL-2.0
/*
 * bgraph-qcow2: a qcow2 image on its file child, with an optional backing
 * child for the clusters the image does not hold (QEMU's qcow2 node).
 *
 * Table: <file_dev> [<#opt_args> [backing <dev>] [l2_cache_size <bytes>]
 *        [read_only] [error_if_no_space]]
 * See Documentation/bgraph-qcow2.rst.
 *
 * The on-disk format is in qcow2-format.c (pure logic, unit-tested and
 * fuzzed on the host); the other files are listed in qcow2.h.  This file
 * holds the target methods, the constructor and the destructor.
 *
 * Data path: map() looks the bio's first clusters up in the L1 table (in
 * memory) and the L2 cache and, on a hit, remaps the extent that maps the
 * same way (data in the file, the backing child) to that device, or
 * zero-fills it, without copying data; dm core resubmits the rest.  A
 * cache miss or a compressed cluster sends the bio to a worker, which may
 * sleep: it reads the L2 slice (dm-io), decompresses (kernel zlib / zstd)
 * and splits the bio itself where the mapping changes.
 *
 * Writes to clusters the image owns are remapped in map() too.  A write
 * that allocates a cluster whose fill is all zeros is also started there
 * when all it needs is in memory (qcow2_start_alloc_map()); everything else
 * that writes goes to the worker, which starts such writes the same way
 * once it has read what they need, and does the others itself.
 */
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/dm-io.h>

#include "qcow2-args.h"
#include "qcow2.h"
#include "../dm-bgraph/defer.h"

/* ---------------------------------------------------------------- */
/* Target methods                                                   */
/* ---------------------------------------------------------------- */

static int qcow2_map_bio(struct dm_target *ti, struct bio *bio)
{
	struct qcow2_image *img = ti->private;
	struct qcow2_io *io = dm_per_bio_data(bio, sizeof(*io));
	struct qcow2_extent ext;
	u64 off;

	if (bg_bio_write_refused(img->inst, bio))
		return DM_MAPIO_KILL;

	io->epoch = -1;
	io->zeroes = false;
	if (unlikely(!bio_sectors(bio))) {
		/* An empty flush: with no metadata to write, pass it on. */
		if (!img->writable || !qcow2_meta_pending(img)) {
			bio_set_dev(bio, img->file->bdev);
			return DM_MAPIO_REMAPPED;
		}
		return qcow2_defer(img, bio);
	}
	if (unlikely(bio_op(bio) == REQ_OP_DISCARD &&
		     img->io_opts.discard == BG_DISCARD_IGNORE)) {
		bio_endio(bio);		/* QEMU's discard=ignore */
		return DM_MAPIO_SUBMITTED;
	}
	qcow2_epoch_get(img, io);
	off = (u64)dm_target_offset(ti, bio->bi_iter.bi_sector) << SECTOR_SHIFT;
	if (bio_data_dir(bio) == WRITE) {
		if (!img->writable)
			return DM_MAPIO_KILL;
		if (img->io_opts.detect_zeroes && bio_op(bio) == REQ_OP_WRITE &&
		    qcow2_covers_cluster(img, off, bio->bi_iter.bi_size) &&
		    bg_bio_all_zero(bio)) {
			/* Its whole clusters become zero clusters. */
			io->zeroes = true;
			return qcow2_defer(img, bio);
		}
		if (bio_op(bio) != REQ_OP_WRITE ||
		    ((bio->bi_opf & REQ_FUA) && qcow2_meta_unwritten(img)) ||
		    qcow2_lookup(img, off, bio->bi_iter.bi_size, false, &ext))
			return qcow2_defer(img, bio);
		/* In place: a plain write to clusters we own, L2 cached. */
		if (ext.type == QCOW2_MAP_DATA && ext.copied) {
			qcow2_accept(bio, ext.len);
			qcow2_remap(bio, img->file, ext.host_off);
			return DM_MAPIO_REMAPPED;
		}
		if (qcow2_start_alloc_map(img, bio, off))
			return DM_MAPIO_SUBMITTED;
		return qcow2_defer(img, bio);
	}

	if (qcow2_lookup(img, off, bio->bi_iter.bi_size, false, &ext))
		return qcow2_defer(img, bio);

	switch (ext.type) {
	case QCOW2_MAP_DATA:
		qcow2_accept(bio, ext.len);
		qcow2_remap(bio, img->file, ext.host_off);
		return DM_MAPIO_REMAPPED;
	case QCOW2_MAP_BACKING:
		qcow2_accept(bio, ext.len);
		qcow2_remap(bio, img->backing, off);
		return DM_MAPIO_REMAPPED;
	case QCOW2_MAP_ZERO:
		qcow2_accept(bio, ext.len);
		zero_fill_bio(bio);
		bio_endio(bio);
		return DM_MAPIO_SUBMITTED;
	case QCOW2_MAP_COMPRESSED:
		qcow2_accept(bio, ext.len);
		return qcow2_defer(img, bio);
	case QCOW2_MAP_INVALID:
	default:
		qcow2_bad_entry(img, off, &ext);
		return DM_MAPIO_KILL;
	}
}

static int qcow2_end_io(struct dm_target *ti, struct bio *bio,
			blk_status_t *error)
{
	qcow2_epoch_put(ti->private, dm_per_bio_data(bio, sizeof(struct qcow2_io)));
	return DM_ENDIO_DONE;
}

/* The modes' names, as status shows them. */
static const char *const qcow2_mode_names[] = {
	[QCOW2_MODE_NEW]	= "new",
	[QCOW2_MODE_WRITE]	= "write",
	[QCOW2_MODE_NO_SPACE]	= "no_space",
	[QCOW2_MODE_READ_ONLY]	= "read_only",
	[QCOW2_MODE_SUSPENDED]	= "suspended",
};

/*
 * Status.
 * INFO:  <l2_hits> <l2_misses> <slices_used> <slices_total> <mode> <flags>
 *        mode: one of qcow2_mode_names.  flags: "-", or a comma list of
 *        dirty and corrupt (the image's header bits) and no_space (the
 *        mode is QCOW2_MODE_NO_SPACE: writes wait for room).  Flags stay
 *        last, where the parsers of the five-field line found them.
 * TABLE: the table line, with only the options that were given.
 * IMA:   target_name, target_version, file_device, backing_device,
 *        l2_cache_size.
 */
static void qcow2_status(struct dm_target *ti, status_type_t type,
			 unsigned int status_flags, char *result,
			 unsigned int maxlen)
{
	struct qcow2_image *img = ti->private;
	struct bg_opt_args opts = {};
	enum qcow2_mode mode;
	const char *flag[3];
	u64 hits, misses, used;
	unsigned int sz = 0, n = 0, i;

	switch (type) {
	case STATUSTYPE_INFO:
		qcow2_l2c_counts(&img->cache, &hits, &misses, &used);
		mode = READ_ONCE(img->mode);	/* once: mode and flag agree */
		DMEMIT("%llu %llu %llu %llu %s ", hits, misses, used,
		       (u64)img->cache.nsets * L2C_WAYS,
		       qcow2_mode_names[mode]);
		if (img->info.dirty || qcow2_meta_marked_dirty(img))
			flag[n++] = "dirty";
		if (img->info.corrupt)
			flag[n++] = "corrupt";
		if (mode == QCOW2_MODE_NO_SPACE)
			flag[n++] = "no_space";
		if (!n)
			DMEMIT("-");
		for (i = 0; i < n; i++)
			DMEMIT("%s%s", i ? "," : "", flag[i]);
		break;
	case STATUSTYPE_TABLE:
		if (img->backing)
			bg_opt_add(&opts, "backing %s", img->backing->name);
		if (img->cache_arg)
			bg_opt_add(&opts, "l2_cache_size %llu", img->cache_arg);
		if (img->read_only)
			bg_opt_add(&opts, "read_only");
		if (img->error_if_no_space)
			bg_opt_add(&opts, "error_if_no_space");
		bg_io_opts_emit(&opts, &img->io_opts);
		DMEMIT("%s", img->file->name);
		sz = bg_opt_emit(result, maxlen, sz, &opts);
		break;
	case STATUSTYPE_IMA:
		DMEMIT_TARGET_NAME_VERSION(ti->type);
		DMEMIT(",file_device=%s,backing_device=%s,l2_cache_size=%llu;",
		       img->file->name, img->backing ? img->backing->name : "",
		       (u64)img->cache.nsets * L2C_WAYS * img->cache.slice_bytes);
		break;
	}
}

static int qcow2_iterate_devices(struct dm_target *ti,
				 iterate_devices_callout_fn fn, void *data)
{
	struct qcow2_image *img = ti->private;
	int r;

	/* The children are not linear maps of the node: their whole size. */
	r = fn(ti, img->file, 0, bdev_nr_sectors(img->file->bdev), data);
	if (!r && img->backing && bdev_nr_sectors(img->backing->bdev))
		r = fn(ti, img->backing, 0, bdev_nr_sectors(img->backing->bdev),
		       data);
	return r;
}

static void qcow2_io_hints(struct dm_target *ti, struct queue_limits *limits)
{
	struct qcow2_image *img = ti->private;
	u32 cs_sectors = img->info.cluster_size >> SECTOR_SHIFT;

	if (!img->writable)
		return;
	/* Discard frees whole clusters: say so. */
	limits->discard_granularity = img->info.cluster_size;
	limits->max_hw_discard_sectors = cs_sectors * 1024;
	limits->max_discard_sectors = cs_sectors * 1024;
}

static void qcow2_presuspend(struct dm_target *ti)
{
	struct qcow2_image *img = ti->private;

	spin_lock(&img->held_lock);
	qcow2_set_mode(img, QCOW2_MODE_SUSPENDED);
	spin_unlock(&img->held_lock);
	qcow2_pz_halt(img);
	/* Held writes would block the suspend: requeue, or fail them. */
	if (dm_noflush_suspending(ti))
		qcow2_release_held(img, true, BLK_STS_DM_REQUEUE);
	else
		qcow2_release_held(img, true, BLK_STS_NOSPC);
}

/*
 * A writable table read the image in its constructor, while the table it
 * replaces (if any) could still write; that one has written everything
 * back in its postsuspend by now.  Read the image again before the first
 * I/O.
 */
static int qcow2_preresume(struct dm_target *ti)
{
	struct qcow2_image *img = ti->private;
	char *error = NULL;
	int r;

	if (!img->writable || READ_ONCE(img->mode) != QCOW2_MODE_NEW)
		return bg_instance_preresume(img->inst);
	r = qcow2_meta_reload(img, &error);
	if (r) {
		DMERR("%s: cannot resume: %s", qcow2_name(img), error);
		return r;
	}
	return bg_instance_preresume(img->inst);
}

static void qcow2_postsuspend(struct dm_target *ti)
{
	struct qcow2_image *img = ti->private;

	if (img->writable)
		qcow2_make_clean(img);
	bg_instance_postsuspend(img->inst);
}

/*
 * Live again: from presuspend when dm undoes a suspend (a freeze of the
 * file system failed, a wait was interrupted), and at every resume.
 */
static void qcow2_presuspend_undo(struct dm_target *ti)
{
	struct qcow2_image *img = ti->private;

	spin_lock(&img->held_lock);
	qcow2_set_mode(img, img->writable ? QCOW2_MODE_WRITE :
		       QCOW2_MODE_READ_ONLY);
	spin_unlock(&img->held_lock);
	qcow2_pz_start(img);
}

static void qcow2_resume(struct dm_target *ti)
{
	struct qcow2_image *img = ti->private;

	qcow2_presuspend_undo(ti);
	bg_instance_resume(img->inst);
}

/*
 * Messages: "resize": the file device grew; retry the writes that wait
 * for room.
 */
static int qcow2_message(struct dm_target *ti, unsigned int argc, char **argv,
			 char *result, unsigned int maxlen)
{
	struct qcow2_image *img = ti->private;

	if (argc == 1 && !strcasecmp(argv[0], "resize")) {
		qcow2_alloc_rescan(img);
		qcow2_release_held(img, false, BLK_STS_OK);
		return 0;
	}
	DMWARN("%s: unknown message; the only one is \"resize\"", qcow2_name(img));
	return -EINVAL;
}

/* ---------------------------------------------------------------- */
/* Constructor helpers                                              */
/* ---------------------------------------------------------------- */

/* Read the header cluster and parse it into img->info. */
/* ---------------------------------------------------------------- */
/* Constructor and destructor                                       */
/* ---------------------------------------------------------------- */

static void qcow2_free(struct qcow2_image *img)
{
	if (img->done_wq)
		destroy_workqueue(img->done_wq);
	if (img->flush_wq)
		destroy_workqueue(img->flush_wq);
	if (img->wq)
		destroy_workqueue(img->wq);
	qcow2_meta_free(img);
	qcow2_l2c_exit(&img->cache);
	bioset_exit(&img->cow_bs);
	bioset_exit(&img->bs);
	if (img->io)
		dm_io_client_destroy(img->io);
	if (!IS_ERR_OR_NULL(img->inst))
		bg_instance_destroy(img->inst);	/* puts the children */
	kfree(img);
}

static int qcow2_ctr(struct dm_target *ti, unsigned int argc, char **argv)
{
	struct qcow2_args args;
	const char *error = NULL;
	struct qcow2_image *img;
	u64 cache;
	u32 slice;
	int r;

	if (argc < 1) {
		ti->error = "Invalid argument count: <file_dev> [<#opt_args> <opt_args>...]";
		return -EINVAL;
	}
	r = qcow2_parse_opts(argc - 1, argv + 1, &args, &error);
	if (r) {
		ti->error = (char *)error;
		return r;
	}
	img = kzalloc(sizeof(*img), GFP_KERNEL);
	if (!img) {
		ti->error = "Cannot allocate the qcow2 context";
		return -ENOMEM;
	}
	img->cache_arg = args.l2_cache_size;
	img->read_only = args.read_only;
	img->error_if_no_space = args.error_if_no_space;
	img->io_opts = args.io;
	img->writable = (dm_table_get_mode(ti->table) & BG_OPEN_WRITE) &&
		       !args.read_only;
	qcow2_meta_init(img);
	spin_lock_init(&img->inflight_lock);
	INIT_LIST_HEAD(&img->inflight);
	init_waitqueue_head(&img->inflight_wq);
	init_waitqueue_head(&img->drain_wq);
	spin_lock_init(&img->held_lock);
	bio_list_init(&img->held);

	img->inst = bg_instance_create(ti, &qcow2_kind, img);
	if (IS_ERR(img->inst)) {
		r = PTR_ERR(img->inst);
		goto out;
	}
	if (args.read_only)
		bg_instance_set_read_only(img->inst);
	r = bg_instance_add_child(img->inst, argv[0], BG_ROLE_FILE, 0,
				  &img->file);
	if (r)
		goto out;
	if (args.backing) {
		r = bg_instance_add_child(img->inst, args.backing,
					  BG_ROLE_BACKING, 0, &img->backing);
		if (r)
			goto out;
	}

	img->io = dm_io_client_create();
	if (IS_ERR(img->io)) {
		r = PTR_ERR(img->io);
		img->io = NULL;
		ti->error = "Cannot create the dm-io client";
		goto out;
	}
	img->wq = bg_node_wq(ti, &qcow2_kind, "", WQ_UNBOUND);
	img->flush_wq = bg_node_wq(ti, &qcow2_kind, "f", WQ_UNBOUND);
	img->done_wq = bg_node_wq(ti, &qcow2_kind, "d", WQ_UNBOUND);
	if (!img->wq || !img->flush_wq || !img->done_wq) {
		r = -ENOMEM;
		ti->error = "Cannot create the workqueue";
		goto out;
	}
	r = qcow2_meta_load_header(img, &ti->error);
	if (r)
		goto out;
	if (img->info.cluster_size < bdev_logical_block_size(img->file->bdev)) {
		/* A cluster could not be remapped without a bounce copy. */
		ti->error = "Cluster size is smaller than the file device's logical block size";
		r = -EINVAL;
		goto out;
	}
	if ((1U << img->info.subcluster_bits) < bdev_logical_block_size(img->file->bdev)) {
		/* Nor a subcluster (extended L2 with clusters under 128K on 4Kn). */
		ti->error = "Subcluster size is smaller than the file device's logical block size";
		r = -EINVAL;
		goto out;
	}
	if (ti->len > DIV_ROUND_UP(img->info.size, SECTOR_SIZE)) {
		ti->error = "Target length is larger than the image's virtual size";
		r = -EINVAL;
		goto out;
	}
	if (img->writable) {
		r = qcow2_meta_writable_init(img, &ti->error);
		if (r)
			goto out;
	}
	r = qcow2_meta_load_tables(img, &ti->error);
	if (r)
		goto out;
	if (img->writable && img->info.autoclear) {
		/* QEMU's rule: a writer that does not know them clears them. */
		DMINFO("%s: clearing autoclear features 0x%llx", qcow2_name(img),
		       img->info.autoclear);
		r = qcow2_header_update(img, QCOW2_HDR_AUTOCLEAR, 0, ~0ULL);
		if (r) {
			ti->error = "Cannot write the image header";
			goto out;
		}
	}

	slice = min_t(u64, img->info.cluster_size, L2C_MAX_SLICE);
	/*
	 * By default, twice what maps the whole image (within QEMU's cap):
	 * slices hash unevenly into the sets, and an exact fit would evict.
	 */
	cache = args.l2_cache_size ?:
		min_t(u64, 2 * qcow2_default_l2_cache(&img->info, L2C_MIN_SLICES * slice),
		      QCOW2_MAX_L2_CACHE);
	r = qcow2_l2c_init(&img->cache, slice, cache);
	if (!r)
		r = bioset_init(&img->bs, BIO_POOL_SIZE, 0, 0);
	if (!r)
		r = bioset_init(&img->cow_bs, BIO_POOL_SIZE, 0,
				BIOSET_NEED_BVECS);
	if (r) {
		ti->error = "Cannot allocate the L2 cache";
		goto out;
	}
	if (img->info.tables_past_end)
		DMINFO("%s: image tables run past the end of the file device, reading zeros there",
		       qcow2_name(img));
	if (img->info.corrupt || img->info.dirty)
		DMWARN("%s: image is marked %s; reading only", qcow2_name(img),
		       img->info.corrupt ? "corrupt" : "dirty");

	ti->num_flush_bios = 1;
	if (img->writable) {
		ti->num_discard_bios = 1;
		ti->num_write_zeroes_bios = 1;
		ti->discards_supported = true;
	}
	ti->per_io_data_size = sizeof(struct qcow2_io);
	ti->private = img;
	return 0;

out:
	qcow2_free(img);
	return r;
}

static void qcow2_dtr(struct dm_target *ti)
{
	struct qcow2_image *img = ti->private;

	if (img->writable)
		qcow2_make_clean(img);
	qcow2_free(img);
}

static struct target_type qcow2_target_type = {
	.name		= "bgraph-qcow2",
	.version	= {1, 3, 0},
	.features	= DM_TARGET_NOWAIT,
	.module		= THIS_MODULE,
	.ctr		= qcow2_ctr,
	.dtr		= qcow2_dtr,
	.map		= qcow2_map_bio,
	.end_io		= qcow2_end_io,
	.status		= qcow2_status,
	.message	= qcow2_message,
	.iterate_devices = qcow2_iterate_devices,
	.io_hints	= qcow2_io_hints,
	.presuspend	= qcow2_presuspend,
	.presuspend_undo = qcow2_presuspend_undo,
	.preresume	= qcow2_preresume,
	.postsuspend	= qcow2_postsuspend,
	.resume		= qcow2_resume,
};

struct bg_kind qcow2_kind = {
	.name		= "qcow2",
	.target		= &qcow2_target_type,
};

MODULE_ALIAS("dm-bgraph-qcow2");
