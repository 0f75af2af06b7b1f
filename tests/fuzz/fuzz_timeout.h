/* libFuzzer targets whose device must never hang: a per-input timeout unless the caller gave one. */
#ifndef LKVM_FUZZ_TIMEOUT_H
#define LKVM_FUZZ_TIMEOUT_H

#include <stdlib.h>
#include <string.h>

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
