// SPDX-License-Identifier: GPL-2.0
/*
 * dm-bgraph: QEMU's block-layer graph as device-mapper targets.
 * Module entry: the node kinds' shared state, the configfs tree, then one
 * dm target type per node kind.
 *
 * The kinds are those of Kbuild's bgraph-kinds, handed to this file as
 * BG_KIND_LIST, the addresses of the struct bg_kind <kind>_kind that each
 * kind's own file defines.  The core names none of them: adding
 * a kind touches its own files and the Kbuild line.  One module holds
 * them all, so the list is fixed at build time; dm-cache's policies, each
 * a module of its own, call dm_cache_policy_register() from their init
 * instead.
 */
#include <linux/module.h>

#include "bgraph.h"

#define DM_MSG_PREFIX "bgraph"

/* BG_KIND_LIST: "&raw_kind,&qcow2_kind,...", from Kbuild's bgraph-kinds. */
static struct bg_kind *const bg_kinds[] = { BG_KIND_LIST };

/* Undo bg_kinds[0..n-1]'s init, newest first. */
static void bg_kinds_exit(unsigned int n)
{
	while (n--)
		if (bg_kinds[n]->exit)
			bg_kinds[n]->exit();
}

static void bg_kinds_unregister(unsigned int n)
{
	while (n--)
		dm_unregister_target(bg_kinds[n]->target);
}

static int __init dm_bgraph_init(void)
{
	struct config_group *groups[ARRAY_SIZE(bg_kinds)];
	unsigned int ngroups = 0, ninit, nreg;
	int r = 0;

	for (ninit = 0; ninit < ARRAY_SIZE(bg_kinds); ninit++) {
		const struct bg_kind *k = bg_kinds[ninit];

		/* Live graph changes: bg_instance_postsuspend/preresume(). */
		if (!k->target->postsuspend || !k->target->preresume) {
			DMERR("node kind %s: its target lacks postsuspend or preresume",
			      k->name);
			r = -EINVAL;
			goto out_kinds;
		}
		r = k->init ? k->init() : 0;
		if (r) {
			DMERR("cannot set up node kind %s: %d", k->name, r);
			goto out_kinds;
		}
		if (k->configfs_group)
			groups[ngroups++] = k->configfs_group;
	}

	r = bg_configfs_init(groups, ngroups);
	if (r) {
		DMERR("cannot register the configfs subsystem: %d", r);
		goto out_kinds;
	}

	for (nreg = 0; nreg < ARRAY_SIZE(bg_kinds); nreg++) {
		r = dm_register_target(bg_kinds[nreg]->target);
		if (r) {
			DMERR("cannot register target %s: %d",
			      bg_kinds[nreg]->target->name, r);
			goto out_targets;
		}
	}
	return 0;

out_targets:
	bg_kinds_unregister(nreg);
	bg_configfs_exit();
out_kinds:
	bg_kinds_exit(ninit);
	return r;
}

static void __exit dm_bgraph_exit(void)
{
	bg_kinds_unregister(ARRAY_SIZE(bg_kinds));
	bg_configfs_exit();
	bg_kinds_exit(ARRAY_SIZE(bg_kinds));
}

module_init(dm_bgraph_init);
module_exit(dm_bgraph_exit);

MODULE_DESCRIPTION("dm-bgraph: QEMU's block graph as device-mapper targets");
MODULE_AUTHOR("dm-bgraph developers");
MODULE_LICENSE("GPL");
