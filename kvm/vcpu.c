/* vCPU threads: KVM_RUN and exit dispatch by address, never by device. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include "seccomp.h"
#include "util.h"
#include "vm.h"

int vcpu_create(struct vm *vm, struct vcpu *v, int id)
{
	v->vm = vm;
	v->id = id;
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, id);
	if (v->fd < 0)
		return err_errno("KVM_CREATE_VCPU %d", id);
	int sz = ioctl(vm->sys_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (sz <= 0)
		return err_errno("KVM_GET_VCPU_MMAP_SIZE");
	v->run_size = sz;
	v->run = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED)
		return err_errno("mmap vcpu %d", id);
	return vm->arch && vm->arch->vcpu_init ? vm->arch->vcpu_init(v) : 0;
}

static void dump_seg(FILE *out, const char *n, const struct kvm_segment *s)
{
	fprintf(out, " %-3s %04x base %016llx limit %08x type %x dpl %d p %d l %d db %d\r\n", n, s->selector,
		(unsigned long long)s->base, s->limit, s->type, s->dpl, s->present, s->l, s->db);
}

void vcpu_dump(struct vcpu *v, FILE *out)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 || ioctl(v->fd, KVM_GET_SREGS, &s) < 0) {
		fprintf(out, "lkvm: vCPU %d: cannot read registers: %s\r\n", v->id, strerror(errno));
		return;
	}
	fprintf(out, "lkvm: vCPU %d registers:\r\n", v->id);
	fprintf(out, " rip %016llx rflags %08llx rsp %016llx rbp %016llx\r\n", r.rip, r.rflags, r.rsp, r.rbp);
	fprintf(out, " rax %016llx rbx %016llx rcx %016llx rdx %016llx\r\n", r.rax, r.rbx, r.rcx, r.rdx);
	fprintf(out, " rsi %016llx rdi %016llx r8  %016llx r9  %016llx\r\n", r.rsi, r.rdi, r.r8, r.r9);
	fprintf(out, " r10 %016llx r11 %016llx r12 %016llx r13 %016llx\r\n", r.r10, r.r11, r.r12, r.r13);
	fprintf(out, " r14 %016llx r15 %016llx\r\n", r.r14, r.r15);
	fprintf(out, " cr0 %016llx cr2 %016llx cr3 %016llx cr4 %016llx efer %llx\r\n", s.cr0, s.cr2, s.cr3, s.cr4,
		s.efer);
	dump_seg(out, "cs", &s.cs);
	dump_seg(out, "ss", &s.ss);
	dump_seg(out, "ds", &s.ds);
	dump_seg(out, "tr", &s.tr);
	fprintf(out, " gdt %016llx/%x idt %016llx/%x\r\n", s.gdt.base, s.gdt.limit, s.idt.base, s.idt.limit);
	/* Code bytes at rip when it maps 1:1 (paging off or identity-mapped low memory). */
	uint64_t lin = s.cs.base + r.rip;
	const uint8_t *code = guest_ptr(&v->vm->mem, lin, 16);
	if (code && !(s.cr0 & 0x80000000ULL)) {
		fprintf(out, " code:");
		for (int i = 0; i < 16; i++)
			fprintf(out, " %02x", code[i]);
		fprintf(out, "\r\n");
	}
}

static void handle_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool wr = run->io.direction == KVM_EXIT_IO_OUT;
	for (uint32_t i = 0; i < run->io.count; i++) {
		bus_access(&v->vm->pio, run->io.port, data, run->io.size, wr);
		data += run->io.size;
	}
	if (wr)
		v->pio_writes += run->io.count;
	else
		v->pio_reads += run->io.count;
	v->exits_io++;
}

int vcpu_set_guest_debug(struct vcpu *v, const struct kvm_guest_debug *dbg)
{
	if (ioctl(v->fd, KVM_SET_GUEST_DEBUG, dbg) < 0)
		return err_errno("vCPU %d: KVM_SET_GUEST_DEBUG", v->id);
	v->debug = *dbg;
	return 0;
}

bool vcpu_debug_event(struct vcpu *v, const struct kvm_debug_exit_arch *e)
{
	struct vm *vm = v->vm;
	return vm->debug_fn && vm->debug_fn(v, e, vm->debug_ctx);
}

/* KVM intercepted it for a debugger: a #DB or #BP that is not the debugger's goes back to the guest. */
static void handle_debug(struct vcpu *v)
{
	const struct kvm_debug_exit_arch *e = &v->run->debug.arch;
	if (vcpu_debug_event(v, e))
		return;
	pr_debug("vCPU %d: exception %u at 0x%llx (dr6 0x%llx) is the guest's own: given back", v->id, e->exception,
		 (unsigned long long)e->pc, (unsigned long long)e->dr6);
	struct kvm_guest_debug d = v->debug;
	d.control |= e->exception == 3 ? KVM_GUESTDBG_INJECT_BP : KVM_GUESTDBG_INJECT_DB;
	if (ioctl(v->fd, KVM_SET_GUEST_DEBUG, &d) < 0)
		pr_warn_once("vCPU %d: cannot give the guest its own exception %u back: %s", v->id, e->exception,
			     strerror(errno));
}

static int handle_internal_error(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	const struct vm_arch *arch = v->vm->arch;
	int r = 1;
	if (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION && arch && arch->emulation_failure)
		r = arch->emulation_failure(v);
	if (r == 0)
		return 0;
	if (r < 0) {
		fprintf(stderr, "lkvm: vCPU %d: %s\r\n", v->id, err_msg());
	} else {
		fprintf(stderr, "lkvm: vCPU %d: KVM internal error, suberror %u", v->id, run->internal.suberror);
		if (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION) {
			fprintf(stderr, " (emulation failure)");
			if (run->emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) {
				fprintf(stderr, ", instruction bytes:");
				for (unsigned i = 0; i < run->emulation_failure.insn_size && i < 15; i++)
					fprintf(stderr, " %02x", run->emulation_failure.insn_bytes[i]);
			}
		} else {
			for (unsigned i = 0; i < run->internal.ndata && i < 16; i++)
				fprintf(stderr, " data[%u]=0x%llx", i, (unsigned long long)run->internal.data[i]);
		}
		fprintf(stderr, "\r\n");
	}
	vcpu_dump(v, stderr);
	return -1;
}

/* Whether the vCPU holds the state of a reset (CS:IP f000:fff0), as KVM on AMD leaves it after a shutdown. */
static bool vcpu_at_reset(struct vcpu *v)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	return ioctl(v->fd, KVM_GET_REGS, &r) == 0 && ioctl(v->fd, KVM_GET_SREGS, &s) == 0 && r.rip == 0xfff0 &&
	       s.cs.selector == 0xf000 && s.cs.base == 0xffff0000;
}

void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	struct vm *vm = v->vm;
	char name[16];
	snprintf(name, sizeof(name), "lkvm-vcpu-%d", v->id);
	pthread_setname_np(pthread_self(), name);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	if (!vm->cfg.no_seccomp && seccomp_narrow_vcpu() < 0) {
		fprintf(stderr, "lkvm: vCPU %d: %s\r\n", v->id, err_msg());
		vm_request_exit(vm, VM_ERROR, 2);
		return NULL;
	}

	bool io_done = true;	/* false while KVM has yet to complete the last exit's I/O */
	while (!vm_stopping(vm)) {
		if (io_done)
			vcpu_park_if_paused(v);
		else if (vcpu_must_park(v))	/* guest state is whole only then: complete it, run nothing */
			__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_RELEASE);
		io_done = true;
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_RELEASE);
				continue;
			}
			err_errno("vCPU %d: KVM_RUN", v->id);
			fprintf(stderr, "lkvm: %s\r\n", err_msg());
			vm_request_exit(vm, VM_ERROR, 1);
			break;
		}
		v->exits++;
		struct kvm_run *run = v->run;
		switch (run->exit_reason) {
		case KVM_EXIT_IO:
			handle_io(v);
			io_done = false;
			break;
		case KVM_EXIT_MMIO:
			bus_access(&vm->mmio, run->mmio.phys_addr, run->mmio.data, run->mmio.len, run->mmio.is_write);
			if (run->mmio.is_write)
				v->mmio_writes++;
			else
				v->mmio_reads++;
			v->exits_mmio++;
			io_done = false;
			break;
		case KVM_EXIT_DEBUG:
			handle_debug(v);
			break;
		case KVM_EXIT_HLT:
			/* Without an in-kernel LAPIC a halted CPU has nothing to wake it. */
			break;
		case KVM_EXIT_INTR:
			break;
		case KVM_EXIT_SHUTDOWN:
			fprintf(stderr, "lkvm: vCPU %d: triple fault (KVM_EXIT_SHUTDOWN)\r\n", v->id);
			vcpu_dump(v, stderr);
			if (vcpu_at_reset(v))
				fprintf(stderr, "lkvm: vCPU %d: these are the registers of a CPU just reset: KVM on AMD "
					"re-initialises a vCPU at a triple fault, so where the guest was is lost\r\n", v->id);
			vm_request_exit(vm, VM_ERROR, 2);
			break;
		case KVM_EXIT_INTERNAL_ERROR:
			if (handle_internal_error(v) < 0)
				vm_request_exit(vm, VM_ERROR, 2);
			break;
		case KVM_EXIT_FAIL_ENTRY:
			fprintf(stderr, "lkvm: vCPU %d: VM entry failed, reason 0x%llx\r\n", v->id,
				(unsigned long long)run->fail_entry.hardware_entry_failure_reason);
			vcpu_dump(v, stderr);
			vm_request_exit(vm, VM_ERROR, 2);
			break;
		case KVM_EXIT_SYSTEM_EVENT:
			if (run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN)
				vm_request_exit(vm, VM_POWEROFF, 0);
			else if (run->system_event.type == KVM_SYSTEM_EVENT_RESET)
				vm_request_exit(vm, VM_RESET, 0);
			else {
				fprintf(stderr, "lkvm: vCPU %d: system event %u\r\n", v->id, run->system_event.type);
				vm_request_exit(vm, VM_ERROR, 2);
			}
			break;
		default:
			fprintf(stderr, "lkvm: vCPU %d: unexpected exit reason %u\r\n", v->id, run->exit_reason);
			vcpu_dump(v, stderr);
			vm_request_exit(vm, VM_ERROR, 2);
			break;
		}
	}
	return NULL;
}
