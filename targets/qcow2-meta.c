// SPDX-License-Identifier: GPL-2.0
/*
 * bgraph-qcow2: the metadata engine, part one: synchronous I/O on the
 * children, lookups through the L2 cache, the L1 table and L2 entries,
 * and write-back in dependency order (the commit protocol is described
 * in qcow2-metadata.h).
 */
#include <linux/slab.h>

#include "qcow2.h"

/* ---------------------------------------------------------------- */
/* Synchronous I/O and lookups                                      */
/* ---------------------------------------------------------------- */

int qcow2_dev_read(struct qcow2_image *img, struct block_device *bdev,
		   u64 off, void *buf, u64 len)
{
	return bg_sync_read(img->io, bdev, off, buf, len);
}

int qcow2_read(struct qcow2_image *img, u64 off, void *buf, u64 len)
{
	return bg_sync_read(img->io, img->file->bdev, off, buf, len);
}

int qcow2_write(struct qcow2_image *img, u64 off, const void *buf, u64 len)
{
	return bg_sync_write(img->io, img->file->bdev, off, buf, len);
}

/*
 * The slice of the L2 table at @l2_off that maps guest offset @off, and
 * the byte of that slice where its entry starts.  Slices are a power of
 * two bytes: masks, not divisions, on map()'s path.
 */
void qcow2_slice_pos(struct qcow2_image *img, u64 l2_off, u64 off,
		     u64 *slice_off, u32 *pos)
{
	u64 at = qcow2_l2_index(&img->info, off) * 8 * img->info.l2_entry_words;

	*slice_off = l2_off + (at & ~(u64)(img->cache.slice_bytes - 1));
	*pos = at & (img->cache.slice_bytes - 1);
}

/*
 * qcow2_lookup() - the first extent of guest range [@off, @off + @len),
 * resolved against the backing child: BACKING past the backing child's
 * end, or without one, becomes ZERO.  With @may_load (worker only) a
 * missing L2 slice is read in; without, a miss returns -EWOULDBLOCK.
 */
int qcow2_lookup(struct qcow2_image *img, u64 off, u64 len,
		 bool may_load, struct qcow2_extent *ext)
{
	const struct qcow2_info *qi = &img->info;
	u32 words = qi->l2_entry_words;
	u64 l2_off = READ_ONCE(img->l1[qcow2_l1_index(qi, off)]);
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

	qcow2_slice_pos(img, l2_off, off, &slice_off, &pos);
	last = (off + len - 1) >> qi->cluster_bits;
	/* Entries left in the slice: 8 or 16 bytes each. */
	n = min3(last - (off >> qi->cluster_bits) + 1,
		 (u64)((img->cache.slice_bytes - pos) >> (words == 2 ? 4 : 3)),
		 (u64)MAP_MAX_ENTRIES);

	if (!qcow2_l2c_lookup(&img->cache, slice_off, pos, n * words, entries)) {
		u32 gen;

		if (!may_load)
			return -EWOULDBLOCK;
		raw = kmalloc(img->cache.slice_bytes, GFP_NOIO);
		if (!raw)
			return -ENOMEM;
		gen = qcow2_l2c_gen(&img->cache, slice_off);
		r = qcow2_read(img, slice_off, raw, img->cache.slice_bytes);
		if (r) {
			kfree(raw);
			DMERR_LIMIT("%s: cannot read L2 table at %llu: %d",
				    qcow2_name(img), slice_off, r);
			return r;
		}
		this_cpu_inc(img->cache.stats->misses);
		qcow2_l2c_insert(&img->cache, slice_off, raw, gen);
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
		u64 end = img->backing ? bdev_nr_bytes(img->backing->bdev) : 0;

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
static int qcow2_write_table(struct qcow2_image *img, u64 table_off,
			     const u64 *ent, u32 n, unsigned long *dirty,
			     bool l1)
{
	u32 per = img->lbs / 8, nblocks = DIV_ROUND_UP(n, per), b;
	u8 *buf;
	int r = 0;

	buf = kmalloc(img->lbs, GFP_NOIO);
	if (!buf)
		return -ENOMEM;
	for_each_set_bit(b, dirty, nblocks) {
		qcow2_encode_table(ent, n, b * per, per,
				   l1 ? img->l1_copied : NULL, buf);
		r = qcow2_write(img, table_off + (u64)b * img->lbs, buf, img->lbs);
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
static int qcow2_l2_writeback(struct qcow2_image *img, bool *wrote)
{
	struct l2_cache *c = &img->cache;
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
			r = qcow2_write(img, set->way[w].key - 1,
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
static void qcow2_stores_gate(struct qcow2_image *img, bool close)
{
	spin_lock_irq(&img->store_lock);
	if (close)
		img->stores_closed++;
	else
		img->stores_closed--;
	spin_unlock_irq(&img->store_lock);
}

static int __qcow2_writeback(struct qcow2_image *img);

/*
 * qcow2_writeback() - make every metadata change so far durable, in
 * dependency order: refcount blocks and table, flush (this also makes
 * the data written before durable), L2 slices, flush, L1, flush.  The
 * file device is flushed even when nothing was dirty.  No entry is
 * stored from a completion meanwhile.  Under meta_lock.
 */
int qcow2_writeback(struct qcow2_image *img)
{
	int r;

	if (!READ_ONCE(img->meta_dirty))
		return blkdev_issue_flush(img->file->bdev);
	qcow2_stores_gate(img, true);
	r = __qcow2_writeback(img);
	qcow2_stores_gate(img, false);
	return r;
}

static int __qcow2_writeback(struct qcow2_image *img)
{
	const struct qcow2_info *qi = &img->info;
	u32 per = img->lbs / 8;
	bool wrote = false;
	u32 i;
	int r;

	for (i = 0; i < img->rb_slots; i++) {
		if (img->rb[i].off && img->rb[i].dirty) {
			r = qcow2_rb_write(img, &img->rb[i]);
			if (r)
				return r;
		}
	}
	if (qcow2_any_bit(img->rt_dirty, img->reftable_n, per)) {
		/* The new blocks first, then the table that points at them. */
		r = blkdev_issue_flush(img->file->bdev);
		if (!r)
			r = qcow2_write_table(img, qi->reftable_offset, img->reftable,
					      img->reftable_n, img->rt_dirty, false);
		if (r)
			return r;
	}
	r = blkdev_issue_flush(img->file->bdev);
	if (r)
		return r;
	r = qcow2_l2_writeback(img, &wrote);
	if (r)
		return r;
	if (qcow2_any_bit(img->l1_dirty, qi->l1_size, per)) {
		if (wrote) {
			r = blkdev_issue_flush(img->file->bdev);
			if (r)
				return r;
		}
		r = qcow2_write_table(img, qi->l1_offset, img->l1, qi->l1_size,
				      img->l1_dirty, true);
		if (r)
			return r;
		wrote = true;
	}
	if (wrote) {
		r = blkdev_issue_flush(img->file->bdev);
		if (r)
			return r;
	}
	WRITE_ONCE(img->meta_dirty, false);
	return 0;
}

/*
 * qcow2_flush() - what a flush bio asks: everything written before is
 * durable.  Then drop the references queued by copy-on-write and discard,
 * once no bio that saw the old entries is left.
 */
int qcow2_flush(struct qcow2_image *img)
{
	struct qcow2_free *f, *tmp;
	LIST_HEAD(frees);
	u32 i;
	int r;

	mutex_lock(&img->flush_lock);
	mutex_lock(&img->meta_lock);
	r = qcow2_writeback(img);
	if (!r)
		list_splice_init(&img->frees, &frees);
	mutex_unlock(&img->meta_lock);
	if (!r && !list_empty(&frees)) {
		qcow2_epoch_drain(img);
		mutex_lock(&img->meta_lock);
		list_for_each_entry_safe(f, tmp, &frees, list) {
			qcow2_unref(img, f->off, f->len);
			list_del(&f->list);
			kfree(f);
		}
		/* No flush needed: a lost decrement is a leak, never harm. */
		for (i = 0; i < img->rb_slots; i++)
			if (img->rb[i].off && img->rb[i].dirty && !r)
				r = qcow2_rb_write(img, &img->rb[i]);
		mutex_unlock(&img->meta_lock);
	}
	mutex_unlock(&img->flush_lock);
	return r;
}

/* Set or clear header bits: @field is a u64 of the v3 header. */
int qcow2_header_update(struct qcow2_image *img, u32 field, u64 set,
			u64 clear)
{
	u8 *buf;
	int r;

	buf = kmalloc(img->lbs, GFP_NOIO);
	if (!buf)
		return -ENOMEM;
	r = qcow2_read(img, 0, buf, img->lbs);
	if (!r)
		r = qcow2_header_update_bits(buf, img->lbs, field, set, clear);
	if (!r)
		r = qcow2_write(img, 0, buf, img->lbs);
	if (!r)
		r = blkdev_issue_flush(img->file->bdev);
	kfree(buf);
	return r;
}

/*
 * Lazy refcounts (compat bit 0): QEMU may leave refcounts stale while the
 * header says dirty.  We keep them exact, but mark the image dirty while
 * it is being written, as QEMU does, and clean on suspend.
 */
int qcow2_mark_dirty(struct qcow2_image *img)
{
	int r;

	if (img->hdr_dirty || !(img->info.compat & QCOW2_COMPAT_LAZY_REFCOUNTS))
		return 0;
	r = qcow2_header_update(img, QCOW2_HDR_INCOMPAT, QCOW2_INCOMPAT_DIRTY, 0);
	if (!r)
		img->hdr_dirty = true;
	return r;
}

/* Everything written back and the header clean: suspend, removal. */
int qcow2_make_clean(struct qcow2_image *img)
{
	int r = qcow2_flush(img);

	if (r) {
		DMERR("%s: cannot write metadata back: %d", qcow2_name(img), r);
		return r;
	}
	mutex_lock(&img->meta_lock);
	if (img->hdr_dirty && !READ_ONCE(img->meta_dirty)) {
		r = qcow2_header_update(img, QCOW2_HDR_INCOMPAT, 0,
					QCOW2_INCOMPAT_DIRTY);
		if (!r)
			img->hdr_dirty = false;
	}
	mutex_unlock(&img->meta_lock);
	return r;
}

/* ---------------------------------------------------------------- */
/* Writing: L2 entries                                              */
/* ---------------------------------------------------------------- */

/*
 * Make sure the slice at @slice_off is cached, writing metadata back when
 * its set is all dirty.  Under meta_lock.
 */
static int qcow2_slice_load(struct qcow2_image *img, u64 slice_off)
{
	u64 dummy;
	void *raw;
	u32 gen;
	int r;

	if (qcow2_l2c_lookup(&img->cache, slice_off, 0, 1, &dummy))
		return 0;
	if (!qcow2_l2c_has_room(&img->cache, slice_off)) {
		r = qcow2_writeback(img);
		if (r)
			return r;
	}
	raw = kmalloc(img->cache.slice_bytes, GFP_NOIO);
	if (!raw)
		return -ENOMEM;
	/*
	 * No store from a completion meanwhile: it would make the copy read
	 * look stale, and a set taking many such stores could refuse it
	 * again and again.
	 */
	qcow2_stores_gate(img, true);
	gen = qcow2_l2c_gen(&img->cache, slice_off);
	r = qcow2_read(img, slice_off, raw, img->cache.slice_bytes);
	if (!r) {
		this_cpu_inc(img->cache.stats->misses);
		qcow2_l2c_insert(&img->cache, slice_off, raw, gen);
	}
	qcow2_stores_gate(img, false);
	kfree(raw);
	return r;
}

/**
 * qcow2_l2_table() - the L2 table for a guest offset, ours to change
 * @img: the node
 * @off: guest offset
 * @l2_off: set to the table's file offset
 *
 * Allocated (zeroed on disk) when there is none, copied when it is shared
 * with a snapshot.  The L1 entry changes in memory.
 *
 * Context: meta_lock held; sleeps.
 * Return: 0 or a negative errno (-ENOSPC: the file device is full).
 */
static int qcow2_l2_table(struct qcow2_image *img, u64 off, u64 *l2_off)
{
	const struct qcow2_info *qi = &img->info;
	u64 i = qcow2_l1_index(qi, off), old = img->l1[i], new;
	u8 *buf;
	int r;

	if (old && test_bit(i, img->l1_copied)) {
		*l2_off = old;
		return 0;
	}
	r = qcow2_alloc(img, &new);
	if (r)
		return r;
	buf = kvzalloc(qi->cluster_size, GFP_NOIO);
	r = -ENOMEM;
	if (buf) {
		r = old ? qcow2_read(img, old, buf, qi->cluster_size) : 0;
		if (!r)
			r = qcow2_write(img, new, buf, qi->cluster_size);
		kvfree(buf);
	}
	if (r) {
		qcow2_unref(img, new, qi->cluster_size);
		return r;
	}
	qcow2_l2c_invalidate(&img->cache, new, qi->cluster_size);
	WRITE_ONCE(img->l1[i], new);
	set_bit(i, img->l1_copied);
	set_bit(i * 8 / img->lbs, img->l1_dirty);
	qcow2_touch(img);
	if (old)
		qcow2_unref_later(img, old, qi->cluster_size);
	*l2_off = new;
	return 0;
}

/*
 * Read (@store false) or store the L2 entry (and bitmap) of guest offset
 * @off, loading its slice as needed.  Under meta_lock.
 */
static int qcow2_l2_access(struct qcow2_image *img, u64 off, u64 *ent, bool store)
{
	u32 words = img->info.l2_entry_words;
	u64 l2_off, slice_off;
	u32 pos;
	int r;

	r = qcow2_l2_table(img, off, &l2_off);
	if (r)
		return r;
	qcow2_slice_pos(img, l2_off, off, &slice_off, &pos);
	for (;;) {
		if (store && qcow2_l2c_store(&img->cache, slice_off, pos, words, ent)) {
			qcow2_touch(img);
			return 0;
		}
		if (!store && qcow2_l2c_lookup(&img->cache, slice_off, pos, words, ent))
			return 0;
		r = qcow2_slice_load(img, slice_off);
		if (r)
			return r;
	}
}

int qcow2_l2_get(struct qcow2_image *img, u64 off, u64 *ent)
{
	return qcow2_l2_access(img, off, ent, false);
}

int qcow2_l2_set(struct qcow2_image *img, u64 off, u64 *ent)
{
	return qcow2_l2_access(img, off, ent, true);
}

/* ---------------------------------------------------------------- */
/* Opening an image: header, tables, the writing state              */
/* ---------------------------------------------------------------- */

int qcow2_meta_load_header(struct qcow2_image *img, char **error)
{
	u64 file_size = bdev_nr_bytes(img->file->bdev);
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
	r = qcow2_read(img, 0, buf, SECTOR_SIZE);
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
	r = qcow2_read(img, 0, buf, len);
	if (r) {
		*error = "Cannot read the image header";
		goto out;
	}
	r = qcow2_parse_header(buf, len, file_size, &img->info, &why);
	if (r == -EOPNOTSUPP && img->info.unknown_name[0])
		DMERR("%s: unknown incompatible feature bit %u: %s",
		      qcow2_name(img), img->info.unknown_bit, img->info.unknown_name);
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
static int qcow2_load_one_table(struct qcow2_image *img, u64 off, u32 n, bool l1,
				u64 **out, unsigned long *copied, char **error)
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
	r = qcow2_read(img, off, raw, bytes);
	if (r) {
		*error = "Cannot read the image tables";
		goto out;
	}
	r = qcow2_load_table(&img->info, raw, n, l1, *out, &bad, &why);
	if (!r && copied) {
		const __be64 *e = (const __be64 *)raw;
		u32 i;

		for (i = 0; i < n; i++)
			if (be64_to_cpu(e[i]) & QCOW2_OFLAG_COPIED)
				set_bit(i, copied);
	}
	if (r) {
		DMERR("%s: %s table entry %u is bad", qcow2_name(img),
		      l1 ? "L1" : "refcount", bad);
		*error = (char *)why;
	}
out:
	kvfree(raw);
	return r;
}

/*
 * A writable table: refuse an image QEMU would not write without a
 * repair, and allocate what writing needs.
 */
int qcow2_meta_writable_init(struct qcow2_image *img, char **error)
{
	const struct qcow2_info *qi = &img->info;
	u32 i;

	if (qi->corrupt) {
		*error = "image is marked corrupt: run 'qemu-img check -r all' first";
		return -EINVAL;
	}
	if (qi->dirty) {
		*error = "image is dirty (lazy refcounts): run 'qemu-img check -r all' first";
		return -EINVAL;
	}
	if (qi->tables_past_end) {
		*error = "image tables run past the end of the file device: grow the file to write";
		return -EINVAL;
	}
	img->lbs = bdev_logical_block_size(img->file->bdev);
	/*
	 * Zeroing ahead only pays where new clusters are filled with zeros:
	 * not where the fill comes from a backing child, nor with extended
	 * L2 (a new cluster's other subclusters stay unallocated).
	 */
	img->pz_on = !img->backing && !qi->extended_l2;
	img->l1_copied = bitmap_zalloc(max(qi->l1_size, 1u), GFP_KERNEL);
	img->l1_dirty = bitmap_zalloc(DIV_ROUND_UP(qcow2_l1_bytes(qi), img->lbs) + 1,
				      GFP_KERNEL);
	img->rt_dirty = bitmap_zalloc(DIV_ROUND_UP(qcow2_reftable_bytes(qi), img->lbs) + 1,
				      GFP_KERNEL);
	img->rb_slots = clamp_t(u32, SZ_1M >> qi->cluster_bits, 2, 16);
	img->rb = kcalloc(img->rb_slots, sizeof(*img->rb), GFP_KERNEL);
	if (!img->l1_copied || !img->l1_dirty || !img->rt_dirty || !img->rb)
		goto nomem;
	for (i = 0; i < img->rb_slots; i++) {
		img->rb[i].data = kvmalloc(qi->cluster_size, GFP_KERNEL);
		if (!img->rb[i].data)
			goto nomem;
	}
	return 0;
nomem:
	*error = "Cannot allocate the writing state";
	return -ENOMEM;
}

/* Load the L1 table and check that no metadata overlaps. */
int qcow2_meta_load_tables(struct qcow2_image *img, char **error)
{
	const struct qcow2_info *qi = &img->info;
	struct qcow2_range *scratch = NULL;
	const char *why;
	u64 *reftable;
	u64 n;
	int r;

	r = qcow2_load_one_table(img, qi->l1_offset, qi->l1_size, true,
				 &img->l1, img->l1_copied, error);
	if (r)
		return r;
	r = qcow2_load_one_table(img, qi->reftable_offset,
				 qcow2_reftable_bytes(qi) / 8, false,
				 &reftable, NULL, error);
	if (r)
		goto out;
	n = qcow2_overlap_ranges(qi, img->l1, reftable);
	scratch = kvmalloc_array(n, sizeof(*scratch), GFP_KERNEL);
	if (!scratch) {
		*error = "Cannot allocate the overlap check";
		r = -ENOMEM;
		goto out;
	}
	r = qcow2_check_overlaps(qi, img->l1, reftable, scratch, n, &why);
	if (r)
		*error = (char *)why;
	if (!r && img->writable) {
		/* Kept for allocation. */
		img->reftable = reftable;
		img->reftable_n = qcow2_reftable_bytes(qi) / 8;
		reftable = NULL;
	}
out:
	kvfree(scratch);
	kvfree(reftable);
	return r;
}

/*
 * A writable table read the image in its constructor, while the table it
 * replaced could still write; read the header and tables again.
 */
int qcow2_meta_reload(struct qcow2_image *img, char **error)
{
	struct qcow2_info old = img->info;
	int r;

	kvfree(img->l1);
	img->l1 = NULL;
	kvfree(img->reftable);
	img->reftable = NULL;
	bitmap_zero(img->l1_copied, max(old.l1_size, 1u));
	r = qcow2_meta_load_header(img, error);
	if (!r && (img->info.l1_size != old.l1_size ||
		   img->info.reftable_clusters != old.reftable_clusters ||
		   img->info.cluster_bits != old.cluster_bits)) {
		*error = "image tables changed size since the table was loaded";
		r = -EINVAL;
	}
	if (!r && (img->info.dirty || img->info.corrupt)) {
		*error = "image became dirty or corrupt since the table was loaded";
		r = -EINVAL;
	}
	if (!r)
		r = qcow2_meta_load_tables(img, error);
	if (!r)
		img->free_hint = 0;
	return r;
}

/* What qcow2_meta_init() and the loads set up, freed. */
void qcow2_meta_free(struct qcow2_image *img)
{
	struct qcow2_free *f, *tmp;
	u32 i;

	cancel_work_sync(&img->pz_work);
	list_for_each_entry_safe(f, tmp, &img->frees, list)
		kfree(f);
	for (i = 0; img->rb && i < img->rb_slots; i++)
		kvfree(img->rb[i].data);
	kfree(img->rb);
	kvfree(img->reftable);
	bitmap_free(img->l1_copied);
	bitmap_free(img->l1_dirty);
	bitmap_free(img->rt_dirty);
	kvfree(img->l1);
}

void qcow2_meta_init(struct qcow2_image *img)
{
	mutex_init(&img->meta_lock);
	mutex_init(&img->flush_lock);
	INIT_LIST_HEAD(&img->frees);
	spin_lock_init(&img->store_lock);
	INIT_WORK(&img->pz_work, qcow2_pz_work);
	init_waitqueue_head(&img->pz_wq);
	img->pz_stop = true;		/* until resumed */
}
