/*
 * Asynchronous reads and writes of a raw image for one virtio-blk queue,
 * behind one interface with three engines: io_uring (disk/aio_uring.c),
 * Linux AIO (libaio, disk/aio_libaio.c) and a thread pool doing preadv/
 * pwritev (disk/aio_threads.c). Each engine signals finished requests on
 * the eventfd it was opened with; its owner then reaps them. One owner
 * thread submits and reaps (the queue's worker): the engines are not
 * safe for two callers at once.
 */
#ifndef LKVM_DISK_AIO_H
#define LKVM_DISK_AIO_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

enum disk_aio_kind {
	DISK_AIO_DEFAULT,	/* the measured winner, falling back as below */
	DISK_AIO_URING,
	DISK_AIO_NATIVE,	/* libaio */
	DISK_AIO_THREADS,
};

/* A finished request: its cookie and bytes done, or -errno. */
struct disk_aio_done {
	void *cookie;
	long res;
};

struct disk_aio;

struct disk_aio_ops {
	/*
	 * 0, or -errno (-EAGAIN: depth requests already in flight): the request was not taken.
	 * A taken request may wait in the engine until the next commit or reap (io_uring: one
	 * io_uring_enter for a batch, not one per request).
	 */
	int (*submit)(struct disk_aio *a, bool write, int fd, uint64_t off, const struct iovec *iov, int iovcnt,
		      void *cookie);
	/* Hand what submit queued to the kernel now (NULL: the engine does at submit). */
	void (*commit)(struct disk_aio *a);
	/* Up to max finished requests into done; waits for at least min. Returns the count or -errno. */
	int (*reap)(struct disk_aio *a, struct disk_aio_done *done, int max, int min);
	void (*close)(struct disk_aio *a);
};

struct disk_aio {
	const struct disk_aio_ops *ops;
	enum disk_aio_kind kind;	/* the engine that runs, after any fallback */
	int depth;			/* requests in flight at most */
	int event_fd;			/* written when requests finish */
};

/*
 * An engine for up to depth requests in flight, signalling event_fd.
 * want: uring falls back to native then threads when the kernel refuses
 * io_uring (seccomp, containers, kernel.io_uring_disabled, old kernels);
 * native falls back to threads; threads is the last resort, which the
 * kernel does not refuse. No engine starts a thread here (the jail wants
 * lkvm single-threaded after the devices are made): the pool's start with
 * its first request, io_uring's kernel workers when one is needed. The iovec array and the buffers a
 * request names stay the caller's, and must live until it is reaped.
 */
struct disk_aio *disk_aio_open(enum disk_aio_kind want, int depth, int event_fd);
void disk_aio_close(struct disk_aio *a);

static inline int disk_aio_submit(struct disk_aio *a, bool write, int fd, uint64_t off, const struct iovec *iov,
				  int iovcnt, void *cookie)
{
	return a->ops->submit(a, write, fd, off, iov, iovcnt, cookie);
}

static inline void disk_aio_commit(struct disk_aio *a)
{
	if (a->ops->commit)
		a->ops->commit(a);
}

static inline int disk_aio_reap(struct disk_aio *a, struct disk_aio_done *done, int max, int min)
{
	return a->ops->reap(a, done, max, min);
}

/* "uring", "native", "threads" (and "default"); parse: 0, or -1 for an unknown name. */
const char *disk_aio_name(enum disk_aio_kind k);
int disk_aio_parse(const char *s, enum disk_aio_kind *k);

/* The engines themselves, for disk_aio_open and the tests: NULL with err set when refused. */
struct disk_aio *disk_aio_uring_open(int depth, int event_fd);
struct disk_aio *disk_aio_native_open(int depth, int event_fd);
struct disk_aio *disk_aio_threads_open(int depth, int event_fd);
/* Tests: an io_uring engine's ring (NULL for the others). */
struct io_uring;
struct io_uring *disk_aio_uring_ring(struct disk_aio *a);

#endif
