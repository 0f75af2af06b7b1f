/*
 * What the disk-image fuzz targets share: a fatal failure that names the
 * target (define FUZZ_NAME before including), and a per-input timeout, since
 * the device must never hang.
 */
#ifndef LKVM_FUZZ_HARNESS_H
#define LKVM_FUZZ_HARNESS_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "util.h"

/* A broken property: say which and abort, so libFuzzer keeps the input. */
static void fail(const char *fmt, ...) PRINTF(1, 2);
static void fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, FUZZ_NAME ": ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	abort();
}

/* Call from LLVMFuzzerInitialize(): appends -timeout=30 to libFuzzer's arguments. */
static void fuzz_add_timeout(int *argc, char ***argv)
{
	for (int i = 1; i < *argc; i++)
		if (!strncmp((*argv)[i], "-timeout=", 9))
			return;
	char **v = calloc(*argc + 2, sizeof(*v));
	memcpy(v, *argv, *argc * sizeof(*v));
	v[(*argc)++] = "-timeout=30";
	*argv = v;
}

#endif
