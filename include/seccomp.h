/* seccomp-bpf allowlist for every lkvm thread, installed after set-up. */
#ifndef LKVM_SECCOMP_H
#define LKVM_SECCOMP_H

#include <stdbool.h>

/*
 * Install the filter on all threads (TSYNC). A syscall outside the list
 * raises SIGSYS, whose handler runs the seccomp_on_trap() cleanup, names the syscall on
 * stderr and exits with status 2. with_files adds what a shared-folder
 * (9p) device needs.
 */
int seccomp_install(bool with_files);
/*
 * Narrow the calling thread (a vCPU's) further, after seccomp_install(): no
 * sockets, no new threads or processes. Same SIGSYS report.
 */
int seccomp_narrow_vcpu(void);
/* Called (async-signal-safe) before the SIGSYS report: the runner restores the terminal. */
void seccomp_on_trap(void (*fn)(void));
/* Name of syscall nr ("?" if unknown); exposed for tests. */
const char *syscall_name(long nr);

#endif
