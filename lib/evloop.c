/* The event-loop thread: one epoll set for every fd that waits. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include "evloop.h"
#include "util.h"

struct ev_watch {
	int fd;
	ev_cb cb;
	void *ctx;
	struct ev_watch *next;
};

struct evloop {
	int epfd;
	int stopfd;
	pthread_t thread;
	bool running;
	pthread_mutex_t lock;
	struct ev_watch *watches;	/* kept for del; freed at the end */
};

struct evloop *evloop_new(void)
{
	struct evloop *l = xcalloc(1, sizeof(*l));
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	l->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->epfd < 0 || l->stopfd < 0) {
		err_errno("epoll/eventfd");
		if (l->epfd >= 0) close(l->epfd);
		if (l->stopfd >= 0) close(l->stopfd);
		free(l);
		return NULL;
	}
	pthread_mutex_init(&l->lock, NULL);
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->stopfd, &ev);
	return l;
}

int evloop_add(struct evloop *l, int fd, uint32_t events, ev_cb cb, void *ctx)
{
	struct ev_watch *w = xcalloc(1, sizeof(*w));
	w->fd = fd;
	w->cb = cb;
	w->ctx = ctx;
	struct epoll_event ev = { .events = events, .data.ptr = w };
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		free(w);
		return err_errno("epoll_ctl add fd %d", fd);
	}
	pthread_mutex_lock(&l->lock);
	w->next = l->watches;
	l->watches = w;
	pthread_mutex_unlock(&l->lock);
	return 0;
}

int evloop_del(struct evloop *l, int fd)
{
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
	pthread_mutex_lock(&l->lock);
	/* The watch stays allocated (an event may be in flight); mark it dead. */
	for (struct ev_watch *w = l->watches; w; w = w->next)
		if (w->fd == fd)
			w->cb = NULL;
	pthread_mutex_unlock(&l->lock);
	return 0;
}

int evloop_poll(struct evloop *l, int timeout_ms)
{
	struct epoll_event evs[32];
	int n = epoll_wait(l->epfd, evs, 32, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -1;
	for (int i = 0; i < n; i++) {
		struct ev_watch *w = evs[i].data.ptr;
		if (!w) {
			uint64_t v;
			if (read(l->stopfd, &v, sizeof(v)) < 0) {}
			return -1;	/* stop requested */
		}
		if (w->cb)
			w->cb(w->ctx, evs[i].events);
	}
	return n;
}

static void *evloop_thread(void *arg)
{
	struct evloop *l = arg;
	/* Named from inside: naming another thread opens /proc, which seccomp forbids. */
	pthread_setname_np(pthread_self(), "lkvm-events");
	while (evloop_poll(l, -1) >= 0)
		;
	return NULL;
}

int evloop_start(struct evloop *l)
{
	if (thread_start(&l->thread, evloop_thread, l))
		return err_set("cannot start the event-loop thread");
	l->running = true;
	return 0;
}

void evloop_stop(struct evloop *l)
{
	if (!l->running)
		return;
	uint64_t one = 1;
	if (write(l->stopfd, &one, sizeof(one)) < 0) {}
	pthread_join(l->thread, NULL);
	l->running = false;
}

void evloop_free(struct evloop *l)
{
	if (!l)
		return;
	evloop_stop(l);
	close(l->epfd);
	close(l->stopfd);
	for (struct ev_watch *w = l->watches, *n; w; w = n) {
		n = w->next;
		free(w);
	}
	free(l);
}
