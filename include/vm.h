/*
 * One virtual machine as KVM sees it: the fds, guest RAM, the port and MMIO
 * buses, vCPU threads, interrupt routing, and the registry of its devices.
 * It names no board and no device: the board (x86/machine.c) lays out memory,
 * creates the devices and sets the vCPU hooks; the runner (cmd/run.c) decides
 * the order of everything.
 */
#ifndef LKVM_VM_H
#define LKVM_VM_H

#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <pthread.h>
#include <linux/kvm.h>
#include "guest_mem.h"
#include "bus.h"

struct vm;
struct evloop;
struct device;
struct snap_reader;

/* What every layer may read about the VM; options of the board and devices live in parts. */
struct cfg_part {
	const void *owner;	/* the device type or board whose options these are */
	void *data;
	struct cfg_part *next;
};

struct vm_config {
	const char *name;	/* control socket name; NULL: lkvm-PID */
	uint64_t ram_size;
	int nr_cpus;
	const char *kernel, *initrd, *cmdline;	/* what to boot; the board decides how */
	bool debug_ioport;	/* log accesses no device claims */
	bool no_seccomp;	/* skip the syscall allowlist */
	bool no_thp;		/* guest RAM in 4 KiB pages only (guest_mem_thp()) */
	struct cfg_part *parts;
	/* The options as given, one "--name=value" (or "--flag") each: a snapshot keeps them. */
	int nr_args;
	char **args;
	/* Restoring a snapshot: its records; guest RAM is ram_file, mapped copy-on-write. */
	struct snap_reader *restore;
	const char *ram_file;
};

/* The options of owner (a device type, the board), zeroed size bytes the first time. */
void *vm_config_part(struct vm_config *cfg, const void *owner, size_t size);
/* The part if its owner's options were ever touched, else NULL. */
void *vm_config_find(const struct vm_config *cfg, const void *owner);
void vm_config_free(struct vm_config *cfg);

struct vcpu {
	struct vm *vm;
	int id;
	int fd;
	struct kvm_run *run;
	size_t run_size;
	pthread_t thread;
	bool running;		/* the thread was started */
	uint64_t exits;
	uint64_t exits_io, exits_mmio, exits_emulated;
	uint64_t pio_reads, pio_writes, mmio_reads, mmio_writes;
	bool held;			/* a debugger keeps it parked (vm_hold), atomic */
	struct kvm_guest_debug debug;	/* what vcpu_set_guest_debug() last gave KVM */
};

/*
 * How interrupts reach the guest: KVM's irqchip (kvm_irq_ops, kvm/irq.c) or a
 * device-level test's recorder. The eventfd paths are optional: NULL where
 * there is no KVM, and devices then fall back to line/msi and MMIO kicks.
 */
struct irq_ops {
	void (*line)(struct vm *vm, unsigned gsi, int level);
	void (*msi)(struct vm *vm, uint64_t addr, uint32_t data);
	int (*msi_route)(struct vm *vm, uint64_t addr, uint32_t data);
	int (*msi_route_update)(struct vm *vm, int gsi, uint64_t addr, uint32_t data);
	int (*irqfd)(struct vm *vm, int fd, unsigned gsi, bool assign);
	int (*ioeventfd)(struct vm *vm, uint64_t addr, int len, int fd, bool pio, bool assign);
};
extern const struct irq_ops kvm_irq_ops;

/* The board's hooks into the vCPU layer. */
struct vm_arch {
	int (*vcpu_init)(struct vcpu *v);		/* CPUID, MSRs; the boot vCPU's entry state */
	/* KVM could not emulate: 0 to resume, -1 (err set) to stop, 1 to report KVM's own error. */
	int (*emulation_failure)(struct vcpu *v);
};

enum vm_exit_reason { VM_RUNNING, VM_POWEROFF, VM_RESET, VM_QUIT, VM_ERROR };

struct vm {
	struct vm_config cfg;
	int sys_fd, vm_fd;	/* -1 without KVM (device-level tests) */
	struct guest_mem mem;
	struct bus pio, mmio;
	int nr_vcpus;
	struct vcpu *vcpus;
	struct evloop *loop;	/* kicks and device timers; started by the runner */
	struct device *devices;	/* the registry, in creation order (kvm/device.c) */

	const struct vm_arch *arch;	/* set by the board */
	void *board;			/* the board's own state */

	const struct irq_ops *irq;
	pthread_mutex_t irq_lock;
	struct kvm_irq_routing *routing;	/* current GSI routing table */
	unsigned next_gsi;

	/* Pause: vCPU threads park outside KVM_RUN while paused is set. */
	pthread_mutex_t pause_lock;
	pthread_cond_t pause_cond;
	bool paused;
	int parked;
	/* A debugger's #DB/#BP handler (vcpu_debug_event); NULL when there is none. */
	bool (*debug_fn)(struct vcpu *v, const struct kvm_debug_exit_arch *e, void *ctx);
	void *debug_ctx;

	uint64_t generation;		/* restores this VM's state went through (snapshots) */
	uint64_t ioeventfd_kicks;	/* virtqueue kicks that came without an exit (atomic) */
	uint64_t irqfd_msis;		/* MSI-X interrupts sent through an irqfd (atomic) */
	bool needs_files;		/* a device serves host files (9p): seccomp allows path calls */
	const char *jail_keep[4];	/* host folders a device still reaches by path (vsock PATH_PORT) */
	int nr_jail_keep;
	const char *jail_sock;		/* a socket a device made by path (vsock PATH): the jail's reaper removes it */

	/* Set once; the first reason to stop wins. exit_efd wakes whoever waits for it. */
	int exit_reason;	/* enum vm_exit_reason, atomic */
	int exit_status;	/* process exit status to use */
	int exit_efd;
};

/* kvm/vm.c: the VM's life, in the order the runner calls it. */
int vm_create(struct vm *vm, const struct vm_config *cfg);	/* /dev/kvm, the VM fd, buses, loop */
/* Guest RAM of cfg.ram_size, with the range [hole_start, hole_end) left for MMIO (0, 0: none). */
int vm_add_ram(struct vm *vm, uint64_t hole_start, uint64_t hole_end);
int vm_create_vcpus(struct vm *vm);	/* after the board set vm->arch */
int vm_start_vcpus(struct vm *vm);
void vm_stop_vcpus(struct vm *vm);	/* kick every vCPU out of KVM_RUN and join it */
void vm_destroy(struct vm *vm);		/* devices, vCPUs, RAM, fds */
void vm_request_exit(struct vm *vm, enum vm_exit_reason why, int status);
bool vm_stopping(struct vm *vm);
int vm_exit_status(struct vm *vm);
/* Park every vCPU outside KVM_RUN (returns when all are parked) / let them go. */
void vm_pause(struct vm *vm);
void vm_resume(struct vm *vm);
void vcpu_park_if_paused(struct vcpu *v);
bool vcpu_must_park(struct vcpu *v);	/* paused or held */
/*
 * A debugger's hold, apart from pause/resume (the control socket's): held vCPUs park outside
 * KVM_RUN too. vm_hold() holds all (wait: until every vCPU is parked); vm_release() lets one
 * (id) or all (-1) run again.
 */
void vm_hold(struct vm *vm, bool wait);
void vm_release(struct vm *vm, int id);

/* True on hosts whose KVM emulates guest ring 0 (PVM). */
bool kvm_host_emulates_ring0(void);

/* kvm/irq.c: level-triggered lines on the in-kernel IOAPIC/PIC, and MSIs. */
void vm_irq_line(struct vm *vm, unsigned gsi, int level);
void vm_irq_pulse(struct vm *vm, unsigned gsi);
void vm_msi(struct vm *vm, uint64_t addr, uint32_t data);
/* Allocate a GSI routed to an MSI (for irqfd); returns the GSI, or -1 with err set. */
int vm_msi_route(struct vm *vm, uint64_t addr, uint32_t data);
int vm_msi_route_update(struct vm *vm, int gsi, uint64_t addr, uint32_t data);
int vm_irqfd(struct vm *vm, int fd, unsigned gsi, bool assign);
int vm_ioeventfd(struct vm *vm, uint64_t addr, int len, int fd, bool pio, bool assign);
/* Whether kicks and interrupts can go through eventfds (KVM's ioeventfd/irqfd) here. */
bool vm_has_eventfds(const struct vm *vm);

/* kvm/vcpu.c */
int vcpu_create(struct vm *vm, struct vcpu *v, int id);
void *vcpu_thread(void *arg);
void vcpu_dump(struct vcpu *v, FILE *out);
/* KVM_SET_GUEST_DEBUG, remembered for giving the guest its own #DB/#BP back. */
int vcpu_set_guest_debug(struct vcpu *v, const struct kvm_guest_debug *dbg);
/*
 * A #DB or #BP (KVM_EXIT_DEBUG, or an int3 the board would emulate): true when vm->debug_fn
 * took it as the debugger's, false when it is the guest's own.
 */
bool vcpu_debug_event(struct vcpu *v, const struct kvm_debug_exit_arch *e);

#endif
