/*
 * virtio devices driven the way a guest driver would: config space, the
 * modern common config, rings in a guest-memory buffer, kicks on the notify
 * region. Then hostile chains, each of which must break only the device.
 */
#include <fcntl.h>
#include <unistd.h>
#include "test.h"
#include "fake_vm.h"
#include "disk.h"
#include "hw.h"
#include "pci.h"
#include "util.h"
#include "virtio.h"
#include "vm.h"

static struct vm vm;
static int msis, last_msi_data, intx_level;
static void msi_hook(struct vm *v, uint64_t addr, uint32_t data) { msis++; last_msi_data = data; }
static void irq_hook(struct vm *v, unsigned gsi, int level) { intx_level = level; }

#define DESC 0x100000
#define AVAIL 0x101000
#define USED 0x102000
#define BUF 0x110000
#define QSIZE 8

static uint64_t bar;
static uint64_t rd(uint64_t off, int len) { uint64_t v = 0; bus_access(&vm.mmio, bar + off, &v, len, false); return v; }
static void wr(uint64_t off, uint64_t v, int len) { bus_access(&vm.mmio, bar + off, &v, len, true); }
static uint8_t *g(uint64_t gpa) { return guest_ptr(&vm.mem, gpa, 1); }

static void setup_vm(void)
{
	fake_vm_init(&vm, irq_hook);
	vm.msi_hook = msi_hook;
	guest_mem_alloc(&vm.mem, MiB(16));
	pci_host_init(&vm);
}

/* Reset, negotiate, one queue of QSIZE at DESC/AVAIL/USED, DRIVER_OK. */
static int driver_init(struct pci_dev *p, uint64_t feats)
{
	bar = pci_cfg_read(p, 0x10, 4) & ~0xfULL;
	wr(0x14, 0, 1);
	memset(g(DESC), 0, 0x3000);
	wr(0x14, VIRTIO_STATUS_ACK | VIRTIO_STATUS_DRIVER, 1);
	wr(0x08, 0, 4); wr(0x0c, (uint32_t)feats, 4);
	wr(0x08, 1, 4); wr(0x0c, feats >> 32, 4);
	wr(0x14, VIRTIO_STATUS_ACK | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK, 1);
	if (!(rd(0x14, 1) & VIRTIO_STATUS_FEATURES_OK))
		return -1;
	wr(0x16, 0, 2);
	wr(0x18, QSIZE, 2);
	wr(0x20, DESC, 4); wr(0x24, 0, 4);
	wr(0x28, AVAIL, 4); wr(0x2c, 0, 4);
	wr(0x30, USED, 4); wr(0x34, 0, 4);
	wr(0x1c, 1, 2);
	wr(0x14, 0xf, 1);
	return rd(0x1c, 2) == 1 ? 0 : -1;
}

static void desc(int i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	uint8_t *d = g(DESC + 16 * i);
	put_le64(d, addr); put_le32(d + 8, len); put_le16(d + 12, flags); put_le16(d + 14, next);
}

static uint16_t avail_idx;
static void post(uint16_t head)
{
	put_le16(g(AVAIL + 4 + 2 * (avail_idx % QSIZE)), head);
	avail_idx++;
	put_le16(g(AVAIL + 2), avail_idx);
	wr(VPCI_NOTIFY, 0, 2);
}

/* Wait (the blk worker is a thread) until the used index reaches want. */
static int wait_used(uint16_t want)
{
	for (int i = 0; i < 2000; i++) {
		if (get_le16(g(USED + 2)) == want)
			return 0;
		usleep(1000);
	}
	return -1;
}

/* header at BUF, data at BUF+0x1000, status at BUF+0x3000 */
static int blk_request(uint32_t type, uint64_t sector, uint32_t len, bool data_out)
{
	put_le32(g(BUF), type); put_le32(g(BUF + 4), 0); put_le64(g(BUF + 8), sector);
	*g(BUF + 0x3000) = 0xee;
	desc(0, BUF, 16, 1, 1);
	if (len) {
		desc(1, BUF + 0x1000, len, 1 | (data_out ? 0 : 2), 2);
		desc(2, BUF + 0x3000, 1, 2, 0);
	} else {
		desc(1, BUF + 0x3000, 1, 2, 0);
	}
	uint16_t before = get_le16(g(USED + 2));
	post(0);
	if (wait_used(before + 1) < 0)
		return -1;
	return *g(BUF + 0x3000);
}

static struct pci_dev *dev_at(int slot) { return vm.pci->devs[slot]; }

TEST(blk_requests)
{
	setup_vm();
	char path[] = "/tmp/lkvm-test-blk-XXXXXX";
	int fd = mkstemp(path);
	CHECK(ftruncate(fd, MiB(1)) == 0);
	struct disk *dk = disk_open(path, false, false);
	CHECK(dk != NULL);
	strcpy(dk->serial, "serial-123");
	CHECK_EQ(virtio_blk_add(&vm, dk), 0);
	struct pci_dev *p = dev_at(1);
	CHECK_EQ(pci_cfg_read(p, 0, 4), 0x10421af4);
	avail_idx = 0;
	/* Without VERSION_1 the device refuses FEATURES_OK. */
	CHECK_EQ(driver_init(p, 0), -1);
	avail_idx = 0;
	CHECK_EQ(driver_init(p, 1ULL << VIRTIO_F_VERSION_1 | 1ULL << 9), 0);
	CHECK_EQ(rd(VPCI_DEVICE, 4), 2048);	/* capacity in sectors */
	memset(g(BUF + 0x1000), 0xab, 1024);
	CHECK_EQ(blk_request(1, 3, 1024, true), 0);	/* write sectors 3-4 */
	uint8_t file[1024];
	CHECK_EQ(pread(fd, file, 1024, 3 * 512), 1024);
	CHECK(file[0] == 0xab && file[1023] == 0xab);
	CHECK_EQ(pwrite(fd, "host", 4, 10 * 512), 4);
	CHECK_EQ(blk_request(0, 10, 512, false), 0);	/* read sector 10 */
	CHECK(!memcmp(g(BUF + 0x1000), "host", 4));
	CHECK_EQ(get_le32(g(USED + 4 + 8 * ((get_le16(g(USED + 2)) - 1) % QSIZE) + 4)), 513);	/* data + status */
	CHECK_EQ(blk_request(4, 0, 0, false), 0);	/* flush */
	CHECK_EQ(blk_request(8, 0, 20, false), 0);	/* get id */
	CHECK(!memcmp(g(BUF + 0x1000), "serial-123", 10));
	CHECK_EQ(blk_request(0, 2047, 1024, false), 1);	/* past the end */
	CHECK_EQ(blk_request(0, UINT64_MAX / 512, 512, false), 1);	/* overflowing sector */
	CHECK_EQ(blk_request(1, 0, 100, true), 1);	/* not a multiple of 512 */
	CHECK_EQ(blk_request(99, 0, 0, false), 2);	/* unsupported */
	/* INTx while MSI-X is off: the ISR says queue interrupt, reading it lowers the line. */
	CHECK_EQ(intx_level, 1);
	CHECK_EQ(rd(VPCI_ISR, 1) & 1, 1);
	CHECK_EQ(intx_level, 0);
	/* MSI-X: enable, unmask vector 0 for the queue. */
	int cap = -1;
	for (int o = pci_cfg_read(p, 0x34, 1); o; o = pci_cfg_read(p, o + 1, 1))
		if (pci_cfg_read(p, o, 1) == 0x11)
			cap = o;
	CHECK(cap > 0);
	pci_cfg_write(p, cap + 2, 0x8000, 2);
	wr(VPCI_MSIX_TABLE, 0xfee00000, 4); wr(VPCI_MSIX_TABLE + 8, 0x4041, 4); wr(VPCI_MSIX_TABLE + 12, 0, 4);
	wr(0x16, 0, 2); wr(0x1a, 0, 2);
	int before = msis;
	CHECK_EQ(blk_request(0, 0, 512, false), 0);
	CHECK_EQ(msis, before + 1);
	CHECK_EQ(last_msi_data, 0x4041);
	/* A read-only disk refuses writes. */
	dk->ro = true;
	CHECK_EQ(blk_request(1, 0, 512, true), 1);
	close(fd);
	unlink(path);
}

/* Each hostile chain must leave the device needing reset, with nothing used. */
static void hostile(const char *what, void (*make)(void))
{
	t_name = what;
	struct pci_dev *p = dev_at(1);
	avail_idx = 0;
	CHECK_EQ(driver_init(p, 1ULL << VIRTIO_F_VERSION_1 | 1ULL << 28), 0);
	make();
	usleep(20000);
	CHECK(rd(0x14, 1) & VIRTIO_STATUS_NEEDS_RESET);
	CHECK_EQ(get_le16(g(USED + 2)), 0);
}

static void h_loop(void) { desc(0, BUF, 16, 1, 1); desc(1, BUF + 16, 16, 1, 0); post(0); }
static void h_out_of_ram(void) { desc(0, 0x7f0000000ULL, 512, 0, 0); post(0); }
static void h_wrap(void) { desc(0, 0xfffffffffffff000ULL, 0x2000, 0, 0); post(0); }
static void h_zero(void) { desc(0, BUF, 0, 0, 0); post(0); }
static void h_huge(void) { desc(0, BUF, 0xffffffff, 0, 0); post(0); }
static void h_ind_out(void) { desc(0, 0x7f0000000ULL, 64, 4, 0); post(0); }
static void h_ind_len(void) { desc(0, BUF, 17, 4, 0); post(0); }
static void h_ind_nested(void)
{
	uint8_t *t = g(BUF + 0x2000);
	put_le64(t, BUF + 0x2000); put_le32(t + 8, 16); put_le16(t + 12, 4);
	desc(0, BUF + 0x2000, 16, 4, 0); post(0);
}
static void h_read_after_write(void) { desc(0, BUF, 16, 2 | 1, 1); desc(1, BUF + 16, 16, 0, 0); post(0); }
static void h_head(void) { put_le16(g(AVAIL + 4), 200); put_le16(g(AVAIL + 2), 1); wr(VPCI_NOTIFY, 0, 2); }
static void h_jump(void) { desc(0, BUF, 16, 0, 0); put_le16(g(AVAIL + 2), 100); wr(VPCI_NOTIFY, 0, 2); }
static void h_next_range(void) { desc(0, BUF, 16, 1, 77); post(0); }

TEST(hostile_chains)
{
	setup_vm();
	char path[] = "/tmp/lkvm-test-blk-XXXXXX";
	int fd = mkstemp(path);
	CHECK(ftruncate(fd, MiB(1)) == 0);
	struct disk *dk = disk_open(path, false, false);
	CHECK_EQ(virtio_blk_add(&vm, dk), 0);
	hostile("descriptor loop", h_loop);
	hostile("address outside RAM", h_out_of_ram);
	hostile("address+len wraps", h_wrap);
	hostile("zero length", h_zero);
	hostile("4 GiB length", h_huge);
	hostile("indirect table outside RAM", h_ind_out);
	hostile("indirect table bad length", h_ind_len);
	hostile("nested indirect", h_ind_nested);
	hostile("readable after writable", h_read_after_write);
	hostile("head out of range", h_head);
	hostile("avail index jump", h_jump);
	hostile("next out of range", h_next_range);
	/* Enabling a queue whose ring lies outside RAM breaks the device at once. */
	t_name = "ring outside RAM";
	wr(0x14, 0, 1);
	wr(0x14, 3, 1);
	wr(0x08, 1, 4); wr(0x0c, 1, 4);
	wr(0x14, 0xb, 1);
	wr(0x16, 0, 2); wr(0x20, 0xfff00000, 4); wr(0x24, 0x7, 4); wr(0x1c, 1, 2);
	CHECK(rd(0x14, 1) & VIRTIO_STATUS_NEEDS_RESET);
	CHECK_EQ(rd(0x1c, 2), 0);
	/* A reset makes it usable again. */
	t_name = "reset recovers";
	avail_idx = 0;
	CHECK_EQ(driver_init(dev_at(1), 1ULL << VIRTIO_F_VERSION_1), 0);
	CHECK(!(rd(0x14, 1) & VIRTIO_STATUS_NEEDS_RESET));
	CHECK_EQ(blk_request(0, 0, 512, false), 0);
	close(fd);
	unlink(path);
}

TEST(rng)
{
	setup_vm();
	vm.cfg.rng = true;
	CHECK_EQ(virtio_rng_init(&vm), 0);
	struct pci_dev *p = dev_at(1);
	CHECK_EQ(pci_cfg_read(p, 0, 4), 0x10441af4);
	avail_idx = 0;
	CHECK_EQ(driver_init(p, 1ULL << VIRTIO_F_VERSION_1), 0);
	memset(g(BUF), 0, 64);
	desc(0, BUF, 64, 2, 0);
	post(0);
	CHECK_EQ(wait_used(1), 0);
	int zeros = 0;
	for (int i = 0; i < 64; i++)
		zeros += *g(BUF + i) == 0;
	CHECK(zeros < 16);
	CHECK_EQ(get_le32(g(USED + 8)), 64);
}

TEST_MAIN()
