/*
 * Timer interrupts the way an SMP kernel takes them: PIT channel 0 at ~1 kHz
 * through the IOAPIC pin the MP table names for ISA IRQ 0, to the BSP's local
 * APIC, in 32-bit protected mode with an IDT. The PICs are remapped and fully
 * masked, so a tick can only come through the IOAPIC. Counts 100 ticks and
 * prints "ioapic pin N ticks 100"; any other vector or exception prints
 * "unexpected vector VV" and exits 4. So the test also checks that the MP
 * table's routing claim is true.
 */
#include "common.h"
#define IDT		0x60000
#define LAPIC		0xfee00000
#define TICK_VECTOR	0x30
#define TICKS		100

	.code16
	.globl	_start
_start:
	ENTER_PM32 pm_entry

	REAL_MODE_LIB
	GDT

	.code32
pm_entry:
	FLAT_SEGMENTS
	/* IDT: every vector to its stub (which reports it), the tick vector to tick. */
	mov	$IDT, %edi
	mov	$LIN(stubs), %edx
	mov	$256, %ecx
1:	mov	%edx, %eax
	and	$0xffff, %eax
	or	$SEL_CODE32 << 16, %eax
	mov	%eax, (%edi)
	mov	%edx, %eax
	and	$0xffff0000, %eax
	or	$0x8e00, %eax		/* present, DPL 0, 32-bit interrupt gate */
	mov	%eax, 4(%edi)
	add	$8, %edi
	add	$16, %edx
	loop	1b
	mov	$LIN(tick), %eax
	mov	%ax, IDT + TICK_VECTOR * 8
	shr	$16, %eax
	mov	%ax, IDT + TICK_VECTOR * 8 + 6
	lidt	LIN(idt_desc)

	/* PICs: vectors 0x20/0x28, everything masked. */
	mov	$0x11, %al
	outb	%al, $0x20
	outb	%al, $0xa0
	mov	$0x20, %al
	outb	%al, $0x21
	mov	$0x28, %al
	outb	%al, $0xa1
	mov	$0x04, %al
	outb	%al, $0x21
	mov	$0x02, %al
	outb	%al, $0xa1
	mov	$0x01, %al
	outb	%al, $0x21
	outb	%al, $0xa1
	mov	$0xff, %al
	outb	%al, $0x21
	outb	%al, $0xa1

	call	find_irq0_pin		/* EBP = IOAPIC address, ESI = pin */
	mov	%esi, LIN(pin)

	/* Local APIC: software-enabled, spurious vector 0xff, LINT0 masked. */
	movl	$0x1ff, LAPIC + 0xf0
	movl	$0x10000, LAPIC + 0x350
	/* IOAPIC redirection entry: tick vector, fixed, edge, high, to APIC 0. */
	mov	LIN(pin), %ecx
	lea	0x10(,%ecx,2), %eax
	mov	%eax, (%ebp)
	movl	$TICK_VECTOR, 0x10(%ebp)
	inc	%eax
	mov	%eax, (%ebp)
	movl	$0, 0x10(%ebp)

	/* PIT channel 0: rate generator, 1193182 Hz / 1193. */
	mov	$0x34, %al
	outb	%al, $0x43
	mov	$1193 & 0xff, %al
	outb	%al, $0x40
	mov	$1193 >> 8, %al
	outb	%al, $0x40

2:	cmpl	$TICKS, LIN(ticks)
	jae	3f
	sti
	hlt
	jmp	2b
3:	cli
	PRINT	"ioapic pin "
	mov	LIN(pin), %eax
	call	putdec
	PRINT	" ticks "
	mov	LIN(ticks), %eax
	call	putdec
	PRINT	"\n"
	EXIT	0

/* Counts up to TICKS and stops there, so the count printed is exact. */
tick:	cmpl	$TICKS, LIN(ticks)
	jae	1f
	incl	LIN(ticks)
1:	movl	$0, LAPIC + 0xb0	/* EOI */
	iret

/*
 * The MP table (floating pointer in the EBDA's first KiB): the IOAPIC's
 * address and the pin of the I/O interrupt entry for ISA IRQ 0.
 */
find_irq0_pin:
	mov	$0x9fc00, %ebx
1:	cmpl	$0x5f504d5f, (%ebx)	/* "_MP_" */
	je	2f
	add	$16, %ebx
	cmp	$0xa0000, %ebx
	jb	1b
	PRINT	"no MP floating pointer\n"
	EXIT	5
2:	mov	4(%ebx), %ebx		/* configuration table */
	cmpl	$0x504d4350, (%ebx)	/* "PCMP" */
	jne	9f
	movzwl	34(%ebx), %ecx		/* entry count */
	movb	$0xff, LIN(isa_bus)
	xor	%ebp, %ebp
	mov	$-1, %esi
	add	$44, %ebx
3:	test	%ecx, %ecx
	jz	8f
	movzbl	(%ebx), %eax
	cmp	$0, %eax
	jne	4f
	add	$20, %ebx		/* processor */
	jmp	7f
4:	cmp	$1, %eax		/* bus: remember which is ISA */
	jne	5f
	cmpl	$0x20415349, 2(%ebx)	/* "ISA " */
	jne	6f
	mov	1(%ebx), %al
	mov	%al, LIN(isa_bus)
	jmp	6f
5:	cmp	$2, %eax		/* IOAPIC */
	jne	51f
	mov	4(%ebx), %ebp
	jmp	6f
51:	cmp	$3, %eax		/* I/O interrupt: ISA IRQ 0? */
	jne	6f
	mov	4(%ebx), %al
	cmp	LIN(isa_bus), %al
	jne	6f
	cmpb	$0, 5(%ebx)
	jne	6f
	movzbl	7(%ebx), %esi
6:	add	$8, %ebx
7:	dec	%ecx
	jmp	3b
8:	test	%ebp, %ebp
	jz	9f
	cmp	$-1, %esi
	je	9f
	ret
9:	PRINT	"MP table: no IOAPIC or no ISA IRQ 0 entry\n"
	EXIT	5

/* One 16-byte stub per vector: report it and stop. */
	.balign	16
stubs:
	.set	vec, 0
	.rept	256
	.balign	16
	pushl	$vec
	jmp	unexpected
	.set	vec, vec + 1
	.endr
unexpected:
	pop	%ebx
	PRINT	"unexpected vector "
	mov	$2, %ecx
	call	puthex
	PRINT	"\n"
	EXIT	4

	.balign	4
ticks:	.long	0
pin:	.long	0
isa_bus: .byte	0
	.balign	2
idt_desc:
	.word	256 * 8 - 1
	.long	IDT

	FLAT_LIB
