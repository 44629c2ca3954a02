/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Types for the pure-logic files of dm-bgraph: the files that build both
 * into the kernel module and into the host unit tests and fuzzers.  They
 * include only this header, never a kernel-only one.
 */
#ifndef DM_BGRAPH_PURE_H
#define DM_BGRAPH_PURE_H

#ifdef __KERNEL__
#include <linux/types.h>
#include <linux/errno.h>
#include <linux/kernel.h>
#include <linux/string.h>
#include <linux/bits.h>
#include <linux/compiler.h>
#include <linux/math64.h>
#ifdef BG_HAVE_LINUX_UNALIGNED		/* 6.12 moved it; see Kbuild */
#include <linux/unaligned.h>
#else
#include <asm/unaligned.h>
#endif
#else
/*
 * The user-space build (host unit tests, fuzzers) forces
 * selftests/lib/uspace.h in first: the kernel's types and the helpers the
 * pure files call (kstrtou64(), get_unaligned_be64(), mul_u64_u64_div_u64()
 * ...), so that the pure files use the kernel's own helpers and nothing
 * of theirs is written twice.
 */
#ifndef BGRAPH_USPACE_H
#error "user-space builds of the pure files need -include selftests/lib/uspace.h"
#endif
#endif /* __KERNEL__ */

/*
 * bg_emit() - append printf-style text at @len to @buf (of @size bytes) and
 * return the new length.  snprintf() semantics: the length counts the whole
 * text even when @buf is too small, or NULL with @size 0, so one pass can
 * measure and another fill.  Defined in text.c.
 */
__printf(4, 5)
int bg_emit(char *buf, size_t size, int len, const char *fmt, ...);

/**
 * struct bg_opt_args - the optional arguments of a table line being written,
 * "[<#opt_args> <opt_args>...]": words added one option at a time with
 * bg_opt_add(), then written with their count by bg_opt_emit().
 * @text:	the words, each after a space
 * @len:	the length of @text (bg_emit() semantics: may pass its size)
 * @count:	how many words
 * @overflow:	an option did not fit and was left out, with every later
 *		one.  Never for the kinds' options: the longest line any
 *		kind writes (qcow2's, with a backing name of BG_NAME_LEN - 1
 *		characters and every option) takes under half of @text, a
 *		host unit test checks it (test_parse.c).
 */
struct bg_opt_args {
	char text[512];
	int len;
	unsigned int count;
	bool overflow;
};

/*
 * bg_opt_add() - append one option (a key and its values, separated by
 * single spaces, such as "backing %s") to @o; its words are counted.
 */
__printf(2, 3)
void bg_opt_add(struct bg_opt_args *o, const char *fmt, ...);

/*
 * bg_opt_emit() - append " <count> <words>" of @o to @buf (bg_emit()
 * semantics), or nothing when no option was added.
 */
int bg_opt_emit(char *buf, size_t size, int len, const struct bg_opt_args *o);

#endif /* DM_BGRAPH_PURE_H */
