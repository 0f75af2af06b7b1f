/* Raw disk images and block devices: the bytes are the disk. */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include "qcow2.h"
#include "util.h"

/* Vectored I/O to the end, through short transfers and EINTR. */
static int rw_all(struct disk *d, uint64_t off, const struct iovec *iov, int iovcnt, bool write)
{
	struct iovec local[256];	/* more than any virtio chain holds */
	if (iovcnt > (int)ARRAY_SIZE(local))
		return -EINVAL;
	memcpy(local, iov, iovcnt * sizeof(*iov));
	struct iovec *v = local;
	while (iovcnt > 0) {
		ssize_t n = write ? pwritev(d->fd, v, iovcnt, off) : preadv(d->fd, v, iovcnt, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return write ? -ENOSPC : -EIO;	/* past the end */
		off += n;
		while (iovcnt > 0 && (size_t)n >= v->iov_len) {
			n -= v->iov_len;
			v++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			v->iov_base = (uint8_t *)v->iov_base + n;
			v->iov_len -= n;
		}
	}
	return 0;
}

static int raw_readv(struct disk *d, uint64_t off, const struct iovec *iov, int n) { return rw_all(d, off, iov, n, false); }
static int raw_writev(struct disk *d, uint64_t off, const struct iovec *iov, int n) { return rw_all(d, off, iov, n, true); }

static int raw_flush(struct disk *d)
{
	return fdatasync(d->fd) < 0 ? -errno : 0;
}

static int raw_discard(struct disk *d, uint64_t off, uint64_t len)
{
	if (fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) < 0)
		return -errno;
	return 0;
}

/* Zeroes without writing them: ZERO_RANGE keeps the blocks, PUNCH_HOLE frees them. */
static int raw_write_zeroes(struct disk *d, uint64_t off, uint64_t len, bool unmap)
{
	int mode = unmap ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
	if (fallocate(d->fd, mode, off, len) == 0)
		return 0;
	if (!unmap && (errno == EOPNOTSUPP || errno == EINVAL) &&
	    fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) == 0)
		return 0;
	if (errno != EOPNOTSUPP && errno != EINVAL)
		return -errno;
	/* Block devices and filesystems without either: write the zeroes. */
	static const uint8_t zero[65536];
	while (len) {
		struct iovec v = { (void *)zero, MIN(len, sizeof(zero)) };
		int r = rw_all(d, off, &v, 1, true);
		if (r)
			return r;
		off += v.iov_len;
		len -= v.iov_len;
	}
	return 0;
}

static void raw_close(struct disk *d)
{
	close(d->fd);
}

static const struct disk_ops raw_ops = {
	.readv = raw_readv, .writev = raw_writev, .flush = raw_flush, .discard = raw_discard,
	.write_zeroes = raw_write_zeroes, .close = raw_close,
};

struct disk *raw_open(const char *path, bool ro, bool direct)
{
	int fd = open(path, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC | (direct ? O_DIRECT : 0));
	if (fd < 0) {
		err_errno("%s", path);
		return NULL;
	}
	struct stat st;
	uint64_t size = 0;
	if (fstat(fd, &st) < 0 || (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))) {
		err_set("%s: not a regular file or block device", path);
		close(fd);
		return NULL;
	}
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &size) < 0) {
			err_errno("%s: BLKGETSIZE64", path);
			close(fd);
			return NULL;
		}
	} else {
		size = st.st_size;
	}
	if (size < 512) {
		err_set("%s: disk image is %llu bytes, less than one sector", path, (unsigned long long)size);
		close(fd);
		return NULL;
	}
	if (size % 512)
		pr_warn("%s: size is not a multiple of 512; the last %llu bytes are not visible", path,
			(unsigned long long)(size % 512));
	struct disk *d = xcalloc(1, sizeof(*d));
	d->ops = &raw_ops;
	d->path = path;
	d->size = size & ~511ULL;
	d->ro = ro;
	d->fd = fd;
	d->plain = true;
	return d;
}
