/* i8042 pulse-reset: lkvm must end with status 0 and no error. */
	.code16
	.globl	_start
_start:
	mov	$0x3f8, %dx
	mov	$'R', %al
	outb	%al, %dx
	mov	$'\n', %al
	outb	%al, %dx
	mov	$0xfe, %al
	outb	%al, $0x64
1:	hlt
	jmp	1b
