/* The bundled real-mode BIOS (bios/bios.S), embedded in lkvm and set up per VM. */
#ifndef LKVM_BIOS_H
#define LKVM_BIOS_H

#include "e820.h"

struct vm;

/* Copy the BIOS to 0xF0000, fill the IVT, the BIOS data area and its e820 table. */
int bios_setup(struct vm *vm, const struct e820_entry *map, int nr);

#define BIOS_SEG 0xF000
#define EBDA_SEG (EBDA_START >> 4)

#endif
