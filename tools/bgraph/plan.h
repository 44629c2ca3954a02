/* SPDX-License-Identifier: GPL-2.0 */
/*
 * bgraph's pure part: a node tree in QMP blockdev-add's JSON shape turned
 * into an ordered list of nodes, children first, each with the dm table it
 * will get.  No system calls here: what the plan needs to know about the
 * running system (existing nodes, device numbers, sizes, image headers) is
 * asked through struct bg_env or filled in by the caller, so that the host
 * unit tests (selftests/unit/test_bgraph_plan.c) run this very code.
 *
 * Every function that can refuse returns -1 and fills a struct bg_err with
 * the node it is about and a one-line reason; bgraph prints it as
 * "bgraph: <node>: <reason>".
 */
#ifndef BGRAPH_PLAN_H
#define BGRAPH_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BG_NAME_MAX	127	/* DM_NAME_LEN - 1 */
#define BG_USER_NAME_MAX 31	/* QEMU's node-name limit */
#define BG_MAX_CHILDREN	16	/* bgraph-quorum's */
#define BG_MAX_CHAIN	64	/* backing files opened from headers */

enum bg_driver {
	BG_FILE,		/* a loop device over a regular file */
	BG_HOST_DEVICE,		/* a block device */
	BG_RAW,
	BG_QCOW2,
	BG_THROTTLE,
	BG_QUORUM,
	BG_REF,			/* an existing node, named by reference */
};

enum bg_discard { BG_DISCARD_IGNORE, BG_DISCARD_UNMAP };
enum bg_dz { BG_DZ_OFF, BG_DZ_ON, BG_DZ_UNMAP };

enum bg_backing {
	BG_BACKING_HEADER,	/* "backing" omitted: the image header's */
	BG_BACKING_NONE,	/* "backing": null */
	BG_BACKING_NODE,	/* an object or a reference */
};

enum bg_read_pattern { BG_RP_QUORUM, BG_RP_FIFO };

struct bg_node;

/* An edge: its role ("file", "backing", "children.N") and its child. */
struct bg_edge {
	char role[16];
	struct bg_node *child;
	char *ref;		/* the name given, for a reference */
};

struct bg_node {
	char name[BG_NAME_MAX + 1];
	enum bg_driver driver;
	bool implicit;		/* nested object or header: a generated name */
	bool from_header;	/* opened from a qcow2 header's backing name */
	struct bg_node *parent;	/* of an implicit node: its maker */

	/* The options common to every node, and which were given. */
	bool read_only, read_only_set;
	enum bg_discard discard;
	bool discard_set;
	enum bg_dz detect_zeroes;
	bool detect_zeroes_set;

	/* Driver options. */
	char *filename;				/* file, host_device */
	uint64_t offset, size;			/* raw */
	bool has_offset, has_size;
	enum bg_backing backing;		/* qcow2 */
	uint64_t l2_cache_size;			/* qcow2, 0: default */
	char *group;				/* throttle */
	unsigned int threshold;			/* quorum */
	enum bg_read_pattern read_pattern;
	bool rewrite_corrupted, blkverify;

	struct bg_edge *edges;
	unsigned int nedges;

	/* Filled in while the plan is carried out (or by the tests). */
	char dev[32];		/* the node's major:minor */
	char leaf_dev[32];	/* file: its loop device, host_device: the device */
	uint64_t bytes;		/* the node's size */
	bool header_read;	/* qcow2: backing chain expanded */

	int mark;		/* ordering */
	int chain;		/* backing files above it opened from headers */
};

/* What the plan asks of the running system. */
struct bg_env {
	/*
	 * Is @name a node (configfs nodes/<name>) or any dm device now?  A
	 * new node may not take such a name.
	 */
	bool (*name_used)(void *arg, const char *name);
	/*
	 * Fill @n (a BG_REF) from the existing node @n->name: dev, bytes,
	 * read_only, and filename if it is a file bgraph made (else NULL).
	 * Returns false when there is no such node.
	 */
	bool (*lookup)(void *arg, struct bg_node *n);
	void *arg;
};

struct bg_err {
	char node[BG_NAME_MAX + 1];
	char msg[512];
};

/* Fill @err ("<node>: <msg>"; node "-" if NULL); returns -1. */
__attribute__((format(printf, 3, 4)))
int bg_fail(struct bg_err *err, const char *node, const char *fmt, ...);

struct json_object;

/*
 * bg_json_parse() - @text (@len bytes, from @source) as one strict JSON
 * value with only white space after it, or NULL with the reason in @err.
 */
struct json_object *bg_json_parse(const char *text, size_t len,
				  const char *source, struct bg_err *err);

struct bg_plan {
	struct bg_node **all;	/* every node made, refs included */
	unsigned int nall;
	struct bg_node **order;	/* to create, children first */
	unsigned int norder;
	struct bg_node *top;
	char *id;		/* the guest device's name, or NULL */
};

/*
 * bg_plan_parse() - parse @text (@len bytes of JSON; @source names it in a
 * syntax error) into @p: validate every option, give implicit children
 * their names, inherit options, resolve references (to nodes of the tree
 * or, through @env, to existing nodes), refuse name collisions, cycles and
 * options the kernel does not implement, and order the nodes children
 * first.  On error @p holds what was made: free it with bg_plan_free().
 */
int bg_plan_parse(struct bg_plan *p, const char *text, size_t len,
		  const char *source, const struct bg_env *env,
		  struct bg_err *err);

void bg_plan_free(struct bg_plan *p);

/*
 * bg_reopen_inherit() - a reopen set options of @n (and its *_set flags say
 * which it now sets itself): pass read-only, discard and detect-zeroes on
 * to the children that inherit from @n -- implicit nodes @n made (their
 * ->parent is @n, reached by an edge that is not a reference) -- as
 * bg_plan_parse() did at add, recursively, unless a child sets an option
 * itself (QEMU's bdrv_reopen_queue_child()).  A child given by reference
 * inherits nothing.
 */
void bg_reopen_inherit(struct bg_node *n);

/*
 * bg_io_opts_check() - @n's discard and detect-zeroes together, as QEMU
 * checks them: detect-zeroes unmap needs discard unmap.
 */
int bg_io_opts_check(const struct bg_node *n, struct bg_err *err);

/* The name of @n's child of @role, the node, or NULL. */
struct bg_node *bg_node_child(const struct bg_node *n, const char *role);

/*
 * bg_node_image_name() - the file name an image node stands on: its own
 * (file, host_device), else its "file" child's, down through filters; NULL
 * if there is none (a reference to a node bgraph did not make).
 */
const char *bg_node_image_name(const struct bg_node *n);

/*
 * bg_qcow2_header() - read the qcow2 header in @buf (the first @len bytes
 * of @n's file child, @file_size bytes long) for @n: sets @n->bytes to the
 * virtual size rounded up to a sector, and, when @n's backing comes from
 * the header and the header names one, copies the name and format to
 * @bname (of QCOW2 1024 bytes) and @bfmt (16 bytes); else @bname is "".
 * Returns the bytes it needs when @len is too short (call again), 0 when
 * done, -1 on error.
 */
long bg_qcow2_header(struct bg_node *n, const uint8_t *buf, size_t len,
		     uint64_t file_size, char *bname, char *bfmt,
		     struct bg_err *err);

/*
 * bg_plan_add_backing() - @q's backing is @bname of format @bfmt from its
 * header: add the implicit, read-only nodes for it (a qcow2 or raw node
 * and its file) to @p, just before @q in the order.  A relative @bname is
 * taken against the directory of @q's image (bg_node_image_name()).
 */
int bg_plan_add_backing(struct bg_plan *p, struct bg_node *q,
			const char *bname, const char *bfmt,
			struct bg_err *err);

/*
 * bg_node_size() - set @n->bytes of a raw, throttle or quorum node from
 * its children's, checking offset, size and that children agree.
 */
int bg_node_size(struct bg_node *n, struct bg_err *err);

/* The dm target type of @n's table: "bgraph-raw", ... */
const char *bg_node_target(const struct bg_node *n);

/*
 * bg_node_params() - write the target's parameters of @n's table (the
 * children as their dev) to @buf (snprintf() semantics).
 */
int bg_node_params(const struct bg_node *n, char *buf, size_t size);

/*
 * bg_id_params() - the table parameters of the guest device over @top, a
 * bgraph-raw passthrough.
 */
int bg_id_params(const struct bg_node *top, char *buf, size_t size);

/* The name of a driver, "file", ... */
const char *bg_driver_name(enum bg_driver d);

/* QEMU's id rule: a letter, then letters, digits, '-', '.', '_'. */
bool bg_name_valid(const char *s, size_t max);

#endif /* BGRAPH_PLAN_H */
