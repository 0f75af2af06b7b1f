/*
 * A board assembles a machine on the KVM core: its memory map, interrupt
 * controllers, the device types it has (in creation order), the kernel
 * loader and firmware tables, and the vCPU hooks. lkvm has one, the PC
 * (x86/machine.c); the runner (cmd/run.c) names it and nothing below does.
 */
#ifndef LKVM_BOARD_H
#define LKVM_BOARD_H

#include <stddef.h>

struct vm;
struct vm_config;
struct device;
struct device_type;
struct opt;
struct snap_writer;
struct snap_reader;

struct board {
	const char *name;
	const struct opt *opts;		/* its options (cpu model, boot path...) */
	size_t cfg_size;
	/* After every option was parsed, before /dev/kvm is opened: input files, defaults. */
	int (*check)(struct vm_config *cfg, void *own);
	const struct device_type *const *devices;	/* NULL-terminated, in creation order */
	/* On a created VM: memory, irqchip, every device type's instances, the kernel, tables, vm->arch. */
	int (*create)(struct vm *vm, void *own);
	void (*destroy)(struct vm *vm);		/* what create kept in vm->board */
	/* The device the host terminal's input goes to. */
	struct device *(*console)(struct vm *vm);
	/* Snapshots: the board's records (interrupt controllers, clock, every vCPU), all vCPUs parked. */
	int (*save)(struct vm *vm, struct snap_writer *w);
	/* Before a restore builds anything but the VM fd: can this host run the snapshot's vCPUs? */
	int (*check_restore)(struct vm *vm, struct snap_reader *r);
	/* The records back into a VM that create() made from the snapshot's options (vm->cfg.restore set). */
	int (*load)(struct vm *vm, struct snap_reader *r);
};

extern const struct board pc_board;

#endif
