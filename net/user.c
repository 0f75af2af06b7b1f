/*
 * User-mode network stack: set-up, the event and timer entry points, and the
 * receive path as far as ARP, IPv4 and ICMP. DHCP, UDP/ICMP flows and TCP live
 * in user_dhcp.c, user_udp.c and user_tcp.c.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "net.h"
#include "user_int.h"
#include "util.h"

const uint8_t nu_gw_mac[6] = { 0x52, 0x55, 0x0a, 0x00, 0x02, 0x02 };
static const uint8_t bcast_mac[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

#define ETH_P_IP_	0x0800
#define ETH_P_ARP_	0x0806

static uint64_t monotonic_ms(void *opaque)
{
	return mono_ms();
}

uint64_t net_user_now(const struct net_user *nu)
{
	return nu->clock_ms(nu->opaque);
}

/* xorshift32: initial sequence numbers and ports need to be unguessable-ish, not crypto. */
uint32_t nu_random(struct net_user *nu)
{
	uint32_t x = nu->rng;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return nu->rng = x;
}

int nu_nonblock_socket(int type, int proto)
{
	return socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
}

/* Change what epoll watches fd for; 0 takes it out, so a hung-up socket cannot spin the loop. */
int nu_watch_set(struct net_user *nu, int fd, struct nu_watch *w, uint32_t old, uint32_t events)
{
	if (old == events)
		return 0;
	struct epoll_event ev = { .events = events, .data.ptr = w };
	if (!events)
		return epoll_ctl(nu->epfd, EPOLL_CTL_DEL, fd, NULL);
	return epoll_ctl(nu->epfd, old ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev);
}

void nu_kill(struct net_user *nu, struct nu_watch *w)
{
	if (w->dead)
		return;
	w->dead = true;
	w->next_zombie = nu->zombies;
	nu->zombies = w;
}

static void reap(struct net_user *nu)
{
	while (nu->zombies) {
		struct nu_watch *w = nu->zombies;
		nu->zombies = w->next_zombie;
		free(w);
	}
}

bool nu_map_dst(struct net_user *nu, uint32_t ip, uint16_t port, struct sockaddr_in *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons(port);
	if (nu->restricted || !port)
		return false;
	if (ip == NU_GW) {
		sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		return nu_policy_allows(nu, INADDR_LOOPBACK, port);
	}
	if (ip == NU_DNS) {
		if (port != 53 || !nu->have_dns)
			return false;
		*sa = nu->dns;
		return true;
	}
	uint8_t a = ip >> 24;
	/* Our own subnet has nobody else; 0/8, loopback, multicast and class E are not destinations. */
	if ((ip & NU_MASK) == NU_NET || a == 0 || a == 127 || a >= 224)
		return false;
	sa->sin_addr.s_addr = htonl(ip);
	return nu_policy_allows(nu, ip, port);
}

/*
 * The L4 message is hlen bytes at nu_l4(), then pay's n pieces (a TCP payload, left where it is).
 * gso: TCP only, the segment size of a frame of several (0: one); partial: leave the TCP checksum to the guest.
 */
static void send_ip(struct net_user *nu, const uint8_t *dst_mac, uint32_t src, uint32_t dst,
		    uint8_t proto, size_t hlen, const struct iovec *pay, int n, uint16_t gso, bool partial)
{
	uint8_t *f = nu->frame, *ip = f + ETH_HLEN, *l4 = ip + IP_HLEN;
	struct iovec v[NET_USER_FRAME_IOV] = { { f, ETH_HLEN + IP_HLEN + hlen } };
	size_t l4len = hlen;
	for (int i = 0; i < n; i++) {
		v[1 + i] = pay[i];
		l4len += pay[i].iov_len;
	}
	/* Until the guest has said who it is, everyone hears it. */
	if (!dst_mac)
		dst_mac = memcmp(nu->guest_mac, "\0\0\0\0\0\0", 6) ? nu->guest_mac : bcast_mac;
	memcpy(f, dst_mac, 6);
	memcpy(f + 6, nu_gw_mac, 6);
	wbe16(f + 12, ETH_P_IP_);
	ip[0] = 0x45;
	ip[1] = 0;
	wbe16(ip + 2, IP_HLEN + l4len);
	wbe16(ip + 4, nu->ip_id);
	nu->ip_id += gso ? (l4len - TCP_HLEN + gso - 1) / gso : 1;	/* each segment the guest may cut has one */
	wbe16(ip + 6, proto == IPPROTO_TCP ? 0x4000 : 0);	/* DF: our TCP segments fit the MTU */
	ip[8] = 64;
	ip[9] = proto;
	wbe16(ip + 10, 0);
	wbe32(ip + 12, src);
	wbe32(ip + 16, dst);
	wbe16(ip + 10, inet_csum_fold(inet_csum_add(0, ip, IP_HLEN)));
	if (partial) {
		/* The field holds the pseudo-header's sum, not inverted; the guest's stack takes it as checked. */
		wbe16(l4 + 16, (uint16_t)~inet_csum_fold(inet_pseudo_sum(src, dst, proto, l4len)));
		uint8_t hdr[VNET_HDR_LEN];
		vnet_hdr_tcp4_partial(hdr, ETH_HLEN + IP_HLEN + (l4[12] >> 4) * 4, gso);
		nu->st.tx_frames++;
		nu->st.tcp_gso_sent += gso != 0;
		nu->to_guest(nu->opaque, hdr, v, 1 + n, ETH_HLEN + IP_HLEN + l4len);
		return;
	}
	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
		int off = proto == IPPROTO_TCP ? 16 : 6;
		wbe16(l4 + off, 0);
		/* hlen is even (a TCP header is whole words; UDP's payload is in the frame: n = 0). */
		uint16_t c = inet_csum_fold(inet_csum_iov(inet_csum_add(inet_pseudo_sum(src, dst, proto, l4len), l4, hlen),
							  pay, n));
		if (proto == IPPROTO_UDP && !c)
			c = 0xffff;	/* 0 would mean "no checksum" */
		wbe16(l4 + off, c);
	} else if (proto == IPPROTO_ICMP_) {
		wbe16(l4 + 2, 0);
		wbe16(l4 + 2, inet_csum_fold(inet_csum_add(0, l4, l4len)));
	}
	nu->st.tx_frames++;
	nu->to_guest(nu->opaque, NULL, v, 1 + n, ETH_HLEN + IP_HLEN + l4len);
}

void nu_send_ip(struct net_user *nu, const uint8_t *dst_mac, uint32_t src, uint32_t dst,
		uint8_t proto, size_t l4len)
{
	send_ip(nu, dst_mac, src, dst, proto, l4len, NULL, 0, 0, false);
}

void nu_send_tcp(struct net_user *nu, uint32_t src, uint32_t dst, size_t hlen, const struct iovec *pay, int n,
		 uint16_t gso)
{
	send_ip(nu, NULL, src, dst, IPPROTO_TCP, hlen, pay, n, nu->guest_tso ? gso : 0, nu->guest_csum);
}

void net_user_set_offload(struct net_user *nu, bool csum, bool tso)
{
	nu->guest_csum = csum;
	nu->guest_tso = csum && tso;	/* a GSO frame's checksum is always partial */
}

void nu_send_udp(struct net_user *nu, const uint8_t *dst_mac, uint32_t src, uint16_t sport,
		 uint32_t dst, uint16_t dport, size_t plen)
{
	uint8_t *u = nu_l4(nu);
	wbe16(u, sport);
	wbe16(u + 2, dport);
	wbe16(u + 4, UDP_HLEN + plen);
	nu_send_ip(nu, dst_mac, src, dst, IPPROTO_UDP, UDP_HLEN + plen);
}

/* Any address of our subnet but the guest's, the network's and the broadcast one is "us". */
static bool is_ours(uint32_t ip)
{
	return (ip & NU_MASK) == NU_NET && ip != NU_GUEST && ip != NU_NET && ip != NU_BCAST;
}

static void learn_mac(struct net_user *nu, const uint8_t *mac)
{
	if (!(mac[0] & 1) && memcmp(mac, "\0\0\0\0\0\0", 6))
		memcpy(nu->guest_mac, mac, 6);
}

static bool arp_input(struct net_user *nu, const uint8_t *eth, const uint8_t *a, size_t len)
{
	if (len < 28 || be16(a) != 1 || be16(a + 2) != ETH_P_IP_ || a[4] != 6 || a[5] != 4)
		return false;
	uint32_t spa = be32(a + 14), tpa = be32(a + 24);
	if (spa == NU_GUEST || spa == 0)
		learn_mac(nu, a + 8);
	if (be16(a + 6) != 1)	/* replies and gratuitous announcements need no answer */
		return true;
	if (!is_ours(tpa) || spa == tpa)
		return true;
	uint8_t *f = nu->frame, *r = f + ETH_HLEN;
	memcpy(f, eth + 6, 6);
	memcpy(f + 6, nu_gw_mac, 6);
	wbe16(f + 12, ETH_P_ARP_);
	wbe16(r, 1);
	wbe16(r + 2, ETH_P_IP_);
	r[4] = 6;
	r[5] = 4;
	wbe16(r + 6, 2);
	memcpy(r + 8, nu_gw_mac, 6);
	wbe32(r + 14, tpa);
	memcpy(r + 18, a + 8, 6);
	memcpy(r + 24, a + 14, 4);
	memset(r + 28, 0, 60 - ETH_HLEN - 28);	/* pad to the Ethernet minimum */
	nu->st.tx_frames++;
	nu->to_guest(nu->opaque, NULL, &(struct iovec){ f, 60 }, 1, 60);
	return true;
}

static bool icmp_input(struct net_user *nu, uint32_t dst, const uint8_t *m, size_t len)
{
	/* ICMP has no offload in virtio-net: always check. */
	if (len < 8 || inet_csum_fold(inet_csum_add(0, m, len)) != 0)
		return false;
	if (m[0] != 8 || m[1] != 0)	/* only echo requests are served */
		return false;
	if (dst == NU_GW || dst == NU_DNS) {
		if (len > NET_USER_MTU - IP_HLEN)
			return false;
		uint8_t *r = nu_l4(nu);
		memmove(r, m, len);
		r[0] = 0;
		nu_send_ip(nu, NULL, dst, NU_GUEST, IPPROTO_ICMP_, len);
		return true;
	}
	if ((dst & NU_MASK) == NU_NET || nu->restricted)
		return false;
	return nu_icmp_echo_out(nu, dst, m, len);
}

static bool l4_csum_ok(uint32_t src, uint32_t dst, uint8_t proto, const uint8_t *p, size_t len)
{
	return inet_csum_fold(inet_csum_add(inet_pseudo_sum(src, dst, proto, len), p, len)) == 0;
}

static bool ip_input(struct net_user *nu, const uint8_t *eth, const uint8_t *ip, size_t len,
		     bool csum_partial)
{
	if (len < 20 || ip[0] >> 4 != 4)
		return false;
	size_t ihl = (ip[0] & 15) * 4, tot = be16(ip + 2);
	if (ihl < 20 || ihl > len || tot < ihl || tot > len)
		return false;
	if (inet_csum_fold(inet_csum_add(0, ip, ihl)) != 0)
		return false;
	if (be16(ip + 6) & 0x3fff)	/* more-fragments or an offset: no reassembly */
		return false;
	uint32_t src = be32(ip + 12), dst = be32(ip + 16);
	const uint8_t *p = ip + ihl;
	size_t plen = tot - ihl;
	switch (ip[9]) {
	case IPPROTO_UDP: {
		if (plen < UDP_HLEN)
			return false;
		size_t ulen = be16(p + 4);
		if (ulen < UDP_HLEN || ulen > plen)
			return false;
		if (be16(p + 6) && !csum_partial && !l4_csum_ok(src, dst, IPPROTO_UDP, p, ulen))
			return false;
		uint16_t sport = be16(p), dport = be16(p + 2);
		if (dport == 67 && sport == 68 && (dst == NU_BCAST || dst == 0xffffffffu || is_ours(dst))) {
			learn_mac(nu, eth + 6);
			nu_dhcp_input(nu, p + UDP_HLEN, ulen - UDP_HLEN);
			return true;
		}
		if (src != NU_GUEST)
			return false;
		learn_mac(nu, eth + 6);
		return nu_udp_input(nu, dst, sport, dport, p + UDP_HLEN, ulen - UDP_HLEN);
	}
	case IPPROTO_TCP:
		/* Nobody answers TCP sent to a broadcast or multicast address, not even with RST. */
		if (src != NU_GUEST || plen < TCP_HLEN || dst == NU_BCAST || dst >= 0xe0000000u)
			return false;
		if (!csum_partial && !l4_csum_ok(src, dst, IPPROTO_TCP, p, plen))
			return false;
		learn_mac(nu, eth + 6);
		nu_tcp_input(nu, dst, p, plen);
		return true;
	case IPPROTO_ICMP_:
		if (src != NU_GUEST)
			return false;
		learn_mac(nu, eth + 6);
		return icmp_input(nu, dst, p, plen);
	}
	return false;
}

static void input(struct net_user *nu, const void *frame, size_t len, bool csum_partial)
{
	const uint8_t *f = frame;
	bool ok = false;
	nu->now = net_user_now(nu);
	nu->st.rx_frames++;
	/* Frames for the gateway's MAC or broadcast; multicast and strangers are not ours. */
	if (len >= ETH_HLEN && (!memcmp(f, nu_gw_mac, 6) || !memcmp(f, bcast_mac, 6))) {
		uint16_t type = be16(f + 12);
		if (type == ETH_P_ARP_)
			ok = arp_input(nu, f, f + ETH_HLEN, len - ETH_HLEN);
		else if (type == ETH_P_IP_)
			ok = ip_input(nu, f, f + ETH_HLEN, len - ETH_HLEN, csum_partial);
	}
	if (!ok)
		nu->st.rx_dropped++;
	reap(nu);
}

void net_user_from_guest(struct net_user *nu, const void *frame, size_t len)
{
	input(nu, frame, len, false);
}

void net_user_from_guest_csum_partial(struct net_user *nu, const void *frame, size_t len)
{
	input(nu, frame, len, true);
}

int net_user_fd(const struct net_user *nu)
{
	return nu->epfd;
}

void net_user_process(struct net_user *nu)
{
	struct epoll_event ev[64];
	nu->now = net_user_now(nu);
	int n = epoll_wait(nu->epfd, ev, ARRAY_SIZE(ev), 0);
	for (int i = 0; i < n; i++) {
		struct nu_watch *w = ev[i].data.ptr;
		if (w->dead)
			continue;
		switch (w->kind) {
		case W_TCP:
			nu_tcp_event(nu, (struct tcp_conn *)w, ev[i].events);
			break;
		case W_TCP_LISTEN:
			nu_tcp_accept(nu, (struct nu_fwd *)w);
			break;
		case W_UDP_FLOW:
			nu_udp_event(nu, w, ev[i].events);
			break;
		case W_UDP_LISTEN:
			nu_udp_listen_event(nu, (struct nu_fwd *)w);
			break;
		}
	}
	reap(nu);
}

void net_user_get_state(const struct net_user *nu, struct net_user_state *st)
{
	memcpy(st->guest_mac, nu->guest_mac, 6);
	st->nr_flows = nu_tcp_flows(nu, st->flows, NET_USER_MAX_TCP);
}

void net_user_set_state(struct net_user *nu, const struct net_user_state *st)
{
	learn_mac(nu, st->guest_mac);
	free(nu->resets);
	unsigned n = MIN(st->nr_flows, (unsigned)NET_USER_MAX_TCP);
	nu->resets = xcalloc(n ? n : 1, sizeof(*nu->resets));
	memcpy(nu->resets, st->flows, n * sizeof(*nu->resets));
	nu->nr_resets = n;
}

int net_user_timeout(struct net_user *nu)
{
	if (nu->nr_resets || nu->tcp_flush_due)
		return 0;
	uint64_t next = MIN(nu_tcp_timer(nu, false), nu_udp_timer(nu, false));
	if (next == UINT64_MAX)
		return -1;
	uint64_t now = net_user_now(nu);
	return next <= now ? 0 : (int)MIN(next - now, (uint64_t)60000);
}

void net_user_timer(struct net_user *nu, uint64_t now_ms)
{
	nu->now = now_ms;
	if (nu->nr_resets) {	/* once, on the I/O thread: the frames go to the guest from here */
		nu_tcp_reset_flows(nu, nu->resets, nu->nr_resets);
		nu->nr_resets = 0;
	}
	nu_tcp_flush(nu);	/* the guest's frames since the last call: one write per connection */
	nu_tcp_timer(nu, true);
	nu_udp_timer(nu, true);
	reap(nu);
}

uint64_t net_user_refused(const struct net_user *nu)
{
	return __atomic_load_n(&nu->st.policy_refused, __ATOMIC_RELAXED);
}

/* Field by field, relaxed: the control thread reads what the NIC's thread counts. */
void net_user_get_stats(const struct net_user *nu, struct net_user_stats *st)
{
#define LD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
	*st = (struct net_user_stats){
		.tcp_conns = LD(nu->nr_tcp), .udp_flows = LD(nu->nr_udp),
		.rx_frames = LD(nu->st.rx_frames), .rx_dropped = LD(nu->st.rx_dropped), .tx_frames = LD(nu->st.tx_frames),
		.tcp_rst_sent = LD(nu->st.tcp_rst_sent), .tcp_retransmits = LD(nu->st.tcp_retransmits),
		.tcp_host_full = LD(nu->st.tcp_host_full), .tcp_gso_sent = LD(nu->st.tcp_gso_sent),
		.policy_refused = LD(nu->st.policy_refused),
	};
#undef LD
}

/* "IP" or "IP:PORT" */
static bool parse_addr(const char *s, uint16_t def_port, struct sockaddr_in *sa)
{
	char buf[64];
	snprintf(buf, sizeof(buf), "%s", s);
	char *colon = strchr(buf, ':');
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons(def_port);
	if (colon) {
		*colon = 0;
		char *end;
		unsigned long p = strtoul(colon + 1, &end, 10);
		if (*end || !p || p > 65535)
			return false;
		sa->sin_port = htons(p);
	}
	return inet_pton(AF_INET, buf, &sa->sin_addr) == 1;
}

/* The first IPv4 nameserver of resolv.conf (the forwarding sockets are IPv4 only). */
static bool resolv_conf_dns(struct sockaddr_in *sa)
{
	FILE *f = fopen("/etc/resolv.conf", "re");
	if (!f)
		return false;
	char line[256], addr[64];
	bool found = false;
	while (!found && fgets(line, sizeof(line), f))
		if (sscanf(line, " nameserver %63s", addr) == 1 && !strchr(addr, ':'))
			found = parse_addr(addr, 53, sa);
	fclose(f);
	return found;
}

static int open_fwd(struct net_user *nu, struct nu_fwd *f)
{
	f->fd = nu_nonblock_socket(f->udp ? SOCK_DGRAM : SOCK_STREAM, 0);
	if (f->fd < 0)
		return err_errno("user network: socket");
	int one = 1;
	setsockopt(f->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(f->host_port), .sin_addr = nu->fwd_addr };
	if (bind(f->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return err_errno("hostfwd %s port %u", f->udp ? "udp" : "tcp", f->host_port);
	if (!f->udp && listen(f->fd, 16) < 0)
		return err_errno("hostfwd tcp port %u: listen", f->host_port);
	f->w.kind = f->udp ? W_UDP_LISTEN : W_TCP_LISTEN;
	return nu_watch_set(nu, f->fd, &f->w, 0, EPOLLIN) < 0 ? err_errno("epoll_ctl") : 0;
}

struct net_user *net_user_new(const struct net_user_cfg *cfg,
			      void (*to_guest)(void *opaque, const uint8_t *hdr, const struct iovec *iov, int n,
					       size_t len),
			      void *opaque)
{
	struct net_user *nu = xcalloc(1, sizeof(*nu));
	nu->to_guest = to_guest;
	nu->opaque = opaque;
	nu->clock_ms = cfg->clock_ms ? cfg->clock_ms : monotonic_ms;
	nu->now = net_user_now(nu);
	nu->restricted = cfg->restricted;
	nu->policy_sandbox = cfg->policy_sandbox;
	nu->host_loopback = cfg->host_loopback;
	if (cfg->nr_allow < 0 || cfg->nr_allow > NET_USER_MAX_ALLOW) {
		free(nu);
		err_set("user network: at most %d allow rules", NET_USER_MAX_ALLOW);
		return NULL;
	}
	nu->nr_allow = cfg->nr_allow;
	if (cfg->nr_allow)
		memcpy(nu->allow, cfg->allow, cfg->nr_allow * sizeof(*cfg->allow));
	memcpy(nu->guest_mac, cfg->guest_mac, 6);
	nu->rng = cfg->seed;
	if (!nu->rng && getrandom(&nu->rng, sizeof(nu->rng), GRND_NONBLOCK) != sizeof(nu->rng))
		nu->rng = (uint32_t)nu->now ^ (uint32_t)getpid() << 16;
	if (!nu->rng)
		nu->rng = 1;
	nu->next_port = 49152 + nu_random(nu) % 16384;
	nu->fwds = xcalloc(cfg->nr_fwds ? cfg->nr_fwds : 1, sizeof(*nu->fwds));
	for (int i = 0; i < cfg->nr_fwds; i++)
		nu->fwds[i].fd = -1;
	nu->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (nu->epfd < 0) {
		err_errno("epoll_create1");
		goto fail;
	}
	if (cfg->dns) {
		if (!parse_addr(cfg->dns, 53, &nu->dns)) {
			err_set("user network: bad DNS server '%s'", cfg->dns);
			goto fail;
		}
		nu->have_dns = true;
	} else {
		nu->have_dns = resolv_conf_dns(&nu->dns);
	}
	nu->fwd_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (cfg->fwd_addr && inet_pton(AF_INET, cfg->fwd_addr, &nu->fwd_addr) != 1) {
		err_set("user network: bad forward address '%s'", cfg->fwd_addr);
		goto fail;
	}
	nu->nr_fwds = cfg->nr_fwds;
	for (int i = 0; i < cfg->nr_fwds; i++) {
		struct nu_fwd *f = &nu->fwds[i];
		f->udp = cfg->fwds[i].udp;
		f->host_port = cfg->fwds[i].host_port;
		f->guest_port = cfg->fwds[i].guest_port;
		if (!f->guest_port) {
			err_set("hostfwd: guest port 0");
			goto fail;
		}
		if (open_fwd(nu, f) < 0)
			goto fail;
	}
	return nu;
fail:
	net_user_free(nu);
	return NULL;
}

void net_user_free(struct net_user *nu)
{
	if (!nu)
		return;
	nu_tcp_free_all(nu);
	nu_udp_free_all(nu);
	reap(nu);
	for (int i = 0; i < nu->nr_fwds; i++)
		if (nu->fwds[i].fd >= 0)
			close(nu->fwds[i].fd);
	free(nu->fwds);
	free(nu->resets);
	if (nu->epfd >= 0)
		close(nu->epfd);
	free(nu);
}
