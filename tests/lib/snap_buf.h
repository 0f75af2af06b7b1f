/*
 * A snapshot written to an unlinked temporary file and read back into memory,
 * for the unit tests that save state and then load, corrupt or inspect it.
 */
#ifndef LKVM_TESTS_SNAP_BUF_H
#define LKVM_TESTS_SNAP_BUF_H

#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include "snapshot.h"
#include "util.h"

/* The writer; *fd is its file, for snap_buf_close(). */
static inline struct snap_writer *snap_buf_open(int *fd)
{
	char path[] = "/tmp/lkvm-test-snap-XXXXXX";
	*fd = mkstemp(path);
	unlink(path);
	return snap_writer_new(*fd, path);
}

/* Close the writer and read its whole file into a new *buf (the old one freed): 0, or -1. */
static inline int snap_buf_close(struct snap_writer *w, int fd, uint8_t **buf, size_t *len)
{
	int r = snap_writer_close(w);
	struct stat st;
	fstat(fd, &st);
	free(*buf);
	*len = st.st_size;
	*buf = xcalloc(1, *len ? *len : 1);
	if (pread(fd, *buf, *len, 0) != (ssize_t)*len)
		r = -1;
	close(fd);
	return r;
}

#endif
