/*
 * Real mode hello: once straight to the UART, once through the BIOS
 * teletype (int 10h AH=0Eh, which lkvm's BIOS sends to ttyS0), exit 0.
 */
#include "common.h"
	.code16
	.globl	_start
_start:
	PRINT16	"hello from real mode\n"
	mov	$msg, %si
1:	cs lodsb
	test	%al, %al
	jz	2f
	mov	$0x0e, %ah
	xor	%bx, %bx
	int	$0x10
	jmp	1b
2:	EXIT	0

	REAL_MODE_LIB
msg:	.asciz	"hello through int 10h\n"
