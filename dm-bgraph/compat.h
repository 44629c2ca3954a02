/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The one place for differences between the kernels dm-bgraph supports
 * (Debian bookworm's 6.1 and 6.12).  Feature tests, not version numbers,
 * where a macro allows it.
 */
#ifndef DM_BGRAPH_COMPAT_H
#define DM_BGRAPH_COMPAT_H

#include <linux/blkdev.h>
#include <linux/device-mapper.h>

/* 6.5 replaced fmode_t with blk_mode_t for block device opens. */
#ifdef BLK_OPEN_READ
#define bg_mode_t	blk_mode_t
#define BG_OPEN_READ	BLK_OPEN_READ
#define BG_OPEN_WRITE	BLK_OPEN_WRITE
#else
#define bg_mode_t	fmode_t
#define BG_OPEN_READ	FMODE_READ
#define BG_OPEN_WRITE	FMODE_WRITE
#endif

#endif /* DM_BGRAPH_COMPAT_H */
