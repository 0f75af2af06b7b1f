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
	/*
	 * Reads only: how many bytes from guest offset off (at most len) sit one after another
	 * in fd from *at on, so that one preadv there reads them (0: not so, or not known; the
	 * synchronous readv then serves them). May be NULL (plain disks need no map).
	 */
	uint64_t (*map_read)(struct disk *d, uint64_t off, uint64_t len, uint64_t *at);
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
/* Whether an open disk is a qcow2 image (else raw: file or block device). */
bool disk_is_qcow2(const struct disk *d);

/*
 * Snapshots (disk/overlay.c): write into fd, an empty file, a qcow2 image of
 * size bytes whose backing image is the absolute path backing (of format
 * backing_fmt, "qcow2" or "raw"). 0, or -1 with err set naming path.
 */
int disk_write_overlay(int fd, const char *path, const char *backing, const char *backing_fmt, uint64_t size);
/* Open such an overlay (fd taken over) writable, its backing image already open and now owned by it. */
struct disk *disk_open_overlay(int fd, const char *path, struct disk *backing);
/* Close an overlay opened so, leaving its backing image open (its caller's again). */
void disk_discard_overlay(struct disk *ov);

#endif
