/* ACPI tables describing CPUs, IOAPIC and S5 power-off. */
#ifndef LKVM_ACPI_H
#define LKVM_ACPI_H

#include <stddef.h>
#include <stdint.h>

struct vm;
struct device_type;

/* Below the BIOS, where Linux also scans for the RSDP. */
#define ACPI_TABLES_GPA 0xE0000ULL
#define ACPI_TABLES_SIZE 0x10000ULL
#define ACPI_PM_PORT 0x640	/* PM1a event block; control block at +4 */

/* Build the tables into base (guest address gpa); returns bytes used, 0 if cap is too small. */
size_t acpi_build(uint8_t *base, uint64_t gpa, int ncpu, size_t cap);
/* Write the tables into guest RAM. */
int acpi_write_tables(struct vm *vm);
/* The PM1 event and control registers (power-off through S5). */
extern const struct device_type acpi_pm_device;

#endif
