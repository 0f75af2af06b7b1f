/* disk_open(): pick the format by the image's first four bytes. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "qcow2.h"
#include "util.h"

static struct disk *open_at_depth(const char *path, bool ro, bool direct, int depth)
{
	if (depth > DISK_MAX_BACKING_DEPTH) {
		err_set("%s: backing chain deeper than %d images (a loop?)", path, DISK_MAX_BACKING_DEPTH);
		return NULL;
	}
	/* A plain descriptor for the probe: O_DIRECT would need aligned buffers. */
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err_errno("%s", path);
		return NULL;
	}
	uint32_t magic = 0;
	ssize_t n = pread(fd, &magic, sizeof(magic), 0);
	close(fd);
	if (n == (ssize_t)sizeof(magic) && be32toh(magic) == QCOW2_MAGIC) {
		if (direct)
			pr_warn("%s: 'direct' is ignored for qcow2 images", path);
		return qcow2_open(path, ro, depth);
	}
	return raw_open(path, ro, direct);
}

struct disk *disk_open(const char *path, bool ro, bool direct)
{
	return open_at_depth(path, ro, direct, 0);
}

struct disk *disk_open_backing(const char *path, int depth)
{
	return open_at_depth(path, true, false, depth);
}

void disk_close(struct disk *d)
{
	if (!d)
		return;
	d->ops->close(d);
	free(d);
}

bool disk_is_qcow2(const struct disk *d)
{
	return !d->plain;
}
