/* SPDX-License-Identifier: GPL-2.0 */
/* bgraph's verbs, shared between its files. */
#ifndef BGRAPH_BGRAPH_H
#define BGRAPH_BGRAPH_H

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

struct bg_dm_target;

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

/* bgraph transaction FILE|- */
int bg_transaction(const char *file);

/* Replace the token @from of table @params by @to; 0 if it was there. */
int bg_replace_dev(char *params, size_t size, const char *from, const char *to);

/*
 * The record of the change in progress, /run/bgraph/change.json
 * (journal.c): begun by the verb (false if one is begun already: a nested
 * add), filled, written (atomically) before the change touches what it
 * names, removed by bg_jr_end() once the change is done or undone.
 */
extern struct json_object *bg_jr;
bool bg_jr_begin(const char *verb);
void bg_jr_set(const char *key, struct json_object *v);
void bg_jr_list(const char *key, const char *value);
void bg_jr_parent(const char *name, const struct bg_dm_target *old,
		  const struct bg_dm_target *new);
int bg_jr_write(const char *step);
void bg_jr_end(void);

/*
 * The flock of the verbs that change the graph, then recovery from a
 * record left by a killed bgraph; bgraph recover.  0 or 1 (error line).
 */
int bg_lock(void);
int bg_recover(void);

/* Test hook: BGRAPH_TEST_KILL=N|NAME|list (SIGKILL after that step). */
__attribute__((format(printf, 1, 2)))
void bg_test_step(const char *fmt, ...);

#endif /* BGRAPH_BGRAPH_H */
