// SPDX-License-Identifier: GPL-2.0
/*
 * bgraph-qcow2: the L2 slice cache.
 */
#include <linux/slab.h>
#include <linux/vmalloc.h>
#include <linux/hash.h>
#include <linux/log2.h>
#include <linux/percpu.h>

#include "qcow2.h"

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

int qcow2_l2c_init(struct l2_cache *c, u32 slice_bytes, u64 bytes)
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

void qcow2_l2c_exit(struct l2_cache *c)
{
	free_percpu(c->stats);
	vfree(c->data);
	kvfree(c->sets);
}

static struct l2c_set *qcow2_l2c_set(struct l2_cache *c, u64 slice_off)
{
	return &c->sets[hash_64(slice_off >> c->slice_shift, 32) &
			(c->nsets - 1)];
}

u8 *qcow2_l2c_slot(struct l2_cache *c, struct l2c_set *set, unsigned int w)
{
	size_t slot = (size_t)(set - c->sets) * L2C_WAYS + w;

	return c->data + slot * c->slice_bytes;
}

/* Big-endian L2 words of a slice to host-endian ones. */
void qcow2_l2c_decode(const void *raw, u32 nwords, u64 *out)
{
	const __be64 *src = raw;
	u32 i;

	for (i = 0; i < nwords; i++)
		out[i] = be64_to_cpu(src[i]);
}

/* Mark way @w of @set used now; with or without the set's lock. */
static void qcow2_l2c_touch(struct l2c_set *set, unsigned int w)
{
	u32 clock = READ_ONCE(set->clock) + 1;

	WRITE_ONCE(set->clock, clock);
	WRITE_ONCE(set->way[w].stamp, clock);
	WRITE_ONCE(set->hint, w);
}

/*
 * qcow2_l2c_lookup() - copy @nwords big-endian words from byte @pos of the slice
 * at file offset @slice_off into @out, host-endian.  Returns false on a
 * miss.  Counts hits; misses are counted where slices are read.  Any
 * context.
 */
bool qcow2_l2c_lookup(struct l2_cache *c, u64 slice_off, u32 pos,
		      u32 nwords, u64 *out)
{
	struct l2c_set *set = qcow2_l2c_set(c, slice_off);
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
		qcow2_l2c_decode(qcow2_l2c_slot(c, set, w) + pos, nwords, out);
	} while (read_seqcount_retry(&set->seq, seq));
	if (w == L2C_WAYS)
		return false;
	/* Already the newest (one hot slice in its set): nothing to store. */
	if (READ_ONCE(set->way[w].stamp) != READ_ONCE(set->clock))
		qcow2_l2c_touch(set, w);
	this_cpu_inc(c->stats->hits);
	return true;
}

/* The generation of @slice_off's set, taken before reading the slice. */
u32 qcow2_l2c_gen(struct l2_cache *c, u64 slice_off)
{
	struct l2c_set *set = qcow2_l2c_set(c, slice_off);
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
bool qcow2_l2c_insert(struct l2_cache *c, u64 slice_off, const void *raw,
		      u32 gen)
{
	struct l2c_set *set = qcow2_l2c_set(c, slice_off);
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
	memcpy(qcow2_l2c_slot(c, set, victim), raw, c->slice_bytes);
	WRITE_ONCE(set->way[victim].key, slice_off + 1);
	write_seqcount_end(&set->seq);
	qcow2_l2c_touch(set, victim);
	done = true;
out:
	spin_unlock_irqrestore(&set->lock, flags);
	return done;
}

/*
 * qcow2_l2c_store() - write @nwords host-endian words at byte @pos of the
 * cached slice at @slice_off and mark it dirty.  False if it is not
 * cached.  Under the node's meta_lock, or from a completion while no
 * write-back runs (qcow2_alloc_store()).  Any context.
 */
bool qcow2_l2c_store(struct l2_cache *c, u64 slice_off, u32 pos,
		     u32 nwords, const u64 *in)
{
	struct l2c_set *set = qcow2_l2c_set(c, slice_off);
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
	dst = (__be64 *)(qcow2_l2c_slot(c, set, w) + pos);
	write_seqcount_begin(&set->seq);
	for (i = 0; i < nwords; i++)
		dst[i] = cpu_to_be64(in[i]);
	write_seqcount_end(&set->seq);
	set->way[w].dirty = true;
	qcow2_l2c_touch(set, w);
	set->gen++;
	spin_unlock_irqrestore(&set->lock, flags);
	return true;
}

/* Whether a slice at @slice_off could be inserted (a clean way exists). */
bool qcow2_l2c_has_room(struct l2_cache *c, u64 slice_off)
{
	struct l2c_set *set = qcow2_l2c_set(c, slice_off);
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
void qcow2_l2c_invalidate(struct l2_cache *c, u64 off, u64 len)
{
	u64 so;

	for (so = off; so < off + len; so += c->slice_bytes) {
		struct l2c_set *set = qcow2_l2c_set(c, so);
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

void qcow2_l2c_counts(struct l2_cache *c, u64 *hits, u64 *misses,
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
