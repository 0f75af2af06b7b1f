/* PCI host bridge and config space, driven through 0xCF8/0xCFC as a guest would. */
#include "devices.h"
#include "test.h"
#include "fake_vm.h"
#include "bus.h"
#include "hw.h"
#include "pci.h"
#include "util.h"
#include "vm.h"

static int irq_level[32];

static void irq_rec(struct vm *vm, unsigned gsi, int level)
{
	if (gsi < 32)
		irq_level[gsi] = level;
}

static void setup(struct vm *vm)
{
	static const struct irq_ops rec_irqs = { .line = irq_rec };
	fake_vm_init(vm, &rec_irqs);
	memset(irq_level, 0, sizeof(irq_level));
	CHECK_EQ(device_type_create(vm, &pci_host_device), 0);
	CHECK(pci_host(vm) != NULL);	/* the bridge is in the VM's registry */
}

static void teardown(struct vm *vm)
{
	fake_vm_free(vm);	/* destroys the bridge with the VM's other devices */
}

static uint32_t cfg_addr(int bus, int dev, int fn, int reg)
{
	return 0x80000000u | bus << 16 | dev << 11 | fn << 8 | (reg & 0xfc);
}

static uint32_t cfg_read(struct vm *vm, int dev, int reg, int len)
{
	uint8_t a[4], d[4];
	put_le32(a, cfg_addr(0, dev, 0, reg));
	bus_access(&vm->pio, 0xcf8, a, 4, true);
	bus_access(&vm->pio, 0xcfc + (reg & 3), d, len, false);
	return (uint32_t)bytes_to_u64(d, len);
}

static void cfg_write(struct vm *vm, int dev, int reg, uint32_t v, int len)
{
	uint8_t a[4], d[4];
	put_le32(a, cfg_addr(0, dev, 0, reg));
	bus_access(&vm->pio, 0xcf8, a, 4, true);
	u64_to_bytes(d, len, v);
	bus_access(&vm->pio, 0xcfc + (reg & 3), d, len, true);
}

/* A test device: one 4 KiB memory BAR and one 32-port I/O BAR that record accesses. */
struct tdev {
	struct pci_dev pci;
	uint64_t last_off;
	int hits;
};

static void t_read(void *ctx, uint64_t off, void *data, int len)
{
	struct tdev *t = ctx;
	t->last_off = off;
	t->hits++;
	u64_to_bytes(data, len, 0x12345678);
}

static void t_write(void *ctx, uint64_t off, const void *data, int len)
{
	struct tdev *t = ctx;
	t->last_off = off;
	t->hits++;
}

static const struct bus_ops t_ops = { .read = t_read, .write = t_write };

static void tdev_init(struct tdev *t, const char *name)
{
	memset(t, 0, sizeof(*t));
	t->pci.name = name;
	pci_dev_init(&t->pci, 0x1af4, 0x1042, 0x018000, 0x1af4, 0x0002);
	pci_dev_set_bar(&t->pci, 0, 4096, false, &t_ops, t);
	pci_dev_set_bar(&t->pci, 2, 32, true, &t_ops, t);
}

TEST(bridge_and_absent)
{
	struct vm vm;
	setup(&vm);
	CHECK_EQ(cfg_read(&vm, 0, 0x00, 4), 0x29c08086);
	CHECK_EQ(cfg_read(&vm, 0, 0x08, 4) >> 8, 0x060000);
	CHECK_EQ(cfg_read(&vm, 0, 0x0e, 1), 0);	/* header type 0 */
	CHECK_EQ(cfg_read(&vm, 0, 0x02, 2), 0x29c0);	/* word access at offset 2 */
	CHECK_EQ(cfg_read(&vm, 0, 0x0b, 1), 0x06);	/* byte access at offset 3 */
	/* Absent slots, other functions and other buses read all ones. */
	CHECK_EQ(cfg_read(&vm, 7, 0x00, 4), 0xffffffff);
	CHECK_EQ(cfg_read(&vm, 7, 0x00, 2), 0xffff);
	uint8_t a[4], d[4];
	put_le32(a, cfg_addr(1, 0, 0, 0));
	bus_access(&vm.pio, 0xcf8, a, 4, true);
	bus_access(&vm.pio, 0xcfc, d, 4, false);
	CHECK_EQ(get_le32(d), 0xffffffff);
	put_le32(a, cfg_addr(0, 0, 3, 0));
	bus_access(&vm.pio, 0xcf8, a, 4, true);
	bus_access(&vm.pio, 0xcfc, d, 4, false);
	CHECK_EQ(get_le32(d), 0xffffffff);
	/* Enable bit clear: no config cycle. */
	put_le32(a, 0x00000000);
	bus_access(&vm.pio, 0xcf8, a, 4, true);
	bus_access(&vm.pio, 0xcfc, d, 4, false);
	CHECK_EQ(get_le32(d), 0xffffffff);
	/* Linux's type-1 probe: the address register reads back as written. */
	put_le32(a, 0x80000000);
	bus_access(&vm.pio, 0xcf8, a, 4, true);
	memset(d, 0, 4);
	bus_access(&vm.pio, 0xcf8, d, 4, false);
	CHECK_EQ(get_le32(d), 0x80000000);
	/* The bridge's IDs are read-only. */
	cfg_write(&vm, 0, 0x00, 0, 4);
	CHECK_EQ(cfg_read(&vm, 0, 0x00, 4), 0x29c08086);
	/* 0xCF9 reset control ends the VM as a reset. */
	uint8_t rst = 0x06;
	bus_access(&vm.pio, 0xcf9, &rst, 1, true);
	CHECK_EQ(vm.exit_reason, VM_RESET);
	CHECK_EQ(vm.exit_status, 0);
	teardown(&vm);
}

TEST(device_registration)
{
	struct vm vm;
	setup(&vm);
	struct tdev t;
	tdev_init(&t, "tdev");
	CHECK_EQ(pci_register(&vm, &t.pci), 0);
	CHECK_EQ(t.pci.slot, 1);
	CHECK(pci_host(&vm)->devs[1] == &t.pci);
	CHECK_EQ(cfg_read(&vm, 1, 0x00, 4), 0x10421af4);
	CHECK_EQ(cfg_read(&vm, 1, 0x2c, 4), 0x00021af4);
	CHECK_EQ(cfg_read(&vm, 1, 0x04, 2) & 3, 3);	/* I/O and memory decode on */
	uint32_t bar0 = cfg_read(&vm, 1, 0x10, 4), bar2 = cfg_read(&vm, 1, 0x18, 4);
	CHECK_EQ(bar0 & 0xf, 0);
	CHECK(bar0 >= PCI_MMIO_BASE && bar0 + 4096 <= PCI_MMIO_END);
	CHECK_EQ(bar0 & 0xfff, 0);
	CHECK_EQ(bar2 & 3, 1);
	CHECK(bar2 >= PCI_IO_BASE && (bar2 & 0x1c) == 0);
	CHECK_EQ(cfg_read(&vm, 1, 0x14, 4), 0);	/* unused BAR */
	/* INTA# on the GSI the MP table will describe. */
	CHECK_EQ(cfg_read(&vm, 1, 0x3d, 1), 1);
	CHECK_EQ(cfg_read(&vm, 1, 0x3c, 1), (uint32_t)pci_host_irq_map(&vm, 1));
	CHECK_EQ(t.pci.irq_pin_gsi, (unsigned)pci_host_irq_map(&vm, 1));
	CHECK_EQ(pci_host_irq_map(&vm, 0), -1);
	CHECK_EQ(pci_host_irq_map(&vm, 32), -1);
	/* The BARs answer on the buses. */
	uint8_t d[4];
	CHECK(bus_access(&vm.mmio, bar0 + 0x10, d, 4, false));
	CHECK_EQ(get_le32(d), 0x12345678);
	CHECK_EQ(t.last_off, 0x10);
	CHECK(bus_access(&vm.pio, (bar2 & ~3u) + 4, d, 1, true));
	CHECK_EQ(t.last_off, 4);
	/* A second device gets the next slot and non-overlapping BARs. */
	struct tdev u;
	tdev_init(&u, "udev");
	CHECK_EQ(pci_register(&vm, &u.pci), 0);
	CHECK_EQ(u.pci.slot, 2);
	CHECK(cfg_read(&vm, 2, 0x10, 4) != bar0);
	CHECK(u.pci.irq_pin_gsi != t.pci.irq_pin_gsi);
	teardown(&vm);
}

TEST(bar_sizing_and_move)
{
	struct vm vm;
	setup(&vm);
	struct tdev t;
	tdev_init(&t, "tdev");
	CHECK_EQ(pci_register(&vm, &t.pci), 0);
	uint32_t bar0 = cfg_read(&vm, 1, 0x10, 4), bar2 = cfg_read(&vm, 1, 0x18, 4);
	/* Linux's sizing: decode off, all ones, read the mask, restore. */
	uint16_t cmd = cfg_read(&vm, 1, 0x04, 2);
	cfg_write(&vm, 1, 0x04, cmd & ~3, 2);
	uint8_t d[4];
	CHECK(!bus_access(&vm.mmio, bar0, d, 4, false));	/* decode off: unmapped */
	cfg_write(&vm, 1, 0x10, 0xffffffff, 4);
	CHECK_EQ(cfg_read(&vm, 1, 0x10, 4), 0xfffff000);
	cfg_write(&vm, 1, 0x18, 0xffffffff, 4);
	CHECK_EQ(cfg_read(&vm, 1, 0x18, 4), 0x0000ffe1);
	cfg_write(&vm, 1, 0x14, 0xffffffff, 4);
	CHECK_EQ(cfg_read(&vm, 1, 0x14, 4), 0);	/* unimplemented BAR: size 0 */
	cfg_write(&vm, 1, 0x10, bar0, 4);
	cfg_write(&vm, 1, 0x18, bar2, 4);
	cfg_write(&vm, 1, 0x04, cmd, 2);
	CHECK(bus_access(&vm.mmio, bar0, d, 4, false));
	/* Moving a BAR moves the mapping. */
	uint32_t moved = 0xe0000000;
	cfg_write(&vm, 1, 0x10, moved, 4);
	CHECK_EQ(cfg_read(&vm, 1, 0x10, 4), moved);
	CHECK(!bus_access(&vm.mmio, bar0, d, 4, false));
	CHECK(bus_access(&vm.mmio, moved + 0x20, d, 4, false));
	CHECK_EQ(t.last_off, 0x20);
	CHECK(t.pci.bar[0].mapped);
	CHECK_EQ(t.pci.bar[0].addr, moved);
	/* Unaligned addresses lose their low bits, as the write mask says. */
	cfg_write(&vm, 1, 0x10, moved + 0x234, 4);
	CHECK_EQ(cfg_read(&vm, 1, 0x10, 4), moved);
	/* I/O BARs move too, within 64K ports. */
	cfg_write(&vm, 1, 0x18, 0x7000, 4);
	CHECK_EQ(cfg_read(&vm, 1, 0x18, 4), 0x7001);
	CHECK(bus_access(&vm.pio, 0x7003, d, 1, false));
	CHECK_EQ(t.last_off, 3);
	CHECK(!bus_access(&vm.pio, bar2 & ~3u, d, 1, false));
	teardown(&vm);
}

TEST(bar_overlap_refused)
{
	struct vm vm;
	setup(&vm);
	/* A stand-in RAM region below the hole. */
	vm.mem.nr = 1;
	vm.mem.r[0] = (struct mem_region){ .gpa = 0, .size = MiB(64) };
	struct tdev t, u;
	tdev_init(&t, "tdev");
	tdev_init(&u, "udev");
	CHECK_EQ(pci_register(&vm, &t.pci), 0);
	CHECK_EQ(pci_register(&vm, &u.pci), 0);
	uint32_t tbar = cfg_read(&vm, 1, 0x10, 4), ubar = cfg_read(&vm, 2, 0x10, 4);
	/* u moves its BAR over t's: refused on the bus, u stays unmapped, t keeps working. */
	cfg_write(&vm, 2, 0x10, tbar, 4);
	CHECK(!u.pci.bar[0].mapped);
	uint8_t d[4];
	t.hits = u.hits = 0;
	CHECK(bus_access(&vm.mmio, tbar, d, 4, false));
	CHECK_EQ(t.hits, 1);
	CHECK_EQ(u.hits, 0);
	/* Moving it back maps it again. */
	cfg_write(&vm, 2, 0x10, ubar, 4);
	CHECK(u.pci.bar[0].mapped);
	CHECK(bus_access(&vm.mmio, ubar, d, 4, false));
	CHECK_EQ(u.hits, 1);
	/* Over RAM: left unmapped. */
	cfg_write(&vm, 2, 0x10, 0x100000, 4);
	CHECK(!u.pci.bar[0].mapped);
	/* Over the legacy ports of the bridge itself. */
	cfg_write(&vm, 2, 0x18, 0xcf8, 4);
	CHECK(!u.pci.bar[2].mapped);
	CHECK_EQ(cfg_read(&vm, 0, 0x00, 4), 0x29c08086);	/* config access still works */
	/* Address 0 means unassigned. */
	cfg_write(&vm, 1, 0x10, 0, 4);
	CHECK(!t.pci.bar[0].mapped);
	teardown(&vm);
}

TEST(capabilities)
{
	struct vm vm;
	setup(&vm);
	struct tdev t;
	tdev_init(&t, "tdev");
	uint8_t vendor_cap[16] = { 0x09, 0xaa, 16, 1, 2, 3 };
	uint8_t msix_cap[12] = { 0x11, 0, 0x03, 0x00 };
	int c1 = pci_dev_add_cap(&t.pci, vendor_cap, sizeof(vendor_cap));
	int c2 = pci_dev_add_cap(&t.pci, msix_cap, sizeof(msix_cap));
	CHECK(c1 >= 0x40 && (c1 & 3) == 0);
	CHECK(c2 >= c1 + 16 && (c2 & 3) == 0);
	/* Message Control's enable bits made writable by the device. */
	put_le16(t.pci.wmask + c2 + 2, 0xc000);
	CHECK_EQ(pci_register(&vm, &t.pci), 0);
	CHECK(cfg_read(&vm, 1, 0x06, 2) & 0x10);	/* Status: capability list */
	/* Walk the list as a guest does. */
	int ids[8], n = 0;
	for (unsigned p = cfg_read(&vm, 1, 0x34, 1); p && n < 8; p = cfg_read(&vm, 1, p + 1, 1))
		ids[n++] = cfg_read(&vm, 1, p, 1);
	CHECK_EQ(n, 2);
	CHECK_EQ(ids[0], 0x09);
	CHECK_EQ(ids[1], 0x11);
	CHECK_EQ(cfg_read(&vm, 1, c1 + 3, 1), 1);	/* payload kept */
	cfg_write(&vm, 1, c2 + 2, 0xffff, 2);
	CHECK_EQ(cfg_read(&vm, 1, c2 + 2, 2), 0xc003);
	cfg_write(&vm, 1, c1 + 4, 0xffffffff, 4);
	CHECK_EQ(cfg_read(&vm, 1, c1 + 4, 1), 2);	/* read-only unless declared */
	/* No room: refused, list intact. */
	uint8_t big[200] = { 0x09 };
	CHECK_EQ(pci_dev_add_cap(&t.pci, big, sizeof(big)), -1);
	CHECK_EQ(cfg_read(&vm, 1, c2 + 1, 1), 0);
	teardown(&vm);
}

TEST(command_status_intx)
{
	struct vm vm;
	setup(&vm);
	struct tdev t;
	tdev_init(&t, "tdev");
	CHECK_EQ(pci_register(&vm, &t.pci), 0);
	unsigned gsi = t.pci.irq_pin_gsi;
	pci_dev_irq(&t.pci, 1);
	CHECK_EQ(irq_level[gsi], 1);
	CHECK(cfg_read(&vm, 1, 0x06, 2) & 0x08);	/* Status.INT */
	/* INTx disable masks the line without losing the state. */
	cfg_write(&vm, 1, 0x04, cfg_read(&vm, 1, 0x04, 2) | 0x400, 2);
	CHECK_EQ(irq_level[gsi], 0);
	cfg_write(&vm, 1, 0x04, cfg_read(&vm, 1, 0x04, 2) & ~0x400, 2);
	CHECK_EQ(irq_level[gsi], 1);
	pci_dev_irq(&t.pci, 0);
	CHECK_EQ(irq_level[gsi], 0);
	/* Status error bits are write-one-to-clear; the rest is read-only. */
	put_le16(t.pci.cfg + 0x06, get_le16(t.pci.cfg + 0x06) | 0x2000);
	cfg_write(&vm, 1, 0x06, 0x0010, 2);
	CHECK(cfg_read(&vm, 1, 0x06, 2) & 0x2000);
	cfg_write(&vm, 1, 0x06, 0x2000, 2);
	CHECK_EQ(cfg_read(&vm, 1, 0x06, 2) & 0x2000, 0);
	/* Interrupt line is a scratch byte; the pin is fixed. */
	cfg_write(&vm, 1, 0x3c, 0xffff, 2);
	CHECK_EQ(cfg_read(&vm, 1, 0x3c, 2), 0x01ff);
	/* Out-of-range direct accesses are refused. */
	CHECK_EQ(pci_cfg_read(&t.pci, 254, 4), 0xffffffff);
	pci_cfg_write(&t.pci, 255, 0xffffffff, 4);
	CHECK_EQ(pci_cfg_read(&t.pci, 0, 4), 0x10421af4);
	teardown(&vm);
}

TEST(slots_run_out)
{
	struct vm vm;
	setup(&vm);
	static struct tdev devs[32];
	int ok = 0;
	for (int i = 0; i < 32; i++) {
		memset(&devs[i], 0, sizeof(devs[i]));
		devs[i].pci.name = "many";
		pci_dev_init(&devs[i].pci, 0x1af4, 0x1000, 0xff0000, 0, 0);
		if (pci_register(&vm, &devs[i].pci) == 0)
			ok++;
	}
	CHECK_EQ(ok, 31);	/* slots 1..31 */
	/* Every slot's INTA# is one of the four PCI lines. */
	for (int s = 1; s < 32; s++) {
		int g = pci_host_irq_map(&vm, s);
		CHECK(g == 5 || g == 9 || g == 10 || g == 11);
	}
	teardown(&vm);
}

TEST_MAIN()
