/*
 * A Multiboot kernel (address fields in its header, no ELF load needed), at
 * 1 MiB: it checks EAX, then prints what the boot information says (flags,
 * memory, the command line, the first e820 entry's type, module 0's size,
 * the loader's name) and exits 0, or 3 when EAX is not 0x2BADB002.
 */
#define BASE 0
#include "common.h"
#ifdef MB_ELF
#define MB_FLAGS 0x00000003	/* page-aligned modules, memory info: loaded as an ELF image */
#else
#define MB_FLAGS 0x00010003	/* address fields, page-aligned modules, memory info */
#endif
	.code32
	.globl	_start
	.section .text
mb_header:
	.long	0x1BADB002
	.long	MB_FLAGS
	.long	-(0x1BADB002 + MB_FLAGS)
	.long	mb_header	/* header_addr */
	.long	mb_header	/* load_addr: the file from here */
	.long	load_end	/* load_end_addr */
	.long	bss_end		/* bss_end_addr */
	.long	_start		/* entry_addr */
_start:
	mov	$0x7000, %esp
	mov	%ebx, %ebp	/* the info */
	cmp	$0x2BADB002, %eax
	je	1f
	PRINT	"mb bad magic\n"
	EXIT	3
1:	PRINT	"mb magic ok, flags "
	mov	(%ebp), %ebx
	mov	$8, %ecx
	call	puthex
	PRINT	"\nmb mem_lower "
	mov	4(%ebp), %eax
	call	putdec
	PRINT	" mem_upper "
	mov	8(%ebp), %eax
	call	putdec
	PRINT	"\nmb cmdline "
	mov	16(%ebp), %esi
	call	puts
	PRINT	"\nmb mmap bytes "
	mov	44(%ebp), %eax
	call	putdec
	PRINT	" first type "
	mov	48(%ebp), %esi
	mov	20(%esi), %eax
	call	putdec
	PRINT	"\nmb mods "
	mov	20(%ebp), %eax
	call	putdec
	testl	$8, (%ebp)
	jz	2f
	PRINT	" size "
	mov	24(%ebp), %esi
	mov	4(%esi), %eax
	sub	(%esi), %eax
	call	putdec
2:	PRINT	"\nmb loader "
	mov	64(%ebp), %esi
	call	puts
	PRINT	"\n"
	EXIT	0

	FLAT_LIB
	.section .bss
	.fill	4096, 1, 0
