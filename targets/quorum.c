// SPDX-License-Identifier: GPL-2.0
/*
 * bgraph-quorum: N-way replication that votes on every read, after QEMU's
 * block/quorum.c.  Writes, flushes, discards and write-zeroes go to every
 * child and succeed when threshold children succeed; a read (read-pattern
 * quorum) reads every child, and the vote of quorum-vote.c picks the data
 * to return, the children to report and, with rewrite-corrupted, the ones
 * to rewrite.  read-pattern fifo reads the first child and falls back to
 * the next on error.
 *
 * Table: <threshold> <#children> <dev>... [<#opt_args> [rewrite-corrupted]
 *        [read-pattern quorum|fifo] [blkverify]]
 * See Documentation/bgraph-quorum.rst.
 */
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/mempool.h>
#include <linux/workqueue.h>
#include <linux/rcupdate.h>
#include <linux/percpu-refcount.h>
#include <linux/completion.h>
#include <linux/kobject.h>
#include <linux/device-mapper.h>

#include "../dm-bgraph/bgraph.h"
#include "../dm-bgraph/defer.h"
#include "quorum-vote.h"

#define DM_MSG_PREFIX "bgraph-quorum"

/*
 * A quorum read holds one buffer per child; map() cuts such reads at 128
 * KiB so that a buffer is at most QUORUM_PAGES pages from the page pool.
 * Writes and fifo reads go out whole: a child pays per request (a virtio
 * disk's round trip), and md raid1 sends them whole too.
 */
#define QUORUM_MAX_IO_SECTORS	256
#define QUORUM_PAGES		(QUORUM_MAX_IO_SECTORS >> (PAGE_SHIFT - SECTOR_SHIFT))
/* Reports waiting for the worker to send their uevents; more are dropped. */
#define QUORUM_REPORTS		64
/*
 * Bytes a read's completion may compare to vote inline: with 3 children,
 * reads up to 32 KiB.  It may run in hard irq context.
 */
#define QUORUM_INLINE_BYTES	(64u << 10)

struct quorum_child {
	struct list_head entry;		/* on quorum_c.all */
	struct dm_dev *dev;
	unsigned int index;		/* N of children.N */
	bool detached;			/* removed: put in the destructor */
	char name[BG_NAME_LEN];		/* its node name */
	atomic64_t bad_reads;		/* read fine, lost the vote */
	atomic64_t rewrites;		/* rewritten with the winning data */
	atomic64_t io_errors;		/* any request of it that failed */
};

/*
 * The children as they are now, replaced whole (RCU) by the messages.
 * Every request that writes (writes, flushes, discards, write-zeroes, and
 * quorum-pattern reads, which may rewrite) holds a reference of the set
 * it was mapped with until it ends, so that a message returns only once
 * no request of the old set is left (QEMU drains the node around a child
 * change too): a removed child gets no write after remove_child returns,
 * an added one misses none that ends after add_child returned.
 */
struct quorum_set {
	struct percpu_ref users;
	struct completion drained;	/* users reached zero after a kill */
	unsigned int n;
	struct quorum_child *child[QUORUM_MAX_CHILDREN];
};

enum quorum_report_type {
	QUORUM_REPORT_BAD,		/* one child: bad read or I/O error */
	QUORUM_FAILURE,			/* the node's request failed */
};

struct quorum_report {
	enum quorum_report_type type;
	struct quorum_child *child;	/* QUORUM_REPORT_BAD */
	const char *op;
	int err;			/* positive errno; 0: data lost the vote */
	sector_t sector;
	unsigned int sectors;
};

struct quorum_target {
	struct bg_instance *inst;
	struct dm_target *ti;
	struct quorum_args args;	/* args.dev[] only in the constructor */

	struct mutex lock;		/* messages: set, all, next_index */
	struct quorum_set __rcu *set;
	struct list_head all;		/* every child of this table */
	unsigned int next_index;

	struct bio_set bs;
	mempool_t *pages;		/* quorum reads' buffers */
	struct mutex alloc_lock;	/* the one allocator that may wait */
	/*
	 * rewrite-corrupted's writes: a bio set of their own, so that a
	 * vote waiting for them never waits for bios that reads hold, and
	 * one rewrite at a time allocating (dm-crypt's rule again).
	 */
	struct bio_set rw_bs;
	struct mutex rw_lock;		/* the one rewrite allocating */

	struct workqueue_struct *wq;
	/* fifo retries, votes short of memory: one at a time, in order */
	struct bg_deferred deferred;

	struct work_struct report_work;	/* uevents and dm events */
	spinlock_t report_lock;
	unsigned int report_head, nreports;
	u64 events_dropped;
	struct quorum_report reports[QUORUM_REPORTS];

	atomic64_t quorum_failures;

	/*
	 * the deferred worker's scratch for a vote that could not allocate
	 * its own: the pages of each child's read, QUORUM_PAGES a child.
	 */
	struct quorum_seg segs[QUORUM_MAX_CHILDREN * QUORUM_PAGES];
};

BG_CONTEXT(struct quorum_target);

enum quorum_kind {
	QUORUM_IO_FANOUT,		/* write, flush, discard, write-zeroes */
	QUORUM_IO_READ,			/* read-pattern quorum */
	QUORUM_IO_FIFO,			/* read-pattern fifo: dm's clone remapped */
};

/* Per-bio data. */
struct quorum_io {
	struct quorum_target *quorum;
	struct bio *bio;
	struct work_struct work;	/* quorum reads: the vote */
	enum quorum_kind kind;
	unsigned int n;			/* children when the bio was mapped */
	unsigned int next;		/* fifo: the child being read */
	atomic_t pending;
	sector_t sector;		/* the node's range, for reports */
	unsigned int sectors;
	struct bvec_iter iter;		/* fifo: the bio as mapped */
	struct quorum_set *set;		/* held, but by fifo reads */
	struct quorum_child *child[QUORUM_MAX_CHILDREN];
	struct bio *sub[QUORUM_MAX_CHILDREN];	/* clones, reads, rewrites */
	int err[QUORUM_MAX_CHILDREN];
};

/* ---------------------------------------------------------------- */
/* Reports                                                          */
/* ---------------------------------------------------------------- */

static const char *quorum_op_name(struct bio *bio)
{
	switch (bio_op(bio)) {
	case REQ_OP_READ:
		return "read";
	case REQ_OP_DISCARD:
		return "discard";
	case REQ_OP_WRITE_ZEROES:
		return "write_zeroes";
	case REQ_OP_WRITE:
		return bio_sectors(bio) ? "write" : "flush";
	default:
		return "other";
	}
}

static const char *quorum_node(struct quorum_target *quorum)
{
	return quorum->inst->node->name;
}

/*
 * Queue a report for the worker (uevent, dm event).  Any context.  The
 * child's counters and the log line are the caller's.
 */
static void quorum_report_op(struct quorum_io *qio,
			     enum quorum_report_type type,
			     struct quorum_child *c, int err, const char *op)
{
	struct quorum_target *quorum = qio->quorum;
	struct quorum_report *r;
	unsigned long flags;

	spin_lock_irqsave(&quorum->report_lock, flags);
	if (quorum->nreports == QUORUM_REPORTS) {
		quorum->events_dropped++;
	} else {
		r = &quorum->reports[(quorum->report_head + quorum->nreports++) %
				 QUORUM_REPORTS];
		r->type = type;
		r->child = c;
		r->op = op;
		r->err = -err;
		r->sector = qio->sector;
		r->sectors = qio->sectors;
	}
	spin_unlock_irqrestore(&quorum->report_lock, flags);
	queue_work(quorum->wq, &quorum->report_work);
}

static void quorum_report(struct quorum_io *qio, enum quorum_report_type type,
			  struct quorum_child *c, int err)
{
	quorum_report_op(qio, type, c, err, quorum_op_name(qio->bio));
}

/* A child's request @op failed with @err: count, log, report. */
static void quorum_child_error_op(struct quorum_io *qio,
				  struct quorum_child *c, int err,
				  const char *op)
{
	atomic64_inc(&c->io_errors);
	DMERR_LIMIT("%s: children.%u (%s): %s error %d at sector %llu+%u",
		    quorum_node(qio->quorum), c->index, c->name, op, err,
		    (unsigned long long)qio->sector, qio->sectors);
	quorum_report_op(qio, QUORUM_REPORT_BAD, c, err, op);
}

/* A child's part of the node's request failed with @err. */
static void quorum_child_error(struct quorum_io *qio, struct quorum_child *c,
			       int err)
{
	quorum_child_error_op(qio, c, err, quorum_op_name(qio->bio));
}

/* The node's request fails with @err for want of quorum. */
static void quorum_failure(struct quorum_io *qio, int err)
{
	atomic64_inc(&qio->quorum->quorum_failures);
	DMERR_LIMIT("%s: quorum failure: %s at sector %llu+%u: %d",
		    quorum_node(qio->quorum), quorum_op_name(qio->bio),
		    (unsigned long long)qio->sector, qio->sectors, err);
	quorum_report(qio, QUORUM_FAILURE, NULL, err);
}

static void quorum_send_uevent(struct quorum_target *quorum, struct quorum_report *r)
{
	struct kobject *kobj =
		&disk_to_dev(dm_disk(dm_table_get_md(quorum->ti->table)))->kobj;
	char node[BG_NAME_LEN + 16], child[BG_NAME_LEN + 16], role[48];
	char op[32], sector[48], sectors[32], err[24];
	char *envp[9];
	int i = 0;

	envp[i++] = r->type == QUORUM_FAILURE ?
		    "BGRAPH_EVENT=QUORUM_FAILURE" :
		    "BGRAPH_EVENT=QUORUM_REPORT_BAD";
	snprintf(node, sizeof(node), "BGRAPH_NODE=%s", quorum_node(quorum));
	envp[i++] = node;
	if (r->child) {
		snprintf(child, sizeof(child), "BGRAPH_CHILD=%s", r->child->name);
		snprintf(role, sizeof(role), "BGRAPH_ROLE=children.%u",
			 r->child->index);
		envp[i++] = child;
		envp[i++] = role;
	}
	snprintf(op, sizeof(op), "BGRAPH_OP=%s", r->op);
	snprintf(sector, sizeof(sector), "BGRAPH_SECTOR=%llu",
		 (unsigned long long)r->sector);
	snprintf(sectors, sizeof(sectors), "BGRAPH_SECTORS=%u", r->sectors);
	snprintf(err, sizeof(err), "BGRAPH_ERROR=%d", r->err);
	envp[i++] = op;
	envp[i++] = sector;
	envp[i++] = sectors;
	envp[i++] = err;
	envp[i] = NULL;
	kobject_uevent_env(kobj, KOBJ_CHANGE, envp);
}

static void quorum_report_work(struct work_struct *work)
{
	struct quorum_target *quorum = container_of(work, struct quorum_target, report_work);
	struct quorum_report r;
	bool any = false;

	for (;;) {
		spin_lock_irq(&quorum->report_lock);
		if (!quorum->nreports) {
			spin_unlock_irq(&quorum->report_lock);
			break;
		}
		r = quorum->reports[quorum->report_head];
		quorum->report_head = (quorum->report_head + 1) % QUORUM_REPORTS;
		quorum->nreports--;
		spin_unlock_irq(&quorum->report_lock);
		quorum_send_uevent(quorum, &r);
		any = true;
	}
	if (any)
		dm_table_event(quorum->ti->table);
}

/* ---------------------------------------------------------------- */
/* Bio helpers                                                      */
/* ---------------------------------------------------------------- */

static unsigned int quorum_sub_index(struct quorum_io *qio, struct bio *sub)
{
	unsigned int i;

	for (i = 0; qio->sub[i] != sub; i++)
		;
	return i;
}

static void quorum_queue(struct quorum_io *qio)
{
	bg_defer_bio(&qio->quorum->deferred, qio->bio);
}

/* A read buffer: its pages back to the pool, the bio to the bio set. */
static void quorum_free_read(struct quorum_target *quorum, struct bio *rd)
{
	struct bvec_iter_all iter;
	struct bio_vec *bv;

	bio_for_each_segment_all(bv, rd, iter)
		mempool_free(bv->bv_page, quorum->pages);
	bio_put(rd);
}

static void quorum_free_subs(struct quorum_io *qio)
{
	unsigned int i;

	for (i = 0; i < qio->n; i++) {
		if (qio->sub[i])
			quorum_free_read(qio->quorum, qio->sub[i]);
		qio->sub[i] = NULL;
	}
}

/*
 * Allocate what @qio sends to its children: clones of the bio, or read
 * buffers.  With @gfp GFP_NOWAIT it may fail and then holds nothing; the
 * caller retries with GFP_NOIO under alloc_lock, so that only one request
 * at a time waits on the pools and it always gets a full set (dm-crypt's
 * rule for its page pool).
 */
static bool quorum_alloc_subs(struct quorum_io *qio, gfp_t gfp)
{
	struct quorum_target *quorum = qio->quorum;
	struct bio *bio = qio->bio, *sub;
	unsigned int i, size, len;
	struct page *page;

	memset(qio->sub, 0, sizeof(qio->sub));
	for (i = 0; i < qio->n; i++) {
		struct block_device *bdev = qio->child[i]->dev->bdev;

		if (qio->kind == QUORUM_IO_FANOUT) {
			sub = bio_alloc_clone(bdev, bio, gfp, &quorum->bs);
			if (!sub)
				goto fail;
			qio->sub[i] = sub;
			continue;
		}
		sub = bio_alloc_bioset(bdev, QUORUM_PAGES,
				       REQ_OP_READ | (bio->bi_opf &
				       (REQ_SYNC | REQ_META | REQ_PRIO)),
				       gfp, &quorum->bs);
		if (!sub)
			goto fail;
		qio->sub[i] = sub;
		sub->bi_iter.bi_sector = bio->bi_iter.bi_sector;
		for (size = bio->bi_iter.bi_size; size; size -= len) {
			page = mempool_alloc(quorum->pages, gfp);
			if (!page)
				goto fail;
			len = min_t(unsigned int, size, PAGE_SIZE);
			__bio_add_page(sub, page, len, 0);
		}
	}
	return true;

fail:
	if (qio->kind == QUORUM_IO_FANOUT) {
		for (i = 0; i < qio->n && qio->sub[i]; i++)
			bio_put(qio->sub[i]);
		memset(qio->sub, 0, sizeof(qio->sub));
	} else {
		quorum_free_subs(qio);
	}
	return false;
}

/*
 * Send @subs[0..@n-1], which end @qio: once the last is sent, @qio may be
 * gone (its bio ended by their completions), so nothing here reads it.
 */
static void quorum_send(struct bio **subs, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		submit_bio_noacct(subs[i]);
}

static void quorum_submit_subs(struct quorum_io *qio, bio_end_io_t *end_io)
{
	struct quorum_target *quorum = qio->quorum;
	struct bio *subs[QUORUM_MAX_CHILDREN];
	unsigned int i, n = qio->n;

	if (!quorum_alloc_subs(qio, GFP_NOWAIT)) {
		mutex_lock(&quorum->alloc_lock);
		quorum_alloc_subs(qio, GFP_NOIO);	/* waits, never fails */
		mutex_unlock(&quorum->alloc_lock);
	}
	atomic_set(&qio->pending, n);
	for (i = 0; i < n; i++) {
		subs[i] = qio->sub[i];
		subs[i]->bi_end_io = end_io;
		subs[i]->bi_private = qio;
	}
	quorum_send(subs, n);
}

/* ---------------------------------------------------------------- */
/* Writes, flushes, discards, write-zeroes                          */
/* ---------------------------------------------------------------- */

static void quorum_fanout_done(struct quorum_io *qio)
{
	struct quorum_target *quorum = qio->quorum;
	unsigned int i;
	u32 failed;
	int r;

	r = quorum_result(qio->err, qio->n, quorum->args.threshold, &failed);
	for (i = 0; i < qio->n; i++)
		if (failed & BIT(i))
			quorum_child_error(qio, qio->child[i], qio->err[i]);
	if (r)
		quorum_failure(qio, r);
	percpu_ref_put(&qio->set->users);
	qio->bio->bi_status = errno_to_blk_status(r);
	bio_endio(qio->bio);
}

static void quorum_fanout_end(struct bio *sub)
{
	struct quorum_io *qio = sub->bi_private;
	unsigned int i = quorum_sub_index(qio, sub);

	qio->err[i] = blk_status_to_errno(sub->bi_status);
	bio_put(sub);
	if (atomic_dec_and_test(&qio->pending))
		quorum_fanout_done(qio);
}

/* ---------------------------------------------------------------- */
/* Reads                                                            */
/* ---------------------------------------------------------------- */

static void quorum_vote_work(struct work_struct *work);

static void quorum_read_finish(struct quorum_io *qio, int r)
{
	quorum_free_subs(qio);
	percpu_ref_put(&qio->set->users);
	qio->bio->bi_status = errno_to_blk_status(r);
	bio_endio(qio->bio);
}

/* Child @i's read as the vote sees it: its pages as segments in @seg. */
static void quorum_buf_of(struct quorum_io *qio, unsigned int i,
			  struct quorum_seg *seg, struct quorum_buf *b)
{
	struct bvec_iter_all iter;
	struct bio_vec *bv;

	b->err = qio->err[i];
	b->seg = seg;
	b->nseg = 0;
	if (b->err)
		return;
	bio_for_each_segment_all(bv, qio->sub[i], iter) {
		seg[b->nseg].base = page_address(bv->bv_page) + bv->bv_offset;
		seg[b->nseg++].len = bv->bv_len;
	}
}

/* Return child @i's read: copy it into the node's bio. */
static void quorum_read_copy(struct quorum_io *qio, unsigned int i)
{
	struct bvec_iter src = { .bi_size = qio->bio->bi_iter.bi_size };
	struct bvec_iter dst = qio->bio->bi_iter;

	bio_copy_data_iter(qio->bio, &dst, qio->sub[i], &src);
}

/*
 * quorum_read_agree() - every child read without error and the same
 * bytes, for a read small enough to compare where it completes (at most
 * QUORUM_INLINE_BYTES a child, so at most that many pages of segments).
 * Then the vote's result is known: child 0 wins, nobody is reported.
 */
static bool quorum_read_agree(struct quorum_io *qio)
{
	struct quorum_seg seg[2][QUORUM_INLINE_BYTES / PAGE_SIZE];
	struct quorum_buf a, b;
	unsigned int i;

	if ((u64)qio->sectors * max(qio->n - 1, 1u) >
	    QUORUM_INLINE_BYTES >> SECTOR_SHIFT)
		return false;
	for (i = 0; i < qio->n; i++)
		if (qio->err[i])
			return false;
	quorum_buf_of(qio, 0, seg[0], &a);
	for (i = 1; i < qio->n; i++) {
		quorum_buf_of(qio, i, seg[1], &b);
		if (!quorum_buf_equal(&a, &b, NULL))
			return false;
	}
	return true;
}

static void quorum_read_end(struct bio *rd)
{
	struct quorum_io *qio = rd->bi_private;
	unsigned int i = quorum_sub_index(qio, rd);

	qio->err[i] = blk_status_to_errno(rd->bi_status);
	if (!atomic_dec_and_test(&qio->pending))
		return;
	/*
	 * The last read to end votes on the spot when all agree (QEMU votes
	 * in the last read's coroutine); anything else needs the full vote,
	 * its reports and rewrites, in process context, in parallel.
	 */
	if (quorum_read_agree(qio)) {
		quorum_read_copy(qio, 0);
		quorum_read_finish(qio, 0);
		return;
	}
	INIT_WORK(&qio->work, quorum_vote_work);
	queue_work(qio->quorum->wq, &qio->work);
}

static void quorum_rewrite_end(struct bio *w)
{
	struct quorum_io *qio = w->bi_private;
	unsigned int i = quorum_sub_index(qio, w);
	struct quorum_child *c = qio->child[i];
	int err = blk_status_to_errno(w->bi_status);

	qio->sub[i] = NULL;
	bio_put(w);		/* its pages are the winner's */
	if (err)
		quorum_child_error_op(qio, c, err, "rewrite");
	else
		atomic64_inc(&c->rewrites);
	if (atomic_dec_and_test(&qio->pending))
		quorum_read_finish(qio, 0);
}

/*
 * rewrite-corrupted: write the winner's buffer over each child of
 * @corrupt, then end the read (QEMU ends it after its rewrites too).
 * Process context.
 */
static void quorum_rewrite(struct quorum_io *qio, unsigned int winner,
			   u32 corrupt)
{
	struct quorum_target *quorum = qio->quorum;
	struct bio *src = qio->sub[winner], *w, *ws[QUORUM_MAX_CHILDREN];
	struct bvec_iter_all iter;
	struct bio_vec *bv;
	unsigned int i, nw = 0;

	atomic_set(&qio->pending, hweight32(corrupt));
	/* At most QUORUM_MAX_CHILDREN - 1 bios: rw_bs always has a full set. */
	mutex_lock(&quorum->rw_lock);
	for (i = 0; i < qio->n; i++) {
		if (!(corrupt & BIT(i)))
			continue;
		w = bio_alloc_bioset(qio->child[i]->dev->bdev, QUORUM_PAGES,
				     REQ_OP_WRITE, GFP_NOIO, &quorum->rw_bs);
		w->bi_iter.bi_sector = qio->bio->bi_iter.bi_sector;
		bio_for_each_segment_all(bv, src, iter)
			__bio_add_page(w, bv->bv_page, bv->bv_len,
				       bv->bv_offset);
		w->bi_end_io = quorum_rewrite_end;
		w->bi_private = qio;
		qio->sub[i] = w;
		ws[nw++] = w;
	}
	mutex_unlock(&quorum->rw_lock);
	quorum_send(ws, nw);
}

/*
 * Every child's read has ended: vote, answer, report, rewrite.  @segs has
 * room for QUORUM_PAGES segments a child.
 */
static void quorum_read_vote(struct quorum_io *qio, struct quorum_seg *segs)
{
	struct quorum_target *quorum = qio->quorum;
	struct quorum_buf buf[QUORUM_MAX_CHILDREN];
	struct quorum_ballot v;
	unsigned int i;
	int r;

	for (i = 0; i < qio->n; i++)
		quorum_buf_of(qio, i, segs + i * QUORUM_PAGES, &buf[i]);
	r = quorum_vote(buf, qio->n, quorum->args.threshold, quorum->args.blkverify,
			&v);

	for (i = 0; i < qio->n; i++)
		if (v.failed & BIT(i))
			quorum_child_error(qio, qio->child[i], qio->err[i]);
	if (r) {
		if (v.mismatch)
			DMERR_LIMIT("%s: blkverify mismatch at sector %llu (byte %llu)",
				    quorum_node(quorum),
				    (unsigned long long)(qio->sector +
							 (v.mismatch_at >> SECTOR_SHIFT)),
				    (unsigned long long)((qio->sector << SECTOR_SHIFT) +
							 v.mismatch_at));
		quorum_failure(qio, r);
		quorum_read_finish(qio, r);
		return;
	}

	quorum_read_copy(qio, v.winner);
	for (i = 0; i < qio->n; i++) {
		if (!(v.corrupt & BIT(i)))
			continue;
		atomic64_inc(&qio->child[i]->bad_reads);
		DMERR_LIMIT("%s: children.%u (%s): bad read at sector %llu+%u",
			    quorum_node(quorum), qio->child[i]->index,
			    qio->child[i]->name,
			    (unsigned long long)qio->sector, qio->sectors);
		quorum_report(qio, QUORUM_REPORT_BAD, qio->child[i], 0);
	}
	if (!quorum->args.rewrite_corrupted || !v.corrupt) {
		quorum_read_finish(qio, 0);
		return;
	}
	/* Keep only the winner's buffer: the rewrites take its pages. */
	for (i = 0; i < qio->n; i++) {
		if (i != v.winner && qio->sub[i]) {
			quorum_free_read(quorum, qio->sub[i]);
			qio->sub[i] = NULL;
		}
	}
	quorum_rewrite(qio, v.winner, v.corrupt);
}

/* read-pattern fifo: dm's clone goes to the next child, as it was mapped. */
static void quorum_fifo_retry(struct quorum_io *qio)
{
	struct bio *bio = qio->bio;

	bio->bi_status = BLK_STS_OK;
	bio->bi_iter = qio->iter;
	bio_set_dev(bio, qio->child[qio->next]->dev->bdev);
	submit_bio_noacct(bio);
}

/*
 * A vote with segments of its own; short of memory, it waits its turn for
 * the deferred worker's scratch, so that a vote never fails for want of
 * memory.
 */
static void quorum_vote_work(struct work_struct *work)
{
	struct quorum_io *qio = container_of(work, struct quorum_io, work);
	struct quorum_seg *segs;

	segs = kmalloc_array(qio->n * QUORUM_PAGES, sizeof(*segs),
			     GFP_NOIO | __GFP_NORETRY | __GFP_NOWARN);
	if (!segs) {
		quorum_queue(qio);
		return;
	}
	quorum_read_vote(qio, segs);
	kfree(segs);
}

static void quorum_deferred(struct bg_deferred *d, struct bio *bio)
{
	struct quorum_target *quorum = container_of(d, struct quorum_target,
						    deferred);
	struct quorum_io *qio = dm_per_bio_data(bio, sizeof(*qio));

	if (qio->kind == QUORUM_IO_FIFO)
		quorum_fifo_retry(qio);
	else
		quorum_read_vote(qio, quorum->segs);
}

/* ---------------------------------------------------------------- */
/* Target methods                                                   */
/* ---------------------------------------------------------------- */

static int quorum_map(struct dm_target *ti, struct bio *bio)
{
	struct quorum_target *quorum = ti->private;
	struct quorum_io *qio = dm_per_bio_data(bio, sizeof(*qio));
	struct quorum_set *set;

	if (bg_bio_write_refused(quorum->inst, bio))
		return DM_MAPIO_KILL;

	if (bio_op(bio) == REQ_OP_READ &&
	    quorum->args.read_pattern != QUORUM_READ_FIFO &&
	    bio_sectors(bio) > QUORUM_MAX_IO_SECTORS)
		dm_accept_partial_bio(bio, QUORUM_MAX_IO_SECTORS);
	qio->quorum = quorum;
	qio->bio = bio;
	qio->sector = bio->bi_iter.bi_sector;
	qio->sectors = bio_sectors(bio);
	if (bio_sectors(bio))
		bio->bi_iter.bi_sector = dm_target_offset(ti, qio->sector);

	rcu_read_lock();
	set = rcu_dereference(quorum->set);
	qio->n = set->n;
	memcpy(qio->child, set->child, set->n * sizeof(set->child[0]));
	qio->set = NULL;
	if (bio_op(bio) != REQ_OP_READ ||
	    quorum->args.read_pattern != QUORUM_READ_FIFO) {
		/* Alive until a grace period after a kill: see quorum_set_retire(). */
		percpu_ref_get(&set->users);
		qio->set = set;
	}
	rcu_read_unlock();

	if (bio_op(bio) != REQ_OP_READ) {
		qio->kind = QUORUM_IO_FANOUT;
		quorum_submit_subs(qio, quorum_fanout_end);
		return DM_MAPIO_SUBMITTED;
	}
	if (quorum->args.read_pattern == QUORUM_READ_FIFO) {
		qio->kind = QUORUM_IO_FIFO;
		qio->next = 0;
		qio->iter = bio->bi_iter;
		bio_set_dev(bio, qio->child[0]->dev->bdev);
		return DM_MAPIO_REMAPPED;
	}
	qio->kind = QUORUM_IO_READ;
	quorum_submit_subs(qio, quorum_read_end);
	return DM_MAPIO_SUBMITTED;
}

/* Only fifo reads come back here with work to do: try the next child. */
static int quorum_end_io(struct dm_target *ti, struct bio *bio,
			 blk_status_t *error)
{
	struct quorum_io *qio = dm_per_bio_data(bio, sizeof(*qio));

	if (qio->kind != QUORUM_IO_FIFO || !*error)
		return DM_ENDIO_DONE;
	quorum_child_error(qio, qio->child[qio->next],
			   blk_status_to_errno(*error));
	if (++qio->next < qio->n) {
		quorum_queue(qio);
		return DM_ENDIO_INCOMPLETE;
	}
	quorum_failure(qio, blk_status_to_errno(*error));
	return DM_ENDIO_DONE;
}

/*
 * Status.
 * INFO:  <threshold> <#children>
 *        [<dev> <bad_reads> <rewrites> <io_errors>]... <quorum_failures>
 * TABLE: the table line with the children as they are now, so that a
 *        reload with it keeps them; options rewrite-corrupted,
 *        read-pattern fifo (quorum is not shown), blkverify.
 * IMA:   target_name, target_version, threshold, children, read_pattern,
 *        rewrite_corrupted, blkverify.
 */
static void quorum_status(struct dm_target *ti, status_type_t type,
			  unsigned int status_flags, char *result,
			  unsigned int maxlen)
{
	struct quorum_target *quorum = ti->private;
	bool fifo = quorum->args.read_pattern == QUORUM_READ_FIFO;
	struct bg_opt_args opts = {};
	struct quorum_set *set;
	struct quorum_child *c;
	unsigned int sz = 0, i;

	rcu_read_lock();
	set = rcu_dereference(quorum->set);
	switch (type) {
	case STATUSTYPE_INFO:
		DMEMIT("%u %u", quorum->args.threshold, set->n);
		for (i = 0; i < set->n; i++) {
			c = set->child[i];
			DMEMIT(" %s %llu %llu %llu", c->dev->name,
			       (unsigned long long)atomic64_read(&c->bad_reads),
			       (unsigned long long)atomic64_read(&c->rewrites),
			       (unsigned long long)atomic64_read(&c->io_errors));
		}
		DMEMIT(" %llu", (unsigned long long)
		       atomic64_read(&quorum->quorum_failures));
		break;
	case STATUSTYPE_TABLE:
		DMEMIT("%u %u", quorum->args.threshold, set->n);
		for (i = 0; i < set->n; i++)
			DMEMIT(" %s", set->child[i]->dev->name);
		if (quorum->args.rewrite_corrupted)
			bg_opt_add(&opts, "rewrite-corrupted");
		if (fifo)
			bg_opt_add(&opts, "read-pattern fifo");
		if (quorum->args.blkverify)
			bg_opt_add(&opts, "blkverify");
		sz = bg_opt_emit(result, maxlen, sz, &opts);
		break;
	case STATUSTYPE_IMA:
		DMEMIT_TARGET_NAME_VERSION(ti->type);
		DMEMIT(",threshold=%u,children=%u,read_pattern=%s",
		       quorum->args.threshold, set->n, fifo ? "fifo" : "quorum");
		DMEMIT(",rewrite_corrupted=%c,blkverify=%c;",
		       quorum->args.rewrite_corrupted ? 'y' : 'n',
		       quorum->args.blkverify ? 'y' : 'n');
		break;
	}
	rcu_read_unlock();
}

/* nodes/<name>/stats: a line per child, then the node's counters. */
static int quorum_stats_text(struct bg_instance *inst, char *buf, size_t size)
{
	struct quorum_target *quorum = inst->private;
	struct quorum_set *set;
	struct quorum_child *c;
	int len = 0;
	unsigned int i;
	u64 dropped;

	rcu_read_lock();
	set = rcu_dereference(quorum->set);
	for (i = 0; i < set->n; i++) {
		c = set->child[i];
		len = bg_emit(buf, size, len,
			      "children.%u %s bad_reads=%llu rewrites=%llu io_errors=%llu\n",
			      c->index, c->name,
			      (unsigned long long)atomic64_read(&c->bad_reads),
			      (unsigned long long)atomic64_read(&c->rewrites),
			      (unsigned long long)atomic64_read(&c->io_errors));
	}
	rcu_read_unlock();
	spin_lock_irq(&quorum->report_lock);
	dropped = quorum->events_dropped;
	spin_unlock_irq(&quorum->report_lock);
	return bg_emit(buf, size, len, "quorum_failures=%llu events_dropped=%llu\n",
		       (unsigned long long)atomic64_read(&quorum->quorum_failures),
		       (unsigned long long)dropped);
}

static int quorum_iterate_devices(struct dm_target *ti,
				  iterate_devices_callout_fn fn, void *data)
{
	struct quorum_target *quorum = ti->private;
	struct quorum_set *set;
	unsigned int i;
	int r = 0;

	/* The callouts may sleep: the messages' lock, not RCU. */
	mutex_lock(&quorum->lock);
	set = rcu_dereference_protected(quorum->set, lockdep_is_held(&quorum->lock));
	for (i = 0; !r && i < set->n; i++)
		r = fn(ti, set->child[i]->dev, 0, ti->len, data);
	mutex_unlock(&quorum->lock);
	return r;
}

/* ---------------------------------------------------------------- */
/* Children: the constructor's and the messages'                    */
/* ---------------------------------------------------------------- */

/*
 * Open @path as children.@index and check it against @set, the children
 * so far: not one of them, and of their size.  The caller adds it to the
 * set.  On error ti->error holds the reason and the device is put back.
 */
static struct quorum_child *quorum_open_child(struct quorum_target *quorum,
					      const char *path,
					      unsigned int index,
					      struct quorum_set *set)
{
	struct dm_target *ti = quorum->ti;
	struct quorum_child *c;
	struct dm_dev *dev;
	unsigned int i;
	int r;

	c = kzalloc(sizeof(*c), GFP_KERNEL);
	if (!c) {
		ti->error = "Cannot allocate a quorum child";
		return ERR_PTR(-ENOMEM);
	}
	r = bg_instance_add_child(quorum->inst, path, BG_ROLE_CHILD, index, &dev);
	if (r) {
		kfree(c);
		return ERR_PTR(r);
	}
	for (i = 0; i < set->n; i++) {
		if (set->child[i]->dev == dev) {
			ti->error = "The same device is given twice as a child";
			r = -EINVAL;
			goto out_put;
		}
	}
	if (set->n && bdev_nr_bytes(dev->bdev) !=
		      bdev_nr_bytes(set->child[0]->dev->bdev)) {
		ti->error = "Children differ in size";
		r = -EINVAL;
		goto out_put;
	}
	c->dev = dev;
	c->index = index;
	bg_instance_child_name(quorum->inst, dev, c->name);
	atomic64_set(&c->bad_reads, 0);
	atomic64_set(&c->rewrites, 0);
	atomic64_set(&c->io_errors, 0);
	list_add_tail(&c->entry, &quorum->all);
	return c;

out_put:
	bg_instance_detach_child(quorum->inst, dev);
	dm_put_device(ti, dev);
	kfree(c);
	return ERR_PTR(r);
}

static void quorum_set_release(struct percpu_ref *ref)
{
	struct quorum_set *set = container_of(ref, struct quorum_set, users);

	complete(&set->drained);
}

static struct quorum_set *quorum_set_alloc(void)
{
	struct quorum_set *set = kzalloc(sizeof(*set), GFP_KERNEL);

	if (set && percpu_ref_init(&set->users, quorum_set_release, 0,
				   GFP_KERNEL)) {
		kfree(set);
		return NULL;
	}
	if (set)
		init_completion(&set->drained);
	return set;
}

static void quorum_set_free(struct quorum_set *set)
{
	if (!set)
		return;
	percpu_ref_exit(&set->users);
	kfree(set);
}

/* Publish @set in place of the current one, returned.  quorum->lock held. */
static struct quorum_set *quorum_set_replace(struct quorum_target *quorum,
					     struct quorum_set *set)
{
	quorum->args.nr_children = set->n;
	return rcu_replace_pointer(quorum->set, set, lockdep_is_held(&quorum->lock));
}

/*
 * Wait until no request mapped with @old, a set just replaced, is left;
 * then free it.  A map() that found @old under rcu_read_lock() may take
 * its reference after the kill: the kill drops the initial reference only
 * after an RCU grace period, so the count cannot reach zero before such
 * a get.  Process context, without quorum->lock: a request may wait for a
 * child as long as that child takes.
 */
static void quorum_set_retire(struct quorum_set *old)
{
	percpu_ref_kill(&old->users);
	wait_for_completion(&old->drained);
	quorum_set_free(old);
}

static int quorum_add_child(struct quorum_target *quorum, const char *path)
{
	struct quorum_set *old, *set;
	struct quorum_child *c;
	const char *error;
	int r;

	set = quorum_set_alloc();
	if (!set)
		return -ENOMEM;
	mutex_lock(&quorum->lock);
	old = rcu_dereference_protected(quorum->set, lockdep_is_held(&quorum->lock));
	r = quorum_can_add(&quorum->args, &error);
	if (r) {
		DMERR("%s: add_child %s refused: %s", quorum_node(quorum), path,
		      error);
		goto out;
	}
	r = mempool_resize(quorum->pages, (old->n + 1) * QUORUM_PAGES);
	if (r) {
		DMERR("%s: add_child %s: cannot grow the page pool",
		      quorum_node(quorum), path);
		goto out;
	}
	c = quorum_open_child(quorum, path, quorum->next_index, old);
	if (IS_ERR(c)) {
		r = PTR_ERR(c);
		DMERR("%s: add_child %s refused: %s", quorum_node(quorum), path,
		      quorum->ti->error);
		goto out;
	}
	memcpy(set->child, old->child, old->n * sizeof(old->child[0]));
	set->n = old->n;
	set->child[set->n++] = c;
	quorum->next_index++;
	old = quorum_set_replace(quorum, set);
	set = NULL;
	DMINFO("%s: children.%u (%s) added", quorum_node(quorum), c->index,
	       c->name);
	mutex_unlock(&quorum->lock);
	quorum_set_retire(old);
	return 0;
out:
	mutex_unlock(&quorum->lock);
	quorum_set_free(set);
	return r;
}

static int quorum_remove_child(struct quorum_target *quorum, const char *arg)
{
	struct quorum_set *old, *set;
	struct quorum_child *c = NULL;
	const char *error;
	unsigned int index, i;
	int r;

	if (!strncmp(arg, "children.", 9))
		arg += 9;
	if (kstrtouint(arg, 10, &index)) {
		DMERR("%s: remove_child: not a child index: %s",
		      quorum_node(quorum), arg);
		return -EINVAL;
	}
	set = quorum_set_alloc();
	if (!set)
		return -ENOMEM;
	mutex_lock(&quorum->lock);
	old = rcu_dereference_protected(quorum->set, lockdep_is_held(&quorum->lock));
	for (i = 0; i < old->n; i++) {
		if (old->child[i]->index == index)
			c = old->child[i];
		else
			set->child[set->n++] = old->child[i];
	}
	if (!c) {
		DMERR("%s: remove_child: no child children.%u",
		      quorum_node(quorum), index);
		r = -EINVAL;
		goto out;
	}
	r = quorum_can_remove(&quorum->args, &error);
	if (r) {
		DMERR("%s: remove_child children.%u refused: %s",
		      quorum_node(quorum), index, error);
		goto out;
	}
	old = quorum_set_replace(quorum, set);
	set = NULL;
	/* dm's device list of a live table is not ours: put in the dtr. */
	c->detached = true;
	bg_instance_detach_child(quorum->inst, c->dev);
	DMINFO("%s: children.%u (%s) removed", quorum_node(quorum), c->index,
	       c->name);
	mutex_unlock(&quorum->lock);
	quorum_set_retire(old);
	return 0;
out:
	mutex_unlock(&quorum->lock);
	quorum_set_free(set);
	return r;
}

/*
 * Messages:
 *   add_child <dev>      a new child, children.<next index>, declared in
 *                        sync by the user (nothing is copied to it)
 *   remove_child <N>     children.N leaves the vote and the graph
 */
static int quorum_message(struct dm_target *ti, unsigned int argc,
			  char **argv, char *result, unsigned int maxlen)
{
	struct quorum_target *quorum = ti->private;

	if (argc == 2 && !strcmp(argv[0], "add_child"))
		return quorum_add_child(quorum, argv[1]);
	if (argc == 2 && !strcmp(argv[0], "remove_child"))
		return quorum_remove_child(quorum, argv[1]);
	DMERR("%s: unknown message: add_child <dev> or remove_child <N>",
	      quorum_node(quorum));
	return -EINVAL;
}

/* ---------------------------------------------------------------- */
/* Constructor and destructor                                       */
/* ---------------------------------------------------------------- */

static void quorum_free_children(struct quorum_target *quorum)
{
	struct quorum_child *c, *tmp;

	list_for_each_entry_safe(c, tmp, &quorum->all, entry) {
		if (c->detached)
			dm_put_device(quorum->ti, c->dev);
		kfree(c);
	}
}

static int quorum_ctr(struct dm_target *ti, unsigned int argc, char **argv)
{
	struct quorum_child *c;
	struct quorum_set *set;
	struct quorum_target *quorum;
	const char *error;
	unsigned int i;
	int r;

	quorum = kvzalloc(sizeof(*quorum), GFP_KERNEL);
	set = quorum_set_alloc();
	if (!quorum || !set) {
		ti->error = "Cannot allocate the quorum context";
		r = -ENOMEM;
		goto out_free;
	}
	quorum->ti = ti;
	mutex_init(&quorum->lock);
	mutex_init(&quorum->alloc_lock);
	mutex_init(&quorum->rw_lock);
	INIT_LIST_HEAD(&quorum->all);
	spin_lock_init(&quorum->report_lock);
	INIT_WORK(&quorum->report_work, quorum_report_work);
	atomic64_set(&quorum->quorum_failures, 0);

	r = quorum_parse(argc, argv, &quorum->args, &error);
	if (r) {
		ti->error = (char *)error;
		goto out_free;
	}

	quorum->inst = bg_instance_create(ti, &quorum_kind, quorum);
	if (IS_ERR(quorum->inst)) {
		r = PTR_ERR(quorum->inst);
		goto out_free;
	}
	if (quorum->args.rewrite_corrupted && !quorum->inst->writable) {
		ti->error = "rewrite-corrupted needs a writable table";
		r = -EINVAL;
		goto out_instance;
	}
	for (i = 0; i < quorum->args.nr_children; i++) {
		c = quorum_open_child(quorum, quorum->args.dev[i], i, set);
		if (IS_ERR(c)) {
			r = PTR_ERR(c);
			goto out_instance;
		}
		set->child[set->n++] = c;
	}
	memset(quorum->args.dev, 0, sizeof(quorum->args.dev));	/* argv goes away */
	quorum->next_index = set->n;
	if (ti->len > bdev_nr_sectors(set->child[0]->dev->bdev)) {
		ti->error = "Device is larger than its children";
		r = -EINVAL;
		goto out_instance;
	}

	r = bioset_init(&quorum->bs, 4 * QUORUM_MAX_CHILDREN, 0, BIOSET_NEED_BVECS);
	if (r) {
		ti->error = "Cannot allocate the bio set";
		goto out_instance;
	}
	r = bioset_init(&quorum->rw_bs, QUORUM_MAX_CHILDREN, 0, BIOSET_NEED_BVECS);
	if (r) {
		ti->error = "Cannot allocate the bio set";
		goto out_bioset;
	}
	quorum->pages = mempool_create_page_pool(set->n * QUORUM_PAGES, 0);
	if (!quorum->pages) {
		ti->error = "Cannot allocate the page pool";
		r = -ENOMEM;
		goto out_rw_bioset;
	}
	/* Per node: a node's votes must not wait behind another's reads. */
	quorum->wq = bg_node_wq(ti, &quorum_kind, "", 0);
	if (!quorum->wq) {
		ti->error = "Cannot allocate the workqueue";
		r = -ENOMEM;
		goto out_pool;
	}
	bg_defer_init(&quorum->deferred, quorum->wq, quorum_deferred);

	RCU_INIT_POINTER(quorum->set, set);
	ti->num_flush_bios = 1;
	ti->num_discard_bios = 1;
	ti->num_write_zeroes_bios = 1;
	ti->per_io_data_size = sizeof(struct quorum_io);
	ti->private = quorum;
	return 0;

out_pool:
	mempool_destroy(quorum->pages);
out_rw_bioset:
	bioset_exit(&quorum->rw_bs);
out_bioset:
	bioset_exit(&quorum->bs);
out_instance:
	bg_instance_destroy(quorum->inst);	/* puts the children's devices */
	quorum_free_children(quorum);
out_free:
	quorum_set_free(set);
	kvfree(quorum);
	return r;
}

static void quorum_dtr(struct dm_target *ti)
{
	struct quorum_target *quorum = ti->private;

	destroy_workqueue(quorum->wq);	/* sends the last reports */
	/*
	 * Out of the graph first: a reader of nodes/<name>/stats follows
	 * the children until bg_instance_destroy() returns.
	 */
	bg_instance_destroy(quorum->inst);
	quorum_free_children(quorum);
	mempool_destroy(quorum->pages);
	bioset_exit(&quorum->rw_bs);
	bioset_exit(&quorum->bs);
	quorum_set_free(rcu_dereference_protected(quorum->set, true));
	kvfree(quorum);
}

static struct target_type quorum_target_type = {
	.name		= "bgraph-quorum",
	.version	= {1, 0, 0},
	.module		= THIS_MODULE,
	.ctr		= quorum_ctr,
	.dtr		= quorum_dtr,
	.map		= quorum_map,
	.end_io		= quorum_end_io,
	.status		= quorum_status,
	.message	= quorum_message,
	.iterate_devices = quorum_iterate_devices,
	.postsuspend	= bg_target_postsuspend,
	.preresume	= bg_target_preresume,
	.resume		= bg_target_resume,
};

struct bg_kind quorum_kind = {
	.name		= "quorum",
	.target		= &quorum_target_type,
	.stats_text	= quorum_stats_text,
};

MODULE_ALIAS("dm-bgraph-quorum");
