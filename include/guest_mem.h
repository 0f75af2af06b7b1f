/*
 * Guest RAM and the one door into it. Every guest-physical address becomes a
 * host pointer only through guest_ptr(), which checks the whole range lies in
 * one RAM region. This is the VMM's security boundary: devices, the virtqueue
 * core and the instruction emulator all use it.
 */
#ifndef LKVM_GUEST_MEM_H
#define LKVM_GUEST_MEM_H

#include <stdint.h>
#include <stddef.h>

#define GUEST_MEM_MAX_REGIONS 4

struct mem_region {
	uint64_t gpa;
	uint64_t size;
	uint8_t *host;
};

struct guest_mem {
	struct mem_region r[GUEST_MEM_MAX_REGIONS];
	int nr;
	uint64_t ram_size;	/* what the user asked for (-m) */
	uint8_t *base;		/* the single mmap behind all regions */
	size_t map_size;
};

/* NULL unless [gpa, gpa+len) lies wholly inside one RAM region (len 0 is refused). */
void *guest_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len);

/* Lay out RAM of ram_size bytes below and above the PCI hole at 3 GiB. */
int guest_mem_alloc(struct guest_mem *m, uint64_t ram_size);
void guest_mem_free(struct guest_mem *m);

/* Start of the 32-bit PCI MMIO hole: RAM above it continues at 4 GiB. */
#define PCI_HOLE_START 0xC0000000ULL
#define PCI_HOLE_END   0x100000000ULL

int guest_copy_to(const struct guest_mem *m, uint64_t gpa, const void *src, uint64_t len);
int guest_copy_from(const struct guest_mem *m, void *dst, uint64_t gpa, uint64_t len);

#endif
