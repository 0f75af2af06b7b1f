/*
 * Linux AIO (libaio) engine: one io_context per queue. On a buffered file
 * io_submit does the copy from or to the page cache itself before it
 * returns, so requests are only truly in flight with O_DIRECT (direct).
 */
#include <errno.h>
#include <libaio.h>
#include <stdlib.h>
#include <string.h>
#include "disk_aio.h"
#include "util.h"

struct native {
	struct disk_aio a;
	io_context_t ctx;
	struct iocb *cbs;	/* depth of them; free ones on a stack */
	int *free, nfree;
	void **cookie;
};

static int native_submit(struct disk_aio *a, bool write, int fd, uint64_t off, const struct iovec *iov, int iovcnt,
			 void *cookie)
{
	struct native *n = (struct native *)a;
	if (!n->nfree)
		return -EAGAIN;
	int i = n->free[--n->nfree];
	struct iocb *cb = &n->cbs[i];
	if (write)
		io_prep_pwritev(cb, fd, (struct iovec *)iov, iovcnt, off);
	else
		io_prep_preadv(cb, fd, (struct iovec *)iov, iovcnt, off);
	io_set_eventfd(cb, a->event_fd);
	n->cookie[i] = cookie;
	int r = io_submit(n->ctx, 1, &cb);
	if (r != 1) {
		n->free[n->nfree++] = i;
		return r < 0 ? r : -EAGAIN;
	}
	return 0;
}

static int native_reap(struct disk_aio *a, struct disk_aio_done *done, int max, int min)
{
	struct native *n = (struct native *)a;
	struct io_event ev[64];
	struct timespec zero = { 0, 0 };
	int got = 0;
	while (got < max) {
		int want = MIN(max - got, (int)ARRAY_SIZE(ev)), least = MIN(MAX(min - got, 0), want);
		int r = io_getevents(n->ctx, least, want, ev, least ? NULL : &zero);
		if (r == -EINTR)
			continue;
		if (r < 0)
			return got ? got : r;
		for (int k = 0; k < r; k++) {
			int i = (struct iocb *)ev[k].obj - n->cbs;
			done[got].cookie = n->cookie[i];
			done[got].res = (long)ev[k].res;
			got++;
			n->free[n->nfree++] = i;
		}
		if (r < want)	/* none left (at least least came) */
			break;
	}
	return got;
}

static void native_close(struct disk_aio *a)
{
	struct native *n = (struct native *)a;
	io_destroy(n->ctx);
	free(n->cbs);
	free(n->free);
	free(n->cookie);
	free(n);
}

static const struct disk_aio_ops native_ops = { .submit = native_submit, .reap = native_reap, .close = native_close };

struct disk_aio *disk_aio_native_open(int depth, int event_fd)
{
	struct native *n = xcalloc(1, sizeof(*n));
	int e = io_setup(depth, &n->ctx);
	if (e < 0) {
		free(n);
		errno = -e;
		err_errno("io_setup (Linux AIO)");
		return NULL;
	}
	n->a = (struct disk_aio){ .ops = &native_ops, .kind = DISK_AIO_NATIVE, .depth = depth, .event_fd = event_fd };
	n->cbs = xcalloc(depth, sizeof(*n->cbs));
	n->free = xcalloc(depth, sizeof(*n->free));
	n->cookie = xcalloc(depth, sizeof(*n->cookie));
	for (int i = depth - 1; i >= 0; i--)
		n->free[n->nfree++] = i;
	return &n->a;
}
