/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The qcow2 on-disk format: header parsing and validation, L1 and
 * refcount-table checks, L2 entry decoding.  Pure logic (see
 * dm-bgraph/pure.h): it builds into the module and into the host unit
 * tests and fuzzer, so both exercise the very same code.
 *
 * Reference: QEMU's docs/interop/qcow2.txt.  Everything read from an image
 * is untrusted.  Every function here is bounded by its arguments: it reads
 * only the buffers it is given, allocates nothing, never sleeps, and may be
 * called from any context.  Functions that can refuse return 0 or -EINVAL
 * (-EOPNOTSUPP for a valid image using a feature we lack) and set *@error to
 * a literal one-line reason.
 */
#ifndef DM_BGRAPH_QCOW2_FORMAT_H
#define DM_BGRAPH_QCOW2_FORMAT_H

#include "../dm-bgraph/pure.h"

#define QCOW2_MAGIC			0x514649fbu	/* "QFI\xfb" */
#define QCOW2_V2_HEADER_LEN		72u
#define QCOW2_V3_HEADER_LEN		104u
#define QCOW2_MIN_CLUSTER_BITS		9u
#define QCOW2_MAX_CLUSTER_BITS		21u
#define QCOW2_MAX_L1_BYTES		(32u << 20)	/* QEMU's QCOW_MAX_L1_SIZE */
#define QCOW2_MAX_REFTABLE_BYTES	(8u << 20)	/* QCOW_MAX_REFTABLE_SIZE */
#define QCOW2_MAX_SNAPSHOTS		65536u
#define QCOW2_MAX_BACKING_NAME		1023u
#define QCOW2_MAX_L2_CACHE		(32u << 20)	/* QEMU's default cap */
#define QCOW2_SUBCLUSTERS		32u		/* per extended L2 entry */
#define QCOW2_MIN_EXTL2_CLUSTER_BITS	14u

/* incompatible_features */
#define QCOW2_INCOMPAT_DIRTY		BIT(0)
#define QCOW2_INCOMPAT_CORRUPT		BIT(1)
#define QCOW2_INCOMPAT_DATA_FILE	BIT(2)
#define QCOW2_INCOMPAT_COMPRESSION	BIT(3)
#define QCOW2_INCOMPAT_EXTL2		BIT(4)
#define QCOW2_INCOMPAT_KNOWN		0x1fULL

#define QCOW2_COMPRESSION_ZLIB		0
#define QCOW2_COMPRESSION_ZSTD		1

/* Header extension types. */
#define QCOW2_EXT_END			0x00000000u
#define QCOW2_EXT_BACKING_FORMAT	0xe2792acau
#define QCOW2_EXT_FEATURE_TABLE		0x6803f857u
#define QCOW2_EXT_CRYPTO		0x0537be77u
#define QCOW2_EXT_DATA_FILE		0x44415441u

/* L1, L2 and refcount table entries. */
#define QCOW2_OFLAG_COPIED		BIT_ULL(63)
#define QCOW2_OFLAG_COMPRESSED		BIT_ULL(62)
#define QCOW2_OFLAG_ZERO		BIT_ULL(0)
#define QCOW2_OFFSET_MASK		0x00fffffffffffe00ULL	/* bits 9-55 */
#define QCOW2_L1E_RESERVED		0x7f000000000001ffULL
#define QCOW2_L2E_RESERVED		0x3f000000000001feULL
#define QCOW2_RTE_RESERVED		0x00000000000001ffULL

#define QCOW2_FEATURE_NAME_LEN		46u

/* The parsed header, host-endian, every field checked. */
struct qcow2_info {
	u32 version;			/* 2 or 3 */
	u32 cluster_bits;
	u64 cluster_size;
	u64 size;			/* virtual size in bytes */
	u64 file_size;			/* bytes of the file child */

	u32 l1_size;			/* entries */
	u64 l1_offset;
	u64 reftable_offset;
	u32 reftable_clusters;
	u32 refcount_order;
	u32 nb_snapshots;
	u64 snapshots_offset;

	u64 incompat;
	u64 compat;
	u64 autoclear;
	u32 header_length;
	u8 compression_type;		/* QCOW2_COMPRESSION_* */

	bool extended_l2;
	bool dirty;			/* QCOW2_INCOMPAT_DIRTY */
	bool corrupt;			/* QCOW2_INCOMPAT_CORRUPT */
	bool tables_past_end;		/* L1/refcount/snapshot table runs
					 * past the file device's end
					 */
	u32 l2_entry_words;		/* u64 words per L2 entry: 1 or 2 */
	u32 l2_bits;			/* log2 of the entries in an L2 table */
	u32 subcluster_bits;		/* == cluster_bits without ext. L2 */
	u32 csize_shift;		/* compressed descriptor layout */
	u64 csize_mask;

	u64 backing_file_offset;	/* the name is informational only */
	u32 backing_file_size;
	char backing_format[16];	/* NUL-terminated, "" if none */

	/* Set with -EOPNOTSUPP for an unknown incompatible feature: */
	u32 unknown_bit;		/* the lowest unknown bit */
	char unknown_name[QCOW2_FEATURE_NAME_LEN + 1];	/* from the table */
};

/*
 * qcow2_probe() - check the first @len bytes of an image just far enough
 * to know how much to read for qcow2_parse_header(): magic, version and
 * cluster_bits.  Sets *@cluster_bits.
 */
int qcow2_probe(const u8 *buf, size_t len, u32 *cluster_bits,
		const char **error);

/*
 * qcow2_parse_header() - parse and validate the header and its extensions.
 * @buf holds the first @len bytes of the file device, which must be
 * min(cluster size, @file_size) bytes (or more).  Checks every field against
 * the spec and QEMU's limits, and every table offset against @file_size:
 * a table must start at or before the end of the file device; the part of
 * it past the end reads as zeros (qi->tables_past_end says so).  Does not
 * read the tables themselves.
 */
int qcow2_parse_header(const u8 *buf, size_t len, u64 file_size,
		       struct qcow2_info *qi, const char **error);

/* Bytes of the L1 table and of the refcount table. */
static inline u64 qcow2_l1_bytes(const struct qcow2_info *qi)
{
	return (u64)qi->l1_size * 8;
}

static inline u64 qcow2_reftable_bytes(const struct qcow2_info *qi)
{
	return (u64)qi->reftable_clusters << qi->cluster_bits;
}

/*
 * qcow2_load_table() - decode a big-endian table of @n entries at @raw into
 * @out (host-endian offsets, 0 = unallocated) and check every entry:
 * reserved bits clear, offset cluster-aligned, the cluster starting inside
 * the file device and not in the header cluster.  @l1 picks the L1 rules (else
 * refcount table rules).  On error *@bad is the bad entry's index.
 */
int qcow2_load_table(const struct qcow2_info *qi, const u8 *raw, u32 n,
		     bool l1, u64 *out, u32 *bad, const char **error);

/* A byte range of the file device, for qcow2_check_overlaps(). */
struct qcow2_range {
	u64 start;
	u64 len;
};

/*
 * qcow2_overlap_ranges() - how many entries qcow2_check_overlaps() needs
 * in its scratch array for these tables.
 */
u64 qcow2_overlap_ranges(const struct qcow2_info *qi,
			 const u64 *l1, const u64 *reftable);

/*
 * qcow2_check_overlaps() - the metadata must not overlap: the header
 * cluster, the L1 table, the refcount table, every L2 table the L1 table
 * names and every refcount block the refcount table names.  @scratch holds
 * @nscratch >= qcow2_overlap_ranges() entries; it is sorted in place.
 */
int qcow2_check_overlaps(const struct qcow2_info *qi, const u64 *l1,
			 const u64 *reftable, struct qcow2_range *scratch,
			 u64 nscratch, const char **error);

/* Guest offset -> table indices. */
static inline u64 qcow2_l1_index(const struct qcow2_info *qi, u64 off)
{
	return off >> (qi->cluster_bits + qi->l2_bits);
}

static inline u64 qcow2_l2_index(const struct qcow2_info *qi, u64 off)
{
	return (off >> qi->cluster_bits) & ((1ULL << qi->l2_bits) - 1);
}

/* Bytes of one L2 table. */
static inline u64 qcow2_l2_bytes(const struct qcow2_info *qi)
{
	return qi->cluster_size;
}

/* What a guest range maps to. */
enum qcow2_ext_type {
	QCOW2_MAP_DATA,		/* host_off: in the file device */
	QCOW2_MAP_ZERO,		/* reads as zeros */
	QCOW2_MAP_BACKING,	/* unallocated: the backing child, or zeros */
	QCOW2_MAP_COMPRESSED,	/* host_off/csize: a compressed cluster */
	QCOW2_MAP_INVALID,	/* a bad L2 entry: fail the I/O */
};

struct qcow2_extent {
	enum qcow2_ext_type type;
	u64 len;		/* bytes from the start of the range */
	u64 host_off;		/* DATA: of the range's first byte,
				 * COMPRESSED: of the compressed data
				 */
	u64 csize;		/* COMPRESSED: bytes to read, within the file */
	bool copied;		/* DATA: refcount 1, may be written in place */
	const char *error;	/* INVALID: the reason */
};

/*
 * qcow2_map() - the first extent of the guest range [@off, @off + @len).
 * @l2 holds @n host-endian L2 entries (qi->l2_entry_words u64 words each:
 * the entry, then with extended L2 the subcluster bitmap), the first for
 * the cluster that contains @off, the rest for the clusters after it.
 * The extent ends where the mapping changes kind or stops being
 * contiguous on the host or the copied flag changes, at a compressed cluster's end, at the last of
 * the @n clusters, or at @off + @len, whichever comes first.  Never
 * returns a DATA or COMPRESSED extent reaching outside the file device.
 * @len > 0, @n > 0.
 */
void qcow2_map(const struct qcow2_info *qi, const u64 *l2, u32 n,
	       u64 off, u64 len, struct qcow2_extent *ext);

/*
 * qcow2_map_plain() - qcow2_map()'s common case, inline for map()'s path:
 * the standard (not extended) L2 entry @e maps a data cluster, not zero,
 * not compressed, no reserved bit, cluster-aligned, the whole cluster
 * within the file device.
 * Returns the host offset of guest byte @off, with *@copied the entry's
 * copied flag; 0 for any other entry (qcow2_map() then says what it is).
 * For those entries it agrees with qcow2_map() on one cluster.
 */
static inline u64 qcow2_map_plain(const struct qcow2_info *qi, u64 e,
				  u64 off, bool *copied)
{
	u64 host = e & ~QCOW2_OFLAG_COPIED;

	if (qi->extended_l2 || (host & ~QCOW2_OFFSET_MASK) ||
	    (host & (qi->cluster_size - 1)) || host < qi->cluster_size ||
	    host + qi->cluster_size > qi->file_size)
		return 0;
	*copied = e & QCOW2_OFLAG_COPIED;
	return host | (off & (qi->cluster_size - 1));
}

/* Size of the cluster buffer a compressed cluster decompresses into. */
static inline u64 qcow2_cluster_buffer(const struct qcow2_info *qi)
{
	return qi->cluster_size;
}

/*
 * qcow2_default_l2_cache() - QEMU's default L2 cache size: enough to map
 * the whole virtual disk, at most QCOW2_MAX_L2_CACHE, at least @min bytes.
 */
u64 qcow2_default_l2_cache(const struct qcow2_info *qi, u64 min);

/* ---------------------------------------------------------------- */
/* Writing                                                          */
/* ---------------------------------------------------------------- */

#define QCOW2_COMPAT_LAZY_REFCOUNTS	BIT(0)
/* u64 header fields for qcow2_header_update_bits(): byte offsets (v3) */
#define QCOW2_HDR_INCOMPAT		72u
#define QCOW2_HDR_AUTOCLEAR		88u

/* Refcount entries in one refcount block. */
static inline u64 qcow2_refblock_entries(const struct qcow2_info *qi)
{
	return (qi->cluster_size * 8) >> qi->refcount_order;
}

/* The largest refcount the image's refcount_order can hold. */
static inline u64 qcow2_refcount_max(const struct qcow2_info *qi)
{
	return qi->refcount_order == 6 ? ~0ULL :
		(1ULL << (1u << qi->refcount_order)) - 1;
}

/*
 * qcow2_refcount_get() / qcow2_refcount_set() - entry @i of the refcount
 * block @block (qi->cluster_size bytes, on-disk layout: big-endian
 * integers, or for orders 0-2 bit fields from the low bit of each byte
 * up, as QEMU packs them).  @i < qcow2_refblock_entries(); set needs
 * @v <= qcow2_refcount_max().
 */
u64 qcow2_refcount_get(const struct qcow2_info *qi, const u8 *block, u64 i);
void qcow2_refcount_set(const struct qcow2_info *qi, u8 *block, u64 i, u64 v);

/*
 * qcow2_compressed_range() - the file bytes [*@start, *@start + *@len)
 * whose clusters each hold one reference for compressed L2 entry @e
 * (QEMU's qcow2_free_any_cluster() frees the same range).
 */
void qcow2_compressed_range(const struct qcow2_info *qi, u64 e, u64 *start,
			    u64 *len);

/* Where a subcluster's current contents come from, for copy-on-write. */
enum qcow2_src {
	QCOW2_SRC_NONE,		/* overwritten whole, or left unallocated */
	QCOW2_SRC_ZERO,
	QCOW2_SRC_BACKING,	/* the backing child at the guest offset */
	QCOW2_SRC_HOST,		/* wplan.src_host + offset in the cluster */
	QCOW2_SRC_COMPRESSED,	/* decompress wplan.src_host / src_csize */
};

enum qcow2_wkind {
	QCOW2_W_INPLACE,	/* write to wplan.host + offset; no metadata */
	QCOW2_W_COW,		/* write [wbegin, wend) of a (new) cluster */
	QCOW2_W_INVALID,	/* a bad L2 entry: fail the write */
};

/*
 * The plan for a write of [@off, @off + @len) within one cluster.
 * For QCOW2_W_COW: allocate a cluster when @alloc (else reuse @host),
 * fill bytes [wbegin, wend) of it from src[] per subcluster (those the
 * write covers whole are QCOW2_SRC_NONE), copy the write in, write that
 * range, then store new_entry (| the host offset when @alloc) and
 * new_bitmap; once that entry is durable, drop one reference of every
 * cluster in [free_off, free_off + free_len) (free_len 0: none).
 */
struct qcow2_wplan {
	enum qcow2_wkind kind;
	bool alloc;
	u64 host;		/* INPLACE, or COW without @alloc */
	u64 wbegin, wend;	/* COW: bytes within the cluster */
	u64 new_entry, new_bitmap;
	u64 free_off, free_len;
	u64 src_host, src_csize;
	u8 src[QCOW2_SUBCLUSTERS];
	const char *error;	/* INVALID: the reason */
};

/*
 * qcow2_plan_write() - plan a write of @len bytes at byte @off of the
 * cluster whose L2 entry (and bitmap, with extended L2) is @l2.  @off and
 * @len are multiples of 512 within the cluster, @len > 0.
 */
void qcow2_plan_write(const struct qcow2_info *qi, const u64 *l2, u64 off,
		      u64 len, struct qcow2_wplan *p);

/*
 * qcow2_plan_align() - widen a COW plan's [wbegin, wend) to multiples of
 * @align bytes (the file device's logical block, when subclusters are
 * smaller), the subclusters added keeping what they hold: an allocated
 * one is copied from itself, the others (left unallocated or zero by the
 * new bitmap) are filled with zeros.
 */
void qcow2_plan_align(const struct qcow2_info *qi, const u64 *l2, u32 align,
		      struct qcow2_wplan *p);

/*
 * qcow2_plan_zero_fill() - whether a COW plan's fill is all zeros, so that
 * the file device may zero [wbegin, wend) without being sent the zeros
 * (QEMU's is_zero_cow()): every subcluster of it comes from nothing
 * (QCOW2_SRC_NONE), zeros, or the backing child when @backing_zeros (there
 * is none, or it ends before the cluster).  If so, sets [*@dbegin, *@dend):
 * the write's bytes [@off, @off + @len) within the cluster, widened to
 * multiples of @align (the file device's logical block: at most a
 * subcluster, or the plan was aligned to it by qcow2_plan_align()), so
 * within [wbegin, wend): what must still be written, the write's data
 * with zeros around it.
 */
bool qcow2_plan_zero_fill(const struct qcow2_info *qi,
			  const struct qcow2_wplan *p, u64 off, u64 len,
			  u32 align, bool backing_zeros, u64 *dbegin,
			  u64 *dend);

/*
 * qcow2_plan_zero() - the L2 entry and bitmap that make a whole cluster
 * read zeros without writing data: for write-zeroes (@discard false) an
 * allocated, unshared cluster keeps its host cluster; for a discard the
 * cluster is freed and, with a backing child (@backing), marked zero so
 * the backing data does not show through.  Returns -EOPNOTSUPP when the
 * image cannot say "zero" (version 2; the caller writes zeros instead),
 * -EINVAL for a bad entry.  Sets @free_off and @free_len like a wplan.
 */
int qcow2_plan_zero(const struct qcow2_info *qi, const u64 *l2, bool discard,
		    bool backing, u64 *new_entry, u64 *new_bitmap,
		    u64 *free_off, u64 *free_len);

/*
 * qcow2_encode_table() - the on-disk form of entries [@first, @first +
 * @count) of a table of @n host-endian entries (the L1 or the refcount
 * table) into @out, @count big-endian u64s: past @n, and for a 0 entry,
 * zeros.  With @copied (the L1 table: a bitmap of @n bits), an entry
 * whose bit is set gets QCOW2_OFLAG_COPIED.
 */
void qcow2_encode_table(const u64 *ent, u32 n, u32 first, u32 count,
			const unsigned long *copied, u8 *out);

/*
 * qcow2_header_set_reftable() - point the header in @buf (its first @len
 * bytes, on-disk layout) at a refcount table of @clusters clusters at
 * file offset @off.  Both fields share the header's first 512 bytes, so
 * one block write switches tables.  -EINVAL if @len does not hold them.
 */
int qcow2_header_set_reftable(u8 *buf, size_t len, u64 off, u32 clusters);

/*
 * qcow2_header_update_bits() - set the bits @set, then clear the bits
 * @clear, of the big-endian u64 header field at byte @field (one of the
 * QCOW2_HDR_ u64 fields) of the header in @buf (its first @len bytes).
 * -EINVAL if @len does not hold the field.
 */
int qcow2_header_update_bits(u8 *buf, size_t len, u32 field, u64 set,
			     u64 clear);

/*
 * qcow2_subcluster_run() - how many of the @len bytes at guest offset
 * @off (within one cluster, @len > 0) lie in the run of subclusters that
 * are allocated, or are not, like the first, in the allocation bits of
 * the extended L2 bitmap @bitmap.  @len when they all are alike.
 */
u64 qcow2_subcluster_run(const struct qcow2_info *qi, u64 bitmap, u64 off,
			 u64 len);

/* The L1 entry for an L2 table we own (refcount 1). */
static inline u64 qcow2_l1_entry(u64 l2_off)
{
	return l2_off | QCOW2_OFLAG_COPIED;
}

#endif /* DM_BGRAPH_QCOW2_FORMAT_H */
