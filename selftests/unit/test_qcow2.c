// SPDX-License-Identifier: GPL-2.0
/*
 * Host unit tests of targets/qcow2-format.c: header and table validation
 * on images built in memory (every refusal with its reason and errno),
 * qcow2_map() on L2 entries built in memory, and a user-space qcow2 reader
 * on qcow2_map() that must read what `qemu-img convert -O raw` reads from
 * real images made by qemu-img and qemu-io.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "kselftest_harness.h"
#include "qcow2-format.h"

/* ---------------------------------------------------------------- */
/* Big-endian writer and reader                                     */
/* ---------------------------------------------------------------- */

static void put_be(u8 *p, unsigned int width, u64 v)
{
	while (width--) {
		p[width] = v & 0xff;
		v >>= 8;
	}
}

static u64 get_be64(const u8 *p)
{
	u64 v = 0;
	int i;

	for (i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* Header fields, from docs/interop/qcow2.txt (independent of the code). */
enum {
	F_MAGIC = 0,		/* 4 bytes */
	F_VERSION = 4,		/* 4 */
	F_BACKING_OFFSET = 8,	/* 8 */
	F_BACKING_SIZE = 16,	/* 4 */
	F_CLUSTER_BITS = 20,	/* 4 */
	F_SIZE = 24,		/* 8 */
	F_CRYPT = 32,		/* 4 */
	F_L1_SIZE = 36,		/* 4 */
	F_L1_OFFSET = 40,	/* 8 */
	F_RT_OFFSET = 48,	/* 8 */
	F_RT_CLUSTERS = 56,	/* 4 */
	F_NB_SNAPSHOTS = 60,	/* 4 */
	F_SNAPSHOTS_OFFSET = 64,	/* 8 */
	F_INCOMPAT = 72,	/* 8 */
	F_COMPAT = 80,		/* 8 */
	F_AUTOCLEAR = 88,	/* 8 */
	F_REFCOUNT_ORDER = 96,	/* 4 */
	F_HEADER_LENGTH = 100,	/* 4 */
	F_COMPRESSION = 104,	/* 1 */
	F_EXT = 112,		/* the first header extension */
};

/* ---------------------------------------------------------------- */
/* An image built in memory                                         */
/* ---------------------------------------------------------------- */

/*
 * The model image: 512-byte clusters, 1 MiB virtual size, v3 with a
 * 112-byte header.  Cluster 0 header, 1 L1 table (32 entries), 2 refcount
 * table, 3 refcount block, 4 L2 table, 5 one data cluster.
 */
#define M_CB		9
#define M_CS		512u
#define M_SIZE		(1024u * 1024)
#define M_L1_SIZE	32u
#define M_L1		(1 * M_CS)
#define M_RT		(2 * M_CS)
#define M_RB		(3 * M_CS)
#define M_L2		(4 * M_CS)
#define M_DATA		(5 * M_CS)
#define M_FILE		(6 * M_CS)

static void build_model(u8 *b)
{
	unsigned int i;

	memset(b, 0, M_FILE);
	put_be(b + F_MAGIC, 4, 0x514649fb);
	put_be(b + F_VERSION, 4, 3);
	put_be(b + F_CLUSTER_BITS, 4, M_CB);
	put_be(b + F_SIZE, 8, M_SIZE);
	put_be(b + F_L1_SIZE, 4, M_L1_SIZE);
	put_be(b + F_L1_OFFSET, 8, M_L1);
	put_be(b + F_RT_OFFSET, 8, M_RT);
	put_be(b + F_RT_CLUSTERS, 4, 1);
	put_be(b + F_REFCOUNT_ORDER, 4, 4);
	put_be(b + F_HEADER_LENGTH, 4, 112);
	/* compression type 0 and the end-of-extensions mark: zeros */
	put_be(b + M_L1, 8, M_L2 | QCOW2_OFLAG_COPIED);
	put_be(b + M_RT, 8, M_RB);
	for (i = 0; i < 6; i++)
		put_be(b + M_RB + 2 * i, 2, 1);
	put_be(b + M_L2, 8, M_DATA | QCOW2_OFLAG_COPIED);
	memset(b + M_DATA, 0x5a, M_CS);
}

/* A field to overwrite: @width big-endian bytes of @val, or @str. */
struct poke {
	u16 off;
	u8 width;
	u64 val;
	const char *str;
};

static void apply_pokes(u8 *b, const struct poke *p, unsigned int n)
{
	for (; n-- && (p->width || p->str); p++) {
		if (p->str)
			memcpy(b + p->off, p->str, strlen(p->str));
		else
			put_be(b + p->off, p->width, p->val);
	}
}

/*
 * A header-only v3 image (size 0, no L1 table) with these clusters; its
 * one-cluster refcount table (QEMU requires one) follows the header.
 */
static void qi_for(struct __test_metadata *_metadata, u32 cb, bool extl2,
		   u64 file_size, struct qcow2_info *qi)
{
	u64 len = 1ULL << cb;
	const char *err = NULL;
	u8 *b;

	if (len > file_size)
		len = file_size;
	b = calloc(1, len);
	ASSERT_NE(NULL, b);
	put_be(b + F_MAGIC, 4, 0x514649fb);
	put_be(b + F_VERSION, 4, 3);
	put_be(b + F_CLUSTER_BITS, 4, cb);
	put_be(b + F_INCOMPAT, 8, extl2 ? QCOW2_INCOMPAT_EXTL2 : 0);
	put_be(b + F_REFCOUNT_ORDER, 4, 4);
	put_be(b + F_HEADER_LENGTH, 4, 104);
	put_be(b + F_RT_OFFSET, 8, 1ULL << cb);
	put_be(b + F_RT_CLUSTERS, 4, 1);
	EXPECT_EQ(0, qcow2_parse_header(b, len, file_size, qi, &err)) {
		TH_LOG("%s", err);
	}
	free(b);
}

/* ---------------------------------------------------------------- */
/* qcow2_probe()                                                    */
/* ---------------------------------------------------------------- */

TEST(probe_reads_the_cluster_bits)
{
	u8 b[M_FILE];
	const char *err = NULL;
	u32 bits = 0;

	build_model(b);
	EXPECT_EQ(0, qcow2_probe(b, 72, &bits, &err));
	EXPECT_EQ(M_CB, bits);
	put_be(b + F_CLUSTER_BITS, 4, 21);
	EXPECT_EQ(0, qcow2_probe(b, sizeof(b), &bits, &err));
	EXPECT_EQ(21, bits);
	put_be(b + F_VERSION, 4, 2);
	EXPECT_EQ(0, qcow2_probe(b, sizeof(b), &bits, &err));
}

struct probe_case {
	u16 off;
	u32 val;
	size_t len;
	const char *error;
};

static const struct probe_case probe_cases[] = {
	{ F_MAGIC, 0x514649fb, 71, "file device too small for a qcow2 header" },
	{ F_MAGIC, 0x514649fa, 512, "bad magic: not a qcow2 image" },
	{ F_MAGIC, 0xfb494651, 512, "bad magic: not a qcow2 image" },
	{ F_VERSION, 1, 512, "unsupported qcow2 version (2 and 3 are)" },
	{ F_VERSION, 4, 512, "unsupported qcow2 version (2 and 3 are)" },
	{ F_CLUSTER_BITS, 8, 512, "cluster_bits out of range (9 to 21)" },
	{ F_CLUSTER_BITS, 22, 512, "cluster_bits out of range (9 to 21)" },
	{ F_CLUSTER_BITS, 0x80000009, 512, "cluster_bits out of range (9 to 21)" },
};

TEST(probe_refusals_each_get_their_reason)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(probe_cases); i++) {
		const struct probe_case *c = &probe_cases[i];
		const char *err = NULL;
		u8 b[M_FILE];
		u32 bits = 1234;

		build_model(b);
		put_be(b + c->off, 4, c->val);
		EXPECT_EQ(-EINVAL, qcow2_probe(b, c->len, &bits, &err)) {
			TH_LOG("case %u accepted", i);
		}
		ASSERT_NE(NULL, err);
		EXPECT_STREQ(c->error, err);
		EXPECT_EQ(1234, bits);
	}
}

TEST(probe_reads_no_byte_past_len)
{
	const char *err = NULL;
	u8 b[M_FILE], *exact;
	u32 bits;

	build_model(b);
	exact = malloc(72);	/* ASan: a read past 72 bytes faults */
	ASSERT_NE(NULL, exact);
	memcpy(exact, b, 72);
	EXPECT_EQ(0, qcow2_probe(exact, 72, &bits, &err));
	EXPECT_EQ(-EINVAL, qcow2_probe(exact, 71, &bits, &err));
	free(exact);
}

/* ---------------------------------------------------------------- */
/* qcow2_parse_header(): the model image and what it accepts         */
/* ---------------------------------------------------------------- */

TEST(model_image_parses)
{
	struct qcow2_info qi;
	const char *err = NULL;
	u8 b[M_FILE];

	build_model(b);
	ASSERT_EQ(0, qcow2_parse_header(b, M_CS, M_FILE, &qi, &err)) {
		TH_LOG("%s", err);
	}
	EXPECT_EQ(3, qi.version);
	EXPECT_EQ(M_CB, qi.cluster_bits);
	EXPECT_EQ(M_CS, qi.cluster_size);
	EXPECT_EQ(M_SIZE, qi.size);
	EXPECT_EQ(M_FILE, qi.file_size);
	EXPECT_EQ(M_L1_SIZE, qi.l1_size);
	EXPECT_EQ(M_L1, qi.l1_offset);
	EXPECT_EQ(M_RT, qi.reftable_offset);
	EXPECT_EQ(1, qi.reftable_clusters);
	EXPECT_EQ(4, qi.refcount_order);
	EXPECT_EQ(112, qi.header_length);
	EXPECT_EQ(0, qi.nb_snapshots);
	EXPECT_EQ(QCOW2_COMPRESSION_ZLIB, qi.compression_type);
	EXPECT_FALSE(qi.extended_l2);
	EXPECT_FALSE(qi.dirty);
	EXPECT_FALSE(qi.corrupt);
	EXPECT_EQ(1, qi.l2_entry_words);
	EXPECT_EQ(6, qi.l2_bits);
	EXPECT_EQ(9, qi.subcluster_bits);
	EXPECT_EQ(61, qi.csize_shift);
	EXPECT_EQ(1, qi.csize_mask);
	EXPECT_EQ(0, qi.backing_file_offset);
	EXPECT_STREQ("", qi.backing_format);
	EXPECT_EQ(M_L1_SIZE * 8, qcow2_l1_bytes(&qi));
	EXPECT_EQ(M_CS, qcow2_reftable_bytes(&qi));
	EXPECT_EQ(M_CS, qcow2_l2_bytes(&qi));
	EXPECT_EQ(M_CS, qcow2_cluster_buffer(&qi));
}

TEST(header_len_may_be_more_than_a_cluster)
{
	struct qcow2_info qi;
	const char *err = NULL;
	u8 b[M_FILE];

	build_model(b);
	EXPECT_EQ(0, qcow2_parse_header(b, M_FILE, M_FILE, &qi, &err));
	/* and the caller's len past the file's end is clamped */
	EXPECT_EQ(0, qcow2_parse_header(b, M_FILE, M_FILE - 1, &qi, &err));
}

TEST(header_reads_only_the_header_cluster)
{
	struct qcow2_info qi;
	const char *err = NULL;
	u8 b[M_FILE], *exact;

	build_model(b);
	exact = malloc(M_CS);	/* ASan: a read past the cluster faults */
	ASSERT_NE(NULL, exact);
	memcpy(exact, b, M_CS);
	EXPECT_EQ(0, qcow2_parse_header(exact, M_CS, M_FILE, &qi, &err));
	free(exact);
}

TEST(v2_header_parses_with_v3_defaults)
{
	struct qcow2_info qi;
	const char *err = NULL;
	u8 b[M_FILE];

	build_model(b);
	put_be(b + F_VERSION, 4, 2);
	memset(b + 72, 0, 40);	/* v2 ends at 72: extensions start there */
	ASSERT_EQ(0, qcow2_parse_header(b, M_CS, M_FILE, &qi, &err)) {
		TH_LOG("%s", err);
	}
	EXPECT_EQ(2, qi.version);
	EXPECT_EQ(72, qi.header_length);
	EXPECT_EQ(4, qi.refcount_order);
	EXPECT_EQ(0, qi.incompat);
	EXPECT_EQ(1, qi.l2_entry_words);
}

TEST(v2_ignores_the_v3_fields)
{
	struct qcow2_info qi;
	const char *err = NULL;
	u8 b[M_FILE];

	build_model(b);
	put_be(b + F_VERSION, 4, 2);
	/* An unknown extension at 72 that covers the v3-only fields. */
	put_be(b + 72, 4, 0x12345678);
	put_be(b + 76, 4, 32);
	put_be(b + F_REFCOUNT_ORDER, 4, 99);
	ASSERT_EQ(0, qcow2_parse_header(b, M_CS, M_FILE, &qi, &err)) {
		TH_LOG("%s", err);
	}
	EXPECT_EQ(4, qi.refcount_order);
	EXPECT_EQ(0, qi.incompat);
}

TEST(header_length_104_has_no_compression_type)
{
	struct qcow2_info qi;
	const char *err = NULL;
	u8 b[M_FILE];

	build_model(b);
	put_be(b + F_HEADER_LENGTH, 4, 104);
	b[F_COMPRESSION] = 0;	/* the end-of-extensions mark at 104 */
	ASSERT_EQ(0, qcow2_parse_header(b, M_CS, M_FILE, &qi, &err)) {
		TH_LOG("%s", err);
	}
	EXPECT_EQ(104, qi.header_length);
	EXPECT_EQ(QCOW2_COMPRESSION_ZLIB, qi.compression_type);
}

TEST(zstd_compression_type_with_its_bit)
{
	struct qcow2_info qi;
	const char *err = NULL;
	u8 b[M_FILE];

	build_model(b);
	put_be(b + F_INCOMPAT, 8, QCOW2_INCOMPAT_COMPRESSION);
	b[F_COMPRESSION] = QCOW2_COMPRESSION_ZSTD;
	ASSERT_EQ(0, qcow2_parse_header(b, M_CS, M_FILE, &qi, &err)) {
		TH_LOG("%s", err);
	}
	EXPECT_EQ(QCOW2_COMPRESSION_ZSTD, qi.compression_type);
	EXPECT_EQ(QCOW2_INCOMPAT_COMPRESSION, qi.incompat);
}

TEST(dirty_and_corrupt_bits_are_reported_not_refused)
{
	struct qcow2_info qi;
	const char *err = NULL;
	u8 b[M_FILE];

	build_model(b);
	put_be(b + F_INCOMPAT, 8, QCOW2_INCOMPAT_DIRTY);
	ASSERT_EQ(0, qcow2_parse_header(b, M_CS, M_FILE, &qi, &err));
	EXPECT_TRUE(qi.dirty);
	EXPECT_FALSE(qi.corrupt);
	put_be(b + F_INCOMPAT, 8, QCOW2_INCOMPAT_CORRUPT);
	ASSERT_EQ(0, qcow2_parse_header(b, M_CS, M_FILE, &qi, &err));
	EXPECT_FALSE(qi.dirty);
	EXPECT_TRUE(qi.corrupt);
}

TEST(compat_and_autoclear_bits_are_ignored)
{
	struct qcow2_info qi;
	const char *err = NULL;
	u8 b[M_FILE];

	build_model(b);
	put_be(b + F_COMPAT, 8, ~0ULL);
	put_be(b + F_AUTOCLEAR, 8, ~0ULL);
	ASSERT_EQ(0, qcow2_parse_header(b, M_CS, M_FILE, &qi, &err));
	EXPECT_EQ(~0ULL, qi.compat);
	EXPECT_EQ(~0ULL, qi.autoclear);
}

TEST(every_refcount_order_up_to_6)
{
	struct qcow2_info qi;
	const char *err = NULL;
	u8 b[M_FILE];
	u32 order;

	build_model(b);
	for (order = 0; order <= 6; order++) {
		put_be(b + F_REFCOUNT_ORDER, 4, order);
		EXPECT_EQ(0, qcow2_parse_header(b, M_CS, M_FILE, &qi, &err));
		EXPECT_EQ(order, qi.refcount_order);
	}
}

TEST(backing_file_and_format)
{
	struct qcow2_info qi;
	const char *err = NULL;
	u8 b[M_FILE];

	build_model(b);
	put_be(b + F_EXT, 4, QCOW2_EXT_BACKING_FORMAT);
	put_be(b + F_EXT + 4, 4, 5);
	memcpy(b + F_EXT + 8, "qcow2", 5);
	put_be(b + F_BACKING_OFFSET, 8, 400);
	put_be(b + F_BACKING_SIZE, 4, 10);
	memcpy(b + 400, "base.qcow2", 10);
	ASSERT_EQ(0, qcow2_parse_header(b, M_CS, M_FILE, &qi, &err)) {
		TH_LOG("%s", err);
	}
	EXPECT_EQ(400, qi.backing_file_offset);
	EXPECT_EQ(10, qi.backing_file_size);
	EXPECT_STREQ("qcow2", qi.backing_format);

	/* The longest name QEMU writes, ending at the cluster's end. */
	put_be(b + F_BACKING_OFFSET, 8, 200);
	put_be(b + F_BACKING_SIZE, 4, M_CS - 200);
	EXPECT_EQ(0, qcow2_parse_header(b, M_CS, M_FILE, &qi, &err));
	/* A 15-byte format name fills the field. */
	put_be(b + F_EXT + 4, 4, 15);
	memcpy(b + F_EXT + 8, "0123456789abcde", 15);
	put_be(b + F_EXT + 24, 8, 0);
	EXPECT_EQ(0, qcow2_parse_header(b, M_CS, M_FILE, &qi, &err));
	EXPECT_STREQ("0123456789abcde", qi.backing_format);
}

TEST(extensions_stop_at_the_backing_file_name)
{
	struct qcow2_info qi;
	const char *err = NULL;
	u8 b[M_FILE];

	build_model(b);
	/* An extension that ends exactly where the name begins. */
	put_be(b + F_EXT, 4, 0x12345678);
	put_be(b + F_EXT + 4, 4, 80);
	put_be(b + F_BACKING_OFFSET, 8, F_EXT + 88);
	put_be(b + F_BACKING_SIZE, 4, 4);
	/* The name is not an extension header, though it looks like one. */
	put_be(b + F_EXT + 88, 4, QCOW2_EXT_DATA_FILE);
	ASSERT_EQ(0, qcow2_parse_header(b, M_CS, M_FILE, &qi, &err)) {
		TH_LOG("%s", err);
	}
}

TEST(unknown_extensions_are_skipped)
{
	struct qcow2_info qi;
	const char *err = NULL;
	u8 b[M_FILE];

	build_model(b);
	put_be(b + F_EXT, 4, 0x12345678);
	put_be(b + F_EXT + 4, 4, 3);	/* padded to 8 */
	put_be(b + F_EXT + 16, 4, QCOW2_EXT_BACKING_FORMAT);
	put_be(b + F_EXT + 20, 4, 3);
	memcpy(b + F_EXT + 24, "raw", 3);
	put_be(b + F_EXT + 32, 4, QCOW2_EXT_FEATURE_TABLE);
	put_be(b + F_EXT + 36, 4, 48);
	ASSERT_EQ(0, qcow2_parse_header(b, M_CS, M_FILE, &qi, &err)) {
		TH_LOG("%s", err);
	}
	EXPECT_STREQ("raw", qi.backing_format);
	/* Extensions may run to the end of the header cluster. */
	build_model(b);
	put_be(b + F_EXT, 4, 0x12345678);
	put_be(b + F_EXT + 4, 4, M_CS - F_EXT - 8);
	EXPECT_EQ(0, qcow2_parse_header(b, M_CS, M_FILE, &qi, &err));
}

TEST(unknown_incompatible_bit_is_named_from_the_feature_table)
{
	struct qcow2_info qi;
	const char *err = NULL;
	u8 b[M_FILE];

	build_model(b);
	put_be(b + F_INCOMPAT, 8, BIT(9) | BIT(12) | QCOW2_INCOMPAT_DIRTY);
	put_be(b + F_EXT, 4, QCOW2_EXT_FEATURE_TABLE);
	put_be(b + F_EXT + 4, 4, 3 * 48);
	b[F_EXT + 8] = 1;		/* compatible bit 9: not this one */
	b[F_EXT + 9] = 9;
	memcpy(b + F_EXT + 10, "wrong kind", 10);
	b[F_EXT + 56] = 0;		/* incompatible bit 12 */
	b[F_EXT + 57] = 12;
	memcpy(b + F_EXT + 58, "twelve", 6);
	b[F_EXT + 104] = 0;		/* incompatible bit 9, a full name */
	b[F_EXT + 105] = 9;
	memset(b + F_EXT + 106, 'n', 46);
	EXPECT_EQ(-EOPNOTSUPP, qcow2_parse_header(b, M_CS, M_FILE, &qi, &err));
	EXPECT_STREQ("unknown incompatible feature bits set", err);
	EXPECT_EQ(9, qi.unknown_bit);
	EXPECT_EQ(46, strlen(qi.unknown_name));
	EXPECT_EQ('n', qi.unknown_name[0]);

	/* Without a name in the table the bit is still reported. */
	put_be(b + F_EXT, 4, 0);
	EXPECT_EQ(-EOPNOTSUPP, qcow2_parse_header(b, M_CS, M_FILE, &qi, &err));
	EXPECT_EQ(9, qi.unknown_bit);
	EXPECT_STREQ("", qi.unknown_name);
	put_be(b + F_INCOMPAT, 8, 1ULL << 63);
	EXPECT_EQ(-EOPNOTSUPP, qcow2_parse_header(b, M_CS, M_FILE, &qi, &err));
	EXPECT_EQ(63, qi.unknown_bit);
}

TEST(extended_l2_layout)
{
	struct qcow2_info qi;

	qi_for(_metadata, 14, true, 1 << 20, &qi);
	EXPECT_TRUE(qi.extended_l2);
	EXPECT_EQ(2, qi.l2_entry_words);
	EXPECT_EQ(10, qi.l2_bits);
	EXPECT_EQ(9, qi.subcluster_bits);
	qi_for(_metadata, 21, true, 4 << 20, &qi);
	EXPECT_EQ(17, qi.l2_bits);
	EXPECT_EQ(16, qi.subcluster_bits);
}

TEST(compressed_descriptor_layout_follows_cluster_bits)
{
	struct qcow2_info qi;
	u32 cb;

	for (cb = QCOW2_MIN_CLUSTER_BITS; cb <= QCOW2_MAX_CLUSTER_BITS; cb++) {
		qi_for(_metadata, cb, false, 8 << 20, &qi);
		/* qcow2.txt: x = 62 - (cluster_bits - 8) */
		EXPECT_EQ(62 - (cb - 8), qi.csize_shift);
		EXPECT_EQ((1ULL << (cb - 8)) - 1, qi.csize_mask);
		EXPECT_EQ(cb - 3, qi.l2_bits);
		EXPECT_EQ(cb, qi.subcluster_bits);
	}
}

TEST(file_shorter_than_a_cluster)
{
	struct qcow2_info qi;
	const char *err = NULL;
	u8 b[4096] = { 0 };

	put_be(b + F_MAGIC, 4, 0x514649fb);
	put_be(b + F_VERSION, 4, 3);
	put_be(b + F_CLUSTER_BITS, 4, 16);
	put_be(b + F_REFCOUNT_ORDER, 4, 4);
	put_be(b + F_HEADER_LENGTH, 4, 104);
	put_be(b + F_RT_OFFSET, 8, 65536);
	put_be(b + F_RT_CLUSTERS, 4, 1);
	/*
	 * Only the file's bytes are read (ASan sees an over-read), and the
	 * refcount table that must follow the header cluster is past its end.
	 */
	EXPECT_EQ(-EINVAL, qcow2_parse_header(b, sizeof(b), sizeof(b), &qi, &err));
	EXPECT_STREQ("refcount table outside the file device or in the header", err);
	EXPECT_EQ(-EINVAL, qcow2_parse_header(b, 104, 104, &qi, &err));
	EXPECT_STREQ("refcount table outside the file device or in the header", err);
}

TEST(l1_table_exactly_large_enough)
{
	struct qcow2_info qi;
	const char *err = NULL;
	u8 b[M_FILE];

	build_model(b);
	/* 1 MiB + 1 byte needs a 33rd L2 table. */
	put_be(b + F_SIZE, 8, M_SIZE + 1);
	EXPECT_EQ(-EINVAL, qcow2_parse_header(b, M_CS, M_FILE, &qi, &err));
	EXPECT_STREQ("L1 table too small for the virtual size", err);
	put_be(b + F_L1_SIZE, 4, 33);
	EXPECT_EQ(0, qcow2_parse_header(b, M_CS, M_FILE, &qi, &err));
	/* Larger than needed is fine; an empty disk needs none. */
	put_be(b + F_SIZE, 8, 0);
	EXPECT_EQ(0, qcow2_parse_header(b, M_CS, M_FILE, &qi, &err));
	put_be(b + F_L1_SIZE, 4, 0);
	EXPECT_EQ(0, qcow2_parse_header(b, M_CS, M_FILE, &qi, &err));
}

/*
 * qemu-img writes only the bytes of a new image's L1 table, and a loop
 * device drops a file's last partial sector: a table may start at the
 * file's end or run past it (and reads as zeros there).
 */
TEST(tables_may_run_past_the_file_end)
{
	struct qcow2_info qi;
	const char *err = NULL;
	u8 b[M_FILE];

	build_model(b);
	ASSERT_EQ(0, qcow2_parse_header(b, M_CS, M_FILE, &qi, &err));
	EXPECT_FALSE(qi.tables_past_end);
	put_be(b + F_L1_OFFSET, 8, M_FILE);
	ASSERT_EQ(0, qcow2_parse_header(b, M_CS, M_FILE, &qi, &err)) {
		TH_LOG("%s", err);
	}
	EXPECT_TRUE(qi.tables_past_end);
	put_be(b + F_L1_OFFSET, 8, M_DATA);
	put_be(b + F_L1_SIZE, 4, 65);
	ASSERT_EQ(0, qcow2_parse_header(b, M_CS, M_FILE, &qi, &err));
	EXPECT_TRUE(qi.tables_past_end);

	build_model(b);
	put_be(b + F_RT_OFFSET, 8, M_DATA);
	put_be(b + F_RT_CLUSTERS, 4, 2);
	ASSERT_EQ(0, qcow2_parse_header(b, M_CS, M_FILE, &qi, &err));
	EXPECT_TRUE(qi.tables_past_end);

	build_model(b);
	put_be(b + F_NB_SNAPSHOTS, 4, 13);	/* 13 * 40 > 512 */
	put_be(b + F_SNAPSHOTS_OFFSET, 8, M_DATA);
	ASSERT_EQ(0, qcow2_parse_header(b, M_CS, M_FILE, &qi, &err));
	EXPECT_TRUE(qi.tables_past_end);
}

/*
 * QEMU's limits, at 2 MiB clusters: an L2 table maps 2^39 bytes, so a
 * 32 MiB L1 table (2^22 entries) maps 2^61; refcount table 4 clusters.
 * Only the header cluster is read: the file size is just a number here.
 */
TEST(limits_are_inclusive)
{
	const u64 cs = 2u << 20, file = 64u << 20;
	struct qcow2_info qi;
	const char *err = NULL;
	u8 *b = calloc(1, cs);

	ASSERT_NE(NULL, b);
	put_be(b + F_MAGIC, 4, 0x514649fb);
	put_be(b + F_VERSION, 4, 3);
	put_be(b + F_CLUSTER_BITS, 4, 21);
	put_be(b + F_SIZE, 8, 1ULL << 61);
	put_be(b + F_L1_SIZE, 4, QCOW2_MAX_L1_BYTES / 8);
	put_be(b + F_L1_OFFSET, 8, cs);
	put_be(b + F_RT_OFFSET, 8, 34u << 20);
	put_be(b + F_RT_CLUSTERS, 4, QCOW2_MAX_REFTABLE_BYTES / cs);
	put_be(b + F_NB_SNAPSHOTS, 4, QCOW2_MAX_SNAPSHOTS);
	put_be(b + F_SNAPSHOTS_OFFSET, 8, 42u << 20);
	put_be(b + F_REFCOUNT_ORDER, 4, 4);
	put_be(b + F_HEADER_LENGTH, 4, 104);
	ASSERT_EQ(0, qcow2_parse_header(b, cs, file, &qi, &err)) {
		TH_LOG("%s", err);
	}
	EXPECT_EQ(QCOW2_MAX_L1_BYTES, qcow2_l1_bytes(&qi));
	EXPECT_EQ(QCOW2_MAX_REFTABLE_BYTES, qcow2_reftable_bytes(&qi));
	EXPECT_EQ(QCOW2_MAX_SNAPSHOTS, qi.nb_snapshots);
	EXPECT_EQ(QCOW2_MAX_L2_CACHE, qcow2_default_l2_cache(&qi, 4096));

	/* One byte more needs one more L2 table than the L1 table holds. */
	put_be(b + F_SIZE, 8, (1ULL << 61) + 1);
	EXPECT_EQ(-EINVAL, qcow2_parse_header(b, cs, file, &qi, &err));
	EXPECT_STREQ("L1 table too small for the virtual size", err);
	/* 2^62 itself passes the size check (and fails on the L1 table). */
	put_be(b + F_SIZE, 8, 1ULL << 62);
	EXPECT_EQ(-EINVAL, qcow2_parse_header(b, cs, file, &qi, &err));
	EXPECT_STREQ("L1 table too small for the virtual size", err);
	free(b);
}

TEST(default_l2_cache_covers_the_disk)
{
	struct qcow2_info qi;
	const char *err = NULL;
	u8 b[M_FILE];

	build_model(b);
	ASSERT_EQ(0, qcow2_parse_header(b, M_CS, M_FILE, &qi, &err));
	/* 2048 clusters, 8 bytes of L2 entry each */
	EXPECT_EQ(16384, qcow2_default_l2_cache(&qi, 0));
	EXPECT_EQ(65536, qcow2_default_l2_cache(&qi, 65536));
	qi_for(_metadata, 16, true, 1 << 20, &qi);
	qi.size = 1ULL << 30;
	EXPECT_EQ(16384 * 16, qcow2_default_l2_cache(&qi, 0));
}

/* ---------------------------------------------------------------- */
/* qcow2_parse_header(): every refusal                              */
/* ---------------------------------------------------------------- */

FIXTURE(header) {
	u8 b[M_FILE];
};

FIXTURE_VARIANT(header) {
	struct poke pokes[5];
	u32 len;		/* bytes given; 0: one cluster */
	u32 file_size;		/* 0: the model's */
	int err;		/* 0: -EINVAL */
	const char *error;
};

FIXTURE_SETUP(header)
{
	build_model(self->b);
}

FIXTURE_TEARDOWN(header)
{
}

#define POKE(o, w, v)	{ .off = (o), .width = (w), .val = (v) }
#define POKES(o, s)	{ .off = (o), .str = (s) }

FIXTURE_VARIANT_ADD(header, shorter_than_a_v2_header) {
	.len = 71, .file_size = 71,
	.error = "file device too small for a qcow2 header",
};

FIXTURE_VARIANT_ADD(header, v3_file_shorter_than_a_v3_header) {
	.len = 100, .file_size = 100,
	.error = "file device too small for a qcow2 header",
};

FIXTURE_VARIANT_ADD(header, bad_magic) {
	.pokes = { POKE(F_MAGIC, 4, 0x514649fc) },
	.error = "bad magic: not a qcow2 image",
};

FIXTURE_VARIANT_ADD(header, version_1) {
	.pokes = { POKE(F_VERSION, 4, 1) },
	.error = "unsupported qcow2 version (2 and 3 are)",
};

FIXTURE_VARIANT_ADD(header, version_4) {
	.pokes = { POKE(F_VERSION, 4, 4) },
	.error = "unsupported qcow2 version (2 and 3 are)",
};

FIXTURE_VARIANT_ADD(header, cluster_bits_8) {
	.pokes = { POKE(F_CLUSTER_BITS, 4, 8) },
	.error = "cluster_bits out of range (9 to 21)",
};

FIXTURE_VARIANT_ADD(header, cluster_bits_22) {
	.pokes = { POKE(F_CLUSTER_BITS, 4, 22) },
	.error = "cluster_bits out of range (9 to 21)",
};

FIXTURE_VARIANT_ADD(header, header_cluster_not_fully_read) {
	.len = 256,
	.error = "header cluster not fully read",
};

FIXTURE_VARIANT_ADD(header, encrypted) {
	.pokes = { POKE(F_CRYPT, 4, 2) },
	.err = -EOPNOTSUPP,
	.error = "encrypted images are not supported",
};

FIXTURE_VARIANT_ADD(header, header_length_below_104) {
	.pokes = { POKE(F_HEADER_LENGTH, 4, 96) },
	.error = "bad header_length (at least 104, a multiple of 8)",
};

FIXTURE_VARIANT_ADD(header, header_length_not_a_multiple_of_8) {
	.pokes = { POKE(F_HEADER_LENGTH, 4, 108) },
	.error = "bad header_length (at least 104, a multiple of 8)",
};

FIXTURE_VARIANT_ADD(header, header_length_over_a_cluster) {
	.pokes = { POKE(F_HEADER_LENGTH, 4, M_CS + 8) },
	.error = "header_length larger than a cluster",
};

FIXTURE_VARIANT_ADD(header, header_length_past_the_file_end) {
	.len = 108, .file_size = 108,
	.error = "header extends past the end of the file device",
};

FIXTURE_VARIANT_ADD(header, refcount_order_7) {
	.pokes = { POKE(F_REFCOUNT_ORDER, 4, 7) },
	.error = "refcount_order out of range (0 to 6)",
};

FIXTURE_VARIANT_ADD(header, compression_bit_without_type) {
	.pokes = { POKE(F_INCOMPAT, 8, QCOW2_INCOMPAT_COMPRESSION) },
	.error = "compression type and its incompatible bit disagree",
};

FIXTURE_VARIANT_ADD(header, compression_type_without_bit) {
	.pokes = { POKE(F_COMPRESSION, 1, QCOW2_COMPRESSION_ZSTD) },
	.error = "compression type and its incompatible bit disagree",
};

FIXTURE_VARIANT_ADD(header, compression_type_2) {
	.pokes = { POKE(F_COMPRESSION, 1, 2),
		   POKE(F_INCOMPAT, 8, QCOW2_INCOMPAT_COMPRESSION) },
	.error = "unknown compression type",
};

FIXTURE_VARIANT_ADD(header, extended_l2_with_small_clusters) {
	.pokes = { POKE(F_INCOMPAT, 8, QCOW2_INCOMPAT_EXTL2) },
	.error = "extended L2 entries need clusters of 16 KiB or more",
};

FIXTURE_VARIANT_ADD(header, backing_name_too_long) {
	.pokes = { POKE(F_BACKING_OFFSET, 8, 200),
		   POKE(F_BACKING_SIZE, 4, 1024) },
	.error = "backing file name too long",
};

FIXTURE_VARIANT_ADD(header, backing_name_in_the_header) {
	.pokes = { POKE(F_BACKING_OFFSET, 8, 104),
		   POKE(F_BACKING_SIZE, 4, 8) },
	.error = "backing file name outside the header cluster",
};

FIXTURE_VARIANT_ADD(header, backing_name_past_the_cluster) {
	.pokes = { POKE(F_BACKING_OFFSET, 8, 500),
		   POKE(F_BACKING_SIZE, 4, 13) },
	.error = "backing file name outside the header cluster",
};

FIXTURE_VARIANT_ADD(header, backing_name_offset_wraps) {
	.pokes = { POKE(F_BACKING_OFFSET, 8, ~0ULL - 3),
		   POKE(F_BACKING_SIZE, 4, 8) },
	.error = "backing file name outside the header cluster",
};

FIXTURE_VARIANT_ADD(header, extension_past_the_cluster) {
	.pokes = { POKE(F_EXT, 4, 0x12345678),
		   POKE(F_EXT + 4, 4, M_CS - F_EXT - 7) },
	.error = "header extension overflows the header cluster",
};

FIXTURE_VARIANT_ADD(header, extension_length_huge) {
	.pokes = { POKE(F_EXT, 4, QCOW2_EXT_FEATURE_TABLE),
		   POKE(F_EXT + 4, 4, 0xffffffff) },
	.error = "header extension overflows the header cluster",
};

FIXTURE_VARIANT_ADD(header, extension_over_the_backing_name) {
	.pokes = { POKE(F_EXT, 4, 0x12345678), POKE(F_EXT + 4, 4, 100),
		   POKE(F_BACKING_OFFSET, 8, 200),
		   POKE(F_BACKING_SIZE, 4, 8) },
	.error = "header extension overflows the header cluster",
};

FIXTURE_VARIANT_ADD(header, extension_header_past_the_end) {
	/* a second extension whose data would pass the cluster's end */
	.pokes = { POKE(F_EXT, 4, 0x12345678),
		   POKE(F_EXT + 4, 4, M_CS - F_EXT - 16),
		   POKE(M_CS - 8, 4, 0x12345678),
		   POKE(M_CS - 4, 4, 1) },
	.error = "header extension overflows the header cluster",
};

FIXTURE_VARIANT_ADD(header, backing_format_too_long) {
	.pokes = { POKE(F_EXT, 4, QCOW2_EXT_BACKING_FORMAT),
		   POKE(F_EXT + 4, 4, 16),
		   POKES(F_EXT + 8, "0123456789abcdef") },
	.error = "backing format name too long",
};

FIXTURE_VARIANT_ADD(header, data_file_extension) {
	.pokes = { POKE(F_EXT, 4, QCOW2_EXT_DATA_FILE), POKE(F_EXT + 4, 4, 3),
		   POKES(F_EXT + 8, "raw") },
	.err = -EOPNOTSUPP,
	.error = "external data files are not supported",
};

FIXTURE_VARIANT_ADD(header, data_file_bit) {
	.pokes = { POKE(F_INCOMPAT, 8, QCOW2_INCOMPAT_DATA_FILE) },
	.err = -EOPNOTSUPP,
	.error = "external data files are not supported",
};

FIXTURE_VARIANT_ADD(header, unknown_incompatible_bit) {
	.pokes = { POKE(F_INCOMPAT, 8, BIT(5)) },
	.err = -EOPNOTSUPP,
	.error = "unknown incompatible feature bits set",
};

FIXTURE_VARIANT_ADD(header, size_over_2_to_the_62) {
	.pokes = { POKE(F_SIZE, 8, (1ULL << 62) + 1) },
	.error = "virtual size too large",
};

FIXTURE_VARIANT_ADD(header, size_near_2_to_the_64) {
	.pokes = { POKE(F_SIZE, 8, ~0ULL - 100) },
	.error = "virtual size too large",
};

FIXTURE_VARIANT_ADD(header, l1_over_32_mib) {
	.pokes = { POKE(F_L1_SIZE, 4, QCOW2_MAX_L1_BYTES / 8 + 1) },
	.error = "L1 table too large (QEMU's limit is 32 MiB)",
};

FIXTURE_VARIANT_ADD(header, l1_size_u32_max) {
	.pokes = { POKE(F_L1_SIZE, 4, 0xffffffff) },
	.error = "L1 table too large (QEMU's limit is 32 MiB)",
};

FIXTURE_VARIANT_ADD(header, l1_too_small) {
	.pokes = { POKE(F_L1_SIZE, 4, M_L1_SIZE - 1) },
	.error = "L1 table too small for the virtual size",
};

FIXTURE_VARIANT_ADD(header, l1_unaligned) {
	.pokes = { POKE(F_L1_OFFSET, 8, M_L1 + 8) },
	.error = "L1 table offset not cluster-aligned",
};

FIXTURE_VARIANT_ADD(header, l1_in_the_header) {
	.pokes = { POKE(F_L1_OFFSET, 8, 0) },
	.error = "L1 table outside the file device or in the header",
};

FIXTURE_VARIANT_ADD(header, l1_past_the_end) {
	.pokes = { POKE(F_L1_OFFSET, 8, M_FILE + M_CS) },
	.error = "L1 table outside the file device or in the header",
};

FIXTURE_VARIANT_ADD(header, l1_offset_wraps) {
	.pokes = { POKE(F_L1_OFFSET, 8, 0xfffffffffffffe00ULL) },
	.error = "L1 table outside the file device or in the header",
};

FIXTURE_VARIANT_ADD(header, no_refcount_table) {
	.pokes = { POKE(F_RT_CLUSTERS, 4, 0) },
	.error = "image has no refcount table",
};

FIXTURE_VARIANT_ADD(header, crypto_extension_without_encryption) {
	.pokes = { POKE(F_EXT, 4, QCOW2_EXT_CRYPTO), POKE(F_EXT + 4, 4, 16) },
	.error = "crypto header extension in an unencrypted image",
};

FIXTURE_VARIANT_ADD(header, reftable_over_8_mib) {
	.pokes = { POKE(F_RT_CLUSTERS, 4, QCOW2_MAX_REFTABLE_BYTES / M_CS + 1) },
	.error = "refcount table too large (QEMU's limit is 8 MiB)",
};

FIXTURE_VARIANT_ADD(header, reftable_clusters_u32_max) {
	.pokes = { POKE(F_RT_CLUSTERS, 4, 0xffffffff) },
	.error = "refcount table too large (QEMU's limit is 8 MiB)",
};

FIXTURE_VARIANT_ADD(header, reftable_unaligned) {
	.pokes = { POKE(F_RT_OFFSET, 8, M_RT + 1) },
	.error = "refcount table offset not cluster-aligned",
};

FIXTURE_VARIANT_ADD(header, reftable_in_the_header) {
	.pokes = { POKE(F_RT_OFFSET, 8, 0) },
	.error = "refcount table outside the file device or in the header",
};

FIXTURE_VARIANT_ADD(header, reftable_past_the_end) {
	.pokes = { POKE(F_RT_OFFSET, 8, M_FILE + M_CS) },
	.error = "refcount table outside the file device or in the header",
};

FIXTURE_VARIANT_ADD(header, too_many_snapshots) {
	.pokes = { POKE(F_NB_SNAPSHOTS, 4, QCOW2_MAX_SNAPSHOTS + 1),
		   POKE(F_SNAPSHOTS_OFFSET, 8, M_DATA) },
	.error = "too many snapshots (QEMU's limit is 65536)",
};

FIXTURE_VARIANT_ADD(header, snapshots_unaligned) {
	.pokes = { POKE(F_NB_SNAPSHOTS, 4, 1),
		   POKE(F_SNAPSHOTS_OFFSET, 8, M_DATA + 16) },
	.error = "snapshot table offset not cluster-aligned",
};

FIXTURE_VARIANT_ADD(header, snapshots_in_the_header) {
	.pokes = { POKE(F_NB_SNAPSHOTS, 4, 1) },
	.error = "snapshot table outside the file device or in the header",
};

FIXTURE_VARIANT_ADD(header, snapshots_past_the_end) {
	.pokes = { POKE(F_NB_SNAPSHOTS, 4, 1),
		   POKE(F_SNAPSHOTS_OFFSET, 8, M_FILE + M_CS) },
	.error = "snapshot table outside the file device or in the header",
};

TEST_F(header, refused_with_its_reason)
{
	u32 file_size = variant->file_size ? variant->file_size : M_FILE;
	u32 len = variant->len ? variant->len : M_CS;
	int want = variant->err ? variant->err : -EINVAL;
	struct qcow2_info qi;
	const char *err = NULL;
	u8 *exact;

	apply_pokes(self->b, variant->pokes, ARRAY_SIZE(variant->pokes));
	exact = malloc(len);	/* ASan: no read past what was given */
	ASSERT_NE(NULL, exact);
	memcpy(exact, self->b, len);
	EXPECT_EQ(want, qcow2_parse_header(exact, len, file_size, &qi, &err));
	ASSERT_NE(NULL, err);
	EXPECT_STREQ(variant->error, err);
	free(exact);
}

/* ---------------------------------------------------------------- */
/* qcow2_load_table()                                               */
/* ---------------------------------------------------------------- */

static void be_table(u8 *raw, const u64 *e, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		put_be(raw + 8 * i, 8, e[i]);
}

TEST(l1_entries_decode_to_offsets)
{
	const u64 e[] = { M_L2 | QCOW2_OFLAG_COPIED, 0, M_DATA, M_CS };
	struct qcow2_info qi;
	const char *err = NULL;
	u64 out[4];
	u8 raw[32];
	u32 bad;

	qi_for(_metadata, M_CB, false, M_FILE, &qi);
	be_table(raw, e, 4);
	ASSERT_EQ(0, qcow2_load_table(&qi, raw, 4, true, out, &bad, &err)) {
		TH_LOG("%s at %u", err, bad);
	}
	EXPECT_EQ(M_L2, out[0]);
	EXPECT_EQ(0, out[1]);
	EXPECT_EQ(M_DATA, out[2]);
	EXPECT_EQ(M_CS, out[3]);
	/* An L2 table cut short by the file's end: the rest reads zeros. */
	qi.file_size = M_FILE - 1;
	EXPECT_EQ(0, qcow2_load_table(&qi, raw, 4, true, out, &bad, &err));
	EXPECT_EQ(M_DATA, out[2]);
	/* An empty table is fine. */
	EXPECT_EQ(0, qcow2_load_table(&qi, raw, 0, true, out, &bad, &err));
}

TEST(refcount_table_entries_decode_to_offsets)
{
	const u64 e[] = { 3 * 4096, 0, 15 * 4096 };
	struct qcow2_info qi;
	const char *err = NULL;
	u64 out[3];
	u8 raw[24];
	u32 bad;

	qi_for(_metadata, 12, false, 16 * 4096, &qi);
	be_table(raw, e, 3);
	ASSERT_EQ(0, qcow2_load_table(&qi, raw, 3, false, out, &bad, &err)) {
		TH_LOG("%s at %u", err, bad);
	}
	EXPECT_EQ(3 * 4096, out[0]);
	EXPECT_EQ(0, out[1]);
	EXPECT_EQ(15 * 4096, out[2]);
}

FIXTURE(table) {
	struct qcow2_info qi;
};

FIXTURE_VARIANT(table) {
	u32 cluster_bits;
	bool l1;
	u64 entry;		/* the third of four entries */
	u64 file_size;		/* 0: 16 clusters */
	const char *error;
};

FIXTURE_SETUP(table)
{
	u64 fs = variant->file_size ? variant->file_size :
		 16ULL << variant->cluster_bits;

	qi_for(_metadata, variant->cluster_bits, false, fs, &self->qi);
}

FIXTURE_TEARDOWN(table)
{
}

FIXTURE_VARIANT_ADD(table, l1_reserved_bit_0) {
	.cluster_bits = 9, .l1 = true, .entry = 4 * 512 | 1,
	.error = "L1 entry has reserved bits set",
};

FIXTURE_VARIANT_ADD(table, l1_reserved_bit_8) {
	.cluster_bits = 9, .l1 = true, .entry = 4 * 512 | BIT(8),
	.error = "L1 entry has reserved bits set",
};

FIXTURE_VARIANT_ADD(table, l1_reserved_bit_56) {
	.cluster_bits = 9, .l1 = true, .entry = 4 * 512 | 1ULL << 56,
	.error = "L1 entry has reserved bits set",
};

FIXTURE_VARIANT_ADD(table, l1_reserved_bit_62) {
	.cluster_bits = 9, .l1 = true, .entry = 4 * 512 | 1ULL << 62,
	.error = "L1 entry has reserved bits set",
};

FIXTURE_VARIANT_ADD(table, l1_unaligned) {
	.cluster_bits = 12, .l1 = true, .entry = 4 * 4096 + 512,
	.error = "L2 table offset not cluster-aligned",
};

FIXTURE_VARIANT_ADD(table, l1_past_the_end) {
	.cluster_bits = 9, .l1 = true, .entry = 16 * 512,
	.error = "L2 table outside the file device or in the header",
};

FIXTURE_VARIANT_ADD(table, l1_at_the_end) {
	.cluster_bits = 12, .l1 = true, .entry = 15 * 4096,
	.file_size = 15 * 4096,
	.error = "L2 table outside the file device or in the header",
};

FIXTURE_VARIANT_ADD(table, l1_bit_55) {
	.cluster_bits = 9, .l1 = true, .entry = 1ULL << 55,
	.error = "L2 table outside the file device or in the header",
};

FIXTURE_VARIANT_ADD(table, refcount_reserved_bit_0) {
	.cluster_bits = 9, .entry = 4 * 512 | 1,
	.error = "refcount table entry has reserved bits set",
};

FIXTURE_VARIANT_ADD(table, refcount_reserved_bit_8) {
	.cluster_bits = 12, .entry = 4 * 4096 | BIT(8),
	.error = "refcount table entry has reserved bits set",
};

FIXTURE_VARIANT_ADD(table, refcount_unaligned) {
	.cluster_bits = 12, .entry = 4 * 4096 + 512,
	.error = "refcount block offset not cluster-aligned",
};

FIXTURE_VARIANT_ADD(table, refcount_at_the_end) {
	.cluster_bits = 12, .entry = 16 * 4096,
	.error = "refcount block outside the file device or in the header",
};

FIXTURE_VARIANT_ADD(table, refcount_bit_63) {
	/* all of bits 9-63 are the offset: no flag to strip */
	.cluster_bits = 9, .entry = 1ULL << 63 | 4 * 512,
	.error = "refcount block outside the file device or in the header",
};

TEST_F(table, refused_with_its_reason_and_index)
{
	const u64 cs = self->qi.cluster_size;
	const u64 e[] = { 2 * cs, 0, variant->entry, 3 * cs };
	const char *err = NULL;
	u64 out[4];
	u8 *raw = malloc(sizeof(e));	/* exact: ASan checks the bounds */
	u32 bad = 99;

	ASSERT_NE(NULL, raw);
	be_table(raw, e, 4);
	EXPECT_EQ(-EINVAL, qcow2_load_table(&self->qi, raw, 4, variant->l1,
					    out, &bad, &err));
	ASSERT_NE(NULL, err);
	EXPECT_STREQ(variant->error, err);
	EXPECT_EQ(2, bad);
	free(raw);
}

/* ---------------------------------------------------------------- */
/* qcow2_check_overlaps()                                           */
/* ---------------------------------------------------------------- */

FIXTURE(overlap) {
	struct qcow2_info qi;
	u64 l1[2 * M_L1_SIZE];
	u64 rt[M_CS / 8];
	struct qcow2_range scratch[2 * M_L1_SIZE + M_CS / 8 + 3];
};

FIXTURE_SETUP(overlap)
{
	const char *err = NULL;
	u8 b[M_FILE];

	build_model(b);
	ASSERT_EQ(0, qcow2_parse_header(b, M_CS, M_FILE, &self->qi, &err));
	memset(self->l1, 0, sizeof(self->l1));
	memset(self->rt, 0, sizeof(self->rt));
	self->l1[0] = M_L2;
	self->rt[0] = M_RB;
}

FIXTURE_TEARDOWN(overlap)
{
}

static int overlaps(struct __test_metadata *_metadata,
		    FIXTURE_DATA(overlap) *self, const char **err)
{
	u64 n = qcow2_overlap_ranges(&self->qi, self->l1, self->rt);

	EXPECT_GE(ARRAY_SIZE(self->scratch), n);
	return qcow2_check_overlaps(&self->qi, self->l1, self->rt,
				    self->scratch, n, err);
}

#define OVERLAP_ERROR \
	"image metadata overlaps (header, L1, L2 or refcount structures)"

TEST_F(overlap, model_image_is_clean)
{
	const char *err = NULL;

	EXPECT_EQ(5, qcow2_overlap_ranges(&self->qi, self->l1, self->rt));
	EXPECT_EQ(0, overlaps(_metadata, self, &err)) {
		TH_LOG("%s", err);
	}
}

TEST_F(overlap, ranges_count_only_allocated_entries)
{
	self->l1[5] = 7 * M_CS;
	self->l1[31] = 8 * M_CS;
	self->rt[63] = 9 * M_CS;
	EXPECT_EQ(8, qcow2_overlap_ranges(&self->qi, self->l1, self->rt));
	self->qi.l1_size = 0;
	self->qi.reftable_clusters = 0;
	EXPECT_EQ(3, qcow2_overlap_ranges(&self->qi, self->l1, self->rt));
}

TEST_F(overlap, scratch_too_small_is_refused)
{
	const char *err = NULL;

	EXPECT_EQ(-EINVAL, qcow2_check_overlaps(&self->qi, self->l1, self->rt,
						self->scratch, 4, &err));
	EXPECT_STREQ("overlap check scratch too small", err);
}

TEST_F(overlap, l2_table_on_the_l1_table)
{
	const char *err = NULL;

	self->l1[3] = M_L1;
	EXPECT_EQ(-EINVAL, overlaps(_metadata, self, &err));
	EXPECT_STREQ(OVERLAP_ERROR, err);
}

TEST_F(overlap, l2_table_on_the_refcount_table)
{
	const char *err = NULL;

	self->l1[31] = M_RT;
	EXPECT_EQ(-EINVAL, overlaps(_metadata, self, &err));
	EXPECT_STREQ(OVERLAP_ERROR, err);
}

TEST_F(overlap, l1_table_in_the_header)
{
	const char *err = NULL;

	self->qi.l1_offset = 256;	/* the header validation refuses it */
	EXPECT_EQ(-EINVAL, overlaps(_metadata, self, &err));
	EXPECT_STREQ(OVERLAP_ERROR, err);
}

TEST_F(overlap, two_l1_entries_share_an_l2_table)
{
	const char *err = NULL;

	self->l1[1] = M_L2;
	EXPECT_EQ(-EINVAL, overlaps(_metadata, self, &err));
	EXPECT_STREQ(OVERLAP_ERROR, err);
}

TEST_F(overlap, refcount_block_is_an_l2_table)
{
	const char *err = NULL;

	self->rt[1] = M_L2;
	EXPECT_EQ(-EINVAL, overlaps(_metadata, self, &err));
	EXPECT_STREQ(OVERLAP_ERROR, err);
}

TEST_F(overlap, two_refcount_entries_share_a_block)
{
	const char *err = NULL;

	self->rt[63] = M_RB;
	EXPECT_EQ(-EINVAL, overlaps(_metadata, self, &err));
	EXPECT_STREQ(OVERLAP_ERROR, err);
}

TEST_F(overlap, l1_table_runs_into_the_refcount_table)
{
	const char *err = NULL;

	self->qi.l1_size = M_L1_SIZE + 1;	/* 264 bytes at 512 */
	EXPECT_EQ(0, overlaps(_metadata, self, &err));
	self->qi.l1_offset = M_RT - 8;	/* (the validation wants aligned) */
	EXPECT_EQ(-EINVAL, overlaps(_metadata, self, &err));
	EXPECT_STREQ(OVERLAP_ERROR, err);
}

TEST_F(overlap, refcount_table_runs_over_its_block)
{
	const char *err = NULL;

	self->qi.reftable_clusters = 2;		/* 1024..2048 covers 1536 */
	EXPECT_EQ(-EINVAL, overlaps(_metadata, self, &err));
	EXPECT_STREQ(OVERLAP_ERROR, err);
}

TEST_F(overlap, l1_and_refcount_tables_coincide)
{
	const char *err = NULL;

	self->qi.reftable_offset = M_L1;
	EXPECT_EQ(-EINVAL, overlaps(_metadata, self, &err));
	EXPECT_STREQ(OVERLAP_ERROR, err);
}

/* Many tables in a scrambled order: the sort must find the one clash. */
TEST(overlap_check_sorts_many_ranges)
{
	enum { N = 1000 };
	struct qcow2_range *scratch;
	struct qcow2_info qi;
	const char *err = NULL;
	u64 *l1, *rt, n;
	unsigned int i, j;

	qi_for(_metadata, 9, false, 4096ULL * 512, &qi);
	qi.l1_size = N;
	qi.l1_offset = 1 * 512;		/* 16 clusters: 1-16 */
	qi.reftable_clusters = 8;
	qi.reftable_offset = 17 * 512;	/* 17-24, 512 entries */
	l1 = calloc(N, 8);
	rt = calloc(512, 8);
	scratch = calloc(N + 512 + 3, sizeof(*scratch));
	ASSERT_TRUE(l1 && rt && scratch);
	/* L2 tables at 25..1024 and refcount blocks at 1025..1536, spread */
	for (i = 0; i < N; i++)
		l1[i] = (25 + (i * 389) % N) * 512ULL;
	for (i = 0; i < 512; i++)
		rt[i] = (1025 + (i * 97) % 512) * 512ULL;
	n = qcow2_overlap_ranges(&qi, l1, rt);
	ASSERT_EQ(N + 512 + 3, n);
	EXPECT_EQ(0, qcow2_check_overlaps(&qi, l1, rt, scratch, n, &err)) {
		TH_LOG("%s", err);
	}
	/* Any one duplicate is found, wherever it is. */
	for (i = 0; i < N; i += 97) {
		u64 save;

		j = (i * 7 + 13) % 512;
		save = rt[j];
		rt[j] = l1[i];
		EXPECT_EQ(-EINVAL, qcow2_check_overlaps(&qi, l1, rt, scratch,
							n, &err));
		rt[j] = save;
	}
	free(scratch);
	free(rt);
	free(l1);
}

/* ---------------------------------------------------------------- */
/* qcow2_map() on L2 entries built in memory                        */
/* ---------------------------------------------------------------- */

#define CS4K		4096ULL
#define HA		(16 * CS4K)	/* a data cluster */
#define MB		(1024ULL * 1024)
#define DATA(off)	((off) | QCOW2_OFLAG_COPIED)
#define ZERO_PLAIN	QCOW2_OFLAG_ZERO
#define ZERO_ALLOC(off)	((off) | QCOW2_OFLAG_ZERO | QCOW2_OFLAG_COPIED)

static u64 comp(const struct qcow2_info *qi, u64 coff, u64 nsect)
{
	return QCOW2_OFLAG_COMPRESSED | (nsect - 1) << qi->csize_shift | coff;
}

#define MAP(qi, l2, off, len, ext) \
	qcow2_map((qi), (l2), ARRAY_SIZE(l2) / (qi)->l2_entry_words, \
		  (off), (len), (ext))

TEST(unallocated_is_backing_up_to_the_last_entry_given)
{
	const u64 l2[4] = { 0 };
	struct qcow2_info qi;
	struct qcow2_extent e;

	qi_for(_metadata, 12, false, MB, &qi);
	MAP(&qi, l2, 0, 100 * CS4K, &e);
	EXPECT_EQ(QCOW2_MAP_BACKING, e.type);
	EXPECT_EQ(4 * CS4K, e.len);
	MAP(&qi, l2, 5, 100 * CS4K, &e);
	EXPECT_EQ(4 * CS4K - 5, e.len);
	qcow2_map(&qi, l2, 1, 0, 100 * CS4K, &e);
	EXPECT_EQ(CS4K, e.len);
}

TEST(extent_never_longer_than_the_request)
{
	const u64 l2[4] = { DATA(HA), DATA(HA + CS4K), 0, ZERO_PLAIN };
	struct qcow2_info qi;
	struct qcow2_extent e;
	u64 off, len;

	qi_for(_metadata, 12, false, MB, &qi);
	for (off = 0; off < 4 * CS4K; off += 511) {
		for (len = 1; off + len <= 4 * CS4K; len = len * 3 + 1) {
			MAP(&qi, l2, off, len, &e);
			EXPECT_LT(0, e.len);
			EXPECT_GE(len, e.len);
		}
	}
	MAP(&qi, l2, 100, 1, &e);
	EXPECT_EQ(QCOW2_MAP_DATA, e.type);
	EXPECT_EQ(1, e.len);
	EXPECT_EQ(HA + 100, e.host_off);
}

TEST(contiguous_data_clusters_merge)
{
	const u64 l2[4] = { DATA(HA), DATA(HA + CS4K), DATA(HA + 2 * CS4K),
			    DATA(HA + 3 * CS4K) };
	struct qcow2_info qi;
	struct qcow2_extent e;

	qi_for(_metadata, 12, false, MB, &qi);
	MAP(&qi, l2, 100, 10 * CS4K, &e);
	EXPECT_EQ(QCOW2_MAP_DATA, e.type);
	EXPECT_EQ(HA + 100, e.host_off);
	EXPECT_EQ(4 * CS4K - 100, e.len);
	EXPECT_TRUE(e.copied);
	/* from the second cluster: the entries start at its own */
	qcow2_map(&qi, l2 + 1, 3, CS4K + 7, 10 * CS4K, &e);
	EXPECT_EQ(HA + CS4K + 7, e.host_off);
	EXPECT_EQ(3 * CS4K - 7, e.len);
}

/* A shared cluster (no copied flag) must not be written in place. */
TEST(data_splits_where_the_copied_flag_changes)
{
	const u64 l2[4] = { DATA(HA), DATA(HA + CS4K), HA + 2 * CS4K,
			    HA + 3 * CS4K };
	struct qcow2_info qi;
	struct qcow2_extent e;

	qi_for(_metadata, 12, false, MB, &qi);
	MAP(&qi, l2, 100, 10 * CS4K, &e);
	EXPECT_EQ(QCOW2_MAP_DATA, e.type);
	EXPECT_EQ(2 * CS4K - 100, e.len);
	EXPECT_TRUE(e.copied);
	qcow2_map(&qi, l2 + 2, 2, 2 * CS4K, 10 * CS4K, &e);
	EXPECT_EQ(QCOW2_MAP_DATA, e.type);
	EXPECT_EQ(HA + 2 * CS4K, e.host_off);
	EXPECT_EQ(2 * CS4K, e.len);
	EXPECT_FALSE(e.copied);
}

TEST(data_splits_where_the_host_offsets_jump)
{
	const u64 l2[4] = { DATA(HA), DATA(HA + CS4K), DATA(HA + 3 * CS4K),
			    DATA(HA + 2 * CS4K) };
	struct qcow2_info qi;
	struct qcow2_extent e;

	qi_for(_metadata, 12, false, MB, &qi);
	MAP(&qi, l2, 0, 4 * CS4K, &e);
	EXPECT_EQ(QCOW2_MAP_DATA, e.type);
	EXPECT_EQ(2 * CS4K, e.len);
	qcow2_map(&qi, l2 + 2, 2, 2 * CS4K, 2 * CS4K, &e);
	EXPECT_EQ(HA + 3 * CS4K, e.host_off);
	EXPECT_EQ(CS4K, e.len);		/* the next one is behind it */
}

TEST(extents_split_where_the_kind_changes)
{
	const u64 l2[8] = { DATA(HA), ZERO_PLAIN, ZERO_ALLOC(HA + CS4K), 0, 0,
			    DATA(HA + CS4K), DATA(HA + 2 * CS4K), ZERO_PLAIN };
	const struct { u64 off, len; enum qcow2_ext_type type; } want[] = {
		{ 0, 1, QCOW2_MAP_DATA },
		{ 1, 2, QCOW2_MAP_ZERO },	/* plain and preallocated */
		{ 3, 2, QCOW2_MAP_BACKING },
		{ 5, 2, QCOW2_MAP_DATA },
		{ 7, 1, QCOW2_MAP_ZERO },
	};
	struct qcow2_info qi;
	struct qcow2_extent e;
	unsigned int i;

	qi_for(_metadata, 12, false, MB, &qi);
	for (i = 0; i < ARRAY_SIZE(want); i++) {
		u64 off = want[i].off * CS4K;

		qcow2_map(&qi, l2 + want[i].off, 8 - want[i].off, off,
			  8 * CS4K - off, &e);
		EXPECT_EQ(want[i].type, e.type) {
			TH_LOG("extent %u", i);
		}
		EXPECT_EQ(want[i].len * CS4K, e.len) {
			TH_LOG("extent %u", i);
		}
	}
}

TEST(compressed_cluster_is_its_own_extent)
{
	struct qcow2_info qi;
	struct qcow2_extent e;
	u64 l2[3];

	qi_for(_metadata, 12, false, MB, &qi);
	EXPECT_EQ(58, qi.csize_shift);
	EXPECT_EQ(15, qi.csize_mask);
	l2[0] = comp(&qi, HA + 100, 3);
	l2[1] = comp(&qi, HA + 100, 3);	/* the same bytes again */
	l2[2] = comp(&qi, HA + 1536, 16);
	MAP(&qi, l2, 10, 3 * CS4K, &e);
	EXPECT_EQ(QCOW2_MAP_COMPRESSED, e.type);
	EXPECT_EQ(HA + 100, e.host_off);
	EXPECT_EQ(3 * 512 - 100, e.csize);	/* sectors less the start */
	EXPECT_EQ(CS4K - 10, e.len);
	qcow2_map(&qi, l2 + 2, 1, 2 * CS4K + 4000, 3 * CS4K, &e);
	EXPECT_EQ(QCOW2_MAP_COMPRESSED, e.type);
	EXPECT_EQ(HA + 1536, e.host_off);
	EXPECT_EQ(16 * 512, e.csize);
	EXPECT_EQ(96, e.len);
	MAP(&qi, l2, 0, 7, &e);
	EXPECT_EQ(7, e.len);
}

/*
 * qcow2_map_plain(), map()'s inline case, must say what qcow2_map() says
 * of a bio within one cluster whenever it answers, and answer for every
 * plain data cluster wholly inside the file.  Entries: each flag and
 * reserved bit alone and together, offsets aligned or not, inside, at and
 * past the file's end, and random words; 4k and 64k clusters, extended L2.
 */
static u64 rng_next(u64 *s);

TEST(map_plain_agrees_with_qcow2_map)
{
	static const u64 flags[] = {
		0, QCOW2_OFLAG_COPIED, QCOW2_OFLAG_ZERO, QCOW2_OFLAG_COMPRESSED,
		BIT_ULL(1), BIT_ULL(8), BIT_ULL(56), BIT_ULL(61),
		QCOW2_OFLAG_COPIED | QCOW2_OFLAG_ZERO,
	};
	static const struct { u32 cb; bool extl2; } geo[] = {
		{ 12, false }, { 16, false }, { 16, true },
	};
	u64 seed = 0x243f6a8885a308d3ULL;
	unsigned int g, f, k, answered = 0;

	for (g = 0; g < ARRAY_SIZE(geo); g++) {
		u64 cs = 1ULL << geo[g].cb, fsz = 64 * cs + cs / 2;
		struct qcow2_info qi;

		qi_for(_metadata, geo[g].cb, geo[g].extl2, fsz, &qi);
		for (k = 0; k < 4000; k++) {
			u64 r = rng_next(&seed), host, e, l2[2], off, len;
			struct qcow2_extent ext;
			bool copied = false, plain;

			host = k & 1 ? (r % 70) * cs : r & QCOW2_OFFSET_MASK;
			if (k % 7 == 0)
				host += 512;
			f = (r >> 58) % ARRAY_SIZE(flags);
			e = k % 13 == 0 ? rng_next(&seed) : host | flags[f];
			l2[0] = e;
			l2[1] = 0;
			off = (r >> 20) % (1024 * cs);
			len = 1 + (rng_next(&seed) % (cs - (off & (cs - 1))));
			host = qcow2_map_plain(&qi, e, off, &copied);
			qcow2_map(&qi, l2, 1, off, len, &ext);
			plain = !geo[g].extl2 && ext.type == QCOW2_MAP_DATA &&
				!(e & (QCOW2_OFLAG_ZERO | QCOW2_OFLAG_COMPRESSED)) &&
				(e & QCOW2_OFFSET_MASK) + cs <= fsz;
			EXPECT_EQ(plain, host != 0) {
				TH_LOG("entry %#llx off %llu cb %u", e, off,
				       geo[g].cb);
			}
			if (!host)
				continue;
			answered++;
			EXPECT_EQ(QCOW2_MAP_DATA, ext.type);
			EXPECT_EQ(ext.host_off, host);
			EXPECT_EQ(ext.copied, copied);
			EXPECT_EQ(len, ext.len);
		}
	}
	/* Not a vacuous pass: many entries took the inline case. */
	EXPECT_LT(500, answered);
}

TEST(compressed_size_is_clipped_at_the_file_end)
{
	struct qcow2_info qi;
	struct qcow2_extent e;
	u64 l2[1];

	qi_for(_metadata, 12, false, HA + 1000, &qi);
	l2[0] = comp(&qi, HA + 100, 3);
	MAP(&qi, l2, 0, CS4K, &e);
	EXPECT_EQ(QCOW2_MAP_COMPRESSED, e.type);
	EXPECT_EQ(900, e.csize);
	l2[0] = comp(&qi, HA + 999, 16);
	MAP(&qi, l2, 0, CS4K, &e);
	EXPECT_EQ(QCOW2_MAP_COMPRESSED, e.type);
	EXPECT_EQ(1, e.csize);
}

TEST(compressed_layout_at_512_byte_clusters)
{
	struct qcow2_info qi;
	struct qcow2_extent e;
	u64 l2[1];

	qi_for(_metadata, 9, false, MB, &qi);
	EXPECT_EQ(61, qi.csize_shift);
	EXPECT_EQ(1, qi.csize_mask);
	l2[0] = comp(&qi, 4096 + 300, 2);
	MAP(&qi, l2, 0, 512, &e);
	EXPECT_EQ(QCOW2_MAP_COMPRESSED, e.type);
	EXPECT_EQ(4096 + 300, e.host_off);
	EXPECT_EQ(1024 - 300, e.csize);
}

TEST(data_cluster_cut_by_the_file_end_reads_zeros_past_it)
{
	const u64 l2[2] = { DATA(HA), DATA(HA + CS4K) };
	struct qcow2_info qi;
	struct qcow2_extent e;

	qi_for(_metadata, 12, false, HA + 1000, &qi);
	MAP(&qi, l2, 0, 2 * CS4K, &e);
	EXPECT_EQ(QCOW2_MAP_DATA, e.type);
	EXPECT_EQ(HA, e.host_off);
	EXPECT_EQ(1000, e.len);
	MAP(&qi, l2, 1000, 2 * CS4K, &e);
	EXPECT_EQ(QCOW2_MAP_ZERO, e.type);
	EXPECT_EQ(CS4K - 1000, e.len);	/* the next entry is invalid */
	qcow2_map(&qi, l2 + 1, 1, CS4K, CS4K, &e);
	EXPECT_EQ(QCOW2_MAP_INVALID, e.type);
}

TEST(invalid_entry_ends_the_extent_before_it)
{
	const u64 l2[3] = { DATA(HA), DATA(HA + CS4K), DATA(HA + 2 * CS4K + 2) };
	struct qcow2_info qi;
	struct qcow2_extent e;

	qi_for(_metadata, 12, false, MB, &qi);
	MAP(&qi, l2, 0, 3 * CS4K, &e);
	EXPECT_EQ(QCOW2_MAP_DATA, e.type);
	EXPECT_EQ(2 * CS4K, e.len);
	qcow2_map(&qi, l2 + 2, 1, 2 * CS4K, CS4K, &e);
	EXPECT_EQ(QCOW2_MAP_INVALID, e.type);
	EXPECT_STREQ("L2 entry has reserved bits set", e.error);
}

/* The standard bitmap: allocation bits 0-31, zero bits 32-63. */
#define SC_ALLOC(i)	(1ULL << (i))
#define SC_ZERO(i)	(1ULL << (32 + (i)))
#define SC_ALL		0xffffffffULL
#define CS64K		65536ULL
#define SC2K		2048ULL

TEST(extended_l2_maps_subclusters)
{
	const u64 l2[4] = { DATA(MB), SC_ALLOC(0) | SC_ALLOC(1) | SC_ZERO(2) |
						 SC_ALLOC(5),
			    0, 0 };
	struct qcow2_info qi;
	struct qcow2_extent e;

	qi_for(_metadata, 16, true, 16 * MB, &qi);
	MAP(&qi, l2, 100, 2 * CS64K, &e);
	EXPECT_EQ(QCOW2_MAP_DATA, e.type);
	EXPECT_EQ(MB + 100, e.host_off);
	EXPECT_EQ(2 * SC2K - 100, e.len);
	MAP(&qi, l2, 2 * SC2K, 2 * CS64K, &e);
	EXPECT_EQ(QCOW2_MAP_ZERO, e.type);
	EXPECT_EQ(SC2K, e.len);
	MAP(&qi, l2, 3 * SC2K, 2 * CS64K, &e);
	EXPECT_EQ(QCOW2_MAP_BACKING, e.type);
	EXPECT_EQ(2 * SC2K, e.len);
	MAP(&qi, l2, 5 * SC2K + 1, 2 * CS64K, &e);
	EXPECT_EQ(QCOW2_MAP_DATA, e.type);
	EXPECT_EQ(MB + 5 * SC2K + 1, e.host_off);
	EXPECT_EQ(SC2K - 1, e.len);
	/* subclusters 6-31 and the unallocated next cluster: backing */
	MAP(&qi, l2, 6 * SC2K, 2 * CS64K, &e);
	EXPECT_EQ(QCOW2_MAP_BACKING, e.type);
	EXPECT_EQ(2 * CS64K - 6 * SC2K, e.len);
}

TEST(one_bad_subcluster_spoils_its_cluster)
{
	const u64 l2[2] = { DATA(MB), SC_ALLOC(0) | SC_ALLOC(3) | SC_ZERO(3) };
	struct qcow2_info qi;
	struct qcow2_extent e;

	qi_for(_metadata, 16, true, 16 * MB, &qi);
	/* QEMU refuses the whole cluster, not just subcluster 3. */
	MAP(&qi, l2, 0, CS64K, &e);
	EXPECT_EQ(QCOW2_MAP_INVALID, e.type);
	EXPECT_STREQ("subcluster both allocated and zero", e.error);
}

TEST(zero_cluster_in_a_v2_image_is_invalid)
{
	const u64 l2[1] = { QCOW2_OFLAG_ZERO };
	struct qcow2_info qi;
	struct qcow2_extent e;

	qi_for(_metadata, 12, false, MB, &qi);
	MAP(&qi, l2, 0, 4096, &e);
	EXPECT_EQ(QCOW2_MAP_ZERO, e.type);
	qi.version = 2;
	MAP(&qi, l2, 0, 4096, &e);
	EXPECT_EQ(QCOW2_MAP_INVALID, e.type);
	EXPECT_STREQ("zero cluster in a version 2 image", e.error);
}

TEST(extended_l2_extents_merge_across_clusters)
{
	const u64 l2[6] = { DATA(MB), SC_ALL, DATA(MB + CS64K), SC_ALLOC(0),
			    DATA(MB + 3 * CS64K), SC_ALL };
	struct qcow2_info qi;
	struct qcow2_extent e;

	qi_for(_metadata, 16, true, 16 * MB, &qi);
	MAP(&qi, l2, 0, 4 * CS64K, &e);
	EXPECT_EQ(QCOW2_MAP_DATA, e.type);
	EXPECT_EQ(MB, e.host_off);
	EXPECT_EQ(CS64K + SC2K, e.len);
	/* subcluster 0 of the third cluster is not where sc 31 ends */
	qcow2_map(&qi, l2 + 2, 2, CS64K + 31 * SC2K, 2 * CS64K, &e);
	EXPECT_EQ(QCOW2_MAP_BACKING, e.type);
	EXPECT_EQ(SC2K, e.len);
}

TEST(extended_l2_zero_subclusters_merge_across_clusters)
{
	const u64 l2[4] = { DATA(MB), SC_ALLOC(0) | SC_ZERO(31), 0,
			    SC_ALL << 32 };
	struct qcow2_info qi;
	struct qcow2_extent e;

	qi_for(_metadata, 16, true, 16 * MB, &qi);
	MAP(&qi, l2, 31 * SC2K, 4 * CS64K, &e);
	EXPECT_EQ(QCOW2_MAP_ZERO, e.type);
	EXPECT_EQ(SC2K + CS64K, e.len);
	/* allocated cluster, no allocation bits: backing */
	qcow2_map(&qi, l2, 1, SC2K, CS64K, &e);
	EXPECT_EQ(QCOW2_MAP_BACKING, e.type);
	EXPECT_EQ(30 * SC2K, e.len);
}

TEST(extended_l2_compressed_cluster)
{
	struct qcow2_info qi;
	struct qcow2_extent e;
	u64 l2[2];

	qi_for(_metadata, 16, true, 16 * MB, &qi);
	l2[0] = comp(&qi, MB + 512, 4);
	l2[1] = 0;
	MAP(&qi, l2, 3 * SC2K, CS64K, &e);
	EXPECT_EQ(QCOW2_MAP_COMPRESSED, e.type);
	EXPECT_EQ(MB + 512, e.host_off);
	EXPECT_EQ(4 * 512, e.csize);
	EXPECT_EQ(CS64K - 3 * SC2K, e.len);
}

struct bad_entry {
	u32 cluster_bits;
	bool extl2;
	u64 entry, bitmap;
	u64 off;		/* guest offset in the cluster */
	const char *error;
};

#define CMP12(coff, nsect)	(QCOW2_OFLAG_COMPRESSED | \
				 (u64)((nsect) - 1) << 58 | (coff))
#define CMP16(coff, nsect)	(QCOW2_OFLAG_COMPRESSED | \
				 (u64)((nsect) - 1) << 54 | (coff))

static const struct bad_entry bad_entries[] = {
	{ 12, false, CMP12(HA, 1) | QCOW2_OFLAG_COPIED, 0, 0,
	  "compressed L2 entry has the copied flag" },
	{ 16, true, CMP16(MB, 1), SC_ZERO(3), 0,
	  "compressed L2 entry has a subcluster bitmap" },
	{ 12, false, CMP12(100, 1), 0, 0,
	  "compressed cluster outside the file device" },
	{ 12, false, CMP12(CS4K - 1, 1), 0, 0,
	  "compressed cluster outside the file device" },
	{ 12, false, CMP12(MB, 1), 0, 0,
	  "compressed cluster outside the file device" },
	{ 12, false, CMP12((1ULL << 58) - 1, 1), 0, 0,
	  "compressed cluster outside the file device" },
	{ 12, false, DATA(HA) | BIT(1), 0, 0,
	  "L2 entry has reserved bits set" },
	{ 12, false, DATA(HA) | BIT(8), 0, 0,
	  "L2 entry has reserved bits set" },
	{ 12, false, DATA(HA) | 1ULL << 56, 0, 0,
	  "L2 entry has reserved bits set" },
	{ 12, false, 1ULL << 61, 0, 0,
	  "L2 entry has reserved bits set" },
	{ 12, false, DATA(HA + 512), 0, 0,
	  "data cluster offset not cluster-aligned" },
	{ 12, false, ZERO_ALLOC(HA + 512), 0, 0,
	  "data cluster offset not cluster-aligned" },
	{ 12, false, DATA(MB), 0, 0,
	  "data cluster outside the file device" },
	{ 12, false, DATA(1ULL << 55), 0, 0,
	  "data cluster outside the file device" },
	{ 12, false, ZERO_ALLOC(MB), 0, 0,
	  "data cluster outside the file device" },
	{ 16, true, DATA(MB), SC_ALLOC(7) | SC_ZERO(7), 7 * SC2K,
	  "subcluster both allocated and zero" },
	{ 16, true, 0, SC_ALLOC(0), 0,
	  "unallocated cluster has allocated subclusters" },
	{ 16, true, 0, SC_ALLOC(31), 5 * SC2K,
	  "unallocated cluster has allocated subclusters" },
	{ 16, true, DATA(16 * MB), SC_ALLOC(0), 0,
	  "data cluster outside the file device" },
};

TEST(bad_l2_entries_each_get_their_reason)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(bad_entries); i++) {
		const struct bad_entry *c = &bad_entries[i];
		struct qcow2_info qi;
		struct qcow2_extent e;
		u64 l2[2] = { c->entry, c->bitmap };

		qi_for(_metadata, c->cluster_bits, c->extl2,
		       c->extl2 ? 16 * MB : MB, &qi);
		memset(&e, 0, sizeof(e));
		qcow2_map(&qi, l2, 1, c->off, 1, &e);
		EXPECT_EQ(QCOW2_MAP_INVALID, e.type) {
			TH_LOG("case %u accepted as %d", i, e.type);
		}
		ASSERT_NE(NULL, e.error) {
			TH_LOG("case %u", i);
		}
		EXPECT_STREQ(c->error, e.error);
	}
}

TEST(zero_flag_is_ignored_with_extended_l2)
{
	const u64 l2[2] = { DATA(MB) | QCOW2_OFLAG_ZERO, SC_ALLOC(0) };
	struct qcow2_info qi;
	struct qcow2_extent e;

	qi_for(_metadata, 16, true, 16 * MB, &qi);
	MAP(&qi, l2, 0, CS64K, &e);
	EXPECT_EQ(QCOW2_MAP_DATA, e.type);
	EXPECT_EQ(SC2K, e.len);
}

/* ---------------------------------------------------------------- */
/* A user-space qcow2 reader on qcow2_map(), and real images         */
/* ---------------------------------------------------------------- */

static int slurp(const char *path, u8 **buf, u64 *size)
{
	struct stat st;
	ssize_t got = 0, r;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st)) {
		close(fd);
		return -errno;
	}
	*size = st.st_size;
	*buf = malloc(st.st_size ? st.st_size : 1);
	while (*buf && got < st.st_size) {
		r = read(fd, *buf + got, st.st_size - got);
		if (r <= 0)
			break;
		got += r;
	}
	close(fd);
	return *buf && got == st.st_size ? 0 : -EIO;
}

/* QEMU's qcow2_zlib_decompress(): raw deflate, the output must fill. */
static bool inflate_zlib(const u8 *src, u64 slen, u8 *dst, u64 dlen)
{
	z_stream s = { 0 };
	int r;

	if (inflateInit2(&s, -12) != Z_OK)
		return false;
	s.next_in = (u8 *)src;
	s.avail_in = slen;
	s.next_out = dst;
	s.avail_out = dlen;
	r = inflate(&s, Z_FINISH);
	inflateEnd(&s);
	return (r == Z_STREAM_END || r == Z_BUF_ERROR) && s.avail_out == 0;
}

/* QEMU's qcow2_zstd_decompress(): stream until the output is full. */
static bool inflate_zstd(const u8 *src, u64 slen, u8 *dst, u64 dlen)
{
	ZSTD_DCtx *d = ZSTD_createDCtx();
	ZSTD_inBuffer in = { src, slen, 0 };
	ZSTD_outBuffer out = { dst, dlen, 0 };
	bool ok = d;

	while (ok && out.pos < out.size) {
		size_t in_pos = in.pos, out_pos = out.pos;
		size_t r = ZSTD_decompressStream(d, &out, &in);

		ok = !ZSTD_isError(r) && (in.pos > in_pos || out.pos > out_pos);
	}
	ZSTD_freeDCtx(d);
	return ok;
}

struct qimg {
	u8 *file;
	u64 file_size;
	struct qcow2_info qi;
	u64 *l1, *reftable;
	u64 *l2;		/* the L2 table of L1 entry l2_index */
	u64 l2_index;
	u8 *cbuf;		/* one decompressed cluster */
	struct qimg *backing;
	u64 extents[QCOW2_MAP_INVALID + 1];	/* by type */
	u64 zero_alloc;		/* L2 entries: zero flag and an offset */
};

/*
 * A copy of the file's [off, off + len), zeros past its end: a table may
 * run past the end of the file (a new image's L1 table does).
 */
static u8 *qimg_bytes(const struct qimg *im, u64 off, u64 len)
{
	u8 *p = calloc(1, len ? len : 1);

	if (p && off < im->file_size)
		memcpy(p, im->file + off, im->file_size - off < len ?
					  im->file_size - off : len);
	return p;
}

static void qimg_open(struct __test_metadata *_metadata, struct qimg *im,
		      const char *path)
{
	struct qcow2_info *qi = &im->qi;
	struct qcow2_range *ranges;
	const char *err = NULL;
	u64 hdr, n, rt;
	u32 bits, bad = 0;
	u8 *raw;
	int r;

	memset(im, 0, sizeof(*im));
	im->l2_index = U64_MAX;
	r = slurp(path, &im->file, &im->file_size);
	ASSERT_EQ(0, r) {
		TH_LOG("%s: %s", path, strerror(-r));
	}
	ASSERT_EQ(0, qcow2_probe(im->file, im->file_size < 512 ?
				 im->file_size : 512, &bits, &err)) {
		TH_LOG("%s: %s", path, err);
	}
	hdr = 1ULL << bits;
	if (hdr > im->file_size)
		hdr = im->file_size;
	ASSERT_EQ(0, qcow2_parse_header(im->file, hdr, im->file_size, qi,
					&err)) {
		TH_LOG("%s: %s", path, err);
	}

	/* The validation put the tables' starts inside the file. */
	rt = qcow2_reftable_bytes(qi) / 8;
	im->l1 = calloc(qi->l1_size + 1, 8);
	im->reftable = calloc(rt + 1, 8);
	im->l2 = malloc(qcow2_l2_bytes(qi));
	im->cbuf = malloc(qcow2_cluster_buffer(qi));
	ASSERT_TRUE(im->l1 && im->reftable && im->l2 && im->cbuf);
	raw = qimg_bytes(im, qi->l1_offset, qcow2_l1_bytes(qi));
	ASSERT_NE(NULL, raw);
	EXPECT_EQ(0, qcow2_load_table(qi, raw, qi->l1_size, true, im->l1,
				      &bad, &err)) {
		TH_LOG("%s: %s at L1[%u]", path, err, bad);
	}
	free(raw);
	raw = qimg_bytes(im, qi->reftable_offset, qcow2_reftable_bytes(qi));
	ASSERT_NE(NULL, raw);
	EXPECT_EQ(0, qcow2_load_table(qi, raw, rt, false, im->reftable, &bad,
				      &err)) {
		TH_LOG("%s: %s at reftable[%u]", path, err, bad);
	}
	free(raw);
	n = qcow2_overlap_ranges(qi, im->l1, im->reftable);
	ranges = calloc(n, sizeof(*ranges));
	ASSERT_NE(NULL, ranges);
	EXPECT_EQ(0, qcow2_check_overlaps(qi, im->l1, im->reftable, ranges,
					  n, &err)) {
		TH_LOG("%s: %s", path, err);
	}
	free(ranges);

	if (qi->backing_file_offset) {
		char name[QCOW2_MAX_BACKING_NAME + 1], bpath[PATH_MAX];
		const char *slash = strrchr(path, '/');

		memcpy(name, im->file + qi->backing_file_offset,
		       qi->backing_file_size);
		name[qi->backing_file_size] = '\0';
		if (name[0] == '/' || !slash)
			snprintf(bpath, sizeof(bpath), "%s", name);
		else
			snprintf(bpath, sizeof(bpath), "%.*s/%s",
				 (int)(slash - path), path, name);
		im->backing = malloc(sizeof(*im->backing));
		ASSERT_NE(NULL, im->backing);
		qimg_open(_metadata, im->backing, bpath);
	}
}

static void qimg_close(struct qimg *im)
{
	if (im->backing) {
		qimg_close(im->backing);
		free(im->backing);
	}
	free(im->cbuf);
	free(im->l2);
	free(im->reftable);
	free(im->l1);
	free(im->file);
}

/*
 * The L2 entries from the one of @off's cluster to the end of its table,
 * read and byte-swapped as the kernel target's L2 cache does; an L1 entry
 * of 0 reads as a table of zeros.
 */
static const u64 *qimg_l2(struct qimg *im, u64 off, u32 *n)
{
	const struct qcow2_info *qi = &im->qi;
	u32 w = qi->l2_entry_words;
	u64 entries = qcow2_l2_bytes(qi) / 8 / w;
	u64 l1i = qcow2_l1_index(qi, off), i;

	if (l1i != im->l2_index) {
		u8 *raw = NULL;

		im->l2_index = l1i;
		if (im->l1[l1i])
			raw = qimg_bytes(im, im->l1[l1i], qcow2_l2_bytes(qi));
		for (i = 0; i < entries * w; i++)
			im->l2[i] = raw ? get_be64(raw + 8 * i) : 0;
		free(raw);
		for (i = 0; i < entries; i++) {
			u64 e = im->l2[i * w];

			if (!(e & QCOW2_OFLAG_COMPRESSED) &&
			    (e & QCOW2_OFLAG_ZERO) && (e & QCOW2_OFFSET_MASK))
				im->zero_alloc++;
		}
	}
	*n = entries - qcow2_l2_index(qi, off);
	return im->l2 + qcow2_l2_index(qi, off) * w;
}

/*
 * Read guest [off, off + len) into @out, mapping requests of at most
 * @step bytes, and check every extent against qcow2_map()'s contract.
 */
static void qimg_read(struct __test_metadata *_metadata, struct qimg *im,
		      u64 off, u64 len, u64 step, u8 *out)
{
	const struct qcow2_info *qi = &im->qi;
	const u64 cs = qi->cluster_size;

	while (len) {
		u64 req = len < step ? len : step;
		u64 in_cluster = off & (cs - 1);
		struct qcow2_extent e;
		const u64 *l2;
		u32 n;
		bool ok;

		l2 = qimg_l2(im, off, &n);
		qcow2_map(qi, l2, n, off, req, &e);
		ASSERT_NE(QCOW2_MAP_INVALID, e.type) {
			TH_LOG("at %llu: %s", (unsigned long long)off, e.error);
		}
		ASSERT_LT(0, e.len);
		ASSERT_GE(req, e.len);
		/* within the clusters whose entries it was given */
		ASSERT_GE((u64)n * cs - in_cluster, e.len);
		im->extents[e.type]++;

		switch (e.type) {
		case QCOW2_MAP_DATA:
			ASSERT_LE(cs, e.host_off);
			ASSERT_GE(qi->file_size, e.host_off + e.len);
			memcpy(out, im->file + e.host_off, e.len);
			break;
		case QCOW2_MAP_COMPRESSED:
			ASSERT_LE(cs, e.host_off);
			ASSERT_GE(qi->file_size, e.host_off + e.csize);
			ASSERT_GE(cs - in_cluster, e.len);
			if (qi->compression_type == QCOW2_COMPRESSION_ZSTD)
				ok = inflate_zstd(im->file + e.host_off,
						  e.csize, im->cbuf, cs);
			else
				ok = inflate_zlib(im->file + e.host_off,
						  e.csize, im->cbuf, cs);
			ASSERT_TRUE(ok) {
				TH_LOG("cluster at %llu does not inflate",
				       (unsigned long long)off);
			}
			memcpy(out, im->cbuf + in_cluster, e.len);
			break;
		case QCOW2_MAP_ZERO:
			memset(out, 0, e.len);
			break;
		case QCOW2_MAP_BACKING:
			if (im->backing && off < im->backing->qi.size) {
				u64 b = im->backing->qi.size - off;

				b = b < e.len ? b : e.len;
				qimg_read(_metadata, im->backing, off, b, step,
					  out);
				memset(out + b, 0, e.len - b);
			} else {
				memset(out, 0, e.len);
			}
			break;
		default:
			ASSERT_TRUE(false);
		}
		out += e.len;
		off += e.len;
		len -= e.len;
	}
}

static bool have_qemu_img(void)
{
	return !system("qemu-img --version >/dev/null 2>&1 && "
		       "qemu-io --version >/dev/null 2>&1");
}

/*
 * The source disk for `qemu-img convert`: 2 MiB of 4 KiB blocks of zeros,
 * repeated bytes, text, pseudo-random bytes (incompressible) and halves.
 */
static int write_source(const char *path)
{
	u32 x = 12345, i, j;
	u8 *b = malloc(2 * MB);
	int fd, r = -1;

	if (!b)
		return -1;
	for (i = 0; i < 512; i++) {
		u8 *p = b + i * 4096;

		switch (i % 8) {
		case 0:
		case 1:
			memset(p, 0, 4096);
			break;
		case 2:
			memset(p, i & 0xff, 4096);
			break;
		case 3:
		case 4:
			for (j = 0; j < 4096; j++)
				p[j] = "block of text, qcow2 test\n"[j % 26] + i;
			break;
		default:	/* 5, 6 and the second half of 7 */
			if (i % 8 == 7)
				memset(p, 0, 2048);
			for (j = (i % 8 == 7) * 2048; j < 4096; j++) {
				x = x * 1103515245 + 12345;
				p[j] = x >> 16;
			}
		}
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd >= 0 && write(fd, b, 2 * MB) == 2 * MB)
		r = 0;
	if (fd >= 0)
		close(fd);
	free(b);
	return r;
}

FIXTURE(image) {
	char dir[64];
	char path[128];
};

/* What an image made by @script in the fixture's directory must show. */
FIXTURE_VARIANT(image) {
	const char *script;	/* sh -e; makes img.qcow2 from src.raw */
	u32 cluster_bits;
	u32 version;
	u32 refcount_order;
	bool extended_l2;
	u8 compression;
	bool snapshots;
	bool backing;
	bool dirty;
	bool zero_alloc;	/* some preallocated zero cluster */
	bool tables_past_end;	/* the L1 table runs past the file's end */
	unsigned int types;	/* BIT(qcow2_ext_type) that must appear */
};

#define T(x)	BIT(QCOW2_MAP_##x)

FIXTURE_SETUP(image)
{
	char cmd[4096];
	int r;

	if (!have_qemu_img())
		SKIP(return, "qemu-img or qemu-io not installed (qemu-utils)");
	snprintf(self->dir, sizeof(self->dir), "/tmp/qcow2-unit.XXXXXX");
	ASSERT_NE(NULL, mkdtemp(self->dir));
	snprintf(self->path, sizeof(self->path), "%s/src.raw", self->dir);
	ASSERT_EQ(0, write_source(self->path));
	snprintf(self->path, sizeof(self->path), "%s/img.qcow2", self->dir);
	snprintf(cmd, sizeof(cmd),
		 "cd %s && { set -e; %s\n} >mk.log 2>&1 || { cat mk.log; exit 1; }",
		 self->dir, variant->script);
	r = system(cmd);
	ASSERT_EQ(0, r) {
		TH_LOG("making the image failed: %s", variant->script);
	}
}

FIXTURE_TEARDOWN(image)
{
	char cmd[128];

	if (self->dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf %s", self->dir);
		if (system(cmd))
			TH_LOG("could not remove %s", self->dir);
	}
}

#define QIO	"qemu-io -f qcow2 "
#define MKIMG	"qemu-img create -q -f qcow2 "

FIXTURE_VARIANT_ADD(image, c512_v3_across_many_l2_tables) {
	.script = MKIMG "-o cluster_size=512 img.qcow2 1M\n"
		  QIO "-c 'write -P 0x11 0 4k' -c 'write -P 0x22 33k 3k' "
		  "-c 'write -z 1k 1k' -c 'write -z 100k 1k' "
		  "-c 'discard 35k 512' -c 'write -P 0x33 1000k 24k' "
		  "-c 'write -P 0x34 31k 2k' img.qcow2",
	.cluster_bits = 9, .version = 3, .refcount_order = 4,
	.zero_alloc = true,
	.types = T(DATA) | T(ZERO) | T(BACKING),
};

/*
 * qemu-img writes just the bytes of a new image's L1 table, and a loop
 * device drops the file's last partial sector: the L1 table then starts
 * at the end of the file device.
 */
FIXTURE_VARIANT_ADD(image, c64k_new_image_cut_to_whole_sectors) {
	.script = MKIMG "img.qcow2 1M\n"
		  "test $(stat -c %s img.qcow2) = 196616\n"
		  "truncate -s 196608 img.qcow2",
	.cluster_bits = 16, .version = 3, .refcount_order = 4,
	.tables_past_end = true,
	.types = T(BACKING),
};

FIXTURE_VARIANT_ADD(image, c512_new_image_cut_to_whole_sectors) {
	.script = MKIMG "-o cluster_size=512 img.qcow2 1M\n"
		  "truncate -s 1536 img.qcow2",
	.cluster_bits = 9, .version = 3, .refcount_order = 4,
	.tables_past_end = true,
	.types = T(BACKING),
};

FIXTURE_VARIANT_ADD(image, c4k_compat_0_10) {
	.script = MKIMG "-o cluster_size=4k,compat=0.10 img.qcow2 1M\n"
		  QIO "-c 'write -P 0x44 0 64k' -c 'write -z 8k 8k' "
		  "-c 'write -P 0x45 511k 5k' img.qcow2",
	.cluster_bits = 12, .version = 2, .refcount_order = 4,
	.types = T(DATA) | T(BACKING),
};

FIXTURE_VARIANT_ADD(image, c64k_refcount_bits_1) {
	.script = MKIMG "-o cluster_size=64k,refcount_bits=1 img.qcow2 4M\n"
		  QIO "-c 'write -P 0x55 60k 8k' -c 'write -P 0x56 1M 200k' "
		  "-c 'write -z 2M 64k' -c 'write -P 0x57 4032k 64k' "
		  "img.qcow2",
	.cluster_bits = 16, .version = 3, .refcount_order = 0,
	.types = T(DATA) | T(ZERO) | T(BACKING),
};

FIXTURE_VARIANT_ADD(image, c2m_refcount_bits_64) {
	.script = MKIMG "-o cluster_size=2M,refcount_bits=64 img.qcow2 12M\n"
		  QIO "-c 'write -P 0x66 1M 2M' -c 'write -z 5M 1M' "
		  "-c 'write -P 0x67 7M 4k' img.qcow2",
	.cluster_bits = 21, .version = 3, .refcount_order = 6,
	.types = T(DATA) | T(ZERO) | T(BACKING),
};

FIXTURE_VARIANT_ADD(image, c64k_extended_l2_subclusters) {
	.script = MKIMG "-o cluster_size=64k,extended_l2=on img.qcow2 4M\n"
		  QIO "-c 'write -P 0x77 0 2k' -c 'write -P 0x78 5k 1k' "
		  "-c 'write -z 2k 2k' -c 'write -z 128k 64k' "
		  "-c 'write -P 0x79 192k 64k' -c 'write -z 200k 4k' "
		  "-c 'write -P 0x7a 254k 4k' -c 'write -z -u 320k 8k' "
		  "-c 'write -P 0x7b 1M 100' img.qcow2",
	.cluster_bits = 16, .version = 3, .refcount_order = 4,
	.extended_l2 = true,
	.types = T(DATA) | T(ZERO) | T(BACKING),
};

FIXTURE_VARIANT_ADD(image, c16k_extended_l2_512_byte_subclusters) {
	.script = MKIMG "-o cluster_size=16k,extended_l2=on img.qcow2 1M\n"
		  QIO "-c 'write -P 0x7c 512 512' -c 'write -z 1k 1k' "
		  "-c 'write -P 0x7d 16k 16k' -c 'write -P 0x7e 40k 700' "
		  "img.qcow2",
	.cluster_bits = 14, .version = 3, .refcount_order = 4,
	.extended_l2 = true,
	.types = T(DATA) | T(ZERO) | T(BACKING),
};

FIXTURE_VARIANT_ADD(image, c4k_zero_clusters) {
	/* write -z over data keeps the offsets: preallocated zeros */
	.script = MKIMG "-o cluster_size=4k img.qcow2 1M\n"
		  QIO "-c 'write -P 0x88 0 64k' -c 'write -z 8k 16k' "
		  "-c 'write -z 128k 8k' -c 'write -z -u 32k 4k' img.qcow2",
	.cluster_bits = 12, .version = 3, .refcount_order = 4,
	.zero_alloc = true,
	.types = T(DATA) | T(ZERO) | T(BACKING),
};

FIXTURE_VARIANT_ADD(image, c4k_compressed_zlib) {
	.script = "qemu-img convert -c -f raw -O qcow2 -o cluster_size=4k "
		  "src.raw img.qcow2",
	.cluster_bits = 12, .version = 3, .refcount_order = 4,
	.types = T(DATA) | T(COMPRESSED) | T(BACKING),
};

FIXTURE_VARIANT_ADD(image, c512_compressed_zlib) {
	.script = "qemu-img convert -c -f raw -O qcow2 -o cluster_size=512 "
		  "src.raw img.qcow2",
	.cluster_bits = 9, .version = 3, .refcount_order = 4,
	.types = T(DATA) | T(COMPRESSED) | T(BACKING),
};

FIXTURE_VARIANT_ADD(image, c2m_compressed_zlib) {
	.script = "qemu-img convert -c -f raw -O qcow2 -o cluster_size=2M "
		  "src.raw img.qcow2\n"
		  "qemu-img resize -q img.qcow2 6M\n"
		  QIO "-c 'write -P 0x2d 4M 1M' img.qcow2",
	.cluster_bits = 21, .version = 3, .refcount_order = 4,
	.types = T(DATA) | T(COMPRESSED) | T(BACKING),
};

FIXTURE_VARIANT_ADD(image, c64k_compressed_zstd) {
	.script = "qemu-img convert -c -f raw -O qcow2 "
		  "-o cluster_size=64k,compression_type=zstd src.raw img.qcow2",
	.cluster_bits = 16, .version = 3, .refcount_order = 4,
	.compression = QCOW2_COMPRESSION_ZSTD,
	.types = T(COMPRESSED),
};

FIXTURE_VARIANT_ADD(image, c4k_compressed_zstd_writes) {
	.script = MKIMG "-o cluster_size=4k,compression_type=zstd "
		  "img.qcow2 1M\n"
		  QIO "-c 'write -c -P 0x12 0 4k' -c 'write -c -P 0x13 8k 4k' "
		  "-c 'write -P 0x14 4k 4k' -c 'write -c -P 0x15 1020k 4k' "
		  "img.qcow2",
	.cluster_bits = 12, .version = 3, .refcount_order = 4,
	.compression = QCOW2_COMPRESSION_ZSTD,
	.types = T(DATA) | T(COMPRESSED) | T(BACKING),
};

FIXTURE_VARIANT_ADD(image, c64k_extended_l2_compressed) {
	.script = "qemu-img convert -c -f raw -O qcow2 "
		  "-o cluster_size=64k,extended_l2=on src.raw img.qcow2\n"
		  "qemu-img resize -q img.qcow2 3M\n"
		  QIO "-c 'write -P 0x16 70k 2k' img.qcow2",
	.cluster_bits = 16, .version = 3, .refcount_order = 4,
	.extended_l2 = true,
	.types = T(DATA) | T(COMPRESSED) | T(BACKING),
};

FIXTURE_VARIANT_ADD(image, c4k_internal_snapshots) {
	.script = MKIMG "-o cluster_size=4k img.qcow2 1M\n"
		  QIO "-c 'write -P 0x17 0 64k' img.qcow2\n"
		  "qemu-img snapshot -c one img.qcow2\n"
		  QIO "-c 'write -P 0x18 8k 8k' -c 'write -z 32k 4k' "
		  "-c 'discard 48k 4k' img.qcow2\n"
		  "qemu-img snapshot -c two img.qcow2\n"
		  QIO "-c 'write -P 0x19 12k 1k' img.qcow2",
	.cluster_bits = 12, .version = 3, .refcount_order = 4,
	.snapshots = true, .zero_alloc = true,
	.types = T(DATA) | T(ZERO) | T(BACKING),
};

FIXTURE_VARIANT_ADD(image, c4k_backing_file) {
	.script = MKIMG "-o cluster_size=64k base.qcow2 768k\n"
		  QIO "-c 'write -P 0x1a 0 512k' base.qcow2\n"
		  MKIMG "-o cluster_size=4k -b base.qcow2 -F qcow2 "
		  "img.qcow2 1M\n"
		  QIO "-c 'write -P 0x1b 4k 8k' -c 'write -z 64k 4k' "
		  "-c 'write -P 0x1c 766k 4k' img.qcow2",
	.cluster_bits = 12, .version = 3, .refcount_order = 4,
	.backing = true,
	.types = T(DATA) | T(ZERO) | T(BACKING),
};

FIXTURE_VARIANT_ADD(image, c4k_dirty_lazy_refcounts) {
	.script = MKIMG "-o cluster_size=4k,lazy_refcounts=on img.qcow2 1M\n"
		  "(" QIO "-c 'write -P 0x1d 0 12k' -c abort img.qcow2 "
		  "|| true) 2>/dev/null",
	.cluster_bits = 12, .version = 3, .refcount_order = 4,
	.dirty = true,
	.types = T(DATA) | T(BACKING),
};

FIXTURE_VARIANT_ADD(image, c64k_preallocation_metadata) {
	.script = MKIMG "-o cluster_size=64k,preallocation=metadata "
		  "img.qcow2 3M\n"
		  QIO "-c 'write -P 0x1e 100k 10k' img.qcow2",
	.cluster_bits = 16, .version = 3, .refcount_order = 4,
	.types = T(DATA),
};

TEST_F(image, parses_with_the_options_it_was_made_with)
{
	struct qimg im;

	qimg_open(_metadata, &im, self->path);
	EXPECT_EQ(variant->cluster_bits, im.qi.cluster_bits);
	EXPECT_EQ(variant->version, im.qi.version);
	EXPECT_EQ(variant->refcount_order, im.qi.refcount_order);
	EXPECT_EQ(variant->extended_l2, im.qi.extended_l2);
	EXPECT_EQ(variant->compression, im.qi.compression_type);
	EXPECT_EQ(variant->snapshots, im.qi.nb_snapshots > 0);
	EXPECT_EQ(variant->dirty, im.qi.dirty);
	EXPECT_FALSE(im.qi.corrupt);
	EXPECT_EQ(variant->tables_past_end, im.qi.tables_past_end);
	EXPECT_EQ(variant->backing, im.qi.backing_file_offset != 0);
	if (variant->backing) {
		EXPECT_STREQ("qcow2", im.qi.backing_format);
		ASSERT_NE(NULL, im.backing);
	}
	qimg_close(&im);
}

TEST_F_TIMEOUT(image, reads_what_qemu_img_convert_reads, 120)
{
	const u64 steps[] = { U64_MAX, 1536, 4096 * 3 + 512 };
	char raw[160], cmd[512];
	u8 *want, *got;
	u64 want_size;
	struct qimg im;
	unsigned int i, t;

	snprintf(raw, sizeof(raw), "%s/img.raw", self->dir);
	snprintf(cmd, sizeof(cmd), "qemu-img convert -f qcow2 -O raw %s %s",
		 self->path, raw);
	ASSERT_EQ(0, system(cmd));
	ASSERT_EQ(0, slurp(raw, &want, &want_size));

	qimg_open(_metadata, &im, self->path);
	ASSERT_EQ(want_size, im.qi.size);
	got = malloc(want_size);
	ASSERT_NE(NULL, got);
	for (i = 0; i < ARRAY_SIZE(steps); i++) {
		memset(got, 0xee, want_size);
		qimg_read(_metadata, &im, 0, want_size, steps[i], got);
		EXPECT_EQ(0, memcmp(want, got, want_size)) {
			u64 j = 0;

			while (want[j] == got[j])
				j++;
			TH_LOG("step %llu: first difference at byte %llu",
			       (unsigned long long)steps[i],
			       (unsigned long long)j);
		}
		if (i)
			continue;
		for (t = 0; t <= QCOW2_MAP_INVALID; t++) {
			EXPECT_EQ(!!(variant->types & BIT(t)),
				  !!im.extents[t]) {
				TH_LOG("extents of type %u: %llu", t,
				       (unsigned long long)im.extents[t]);
			}
		}
		EXPECT_EQ(variant->zero_alloc, !!im.zero_alloc);
	}
	free(got);
	free(want);
	qimg_close(&im);
}

/* A freshly converted image is allocated in order: one extent. */
TEST(contiguous_clusters_of_a_real_image_map_as_one_extent)
{
	char dir[] = "/tmp/qcow2-unit.XXXXXX", cmd[512], path[64];
	struct qcow2_extent e;
	const u64 *l2;
	struct qimg im;
	u32 n;

	if (!have_qemu_img())
		SKIP(return, "qemu-img not installed (qemu-utils)");
	ASSERT_NE(NULL, mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/src.raw", dir);
	ASSERT_EQ(0, write_source(path));
	snprintf(cmd, sizeof(cmd),
		 "cd %s && qemu-img convert -f raw -O qcow2 -o cluster_size=4k "
		 "-S 0 src.raw img.qcow2", dir);
	ASSERT_EQ(0, system(cmd));
	snprintf(path, sizeof(path), "%s/img.qcow2", dir);
	qimg_open(_metadata, &im, path);
	l2 = qimg_l2(&im, 0, &n);
	EXPECT_EQ(512, n);
	qcow2_map(&im.qi, l2, n, 0, 2 * MB, &e);
	EXPECT_EQ(QCOW2_MAP_DATA, e.type);
	EXPECT_EQ(2 * MB, e.len);
	/* and from the middle of a cluster */
	qcow2_map(&im.qi, l2 + 1, n - 1, 4096 + 100, 2 * MB - 4096 - 100, &e);
	EXPECT_EQ(QCOW2_MAP_DATA, e.type);
	EXPECT_EQ(2 * MB - 4096 - 100, e.len);
	qimg_close(&im);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	EXPECT_EQ(0, system(cmd));
}

/* ---------------------------------------------------------------- */
/* Refcounts                                                        */
/* ---------------------------------------------------------------- */

/* A parsed header with refcount_order @order (only the fields it uses). */
static void qi_order(struct __test_metadata *_metadata, u32 cb, u32 order,
		     struct qcow2_info *qi)
{
	qi_for(_metadata, cb, false, 64 * MB, qi);
	qi->refcount_order = order;
}

TEST(refblock_entries_and_max_per_order)
{
	static const u64 max[7] = { 1, 3, 15, 255, 65535, 0xffffffffULL,
				    0xffffffffffffffffULL };
	struct qcow2_info qi;
	u32 cb, order;

	for (cb = 9; cb <= 21; cb++) {
		for (order = 0; order <= 6; order++) {
			qi_order(_metadata, cb, order, &qi);
			/* cluster_size bytes of (1 << order)-bit entries */
			EXPECT_EQ((1ULL << cb) * 8 / (1u << order),
				  qcow2_refblock_entries(&qi));
			EXPECT_EQ(max[order], qcow2_refcount_max(&qi));
		}
	}
}

/* QEMU's layout, byte by byte: get_refcount_ro0() .. ro6(). */
TEST(refcount_layout_is_qemus)
{
	struct qcow2_info qi;
	u8 b[512];

	qi_order(_metadata, 9, 0, &qi);
	memset(b, 0, sizeof(b));
	qcow2_refcount_set(&qi, b, 0, 1);
	EXPECT_EQ(0x01, b[0]);
	qcow2_refcount_set(&qi, b, 3, 1);
	EXPECT_EQ(0x09, b[0]);
	qcow2_refcount_set(&qi, b, 15, 1);
	EXPECT_EQ(0x80, b[1]);
	qcow2_refcount_set(&qi, b, 0, 0);
	EXPECT_EQ(0x08, b[0]);
	b[7] = 0x40;
	EXPECT_EQ(1, qcow2_refcount_get(&qi, b, 62));
	EXPECT_EQ(0, qcow2_refcount_get(&qi, b, 63));

	qi_order(_metadata, 9, 1, &qi);
	memset(b, 0, sizeof(b));
	qcow2_refcount_set(&qi, b, 1, 2);
	EXPECT_EQ(0x08, b[0]);
	qcow2_refcount_set(&qi, b, 3, 3);
	EXPECT_EQ(0xc8, b[0]);
	qcow2_refcount_set(&qi, b, 6, 1);
	EXPECT_EQ(0x10, b[1]);
	b[9] = 0x1b;	/* 00 01 10 11 from the high bits down */
	EXPECT_EQ(3, qcow2_refcount_get(&qi, b, 36));
	EXPECT_EQ(2, qcow2_refcount_get(&qi, b, 37));
	EXPECT_EQ(1, qcow2_refcount_get(&qi, b, 38));
	EXPECT_EQ(0, qcow2_refcount_get(&qi, b, 39));

	qi_order(_metadata, 9, 2, &qi);
	memset(b, 0, sizeof(b));
	qcow2_refcount_set(&qi, b, 1, 0xa);
	EXPECT_EQ(0xa0, b[0]);
	qcow2_refcount_set(&qi, b, 0, 0x5);
	EXPECT_EQ(0xa5, b[0]);
	b[100] = 0x3c;
	EXPECT_EQ(0xc, qcow2_refcount_get(&qi, b, 200));
	EXPECT_EQ(0x3, qcow2_refcount_get(&qi, b, 201));

	qi_order(_metadata, 9, 3, &qi);
	memset(b, 0, sizeof(b));
	qcow2_refcount_set(&qi, b, 3, 0x7f);
	EXPECT_EQ(0x7f, b[3]);
	EXPECT_EQ(0, b[2] | b[4]);

	qi_order(_metadata, 9, 4, &qi);
	memset(b, 0, sizeof(b));
	qcow2_refcount_set(&qi, b, 1, 0x1234);
	EXPECT_EQ(0x12, b[2]);
	EXPECT_EQ(0x34, b[3]);
	b[510] = 0xbe;
	b[511] = 0xef;
	EXPECT_EQ(0xbeef, qcow2_refcount_get(&qi, b, 255));

	qi_order(_metadata, 9, 5, &qi);
	memset(b, 0, sizeof(b));
	qcow2_refcount_set(&qi, b, 1, 0x01020304);
	EXPECT_EQ(0, memcmp(b + 4, "\x01\x02\x03\x04", 4));
	EXPECT_EQ(0, b[3] | b[8]);
	EXPECT_EQ(0x01020304, qcow2_refcount_get(&qi, b, 1));

	qi_order(_metadata, 9, 6, &qi);
	memset(b, 0, sizeof(b));
	qcow2_refcount_set(&qi, b, 1, 0x0102030405060708ULL);
	EXPECT_EQ(0, memcmp(b + 8, "\x01\x02\x03\x04\x05\x06\x07\x08", 8));
	EXPECT_EQ(0, b[7] | b[16]);
	memcpy(b + 504, "\xf0\xe1\xd2\xc3\xb4\xa5\x96\x87", 8);
	EXPECT_EQ(0xf0e1d2c3b4a59687ULL, qcow2_refcount_get(&qi, b, 63));
}

static u64 rng_next(u64 *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/*
 * Every order: a set changes its entry only; the bytes it does not own
 * stay as they were.  Random blocks, random values up to the max, and
 * every entry of the block including the last (ASan checks the bounds).
 */
TEST(refcount_set_get_round_trip_every_order)
{
	struct qcow2_info qi;
	u64 seed = 0x9e3779b97f4a7c15ULL;
	u32 order, cb;

	for (cb = 9; cb <= 12; cb += 3) {
		for (order = 0; order <= 6; order++) {
			u64 cs = 1ULL << cb, n, i, j, v, max, round;
			u8 *b = malloc(cs), *before = malloc(cs);
			u64 *model;

			ASSERT_TRUE(b && before);
			qi_order(_metadata, cb, order, &qi);
			n = qcow2_refblock_entries(&qi);
			max = qcow2_refcount_max(&qi);
			model = calloc(n, sizeof(*model));
			ASSERT_NE(NULL, model);
			for (i = 0; i < cs; i++)
				b[i] = rng_next(&seed);
			for (i = 0; i < n; i++)
				model[i] = qcow2_refcount_get(&qi, b, i);
			for (round = 0; round < 1500; round++) {
				i = round < 500 && round < n ? n - 1 - round :
						rng_next(&seed) % n;
				v = rng_next(&seed);
				if (round % 5 == 0)
					v = max;
				else if (round % 5 == 1)
					v = 0;
				else if (order < 6)
					v &= max;
				memcpy(before, b, cs);
				qcow2_refcount_set(&qi, b, i, v);
				model[i] = v;
				ASSERT_EQ(v, qcow2_refcount_get(&qi, b, i));
				/* the bytes of other entries are untouched */
				for (j = 0; j < cs; j++) {
					u64 bit = j * 8;
					u64 lo = i << order, hi = lo + (1u << order);

					if (bit + 8 <= lo || bit >= hi)
						ASSERT_EQ(before[j], b[j]);
				}
			}
			for (i = 0; i < n; i++)
				ASSERT_EQ(model[i], qcow2_refcount_get(&qi, b, i)) {
					TH_LOG("order %u entry %llu", order,
					       (unsigned long long)i);
				}
			free(model);
			free(before);
			free(b);
		}
	}
}

/* Sub-byte orders: every value at every position of a byte. */
TEST(refcount_every_value_at_every_position_in_a_byte)
{
	struct qcow2_info qi;
	u32 order, pos, per;
	u64 v, w;
	u8 b[512];

	for (order = 0; order < 3; order++) {
		qi_order(_metadata, 9, order, &qi);
		per = 8 >> order;
		for (pos = 0; pos < per; pos++) {
			for (v = 0; v <= qcow2_refcount_max(&qi); v++) {
				for (w = 0; w <= qcow2_refcount_max(&qi); w++) {
					u32 k;

					memset(b, 0, sizeof(b));
					for (k = 0; k < per; k++)
						qcow2_refcount_set(&qi, b, 8 * per + k, w);
					qcow2_refcount_set(&qi, b, 8 * per + pos, v);
					for (k = 0; k < per; k++)
						ASSERT_EQ(k == pos ? v : w,
							  qcow2_refcount_get(&qi, b, 8 * per + k));
					/* the byte, as QEMU's shifts put it */
					ASSERT_EQ(v, (b[8] >> (pos << order)) &
						     qcow2_refcount_max(&qi));
					ASSERT_EQ(0, b[7] | b[9]);
				}
			}
		}
	}
}

/* ---------------------------------------------------------------- */
/* qcow2_compressed_range()                                         */
/* ---------------------------------------------------------------- */

TEST(compressed_range_is_qemus_free_range)
{
	static const struct {
		u32 cb;
		u64 coff, nsect, start, len;
	} c[] = {
		/* QEMU: (offset & ~511), nb_csectors * 512 */
		{ 12, HA, 1, HA, 512 },
		{ 12, HA + 100, 3, HA, 1536 },
		{ 12, HA + 4000, 2, HA + 3584, 1024 },	/* into the next */
		{ 12, HA + 511, 8, HA, 4096 },
		{ 9, MB + 300, 2, MB, 1024 },		/* csize_mask 1 */
		{ 16, MB + 65535, 256, MB + 65024, 131072 },
		{ 21, 4 * MB + 1, 8192, 4 * MB, 4 * MB },
		{ 21, (1ULL << 49) - 1, 1, (1ULL << 49) - 512, 512 },
	};
	struct qcow2_info qi;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(c); i++) {
		u64 start = 1, len = 1;

		qi_for(_metadata, c[i].cb, false, 64 * MB, &qi);
		qcow2_compressed_range(&qi, comp(&qi, c[i].coff, c[i].nsect),
				       &start, &len);
		EXPECT_EQ(c[i].start, start) {
			TH_LOG("case %u", i);
		}
		EXPECT_EQ(c[i].len, len) {
			TH_LOG("case %u", i);
		}
	}
}

/* ---------------------------------------------------------------- */
/* qcow2_plan_write()                                               */
/* ---------------------------------------------------------------- */

static void plan(const struct qcow2_info *qi, u64 e, u64 bm, u64 off, u64 len,
		 struct qcow2_wplan *p)
{
	const u64 l2[2] = { e, bm };

	memset(p, 0xa5, sizeof(*p));
	qcow2_plan_write(qi, l2, off, len, p);
}

/* No subcluster needs old data: every src[] is QCOW2_SRC_NONE. */
static bool srcs_none(const struct qcow2_wplan *p)
{
	unsigned int i;

	for (i = 0; i < QCOW2_SUBCLUSTERS; i++)
		if (p->src[i] != QCOW2_SRC_NONE)
			return false;
	return true;
}

TEST(write_to_a_copied_cluster_is_in_place)
{
	struct qcow2_info qi;
	struct qcow2_wplan p;

	qi_for(_metadata, 12, false, MB, &qi);
	plan(&qi, DATA(HA), 0, 512, 1024, &p);
	EXPECT_EQ(QCOW2_W_INPLACE, p.kind);
	EXPECT_EQ(HA, p.host);
	EXPECT_EQ(0, p.free_len);
	plan(&qi, DATA(HA), 0, 0, CS4K, &p);
	EXPECT_EQ(QCOW2_W_INPLACE, p.kind);
	EXPECT_EQ(HA, p.host);
	/* the offset of a cluster's byte is taken within the cluster */
	plan(&qi, DATA(HA), 0, 3 * CS4K + 512, 512, &p);
	EXPECT_EQ(QCOW2_W_INPLACE, p.kind);
	EXPECT_EQ(HA, p.host);
}

/* QEMU's handle_copied(): a ZERO_ALLOC cluster with the copied flag is kept. */
TEST(write_to_a_copied_zero_cluster_fills_it_with_zeros)
{
	struct qcow2_info qi;
	struct qcow2_wplan p;

	qi_for(_metadata, 12, false, MB, &qi);
	plan(&qi, ZERO_ALLOC(HA), 0, 1024, 512, &p);
	EXPECT_EQ(QCOW2_W_COW, p.kind);
	EXPECT_FALSE(p.alloc);
	EXPECT_EQ(HA, p.host);
	EXPECT_EQ(0, p.wbegin);
	EXPECT_EQ(CS4K, p.wend);
	EXPECT_EQ(QCOW2_SRC_ZERO, p.src[0]);
	/* the zero flag goes: the cluster holds data now */
	EXPECT_EQ(DATA(HA), p.new_entry);
	EXPECT_EQ(0, p.new_bitmap);
	EXPECT_EQ(0, p.free_len);
	/* a whole-cluster write needs no zeros */
	plan(&qi, ZERO_ALLOC(HA), 0, 0, CS4K, &p);
	EXPECT_EQ(QCOW2_W_COW, p.kind);
	EXPECT_FALSE(p.alloc);
	EXPECT_EQ(QCOW2_SRC_NONE, p.src[0]);
	EXPECT_EQ(DATA(HA), p.new_entry);
}

/* A cluster without the copied flag is shared (a snapshot): copy it. */
TEST(write_to_a_shared_cluster_copies_it_and_drops_a_reference)
{
	struct qcow2_info qi;
	struct qcow2_wplan p;

	qi_for(_metadata, 12, false, MB, &qi);
	plan(&qi, HA, 0, 2048, 1024, &p);
	EXPECT_EQ(QCOW2_W_COW, p.kind);
	EXPECT_TRUE(p.alloc);
	EXPECT_EQ(0, p.wbegin);
	EXPECT_EQ(CS4K, p.wend);
	EXPECT_EQ(QCOW2_SRC_HOST, p.src[0]);
	EXPECT_EQ(HA, p.src_host);
	EXPECT_EQ(QCOW2_OFLAG_COPIED, p.new_entry);
	EXPECT_EQ(HA, p.free_off);
	EXPECT_EQ(CS4K, p.free_len);
	/* overwritten whole: nothing to copy, the reference still goes */
	plan(&qi, HA, 0, 0, CS4K, &p);
	EXPECT_TRUE(p.alloc);
	EXPECT_EQ(QCOW2_SRC_NONE, p.src[0]);
	EXPECT_EQ(HA, p.free_off);
	EXPECT_EQ(CS4K, p.free_len);
	/* a shared zero cluster: zeros, and its reference goes */
	plan(&qi, HA | QCOW2_OFLAG_ZERO, 0, 512, 512, &p);
	EXPECT_EQ(QCOW2_W_COW, p.kind);
	EXPECT_TRUE(p.alloc);
	EXPECT_EQ(QCOW2_SRC_ZERO, p.src[0]);
	EXPECT_EQ(QCOW2_OFLAG_COPIED, p.new_entry);
	EXPECT_EQ(HA, p.free_off);
	EXPECT_EQ(CS4K, p.free_len);
}

TEST(write_to_an_unallocated_cluster_allocates_over_the_backing)
{
	struct qcow2_info qi;
	struct qcow2_wplan p;

	qi_for(_metadata, 12, false, MB, &qi);
	plan(&qi, 0, 0, 512, 512, &p);
	EXPECT_EQ(QCOW2_W_COW, p.kind);
	EXPECT_TRUE(p.alloc);
	EXPECT_EQ(0, p.wbegin);
	EXPECT_EQ(CS4K, p.wend);
	EXPECT_EQ(QCOW2_SRC_BACKING, p.src[0]);
	EXPECT_EQ(QCOW2_OFLAG_COPIED, p.new_entry);
	EXPECT_EQ(0, p.new_bitmap);
	EXPECT_EQ(0, p.free_len);
	plan(&qi, 0, 0, 0, CS4K, &p);
	EXPECT_TRUE(p.alloc);
	EXPECT_EQ(QCOW2_SRC_NONE, p.src[0]);
	EXPECT_EQ(0, p.free_len);
	/* a stray copied flag without an offset is still unallocated */
	plan(&qi, QCOW2_OFLAG_COPIED, 0, 512, 512, &p);
	EXPECT_EQ(QCOW2_W_COW, p.kind);
	EXPECT_TRUE(p.alloc);
	EXPECT_EQ(QCOW2_SRC_BACKING, p.src[0]);
	EXPECT_EQ(0, p.free_len);
}

TEST(write_to_a_plain_zero_cluster_allocates_over_zeros)
{
	struct qcow2_info qi;
	struct qcow2_wplan p;

	qi_for(_metadata, 12, false, MB, &qi);
	plan(&qi, ZERO_PLAIN, 0, CS4K - 512, 512, &p);
	EXPECT_EQ(QCOW2_W_COW, p.kind);
	EXPECT_TRUE(p.alloc);
	EXPECT_EQ(QCOW2_SRC_ZERO, p.src[0]);
	EXPECT_EQ(QCOW2_OFLAG_COPIED, p.new_entry);
	EXPECT_EQ(0, p.free_len);
}

TEST(write_to_a_compressed_cluster_decompresses_and_frees_its_range)
{
	struct qcow2_info qi;
	struct qcow2_wplan p;

	qi_for(_metadata, 12, false, MB, &qi);
	plan(&qi, comp(&qi, HA + 100, 3), 0, 0, 512, &p);
	EXPECT_EQ(QCOW2_W_COW, p.kind);
	EXPECT_TRUE(p.alloc);
	EXPECT_EQ(0, p.wbegin);
	EXPECT_EQ(CS4K, p.wend);
	EXPECT_EQ(QCOW2_SRC_COMPRESSED, p.src[0]);
	EXPECT_EQ(HA + 100, p.src_host);
	EXPECT_EQ(3 * 512 - 100, p.src_csize);
	EXPECT_EQ(QCOW2_OFLAG_COPIED, p.new_entry);
	EXPECT_EQ(0, p.new_bitmap);
	/* QEMU's qcow2_free_any_cluster(): (offset & ~511), sectors * 512 */
	EXPECT_EQ(HA, p.free_off);
	EXPECT_EQ(1536, p.free_len);
	plan(&qi, comp(&qi, HA + 3584, 2), 0, 0, CS4K, &p);
	EXPECT_EQ(QCOW2_SRC_NONE, p.src[0]);
	EXPECT_EQ(HA + 3584, p.free_off);
	EXPECT_EQ(1024, p.free_len);
	/* the size is clipped at the file's end, as for reads */
	plan(&qi, comp(&qi, MB - 512, 4), 0, 0, 512, &p);
	EXPECT_EQ(512, p.src_csize);
	EXPECT_EQ(2048, p.free_len);
}

/* Every entry qcow2_map() refuses, qcow2_plan_write() refuses alike. */
TEST(write_to_a_bad_entry_is_invalid_with_its_reason)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(bad_entries); i++) {
		const struct bad_entry *c = &bad_entries[i];
		struct qcow2_info qi;
		struct qcow2_wplan p;

		qi_for(_metadata, c->cluster_bits, c->extl2,
		       c->extl2 ? 16 * MB : MB, &qi);
		plan(&qi, c->entry, c->bitmap, c->off & ~511ULL, 512, &p);
		EXPECT_EQ(QCOW2_W_INVALID, p.kind) {
			TH_LOG("case %u planned as %d", i, p.kind);
		}
		ASSERT_NE(NULL, p.error) {
			TH_LOG("case %u", i);
		}
		EXPECT_STREQ(c->error, p.error);
	}
}

TEST(write_to_a_zero_cluster_of_a_v2_image_is_invalid)
{
	struct qcow2_info qi;
	struct qcow2_wplan p;

	qi_for(_metadata, 12, false, MB, &qi);
	qi.version = 2;
	plan(&qi, ZERO_PLAIN, 0, 0, 512, &p);
	EXPECT_EQ(QCOW2_W_INVALID, p.kind);
	EXPECT_STREQ("zero cluster in a version 2 image", p.error);
	plan(&qi, ZERO_ALLOC(HA), 0, 0, CS4K, &p);
	EXPECT_EQ(QCOW2_W_INVALID, p.kind);
	/* but everything else plans as in v3 */
	plan(&qi, DATA(HA), 0, 0, 512, &p);
	EXPECT_EQ(QCOW2_W_INPLACE, p.kind);
	plan(&qi, 0, 0, 0, 512, &p);
	EXPECT_EQ(QCOW2_W_COW, p.kind);
	EXPECT_EQ(QCOW2_SRC_BACKING, p.src[0]);
}

/* Extended L2: 64 KiB clusters of 32 subclusters of 2 KiB. */
TEST(extended_l2_write_to_allocated_subclusters_is_in_place)
{
	const u64 bm = SC_ALLOC(0) | SC_ALLOC(1) | SC_ALLOC(2) | SC_ALLOC(3) |
		       SC_ZERO(4);
	struct qcow2_info qi;
	struct qcow2_wplan p;

	qi_for(_metadata, 16, true, 16 * MB, &qi);
	plan(&qi, DATA(MB), bm, 512, 3 * SC2K, &p);	/* subclusters 0-3 */
	EXPECT_EQ(QCOW2_W_INPLACE, p.kind);
	EXPECT_EQ(MB, p.host);
	EXPECT_EQ(0, p.free_len);
	plan(&qi, DATA(MB), SC_ALL, 0, CS64K, &p);
	EXPECT_EQ(QCOW2_W_INPLACE, p.kind);
	/* one more subcluster, a zero one: no longer in place */
	plan(&qi, DATA(MB), bm, 512, 4 * SC2K, &p);
	EXPECT_EQ(QCOW2_W_COW, p.kind);
}

/* QEMU's calculate_l2_meta() with keep_old: COW of the written subclusters. */
TEST(extended_l2_write_to_unallocated_subclusters_of_a_copied_cluster)
{
	const u64 bm = SC_ALLOC(2) | SC_ZERO(4) | SC_ALLOC(9) | SC_ZERO(20);
	struct qcow2_info qi;
	struct qcow2_wplan p;
	unsigned int i;

	qi_for(_metadata, 16, true, 16 * MB, &qi);
	/* from the middle of sc 2 (allocated) to the middle of sc 5 (unalloc.) */
	plan(&qi, DATA(MB), bm, 2 * SC2K + 512, 3 * SC2K, &p);
	EXPECT_EQ(QCOW2_W_COW, p.kind);
	EXPECT_FALSE(p.alloc);
	EXPECT_EQ(MB, p.host);
	EXPECT_EQ(2 * SC2K, p.wbegin);
	EXPECT_EQ(6 * SC2K, p.wend);
	EXPECT_EQ(QCOW2_SRC_HOST, p.src[2]);
	EXPECT_EQ(MB, p.src_host);
	EXPECT_EQ(QCOW2_SRC_NONE, p.src[3]);	/* written whole */
	EXPECT_EQ(QCOW2_SRC_NONE, p.src[4]);
	EXPECT_EQ(QCOW2_SRC_BACKING, p.src[5]);
	for (i = 0; i < QCOW2_SUBCLUSTERS; i++)
		if (i != 2 && i != 5)
			EXPECT_EQ(QCOW2_SRC_NONE, p.src[i]);
	EXPECT_EQ(DATA(MB), p.new_entry);
	/* alloc |= written, zero &= ~written */
	EXPECT_EQ(SC_ALLOC(2) | SC_ALLOC(3) | SC_ALLOC(4) | SC_ALLOC(5) |
		  SC_ALLOC(9) | SC_ZERO(20), p.new_bitmap);
	EXPECT_EQ(0, p.free_len);

	/* part of a zero subcluster: its zeros around the write */
	plan(&qi, DATA(MB), bm, 4 * SC2K + 1024, 512, &p);
	EXPECT_EQ(QCOW2_W_COW, p.kind);
	EXPECT_FALSE(p.alloc);
	EXPECT_EQ(4 * SC2K, p.wbegin);
	EXPECT_EQ(5 * SC2K, p.wend);
	EXPECT_EQ(QCOW2_SRC_ZERO, p.src[4]);
	EXPECT_EQ((bm & ~SC_ZERO(4)) | SC_ALLOC(4), p.new_bitmap);

	/* the last subcluster */
	plan(&qi, DATA(MB), bm, CS64K - 512, 512, &p);
	EXPECT_EQ(31 * SC2K, p.wbegin);
	EXPECT_EQ(CS64K, p.wend);
	EXPECT_EQ(QCOW2_SRC_BACKING, p.src[31]);
	EXPECT_EQ(bm | SC_ALLOC(31), p.new_bitmap);
}

/* QEMU: UNALLOCATED_PLAIN / ZERO_PLAIN COW only up to the subclusters. */
TEST(extended_l2_write_to_an_unallocated_cluster_allocates_subclusters)
{
	struct qcow2_info qi;
	struct qcow2_wplan p;
	unsigned int i;

	qi_for(_metadata, 16, true, 16 * MB, &qi);
	plan(&qi, 0, 0, 3 * SC2K + 512, SC2K, &p);	/* sc 3 and 4 */
	EXPECT_EQ(QCOW2_W_COW, p.kind);
	EXPECT_TRUE(p.alloc);
	EXPECT_EQ(3 * SC2K, p.wbegin);
	EXPECT_EQ(5 * SC2K, p.wend);
	EXPECT_EQ(QCOW2_SRC_BACKING, p.src[3]);
	EXPECT_EQ(QCOW2_SRC_BACKING, p.src[4]);
	for (i = 0; i < QCOW2_SUBCLUSTERS; i++)
		if (i != 3 && i != 4)
			EXPECT_EQ(QCOW2_SRC_NONE, p.src[i]);
	EXPECT_EQ(QCOW2_OFLAG_COPIED, p.new_entry);
	EXPECT_EQ(SC_ALLOC(3) | SC_ALLOC(4), p.new_bitmap);
	EXPECT_EQ(0, p.free_len);

	/* zero subclusters: written ones lose the zero bit, others keep it */
	plan(&qi, 0, SC_ZERO(3) | SC_ZERO(10), 3 * SC2K + 512, SC2K, &p);
	EXPECT_TRUE(p.alloc);
	EXPECT_EQ(QCOW2_SRC_ZERO, p.src[3]);
	EXPECT_EQ(QCOW2_SRC_BACKING, p.src[4]);
	EXPECT_EQ(QCOW2_SRC_NONE, p.src[10]);
	EXPECT_EQ(SC_ALLOC(3) | SC_ALLOC(4) | SC_ZERO(10), p.new_bitmap);

	/* whole subclusters: nothing to read */
	plan(&qi, 0, 0, 2 * SC2K, 2 * SC2K, &p);
	EXPECT_EQ(2 * SC2K, p.wbegin);
	EXPECT_EQ(4 * SC2K, p.wend);
	EXPECT_TRUE(srcs_none(&p));
	EXPECT_EQ(SC_ALLOC(2) | SC_ALLOC(3), p.new_bitmap);
	plan(&qi, 0, SC_ALL << 32, 0, CS64K, &p);
	EXPECT_EQ(0, p.wbegin);
	EXPECT_EQ(CS64K, p.wend);
	EXPECT_TRUE(srcs_none(&p));
	EXPECT_EQ(SC_ALL, p.new_bitmap);
}

/* Shared: the new cluster must hold every allocated subcluster. */
TEST(extended_l2_write_to_a_shared_cluster_copies_allocated_subclusters)
{
	const u64 bm = SC_ALLOC(0) | SC_ALLOC(7) | SC_ZERO(9) | SC_ALLOC(31);
	struct qcow2_info qi;
	struct qcow2_wplan p;
	unsigned int i;

	qi_for(_metadata, 16, true, 16 * MB, &qi);
	plan(&qi, MB, bm, 3 * SC2K + 512, 512, &p);
	EXPECT_EQ(QCOW2_W_COW, p.kind);
	EXPECT_TRUE(p.alloc);
	EXPECT_EQ(0, p.wbegin);
	EXPECT_EQ(CS64K, p.wend);
	EXPECT_EQ(MB, p.src_host);
	EXPECT_EQ(QCOW2_SRC_HOST, p.src[0]);
	EXPECT_EQ(QCOW2_SRC_HOST, p.src[7]);
	EXPECT_EQ(QCOW2_SRC_HOST, p.src[31]);
	EXPECT_EQ(QCOW2_SRC_BACKING, p.src[3]);
	for (i = 0; i < QCOW2_SUBCLUSTERS; i++)
		if (i != 0 && i != 3 && i != 7 && i != 31)
			EXPECT_EQ(QCOW2_SRC_NONE, p.src[i]);
	EXPECT_EQ(QCOW2_OFLAG_COPIED, p.new_entry);
	EXPECT_EQ(bm | SC_ALLOC(3), p.new_bitmap);
	EXPECT_EQ(MB, p.free_off);
	EXPECT_EQ(CS64K, p.free_len);

	/* overwriting an allocated subcluster whole: no copy of it */
	plan(&qi, MB, bm, 7 * SC2K, SC2K, &p);
	EXPECT_EQ(QCOW2_SRC_NONE, p.src[7]);
	EXPECT_EQ(QCOW2_SRC_HOST, p.src[0]);
	EXPECT_EQ(bm, p.new_bitmap);
	EXPECT_EQ(CS64K, p.free_len);

	/* the write over a zero subcluster, partly */
	plan(&qi, MB, bm, 9 * SC2K, 512, &p);
	EXPECT_EQ(QCOW2_SRC_ZERO, p.src[9]);
	EXPECT_EQ((bm & ~SC_ZERO(9)) | SC_ALLOC(9), p.new_bitmap);

	/* an allocated cluster with no allocated subcluster is shared too */
	plan(&qi, MB, 0, 0, 512, &p);
	EXPECT_TRUE(p.alloc);
	EXPECT_EQ(QCOW2_SRC_BACKING, p.src[0]);
	EXPECT_EQ(SC_ALLOC(0), p.new_bitmap);
	EXPECT_EQ(MB, p.free_off);
	EXPECT_EQ(CS64K, p.free_len);
}

TEST(extended_l2_write_to_a_compressed_cluster_allocates_it_all)
{
	struct qcow2_info qi;
	struct qcow2_wplan p;
	unsigned int i;

	qi_for(_metadata, 16, true, 16 * MB, &qi);
	plan(&qi, comp(&qi, MB + 512, 4), 0, 5 * SC2K, SC2K, &p);
	EXPECT_EQ(QCOW2_W_COW, p.kind);
	EXPECT_TRUE(p.alloc);
	EXPECT_EQ(0, p.wbegin);
	EXPECT_EQ(CS64K, p.wend);
	for (i = 0; i < QCOW2_SUBCLUSTERS; i++)
		EXPECT_EQ(i == 5 ? QCOW2_SRC_NONE : QCOW2_SRC_COMPRESSED,
			  p.src[i]);
	EXPECT_EQ(MB + 512, p.src_host);
	EXPECT_EQ(4 * 512, p.src_csize);
	EXPECT_EQ(QCOW2_OFLAG_COPIED, p.new_entry);
	/* QEMU's link_l2: the whole COW range, the cluster, is allocated */
	EXPECT_EQ(SC_ALL, p.new_bitmap);
	EXPECT_EQ(MB + 512, p.free_off);
	EXPECT_EQ(2048, p.free_len);
}

/* 16 KiB clusters: 512-byte subclusters, always written whole. */
TEST(extended_l2_512_byte_subclusters_need_no_copy)
{
	struct qcow2_info qi;
	struct qcow2_wplan p;

	qi_for(_metadata, 14, true, 16 * MB, &qi);
	plan(&qi, 0, SC_ZERO(1), 512, 1536, &p);
	EXPECT_EQ(QCOW2_W_COW, p.kind);
	EXPECT_TRUE(p.alloc);
	EXPECT_EQ(512, p.wbegin);
	EXPECT_EQ(2048, p.wend);
	EXPECT_TRUE(srcs_none(&p));
	EXPECT_EQ(SC_ALLOC(1) | SC_ALLOC(2) | SC_ALLOC(3), p.new_bitmap);
	plan(&qi, DATA(MB), SC_ALLOC(0), 512, 512, &p);
	EXPECT_EQ(QCOW2_W_COW, p.kind);
	EXPECT_FALSE(p.alloc);
	EXPECT_EQ(512, p.wbegin);
	EXPECT_EQ(1024, p.wend);
	EXPECT_TRUE(srcs_none(&p));
	EXPECT_EQ(SC_ALLOC(0) | SC_ALLOC(1), p.new_bitmap);
	plan(&qi, DATA(MB), SC_ALLOC(1), 512, 512, &p);
	EXPECT_EQ(QCOW2_W_INPLACE, p.kind);
}

/* ---------------------------------------------------------------- */
/* qcow2_plan_zero_fill()                                           */
/* ---------------------------------------------------------------- */

static bool zfill(const struct qcow2_info *qi, u64 e, u64 bm, u64 off,
		  u64 len, u32 align, bool backing_zeros, u64 *db, u64 *de)
{
	struct qcow2_wplan p;

	plan(qi, e, bm, off, len, &p);
	*db = 0xa5;
	*de = 0xa5;
	return qcow2_plan_zero_fill(qi, &p, off, len, align, backing_zeros,
				    db, de);
}

/* A 4k write into a new 64K cluster: zeros around it, 4K written. */
TEST(zero_fill_writes_only_the_blocks_of_a_write_into_a_new_cluster)
{
	struct qcow2_info qi;
	u64 db, de;

	qi_for(_metadata, 16, false, 16 * MB, &qi);
	/* unallocated, no backing child */
	EXPECT_TRUE(zfill(&qi, 0, 0, MB + 8192, 4096, 512, true, &db, &de));
	EXPECT_EQ(8192, db);
	EXPECT_EQ(12288, de);
	/* 512 bytes on a 4Kn device: the block around them */
	EXPECT_TRUE(zfill(&qi, 0, 0, 8192 + 1536, 512, 4096, true, &db, &de));
	EXPECT_EQ(8192, db);
	EXPECT_EQ(12288, de);
	/* a zero cluster, plain or allocated, reads zeros even over backing */
	EXPECT_TRUE(zfill(&qi, ZERO_PLAIN, 0, 512, 512, 512, false, &db, &de));
	EXPECT_EQ(512, db);
	EXPECT_EQ(1024, de);
	EXPECT_TRUE(zfill(&qi, ZERO_ALLOC(MB), 0, 0, 4096, 512, false, &db, &de));
	EXPECT_EQ(0, db);
	EXPECT_EQ(4096, de);
	/* the whole cluster: nothing to zero, all of it written */
	EXPECT_TRUE(zfill(&qi, 0, 0, 0, CS64K, 512, false, &db, &de));
	EXPECT_EQ(0, db);
	EXPECT_EQ(CS64K, de);
}

TEST(zero_fill_needs_every_source_to_read_zeros)
{
	struct qcow2_info qi;
	u64 db, de;

	qi_for(_metadata, 16, false, 16 * MB, &qi);
	/* the backing child's data, a shared cluster, a compressed one */
	EXPECT_FALSE(zfill(&qi, 0, 0, 8192, 4096, 512, false, &db, &de));
	EXPECT_FALSE(zfill(&qi, MB, 0, 8192, 4096, 512, true, &db, &de));
	EXPECT_FALSE(zfill(&qi, comp(&qi, MB, 2), 0, 0, 4096, 512, true, &db,
			   &de));
	/* in place: no fill at all */
	EXPECT_FALSE(zfill(&qi, DATA(MB), 0, 0, 4096, 512, true, &db, &de));
	EXPECT_EQ(0xa5, db);
	EXPECT_EQ(0xa5, de);
}

/* Extended L2: only the subclusters written are in the range. */
TEST(extended_l2_zero_fill_stays_within_the_subclusters_written)
{
	struct qcow2_info qi;
	u64 db, de;

	qi_for(_metadata, 16, true, 16 * MB, &qi);
	/* 512 bytes into unallocated subcluster 3 of a cluster we own */
	EXPECT_TRUE(zfill(&qi, DATA(MB), SC_ALLOC(2), 3 * SC2K + 512, 512, 512,
			  true, &db, &de));
	EXPECT_EQ(3 * SC2K + 512, db);
	EXPECT_EQ(3 * SC2K + 1024, de);
	/* a zero subcluster reads zeros whatever the backing child holds */
	EXPECT_TRUE(zfill(&qi, DATA(MB), SC_ZERO(3), 3 * SC2K, 512, 512, false,
			  &db, &de));
	/* over the backing child's data */
	EXPECT_FALSE(zfill(&qi, DATA(MB), 0, 3 * SC2K, 512, 512, false, &db,
			   &de));
	/* a shared cluster copies its allocated subclusters */
	EXPECT_FALSE(zfill(&qi, MB, SC_ALLOC(0), 3 * SC2K, 512, 512, true, &db,
			   &de));
	EXPECT_TRUE(zfill(&qi, MB, SC_ZERO(0), 3 * SC2K, 512, 512, true, &db,
			  &de));
}

/*
 * Plans checked by their effect: a model of one guest cluster, its old
 * host cluster, the cluster a COW allocates, the backing child and the
 * decompressed contents.  Carrying out a plan as its comment says must
 * leave the guest reading the old contents with the write in them.
 */
#define SIM_OLD		(2 * MB)
#define SIM_NEW		(4 * MB)

struct sim {
	const struct qcow2_info *qi;
	u64 cs;
	u8 *old, *new, *backing, *comp, *want, *got, *data;
};

static void sim_init(struct __test_metadata *_metadata, struct sim *s,
		     const struct qcow2_info *qi)
{
	u64 i;

	s->qi = qi;
	s->cs = qi->cluster_size;
	s->old = malloc(s->cs);
	s->new = malloc(s->cs);
	s->backing = malloc(s->cs);
	s->comp = malloc(s->cs);
	s->want = malloc(s->cs);
	s->got = malloc(s->cs);
	s->data = malloc(s->cs);
	ASSERT_TRUE(s->old && s->new && s->backing && s->comp && s->want &&
		    s->got && s->data);
	for (i = 0; i < s->cs; i++) {
		s->backing[i] = 0x10 + i % 7;
		s->comp[i] = 0x20 + i % 11;
		s->data[i] = 0x30 + i % 13;
	}
}

static void sim_free(struct sim *s)
{
	free(s->old);
	free(s->new);
	free(s->backing);
	free(s->comp);
	free(s->want);
	free(s->got);
	free(s->data);
}

static u8 *sim_host(struct __test_metadata *_metadata, struct sim *s, u64 host)
{
	if (host == SIM_OLD)
		return s->old;
	if (host == SIM_NEW)
		return s->new;
	EXPECT_EQ(SIM_OLD, host) {
		TH_LOG("host cluster %#llx", (unsigned long long)host);
	}
	return NULL;
}

/* What the guest reads from the cluster; false if it does not map. */
static bool sim_view(struct __test_metadata *_metadata, struct sim *s,
		     u64 e, u64 bm, bool backing, u8 *out)
{
	const u64 l2[2] = { e, bm };
	struct qcow2_extent x;
	u64 off = 0;
	u8 *h;

	while (off < s->cs) {
		qcow2_map(s->qi, l2, 1, off, s->cs - off, &x);
		switch (x.type) {
		case QCOW2_MAP_DATA:
			h = sim_host(_metadata, s, x.host_off & ~(s->cs - 1));
			if (!h)
				return false;
			memcpy(out + off, h + (x.host_off & (s->cs - 1)), x.len);
			break;
		case QCOW2_MAP_ZERO:
			memset(out + off, 0, x.len);
			break;
		case QCOW2_MAP_BACKING:
			if (backing)
				memcpy(out + off, s->backing + off, x.len);
			else
				memset(out + off, 0, x.len);
			break;
		case QCOW2_MAP_COMPRESSED:
			memcpy(out + off, s->comp + off, x.len);
			break;
		default:
			TH_LOG("entry %#llx bitmap %#llx: %s",
			       (unsigned long long)e, (unsigned long long)bm,
			       x.error);
			return false;
		}
		if (!x.len)
			return false;
		off += x.len;
	}
	return true;
}

/* A random valid entry and bitmap over SIM_OLD, in @qi's geometry. */
static void sim_entry(const struct qcow2_info *qi, u64 *seed, u64 *e, u64 *bm)
{
	u64 r = rng_next(seed), a = rng_next(seed), z = rng_next(seed);

	*bm = 0;
	switch (r % 7) {
	case 0:
		*e = 0;
		break;
	case 1:
		*e = DATA(SIM_OLD);
		break;
	case 2:
		*e = SIM_OLD;
		break;
	case 3:
		*e = comp(qi, SIM_OLD + (r >> 8) % qi->cluster_size,
			  1 + (r >> 32) % (qi->csize_mask < 8 ?
					   qi->csize_mask + 1 : 8));
		return;
	case 4:
		*e = qi->extended_l2 ? DATA(SIM_OLD) : ZERO_ALLOC(SIM_OLD);
		break;
	case 5:
		*e = qi->extended_l2 ? SIM_OLD : SIM_OLD | QCOW2_OFLAG_ZERO;
		break;
	default:
		*e = qi->extended_l2 ? 0 : ZERO_PLAIN;
		break;
	}
	if (!qi->extended_l2)
		return;
	/* sparse or dense bitmaps, disjoint, none allocated without host */
	if (r & BIT(40))
		a &= rng_next(seed);
	if (r & BIT(41))
		z &= rng_next(seed);
	a &= SC_ALL;
	if (!(*e & QCOW2_OFFSET_MASK))
		a = 0;
	z &= SC_ALL & ~a;
	*bm = a | z << 32;
}

/* A source the file device may zero instead of being sent (no backing). */
static bool sim_src_zero(enum qcow2_src src, bool backing)
{
	return src == QCOW2_SRC_NONE || src == QCOW2_SRC_ZERO ||
	       (src == QCOW2_SRC_BACKING && !backing);
}

/*
 * Carry out a write of @len bytes at @off as planned, with or without a
 * backing child: the fill from the sources, or, when
 * qcow2_plan_zero_fill() allows it with blocks of @align bytes, zeros
 * over [wbegin, wend) and the write's blocks over them.
 */
static void sim_write(struct __test_metadata *_metadata, struct sim *s,
		      u64 e, u64 bm, u64 off, u64 len, bool backing, u32 align)
{
	const u64 cs = s->cs, ss = 1ULL << s->qi->subcluster_bits;
	const u64 l2[2] = { e, bm };
	u64 host = e & QCOW2_OFFSET_MASK, ne, nbm, fo = 0, fl = 0, sc, db, de;
	bool compressed = e & QCOW2_OFLAG_COMPRESSED, zf, all_zero;
	struct qcow2_wplan p;
	u8 *t;

	memset(s->old, 0x5a, cs);
	for (sc = 0; sc < cs / 512; sc++)
		s->old[sc * 512] = sc;
	ASSERT_TRUE(sim_view(_metadata, s, e, bm, backing, s->want));
	memcpy(s->want + off, s->data, len);

	memset(&p, 0xa5, sizeof(p));
	qcow2_plan_write(s->qi, l2, off, len, &p);
	ASSERT_NE(QCOW2_W_INVALID, p.kind);
	zf = qcow2_plan_zero_fill(s->qi, &p, off, len, align, !backing, &db, &de);
	if (p.kind == QCOW2_W_INPLACE) {
		/* only a cluster we own, and only where it holds data */
		ASSERT_FALSE(zf);
		ASSERT_TRUE(host && (e & QCOW2_OFLAG_COPIED) && !compressed);
		ASSERT_EQ(SIM_OLD, p.host);
		memcpy(s->old + off, s->data, len);
		ne = e;
		nbm = bm;
	} else {
		ASSERT_EQ(QCOW2_W_COW, p.kind);
		ASSERT_EQ(0, p.wbegin % ss);
		ASSERT_EQ(0, p.wend % ss);
		ASSERT_LE(p.wbegin, off);
		ASSERT_LE(off + len, p.wend);
		ASSERT_LE(p.wend, cs);
		if (p.alloc) {
			/* the caller adds the new cluster's offset */
			ASSERT_EQ(0, p.new_entry & QCOW2_OFFSET_MASK);
			ASSERT_TRUE(p.new_entry & QCOW2_OFLAG_COPIED);
			t = s->new;
			memset(t, 0xee, cs);
			ne = p.new_entry | SIM_NEW;
		} else {
			ASSERT_TRUE(host && (e & QCOW2_OFLAG_COPIED));
			ASSERT_EQ(SIM_OLD, p.host);
			ASSERT_EQ(SIM_OLD, p.new_entry & QCOW2_OFFSET_MASK);
			t = s->old;
			ne = p.new_entry;
		}
		nbm = p.new_bitmap;
		if (zf) {
			/* the write's blocks, in the range, around the write */
			ASSERT_EQ(0, db % align);
			ASSERT_EQ(0, de % align);
			ASSERT_LE(p.wbegin, db);
			ASSERT_LE(db, off);
			ASSERT_LE(off + len, de);
			ASSERT_LE(de, p.wend);
			/* the device zeroes the range; zeros around the write */
			memset(t + p.wbegin, 0, p.wend - p.wbegin);
		}
		all_zero = true;
		for (sc = 0; sc < cs / ss && sc < QCOW2_SUBCLUSTERS; sc++) {
			u8 *d = t + sc * ss;

			if (sc * ss < p.wbegin || sc * ss >= p.wend) {
				ASSERT_EQ(QCOW2_SRC_NONE, p.src[sc]);
				continue;
			}
			all_zero &= sim_src_zero(p.src[sc], backing);
			if (zf)
				continue;
			switch (p.src[sc]) {
			case QCOW2_SRC_NONE:	/* whatever the writer puts */
				memset(d, 0xdd, ss);
				break;
			case QCOW2_SRC_ZERO:
				memset(d, 0, ss);
				break;
			case QCOW2_SRC_BACKING:
				if (backing)
					memcpy(d, s->backing + sc * ss, ss);
				else
					memset(d, 0, ss);
				break;
			case QCOW2_SRC_HOST:
				memmove(d, sim_host(_metadata, s, p.src_host) +
					   sc * ss, ss);
				break;
			case QCOW2_SRC_COMPRESSED:
				ASSERT_TRUE(compressed);
				ASSERT_EQ(e & ((1ULL << s->qi->csize_shift) - 1),
					  p.src_host);
				memcpy(d, s->comp + sc * ss, ss);
				break;
			default:
				ASSERT_TRUE(false);
			}
		}
		/* zero-filled exactly when every source reads zeros */
		EXPECT_EQ(all_zero, zf);
		memcpy(t + off, s->data, len);
		if (compressed)
			qcow2_compressed_range(s->qi, e, &fo, &fl);
		else if (host && p.alloc)
			fo = host, fl = cs;
	}
	EXPECT_EQ(fl, p.free_len);
	if (fl)
		EXPECT_EQ(fo, p.free_off);
	/* the old cluster's contents are gone if it loses its reference */
	if (p.free_len)
		memset(s->old, 0xcc, cs);
	ASSERT_TRUE(sim_view(_metadata, s, ne, nbm, backing, s->got));
	ASSERT_EQ(0, memcmp(s->want, s->got, cs)) {
		u64 i = 0;

		while (s->want[i] == s->got[i])
			i++;
		TH_LOG("entry %#llx bitmap %#llx write %llu+%llu: byte %llu "
		       "reads %#x, not %#x (new entry %#llx bitmap %#llx, "
		       "backing %d, zero fill %d)",
		       (unsigned long long)e, (unsigned long long)bm,
		       (unsigned long long)off, (unsigned long long)len,
		       (unsigned long long)i, s->got[i], s->want[i],
		       (unsigned long long)ne, (unsigned long long)nbm,
		       backing, zf);
	}
}

static void sim_writes(struct __test_metadata *_metadata, u32 cb, bool extl2,
		       unsigned int rounds)
{
	struct qcow2_info qi;
	u64 seed = 0x2545f4914f6cdd1dULL ^ cb;
	struct sim s;
	unsigned int i;

	qi_for(_metadata, cb, extl2, 16 * MB, &qi);
	sim_init(_metadata, &s, &qi);
	for (i = 0; i < rounds; i++) {
		u64 e, bm, off, len, sectors = s.cs / 512, r = rng_next(&seed);

		sim_entry(&qi, &seed, &e, &bm);
		off = (r % sectors) * 512;
		len = sectors - off / 512;
		if (r & BIT(32))
			len = 1 + (r >> 40) % len;
		else if (r & BIT(33))
			len = 1 + (r >> 40) % (len < 8 ? len : 8);
		if ((r & (BIT(34) | BIT(35))) == BIT(34)) {
			off = 0;	/* the whole cluster */
			len = sectors;
		}
		/* blocks of 4K where a subcluster holds them (the ctr's rule) */
		sim_write(_metadata, &s, e, bm, off, len * 512, !(r & BIT(36)),
			  (r & BIT(37)) && 1u << qi.subcluster_bits >= 4096 ?
			  4096 : 512);
		if (_metadata->exit_code)	/* stop at the first failure */
			break;
	}
	sim_free(&s);
}

TEST(planned_writes_read_back_4k_clusters)
{
	sim_writes(_metadata, 12, false, 4000);
}

TEST(planned_writes_read_back_512_byte_clusters)
{
	sim_writes(_metadata, 9, false, 2000);
}

TEST(planned_writes_read_back_extended_l2_64k)
{
	sim_writes(_metadata, 16, true, 3000);
}

TEST(planned_writes_read_back_extended_l2_16k)
{
	sim_writes(_metadata, 14, true, 3000);
}

TEST(planned_writes_read_back_extended_l2_2m)
{
	sim_writes(_metadata, 21, true, 150);
}

/* ---------------------------------------------------------------- */
/* qcow2_plan_zero()                                                */
/* ---------------------------------------------------------------- */

struct zero_plan {
	int r;
	u64 entry, bitmap, free_off, free_len;
};

static struct zero_plan pz(const struct qcow2_info *qi, u64 e, u64 bm,
			   bool discard, bool backing)
{
	const u64 l2[2] = { e, bm };
	struct zero_plan z;

	memset(&z, 0xa5, sizeof(z));
	z.r = qcow2_plan_zero(qi, l2, discard, backing, &z.entry, &z.bitmap,
			      &z.free_off, &z.free_len);
	return z;
}

TEST(zero_plan_in_a_v2_image_is_not_supported)
{
	struct qcow2_info qi;
	int d;

	qi_for(_metadata, 12, false, MB, &qi);
	qi.version = 2;
	for (d = 0; d < 4; d++) {
		EXPECT_EQ(-EOPNOTSUPP, pz(&qi, DATA(HA), 0, d & 1, d & 2).r);
		EXPECT_EQ(-EOPNOTSUPP, pz(&qi, HA, 0, d & 1, d & 2).r);
		EXPECT_EQ(-EOPNOTSUPP, pz(&qi, 0, 0, d & 1, d & 2).r);
		EXPECT_EQ(-EOPNOTSUPP,
			  pz(&qi, comp(&qi, HA, 1), 0, d & 1, d & 2).r);
		/* a bad entry is still bad */
		EXPECT_EQ(-EINVAL, pz(&qi, ZERO_PLAIN, 0, d & 1, d & 2).r);
		EXPECT_EQ(-EINVAL, pz(&qi, DATA(HA) | BIT(1), 0, d & 1,
				      d & 2).r);
	}
}

TEST(zero_plan_for_a_bad_entry_is_einval)
{
	unsigned int i;
	int d;

	for (i = 0; i < ARRAY_SIZE(bad_entries); i++) {
		const struct bad_entry *c = &bad_entries[i];
		struct qcow2_info qi;

		qi_for(_metadata, c->cluster_bits, c->extl2,
		       c->extl2 ? 16 * MB : MB, &qi);
		for (d = 0; d < 4; d++)
			EXPECT_EQ(-EINVAL, pz(&qi, c->entry, c->bitmap, d & 1,
					      d & 2).r) {
				TH_LOG("case %u", i);
			}
	}
}

/* QEMU's zero_in_l2_slice() without BDRV_REQ_MAY_UNMAP: keep the cluster. */
TEST(write_zeroes_keeps_a_copied_cluster)
{
	struct qcow2_info qi;
	struct zero_plan z;
	int b;

	qi_for(_metadata, 12, false, MB, &qi);
	for (b = 0; b < 2; b++) {
		z = pz(&qi, DATA(HA), 0, false, b);
		EXPECT_EQ(0, z.r);
		EXPECT_EQ(ZERO_ALLOC(HA), z.entry);
		EXPECT_EQ(0, z.bitmap);
		EXPECT_EQ(0, z.free_len);
		z = pz(&qi, ZERO_ALLOC(HA), 0, false, b);
		EXPECT_EQ(0, z.r);
		EXPECT_EQ(ZERO_ALLOC(HA), z.entry);
		EXPECT_EQ(0, z.free_len);
	}
}

TEST(write_zeroes_frees_shared_and_compressed_clusters)
{
	struct qcow2_info qi;
	struct zero_plan z;
	int b;

	qi_for(_metadata, 12, false, MB, &qi);
	for (b = 0; b < 2; b++) {
		z = pz(&qi, HA, 0, false, b);
		EXPECT_EQ(0, z.r);
		EXPECT_EQ(ZERO_PLAIN, z.entry);
		EXPECT_EQ(HA, z.free_off);
		EXPECT_EQ(CS4K, z.free_len);
		z = pz(&qi, HA | QCOW2_OFLAG_ZERO, 0, false, b);
		EXPECT_EQ(ZERO_PLAIN, z.entry);
		EXPECT_EQ(HA, z.free_off);
		EXPECT_EQ(CS4K, z.free_len);
		z = pz(&qi, comp(&qi, HA + 3000, 3), 0, false, b);
		EXPECT_EQ(0, z.r);
		EXPECT_EQ(ZERO_PLAIN, z.entry);
		EXPECT_EQ(HA + 2560, z.free_off);
		EXPECT_EQ(1536, z.free_len);
		/* nothing to free: still zero, whatever the backing */
		z = pz(&qi, 0, 0, false, b);
		EXPECT_EQ(0, z.r);
		EXPECT_EQ(ZERO_PLAIN, z.entry);
		EXPECT_EQ(0, z.free_len);
		z = pz(&qi, ZERO_PLAIN, 0, false, b);
		EXPECT_EQ(ZERO_PLAIN, z.entry);
		EXPECT_EQ(0, z.free_len);
	}
}

/* QEMU's discard_in_l2_slice(): drop the reference; zero over a backing. */
TEST(discard_frees_the_cluster_and_hides_the_backing)
{
	const u64 entries[] = { DATA(HA), HA, ZERO_ALLOC(HA),
				HA | QCOW2_OFLAG_ZERO };
	struct qcow2_info qi;
	struct zero_plan z;
	unsigned int i;

	qi_for(_metadata, 12, false, MB, &qi);
	for (i = 0; i < ARRAY_SIZE(entries); i++) {
		z = pz(&qi, entries[i], 0, true, true);
		EXPECT_EQ(0, z.r);
		EXPECT_EQ(ZERO_PLAIN, z.entry);
		EXPECT_EQ(HA, z.free_off);
		EXPECT_EQ(CS4K, z.free_len);
		z = pz(&qi, entries[i], 0, true, false);
		EXPECT_EQ(0, z.r);
		EXPECT_EQ(0, z.entry);
		EXPECT_EQ(HA, z.free_off);
		EXPECT_EQ(CS4K, z.free_len);
	}
	z = pz(&qi, comp(&qi, HA, 2), 0, true, true);
	EXPECT_EQ(ZERO_PLAIN, z.entry);
	EXPECT_EQ(HA, z.free_off);
	EXPECT_EQ(1024, z.free_len);
	z = pz(&qi, comp(&qi, HA, 2), 0, true, false);
	EXPECT_EQ(0, z.entry);
	EXPECT_EQ(1024, z.free_len);
	z = pz(&qi, 0, 0, true, true);
	EXPECT_EQ(ZERO_PLAIN, z.entry);
	EXPECT_EQ(0, z.free_len);
	z = pz(&qi, 0, 0, true, false);
	EXPECT_EQ(0, z.entry);
	EXPECT_EQ(0, z.free_len);
	z = pz(&qi, ZERO_PLAIN, 0, true, false);
	EXPECT_EQ(0, z.entry);
	EXPECT_EQ(0, z.free_len);
}

/* QEMU: extended L2 says zero with QCOW_L2_BITMAP_ALL_ZEROES. */
TEST(extended_l2_zero_plans_use_the_bitmap)
{
	const u64 bm = SC_ALLOC(0) | SC_ZERO(5) | SC_ALLOC(31);
	struct qcow2_info qi;
	struct zero_plan z;
	int b;

	qi_for(_metadata, 16, true, 16 * MB, &qi);
	for (b = 0; b < 2; b++) {
		z = pz(&qi, DATA(MB), bm, false, b);
		EXPECT_EQ(0, z.r);
		EXPECT_EQ(DATA(MB), z.entry);
		EXPECT_EQ(SC_ALL << 32, z.bitmap);
		EXPECT_EQ(0, z.free_len);
		z = pz(&qi, MB, bm, false, b);		/* shared */
		EXPECT_EQ(0, z.r);
		EXPECT_EQ(0, z.entry);
		EXPECT_EQ(SC_ALL << 32, z.bitmap);
		EXPECT_EQ(MB, z.free_off);
		EXPECT_EQ(CS64K, z.free_len);
		z = pz(&qi, 0, SC_ZERO(3), false, b);
		EXPECT_EQ(0, z.entry);
		EXPECT_EQ(SC_ALL << 32, z.bitmap);
		EXPECT_EQ(0, z.free_len);
		z = pz(&qi, comp(&qi, MB + 512, 4), 0, false, b);
		EXPECT_EQ(0, z.r);
		EXPECT_EQ(0, z.entry);
		EXPECT_EQ(SC_ALL << 32, z.bitmap);
		EXPECT_EQ(MB + 512, z.free_off);
		EXPECT_EQ(2048, z.free_len);
	}
	/* discard: freed; zero over a backing, unallocated without one */
	z = pz(&qi, DATA(MB), bm, true, true);
	EXPECT_EQ(0, z.entry);
	EXPECT_EQ(SC_ALL << 32, z.bitmap);
	EXPECT_EQ(MB, z.free_off);
	EXPECT_EQ(CS64K, z.free_len);
	z = pz(&qi, DATA(MB), bm, true, false);
	EXPECT_EQ(0, z.entry);
	EXPECT_EQ(0, z.bitmap);
	EXPECT_EQ(CS64K, z.free_len);
	z = pz(&qi, 0, SC_ZERO(3), true, false);
	EXPECT_EQ(0, z.entry);
	EXPECT_EQ(0, z.bitmap);
	EXPECT_EQ(0, z.free_len);
	z = pz(&qi, 0, 0, true, true);
	EXPECT_EQ(0, z.entry);
	EXPECT_EQ(SC_ALL << 32, z.bitmap);
	z = pz(&qi, comp(&qi, MB + 512, 4), 0, true, false);
	EXPECT_EQ(0, z.entry);
	EXPECT_EQ(0, z.bitmap);
	EXPECT_EQ(2048, z.free_len);
	/* a bad bitmap */
	EXPECT_EQ(-EINVAL, pz(&qi, DATA(MB), SC_ALLOC(4) | SC_ZERO(4), false,
			      false).r);
	EXPECT_EQ(-EINVAL, pz(&qi, 0, SC_ALLOC(4), true, true).r);
}

/* Every plan reads zeros, and drops exactly the references it should. */
static void sim_zeroes(struct __test_metadata *_metadata, u32 cb, bool extl2)
{
	struct qcow2_info qi;
	u64 seed = 0x853c49e6748fea9bULL ^ cb;
	struct sim s;
	unsigned int i;

	qi_for(_metadata, cb, extl2, 16 * MB, &qi);
	sim_init(_metadata, &s, &qi);
	memset(s.old, 0x77, s.cs);
	for (i = 0; i < 2000; i++) {
		u64 e, bm, fo = 0, fl = 0, host;
		bool discard = i & 1, backing = i & 2, keep;
		struct zero_plan z;

		sim_entry(&qi, &seed, &e, &bm);
		host = e & QCOW2_OFFSET_MASK;
		z = pz(&qi, e, bm, discard, backing);
		ASSERT_EQ(0, z.r);
		if (!extl2)
			ASSERT_EQ(0, z.bitmap);
		ASSERT_TRUE(sim_view(_metadata, &s, z.entry, z.bitmap,
				     backing, s.got));
		for (fl = 0; fl < s.cs; fl++)
			ASSERT_EQ(0, s.got[fl]) {
				TH_LOG("entry %#llx bitmap %#llx discard %d "
				       "backing %d: %#llx %#llx reads data",
				       (unsigned long long)e,
				       (unsigned long long)bm, discard, backing,
				       (unsigned long long)z.entry,
				       (unsigned long long)z.bitmap);
			}
		fl = 0;
		keep = !(e & QCOW2_OFLAG_COMPRESSED) && host &&
		       (e & QCOW2_OFLAG_COPIED) && !discard;
		if (e & QCOW2_OFLAG_COMPRESSED)
			qcow2_compressed_range(&qi, e, &fo, &fl);
		else if (host && !keep)
			fo = host, fl = s.cs;
		ASSERT_EQ(fl, z.free_len);
		if (fl)
			ASSERT_EQ(fo, z.free_off);
		/* a kept cluster stays ours; no other host offset appears */
		ASSERT_EQ(keep ? DATA(host) : 0,
			  z.entry & (QCOW2_OFFSET_MASK | QCOW2_OFLAG_COPIED));
		/* discard without a backing child: unallocated */
		if (discard && !backing)
			ASSERT_TRUE(!z.entry && !z.bitmap);
	}
	sim_free(&s);
}

TEST(zero_plans_read_zeros_4k_clusters)
{
	sim_zeroes(_metadata, 12, false);
}

TEST(zero_plans_read_zeros_extended_l2)
{
	sim_zeroes(_metadata, 16, true);
}

/* ---------------------------------------------------------------- */
/* Refcounts of real images                                         */
/* ---------------------------------------------------------------- */

/* The refcount of cluster @i, as qcow2_refcount_get() reads the file. */
static u64 qimg_refcount(const struct qimg *im, u64 i)
{
	const struct qcow2_info *qi = &im->qi;
	u64 n = qcow2_refblock_entries(qi), rt = i / n;

	if (rt >= qcow2_reftable_bytes(qi) / 8 || !im->reftable[rt])
		return 0;
	return qcow2_refcount_get(qi, im->file + im->reftable[rt], i % n);
}

static void add_refs(u64 *refs, u64 n, u64 cb, u64 off, u64 len)
{
	u64 i;

	for (i = off >> cb; len && i <= (off + len - 1) >> cb; i++)
		if (i < n)
			refs[i]++;
}

/*
 * The references to each of the first @n clusters, counted from the
 * metadata as `qemu-img check` counts them (no snapshots): the header,
 * the L1 table, the refcount table and blocks, the L2 tables, the data
 * clusters and, by qcow2_compressed_range(), the compressed ones.
 */
static void qimg_count_refs(struct qimg *im, u64 *refs, u64 n)
{
	const struct qcow2_info *qi = &im->qi;
	const u32 cb = qi->cluster_bits, w = qi->l2_entry_words;
	u64 i, j, rt = qcow2_reftable_bytes(qi) / 8;

	memset(refs, 0, n * sizeof(*refs));
	add_refs(refs, n, cb, 0, qi->cluster_size);
	add_refs(refs, n, cb, qi->l1_offset, qcow2_l1_bytes(qi));
	add_refs(refs, n, cb, qi->reftable_offset, qcow2_reftable_bytes(qi));
	for (i = 0; i < rt; i++)
		add_refs(refs, n, cb, im->reftable[i], im->reftable[i] ? 1 : 0);
	for (i = 0; i < qi->l1_size; i++) {
		const u8 *l2 = im->file + im->l1[i];

		if (!im->l1[i])
			continue;
		add_refs(refs, n, cb, im->l1[i], 1);
		for (j = 0; j < qcow2_l2_bytes(qi) / 8; j += w) {
			u64 e = get_be64(l2 + 8 * j), off, len;

			if (e & QCOW2_OFLAG_COMPRESSED) {
				qcow2_compressed_range(qi, e, &off, &len);
				add_refs(refs, n, cb, off, len);
			} else if (e & QCOW2_OFFSET_MASK) {
				add_refs(refs, n, cb, e & QCOW2_OFFSET_MASK, 1);
			}
		}
	}
}

FIXTURE(refimg) {
	char dir[64];
	char path[128];
};

FIXTURE_VARIANT(refimg) {
	const char *script;	/* sh -e; makes img.qcow2 from src.raw */
	u32 refcount_order;
	bool compressed;	/* some cluster holds compressed data */
};

FIXTURE_SETUP(refimg)
{
	char cmd[4096];

	if (!have_qemu_img())
		SKIP(return, "qemu-img or qemu-io not installed (qemu-utils)");
	snprintf(self->dir, sizeof(self->dir), "/tmp/qcow2-unit.XXXXXX");
	ASSERT_NE(NULL, mkdtemp(self->dir));
	snprintf(self->path, sizeof(self->path), "%s/src.raw", self->dir);
	ASSERT_EQ(0, write_source(self->path));
	snprintf(self->path, sizeof(self->path), "%s/img.qcow2", self->dir);
	snprintf(cmd, sizeof(cmd),
		 "cd %s && { set -e; %s\n} >mk.log 2>&1 || { cat mk.log; exit 1; }",
		 self->dir, variant->script);
	ASSERT_EQ(0, system(cmd)) {
		TH_LOG("making the image failed: %s", variant->script);
	}
}

FIXTURE_TEARDOWN(refimg)
{
	char cmd[128];

	if (self->dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf %s", self->dir);
		if (system(cmd))
			TH_LOG("could not remove %s", self->dir);
	}
}

#define REFIMG(bits) \
	MKIMG "-o cluster_size=4k,refcount_bits=" #bits " img.qcow2 1M\n" \
	QIO "-c 'write -P 0x11 0 8k' -c 'write -P 0x22 512k 4k' " \
	"-c 'write -z 64k 4k' -c 'write -P 0x33 1020k 4k' img.qcow2"

FIXTURE_VARIANT_ADD(refimg, refcount_bits_1) {
	.script = REFIMG(1), .refcount_order = 0,
};

FIXTURE_VARIANT_ADD(refimg, refcount_bits_2) {
	.script = REFIMG(2), .refcount_order = 1,
};

FIXTURE_VARIANT_ADD(refimg, refcount_bits_4) {
	.script = REFIMG(4), .refcount_order = 2,
};

FIXTURE_VARIANT_ADD(refimg, refcount_bits_8) {
	.script = REFIMG(8), .refcount_order = 3,
};

FIXTURE_VARIANT_ADD(refimg, refcount_bits_16) {
	.script = REFIMG(16), .refcount_order = 4,
};

FIXTURE_VARIANT_ADD(refimg, refcount_bits_32) {
	.script = REFIMG(32), .refcount_order = 5,
};

FIXTURE_VARIANT_ADD(refimg, refcount_bits_64) {
	.script = REFIMG(64), .refcount_order = 6,
};

/* Many refcount blocks: 512-byte clusters of 2-bit refcounts. */
FIXTURE_VARIANT_ADD(refimg, c512_refcount_bits_2_many_blocks) {
	.script = MKIMG "-o cluster_size=512,refcount_bits=2 img.qcow2 4M\n"
		  QIO "-c 'write -P 0x44 0 300k' -c 'write -P 0x45 2M 400k' "
		  "img.qcow2",
	.refcount_order = 1,
};

/* Compressed clusters share host clusters: one reference each. */
FIXTURE_VARIANT_ADD(refimg, c4k_compressed_refcount_bits_8) {
	.script = "qemu-img convert -c -f raw -O qcow2 "
		  "-o cluster_size=4k,refcount_bits=8 src.raw img.qcow2\n"
		  QIO "-c 'write -P 0x46 4k 4k' img.qcow2",
	.refcount_order = 3, .compressed = true,
};

FIXTURE_VARIANT_ADD(refimg, c512_compressed) {
	.script = "qemu-img convert -c -f raw -O qcow2 -o cluster_size=512 "
		  "src.raw img.qcow2",
	.refcount_order = 4, .compressed = true,
};

FIXTURE_VARIANT_ADD(refimg, c64k_extended_l2_compressed_refcount_bits_32) {
	.script = "qemu-img convert -c -f raw -O qcow2 -o cluster_size=64k,"
		  "extended_l2=on,refcount_bits=32 src.raw img.qcow2\n"
		  QIO "-c 'write -P 0x47 70k 2k' img.qcow2",
	.refcount_order = 5, .compressed = true,
};

/*
 * What qcow2_refcount_get() reads is what the metadata references: 1 for
 * the header, L1, refcount table and blocks, L2 tables and data
 * clusters, one per compressed range for shared compressed clusters, 0
 * past the end of the file.  `qemu-img check` agrees first.
 */
TEST_F(refimg, refcounts_are_the_references)
{
	u64 n, i, clusters, past = 0, shared = 0, meta;
	char cmd[256];
	struct qimg im;
	u64 *refs;

	snprintf(cmd, sizeof(cmd), "qemu-img check -q %s", self->path);
	ASSERT_EQ(0, system(cmd));
	qimg_open(_metadata, &im, self->path);
	ASSERT_EQ(variant->refcount_order, im.qi.refcount_order);
	clusters = im.file_size >> im.qi.cluster_bits;
	/* every entry of every refcount block, and one block beyond */
	n = (qcow2_reftable_bytes(&im.qi) / 8 + 1) *
	    qcow2_refblock_entries(&im.qi);
	if (n > 64 * clusters)
		n = 64 * clusters;
	refs = calloc(n, sizeof(*refs));
	ASSERT_NE(NULL, refs);
	qimg_count_refs(&im, refs, n);
	meta = 1 + 1 + 1;	/* header, an L1 and a refcount table cluster */
	EXPECT_EQ(1, qimg_refcount(&im, 0));
	EXPECT_EQ(1, qimg_refcount(&im, im.qi.l1_offset >> im.qi.cluster_bits));
	EXPECT_EQ(1, qimg_refcount(&im,
				   im.qi.reftable_offset >> im.qi.cluster_bits));
	EXPECT_EQ(1, qimg_refcount(&im, im.reftable[0] >> im.qi.cluster_bits));
	for (i = 0; i < n; i++) {
		u64 rc = qimg_refcount(&im, i);

		ASSERT_EQ(refs[i], rc) {
			TH_LOG("cluster %llu of %llu", (unsigned long long)i,
			       (unsigned long long)clusters);
		}
		if (i >= clusters)
			past += !rc;
		shared += rc > 1;
	}
	EXPECT_EQ(n - clusters, past);
	EXPECT_EQ(variant->compressed, shared > 0);
	/* the image's clusters are all in use: no holes */
	for (i = 0; i < clusters; i++)
		EXPECT_NE(0, refs[i]);
	EXPECT_LT(meta, clusters);
	free(refs);
	qimg_close(&im);
}

/*
 * Write a refcount with qcow2_refcount_set() into the image: `qemu-img
 * check` must read exactly that value for exactly that cluster.
 */
TEST_F(refimg, qemu_img_check_reads_a_set_refcount)
{
	/* bytes of distinct values, to see their order */
	static const u64 bump[7] = { 0, 3, 0xb, 0xa5, 0x0102, 0x01020304,
				     0x0102030405060708ULL };
	const u64 v = bump[variant->refcount_order];
	char cmd[512], out[160], *line, *save = NULL, want[96];
	u64 n, i, c = 0, ref, bn, *before;
	struct qimg im;
	u8 *block;
	FILE *f;
	int fd, lines = 0, found = 0, r;

	qimg_open(_metadata, &im, self->path);
	/* the first cluster of guest data, data or compressed */
	for (i = 0; i < im.qi.l1_size && !c; i++) {
		const u8 *l2 = im.file + im.l1[i];
		u64 j;

		for (j = 0; im.l1[i] && j < qcow2_l2_bytes(&im.qi) / 8 && !c;
		     j += im.qi.l2_entry_words) {
			u64 e = get_be64(l2 + 8 * j), len;

			if (e & QCOW2_OFLAG_COMPRESSED)
				qcow2_compressed_range(&im.qi, e, &c, &len);
			else
				c = e & QCOW2_OFFSET_MASK;
		}
	}
	ASSERT_NE(0, c);
	c >>= im.qi.cluster_bits;
	ref = qimg_refcount(&im, c);
	ASSERT_NE(v, ref);
	n = qcow2_refblock_entries(&im.qi);
	bn = im.reftable[c / n];
	ASSERT_NE(0, bn);
	block = malloc(im.qi.cluster_size);
	before = calloc(n, sizeof(*before));
	ASSERT_TRUE(block && before);
	memcpy(block, im.file + bn, im.qi.cluster_size);
	for (i = 0; i < n; i++)
		before[i] = qcow2_refcount_get(&im.qi, block, i);
	qcow2_refcount_set(&im.qi, block, c % n, v);
	for (i = 0; i < n; i++)
		ASSERT_EQ(i == c % n ? v : before[i],
			  qcow2_refcount_get(&im.qi, block, i));
	fd = open(self->path, O_WRONLY);
	ASSERT_LE(0, fd);
	ASSERT_EQ((ssize_t)im.qi.cluster_size,
		  pwrite(fd, block, im.qi.cluster_size, bn));
	close(fd);

	snprintf(cmd, sizeof(cmd), "qemu-img check %s 2>&1", self->path);
	f = popen(cmd, "r");
	ASSERT_NE(NULL, f);
	snprintf(want, sizeof(want), "cluster %llu refcount=%llu reference=%llu",
		 (unsigned long long)c, (unsigned long long)v,
		 (unsigned long long)ref);
	while (fgets(out, sizeof(out), f)) {
		char tag[32];

		line = strtok_r(out, "\n", &save);
		if (!line || !strstr(line, "refcount="))
			continue;
		lines++;
		found += !!strstr(line, want);
		/* every complaint is about that cluster and that value */
		snprintf(tag, sizeof(tag), " refcount=%llu",
			 (unsigned long long)v);
		EXPECT_NE(NULL, strstr(line, tag)) {
			TH_LOG("%s", line);
		}
		if (!strstr(line, "l2_entry="))
			EXPECT_NE(NULL, strstr(line, want)) {
				TH_LOG("%s", line);
			}
	}
	r = pclose(f);
	EXPECT_NE(0, r);	/* leaks or errors */
	EXPECT_EQ(1, found) {
		TH_LOG("no \"%s\"", want);
	}
	EXPECT_LE(1, lines);
	free(before);
	free(block);
	qimg_close(&im);
}

TEST_HARNESS_MAIN

/* Bit 0 is "always 0" with extended L2: a reused cluster's entry drops it. */
TEST(extended_l2_cow_in_place_clears_the_ignored_zero_bit)
{
	struct qcow2_info qi;
	struct qcow2_wplan p;

	qi_for(_metadata, 16, true, 16 * MB, &qi);
	plan(&qi, DATA(MB) | QCOW2_OFLAG_ZERO, SC_ALLOC(0), SC2K, 512, &p);
	EXPECT_EQ(QCOW2_W_COW, p.kind);
	EXPECT_FALSE(p.alloc);
	EXPECT_EQ(DATA(MB), p.new_entry);
}

/* 2K subclusters on a 4K-block file: the COW range widens to the block. */
TEST(plan_align_widens_to_the_block_keeping_allocated_neighbours)
{
	const u64 bm = SC_ALLOC(3) | SC_ZERO(6);
	const u64 l2[2] = { DATA(MB), bm };
	struct qcow2_info qi;
	struct qcow2_wplan p;

	qi_for(_metadata, 16, true, 16 * MB, &qi);
	/* subcluster 2, unallocated: its block also holds allocated 3 */
	plan(&qi, DATA(MB), bm, 2 * SC2K + 512, 512, &p);
	ASSERT_EQ(QCOW2_W_COW, p.kind);
	EXPECT_EQ(2 * SC2K, p.wbegin);
	EXPECT_EQ(3 * SC2K, p.wend);
	qcow2_plan_align(&qi, l2, 4096, &p);
	EXPECT_EQ(2 * SC2K, p.wbegin);
	EXPECT_EQ(4 * SC2K, p.wend);
	EXPECT_EQ(QCOW2_SRC_BACKING, p.src[2]);
	EXPECT_EQ(QCOW2_SRC_HOST, p.src[3]);
	EXPECT_EQ(MB, p.src_host);
	/* the bitmap still allocates only what the write covered */
	EXPECT_EQ(bm | SC_ALLOC(2), p.new_bitmap);
	/* subcluster 7: the block holds zero subcluster 6, filled with zeros */
	plan(&qi, DATA(MB), bm, 7 * SC2K, SC2K, &p);
	qcow2_plan_align(&qi, l2, 4096, &p);
	EXPECT_EQ(6 * SC2K, p.wbegin);
	EXPECT_EQ(8 * SC2K, p.wend);
	EXPECT_EQ(QCOW2_SRC_NONE, p.src[6]);
	EXPECT_EQ(SC_ZERO(6), p.new_bitmap >> 32 << 32);
}

TEST(plan_align_leaves_aligned_and_in_place_plans_alone)
{
	const u64 l2[2] = { DATA(MB), SC_ALL };
	struct qcow2_info qi;
	struct qcow2_wplan p, q;

	qi_for(_metadata, 16, true, 16 * MB, &qi);
	plan(&qi, DATA(MB), SC_ALL, 0, 512, &p);
	ASSERT_EQ(QCOW2_W_INPLACE, p.kind);
	q = p;
	qcow2_plan_align(&qi, l2, 4096, &p);
	EXPECT_EQ(0, memcmp(&p, &q, sizeof(p)));
	plan(&qi, 0, 0, 4 * SC2K, 2 * SC2K, &p);
	ASSERT_EQ(QCOW2_W_COW, p.kind);
	q = p;
	qcow2_plan_align(&qi, l2, 4096, &p);
	EXPECT_EQ(0, memcmp(&p, &q, sizeof(p)));
}

/* ---------------------------------------------------------------- */
/* Encoding tables and patching the header                          */
/* ---------------------------------------------------------------- */

/*
 * Big-endian words; the copied flag only on a non-zero entry whose bit is
 * set; past the table's end, zeros; a window starting mid-table.
 */
TEST(table_encoding_is_big_endian_with_copied_from_the_bitmap)
{
	const u64 ent[3] = { 0x10000, 0, 0x30000 };
	unsigned long copied[1] = { 0x3 };	/* entries 0 and 1 */
	u8 out[4 * 8];

	memset(out, 0xaa, sizeof(out));
	qcow2_encode_table(ent, 3, 0, 4, copied, out);
	EXPECT_EQ(0x10000 | QCOW2_OFLAG_COPIED, get_be64(out));
	EXPECT_EQ(0, get_be64(out + 8));
	EXPECT_EQ(0x30000, get_be64(out + 16));
	EXPECT_EQ(0, get_be64(out + 24));

	qcow2_encode_table(ent, 3, 0, 3, NULL, out);
	EXPECT_EQ(0x10000, get_be64(out));

	memset(out, 0xaa, sizeof(out));
	qcow2_encode_table(ent, 3, 2, 2, copied, out);
	EXPECT_EQ(0x30000, get_be64(out));
	EXPECT_EQ(0, get_be64(out + 8));
	EXPECT_EQ(0xaa, out[16]);	/* nothing past @count words */
}

/* A copied bit past the first long of the bitmap is found too. */
TEST(table_encoding_reads_every_long_of_the_bitmap)
{
	const unsigned int bpl = 8 * sizeof(unsigned long);
	unsigned long copied[2] = { 0, 1UL };	/* entry bpl */
	u64 ent[2 * 64];
	u8 out[8];
	unsigned int i;

	for (i = 0; i < 2 * bpl; i++)
		ent[i] = (u64)(i + 1) << 16;
	qcow2_encode_table(ent, 2 * bpl, bpl, 1, copied, out);
	EXPECT_EQ(ent[bpl] | QCOW2_OFLAG_COPIED, get_be64(out));
	qcow2_encode_table(ent, 2 * bpl, bpl - 1, 1, copied, out);
	EXPECT_EQ(ent[bpl - 1], get_be64(out));
}

TEST(header_reftable_patch_writes_both_fields_and_parses_back)
{
	u8 buf[512], before[512];
	struct qcow2_info qi;
	const char *err = NULL;
	u32 cb = 16;
	u64 cs = 1ULL << cb, file = 16 * cs;
	u8 *img = calloc(1, file);
	unsigned int i;

	ASSERT_NE(NULL, img);
	for (i = 0; i < sizeof(buf); i++)
		buf[i] = i * 7;
	memcpy(before, buf, sizeof(buf));
	ASSERT_EQ(0, qcow2_header_set_reftable(buf, sizeof(buf),
					       0x123456789a00ULL, 3));
	EXPECT_EQ(0x123456789a00ULL, get_be64(buf + 48));
	EXPECT_EQ(0, buf[56]);
	EXPECT_EQ(0, buf[57]);
	EXPECT_EQ(0, buf[58]);
	EXPECT_EQ(3, buf[59]);
	EXPECT_EQ(0, memcmp(buf, before, 48));
	EXPECT_EQ(0, memcmp(buf + 60, before + 60, sizeof(buf) - 60));

	/* Too short to hold the size field: refused, nothing written. */
	memcpy(buf, before, sizeof(buf));
	EXPECT_EQ(-EINVAL, qcow2_header_set_reftable(buf, 59, 0x200, 1));
	EXPECT_EQ(0, memcmp(buf, before, sizeof(buf)));

	/* The parser reads back what was patched. */
	put_be(img + F_MAGIC, 4, 0x514649fb);
	put_be(img + F_VERSION, 4, 3);
	put_be(img + F_CLUSTER_BITS, 4, cb);
	put_be(img + F_REFCOUNT_ORDER, 4, 4);
	put_be(img + F_HEADER_LENGTH, 4, 104);
	put_be(img + F_RT_OFFSET, 8, cs);
	put_be(img + F_RT_CLUSTERS, 4, 1);
	ASSERT_EQ(0, qcow2_header_set_reftable(img, 512, 4 * cs, 2));
	ASSERT_EQ(0, qcow2_parse_header(img, cs, file, &qi, &err)) {
		TH_LOG("%s", err);
	}
	EXPECT_EQ(4 * cs, qi.reftable_offset);
	EXPECT_EQ(2, qi.reftable_clusters);
	free(img);
}

TEST(header_bits_are_set_then_cleared_in_one_field_only)
{
	u8 buf[512], before[512];

	memset(buf, 0x11, sizeof(buf));
	put_be(buf + QCOW2_HDR_INCOMPAT, 8, 0x5);
	memcpy(before, buf, sizeof(buf));
	ASSERT_EQ(0, qcow2_header_update_bits(buf, sizeof(buf),
					      QCOW2_HDR_INCOMPAT, 0x2, 0x1));
	EXPECT_EQ(0x6, get_be64(buf + QCOW2_HDR_INCOMPAT));
	EXPECT_EQ(0, memcmp(buf, before, QCOW2_HDR_INCOMPAT));
	EXPECT_EQ(0, memcmp(buf + QCOW2_HDR_INCOMPAT + 8,
			    before + QCOW2_HDR_INCOMPAT + 8,
			    sizeof(buf) - QCOW2_HDR_INCOMPAT - 8));
	/* A bit both set and cleared ends clear; ~0 clears everything. */
	ASSERT_EQ(0, qcow2_header_update_bits(buf, sizeof(buf),
					      QCOW2_HDR_AUTOCLEAR, 0x8, 0x8));
	EXPECT_EQ(0x1111111111111111ULL & ~0x8ULL,
		  get_be64(buf + QCOW2_HDR_AUTOCLEAR));
	ASSERT_EQ(0, qcow2_header_update_bits(buf, sizeof(buf),
					      QCOW2_HDR_AUTOCLEAR, 0, ~0ULL));
	EXPECT_EQ(0, get_be64(buf + QCOW2_HDR_AUTOCLEAR));

	/* A field past the buffer: refused, nothing written. */
	memcpy(buf, before, sizeof(buf));
	EXPECT_EQ(-EINVAL, qcow2_header_update_bits(buf, 79, 72, 1, 0));
	EXPECT_EQ(-EINVAL, qcow2_header_update_bits(buf, 4, 0, 1, 0));
	EXPECT_EQ(0, memcmp(buf, before, sizeof(buf)));
}

/* 64 KiB clusters with extended L2: 32 subclusters of 2 KiB. */
TEST(subcluster_run_stops_where_allocation_changes)
{
	struct qcow2_info qi;
	u64 cs, ss, base;

	qi_for(_metadata, 16, true, 1ULL << 20, &qi);
	cs = qi.cluster_size;
	ss = 1ULL << qi.subcluster_bits;
	ASSERT_EQ(2048, ss);
	base = 5 * cs;		/* the guest cluster does not matter */

	/* Subclusters 0-2 allocated, the rest not. */
	EXPECT_EQ(3 * ss, qcow2_subcluster_run(&qi, 0x7, base, cs));
	EXPECT_EQ(3 * ss - (ss + 512),
		  qcow2_subcluster_run(&qi, 0x7, base + ss + 512, 2 * ss));
	/* Unallocated first: the run ends at the next allocated one. */
	EXPECT_EQ(ss, qcow2_subcluster_run(&qi, 0x2, base, 4 * ss));
	/* All alike: the whole length, to the cluster's last byte. */
	EXPECT_EQ(2 * ss, qcow2_subcluster_run(&qi, 0, base + 30 * ss,
					       2 * ss));
	EXPECT_EQ(cs, qcow2_subcluster_run(&qi, 0xffffffffULL, base, cs));
	/* The zero bits (high half) play no part. */
	EXPECT_EQ(cs, qcow2_subcluster_run(&qi, 0xffffffff00000000ULL,
					   base, cs));
	/* One sector. */
	EXPECT_EQ(512, qcow2_subcluster_run(&qi, 0x1, base + 1024, 512));
}
