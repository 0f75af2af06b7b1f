/*
 * virtio-vsock driven as a guest's driver would (virtio_driver.h), with the
 * host programs played by the test on Unix sockets: handshakes both ways,
 * data both ways, credit stalls and resumes in both directions, shutdown and
 * RST, unknown ports, hostile packets (short headers, lengths beyond the
 * chain, credit overflow, wrong CIDs, unknown ops and types, data before the
 * handshake), REQUEST floods, transport and device resets, snapshots (the
 * restored device sends the transport reset event; bad records are refused),
 * the socket path's safety, and the device's thread under the seccomp allowlist.
 *
 * Packets are encoded and decoded here by the test's own code (virtio 1.2
 * section 5.10.6), not the device's.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include "snap_buf.h"
#include "devices.h"
#include "test.h"
#include "seccomp.h"
#include "snapshot.h"
#include "virtio.h"
#include "vsock.h"
#include "virtio_fixture.h"
#include "../ro_sandbox.h"

/* ---- a sandbox for the whole test: it makes sockets, files and chowns them as root ---- */

static void setup_dir(void);

__attribute__((constructor)) static void confine(void)
{
	if (ro_sandbox(NULL, 0, "/etc/.lkvm-test-vsock-probe") == 0) {
		setup_dir();	/* in the sandbox's fresh /tmp */
		return;
	}
	if (geteuid() == 0) {
		fprintf(stderr, "test_vsock: refusing to run as root without a read-only sandbox (unshare/mount failed)\n");
		exit(1);
	}
	fprintf(stderr, "test_vsock: note: no sandbox (no user namespaces); as a normal user the host is safe enough\n");
	setup_dir();
}

#define CID 42
#define DESC1 0x104000	/* transmit queue */
#define AVAIL1 0x105000
#define USED1 0x106000
#define DESC2 0x107000	/* event queue */
#define AVAIL2 0x108000
#define USED2 0x109000
#define RXBUF 0x200000	/* QSIZE receive buffers of RXSIZE */
#define RXSIZE 4096
#define EVBUF 0x210000
#define TXBUF 0x300000	/* TXSLOTS packets of up to TXSLOT bytes */
#define TXSLOT 0x20000
#define TXSLOTS 4
#define HDR 44

enum { REQUEST = 1, RESPONSE, RST, SHUTDOWN, RW, CREDIT_UPDATE, CREDIT_REQUEST };
#define S_RCV 1
#define S_SEND 2

struct pkt {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port, len;
	uint16_t type, op;
	uint32_t flags, buf_alloc, fwd_cnt;
	uint8_t data[RXSIZE];
};

static struct vsock *dev;
static char dir[64], path[128];
static uint16_t rx_seen;
static unsigned tx_posted;

static void encode(uint8_t *b, const struct pkt *p)
{
	put_le64(b, p->src_cid); put_le64(b + 8, p->dst_cid);
	put_le32(b + 16, p->src_port); put_le32(b + 20, p->dst_port); put_le32(b + 24, p->len);
	put_le16(b + 28, p->type); put_le16(b + 30, p->op); put_le32(b + 32, p->flags);
	put_le32(b + 36, p->buf_alloc); put_le32(b + 40, p->fwd_cnt);
}

static void decode(const uint8_t *b, struct pkt *p)
{
	p->src_cid = get_le64(b); p->dst_cid = get_le64(b + 8);
	p->src_port = get_le32(b + 16); p->dst_port = get_le32(b + 20); p->len = get_le32(b + 24);
	p->type = get_le16(b + 28); p->op = get_le16(b + 30); p->flags = get_le32(b + 32);
	p->buf_alloc = get_le32(b + 36); p->fwd_cnt = get_le32(b + 40);
}

static void qdesc(uint64_t table, int i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	vdesc_put(&vm, table, i, addr, len, flags, next);
}

/* A fresh fake VM with the device listening at sock, negotiated, every buffer posted. */
static void fresh_created(const char *sock)
{
	if (dev)
		fake_vm_free(&vm);	/* the last test's device: thread stopped, PATH removed */
	setup_vm();
	dev = vsock_create(&vm, CID, sock);
	CHECK(dev != NULL);
	if (!dev) {
		fprintf(stderr, "vsock_create: %s\n", err_msg());
		exit(1);
	}
	CHECK(vsock_of(&vm) == dev);
}

static void fresh_started(void)
{
	CHECK_EQ(devices_start(&vm), 0);
	CHECK_EQ(driver_init(dev_at(1), 1ULL << VIRTIO_F_VERSION_1), 0);
	setup_queue(1, DESC1, AVAIL1, USED1);
	setup_queue(2, DESC2, AVAIL2, USED2);
	rx_seen = 0;
	tx_posted = 0;
	for (int i = 0; i < QSIZE; i++) {
		desc(i, RXBUF + i * RXSIZE, RXSIZE, 2, 0);
		post_on(0, AVAIL, i);
		qdesc(DESC2, i, EVBUF + 16 * i, 4, 2, 0);
		post_on(2, AVAIL2, i);
	}
}

static void fresh(void)
{
	fresh_created(path);
	fresh_started();
}

/* The next packet for the guest (its buffer goes back to the device); false after ms. */
static bool guest_recv(struct pkt *p, int ms)
{
	for (int t = 0; t < ms * 10; t++) {
		if (get_le16(g(USED + 2)) == rx_seen) {
			usleep(100);
			continue;
		}
		uint8_t *e = g(USED + 4 + 8 * (rx_seen % QSIZE));
		uint32_t id = get_le32(e), len = get_le32(e + 4);
		rx_seen++;
		CHECK(id < QSIZE);
		CHECK(len >= HDR && len <= RXSIZE);
		if (id >= QSIZE || len < HDR || len > RXSIZE)
			return false;
		const uint8_t *b = g(RXBUF + id * RXSIZE);
		decode(b, p);
		CHECK_EQ(p->len, len - HDR);	/* the used length covers header and payload */
		memcpy(p->data, b + HDR, len - HDR);
		post_on(0, AVAIL, id);
		return true;
	}
	return false;
}

static unsigned tx_outstanding(void) { return (uint16_t)(tx_posted - get_le16(g(USED1 + 2))); }

/* Wait until the device took every packet but at most `behind`; false after ms. */
static bool tx_wait(unsigned behind, int ms)
{
	for (int t = 0; t < ms * 10; t++) {
		if (tx_outstanding() <= behind)
			return true;
		usleep(100);
	}
	return false;
}

/* A packet on the transmit queue, header and payload in two descriptors as Linux sends them. */
static bool send_raw(const uint8_t *hdr, uint32_t hdr_len, const void *data, uint32_t len)
{
	if (tx_posted >= TXSLOTS && !tx_wait(TXSLOTS - 1, 500))
		return false;	/* the device stopped taking packets */
	unsigned slot = tx_posted % TXSLOTS;
	uint64_t buf = TXBUF + slot * TXSLOT;
	memcpy(g(buf), hdr, hdr_len);
	if (len) {
		memcpy(g(buf + 4096), data, len);
		qdesc(DESC1, 2 * slot, buf, hdr_len, 1, 2 * slot + 1);
		qdesc(DESC1, 2 * slot + 1, buf + 4096, len, 0, 0);
	} else {
		qdesc(DESC1, 2 * slot, buf, hdr_len, 0, 0);
	}
	post_on(1, AVAIL1, 2 * slot);
	tx_posted++;
	return true;
}

static struct pkt mk(uint16_t op, uint32_t src_port, uint32_t dst_port)
{
	return (struct pkt){ .src_cid = CID, .dst_cid = 2, .src_port = src_port, .dst_port = dst_port, .type = 1,
			     .op = op, .buf_alloc = 65536 };
}

static void send_pkt(struct pkt p, const void *data, uint32_t len)
{
	uint8_t b[HDR];
	p.len = len;
	encode(b, &p);
	CHECK(send_raw(b, HDR, data, len));
}

static void gsend(uint16_t op, uint32_t src_port, uint32_t dst_port, const void *data, uint32_t len)
{
	send_pkt(mk(op, src_port, dst_port), data, len);
}

/* The next packet must be op between these ports, from the host to our CID. */
static bool expect(struct pkt *p, uint16_t op, uint32_t src_port, uint32_t dst_port)
{
	if (!guest_recv(p, 3000)) {
		fprintf(stderr, "FAIL %s: no packet for the guest (wanted op %u)\n", t_name, op);
		t_fail++;
		return false;
	}
	CHECK_EQ(p->op, op);
	CHECK_EQ(p->src_cid, 2);
	CHECK_EQ(p->dst_cid, CID);
	CHECK_EQ(p->src_port, src_port);
	CHECK_EQ(p->dst_port, dst_port);
	return p->op == op && p->src_port == src_port && p->dst_port == dst_port;
}

/* No packet for the guest within ms. */
static bool quiet(int ms)
{
	struct pkt p;
	if (!guest_recv(&p, ms))
		return true;
	fprintf(stderr, "%s: unexpected packet op %u %u->%u len %u\n", t_name, p.op, p.src_port, p.dst_port, p.len);
	return false;
}

/* ---- the host programs ---- */

static int unix_listen(const char *at)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	CHECK(strlen(at) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, at, MIN(strlen(at), sizeof(sa.sun_path) - 1));
	unlink(at);
	CHECK_EQ(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	CHECK_EQ(listen(fd, 4096), 0);
	return fd;
}

static int host_listen(uint32_t port)
{
	char p[160];
	snprintf(p, sizeof(p), "%s_%u", path, port);
	return unix_listen(p);
}

static int unix_connect(const char *at)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	memcpy(sa.sun_path, at, MIN(strlen(at), sizeof(sa.sun_path) - 1));
	CHECK_EQ(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static bool readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, ms) == 1;
}

static int accept_within(int lfd, int ms)
{
	return readable(lfd, ms) ? accept4(lfd, NULL, NULL, SOCK_CLOEXEC) : -1;
}

/* Read exactly len bytes (false on EOF, error or ms without progress). */
static bool read_full(int fd, void *buf, size_t len, int ms)
{
	size_t got = 0;
	while (got < len) {
		if (!readable(fd, ms))
			return false;
		ssize_t r = read(fd, (uint8_t *)buf + got, len - got);
		if (r <= 0)
			return false;
		got += r;
	}
	return true;
}

/* The peer closed (EOF or reset) within ms; data before that is skipped. */
static bool closed_within(int fd, int ms)
{
	char b[4096];
	for (;;) {
		if (!readable(fd, ms))
			return false;
		ssize_t r = read(fd, b, sizeof(b));
		if (r == 0 || (r < 0 && errno == ECONNRESET))
			return true;
		if (r < 0)
			return false;
	}
}

static struct vsock_stats stats(void)
{
	struct vsock_stats st;
	vsock_get_stats(dev, &st);
	return st;
}

/* A guest connection to host port hp from guest port gp, accepted by the host: its fd. */
static int open_from_guest(int lfd, uint32_t gp, uint32_t hp, uint32_t buf_alloc)
{
	struct pkt p = mk(REQUEST, gp, hp);
	p.buf_alloc = buf_alloc;
	send_pkt(p, NULL, 0);
	if (!expect(&p, RESPONSE, hp, gp))
		return -1;
	CHECK_EQ(p.buf_alloc, VSOCK_CONN_BUF);
	CHECK_EQ(p.fwd_cnt, 0);
	int fd = accept_within(lfd, 2000);
	CHECK(fd >= 0);
	return fd;
}

/* A host client's CONNECT to guest port gp, answered by the guest: its fd; *hp the device's port. */
static int open_from_host(uint32_t gp, uint32_t *hp)
{
	int fd = unix_connect(path);
	char line[32];
	int n = snprintf(line, sizeof(line), "CONNECT %u\n", gp);
	CHECK_EQ(write(fd, line, n), n);
	struct pkt p;
	if (!guest_recv(&p, 3000) || p.op != REQUEST || p.dst_port != gp) {
		CHECK(!"a REQUEST for the guest's port");
		close(fd);
		return -1;
	}
	*hp = p.src_port;
	CHECK(p.src_port >= 1u << 30);
	CHECK_EQ(p.buf_alloc, VSOCK_CONN_BUF);
	gsend(RESPONSE, gp, *hp, NULL, 0);
	n = snprintf(line, sizeof(line), "OK %u\n", *hp);
	char got[32] = { 0 };
	CHECK(read_full(fd, got, n, 2000));
	CHECK(!strcmp(got, line));
	return fd;
}

static void fill(uint8_t *b, size_t n, uint32_t seed)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)((i + seed) * 2654435761u >> 13);
}

/* ---- tests ---- */

TEST(config)
{
	fresh();
	struct pci_dev *p = dev_at(1);
	CHECK_EQ(pci_cfg_read(p, 0x02, 2), 0x1040 + 19);
	wr(0x00, 0, 4);
	CHECK_EQ(rd(0x04, 4) & 1, 1);	/* VIRTIO_VSOCK_F_STREAM */
	CHECK_EQ(rd(0x12, 2), 3);	/* rx, tx, event */
	CHECK_EQ(rd(VPCI_DEVICE, 4), CID);
	CHECK_EQ(rd(VPCI_DEVICE + 4, 4), 0);
	CHECK_EQ(rd(VPCI_DEVICE, 8), CID);
	struct stat st;
	CHECK_EQ(lstat(path, &st), 0);
	CHECK(S_ISSOCK(st.st_mode));
	CHECK_EQ(st.st_mode & 0777, 0600);
}

TEST(guest_connects_to_host)
{
	fresh();
	int lfd = host_listen(5000);
	int fd = open_from_guest(lfd, 1234, 5000, 65536);
	const char *msg = "hello from the guest";
	gsend(RW, 1234, 5000, msg, strlen(msg));
	char got[64] = { 0 };
	CHECK(read_full(fd, got, strlen(msg), 2000));
	CHECK(!strcmp(got, msg));
	const char *reply = "hello from the host";
	CHECK_EQ(write(fd, reply, strlen(reply)), (ssize_t)strlen(reply));
	struct pkt p;
	CHECK(expect(&p, RW, 5000, 1234));
	CHECK_EQ(p.len, strlen(reply));
	CHECK(!memcmp(p.data, reply, strlen(reply)));
	CHECK_EQ(p.fwd_cnt, strlen(msg));	/* every packet tells the guest what the host took */
	CHECK_EQ(p.type, 1);
	/* The guest is done sending: the host program reads EOF. */
	struct pkt sh = mk(SHUTDOWN, 1234, 5000);
	sh.flags = S_SEND;
	send_pkt(sh, NULL, 0);
	CHECK(closed_within(fd, 2000));
	/* The host program closes: the guest hears both directions end, then the RST ends it. */
	close(fd);
	CHECK(expect(&p, SHUTDOWN, 5000, 1234));
	CHECK_EQ(p.flags, S_SEND | S_RCV);
	CHECK(expect(&p, RST, 5000, 1234));
	CHECK_EQ(stats().conns, 0);
	close(lfd);
}

static struct { uint32_t hp; int fd; } res;
static void *client(void *arg)
{
	res.fd = vsock_host_connect(path, 6001, 3000, &res.hp);
	return NULL;
}

TEST(host_connects_to_guest)
{
	fresh();
	/* Bytes right after the line are the stream's first: not swallowed with the line. */
	int fd = unix_connect(path);
	CHECK_EQ(write(fd, "CONNECT 6000\nearly", 18), 18);
	struct pkt p;
	CHECK(guest_recv(&p, 3000));
	CHECK_EQ(p.op, REQUEST);
	CHECK_EQ(p.dst_port, 6000);
	CHECK_EQ(p.dst_cid, CID);
	uint32_t hp = p.src_port;
	CHECK(quiet(100));	/* nothing flows before the guest answers */
	gsend(RESPONSE, 6000, hp, NULL, 0);
	char line[32], got[32] = { 0 };
	int n = snprintf(line, sizeof(line), "OK %u\n", hp);
	CHECK(read_full(fd, got, n, 2000));
	CHECK(!strcmp(got, line));
	CHECK(expect(&p, RW, hp, 6000));
	CHECK_EQ(p.len, 5);
	CHECK(!memcmp(p.data, "early", 5));
	gsend(RW, 6000, hp, "from the guest", 14);
	memset(got, 0, sizeof(got));
	CHECK(read_full(fd, got, 14, 2000));
	CHECK(!strcmp(got, "from the guest"));
	/* The guest closes (both flags): the host program sees EOF and the guest gets its RST. */
	struct pkt sh = mk(SHUTDOWN, 6000, hp);
	sh.flags = S_SEND | S_RCV;
	send_pkt(sh, NULL, 0);
	CHECK(closed_within(fd, 2000));
	CHECK(expect(&p, RST, hp, 6000));
	close(fd);

	/* The client helper lkvm exec will use. */
	pthread_t t;
	pthread_create(&t, NULL, client, &res);
	CHECK(guest_recv(&p, 3000));
	CHECK_EQ(p.op, REQUEST);
	gsend(RESPONSE, 6001, p.src_port, NULL, 0);
	pthread_join(t, NULL);
	CHECK(res.fd >= 0);
	CHECK_EQ(res.hp, p.src_port);
	CHECK_EQ(write(res.fd, "x", 1), 1);
	CHECK(expect(&p, RW, res.hp, 6001));
	close(res.fd);
	CHECK(expect(&p, SHUTDOWN, res.hp, 6001));
}

TEST(refused_and_unknown)
{
	fresh();
	struct pkt p;
	/* No listener at PATH_5999: RST, ports swapped. */
	gsend(REQUEST, 1500, 5999, NULL, 0);
	CHECK(expect(&p, RST, 5999, 1500));
	/* Data or a credit request for no connection: RST. An RST for none: nothing. */
	gsend(RST, 1501, 5000, NULL, 0);
	gsend(RW, 1502, 5000, "zz", 2);
	CHECK(expect(&p, RST, 5000, 1502));
	gsend(CREDIT_REQUEST, 1503, 5000, NULL, 0);
	CHECK(expect(&p, RST, 5000, 1503));
	CHECK(quiet(100));
	CHECK_EQ(stats().conns, 0);

	/* The guest refuses a host CONNECT with RST: the host client is closed without "OK". */
	int fd = unix_connect(path);
	CHECK_EQ(write(fd, "CONNECT 7000\n", 13), 13);
	CHECK(guest_recv(&p, 3000));
	CHECK_EQ(p.op, REQUEST);
	gsend(RST, 7000, p.src_port, NULL, 0);
	char b[8];
	CHECK(readable(fd, 2000));
	CHECK_EQ(read(fd, b, sizeof(b)), 0);
	close(fd);

	/* Bad lines: closed, and the guest never hears of them. */
	static const char *const bad[] = { "HELLO\n", "CONNECT abc\n", "CONNECT 99999999999\n", "CONNECT 4294967295\n",
					   "CONNECT  7\n", "CONNECT 7 \n", "connect 7\n", "CONNECT 7", "CONNECT 1234567890123456789\n" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		fd = unix_connect(path);
		CHECK_EQ(write(fd, bad[i], strlen(bad[i])), (ssize_t)strlen(bad[i]));
		if (!strchr(bad[i], '\n'))
			shutdown(fd, SHUT_WR);	/* no line end ever comes */
		CHECK(closed_within(fd, 2000));
		close(fd);
	}
	CHECK(quiet(100));
	CHECK_EQ(stats().conns, 0);
	uint32_t hp;
	fd = open_from_host(7001, &hp);	/* and a good line still works */
	CHECK(fd >= 0);
	close(fd);
	CHECK(expect(&p, SHUTDOWN, hp, 7001));
}

TEST(handshake_deadline)
{
	fresh();
	/* A client that never finishes its line, and a CONNECT the guest never answers: both closed. */
	int idle = unix_connect(path);
	CHECK_EQ(write(idle, "CONN", 4), 4);
	int fd = unix_connect(path);
	CHECK_EQ(write(fd, "CONNECT 8000\n", 13), 13);
	struct pkt p;
	CHECK(guest_recv(&p, 3000));
	CHECK_EQ(p.op, REQUEST);
	uint32_t hp = p.src_port;
	CHECK(!readable(fd, VSOCK_HANDSHAKE_MS - 1000));
	CHECK(closed_within(fd, 3000));
	CHECK(closed_within(idle, 1000));
	CHECK(expect(&p, RST, hp, 8000));	/* the guest is told the REQUEST is off */
	CHECK_EQ(stats().conns, 0);
	close(fd);
	close(idle);
}

TEST(credit_host_to_guest)
{
	fresh();
	int lfd = host_listen(5000);
	int fd = open_from_guest(lfd, 2000, 5000, 100);	/* the guest can hold 100 bytes */
	uint8_t data[250], got[250];
	fill(data, sizeof(data), 1);
	CHECK_EQ(write(fd, data, sizeof(data)), 250);
	size_t n = 0;
	struct pkt p;
	while (n < 100 && expect(&p, RW, 5000, 2000)) {
		memcpy(got + n, p.data, p.len);
		n += p.len;
	}
	CHECK_EQ(n, 100);
	CHECK(expect(&p, CREDIT_REQUEST, 5000, 2000));	/* out of credit: asks once */
	CHECK(quiet(150));
	/* A guest claiming to have taken more than it was sent: no credit, nothing sent. */
	struct pkt u = mk(CREDIT_UPDATE, 2000, 5000);
	u.buf_alloc = 10;
	u.fwd_cnt = 105;
	send_pkt(u, NULL, 0);
	CHECK(quiet(150));
	/* Room for 100 more, then for the rest. */
	u.buf_alloc = 100;
	u.fwd_cnt = 100;
	send_pkt(u, NULL, 0);
	while (n < 200 && expect(&p, RW, 5000, 2000)) {
		memcpy(got + n, p.data, p.len);
		n += p.len;
	}
	CHECK_EQ(n, 200);
	CHECK(expect(&p, CREDIT_REQUEST, 5000, 2000));
	u.fwd_cnt = 200;
	send_pkt(u, NULL, 0);
	while (n < 250 && expect(&p, RW, 5000, 2000)) {
		memcpy(got + n, p.data, p.len);
		n += p.len;
	}
	CHECK_EQ(n, 250);
	CHECK(!memcmp(got, data, sizeof(data)));
	CHECK(quiet(100));
	/* A credit request is answered with our credit. */
	gsend(CREDIT_REQUEST, 2000, 5000, NULL, 0);
	CHECK(expect(&p, CREDIT_UPDATE, 5000, 2000));
	CHECK_EQ(p.buf_alloc, VSOCK_CONN_BUF);
	close(fd);
	close(lfd);
}

struct reader { int fd; size_t len; uint32_t seed; bool ok; };

static void *reader(void *arg)
{
	struct reader *r = arg;
	static uint8_t want[1 << 16], got[1 << 16];
	size_t off = 0;
	r->ok = true;
	while (off < r->len) {
		size_t n = MIN(sizeof(got), r->len - off);
		if (!read_full(r->fd, got, n, 5000)) {
			r->ok = false;
			return NULL;
		}
		for (size_t i = 0; i < n; i++)
			want[i] = (uint8_t)((off + i + r->seed) * 2654435761u >> 13);
		if (memcmp(got, want, n))
			r->ok = false;
		off += n;
	}
	return NULL;
}

TEST(credit_guest_to_host)
{
	fresh();
	int lfd = host_listen(5000);
	int fd = open_from_guest(lfd, 3000, 5000, 65536);
	/* The host program does not read: the guest, keeping to the credit it is told, stalls. */
	const size_t total = 4 << 20, chunk = 16384;
	static uint8_t data[4 << 20];
	fill(data, total, 7);
	uint32_t buf_alloc = VSOCK_CONN_BUF, fwd = 0;
	size_t sent = 0;
	int stalls = 0;
	pthread_t t;
	struct reader r = { fd, total, 7, false };
	bool reading = false;
	uint32_t max_buffered = 0;
	while (sent < total) {
		uint32_t credit = buf_alloc - (uint32_t)(sent - fwd);
		if (credit >= MIN(chunk, total - sent)) {
			size_t n = MIN(chunk, total - sent);
			gsend(RW, 3000, 5000, data + sent, n);
			sent += n;
			continue;
		}
		struct pkt p;
		if (guest_recv(&p, 300)) {
			CHECK_EQ(p.op, CREDIT_UPDATE);
			CHECK_EQ(p.buf_alloc, VSOCK_CONN_BUF);
			fwd = p.fwd_cnt;
			continue;
		}
		stalls++;	/* no news: the device holds what it advertised */
		struct vsock_stats st = stats();
		max_buffered = MAX(max_buffered, st.buffered);
		CHECK(st.buffered <= VSOCK_CONN_BUF);
		if (!reading) {
			pthread_create(&t, NULL, reader, &r);
			reading = true;
		} else if (stalls > 20) {
			break;
		}
	}
	CHECK(reading);
	CHECK_EQ(sent, total);
	CHECK(stalls >= 1 && stalls < 20);
	CHECK(max_buffered > 0);
	if (reading)
		pthread_join(t, NULL);
	CHECK(r.ok);	/* every byte, in order */
	struct pkt p;
	while (guest_recv(&p, 200))	/* news of the room the reader made */
		CHECK(p.op == CREDIT_UPDATE && p.dst_port == 3000);
	CHECK_EQ(stats().credit_violations, 0);
	CHECK_EQ(stats().buffered, 0);

	/* One packet beyond what we advertised: the connection is reset. */
	int fd2 = open_from_guest(lfd, 3001, 5000, 65536);
	static uint8_t big[VSOCK_CONN_BUF + 1];
	gsend(RW, 3001, 5000, big, sizeof(big));
	CHECK(expect(&p, RST, 5000, 3001));
	CHECK(closed_within(fd2, 2000));
	CHECK_EQ(stats().credit_violations, 1);
	close(fd2);
	close(fd);
	close(lfd);
}

TEST(hostile_packets)
{
	fresh();
	int lfd = host_listen(5000);
	int fd = open_from_guest(lfd, 4000, 5000, 65536);
	struct pkt p;
	uint64_t dropped = stats().dropped;
	/* Shorter than a header: dropped without a word. */
	uint8_t b[HDR];
	struct pkt h = mk(RW, 4000, 5000);
	encode(b, &h);
	CHECK(send_raw(b, 20, NULL, 0));
	/* Claiming another source CID, or a destination other than the host: dropped. */
	h = mk(REQUEST, 4001, 5000);
	h.src_cid = CID + 1;
	send_pkt(h, NULL, 0);
	h = mk(REQUEST, 4002, 5000);
	h.dst_cid = 3;
	send_pkt(h, NULL, 0);
	h = mk(RW, 4000, 5000);
	h.src_cid = (uint64_t)1 << 32 | CID;	/* the high half counts too */
	send_pkt(h, "x", 1);
	CHECK(quiet(150));
	CHECK_EQ(accept_within(lfd, 10), -1);
	CHECK_EQ(stats().dropped, dropped + 4);
	CHECK_EQ(stats().conns, 1);
	/* The connection still works. */
	gsend(RW, 4000, 5000, "ok", 2);
	char got[4] = { 0 };
	CHECK(read_full(fd, got, 2, 2000));
	CHECK(!strcmp(got, "ok"));

	/* A length beyond the chain: that connection is reset. */
	h = mk(RW, 4000, 5000);
	h.len = 1000;
	encode(b, &h);
	CHECK(send_raw(b, HDR, "0123456789", 10));
	CHECK(expect(&p, RST, 5000, 4000));
	CHECK(closed_within(fd, 2000));
	close(fd);

	/* An op nobody knows, on an open connection: reset. */
	fd = open_from_guest(lfd, 4003, 5000, 65536);
	gsend(99, 4003, 5000, NULL, 0);
	CHECK(expect(&p, RST, 5000, 4003));
	CHECK(closed_within(fd, 2000));
	close(fd);
	/* Op 0 (INVALID) likewise; a REQUEST for a connection that exists resets it. */
	fd = open_from_guest(lfd, 4004, 5000, 65536);
	gsend(0, 4004, 5000, NULL, 0);
	CHECK(expect(&p, RST, 5000, 4004));
	CHECK(closed_within(fd, 2000));
	close(fd);
	fd = open_from_guest(lfd, 4005, 5000, 65536);
	gsend(REQUEST, 4005, 5000, NULL, 0);
	CHECK(expect(&p, RST, 5000, 4005));
	CHECK(closed_within(fd, 2000));
	close(fd);
	/* A RESPONSE on an open connection, data after the guest's SHUTDOWN(SEND): reset. */
	fd = open_from_guest(lfd, 4006, 5000, 65536);
	gsend(RESPONSE, 4006, 5000, NULL, 0);
	CHECK(expect(&p, RST, 5000, 4006));
	close(fd);
	fd = open_from_guest(lfd, 4007, 5000, 65536);
	h = mk(SHUTDOWN, 4007, 5000);
	h.flags = S_SEND | 0xfffc;	/* unknown flag bits are ignored */
	send_pkt(h, NULL, 0);
	gsend(RW, 4007, 5000, "late", 4);
	CHECK(expect(&p, RST, 5000, 4007));
	CHECK(closed_within(fd, 2000));
	close(fd);

	/* An unknown type: RST of that type, no connection made. */
	h = mk(REQUEST, 4008, 5000);
	h.type = 2;
	send_pkt(h, NULL, 0);
	CHECK(guest_recv(&p, 2000));
	CHECK_EQ(p.op, RST);
	CHECK_EQ(p.type, 2);
	CHECK_EQ(p.dst_port, 4008);
	CHECK_EQ(accept_within(lfd, 50), -1);

	/* Data before the handshake (RW instead of RESPONSE): reset; the host client gets no "OK". */
	int c = unix_connect(path);
	CHECK_EQ(write(c, "CONNECT 9000\n", 13), 13);
	CHECK(guest_recv(&p, 3000));
	CHECK_EQ(p.op, REQUEST);
	uint32_t hp = p.src_port;
	gsend(RW, 9000, hp, "sneaky", 6);
	CHECK(expect(&p, RST, hp, 9000));
	char ch;
	CHECK(readable(c, 2000));
	CHECK_EQ(read(c, &ch, 1), 0);
	close(c);
	CHECK_EQ(stats().conns, 0);
	close(lfd);
}

TEST(small_buffers)
{
	fresh();
	/* Four receive buffers with room for a header only: each is given back empty, the RST
	 * goes into the fifth. */
	for (int i = 0; i < 4; i++)
		desc(i, RXBUF + i * RXSIZE, HDR, 2, 0);
	uint64_t dropped = stats().dropped;
	gsend(REQUEST, 4009, 5999, NULL, 0);
	wait_idx(USED, 5);
	CHECK_EQ(get_le16(g(USED + 2)), 5);
	for (int k = 0; k < 4; k++) {
		CHECK_EQ(get_le32(g(USED + 4 + 8 * k)), k);
		CHECK_EQ(get_le32(g(USED + 4 + 8 * k + 4)), 0);
	}
	CHECK_EQ(get_le32(g(USED + 4 + 8 * 4)), 4);
	CHECK_EQ(get_le32(g(USED + 4 + 8 * 4 + 4)), HDR);
	struct pkt p;
	decode(g(RXBUF + 4 * RXSIZE), &p);
	CHECK_EQ(p.op, RST);
	CHECK_EQ(p.dst_port, 4009);
	CHECK_EQ(stats().dropped, dropped + 4);
}

TEST(request_flood)
{
	fresh();
	int lfd = host_listen(5000);	/* never accepts: connections wait in its backlog of 4096 */
	const int n = VSOCK_MAX_CONNS + 76;
	for (int i = 0; i < n; i++)
		gsend(REQUEST, 20000 + i, 5000, NULL, 0);
	int responses = 0, rsts = 0;
	struct pkt p;
	while (guest_recv(&p, 500)) {
		if (p.op == RESPONSE)
			responses++;
		else if (p.op == RST)
			rsts++;
	}
	CHECK_EQ(responses, VSOCK_MAX_CONNS);
	CHECK_EQ(rsts, 76);
	struct vsock_stats st = stats();
	CHECK_EQ(st.conns, VSOCK_MAX_CONNS);
	CHECK_EQ(st.refused, 76);
	/* The guest ends them all: none left. */
	for (int i = 0; i < n; i++)
		gsend(RST, 20000 + i, 5000, NULL, 0);
	CHECK(tx_wait(0, 3000));
	CHECK(quiet(100));
	CHECK_EQ(stats().conns, 0);

	/* REQUESTs for no listener while the guest gives no receive buffers: the device holds
	 * a bounded number of RSTs, then stops taking packets; once the guest reads, every one
	 * is answered. */
	int sent;
	for (sent = 0; sent < 2000; sent++) {
		struct pkt q = mk(REQUEST, 30000 + sent, 5998);
		uint8_t b[HDR];
		encode(b, &q);
		if (!send_raw(b, HDR, NULL, 0))
			break;
	}
	/* It stopped: 256 RSTs waiting (the device's ring), 8 in the buffers, a few in flight. */
	CHECK(sent > 256);
	CHECK(sent <= 256 + QSIZE + TXSLOTS + 1);
	/* (The transmit queue's used index may show up after the RSTs it caused: poll both.) */
	int got = 0;
	for (int idle = 0; got < 2000 && idle < 40;) {
		while (tx_outstanding() < TXSLOTS - 1 && sent < 2000) {
			struct pkt q = mk(REQUEST, 30000 + sent, 5998);
			uint8_t b[HDR];
			encode(b, &q);
			CHECK(send_raw(b, HDR, NULL, 0));
			sent++;
		}
		if (!guest_recv(&p, 50)) {
			idle++;
			continue;
		}
		idle = 0;
		CHECK_EQ(p.op, RST);
		got++;
	}
	CHECK_EQ(sent, 2000);
	CHECK_EQ(got, 2000);
	close(lfd);
}

TEST(transport_reset)
{
	fresh();
	int lfd = host_listen(5000);
	int fd = open_from_guest(lfd, 5100, 5000, 65536);
	uint32_t hp;
	int c = open_from_host(6000, &hp);
	CHECK_EQ(stats().conns, 2);
	vsock_transport_reset(dev);
	/* The driver gets the event (id 0, 4 bytes); the host programs see their connections end. */
	wait_idx(USED2, 1);
	CHECK_EQ(get_le16(g(USED2 + 2)), 1);
	CHECK_EQ(get_le32(g(USED2 + 4 + 4)), 4);
	uint32_t id = get_le32(g(USED2 + 4));
	CHECK(id < QSIZE);
	CHECK_EQ(get_le32(g(EVBUF + 16 * (id % QSIZE))), 0);
	CHECK(closed_within(fd, 2000));
	CHECK(closed_within(c, 2000));
	CHECK_EQ(stats().conns, 0);
	CHECK(quiet(100));	/* no RSTs: the guest dropped its side itself */
	close(fd);
	close(c);
	/* New connections work. */
	fd = open_from_guest(lfd, 5101, 5000, 65536);
	CHECK(fd >= 0);
	close(fd);
	close(lfd);
}

TEST(device_reset)
{
	fresh();
	int lfd = host_listen(5000);
	int fd = open_from_guest(lfd, 5200, 5000, 65536);
	wr(0x14, 0, 1);	/* the driver resets the device: its connections are gone */
	CHECK(closed_within(fd, 2000));
	close(fd);
	int i = 0;
	while (stats().conns && i++ < 2000)
		usleep(1000);
	CHECK_EQ(stats().conns, 0);
	/* Set up again, it works. */
	CHECK_EQ(driver_init(dev_at(1), 1ULL << VIRTIO_F_VERSION_1), 0);
	setup_queue(1, DESC1, AVAIL1, USED1);
	setup_queue(2, DESC2, AVAIL2, USED2);
	rx_seen = 0;
	tx_posted = 0;
	for (int k = 0; k < QSIZE; k++) {
		desc(k, RXBUF + k * RXSIZE, RXSIZE, 2, 0);
		post_on(0, AVAIL, k);
	}
	fd = open_from_guest(lfd, 5201, 5000, 65536);
	CHECK(fd >= 0);
	close(fd);
	close(lfd);
}

/* ---- snapshots ---- */

static uint8_t *snap_buf;
static size_t snap_len;
static struct { bool on; uint64_t cid; uint32_t conns, port; int q; uint16_t skew; } bad;

/* Every device's record as devices_save() writes it; with bad.on, a vsock record carrying bad's values. */
static void snap_save(void)
{
	int fd;
	struct snap_writer *w = snap_buf_open(&fd);
	if (!bad.on) {
		CHECK_EQ(devices_save(&vm, w), 0);
	} else {
		for (struct device *d = vm.devices; d; d = d->next) {
			char name[80];
			snprintf(name, sizeof(name), "dev:%s:%d", d->type, d->index);
			snap_begin(w, name, d->ops->snap_version);
			if (d->priv != dev) {
				d->ops->save(d, w);
			} else {
				struct virtio_dev *vd = (struct virtio_dev *)dev;	/* its first member */
				vd->q[bad.q].last_avail += bad.skew;
				virtio_pci_save(vd, w);
				vd->q[bad.q].last_avail -= bad.skew;
				snap_u64(w, bad.cid);
				snap_u32(w, bad.conns);
				snap_u32(w, bad.port);
				snap_bool(w, false);
			}
			CHECK_EQ(snap_end(w), 0);
		}
	}
	CHECK_EQ(snap_buf_close(w, fd, &snap_buf, &snap_len), 0);
}

/* A new VM with guest RAM as it was and the saved records loaded: devices_load()'s result. */
static uint8_t *ram_copy;
static int snap_restore(void)
{
	fresh_created(path);
	memcpy(g(0), ram_copy, MiB(16));
	struct snap_reader *r = snap_reader_new(snap_buf, snap_len, "vsnap");
	CHECK(r != NULL);
	int ret = r ? devices_load(&vm, r) : -1;
	snap_reader_free(r);
	return ret;
}

TEST(snapshot_restore)
{
	fresh();
	int lfd = host_listen(5000);
	int fd = open_from_guest(lfd, 5300, 5000, 65536);
	CHECK(fd >= 0);
	devices_stop(&vm);	/* as lkvm snapshot does: the device's thread has returned every chain */
	snap_save();
	ram_copy = xcalloc(1, MiB(16));
	memcpy(ram_copy, g(0), MiB(16));
	CHECK_EQ(get_le16(g(USED2 + 2)), 0);
	CHECK_EQ(snap_restore(), 0);
	CHECK(closed_within(fd, 2000));	/* the old process's host end went with it */
	close(fd);
	CHECK_EQ(devices_start(&vm), 0);
	/* The restored device tells the driver at once: the transport reset event. */
	wait_idx(USED2, 1);
	CHECK_EQ(get_le16(g(USED2 + 2)), 1);
	uint32_t id = get_le32(g(USED2 + 4));
	CHECK(id < QSIZE);
	CHECK_EQ(get_le32(g(EVBUF + 16 * (id % QSIZE))), 0);	/* VIRTIO_VSOCK_EVENT_TRANSPORT_RESET */
	CHECK_EQ(stats().conns, 0);
	/* The driver's rings went on: a new connection and data both ways. */
	fd = open_from_guest(lfd, 5301, 5000, 65536);
	CHECK(fd >= 0);
	gsend(RW, 5301, 5000, "after", 5);
	char got[8] = { 0 };
	CHECK(read_full(fd, got, 5, 2000));
	CHECK(!memcmp(got, "after", 5));
	CHECK_EQ(write(fd, "back", 4), 4);
	struct pkt p;
	CHECK(expect(&p, RW, 5000, 5301));
	CHECK(p.len == 4 && !memcmp(p.data, "back", 4));
	close(fd);

	/* Hostile records: each refused in one line naming the file and the value. */
	const struct { uint64_t cid; uint32_t conns, port; int q; uint16_t skew; const char *msg; } cases[] = {
		{ 1, 0, 1u << 30, 0, 0, "guest CID 1" },
		{ 42, 100000, 1u << 30, 0, 0, "100000 connections" },
		{ 42, 0, 7, 0, 0, "host port 7" },
		{ 42, 0, 1u << 30, 1, 3, "queue 1: 3 chains taken, 0 returned" },
		{ 42, 0, 1u << 30, 0, 0xffff, "queue 0: 65535 chains taken" },
	};
	for (size_t k = 0; k < ARRAY_SIZE(cases); k++) {
		fresh();
		devices_stop(&vm);
		memcpy(ram_copy, g(0), MiB(16));
		bad.on = true;
		bad.cid = cases[k].cid;
		bad.conns = cases[k].conns;
		bad.port = cases[k].port;
		bad.q = cases[k].q;
		bad.skew = cases[k].skew;
		snap_save();
		bad.on = false;
		CHECK_EQ(snap_restore(), -1);
		bool named = strstr(err_msg(), "vsnap: record dev:virtio-vsock:0") && strstr(err_msg(), cases[k].msg);
		CHECK(named);
		CHECK(!strchr(err_msg(), '\n'));
		if (!named)
			fprintf(stderr, "case %zu: %s\n", k, err_msg());
	}
	free(ram_copy);
	close(lfd);
}

TEST(socket_path)
{
	char p[160], q[160];
	/* Free, in an existing folder: fine; in a missing one: says so. */
	snprintf(p, sizeof(p), "%s/free.sock", dir);
	CHECK_EQ(vsock_check_path(p), 0);
	snprintf(q, sizeof(q), "%s/no/such.sock", dir);
	CHECK_EQ(vsock_check_path(q), -1);
	CHECK(strstr(err_msg(), "does not exist") != NULL);
	/* Not a socket (a file, a symlink to a socket): never replaced. */
	snprintf(p, sizeof(p), "%s/file", dir);
	close(open(p, O_CREAT | O_WRONLY, 0600));
	CHECK_EQ(vsock_check_path(p), -1);
	CHECK(strstr(err_msg(), "not a socket") != NULL);
	dev_t d;
	ino_t ino;
	CHECK_EQ(vsock_listen_path(p, &d, &ino), -1);
	struct stat st;
	CHECK(lstat(p, &st) == 0 && S_ISREG(st.st_mode));
	snprintf(q, sizeof(q), "%s/link", dir);
	CHECK_EQ(symlink(path, q), 0);
	CHECK_EQ(vsock_check_path(q), -1);
	CHECK(strstr(err_msg(), "not a socket") != NULL);
	/* In use: a live listener (the device's own PATH). */
	CHECK_EQ(vsock_check_path(path), -1);
	CHECK(strstr(err_msg(), "in use") != NULL);
	struct vm v2;
	fake_vm_init(&v2, &fake_irq_recorder);
	CHECK(vsock_create(&v2, 50, path) == NULL);
	CHECK(strstr(err_msg(), "in use") != NULL);
	/* A stale socket of ours is replaced; one of another user is not. */
	snprintf(p, sizeof(p), "%s/stale", dir);
	int s = unix_listen(p);
	close(s);
	CHECK_EQ(vsock_check_path(p), 0);
	if (geteuid() == 0) {
		CHECK_EQ(lchown(p, 12345, 12345), 0);
		CHECK_EQ(vsock_check_path(p), -1);
		CHECK(strstr(err_msg(), "another user") != NULL);
		CHECK_EQ(lchown(p, 0, 0), 0);
	}
	s = vsock_listen_path(p, &d, &ino);
	CHECK(s >= 0);
	CHECK(lstat(p, &st) == 0 && S_ISSOCK(st.st_mode) && (st.st_mode & 0777) == 0600 && st.st_ino == ino);
	/* Removal takes only the socket we made. */
	unlink(p);
	close(open(p, O_CREAT | O_WRONLY, 0600));
	vsock_unlink_path(p, d, ino);
	CHECK_EQ(access(p, F_OK), 0);
	close(s);
	/* Too long for a Unix socket with its _PORT suffix. */
	char longp[200];
	memset(longp, 'a', sizeof(longp));
	longp[0] = '/';
	longp[100] = 0;
	CHECK_EQ(vsock_check_path(longp), -1);
	CHECK(strstr(err_msg(), "too long") != NULL);
	/* The default: next to the control sockets, named after the VM. */
	char def[128];
	CHECK_EQ(vsock_default_path("myvm", def, sizeof(def)), 0);
	snprintf(q, sizeof(q), "%s/lkvm/myvm.vsock", dir);
	CHECK(!strcmp(def, q));
	CHECK_EQ(vsock_default_path("a/b", def, sizeof(def)), -1);
	/* Bad CIDs. */
	CHECK(vsock_create(&v2, 2, p) == NULL);
	CHECK(vsock_create(&v2, 0xffffffffu, p) == NULL);
	fake_vm_free(&v2);
	CHECK_EQ(access(path, F_OK), 0);	/* the failed one never touched the device's PATH */
}

TEST(options)
{
	/* The option as the command line gives it; the check runs before /dev/kvm is opened. */
	struct vm v2;
	fake_vm_init(&v2, &fake_irq_recorder);
	CHECK_EQ(device_type_option(&v2.cfg, &virtio_vsock_device, "vsock", "7"), 0);
	CHECK_EQ(device_type_option(&v2.cfg, &virtio_vsock_device, "vsock", "8"), -1);
	CHECK(strstr(err_msg(), "twice") != NULL);
	CHECK_EQ(device_type_check(&v2.cfg, &virtio_vsock_device), 0);	/* the default PATH is free */
	v2.cfg.name = "optvm";
	CHECK_EQ(device_type_create(&v2, &pci_host_device), 0);
	CHECK_EQ(device_type_create(&v2, &virtio_vsock_device), 0);
	CHECK(vsock_of(&v2) != NULL);
	char def[160];
	snprintf(def, sizeof(def), "%s/lkvm/optvm.vsock", dir);
	struct stat st;
	CHECK(lstat(def, &st) == 0 && S_ISSOCK(st.st_mode));
	CHECK_EQ(device_type_check(&v2.cfg, &virtio_vsock_device), -1);	/* now it is in use */
	CHECK(strstr(err_msg(), "in use") != NULL);
	fake_vm_free(&v2);
	CHECK_EQ(access(def, F_OK), -1);	/* destroyed: PATH removed */
	/* Bad arguments. */
	static const char *const bad[] = { "2", "4294967295", "abc", "-3", "", "3,path=x", "3,uds=", "3x" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct vm v3;
		fake_vm_init(&v3, &fake_irq_recorder);
		CHECK_EQ(device_type_option(&v3.cfg, &virtio_vsock_device, "vsock", bad[i]), -1);
		fake_vm_free(&v3);
	}
	/* No --vsock: no device. */
	struct vm v4;
	fake_vm_init(&v4, &fake_irq_recorder);
	CHECK_EQ(device_type_create(&v4, &virtio_vsock_device), 0);
	CHECK(vsock_of(&v4) == NULL);
	fake_vm_free(&v4);
}

/* ---- the device's thread under the process's seccomp allowlist ---- */

static void seccomp_child(void)
{
	char sock[128];
	snprintf(sock, sizeof(sock), "%s/sc.sock", dir);
	dev = NULL;	/* the parent's: its thread is not in this process */
	t_fail = 0;	/* this child's own checks decide its status */
	snprintf(path, sizeof(path), "%s", sock);
	fresh_created(sock);
	int lfd = host_listen(5000);
	/* As the runner does: the allowlist first, then the device's thread starts under it. */
	if (seccomp_install(false) < 0)
		_exit(99);
	fresh_started();
	int fd = open_from_guest(lfd, 1234, 5000, 65536);
	gsend(RW, 1234, 5000, "abc", 3);
	char got[4] = { 0 };
	CHECK(read_full(fd, got, 3, 2000));
	CHECK_EQ(write(fd, "xyz", 3), 3);
	struct pkt p;
	CHECK(expect(&p, RW, 5000, 1234));
	uint32_t hp;
	int c = open_from_host(6000, &hp);
	CHECK(c >= 0);
	close(c);
	close(fd);
	fake_vm_free(&vm);	/* stop, destroy: still within the allowlist */
	dev = NULL;
	_exit(t_fail ? 1 : 0);
}

TEST(under_seccomp)
{
	int pipefd[2];
	CHECK_EQ(pipe(pipefd), 0);
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(pipefd[1], STDERR_FILENO);
		close(pipefd[0]);
		seccomp_child();
	}
	close(pipefd[1]);
	char err[2048];
	size_t got = 0;
	ssize_t r;
	while (got + 1 < sizeof(err) && (r = read(pipefd[0], err + got, sizeof(err) - 1 - got)) > 0)
		got += r;
	err[got] = 0;
	close(pipefd[0]);
	int st;
	waitpid(pid, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	if (got)
		fprintf(stderr, "under_seccomp child: %s\n", err);
	CHECK(strstr(err, "seccomp blocked") == NULL);
}

static void setup_dir(void)
{
	snprintf(dir, sizeof(dir), "/tmp/test-vsock-XXXXXX");
	if (!mkdtemp(dir))
		exit(1);
	snprintf(path, sizeof(path), "%s/vm.vsock", dir);
	setenv("XDG_RUNTIME_DIR", dir, 1);
	struct rlimit rl;	/* the flood's 1024 connections */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4096 && rl.rlim_max > rl.rlim_cur) {
		rl.rlim_cur = MIN(rl.rlim_max, 4096);
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

TEST_MAIN()
