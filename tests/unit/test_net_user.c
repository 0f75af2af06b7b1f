/*
 * The user-mode network stack, with the test playing the guest: it builds
 * Ethernet frames, feeds them to net_user_from_guest() and checks what comes
 * back through to_guest() (every checksum included). Servers on 127.0.0.1 are
 * the host side. A minimal guest TCP (in order, acks everything, fixed window)
 * moves NET_USER_TEST_MB MiB (default 10) each way.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include "test.h"
#include "inet.h"
#include "net_user.h"
#include "util.h"

#define GUEST	0x0a00020fu
#define GW	0x0a000202u
#define DNS	0x0a000203u
#define FIN 0x01
#define SYN 0x02
#define RST 0x04
#define PSH 0x08
#define ACK 0x10
#define SEQ_LT(a, b)	((int32_t)((a) - (b)) < 0)
#define SEQ_GT(a, b)	SEQ_LT(b, a)

static const uint8_t gmac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
static const uint8_t gwmac[6] = { 0x52, 0x55, 0x0a, 0x00, 0x02, 0x02 };
static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

static uint64_t fake_now = 1000000;
static uint64_t fake_clock(void *opaque)
{
	return fake_now;
}

static void w16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = v; }
static void w32(uint8_t *p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }
static uint16_t r16(const uint8_t *p) { return p[0] << 8 | p[1]; }
static uint32_t r32(const uint8_t *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }

/* Our own checksum, written plainly, to check the stack's. */
static uint16_t csum(const void *d, size_t n, uint32_t s)
{
	const uint8_t *p = d;
	for (size_t i = 0; i + 1 < n; i += 2)
		s += p[i] << 8 | p[i + 1];
	if (n & 1)
		s += p[n - 1] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return ~s;
}

static uint32_t pseudo(uint32_t src, uint32_t dst, uint8_t proto, size_t len)
{
	return (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + proto + len;
}

/* ---- frames the stack sends: a queue, optionally lossy ---- */

struct frame {
	struct frame *next;
	size_t len;
	uint8_t data[];
};
static struct frame *q_head, **q_tail = &q_head;
static int drop_every;		/* drop every Nth TCP data frame to the guest */
static unsigned data_frames, max_frame;
static unsigned gso_frames, partial_frames, bad_hdrs, max_gso_frame;

static void deliver(const void *f, size_t len)
{
	const uint8_t *b = f;
	if (len > max_frame)
		max_frame = len;
	/* A TCP segment with payload: IPv4, proto 6, tot_len > ip + tcp header. */
	if (drop_every && len > 54 && b[12] == 8 && b[13] == 0 && b[23] == 6 &&
	    r16(b + 16) > 20 + (b[46] >> 4) * 4 && ++data_frames % drop_every == 0)
		return;
	struct frame *fr = malloc(sizeof(*fr) + len);
	fr->next = NULL;
	fr->len = len;
	memcpy(fr->data, f, len);
	*q_tail = fr;
	q_tail = &fr->next;
}

/*
 * A frame with a virtio-net header (the guest took GUEST_CSUM, GUEST_TSO4):
 * checked as a NIC driver would take it, then cut up the way the guest's
 * kernel would see it segmented (GSO: each segment its headers, IP length, ID,
 * sequence number, PSH and FIN on the last only), every checksum filled in, so
 * the rest of the test sees ordinary frames and checks them.
 */
static unsigned bad_pieces;	/* frames whose pieces were too many or did not add up to their length */
static unsigned split_frames;	/* frames whose payload came in two pieces (the connection's ring wrapped) */

static void to_guest_flat(const uint8_t *hdr, const void *frame, size_t len);

static void to_guest(void *opaque, const uint8_t *hdr, const struct iovec *iov, int n, size_t len)
{
	static uint8_t flat[14 + 65535];
	size_t off = 0;
	for (int i = 0; i < n && n <= NET_USER_FRAME_IOV; i++) {
		if (iov[i].iov_len > sizeof(flat) - off)
			break;
		memcpy(flat + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	if (n < 1 || n > NET_USER_FRAME_IOV || off != len) {
		bad_pieces++;
		return;
	}
	split_frames += n == 3;
	to_guest_flat(hdr, flat, len);
}

static void to_guest_flat(const uint8_t *hdr, const void *frame, size_t len)
{
	if (!hdr) {
		deliver(frame, len);
		return;
	}
	static uint8_t s[65600];
	const uint8_t *f = frame;
	unsigned hlen = hdr[2] | hdr[3] << 8, gso = hdr[4] | hdr[5] << 8;
	/* A partial checksum field holds the pseudo-header's sum, folded, not inverted. */
	uint16_t psum = len >= 54 ? csum("", 0, pseudo(r32(f + 26), r32(f + 30), 6, len - 34)) ^ 0xffff : 0;
	bool ok = len >= 54 && len <= 14 + 65535 && r16(f + 12) == 0x0800 && f[23] == 6 && r16(f + 16) == (size_t)len - 14 &&
		  !csum(f + 14, 20, 0) && hdr[0] == 1 /* NEEDS_CSUM */ && (hdr[6] | hdr[7] << 8) == 34 &&
		  (hdr[8] | hdr[9] << 8) == 16 && hlen == 34u + (f[46] >> 4) * 4 && hlen <= len &&
		  r16(f + 50) == psum &&
		  (hdr[1] == 0 || (hdr[1] == 1 /* TCPV4 */ && gso && len - hlen > gso));
	if (!ok) {
		bad_hdrs++;
		return;
	}
	partial_frames++;
	if (!hdr[1])
		gso = len - hlen;
	else if (++gso_frames && len > max_gso_frame)
		max_gso_frame = len;
	for (size_t off = hlen, i = 0; off < len || (off == hlen && len == hlen); off += gso, i++) {
		size_t p = MIN(gso, len - off);
		memcpy(s, f, hlen);
		memcpy(s + hlen, f + off, p);
		w16(s + 16, hlen + p - 14);
		w16(s + 18, r16(f + 18) + i);
		w16(s + 24, 0);
		w16(s + 24, csum(s + 14, 20, 0));
		w32(s + 38, r32(f + 38) + (off - hlen));
		if (off + p < len)
			s[47] &= ~(PSH | FIN);
		w16(s + 50, 0);
		w16(s + 50, csum(s + 34, hlen + p - 34, pseudo(r32(s + 26), r32(s + 30), 6, hlen + p - 34)));
		deliver(s, hlen + p);
		if (len == hlen)
			break;
	}
}

static struct frame *pop(void)
{
	struct frame *f = q_head;
	if (f) {
		q_head = f->next;
		if (!q_head)
			q_tail = &q_head;
	}
	return f;
}

static int q_clear(void)
{
	int n = 0;
	struct frame *f;
	while ((f = pop())) {
		free(f);
		n++;
	}
	return n;
}

/* A frame to the guest, parsed; every checksum verified. */
struct pkt {
	const uint8_t *eth;
	size_t len;
	uint16_t type;
	uint32_t src, dst;
	uint8_t proto;
	const uint8_t *l4;
	size_t l4len;
	uint16_t sport, dport;
	uint32_t seq, ack;
	uint8_t flags;
	uint16_t wnd;
	int mss;
	int ws;				/* window scale option, -1: none */
	const uint8_t *data;
	size_t dlen;
};
static int bad_frames;

static bool parse(const struct frame *f, struct pkt *p)
{
	memset(p, 0, sizeof(*p));
	p->eth = f->data;
	p->len = f->len;
	if (f->len < 14 || memcmp(f->data + 6, gwmac, 6)) {
		bad_frames++;
		return false;
	}
	p->type = r16(f->data + 12);
	if (p->type != 0x0800)
		return true;
	const uint8_t *ip = f->data + 14;
	if (f->len < 34 || ip[0] != 0x45 || r16(ip + 2) != f->len - 14 || csum(ip, 20, 0)) {
		bad_frames++;
		return false;
	}
	p->src = r32(ip + 12);
	p->dst = r32(ip + 16);
	p->proto = ip[9];
	p->l4 = ip + 20;
	p->l4len = f->len - 34;
	if (p->proto == 1) {
		if (csum(p->l4, p->l4len, 0))
			bad_frames++;
		return true;
	}
	if (csum(p->l4, p->l4len, pseudo(p->src, p->dst, p->proto, p->l4len))) {
		bad_frames++;
		return false;
	}
	p->sport = r16(p->l4);
	p->dport = r16(p->l4 + 2);
	if (p->proto == 17) {
		p->data = p->l4 + 8;
		p->dlen = p->l4len - 8;
	} else if (p->proto == 6) {
		size_t hl = (p->l4[12] >> 4) * 4;
		p->seq = r32(p->l4 + 4);
		p->ack = r32(p->l4 + 8);
		p->flags = p->l4[13];
		p->wnd = r16(p->l4 + 14);
		if (hl >= 24 && p->l4[20] == 2 && p->l4[21] == 4)
			p->mss = r16(p->l4 + 22);
		p->ws = hl >= 28 && p->l4[24] == 1 && p->l4[25] == 3 && p->l4[26] == 3 ? p->l4[27] : -1;
		p->data = p->l4 + hl;
		p->dlen = p->l4len - hl;
	}
	return true;
}

/* ---- frames the guest sends ---- */

static uint8_t fb[70000];

static uint8_t *mk_ip(uint8_t *f, uint32_t src, uint32_t dst, uint8_t proto, size_t l4len)
{
	memcpy(f, gwmac, 6);
	memcpy(f + 6, gmac, 6);
	f[12] = 8;
	f[13] = 0;
	uint8_t *ip = f + 14;
	memset(ip, 0, 20);
	ip[0] = 0x45;
	w16(ip + 2, 20 + l4len);
	ip[8] = 64;
	ip[9] = proto;
	w32(ip + 12, src);
	w32(ip + 16, dst);
	w16(ip + 10, csum(ip, 20, 0));
	return ip + 20;
}

static size_t mk_udp(uint8_t *f, uint32_t src, uint16_t sport, uint32_t dst, uint16_t dport,
		     const void *d, size_t n)
{
	uint8_t *u = mk_ip(f, src, dst, 17, 8 + n);
	w16(u, sport);
	w16(u + 2, dport);
	w16(u + 4, 8 + n);
	w16(u + 6, 0);
	memcpy(u + 8, d, n);
	uint16_t c = csum(u, 8 + n, pseudo(src, dst, 17, 8 + n));
	w16(u + 6, c ? c : 0xffff);
	return 42 + n;
}

static int syn_wscale = -1;	/* >= 0: the guest's SYNs offer this window scale */

static size_t mk_tcp(uint8_t *f, uint16_t sport, uint32_t dst, uint16_t dport, uint32_t seq,
		     uint32_t ack, uint8_t flags, uint16_t wnd, const void *d, size_t n)
{
	size_t hl = flags & SYN ? (syn_wscale >= 0 ? 28 : 24) : 20;
	uint8_t *t = mk_ip(f, GUEST, dst, 6, hl + n);
	memset(t, 0, hl);
	w16(t, sport);
	w16(t + 2, dport);
	w32(t + 4, seq);
	w32(t + 8, ack);
	t[12] = hl / 4 << 4;
	t[13] = flags;
	w16(t + 14, wnd);
	if (flags & SYN) {
		t[20] = 2;
		t[21] = 4;
		w16(t + 22, 1460);
		if (syn_wscale >= 0) {
			t[24] = 1;
			t[25] = 3;
			t[26] = 3;
			t[27] = syn_wscale;
		}
	}
	if (n)
		memcpy(t + hl, d, n);
	w16(t + 16, csum(t, hl + n, pseudo(GUEST, dst, 6, hl + n)));
	return 34 + hl + n;
}

static size_t mk_ping(uint8_t *f, uint32_t dst, uint16_t id, uint16_t seq, size_t n)
{
	uint8_t *m = mk_ip(f, GUEST, dst, 1, 8 + n);
	m[0] = 8;
	m[1] = 0;
	w16(m + 2, 0);
	w16(m + 4, id);
	w16(m + 6, seq);
	for (size_t i = 0; i < n; i++)
		m[8 + i] = i * 7;
	w16(m + 2, csum(m, 8 + n, 0));
	return 42 + n;
}

static size_t mk_arp(uint8_t *f, uint32_t spa, uint32_t tpa)
{
	memcpy(f, bcast, 6);
	memcpy(f + 6, gmac, 6);
	w16(f + 12, 0x0806);
	uint8_t *a = f + 14;
	w16(a, 1);
	w16(a + 2, 0x0800);
	a[4] = 6;
	a[5] = 4;
	w16(a + 6, 1);
	memcpy(a + 8, gmac, 6);
	w32(a + 14, spa);
	memset(a + 18, 0, 6);
	w32(a + 24, tpa);
	return 42;
}

/* ---- driving the stack ---- */

static struct net_user *mk(const struct net_user_cfg *cfg)
{
	struct net_user_cfg c = { 0 };
	if (cfg)
		c = *cfg;
	memcpy(c.guest_mac, gmac, 6);
	if (!c.dns)
		c.dns = "127.0.0.1:9";	/* never the host's real resolver from a test */
	struct net_user *nu = net_user_new(&c, to_guest, NULL);
	if (!nu)
		fprintf(stderr, "net_user_new: %s\n", err_msg());
	return nu;
}

/* Wait up to wait_ms for host sockets, then run events and timers. */
static void step(struct net_user *nu, int wait_ms)
{
	int t = net_user_timeout(nu);
	if (t < 0 || t > wait_ms)
		t = wait_ms;
	struct pollfd p = { net_user_fd(nu), POLLIN, 0 };
	if (poll(&p, 1, t) > 0)
		net_user_process(nu);
	net_user_timer(nu, net_user_now(nu));
}

static void send_frame(struct net_user *nu, size_t len)
{
	net_user_from_guest(nu, fb, len);
}

/* The first frame matching proto (0: any) within ms, else NULL; others are dropped. */
static struct frame *wait_frame(struct net_user *nu, uint8_t proto, int ms, struct pkt *p)
{
	uint64_t end = mono_ms() + ms;
	for (;;) {
		struct frame *f;
		while ((f = pop())) {
			if (parse(f, p) && (!proto || (p->type == 0x0800 && p->proto == proto)))
				return f;
			free(f);
		}
		if (mono_ms() >= end)
			return NULL;
		step(nu, 5);
	}
}

static uint16_t free_port(int type)
{
	int s = socket(AF_INET, type, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t l = sizeof(a);
	bind(s, (struct sockaddr *)&a, sizeof(a));
	getsockname(s, (struct sockaddr *)&a, &l);
	close(s);
	return ntohs(a.sin_port);
}

static int bound_socket(int type, uint16_t *port)
{
	int s = socket(AF_INET, type, 0);
	int one = 1;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t l = sizeof(a);
	if (bind(s, (struct sockaddr *)&a, sizeof(a)) < 0)
		return -1;
	getsockname(s, (struct sockaddr *)&a, &l);
	*port = ntohs(a.sin_port);
	return s;
}

static size_t heap_in_use(void)
{
	struct mallinfo2 mi = mallinfo2();
	return mi.uordblks + mi.hblkhd;
}

/* ---- test data: a byte stream anyone can regenerate at any offset ---- */

static void fill(uint8_t *buf, uint64_t off, size_t n, uint8_t seed)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t x = (off + i) * 0x9E3779B97F4A7C15ull + seed * 0x1234567ull;
		buf[i] = x >> 56 ^ x >> 29;
	}
}

static uLong pattern_crc(uint64_t total, uint8_t seed)
{
	static uint8_t buf[65536];
	uLong c = crc32(0, NULL, 0);
	for (uint64_t off = 0; off < total; off += sizeof(buf)) {
		size_t n = MIN(sizeof(buf), total - off);
		fill(buf, off, n, seed);
		c = crc32(c, buf, n);
	}
	return c;
}

static uint64_t transfer_bytes(void)
{
	const char *e = getenv("NET_USER_TEST_MB");
	double mb = e ? atof(e) : 10;
	return (uint64_t)(mb * 1048576);
}

/* ---- a minimal guest TCP ---- */

enum { G_CLOSED, G_SYN_SENT, G_LISTEN, G_SYN_RCVD, G_EST };

struct gtcp {
	struct net_user *nu;
	int state;
	uint16_t lport, rport;
	uint32_t rip;
	uint32_t iss, snd_una, snd_nxt, rcv_nxt;
	uint32_t peer_wnd, min_peer_wnd;	/* bytes: the field scaled by peer_shift */
	uint16_t wnd;			/* what we advertise, in our units (my_shift) */
	uint32_t edge;			/* rcv_nxt + window as last advertised */
	int peer_mss;
	int ws_offer;			/* >= 0: our SYN offers this window scale (-1: none) */
	uint8_t my_shift, peer_shift;	/* in force once both SYNs carried the option */
	uint32_t seg_max;		/* largest segment we send: 1460, or up to 65000 as with TSO */
	uint64_t tx_total;
	uint8_t seed_tx;
	bool fin_when_done, fin_sent, fin_acked, peer_fin, got_rst, need_ack;
	uLong crc_rx;
	uint64_t rx_bytes;
	int wnd_violations, ooo, too_big;
	uint64_t last_progress;
	bool keep_ooo;			/* queue segments past a hole, as Linux does */
	int nr_held;
	struct held { uint32_t seq; uint16_t len; uint8_t data[1460]; } held[64];
};

/* Deliver held segments that the hole's filling made contiguous. */
static void gtcp_unhold(struct gtcp *g)
{
	for (bool again = true; again;) {
		again = false;
		for (int i = 0; i < g->nr_held; i++) {
			struct held *h = &g->held[i];
			uint32_t skip = g->rcv_nxt - h->seq;
			if (SEQ_GT(h->seq, g->rcv_nxt))
				continue;
			if (skip < h->len) {
				g->crc_rx = crc32(g->crc_rx, h->data + skip, h->len - skip);
				g->rx_bytes += h->len - skip;
				g->rcv_nxt += h->len - skip;
				again = true;
			}
			g->held[i--] = g->held[--g->nr_held];
		}
	}
}

static void gtcp_init(struct gtcp *g, struct net_user *nu, uint16_t lport, uint32_t rip, uint16_t rport)
{
	memset(g, 0, sizeof(*g));
	g->nu = nu;
	g->lport = lport;
	g->rip = rip;
	g->rport = rport;
	g->iss = 0x10000000u + lport * 7919u;
	g->snd_una = g->snd_nxt = g->iss;
	g->wnd = 65535;
	g->ws_offer = -1;
	g->seg_max = 1460;
	g->crc_rx = crc32(0, NULL, 0);
	g->min_peer_wnd = 0xffffffff;
	g->last_progress = mono_ms();
}

static void gtcp_seg(struct gtcp *g, uint32_t seq, uint8_t flags, const void *d, size_t n)
{
	size_t len = mk_tcp(fb, g->lport, g->rip, g->rport, seq, g->rcv_nxt, flags, g->wnd, d, n);
	if (flags & ACK)
		g->edge = g->rcv_nxt + ((uint32_t)g->wnd << (flags & SYN ? 0 : g->my_shift));
	send_frame(g->nu, len);
}

static void gtcp_ack(struct gtcp *g)
{
	gtcp_seg(g, g->snd_nxt, ACK, NULL, 0);
	g->need_ack = false;
}

static void gtcp_connect(struct gtcp *g)
{
	g->state = G_SYN_SENT;
	syn_wscale = g->ws_offer;
	gtcp_seg(g, g->iss, SYN, NULL, 0);
	syn_wscale = -1;
	g->snd_nxt = g->iss + 1;
}

static void gtcp_send(struct gtcp *g)
{
	static uint8_t buf[65000];
	if (g->state != G_EST)
		return;
	for (;;) {
		uint32_t off = g->snd_nxt - g->iss - 1, inflight = g->snd_nxt - g->snd_una;
		if (off < g->tx_total) {
			if (inflight >= g->peer_wnd)
				break;
			size_t n = MIN(MIN((uint64_t)g->seg_max, g->tx_total - off), (uint64_t)(g->peer_wnd - inflight));
			fill(buf, off, n, g->seed_tx);
			gtcp_seg(g, g->snd_nxt, ACK | PSH, buf, n);
			g->snd_nxt += n;
			g->need_ack = false;
		} else if (g->fin_when_done && off == g->tx_total) {
			gtcp_seg(g, g->snd_nxt, FIN | ACK, NULL, 0);
			g->snd_nxt++;
			g->fin_sent = true;
			g->need_ack = false;
		} else {
			break;
		}
	}
}

static void gtcp_input(struct gtcp *g, const struct pkt *p)
{
	if (p->proto != 6 || p->src != g->rip || p->sport != g->rport || p->dport != g->lport)
		return;
	if (p->flags & RST) {
		g->got_rst = true;
		g->state = G_CLOSED;
		return;
	}
	if (p->dlen > 1460)
		g->too_big++;
	switch (g->state) {
	case G_SYN_SENT:
		if ((p->flags & (SYN | ACK)) == (SYN | ACK) && p->ack == g->iss + 1) {
			g->peer_mss = p->mss;
			g->rcv_nxt = p->seq + 1;
			g->snd_una = p->ack;
			g->peer_wnd = p->wnd;	/* a SYN's window is never scaled */
			if (g->ws_offer >= 0 && p->ws >= 0) {
				g->my_shift = g->ws_offer;
				g->peer_shift = MIN(p->ws, 14);
			}
			g->state = G_EST;
			gtcp_ack(g);
		}
		return;
	case G_LISTEN:
		if ((p->flags & (SYN | ACK)) == SYN) {
			g->peer_mss = p->mss;
			g->rcv_nxt = p->seq + 1;
			g->peer_wnd = p->wnd;
			gtcp_seg(g, g->iss, SYN | ACK, NULL, 0);
			g->snd_nxt = g->iss + 1;
			g->state = G_SYN_RCVD;
		}
		return;
	case G_SYN_RCVD:
		if (!(p->flags & ACK) || p->ack != g->iss + 1)
			return;
		g->state = G_EST;
		break;
	case G_EST:
		break;
	default:
		return;
	}
	if (p->flags & ACK) {
		if (SEQ_GT(p->ack, g->snd_una) && !SEQ_GT(p->ack, g->snd_nxt)) {
			g->snd_una = p->ack;
			g->last_progress = mono_ms();
			if (g->fin_sent && p->ack == g->iss + 1 + g->tx_total + 1)
				g->fin_acked = true;
		}
		g->peer_wnd = (uint32_t)p->wnd << g->peer_shift;
		if (g->peer_wnd < g->min_peer_wnd)
			g->min_peer_wnd = g->peer_wnd;
	}
	/* A one-byte probe into a shut window is allowed; anything else past the edge is not. */
	if (p->dlen && SEQ_GT(p->seq + p->dlen, g->edge) && !(g->edge == g->rcv_nxt && p->dlen == 1))
		g->wnd_violations++;
	bool in_order = p->seq == g->rcv_nxt;
	if (p->dlen) {
		if (in_order && g->wnd) {
			size_t n = MIN(p->dlen, (size_t)(g->edge - g->rcv_nxt));
			g->crc_rx = crc32(g->crc_rx, p->data, n);
			g->rx_bytes += n;
			g->rcv_nxt += n;
			g->need_ack = true;
			in_order = n == p->dlen;
			if (g->nr_held) {
				gtcp_unhold(g);
				in_order = false;	/* a FIN riding here came before what was held */
			}
		} else {
			g->ooo++;
			if (g->keep_ooo && SEQ_GT(p->seq, g->rcv_nxt) && g->nr_held < 64 && p->dlen <= 1460 &&
			    !SEQ_GT(p->seq + p->dlen, g->edge)) {
				struct held *h = &g->held[g->nr_held++];
				h->seq = p->seq;
				h->len = p->dlen;
				memcpy(h->data, p->data, p->dlen);
			}
			gtcp_ack(g);	/* a duplicate ACK, as a real guest would */
			return;
		}
	}
	if (p->flags & FIN) {
		if (in_order && !g->peer_fin) {
			g->peer_fin = true;
			g->rcv_nxt++;
		}
		g->need_ack = true;
	}
}

static void gtcp_timer(struct gtcp *g)
{
	/* Go back N if the stack has not acknowledged anything for a while. */
	if (g->snd_nxt != g->snd_una && mono_ms() - g->last_progress > 500) {
		g->snd_nxt = g->snd_una;
		if (g->fin_sent && g->snd_una == g->iss + 1 + g->tx_total)
			g->fin_sent = false;
		g->last_progress = mono_ms();
	}
}

/* Run stack and guest until done(g) or limit_ms. */
static bool gtcp_run(struct gtcp *g, bool (*done)(struct gtcp *), int limit_ms)
{
	uint64_t end = mono_ms() + limit_ms;
	while (!done(g) && mono_ms() < end) {
		gtcp_send(g);
		step(g->nu, q_head ? 0 : 2);
		struct frame *f;
		while ((f = pop())) {
			struct pkt p;
			if (parse(f, &p) && p.type == 0x0800)
				gtcp_input(g, &p);
			free(f);
		}
		if (g->need_ack)
			gtcp_ack(g);
		gtcp_timer(g);
	}
	return done(g);
}

static bool g_never(struct gtcp *g) { return false; }
static bool g_established(struct gtcp *g) { return g->state == G_EST || g->got_rst; }
static bool g_finished(struct gtcp *g)
{
	return g->got_rst || (g->peer_fin && (!g->fin_when_done || g->fin_acked));
}

/* ---- a host-side TCP server thread ---- */

struct server {
	int lfd;
	uint16_t port;
	uint64_t tx_total;
	uint8_t seed_tx;
	int pause_ms;			/* before reading anything, unless go is set sooner */
	volatile bool go;
	int rcvbuf;			/* SO_RCVBUF, 0: default */
	uLong crc_rx;
	uint64_t rx_bytes;
	bool eof;
	volatile bool done;		/* server_main() returned */
	pthread_t th;
};

static void *server_main(void *arg)
{
	struct server *s = arg;
	static __thread uint8_t buf[65536];
	int fd = accept(s->lfd, NULL, NULL);
	if (fd < 0) {
		s->done = true;
		return NULL;
	}
	s->crc_rx = crc32(0, NULL, 0);
	uint64_t sent = 0, pause_until = mono_ms() + s->pause_ms;
	if (!s->tx_total)
		shutdown(fd, SHUT_WR);
	/* A stack that never finishes its side fails the test's checks, not hangs its join. */
	uint64_t give_up = mono_ms() + 120000;
	while ((!s->eof || sent < s->tx_total) && mono_ms() < give_up) {
		bool reading = (s->go || mono_ms() >= pause_until) && !s->eof;
		struct pollfd p = { fd, (reading ? POLLIN : 0) | (sent < s->tx_total ? POLLOUT : 0), 0 };
		if (poll(&p, 1, 20) < 0 || (p.revents & (POLLERR | POLLNVAL)))
			break;
		if (p.revents & POLLOUT) {
			size_t n = MIN(sizeof(buf), s->tx_total - sent);
			fill(buf, sent, n, s->seed_tx);
			ssize_t w = send(fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (w > 0 && (sent += w) == s->tx_total)
				shutdown(fd, SHUT_WR);
			if (w < 0 && errno != EAGAIN)
				break;
		}
		if (p.revents & (POLLIN | POLLHUP)) {
			ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (n > 0) {
				s->crc_rx = crc32(s->crc_rx, buf, n);
				s->rx_bytes += n;
			} else if (n == 0) {
				s->eof = true;
			} else if (errno != EAGAIN) {
				break;
			}
		}
	}
	close(fd);
	s->done = true;
	return NULL;
}

static void server_start(struct server *s)
{
	s->lfd = bound_socket(SOCK_STREAM, &s->port);
	if (s->rcvbuf)	/* accepted sockets inherit it; a small one shuts our window sooner */
		setsockopt(s->lfd, SOL_SOCKET, SO_RCVBUF, &s->rcvbuf, sizeof(s->rcvbuf));
	listen(s->lfd, 16);
	pthread_create(&s->th, NULL, server_main, s);
}

static void server_join(struct server *s)
{
	pthread_join(s->th, NULL);
	close(s->lfd);
}

/* ---------------------------------------------------------------- tests */

static const uint8_t *dhcp_opt(const struct pkt *p, uint8_t code, int *len)
{
	const uint8_t *m = p->data;
	for (size_t i = 240; i + 1 < p->dlen && m[i] != 255;) {
		if (m[i] == 0) {
			i++;
			continue;
		}
		if (m[i] == code) {
			*len = m[i + 1];
			return m + i + 2;
		}
		i += 2 + m[i + 1];
	}
	return NULL;
}

static size_t mk_dhcp(uint8_t *f, int type, bool broadcast, uint32_t requested, uint32_t server, uint32_t ciaddr)
{
	uint8_t m[300] = { 1, 1, 6, 0, 0xde, 0xad, 0xbe, 0xef };
	if (broadcast)
		m[10] = 0x80;
	w32(m + 12, ciaddr);
	memcpy(m + 28, gmac, 6);
	m[236] = 99, m[237] = 130, m[238] = 83, m[239] = 99;
	uint8_t *o = m + 240;
	*o++ = 53, *o++ = 1, *o++ = type;
	if (requested)
		*o++ = 50, *o++ = 4, w32(o, requested), o += 4;
	if (server)
		*o++ = 54, *o++ = 4, w32(o, server), o += 4;
	*o++ = 55, *o++ = 3, *o++ = 1, *o++ = 3, *o++ = 6;
	*o++ = 255;
	size_t len = mk_udp(f, ciaddr, 68, ciaddr ? GW : 0xffffffffu, 67, m, sizeof(m));
	if (!ciaddr)
		memcpy(f, bcast, 6);
	return len;
}

static void check_dhcp_reply(const struct pkt *p, int type, bool broadcast)
{
	int n = 0;
	const uint8_t *o;
	CHECK_EQ(p->proto, 17);
	CHECK_EQ(p->sport, 67);
	CHECK_EQ(p->dport, 68);
	CHECK_EQ(p->src, GW);
	CHECK(!memcmp(p->eth, broadcast ? bcast : gmac, 6));
	CHECK_EQ(p->dst, broadcast ? 0xffffffffu : GUEST);
	CHECK(p->dlen >= 300);
	CHECK_EQ(p->data[0], 2);
	CHECK_EQ(r32(p->data + 4), 0xdeadbeef);
	CHECK_EQ(r32(p->data + 16), GUEST);	/* yiaddr */
	CHECK(!memcmp(p->data + 28, gmac, 6));
	CHECK((o = dhcp_opt(p, 53, &n)) && n == 1 && o[0] == type);
	CHECK((o = dhcp_opt(p, 1, &n)) && n == 4 && r32(o) == 0xffffff00);
	CHECK((o = dhcp_opt(p, 3, &n)) && n == 4 && r32(o) == GW);
	CHECK((o = dhcp_opt(p, 6, &n)) && n == 4 && r32(o) == DNS);
	CHECK((o = dhcp_opt(p, 54, &n)) && n == 4 && r32(o) == GW);
	CHECK((o = dhcp_opt(p, 51, &n)) && n == 4 && r32(o) >= 3600);
}

TEST(dhcp)
{
	struct net_user *nu = mk(NULL);
	struct pkt p;
	struct frame *f;
	send_frame(nu, mk_dhcp(fb, 1, true, 0, 0, 0));		/* DISCOVER, broadcast flag */
	CHECK((f = wait_frame(nu, 17, 100, &p)) != NULL);
	if (f) {
		check_dhcp_reply(&p, 2, true);
		free(f);
	}
	send_frame(nu, mk_dhcp(fb, 3, true, GUEST, GW, 0));	/* REQUEST (SELECTING) */
	CHECK((f = wait_frame(nu, 17, 100, &p)) != NULL);
	if (f) {
		check_dhcp_reply(&p, 5, true);
		free(f);
	}
	/* Without the broadcast flag the reply is unicast to chaddr and yiaddr. */
	send_frame(nu, mk_dhcp(fb, 1, false, 0, 0, 0));
	CHECK((f = wait_frame(nu, 17, 100, &p)) != NULL);
	if (f) {
		check_dhcp_reply(&p, 2, false);
		free(f);
	}
	/* RENEWING: unicast from 10.0.2.15, answered to it. */
	send_frame(nu, mk_dhcp(fb, 3, false, 0, 0, GUEST));
	CHECK((f = wait_frame(nu, 17, 100, &p)) != NULL);
	if (f) {
		check_dhcp_reply(&p, 5, false);
		free(f);
	}
	/* Asking for another address is refused with a (broadcast) NAK. */
	send_frame(nu, mk_dhcp(fb, 3, false, 0x0a000263, 0, 0));
	CHECK((f = wait_frame(nu, 17, 100, &p)) != NULL);
	if (f) {
		int n;
		const uint8_t *o = dhcp_opt(&p, 53, &n);
		CHECK(o && o[0] == 6);
		CHECK_EQ(p.dst, 0xffffffffu);
		free(f);
	}
	/* A REQUEST for another server is none of our business. */
	send_frame(nu, mk_dhcp(fb, 3, true, GUEST, 0x0a000209, 0));
	CHECK(wait_frame(nu, 17, 20, &p) == NULL);
	CHECK_EQ(bad_frames, 0);
	net_user_free(nu);
	q_clear();
}

TEST(arp)
{
	struct net_user_cfg cfg = { 0 };
	struct net_user *nu = mk(&cfg);
	struct pkt p;
	struct frame *f;
	uint32_t targets[] = { GW, DNS, 0x0a000264 };
	for (unsigned i = 0; i < ARRAY_SIZE(targets); i++) {
		send_frame(nu, mk_arp(fb, GUEST, targets[i]));
		CHECK((f = wait_frame(nu, 0, 50, &p)) != NULL);
		if (!f)
			continue;
		const uint8_t *a = f->data + 14;
		CHECK_EQ(p.type, 0x0806);
		CHECK(!memcmp(f->data, gmac, 6));
		CHECK_EQ(r16(a + 6), 2);
		CHECK(!memcmp(a + 8, gwmac, 6));
		CHECK_EQ(r32(a + 14), targets[i]);
		CHECK(!memcmp(a + 18, gmac, 6));
		CHECK_EQ(r32(a + 24), GUEST);
		free(f);
	}
	/* Nobody answers for the guest's own address (its duplicate-address probe) or outside. */
	send_frame(nu, mk_arp(fb, 0, GUEST));
	send_frame(nu, mk_arp(fb, GUEST, 0x08080808));
	CHECK(wait_frame(nu, 0, 20, &p) == NULL);
	net_user_free(nu);
}

TEST(learns_guest_mac)
{
	struct net_user_cfg cfg = { 0 };
	struct net_user *nu = net_user_new(&cfg, to_guest, NULL);	/* no MAC configured */
	uint8_t other[6] = { 0x02, 0, 0, 0, 0, 0x42 };
	size_t len = mk_ping(fb, GW, 1, 1, 8);
	memcpy(fb + 6, other, 6);
	send_frame(nu, len);
	struct pkt p;
	struct frame *f = wait_frame(nu, 1, 50, &p);
	CHECK(f && !memcmp(f->data, other, 6));
	free(f);
	net_user_free(nu);
}

TEST(ping_gateway)
{
	struct net_user *nu = mk(NULL);
	struct pkt p;
	uint32_t dsts[] = { GW, DNS };
	for (unsigned i = 0; i < ARRAY_SIZE(dsts); i++) {
		size_t len = mk_ping(fb, dsts[i], 0x1234, 7 + i, 56);
		uint8_t req[200];
		memcpy(req, fb, len);
		send_frame(nu, len);
		struct frame *f = wait_frame(nu, 1, 50, &p);
		CHECK(f != NULL);
		if (!f)
			continue;
		CHECK_EQ(p.src, dsts[i]);
		CHECK_EQ(p.dst, GUEST);
		CHECK_EQ(p.l4[0], 0);	/* echo reply */
		CHECK_EQ(csum(p.l4, p.l4len, 0), 0);
		CHECK_EQ(r16(p.l4 + 4), 0x1234);
		CHECK_EQ(r16(p.l4 + 6), 7 + i);
		CHECK_EQ(p.l4len, 64);
		CHECK(!memcmp(p.l4 + 8, req + 42, 56));
		free(f);
	}
	/* A corrupted ICMP checksum, and an echo to a stranger in our subnet, get nothing. */
	size_t len = mk_ping(fb, GW, 1, 1, 8);
	fb[len - 1] ^= 1;
	send_frame(nu, len);
	send_frame(nu, mk_ping(fb, 0x0a000277, 1, 1, 8));
	CHECK(wait_frame(nu, 1, 20, &p) == NULL);
	/* Outside: an unprivileged ICMP socket if the host allows one, else dropped; never more than a flow. */
	send_frame(nu, mk_ping(fb, 0xc6336401, 9, 1, 8));
	struct net_user_stats st;
	net_user_get_stats(nu, &st);
	CHECK(st.udp_flows <= 1);
	CHECK_EQ(bad_frames, 0);
	net_user_free(nu);
	q_clear();
}

TEST(udp_echo)
{
	uint16_t port;
	int s = bound_socket(SOCK_DGRAM, &port);
	struct net_user *nu = mk(NULL);
	const char msg[] = "datagram from the guest";
	send_frame(nu, mk_udp(fb, GUEST, 5555, GW, port, msg, sizeof(msg)));
	char buf[256];
	struct sockaddr_in peer;
	socklen_t pl = sizeof(peer);
	struct pollfd pfd = { s, POLLIN, 0 };
	CHECK(poll(&pfd, 1, 1000) == 1);
	ssize_t n = recvfrom(s, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&peer, &pl);
	CHECK_EQ(n, sizeof(msg));
	CHECK(!memcmp(buf, msg, sizeof(msg)));
	CHECK_EQ(ntohl(peer.sin_addr.s_addr), INADDR_LOOPBACK);
	const char rep[] = "and the host's answer";
	sendto(s, rep, sizeof(rep), 0, (struct sockaddr *)&peer, pl);
	struct pkt p;
	struct frame *f = wait_frame(nu, 17, 1000, &p);
	CHECK(f != NULL);
	if (f) {
		CHECK_EQ(p.src, GW);
		CHECK_EQ(p.sport, port);
		CHECK_EQ(p.dst, GUEST);
		CHECK_EQ(p.dport, 5555);
		CHECK_EQ(p.dlen, sizeof(rep));
		CHECK(!memcmp(p.data, rep, sizeof(rep)));
		free(f);
	}
	/* A bad UDP checksum is dropped; the same frame marked checksum-partial passes. */
	size_t len = mk_udp(fb, GUEST, 5555, GW, port, msg, sizeof(msg));
	fb[40] ^= 0x55;
	send_frame(nu, len);
	CHECK(poll(&pfd, 1, 100) == 0);
	net_user_from_guest_csum_partial(nu, fb, len);
	CHECK(poll(&pfd, 1, 1000) == 1);
	CHECK_EQ(recv(s, buf, sizeof(buf), MSG_DONTWAIT), sizeof(msg));
	struct net_user_stats st;
	net_user_get_stats(nu, &st);
	CHECK_EQ(st.udp_flows, 1);
	CHECK_EQ(bad_frames, 0);
	net_user_free(nu);
	close(s);
	q_clear();
}

TEST(dns_forward)
{
	uint16_t port;
	int s = bound_socket(SOCK_DGRAM, &port);
	char dns[32];
	snprintf(dns, sizeof(dns), "127.0.0.1:%u", port);
	struct net_user_cfg cfg = { .dns = dns };
	struct net_user *nu = mk(&cfg);
	const char q[] = "\x12\x34query";
	send_frame(nu, mk_udp(fb, GUEST, 40000, DNS, 53, q, sizeof(q)));
	char buf[64];
	struct sockaddr_in peer;
	socklen_t pl = sizeof(peer);
	struct pollfd pfd = { s, POLLIN, 0 };
	CHECK(poll(&pfd, 1, 1000) == 1);
	CHECK_EQ(recvfrom(s, buf, sizeof(buf), 0, (struct sockaddr *)&peer, &pl), sizeof(q));
	sendto(s, "\x12\x34" "answer", 8, 0, (struct sockaddr *)&peer, pl);
	struct pkt p;
	struct frame *f = wait_frame(nu, 17, 1000, &p);
	CHECK(f && p.src == DNS && p.sport == 53 && p.dport == 40000 && p.dlen == 8);
	free(f);
	/* 10.0.2.3 serves nothing but port 53. */
	send_frame(nu, mk_udp(fb, GUEST, 40001, DNS, 54, q, sizeof(q)));
	struct net_user_stats st;
	net_user_get_stats(nu, &st);
	CHECK_EQ(st.udp_flows, 1);
	net_user_free(nu);
	close(s);
	q_clear();
}

TEST(udp_flows_bounded_and_expire)
{
	uint16_t port;
	int s = bound_socket(SOCK_DGRAM, &port);
	struct net_user_cfg cfg = { .clock_ms = fake_clock };
	struct net_user *nu = mk(&cfg);
	struct net_user_stats st;
	for (int i = 0; i < 300; i++) {
		fake_now += 1;
		send_frame(nu, mk_udp(fb, GUEST, 20000 + i, GW, port, "x", 1));
		net_user_get_stats(nu, &st);
		if (st.udp_flows > 256)
			break;
	}
	CHECK_EQ(st.udp_flows, 256);	/* the oldest made room */
	CHECK(net_user_timeout(nu) > 0);
	fake_now += 61000;
	CHECK_EQ(net_user_timeout(nu), 0);
	net_user_timer(nu, fake_now);
	net_user_get_stats(nu, &st);
	CHECK_EQ(st.udp_flows, 0);
	CHECK_EQ(net_user_timeout(nu), -1);
	net_user_free(nu);
	close(s);
}

static struct server *slow_server;
static bool g_finished_or_shut(struct gtcp *g)
{
	if (slow_server && g->state == G_EST && !g->peer_wnd)
		slow_server->go = true;
	return g_finished(g);
}

/* The guest of the next tcp_transfer(): its window scale offer (-1: none), largest segment, offloads taken. */
static int xfer_ws = -1;
static uint32_t xfer_seg = 1460;
static bool xfer_offload;
static struct net_user_stats xfer_stats;	/* the stack's counters at the end of the last transfer */

static void tcp_transfer(uint64_t up, uint64_t down, int pause_ms, int lossy, bool keep_ooo)
{
	struct server srv = { .tx_total = down, .seed_tx = 0x5a, .pause_ms = pause_ms,
			      .rcvbuf = pause_ms ? 4096 : 0 };
	slow_server = pause_ms ? &srv : NULL;
	server_start(&srv);
	struct net_user *nu = mk(NULL);
	net_user_set_offload(nu, xfer_offload, xfer_offload);
	struct gtcp g;
	gtcp_init(&g, nu, 33000, GW, srv.port);
	g.tx_total = up;
	g.seed_tx = 0xa5;
	g.fin_when_done = true;
	g.keep_ooo = keep_ooo;
	g.ws_offer = xfer_ws;
	g.seg_max = xfer_seg;
	gtcp_connect(&g);
	CHECK(gtcp_run(&g, g_established, 2000));
	CHECK_EQ(g.state, G_EST);
	CHECK_EQ(g.peer_mss, 1460);
	drop_every = lossy;
	data_frames = 0;
	uint64_t t0 = mono_ms();
	CHECK(gtcp_run(&g, g_finished_or_shut, 120000));
	drop_every = 0;
	slow_server = NULL;
	if (pause_ms)
		CHECK_EQ(g.min_peer_wnd, 0);	/* the host stopped reading: our window shut */
	/* Bytes acknowledged to the guest may still wait in the stack: keep it running until the host has them all. */
	uint64_t end = mono_ms() + 30000;
	while (!srv.done && mono_ms() < end)
		gtcp_run(&g, g_never, 5);
	uint64_t ms = mono_ms() - t0;
	CHECK(srv.done);
	server_join(&srv);
	CHECK(!g.got_rst);
	CHECK_EQ(srv.rx_bytes, up);
	CHECK_EQ(srv.crc_rx, pattern_crc(up, 0xa5));
	CHECK_EQ(g.rx_bytes, down);
	CHECK_EQ(g.crc_rx, pattern_crc(down, 0x5a));
	CHECK_EQ(g.wnd_violations, 0);
	CHECK_EQ(g.too_big, 0);
	CHECK(max_frame <= 1514);
	CHECK_EQ(bad_frames, 0);
	CHECK_EQ(bad_pieces, 0);
	struct net_user_stats st;
	/* Both FINs are through: the connection is forgotten once ours is acked. */
	for (int i = 0; i < 100 && (net_user_get_stats(nu, &st), st.tcp_conns); i++) {
		step(nu, 5);
		struct frame *f;
		while ((f = pop())) {
			struct pkt p;
			if (parse(f, &p))
				gtcp_input(&g, &p);
			free(f);
		}
		if (g.need_ack)
			gtcp_ack(&g);
	}
	net_user_get_stats(nu, &st);
	xfer_stats = st;
	CHECK_EQ(st.tcp_conns, 0);
	if (lossy)
		CHECK(st.tcp_retransmits > 0);
	printf("  tcp %.1f MiB up, %.1f MiB down in %" PRIu64 " ms (scale %d/%d, segments <= %u); peer window min %u, "
	       "%u retransmits, %d out of order, %u frames split at the ring's end so far\n", up / 1048576.0, down / 1048576.0,
	       ms, g.my_shift, g.peer_shift, g.seg_max, g.min_peer_wnd, (unsigned)st.tcp_retransmits, g.ooo, split_frames);
	net_user_free(nu);
	q_clear();
}

TEST(tcp_transfer_both_ways)
{
	uint64_t n = transfer_bytes();
	tcp_transfer(n, n, 0, 0, false);
}

/*
 * The checksum over a frame's pieces (a payload split where the ring wraps, at
 * any byte) is the checksum of the whole: compared with ours over random
 * messages cut at random points, odd ones included.
 */
TEST(checksum_over_pieces)
{
	static uint8_t m[3000];
	uint32_t x = 12345;
	for (int round = 0; round < 2000; round++) {
		size_t len = 1 + (x = x * 1103515245 + 12345) % sizeof(m);
		for (size_t i = 0; i < len; i++)
			m[i] = (x = x * 1103515245 + 12345) >> 16;
		struct iovec v[4];
		size_t cut[3];
		for (int k = 0; k < 3; k++)
			cut[k] = (x = x * 1103515245 + 12345) >> 8;
		size_t a = cut[0] % (len + 1), b = a + cut[1] % (len - a + 1), c = b + cut[2] % (len - b + 1);
		v[0] = (struct iovec){ m, a };
		v[1] = (struct iovec){ m + a, b - a };
		v[2] = (struct iovec){ m + b, c - b };
		v[3] = (struct iovec){ m + c, len - c };
		uint32_t seed = round * 7919;
		CHECK_EQ(inet_csum_fold(inet_csum_iov(seed & 0xffff, v, 4)), csum(m, len, seed & 0xffff));
		if (csum(m, len, seed & 0xffff) != inet_csum_fold(inet_csum_iov(seed & 0xffff, v, 4))) {
			printf("  %zu bytes cut at %zu %zu %zu\n", len, a, b, c);
			break;
		}
	}
}

TEST(tcp_transfer_slow_host_reader)
{
	/* The server reads nothing for a while: our window must shut, then reopen. */
	/* More than the host's socket buffers hold (tcp_wmem's maximum), so it must push back. */
	uint64_t wmem_max = 4 << 20;
	FILE *f = fopen("/proc/sys/net/ipv4/tcp_wmem", "r");
	if (f) {
		unsigned long a, b, c;
		if (fscanf(f, "%lu %lu %lu", &a, &b, &c) == 3)
			wmem_max = c;
		fclose(f);
	}
	tcp_transfer(MAX(wmem_max + (2 << 20), (uint64_t)6 << 20), 0, 5000, 0, false);
}

/*
 * Window scaling both ways (the guest offers 7, as Linux does; we answer 5):
 * uploads in full-sized and TSO-sized segments, to a host that reads at once
 * and to one that stops reading until our window has shut.
 */
static void scaled_transfers(uint64_t up, uint64_t down, int pause_ms)
{
	xfer_ws = 7;
	for (int tso = 0; tso <= 1; tso++) {
		xfer_seg = tso ? 65000 : 1460;
		tcp_transfer(up, down, pause_ms, 0, false);
	}
	xfer_ws = -1;
	xfer_seg = 1460;
}

TEST(tcp_transfer_scaled)
{
	uint64_t n = transfer_bytes();
	scaled_transfers(n, n, 0);
}

TEST(tcp_transfer_scaled_slow_host_reader)
{
	scaled_transfers((uint64_t)10 << 20, 0, 5000);
}

/*
 * A guest that takes checksum and GSO offloads (as Linux's virtio_net does)
 * gets its download in frames of many segments with partial checksums; cut up
 * as its kernel would, they are the same stream, every segment within its
 * window (tcp_transfer checks the bytes, the windows, the segment sizes).
 */
TEST(tcp_transfer_guest_takes_gso)
{
	uint64_t n = transfer_bytes();
	xfer_offload = true;
	xfer_ws = 7;
	gso_frames = partial_frames = bad_hdrs = max_gso_frame = 0;
	tcp_transfer(n, n, 0, 0, false);
	xfer_offload = false;
	xfer_ws = -1;
	CHECK_EQ(bad_hdrs, 0);
	CHECK(gso_frames > 0);
	CHECK(partial_frames >= gso_frames);
	CHECK(max_gso_frame > 14 + 20 + 20 + 20 * 1460);	/* the window let whole frames of dozens of segments go */
	CHECK(max_gso_frame <= 14 + 65535);
	CHECK_EQ(xfer_stats.tcp_gso_sent, gso_frames);	/* what `lkvm stat` shows as netN_tcp_gso_sent */
	printf("  %u GSO frames (largest %u bytes), %u with partial checksums\n", gso_frames, max_gso_frame,
	       partial_frames);
	/* Without the offloads, nothing had a header (bad_hdrs would count a frame with one the stack was not allowed). */
	gso_frames = partial_frames = 0;
	tcp_transfer(n >> 2, n >> 2, 0, 0, false);
	CHECK_EQ(gso_frames + partial_frames + bad_hdrs, 0);
}

TEST(tcp_transfer_lossy)
{
	/*
	 * Every 23rd data segment to the guest vanishes: retransmission fills the
	 * holes, for a guest that drops what comes after a hole and for one that
	 * keeps it. The data the guest has not acked stays in the connection's
	 * ring, so segments cross the ring's end here: their payloads reach the
	 * guest as two pieces from the ring in place (their checksums are checked).
	 */
	uint64_t n = MIN(transfer_bytes(), (uint64_t)(2 << 20));
	split_frames = 0;
	tcp_transfer(0, n, 0, 23, false);
	tcp_transfer(0, n, 0, 23, true);
	CHECK(split_frames > 0);
}

TEST(tcp_zero_window)
{
	struct server srv = { .tx_total = 300000, .seed_tx = 3 };
	server_start(&srv);
	struct net_user *nu = mk(NULL);
	struct gtcp g;
	gtcp_init(&g, nu, 33001, GW, srv.port);
	g.fin_when_done = true;
	g.wnd = 4096;
	gtcp_connect(&g);
	CHECK(gtcp_run(&g, g_established, 2000));
	/* Take 4 KiB, then shut the window and keep it shut for a second. */
	uint64_t end = mono_ms() + 300;
	while (g.rx_bytes < 4096 && mono_ms() < end)
		gtcp_run(&g, g_finished, 10);
	g.wnd = 0;
	gtcp_ack(&g);
	uint64_t got = g.rx_bytes;
	end = mono_ms() + 1000;
	while (mono_ms() < end)
		gtcp_run(&g, g_finished, 10);
	CHECK_EQ(g.rx_bytes, got);
	CHECK_EQ(g.wnd_violations, 0);
	g.wnd = 65535;
	gtcp_ack(&g);		/* the window update */
	CHECK(gtcp_run(&g, g_finished, 20000));
	server_join(&srv);
	CHECK_EQ(g.rx_bytes, 300000);
	CHECK_EQ(g.crc_rx, pattern_crc(300000, 3));
	CHECK_EQ(g.wnd_violations, 0);
	net_user_free(nu);
	q_clear();
}


/*
 * A host reader that takes nothing: once its socket said EAGAIN, the guest's
 * bytes wait for EPOLLOUT. The guest's further segments (until our window
 * shuts) must not each cost a failed write: one "full" while the host reads
 * nothing, then all of it arrives intact once it reads.
 */
static bool g_peer_wnd_shut(struct gtcp *g) { return g->peer_wnd == 0; }

TEST(tcp_full_host_socket_waits_for_epollout)
{
	const uint64_t up = 6 << 20;	/* more than the socket buffers and our ring hold */
	struct server srv = { .seed_tx = 1, .pause_ms = 600000, .rcvbuf = 4096 };
	server_start(&srv);
	struct net_user *nu = mk(NULL);
	struct gtcp g;
	gtcp_init(&g, nu, 33002, GW, srv.port);
	g.tx_total = up;
	g.seed_tx = 0x3c;
	g.fin_when_done = true;
	g.ws_offer = 7;
	gtcp_connect(&g);
	CHECK(gtcp_run(&g, g_established, 2000));
	CHECK(gtcp_run(&g, g_peer_wnd_shut, 20000));
	uint64_t end = mono_ms() + 500;	/* the guest's probes of the shut window go on meanwhile */
	while (mono_ms() < end)
		gtcp_run(&g, g_never, 10);
	struct net_user_stats st;
	net_user_get_stats(nu, &st);
	CHECK_EQ(st.tcp_host_full, 1);
	uint64_t queued = g.snd_una - g.iss - 1;
	CHECK(queued > (512 << 10));	/* the ring took the guest's bytes meanwhile */
	srv.go = true;
	CHECK(gtcp_run(&g, g_finished_or_shut, 60000));
	end = mono_ms() + 30000;
	while (!srv.done && mono_ms() < end)
		gtcp_run(&g, g_never, 5);
	CHECK(srv.done);
	server_join(&srv);
	CHECK_EQ(srv.rx_bytes, up);
	CHECK_EQ(srv.crc_rx, pattern_crc(up, 0x3c));
	CHECK(!g.got_rst);
	net_user_get_stats(nu, &st);
	printf("  %.1f MiB to a host that read nothing at first: %llu KiB queued meanwhile, the socket found full %llu times\n",
	       up / 1048576.0, (unsigned long long)queued >> 10, (unsigned long long)st.tcp_host_full);
	net_user_free(nu);
	q_clear();
}

/*
 * Window scaling (RFC 7323): offered back only to a guest whose SYN offers it;
 * then our window covers the 1 MiB ring (scale 5) and the guest's window
 * counts in its own units. Without it, windows stop at 65535 as before.
 */
static struct frame *next_tcp(struct net_user *nu, struct pkt *p, bool with_data)
{
	for (int i = 0; i < 50; i++) {
		struct frame *f = wait_frame(nu, 6, 20, p);
		if (f && (!with_data || p->dlen))
			return f;
		free(f);
	}
	return NULL;
}

TEST(tcp_window_scaling)
{
	for (int scaled = 1; scaled >= 0; scaled--) {
		struct server srv = { .tx_total = 3000, .seed_tx = 9 };
		server_start(&srv);
		struct net_user *nu = mk(NULL);
		struct pkt p;
		syn_wscale = scaled ? 7 : -1;
		uint32_t iss = 5000;
		send_frame(nu, mk_tcp(fb, 41000, GW, srv.port, iss, 0, SYN, 65535, NULL, 0));
		syn_wscale = -1;
		struct frame *f = next_tcp(nu, &p, false);
		CHECK(f && p.flags == (SYN | ACK));
		if (!f)
			return;
		CHECK_EQ(p.ws, scaled ? 5 : -1);
		CHECK_EQ(p.wnd, 65535);		/* a SYN's window is never scaled */
		uint32_t rseq = p.seq + 1;
		free(f);
		/* The guest's window: 1 unit, 128 bytes when scaled by 7; 1 byte otherwise. */
		send_frame(nu, mk_tcp(fb, 41000, GW, srv.port, iss + 1, rseq, ACK, 1, NULL, 0));
		f = next_tcp(nu, &p, true);
		CHECK(f != NULL);
		if (f) {
			CHECK_EQ(p.dlen, scaled ? 128 : 1);
			free(f);
		}
		/* Nothing past the window (a retransmission of the same bytes may come). */
		while ((f = next_tcp(nu, &p, true))) {
			CHECK((int32_t)(p.seq + p.dlen - (rseq + (scaled ? 128 : 1))) <= 0);
			free(f);
		}
		/* 1000 bytes from the guest: the ACK's window is the ring's room, in our units. */
		uint8_t d[1000];
		fill(d, 0, sizeof(d), 4);
		q_clear();
		send_frame(nu, mk_tcp(fb, 41000, GW, srv.port, iss + 1, rseq, ACK | PSH, 0, d, sizeof(d)));
		f = next_tcp(nu, &p, false);
		CHECK(f != NULL);
		if (f) {
			CHECK_EQ(p.ack, iss + 1 + 1000);
			CHECK_EQ(p.wnd, scaled ? ((1u << 20) - 1000) >> 5 : 65536 - 1000);
			free(f);
		}
		for (int i = 0; i < 100 && srv.rx_bytes < 1000; i++)
			step(nu, 5);
		CHECK_EQ(srv.rx_bytes, 1000);
		CHECK_EQ(srv.crc_rx, pattern_crc(1000, 4));
		net_user_free(nu);
		server_join(&srv);
		q_clear();
	}
}

/* ---- hostile guests: bounded memory, no crash, no busy loop ---- */

/* A connection from guest port sport to a fresh server sending tx bytes; returns our ISS + 1 (0: failed). */
static uint32_t hostile_connect(struct net_user *nu, struct server *srv, uint16_t sport, int ws, uint16_t wnd)
{
	struct pkt p;
	syn_wscale = ws;
	send_frame(nu, mk_tcp(fb, sport, GW, srv->port, 7000, 0, SYN, 65535, NULL, 0));
	syn_wscale = -1;
	struct frame *f = next_tcp(nu, &p, false);
	if (!f || p.flags != (SYN | ACK)) {
		free(f);
		return 0;
	}
	uint32_t rseq = p.seq + 1;
	CHECK_EQ(p.ws, ws >= 0 ? 5 : -1);
	free(f);
	send_frame(nu, mk_tcp(fb, sport, GW, srv->port, 7001, rseq, ACK, wnd, NULL, 0));
	return rseq;
}

/* Frames to the guest: how many, data bytes past seq0 at most, and the last one's flags. */
static unsigned drain_tcp(uint32_t seq0, uint32_t *max_end, uint8_t *flags)
{
	unsigned n = 0;
	struct frame *f;
	while ((f = pop())) {
		struct pkt p;
		if (parse(f, &p) && p.proto == 6) {
			n++;
			if (p.dlen && max_end && p.seq + p.dlen - seq0 > *max_end)
				*max_end = p.seq + p.dlen - seq0;
			if (flags)
				*flags |= p.flags;
		}
		free(f);
	}
	return n;
}

TEST(tcp_hostile_window_scale_over_14)
{
	/* RFC 7323 2.3: a shift over 14 is taken as 14; the window field 1 then means 16 KiB. */
	uint8_t shifts[] = { 15, 200, 255 };
	for (unsigned i = 0; i < sizeof(shifts); i++) {
		struct server srv = { .tx_total = 200000, .seed_tx = 1 };
		server_start(&srv);
		struct net_user *nu = mk(NULL);
		uint32_t rseq = hostile_connect(nu, &srv, 42000 + i, shifts[i], 1);
		CHECK(rseq != 0);
		uint32_t end = 0;
		for (int k = 0; k < 60; k++) {
			step(nu, 5);
			drain_tcp(rseq, &end, NULL);
		}
		CHECK_EQ(end, 1u << 14);	/* the window filled, not a byte past it */
		net_user_free(nu);
		server_join(&srv);
		q_clear();
	}
}

TEST(tcp_hostile_zero_window_forever)
{
	/*
	 * The guest answers every probe, but its window stays shut for an hour of
	 * (fake) time: the host's bytes stay in the host kernel, probes back off,
	 * nothing spins, the connection stays.
	 */
	struct server srv = { .tx_total = 8 << 20, .seed_tx = 2 };
	server_start(&srv);
	struct net_user_cfg cfg = { .clock_ms = fake_clock };
	struct net_user *nu = mk(&cfg);
	size_t heap0 = heap_in_use();
	uint32_t rseq = hostile_connect(nu, &srv, 42100, 7, 0);
	CHECK(rseq != 0);
	unsigned frames = 0, zero_timeouts = 0;
	uint32_t end = 0;
	for (int k = 0; k < 3600 * 10; k++) {
		fake_now += 100;
		struct pollfd pf = { net_user_fd(nu), POLLIN, 0 };
		if (poll(&pf, 1, 0) > 0)
			net_user_process(nu);
		net_user_timer(nu, fake_now);
		unsigned n = drain_tcp(rseq, &end, NULL);
		frames += n;
		if (n)		/* each probe answered: still nothing acknowledged, window 0 */
			send_frame(nu, mk_tcp(fb, 42100, GW, srv.port, 7001, rseq, ACK, 0, NULL, 0));
		if (net_user_timeout(nu) == 0)
			zero_timeouts++;
	}
	struct net_user_stats st;
	net_user_get_stats(nu, &st);
	CHECK_EQ(st.tcp_conns, 1);
	CHECK(end <= 1);		/* a one-byte probe at most */
	CHECK(frames >= 10 && frames <= 200);
	CHECK(zero_timeouts < 10);
	CHECK(heap_in_use() < heap0 + (2 << 20));
	printf("  zero window for an hour: %u frames to the guest, heap +%zu KiB\n", frames,
	       (heap_in_use() - heap0) >> 10);
	net_user_free(nu);
	srv.go = true;
	server_join(&srv);
	q_clear();
}

TEST(tcp_hostile_guest_never_acks)
{
	/*
	 * A scaled 8 MiB window, then silence: at most our ring's 1 MiB is held,
	 * retransmissions back off, and the connection goes with a RST both ways.
	 */
	struct server srv = { .tx_total = 16 << 20, .seed_tx = 3 };
	server_start(&srv);
	struct net_user_cfg cfg = { .clock_ms = fake_clock };
	struct net_user *nu = mk(&cfg);
	size_t heap0 = heap_in_use();
	uint32_t rseq = hostile_connect(nu, &srv, 42200, 7, 65535);
	CHECK(rseq != 0);
	unsigned frames = 0;
	size_t heap_max = 0;
	uint32_t end = 0;
	uint8_t flags = 0;
	struct net_user_stats st;
	for (int k = 0; k < 3600 * 10; k++) {
		fake_now += 100;
		struct pollfd pf = { net_user_fd(nu), POLLIN, 0 };
		if (poll(&pf, 1, k < 50 ? 5 : 0) > 0)
			net_user_process(nu);
		net_user_timer(nu, fake_now);
		frames += drain_tcp(rseq, &end, &flags);
		heap_max = MAX(heap_max, heap_in_use());
		net_user_get_stats(nu, &st);
		if (!st.tcp_conns)
			break;
	}
	CHECK_EQ(st.tcp_conns, 0);
	CHECK(flags & RST);
	CHECK_EQ(end, 1u << 20);	/* the ring's worth was sent, nothing more was read */
	CHECK(heap_max < heap0 + (1 << 20) + (256 << 10));
	CHECK(frames < 20 * 720);
	printf("  never acked: %u frames, %u KiB sent, heap +%zu KiB at most\n", frames, end >> 10,
	       (heap_max - heap0) >> 10);
	net_user_free(nu);
	server_join(&srv);
	q_clear();
}

TEST(tcp_scaled_connections_bounded)
{
	/*
	 * 16 connections at once scale (1 MiB rings each way); more are offered
	 * no scaling and keep 64 KiB rings, so a guest's 256 connections cannot
	 * make the stack hold 512 MiB. A closed one's place goes to the next.
	 */
	uint16_t port;
	int l = bound_socket(SOCK_STREAM, &port);
	listen(l, 64);
	struct net_user *nu = mk(NULL);
	int scaled = 0, plain = 0;
	uint32_t rseq0 = 0;
	for (int i = 0; i < 20; i++) {
		struct pkt p;
		syn_wscale = 7;
		send_frame(nu, mk_tcp(fb, 43000 + i, GW, port, 9000, 0, SYN, 65535, NULL, 0));
		syn_wscale = -1;
		struct frame *f = next_tcp(nu, &p, false);
		CHECK(f && p.flags == (SYN | ACK));
		if (!f)
			break;
		if (!i)
			rseq0 = p.seq + 1;
		scaled += p.ws == 5;
		plain += p.ws == -1;
		free(f);
		/* The handshake's ACK: an unscaled connection's window field stays within 64 KiB. */
		send_frame(nu, mk_tcp(fb, 43000 + i, GW, port, 9001, p.seq + 1, ACK, 65535, NULL, 0));
		if (p.ws == -1) {
			uint8_t d[100] = { 0 };
			q_clear();
			send_frame(nu, mk_tcp(fb, 43000 + i, GW, port, 9001, p.seq + 1, ACK, 65535, d, sizeof(d)));
			f = next_tcp(nu, &p, false);
			CHECK(f && p.wnd == 65536 - 100);
			free(f);
		}
	}
	CHECK_EQ(scaled, 16);
	CHECK_EQ(plain, 4);
	/* The first goes (the guest resets it): the next connection scales again. */
	send_frame(nu, mk_tcp(fb, 43000, GW, port, 9001, rseq0, RST | ACK, 0, NULL, 0));
	struct pkt p;
	q_clear();
	syn_wscale = 7;
	send_frame(nu, mk_tcp(fb, 43100, GW, port, 9000, 0, SYN, 65535, NULL, 0));
	syn_wscale = -1;
	struct frame *f = next_tcp(nu, &p, false);
	CHECK(f && p.flags == (SYN | ACK) && p.ws == 5);
	free(f);
	net_user_free(nu);
	close(l);
	q_clear();
}

TEST(tcp_scaled_window_edge_kept)
{
	/*
	 * The host reads nothing; the guest sends 1000-byte segments right up to
	 * the edge each ACK offers. Scaled windows count in 32-byte units, so the
	 * room left is rarely a whole unit: every byte sent within an edge we
	 * offered must still be taken, or the guest stalls until it retransmits.
	 */
	struct server srv = { .seed_tx = 0, .pause_ms = 600000, .rcvbuf = 4096 };
	server_start(&srv);
	struct net_user *nu = mk(NULL);
	uint32_t rseq = hostile_connect(nu, &srv, 42300, 7, 65535);
	CHECK(rseq != 0);
	uint32_t una = 7001, nxt = 7001, edge = 0, dropped = 0;
	uint64_t sent;
	static uint8_t d[1000];
	int idle = 0;
	for (int round = 0; round < 5000 && idle < 20; round++) {
		struct pkt p;
		struct frame *f;
		bool got = false;
		step(nu, 2);
		while ((f = pop())) {
			if (parse(f, &p) && p.proto == 6 && (p.flags & ACK)) {
				if (SEQ_GT(p.ack, una))
					una = p.ack;
				uint32_t e = p.ack + ((uint32_t)p.wnd << 5);
				if (SEQ_GT(e, edge))
					edge = e;
				got = true;
			}
			free(f);
		}
		if (SEQ_LT(una, nxt)) {		/* bytes sent within an offered edge, not taken */
			dropped += nxt - una;
			nxt = una;
		}
		if (!SEQ_LT(nxt, edge)) {
			idle += !got;
			continue;
		}
		idle = 0;
		while (SEQ_LT(nxt, edge)) {
			uint32_t n = MIN((uint32_t)sizeof(d), edge - nxt);
			fill(d, nxt - 7001, n, 6);
			send_frame(nu, mk_tcp(fb, 42300, GW, srv.port, nxt, rseq, ACK, 65535, d, n));
			nxt += n;
		}
	}
	sent = nxt - 7001;
	CHECK_EQ(dropped, 0);
	CHECK(sent >= (1 << 20));	/* the ring filled: the host socket took its share too */
	/* Let the host read: every byte arrives once. */
	srv.go = true;
	send_frame(nu, mk_tcp(fb, 42300, GW, srv.port, nxt, rseq, FIN | ACK, 65535, NULL, 0));
	uint64_t end = mono_ms() + 20000;
	while (!srv.done && mono_ms() < end) {
		step(nu, 5);
		q_clear();
	}
	CHECK_EQ(srv.rx_bytes, sent);
	CHECK_EQ(srv.crc_rx, pattern_crc(sent, 6));
	printf("  %" PRIu64 " KiB sent up to the offered edges, %u bytes not taken\n", sent >> 10, dropped);
	net_user_free(nu);
	server_join(&srv);
	q_clear();
}

TEST(tcp_closed_port_rst)
{
	uint16_t port = free_port(SOCK_STREAM);
	struct net_user *nu = mk(NULL);
	struct pkt p;
	send_frame(nu, mk_tcp(fb, 40000, GW, port, 1000, 0, SYN, 65535, NULL, 0));
	struct frame *f = wait_frame(nu, 6, 100, &p);
	CHECK(f != NULL);
	if (f) {
		CHECK_EQ(p.flags, RST | ACK);
		CHECK_EQ(p.ack, 1001);
		CHECK_EQ(p.sport, port);
		CHECK_EQ(p.dport, 40000);
		free(f);
	}
	/* So do 10.0.2.3 (not port 53) and strangers in our subnet, and a stray ACK. */
	send_frame(nu, mk_tcp(fb, 40001, DNS, 80, 1, 0, SYN, 65535, NULL, 0));
	CHECK((f = wait_frame(nu, 6, 100, &p)) && (p.flags & RST) && p.src == DNS);
	free(f);
	send_frame(nu, mk_tcp(fb, 40002, 0x0a000263, 80, 1, 0, SYN, 65535, NULL, 0));
	CHECK((f = wait_frame(nu, 6, 100, &p)) && (p.flags & RST));
	free(f);
	send_frame(nu, mk_tcp(fb, 40003, GW, port, 5, 777, ACK, 65535, NULL, 0));
	CHECK((f = wait_frame(nu, 6, 100, &p)) && p.flags == RST && p.seq == 777);
	free(f);
	struct net_user_stats st;
	net_user_get_stats(nu, &st);
	CHECK_EQ(st.tcp_conns, 0);
	net_user_free(nu);
	q_clear();
}

/* A SYN to dst:port; the first TCP answer's flags within ms, or 0 for none. */
static uint8_t syn_answer(struct net_user *nu, uint16_t sport, uint32_t dst, uint16_t port, int ms)
{
	struct pkt p;
	send_frame(nu, mk_tcp(fb, sport, dst, port, 1000, 0, SYN, 65535, NULL, 0));
	struct frame *f = wait_frame(nu, 6, ms, &p);
	uint8_t flags = f && p.src == dst && p.sport == port ? p.flags : 0;
	free(f);
	return flags;
}

static int listener(uint16_t *port)
{
	int s = bound_socket(SOCK_STREAM, port);
	if (s >= 0 && listen(s, 4) < 0) {
		close(s);
		return -1;
	}
	return s;
}

/* Nothing connected to the listener s (a refused SYN never reached the host). */
static bool nobody_came(int s)
{
	struct pollfd p = { s, POLLIN, 0 };
	return poll(&p, 1, 50) == 0;
}

TEST(sandbox_policy_refuses_what_only_the_host_reaches)
{
	uint16_t port, uport;
	int s = listener(&port), u = bound_socket(SOCK_DGRAM, &uport);
	CHECK(s >= 0 && u >= 0);
	/* Today's default: 10.0.2.2 is the host's 127.0.0.1. */
	struct net_user *nu = mk(NULL);
	CHECK_EQ(syn_answer(nu, 41000, GW, port, 1000), SYN | ACK);
	net_user_free(nu);
	int c = accept(s, NULL, NULL);
	CHECK(c >= 0);
	if (c >= 0)
		close(c);
	q_clear();

	struct net_user_cfg cfg = { .policy_sandbox = true };
	nu = mk(&cfg);
	uint64_t t0 = mono_ms();
	CHECK_EQ(syn_answer(nu, 41001, GW, port, 100), RST | ACK);
	CHECK(nobody_came(s));
	/* loopback, link-local (cloud metadata), private and shared ranges, "this network": RST at once */
	const uint32_t closed[] = { 0xa9fea9fe, 0xa9fe0001, 0x0a010203, 0xac100001, 0xac1fffff, 0xc0a80101,
				    0x64400001, 0x7f000001, 0x7f000101, 0x00000001 };
	for (size_t i = 0; i < ARRAY_SIZE(closed); i++) {
		uint8_t fl = syn_answer(nu, 41010 + i, closed[i], 80, 100);
		if (fl != (RST | ACK))
			fprintf(stderr, "  %08x: flags %#x\n", closed[i], fl);
		CHECK_EQ(fl, RST | ACK);
	}
	CHECK(mono_ms() - t0 < 1000);	/* answered, not left to time out */
	/* a UDP datagram to the host's loopback is dropped, a ping to a private address too */
	const char msg[] = "x";
	send_frame(nu, mk_udp(fb, GUEST, 5555, GW, uport, msg, sizeof(msg)));
	step(nu, 10);
	struct pollfd pu = { u, POLLIN, 0 };
	CHECK_EQ(poll(&pu, 1, 100), 0);
	send_frame(nu, mk_ping(fb, 0xc0a80101, 7, 1, 8));
	struct net_user_stats st;
	net_user_get_stats(nu, &st);
	/* counted: all but 127/8 and 0/8, which are no destination in any mode (RST all the same) */
	CHECK_EQ(st.policy_refused, 1 + ARRAY_SIZE(closed) - 3 + 2);
	CHECK_EQ(net_user_refused(nu), st.policy_refused);
	CHECK_EQ(st.tcp_conns, 0);
	/* the internet is not refused (whether the host reaches it is another matter) */
	send_frame(nu, mk_tcp(fb, 41100, 0x08080808, 53, 1000, 0, SYN, 65535, NULL, 0));
	send_frame(nu, mk_tcp(fb, 41101, 0xac200001, 80, 1000, 0, SYN, 65535, NULL, 0));	/* 172.32/12: public */
	CHECK_EQ(net_user_refused(nu), st.policy_refused);
	net_user_free(nu);
	close(s);
	close(u);
	q_clear();
}

TEST(sandbox_policy_host_loopback_and_allow_rules)
{
	uint16_t port, other;
	int s = listener(&port), s2 = listener(&other);
	CHECK(s >= 0 && s2 >= 0);
	struct net_user_cfg cfg = { .policy_sandbox = true, .host_loopback = true };
	struct net_user *nu = mk(&cfg);
	CHECK_EQ(syn_answer(nu, 42000, GW, port, 1000), SYN | ACK);
	CHECK_EQ(syn_answer(nu, 42001, 0xa9fea9fe, 80, 100), RST | ACK);	/* loopback only */
	net_user_free(nu);
	q_clear();
	/* allow=10.0.2.2:PORT: that port of the host's loopback, no other */
	struct net_user_rule r[2];
	char rule[32];
	snprintf(rule, sizeof(rule), "10.0.2.2:%u", port);
	CHECK_EQ(net_user_parse_rule(rule, &r[0]), 0);
	CHECK_EQ(r[0].ip, 0x7f000001);
	CHECK_EQ(r[0].port, port);
	CHECK_EQ(net_user_parse_rule("169.254.0.0/16", &r[1]), 0);
	CHECK_EQ(r[1].bits, 16);
	CHECK_EQ(r[1].port, 0);
	cfg = (struct net_user_cfg){ .policy_sandbox = true, .nr_allow = 1, .allow = r };
	nu = mk(&cfg);
	CHECK_EQ(syn_answer(nu, 42002, GW, port, 1000), SYN | ACK);
	CHECK_EQ(syn_answer(nu, 42003, GW, other, 100), RST | ACK);
	CHECK(nobody_came(s2));
	CHECK_EQ(net_user_refused(nu), 1);
	net_user_free(nu);
	q_clear();
	/* bad rules are refused, naming themselves */
	const char *bad[] = { "1.2.3.4:0", "1.2.3.4:65536", "1.2.3.0/33", ":80", "", "1.2.3.4:x",
			      "no-such-host.invalid" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		CHECK_EQ(net_user_parse_rule(bad[i], &r[0]), -1);
		CHECK(strstr(err_msg(), bad[i]) != NULL);
	}
	close(s);
	close(s2);
}

TEST(tcp_guest_reset)
{
	/* A RST from the guest resets the host side too. */
	uint16_t port;
	int l = bound_socket(SOCK_STREAM, &port);
	listen(l, 4);
	struct net_user *nu = mk(NULL);
	struct gtcp g;
	gtcp_init(&g, nu, 33002, GW, port);
	gtcp_connect(&g);
	CHECK(gtcp_run(&g, g_established, 2000) && g.state == G_EST);
	int c = accept(l, NULL, NULL);
	gtcp_seg(&g, g.snd_nxt, RST | ACK, NULL, 0);
	char b;
	struct pollfd pfd = { c, POLLIN, 0 };
	CHECK(poll(&pfd, 1, 1000) == 1);
	CHECK(recv(c, &b, 1, 0) < 0 && errno == ECONNRESET);
	struct net_user_stats st;
	net_user_get_stats(nu, &st);
	CHECK_EQ(st.tcp_conns, 0);
	close(c);
	/* And the host resetting reaches the guest as a RST. */
	gtcp_init(&g, nu, 33003, GW, port);
	gtcp_connect(&g);
	CHECK(gtcp_run(&g, g_established, 2000) && g.state == G_EST);
	c = accept(l, NULL, NULL);
	struct linger lg = { 1, 0 };
	setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(c);
	CHECK(gtcp_run(&g, g_finished, 2000) && g.got_rst);
	net_user_get_stats(nu, &st);
	CHECK_EQ(st.tcp_conns, 0);
	net_user_free(nu);
	close(l);
	q_clear();
}

/*
 * Snapshots: a stack restored from another's state knows the guest's MAC at
 * once and resets each TCP connection the guest had, in its sequence space,
 * so the guest's connections end instead of hanging on a host socket that
 * stayed with the old process.
 */
TEST(restored_stack_resets_flows)
{
	uint16_t port;
	int l = bound_socket(SOCK_STREAM, &port);
	listen(l, 4);
	struct net_user *nu = mk(NULL);
	struct gtcp g;
	gtcp_init(&g, nu, 33010, GW, port);
	gtcp_connect(&g);
	CHECK(gtcp_run(&g, g_established, 2000) && g.state == G_EST);
	int c = accept(l, NULL, NULL);
	struct net_user_state *st = calloc(1, sizeof(*st));
	net_user_get_state(nu, st);
	CHECK_EQ(st->nr_flows, 1);
	CHECK(!memcmp(st->guest_mac, gmac, 6));
	q_clear();
	/* A new stack that has not seen the guest: no MAC configured. */
	struct net_user *nu2 = net_user_new(&(struct net_user_cfg){ .dns = "127.0.0.1:9" }, to_guest, NULL);
	CHECK(nu2 != NULL);
	net_user_set_state(nu2, st);
	CHECK_EQ(net_user_timeout(nu2), 0);	/* due at once */
	struct pkt p;
	struct frame *f = wait_frame(nu2, 6, 1000, &p);
	CHECK(f != NULL);
	if (f) {
		CHECK(!memcmp(p.eth, gmac, 6));	/* to the guest's MAC, learnt from the state */
		CHECK_EQ(p.flags & (RST | ACK), RST | ACK);
		CHECK_EQ(p.src, GW);
		CHECK_EQ(p.sport, port);
		CHECK_EQ(p.dport, 33010);
		CHECK_EQ(p.seq, g.rcv_nxt);	/* in the guest's window: it takes it */
		CHECK_EQ(p.ack, g.snd_nxt);
		free(f);
	}
	CHECK(wait_frame(nu2, 6, 200, &p) == NULL);	/* once */
	free(st);
	net_user_free(nu2);
	net_user_free(nu);
	close(c);
	close(l);
	q_clear();
}

static bool g_has(struct gtcp *g) { return g->rx_bytes >= 15; }
static bool g_peer_fin(struct gtcp *g) { return g->peer_fin || g->got_rst; }

TEST(hostfwd)
{
	uint16_t tport = free_port(SOCK_STREAM), uport = free_port(SOCK_DGRAM);
	struct net_user_fwd fw[] = { { false, tport, 8080 }, { true, uport, 5353 } };
	struct net_user_cfg cfg = { .nr_fwds = 2, .fwds = fw };
	struct net_user *nu = mk(&cfg);
	CHECK(nu != NULL);
	if (!nu)
		return;
	int c = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(tport), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	CHECK_EQ(connect(c, (struct sockaddr *)&a, sizeof(a)), 0);
	struct pkt p;
	struct frame *f = wait_frame(nu, 6, 1000, &p);
	CHECK(f != NULL);
	if (!f)
		return;
	CHECK_EQ(p.flags, SYN);
	CHECK_EQ(p.src, GW);
	CHECK_EQ(p.dst, GUEST);
	CHECK_EQ(p.dport, 8080);
	CHECK_EQ(p.mss, 1460);
	struct gtcp g;
	gtcp_init(&g, nu, 8080, GW, p.sport);
	g.state = G_LISTEN;
	gtcp_input(&g, &p);
	free(f);
	CHECK(gtcp_run(&g, g_established, 1000));
	CHECK_EQ(g.state, G_EST);
	CHECK_EQ(send(c, "hello from host", 15, 0), 15);
	CHECK(gtcp_run(&g, g_has, 1000));
	uLong want = crc32(crc32(0, NULL, 0), (const uint8_t *)"hello from host", 15);
	CHECK_EQ(g.crc_rx, want);
	gtcp_seg(&g, g.snd_nxt, ACK | PSH, "hi from guest", 13);
	g.snd_nxt += 13;
	/* The guest's bytes are queued until the batch ends: the next turn of the loop writes them. */
	CHECK_EQ(net_user_timeout(nu), 0);
	step(nu, 0);
	char buf[64];
	struct pollfd pfd = { c, POLLIN, 0 };
	CHECK(poll(&pfd, 1, 1000) == 1);
	CHECK_EQ(recv(c, buf, sizeof(buf), 0), 13);
	CHECK(!memcmp(buf, "hi from guest", 13));
	/* The host client closes: FIN to the guest; the guest closes: EOF to the client. */
	shutdown(c, SHUT_WR);
	CHECK(gtcp_run(&g, g_peer_fin, 1000) && g.peer_fin);
	g.tx_total = 13;
	g.fin_when_done = true;
	CHECK(gtcp_run(&g, g_finished, 1000));
	CHECK(poll(&pfd, 1, 1000) == 1);
	CHECK_EQ(recv(c, buf, sizeof(buf), 0), 0);
	close(c);
	struct net_user_stats st;
	for (int i = 0; i < 50 && (net_user_get_stats(nu, &st), st.tcp_conns); i++)
		step(nu, 2);
	CHECK_EQ(st.tcp_conns, 0);

	/* A guest that refuses (RST): the host client is reset. */
	c = socket(AF_INET, SOCK_STREAM, 0);
	CHECK_EQ(connect(c, (struct sockaddr *)&a, sizeof(a)), 0);
	CHECK((f = wait_frame(nu, 6, 1000, &p)) && p.flags == SYN);
	if (f) {
		send_frame(nu, mk_tcp(fb, 8080, GW, p.sport, 0, p.seq + 1, RST | ACK, 0, NULL, 0));
		free(f);
	}
	pfd.fd = c;
	CHECK(poll(&pfd, 1, 1000) == 1);
	CHECK(recv(c, buf, 1, 0) <= 0);
	close(c);

	/* UDP: a datagram to the forwarded port reaches 10.0.2.15:5353, and the answer goes back. */
	int u = socket(AF_INET, SOCK_DGRAM, 0);
	a.sin_port = htons(uport);
	CHECK_EQ(sendto(u, "udp-in", 6, 0, (struct sockaddr *)&a, sizeof(a)), 6);
	f = wait_frame(nu, 17, 1000, &p);
	CHECK(f && p.src == GW && p.dport == 5353 && p.dlen == 6 && !memcmp(p.data, "udp-in", 6));
	if (f) {
		send_frame(nu, mk_udp(fb, GUEST, 5353, GW, p.sport, "udp-out", 7));
		free(f);
	}
	pfd.fd = u;
	CHECK(poll(&pfd, 1, 1000) == 1);
	CHECK_EQ(recv(u, buf, sizeof(buf), 0), 7);
	CHECK(!memcmp(buf, "udp-out", 7));
	close(u);
	CHECK_EQ(bad_frames, 0);
	net_user_free(nu);
	q_clear();
}

TEST(hostfwd_port_in_use)
{
	uint16_t port;
	int s = bound_socket(SOCK_STREAM, &port);
	listen(s, 1);
	struct net_user_fwd fw = { false, port, 22 };
	struct net_user_cfg cfg = { .nr_fwds = 1, .fwds = &fw };
	struct net_user_cfg c = cfg;
	memcpy(c.guest_mac, gmac, 6);
	CHECK(net_user_new(&c, to_guest, NULL) == NULL);
	CHECK(strstr(err_msg(), "hostfwd") != NULL);
	c.nr_fwds = 0;
	c.fwd_addr = "not-an-address";
	CHECK(net_user_new(&c, to_guest, NULL) == NULL);
	c.fwd_addr = NULL;
	c.dns = "1.2.3.4:99999";
	CHECK(net_user_new(&c, to_guest, NULL) == NULL);
	close(s);
}

/*
 * Listening TCP ports on the host, so a SYN flood never reaches a real
 * service; tcp6 too, as a dual-stack [::] listener takes IPv4 as well.
 */
static void listening_ports(uint8_t *map)
{
	const char *files[] = { "/proc/net/tcp", "/proc/net/tcp6" };
	for (int i = 0; i < 2; i++) {
		FILE *f = fopen(files[i], "r");
		char line[512];
		while (f && fgets(line, sizeof(line), f)) {
			unsigned port, st;
			if (sscanf(line, " %*d: %*[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%*x %x", &port, &st) == 2 && st == 0x0a)
				map[port >> 3] |= 1 << (port & 7);
		}
		if (f)
			fclose(f);
	}
}

TEST(syn_flood_closed_ports)
{
	static uint8_t busy[8192];
	listening_ports(busy);
	struct net_user *nu = mk(NULL);
	size_t heap0 = heap_in_use();
	struct net_user_stats st;
	unsigned rst = 0, synack = 0, sent = 0, max_conns = 0;
	srand(7);
	while (sent < 10000) {
		uint16_t port = 1 + rand() % 65535;
		if (busy[port >> 3] & 1 << (port & 7))
			continue;
		uint32_t dst = sent % 10 == 9 ? 0x0a000200u + 4 + rand() % 200 : GW;
		send_frame(nu, mk_tcp(fb, 1024 + rand() % 60000, dst, port, rand(), 0, SYN, 65535, NULL, 0));
		sent++;
		struct frame *f;
		while ((f = pop())) {
			struct pkt p;
			if (parse(f, &p) && p.proto == 6 && (p.flags & RST))
				rst++;
			else if (p.proto == 6 && p.flags == (SYN | ACK))
				synack++;	/* a listener that appeared after we looked (another test) */
			free(f);
		}
		net_user_get_stats(nu, &st);
		max_conns = MAX(max_conns, st.tcp_conns);
	}
	CHECK_EQ(rst + synack, 10000);
	CHECK(synack <= 3);
	CHECK(max_conns <= synack);	/* refused at once: no state kept for closed ports */
	size_t heap1 = heap_in_use();
	CHECK(heap1 < heap0 + 65536);
	net_user_free(nu);
}

TEST(tcp_table_full)
{
	/* 256 connections the guest never completes fill the table; the next SYN gets RST. */
	uint16_t port;
	int l = bound_socket(SOCK_STREAM, &port);
	listen(l, 1024);
	struct net_user *nu = mk(NULL);
	struct net_user_stats st;
	for (int i = 0; i < NET_USER_MAX_TCP; i++)
		send_frame(nu, mk_tcp(fb, 10000 + i, GW, port, i * 1000, 0, SYN, 65535, NULL, 0));
	for (int i = 0; i < 50; i++)
		step(nu, 2);
	net_user_get_stats(nu, &st);
	CHECK_EQ(st.tcp_conns, NET_USER_MAX_TCP);
	q_clear();
	send_frame(nu, mk_tcp(fb, 20000, GW, port, 5, 0, SYN, 65535, NULL, 0));
	struct pkt p;
	struct frame *f = wait_frame(nu, 6, 50, &p);
	CHECK(f && p.dport == 20000 && (p.flags & RST));
	free(f);
	net_user_get_stats(nu, &st);
	CHECK_EQ(st.tcp_conns, NET_USER_MAX_TCP);
	net_user_free(nu);
	close(l);
	q_clear();
}

TEST(tcp_syn_ack_retransmitted_then_given_up)
{
	uint16_t port;
	int l = bound_socket(SOCK_STREAM, &port);
	listen(l, 4);
	struct net_user_cfg cfg = { .clock_ms = fake_clock };
	struct net_user *nu = mk(&cfg);
	send_frame(nu, mk_tcp(fb, 41000, GW, port, 100, 0, SYN, 65535, NULL, 0));
	struct pkt p;
	struct frame *f = wait_frame(nu, 6, 1000, &p);
	CHECK(f && p.flags == (SYN | ACK) && p.ack == 101);
	free(f);
	int synacks = 1;
	for (int i = 0; i < 400; i++) {
		fake_now += 1000;
		net_user_timer(nu, fake_now);
		while ((f = pop())) {
			if (parse(f, &p) && p.proto == 6 && p.flags == (SYN | ACK))
				synacks++;
			free(f);
		}
	}
	CHECK_EQ(synacks, 7);	/* the first and six retries */
	struct net_user_stats st;
	net_user_get_stats(nu, &st);
	CHECK_EQ(st.tcp_conns, 0);
	net_user_free(nu);
	close(l);
	q_clear();
}

/* Frames that are wrong in every way we could think of, then random mutations of good ones. */
TEST(malformed_frames)
{
	struct net_user_cfg cfg = { .restricted = true };
	struct net_user *nu = mk(&cfg);
	struct pkt p;
	struct net_user_stats st0, st;
	net_user_get_stats(nu, &st0);

	/* Hand-made: each would be answered if it were well-formed. */
	size_t len = mk_ping(fb, GW, 1, 1, 8);
	static uint8_t good[100];
	memcpy(good, fb, len);
	struct { int off; uint8_t val; } bad[] = {
		{ 14, 0x44 },	/* IHL 4 */
		{ 14, 0x4f },	/* IHL 15 > packet */
		{ 14, 0x65 },	/* version 6 */
		{ 16, 0xff },	/* total length past the frame */
		{ 17, 10 },	/* total length shorter than the header */
		{ 20, 0x20 },	/* more fragments */
		{ 21, 0x01 },	/* fragment offset */
		{ 25, 0x00 },	/* header checksum wrong */
	};
	for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
		memcpy(fb, good, len);
		fb[bad[i].off] = bad[i].val;
		if (bad[i].off != 25 && bad[i].off != 16 && bad[i].off != 17 && bad[i].off != 14) {
			fb[24] = fb[25] = 0;
			w16(fb + 24, csum(fb + 14, 20, 0));
		}
		send_frame(nu, len);
	}
	for (size_t n = 0; n < len; n++)	/* every truncation */
		send_frame(nu, n);
	CHECK(wait_frame(nu, 0, 20, &p) == NULL);
	net_user_get_stats(nu, &st);
	CHECK_EQ(st.rx_dropped - st0.rx_dropped, ARRAY_SIZE(bad) + len);

	/* Random: garbage, truncations and bit flips of good frames (checksums sometimes fixed). */
	srand(1234);
	size_t heap0 = heap_in_use();
	for (int i = 0; i < 10000; i++) {
		int kind = rand() % 6;
		size_t n;
		switch (kind) {
		case 0:
			n = rand() % 1600;
			for (size_t k = 0; k < n; k++)
				fb[k] = rand();
			if (n >= 14 && rand() % 2) {
				memcpy(fb, gwmac, 6);
				fb[12] = 8;
				fb[13] = rand() % 2 ? 0 : 6;
			}
			break;
		case 1:
			n = mk_tcp(fb, rand(), rand() % 2 ? GW : (uint32_t)rand(), rand(), rand(), rand(), rand(), rand(), good, rand() % 3 ? 0 : 40);
			break;
		case 2:
			n = mk_udp(fb, rand() % 2 ? 0 : GUEST, 68, 0xffffffff, 67, good, rand() % 100);
			if (rand() % 2)
				n = mk_dhcp(fb, rand() % 9, rand() % 2, rand() % 2 ? GUEST : (uint32_t)rand(), rand() % 2 ? GW : 0, 0);
			break;
		case 3:
			n = mk_arp(fb, rand(), rand() % 2 ? GW : (uint32_t)rand());
			break;
		case 4:
			n = mk_ping(fb, rand() % 2 ? GW : (uint32_t)rand(), rand(), rand(), rand() % 64);
			break;
		default:
			n = mk_udp(fb, GUEST, rand(), rand() % 2 ? GW : DNS, rand(), good, rand() % 60);
			break;
		}
		if (kind && rand() % 2) {	/* flip a few bits */
			for (int k = rand() % 4 + 1; k; k--)
				fb[rand() % n] ^= 1 << rand() % 8;
			if (rand() % 2 && n >= 34) {
				fb[24] = fb[25] = 0;
				int ihl = (fb[14] & 15) * 4;
				if (ihl >= 20 && (size_t)ihl + 14 <= n)
					w16(fb + 24, csum(fb + 14, ihl, 0));
			}
		}
		if (kind && rand() % 4 == 0)
			n = rand() % (n + 1);
		if (rand() % 3)
			net_user_from_guest(nu, fb, n);
		else
			net_user_from_guest_csum_partial(nu, fb, n);
		if (i % 64 == 0) {
			step(nu, 0);
			q_clear();
		}
		net_user_get_stats(nu, &st);
		CHECK(st.tcp_conns <= NET_USER_MAX_TCP && st.udp_flows <= NET_USER_MAX_UDP);
		if (st.tcp_conns > NET_USER_MAX_TCP)
			break;
	}
	q_clear();
	CHECK(heap_in_use() < heap0 + (1 << 20));
	CHECK_EQ(bad_frames, 0);
	/* Still answering. */
	send_frame(nu, mk_ping(fb, GW, 77, 1, 8));
	struct frame *f = wait_frame(nu, 1, 50, &p);
	CHECK(f && r16(p.l4 + 4) == 77);
	free(f);
	send_frame(nu, mk_arp(fb, GUEST, GW));
	CHECK((f = wait_frame(nu, 0, 50, &p)) && p.type == 0x0806);
	free(f);
	net_user_free(nu);
}

TEST(restricted)
{
	uint16_t port;
	int s = bound_socket(SOCK_DGRAM, &port);
	struct net_user_cfg cfg = { .restricted = true };
	struct net_user *nu = mk(&cfg);
	send_frame(nu, mk_udp(fb, GUEST, 5555, GW, port, "x", 1));
	struct pollfd pfd = { s, POLLIN, 0 };
	CHECK(poll(&pfd, 1, 50) == 0);
	struct pkt p;
	send_frame(nu, mk_tcp(fb, 40000, GW, 22, 1, 0, SYN, 65535, NULL, 0));
	struct frame *f = wait_frame(nu, 6, 50, &p);
	CHECK(f && (p.flags & RST));
	free(f);
	net_user_free(nu);
	close(s);
}

TEST_MAIN()
