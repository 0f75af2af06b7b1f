/*
 * A guest both lkvm and QEMU can boot: an ELF with Xen's PVH entry note,
 * entered in 32-bit protected mode with paging off. It writes one byte to the
 * UART, then either exits through the debug-exit port 0xf4 (EXIT=1) or halts.
 */
	.section .note.Xen, "a", @note
	.balign 4
	.long	4, 4, 18		/* namesz, descsz, XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz	"Xen"
	.long	pvh_entry

	.text
	.code32
	.globl	pvh_entry
pvh_entry:
	mov	$0x3f8, %dx
	mov	$'!', %al
	outb	%al, %dx
#if EXIT
	xor	%eax, %eax
	outl	%eax, $0xf4
#endif
1:	cli
	hlt
	jmp	1b
