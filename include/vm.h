/* One virtual machine: KVM fds, RAM, buses, vCPUs and its configuration. */
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
struct pci_host;

enum console_kind { CONSOLE_SERIAL, CONSOLE_VIRTIO };
enum cpu_model { CPU_AUTO, CPU_HOST, CPU_BASELINE };

#define MAX_DISKS 8
struct disk_opt {
	const char *path;
	bool ro, direct;
};

#define MAX_SHARES 8
struct share_opt {		/* --9p HOSTDIR,TAG[,ro] */
	const char *dir, *tag;
	bool ro;
};

#define MAX_NICS 4
enum net_mode { NET_USER, NET_TAP, NET_NONE };
struct net_opt {		/* --network mode=...,tapif=,guest_mac=,hostfwd= */
	enum net_mode mode;
	bool restricted;	/* user mode: no NAT to the outside, forwards only */
	const char *tapif;
	uint8_t mac[6];
	bool mac_set;
	int nr_fwds;
	struct { bool udp; uint16_t host_port, guest_port; } fwds[8];
};

struct vm_config {
	const char *kernel;
	const char *initrd;
	const char *cmdline;
	const char *name;
	uint64_t ram_size;
	int nr_cpus;
	enum console_kind console;
	enum cpu_model cpu;
	bool debug_ioport;
	bool flat;		/* load kernel as a flat binary at flat_addr */
	uint64_t flat_addr;
	bool rng;
	bool balloon;
	int nr_disks;
	struct disk_opt disks[MAX_DISKS];
	bool no_emulate;	/* do not emulate instructions KVM rejects */
	bool no_seccomp;	/* skip the syscall allowlist */
	bool bios_boot;		/* bzImage through its 16-bit setup code and our BIOS */
	bool needs_files;	/* a device serves host files (9p): widen the allowlist */
	int nr_shares;
	struct share_opt shares[MAX_SHARES];
	int nr_nics;
	struct net_opt nics[MAX_NICS];
};

struct vcpu {
	struct vm *vm;
	int id;
	int fd;
	struct kvm_run *run;
	size_t run_size;
	pthread_t thread;
	uint64_t exits;
	uint64_t exits_io, exits_mmio, exits_emulated;
	uint64_t pio_reads, pio_writes, mmio_reads, mmio_writes;
};

/* Where guest-side stats and exit status are gathered; written from any thread. */
enum vm_exit_reason { VM_RUNNING, VM_POWEROFF, VM_RESET, VM_QUIT, VM_ERROR };

struct vm {
	struct vm_config cfg;
	int sys_fd, vm_fd;	/* -1 when no KVM (device-level tests) */
	struct guest_mem mem;
	struct bus pio, mmio;
	int nr_vcpus;
	struct vcpu *vcpus;
	struct evloop *loop;
	struct pci_host *pci;

	/* Interrupts: devices call vm_irq_line()/vm_msi(), which go through irq. */
	const struct irq_ops *irq;
	pthread_mutex_t irq_lock;
	struct kvm_irq_routing *routing;	/* current GSI routing table */
	unsigned next_gsi;

	/* Pause: vCPU threads park outside KVM_RUN while paused is set. */
	pthread_mutex_t pause_lock;
	pthread_cond_t pause_cond;
	bool paused;
	int parked;
	struct control *control;
	struct balloon *balloon;	/* --balloon, else NULL */
	uint64_t ioeventfd_kicks;	/* virtqueue kicks that came without an exit (atomic) */
	uint64_t irqfd_msis;		/* MSI-X interrupts sent through an irqfd (atomic) */
	/* Run once after the vCPUs stopped, whatever ended the VM (disks flush there). */
	int nr_exit_hooks;
	struct { void (*fn)(void *ctx); void *ctx; } exit_hooks[16];

	/* Set once; the first reason to stop wins. */
	int exit_reason;	/* enum vm_exit_reason, atomic */
	int exit_status;	/* process exit status to use */

	/* Boot facts the loader decides and the vCPU set-up uses. */
	uint64_t entry_rip, entry_rsp, boot_params_gpa;
	int entry_mode;		/* enum entry_mode in x86/boot.h */
	bool rmode_entry_cs_ip;	/* real mode: entry is CS:IP */
	uint16_t rm_cs, rm_ip, rm_ss, rm_sp;
};

/* kvm/vm.c */
int vm_create(struct vm *vm, const struct vm_config *cfg);
int vm_run(struct vm *vm);	/* start vCPUs, wait for the end; returns exit status */
void vm_destroy(struct vm *vm);
void vm_request_exit(struct vm *vm, enum vm_exit_reason why, int status);
bool vm_stopping(struct vm *vm);
/* Park every vCPU outside KVM_RUN (returns when all are parked) / let them go. */
void vm_pause(struct vm *vm);
void vm_resume(struct vm *vm);
void vcpu_park_if_paused(struct vcpu *v);

/* True on hosts whose KVM emulates guest ring 0 (PVM): use --cpu baseline there. */
bool kvm_host_emulates_ring0(void);

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

/* Call fn(ctx) when the VM has stopped (poweroff, signal, error); 0, or -1 when full. */
int vm_on_exit(struct vm *vm, void (*fn)(void *ctx), void *ctx);

/* kvm/vcpu.c */
int vcpu_create(struct vm *vm, struct vcpu *v, int id);
void *vcpu_thread(void *arg);
void vcpu_dump(struct vcpu *v, FILE *out);

/* x86/emulate_kvm.c: handle an emulation failure in userspace; 0 = resume. */
int emulate_kvm_exit(struct vcpu *v);

/* Fixed legacy IRQ numbers. */
#define IRQ_PIT 0
#define IRQ_KBD 1
#define IRQ_COM2 3
#define IRQ_COM1 4
#define IRQ_RTC 8

#endif
