/*
 * x86/emulate_kvm.c, the KVM glue of the instruction emulator, against a fake
 * vCPU: the test is linked with -Wl,--wrap=ioctl (Makefile) and answers the
 * glue's ioctls on one fake fd from the registers, segments, FPU state, MSRs
 * and pending events below, with KVM_TRANSLATE a fixed map; guest memory is a
 * real struct guest_mem and MMIO a device on the VM's bus. Each instruction
 * the emulator handles runs through emulate_kvm_exit() as an emulation-failure
 * exit, and the test checks what KVM would be told: registers, flags, memory,
 * segments, the dropped #UD.
 */
#include <errno.h>
#include <stdarg.h>
#include <sys/ioctl.h>
#include <linux/kvm.h>
#include "bus.h"
#include "e820.h"
#include "emulate.h"
#include "guest_mem.h"
#include "util.h"
#include "vm.h"
#include "test.h"

#define FAKE_FD 4093	/* no real fd: every other ioctl goes to the kernel */
#define MMIO_BASE 0xd0000000ULL
#define HOLE 0x300000ULL	/* a linear page KVM_TRANSLATE says is not mapped */
#define KERNEL_MAP 0xffffffff80000000ULL	/* linear KERNEL_MAP + x is physical x */

static struct vm vm;
static struct vcpu vcpu;
static struct kvm_run run;
static struct kvm_regs regs;
static struct kvm_sregs sregs;
static struct kvm_fpu fpu;
static struct kvm_vcpu_events events;
static uint64_t tsc, tsc_aux;
static bool tsc_aux_readable;
static unsigned long fail_request;	/* this ioctl fails with EIO */
static int set_regs, set_sregs, set_fpu, set_events, unknown_ioctls, msr_indexes_ok;

int __real_ioctl(int fd, unsigned long request, ...);

static bool fake_translate(uint64_t lin, uint64_t *gpa)
{
	if (lin >= HOLE && lin < HOLE + 0x1000)
		return false;
	*gpa = lin >= KERNEL_MAP ? lin - KERNEL_MAP : lin;
	return lin >= KERNEL_MAP || lin < 0x100000000ULL;
}

int __wrap_ioctl(int fd, unsigned long request, ...)
{
	va_list ap;
	va_start(ap, request);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	if (fd != FAKE_FD)
		return __real_ioctl(fd, request, arg);
	if (request == fail_request) {
		errno = EIO;
		return -1;
	}
	switch (request) {
	case KVM_GET_REGS: *(struct kvm_regs *)arg = regs; return 0;
	case KVM_SET_REGS: regs = *(struct kvm_regs *)arg; set_regs++; return 0;
	case KVM_GET_SREGS: *(struct kvm_sregs *)arg = sregs; return 0;
	case KVM_SET_SREGS: sregs = *(struct kvm_sregs *)arg; set_sregs++; return 0;
	case KVM_GET_FPU: *(struct kvm_fpu *)arg = fpu; return 0;
	case KVM_SET_FPU: fpu = *(struct kvm_fpu *)arg; set_fpu++; return 0;
	case KVM_GET_VCPU_EVENTS: *(struct kvm_vcpu_events *)arg = events; return 0;
	case KVM_SET_VCPU_EVENTS: events = *(struct kvm_vcpu_events *)arg; set_events++; return 0;
	case KVM_TRANSLATE: {
		struct kvm_translation *t = arg;
		uint64_t gpa = 0;
		t->valid = fake_translate(t->linear_address, &gpa);
		t->physical_address = gpa;
		return 0;
	}
	case KVM_GET_MSRS: {
		/* As KVM: the number of MSRs read, stopping at the first it cannot. */
		struct kvm_msrs *m = arg;
		unsigned i = 0;
		for (; i < m->nmsrs; i++) {
			if (m->entries[i].index == 0x10)
				m->entries[i].data = tsc;
			else if (m->entries[i].index == 0xc0000103 && tsc_aux_readable)
				m->entries[i].data = tsc_aux;
			else
				break;
		}
		msr_indexes_ok = m->nmsrs == 2 && m->entries[0].index == 0x10 && m->entries[1].index == 0xc0000103;
		return i;
	}
	}
	unknown_ioctls++;
	errno = ENOTTY;
	return -1;
}

/* A device at MMIO_BASE: 4 KiB of registers that remember what was written; accesses counted. */
static uint8_t dev[0x1000];
static int dev_reads, dev_writes, dev_last_len;

static void dev_read(void *ctx, uint64_t off, void *data, int len)
{
	memcpy(data, dev + off, len);
	dev_reads++;
	dev_last_len = len;
}

static void dev_write(void *ctx, uint64_t off, const void *data, int len)
{
	memcpy(dev + off, data, len);
	dev_writes++;
	dev_last_len = len;
}

static const struct bus_ops dev_ops = { .read = dev_read, .write = dev_write };

static uint8_t *ram(uint64_t gpa) { return guest_ptr(&vm.mem, gpa, 1); }

static void put64(uint64_t gpa, uint64_t v) { memcpy(ram(gpa), &v, 8); }
static uint64_t get64(uint64_t gpa) { uint64_t v; memcpy(&v, ram(gpa), 8); return v; }

static void setup(void)
{
	static bool once;
	if (!once) {
		once = true;
		CHECK_EQ(guest_mem_alloc(&vm.mem, MiB(16), PCI_HOLE_START, PCI_HOLE_END), 0);
		bus_init(&vm.pio, "pio");
		bus_init(&vm.mmio, "mmio");
		CHECK_EQ(bus_register(&vm.mmio, MMIO_BASE, sizeof(dev), &dev_ops, NULL, "test-dev"), 0);
		vcpu.vm = &vm;
		vcpu.fd = FAKE_FD;
		vcpu.run = &run;
	}
	memset(vm.mem.base, 0, MiB(16));
	memset(dev, 0, sizeof(dev));
	memset(&regs, 0, sizeof(regs));
	memset(&sregs, 0, sizeof(sregs));
	memset(&fpu, 0, sizeof(fpu));
	memset(&events, 0, sizeof(events));
	dev_reads = dev_writes = set_regs = set_sregs = set_fpu = set_events = unknown_ioctls = 0;
	fail_request = 0;
	tsc_aux_readable = true;
	vcpu.exits_emulated = 0;
	regs.rflags = 0x202;	/* IF and the always-one bit */
}

/* 64-bit mode at CPL 0, identity-mapped below 16 MiB (2 MiB pages: PML4 0x1000, PDPT 0x2000, PD 0x3000). */
static void long_mode(void)
{
	setup();
	put64(0x1000, 0x2003);
	put64(0x2000, 0x3003);
	for (int i = 0; i < 8; i++)
		put64(0x3000 + 8 * i, (uint64_t)i << 21 | 0x83);
	sregs.cr0 = 0x80050033;
	sregs.cr3 = 0x1000;
	sregs.cr4 = 0x20;
	sregs.efer = 0x500;
	sregs.cs = (struct kvm_segment){ .selector = 0x08, .limit = 0xffffffff, .type = 0xb, .present = 1, .s = 1, .l = 1, .g = 1 };
	sregs.ss = (struct kvm_segment){ .selector = 0x10, .limit = 0xffffffff, .type = 3, .present = 1, .s = 1, .db = 1, .g = 1 };
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss;
	sregs.ds.base = 0x5000000;	/* ignored in 64-bit mode */
	regs.rip = 0x100000;
	regs.rsp = 0x80000;
}

/* 32-bit protected mode, flat except DS (base 0x10000), with a GDT at 0x20000. */
static void protected_mode(void)
{
	setup();
	sregs.cr0 = 0x11;
	sregs.cs = (struct kvm_segment){ .selector = 0x08, .limit = 0xffffffff, .type = 0xb, .present = 1, .s = 1, .db = 1, .g = 1 };
	sregs.ss = (struct kvm_segment){ .selector = 0x10, .limit = 0xffffffff, .type = 3, .present = 1, .s = 1, .db = 1, .g = 1 };
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss;
	sregs.ds.base = 0x10000;
	sregs.gdt.base = 0x20000;
	sregs.gdt.limit = 0x3f;
	put64(0x20000 + 0x08, 0x00cf9a000000ffffULL);	/* ring 0 code */
	put64(0x20000 + 0x10, 0x00cf92000000ffffULL);	/* ring 0 data */
	put64(0x20000 + 0x18, 0x00cffa000000ffffULL);	/* ring 3 code */
	put64(0x20000 + 0x20, 0x00cff2000000ffffULL);	/* ring 3 data */
	put64(0x20000 + 0x28, 0x00009a030000ffffULL);	/* ring 0 16-bit code, base 0x30000 */
	put64(0x20000 + 0x30, 0x00cf92000000ffffULL & ~(1ULL << 47));	/* not present */
	regs.rip = 0x100000;
	regs.rsp = 0x70000;
}

/* One emulation-failure exit. With bytes, KVM supplies them; with NULL, the glue reads them at CS:RIP. */
static int exit_with(const void *bytes, int n)
{
	memset(&run, 0, sizeof(run));
	run.exit_reason = KVM_EXIT_INTERNAL_ERROR;
	run.emulation_failure.suberror = KVM_INTERNAL_ERROR_EMULATION;
	if (bytes) {
		run.emulation_failure.flags = KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES;
		run.emulation_failure.insn_size = n;
		memcpy(run.emulation_failure.insn_bytes, bytes, n);
	}
	/* KVM queues a #UD with the failure. */
	events.exception.injected = 1;
	events.exception.nr = 6;
	return emulate_kvm_exit(&vcpu);
}

#define RUN(...) ({ static const uint8_t b_[] = { __VA_ARGS__ }; exit_with(b_, sizeof(b_)); })
#define ARITH (EMU_RFLAGS_CF | EMU_RFLAGS_PF | EMU_RFLAGS_AF | EMU_RFLAGS_ZF | EMU_RFLAGS_SF | EMU_RFLAGS_OF)

/* What every emulated instruction leaves: RIP past it, #UD dropped, one emulated exit counted. */
static void check_done(uint64_t rip)
{
	CHECK_EQ(regs.rip, rip);
	CHECK_EQ(events.exception.injected, 0);
	CHECK_EQ(events.exception.pending, 0);
	CHECK_EQ(vcpu.exits_emulated, 1);
	CHECK_EQ(unknown_ioctls, 0);
}

TEST(popcnt_lzcnt_tzcnt_registers)
{
	long_mode();
	/* popcnt rax, rbx: the count, every arithmetic flag cleared but ZF for a zero source. */
	regs.rbx = 0xf0f0000000000001ULL;
	regs.rflags = 0x202 | ARITH;
	CHECK_EQ(RUN(0xf3, 0x48, 0x0f, 0xb8, 0xc3), 0);
	CHECK_EQ(regs.rax, 9);
	CHECK_EQ(regs.rflags, 0x202);
	check_done(0x100005);
	CHECK_EQ(set_regs, 1);
	long_mode();
	regs.rax = 0x1234;
	CHECK_EQ(RUN(0xf3, 0x48, 0x0f, 0xb8, 0xc3), 0);
	CHECK_EQ(regs.rax, 0);
	CHECK_EQ(regs.rflags, 0x202 | EMU_RFLAGS_ZF);
	/* popcnt eax, ebx zero-extends; popcnt ax, bx merges. */
	long_mode();
	regs.rax = ~0ULL;
	regs.rbx = 0xffffffff00000007ULL;
	CHECK_EQ(RUN(0xf3, 0x0f, 0xb8, 0xc3), 0);
	CHECK_EQ(regs.rax, 3);
	long_mode();
	regs.rax = 0xaaaaaaaaaaaaaaaaULL;
	regs.rbx = 0xffff00ff;
	CHECK_EQ(RUN(0x66, 0xf3, 0x0f, 0xb8, 0xc3), 0);
	CHECK_EQ(regs.rax, 0xaaaaaaaaaaaa0008ULL);
	check_done(0x100005);
	/* popcnt r9, r10 (REX.R and REX.B). */
	long_mode();
	regs.r10 = 0xff;
	CHECK_EQ(RUN(0xf3, 0x4d, 0x0f, 0xb8, 0xca), 0);
	CHECK_EQ(regs.r9, 8);

	/* lzcnt: a zero source gives the width and CF; a top bit set gives 0 and ZF. */
	long_mode();
	regs.rbx = 1;
	CHECK_EQ(RUN(0xf3, 0x0f, 0xbd, 0xc3), 0);
	CHECK_EQ(regs.rax, 31);
	CHECK_EQ(regs.rflags & ARITH, 0);
	long_mode();
	regs.rbx = 0;
	CHECK_EQ(RUN(0xf3, 0x0f, 0xbd, 0xc3), 0);
	CHECK_EQ(regs.rax, 32);
	CHECK_EQ(regs.rflags & ARITH, EMU_RFLAGS_CF);
	long_mode();
	regs.rbx = 0x80000000;
	CHECK_EQ(RUN(0xf3, 0x0f, 0xbd, 0xc3), 0);
	CHECK_EQ(regs.rax, 0);
	CHECK_EQ(regs.rflags & ARITH, EMU_RFLAGS_ZF);
	long_mode();
	regs.rbx = 0x10;
	CHECK_EQ(RUN(0x66, 0xf3, 0x0f, 0xbd, 0xc3), 0);	/* lzcnt ax, bx */
	CHECK_EQ(regs.rax & 0xffff, 11);

	/* tzcnt rax, rbx: 64-bit width for zero. */
	long_mode();
	regs.rbx = 0x8000000000000000ULL;
	CHECK_EQ(RUN(0xf3, 0x48, 0x0f, 0xbc, 0xc3), 0);
	CHECK_EQ(regs.rax, 63);
	CHECK_EQ(regs.rflags & ARITH, 0);
	long_mode();
	CHECK_EQ(RUN(0xf3, 0x48, 0x0f, 0xbc, 0xc3), 0);
	CHECK_EQ(regs.rax, 64);
	CHECK_EQ(regs.rflags & ARITH, EMU_RFLAGS_CF);
	long_mode();
	regs.rbx = 1;
	CHECK_EQ(RUN(0xf3, 0x48, 0x0f, 0xbc, 0xc3), 0);
	CHECK_EQ(regs.rax, 0);
	CHECK_EQ(regs.rflags & ARITH, EMU_RFLAGS_ZF);
}

TEST(memory_operands)
{
	/* popcnt eax, [rbx]: RAM through KVM_TRANSLATE (a kernel-map address) and guest_ptr. */
	long_mode();
	put64(0x200000, 0x0101010101010101ULL);
	regs.rbx = KERNEL_MAP + 0x200000;
	CHECK_EQ(RUN(0xf3, 0x0f, 0xb8, 0x03), 0);
	CHECK_EQ(regs.rax, 4);	/* 32-bit operand: the low four bytes */
	check_done(0x100004);
	/* popcnt rax, [rip + 0x100]: RIP-relative, after the instruction. */
	long_mode();
	put64(0x100000 + 9 + 0x100, 0xff);
	CHECK_EQ(RUN(0xf3, 0x48, 0x0f, 0xb8, 0x05, 0x00, 0x01, 0x00, 0x00), 0);
	CHECK_EQ(regs.rax, 8);
	check_done(0x100009);
	/* lzcnt rcx, [rsi + rdi*4 + 8] with an FS base (the only bases 64-bit mode keeps, with GS). */
	long_mode();
	sregs.fs.base = 0x400000;
	regs.rsi = 0x1000;
	regs.rdi = 2;
	put64(0x400000 + 0x1000 + 8 + 8, 0x0000100000000000ULL);
	CHECK_EQ(RUN(0x64, 0xf3, 0x48, 0x0f, 0xbd, 0x4c, 0xbe, 0x08), 0);
	CHECK_EQ(regs.rcx, 19);
	/* tzcnt on MMIO: the device is read, with the operand's width. */
	long_mode();
	dev[0x10] = 0x00;
	dev[0x11] = 0x04;
	regs.rbx = MMIO_BASE + 0x10;
	CHECK_EQ(RUN(0x66, 0xf3, 0x0f, 0xbc, 0x03), 0);	/* tzcnt ax, [rbx] */
	CHECK_EQ(regs.rax & 0xffff, 10);
	CHECK_EQ(dev_reads, 1);
	CHECK_EQ(dev_last_len, 2);
	/* 32-bit mode: DS's base counts; [rbp] defaults to SS (flat here). */
	protected_mode();
	put64(0x10000 + 0x40, 0x3);
	regs.rbx = 0x40;
	CHECK_EQ(RUN(0xf3, 0x0f, 0xb8, 0x03), 0);
	CHECK_EQ(regs.rax, 2);
	protected_mode();
	put64(0x40, 0x7);
	regs.rbp = 0x40;
	CHECK_EQ(RUN(0xf3, 0x0f, 0xb8, 0x45, 0x00), 0);
	CHECK_EQ(regs.rax, 3);
	/* An operand KVM_TRANSLATE says is not mapped: refused, nothing written back. */
	long_mode();
	regs.rbx = HOLE + 8;
	regs.rax = 77;
	CHECK_EQ(RUN(0xf3, 0x0f, 0xb8, 0x03), -1);
	CHECK(strstr(err_msg(), "not mapped") != NULL);
	CHECK_EQ(set_regs, 0);
	CHECK_EQ(vcpu.exits_emulated, 0);
	CHECK_EQ(events.exception.injected, 1);	/* the #UD stays: the instruction did not run */
}

TEST(clac_stac)
{
	long_mode();
	regs.rflags = 0x202 | EMU_RFLAGS_AC | EMU_RFLAGS_CF;
	CHECK_EQ(RUN(0x0f, 0x01, 0xca), 0);
	CHECK_EQ(regs.rflags, 0x202 | EMU_RFLAGS_CF);
	check_done(0x100003);
	long_mode();
	CHECK_EQ(RUN(0x0f, 0x01, 0xcb), 0);
	CHECK_EQ(regs.rflags, 0x202 | EMU_RFLAGS_AC);
	check_done(0x100003);
}

TEST(xgetbv_rdtscp_rdpid)
{
	long_mode();
	regs.rax = regs.rdx = ~0ULL;
	CHECK_EQ(RUN(0x0f, 0x01, 0xd0), 0);	/* xgetbv, ecx = 0: XCR0 = x87 | SSE */
	CHECK_EQ(regs.rax, 3);
	CHECK_EQ(regs.rdx, 0);
	check_done(0x100003);
	long_mode();
	regs.rcx = 1;
	CHECK_EQ(RUN(0x0f, 0x01, 0xd0), -1);	/* other XCRs: refused */
	CHECK(strstr(err_msg(), "xgetbv") != NULL);
	CHECK_EQ(set_regs, 0);

	/* rdtscp: EDX:EAX = TSC, ECX = TSC_AUX, upper halves cleared; flags untouched. */
	long_mode();
	tsc = 0x1122334455667788ULL;
	tsc_aux = 0xffffffff00000007ULL;
	regs.rax = regs.rcx = regs.rdx = ~0ULL;
	regs.rflags = 0x202 | EMU_RFLAGS_ZF;
	CHECK_EQ(RUN(0x0f, 0x01, 0xf9), 0);
	CHECK(msr_indexes_ok);
	CHECK_EQ(regs.rax, 0x55667788);
	CHECK_EQ(regs.rdx, 0x11223344);
	CHECK_EQ(regs.rcx, 7);
	CHECK_EQ(regs.rflags, 0x202 | EMU_RFLAGS_ZF);
	check_done(0x100003);
	/* Without a readable TSC_AUX, ECX is 0; without the TSC, the exit fails. */
	long_mode();
	tsc_aux_readable = false;
	regs.rcx = 5;
	CHECK_EQ(RUN(0x0f, 0x01, 0xf9), 0);
	CHECK_EQ(regs.rcx, 0);
	long_mode();
	fail_request = KVM_GET_MSRS;
	CHECK_EQ(RUN(0x0f, 0x01, 0xf9), -1);
	CHECK(strstr(err_msg(), "reading the TSC") != NULL);

	/* rdpid r9: all 64 bits of TSC_AUX in long mode; rdpid eax in 32-bit mode: 32. */
	long_mode();
	tsc_aux = 0x100000002ULL;
	CHECK_EQ(RUN(0xf3, 0x41, 0x0f, 0xc7, 0xf9), 0);
	CHECK_EQ(regs.r9, 0x100000002ULL);
	check_done(0x100005);
	protected_mode();
	tsc_aux = 0x100000002ULL;
	regs.rax = ~0ULL;
	CHECK_EQ(RUN(0xf3, 0x0f, 0xc7, 0xf8), 0);
	CHECK_EQ(regs.rax, 2);
}

TEST(pause_bswap_fwait)
{
	long_mode();
	regs.rax = 0x42;
	CHECK_EQ(RUN(0xf3, 0x90), 0);	/* pause */
	CHECK_EQ(regs.rax, 0x42);
	CHECK_EQ(regs.rflags, 0x202);
	check_done(0x100002);
	long_mode();
	regs.rax = 0xdeadbeef11223344ULL;
	CHECK_EQ(RUN(0x0f, 0xc8), 0);	/* bswap eax: zero-extends */
	CHECK_EQ(regs.rax, 0x44332211);
	check_done(0x100002);
	long_mode();
	regs.r11 = 0x0102030405060708ULL;
	CHECK_EQ(RUN(0x49, 0x0f, 0xcb), 0);	/* bswap r11 */
	CHECK_EQ(regs.r11, 0x0807060504030201ULL);
	check_done(0x100003);
	long_mode();
	CHECK_EQ(RUN(0x9b), 0);	/* fwait */
	CHECK_EQ(set_fpu, 0);
	check_done(0x100001);
}

TEST(x87_control)
{
	/* fninit: the control word, status and tags KVM gets back. */
	long_mode();
	fpu.fcw = 0x27f;
	fpu.fsw = 0x3881;
	fpu.ftwx = 0xff;
	CHECK_EQ(RUN(0xdb, 0xe3), 0);
	CHECK_EQ(set_fpu, 1);
	CHECK_EQ(fpu.fcw, 0x37f);
	CHECK_EQ(fpu.fsw, 0);
	CHECK_EQ(fpu.ftwx, 0);
	check_done(0x100002);
	/* fnclex: exception flags, stack fault, summary and busy cleared; TOP and C-bits kept. */
	long_mode();
	fpu.fsw = 0xb8ff;
	CHECK_EQ(RUN(0xdb, 0xe2), 0);
	CHECK_EQ(fpu.fsw, 0x3800);
	/* fnstsw ax: AX only. */
	long_mode();
	fpu.fsw = 0x3800;
	regs.rax = 0x1111222233334444ULL;
	CHECK_EQ(RUN(0xdf, 0xe0), 0);
	CHECK_EQ(regs.rax, 0x1111222233333800ULL);
	CHECK_EQ(set_fpu, 0);
	/* fnstcw [rbx] to RAM, fnstsw [rbx] to MMIO, fldcw [rbx] from RAM. */
	long_mode();
	fpu.fcw = 0x037a;
	regs.rbx = 0x200000;
	CHECK_EQ(RUN(0xd9, 0x3b), 0);
	CHECK_EQ(get_le16(ram(0x200000)), 0x037a);
	check_done(0x100002);
	long_mode();
	fpu.fsw = 0x4100;
	regs.rbx = MMIO_BASE + 0x20;
	CHECK_EQ(RUN(0xdd, 0x3b), 0);
	CHECK_EQ(get_le16(dev + 0x20), 0x4100);
	CHECK_EQ(dev_writes, 1);
	long_mode();
	put_le16(ram(0x200010), 0x0272);
	regs.rbx = 0x200010;
	CHECK_EQ(RUN(0xd9, 0x2b), 0);
	CHECK_EQ(set_fpu, 1);
	CHECK_EQ(fpu.fcw, 0x0272);
	/* An operand that crosses a page, or is not mapped: refused. */
	long_mode();
	regs.rbx = 0x200fff;
	CHECK_EQ(RUN(0xd9, 0x3b), -1);
	CHECK(strstr(err_msg(), "crosses a page") != NULL);
	long_mode();
	regs.rbx = HOLE;
	CHECK_EQ(RUN(0xd9, 0x2b), -1);
	CHECK_EQ(set_fpu, 0);
	/* KVM_GET_FPU failing is reported. */
	long_mode();
	fail_request = KVM_GET_FPU;
	CHECK_EQ(RUN(0xdb, 0xe3), -1);
	CHECK(strstr(err_msg(), "KVM_GET_FPU") != NULL);
}

/* A 64-bit IDT at 0x10000, GDT at 0x11000 (0x08 ring 0 code, 0x10 data, 0x1b ring 3 code), TSS at 0x12000. */
static void idt_gdt_tss(void)
{
	sregs.idt.base = 0x10000;
	sregs.idt.limit = 0xfff;
	sregs.gdt.base = 0x11000;
	sregs.gdt.limit = 0xff;
	sregs.tr.base = 0x12000;
	put64(0x11008, 0x00af9a000000ffffULL);
	put64(0x11010, 0x00cf92000000ffffULL);
	put64(0x11018, 0x00affa000000ffffULL);
	put64(0x12004, 0x90000);	/* RSP0 */
}

static void gate(int vec, uint64_t target, int type, int dpl)
{
	uint64_t lo = (target & 0xffff) | 0x08ULL << 16 | (uint64_t)(0x80 | dpl << 5 | type) << 40 |
		      (target & 0xffff0000ULL) << 32;
	put64(0x10000 + vec * 16, lo);
	put64(0x10000 + vec * 16 + 8, target >> 32);
}

TEST(int3_and_int_n)
{
	/* int3 at CPL 0 through an interrupt gate: frame on the same stack, IF cleared, RIP at the handler. */
	long_mode();
	idt_gdt_tss();
	gate(3, 0x500000, 0xe, 3);
	regs.rsp = 0x80008;
	regs.rflags = 0x202 | EMU_RFLAGS_TF;
	CHECK_EQ(RUN(0xcc), 0);
	CHECK_EQ(regs.rip, 0x500000);
	CHECK_EQ(regs.rsp, 0x80000 - 40);
	CHECK_EQ(get64(0x80000 - 40), 0x100001);	/* return address: past the int3 */
	CHECK_EQ(get64(0x80000 - 32), 0x08);
	CHECK_EQ(get64(0x80000 - 24), 0x202 | EMU_RFLAGS_TF);
	CHECK_EQ(get64(0x80000 - 16), 0x80008);
	CHECK_EQ(get64(0x80000 - 8), 0x10);
	CHECK_EQ(regs.rflags, 0x002);
	CHECK_EQ(set_regs, 1);
	CHECK_EQ(set_sregs, 1);
	CHECK_EQ(sregs.cs.selector, 0x08);
	CHECK(sregs.cs.l && sregs.cs.present && !sregs.cs.db);
	CHECK_EQ(sregs.cs.dpl, 0);
	CHECK_EQ(events.exception.injected, 0);
	CHECK_EQ(vcpu.exits_emulated, 1);

	/* int 0x80 from ring 3 through a trap gate: RSP0, SS null with RPL 0 (SVM takes the CPL from SS.DPL). */
	long_mode();
	idt_gdt_tss();
	gate(0x80, 0x600000, 0xf, 3);
	sregs.cs.selector = 0x1b;
	sregs.cs.dpl = 3;
	sregs.ss.selector = 0x23;
	sregs.ss.dpl = 3;
	regs.rsp = 0x7fff0;
	CHECK_EQ(RUN(0xcd, 0x80), 0);
	CHECK_EQ(regs.rip, 0x600000);
	CHECK_EQ(regs.rsp, 0x90000 - 40);
	CHECK_EQ(get64(0x90000 - 40), 0x100002);
	CHECK_EQ(get64(0x90000 - 32), 0x1b);
	CHECK_EQ(get64(0x90000 - 16), 0x7fff0);
	CHECK_EQ(get64(0x90000 - 8), 0x23);
	CHECK_EQ(regs.rflags, 0x202);	/* trap gate: IF kept */
	CHECK_EQ(sregs.cs.selector, 0x08);
	CHECK_EQ(sregs.cs.dpl, 0);
	CHECK_EQ(sregs.ss.selector, 0);
	CHECK_EQ(sregs.ss.dpl, 0);
	CHECK(sregs.ss.present && !sregs.ss.unusable);

	/* Refused: a gate ring 3 may not use, a missing gate, int3 outside 64-bit mode. */
	long_mode();
	idt_gdt_tss();
	gate(0x81, 0x600000, 0xe, 0);
	sregs.cs.selector = 0x1b;
	CHECK_EQ(RUN(0xcd, 0x81), -1);
	CHECK(strstr(err_msg(), "delivering vector 129 faulted") != NULL);
	CHECK_EQ(set_regs + set_sregs, 0);
	long_mode();
	idt_gdt_tss();
	CHECK_EQ(RUN(0xcc), -1);
	protected_mode();
	CHECK_EQ(RUN(0xcc), -1);
	CHECK(strstr(err_msg(), "outside 64-bit mode") != NULL);
	/* KVM_SET_SREGS failing is reported. */
	long_mode();
	idt_gdt_tss();
	gate(3, 0x500000, 0xe, 3);
	fail_request = KVM_SET_SREGS;
	CHECK_EQ(RUN(0xcc), -1);
	CHECK(strstr(err_msg(), "writing registers") != NULL);
}

TEST(cmpxchg8b_16b)
{
	/* lock cmpxchg16b [rsi] in RAM: equal, so RCX:RBX stored and ZF set. */
	long_mode();
	put64(0x200000, 0x1111);
	put64(0x200008, 0x2222);
	regs.rsi = 0x200000;
	regs.rax = 0x1111; regs.rdx = 0x2222; regs.rbx = 0xb0b0; regs.rcx = 0xc0c0;
	CHECK_EQ(RUN(0xf0, 0x48, 0x0f, 0xc7, 0x0e), 0);
	CHECK_EQ(get64(0x200000), 0xb0b0);
	CHECK_EQ(get64(0x200008), 0xc0c0);
	CHECK(regs.rflags & EMU_RFLAGS_ZF);
	CHECK_EQ(regs.rax, 0x1111);
	check_done(0x100005);
	/* Not equal: memory into RDX:RAX, ZF clear, memory kept. */
	long_mode();
	put64(0x200000, 0x5);
	put64(0x200008, 0x6);
	regs.rsi = 0x200000;
	regs.rax = 1; regs.rdx = 2; regs.rbx = 3; regs.rcx = 4;
	regs.rflags = 0x202 | EMU_RFLAGS_ZF;
	CHECK_EQ(RUN(0xf0, 0x48, 0x0f, 0xc7, 0x0e), 0);
	CHECK_EQ(regs.rax, 5);
	CHECK_EQ(regs.rdx, 6);
	CHECK_EQ(regs.rflags, 0x202);
	CHECK_EQ(get64(0x200000), 5);
	/* cmpxchg8b [rdi+8] on MMIO: EDX:EAX compared with the device's m64, ECX:EBX written back. */
	long_mode();
	put_le32(dev + 0x108, 4);
	put_le32(dev + 0x10c, 5);
	regs.rdi = MMIO_BASE + 0x100;
	regs.rax = 0xffffffff00000004ULL; regs.rdx = 5; regs.rbx = 6; regs.rcx = 7;
	CHECK_EQ(RUN(0x0f, 0xc7, 0x4f, 0x08), 0);
	CHECK_EQ(get_le32(dev + 0x108), 6);
	CHECK_EQ(get_le32(dev + 0x10c), 7);
	CHECK(regs.rflags & EMU_RFLAGS_ZF);
	CHECK_EQ(dev_reads, 1);
	CHECK_EQ(dev_writes, 1);
	check_done(0x100004);
	/* ... and unequal on MMIO: nothing written, EDX:EAX loaded (zero-extended). */
	long_mode();
	regs.rdi = MMIO_BASE + 0x100;
	regs.rax = ~0ULL; regs.rdx = ~0ULL;
	put_le32(dev + 0x108, 6);
	put_le32(dev + 0x10c, 7);
	CHECK_EQ(RUN(0x0f, 0xc7, 0x4f, 0x08), 0);
	CHECK_EQ(regs.rax, 6);
	CHECK_EQ(regs.rdx, 7);
	CHECK(!(regs.rflags & EMU_RFLAGS_ZF));
	CHECK_EQ(dev_writes, 0);
	/* cmpxchg16b on a misaligned or unmapped operand: refused, nothing changed. */
	long_mode();
	regs.rsi = 0x200008;
	CHECK_EQ(RUN(0xf0, 0x48, 0x0f, 0xc7, 0x0e), -1);
	CHECK(strstr(err_msg(), "misaligned") != NULL);
	long_mode();
	regs.rsi = HOLE;
	CHECK_EQ(RUN(0xf0, 0x48, 0x0f, 0xc7, 0x0e), -1);
	CHECK(strstr(err_msg(), "not mapped") != NULL);
	CHECK_EQ(set_regs, 0);
}

TEST(iret_protected_mode)
{
	/* Same ring: EIP, CS, EFLAGS popped; CS reloaded from the GDT; ESP past the frame. */
	protected_mode();
	put_le32(ram(0x70000), 0x123456);
	put_le32(ram(0x70004), 0x08);
	put_le32(ram(0x70008), 0x246 | 0x3000);
	sregs.cs.selector = 0x08;
	CHECK_EQ(RUN(0xcf), 0);
	CHECK_EQ(regs.rip, 0x123456);
	CHECK_EQ(regs.rsp, 0x7000c);
	CHECK_EQ(regs.rflags, 0x3246);	/* IOPL taken at CPL 0 */
	CHECK_EQ(sregs.cs.selector, 0x08);
	CHECK_EQ(sregs.cs.limit, 0xffffffff);
	CHECK(sregs.cs.db && sregs.cs.present);
	CHECK_EQ(sregs.cs.type, 0xa);
	CHECK_EQ(set_sregs, 1);
	CHECK_EQ(events.exception.injected, 0);
	CHECK_EQ(vcpu.exits_emulated, 1);
	/* To ring 3: ESP and SS popped too, SS loaded from its descriptor; IOPL and IF as the frame says. */
	protected_mode();
	put_le32(ram(0x70000), 0x8000);
	put_le32(ram(0x70004), 0x1b);
	put_le32(ram(0x70008), 0x202);
	put_le32(ram(0x7000c), 0x6000);
	put_le32(ram(0x70010), 0x23);
	CHECK_EQ(RUN(0xcf), 0);
	CHECK_EQ(regs.rip, 0x8000);
	CHECK_EQ(regs.rsp, 0x6000);
	CHECK_EQ(sregs.cs.selector, 0x1b);
	CHECK_EQ(sregs.cs.dpl, 3);
	CHECK_EQ(sregs.ss.selector, 0x23);
	CHECK_EQ(sregs.ss.dpl, 3);
	CHECK_EQ(regs.rflags, 0x202);
	/* 16-bit code (CS.D clear): a 16-bit frame, into a 16-bit segment with a base. */
	protected_mode();
	sregs.cs.db = 0;
	regs.rsp = 0x70000;
	put_le16(ram(0x70000), 0x0100);
	put_le16(ram(0x70002), 0x28);
	put_le16(ram(0x70004), 0x0002 | EMU_RFLAGS_CF);
	regs.rflags = 0x40202;	/* AC: the high half of EFLAGS stays */
	CHECK_EQ(RUN(0xcf), 0);
	CHECK_EQ(regs.rip, 0x100);
	CHECK_EQ(regs.rsp, 0x70006);
	CHECK_EQ(sregs.cs.selector, 0x28);
	CHECK_EQ(sregs.cs.base, 0x30000);
	CHECK(!sregs.cs.db);
	CHECK_EQ(regs.rflags, 0x40003);
	/* Refused: a task return (NT), a not-present CS, a stack KVM cannot translate. */
	protected_mode();
	regs.rflags = 0x202 | EMU_RFLAGS_NT;
	put_le32(ram(0x70004), 0x08);
	CHECK_EQ(RUN(0xcf), -1);
	CHECK(strstr(err_msg(), "not emulated") != NULL);
	protected_mode();
	put_le32(ram(0x70004), 0x30);
	CHECK_EQ(RUN(0xcf), -1);
	protected_mode();
	regs.rsp = HOLE;
	CHECK_EQ(RUN(0xcf), -1);
	CHECK(strstr(err_msg(), "stack not mapped") != NULL);
	CHECK_EQ(set_regs + set_sregs, 0);
}

TEST(instruction_bytes_and_refusals)
{
	/* Without bytes from KVM the glue reads them at CS:RIP through KVM_TRANSLATE. */
	long_mode();
	memcpy(ram(0x100000), "\xf3\x48\x0f\xb8\xc3", 5);
	regs.rbx = 3;
	CHECK_EQ(exit_with(NULL, 0), 0);
	CHECK_EQ(regs.rax, 2);
	check_done(0x100005);
	/* ... in 32-bit mode at CS.base + EIP. */
	protected_mode();
	sregs.cs.base = 0x200000;
	regs.rip = 0x10;
	memcpy(ram(0x200010), "\x0f\x01\xcb", 3);
	CHECK_EQ(exit_with(NULL, 0), 0);
	CHECK(regs.rflags & EMU_RFLAGS_AC);
	CHECK_EQ(regs.rip, 0x13);
	/* Instructions lkvm does not emulate are refused, naming their bytes; nothing is written. */
	long_mode();
	CHECK_EQ(RUN(0x0f, 0x0b), -1);	/* ud2 */
	CHECK(strstr(err_msg(), "0f 0b") != NULL);
	CHECK_EQ(set_regs, 0);
	CHECK_EQ(vcpu.exits_emulated, 0);
	CHECK_EQ(events.exception.injected, 1);
	/* Real mode: operand-less instructions run, ones with an operand to decode do not. */
	setup();
	sregs.cr0 = 0x10;
	regs.rip = 0x7c00;
	CHECK_EQ(RUN(0xdb, 0xe3), 0);	/* fninit */
	CHECK_EQ(regs.rip, 0x7c02);
	setup();
	sregs.cr0 = 0x10;
	CHECK_EQ(RUN(0xf3, 0x0f, 0xb8, 0xc3), -1);	/* popcnt */
	CHECK(strstr(err_msg(), "unhandled instruction") != NULL);
	/* Registers KVM will not give: reported, nothing done. */
	long_mode();
	fail_request = KVM_GET_REGS;
	CHECK_EQ(RUN(0x9b), -1);
	CHECK(strstr(err_msg(), "reading registers") != NULL);
	long_mode();
	fail_request = KVM_SET_REGS;
	CHECK_EQ(RUN(0x9b), -1);
	CHECK(strstr(err_msg(), "writing registers") != NULL);
}

TEST(only_a_queued_ud_is_dropped)
{
	/* A #UD (vector 6) pending instead of injected is dropped too. */
	long_mode();
	memset(&run, 0, sizeof(run));
	run.emulation_failure.flags = KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES;
	run.emulation_failure.insn_size = 1;
	run.emulation_failure.insn_bytes[0] = 0x9b;
	events.exception.pending = 1;
	events.exception.nr = 6;
	events.flags = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR | KVM_VCPUEVENT_VALID_SMM;
	CHECK_EQ(emulate_kvm_exit(&vcpu), 0);
	CHECK_EQ(set_events, 1);
	CHECK_EQ(events.exception.pending, 0);
	CHECK_EQ(events.flags, 0);	/* state KVM must not restore from this copy */
	/* Any other exception KVM queued is the guest's: left alone. */
	long_mode();
	events.exception.injected = 1;
	events.exception.nr = 14;
	events.exception.pending = 0;
	run.emulation_failure.flags = KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES;
	run.emulation_failure.insn_size = 1;
	run.emulation_failure.insn_bytes[0] = 0x9b;
	CHECK_EQ(emulate_kvm_exit(&vcpu), 0);
	CHECK_EQ(set_events, 0);
	CHECK_EQ(events.exception.injected, 1);
	CHECK_EQ(events.exception.nr, 14);
}

TEST_MAIN()
