// SPDX-License-Identifier: GPL-2.0
/*
 * Text output shared by the configfs files and the pure-logic formatters.
 * Pure logic; see pure.h.
 */
#include "pure.h"

int bg_emit(char *buf, size_t size, int len, const char *fmt, ...)
{
	size_t at = buf && (size_t)len < size ? (size_t)len : size;
	va_list ap;

	va_start(ap, fmt);
	len += vsnprintf(buf ? buf + at : NULL, buf ? size - at : 0, fmt, ap);
	va_end(ap);
	return len;
}
