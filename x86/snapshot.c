/*
 * The PC board's part of a snapshot: KVM's in-kernel irqchip (both PICs and
 * the IOAPIC), the KVM clock, and every vCPU's whole state.
 *
 * A vCPU is read in the order KVM's API asks for (Documentation/virt/kvm/
 * api.rst and its notes on migration): MP state first (reading it may accept
 * pending LAPIC events), then registers, segments and control registers,
 * FPU/XSAVE, XCRs, debug registers, the LAPIC, the TSC frequency, CPUID,
 * every MSR KVM lists, and the vCPU events last, with every vCPU parked. It
 * is written back the same way: CPUID first (KVM wants it before anything
 * else), MP state, ..., the MSRs after the LAPIC (the TSC deadline needs
 * its timer mode), the events last. A vCPU parks only after KVM completed
 * its last exit (kvm/vm.c), so no half-done port or MMIO read is lost.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include "machine.h"
#include "snapshot.h"
#include "util.h"
#include "vm.h"

#define MAX_CPUID 256
#define MSR_BATCH 64
#define TSC_TOLERANCE_PPM 250	/* a host's calibration varies this much between boots */

/* ---- irqchip and clock ---- */

static const char *const chip_names[3] = { "PIC master", "PIC slave", "IOAPIC" };

int x86_vm_save(struct vm *vm, struct snap_writer *w)
{
	snap_begin(w, "pc:irqchip", 1);
	for (int i = 0; i < 3; i++) {
		struct kvm_irqchip chip = { .chip_id = i };
		if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &chip) < 0)
			return err_errno("KVM_GET_IRQCHIP (%s)", chip_names[i]);
		snap_bytes(w, &chip.chip, sizeof(chip.chip));
	}
	if (snap_end(w) < 0)
		return -1;
	struct kvm_clock_data clk = { 0 };
	if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &clk) < 0)
		return err_errno("KVM_GET_CLOCK");
	snap_begin(w, "pc:clock", 1);
	snap_u64(w, clk.clock);
	return snap_end(w);
}

int x86_irqchip_load(struct vm *vm, struct snap_reader *r)
{
	if (snap_open(r, "pc:irqchip", 1) < 0)
		return -1;
	struct kvm_irqchip chip[3];
	for (int i = 0; i < 3; i++) {
		memset(&chip[i], 0, sizeof(chip[i]));
		chip[i].chip_id = i;
		snap_get_bytes(r, &chip[i].chip, sizeof(chip[i].chip));
	}
	if (snap_close(r) < 0)
		return -1;
	for (int i = 0; i < 3; i++)
		if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &chip[i]) < 0)
			return err_errno("%s: KVM_SET_IRQCHIP (%s)", snap_path(r), chip_names[i]);
	return 0;
}

/* Last before the vCPUs run: the guest's clock goes on from the snapshot's moment. */
int x86_clock_load(struct vm *vm, struct snap_reader *r)
{
	if (snap_open(r, "pc:clock", 1) < 0)
		return -1;
	struct kvm_clock_data clk = { .clock = snap_get_u64(r) };
	if (snap_close(r) < 0)
		return -1;
	if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &clk) < 0)
		return err_errno("%s: KVM_SET_CLOCK", snap_path(r));
	return 0;
}

/* ---- the MSRs KVM can save ---- */

static struct kvm_msr_list *msr_list(struct vm *vm)
{
	struct kvm_msr_list probe = { .nmsrs = 0 };
	if (ioctl(vm->sys_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG) {
		err_errno("KVM_GET_MSR_INDEX_LIST");
		return NULL;
	}
	struct kvm_msr_list *l = xcalloc(1, sizeof(*l) + (probe.nmsrs + 1) * sizeof(uint32_t));
	l->nmsrs = probe.nmsrs;
	if (ioctl(vm->sys_fd, KVM_GET_MSR_INDEX_LIST, l) < 0) {
		err_errno("KVM_GET_MSR_INDEX_LIST");
		free(l);
		return NULL;
	}
	return l;
}

/* Read what KVM lists; MSRs this vCPU does not have (KVM stops at the first) are left out. */
static int read_msrs(struct vcpu *v, const struct kvm_msr_list *l, struct kvm_msr_entry *out, uint32_t *n)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e[MSR_BATCH];
	} b;
	*n = 0;
	for (uint32_t i = 0; i < l->nmsrs;) {
		uint32_t k = MIN((uint32_t)MSR_BATCH, l->nmsrs - i);
		memset(&b, 0, sizeof(b));
		b.h.nmsrs = k;
		for (uint32_t j = 0; j < k; j++)
			b.e[j].index = l->indices[i + j];
		int got = ioctl(v->fd, KVM_GET_MSRS, &b);
		if (got < 0)
			return err_errno("vCPU %d: KVM_GET_MSRS", v->id);
		for (int j = 0; j < got; j++)
			out[(*n)++] = b.e[j];
		i += got < (int)k ? (uint32_t)got + 1 : k;	/* skip the one KVM refused */
	}
	return 0;
}

static int xsave_size(struct vm *vm)
{
	int n = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	if (n >= (int)sizeof(struct kvm_xsave))
		return n;
	return ioctl(vm->sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE) > 0 ? (int)sizeof(struct kvm_xsave) : 0;
}

static bool has_cap(struct vm *vm, int cap)
{
	return ioctl(vm->sys_fd, KVM_CHECK_EXTENSION, cap) > 0;
}

/* ---- one vCPU ---- */

enum { PART_XCRS = 1, PART_DEBUGREGS = 2, PART_EVENTS = 4, PART_TSC_KHZ = 8 };

int x86_vcpu_save(struct vcpu *v, struct snap_writer *w)
{
	struct vm *vm = v->vm;
	char name[32];
	snprintf(name, sizeof(name), "vcpu:%d", v->id);
	struct kvm_mp_state mp;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_lapic_state lapic;
	if (ioctl(v->fd, KVM_GET_MP_STATE, &mp) < 0)
		return err_errno("vCPU %d: KVM_GET_MP_STATE", v->id);
	if (ioctl(v->fd, KVM_GET_REGS, &regs) < 0 || ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
		return err_errno("vCPU %d: KVM_GET_REGS/SREGS", v->id);
	int xs = xsave_size(vm);
	size_t xlen = xs ? (size_t)xs : sizeof(struct kvm_fpu);
	void *xsave = xcalloc(1, xlen);
	int e = xs > (int)sizeof(struct kvm_xsave) ? ioctl(v->fd, KVM_GET_XSAVE2, xsave) :
		xs ? ioctl(v->fd, KVM_GET_XSAVE, xsave) : ioctl(v->fd, KVM_GET_FPU, xsave);
	if (e < 0) {
		free(xsave);
		return err_errno("vCPU %d: KVM_GET_XSAVE", v->id);
	}
	unsigned parts = 0;
	struct kvm_xcrs xcrs = { 0 };
	struct kvm_debugregs dbg = { 0 };
	struct kvm_vcpu_events ev = { 0 };
	if (has_cap(vm, KVM_CAP_XCRS) && ioctl(v->fd, KVM_GET_XCRS, &xcrs) == 0)
		parts |= PART_XCRS;
	if (has_cap(vm, KVM_CAP_DEBUGREGS) && ioctl(v->fd, KVM_GET_DEBUGREGS, &dbg) == 0)
		parts |= PART_DEBUGREGS;
	if (ioctl(v->fd, KVM_GET_LAPIC, &lapic) < 0) {
		free(xsave);
		return err_errno("vCPU %d: KVM_GET_LAPIC", v->id);
	}
	int khz = has_cap(vm, KVM_CAP_GET_TSC_KHZ) ? ioctl(v->fd, KVM_GET_TSC_KHZ, 0) : -1;
	if (khz > 0)
		parts |= PART_TSC_KHZ;
	struct kvm_cpuid2 *cpuid = xcalloc(1, sizeof(*cpuid) + MAX_CPUID * sizeof(struct kvm_cpuid_entry2));
	cpuid->nent = MAX_CPUID;
	struct kvm_msr_list *l = msr_list(vm);
	struct kvm_msr_entry *msrs = l ? xcalloc(l->nmsrs + 1, sizeof(*msrs)) : NULL;
	uint32_t nmsrs = 0;
	int ret = -1;
	if (ioctl(v->fd, KVM_GET_CPUID2, cpuid) < 0) {
		err_errno("vCPU %d: KVM_GET_CPUID2", v->id);
		goto out;
	}
	if (!l || read_msrs(v, l, msrs, &nmsrs) < 0)
		goto out;
	/* Last: the events (pending exception, interrupt, NMI, SMI) as everything above left them. */
	if (has_cap(vm, KVM_CAP_VCPU_EVENTS) && ioctl(v->fd, KVM_GET_VCPU_EVENTS, &ev) == 0)
		parts |= PART_EVENTS;

	snap_begin(w, name, 1);
	snap_u32(w, parts);
	snap_u32(w, cpuid->nent);
	for (uint32_t i = 0; i < cpuid->nent; i++)
		snap_bytes(w, &cpuid->entries[i], sizeof(cpuid->entries[i]));
	snap_u32(w, mp.mp_state);
	snap_bytes(w, &regs, sizeof(regs));
	snap_bytes(w, &sregs, sizeof(sregs));
	snap_u32(w, xs);
	snap_bytes(w, xsave, xlen);
	snap_bytes(w, &xcrs, sizeof(xcrs));
	snap_bytes(w, &dbg, sizeof(dbg));
	snap_bytes(w, &lapic, sizeof(lapic));
	snap_u32(w, khz > 0 ? khz : 0);
	snap_u32(w, nmsrs);
	for (uint32_t i = 0; i < nmsrs; i++) {
		snap_u32(w, msrs[i].index);
		snap_u64(w, msrs[i].data);
	}
	snap_bytes(w, &ev, sizeof(ev));
	ret = snap_end(w);
out:
	free(xsave);
	free(cpuid);
	free(l);
	free(msrs);
	return ret;
}

/* The vCPU's CPUID entries from its record (for the feature check and for KVM_SET_CPUID2). */
static struct kvm_cpuid2 *read_cpuid(struct snap_reader *r)
{
	uint32_t n = snap_get_u32(r);
	if (n > MAX_CPUID) {
		snap_bad(r, "%u CPUID entries", n);
		return NULL;
	}
	struct kvm_cpuid2 *c = xcalloc(1, sizeof(*c) + (n + 1) * sizeof(struct kvm_cpuid_entry2));
	c->nent = n;
	for (uint32_t i = 0; i < n; i++)
		snap_get_bytes(r, &c->entries[i], sizeof(c->entries[i]));
	return c;
}

static int set_msrs(struct vcpu *v, struct kvm_msr_entry *e, uint32_t n, const char *path)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e[MSR_BATCH];
	} b;
	for (uint32_t i = 0; i < n;) {
		uint32_t k = MIN((uint32_t)MSR_BATCH, n - i);
		memset(&b, 0, sizeof(b));
		b.h.nmsrs = k;
		memcpy(b.e, e + i, k * sizeof(*e));
		int done = ioctl(v->fd, KVM_SET_MSRS, &b);
		if (done < 0)
			return err_errno("%s: vCPU %d: KVM_SET_MSRS", path, v->id);
		if (done < (int)k) {
			/* Refused: fine only if the MSR already holds that value (read-only ones do). */
			struct { struct kvm_msrs h; struct kvm_msr_entry e; } one = { .h.nmsrs = 1, .e.index = e[i + done].index };
			if (ioctl(v->fd, KVM_GET_MSRS, &one) != 1 || one.e.data != e[i + done].data)
				return err_set("%s: vCPU %d: this host's KVM refuses MSR 0x%x = 0x%llx", path, v->id,
					       e[i + done].index, (unsigned long long)e[i + done].data);
			done++;
		}
		i += done;
	}
	return 0;
}

static int set_tsc_khz(struct vcpu *v, uint32_t khz, const char *path)
{
	struct vm *vm = v->vm;
	int now = has_cap(vm, KVM_CAP_GET_TSC_KHZ) ? ioctl(v->fd, KVM_GET_TSC_KHZ, 0) : -1;
	if (!khz || now <= 0 || (uint32_t)now == khz)
		return 0;
	uint64_t diff = (uint32_t)now > khz ? (uint32_t)now - khz : khz - (uint32_t)now;
	if (diff * 1000000 <= (uint64_t)khz * TSC_TOLERANCE_PPM)
		return 0;
	if (has_cap(vm, KVM_CAP_TSC_CONTROL) && ioctl(v->fd, KVM_SET_TSC_KHZ, khz) == 0)
		return 0;
	return err_set("%s: the guest's TSC ran at %u kHz, this host's at %d kHz, and its KVM cannot scale it", path,
		       khz, now);
}

int x86_vcpu_load(struct vcpu *v, struct snap_reader *r)
{
	char name[32];
	snprintf(name, sizeof(name), "vcpu:%d", v->id);
	if (snap_open(r, name, 1) < 0)
		return -1;
	struct vm *vm = v->vm;
	const char *path = snap_path(r);
	unsigned parts = snap_get_u32(r);
	struct kvm_cpuid2 *cpuid = read_cpuid(r);
	struct kvm_mp_state mp = { .mp_state = snap_get_u32(r) };
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xcrs xcrs;
	struct kvm_debugregs dbg;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events ev;
	struct kvm_msr_entry *msrs = NULL;
	void *xsave = NULL;
	int ret = -1;
	snap_get_bytes(r, &regs, sizeof(regs));
	snap_get_bytes(r, &sregs, sizeof(sregs));
	int xs_then = snap_get_u32(r), xs_now = xsave_size(vm);
	if (!cpuid || snap_failed(r))
		goto bad;
	if (xs_then != xs_now) {
		err_set("%s: the snapshot's FPU state is %d bytes, this host's KVM keeps %d (another CPU)", path,
			xs_then, xs_now);
		goto out;
	}
	size_t xlen = xs_now ? (size_t)xs_now : sizeof(struct kvm_fpu);
	xsave = xcalloc(1, xlen);
	snap_get_bytes(r, xsave, xlen);
	snap_get_bytes(r, &xcrs, sizeof(xcrs));
	snap_get_bytes(r, &dbg, sizeof(dbg));
	snap_get_bytes(r, &lapic, sizeof(lapic));
	uint32_t khz = snap_get_u32(r), nmsrs = snap_get_u32(r);
	if (nmsrs > 4096 || snap_failed(r)) {
		snap_bad(r, "%u MSRs", nmsrs);
		goto out;
	}
	msrs = xcalloc(nmsrs + 1, sizeof(*msrs));
	for (uint32_t i = 0; i < nmsrs; i++) {
		msrs[i].index = snap_get_u32(r);
		msrs[i].data = snap_get_u64(r);
	}
	snap_get_bytes(r, &ev, sizeof(ev));
	if (snap_close(r) < 0)
		goto out;

	if (ioctl(v->fd, KVM_SET_CPUID2, cpuid) < 0) {
		err_errno("%s: vCPU %d: KVM_SET_CPUID2", path, v->id);
		goto out;
	}
	if (set_tsc_khz(v, khz, path) < 0)
		goto out;
	const char *what = NULL;
	if (ioctl(v->fd, KVM_SET_MP_STATE, &mp) < 0)
		what = "KVM_SET_MP_STATE";
	else if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
		what = "KVM_SET_REGS";
	else if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0)
		what = "KVM_SET_SREGS";
	else if (ioctl(v->fd, xs_now ? KVM_SET_XSAVE : KVM_SET_FPU, xsave) < 0)
		what = "KVM_SET_XSAVE";
	else if ((parts & PART_XCRS) && ioctl(v->fd, KVM_SET_XCRS, &xcrs) < 0)
		what = "KVM_SET_XCRS";
	else if ((parts & PART_DEBUGREGS) && ioctl(v->fd, KVM_SET_DEBUGREGS, &dbg) < 0)
		what = "KVM_SET_DEBUGREGS";
	else if (ioctl(v->fd, KVM_SET_LAPIC, &lapic) < 0)
		what = "KVM_SET_LAPIC";
	if (what) {
		err_errno("%s: vCPU %d: %s", path, v->id, what);
		goto out;
	}
	if (set_msrs(v, msrs, nmsrs, path) < 0)
		goto out;
	if ((parts & PART_EVENTS) && ioctl(v->fd, KVM_SET_VCPU_EVENTS, &ev) < 0) {
		err_errno("%s: vCPU %d: KVM_SET_VCPU_EVENTS", path, v->id);
		goto out;
	}
	ret = 0;
	goto out;
bad:
	if (!cpuid)
		goto out;	/* read_cpuid set err */
	snap_bad(r, "ends too soon");
out:
	free(cpuid);
	free(xsave);
	free(msrs);
	return ret;
}

/* ---- can this host run the snapshot's vCPUs? ---- */

/* Feature registers compared, and the bits KVM or lkvm set per VM (not the host's to have). */
static const struct {
	uint32_t function, index;
	int reg;		/* 0 eax, 1 ebx, 2 ecx, 3 edx */
	uint32_t ignore;
} feature_regs[] = {
	{ 1, 0, 2, 1u << 27 | 1u << 31 | 1u << 24 },	/* OSXSAVE, hypervisor, TSC deadline (emulated) */
	{ 1, 0, 3, 1u << 28 },			/* HTT: topology */
	{ 7, 0, 1, 0 },
	{ 7, 0, 2, 1u << 4 },			/* OSPKE */
	{ 7, 0, 3, 0 },
	{ 7, 1, 0, 0 },
	{ 0xd, 1, 0, 0 },
	{ 0x80000001, 0, 2, 0 },
	{ 0x80000001, 0, 3, 0 },
};

static const struct { uint32_t function; int reg, bit; const char *name; } feature_names[] = {
	{ 1, 2, 0, "sse3" }, { 1, 2, 9, "ssse3" }, { 1, 2, 12, "fma" }, { 1, 2, 13, "cx16" }, { 1, 2, 19, "sse4.1" },
	{ 1, 2, 20, "sse4.2" }, { 1, 2, 21, "x2apic" }, { 1, 2, 22, "movbe" }, { 1, 2, 23, "popcnt" },
	{ 1, 2, 25, "aes" }, { 1, 2, 26, "xsave" }, { 1, 2, 28, "avx" }, { 1, 2, 29, "f16c" }, { 1, 2, 30, "rdrand" },
	{ 7, 1, 3, "bmi1" }, { 7, 1, 5, "avx2" }, { 7, 1, 7, "smep" }, { 7, 1, 8, "bmi2" }, { 7, 1, 16, "avx512f" },
	{ 7, 1, 18, "rdseed" }, { 7, 1, 19, "adx" }, { 7, 1, 20, "smap" }, { 7, 1, 29, "sha" }, { 7, 2, 1, "avx512vbmi" },
	{ 0x80000001, 3, 27, "rdtscp" }, { 0x80000001, 2, 5, "lzcnt" }, { 0x80000001, 2, 6, "sse4a" },
};

static const struct kvm_cpuid_entry2 *entry(const struct kvm_cpuid2 *c, uint32_t function, uint32_t index)
{
	for (uint32_t i = 0; i < c->nent; i++)
		if (c->entries[i].function == function &&
		    (!(c->entries[i].flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || c->entries[i].index == index))
			return &c->entries[i];
	return NULL;
}

static uint32_t reg_of(const struct kvm_cpuid_entry2 *e, int reg)
{
	return !e ? 0 : reg == 0 ? e->eax : reg == 1 ? e->ebx : reg == 2 ? e->ecx : e->edx;
}

int x86_check_cpu(struct vm *vm, struct snap_reader *r)
{
	if (snap_open(r, "vcpu:0", 1) < 0)
		return -1;
	snap_get_u32(r);	/* parts */
	struct kvm_cpuid2 *saved = read_cpuid(r);
	if (!saved)
		return -1;
	if (snap_failed(r)) {
		free(saved);
		return snap_bad(r, "ends too soon");
	}
	struct kvm_cpuid2 *host = xcalloc(1, sizeof(*host) + MAX_CPUID * sizeof(struct kvm_cpuid_entry2));
	host->nent = MAX_CPUID;
	int ret = 0;
	if (ioctl(vm->sys_fd, KVM_GET_SUPPORTED_CPUID, host) < 0) {
		ret = err_errno("KVM_GET_SUPPORTED_CPUID");
		goto out;
	}
	char missing[384] = "";
	size_t len = 0;
	for (size_t i = 0; i < ARRAY_SIZE(feature_regs); i++) {
		uint32_t f = feature_regs[i].function, idx = feature_regs[i].index;
		int reg = feature_regs[i].reg;
		uint32_t want = reg_of(entry(saved, f, idx), reg) & ~feature_regs[i].ignore;
		uint32_t lack = want & ~reg_of(entry(host, f, idx), reg);
		for (int bit = 0; bit < 32 && lack; bit++) {
			if (!(lack & (1u << bit)))
				continue;
			lack &= ~(1u << bit);
			const char *name = NULL;
			for (size_t k = 0; k < ARRAY_SIZE(feature_names); k++)
				if (feature_names[k].function == f && feature_names[k].reg == reg && feature_names[k].bit == bit &&
				    idx == 0)
					name = feature_names[k].name;
			char one[64];
			if (name)
				snprintf(one, sizeof(one), "%s%s", len ? ", " : "", name);
			else
				snprintf(one, sizeof(one), "%scpuid %x.%u %s bit %d", len ? ", " : "", f, idx,
					 (const char *[]){ "eax", "ebx", "ecx", "edx" }[reg], bit);
			if (len + strlen(one) < sizeof(missing) - 8) {
				strcpy(missing + len, one);
				len += strlen(one);
			}
		}
	}
	if (len)
		ret = err_set("%s: the snapshot's guest was given CPU features this host's KVM lacks: %s", snap_path(r),
			      missing);
out:
	free(saved);
	free(host);
	return ret;
}
