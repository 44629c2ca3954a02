/* SPDX-License-Identifier: GPL-2.0 */
/* bgraph's verbs, shared between its files. */
#ifndef BGRAPH_BGRAPH_H
#define BGRAPH_BGRAPH_H

enum bg_show_fmt { BG_SHOW_TEXT, BG_SHOW_JSON, BG_SHOW_DOT, BG_SHOW_SVG };

/* "bgraph: <node>: <reason>" on stderr; returns 1, the exit status. */
__attribute__((format(printf, 2, 3)))
int bg_error(const char *node, const char *fmt, ...);

/* bgraph show [NODE] [--json | --dot | --svg FILE] */
int bg_show(const char *node, enum bg_show_fmt fmt, const char *svg);

/* bgraph snapshot NODE --overlay PATH [--node-name NAME] [--format qcow2] */
int bg_snapshot(const char *node, const char *overlay, const char *name,
		const char *format);

#endif /* BGRAPH_BGRAPH_H */
