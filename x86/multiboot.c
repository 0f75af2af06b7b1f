/*
 * Multiboot (version 1) kernels, which QEMU's -kernel also boots: a header
 * in the first 8 KiB of the file says how to load it (ELF, or its own
 * address fields), and the kernel starts in 32-bit protected mode with
 * EAX = 0x2BADB002 and EBX = the boot information: memory sizes, the e820
 * map, the command line, the initrd as module 0 and our name.
 */
#include <string.h>
#include "boot.h"
#include "e820.h"
#include "machine.h"
#include "util.h"
#include "vm.h"

#define MB_SEARCH 8192
#define MB_F_PAGE_ALIGN (1u << 0)	/* modules on 4 KiB boundaries */
#define MB_F_MEMINFO (1u << 1)		/* mem_* and mmap_* in the info */
#define MB_F_VIDEO (1u << 2)		/* a video mode: we have no framebuffer */
#define MB_REQUIRED_KNOWN (MB_F_PAGE_ALIGN | MB_F_MEMINFO)

/* Info flags */
#define MBI_MEM (1u << 0)
#define MBI_CMDLINE (1u << 2)
#define MBI_MODS (1u << 3)
#define MBI_MMAP (1u << 6)
#define MBI_LOADER_NAME (1u << 9)

/* The info page (at PVH_INFO_GPA: a Multiboot kernel has no PVH entry): its layout. */
#define MBI_GPA PVH_INFO_GPA
#define MBI_MODS_OFF 0x80
#define MBI_NAME_OFF 0x90
#define MBI_MODCMD_OFF 0x98
#define MBI_MMAP_OFF 0x100

int multiboot_find(const char *path, const uint8_t *buf, size_t len, struct multiboot_header *mh)
{
	memset(mh, 0, sizeof(*mh));
	for (size_t o = 0; o + 12 <= MIN(len, (size_t)MB_SEARCH); o += 4) {
		if (get_le32(buf + o) != MULTIBOOT_MAGIC)
			continue;
		uint32_t flags = get_le32(buf + o + 4);
		if ((uint32_t)(MULTIBOOT_MAGIC + flags + get_le32(buf + o + 8)) != 0)
			continue;	/* not a header: the magic appeared by chance */
		mh->offset = o;
		mh->flags = flags;
		if ((flags & 0xffff) & ~MB_REQUIRED_KNOWN)
			return err_set("%s: the Multiboot header asks for %s lkvm does not provide (flags 0x%x)", path,
				       flags & MB_F_VIDEO ? "a video mode" : "features", flags);
		if (flags & MULTIBOOT_F_ADDRESS) {
			if (o + 32 > len)
				return err_set("%s: truncated Multiboot header", path);
			mh->header_addr = get_le32(buf + o + 12);
			mh->load_addr = get_le32(buf + o + 16);
			mh->load_end_addr = get_le32(buf + o + 20);
			mh->bss_end_addr = get_le32(buf + o + 24);
			mh->entry_addr = get_le32(buf + o + 28);
			if (mh->load_addr > mh->header_addr || mh->header_addr - mh->load_addr > o ||
			    (mh->load_end_addr && mh->load_end_addr < mh->load_addr) ||
			    (mh->bss_end_addr && mh->bss_end_addr < MAX(mh->load_end_addr, mh->load_addr)))
				return err_set("%s: the Multiboot header's addresses are inconsistent", path);
			uint64_t file_off = o - (mh->header_addr - mh->load_addr);
			uint64_t size = mh->load_end_addr ? mh->load_end_addr - mh->load_addr : len - file_off;
			if (file_off + size > len)
				return err_set("%s: the Multiboot header says %llu bytes to load, the file is shorter", path,
					       (unsigned long long)size);
			if (mh->bss_end_addr && mh->bss_end_addr < mh->load_addr + size)
				return err_set("%s: the Multiboot header's bss ends inside what it loads", path);
			if (!mh->entry_addr || mh->load_addr + size > 0xffffffffULL)
				return err_set("%s: the Multiboot header's addresses are inconsistent", path);
		}
		return 1;
	}
	return 0;
}

/* Load it as the header says; where it ends (for the initrd) and its entry. */
static int load_image(struct vm *vm, const char *path, const uint8_t *buf, size_t len,
		      const struct multiboot_header *mh, uint64_t *end, uint64_t *entry)
{
	if (!(mh->flags & MULTIBOOT_F_ADDRESS)) {
		struct elf_info ei;
		if (elf_parse(path, buf, len, &ei) < 0)
			return err_set("%s: a Multiboot kernel without address fields must be an ELF image: %s", path,
				       err_msg());
		if (elf_load(vm, path, buf, &ei) < 0)
			return -1;
		*end = ei.hi;
		*entry = ei.entry;
		return 0;
	}
	uint64_t file_off = mh->offset - (mh->header_addr - mh->load_addr);
	uint64_t size = mh->load_end_addr ? mh->load_end_addr - mh->load_addr : len - file_off;
	uint64_t bss_end = mh->bss_end_addr ? mh->bss_end_addr : mh->load_addr + size;
	uint8_t *dst = guest_ptr(&vm->mem, mh->load_addr, bss_end - mh->load_addr);
	if (!dst || bss_end == mh->load_addr)
		return err_set("%s: Multiboot image at 0x%x-0x%llx does not fit in guest RAM (-m %llu)", path,
			       mh->load_addr, (unsigned long long)bss_end, (unsigned long long)(vm->mem.ram_size >> 20));
	memcpy(dst, buf + file_off, size);
	memset(dst + size, 0, bss_end - mh->load_addr - size);
	*end = bss_end;
	*entry = mh->entry_addr;
	return 0;
}

int multiboot_load(struct vm *vm, const uint8_t *buf, size_t len, const struct multiboot_header *mh)
{
	struct pc *pc = vm->board;
	const char *path = vm->cfg.kernel;
	uint64_t end = 0, entry = 0, initrd_gpa, initrd_size;
	if (load_image(vm, path, buf, len, mh, &end, &entry) < 0 ||
	    x86_load_initrd(vm, 0xffffffffULL, end, &initrd_gpa, &initrd_size) < 0 ||
	    x86_place_cmdline(vm, BOOT_CMDLINE_GPA, BOOT_CMDLINE_MAX) < 0)
		return -1;
	uint8_t *mbi = guest_ptr(&vm->mem, MBI_GPA, 0x1000);
	memset(mbi, 0, 0x1000);
	uint32_t flags = MBI_MEM | MBI_CMDLINE | MBI_MMAP | MBI_LOADER_NAME;
	/* mem_lower: KiB below the EBDA; mem_upper: KiB from 1 MiB to the first hole. */
	put_le32(mbi + 4, EBDA_START >> 10);
	put_le32(mbi + 8, (uint32_t)((vm->mem.r[0].size - MiB(1)) >> 10));
	put_le32(mbi + 16, BOOT_CMDLINE_GPA);
	if (initrd_size) {
		flags |= MBI_MODS;
		put_le32(mbi + 20, 1);
		put_le32(mbi + 24, MBI_GPA + MBI_MODS_OFF);
		uint8_t *mod = mbi + MBI_MODS_OFF;
		put_le32(mod, (uint32_t)initrd_gpa);
		put_le32(mod + 4, (uint32_t)(initrd_gpa + initrd_size));
		put_le32(mod + 8, MBI_GPA + MBI_MODCMD_OFF);	/* "": the module's command line */
	}
	struct e820_entry map[E820_MAX];
	int n = e820_build(&vm->mem, map, E820_MAX);
	for (int i = 0; i < n; i++) {
		uint8_t *e = mbi + MBI_MMAP_OFF + i * 24;
		put_le32(e, 20);	/* size of the rest */
		put_le64(e + 4, map[i].addr);
		put_le64(e + 12, map[i].size);
		put_le32(e + 20, map[i].type);
	}
	put_le32(mbi + 44, n * 24);
	put_le32(mbi + 48, MBI_GPA + MBI_MMAP_OFF);
	memcpy(mbi + MBI_NAME_OFF, "lkvm", 5);
	put_le32(mbi + 64, MBI_GPA + MBI_NAME_OFF);
	put_le32(mbi, flags);
	pc->entry_mode = ENTRY_MB32;
	pc->entry_rip = entry;
	pr_debug("Multiboot kernel, entry at 0x%llx", (unsigned long long)entry);
	return 0;
}
