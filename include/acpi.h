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
#define ACPI_PM_PORT 0x640	/* PM1a event block; control block at +4; GPE0 block at +8 */
/* The VM generation ID's 16 bytes: the last page of the tables' area (reserved in the e820 map). */
#define VMGENID_GPA (ACPI_TABLES_GPA + ACPI_TABLES_SIZE - 0x1000)

/* Build the tables into base (guest address gpa); returns bytes used, 0 if cap is too small. */
size_t acpi_build(uint8_t *base, uint64_t gpa, int ncpu, size_t cap);
/* Write the tables into guest RAM. */
int acpi_write_tables(struct vm *vm);
/* The PM1 event and control registers (power-off through S5) and the GPE0 block (the SCI). */
extern const struct device_type acpi_pm_device;
/* Set a GPE0 status bit: the SCI rises while it is enabled. 0, or -1 with err set. */
int acpi_gpe_raise(struct vm *vm, int bit);
/* The VM generation ID device: a new ID and GPE 0 on every restore. */
extern const struct device_type vmgenid_device;

#endif
