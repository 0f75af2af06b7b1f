/*
 * The start-up floor on this host: the least a VMM can do to run the PVH
 * guest (pvh.S) from start to exit. Open /dev/kvm, one VM, one memory slot,
 * one vCPU; load the ELF's PT_LOAD segments, enter at its Xen PVH note's
 * 32-bit entry in protected mode with paging off, copy UART bytes to stdout
 * and stop at the first write to port 0xf4. No irqchip, no threads, no
 * devices: what lkvm does beyond this is its own start-up and teardown.
 * With "irqchip", also KVM_CREATE_IRQCHIP (the in-kernel PIC, IOAPIC and local
 * APIC every PC board needs; its teardown is part of what lkvm pays at exit).
 * usage: floor_pvh GUEST.elf [irqchip]
 */
#include <elf.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MEM (2u << 20)	/* the guest lives at 1 MiB */

static void die(const char *m) { perror(m); exit(1); }

/* The XEN_ELFNOTE_PHYS32_ENTRY address, 0 if the ELF has none. */
static uint32_t pvh_entry(const uint8_t *img, size_t len)
{
	const Elf64_Ehdr *eh = (const void *)img;
	for (int i = 0; i < eh->e_phnum; i++) {
		const Elf64_Phdr *ph = (const void *)(img + eh->e_phoff + i * eh->e_phentsize);
		if (ph->p_type != PT_NOTE || ph->p_offset + ph->p_filesz > len)
			continue;
		for (size_t o = 0; o + 12 <= ph->p_filesz;) {
			const uint32_t *n = (const void *)(img + ph->p_offset + o);
			size_t name = (n[0] + 3) & ~3u, desc = (n[1] + 3) & ~3u;
			if (n[2] == 18 && n[1] >= 4 && !memcmp(n + 3, "Xen", 4))
				return *(const uint32_t *)((const uint8_t *)(n + 3) + name);
			o += 12 + name + desc;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	bool irqchip = argc == 3 && !strcmp(argv[2], "irqchip");
	if (argc != 2 && !irqchip) {
		fprintf(stderr, "usage: floor_pvh GUEST.elf [irqchip]\n");
		return 2;
	}
	int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		die(argv[1]);
	uint8_t *img = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (img == MAP_FAILED || st.st_size < (off_t)sizeof(Elf64_Ehdr) || memcmp(img, ELFMAG, SELFMAG))
		die("not an ELF");
	uint8_t *mem = mmap(NULL, MEM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	const Elf64_Ehdr *eh = (const void *)img;
	for (int i = 0; i < eh->e_phnum; i++) {
		const Elf64_Phdr *ph = (const void *)(img + eh->e_phoff + i * eh->e_phentsize);
		if (ph->p_type == PT_LOAD && ph->p_paddr + ph->p_memsz <= MEM && ph->p_filesz <= ph->p_memsz &&
		    ph->p_offset + ph->p_filesz <= (uint64_t)st.st_size)
			memcpy(mem + ph->p_paddr, img + ph->p_offset, ph->p_filesz);
	}
	uint32_t entry = pvh_entry(img, st.st_size);
	if (!entry) {
		fprintf(stderr, "%s: no PVH entry note\n", argv[1]);
		return 1;
	}

	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) die("/dev/kvm");
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0) die("KVM_CREATE_VM");
	if (irqchip && ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0) die("KVM_CREATE_IRQCHIP");
	struct kvm_userspace_memory_region r = { .slot = 0, .memory_size = MEM, .userspace_addr = (uintptr_t)mem };
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0) die("KVM_SET_USER_MEMORY_REGION");
	int cpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (cpu < 0) die("KVM_CREATE_VCPU");
	struct kvm_run *run = mmap(NULL, ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0), PROT_READ | PROT_WRITE, MAP_SHARED, cpu, 0);
	if (run == MAP_FAILED) die("mmap kvm_run");
	/* The PVH boot state: flat 32-bit segments, CR0.PE, paging off. */
	struct kvm_sregs s;
	if (ioctl(cpu, KVM_GET_SREGS, &s) < 0) die("KVM_GET_SREGS");
	struct kvm_segment flat = { .base = 0, .limit = 0xffffffff, .selector = 0x10, .type = 3, .present = 1,
				    .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1 };
	s.ds = s.es = s.fs = s.gs = s.ss = flat;
	flat.selector = 0x8;
	flat.type = 0xb;
	s.cs = flat;
	s.cr0 = 0x11;	/* PE, ET */
	s.cr4 = 0;
	s.efer = 0;
	if (ioctl(cpu, KVM_SET_SREGS, &s) < 0) die("KVM_SET_SREGS");
	struct kvm_regs regs = { .rip = entry, .rflags = 2 };
	if (ioctl(cpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");
	for (;;) {
		if (ioctl(cpu, KVM_RUN, 0) < 0) die("KVM_RUN");
		if (run->exit_reason != KVM_EXIT_IO) {
			fprintf(stderr, "unexpected exit %u\n", run->exit_reason);
			return 1;
		}
		if (run->io.port == 0xf4)
			return 0;
		if (run->io.port == 0x3f8 && run->io.direction == KVM_EXIT_IO_OUT &&
		    write(1, (uint8_t *)run + run->io.data_offset, run->io.size) < 0)
			die("stdout");
	}
}
