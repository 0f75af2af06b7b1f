/*
 * lkvm sandbox's scratch folder: made for one run (the guest's writable
 * /tmp, with the job file the guest's init reads), removed after it.
 * Library code: errors are values (err_set).
 */
#ifndef LKVM_SCRATCH_H
#define LKVM_SCRATCH_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

struct scratch {
	char path[PATH_MAX];	/* the folder made, removed by scratch_remove() */
	char share[PATH_MAX + 8];	/* the guest's /tmp: what --9p shares */
	int parent;		/* descriptor of the folder path was made in ($TMPDIR); -1 */
	char name[NAME_MAX + 1];	/* path's name there */
};

/* The job file in the guest's /tmp: cwd, then argv, NUL-separated. */
#define SCRATCH_JOB ".lkvm-sandbox"

/* Make the folder under $TMPDIR (else /tmp) with the job's len bytes in it: 0, or -1 with err set. */
int scratch_create(struct scratch *sc, const void *job, size_t len);
/* Remove it and everything the guest left there: 0, or -1 with err set if something had to stay. */
int scratch_remove(struct scratch *sc);

/* Tests: called at named moments ("made", "job-written", "remove"), with a path or a name. */
extern void (*scratch_hook)(const char *moment, const char *what);

#endif
