// SPDX-License-Identifier: GPL-2.0
/*
 * dm-bgraph: QEMU's block-layer graph as device-mapper targets.
 * Module entry: the configfs tree, then one dm target type per node kind.
 */
#include <linux/module.h>

#include "bgraph.h"

#define DM_MSG_PREFIX "bgraph"

static int __init dm_bgraph_init(void)
{
	int r;

	r = bg_configfs_init();
	if (r) {
		DMERR("cannot register the configfs subsystem: %d", r);
		return r;
	}
	r = bg_raw_init();
	if (r) {
		DMERR("cannot register target bgraph-raw: %d", r);
		goto out_configfs;
	}
	r = bg_qcow2_init();
	if (r) {
		DMERR("cannot register target bgraph-qcow2: %d", r);
		goto out_raw;
	}
	r = bg_throttle_init();
	if (r) {
		DMERR("cannot register target bgraph-throttle: %d", r);
		goto out_qcow2;
	}
	r = bg_quorum_init();
	if (r) {
		DMERR("cannot register target bgraph-quorum: %d", r);
		goto out_throttle;
	}
	return 0;

out_throttle:
	bg_throttle_exit();
out_qcow2:
	bg_qcow2_exit();
out_raw:
	bg_raw_exit();
out_configfs:
	bg_configfs_exit();
	return r;
}

static void __exit dm_bgraph_exit(void)
{
	bg_quorum_exit();
	bg_throttle_exit();
	bg_qcow2_exit();
	bg_raw_exit();
	bg_configfs_exit();
}

module_init(dm_bgraph_init);
module_exit(dm_bgraph_exit);

MODULE_DESCRIPTION("dm-bgraph: QEMU's block graph as device-mapper targets");
MODULE_AUTHOR("dm-bgraph developers");
MODULE_LICENSE("GPL");
MODULE_ALIAS("dm-bgraph-raw");
MODULE_ALIAS("dm-bgraph-qcow2");
MODULE_ALIAS("dm-bgraph-throttle");
