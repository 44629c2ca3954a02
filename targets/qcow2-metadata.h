/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The bgraph-qcow2 metadata engine: the L1 table, L2 entries, refcounts,
 * allocation and the order in which metadata reaches the file device
 * (qcow2-meta.c, qcow2-refcount.c).  The target methods and the write
 * path hold policy; they change metadata only through these functions.
 *
 * Commit protocol, QEMU's write-back: a new cluster's refcount and L2
 * entry change in memory once its data is written (qcow2_touch() records
 * that something awaits a flush), and reach the file at a flush, or when
 * the cache must evict, in dependency order: refcount blocks, refcount
 * table, flush, L2 slices, flush, L1, flush (qcow2_writeback()).  A
 * reference dropped (a copied shared cluster, a discard) is queued with
 * qcow2_unref_later() and applied by qcow2_flush() only after the entries
 * that dropped it are on disk and every bio that saw the old entries has
 * ended (the epochs).
 *
 * Locks: meta_lock (a mutex) guards the L1 table, the refcount table and
 * blocks, the allocator and every L2 change made by a worker; flush_lock
 * orders flushes.  L2 entries may also be stored from a bio's completion
 * (qcow2_alloc_store()) while no write-back runs.  Unless said otherwise,
 * every function here may sleep and does synchronous I/O on the file
 * device with dm-io: never from map() or a completion.  Functions return
 * 0 or a negative errno.
 */
#ifndef DM_BGRAPH_QCOW2_METADATA_H
#define DM_BGRAPH_QCOW2_METADATA_H

struct qcow2_image;
struct qcow2_io;
struct qcow2_rb;

/* Opening an image (qcow2-meta.c) */

/**
 * qcow2_meta_init() - set up the engine's locks, lists and work of a new
 * node; allocates nothing
 * @img: the node
 */
void qcow2_meta_init(struct qcow2_image *img);

/**
 * qcow2_meta_load_header() - read and check the image header into
 * @img->info
 * @img: the node, its file child open
 * @error: set to the reason on failure (a constant string)
 *
 * Context: constructor or preresume; sleeps.
 * Return: 0, -EINVAL or -EOPNOTSUPP for an image we refuse, or another
 * negative errno.
 */
int qcow2_meta_load_header(struct qcow2_image *img, char **error);

/**
 * qcow2_meta_writable_init() - refuse an image QEMU would not write
 * without a repair, and allocate what writing needs
 * @img: the node, its header loaded, its children open
 * @error: set to the reason on failure
 *
 * Context: constructor; sleeps.
 * Return: 0, -EINVAL or -ENOMEM.
 */
int qcow2_meta_writable_init(struct qcow2_image *img, char **error);

/**
 * qcow2_meta_load_tables() - load the L1 table (and, writable, the
 * refcount table) and check that no metadata overlaps
 * @img: the node, its header loaded
 * @error: set to the reason on failure
 *
 * Context: constructor or preresume; sleeps.
 * Return: 0 or a negative errno.
 */
int qcow2_meta_load_tables(struct qcow2_image *img, char **error);

/**
 * qcow2_meta_reload() - read the header and tables again before the
 * first I/O of a writable table, since the table it replaced may have
 * written after this one's constructor read them
 * @img: the node
 * @error: set to the reason on failure
 *
 * Context: preresume; sleeps.
 * Return: 0, or a negative errno when the image changed in a way this
 * table cannot follow (tables resized, dirty or corrupt).
 */
int qcow2_meta_reload(struct qcow2_image *img, char **error);

/**
 * qcow2_meta_free() - free what the engine allocated for @img, after
 * stopping zeroing ahead
 * @img: the node; nothing may use its metadata any more
 *
 * Context: destructor; sleeps.
 */
void qcow2_meta_free(struct qcow2_image *img);

/* What the target methods and the write path may read (lock-free) */

/* Metadata changed in memory awaits a flush: an empty flush must wait. */
static inline bool qcow2_meta_pending(struct qcow2_image *img)
{
	return READ_ONCE(img->meta_dirty) || !list_empty_careful(&img->frees);
}

/* Metadata changed in memory is not on disk: a FUA write must flush. */
static inline bool qcow2_meta_unwritten(struct qcow2_image *img)
{
	return READ_ONCE(img->meta_dirty);
}

/* We set the header's dirty bit (lazy refcounts), for status. */
static inline bool qcow2_meta_marked_dirty(struct qcow2_image *img)
{
	return READ_ONCE(img->hdr_dirty);
}

/*
 * Under meta_lock: must the header's dirty bit be set before an
 * allocation (lazy refcounts, not yet set)?
 */
static inline bool qcow2_meta_must_mark(struct qcow2_image *img)
{
	return !img->hdr_dirty &&
	       (img->info.compat & QCOW2_COMPAT_LAZY_REFCOUNTS);
}

/* Under meta_lock: the L2 table mapping @off, or 0 (none yet). */
static inline u64 qcow2_meta_l2_table(struct qcow2_image *img, u64 off)
{
	return img->l1[qcow2_l1_index(&img->info, off)];
}

/*
 * Under meta_lock: the L2 table of L1 entry @i if it is ours to change
 * in place (refcount 1, QCOW2_OFLAG_COPIED), else 0.
 */
static inline u64 qcow2_meta_l2_owned(struct qcow2_image *img, u32 i)
{
	return test_bit(i, img->l1_copied) ? img->l1[i] : 0;
}

/* Synchronous I/O and lookups (qcow2-meta.c) */

/**
 * qcow2_dev_read() - read bytes of a child synchronously: bg_sync_read()
 * with the node's dm-io client
 * @img: the node
 * @bdev: its file or backing child
 * @off: byte offset; need not be aligned (a bounce buffer is used)
 * @buf: kmalloc or vmalloc memory of @len bytes
 * @len: bytes to read; those past the device's end read as zeros
 *
 * Context: process context, may sleep (GFP_NOIO).  Any lock.
 * Return: 0 or a negative errno.
 */
int qcow2_dev_read(struct qcow2_image *img, struct block_device *bdev,
		   u64 off, void *buf, u64 len);

/**
 * qcow2_read() - qcow2_dev_read() of the file device
 * @img: the node
 * @off: byte offset
 * @buf: destination
 * @len: bytes
 *
 * Context: may sleep.
 * Return: 0 or a negative errno.
 */
int qcow2_read(struct qcow2_image *img, u64 off, void *buf, u64 len);

/**
 * qcow2_write() - write to the file device synchronously
 * @img: the node
 * @off: byte offset, aligned to the device's logical block size
 * @buf: source
 * @len: bytes, aligned likewise; never past the device's end
 *
 * Context: may sleep.
 * Return: 0, -EIO past the end, or the dm-io error.
 */
int qcow2_write(struct qcow2_image *img, u64 off, const void *buf, u64 len);

/**
 * qcow2_slice_pos() - where the L2 entry of a guest offset is cached
 * @img: the node
 * @l2_off: file offset of the L2 table
 * @off: guest offset
 * @slice_off: set to the file offset of the slice holding its entry
 * @pos: set to the byte of that slice where the entry starts
 *
 * Context: any; no lock.
 */
void qcow2_slice_pos(struct qcow2_image *img, u64 l2_off, u64 off,
		     u64 *slice_off, u32 *pos);

/**
 * qcow2_lookup() - map the first extent of a guest range
 * @img: the node
 * @off: guest offset
 * @len: bytes of the range
 * @may_load: read a missing L2 slice in (worker only)
 * @ext: set to the extent; BACKING past the backing child's end, or
 *	without one, is ZERO
 *
 * Context: with @may_load, process context (sleeps); without, any
 * context, no lock: it never sleeps.
 * Return: 0; -EWOULDBLOCK on a cache miss without @may_load; or an
 * errno reading the slice.
 */
int qcow2_lookup(struct qcow2_image *img, u64 off, u64 len, bool may_load,
		 struct qcow2_extent *ext);

/* Write-back, flush and the header (qcow2-meta.c) */

/**
 * qcow2_writeback() - make every metadata change so far durable
 * @img: the node
 *
 * Writes in dependency order (see the top of this file) and flushes the
 * file device even when nothing was dirty.  No L2 entry is stored from
 * a completion meanwhile.
 *
 * Context: meta_lock held; sleeps.
 * Return: 0 or a negative errno (the metadata stays dirty in memory).
 */
int qcow2_writeback(struct qcow2_image *img);

/**
 * qcow2_flush() - what a flush bio asks: everything written is durable
 * @img: the node
 *
 * Writes back, then drops the references queued by qcow2_unref_later()
 * once no bio that saw the old entries is left.
 *
 * Context: takes flush_lock and meta_lock: neither held; sleeps.
 * Return: 0 or a negative errno.
 */
int qcow2_flush(struct qcow2_image *img);

/**
 * qcow2_header_update() - set and clear bits of a header field
 * @img: the node
 * @field: byte offset of a big-endian u64 of the v3 header
 * @set: bits to set
 * @clear: bits to clear
 *
 * Reads, patches and writes the header's first logical block, then
 * flushes.
 *
 * Context: sleeps; meta_lock held, or the node not live yet (ctr).
 * Return: 0 or a negative errno.
 */
int qcow2_header_update(struct qcow2_image *img, u32 field, u64 set, u64 clear);

/**
 * qcow2_mark_dirty() - set the header's dirty bit before the first write
 * @img: the node
 *
 * Only with lazy refcounts (compat bit 0), as QEMU does; a no-op once set.
 *
 * Context: meta_lock held; sleeps.
 * Return: 0 or a negative errno.
 */
int qcow2_mark_dirty(struct qcow2_image *img);

/**
 * qcow2_make_clean() - write everything back and clear the dirty bit
 * @img: the node
 *
 * Context: suspend or destruction, no I/O in flight; takes the locks.
 * Return: 0 or a negative errno (logged).
 */
int qcow2_make_clean(struct qcow2_image *img);

/**
 * qcow2_l2_get() - read the L2 entry (and bitmap) of a guest offset
 * @img: the node
 * @off: guest offset
 * @ent: set to the entry, then (extended L2) its subcluster bitmap
 *
 * Makes the L2 table ours first (allocated, or copied from a snapshot's)
 * and loads its slice, writing metadata back if its cache set is full.
 *
 * Context: meta_lock held; sleeps.
 * Return: 0 or a negative errno (-ENOSPC: the file device is full).
 */
int qcow2_l2_get(struct qcow2_image *img, u64 off, u64 *ent);

/**
 * qcow2_l2_set() - store the L2 entry (and bitmap) of a guest offset
 * @img: the node
 * @off: guest offset
 * @ent: the entry, then (extended L2) its subcluster bitmap
 *
 * As qcow2_l2_get(); the entry reaches the file at the next write-back.
 *
 * Context: meta_lock held; sleeps.
 * Return: 0 or a negative errno.
 */
int qcow2_l2_set(struct qcow2_image *img, u64 off, u64 *ent);

/* Epochs, refcounts and allocation (qcow2-refcount.c) */

/**
 * qcow2_epoch_get() - count a bio that looks at L2 in the current epoch
 * @img: the node
 * @io: the bio's per-bio data; records the epoch
 *
 * Context: any (map()); no lock.
 */
void qcow2_epoch_get(struct qcow2_image *img, struct qcow2_io *io);

/**
 * qcow2_epoch_put() - the bio counted by qcow2_epoch_get() has ended
 * @img: the node
 * @io: its per-bio data; nothing if it was not counted
 *
 * Context: any (end_io); no lock.
 */
void qcow2_epoch_put(struct qcow2_image *img, struct qcow2_io *io);

/**
 * qcow2_epoch_drain() - wait for every bio counted before now to end
 * @img: the node
 *
 * Context: flush_lock held, meta_lock not held; sleeps.
 */
void qcow2_epoch_drain(struct qcow2_image *img);

/**
 * qcow2_touch() - note that metadata changed in memory awaits a flush
 * @img: the node
 *
 * Context: any; meta_lock or store_lock held.
 */
void qcow2_touch(struct qcow2_image *img);

/**
 * qcow2_rb_write() - write a cached refcount block to the file device
 * @img: the node
 * @b: the block; clean afterwards
 *
 * Context: meta_lock held; sleeps.
 * Return: 0 or a negative errno.
 */
int qcow2_rb_write(struct qcow2_image *img, struct qcow2_rb *b);

/**
 * qcow2_alloc_how() - take a free cluster of the file device
 * @img: the node
 * @host: set to the cluster's file offset; its refcount is 1 in memory
 * @nowait: fail with -EWOULDBLOCK instead of any I/O or wait
 * @zeroed: if not NULL, set to whether the cluster holds zeros already
 *	(zeroed ahead)
 *
 * Creates a refcount block, or a larger refcount table, as needed.
 *
 * Context: meta_lock held.  With @nowait it never sleeps (but the lock);
 * else it may do I/O and wait for the zeroing ahead.
 * Return: 0, -ENOSPC when the device is full, -EWOULDBLOCK (@nowait), or
 * a negative errno.
 */
int qcow2_alloc_how(struct qcow2_image *img, u64 *host, bool nowait,
		    bool *zeroed);

/**
 * qcow2_alloc() - qcow2_alloc_how() that may block
 * @img: the node
 * @host: set to the cluster's file offset
 *
 * Context: meta_lock held; sleeps.
 * Return: 0 or a negative errno.
 */
int qcow2_alloc(struct qcow2_image *img, u64 *host);

/**
 * qcow2_pz_work() - zero the next batch of free clusters ahead
 * @work: the node's pz_work
 *
 * Context: a system workqueue; takes meta_lock, sleeps.
 */
void qcow2_pz_work(struct work_struct *work);

/**
 * qcow2_pz_halt() - stop zeroing ahead and forget the zone (suspend)
 * @img: the node
 *
 * Context: meta_lock not held; sleeps.  Resume allows it again.
 */
void qcow2_pz_halt(struct qcow2_image *img);

/**
 * qcow2_pz_start() - let zeroing ahead run again
 * @img: the node
 *
 * Context: resume; takes meta_lock.
 */
void qcow2_pz_start(struct qcow2_image *img);

/**
 * qcow2_alloc_rescan() - search for free clusters from the file's start
 * again (it grew)
 * @img: the node
 *
 * Context: process context; takes meta_lock.
 */
void qcow2_alloc_rescan(struct qcow2_image *img);

/**
 * qcow2_unref() - drop one reference of every cluster of a range, now
 * @img: the node
 * @off: file offset
 * @len: bytes
 *
 * For references whose entries are on disk, or never were.  A cluster
 * that reaches 0 is free and discarded on the file device.
 *
 * Context: meta_lock held; sleeps.
 */
void qcow2_unref(struct qcow2_image *img, u64 off, u64 len);

/**
 * qcow2_unref_later() - drop these references after the next flush
 * @img: the node
 * @off: file offset
 * @len: bytes
 *
 * Context: meta_lock held; may sleep (GFP_NOIO).  Out of memory, the
 * clusters leak (logged), which is never harm.
 */
void qcow2_unref_later(struct qcow2_image *img, u64 off, u64 len);

#endif
