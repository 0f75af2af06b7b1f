/*
 * Snapshot test guest (real mode): the PIT interrupts at 100 Hz through the
 * PIC, the RTC's update-ended interrupt once a second through the slave PIC;
 * every 10 timer ticks it prints "n=N t=T r=R" on ttyS0: N counts the lines,
 * T the timer interrupts, R the RTC interrupts. A snapshot taken mid-run and
 * restored must go on with N+1 (nothing lost, nothing repeated) while T and
 * R keep growing: the interrupt controllers, the PIT and the RTC came back.
 */
	.code16
	.globl	_start
_start:
	cli
	mov	%cs, %ax
	mov	%ax, %ds
	xor	%ax, %ax
	mov	%ax, %es
	movw	$tick, %es:(0x20 * 4)		/* IRQ 0 -> vector 0x20 */
	mov	%cs, %es:(0x20 * 4 + 2)
	movw	$rtc_irq, %es:(0x28 * 4)	/* IRQ 8 -> vector 0x28 */
	mov	%cs, %es:(0x28 * 4 + 2)
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
	mov	$0xfa, %al		/* master: IRQ 0 and the cascade (2) */
	outb	%al, $0x21
	mov	$0xfe, %al		/* slave: IRQ 8 */
	outb	%al, $0xa1
	mov	$0x34, %al		/* PIT channel 0, lobyte/hibyte, mode 2 */
	outb	%al, $0x43
	mov	$11932, %ax		/* 1193182 Hz / 11932 = 100 Hz */
	outb	%al, $0x40
	mov	%ah, %al
	outb	%al, $0x40
	mov	$0x0b, %al		/* RTC register B: update-ended interrupt on */
	outb	%al, $0x70
	inb	$0x71, %al
	or	$0x10, %al
	mov	%al, %ah
	mov	$0x0b, %al
	outb	%al, $0x70
	mov	%ah, %al
	outb	%al, $0x71
	mov	$0x0c, %al		/* read register C: nothing pending */
	outb	%al, $0x70
	inb	$0x71, %al
	sti
1:	hlt
	mov	ticks, %ax
	cmp	next, %ax
	jb	1b
	addw	$10, next
	incw	lines
	mov	$msg_n, %si
	call	puts
	mov	lines, %ax
	call	print_dec
	mov	$msg_t, %si
	call	puts
	mov	ticks, %ax
	call	print_dec
	mov	$msg_r, %si
	call	puts
	mov	rtcs, %ax
	call	print_dec
	mov	$'\n', %al
	call	putc
	jmp	1b

tick:	incw	%cs:ticks
	push	%ax
	mov	$0x20, %al		/* EOI */
	outb	%al, $0x20
	pop	%ax
	iret

rtc_irq:
	push	%ax
	mov	$0x0c, %al		/* reading register C acknowledges */
	outb	%al, $0x70
	inb	$0x71, %al
	incw	%cs:rtcs
	mov	$0x20, %al
	outb	%al, $0xa0
	outb	%al, $0x20
	pop	%ax
	iret

/* AX in decimal. */
print_dec:
	push	%bx
	push	%cx
	push	%dx
	mov	$10, %bx
	xor	%cx, %cx
2:	xor	%dx, %dx
	div	%bx
	push	%dx
	inc	%cx
	test	%ax, %ax
	jnz	2b
3:	pop	%ax
	add	$'0', %al
	call	putc
	loop	3b
	pop	%dx
	pop	%cx
	pop	%bx
	ret

puts:	lodsb
	test	%al, %al
	jz	4f
	call	putc
	jmp	puts
4:	ret

putc:	push	%dx
	mov	$0x3f8, %dx
	outb	%al, %dx
	pop	%dx
	ret

ticks:	.word	0
rtcs:	.word	0
lines:	.word	0
next:	.word	10
msg_n:	.asciz	"n="
msg_t:	.asciz	" t="
msg_r:	.asciz	" r="
