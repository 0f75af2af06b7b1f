/* A triple fault: an empty IDT in protected mode, then a fault. lkvm must stop non-zero with a register dump. */
	.code16
	.globl	_start
_start:
	cli
	lidt	idt0 - _start + 0	/* limit 0: every vector is out of bounds */
	mov	$0x3f8, %dx
	mov	$'T', %al
	outb	%al, %dx
	xor	%ax, %ax
	div	%al			/* #DE -> #GP (no IDT entry) -> #DF -> shutdown */
	hlt
idt0:	.word	0
	.long	0
