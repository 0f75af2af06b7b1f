/*
 * Instructions KVM's in-kernel emulator cannot run, on an MMIO operand, so
 * KVM exits with an emulation failure and lkvm must emulate them itself.
 * The operand is unclaimed MMIO, which reads all ones:
 *   popcnt (32-, 64- and 16-bit) -> 32, 64, 16
 * Not used: lzcnt/tzcnt. KVM's emulator runs F3 0F BD/BC as bsr/bsf without
 * an exit (so lzcnt of MMIO all ones gives 31 where the CPU gives 0): KVM's
 * quirk, nothing lkvm sees or can fix.
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
	ENTER_LM64 lm_entry

	.code64
lm_entry:
	mov	$STACK_TOP, %rsp
	mov	$UNCLAIMED_MMIO, %edi	/* kept: the output helpers leave EDI alone */
	xor	%eax, %eax
	popcnt	(%rdi), %eax
	mov	%eax, %ebx
	PRINT	"popcnt "
	mov	$8, %ecx
	call	puthex
	PRINT	"\n"

	mov	$5, %rax
	popcnt	(%rdi), %rax
	mov	%rax, %r9
	PRINT	"popcnt64 "
	mov	%r9, %rbx
	shr	$32, %rbx
	mov	$8, %ecx
	call	puthex
	mov	%r9d, %ebx
	mov	$8, %ecx
	call	puthex
	PRINT	"\n"

	mov	$0x12345678, %eax	/* a 16-bit result keeps the upper half */
	popcnt	(%rdi), %ax
	mov	%eax, %ebx
	PRINT	"popcnt16 "
	mov	$8, %ecx
	call	puthex
	PRINT	"\n"
	EXIT	0

	FLAT_LIB
