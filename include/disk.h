/*
 * Disk backends behind one ops table: virtio-blk does not know which format
 * it talks to. Offsets and lengths are bytes; both multiples of 512.
 */
#ifndef LKVM_DISK_H
#define LKVM_DISK_H

#include <stdint.h>
#include <stdbool.h>
#include <sys/uio.h>

struct disk;

struct disk_ops {
	/* Synchronous vectored I/O; return 0 or -errno. */
	int (*readv)(struct disk *d, uint64_t off, const struct iovec *iov, int iovcnt);
	int (*writev)(struct disk *d, uint64_t off, const struct iovec *iov, int iovcnt);
	int (*flush)(struct disk *d);	/* data durable on return */
	int (*discard)(struct disk *d, uint64_t off, uint64_t len);	/* may be NULL */
	int (*write_zeroes)(struct disk *d, uint64_t off, uint64_t len, bool unmap);	/* may be NULL */
	void (*close)(struct disk *d);
};

struct disk {
	const struct disk_ops *ops;
	const char *path;
	uint64_t size;		/* guest-visible bytes */
	bool ro;
	int fd;			/* the image file (raw: the data itself) */
	bool plain;		/* guest offsets are file offsets in fd: async I/O may go straight there */
	char serial[21];	/* VIRTIO_BLK_ID_BYTES + NUL */
	void *priv;		/* format state (qcow2) */
};

/* Open raw or qcow2 (by magic). Returns NULL with err set on failure. */
struct disk *disk_open(const char *path, bool ro, bool direct);
void disk_close(struct disk *d);

#endif
