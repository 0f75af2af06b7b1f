/*
 * The gdb stub's parts that need no KVM: packet framing (gdb/packet.c), the
 * guest page-table walk and the debug-register encoding (x86/gdb_target.c).
 */
#include <stdlib.h>
#include "test.h"
#include "gdb.h"
#include "guest_mem.h"
#include "util.h"

static enum gdb_rx_event feed(struct gdb_rx *rx, const char *s, size_t n)
{
	enum gdb_rx_event ev = GDB_RX_NONE;
	for (size_t i = 0; i < n; i++) {
		ev = gdb_rx_byte(rx, (uint8_t)s[i]);
		if (ev != GDB_RX_NONE && i + 1 < n)
			return -1;	/* an event before the end: not what the test meant */
	}
	return ev;
}
#define FEED(rx, s) feed(rx, s, sizeof(s) - 1)

TEST(rx_packets)
{
	static struct gdb_rx rx;
	gdb_rx_init(&rx);
	CHECK_EQ(FEED(&rx, "$g#67"), GDB_RX_PACKET);
	CHECK_EQ(rx.len, 1);
	CHECK(!strcmp(rx.buf, "g"));
	CHECK_EQ(FEED(&rx, "$qSupported:swbreak+#8B"), GDB_RX_PACKET);	/* upper-case checksum digits */
	CHECK(!strcmp(rx.buf, "qSupported:swbreak+"));
	CHECK_EQ(FEED(&rx, "$#00"), GDB_RX_PACKET);	/* empty */
	CHECK_EQ(rx.len, 0);
	CHECK_EQ(FEED(&rx, "$g#68"), GDB_RX_BAD_CHECKSUM);
	CHECK_EQ(FEED(&rx, "$g#6x"), GDB_RX_BAD_CHECKSUM);
	CHECK_EQ(FEED(&rx, "$g#z"), GDB_RX_BAD_CHECKSUM);
	CHECK_EQ(FEED(&rx, "+"), GDB_RX_ACK);
	CHECK_EQ(FEED(&rx, "-"), GDB_RX_NAK);
	CHECK_EQ(FEED(&rx, "\x03"), GDB_RX_INTERRUPT);
	CHECK_EQ(FEED(&rx, "junk$m0,1#Fa"), GDB_RX_PACKET);	/* noise between packets is skipped */
	CHECK(!strcmp(rx.buf, "m0,1"));
	CHECK_EQ(FEED(&rx, "$half$g#67"), GDB_RX_PACKET);	/* a new '$' starts over */
	CHECK(!strcmp(rx.buf, "g"));
	/* 0x03 inside a packet is data, not an interrupt. */
	char pk[] = "$X0,1:\x03#xx";
	uint8_t sum = 0;
	for (size_t i = 1; pk[i] != '#'; i++)
		sum += (uint8_t)pk[i];
	snprintf(pk + sizeof(pk) - 3, 3, "%02x", sum);
	CHECK_EQ(FEED(&rx, pk), GDB_RX_PACKET);
	CHECK_EQ(rx.len, 6);
}

TEST(rx_too_long)
{
	static struct gdb_rx rx;
	gdb_rx_init(&rx);
	size_t n = GDB_PACKET_MAX + 100;
	char *p = malloc(n + 5);
	p[0] = '$';
	memset(p + 1, 'a', n);
	uint8_t sum = (uint8_t)(n * 'a');
	snprintf(p + 1 + n, 4, "#%02x", sum);
	CHECK_EQ(feed(&rx, p, n + 4), GDB_RX_TOO_LONG);
	CHECK_EQ(FEED(&rx, "$g#67"), GDB_RX_PACKET);	/* and the next one is fine */
	free(p);
}

TEST(frame_and_escape)
{
	char out[64];
	size_t n = gdb_frame("OK", 2, out, sizeof(out));
	CHECK_EQ(n, 6);
	CHECK(!memcmp(out, "$OK#9a", 6));
	/* '$', '#', '}' and '*' are escaped: '}' then the byte xor 0x20; the checksum covers what is sent. */
	n = gdb_frame("a$#}*b", 6, out, sizeof(out));
	CHECK(n == 14 && !memcmp(out, "$a}\x04}\x03}]}\nb#", 12));
	uint8_t back[16];
	CHECK_EQ(gdb_unescape(out + 1, 10, back, sizeof(back)), 6);
	CHECK(!memcmp(back, "a$#}*b", 6));
	struct gdb_rx rx;
	gdb_rx_init(&rx);
	CHECK_EQ(feed(&rx, out, n), GDB_RX_PACKET);	/* our own frames parse */
	CHECK_EQ(gdb_frame("OK", 2, out, 5), 0);	/* too small: nothing */
	CHECK_EQ(gdb_unescape("ab}", 3, back, sizeof(back)), -1);	/* a dangling escape */
	CHECK_EQ(gdb_unescape("abc", 3, back, 2), -1);	/* too long for the buffer */
}

TEST(hex)
{
	uint8_t b[8];
	char s[17];
	CHECK_EQ(gdb_hex_decode("00ff7A", 6, b, sizeof(b)), 3);
	CHECK(b[0] == 0 && b[1] == 0xff && b[2] == 0x7a);
	CHECK_EQ(gdb_hex_decode("0", 1, b, sizeof(b)), -1);	/* odd */
	CHECK_EQ(gdb_hex_decode("0g", 2, b, sizeof(b)), -1);
	CHECK_EQ(gdb_hex_decode("001122", 6, b, 2), -1);	/* does not fit */
	gdb_hex_encode("\x12\xab", 2, s);
	CHECK(!strcmp(s, "12ab"));
	uint64_t v, a, l;
	const char *p = "ffffffff81000000,40";
	CHECK(gdb_parse_addr_len(&p, &a, &l) && a == 0xffffffff81000000ULL && l == 0x40 && !*p);
	p = "00000000000000001";	/* leading zeros do not count */
	CHECK(gdb_parse_hex(&p, &v) && v == 1);
	p = "10000000000000000";	/* 17 digits: more than 64 bits */
	CHECK(!gdb_parse_hex(&p, &v));
	p = ",4";
	CHECK(!gdb_parse_hex(&p, &v));
	p = "10";
	CHECK(!gdb_parse_addr_len(&p, &a, &l));
	long t;
	p = "-1";
	CHECK(gdb_parse_thread(&p, &t) && t == -1);
	p = "1f";
	CHECK(gdb_parse_thread(&p, &t) && t == 31);
	p = "ffffffffff";
	CHECK(!gdb_parse_thread(&p, &t));
}

/* A guest RAM of 64 MiB and helpers to build page tables in it. */
static struct guest_mem mem;
static uint64_t next_table;

static void setup_mem(void)
{
	if (!mem.nr)
		CHECK_EQ(guest_mem_alloc(&mem, MiB(64), 0, 0), 0);
	memset(mem.r[0].host, 0, MiB(64));
	next_table = 0x100000;
}

static uint64_t new_table(void)
{
	uint64_t t = next_table;
	next_table += 0x1000;
	return t;
}

static void put64(uint64_t gpa, uint64_t v) { put_le64(guest_ptr(&mem, gpa, 8), v); }
static void put32(uint64_t gpa, uint32_t v) { put_le32(guest_ptr(&mem, gpa, 4), v); }

/* Map va to pa in long mode: levels 4 or 5, page size 4K, 2M or 1G; returns CR3. */
static uint64_t map_lm(uint64_t cr3, int levels, uint64_t va, uint64_t pa, uint64_t page)
{
	uint64_t table = cr3;
	for (int shift = levels == 5 ? 48 : 39;; shift -= 9) {
		uint64_t slot = table + ((va >> shift) & 0x1ff) * 8;
		if ((uint64_t)1 << shift == page) {
			put64(slot, pa | 3 | (page > 0x1000 ? 0x80 : 0) | (1ULL << 63));	/* NX set: ignored */
			return cr3;
		}
		uint64_t e = get_le64(guest_ptr(&mem, slot, 8));
		if (!(e & 1)) {
			e = new_table() | 3;
			put64(slot, e);
		}
		table = e & 0x000ffffffffff000ULL;
	}
}

TEST(walk_long_mode)
{
	setup_mem();
	uint64_t cr3 = new_table(), gpa, left;
	struct gdb_paging pg = { .cr0 = 0x80000011, .cr3 = cr3, .cr4 = 0x20, .efer = 0x500 };
	map_lm(cr3, 4, 0xffffffff81000000ULL, 0x1000000, 0x200000);	/* the kernel's text, 2 MiB pages */
	map_lm(cr3, 4, 0xffff888000000000ULL, 0, 0x40000000);		/* the direct map, 1 GiB pages */
	map_lm(cr3, 4, 0x400000, 0x2345000, 0x1000);			/* a user page */
	CHECK_EQ(gdb_translate(&mem, &pg, 0xffffffff81123456ULL, &gpa, &left), 0);
	CHECK_EQ(gpa, 0x1123456);
	CHECK_EQ(left, 0x200000 - 0x123456);
	CHECK_EQ(gdb_translate(&mem, &pg, 0xffff888003000010ULL, &gpa, &left), 0);
	CHECK_EQ(gpa, 0x3000010);
	CHECK_EQ(left, 0x40000000 - 0x3000010);
	CHECK_EQ(gdb_translate(&mem, &pg, 0x400ffe, &gpa, &left), 0);
	CHECK(gpa == 0x2345ffe && left == 2);
	CHECK_EQ(gdb_translate(&mem, &pg, 0x401000, &gpa, &left), -1);	/* not present */
	CHECK_EQ(gdb_translate(&mem, &pg, 0x0000800000000000ULL, &gpa, &left), -1);	/* not canonical */
	/* A table outside RAM: the walk stops, it never reads elsewhere. */
	put64(cr3 + 8 * 1, 0xfff00000000ULL | 3);
	CHECK_EQ(gdb_translate(&mem, &pg, 0x8000000000ULL, &gpa, &left), -1);
	/* Read-only and supervisor pages translate all the same (a debugger writes anyway). */
	uint64_t pte_slot = 0;
	for (uint64_t t = 0x100000; t < next_table; t += 0x1000)
		for (int i = 0; i < 512; i++)
			if ((get_le64(guest_ptr(&mem, t + i * 8, 8)) & 0x000ffffffffff000ULL) == 0x2345000)
				pte_slot = t + i * 8;
	CHECK(pte_slot != 0);
	put64(pte_slot, 0x2345000 | 1);	/* present, not writable */
	CHECK_EQ(gdb_translate(&mem, &pg, 0x400010, &gpa, &left), 0);
	CHECK_EQ(gpa, 0x2345010);
}

TEST(walk_five_levels)
{
	setup_mem();
	uint64_t cr3 = new_table(), gpa, left;
	struct gdb_paging pg = { .cr0 = 0x80000011, .cr3 = cr3, .cr4 = 0x20 | 0x1000, .efer = 0x500 };
	map_lm(cr3, 5, 0xff11000000001000ULL, 0x3000000, 0x1000);	/* canonical only with 57 bits */
	map_lm(cr3, 5, 0x00f0000000200000ULL, 0x2000000, 0x200000);
	CHECK_EQ(gdb_translate(&mem, &pg, 0xff11000000001234ULL, &gpa, &left), 0);
	CHECK_EQ(gpa, 0x3000234);
	CHECK_EQ(gdb_translate(&mem, &pg, 0x00f0000000300000ULL, &gpa, &left), 0);
	CHECK_EQ(gpa, 0x2100000);
	pg.cr4 &= ~0x1000ULL;	/* the same tables read as 4 levels: that address is not canonical */
	CHECK_EQ(gdb_translate(&mem, &pg, 0xff11000000001234ULL, &gpa, &left), -1);
}

TEST(walk_legacy)
{
	setup_mem();
	uint64_t gpa, left;
	/* Paging off: physical, in 4 KiB steps. */
	struct gdb_paging off = { .cr0 = 0x11 };
	CHECK_EQ(gdb_translate(&mem, &off, 0x12345, &gpa, &left), 0);
	CHECK(gpa == 0x12345 && left == 0xcbb);
	/* 32-bit paging: a 4 KiB page and a 4 MiB one (PSE). */
	uint64_t pd = new_table(), pt = new_table();
	put32(pd + (0xc0000000 >> 22) * 4, pt | 3);
	put32(pt + ((0xc0001000 >> 12) & 0x3ff) * 4, 0x5000 | 3);
	put32(pd + (0xc0800000 >> 22) * 4, 0x1c00000 | 0x83);
	struct gdb_paging p32 = { .cr0 = 0x80000011, .cr3 = pd, .cr4 = 0x10 };
	CHECK_EQ(gdb_translate(&mem, &p32, 0xc0001abc, &gpa, &left), 0);
	CHECK_EQ(gpa, 0x5abc);
	CHECK_EQ(gdb_translate(&mem, &p32, 0xc0812345, &gpa, &left), 0);
	CHECK_EQ(gpa, 0x1c12345);
	CHECK_EQ(gdb_translate(&mem, &p32, 0xc0400000, &gpa, &left), -1);
	/* PAE: PDPT, then a 2 MiB page. */
	uint64_t pdpt = new_table(), pd2 = new_table();
	put64(pdpt + 3 * 8, pd2 | 1);
	put64(pd2 + ((0xc0200000 >> 21) & 0x1ff) * 8, 0x800000 | 0x83);
	struct gdb_paging pae = { .cr0 = 0x80000011, .cr3 = pdpt, .cr4 = 0x20 };
	CHECK_EQ(gdb_translate(&mem, &pae, 0xc0212345, &gpa, &left), 0);
	CHECK_EQ(gpa, 0x812345);
}

TEST(debug_registers)
{
	struct gdb_hw_slot s[GDB_HW_SLOTS] = { { GDB_HW_EXEC, 0xffffffff81000000ULL, 1 }, { GDB_HW_FREE },
					       { GDB_HW_WRITE, 0x1000, 4 }, { GDB_HW_ACCESS, 0x2000, 8 } };
	__u64 dr[8];
	gdb_target_debugregs(s, dr);
	CHECK_EQ(dr[0], 0xffffffff81000000ULL);
	CHECK_EQ(dr[2], 0x1000);
	CHECK_EQ(dr[3], 0x2000);
	/* L0, L2, L3; RW0=00 LEN0=00, RW2=01 LEN2=11, RW3=11 LEN3=10; LE, GE; bit 10. */
	CHECK_EQ(dr[7], 0x1 | 0x10 | 0x40 | (0x0ULL << 16) | (0xdULL << 24) | (0xbULL << 28) | 0x300 | 0x400);
	s[0].kind = s[2].kind = s[3].kind = GDB_HW_FREE;
	gdb_target_debugregs(s, dr);
	CHECK_EQ(dr[7], 0x400);
	CHECK_EQ(gdb_target_dr6_slots(0xffff0ff4), 4);	/* B2 */
	CHECK(gdb_target_dr6_step(0xffff4ff0));
	CHECK(!gdb_target_dr6_step(0xffff0ff1));
}

TEST(target_description)
{
	/* gdb needs these names; amd64 refuses a core feature without the x87 registers. */
	const char *names[] = { "i386:x86-64", "org.gnu.gdb.i386.core", "\"rip\"", "\"eflags\"", "\"st7\"", "\"fop\"",
				"org.gnu.gdb.i386.sse", "\"xmm15\"", "\"mxcsr\"", "\"fs_base\"", "\"gs_base\"", "\"cr3\"", "\"efer\"" };
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		CHECK(strstr(gdb_target_xml, names[i]) != NULL);
	CHECK(!strpbrk(gdb_target_xml, "$#}*"));	/* sent as is, no escapes needed */
}

TEST_MAIN()
