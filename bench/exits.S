/* Flat real-mode guest: N port writes (or, with MMIO, N writes above 1 MiB RAM), then exit 0. */
	.code16
	.globl	_start
_start:
	mov	$N, %ecx
#if MMIO
	mov	$0xffff, %ax		/* FFFF:0010 is 0x100000: past the RAM of -m 1 */
	mov	%ax, %es
1:	test	%ecx, %ecx
	jz	2f
	movb	%al, %es:0x10
	dec	%ecx
	jmp	1b
#else
	mov	$0x510, %dx
1:	test	%ecx, %ecx
	jz	2f
	outb	%al, %dx
	dec	%ecx
	jmp	1b
#endif
2:	xor	%al, %al
	outb	%al, $0xf4
	hlt
