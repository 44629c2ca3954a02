// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer harness for targets/qcow2-format.c.  The input is the whole
 * file device.  It is read the way the kernel target reads it: the probe
 * and the header cluster, then the L1 and refcount tables, then L2 tables,
 * each copied into a buffer of exactly the size the kernel would read, so
 * ASan catches any read past what the format code was given.  Everything
 * the header validation promises is checked, and so is every documented
 * property of qcow2_map().
 */
#include "fuzz.h"
#include "qcow2-format.h"

/* Budget per input, in mapping units (subclusters) walked by qcow2_map(). */
#define MAX_WORK	BIT(18)

static u64 be64(const u8 *p)
{
	u64 v = 0;
	int i;

	for (i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static bool in_file(u64 off, u64 len, u64 size)
{
	return off <= size && len <= size - off;
}

/*
 * A copy of [off, off + len) of the input, in a buffer of exactly len;
 * past the input's end it reads zeros, as QEMU reads past its file's end.
 */
static u8 *read_dev(const u8 *data, size_t size, u64 off, u64 len)
{
	u64 in;
	u8 *p;

	CHECK(off <= size);
	in = size - off < len ? size - off : len;
	p = malloc(len ? len : 1);
	CHECK(p);
	memcpy(p, data + off, in);
	memset(p + in, 0, len - in);
	return p;
}

struct image {
	const u8 *data;
	size_t size;
	struct qcow2_info qi;
	u64 *l1;
	u64 *l2;		/* the L2 table of l2_index, host-endian */
	u64 l2_index;		/* U64_MAX: none loaded */
	bool l2_zero;		/* im->l2 is all zeros */
	u64 work;
};

/* Load the L2 table of L1 entry @i, as the kernel's L2 cache would. */
static void load_l2(struct image *im, u64 i)
{
	const struct qcow2_info *qi = &im->qi;
	u64 bytes = qcow2_l2_bytes(qi), j;
	u8 *raw;

	if (im->l2_index == i)
		return;
	im->l2_index = i;
	if (!im->l1[i]) {
		if (!im->l2_zero)
			memset(im->l2, 0, bytes);
		im->l2_zero = true;
		return;
	}
	im->l2_zero = false;
	/* qcow2_load_table() put the cluster's start inside the file. */
	CHECK(im->l1[i] < im->size);
	raw = read_dev(im->data, im->size, im->l1[i], bytes);
	for (j = 0; j < bytes / 8; j++)
		im->l2[j] = be64(raw + j * 8);
	free(raw);
}

/* An extent and whether it ended at its request's or entries' end. */
struct mapped {
	struct qcow2_extent ext;
	bool cut;
};

/*
 * The write plans for the entry @l2 (a sector at @in_cluster, and the
 * whole cluster zeroed or discarded) stay inside the cluster, cover the
 * write, and never name a host cluster that is not aligned.
 */
static void check_plans(const struct qcow2_info *qi, const u64 *l2,
			u64 in_cluster)
{
	u64 cs = qi->cluster_size, o = in_cluster & ~511ULL, ne, nb, fo, fl;
	struct qcow2_wplan p;
	int r, d;

	memset(&p, 0xa5, sizeof(p));
	qcow2_plan_write(qi, l2, o, 512, &p);
	qcow2_plan_align(qi, l2, 4096, &p);
	switch (p.kind) {
	case QCOW2_W_INPLACE:
		CHECK(p.host >= cs && p.host < qi->file_size && !(p.host & (cs - 1)));
		break;
	case QCOW2_W_COW:
		CHECK(p.wbegin <= o && o + 512 <= p.wend && p.wend <= cs);
		CHECK(p.alloc || (p.host >= cs && !(p.host & (cs - 1))));
		CHECK(!p.free_len || p.free_off + p.free_len > p.free_off);
		break;
	case QCOW2_W_INVALID:
		CHECK(p.error && p.error[0]);
		break;
	default:
		CHECK(0);
	}
	for (d = 0; d < 4; d++) {
		r = qcow2_plan_zero(qi, l2, d & 1, d & 2, &ne, &nb, &fo, &fl);
		CHECK(!r || r == -EINVAL || r == -EOPNOTSUPP);
		CHECK(r || !fl || fo + fl > fo);
	}
}

/*
 * Map the first extent of [off, off + len) into @m and check what
 * qcow2_map() promises.
 */
static void map_one(struct image *im, u64 off, u64 len, struct mapped *m)
{
	const struct qcow2_info *qi = &im->qi;
	const u32 w = qi->l2_entry_words, cb = qi->cluster_bits;
	u64 entries = qcow2_l2_bytes(qi) / 8 / w;
	u64 l1i = qcow2_l1_index(qi, off), l2i = qcow2_l2_index(qi, off);
	u64 in_cluster = off & (qi->cluster_size - 1);
	struct qcow2_extent *ext = &m->ext, sub;
	u64 table_end, n, k, dc;
	const u64 *l2;

	CHECK(off < qi->size && len > 0 && len <= qi->size - off);
	/* The header promised an L1 table that maps the virtual size. */
	CHECK(l1i < qi->l1_size);
	CHECK(l2i < entries);
	load_l2(im, l1i);
	l2 = im->l2 + l2i * w;
	n = entries - l2i;
	table_end = (off - in_cluster) + (n << cb);

	check_plans(qi, l2, in_cluster);
	memset(ext, 0xa5, sizeof(*ext));
	qcow2_map(qi, l2, n, off, len, ext);
	im->work += 4 + 2 * (ext->len >> qi->subcluster_bits);

	switch (ext->type) {
	case QCOW2_MAP_INVALID:
		CHECK(ext->error && ext->error[0]);
		ext->len = qi->cluster_size - in_cluster;	/* skip it */
		m->cut = true;
		return;
	case QCOW2_MAP_DATA:
		CHECK(ext->host_off >= qi->cluster_size);
		CHECK(in_file(ext->host_off, ext->len, qi->file_size));
		break;
	case QCOW2_MAP_COMPRESSED:
		CHECK(ext->host_off >= qi->cluster_size);
		CHECK(ext->csize > 0);
		CHECK(in_file(ext->host_off, ext->csize, qi->file_size));
		CHECK(ext->len <= qi->cluster_size - in_cluster);
		break;
	case QCOW2_MAP_ZERO:
	case QCOW2_MAP_BACKING:
		break;
	default:
		CHECK(!"unknown extent type");
	}
	CHECK(ext->len > 0 && ext->len <= len);
	/* Never past the clusters whose entries it was given. */
	CHECK(ext->len <= table_end - off);
	m->cut = ext->len == len || ext->len == table_end - off;

	/* The first byte maps the same whatever the request's length. */
	qcow2_map(qi, l2, n, off, 1, &sub);
	CHECK(sub.type == ext->type && sub.len == 1);
	if (ext->type == QCOW2_MAP_DATA || ext->type == QCOW2_MAP_COMPRESSED)
		CHECK(sub.host_off == ext->host_off);
	if (ext->type == QCOW2_MAP_COMPRESSED)
		CHECK(sub.csize == ext->csize);

	/* map()'s inline case, when it answers, says what qcow2_map() says. */
	{
		bool copied;
		u64 host = qcow2_map_plain(qi, l2[0], off, &copied);

		if (host) {
			CHECK(sub.type == QCOW2_MAP_DATA);
			CHECK(host == sub.host_off && copied == sub.copied);
			CHECK(in_file(host - in_cluster, qi->cluster_size,
				      qi->file_size));
		}
	}

	/*
	 * Given fewer entries (the kernel passes those of one cache slice),
	 * the same extent, cut at the last of them.
	 */
	if (n > 1) {
		u64 n2 = 1 + l2i % (n - 1), end2 = (n2 << cb) - in_cluster;

		qcow2_map(qi, l2, n2, off, len, &sub);
		CHECK(sub.type == ext->type);
		CHECK(sub.len == (ext->len < end2 ? ext->len : end2));
		if (ext->type == QCOW2_MAP_DATA ||
		    ext->type == QCOW2_MAP_COMPRESSED)
			CHECK(sub.host_off == ext->host_off);
	}

	/* The extent's second half, mapped alone, is the same extent. */
	k = ext->len / 2;
	if (!k)
		return;
	dc = ((off + k) >> cb) - (off >> cb);
	qcow2_map(qi, l2 + dc * w, n - dc, off + k, ext->len - k, &sub);
	CHECK(sub.type == ext->type && sub.len == ext->len - k);
	if (ext->type == QCOW2_MAP_DATA)
		CHECK(sub.host_off == ext->host_off + k);
	if (ext->type == QCOW2_MAP_COMPRESSED)
		CHECK(sub.host_off == ext->host_off &&
		      sub.csize == ext->csize);
}

/*
 * Map [off, off + len) extent by extent, within the work budget.  An
 * extent that was not cut short by its request or its entries is as long
 * as it can be: the next one differs in kind or copied flag, or is not
 * contiguous.
 */
static void map_range(struct image *im, u64 off, u64 len)
{
	struct mapped prev = { .cut = true }, m;

	while (len && im->work < MAX_WORK) {
		u64 step;

		map_one(im, off, len, &m);
		if (!prev.cut && prev.ext.type != QCOW2_MAP_COMPRESSED)
			CHECK(m.ext.type != prev.ext.type ||
			      (m.ext.type == QCOW2_MAP_DATA &&
			       (m.ext.host_off !=
				prev.ext.host_off + prev.ext.len ||
				m.ext.copied != prev.ext.copied)));
		step = m.ext.len < len ? m.ext.len : len;
		off += step;
		len -= step;
		prev = m;
	}
}


/*
 * The encoders, against the spec's byte layout (docs/interop/qcow2.txt)
 * rather than against the decoders alone: a loaded table written back
 * loads the same, with COPIED where the bitmap says and zeros past its
 * end; the header's refcount table fields are bytes 48-55 and 56-59 and
 * nothing else changes; a bit set in incompatible_features (bytes 72-79)
 * is what the parser then reads.
 */
static void check_table_encoding(const struct qcow2_info *qi, const u64 *ent,
				 u32 n, bool l1, const u8 *raw)
{
	const u32 bpl = 8 * sizeof(unsigned long);
	unsigned long *copied = calloc(n / bpl + 1, sizeof(*copied));
	u32 first = n / 2, count = n, i, bad;
	u8 *out = malloc(8ULL * count + 8);
	u64 *back = calloc(n + 1, 8);
	const char *error = NULL;

	CHECK(copied && out && back);
	for (i = 0; i < n; i++)
		if (l1 && be64(raw + 8ULL * i) & QCOW2_OFLAG_COPIED)
			copied[i / bpl] |= 1UL << (i % bpl);
	qcow2_encode_table(ent, n, 0, n, l1 ? copied : NULL, out);
	for (i = 0; i < n; i++) {
		u64 v = be64(out + 8ULL * i);

		CHECK((v & ~QCOW2_OFLAG_COPIED) == ent[i]);
		CHECK(!!(v & QCOW2_OFLAG_COPIED) ==
		      (l1 && ent[i] && (copied[i / bpl] >> (i % bpl) & 1)));
	}
	CHECK(!qcow2_load_table(qi, out, n, l1, back, &bad, &error));
	CHECK(!memcmp(back, ent, 8ULL * n));
	/* A window half past the end: the rest are zeros. */
	qcow2_encode_table(ent, n, first, count, NULL, out);
	for (i = 0; i < count; i++)
		CHECK(be64(out + 8ULL * i) == (first + i < n ? ent[first + i] : 0));
	free(back);
	free(out);
	free(copied);
}

static void check_header_encoding(const u8 *data, u64 hdr_len, u64 size,
				  const struct qcow2_info *qi)
{
	u8 *buf = read_dev(data, size, 0, hdr_len);
	u64 off = qi->reftable_offset ^ qi->cluster_size;
	u32 clusters = qi->reftable_clusters + 1, i;
	struct qcow2_info again;
	const char *error = NULL;

	CHECK(!qcow2_header_set_reftable(buf, hdr_len, off, clusters));
	CHECK(be64(buf + 48) == off);
	CHECK(((u64)buf[56] << 24 | buf[57] << 16 | buf[58] << 8 | buf[59]) ==
	      clusters);
	for (i = 0; i < hdr_len; i++)
		CHECK((i >= 48 && i < 60) || buf[i] == data[i]);
	memcpy(buf, data, hdr_len);
	CHECK(qcow2_header_set_reftable(buf, 59, off, clusters) == -EINVAL);
	CHECK(!memcmp(buf, data, hdr_len));

	if (qi->version == 3 && !qi->dirty) {
		CHECK(!qcow2_header_update_bits(buf, hdr_len, QCOW2_HDR_INCOMPAT,
						QCOW2_INCOMPAT_DIRTY, 0));
		CHECK(be64(buf + 72) == (be64(data + 72) | QCOW2_INCOMPAT_DIRTY));
		for (i = 0; i < hdr_len; i++)
			CHECK((i >= 72 && i < 80) || buf[i] == data[i]);
		CHECK(!qcow2_parse_header(buf, hdr_len, size, &again, &error));
		CHECK(again.dirty && again.incompat ==
		      (qi->incompat | QCOW2_INCOMPAT_DIRTY));
		CHECK(!qcow2_header_update_bits(buf, hdr_len, QCOW2_HDR_INCOMPAT,
						0, QCOW2_INCOMPAT_DIRTY));
		CHECK(!memcmp(buf, data, hdr_len));
	}
	CHECK(qcow2_header_update_bits(buf, hdr_len, hdr_len - 7, 1, 0) ==
	      -EINVAL);
	free(buf);
}

/* qcow2_subcluster_run() against a walk of the bitmap's allocation bits. */
static void check_subcluster_run(const struct qcow2_info *qi, u64 bitmap,
				 u64 off, u64 len)
{
	u64 sc_size = 1ULL << qi->subcluster_bits, in, run, pos;
	bool a0;

	in = off % qi->cluster_size;
	len = len % (qi->cluster_size - in) + 1;
	a0 = bitmap >> (in / sc_size) & 1;
	for (pos = in; pos < in + len; pos = (pos / sc_size + 1) * sc_size)
		if ((bitmap >> (pos / sc_size) & 1) != a0)
			break;
	run = (pos < in + len ? pos : in + len) - in;
	CHECK(qcow2_subcluster_run(qi, bitmap, off, len) == run);
}

static void check_image(const u8 *data, size_t size)
{
	struct image im = { .data = data, .size = size, .l2_index = U64_MAX };
	struct qcow2_info *qi = &im.qi, whole;
	const char *error = NULL;
	u64 *reftable = NULL, nranges, rt_entries, hdr_len;
	struct qcow2_range *ranges = NULL;
	u8 *buf, *raw;
	u32 bits, bad;
	int r, i;

	/* Probe on the first sector, as the constructor does. */
	buf = read_dev(data, size, 0, size < 512 ? size : 512);
	r = qcow2_probe(buf, size < 512 ? size : 512, &bits, &error);
	free(buf);
	if (r) {
		CHECK(r == -EINVAL && error);
		return;
	}
	CHECK(bits >= QCOW2_MIN_CLUSTER_BITS && bits <= QCOW2_MAX_CLUSTER_BITS);

	/* Then exactly the header cluster, or the whole file if shorter. */
	hdr_len = 1ULL << bits;
	if (hdr_len > size)
		hdr_len = size;
	buf = read_dev(data, size, 0, hdr_len);
	error = NULL;
	r = qcow2_parse_header(buf, hdr_len, size, qi, &error);
	free(buf);
	if (r) {
		CHECK((r == -EINVAL || r == -EOPNOTSUPP) && error);
		return;
	}
	CHECK(qi->cluster_bits == bits && qi->file_size == size);
	/* Given more than the header cluster, the same result. */
	CHECK(!qcow2_parse_header(data, size, size, &whole, &error));
	CHECK(!memcmp(&whole, qi, sizeof(whole)));
	CHECK(qi->version == 2 || qi->version == 3);
	CHECK(qi->l2_entry_words == 1 || qi->l2_entry_words == 2);
	CHECK(qcow2_l1_bytes(qi) <= QCOW2_MAX_L1_BYTES);
	CHECK(qcow2_reftable_bytes(qi) <= QCOW2_MAX_REFTABLE_BYTES);
	CHECK(qi->backing_format[sizeof(qi->backing_format) - 1] == '\0');
	CHECK(qcow2_default_l2_cache(qi, 4096) >= 4096);
	check_header_encoding(data, hdr_len, size, qi);
	if (qi->extended_l2 && size >= 24)
		for (i = 0; i < 4; i++)
			check_subcluster_run(qi, be64(data + size - 8),
					     be64(data + size - 16) >> i,
					     be64(data + size - 24) >> (8 * i));

	/*
	 * The tables: the validation put their starts inside the file (or at
	 * its end); the rest reads as zeros.
	 */
	CHECK(qi->tables_past_end ==
	      ((qi->l1_size &&
		!in_file(qi->l1_offset, qcow2_l1_bytes(qi), size)) ||
	       (qi->reftable_clusters &&
		!in_file(qi->reftable_offset, qcow2_reftable_bytes(qi), size)) ||
	       (qi->nb_snapshots &&
		!in_file(qi->snapshots_offset, qi->nb_snapshots * 40ULL, size))));
	im.l1 = calloc(qi->l1_size ? qi->l1_size : 1, 8);
	rt_entries = qcow2_reftable_bytes(qi) / 8;
	reftable = calloc(rt_entries ? rt_entries : 1, 8);
	im.l2 = malloc(qcow2_l2_bytes(qi));
	CHECK(im.l1 && reftable && im.l2);
	if (qi->l1_size) {
		raw = read_dev(data, size, qi->l1_offset, qcow2_l1_bytes(qi));
		r = qcow2_load_table(qi, raw, qi->l1_size, true, im.l1, &bad,
				     &error);
		if (!r)
			check_table_encoding(qi, im.l1, qi->l1_size, true, raw);
		free(raw);
		if (r) {
			CHECK(r == -EINVAL && error && bad < qi->l1_size);
			goto out;
		}
	}
	if (rt_entries) {
		raw = read_dev(data, size, qi->reftable_offset,
			       qcow2_reftable_bytes(qi));
		r = qcow2_load_table(qi, raw, rt_entries, false, reftable,
				     &bad, &error);
		if (!r)
			check_table_encoding(qi, reftable, rt_entries, false,
					     raw);
		free(raw);
		if (r) {
			CHECK(r == -EINVAL && error && bad < rt_entries);
			goto out;
		}
	}

	nranges = qcow2_overlap_ranges(qi, im.l1, reftable);
	CHECK(nranges >= 3 && nranges <= 3 + qi->l1_size + rt_entries);
	ranges = calloc(nranges, sizeof(*ranges));
	CHECK(ranges);
	r = qcow2_check_overlaps(qi, im.l1, reftable, ranges, nranges, &error);
	CHECK(r == 0 || (r == -EINVAL && error));
	/* An image refused here never maps; map anyway, to test qcow2_map. */

	if (!qi->size)
		goto out;
	/* The whole disk from its start, extent by extent. */
	map_range(&im, 0, qi->size);
	/* A few ranges picked by the input's last bytes. */
	for (i = 0; i < 4 && size >= 16 * (i + 1); i++) {
		const u8 *t = data + size - 16 * (i + 1);
		u64 off = be64(t) % qi->size;
		u64 len = be64(t + 8) % (qi->size - off) + 1;

		im.work = 0;
		map_range(&im, off, len);
	}
out:
	free(ranges);
	free(im.l2);
	free(reftable);
	free(im.l1);
}

int LLVMFuzzerTestOneInput(const u8 *data, size_t size);

int LLVMFuzzerTestOneInput(const u8 *data, size_t size)
{
	check_image(data, size);
	return 0;
}
