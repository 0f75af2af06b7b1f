/*
 * The floor for exit cost on this host: the least a VMM can do per exit. One
 * vCPU, 1 MiB of RAM, the flat guest at 0x10000 in real mode; every port or
 * MMIO exit is counted and resumed, a write to port 0xf4 stops.
 * usage: bare_kvm GUEST.bin   (prints: exits N seconds S)
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static void die(const char *m) { perror(m); exit(1); }

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: bare_kvm GUEST.bin\n");
		return 2;
	}
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) die("/dev/kvm");
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0) die("KVM_CREATE_VM");
	ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000);
	size_t size = 1 << 20;
	uint8_t *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	FILE *f = fopen(argv[1], "rb");
	if (!f) die(argv[1]);
	size_t n = fread(mem + 0x10000, 1, size - 0x10000, f);
	fclose(f);
	if (!n) die("empty guest");
	struct kvm_userspace_memory_region r = { .slot = 0, .memory_size = size, .userspace_addr = (uintptr_t)mem };
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0) die("KVM_SET_USER_MEMORY_REGION");
	int cpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (cpu < 0) die("KVM_CREATE_VCPU");
	struct kvm_run *run = mmap(NULL, ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0), PROT_READ | PROT_WRITE, MAP_SHARED, cpu, 0);
	struct kvm_sregs s;
	ioctl(cpu, KVM_GET_SREGS, &s);
	s.cs.selector = 0x1000; s.cs.base = 0x10000;
	s.ds = s.es = s.ss = s.cs;
	s.ds.type = s.es.type = s.ss.type = 3;
	ioctl(cpu, KVM_SET_SREGS, &s);
	struct kvm_regs regs = { .rip = 0, .rsp = 0xfff0, .rflags = 2 };
	ioctl(cpu, KVM_SET_REGS, &regs);
	unsigned long exits = 0;
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (;;) {
		if (ioctl(cpu, KVM_RUN, 0) < 0) die("KVM_RUN");
		if (run->exit_reason == KVM_EXIT_IO && run->io.port == 0xf4)
			break;
		if (run->exit_reason != KVM_EXIT_IO && run->exit_reason != KVM_EXIT_MMIO) {
			fprintf(stderr, "unexpected exit %u\n", run->exit_reason);
			return 1;
		}
		exits++;
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	printf("exits %lu seconds %.6f\n", exits, (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9);
	return 0;
}
