/*
 * PCI host bridge with type-1 configuration access (0xCF8 address, 0xCFC
 * data) on bus 0, and the config-space/BAR model every function uses: a write
 * mask decides what the guest may change, BARs are placed by us and mapped on
 * the buses while decoding is enabled, and follow the guest when it moves them.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "bus.h"
#include "device.h"
#include "devices.h"
#include "hw.h"
#include "pci.h"
#include "snapshot.h"
#include "util.h"
#include "vm.h"

#define PCI_VENDOR_ID 0x00
#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_CLASS_REV 0x08
#define PCI_CACHE_LINE 0x0c
#define PCI_LATENCY 0x0d
#define PCI_HEADER_TYPE 0x0e
#define PCI_BAR0 0x10
#define PCI_BAR_END 0x28
#define PCI_SUBSYS 0x2c
#define PCI_CAP_PTR 0x34
#define PCI_INT_LINE 0x3c
#define PCI_INT_PIN 0x3d
#define CAP_START 0x40

#define CMD_IO 0x0001
#define CMD_MEM 0x0002
#define CMD_MASTER 0x0004
#define CMD_PARITY 0x0040
#define CMD_SERR 0x0100
#define CMD_INTX_DISABLE 0x0400
#define STATUS_INT 0x0008
#define STATUS_CAP_LIST 0x0010
/* Error bits software clears by writing ones. */
#define STATUS_W1C 0xf900

#define CF8_ENABLE 0x80000000u
#define RST_CPU 0x04

/* Legacy INTA# lines, round-robin by slot; ISA leaves these free. */
static const unsigned intx_gsis[] = { 5, 9, 10, 11 };

/*
 * Config cycles are rare: one lock per host bridge keeps config space, BAR
 * moves and INTx state consistent. A function not registered yet has no
 * other thread to race with.
 */
static void cfg_lock(struct pci_dev *d)
{
	if (d->host)
		pthread_mutex_lock(&d->host->cfg_lock);
}

static void cfg_unlock(struct pci_dev *d)
{
	if (d->host)
		pthread_mutex_unlock(&d->host->cfg_lock);
}

void pci_dev_init(struct pci_dev *d, uint16_t vendor, uint16_t device, uint32_t class_code,
		  uint16_t subsys_vendor, uint16_t subsys_id)
{
	memset(d->cfg, 0, sizeof(d->cfg));
	memset(d->wmask, 0, sizeof(d->wmask));
	memset(d->bar, 0, sizeof(d->bar));
	put_le16(d->cfg + PCI_VENDOR_ID, vendor);
	put_le16(d->cfg + PCI_VENDOR_ID + 2, device);
	put_le32(d->cfg + PCI_CLASS_REV, (class_code & 0xffffff) << 8);	/* revision 0 */
	d->cfg[PCI_HEADER_TYPE] = 0;	/* type 0, single function */
	put_le16(d->cfg + PCI_SUBSYS, subsys_vendor);
	put_le16(d->cfg + PCI_SUBSYS + 2, subsys_id);
	put_le16(d->wmask + PCI_COMMAND, CMD_IO | CMD_MEM | CMD_MASTER | CMD_PARITY | CMD_SERR | CMD_INTX_DISABLE);
	d->wmask[PCI_CACHE_LINE] = 0xff;
	d->wmask[PCI_LATENCY] = 0xff;
	d->wmask[PCI_INT_LINE] = 0xff;	/* a scratch byte for the OS */
	d->cap_end = CAP_START;
	d->cap_last = 0;
	d->slot = -1;
}

void pci_dev_set_bar(struct pci_dev *d, int n, uint64_t size, bool io, const struct bus_ops *ops, void *ctx)
{
	if (n < 0 || n >= 6 || !size || (size & (size - 1)) || size > (io ? 0x100u : 0x40000000u)) {
		pr_warn("PCI %s: BAR%d of size 0x%llx refused", d->name ? d->name : "?", n,
			(unsigned long long)size);
		return;
	}
	/* The smallest decodes PCI allows: 16 bytes of memory, 4 ports. */
	size = MAX(size, io ? 4u : 16u);
	d->bar[n] = (struct pci_bar){ .size = size, .io = io, .ops = ops, .ctx = ctx };
	/* Writable address bits are those above the size, so sizing reads back ~(size-1). */
	uint32_t mask = ~(uint32_t)(size - 1) & (io ? 0xfffcu : ~0xfu);
	put_le32(d->wmask + PCI_BAR0 + 4 * n, mask);
	put_le32(d->cfg + PCI_BAR0 + 4 * n, io ? 1 : 0);	/* I/O space / 32-bit non-prefetchable memory */
}

int pci_dev_add_cap(struct pci_dev *d, const void *cap, int len)
{
	int off = ALIGN_UP(MAX(d->cap_end, CAP_START), 4);
	if (len < 2 || off + len > PCI_CFG_SIZE) {
		err_set("PCI %s: no room for a %d-byte capability", d->name ? d->name : "?", len);
		return -1;
	}
	memcpy(d->cfg + off, cap, len);
	d->cfg[off + 1] = 0;	/* end of the list */
	if (d->cap_last)
		d->cfg[d->cap_last + 1] = off;
	else
		d->cfg[PCI_CAP_PTR] = off;
	put_le16(d->cfg + PCI_STATUS, get_le16(d->cfg + PCI_STATUS) | STATUS_CAP_LIST);
	d->cap_last = off;
	d->cap_end = off + len;
	return off;
}

static bool bar_decoding(struct pci_dev *d, int n)
{
	uint16_t cmd = get_le16(d->cfg + PCI_COMMAND);
	return d->bar[n].io ? (cmd & CMD_IO) : (cmd & CMD_MEM);
}

static uint64_t bar_addr(struct pci_dev *d, int n)
{
	uint32_t v = get_le32(d->cfg + PCI_BAR0 + 4 * n);
	return d->bar[n].io ? (v & ~0x3u) : (v & ~0xfu);
}

static bool overlaps_ram(struct vm *vm, uint64_t addr, uint64_t size)
{
	for (int i = 0; i < vm->mem.nr; i++) {
		const struct mem_region *r = &vm->mem.r[i];
		if (addr < r->gpa + r->size && r->gpa < addr + size)
			return true;
	}
	return false;
}

/* Make the bus match config space for one BAR: map it where it points while decoding is on. Under cfg_lock. */
static int sync_bar(struct pci_dev *d, int n)
{
	struct pci_bar *b = &d->bar[n];
	if (!b->size || !d->vm)
		return 0;
	struct bus *bus = b->io ? &d->vm->pio : &d->vm->mmio;
	uint64_t want = bar_addr(d, n);
	/* Address 0 means unassigned; a BAR wrapping past 4 GiB cannot be decoded either. */
	bool map = bar_decoding(d, n) && want != 0 && want + b->size <= (1ULL << 32);
	if (b->mapped && (!map || want != b->addr)) {
		bus_unregister(bus, b->addr, b->ctx);
		b->mapped = false;
		if (d->bar_moved)
			d->bar_moved(d, n, b->addr, false);
	}
	if (!map || b->mapped)
		return 0;
	if (!b->io && overlaps_ram(d->vm, want, b->size)) {
		pr_warn_once("PCI %s BAR%d moved over RAM at 0x%llx: left unmapped", d->name, n,
			     (unsigned long long)want);
		return err_set("PCI %s BAR%d over RAM", d->name, n);
	}
	if (bus_register(bus, want, b->size, b->ops, b->ctx, d->name) < 0) {
		/* Over another device: the guest gets nothing there until it moves the BAR again. */
		pr_warn_once("PCI %s BAR%d at 0x%llx: %s; left unmapped", d->name, n,
			     (unsigned long long)want, err_msg());
		return -1;
	}
	b->addr = want;
	b->mapped = true;
	if (d->bar_moved)
		d->bar_moved(d, n, want, true);
	return 0;
}

/* INTx lines may be shared by several slots: a line is the OR of its devices. Under cfg_lock. */
static void intx_update(struct pci_dev *d)
{
	struct vm *vm = d->vm;
	if (!vm || !d->host || !d->irq_pin_gsi)
		return;
	int level = 0;
	for (int s = 0; s < PCI_MAX_DEVS; s++) {
		struct pci_dev *o = d->host->devs[s];
		if (o && o->irq_pin_gsi == d->irq_pin_gsi && (get_le16(o->cfg + PCI_STATUS) & STATUS_INT) &&
		    !(get_le16(o->cfg + PCI_COMMAND) & CMD_INTX_DISABLE))
			level = 1;
	}
	vm_irq_line(vm, d->irq_pin_gsi, level);
}

void pci_dev_irq(struct pci_dev *d, int level)
{
	cfg_lock(d);
	uint16_t st = get_le16(d->cfg + PCI_STATUS);
	bool was = st & STATUS_INT;
	if (was != !!level) {
		put_le16(d->cfg + PCI_STATUS, level ? st | STATUS_INT : st & ~STATUS_INT);
		intx_update(d);
	}
	cfg_unlock(d);
}

uint32_t pci_cfg_read(struct pci_dev *d, unsigned off, int len)
{
	if ((len != 1 && len != 2 && len != 4) || off >= PCI_CFG_SIZE || off + len > PCI_CFG_SIZE)
		return 0xffffffff;
	cfg_lock(d);
	uint32_t v = (uint32_t)bytes_to_u64(d->cfg + off, len);
	cfg_unlock(d);
	return v;
}

void pci_cfg_write(struct pci_dev *d, unsigned off, uint32_t val, int len)
{
	if ((len != 1 && len != 2 && len != 4) || off >= PCI_CFG_SIZE || off + len > PCI_CFG_SIZE)
		return;
	cfg_lock(d);
	uint16_t old_cmd = get_le16(d->cfg + PCI_COMMAND);
	for (int i = 0; i < len; i++) {
		unsigned o = off + i;
		uint8_t m = d->wmask[o], b = val >> (8 * i);
		d->cfg[o] = (d->cfg[o] & ~m) | (b & m);
		if (o == PCI_STATUS || o == PCI_STATUS + 1)
			d->cfg[o] &= ~(b & (uint8_t)(STATUS_W1C >> (8 * (o - PCI_STATUS))));
	}
	if (off < PCI_BAR_END && off + len > PCI_COMMAND)
		for (int n = 0; n < 6; n++)
			sync_bar(d, n);
	if ((old_cmd ^ get_le16(d->cfg + PCI_COMMAND)) & CMD_INTX_DISABLE)
		intx_update(d);
	cfg_unlock(d);
	if (d->cfg_written)
		d->cfg_written(d, off, len);
}

/* The function the address register selects, and the register offset in it; NULL for nothing there. */
static struct pci_dev *addressed(struct pci_host *h, unsigned *reg)
{
	uint32_t a = __atomic_load_n(&h->cf8, __ATOMIC_RELAXED);
	/* Disabled, another bus, a function other than 0, or extended registers: no device answers. */
	if (!(a & CF8_ENABLE) || (a & 0x7f000000u) || ((a >> 16) & 0xff) || ((a >> 8) & 7))
		return NULL;
	*reg = a & 0xfc;
	return h->devs[(a >> 11) & 0x1f];
}

/* 0xCF8-0xCFB: the address register takes dword accesses only; 0xCF9 alone is reset control. */
static void cf8_read(void *ctx, uint64_t off, void *data, int len)
{
	struct pci_host *h = ctx;
	if (off == 0 && len == 4)
		put_le32(data, __atomic_load_n(&h->cf8, __ATOMIC_RELAXED));
	else if (off == 1 && len == 1)
		*(uint8_t *)data = 0;
}

static void cf8_write(void *ctx, uint64_t off, const void *data, int len)
{
	struct pci_host *h = ctx;
	if (off == 0 && len == 4) {
		__atomic_store_n(&h->cf8, get_le32(data), __ATOMIC_RELAXED);
	} else if (off == 1 && len == 1 && (*(const uint8_t *)data & RST_CPU)) {
		/* Reset control: a hard or soft CPU reset ends the VM, as a reboot does. */
		vm_request_exit(h->bridge.vm, VM_RESET, 0);
	}
}

static void cfc_read(void *ctx, uint64_t off, void *data, int len)
{
	unsigned reg;
	if (off + len > 4)
		len = 4 - off;
	struct pci_dev *d = addressed(ctx, &reg);
	u64_to_bytes(data, len, d ? pci_cfg_read(d, reg + off, len) : 0xffffffff);
}

static void cfc_write(void *ctx, uint64_t off, const void *data, int len)
{
	unsigned reg;
	if (off + len > 4)
		len = 4 - off;
	struct pci_dev *d = addressed(ctx, &reg);
	if (d)
		pci_cfg_write(d, reg + off, (uint32_t)bytes_to_u64(data, len), len);
}

static const struct bus_ops cf8_ops = { .read = cf8_read, .write = cf8_write };
static const struct bus_ops cfc_ops = { .read = cfc_read, .write = cfc_write };

int pci_host_irq_map(struct vm *vm, int slot)
{
	if (slot < 1 || slot >= PCI_MAX_DEVS)
		return -1;
	return intx_gsis[(slot - 1) % ARRAY_SIZE(intx_gsis)];
}

int pci_register(struct vm *vm, struct pci_dev *d)
{
	struct pci_host *h = pci_host(vm);
	if (!h)
		return err_set("no PCI host bridge for %s", d->name);
	pthread_mutex_lock(&h->cfg_lock);
	int slot = 1;
	while (slot < PCI_MAX_DEVS && h->devs[slot])
		slot++;
	if (slot == PCI_MAX_DEVS) {
		pthread_mutex_unlock(&h->cfg_lock);
		return err_set("no free PCI slot for %s", d->name);
	}
	/* Place every BAR first, so a full window leaves nothing half-registered. */
	uint64_t next_mmio = h->next_mmio, next_io = h->next_io;
	uint32_t addr[6] = { 0 };
	for (int n = 0; n < 6; n++) {
		struct pci_bar *b = &d->bar[n];
		if (!b->size)
			continue;
		uint64_t *next = b->io ? &next_io : &next_mmio;
		uint64_t a = ALIGN_UP(*next, b->size);
		if (a + b->size > (b->io ? PCI_IO_END + 1ULL : PCI_MMIO_END)) {
			pthread_mutex_unlock(&h->cfg_lock);
			return err_set("PCI %s window full placing %s BAR%d", b->io ? "I/O" : "memory", d->name, n);
		}
		*next = a + b->size;
		addr[n] = a;
	}
	h->next_mmio = next_mmio;
	h->next_io = next_io;
	d->vm = vm;
	d->slot = slot;
	uint16_t cmd = 0;
	for (int n = 0; n < 6; n++) {
		if (!d->bar[n].size)
			continue;
		put_le32(d->cfg + PCI_BAR0 + 4 * n, addr[n] | (d->bar[n].io ? 1 : 0));
		cmd |= d->bar[n].io ? CMD_IO : CMD_MEM;
	}
	/* No firmware enumerates before the guest: BARs decode from the start. */
	put_le16(d->cfg + PCI_COMMAND, get_le16(d->cfg + PCI_COMMAND) | cmd);
	d->irq_pin_gsi = pci_host_irq_map(vm, slot);
	d->cfg[PCI_INT_PIN] = 1;	/* INTA# */
	d->cfg[PCI_INT_LINE] = d->irq_pin_gsi;
	h->devs[slot] = d;
	for (int n = 0; n < 6; n++) {
		if (sync_bar(d, n) < 0) {
			char msg[256];
			snprintf(msg, sizeof(msg), "%s", err_msg());
			for (int m = 0; m < n; m++)
				if (d->bar[m].mapped) {
					bus_unregister(d->bar[m].io ? &vm->pio : &vm->mmio, d->bar[m].addr, d->bar[m].ctx);
					d->bar[m].mapped = false;
					if (d->bar_moved)
						d->bar_moved(d, m, d->bar[m].addr, false);
				}
			h->devs[slot] = NULL;
			pthread_mutex_unlock(&h->cfg_lock);
			return err_set("cannot map %s BAR%d: %s", d->name, n, msg);
		}
	}
	d->host = h;
	pthread_mutex_unlock(&h->cfg_lock);
	pr_debug("PCI 00:%02x.0 %s, INTA# on GSI %u", slot, d->name, d->irq_pin_gsi);
	return 0;
}

void pci_unregister(struct pci_dev *d)
{
	struct pci_host *h = d->host;
	if (!h)
		return;
	pthread_mutex_lock(&h->cfg_lock);
	for (int n = 0; n < 6; n++) {
		struct pci_bar *b = &d->bar[n];
		if (b->mapped) {
			bus_unregister(b->io ? &d->vm->pio : &d->vm->mmio, b->addr, b->ctx);
			b->mapped = false;
		}
	}
	h->devs[d->slot] = NULL;
	d->host = NULL;
	pthread_mutex_unlock(&h->cfg_lock);
}

/* ---- snapshots ---- */

void pci_dev_save(struct pci_dev *d, struct snap_writer *w)
{
	cfg_lock(d);
	snap_u8(w, d->slot);
	snap_bytes(w, d->cfg, PCI_CFG_SIZE);
	cfg_unlock(d);
}

int pci_dev_load(struct pci_dev *d, struct snap_reader *r)
{
	uint8_t cfg[PCI_CFG_SIZE];
	int slot = snap_get_u8(r);
	snap_get_bytes(r, cfg, sizeof(cfg));
	if (snap_failed(r))
		return -1;
	if (slot != d->slot)
		return snap_bad(r, "%s was in PCI slot %d, here it is in slot %d (other devices or options)", d->name,
				slot, d->slot);
	/* What the guest cannot write (IDs, class, capabilities) must be this very function's. */
	for (int i = 0; i < PCI_CFG_SIZE; i++)
		if (i != PCI_STATUS && i != PCI_STATUS + 1 && ((cfg[i] ^ d->cfg[i]) & ~d->wmask[i]))
			return snap_bad(r, "%s: config byte 0x%02x is 0x%02x, this device has 0x%02x (another device or "
					"version)", d->name, i, cfg[i], d->cfg[i]);
	uint16_t st = get_le16(cfg + PCI_STATUS), mine = get_le16(d->cfg + PCI_STATUS);
	if ((st ^ mine) & ~(STATUS_W1C | STATUS_INT))
		return snap_bad(r, "%s: status register 0x%04x does not fit this device", d->name, st);
	cfg_lock(d);
	memcpy(d->cfg, cfg, sizeof(cfg));
	for (int n = 0; n < 6; n++)
		sync_bar(d, n);		/* where the guest had moved them */
	intx_update(d);		/* an asserted INTx line asserts again (KVM's per-source level) */
	cfg_unlock(d);
	return 0;
}

static int host_save(struct device *dev, struct snap_writer *w)
{
	struct pci_host *h = dev->priv;
	snap_u32(w, __atomic_load_n(&h->cf8, __ATOMIC_RELAXED));
	pci_dev_save(&h->bridge, w);
	return 0;
}

static int host_load(struct device *dev, struct snap_reader *r)
{
	struct pci_host *h = dev->priv;
	uint32_t cf8 = snap_get_u32(r);
	if (pci_dev_load(&h->bridge, r) < 0)
		return -1;
	__atomic_store_n(&h->cf8, cf8, __ATOMIC_RELAXED);
	return 0;
}

struct pci_host *pci_host(struct vm *vm)
{
	return device_priv(vm, "pci-host", 0);
}

static void pci_host_destroy(struct device *dev)
{
	struct pci_host *h = dev->priv;
	bus_unregister_all(&h->bridge.vm->pio, h);
	pthread_mutex_destroy(&h->cfg_lock);
	free(h);
}

static const struct device_ops pci_host_ops = {
	.destroy = pci_host_destroy, .save = host_save, .load = host_load, .snap_version = 1,
};

static int pci_host_create(struct vm *vm, void *own)
{
	struct pci_host *h = xcalloc(1, sizeof(*h));
	pthread_mutex_init(&h->cfg_lock, NULL);
	h->next_mmio = PCI_MMIO_BASE;
	h->next_io = PCI_IO_BASE;
	pci_dev_init(&h->bridge, 0x8086, 0x29c0, 0x060000, 0, 0);
	h->bridge.name = "host-bridge";
	h->bridge.vm = vm;
	h->bridge.slot = 0;
	/* The bridge decodes and masters from power-on; nothing of it is writable but the command bits. */
	put_le16(h->bridge.cfg + PCI_COMMAND, CMD_IO | CMD_MEM | CMD_MASTER);
	h->bridge.wmask[PCI_INT_LINE] = 0;
	h->devs[0] = &h->bridge;
	h->bridge.host = h;
	device_add(vm, "pci-host", &pci_host_ops, h);
	if (bus_register(&vm->pio, 0xcf8, 4, &cf8_ops, h, "pci-addr") < 0)
		return -1;
	return bus_register(&vm->pio, 0xcfc, 4, &cfc_ops, h, "pci-data");
}

const struct device_type pci_host_device = { .name = "pci-host", .create = pci_host_create };
