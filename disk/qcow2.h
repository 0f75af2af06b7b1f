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
/* disk_open() for a backing image: read-only, at the given depth. */
struct disk *disk_open_backing(const char *path, int depth);

#endif
