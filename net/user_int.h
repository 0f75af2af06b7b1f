/* Shared between the parts of the user-mode network stack (net/user*.c). */
#ifndef LKVM_NET_USER_INT_H
#define LKVM_NET_USER_INT_H

#include <netinet/in.h>
#include "inet.h"
#include "net_user.h"

/* Guest-visible addresses, host byte order. */
#define NU_NET		0x0a000200u
#define NU_MASK		0xffffff00u
#define NU_GW		0x0a000202u
#define NU_DNS		0x0a000203u
#define NU_GUEST	0x0a00020fu
#define NU_BCAST	0x0a0002ffu

#define ETH_HLEN	14
#define IP_HLEN		20	/* what we send: no options */
#define UDP_HLEN	8
#define TCP_HLEN	20
#define IPPROTO_ICMP_	1
#define NU_UDP_MAX	(NET_USER_MTU - IP_HLEN - UDP_HLEN)	/* 1472 */
#define NU_TCP_MSS	(NET_USER_MTU - IP_HLEN - TCP_HLEN)	/* 1460 */

extern const uint8_t nu_gw_mac[6];

/*
 * Everything epoll reports on starts with a watch; it is freed only after the
 * current batch of events (a later event may still point at it), so killing
 * marks it dead and queues it.
 */
enum { W_TCP, W_TCP_LISTEN, W_UDP_FLOW, W_UDP_LISTEN };
struct nu_watch {
	uint8_t kind;
	bool dead;
	struct nu_watch *next_zombie;
};

struct nu_fwd {
	struct nu_watch w;
	int fd;
	bool udp;
	uint16_t host_port, guest_port;
};

struct tcp_conn;
struct udp_flow;

struct net_user {
	void (*to_guest)(void *opaque, const uint8_t *hdr, const struct iovec *iov, int n, size_t len);
	bool guest_csum, guest_tso;	/* net_user_set_offload() */
	void *opaque;
	uint64_t (*clock_ms)(void *opaque);
	uint64_t now;
	int epfd;
	uint8_t guest_mac[6];
	bool restricted;
	bool policy_sandbox, host_loopback;
	int nr_allow;
	struct net_user_rule allow[NET_USER_MAX_ALLOW];
	bool have_dns;
	bool icmp_unavailable;		/* unprivileged ICMP sockets refused once: stop trying */
	struct sockaddr_in dns;
	struct in_addr fwd_addr;
	int nr_fwds;
	struct nu_fwd *fwds;

	struct tcp_conn *tcp[NET_USER_MAX_TCP];	/* NULL: free slot */
	struct tcp_conn *tcp_last;	/* lookup cache: bulk transfers hit one connection */
	unsigned nr_tcp;
	unsigned tcp_flush_due;		/* connections with guest bytes queued since the last flush */
	unsigned tcp_scaled;		/* connections with window scaling and big rings (user_tcp.c) */
	struct udp_flow *udp[NET_USER_MAX_UDP];
	unsigned nr_udp;
	struct nu_watch *zombies;
	struct net_user_flow *resets;	/* restored: flows to reset towards the guest, then freed */
	unsigned nr_resets;

	uint32_t rng;
	uint16_t ip_id;
	uint16_t next_port;		/* ports 10.0.2.2 uses for forwarded flows */
	struct net_user_stats st;
	/* Every frame's headers to the guest are built here (and all of it but a TCP payload). */
	uint8_t frame[ETH_HLEN + NET_USER_GSO_MAX] __attribute__((aligned(8)));
};

/* net/user_policy.c: may the guest reach the host address ip (host order), port? Counts refusals. */
bool nu_policy_allows(struct net_user *nu, uint32_t ip, uint16_t port);

/* net/user.c */
static inline uint8_t *nu_l4(struct net_user *nu) { return nu->frame + ETH_HLEN + IP_HLEN; }
/* Wrap the L4 message at nu_l4() (l4len bytes) in IPv4 and Ethernet, fill every checksum, send. */
void nu_send_ip(struct net_user *nu, const uint8_t *dst_mac, uint32_t src, uint32_t dst,
		uint8_t proto, size_t l4len);
/*
 * A TCP segment, its header (hlen bytes) at nu_l4() and its payload in pay (n <= 2
 * pieces, not copied); several segments of gso bytes each (gso > 0: the guest takes GSO) or one.
 */
void nu_send_tcp(struct net_user *nu, uint32_t src, uint32_t dst, size_t hlen, const struct iovec *pay, int n,
		 uint16_t gso);
void nu_send_udp(struct net_user *nu, const uint8_t *dst_mac, uint32_t src, uint16_t sport,
		 uint32_t dst, uint16_t dport, size_t plen);	/* payload at nu_l4() + 8 */
uint32_t nu_random(struct net_user *nu);
int nu_watch_set(struct net_user *nu, int fd, struct nu_watch *w, uint32_t old, uint32_t events);
void nu_kill(struct net_user *nu, struct nu_watch *w);
/* Where a guest flow to ip:port goes on the host; false: nowhere. */
bool nu_map_dst(struct net_user *nu, uint32_t ip, uint16_t port, struct sockaddr_in *sa);
int nu_nonblock_socket(int type, int proto);

/* net/user_dhcp.c */
void nu_dhcp_input(struct net_user *nu, const uint8_t *msg, size_t len);

/* net/user_udp.c: UDP and ICMP echo flows */
bool nu_udp_input(struct net_user *nu, uint32_t dst, uint16_t sport, uint16_t dport,
		  const uint8_t *data, size_t len);
bool nu_icmp_echo_out(struct net_user *nu, uint32_t dst, const uint8_t *icmp, size_t len);
void nu_udp_event(struct net_user *nu, struct nu_watch *w, uint32_t events);
void nu_udp_listen_event(struct net_user *nu, struct nu_fwd *f);
/* Run what is due if run; return the earliest deadline left (UINT64_MAX: none). */
uint64_t nu_udp_timer(struct net_user *nu, bool run);
void nu_udp_free_all(struct net_user *nu);

/* net/user_tcp.c */
void nu_tcp_input(struct net_user *nu, uint32_t dst, const uint8_t *seg, size_t len);
void nu_tcp_event(struct net_user *nu, struct tcp_conn *c, uint32_t events);
void nu_tcp_accept(struct net_user *nu, struct nu_fwd *f);
uint64_t nu_tcp_timer(struct net_user *nu, bool run);
void nu_tcp_flush(struct net_user *nu);
void nu_tcp_free_all(struct net_user *nu);
/* Snapshots: the established connections; RST for each restored one. */
unsigned nu_tcp_flows(const struct net_user *nu, struct net_user_flow *out, unsigned max);
void nu_tcp_reset_flows(struct net_user *nu, const struct net_user_flow *f, unsigned n);

#endif
