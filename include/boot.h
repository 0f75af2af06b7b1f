/* Kernel image formats and how the first vCPU enters them. */
#ifndef LKVM_BOOT_H
#define LKVM_BOOT_H

#include <stdint.h>
#include <stddef.h>
#include <stdbool.h>

struct vm;
struct vcpu;

enum entry_mode {
	ENTRY_REAL16,	/* CS:IP in real mode (flat binaries, 16-bit bzImage setup) */
	ENTRY_PVH32,	/* 32-bit protected mode, paging off, EBX = hvm_start_info */
	ENTRY_LONG64,	/* 64-bit boot protocol, RSI = boot_params */
};

enum image_kind { IMAGE_BZIMAGE, IMAGE_ELF, IMAGE_FLAT, IMAGE_INVALID };

/* What a kernel file is, from its bytes alone (unit-tested). */
enum image_kind image_detect(const uint8_t *buf, size_t len);

/* Parsed facts about a bzImage's setup header; -1 with err set if invalid. */
struct bzimage_info {
	uint16_t version;
	unsigned setup_size;	/* bytes of real-mode code incl. boot sector */
	uint8_t loadflags;
	uint16_t xloadflags;
	uint32_t initrd_addr_max;
	uint32_t kernel_alignment;
	bool relocatable;
	uint32_t cmdline_size;
	uint64_t pref_address;
	uint32_t init_size;
	uint32_t code32_start;
};
int bzimage_parse(const char *path, const uint8_t *buf, size_t len, struct bzimage_info *bi);

/* The loadable parts of an ELF vmlinux; -1 with err set if invalid. */
struct elf_info {
	uint64_t entry;		/* e_entry, as physical */
	uint64_t pvh_entry;	/* XEN_ELFNOTE_PHYS32_ENTRY, 0 if absent */
	uint64_t lo, hi;	/* physical extent of PT_LOAD segments */
};
int elf_parse(const char *path, const uint8_t *buf, size_t len, struct elf_info *ei);
/* Copy PT_LOAD segments to their physical addresses. */
int elf_load(struct vm *vm, const char *path, const uint8_t *buf, size_t len);

/* Parse a kernel file's headers without a VM: bad input fails before /dev/kvm is opened. */
int x86_check_kernel(const char *path, bool flat);
/* Load kernel/initrd/cmdline as vm->cfg says and decide the entry state. */
int x86_load_kernel(struct vm *vm);
/* Registers, segments, page tables state for the boot vCPU. */
int x86_setup_boot_cpu(struct vcpu *v);
/* CPUID and MSRs for every vCPU (topology for -c N, baseline masking). */
int x86_setup_cpuid(struct vcpu *v);
/* MP table so an SMP guest finds every CPU and the IOAPIC. */
int mptable_write(struct vm *vm);

#endif
