/*
 * Ports guests use to talk to the VMM rather than to hardware: the POST code
 * port 0x80 (firmware progress, also Linux's I/O delay), the debug-exit port
 * that ends the VM with a status (test guests, sandboxes), the PIIX4 PM
 * control port 0x604 that some test code writes SLP_EN to for a poweroff, and
 * a boot timer (Firecracker's idea, on a port here): the guest's init writes
 * BOOT_TIMER_MAGIC to it and lkvm says how long the VM took to get there.
 */
#include <stdlib.h>
#include "bus.h"
#include "json.h"
#include "device.h"
#include "devices.h"
#include "hw.h"
#include "snapshot.h"
#include "util.h"
#include "vm.h"

#define POST_PORT 0x80
#define PM1_CNT_PORT 0x604
#define PM1_CNT_SLP_EN 0x2000

struct debug_ports {
	struct vm *vm;
	int post_code;		/* -1 until the first write; atomic */
	uint64_t created_ns;	/* CLOCK_MONOTONIC when the VM was made */
	uint64_t boot_us;	/* created to the boot timer's last write, 0 if none; atomic */
};

static void post_write(void *ctx, uint64_t off, const void *data, int len)
{
	struct debug_ports *d = ctx;
	__atomic_store_n(&d->post_code, ((const uint8_t *)data)[0], __ATOMIC_RELAXED);
}

static void post_read(void *ctx, uint64_t off, void *data, int len)
{
	struct debug_ports *d = ctx;
	int v = __atomic_load_n(&d->post_code, __ATOMIC_RELAXED);
	u64_to_bytes(data, len, v < 0 ? 0xff : v);
}

static void exit_write(void *ctx, uint64_t off, const void *data, int len)
{
	struct debug_ports *d = ctx;
	/* Any width at any offset of the port: the low byte written is the status. */
	vm_request_exit(d->vm, VM_POWEROFF, (int)(bytes_to_u64(data, len) & 0xff));
}

static void pm_write(void *ctx, uint64_t off, const void *data, int len)
{
	struct debug_ports *d = ctx;
	if (off == 0 && len >= 2 && (bytes_to_u64(data, len) & PM1_CNT_SLP_EN))
		vm_request_exit(d->vm, VM_POWEROFF, 0);
}

static void pm_read(void *ctx, uint64_t off, void *data, int len)
{
	u64_to_bytes(data, len, 0);
}

static void boot_timer_write(void *ctx, uint64_t off, const void *data, int len)
{
	struct debug_ports *d = ctx;
	if (off != 0 || ((const uint8_t *)data)[0] != BOOT_TIMER_MAGIC)
		return;
	uint64_t us = (mono_ns() - d->created_ns) / 1000;
	__atomic_store_n(&d->boot_us, us ? us : 1, __ATOMIC_RELAXED);
	/* Each write is one line (a guest can write as often as it likes: -v only) */
	pr_debug("boot timer: the guest's mark %llu.%03llu ms after the VM was made",
		 (unsigned long long)(us / 1000), (unsigned long long)(us % 1000));
}

static const struct bus_ops boot_timer_ops = { .write = boot_timer_write };
static const struct bus_ops post_ops = { .read = post_read, .write = post_write };
static const struct bus_ops exit_ops = { .write = exit_write };
static const struct bus_ops pm_ops = { .read = pm_read, .write = pm_write };

static void debug_ports_destroy(struct device *dev)
{
	struct debug_ports *d = dev->priv;
	bus_unregister_all(&d->vm->pio, d);
	free(d);
}

static void debug_ports_stats(struct device *dev, struct json_writer *j)
{
	struct debug_ports *d = dev->priv;
	json_u64(j, "boot_timer_us", __atomic_load_n(&d->boot_us, __ATOMIC_RELAXED));
}

static int debug_ports_save(struct device *dev, struct snap_writer *w)
{
	struct debug_ports *d = dev->priv;
	snap_u16(w, (uint16_t)__atomic_load_n(&d->post_code, __ATOMIC_RELAXED));	/* 0xffff: none yet */
	return 0;
}

static int debug_ports_load(struct device *dev, struct snap_reader *r)
{
	struct debug_ports *d = dev->priv;
	uint16_t v = snap_get_u16(r);
	if (v > 0xff && v != 0xffff)
		return snap_bad(r, "POST code 0x%x", v);
	__atomic_store_n(&d->post_code, v == 0xffff ? -1 : v, __ATOMIC_RELAXED);
	return 0;
}

static const struct device_ops debug_ports_ops = {
	.destroy = debug_ports_destroy, .save = debug_ports_save, .load = debug_ports_load, .snap_version = 1,
	.stats = debug_ports_stats,
};

static int debug_ports_create(struct vm *vm, void *own)
{
	struct debug_ports *d = xcalloc(1, sizeof(*d));
	d->vm = vm;
	d->post_code = -1;
	d->created_ns = mono_ns();
	device_add(vm, "debug-ports", &debug_ports_ops, d);
	if (bus_register(&vm->pio, POST_PORT, 1, &post_ops, d, "post") < 0 ||
	    bus_register(&vm->pio, DEBUG_EXIT_PORT, 4, &exit_ops, d, "debug-exit") < 0 ||
	    bus_register(&vm->pio, PM1_CNT_PORT, 2, &pm_ops, d, "pm1-cnt") < 0 ||
	    bus_register(&vm->pio, BOOT_TIMER_PORT, 1, &boot_timer_ops, d, "boot-timer") < 0)
		return -1;
	return 0;
}

const struct device_type debug_ports_device = { .name = "debug-ports", .create = debug_ports_create };

int debug_post_code(struct vm *vm)
{
	struct debug_ports *d = device_priv(vm, "debug-ports", 0);
	return d ? __atomic_load_n(&d->post_code, __ATOMIC_RELAXED) : -1;
}
