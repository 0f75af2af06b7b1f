/*
 * virtio-blk DISCARD and WRITE_ZEROES (the ranges, their checks, the config
 * fields that advertise them) and a qcow2-backed device, driven through the
 * transport the way a guest would. Requests with the basic types are in
 * test_virtio.c.
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include "test.h"
#include "fake_vm.h"
#include "disk.h"
#include "hw.h"
#include "pci.h"
#include "util.h"
#include "virtio.h"
#include "vm.h"

#include "virtio_fixture.h"

#define F_DISCARD 13
#define F_WRITE_ZEROES 14

static void range(int i, uint64_t sector, uint32_t n, uint32_t flags)
{
	uint8_t *r = g(BUF + 0x1000 + 16 * i);
	put_le64(r, sector); put_le32(r + 8, n); put_le32(r + 12, flags);
}

static uint64_t allocated_bytes(int fd)
{
	struct stat st;
	fstat(fd, &st);
	return (uint64_t)st.st_blocks * 512;
}

TEST(discard_and_write_zeroes)
{
	setup_vm();
	char path[] = "/tmp/lkvm-test-blkdz-XXXXXX";
	int fd = mkstemp(path);
	uint8_t *ones = malloc(MiB(1));
	memset(ones, 0x5a, MiB(1));
	CHECK_EQ(pwrite(fd, ones, MiB(1), 0), MiB(1));
	fsync(fd);
	struct disk *dk = disk_open(path, false, false);
	CHECK(dk != NULL);
	if (!dk)
		return;
	CHECK_EQ(virtio_blk_add(&vm, dk), 0);
	CHECK_EQ(devices_start(&vm), 0);
	struct pci_dev *p = dev_at(1);
	avail_idx = 0;
	uint64_t feats = 1ULL << VIRTIO_F_VERSION_1 | 1ULL << F_DISCARD | 1ULL << F_WRITE_ZEROES;
	CHECK_EQ(driver_init(p, feats), 0);
	/* The device offers both, with limits in its config space. */
	wr(0x00, 0, 4);
	CHECK_EQ(rd(0x04, 4) >> F_DISCARD & 3, 3);
	CHECK(rd(VPCI_DEVICE + 36, 4) > 0);	/* max_discard_sectors */
	CHECK(rd(VPCI_DEVICE + 40, 4) > 0);	/* max_discard_seg */
	CHECK(rd(VPCI_DEVICE + 48, 4) > 0);	/* max_write_zeroes_sectors */
	CHECK_EQ(rd(VPCI_DEVICE + 56, 1), 1);	/* write_zeroes_may_unmap */

	/* Write zeroes over sectors 8..15 and 100..101, two ranges. */
	range(0, 8, 8, 0);
	range(1, 100, 2, 0);
	CHECK_EQ(blk_request(13, 0, 32, true), 0);
	uint8_t buf[4096];
	CHECK_EQ(pread(fd, buf, 512, 7 * 512), 512);
	CHECK(buf[0] == 0x5a && buf[511] == 0x5a);
	uint8_t zero[4096] = { 0 };
	CHECK_EQ(pread(fd, buf, 4096, 8 * 512), 4096);
	CHECK(!memcmp(buf, zero, 4096));
	CHECK_EQ(pread(fd, buf, 1024, 100 * 512), 1024);
	CHECK(!memcmp(buf, zero, 1024));
	CHECK_EQ(pread(fd, buf, 512, 16 * 512), 512);
	CHECK(buf[0] == 0x5a);

	/* Discard of 256 KiB frees blocks (tmpfs and ext4 punch holes) and reads back zero. */
	uint64_t before = allocated_bytes(fd);
	range(0, 512, 512, 0);
	CHECK_EQ(blk_request(11, 0, 16, true), 0);
	CHECK(allocated_bytes(fd) < before);
	CHECK_EQ(pread(fd, buf, 512, 600 * 512), 512);
	CHECK(!memcmp(buf, zero, 512));
	/* Write zeroes with UNMAP also gives zeroes. */
	range(0, 1024, 8, 1);
	CHECK_EQ(blk_request(13, 0, 16, true), 0);
	CHECK_EQ(pread(fd, buf, 4096, 1024 * 512), 4096);
	CHECK(!memcmp(buf, zero, 4096));

	/* Bad requests change nothing: the first range is valid, the second is not. */
	CHECK_EQ(pwrite(fd, ones, 4096, 0), 4096);
	range(0, 0, 8, 0);
	range(1, 2047, 2, 0);	/* past the end */
	CHECK_EQ(blk_request(13, 0, 32, true), 1);
	CHECK_EQ(pread(fd, buf, 512, 0), 512);
	CHECK(buf[0] == 0x5a);
	range(1, UINT64_MAX / 512 - 1, 8, 0);	/* overflowing */
	CHECK_EQ(blk_request(11, 0, 32, true), 1);
	range(0, 0, 8, 1);	/* discard must not carry the unmap flag */
	CHECK_EQ(blk_request(11, 0, 16, true), 2);
	range(0, 0, 8, 2);	/* unknown flag */
	CHECK_EQ(blk_request(13, 0, 16, true), 2);
	CHECK_EQ(blk_request(13, 0, 20, true), 2);	/* not whole ranges */
	CHECK_EQ(pread(fd, buf, 512, 0), 512);
	CHECK(buf[0] == 0x5a);
	/* A read-only disk refuses both. */
	range(0, 0, 8, 0);
	dk->ro = true;
	CHECK_EQ(blk_request(13, 0, 16, true), 1);
	CHECK_EQ(blk_request(11, 0, 16, true), 1);
	CHECK_EQ(pread(fd, buf, 512, 0), 512);
	CHECK(buf[0] == 0x5a);
	free(ones);
	close(fd);
	unlink(path);
}

/* The host's errors reach the guest as I/O errors and the device keeps working: ENOSPC, short reads. */
TEST(host_errors_are_guest_io_errors)
{
	char dir[] = "/tmp/lkvm-test-enospc-XXXXXX", img[64], cmd[128];
	CHECK(mkdtemp(dir) != NULL);
	snprintf(cmd, sizeof(cmd), "mount -t tmpfs -o size=64k lkvm-test %s 2>/dev/null", dir);
	if (system(cmd)) {
		rmdir(dir);
		SKIP("cannot mount a small tmpfs (needs root)");
	}
	setup_vm();
	snprintf(img, sizeof(img), "%s/sparse.img", dir);
	int fd = open(img, O_RDWR | O_CREAT, 0644);
	CHECK_EQ(ftruncate(fd, MiB(1)), 0);	/* 1 MiB disk on a 64 KiB file system */
	struct disk *dk = disk_open(img, false, false);
	CHECK(dk != NULL);
	if (dk) {
		CHECK_EQ(virtio_blk_add(&vm, dk), 0);
		CHECK_EQ(devices_start(&vm), 0);
		avail_idx = 0;
		CHECK_EQ(driver_init(dev_at(1), 1ULL << VIRTIO_F_VERSION_1), 0);
		memset(g(BUF + 0x1000), 0x77, 8192);
		int st = 0, n = 0;
		for (; n < 64 && st == 0; n++)
			st = blk_request(1, 16 * n, 8192, true);	/* 8 KiB writes until the file system is full */
		CHECK_EQ(st, 1);	/* VIRTIO_BLK_S_IOERR */
		CHECK(n > 1 && n < 64);
		CHECK_EQ(blk_request(0, 0, 4096, false), 0);	/* still serving: what was written reads back */
		CHECK_EQ(*g(BUF + 0x1000), 0x77);
		CHECK_EQ(blk_request(4, 0, 0, false), 0);	/* FLUSH */
		/* The image shrinks under the device: a read past its new end is an I/O error, not garbage. */
		CHECK_EQ(ftruncate(fd, 4096), 0);
		CHECK_EQ(blk_request(0, 100, 4096, false), 1);
		CHECK_EQ(blk_request(0, 0, 4096, false), 0);
	}
	close(fd);
	snprintf(cmd, sizeof(cmd), "umount -l %s", dir);	/* lazy: the device still holds the image open */
	CHECK_EQ(system(cmd), 0);
	rmdir(dir);
}

TEST(qcow2_disk_through_virtio)
{
	NEED_TOOL("qemu-img", "qemu-utils");
	NEED_TOOL("qemu-io", "qemu-utils");
	setup_vm();
	char dir[] = "/tmp/lkvm-test-blkq-XXXXXX", img[64], cmd[256];
	CHECK(mkdtemp(dir) != NULL);
	snprintf(img, sizeof(img), "%s/d.qcow2", dir);
	snprintf(cmd, sizeof(cmd), "qemu-img create -q -f qcow2 %s 2M", img);
	CHECK_EQ(system(cmd), 0);
	struct disk *dk = disk_open(img, false, false);
	CHECK(dk != NULL);
	if (!dk)
		return;
	CHECK_EQ(virtio_blk_add(&vm, dk), 0);
	CHECK_EQ(devices_start(&vm), 0);
	avail_idx = 0;
	CHECK_EQ(driver_init(dev_at(1), 1ULL << VIRTIO_F_VERSION_1 | 1ULL << F_DISCARD), -1);	/* not offered */
	avail_idx = 0;
	CHECK_EQ(driver_init(dev_at(1), 1ULL << VIRTIO_F_VERSION_1), 0);
	CHECK_EQ(rd(VPCI_DEVICE, 4), 4096);
	for (int i = 0; i < 8192; i++)
		*g(BUF + 0x1000 + i) = (uint8_t)(i * 3 + 1);
	CHECK_EQ(blk_request(1, 127, 8192, true), 0);	/* across a 64 KiB cluster boundary */
	CHECK_EQ(blk_request(4, 0, 0, false), 0);
	memset(g(BUF + 0x1000), 0, 8192);
	CHECK_EQ(blk_request(0, 127, 8192, false), 0);
	int bad = 0;
	for (int i = 0; i < 8192; i++)
		bad += *g(BUF + 0x1000 + i) != (uint8_t)(i * 3 + 1);
	CHECK_EQ(bad, 0);
	CHECK_EQ(blk_request(11, 0, 16, true), 2);	/* no discard on qcow2 */
	CHECK_EQ(blk_request(1, 4095, 1024, true), 1);	/* past the end */
	snprintf(cmd, sizeof(cmd), "qemu-img check -q %s && qemu-io -f qcow2 -c 'read -P 0x00 0 65024' %s >/dev/null", img, img);
	CHECK_EQ(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK_EQ(system(cmd), 0);
}

TEST_MAIN()
