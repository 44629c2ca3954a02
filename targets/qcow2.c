// SPDX-License-Identifier: GPL-2.0
/*
 * bgraph-qcow2: a qcow2 image on its file child, with an optional backing
 * child for the clusters the image does not hold (QEMU's qcow2 node).
 *
 * Table: <file_dev> [<#opt_args> [backing <dev>] [l2_cache_size <bytes>]]
 * See Documentation/bgraph-qcow2.rst.  This version reads only: the table
 * must be loaded read-only.
 *
 * The on-disk format is in qcow2-format.c (pure logic, unit-tested and
 * fuzzed on the host).  This file holds the L2 slice cache, the bio paths
 * and the target methods.
 *
 * Data path: map() looks the bio's first clusters up in the L1 table (in
 * memory) and the L2 cache and, on a hit, remaps the extent that maps the
 * same way (data in the file, the backing child) to that device, or
 * zero-fills it, without copying data; dm core resubmits the rest.  A
 * cache miss or a compressed cluster sends the bio to a worker, which may
 * sleep: it reads the L2 slice (dm-io), decompresses (kernel zlib / zstd)
 * and splits the bio itself where the mapping changes.
 */
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>
#include <linux/hash.h>
#include <linux/log2.h>
#include <linux/percpu.h>
#include <linux/sched/mm.h>
#include <linux/workqueue.h>
#include <linux/dm-io.h>
#include <linux/zlib.h>
#include <linux/zstd.h>
#include <linux/device-mapper.h>

#include "../dm-bgraph/bgraph.h"
#include "../dm-bgraph/parse.h"
#include "qcow2-format.h"

#define DM_MSG_PREFIX "bgraph-qcow2"

#define L2C_WAYS		8	/* slices per cache set */
#define L2C_MIN_SLICES		(2 * L2C_WAYS)
#define L2C_MAX_SLICE		4096u	/* bytes of L2 table per slice */
#define MAP_MAX_ENTRIES		32	/* L2 entries looked at per extent */

/* ---------------------------------------------------------------- */
/* L2 slice cache                                                   */
/* ---------------------------------------------------------------- */

/*
 * Why not dm-bufio: it has no per-client size limit (all clients share a
 * global budget, a share of RAM, trimmed by a shrinker), so it cannot keep
 * a node to the cache size the table asks for; and on 6.1 every lookup
 * takes the client's mutex.  This cache is set-associative with a
 * spinlock per set: a lookup copies the few L2 entries it needs under its
 * set's lock and never sleeps, so map() serves hits without a worker and
 * nodes share no lock.  Memory: the configured size rounded down to a
 * power-of-two number of sets, allocated at construction.
 */
struct l2c_way {
	u64 key;		/* file offset of the slice + 1; 0: empty */
	u32 stamp;		/* set clock at the last use */
};

struct l2c_set {
	spinlock_t lock;	/* the ways, their slices and the clock */
	u32 clock;
	struct l2c_way way[L2C_WAYS];
};

struct l2c_stats {
	u64 hits;
	u64 misses;
};

struct l2_cache {
	u32 slice_bytes;
	u32 slice_shift;
	u32 nsets;
	struct l2c_set *sets;
	u8 *data;		/* nsets * L2C_WAYS slices */
	struct l2c_stats __percpu *stats;
};

static int l2c_init(struct l2_cache *c, u32 slice_bytes, u64 bytes)
{
	u64 nslices = max_t(u64, bytes / slice_bytes, L2C_MIN_SLICES);
	u32 i;

	c->slice_bytes = slice_bytes;
	c->slice_shift = ilog2(slice_bytes);
	/* A power of two: the set is a mask of the hash, not a division. */
	c->nsets = rounddown_pow_of_two(nslices / L2C_WAYS);
	c->sets = kvcalloc(c->nsets, sizeof(*c->sets), GFP_KERNEL);
	c->data = vmalloc(array3_size(c->nsets, L2C_WAYS, slice_bytes));
	c->stats = alloc_percpu(struct l2c_stats);
	if (!c->sets || !c->data || !c->stats)
		return -ENOMEM;
	for (i = 0; i < c->nsets; i++)
		spin_lock_init(&c->sets[i].lock);
	return 0;
}

static void l2c_exit(struct l2_cache *c)
{
	free_percpu(c->stats);
	vfree(c->data);
	kvfree(c->sets);
}

static struct l2c_set *l2c_set(struct l2_cache *c, u64 slice_off)
{
	return &c->sets[hash_64(slice_off >> c->slice_shift, 32) &
			(c->nsets - 1)];
}

static u8 *l2c_slot(struct l2_cache *c, struct l2c_set *set, unsigned int w)
{
	size_t slot = (size_t)(set - c->sets) * L2C_WAYS + w;

	return c->data + slot * c->slice_bytes;
}

/* Big-endian L2 words of a slice to host-endian ones. */
static void l2c_decode(const void *raw, u32 nwords, u64 *out)
{
	const __be64 *src = raw;
	u32 i;

	for (i = 0; i < nwords; i++)
		out[i] = be64_to_cpu(src[i]);
}

/*
 * l2c_lookup() - copy @nwords big-endian words from byte @pos of the slice
 * at file offset @slice_off into @out, host-endian.  Returns false on a
 * miss.  Counts hits; misses are counted where slices are read.  Any
 * context.
 */
static bool l2c_lookup(struct l2_cache *c, u64 slice_off, u32 pos,
		       u32 nwords, u64 *out)
{
	struct l2c_set *set = l2c_set(c, slice_off);
	unsigned long flags;
	unsigned int w;

	spin_lock_irqsave(&set->lock, flags);
	for (w = 0; w < L2C_WAYS; w++)
		if (set->way[w].key == slice_off + 1)
			break;
	if (w == L2C_WAYS) {
		spin_unlock_irqrestore(&set->lock, flags);
		return false;
	}
	set->way[w].stamp = ++set->clock;
	l2c_decode(l2c_slot(c, set, w) + pos, nwords, out);
	spin_unlock_irqrestore(&set->lock, flags);
	this_cpu_inc(c->stats->hits);
	return true;
}

/* Put a slice read from the file in the cache, over the least used one. */
static void l2c_insert(struct l2_cache *c, u64 slice_off, const void *raw)
{
	struct l2c_set *set = l2c_set(c, slice_off);
	unsigned int w, victim = 0;
	unsigned long flags;

	spin_lock_irqsave(&set->lock, flags);
	for (w = 0; w < L2C_WAYS; w++) {
		if (set->way[w].key == slice_off + 1)
			goto out;	/* another worker was first */
		if (!set->way[w].key ||
		    (set->way[victim].key &&
		     (s32)(set->way[w].stamp - set->way[victim].stamp) < 0))
			victim = w;
	}
	memcpy(l2c_slot(c, set, victim), raw, c->slice_bytes);
	set->way[victim].key = slice_off + 1;
	set->way[victim].stamp = ++set->clock;
out:
	spin_unlock_irqrestore(&set->lock, flags);
}

static void l2c_counts(struct l2_cache *c, u64 *hits, u64 *misses,
		       u64 *used)
{
	unsigned long flags;
	unsigned int w;
	int cpu;
	u32 i;

	*hits = *misses = *used = 0;
	for_each_possible_cpu(cpu) {
		*hits += per_cpu_ptr(c->stats, cpu)->hits;
		*misses += per_cpu_ptr(c->stats, cpu)->misses;
	}
	for (i = 0; i < c->nsets; i++) {
		spin_lock_irqsave(&c->sets[i].lock, flags);
		for (w = 0; w < L2C_WAYS; w++)
			*used += !!c->sets[i].way[w].key;
		spin_unlock_irqrestore(&c->sets[i].lock, flags);
	}
}

/* ---------------------------------------------------------------- */
/* The node                                                         */
/* ---------------------------------------------------------------- */

struct qcow2_c {
	struct bg_instance *inst;
	struct dm_dev *file;
	struct dm_dev *backing;		/* or NULL: unallocated reads zeros */
	struct qcow2_info qi;
	u64 *l1;			/* host-endian L2 table offsets */
	struct l2_cache cache;
	struct dm_io_client *io;
	struct bio_set bs;		/* for splits in the worker */
	u64 cache_arg;			/* l2_cache_size as given, or 0 */
};

/* Per bio: the worker item of a deferred bio. */
struct qcow2_io {
	struct work_struct work;
	struct qcow2_c *qc;
};

static struct workqueue_struct *qcow2_wq;

static const char *qcow2_name(struct qcow2_c *qc)
{
	return qc->inst->node->name;
}

static int qcow2_read_aligned(struct qcow2_c *qc, u64 off, void *buf, u64 len)
{
	struct dm_io_region region = {
		.bdev = qc->file->bdev,
		.sector = off >> SECTOR_SHIFT,
		.count = len >> SECTOR_SHIFT,
	};
	struct dm_io_request req = {
		.bi_opf = REQ_OP_READ | REQ_SYNC,
		.mem.type = is_vmalloc_addr(buf) ? DM_IO_VMA : DM_IO_KMEM,
		.mem.ptr.addr = buf,	/* .vma shares the union */
		.client = qc->io,
	};

	return dm_io(&req, 1, &region, NULL, IOPRIO_DEFAULT);
}

/*
 * Read @len bytes at byte @off of the file device into @buf (kmalloc or
 * vmalloc memory), synchronously with dm-io; bytes past the device's end
 * read as zeros.  A range that is not aligned to the file device's
 * logical block size (a compressed cluster, or a 512-byte header read on
 * a 4Kn disk) goes through a bounce buffer: the block layer fails
 * misaligned bios.  Sleeps; not from map().
 */
static int qcow2_read(struct qcow2_c *qc, u64 off, void *buf, u64 len)
{
	u64 dev = bdev_nr_bytes(qc->file->bdev);
	u32 lbs = bdev_logical_block_size(qc->file->bdev);
	u64 start, end;
	u8 *bounce;
	int r;

	if (off >= dev) {
		memset(buf, 0, len);
		return 0;
	}
	if (len > dev - off) {
		memset(buf + (dev - off), 0, len - (dev - off));
		len = dev - off;
	}
	if (IS_ALIGNED(off | len, lbs))
		return qcow2_read_aligned(qc, off, buf, len);

	start = round_down(off, lbs);
	end = min(round_up(off + len, lbs), dev);
	bounce = kvmalloc(end - start, GFP_NOIO);
	if (!bounce)
		return -ENOMEM;
	r = qcow2_read_aligned(qc, start, bounce, end - start);
	if (!r)
		memcpy(buf, bounce + (off - start), len);
	kvfree(bounce);
	return r;
}

/*
 * qcow2_lookup() - the first extent of guest range [@off, @off + @len),
 * resolved against the backing child: BACKING past the backing child's
 * end, or without one, becomes ZERO.  With @may_load (worker only) a
 * missing L2 slice is read in; without, a miss returns -EWOULDBLOCK.
 */
static int qcow2_lookup(struct qcow2_c *qc, u64 off, u64 len,
			bool may_load, struct qcow2_extent *ext)
{
	const struct qcow2_info *qi = &qc->qi;
	u32 words = qi->l2_entry_words;
	u32 slice_entries = qc->cache.slice_bytes / (8 * words);
	u64 l2_off = qc->l1[qcow2_l1_index(qi, off)];
	u64 entries[MAP_MAX_ENTRIES * 2];
	u64 l2i, slice_off, last, n;
	u32 pos;
	void *raw;
	int r;

	if (!l2_off) {
		/* No L2 table: the whole range it would map is unallocated. */
		u64 span = qi->cluster_size << qi->l2_bits;

		ext->type = QCOW2_MAP_BACKING;
		ext->len = min(len, span - (off & (span - 1)));
		goto resolve;
	}

	l2i = qcow2_l2_index(qi, off);
	slice_off = l2_off + (l2i / slice_entries) * qc->cache.slice_bytes;
	pos = (l2i % slice_entries) * 8 * words;
	last = (off + len - 1) >> qi->cluster_bits;
	n = min3(last - (off >> qi->cluster_bits) + 1,
		 (u64)(slice_entries - l2i % slice_entries),
		 (u64)MAP_MAX_ENTRIES);

	if (!l2c_lookup(&qc->cache, slice_off, pos, n * words, entries)) {
		if (!may_load)
			return -EWOULDBLOCK;
		raw = kmalloc(qc->cache.slice_bytes, GFP_NOIO);
		if (!raw)
			return -ENOMEM;
		r = qcow2_read(qc, slice_off, raw, qc->cache.slice_bytes);
		if (r) {
			kfree(raw);
			DMERR_LIMIT("%s: cannot read L2 table at %llu: %d",
				    qcow2_name(qc), slice_off, r);
			return r;
		}
		this_cpu_inc(qc->cache.stats->misses);
		l2c_insert(&qc->cache, slice_off, raw);
		l2c_decode(raw + pos, n * words, entries);
		kfree(raw);
	}
	qcow2_map(qi, entries, n, off, len, ext);

resolve:
	if (ext->type == QCOW2_MAP_BACKING) {
		u64 end = qc->backing ? bdev_nr_bytes(qc->backing->bdev) : 0;

		if (off >= end)
			ext->type = QCOW2_MAP_ZERO;
		else
			ext->len = min(ext->len, end - off);
	}
	return 0;
}

/* ---------------------------------------------------------------- */
/* Bio helpers                                                      */
/* ---------------------------------------------------------------- */

static void qcow2_remap(struct bio *bio, struct dm_dev *dev, u64 off)
{
	bio_set_dev(bio, dev->bdev);
	bio->bi_iter.bi_sector = off >> SECTOR_SHIFT;
}

static void qcow2_bad_entry(struct qcow2_c *qc, u64 off,
			    const struct qcow2_extent *ext)
{
	DMERR_LIMIT("%s: bad L2 entry for guest offset %llu: %s",
		    qcow2_name(qc), off, ext->error);
}

/* Copy @len bytes of @src into @bio, which covers exactly @len bytes. */
static void qcow2_copy_to_bio(struct bio *bio, const u8 *src)
{
	struct bvec_iter iter;
	struct bio_vec bv;

	bio_for_each_segment(bv, bio, iter) {
		memcpy_to_bvec(&bv, src);
		src += bv.bv_len;
	}
}

static int qcow2_inflate(const u8 *in, u64 in_len, u8 *out, u64 out_len)
{
	struct z_stream_s strm = {};
	int r, ret = -EIO;

	strm.workspace = kvmalloc(zlib_inflate_workspacesize(), GFP_NOIO);
	if (!strm.workspace)
		return -ENOMEM;
	/* Raw deflate, as QEMU writes it (its window is 4 KiB). */
	if (zlib_inflateInit2(&strm, -MAX_WBITS) != Z_OK)
		goto out;
	strm.next_in = in;
	strm.avail_in = in_len;
	strm.next_out = out;
	strm.avail_out = out_len;
	r = zlib_inflate(&strm, Z_FINISH);
	/* QEMU's rule: the cluster must be filled; trailing input is padding. */
	if ((r == Z_STREAM_END || r == Z_BUF_ERROR) && !strm.avail_out)
		ret = 0;
	zlib_inflateEnd(&strm);
out:
	kvfree(strm.workspace);
	return ret;
}

static int qcow2_unzstd(const u8 *in, u64 in_len, u8 *out, u64 out_len)
{
	size_t wsize = zstd_dctx_workspace_bound();
	size_t frame, done;
	zstd_dctx *dctx;
	void *ws;
	int ret = -EIO;

	/* One frame, then sector padding: decompress just the frame. */
	frame = zstd_find_frame_compressed_size(in, in_len);
	if (zstd_is_error(frame))
		return -EIO;
	ws = kvmalloc(wsize, GFP_NOIO);
	if (!ws)
		return -ENOMEM;
	dctx = zstd_init_dctx(ws, wsize);
	if (dctx) {
		done = zstd_decompress_dctx(dctx, out, out_len, in, frame);
		if (!zstd_is_error(done) && done == out_len)
			ret = 0;
	}
	kvfree(ws);
	return ret;
}

/*
 * Read a compressed cluster, decompress it and copy the part @bio covers
 * (guest offset @off) into it.  Worker context.
 */
static int qcow2_read_compressed(struct qcow2_c *qc, struct bio *bio, u64 off,
				 const struct qcow2_extent *ext)
{
	u64 cs = qc->qi.cluster_size;
	u64 start = round_down(ext->host_off, SECTOR_SIZE);
	u64 skip = ext->host_off - start;
	u64 rlen = round_up(skip + ext->csize, SECTOR_SIZE);
	u8 *in, *out;
	int r = -ENOMEM;

	in = kvmalloc(rlen, GFP_NOIO);
	out = kvmalloc(cs, GFP_NOIO);
	if (!in || !out)
		goto out;
	r = qcow2_read(qc, start, in, rlen);
	if (r)
		goto out;
	if (qc->qi.compression_type == QCOW2_COMPRESSION_ZSTD)
		r = qcow2_unzstd(in + skip, ext->csize, out, cs);
	else
		r = qcow2_inflate(in + skip, ext->csize, out, cs);
	if (r) {
		DMERR_LIMIT("%s: cannot decompress the cluster at %llu for guest offset %llu",
			    qcow2_name(qc), ext->host_off, off);
		goto out;
	}
	qcow2_copy_to_bio(bio, out + (off & (cs - 1)));
out:
	kvfree(out);
	kvfree(in);
	return r;
}

/* ---------------------------------------------------------------- */
/* Background work                                                  */
/* ---------------------------------------------------------------- */

static void qcow2_end(struct bio *bio, int r)
{
	bio->bi_status = errno_to_blk_status(r);
	bio_endio(bio);
}

/* Carry out one extent that covers all of @bio.  Worker context. */
static void qcow2_do_extent(struct qcow2_c *qc, struct bio *bio, u64 off,
			    const struct qcow2_extent *ext)
{
	switch (ext->type) {
	case QCOW2_MAP_DATA:
		qcow2_remap(bio, qc->file, ext->host_off);
		submit_bio_noacct(bio);
		break;
	case QCOW2_MAP_BACKING:
		qcow2_remap(bio, qc->backing, off);
		submit_bio_noacct(bio);
		break;
	case QCOW2_MAP_ZERO:
		zero_fill_bio(bio);
		bio_endio(bio);
		break;
	case QCOW2_MAP_COMPRESSED:
		qcow2_end(bio, qcow2_read_compressed(qc, bio, off, ext));
		break;
	case QCOW2_MAP_INVALID:
		qcow2_bad_entry(qc, off, ext);
		qcow2_end(bio, -EIO);
		break;
	}
}

/*
 * A deferred bio: look it up extent by extent, loading L2 slices as
 * needed, and split it where the mapping changes.  The pieces are chained
 * to the bio, which completes when the last of them does.
 */
static void qcow2_work(struct work_struct *work)
{
	struct qcow2_io *io = container_of(work, struct qcow2_io, work);
	struct bio *bio = dm_bio_from_per_bio_data(io, sizeof(*io));
	struct qcow2_c *qc = io->qc;
	unsigned int noio = memalloc_noio_save();
	struct qcow2_extent ext;
	struct blk_plug plug;
	struct bio *piece;
	u64 off;
	int r;

	blk_start_plug(&plug);
	do {
		off = (u64)dm_target_offset(qc->inst->ti,
					    bio->bi_iter.bi_sector) << SECTOR_SHIFT;
		r = qcow2_lookup(qc, off, bio->bi_iter.bi_size, true, &ext);
		if (r) {
			qcow2_end(bio, r);
			break;
		}
		piece = bio;
		if (ext.type != QCOW2_MAP_INVALID &&
		    ext.len < bio->bi_iter.bi_size) {
			piece = bio_split(bio, ext.len >> SECTOR_SHIFT,
					  GFP_NOIO, &qc->bs);
			bio_chain(piece, bio);
		}
		qcow2_do_extent(qc, piece, off, &ext);
	} while (piece != bio);
	blk_finish_plug(&plug);
	memalloc_noio_restore(noio);
}

static int qcow2_defer(struct qcow2_c *qc, struct bio *bio)
{
	struct qcow2_io *io = dm_per_bio_data(bio, sizeof(*io));

	if (bio->bi_opf & REQ_NOWAIT) {
		bio_wouldblock_error(bio);
		return DM_MAPIO_SUBMITTED;
	}
	io->qc = qc;
	INIT_WORK(&io->work, qcow2_work);
	queue_work(qcow2_wq, &io->work);
	return DM_MAPIO_SUBMITTED;
}

/* ---------------------------------------------------------------- */
/* Target methods                                                   */
/* ---------------------------------------------------------------- */

static int qcow2_map_bio(struct dm_target *ti, struct bio *bio)
{
	struct qcow2_c *qc = ti->private;
	struct qcow2_extent ext;
	u64 off;

	if (unlikely(!bio_sectors(bio))) {
		/* An empty flush: the file device holds everything. */
		bio_set_dev(bio, qc->file->bdev);
		return DM_MAPIO_REMAPPED;
	}
	if (unlikely(bio_data_dir(bio) == WRITE))
		return DM_MAPIO_KILL;	/* read-only in this version */

	off = (u64)dm_target_offset(ti, bio->bi_iter.bi_sector) << SECTOR_SHIFT;
	if (qcow2_lookup(qc, off, bio->bi_iter.bi_size, false, &ext))
		return qcow2_defer(qc, bio);

	switch (ext.type) {
	case QCOW2_MAP_DATA:
		dm_accept_partial_bio(bio, ext.len >> SECTOR_SHIFT);
		qcow2_remap(bio, qc->file, ext.host_off);
		return DM_MAPIO_REMAPPED;
	case QCOW2_MAP_BACKING:
		dm_accept_partial_bio(bio, ext.len >> SECTOR_SHIFT);
		qcow2_remap(bio, qc->backing, off);
		return DM_MAPIO_REMAPPED;
	case QCOW2_MAP_ZERO:
		dm_accept_partial_bio(bio, ext.len >> SECTOR_SHIFT);
		zero_fill_bio(bio);
		bio_endio(bio);
		return DM_MAPIO_SUBMITTED;
	case QCOW2_MAP_COMPRESSED:
		dm_accept_partial_bio(bio, ext.len >> SECTOR_SHIFT);
		return qcow2_defer(qc, bio);
	case QCOW2_MAP_INVALID:
	default:
		qcow2_bad_entry(qc, off, &ext);
		return DM_MAPIO_KILL;
	}
}

/*
 * Status.
 * INFO:  <l2_hits> <l2_misses> <slices_used> <slices_total> <flags>
 *        flags: "-", or a comma list of dirty and corrupt (the image's
 *        header bits).
 * TABLE: the table line, with only the options that were given.
 * IMA:   target_name, target_version, file_device, backing_device,
 *        l2_cache_size.
 */
static void qcow2_status(struct dm_target *ti, status_type_t type,
			 unsigned int status_flags, char *result,
			 unsigned int maxlen)
{
	struct qcow2_c *qc = ti->private;
	unsigned int nopt = 2 * !!qc->backing + 2 * !!qc->cache_arg;
	u64 hits, misses, used;
	unsigned int sz = 0;

	switch (type) {
	case STATUSTYPE_INFO:
		l2c_counts(&qc->cache, &hits, &misses, &used);
		DMEMIT("%llu %llu %llu %llu ", hits, misses, used,
		       (u64)qc->cache.nsets * L2C_WAYS);
		if (!qc->qi.dirty && !qc->qi.corrupt)
			DMEMIT("-");
		else
			DMEMIT("%s%s%s", qc->qi.dirty ? "dirty" : "",
			       qc->qi.dirty && qc->qi.corrupt ? "," : "",
			       qc->qi.corrupt ? "corrupt" : "");
		break;
	case STATUSTYPE_TABLE:
		DMEMIT("%s", qc->file->name);
		if (nopt)
			DMEMIT(" %u", nopt);
		if (qc->backing)
			DMEMIT(" backing %s", qc->backing->name);
		if (qc->cache_arg)
			DMEMIT(" l2_cache_size %llu", qc->cache_arg);
		break;
	case STATUSTYPE_IMA:
		DMEMIT_TARGET_NAME_VERSION(ti->type);
		DMEMIT(",file_device=%s,backing_device=%s,l2_cache_size=%llu;",
		       qc->file->name, qc->backing ? qc->backing->name : "",
		       (u64)qc->cache.nsets * L2C_WAYS * qc->cache.slice_bytes);
		break;
	}
}

static int qcow2_iterate_devices(struct dm_target *ti,
				 iterate_devices_callout_fn fn, void *data)
{
	struct qcow2_c *qc = ti->private;
	int r;

	/* The children are not linear maps of the node: their whole size. */
	r = fn(ti, qc->file, 0, bdev_nr_sectors(qc->file->bdev), data);
	if (!r && qc->backing && bdev_nr_sectors(qc->backing->bdev))
		r = fn(ti, qc->backing, 0, bdev_nr_sectors(qc->backing->bdev),
		       data);
	return r;
}

static void qcow2_resume(struct dm_target *ti)
{
	struct qcow2_c *qc = ti->private;

	bg_instance_resume(qc->inst);
}

/* ---------------------------------------------------------------- */
/* Constructor helpers                                              */
/* ---------------------------------------------------------------- */

/* Read the header cluster and parse it into qc->qi. */
static int qcow2_load_header(struct qcow2_c *qc, char **error)
{
	u64 file_size = bdev_nr_bytes(qc->file->bdev);
	const char *why = NULL;
	u32 cluster_bits;
	u64 len;
	u8 *buf;
	int r;

	if (file_size < SECTOR_SIZE) {
		*error = "file device too small for a qcow2 header";
		return -EINVAL;
	}
	buf = kmalloc(SECTOR_SIZE, GFP_KERNEL);
	if (!buf) {
		*error = "Cannot allocate the header buffer";
		return -ENOMEM;
	}
	r = qcow2_read(qc, 0, buf, SECTOR_SIZE);
	if (r) {
		*error = "Cannot read the image header";
		goto out;
	}
	r = qcow2_probe(buf, SECTOR_SIZE, &cluster_bits, &why);
	if (r)
		goto out_why;
	len = min(file_size, 1ULL << cluster_bits);
	kfree(buf);
	buf = kvmalloc(len, GFP_KERNEL);
	if (!buf) {
		*error = "Cannot allocate the header buffer";
		return -ENOMEM;
	}
	r = qcow2_read(qc, 0, buf, len);
	if (r) {
		*error = "Cannot read the image header";
		goto out;
	}
	r = qcow2_parse_header(buf, len, file_size, &qc->qi, &why);
	if (r == -EOPNOTSUPP && qc->qi.unknown_name[0])
		DMERR("%s: unknown incompatible feature bit %u: %s",
		      qcow2_name(qc), qc->qi.unknown_bit, qc->qi.unknown_name);
out_why:
	if (r)
		*error = (char *)why;
out:
	kvfree(buf);
	return r;
}

/*
 * Read a table of @n entries at @off and decode it with
 * qcow2_load_table() into a new array at *@out.
 */
static int qcow2_load_one_table(struct qcow2_c *qc, u64 off, u32 n, bool l1,
				u64 **out, char **error)
{
	u64 bytes = round_up((u64)n * 8, SECTOR_SIZE);
	const char *why;
	u32 bad;
	u8 *raw;
	int r;

	*out = kvcalloc(max(n, 1u), sizeof(u64), GFP_KERNEL);
	raw = kvmalloc(max_t(u64, bytes, SECTOR_SIZE), GFP_KERNEL);
	if (!*out || !raw) {
		*error = "Cannot allocate the image tables";
		r = -ENOMEM;
		goto out;
	}
	if (!n) {
		r = 0;
		goto out;
	}
	r = qcow2_read(qc, off, raw, bytes);
	if (r) {
		*error = "Cannot read the image tables";
		goto out;
	}
	r = qcow2_load_table(&qc->qi, raw, n, l1, *out, &bad, &why);
	if (r) {
		DMERR("%s: %s table entry %u is bad", qcow2_name(qc),
		      l1 ? "L1" : "refcount", bad);
		*error = (char *)why;
	}
out:
	kvfree(raw);
	return r;
}

/* Load the L1 table and check that no metadata overlaps. */
static int qcow2_load_tables(struct qcow2_c *qc, char **error)
{
	const struct qcow2_info *qi = &qc->qi;
	struct qcow2_range *scratch = NULL;
	const char *why;
	u64 *reftable;
	u64 n;
	int r;

	r = qcow2_load_one_table(qc, qi->l1_offset, qi->l1_size, true,
				 &qc->l1, error);
	if (r)
		return r;
	r = qcow2_load_one_table(qc, qi->reftable_offset,
				 qcow2_reftable_bytes(qi) / 8, false,
				 &reftable, error);
	if (r)
		goto out;
	n = qcow2_overlap_ranges(qi, qc->l1, reftable);
	scratch = kvmalloc_array(n, sizeof(*scratch), GFP_KERNEL);
	if (!scratch) {
		*error = "Cannot allocate the overlap check";
		r = -ENOMEM;
		goto out;
	}
	r = qcow2_check_overlaps(qi, qc->l1, reftable, scratch, n, &why);
	if (r)
		*error = (char *)why;
out:
	kvfree(scratch);
	kvfree(reftable);
	return r;
}

/* ---------------------------------------------------------------- */
/* Constructor and destructor                                       */
/* ---------------------------------------------------------------- */

static void qcow2_free(struct qcow2_c *qc)
{
	l2c_exit(&qc->cache);
	bioset_exit(&qc->bs);
	if (qc->io)
		dm_io_client_destroy(qc->io);
	kvfree(qc->l1);
	if (!IS_ERR_OR_NULL(qc->inst))
		bg_instance_destroy(qc->inst);	/* puts the children */
	kfree(qc);
}

static int qcow2_ctr(struct dm_target *ti, unsigned int argc, char **argv)
{
	struct bg_qcow2_args args;
	const char *error = NULL;
	struct qcow2_c *qc;
	u64 cache;
	u32 slice;
	int r;

	if (argc < 1) {
		ti->error = "Invalid argument count: <file_dev> [<#opt_args> <opt_args>...]";
		return -EINVAL;
	}
	r = bg_qcow2_parse_opts(argc - 1, argv + 1, &args, &error);
	if (r) {
		ti->error = (char *)error;
		return r;
	}
	if (dm_table_get_mode(ti->table) & BG_OPEN_WRITE) {
		ti->error = "Writing is not supported yet: load the table read-only";
		return -EROFS;
	}

	qc = kzalloc(sizeof(*qc), GFP_KERNEL);
	if (!qc) {
		ti->error = "Cannot allocate the qcow2 context";
		return -ENOMEM;
	}
	qc->cache_arg = args.l2_cache_size;

	qc->inst = bg_instance_create(ti, "qcow2");
	if (IS_ERR(qc->inst)) {
		r = PTR_ERR(qc->inst);
		goto out;
	}
	r = bg_instance_add_child(qc->inst, argv[0], BG_ROLE_FILE, 0,
				  &qc->file);
	if (r)
		goto out;
	if (args.backing) {
		r = bg_instance_add_child(qc->inst, args.backing,
					  BG_ROLE_BACKING, 0, &qc->backing);
		if (r)
			goto out;
	}

	qc->io = dm_io_client_create();
	if (IS_ERR(qc->io)) {
		r = PTR_ERR(qc->io);
		qc->io = NULL;
		ti->error = "Cannot create the dm-io client";
		goto out;
	}
	r = qcow2_load_header(qc, &ti->error);
	if (r)
		goto out;
	if (qc->qi.cluster_size < bdev_logical_block_size(qc->file->bdev)) {
		/* A cluster could not be remapped without a bounce copy. */
		ti->error = "Cluster size is smaller than the file device's logical block size";
		r = -EINVAL;
		goto out;
	}
	if (ti->len > DIV_ROUND_UP(qc->qi.size, SECTOR_SIZE)) {
		ti->error = "Target length is larger than the image's virtual size";
		r = -EINVAL;
		goto out;
	}
	r = qcow2_load_tables(qc, &ti->error);
	if (r)
		goto out;

	slice = min_t(u64, qc->qi.cluster_size, L2C_MAX_SLICE);
	/*
	 * By default, twice what maps the whole image (within QEMU's cap):
	 * slices hash unevenly into the sets, and an exact fit would evict.
	 */
	cache = args.l2_cache_size ?:
		min_t(u64, 2 * qcow2_default_l2_cache(&qc->qi, L2C_MIN_SLICES * slice),
		      QCOW2_MAX_L2_CACHE);
	r = l2c_init(&qc->cache, slice, cache);
	if (!r)
		r = bioset_init(&qc->bs, BIO_POOL_SIZE, 0, 0);
	if (r) {
		ti->error = "Cannot allocate the L2 cache";
		goto out;
	}
	if (qc->qi.tables_past_end)
		DMINFO("%s: image tables run past the end of the file device, reading zeros there",
		       qcow2_name(qc));
	if (qc->qi.corrupt || qc->qi.dirty)
		DMWARN("%s: image is marked %s; reading only", qcow2_name(qc),
		       qc->qi.corrupt ? "corrupt" : "dirty");

	ti->num_flush_bios = 1;
	ti->per_io_data_size = sizeof(struct qcow2_io);
	ti->private = qc;
	return 0;

out:
	qcow2_free(qc);
	return r;
}

static void qcow2_dtr(struct dm_target *ti)
{
	qcow2_free(ti->private);
}

static struct target_type qcow2_target = {
	.name		= "bgraph-qcow2",
	.version	= {1, 0, 0},
	.features	= DM_TARGET_NOWAIT,
	.module		= THIS_MODULE,
	.ctr		= qcow2_ctr,
	.dtr		= qcow2_dtr,
	.map		= qcow2_map_bio,
	.status		= qcow2_status,
	.iterate_devices = qcow2_iterate_devices,
	.resume		= qcow2_resume,
};

int bg_qcow2_init(void)
{
	int r;

	qcow2_wq = alloc_workqueue("bgraph-qcow2", WQ_MEM_RECLAIM | WQ_UNBOUND,
				   0);
	if (!qcow2_wq)
		return -ENOMEM;
	r = dm_register_target(&qcow2_target);
	if (r)
		destroy_workqueue(qcow2_wq);
	return r;
}

void bg_qcow2_exit(void)
{
	dm_unregister_target(&qcow2_target);
	destroy_workqueue(qcow2_wq);
}
