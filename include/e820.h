/* The guest's physical memory map, shared by boot_params, PVH and the BIOS. */
#ifndef LKVM_E820_H
#define LKVM_E820_H

#include <stdint.h>

#define E820_RAM      1
#define E820_RESERVED 2

#define E820_MAX 32

struct e820_entry {
	uint64_t addr, size;
	uint32_t type;
} __attribute__((packed));

struct guest_mem;

/* Fill map from the RAM layout; returns the number of entries. */
int e820_build(const struct guest_mem *m, struct e820_entry *map, int max);

/* The 32-bit PCI MMIO hole: RAM that would be there continues at 4 GiB. */
#define PCI_HOLE_START 0xC0000000ULL
#define PCI_HOLE_END   0x100000000ULL

/* Fixed low-memory layout shared by the loader, the BIOS and the MP table. */
#define EBDA_START     0x9FC00ULL	/* last KiB of base memory: MP table lives here */
#define BIOS_START     0xF0000ULL
#define BIOS_END       0x100000ULL
#define BOOT_GDT_GPA   0x1000ULL
#define BOOT_PARAMS_GPA 0x7000ULL
#define BOOT_PGTABLE_GPA 0x9000ULL	/* PML4, PDPT, 4 PDs: 0x9000-0xEFFF */
#define BOOT_CMDLINE_GPA 0x20000ULL
#define BOOT_CMDLINE_MAX 0x10000ULL
#define PVH_INFO_GPA   0x6000ULL

#endif
