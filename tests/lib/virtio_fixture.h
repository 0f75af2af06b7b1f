/*
 * The device-level unit tests' fixture on top of the shared driver
 * (virtio_driver.h): one fake VM with 16 MiB of RAM, the PCI host and
 * recorded interrupts; the device under test with queue 0 of QSIZE at
 * DESC/AVAIL/USED, more queues by setup_queue(), and virtio-blk requests.
 * Short names, as each test is its own binary.
 */
#ifndef LKVM_TESTS_VIRTIO_FIXTURE_H
#define LKVM_TESTS_VIRTIO_FIXTURE_H

#include <string.h>
#include <unistd.h>
#include "fake_vm.h"
#include "devices.h"
#include "hw.h"
#include "pci.h"
#include "util.h"
#include "virtio.h"
#include "virtio_driver.h"

#pragma GCC diagnostic ignored "-Wunused-function"

#ifdef __SANITIZE_ADDRESS__
/* Each test builds a fresh fake VM and leaves the last one's devices (and their threads) running. */
const char *__asan_default_options(void) { return "detect_leaks=0"; }
#endif

static struct vm vm;
/* What the devices raised (fake_irq_recorder). */
#define msis (fake_irqs.msis)
#define last_msi_data (fake_irqs.last_msi_data)
#define intx_level (fake_irqs.intx_level)

#define DESC 0x100000
#define AVAIL 0x101000
#define USED 0x102000
#define BUF 0x110000
#define QSIZE 8

static struct vdev fx;			/* the device under test */
static struct vq fxq[8];		/* its queues, by index */
static uint64_t rd(uint64_t off, int len) { return vdev_read(&fx, off, len); }
static void wr(uint64_t off, uint64_t v, int len) { vdev_write(&fx, off, v, len); }
static uint8_t *g(uint64_t gpa) { return guest_ptr(&vm.mem, gpa, 1); }

/* A fresh VM; queues set up before keep their addresses, now in its RAM (a restore's rings go on). */
static void setup_vm(void)
{
	fake_vm_init(&vm, &fake_irq_recorder);
	guest_mem_alloc(&vm.mem, MiB(16), 0, 0);
	device_type_create(&vm, &pci_host_device);
	for (int i = 0; i < (int)ARRAY_SIZE(fxq); i++)
		if (fxq[i].dev)
			vq_bind(&fxq[i], &fx, i, QSIZE, fxq[i].desc, fxq[i].avail, fxq[i].used);
}

/* The device at p is the one under test; its queue 0 (if any) is at DESC/AVAIL/USED. */
static void fx_attach(struct pci_dev *p)
{
	vdev_attach(&fx, &vm, p);
	vq_bind(&fxq[0], &fx, 0, QSIZE, DESC, AVAIL, USED);
}

/* Reset, negotiate, one queue of QSIZE at DESC/AVAIL/USED, DRIVER_OK. */
static int driver_init(struct pci_dev *p, uint64_t feats)
{
	fx_attach(p);
	vdev_reset(&fx);
	memset(g(DESC), 0, 0x3000);
	if (vdev_negotiate(&fx, feats))
		return -1;
	vq_setup(&fxq[0], &fx, 0, QSIZE, DESC, AVAIL, USED, -1);
	vdev_driver_ok(&fx);
	return rd(0x1c, 2) == 1 ? 0 : -1;
}

static void desc(int i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	vdesc_put(&vm, DESC, i, addr, len, flags, next);
}

/* Make head of queue qi (avail ring at av) available after what the ring holds, and kick. */
static void post_on(int qi, uint64_t av, uint16_t head)
{
	struct vq *q = &fxq[qi];
	q->avail_idx = get_le16(g(av + 2));
	vq_post(q, head);
}

/* Queue 0: the tests set avail_idx themselves (0 after driver_init). add() does not kick. */
static uint16_t avail_idx;
static void add(uint16_t head)
{
	fxq[0].avail_idx = avail_idx;
	vq_add(&fxq[0], head);
	avail_idx = fxq[0].avail_idx;
}
static void kick(void) { vq_kick(&fxq[0]); }
static void post(uint16_t head) { add(head); kick(); }

struct used_want { uint64_t used; uint16_t idx; };
static bool used_reached(void *arg)
{
	struct used_want *w = arg;
	return __atomic_load_n((uint16_t *)g(w->used + 2), __ATOMIC_ACQUIRE) == w->idx;
}

/* Wait (device workers are threads) until the used ring at used has index want: 0, or -1 after 2 s. */
static int wait_idx(uint64_t used, uint16_t want)
{
	struct used_want w = { used, want };
	return fake_irq_wait(used_reached, &w, 2000, 1);	/* polled too: INTx may already be high */
}
static int wait_used(uint16_t want) { return wait_idx(USED, want); }

/* header at BUF, data at BUF+0x1000, status at BUF+0x3000 */
static int blk_request(uint32_t type, uint64_t sector, uint32_t len, bool data_out)
{
	put_le32(g(BUF), type); put_le32(g(BUF + 4), 0); put_le64(g(BUF + 8), sector);
	*g(BUF + 0x3000) = 0xee;
	desc(0, BUF, 16, VD_F_NEXT, 1);
	if (len) {
		desc(1, BUF + 0x1000, len, VD_F_NEXT | (data_out ? 0 : VD_F_WRITE), 2);
		desc(2, BUF + 0x3000, 1, VD_F_WRITE, 0);
	} else {
		desc(1, BUF + 0x3000, 1, VD_F_WRITE, 0);
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
	vq_setup(&fxq[qi], &fx, qi, QSIZE, dt, av, used, -1);
}

static struct pci_dev *dev_at(int slot) { return pci_host(&vm)->devs[slot]; }

#endif
