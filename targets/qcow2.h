/* SPDX-License-Identifier: GPL-2.0 */
/*
 * bgraph-qcow2 internals, shared by its files:
 *
 *   qcow2.c           target methods, constructor and destructor
 *   qcow2-write.c     the write path: copy-on-write, allocations started
 *                     in map(), writes held for lack of space, the worker
 *   qcow2-meta.c      the metadata engine: synchronous I/O, lookups,
 *                     L1/L2 changes, write-back, flush, header bits
 *   qcow2-refcount.c  the metadata engine: refcounts, allocation, zeroing
 *                     ahead, frees and the epochs that guard them
 *   qcow2-cache.c     the L2 slice cache
 *   qcow2-compress.c  reading compressed clusters
 *   qcow2-format.c    the on-disk format (pure logic, also in user space)
 *
 * The engine's contract (who may sleep, which lock is held) is in
 * qcow2-metadata.h; this header holds the node's struct and the helpers
 * of the other files.
 */
#ifndef DM_BGRAPH_QCOW2_H
#define DM_BGRAPH_QCOW2_H

#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/mutex.h>
#include <linux/seqlock.h>
#include <linux/spinlock.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <linux/device-mapper.h>

#include "../dm-bgraph/bgraph.h"
#include "qcow2-format.h"

#define DM_MSG_PREFIX "bgraph-qcow2"

#define L2C_WAYS		8	/* slices per cache set */
#define L2C_MIN_SLICES		(2 * L2C_WAYS)
#define L2C_MAX_SLICE		4096u	/* bytes of L2 table per slice */
#define MAP_MAX_ENTRIES		32	/* L2 entries looked at per extent */

/* ---------------------------------------------------------------- */
/* L2 slice cache (qcow2-cache.c)                                   */
/* ---------------------------------------------------------------- */

struct l2c_way {
	u64 key;		/* file offset of the slice + 1; 0: empty */
	u32 stamp;		/* set clock at the last use */
	bool dirty;		/* changed, not written: never evicted */
};

struct l2c_set {
	spinlock_t lock;	/* the ways, their slices and the clock */
	seqcount_spinlock_t seq;	/* keys and slices changed */
	u32 clock;
	u32 hint;		/* the way used last: looked at first */
	u32 gen;		/* bumped when a slice changes or turns
				 * clean: a slice read from the file before
				 * may be stale and is not inserted
				 */
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

/*
 * The cache's contract.  Slices are keyed by their file offset
 * (@slice_off); positions (@pos) are bytes within a slice, entries are
 * handed in and out host-endian.  A set's spinlock is taken with
 * interrupts off, so every function but init and exit may be called from
 * any context; none sleeps but qcow2_l2c_init().
 */

/**
 * qcow2_l2c_init() - allocate a cache of about @bytes
 * @c: the cache, zeroed
 * @slice_bytes: bytes of L2 table per slice, a power of two
 * @bytes: the size asked for: rounded down to a power-of-two number of
 *	sets of L2C_WAYS slices, at least L2C_MIN_SLICES slices
 *
 * Context: process context, may sleep (GFP_KERNEL).
 * Return: 0 or -ENOMEM (qcow2_l2c_exit() frees what was allocated).
 */
int qcow2_l2c_init(struct l2_cache *c, u32 slice_bytes, u64 bytes);

/**
 * qcow2_l2c_exit() - free the cache
 * @c: the cache, initialised or zeroed
 *
 * Context: process context; nothing uses the cache any more.
 */
void qcow2_l2c_exit(struct l2_cache *c);

/**
 * qcow2_l2c_slot() - the memory of way @w of @set
 * @c: the cache
 * @set: one of its sets
 * @w: a way, below L2C_WAYS
 *
 * Context: any; to read a dirty slice, meta_lock held (write-back).
 * Return: the slice's first byte.
 */
u8 *qcow2_l2c_slot(struct l2_cache *c, struct l2c_set *set, unsigned int w);

/**
 * qcow2_l2c_decode() - big-endian L2 words to host-endian ones
 * @raw: @nwords big-endian u64s
 * @nwords: how many
 * @out: @nwords host-endian u64s
 *
 * Context: any.
 */
void qcow2_l2c_decode(const void *raw, u32 nwords, u64 *out);

/**
 * qcow2_l2c_lookup() - copy entries out of a cached slice
 * @c: the cache
 * @slice_off: the slice
 * @pos: byte of the first word in the slice
 * @nwords: words to copy
 * @out: set to them, host-endian
 *
 * Lock-free: reads the set under its seqcount.  Counts a hit; misses are
 * counted where slices are read.
 *
 * Context: any, no lock; never sleeps (map()).
 * Return: false on a miss.
 */
bool qcow2_l2c_lookup(struct l2_cache *c, u64 slice_off, u32 pos,
		      u32 nwords, u64 *out);

/**
 * qcow2_l2c_gen() - the generation of @slice_off's set
 * @c: the cache
 * @slice_off: the slice about to be read from the file
 *
 * Context: any.
 * Return: the generation, for qcow2_l2c_insert().
 */
u32 qcow2_l2c_gen(struct l2_cache *c, u64 slice_off);

/**
 * qcow2_l2c_insert() - put a slice read from the file in the cache
 * @c: the cache
 * @slice_off: the slice
 * @raw: its bytes, big-endian as on disk
 * @gen: qcow2_l2c_gen() of its set, taken before the read
 *
 * Replaces the least used clean slice of the set.
 *
 * Context: any.
 * Return: false if not put: the set changed since @gen (the copy may be
 * stale), or all its ways are dirty.
 */
bool qcow2_l2c_insert(struct l2_cache *c, u64 slice_off, const void *raw,
		      u32 gen);

/**
 * qcow2_l2c_store() - change entries of a cached slice and mark it dirty
 * @c: the cache
 * @slice_off: the slice
 * @pos: byte of the first word in the slice
 * @nwords: words to store
 * @in: the words, host-endian
 *
 * Context: any; meta_lock held, or from a completion while no write-back
 * runs (store_lock held and stores open: qcow2_alloc_store()).
 * Return: false if the slice is not cached.
 */
bool qcow2_l2c_store(struct l2_cache *c, u64 slice_off, u32 pos,
		     u32 nwords, const u64 *in);

/**
 * qcow2_l2c_has_room() - whether a slice could be inserted in its set
 * @c: the cache
 * @slice_off: the slice
 *
 * Context: any.
 * Return: true if a way of the set is clean.
 */
bool qcow2_l2c_has_room(struct l2_cache *c, u64 slice_off);

/**
 * qcow2_l2c_invalidate() - drop the clean slices of a file range
 * @c: the cache
 * @off: file offset of a new L2 table
 * @len: its bytes
 *
 * Context: any; meta_lock held.
 */
void qcow2_l2c_invalidate(struct l2_cache *c, u64 off, u64 len);

/**
 * qcow2_l2c_counts() - the numbers status shows
 * @c: the cache
 * @hits: set to the lookups served
 * @misses: set to the slices read
 * @used: set to the ways holding a slice
 *
 * Context: any.
 */
void qcow2_l2c_counts(struct l2_cache *c, u64 *hits, u64 *misses,
		      u64 *used);

/* ---------------------------------------------------------------- */
/* The node                                                         */
/* ---------------------------------------------------------------- */

/*
 * The node's mode, as dm-thin's pool_mode: one value where there were
 * separate flags, changed only by qcow2_set_mode() under held_lock.
 *
 *   NEW --resume--> WRITE or READ_ONLY <--resume-- SUSPENDED
 *                   WRITE --no free cluster--> NO_SPACE --resize--> WRITE
 *   WRITE, NO_SPACE, READ_ONLY --presuspend--> SUSPENDED
 *
 * NEW: constructed, never resumed: a writable table reads the image
 * again at its first resume (preresume), after the table it replaces has
 * written everything back.  NO_SPACE: writes that need a cluster wait on
 * the held list (status flag no_space, a dm event on entry).  SUSPENDED:
 * from presuspend to resume; a write that needs room is requeued (noflush
 * suspend) or fails with -ENOSPC instead of being held.
 */
enum qcow2_mode {
	QCOW2_MODE_NEW,
	QCOW2_MODE_WRITE,
	QCOW2_MODE_NO_SPACE,
	QCOW2_MODE_READ_ONLY,
	QCOW2_MODE_SUSPENDED,
};

struct qcow2_image {
	struct bg_instance *inst;
	struct dm_dev *file;
	struct dm_dev *backing;		/* or NULL: unallocated reads zeros */
	struct qcow2_info info;
	u64 *l1;			/* host-endian L2 table offsets */
	struct l2_cache cache;
	struct dm_io_client *io;
	/*
	 * Deferred bios, and empty flushes apart: a work item must not wait
	 * for items of its own workqueue.  A worker waits for the children's
	 * bios, which another bgraph-qcow2 node may defer, and a flush for
	 * the node's deferred bios to end (qcow2_epoch_drain()).  When
	 * workers cannot be created fast enough, the WQ_MEM_RECLAIM rescuer
	 * takes the pending items (on 6.1, all at once) and runs them one
	 * after the other: blocked in one, it would never start the other.
	 */
	struct workqueue_struct *wq;
	struct workqueue_struct *flush_wq;
	/*
	 * The ends of allocations started in map() that could not end in
	 * their bio's completion (qcow2_alloc_done_work()): they wait for
	 * meta_lock only, and the items of the two queues above may wait
	 * for them (a cluster in flight, a drain).
	 *
	 * So three WQ_MEM_RECLAIM queues per node, not fewer: merged, a
	 * rescuer running the items one by one could block in a worker
	 * waiting for a drain or a cluster in flight whose end is queued
	 * behind it.  Nor one set shared by all bgraph-qcow2 nodes: a node's
	 * worker waits, under its meta_lock, for its children's bios, and a
	 * child may be another bgraph-qcow2 node whose items would then
	 * queue behind the first node's, waiting for that meta_lock.
	 */
	struct workqueue_struct *done_wq;
	struct bio_set bs;		/* for splits in the worker */
	struct bio_set cow_bs;		/* allocating writes from map() */
	u64 cache_arg;			/* l2_cache_size as given, or 0 */
	bool writable;			/* the table writes, no read_only */
	bool read_only;			/* the read_only option */
	bool error_if_no_space;
	struct bg_io_opts io_opts;	/* discard, detect_zeroes */

	/*
	 * From here to the in-flight list: the metadata engine's own
	 * (qcow2-metadata.h).  Other files call its functions and read
	 * these only through its accessors.
	 *
	 * Writing.  Metadata is written back, QEMU's way: a new cluster's
	 * refcount and L2 entry change in memory once its data is written,
	 * and reach the file at a flush (or when the cache must evict), in
	 * dependency order: refcount blocks, refcount table, flush, L2
	 * slices, flush, L1, flush.  References dropped (a copied shared
	 * cluster, a discard) are applied only after the entries that
	 * dropped them are on disk.
	 */
	struct mutex meta_lock;		/* L1, refcounts, L2 changes */
	struct mutex flush_lock;	/* one flush at a time */
	unsigned long *l1_copied;	/* L1 entries with the copied flag */
	unsigned long *l1_dirty;	/* logical blocks of L1 to write */
	u64 *reftable;			/* host-endian refcount block offsets */
	u32 reftable_n;
	unsigned long *rt_dirty;	/* logical blocks of it to write */
	struct qcow2_rb *rb;		/* refcount block cache */
	u32 rb_slots;
	u32 rb_clock;
	u64 free_hint;			/* cluster index to search from */
	struct list_head frees;		/* qcow2_free: after the next flush */
	bool meta_dirty;		/* something above awaits a flush */
	bool hdr_dirty;			/* we set the header's dirty bit */
	u32 lbs;			/* file device logical block size */
	bool no_zeroout;		/* it refused a write-zeroes */

	/*
	 * Zeroing ahead (qcow2_pz_work()): the free clusters [pz_start,
	 * pz_end) of the file device hold zeros on disk, so a cluster the
	 * allocator takes from there needs no zero fill, only its write's
	 * data; [pz_end, pz_next) are being zeroed while pz_busy.  Cluster
	 * indexes.  pz_start moves past every cluster the allocator takes,
	 * so a cluster in the zone was free ever since it was zeroed.
	 * Under meta_lock, but for pz_end and pz_busy, which the zeroing
	 * work sets when its zeroes are on the device (readers under
	 * meta_lock wait on pz_wq for pz_busy to drop).
	 */
	bool pz_on;			/* no backing, no extended L2 */
	bool pz_stop;			/* suspended, or a zeroing failed */
	bool pz_busy;
	u64 pz_start, pz_end, pz_next;
	struct work_struct pz_work;
	wait_queue_head_t pz_wq;

	/*
	 * L2 entries stored from a bio's completion, outside meta_lock
	 * (qcow2_alloc_store()); closed while a write-back runs, which then
	 * sees no entry change under it and writes no entry whose data was
	 * written after its first flush.
	 */
	spinlock_t store_lock;
	unsigned int stores_closed;	/* closers at work */

	/* Guest clusters being written by copy-on-write. */
	spinlock_t inflight_lock;
	struct list_head inflight;
	wait_queue_head_t inflight_wq;

	/*
	 * Bios that may touch a cluster about to be freed: counted per
	 * epoch from map() to end_io, and drained before references drop.
	 */
	atomic_t users[2];
	unsigned int epoch;
	wait_queue_head_t drain_wq;

	/* Writes held for lack of space, and the mode. */
	spinlock_t held_lock;
	struct bio_list held;
	enum qcow2_mode mode;		/* only qcow2_set_mode() changes it */
};

BG_CONTEXT(struct qcow2_image);

struct qcow2_rb {
	u64 off;			/* file offset; 0: empty slot */
	u8 *data;			/* a cluster */
	u32 stamp;
	bool dirty;
};

struct qcow2_free {
	struct list_head list;
	u64 off, len;
};

struct qcow2_inflight {
	struct list_head list;
	u64 cluster;			/* guest cluster index */
};

/* Per bio: the worker item of a deferred bio. */
struct qcow2_io {
	struct work_struct work;
	struct qcow2_image *img;
	int epoch;			/* users[] it counts in, or -1 */
	/* An allocation started in map(): */
	struct qcow2_inflight me;
	atomic_t pending;		/* its bios not ended */
	blk_status_t status;		/* an error of theirs */
	bool zero_refused;		/* a write-zeroes not supported */
	bool zeroes;			/* a write of zeros (detect_zeroes) */
	u64 db, de;			/* the data's bytes in the cluster */
	u64 wbegin, wend;		/* the cluster's bytes written */
	u64 off;			/* guest offset */
	u64 host;			/* the new cluster */
	u64 slice_off;			/* its L2 entry's slice */
	u32 pos;			/* and byte in it */
	u64 nent[2];			/* the entry (and bitmap) to store */
};

static inline const char *qcow2_name(struct qcow2_image *img)
{
	return img->inst->node->name;
}

/* ---------------------------------------------------------------- */
/* Bio helpers                                                      */
/* ---------------------------------------------------------------- */

/*
 * Map only the first @len bytes of @bio now; dm core sends the rest to
 * map() again.  A bio that fits (nearly every one) is left as it is: dm
 * then does not treat it as split.
 */
static inline void qcow2_accept(struct bio *bio, u64 len)
{
	if (len < bio->bi_iter.bi_size)
		dm_accept_partial_bio(bio, len >> SECTOR_SHIFT);
}

/* Does [@off, @off + @len) hold a whole cluster? */
static inline bool qcow2_covers_cluster(struct qcow2_image *img, u64 off,
					u64 len)
{
	u64 cs = img->info.cluster_size;

	return round_up(off, cs) + cs <= off + len;
}

static inline void qcow2_remap(struct bio *bio, struct dm_dev *dev, u64 off)
{
	bio_set_dev(bio, dev->bdev);
	bio->bi_iter.bi_sector = off >> SECTOR_SHIFT;
}

static inline void qcow2_bad_entry(struct qcow2_image *img, u64 off,
				   const struct qcow2_extent *ext)
{
	DMERR_LIMIT("%s: bad L2 entry for guest offset %llu: %s",
		    qcow2_name(img), off, ext->error);
}

static inline void qcow2_end(struct bio *bio, int r)
{
	bio->bi_status = errno_to_blk_status(r);
	bio_endio(bio);
}

/* ---------------------------------------------------------------- */
/* Compressed clusters (qcow2-compress.c)                           */
/* ---------------------------------------------------------------- */

int qcow2_decompress(struct qcow2_image *img, u64 host_off, u64 csize, u8 *out,
		     u64 off);
int qcow2_read_compressed(struct qcow2_image *img, struct bio *bio, u64 off,
			  const struct qcow2_extent *ext);

/* ---------------------------------------------------------------- */
/* The write path and the worker (qcow2-write.c)                    */
/* ---------------------------------------------------------------- */

bool qcow2_inflight_busy(struct qcow2_image *img, u64 cluster);
void qcow2_inflight_add(struct qcow2_image *img, struct qcow2_inflight *f);
void qcow2_inflight_del(struct qcow2_image *img, struct qcow2_inflight *f);
bool qcow2_set_mode(struct qcow2_image *img, enum qcow2_mode mode);
void qcow2_mode_announce(struct qcow2_image *img);
bool qcow2_start_alloc_map(struct qcow2_image *img, struct bio *bio, u64 off);
void qcow2_release_held(struct qcow2_image *img, bool fail, blk_status_t st);
int qcow2_defer(struct qcow2_image *img, struct bio *bio);

#include "qcow2-metadata.h"

#endif
