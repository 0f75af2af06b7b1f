/* MC146818 RTC/CMOS through ports 0x70/0x71: host time in every format, setting it, memory sizes. */
#include <time.h>
#include "devices.h"
#include "test.h"
#include "fake_vm.h"
#include "bus.h"
#include "evloop.h"
#include "hw.h"
#include "util.h"
#include "vm.h"

static void ignore_irq(struct vm *vm, unsigned gsi, int level) {}

static void setup(struct vm *vm, uint64_t ram)
{
	static const struct irq_ops no_irqs = { .line = ignore_irq };
	fake_vm_init(vm, &no_irqs);
	vm->mem.ram_size = ram;
	CHECK_EQ(device_type_create(vm, &rtc_device), 0);
}

static void teardown(struct vm *vm)
{
	fake_vm_free(vm);
}

static uint8_t cmos_in(struct vm *vm, uint8_t reg)
{
	uint8_t v = 0;
	CHECK(bus_access(&vm->pio, 0x70, &reg, 1, true));
	CHECK(bus_access(&vm->pio, 0x71, &v, 1, false));
	return v;
}

static void cmos_out(struct vm *vm, uint8_t reg, uint8_t v)
{
	CHECK(bus_access(&vm->pio, 0x70, &reg, 1, true));
	CHECK(bus_access(&vm->pio, 0x71, &v, 1, true));
}

static int bcd(uint8_t v) { return (v >> 4) * 10 + (v & 0xf); }

/* Read the clock as Linux does: outside UIP, and again if the seconds moved. */
static time_t read_clock(struct vm *vm, bool binary, bool h24, int *wday)
{
	struct tm tm;
	for (int tries = 0; tries < 1000; tries++) {
		if (cmos_in(vm, 0x0a) & 0x80) {
			nanosleep(&(struct timespec){ .tv_nsec = 100000 }, NULL);	/* as Linux's udelay(100) */
			continue;
		}
		uint8_t sec = cmos_in(vm, 0x00);
		uint8_t min = cmos_in(vm, 0x02), hour = cmos_in(vm, 0x04), mday = cmos_in(vm, 0x07);
		uint8_t mon = cmos_in(vm, 0x08), year = cmos_in(vm, 0x09), cent = cmos_in(vm, 0x32);
		uint8_t wd = cmos_in(vm, 0x06);
		if (cmos_in(vm, 0x00) != sec)
			continue;
		int (*dec)(uint8_t) = binary ? NULL : bcd;
#define D(x) (dec ? dec(x) : (x))
		memset(&tm, 0, sizeof(tm));
		tm.tm_sec = D(sec);
		tm.tm_min = D(min);
		if (h24) {
			tm.tm_hour = D(hour);
		} else {
			int h = D(hour & 0x7f);
			CHECK(h >= 1 && h <= 12);
			tm.tm_hour = h % 12 + (hour & 0x80 ? 12 : 0);
		}
		tm.tm_mday = D(mday);
		tm.tm_mon = D(mon) - 1;
		tm.tm_year = D(cent) * 100 + D(year) - 1900;
		*wday = D(wd);
#undef D
		return timegm(&tm);
	}
	CHECK(!"clock never readable");
	return 0;
}

static void check_now(struct vm *vm, bool binary, bool h24, time_t expect_offset)
{
	int wday;
	time_t t = read_clock(vm, binary, h24, &wday);
	time_t now = time(NULL) + expect_offset;
	CHECK(t >= now - 2 && t <= now + 2);
	struct tm tm;
	gmtime_r(&t, &tm);
	CHECK_EQ(wday, tm.tm_wday + 1);
}

TEST(host_time_formats)
{
	struct vm vm;
	setup(&vm, MiB(256));
	CHECK_EQ(cmos_in(&vm, 0x0b), 0x02);	/* BCD, 24 h */
	CHECK_EQ(cmos_in(&vm, 0x0a) & 0x7f, 0x26);
	CHECK_EQ(cmos_in(&vm, 0x0d), 0x80);
	CHECK_EQ(cmos_in(&vm, 0x0c) & 0x80, 0x00);	/* nothing enabled: no IRQF */
	check_now(&vm, false, true, 0);
	cmos_out(&vm, 0x0b, 0x06);	/* binary, 24 h */
	CHECK_EQ(cmos_in(&vm, 0x0b), 0x06);
	check_now(&vm, true, true, 0);
	cmos_out(&vm, 0x0b, 0x04);	/* binary, 12 h */
	check_now(&vm, true, false, 0);
	cmos_out(&vm, 0x0b, 0x00);	/* BCD, 12 h */
	check_now(&vm, false, false, 0);
	/* The index port's bit 7 (NMI mask) does not change the register chosen. */
	CHECK_EQ(cmos_in(&vm, 0x8b), 0x00);
	teardown(&vm);
}

TEST(uip_seen)
{
	struct vm vm;
	setup(&vm, MiB(256));
	/* UIP rises for 244 us before each second: poll up to 10 s (a loaded host may miss a few windows). */
	bool seen = false;
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	uint8_t idx = 0x0a, a;
	bus_access(&vm.pio, 0x70, &idx, 1, true);
	do {
		bus_access(&vm.pio, 0x71, &a, 1, false);
		if (a & 0x80)
			seen = true;
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while (!seen && now.tv_sec - start.tv_sec < 10);
	CHECK(seen);
	/* Writing register A cannot set UIP. */
	cmos_out(&vm, 0x0a, 0xa6);
	CHECK_EQ(cmos_in(&vm, 0x0a) & 0x7f, 0x26);
	teardown(&vm);
}

TEST(guest_sets_clock)
{
	struct vm vm;
	setup(&vm, MiB(256));
	/* As Linux's set_time: SET, write every field in BCD, clear SET. */
	cmos_out(&vm, 0x0b, 0x82);
	cmos_out(&vm, 0x00, 0x05);
	cmos_out(&vm, 0x02, 0x04);
	cmos_out(&vm, 0x04, 0x23);
	cmos_out(&vm, 0x07, 0x31);
	cmos_out(&vm, 0x08, 0x12);
	cmos_out(&vm, 0x09, 0x30);
	/* Frozen while SET is on. */
	CHECK_EQ(cmos_in(&vm, 0x00), 0x05);
	CHECK_EQ(cmos_in(&vm, 0x09), 0x30);
	CHECK_EQ(cmos_in(&vm, 0x0a) & 0x80, 0);
	cmos_out(&vm, 0x0b, 0x02);
	struct tm want = { .tm_sec = 5, .tm_min = 4, .tm_hour = 23, .tm_mday = 31, .tm_mon = 11, .tm_year = 130 };
	time_t target = timegm(&want);
	check_now(&vm, false, true, target - time(NULL));
	/* A single field written while running takes effect at once: 12 h mode, 2 PM. */
	cmos_out(&vm, 0x0b, 0x04);
	cmos_out(&vm, 0x04, 0x82);
	int wday;
	time_t t = read_clock(&vm, true, false, &wday);
	struct tm tm;
	gmtime_r(&t, &tm);
	CHECK_EQ(tm.tm_hour, 14);
	CHECK_EQ(tm.tm_mday, 31);
	CHECK_EQ(tm.tm_year, 130);
	/* Century register moves the year by centuries. */
	cmos_out(&vm, 0x32, 21);
	t = read_clock(&vm, true, false, &wday);
	gmtime_r(&t, &tm);
	CHECK_EQ(tm.tm_year + 1900, 2130);
	/* Nonsense from the guest is normalized, never a crash. */
	cmos_out(&vm, 0x0b, 0x02);
	cmos_out(&vm, 0x08, 0x99);
	cmos_out(&vm, 0x07, 0xff);
	read_clock(&vm, false, true, &wday);
	teardown(&vm);
}

TEST(cmos_ram)
{
	struct vm vm;
	setup(&vm, MiB(256));
	cmos_out(&vm, 0x40, 0x5a);
	CHECK_EQ(cmos_in(&vm, 0x40), 0x5a);
	cmos_out(&vm, 0x7f, 0xa5);
	CHECK_EQ(cmos_in(&vm, 0xff), 0xa5);	/* index wraps at 128 */
	cmos_out(&vm, 0x0c, 0xff);
	CHECK_EQ(cmos_in(&vm, 0x0c) & 0x80, 0);	/* read-only */
	cmos_out(&vm, 0x0d, 0x00);
	CHECK_EQ(cmos_in(&vm, 0x0d), 0x80);
	/* Memory sizes through the ports: 256 MiB. */
	CHECK_EQ(cmos_in(&vm, 0x15) | cmos_in(&vm, 0x16) << 8, 640);
	CHECK_EQ(cmos_in(&vm, 0x17) | cmos_in(&vm, 0x18) << 8, 0xffff);
	CHECK_EQ(cmos_in(&vm, 0x34) | cmos_in(&vm, 0x35) << 8, (256 - 16) * 16);
	CHECK_EQ(cmos_in(&vm, 0x5b) | cmos_in(&vm, 0x5c) << 8 | cmos_in(&vm, 0x5d) << 16, 0);
	teardown(&vm);
}

static int irq8, irq8_raises;

static void irq_rec(struct vm *vm, unsigned gsi, int level)
{
	if (gsi == 8) {
		if (level && !irq8)
			irq8_raises++;
		irq8 = level;
	}
}

static void setup_irq(struct vm *vm)
{
	static const struct irq_ops rec_irqs = { .line = irq_rec };
	fake_vm_init(vm, &rec_irqs);
	vm->mem.ram_size = MiB(256);
	irq8 = irq8_raises = 0;
	CHECK(vm->loop != NULL);
	CHECK_EQ(device_type_create(vm, &rtc_device), 0);
}

static void teardown_irq(struct vm *vm)
{
	teardown(vm);
}

/* Run the event loop (the RTC's timer) until IRQ 8 rises or ms pass; returns the events seen. */
static int run_until_irq(struct vm *vm, int ms)
{
	int events = 0;
	int64_t end = (int64_t)mono_ms() + ms;
	while (!irq8 && (int64_t)mono_ms() < end) {
		int n = evloop_poll(vm->loop, (int)(end - (int64_t)mono_ms()) > 0 ? (int)(end - (int64_t)mono_ms()) : 0);
		if (n > 0)
			events += n;
	}
	return events;
}

TEST(update_interrupt)
{
	struct vm vm;
	setup_irq(&vm);
	/* Nothing enabled: the timer stays disarmed. */
	CHECK_EQ(run_until_irq(&vm, 1100), 0);
	CHECK_EQ(irq8, 0);
	cmos_in(&vm, 0x0c);
	cmos_out(&vm, 0x0b, 0x12);	/* UIE, BCD, 24 h */
	uint8_t before = cmos_in(&vm, 0x00);
	run_until_irq(&vm, 1500);
	CHECK_EQ(irq8, 1);
	CHECK(cmos_in(&vm, 0x00) != before);	/* it came with the second's update */
	uint8_t c = cmos_in(&vm, 0x0c);
	CHECK_EQ(c & 0x90, 0x90);	/* IRQF, UF */
	CHECK_EQ(irq8, 0);	/* reading C acknowledges */
	CHECK_EQ(cmos_in(&vm, 0x0c) & 0x80, 0);
	/* The next second brings the next one. */
	run_until_irq(&vm, 1500);
	CHECK_EQ(irq8, 1);
	/* Unacknowledged, nothing more happens: no timer wake-ups while it is pending. */
	CHECK_EQ(run_until_irq(&vm, 1200), 0);
	CHECK_EQ(irq8_raises, 2);
	cmos_out(&vm, 0x0b, 0x02);
	cmos_in(&vm, 0x0c);
	CHECK_EQ(irq8, 0);
	teardown_irq(&vm);
}

TEST(periodic_interrupt)
{
	struct vm vm;
	setup_irq(&vm);
	cmos_out(&vm, 0x0a, 0x2a);	/* 64 Hz */
	cmos_in(&vm, 0x0c);
	cmos_out(&vm, 0x0b, 0x42);	/* PIE */
	int n = 0;
	int64_t end = (int64_t)mono_ms() + 250;
	while ((int64_t)mono_ms() < end) {
		run_until_irq(&vm, (int)(end - (int64_t)mono_ms()));
		if (irq8) {
			CHECK(cmos_in(&vm, 0x0c) & 0xc0);	/* IRQF, PF */
			n++;
		}
	}
	/* 250 ms at 64 Hz is 16 periods; allow for a loaded machine. */
	CHECK(n >= 8 && n <= 17);
	/* Rate 0 stops it. */
	cmos_out(&vm, 0x0a, 0x20);
	cmos_in(&vm, 0x0c);
	CHECK_EQ(run_until_irq(&vm, 200), 0);
	CHECK_EQ(irq8, 0);
	teardown_irq(&vm);
}

TEST(alarm_interrupt)
{
	struct vm vm;
	setup_irq(&vm);
	cmos_out(&vm, 0x0b, 0x06);	/* binary, 24 h, no interrupts */
	/* Alarm two seconds ahead, any minute and hour. */
	uint8_t sec = cmos_in(&vm, 0x00);
	cmos_out(&vm, 0x01, (sec + 2) % 60);
	cmos_out(&vm, 0x03, 0xc0);
	cmos_out(&vm, 0x05, 0xff);
	cmos_in(&vm, 0x0c);
	cmos_out(&vm, 0x0b, 0x26);	/* AIE */
	run_until_irq(&vm, 3500);
	CHECK_EQ(irq8, 1);
	CHECK_EQ(cmos_in(&vm, 0x00), (sec + 2) % 60);
	uint8_t c = cmos_in(&vm, 0x0c);
	CHECK_EQ(c & 0xa0, 0xa0);	/* IRQF, AF */
	/* Not again the next second: no new rising edge, the line stays low. */
	int raises = irq8_raises;
	run_until_irq(&vm, 1200);
	CHECK_EQ(irq8_raises, raises);
	CHECK_EQ(irq8, 0);
	teardown_irq(&vm);
}

TEST(memory_sizes)
{
	uint8_t c[128];
	memset(c, 0, sizeof(c));
	rtc_fill_memory(c, MiB(16));
	CHECK_EQ(get_le16(c + 0x15), 640);
	CHECK_EQ(get_le16(c + 0x17), 15 * 1024);
	CHECK_EQ(get_le16(c + 0x30), 15 * 1024);
	CHECK_EQ(get_le16(c + 0x34), 0);
	CHECK_EQ(c[0x5b] | c[0x5c] << 8 | c[0x5d] << 16, 0);
	unsigned sum = 0;
	for (int i = 0x10; i <= 0x2d; i++)
		sum += c[i];
	CHECK_EQ(c[0x2e] << 8 | c[0x2f], sum);

	memset(c, 0, sizeof(c));
	rtc_fill_memory(c, MiB(48));
	CHECK_EQ(get_le16(c + 0x17), 47 * 1024);
	CHECK_EQ(get_le16(c + 0x34), 32 * 16);

	memset(c, 0, sizeof(c));
	rtc_fill_memory(c, GiB(8));	/* 3 GiB below the hole, 5 GiB above 4 GiB */
	CHECK_EQ(get_le16(c + 0x17), 0xffff);
	CHECK_EQ(get_le16(c + 0x31 - 1), 0xffff);
	CHECK_EQ(get_le16(c + 0x34), (3072 - 16) * 16);
	CHECK_EQ(c[0x5b] | c[0x5c] << 8 | c[0x5d] << 16, 5 * 16384);

	memset(c, 0, sizeof(c));
	rtc_fill_memory(c, GiB(64));
	CHECK_EQ(c[0x5b] | c[0x5c] << 8 | c[0x5d] << 16, 61 * 16384);

	memset(c, 0, sizeof(c));
	rtc_fill_memory(c, KiB(512));	/* tiny: nothing extended */
	CHECK_EQ(get_le16(c + 0x17), 0);
	CHECK_EQ(get_le16(c + 0x34), 0);
}

TEST_MAIN()
