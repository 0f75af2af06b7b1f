/* Read the RTC (BCD or binary per register B) and print "date CCYY-MM-DD HH:MM", exit 0. */
	.code16
	.globl	_start
_start:
1:	mov	$0x0a, %al		/* wait while an update is in progress */
	outb	%al, $0x70
	inb	$0x71, %al
	test	$0x80, %al
	jnz	1b
	mov	$msg, %si
	call	puts
	mov	$0x32, %bl
	call	field
	mov	$0x09, %bl
	call	field
	mov	$'-', %al
	call	putc
	mov	$0x08, %bl
	call	field
	mov	$'-', %al
	call	putc
	mov	$0x07, %bl
	call	field
	mov	$' ', %al
	call	putc
	mov	$0x04, %bl
	call	field
	mov	$':', %al
	call	putc
	mov	$0x02, %bl
	call	field
	mov	$'\n', %al
	call	putc
	xor	%al, %al
	outb	%al, $0xf4
	hlt

/* Print CMOS register BL as two decimal digits. */
field:	mov	%bl, %al
	outb	%al, $0x70
	inb	$0x71, %al
	mov	%al, %cl
	mov	$0x0b, %al
	outb	%al, $0x70
	inb	$0x71, %al
	test	$0x04, %al		/* binary mode: convert to BCD first */
	mov	%cl, %al
	jz	2f
	aam				/* AH = AL / 10, AL = AL % 10 */
	shl	$4, %ah
	or	%ah, %al
2:	mov	%al, %cl
	shr	$4, %al
	add	$'0', %al
	call	putc
	mov	%cl, %al
	and	$0x0f, %al
	add	$'0', %al
	call	putc
	ret

putc:	push	%dx
	mov	$0x3f8, %dx
	outb	%al, %dx
	pop	%dx
	ret
puts:	lodsb
	test	%al, %al
	jz	3f
	call	putc
	jmp	puts
3:	ret
msg:	.asciz	"date "
