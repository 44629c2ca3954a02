// SPDX-License-Identifier: GPL-2.0
/*
 * bgraph-qcow2: reading compressed clusters (raw deflate as QEMU
 * writes it, or zstd).  Worker context: everything here may sleep.
 */
#include <linux/slab.h>
#include <linux/zlib.h>
#include <linux/zstd.h>

#include "qcow2.h"

/* Copy @len bytes of @src into @bio, which covers exactly @len bytes. */
static void qcow2_copy_to_bio(struct bio *bio, const u8 *src)
{
	struct bvec_iter iter;
	struct bio_vec bv;

	bio_for_each_segment(bv, bio, iter) {
		memcpy_to_bvec(&bv, src);
		src += bv.bv_len;
	}
}

static int qcow2_inflate(const u8 *in, u64 in_len, u8 *out, u64 out_len)
{
	struct z_stream_s strm = {};
	int r, ret = -EIO;

	strm.workspace = kvmalloc(zlib_inflate_workspacesize(), GFP_NOIO);
	if (!strm.workspace)
		return -ENOMEM;
	/* Raw deflate, as QEMU writes it (its window is 4 KiB). */
	if (zlib_inflateInit2(&strm, -MAX_WBITS) != Z_OK)
		goto out;
	strm.next_in = in;
	strm.avail_in = in_len;
	strm.next_out = out;
	strm.avail_out = out_len;
	r = zlib_inflate(&strm, Z_FINISH);
	/* QEMU's rule: the cluster must be filled; trailing input is padding. */
	if ((r == Z_STREAM_END || r == Z_BUF_ERROR) && !strm.avail_out)
		ret = 0;
	zlib_inflateEnd(&strm);
out:
	kvfree(strm.workspace);
	return ret;
}

static int qcow2_unzstd(const u8 *in, u64 in_len, u8 *out, u64 out_len)
{
	size_t wsize = zstd_dctx_workspace_bound();
	size_t frame, done;
	zstd_dctx *dctx;
	void *ws;
	int ret = -EIO;

	/* One frame, then sector padding: decompress just the frame. */
	frame = zstd_find_frame_compressed_size(in, in_len);
	if (zstd_is_error(frame))
		return -EIO;
	ws = kvmalloc(wsize, GFP_NOIO);
	if (!ws)
		return -ENOMEM;
	dctx = zstd_init_dctx(ws, wsize);
	if (dctx) {
		done = zstd_decompress_dctx(dctx, out, out_len, in, frame);
		if (!zstd_is_error(done) && done == out_len)
			ret = 0;
	}
	kvfree(ws);
	return ret;
}

/**
 * qcow2_decompress() - read a compressed cluster and decompress it
 * @img: the node
 * @host_off: file offset of the compressed data
 * @csize: its bytes
 * @out: a cluster's bytes, filled whole
 * @off: the guest offset, for the message
 *
 * Context: process context, sleeps (GFP_NOIO); no lock needed.
 * Return: 0, -ENOMEM, the read's errno, or -EIO for bad data (logged).
 */
int qcow2_decompress(struct qcow2_image *img, u64 host_off, u64 csize,
		     u8 *out, u64 off)
{
	u64 cs = img->info.cluster_size;
	u64 start = round_down(host_off, SECTOR_SIZE);
	u64 skip = host_off - start;
	u64 rlen = round_up(skip + csize, SECTOR_SIZE);
	u8 *in;
	int r;

	in = kvmalloc(rlen, GFP_NOIO);
	if (!in)
		return -ENOMEM;
	r = qcow2_read(img, start, in, rlen);
	if (r)
		goto out;
	if (img->info.compression_type == QCOW2_COMPRESSION_ZSTD)
		r = qcow2_unzstd(in + skip, csize, out, cs);
	else
		r = qcow2_inflate(in + skip, csize, out, cs);
	if (r)
		DMERR_LIMIT("%s: cannot decompress the cluster at %llu for guest offset %llu",
			    qcow2_name(img), host_off, off);
out:
	kvfree(in);
	return r;
}

/**
 * qcow2_read_compressed() - serve a read from a compressed cluster
 * @img: the node
 * @bio: a read within the cluster
 * @off: its guest offset
 * @ext: the extent qcow2_lookup() gave (QCOW2_MAP_COMPRESSED)
 *
 * Decompresses the cluster and copies the part @bio covers into it.
 *
 * Context: worker, sleeps; no lock.
 * Return: 0 or a negative errno; the caller ends @bio.
 */
int qcow2_read_compressed(struct qcow2_image *img, struct bio *bio, u64 off,
			  const struct qcow2_extent *ext)
{
	u64 cs = img->info.cluster_size;
	u8 *out;
	int r;

	out = kvmalloc(cs, GFP_NOIO);
	if (!out)
		return -ENOMEM;
	r = qcow2_decompress(img, ext->host_off, ext->csize, out, off);
	if (!r)
		qcow2_copy_to_bio(bio, out + (off & (cs - 1)));
	kvfree(out);
	return r;
}
