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

void qcow2_epoch_get(struct qcow2_c *qc, struct qcow2_io *io)
{
	int e = READ_ONCE(qc->epoch) & 1;

	atomic_inc(&qc->users[e]);
	/* Count before looking at L2, so a free waits for this bio. */
	smp_mb__after_atomic();
	io->epoch = e;
}

void qcow2_epoch_put(struct qcow2_c *qc, struct qcow2_io *io)
{
	if (io->epoch < 0)
		return;
	/*
	 * On brd every bio ends inside its own submission, so this count
	 * drops to zero bio after bio: look for a drainer before taking the
	 * wait queue's lock.  atomic_dec_and_test() is fully ordered, the
	 * barrier wq_has_sleeper() would add; it pairs with wait_event()'s.
	 */
	if (atomic_dec_and_test(&qc->users[io->epoch]) &&
	    waitqueue_active(&qc->drain_wq))	/* ordered: see above */
		wake_up_all(&qc->drain_wq);
	io->epoch = -1;
}

/*
 * Wait until every bio that looked at L2 before now has completed: those
 * may still read or write a cluster whose last reference was just dropped
 * (flush_lock held, so epochs flip one at a time; not under meta_lock).
 */
void qcow2_epoch_drain(struct qcow2_c *qc)
{
	unsigned int old = qc->epoch & 1;

	WRITE_ONCE(qc->epoch, qc->epoch + 1);
	/* Pairs with qcow2_epoch_get(): new bios count in the new epoch. */
	smp_mb();
	wait_event(qc->drain_wq, !atomic_read(&qc->users[old]));
}

void qcow2_touch(struct qcow2_c *qc)
{
	WRITE_ONCE(qc->meta_dirty, true);
}

int qcow2_rb_write(struct qcow2_c *qc, struct qcow2_rb *b)
{
	int r = qcow2_write(qc, b->off, b->data, qc->qi.cluster_size);

	if (!r)
		b->dirty = false;
	return r;
}

/* The cached refcount block at @off, or NULL.  Under meta_lock. */
static struct qcow2_rb *qcow2_rb_find(struct qcow2_c *qc, u64 off)
{
	u32 i;

	for (i = 0; i < qc->rb_slots; i++) {
		if (qc->rb[i].off == off) {
			qc->rb[i].stamp = ++qc->rb_clock;
			return &qc->rb[i];
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
static struct qcow2_rb *qcow2_rb_get(struct qcow2_c *qc, u64 off, bool fresh,
				     int *err)
{
	struct qcow2_rb *b = qcow2_rb_find(qc, off), *victim = NULL;
	u32 i;

	if (b)
		return b;
	for (i = 0; i < qc->rb_slots; i++) {
		b = &qc->rb[i];
		if (!victim || !b->off ||
		    (victim->off && (s32)(b->stamp - victim->stamp) < 0))
			victim = b;
	}
	if (victim->off && victim->dirty) {
		*err = qcow2_rb_write(qc, victim);
		if (*err)
			return NULL;
	}
	victim->off = 0;
	if (fresh) {
		memset(victim->data, 0, qc->qi.cluster_size);
	} else {
		*err = qcow2_read(qc, off, victim->data, qc->qi.cluster_size);
		if (*err)
			return NULL;
	}
	victim->off = off;
	victim->dirty = false;
	victim->stamp = ++qc->rb_clock;
	return victim;
}

/* Whether [@off, @off + cluster) is the header, the L1 or refcount table. */
static bool qcow2_is_fixed_metadata(struct qcow2_c *qc, u64 off)
{
	const struct qcow2_info *qi = &qc->qi;
	u64 end = off + qi->cluster_size;

	return off < qi->cluster_size ||
	       (off < qi->l1_offset + qcow2_l1_bytes(qi) &&
		end > qi->l1_offset) ||
	       (off < qi->reftable_offset + qcow2_reftable_bytes(qi) &&
		end > qi->reftable_offset);
}

/*
 * qcow2_grow_reftable() - the refcount table covers no cluster from
 * index @c on: make a larger one, QEMU's way, in a self-describing area
 * at the first cluster @c's range would describe: a refcount block for
 * that range, then the new table; the header switches to it with one
 * block write.  Under meta_lock, everything else written back first.
 */
static int qcow2_grow_reftable(struct qcow2_c *qc, u64 c)
{
	struct qcow2_info *qi = &qc->qi;
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
	    bdev_nr_bytes(qc->file->bdev))
		return -ENOSPC;
	n = clusters * cs / 8;
	r = qcow2_writeback(qc);
	if (r)
		return r;
	r = -ENOMEM;
	table = kvcalloc(n, sizeof(*table), GFP_NOIO);
	raw = kvzalloc((u64)clusters * cs, GFP_NOIO);
	buf = kvzalloc(cs, GFP_NOIO);
	dirty = bitmap_zalloc(DIV_ROUND_UP((u64)n * 8, qc->lbs) + 1, GFP_NOIO);
	if (!table || !raw || !buf || !dirty)
		goto out;
	memcpy(table, qc->reftable, (u64)qc->reftable_n * 8);
	table[ri] = area << qi->cluster_bits;
	qcow2_encode_table(table, n, 0, n, NULL, raw);
	/* The area's block counts itself and the table. */
	for (i = 0; i <= clusters; i++)
		qcow2_refcount_set(qi, buf, i, 1);
	r = qcow2_write(qc, area << qi->cluster_bits, buf, cs);
	if (!r)
		r = qcow2_write(qc, (area + 1) << qi->cluster_bits, raw,
				(u64)clusters * cs);
	if (!r)
		r = blkdev_issue_flush(qc->file->bdev);
	if (r)
		goto out;
	/* Offset and size share the header's first block: one write. */
	r = qcow2_read(qc, 0, buf, qc->lbs);
	if (!r)
		r = qcow2_header_set_reftable(buf, qc->lbs,
					      (area + 1) << qi->cluster_bits,
					      clusters);
	if (!r)
		r = qcow2_write(qc, 0, buf, qc->lbs);
	if (!r)
		r = blkdev_issue_flush(qc->file->bdev);
	if (r)
		goto out;
	DMINFO("%s: refcount table grown to %u clusters at %llu", qcow2_name(qc),
	       clusters, (area + 1) << qi->cluster_bits);
	swap(qc->reftable, table);
	swap(qc->rt_dirty, dirty);
	qc->reftable_n = n;
	qi->reftable_offset = (area + 1) << qi->cluster_bits;
	qi->reftable_clusters = clusters;
	/* The old table is referenced by nothing on disk now. */
	qcow2_unref(qc, old_off, (u64)old_clusters * cs);
	qc->free_hint = min(qc->free_hint, old_off >> qi->cluster_bits);
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

static bool qcow2_pz_busy(struct qcow2_c *qc)
{
	/* Acquire: pz_end is read after it, see qcow2_pz_work(). */
	return smp_load_acquire(&qc->pz_busy);
}

/*
 * The allocator takes cluster @c: the zone starts after it from now on;
 * the next batch is zeroed when less than half a batch is left.  True:
 * @c holds zeros.  Under meta_lock.
 */
static bool qcow2_pz_take(struct qcow2_c *qc, u64 c)
{
	u64 end = READ_ONCE(qc->pz_end);
	bool zeroed = c >= qc->pz_start && c < end;

	if (c >= qc->pz_start)
		qc->pz_start = c + 1;
	if (qc->pz_on && !qc->pz_stop && !READ_ONCE(qc->pz_busy) &&
	    qc->pz_start + qcow2_pz_batch(&qc->qi) / 2 >= end)
		queue_work(system_unbound_wq, &qc->pz_work);
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
int qcow2_alloc_how(struct qcow2_c *qc, u64 *host, bool nowait,
		    bool *zeroed)
{
	const struct qcow2_info *qi = &qc->qi;
	u64 per = qcow2_refblock_entries(qi);
	u64 dev = bdev_nr_bytes(qc->file->bdev), nc = dev >> qi->cluster_bits;
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
		WRITE_ONCE(qc->qi.file_size, dev);

	for (c = max_t(u64, qc->free_hint, 1); c < nc; c++) {
		ri = c / per;
		if (nowait && (ri >= qc->reftable_n || !qc->reftable[ri]))
			return -EWOULDBLOCK;
		if (ri >= qc->reftable_n) {
			r = qcow2_grow_reftable(qc, c);
			if (r)
				return r;
			c--;	/* again, with the table that covers it */
			continue;
		}
		if (!qc->reftable[ri]) {
			boff = (ri * per) << qi->cluster_bits;
			if (qcow2_is_fixed_metadata(qc, boff)) {
				DMERR_LIMIT("%s: no refcount block for image metadata at %llu",
					    qcow2_name(qc), boff);
				return -EIO;
			}
			b = qcow2_rb_get(qc, boff, true, &r);
			if (!b)
				return r;
			qcow2_refcount_set(qi, b->data, 0, 1);
			b->dirty = true;
			qc->reftable[ri] = boff;
			set_bit(ri * 8 / qc->lbs, qc->rt_dirty);
			qcow2_touch(qc);
			if (c == ri * per)
				continue;	/* the block itself took it */
		}
		if (nowait) {
			b = qcow2_rb_find(qc, qc->reftable[ri]);
			if (!b)
				return -EWOULDBLOCK;
		} else {
			b = qcow2_rb_get(qc, qc->reftable[ri], false, &r);
			if (!b)
				return r;
		}
		if (qcow2_refcount_get(qi, b->data, c % per) ||
		    qcow2_is_fixed_metadata(qc, c << qi->cluster_bits))
			continue;
		if (c < qc->pz_next && c >= READ_ONCE(qc->pz_end)) {
			/* Being zeroed ahead; that ends without meta_lock. */
			if (nowait && qcow2_pz_busy(qc))
				return -EWOULDBLOCK;
			wait_event(qc->pz_wq, !qcow2_pz_busy(qc));
		}
		qcow2_refcount_set(qi, b->data, c % per, 1);
		b->dirty = true;
		qcow2_touch(qc);
		qc->free_hint = c + 1;
		z = qcow2_pz_take(qc, c);
		if (zeroed)
			*zeroed = z;
		*host = c << qi->cluster_bits;
		return 0;
	}
	qc->free_hint = nc;
	return -ENOSPC;
}

int qcow2_alloc(struct qcow2_c *qc, u64 *host)
{
	return qcow2_alloc_how(qc, host, false, NULL);
}

/* Cluster @c is free, its refcount block exists, it is not metadata. */
static bool qcow2_pz_free(struct qcow2_c *qc, u64 c)
{
	const struct qcow2_info *qi = &qc->qi;
	u64 per = qcow2_refblock_entries(qi), ri = c / per;
	struct qcow2_rb *b;
	int r;

	if (ri >= qc->reftable_n || !qc->reftable[ri] ||
	    qcow2_is_fixed_metadata(qc, c << qi->cluster_bits))
		return false;
	b = qcow2_rb_get(qc, qc->reftable[ri], false, &r);
	return b && !qcow2_refcount_get(qi, b->data, c % per);
}

/*
 * qcow2_pz_work() - zero the next batch of free clusters ahead of the
 * allocator, QEMU's handle_alloc_space() done once per batch instead of
 * once per cluster: an allocating write whose cluster is in the zone
 * writes only its data (qcow2_alloc_submit()), and the zeros cost one
 * write-zeroes request per batch (written zero pages where the file
 * device has none, in this worker, not in the writer).  Only free clusters
 * are zeroed, only those the allocator takes next, and nothing refers to
 * them: a crash meanwhile leaves nothing to repair.  The zeros are on the
 * device before pz_end moves over them, so before any data goes there.
 */
void qcow2_pz_work(struct work_struct *work)
{
	struct qcow2_c *qc = container_of(work, struct qcow2_c, pz_work);
	const struct qcow2_info *qi = &qc->qi;
	u64 batch = qcow2_pz_batch(qi), nc, s, e, lim;
	unsigned int noio = memalloc_noio_save();
	int r;

	mutex_lock(&qc->meta_lock);
	nc = bdev_nr_bytes(qc->file->bdev) >> qi->cluster_bits;
	if (qc->pz_stop) {
		mutex_unlock(&qc->meta_lock);
		goto out;
	}
	if (qc->pz_start >= qc->pz_end) {
		/* Used up: start again at the allocator's next free one. */
		s = max_t(u64, qc->free_hint, 1);
		lim = min(s + 4 * batch, nc);
		while (s < lim && !qcow2_pz_free(qc, s))
			s++;
		qc->pz_start = s;
		WRITE_ONCE(qc->pz_end, s);
	}
	s = qc->pz_end;
	lim = min(s + batch, nc);
	for (e = s; e < lim && qcow2_pz_free(qc, e); e++)
		;
	qc->pz_next = e;
	if (e > s)
		WRITE_ONCE(qc->pz_busy, true);
	mutex_unlock(&qc->meta_lock);
	if (e == s)
		goto out;
	r = blkdev_issue_zeroout(qc->file->bdev,
				 (s << qi->cluster_bits) >> SECTOR_SHIFT,
				 ((e - s) << qi->cluster_bits) >> SECTOR_SHIFT,
				 GFP_NOIO, BLKDEV_ZERO_NOUNMAP);
	if (r) {
		DMWARN_LIMIT("%s: zeroing ahead failed (%d); off until the next resume",
			     qcow2_name(qc), r);
		WRITE_ONCE(qc->pz_stop, true);
	} else {
		WRITE_ONCE(qc->pz_end, e);
	}
	/* pz_end before pz_busy: allocators read them the other way. */
	smp_store_release(&qc->pz_busy, false);
	wake_up_all(&qc->pz_wq);
out:
	memalloc_noio_restore(noio);
}

/* Zeroing ahead stops (suspend): no batch is being zeroed after this. */
void qcow2_pz_halt(struct qcow2_c *qc)
{
	mutex_lock(&qc->meta_lock);
	qc->pz_stop = true;
	mutex_unlock(&qc->meta_lock);
	cancel_work_sync(&qc->pz_work);
	mutex_lock(&qc->meta_lock);
	/* The device may be changed while suspended: forget the zone. */
	qc->pz_start = 0;
	qc->pz_next = 0;
	WRITE_ONCE(qc->pz_end, 0);
	mutex_unlock(&qc->meta_lock);
}

/*
 * Drop one reference of every cluster in [@off, @off + @len), now (the
 * entries that held them are on disk, or never were).  A cluster that
 * reaches 0 becomes free, and the file device is told it may discard it.
 * Under meta_lock.
 */
void qcow2_unref(struct qcow2_c *qc, u64 off, u64 len)
{
	const struct qcow2_info *qi = &qc->qi;
	struct block_device *bdev = qc->file->bdev;
	u64 per = qcow2_refblock_entries(qi);
	u64 c, last = (off + len - 1) >> qi->cluster_bits;
	struct qcow2_rb *b;
	u64 v;
	int r;

	for (c = off >> qi->cluster_bits; len && c <= last; c++) {
		u64 ri = c / per;

		b = NULL;
		if (ri < qc->reftable_n && qc->reftable[ri])
			b = qcow2_rb_get(qc, qc->reftable[ri], false, &r);
		v = b ? qcow2_refcount_get(qi, b->data, c % per) : 0;
		if (!v) {
			DMERR_LIMIT("%s: refcount of cluster %llu would drop below 0; leaving it",
				    qcow2_name(qc), c);
			continue;
		}
		qcow2_refcount_set(qi, b->data, c % per, v - 1);
		b->dirty = true;
		qcow2_touch(qc);
		if (v > 1)
			continue;
		qc->free_hint = min(qc->free_hint, c);
		if (bdev_max_discard_sectors(bdev))
			blkdev_issue_discard(bdev, (c << qi->cluster_bits) >> SECTOR_SHIFT,
					     qi->cluster_size >> SECTOR_SHIFT, GFP_NOIO);
	}
}

/* Drop these references after the next flush.  Under meta_lock. */
void qcow2_unref_later(struct qcow2_c *qc, u64 off, u64 len)
{
	struct qcow2_free *f = kmalloc(sizeof(*f), GFP_NOIO);

	if (!f) {
		DMERR_LIMIT("%s: out of memory: cluster %llu leaks", qcow2_name(qc),
			    off >> qc->qi.cluster_bits);
		return;
	}
	f->off = off;
	f->len = len;
	list_add_tail(&f->list, &qc->frees);
	qcow2_touch(qc);
}
