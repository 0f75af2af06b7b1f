/*
 * virtio-net (virtio/net.c) and the backends it carries frames for: tap
 * (net/tap.c) and the built-in user-mode network (net/user*.c). The device
 * runs one I/O thread per NIC that polls the backend's fds; a backend hands
 * received frames to vnet_rx() from that thread.
 */
#ifndef LKVM_NET_H
#define LKVM_NET_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <linux/virtio_net.h>
#include "net_user.h"

struct vm;
struct vnet;
struct net_user_state;

/* One --network NIC. */
enum net_mode { NET_USER, NET_TAP, NET_NONE };
struct net_opt {		/* --network mode=...,tapif=,guest_mac=,hostfwd= */
	enum net_mode mode;
	bool restricted;	/* user mode: no NAT to the outside, forwards only */
	bool policy_sandbox;	/* user mode, policy=sandbox: net/user_policy.c */
	bool host_loopback;	/* host_loopback=on */
	int nr_allow;
	struct net_user_rule allow[NET_USER_MAX_ALLOW];	/* allow=HOST[/BITS][:PORT] */
	const char *tapif;
	bool no_merge;		/* tap, merge=off: each guest frame is one write */
	uint8_t mac[6];
	bool mac_set;
	int nr_fwds;
	struct { bool udp; uint16_t host_port, guest_port; } fwds[8];
};

#define VNET_HDR_LEN 12		/* struct virtio_net_hdr with num_buffers (virtio 1.x) */
#define VNET_MAX_FRAME 65550	/* largest frame with GSO: 64 KiB plus Ethernet */

/* VIRTIO_NET_F_* and VIRTIO_NET_HDR_F_*: <linux/virtio_net.h> */

/*
 * The virtio-net header of an Ethernet + IPv4 (no options) + TCP frame whose
 * TCP checksum is left partial (the field holds the pseudo-header's sum): one
 * segment, or several of gso payload bytes each when gso > 0. hlen: all headers.
 */
static inline void vnet_hdr_tcp4_partial(uint8_t h[VNET_HDR_LEN], unsigned hlen, uint16_t gso)
{
	const unsigned csum_start = 14 + 20, csum_offset = 16;
	h[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	h[1] = gso ? VIRTIO_NET_HDR_GSO_TCPV4 : VIRTIO_NET_HDR_GSO_NONE;
	h[2] = hlen, h[3] = hlen >> 8;
	h[4] = gso, h[5] = gso >> 8;
	h[6] = csum_start, h[7] = 0;
	h[8] = csum_offset, h[9] = 0;
	h[10] = h[11] = 0;	/* num_buffers: the receive path's */
}

struct net_backend_ops {
	/* A frame from the guest; hdr is its virtio-net header (flags, GSO, checksum offsets). */
	void (*tx)(void *be, const uint8_t *hdr, const struct iovec *iov, int n, size_t len);
	/* Optional (tap): the end of a batch of tx() calls; a frame held back must go now. */
	void (*tx_done)(void *be);
	/* fds to poll; rx_room says whether the guest has receive buffers now. */
	int (*poll_fds)(void *be, struct pollfd *fds, int max, bool rx_room);
	void (*poll_events)(void *be, const struct pollfd *fds, int n);
	/* ms until the backend wants poll_events() called anyway (timers); -1: never. */
	int (*timeout_ms)(void *be);
	/* The driver accepted these features (checksum/TSO offloads to switch on). */
	void (*features)(void *be, uint64_t driver_features);
	/* Release everything (the device is being destroyed; no other call runs). */
	void (*close)(void *be);
	/* Optional (user mode), for snapshots while the NIC's thread is stopped: see net_user.h. */
	void (*get_state)(void *be, struct net_user_state *st);
	void (*set_state)(void *be, const struct net_user_state *st);
	/* Optional (user mode): the stack's counters for `lkvm stat`, from any thread. */
	void (*stats)(void *be, struct net_user_stats *st, uint64_t *backlog_dropped);
};

struct net_backend {
	const struct net_backend_ops *ops;
	void *priv;
	uint64_t offloads;	/* VIRTIO_NET_F_* offload bits the backend can honour */
	struct vnet *owner;	/* set by virtio_net_add(): where vnet_rx() frames go */
	uint64_t tx_merged;	/* tap: segments sent merged into an earlier one (atomic) */
};

/*
 * A frame for the guest: hdr (VNET_HDR_LEN bytes, num_buffers filled here) or
 * NULL for a plain frame. 0 = delivered; -1 = the guest has no receive buffers
 * now (keep the frame, try again after the next wake-up); 1 = dropped.
 */
int vnet_rx(struct vnet *n, const uint8_t *hdr, const void *frame, size_t len);
/* The same with the frame's len bytes in nf <= VNET_RX_FRAME_IOV pieces. */
#define VNET_RX_FRAME_IOV 4
struct iovec;
int vnet_rx_iov(struct vnet *n, const uint8_t *hdr, const struct iovec *frame, int nf, size_t len);

/* Backends: fill be; 0, or -1 with err set. */
int tap_open(const struct net_opt *o, struct net_backend *be);
void tap_set_merge(struct net_backend *be, bool on);	/* for bench/devices.c */
int user_net_open(const struct net_opt *o, struct net_backend *be);

/* One NIC with a ready backend (tests pass their own; it is closed, not freed, with the NIC). */
struct vnet *virtio_net_add(struct vm *vm, const struct net_opt *o, struct net_backend *be);

#endif
