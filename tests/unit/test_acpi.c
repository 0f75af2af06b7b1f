/* ACPI tables: checksums, pointers and MADT contents as a kernel walks them. */
#include "test.h"
#include "acpi.h"
#include "util.h"

#define GPA 0xE0000
static uint8_t mem[0x10000];
static const uint8_t *at(uint64_t gpa) { return mem + (gpa - GPA); }

TEST(tables)
{
	size_t used = acpi_build(mem, GPA, 4, sizeof(mem));
	CHECK(used > 0 && used < sizeof(mem));
	CHECK(!memcmp(mem, "RSD PTR ", 8));
	CHECK_EQ(sum8(mem, 20), 0);
	CHECK_EQ(sum8(mem, 36), 0);
	CHECK_EQ(mem[15], 2);
	const uint8_t *x = at(get_le64(mem + 24));
	CHECK(!memcmp(x, "XSDT", 4));
	CHECK_EQ(sum8(x, get_le32(x + 4)), 0);
	CHECK_EQ(get_le32(x + 4), 52);
	const uint8_t *f = at(get_le64(x + 36)), *m = at(get_le64(x + 44));
	CHECK(!memcmp(f, "FACP", 4));
	CHECK_EQ(get_le32(f + 4), 276);
	CHECK_EQ(sum8(f, 276), 0);
	CHECK(!(get_le32(f + 112) & (1u << 20)));	/* not hardware reduced: legacy IRQs stay */
	CHECK_EQ(get_le32(f + 64), ACPI_PM_PORT + 4);
	CHECK_EQ(get_le64(f + 172 + 4), ACPI_PM_PORT + 4);
	const uint8_t *d = at(get_le64(f + 140));
	CHECK(!memcmp(d, "DSDT", 4));
	CHECK_EQ(sum8(d, get_le32(d + 4)), 0);
	CHECK(memmem(d + 36, get_le32(d + 4) - 36, "_S5_", 4) != NULL);
	CHECK(!memcmp(m, "APIC", 4));
	uint32_t mlen = get_le32(m + 4);
	CHECK_EQ(sum8(m, mlen), 0);
	int cpus = 0, ioapic = 0;
	for (const uint8_t *e = m + 44; e < m + mlen; e += e[1]) {
		CHECK(e[1] >= 2);
		if (e[1] < 2)
			break;
		if (e[0] == 0) { CHECK_EQ(e[3], cpus); cpus++; }
		if (e[0] == 1) { ioapic++; CHECK_EQ(get_le32(e + 4), 0xFEC00000); }
	}
	CHECK_EQ(cpus, 4);
	CHECK_EQ(ioapic, 1);
	CHECK_EQ(acpi_build(mem, GPA, 255, 200), 0);	/* too small: refused */
}

TEST_MAIN()
