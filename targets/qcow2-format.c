// SPDX-License-Identifier: GPL-2.0
/*
 * The qcow2 on-disk format, pure logic: see qcow2-format.h.
 *
 * Field offsets and rules follow QEMU's docs/interop/qcow2.txt; the limits
 * are QEMU's (block/qcow2.h), so an image QEMU opens, we open, and one it
 * refuses as corrupt, we refuse.
 */
#include "qcow2-format.h"

/* Header field offsets (qcow2.txt, "Header"). */
enum {
	H_MAGIC = 0,
	H_VERSION = 4,
	H_BACKING_OFFSET = 8,
	H_BACKING_SIZE = 16,
	H_CLUSTER_BITS = 20,
	H_SIZE = 24,
	H_CRYPT_METHOD = 32,
	H_L1_SIZE = 36,
	H_L1_OFFSET = 40,
	H_REFTABLE_OFFSET = 48,
	H_REFTABLE_CLUSTERS = 56,
	H_NB_SNAPSHOTS = 60,
	H_SNAPSHOTS_OFFSET = 64,
	H_INCOMPAT = 72,
	H_COMPAT = 80,
	H_AUTOCLEAR = 88,
	H_REFCOUNT_ORDER = 96,
	H_HEADER_LENGTH = 100,
	H_COMPRESSION_TYPE = 104,
};

/* Is [off, off + len) inside a device of @size bytes?  Overflow-safe. */
static bool in_file(u64 off, u64 len, u64 size)
{
	return off <= size && len <= size - off;
}

/* ---------------------------------------------------------------- */
/* Header                                                           */
/* ---------------------------------------------------------------- */

int qcow2_probe(const u8 *buf, size_t len, u32 *cluster_bits,
		const char **error)
{
	u32 version, bits;

	if (len < QCOW2_V2_HEADER_LEN) {
		*error = "file device too small for a qcow2 header";
		return -EINVAL;
	}
	if (get_unaligned_be32(buf + H_MAGIC) != QCOW2_MAGIC) {
		*error = "bad magic: not a qcow2 image";
		return -EINVAL;
	}
	version = get_unaligned_be32(buf + H_VERSION);
	if (version != 2 && version != 3) {
		*error = "unsupported qcow2 version (2 and 3 are)";
		return -EINVAL;
	}
	bits = get_unaligned_be32(buf + H_CLUSTER_BITS);
	if (bits < QCOW2_MIN_CLUSTER_BITS || bits > QCOW2_MAX_CLUSTER_BITS) {
		*error = "cluster_bits out of range (9 to 21)";
		return -EINVAL;
	}
	*cluster_bits = bits;
	return 0;
}

/* The name of incompatible feature @bit from a feature name table. */
static void feature_name(const u8 *ext, u32 len, u32 bit, char *name)
{
	u32 i;

	for (i = 0; i + 48 <= len; i += 48) {
		if (ext[i] != 0 || ext[i + 1] != bit)	/* 0: incompatible */
			continue;
		memcpy(name, ext + i + 2, QCOW2_FEATURE_NAME_LEN);
		name[QCOW2_FEATURE_NAME_LEN] = '\0';
		return;
	}
}

/*
 * Header extensions: from the end of the header to the backing file name
 * (or the end of the header cluster), each a type, a length and data
 * padded to 8 bytes, ended by type 0.  Unknown types are skipped.
 */
static int parse_extensions(const u8 *buf, u64 start, u64 end,
			    struct qcow2_info *qi, const char **error)
{
	u64 off = start;

	while (off + 8 <= end) {
		u32 type = get_unaligned_be32(buf + off);
		u32 len = get_unaligned_be32(buf + off + 4);
		const u8 *data = buf + off + 8;

		if (type == QCOW2_EXT_END)
			return 0;
		if (len > end - off - 8) {
			*error = "header extension overflows the header cluster";
			return -EINVAL;
		}
		switch (type) {
		case QCOW2_EXT_BACKING_FORMAT:
			if (len >= sizeof(qi->backing_format)) {
				*error = "backing format name too long";
				return -EINVAL;
			}
			memcpy(qi->backing_format, data, len);
			qi->backing_format[len] = '\0';
			break;
		case QCOW2_EXT_FEATURE_TABLE:
			if (qi->incompat & ~QCOW2_INCOMPAT_KNOWN)
				feature_name(data, len, qi->unknown_bit,
					     qi->unknown_name);
			break;
		case QCOW2_EXT_DATA_FILE:
			*error = "external data files are not supported";
			return -EOPNOTSUPP;
		case QCOW2_EXT_CRYPTO:
			*error = "crypto header extension in an unencrypted image";
			return -EINVAL;
		default:
			break;
		}
		off += 8 + (((u64)len + 7) & ~7ULL);
	}
	return 0;
}

static int parse_features(const u8 *buf, struct qcow2_info *qi,
			  const char **error)
{
	bool has_type;
	u64 unknown;

	if (qi->version == 2) {
		qi->refcount_order = 4;
		qi->header_length = QCOW2_V2_HEADER_LEN;
		return 0;
	}

	qi->incompat = get_unaligned_be64(buf + H_INCOMPAT);
	qi->compat = get_unaligned_be64(buf + H_COMPAT);
	qi->autoclear = get_unaligned_be64(buf + H_AUTOCLEAR);
	qi->refcount_order = get_unaligned_be32(buf + H_REFCOUNT_ORDER);
	qi->header_length = get_unaligned_be32(buf + H_HEADER_LENGTH);

	if (qi->header_length < QCOW2_V3_HEADER_LEN ||
	    qi->header_length % 8) {
		*error = "bad header_length (at least 104, a multiple of 8)";
		return -EINVAL;
	}
	if (qi->header_length > qi->cluster_size) {
		*error = "header_length larger than a cluster";
		return -EINVAL;
	}
	if (qi->header_length > qi->file_size) {
		*error = "header extends past the end of the file device";
		return -EINVAL;
	}
	unknown = qi->incompat & ~QCOW2_INCOMPAT_KNOWN;
	if (unknown) {
		qi->unknown_bit = 0;
		while (!(unknown & 1)) {
			unknown >>= 1;
			qi->unknown_bit++;
		}
		/* The name comes with the extensions; refused after them. */
	}
	if (qi->refcount_order > 6) {
		*error = "refcount_order out of range (0 to 6)";
		return -EINVAL;
	}
	if (qi->header_length > H_COMPRESSION_TYPE)
		qi->compression_type = buf[H_COMPRESSION_TYPE];
	has_type = qi->compression_type != QCOW2_COMPRESSION_ZLIB;
	if (!!(qi->incompat & QCOW2_INCOMPAT_COMPRESSION) != has_type) {
		*error = "compression type and its incompatible bit disagree";
		return -EINVAL;
	}
	if (qi->compression_type > QCOW2_COMPRESSION_ZSTD) {
		*error = "unknown compression type";
		return -EINVAL;
	}
	qi->dirty = qi->incompat & QCOW2_INCOMPAT_DIRTY;
	qi->corrupt = qi->incompat & QCOW2_INCOMPAT_CORRUPT;
	qi->extended_l2 = qi->incompat & QCOW2_INCOMPAT_EXTL2;
	if (qi->extended_l2 &&
	    qi->cluster_bits < QCOW2_MIN_EXTL2_CLUSTER_BITS) {
		*error = "extended L2 entries need clusters of 16 KiB or more";
		return -EINVAL;
	}
	return 0;
}

/*
 * Cluster-aligned, clear of the header cluster, and starting at or before
 * the end of the file device.  A table may run past that end, and the
 * bytes past it read as zeros, as QEMU reads past the end of its file: a
 * new image's file ends in the middle of its L1 table (qemu-img writes
 * only the table's bytes), and a loop device drops a file's last partial
 * sector.
 */
static int check_table(struct qcow2_info *qi, u64 off, u64 bytes,
		       const char *unaligned, const char *outside,
		       const char **error)
{
	if (!bytes)
		return 0;
	if (off & (qi->cluster_size - 1)) {
		*error = unaligned;
		return -EINVAL;
	}
	if (off < qi->cluster_size || off > qi->file_size) {
		*error = outside;
		return -EINVAL;
	}
	if (!in_file(off, bytes, qi->file_size))
		qi->tables_past_end = true;
	return 0;
}

static int parse_tables(struct qcow2_info *qi, const char **error)
{
	u32 l2_bits = qi->l2_bits;
	u64 needed;
	int r;

	if (qi->size > (1ULL << 62)) {
		*error = "virtual size too large";
		return -EINVAL;
	}
	/* Clusters, then L2 tables, needed to map the virtual size. */
	needed = (qi->size + qi->cluster_size - 1) >> qi->cluster_bits;
	needed = (needed + (1ULL << l2_bits) - 1) >> l2_bits;
	if (qcow2_l1_bytes(qi) > QCOW2_MAX_L1_BYTES) {
		*error = "L1 table too large (QEMU's limit is 32 MiB)";
		return -EINVAL;
	}
	if (qi->l1_size < needed) {
		*error = "L1 table too small for the virtual size";
		return -EINVAL;
	}
	r = check_table(qi, qi->l1_offset, qcow2_l1_bytes(qi),
			"L1 table offset not cluster-aligned",
			"L1 table outside the file device or in the header",
			error);
	if (r)
		return r;

	if (!qi->reftable_clusters) {
		*error = "image has no refcount table";
		return -EINVAL;
	}
	if (qcow2_reftable_bytes(qi) > QCOW2_MAX_REFTABLE_BYTES) {
		*error = "refcount table too large (QEMU's limit is 8 MiB)";
		return -EINVAL;
	}
	r = check_table(qi, qi->reftable_offset, qcow2_reftable_bytes(qi),
			"refcount table offset not cluster-aligned",
			"refcount table outside the file device or in the header",
			error);
	if (r)
		return r;

	if (qi->nb_snapshots > QCOW2_MAX_SNAPSHOTS) {
		*error = "too many snapshots (QEMU's limit is 65536)";
		return -EINVAL;
	}
	/* Each snapshot header takes 40 bytes or more. */
	return check_table(qi, qi->snapshots_offset,
			   qi->nb_snapshots ? (u64)qi->nb_snapshots * 40 : 0,
			   "snapshot table offset not cluster-aligned",
			   "snapshot table outside the file device or in the header",
			   error);
}

int qcow2_parse_header(const u8 *buf, size_t len, u64 file_size,
		       struct qcow2_info *qi, const char **error)
{
	u64 ext_end;
	int r;

	memset(qi, 0, sizeof(*qi));
	r = qcow2_probe(buf, len, &qi->cluster_bits, error);
	if (r)
		return r;
	qi->version = get_unaligned_be32(buf + H_VERSION);
	qi->cluster_size = 1ULL << qi->cluster_bits;
	qi->file_size = file_size;
	if (len > file_size)
		len = file_size;
	if (len < qi->cluster_size && len < file_size) {
		*error = "header cluster not fully read";	/* caller bug */
		return -EINVAL;
	}
	if (len > qi->cluster_size)
		len = qi->cluster_size;
	if (len < QCOW2_V3_HEADER_LEN && qi->version == 3) {
		*error = "file device too small for a qcow2 header";
		return -EINVAL;
	}

	qi->backing_file_offset = get_unaligned_be64(buf + H_BACKING_OFFSET);
	qi->backing_file_size = get_unaligned_be32(buf + H_BACKING_SIZE);
	qi->size = get_unaligned_be64(buf + H_SIZE);
	qi->l1_size = get_unaligned_be32(buf + H_L1_SIZE);
	qi->l1_offset = get_unaligned_be64(buf + H_L1_OFFSET);
	qi->reftable_offset = get_unaligned_be64(buf + H_REFTABLE_OFFSET);
	qi->reftable_clusters = get_unaligned_be32(buf + H_REFTABLE_CLUSTERS);
	qi->nb_snapshots = get_unaligned_be32(buf + H_NB_SNAPSHOTS);
	qi->snapshots_offset = get_unaligned_be64(buf + H_SNAPSHOTS_OFFSET);

	if (get_unaligned_be32(buf + H_CRYPT_METHOD)) {
		*error = "encrypted images are not supported";
		return -EOPNOTSUPP;
	}
	r = parse_features(buf, qi, error);
	if (r)
		return r;

	qi->l2_entry_words = qi->extended_l2 ? 2 : 1;
	qi->l2_bits = qi->cluster_bits - (qi->extended_l2 ? 4 : 3);
	qi->subcluster_bits = qi->cluster_bits - (qi->extended_l2 ? 5 : 0);
	qi->csize_shift = 62 - (qi->cluster_bits - 8);
	qi->csize_mask = (1ULL << (qi->cluster_bits - 8)) - 1;

	/* The backing file name sits in the header cluster. */
	ext_end = len;
	if (qi->backing_file_offset) {
		if (qi->backing_file_size > QCOW2_MAX_BACKING_NAME) {
			*error = "backing file name too long";
			return -EINVAL;
		}
		if (qi->backing_file_offset < qi->header_length ||
		    !in_file(qi->backing_file_offset, qi->backing_file_size,
			     len)) {
			*error = "backing file name outside the header cluster";
			return -EINVAL;
		}
		ext_end = qi->backing_file_offset;
	}
	r = parse_extensions(buf, qi->header_length, ext_end, qi, error);
	if (r)
		return r;
	if (qi->incompat & ~QCOW2_INCOMPAT_KNOWN) {
		*error = "unknown incompatible feature bits set";
		return -EOPNOTSUPP;
	}
	if (qi->incompat & QCOW2_INCOMPAT_DATA_FILE) {
		*error = "external data files are not supported";
		return -EOPNOTSUPP;
	}
	return parse_tables(qi, error);
}

/* ---------------------------------------------------------------- */
/* L1 and refcount tables                                           */
/* ---------------------------------------------------------------- */

int qcow2_load_table(const struct qcow2_info *qi, const u8 *raw, u32 n,
		     bool l1, u64 *out, u32 *bad, const char **error)
{
	u64 reserved = l1 ? QCOW2_L1E_RESERVED : QCOW2_RTE_RESERVED;
	u64 mask = l1 ? QCOW2_OFFSET_MASK : ~QCOW2_RTE_RESERVED;
	u32 i;

	for (i = 0; i < n; i++) {
		u64 e = get_unaligned_be64(raw + (u64)i * 8);
		u64 off;

		*bad = i;
		if (l1)
			e &= ~QCOW2_OFLAG_COPIED;
		if (e & reserved) {
			*error = l1 ? "L1 entry has reserved bits set" :
				      "refcount table entry has reserved bits set";
			return -EINVAL;
		}
		off = e & mask;
		if (off & (qi->cluster_size - 1)) {
			*error = l1 ? "L2 table offset not cluster-aligned" :
				      "refcount block offset not cluster-aligned";
			return -EINVAL;
		}
		/* QEMU writes these clusters whole: they start inside. */
		if (off && (off < qi->cluster_size || off >= qi->file_size)) {
			*error = l1 ? "L2 table outside the file device or in the header" :
				      "refcount block outside the file device or in the header";
			return -EINVAL;
		}
		out[i] = off;
	}
	return 0;
}

u64 qcow2_overlap_ranges(const struct qcow2_info *qi,
			 const u64 *l1, const u64 *reftable)
{
	u64 n = 3, i;
	u64 rt = qcow2_reftable_bytes(qi) / 8;

	for (i = 0; i < qi->l1_size; i++)
		n += !!l1[i];
	for (i = 0; i < rt; i++)
		n += !!reftable[i];
	return n;
}

static bool range_before(const struct qcow2_range *a,
			 const struct qcow2_range *b)
{
	return a->start < b->start;
}

static void range_swap(struct qcow2_range *a, struct qcow2_range *b)
{
	struct qcow2_range t = *a;

	*a = *b;
	*b = t;
}

/* Heapsort by start: in place, no recursion, no allocation. */
static void sort_ranges(struct qcow2_range *r, u64 n)
{
	u64 i, root, child, end;

	for (i = n / 2; i-- > 0;) {
		for (root = i; (child = 2 * root + 1) < n; root = child) {
			if (child + 1 < n && range_before(&r[child], &r[child + 1]))
				child++;
			if (!range_before(&r[root], &r[child]))
				break;
			range_swap(&r[root], &r[child]);
		}
	}
	for (end = n; end-- > 1;) {
		range_swap(&r[0], &r[end]);
		for (root = 0; (child = 2 * root + 1) < end; root = child) {
			if (child + 1 < end && range_before(&r[child], &r[child + 1]))
				child++;
			if (!range_before(&r[root], &r[child]))
				break;
			range_swap(&r[root], &r[child]);
		}
	}
}

int qcow2_check_overlaps(const struct qcow2_info *qi, const u64 *l1,
			 const u64 *reftable, struct qcow2_range *scratch,
			 u64 nscratch, const char **error)
{
	u64 rt = qcow2_reftable_bytes(qi) / 8;
	u64 n = 0, i;

	if (nscratch < qcow2_overlap_ranges(qi, l1, reftable)) {
		*error = "overlap check scratch too small";	/* caller bug */
		return -EINVAL;
	}
	scratch[n++] = (struct qcow2_range){ 0, qi->cluster_size };
	if (qi->l1_size)
		scratch[n++] = (struct qcow2_range){ qi->l1_offset,
						     qcow2_l1_bytes(qi) };
	if (rt)
		scratch[n++] = (struct qcow2_range){ qi->reftable_offset,
						     qcow2_reftable_bytes(qi) };
	for (i = 0; i < qi->l1_size; i++)
		if (l1[i])
			scratch[n++] = (struct qcow2_range){ l1[i],
							     qi->cluster_size };
	for (i = 0; i < rt; i++)
		if (reftable[i])
			scratch[n++] = (struct qcow2_range){ reftable[i],
							     qi->cluster_size };

	sort_ranges(scratch, n);
	for (i = 1; i < n; i++) {
		/* Offsets were checked against the file: no overflow. */
		if (scratch[i - 1].start + scratch[i - 1].len >
		    scratch[i].start) {
			*error = "image metadata overlaps (header, L1, L2 or refcount structures)";
			return -EINVAL;
		}
	}
	return 0;
}

/* ---------------------------------------------------------------- */
/* L2 entries                                                       */
/* ---------------------------------------------------------------- */

static void invalid(struct qcow2_extent *ext, const char *why)
{
	ext->type = QCOW2_MAP_INVALID;
	ext->error = why;
	ext->len = 0;
}

/*
 * One mapping unit: the cluster (or subcluster, with extended L2) that
 * contains @off, described by entry @e and bitmap @bm.  Fills @ext with
 * the unit's kind and, for DATA, the host offset of @off; ext->len is the
 * bytes from @off to the end of the unit.
 */
static void map_unit(const struct qcow2_info *qi, u64 e, u64 bm, u64 off,
		     struct qcow2_extent *ext)
{
	u64 in_cluster = off & (qi->cluster_size - 1);
	u64 unit = 1ULL << qi->subcluster_bits;
	u64 host;
	u32 sc;

	ext->len = unit - (off & (unit - 1));
	ext->error = NULL;
	ext->copied = false;

	if (e & QCOW2_OFLAG_COMPRESSED) {
		u64 coff = e & ((1ULL << qi->csize_shift) - 1);
		u64 nsect = ((e >> qi->csize_shift) & qi->csize_mask) + 1;
		u64 csize = nsect * 512 - (coff & 511);

		if (e & QCOW2_OFLAG_COPIED) {
			invalid(ext, "compressed L2 entry has the copied flag");
			return;
		}
		if (qi->extended_l2 && bm) {
			invalid(ext, "compressed L2 entry has a subcluster bitmap");
			return;
		}
		if (coff < qi->cluster_size || coff >= qi->file_size) {
			invalid(ext, "compressed cluster outside the file device");
			return;
		}
		/* The last sector may run past a file's end: QEMU pads it. */
		if (csize > qi->file_size - coff)
			csize = qi->file_size - coff;
		ext->type = QCOW2_MAP_COMPRESSED;
		ext->host_off = coff;
		ext->csize = csize;
		ext->len = qi->cluster_size - in_cluster;
		return;
	}
	if (e & QCOW2_L2E_RESERVED) {
		invalid(ext, "L2 entry has reserved bits set");
		return;
	}
	host = e & QCOW2_OFFSET_MASK;
	if (host & (qi->cluster_size - 1)) {
		invalid(ext, "data cluster offset not cluster-aligned");
		return;
	}
	if (host && (host < qi->cluster_size || host >= qi->file_size)) {
		invalid(ext, "data cluster outside the file device");
		return;
	}

	if (!qi->extended_l2) {
		if ((e & QCOW2_OFLAG_ZERO) && qi->version < 3) {
			invalid(ext, "zero cluster in a version 2 image");
			return;
		}
		if (e & QCOW2_OFLAG_ZERO)
			ext->type = QCOW2_MAP_ZERO;
		else if (host)
			ext->type = QCOW2_MAP_DATA;
		else
			ext->type = QCOW2_MAP_BACKING;
	} else {
		/* QEMU's rule: one bad subcluster spoils the cluster. */
		sc = in_cluster >> qi->subcluster_bits;
		if ((bm >> 32) & bm) {
			invalid(ext, "subcluster both allocated and zero");
			return;
		}
		if (!host && (bm & 0xffffffffULL)) {
			invalid(ext, "unallocated cluster has allocated subclusters");
			return;
		}
		if (bm >> (32 + sc) & 1)
			ext->type = QCOW2_MAP_ZERO;
		else if (bm >> sc & 1)
			ext->type = QCOW2_MAP_DATA;
		else
			ext->type = QCOW2_MAP_BACKING;
	}
	if (ext->type != QCOW2_MAP_DATA)
		return;

	ext->host_off = host + in_cluster;
	ext->copied = e & QCOW2_OFLAG_COPIED;
	/* A cluster cut short by the file's end reads zeros past it. */
	if (ext->host_off >= qi->file_size)
		ext->type = QCOW2_MAP_ZERO;
	else if (ext->len > qi->file_size - ext->host_off)
		ext->len = qi->file_size - ext->host_off;
}

void qcow2_map(const struct qcow2_info *qi, const u64 *l2, u32 n,
	       u64 off, u64 len, struct qcow2_extent *ext)
{
	const u32 w = qi->l2_entry_words;
	u64 cluster_end = (off | (qi->cluster_size - 1)) + 1;
	u64 pos = off, done = 0;
	u32 i = 0;

	map_unit(qi, l2[0], w == 2 ? l2[1] : 0, off, ext);
	if (ext->type == QCOW2_MAP_INVALID)
		return;
	done = ext->len;

	/* Extend over the following units while they continue the extent. */
	while (done < len && ext->type != QCOW2_MAP_COMPRESSED) {
		struct qcow2_extent next;

		pos = off + done;
		if (pos >= cluster_end) {
			if (++i >= n)
				break;
			cluster_end += qi->cluster_size;
		}
		map_unit(qi, l2[i * w], w == 2 ? l2[i * w + 1] : 0, pos, &next);
		if (next.type != ext->type)
			break;
		if (ext->type == QCOW2_MAP_DATA &&
		    (next.host_off != ext->host_off + done ||
		     next.copied != ext->copied))
			break;
		done += next.len;
	}
	ext->len = done < len ? done : len;
}

u64 qcow2_default_l2_cache(const struct qcow2_info *qi, u64 min)
{
	u64 clusters = (qi->size + qi->cluster_size - 1) >> qi->cluster_bits;
	u64 bytes = clusters * qi->l2_entry_words * 8;

	if (bytes > QCOW2_MAX_L2_CACHE)
		bytes = QCOW2_MAX_L2_CACHE;
	return bytes < min ? min : bytes;
}

/* ---------------------------------------------------------------- */
/* Writing                                                          */
/* ---------------------------------------------------------------- */

u64 qcow2_refcount_get(const struct qcow2_info *qi, const u8 *block, u64 i)
{
	u32 bits = 1u << qi->refcount_order, per, k;
	u64 v = 0;

	if (bits < 8) {
		per = 8 / bits;
		return (block[i / per] >> ((i % per) * bits)) & ((1u << bits) - 1);
	}
	for (k = 0; k < bits / 8; k++)
		v = v << 8 | block[i * (bits / 8) + k];
	return v;
}

void qcow2_refcount_set(const struct qcow2_info *qi, u8 *block, u64 i, u64 v)
{
	u32 bits = 1u << qi->refcount_order, per, shift, k;
	u8 mask;

	if (bits < 8) {
		per = 8 / bits;
		shift = (i % per) * bits;
		mask = ((1u << bits) - 1) << shift;
		block[i / per] = (block[i / per] & ~mask) | ((v << shift) & mask);
		return;
	}
	for (k = bits / 8; k > 0; k--) {
		block[i * (bits / 8) + k - 1] = v & 0xff;
		v >>= 8;
	}
}

void qcow2_compressed_range(const struct qcow2_info *qi, u64 e, u64 *start,
			    u64 *len)
{
	u64 coff = e & ((1ULL << qi->csize_shift) - 1);

	*start = coff & ~511ULL;
	*len = (((e >> qi->csize_shift) & qi->csize_mask) + 1) * 512;
}

/* Where subcluster @sc's data is now: for the parts a write leaves. */
static enum qcow2_src state_src(const struct qcow2_info *qi, u64 e, u64 bm,
				u32 sc)
{
	u64 host = e & QCOW2_OFFSET_MASK;

	if (!qi->extended_l2) {
		if (e & QCOW2_OFLAG_ZERO)
			return QCOW2_SRC_ZERO;
		return host ? QCOW2_SRC_HOST : QCOW2_SRC_BACKING;
	}
	if (bm >> (32 + sc) & 1)
		return QCOW2_SRC_ZERO;
	if (bm >> sc & 1)
		return QCOW2_SRC_HOST;
	return QCOW2_SRC_BACKING;
}

void qcow2_plan_write(const struct qcow2_info *qi, const u64 *l2, u64 off,
		      u64 len, struct qcow2_wplan *p)
{
	u64 e = l2[0], bm = qi->extended_l2 ? l2[1] : 0;
	u64 cs = qi->cluster_size, ss = 1ULL << qi->subcluster_bits;
	u64 host = e & QCOW2_OFFSET_MASK, wmask, abits, zbits;
	u32 first, last, sc;
	bool copied = e & QCOW2_OFLAG_COPIED;
	struct qcow2_extent ext;

	memset(p, 0, sizeof(*p));
	off &= cs - 1;
	first = off >> qi->subcluster_bits;
	last = (off + len - 1) >> qi->subcluster_bits;
	wmask = (2ULL << last) - (1ULL << first);
	abits = bm & 0xffffffffULL;
	zbits = bm >> 32;

	map_unit(qi, e, bm, off, &ext);
	if (ext.type == QCOW2_MAP_INVALID) {
		p->kind = QCOW2_W_INVALID;
		p->error = ext.error;
		return;
	}
	p->kind = QCOW2_W_COW;
	p->alloc = true;
	p->wbegin = 0;
	p->wend = cs;
	p->new_entry = QCOW2_OFLAG_COPIED;

	if (e & QCOW2_OFLAG_COMPRESSED) {
		p->src_host = ext.host_off;
		p->src_csize = ext.csize;
		qcow2_compressed_range(qi, e, &p->free_off, &p->free_len);
		/* Every subcluster holds data now: all allocated. */
		p->new_bitmap = qi->extended_l2 ? 0xffffffffULL : 0;
		for (sc = 0; sc < (qi->extended_l2 ? QCOW2_SUBCLUSTERS : 1); sc++)
			p->src[sc] = QCOW2_SRC_COMPRESSED;
		goto covered;
	}

	if (!qi->extended_l2) {
		if (host && copied && !(e & QCOW2_OFLAG_ZERO)) {
			p->kind = QCOW2_W_INPLACE;
			p->alloc = false;
			p->host = host;
			return;
		}
		if (host && copied) {
			/* Zero but allocated: fill the cluster with zeros. */
			p->alloc = false;
			p->host = host;
			p->new_entry = host | QCOW2_OFLAG_COPIED;
		} else if (host) {
			/* Shared with a snapshot: copy it first. */
			p->src_host = host;
			p->free_off = host;
			p->free_len = cs;
		}
		p->src[0] = state_src(qi, e, bm, 0);
		goto covered;
	}

	/* Extended L2: allocate per subcluster. */
	p->new_bitmap = (abits | wmask) | ((zbits & ~wmask) << 32);
	p->src_host = host;
	if (host && copied) {
		if ((abits & wmask) == wmask) {
			p->kind = QCOW2_W_INPLACE;
			p->alloc = false;
			p->host = host;
			return;
		}
		p->alloc = false;
		p->host = host;
		/* Bit 0 is always 0 with extended L2 (QEMU rewrites it so). */
		p->new_entry = host | QCOW2_OFLAG_COPIED;
	} else if (host) {
		/* Shared: the new cluster gets every allocated subcluster. */
		p->free_off = host;
		p->free_len = cs;
		for (sc = 0; sc < QCOW2_SUBCLUSTERS; sc++)
			if (abits >> sc & 1)
				p->src[sc] = QCOW2_SRC_HOST;
	}
	if (!host || copied) {
		/* Only the subclusters written: no copy for the others. */
		p->wbegin = (u64)first * ss;
		p->wend = (u64)(last + 1) * ss;
	}
	for (sc = first; sc <= last; sc++)
		p->src[sc] = state_src(qi, e, bm, sc);

covered:
	/* Subclusters the write covers whole need no old data. */
	for (sc = 0; sc * ss < cs && sc < QCOW2_SUBCLUSTERS; sc++)
		if (off <= sc * ss && (sc + 1) * ss <= off + len)
			p->src[sc] = QCOW2_SRC_NONE;
}

void qcow2_plan_align(const struct qcow2_info *qi, const u64 *l2, u32 align,
		      struct qcow2_wplan *p)
{
	u64 bm = qi->extended_l2 ? l2[1] : 0, ss = 1ULL << qi->subcluster_bits;
	u64 b = p->wbegin & ~((u64)align - 1);
	u64 e = (p->wend + align - 1) & ~((u64)align - 1);
	u64 pos;
	u32 sc;

	if (p->kind != QCOW2_W_COW || align <= ss)
		return;
	if (e > qi->cluster_size)
		e = qi->cluster_size;
	for (pos = b; pos < e; pos += ss) {
		if (pos >= p->wbegin && pos < p->wend)
			continue;
		sc = pos >> qi->subcluster_bits;
		p->src[sc] = (bm >> sc & 1) ? QCOW2_SRC_HOST : QCOW2_SRC_NONE;
	}
	p->wbegin = b;
	p->wend = e;
}

bool qcow2_plan_zero_fill(const struct qcow2_info *qi,
			  const struct qcow2_wplan *p, u64 off, u64 len,
			  u32 align, bool backing_zeros, u64 *dbegin,
			  u64 *dend)
{
	u64 ss = 1ULL << qi->subcluster_bits, pos;

	if (p->kind != QCOW2_W_COW)
		return false;
	for (pos = p->wbegin; pos < p->wend; pos += ss) {
		switch (p->src[pos >> qi->subcluster_bits]) {
		case QCOW2_SRC_NONE:
		case QCOW2_SRC_ZERO:
			break;
		case QCOW2_SRC_BACKING:
			if (backing_zeros)
				break;
			return false;
		default:
			return false;
		}
	}
	/* Within [wbegin, wend): both are multiples of @align. */
	off &= qi->cluster_size - 1;
	*dbegin = off & ~((u64)align - 1);
	*dend = (off + len + align - 1) & ~((u64)align - 1);
	return true;
}

int qcow2_plan_zero(const struct qcow2_info *qi, const u64 *l2, bool discard,
		    bool backing, u64 *new_entry, u64 *new_bitmap,
		    u64 *free_off, u64 *free_len)
{
	u64 e = l2[0], bm = qi->extended_l2 ? l2[1] : 0;
	u64 host = e & QCOW2_OFFSET_MASK;
	struct qcow2_extent ext;
	bool keep;

	*free_off = 0;
	*free_len = 0;
	*new_bitmap = 0;
	map_unit(qi, e, bm, 0, &ext);
	if (ext.type == QCOW2_MAP_INVALID)
		return -EINVAL;
	if (qi->version < 3)
		return -EOPNOTSUPP;

	if (e & QCOW2_OFLAG_COMPRESSED) {
		qcow2_compressed_range(qi, e, free_off, free_len);
		host = 0;
	}
	keep = host && (e & QCOW2_OFLAG_COPIED) && !discard;
	if (host && !keep) {
		*free_off = host;
		*free_len = qi->cluster_size;
	}
	if (keep) {
		*new_entry = host | QCOW2_OFLAG_COPIED;
		if (qi->extended_l2)
			*new_bitmap = 0xffffffffULL << 32;
		else
			*new_entry |= QCOW2_OFLAG_ZERO;
		return 0;
	}
	/* Without a backing child, unallocated reads zeros already. */
	if (discard && !backing) {
		*new_entry = 0;
		return 0;
	}
	*new_entry = qi->extended_l2 ? 0 : QCOW2_OFLAG_ZERO;
	if (qi->extended_l2)
		*new_bitmap = 0xffffffffULL << 32;
	return 0;
}

void qcow2_encode_table(const u64 *ent, u32 n, u32 first, u32 count,
			const unsigned long *copied, u8 *out)
{
	const u32 bpl = 8 * sizeof(unsigned long);
	u32 k, i;
	u64 v;

	for (k = 0; k < count; k++) {
		i = first + k;
		v = i < n ? ent[i] : 0;
		if (v && copied && (copied[i / bpl] >> (i % bpl) & 1))
			v |= QCOW2_OFLAG_COPIED;
		put_unaligned_be64(v, out + 8 * (u64)k);
	}
}

int qcow2_header_set_reftable(u8 *buf, size_t len, u64 off, u32 clusters)
{
	if (len < H_REFTABLE_CLUSTERS + 4)
		return -EINVAL;
	put_unaligned_be64(off, buf + H_REFTABLE_OFFSET);
	put_unaligned_be32(clusters, buf + H_REFTABLE_CLUSTERS);
	return 0;
}

int qcow2_header_update_bits(u8 *buf, size_t len, u32 field, u64 set,
			     u64 clear)
{
	if (len < 8 || field > len - 8)
		return -EINVAL;
	put_unaligned_be64((get_unaligned_be64(buf + field) | set) & ~clear,
			   buf + field);
	return 0;
}

u64 qcow2_subcluster_run(const struct qcow2_info *qi, u64 bitmap, u64 off,
			 u64 len)
{
	u32 sb = qi->subcluster_bits;
	u64 in = off & (qi->cluster_size - 1);
	u32 sc = in >> sb, last = (in + len - 1) >> sb, i;
	bool a0 = bitmap >> sc & 1;

	for (i = sc + 1; i <= last; i++)
		if ((bitmap >> i & 1) != a0)
			return ((u64)i << sb) - in;
	return len;
}
