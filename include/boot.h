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
	ENTRY_MB32,	/* 32-bit protected mode, paging off, EAX = 0x2BADB002, EBX = Multiboot info */
};

enum image_kind { IMAGE_BZIMAGE, IMAGE_ELF, IMAGE_FLAT, IMAGE_INVALID, IMAGE_MULTIBOOT };

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

/* The loadable parts of an ELF image (x86-64, or i386 with a PVH note or for Multiboot); -1 with err set if invalid. */
#define ELF_MAX_SEGS 64
struct elf_info {
	bool is32;		/* ELFCLASS32, EM_386 */
	uint64_t entry;		/* e_entry, as physical */
	uint64_t pvh_entry;	/* XEN_ELFNOTE_PHYS32_ENTRY, 0 if absent */
	uint64_t lo, hi;	/* physical extent of PT_LOAD segments */
	int nseg;
	struct { uint64_t paddr, off, filesz, memsz; } seg[ELF_MAX_SEGS];
};
int elf_parse(const char *path, const uint8_t *buf, size_t len, struct elf_info *ei);
/* Copy the PT_LOAD segments elf_parse found to their physical addresses. */
int elf_load(struct vm *vm, const char *path, const uint8_t *buf, const struct elf_info *ei);

/* Multiboot (version 1): the header in a kernel's first 8 KiB (x86/multiboot.c). */
#define MULTIBOOT_MAGIC 0x1BADB002u
#define MULTIBOOT_BOOT_MAGIC 0x2BADB002u	/* in EAX at the entry */
#define MULTIBOOT_F_ADDRESS (1u << 16)	/* the header's address fields say where to load */
struct multiboot_header {
	size_t offset;		/* in the file */
	uint32_t flags;
	uint32_t header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr;	/* with flags bit 16 */
};
/* 1 with mh filled, 0 when there is none, -1 with err set when it is unusable. */
int multiboot_find(const char *path, const uint8_t *buf, size_t len, struct multiboot_header *mh);
int multiboot_load(struct vm *vm, const uint8_t *buf, size_t len, const struct multiboot_header *mh);
/* Shared by the loaders: the initrd below addr_max and above kernel_end, the command line at gpa. */
int x86_load_initrd(struct vm *vm, uint64_t addr_max, uint64_t kernel_end, uint64_t *gpa, uint64_t *size);
int x86_place_cmdline(struct vm *vm, uint64_t gpa, uint64_t max);

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
