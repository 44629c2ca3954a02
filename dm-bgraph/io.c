// SPDX-License-Identifier: GPL-2.0
/*
 * Synchronous I/O on a node's children, for the kinds' metadata and the
 * jobs' copies: dm-io (the kernel's helper for it), with a bounce buffer
 * for ranges the device's logical blocks do not align.
 */
#include <linux/slab.h>
#include <linux/mm.h>
#include <linux/highmem.h>

#include "bgraph.h"

int bg_sync_io(struct dm_io_client *client, struct block_device *bdev,
	       blk_opf_t opf, u64 off, void *buf, u64 len)
{
	struct dm_io_region region = {
		.bdev = bdev,
		.sector = off >> SECTOR_SHIFT,
		.count = len >> SECTOR_SHIFT,
	};
	struct dm_io_request req = {
		.bi_opf = opf | REQ_SYNC,
		.mem.type = is_vmalloc_addr(buf) ? DM_IO_VMA : DM_IO_KMEM,
		.mem.ptr.addr = buf,	/* .vma shares the union */
		.client = client,
	};

	return dm_io(&req, 1, &region, NULL, IOPRIO_DEFAULT);
}

int bg_sync_read(struct dm_io_client *client, struct block_device *bdev,
		 u64 off, void *buf, u64 len)
{
	u64 dev = bdev_nr_bytes(bdev);
	u32 lbs = bdev_logical_block_size(bdev);
	u64 start, end;
	u8 *bounce;
	int r;

	if (off >= dev) {
		memset(buf, 0, len);
		return 0;
	}
	if (len > dev - off) {
		memset(buf + (dev - off), 0, len - (dev - off));
		len = dev - off;
	}
	if (IS_ALIGNED(off | len, lbs))
		return bg_sync_io(client, bdev, REQ_OP_READ, off, buf, len);

	/* The block layer fails misaligned bios: read whole blocks. */
	start = round_down(off, lbs);
	end = min(round_up(off + len, lbs), dev);
	bounce = kvmalloc(end - start, GFP_NOIO);
	if (!bounce)
		return -ENOMEM;
	r = bg_sync_io(client, bdev, REQ_OP_READ, start, bounce, end - start);
	if (!r)
		memcpy(buf, bounce + (off - start), len);
	kvfree(bounce);
	return r;
}

int bg_sync_write(struct dm_io_client *client, struct block_device *bdev,
		  u64 off, const void *buf, u64 len)
{
	if (off + len > bdev_nr_bytes(bdev) || off + len < off)
		return -EIO;
	return bg_sync_io(client, bdev, REQ_OP_WRITE, off, (void *)buf, len);
}

bool bg_bio_all_zero(struct bio *bio)
{
	struct bvec_iter iter;
	struct bio_vec bv;
	bool zero = true;

	bio_for_each_segment(bv, bio, iter) {
		void *p = bvec_kmap_local(&bv);

		zero = !memchr_inv(p, 0, bv.bv_len);
		kunmap_local(p);
		if (!zero)
			break;
	}
	return zero;
}

bool bg_bio_detect_zeroes(struct bio *bio, enum bg_detect_zeroes dz,
			  struct block_device *child)
{
	if (dz == BG_DZ_OFF || bio_op(bio) != REQ_OP_WRITE ||
	    !bio_sectors(bio) || !bdev_write_zeroes_sectors(child) ||
	    !bg_bio_all_zero(bio))
		return false;
	/*
	 * The same bio, its pages unread: a write-zeroes has no payload, so
	 * the block layer never looks at them, and splits it by size alone.
	 */
	bio->bi_opf = (bio->bi_opf & ~(REQ_OP_MASK | REQ_NOUNMAP)) |
		      REQ_OP_WRITE_ZEROES;
	if (dz == BG_DZ_ON)
		bio->bi_opf |= REQ_NOUNMAP;
	return true;
}
