/* A struct vm without KVM for device-level tests: buses, no fds, an IRQ recorder. After test.h. */
#ifndef LKVM_FAKE_VM_H
#define LKVM_FAKE_VM_H

#include <string.h>
#include "bus.h"
#include "vm.h"

static inline void fake_vm_init(struct vm *vm, void (*irq)(struct vm *, unsigned, int))
{
	memset(vm, 0, sizeof(*vm));
	vm->vm_fd = vm->sys_fd = -1;
	bus_init(&vm->pio, "pio");
	bus_init(&vm->mmio, "mmio");
	vm->irq_hook = irq;
}

static inline void fake_vm_free(struct vm *vm)
{
	bus_destroy(&vm->pio);
	bus_destroy(&vm->mmio);
}

/* One byte of port I/O as a vCPU's exit would make it; CHECKs that a device answered. */
static inline uint8_t pio_in8(struct vm *vm, uint16_t port)
{
	uint8_t v = 0;
	CHECK(bus_access(&vm->pio, port, &v, 1, false));
	return v;
}

static inline void pio_out8(struct vm *vm, uint16_t port, uint8_t v)
{
	CHECK(bus_access(&vm->pio, port, &v, 1, true));
}

#endif
