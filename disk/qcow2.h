/* Format openers behind disk_open(), which picks one by the file's magic. */
#ifndef LKVM_DISK_FORMATS_H
#define LKVM_DISK_FORMATS_H

#include <stdbool.h>
#include "disk.h"

#define QCOW2_MAGIC 0x514649fbu	/* "QFI\xfb" */
#define DISK_MAX_BACKING_DEPTH 16	/* a chain longer than this is a loop */

struct disk *raw_open(const char *path, bool ro, bool direct);
/* depth: how many images already sit above this one in a backing chain. */
struct disk *qcow2_open(const char *path, bool ro, int depth);
/*
 * qcow2_open() on an open descriptor (taken over, closed on failure). backing:
 * the image its header names, already open, which the new disk then owns; or
 * NULL to open it by that name.
 */
struct disk *qcow2_open_fd(int fd, const char *path, bool ro, int depth, struct disk *backing);
/* Detach d's backing image (the caller's from now on); NULL if it has none. */
struct disk *qcow2_take_backing(struct disk *d);
/*
 * Tests only: after this many more writes to a qcow2 image file (pwrite, pwritev,
 * ftruncate), the process kills itself with SIGKILL; negative (the default): never.
 */
extern int qcow2_test_kill_after;
/* disk_open() for a backing image: read-only, at the given depth. */
struct disk *disk_open_backing(const char *path, int depth);

#endif
