/*
 * UDP and ICMP echo NAT. Each guest flow (its port, the far address and port)
 * gets its own host socket connected to where the far end really is, so the
 * host kernel filters replies for us; forwarded ports share their listener and
 * remember the host peer instead. Flows end after a quiet spell; when the table
 * is full the quietest one makes room.
 */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include "user_int.h"
#include "util.h"

#define UDP_IDLE_MS	60000
#define SHORT_IDLE_MS	10000	/* DNS and ping: one exchange, then done */
#define BATCH		32	/* datagrams read per event, so one flow cannot starve the rest */

enum { F_UDP, F_UDP_FWD, F_ICMP };

struct udp_flow {
	struct nu_watch w;
	uint8_t type;
	int slot;
	int fd;			/* own socket; -1 for forwarded flows (the listener answers) */
	uint16_t gport;		/* the guest's port; ICMP: its echo identifier */
	uint32_t rip;		/* the far end as the guest sees it */
	uint16_t rport;
	struct nu_fwd *fwd;
	struct sockaddr_in peer;	/* forwarded flows: the host client */
	uint64_t last;
};

static struct udp_flow *find(struct net_user *nu, int type, uint16_t gport, uint32_t rip, uint16_t rport)
{
	for (int i = 0; i < NET_USER_MAX_UDP; i++) {
		struct udp_flow *f = nu->udp[i];
		if (f && f->gport == gport && f->rip == rip && f->rport == rport &&
		    (f->type == type || (type == F_UDP && f->type == F_UDP_FWD)))
			return f;
	}
	return NULL;
}

static void kill_flow(struct net_user *nu, struct udp_flow *f)
{
	if (f->fd >= 0)
		close(f->fd);	/* also leaves the epoll set */
	nu->udp[f->slot] = NULL;
	nu->nr_udp--;
	nu_kill(nu, &f->w);
}

static uint64_t idle_limit(const struct udp_flow *f)
{
	return f->type == F_ICMP || f->rport == 53 ? SHORT_IDLE_MS : UDP_IDLE_MS;
}

static struct udp_flow *new_flow(struct net_user *nu, int type)
{
	if (nu->nr_udp == NET_USER_MAX_UDP) {
		struct udp_flow *oldest = NULL;
		for (int i = 0; i < NET_USER_MAX_UDP; i++)
			if (!oldest || nu->udp[i]->last < oldest->last)
				oldest = nu->udp[i];
		kill_flow(nu, oldest);
	}
	int slot = 0;
	while (nu->udp[slot])
		slot++;
	struct udp_flow *f = xcalloc(1, sizeof(*f));
	f->w.kind = W_UDP_FLOW;
	f->type = type;
	f->slot = slot;
	f->fd = -1;
	f->last = nu->now;
	nu->udp[slot] = f;
	nu->nr_udp++;
	return f;
}

/* A flow with its own socket connected to sa; NULL if the host will not have it. */
static struct udp_flow *open_flow(struct net_user *nu, int type, const struct sockaddr_in *sa)
{
	int fd = nu_nonblock_socket(SOCK_DGRAM, type == F_ICMP ? IPPROTO_ICMP : 0);
	if (fd < 0) {
		if (type == F_ICMP)
			nu->icmp_unavailable = true;	/* net.ipv4.ping_group_range leaves us out */
		return NULL;
	}
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0) {
		close(fd);
		return NULL;
	}
	struct udp_flow *f = new_flow(nu, type);
	f->fd = fd;
	if (nu_watch_set(nu, fd, &f->w, 0, EPOLLIN) < 0) {
		kill_flow(nu, f);
		return NULL;
	}
	return f;
}

bool nu_udp_input(struct net_user *nu, uint32_t dst, uint16_t sport, uint16_t dport,
		  const uint8_t *data, size_t len)
{
	struct udp_flow *f = find(nu, F_UDP, sport, dst, dport);
	if (!f) {
		struct sockaddr_in sa;
		if (!sport || !nu_map_dst(nu, dst, dport, &sa))
			return false;
		f = open_flow(nu, F_UDP, &sa);
		if (!f)
			return false;
		f->gport = sport;
		f->rip = dst;
		f->rport = dport;
	}
	f->last = nu->now;
	/* A full socket buffer drops the datagram, as a congested link would. */
	if (f->type == F_UDP_FWD)
		sendto(f->fwd->fd, data, len, MSG_DONTWAIT, (struct sockaddr *)&f->peer, sizeof(f->peer));
	else
		send(f->fd, data, len, MSG_DONTWAIT);
	return true;
}

bool nu_icmp_echo_out(struct net_user *nu, uint32_t dst, const uint8_t *icmp, size_t len)
{
	uint16_t id = be16(icmp + 4);
	struct udp_flow *f = find(nu, F_ICMP, id, dst, 0);
	if (!f) {
		struct sockaddr_in sa;
		if (nu->icmp_unavailable || !nu_map_dst(nu, dst, 1, &sa))
			return false;
		f = open_flow(nu, F_ICMP, &sa);
		if (!f)
			return false;
		f->gport = id;
		f->rip = dst;
	}
	f->last = nu->now;
	/* The kernel puts in its own identifier and checksum; replies get the guest's back. */
	send(f->fd, icmp, len, MSG_DONTWAIT);
	return true;
}

static void flow_readable(struct net_user *nu, struct udp_flow *f)
{
	for (int i = 0; i < BATCH; i++) {
		uint8_t *buf = f->type == F_ICMP ? nu_l4(nu) : nu_l4(nu) + UDP_HLEN;
		size_t room = f->type == F_ICMP ? NET_USER_MTU - IP_HLEN : NU_UDP_MAX;
		ssize_t n = recv(f->fd, buf, room, MSG_TRUNC | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			continue;	/* ECONNREFUSED and friends: an ICMP error for an earlier datagram */
		}
		if ((size_t)n > room)
			continue;	/* no IP fragmentation towards the guest */
		f->last = nu->now;
		if (f->type == F_ICMP) {
			if (n < 8 || buf[0] != 0)
				continue;
			wbe16(buf + 4, f->gport);
			nu_send_ip(nu, NULL, f->rip, NU_GUEST, IPPROTO_ICMP_, n);
		} else {
			nu_send_udp(nu, NULL, f->rip, f->rport, NU_GUEST, f->gport, n);
		}
	}
}

void nu_udp_event(struct net_user *nu, struct nu_watch *w, uint32_t events)
{
	flow_readable(nu, (struct udp_flow *)w);
}

static uint16_t alloc_port(struct net_user *nu, uint16_t gport)
{
	for (int tries = 0; tries < 16384; tries++) {
		uint16_t p = nu->next_port++;
		if (nu->next_port < 49152)
			nu->next_port = 49152;
		if (!find(nu, F_UDP, gport, NU_GW, p))
			return p;
	}
	return 0;
}

void nu_udp_listen_event(struct net_user *nu, struct nu_fwd *fw)
{
	for (int i = 0; i < BATCH; i++) {
		struct sockaddr_in peer;
		socklen_t plen = sizeof(peer);
		uint8_t *buf = nu_l4(nu) + UDP_HLEN;
		ssize_t n = recvfrom(fw->fd, buf, NU_UDP_MAX, MSG_TRUNC | MSG_DONTWAIT,
				     (struct sockaddr *)&peer, &plen);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			continue;
		}
		if ((size_t)n > NU_UDP_MAX || plen != sizeof(peer) || peer.sin_family != AF_INET)
			continue;
		struct udp_flow *f = NULL;
		for (int k = 0; k < NET_USER_MAX_UDP && !f; k++) {
			struct udp_flow *g = nu->udp[k];
			if (g && g->type == F_UDP_FWD && g->fwd == fw && g->peer.sin_port == peer.sin_port &&
			    g->peer.sin_addr.s_addr == peer.sin_addr.s_addr)
				f = g;
		}
		if (!f) {
			uint16_t port = alloc_port(nu, fw->guest_port);
			if (!port)
				continue;
			f = new_flow(nu, F_UDP_FWD);
			f->gport = fw->guest_port;
			f->rip = NU_GW;
			f->rport = port;
			f->fwd = fw;
			f->peer = peer;
		}
		f->last = nu->now;
		nu_send_udp(nu, NULL, NU_GW, f->rport, NU_GUEST, f->gport, n);
	}
}

uint64_t nu_udp_timer(struct net_user *nu, bool run)
{
	uint64_t next = UINT64_MAX;
	for (int i = 0; i < NET_USER_MAX_UDP; i++) {
		struct udp_flow *f = nu->udp[i];
		if (!f)
			continue;
		uint64_t at = f->last + idle_limit(f);
		if (run && nu->now >= at)
			kill_flow(nu, f);
		else
			next = MIN(next, at);
	}
	return next;
}

void nu_udp_free_all(struct net_user *nu)
{
	for (int i = 0; i < NET_USER_MAX_UDP; i++)
		if (nu->udp[i])
			kill_flow(nu, nu->udp[i]);
}
