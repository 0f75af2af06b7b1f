/* Initial vCPU state for each entry mode, CPUID with topology, boot MSRs. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include "boot.h"
#include "machine.h"
#include "e820.h"
#include "util.h"
#include "vm.h"

#define CR0_PE 0x1ULL
#define CR0_ET 0x10ULL
#define CR0_PG 0x80000000ULL
#define CR4_PAE 0x20ULL
#define EFER_LME 0x100ULL
#define EFER_LMA 0x400ULL

static struct kvm_segment flat_seg(uint16_t sel, uint8_t type, bool code64)
{
	return (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = sel, .type = type,
		.present = 1, .dpl = 0, .db = code64 ? 0 : 1, .s = 1, .l = code64, .g = 1,
	};
}

/* GDT: null, null, 0x10 code64, 0x18 data, 0x20 code32. */
static void write_gdt(struct vm *vm)
{
	uint64_t gdt[] = {
		0, 0,
		0x00af9b000000ffffULL,	/* 0x10: 64-bit code */
		0x00cf93000000ffffULL,	/* 0x18: data */
		0x00cf9b000000ffffULL,	/* 0x20: 32-bit code */
		0x00008b0000000fffULL,	/* 0x28: TSS placeholder */
	};
	guest_copy_to(&vm->mem, BOOT_GDT_GPA, gdt, sizeof(gdt));
}

/* Identity map the first 4 GiB with 2 MiB pages. */
static void write_page_tables(struct vm *vm)
{
	uint64_t *pml4 = guest_ptr(&vm->mem, BOOT_PGTABLE_GPA, 0x6000);
	uint64_t *pdpt = pml4 + 512, *pd = pml4 + 1024;
	memset(pml4, 0, 0x6000);
	pml4[0] = (BOOT_PGTABLE_GPA + 0x1000) | 3;
	for (int i = 0; i < 4; i++) {
		pdpt[i] = (BOOT_PGTABLE_GPA + 0x2000 + i * 0x1000) | 3;
		for (int j = 0; j < 512; j++)
			pd[i * 512 + j] = ((uint64_t)(i * 512 + j) << 21) | 0x83;
	}
}

int x86_setup_boot_cpu(struct vcpu *v)
{
	struct vm *vm = v->vm;
	struct pc *pc = vm->board;
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rflags = 2 };
	if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
		return err_errno("KVM_GET_SREGS");

	switch (pc->entry_mode) {
	case ENTRY_REAL16: {
		struct kvm_segment s = { .limit = 0xffff, .type = 3, .present = 1, .s = 1 };
		s.selector = pc->rm_cs; s.base = (uint64_t)pc->rm_cs << 4; s.type = 0xb;
		sregs.cs = s;
		s.type = 3;
		s.selector = pc->rm_ss; s.base = (uint64_t)pc->rm_ss << 4;
		sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = s;
		sregs.cr0 = CR0_ET;
		regs.rip = pc->rm_ip;
		regs.rsp = pc->rm_sp;
		break;
	}
	case ENTRY_PVH32:
	case ENTRY_MB32:
		write_gdt(vm);
		sregs.gdt.base = BOOT_GDT_GPA;
		sregs.gdt.limit = 6 * 8 - 1;
		sregs.cs = flat_seg(0x20, 0xb, false);
		sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = flat_seg(0x18, 3, false);
		sregs.cr0 = CR0_PE | CR0_ET;
		sregs.cr4 = 0;
		sregs.efer = 0;
		regs.rip = pc->entry_rip;
		regs.rbx = PVH_INFO_GPA;	/* hvm_start_info, or the Multiboot info in the same page */
		if (pc->entry_mode == ENTRY_MB32)
			regs.rax = MULTIBOOT_BOOT_MAGIC;
		break;
	case ENTRY_LONG64:
		write_gdt(vm);
		write_page_tables(vm);
		sregs.gdt.base = BOOT_GDT_GPA;
		sregs.gdt.limit = 6 * 8 - 1;
		sregs.cs = flat_seg(0x10, 0xb, true);
		sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = flat_seg(0x18, 3, false);
		sregs.cr0 = CR0_PE | CR0_ET | CR0_PG;
		sregs.cr3 = BOOT_PGTABLE_GPA;
		sregs.cr4 = CR4_PAE;
		sregs.efer = EFER_LME | EFER_LMA;
		regs.rip = pc->entry_rip;
		regs.rsi = pc->boot_params_gpa;
		break;
	}
	/* A usable TSS keeps VM entry checks happy in protected modes. */
	sregs.tr = (struct kvm_segment){ .base = 0, .limit = 0xfff, .selector = 0x28, .type = 0xb, .present = 1 };
	if (pc->entry_mode == ENTRY_REAL16)
		sregs.tr.selector = 0;
	if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0)
		return err_errno("KVM_SET_SREGS");
	if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
		return err_errno("KVM_SET_REGS");
	return 0;
}

/* Features this class of host's in-kernel emulator cannot run (see docs). */
static void mask_baseline(struct kvm_cpuid_entry2 *e)
{
	if (e->function == 1 && e->index == 0) {
		e->ecx &= ~((1u << 13) |	/* CX16 */
			    (1u << 26) | (1u << 27) |	/* XSAVE, OSXSAVE */
			    (1u << 28) |	/* AVX */
			    (1u << 12) |	/* FMA */
			    (1u << 23) |	/* POPCNT */
			    (1u << 29) |	/* F16C */
			    (1u << 25) |	/* AES */
			    (1u << 22));	/* MOVBE */
		e->ecx &= ~((1u << 9) | (1u << 19) | (1u << 20));	/* SSSE3, SSE4.1, SSE4.2 */
	} else if (e->function == 7 && e->index == 0) {
		e->ebx &= (1u << 9);	/* ERMS only: no SMEP/SMAP/BMI/AVX2/FSGSBASE/INVPCID */
		e->ecx = 0;
		e->edx = 0;
	} else if (e->function == 0xd) {
		e->eax = e->ebx = e->ecx = e->edx = 0;
	} else if (e->function == 0x80000001) {
		e->ecx &= ~((1u << 5) | (1u << 6));	/* LZCNT (ABM), SSE4A */
		e->edx &= ~(1u << 27);			/* RDTSCP */
	}
}

int x86_setup_cpuid(struct vcpu *v)
{
	struct vm *vm = v->vm;
	int nent = 256;
	struct kvm_cpuid2 *c = xcalloc(1, sizeof(*c) + nent * sizeof(struct kvm_cpuid_entry2));
	c->nent = nent;
	if (ioctl(vm->sys_fd, KVM_GET_SUPPORTED_CPUID, c) < 0) {
		free(c);
		return err_errno("KVM_GET_SUPPORTED_CPUID");
	}
	unsigned n = vm->nr_vcpus;
	for (unsigned i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		switch (e->function) {
		case 1:
			/* APIC id, logical processor count, HTT when more than one. */
			e->ebx = (e->ebx & 0x0000ffff) | (MIN(n, 255u) << 16) | ((uint32_t)v->id << 24);
			e->edx = n > 1 ? e->edx | (1u << 28) : e->edx & ~(1u << 28);
			e->ecx |= 1u << 31;	/* running under a hypervisor */
			break;
		case 4: {
			/* Cores per package in EAX[31:26]; one thread per core. */
			e->eax = (e->eax & 0x3ff) | ((n - 1) << 26);
			break;
		}
		case 0xb:
			/* x2APIC topology: level 0 SMT (1 thread), level 1 core (n). */
			if (e->index == 0) {
				e->eax = 0; e->ebx = 1; e->ecx = (1u << 8) | 0;
			} else if (e->index == 1) {
				unsigned shift = 0;
				while ((1u << shift) < n) shift++;
				e->eax = shift; e->ebx = n; e->ecx = (2u << 8) | 1;
			} else {
				e->eax = e->ebx = 0; e->ecx = e->index;
			}
			e->edx = v->id;
			break;
		case 0x80000008:
			e->ecx = (e->ecx & ~0xffu) | (n - 1);
			break;
		}
		if (((struct pc *)vm->board)->opts.cpu == CPU_BASELINE)
			mask_baseline(e);
	}
	int ret = ioctl(v->fd, KVM_SET_CPUID2, c);
	free(c);
	if (ret < 0)
		return err_errno("KVM_SET_CPUID2");
	return 0;
}
