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
#include <linux/file.h>

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

/*
 * bg_bdev_open() - open the block device @devt, not exclusively (dm's own
 * opens of it hold dm's claim), into @dev: its bdev, mode and, on 6.9 and
 * later, its file.  6.1 has blkdev_get_by_dev(); 6.9 replaced it with
 * bdev_file_open_by_dev() (BG_HAVE_BDEV_FILE, from Kbuild).  Sleeps.
 * Return: 0 or a negative errno.
 */
static inline int bg_bdev_open(dev_t devt, bg_mode_t mode, struct dm_dev *dev)
{
#ifdef BG_HAVE_BDEV_FILE
	struct file *f = bdev_file_open_by_dev(devt, mode, NULL, NULL);

	if (IS_ERR(f))
		return PTR_ERR(f);
	dev->bdev_file = f;
	dev->bdev = file_bdev(f);
#else
	struct block_device *bdev = blkdev_get_by_dev(devt, mode, NULL);

	if (IS_ERR(bdev))
		return PTR_ERR(bdev);
	dev->bdev = bdev;
#endif
	dev->mode = mode;
	return 0;
}

/* Close what bg_bdev_open() opened.  Sleeps. */
static inline void bg_bdev_close(struct dm_dev *dev)
{
#ifdef BG_HAVE_BDEV_FILE
	fput(dev->bdev_file);
#else
	blkdev_put(dev->bdev, dev->mode);
#endif
}

#endif /* DM_BGRAPH_COMPAT_H */
