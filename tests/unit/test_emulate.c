/* The userspace emulator's decoder and executor, flags included. */
#include <string.h>
#include "test.h"
#include "emulate.h"

static uint64_t gpr[16];

TEST(decode)
{
	struct emu_insn in;
	/* popcnt eax, [rbx] */
	static const uint8_t a[] = { 0xf3, 0x0f, 0xb8, 0x03 };
	CHECK_EQ(emu_decode(a, sizeof(a), true, &in), 0);
	CHECK_EQ(in.op, EMU_POPCNT); CHECK_EQ(in.len, 4); CHECK_EQ(in.opsize, 4);
	CHECK_EQ(in.reg, 0); CHECK(in.mem); CHECK_EQ(in.base, 3);
	/* popcnt r9, [r12 + r13*8 + 0x10] : F3 REX.WRXB 0F B8 modrm(01 001 100) sib(11 101 100) disp8 */
	static const uint8_t b[] = { 0xf3, 0x4f, 0x0f, 0xb8, 0x4c, 0xec, 0x10 };
	CHECK_EQ(emu_decode(b, sizeof(b), true, &in), 0);
	CHECK_EQ(in.opsize, 8); CHECK_EQ(in.reg, 9); CHECK_EQ(in.base, 12); CHECK_EQ(in.index, 13);
	CHECK_EQ(in.scale, 8); CHECK_EQ(in.disp, 0x10); CHECK_EQ(in.len, 7);
	gpr[12] = 0x1000; gpr[13] = 2;
	CHECK_EQ(emu_ea(&in, gpr, 0), 0x1000 + 16 + 0x10);
	/* lzcnt ax, [rip + 0x100] (66 prefix, RIP-relative) */
	static const uint8_t c[] = { 0x66, 0xf3, 0x0f, 0xbd, 0x05, 0x00, 0x01, 0x00, 0x00 };
	CHECK_EQ(emu_decode(c, sizeof(c), true, &in), 0);
	CHECK_EQ(in.op, EMU_LZCNT); CHECK_EQ(in.opsize, 2); CHECK(in.rip_rel); CHECK_EQ(in.len, 9);
	CHECK_EQ(emu_ea(&in, gpr, 0x5000), 0x5000 + 9 + 0x100);
	/* tzcnt ecx, edx (register form) */
	static const uint8_t d[] = { 0xf3, 0x0f, 0xbc, 0xca };
	CHECK_EQ(emu_decode(d, sizeof(d), true, &in), 0);
	CHECK(!in.mem); CHECK_EQ(in.rm, 2); CHECK_EQ(in.reg, 1);
	/* clac, stac */
	static const uint8_t e[] = { 0x0f, 0x01, 0xca }, f[] = { 0x0f, 0x01, 0xcb };
	CHECK_EQ(emu_decode(e, 3, true, &in), 0); CHECK_EQ(in.op, EMU_CLAC); CHECK_EQ(in.len, 3);
	CHECK_EQ(emu_decode(f, 3, true, &in), 0); CHECK_EQ(in.op, EMU_STAC);
	/* bsr (no F3) and unknown opcodes are refused; truncated bytes too. */
	static const uint8_t g[] = { 0x0f, 0xbd, 0x03 }, h[] = { 0x0f, 0x0b };
	CHECK_EQ(emu_decode(g, 3, true, &in), -1);
	CHECK_EQ(emu_decode(h, 2, true, &in), -1);
	CHECK_EQ(emu_decode(b, 5, true, &in), -1);
	CHECK_EQ(emu_decode(a, 0, true, &in), -1);
	/* 32-bit mode: mod 00 rm 101 is an absolute disp32, and 0x4x is not REX. */
	static const uint8_t k[] = { 0xf3, 0x0f, 0xb8, 0x05, 0x00, 0x10, 0x00, 0xc0 };
	CHECK_EQ(emu_decode(k, sizeof(k), false, &in), 0);
	CHECK(!in.rip_rel); CHECK_EQ(emu_ea(&in, gpr, 0x5000) & 0xffffffff, 0xc0001000);
}

TEST(execute)
{
	struct emu_insn in = { .op = EMU_POPCNT, .opsize = 4 };
	uint64_t fl = EMU_RFLAGS_CF | EMU_RFLAGS_OF | 2;
	CHECK_EQ(emu_exec(&in, 0xffffffffffULL, &fl), 32);	/* operand truncated to 32 bits */
	CHECK_EQ(fl, 2);
	CHECK_EQ(emu_exec(&in, 0, &fl), 0);
	CHECK_EQ(fl, 2 | EMU_RFLAGS_ZF);
	in.opsize = 8;
	CHECK_EQ(emu_exec(&in, ~0ULL, &fl), 64);
	in.op = EMU_LZCNT; in.opsize = 4;
	CHECK_EQ(emu_exec(&in, 1, &fl), 31); CHECK_EQ(fl & (EMU_RFLAGS_CF | EMU_RFLAGS_ZF), 0);
	CHECK_EQ(emu_exec(&in, 0, &fl), 32); CHECK_EQ(fl & EMU_RFLAGS_CF, EMU_RFLAGS_CF);
	CHECK_EQ(emu_exec(&in, 0x80000000, &fl), 0); CHECK_EQ(fl & EMU_RFLAGS_ZF, EMU_RFLAGS_ZF);
	in.opsize = 2;
	CHECK_EQ(emu_exec(&in, 0x10000 | 0x0100, &fl), 7);
	in.op = EMU_TZCNT; in.opsize = 8;
	CHECK_EQ(emu_exec(&in, 0x8000000000000000ULL, &fl), 63);
	CHECK_EQ(emu_exec(&in, 0, &fl), 64); CHECK(fl & EMU_RFLAGS_CF);
	CHECK_EQ(emu_exec(&in, 1, &fl), 0); CHECK(fl & EMU_RFLAGS_ZF);
	in.op = EMU_STAC; fl = 2;
	emu_exec(&in, 0, &fl); CHECK_EQ(fl, 2 | EMU_RFLAGS_AC);
	in.op = EMU_CLAC;
	emu_exec(&in, 0, &fl); CHECK_EQ(fl, 2);
	/* Register writes: 32-bit zero-extends, 16-bit merges, 64-bit replaces. */
	CHECK_EQ(emu_merge(0xffffffffffffffffULL, 5, 4), 5);
	CHECK_EQ(emu_merge(0xffffffffffffffffULL, 5, 2), 0xffffffffffff0005ULL);
	CHECK_EQ(emu_merge(1, 0x123456789ULL, 8), 0x123456789ULL);
}

/* Decode one instruction and run it on r; returns emu_exec_regs' result, -2 if not decoded. */
static int run_regs(const uint8_t *b, int n, bool long_mode, struct emu_insn *in, struct emu_regs *r)
{
	if (emu_decode(b, n, long_mode, in) < 0)
		return -2;
	return emu_exec_regs(in, r);
}

TEST(register_only)
{
	struct emu_insn in;
	struct emu_regs r = { 0 };
	/* xgetbv with ecx 0: XCR0 = x87|SSE, high half 0; ecx != 0 is refused. */
	static const uint8_t xgetbv[] = { 0x0f, 0x01, 0xd0 };
	r.gpr[0] = ~0ULL; r.gpr[2] = ~0ULL; r.gpr[1] = 0xffffffff00000000ULL;
	CHECK_EQ(run_regs(xgetbv, 3, true, &in, &r), 0);
	CHECK_EQ(in.op, EMU_XGETBV); CHECK_EQ(in.len, 3);
	CHECK_EQ(r.gpr[0], 3); CHECK_EQ(r.gpr[2], 0);
	r.gpr[1] = 1;
	CHECK_EQ(run_regs(xgetbv, 3, true, &in, &r), -1);
	CHECK(!emu_needs_tsc(EMU_XGETBV) && !emu_needs_fpu(EMU_XGETBV));
	/* rdtscp: edx:eax = TSC, ecx = TSC_AUX, upper halves cleared. */
	static const uint8_t rdtscp[] = { 0x0f, 0x01, 0xf9 };
	r.tsc = 0x123456789abcdef0ULL; r.tsc_aux = 7; r.gpr[1] = ~0ULL;
	CHECK(emu_needs_tsc(EMU_RDTSCP));
	CHECK_EQ(run_regs(rdtscp, 3, true, &in, &r), 0);
	CHECK_EQ(r.gpr[0], 0x9abcdef0ULL); CHECK_EQ(r.gpr[2], 0x12345678ULL); CHECK_EQ(r.gpr[1], 7);
	/* rdpid r9 (F3 41 0F C7 F9): 64-bit in long mode. */
	static const uint8_t rdpid[] = { 0xf3, 0x41, 0x0f, 0xc7, 0xf9 };
	r.tsc_aux = 0x1234; r.gpr[9] = ~0ULL;
	CHECK_EQ(run_regs(rdpid, 5, true, &in, &r), 0);
	CHECK_EQ(in.op, EMU_RDPID); CHECK_EQ(in.len, 5); CHECK_EQ(r.gpr[9], 0x1234);
	/* Other 0F C7 forms (rdrand = 0F C7 /6 reg) are not rdpid. */
	static const uint8_t rdrand[] = { 0x0f, 0xc7, 0xf0 };
	CHECK_EQ(emu_decode(rdrand, 3, true, &in), -1);
	/* bswap: 32-bit zero-extends, REX.W + REX.B swaps r8 whole. */
	static const uint8_t bswap_eax[] = { 0x0f, 0xc8 }, bswap_r8[] = { 0x49, 0x0f, 0xc8 };
	r.gpr[0] = 0xffffffff11223344ULL;
	CHECK_EQ(run_regs(bswap_eax, 2, true, &in, &r), 0);
	CHECK_EQ(r.gpr[0], 0x44332211ULL); CHECK_EQ(in.len, 2);
	r.gpr[8] = 0x0102030405060708ULL;
	CHECK_EQ(run_regs(bswap_r8, 3, true, &in, &r), 0);
	CHECK_EQ(in.reg, 8); CHECK_EQ(r.gpr[8], 0x0807060504030201ULL); CHECK_EQ(in.len, 3);
	/* pause, fwait: nothing changes but rip. REX.B 90 (xchg r8, rax) is not pause. */
	static const uint8_t pause[] = { 0xf3, 0x90 }, fwait[] = { 0x9b }, xchg[] = { 0xf3, 0x41, 0x90 };
	struct emu_regs before = r;
	CHECK_EQ(run_regs(pause, 2, true, &in, &r), 0); CHECK_EQ(in.op, EMU_PAUSE); CHECK_EQ(in.len, 2);
	CHECK_EQ(run_regs(fwait, 1, true, &in, &r), 0); CHECK_EQ(in.op, EMU_FWAIT); CHECK_EQ(in.len, 1);
	CHECK(memcmp(&before, &r, sizeof(r)) == 0);
	CHECK_EQ(emu_decode(xchg, 3, true, &in), -1);
	/* x87 control: fninit resets fcw/fsw/tags, fnclex clears exception bits, fnstsw ax. */
	static const uint8_t fninit[] = { 0xdb, 0xe3 }, fnclex[] = { 0xdb, 0xe2 }, fnstsw[] = { 0xdf, 0xe0 };
	r.fcw = 0x40; r.fsw = 0xffff; r.ftw = 0xff; r.fpu_dirty = false;
	CHECK(emu_needs_fpu(EMU_FNCLEX));
	CHECK_EQ(run_regs(fnclex, 2, true, &in, &r), 0);
	CHECK_EQ(r.fsw, 0x7f00); CHECK(r.fpu_dirty);
	r.gpr[0] = 0xaaaaaaaaaaaaaaaaULL;
	CHECK_EQ(run_regs(fnstsw, 2, true, &in, &r), 0);
	CHECK_EQ(r.gpr[0], 0xaaaaaaaaaaaa7f00ULL);
	CHECK_EQ(run_regs(fninit, 2, false, &in, &r), 0);
	CHECK_EQ(r.fcw, 0x37f); CHECK_EQ(r.fsw, 0); CHECK_EQ(r.ftw, 0); CHECK_EQ(in.len, 2);
	/* Other x87 forms are refused; truncated forms too. */
	static const uint8_t fld1[] = { 0xd9, 0xe8 }, fnstsw_m[] = { 0xdd, 0x38 };
	CHECK_EQ(emu_decode(fld1, 2, true, &in), -1);
	CHECK_EQ(emu_decode(fnstsw_m, 2, true, &in), 0); CHECK_EQ(in.op, EMU_FNSTSW_M);
	CHECK_EQ(emu_decode(fninit, 1, true, &in), -1);
	CHECK_EQ(emu_decode(xgetbv, 2, true, &in), -1);
	CHECK_EQ(emu_decode(rdpid, 4, true, &in), -1);
	/* Names for messages. */
	CHECK(strcmp(emu_name(EMU_RDTSCP), "rdtscp") == 0);
	CHECK(strcmp(emu_name(EMU_FNSTSW_AX), "fnstsw") == 0);
}

/* A fake guest: 1 MiB of RAM, identity-mapped 2 MiB page plus one 4K page, IDT, GDT, TSS. */
static uint8_t ram[1 << 20];
static int mmio_reads;

static int ram_read(void *ctx, uint64_t gpa, void *buf, unsigned len)
{
	if (gpa >= sizeof(ram) || len > sizeof(ram) - gpa) {
		mmio_reads++;
		return -1;
	}
	memcpy(buf, ram + gpa, len);
	return 0;
}

static int ram_write(void *ctx, uint64_t gpa, const void *buf, unsigned len)
{
	if (gpa >= sizeof(ram) || len > sizeof(ram) - gpa)
		return -1;
	memcpy(ram + gpa, buf, len);
	return 0;
}

static const struct emu_mem_ops ops = { ram_read, ram_write };

static void put64_le(uint64_t gpa, uint64_t v) { memcpy(ram + gpa, &v, 8); }
static uint64_t get64_le(uint64_t gpa) { uint64_t v; memcpy(&v, ram + gpa, 8); return v; }

static void set_gate(unsigned vec, uint64_t target, uint16_t sel, unsigned type, unsigned dpl, unsigned ist)
{
	uint64_t lo = (target & 0xffff) | (uint64_t)sel << 16 | (uint64_t)ist << 32 | (uint64_t)type << 40 |
		      (uint64_t)dpl << 45 | 1ULL << 47 | (target & 0xffff0000ULL) << 32;
	put64_le(0x10000 + vec * 16, lo);
	put64_le(0x10000 + vec * 16 + 8, target >> 32);
}

static struct emu_lm_state fake_guest(void)
{
	memset(ram, 0, sizeof(ram));
	put64_le(0x1000, 0x2000 | 3);		/* PML4[0] */
	put64_le(0x2000, 0x3000 | 3);		/* PDPT[0] */
	put64_le(0x3000, 0x0 | 0x83);		/* PD[0]: 2 MiB at 0 */
	put64_le(0x3008, 0x4000 | 3);		/* PD[1]: a page table */
	put64_le(0x4000, 0x7000 | 3);		/* 0x200000 -> 0x7000; 0x201000 unmapped */
	put64_le(0x11008, 0x00af9a000000ffffULL);	/* 0x08: 64-bit code, DPL 0 */
	put64_le(0x11030, 0x00affa000000ffffULL);	/* 0x33: 64-bit code, DPL 3 */
	put64_le(0x12004, 0x80000);		/* TSS RSP0 */
	put64_le(0x12024, 0x90000);		/* TSS IST1 */
	return (struct emu_lm_state){
		.rip = 0x5000, .rsp = 0x50008, .rflags = 0x202 | EMU_RFLAGS_TF | EMU_RFLAGS_RF,
		.cr0 = 0x80010001, .cr3 = 0x1000, .cr4 = 0x20, .efer = 0x500,
		.cs = 0x08, .ss = 0x10, .cpl = 0,
		.idt_base = 0x10000, .idt_limit = 0xfff, .gdt_base = 0x11000, .gdt_limit = 0xff, .tr_base = 0x12000,
	};
}

TEST(page_walk)
{
	struct emu_lm_state st = fake_guest();
	uint64_t gpa;
	CHECK_EQ(emu_translate(&st, &ops, NULL, 0x12345, false, &gpa), 0); CHECK_EQ(gpa, 0x12345);
	CHECK_EQ(emu_translate(&st, &ops, NULL, 0x200010, false, &gpa), 0); CHECK_EQ(gpa, 0x7010);
	CHECK_EQ(emu_translate(&st, &ops, NULL, 0x201000, false, &gpa), -1);
	CHECK_EQ(emu_translate(&st, &ops, NULL, 0x8000000000ULL, false, &gpa), -1);	/* PML4[1] empty */
	/* A read that crosses into the unmapped page fails as a whole. */
	uint8_t buf[8];
	CHECK_EQ(emu_lin_access(&st, &ops, NULL, 0x200ffc, buf, 8, false), -1);
	ram[0x7ffc] = 0x5a;
	CHECK_EQ(emu_lin_access(&st, &ops, NULL, 0x200ffc, buf, 4, false), 0); CHECK_EQ(buf[0], 0x5a);
	/* Paging off: linear is physical. */
	st.cr0 = 1;
	CHECK_EQ(emu_translate(&st, &ops, NULL, 0x201000, false, &gpa), 0); CHECK_EQ(gpa, 0x201000);
	/* A page table outside RAM goes to the fallback and fails cleanly. */
	st = fake_guest();
	put64_le(0x3010, 0x40000000ULL | 3);
	mmio_reads = 0;
	CHECK_EQ(emu_translate(&st, &ops, NULL, 0x400000, false, &gpa), -1);
	CHECK_EQ(mmio_reads, 1);
}

TEST(int3_long_mode)
{
	struct emu_lm_state st = fake_guest();
	struct emu_insn in;
	static const uint8_t int3[] = { 0xcc }, int80[] = { 0xcd, 0x80 };
	CHECK_EQ(emu_decode(int3, 1, true, &in), 0); CHECK_EQ(in.op, EMU_INT3); CHECK_EQ(in.len, 1);
	CHECK_EQ(emu_decode(int80, 2, true, &in), 0); CHECK_EQ(in.op, EMU_INTN); CHECK_EQ(in.imm, 0x80);
	CHECK_EQ(emu_decode(int80, 1, true, &in), -1);
	/* int3 at CPL 0 through an interrupt gate: same stack, aligned down to 16. */
	set_gate(3, 0xffffffff81000000ULL, 0x08, 0xe, 3, 0);
	uint64_t flags = st.rflags;
	CHECK_EQ(emu_deliver_lm(&st, &ops, NULL, 3, 0x5001), 0);
	CHECK_EQ(st.rip, 0xffffffff81000000ULL);
	CHECK_EQ(st.rsp, 0x50000 - 40);
	CHECK_EQ(get64_le(0x50000 - 40), 0x5001);	/* RIP of the next instruction */
	CHECK_EQ(get64_le(0x50000 - 32), 0x08);
	CHECK_EQ(get64_le(0x50000 - 24), flags);
	CHECK_EQ(get64_le(0x50000 - 16), 0x50008);
	CHECK_EQ(get64_le(0x50000 - 8), 0x10);
	CHECK_EQ(st.rflags & (EMU_RFLAGS_IF | EMU_RFLAGS_TF | EMU_RFLAGS_RF), 0);
	CHECK_EQ(st.cs, 0x08); CHECK_EQ(st.ss, 0x10); CHECK_EQ(st.cpl, 0);
	CHECK_EQ(st.cs_desc, 0x00af9a000000ffffULL);

	/* int 0x80 from CPL 3 through a trap gate: RSP0, null SS, IF kept. */
	st = fake_guest();
	st.cs = 0x33; st.ss = 0x2b; st.cpl = 3; st.rsp = 0x7fff0;
	set_gate(0x80, 0x6000, 0x08, 0xf, 3, 0);
	CHECK_EQ(emu_deliver_lm(&st, &ops, NULL, 0x80, 0x5002), 0);
	CHECK_EQ(st.rsp, 0x80000 - 40); CHECK_EQ(st.rip, 0x6000);
	CHECK_EQ(st.cpl, 0); CHECK_EQ(st.cs, 0x08); CHECK_EQ(st.ss, 0);
	CHECK(st.rflags & EMU_RFLAGS_IF);
	CHECK_EQ(get64_le(0x80000 - 32), 0x33);
	CHECK_EQ(get64_le(0x80000 - 16), 0x7fff0);
	CHECK_EQ(get64_le(0x80000 - 8), 0x2b);

	/* An IST gate switches stacks even without a privilege change. */
	st = fake_guest();
	set_gate(0x21, 0x6100, 0x08, 0xe, 0, 1);
	CHECK_EQ(emu_deliver_lm(&st, &ops, NULL, 0x21, 0x5002), 0);
	CHECK_EQ(st.rsp, 0x90000 - 40); CHECK_EQ(get64_le(0x90000 - 16), 0x50008);

	/* Refused: gate DPL below CPL, not-present gate, beyond the IDT limit, unmapped IDT, unmapped stack. */
	st = fake_guest(); st.cpl = 3; st.cs = 0x33;
	set_gate(0x21, 0x6100, 0x08, 0xe, 0, 0);
	CHECK_EQ(emu_deliver_lm(&st, &ops, NULL, 0x21, 0), -1);
	st = fake_guest();
	CHECK_EQ(emu_deliver_lm(&st, &ops, NULL, 0x22, 0), -1);
	set_gate(0x22, 0x6100, 0x08, 0xe, 0, 0);
	st.idt_limit = 0x22 * 16 + 14;
	CHECK_EQ(emu_deliver_lm(&st, &ops, NULL, 0x22, 0), -1);
	st = fake_guest(); st.idt_base = 0x201000;
	CHECK_EQ(emu_deliver_lm(&st, &ops, NULL, 3, 0), -1);
	st = fake_guest(); st.rsp = 0x201010;
	set_gate(3, 0x6000, 0x08, 0xe, 3, 0);
	CHECK_EQ(emu_deliver_lm(&st, &ops, NULL, 3, 0), -1);
	CHECK_EQ(st.rip, 0x5000);	/* state untouched on failure */
	/* A gate whose selector is a data segment or null is refused. */
	st = fake_guest();
	set_gate(3, 0x6000, 0x00, 0xe, 3, 0);
	CHECK_EQ(emu_deliver_lm(&st, &ops, NULL, 3, 0), -1);
}

TEST(cmpxchg)
{
	struct emu_insn in;
	/* lock cmpxchg16b [rsi] = F0 48 0F C7 0E; cmpxchg8b [rdi+8] = 0F C7 4F 08 */
	static const uint8_t c16[] = { 0xf0, 0x48, 0x0f, 0xc7, 0x0e }, c8[] = { 0x0f, 0xc7, 0x4f, 0x08 };
	static const uint8_t c16reg[] = { 0x48, 0x0f, 0xc7, 0xce };	/* mod 3: invalid */
	CHECK_EQ(emu_decode(c16, 5, true, &in), 0);
	CHECK_EQ(in.op, EMU_CMPXCHG16B); CHECK_EQ(in.len, 5); CHECK(in.mem); CHECK_EQ(in.base, 6);
	CHECK_EQ(emu_decode(c16reg, 4, true, &in), -1);
	CHECK_EQ(emu_decode(c16, 4, true, &in), -1);
	static _Alignas(16) uint64_t mem[2] = { 0x1111, 0x2222 };
	uint64_t g[4] = { 0x1111, 0xc0c0, 0x2222, 0xb0b0 };	/* rax rcx rdx rbx */
	uint64_t fl = 2;
	CHECK_EQ(emu_decode(c16, 5, true, &in), 0);
	CHECK_EQ(emu_cmpxchg_atomic(&in, mem, g, &fl), 0);
	CHECK(fl & EMU_RFLAGS_ZF); CHECK_EQ(mem[0], 0xb0b0); CHECK_EQ(mem[1], 0xc0c0);
	CHECK_EQ(g[0], 0x1111); CHECK_EQ(g[2], 0x2222);
	/* Failure: ZF clear, RDX:RAX loaded with memory, memory unchanged. */
	CHECK_EQ(emu_cmpxchg_atomic(&in, mem, g, &fl), 0);
	CHECK(!(fl & EMU_RFLAGS_ZF)); CHECK_EQ(g[0], 0xb0b0); CHECK_EQ(g[2], 0xc0c0); CHECK_EQ(mem[0], 0xb0b0);
	CHECK_EQ(emu_cmpxchg_atomic(&in, (uint8_t *)mem + 8, g, &fl), -1);	/* misaligned */
	/* The copy variant (MMIO) behaves the same. */
	uint8_t cur[16];
	memcpy(cur, mem, 16);
	g[3] = 1; g[1] = 2;
	CHECK(emu_cmpxchg_value(&in, cur, g, &fl)); CHECK(fl & EMU_RFLAGS_ZF);
	CHECK_EQ(cur[0], 1); CHECK_EQ(cur[8], 2);
	CHECK(!emu_cmpxchg_value(&in, cur, g, &fl)); CHECK(!(fl & EMU_RFLAGS_ZF)); CHECK_EQ(g[0], 1); CHECK_EQ(g[2], 2);
	/* cmpxchg8b: EDX:EAX vs m64, ECX:EBX stored; failure zero-extends into RAX/RDX. */
	CHECK_EQ(emu_decode(c8, 4, true, &in), 0);
	CHECK_EQ(in.op, EMU_CMPXCHG8B); CHECK_EQ(in.disp, 8); CHECK_EQ(in.len, 4);
	uint64_t m8 = 0x0000000500000004ULL;
	uint64_t h[4] = { 0xffffffff00000004ULL, 7, 5, 6 };
	CHECK_EQ(emu_cmpxchg_atomic(&in, &m8, h, &fl), 0);
	CHECK(fl & EMU_RFLAGS_ZF); CHECK_EQ(m8, 0x0000000700000006ULL);
	h[0] = ~0ULL; h[2] = ~0ULL;
	CHECK_EQ(emu_cmpxchg_atomic(&in, &m8, h, &fl), 0);
	CHECK(!(fl & EMU_RFLAGS_ZF)); CHECK_EQ(h[0], 6); CHECK_EQ(h[2], 7);
}

TEST(x87_memory)
{
	struct emu_insn in;
	struct emu_regs r = { .fcw = 0x37f, .fsw = 0x3800 };
	uint8_t m[2];
	/* fnstcw [rsp+8] = D9 7C 24 08; fldcw [rip+0x10] = D9 2D 10 00 00 00; fnstsw [rax] = DD 38 */
	static const uint8_t stcw[] = { 0xd9, 0x7c, 0x24, 0x08 }, ldcw[] = { 0xd9, 0x2d, 0x10, 0, 0, 0 },
			     stsw[] = { 0xdd, 0x38 }, fld[] = { 0xd9, 0x00 };
	CHECK_EQ(emu_decode(stcw, 4, true, &in), 0);
	CHECK_EQ(in.op, EMU_FNSTCW); CHECK_EQ(in.len, 4); CHECK_EQ(in.base, 4); CHECK_EQ(in.disp, 8);
	CHECK_EQ(emu_x87_mem(&in, &r, m), 1); CHECK_EQ(m[0], 0x7f); CHECK_EQ(m[1], 0x03);
	CHECK_EQ(emu_decode(stsw, 2, true, &in), 0); CHECK_EQ(in.op, EMU_FNSTSW_M);
	CHECK_EQ(emu_x87_mem(&in, &r, m), 1); CHECK_EQ(m[0], 0x00); CHECK_EQ(m[1], 0x38);
	CHECK_EQ(emu_decode(ldcw, 6, true, &in), 0); CHECK_EQ(in.op, EMU_FLDCW); CHECK(in.rip_rel); CHECK_EQ(in.len, 6);
	m[0] = 0x7f; m[1] = 0x02;
	CHECK_EQ(emu_x87_mem(&in, &r, m), 0); CHECK_EQ(r.fcw, 0x27f); CHECK(r.fpu_dirty);
	CHECK_EQ(emu_decode(fld, 2, true, &in), -1);	/* fld m32: not ours */
	CHECK_EQ(emu_decode(ldcw, 5, true, &in), -1);	/* truncated displacement */
	CHECK(emu_ok_in_16bit(EMU_FNINIT)); CHECK(!emu_ok_in_16bit(EMU_FNSTCW)); CHECK(!emu_ok_in_16bit(EMU_INT3));
}

TEST(iret_protected_mode)
{
	struct emu_insn in;
	struct emu_iret out;
	static const uint8_t iret[] = { 0xcf }, iret16[] = { 0x66, 0xcf };
	CHECK_EQ(emu_decode(iret, 1, false, &in), 0); CHECK_EQ(in.op, EMU_IRET); CHECK_EQ(in.opsize, 4);
	CHECK_EQ(emu_decode(iret, 1, true, &in), -1);	/* iretq is KVM's */
	CHECK_EQ(emu_decode(iret16, 2, false, &in), 0); CHECK_EQ(in.opsize, 2); CHECK_EQ(in.len, 2);
	/* Same ring at CPL 0: EIP, CS, EFLAGS popped; IF, IOPL and the arithmetic flags taken. */
	uint8_t f[20] = { 0x78, 0x56, 0x34, 0x12, 0x08, 0, 0, 0, 0x01 | 0x40, 0x32, 0x20, 0x00 };
	emu_decode(iret, 1, false, &in);
	CHECK_EQ(emu_iret_pm(&in, f, 0, 0x2, &out), 0);
	CHECK_EQ(out.eip, 0x12345678); CHECK_EQ(out.cs, 0x08);
	CHECK_EQ(out.eflags, 0x203243);	/* CF ZF IF IOPL=3 ID, bit 1 */
	CHECK(!out.outer); CHECK_EQ(out.frame_len, 12);
	/* At CPL 3 with IOPL 0: IF and IOPL stay as they were. */
	f[4] = 0x1b;
	CHECK_EQ(emu_iret_pm(&in, f, 3, 0x2, &out), 0);
	CHECK_EQ(out.eflags, 0x200043);
	/* CPL 0 to ring 3: ESP and SS popped too. */
	memcpy(f + 12, "\x00\x10\x00\x00\x23\x00\x00\x00", 8);
	CHECK_EQ(emu_iret_pm(&in, f, 0, 0x2, &out), 0);
	CHECK(out.outer); CHECK_EQ(out.esp, 0x1000); CHECK_EQ(out.ss, 0x23); CHECK_EQ(out.frame_len, 20);
	/* Refused: NT (task return), RPL below CPL, VM in the popped flags. */
	CHECK_EQ(emu_iret_pm(&in, f, 0, 0x4002, &out), -1);
	f[4] = 0x08;
	CHECK_EQ(emu_iret_pm(&in, f, 3, 0x2, &out), -1);
	f[10] = 0x22;	/* VM (bit 17) */
	CHECK_EQ(emu_iret_pm(&in, f, 0, 0x2, &out), -1);
	/* 16-bit frame: IP, CS, FLAGS of two bytes; the high half of EFLAGS kept. */
	emu_decode(iret16, 2, false, &in);
	uint8_t g[10] = { 0x34, 0x12, 0x10, 0x00, 0x00, 0x02 };
	CHECK_EQ(emu_iret_pm(&in, g, 0, 0x40002, &out), 0);
	CHECK_EQ(out.eip, 0x1234); CHECK_EQ(out.cs, 0x10); CHECK_EQ(out.eflags, 0x40202); CHECK_EQ(out.frame_len, 6);
}

TEST_MAIN()
