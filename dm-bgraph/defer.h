/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Bios a node hands from map() or end_io() to process context, and the
 * workqueues nodes do it on.
 *
 * The pattern of dm-thin, dm-clone and dm-cache: map() (atomic context,
 * must not wait) puts a bio on a list under a spinlock and kicks one work
 * item; the work item takes the whole list and does, for each bio, what
 * map() could not: wait for memory, read metadata, vote.  One work item
 * per list keeps the bios in order and needs no allocation per bio.
 *
 * Which workqueue a kind uses, and why, is the kind's to say in its file;
 * the rules the kinds follow today:
 *
 * - Per node (bg_node_wq()): when a node's work waits on its own
 *   children's I/O (quorum's votes, qcow2's metadata reads and writes).
 *   A workqueue per node keeps one node's waiting work from delaying
 *   another's, and WQ_MEM_RECLAIM gives each its rescuer, so a node's
 *   writeback can always make progress under memory pressure.
 * - Per kind (bg_kind_wq()): when the work only decides and submits and
 *   never waits (throttle's release of held bios on a timer): one shared
 *   workqueue, one rescuer, however many nodes.
 *
 * qcow2's allocating writes do not use struct bg_deferred: each waits for
 * metadata I/O, and one work item per list would serialise every
 * allocation of a node behind the slowest; they are a work item per bio
 * on the node's unbound workqueue instead (targets/qcow2.h says more).
 */
#ifndef DM_BGRAPH_DEFER_H
#define DM_BGRAPH_DEFER_H

#include <linux/bio.h>
#include <linux/device-mapper.h>
#include <linux/spinlock.h>
#include <linux/workqueue.h>

struct bg_kind;

/**
 * struct bg_deferred - bios waiting for a node's worker
 * @lock:	guards @bios; taken with interrupts off (end_io may run in
 *		interrupt context)
 * @bios:	the bios, oldest first
 * @work:	the worker: takes all of @bios and calls @process on each,
 *		under one block plug
 * @wq:		where @work runs
 * @process:	the kind's work for one bio; process context, may sleep
 */
struct bg_deferred {
	spinlock_t lock;		/* guards bios */
	struct bio_list bios;
	struct work_struct work;
	struct workqueue_struct *wq;
	void (*process)(struct bg_deferred *d, struct bio *bio);
};

/**
 * bg_defer_init() - set up an empty list
 * @d:		the list
 * @wq:		the workqueue its worker runs on
 * @process:	called once for each bio given to bg_defer_bio()
 */
void bg_defer_init(struct bg_deferred *d, struct workqueue_struct *wq,
		   void (*process)(struct bg_deferred *d, struct bio *bio));

/**
 * bg_defer_bio() - hand @bio to the worker of @d
 * @d:		the list
 * @bio:	a bio the caller owns until @process gets it (its bi_next
 *		is used for the list)
 *
 * Context: any; does not sleep.
 */
void bg_defer_bio(struct bg_deferred *d, struct bio *bio);

/**
 * bg_defer_flush() - wait until every bio given so far has been processed
 * @d:		the list
 *
 * Context: sleeps.  Bios given during the wait may be processed too.
 */
void bg_defer_flush(struct bg_deferred *d);

/**
 * bg_node_wq() - a workqueue of one node, named "bgraph-<kind>/<dev>" or
 * "bgraph-<kind><suffix>/<dev>"
 * @ti:		the node's target being constructed
 * @kind:	its kind
 * @suffix:	"" or a short suffix for a node's second workqueue
 * @flags:	alloc_workqueue() flags; WQ_MEM_RECLAIM is always added
 *
 * Context: sleeps.
 * Return: the workqueue, or NULL.
 */
struct workqueue_struct *bg_node_wq(struct dm_target *ti,
				    const struct bg_kind *kind,
				    const char *suffix, unsigned int flags);

/**
 * bg_kind_wq() - the one workqueue a kind shares between its nodes,
 * named "bgraph-<kind>"
 * @kind:	the kind
 * @flags:	alloc_workqueue() flags; WQ_MEM_RECLAIM is always added
 *
 * Context: sleeps; from the kind's init.
 * Return: the workqueue, or NULL.
 */
struct workqueue_struct *bg_kind_wq(const struct bg_kind *kind,
				    unsigned int flags);

#endif /* DM_BGRAPH_DEFER_H */
