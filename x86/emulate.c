/*
 * Decoding and executing the instructions KVM's emulator lacks. The table of
 * handled opcodes (docs/emulator.md):
 *   F3 0F B8 /r  POPCNT r, r/m      F3 0F BD /r  LZCNT r, r/m
 *   F3 0F BC /r  TZCNT r, r/m       0F 01 CA     CLAC      0F 01 CB  STAC
 *   0F 01 D0     XGETBV             0F 01 F9     RDTSCP    F3 0F C7 /7 (reg) RDPID
 *   F3 90        PAUSE              0F C8+r      BSWAP     9B  FWAIT
 *   DB E3        FNINIT             DB E2        FNCLEX    DF E0  FNSTSW AX
 *   CC           INT3               CD ib        INT n     (64-bit mode only)
 *   D9 /7 m16    FNSTCW             D9 /5 m16    FLDCW     DD /7 m16  FNSTSW
 *   [F0] 0F C7 /1 m64  CMPXCHG8B     [F0] REX.W 0F C7 /1 m128  CMPXCHG16B
 * Anything else is refused, and the VM stops with the instruction bytes.
 */
#include <string.h>
#include "emulate.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))

static uint32_t get32(const uint8_t *b) { return b[0] | b[1] << 8 | b[2] << 16 | (uint32_t)b[3] << 24; }
static uint64_t get64(const uint8_t *b) { return get32(b) | (uint64_t)get32(b + 4) << 32; }
static void put64(uint8_t *b, uint64_t v) { for (int i = 0; i < 8; i++) b[i] = v >> (8 * i); }

const char *emu_name(enum emu_op op)
{
	static const char *const names[] = { "popcnt", "lzcnt", "tzcnt", "clac", "stac", "xgetbv", "rdtscp",
					     "rdpid", "pause", "bswap", "fwait", "fninit", "fnclex", "fnstsw",
					     "int3", "int", "cmpxchg8b", "cmpxchg16b", "fnstcw", "fldcw", "fnstsw", "iret" };
	return (unsigned)op < ARRAY_LEN(names) ? names[op] : "?";
}

/* ModRM (+SIB, displacement) at b[i]; returns bytes consumed or -1. */
static int modrm(const uint8_t *b, int n, int i, bool long_mode, int rex, struct emu_insn *in)
{
	if (i >= n)
		return -1;
	int start = i;
	uint8_t m = b[i++];
	int mod = m >> 6, rm = m & 7;
	in->reg = ((m >> 3) & 7) | ((rex & 4) ? 8 : 0);
	in->base = in->index = -1;
	in->scale = 1;
	in->disp = 0;
	in->rip_rel = false;
	if (mod == 3) {
		in->mem = false;
		in->rm = rm | ((rex & 1) ? 8 : 0);
		return i - start;
	}
	in->mem = true;
	if (rm == 4) {	/* SIB */
		if (i >= n)
			return -1;
		uint8_t sib = b[i++];
		int idx = ((sib >> 3) & 7) | ((rex & 2) ? 8 : 0), base = (sib & 7) | ((rex & 1) ? 8 : 0);
		in->scale = 1 << (sib >> 6);
		in->index = idx == 4 ? -1 : idx;	/* rsp cannot be an index */
		if ((sib & 7) == 5 && mod == 0) {
			in->base = -1;
			mod = 2;	/* disp32, no base */
			if (i + 4 > n)
				return -1;
			in->disp = (int32_t)(b[i] | b[i + 1] << 8 | b[i + 2] << 16 | (uint32_t)b[i + 3] << 24);
			return i + 4 - start;
		}
		in->base = base;
	} else if (rm == 5 && mod == 0) {
		if (i + 4 > n)
			return -1;
		in->disp = (int32_t)(b[i] | b[i + 1] << 8 | b[i + 2] << 16 | (uint32_t)b[i + 3] << 24);
		in->rip_rel = long_mode;	/* 32-bit mode: an absolute disp32 */
		return i + 4 - start;
	} else {
		in->base = rm | ((rex & 1) ? 8 : 0);
	}
	if (mod == 1) {
		if (i + 1 > n)
			return -1;
		in->disp = (int8_t)b[i++];
	} else if (mod == 2) {
		if (i + 4 > n)
			return -1;
		in->disp = (int32_t)(b[i] | b[i + 1] << 8 | b[i + 2] << 16 | (uint32_t)b[i + 3] << 24);
		i += 4;
	}
	return i - start;
}

int emu_decode(const uint8_t *b, int n, bool long_mode, struct emu_insn *in)
{
	memset(in, 0, sizeof(*in));
	in->seg = -1;
	bool f3 = false, o16 = false;
	int rex = 0, i = 0;
	for (; i < n && i < 15; i++) {
		uint8_t p = b[i];
		if (p == 0xf3) f3 = true;
		else if (p == 0x66) o16 = true;
		else if (p == 0x67) in->addr32 = true;
		else if (p == 0xf0 || p == 0xf2) ;	/* lock/repne: meaningless here, as on hardware */
		else if (p == 0x26 || p == 0x2e || p == 0x36 || p == 0x3e) in->seg = (p >> 3) & 3;
		else if (p == 0x64 || p == 0x65) in->seg = p - 0x60;
		else break;
	}
	if (long_mode && i < n && (b[i] & 0xf0) == 0x40)
		rex = b[i++];
	if (i >= n)
		return -1;
	in->opsize = (rex & 8) ? 8 : o16 ? 2 : 4;
	/* One-byte opcodes: pause, fwait and the x87 control forms without a memory operand. */
	if (b[i] == 0x90 && f3 && !(rex & 1)) {	/* REX.B 90 is xchg r8, rax */
		in->op = EMU_PAUSE;
		in->len = i + 1;
		return 0;
	}
	if (b[i] == 0xcc) {
		in->op = EMU_INT3;
		in->len = i + 1;
		return 0;
	}
	if (b[i] == 0xcd && i + 1 < n) {
		in->op = EMU_INTN;
		in->imm = b[i + 1];
		in->len = i + 2;
		return 0;
	}
	if (b[i] == 0xcf && !long_mode) {	/* 64-bit iretq: KVM's own */
		in->op = EMU_IRET;
		in->len = i + 1;
		return 0;
	}
	if (b[i] == 0x9b) {
		in->op = EMU_FWAIT;
		in->len = i + 1;
		return 0;
	}
	if ((b[i] == 0xd9 || b[i] == 0xdd) && i + 1 < n && (b[i + 1] >> 6) != 3) {
		unsigned r = (b[i + 1] >> 3) & 7;
		if (b[i] == 0xd9 && r == 7) in->op = EMU_FNSTCW;
		else if (b[i] == 0xd9 && r == 5) in->op = EMU_FLDCW;
		else if (b[i] == 0xdd && r == 7) in->op = EMU_FNSTSW_M;
		else return -1;
		int k = modrm(b, n, i + 1, long_mode, rex, in);
		if (k < 0)
			return -1;
		in->opsize = 2;
		in->len = i + 1 + k;
		return 0;
	}
	if ((b[i] == 0xdb || b[i] == 0xdf) && i + 1 < n) {
		uint8_t m = b[i + 1];
		in->len = i + 2;
		if (b[i] == 0xdb && m == 0xe3) { in->op = EMU_FNINIT; return 0; }
		if (b[i] == 0xdb && m == 0xe2) { in->op = EMU_FNCLEX; return 0; }
		if (b[i] == 0xdf && m == 0xe0) { in->op = EMU_FNSTSW_AX; return 0; }
		return -1;
	}
	if (i + 2 > n || b[i] != 0x0f)
		return -1;
	uint8_t op = b[i + 1];
	i += 2;
	if (op == 0x01 && i < n && !f3) {
		in->len = i + 1;
		switch (b[i]) {
		case 0xca: in->op = EMU_CLAC; return 0;
		case 0xcb: in->op = EMU_STAC; return 0;
		case 0xd0: in->op = EMU_XGETBV; return 0;
		case 0xf9: in->op = EMU_RDTSCP; return 0;
		}
		return -1;
	}
	if (op >= 0xc8 && op <= 0xcf) {
		in->op = EMU_BSWAP;
		in->reg = (op & 7) | ((rex & 1) ? 8 : 0);
		in->len = i;
		return 0;
	}
	if (op == 0xc7 && !f3 && i < n && (b[i] >> 6) != 3 && ((b[i] >> 3) & 7) == 1) {
		int k = modrm(b, n, i, long_mode, rex, in);
		if (k < 0)
			return -1;
		in->op = (rex & 8) ? EMU_CMPXCHG16B : EMU_CMPXCHG8B;
		in->opsize = (rex & 8) ? 16 : 8;
		in->len = i + k;
		return 0;
	}
	/* rdpid: F3 0F C7 /7 with a register operand; the operand is 64-bit in long mode. */
	if (op == 0xc7 && f3 && i < n && (b[i] >> 6) == 3 && ((b[i] >> 3) & 7) == 7) {
		in->op = EMU_RDPID;
		in->rm = (b[i] & 7) | ((rex & 1) ? 8 : 0);
		in->opsize = long_mode ? 8 : 4;
		in->len = i + 1;
		return 0;
	}
	if (!f3 || (op != 0xb8 && op != 0xbd && op != 0xbc))
		return -1;
	in->op = op == 0xb8 ? EMU_POPCNT : op == 0xbd ? EMU_LZCNT : EMU_TZCNT;
	int k = modrm(b, n, i, long_mode, rex, in);
	if (k < 0)
		return -1;
	in->len = i + k;
	return 0;
}

uint64_t emu_ea(const struct emu_insn *in, const uint64_t *gpr, uint64_t rip)
{
	uint64_t ea = in->disp;
	if (in->rip_rel)
		ea += rip + in->len;
	if (in->base >= 0)
		ea += gpr[in->base];
	if (in->index >= 0)
		ea += gpr[in->index] * in->scale;
	return in->addr32 ? (uint32_t)ea : ea;
}

uint64_t emu_exec(const struct emu_insn *in, uint64_t src, uint64_t *rflags)
{
	int bits = in->opsize * 8;
	if (bits < 64)
		src &= (1ULL << bits) - 1;
	uint64_t r = 0;
	uint64_t f = *rflags & ~(EMU_RFLAGS_CF | EMU_RFLAGS_PF | EMU_RFLAGS_AF | EMU_RFLAGS_ZF | EMU_RFLAGS_SF | EMU_RFLAGS_OF);
	switch (in->op) {
	case EMU_POPCNT:
		r = __builtin_popcountll(src);
		if (!src)
			f |= EMU_RFLAGS_ZF;
		break;
	case EMU_LZCNT:
		r = src ? (uint64_t)(__builtin_clzll(src) - (64 - bits)) : (uint64_t)bits;
		if (!src)
			f |= EMU_RFLAGS_CF;
		if (!r)
			f |= EMU_RFLAGS_ZF;
		break;
	case EMU_TZCNT:
		r = src ? (uint64_t)__builtin_ctzll(src) : (uint64_t)bits;
		if (!src)
			f |= EMU_RFLAGS_CF;
		if (!r)
			f |= EMU_RFLAGS_ZF;
		break;
	case EMU_CLAC:
		f = *rflags & ~EMU_RFLAGS_AC;
		break;
	case EMU_STAC:
		f = *rflags | EMU_RFLAGS_AC;
		break;
	default:	/* register-only instructions leave the flags alone */
		f = *rflags;
		break;
	}
	*rflags = f;
	return r;
}

uint64_t emu_merge(uint64_t old, uint64_t val, int opsize)
{
	if (opsize == 2)
		return (old & ~0xffffULL) | (val & 0xffff);
	if (opsize == 4)
		return (uint32_t)val;
	return val;
}

bool emu_needs_fpu(enum emu_op op)
{
	return op == EMU_FNINIT || op == EMU_FNCLEX || op == EMU_FNSTSW_AX || op == EMU_FNSTCW || op == EMU_FLDCW ||
	       op == EMU_FNSTSW_M;
}

int emu_x87_mem(const struct emu_insn *in, struct emu_regs *r, uint8_t *m16)
{
	switch (in->op) {
	case EMU_FNSTCW:
		m16[0] = r->fcw; m16[1] = r->fcw >> 8;
		return 1;
	case EMU_FNSTSW_M:
		m16[0] = r->fsw; m16[1] = r->fsw >> 8;
		return 1;
	case EMU_FLDCW:
		r->fcw = m16[0] | m16[1] << 8;
		r->fpu_dirty = true;
		return 0;
	default:
		return -1;
	}
}

bool emu_needs_tsc(enum emu_op op)
{
	return op == EMU_RDTSCP || op == EMU_RDPID;
}

int emu_exec_regs(const struct emu_insn *in, struct emu_regs *r)
{
	uint64_t *g = r->gpr;
	switch (in->op) {
	case EMU_XGETBV:
		/* XCR0 = x87|SSE: we advertise no XSAVE, so no other component is enabled. */
		if ((uint32_t)g[1] != 0)
			return -1;
		g[0] = 3;
		g[2] = 0;
		return 0;
	case EMU_RDTSCP:
		g[0] = (uint32_t)r->tsc;
		g[2] = r->tsc >> 32;
		g[1] = (uint32_t)r->tsc_aux;
		return 0;
	case EMU_RDPID:
		g[in->rm] = in->opsize == 8 ? r->tsc_aux : (uint32_t)r->tsc_aux;
		return 0;
	case EMU_PAUSE:
	case EMU_FWAIT:	/* no unmasked x87 exceptions are ever pending: nothing to wait for */
		return 0;
	case EMU_BSWAP:
		if (in->opsize == 8)
			g[in->reg] = __builtin_bswap64(g[in->reg]);
		else if (in->opsize == 4)
			g[in->reg] = __builtin_bswap32((uint32_t)g[in->reg]);
		else
			g[in->reg] &= ~0xffffULL;	/* 16-bit bswap is undefined; hardware gives 0 */
		return 0;
	case EMU_FNINIT:
		r->fcw = 0x37f;
		r->fsw = 0;
		r->ftw = 0;
		r->fpu_dirty = true;
		return 0;
	case EMU_FNCLEX:
		/* Exception flags, stack fault, error summary and busy. */
		r->fsw &= ~0x80ffU;
		r->fpu_dirty = true;
		return 0;
	case EMU_FNSTSW_AX:
		g[0] = (g[0] & ~0xffffULL) | r->fsw;
		return 0;
	default:
		return -1;
	}
}

#define PTE_P 1ULL
#define PTE_W 2ULL
#define PTE_PS 0x80ULL
#define PTE_ADDR 0x000ffffffffff000ULL

int emu_translate(const struct emu_lm_state *s, const struct emu_mem_ops *m, void *ctx, uint64_t lin, bool write,
		  uint64_t *gpa)
{
	if (!(s->cr0 & 0x80000000ULL)) {
		*gpa = lin;
		return 0;
	}
	/* Only 4-level long-mode paging: the caller checked EFER.LMA. */
	if (!(s->efer & 0x400) || (s->cr4 & 0x1000))	/* LA57 not handled */
		return -1;
	uint64_t table = s->cr3 & PTE_ADDR;
	for (int level = 3; level >= 0; level--) {
		unsigned idx = (lin >> (12 + 9 * level)) & 511;
		uint8_t raw[8];
		if (m->read(ctx, table + idx * 8, raw, 8) < 0)
			return -1;
		uint64_t e = get64(raw);
		if (!(e & PTE_P))
			return -1;
		if (write && !(e & PTE_W) && (s->cr0 & 0x10000) && s->cpl == 0)	/* CR0.WP */
			return -1;
		if (level > 0 && level < 3 && (e & PTE_PS)) {
			uint64_t size = 1ULL << (12 + 9 * level);
			*gpa = (e & PTE_ADDR & ~(size - 1)) | (lin & (size - 1));
			return 0;
		}
		table = e & PTE_ADDR;
	}
	*gpa = table | (lin & 0xfff);
	return 0;
}

int emu_lin_access(const struct emu_lm_state *s, const struct emu_mem_ops *m, void *ctx, uint64_t lin, void *buf,
		   unsigned len, bool write)
{
	uint8_t *p = buf;
	while (len) {
		unsigned chunk = MIN(len, 4096 - (lin & 0xfff));
		uint64_t gpa;
		if (emu_translate(s, m, ctx, lin, write, &gpa) < 0)
			return -1;
		if ((write ? m->write(ctx, gpa, p, chunk) : m->read(ctx, gpa, p, chunk)) < 0)
			return -1;
		lin += chunk;
		p += chunk;
		len -= chunk;
	}
	return 0;
}

int emu_deliver_lm(struct emu_lm_state *s, const struct emu_mem_ops *m, void *ctx, unsigned vector,
		   uint64_t next_rip)
{
	uint8_t gate[16];
	if (vector * 16 + 15 > s->idt_limit ||
	    emu_lin_access(s, m, ctx, s->idt_base + vector * 16, gate, 16, false) < 0)
		return -1;
	uint32_t lo = get32(gate), hi = get32(gate + 4);
	unsigned type = (hi >> 8) & 0xf, dpl = (hi >> 13) & 3, ist = gate[4] & 7, present = hi >> 15 & 1;
	/* 64-bit interrupt (0xe) or trap (0xf) gate, reachable from this CPL by software. */
	if (!present || (type != 0xe && type != 0xf) || dpl < (unsigned)s->cpl)
		return -1;
	uint16_t sel = lo >> 16;
	uint64_t target = (lo & 0xffff) | (hi & 0xffff0000ULL) | (uint64_t)get32(gate + 8) << 32;
	uint8_t desc[8];
	if ((sel & ~7) == 0 || (sel | 7) > s->gdt_limit ||
	    emu_lin_access(s, m, ctx, s->gdt_base + (sel & ~7), desc, 8, false) < 0)
		return -1;
	uint64_t d = get64(desc);
	int new_cpl = (d >> 45) & 3;
	/* Present, code, 64-bit (L), DPL not above the current CPL. */
	if (!(d >> 47 & 1) || !(d >> 43 & 1) || !(d >> 53 & 1) || new_cpl > s->cpl)
		return -1;
	uint64_t rsp = s->rsp;
	uint16_t ss = s->ss;
	if (ist || new_cpl < s->cpl) {
		uint8_t raw[8];
		/* 64-bit TSS: RSP0 at 4, IST1..7 at 0x24. */
		uint64_t off = ist ? 0x24 + (ist - 1) * 8 : 4 + (uint64_t)new_cpl * 8;
		if (emu_lin_access(s, m, ctx, s->tr_base + off, raw, 8, false) < 0)
			return -1;
		rsp = get64(raw);
		if (new_cpl < s->cpl)
			ss = new_cpl;	/* null selector with RPL = new CPL */
	}
	rsp &= ~15ULL;
	uint64_t frame[5] = { next_rip, s->cs, s->rflags, s->rsp, s->ss };
	uint8_t raw[40];
	for (int i = 0; i < 5; i++)
		put64(raw + 8 * i, frame[i]);
	if (emu_lin_access(s, m, ctx, rsp - 40, raw, 40, true) < 0)
		return -1;
	s->rsp = rsp - 40;
	s->ss = ss;
	s->cs = (sel & ~3) | new_cpl;
	s->cpl = new_cpl;
	s->cs_desc = d;
	s->rip = target;
	s->rflags &= ~(EMU_RFLAGS_TF | EMU_RFLAGS_NT | EMU_RFLAGS_RF | EMU_RFLAGS_VM);
	if (type == 0xe)
		s->rflags &= ~EMU_RFLAGS_IF;
	return 0;
}

/* Registers as the CPU sees them: 32-bit halves for 8b (zero-extended on failure). */
static void cx_expected(const struct emu_insn *in, const uint64_t *gpr, uint64_t *lo, uint64_t *hi, uint64_t *nlo,
			uint64_t *nhi)
{
	if (in->op == EMU_CMPXCHG16B) {
		*lo = gpr[0]; *hi = gpr[2]; *nlo = gpr[3]; *nhi = gpr[1];
	} else {
		*lo = (uint32_t)gpr[0] | gpr[2] << 32; *hi = 0;
		*nlo = (uint32_t)gpr[3] | gpr[1] << 32; *nhi = 0;
	}
}

static void cx_result(const struct emu_insn *in, bool ok, uint64_t lo, uint64_t hi, uint64_t *gpr, uint64_t *rflags)
{
	if (ok) {
		*rflags |= EMU_RFLAGS_ZF;
		return;
	}
	*rflags &= ~EMU_RFLAGS_ZF;
	if (in->op == EMU_CMPXCHG16B) {
		gpr[0] = lo;
		gpr[2] = hi;
	} else {
		gpr[0] = (uint32_t)lo;
		gpr[2] = lo >> 32;
	}
}

int emu_cmpxchg_atomic(const struct emu_insn *in, void *host, uint64_t *gpr, uint64_t *rflags)
{
	uint64_t lo, hi, nlo, nhi;
	cx_expected(in, gpr, &lo, &hi, &nlo, &nhi);
	bool ok;
	if (in->op == EMU_CMPXCHG16B) {
		if ((uintptr_t)host & 15)
			return -1;
		__asm__ volatile("lock cmpxchg16b %[m]"
				 : [m] "+m"(*(volatile __int128 *)host), "=@ccz"(ok), "+a"(lo), "+d"(hi)
				 : "b"(nlo), "c"(nhi)
				 : "memory");
	} else {
		if ((uintptr_t)host & 7)
			return -1;
		ok = __atomic_compare_exchange_n((uint64_t *)host, &lo, nlo, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
	}
	cx_result(in, ok, lo, hi, gpr, rflags);
	return 0;
}

bool emu_cmpxchg_value(const struct emu_insn *in, uint8_t *cur, uint64_t *gpr, uint64_t *rflags)
{
	uint64_t lo, hi, nlo, nhi;
	cx_expected(in, gpr, &lo, &hi, &nlo, &nhi);
	uint64_t mlo = get64(cur), mhi = in->op == EMU_CMPXCHG16B ? get64(cur + 8) : 0;
	bool ok = mlo == lo && mhi == hi;
	if (ok) {
		put64(cur, nlo);
		if (in->op == EMU_CMPXCHG16B)
			put64(cur + 8, nhi);
	}
	cx_result(in, ok, mlo, mhi, gpr, rflags);
	return ok;
}

bool emu_ok_in_16bit(enum emu_op op)
{
	/* No operand size or address to decode: the same in 16-bit code and real mode. */
	switch (op) {
	case EMU_CLAC: case EMU_STAC: case EMU_XGETBV: case EMU_RDTSCP: case EMU_PAUSE:
	case EMU_FWAIT: case EMU_FNINIT: case EMU_FNCLEX: case EMU_FNSTSW_AX:
		return true;
	default:
		return false;
	}
}

int emu_iret_pm(const struct emu_insn *in, const uint8_t *frame, int cpl, uint64_t flags, struct emu_iret *out)
{
	int w = in->opsize == 2 ? 2 : 4;
	uint32_t v[5];
	for (int k = 0; k < 5; k++)
		v[k] = w == 2 ? (uint32_t)(frame[2 * k] | frame[2 * k + 1] << 8) : get32(frame + 4 * k);
	if (flags & EMU_RFLAGS_NT)
		return -1;
	memset(out, 0, sizeof(*out));
	out->eip = v[0];
	out->cs = v[1];
	int rpl = out->cs & 3;
	if (rpl < cpl || (w == 4 && (v[2] & EMU_RFLAGS_VM)))
		return -1;
	/* Which flags iret may change: IOPL only at CPL 0, IF only if CPL <= IOPL; VIF/VIP/VM stay. */
	uint32_t mask = 0x00244dd5 | EMU_RFLAGS_RF;	/* CF PF AF ZF SF TF DF OF NT AC ID, RF */
	int iopl = (flags >> 12) & 3;
	if (cpl == 0)
		mask |= 0x3000;
	if (cpl <= iopl)
		mask |= EMU_RFLAGS_IF;
	if (w == 2)
		mask &= 0xffff;
	out->eflags = (uint32_t)((flags & ~(uint64_t)mask) | (v[2] & mask)) | 2;
	out->frame_len = 3 * w;
	if (rpl > cpl) {
		out->outer = true;
		out->esp = v[3];
		out->ss = v[4];
		out->frame_len = 5 * w;
	}
	return 0;
}
