/*
 * An i386 ELF kernel with a PVH entry note (as QEMU's -kernel takes them), at
 * 1 MiB: it checks the hvm_start_info magic EBX points at, prints the command
 * line it names and exits 0, or 3 when the magic is wrong.
 */
#define BASE 0
#include "common.h"
	.code32
	.globl	_start
	.section .text
_start:
	mov	$0x7000, %esp
	cmpl	$0x336ec578, (%ebx)
	je	1f
	PRINT	"pvh32 bad start info\n"
	EXIT	3
1:	mov	%ebx, %ebp
	PRINT	"pvh32 start info ok, cmdline "
	mov	24(%ebp), %esi
	call	puts
	PRINT	"\n"
	EXIT	0

	FLAT_LIB

	.section .note.Xen, "a"
	.balign	4
	.long	4		/* name size */
	.long	4		/* desc size */
	.long	18		/* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz	"Xen"
	.long	_start
