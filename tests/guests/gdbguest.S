/*
 * The gdb stub's test guest (tests/gdb-tests.sh), kept with its symbols in
 * build/tests/guests/gdbguest.elf (linked at 0 like every guest: gdb loads it
 * with symbol-file -o 0x10000). The BSP goes to long mode, wakes the other
 * vCPUs (they count in real mode for ever: a second thread that runs), then
 * `ticks` times: counter += 1 at count_write, tick() with rbx = 0x1234, and
 * prints "count N" (the first bytes of msg) and "rbx R". At the end it prints
 * "magic M" and ends the VM with magic's low byte as lkvm's exit status.
 * gdb changes msg, rbx, magic and ticks; the host reads the result here.
 */
#include "longmode.inc"
#define LAPIC 0xfee00000
#define AP_VECTOR ((LOAD + 0x1000) >> 12)	/* ap_entry is placed at offset 0x1000 */

main64:
	lea	banner(%rip), %rsi
	call	puts
	mov	$LAPIC, %ebx
	orl	$0x100, 0xf0(%rbx)	/* software-enable the local APIC */
	movl	$0x000c4500, 0x300(%rbx)	/* INIT to all others */
	call	delay
	movl	$(0x000c4600 | AP_VECTOR), 0x300(%rbx)	/* SIPI */
	call	delay
	movl	$(0x000c4600 | AP_VECTOR), 0x300(%rbx)
	mov	ticks(%rip), %r12d
1:
count_write:
	incl	counter(%rip)
count_written:
	mov	$0x1234, %ebx
	call	tick
	lea	msg(%rip), %rsi
	call	puts
	mov	counter(%rip), %eax
	call	hex32
	lea	rbxmsg(%rip), %rsi
	call	puts
	mov	%ebx, %eax
	call	hex32
	call	delay
	dec	%r12d
	jnz	1b
	lea	magicmsg(%rip), %rsi
	call	puts
	mov	magic(%rip), %eax
	call	hex32
	mov	magic(%rip), %eax
	jmp	exit

/* A function to break in: gdb steps from tick to tick_2 and changes rbx. */
tick:
	nop
tick_2:
	add	$0, %rbx
	ret

delay:	mov	$2000000, %ecx
2:	pause
	loop	2b
	ret

banner:	.asciz	"gdb guest\n"
msg:	.asciz	"count "
rbxmsg:	.asciz	"rbx "
magicmsg: .asciz "magic "
	.balign	8
counter: .long	0
ticks:	.long	5
magic:	.long	0
ap_count: .long	0

/* Other vCPUs: real mode, CS = (LOAD + 0x1000) >> 4; data through DS = LOAD >> 4. */
	.code16
	.org	0x1000
ap_entry:
	cli
	mov	$(LOAD >> 4), %ax
	mov	%ax, %ds
ap_loop:
	lock incl ap_count
	pause
	jmp	ap_loop
