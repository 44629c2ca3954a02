// SPDX-License-Identifier: GPL-2.0
/*
 * Per-edge permissions: which parent takes what on a child, and whether
 * the parents of one child can coexist.  Pure logic; see pure.h.
 *
 * The defaults follow QEMU's bdrv_default_perms(): a data child ("file",
 * "children.N") is read and, for a writable parent, written; a backing
 * child is only read, and its parent shares neither WRITE nor RESIZE, so a
 * node under a backing edge becomes read-only for everyone.
 */
#include "perm.h"

static const char *const bg_perm_names[BG_PERM_NR] = {
	"consistent-read", "write", "write-unchanged", "resize",
};

static const char *const bg_role_names[BG_ROLE_NR] = {
	[BG_ROLE_FILE]		= "file",
	[BG_ROLE_BACKING]	= "backing",
	[BG_ROLE_CHILD]		= "children",
};

struct bg_perm_pair bg_role_perms(enum bg_role role, bool writable)
{
	struct bg_perm_pair p;

	switch (role) {
	case BG_ROLE_BACKING:
		p.perm = BG_PERM_CONSISTENT_READ;
		p.shared = BG_PERM_CONSISTENT_READ | BG_PERM_WRITE_UNCHANGED;
		break;
	case BG_ROLE_FILE:
	case BG_ROLE_CHILD:
	default:
		p.perm = BG_PERM_CONSISTENT_READ;
		if (writable)
			p.perm |= BG_PERM_WRITE | BG_PERM_WRITE_UNCHANGED;
		/*
		 * A passthrough parent does not care who else writes: the
		 * same device under two dm stacks is ordinary.  It does care
		 * about the size, which bounds its window.
		 */
		p.shared = BG_PERM_ALL & ~BG_PERM_RESIZE;
		break;
	}
	return p;
}

void bg_perm_acc_add(struct bg_perm_acc *acc, struct bg_perm_pair p)
{
	acc->taken |= p.perm & BG_PERM_ALL;
	acc->unshared |= ~p.shared & BG_PERM_ALL;
}

unsigned int bg_perm_conflict(const struct bg_perm_acc *acc,
			      struct bg_perm_pair next)
{
	return ((next.perm & acc->unshared) | (acc->taken & ~next.shared)) &
	       BG_PERM_ALL;
}

bool bg_perm_read_only(const struct bg_perm_acc *acc)
{
	return !(acc->taken & BG_PERM_WRITE) &&
	       (acc->unshared & BG_PERM_WRITE);
}

int bg_perm_format(char *buf, size_t size, unsigned int perm)
{
	int len = 0, i;

	for (i = 0; i < BG_PERM_NR; i++) {
		if (!(perm & (1u << i)))
			continue;
		len = bg_emit(buf, size, len, "%s%s", len ? "," : "",
			      bg_perm_names[i]);
	}
	if (!len)
		len = snprintf(buf, size, "-");
	return len;
}

int bg_role_format(char *buf, size_t size, enum bg_role role,
		   unsigned int index)
{
	if (role >= BG_ROLE_NR)
		return snprintf(buf, size, "?");
	if (role == BG_ROLE_CHILD)
		return snprintf(buf, size, "%s.%u", bg_role_names[role], index);
	return snprintf(buf, size, "%s", bg_role_names[role]);
}
