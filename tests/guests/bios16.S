/*
 * lkvm's BIOS services as a real-mode caller (Linux's setup code) sees them.
 * Prints one line per call; guest-tests.sh compares them with what lkvm was
 * given (-m, the host clock). Exits 0.
 */
#include "common.h"
#define SMAP 0x534d4150

/* Print " NAME=" then REG with DIGITS hex digits (REG must not be SI). */
.macro SHOW name, reg, digits
	PRINT16	" \name="
	push	%eax
	push	%cx
	movzx	\reg, %eax
	mov	$\digits, %cx
	call	puthex16
	pop	%cx
	pop	%eax
.endm
.macro SHOW32 name, reg
	PRINT16	" \name="
	push	%eax
	push	%cx
	mov	\reg, %eax
	mov	$8, %cx
	call	puthex16
	pop	%cx
	pop	%eax
.endm
/* A BIOS call that notes the carry flag it returns; SHOWCF prints it as " cf=N". */
.macro CALLINT vec
	int	$\vec
	setc	cf_saved
.endm
.macro SHOWCF
	push	%ax
	mov	cf_saved, %al
	SHOW	cf, %al, 1
	pop	%ax
.endm

	.code16
	.globl	_start
_start:
	/* int 10h: mode, cursor, EGA info. */
	mov	$0x0f00, %ax
	mov	$0xff, %bh
	CALLINT	0x10
	PRINT16	"int10-0f"
	SHOW	ax, %ax, 4
	SHOW	bh, %bh, 2
	mov	$0x0300, %ax
	xor	%bh, %bh
	CALLINT	0x10
	PRINT16	"\nint10-03"
	SHOW	dx, %dx, 4
	mov	$0x1200, %ax
	mov	$0x10, %bl
	CALLINT	0x10
	PRINT16	"\nint10-12"
	SHOW	bl, %bl, 2
	mov	$0x0003, %ax	/* set mode 3: accepted */
	CALLINT	0x10

	CALLINT	0x11
	PRINT16	"\nint11"
	SHOW	ax, %ax, 4
	CALLINT	0x12
	PRINT16	"\nint12"
	SHOW	ax, %ax, 4
	PRINT16	"\n"

	/* int 15h E820: every entry, as Linux's detect_memory_e820 asks. */
	xor	%ebx, %ebx
	xor	%bp, %bp
1:	mov	$0xe820, %eax
	mov	$20, %ecx
	mov	$SMAP, %edx
	mov	$e820_buf, %di
	movl	$0xdeadbeef, e820_buf + 16
	CALLINT	0x15
	jc	2f
	cmp	$SMAP, %eax
	jne	3f
	inc	%bp
	PRINT16	"e820 "
	mov	e820_buf + 4, %eax
	mov	$8, %cx
	call	puthex16
	mov	e820_buf, %eax
	call	puthex16
	mov	$' ', %al
	call	putc16
	mov	e820_buf + 12, %eax
	call	puthex16
	mov	e820_buf + 8, %eax
	call	puthex16
	mov	$' ', %al
	call	putc16
	mov	e820_buf + 16, %eax
	mov	$1, %cx
	call	puthex16
	PRINT16	"\n"
	test	%ebx, %ebx
	jz	2f
	cmp	$64, %bp
	jb	1b
	jmp	2f
3:	PRINT16	"e820 bad signature\n"
2:	PRINT16	"e820-count"
	SHOW	n, %bp, 4
	/* Asking past the end fails with CF. */
	mov	$0xe820, %eax
	mov	$20, %ecx
	mov	$SMAP, %edx
	mov	$0x1000, %ebx
	mov	$e820_buf, %di
	CALLINT	0x15
	SHOWCF

	mov	$0xe801, %ax
	CALLINT	0x15
	PRINT16	"\nint15-e801"
	SHOWCF
	SHOW	ax, %ax, 4
	SHOW	bx, %bx, 4
	SHOW	cx, %cx, 4
	SHOW	dx, %dx, 4
	mov	$0x8800, %ax
	CALLINT	0x15
	PRINT16	"\nint15-88"
	SHOWCF
	SHOW	ax, %ax, 4

	mov	$0x2401, %ax
	CALLINT	0x15
	PRINT16	"\nint15-2401"
	SHOWCF
	SHOW	ah, %ah, 2
	mov	$0x2402, %ax
	CALLINT	0x15
	PRINT16	"\nint15-2402"
	SHOWCF
	SHOW	al, %al, 2
	mov	$0x2403, %ax
	CALLINT	0x15
	PRINT16	"\nint15-2403"
	SHOWCF
	SHOW	bx, %bx, 4

	push	%es
	mov	$0xc000, %ax
	CALLINT	0x15
	PRINT16	"\nint15-c0"
	SHOWCF
	SHOW	ah, %ah, 2
	mov	%es:2(%bx), %al	/* model byte */
	SHOW	model, %al, 2
	pop	%es
	mov	$0xec00, %ax
	mov	$2, %bx
	CALLINT	0x15
	PRINT16	"\nint15-ec00"
	SHOWCF
	mov	$0x9900, %ax	/* nobody's function */
	CALLINT	0x15
	PRINT16	"\nint15-99"
	SHOWCF
	SHOW	ah, %ah, 2

	/* int 16h: no key waiting, no shift keys. */
	mov	$0x0100, %ax
	CALLINT	0x16
	setz	%al
	PRINT16	"\nint16-01"
	SHOW	zf, %al, 1
	mov	$0x02ff, %ax
	CALLINT	0x16
	PRINT16	"\nint16-02"
	SHOW	al, %al, 2

	/* int 1Ah: the RTC's date and time in BCD, and the tick count. */
	mov	$0x0400, %ax
	CALLINT	0x1a
	mov	%cx, saved_cx
	mov	%dx, saved_dx
	PRINT16	"\nint1a-04"
	SHOWCF
	PRINT16	" date "
	mov	$2, %cx
	movzbl	saved_cx + 1, %eax	/* century */
	call	puthex16
	movzbl	saved_cx, %eax		/* year */
	call	puthex16
	mov	$'-', %al
	call	putc16
	movzbl	saved_dx + 1, %eax	/* month */
	call	puthex16
	mov	$'-', %al
	call	putc16
	movzbl	saved_dx, %eax		/* day */
	call	puthex16
	mov	$0x0200, %ax
	CALLINT	0x1a
	mov	%cx, saved_cx
	mov	%dx, saved_dx
	PRINT16	"\nint1a-02"
	SHOWCF
	PRINT16	" time "
	mov	$2, %cx
	movzbl	saved_cx + 1, %eax	/* hours */
	call	puthex16
	mov	$':', %al
	call	putc16
	movzbl	saved_cx, %eax		/* minutes */
	call	puthex16
	mov	$0x0000, %ax
	CALLINT	0x1a
	mov	%cx, saved_cx
	mov	%dx, saved_dx
	PRINT16	"\nint1a-00 ticks="
	mov	saved_cx, %ax
	shl	$16, %eax
	mov	saved_dx, %ax
	mov	$8, %cx
	call	puthex16

	/* int 13h: no disks. A vector nobody handles returns with registers intact. */
	mov	$0x0800, %ax
	CALLINT	0x13
	PRINT16	"\nint13-08"
	SHOWCF
	mov	$0x1234, %ax
	mov	$0x5678, %bx
	CALLINT	0x60
	PRINT16	"\nint60"
	SHOW	ax, %ax, 4
	SHOW	bx, %bx, 4
	PRINT16	"\nbios done\n"
	EXIT	0

	REAL_MODE_LIB
	.balign	4
e820_buf:	.fill	24, 1, 0
cf_saved:	.byte	0
saved_cx:	.word	0
saved_dx:	.word	0
