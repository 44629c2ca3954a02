/* SPDX-License-Identifier: GPL-2.0 */
/* Forced into every user-space build of the module's pure-logic files. */
#ifndef BGRAPH_USPACE_H
#define BGRAPH_USPACE_H
#ifndef __printf
#define __printf(a, b) __attribute__((format(printf, a, b)))
#endif
#endif
