/*
 * virtio-net driven as a guest's driver would, over a backend the test plays:
 * frames on the transmit queue come out with their header split off; frames
 * injected (in pieces) come back on the receive queue with a correct header, spread over
 * mergeable buffers, held while the guest has no buffers, and hostile chains
 * only cost the guest its buffers.
 */
#include <fcntl.h>
#include <pthread.h>
#include "devices.h"
#include "test.h"
#include "net.h"
#include "virtio_fixture.h"
#include "vm.h"

#define DESC1 0x104000	/* transmit queue */
#define AVAIL1 0x105000
#define USED1 0x106000
#define RXBUF 0x120000
#define TXBUF 0x130000

/* The backend the test plays: records transmitted frames, injects frames on demand. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t tx_hdr[VNET_HDR_LEN], tx_frame[4096];
static size_t tx_len;
static int tx_count;
static int inject_pipe[2];
static uint8_t rx_frame[4096];
static size_t rx_len;
static bool rx_pending;
static int rx_result = 99;

static void fb_tx(void *p, const uint8_t *hdr, const struct iovec *iov, int n, size_t len)
{
	pthread_mutex_lock(&lock);
	memcpy(tx_hdr, hdr, VNET_HDR_LEN);
	tx_len = 0;
	for (int i = 0; i < n; i++) {
		memcpy(tx_frame + tx_len, iov[i].iov_base, iov[i].iov_len);
		tx_len += iov[i].iov_len;
	}
	CHECK_EQ(tx_len, len);
	tx_count++;
	pthread_mutex_unlock(&lock);
}

static int fb_poll_fds(void *p, struct pollfd *fds, int max, bool rx_room)
{
	fds[0] = (struct pollfd){ .fd = inject_pipe[0], .events = POLLIN };
	return 1;
}

static struct net_backend be;

static void fb_poll_events(void *p, const struct pollfd *fds, int n)
{
	char c;
	if (fds[0].revents & POLLIN && read(inject_pipe[0], &c, 1) == 1)
		rx_pending = true;
	pthread_mutex_lock(&lock);
	if (rx_pending) {
		uint8_t hdr[VNET_HDR_LEN] = { VIRTIO_NET_HDR_F_DATA_VALID };
		/* In three pieces apart in memory, cut at a third and two thirds (as the user-mode stack hands over
		 * headers and a payload in two): every frame checked below lands byte for byte all the same. */
		static uint8_t apart[3][4096 + 64];
		size_t a = rx_len / 3, b = rx_len * 2 / 3;
		memcpy(apart[0], rx_frame, a);
		memcpy(apart[1] + 1, rx_frame + a, b - a);
		memcpy(apart[2] + 3, rx_frame + b, rx_len - b);
		struct iovec v[3] = { { apart[0], a }, { apart[1] + 1, b - a }, { apart[2] + 3, rx_len - b } };
		rx_result = vnet_rx_iov(be.owner, hdr, v, 3, rx_len);
		if (rx_result >= 0)
			rx_pending = false;
	}
	pthread_mutex_unlock(&lock);
}

static const struct net_backend_ops fb_ops = { .tx = fb_tx, .poll_fds = fb_poll_fds, .poll_events = fb_poll_events };

static void inject(size_t len)
{
	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < len; i++)
		rx_frame[i] = (uint8_t)(i * 7 + 1);
	rx_len = len;
	rx_result = 99;
	pthread_mutex_unlock(&lock);
	CHECK_EQ(write(inject_pipe[1], "x", 1), 1);
}

static int wait_result(void)
{
	for (int i = 0; i < 2000; i++) {
		pthread_mutex_lock(&lock);
		int r = rx_result;
		pthread_mutex_unlock(&lock);
		if (r != 99)
			return r;
		usleep(1000);
	}
	return 99;
}

/* RX chain at descriptor i: one writable buffer of len at addr. */
static void rx_buffer(int i, uint64_t addr, uint32_t len)
{
	desc(i, addr, len, 2, 0);
	post_on(0, AVAIL, i);
}

TEST(virtio_net)
{
	setup_vm();
	CHECK_EQ(pipe2(inject_pipe, O_NONBLOCK), 0);
	be = (struct net_backend){ .ops = &fb_ops, .offloads = 1ULL << VIRTIO_NET_F_CSUM };
	struct net_opt o = { .mode = NET_USER, .mac = { 0x52, 0x54, 0, 1, 2, 3 }, .mac_set = true };
	CHECK(virtio_net_add(&vm, &o, &be) != NULL);
	CHECK_EQ(devices_start(&vm), 0);
	struct pci_dev *p = dev_at(1);
	CHECK_EQ(pci_cfg_read(p, 0x02, 2), 0x1040 + 1);
	uint64_t feats = 1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_NET_F_MAC | 1ULL << VIRTIO_NET_F_STATUS |
			 1ULL << VIRTIO_NET_F_MRG_RXBUF | 1ULL << VIRTIO_NET_F_CSUM;
	fx_attach(p);
	wr(0x00, 0, 4);
	CHECK_EQ(rd(0x04, 4) & (uint32_t)feats, (uint32_t)feats);	/* all offered */
	CHECK_EQ(driver_init(p, feats), 0);
	setup_queue(1, DESC1, AVAIL1, USED1);
	/* Config: the MAC given, link up. */
	CHECK_EQ(rd(VPCI_DEVICE, 4), 0x01005452);
	CHECK_EQ(rd(VPCI_DEVICE + 4, 2), 0x0302);
	CHECK_EQ(rd(VPCI_DEVICE + 6, 2), 1);

	/* TX: header (NEEDS_CSUM, start 34, offset 16) and a 60-byte frame in two pieces. */
	uint8_t *h = g(TXBUF);
	memset(h, 0, VNET_HDR_LEN);
	h[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	put_le16(h + 6, 34);
	put_le16(h + 8, 16);
	for (int i = 0; i < 60; i++)
		*g(TXBUF + 0x100 + i) = i;
	uint8_t *d1 = g(DESC1);
	put_le64(d1, TXBUF); put_le32(d1 + 8, VNET_HDR_LEN + 20); put_le16(d1 + 12, 1); put_le16(d1 + 14, 1);
	memcpy(g(TXBUF + VNET_HDR_LEN), g(TXBUF + 0x100), 20);
	put_le64(d1 + 16, TXBUF + 0x100 + 20); put_le32(d1 + 24, 40); put_le16(d1 + 28, 0);
	post_on(1, AVAIL1, 0);
	CHECK_EQ(wait_idx(USED1, 1), 0);
	pthread_mutex_lock(&lock);
	CHECK_EQ(tx_count, 1);
	CHECK_EQ(tx_len, 60);
	CHECK_EQ(tx_hdr[0], VIRTIO_NET_HDR_F_NEEDS_CSUM);
	CHECK_EQ(get_le16(tx_hdr + 6), 34);
	CHECK(!memcmp(tx_frame, g(TXBUF + 0x100), 60));
	pthread_mutex_unlock(&lock);

	/* A chain shorter than the header never reaches the backend. */
	put_le32(d1 + 8, 5); put_le16(d1 + 12, 0);
	post_on(1, AVAIL1, 0);
	CHECK_EQ(wait_idx(USED1, 2), 0);
	CHECK_EQ(tx_count, 1);

	/* RX: a 1500-byte frame over two 1000-byte mergeable buffers, published together. */
	rx_buffer(0, RXBUF, 1000);
	rx_buffer(1, RXBUF + 0x1000, 1000);
	inject(1500);
	CHECK_EQ(wait_result(), 0);
	CHECK_EQ(get_le16(g(USED + 2)), 2);
	CHECK_EQ(get_le32(g(USED + 4 + 4)), 1000);
	CHECK_EQ(get_le32(g(USED + 12 + 4)), VNET_HDR_LEN + 1500 - 1000);
	CHECK_EQ(*g(RXBUF), VIRTIO_NET_HDR_F_DATA_VALID);
	CHECK_EQ(get_le16(g(RXBUF + 10)), 2);	/* num_buffers */
	CHECK(!memcmp(g(RXBUF + VNET_HDR_LEN), rx_frame, 1000 - VNET_HDR_LEN));
	CHECK(!memcmp(g(RXBUF + 0x1000), rx_frame + 1000 - VNET_HDR_LEN, 1500 - (1000 - VNET_HDR_LEN)));

	/* No buffers: the frame waits; a posted buffer (and its kick) lets it in. */
	inject(100);
	CHECK_EQ(wait_result(), -1);
	CHECK_EQ(get_le16(g(USED + 2)), 2);
	rx_buffer(2, RXBUF + 0x2000, 2048);
	CHECK_EQ(wait_idx(USED, 3), 0);
	CHECK_EQ(get_le32(g(USED + 4 + 8 * 2 + 4)), VNET_HDR_LEN + 100);
	CHECK(!memcmp(g(RXBUF + 0x2000 + VNET_HDR_LEN), rx_frame, 100));

	/* Hostile: a receive chain with nothing writable: returned unused, the frame dropped, no crash. */
	desc(3, RXBUF + 0x3000, 64, 0, 0);
	post_on(0, AVAIL, 3);
	inject(64);
	CHECK_EQ(wait_result(), 1);
	CHECK_EQ(get_le16(g(USED + 2)), 4);
	CHECK_EQ(get_le32(g(USED + 4 + 8 * 3 + 4)), 0);
	/* A frame larger than every buffer the ring can hold: dropped, buffers handed back. */
	for (int i = 0; i < QSIZE; i++)
		rx_buffer(i, RXBUF + 0x100 * i, 64);
	inject(3000);
	CHECK_EQ(wait_result(), 1);
	CHECK_EQ(get_le16(g(USED + 2)), 4);
	inject(40);	/* the buffers are still there for the next frame */
	CHECK_EQ(wait_result(), 0);
	CHECK_EQ(get_le16(g(USED + 2)), 5);
}

TEST(network_option_defaults)
{
	/* mode=none adds no device (this fake VM has no PCI host to add one to). */
	struct vm v2;
	fake_vm_init(&v2, &fake_irq_recorder);
	CHECK_EQ(device_type_option(&v2.cfg, &virtio_net_device, "network", "mode=none"), 0);
	CHECK_EQ(device_type_create(&v2, &virtio_net_device), 0);
}

TEST_MAIN()
