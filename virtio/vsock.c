/*
 * virtio-vsock (virtio 1.2 section 5.10): stream sockets between the guest
 * and host programs, in user space (no vhost: the guest never reaches the
 * host kernel's vsock). Queues: 0 rx (packets for the guest), 1 tx (packets
 * from it), 2 event (transport reset). Config: le64 guest_cid.
 *
 * The host side is Firecracker's Unix-socket protocol (include/vsock.h;
 * virtio/vsock_uds.c makes the paths). One I/O thread per device owns every
 * connection: kicks reach it through an eventfd, and it polls the listening
 * socket and each connection's socket.
 *
 * Flow control is the spec's credit scheme both ways. The guest is never sent
 * more than its buf_alloc - (tx_cnt - fwd_cnt). Our buf_alloc is what we
 * really hold for a connection: guest bytes its host program has not read
 * yet, at most VSOCK_CONN_BUF (allocated only while there are some); a guest
 * that sends more is reset. Host data goes straight from the socket into the
 * guest's receive buffers, so it needs no buffer of ours.
 *
 * Bounded everything: VSOCK_MAX_CONNS connections (host clients in their
 * handshake included), VSOCK_CONN_BUF bytes each, TX_BATCH guest packets and
 * RX_PER_CONN packets per connection a turn; replies wait as flags on their
 * connection, or (for packets to no connection) in a ring whose filling stops
 * the transmit queue until the guest gives receive buffers.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_vsock.h>
#include "device.h"
#include "devices.h"
#include "json.h"
#include "options.h"
#include "snapshot.h"
#include "util.h"
#include "virtio.h"
#include "vm.h"
#include "vsock.h"

enum { Q_RX, Q_TX, Q_EVENT };
#define F_STREAM 0		/* VIRTIO_VSOCK_F_STREAM (virtio 1.2; not in 6.1's headers): the one type we serve */
#define HDR_LEN 44		/* struct virtio_vsock_hdr, decoded field by field */
_Static_assert(sizeof(struct virtio_vsock_hdr) == HDR_LEN, "virtio_vsock_hdr");
#define MAX_PKT 65536		/* payload of one packet to the guest (Linux sends no larger) */
#define TX_BATCH 128		/* guest packets a turn */
#define RX_PER_CONN 16		/* data packets to the guest per connection a turn */
#define ACCEPT_BATCH 16
#define RST_RING 256		/* replies to packets for no connection */
#define HASH_SIZE 2048
#define LINE_MAX 24		/* "CONNECT 4294967295\n" is 19 */
#define FIRST_HOST_PORT (1u << 30)	/* ports we pick for host-initiated connections */
#define USED_BATCH 64

struct hdr {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port, len;
	uint16_t type, op;
	uint32_t flags, buf_alloc, fwd_cnt;
};

enum conn_state {
	C_LINE,		/* a host client; its CONNECT line is being read */
	C_REQUEST,	/* REQUEST to the guest (queued or sent), waiting for RESPONSE */
	C_OPEN,		/* established */
	C_CLOSING,	/* host side closed; our RST to the guest is queued */
};

/* Replies a connection waits to send (each needs a receive buffer). */
enum { P_RESPONSE = 1, P_REQUEST = 2, P_CREDIT_UPDATE = 4, P_CREDIT_REQUEST = 8, P_SHUTDOWN = 16, P_RST = 32 };

struct conn {
	enum conn_state state;
	int fd, slot;
	uint32_t host_port, guest_port;
	struct conn *hnext;			/* hash chain by (host_port, guest_port) */
	struct conn *pnext, **pprev;		/* on the pending list while pending != 0 */
	uint32_t pending, shut_flags;		/* shut_flags: what P_SHUTDOWN says */
	bool request_sent;
	long long deadline;			/* ms, C_LINE and C_REQUEST */
	char line[LINE_MAX];
	int line_len;
	/* guest -> host */
	uint32_t rx_cnt, fwd_cnt, fwd_told;	/* fwd_told: the last fwd_cnt the guest was sent */
	uint8_t *buf;				/* ring of VSOCK_CONN_BUF: guest bytes not yet written */
	uint32_t head, used;
	uint32_t guest_shut;			/* SHUTDOWN flags the guest sent */
	bool wr_shut;
	/* host -> guest */
	uint32_t tx_cnt, peer_buf_alloc, peer_fwd_cnt;
	bool host_eof, asked_credit;
};

struct vsock {
	struct virtio_dev dev;
	uint8_t config[8];			/* le64 guest_cid */
	uint64_t cid;
	char path[108];
	dev_t path_dev;
	ino_t path_ino;
	int listen_fd, kick_fd;
	pthread_t thread;
	bool running;
	int stop_req, reset_req, transport_reset_req, reset_gen;	/* atomics: other threads set them */
	bool event_pending, rx_starved, tx_left;
	long long listen_paused_until;
	struct conn *conns[VSOCK_MAX_CONNS];
	int nr_conns;
	struct conn *hash[HASH_SIZE];
	struct conn *pend_head;
	struct { uint32_t host_port, guest_port; uint16_t type; } rst[RST_RING];
	unsigned rst_head, rst_len;
	uint32_t next_port;
	/* Chains used this turn, published together (one interrupt). */
	struct used_batch { uint16_t head[USED_BATCH]; uint32_t len[USED_BATCH]; int gen[USED_BATCH], n; } rx_used, tx_used;
	struct pollfd fds[2 + VSOCK_MAX_CONNS];
	struct conn *fd_conn[2 + VSOCK_MAX_CONNS];
	int fd_slot[2 + VSOCK_MAX_CONNS];
	struct vsock_stats st;
};


static bool would_block(int e) { return e == EAGAIN || e == EWOULDBLOCK || e == EINTR; }

/* ---- packets ---- */

static void hdr_decode(const uint8_t *b, struct hdr *h)
{
	h->src_cid = get_le64(b);
	h->dst_cid = get_le64(b + 8);
	h->src_port = get_le32(b + 16);
	h->dst_port = get_le32(b + 20);
	h->len = get_le32(b + 24);
	h->type = get_le16(b + 28);
	h->op = get_le16(b + 30);
	h->flags = get_le32(b + 32);
	h->buf_alloc = get_le32(b + 36);
	h->fwd_cnt = get_le32(b + 40);
}

static void hdr_encode(uint8_t *b, const struct hdr *h)
{
	put_le64(b, h->src_cid);
	put_le64(b + 8, h->dst_cid);
	put_le32(b + 16, h->src_port);
	put_le32(b + 20, h->dst_port);
	put_le32(b + 24, h->len);
	put_le16(b + 28, h->type);
	put_le16(b + 30, h->op);
	put_le32(b + 32, h->flags);
	put_le32(b + 36, h->buf_alloc);
	put_le32(b + 40, h->fwd_cnt);
}

/* A header from us on connection k; it tells the guest our current credit. */
static struct hdr conn_hdr(struct vsock *v, struct conn *k, uint16_t op, uint32_t flags, uint32_t len)
{
	k->fwd_told = k->fwd_cnt;
	return (struct hdr){ .src_cid = VSOCK_HOST_CID, .dst_cid = v->cid, .src_port = k->host_port,
			     .dst_port = k->guest_port, .len = len, .type = VIRTIO_VSOCK_TYPE_STREAM, .op = op, .flags = flags,
			     .buf_alloc = VSOCK_CONN_BUF, .fwd_cnt = k->fwd_cnt };
}

/* Up to len bytes of iov from offset skip, as iovecs in out; returns how many. */
static int iov_slice(const struct iovec *iov, int n, size_t skip, size_t len, struct iovec *out)
{
	int m = 0;
	for (int i = 0; i < n && len; i++) {
		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		size_t k = MIN(iov[i].iov_len - skip, len);
		out[m++] = (struct iovec){ (uint8_t *)iov[i].iov_base + skip, k };
		len -= k;
		skip = 0;
	}
	return m;
}

/* ---- used chains, published in batches ---- */

/*
 * Each chain remembers the device reset generation it was popped in (read
 * before the pop): one popped before the driver reset the device belongs to a
 * ring that no longer exists and is never pushed to the new one.
 */
static int gen_now(struct vsock *v) { return __atomic_load_n(&v->reset_gen, __ATOMIC_ACQUIRE); }

static void push_batch(struct vsock *v, int qi, struct used_batch *b)
{
	uint16_t head[USED_BATCH];
	uint32_t len[USED_BATCH];
	int n = 0, gen = gen_now(v);
	for (int i = 0; i < b->n; i++)
		if (b->gen[i] == gen) {
			head[n] = b->head[i];
			len[n++] = b->len[i];
		}
	if (n)
		virtq_push_n(&v->dev, qi, head, len, n);
	b->n = 0;
}

static void flush_used(struct vsock *v)
{
	push_batch(v, Q_RX, &v->rx_used);
	push_batch(v, Q_TX, &v->tx_used);
}

static void add_used(struct vsock *v, int qi, uint16_t head, uint32_t len, int gen)
{
	struct used_batch *b = qi == Q_RX ? &v->rx_used : &v->tx_used;
	if (b->n == USED_BATCH)
		push_batch(v, qi, b);
	b->head[b->n] = head;
	b->len[b->n] = len;
	b->gen[b->n++] = gen;
}

/* A receive chain with room for a header; false (and wait for a kick) when there is none. */
static bool rx_pop(struct vsock *v, struct virtq_chain *c, int *gen)
{
	if (v->rx_starved)
		return false;
	for (int tries = 0; tries < VIRTQ_MAX_SIZE; tries++) {
		*gen = gen_now(v);
		if (virtq_pop(&v->dev, Q_RX, c) != 1)
			break;
		if (c->in_len > HDR_LEN)
			return true;
		add_used(v, Q_RX, c->head, 0, *gen);	/* no room for a header and data: the driver's mistake */
		v->st.dropped++;
	}
	v->rx_starved = true;
	return false;
}

/* Give back the chain just popped (nothing was written), unless a reset came in between. */
static void rx_unpop(struct vsock *v, int gen)
{
	if (gen == gen_now(v))
		virtq_unpop(&v->dev, Q_RX, 1);
}

/* A packet without payload to the guest; false if there is no buffer for it. */
static bool send_hdr(struct vsock *v, const struct hdr *h)
{
	struct virtq_chain c;
	int gen;
	if (!rx_pop(v, &c, &gen))
		return false;
	uint8_t b[HDR_LEN];
	hdr_encode(b, h);
	buf_to_iov(c.iov + c.nout, c.nin, 0, b, HDR_LEN);
	add_used(v, Q_RX, c.head, HDR_LEN, gen);
	v->st.rx_packets++;
	if (h->op == VIRTIO_VSOCK_OP_RST)
		v->st.rst_sent++;
	return true;
}

/* ---- connections ---- */

static unsigned hash_of(uint32_t host_port, uint32_t guest_port)
{
	return (host_port * 2654435761u ^ guest_port * 40503u) % HASH_SIZE;
}

static struct conn *lookup(struct vsock *v, uint32_t host_port, uint32_t guest_port)
{
	for (struct conn *k = v->hash[hash_of(host_port, guest_port)]; k; k = k->hnext)
		if (k->host_port == host_port && k->guest_port == guest_port && k->state != C_LINE)
			return k;
	return NULL;
}

static void hash_add(struct vsock *v, struct conn *k)
{
	unsigned h = hash_of(k->host_port, k->guest_port);
	k->hnext = v->hash[h];
	v->hash[h] = k;
}

static void hash_del(struct vsock *v, struct conn *k)
{
	for (struct conn **p = &v->hash[hash_of(k->host_port, k->guest_port)]; *p; p = &(*p)->hnext)
		if (*p == k) {
			*p = k->hnext;
			return;
		}
}

static void want(struct vsock *v, struct conn *k, uint32_t what)
{
	k->pending |= what;
	if (!k->pprev) {
		k->pnext = v->pend_head;
		if (v->pend_head)
			v->pend_head->pprev = &k->pnext;
		v->pend_head = k;
		k->pprev = &v->pend_head;
	}
}

static void unpend(struct conn *k)
{
	if (!k->pprev)
		return;
	*k->pprev = k->pnext;
	if (k->pnext)
		k->pnext->pprev = k->pprev;
	k->pnext = NULL;
	k->pprev = NULL;
}

static struct conn *conn_new(struct vsock *v, int fd, enum conn_state state)
{
	int slot = 0;
	while (v->conns[slot])	/* the caller checked there is room */
		slot++;
	struct conn *k = xcalloc(1, sizeof(*k));
	k->state = state;
	k->fd = fd;
	k->slot = slot;
	v->conns[slot] = k;
	v->nr_conns++;
	return k;
}

static void conn_free(struct vsock *v, struct conn *k)
{
	unpend(k);
	if (k->state != C_LINE)
		hash_del(v, k);
	if (k->fd >= 0)
		close(k->fd);
	v->st.buffered -= k->used;
	free(k->buf);
	v->conns[k->slot] = NULL;
	v->nr_conns--;
	free(k);
}

/* Close the host side and tell the guest (RST); freed once the RST went out. */
static void conn_reset(struct vsock *v, struct conn *k)
{
	if (k->state == C_CLOSING)
		return;
	if (k->state == C_LINE || (k->state == C_REQUEST && !k->request_sent)) {
		conn_free(v, k);	/* the guest never heard of it */
		return;
	}
	if (k->fd >= 0)
		close(k->fd);
	k->fd = -1;
	v->st.buffered -= k->used;
	free(k->buf);
	k->buf = NULL;
	k->used = 0;
	k->state = C_CLOSING;
	k->pending = 0;
	want(v, k, P_RST);
}

/* An RST for a packet that belongs to no connection (never in answer to an RST). */
static void reply_rst(struct vsock *v, const struct hdr *h)
{
	if (h->op == VIRTIO_VSOCK_OP_RST)
		return;
	if (v->rst_len == RST_RING) {	/* drain_tx() keeps room: only a stray path gets here */
		v->st.dropped++;
		return;
	}
	unsigned i = (v->rst_head + v->rst_len++) % RST_RING;
	v->rst[i].host_port = h->dst_port;
	v->rst[i].guest_port = h->src_port;
	v->rst[i].type = h->type;
}

static uint32_t peer_credit(const struct conn *k)
{
	uint32_t in_flight = k->tx_cnt - k->peer_fwd_cnt;	/* wraps as the counters do */
	return in_flight > k->peer_buf_alloc ? 0 : k->peer_buf_alloc - in_flight;
}

/* Tell the guest about room it does not know of, when its own view runs low. */
static void maybe_credit_update(struct vsock *v, struct conn *k)
{
	uint32_t unseen = k->fwd_cnt - k->fwd_told;
	int64_t view = (int64_t)VSOCK_CONN_BUF - (uint32_t)(k->rx_cnt - k->fwd_told);
	if (unseen && view < VSOCK_CONN_BUF / 2 && (unseen >= VSOCK_CONN_BUF / 8 || k->fwd_cnt == k->rx_cnt))
		want(v, k, P_CREDIT_UPDATE);
}

/* Half-closes and the end of a connection once both sides are done. */
static void progress(struct vsock *v, struct conn *k)
{
	if (k->state != C_OPEN)
		return;
	bool guest_done = (k->guest_shut & VIRTIO_VSOCK_SHUTDOWN_SEND) && !k->used;
	if (guest_done && !k->wr_shut) {
		shutdown(k->fd, SHUT_WR);	/* the host program reads EOF */
		k->wr_shut = true;
	}
	/* The guest wants nothing more, or both streams ended and it was told: over. */
	if (guest_done && ((k->guest_shut & VIRTIO_VSOCK_SHUTDOWN_RCV) || (k->host_eof && !(k->pending & P_SHUTDOWN))))
		conn_reset(v, k);
}

/* ---- guest -> host ---- */

/* A guest's REQUEST for host port P: connect to PATH_P. */
static void guest_connect(struct vsock *v, const struct hdr *h)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (v->nr_conns >= VSOCK_MAX_CONNS || vsock_port_path(v->path, h->dst_port, path, sizeof(path)) < 0) {
		v->st.refused++;
		reply_rst(v, h);
		return;
	}
	memcpy(sa.sun_path, path, strlen(path));
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		/* No listener, or its backlog is full (EAGAIN): refused either way. */
		if (fd >= 0)
			close(fd);
		v->st.refused++;
		reply_rst(v, h);
		return;
	}
	struct conn *k = conn_new(v, fd, C_OPEN);
	k->host_port = h->dst_port;
	k->guest_port = h->src_port;
	k->peer_buf_alloc = h->buf_alloc;
	k->peer_fwd_cnt = h->fwd_cnt;
	hash_add(v, k);
	want(v, k, P_RESPONSE);
}

/* Append bytes of the chain (from offset off) to the connection's ring. */
static void buffer_rest(struct vsock *v, struct conn *k, const struct virtq_chain *c, size_t off, uint32_t n)
{
	if (!k->buf) {
		k->buf = xcalloc(1, VSOCK_CONN_BUF);
		k->head = 0;
	}
	uint32_t tail = (k->head + k->used) % VSOCK_CONN_BUF;
	uint32_t first = MIN(n, VSOCK_CONN_BUF - tail);
	iov_to_buf(c->iov, c->nout, off, k->buf + tail, first);
	iov_to_buf(c->iov, c->nout, off + first, k->buf, n - first);
	k->used += n;
	v->st.buffered += n;
}

static void guest_data(struct vsock *v, struct conn *k, const struct virtq_chain *c, uint32_t len)
{
	/* rx_cnt - fwd_cnt == used: what we hold; the guest may fill the rest of VSOCK_CONN_BUF. */
	if (len > VSOCK_CONN_BUF - k->used) {
		v->st.credit_violations++;
		conn_reset(v, k);
		return;
	}
	if (!len)
		return;
	size_t sent = 0;
	if (!k->used) {
		struct iovec iov[VIRTQ_MAX_SEGS];
		struct msghdr m = { .msg_iov = iov, .msg_iovlen = iov_slice(c->iov, c->nout, HDR_LEN, len, iov) };
		ssize_t w = sendmsg(k->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w < 0 && !would_block(errno)) {	/* the host program went away */
			conn_reset(v, k);
			return;
		}
		sent = w > 0 ? w : 0;
	}
	if (sent < len)
		buffer_rest(v, k, c, HDR_LEN + sent, len - sent);
	k->rx_cnt += len;
	k->fwd_cnt += sent;
	v->st.tx_bytes += len;
	maybe_credit_update(v, k);
}

/* Write what the connection holds to its host program (it is writable). */
static void flush_buf(struct vsock *v, struct conn *k)
{
	while (k->used) {
		uint32_t first = MIN(k->used, VSOCK_CONN_BUF - k->head);
		struct iovec iov[2] = { { k->buf + k->head, first }, { k->buf, k->used - first } };
		struct msghdr m = { .msg_iov = iov, .msg_iovlen = k->used > first ? 2 : 1 };
		ssize_t w = sendmsg(k->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w < 0 && would_block(errno))
			break;
		if (w <= 0) {
			conn_reset(v, k);
			return;
		}
		k->head = (k->head + w) % VSOCK_CONN_BUF;
		k->used -= w;
		k->fwd_cnt += w;
		v->st.buffered -= w;
	}
	if (!k->used) {	/* hold memory only while a host program is behind */
		free(k->buf);
		k->buf = NULL;
	}
	maybe_credit_update(v, k);
	progress(v, k);
}

/* A host client's CONNECT was answered: the stream starts with "OK <hostport>\n". */
static void established(struct vsock *v, struct conn *k)
{
	char ok[32];
	int n = snprintf(ok, sizeof(ok), "OK %u\n", k->host_port);
	if (send(k->fd, ok, n, MSG_DONTWAIT | MSG_NOSIGNAL) != n) {
		conn_reset(v, k);
		return;
	}
	k->state = C_OPEN;
}

static void handle_packet(struct vsock *v, const struct virtq_chain *c)
{
	uint8_t raw[HDR_LEN];
	struct hdr h;
	v->st.tx_packets++;
	if (c->out_len < HDR_LEN || iov_to_buf(c->iov, c->nout, 0, raw, HDR_LEN) != HDR_LEN) {
		v->st.dropped++;	/* not even a header: nothing to answer */
		return;
	}
	hdr_decode(raw, &h);
	/* Packets claiming another source, or for anyone but the host, go nowhere (as vhost drops them). */
	if (h.src_cid != v->cid || h.dst_cid != VSOCK_HOST_CID) {
		v->st.dropped++;
		return;
	}
	struct conn *k = lookup(v, h.dst_port, h.src_port);
	if (h.type != VIRTIO_VSOCK_TYPE_STREAM) {
		v->st.dropped++;
		reply_rst(v, &h);
		return;
	}
	if (h.len > c->out_len - HDR_LEN) {	/* promises more payload than the chain holds */
		v->st.dropped++;
		if (k)
			conn_reset(v, k);
		else
			reply_rst(v, &h);
		return;
	}
	if (!k) {
		if (h.op == VIRTIO_VSOCK_OP_REQUEST)
			guest_connect(v, &h);
		else
			reply_rst(v, &h);
		return;
	}
	if (k->state == C_CLOSING)	/* our RST is on its way */
		return;
	k->peer_buf_alloc = h.buf_alloc;	/* every packet carries the guest's credit */
	k->peer_fwd_cnt = h.fwd_cnt;
	if (peer_credit(k))
		k->asked_credit = false;
	switch (h.op) {
	case VIRTIO_VSOCK_OP_RESPONSE:
		if (k->state == C_REQUEST && k->request_sent)
			established(v, k);
		else
			conn_reset(v, k);
		break;
	case VIRTIO_VSOCK_OP_RST:
		conn_free(v, k);	/* the host program sees its connection close */
		break;
	case VIRTIO_VSOCK_OP_SHUTDOWN:
		if (k->state != C_OPEN) {
			conn_reset(v, k);
			break;
		}
		k->guest_shut |= h.flags & (VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND);
		progress(v, k);
		break;
	case VIRTIO_VSOCK_OP_RW:
		if (k->state != C_OPEN || (k->guest_shut & VIRTIO_VSOCK_SHUTDOWN_SEND)) {
			v->st.dropped++;
			conn_reset(v, k);
			break;
		}
		guest_data(v, k, c, h.len);
		break;
	case VIRTIO_VSOCK_OP_CREDIT_UPDATE:
		break;
	case VIRTIO_VSOCK_OP_CREDIT_REQUEST:
		want(v, k, P_CREDIT_UPDATE);
		break;
	default:	/* REQUEST for a connection that exists, or no op we know */
		v->st.dropped++;
		conn_reset(v, k);
		break;
	}
}

/* Guest packets, at most TX_BATCH a turn; true if some were left for the next one. */
static bool drain_tx(struct vsock *v)
{
	struct virtq_chain c;
	for (int done = 0; done < TX_BATCH; done++) {
		if (v->rst_len == RST_RING)	/* replies wait for receive buffers: stop taking more */
			return true;
		int gen = gen_now(v);
		if (virtq_pop(&v->dev, Q_TX, &c) != 1)
			return false;
		handle_packet(v, &c);
		add_used(v, Q_TX, c.head, 0, gen);
	}
	return true;
}

/* ---- host -> guest ---- */

/* Send what the connections and the RST ring wait to send; false when out of buffers. */
static bool flush_pending(struct vsock *v)
{
	static const uint32_t order[] = { P_RESPONSE, P_REQUEST, P_CREDIT_UPDATE, P_CREDIT_REQUEST, P_SHUTDOWN, P_RST };
	static const uint16_t ops[] = { VIRTIO_VSOCK_OP_RESPONSE, VIRTIO_VSOCK_OP_REQUEST, VIRTIO_VSOCK_OP_CREDIT_UPDATE, VIRTIO_VSOCK_OP_CREDIT_REQUEST, VIRTIO_VSOCK_OP_SHUTDOWN, VIRTIO_VSOCK_OP_RST };
	while (v->pend_head) {
		struct conn *k = v->pend_head;
		for (size_t i = 0; i < ARRAY_SIZE(order) && k->pending; i++) {
			if (!(k->pending & order[i]))
				continue;
			struct hdr h = conn_hdr(v, k, ops[i], order[i] == P_SHUTDOWN ? k->shut_flags : 0, 0);
			if (!send_hdr(v, &h))
				return false;
			k->pending &= ~order[i];
			if (order[i] == P_REQUEST) {
				k->request_sent = true;
				k->deadline = (long long)mono_ms() + VSOCK_HANDSHAKE_MS;
			}
			if (order[i] == P_RST) {
				conn_free(v, k);
				k = NULL;
				break;
			}
		}
		if (k) {
			unpend(k);
			progress(v, k);	/* a SHUTDOWN that went out may end it */
		}
	}
	while (v->rst_len) {
		unsigned i = v->rst_head;
		struct hdr h = { .src_cid = VSOCK_HOST_CID, .dst_cid = v->cid, .src_port = v->rst[i].host_port,
				 .dst_port = v->rst[i].guest_port, .type = v->rst[i].type, .op = VIRTIO_VSOCK_OP_RST,
				 .buf_alloc = VSOCK_CONN_BUF };
		if (!send_hdr(v, &h))
			return false;
		v->rst_head = (v->rst_head + 1) % RST_RING;
		v->rst_len--;
	}
	return true;
}

static bool wants_read(const struct vsock *v, const struct conn *k)
{
	return k->state == C_OPEN && !k->host_eof && !(k->guest_shut & VIRTIO_VSOCK_SHUTDOWN_RCV) && !(k->pending & P_RESPONSE) &&
	       peer_credit(k) && !v->rx_starved;
}

/* Host bytes straight into the guest's receive buffers, within its credit. */
static void host_to_guest(struct vsock *v, struct conn *k, short revents)
{
	for (int i = 0; i < RX_PER_CONN && wants_read(v, k); i++) {
		struct virtq_chain c;
		int gen;
		if (!rx_pop(v, &c, &gen))
			return;
		uint32_t room = MIN(MIN(c.in_len - HDR_LEN, (uint64_t)MAX_PKT), peer_credit(k));
		struct iovec iov[VIRTQ_MAX_SEGS];
		struct msghdr m = { .msg_iov = iov, .msg_iovlen = iov_slice(c.iov + c.nout, c.nin, HDR_LEN, room, iov) };
		ssize_t r = recvmsg(k->fd, &m, MSG_DONTWAIT);
		if (r <= 0) {
			int e = errno;
			rx_unpop(v, gen);
			if (r == 0) {	/* EOF: the program will send nothing more (and, on POLLHUP, take nothing) */
				k->host_eof = true;
				k->shut_flags = VIRTIO_VSOCK_SHUTDOWN_SEND | (revents & POLLHUP ? VIRTIO_VSOCK_SHUTDOWN_RCV : 0);
				want(v, k, P_SHUTDOWN);
			} else if (!would_block(e)) {
				conn_reset(v, k);
			}
			return;
		}
		struct hdr h = conn_hdr(v, k, VIRTIO_VSOCK_OP_RW, 0, r);
		uint8_t b[HDR_LEN];
		hdr_encode(b, &h);
		buf_to_iov(c.iov + c.nout, c.nin, 0, b, HDR_LEN);
		add_used(v, Q_RX, c.head, HDR_LEN + r, gen);
		v->st.rx_packets++;
		k->tx_cnt += r;
		v->st.rx_bytes += r;
		if (!peer_credit(k) && !k->asked_credit) {	/* the guest's window is full: ask for news once */
			k->asked_credit = true;
			want(v, k, P_CREDIT_REQUEST);
		}
	}
}

/* ---- host clients: CONNECT <port>\n ---- */

static uint32_t pick_host_port(struct vsock *v, uint32_t guest_port)
{
	for (;;) {
		uint32_t p = v->next_port++;
		if (v->next_port < FIRST_HOST_PORT || v->next_port == 0xffffffffu)
			v->next_port = FIRST_HOST_PORT;
		if (!lookup(v, p, guest_port))
			return p;
	}
}

static bool parse_connect(const char *line, uint32_t *port)
{
	if (strncmp(line, "CONNECT ", 8))
		return false;
	const char *p = line + 8;
	uint64_t val = 0;
	int digits = 0;
	for (; *p >= '0' && *p <= '9' && digits < 11; p++, digits++)
		val = val * 10 + (*p - '0');
	if (!digits || digits > 10 || val >= 0xffffffffULL || strcmp(p, "\n"))
		return false;
	*port = val;
	return true;
}

/* Read the line a byte at a time: what follows it is the stream, left in the socket. */
static void client_line(struct vsock *v, struct conn *k)
{
	while (k->line_len < LINE_MAX - 1) {
		ssize_t r = recv(k->fd, k->line + k->line_len, 1, MSG_DONTWAIT);
		if (r < 0 && would_block(errno))
			return;
		if (r <= 0) {
			conn_free(v, k);
			return;
		}
		if (k->line[k->line_len++] == '\n')
			break;
	}
	k->line[k->line_len] = 0;
	uint32_t port;
	if (!strchr(k->line, '\n') || !parse_connect(k->line, &port)) {
		v->st.refused++;
		conn_free(v, k);	/* a bad line: closed, as Firecracker does */
		return;
	}
	k->guest_port = port;
	k->host_port = pick_host_port(v, port);
	k->state = C_REQUEST;
	k->deadline = (long long)mono_ms() + VSOCK_HANDSHAKE_MS;	/* renewed when the REQUEST goes out */
	k->peer_buf_alloc = 0;
	hash_add(v, k);
	want(v, k, P_REQUEST);
}

static void accept_clients(struct vsock *v)
{
	for (int i = 0; i < ACCEPT_BATCH && v->nr_conns < VSOCK_MAX_CONNS; i++) {
		int fd = accept4(v->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (!would_block(errno) && errno != ECONNABORTED)	/* out of fds or memory: back off */
				v->listen_paused_until = (long long)mono_ms() + 100;
			return;
		}
		struct conn *k = conn_new(v, fd, C_LINE);
		k->deadline = (long long)mono_ms() + VSOCK_HANDSHAKE_MS;
	}
}

/* ---- resets ---- */

static void drop_all(struct vsock *v)
{
	for (int i = 0; i < VSOCK_MAX_CONNS; i++)
		if (v->conns[i])
			conn_free(v, v->conns[i]);
	v->rst_len = 0;
}

static void send_event(struct vsock *v)
{
	struct virtq_chain c;
	while (virtq_pop(&v->dev, Q_EVENT, &c) == 1) {
		uint8_t ev[4];
		put_le32(ev, VIRTIO_VSOCK_EVENT_TRANSPORT_RESET);
		if (c.in_len < sizeof(ev)) {	/* too small: given back empty; try the next one */
			virtq_push(&v->dev, Q_EVENT, c.head, 0);
			continue;
		}
		buf_to_iov(c.iov + c.nout, c.nin, 0, ev, sizeof(ev));
		virtq_push(&v->dev, Q_EVENT, c.head, sizeof(ev));
		v->event_pending = false;
		return;
	}
}

/* ---- the loop ---- */

static int build_fds(struct vsock *v, long long now, int *timeout)
{
	int n = 0;
	long long next = -1;
	v->fds[n] = (struct pollfd){ .fd = v->kick_fd, .events = POLLIN };
	v->fd_conn[n++] = NULL;
	if (v->nr_conns < VSOCK_MAX_CONNS && v->listen_fd >= 0) {
		if (now >= v->listen_paused_until) {
			v->fds[n] = (struct pollfd){ .fd = v->listen_fd, .events = POLLIN };
			v->fd_conn[n++] = NULL;
		} else {
			next = v->listen_paused_until;
		}
	}
	for (int i = 0; i < VSOCK_MAX_CONNS; i++) {
		struct conn *k = v->conns[i];
		if (!k)
			continue;
		if (k->state == C_LINE || (k->state == C_REQUEST))
			next = next < 0 || k->deadline < next ? k->deadline : next;
		short ev = 0;
		if (k->state == C_LINE)
			ev = POLLIN;
		else if (k->state == C_OPEN)
			ev = (wants_read(v, k) ? POLLIN : 0) | (k->used ? POLLOUT : 0);
		if (!ev || k->fd < 0)
			continue;
		v->fds[n] = (struct pollfd){ .fd = k->fd, .events = ev };
		v->fd_slot[n] = i;
		v->fd_conn[n++] = k;
	}
	*timeout = next < 0 ? -1 : (int)MIN(MAX(next - now, 0), 60000);
	return n;
}

/*
 * A connection polled this turn may have ended since (an RST sent, a reset):
 * compare pointers first, never reading a freed one. No connection is
 * created while the polled ones are handled, so a match is the same one.
 */
static bool conn_alive(struct vsock *v, int slot, struct conn *k, int fd)
{
	return v->conns[slot] == k && k->fd == fd;
}

void vsock_poll_once(struct vsock *v, int timeout_ms)
{
	int timeout;
	int n = build_fds(v, (long long)mono_ms(), &timeout);
	if (v->tx_left && v->rst_len < RST_RING)
		timeout = 0;
	if (timeout_ms >= 0 && (timeout < 0 || timeout > timeout_ms))
		timeout = timeout_ms;
	flush_used(v);
	if (poll(v->fds, n, timeout) < 0 && errno != EINTR) {
		pr_warn_once("virtio-vsock: poll: %s", strerror(errno));
		return;
	}
	if (v->fds[0].revents & POLLIN) {
		uint64_t val;
		if (read(v->kick_fd, &val, sizeof(val)) < 0 && errno != EAGAIN)
			pr_warn_once("virtio-vsock: kick eventfd: %s", strerror(errno));
		v->rx_starved = false;	/* one eventfd for every queue: look at all of them again */
	}
	if (__atomic_exchange_n(&v->reset_req, 0, __ATOMIC_ACQ_REL)) {	/* the driver reset the device */
		drop_all(v);
		v->event_pending = v->tx_left = false;
	}
	if (__atomic_exchange_n(&v->transport_reset_req, 0, __ATOMIC_ACQ_REL)) {
		drop_all(v);
		v->event_pending = true;
	}
	bool running = __atomic_load_n(&v->dev.status, __ATOMIC_ACQUIRE) & VIRTIO_STATUS_DRIVER_OK;
	if (running && v->event_pending)
		send_event(v);
	if (running)
		flush_pending(v);
	/* Polled connections may have ended since (a reset, an RST sent): conn_alive() says. */
	bool accept_ready = false;
	for (int i = 1; i < n; i++) {
		struct conn *k = v->fd_conn[i];
		short re = v->fds[i].revents;
		if (!re)
			continue;
		if (!k) {
			accept_ready = true;
			continue;
		}
		if (!conn_alive(v, v->fd_slot[i], k, v->fds[i].fd))
			continue;
		if (k->state == C_LINE) {
			client_line(v, k);
			continue;
		}
		if (re & (POLLOUT | POLLERR | POLLHUP) && k->used)
			flush_buf(v, k);
		if (conn_alive(v, v->fd_slot[i], k, v->fds[i].fd) && running && re & (POLLIN | POLLERR | POLLHUP))
			host_to_guest(v, k, re);
	}
	long long now = (long long)mono_ms();
	for (int i = 0; i < VSOCK_MAX_CONNS; i++) {
		struct conn *k = v->conns[i];
		if (k && (k->state == C_LINE || k->state == C_REQUEST) && now >= k->deadline)
			conn_reset(v, k);	/* no line, or no answer from the guest: the client is closed */
	}
	if (running) {
		v->tx_left = drain_tx(v);
		flush_pending(v);
	}
	if (accept_ready)
		accept_clients(v);
	flush_used(v);
}

/* ---- the device ---- */

static void kick(struct vsock *v)
{
	uint64_t one = 1;
	if (write(v->kick_fd, &one, sizeof(one)) < 0)
		pr_debug("virtio-vsock: kick lost");
}

static void vsock_notify(struct virtio_dev *d, int qi) { kick(d->priv); }

/* Under the transport's lock on a vCPU thread: the I/O thread drops the connections. */
static void vsock_reset(struct virtio_dev *d)
{
	struct vsock *v = d->priv;
	__atomic_add_fetch(&v->reset_gen, 1, __ATOMIC_ACQ_REL);
	__atomic_store_n(&v->reset_req, 1, __ATOMIC_RELEASE);
	kick(v);
}

static const struct virtio_ops vsock_virtio_ops = { .notify = vsock_notify, .reset = vsock_reset };

void vsock_transport_reset(struct vsock *v)
{
	__atomic_store_n(&v->transport_reset_req, 1, __ATOMIC_RELEASE);
	kick(v);
}

/* ---- its lifecycle (include/device.h) ---- */

static void *io_thread(void *arg)
{
	struct vsock *v = arg;
	pthread_setname_np(pthread_self(), "lkvm-vsock");
	while (!__atomic_load_n(&v->stop_req, __ATOMIC_ACQUIRE))
		vsock_poll_once(v, -1);
	return NULL;
}

static int vsock_start(struct device *dev)
{
	struct vsock *v = dev->priv;
	__atomic_store_n(&v->stop_req, 0, __ATOMIC_RELEASE);
	int r = thread_start(&v->thread, io_thread, v);
	if (r)
		return err_set("virtio-vsock: cannot start its I/O thread");
	v->running = true;
	if (v->event_pending)	/* restored: the reset event goes out now, not at the guest's next kick */
		kick(v);
	return 0;
}

static void vsock_stop(struct device *dev)
{
	struct vsock *v = dev->priv;
	if (!v->running)
		return;
	__atomic_store_n(&v->stop_req, 1, __ATOMIC_RELEASE);
	kick(v);
	pthread_join(v->thread, NULL);
	v->running = false;
}

static void vsock_destroy(struct device *dev)
{
	struct vsock *v = dev->priv;
	vsock_stop(dev);
	if (v->dev.vm)
		virtio_pci_unregister(&v->dev);
	drop_all(v);
	if (v->listen_fd >= 0) {
		close(v->listen_fd);
		vsock_unlink_path(v->path, v->path_dev, v->path_ino);
	}
	if (v->kick_fd >= 0)
		close(v->kick_fd);
	free(v);
}

static void vsock_stats(struct device *dev, struct json_writer *j)
{
	struct vsock_stats st;
	vsock_get_stats(dev->priv, &st);
	const struct { const char *name; uint64_t v; } m[] = {
		{ "conns", st.conns }, { "tx_packets", st.tx_packets }, { "rx_packets", st.rx_packets },
		{ "tx_bytes", st.tx_bytes }, { "rx_bytes", st.rx_bytes }, { "rst_sent", st.rst_sent },
		{ "dropped", st.dropped }, { "refused", st.refused }, { "credit_violations", st.credit_violations },
		{ "rx_waiting", st.rx_waiting },
	};
	for (size_t i = 0; i < ARRAY_SIZE(m); i++) {
		char key[64];
		snprintf(key, sizeof(key), "vsock%d_%s", dev->index, m[i].name);
		json_u64(j, key, m[i].v);
	}
}

/*
 * Snapshots (virtio 1.2 5.10.6.6, as Firecracker does): the transport and the
 * queues, not the connections. Their host ends belong to the process that
 * made them, so a restored VM tells its guest with the transport reset event:
 * the driver drops every connection it had and reads guest_cid again (its
 * listeners stay), and host programs connect anew to the restored VM's socket.
 */
static int vsock_save(struct device *dev, struct snap_writer *w)
{
	struct vsock *v = dev->priv;
	virtio_pci_save(&v->dev, w);
	snap_u64(w, v->cid);
	snap_u32(w, v->nr_conns);	/* what a restore drops */
	snap_u32(w, v->next_port);
	snap_bool(w, v->event_pending);
	return 0;
}

static int vsock_load(struct device *dev, struct snap_reader *r)
{
	struct vsock *v = dev->priv;
	if (virtio_pci_load(&v->dev, r) < 0)
		return -1;
	uint64_t cid = snap_get_u64(r);
	uint32_t conns = snap_get_u32(r), next_port = snap_get_u32(r);
	snap_get_bool(r);	/* a reset event waiting then: the one below says the same */
	if (snap_failed(r))
		return -1;
	if (cid < VSOCK_MIN_CID || cid > VSOCK_MAX_CID)
		return snap_bad(r, "virtio-vsock: guest CID %llu (3-4294967294)", (unsigned long long)cid);
	if (conns > VSOCK_MAX_CONNS)
		return snap_bad(r, "virtio-vsock: %u connections (at most %d)", conns, VSOCK_MAX_CONNS);
	if (next_port < FIRST_HOST_PORT || next_port == 0xffffffffu)
		return snap_bad(r, "virtio-vsock: host port %u (from %u)", next_port, FIRST_HOST_PORT);
	/* The device's thread returns every chain it takes before it stops: none can be in flight. */
	for (int i = 0; i < v->dev.nr_queues; i++) {
		const struct virtq *q = &v->dev.q[i];
		if (q->enabled && q->last_avail != q->used_idx)
			return snap_bad(r, "virtio-vsock queue %d: %u chains taken, %u returned (none is in flight at a save)",
					i, q->last_avail, q->used_idx);
	}
	v->next_port = next_port;
	/* guest_cid is this VM's (--vsock may differ): the reset makes the driver read it. */
	v->event_pending = v->dev.status & VIRTIO_STATUS_DRIVER_OK;
	__atomic_store_n(&v->reset_req, 0, __ATOMIC_RELEASE);	/* the reset at creation was before this state */
	if (cid != v->cid)
		pr_info("virtio-vsock: the guest's CID was %llu, is now %llu", (unsigned long long)cid,
			(unsigned long long)v->cid);
	return 0;
}

static const struct device_ops vsock_dev_ops = {
	.start = vsock_start, .stop = vsock_stop, .destroy = vsock_destroy, .stats = vsock_stats,
	.save = vsock_save, .load = vsock_load, .snap_version = 1,
};

void vsock_get_stats(struct vsock *v, struct vsock_stats *st)
{
	*st = v->st;	/* (read while the thread counts: figures, not a snapshot) */
	st->conns = v->nr_conns;
	st->rx_waiting = __atomic_load_n(&v->rx_starved, __ATOMIC_RELAXED);
}

/* 1024 connections need as many fds: raise the soft limit toward the hard one. */
static void raise_fd_limit(void)
{
	struct rlimit rl;
	rlim_t want = VSOCK_MAX_CONNS + 256;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
		rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

struct vsock *vsock_create(struct vm *vm, uint32_t guest_cid, const char *path)
{
	if (guest_cid < VSOCK_MIN_CID || guest_cid > VSOCK_MAX_CID) {
		err_set("the guest CID must be a number from 3 to 4294967294 (%u)", guest_cid);
		return NULL;
	}
	struct vsock *v = xcalloc(1, sizeof(*v));
	if (strlen(path) >= sizeof(v->path)) {
		err_set("vsock socket path %s is too long", path);
		free(v);
		return NULL;
	}
	snprintf(v->path, sizeof(v->path), "%s", path);
	v->cid = guest_cid;
	vm->jail_sock = v->path;
	if (vm->nr_jail_keep < 4) {	/* guest connections reach PATH_PORT sockets by path: the jail keeps the folder */
		char *dir = xstrdup(path), *slash = strrchr(dir, '/');
		if (slash && slash != dir) {
			*slash = 0;
			vm->jail_keep[vm->nr_jail_keep++] = dir;	/* lives as long as the process */
		} else {
			free(dir);
		}
	}
	v->listen_fd = v->kick_fd = -1;
	v->next_port = FIRST_HOST_PORT;
	device_add(vm, "virtio-vsock", &vsock_dev_ops, v);	/* from here on its destroy frees what was made */
	v->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (v->kick_fd < 0) {
		err_errno("virtio-vsock: eventfd");
		return NULL;
	}
	v->listen_fd = vsock_listen_path(path, &v->path_dev, &v->path_ino);
	if (v->listen_fd < 0)
		return NULL;
	raise_fd_limit();
	put_le64(v->config, guest_cid);
	struct virtio_dev *d = &v->dev;
	d->name = "virtio-vsock";
	d->device_id = VIRTIO_ID_VSOCK;
	d->nr_queues = 3;
	d->config = v->config;
	d->config_len = sizeof(v->config);
	d->features = 1ULL << F_STREAM;
	d->ops = &vsock_virtio_ops;
	d->priv = v;
	if (virtio_pci_register(vm, d) < 0)
		return NULL;
	return v;
}

struct vsock *vsock_of(const struct vm *vm)
{
	return device_priv(vm, "virtio-vsock", 0);
}

/* ---- options: --vsock CID[,uds=PATH] ---- */

struct vsock_opts {
	uint32_t cid;		/* 0: no device */
	const char *uds;	/* NULL: the default path */
};

/* PATH is the rest of the argument, commas included. */
static int parse_vsock(void *own, const char *arg)
{
	struct vsock_opts *o = own;
	if (o->cid)
		return err_set("given twice (one device per VM)");
	char *copy = opt_strdup(arg), *comma = strchr(copy, ',');
	if (comma)
		*comma = 0;
	char *end;
	unsigned long long cid = strtoull(copy, &end, 10);
	if (end == copy || *end || *copy < '0' || *copy > '9' || cid < VSOCK_MIN_CID || cid > VSOCK_MAX_CID)
		return err_set("the guest CID must be a number from 3 to 4294967294");
	if (comma && (strncmp(comma + 1, "uds=", 4) || !comma[5]))
		return err_set("unknown option '%s' (uds=PATH)", comma + 1);
	o->cid = cid;
	o->uds = comma ? comma + 5 : NULL;
	return 0;
}

static const struct opt vsock_opts[] = {
	{ "vsock", 0, "CID[,uds=PATH]",
	  "virtio-vsock, the guest's CID (3-4294967294); host programs use the Unix socket PATH (default NAME.vsock next to the control socket)",
	  parse_vsock, OPT_COMPLETE_FILE },
	{ 0 }
};

static int vsock_path_of(const struct vm_config *cfg, const struct vsock_opts *o, char *buf, size_t len)
{
	if (o->uds) {
		snprintf(buf, len, "%s", o->uds);
		return 0;
	}
	return vsock_default_path(cfg->name, buf, len);
}

/* Before /dev/kvm is opened: the socket path is free, or a stale socket of ours. */
static int vsock_type_check(struct vm_config *cfg, void *own)
{
	struct vsock_opts *o = own;
	char path[sizeof(((struct vsock *)0)->path)];
	if (!o->cid)
		return 0;
	if (o->uds && strlen(o->uds) >= sizeof(path))
		return vsock_check_path(o->uds);	/* says it is too long */
	return vsock_path_of(cfg, o, path, sizeof(path)) < 0 ? -1 : vsock_check_path(path);
}

static int vsock_type_create(struct vm *vm, void *own)
{
	struct vsock_opts *o = own;
	char path[sizeof(((struct vsock *)0)->path)];
	if (!o->cid)
		return 0;
	if (vsock_path_of(&vm->cfg, o, path, sizeof(path)) < 0)
		return -1;
	return vsock_create(vm, o->cid, path) ? 0 : -1;
}

bool vsock_configured(const struct vm_config *cfg)
{
	const struct vsock_opts *o = vm_config_find(cfg, &virtio_vsock_device);
	return o && o->cid;
}

const struct device_type virtio_vsock_device = {
	.name = "virtio-vsock", .opts = vsock_opts, .cfg_size = sizeof(struct vsock_opts), .check = vsock_type_check,
	.create = vsock_type_create,
};
