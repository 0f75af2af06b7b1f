/*
 * ACPI tables for kernels that find CPUs only through ACPI (Debian's, with
 * MPPARSE off): RSDP, XSDT, a FADT whose PM1a control block powers the VM
 * off, a DSDT holding just \_S5, and a MADT. Not "hardware reduced": Linux
 * then assumes no 8259/PIT/legacy IRQs, and the 8250s stop interrupting.
 * Layouts from the ACPI 6.4 specification, sections 5.2.5-5.2.12.
 */
#include <stdlib.h>
#include <string.h>
#include "acpi.h"
#include "device.h"
#include "bus.h"
#include "e820.h"
#include "util.h"
#include "vm.h"

#define IOAPIC_ADDR 0xFEC00000u
#define LAPIC_ADDR 0xFEE00000u
#define FADT_WBINVD 1u
#define FADT_RESET_REG_SUP (1u << 10)
#define PM1_SCI_EN 0x0001
#define PM1_SLP_EN 0x2000
#define SLP_TYP_S5 5

static void header(uint8_t *t, const char *sig, uint32_t len, uint8_t rev)
{
	memcpy(t, sig, 4);
	put_le32(t + 4, len);
	t[8] = rev;
	memcpy(t + 10, "LKVM  ", 6);
	memcpy(t + 16, "LKVMACPI", 8);
	put_le32(t + 24, 1);
	memcpy(t + 28, "LKVM", 4);
	put_le32(t + 32, 1);
	t[9] = checksum8(t, len);
}

/* Generic Address Structure for a byte-wide I/O port. */
static void gas_io(uint8_t *g, uint16_t port)
{
	g[0] = 1;	/* system I/O space */
	g[1] = 8;	/* bit width */
	g[2] = 0;
	g[3] = 1;	/* byte access */
	put_le64(g + 4, port);
}

/*
 * PM1a event block (status, enable) at ACPI_PM_PORT, control block at +4.
 * ACPI mode is always on (SCI_EN, no SMI command port); writing SLP_EN with
 * SLP_TYP 5 (S5, as \_S5 says) powers the VM off. No event ever fires.
 */
struct acpi_pm {
	struct vm *vm;
	uint16_t pm1_enable;	/* kept as written, so the kernel sees its events enabled; atomic */
};

static void pm_read(void *ctx, uint64_t off, void *data, int len)
{
	struct acpi_pm *pm = ctx;
	uint64_t v = off == 2 ? __atomic_load_n(&pm->pm1_enable, __ATOMIC_RELAXED) : off == 4 ? PM1_SCI_EN : 0;
	u64_to_bytes(data, len, v);
}

static void pm_write(void *ctx, uint64_t off, const void *data, int len)
{
	struct acpi_pm *pm = ctx;
	if (off == 2 && len >= 2)
		__atomic_store_n(&pm->pm1_enable, get_le16(data), __ATOMIC_RELAXED);
	if (off != 4 || len < 2)
		return;
	uint16_t v = get_le16(data);
	if ((v & PM1_SLP_EN) && ((v >> 10) & 7) == SLP_TYP_S5)
		vm_request_exit(pm->vm, VM_POWEROFF, 0);
}
static const struct bus_ops pm_ops = { .read = pm_read, .write = pm_write };

/* AML: a PkgLength-prefixed package (1- or 2-byte length, enough below 4 KiB). */
static size_t aml_pkg(uint8_t *out, const uint8_t *body, size_t n)
{
	size_t total = n + 1;
	if (total < 64) {
		out[0] = total;
	} else {
		total = n + 2;
		out[0] = 0x40 | (total & 0xf);
		out[1] = total >> 4;
	}
	memmove(out + (total - n), body, n);
	return total;
}

/*
 * The DSDT's AML: \_S5 for power-off, and \_SB.PCI0, a PNP0A03 host bridge
 * whose _CRS gives bus 0, the config ports and the I/O and MMIO windows:
 * without it an ACPI kernel never scans PCI and sees no virtio device.
 */
static size_t build_aml(uint8_t *out)
{
	static const uint8_t s5[] = { 0x08, '_', 'S', '5', '_', 0x12, 0x05, 0x02, 0x0a, SLP_TYP_S5, 0x00 };
	static const uint8_t crs[] = {
		/* bus numbers 0-0 */
		0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00, 0, 0, 0x00, 0x00, 0x00, 0x00, 0, 0, 0x01, 0x00,
		/* config ports 0xcf8-0xcff */
		0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08,
		/* I/O windows 0-0xcf7 and 0xd00-0xffff */
		0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03, 0, 0, 0x00, 0x00, 0xf7, 0x0c, 0, 0, 0xf8, 0x0c,
		0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03, 0, 0, 0x00, 0x0d, 0xff, 0xff, 0, 0, 0x00, 0xf3,
		/* 32-bit MMIO window 0xc0000000-0xfebfffff */
		0x87, 0x17, 0x00, 0x00, 0x0c, 0x01, 0, 0, 0, 0, 0x00, 0x00, 0x00, 0xc0, 0xff, 0xff, 0xbf, 0xfe,
		0, 0, 0, 0, 0x00, 0x00, 0xc0, 0x3e,
		0x79, 0x00,
	};
	uint8_t dev[256], tmp[256], *p = dev;
	size_t n;
	memcpy(p, "PCI0", 4), p += 4;
	static const uint8_t names[] = {
		0x08, '_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x0a, 0x03,	/* EisaId("PNP0A03") */
		0x08, '_', 'U', 'I', 'D', 0x00,
		0x08, '_', 'S', 'E', 'G', 0x00,
		0x08, '_', 'B', 'B', 'N', 0x00,
		0x08, '_', 'C', 'R', 'S', 0x11,
	};
	memcpy(p, names, sizeof(names)), p += sizeof(names);
	tmp[0] = 0x0a;	/* BufferSize as a ByteConst */
	tmp[1] = sizeof(crs);
	memcpy(tmp + 2, crs, sizeof(crs));
	p += aml_pkg(p, tmp, sizeof(crs) + 2);
	/* Device(PCI0) inside Scope(\_SB_) */
	uint8_t scope[300], *q = scope;
	memcpy(q, "\\_SB_", 5), q += 5;
	*q++ = 0x5b, *q++ = 0x82;
	q += aml_pkg(q, dev, p - dev);
	uint8_t *o = out;
	memcpy(o, s5, sizeof(s5)), o += sizeof(s5);
	*o++ = 0x10;
	n = aml_pkg(o, scope, q - scope);
	return o + n - out;
}

size_t acpi_build(uint8_t *base, uint64_t gpa, int ncpu, size_t cap)
{
	uint8_t aml[400];
	size_t aml_len = build_aml(aml);
	size_t rsdp = 0, xsdt = 48, fadt = xsdt + 36 + 2 * 8, dsdt = fadt + 276;
	size_t madt = ALIGN_UP(dsdt + 36 + aml_len, 8);
	size_t madt_len = 44 + ncpu * 8 + 12 + 10 + 6;
	size_t end = madt + madt_len;
	if (end > cap)
		return 0;
	memset(base, 0, end);

	uint8_t *d = base + dsdt;
	memcpy(d + 36, aml, aml_len);
	header(d, "DSDT", 36 + aml_len, 2);

	uint8_t *m = base + madt, *e = m + 44;
	put_le32(m + 36, LAPIC_ADDR);
	put_le32(m + 40, 1);	/* PCAT_COMPAT: 8259s present (the kernel masks them) */
	for (int i = 0; i < ncpu; i++, e += 8) {
		e[0] = 0; e[1] = 8; e[2] = i; e[3] = i;
		put_le32(e + 4, 1);	/* enabled */
	}
	e[0] = 1; e[1] = 12; e[2] = ncpu; put_le32(e + 4, IOAPIC_ADDR); put_le32(e + 8, 0);
	e += 12;
	/* SCI (IRQ 9) as KVM's IOAPIC sees KVM_IRQ_LINE: active high, level. */
	e[0] = 2; e[1] = 10; e[2] = 0; e[3] = 9; put_le32(e + 4, 9); put_le16(e + 8, 0x0d);
	e += 10;
	e[0] = 4; e[1] = 6; e[2] = 0xff; put_le16(e + 3, 0); e[5] = 1;	/* NMI on LINT1 of every CPU */
	header(m, "APIC", madt_len, 4);

	uint8_t *f = base + fadt;
	put_le32(f + 40, gpa + dsdt);
	put_le16(f + 46, 9);	/* SCI_INT */
	put_le32(f + 56, ACPI_PM_PORT);	/* PM1a_EVT_BLK */
	put_le32(f + 64, ACPI_PM_PORT + 4);	/* PM1a_CNT_BLK */
	f[88] = 4;	/* PM1_EVT_LEN */
	f[89] = 2;	/* PM1_CNT_LEN */
	put_le16(f + 109, 0x07);	/* legacy devices, 8042, no VGA */
	put_le32(f + 112, FADT_WBINVD | FADT_RESET_REG_SUP);
	gas_io(f + 116, 0x64);	/* reset through the i8042 */
	f[128] = 0xfe;
	f[131] = 4;	/* FADT minor version */
	put_le64(f + 140, gpa + dsdt);
	gas_io(f + 148, ACPI_PM_PORT);	/* X_PM1a_EVT_BLK */
	f[148 + 1] = 32;
	gas_io(f + 172, ACPI_PM_PORT + 4);	/* X_PM1a_CNT_BLK */
	f[172 + 1] = 16;
	f[172 + 3] = 2;
	memcpy(f + 268, "LKVM    ", 8);
	header(f, "FACP", 276, 6);

	uint8_t *x = base + xsdt;
	put_le64(x + 36, gpa + fadt);
	put_le64(x + 44, gpa + madt);
	header(x, "XSDT", 36 + 16, 1);

	uint8_t *r = base + rsdp;
	memcpy(r, "RSD PTR ", 8);
	memcpy(r + 9, "LKVM  ", 6);
	r[15] = 2;	/* ACPI 2.0+: XSDT */
	put_le32(r + 20, 36);
	put_le64(r + 24, gpa + xsdt);
	r[8] = checksum8(r, 20);
	r[32] = checksum8(r, 36);
	return end;
}

int acpi_write_tables(struct vm *vm)
{
	uint8_t *base = guest_ptr(&vm->mem, ACPI_TABLES_GPA, ACPI_TABLES_SIZE);
	if (!base || !acpi_build(base, ACPI_TABLES_GPA, vm->nr_vcpus, ACPI_TABLES_SIZE))
		return err_set("no room for ACPI tables for %d vCPUs", vm->nr_vcpus);
	return 0;
}

static void acpi_pm_destroy(struct device *d)
{
	struct acpi_pm *pm = d->priv;
	bus_unregister_all(&pm->vm->pio, pm);
	free(pm);
}

static const struct device_ops acpi_pm_ops = { .destroy = acpi_pm_destroy };

/* The PM1 registers the tables point at: the guest's S5 power-off. */
static int acpi_pm_create(struct vm *vm, void *own)
{
	struct acpi_pm *pm = xcalloc(1, sizeof(*pm));
	pm->vm = vm;
	device_add(vm, "acpi-pm", &acpi_pm_ops, pm);
	return bus_register(&vm->pio, ACPI_PM_PORT, 6, &pm_ops, pm, "acpi-pm");
}

const struct device_type acpi_pm_device = { .name = "acpi-pm", .create = acpi_pm_create };
