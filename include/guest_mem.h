/*
 * Guest RAM and the one door into it. Every guest-physical address becomes a
 * host pointer only through guest_ptr(), which checks the whole range lies in
 * one RAM region. This is the VMM's security boundary: devices, the virtqueue
 * core and the instruction emulator all use it.
 */
#ifndef LKVM_GUEST_MEM_H
#define LKVM_GUEST_MEM_H

#include <stdint.h>
#include <stdbool.h>
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

/*
 * RAM of ram_size bytes from guest address 0, the part that would overlap
 * [hole_start, hole_end) placed at hole_end instead (the board's MMIO hole;
 * 0, 0 for none).
 */
int guest_mem_alloc(struct guest_mem *m, uint64_t ram_size, uint64_t hole_start, uint64_t hole_end);
void guest_mem_free(struct guest_mem *m);
/*
 * Transparent huge pages for guest RAM or not (MADV_HUGEPAGE / MADV_NOHUGEPAGE),
 * whatever the host's default ("madvise" on many hosts gives none unless asked).
 */
int guest_mem_thp(struct guest_mem *m, bool on);
/* After guest_mem_alloc: RAM becomes a copy-on-write mapping of the file path (a snapshot's), byte for byte. */
int guest_mem_map_file(struct guest_mem *m, const char *path);

int guest_copy_to(const struct guest_mem *m, uint64_t gpa, const void *src, uint64_t len);
int guest_copy_from(const struct guest_mem *m, void *dst, uint64_t gpa, uint64_t len);

#endif
