/*
 * A triple fault in protected mode: an IDT with limit 0, then a divide by
 * zero. #DE finds no gate (#GP), neither does #GP (#DF), nor #DF: shutdown.
 * lkvm must stop with a non-zero status and a register dump.
 */
#include "common.h"
	.code16
	.globl	_start
_start:
	ENTER_PM32 pm_entry

	REAL_MODE_LIB
	GDT

	.code32
pm_entry:
	FLAT_SEGMENTS
	PRINT	"triple fault ahead\n"
	lidt	LIN(idt0)
	xor	%ecx, %ecx
	div	%ecx
	PRINT	"FAIL: still running after the fault\n"
	EXIT	1

	.balign	2
idt0:	.word	0
	.long	0

	FLAT_LIB
