/*
 * virtio devices driven the way a guest driver would: config space, the
 * modern common config, rings in a guest-memory buffer, kicks on the notify
 * region. Then hostile chains, each of which must break only the device.
 */
#include <fcntl.h>
#include <unistd.h>
#include "devices.h"
#include "test.h"
#include "fake_vm.h"
#include "disk.h"
#include "hw.h"
#include "pci.h"
#include "util.h"
#include "virtio.h"
#include "vm.h"

#include "virtio_fixture.h"

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
	CHECK_EQ(devices_start(&vm), 0);
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
	/* The device's worker sees the chain: up to 5 s for it (a loaded machine is slow), not a fixed nap. */
	for (int i = 0; i < 5000 && !(rd(0x14, 1) & VIRTIO_STATUS_NEEDS_RESET); i++)
		usleep(1000);
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
	CHECK_EQ(devices_start(&vm), 0);
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
	CHECK_EQ(device_type_option(&vm.cfg, &virtio_rng_device, "rng", NULL), 0);
	CHECK_EQ(device_type_create(&vm, &virtio_rng_device), 0);
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

/* A slice of a chain's buffers: skipped bytes, a short end, adjacent pieces joined, a full table. */
TEST(iov_slices)
{
	static uint8_t m[8 * 4096];
	struct iovec in[] = { { m, 11 }, { m + 4096, 4096 }, { m + 8192, 4096 }, { m + 4 * 4096, 4096 },
			      { m + 5 * 4096, 100 } };
	struct iovec out[8];
	size_t got = 0;
	/* The 11-byte header skipped; pages 1-2 adjacent, then 4-5 adjacent. */
	int k = iov_sub(in, 5, 11, 3 * 4096, out, 8, &got);
	CHECK_EQ(k, 2);
	CHECK_EQ(got, 3 * 4096);
	CHECK(out[0].iov_base == m + 4096 && out[0].iov_len == 2 * 4096);
	CHECK(out[1].iov_base == m + 4 * 4096 && out[1].iov_len == 4096);
	/* A skip inside a piece; the header joins nothing (pages not adjacent to it). */
	k = iov_sub(in, 5, 5, 20000, out, 8, &got);
	CHECK_EQ(k, 3);
	CHECK_EQ(got, 6 + 8192 + 4096 + 100);
	CHECK(out[0].iov_base == m + 5 && out[0].iov_len == 6);
	CHECK(out[2].iov_base == m + 4 * 4096 && out[2].iov_len == 4196);
	/* At most max entries: the slice ends short, and says so. */
	k = iov_sub(in, 5, 0, 20000, out, 1, &got);
	CHECK_EQ(k, 1);
	CHECK_EQ(got, 11);
	/* The same page twice (a driver may do that): not adjacent, two entries. */
	struct iovec twice[] = { { m, 4096 }, { m, 4096 } };
	CHECK_EQ(iov_sub(twice, 2, 0, 8192, out, 8, &got), 2);
	CHECK_EQ(got, 8192);
}

TEST_MAIN()
