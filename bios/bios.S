/*
 * lkvm's BIOS: the real-mode services Linux's 16-bit setup code and our test
 * guests call. It does no POST: lkvm itself fills the IVT, the BIOS data area
 * and the e820 table (header below) before the first instruction runs.
 * Assembled as 16-bit code; every offset is relative to segment 0xF000.
 */
	.code16
	.section .text.header, "ax"
	.globl	bios_header
/* Header read by x86/bios.c: magic, then handler offsets and data slots. */
bios_header:
	.ascii	"LKVMBIOS"
	.word	int_default, int10, int11, int12, int13, int15, int16, int1a
	.word	irq_master, irq_slave
	.word	e820_count, e820_table, mem_e801_low, mem_e801_high, mem_88
	.word	0

/* int 15h AH=C0h: length, model (AT), submodel, revision, features: 2nd PIC, RTC. */
sys_config:	.word 8
		.byte 0xfc, 0, 0, 0x60, 0, 0, 0, 0
e820_count:	.word 0
mem_e801_low:	.word 0		/* KiB between 1 and 16 MiB */
mem_e801_high:	.word 0		/* 64 KiB blocks above 16 MiB (below the PCI hole) */
mem_88:		.word 0		/* KiB above 1 MiB, capped at 0xffff */
	.balign 4
e820_table:	.fill 32 * 20, 1, 0

	.text
/* Return with CF set or clear in the caller's FLAGS (which iret restores). */
set_cf_iret:
	push	%bp
	mov	%sp, %bp
	orw	$1, 6(%bp)
	pop	%bp
	iret
clear_cf_iret:
	push	%bp
	mov	%sp, %bp
	andw	$0xfffe, 6(%bp)
	pop	%bp
	iret

int_default:
	iret

/* Hardware interrupts nobody installed a handler for: acknowledge the PIC. */
irq_slave:
	push	%ax
	mov	$0x20, %al
	outb	%al, $0xa0
	outb	%al, $0x20
	pop	%ax
	iret
irq_master:
	push	%ax
	mov	$0x20, %al
	outb	%al, $0x20
	pop	%ax
	iret

/* Video: teletype output goes to the first serial port. */
int10:
	cmp	$0x0e, %ah
	je	10f
	cmp	$0x0f, %ah
	je	11f
	cmp	$0x03, %ah
	je	12f
	cmp	$0x12, %ah
	je	13f
	iret		/* set mode, cursor shape, palette...: accepted, nothing to do */
10:	push	%dx
	mov	$0x3f8, %dx
	outb	%al, %dx
	pop	%dx
	iret
11:	mov	$0x5003, %ax	/* 80 columns, mode 3 */
	xor	%bh, %bh
	iret
12:	xor	%dx, %dx	/* cursor at 0,0 */
	mov	$0x0607, %cx
	iret
13:	iret		/* EGA info: BL unchanged means no EGA */

int11:	mov	$0x0820, %ax	/* four serial ports, 80x25 colour */
	iret
int12:	mov	$639, %ax	/* KiB below the EBDA */
	iret
int13:	mov	$0x01, %ah	/* no disks */
	jmp	set_cf_iret

/* Keyboard: never a key. */
int16:
	cmp	$0x01, %ah
	je	20f
	cmp	$0x11, %ah
	je	20f
	xor	%ax, %ax
	iret
20:	push	%bp
	mov	%sp, %bp
	orw	$0x40, 6(%bp)	/* ZF: no key waiting */
	pop	%bp
	iret

/*
 * Time of day from the RTC (CMOS), for callers that poll it (Linux's setup
 * code times its video menu with AH=02h): AH=00h ticks since midnight,
 * AH=02h time and AH=04h date in BCD; setting them is accepted and ignored.
 */
int1a:
	cmp	$0x00, %ah
	je	31f
	cmp	$0x02, %ah
	je	32f
	cmp	$0x04, %ah
	je	33f
	cmp	$0x01, %ah
	je	34f
	cmp	$0x03, %ah
	je	34f
	cmp	$0x05, %ah
	je	34f
	jmp	set_cf_iret
31:	push	%eax
	push	%ebx
	call	rtc_wait
	mov	$0x04, %al
	call	rtc_bin
	movzbl	%al, %ebx
	imul	$60, %ebx, %ebx
	mov	$0x02, %al
	call	rtc_bin
	movzbl	%al, %eax
	add	%eax, %ebx
	imul	$60, %ebx, %ebx
	xor	%al, %al
	call	rtc_bin
	movzbl	%al, %eax
	add	%eax, %ebx	/* seconds since midnight */
	imul	$13533, %ebx, %eax	/* ticks = s * 18.2065: 18 s + s * 0.2065 * 65536 >> 16 */
	shr	$16, %eax
	imul	$18, %ebx, %ebx
	add	%eax, %ebx
	mov	%bx, %dx
	shr	$16, %ebx
	mov	%bx, %cx
	pop	%ebx
	pop	%eax
	xor	%al, %al	/* no midnight rollover seen */
	jmp	clear_cf_iret
32:	push	%ax
	call	rtc_wait
	mov	$0x04, %al
	call	rtc_bcd
	mov	%al, %ch
	mov	$0x02, %al
	call	rtc_bcd
	mov	%al, %cl
	xor	%al, %al
	call	rtc_bcd
	mov	%al, %dh
	xor	%dl, %dl	/* no daylight saving */
	pop	%ax
	jmp	clear_cf_iret
33:	push	%ax
	call	rtc_wait
	mov	$0x32, %al
	call	rtc_bcd
	mov	%al, %ch
	mov	$0x09, %al
	call	rtc_bcd
	mov	%al, %cl
	mov	$0x08, %al
	call	rtc_bcd
	mov	%al, %dh
	mov	$0x07, %al
	call	rtc_bcd
	mov	%al, %dl
	pop	%ax
	jmp	clear_cf_iret
34:	jmp	clear_cf_iret

/* Wait until no RTC update is in progress (bounded: a missing RTC reads 0xff). */
rtc_wait:
	push	%cx
	mov	$0xffff, %cx
1:	mov	$0x0a, %al
	outb	%al, $0x70
	inb	$0x71, %al
	test	$0x80, %al
	loopnz	1b
	pop	%cx
	ret
/* CMOS register AL, returned in AL as BCD (rtc_bcd) or binary (rtc_bin), per register B. */
rtc_read:
	outb	%al, $0x70
	inb	$0x71, %al
	mov	%al, %ah
	mov	$0x0b, %al
	outb	%al, $0x70
	inb	$0x71, %al
	xchg	%al, %ah	/* AL value, AH register B */
	ret
rtc_bcd:
	call	rtc_read
	test	$0x04, %ah
	jz	1f
	aam			/* binary: AH = tens, AL = units */
	shl	$4, %ah
	or	%ah, %al
1:	ret
rtc_bin:
	call	rtc_read
	test	$0x04, %ah
	jnz	1f
	mov	%al, %ah	/* BCD: tens * 10 + units */
	shr	$4, %ah
	and	$0x0f, %al
	aad
1:	ret

/* System services: memory maps, A20. */
int15:
	cmp	$0xe820, %eax
	je	50f
	cmp	$0xe801, %ax
	je	41f
	cmp	$0x88, %ah
	je	42f
	cmp	$0x24, %ah
	je	43f
	cmp	$0x86, %ah	/* wait: return at once */
	je	44f
	cmp	$0xc0, %ah
	je	47f
	cmp	$0xec00, %ax	/* target operating mode: noted, nothing to do */
	je	44f
	mov	$0x86, %ah	/* unsupported */
	jmp	set_cf_iret
41:	mov	%cs:mem_e801_low, %ax
	mov	%ax, %cx
	mov	%cs:mem_e801_high, %bx
	mov	%bx, %dx
	jmp	clear_cf_iret
42:	mov	%cs:mem_88, %ax
	jmp	clear_cf_iret
43:	cmp	$0x02, %al
	je	45f
	cmp	$0x03, %al
	je	46f
	xor	%ah, %ah	/* 2400/2401: A20 is always on */
	jmp	clear_cf_iret
45:	mov	$0x0001, %ax	/* 2402: A20 enabled */
	jmp	clear_cf_iret
46:	xor	%ah, %ah	/* 2403: keyboard and port 92 methods */
	mov	$0x0003, %bx
	jmp	clear_cf_iret
44:	xor	%ah, %ah
	jmp	clear_cf_iret
47:	push	%cs		/* C0h: ES:BX = system configuration table */
	pop	%es
	mov	$sys_config, %bx
	xor	%ah, %ah
	jmp	clear_cf_iret

/* E820: EBX is the index of the entry to return, ES:DI the buffer. */
50:	cmp	$0x534d4150, %edx	/* 'SMAP' */
	jne	59f
	cmp	%cs:e820_count, %bx
	jae	59f
	test	$0xffff0000, %ebx
	jnz	59f
	cmp	$20, %ecx
	jb	59f
	push	%ds
	push	%si
	push	%di
	push	%cx
	push	%cs
	pop	%ds
	imul	$20, %bx, %si
	add	$e820_table, %si
	mov	$20, %cx
	cld
	rep movsb
	pop	%cx
	pop	%di
	pop	%si
	pop	%ds
	inc	%ebx
	cmp	%cs:e820_count, %bx
	jb	51f
	xor	%ebx, %ebx	/* that was the last entry */
51:	mov	$0x534d4150, %eax
	mov	$20, %ecx
	jmp	clear_cf_iret
59:	mov	$0x86, %ah
	jmp	set_cf_iret

	.section .text.reset, "ax"
reset:	cli
1:	hlt
	jmp	1b
