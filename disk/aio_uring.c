/*
 * io_uring engine: one ring per queue, readv/writev on the image's
 * descriptor, completions signalled on the queue's eventfd (registered
 * with the ring). Unlike Linux AIO a read of a buffered file that misses
 * the page cache does not block the submitter: the kernel finishes it
 * later (woken by the page's read, or in its own worker threads).
 *
 * Sandboxing: those kernel workers are not under lkvm's seccomp filter,
 * and whoever can write the ring's memory can ask for any operation. So
 * the ring starts disabled and is restricted to READV and WRITEV before it
 * is enabled, with no io_uring_register call allowed after (the kernel then
 * refuses any other opcode with -EACCES), and the filter (lib/seccomp.c)
 * lets a running lkvm call io_uring_enter only: no new ring, no lifting the
 * restriction. What a ring can do is then what pread/pwrite on the fds the
 * VMM already holds can do.
 */
#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "disk_aio.h"
#include "util.h"

struct uring {
	struct disk_aio a;
	struct io_uring ring;
	int inflight;
};

/* Hand the queued entries to the kernel; they stay queued (and are retried) if it cannot take them now. */
static int push(struct uring *u)
{
	for (int tries = 0;; tries++) {
		int r = io_uring_submit(&u->ring);
		if (r >= 0 || tries == 3 || (r != -EINTR && r != -EAGAIN && r != -EBUSY))
			return r < 0 ? r : 0;
	}
}

static int uring_submit(struct disk_aio *a, bool write, int fd, uint64_t off, const struct iovec *iov, int iovcnt,
			void *cookie)
{
	struct uring *u = (struct uring *)a;
	if (u->inflight == a->depth)
		return -EAGAIN;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
	if (!sqe) {
		push(u);
		if (!(sqe = io_uring_get_sqe(&u->ring)))
			return -EAGAIN;
	}
	if (write)
		io_uring_prep_writev(sqe, fd, iov, iovcnt, off);
	else
		io_uring_prep_readv(sqe, fd, iov, iovcnt, off);
	io_uring_sqe_set_data(sqe, cookie);
	u->inflight++;
	return 0;	/* queued: the kernel gets it at the next commit or reap */
}

/* One io_uring_enter for every request queued since the last. Once queued a request is taken
 * whatever the kernel says now: a refused enter is retried at the next commit or reap. */
static void uring_commit(struct disk_aio *a)
{
	struct uring *u = (struct uring *)a;
	int r = io_uring_sq_ready(&u->ring) ? push(u) : 0;
	if (r < 0)
		pr_warn_once("io_uring_enter: %s (the requests wait for the next one)", strerror(-r));
}

static int uring_reap(struct disk_aio *a, struct disk_aio_done *done, int max, int min)
{
	struct uring *u = (struct uring *)a;
	int got = 0;
	if (io_uring_sq_ready(&u->ring))
		push(u);
	while (got < max) {
		struct io_uring_cqe *cqe;
		int r = got < min ? io_uring_wait_cqe(&u->ring, &cqe) : io_uring_peek_cqe(&u->ring, &cqe);
		if (r == -EINTR)
			continue;
		if (r == -EAGAIN)	/* none ready */
			break;
		if (r < 0)
			return got ? got : r;
		done[got].cookie = io_uring_cqe_get_data(cqe);
		done[got].res = cqe->res;
		got++;
		u->inflight--;
		io_uring_cqe_seen(&u->ring, cqe);
	}
	return got;
}

static void uring_close(struct disk_aio *a)
{
	struct uring *u = (struct uring *)a;
	io_uring_queue_exit(&u->ring);
	free(u);
}

/* Debian's liburing 2.3 lacks the restriction calls in its library: the syscall itself, as -errno. */
static int ring_register(struct io_uring *ring, unsigned op, const void *arg, unsigned n)
{
	return syscall(SYS_io_uring_register, ring->ring_fd, op, arg, n) < 0 ? -errno : 0;
}

static const struct disk_aio_ops uring_ops = { .submit = uring_submit, .commit = uring_commit, .reap = uring_reap,
					       .close = uring_close };

struct disk_aio *disk_aio_uring_open(int depth, int event_fd)
{
	struct uring *u = xcalloc(1, sizeof(*u));
	struct io_uring_params p = { .flags = IORING_SETUP_R_DISABLED };
	int e = io_uring_queue_init_params(depth, &u->ring, &p);
	if (e < 0) {
		free(u);
		err_set("io_uring_setup: %s", strerror(-e));
		return NULL;
	}
	struct io_uring_restriction res[2] = {
		{ .opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = IORING_OP_READV },
		{ .opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = IORING_OP_WRITEV },
	};
	const char *step = "registering the eventfd";
	if ((e = io_uring_register_eventfd(&u->ring, event_fd)) < 0 ||
	    (step = "restricting the ring", e = ring_register(&u->ring, IORING_REGISTER_RESTRICTIONS, res, 2)) < 0 ||
	    (step = "enabling the ring", e = ring_register(&u->ring, IORING_REGISTER_ENABLE_RINGS, NULL, 0)) < 0) {
		io_uring_queue_exit(&u->ring);
		free(u);
		err_set("io_uring: %s: %s", step, strerror(-e));
		return NULL;
	}
	u->a = (struct disk_aio){ .ops = &uring_ops, .kind = DISK_AIO_URING, .depth = depth, .event_fd = event_fd };
	return &u->a;
}

struct io_uring *disk_aio_uring_ring(struct disk_aio *a)
{
	return a->kind == DISK_AIO_URING ? &((struct uring *)a)->ring : NULL;
}
