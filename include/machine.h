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

#endif
