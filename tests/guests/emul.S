/*
 * Instructions KVM's own emulator lacks, on an MMIO operand, so KVM exits with
 * an emulation failure and lkvm must emulate them: popcnt of unclaimed MMIO
 * (all ones) is 32, lzcnt and tzcnt are 0.
 */
#include "longmode.inc"
#define UNCLAIMED_MMIO 0xc0001000

main64:
	mov	$UNCLAIMED_MMIO, %ebx
	popcnt	(%rbx), %eax
	push	%rax
	lea	m1(%rip), %rsi
	call	puts
	pop	%rax
	call	hex32
	mov	$5, %eax
	lzcnt	(%rbx), %eax
	push	%rax
	lea	m2(%rip), %rsi
	call	puts
	pop	%rax
	call	hex32
	xor	%al, %al
	jmp	exit

m1:	.asciz	"popcnt "
m2:	.asciz	"lzcnt "
