/*
 * ACPI tables for kernels that find CPUs only through ACPI (Debian's, with
 * MPPARSE off): RSDP, XSDT, a FADT whose PM1a control block powers the VM
 * off and whose GPE0 block raises the SCI, a DSDT holding \_S5, the PCI host
 * bridge and the VM generation ID device, and a MADT. Not "hardware
 * reduced": Linux then assumes no 8259/PIT/legacy IRQs, and the 8250s stop
 * interrupting. Layouts from the ACPI 6.4 specification, sections
 * 5.2.5-5.2.12; the generation ID device after Microsoft's "Virtual Machine
 * Generation ID" paper, as Linux's drivers/virt/vmgenid.c reads it.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include "acpi.h"
#include "device.h"
#include "bus.h"
#include "e820.h"
#include "snapshot.h"
#include "util.h"
#include "vm.h"

#define IOAPIC_ADDR 0xFEC00000u
#define LAPIC_ADDR 0xFEE00000u
#define FADT_WBINVD 1u
#define FADT_RESET_REG_SUP (1u << 10)
#define PM1_SCI_EN 0x0001
#define PM1_SLP_EN 0x2000
#define SLP_TYP_S5 5
#define SCI_GSI 7		/* an ISA line nothing else drives (PCI INTx take 5, 9, 10, 11) */
#define GPE_VMGENID 0		/* GPE0 bit whose _E00 notifies the generation ID device */

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
 * PM1a event block (status, enable) at ACPI_PM_PORT, control block at +4,
 * GPE0 block (status, enable; 16 events) at +8. ACPI mode is always on
 * (SCI_EN, no SMI command port); writing SLP_EN with SLP_TYP 5 (S5, as \_S5
 * says) powers the VM off. The SCI (level, active high) is up while an
 * enabled GPE's status bit is set; the guest clears it by writing the bit.
 */
struct acpi_pm {
	struct vm *vm;
	pthread_mutex_t lock;
	uint16_t pm1_enable;	/* kept as written, so the kernel sees its events enabled */
	uint16_t gpe_sts, gpe_en;
	int sci;		/* the level last sent */
};

static void update_sci(struct acpi_pm *pm)
{
	int level = (pm->gpe_sts & pm->gpe_en) != 0;
	if (level != pm->sci) {
		pm->sci = level;
		vm_irq_line(pm->vm, SCI_GSI, level);
	}
}

static void pm_read(void *ctx, uint64_t off, void *data, int len)
{
	struct acpi_pm *pm = ctx;
	pthread_mutex_lock(&pm->lock);
	uint64_t v = 0;
	switch (off) {
	case 2: v = pm->pm1_enable; break;
	case 4: v = PM1_SCI_EN; break;
	case 8: v = pm->gpe_sts; break;
	case 10: v = pm->gpe_en; break;
	}
	pthread_mutex_unlock(&pm->lock);
	u64_to_bytes(data, len, v);
}

static void pm_write(void *ctx, uint64_t off, const void *data, int len)
{
	struct acpi_pm *pm = ctx;
	uint16_t v = len >= 2 ? get_le16(data) : *(const uint8_t *)data;
	pthread_mutex_lock(&pm->lock);
	switch (off) {
	case 2:
		pm->pm1_enable = v;
		break;
	case 8:
		pm->gpe_sts &= ~v;	/* write one to clear */
		break;
	case 10:
		pm->gpe_en = v;
		break;
	}
	update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
	if (off == 4 && len >= 2 && (v & PM1_SLP_EN) && ((v >> 10) & 7) == SLP_TYP_S5)
		vm_request_exit(pm->vm, VM_POWEROFF, 0);
}

int acpi_gpe_raise(struct vm *vm, int bit)
{
	struct acpi_pm *pm = device_priv(vm, "acpi-pm", 0);
	if (!pm || bit < 0 || bit > 15)
		return err_set("no ACPI GPE %d in this VM", bit);
	pthread_mutex_lock(&pm->lock);
	pm->gpe_sts |= 1u << bit;
	update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
	return 0;
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
	/* Device(PCI0) and Device(VGEN) inside Scope(\_SB_) */
	uint8_t scope[400], *q = scope;
	memcpy(q, "\\_SB_", 5), q += 5;
	*q++ = 0x5b, *q++ = 0x82;
	q += aml_pkg(q, dev, p - dev);
	/*
	 * The VM generation ID: _HID/_CID Linux's vmgenid driver matches, ADDR a
	 * package of the 16-byte ID's address (low, high dword).
	 */
	static const uint8_t vgen_names[] = {
		'V', 'G', 'E', 'N',
		0x08, '_', 'H', 'I', 'D', 0x0d, 'V', 'M', 'G', 'E', 'N', 'C', 'T', 'R', 0,
		0x08, '_', 'C', 'I', 'D', 0x0d, 'V', 'M', '_', 'G', 'E', 'N', '_', 'C', 'O', 'U', 'N', 'T', 'E', 'R', 0,
		0x08, '_', 'D', 'D', 'N', 0x0d, 'V', 'M', '_', 'G', 'e', 'n', '_', 'C', 'o', 'u', 'n', 't', 'e', 'r', 0,
		0x08, 'A', 'D', 'D', 'R', 0x12, 12, 2, 0x0c,
	};
	uint8_t vgen[128], *v = vgen;
	memcpy(v, vgen_names, sizeof(vgen_names)), v += sizeof(vgen_names);
	put_le32(v, (uint32_t)VMGENID_GPA), v += 4;
	*v++ = 0x0c;
	put_le32(v, (uint32_t)(VMGENID_GPA >> 32)), v += 4;
	*q++ = 0x5b, *q++ = 0x82;
	q += aml_pkg(q, vgen, v - vgen);
	uint8_t *o = out;
	memcpy(o, s5, sizeof(s5)), o += sizeof(s5);
	*o++ = 0x10;
	n = aml_pkg(o, scope, q - scope);
	o += n;
	/* Scope(\_GPE) { Method(_E00) { Notify(\_SB.VGEN, 0x80) } }: a new generation. */
	static const uint8_t gpe_method[] = {
		'_', 'E', '0', '0', 0x00,	/* no arguments, not serialized */
		0x86, '\\', 0x2e, '_', 'S', 'B', '_', 'V', 'G', 'E', 'N', 0x0a, 0x80,
	};
	uint8_t method[64], gscope[80], *m = method, *gs = gscope;
	*m++ = 0x14;
	m += aml_pkg(m, gpe_method, sizeof(gpe_method));
	memcpy(gs, "\\_GPE", 5), gs += 5;
	memcpy(gs, method, m - method), gs += m - method;
	*o++ = 0x10;
	o += aml_pkg(o, gscope, gs - gscope);
	return o - out;
}

size_t acpi_build(uint8_t *base, uint64_t gpa, int ncpu, size_t cap)
{
	uint8_t aml[700];
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
	/* The SCI as KVM's IOAPIC sees KVM_IRQ_LINE: active high, level. */
	e[0] = 2; e[1] = 10; e[2] = 0; e[3] = SCI_GSI; put_le32(e + 4, SCI_GSI); put_le16(e + 8, 0x0d);
	e += 10;
	e[0] = 4; e[1] = 6; e[2] = 0xff; put_le16(e + 3, 0); e[5] = 1;	/* NMI on LINT1 of every CPU */
	header(m, "APIC", madt_len, 4);

	uint8_t *f = base + fadt;
	put_le32(f + 40, gpa + dsdt);
	put_le16(f + 46, SCI_GSI);	/* SCI_INT */
	put_le32(f + 56, ACPI_PM_PORT);	/* PM1a_EVT_BLK */
	put_le32(f + 64, ACPI_PM_PORT + 4);	/* PM1a_CNT_BLK */
	put_le32(f + 80, ACPI_PM_PORT + 8);	/* GPE0_BLK */
	f[88] = 4;	/* PM1_EVT_LEN */
	f[89] = 2;	/* PM1_CNT_LEN */
	f[92] = 4;	/* GPE0_BLK_LEN: 2 status bytes, 2 enable bytes */
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
	gas_io(f + 220, ACPI_PM_PORT + 8);	/* X_GPE0_BLK */
	f[220 + 1] = 32;
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
	/* The generation ID's page, the last of the area, stays out of the tables. */
	size_t cap = VMGENID_GPA - ACPI_TABLES_GPA;
	uint8_t *base = guest_ptr(&vm->mem, ACPI_TABLES_GPA, cap);
	if (!base || !acpi_build(base, ACPI_TABLES_GPA, vm->nr_vcpus, cap))
		return err_set("no room for ACPI tables for %d vCPUs", vm->nr_vcpus);
	return 0;
}

static void acpi_pm_destroy(struct device *d)
{
	struct acpi_pm *pm = d->priv;
	bus_unregister_all(&pm->vm->pio, pm);
	pthread_mutex_destroy(&pm->lock);
	free(pm);
}

static int acpi_pm_save(struct device *d, struct snap_writer *w)
{
	struct acpi_pm *pm = d->priv;
	pthread_mutex_lock(&pm->lock);
	snap_u16(w, pm->pm1_enable);
	snap_u16(w, pm->gpe_sts);
	snap_u16(w, pm->gpe_en);
	pthread_mutex_unlock(&pm->lock);
	return 0;
}

static int acpi_pm_load(struct device *d, struct snap_reader *r)
{
	struct acpi_pm *pm = d->priv;
	uint16_t en = snap_get_u16(r), sts = snap_get_u16(r), gen = snap_get_u16(r);
	if (snap_failed(r))
		return -1;
	pthread_mutex_lock(&pm->lock);
	pm->pm1_enable = en;
	pm->gpe_sts = sts;
	pm->gpe_en = gen;
	pm->sci = 0;
	update_sci(pm);		/* KVM's per-source level of the SCI comes from here */
	pthread_mutex_unlock(&pm->lock);
	return 0;
}

static const struct device_ops acpi_pm_ops = {
	.destroy = acpi_pm_destroy, .save = acpi_pm_save, .load = acpi_pm_load, .snap_version = 1,
};

/* The PM1 and GPE0 registers the tables point at: the guest's S5 power-off, the SCI. */
static int acpi_pm_create(struct vm *vm, void *own)
{
	struct acpi_pm *pm = xcalloc(1, sizeof(*pm));
	pm->vm = vm;
	pthread_mutex_init(&pm->lock, NULL);
	device_add(vm, "acpi-pm", &acpi_pm_ops, pm);
	return bus_register(&vm->pio, ACPI_PM_PORT, 12, &pm_ops, pm, "acpi-pm");
}

/*
 * The VM generation ID: 16 random bytes at VMGENID_GPA that change whenever
 * the VM may have been duplicated, i.e. on every restore of a snapshot, with
 * GPE 0 raised so the guest looks (Linux then reseeds its CRNG at once:
 * add_vmfork_randomness). Its record keeps the generation the VM had.
 */
struct vmgenid {
	struct vm *vm;
};

static int new_generation_id(struct vm *vm)
{
	uint8_t id[16];
	if (getrandom(id, sizeof(id), 0) != (ssize_t)sizeof(id))
		return err_errno("vmgenid: getrandom");
	return guest_copy_to(&vm->mem, VMGENID_GPA, id, sizeof(id));
}

static int vmgenid_save(struct device *d, struct snap_writer *w)
{
	snap_u64(w, VMGENID_GPA);
	return 0;
}

static int vmgenid_load(struct device *d, struct snap_reader *r)
{
	struct vmgenid *g = d->priv;
	uint64_t gpa = snap_get_u64(r);
	if (snap_failed(r))
		return -1;
	if (gpa != VMGENID_GPA)
		return snap_bad(r, "the generation ID was at 0x%llx, this lkvm puts it at 0x%llx", (unsigned long long)gpa,
				(unsigned long long)VMGENID_GPA);
	/* A restore: the guest may not be the only one restored from this snapshot. */
	if (new_generation_id(g->vm) < 0 || acpi_gpe_raise(g->vm, GPE_VMGENID) < 0)
		return -1;
	return 0;
}

static void vmgenid_destroy(struct device *d)
{
	free(d->priv);
}

static const struct device_ops vmgenid_ops = {
	.destroy = vmgenid_destroy, .save = vmgenid_save, .load = vmgenid_load, .snap_version = 1,
};

static int vmgenid_create(struct vm *vm, void *own)
{
	struct vmgenid *g = xcalloc(1, sizeof(*g));
	g->vm = vm;
	device_add(vm, "vmgenid", &vmgenid_ops, g);
	return vm->cfg.restore ? 0 : new_generation_id(vm);	/* restored RAM holds one already */
}

const struct device_type acpi_pm_device = { .name = "acpi-pm", .create = acpi_pm_create };

const struct device_type vmgenid_device = { .name = "vmgenid", .create = vmgenid_create };
