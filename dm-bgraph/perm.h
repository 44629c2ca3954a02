/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Per-edge permissions after QEMU's model (include/block/block-common.h):
 * a parent takes some permissions on a child and shares some with the
 * other users of that child.  Pure logic; see pure.h.
 */
#ifndef DM_BGRAPH_PERM_H
#define DM_BGRAPH_PERM_H

#include "pure.h"

#define BG_PERM_CONSISTENT_READ	0x01u	/* reads see a consistent image */
#define BG_PERM_WRITE		0x02u	/* writes that may change data */
#define BG_PERM_WRITE_UNCHANGED	0x04u	/* writes that never change data */
#define BG_PERM_RESIZE		0x08u	/* change the size */
#define BG_PERM_ALL		0x0fu
#define BG_PERM_NR		4

/* The role an edge plays for its parent; printed as "file", ... */
enum bg_role {
	BG_ROLE_FILE,		/* the device holding the node's data */
	BG_ROLE_BACKING,	/* the image a COW node reads through to */
	BG_ROLE_CHILD,		/* children.N of a node with several children */
	BG_ROLE_NR,
};

struct bg_perm_pair {
	unsigned int perm;	/* what the parent takes */
	unsigned int shared;	/* what the parent lets others take */
};

/*
 * bg_role_perms() - the permissions a parent takes on a child in @role.
 * @writable: the parent itself is opened for writing.
 */
struct bg_perm_pair bg_role_perms(enum bg_role role, bool writable);

/*
 * The edges already on one child, folded: what they take and what at least
 * one of them does not share.  Start from { 0, 0 }.
 */
struct bg_perm_acc {
	unsigned int taken;
	unsigned int unshared;
};

void bg_perm_acc_add(struct bg_perm_acc *acc, struct bg_perm_pair p);

/*
 * bg_perm_conflict() - may an edge @next join the edges folded in @acc?
 * Returns 0, or the conflicting bits: bits @next takes that an existing edge
 * does not share, and bits an existing edge takes that @next does not share.
 */
unsigned int bg_perm_conflict(const struct bg_perm_acc *acc,
			      struct bg_perm_pair next);

/*
 * bg_perm_read_only() - do the edges folded in @acc make their child
 * read-only for every opener?  True when none takes WRITE and at least one
 * does not share it (a node under a backing edge, for example).
 */
bool bg_perm_read_only(const struct bg_perm_acc *acc);

/* "consistent-read,write" or "-" into @buf; returns the length (snprintf). */
int bg_perm_format(char *buf, size_t size, unsigned int perm);

/* "file", "backing", "children.3" into @buf; returns the length. */
int bg_role_format(char *buf, size_t size, enum bg_role role,
		   unsigned int index);

#endif /* DM_BGRAPH_PERM_H */
