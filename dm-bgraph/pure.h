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
#else
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <string.h>
#include <stdio.h>

typedef uint64_t u64;
typedef uint32_t u32;
typedef uint16_t u16;
typedef uint8_t u8;

#ifndef ARRAY_SIZE
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#endif
#ifndef BIT
#define BIT(n) (1UL << (n))
#endif
#define U64_MAX UINT64_MAX
#endif /* __KERNEL__ */

/*
 * BG_EMIT() - append to a text buffer with snprintf() semantics: @len
 * counts what the whole text needs even when @buf (of @size bytes) is too
 * small or NULL with @size 0, so one pass sizes and a second one fills.
 */
#define BG_EMIT(buf, size, len, ...)					\
	((len) += snprintf((buf) ? (buf) + ((size_t)(len) < (size) ? (size_t)(len) : (size)) : NULL, \
			   (buf) && (size_t)(len) < (size) ? (size) - (size_t)(len) : 0, \
			   __VA_ARGS__))

#endif /* DM_BGRAPH_PURE_H */
