/*
 * Shared pieces of the test guests. lkvm loads a flat binary at 0x10000 and
 * enters it in real mode with CS = DS = ES = SS = 0x1000, IP = 0, SP = 0xFFF0.
 * Guests are linked at 0, so a symbol is its offset in that segment in real
 * mode and LIN(symbol) is its physical address once segments are flat.
 */
#ifndef BASE
#define BASE		0x10000	/* ELF guests, linked at their load address, define it 0 */
#endif
#define LIN(x)		(BASE + (x))
#define COM1		0x3f8
#define EXIT_PORT	0xf4
#define STACK_TOP	0x1fff0		/* the real-mode SS:SP, reused when flat */
#define PAGE_TABLES	0x70000		/* PML4, PDPT, 4 PDs: 0x70000-0x75fff */
#define UNCLAIMED_MMIO	0xe0000000	/* in the PCI window, above any BAR lkvm places here */

/* GDT selectors (see GDT below). */
#define SEL_CODE32	0x08
#define SEL_DATA	0x10
#define SEL_CODE64	0x18

/* End the VM through the debug-exit port with status \code (any mode). */
.macro EXIT code
	mov	$\code, %eax
	outl	%eax, $EXIT_PORT
.endm

/*
 * Real-mode output (16-bit code): puts16 prints the NUL-terminated string at
 * CS:SI, putc16 prints AL, puthex16 prints EAX with CX hex digits.
 */
.macro REAL_MODE_LIB
putc16:
	push	%dx
	push	%ax
	mov	$COM1 + 5, %dx
1:	inb	%dx, %al
	test	$0x20, %al	/* transmit holding register empty */
	jz	1b
	pop	%ax
	mov	$COM1, %dx
	outb	%al, %dx
	pop	%dx
	ret
puts16:
	push	%ax
1:	cs lodsb
	test	%al, %al
	jz	2f
	call	putc16
	jmp	1b
2:	pop	%ax
	ret
puthex16:
	push	%eax
	push	%ebx
	push	%cx
	mov	%eax, %ebx
	shl	$2, %cx
	ror	%cl, %ebx
	shr	$2, %cx
1:	rol	$4, %ebx
	mov	%bl, %al
	and	$0xf, %al
	add	$'0', %al
	cmp	$'9', %al
	jbe	2f
	add	$'a' - '9' - 1, %al
2:	call	putc16
	loop	1b
	pop	%cx
	pop	%ebx
	pop	%eax
	ret
.endm

/*
 * Flat-mode output, assembled once per mode (.code32 or .code64) from
 * instructions valid in both, without push/pop:
 *   putc   AL                  clobbers EDX
 *   puts   ESI = address       clobbers EAX EDX ESI
 *   puthex EBX = value, ECX = digits (1-8)   clobbers EAX EBX ECX EDX
 *   putdec EAX = value         clobbers EAX ECX EDX EDI
 */
.macro FLAT_LIB
putc:
	mov	%al, %ah
	mov	$COM1 + 5, %dx
1:	inb	%dx, %al
	test	$0x20, %al
	jz	1b
	mov	%ah, %al
	mov	$COM1, %dx
	outb	%al, %dx
	ret
puts:
1:	movb	(%esi), %al
	test	%al, %al
	jz	2f
	call	putc
	inc	%esi
	jmp	1b
2:	ret
puthex:
	mov	%ecx, %eax
	shl	$2, %ecx
	ror	%cl, %ebx	/* the wanted digits now lead */
	mov	%eax, %ecx
1:	rol	$4, %ebx
	mov	%bl, %al
	and	$0xf, %al
	add	$'0', %al
	cmp	$'9', %al
	jbe	2f
	add	$'a' - '9' - 1, %al
2:	call	putc
	dec	%ecx
	jnz	1b
	ret
putdec:
	mov	$LIN(decbuf_end), %edi
	mov	$10, %ecx
1:	xor	%edx, %edx
	div	%ecx
	add	$'0', %dl
	dec	%edi
	movb	%dl, (%edi)
	test	%eax, %eax
	jnz	1b
2:	movb	(%edi), %al
	call	putc
	inc	%edi
	cmp	$LIN(decbuf_end), %edi
	jne	2b
	ret
decbuf:	.fill	12, 1, 0
decbuf_end:
.endm

/* Print the string literal \s (flat modes; clobbers as puts). */
.macro PRINT s
	mov	$LIN(9001f), %esi
	call	puts
	.pushsection .text.strings, "ax"
9001:	.asciz	"\s"
	.popsection
.endm

/* Real-mode counterpart of PRINT. */
.macro PRINT16 s
	mov	$9001f, %si
	call	puts16
	.pushsection .text.strings, "ax"
9001:	.asciz	"\s"
	.popsection
.endm

/* GDT: null, flat 32-bit code, flat data, 64-bit code; and its descriptor. */
.macro GDT
	.balign	8
gdt:	.quad	0
	.quad	0x00cf9b000000ffff	/* 0x08: code, 32-bit, 4 GiB */
	.quad	0x00cf93000000ffff	/* 0x10: data, 4 GiB */
	.quad	0x00af9b000000ffff	/* 0x18: code, 64-bit */
gdt_end:
gdt_desc:
	.word	gdt_end - gdt - 1
	.long	LIN(gdt)
.endm

/* From real mode (CS = 0x1000) to 32-bit protected mode at \target, no paging. */
.macro ENTER_PM32 target
	cli
	lgdtl	%cs:gdt_desc
	mov	%cr0, %eax
	or	$1, %eax
	mov	%eax, %cr0
	ljmpl	$SEL_CODE32, $LIN(\target)
.endm

/* First thing in 32-bit code: flat data segments and the stack. */
.macro FLAT_SEGMENTS
	mov	$SEL_DATA, %ax
	mov	%ax, %ds
	mov	%ax, %es
	mov	%ax, %fs
	mov	%ax, %gs
	mov	%ax, %ss
	mov	$STACK_TOP, %esp
.endm

/*
 * From 32-bit protected mode to 64-bit long mode at \target: identity map
 * the first 4 GiB with 2 MiB pages at PAGE_TABLES, PAE, EFER.LME, paging.
 */
.macro ENTER_LM64 target
	mov	$PAGE_TABLES, %edi
	xor	%eax, %eax
	mov	$0x6000 / 4, %ecx
	cld
	rep stosl
	movl	$PAGE_TABLES + 0x1003, PAGE_TABLES
	mov	$PAGE_TABLES + 0x1000, %edi
	mov	$PAGE_TABLES + 0x2003, %eax
	mov	$4, %ecx
1:	mov	%eax, (%edi)
	add	$0x1000, %eax
	add	$8, %edi
	loop	1b
	mov	$PAGE_TABLES + 0x2000, %edi
	mov	$0x83, %eax	/* present, writable, 2 MiB */
	mov	$2048, %ecx
2:	mov	%eax, (%edi)
	add	$0x200000, %eax
	add	$8, %edi
	loop	2b
	mov	%cr4, %eax
	or	$0x20, %eax	/* PAE */
	mov	%eax, %cr4
	mov	$PAGE_TABLES, %eax
	mov	%eax, %cr3
	mov	$0xc0000080, %ecx	/* EFER */
	rdmsr
	or	$0x100, %eax	/* LME */
	wrmsr
	mov	%cr0, %eax
	or	$0x80000000, %eax	/* PG */
	mov	%eax, %cr0
	ljmpl	$SEL_CODE64, $LIN(\target)
.endm
