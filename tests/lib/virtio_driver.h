/*
 * Playing a guest's virtio driver against the real device code: a fake VM
 * with RAM, the PCI host and recorded interrupts; negotiation, one queue of
 * QSIZE at DESC/AVAIL/USED, descriptors, kicks, and virtio-blk requests.
 * Shared by the device-level tests (each is its own binary).
 */
#ifndef LKVM_VIRTIO_DRIVER_H
#define LKVM_VIRTIO_DRIVER_H

#include <unistd.h>
#include "fake_vm.h"
#include "devices.h"
#include "hw.h"
#include "pci.h"
#include "util.h"
#include "virtio.h"

#pragma GCC diagnostic ignored "-Wunused-function"

#ifdef __SANITIZE_ADDRESS__
/* Each test builds a fresh fake VM and leaves the last one's devices (and their threads) running. */
const char *__asan_default_options(void) { return "detect_leaks=0"; }
#endif

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
	static const struct irq_ops recorded = { .line = irq_hook, .msi = msi_hook };
	fake_vm_init(&vm, &recorded);
	guest_mem_alloc(&vm.mem, MiB(16), 0, 0);
	device_type_create(&vm, &pci_host_device);
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

/* A second queue after driver_init(): qi with QSIZE entries at desc/avail/used. */
static void setup_queue(int qi, uint64_t dt, uint64_t av, uint64_t used)
{
	memset(g(dt), 0, 16 * QSIZE);
	memset(g(av), 0, 4 + 2 * QSIZE);
	memset(g(used), 0, 4 + 8 * QSIZE);
	wr(0x16, qi, 2);
	wr(0x18, QSIZE, 2);
	wr(0x20, dt, 4); wr(0x24, 0, 4);
	wr(0x28, av, 4); wr(0x2c, 0, 4);
	wr(0x30, used, 4); wr(0x34, 0, 4);
	wr(0x1c, 1, 2);
}

/* Make descriptor head of queue qi (avail ring at av) available, and kick. */
static void post_on(int qi, uint64_t av, uint16_t head)
{
	uint16_t idx = get_le16(g(av + 2));
	put_le16(g(av + 4 + 2 * (idx % QSIZE)), head);
	put_le16(g(av + 2), idx + 1);
	wr(VPCI_NOTIFY + VPCI_NOTIFY_MULT * qi, qi, 2);
}

static struct pci_dev *dev_at(int slot) { return pci_host(&vm)->devs[slot]; }

#endif
