/* The one event-loop thread (epoll) for everything that waits. */
#ifndef LKVM_EVLOOP_H
#define LKVM_EVLOOP_H

#include <stdint.h>

struct evloop;
typedef void (*ev_cb)(void *ctx, uint32_t events);

struct evloop *evloop_new(void);
void evloop_free(struct evloop *l);
/* Watch fd for events (EPOLLIN...); cb runs on the loop thread. */
int evloop_add(struct evloop *l, int fd, uint32_t events, ev_cb cb, void *ctx);
int evloop_del(struct evloop *l, int fd);
int evloop_start(struct evloop *l);	/* spawn the thread "lkvm-events" */
void evloop_stop(struct evloop *l);
/* Run callbacks ready within timeout_ms once (used by tests without the thread). */
int evloop_poll(struct evloop *l, int timeout_ms);

#endif
