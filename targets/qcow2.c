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
 *
 * Writes to clusters the image owns are remapped in map() too.  A write
 * that allocates a cluster whose fill is all zeros is also started there
 * when all it needs is in memory (qcow2_start_alloc()); everything else
 * that writes goes to the worker, which starts such writes the same way
 * once it has read what they need, and does the others itself.
 */
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>
#include <linux/hash.h>
#include <linux/log2.h>
#include <linux/percpu.h>
#include <linux/seqlock.h>
#include <linux/sched/mm.h>
#include <linux/workqueue.h>
#include <linux/dm-io.h>
#include <linux/zlib.h>
#include <linux/zstd.h>
#include <linux/device-mapper.h>

#include "../dm-bgraph/bgraph.h"
#include "qcow2-args.h"
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
 * takes the client's mutex.  This cache is set-associative: a lookup
 * copies the few L2 entries it needs and never sleeps, so map() serves
 * hits without a worker, and nodes share no lock.  A lookup (one per bio)
 * takes no lock either: it reads its set under the set's seqcount and
 * reads again if a slice of the set was replaced or changed meanwhile.
 * Whatever changes a set (insert, store, invalidate, write-back) holds
 * the set's spinlock.  A way's LRU stamp is bumped without the lock; a
 * lost bump only makes the choice of victim less exact.  Memory: the
 * configured size rounded down to a power-of-two number of sets,
 * allocated at construction.
 */
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
	for (i = 0; i < c->nsets; i++) {
		spin_lock_init(&c->sets[i].lock);
		seqcount_spinlock_init(&c->sets[i].seq, &c->sets[i].lock);
	}
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

/* Mark way @w of @set used now; with or without the set's lock. */
static void l2c_touch(struct l2c_set *set, unsigned int w)
{
	u32 clock = READ_ONCE(set->clock) + 1;

	WRITE_ONCE(set->clock, clock);
	WRITE_ONCE(set->way[w].stamp, clock);
	WRITE_ONCE(set->hint, w);
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
	unsigned int w, seq;

	do {
		seq = read_seqcount_begin(&set->seq);
		w = READ_ONCE(set->hint) % L2C_WAYS;
		if (READ_ONCE(set->way[w].key) != slice_off + 1) {
			for (w = 0; w < L2C_WAYS; w++)
				if (READ_ONCE(set->way[w].key) == slice_off + 1)
					break;
			if (w == L2C_WAYS)
				continue;
		}
		l2c_decode(l2c_slot(c, set, w) + pos, nwords, out);
	} while (read_seqcount_retry(&set->seq, seq));
	if (w == L2C_WAYS)
		return false;
	/* Already the newest (one hot slice in its set): nothing to store. */
	if (READ_ONCE(set->way[w].stamp) != READ_ONCE(set->clock))
		l2c_touch(set, w);
	this_cpu_inc(c->stats->hits);
	return true;
}

/* The generation of @slice_off's set, taken before reading the slice. */
static u32 l2c_gen(struct l2_cache *c, u64 slice_off)
{
	struct l2c_set *set = l2c_set(c, slice_off);
	unsigned long flags;
	u32 gen;

	spin_lock_irqsave(&set->lock, flags);
	gen = set->gen;
	spin_unlock_irqrestore(&set->lock, flags);
	return gen;
}

/*
 * Put a slice read from the file (when its set was at generation @gen) in
 * the cache, over the least used clean one.  Returns false if it was not
 * put: a slice of the set changed since (the copy may be stale), or every
 * way holds a dirty slice.
 */
static bool l2c_insert(struct l2_cache *c, u64 slice_off, const void *raw,
		       u32 gen)
{
	struct l2c_set *set = l2c_set(c, slice_off);
	unsigned long flags;
	bool done = false;
	int victim = -1;
	unsigned int w;

	spin_lock_irqsave(&set->lock, flags);
	if (set->gen != gen)
		goto out;
	for (w = 0; w < L2C_WAYS; w++) {
		struct l2c_way *way = &set->way[w];

		if (way->key == slice_off + 1) {
			done = true;	/* another worker was first */
			goto out;
		}
		if (way->dirty)
			continue;
		if (victim < 0 || !way->key ||
		    (set->way[victim].key &&
		     (s32)(READ_ONCE(way->stamp) -
			   READ_ONCE(set->way[victim].stamp)) < 0))
			victim = w;
	}
	if (victim < 0)
		goto out;
	write_seqcount_begin(&set->seq);
	memcpy(l2c_slot(c, set, victim), raw, c->slice_bytes);
	WRITE_ONCE(set->way[victim].key, slice_off + 1);
	write_seqcount_end(&set->seq);
	l2c_touch(set, victim);
	done = true;
out:
	spin_unlock_irqrestore(&set->lock, flags);
	return done;
}

/*
 * l2c_store() - write @nwords host-endian words at byte @pos of the
 * cached slice at @slice_off and mark it dirty.  False if it is not
 * cached.  Under the node's meta_lock, or from a completion while no
 * write-back runs (qcow2_alloc_store()).  Any context.
 */
static bool l2c_store(struct l2_cache *c, u64 slice_off, u32 pos,
		      u32 nwords, const u64 *in)
{
	struct l2c_set *set = l2c_set(c, slice_off);
	unsigned long flags;
	unsigned int w;
	__be64 *dst;
	u32 i;

	spin_lock_irqsave(&set->lock, flags);
	for (w = 0; w < L2C_WAYS; w++)
		if (set->way[w].key == slice_off + 1)
			break;
	if (w == L2C_WAYS) {
		spin_unlock_irqrestore(&set->lock, flags);
		return false;
	}
	dst = (__be64 *)(l2c_slot(c, set, w) + pos);
	write_seqcount_begin(&set->seq);
	for (i = 0; i < nwords; i++)
		dst[i] = cpu_to_be64(in[i]);
	write_seqcount_end(&set->seq);
	set->way[w].dirty = true;
	l2c_touch(set, w);
	set->gen++;
	spin_unlock_irqrestore(&set->lock, flags);
	return true;
}

/* Whether a slice at @slice_off could be inserted (a clean way exists). */
static bool l2c_has_room(struct l2_cache *c, u64 slice_off)
{
	struct l2c_set *set = l2c_set(c, slice_off);
	unsigned long flags;
	unsigned int w;
	bool room = false;

	spin_lock_irqsave(&set->lock, flags);
	for (w = 0; w < L2C_WAYS; w++)
		room |= !set->way[w].dirty;
	spin_unlock_irqrestore(&set->lock, flags);
	return room;
}

/* Drop the clean slices in [@off, @off + @len): a new L2 table there. */
static void l2c_invalidate(struct l2_cache *c, u64 off, u64 len)
{
	u64 so;

	for (so = off; so < off + len; so += c->slice_bytes) {
		struct l2c_set *set = l2c_set(c, so);
		unsigned long flags;
		unsigned int w;

		spin_lock_irqsave(&set->lock, flags);
		write_seqcount_begin(&set->seq);
		for (w = 0; w < L2C_WAYS; w++)
			if (set->way[w].key == so + 1 && !set->way[w].dirty)
				WRITE_ONCE(set->way[w].key, 0);
		write_seqcount_end(&set->seq);
		set->gen++;
		spin_unlock_irqrestore(&set->lock, flags);
	}
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
	 */
	struct workqueue_struct *done_wq;
	struct bio_set bs;		/* for splits in the worker */
	struct bio_set cow_bs;		/* allocating writes from map() */
	u64 cache_arg;			/* l2_cache_size as given, or 0 */
	bool writable;			/* the table writes, no read_only */
	bool read_only;			/* the read_only option */
	bool error_if_no_space;

	/*
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

	/* Writes held for lack of space. */
	spinlock_t held_lock;
	struct bio_list held;
	bool no_space;
	bool suspending;
	bool reread;			/* image read again at first resume */
};

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
	struct qcow2_c *qc;
	int epoch;			/* users[] it counts in, or -1 */
	/* An allocation started in map(): */
	struct qcow2_inflight me;
	atomic_t pending;		/* its bios not ended */
	blk_status_t status;		/* an error of theirs */
	bool zero_refused;		/* a write-zeroes not supported */
	u64 db, de;			/* the data's bytes in the cluster */
	u64 wbegin, wend;		/* the cluster's bytes written */
	u64 off;			/* guest offset */
	u64 host;			/* the new cluster */
	u64 slice_off;			/* its L2 entry's slice */
	u32 pos;			/* and byte in it */
	u64 nent[2];			/* the entry (and bitmap) to store */
};

static const char *qcow2_name(struct qcow2_c *qc)
{
	return qc->inst->node->name;
}

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
static int qcow2_dev_read(struct qcow2_c *qc, struct block_device *bdev,
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

static int qcow2_read(struct qcow2_c *qc, u64 off, void *buf, u64 len)
{
	return qcow2_dev_read(qc, qc->file->bdev, off, buf, len);
}

/*
 * Write @len bytes at @off of the file device, both aligned to its
 * logical block size; never past its end.
 */
static int qcow2_write(struct qcow2_c *qc, u64 off, const void *buf, u64 len)
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
static void qcow2_slice_pos(struct qcow2_c *qc, u64 l2_off, u64 off,
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
static int qcow2_lookup(struct qcow2_c *qc, u64 off, u64 len,
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

	if (!l2c_lookup(&qc->cache, slice_off, pos, n * words, entries)) {
		u32 gen;

		if (!may_load)
			return -EWOULDBLOCK;
		raw = kmalloc(qc->cache.slice_bytes, GFP_NOIO);
		if (!raw)
			return -ENOMEM;
		gen = l2c_gen(&qc->cache, slice_off);
		r = qcow2_read(qc, slice_off, raw, qc->cache.slice_bytes);
		if (r) {
			kfree(raw);
			DMERR_LIMIT("%s: cannot read L2 table at %llu: %d",
				    qcow2_name(qc), slice_off, r);
			return r;
		}
		this_cpu_inc(qc->cache.stats->misses);
		l2c_insert(&qc->cache, slice_off, raw, gen);
		l2c_decode(raw + pos, n * words, entries);
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
/* Bio helpers                                                      */
/* ---------------------------------------------------------------- */

/*
 * Map only the first @len bytes of @bio now; dm core sends the rest to
 * map() again.  A bio that fits (nearly every one) is left as it is: dm
 * then does not treat it as split.
 */
static void qcow2_accept(struct bio *bio, u64 len)
{
	if (len < bio->bi_iter.bi_size)
		dm_accept_partial_bio(bio, len >> SECTOR_SHIFT);
}

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
 * Read the compressed cluster of @csize bytes at @host_off and decompress
 * it into @out (a cluster); @off is the guest offset, for the message.
 */
static int qcow2_decompress(struct qcow2_c *qc, u64 host_off, u64 csize,
			    u8 *out, u64 off)
{
	u64 cs = qc->qi.cluster_size;
	u64 start = round_down(host_off, SECTOR_SIZE);
	u64 skip = host_off - start;
	u64 rlen = round_up(skip + csize, SECTOR_SIZE);
	u8 *in;
	int r;

	in = kvmalloc(rlen, GFP_NOIO);
	if (!in)
		return -ENOMEM;
	r = qcow2_read(qc, start, in, rlen);
	if (r)
		goto out;
	if (qc->qi.compression_type == QCOW2_COMPRESSION_ZSTD)
		r = qcow2_unzstd(in + skip, csize, out, cs);
	else
		r = qcow2_inflate(in + skip, csize, out, cs);
	if (r)
		DMERR_LIMIT("%s: cannot decompress the cluster at %llu for guest offset %llu",
			    qcow2_name(qc), host_off, off);
out:
	kvfree(in);
	return r;
}

/*
 * Read a compressed cluster, decompress it and copy the part @bio covers
 * (guest offset @off) into it.  Worker context.
 */
static int qcow2_read_compressed(struct qcow2_c *qc, struct bio *bio, u64 off,
				 const struct qcow2_extent *ext)
{
	u64 cs = qc->qi.cluster_size;
	u8 *out;
	int r;

	out = kvmalloc(cs, GFP_NOIO);
	if (!out)
		return -ENOMEM;
	r = qcow2_decompress(qc, ext->host_off, ext->csize, out, off);
	if (!r)
		qcow2_copy_to_bio(bio, out + (off & (cs - 1)));
	kvfree(out);
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

/* ---------------------------------------------------------------- */
/* Writing: epochs, refcounts, allocation, write-back               */
/* ---------------------------------------------------------------- */

static void qcow2_epoch_get(struct qcow2_c *qc, struct qcow2_io *io)
{
	int e = READ_ONCE(qc->epoch) & 1;

	atomic_inc(&qc->users[e]);
	/* Count before looking at L2, so a free waits for this bio. */
	smp_mb__after_atomic();
	io->epoch = e;
}

static void qcow2_epoch_put(struct qcow2_c *qc, struct qcow2_io *io)
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
static void qcow2_epoch_drain(struct qcow2_c *qc)
{
	unsigned int old = qc->epoch & 1;

	WRITE_ONCE(qc->epoch, qc->epoch + 1);
	/* Pairs with qcow2_epoch_get(): new bios count in the new epoch. */
	smp_mb();
	wait_event(qc->drain_wq, !atomic_read(&qc->users[old]));
}

static void qcow2_touch(struct qcow2_c *qc)
{
	WRITE_ONCE(qc->meta_dirty, true);
}

static int qcow2_rb_write(struct qcow2_c *qc, struct qcow2_rb *b)
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

static int qcow2_writeback(struct qcow2_c *qc);
static void qcow2_unref(struct qcow2_c *qc, u64 off, u64 len);

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
	__be64 *raw = NULL;
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
	for (i = 0; i < n; i++)
		raw[i] = cpu_to_be64(table[i]);
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
	if (!r) {
		*(__be64 *)(buf + QCOW2_HDR_REFTABLE) =
			cpu_to_be64((area + 1) << qi->cluster_bits);
		*(__be32 *)(buf + QCOW2_HDR_REFTABLE_CLUSTERS) =
			cpu_to_be32(clusters);
		r = qcow2_write(qc, 0, buf, qc->lbs);
	}
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
static int qcow2_alloc_how(struct qcow2_c *qc, u64 *host, bool nowait,
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

static int qcow2_alloc(struct qcow2_c *qc, u64 *host)
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
 * writes only its data (qcow2_start_alloc()), and the zeros cost one
 * write-zeroes request per batch (written zero pages where the file
 * device has none, in this worker, not in the writer).  Only free clusters
 * are zeroed, only those the allocator takes next, and nothing refers to
 * them: a crash meanwhile leaves nothing to repair.  The zeros are on the
 * device before pz_end moves over them, so before any data goes there.
 */
static void qcow2_pz_work(struct work_struct *work)
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
static void qcow2_pz_halt(struct qcow2_c *qc)
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
static void qcow2_unref(struct qcow2_c *qc, u64 off, u64 len)
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
static void qcow2_unref_later(struct qcow2_c *qc, u64 off, u64 len)
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

/*
 * Write the dirty logical blocks of a table of @n entries at @table_off:
 * the L1 table (@l1) or the refcount table.
 */
static int qcow2_write_table(struct qcow2_c *qc, u64 table_off,
			     const u64 *ent, u32 n, unsigned long *dirty,
			     bool l1)
{
	u32 per = qc->lbs / 8, nblocks = DIV_ROUND_UP(n, per), b, k, i;
	__be64 *buf;
	int r = 0;

	buf = kmalloc(qc->lbs, GFP_NOIO);
	if (!buf)
		return -ENOMEM;
	for_each_set_bit(b, dirty, nblocks) {
		for (k = 0; k < per; k++) {
			u64 v = 0;

			i = b * per + k;
			if (i < n && ent[i]) {
				v = ent[i];
				if (l1 && test_bit(i, qc->l1_copied))
					v |= QCOW2_OFLAG_COPIED;
			}
			buf[k] = cpu_to_be64(v);
		}
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
					l2c_slot(c, set, w), c->slice_bytes);
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
static int qcow2_writeback(struct qcow2_c *qc)
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
static int qcow2_flush(struct qcow2_c *qc)
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
static int qcow2_header_update(struct qcow2_c *qc, u32 field, u64 set,
			       u64 clear)
{
	__be64 *p;
	u8 *buf;
	int r;

	buf = kmalloc(qc->lbs, GFP_NOIO);
	if (!buf)
		return -ENOMEM;
	r = qcow2_read(qc, 0, buf, qc->lbs);
	if (!r) {
		p = (__be64 *)(buf + field);
		*p = cpu_to_be64((be64_to_cpu(*p) | set) & ~clear);
		r = qcow2_write(qc, 0, buf, qc->lbs);
	}
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
static int qcow2_mark_dirty(struct qcow2_c *qc)
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
static int qcow2_make_clean(struct qcow2_c *qc)
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

	if (l2c_lookup(&qc->cache, slice_off, 0, 1, &dummy))
		return 0;
	if (!l2c_has_room(&qc->cache, slice_off)) {
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
	gen = l2c_gen(&qc->cache, slice_off);
	r = qcow2_read(qc, slice_off, raw, qc->cache.slice_bytes);
	if (!r) {
		this_cpu_inc(qc->cache.stats->misses);
		l2c_insert(&qc->cache, slice_off, raw, gen);
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
	l2c_invalidate(&qc->cache, new, qi->cluster_size);
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
		if (store && l2c_store(&qc->cache, slice_off, pos, words, ent)) {
			qcow2_touch(qc);
			return 0;
		}
		if (!store && l2c_lookup(&qc->cache, slice_off, pos, words, ent))
			return 0;
		r = qcow2_slice_load(qc, slice_off);
		if (r)
			return r;
	}
}

static int qcow2_l2_get(struct qcow2_c *qc, u64 off, u64 *ent)
{
	return qcow2_l2_access(qc, off, ent, false);
}

static int qcow2_l2_set(struct qcow2_c *qc, u64 off, u64 *ent)
{
	return qcow2_l2_access(qc, off, ent, true);
}

static bool qcow2_inflight_busy(struct qcow2_c *qc, u64 cluster)
{
	struct qcow2_inflight *f;
	bool busy = false;

	spin_lock_irq(&qc->inflight_lock);
	list_for_each_entry(f, &qc->inflight, list)
		busy |= f->cluster == cluster;
	spin_unlock_irq(&qc->inflight_lock);
	return busy;
}

static void qcow2_inflight_add(struct qcow2_c *qc, struct qcow2_inflight *f)
{
	spin_lock_irq(&qc->inflight_lock);
	list_add(&f->list, &qc->inflight);
	spin_unlock_irq(&qc->inflight_lock);
}

/* Any context: an allocation from map() ends in its write's completion. */
static void qcow2_inflight_del(struct qcow2_c *qc, struct qcow2_inflight *f)
{
	unsigned long flags;

	spin_lock_irqsave(&qc->inflight_lock, flags);
	list_del(&f->list);
	spin_unlock_irqrestore(&qc->inflight_lock, flags);
	if (wq_has_sleeper(&qc->inflight_wq))
		wake_up_all(&qc->inflight_wq);
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
static int qcow2_zero_cow(struct qcow2_c *qc, struct bio *bio, u64 off,
			  u64 len, const struct qcow2_wplan *p, u64 host,
			  bool zeroed)
{
	const unsigned int flags = BLKDEV_ZERO_NOUNMAP | BLKDEV_ZERO_NOFALLBACK;
	const struct qcow2_info *qi = &qc->qi;
	struct block_device *bdev = qc->file->bdev;
	u64 base = off & ~(qi->cluster_size - 1), db, de;
	bool data = bio && bio_op(bio) == REQ_OP_WRITE, backing_zeros;
	u8 *buf;
	int r = 0;

	if (!zeroed &&
	    (READ_ONCE(qc->no_zeroout) || !bdev_write_zeroes_sectors(bdev)))
		return -EOPNOTSUPP;
	backing_zeros = !qc->backing ||
		base + p->wbegin >= bdev_nr_bytes(qc->backing->bdev);
	if (!qcow2_plan_zero_fill(qi, p, off, len, qc->lbs, backing_zeros,
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
		WRITE_ONCE(qc->no_zeroout, true);
	if (r || !data)
		return r;
	buf = kvmalloc(de - db, GFP_NOIO);
	if (!buf)
		return -ENOMEM;
	off -= base;		/* within the cluster, from here on */
	memset(buf, 0, off - db);
	qcow2_copy_from_bio(bio, buf + (off - db), len);
	memset(buf + (off - db) + len, 0, de - off - len);
	r = qcow2_write(qc, host + db, buf, de - db);
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
static int qcow2_cow_write(struct qcow2_c *qc, struct bio *bio, u64 off,
			   u64 len, const struct qcow2_wplan *p, u64 host,
			   bool zeroed)
{
	const struct qcow2_info *qi = &qc->qi;
	u64 cs = qi->cluster_size, ss = 1ULL << qi->subcluster_bits;
	u64 base = off & ~(cs - 1), wlen = p->wend - p->wbegin;
	u8 *buf, *cbuf = NULL, *dst;
	u32 sc;
	int r;

	r = qcow2_zero_cow(qc, bio, off, len, p, host, zeroed);
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
			if (qc->backing) {
				r = qcow2_dev_read(qc, qc->backing->bdev,
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
			r = qcow2_read(qc, p->src_host + sc * ss, dst, ss);
			if (r)
				goto out;
			break;
		case QCOW2_SRC_COMPRESSED:
			if (!cbuf) {
				cbuf = kvmalloc(cs, GFP_NOIO);
				r = cbuf ? qcow2_decompress(qc, p->src_host,
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
	r = qcow2_write(qc, host + p->wbegin, buf, wlen);
out:
	kvfree(cbuf);
	kvfree(buf);
	return r;
}

/* Write @len zero bytes at @host of the file device. */
static int qcow2_write_zeros(struct qcow2_c *qc, u64 host, u64 len)
{
	u8 *buf = kvzalloc(len, GFP_NOIO);
	int r;

	if (!buf)
		return -ENOMEM;
	r = qcow2_write(qc, host, buf, len);
	kvfree(buf);
	return r;
}

enum qcow2_wres {
	QCOW2_WR_DONE,		/* written (or nothing to do) */
	QCOW2_WR_INPLACE,	/* write the bio at *host */
};

/*
 * qcow2_write_cluster() - carry out the first @len bytes of @bio, guest
 * offset @off, all within one cluster: a write, write-zeroes or discard.
 * Returns QCOW2_WR_INPLACE with *@host for the caller to remap a write
 * of an allocated cluster we own; else does it all and returns
 * QCOW2_WR_DONE, or a negative errno (-ENOSPC: the file device is full).
 * Writes to one guest cluster that need copy-on-write run one at a time.
 */
static int qcow2_write_cluster(struct qcow2_c *qc, struct bio *bio, u64 off,
			       u64 *lenp, u64 *host)
{
	const struct qcow2_info *qi = &qc->qi;
	struct qcow2_inflight me = { .cluster = off >> qi->cluster_bits };
	u64 len = *lenp;
	bool whole = len == qi->cluster_size, zeroed = false;
	enum req_op op = bio_op(bio);
	struct qcow2_wplan p;
	u64 ent[2] = {}, nent[2] = {}, foff, flen;
	const char *why = "invalid L2 entry";
	int r;

	mutex_lock(&qc->meta_lock);
	while (qcow2_inflight_busy(qc, me.cluster)) {
		mutex_unlock(&qc->meta_lock);
		wait_event(qc->inflight_wq, !qcow2_inflight_busy(qc, me.cluster));
		mutex_lock(&qc->meta_lock);
	}
	r = qcow2_mark_dirty(qc);
	if (r)
		goto unlock;
	if (op == REQ_OP_DISCARD && !whole)
		goto unlock;	/* QEMU's rule: only whole clusters */
	r = qcow2_l2_get(qc, off, ent);
	if (r)
		goto unlock;
	if ((op == REQ_OP_DISCARD || op == REQ_OP_WRITE_ZEROES) && whole) {
		r = qcow2_plan_zero(qi, ent, op == REQ_OP_DISCARD, !!qc->backing,
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
			r = qcow2_l2_set(qc, off, nent);
			if (!r && flen)
				qcow2_unref_later(qc, foff, flen);
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
		u32 sb = qi->subcluster_bits, sc = (off & (qi->cluster_size - 1)) >> sb;
		u32 last = ((off & (qi->cluster_size - 1)) + len - 1) >> sb, i;
		bool a0 = ent[1] >> sc & 1;

		for (i = sc + 1; i <= last; i++)
			if ((ent[1] >> i & 1) != a0)
				break;
		if (i <= last) {
			len = ((u64)i << sb) - (off & (qi->cluster_size - 1));
			*lenp = len;
		}
	}
	qcow2_plan_write(qi, ent, off, len, &p);
	qcow2_plan_align(qi, ent, qc->lbs, &p);
	if (p.kind == QCOW2_W_INVALID) {
		why = p.error;
		goto bad;
	}
	if (p.kind == QCOW2_W_INPLACE) {
		*host = p.host + (off & (qi->cluster_size - 1));
		mutex_unlock(&qc->meta_lock);
		if (op == REQ_OP_WRITE)
			return QCOW2_WR_INPLACE;
		/* Zeroes in place: the file device may not do write-zeroes. */
		return qcow2_write_zeros(qc, *host, len) ?: QCOW2_WR_DONE;
	}
	if (p.alloc) {
		r = qcow2_alloc_how(qc, host, false, &zeroed);
		if (r)
			goto unlock;
	} else {
		*host = p.host;
	}
	qcow2_inflight_add(qc, &me);
	mutex_unlock(&qc->meta_lock);

	r = qcow2_cow_write(qc, bio, off, len, &p, *host, zeroed);

	mutex_lock(&qc->meta_lock);
	if (!r) {
		nent[0] = p.new_entry | (p.alloc ? *host : 0);
		nent[1] = p.new_bitmap;
		r = qcow2_l2_set(qc, off, nent);
	}
	if (r && p.alloc)
		qcow2_unref(qc, *host, qi->cluster_size);	/* unreferenced */
	else if (!r && p.free_len)
		qcow2_unref_later(qc, p.free_off, p.free_len);
	qcow2_inflight_del(qc, &me);
	goto unlock;
bad:
	DMERR_LIMIT("%s: bad L2 entry for guest offset %llu: %s", qcow2_name(qc),
		    off, why);
	r = -EIO;
unlock:
	mutex_unlock(&qc->meta_lock);
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
static bool qcow2_alloc_store(struct qcow2_c *qc, struct qcow2_io *io)
{
	unsigned long flags;
	bool done = false;

	spin_lock_irqsave(&qc->store_lock, flags);
	if (!qc->stores_closed)
		done = l2c_store(&qc->cache, io->slice_off, io->pos,
				 qc->qi.l2_entry_words, io->nent);
	if (done)
		qcow2_touch(qc);
	spin_unlock_irqrestore(&qc->store_lock, flags);
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
	struct qcow2_c *qc = io->qc;
	unsigned int noio = memalloc_noio_save();
	int r = blk_status_to_errno(io->status);

	if (!r && io->zero_refused) {
		/* A loop device over tmpfs on 6.1: write the zeros. */
		WRITE_ONCE(qc->no_zeroout, true);
		if (io->db > io->wbegin)
			r = qcow2_write_zeros(qc, io->host + io->wbegin,
					      io->db - io->wbegin);
		if (!r && io->wend > io->de)
			r = qcow2_write_zeros(qc, io->host + io->de,
					      io->wend - io->de);
	}
	mutex_lock(&qc->meta_lock);
	if (!r)
		r = qcow2_l2_set(qc, io->off, io->nent);
	if (r)
		qcow2_unref(qc, io->host, qc->qi.cluster_size);
	mutex_unlock(&qc->meta_lock);
	qcow2_inflight_del(qc, &io->me);
	memalloc_noio_restore(noio);
	qcow2_end(bio, r);
}

static void qcow2_alloc_endio(struct bio *cow)
{
	struct qcow2_io *io = cow->bi_private;
	struct bio *bio = dm_bio_from_per_bio_data(io, sizeof(*io));
	struct qcow2_c *qc = io->qc;

	if (cow->bi_status == BLK_STS_NOTSUPP &&
	    bio_op(cow) == REQ_OP_WRITE_ZEROES)
		WRITE_ONCE(io->zero_refused, true);
	else if (cow->bi_status)
		WRITE_ONCE(io->status, cow->bi_status);
	bio_put(cow);
	if (!atomic_dec_and_test(&io->pending))
		return;
	if (io->status || io->zero_refused || !qcow2_alloc_store(qc, io)) {
		INIT_WORK(&io->work, qcow2_alloc_done_work);
		queue_work(qc->done_wq, &io->work);
		return;
	}
	qcow2_inflight_del(qc, &io->me);
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
 * qcow2_start_alloc() - start the write of @bio at guest offset @off into
 * a cluster it allocates, when the fill around its data is all zeros.
 * From map() (@worker false), only when all the metadata it needs is in
 * memory: no worker, no I/O but the data's.  From the worker, for a bio
 * within one cluster, after reading in or allocating what it needs; the
 * worker is then free at once, not waiting for the data.  The new
 * cluster's bytes [wbegin, wend) are the bio's own pages and, around
 * them, zeros: nothing when the cluster was zeroed ahead (qcow2_pz_work()),
 * else one write-zeroes bio each side when the file device has
 * write-zeroes (QEMU's way), else the zero page in the data's bio, not a
 * bounce buffer.  The ranges do not overlap, so the bios go out together.
 * The last to end stores the L2 entry, as the worker does after its write
 * (the refcount is taken here, in memory).  Nothing sleeps in map():
 * meta_lock is only tried, bios only allocated if at hand.  Returns false,
 * having allocated nothing, when qcow2_write_bio()'s cluster by cluster
 * path must do it.
 */
static bool qcow2_start_alloc(struct qcow2_c *qc, struct bio *bio, u64 off,
			      bool worker)
{
	const struct qcow2_info *qi = &qc->qi;
	struct qcow2_io *io = dm_per_bio_data(bio, sizeof(*io));
	u64 cs = qi->cluster_size, base = off & ~(cs - 1);
	u64 len = min_t(u64, bio->bi_iter.bi_size, cs - (off - base));
	u64 ent[2] = {}, l2_off, db, de, host;
	u32 i = qcow2_l1_index(qi, off), nvecs;
	struct bio *cow, *zb[2] = {};
	bool wz = !READ_ONCE(qc->no_zeroout) &&
		  bdev_write_zeroes_sectors(qc->file->bdev);
	struct qcow2_wplan p;
	struct bvec_iter it;
	struct bio_vec bv;
	gfp_t gfp = worker ? GFP_NOIO : GFP_NOWAIT;
	u64 zoff[2], zlen[2];
	unsigned int k;
	bool zeroed;

	if (!IS_ALIGNED(off | len, qc->lbs) ||
	    (bio->bi_opf & (REQ_FUA | REQ_PREFLUSH)) ||
	    (worker && len != bio->bi_iter.bi_size))
		return false;
	/*
	 * Another allocation of this cluster first, then its L2 entry: one
	 * started here ends in its write's completion, which stores the
	 * entry and then leaves the in-flight list without meta_lock.  In
	 * the other order, the entry could be read before that store and
	 * the list after it, and the cluster be allocated twice (the first
	 * write lost).  inflight_lock orders the store before what follows.
	 */
	if (worker) {
		mutex_lock(&qc->meta_lock);
		if (qcow2_inflight_busy(qc, off >> qi->cluster_bits) ||
		    qcow2_mark_dirty(qc) || qcow2_l2_get(qc, off, ent))
			goto no;	/* the other path waits, or fails it */
		l2_off = qc->l1[i];
	} else {
		if (!mutex_trylock(&qc->meta_lock))
			return false;
		l2_off = qc->l1[i];
		/* The dirty bit set already, the L2 table ours and cached. */
		if ((!qc->hdr_dirty &&
		     (qi->compat & QCOW2_COMPAT_LAZY_REFCOUNTS)) ||
		    !l2_off || !test_bit(i, qc->l1_copied) ||
		    qcow2_inflight_busy(qc, off >> qi->cluster_bits))
			goto no;
	}
	qcow2_slice_pos(qc, l2_off, off, &io->slice_off, &io->pos);
	if (!worker && !l2c_lookup(&qc->cache, io->slice_off, io->pos,
				   qi->l2_entry_words, ent))
		goto no;
	qcow2_plan_write(qi, ent, off, len, &p);
	qcow2_plan_align(qi, ent, qc->lbs, &p);
	if (p.kind != QCOW2_W_COW || !p.alloc || p.free_len ||
	    !qcow2_plan_zero_fill(qi, &p, off, len, qc->lbs,
				  !qc->backing || base + p.wbegin >=
				  bdev_nr_bytes(qc->backing->bdev), &db, &de) ||
	    db != off - base || de != db + len)
		goto no;
	zoff[0] = p.wbegin;
	zlen[0] = db - p.wbegin;
	zoff[1] = de;
	zlen[1] = p.wend - de;
	nvecs = wz ? 0 : DIV_ROUND_UP(zlen[0], PAGE_SIZE) +
			 DIV_ROUND_UP(zlen[1], PAGE_SIZE);
	it = bio->bi_iter;
	it.bi_size = len;
	__bio_for_each_segment(bv, bio, it, it)
		nvecs++;
	if (nvecs > BIO_MAX_VECS)
		goto no;
	cow = bio_alloc_bioset(qc->file->bdev, nvecs,
			       REQ_OP_WRITE | (bio->bi_opf & REQ_SYNC),
			       gfp, &qc->cow_bs);
	if (!cow)
		goto no;
	for (k = 0; wz && k < 2; k++) {
		if (!zlen[k])
			continue;
		zb[k] = bio_alloc_bioset(qc->file->bdev, 0,
					 REQ_OP_WRITE_ZEROES | REQ_NOUNMAP,
					 gfp, &qc->cow_bs);
		if (!zb[k])
			goto put;
	}
	if (qcow2_alloc_how(qc, &host, !worker, &zeroed))
		goto put;	/* -ENOSPC too: the other path holds it */
	if (zeroed) {
		/*
		 * Zeroed ahead: the data's bio alone, laid out as when the
		 * device zeroes around it (wz), without those bios.
		 */
		for (k = 0; k < 2; k++) {
			if (zb[k])
				bio_put(zb[k]);
			zb[k] = NULL;
		}
		wz = true;
	}
	io->me.cluster = off >> qi->cluster_bits;
	qcow2_inflight_add(qc, &io->me);
	mutex_unlock(&qc->meta_lock);

	io->qc = qc;
	io->off = off;
	io->host = host;
	io->nent[0] = p.new_entry | host;
	io->nent[1] = p.new_bitmap;
	io->status = BLK_STS_OK;
	io->zero_refused = false;
	io->db = db;
	io->de = de;
	io->wbegin = p.wbegin;
	io->wend = p.wend;
	atomic_set(&io->pending, 1 + !!zb[0] + !!zb[1]);
	if (!worker)
		dm_accept_partial_bio(bio, len >> SECTOR_SHIFT);
	cow->bi_iter.bi_sector = (host + (wz ? db : p.wbegin)) >> SECTOR_SHIFT;
	cow->bi_ioprio = bio->bi_ioprio;
	if (!wz)
		qcow2_add_zeros(cow, zlen[0]);
	it = bio->bi_iter;
	__bio_for_each_segment(bv, bio, it, it)
		__bio_add_page(cow, bv.bv_page, bv.bv_len, bv.bv_offset);
	if (!wz)
		qcow2_add_zeros(cow, zlen[1]);
	cow->bi_private = io;
	cow->bi_end_io = qcow2_alloc_endio;
	for (k = 0; k < 2; k++) {
		if (!zb[k])
			continue;
		zb[k]->bi_iter.bi_sector = (host + zoff[k]) >> SECTOR_SHIFT;
		zb[k]->bi_iter.bi_size = zlen[k];
		zb[k]->bi_private = io;
		zb[k]->bi_end_io = qcow2_alloc_endio;
		submit_bio_noacct(zb[k]);
	}
	submit_bio_noacct(cow);
	return true;
put:
	for (k = 0; k < 2; k++)
		if (zb[k])
			bio_put(zb[k]);
	bio_put(cow);
no:
	mutex_unlock(&qc->meta_lock);
	return false;
}

/* ---------------------------------------------------------------- */
/* Writing: bios, and writes held for lack of space                 */
/* ---------------------------------------------------------------- */

static void qcow2_hold(struct qcow2_c *qc, struct bio *bio,
		       struct qcow2_io *io)
{
	bool event = false, requeue = false, fail = false;

	qcow2_epoch_put(qc, io);
	spin_lock(&qc->held_lock);
	if (qc->suspending) {
		requeue = dm_noflush_suspending(qc->inst->ti);
		fail = !requeue;
	} else {
		event = !qc->no_space;
		qc->no_space = true;
		bio_list_add(&qc->held, bio);
	}
	spin_unlock(&qc->held_lock);
	if (requeue || fail) {
		bio->bi_status = requeue ? BLK_STS_DM_REQUEUE : BLK_STS_NOSPC;
		bio_endio(bio);
	}
	if (event) {
		DMWARN("%s: file device full: writes wait for it to grow and a resize message",
		       qcow2_name(qc));
		dm_table_event(qc->inst->ti->table);
	}
}

static void qcow2_work(struct work_struct *work);

/* Retry the held writes, or end them with @st. */
static void qcow2_release_held(struct qcow2_c *qc, bool fail, blk_status_t st)
{
	struct bio_list bios;
	struct bio *bio;

	spin_lock(&qc->held_lock);
	bios = qc->held;
	bio_list_init(&qc->held);
	qc->no_space = false;
	spin_unlock(&qc->held_lock);
	while ((bio = bio_list_pop(&bios))) {
		struct qcow2_io *io = dm_per_bio_data(bio, sizeof(*io));

		if (fail) {
			bio->bi_status = st;
			bio_endio(bio);
			continue;
		}
		INIT_WORK(&io->work, qcow2_work);
		queue_work(qc->wq, &io->work);
	}
}

/*
 * A deferred write, write-zeroes or discard, cluster by cluster: pieces
 * written in place are remapped and submitted; the others are done here
 * and end after the loop (after a write-back, for FUA).
 */
static void qcow2_write_bio(struct qcow2_c *qc, struct bio *bio,
			    struct qcow2_io *io)
{
	u64 cs = qc->qi.cluster_size, off, len, host;
	bool fua = bio->bi_opf & REQ_FUA, cow = false, rest = true;
	struct bio_list done;
	struct bio *piece;
	int r = 0;

	bio_list_init(&done);
	if (fua || (bio->bi_opf & REQ_PREFLUSH)) {
		/* Metadata of clusters written in place must be durable too. */
		mutex_lock(&qc->meta_lock);
		r = qcow2_writeback(qc);
		mutex_unlock(&qc->meta_lock);
		if (r)
			goto end;
	}
	off = (u64)dm_target_offset(qc->inst->ti, bio->bi_iter.bi_sector) <<
	      SECTOR_SHIFT;
	if (bio_op(bio) == REQ_OP_WRITE && !fua &&
	    qcow2_start_alloc(qc, bio, off, true))
		return;
	do {
		off = (u64)dm_target_offset(qc->inst->ti,
					    bio->bi_iter.bi_sector) << SECTOR_SHIFT;
		len = min_t(u64, bio->bi_iter.bi_size, cs - (off & (cs - 1)));
		r = qcow2_write_cluster(qc, bio, off, &len, &host);
		if (r == -ENOSPC && !qc->error_if_no_space) {
			while ((piece = bio_list_pop(&done)))
				bio_endio(piece);
			qcow2_hold(qc, bio, io);
			return;
		}
		if (r < 0)
			goto end;	/* the rest of @bio is not written */
		piece = bio;
		if (len < bio->bi_iter.bi_size) {
			piece = bio_split(bio, len >> SECTOR_SHIFT, GFP_NOIO,
					  &qc->bs);
			bio_chain(piece, bio);
		}
		if (r == QCOW2_WR_INPLACE) {
			qcow2_remap(piece, qc->file, host);
			submit_bio_noacct(piece);
		} else {
			cow = true;
			bio_list_add(&done, piece);
		}
	} while (piece != bio);
	rest = false;
	if (!r && fua && cow) {
		mutex_lock(&qc->meta_lock);
		r = qcow2_writeback(qc);
		mutex_unlock(&qc->meta_lock);
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

	if (!bio_sectors(bio)) {
		/* A flush with metadata to write back. */
		qcow2_end(bio, qcow2_flush(qc));
		goto out;
	}
	if (io->epoch < 0)
		qcow2_epoch_get(qc, io);	/* a held write, retried */
	blk_start_plug(&plug);
	if (bio_data_dir(bio) == WRITE) {
		qcow2_write_bio(qc, bio, io);
		goto unplug;
	}
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
unplug:
	blk_finish_plug(&plug);
out:
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
	queue_work(bio_sectors(bio) ? qc->wq : qc->flush_wq, &io->work);
	return DM_MAPIO_SUBMITTED;
}

/* ---------------------------------------------------------------- */
/* Target methods                                                   */
/* ---------------------------------------------------------------- */

static int qcow2_map_bio(struct dm_target *ti, struct bio *bio)
{
	struct qcow2_c *qc = ti->private;
	struct qcow2_io *io = dm_per_bio_data(bio, sizeof(*io));
	struct qcow2_extent ext;
	u64 off;

	if (bg_bio_write_refused(qc->inst, bio))
		return DM_MAPIO_KILL;

	io->epoch = -1;
	if (unlikely(!bio_sectors(bio))) {
		/* An empty flush: with no metadata to write, pass it on. */
		if (!qc->writable || (!READ_ONCE(qc->meta_dirty) &&
				      list_empty_careful(&qc->frees))) {
			bio_set_dev(bio, qc->file->bdev);
			return DM_MAPIO_REMAPPED;
		}
		return qcow2_defer(qc, bio);
	}
	qcow2_epoch_get(qc, io);
	off = (u64)dm_target_offset(ti, bio->bi_iter.bi_sector) << SECTOR_SHIFT;
	if (bio_data_dir(bio) == WRITE) {
		if (!qc->writable)
			return DM_MAPIO_KILL;
		if (bio_op(bio) != REQ_OP_WRITE ||
		    ((bio->bi_opf & REQ_FUA) && READ_ONCE(qc->meta_dirty)) ||
		    qcow2_lookup(qc, off, bio->bi_iter.bi_size, false, &ext))
			return qcow2_defer(qc, bio);
		/* In place: a plain write to clusters we own, L2 cached. */
		if (ext.type == QCOW2_MAP_DATA && ext.copied) {
			qcow2_accept(bio, ext.len);
			qcow2_remap(bio, qc->file, ext.host_off);
			return DM_MAPIO_REMAPPED;
		}
		if (qcow2_start_alloc(qc, bio, off, false))
			return DM_MAPIO_SUBMITTED;
		return qcow2_defer(qc, bio);
	}

	if (qcow2_lookup(qc, off, bio->bi_iter.bi_size, false, &ext))
		return qcow2_defer(qc, bio);

	switch (ext.type) {
	case QCOW2_MAP_DATA:
		qcow2_accept(bio, ext.len);
		qcow2_remap(bio, qc->file, ext.host_off);
		return DM_MAPIO_REMAPPED;
	case QCOW2_MAP_BACKING:
		qcow2_accept(bio, ext.len);
		qcow2_remap(bio, qc->backing, off);
		return DM_MAPIO_REMAPPED;
	case QCOW2_MAP_ZERO:
		qcow2_accept(bio, ext.len);
		zero_fill_bio(bio);
		bio_endio(bio);
		return DM_MAPIO_SUBMITTED;
	case QCOW2_MAP_COMPRESSED:
		qcow2_accept(bio, ext.len);
		return qcow2_defer(qc, bio);
	case QCOW2_MAP_INVALID:
	default:
		qcow2_bad_entry(qc, off, &ext);
		return DM_MAPIO_KILL;
	}
}

static int qcow2_end_io(struct dm_target *ti, struct bio *bio,
			blk_status_t *error)
{
	qcow2_epoch_put(ti->private, dm_per_bio_data(bio, sizeof(struct qcow2_io)));
	return DM_ENDIO_DONE;
}

/*
 * Status.
 * INFO:  <l2_hits> <l2_misses> <slices_used> <slices_total> <flags>
 *        flags: "-", or a comma list of dirty and corrupt (the image's
 *        header bits) and no_space (writes wait for room).
 * TABLE: the table line, with only the options that were given.
 * IMA:   target_name, target_version, file_device, backing_device,
 *        l2_cache_size.
 */
static void qcow2_status(struct dm_target *ti, status_type_t type,
			 unsigned int status_flags, char *result,
			 unsigned int maxlen)
{
	struct qcow2_c *qc = ti->private;
	unsigned int nopt = 2 * !!qc->backing + 2 * !!qc->cache_arg +
			    qc->read_only + qc->error_if_no_space;
	const char *flag[3];
	u64 hits, misses, used;
	unsigned int sz = 0, n = 0, i;

	switch (type) {
	case STATUSTYPE_INFO:
		l2c_counts(&qc->cache, &hits, &misses, &used);
		DMEMIT("%llu %llu %llu %llu ", hits, misses, used,
		       (u64)qc->cache.nsets * L2C_WAYS);
		if (qc->qi.dirty || qc->hdr_dirty)
			flag[n++] = "dirty";
		if (qc->qi.corrupt)
			flag[n++] = "corrupt";
		if (READ_ONCE(qc->no_space))
			flag[n++] = "no_space";
		if (!n)
			DMEMIT("-");
		for (i = 0; i < n; i++)
			DMEMIT("%s%s", i ? "," : "", flag[i]);
		break;
	case STATUSTYPE_TABLE:
		DMEMIT("%s", qc->file->name);
		if (nopt)
			DMEMIT(" %u", nopt);
		if (qc->backing)
			DMEMIT(" backing %s", qc->backing->name);
		if (qc->cache_arg)
			DMEMIT(" l2_cache_size %llu", qc->cache_arg);
		if (qc->read_only)
			DMEMIT(" read_only");
		if (qc->error_if_no_space)
			DMEMIT(" error_if_no_space");
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

static void qcow2_io_hints(struct dm_target *ti, struct queue_limits *limits)
{
	struct qcow2_c *qc = ti->private;
	u32 cs_sectors = qc->qi.cluster_size >> SECTOR_SHIFT;

	if (!qc->writable)
		return;
	/* Discard frees whole clusters: say so. */
	limits->discard_granularity = qc->qi.cluster_size;
	limits->max_hw_discard_sectors = cs_sectors * 1024;
	limits->max_discard_sectors = cs_sectors * 1024;
}

static void qcow2_presuspend(struct dm_target *ti)
{
	struct qcow2_c *qc = ti->private;

	spin_lock(&qc->held_lock);
	qc->suspending = true;
	spin_unlock(&qc->held_lock);
	qcow2_pz_halt(qc);
	/* Held writes would block the suspend: requeue, or fail them. */
	if (dm_noflush_suspending(ti))
		qcow2_release_held(qc, true, BLK_STS_DM_REQUEUE);
	else
		qcow2_release_held(qc, true, BLK_STS_NOSPC);
}

static int qcow2_load_header(struct qcow2_c *qc, char **error);
static int qcow2_load_tables(struct qcow2_c *qc, char **error);

/*
 * A writable table read the image in its constructor, while the table it
 * replaces (if any) could still write; that one has written everything
 * back in its postsuspend by now.  Read the image again before the first
 * I/O.
 */
static int qcow2_preresume(struct dm_target *ti)
{
	struct qcow2_c *qc = ti->private;
	struct qcow2_info old = qc->qi;
	char *error = NULL;
	int r;

	if (!qc->writable || qc->reread)
		return 0;
	kvfree(qc->l1);
	qc->l1 = NULL;
	kvfree(qc->reftable);
	qc->reftable = NULL;
	bitmap_zero(qc->l1_copied, max(old.l1_size, 1u));
	r = qcow2_load_header(qc, &error);
	if (!r && (qc->qi.l1_size != old.l1_size ||
		   qc->qi.reftable_clusters != old.reftable_clusters ||
		   qc->qi.cluster_bits != old.cluster_bits)) {
		error = "image tables changed size since the table was loaded";
		r = -EINVAL;
	}
	if (!r && (qc->qi.dirty || qc->qi.corrupt)) {
		error = "image became dirty or corrupt since the table was loaded";
		r = -EINVAL;
	}
	if (!r)
		r = qcow2_load_tables(qc, &error);
	if (r) {
		DMERR("%s: cannot resume: %s", qcow2_name(qc), error);
		return r;
	}
	qc->free_hint = 0;
	qc->reread = true;
	return 0;
}

static void qcow2_postsuspend(struct dm_target *ti)
{
	struct qcow2_c *qc = ti->private;

	if (qc->writable)
		qcow2_make_clean(qc);
}

static void qcow2_resume(struct dm_target *ti)
{
	struct qcow2_c *qc = ti->private;

	spin_lock(&qc->held_lock);
	qc->suspending = false;
	spin_unlock(&qc->held_lock);
	mutex_lock(&qc->meta_lock);
	qc->pz_stop = false;
	mutex_unlock(&qc->meta_lock);
	bg_instance_resume(qc->inst);
}

/*
 * Messages: "resize": the file device grew; retry the writes that wait
 * for room.
 */
static int qcow2_message(struct dm_target *ti, unsigned int argc, char **argv,
			 char *result, unsigned int maxlen)
{
	struct qcow2_c *qc = ti->private;

	if (argc == 1 && !strcasecmp(argv[0], "resize")) {
		mutex_lock(&qc->meta_lock);
		qc->free_hint = 0;
		mutex_unlock(&qc->meta_lock);
		qcow2_release_held(qc, false, BLK_STS_OK);
		return 0;
	}
	DMWARN("%s: unknown message; the only one is \"resize\"", qcow2_name(qc));
	return -EINVAL;
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
	r = qcow2_read(qc, off, raw, bytes);
	if (r) {
		*error = "Cannot read the image tables";
		goto out;
	}
	r = qcow2_load_table(&qc->qi, raw, n, l1, *out, &bad, &why);
	if (!r && copied) {
		const __be64 *e = (const __be64 *)raw;
		u32 i;

		for (i = 0; i < n; i++)
			if (be64_to_cpu(e[i]) & QCOW2_OFLAG_COPIED)
				set_bit(i, copied);
	}
	if (r) {
		DMERR("%s: %s table entry %u is bad", qcow2_name(qc),
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
static int qcow2_writable_init(struct qcow2_c *qc, char **error)
{
	const struct qcow2_info *qi = &qc->qi;
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
	qc->lbs = bdev_logical_block_size(qc->file->bdev);
	qc->l1_copied = bitmap_zalloc(max(qi->l1_size, 1u), GFP_KERNEL);
	qc->l1_dirty = bitmap_zalloc(DIV_ROUND_UP(qcow2_l1_bytes(qi), qc->lbs) + 1,
				     GFP_KERNEL);
	qc->rt_dirty = bitmap_zalloc(DIV_ROUND_UP(qcow2_reftable_bytes(qi), qc->lbs) + 1,
				     GFP_KERNEL);
	qc->rb_slots = clamp_t(u32, SZ_1M >> qi->cluster_bits, 2, 16);
	qc->rb = kcalloc(qc->rb_slots, sizeof(*qc->rb), GFP_KERNEL);
	if (!qc->l1_copied || !qc->l1_dirty || !qc->rt_dirty || !qc->rb)
		goto nomem;
	for (i = 0; i < qc->rb_slots; i++) {
		qc->rb[i].data = kvmalloc(qi->cluster_size, GFP_KERNEL);
		if (!qc->rb[i].data)
			goto nomem;
	}
	return 0;
nomem:
	*error = "Cannot allocate the writing state";
	return -ENOMEM;
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
				 &qc->l1, qc->l1_copied, error);
	if (r)
		return r;
	r = qcow2_load_one_table(qc, qi->reftable_offset,
				 qcow2_reftable_bytes(qi) / 8, false,
				 &reftable, NULL, error);
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
	if (!r && qc->writable) {
		/* Kept for allocation. */
		qc->reftable = reftable;
		qc->reftable_n = qcow2_reftable_bytes(qi) / 8;
		reftable = NULL;
	}
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
	struct qcow2_free *f, *tmp;
	u32 i;

	cancel_work_sync(&qc->pz_work);
	if (qc->done_wq)
		destroy_workqueue(qc->done_wq);
	if (qc->flush_wq)
		destroy_workqueue(qc->flush_wq);
	if (qc->wq)
		destroy_workqueue(qc->wq);
	list_for_each_entry_safe(f, tmp, &qc->frees, list)
		kfree(f);
	for (i = 0; qc->rb && i < qc->rb_slots; i++)
		kvfree(qc->rb[i].data);
	kfree(qc->rb);
	kvfree(qc->reftable);
	bitmap_free(qc->l1_copied);
	bitmap_free(qc->l1_dirty);
	bitmap_free(qc->rt_dirty);
	l2c_exit(&qc->cache);
	bioset_exit(&qc->cow_bs);
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
	struct qcow2_args args;
	const char *error = NULL;
	struct qcow2_c *qc;
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
	qc = kzalloc(sizeof(*qc), GFP_KERNEL);
	if (!qc) {
		ti->error = "Cannot allocate the qcow2 context";
		return -ENOMEM;
	}
	qc->cache_arg = args.l2_cache_size;
	qc->read_only = args.read_only;
	qc->error_if_no_space = args.error_if_no_space;
	qc->writable = (dm_table_get_mode(ti->table) & BG_OPEN_WRITE) &&
		       !args.read_only;
	mutex_init(&qc->meta_lock);
	mutex_init(&qc->flush_lock);
	INIT_LIST_HEAD(&qc->frees);
	spin_lock_init(&qc->store_lock);
	spin_lock_init(&qc->inflight_lock);
	INIT_LIST_HEAD(&qc->inflight);
	init_waitqueue_head(&qc->inflight_wq);
	init_waitqueue_head(&qc->drain_wq);
	spin_lock_init(&qc->held_lock);
	bio_list_init(&qc->held);
	INIT_WORK(&qc->pz_work, qcow2_pz_work);
	init_waitqueue_head(&qc->pz_wq);
	qc->pz_stop = true;		/* until resumed */

	qc->inst = bg_instance_create(ti, &qcow2_kind, qc);
	if (IS_ERR(qc->inst)) {
		r = PTR_ERR(qc->inst);
		goto out;
	}
	if (args.read_only)
		bg_instance_set_read_only(qc->inst);
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
	qc->wq = alloc_workqueue("bgraph-qcow2/%s", WQ_MEM_RECLAIM | WQ_UNBOUND,
				 0, dm_table_device_name(ti->table));
	qc->flush_wq = alloc_workqueue("bgraph-qcow2f/%s",
				       WQ_MEM_RECLAIM | WQ_UNBOUND, 0,
				       dm_table_device_name(ti->table));
	qc->done_wq = alloc_workqueue("bgraph-qcow2d/%s",
				      WQ_MEM_RECLAIM | WQ_UNBOUND, 0,
				      dm_table_device_name(ti->table));
	if (!qc->wq || !qc->flush_wq || !qc->done_wq) {
		r = -ENOMEM;
		ti->error = "Cannot create the workqueue";
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
	if ((1U << qc->qi.subcluster_bits) < bdev_logical_block_size(qc->file->bdev)) {
		/* Nor a subcluster (extended L2 with clusters under 128K on 4Kn). */
		ti->error = "Subcluster size is smaller than the file device's logical block size";
		r = -EINVAL;
		goto out;
	}
	if (ti->len > DIV_ROUND_UP(qc->qi.size, SECTOR_SIZE)) {
		ti->error = "Target length is larger than the image's virtual size";
		r = -EINVAL;
		goto out;
	}
	if (qc->writable) {
		r = qcow2_writable_init(qc, &ti->error);
		if (r)
			goto out;
	}
	r = qcow2_load_tables(qc, &ti->error);
	if (r)
		goto out;
	/*
	 * Zeroing ahead only pays where new clusters are filled with zeros:
	 * not where the fill comes from a backing child, nor with extended
	 * L2 (a new cluster's other subclusters stay unallocated).
	 */
	qc->pz_on = qc->writable && !qc->backing && !qc->qi.extended_l2;
	if (qc->writable && qc->qi.autoclear) {
		/* QEMU's rule: a writer that does not know them clears them. */
		DMINFO("%s: clearing autoclear features 0x%llx", qcow2_name(qc),
		       qc->qi.autoclear);
		r = qcow2_header_update(qc, QCOW2_HDR_AUTOCLEAR, 0, ~0ULL);
		if (r) {
			ti->error = "Cannot write the image header";
			goto out;
		}
	}

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
	if (!r)
		r = bioset_init(&qc->cow_bs, BIO_POOL_SIZE, 0,
				BIOSET_NEED_BVECS);
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
	if (qc->writable) {
		ti->num_discard_bios = 1;
		ti->num_write_zeroes_bios = 1;
		ti->discards_supported = true;
	}
	ti->per_io_data_size = sizeof(struct qcow2_io);
	ti->private = qc;
	return 0;

out:
	qcow2_free(qc);
	return r;
}

static void qcow2_dtr(struct dm_target *ti)
{
	struct qcow2_c *qc = ti->private;

	if (qc->writable)
		qcow2_make_clean(qc);
	qcow2_free(qc);
}

static struct target_type qcow2_target_type = {
	.name		= "bgraph-qcow2",
	.version	= {1, 1, 0},
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
	.preresume	= qcow2_preresume,
	.postsuspend	= qcow2_postsuspend,
	.resume		= qcow2_resume,
};

struct bg_kind qcow2_kind = {
	.name		= "qcow2",
	.target		= &qcow2_target_type,
};

MODULE_ALIAS("dm-bgraph-qcow2");
