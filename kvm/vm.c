/* A VM's life as KVM sees it: /dev/kvm checks, RAM slots, vCPU threads, pause and exit. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include "device.h"
#include "evloop.h"
#include "util.h"
#include "vm.h"

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
		if (errno == ENODEV || errno == ENXIO)
			return err_set("/dev/kvm: no KVM behind it (the module is not bound on this host)");
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

void *vm_config_part(struct vm_config *cfg, const void *owner, size_t size)
{
	void *found = vm_config_find(cfg, owner);
	if (found)
		return found;
	struct cfg_part *p = xcalloc(1, sizeof(*p));
	p->owner = owner;
	p->data = xcalloc(1, size ? size : 1);
	p->next = cfg->parts;
	cfg->parts = p;
	return p->data;
}

void *vm_config_find(const struct vm_config *cfg, const void *owner)
{
	for (struct cfg_part *p = cfg->parts; p; p = p->next)
		if (p->owner == owner)
			return p->data;
	return NULL;
}

void vm_config_free(struct vm_config *cfg)
{
	free(cfg->args);	/* the strings are kept option text */
	cfg->args = NULL;
	cfg->nr_args = 0;
	while (cfg->parts) {
		struct cfg_part *p = cfg->parts;
		cfg->parts = p->next;
		free(p->data);
		free(p);
	}
}

int vm_create(struct vm *vm, const struct vm_config *cfg)
{
	memset(vm, 0, sizeof(*vm));
	vm->cfg = *cfg;
	vm->sys_fd = vm->vm_fd = vm->exit_efd = -1;
	vm->nr_vcpus = cfg->nr_cpus;
	vm->irq = &kvm_irq_ops;
	pthread_mutex_init(&vm->irq_lock, NULL);
	pthread_mutex_init(&vm->pause_lock, NULL);
	pthread_cond_init(&vm->pause_cond, NULL);
	bus_init(&vm->pio, "pio");
	bus_init(&vm->mmio, "mmio");
	vm->pio.log_unhandled = vm->mmio.log_unhandled = cfg->debug_ioport;
	if ((vm->exit_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
		return err_errno("eventfd");
	if (!(vm->loop = evloop_new()))
		return -1;

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
	return 0;
}

int vm_add_ram(struct vm *vm, uint64_t hole_start, uint64_t hole_end)
{
	if (guest_mem_alloc(&vm->mem, vm->cfg.ram_size, hole_start, hole_end) < 0)
		return -1;
	/* Huge pages by default, as QEMU and Cloud Hypervisor ask: with nested paging a guest's TLB
	 * miss walks the host's tables too, fewer and shorter with 2 MiB pages. A snapshot's RAM is a
	 * file mapping, left as it is. */
	if (!vm->cfg.ram_file && guest_mem_thp(&vm->mem, !vm->cfg.no_thp) < 0)
		return -1;
	if (vm->cfg.ram_file && guest_mem_map_file(&vm->mem, vm->cfg.ram_file) < 0)
		return -1;
	for (int i = 0; i < vm->mem.nr; i++) {
		struct kvm_userspace_memory_region r = {
			.slot = i, .guest_phys_addr = vm->mem.r[i].gpa, .memory_size = vm->mem.r[i].size,
			.userspace_addr = (uintptr_t)vm->mem.r[i].host,
		};
		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
			return err_errno("KVM_SET_USER_MEMORY_REGION (%llu MiB)", (unsigned long long)(r.memory_size >> 20));
	}
	return 0;
}

int vm_create_vcpus(struct vm *vm)
{
	vm->vcpus = xcalloc(vm->nr_vcpus, sizeof(*vm->vcpus));
	for (int i = 0; i < vm->nr_vcpus; i++)
		vm->vcpus[i].fd = -1;
	for (int i = 0; i < vm->nr_vcpus; i++)
		if (vcpu_create(vm, &vm->vcpus[i], i) < 0)
			return -1;
	return 0;
}

bool vm_stopping(struct vm *vm)
{
	return __atomic_load_n(&vm->exit_reason, __ATOMIC_ACQUIRE) != VM_RUNNING;
}

int vm_exit_status(struct vm *vm)
{
	return __atomic_load_n(&vm->exit_status, __ATOMIC_ACQUIRE);
}

void vm_request_exit(struct vm *vm, enum vm_exit_reason why, int status)
{
	int expected = VM_RUNNING;
	/* The first reason wins: a reset after a poweroff changes nothing. */
	if (__atomic_compare_exchange_n(&vm->exit_reason, &expected, (int)why, false, __ATOMIC_ACQ_REL,
					__ATOMIC_ACQUIRE))
		__atomic_store_n(&vm->exit_status, status, __ATOMIC_RELEASE);
	uint64_t one = 1;
	if (vm->exit_efd >= 0 && write(vm->exit_efd, &one, sizeof(one)) < 0) {}
}

static void kick_vcpus(struct vm *vm)
{
	for (int i = 0; vm->vcpus && i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		if (!v->running)
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

void vm_hold(struct vm *vm, bool wait)
{
	pthread_mutex_lock(&vm->pause_lock);
	for (int i = 0; vm->vcpus && i < vm->nr_vcpus; i++)
		__atomic_store_n(&vm->vcpus[i].held, true, __ATOMIC_RELEASE);
	kick_vcpus(vm);
	while (wait && vm->parked < vm->nr_vcpus && !vm_stopping(vm))
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	pthread_mutex_unlock(&vm->pause_lock);
}

void vm_release(struct vm *vm, int id)
{
	pthread_mutex_lock(&vm->pause_lock);
	for (int i = 0; vm->vcpus && i < vm->nr_vcpus; i++)
		if (id < 0 || id == i)
			__atomic_store_n(&vm->vcpus[i].held, false, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
}

bool vcpu_must_park(struct vcpu *v)
{
	return __atomic_load_n(&v->vm->paused, __ATOMIC_ACQUIRE) || __atomic_load_n(&v->held, __ATOMIC_ACQUIRE);
}

void vcpu_park_if_paused(struct vcpu *v)
{
	struct vm *vm = v->vm;
	if (!vcpu_must_park(v))
		return;
	pthread_mutex_lock(&vm->pause_lock);
	vm->parked++;
	pthread_cond_broadcast(&vm->pause_cond);
	while ((vm->paused || v->held) && !vm_stopping(vm))
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	vm->parked--;
	pthread_mutex_unlock(&vm->pause_lock);
}

static void on_kick(int sig)
{
	(void)sig;	/* only to interrupt KVM_RUN; immediate_exit says why */
}

int vm_start_vcpus(struct vm *vm)
{
	/* vCPU threads unblock SIGUSR1 for themselves: the runner blocks it everywhere else. */
	struct sigaction sa = { .sa_handler = on_kick };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	for (int i = 0; i < vm->nr_vcpus; i++) {
		if (pthread_create(&vm->vcpus[i].thread, NULL, vcpu_thread, &vm->vcpus[i])) {
			vm_request_exit(vm, VM_ERROR, 1);
			return err_set("cannot start vCPU thread %d", i);
		}
		vm->vcpus[i].running = true;
	}
	return 0;
}

void vm_stop_vcpus(struct vm *vm)
{
	if (!vm_stopping(vm))
		vm_request_exit(vm, VM_QUIT, 0);
	/* Wake parked vCPUs, kick running ones out of KVM_RUN, wait for all. */
	pthread_mutex_lock(&vm->pause_lock);
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
	kick_vcpus(vm);
	for (int i = 0; vm->vcpus && i < vm->nr_vcpus; i++) {
		if (vm->vcpus[i].running)
			pthread_join(vm->vcpus[i].thread, NULL);
		vm->vcpus[i].running = false;
	}
}

void vm_destroy(struct vm *vm)
{
	vm_stop_vcpus(vm);
	if (vm->loop)
		evloop_stop(vm->loop);
	devices_destroy(vm);
	for (int i = 0; vm->vcpus && i < vm->nr_vcpus; i++) {
		if (vm->vcpus[i].run)
			munmap(vm->vcpus[i].run, vm->vcpus[i].run_size);
		if (vm->vcpus[i].fd >= 0)
			close(vm->vcpus[i].fd);
	}
	free(vm->vcpus);
	vm->vcpus = NULL;
	evloop_free(vm->loop);
	vm->loop = NULL;
	guest_mem_free(&vm->mem);
	bus_destroy(&vm->pio);
	bus_destroy(&vm->mmio);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->sys_fd >= 0)
		close(vm->sys_fd);
	if (vm->exit_efd >= 0)
		close(vm->exit_efd);
	vm->vm_fd = vm->sys_fd = vm->exit_efd = -1;
	free(vm->routing);
	vm->routing = NULL;
}
