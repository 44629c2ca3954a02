// SPDX-License-Identifier: GPL-2.0
/*
 * bgraph-qcow2: the write path: copy-on-write of one cluster,
 * allocating writes started in map() or by the worker, writes held for
 * lack of space, and the worker that carries out deferred bios.
 */
#include <linux/slab.h>
#include <linux/sched/mm.h>

#include "qcow2.h"

/* ---------------------------------------------------------------- */
/* Guest clusters in flight                                         */
/* ---------------------------------------------------------------- */

/**
 * qcow2_inflight_busy() - whether a write to a guest cluster is in flight
 * @img: the node
 * @cluster: guest cluster index
 *
 * Writes that need copy-on-write, and allocations, of one guest cluster
 * run one at a time.
 *
 * Context: process context (takes inflight_lock with interrupts off).
 * Return: true while one is.
 */
bool qcow2_inflight_busy(struct qcow2_image *img, u64 cluster)
{
	struct qcow2_inflight *f;
	bool busy = false;

	spin_lock_irq(&img->inflight_lock);
	list_for_each_entry(f, &img->inflight, list)
		busy |= f->cluster == cluster;
	spin_unlock_irq(&img->inflight_lock);
	return busy;
}

/**
 * qcow2_inflight_add() - mark a guest cluster in flight
 * @img: the node
 * @f: its entry, .cluster set; on the list until qcow2_inflight_del()
 *
 * Context: meta_lock held (the check and the add are one step).
 */
void qcow2_inflight_add(struct qcow2_image *img, struct qcow2_inflight *f)
{
	spin_lock_irq(&img->inflight_lock);
	list_add(&f->list, &img->inflight);
	spin_unlock_irq(&img->inflight_lock);
}

/**
 * qcow2_inflight_del() - the write to a guest cluster has ended
 * @img: the node
 * @f: the entry qcow2_inflight_add() put on the list
 *
 * Wakes the writes waiting for the cluster.
 *
 * Context: any (an allocation from map() ends in its write's completion).
 */
void qcow2_inflight_del(struct qcow2_image *img, struct qcow2_inflight *f)
{
	unsigned long flags;

	spin_lock_irqsave(&img->inflight_lock, flags);
	list_del(&f->list);
	spin_unlock_irqrestore(&img->inflight_lock, flags);
	if (wq_has_sleeper(&img->inflight_wq))
		wake_up_all(&img->inflight_wq);
}

/* ---------------------------------------------------------------- */
/* Writing: one cluster                                             */
/* ---------------------------------------------------------------- */

/* Copy @len bytes of @bio from its start to @dst (the bio is unchanged). */
static void qcow2_copy_from_bio(struct bio *bio, u8 *dst, u64 len)
{
	struct bvec_iter iter = bio->bi_iter;
	struct bio_vec bv;

	while (len) {
		bv = bio_iter_iovec(bio, iter);
		bv.bv_len = min_t(u64, bv.bv_len, len);
		memcpy_from_bvec(dst, &bv);
		dst += bv.bv_len;
		len -= bv.bv_len;
		bio_advance_iter_single(bio, &iter, bv.bv_len);
	}
}

/*
 * The cheap way to carry out a COW plan whose fill is all zeros, QEMU's
 * (handle_alloc_space()): one write-zeroes request zeroes bytes [wbegin,
 * wend) of the cluster without the zeros being sent, then only the
 * write's own blocks are written over it (a write-zeroes bio: nothing).
 * Both are on the device when it returns.  A new cluster @zeroed ahead
 * (qcow2_pz_work()) holds zeros already: only the write's blocks.
 * -EOPNOTSUPP: the fill is not all zeros or the device has no
 * write-zeroes; the caller writes the whole range instead.
 */
static int qcow2_zero_cow(struct qcow2_image *img, struct bio *bio, u64 off,
			  u64 len, const struct qcow2_wplan *p, u64 host,
			  bool zeroed)
{
	const unsigned int flags = BLKDEV_ZERO_NOUNMAP | BLKDEV_ZERO_NOFALLBACK;
	const struct qcow2_info *qi = &img->info;
	struct block_device *bdev = img->file->bdev;
	u64 base = off & ~(qi->cluster_size - 1), db, de;
	bool data = bio && bio_op(bio) == REQ_OP_WRITE, backing_zeros;
	u8 *buf;
	int r = 0;

	if (!zeroed &&
	    (READ_ONCE(img->no_zeroout) || !bdev_write_zeroes_sectors(bdev)))
		return -EOPNOTSUPP;
	backing_zeros = !img->backing ||
		base + p->wbegin >= bdev_nr_bytes(img->backing->bdev);
	if (!qcow2_plan_zero_fill(qi, p, off, len, img->lbs, backing_zeros,
				  &db, &de))
		return -EOPNOTSUPP;
	if (host + p->wend > bdev_nr_bytes(bdev))
		return -EIO;
	/*
	 * NOUNMAP, as QEMU asks (no BDRV_REQ_MAY_UNMAP): the cluster keeps
	 * its room (fallocate(ZERO_RANGE) on a loop device, not a hole).
	 * Nothing to zero when the write's blocks are the whole range.
	 */
	if (!zeroed && (!data || db > p->wbegin || de < p->wend))
		r = blkdev_issue_zeroout(bdev, (host + p->wbegin) >> SECTOR_SHIFT,
					 (p->wend - p->wbegin) >> SECTOR_SHIFT,
					 GFP_NOIO, flags);
	if (r == -EOPNOTSUPP)	/* a loop device over tmpfs on 6.1 */
		WRITE_ONCE(img->no_zeroout, true);
	if (r || !data)
		return r;
	buf = kvmalloc(de - db, GFP_NOIO);
	if (!buf)
		return -ENOMEM;
	off -= base;		/* within the cluster, from here on */
	memset(buf, 0, off - db);
	qcow2_copy_from_bio(bio, buf + (off - db), len);
	memset(buf + (off - db) + len, 0, de - off - len);
	r = qcow2_write(img, host + db, buf, de - db);
	kvfree(buf);
	return r;
}

/*
 * Fill bytes [wbegin, wend) of the cluster of guest offset @off from the
 * plan's sources, put the write's @len bytes (from @bio, or zeros) in and
 * write it all at @host + wbegin; when the fill is all zeros and the file
 * device can zero without being sent them, only the write's blocks are
 * written (qcow2_zero_cow()).  No lock: nobody else sees @host yet, or
 * its range is not allocated yet in the bitmap.
 */
static int qcow2_cow_write(struct qcow2_image *img, struct bio *bio, u64 off,
			   u64 len, const struct qcow2_wplan *p, u64 host,
			   bool zeroed)
{
	const struct qcow2_info *qi = &img->info;
	u64 cs = qi->cluster_size, ss = 1ULL << qi->subcluster_bits;
	u64 base = off & ~(cs - 1), wlen = p->wend - p->wbegin;
	u8 *buf, *cbuf = NULL, *dst;
	u32 sc;
	int r;

	r = qcow2_zero_cow(img, bio, off, len, p, host, zeroed);
	if (r != -EOPNOTSUPP)
		return r;
	r = -ENOMEM;
	buf = kvmalloc(wlen, GFP_NOIO);
	if (!buf)
		return r;
	for (sc = p->wbegin / ss; sc < p->wend / ss; sc++) {
		dst = buf + sc * ss - p->wbegin;
		switch (p->src[sc]) {
		case QCOW2_SRC_BACKING:
			if (img->backing) {
				r = qcow2_dev_read(img, img->backing->bdev,
						   base + sc * ss, dst, ss);
				if (r)
					goto out;
				break;
			}
			fallthrough;
		case QCOW2_SRC_NONE:
		case QCOW2_SRC_ZERO:
			memset(dst, 0, ss);
			break;
		case QCOW2_SRC_HOST:
			r = qcow2_read(img, p->src_host + sc * ss, dst, ss);
			if (r)
				goto out;
			break;
		case QCOW2_SRC_COMPRESSED:
			if (!cbuf) {
				cbuf = kvmalloc(cs, GFP_NOIO);
				r = cbuf ? qcow2_decompress(img, p->src_host,
							    p->src_csize, cbuf,
							    off) : -ENOMEM;
				if (r)
					goto out;
			}
			memcpy(dst, cbuf + sc * ss, ss);
			break;
		}
	}
	dst = buf + (off - base) - p->wbegin;
	if (bio && bio_op(bio) == REQ_OP_WRITE)
		qcow2_copy_from_bio(bio, dst, len);
	else
		memset(dst, 0, len);
	r = qcow2_write(img, host + p->wbegin, buf, wlen);
out:
	kvfree(cbuf);
	kvfree(buf);
	return r;
}

/* Write @len zero bytes at @host of the file device. */
static int qcow2_write_zeros(struct qcow2_image *img, u64 host, u64 len)
{
	u8 *buf = kvzalloc(len, GFP_NOIO);
	int r;

	if (!buf)
		return -ENOMEM;
	r = qcow2_write(img, host, buf, len);
	kvfree(buf);
	return r;
}

enum qcow2_wres {
	QCOW2_WR_DONE,		/* written (or nothing to do) */
	QCOW2_WR_INPLACE,	/* write the bio at *host */
};

/*
 * What to do with one cluster's piece of @bio: its own operation, but for
 * a write of zeros (detect_zeroes) that covers the whole cluster, which
 * becomes a write-zeroes (a zero cluster, the host cluster kept) or with
 * unmap a discard (freed, and marked zero over a backing child).  A
 * version 2 image with a backing child cannot mark a freed cluster zero:
 * it gets the write-zeroes, which writes zeros there.
 */
static enum req_op qcow2_cluster_op(struct qcow2_image *img, struct bio *bio,
				    bool whole)
{
	struct qcow2_io *io = dm_per_bio_data(bio, sizeof(*io));

	if (!io->zeroes || !whole)
		return bio_op(bio);
	if (img->io_opts.detect_zeroes == BG_DZ_UNMAP &&
	    (img->info.version >= 3 || !img->backing))
		return REQ_OP_DISCARD;
	return REQ_OP_WRITE_ZEROES;
}

/**
 * qcow2_write_cluster() - carry out a write within one cluster
 * @img: the node
 * @bio: a write, write-zeroes or discard
 * @off: its guest offset
 * @lenp: bytes of @bio from @off, within one cluster; with extended L2,
 *	cut to the run of subclusters allocated like the first
 * @host: set, for QCOW2_WR_INPLACE, to where to remap the write
 *
 * Writes to one guest cluster that need copy-on-write run one at a time.
 *
 * Context: worker; takes meta_lock, sleeps.
 * Return: QCOW2_WR_INPLACE for the caller to remap a write of an
 * allocated cluster we own; QCOW2_WR_DONE when it did it all; or a
 * negative errno (-ENOSPC: the file device is full).
 */
static int qcow2_write_cluster(struct qcow2_image *img, struct bio *bio, u64 off,
			       u64 *lenp, u64 *host)
{
	const struct qcow2_info *qi = &img->info;
	struct qcow2_inflight me = { .cluster = off >> qi->cluster_bits };
	u64 len = *lenp;
	bool whole = len == qi->cluster_size, zeroed = false;
	enum req_op op = qcow2_cluster_op(img, bio, whole);
	struct qcow2_wplan p;
	u64 ent[2] = {}, nent[2] = {}, foff, flen;
	const char *why = "invalid L2 entry";
	int r;

	mutex_lock(&img->meta_lock);
	while (qcow2_inflight_busy(img, me.cluster)) {
		mutex_unlock(&img->meta_lock);
		wait_event(img->inflight_wq, !qcow2_inflight_busy(img, me.cluster));
		mutex_lock(&img->meta_lock);
	}
	r = qcow2_mark_dirty(img);
	if (r)
		goto unlock;
	if (op == REQ_OP_DISCARD && !whole)
		goto unlock;	/* QEMU's rule: only whole clusters */
	r = qcow2_l2_get(img, off, ent);
	if (r)
		goto unlock;
	if ((op == REQ_OP_DISCARD || op == REQ_OP_WRITE_ZEROES) && whole) {
		r = qcow2_plan_zero(qi, ent, op == REQ_OP_DISCARD, !!img->backing,
				    &nent[0], &nent[1], &foff, &flen);
		if (r == -EOPNOTSUPP && op == REQ_OP_DISCARD) {
			/* Version 2: no zero flag; unallocated, then. */
			nent[0] = 0;
			nent[1] = 0;
			r = 0;
			foff = ent[0] & QCOW2_OFFSET_MASK;
			flen = foff ? qi->cluster_size : 0;
			if (ent[0] & QCOW2_OFLAG_COMPRESSED)
				qcow2_compressed_range(qi, ent[0], &foff, &flen);
		}
		if (!r) {
			r = qcow2_l2_set(img, off, nent);
			if (!r && flen)
				qcow2_unref_later(img, foff, flen);
			goto unlock;
		}
		if (r != -EOPNOTSUPP)
			goto bad;
		r = 0;		/* version 2 write-zeroes: write zeros */
	}

	if (qi->extended_l2 && (ent[0] & QCOW2_OFLAG_COPIED) &&
	    (ent[0] & QCOW2_OFFSET_MASK)) {
		/*
		 * Our cluster: subclusters already allocated may be written
		 * in place by other bios right now, so they are never read
		 * and written back here.  Do the run of subclusters that
		 * are (or are not) allocated like the first; the caller
		 * comes back for the rest.
		 */
		len = qcow2_subcluster_run(qi, ent[1], off, len);
		*lenp = len;
	}
	qcow2_plan_write(qi, ent, off, len, &p);
	qcow2_plan_align(qi, ent, img->lbs, &p);
	if (p.kind == QCOW2_W_INVALID) {
		why = p.error;
		goto bad;
	}
	if (p.kind == QCOW2_W_INPLACE) {
		*host = p.host + (off & (qi->cluster_size - 1));
		mutex_unlock(&img->meta_lock);
		if (op == REQ_OP_WRITE)
			return QCOW2_WR_INPLACE;
		/* Zeroes in place: the file device may not do write-zeroes. */
		return qcow2_write_zeros(img, *host, len) ?: QCOW2_WR_DONE;
	}
	if (p.alloc) {
		r = qcow2_alloc_how(img, host, false, &zeroed);
		if (r)
			goto unlock;
	} else {
		*host = p.host;
	}
	qcow2_inflight_add(img, &me);
	mutex_unlock(&img->meta_lock);

	r = qcow2_cow_write(img, bio, off, len, &p, *host, zeroed);

	mutex_lock(&img->meta_lock);
	if (!r) {
		nent[0] = p.new_entry | (p.alloc ? *host : 0);
		nent[1] = p.new_bitmap;
		r = qcow2_l2_set(img, off, nent);
	}
	if (r && p.alloc)
		qcow2_unref(img, *host, qi->cluster_size);	/* unreferenced */
	else if (!r && p.free_len)
		qcow2_unref_later(img, p.free_off, p.free_len);
	qcow2_inflight_del(img, &me);
	goto unlock;
bad:
	DMERR_LIMIT("%s: bad L2 entry for guest offset %llu: %s", qcow2_name(img),
		    off, why);
	r = -EIO;
unlock:
	mutex_unlock(&img->meta_lock);
	return r ?: QCOW2_WR_DONE;
}

/* ---------------------------------------------------------------- */
/* Writing: allocations started in map()                            */
/* ---------------------------------------------------------------- */

/*
 * Store the L2 entry of an allocation whose data is written, from that
 * write's completion (any context): only while no write-back runs, and
 * only if its slice is still cached.  False: the worker must.
 */
static bool qcow2_alloc_store(struct qcow2_image *img, struct qcow2_io *io)
{
	unsigned long flags;
	bool done = false;

	spin_lock_irqsave(&img->store_lock, flags);
	if (!img->stores_closed)
		done = qcow2_l2c_store(&img->cache, io->slice_off, io->pos,
				       img->info.l2_entry_words, io->nent);
	if (done)
		qcow2_touch(img);
	spin_unlock_irqrestore(&img->store_lock, flags);
	return done;
}

/*
 * The end of an allocation from map() that its completion could not do:
 * the write failed (the cluster is given back), or a write-back ran or
 * the slice was evicted (the entry is stored under meta_lock, its slice
 * read in again if need be).
 */
static void qcow2_alloc_done_work(struct work_struct *work)
{
	struct qcow2_io *io = container_of(work, struct qcow2_io, work);
	struct bio *bio = dm_bio_from_per_bio_data(io, sizeof(*io));
	struct qcow2_image *img = io->img;
	unsigned int noio = memalloc_noio_save();
	int r = blk_status_to_errno(io->status);

	if (!r && io->zero_refused) {
		/* A loop device over tmpfs on 6.1: write the zeros. */
		WRITE_ONCE(img->no_zeroout, true);
		if (io->db > io->wbegin)
			r = qcow2_write_zeros(img, io->host + io->wbegin,
					      io->db - io->wbegin);
		if (!r && io->wend > io->de)
			r = qcow2_write_zeros(img, io->host + io->de,
					      io->wend - io->de);
	}
	mutex_lock(&img->meta_lock);
	if (!r)
		r = qcow2_l2_set(img, io->off, io->nent);
	if (r)
		qcow2_unref(img, io->host, img->info.cluster_size);
	mutex_unlock(&img->meta_lock);
	qcow2_inflight_del(img, &io->me);
	memalloc_noio_restore(noio);
	qcow2_end(bio, r);
}

static void qcow2_alloc_endio(struct bio *cow)
{
	struct qcow2_io *io = cow->bi_private;
	struct bio *bio = dm_bio_from_per_bio_data(io, sizeof(*io));
	struct qcow2_image *img = io->img;

	if (cow->bi_status == BLK_STS_NOTSUPP &&
	    bio_op(cow) == REQ_OP_WRITE_ZEROES)
		WRITE_ONCE(io->zero_refused, true);
	else if (cow->bi_status)
		WRITE_ONCE(io->status, cow->bi_status);
	bio_put(cow);
	if (!atomic_dec_and_test(&io->pending))
		return;
	if (io->status || io->zero_refused || !qcow2_alloc_store(img, io)) {
		INIT_WORK(&io->work, qcow2_alloc_done_work);
		queue_work(img->done_wq, &io->work);
		return;
	}
	qcow2_inflight_del(img, &io->me);
	bio_endio(bio);
}

/* Add @len bytes of zeros (from the zero page) to @bio. */
static void qcow2_add_zeros(struct bio *bio, u64 len)
{
	u32 n;

	for (; len; len -= n) {
		n = min_t(u64, len, PAGE_SIZE);
		__bio_add_page(bio, ZERO_PAGE(0), n, 0);
	}
}

/*
 * An allocating write whose fill is all zeros, started without waiting
 * for its data (QEMU's handle_alloc_space(), done with the bio's own
 * pages): the new cluster's bytes [wbegin, wend) are the bio's pages and,
 * around them, zeros: nothing when the cluster was zeroed ahead
 * (qcow2_pz_work()), else one write-zeroes bio each side when the file
 * device has write-zeroes (QEMU's way), else the zero page in the data's
 * bio, not a bounce buffer.  The ranges do not overlap, so the bios go out
 * together.  The last to end stores the L2 entry, as the worker does after
 * its write (the refcount is taken when planned, in memory).
 *
 * Two callers, each with its own lock discipline and allocation mode:
 * qcow2_start_alloc_map() from map(), only when all the metadata it needs
 * is in memory (meta_lock only tried, nothing sleeps, GFP_NOWAIT), and
 * qcow2_start_alloc_worker() from the worker, for a bio within one
 * cluster, after reading in or allocating what it needs (GFP_NOIO); the
 * worker is then free at once, not waiting for the data.  Both plan the
 * write under meta_lock (qcow2_alloc_plan()) and submit it without
 * (qcow2_alloc_submit()).
 */
struct qcow2_alloc_start {
	u64 len;		/* of the bio, within its cluster */
	u64 host;		/* the new cluster */
	u64 db, de;		/* the data's bytes in the cluster */
	u64 zoff[2], zlen[2];	/* the zeros before and after the data */
	struct qcow2_wplan p;
	struct bio *cow;	/* the data (and zeros, unless @wz) */
	struct bio *zb[2];	/* write-zeroes bios, or NULL */
	bool wz;		/* the zeros are not in @cow */
};

/*
 * The bytes of @bio at guest offset @off that one allocation may cover,
 * or 0 when it may not start one: not aligned to the file device, FUA or
 * a flush.
 */
static u64 qcow2_alloc_len(struct qcow2_image *img, struct bio *bio, u64 off)
{
	u64 cs = img->info.cluster_size;
	u64 len = min_t(u64, bio->bi_iter.bi_size, cs - (off & (cs - 1)));

	if (!IS_ALIGNED(off | len, img->lbs) ||
	    (bio->bi_opf & (REQ_FUA | REQ_PREFLUSH)))
		return 0;
	return len;
}

/**
 * qcow2_alloc_plan() - plan an allocating write and take what it needs
 * @img: the node
 * @bio: the write
 * @off: its guest offset
 * @ent: the cluster's L2 entry (and bitmap)
 * @gfp: for the bios: GFP_NOWAIT from map(), GFP_NOIO from the worker
 * @nowait: allocate the cluster without I/O or waiting
 * @a: @a->len set; filled in for qcow2_alloc_submit()
 *
 * Checks that the fill around the @a->len bytes of @bio is all zeros,
 * allocates the bios and the cluster, and marks the guest cluster in
 * flight.
 *
 * Context: meta_lock held; sleeps only if @gfp and !@nowait allow.
 * Return: true if planned; false, having allocated nothing, if the write
 * cannot start this way.
 */
static bool qcow2_alloc_plan(struct qcow2_image *img, struct bio *bio, u64 off,
			     const u64 *ent, gfp_t gfp, bool nowait,
			     struct qcow2_alloc_start *a)
{
	const struct qcow2_info *qi = &img->info;
	struct qcow2_io *io = dm_per_bio_data(bio, sizeof(*io));
	u64 base = off & ~(qi->cluster_size - 1);
	struct qcow2_wplan *p = &a->p;
	struct bvec_iter it;
	struct bio_vec bv;
	unsigned int k, nvecs;
	bool zeroed;

	a->wz = !READ_ONCE(img->no_zeroout) &&
		bdev_write_zeroes_sectors(img->file->bdev);
	qcow2_plan_write(qi, ent, off, a->len, p);
	qcow2_plan_align(qi, ent, img->lbs, p);
	if (p->kind != QCOW2_W_COW || !p->alloc || p->free_len ||
	    !qcow2_plan_zero_fill(qi, p, off, a->len, img->lbs,
				  !img->backing || base + p->wbegin >=
				  bdev_nr_bytes(img->backing->bdev),
				  &a->db, &a->de) ||
	    a->db != off - base || a->de != a->db + a->len)
		return false;
	a->zoff[0] = p->wbegin;
	a->zlen[0] = a->db - p->wbegin;
	a->zoff[1] = a->de;
	a->zlen[1] = p->wend - a->de;
	nvecs = a->wz ? 0 : DIV_ROUND_UP(a->zlen[0], PAGE_SIZE) +
			    DIV_ROUND_UP(a->zlen[1], PAGE_SIZE);
	it = bio->bi_iter;
	it.bi_size = a->len;
	__bio_for_each_segment(bv, bio, it, it)
		nvecs++;
	if (nvecs > BIO_MAX_VECS)
		return false;
	a->cow = bio_alloc_bioset(img->file->bdev, nvecs,
				  REQ_OP_WRITE | (bio->bi_opf & REQ_SYNC),
				  gfp, &img->cow_bs);
	if (!a->cow)
		return false;
	a->zb[0] = NULL;
	a->zb[1] = NULL;
	for (k = 0; a->wz && k < 2; k++) {
		if (!a->zlen[k])
			continue;
		a->zb[k] = bio_alloc_bioset(img->file->bdev, 0,
					    REQ_OP_WRITE_ZEROES | REQ_NOUNMAP,
					    gfp, &img->cow_bs);
		if (!a->zb[k])
			goto put;
	}
	if (qcow2_alloc_how(img, &a->host, nowait, &zeroed))
		goto put;	/* -ENOSPC too: the other path holds it */
	if (zeroed) {
		/*
		 * Zeroed ahead: the data's bio alone, laid out as when the
		 * device zeroes around it (wz), without those bios.
		 */
		for (k = 0; k < 2; k++) {
			if (a->zb[k])
				bio_put(a->zb[k]);
			a->zb[k] = NULL;
		}
		a->wz = true;
	}
	io->me.cluster = off >> qi->cluster_bits;
	qcow2_inflight_add(img, &io->me);
	return true;
put:
	for (k = 0; k < 2; k++)
		if (a->zb[k])
			bio_put(a->zb[k]);
	bio_put(a->cow);
	return false;
}

/**
 * qcow2_alloc_submit() - send the bios qcow2_alloc_plan() made ready
 * @img: the node
 * @bio: the write, which covers @a->len bytes now
 * @off: its guest offset
 * @a: the plan
 *
 * The last bio to end stores the L2 entry (qcow2_alloc_endio()).
 *
 * Context: any, no lock; never sleeps.
 */
static void qcow2_alloc_submit(struct qcow2_image *img, struct bio *bio, u64 off,
			       struct qcow2_alloc_start *a)
{
	struct qcow2_io *io = dm_per_bio_data(bio, sizeof(*io));
	struct bio *cow = a->cow;
	struct bvec_iter it;
	struct bio_vec bv;
	unsigned int k;

	io->img = img;
	io->off = off;
	io->host = a->host;
	io->nent[0] = a->p.new_entry | a->host;
	io->nent[1] = a->p.new_bitmap;
	io->status = BLK_STS_OK;
	io->zero_refused = false;
	io->db = a->db;
	io->de = a->de;
	io->wbegin = a->p.wbegin;
	io->wend = a->p.wend;
	atomic_set(&io->pending, 1 + !!a->zb[0] + !!a->zb[1]);
	cow->bi_iter.bi_sector = (a->host + (a->wz ? a->db : a->p.wbegin)) >>
				 SECTOR_SHIFT;
	cow->bi_ioprio = bio->bi_ioprio;
	if (!a->wz)
		qcow2_add_zeros(cow, a->zlen[0]);
	it = bio->bi_iter;
	__bio_for_each_segment(bv, bio, it, it)
		__bio_add_page(cow, bv.bv_page, bv.bv_len, bv.bv_offset);
	if (!a->wz)
		qcow2_add_zeros(cow, a->zlen[1]);
	cow->bi_private = io;
	cow->bi_end_io = qcow2_alloc_endio;
	for (k = 0; k < 2; k++) {
		if (!a->zb[k])
			continue;
		a->zb[k]->bi_iter.bi_sector = (a->host + a->zoff[k]) >>
					      SECTOR_SHIFT;
		a->zb[k]->bi_iter.bi_size = a->zlen[k];
		a->zb[k]->bi_private = io;
		a->zb[k]->bi_end_io = qcow2_alloc_endio;
		submit_bio_noacct(a->zb[k]);
	}
	submit_bio_noacct(cow);
}

/**
 * qcow2_start_alloc_map() - start an allocating write from map()
 * @img: the node
 * @bio: a write
 * @off: its guest offset
 *
 * Only when all the metadata it needs is in memory: the header's dirty
 * bit set already, the L2 table ours and its slice cached, a refcount
 * block cached.  The bio is cut to its first cluster.
 *
 * Context: map(); never sleeps: meta_lock is only tried, bios only
 * allocated if at hand (GFP_NOWAIT).
 * Return: true if started; false, having changed nothing, when the
 * worker must do it.
 */
bool qcow2_start_alloc_map(struct qcow2_image *img, struct bio *bio, u64 off)
{
	const struct qcow2_info *qi = &img->info;
	struct qcow2_io *io = dm_per_bio_data(bio, sizeof(*io));
	u32 i = qcow2_l1_index(qi, off);
	struct qcow2_alloc_start a;
	u64 ent[2] = {}, l2_off;

	a.len = qcow2_alloc_len(img, bio, off);
	if (!a.len || !mutex_trylock(&img->meta_lock))
		return false;
	/*
	 * Another allocation of this cluster first, then its L2 entry: one
	 * started here ends in its write's completion, which stores the
	 * entry and then leaves the in-flight list without meta_lock.  In
	 * the other order, the entry could be read before that store and
	 * the list after it, and the cluster be allocated twice (the first
	 * write lost).  inflight_lock orders the store before what follows.
	 */
	l2_off = qcow2_meta_l2_owned(img, i);
	/* The dirty bit set already, the L2 table ours and cached. */
	if (qcow2_meta_must_mark(img) || !l2_off ||
	    qcow2_inflight_busy(img, off >> qi->cluster_bits))
		goto no;
	qcow2_slice_pos(img, l2_off, off, &io->slice_off, &io->pos);
	if (!qcow2_l2c_lookup(&img->cache, io->slice_off, io->pos,
			      qi->l2_entry_words, ent) ||
	    !qcow2_alloc_plan(img, bio, off, ent, GFP_NOWAIT, true, &a))
		goto no;
	mutex_unlock(&img->meta_lock);
	dm_accept_partial_bio(bio, a.len >> SECTOR_SHIFT);
	qcow2_alloc_submit(img, bio, off, &a);
	return true;
no:
	mutex_unlock(&img->meta_lock);
	return false;
}

/**
 * qcow2_start_alloc_worker() - start an allocating write from the worker
 * @img: the node
 * @bio: a write within one cluster
 * @off: its guest offset
 *
 * As qcow2_start_alloc_map(), but the metadata it needs is read in or
 * allocated first; the worker is then free at once, not waiting for the
 * data.
 *
 * Context: worker; takes meta_lock, sleeps (GFP_NOIO).
 * Return: true if started; false, having allocated nothing, when
 * qcow2_write_bio()'s cluster by cluster path must do it.
 */
static bool qcow2_start_alloc_worker(struct qcow2_image *img, struct bio *bio,
				     u64 off)
{
	struct qcow2_alloc_start a;
	u64 ent[2] = {};
	struct qcow2_io *io = dm_per_bio_data(bio, sizeof(*io));
	const struct qcow2_info *qi = &img->info;

	a.len = qcow2_alloc_len(img, bio, off);
	if (!a.len || a.len != bio->bi_iter.bi_size)
		return false;
	/* The in-flight check first: see qcow2_start_alloc_map(). */
	mutex_lock(&img->meta_lock);
	if (qcow2_inflight_busy(img, off >> qi->cluster_bits) ||
	    qcow2_mark_dirty(img) || qcow2_l2_get(img, off, ent))
		goto no;	/* the other path waits, or fails it */
	qcow2_slice_pos(img, qcow2_meta_l2_table(img, off), off,
			&io->slice_off, &io->pos);
	if (!qcow2_alloc_plan(img, bio, off, ent, GFP_NOIO, false, &a))
		goto no;
	mutex_unlock(&img->meta_lock);
	qcow2_alloc_submit(img, bio, off, &a);
	return true;
no:
	mutex_unlock(&img->meta_lock);
	return false;
}

/* ---------------------------------------------------------------- */
/* Writing: bios, and writes held for lack of space                 */
/* ---------------------------------------------------------------- */

/**
 * qcow2_set_mode() - move the node to another mode (enum qcow2_mode)
 * @img: the node
 * @mode: the new mode
 *
 * The one place the mode changes.  Entering QCOW2_MODE_NO_SPACE must be
 * announced (a warning and a dm table event); dm_table_event() sleeps,
 * so the caller does it with qcow2_mode_announce() once held_lock is
 * dropped.
 *
 * Context: held_lock held; any context.
 * Return: true when the caller must call qcow2_mode_announce().
 */
bool qcow2_set_mode(struct qcow2_image *img, enum qcow2_mode mode)
{
	enum qcow2_mode old = img->mode;

	lockdep_assert_held(&img->held_lock);
	WRITE_ONCE(img->mode, mode);
	return mode == QCOW2_MODE_NO_SPACE && old != mode;
}

/**
 * qcow2_mode_announce() - tell user space the node entered NO_SPACE
 * @img: the node
 *
 * Context: process context, held_lock not held; may sleep.
 */
void qcow2_mode_announce(struct qcow2_image *img)
{
	DMWARN("%s: file device full: writes wait for it to grow and a resize message",
	       qcow2_name(img));
	dm_table_event(img->inst->ti->table);
}

static void qcow2_hold(struct qcow2_image *img, struct bio *bio,
		       struct qcow2_io *io)
{
	bool event = false, requeue = false, fail = false;

	qcow2_epoch_put(img, io);
	spin_lock(&img->held_lock);
	if (img->mode == QCOW2_MODE_SUSPENDED) {
		requeue = dm_noflush_suspending(img->inst->ti);
		fail = !requeue;
	} else {
		event = qcow2_set_mode(img, QCOW2_MODE_NO_SPACE);
		bio_list_add(&img->held, bio);
	}
	spin_unlock(&img->held_lock);
	if (requeue || fail) {
		bio->bi_status = requeue ? BLK_STS_DM_REQUEUE : BLK_STS_NOSPC;
		bio_endio(bio);
	}
	if (event)
		qcow2_mode_announce(img);
}

static void qcow2_work(struct work_struct *work);

/**
 * qcow2_release_held() - retry the writes held for room, or end them
 * @img: the node
 * @fail: end them with @st instead of retrying
 * @st: their status when @fail
 *
 * Leaves QCOW2_MODE_NO_SPACE for QCOW2_MODE_WRITE.
 *
 * Context: process context; takes held_lock.
 */
void qcow2_release_held(struct qcow2_image *img, bool fail, blk_status_t st)
{
	struct bio_list bios;
	struct bio *bio;

	spin_lock(&img->held_lock);
	bios = img->held;
	bio_list_init(&img->held);
	if (img->mode == QCOW2_MODE_NO_SPACE)
		qcow2_set_mode(img, QCOW2_MODE_WRITE);
	spin_unlock(&img->held_lock);
	while ((bio = bio_list_pop(&bios))) {
		struct qcow2_io *io = dm_per_bio_data(bio, sizeof(*io));

		if (fail) {
			bio->bi_status = st;
			bio_endio(bio);
			continue;
		}
		INIT_WORK(&io->work, qcow2_work);
		queue_work(img->wq, &io->work);
	}
}

/*
 * A deferred write, write-zeroes or discard, cluster by cluster: pieces
 * written in place are remapped and submitted; the others are done here
 * and end after the loop (after a write-back, for FUA).
 */
static void qcow2_write_bio(struct qcow2_image *img, struct bio *bio,
			    struct qcow2_io *io)
{
	u64 cs = img->info.cluster_size, off, len, host;
	bool fua = bio->bi_opf & REQ_FUA, cow = false, rest = true;
	struct bio_list done;
	struct bio *piece;
	int r = 0;

	bio_list_init(&done);
	if (fua || (bio->bi_opf & REQ_PREFLUSH)) {
		/* Metadata of clusters written in place must be durable too. */
		mutex_lock(&img->meta_lock);
		r = qcow2_writeback(img);
		mutex_unlock(&img->meta_lock);
		if (r)
			goto end;
	}
	off = (u64)dm_target_offset(img->inst->ti, bio->bi_iter.bi_sector) <<
	      SECTOR_SHIFT;
	if (bio_op(bio) == REQ_OP_WRITE && !fua && !io->zeroes &&
	    qcow2_start_alloc_worker(img, bio, off))
		return;
	do {
		off = (u64)dm_target_offset(img->inst->ti,
					    bio->bi_iter.bi_sector) << SECTOR_SHIFT;
		len = min_t(u64, bio->bi_iter.bi_size, cs - (off & (cs - 1)));
		r = qcow2_write_cluster(img, bio, off, &len, &host);
		if (r == -ENOSPC && !img->error_if_no_space) {
			while ((piece = bio_list_pop(&done)))
				bio_endio(piece);
			qcow2_hold(img, bio, io);
			return;
		}
		if (r < 0)
			goto end;	/* the rest of @bio is not written */
		piece = bio;
		if (len < bio->bi_iter.bi_size) {
			piece = bio_split(bio, len >> SECTOR_SHIFT, GFP_NOIO,
					  &img->bs);
			bio_chain(piece, bio);
		}
		if (r == QCOW2_WR_INPLACE) {
			qcow2_remap(piece, img->file, host);
			submit_bio_noacct(piece);
		} else {
			cow = true;
			bio_list_add(&done, piece);
		}
	} while (piece != bio);
	rest = false;
	if (!r && fua && cow) {
		mutex_lock(&img->meta_lock);
		r = qcow2_writeback(img);
		mutex_unlock(&img->meta_lock);
	}
end:
	while ((piece = bio_list_pop(&done))) {
		if (r < 0)
			piece->bi_status = errno_to_blk_status(r);
		bio_endio(piece);
	}
	if (rest)
		qcow2_end(bio, r);
}

/* Carry out one extent that covers all of @bio.  Worker context. */
static void qcow2_do_extent(struct qcow2_image *img, struct bio *bio, u64 off,
			    const struct qcow2_extent *ext)
{
	switch (ext->type) {
	case QCOW2_MAP_DATA:
		qcow2_remap(bio, img->file, ext->host_off);
		submit_bio_noacct(bio);
		break;
	case QCOW2_MAP_BACKING:
		qcow2_remap(bio, img->backing, off);
		submit_bio_noacct(bio);
		break;
	case QCOW2_MAP_ZERO:
		zero_fill_bio(bio);
		bio_endio(bio);
		break;
	case QCOW2_MAP_COMPRESSED:
		qcow2_end(bio, qcow2_read_compressed(img, bio, off, ext));
		break;
	case QCOW2_MAP_INVALID:
		qcow2_bad_entry(img, off, ext);
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
	struct qcow2_image *img = io->img;
	unsigned int noio = memalloc_noio_save();
	struct qcow2_extent ext;
	struct blk_plug plug;
	struct bio *piece;
	u64 off;
	int r;

	if (!bio_sectors(bio)) {
		/* A flush with metadata to write back. */
		qcow2_end(bio, qcow2_flush(img));
		goto out;
	}
	if (io->epoch < 0)
		qcow2_epoch_get(img, io);	/* a held write, retried */
	blk_start_plug(&plug);
	if (bio_data_dir(bio) == WRITE) {
		qcow2_write_bio(img, bio, io);
		goto unplug;
	}
	do {
		off = (u64)dm_target_offset(img->inst->ti,
					    bio->bi_iter.bi_sector) << SECTOR_SHIFT;
		r = qcow2_lookup(img, off, bio->bi_iter.bi_size, true, &ext);
		if (r) {
			qcow2_end(bio, r);
			break;
		}
		piece = bio;
		if (ext.type != QCOW2_MAP_INVALID &&
		    ext.len < bio->bi_iter.bi_size) {
			piece = bio_split(bio, ext.len >> SECTOR_SHIFT,
					  GFP_NOIO, &img->bs);
			bio_chain(piece, bio);
		}
		qcow2_do_extent(img, piece, off, &ext);
	} while (piece != bio);
unplug:
	blk_finish_plug(&plug);
out:
	memalloc_noio_restore(noio);
}

/**
 * qcow2_defer() - send a bio to the node's worker
 * @img: the node
 * @bio: a bio map() cannot serve now (an empty flush goes to flush_wq)
 *
 * Context: map(); never sleeps.  A REQ_NOWAIT bio ends with
 * BLK_STS_AGAIN instead.
 * Return: DM_MAPIO_SUBMITTED.
 */
int qcow2_defer(struct qcow2_image *img, struct bio *bio)
{
	struct qcow2_io *io = dm_per_bio_data(bio, sizeof(*io));

	if (bio->bi_opf & REQ_NOWAIT) {
		bio_wouldblock_error(bio);
		return DM_MAPIO_SUBMITTED;
	}
	io->img = img;
	INIT_WORK(&io->work, qcow2_work);
	queue_work(bio_sectors(bio) ? img->wq : img->flush_wq, &io->work);
	return DM_MAPIO_SUBMITTED;
}
