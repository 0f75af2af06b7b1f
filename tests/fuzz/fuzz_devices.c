/*
 * libFuzzer target: the legacy device models in hw/ (8250 UARTs, i8042 and
 * port 0x92, MC146818 RTC/CMOS, the 8254 PIT and port 0x61, the PCI host
 * bridge's config space, the debug ports) on a fake VM's buses, driven by
 * port and MMIO accesses through bus_access() as a vCPU's exits would be.
 * Two plain PCI functions sit behind the bridge (an I/O BAR, memory BARs, a
 * capability) so config writes can move BARs onto each other, onto the UARTs,
 * over RAM.
 *
 * The input is a flags byte (guest RAM size for the CMOS and the PCI hole),
 * then records: an op byte and its operands.
 *   op & 3      width 1, 2, 4 (or 8 on MMIO)
 *   op & 4      write (the value follows, width bytes little endian)
 *   op >> 3     where: 0-11 a base from ports[] plus one offset byte,
 *               12 any 16-bit port (2 bytes), 13 MMIO at a 32-bit address
 *               (4 bytes), 14 MMIO inside the PCI window (2 bytes, scaled),
 *               15 host input to a UART: port byte, length byte, bytes
 *               16-31: as 0-15, but bursts: a count byte says how many
 *               times the access repeats (FIFOs, queues filling up)
 *
 * Every input builds the devices afresh; xcalloc is wrapped (-Wl,--wrap) so
 * what they allocate is freed after it. Oracle: no crash, ASan and UBSan
 * clean, interrupt lines only 0/1 on GSIs the machine has, reads always
 * complete the data they were given, a few registers that must read back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "devices.h"
#include "bus.h"
#include "e820.h"
#include "fake_vm.h"
#include "hw.h"
#include "pci.h"
#include "util.h"
#include "vm.h"

static struct vm vm;

/* ---- what the devices talk to ---- */

static void irq_hook(struct vm *v, unsigned gsi, int lvl)
{
	if (gsi >= 24 || (lvl != 0 && lvl != 1)) {
		fprintf(stderr, "fuzz_devices: interrupt line %u set to %d\n", gsi, lvl);
		abort();
	}
}

static void msi_hook(struct vm *v, uint64_t addr, uint32_t data) { abort(); }	/* no device here has MSI */

static volatile uint8_t sink_x;
static void uart_out(void *ctx, const void *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		sink_x ^= ((const uint8_t *)buf)[i];
}

/* A plain PCI function: a register file behind every BAR. */
struct dummy {
	struct pci_dev pci;
	uint8_t regs[0x4000];
	uint64_t size[6];
};
static struct dummy dummies[2];

static void dummy_read(void *ctx, uint64_t off, void *data, int len)
{
	struct dummy *d = ctx;
	for (int i = 0; i < len; i++)
		((uint8_t *)data)[i] = off + i < sizeof(d->regs) ? d->regs[off + i] : 0xff;
}

static void dummy_write(void *ctx, uint64_t off, const void *data, int len)
{
	struct dummy *d = ctx;
	for (int i = 0; i < len && off + i < sizeof(d->regs); i++)
		d->regs[off + i] = ((const uint8_t *)data)[i];
}

static const struct bus_ops dummy_ops = { .read = dummy_read, .write = dummy_write };

static void bar_moved(struct pci_dev *p, int n, uint64_t addr, bool mapped)
{
	if (n < 0 || n >= 6 || !p->bar[n].size) {
		fprintf(stderr, "fuzz_devices: BAR%d moved, which does not exist\n", n);
		abort();
	}
}

static void add_dummy(struct dummy *d, int kind)
{
	memset(d, 0, sizeof(*d));
	pci_dev_init(&d->pci, 0x1234, 0x11 + kind, 0xff0000, 0x1234, kind);
	d->pci.name = kind ? "fuzz-b" : "fuzz-a";
	if (kind == 0) {
		pci_dev_set_bar(&d->pci, 0, 0x20, true, &dummy_ops, d);
		pci_dev_set_bar(&d->pci, 1, 0x1000, false, &dummy_ops, d);
		uint8_t cap[8] = { 0x09, 0, 8, 1, 2, 3, 4, 5 };
		pci_dev_add_cap(&d->pci, cap, sizeof(cap));
	} else {
		pci_dev_set_bar(&d->pci, 2, 0x4000, false, &dummy_ops, d);
		pci_dev_set_bar(&d->pci, 5, 0x100, true, &dummy_ops, d);
	}
	d->pci.bar_moved = bar_moved;
	if (pci_register(&vm, &d->pci) < 0)
		abort();
}

static void setup(uint8_t flags)
{
	static const uint64_t ram[8] = { MiB(1), MiB(16), MiB(64) + 4096, MiB(255), GiB(3), GiB(3) + MiB(1),
					 GiB(16), GiB(1024) };
	static const struct irq_ops irqs = { .line = irq_hook, .msi = msi_hook };
	fake_vm_init(&vm, &irqs);
	/* RAM as the CMOS and the PCI code see it; nothing here touches its bytes. */
	uint64_t size = ram[flags & 7], low = MIN(size, PCI_HOLE_START);
	vm.mem.ram_size = size;
	vm.mem.r[0] = (struct mem_region){ 0, low, NULL };
	vm.mem.nr = 1;
	if (size > low)
		vm.mem.r[vm.mem.nr++] = (struct mem_region){ PCI_HOLE_END, size - low, NULL };
	if (device_type_create(&vm, &pci_host_device) || device_type_create(&vm, &serial_device) || device_type_create(&vm, &i8042_device) || device_type_create(&vm, &rtc_device) || device_type_create(&vm, &pit_device) || device_type_create(&vm, &debug_ports_device)) {
		fprintf(stderr, "fuzz_devices: set-up failed: %s\n", err_msg());
		abort();
	}
	for (int i = 0; i < SERIAL_NR_PORTS; i++)
		serial_set_output(serial_port(&vm, i), uart_out, NULL);
	add_dummy(&dummies[0], 0);
	add_dummy(&dummies[1], 1);
}

static void teardown(void)
{
	fake_vm_free(&vm);	/* every device destroyed: nothing of one input leaks into the next */
}

static void io_access(struct bus *b, uint64_t addr, uint8_t *val, int len, bool write)
{
	uint8_t buf[16];
	memset(buf, 0xa5, sizeof(buf));
	if (write)
		memcpy(buf, val, len);
	bus_access(b, addr, buf, len, write);
	if (!write) {
		/* A read fills exactly its width, whoever answers (all ones if nobody does). */
		for (int i = len; i < (int)sizeof(buf); i++)
			if (buf[i] != 0xa5) {
				fprintf(stderr, "fuzz_devices: %s read of %d bytes at 0x%llx wrote byte %d\n", b->name, len,
					(unsigned long long)addr, i);
				abort();
			}
	}
}

/* Registers whose value is fixed: the bridge's IDs, the UART scratch register. */
static void invariants(void)
{
	uint8_t a[4], d[4];
	put_le32(a, 0x80000000u);
	bus_access(&vm.pio, 0xcf8, a, 4, true);
	bus_access(&vm.pio, 0xcfc, d, 4, false);
	if (get_le32(d) != 0x29c08086) {
		fprintf(stderr, "fuzz_devices: host bridge ID reads 0x%08x\n", get_le32(d));
		abort();
	}
	uint8_t v = 0x5a, back;
	bus_access(&vm.pio, 0x3ff, &v, 1, true);
	bus_access(&vm.pio, 0x3ff, &back, 1, false);
	if (back != 0x5a) {
		fprintf(stderr, "fuzz_devices: ttyS0 scratch register reads 0x%02x after 0x5a\n", back);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint16_t ports[12] = { 0x3f8, 0x2f8, 0x3e8, 0x2e8, 0x60, 0x70, 0xcf8, 0x40, 0xf0, 0x600, 0x90,
					    PCI_IO_BASE };
	if (size < 1)
		return 0;
	setup(data[0]);
	size_t i = 1;
	while (i < size) {
		uint8_t op = data[i++];
		int len = 1 << (op & 3);
		bool write = op & 4;
		unsigned where = (op >> 3) & 15, times = 1;
		if (op & 0x80) {
			if (i >= size)
				break;
			times = data[i++];
		}
		struct bus *b = &vm.pio;
		uint64_t addr;
		if (where < 12) {
			if (i >= size)
				break;
			addr = ports[where] + data[i++];
		} else if (where == 12) {
			if (i + 2 > size)
				break;
			addr = get_le16(data + i);
			i += 2;
		} else if (where == 13 || where == 14) {
			size_t n = where == 13 ? 4 : 2;
			if (i + n > size)
				break;
			addr = where == 13 ? get_le32(data + i) : PCI_MMIO_BASE + 8ULL * get_le16(data + i);
			i += n;
			b = &vm.mmio;
		} else {
			if (i + 2 > size)
				break;
			unsigned port = data[i] % SERIAL_NR_PORTS, n = MIN((size_t)data[i + 1], size - i - 2);
			for (unsigned k = 0; k < times; k++)
				serial_input(serial_port(&vm, port), data + i + 2, n);
			i += 2 + n;
			continue;
		}
		if (b == &vm.pio && len == 8)
			len = 4;	/* port I/O is at most 4 bytes wide */
		uint8_t val[8] = { 0 };
		if (write) {
			size_t n = MIN((size_t)len, size - i);
			memcpy(val, data + i, n);
			i += n;
		}
		for (unsigned k = 0; k < times; k++)
			io_access(b, addr, val, len, write);
	}
	invariants();
	if (vm.exit_reason != VM_RUNNING && vm.exit_reason != VM_POWEROFF && vm.exit_reason != VM_RESET) {
		fprintf(stderr, "fuzz_devices: exit reason %d\n", vm.exit_reason);
		abort();
	}
	teardown();
	return 0;
}
