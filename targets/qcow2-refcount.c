// SPDX-License-Identifier: GPL-2.0
/*
 * bgraph-qcow2: the metadata engine, part two: the epochs that guard a
 * freed cluster, the refcount block cache, allocation (and growing the
 * refcount table), zeroing ahead of the allocator, and dropping
 * references.
 */
#include <linux/slab.h>
#include <linux/sched/mm.h>

#include "qcow2.h"

/* ---------------------------------------------------------------- */
/* Epochs, refcounts, allocation, zeroing ahead                    */
/* ---------------------------------------------------------------- */

void qcow2_epoch_get(struct qcow2_image *img, struct qcow2_io *io)
{
	int e = READ_ONCE(img->epoch) & 1;

	atomic_inc(&img->users[e]);
	/* Count before looking at L2, so a free waits for this bio. */
	smp_mb__after_atomic();
	io->epoch = e;
}

void qcow2_epoch_put(struct qcow2_image *img, struct qcow2_io *io)
{
	if (io->epoch < 0)
		return;
	/*
	 * On brd every bio ends inside its own submission, so this count
	 * drops to zero bio after bio: look for a drainer before taking the
	 * wait queue's lock.  atomic_dec_and_test() is fully ordered, the
	 * barrier wq_has_sleeper() would add; it pairs with wait_event()'s.
	 */
	if (atomic_dec_and_test(&img->users[io->epoch]) &&
	    waitqueue_active(&img->drain_wq))	/* ordered: see above */
		wake_up_all(&img->drain_wq);
	io->epoch = -1;
}

/*
 * Wait until every bio that looked at L2 before now has completed: those
 * may still read or write a cluster whose last reference was just dropped
 * (flush_lock held, so epochs flip one at a time; not under meta_lock).
 */
void qcow2_epoch_drain(struct qcow2_image *img)
{
	unsigned int old = img->epoch & 1;

	WRITE_ONCE(img->epoch, img->epoch + 1);
	/* Pairs with qcow2_epoch_get(): new bios count in the new epoch. */
	smp_mb();
	wait_event(img->drain_wq, !atomic_read(&img->users[old]));
}

void qcow2_touch(struct qcow2_image *img)
{
	WRITE_ONCE(img->meta_dirty, true);
}

int qcow2_rb_write(struct qcow2_image *img, struct qcow2_rb *b)
{
	int r = qcow2_write(img, b->off, b->data, img->info.cluster_size);

	if (!r)
		b->dirty = false;
	return r;
}

/* The cached refcount block at @off, or NULL.  Under meta_lock. */
static struct qcow2_rb *qcow2_rb_find(struct qcow2_image *img, u64 off)
{
	u32 i;

	for (i = 0; i < img->rb_slots; i++) {
		if (img->rb[i].off == off) {
			img->rb[i].stamp = ++img->rb_clock;
			return &img->rb[i];
		}
	}
	return NULL;
}

/*
 * The cached refcount block at file offset @off: read in, or zeroed when
 * @fresh (a new block).  Evicts the least used slot, writing it first if
 * dirty (a refcount block may reach the file early: it only adds).
 * Under meta_lock.
 */
static struct qcow2_rb *qcow2_rb_get(struct qcow2_image *img, u64 off, bool fresh,
				     int *err)
{
	struct qcow2_rb *b = qcow2_rb_find(img, off), *victim = NULL;
	u32 i;

	if (b)
		return b;
	for (i = 0; i < img->rb_slots; i++) {
		b = &img->rb[i];
		if (!victim || !b->off ||
		    (victim->off && (s32)(b->stamp - victim->stamp) < 0))
			victim = b;
	}
	if (victim->off && victim->dirty) {
		*err = qcow2_rb_write(img, victim);
		if (*err)
			return NULL;
	}
	victim->off = 0;
	if (fresh) {
		memset(victim->data, 0, img->info.cluster_size);
	} else {
		*err = qcow2_read(img, off, victim->data, img->info.cluster_size);
		if (*err)
			return NULL;
	}
	victim->off = off;
	victim->dirty = false;
	victim->stamp = ++img->rb_clock;
	return victim;
}

/* Whether [@off, @off + cluster) is the header, the L1 or refcount table. */
static bool qcow2_is_fixed_metadata(struct qcow2_image *img, u64 off)
{
	const struct qcow2_info *qi = &img->info;
	u64 end = off + qi->cluster_size;

	return off < qi->cluster_size ||
	       (off < qi->l1_offset + qcow2_l1_bytes(qi) &&
		end > qi->l1_offset) ||
	       (off < qi->reftable_offset + qcow2_reftable_bytes(qi) &&
		end > qi->reftable_offset);
}

/**
 * qcow2_grow_reftable() - make a refcount table that covers cluster @c
 * @img: the node
 * @c: the first cluster index the table does not cover
 *
 * QEMU's way, in a self-describing area at the first cluster @c's range
 * would describe: a refcount block for that range, then the new table;
 * the header switches to it with one block write.  Everything else is
 * written back first.
 *
 * Context: meta_lock held; sleeps.
 * Return: 0, -ENOSPC (no room, or past QEMU's limit), or an errno.
 */
static int qcow2_grow_reftable(struct qcow2_image *img, u64 c)
{
	struct qcow2_info *qi = &img->info;
	u64 per = qcow2_refblock_entries(qi), cs = qi->cluster_size;
	u64 ri = c / per, area = ri * per, old_off = qi->reftable_offset;
	u32 old_clusters = qi->reftable_clusters, clusters, n, i;
	unsigned long *dirty = NULL;
	u64 *table = NULL;
	u8 *raw = NULL;
	u8 *buf = NULL;
	int r;

	/* Room for entry @ri and twice the old table, within QEMU's limit. */
	clusters = max_t(u64, 2ULL * old_clusters,
			 DIV_ROUND_UP((ri + 1) * 8, cs));
	if ((u64)clusters * cs > QCOW2_MAX_REFTABLE_BYTES ||
	    clusters + 1 > per ||
	    ((area + 1 + clusters) << qi->cluster_bits) >
	    bdev_nr_bytes(img->file->bdev))
		return -ENOSPC;
	n = clusters * cs / 8;
	r = qcow2_writeback(img);
	if (r)
		return r;
	r = -ENOMEM;
	table = kvcalloc(n, sizeof(*table), GFP_NOIO);
	raw = kvzalloc((u64)clusters * cs, GFP_NOIO);
	buf = kvzalloc(cs, GFP_NOIO);
	dirty = bitmap_zalloc(DIV_ROUND_UP((u64)n * 8, img->lbs) + 1, GFP_NOIO);
	if (!table || !raw || !buf || !dirty)
		goto out;
	memcpy(table, img->reftable, (u64)img->reftable_n * 8);
	table[ri] = area << qi->cluster_bits;
	qcow2_encode_table(table, n, 0, n, NULL, raw);
	/* The area's block counts itself and the table. */
	for (i = 0; i <= clusters; i++)
		qcow2_refcount_set(qi, buf, i, 1);
	r = qcow2_write(img, area << qi->cluster_bits, buf, cs);
	if (!r)
		r = qcow2_write(img, (area + 1) << qi->cluster_bits, raw,
				(u64)clusters * cs);
	if (!r)
		r = blkdev_issue_flush(img->file->bdev);
	if (r)
		goto out;
	/* Offset and size share the header's first block: one write. */
	r = qcow2_read(img, 0, buf, img->lbs);
	if (!r)
		r = qcow2_header_set_reftable(buf, img->lbs,
					      (area + 1) << qi->cluster_bits,
					      clusters);
	if (!r)
		r = qcow2_write(img, 0, buf, img->lbs);
	if (!r)
		r = blkdev_issue_flush(img->file->bdev);
	if (r)
		goto out;
	DMINFO("%s: refcount table grown to %u clusters at %llu", qcow2_name(img),
	       clusters, (area + 1) << qi->cluster_bits);
	swap(img->reftable, table);
	swap(img->rt_dirty, dirty);
	img->reftable_n = n;
	qi->reftable_offset = (area + 1) << qi->cluster_bits;
	qi->reftable_clusters = clusters;
	/* The old table is referenced by nothing on disk now. */
	qcow2_unref(img, old_off, (u64)old_clusters * cs);
	img->free_hint = min(img->free_hint, old_off >> qi->cluster_bits);
out:
	bitmap_free(dirty);
	kvfree(buf);
	kvfree(raw);
	kvfree(table);
	return r;
}

/* Bytes zeroed ahead at a time (at least 4 clusters). */
#define QCOW2_PZ_BYTES		(4u << 20)

static u64 qcow2_pz_batch(const struct qcow2_info *qi)
{
	return max_t(u64, QCOW2_PZ_BYTES >> qi->cluster_bits, 4);
}

static bool qcow2_pz_busy(struct qcow2_image *img)
{
	/* Acquire: pz_end is read after it, see qcow2_pz_work(). */
	return smp_load_acquire(&img->pz_busy);
}

/*
 * The allocator takes cluster @c: the zone starts after it from now on;
 * the next batch is zeroed when less than half a batch is left.  True:
 * @c holds zeros.  Under meta_lock.
 */
static bool qcow2_pz_take(struct qcow2_image *img, u64 c)
{
	u64 end = READ_ONCE(img->pz_end);
	bool zeroed = c >= img->pz_start && c < end;

	if (c >= img->pz_start)
		img->pz_start = c + 1;
	if (img->pz_on && !img->pz_stop && !READ_ONCE(img->pz_busy) &&
	    img->pz_start + qcow2_pz_batch(&img->info) / 2 >= end)
		queue_work(system_unbound_wq, &img->pz_work);
	return zeroed;
}

/*
 * qcow2_alloc_how() - take a free cluster of the file device: refcount 1, in
 * memory.  Creates a refcount block where none covers the cluster (in the
 * first cluster of the range it describes, which is free then), and a
 * larger refcount table when the table covers no more.  Returns -ENOSPC
 * when the device is full.  With @nowait (map()), -EWOULDBLOCK instead of
 * any I/O: a refcount block not cached, a new one or a larger table
 * needed.  A cluster in the batch being zeroed ahead is waited for (with
 * @nowait, -EWOULDBLOCK); *@zeroed (if not NULL) tells whether the cluster
 * holds zeros already.  Under meta_lock.
 */
int qcow2_alloc_how(struct qcow2_image *img, u64 *host, bool nowait,
		    bool *zeroed)
{
	const struct qcow2_info *qi = &img->info;
	u64 per = qcow2_refblock_entries(qi);
	u64 dev = bdev_nr_bytes(img->file->bdev), nc = dev >> qi->cluster_bits;
	struct qcow2_rb *b;
	u64 c, ri, boff;
	int r = 0;
	bool z;

	/*
	 * The device may have grown: clusters past the old end are valid
	 * once allocated (readers see the size before the entry, which is
	 * stored later under the L2 set's lock).
	 */
	if (dev > qi->file_size)
		WRITE_ONCE(img->info.file_size, dev);

	for (c = max_t(u64, img->free_hint, 1); c < nc; c++) {
		ri = c / per;
		if (nowait && (ri >= img->reftable_n || !img->reftable[ri]))
			return -EWOULDBLOCK;
		if (ri >= img->reftable_n) {
			r = qcow2_grow_reftable(img, c);
			if (r)
				return r;
			c--;	/* again, with the table that covers it */
			continue;
		}
		if (!img->reftable[ri]) {
			boff = (ri * per) << qi->cluster_bits;
			if (qcow2_is_fixed_metadata(img, boff)) {
				DMERR_LIMIT("%s: no refcount block for image metadata at %llu",
					    qcow2_name(img), boff);
				return -EIO;
			}
			b = qcow2_rb_get(img, boff, true, &r);
			if (!b)
				return r;
			qcow2_refcount_set(qi, b->data, 0, 1);
			b->dirty = true;
			img->reftable[ri] = boff;
			set_bit(ri * 8 / img->lbs, img->rt_dirty);
			qcow2_touch(img);
			if (c == ri * per)
				continue;	/* the block itself took it */
		}
		if (nowait) {
			b = qcow2_rb_find(img, img->reftable[ri]);
			if (!b)
				return -EWOULDBLOCK;
		} else {
			b = qcow2_rb_get(img, img->reftable[ri], false, &r);
			if (!b)
				return r;
		}
		if (qcow2_refcount_get(qi, b->data, c % per) ||
		    qcow2_is_fixed_metadata(img, c << qi->cluster_bits))
			continue;
		if (c < img->pz_next && c >= READ_ONCE(img->pz_end)) {
			/* Being zeroed ahead; that ends without meta_lock. */
			if (nowait && qcow2_pz_busy(img))
				return -EWOULDBLOCK;
			wait_event(img->pz_wq, !qcow2_pz_busy(img));
		}
		qcow2_refcount_set(qi, b->data, c % per, 1);
		b->dirty = true;
		qcow2_touch(img);
		img->free_hint = c + 1;
		z = qcow2_pz_take(img, c);
		if (zeroed)
			*zeroed = z;
		*host = c << qi->cluster_bits;
		return 0;
	}
	img->free_hint = nc;
	return -ENOSPC;
}

int qcow2_alloc(struct qcow2_image *img, u64 *host)
{
	return qcow2_alloc_how(img, host, false, NULL);
}

/* Cluster @c is free, its refcount block exists, it is not metadata. */
static bool qcow2_pz_free(struct qcow2_image *img, u64 c)
{
	const struct qcow2_info *qi = &img->info;
	u64 per = qcow2_refblock_entries(qi), ri = c / per;
	struct qcow2_rb *b;
	int r;

	if (ri >= img->reftable_n || !img->reftable[ri] ||
	    qcow2_is_fixed_metadata(img, c << qi->cluster_bits))
		return false;
	b = qcow2_rb_get(img, img->reftable[ri], false, &r);
	return b && !qcow2_refcount_get(qi, b->data, c % per);
}

/*
 * qcow2_pz_work() - zero the next batch of free clusters ahead of the
 * allocator, QEMU's handle_alloc_space() done once per batch instead of
 * once per cluster: an allocating write whose cluster is in the zone
 * writes only its data (qcow2_alloc_plan()), and the zeros cost one
 * write-zeroes request per batch (written zero pages where the file
 * device has none, in this worker, not in the writer).  Only free clusters
 * are zeroed, only those the allocator takes next, and nothing refers to
 * them: a crash meanwhile leaves nothing to repair.  The zeros are on the
 * device before pz_end moves over them, so before any data goes there.
 */
void qcow2_pz_work(struct work_struct *work)
{
	struct qcow2_image *img = container_of(work, struct qcow2_image, pz_work);
	const struct qcow2_info *qi = &img->info;
	u64 batch = qcow2_pz_batch(qi), nc, s, e, lim;
	unsigned int noio = memalloc_noio_save();
	int r;

	mutex_lock(&img->meta_lock);
	nc = bdev_nr_bytes(img->file->bdev) >> qi->cluster_bits;
	if (img->pz_stop) {
		mutex_unlock(&img->meta_lock);
		goto out;
	}
	if (img->pz_start >= img->pz_end) {
		/* Used up: start again at the allocator's next free one. */
		s = max_t(u64, img->free_hint, 1);
		lim = min(s + 4 * batch, nc);
		while (s < lim && !qcow2_pz_free(img, s))
			s++;
		img->pz_start = s;
		WRITE_ONCE(img->pz_end, s);
	}
	s = img->pz_end;
	lim = min(s + batch, nc);
	for (e = s; e < lim && qcow2_pz_free(img, e); e++)
		;
	img->pz_next = e;
	if (e > s)
		WRITE_ONCE(img->pz_busy, true);
	mutex_unlock(&img->meta_lock);
	if (e == s)
		goto out;
	r = blkdev_issue_zeroout(img->file->bdev,
				 (s << qi->cluster_bits) >> SECTOR_SHIFT,
				 ((e - s) << qi->cluster_bits) >> SECTOR_SHIFT,
				 GFP_NOIO, BLKDEV_ZERO_NOUNMAP);
	if (r) {
		DMWARN_LIMIT("%s: zeroing ahead failed (%d); off until the next resume",
			     qcow2_name(img), r);
		WRITE_ONCE(img->pz_stop, true);
	} else {
		WRITE_ONCE(img->pz_end, e);
	}
	/* pz_end before pz_busy: allocators read them the other way. */
	smp_store_release(&img->pz_busy, false);
	wake_up_all(&img->pz_wq);
out:
	memalloc_noio_restore(noio);
}

/* Zeroing ahead may start again (resume). */
void qcow2_pz_start(struct qcow2_image *img)
{
	mutex_lock(&img->meta_lock);
	img->pz_stop = false;
	mutex_unlock(&img->meta_lock);
}

/* The file device grew: the allocator searches from its start again. */
void qcow2_alloc_rescan(struct qcow2_image *img)
{
	mutex_lock(&img->meta_lock);
	img->free_hint = 0;
	mutex_unlock(&img->meta_lock);
}

/* Zeroing ahead stops (suspend): no batch is being zeroed after this. */
void qcow2_pz_halt(struct qcow2_image *img)
{
	mutex_lock(&img->meta_lock);
	img->pz_stop = true;
	mutex_unlock(&img->meta_lock);
	cancel_work_sync(&img->pz_work);
	mutex_lock(&img->meta_lock);
	/* The device may be changed while suspended: forget the zone. */
	img->pz_start = 0;
	img->pz_next = 0;
	WRITE_ONCE(img->pz_end, 0);
	mutex_unlock(&img->meta_lock);
}

/*
 * Drop one reference of every cluster in [@off, @off + @len), now (the
 * entries that held them are on disk, or never were).  A cluster that
 * reaches 0 becomes free, and the file device is told it may discard it.
 * Under meta_lock.
 */
void qcow2_unref(struct qcow2_image *img, u64 off, u64 len)
{
	const struct qcow2_info *qi = &img->info;
	struct block_device *bdev = img->file->bdev;
	u64 per = qcow2_refblock_entries(qi);
	u64 c, last = (off + len - 1) >> qi->cluster_bits;
	struct qcow2_rb *b;
	u64 v;
	int r;

	for (c = off >> qi->cluster_bits; len && c <= last; c++) {
		u64 ri = c / per;

		b = NULL;
		if (ri < img->reftable_n && img->reftable[ri])
			b = qcow2_rb_get(img, img->reftable[ri], false, &r);
		v = b ? qcow2_refcount_get(qi, b->data, c % per) : 0;
		if (!v) {
			DMERR_LIMIT("%s: refcount of cluster %llu would drop below 0; leaving it",
				    qcow2_name(img), c);
			continue;
		}
		qcow2_refcount_set(qi, b->data, c % per, v - 1);
		b->dirty = true;
		qcow2_touch(img);
		if (v > 1)
			continue;
		img->free_hint = min(img->free_hint, c);
		if (bdev_max_discard_sectors(bdev))
			blkdev_issue_discard(bdev, (c << qi->cluster_bits) >> SECTOR_SHIFT,
					     qi->cluster_size >> SECTOR_SHIFT, GFP_NOIO);
	}
}

/* Drop these references after the next flush.  Under meta_lock. */
void qcow2_unref_later(struct qcow2_image *img, u64 off, u64 len)
{
	struct qcow2_free *f = kmalloc(sizeof(*f), GFP_NOIO);

	if (!f) {
		DMERR_LIMIT("%s: out of memory: cluster %llu leaks", qcow2_name(img),
			    off >> img->info.cluster_bits);
		return;
	}
	f->off = off;
	f->len = len;
	list_add_tail(&f->list, &img->frees);
	qcow2_touch(img);
}
