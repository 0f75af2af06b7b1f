/* The fake VM of tests/lib/fake_vm.h: a struct vm with buses and no KVM, and recorded interrupts. */
#include <errno.h>
#include <time.h>
#include "fake_vm.h"

void fake_vm_init(struct vm *vm, const struct irq_ops *irq)
{
	memset(vm, 0, sizeof(*vm));
	vm->vm_fd = vm->sys_fd = -1;
	vm->irq = irq;
	pthread_mutex_init(&vm->irq_lock, NULL);
	bus_init(&vm->pio, "pio");
	bus_init(&vm->mmio, "mmio");
	vm->loop = evloop_new();
}

void fake_vm_free(struct vm *vm)
{
	devices_destroy(vm);
	vm_config_free(&vm->cfg);
	bus_destroy(&vm->pio);
	bus_destroy(&vm->mmio);
	evloop_free(vm->loop);
	vm->loop = NULL;
}

struct fake_irqs fake_irqs = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static void record_line(struct vm *vm, unsigned gsi, int level)
{
	pthread_mutex_lock(&fake_irqs.lock);
	fake_irqs.intx_level = level;
	pthread_cond_broadcast(&fake_irqs.cond);
	pthread_mutex_unlock(&fake_irqs.lock);
}

static void record_msi(struct vm *vm, uint64_t addr, uint32_t data)
{
	pthread_mutex_lock(&fake_irqs.lock);
	fake_irqs.msis++;
	fake_irqs.last_msi_addr = addr;
	fake_irqs.last_msi_data = data;
	pthread_cond_broadcast(&fake_irqs.cond);
	pthread_mutex_unlock(&fake_irqs.lock);
}

const struct irq_ops fake_irq_recorder = { .line = record_line, .msi = record_msi };

int fake_irq_wait(bool (*ready)(void *arg), void *arg, int timeout_ms)
{
	struct timespec end, slice;
	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += timeout_ms / 1000;
	end.tv_nsec += (timeout_ms % 1000) * 1000000L;
	if (end.tv_nsec >= 1000000000L) {
		end.tv_sec++;
		end.tv_nsec -= 1000000000L;
	}
	int ret = 0;
	pthread_mutex_lock(&fake_irqs.lock);
	while (!ready(arg)) {
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > end.tv_sec || (now.tv_sec == end.tv_sec && now.tv_nsec >= end.tv_nsec)) {
			ret = -1;
			break;
		}
		/* The condition variable runs on CLOCK_REALTIME: a 1 ms slice from now. */
		clock_gettime(CLOCK_REALTIME, &slice);
		slice.tv_nsec += 1000000L;
		if (slice.tv_nsec >= 1000000000L) {
			slice.tv_sec++;
			slice.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&fake_irqs.cond, &fake_irqs.lock, &slice);
	}
	pthread_mutex_unlock(&fake_irqs.lock);
	return ret;
}
