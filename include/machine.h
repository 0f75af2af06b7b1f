/* The PC board's own state (x86/machine.c), shared by the x86/ files that boot it. */
#ifndef LKVM_MACHINE_H
#define LKVM_MACHINE_H

#include <stdbool.h>
#include <stdint.h>

enum cpu_model { CPU_AUTO, CPU_HOST, CPU_BASELINE };

struct pc_opts {		/* the board's options */
	enum cpu_model cpu;
	bool flat;		/* load the kernel file as a flat binary at flat_addr */
	uint64_t flat_addr;
	bool bios_boot;		/* bzImage through its 16-bit setup code and our BIOS */
	bool no_emulate;	/* do not emulate instructions KVM rejects */
	bool no_default_params;
};

struct pc {
	struct pc_opts opts;
	char *cmdline;		/* the whole kernel command line */
	/* Boot facts the loader decides and the boot vCPU's set-up uses. */
	uint64_t entry_rip, entry_rsp, boot_params_gpa;
	int entry_mode;		/* enum entry_mode in boot.h */
	uint16_t rm_cs, rm_ip, rm_ss, rm_sp;
};

/* x86/snapshot.c: the board's snapshot records. */
struct vm;
struct vcpu;
struct snap_writer;
struct snap_reader;
int x86_vm_save(struct vm *vm, struct snap_writer *w);		/* irqchip and KVM clock */
int x86_irqchip_load(struct vm *vm, struct snap_reader *r);
int x86_clock_load(struct vm *vm, struct snap_reader *r);
int x86_vcpu_save(struct vcpu *v, struct snap_writer *w);
int x86_vcpu_load(struct vcpu *v, struct snap_reader *r);
/* The snapshot's CPUID against what this host's KVM supports: 0, or -1 naming what is missing. */
int x86_check_cpu(struct vm *vm, struct snap_reader *r);

#endif
