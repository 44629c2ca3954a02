// SPDX-License-Identifier: GPL-2.0
/*
 * bgraph-qcow2: the metadata engine, part one: synchronous I/O on the
 * children, lookups through the L2 cache, the L1 table and L2 entries,
 * and write-back in dependency order (the commit protocol is described
 * in qcow2-metadata.h).
 */
#include <linux/slab.h>
#include <linux/dm-io.h>

#include "qcow2.h"

/* ---------------------------------------------------------------- */
/* Synchronous I/O and lookups                                      */
/* ---------------------------------------------------------------- */

/* Synchronous dm-io of @len bytes at @off, both aligned to the device. */
static int qcow2_dev_io(struct qcow2_c *qc, struct block_device *bdev,
			blk_opf_t opf, u64 off, void *buf, u64 len)
{
	struct dm_io_region region = {
		.bdev = bdev,
		.sector = off >> SECTOR_SHIFT,
		.count = len >> SECTOR_SHIFT,
	};
	struct dm_io_request req = {
		.bi_opf = opf | REQ_SYNC,
		.mem.type = is_vmalloc_addr(buf) ? DM_IO_VMA : DM_IO_KMEM,
		.mem.ptr.addr = buf,	/* .vma shares the union */
		.client = qc->io,
	};

	return dm_io(&req, 1, &region, NULL, IOPRIO_DEFAULT);
}

/*
 * Read @len bytes at byte @off of @bdev (the file or the backing child)
 * into @buf (kmalloc or vmalloc memory), synchronously with dm-io; bytes
 * past the device's end read as zeros.  A range that is not aligned to
 * the device's logical block size (a compressed cluster, or a 512-byte
 * header read on a 4Kn disk) goes through a bounce buffer: the block
 * layer fails misaligned bios.  Sleeps; not from map().
 */
int qcow2_dev_read(struct qcow2_c *qc, struct block_device *bdev,
		   u64 off, void *buf, u64 len)
{
	u64 dev = bdev_nr_bytes(bdev);
	u32 lbs = bdev_logical_block_size(bdev);
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
		return qcow2_dev_io(qc, bdev, REQ_OP_READ, off, buf, len);

	start = round_down(off, lbs);
	end = min(round_up(off + len, lbs), dev);
	bounce = kvmalloc(end - start, GFP_NOIO);
	if (!bounce)
		return -ENOMEM;
	r = qcow2_dev_io(qc, bdev, REQ_OP_READ, start, bounce, end - start);
	if (!r)
		memcpy(buf, bounce + (off - start), len);
	kvfree(bounce);
	return r;
}

int qcow2_read(struct qcow2_c *qc, u64 off, void *buf, u64 len)
{
	return qcow2_dev_read(qc, qc->file->bdev, off, buf, len);
}

/*
 * Write @len bytes at @off of the file device, both aligned to its
 * logical block size; never past its end.
 */
int qcow2_write(struct qcow2_c *qc, u64 off, const void *buf, u64 len)
{
	if (off + len > bdev_nr_bytes(qc->file->bdev) || off + len < off)
		return -EIO;
	return qcow2_dev_io(qc, qc->file->bdev, REQ_OP_WRITE, off,
			    (void *)buf, len);
}

/*
 * The slice of the L2 table at @l2_off that maps guest offset @off, and
 * the byte of that slice where its entry starts.  Slices are a power of
 * two bytes: masks, not divisions, on map()'s path.
 */
void qcow2_slice_pos(struct qcow2_c *qc, u64 l2_off, u64 off,
		     u64 *slice_off, u32 *pos)
{
	u64 at = qcow2_l2_index(&qc->qi, off) * 8 * qc->qi.l2_entry_words;

	*slice_off = l2_off + (at & ~(u64)(qc->cache.slice_bytes - 1));
	*pos = at & (qc->cache.slice_bytes - 1);
}

/*
 * qcow2_lookup() - the first extent of guest range [@off, @off + @len),
 * resolved against the backing child: BACKING past the backing child's
 * end, or without one, becomes ZERO.  With @may_load (worker only) a
 * missing L2 slice is read in; without, a miss returns -EWOULDBLOCK.
 */
int qcow2_lookup(struct qcow2_c *qc, u64 off, u64 len,
		 bool may_load, struct qcow2_extent *ext)
{
	const struct qcow2_info *qi = &qc->qi;
	u32 words = qi->l2_entry_words;
	u64 l2_off = READ_ONCE(qc->l1[qcow2_l1_index(qi, off)]);
	u64 entries[MAP_MAX_ENTRIES * 2];
	u64 slice_off, last, n;
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

	qcow2_slice_pos(qc, l2_off, off, &slice_off, &pos);
	last = (off + len - 1) >> qi->cluster_bits;
	/* Entries left in the slice: 8 or 16 bytes each. */
	n = min3(last - (off >> qi->cluster_bits) + 1,
		 (u64)((qc->cache.slice_bytes - pos) >> (words == 2 ? 4 : 3)),
		 (u64)MAP_MAX_ENTRIES);

	if (!qcow2_l2c_lookup(&qc->cache, slice_off, pos, n * words, entries)) {
		u32 gen;

		if (!may_load)
			return -EWOULDBLOCK;
		raw = kmalloc(qc->cache.slice_bytes, GFP_NOIO);
		if (!raw)
			return -ENOMEM;
		gen = qcow2_l2c_gen(&qc->cache, slice_off);
		r = qcow2_read(qc, slice_off, raw, qc->cache.slice_bytes);
		if (r) {
			kfree(raw);
			DMERR_LIMIT("%s: cannot read L2 table at %llu: %d",
				    qcow2_name(qc), slice_off, r);
			return r;
		}
		this_cpu_inc(qc->cache.stats->misses);
		qcow2_l2c_insert(&qc->cache, slice_off, raw, gen);
		qcow2_l2c_decode(raw + pos, n * words, entries);
		kfree(raw);
	}
	/* Within one cluster of plain data (nearly every bio): inline. */
	if (last == off >> qi->cluster_bits) {
		ext->host_off = qcow2_map_plain(qi, entries[0], off,
						&ext->copied);
		if (ext->host_off) {
			ext->type = QCOW2_MAP_DATA;
			ext->len = len;
			return 0;
		}
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
/* Write-back, flush and the header                                 */
/* ---------------------------------------------------------------- */

/*
 * Write the dirty logical blocks of a table of @n entries at @table_off:
 * the L1 table (@l1) or the refcount table.
 */
static int qcow2_write_table(struct qcow2_c *qc, u64 table_off,
			     const u64 *ent, u32 n, unsigned long *dirty,
			     bool l1)
{
	u32 per = qc->lbs / 8, nblocks = DIV_ROUND_UP(n, per), b;
	u8 *buf;
	int r = 0;

	buf = kmalloc(qc->lbs, GFP_NOIO);
	if (!buf)
		return -ENOMEM;
	for_each_set_bit(b, dirty, nblocks) {
		qcow2_encode_table(ent, n, b * per, per,
				   l1 ? qc->l1_copied : NULL, buf);
		r = qcow2_write(qc, table_off + (u64)b * qc->lbs, buf, qc->lbs);
		if (r)
			break;
		clear_bit(b, dirty);
	}
	kfree(buf);
	return r;
}

static bool qcow2_any_bit(const unsigned long *map, u32 n, u32 per)
{
	return find_first_bit(map, DIV_ROUND_UP(n, per)) < DIV_ROUND_UP(n, per);
}

/* Write every dirty L2 slice. Under meta_lock. */
static int qcow2_l2_writeback(struct qcow2_c *qc, bool *wrote)
{
	struct l2_cache *c = &qc->cache;
	unsigned long flags;
	unsigned int w;
	u32 i;
	int r;

	for (i = 0; i < c->nsets; i++) {
		struct l2c_set *set = &c->sets[i];

		for (w = 0; w < L2C_WAYS; w++) {
			/*
			 * Only meta_lock holders dirty slices or clean them,
			 * and stores from completions, kept out meanwhile.
			 */
			if (!set->way[w].dirty)
				continue;
			r = qcow2_write(qc, set->way[w].key - 1,
					qcow2_l2c_slot(c, set, w), c->slice_bytes);
			if (r)
				return r;
			*wrote = true;
			spin_lock_irqsave(&set->lock, flags);
			set->way[w].dirty = false;
			set->gen++;
			spin_unlock_irqrestore(&set->lock, flags);
		}
	}
	return 0;
}

/*
 * Close (@close) or open again the door of qcow2_alloc_store(): once
 * closed, no store is under way.  Closers nest.
 */
static void qcow2_stores_gate(struct qcow2_c *qc, bool close)
{
	spin_lock_irq(&qc->store_lock);
	if (close)
		qc->stores_closed++;
	else
		qc->stores_closed--;
	spin_unlock_irq(&qc->store_lock);
}

static int __qcow2_writeback(struct qcow2_c *qc);

/*
 * qcow2_writeback() - make every metadata change so far durable, in
 * dependency order: refcount blocks and table, flush (this also makes
 * the data written before durable), L2 slices, flush, L1, flush.  The
 * file device is flushed even when nothing was dirty.  No entry is
 * stored from a completion meanwhile.  Under meta_lock.
 */
int qcow2_writeback(struct qcow2_c *qc)
{
	int r;

	if (!READ_ONCE(qc->meta_dirty))
		return blkdev_issue_flush(qc->file->bdev);
	qcow2_stores_gate(qc, true);
	r = __qcow2_writeback(qc);
	qcow2_stores_gate(qc, false);
	return r;
}

static int __qcow2_writeback(struct qcow2_c *qc)
{
	const struct qcow2_info *qi = &qc->qi;
	u32 per = qc->lbs / 8;
	bool wrote = false;
	u32 i;
	int r;

	for (i = 0; i < qc->rb_slots; i++) {
		if (qc->rb[i].off && qc->rb[i].dirty) {
			r = qcow2_rb_write(qc, &qc->rb[i]);
			if (r)
				return r;
		}
	}
	if (qcow2_any_bit(qc->rt_dirty, qc->reftable_n, per)) {
		/* The new blocks first, then the table that points at them. */
		r = blkdev_issue_flush(qc->file->bdev);
		if (!r)
			r = qcow2_write_table(qc, qi->reftable_offset, qc->reftable,
					      qc->reftable_n, qc->rt_dirty, false);
		if (r)
			return r;
	}
	r = blkdev_issue_flush(qc->file->bdev);
	if (r)
		return r;
	r = qcow2_l2_writeback(qc, &wrote);
	if (r)
		return r;
	if (qcow2_any_bit(qc->l1_dirty, qi->l1_size, per)) {
		if (wrote) {
			r = blkdev_issue_flush(qc->file->bdev);
			if (r)
				return r;
		}
		r = qcow2_write_table(qc, qi->l1_offset, qc->l1, qi->l1_size,
				      qc->l1_dirty, true);
		if (r)
			return r;
		wrote = true;
	}
	if (wrote) {
		r = blkdev_issue_flush(qc->file->bdev);
		if (r)
			return r;
	}
	WRITE_ONCE(qc->meta_dirty, false);
	return 0;
}

/*
 * qcow2_flush() - what a flush bio asks: everything written before is
 * durable.  Then drop the references queued by copy-on-write and discard,
 * once no bio that saw the old entries is left.
 */
int qcow2_flush(struct qcow2_c *qc)
{
	struct qcow2_free *f, *tmp;
	LIST_HEAD(frees);
	u32 i;
	int r;

	mutex_lock(&qc->flush_lock);
	mutex_lock(&qc->meta_lock);
	r = qcow2_writeback(qc);
	if (!r)
		list_splice_init(&qc->frees, &frees);
	mutex_unlock(&qc->meta_lock);
	if (!r && !list_empty(&frees)) {
		qcow2_epoch_drain(qc);
		mutex_lock(&qc->meta_lock);
		list_for_each_entry_safe(f, tmp, &frees, list) {
			qcow2_unref(qc, f->off, f->len);
			list_del(&f->list);
			kfree(f);
		}
		/* No flush needed: a lost decrement is a leak, never harm. */
		for (i = 0; i < qc->rb_slots; i++)
			if (qc->rb[i].off && qc->rb[i].dirty && !r)
				r = qcow2_rb_write(qc, &qc->rb[i]);
		mutex_unlock(&qc->meta_lock);
	}
	mutex_unlock(&qc->flush_lock);
	return r;
}

/* Set or clear header bits: @field is a u64 of the v3 header. */
int qcow2_header_update(struct qcow2_c *qc, u32 field, u64 set,
			u64 clear)
{
	u8 *buf;
	int r;

	buf = kmalloc(qc->lbs, GFP_NOIO);
	if (!buf)
		return -ENOMEM;
	r = qcow2_read(qc, 0, buf, qc->lbs);
	if (!r)
		r = qcow2_header_update_bits(buf, qc->lbs, field, set, clear);
	if (!r)
		r = qcow2_write(qc, 0, buf, qc->lbs);
	if (!r)
		r = blkdev_issue_flush(qc->file->bdev);
	kfree(buf);
	return r;
}

/*
 * Lazy refcounts (compat bit 0): QEMU may leave refcounts stale while the
 * header says dirty.  We keep them exact, but mark the image dirty while
 * it is being written, as QEMU does, and clean on suspend.
 */
int qcow2_mark_dirty(struct qcow2_c *qc)
{
	int r;

	if (qc->hdr_dirty || !(qc->qi.compat & QCOW2_COMPAT_LAZY_REFCOUNTS))
		return 0;
	r = qcow2_header_update(qc, QCOW2_HDR_INCOMPAT, QCOW2_INCOMPAT_DIRTY, 0);
	if (!r)
		qc->hdr_dirty = true;
	return r;
}

/* Everything written back and the header clean: suspend, removal. */
int qcow2_make_clean(struct qcow2_c *qc)
{
	int r = qcow2_flush(qc);

	if (r) {
		DMERR("%s: cannot write metadata back: %d", qcow2_name(qc), r);
		return r;
	}
	mutex_lock(&qc->meta_lock);
	if (qc->hdr_dirty && !READ_ONCE(qc->meta_dirty)) {
		r = qcow2_header_update(qc, QCOW2_HDR_INCOMPAT, 0,
					QCOW2_INCOMPAT_DIRTY);
		if (!r)
			qc->hdr_dirty = false;
	}
	mutex_unlock(&qc->meta_lock);
	return r;
}

/* ---------------------------------------------------------------- */
/* Writing: L2 entries                                              */
/* ---------------------------------------------------------------- */

/*
 * Make sure the slice at @slice_off is cached, writing metadata back when
 * its set is all dirty.  Under meta_lock.
 */
static int qcow2_slice_load(struct qcow2_c *qc, u64 slice_off)
{
	u64 dummy;
	void *raw;
	u32 gen;
	int r;

	if (qcow2_l2c_lookup(&qc->cache, slice_off, 0, 1, &dummy))
		return 0;
	if (!qcow2_l2c_has_room(&qc->cache, slice_off)) {
		r = qcow2_writeback(qc);
		if (r)
			return r;
	}
	raw = kmalloc(qc->cache.slice_bytes, GFP_NOIO);
	if (!raw)
		return -ENOMEM;
	/*
	 * No store from a completion meanwhile: it would make the copy read
	 * look stale, and a set taking many such stores could refuse it
	 * again and again.
	 */
	qcow2_stores_gate(qc, true);
	gen = qcow2_l2c_gen(&qc->cache, slice_off);
	r = qcow2_read(qc, slice_off, raw, qc->cache.slice_bytes);
	if (!r) {
		this_cpu_inc(qc->cache.stats->misses);
		qcow2_l2c_insert(&qc->cache, slice_off, raw, gen);
	}
	qcow2_stores_gate(qc, false);
	kfree(raw);
	return r;
}

/*
 * qcow2_l2_table() - the L2 table for guest offset @off, ours to change:
 * allocated (zeroed on disk) when there is none, copied when it is shared
 * with a snapshot.  The L1 entry changes in memory.  Under meta_lock.
 */
static int qcow2_l2_table(struct qcow2_c *qc, u64 off, u64 *l2_off)
{
	const struct qcow2_info *qi = &qc->qi;
	u64 i = qcow2_l1_index(qi, off), old = qc->l1[i], new;
	u8 *buf;
	int r;

	if (old && test_bit(i, qc->l1_copied)) {
		*l2_off = old;
		return 0;
	}
	r = qcow2_alloc(qc, &new);
	if (r)
		return r;
	buf = kvzalloc(qi->cluster_size, GFP_NOIO);
	r = -ENOMEM;
	if (buf) {
		r = old ? qcow2_read(qc, old, buf, qi->cluster_size) : 0;
		if (!r)
			r = qcow2_write(qc, new, buf, qi->cluster_size);
		kvfree(buf);
	}
	if (r) {
		qcow2_unref(qc, new, qi->cluster_size);
		return r;
	}
	qcow2_l2c_invalidate(&qc->cache, new, qi->cluster_size);
	WRITE_ONCE(qc->l1[i], new);
	set_bit(i, qc->l1_copied);
	set_bit(i * 8 / qc->lbs, qc->l1_dirty);
	qcow2_touch(qc);
	if (old)
		qcow2_unref_later(qc, old, qi->cluster_size);
	*l2_off = new;
	return 0;
}

/*
 * Read (@store false) or store the L2 entry (and bitmap) of guest offset
 * @off, loading its slice as needed.  Under meta_lock.
 */
static int qcow2_l2_access(struct qcow2_c *qc, u64 off, u64 *ent, bool store)
{
	u32 words = qc->qi.l2_entry_words;
	u64 l2_off, slice_off;
	u32 pos;
	int r;

	r = qcow2_l2_table(qc, off, &l2_off);
	if (r)
		return r;
	qcow2_slice_pos(qc, l2_off, off, &slice_off, &pos);
	for (;;) {
		if (store && qcow2_l2c_store(&qc->cache, slice_off, pos, words, ent)) {
			qcow2_touch(qc);
			return 0;
		}
		if (!store && qcow2_l2c_lookup(&qc->cache, slice_off, pos, words, ent))
			return 0;
		r = qcow2_slice_load(qc, slice_off);
		if (r)
			return r;
	}
}

int qcow2_l2_get(struct qcow2_c *qc, u64 off, u64 *ent)
{
	return qcow2_l2_access(qc, off, ent, false);
}

int qcow2_l2_set(struct qcow2_c *qc, u64 off, u64 *ent)
{
	return qcow2_l2_access(qc, off, ent, true);
}
