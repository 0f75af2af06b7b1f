/* VM lifetime: /dev/kvm checks, memory slots, irqchip, devices, vCPU threads. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include "acpi.h"
#include "boot.h"
#include "control.h"
#include "devices.h"
#include "seccomp.h"
#include "evloop.h"
#include "term.h"
#include "util.h"
#include "vm.h"

#define TSS_ADDR 0xfffbd000ULL
#define IDENTITY_MAP_ADDR 0xfffbc000ULL

/* The main thread sleeps on this eventfd; any thread or signal handler wakes it. */
static int exit_efd = -1;
static struct vm *signal_vm;

static const struct { int cap; const char *name; } required_caps[] = {
	{ KVM_CAP_IRQCHIP, "IRQCHIP" },
	{ KVM_CAP_USER_MEMORY, "USER_MEMORY" },
	{ KVM_CAP_SET_TSS_ADDR, "SET_TSS_ADDR" },
	{ KVM_CAP_EXT_CPUID, "EXT_CPUID" },
	{ KVM_CAP_IRQ_ROUTING, "IRQ_ROUTING" },
	{ KVM_CAP_IMMEDIATE_EXIT, "IMMEDIATE_EXIT" },
};

static int open_kvm(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return err_set("/dev/kvm does not exist: this host has no KVM (load kvm_intel or kvm_amd, "
				       "or enable virtualization in the firmware or the hypervisor)");
		if (errno == EACCES || errno == EPERM)
			return err_set("/dev/kvm: permission denied: add yourself to the 'kvm' group "
				       "(sudo usermod -aG kvm $USER, then log in again) or run as root");
		return err_errno("/dev/kvm");
	}
	int v = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (v != KVM_API_VERSION) {
		close(fd);
		return err_set("/dev/kvm: KVM API version %d, lkvm needs %d", v, KVM_API_VERSION);
	}
	for (size_t i = 0; i < ARRAY_SIZE(required_caps); i++) {
		if (ioctl(fd, KVM_CHECK_EXTENSION, required_caps[i].cap) <= 0) {
			close(fd);
			return err_set("/dev/kvm: this KVM lacks the %s capability lkvm needs", required_caps[i].name);
		}
	}
	return fd;
}

bool kvm_host_emulates_ring0(void)
{
	/* PVM runs guest ring 0 through KVM's instruction emulator. */
	return access("/sys/module/kvm_pvm", F_OK) == 0 && access("/dev/kvm", F_OK) == 0;
}

int vm_create(struct vm *vm, const struct vm_config *cfg)
{
	memset(vm, 0, sizeof(*vm));
	vm->cfg = *cfg;
	vm->sys_fd = vm->vm_fd = -1;
	vm->nr_vcpus = cfg->nr_cpus;
	vm->irq = &kvm_irq_ops;
	pthread_mutex_init(&vm->irq_lock, NULL);
	pthread_mutex_init(&vm->pause_lock, NULL);
	pthread_cond_init(&vm->pause_cond, NULL);
	bus_init(&vm->pio, "pio");
	bus_init(&vm->mmio, "mmio");
	vm->pio.log_unhandled = vm->mmio.log_unhandled = cfg->debug_ioport;

	if ((vm->sys_fd = open_kvm()) < 0)
		return -1;
	int max = ioctl(vm->sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (max <= 0)
		max = ioctl(vm->sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	if (max > 0 && cfg->nr_cpus > max)
		return err_set("-c %d: this KVM supports at most %d vCPUs", cfg->nr_cpus, max);
	vm->vm_fd = ioctl(vm->sys_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0)
		return err_errno("KVM_CREATE_VM");
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, TSS_ADDR) < 0)
		return err_errno("KVM_SET_TSS_ADDR");
	uint64_t idmap = IDENTITY_MAP_ADDR;
	ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap);	/* optional: Intel real mode only */
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		return err_errno("KVM_CREATE_IRQCHIP");
	/* No KVM_CREATE_PIT2: hw/pit.c is ours (KVM's costs a grace period at exit). */

	if (guest_mem_alloc(&vm->mem, cfg->ram_size) < 0)
		return -1;
	for (int i = 0; i < vm->mem.nr; i++) {
		struct kvm_userspace_memory_region r = {
			.slot = i, .guest_phys_addr = vm->mem.r[i].gpa, .memory_size = vm->mem.r[i].size,
			.userspace_addr = (uintptr_t)vm->mem.r[i].host,
		};
		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
			return err_errno("KVM_SET_USER_MEMORY_REGION (%llu MiB)", (unsigned long long)(r.memory_size >> 20));
	}

	vm->loop = evloop_new();
	if (!vm->loop)
		return -1;
	for (int i = 0; i < nr_device_inits; i++)
		if (device_inits[i].init(vm) < 0)
			return -1;
	if (x86_load_kernel(vm) < 0 || mptable_write(vm) < 0 || acpi_setup(vm) < 0)
		return -1;

	vm->vcpus = xcalloc(vm->nr_vcpus, sizeof(*vm->vcpus));
	for (int i = 0; i < vm->nr_vcpus; i++)
		vm->vcpus[i].fd = -1;
	for (int i = 0; i < vm->nr_vcpus; i++)
		if (vcpu_create(vm, &vm->vcpus[i], i) < 0)
			return -1;
	return control_start(vm);
}

bool vm_stopping(struct vm *vm)
{
	return __atomic_load_n(&vm->exit_reason, __ATOMIC_ACQUIRE) != VM_RUNNING;
}

static void wake_main(void)
{
	uint64_t one = 1;
	if (exit_efd >= 0 && write(exit_efd, &one, sizeof(one)) < 0) {}
}

void vm_request_exit(struct vm *vm, enum vm_exit_reason why, int status)
{
	int expected = VM_RUNNING;
	/* The first reason wins: a reset after a poweroff changes nothing. */
	if (__atomic_compare_exchange_n(&vm->exit_reason, &expected, (int)why, false, __ATOMIC_ACQ_REL,
					__ATOMIC_ACQUIRE))
		__atomic_store_n(&vm->exit_status, status, __ATOMIC_RELEASE);
	wake_main();
}

static void kick_vcpus(struct vm *vm)
{
	for (int i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		if (!v->thread)
			continue;
		__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_RELEASE);
		pthread_kill(v->thread, SIGUSR1);
	}
}

void vm_pause(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	if (!vm->paused) {
		__atomic_store_n(&vm->paused, true, __ATOMIC_RELEASE);
		kick_vcpus(vm);
		while (vm->parked < vm->nr_vcpus && !vm_stopping(vm))
			pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	}
	pthread_mutex_unlock(&vm->pause_lock);
}

void vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	__atomic_store_n(&vm->paused, false, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
}

void vcpu_park_if_paused(struct vcpu *v)
{
	struct vm *vm = v->vm;
	if (!__atomic_load_n(&vm->paused, __ATOMIC_ACQUIRE))
		return;
	pthread_mutex_lock(&vm->pause_lock);
	vm->parked++;
	pthread_cond_broadcast(&vm->pause_cond);
	while (vm->paused && !vm_stopping(vm))
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	vm->parked--;
	pthread_mutex_unlock(&vm->pause_lock);
}

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		return;	/* only to kick a vCPU out of KVM_RUN */
	if (signal_vm)
		vm_request_exit(signal_vm, VM_QUIT, 128 + sig);
}

static void install_signals(struct vm *vm)
{
	signal_vm = vm;
	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* Only vCPU threads take SIGUSR1; they unblock it themselves. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
}

int vm_run(struct vm *vm)
{
	exit_efd = eventfd(0, EFD_CLOEXEC);
	if (exit_efd < 0)
		return err_errno("eventfd");
	install_signals(vm);
	/* glibc reads /etc/localtime on the first gmtime_r (the RTC's); do it while files may be opened. */
	tzset();
	/* Set-up is over: from here on only the allowlisted syscalls. */
	if (!vm->cfg.no_seccomp && seccomp_install(vm->cfg.needs_files) < 0)
		return -1;
	if (term_init(vm) < 0 || evloop_start(vm->loop) < 0)
		return -1;
	for (int i = 0; i < vm->nr_vcpus; i++) {
		if (pthread_create(&vm->vcpus[i].thread, NULL, vcpu_thread, &vm->vcpus[i])) {
			vm_request_exit(vm, VM_ERROR, 1);
			err_set("cannot start vCPU thread %d", i);
			break;
		}
	}
	while (!vm_stopping(vm)) {
		uint64_t v;
		if (read(exit_efd, &v, sizeof(v)) < 0 && errno != EINTR)
			break;
	}
	/* Wake parked vCPUs, kick running ones out of KVM_RUN, wait for all. */
	pthread_mutex_lock(&vm->pause_lock);
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
	kick_vcpus(vm);
	for (int i = 0; i < vm->nr_vcpus; i++)
		if (vm->vcpus[i].thread)
			pthread_join(vm->vcpus[i].thread, NULL);
	evloop_stop(vm->loop);
	for (int i = 0; i < vm->nr_exit_hooks; i++)
		vm->exit_hooks[i].fn(vm->exit_hooks[i].ctx);
	term_restore();
	return __atomic_load_n(&vm->exit_status, __ATOMIC_ACQUIRE);
}

int vm_on_exit(struct vm *vm, void (*fn)(void *ctx), void *ctx)
{
	if (vm->nr_exit_hooks == (int)ARRAY_SIZE(vm->exit_hooks))
		return err_set("too many exit hooks");
	vm->exit_hooks[vm->nr_exit_hooks].fn = fn;
	vm->exit_hooks[vm->nr_exit_hooks++].ctx = ctx;
	return 0;
}

void vm_destroy(struct vm *vm)
{
	term_restore();
	control_stop(vm);
	for (int i = 0; vm->vcpus && i < vm->nr_vcpus; i++) {
		if (vm->vcpus[i].run)
			munmap(vm->vcpus[i].run, vm->vcpus[i].run_size);
		if (vm->vcpus[i].fd >= 0)
			close(vm->vcpus[i].fd);
	}
	free(vm->vcpus);
	vm->vcpus = NULL;
	if (vm->loop)
		evloop_free(vm->loop);
	vm->loop = NULL;
	guest_mem_free(&vm->mem);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->sys_fd >= 0)
		close(vm->sys_fd);
	vm->vm_fd = vm->sys_fd = -1;
	free(vm->routing);
	vm->routing = NULL;
}
