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

static void add_ms(struct timespec *t, long ms)
{
	t->tv_sec += ms / 1000;
	t->tv_nsec += ms % 1000 * 1000000L;
	if (t->tv_nsec >= 1000000000L) {
		t->tv_sec++;
		t->tv_nsec -= 1000000000L;
	}
}

int fake_irq_wait(bool (*ready)(void *arg), void *arg, int timeout_ms, int poll_ms)
{
	/* The condition variable runs on CLOCK_REALTIME; the deadline is kept on CLOCK_MONOTONIC. */
	struct timespec end, until;
	clock_gettime(CLOCK_MONOTONIC, &end);
	add_ms(&end, timeout_ms);
	int ret = 0;
	pthread_mutex_lock(&fake_irqs.lock);
	while (!ready(arg)) {
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		long left_ms = (end.tv_sec - now.tv_sec) * 1000 + (end.tv_nsec - now.tv_nsec) / 1000000;
		if (left_ms <= 0) {
			ret = -1;
			break;
		}
		clock_gettime(CLOCK_REALTIME, &until);
		add_ms(&until, poll_ms > 0 && poll_ms < left_ms ? poll_ms : left_ms);
		pthread_cond_timedwait(&fake_irqs.cond, &fake_irqs.lock, &until);
	}
	pthread_mutex_unlock(&fake_irqs.lock);
	return ret;
}
