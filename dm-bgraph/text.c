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

void bg_opt_add(struct bg_opt_args *o, const char *fmt, ...)
{
	size_t at = o->len, room;
	const char *c;
	va_list ap;
	int n;

	if (at + 1 >= sizeof(o->text)) {
		o->overflow = true;	/* a line is never cut in a word */
		return;
	}
	room = sizeof(o->text) - at - 1;
	va_start(ap, fmt);
	n = vsnprintf(o->text + at + 1, room, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= room) {
		o->text[at] = '\0';
		o->len = sizeof(o->text);	/* nothing more is added */
		o->overflow = true;
		return;
	}
	o->text[at] = ' ';
	for (c = o->text + at; *c; c++)
		o->count += *c == ' ';
	o->len = at + 1 + n;
}

int bg_opt_emit(char *buf, size_t size, int len, const struct bg_opt_args *o)
{
	if (!o->count)
		return len;
	return bg_emit(buf, size, len, " %u%s", o->count, o->text);
}
