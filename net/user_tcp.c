/*
 * TCP for the user-mode stack: one compact endpoint per guest connection,
 * spliced to a host socket.
 *
 * Guest -> host: segments are taken in order only; their bytes are queued in
 * a 1 MiB ring and written to the host socket once per batch of the guest's
 * frames (nu_tcp_flush(), from net_user_timer(): one send for many small
 * segments), or at once when the ring fills. Our advertised window is that
 * ring's free space, and bytes are acknowledged once queued, so the guest can
 * never outrun the host by more than the ring.
 *
 * Host -> guest: the host socket is read only while the guest's window has
 * room beyond what is already queued (plus one byte to probe a zero window),
 * so a slow guest leaves the data in the host kernel and pushes back on the
 * sender. Queued bytes stay until acknowledged: retransmission on a timeout
 * (RFC 6298 estimator, go-back-N) and on three duplicate acknowledgements
 * (NewReno-style, one segment per partial acknowledgement).
 *
 * Window scaling (RFC 7323) when the guest offers it in its SYN (or answers
 * ours with it): our windows then reach the rings' 1 MiB; without it they
 * stop at 65535 as before, with 64 KiB rings. Only SCALED_MAX connections
 * scale at once, so a guest's many connections cannot make us hold much.
 *
 * Not done: SACK, timestamps, urgent data, congestion control
 * (the link is a memory copy; the guest's window is the only limit), TIME-WAIT
 * (the guest keeps its own; we forget a connection once both FINs are acked).
 */
#include <errno.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include "user_int.h"
#include "util.h"

#define RING_SIZE	(1u << 20)	/* a scaled connection's rings; power of two */
#define MAX_WND		65535u		/* without window scaling */
#define UNSCALED_RING	65536u		/* the rings without window scaling, as before it */
#define SCALED_MAX	16		/* connections with RING_SIZE rings at once: a guest holds at most
					 * 16 x 2 MiB + 240 x 128 KiB of ours (62 MiB) */
#define RCV_SHIFT	5		/* our window scale: 65535 << 5 covers the whole ring */
#define RTO_INIT	1000
#define RTO_MIN		200
#define RTO_MAX		60000
#define SYN_RETRIES	6
#define DATA_RETRIES	12
#define CONNECT_TIMEOUT	75000		/* ms a host connect() may take before the guest gets RST */
#define ACCEPT_BATCH	16

#define FIN 0x01
#define SYN 0x02
#define RST 0x04
#define PSH 0x08
#define ACK 0x10

#define SEQ_LT(a, b)	((int32_t)((a) - (b)) < 0)
#define SEQ_LEQ(a, b)	((int32_t)((a) - (b)) <= 0)
#define SEQ_GT(a, b)	SEQ_LT(b, a)
#define SEQ_GEQ(a, b)	SEQ_LEQ(b, a)

enum { CONNECTING, SYN_SENT, SYN_RCVD, ESTABLISHED };

struct ring {
	uint8_t *buf;		/* size bytes, allocated on first use */
	uint32_t head, len;
	uint32_t size;		/* power of two: RING_SIZE or UNSCALED_RING */
};

struct tcp_conn {
	struct nu_watch w;
	int slot, fd;
	uint8_t state;
	uint32_t events;		/* what epoll watches fd for */
	uint16_t gport;			/* the guest's port */
	uint32_t rip;			/* the far end as the guest sees it */
	uint16_t rport;

	/* Towards the guest; tx holds host bytes from snd_una on. */
	uint32_t iss, snd_una, snd_nxt, snd_max;
	uint32_t snd_wnd, snd_wl1, snd_wl2;
	uint16_t mss;
	uint8_t snd_shift, rcv_shift;	/* window scales, both 0 unless negotiated */
	bool ws_offered;		/* the guest's SYN carried a window scale */
	bool scaled;			/* holds one of SCALED_MAX: offers scaling, big rings */
	bool flush_due;			/* rx holds bytes queued since the last flush */
	bool host_full;			/* the host socket said EAGAIN: rx waits for EPOLLOUT */
	struct ring tx;
	bool host_eof;			/* host sent FIN: ours follows the data */
	bool fin_acked;

	/* From the guest; rx holds bytes the host socket has not taken yet. */
	uint32_t rcv_nxt, adv_wnd;
	struct ring rx;
	bool guest_fin;			/* counted in rcv_nxt */
	bool host_shut;			/* passed on with shutdown(SHUT_WR) */

	uint64_t rtx_at, expire_at;	/* 0: not armed */
	uint32_t rto, base_rto;		/* current (backed off) and estimated */
	int retries, dupacks;
	bool in_recovery;
	uint32_t recover;		/* snd_max when the loss was noticed */
	uint32_t resent_end;		/* end of the last single-segment resend */
	bool rtt_on, have_srtt;
	uint32_t rtt_seq;
	uint64_t rtt_start;
	int32_t srtt8, rttvar4;		/* smoothed RTT x8 and variance x4, ms */
};

static uint32_t ring_room(const struct ring *r)
{
	return r->size - r->len;
}

static void ring_alloc(struct ring *r)
{
	if (!r->buf)
		r->buf = xcalloc(1, r->size);
}

/* n bytes from off as up to two pieces in place (the second after the wrap): their count. */
static int ring_spans(const struct ring *r, uint32_t off, uint32_t n, struct iovec *iov)
{
	uint32_t pos = (r->head + off) & (r->size - 1), first = MIN(n, r->size - pos);
	iov[0] = (struct iovec){ r->buf + pos, first };
	iov[1] = (struct iovec){ r->buf, n - first };
	return n - first ? 2 : 1;
}

static void ring_consume(struct ring *r, uint32_t n)
{
	r->head = (r->head + n) & (r->size - 1);
	r->len -= n;
	if (!r->len)
		r->head = 0;
}

static void ring_append(struct ring *r, const uint8_t *src, uint32_t n)
{
	ring_alloc(r);
	uint32_t tail = (r->head + r->len) & (r->size - 1), first = MIN(n, r->size - tail);
	memcpy(r->buf + tail, src, first);
	memcpy(r->buf, src + first, n - first);
	r->len += n;
}

/* Free space at the tail as up to two spans, at most max bytes. */
static int ring_space(struct ring *r, struct iovec *iov, uint32_t max)
{
	ring_alloc(r);
	uint32_t tail = (r->head + r->len) & (r->size - 1), first = MIN(max, r->size - tail);
	iov[0] = (struct iovec){ r->buf + tail, first };
	iov[1] = (struct iovec){ r->buf, max - first };
	return max > first ? 2 : 1;
}

static uint32_t rcv_wnd(const struct tcp_conn *c)
{
	/* What the window field can say: a multiple of the scale. */
	return MIN(ring_room(&c->rx), MAX_WND << c->rcv_shift) >> c->rcv_shift << c->rcv_shift;
}

static void emit_ws(struct net_user *nu, uint32_t rip, uint16_t rport, uint16_t gport, uint32_t seq,
		    uint32_t ack, uint8_t flags, uint16_t wnd, int ws, const struct ring *data, uint32_t off, uint32_t n,
		    uint16_t gso);

/* A segment from rip:rport to the guest's gport; data comes from the tx ring at off. */
static void emit_raw(struct net_user *nu, uint32_t rip, uint16_t rport, uint16_t gport, uint32_t seq,
		     uint32_t ack, uint8_t flags, uint16_t wnd, const struct ring *data, uint32_t off, uint32_t n)
{
	emit_ws(nu, rip, rport, gport, seq, ack, flags, wnd, -1, data, off, n, 0);
}

/* The same; a SYN also offers window scale ws when ws >= 0; n > gso > 0: a GSO frame of gso-byte segments. */
static void emit_ws(struct net_user *nu, uint32_t rip, uint16_t rport, uint16_t gport, uint32_t seq,
		    uint32_t ack, uint8_t flags, uint16_t wnd, int ws, const struct ring *data, uint32_t off, uint32_t n,
		    uint16_t gso)
{
	uint8_t *t = nu_l4(nu);
	if (!(flags & SYN))
		ws = -1;
	size_t hlen = flags & SYN ? TCP_HLEN + (ws >= 0 ? 8 : 4) : TCP_HLEN;
	wbe16(t, rport);
	wbe16(t + 2, gport);
	wbe32(t + 4, seq);
	wbe32(t + 8, flags & ACK ? ack : 0);
	t[12] = hlen / 4 << 4;
	t[13] = flags;
	wbe16(t + 14, wnd);
	wbe16(t + 16, 0);
	wbe16(t + 18, 0);
	if (flags & SYN) {		/* MSS: what fits our MTU */
		t[20] = 2;
		t[21] = 4;
		wbe16(t + 22, NU_TCP_MSS);
		if (ws >= 0) {		/* NOP, window scale */
			t[24] = 1;
			t[25] = 3;
			t[26] = 3;
			t[27] = ws;
		}
	}
	/* The payload goes from the ring to the guest's buffers with one copy, made by to_guest(). */
	struct iovec pay[2] = { { 0 } };
	int np = n ? ring_spans(data, off, n, pay) : 0;
	if (flags & RST)
		nu->st.tcp_rst_sent++;
	nu_send_tcp(nu, rip, NU_GUEST, hlen, pay, np, gso);
}

static void emit(struct net_user *nu, struct tcp_conn *c, uint32_t seq, uint8_t flags, uint32_t off, uint32_t n)
{
	c->adv_wnd = rcv_wnd(c);
	/* A SYN's window is never scaled; it offers our scale when the guest may take it. */
	bool syn = flags & SYN;
	int ws = syn && c->scaled ? RCV_SHIFT : -1;
	uint16_t field = syn ? MIN(c->adv_wnd, MAX_WND) : c->adv_wnd >> c->rcv_shift;
	if (syn)
		c->adv_wnd = field;
	emit_ws(nu, c->rip, c->rport, c->gport, seq, c->rcv_nxt, flags, field, ws, &c->tx, off, n,
		n > c->mss ? c->mss : 0);
}

/* RFC 793's answer to a segment no connection wants. */
static void rst_reply(struct net_user *nu, uint32_t dst, const uint8_t *seg, size_t dlen)
{
	uint8_t flags = seg[13];
	if (flags & RST)
		return;
	uint16_t sport = be16(seg), dport = be16(seg + 2);
	if (flags & ACK)
		emit_raw(nu, dst, dport, sport, be32(seg + 8), 0, RST, 0, NULL, 0, 0);
	else
		emit_raw(nu, dst, dport, sport, 0, be32(seg + 4) + dlen + !!(flags & SYN) + !!(flags & FIN),
			 RST | ACK, 0, NULL, 0, 0);
}

static struct tcp_conn *find(struct net_user *nu, uint16_t gport, uint32_t rip, uint16_t rport)
{
	struct tcp_conn *c = nu->tcp_last;
	if (c && c->gport == gport && c->rip == rip && c->rport == rport)
		return c;
	for (int i = 0; i < NET_USER_MAX_TCP; i++) {
		c = nu->tcp[i];
		if (c && c->gport == gport && c->rip == rip && c->rport == rport)
			return nu->tcp_last = c;
	}
	return NULL;
}

/*
 * Whether c scales its windows both ways and gets RING_SIZE rings; decided
 * before our SYN or SYN-ACK (which offers scaling only then), taken back if
 * the guest's answer does not scale. Without it nothing scales (RFC 7323).
 */
static void set_scaled(struct net_user *nu, struct tcp_conn *c, bool on)
{
	if (on != c->scaled)
		nu->tcp_scaled += on ? 1 : -1;
	c->scaled = on;
	if (!on)
		c->snd_shift = 0;
	c->rcv_shift = on ? RCV_SHIFT : 0;
	c->rx.size = c->tx.size = on ? RING_SIZE : UNSCALED_RING;
}

static struct tcp_conn *new_conn(struct net_user *nu, int fd)
{
	int slot = 0;
	while (nu->tcp[slot])
		slot++;
	struct tcp_conn *c = xcalloc(1, sizeof(*c));
	c->w.kind = W_TCP;
	c->slot = slot;
	c->fd = fd;
	c->rto = c->base_rto = RTO_INIT;
	c->mss = 536;		/* RFC 1122's default when the peer names none */
	c->iss = nu_random(nu);
	c->snd_una = c->snd_nxt = c->snd_max = c->iss;
	c->rx.size = c->tx.size = UNSCALED_RING;
	nu->tcp[slot] = c;
	nu->nr_tcp++;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));	/* the guest already batches */
	return c;
}

/* Forget c; rst_guest tells the guest, rst_host makes close() send the host peer a RST. */
static void drop_conn(struct net_user *nu, struct tcp_conn *c, bool rst_guest, bool rst_host)
{
	if (c->w.dead)
		return;
	if (rst_guest)
		emit(nu, c, c->snd_nxt, RST | ACK, 0, 0);
	if (rst_host) {
		struct linger l = { 1, 0 };
		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	}
	if (c->flush_due)
		nu->tcp_flush_due--;
	if (c->scaled)
		nu->tcp_scaled--;
	close(c->fd);
	free(c->tx.buf);
	free(c->rx.buf);
	c->tx.buf = c->rx.buf = NULL;
	nu->tcp[c->slot] = NULL;
	nu->nr_tcp--;
	if (nu->tcp_last == c)
		nu->tcp_last = NULL;
	nu_kill(nu, &c->w);
}

/* How much more the host may give us: the guest's window beyond what is queued. */
static uint32_t read_room(const struct tcp_conn *c)
{
	uint32_t wnd = c->snd_wnd > c->tx.len ? c->snd_wnd - c->tx.len : !c->tx.len;
	return MIN(ring_room(&c->tx), wnd);
}

static void update_events(struct net_user *nu, struct tcp_conn *c)
{
	if (c->w.dead)
		return;
	uint32_t ev = 0;
	if (c->state == CONNECTING)
		ev = EPOLLOUT;
	else if (c->state == ESTABLISHED)
		ev = (!c->host_eof && read_room(c) ? EPOLLIN : 0) | (c->rx.len && !c->flush_due ? EPOLLOUT : 0);
	if (nu_watch_set(nu, c->fd, &c->w, c->events, ev) < 0)
		drop_conn(nu, c, true, true);
	else
		c->events = ev;
}

static void arm_rtx(struct net_user *nu, struct tcp_conn *c, bool restart)
{
	bool outstanding = c->snd_nxt != c->snd_una || (c->tx.len && !c->snd_wnd);
	if (!outstanding)
		c->rtx_at = 0;
	else if (restart || !c->rtx_at)
		c->rtx_at = nu->now + c->rto;
}

#define OUT_ACK		1	/* acknowledge even if there is nothing to send */
#define OUT_PROBE	2	/* zero window: send one byte anyway */

static void output(struct net_user *nu, struct tcp_conn *c, int how)
{
	if (c->w.dead || c->state != ESTABLISHED)
		return;
	bool sent = false;
	uint32_t wnd = c->snd_wnd ? c->snd_wnd : (how & OUT_PROBE) != 0;
	uint32_t off = c->snd_nxt - c->snd_una;
	/* A guest that takes GSO gets as many whole segments as one IPv4 packet holds, in one frame. */
	uint32_t seg = nu->guest_tso ? (NET_USER_GSO_MAX - IP_HLEN - TCP_HLEN) / c->mss * c->mss : c->mss;
	while (off < c->tx.len && off < wnd) {
		uint32_t n = MIN(MIN(seg, c->tx.len - off), wnd - off);
		if (!c->rtt_on && SEQ_GEQ(c->snd_nxt, c->snd_max)) {
			c->rtt_on = true;
			c->rtt_seq = c->snd_nxt + n;
			c->rtt_start = nu->now;
		}
		emit(nu, c, c->snd_nxt, ACK | (off + n == c->tx.len ? PSH : 0), off, n);
		c->snd_nxt += n;
		off += n;
		sent = true;
	}
	if (c->host_eof && !c->fin_acked && off == c->tx.len) {
		emit(nu, c, c->snd_nxt, FIN | ACK, 0, 0);
		c->snd_nxt++;
		sent = true;
	}
	if (SEQ_GT(c->snd_nxt, c->snd_max))
		c->snd_max = c->snd_nxt;
	if (!sent && (how & OUT_ACK))
		emit(nu, c, c->snd_nxt, ACK, 0, 0);
	arm_rtx(nu, c, false);
}

/* One segment at snd_una again, without moving snd_nxt. */
static void resend_first(struct net_user *nu, struct tcp_conn *c)
{
	uint32_t n = MIN((uint32_t)c->mss, c->tx.len);
	nu->st.tcp_retransmits++;
	c->rtt_on = false;	/* Karn: no RTT sample from a retransmitted segment */
	c->resent_end = c->snd_una + n;
	if (n)
		emit(nu, c, c->snd_una, ACK | PSH, 0, n);
	else if (c->host_eof && SEQ_GT(c->snd_nxt, c->snd_una))
		emit(nu, c, c->snd_una, FIN | ACK, 0, 0);
}

static void maybe_done(struct net_user *nu, struct tcp_conn *c)
{
	if (!c->w.dead && c->state == ESTABLISHED && c->guest_fin && c->host_shut && c->fin_acked)
		drop_conn(nu, c, false, false);
}

/*
 * Push queued guest bytes into the host socket; pass the guest's FIN on once
 * they are all in. A socket that said EAGAIN is not tried again before it
 * polls writable (nu_tcp_event()): every batch of the guest's frames would
 * otherwise cost a failed sendmsg while a slow reader holds it full.
 */
static void flush_rx(struct net_user *nu, struct tcp_conn *c)
{
	if (c->flush_due) {
		c->flush_due = false;
		nu->tcp_flush_due--;
	}
	while (c->rx.len && !c->host_full) {
		uint32_t first = MIN(c->rx.len, c->rx.size - c->rx.head);
		struct iovec v[2] = { { c->rx.buf + c->rx.head, first }, { c->rx.buf, c->rx.len - first } };
		struct msghdr mh = { .msg_iov = v, .msg_iovlen = v[1].iov_len ? 2 : 1 };
		ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				c->host_full = true;
				nu->st.tcp_host_full++;
				break;
			}
			drop_conn(nu, c, true, true);
			return;
		}
		ring_consume(&c->rx, w);
	}
	if (!c->rx.len && c->guest_fin && !c->host_shut) {
		shutdown(c->fd, SHUT_WR);
		c->host_shut = true;
	}
}

/*
 * Bytes the guest sent, in order and within our window: queued, and written
 * with the rest of the batch (nu_tcp_flush()), or now when the ring is full.
 */
static void to_host(struct net_user *nu, struct tcp_conn *c, const uint8_t *data, uint32_t n)
{
	ring_append(&c->rx, data, n);
	if (c->host_full)
		return;		/* written when the socket polls writable */
	if (!ring_room(&c->rx)) {
		flush_rx(nu, c);
	} else if (!c->flush_due) {
		c->flush_due = true;
		nu->tcp_flush_due++;
	}
}

/* The end of a batch of the guest's frames: write what they queued for the host. */
void nu_tcp_flush(struct net_user *nu)
{
	for (int i = 0; i < NET_USER_MAX_TCP && nu->tcp_flush_due; i++) {
		struct tcp_conn *c = nu->tcp[i];
		if (!c || !c->flush_due || c->w.dead)
			continue;
		uint32_t before = c->adv_wnd;
		flush_rx(nu, c);
		if (c->w.dead)
			continue;
		/* The room is back: say so once for the batch, when it is worth a segment or two. */
		if (!c->guest_fin && rcv_wnd(c) >= before + 2 * NU_TCP_MSS)
			emit(nu, c, c->snd_nxt, ACK, 0, 0);
		update_events(nu, c);
	}
}

static void read_host(struct net_user *nu, struct tcp_conn *c)
{
	while (!c->host_eof && !c->w.dead) {
		uint32_t room = read_room(c);
		if (!room)
			break;
		struct iovec iov[2];
		int cnt = ring_space(&c->tx, iov, room);
		ssize_t n = readv(c->fd, iov, cnt);
		if (n > 0) {
			c->tx.len += n;
			if ((uint32_t)n < room)
				break;	/* the socket is drained */
		} else if (n == 0) {
			c->host_eof = true;
		} else if (errno == EINTR) {
			continue;
		} else {
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				drop_conn(nu, c, true, true);
			break;
		}
	}
	output(nu, c, 0);
}

static void rtt_sample(struct tcp_conn *c, int32_t m)
{
	if (!c->have_srtt) {
		c->srtt8 = m << 3;
		c->rttvar4 = m << 1;
		c->have_srtt = true;
	} else {
		int32_t delta = m - (c->srtt8 >> 3);
		c->srtt8 += delta;
		if (delta < 0)
			delta = -delta;
		c->rttvar4 += delta - (c->rttvar4 >> 2);
	}
	int32_t rto = (c->srtt8 >> 3) + MAX(c->rttvar4, 1);
	c->base_rto = MIN(MAX(rto, RTO_MIN), RTO_MAX);
}

/* The guest's acknowledgement and window; false if the segment must go no further. */
static bool ack_input(struct net_user *nu, struct tcp_conn *c, uint32_t seq, uint32_t ack, uint32_t wnd, uint32_t dlen)
{
	if (SEQ_GT(ack, c->snd_max)) {	/* acknowledges what we never sent */
		emit(nu, c, c->snd_nxt, ACK, 0, 0);
		return false;
	}
	if (SEQ_GT(ack, c->snd_una)) {
		uint32_t acked = ack - c->snd_una, data = MIN(acked, c->tx.len);
		ring_consume(&c->tx, data);
		if (acked > data)
			c->fin_acked = true;
		c->snd_una = ack;
		if (SEQ_LT(c->snd_nxt, ack))
			c->snd_nxt = ack;
		if (c->rtt_on && SEQ_GEQ(ack, c->rtt_seq)) {
			c->rtt_on = false;
			rtt_sample(c, (int32_t)MIN(nu->now - c->rtt_start, (uint64_t)RTO_MAX));
		}
		c->retries = 0;
		c->dupacks = 0;
		c->rto = c->base_rto;	/* progress: undo the backoff */
		if (c->in_recovery) {
			if (SEQ_GEQ(ack, c->recover))
				c->in_recovery = false;
			else if (ack == c->resent_end)
				c->snd_nxt = ack;	/* it kept nothing past the hole: go back N */
			else
				resend_first(nu, c);	/* partial ack: the next hole */
		}
		arm_rtx(nu, c, true);
	} else if (ack == c->snd_una && !dlen && wnd && wnd == c->snd_wnd && c->snd_nxt != c->snd_una) {
		/* Every third duplicate: the hole is still there (or our resend went missing too). */
		if (++c->dupacks % 3 == 0) {
			if (!c->in_recovery)
				c->recover = c->snd_max;
			c->in_recovery = true;
			resend_first(nu, c);
		}
	}
	/* RFC 793's rule: only a newer segment may change the window. */
	if (SEQ_LT(c->snd_wl1, seq) || (c->snd_wl1 == seq && SEQ_LEQ(c->snd_wl2, ack))) {
		if (!c->snd_wnd && wnd) {	/* reopened: resend the probe byte with the rest, now */
			c->snd_nxt = c->snd_una;
			c->rto = c->base_rto;
			c->rtx_at = 0;
		}
		c->snd_wnd = wnd;
		c->snd_wl1 = seq;
		c->snd_wl2 = ack;
	}
	if (!c->snd_wnd)
		c->retries = 0;	/* a live guest with a shut window: keep probing */
	return true;
}

static void established_input(struct net_user *nu, struct tcp_conn *c, const uint8_t *seg,
			      const uint8_t *data, uint32_t dlen)
{
	uint8_t flags = seg[13];
	uint32_t seq = be32(seg + 4), ack = be32(seg + 8), wnd = (uint32_t)be16(seg + 14) << c->snd_shift;
	uint32_t rwnd = rcv_wnd(c);
	if (flags & RST) {
		/* RFC 5961: only a RST inside our window; anything else could be blind. */
		if (SEQ_GEQ(seq, c->rcv_nxt) && SEQ_LT(seq, c->rcv_nxt + MAX(rwnd, 1u)))
			drop_conn(nu, c, false, true);
		return;
	}
	if (flags & SYN) {		/* challenge ACK (RFC 5961); a real new SYN meets our RST later */
		emit(nu, c, c->snd_nxt, ACK, 0, 0);
		return;
	}
	if (!(flags & ACK) || !ack_input(nu, c, seq, ack, wnd, dlen))
		return;
	bool fin = flags & FIN;
	/* Data, a FIN or an old segment (a keepalive probe among them) all want an ACK. */
	bool need_ack = dlen || fin || SEQ_LT(seq, c->rcv_nxt);
	if (dlen || fin) {
		if (SEQ_LT(seq, c->rcv_nxt)) {	/* trim what we already have */
			uint32_t skip = c->rcv_nxt - seq;
			if (skip >= dlen + fin) {
				dlen = 0;
				fin = false;
			} else {
				data += skip;
				dlen -= skip;
				seq = c->rcv_nxt;
			}
		}
		if ((dlen || fin) && seq == c->rcv_nxt && !c->guest_fin) {
			/*
			 * All the ring can hold, not just the rounded window: a scaled
			 * window's right edge can step back by up to a unit as the ring
			 * fills, and bytes the guest sent within the edge we offered
			 * must not be dropped for it (RFC 7323, 2.4).
			 */
			uint32_t take = MIN(dlen, MAX(rwnd, ring_room(&c->rx)));
			if (take) {
				to_host(nu, c, data, take);
				if (c->w.dead)
					return;
				c->rcv_nxt += take;
			}
			if (fin && take == dlen) {
				c->guest_fin = true;
				c->rcv_nxt++;
				flush_rx(nu, c);
				if (c->w.dead)
					return;
			}
		}
	}
	output(nu, c, need_ack ? OUT_ACK : 0);
	maybe_done(nu, c);
}

/* The options of a SYN: MSS, and whether (and how far) the guest scales its window. */
static void parse_mss(struct tcp_conn *c, const uint8_t *seg, size_t hlen)
{
	c->ws_offered = false;
	for (size_t i = TCP_HLEN; i < hlen;) {
		uint8_t kind = seg[i];
		if (kind == 0)
			break;
		if (kind == 1) {
			i++;
			continue;
		}
		if (i + 1 >= hlen || seg[i + 1] < 2 || i + seg[i + 1] > hlen)
			break;
		if (kind == 2 && seg[i + 1] == 4)
			c->mss = MIN(MAX(be16(seg + i + 2), 64), NU_TCP_MSS);
		if (kind == 3 && seg[i + 1] == 3) {
			c->ws_offered = true;
			c->snd_shift = MIN(seg[i + 2], 14);	/* RFC 7323: larger is taken as 14 */
		}
		i += seg[i + 1];
	}
}

static void become_established(struct tcp_conn *c, uint32_t seq, uint32_t ack, uint32_t wnd)
{
	c->state = ESTABLISHED;
	c->snd_una = c->snd_nxt = c->snd_max = ack;
	c->snd_wnd = wnd;
	c->snd_wl1 = seq;
	c->snd_wl2 = ack;
	c->rtx_at = 0;
	c->expire_at = 0;
	c->retries = 0;
	c->rto = c->base_rto;
}

static void send_syn(struct net_user *nu, struct tcp_conn *c)
{
	emit(nu, c, c->iss, c->state == SYN_SENT ? SYN : SYN | ACK, 0, 0);
	c->snd_nxt = c->snd_max = c->iss + 1;
	if (!c->rtx_at)
		c->rtx_at = nu->now + c->rto;
}

/* The host connect() finished (or failed): answer the guest's SYN. */
static void connected(struct net_user *nu, struct tcp_conn *c)
{
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err) {
		drop_conn(nu, c, true, false);
		return;
	}
	c->state = SYN_RCVD;
	c->expire_at = 0;
	send_syn(nu, c);
}

static void new_from_guest(struct net_user *nu, uint32_t dst, const uint8_t *seg, size_t hlen)
{
	struct sockaddr_in sa;
	uint16_t sport = be16(seg), dport = be16(seg + 2);
	if (nu->nr_tcp == NET_USER_MAX_TCP || !sport || !nu_map_dst(nu, dst, dport, &sa)) {
		rst_reply(nu, dst, seg, 0);
		return;
	}
	int fd = nu_nonblock_socket(SOCK_STREAM, 0);
	if (fd < 0) {
		rst_reply(nu, dst, seg, 0);
		return;
	}
	int r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	int err = r < 0 && errno != EINPROGRESS ? errno : 0, e2 = 0;
	socklen_t len = sizeof(e2);
	/* Loopback refuses at once: answer now and keep no state for closed ports. */
	if (!err && r < 0 && !getsockopt(fd, SOL_SOCKET, SO_ERROR, &e2, &len) && e2)
		err = e2;
	/* Loopback can connect a socket to itself when the port is its own ephemeral one. */
	struct sockaddr_in me;
	socklen_t mlen = sizeof(me);
	if (!err && sa.sin_addr.s_addr == htonl(INADDR_LOOPBACK) &&
	    !getsockname(fd, (struct sockaddr *)&me, &mlen) && me.sin_port == sa.sin_port)
		err = ECONNREFUSED;
	if (err) {
		close(fd);
		rst_reply(nu, dst, seg, 0);
		return;
	}
	struct tcp_conn *c = new_conn(nu, fd);
	c->gport = sport;
	c->rip = dst;
	c->rport = dport;
	c->rcv_nxt = be32(seg + 4) + 1;
	c->snd_wnd = be16(seg + 14);
	parse_mss(c, seg, hlen);
	set_scaled(nu, c, c->ws_offered && nu->tcp_scaled < SCALED_MAX);
	c->state = CONNECTING;
	c->expire_at = nu->now + CONNECT_TIMEOUT;
	nu->tcp_last = c;
	update_events(nu, c);
}

void nu_tcp_input(struct net_user *nu, uint32_t dst, const uint8_t *seg, size_t len)
{
	size_t hlen = (seg[12] >> 4) * 4;
	if (hlen < TCP_HLEN || hlen > len)
		return;
	const uint8_t *data = seg + hlen;
	uint32_t dlen = len - hlen;
	uint8_t flags = seg[13];
	uint32_t seq = be32(seg + 4), ack = be32(seg + 8);
	struct tcp_conn *c = find(nu, be16(seg), dst, be16(seg + 2));
	if (!c) {
		if ((flags & (SYN | ACK | RST | FIN)) == SYN)
			new_from_guest(nu, dst, seg, hlen);
		else
			rst_reply(nu, dst, seg, dlen);
		return;
	}
	switch (c->state) {
	case CONNECTING:
		/* Nothing to say until the host answers; a repeated SYN just waits too. */
		if ((flags & RST) && seq == c->rcv_nxt)
			drop_conn(nu, c, false, true);
		return;
	case SYN_SENT:
		if ((flags & ACK) && ack != c->iss + 1) {
			rst_reply(nu, dst, seg, dlen);
			return;
		}
		if (flags & RST) {
			if (flags & ACK)	/* the guest refused: so does the forwarded port */
				drop_conn(nu, c, false, true);
			return;
		}
		if ((flags & (SYN | ACK)) != (SYN | ACK))
			return;
		c->rcv_nxt = seq + 1;
		parse_mss(c, seg, hlen);
		/* Scaling both ways only if the guest answered our offer with its own. */
		set_scaled(nu, c, c->scaled && c->ws_offered);	/* only if we offered it too */
		become_established(c, seq, ack, be16(seg + 14));	/* a SYN's window: unscaled */
		emit(nu, c, c->snd_nxt, ACK, 0, 0);
		read_host(nu, c);
		break;
	case SYN_RCVD:
		if (flags & RST) {
			if (seq == c->rcv_nxt)
				drop_conn(nu, c, false, true);
			return;
		}
		if (flags & SYN) {
			if (!(flags & ACK) && seq + 1 == c->rcv_nxt)
				emit(nu, c, c->iss, SYN | ACK, 0, 0);	/* our SYN-ACK was lost */
			return;
		}
		if (!(flags & ACK))
			return;
		if (ack != c->iss + 1) {
			rst_reply(nu, dst, seg, dlen);
			return;
		}
		become_established(c, seq, ack, (uint32_t)be16(seg + 14) << c->snd_shift);
		established_input(nu, c, seg, data, dlen);
		if (!c->w.dead)
			read_host(nu, c);
		break;
	case ESTABLISHED:
		established_input(nu, c, seg, data, dlen);
		break;
	}
	update_events(nu, c);
}

void nu_tcp_event(struct net_user *nu, struct tcp_conn *c, uint32_t events)
{
	if (c->state == CONNECTING) {
		connected(nu, c);
	} else if (c->state == ESTABLISHED) {
		uint32_t before = rcv_wnd(c);
		if (c->rx.len && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
			c->host_full = false;
			flush_rx(nu, c);
			/* Tell the guest about the room once it is worth a segment or two. */
			if (!c->w.dead && !c->guest_fin && rcv_wnd(c) >= c->adv_wnd + 2 * NU_TCP_MSS && rcv_wnd(c) > before)
				emit(nu, c, c->snd_nxt, ACK, 0, 0);
		}
		if (!c->w.dead && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && (c->events & EPOLLIN))
			read_host(nu, c);
		if (!c->w.dead)
			maybe_done(nu, c);
	}
	update_events(nu, c);
}

static uint16_t alloc_port(struct net_user *nu, uint16_t gport)
{
	for (int tries = 0; tries < 16384; tries++) {
		uint16_t p = nu->next_port++;
		if (nu->next_port < 49152)
			nu->next_port = 49152;
		if (!find(nu, gport, NU_GW, p))
			return p;
	}
	return 0;
}

void nu_tcp_accept(struct net_user *nu, struct nu_fwd *f)
{
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		int fd = accept4(f->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		uint16_t port = nu->nr_tcp < NET_USER_MAX_TCP ? alloc_port(nu, f->guest_port) : 0;
		if (!port) {
			struct linger l = { 1, 0 };
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
			close(fd);
			continue;
		}
		struct tcp_conn *c = new_conn(nu, fd);
		c->gport = f->guest_port;
		c->rip = NU_GW;
		c->rport = port;
		c->state = SYN_SENT;
		set_scaled(nu, c, nu->tcp_scaled < SCALED_MAX);	/* offered; kept if the guest scales too */
		send_syn(nu, c);
	}
}

static void rtx_timeout(struct net_user *nu, struct tcp_conn *c)
{
	c->rtx_at = 0;
	if (++c->retries > (c->state == ESTABLISHED ? DATA_RETRIES : SYN_RETRIES)) {
		drop_conn(nu, c, true, true);
		return;
	}
	c->rto = MIN(c->rto * 2, (uint32_t)RTO_MAX);
	c->rtt_on = false;
	nu->st.tcp_retransmits++;
	if (c->state != ESTABLISHED) {
		send_syn(nu, c);
		return;
	}
	c->in_recovery = false;
	c->dupacks = 0;
	c->snd_nxt = c->snd_una;	/* go back N */
	output(nu, c, OUT_PROBE);
	arm_rtx(nu, c, true);
}

uint64_t nu_tcp_timer(struct net_user *nu, bool run)
{
	uint64_t next = UINT64_MAX;
	for (int i = 0; i < NET_USER_MAX_TCP; i++) {
		struct tcp_conn *c = nu->tcp[i];
		if (!c)
			continue;
		if (run && c->expire_at && nu->now >= c->expire_at) {
			drop_conn(nu, c, true, true);
			continue;
		}
		if (run && c->rtx_at && nu->now >= c->rtx_at) {
			rtx_timeout(nu, c);
			if (c->w.dead)
				continue;
			update_events(nu, c);
			if (c->w.dead)
				continue;
		}
		if (c->rtx_at)
			next = MIN(next, c->rtx_at);
		if (c->expire_at)
			next = MIN(next, c->expire_at);
	}
	return next;
}

void nu_tcp_free_all(struct net_user *nu)
{
	for (int i = 0; i < NET_USER_MAX_TCP; i++)
		if (nu->tcp[i])
			drop_conn(nu, nu->tcp[i], false, false);
}

unsigned nu_tcp_flows(const struct net_user *nu, struct net_user_flow *out, unsigned max)
{
	unsigned n = 0;
	for (int i = 0; i < NET_USER_MAX_TCP && n < max; i++) {
		const struct tcp_conn *c = nu->tcp[i];
		if (!c || c->w.dead || c->state != ESTABLISHED)
			continue;
		out[n++] = (struct net_user_flow){ .rip = c->rip, .rport = c->rport, .gport = c->gport,
						   .seq = c->snd_nxt, .ack = c->rcv_nxt };
	}
	return n;
}

void nu_tcp_reset_flows(struct net_user *nu, const struct net_user_flow *f, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		emit_raw(nu, f[i].rip, f[i].rport, f[i].gport, f[i].seq, f[i].ack, RST | ACK, 0, NULL, 0, 0);
}
