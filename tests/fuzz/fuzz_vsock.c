/*
 * libFuzzer target: virtio-vsock (virtio/vsock.c) through the PCI transport,
 * driven by a guest driver and host programs the input plays. The device's
 * loop runs on this thread (vsock_poll_once), so every input is deterministic.
 *
 * The input is a list of commands (a byte each, then its arguments; missing
 * bytes read as 0):
 *   0 guest packet: layout byte (bit 0 header split over two descriptors,
 *     bit 1 payload in its own descriptor, bit 2 another source CID, bit 3
 *     another destination CID, bit 4 another type, bit 5 a len field that
 *     is not the payload's, bit 6 credit values from the input), op byte
 *     (any, unknown ones included), guest port, host port (a listener, no
 *     listener, or a port the device picked for a host client), payload size
 *     (up to VSOCK_CONN_BUF + 1) and, as the bits ask, CIDs, type, len,
 *     buf_alloc and fwd_cnt
 *   1 the guest answers a REQUEST it got (RESPONSE, or RST)
 *   2 a host client connects and writes a line: CONNECT to a guest port, or
 *     a bad or partial one
 *   3 a host program writes up to 64 KiB on one of its connections
 *   4 a host program reads what is there; 5 half-closes; 6 closes
 *   7 the host programs' listeners accept what waits
 *   8 the guest posts receive buffers of sizes the input gives (tiny ones too)
 *   9 vsock_transport_reset(); 10 the driver resets the device and sets it up
 *   again; anything else: one more turn of the device's loop
 * and a turn of the loop after every command.
 *
 * Oracle: no crash, leak or hang; every packet the device puts in a receive
 * buffer is well formed (from CID 2 to ours, a known op, its len what the
 * used length says, no more than the buffer holds, RW payload within
 * MAX_PKT), every RW is covered by credit the guest declared for that
 * connection (some buf_alloc/fwd_cnt pair it sent), events are 4-byte
 * TRANSPORT_RESETs only after one was asked for, the device never holds more
 * than VSOCK_CONN_BUF bytes a connection nor more than VSOCK_MAX_CONNS
 * connections, and after a device reset it holds none and has closed every fd.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include "devices.h"
#include "fake_vm.h"
#include "hw.h"
#include "pci.h"
#include "util.h"
#include "virtio.h"
#include "virtio_driver.h"
#include "vm.h"
#include "vsock.h"
#define FUZZ_NAME "fuzz_vsock"
#include "fuzz_harness.h"

#define RAM 0x200000
#define QS 16
#define RX_Q 0x0000	/* desc, avail at +0x400, used at +0x800 */
#define TX_Q 0x1000
#define EV_Q 0x2000
#define EV_BUF 0x3000
#define RX_BUF 0x4000	/* QS buffers of up to 4 KiB */
#define TX_BUF 0x20000	/* TX_SLOTS slots of TX_SLOT, three descriptors each */
#define TX_SLOT 0x11000
#define TX_SLOTS (QS / 3)
#define HDR 44
#define CID 42
#define MAX_PKT 65536
#define MAX_FDS 32
#define MAX_PAIRS 64
#define MAX_KEYS 64

static struct vm vm;
static uint8_t *ram;
static struct vsock *dev;
static struct pci_dev *pdev;
/* The shared test driver (tests/lib/virtio_driver.h): the device and its queues. */
static struct vdev drv;
static struct vq rxq, txq, evq;
static char dir[64], sock[128];
static int listeners[2];	/* PATH_5000, PATH_5001 */
static int fds[MAX_FDS], nfds;
static int fd_baseline;

/* The input, read as needed. */
static const uint8_t *in;
static size_t in_len, in_pos;
static uint8_t u8(void) { return in_pos < in_len ? in[in_pos++] : 0; }
static uint16_t u16(void) { return u8() | u8() << 8; }
static uint32_t u32(void) { return u16() | (uint32_t)u16() << 16; }

/* What the guest knows: receive ring progress, REQUESTs to answer, credit it declared. */
static uint16_t rx_seen, ev_seen;
static uint32_t rx_size[QS];
static bool reset_asked;
static struct { uint32_t host_port, guest_port; } requests[16];
static int nrequests;
struct key {
	uint32_t host_port, guest_port;
	uint32_t tx_cnt;	/* RW bytes the device sent on it */
	int npairs;		/* -1: too many to follow */
	struct { uint32_t buf_alloc, fwd_cnt; } pairs[MAX_PAIRS];
};
static struct key keys[MAX_KEYS];
static int nkeys;

static uint8_t *g(uint64_t gpa) { return ram + gpa; }
static void msi_hook(struct vm *v, uint64_t addr, uint32_t data) {}
static void irq_hook(struct vm *v, unsigned gsi, int level) {}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	if (!d)
		fail("cannot list /proc/self/fd");
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void turn(void) { vsock_poll_once(dev, 0); }

static struct key *key_of(uint32_t host_port, uint32_t guest_port, bool make)
{
	for (int i = 0; i < nkeys; i++)
		if (keys[i].host_port == host_port && keys[i].guest_port == guest_port)
			return &keys[i];
	if (!make || nkeys == MAX_KEYS)
		return NULL;
	keys[nkeys] = (struct key){ host_port, guest_port, 0, 0 };
	return &keys[nkeys++];
}

static void declare(struct key *k, uint32_t buf_alloc, uint32_t fwd_cnt)
{
	if (!k || k->npairs < 0)
		return;
	if (k->npairs == MAX_PAIRS) {
		k->npairs = -1;
		return;
	}
	k->pairs[k->npairs].buf_alloc = buf_alloc;
	k->pairs[k->npairs++].fwd_cnt = fwd_cnt;
}

/* The driver resets the device and sets it up again: three queues, every buffer posted. */
static void driver_setup(void)
{
	vdev_reset(&drv);
	turn();	/* the device drops its connections */
	memset(ram, 0, TX_BUF);
	vdev_negotiate(&drv, 1 | 1ULL << VIRTIO_F_VERSION_1);	/* STREAM, VERSION_1 */
	static const uint64_t qs[3] = { RX_Q, TX_Q, EV_Q };
	struct vq *q[3] = { &rxq, &txq, &evq };
	for (int i = 0; i < 3; i++)
		vq_setup(q[i], &drv, i, QS, qs[i], qs[i] + 0x400, qs[i] + 0x800, -1);
	if (vdev_driver_ok(&drv))
		fail("driver set-up failed");
	rx_seen = ev_seen = 0;
	nrequests = nkeys = 0;
	for (int i = 0; i < QS; i++) {
		rx_size[i] = 4096;
		vq_desc(&rxq, i, RX_BUF + 0x1000 * i, rx_size[i], VD_F_WRITE, 0);
		vq_post(&rxq, i);
		vq_desc(&evq, i, EV_BUF + 16 * i, 4, VD_F_WRITE, 0);
		vq_post(&evq, i);
	}
	struct vsock_stats st;
	vsock_get_stats(dev, &st);
	if (st.conns || st.buffered)
		fail("after a device reset it still holds %u connections, %u bytes", st.conns, st.buffered);
}

/* Everything the device put in receive buffers since the last look: checked, buffers reposted. */
static void collect(void)
{
	uint16_t used = get_le16(g(RX_Q + 0x800 + 2));
	if ((uint16_t)(used - rx_seen) > QS)
		fail("%u receive buffers used, %d were posted", (uint16_t)(used - rx_seen), QS);
	while (rx_seen != used) {
		const uint8_t *e = g(RX_Q + 0x800 + 4 + 8 * (rx_seen % QS));
		uint32_t id = get_le32(e), len = get_le32(e + 4);
		rx_seen++;
		if (id >= QS)
			fail("used id %u", id);
		if (len > rx_size[id])
			fail("used length %u in a buffer of %u", len, rx_size[id]);
		if (len) {
			const uint8_t *b = g(RX_BUF + 0x1000 * id);
			if (len < HDR)
				fail("a packet of %u bytes", len);
			uint64_t src = get_le64(b), dst = get_le64(b + 8);
			uint32_t sp = get_le32(b + 16), dp = get_le32(b + 20), plen = get_le32(b + 24);
			uint16_t type = get_le16(b + 28), op = get_le16(b + 30);
			if (src != 2 || dst != CID)
				fail("packet from CID %llu to %llu", (unsigned long long)src, (unsigned long long)dst);
			if (op < 1 || op > 7 || (type != 1 && op != 3))
				fail("op %u type %u", op, type);
			if (plen != len - HDR || (plen && op != 5) || plen > MAX_PKT)
				fail("op %u with len %u in a used length of %u", op, plen, len);
			struct key *k = key_of(sp, dp, false);
			if (!k && (op == 1 || op == 2)) {
				k = key_of(sp, dp, true);
				if (k && op == 2)	/* the guest's REQUEST found no room in keys[]: its credit is unknown */
					k->npairs = -1;
			}
			if (k && (op == 1 || op == 2))	/* a connection starts: its count too */
				k->tx_cnt = 0;
			if (op == 1 && nrequests < 16) {
				requests[nrequests].host_port = sp;
				requests[nrequests++].guest_port = dp;
			}
			if (op == 5 && k && k->npairs >= 0) {
				k->tx_cnt += plen;
				bool covered = false;
				for (int i = 0; i < k->npairs && !covered; i++)
					covered = (uint32_t)(k->tx_cnt - k->pairs[i].fwd_cnt) <= k->pairs[i].buf_alloc;
				if (!covered)
					fail("%u bytes sent on %u->%u, beyond every credit the guest declared", k->tx_cnt, sp, dp);
			}
		}
		/* The buffer goes back, with a size the input picks now and then. */
		rx_size[id] = (u8() & 0xf) == 0xf ? 1 + u8() % 64 : 4096;
		vq_desc(&rxq, id, RX_BUF + 0x1000 * id, rx_size[id], 2, 0);
		vq_post(&rxq, id);
	}
	used = get_le16(g(EV_Q + 0x800 + 2));
	while (ev_seen != used) {
		const uint8_t *e = g(EV_Q + 0x800 + 4 + 8 * (ev_seen % QS));
		uint32_t id = get_le32(e), len = get_le32(e + 4);
		ev_seen++;
		if (id >= QS || len != 4 || get_le32(g(EV_BUF + 16 * id)) != 0 || !reset_asked)
			fail("event %u of %u bytes (asked: %d)", id, len, reset_asked);
		reset_asked = false;
		vq_post(&evq, id);
	}
	struct vsock_stats st;
	vsock_get_stats(dev, &st);
	if (st.conns > VSOCK_MAX_CONNS || st.buffered > (uint64_t)st.conns * VSOCK_CONN_BUF)
		fail("%u connections holding %u bytes", st.conns, st.buffered);
}

static void add_fd(int fd)
{
	if (fd < 0)
		return;
	if (nfds == MAX_FDS) {
		close(fd);
		return;
	}
	fds[nfds++] = fd;
}

static void guest_packet(void)
{
	uint8_t layout = u8(), op = u8();
	if (op >= 0xf0)
		op = u8();	/* any op at all */
	else
		op %= 9;	/* 0 (INVALID) to 8 (unknown) */
	uint32_t gp = 1000 + u8() % 4, hp;
	uint8_t which = u8();
	if (which % 4 == 3 && nrequests)
		hp = requests[(which / 4) % nrequests].host_port;
	else
		hp = 5000 + which % 4;	/* 5000 and 5001 listen, 5002 and 5003 do not */
	uint8_t sz = u8();
	uint32_t plen = sz < 0x80 ? sz : sz < 0xc0 ? 4096 : sz < 0xe0 ? u16() : sz < 0xf0 ? VSOCK_CONN_BUF : VSOCK_CONN_BUF + 1;
	uint8_t h[HDR];
	put_le64(h, layout & 4 ? u32() : CID);
	put_le64(h + 8, layout & 8 ? u32() : 2);
	put_le32(h + 16, gp);
	put_le32(h + 20, hp);
	put_le32(h + 24, layout & 32 ? u32() : plen);
	put_le16(h + 28, layout & 16 ? u16() : 1);
	put_le16(h + 30, op);
	put_le32(h + 32, u8());
	struct key *k = key_of(hp, gp, true);
	uint32_t ba = 65536, fc = k ? k->tx_cnt : 0;
	if (layout & 64) {
		ba = u32();
		fc = u32();
	}
	put_le32(h + 36, ba);
	put_le32(h + 40, fc);
	if (get_le64(h) == CID && get_le64(h + 8) == 2 && get_le16(h + 28) == 1)
		declare(k, ba, fc);	/* the device may take its credit from this one */
	/* The slot's previous packet must have been taken; else the device is saturated: skip. */
	uint16_t used = get_le16(g(TX_Q + 0x800 + 2));
	if ((uint16_t)(txq.avail_idx - used) >= TX_SLOTS)
		return;
	int slot = txq.avail_idx % TX_SLOTS;
	uint64_t buf = TX_BUF + TX_SLOT * slot;
	memcpy(g(buf), h, HDR);
	for (uint32_t i = 0; i < plen; i++)
		*g(buf + 0x1000 + i) = (uint8_t)(i * 7 + op);
	int d = 3 * slot, n = 0;
	if (layout & 1) {
		vq_desc(&txq, d + n, buf, 20, 1, d + n + 1); n++;
		vq_desc(&txq, d + n, buf + 20, HDR - 20, plen ? 1 : 0, d + n + 1); n++;
	} else {
		vq_desc(&txq, d + n, buf, HDR, plen ? 1 : 0, d + n + 1); n++;
	}
	if (plen)
		vq_desc(&txq, d + n, buf + 0x1000, plen, 0, 0);
	vq_post(&txq, d);
}

static void answer_request(void)
{
	if (!nrequests)
		return;
	uint8_t b = u8();
	int i = b % nrequests;
	uint8_t h[HDR] = { 0 };
	put_le64(h, CID);
	put_le64(h + 8, 2);
	put_le32(h + 16, requests[i].guest_port);
	put_le32(h + 20, requests[i].host_port);
	put_le16(h + 28, 1);
	put_le16(h + 30, b & 0x80 ? 3 : 2);
	put_le32(h + 36, 65536);
	struct key *k = key_of(requests[i].host_port, requests[i].guest_port, true);
	declare(k, 65536, 0);
	uint16_t used = get_le16(g(TX_Q + 0x800 + 2));
	if ((uint16_t)(txq.avail_idx - used) >= TX_SLOTS)
		return;
	int slot = txq.avail_idx % TX_SLOTS;
	memcpy(g(TX_BUF + TX_SLOT * slot), h, HDR);
	vq_desc(&txq, 3 * slot, TX_BUF + TX_SLOT * slot, HDR, 0, 0);
	vq_post(&txq, 3 * slot);
}

static void host_client(void)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	memcpy(sa.sun_path, sock, strlen(sock));
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (fd >= 0)
			close(fd);
		return;
	}
	char line[64];
	uint8_t kind = u8();
	int n;
	switch (kind % 6) {
	case 0: case 1: case 2: n = snprintf(line, sizeof(line), "CONNECT %u\n", 1000 + u8() % 4); break;
	case 3: n = snprintf(line, sizeof(line), "CONNECT %u\n", u32()); break;
	case 4: n = snprintf(line, sizeof(line), "CONNECT %u", 1000 + u8() % 4); break;	/* no end yet */
	default:
		n = u8() % 40;
		for (int i = 0; i < n; i++)
			line[i] = u8();
	}
	if (send(fd, line, n, MSG_NOSIGNAL) < 0) {}
	add_fd(fd);
}

static void host_write(void)
{
	if (!nfds)
		return;
	int fd = fds[u8() % nfds];
	static uint8_t data[65536];
	size_t n = u8() < 0x80 ? u8() : u16();
	for (size_t i = 0; i < n; i++)
		data[i] = (uint8_t)(i * 13 + 1);
	if (send(fd, data, n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {}
}

static void host_read(void)
{
	if (!nfds)
		return;
	static uint8_t data[65536];
	if (recv(fds[u8() % nfds], data, sizeof(data), MSG_DONTWAIT) < 0) {}
}

static void host_close(bool half)
{
	if (!nfds)
		return;
	int i = u8() % nfds;
	if (half) {
		shutdown(fds[i], SHUT_WR);
		return;
	}
	close(fds[i]);
	fds[i] = fds[--nfds];
}

static void host_accept(void)
{
	for (int l = 0; l < 2; l++) {
		int fd;
		while ((fd = accept4(listeners[l], NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0)
			add_fd(fd);
	}
}

static void post_rx_sizes(void)
{
	/* Sizes for the buffers the device has not used yet: rewritten before it pops them. */
	uint16_t used = get_le16(g(RX_Q + 0x800 + 2));
	for (uint16_t i = used; i != rxq.avail_idx; i++) {
		uint16_t id = get_le16(g(RX_Q + 0x400 + 4 + 2 * (i % QS)));
		if (id >= QS)
			continue;
		uint8_t b = u8();
		rx_size[id] = b < 0x40 ? 1 + b : b < 0x50 ? HDR : 4096;
		vq_desc(&rxq, id, RX_BUF + 0x1000 * id, rx_size[id], 2, 0);
	}
}

/* The sockets and their folder go when libFuzzer exits (not after a crash: they tell of it). */
static void remove_dir(void)
{
	char p[160];
	for (int l = 0; l < 2; l++) {
		snprintf(p, sizeof(p), "%s_%d", sock, 5000 + l);
		unlink(p);
	}
	unlink(sock);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_add_timeout(argc, argv);
	snprintf(dir, sizeof(dir), "/tmp/lkvm-fuzz-vsock-XXXXXX");
	if (!mkdtemp(dir))
		fail("mkdtemp: %s", strerror(errno));
	snprintf(sock, sizeof(sock), "%s/v.sock", dir);
	atexit(remove_dir);
	static const struct irq_ops irqs = { .line = irq_hook, .msi = msi_hook };
	fake_vm_init(&vm, &irqs);
	ram = calloc(1, RAM);	/* malloc: ASan red zones around guest RAM */
	vm.mem.r[0] = (struct mem_region){ 0, RAM, ram };
	vm.mem.nr = 1;
	vm.mem.ram_size = RAM;
	if (device_type_create(&vm, &pci_host_device) < 0)
		fail("pci host: %s", err_msg());
	dev = vsock_create(&vm, CID, sock);	/* never started: the loop runs on this thread */
	if (!dev)
		fail("vsock_create: %s", err_msg());
	pdev = pci_host(&vm)->devs[1];
	vdev_attach(&drv, &vm, pdev);
	for (int l = 0; l < 2; l++) {
		char p[160];
		snprintf(p, sizeof(p), "%s_%d", sock, 5000 + l);
		listeners[l] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		memcpy(sa.sun_path, p, strlen(p));
		if (bind(listeners[l], (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(listeners[l], 64) < 0)
			fail("listener %s: %s", p, strerror(errno));
	}
	driver_setup();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	in = data;
	in_len = size;
	in_pos = 0;
	reset_asked = false;
	fd_baseline = count_fds();	/* (libFuzzer opens files of its own between inputs) */
	for (int cmds = 0; in_pos < in_len && cmds < 200; cmds++) {
		uint8_t c = u8();
		switch (c % 16) {
		case 0: guest_packet(); break;
		case 1: answer_request(); break;
		case 2: host_client(); break;
		case 3: host_write(); break;
		case 4: host_read(); break;
		case 5: host_close(true); break;
		case 6: host_close(false); break;
		case 7: host_accept(); break;
		case 8: post_rx_sizes(); break;
		case 9: vsock_transport_reset(dev); reset_asked = true; break;
		case 10: driver_setup(); break;
		default: break;
		}
		turn();
		collect();
	}
	/* Clean up for the next input, and see that nothing stayed behind. */
	while (nfds)
		close(fds[--nfds]);
	host_accept();
	while (nfds)
		close(fds[--nfds]);
	driver_setup();
	int n = count_fds();
	if (n != fd_baseline)
		fail("%d fds open after the device reset, %d before the input", n, fd_baseline);
	return 0;
}
