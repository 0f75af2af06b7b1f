/*
 * 64-bit long mode: identity paging, then PCI config of 00:00.0, a read of
 * unclaimed MMIO and an unclaimed port (both must read all ones), a write to
 * each, exit 0.
 */
#include "common.h"
#define UNCLAIMED_PORT	0x510

	.code16
	.globl	_start
_start:
	ENTER_PM32 pm_entry

	REAL_MODE_LIB
	GDT

	.code32
pm_entry:
	FLAT_SEGMENTS
	ENTER_LM64 lm_entry

	.code64
lm_entry:
	mov	$STACK_TOP, %rsp
	PRINT	"hello from long mode\n"
	mov	$0xc0000080, %ecx
	rdmsr
	mov	%eax, %ebx
	PRINT	"efer "
	mov	$4, %ecx
	call	puthex
	PRINT	"\n"

	mov	$0x80000000, %eax	/* bus 0, device 0, function 0, register 0 */
	mov	$0xcf8, %dx
	outl	%eax, %dx
	mov	$0xcfc, %dx
	inl	%dx, %eax
	mov	%eax, %ebx
	PRINT	"pci 00:00.0 id "		/* device id, vendor id */
	mov	$8, %ecx
	call	puthex
	PRINT	"\n"

	mov	$UNCLAIMED_MMIO, %eax
	movl	$0x12345678, (%rax)	/* dropped */
	mov	(%rax), %ebx
	PRINT	"mmio "
	mov	$8, %ecx
	call	puthex
	PRINT	"\n"

	mov	$UNCLAIMED_PORT, %dx
	mov	$0x5a, %al
	outb	%al, %dx
	inl	%dx, %eax
	mov	%eax, %ebx
	PRINT	"port "
	mov	$8, %ecx
	call	puthex
	PRINT	"\ndone\n"
	EXIT	0

	FLAT_LIB
