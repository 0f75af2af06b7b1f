/*
 * Intel MultiProcessor Specification 1.4 tables: every vCPU, the IOAPIC, the
 * ISA IRQs and each PCI slot's INTA# routing, in the EBDA where guests look.
 */
#include <string.h>
#include "boot.h"
#include "e820.h"
#include "hw.h"
#include "pci.h"
#include "util.h"
#include "vm.h"

#define IOAPIC_ADDR 0xFEC00000u
#define LAPIC_ADDR  0xFEE00000u
#define MP_IRQ_INT 0
#define MP_IRQ_NMI 1
#define MP_IRQ_EXTINT 3
#define BUS_PCI 0
#define BUS_ISA 1
/* Active high, level triggered: what KVM's IOAPIC sees from KVM_IRQ_LINE. */
#define MP_FLAGS_LEVEL_HIGH 0x0d

struct mp_writer {
	uint8_t *base, *p, *end;
	unsigned count;
};

static uint8_t *mp_entry(struct mp_writer *w, size_t len)
{
	if (w->p + len > w->end)
		return NULL;
	uint8_t *e = w->p;
	memset(e, 0, len);
	w->p += len;
	w->count++;
	return e;
}

static void mp_irq(struct mp_writer *w, uint8_t type, uint8_t irqtype, uint16_t flags, uint8_t bus,
		   uint8_t bus_irq, uint8_t dst_id, uint8_t dst_pin)
{
	uint8_t *e = mp_entry(w, 8);
	if (!e)
		return;
	e[0] = type; e[1] = irqtype; put_le16(e + 2, flags);
	e[4] = bus; e[5] = bus_irq; e[6] = dst_id; e[7] = dst_pin;
}

int mptable_write(struct vm *vm)
{
	const size_t space = 0xA0000 - EBDA_START;
	uint8_t *base = guest_ptr(&vm->mem, EBDA_START, space);
	if (!base)
		return err_set("no RAM for the MP table");
	memset(base, 0, space);
	uint8_t *fp = base, *ct = base + 16;
	struct mp_writer w = { ct, ct + 44, base + space, 0 };
	unsigned ncpu = vm->nr_vcpus;
	uint8_t ioapic_id = ncpu;

	for (unsigned i = 0; i < ncpu; i++) {
		uint8_t *e = mp_entry(&w, 20);
		if (!e)
			return err_set("too many vCPUs for the MP table (%u)", ncpu);
		e[0] = 0; e[1] = i; e[2] = 0x14; e[3] = 1 | (i == 0 ? 2 : 0);
		put_le32(e + 4, 0x600);		/* family 6 */
		put_le32(e + 8, 0x201);		/* FPU, APIC */
	}
	uint8_t *e = mp_entry(&w, 8);
	e[0] = 1; e[1] = BUS_PCI; memcpy(e + 2, "PCI   ", 6);
	e = mp_entry(&w, 8);
	e[0] = 1; e[1] = BUS_ISA; memcpy(e + 2, "ISA   ", 6);
	e = mp_entry(&w, 8);
	e[0] = 2; e[1] = ioapic_id; e[2] = 0x11; e[3] = 1; put_le32(e + 4, IOAPIC_ADDR);

	/* ISA IRQs map 1:1 to IOAPIC pins (KVM routes GSI n to pin n), except the
	 * pins PCI INTx lines use: those must stay level-triggered. */
	struct pci_host *h = pci_host(vm);
	for (unsigned irq = 0; irq < 16; irq++) {
		bool pci = false;
		for (int s = 0; h && s < PCI_MAX_DEVS; s++)
			pci |= h->devs[s] && h->devs[s]->irq_pin_gsi && h->devs[s]->irq_pin_gsi == irq;
		if (irq != 2 && !pci)
			mp_irq(&w, 3, MP_IRQ_INT, 0, BUS_ISA, irq, ioapic_id, irq);
	}
	for (int s = 0; h && s < PCI_MAX_DEVS; s++) {
		struct pci_dev *d = h->devs[s];
		if (d && d->irq_pin_gsi)
			mp_irq(&w, 3, MP_IRQ_INT, MP_FLAGS_LEVEL_HIGH, BUS_PCI, (d->slot << 2) | 0, ioapic_id,
			       d->irq_pin_gsi);
	}
	mp_irq(&w, 4, MP_IRQ_EXTINT, 0, BUS_ISA, 0, 0xff, 0);
	mp_irq(&w, 4, MP_IRQ_NMI, 0, BUS_ISA, 0, 0xff, 1);
	if (w.p > w.end)
		return err_set("MP table overflow");

	memcpy(ct, "PCMP", 4);
	put_le16(ct + 4, w.p - ct);
	ct[6] = 4;
	memcpy(ct + 8, "LKVM    ", 8);
	memcpy(ct + 16, "LKVM-MP     ", 12);
	put_le16(ct + 34, w.count);
	put_le32(ct + 36, LAPIC_ADDR);
	ct[7] = checksum8(ct, w.p - ct);

	memcpy(fp, "_MP_", 4);
	put_le32(fp + 4, EBDA_START + 16);
	fp[8] = 1;
	fp[9] = 4;
	fp[10] = checksum8(fp, 16);
	return 0;
}
