/* Boot-image parsers, e820 builder, guest memory door, bus dispatch. */
#include <ctype.h>
#include <elf.h>
#include <stdio.h>
#include <string.h>
#include "test.h"
#include "boot.h"
#include "bus.h"
#include "e820.h"
#include "guest_mem.h"
#include "util.h"

static uint8_t *make_bzimage(size_t len, uint16_t version, uint8_t setup_sects)
{
	uint8_t *b = calloc(1, len);
	b[0x1f1] = setup_sects;
	put_le16(b + 0x1fe, 0xAA55);
	put_le32(b + 0x202, 0x53726448);
	put_le16(b + 0x206, version);
	b[0x211] = 0x01;		/* LOADED_HIGH */
	put_le32(b + 0x1f4, (len - (setup_sects + 1) * 512) / 16);
	put_le32(b + 0x22c, 0x7fffffff);
	put_le32(b + 0x230, 0x200000);
	b[0x234] = 1;
	put_le16(b + 0x236, 0x3);	/* XLF_KERNEL_64 | above 4G */
	put_le32(b + 0x238, 2047);
	put_le64(b + 0x258, 0x1000000);
	put_le32(b + 0x260, 0x400000);
	return b;
}

TEST(detect)
{
	uint8_t elf[64] = { 0x7f, 'E', 'L', 'F' };
	CHECK_EQ(image_detect(elf, sizeof(elf)), IMAGE_ELF);
	uint8_t *bz = make_bzimage(8192, 0x20f, 4);
	CHECK_EQ(image_detect(bz, 8192), IMAGE_BZIMAGE);
	free(bz);
	uint8_t junk[100] = { 0xeb, 0xfe };
	CHECK_EQ(image_detect(junk, sizeof(junk)), IMAGE_FLAT);
	CHECK_EQ(image_detect(junk, 0), IMAGE_INVALID);
}

TEST(bzimage_ok)
{
	uint8_t *bz = make_bzimage(8192, 0x20f, 4);
	struct bzimage_info bi;
	CHECK_EQ(bzimage_parse("bz", bz, 8192, &bi), 0);
	CHECK_EQ(bi.version, 0x20f);
	CHECK_EQ(bi.setup_size, 5 * 512);
	CHECK_EQ(bi.xloadflags & 1, 1);
	CHECK_EQ(bi.pref_address, 0x1000000);
	CHECK_EQ(bi.init_size, 0x400000);
	CHECK_EQ(bi.cmdline_size, 2047);
	free(bz);
}

TEST(bzimage_bad)
{
	struct bzimage_info bi;
	uint8_t *bz = make_bzimage(8192, 0x205, 4);
	CHECK_EQ(bzimage_parse("old", bz, 8192, &bi), -1);
	CHECK(strstr(err_msg(), "too old") != NULL);
	free(bz);
	/* Truncated: the header promises more kernel than the file holds. */
	bz = make_bzimage(8192, 0x20f, 4);
	CHECK_EQ(bzimage_parse("trunc", bz, 4096, &bi), -1);
	CHECK(strstr(err_msg(), "truncated") != NULL);
	/* Setup sectors past the end. */
	CHECK_EQ(bzimage_parse("trunc2", bz, 1500, &bi), -1);
	bz[0x211] = 0;
	CHECK_EQ(bzimage_parse("zimage", bz, 8192, &bi), -1);
	CHECK(strstr(err_msg(), "zImage") != NULL);
	free(bz);
	uint8_t small[600] = { 0 };
	CHECK_EQ(bzimage_parse("small", small, sizeof(small), &bi), -1);
}

/* A minimal x86-64 ELF: one PT_LOAD, one PT_NOTE with Xen's PVH entry. */
static size_t make_elf(uint8_t *buf, size_t cap, bool with_note)
{
	memset(buf, 0, cap);
	Elf64_Ehdr *eh = (Elf64_Ehdr *)buf;
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_machine = EM_X86_64;
	eh->e_entry = 0xffffffff81000000ULL;
	eh->e_phoff = sizeof(*eh);
	eh->e_phentsize = sizeof(Elf64_Phdr);
	eh->e_phnum = with_note ? 2 : 1;
	Elf64_Phdr *ph = (Elf64_Phdr *)(buf + eh->e_phoff);
	ph[0].p_type = PT_LOAD;
	ph[0].p_offset = 0x200;
	ph[0].p_vaddr = 0xffffffff81000000ULL;
	ph[0].p_paddr = 0x1000000;
	ph[0].p_filesz = 0x100;
	ph[0].p_memsz = 0x2000;
	if (with_note) {
		uint8_t *n = buf + 0x180;
		put_le32(n, 4); put_le32(n + 4, 4); put_le32(n + 8, 18);
		memcpy(n + 12, "Xen", 4);
		put_le32(n + 16, 0x1000040);
		ph[1].p_type = PT_NOTE;
		ph[1].p_offset = 0x180;
		ph[1].p_filesz = 20;
	}
	return 0x300;
}

TEST(elf)
{
	uint8_t buf[0x400];
	struct elf_info ei;
	size_t len = make_elf(buf, sizeof(buf), true);
	CHECK_EQ(elf_parse("vmlinux", buf, len, &ei), 0);
	CHECK_EQ(ei.pvh_entry, 0x1000040);
	CHECK_EQ(ei.entry, 0x1000000);	/* virtual entry mapped to physical */
	CHECK_EQ(ei.lo, 0x1000000);
	CHECK_EQ(ei.hi, 0x1002000);
	len = make_elf(buf, sizeof(buf), false);
	CHECK_EQ(elf_parse("vmlinux", buf, len, &ei), 0);
	CHECK_EQ(ei.pvh_entry, 0);
	/* Garbage after a valid magic. */
	make_elf(buf, sizeof(buf), true);
	((Elf64_Ehdr *)buf)->e_phoff = 0x7fffffff;
	CHECK_EQ(elf_parse("bad", buf, len, &ei), -1);
	make_elf(buf, sizeof(buf), true);
	((Elf64_Phdr *)(buf + sizeof(Elf64_Ehdr)))[0].p_filesz = 0x100000;
	CHECK_EQ(elf_parse("bad", buf, len, &ei), -1);
	CHECK(strstr(err_msg(), "outside the file") != NULL);
	make_elf(buf, sizeof(buf), true);
	buf[EI_CLASS] = ELFCLASS32;
	CHECK_EQ(elf_parse("bad", buf, len, &ei), -1);
	CHECK_EQ(elf_parse("short", buf, 10, &ei), -1);
}

/* Fuzzer find: program headers at an unaligned offset must parse, not fault. */
TEST(elf_unaligned)
{
	uint8_t buf[0x500];
	struct elf_info ei;
	size_t len = make_elf(buf, sizeof(buf), false);
	memmove(buf + 0x41, buf + 0x40, sizeof(Elf64_Phdr));
	((Elf64_Ehdr *)buf)->e_phoff = 0x41;
	CHECK_EQ(elf_parse("unaligned", buf, len, &ei), 0);
	CHECK_EQ(ei.lo, 0x1000000);
}

TEST(e820_and_memory)
{
	struct guest_mem m;
	struct e820_entry map[E820_MAX];
	CHECK_EQ(guest_mem_alloc(&m, MiB(256), PCI_HOLE_START, PCI_HOLE_END), 0);
	int n = e820_build(&m, map, E820_MAX);
	CHECK_EQ(n, 4);
	CHECK_EQ(map[0].addr, 0);
	CHECK_EQ(map[0].type, E820_RAM);
	CHECK_EQ(map[3].addr, 0x100000);
	CHECK_EQ(map[3].addr + map[3].size, MiB(256));
	CHECK(guest_ptr(&m, 0, MiB(256)) != NULL);
	CHECK(guest_ptr(&m, MiB(256) - 1, 1) != NULL);
	CHECK(guest_ptr(&m, MiB(256) - 1, 2) == NULL);
	CHECK(guest_ptr(&m, MiB(256), 1) == NULL);
	CHECK(guest_ptr(&m, 0, 0) == NULL);
	CHECK(guest_ptr(&m, UINT64_MAX - 1, 4) == NULL);	/* wraps */
	guest_mem_free(&m);

	/* 6 GiB: 3 GiB below the PCI hole, 3 GiB from 4 GiB. */
	CHECK_EQ(guest_mem_alloc(&m, GiB(6), PCI_HOLE_START, PCI_HOLE_END), 0);
	n = e820_build(&m, map, E820_MAX);
	CHECK_EQ(n, 5);
	CHECK_EQ(map[3].addr + map[3].size, PCI_HOLE_START);
	CHECK_EQ(map[4].addr, PCI_HOLE_END);
	CHECK_EQ(map[4].size, GiB(3));
	CHECK(guest_ptr(&m, PCI_HOLE_START, 1) == NULL);
	CHECK(guest_ptr(&m, PCI_HOLE_START - 4, 8) == NULL);	/* straddles */
	CHECK(guest_ptr(&m, PCI_HOLE_END + GiB(3) - 8, 8) != NULL);
	guest_mem_free(&m);
	CHECK_EQ(guest_mem_alloc(&m, 0, PCI_HOLE_START, PCI_HOLE_END), -1);
}

/* The VmFlags line of the mapping that starts at p (/proc/self/smaps), "" if none. */
static void vm_flags(const void *p, char *out, size_t cap)
{
	char line[512], want[32];
	snprintf(want, sizeof(want), "%lx-", (unsigned long)p);
	FILE *f = fopen("/proc/self/smaps", "r");
	bool in = false;
	*out = 0;
	while (f && fgets(line, sizeof(line), f)) {
		if (strchr(line, '-') && strchr(line, '-') < strchr(line, ' ') && isxdigit((unsigned char)line[0]))
			in = !strncmp(line, want, strlen(want));
		else if (in && !strncmp(line, "VmFlags:", 8))
			snprintf(out, cap, "%s", line + 8);
	}
	if (f)
		fclose(f);
}

/* Guest RAM asks for huge pages, or for none (lkvm run --no-thp), whatever the host's default. */
TEST(ram_huge_pages_or_not)
{
	struct guest_mem m;
	char flags[512];
	CHECK_EQ(guest_mem_alloc(&m, MiB(64), 0, 0), 0);
	CHECK_EQ(guest_mem_thp(&m, true), 0);
	vm_flags(m.base, flags, sizeof(flags));
	CHECK(strstr(flags, " hg") != NULL);	/* VM_HUGEPAGE */
	CHECK(strstr(flags, " nh") == NULL);
	CHECK_EQ(guest_mem_thp(&m, false), 0);
	vm_flags(m.base, flags, sizeof(flags));
	CHECK(strstr(flags, " nh") != NULL);	/* VM_NOHUGEPAGE */
	CHECK(strstr(flags, " hg") == NULL);
	guest_mem_free(&m);
}

static int hits;
static void rd(void *ctx, uint64_t off, void *data, int len) { hits++; u64_to_bytes(data, len, off); }
static const struct bus_ops ops = { .read = rd };

TEST(bus)
{
	struct bus b;
	bus_init(&b, "pio");
	int a, c;
	CHECK_EQ(bus_register(&b, 0x3f8, 8, &ops, &a, "a"), 0);
	CHECK_EQ(bus_register(&b, 0x3fc, 8, &ops, &c, "overlap"), -1);
	CHECK_EQ(bus_register(&b, 0x3f0, 9, &ops, &c, "overlap2"), -1);
	CHECK_EQ(bus_register(&b, 0x3f0, 8, &ops, &c, "below"), 0);
	uint32_t v = 0;
	CHECK(bus_access(&b, 0x3fa, &v, 4, false));
	CHECK_EQ(v, 2);
	CHECK(!bus_access(&b, 0x400, &v, 4, false));
	CHECK_EQ(v, 0xffffffff);
	CHECK_EQ(b.unhandled, 1);
	CHECK_EQ(bus_unregister(&b, 0x3f8, &a), 0);
	CHECK(!bus_access(&b, 0x3f8, &v, 1, false));
	CHECK_EQ(bus_unregister(&b, 0x3f8, &a), -1);
	bus_destroy(&b);
}

TEST(sizes)
{
	uint64_t v;
	CHECK_EQ(parse_size("256", &v), 0); CHECK_EQ(v, MiB(256));
	CHECK_EQ(parse_size("4G", &v), 0); CHECK_EQ(v, GiB(4));
	CHECK_EQ(parse_size("512K", &v), 0); CHECK_EQ(v, KiB(512));
	CHECK_EQ(parse_size("1GiB", &v), 0); CHECK_EQ(v, GiB(1));
	CHECK_EQ(parse_size("x", &v), -1);
	CHECK_EQ(parse_size("-1", &v), -1);
	CHECK_EQ(parse_size("12Q", &v), -1);
	CHECK_EQ(parse_size("99999999999999999999", &v), -1);
}

/* A Multiboot header at off in buf: magic, flags, checksum, and with bit 16 the five addresses. */
static void mb_header(uint8_t *buf, size_t off, uint32_t flags, const uint32_t addr[5])
{
	put_le32(buf + off, MULTIBOOT_MAGIC);
	put_le32(buf + off + 4, flags);
	put_le32(buf + off + 8, -(MULTIBOOT_MAGIC + flags));
	for (int i = 0; addr && i < 5; i++)
		put_le32(buf + off + 12 + 4 * i, addr[i]);
}

TEST(multiboot_header)
{
	static uint8_t buf[16384];
	struct multiboot_header mh;
	memset(buf, 0, sizeof(buf));
	CHECK_EQ(multiboot_find("none", buf, sizeof(buf), &mh), 0);
	/* At 0x40: the file from 0x40 bytes before it is loaded at 1 MiB, bss to 1 MiB + 12 KiB. */
	const uint32_t a[5] = { 0x100040, 0x100000, 0x102000, 0x103000, 0x100060 };
	mb_header(buf, 0x40, 0x10003, a);
	CHECK_EQ(multiboot_find("mb", buf, sizeof(buf), &mh), 1);
	CHECK_EQ(mh.offset, 0x40);
	CHECK_EQ(mh.load_addr, 0x100000);
	CHECK_EQ(mh.entry_addr, 0x100060);
	/* A wrong checksum is no header; one past the first 8 KiB is not looked for. */
	put_le32(buf + 0x48, 0);
	CHECK_EQ(multiboot_find("sum", buf, sizeof(buf), &mh), 0);
	memset(buf, 0, sizeof(buf));
	mb_header(buf, 8192, 0x3, NULL);
	CHECK_EQ(multiboot_find("far", buf, sizeof(buf), &mh), 0);
	/* Refused: a video mode, unknown required bits, addresses that load before the file or past it. */
	memset(buf, 0, sizeof(buf));
	mb_header(buf, 0, 0x4, NULL);
	CHECK_EQ(multiboot_find("video", buf, sizeof(buf), &mh), -1);
	CHECK(strstr(err_msg(), "video mode") != NULL);
	mb_header(buf, 0, 0x8000, NULL);
	CHECK_EQ(multiboot_find("bits", buf, sizeof(buf), &mh), -1);
	const uint32_t before[5] = { 0x100000, 0x0ff000, 0, 0, 0x100000 };	/* 4 KiB of file before offset 0 */
	mb_header(buf, 0, 0x10000, before);
	CHECK_EQ(multiboot_find("before", buf, sizeof(buf), &mh), -1);
	const uint32_t past[5] = { 0x100000, 0x100000, 0x200000, 0, 0x100000 };	/* 1 MiB from a 16 KiB file */
	mb_header(buf, 0, 0x10000, past);
	CHECK_EQ(multiboot_find("past", buf, sizeof(buf), &mh), -1);
	const uint32_t bss[5] = { 0x100000, 0x100000, 0x101000, 0x100800, 0x100000 };	/* bss ends inside the load */
	mb_header(buf, 0, 0x10000, bss);
	CHECK_EQ(multiboot_find("bss", buf, sizeof(buf), &mh), -1);
	/* Truncated: the address fields do not fit in the file. */
	mb_header(buf, 0, 0x10000, a);
	CHECK_EQ(multiboot_find("short", buf, 20, &mh), -1);
}

/* An i386 ELF image: one PT_LOAD at 1 MiB, and a PVH note when asked. */
TEST(elf32_pvh)
{
	uint8_t buf[0x400];
	memset(buf, 0, sizeof(buf));
	Elf32_Ehdr *eh = (Elf32_Ehdr *)buf;
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS32;
	eh->e_machine = EM_386;
	eh->e_entry = 0x100010;
	eh->e_phoff = sizeof(*eh);
	eh->e_phentsize = sizeof(Elf32_Phdr);
	eh->e_phnum = 2;
	Elf32_Phdr *ph = (Elf32_Phdr *)(buf + sizeof(*eh));
	ph[0] = (Elf32_Phdr){ .p_type = PT_LOAD, .p_offset = 0x200, .p_vaddr = 0x100000, .p_paddr = 0x100000,
			      .p_filesz = 0x100, .p_memsz = 0x2000 };
	ph[1] = (Elf32_Phdr){ .p_type = PT_NOTE, .p_offset = 0x180, .p_filesz = 20 };
	uint8_t *n = buf + 0x180;
	put_le32(n, 4); put_le32(n + 4, 4); put_le32(n + 8, 18);
	memcpy(n + 12, "Xen", 4);
	put_le32(n + 16, 0x100020);
	struct elf_info ei;
	CHECK_EQ(elf_parse("pvh32", buf, 0x300, &ei), 0);
	CHECK(ei.is32);
	CHECK_EQ(ei.pvh_entry, 0x100020);
	CHECK_EQ(ei.entry, 0x100010);
	CHECK_EQ(ei.nseg, 1);
	CHECK_EQ(ei.lo, 0x100000);
	CHECK_EQ(ei.hi, 0x102000);
	/* An i386 class with an x86-64 machine, or any other machine: refused. */
	eh->e_machine = EM_X86_64;
	CHECK_EQ(elf_parse("mixed", buf, 0x300, &ei), -1);
	eh->e_machine = EM_ARM;
	CHECK_EQ(elf_parse("arm", buf, 0x300, &ei), -1);
}

TEST_MAIN()
