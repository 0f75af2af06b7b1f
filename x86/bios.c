/* Install the embedded BIOS: code at 0xF0000, IVT, BIOS data area, e820 table. */
#include <string.h>
#include "bios.h"
#include "guest_mem.h"
#include "util.h"
#include "vm.h"

extern const uint8_t _binary_bios_bin_start[], _binary_bios_bin_end[];

/* Word offsets in the header after the 8-byte magic (see bios/bios.S). */
enum { H_DEFAULT, H_INT10, H_INT11, H_INT12, H_INT13, H_INT15, H_INT16, H_INT1A, H_IRQ_MASTER,
       H_IRQ_SLAVE, H_E820_COUNT, H_E820_TABLE, H_E801_LOW, H_E801_HIGH, H_MEM88 };
#define BIOS_E820_MAX 32

static uint16_t hdr(const uint8_t *bios, int i)
{
	return get_le16(bios + 8 + 2 * i);
}

static void set_vector(uint8_t *ivt, int vec, uint16_t off)
{
	put_le16(ivt + vec * 4, off);
	put_le16(ivt + vec * 4 + 2, BIOS_SEG);
}

int bios_setup(struct vm *vm, const struct e820_entry *map, int nr)
{
	size_t size = _binary_bios_bin_end - _binary_bios_bin_start;
	if (size > BIOS_END - BIOS_START || memcmp(_binary_bios_bin_start, "LKVMBIOS", 8))
		return err_set("the embedded BIOS is damaged (build problem)");
	uint8_t *bios = guest_ptr(&vm->mem, BIOS_START, BIOS_END - BIOS_START);
	uint8_t *low = guest_ptr(&vm->mem, 0, 0x600);
	if (!bios || !low)
		return err_set("guest RAM too small for the BIOS area");
	memcpy(bios, _binary_bios_bin_start, size);

	for (int v = 0; v < 256; v++)
		set_vector(low, v, hdr(bios, H_DEFAULT));
	for (int v = 0x08; v < 0x10; v++)
		set_vector(low, v, hdr(bios, H_IRQ_MASTER));
	for (int v = 0x70; v < 0x78; v++)
		set_vector(low, v, hdr(bios, H_IRQ_SLAVE));
	set_vector(low, 0x10, hdr(bios, H_INT10));
	set_vector(low, 0x11, hdr(bios, H_INT11));
	set_vector(low, 0x12, hdr(bios, H_INT12));
	set_vector(low, 0x13, hdr(bios, H_INT13));
	set_vector(low, 0x15, hdr(bios, H_INT15));
	set_vector(low, 0x16, hdr(bios, H_INT16));
	set_vector(low, 0x1a, hdr(bios, H_INT1A));

	/* BIOS data area: serial ports, EBDA segment, memory, 80x25 text. */
	uint8_t *bda = low + 0x400;
	memset(bda, 0, 0x100);
	put_le16(bda + 0x00, 0x3f8);
	put_le16(bda + 0x02, 0x2f8);
	put_le16(bda + 0x04, 0x3e8);
	put_le16(bda + 0x06, 0x2e8);
	put_le16(bda + 0x0e, EBDA_SEG);
	put_le16(bda + 0x10, 0x0820);	/* equipment: four serial ports, 80x25 colour; as int 11h */
	put_le16(bda + 0x13, EBDA_START >> 10);
	bda[0x49] = 3;
	put_le16(bda + 0x4a, 80);
	bda[0x84] = 24;
	put_le16(bda + 0x85, 16);

	if (nr < 0)
		nr = 0;
	if (nr > BIOS_E820_MAX)
		nr = BIOS_E820_MAX;
	memcpy(bios + hdr(bios, H_E820_TABLE), map, nr * sizeof(*map));
	put_le16(bios + hdr(bios, H_E820_COUNT), nr);
	uint64_t ram = vm->mem.r[0].size;
	uint64_t k1_16 = ram > MiB(1) ? (MIN(ram, MiB(16)) - MiB(1)) >> 10 : 0;
	uint64_t above16 = ram > MiB(16) ? (ram - MiB(16)) >> 16 : 0;
	put_le16(bios + hdr(bios, H_E801_LOW), k1_16);
	put_le16(bios + hdr(bios, H_E801_HIGH), MIN(above16, 0xffffULL));
	put_le16(bios + hdr(bios, H_MEM88), MIN(ram > MiB(1) ? (ram - MiB(1)) >> 10 : 0, 0xffffULL));
	return 0;
}
