/* SPDX-License-Identifier: GPL-2.0 */
/* bgraph's verbs, shared between its files. */
#ifndef BGRAPH_BGRAPH_H
#define BGRAPH_BGRAPH_H

#include <stddef.h>

enum bg_show_fmt { BG_SHOW_TEXT, BG_SHOW_JSON, BG_SHOW_DOT, BG_SHOW_SVG };

/* "bgraph: <node>: <reason>" on stderr; returns 1, the exit status. */
__attribute__((format(printf, 2, 3)))
int bg_error(const char *node, const char *fmt, ...);

/* bgraph show [NODE] [--json | --dot | --svg FILE] */
int bg_show(const char *node, enum bg_show_fmt fmt, const char *svg);

/* bgraph snapshot NODE --overlay PATH [--node-name NAME] [--format qcow2] */
int bg_snapshot(const char *node, const char *overlay, const char *name,
		const char *format);

/* add's work on a JSON text; @top gets the top's name (or the id). */
int bg_add_text(const char *text, size_t len, const char *source,
		char *top, size_t topsize);
/* FILE's contents, or stdin's for "-"; NULL with errno. */
char *read_input(const char *file, size_t *len);
/* bgraph del NAME */
int cmd_del(const char *name);

/* bgraph snapshot --below-filters ID --overlay-dir DIR */
int bg_snapshot_below(const char *id, const char *dir);
/* bgraph insert (--above NODE | --edge PARENT:ROLE) FILTER.json */
int bg_insert(const char *above, const char *edge, const char *file);
/* bgraph remove-filter NODE */
int bg_remove_filter(const char *node);

/* bgraph reopen NODE key=value... */
int bg_reopen(const char *node, int argc, char **argv);

#endif /* BGRAPH_BGRAPH_H */
