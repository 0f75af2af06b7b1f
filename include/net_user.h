/*
 * User-mode networking (--network mode=user): a small IPv4 stack that plays
 * the whole network for one guest NIC. Ethernet frames go in and out; guest
 * TCP, UDP and ICMP echo are carried over ordinary host sockets. Nothing here
 * knows about virtio.
 *
 *   10.0.2.0/24   the guest's network
 *   10.0.2.2      gateway and host: TCP/UDP to it reach the host's 127.0.0.1
 *   10.0.2.3      DNS: UDP/TCP port 53 go to the first nameserver in
 *                 /etc/resolv.conf (or cfg.dns); nothing answers without one
 *   10.0.2.15     the guest, handed out by DHCP
 *
 * Threading: no locks; call every function from one thread. No call blocks:
 * every host socket is non-blocking. to_guest() runs inside net_user_*() calls
 * and must not call back into this net_user.
 *
 * Driving it from an I/O thread:
 *
 *	struct pollfd p = { net_user_fd(nu), POLLIN };	// plus the device's own fds
 *	poll(&p, 1, net_user_timeout(nu));
 *	if (p.revents)
 *		net_user_process(nu);		// host sockets -> frames to the guest
 *	net_user_timer(nu, net_user_now(nu));	// retransmissions, idle flows
 *	... net_user_from_guest(nu, frame, len) for each frame the guest sent.
 *
 * TCP bytes from the guest are queued and written to their host sockets by
 * the next net_user_timer() (net_user_timeout() is then 0): one write for a
 * batch of frames rather than one per segment.
 *
 * net_user_new() reads /etc/resolv.conf and opens the forward listeners, so
 * call it before the seccomp filter goes on; afterwards the stack only uses
 * socket, connect, accept4, send/sendto, recv/recvfrom, readv, setsockopt,
 * getsockopt, getsockname, shutdown, close, epoll_ctl/epoll_wait and
 * clock_gettime (all on lkvm's allowlist).
 */
#ifndef LKVM_NET_USER_H
#define LKVM_NET_USER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define NET_USER_MAX_TCP 256	/* tracked TCP connections; past it a SYN gets RST */
#define NET_USER_MAX_UDP 256	/* UDP and ICMP-echo flows; past it the idlest goes */
#define NET_USER_MTU 1500	/* largest IP packet sent to the guest, but for GSO frames */
#define NET_USER_GSO_MAX 65535	/* largest GSO frame's IP packet, when the guest takes them */
#define NET_USER_FRAME_IOV 3	/* pieces of a frame to the guest: headers, payload up to a ring's wrap, the rest */

struct net_user;

struct net_user_fwd {
	bool udp;
	uint16_t host_port, guest_port;
};

/* policy=sandbox: an address (host order) and prefix the guest may reach anyway; port 0: any. */
struct net_user_rule {
	uint32_t ip;
	int bits;
	uint16_t port;
};
#define NET_USER_MAX_ALLOW 16

struct net_user_cfg {
	uint8_t guest_mac[6];		/* all zero: learnt from the guest's first frame */
	int nr_fwds;
	const struct net_user_fwd *fwds; /* host_port on the host -> 10.0.2.15:guest_port */
	const char *fwd_addr;		/* address the forwards listen on; NULL: 127.0.0.1 */
	const char *dns;		/* resolver "IP[:PORT]"; NULL: from /etc/resolv.conf */
	bool restricted;		/* guest reaches nothing (no NAT); forwards still work */
	bool policy_sandbox;		/* no host loopback, link-local or private ranges (net/user_policy.c) */
	bool host_loopback;		/* policy_sandbox: 10.0.2.2 reaches the host's 127.0.0.1 anyway */
	int nr_allow;
	const struct net_user_rule *allow; /* policy_sandbox: reachable anyway */
	uint32_t seed;			/* initial sequence numbers; 0: random */
	uint64_t (*clock_ms)(void *opaque); /* monotonic ms; NULL: CLOCK_MONOTONIC */
};

struct net_user_stats {
	unsigned tcp_conns, udp_flows;	/* tracked now */
	uint64_t rx_frames, rx_dropped;	/* frames from the guest; dropped as invalid or unroutable */
	uint64_t tx_frames;		/* frames to the guest */
	uint64_t tcp_rst_sent, tcp_retransmits;
	uint64_t tcp_host_full;		/* times a host socket was found full: the guest's bytes then wait for EPOLLOUT */
	uint64_t tcp_gso_sent;		/* TCP frames to the guest of several segments (GSO) */
	uint64_t policy_refused;	/* connections and datagrams policy_sandbox refused (atomic) */
};

/* "HOST[/BITS][:PORT]" (an IPv4 address, or a name resolved now; 10.0.2.2 is 127.0.0.1): 0, or -1 with err set. */
int net_user_parse_rule(const char *s, struct net_user_rule *r);
/* Connections policy_sandbox refused so far (any thread). */
uint64_t net_user_refused(const struct net_user *nu);

/*
 * A stack for one guest NIC; to_guest(opaque, hdr, iov, n, len) receives every
 * frame for the guest (Ethernet, len bytes in n <= NET_USER_FRAME_IOV pieces:
 * the headers, then a TCP segment's payload straight from the connection's
 * buffer; at most 14 + NET_USER_MTU bytes, or 14 + NET_USER_GSO_MAX once the
 * guest takes GSO; the pieces are only valid during the call). hdr is NULL for
 * a frame whose checksums are all filled in, else
 * the frame's virtio-net header (VNET_HDR_LEN bytes: NEEDS_CSUM, and GSO TCPV4
 * for a frame of several segments), as net_user_set_offload() allowed. NULL
 * with err_set() on failure (a forward port in use, a bad address).
 */
struct net_user *net_user_new(const struct net_user_cfg *cfg,
			      void (*to_guest)(void *opaque, const uint8_t *hdr, const struct iovec *iov, int n,
					       size_t len),
			      void *opaque);
void net_user_free(struct net_user *nu);

/*
 * What the guest's driver takes (virtio-net GUEST_CSUM, GUEST_TSO4): TCP
 * frames with the checksum left to it (partial, as a NIC hands the host's own
 * segments up), and TCP frames of up to NET_USER_GSO_MAX bytes cut in the
 * guest's MSS (its kernel takes them as one packet, as from GRO). Both off
 * until this says so.
 */
void net_user_set_offload(struct net_user *nu, bool csum, bool tso);

/*
 * One Ethernet frame from the guest. Anything malformed is dropped. IPv4
 * fragments are dropped (no reassembly). The _csum_partial form is for frames
 * whose TCP/UDP checksum the guest left to the device (virtio-net
 * VIRTIO_NET_HDR_F_NEEDS_CSUM): it skips that check. TCP segments larger than
 * the MTU (guest TSO) are accepted as they are.
 */
void net_user_from_guest(struct net_user *nu, const void *frame, size_t len);
void net_user_from_guest_csum_partial(struct net_user *nu, const void *frame, size_t len);

/* An epoll fd, readable when a host socket needs net_user_process(). */
int net_user_fd(const struct net_user *nu);
void net_user_process(struct net_user *nu);

/* Milliseconds until net_user_timer() has work (0: now), -1 for none. */
int net_user_timeout(struct net_user *nu);
/* Run timers due at now_ms (the clock of net_user_now()). */
void net_user_timer(struct net_user *nu, uint64_t now_ms);
uint64_t net_user_now(const struct net_user *nu);

void net_user_get_stats(const struct net_user *nu, struct net_user_stats *st);

/*
 * Snapshots: what the guest believes of the stack. Its TCP connections
 * cannot survive (their host sockets stay with the old process), so a
 * restored stack resets each one towards the guest, in sequence, at its
 * first timer run; the guest's address needs nothing (DHCP always gives the
 * same one) and its MAC is known at once.
 */
struct net_user_flow {
	uint32_t rip;			/* the far end as the guest sees it */
	uint16_t rport, gport;
	uint32_t seq, ack;		/* our next sequence number, the guest's next one */
};
struct net_user_state {
	uint8_t guest_mac[6];
	unsigned nr_flows;
	struct net_user_flow flows[NET_USER_MAX_TCP];
};
void net_user_get_state(const struct net_user *nu, struct net_user_state *st);
void net_user_set_state(struct net_user *nu, const struct net_user_state *st);

#endif
