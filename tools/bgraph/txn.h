/* SPDX-License-Identifier: GPL-2.0 */
/*
 * bgraph's pure part for transaction: QMP's transaction JSON,
 *   {"actions": [{"type": "blockdev-snapshot-sync",
 *                 "data": {"node-name": N, "snapshot-file": PATH,
 *                          "snapshot-node-name": NAME, "format": "qcow2"}},
 *                ...]}
 * parsed and checked into a list of snapshots that bgraph takes at one
 * instant, all or nothing.  No system calls (selftests/unit/test_bgraph_txn.c
 * runs this very code): whether the nodes exist and the files do not is
 * the caller's to check.
 */
#ifndef BGRAPH_TXN_H
#define BGRAPH_TXN_H

#include <stdbool.h>
#include <stddef.h>

#include "plan.h"

#define BG_TXN_MAX	16	/* snapshots in one transaction */
#define BG_TXN_PATH_MAX	4096

/* One blockdev-snapshot-sync: @name is "" when none was given. */
struct bg_txn_snap {
	char node[BG_NAME_MAX + 1];
	char file[BG_TXN_PATH_MAX];
	char name[BG_USER_NAME_MAX + 1];
};

struct bg_txn {
	struct bg_txn_snap snap[BG_TXN_MAX];
	unsigned int n;
};

/*
 * bg_txn_parse() - parse @text (@len bytes; @source names it in errors)
 * into @t.  Refused, with @err's node and one-line reason: malformed JSON,
 * members QMP's schema does not have, no actions or more than BG_TXN_MAX,
 * an action type other than blockdev-snapshot-sync, a missing or mistyped
 * node-name (or device) or snapshot-file, a format other than qcow2, a
 * mode other than absolute-paths, an invalid snapshot-node-name, two
 * actions on one node, one snapshot file or one snapshot-node-name.
 */
int bg_txn_parse(struct bg_txn *t, const char *text, size_t len,
		 const char *source, struct bg_err *err);

#endif /* BGRAPH_TXN_H */
