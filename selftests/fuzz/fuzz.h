/* SPDX-License-Identifier: GPL-2.0 */
/* What every libFuzzer harness here shares. */
#ifndef BGRAPH_FUZZ_H
#define BGRAPH_FUZZ_H

#include <stdio.h>
#include <stdlib.h>

/* A broken invariant: say which, and abort (libFuzzer keeps the input). */
#define CHECK(cond) do {						\
	if (!(cond)) {							\
		fprintf(stderr, "%s:%d: CHECK failed: %s\n",		\
			__FILE__, __LINE__, #cond);			\
		abort();						\
	}								\
} while (0)

#endif
