/* The userspace emulator's decoder and executor, flags included. */
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

TEST_MAIN()
