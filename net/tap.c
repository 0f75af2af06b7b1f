/*
 * --network mode=tap[,tapif=NAME][,merge=off]: frames go to and from a tap
 * device with a virtio-net header (IFF_VNET_HDR), so the guest's checksum and
 * TSO offloads pass through to the host kernel untouched, and a batch's
 * consecutive TCP segments go as one GSO frame (net/tcp_merge.c) unless
 * merge=off.
 */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/if_tun.h>
#include "net.h"
#include "tcp_merge.h"
#include "util.h"
#include "virtio.h"
#include "vm.h"

struct tap {
	struct net_backend *be;
	int fd;
	char name[IFNAMSIZ];
	bool pending;		/* frame in buf not yet taken by the guest */
	bool merge;
	ssize_t len;
	uint8_t buf[VNET_HDR_LEN + VNET_MAX_FRAME];
	struct tcp_merge tx;	/* segments waiting to be merged, until the batch ends */
};

static void tap_write(void *p, const uint8_t *hdr, const struct iovec *iov, int n, size_t len)
{
	struct tap *t = p;
	struct iovec v[1 + VIRTQ_MAX_SEGS];
	v[0] = (struct iovec){ (void *)hdr, VNET_HDR_LEN };
	memcpy(v + 1, iov, n * sizeof(*iov));
	/* A full tap queue drops the frame, as a NIC would. */
	if (writev(t->fd, v, n + 1) < 0 && errno != EAGAIN)
		pr_debug("tap %s: write: %s", t->name, strerror(errno));
}

static void tap_tx(void *p, const uint8_t *hdr, const struct iovec *iov, int n, size_t len)
{
	struct tap *t = p;
	if (!__atomic_load_n(&t->merge, __ATOMIC_RELAXED)) {
		tcp_merge_flush(&t->tx, tap_write, t);	/* held before merging was switched off */
		tap_write(t, hdr, iov, n, len);
		return;
	}
	tcp_merge_frame(&t->tx, hdr, iov, n, len, tap_write, t);
}

static void tap_tx_done(void *p)
{
	struct tap *t = p;
	tcp_merge_flush(&t->tx, tap_write, t);
	__atomic_store_n(&t->be->tx_merged, t->tx.merged, __ATOMIC_RELAXED);	/* for `lkvm stat`, once a batch */
}

/* bench/devices.c: one tap measured with and without merging; nothing is held between batches. */
void tap_set_merge(struct net_backend *be, bool on)
{
	struct tap *t = be->priv;
	__atomic_store_n(&t->merge, on, __ATOMIC_RELAXED);
}

static int tap_poll_fds(void *p, struct pollfd *fds, int max, bool rx_room)
{
	struct tap *t = p;
	if (!rx_room || max < 1)
		return 0;	/* no buffers in the guest: leave frames queued in the tap */
	fds[0] = (struct pollfd){ .fd = t->fd, .events = POLLIN };
	return 1;
}

static void tap_poll_events(void *p, const struct pollfd *fds, int n)
{
	struct tap *t = p;
	for (int i = 0; i < 256; i++) {	/* bounded: kicks must not wait long */
		if (!t->pending) {
			t->len = read(t->fd, t->buf, sizeof(t->buf));
			if (t->len <= VNET_HDR_LEN)
				return;
			t->pending = true;
		}
		int r = vnet_rx(t->be->owner, t->buf, t->buf + VNET_HDR_LEN, t->len - VNET_HDR_LEN);
		if (r < 0)
			return;	/* kept for the next RX kick */
		t->pending = false;
	}
}

static void tap_features(void *p, uint64_t f)
{
	struct tap *t = p;
	unsigned off = 0;
	if (f >> VIRTIO_NET_F_GUEST_CSUM & 1) {
		off |= TUN_F_CSUM;
		if (f >> VIRTIO_NET_F_GUEST_TSO4 & 1)
			off |= TUN_F_TSO4;
		if (f >> VIRTIO_NET_F_GUEST_TSO6 & 1)
			off |= TUN_F_TSO6;
	}
	if (ioctl(t->fd, TUNSETOFFLOAD, off) < 0)
		pr_debug("tap %s: TUNSETOFFLOAD: %s", t->name, strerror(errno));
}

static void tap_close(void *p)
{
	struct tap *t = p;
	close(t->fd);
	free(t);
}

static const struct net_backend_ops tap_ops = {
	.tx = tap_tx, .tx_done = tap_tx_done, .poll_fds = tap_poll_fds, .poll_events = tap_poll_events, .features = tap_features,
	.close = tap_close,
};

int tap_open(const struct net_opt *o, struct net_backend *be)
{
	struct tap *t = xcalloc(1, sizeof(*t));
	t->be = be;
	t->merge = !o->no_merge;
	t->fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (t->fd < 0) {
		free(t);
		return err_errno("/dev/net/tun: cannot open it for --network mode=tap");
	}
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR };
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", o->tapif ? o->tapif : "lkvm-tap%d");
	if (ioctl(t->fd, TUNSETIFF, &ifr) < 0) {
		int e = errno;
		close(t->fd);
		free(t);
		errno = e;
		if (e == EPERM)
			return err_set("tap %s: not permitted (creating or attaching a tap needs CAP_NET_ADMIN, or a tap "
				       "made for your user with 'ip tuntap add mode tap user $USER')", ifr.ifr_name);
		return err_errno("tap %s: TUNSETIFF", ifr.ifr_name);
	}
	snprintf(t->name, sizeof(t->name), "%s", ifr.ifr_name);
	int hdr = VNET_HDR_LEN;
	if (ioctl(t->fd, TUNSETVNETHDRSZ, &hdr) < 0) {
		err_errno("tap %s: TUNSETVNETHDRSZ", t->name);
		close(t->fd);
		free(t);
		return -1;
	}
	/* Bring it up when we may; a tap made for us by root may already be up. */
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s >= 0) {
		struct ifreq up = { 0 };
		snprintf(up.ifr_name, IFNAMSIZ, "%s", t->name);
		if (ioctl(s, SIOCGIFFLAGS, &up) == 0 && !(up.ifr_flags & IFF_UP)) {
			up.ifr_flags |= IFF_UP;
			ioctl(s, SIOCSIFFLAGS, &up);
		}
		close(s);
	}
	be->ops = &tap_ops;
	be->priv = t;
	be->offloads = 1ULL << VIRTIO_NET_F_CSUM | 1ULL << VIRTIO_NET_F_GUEST_CSUM | 1ULL << VIRTIO_NET_F_HOST_TSO4 |
		       1ULL << VIRTIO_NET_F_HOST_TSO6 | 1ULL << VIRTIO_NET_F_GUEST_TSO4 | 1ULL << VIRTIO_NET_F_GUEST_TSO6;
	pr_info("network: tap %s", t->name);
	return 0;
}
