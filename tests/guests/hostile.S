/*
 * Hostile guest: every I/O port written and read at 8 bits (16 and 32 bits
 * every sixteenth port), string I/O, and MMIO writes and reads across the
 * unbacked space above RAM. lkvm must survive it all; the guest checks that
 * unclaimed reads return all ones and exits 0. Ports that legitimately end
 * the VM (i8042 command 0x64, port 0x92, reset control 0xcf9, debug exit
 * 0xf4, ACPI PM 0x600-0x6ff) and our own console COM1 are left alone.
 * Run it with -m 256 or less: the MMIO sweep starts at 512 MiB.
 */
#include "common.h"
#define MMIO_SWEEP_START 0x20000000
#define MMIO_SWEEP_END	 0xfec00000	/* IOAPIC, LAPIC: KVM's own */
#define UNCLAIMED_PORT	 0x1234
#define BUF		 0x60000

	.code16
	.globl	_start
_start:
	ENTER_PM32 pm_entry

	REAL_MODE_LIB
	GDT

	.code32
pm_entry:
	FLAT_SEGMENTS
	PRINT	"hostile: port sweep\n"
	xor	%edx, %edx
1:	call	skip_port
	jc	2f
	mov	%dl, %al
	xor	$0xa5, %al
	outb	%al, %dx
	inb	%dx, %al
	test	$15, %dl
	jnz	2f
	cmp	$0xfffc, %edx		/* wider accesses must not run past 0xffff */
	ja	2f
	mov	%edx, %eax
	not	%eax
	outw	%ax, %dx
	inw	%dx, %ax
	outl	%eax, %dx
	inl	%dx, %eax
2:	inc	%edx
	cmp	$0x10000, %edx
	jb	1b

	PRINT	"hostile: string I/O\n"
	mov	$LIN(pattern), %esi	/* rep outsb to the POST port */
	mov	$0x80, %dx
	mov	$64, %ecx
	cld
	rep outsb
	mov	$BUF, %edi		/* rep insw from nowhere: all ones */
	mov	$UNCLAIMED_PORT, %dx
	mov	$32, %ecx
	rep insw
	mov	$BUF, %esi
	mov	$64, %ecx
3:	cmpb	$0xff, (%esi)
	jne	bad_ins
	inc	%esi
	loop	3b

	PRINT	"hostile: MMIO sweep\n"
	mov	$MMIO_SWEEP_START, %edi
4:	movb	$0x5a, (%edi)
	movw	$0x5a5a, 2(%edi)
	movl	$0x5a5a5a5a, 4(%edi)
	mov	(%edi), %al
	mov	2(%edi), %ax
	mov	4(%edi), %eax
	mov	%eax, %ebx		/* nothing is mapped here: all ones */
	inc	%ebx
	jnz	bad_mmio_edi
	add	$0x100000, %edi
	cmp	$MMIO_SWEEP_END, %edi
	jb	4b
	/* A string move from unbacked MMIO into RAM, and back out. */
	mov	$MMIO_SWEEP_START, %esi
	mov	$BUF, %edi
	mov	$16, %ecx
	rep movsl
	mov	$BUF, %esi
	mov	$MMIO_SWEEP_START, %edi
	mov	$16, %ecx
	rep movsl
	cmpl	$0xffffffff, BUF + 60
	jne	bad_movs
	PRINT	"hostile done\n"
	EXIT	0

bad_ins:
	PRINT	"FAIL: rep insw from an unclaimed port did not read all ones\n"
	EXIT	1
bad_mmio_edi:
	mov	%edi, %ebx
	PRINT	"FAIL: unbacked MMIO read not all ones at "
	mov	$8, %ecx
	call	puthex
	PRINT	"\n"
	EXIT	1
bad_movs:
	PRINT	"FAIL: rep movsl from unbacked MMIO not all ones\n"
	EXIT	1

/* CF set if port DX is one to leave alone (keeps every register). */
skip_port:
	cmp	$0x64, %dx
	je	9f
	cmp	$0x92, %dx
	je	9f
	cmp	$0xcf9, %dx
	je	9f
	cmp	$EXIT_PORT, %dx
	jb	8f
	cmp	$EXIT_PORT + 3, %dx
	jbe	9f
8:	cmp	$0x600, %dx
	jb	7f
	cmp	$0x6ff, %dx
	jbe	9f
7:	cmp	$COM1, %dx
	jb	6f
	cmp	$COM1 + 7, %dx
	jbe	9f
6:	clc
	ret
9:	stc
	ret

pattern:
	.rept	64
	.byte	0x42
	.endr

	FLAT_LIB
