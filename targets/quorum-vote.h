/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The vote of bgraph-quorum, after QEMU's block/quorum.c: which child's read
 * to return, which children to report and rewrite, when a write or flush
 * succeeds, and the table line with QEMU's validation rules.  Pure logic
 * (see pure.h): no allocation, no locks, no sleeping; every function may be
 * called from any context, on the caller's data only.
 *
 * Children are numbered 0..n-1 in table order, at most QUORUM_MAX_CHILDREN of
 * them; a set of children is a u32 bitmap, bit i for child i.
 *
 * The read vote follows quorum_vote():
 *
 * - A read that failed takes no part in the content vote.  When fewer than
 *   threshold reads succeeded, the read fails, and its error is the winner of
 *   a vote among the failed children on their error codes (children that
 *   failed with the same code vote together: quorum_vote_error()).  An error
 *   never outvotes data: with threshold 1, one good read wins over any number
 *   of errors.
 * - Otherwise the first successful read is compared with the others; when
 *   all agree it is returned (QEMU's fast path).  Else the successful reads
 *   are grouped by content.  QEMU hashes each read with SHA-256 and groups
 *   the hashes; here each read is compared with memcmp() against the first
 *   member of each group found so far.  That is exact (no hash, no crypto in
 *   the I/O path, nothing to allocate) and, with at most 16 children, costs
 *   at most n - 1 compares per group; a compare of two different reads stops
 *   at the first chunk that differs.
 * - The largest group wins if it has at least threshold members, else the
 *   read fails with -EIO (a quorum failure).
 * - Ties, as quorum_get_vote_winner() breaks them: quorum_count_vote()
 *   creates groups in child order but puts each new group at the head of its
 *   list, and the winner is the first group in that list with a strictly
 *   larger count.  So among the largest groups, the one created last wins:
 *   the group whose lowest-numbered member is the highest.  With threshold
 *   1 and every read different, the last successful child's data is
 *   returned.  The same rule picks the error code among tied errors.
 *
 * Writes, flushes and discards (quorum_co_pwritev(), quorum_co_flush())
 * succeed when at least threshold children succeed; otherwise they fail
 * with the error vote's winner.
 */
#ifndef DM_BGRAPH_QUORUM_VOTE_H
#define DM_BGRAPH_QUORUM_VOTE_H

#include "../dm-bgraph/pure.h"

/*
 * At most 16 children: every set fits a u32 with room to spare, the vote's
 * scratch lives on the stack (a few hundred bytes), and the worst case of the
 * grouping (every read different) stays at 120 compares.  The refusals in
 * quorum-vote.c spell the number out.
 */
#define QUORUM_MAX_CHILDREN		16

/* One piece of a child's read: @len bytes at @base. */
struct quorum_seg {
	const void *base;
	size_t len;
};

/*
 * One child's read: @err is 0 when it succeeded, then its data is the @nseg
 * segments of @seg, in order.  Two children's data may be cut into different
 * segments; only the bytes count.  @err is a negative errno otherwise, and
 * @seg is not looked at.
 */
struct quorum_buf {
	const struct quorum_seg *seg;
	unsigned int nseg;
	int err;
};

/* The outcome of quorum_vote(). */
struct quorum_ballot {
	/*
	 * 0: return the data of @winner.  -EIO: the reads disagree and no
	 * content reached the threshold, or blkverify found a mismatch.
	 * Otherwise the winning error code: fewer than threshold reads
	 * succeeded.  Any non-zero @ret is a quorum failure to report.
	 */
	int ret;
	unsigned int winner;	/* @ret 0: the lowest-numbered child of @winners */
	u32 ok;			/* reads that succeeded */
	u32 failed;		/* reads that failed: report each as an I/O error */
	u32 winners;		/* @ret 0: the winning group; else 0 */
	/*
	 * @ret 0: the successful reads outside @winners -- report each as a
	 * bad read, and with rewrite-corrupted rewrite it with the winner's
	 * data (QEMU rewrites neither failed reads nor anything when the vote
	 * fails).  Else 0.
	 */
	u32 corrupt;
	u32 losers;		/* every child outside @winners */
	unsigned int versions;	/* distinct contents among the successful reads */
	bool unanimous;		/* every successful read agreed */
	bool mismatch;		/* blkverify: the two reads differ ... */
	u64 mismatch_at;	/* ... first at this byte of the read */
};

/*
 * quorum_buf_equal() - do @a and @b hold the same bytes?  Reads of different
 * lengths differ.  When they differ and @mismatch_at is not NULL, it is set
 * to the first byte that differs (the shorter length if one is a prefix of
 * the other).  Both must be successful reads.
 */
bool quorum_buf_equal(const struct quorum_buf *a, const struct quorum_buf *b,
		      u64 *mismatch_at);

/*
 * quorum_vote() - QEMU's read vote over the @n reads of @buf (one per
 * child, all of the same range) with @threshold: fills @v and returns
 * @v->ret.  With @blkverify (two children, threshold 2) two successful reads
 * that differ fail the read with -EIO and set @v->mismatch and
 * @v->mismatch_at, where QEMU prints the offset and exits.  Returns -EINVAL,
 * with only @v->ret set, unless 1 <= @threshold <= @n <= QUORUM_MAX_CHILDREN.
 * Reads @buf only; uses no memory but its own stack.
 */
int quorum_vote(const struct quorum_buf *buf, unsigned int n,
		unsigned int threshold, bool blkverify, struct quorum_ballot *v);

/*
 * quorum_result() - a write, write-zeroes, discard or flush went to @n
 * children and child i ended with @err[i] (0 or a negative errno).  Returns
 * 0 when at least @threshold succeeded, else the error vote's winner;
 * @failed (may be NULL) gets the children that failed, to report whether or
 * not the request succeeded.  -EINVAL as quorum_vote().
 */
int quorum_result(const int *err, unsigned int n, unsigned int threshold,
		  u32 *failed);

enum quorum_read_pattern {
	QUORUM_READ_QUORUM,	/* read every child and vote */
	QUORUM_READ_FIFO,		/* read child 0; on error, the next; ... */
};

/* A bgraph-quorum table line. */
struct quorum_args {
	unsigned int threshold;
	unsigned int nr_children;
	const char *dev[QUORUM_MAX_CHILDREN];	/* point into the table's argv */
	enum quorum_read_pattern read_pattern;
	bool rewrite_corrupted;
	bool blkverify;
};

/*
 * quorum_parse() - parse the @argc words of @argv, a whole table line
 * after the target name:
 *
 *   <threshold> <#children> <dev>... [<#opt> [rewrite-corrupted]
 *                                  [read-pattern quorum|fifo] [blkverify]]
 *
 * <#opt> counts the words after it.  QEMU's rules: threshold from 1 to the
 * number of children; blkverify needs exactly two children and threshold
 * 2, and excludes rewrite-corrupted.  QEMU reads blkverify and
 * rewrite-corrupted only with read-pattern quorum and silently ignores them
 * with fifo; they are refused with fifo here, so that a table never shows
 * an option that does nothing.  Returns 0, or -EINVAL with a literal
 * one-line reason in *@error.  @a->dev[] points into @argv; the devices
 * themselves (equal sizes, opening) are the constructor's business.
 */
int quorum_parse(unsigned int argc, char **argv, struct quorum_args *a,
		 const char **error);

/*
 * quorum_can_add() - may a child be added to the quorum configured as
 * @a (quorum_add_child())?  Not in blkverify mode, not past QUORUM_MAX_CHILDREN.
 * 0, or -EINVAL with a literal reason in *@error.
 */
int quorum_can_add(const struct quorum_args *a, const char **error);

/*
 * quorum_can_remove() - may a child be removed (quorum_del_child())?
 * Not when that would leave fewer children than the threshold.  0, or
 * -EINVAL with a literal reason in *@error.
 */
int quorum_can_remove(const struct quorum_args *a, const char **error);

#endif /* DM_BGRAPH_QUORUM_VOTE_H */
