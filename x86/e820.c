/* The memory map the guest is told about. */
#include "e820.h"
#include "acpi.h"
#include "guest_mem.h"

int e820_build(const struct guest_mem *m, struct e820_entry *map, int max)
{
	int n = 0;
#define ADD(a, s, t) do { if (n < max) map[n++] = (struct e820_entry){ (a), (s), (t) }; } while (0)
	uint64_t low_end = m->r[0].size;
	/* Base memory up to the EBDA, then the BIOS hole, then RAM from 1 MiB. */
	ADD(0, EBDA_START, E820_RAM);
	ADD(EBDA_START, 0xA0000 - EBDA_START, E820_RESERVED);
	ADD(ACPI_TABLES_GPA, BIOS_END - ACPI_TABLES_GPA, E820_RESERVED);	/* ACPI tables and BIOS */
	if (low_end > BIOS_END)
		ADD(BIOS_END, low_end - BIOS_END, E820_RAM);
	for (int i = 1; i < m->nr; i++)
		ADD(m->r[i].gpa, m->r[i].size, E820_RAM);
#undef ADD
	return n;
}
