/*
 * lkvm's own instruction emulator, for instructions KVM reports it could not
 * emulate (KVM_INTERNAL_ERROR_EMULATION): on MMIO operands on any host, and
 * in guest ring 0 on hosts whose KVM emulates ring 0 (PVM). x86/emulate.c is
 * the pure decoder and executor (unit-tested); x86/emulate_kvm.c is the glue.
 */
#ifndef LKVM_EMULATE_H
#define LKVM_EMULATE_H

#include <stdbool.h>
#include <stdint.h>

enum emu_op {
	EMU_POPCNT, EMU_LZCNT, EMU_TZCNT, EMU_CLAC, EMU_STAC,
	/* Register-only instructions, run by emu_exec_regs(). */
	EMU_XGETBV, EMU_RDTSCP, EMU_RDPID, EMU_PAUSE, EMU_BSWAP,
	EMU_FWAIT, EMU_FNINIT, EMU_FNCLEX, EMU_FNSTSW_AX,
	/* Software interrupts, delivered by emu_deliver_lm(). */
	EMU_INT3, EMU_INTN,
	/* 0F C7 /1 m64 / REX.W m128, see emu_cmpxchg_*(). */
	EMU_CMPXCHG8B, EMU_CMPXCHG16B,
	/* x87 control words in memory (m16): D9 /7, D9 /5, DD /7. */
	EMU_FNSTCW, EMU_FLDCW, EMU_FNSTSW_M,
	/* Protected-mode (not 64-bit) iret, see emu_iret_pm(). */
	EMU_IRET,
};

struct emu_insn {
	enum emu_op op;
	int len;		/* bytes, prefixes included */
	int opsize;		/* 2, 4 or 8 */
	int reg;		/* destination register 0-15 */
	bool mem;		/* source is memory at ea (else register rm) */
	int rm;
	/* Effective address parts: base/index registers (-1 none), scale, displacement. */
	int base, index, scale;
	int64_t disp;
	bool rip_rel, addr32;
	int seg;		/* 0 es 1 cs 2 ss 3 ds 4 fs 5 gs; -1 default */
	uint8_t imm;		/* int n: the vector */
};

#define EMU_RFLAGS_CF 0x001ULL
#define EMU_RFLAGS_PF 0x004ULL
#define EMU_RFLAGS_AF 0x010ULL
#define EMU_RFLAGS_ZF 0x040ULL
#define EMU_RFLAGS_SF 0x080ULL
#define EMU_RFLAGS_OF 0x800ULL
#define EMU_RFLAGS_AC 0x40000ULL

/* Decode the instruction in bytes (64-bit mode if long, else 32-bit); 0 or -1 if not handled. */
int emu_decode(const uint8_t *bytes, int n, bool long_mode, struct emu_insn *in);
/* Effective address of a memory operand; gpr[16] in the usual order, rip of the instruction. */
uint64_t emu_ea(const struct emu_insn *in, const uint64_t *gpr, uint64_t rip);
/* Execute on a source value: returns the result and updates *rflags. */
uint64_t emu_exec(const struct emu_insn *in, uint64_t src, uint64_t *rflags);
/* Write an opsize result into a register as the CPU does (32-bit zero-extends, 16-bit merges). */
uint64_t emu_merge(uint64_t old, uint64_t val, int opsize);
/*
 * State the register-only instructions touch. The caller fills tsc/tsc_aux
 * when emu_needs_tsc(), the x87 words when emu_needs_fpu(), and writes back
 * gpr and the x87 words (if fpu_dirty) afterwards.
 */
struct emu_regs {
	uint64_t gpr[16];
	uint16_t fcw, fsw;
	uint8_t ftw;		/* abridged tag word as in struct kvm_fpu: 0 = all empty */
	bool fpu_dirty;
	uint64_t tsc, tsc_aux;
};
bool emu_needs_fpu(enum emu_op op);
bool emu_needs_tsc(enum emu_op op);
/* Run a register-only instruction; -1 for a form we refuse (e.g. xgetbv with ecx != 0). */
int emu_exec_regs(const struct emu_insn *in, struct emu_regs *r);
/* fnstcw/fnstsw m16 fill m16 and return 1 (write it back); fldcw reads m16, returns 0. */
int emu_x87_mem(const struct emu_insn *in, struct emu_regs *r, uint8_t *m16);

/* True for instructions without operands to decode (so also right in 16-bit code and real mode). */
bool emu_ok_in_16bit(enum emu_op op);

/* "popcnt", "lzcnt", ... for messages and the table in docs/emulator.md. */
const char *emu_name(enum emu_op op);

/* Guest-PHYSICAL memory for the page walk and interrupt delivery; 0 or -1. */
struct emu_mem_ops {
	int (*read)(void *ctx, uint64_t gpa, void *buf, unsigned len);
	int (*write)(void *ctx, uint64_t gpa, const void *buf, unsigned len);
};

/* What long-mode interrupt delivery reads and changes. */
struct emu_lm_state {
	uint64_t rip, rsp, rflags;
	uint64_t cr0, cr3, cr4, efer;
	uint16_t cs, ss;
	int cpl;
	uint64_t idt_base, gdt_base, tr_base;
	uint16_t idt_limit, gdt_limit;
	uint64_t cs_desc;	/* out: the new CS's 8-byte GDT descriptor */
};

#define EMU_RFLAGS_TF 0x100ULL
#define EMU_RFLAGS_IF 0x200ULL
#define EMU_RFLAGS_NT 0x4000ULL
#define EMU_RFLAGS_RF 0x10000ULL
#define EMU_RFLAGS_VM 0x20000ULL

/* Linear to guest-physical: paging off, or 4-level long-mode paging (2M/1G pages). */
int emu_translate(const struct emu_lm_state *s, const struct emu_mem_ops *m, void *ctx, uint64_t lin, bool write,
		  uint64_t *gpa);
/* Read/write len bytes at a linear address, page by page; 0 or -1 (not mapped / not RAM). */
int emu_lin_access(const struct emu_lm_state *s, const struct emu_mem_ops *m, void *ctx, uint64_t lin, void *buf,
		   unsigned len, bool write);
/*
 * Deliver a software interrupt (int3 / int n) in 64-bit mode through the IDT:
 * 16-byte gate, IST or RSP0 stack switch on a privilege change, 16-byte
 * alignment, push SS, RSP, RFLAGS, CS, next_rip; IF cleared for interrupt
 * gates, TF/NT/RF/VM always. 0 = done (s updated), -1 = a fault on the way
 * (not delivered: the caller stops the VM; nested #GP/#PF/#DF not emulated).
 */
int emu_deliver_lm(struct emu_lm_state *s, const struct emu_mem_ops *m, void *ctx, unsigned vector,
		   uint64_t next_rip);

/*
 * cmpxchg8b/16b. gpr[0..3] are rax, rcx, rdx, rbx. emu_cmpxchg_atomic() works
 * on a host pointer into guest RAM with a locked cmpxchg8b/16b of the host,
 * so it is atomic against other vCPUs; it needs 8/16-byte alignment (-1
 * otherwise: the CPU would #GP for 16b). emu_cmpxchg_value() is the same on a
 * copy, for MMIO: returns true when the new value in cur must be written back.
 */
int emu_cmpxchg_atomic(const struct emu_insn *in, void *host, uint64_t *gpr, uint64_t *rflags);
bool emu_cmpxchg_value(const struct emu_insn *in, uint8_t *cur, uint64_t *gpr, uint64_t *rflags);

/*
 * iret in 32/16-bit protected mode (KVM's emulator handles only real mode).
 * frame holds the bytes at SS:ESP (opsize 4: 20, opsize 2: 10 are enough);
 * cpl is the current privilege, flags the current EFLAGS. Fills the popped
 * EIP, CS, EFLAGS (merged as the CPU does for that CPL and IOPL), and for a
 * return to an outer ring, ESP and SS; frame_len is what leaves the stack.
 * -1 for what is not emulated: NT set (task return), VM in the popped flags
 * (virtual-8086), RPL below CPL (#GP on hardware).
 */
struct emu_iret {
	uint32_t eip, eflags, esp;
	uint16_t cs, ss;
	bool outer;
	int frame_len;
};
int emu_iret_pm(const struct emu_insn *in, const uint8_t *frame, int cpl, uint64_t flags, struct emu_iret *out);

/* x86/emulate_kvm.c: an emulation failure KVM reported, handled in user space; 0 = resume. */
struct vcpu;
int emulate_kvm_exit(struct vcpu *v);

#endif
