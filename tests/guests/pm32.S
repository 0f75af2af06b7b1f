/* 32-bit protected mode: GDT, CR0.PE, far jump, print, exit 0. */
#include "common.h"
	.code16
	.globl	_start
_start:
	PRINT16	"real mode: entering protected mode\n"
	ENTER_PM32 pm_entry

	REAL_MODE_LIB
	GDT

	.code32
pm_entry:
	FLAT_SEGMENTS
	mov	%cr0, %ebx
	PRINT	"hello from protected mode, cr0 "
	mov	$8, %ecx
	call	puthex
	PRINT	"\n"
	EXIT	0

	FLAT_LIB
