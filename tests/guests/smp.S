/*
 * SMP: the BSP (long mode) wakes the other vCPUs with INIT-SIPI-SIPI through
 * its local APIC; each AP starts in real mode at ap_entry, prints its APIC id
 * under a spinlock and halts. The BSP waits for as many CPUs as CPUID leaf 1
 * reports (lkvm sets it from -c), prints "cpus N" and exits 0.
 */
#include "longmode.inc"
#define LAPIC 0xfee00000
#define AP_VECTOR ((LOAD + 0x1000) >> 12)	/* ap_entry is placed at offset 0x1000 */

main64:
	mov	$1, %eax
	cpuid
	shr	$16, %ebx
	and	$0xff, %ebx
	mov	%ebx, expected(%rip)
	call	hello
	mov	$LAPIC, %ebx
	orl	$0x100, 0xf0(%rbx)	/* software-enable the local APIC */
	movl	$0x000c4500, 0x300(%rbx)	/* INIT to all others */
	call	delay
	movl	$(0x000c4600 | AP_VECTOR), 0x300(%rbx)	/* SIPI */
	call	delay
	movl	$(0x000c4600 | AP_VECTOR), 0x300(%rbx)
	rdtsc
	shl	$32, %rdx
	or	%rax, %rdx
	mov	%rdx, %r8
1:	mov	count(%rip), %eax
	cmp	expected(%rip), %eax
	jae	2f
	pause
	rdtsc
	shl	$32, %rdx
	or	%rax, %rdx
	sub	%r8, %rdx
	mov	$20000000000, %rax	/* give up after ~10 s of TSC */
	cmp	%rax, %rdx
	jb	1b
2:	call	lock
	lea	cpus(%rip), %rsi
	call	puts
	mov	count(%rip), %eax
	add	$'0', %al
	mov	$0x3f8, %dx
	outb	%al, %dx
	mov	$'\n', %al
	outb	%al, %dx
	call	unlock
	xor	%al, %al
	jmp	exit

/* The BSP's own line. */
hello:	call	lock
	lea	cpu(%rip), %rsi
	call	puts
	mov	$1, %eax
	cpuid
	shr	$24, %ebx
	lea	'0'(%rbx), %eax
	mov	$0x3f8, %dx
	outb	%al, %dx
	mov	$'\n', %al
	outb	%al, %dx
	lock incl count(%rip)
	jmp	unlock

lock:	mov	$1, %al
3:	xchg	%al, spin(%rip)
	test	%al, %al
	jnz	3b
	ret
unlock:	movb	$0, spin(%rip)
	ret
delay:	mov	$2000000, %ecx
4:	pause
	loop	4b
	ret

cpu:	.asciz	"cpu apic "
cpus:	.asciz	"cpus "
	.balign	4
count:	.long	0
expected: .long	1
spin:	.byte	0

/* APs: real mode, CS = (LOAD + 0x1000) >> 4; data through DS = LOAD >> 4. */
	.code16
	.org	0x1000
ap_entry:
	cli
	mov	$(LOAD >> 4), %ax
	mov	%ax, %ds
5:	mov	$1, %al
	xchg	%al, spin
	test	%al, %al
	jnz	5b
	mov	$cpu, %si
	mov	$0x3f8, %dx
6:	lodsb
	test	%al, %al
	jz	7f
	outb	%al, %dx
	jmp	6b
7:	mov	$1, %eax
	cpuid
	shr	$24, %ebx
	mov	%bl, %al
	add	$'0', %al
	mov	$0x3f8, %dx		/* cpuid clobbered it */
	outb	%al, %dx
	mov	$'\n', %al
	outb	%al, %dx
	lock incl count
	movb	$0, spin
8:	hlt
	jmp	8b
