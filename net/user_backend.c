/*
 * --network mode=user: virtio-net frames to and from the built-in user-mode
 * stack (net/user.c). The stack's frames for the guest go straight into
 * receive buffers; when the guest has none, a bounded backlog holds them and
 * the stack's sockets are left unread (TCP backpressure) until it drains.
 */
#include <stdlib.h>
#include <string.h>
#include "net.h"
#include "net_user.h"
#include "util.h"
#include "virtio.h"
#include "vm.h"

_Static_assert(NET_USER_FRAME_IOV <= VNET_RX_FRAME_IOV, "vnet_rx_iov() takes every piece of a frame");

#define BACKLOG 128	/* frames; past it they are dropped, as a full NIC ring would */

struct user_be {
	struct net_backend *be;
	struct net_user *nu;
	struct net_user_fwd fwds[8];
	uint8_t buf[VNET_MAX_FRAME];
	struct { uint32_t len; bool has_hdr; uint8_t hdr[VNET_HDR_LEN]; uint8_t *data; } q[BACKLOG];
	int head, count;
	uint64_t dropped;
};

static void to_guest(void *p, const uint8_t *hdr, const struct iovec *iov, int n, size_t len)
{
	struct user_be *u = p;
	if (!u->count && vnet_rx_iov(u->be->owner, hdr, iov, n, len) >= 0)
		return;
	if (u->count == BACKLOG) {
		__atomic_fetch_add(&u->dropped, 1, __ATOMIC_RELAXED);	/* `lkvm stat` reads it */
		return;
	}
	int i = (u->head + u->count++) % BACKLOG;
	u->q[i].data = xcalloc(1, len);
	iov_to_buf(iov, n, 0, u->q[i].data, len);
	u->q[i].len = len;
	u->q[i].has_hdr = hdr != NULL;
	if (hdr)
		memcpy(u->q[i].hdr, hdr, VNET_HDR_LEN);
}

static void flush_backlog(struct user_be *u)
{
	while (u->count) {
		int r = vnet_rx(u->be->owner, u->q[u->head].has_hdr ? u->q[u->head].hdr : NULL, u->q[u->head].data,
				u->q[u->head].len);
		if (r < 0)
			return;
		free(u->q[u->head].data);
		u->head = (u->head + 1) % BACKLOG;
		u->count--;
	}
}

static void user_tx(void *p, const uint8_t *hdr, const struct iovec *iov, int n, size_t len)
{
	struct user_be *u = p;
	size_t got = 0;
	for (int i = 0; i < n && got < sizeof(u->buf); i++) {
		size_t k = MIN(iov[i].iov_len, sizeof(u->buf) - got);
		memcpy(u->buf + got, iov[i].iov_base, k);
		got += k;
	}
	if (hdr[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM)
		net_user_from_guest_csum_partial(u->nu, u->buf, got);
	else
		net_user_from_guest(u->nu, u->buf, got);
}

static int user_poll_fds(void *p, struct pollfd *fds, int max, bool rx_room)
{
	struct user_be *u = p;
	if (max < 1 || u->count >= BACKLOG / 2)
		return 0;	/* the guest is behind: let the host sockets hold the data */
	fds[0] = (struct pollfd){ .fd = net_user_fd(u->nu), .events = POLLIN };
	return 1;
}

static void user_poll_events(void *p, const struct pollfd *fds, int n)
{
	struct user_be *u = p;
	flush_backlog(u);
	if (n > 0 && fds[0].revents)
		net_user_process(u->nu);
	net_user_timer(u->nu, net_user_now(u->nu));
}

static int user_timeout(void *p)
{
	return net_user_timeout(((struct user_be *)p)->nu);
}

/* The guest's driver took these features: checksums and GSO for its TCP frames when it said so. */
static void user_features(void *p, uint64_t f)
{
	struct user_be *u = p;
	net_user_set_offload(u->nu, f >> VIRTIO_NET_F_GUEST_CSUM & 1, f >> VIRTIO_NET_F_GUEST_TSO4 & 1);
}

static void user_close(void *p)
{
	struct user_be *u = p;
	while (u->count) {
		free(u->q[u->head].data);
		u->head = (u->head + 1) % BACKLOG;
		u->count--;
	}
	net_user_free(u->nu);
	free(u);
}

static void user_get_state(void *p, struct net_user_state *st)
{
	net_user_get_state(((struct user_be *)p)->nu, st);
}

static void user_set_state(void *p, const struct net_user_state *st)
{
	net_user_set_state(((struct user_be *)p)->nu, st);
}

static void user_stats(void *p, struct net_user_stats *st, uint64_t *backlog_dropped)
{
	struct user_be *u = p;
	net_user_get_stats(u->nu, st);
	*backlog_dropped = __atomic_load_n(&u->dropped, __ATOMIC_RELAXED);
}

static const struct net_backend_ops user_ops = {
	.tx = user_tx, .poll_fds = user_poll_fds, .poll_events = user_poll_events, .timeout_ms = user_timeout,
	.features = user_features,
	.close = user_close, .get_state = user_get_state, .set_state = user_set_state,
	.stats = user_stats,
};

int user_net_open(const struct net_opt *o, struct net_backend *be)
{
	struct user_be *u = xcalloc(1, sizeof(*u));
	u->be = be;
	struct net_user_cfg cfg = { .nr_fwds = o->nr_fwds, .fwds = u->fwds, .restricted = o->restricted,
				   .policy_sandbox = o->policy_sandbox, .host_loopback = o->host_loopback,
				   .nr_allow = o->nr_allow, .allow = o->allow };
	memcpy(cfg.guest_mac, o->mac, 6);
	for (int i = 0; i < o->nr_fwds; i++)
		u->fwds[i] = (struct net_user_fwd){ o->fwds[i].udp, o->fwds[i].host_port, o->fwds[i].guest_port };
	u->nu = net_user_new(&cfg, to_guest, u);
	if (!u->nu) {
		free(u);
		return -1;
	}
	be->ops = &user_ops;
	be->priv = u;
	/* The stack takes partial checksums and segments past the MTU: the guest may offload both; and it
	 * sends the guest's TCP frames with partial checksums and several segments long when it takes them. */
	be->offloads = 1ULL << VIRTIO_NET_F_CSUM | 1ULL << VIRTIO_NET_F_HOST_TSO4 | 1ULL << VIRTIO_NET_F_GUEST_CSUM |
		       1ULL << VIRTIO_NET_F_GUEST_TSO4;
	return 0;
}
