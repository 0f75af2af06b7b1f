/*
 * A struct vm without KVM, for device-level tests, fuzz targets and the
 * device benchmarks: RAM the caller lays out, buses, an event loop the
 * caller may poll (not started), and interrupts going to the caller's
 * irq_ops (line and msi; no eventfd paths, so kicks are MMIO writes).
 *
 * fake_irq_recorder is irq_ops that record what devices raise in fake_irqs
 * and wake fake_irq_wait(): a "guest" thread sleeps there until a used ring
 * it waits on moves (the device threads raise the interrupt after it moved).
 */
#ifndef LKVM_TESTS_FAKE_VM_H
#define LKVM_TESTS_FAKE_VM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include "bus.h"
#include "device.h"
#include "evloop.h"
#include "vm.h"

void fake_vm_init(struct vm *vm, const struct irq_ops *irq);
/* Every device destroyed (threads stopped first), then the VM's own parts. */
void fake_vm_free(struct vm *vm);

struct fake_irqs {
	int msis;		/* MSIs delivered, any vector */
	uint64_t last_msi_addr;
	uint32_t last_msi_data;
	int intx_level;		/* what the last line change set */
	pthread_mutex_t lock;	/* taken around every change; fake_irq_wait() sleeps on cond */
	pthread_cond_t cond;
};
extern struct fake_irqs fake_irqs;
extern const struct irq_ops fake_irq_recorder;

/*
 * Until ready(arg) holds, at most timeout_ms: 0, or -1 on timeout. ready() is
 * called with fake_irqs.lock held, so an interrupt raised after the state it
 * looks at changed cannot be missed. poll_ms > 0: it is also rechecked that
 * often, for devices that may raise none (suppressed, or INTx already high);
 * 0: only interrupts wake the waiter (no wake-ups that compete with the
 * device's threads for the CPU, which cost the benchmarks up to 40% on a busy
 * machine).
 */
int fake_irq_wait(bool (*ready)(void *arg), void *arg, int timeout_ms, int poll_ms);

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
