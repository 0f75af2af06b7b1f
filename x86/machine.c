/*
 * The PC board: memory below and above the 32-bit PCI hole, KVM's in-kernel
 * PIC/IOAPIC/LAPIC, the legacy devices and virtio-pci functions in the list
 * below, the kernel loaded by its format, MP and ACPI tables, and the vCPU
 * hooks (CPUID, entry state, lkvm's own instruction emulator).
 *
 * Adding a device: its own file defines a device_type; one line in the list.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include "acpi.h"
#include "board.h"
#include "boot.h"
#include "device.h"
#include "devices.h"
#include "e820.h"
#include "emulate.h"
#include "machine.h"
#include "options.h"
#include "snapshot.h"
#include "util.h"
#include "vm.h"

#define TSS_ADDR 0xfffbd000ULL
#define IDENTITY_MAP_ADDR 0xfffbc000ULL

/* Sent ahead of the user's -p: the console, and resets through the i8042 end the VM. */
#define DEFAULT_PARAMS_SERIAL "console=ttyS0 reboot=k"
#define DEFAULT_PARAMS_VIRTIO "console=hvc0 reboot=k"
/* CPUID masking does not reach the guest on kvm_pvm hosts: tell Linux too. */
#define BASELINE_PARAMS "noxsave clearcpuid=cx16,popcnt,smap,smep,fsgsbase,invpcid,pcid,avx,avx2,rdtscp nopti"

/* Creation order: the PCI host first (virtio functions need it), the console device before the rest. */
static const struct device_type *const pc_devices[] = {
	&pci_host_device,
	&serial_device,
	&i8042_device,
	&rtc_device,
	&pit_device,
	&debug_ports_device,
	&acpi_pm_device,
	&vmgenid_device,
	&virtio_console_device,
	&virtio_rng_device,
	&virtio_blk_device,
	&virtio_balloon_device,
	&virtio_net_device,
	&virtio_9p_device,
	&virtio_vsock_device,
	NULL
};

/* ---- options ---- */

static int parse_cpu(void *own, const char *arg)
{
	struct pc_opts *o = own;
	if (!strcmp(arg, "host"))
		o->cpu = CPU_HOST;
	else if (!strcmp(arg, "baseline"))
		o->cpu = CPU_BASELINE;
	else
		return err_set("use host or baseline");
	return 0;
}

static int parse_flat(void *own, const char *arg)
{
	struct pc_opts *o = own;
	o->flat = true;
	if (arg) {
		char *end;
		o->flat_addr = strtoull(arg, &end, 0);
		if (*end || end == arg)
			return err_set("not an address");
	}
	return 0;
}

static int set_bios_boot(void *own, const char *arg) { ((struct pc_opts *)own)->bios_boot = true; return 0; }
static int set_no_emulate(void *own, const char *arg) { ((struct pc_opts *)own)->no_emulate = true; return 0; }
static int set_no_default(void *own, const char *arg) { ((struct pc_opts *)own)->no_default_params = true; return 0; }

static const struct opt pc_opts[] = {
	{ "cpu", 0, "host|baseline", "CPU model; baseline hides features emulating hosts (kvm_pvm) cannot run", parse_cpu },
	{ "flat", 0, "[=ADDR]", "load the kernel file as a flat real-mode binary at ADDR (default 0x10000)", parse_flat },
	{ "bios-boot", 0, NULL, "enter a bzImage at its 16-bit setup code, through the bundled BIOS", set_bios_boot },
	{ "no-emulate", 0, NULL, "stop on instructions KVM cannot emulate instead of emulating them", set_no_emulate },
	{ "no-default-params", 0, NULL, "do not put \"" DEFAULT_PARAMS_SERIAL "\" ahead of -p", set_no_default },
	{ 0 }
};

/* Before /dev/kvm: the kernel file is one we can load, and the CPU model is decided. */
static int pc_check(struct vm_config *cfg, void *own)
{
	struct pc_opts *o = own;
	if (cfg->restore)
		return 0;	/* nothing to load: the snapshot holds RAM and vCPUs */
	if (!cfg->kernel)
		return err_set("no kernel given: use -k KERNEL");
	if (x86_check_kernel(cfg->kernel, o->flat) < 0)
		return -1;
	if (o->cpu == CPU_AUTO) {
		o->cpu = kvm_host_emulates_ring0() ? CPU_BASELINE : CPU_HOST;
		if (o->cpu == CPU_BASELINE)
			pr_info("this host's KVM emulates guest ring 0 (kvm_pvm): using --cpu baseline");
	}
	return 0;
}

/* ---- vCPU hooks ---- */

static int pc_vcpu_init(struct vcpu *v)
{
	if (v->vm->cfg.restore)
		return 0;	/* CPUID and every register come from the snapshot */
	if (x86_setup_cpuid(v) < 0)
		return -1;
	return v->id == 0 ? x86_setup_boot_cpu(v) : 0;
}

static int pc_emulation_failure(struct vcpu *v)
{
	struct pc *pc = v->vm->board;
	return pc->opts.no_emulate ? 1 : emulate_kvm_exit(v);
}

static const struct vm_arch pc_arch = { .vcpu_init = pc_vcpu_init, .emulation_failure = pc_emulation_failure };

/* ---- the machine ---- */

static char *join(const char *a, const char *b)
{
	size_t n = strlen(a) + strlen(b) + 2;
	char *s = xcalloc(1, n);
	snprintf(s, n, "%s%s%s", a, *a && *b ? " " : "", b);
	return s;
}

static struct device *pc_console(struct vm *vm)
{
	struct device *d = device_find(vm, "virtio-console", 0);
	return d ? d : device_find(vm, "serial", 0);
}

static int pc_create(struct vm *vm, void *own)
{
	struct pc *pc = xcalloc(1, sizeof(*pc));
	pc->opts = *(struct pc_opts *)own;
	vm->board = pc;
	vm->arch = &pc_arch;
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, TSS_ADDR) < 0)
		return err_errno("KVM_SET_TSS_ADDR");
	uint64_t idmap = IDENTITY_MAP_ADDR;
	ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap);	/* optional: Intel real mode only */
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		return err_errno("KVM_CREATE_IRQCHIP");
	/* No KVM_CREATE_PIT2: hw/pit.c is ours (KVM's costs a grace period at exit). */
	if (vm_add_ram(vm, PCI_HOLE_START, PCI_HOLE_END) < 0)
		return -1;
	for (int i = 0; pc_devices[i]; i++)
		if (device_type_create(vm, pc_devices[i]) < 0)
			return -1;
	if (vm->cfg.restore)
		return 0;	/* RAM holds the kernel and the tables already */
	const char *defaults = pc->opts.no_default_params ? "" :
			       device_find(vm, "virtio-console", 0) ? DEFAULT_PARAMS_VIRTIO : DEFAULT_PARAMS_SERIAL;
	char *base = join(defaults, pc->opts.cpu == CPU_BASELINE && !pc->opts.no_default_params ? BASELINE_PARAMS : "");
	pc->cmdline = join(base, vm->cfg.cmdline ? vm->cfg.cmdline : "");
	free(base);
	if (x86_load_kernel(vm) < 0 || mptable_write(vm) < 0 || acpi_write_tables(vm) < 0)
		return -1;
	return 0;
}

static void pc_destroy(struct vm *vm)
{
	struct pc *pc = vm->board;
	if (!pc)
		return;
	free(pc->cmdline);
	free(pc);
	vm->board = NULL;
	vm->arch = NULL;
}

/* ---- snapshots ---- */

static int pc_save(struct vm *vm, struct snap_writer *w)
{
	if (x86_vm_save(vm, w) < 0)
		return -1;
	for (int i = 0; i < vm->nr_vcpus; i++)
		if (x86_vcpu_save(&vm->vcpus[i], w) < 0)
			return -1;
	return 0;
}

static int pc_check_restore(struct vm *vm, struct snap_reader *r)
{
	char name[32];
	snprintf(name, sizeof(name), "vcpu:%d", vm->nr_vcpus);
	if (snap_has(r, name) || !snap_has(r, "vcpu:0"))
		return err_set("%s: the snapshot's VM had another number of vCPUs than %d", snap_path(r), vm->nr_vcpus);
	return x86_check_cpu(vm, r);
}

static int pc_load(struct vm *vm, struct snap_reader *r)
{
	if (x86_irqchip_load(vm, r) < 0)
		return -1;
	for (int i = 0; i < vm->nr_vcpus; i++)
		if (x86_vcpu_load(&vm->vcpus[i], r) < 0)
			return -1;
	return x86_clock_load(vm, r);
}

const struct board pc_board = {
	.name = "pc",
	.opts = pc_opts,
	.cfg_size = sizeof(struct pc_opts),
	.check = pc_check,
	.devices = pc_devices,
	.create = pc_create,
	.destroy = pc_destroy,
	.console = pc_console,
	.save = pc_save,
	.check_restore = pc_check_restore,
	.load = pc_load,
};
