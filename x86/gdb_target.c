/*
 * The x86-64 side of the gdb stub: the target description gdb reads
 * (qXfer:features:read:target.xml), the register layout of its 'g' and 'p'
 * packets over KVM's register ioctls, the debug registers, and the walk of
 * the guest's own page tables that turns gdb's virtual addresses into
 * guest-physical ones.
 */
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include "gdb.h"
#include "guest_mem.h"
#include "util.h"
#include "vm.h"

/*
 * GDB's standard i386 features (core: general, segment and x87 registers; sse;
 * segments: fs_base/gs_base) plus our own for the system registers a kernel
 * debugger wants. regnum is the number in 'p'/'P' packets and the order in 'g'.
 */
#define FLAG(n, b) "<field name=\"" n "\" start=\"" #b "\" end=\"" #b "\"/>"
#define REG(n, bits, type) "<reg name=\"" n "\" bitsize=\"" #bits "\" type=\"" type "\"/>"
#define REGG(n, bits, type, group) "<reg name=\"" n "\" bitsize=\"" #bits "\" type=\"" type "\" group=\"" group "\"/>"
const char gdb_target_xml[] =
	"<?xml version=\"1.0\"?><!DOCTYPE target SYSTEM \"gdb-target.dtd\">"
	"<target version=\"1.0\"><architecture>i386:x86-64</architecture>"
	"<feature name=\"org.gnu.gdb.i386.core\">"
	"<flags id=\"i386_eflags\" size=\"4\">" FLAG("CF", 0) FLAG("", 1) FLAG("PF", 2) FLAG("AF", 4) FLAG("ZF", 6)
	FLAG("SF", 7) FLAG("TF", 8) FLAG("IF", 9) FLAG("DF", 10) FLAG("OF", 11) FLAG("NT", 14) FLAG("RF", 16)
	FLAG("VM", 17) FLAG("AC", 18) FLAG("VIF", 19) FLAG("VIP", 20) FLAG("ID", 21) "</flags>"
	"<reg name=\"rax\" bitsize=\"64\" type=\"int64\" regnum=\"0\"/>"
	REG("rbx", 64, "int64") REG("rcx", 64, "int64") REG("rdx", 64, "int64") REG("rsi", 64, "int64")
	REG("rdi", 64, "int64") REG("rbp", 64, "data_ptr") REG("rsp", 64, "data_ptr") REG("r8", 64, "int64")
	REG("r9", 64, "int64") REG("r10", 64, "int64") REG("r11", 64, "int64") REG("r12", 64, "int64")
	REG("r13", 64, "int64") REG("r14", 64, "int64") REG("r15", 64, "int64") REG("rip", 64, "code_ptr")
	REG("eflags", 32, "i386_eflags") REG("cs", 32, "int32") REG("ss", 32, "int32") REG("ds", 32, "int32")
	REG("es", 32, "int32") REG("fs", 32, "int32") REG("gs", 32, "int32")
	REG("st0", 80, "i387_ext") REG("st1", 80, "i387_ext") REG("st2", 80, "i387_ext") REG("st3", 80, "i387_ext")
	REG("st4", 80, "i387_ext") REG("st5", 80, "i387_ext") REG("st6", 80, "i387_ext") REG("st7", 80, "i387_ext")
	REGG("fctrl", 32, "int", "float") REGG("fstat", 32, "int", "float") REGG("ftag", 32, "int", "float")
	REGG("fiseg", 32, "int", "float") REGG("fioff", 32, "int", "float") REGG("foseg", 32, "int", "float")
	REGG("fooff", 32, "int", "float") REGG("fop", 32, "int", "float")
	"</feature><feature name=\"org.gnu.gdb.i386.sse\">"
	"<vector id=\"v4f\" type=\"ieee_single\" count=\"4\"/><vector id=\"v2d\" type=\"ieee_double\" count=\"2\"/>"
	"<vector id=\"v16i8\" type=\"int8\" count=\"16\"/><vector id=\"v8i16\" type=\"int16\" count=\"8\"/>"
	"<vector id=\"v4i32\" type=\"int32\" count=\"4\"/><vector id=\"v2i64\" type=\"int64\" count=\"2\"/>"
	"<union id=\"vec128\"><field name=\"v4_float\" type=\"v4f\"/><field name=\"v2_double\" type=\"v2d\"/>"
	"<field name=\"v16_int8\" type=\"v16i8\"/><field name=\"v8_int16\" type=\"v8i16\"/>"
	"<field name=\"v4_int32\" type=\"v4i32\"/><field name=\"v2_int64\" type=\"v2i64\"/>"
	"<field name=\"uint128\" type=\"uint128\"/></union>"
	"<flags id=\"i386_mxcsr\" size=\"4\">" FLAG("IE", 0) FLAG("DE", 1) FLAG("ZE", 2) FLAG("OE", 3) FLAG("UE", 4)
	FLAG("PE", 5) FLAG("DAZ", 6) FLAG("IM", 7) FLAG("DM", 8) FLAG("ZM", 9) FLAG("OM", 10) FLAG("UM", 11)
	FLAG("PM", 12) FLAG("FZ", 15) "</flags>"
	REG("xmm0", 128, "vec128") REG("xmm1", 128, "vec128") REG("xmm2", 128, "vec128") REG("xmm3", 128, "vec128")
	REG("xmm4", 128, "vec128") REG("xmm5", 128, "vec128") REG("xmm6", 128, "vec128") REG("xmm7", 128, "vec128")
	REG("xmm8", 128, "vec128") REG("xmm9", 128, "vec128") REG("xmm10", 128, "vec128") REG("xmm11", 128, "vec128")
	REG("xmm12", 128, "vec128") REG("xmm13", 128, "vec128") REG("xmm14", 128, "vec128") REG("xmm15", 128, "vec128")
	REGG("mxcsr", 32, "i386_mxcsr", "vector")
	"</feature><feature name=\"org.gnu.gdb.i386.segments\">"
	REG("fs_base", 64, "int") REG("gs_base", 64, "int")
	"</feature><feature name=\"org.lkvm.x86.system\">"
	REGG("k_gs_base", 64, "int", "system") REGG("cr0", 64, "int", "system") REGG("cr2", 64, "int", "system")
	REGG("cr3", 64, "int", "system") REGG("cr4", 64, "int", "system") REGG("cr8", 64, "int", "system")
	REGG("efer", 64, "int", "system")
	"</feature></target>";

/* Register numbers, in the description's order. */
enum {
	R_RAX = 0, R_RIP = 16, R_EFLAGS, R_CS, R_SS, R_DS, R_ES, R_FS, R_GS, R_ST0, R_FCTRL = 32, R_FSTAT, R_FTAG,
	R_FISEG, R_FIOFF, R_FOSEG, R_FOOFF, R_FOP, R_XMM0 = 40, R_MXCSR = 56, R_FS_BASE, R_GS_BASE, R_K_GS_BASE,
	R_CR0, R_CR2, R_CR3, R_CR4, R_CR8, R_EFER, NR_REGS
};

static unsigned reg_size(unsigned n)
{
	if (n < R_EFLAGS)
		return 8;
	if (n < R_ST0)
		return 4;
	if (n < R_FCTRL)
		return 10;
	if (n < R_XMM0)
		return 4;
	if (n < R_MXCSR)
		return 16;
	if (n == R_MXCSR)
		return 4;
	return 8;
}

#define MSR_KERNEL_GS_BASE 0xc0000102

/* Everything the registers come from, and which parts a write changed. */
struct x86_state {
	struct kvm_regs r;
	struct kvm_sregs s;
	struct kvm_fpu f;
	uint64_t kgs;
	bool have_fpu, have_kgs;
};
enum { DIRTY_REGS = 1, DIRTY_SREGS = 2, DIRTY_FPU = 4, DIRTY_MSR = 8 };

static int load(struct vcpu *v, struct x86_state *st)
{
	memset(st, 0, sizeof(*st));
	if (ioctl(v->fd, KVM_GET_REGS, &st->r) < 0 || ioctl(v->fd, KVM_GET_SREGS, &st->s) < 0)
		return err_errno("vCPU %d: reading registers", v->id);
	/* The x87/SSE state and KERNEL_GS_BASE are extras: zeros where KVM will not give them. */
	st->have_fpu = ioctl(v->fd, KVM_GET_FPU, &st->f) == 0;
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} m = { .hdr.nmsrs = 1, .e.index = MSR_KERNEL_GS_BASE };
	st->have_kgs = ioctl(v->fd, KVM_GET_MSRS, &m) == 1;
	st->kgs = st->have_kgs ? m.e.data : 0;
	return 0;
}

static int store(struct vcpu *v, struct x86_state *st, unsigned dirty)
{
	if ((dirty & DIRTY_SREGS) && ioctl(v->fd, KVM_SET_SREGS, &st->s) < 0)
		return err_errno("vCPU %d: KVM_SET_SREGS", v->id);
	if ((dirty & DIRTY_REGS) && ioctl(v->fd, KVM_SET_REGS, &st->r) < 0)
		return err_errno("vCPU %d: KVM_SET_REGS", v->id);
	if ((dirty & DIRTY_FPU) && ioctl(v->fd, KVM_SET_FPU, &st->f) < 0)
		return err_errno("vCPU %d: KVM_SET_FPU", v->id);
	if (dirty & DIRTY_MSR) {
		struct {
			struct kvm_msrs hdr;
			struct kvm_msr_entry e;
		} m = { .hdr.nmsrs = 1, .e = { .index = MSR_KERNEL_GS_BASE, .data = st->kgs } };
		if (ioctl(v->fd, KVM_SET_MSRS, &m) != 1)
			return err_set("vCPU %d: KVM_SET_MSRS KERNEL_GS_BASE refused", v->id);
	}
	return 0;
}

static __u64 *gpr(struct kvm_regs *r, unsigned n)
{
	/* gdb's order: rax rbx rcx rdx rsi rdi rbp rsp r8-r15 (struct kvm_regs has rsp before rbp). */
	__u64 *const map[16] = { &r->rax, &r->rbx, &r->rcx, &r->rdx, &r->rsi, &r->rdi, &r->rbp, &r->rsp,
				 &r->r8, &r->r9, &r->r10, &r->r11, &r->r12, &r->r13, &r->r14, &r->r15 };
	return map[n];
}

static struct kvm_segment *seg(struct kvm_sregs *s, unsigned n)
{
	struct kvm_segment *const map[6] = { &s->cs, &s->ss, &s->ds, &s->es, &s->fs, &s->gs };
	return map[n - R_CS];
}

/* FXSAVE keeps one "valid" bit per physical x87 register; gdb wants the full 2-bit tags. */
static uint16_t full_tag(const struct kvm_fpu *f)
{
	unsigned top = (f->fsw >> 11) & 7;
	uint16_t tag = 0;
	for (unsigned phys = 0; phys < 8; phys++) {
		unsigned t = 3;	/* empty */
		if (f->ftwx & (1u << phys)) {
			const uint8_t *r = f->fpr[(phys - top) & 7];
			unsigned exp = (r[9] & 0x7f) << 8 | r[8];
			uint64_t mant = get_le64(r);
			if (exp == 0x7fff)
				t = 2;			/* NaN or infinity */
			else if (exp == 0)
				t = mant ? 2 : 1;	/* denormal : zero */
			else
				t = mant >> 63 ? 0 : 2;	/* valid : unnormal */
		}
		tag |= t << (2 * phys);
	}
	return tag;
}

static uint8_t abridged_tag(uint16_t tag)
{
	uint8_t a = 0;
	for (unsigned phys = 0; phys < 8; phys++)
		if (((tag >> (2 * phys)) & 3) != 3)
			a |= 1u << phys;
	return a;
}

static void get_reg(struct x86_state *st, unsigned n, uint8_t *b)
{
	struct kvm_fpu *f = &st->f;
	memset(b, 0, reg_size(n));
	if (n < R_RIP)
		put_le64(b, *gpr(&st->r, n));
	else if (n == R_RIP)
		put_le64(b, st->r.rip);
	else if (n == R_EFLAGS)
		put_le32(b, st->r.rflags);
	else if (n < R_ST0)
		put_le32(b, seg(&st->s, n)->selector);
	else if (n < R_FCTRL)
		memcpy(b, f->fpr[n - R_ST0], 10);
	else if (n == R_FCTRL)
		put_le32(b, f->fcw);
	else if (n == R_FSTAT)
		put_le32(b, f->fsw);
	else if (n == R_FTAG)
		put_le32(b, st->have_fpu ? full_tag(f) : 0xffff);
	else if (n == R_FISEG)
		put_le32(b, f->last_ip >> 32);
	else if (n == R_FIOFF)
		put_le32(b, f->last_ip);
	else if (n == R_FOSEG)
		put_le32(b, f->last_dp >> 32);
	else if (n == R_FOOFF)
		put_le32(b, f->last_dp);
	else if (n == R_FOP)
		put_le32(b, f->last_opcode);
	else if (n < R_MXCSR)
		memcpy(b, f->xmm[n - R_XMM0], 16);
	else if (n == R_MXCSR)
		put_le32(b, f->mxcsr);
	else if (n == R_FS_BASE)
		put_le64(b, st->s.fs.base);
	else if (n == R_GS_BASE)
		put_le64(b, st->s.gs.base);
	else if (n == R_K_GS_BASE)
		put_le64(b, st->kgs);
	else if (n == R_CR0)
		put_le64(b, st->s.cr0);
	else if (n == R_CR2)
		put_le64(b, st->s.cr2);
	else if (n == R_CR3)
		put_le64(b, st->s.cr3);
	else if (n == R_CR4)
		put_le64(b, st->s.cr4);
	else if (n == R_CR8)
		put_le64(b, st->s.cr8);
	else
		put_le64(b, st->s.efer);
}

/* Set register n from b (its full size) in st; which parts changed go to *dirty. */
static int set_reg(struct x86_state *st, unsigned n, const uint8_t *b, unsigned *dirty)
{
	struct kvm_fpu *f = &st->f;
	uint8_t cur[16];
	get_reg(st, n, cur);
	if (!memcmp(cur, b, reg_size(n)))
		return 0;	/* unchanged: 'G' sends every register back */
	uint64_t v = get_le64(b), v32 = get_le32(b);
	if (n < R_RIP) {
		*gpr(&st->r, n) = v;
	} else if (n == R_RIP) {
		st->r.rip = v;
	} else if (n == R_EFLAGS) {
		st->r.rflags = (st->r.rflags & ~0xffffffffULL) | v32 | 2;
	} else if (n < R_ST0) {
		struct kvm_segment *sg = seg(&st->s, n);
		if (st->s.cr0 & 1)
			return err_set("a segment selector can be changed in real mode only (it needs a descriptor load)");
		sg->selector = v32 & 0xffff;
		sg->base = (v32 & 0xffff) << 4;
		*dirty |= DIRTY_SREGS;
		return 0;
	} else if (n < R_MXCSR || n == R_MXCSR) {
		if (!st->have_fpu)
			return err_set("this KVM gives no x87/SSE state to change");
		if (n < R_FCTRL)
			memcpy(f->fpr[n - R_ST0], b, 10);
		else if (n == R_FCTRL)
			f->fcw = v32;
		else if (n == R_FSTAT)
			f->fsw = v32;
		else if (n == R_FTAG)
			f->ftwx = abridged_tag(v32);
		else if (n == R_FISEG)
			f->last_ip = (f->last_ip & 0xffffffffULL) | (uint64_t)v32 << 32;
		else if (n == R_FIOFF)
			f->last_ip = (f->last_ip & ~0xffffffffULL) | v32;
		else if (n == R_FOSEG)
			f->last_dp = (f->last_dp & 0xffffffffULL) | (uint64_t)v32 << 32;
		else if (n == R_FOOFF)
			f->last_dp = (f->last_dp & ~0xffffffffULL) | v32;
		else if (n == R_FOP)
			f->last_opcode = v32;
		else if (n < R_MXCSR)
			memcpy(f->xmm[n - R_XMM0], b, 16);
		else
			f->mxcsr = v32;
		*dirty |= DIRTY_FPU;
		return 0;
	} else if (n == R_K_GS_BASE) {
		st->kgs = v;
		*dirty |= DIRTY_MSR;
		return 0;
	} else {
		__u64 *const map[] = { &st->s.fs.base, &st->s.gs.base, NULL, &st->s.cr0, &st->s.cr2, &st->s.cr3,
				       &st->s.cr4, &st->s.cr8, &st->s.efer };
		*map[n - R_FS_BASE] = v;
		*dirty |= DIRTY_SREGS;
		return 0;
	}
	*dirty |= DIRTY_REGS;
	return 0;
}

int gdb_target_read_regs(struct vcpu *v, uint8_t *buf)
{
	struct x86_state st;
	if (load(v, &st) < 0)
		return -1;
	size_t off = 0;
	for (unsigned n = 0; n < NR_REGS; n++) {
		get_reg(&st, n, buf + off);
		off += reg_size(n);
	}
	return off;
}

int gdb_target_write_regs(struct vcpu *v, const uint8_t *buf, size_t len)
{
	struct x86_state st;
	unsigned dirty = 0;
	if (load(v, &st) < 0)
		return -1;
	size_t off = 0;
	for (unsigned n = 0; n < NR_REGS && off + reg_size(n) <= len; n++) {
		if (set_reg(&st, n, buf + off, &dirty) < 0)
			return -1;
		off += reg_size(n);
	}
	return store(v, &st, dirty);
}

int gdb_target_read_reg(struct vcpu *v, unsigned n, uint8_t *buf)
{
	struct x86_state st;
	if (n >= NR_REGS)
		return err_set("no register %u", n);
	if (load(v, &st) < 0)
		return -1;
	get_reg(&st, n, buf);
	return reg_size(n);
}

int gdb_target_write_reg(struct vcpu *v, unsigned n, const uint8_t *buf, size_t len)
{
	struct x86_state st;
	unsigned dirty = 0;
	if (n >= NR_REGS)
		return err_set("no register %u", n);
	if (len != reg_size(n))
		return err_set("register %u has %u bytes, not %zu", n, reg_size(n), len);
	if (load(v, &st) < 0 || set_reg(&st, n, buf, &dirty) < 0)
		return -1;
	return store(v, &st, dirty);
}

uint64_t gdb_target_pc(struct vcpu *v)
{
	struct kvm_regs r;
	return ioctl(v->fd, KVM_GET_REGS, &r) < 0 ? 0 : r.rip;
}

int gdb_target_paging(struct vcpu *v, struct gdb_paging *pg)
{
	struct kvm_sregs s;
	if (ioctl(v->fd, KVM_GET_SREGS, &s) < 0)
		return err_errno("vCPU %d: KVM_GET_SREGS", v->id);
	pg->cr0 = s.cr0;
	pg->cr3 = s.cr3;
	pg->cr4 = s.cr4;
	pg->efer = s.efer;
	return 0;
}

#define CR0_PG (1ULL << 31)
#define CR4_PSE (1ULL << 4)
#define CR4_PAE (1ULL << 5)
#define CR4_LA57 (1ULL << 12)
#define EFER_LMA (1ULL << 10)
#define PTE_P 1ULL
#define PTE_PS (1ULL << 7)
#define ADDR_MASK 0x000ffffffffff000ULL	/* bits 12-51: where the next table or the page is */

/* One page-table entry of size bytes (4 or 8) from guest RAM; false if it is not RAM. */
static bool read_entry(const struct guest_mem *mem, uint64_t gpa, unsigned size, uint64_t *e)
{
	const uint8_t *p = guest_ptr(mem, gpa, size);
	if (!p)
		return false;
	*e = size == 8 ? get_le64(p) : get_le32(p);
	return true;
}

static int found(uint64_t base, uint64_t page, uint64_t va, uint64_t *gpa, uint64_t *left)
{
	*gpa = base + (va & (page - 1));
	*left = page - (va & (page - 1));
	return 0;
}

int gdb_translate(const struct guest_mem *mem, const struct gdb_paging *pg, uint64_t va, uint64_t *gpa,
		  uint64_t *left)
{
	uint64_t e;
	if (!(pg->cr0 & CR0_PG))
		return found(va & ~0xfffULL, 0x1000, va, gpa, left);
	if (!(pg->cr4 & CR4_PAE)) {	/* 32-bit paging: 4 KiB pages, or 4 MiB ones with PSE */
		if (va >> 32)
			return -1;
		if (!read_entry(mem, (pg->cr3 & 0xfffff000) + ((va >> 22) & 0x3ff) * 4, 4, &e) || !(e & PTE_P))
			return -1;
		if ((e & PTE_PS) && (pg->cr4 & CR4_PSE))	/* PSE-36: bits 13-20 are physical bits 32-39 */
			return found((e & 0xffc00000) | ((e >> 13) & 0xff) << 32, 1 << 22, va, gpa, left);
		if (!read_entry(mem, (e & 0xfffff000) + ((va >> 12) & 0x3ff) * 4, 4, &e) || !(e & PTE_P))
			return -1;
		return found(e & 0xfffff000, 0x1000, va, gpa, left);
	}
	uint64_t table;
	int shift;
	if (!(pg->efer & EFER_LMA)) {	/* PAE: four PDPTEs, then 2 MiB or 4 KiB pages */
		if (va >> 32)
			return -1;
		if (!read_entry(mem, (pg->cr3 & 0xffffffe0) + ((va >> 30) & 3) * 8, 8, &e) || !(e & PTE_P))
			return -1;
		table = e & ADDR_MASK;
		shift = 21;
	} else {			/* long mode: 4 levels, or 5 with LA57 */
		int bits = pg->cr4 & CR4_LA57 ? 57 : 48;
		int64_t sx = (int64_t)(va << (64 - bits)) >> (64 - bits);
		if ((uint64_t)sx != va)
			return -1;	/* not canonical */
		table = pg->cr3 & ADDR_MASK;
		shift = bits - 9;
	}
	for (;; shift -= 9) {
		if (!read_entry(mem, table + ((va >> shift) & 0x1ff) * 8, 8, &e) || !(e & PTE_P))
			return -1;
		uint64_t page = 1ULL << shift;
		if (shift == 12 || ((e & PTE_PS) && (shift == 21 || shift == 30)))
			return found(e & ADDR_MASK & ~(page - 1), page, va, gpa, left);
		table = e & ADDR_MASK;
	}
}

void gdb_target_debugregs(const struct gdb_hw_slot *slots, __u64 debugreg[8])
{
	uint64_t dr7 = 0x400;	/* bit 10 always reads as one */
	memset(debugreg, 0, 8 * sizeof(*debugreg));
	for (int i = 0; i < GDB_HW_SLOTS; i++) {
		const struct gdb_hw_slot *s = &slots[i];
		if (s->kind == GDB_HW_FREE)
			continue;
		/* R/W: 00 execute, 01 write, 11 read or write (x86 has no read-only kind). */
		unsigned rw = s->kind == GDB_HW_EXEC ? 0 : s->kind == GDB_HW_WRITE ? 1 : 3;
		/* LEN: 00 one byte, 01 two, 11 four, 10 eight; instructions take 00. */
		unsigned len = s->kind == GDB_HW_EXEC ? 0 : s->len == 2 ? 1 : s->len == 4 ? 3 : s->len == 8 ? 2 : 0;
		debugreg[i] = s->addr;
		dr7 |= (1ULL << (2 * i)) | (uint64_t)rw << (16 + 4 * i) | (uint64_t)len << (18 + 4 * i);
		dr7 |= 0x300;	/* LE, GE: exact data breakpoints */
	}
	debugreg[7] = dr7;
}

unsigned gdb_target_dr6_slots(uint64_t dr6)
{
	return dr6 & 0xf;
}

bool gdb_target_dr6_step(uint64_t dr6)
{
	return dr6 & (1 << 14);	/* BS */
}
