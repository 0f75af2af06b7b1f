/* The MP table, checked the way Linux's mpparse reads it. */
#include "test.h"
#include "boot.h"
#include "device.h"
#include "e820.h"
#include "machine.h"
#include "pci.h"
#include "util.h"
#include "vm.h"

TEST(mptable)
{
	struct vm vm;
	memset(&vm, 0, sizeof(vm));
	CHECK_EQ(guest_mem_alloc(&vm.mem, MiB(64), PCI_HOLE_START, PCI_HOLE_END), 0);
	vm.nr_vcpus = 3;
	struct pci_host host;
	struct pci_dev dev;
	memset(&host, 0, sizeof(host));
	memset(&dev, 0, sizeof(dev));
	dev.slot = 2;
	dev.irq_pin_gsi = 10;
	host.devs[2] = &dev;
	struct pci_dev bridge;
	memset(&bridge, 0, sizeof(bridge));
	host.devs[0] = &bridge;
	static const struct device_ops no_ops;
	device_add(&vm, "pci-host", &no_ops, &host);
	CHECK_EQ(mptable_write(&vm), 0);

	/* Linux scans 0x9fc00 (639 KiB) for "_MP_" on 16-byte boundaries. */
	const uint8_t *fp = NULL;
	for (uint64_t a = 639 * 1024; a < 640 * 1024; a += 16) {
		const uint8_t *p = guest_ptr(&vm.mem, a, 16);
		if (!memcmp(p, "_MP_", 4))
			fp = p;
	}
	CHECK(fp != NULL);
	if (!fp)
		return;
	CHECK_EQ(fp[8], 1);
	CHECK(fp[9] == 1 || fp[9] == 4);
	CHECK_EQ(sum8(fp, 16), 0);
	CHECK_EQ(fp[11], 0);	/* feature1: a config table follows, no default config */
	uint32_t phys = get_le32(fp + 4);
	const uint8_t *ct = guest_ptr(&vm.mem, phys, 44);
	CHECK(!memcmp(ct, "PCMP", 4));
	uint16_t len = get_le16(ct + 4);
	CHECK_EQ(sum8(guest_ptr(&vm.mem, phys, len), len), 0);
	CHECK_EQ(ct[6], 4);
	CHECK_EQ(get_le32(ct + 36), 0xFEE00000);
	/* Walk the entries: three processors (BSP first), two buses, an IOAPIC. */
	int cpus = 0, bsp = 0, ioapics = 0, pci_irqs = 0, isa0 = 0, isa10 = 0;
	const uint8_t *e = ct + 44, *end = ct + len;
	for (int i = 0; i < get_le16(ct + 34) && e < end; i++) {
		switch (e[0]) {
		case 0: cpus++; bsp += (e[3] & 2) ? 1 : 0; CHECK_EQ(e[1], cpus - 1); e += 20; break;
		case 2: ioapics++; CHECK_EQ(get_le32(e + 4), 0xFEC00000); e += 8; break;
		case 3:
			if (e[4] == 0) { pci_irqs++; CHECK_EQ(e[5], 2 << 2); CHECK_EQ(e[7], 10); }
			if (e[4] == 1 && e[5] == 0) isa0++;
			if (e[4] == 1 && e[5] == 10) isa10++;
			e += 8;
			break;
		default: e += 8; break;
		}
	}
	CHECK(e == end);
	CHECK_EQ(cpus, 3);
	CHECK_EQ(bsp, 1);
	CHECK_EQ(ioapics, 1);
	CHECK_EQ(pci_irqs, 1);
	CHECK_EQ(isa0, 1);	/* the timer's pin, even with a host bridge (GSI 0) in slot 0 */
	CHECK_EQ(isa10, 0);	/* the PCI device's pin is PCI's alone */
	devices_destroy(&vm);
	guest_mem_free(&vm.mem);
}

TEST_MAIN()
