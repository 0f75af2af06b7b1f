/*
 * KVM could not emulate an instruction: decode it, run it here, resume. The
 * memory operand's linear address goes through KVM_TRANSLATE, then to RAM
 * through guest_ptr() or to the MMIO bus. KVM queues a #UD along with such an
 * exit at CPL 0; once we emulated the instruction that #UD must be dropped.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include "emulate.h"
#include "util.h"
#include "vm.h"

static void describe(char *buf, size_t len, const uint8_t *b, int n)
{
	buf[0] = 0;
	for (int i = 0; i < n && i < 15; i++)
		snprintf(buf + 3 * i, len - 3 * i, "%02x ", b[i]);
}

/* Linear address to guest-physical, as the vCPU sees it now. */
static int translate(struct vcpu *v, uint64_t lin, uint64_t *gpa)
{
	struct kvm_translation t = { .linear_address = lin };
	if (ioctl(v->fd, KVM_TRANSLATE, &t) < 0 || !t.valid)
		return -1;
	*gpa = t.physical_address;
	return 0;
}

static int read_operand(struct vcpu *v, uint64_t lin, void *buf, int len)
{
	uint64_t gpa;
	if (translate(v, lin, &gpa) < 0)
		return -1;
	void *p = guest_ptr(&v->vm->mem, gpa, len);
	if (p)
		memcpy(buf, p, len);
	else
		bus_access(&v->vm->mmio, gpa, buf, len, false);
	return 0;
}

static int mem_read(void *ctx, uint64_t gpa, void *buf, unsigned len)
{
	struct vm *vm = ctx;
	void *p = guest_ptr(&vm->mem, gpa, len);
	if (p) {
		memcpy(buf, p, len);
		return 0;
	}
	return bus_access(&vm->mmio, gpa, buf, len, false) ? 0 : -1;
}

static int mem_write(void *ctx, uint64_t gpa, const void *buf, unsigned len)
{
	struct vm *vm = ctx;
	void *p = guest_ptr(&vm->mem, gpa, len);
	if (p) {
		memcpy(p, buf, len);
		return 0;
	}
	return bus_access(&vm->mmio, gpa, (void *)buf, len, true) ? 0 : -1;
}

static const struct emu_mem_ops vm_mem_ops = { mem_read, mem_write };

/* int3 / int n in 64-bit mode: push the frame and enter the handler ourselves. */
static int deliver_soft_int(struct vcpu *v, const struct emu_insn *in, struct kvm_regs *r, struct kvm_sregs *s,
			    const char *desc)
{
	if (!(s->efer & 0x400) || !s->cs.l)
		return err_set("%s (%sat rip 0x%llx) outside 64-bit mode: not emulated", emu_name(in->op), desc,
			       (unsigned long long)r->rip);
	struct emu_lm_state st = {
		.rip = r->rip, .rsp = r->rsp, .rflags = r->rflags,
		.cr0 = s->cr0, .cr3 = s->cr3, .cr4 = s->cr4, .efer = s->efer,
		.cs = s->cs.selector, .ss = s->ss.selector, .cpl = s->cs.selector & 3,
		.idt_base = s->idt.base, .idt_limit = s->idt.limit,
		.gdt_base = s->gdt.base, .gdt_limit = s->gdt.limit, .tr_base = s->tr.base,
	};
	unsigned vec = in->op == EMU_INT3 ? 3 : in->imm;
	if (emu_deliver_lm(&st, &vm_mem_ops, v->vm, vec, r->rip + in->len) < 0)
		return err_set("%s (%sat rip 0x%llx): delivering vector %u faulted (bad gate, descriptor or stack)",
			       emu_name(in->op), desc, (unsigned long long)r->rip, vec);
	r->rip = st.rip;
	r->rsp = st.rsp;
	r->rflags = st.rflags;
	uint64_t d = st.cs_desc;
	s->cs.selector = st.cs;
	s->cs.base = 0;
	s->cs.limit = 0xffffffff;
	s->cs.type = (d >> 40) & 0xf;
	s->cs.s = 1;
	s->cs.dpl = st.cpl;
	s->cs.present = 1;
	s->cs.avl = (d >> 52) & 1;
	s->cs.l = 1;
	s->cs.db = 0;
	s->cs.g = 1;
	s->cs.unusable = 0;
	if (st.ss != s->ss.selector) {
		/* Null SS at the new CPL; SVM takes the CPL from SS.DPL. */
		s->ss.selector = st.ss;
		s->ss.base = 0;
		s->ss.limit = 0xffffffff;
		s->ss.type = 3;
		s->ss.s = 1;
		s->ss.dpl = st.cpl;
		s->ss.present = 1;
		s->ss.db = 1;
		s->ss.g = 1;
		s->ss.unusable = 0;
	}
	if (ioctl(v->fd, KVM_SET_REGS, r) < 0 || ioctl(v->fd, KVM_SET_SREGS, s) < 0)
		return err_errno("emulating %s: writing registers", emu_name(in->op));
	return 0;
}

/* Copy len bytes from a linear address, page by page, through KVM_TRANSLATE. */
static int read_linear(struct vcpu *v, uint64_t lin, void *buf, unsigned len)
{
	uint8_t *b = buf;
	while (len) {
		unsigned chunk = MIN(len, 0x1000 - (lin & 0xfff));
		uint64_t gpa;
		if (translate(v, lin, &gpa) < 0 || mem_read(v->vm, gpa, b, chunk) < 0)
			return -1;
		lin += chunk;
		b += chunk;
		len -= chunk;
	}
	return 0;
}

/* A segment register loaded from an 8-byte GDT descriptor. */
static void load_segment(struct kvm_segment *sg, uint16_t sel, uint64_t d)
{
	sg->selector = sel;
	sg->base = ((d >> 16) & 0xffffff) | ((d >> 32) & 0xff000000);
	uint32_t limit = (d & 0xffff) | ((d >> 32) & 0xf0000);
	sg->g = (d >> 55) & 1;
	sg->limit = sg->g ? limit << 12 | 0xfff : limit;
	sg->type = (d >> 40) & 0xf;
	sg->s = (d >> 44) & 1;
	sg->dpl = (d >> 45) & 3;
	sg->present = (d >> 47) & 1;
	sg->avl = (d >> 52) & 1;
	sg->l = (d >> 53) & 1;
	sg->db = (d >> 54) & 1;
	sg->unusable = 0;
}

/* The GDT descriptor for sel, if it is present and of the wanted kind (code, or writable data). */
static int gdt_descriptor(struct vcpu *v, const struct kvm_sregs *s, uint16_t sel, bool code, uint64_t *d)
{
	if ((sel & ~3) == 0 || (sel & 4) || (sel | 7) > s->gdt.limit ||
	    read_linear(v, s->gdt.base + (sel & ~7), d, 8) < 0)
		return -1;
	bool present = (*d >> 47) & 1, is_code = (*d >> 43) & 1, system = !((*d >> 44) & 1);
	if (!present || system || is_code != code || (!code && !((*d >> 41) & 1)))
		return -1;
	return 0;
}

/* iret in 32/16-bit protected mode: pop the frame, load CS (and SS for an outer ring). */
static int iret_pm(struct vcpu *v, struct emu_insn *in, struct kvm_regs *r, struct kvm_sregs *s, const char *desc)
{
	if (!s->cs.db)
		in->opsize = in->opsize == 2 ? 4 : 2;	/* 16-bit code: 66h means 32 */
	uint64_t sp_mask = s->ss.db ? 0xffffffff : 0xffff;
	uint8_t frame[20];
	struct emu_iret out;
	uint64_t cs_d, ss_d = 0;
	int cpl = s->cs.selector & 3;
	if (read_linear(v, s->ss.base + (r->rsp & sp_mask), frame, in->opsize * 5) < 0)
		return err_set("iret (%sat rip 0x%llx): stack not mapped (#SS not emulated)", desc,
			       (unsigned long long)r->rip);
	if (emu_iret_pm(in, frame, cpl, r->rflags, &out) < 0 ||
	    gdt_descriptor(v, s, out.cs, true, &cs_d) < 0 ||
	    (out.outer && gdt_descriptor(v, s, out.ss, false, &ss_d) < 0))
		return err_set("iret (%sat rip 0x%llx): a task, virtual-8086 or invalid return (not emulated)", desc,
			       (unsigned long long)r->rip);
	load_segment(&s->cs, out.cs, cs_d);
	if (out.outer) {
		load_segment(&s->ss, out.ss, ss_d);
		r->rsp = out.esp;
	} else {
		r->rsp = (r->rsp & ~sp_mask) | ((r->rsp + out.frame_len) & sp_mask);
	}
	r->rip = out.eip;
	r->rflags = out.eflags;
	if (ioctl(v->fd, KVM_SET_REGS, r) < 0 || ioctl(v->fd, KVM_SET_SREGS, s) < 0)
		return err_errno("emulating iret: writing registers");
	return 0;
}

/* Linear address of a memory operand. */
static uint64_t operand_lin(const struct emu_insn *in, const struct kvm_sregs *s, const uint64_t *vals, uint64_t rip)
{
	const struct kvm_segment *segs[] = { &s->es, &s->cs, &s->ss, &s->ds, &s->fs, &s->gs };
	/* Default segment: SS for rsp/rbp-based addresses, else DS. */
	int sg = in->seg >= 0 ? in->seg : (in->base == 4 || in->base == 5) ? 2 : 3;
	/* In 64-bit mode only FS and GS have bases. */
	uint64_t base = s->cs.l && sg < 4 ? 0 : segs[sg]->base;
	return base + emu_ea(in, vals, rip);
}

/* cmpxchg8b/16b: atomic on RAM (host lock cmpxchg), read-compare-write on MMIO. */
static int cmpxchg(struct vcpu *v, const struct emu_insn *in, struct kvm_regs *r, const struct kvm_sregs *s,
		   uint64_t *vals, const char *desc)
{
	unsigned size = in->opsize;
	uint64_t lin = operand_lin(in, s, vals, r->rip), gpa;
	if (lin & (size - 1))
		return err_set("%s (%sat rip 0x%llx): operand 0x%llx is misaligned (#GP not emulated)", emu_name(in->op),
			       desc, (unsigned long long)r->rip, (unsigned long long)lin);
	if (translate(v, lin, &gpa) < 0)
		return err_set("%s (%sat rip 0x%llx): operand 0x%llx is not mapped (#PF not emulated)", emu_name(in->op),
			       desc, (unsigned long long)r->rip, (unsigned long long)lin);
	uint64_t flags = r->rflags;
	void *p = guest_ptr(&v->vm->mem, gpa, size);
	if (p) {
		if (emu_cmpxchg_atomic(in, p, vals, &flags) < 0)
			return err_set("%s: host mapping misaligned", emu_name(in->op));
	} else {
		uint8_t cur[16];
		if (!bus_access(&v->vm->mmio, gpa, cur, size, false))
			memset(cur, 0xff, size);
		if (emu_cmpxchg_value(in, cur, vals, &flags))
			bus_access(&v->vm->mmio, gpa, cur, size, true);
	}
	r->rflags = flags;
	return 0;
}

/* The guest's TSC and TSC_AUX, as rdtscp/rdpid would read them. */
static int read_tsc(struct vcpu *v, uint64_t *tsc, uint64_t *aux)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[2];
	} m = { .hdr.nmsrs = 2, .e = { { .index = 0x10 }, { .index = 0xc0000103 } } };
	int got = ioctl(v->fd, KVM_GET_MSRS, &m);
	if (got < 1)
		return -1;
	*tsc = m.e[0].data;
	*aux = got == 2 ? m.e[1].data : 0;
	return 0;
}

/* Instructions on registers only (xgetbv, rdtscp, x87 control, ...). */
static int regs_only(struct vcpu *v, const struct emu_insn *in, struct kvm_regs *r, const struct kvm_sregs *s,
		     __u64 **gpr, const char *desc)
{
	struct emu_regs er = { 0 };
	struct kvm_fpu fpu;
	for (int i = 0; i < 16; i++)
		er.gpr[i] = *gpr[i];
	if (emu_needs_fpu(in->op)) {
		if (ioctl(v->fd, KVM_GET_FPU, &fpu) < 0)
			return err_errno("emulating %s: KVM_GET_FPU", emu_name(in->op));
		er.fcw = fpu.fcw;
		er.fsw = fpu.fsw;
		er.ftw = fpu.ftwx;
	}
	if (emu_needs_tsc(in->op) && read_tsc(v, &er.tsc, &er.tsc_aux) < 0)
		return err_errno("emulating %s: reading the TSC", emu_name(in->op));
	if (in->op == EMU_FNSTCW || in->op == EMU_FLDCW || in->op == EMU_FNSTSW_M) {
		uint8_t m16[2];
		uint64_t vals[16], gpa;
		for (int i = 0; i < 16; i++)
			vals[i] = *gpr[i];
		uint64_t lin = operand_lin(in, s, vals, r->rip);
		if ((lin & 0xfff) == 0xfff || translate(v, lin, &gpa) < 0)
			return err_set("%s (%sat rip 0x%llx): operand 0x%llx not mapped or crosses a page", emu_name(in->op),
				       desc, (unsigned long long)r->rip, (unsigned long long)lin);
		if (in->op == EMU_FLDCW && mem_read(v->vm, gpa, m16, 2) < 0)
			memset(m16, 0xff, 2);
		if (emu_x87_mem(in, &er, m16) == 1)
			mem_write(v->vm, gpa, m16, 2);
	} else if (emu_exec_regs(in, &er) < 0)
		return err_set("lkvm refuses this form of %s (%sat rip 0x%llx)", emu_name(in->op), desc,
			       (unsigned long long)r->rip);
	if (er.fpu_dirty) {
		fpu.fcw = er.fcw;
		fpu.fsw = er.fsw;
		fpu.ftwx = er.ftw;
		if (ioctl(v->fd, KVM_SET_FPU, &fpu) < 0)
			return err_errno("emulating %s: KVM_SET_FPU", emu_name(in->op));
	}
	for (int i = 0; i < 16; i++)
		*gpr[i] = er.gpr[i];
	return 0;
}

int emulate_kvm_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	struct kvm_regs r;
	struct kvm_sregs s;
	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 || ioctl(v->fd, KVM_GET_SREGS, &s) < 0)
		return err_errno("emulation: reading registers");
	uint8_t bytes[16] = { 0 };
	int n = 0;
	if (run->emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) {
		n = MIN(run->emulation_failure.insn_size, sizeof(bytes));
		memcpy(bytes, run->emulation_failure.insn_bytes, n);
	} else {
		uint64_t lin = s.cs.base + r.rip, gpa;
		for (; n < 15 && translate(v, lin + n, &gpa) == 0; n++) {
			uint8_t *p = guest_ptr(&v->vm->mem, gpa, 1);
			if (!p)
				break;
			bytes[n] = *p;
		}
	}
	char desc[64];
	describe(desc, sizeof(desc), bytes, n);
	bool long_mode = s.cs.l;
	struct emu_insn in;
	bool code16 = !(s.cr0 & 1) || (!long_mode && !s.cs.db);
	bool pm16_iret = (s.cr0 & 1) && !(r.rflags & EMU_RFLAGS_VM);	/* iret decodes the same in 16-bit code */
	if (emu_decode(bytes, n, long_mode, &in) < 0 ||
	    (code16 && !emu_ok_in_16bit(in.op) && !(in.op == EMU_IRET && pm16_iret)))
		return err_set("unhandled instruction %sat rip 0x%llx (KVM could not emulate it, and neither can lkvm)",
			       desc, (unsigned long long)r.rip);
	__u64 *gpr[16] = { &r.rax, &r.rcx, &r.rdx, &r.rbx, &r.rsp, &r.rbp, &r.rsi, &r.rdi,
			      &r.r8, &r.r9, &r.r10, &r.r11, &r.r12, &r.r13, &r.r14, &r.r15 };
	uint64_t vals[16];
	for (int i = 0; i < 16; i++)
		vals[i] = *gpr[i];
	if (in.op == EMU_INT3 || in.op == EMU_INTN) {
		/* Where KVM emulates ring 0 (kvm_pvm) a debugger's int3 lands here, not in KVM_EXIT_DEBUG. */
		struct kvm_debug_exit_arch bp = { .exception = 3, .pc = s.cs.base + r.rip };
		if (in.op == EMU_INT3 && vcpu_debug_event(v, &bp))
			goto events;
		if (deliver_soft_int(v, &in, &r, &s, desc) < 0)
			return -1;
		goto events;
	}
	if (in.op == EMU_IRET) {
		if (iret_pm(v, &in, &r, &s, desc) < 0)
			return -1;
		goto events;
	}
	if (in.op == EMU_CMPXCHG8B || in.op == EMU_CMPXCHG16B) {
		if (cmpxchg(v, &in, &r, &s, vals, desc) < 0)
			return -1;
		for (int i = 0; i < 4; i++)
			*gpr[i] = vals[i];
		goto done;
	}
	if (in.op > EMU_STAC) {
		if (regs_only(v, &in, &r, &s, gpr, desc) < 0)
			return -1;
		goto done;
	}
	uint64_t src = 0;
	if (in.op == EMU_POPCNT || in.op == EMU_LZCNT || in.op == EMU_TZCNT) {
		if (in.mem) {
			struct kvm_segment *segs[] = { &s.es, &s.cs, &s.ss, &s.ds, &s.fs, &s.gs };
			/* Default segment: SS for rsp/rbp-based addresses, else DS. */
			int sg = in.seg >= 0 ? in.seg : (in.base == 4 || in.base == 5) ? 2 : 3;
			/* In 64-bit mode only FS and GS have bases. */
			uint64_t base = long_mode && sg < 4 ? 0 : segs[sg]->base;
			uint64_t lin = base + emu_ea(&in, vals, r.rip);
			if (read_operand(v, lin, &src, in.opsize) < 0)
				return err_set("emulating %s (%s): operand at 0x%llx is not mapped", emu_name(in.op), desc,
					       (unsigned long long)lin);
		} else {
			src = vals[in.rm];
		}
	}
	uint64_t flags = r.rflags;
	uint64_t res = emu_exec(&in, src, &flags);
	r.rflags = flags;
	if (in.op == EMU_POPCNT || in.op == EMU_LZCNT || in.op == EMU_TZCNT)
		*gpr[in.reg] = emu_merge(*gpr[in.reg], res, in.opsize);
done:
	r.rip += in.len;
	if (ioctl(v->fd, KVM_SET_REGS, &r) < 0)
		return err_errno("emulation: writing registers");
events:;
	/* Drop the #UD KVM queued with the failure: the instruction did run. */
	struct kvm_vcpu_events ev;
	if (ioctl(v->fd, KVM_GET_VCPU_EVENTS, &ev) == 0 && (ev.exception.injected || ev.exception.pending) &&
	    ev.exception.nr == 6) {
		ev.exception.injected = ev.exception.pending = 0;
		ev.flags &= ~(KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR | KVM_VCPUEVENT_VALID_SMM);
		ioctl(v->fd, KVM_SET_VCPU_EVENTS, &ev);
	}
	v->exits_emulated++;
	return 0;
}
