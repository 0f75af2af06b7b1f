/*
 * virtio-net: receive queue 0, transmit queue 1, MAC and link status in the
 * config space, mergeable receive buffers. Offloads are offered only where
 * the backend can honour them (tap with a vnet header passes them through).
 * Each NIC has one I/O thread: vCPU kicks reach it through an eventfd, and it
 * polls the backend's fds, so a backend never needs locking of its own.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include "net.h"
#include "util.h"
#include "virtio.h"
#include "vm.h"

enum { Q_RX, Q_TX };
#define MAX_POLL 64
#define RX_MAX_CHAINS 64	/* mergeable buffers one frame may take */
#define TX_BATCH 128	/* transmit chains per turn of the I/O loop */

struct vnet {
	struct virtio_dev dev;
	uint8_t config[10];	/* mac[6], le16 status, le16 max_virtqueue_pairs */
	struct net_backend *be;
	int kick_fd;
	bool rx_starved;	/* the last frame found no buffers: wait for an RX kick */
	uint64_t features_seen;
	pthread_t thread;
	uint8_t txbuf[VNET_HDR_LEN];
	uint64_t rx_frames, tx_frames, rx_dropped;
};

static bool mergeable(struct vnet *n) { return n->dev.driver_features >> VIRTIO_NET_F_MRG_RXBUF & 1; }

int vnet_rx(struct vnet *n, const uint8_t *hdr, const void *frame, size_t len)
{
	struct virtio_dev *d = &n->dev;
	uint8_t h[VNET_HDR_LEN] = { 0 };
	if (hdr)
		memcpy(h, hdr, VNET_HDR_LEN);
	size_t total = VNET_HDR_LEN + len;
	struct virtq_chain c[RX_MAX_CHAINS];
	uint16_t heads[RX_MAX_CHAINS];
	uint32_t lens[RX_MAX_CHAINS];
	int k = 0, max = mergeable(n) ? RX_MAX_CHAINS : 1;
	uint64_t room = 0;
	while (room < total && k < max) {
		int r = virtq_pop(d, Q_RX, &c[k]);
		if (r < 0)
			return 1;	/* a broken ring: the device waits for a reset */
		if (r == 0)
			break;
		if (!c[k].in_len) {	/* nothing writable: the driver's mistake; all returned unused */
			for (int i = 0; i <= k; i++) {
				heads[i] = c[i].head;
				lens[i] = 0;
			}
			virtq_push_n(d, Q_RX, heads, lens, k + 1);
			n->rx_dropped++;
			return 1;
		}
		room += c[k].in_len;
		k++;
	}
	if (room < total) {
		if (k < max && k < d->q[Q_RX].size) {	/* not enough buffers yet: hand them back and wait */
			virtq_unpop(d, Q_RX, k);
			n->rx_starved = true;
			return -1;
		}
		/* The driver's buffers can never hold it: drop the frame, not the buffers. */
		virtq_unpop(d, Q_RX, k);
		n->rx_dropped++;
		return 1;
	}
	put_le16(h + 10, k);	/* num_buffers */
	size_t off = 0;
	for (int i = 0; i < k; i++) {
		struct iovec *iov = c[i].iov + c[i].nout;
		size_t w = 0, cap = MIN(c[i].in_len, total - off);
		if (off < VNET_HDR_LEN)
			w = buf_to_iov(iov, c[i].nin, 0, h + off, MIN(VNET_HDR_LEN - off, cap));
		if (w < cap)
			w += buf_to_iov(iov, c[i].nin, w, (const uint8_t *)frame + (off + w - VNET_HDR_LEN), cap - w);
		heads[i] = c[i].head;
		lens[i] = w;
		off += w;
	}
	virtq_push_n(d, Q_RX, heads, lens, k);
	n->rx_frames++;
	return 0;
}

/*
 * Chains on the transmit queue go to the backend, header split off; at most
 * TX_BATCH a turn, so a guest that keeps the queue full cannot starve the
 * receive side (a tap's queue would overflow and drop the host's ACKs).
 * True if chains were left for the next turn.
 */
static bool drain_tx(struct vnet *n)
{
	struct virtq_chain c;
	for (int done = 0;; done++) {
		if (done == TX_BATCH)
			return true;
		if (virtq_pop(&n->dev, Q_TX, &c) != 1)
			return false;
		uint8_t hdr[VNET_HDR_LEN] = { 0 };
		size_t got = iov_to_buf(c.iov, c.nout, 0, hdr, VNET_HDR_LEN);
		if (got == VNET_HDR_LEN && c.out_len > VNET_HDR_LEN && c.out_len - VNET_HDR_LEN <= VNET_MAX_FRAME) {
			struct iovec iov[VIRTQ_MAX_SEGS];
			int m = 0;
			size_t skip = VNET_HDR_LEN;
			for (int i = 0; i < c.nout; i++) {
				if (skip >= c.iov[i].iov_len) {
					skip -= c.iov[i].iov_len;
					continue;
				}
				iov[m++] = (struct iovec){ (uint8_t *)c.iov[i].iov_base + skip, c.iov[i].iov_len - skip };
				skip = 0;
			}
			n->be->ops->tx(n->be->priv, hdr, iov, m, c.out_len - VNET_HDR_LEN);
			n->tx_frames++;
		}
		virtq_push(&n->dev, Q_TX, c.head, 0);
	}
}

static void *io_thread(void *arg)
{
	struct vnet *n = arg;
	struct net_backend *be = n->be;
	pthread_setname_np(pthread_self(), "lkvm-net");
	bool tx_left = false;
	for (;;) {
		struct pollfd fds[MAX_POLL] = { { .fd = n->kick_fd, .events = POLLIN } };
		int nfds = 1 + be->ops->poll_fds(be->priv, fds + 1, MAX_POLL - 1, !n->rx_starved);
		int timeout = tx_left ? 0 : be->ops->timeout_ms ? be->ops->timeout_ms(be->priv) : -1;
		if (poll(fds, nfds, timeout) < 0 && errno != EINTR)
			break;
		if (fds[0].revents & POLLIN) {
			uint64_t v;
			if (read(n->kick_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				break;
			n->rx_starved = false;
		}
		if (n->dev.driver_features != n->features_seen && (n->dev.status & VIRTIO_STATUS_DRIVER_OK)) {
			n->features_seen = n->dev.driver_features;
			if (be->ops->features)
				be->ops->features(be->priv, n->features_seen);
		}
		tx_left = (n->dev.status & VIRTIO_STATUS_DRIVER_OK) && drain_tx(n);
		be->ops->poll_events(be->priv, fds + 1, nfds - 1);
	}
	return NULL;
}

static void net_notify(struct virtio_dev *d, int qi)
{
	struct vnet *n = d->priv;
	uint64_t one = 1;
	if (write(n->kick_fd, &one, sizeof(one)) < 0)
		pr_debug("virtio-net: kick lost");
}

static void net_reset(struct virtio_dev *d)
{
	struct vnet *n = d->priv;
	n->rx_starved = false;
}

static const struct virtio_ops net_ops = { .notify = net_notify, .reset = net_reset };

struct vnet *virtio_net_add(struct vm *vm, const struct net_opt *o, struct net_backend *be)
{
	struct vnet *n = xcalloc(1, sizeof(*n));
	n->be = be;
	be->owner = n;
	n->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (n->kick_fd < 0) {
		err_errno("virtio-net: eventfd");
		free(n);
		return NULL;
	}
	memcpy(n->config, o->mac, 6);
	put_le16(n->config + 6, 1);	/* VIRTIO_NET_S_LINK_UP */
	put_le16(n->config + 8, 1);
	struct virtio_dev *d = &n->dev;
	d->name = "virtio-net";
	d->device_id = 1;
	d->nr_queues = 2;
	d->config = n->config;
	d->config_len = sizeof(n->config);
	d->features = 1ULL << VIRTIO_NET_F_MAC | 1ULL << VIRTIO_NET_F_STATUS | 1ULL << VIRTIO_NET_F_MRG_RXBUF |
		      be->offloads;
	d->ops = &net_ops;
	d->priv = n;
	if (virtio_pci_register(vm, d) < 0)
		return NULL;
	if (pthread_create(&n->thread, NULL, io_thread, n)) {
		err_set("virtio-net: cannot start its I/O thread");
		return NULL;
	}
	return n;
}

int virtio_net_init(struct vm *vm)
{
	for (int i = 0; i < vm->cfg.nr_nics; i++) {
		struct net_opt *o = &vm->cfg.nics[i];
		if (o->mode == NET_NONE)
			continue;
		if (!o->mac_set) {	/* 52:54:00:12:34:56, :57, ... (locally administered) */
			static const uint8_t base[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
			memcpy(o->mac, base, 6);
			o->mac[5] += i;
		}
		struct net_backend *be = xcalloc(1, sizeof(*be));
		int r = o->mode == NET_TAP ? tap_open(o, be) : user_net_open(o, be);
		if (r < 0 || !virtio_net_add(vm, o, be))
			return -1;
	}
	return 0;
}
