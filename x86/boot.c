/*
 * Kernel loading: bzImage (64-bit or 16-bit boot protocol), ELF vmlinux (PVH
 * note or 64-bit entry) and flat binaries. Follows the Linux x86 boot protocol
 * (Documentation/x86/boot.rst) and the PVH start-info ABI.
 */
#include <elf.h>
#include <stdlib.h>
#include <string.h>
#include "acpi.h"
#include "boot.h"
#include "machine.h"
#include "bios.h"
#include "e820.h"
#include "util.h"
#include "vm.h"

/* Offsets into struct boot_params / the setup header. */
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE  0x0c4
#define BP_EXT_CMD_LINE_PTR  0x0c8
#define BP_E820_ENTRIES 0x1e8
#define BP_SETUP_SECTS  0x1f1
#define BP_VID_MODE     0x1fa
#define BP_BOOT_FLAG    0x1fe
#define BP_HEADER       0x202
#define BP_VERSION      0x206
#define BP_TYPE_OF_LOADER 0x210
#define BP_LOADFLAGS    0x211
#define BP_CODE32_START 0x214
#define BP_RAMDISK_IMAGE 0x218
#define BP_RAMDISK_SIZE 0x21c
#define BP_HEAP_END_PTR 0x224
#define BP_CMD_LINE_PTR 0x228
#define BP_INITRD_ADDR_MAX 0x22c
#define BP_KERNEL_ALIGNMENT 0x230
#define BP_RELOCATABLE  0x234
#define BP_XLOADFLAGS   0x236
#define BP_CMDLINE_SIZE 0x238
#define BP_PREF_ADDRESS 0x258
#define BP_INIT_SIZE    0x260
#define BP_E820_TABLE   0x2d0
#define BP_E820_MAX     128
#define BOOT_PARAMS_SIZE 4096

#define LOADED_HIGH   0x01
#define CAN_USE_HEAP  0x80
#define XLF_KERNEL_64 0x01

#define HDRS_MAGIC 0x53726448	/* "HdrS" */
#define PVH_MAGIC 0x336ec578
#define XEN_ELFNOTE_PHYS32_ENTRY 18

/* Real-mode bzImage layout: setup at 0x10000, its heap/stack to 0x1f000. */
#define RM_SETUP_SEG 0x1000
#define RM_SETUP_GPA 0x10000ULL
#define RM_HEAP_END  0xe000
#define FLAT_DEFAULT_ADDR 0x10000ULL
#define KERNEL_DEFAULT_LOAD 0x1000000ULL

enum image_kind image_detect(const uint8_t *buf, size_t len)
{
	if (len >= 4 && !memcmp(buf, ELFMAG, SELFMAG))
		return IMAGE_ELF;
	if (len >= BP_HEADER + 4 && get_le32(buf + BP_HEADER) == HDRS_MAGIC &&
	    get_le16(buf + BP_BOOT_FLAG) == 0xAA55)
		return IMAGE_BZIMAGE;
	if (len == 0)
		return IMAGE_INVALID;
	return IMAGE_FLAT;
}

int bzimage_parse(const char *path, const uint8_t *buf, size_t len, struct bzimage_info *bi)
{
	memset(bi, 0, sizeof(*bi));
	if (len < BP_HEADER + 4 || get_le32(buf + BP_HEADER) != HDRS_MAGIC)
		return err_set("%s: not a bzImage (no HdrS setup header)", path);
	if (len < 1024)
		return err_set("%s: truncated bzImage (%zu bytes, not even the setup header's sectors)", path, len);
	bi->version = get_le16(buf + BP_VERSION);
	if (bi->version < 0x206)
		return err_set("%s: boot protocol %x.%02x is too old (need 2.06)", path,
			       bi->version >> 8, bi->version & 0xff);
	unsigned sects = buf[BP_SETUP_SECTS] ? buf[BP_SETUP_SECTS] : 4;
	bi->setup_size = (sects + 1) * 512;
	if (bi->setup_size >= len)
		return err_set("%s: truncated bzImage (setup %u bytes, file %zu bytes)", path, bi->setup_size, len);
	bi->loadflags = buf[BP_LOADFLAGS];
	if (!(bi->loadflags & LOADED_HIGH))
		return err_set("%s: zImage (not loaded high) is not supported", path);
	bi->initrd_addr_max = get_le32(buf + BP_INITRD_ADDR_MAX);
	bi->kernel_alignment = get_le32(buf + BP_KERNEL_ALIGNMENT);
	bi->relocatable = buf[BP_RELOCATABLE];
	bi->xloadflags = bi->version >= 0x20c ? get_le16(buf + BP_XLOADFLAGS) : 0;
	bi->cmdline_size = get_le32(buf + BP_CMDLINE_SIZE);
	bi->pref_address = bi->version >= 0x20a ? get_le64(buf + BP_PREF_ADDRESS) : 0;
	bi->init_size = bi->version >= 0x20a ? get_le32(buf + BP_INIT_SIZE) : 0;
	bi->code32_start = get_le32(buf + BP_CODE32_START);
	if (bi->init_size == 0)
		bi->init_size = (len - bi->setup_size) * 4;	/* no hint: be generous */
	/* syssize counts 16-byte paragraphs of the protected-mode part. */
	uint64_t syssize = (uint64_t)get_le32(buf + 0x1f4) * 16;
	if (syssize > len - bi->setup_size + 15)
		return err_set("%s: truncated bzImage (header says %llu bytes of kernel, file has %zu)", path,
			       (unsigned long long)syssize, len - bi->setup_size);
	return 0;
}

/* Program header i of either class, copied out (a file's offsets need not be aligned). */
static Elf64_Phdr phdr_at(const uint8_t *buf, bool is32, uint64_t phoff, int i)
{
	Elf64_Phdr ph;
	if (!is32) {
		memcpy(&ph, buf + phoff + (size_t)i * sizeof(ph), sizeof(ph));
		return ph;
	}
	Elf32_Phdr p32;
	memcpy(&p32, buf + phoff + (size_t)i * sizeof(p32), sizeof(p32));
	ph = (Elf64_Phdr){ .p_type = p32.p_type, .p_flags = p32.p_flags, .p_offset = p32.p_offset,
			   .p_vaddr = p32.p_vaddr, .p_paddr = p32.p_paddr, .p_filesz = p32.p_filesz,
			   .p_memsz = p32.p_memsz, .p_align = p32.p_align };
	return ph;
}

/* Walk a PT_NOTE segment for Xen's PVH 32-bit entry point. */
static uint64_t pvh_note(const uint8_t *p, uint64_t n)
{
	uint64_t off = 0, entry = 0;
	while (off + 12 <= n) {
		uint32_t namesz = get_le32(p + off), descsz = get_le32(p + off + 4), type = get_le32(p + off + 8);
		uint64_t name_off = off + 12, desc_off = name_off + ALIGN_UP((uint64_t)namesz, 4);
		uint64_t next = desc_off + ALIGN_UP((uint64_t)descsz, 4);
		if (next > n || next <= off)
			break;
		if (type == XEN_ELFNOTE_PHYS32_ENTRY && namesz == 4 && !memcmp(p + name_off, "Xen", 4) && descsz >= 4)
			entry = descsz >= 8 ? get_le64(p + desc_off) : get_le32(p + desc_off);
		off = next;
	}
	return entry;
}

int elf_parse(const char *path, const uint8_t *buf, size_t len, struct elf_info *ei)
{
	memset(ei, 0, sizeof(*ei));
	if (len < SELFMAG || memcmp(buf, ELFMAG, SELFMAG))
		return err_set("%s: not an ELF file", path);
	if (len < EI_NIDENT + 2 || (buf[EI_CLASS] == ELFCLASS64 ? len < sizeof(Elf64_Ehdr) : len < sizeof(Elf32_Ehdr)))
		return err_set("%s: truncated ELF header (%zu bytes)", path, len);
	/* The fields both classes share, widened. */
	uint64_t entry, phoff;
	unsigned phentsize, phnum, machine;
	if (buf[EI_CLASS] == ELFCLASS64) {
		Elf64_Ehdr eh;
		memcpy(&eh, buf, sizeof(eh));
		entry = eh.e_entry, phoff = eh.e_phoff, phentsize = eh.e_phentsize, phnum = eh.e_phnum, machine = eh.e_machine;
		if (machine != EM_X86_64)
			return err_set("%s: not an x86-64 ELF image", path);
	} else if (buf[EI_CLASS] == ELFCLASS32) {
		Elf32_Ehdr eh;
		memcpy(&eh, buf, sizeof(eh));
		entry = eh.e_entry, phoff = eh.e_phoff, phentsize = eh.e_phentsize, phnum = eh.e_phnum, machine = eh.e_machine;
		if (machine != EM_386)
			return err_set("%s: not an x86-64 ELF image (nor an i386 one)", path);
		ei->is32 = true;
	} else {
		return err_set("%s: not an x86-64 ELF image", path);
	}
	size_t phsize = ei->is32 ? sizeof(Elf32_Phdr) : sizeof(Elf64_Phdr);
	if (phentsize != phsize || phnum == 0 || phnum > ELF_MAX_SEGS || phoff > len ||
	    (uint64_t)phnum * phsize > len - phoff)
		return err_set("%s: corrupt ELF program headers", path);
	ei->lo = UINT64_MAX;
	for (unsigned i = 0; i < phnum; i++) {
		Elf64_Phdr ph = phdr_at(buf, ei->is32, phoff, i);
		if (ph.p_offset > len || ph.p_filesz > len - ph.p_offset)
			return err_set("%s: ELF segment %u lies outside the file", path, i);
		if (ph.p_type == PT_LOAD) {
			if (ph.p_memsz < ph.p_filesz || ph.p_paddr + ph.p_memsz < ph.p_paddr)
				return err_set("%s: ELF segment %u has bad sizes", path, i);
			if (!ph.p_memsz)
				continue;
			ei->lo = MIN(ei->lo, ph.p_paddr);
			ei->hi = MAX(ei->hi, ph.p_paddr + ph.p_memsz);
			ei->seg[ei->nseg++] = (typeof(ei->seg[0])){ ph.p_paddr, ph.p_offset, ph.p_filesz, ph.p_memsz };
			/* A virtual entry maps to physical through the segment that holds it. */
			if (entry >= ph.p_vaddr && entry - ph.p_vaddr < ph.p_memsz)
				ei->entry = ph.p_paddr + (entry - ph.p_vaddr);
		} else if (ph.p_type == PT_NOTE) {
			uint64_t e = pvh_note(buf + ph.p_offset, ph.p_filesz);
			if (e)
				ei->pvh_entry = e;
		}
	}
	if (ei->lo == UINT64_MAX)
		return err_set("%s: ELF image has no loadable segments", path);
	if (!ei->entry)
		ei->entry = entry;
	return 0;
}

int elf_load(struct vm *vm, const char *path, const uint8_t *buf, const struct elf_info *ei)
{
	for (int i = 0; i < ei->nseg; i++) {
		uint8_t *dst = guest_ptr(&vm->mem, ei->seg[i].paddr, ei->seg[i].memsz);
		if (!dst)
			return err_set("%s: segment at 0x%llx+0x%llx does not fit in guest RAM (-m %llu)", path,
				       (unsigned long long)ei->seg[i].paddr, (unsigned long long)ei->seg[i].memsz,
				       (unsigned long long)(vm->mem.ram_size >> 20));
		memcpy(dst, buf + ei->seg[i].off, ei->seg[i].filesz);
		memset(dst + ei->seg[i].filesz, 0, ei->seg[i].memsz - ei->seg[i].filesz);
	}
	return 0;
}

/* Highest RAM address below 4 GiB (exclusive). */
static uint64_t low_ram_end(struct vm *vm)
{
	return vm->mem.r[0].size;
}

int x86_load_initrd(struct vm *vm, uint64_t addr_max, uint64_t kernel_end, uint64_t *gpa, uint64_t *size)
{
	*gpa = *size = 0;
	if (!vm->cfg.initrd)
		return 0;
	uint8_t *buf;
	size_t len;
	if (read_file(vm->cfg.initrd, &buf, &len) < 0)
		return -1;
	if (len == 0) {
		free(buf);
		return err_set("%s: initrd is empty", vm->cfg.initrd);
	}
	uint64_t top = MIN(low_ram_end(vm), addr_max + 1);
	/* Keep the top 1 MiB free, place page-aligned just below. */
	if (top < MiB(2) || len > top - MiB(1) || ((top - MiB(1) - len) & ~0xfffULL) < kernel_end) {
		free(buf);
		return err_set("%s: initrd of %zu bytes does not fit in guest RAM below 0x%llx: raise -m",
			       vm->cfg.initrd, len, (unsigned long long)top);
	}
	uint64_t addr = (top - MiB(1) - len) & ~0xfffULL;
	guest_copy_to(&vm->mem, addr, buf, len);
	free(buf);
	*gpa = addr;
	*size = len;
	return 0;
}

int x86_place_cmdline(struct vm *vm, uint64_t gpa, uint64_t max)
{
	const char *c = ((struct pc *)vm->board)->cmdline;
	c = c ? c : "";
	size_t n = strlen(c);
	if (max && n >= max)
		return err_set("command line is %zu bytes, the kernel accepts at most %llu", n, (unsigned long long)max - 1);
	return guest_copy_to(&vm->mem, gpa, c, n + 1);
}

#define BP_ACPI_RSDP_ADDR 0x070

static void fill_e820(struct vm *vm, uint8_t *bp)
{
	put_le64(bp + BP_ACPI_RSDP_ADDR, ACPI_TABLES_GPA);	/* spares the kernel its scan */
	struct e820_entry map[E820_MAX];
	int n = e820_build(&vm->mem, map, E820_MAX);
	memcpy(bp + BP_E820_TABLE, map, n * sizeof(map[0]));
	bp[BP_E820_ENTRIES] = n;
}

static int load_bzimage(struct vm *vm, const uint8_t *buf, size_t len)
{
	struct pc *pc = vm->board;
	const char *path = vm->cfg.kernel;
	struct bzimage_info bi;
	if (bzimage_parse(path, buf, len, &bi) < 0)
		return -1;
	bool long_entry = (bi.xloadflags & XLF_KERNEL_64) && bi.version >= 0x20c && !pc->opts.bios_boot;
	uint64_t load = bi.relocatable ? (bi.pref_address ? bi.pref_address : KERNEL_DEFAULT_LOAD) : bi.code32_start;
	if (!long_entry)
		load = bi.code32_start ? bi.code32_start : 0x100000;
	size_t kernel_len = len - bi.setup_size;
	uint64_t need = MAX((uint64_t)bi.init_size, (uint64_t)kernel_len);
	if (!guest_ptr(&vm->mem, load, need))
		return err_set("%s: kernel needs 0x%llx bytes at 0x%llx: guest RAM (-m %llu) is too small", path,
			       (unsigned long long)need, (unsigned long long)load,
			       (unsigned long long)(vm->mem.ram_size >> 20));
	guest_copy_to(&vm->mem, load, buf + bi.setup_size, kernel_len);

	uint64_t initrd_gpa, initrd_size;
	uint64_t addr_max = bi.initrd_addr_max ? bi.initrd_addr_max : 0x37ffffff;
	if (x86_load_initrd(vm, addr_max, load + need, &initrd_gpa, &initrd_size) < 0)
		return -1;

	uint64_t cmdline_max = bi.cmdline_size ? (uint64_t)bi.cmdline_size + 1 : 256;
	uint64_t bp_gpa = long_entry ? BOOT_PARAMS_GPA : RM_SETUP_GPA;
	uint64_t cmd_gpa = BOOT_CMDLINE_GPA;
	if (x86_place_cmdline(vm, cmd_gpa, MIN(cmdline_max, BOOT_CMDLINE_MAX)) < 0)
		return -1;

	uint8_t *bp = guest_ptr(&vm->mem, bp_gpa, long_entry ? BOOT_PARAMS_SIZE : bi.setup_size);
	memset(bp, 0, BOOT_PARAMS_SIZE);
	if (!long_entry)
		memcpy(bp, buf, bi.setup_size);	/* the setup code runs from here */
	else
		memcpy(bp + BP_SETUP_SECTS, buf + BP_SETUP_SECTS, 0x202 + buf[0x201] - BP_SETUP_SECTS);
	bp[BP_TYPE_OF_LOADER] = 0xff;	/* undefined loader */
	bp[BP_LOADFLAGS] |= CAN_USE_HEAP;
	put_le16(bp + BP_HEAP_END_PTR, RM_HEAP_END - 0x200);
	put_le16(bp + BP_VID_MODE, 0xffff);	/* "normal" */
	put_le32(bp + BP_CMD_LINE_PTR, cmd_gpa);
	put_le32(bp + BP_RAMDISK_IMAGE, initrd_gpa);
	put_le32(bp + BP_RAMDISK_SIZE, initrd_size);
	put_le32(bp + BP_CODE32_START, load);
	/* In the 16-bit path bp is the setup code itself: its e820 table offset
	 * holds code there, and the setup code asks int 15h for the map anyway. */
	if (long_entry)
		fill_e820(vm, bp);
	else
		put_le64(bp + BP_ACPI_RSDP_ADDR, ACPI_TABLES_GPA);

	pc->boot_params_gpa = bp_gpa;
	if (long_entry) {
		pc->entry_mode = ENTRY_LONG64;
		pc->entry_rip = load + 0x200;
		pc->entry_rsp = 0;	/* the kernel sets up its own stack */
	} else {
		/* 16-bit boot protocol: the setup code asks the BIOS for e820. */
		pc->entry_mode = ENTRY_REAL16;
		pc->rm_cs = RM_SETUP_SEG + 0x20;
		pc->rm_ip = 0;
		pc->rm_ss = RM_SETUP_SEG;
		pc->rm_sp = RM_HEAP_END;
	}
	pr_debug("bzImage %x.%02x loaded at 0x%llx, %s entry", bi.version >> 8, bi.version & 0xff,
		 (unsigned long long)load, long_entry ? "64-bit" : "16-bit");
	return 0;
}

/* Zero page for a vmlinux entered at its 64-bit startup code. */
static int write_boot_params(struct vm *vm, uint64_t initrd_gpa, uint64_t initrd_size)
{
	uint8_t *bp = guest_ptr(&vm->mem, BOOT_PARAMS_GPA, BOOT_PARAMS_SIZE);
	memset(bp, 0, BOOT_PARAMS_SIZE);
	put_le16(bp + BP_BOOT_FLAG, 0xAA55);
	put_le32(bp + BP_HEADER, HDRS_MAGIC);
	put_le16(bp + BP_VERSION, 0x20f);
	bp[BP_TYPE_OF_LOADER] = 0xff;
	bp[BP_LOADFLAGS] = LOADED_HIGH;
	put_le16(bp + BP_VID_MODE, 0xffff);
	put_le32(bp + BP_CMD_LINE_PTR, BOOT_CMDLINE_GPA);
	put_le32(bp + BP_RAMDISK_IMAGE, initrd_gpa);
	put_le32(bp + BP_RAMDISK_SIZE, initrd_size);
	fill_e820(vm, bp);
	((struct pc *)vm->board)->boot_params_gpa = BOOT_PARAMS_GPA;
	return 0;
}

static int write_pvh_info(struct vm *vm, uint64_t initrd_gpa, uint64_t initrd_size)
{
	/* hvm_start_info (version 1), then one module and the memory map. */
	uint8_t *si = guest_ptr(&vm->mem, PVH_INFO_GPA, 0x1000);
	memset(si, 0, 0x1000);
	uint64_t mod_gpa = PVH_INFO_GPA + 0x40, map_gpa = PVH_INFO_GPA + 0x80;
	put_le32(si + 0, PVH_MAGIC);
	put_le32(si + 4, 1);
	put_le32(si + 12, initrd_size ? 1 : 0);
	put_le64(si + 16, initrd_size ? mod_gpa : 0);
	put_le64(si + 24, BOOT_CMDLINE_GPA);
	put_le64(si + 32, ACPI_TABLES_GPA);	/* RSDP */
	struct e820_entry map[E820_MAX];
	int n = e820_build(&vm->mem, map, E820_MAX);
	put_le64(si + 40, map_gpa);
	put_le32(si + 48, n);
	put_le64(si + 0x40, initrd_gpa);
	put_le64(si + 0x48, initrd_size);
	for (int i = 0; i < n; i++) {
		uint8_t *e = si + 0x80 + i * 24;
		put_le64(e, map[i].addr);
		put_le64(e + 8, map[i].size);
		put_le32(e + 16, map[i].type);
	}
	return 0;
}

static int load_elf(struct vm *vm, const uint8_t *buf, size_t len)
{
	struct pc *pc = vm->board;
	const char *path = vm->cfg.kernel;
	struct elf_info ei;
	if (elf_parse(path, buf, len, &ei) < 0 || elf_load(vm, path, buf, &ei) < 0)
		return -1;
	uint64_t initrd_gpa, initrd_size;
	if (x86_load_initrd(vm, 0xffffffffULL, ei.hi, &initrd_gpa, &initrd_size) < 0)
		return -1;
	if (x86_place_cmdline(vm, BOOT_CMDLINE_GPA, 2048) < 0)
		return -1;
	if (ei.pvh_entry) {
		write_pvh_info(vm, initrd_gpa, initrd_size);
		pc->entry_mode = ENTRY_PVH32;
		pc->entry_rip = ei.pvh_entry;
	} else {
		write_boot_params(vm, initrd_gpa, initrd_size);
		pc->entry_mode = ENTRY_LONG64;
		pc->entry_rip = ei.entry;
	}
	pr_debug("ELF loaded 0x%llx-0x%llx, %s entry at 0x%llx", (unsigned long long)ei.lo,
		 (unsigned long long)ei.hi, ei.pvh_entry ? "PVH" : "64-bit", (unsigned long long)pc->entry_rip);
	return 0;
}

static int load_flat(struct vm *vm, const uint8_t *buf, size_t len)
{
	struct pc *pc = vm->board;
	uint64_t addr = pc->opts.flat_addr ? pc->opts.flat_addr : FLAT_DEFAULT_ADDR;
	if (addr & 0xf || addr >= 0x100000)
		return err_set("--flat address 0x%llx must be 16-byte aligned and below 1 MiB",
			       (unsigned long long)addr);
	if (addr + len > EBDA_START)
		return err_set("%s: flat binary of %zu bytes at 0x%llx overlaps the EBDA at 0x%llx", vm->cfg.kernel,
			       len, (unsigned long long)addr, EBDA_START);
	if (guest_copy_to(&vm->mem, addr, buf, len) < 0)
		return -1;
	pc->entry_mode = ENTRY_REAL16;
	pc->rm_cs = addr >> 4;
	pc->rm_ip = 0;
	pc->rm_ss = pc->rm_cs;
	pc->rm_sp = 0xfff0;
	return 0;
}

/*
 * How a file boots, in QEMU's order for what is not a bzImage: a bzImage; an
 * ELF image with a PVH note (x86-64 or i386); a Multiboot kernel; an x86-64
 * ELF through its 64-bit entry. Anything else is not a kernel, unless --flat.
 */
static int choose(const char *path, const uint8_t *buf, size_t len, bool flat, struct multiboot_header *mh)
{
	if (len == 0)
		return err_set("%s: file is empty", path);
	if (flat)
		return IMAGE_FLAT;
	struct bzimage_info bi;
	struct elf_info ei;
	enum image_kind kind = image_detect(buf, len);
	if (kind == IMAGE_BZIMAGE)
		return bzimage_parse(path, buf, len, &bi) < 0 ? -1 : IMAGE_BZIMAGE;
	bool elf = kind == IMAGE_ELF && elf_parse(path, buf, len, &ei) == 0;
	if (elf && ei.pvh_entry)
		return IMAGE_ELF;
	char elf_err[512];
	snprintf(elf_err, sizeof(elf_err), "%s", err_msg());
	int mb = multiboot_find(path, buf, len, mh);
	if (mb < 0)
		return -1;
	if (mb > 0 && !(mh->flags & MULTIBOOT_F_ADDRESS) && !elf)
		return err_set("%s: a Multiboot header without address fields in a file that is not an ELF image", path);
	if (mb > 0)
		return IMAGE_MULTIBOOT;
	if (elf && !ei.is32)
		return IMAGE_ELF;
	if (kind == IMAGE_ELF)
		return err_set("%s", elf && ei.is32 ? "a 32-bit ELF image without a PVH note or a Multiboot header: "
							"not a kernel lkvm can boot" : elf_err);
	return err_set("%s: not a kernel (neither a bzImage, an ELF image nor a Multiboot kernel); "
		       "--flat loads a file as a flat real-mode binary", path);
}

int x86_check_kernel(const char *path, bool flat)
{
	uint8_t *buf;
	size_t len;
	if (read_file(path, &buf, &len) < 0)
		return -1;
	struct multiboot_header mh;
	int ret = choose(path, buf, len, flat, &mh) < 0 ? -1 : 0;
	free(buf);
	return ret;
}

int x86_load_kernel(struct vm *vm)
{
	struct pc *pc = vm->board;
	uint8_t *buf;
	size_t len;
	if (read_file(vm->cfg.kernel, &buf, &len) < 0)
		return -1;
	int ret;
	struct multiboot_header mh;
	int kind = choose(vm->cfg.kernel, buf, len, pc->opts.flat, &mh);
	if (kind < 0) {
		free(buf);
		return -1;
	}
	/* The real-mode services are there for every format; cheap and harmless. */
	struct e820_entry map[E820_MAX];
	int n = e820_build(&vm->mem, map, E820_MAX);
	if (bios_setup(vm, map, n) < 0) {
		free(buf);
		return -1;
	}
	switch (kind) {
	case IMAGE_BZIMAGE: ret = load_bzimage(vm, buf, len); break;
	case IMAGE_ELF: ret = load_elf(vm, buf, len); break;
	case IMAGE_MULTIBOOT: ret = multiboot_load(vm, buf, len, &mh); break;
	default: ret = load_flat(vm, buf, len); break;
	}
	free(buf);
	return ret;
}
