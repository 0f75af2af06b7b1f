/*
 * Timer interrupts through the in-kernel PIT and PIC: program the PIC (vector
 * base 0x20), point IVT[0x20] at our handler, run the PIT at ~1 kHz, count
 * 100 ticks with sti/hlt, print "ticks 100", exit 0.
 */
	.code16
	.globl	_start
_start:
	cli
	xor	%ax, %ax
	mov	%ax, %es
	movw	$tick, %es:(0x20 * 4)	/* IVT entry 0x20 -> CS:tick */
	mov	%cs, %es:(0x20 * 4 + 2)
	mov	$0x11, %al		/* ICW1: edge, cascade, ICW4 */
	outb	%al, $0x20
	outb	%al, $0xa0
	mov	$0x20, %al		/* ICW2: vector bases */
	outb	%al, $0x21
	mov	$0x28, %al
	outb	%al, $0xa1
	mov	$0x04, %al		/* ICW3 */
	outb	%al, $0x21
	mov	$0x02, %al
	outb	%al, $0xa1
	mov	$0x01, %al		/* ICW4: 8086 mode */
	outb	%al, $0x21
	outb	%al, $0xa1
	mov	$0xfe, %al		/* unmask IRQ0 only */
	outb	%al, $0x21
	mov	$0xff, %al
	outb	%al, $0xa1
	mov	$0x34, %al		/* PIT channel 0, lobyte/hibyte, mode 2 */
	outb	%al, $0x43
	mov	$1193, %ax		/* 1193182 Hz / 1193 = ~1 kHz */
	outb	%al, $0x40
	mov	%ah, %al
	outb	%al, $0x40
	sti
1:	hlt
	cmpw	$100, %cs:count
	jb	1b
	cli
	mov	$msg, %si
	mov	$0x3f8, %dx
2:	lodsb
	test	%al, %al
	jz	3f
	outb	%al, %dx
	jmp	2b
3:	xor	%al, %al
	outb	%al, $0xf4
	hlt

tick:	incw	%cs:count
	push	%ax
	mov	$0x20, %al		/* EOI */
	outb	%al, $0x20
	pop	%ax
	iret

count:	.word	0
msg:	.asciz	"ticks 100\n"
