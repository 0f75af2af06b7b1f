/* The bundled BIOS as bios_setup() installs it: code, IVT, BIOS data area, e820 table. */
#include "test.h"
#include "bios.h"
#include "e820.h"
#include "guest_mem.h"
#include "util.h"
#include "vm.h"

/* Header words after the 8-byte magic (bios/bios.S). */
enum { H_DEFAULT, H_INT10, H_INT11, H_INT12, H_INT13, H_INT15, H_INT16, H_INT1A, H_IRQ_MASTER,
       H_IRQ_SLAVE, H_E820_COUNT, H_E820_TABLE, H_E801_LOW, H_E801_HIGH, H_MEM88 };

static const uint8_t *g(struct vm *vm, uint64_t gpa, uint64_t len)
{
	const uint8_t *p = guest_ptr(&vm->mem, gpa, len);
	CHECK(p != NULL);
	return p;
}

static uint16_t hdr(struct vm *vm, int i)
{
	return get_le16(g(vm, BIOS_START + 8 + 2 * i, 2));
}

/* The first code byte of the handler interrupt vector vec points at. */
static uint8_t handler_byte(struct vm *vm, int vec)
{
	const uint8_t *ivt = g(vm, vec * 4, 4);
	CHECK_EQ(get_le16(ivt + 2), BIOS_SEG);
	return *g(vm, ((uint64_t)get_le16(ivt + 2) << 4) + get_le16(ivt), 1);
}

static void setup(struct vm *vm, uint64_t ram)
{
	memset(vm, 0, sizeof(*vm));
	CHECK_EQ(guest_mem_alloc(&vm->mem, ram, PCI_HOLE_START, PCI_HOLE_END), 0);
	/* Stale bytes where the IVT and BDA go, as a rebooted guest leaves them. */
	memset(guest_ptr(&vm->mem, 0, 0x600), 0x5a, 0x600);
}

TEST(code_and_vectors)
{
	struct vm vm;
	setup(&vm, MiB(64));
	struct e820_entry map[E820_MAX];
	int n = e820_build(&vm.mem, map, E820_MAX);
	CHECK_EQ(bios_setup(&vm, map, n), 0);
	CHECK(!memcmp(g(&vm, BIOS_START, 8), "LKVMBIOS", 8));
	CHECK_EQ(*g(&vm, 0xFFFF0, 1), 0xfa);	/* reset vector: cli */

	for (int v = 0; v < 256; v++)
		CHECK_EQ(get_le16(g(&vm, v * 4 + 2, 2)), BIOS_SEG);
	CHECK_EQ(handler_byte(&vm, 0x00), 0xcf);	/* iret */
	CHECK_EQ(handler_byte(&vm, 0x60), 0xcf);
	CHECK_EQ(handler_byte(&vm, 0xff), 0xcf);
	/* Hardware IRQs acknowledge the PIC: push ax first. */
	for (int v = 0x08; v < 0x10; v++)
		CHECK_EQ(handler_byte(&vm, v), 0x50);
	for (int v = 0x70; v < 0x78; v++)
		CHECK_EQ(handler_byte(&vm, v), 0x50);
	static const struct { int vec, h; } services[] = {
		{ 0x10, H_INT10 }, { 0x11, H_INT11 }, { 0x12, H_INT12 }, { 0x13, H_INT13 },
		{ 0x15, H_INT15 }, { 0x16, H_INT16 }, { 0x1a, H_INT1A },
	};
	for (size_t i = 0; i < sizeof(services) / sizeof(services[0]); i++) {
		CHECK_EQ(get_le16(g(&vm, services[i].vec * 4, 2)), hdr(&vm, services[i].h));
		CHECK(hdr(&vm, services[i].h) != hdr(&vm, H_DEFAULT));
	}
	guest_mem_free(&vm.mem);
}

TEST(bios_data_area)
{
	struct vm vm;
	setup(&vm, MiB(64));
	struct e820_entry map[E820_MAX];
	CHECK_EQ(bios_setup(&vm, map, e820_build(&vm.mem, map, E820_MAX)), 0);
	const uint8_t *bda = g(&vm, 0x400, 0x100);
	CHECK_EQ(get_le16(bda + 0x00), 0x3f8);	/* COM1, where Linux's early console looks */
	CHECK_EQ(get_le16(bda + 0x0e), EBDA_START >> 4);
	CHECK_EQ(get_le16(bda + 0x13), 639);	/* KiB below the EBDA */
	CHECK_EQ(bda[0x49], 3);			/* 80x25 colour text */
	CHECK_EQ(get_le16(bda + 0x4a), 80);
	CHECK_EQ(bda[0x84], 24);		/* rows - 1 */
	CHECK_EQ(get_le16(bda + 0x85), 16);	/* font height: Linux's setup code reads it */
	CHECK_EQ(bda[0x6c], 0);			/* stale bytes cleared */
	/* The equipment word agrees with int 11h's answer: serial ports, colour text. */
	uint16_t equip = get_le16(bda + 0x10);
	CHECK_EQ((equip >> 9) & 7, 4);
	CHECK_EQ((equip >> 4) & 3, 2);
	guest_mem_free(&vm.mem);
}

TEST(e820_and_memory_sizes)
{
	static const struct { uint64_t ram; uint16_t low, high, k88; } cases[] = {
		{ MiB(64), 15 * 1024, 48 * 16, 63 * 1024 },
		{ MiB(16), 15 * 1024, 0, 15 * 1024 },
		{ MiB(256), 15 * 1024, 240 * 16, 0xffff },
		{ MiB(4096), 15 * 1024, (3072 - 16) * 16, 0xffff },	/* below the PCI hole only */
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct vm vm;
		setup(&vm, cases[c].ram);
		struct e820_entry map[E820_MAX];
		int n = e820_build(&vm.mem, map, E820_MAX);
		CHECK(n >= 4);
		CHECK_EQ(bios_setup(&vm, map, n), 0);
		CHECK_EQ(get_le16(g(&vm, BIOS_START + hdr(&vm, H_E820_COUNT), 2)), n);
		CHECK(!memcmp(g(&vm, BIOS_START + hdr(&vm, H_E820_TABLE), n * 20), map, n * 20));
		CHECK_EQ(get_le16(g(&vm, BIOS_START + hdr(&vm, H_E801_LOW), 2)), cases[c].low);
		CHECK_EQ(get_le16(g(&vm, BIOS_START + hdr(&vm, H_E801_HIGH), 2)), cases[c].high);
		CHECK_EQ(get_le16(g(&vm, BIOS_START + hdr(&vm, H_MEM88), 2)), cases[c].k88);
		guest_mem_free(&vm.mem);
	}
}

TEST(e820_table_bounded)
{
	struct vm vm;
	setup(&vm, MiB(64));
	struct e820_entry map[64];
	for (int i = 0; i < 64; i++)
		map[i] = (struct e820_entry){ (uint64_t)i << 20, 1 << 20, E820_RAM };
	CHECK_EQ(bios_setup(&vm, map, 64), 0);
	uint16_t table = hdr(&vm, H_E820_TABLE);
	CHECK_EQ(get_le16(g(&vm, BIOS_START + hdr(&vm, H_E820_COUNT), 2)), 32);
	/* Whatever follows the 32-entry table is the BIOS's own, untouched. */
	extern const uint8_t _binary_bios_bin_start[];
	CHECK(!memcmp(g(&vm, BIOS_START + table + 32 * 20, 16), _binary_bios_bin_start + table + 32 * 20, 16));
	CHECK_EQ(bios_setup(&vm, map, -1), 0);
	CHECK_EQ(get_le16(g(&vm, BIOS_START + hdr(&vm, H_E820_COUNT), 2)), 0);
	guest_mem_free(&vm.mem);
}

TEST_MAIN()
