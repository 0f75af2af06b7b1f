/*
 * Thread-pool engine, the fallback where neither io_uring nor Linux AIO is
 * allowed: POOL_THREADS threads per queue run preadv/pwritev. Requests wait
 * in a FIFO, finished ones in another; each finish writes the eventfd.
 * The threads start with the first request, not with the device: the
 * jail (lib/jail.c) is entered after the devices are made and before they
 * start, and it needs lkvm to be one thread then.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "disk_aio.h"
#include "util.h"

#define POOL_THREADS 4

struct job {
	bool write;
	int fd, iovcnt;
	uint64_t off;
	const struct iovec *iov;
	void *cookie;
	long res;
};

/* A FIFO of job indexes, depth long. */
struct fifo {
	int *slot, head, count;
};

struct pool {
	struct disk_aio a;
	pthread_mutex_t lock;
	pthread_cond_t work, finished;
	struct job *jobs;
	int *free, nfree;
	struct fifo todo, done;
	pthread_t thread[POOL_THREADS];
	int nthreads;
	bool quit;
};

static void fifo_put(struct fifo *f, int depth, int i)
{
	f->slot[(f->head + f->count++) % depth] = i;
}

static int fifo_take(struct fifo *f, int depth)
{
	int i = f->slot[f->head];
	f->head = (f->head + 1) % depth;
	f->count--;
	return i;
}

/* The whole request, as one AIO request would do it: bytes done (short at the file's end), or -errno. */
static long run(const struct job *j)
{
	struct iovec v[IOV_MAX];
	int n = MIN(j->iovcnt, IOV_MAX);
	memcpy(v, j->iov, n * sizeof(*v));
	struct iovec *cur = v;
	long done = 0;
	while (n) {
		ssize_t r = j->write ? pwritev(j->fd, cur, n, j->off + done) : preadv(j->fd, cur, n, j->off + done);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return done ? done : -errno;
		if (r == 0)
			break;
		done += r;
		while (n && (size_t)r >= cur->iov_len) {
			r -= cur->iov_len;
			cur++;
			n--;
		}
		if (n) {
			cur->iov_base = (char *)cur->iov_base + r;
			cur->iov_len -= r;
		}
	}
	return done;
}

static void *pool_thread(void *arg)
{
	struct pool *p = arg;
	int depth = p->a.depth;
	/* By itself: naming another thread opens /proc, which the jail may lack. */
	pthread_setname_np(pthread_self(), "lkvm-blk-pool");
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->todo.count && !p->quit)
			pthread_cond_wait(&p->work, &p->lock);
		if (p->quit)
			break;
		int i = fifo_take(&p->todo, depth);
		pthread_mutex_unlock(&p->lock);
		long res = run(&p->jobs[i]);
		pthread_mutex_lock(&p->lock);
		p->jobs[i].res = res;
		fifo_put(&p->done, depth, i);
		pthread_cond_signal(&p->finished);
		uint64_t one = 1;
		if (write(p->a.event_fd, &one, sizeof(one)) < 0) {}	/* only fails if the count is at its maximum */
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Only the owner calls this (from submit), and close joins what started. */
static int start_threads(struct pool *p)
{
	for (; p->nthreads < MIN(POOL_THREADS, p->a.depth); p->nthreads++)
		if (thread_start(&p->thread[p->nthreads], pool_thread, p)) {
			pr_warn_once("cannot start the disk I/O thread pool: %d of %d threads", p->nthreads, POOL_THREADS);
			return p->nthreads ? 0 : -1;
		}
	return 0;
}

static int pool_submit(struct disk_aio *a, bool write, int fd, uint64_t off, const struct iovec *iov, int iovcnt,
		       void *cookie)
{
	struct pool *p = (struct pool *)a;
	if (iovcnt > IOV_MAX)
		return -EINVAL;
	if (!p->nthreads && start_threads(p) < 0)
		return -EAGAIN;	/* this request runs synchronously; the next tries again */
	pthread_mutex_lock(&p->lock);
	if (!p->nfree) {
		pthread_mutex_unlock(&p->lock);
		return -EAGAIN;
	}
	int i = p->free[--p->nfree];
	p->jobs[i] = (struct job){ .write = write, .fd = fd, .iovcnt = iovcnt, .off = off, .iov = iov, .cookie = cookie };
	fifo_put(&p->todo, a->depth, i);
	pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

static int pool_reap(struct disk_aio *a, struct disk_aio_done *done, int max, int min)
{
	struct pool *p = (struct pool *)a;
	int got = 0;
	pthread_mutex_lock(&p->lock);
	while (got < max) {
		if (!p->done.count) {
			if (got >= min)
				break;
			pthread_cond_wait(&p->finished, &p->lock);
			continue;
		}
		int i = fifo_take(&p->done, a->depth);
		done[got].cookie = p->jobs[i].cookie;
		done[got].res = p->jobs[i].res;
		got++;
		p->free[p->nfree++] = i;
	}
	pthread_mutex_unlock(&p->lock);
	return got;
}

static void pool_close(struct disk_aio *a)
{
	struct pool *p = (struct pool *)a;
	pthread_mutex_lock(&p->lock);
	p->quit = true;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->thread[i], NULL);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->finished);
	free(p->jobs);
	free(p->free);
	free(p->todo.slot);
	free(p->done.slot);
	free(p);
}

static const struct disk_aio_ops pool_ops = { .submit = pool_submit, .reap = pool_reap, .close = pool_close };

struct disk_aio *disk_aio_threads_open(int depth, int event_fd)
{
	struct pool *p = xcalloc(1, sizeof(*p));
	p->a = (struct disk_aio){ .ops = &pool_ops, .kind = DISK_AIO_THREADS, .depth = depth, .event_fd = event_fd };
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->finished, NULL);
	p->jobs = xcalloc(depth, sizeof(*p->jobs));
	p->free = xcalloc(depth, sizeof(*p->free));
	p->todo.slot = xcalloc(depth, sizeof(int));
	p->done.slot = xcalloc(depth, sizeof(int));
	for (int i = depth - 1; i >= 0; i--)
		p->free[p->nfree++] = i;
	return &p->a;
}
