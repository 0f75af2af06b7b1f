/*
 * A struct vm without KVM, for device-level tests, fuzz targets and the
 * device benchmarks: RAM the caller lays out, buses, an event loop the
 * caller may poll (not started), and interrupts going to the caller's
 * irq_ops (line and msi; no eventfd paths, so kicks are MMIO writes).
 */
#ifndef LKVM_TESTS_FAKE_VM_H
#define LKVM_TESTS_FAKE_VM_H

#include <string.h>
#include "bus.h"
#include "device.h"
#include "evloop.h"
#include "vm.h"

static inline void fake_vm_init(struct vm *vm, const struct irq_ops *irq)
{
	memset(vm, 0, sizeof(*vm));
	vm->vm_fd = vm->sys_fd = -1;
	vm->irq = irq;
	pthread_mutex_init(&vm->irq_lock, NULL);
	bus_init(&vm->pio, "pio");
	bus_init(&vm->mmio, "mmio");
	vm->loop = evloop_new();
}

/* Every device destroyed (threads stopped first), then the VM's own parts. */
static inline void fake_vm_free(struct vm *vm)
{
	devices_destroy(vm);
	vm_config_free(&vm->cfg);
	bus_destroy(&vm->pio);
	bus_destroy(&vm->mmio);
	evloop_free(vm->loop);
	vm->loop = NULL;
}

#ifdef CHECK
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

#endif
