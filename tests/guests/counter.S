/*
 * Control-plane test guest (real mode): exactly 1000 writes to port 0x80,
 * "done\n" on ttyS0, then one '.' per delay loop forever. Every port write it
 * makes is a serial character or a port-0x80 write, so `lkvm stat` while
 * paused must report pio_writes == 1005 + dots printed.
 */
	.code16
	.globl _start
_start:
	mov	$1000, %cx
	xor	%al, %al
1:	outb	%al, $0x80
	loop	1b
	mov	$0x3f8, %dx
	mov	$msg, %si
2:	cs lodsb
	test	%al, %al
	jz	3f
	outb	%al, %dx
	jmp	2b
3:	mov	$0x400000, %ecx
4:	dec	%ecx
	jnz	4b
	mov	$'.', %al
	outb	%al, %dx
	jmp	3b
msg:	.asciz	"done\n"
