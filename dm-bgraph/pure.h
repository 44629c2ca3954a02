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
#else
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <string.h>
#include <stdio.h>
#include <stdarg.h>
#include <linux/types.h>

typedef __u64 u64;
typedef __u32 u32;
typedef __u16 u16;
typedef __u8 u8;

/* __printf() comes from the unit tests' command line (selftests/unit). */

#ifndef ARRAY_SIZE
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#endif
#ifndef BIT
#define BIT(n) (1UL << (n))
#endif
#ifndef BIT_ULL
#define BIT_ULL(n) (1ULL << (n))
#endif
#define U64_MAX UINT64_MAX
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
 */
struct bg_opt_args {
	char text[256];
	int len;
	unsigned int count;
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
