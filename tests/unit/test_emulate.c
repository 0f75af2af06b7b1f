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
	/* cmpxchg16b's F3-less 0F C7 /1 is not rdpid, and not handled yet. */
	static const uint8_t cx16[] = { 0xf0, 0x48, 0x0f, 0xc7, 0x0e };
	CHECK_EQ(emu_decode(cx16, 5, true, &in), -1);
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
	CHECK_EQ(emu_decode(fnstsw_m, 2, true, &in), -1);
	CHECK_EQ(emu_decode(fninit, 1, true, &in), -1);
	CHECK_EQ(emu_decode(xgetbv, 2, true, &in), -1);
	CHECK_EQ(emu_decode(rdpid, 4, true, &in), -1);
	/* Names for messages. */
	CHECK(strcmp(emu_name(EMU_RDTSCP), "rdtscp") == 0);
	CHECK(strcmp(emu_name(EMU_FNSTSW_AX), "fnstsw") == 0);
}

TEST_MAIN()
