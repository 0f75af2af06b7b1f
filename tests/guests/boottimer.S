/*
 * Boot-timer test guest (real mode): a wrong byte to the boot-timer port 0xf8
 * (not the mark), then the mark (123), "marked" on ttyS0, then a delay loop
 * forever, so `lkvm stat` can read boot_timer_us while it runs.
 */
#include "common.h"
	.code16
	.globl	_start
_start:
	mov	$7, %al
	outb	%al, $0xf8
	mov	$123, %al
	outb	%al, $0xf8
	PRINT16	"marked\n"
1:	jmp	1b

	REAL_MODE_LIB
