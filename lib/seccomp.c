/*
 * seccomp-bpf: after set-up lkvm only makes the syscalls listed here, and
 * each vCPU thread (the one a guest drives directly) even fewer.
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "seccomp.h"
#include "util.h"

/* Every syscall's name, from the kernel headers at build time. */
static const char *const syscall_names[] = {
#include "syscall_names.h"

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452	/* Linux 6.6; glibc 2.36 does not name it */
#endif
};

const char *syscall_name(long nr)
{
	if (nr >= 0 && (size_t)nr < ARRAY_SIZE(syscall_names) && syscall_names[nr])
		return syscall_names[nr];
	return "?";
}

/* What vCPU threads, the event loop, disk workers and the control socket use. */
static const int allowed[] = {
	SYS_ioctl,	/* first: KVM_RUN is the hot one, and the filter is checked in order */
	SYS_read, SYS_write, SYS_readv, SYS_writev, SYS_pread64, SYS_pwrite64, SYS_preadv, SYS_pwritev,
	SYS_preadv2, SYS_pwritev2, SYS_close, SYS_fcntl, SYS_dup, SYS_lseek,
	SYS_mmap, SYS_munmap, SYS_mprotect, SYS_madvise, SYS_brk, SYS_mremap,
	SYS_futex, SYS_epoll_wait, SYS_epoll_pwait, SYS_epoll_ctl, SYS_eventfd2, SYS_poll, SYS_ppoll,
	SYS_accept, SYS_accept4, SYS_recvfrom, SYS_sendto, SYS_recvmsg, SYS_sendmsg, SYS_setsockopt,
	SYS_getsockopt, SYS_shutdown, SYS_socket, SYS_connect, SYS_bind, SYS_listen, SYS_getsockname,
	SYS_fstat, SYS_newfstatat, SYS_statx, SYS_fdatasync, SYS_fsync, SYS_fallocate, SYS_ftruncate,
	SYS_copy_file_range,	/* snapshots: a raw disk copied between descriptors the client passed */
	SYS_io_setup, SYS_io_submit, SYS_io_getevents, SYS_io_destroy, SYS_io_cancel,
	SYS_io_uring_enter,	/* rings made before the filter, restricted to readv/writev (disk/aio_uring.c) */
	SYS_getrandom, SYS_clock_gettime, SYS_clock_nanosleep, SYS_nanosleep, SYS_gettimeofday,
	SYS_gettid, SYS_getpid, SYS_getpgrp, SYS_rt_sigreturn, SYS_rt_sigprocmask, SYS_rt_sigaction,
	SYS_sigaltstack, SYS_exit, SYS_exit_group, SYS_clone, SYS_clone3, SYS_set_robust_list,
	SYS_rseq, SYS_sched_yield, SYS_sched_getaffinity, SYS_prctl, SYS_unlink, SYS_unlinkat,
	SYS_restart_syscall, SYS_pipe2, SYS_timerfd_create, SYS_timerfd_settime, SYS_membarrier,
	SYS_seccomp,	/* only ever narrows: the vCPU threads add their own filter */
	SYS_fchmod,	/* on a socket before bind(): a gdb stub's unix socket is made 0600 */
	SYS_wait4,	/* the jail's reaper (lib/jail.c), at the end */
};

/* Shared folders: path operations, all relative to an fd the device holds. */
static const int allowed_files[] = {
	SYS_openat, SYS_openat2, SYS_mkdirat, SYS_rmdir, SYS_renameat, SYS_renameat2, SYS_symlinkat, SYS_linkat,
	SYS_readlinkat, SYS_fchmodat, SYS_fchmodat2, SYS_fchownat, SYS_fchmod, SYS_fchown, SYS_utimensat,
	SYS_fstatfs, SYS_getdents64, SYS_fgetxattr, SYS_fsetxattr, SYS_flistxattr, SYS_fremovexattr,
	SYS_lgetxattr, SYS_llistxattr, SYS_lsetxattr, SYS_lremovexattr, SYS_mknodat, SYS_fadvise64,
};

static void (*trap_cleanup)(void);

void seccomp_on_trap(void (*fn)(void))
{
	trap_cleanup = fn;
}

static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
	/* Async-signal-safe only: build the line by hand. */
	char line[160] = "\r\nlkvm: seccomp blocked syscall ";
	const char *name = syscall_name(si->si_syscall);
	strncat(line, name, 40);
	strcat(line, " (nr ");
	char num[16];
	int n = 0;
	unsigned v = si->si_syscall;
	do { num[n++] = '0' + v % 10; v /= 10; } while (v && n < 15);
	size_t len = strlen(line);
	while (n)
		line[len++] = num[--n];
	line[len] = 0;
	strcat(line, "); run with --no-seccomp to allow it\r\n");
	if (trap_cleanup)
		trap_cleanup();
	if (write(STDERR_FILENO, line, strlen(line)) < 0) {}
	_exit(2);
}

/*
 * What a vCPU thread never needs even though other lkvm threads do: sockets
 * (the network stack and the control socket have threads of their own) and
 * new threads or processes. Devices it drives only write eventfds and files.
 */
static const int denied_vcpu[] = {
	SYS_socket, SYS_socketpair, SYS_connect, SYS_bind, SYS_listen, SYS_accept, SYS_accept4,
	SYS_clone, SYS_clone3, SYS_fork, SYS_vfork, SYS_execve, SYS_execveat,
};

static void trap_sigsys(void)
{
	struct sigaction sa = { .sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSYS, &sa, NULL);
}

int seccomp_narrow_vcpu(void)
{
	struct sock_filter f[6 + 2 * ARRAY_SIZE(denied_vcpu) + 1];
	size_t i = 0;
	f[i++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
	f[i++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0);
	f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
	f[i++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
	f[i++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_ioctl, 0, 1);	/* KVM_RUN: at once */
	f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	for (size_t k = 0; k < ARRAY_SIZE(denied_vcpu); k++) {
		f[i++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, denied_vcpu[k], 0, 1);
		f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP);
	}
	f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	struct sock_fprog prog = { .len = i, .filter = f };
	trap_sigsys();
	/* Without TSYNC: this thread only. NO_NEW_PRIVS is per thread too. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
		return err_errno("installing the vCPU thread's seccomp filter");
	return 0;
}

int seccomp_install(bool with_files)
{
	size_t n = ARRAY_SIZE(allowed) + (with_files ? ARRAY_SIZE(allowed_files) : 0);
	size_t len = 4 + 5 + 2 * n + 2;
	struct sock_filter *f = xcalloc(len, sizeof(*f));
	size_t i = 0;
	f[i++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
	f[i++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0);
	f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
	f[i++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
	/* tgkill: lkvm's own threads only (vCPU kicks), never another process of the same user */
	f[i++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_tgkill, 0, 4);
	f[i++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]));
	f[i++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)getpid(), 0, 1);
	f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP);
	for (size_t k = 0; k < n; k++) {
		int nr = k < ARRAY_SIZE(allowed) ? allowed[k] : allowed_files[k - ARRAY_SIZE(allowed)];
		f[i++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1);
		f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	}
	f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP);
	struct sock_fprog prog = { .len = i, .filter = f };

	trap_sigsys();
	int ret = 0;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		ret = err_errno("prctl(NO_NEW_PRIVS)");
	else if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog) != 0)
		ret = err_errno("installing the seccomp filter (use --no-seccomp on kernels without it)");
	free(f);
	return ret;
}
