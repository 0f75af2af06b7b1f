/* A struct vm without KVM for device-level tests: buses, no fds, an IRQ recorder. */
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

#endif
