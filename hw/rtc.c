/*
 * MC146818 RTC and CMOS RAM at 0x70 (index) / 0x71 (data). The clock is the
 * host's UTC plus an offset the guest sets by writing the time registers;
 * register B's binary/BCD and 12/24-hour modes apply to every read and write,
 * and its SET bit freezes the registers while the guest writes a new time.
 * The CMOS holds the memory sizes that firmware and old loaders read.
 * Periodic, alarm and update-ended interrupts are not generated (Linux boots
 * without them); their enable bits read back as written and register C stays 0.
 */
#include <pthread.h>
#include <string.h>
#include <time.h>
#include "bus.h"
#include "hw.h"
#include "util.h"
#include "vm.h"

#define REG_SEC 0x00
#define REG_MIN 0x02
#define REG_HOUR 0x04
#define REG_WDAY 0x06
#define REG_MDAY 0x07
#define REG_MON 0x08
#define REG_YEAR 0x09
#define REG_A 0x0a
#define REG_B 0x0b
#define REG_C 0x0c
#define REG_D 0x0d
#define REG_CENTURY 0x32

#define A_UIP 0x80
#define B_SET 0x80
#define B_BINARY 0x04
#define B_24H 0x02
#define D_VRT 0x80
#define HOUR_PM 0x80

/* UIP rises this long before each update, the window in which reads may tear. */
#define UIP_NS 244000

struct rtc {
	pthread_mutex_t lock;
	uint8_t index;
	uint8_t cmos[128];
	time_t offset;		/* guest time minus host time, in seconds */
	struct tm frozen;	/* the registers while SET holds updates */
	struct rtc *next;
};

static struct rtc *all_rtcs;	/* keeps every instance reachable */
static pthread_mutex_t all_lock = PTHREAD_MUTEX_INITIALIZER;

static uint8_t to_bcd(int v) { return (uint8_t)(((v / 10) % 10) << 4 | (v % 10)); }
static int from_bcd(uint8_t v) { return (v >> 4) * 10 + (v & 0xf); }

static uint8_t encode(struct rtc *r, int v)
{
	return r->cmos[REG_B] & B_BINARY ? (uint8_t)v : to_bcd(v);
}

static int decode(struct rtc *r, uint8_t v)
{
	return r->cmos[REG_B] & B_BINARY ? v : from_bcd(v);
}

static void host_now(struct timespec *ts)
{
	clock_gettime(CLOCK_REALTIME, ts);
}

/* The guest's broken-down time: frozen while SET is on, else host time plus the offset. */
static void rtc_time(struct rtc *r, struct tm *tm)
{
	if (r->cmos[REG_B] & B_SET) {
		*tm = r->frozen;
		return;
	}
	struct timespec ts;
	host_now(&ts);
	time_t t = ts.tv_sec + r->offset;
	gmtime_r(&t, tm);
}

static void rtc_set_time(struct rtc *r, struct tm *tm)
{
	if (r->cmos[REG_B] & B_SET) {
		r->frozen = *tm;
		return;
	}
	struct timespec ts;
	host_now(&ts);
	time_t t = timegm(tm);	/* normalizes out-of-range fields the guest wrote */
	if (t != (time_t)-1)
		r->offset = t - ts.tv_sec;
}

static uint8_t read_time_reg(struct rtc *r, unsigned reg)
{
	struct tm tm;
	rtc_time(r, &tm);
	switch (reg) {
	case REG_SEC: return encode(r, tm.tm_sec);
	case REG_MIN: return encode(r, tm.tm_min);
	case REG_HOUR:
		if (r->cmos[REG_B] & B_24H)
			return encode(r, tm.tm_hour);
		return encode(r, tm.tm_hour % 12 ? tm.tm_hour % 12 : 12) | (tm.tm_hour >= 12 ? HOUR_PM : 0);
	case REG_WDAY: return encode(r, tm.tm_wday + 1);	/* Sunday is 1 */
	case REG_MDAY: return encode(r, tm.tm_mday);
	case REG_MON: return encode(r, tm.tm_mon + 1);
	case REG_YEAR: return encode(r, (tm.tm_year + 1900) % 100);
	case REG_CENTURY: return encode(r, (tm.tm_year + 1900) / 100);
	}
	return 0xff;
}

static void write_time_reg(struct rtc *r, unsigned reg, uint8_t v)
{
	struct tm tm;
	rtc_time(r, &tm);
	int year = tm.tm_year + 1900;
	switch (reg) {
	case REG_SEC: tm.tm_sec = decode(r, v); break;
	case REG_MIN: tm.tm_min = decode(r, v); break;
	case REG_HOUR:
		if (r->cmos[REG_B] & B_24H)
			tm.tm_hour = decode(r, v);
		else
			tm.tm_hour = decode(r, v & ~HOUR_PM) % 12 + (v & HOUR_PM ? 12 : 0);
		break;
	case REG_WDAY: return;	/* derived from the date */
	case REG_MDAY: tm.tm_mday = decode(r, v); break;
	case REG_MON: tm.tm_mon = decode(r, v) - 1; break;
	case REG_YEAR: tm.tm_year = year / 100 * 100 + decode(r, v) % 100 - 1900; break;
	case REG_CENTURY: tm.tm_year = decode(r, v) * 100 + year % 100 - 1900; break;
	}
	rtc_set_time(r, &tm);
}

static bool is_time_reg(unsigned reg)
{
	return reg == REG_SEC || reg == REG_MIN || reg == REG_HOUR || (reg >= REG_WDAY && reg <= REG_YEAR) ||
	       reg == REG_CENTURY;
}

static uint8_t cmos_read(struct rtc *r, unsigned reg)
{
	if (is_time_reg(reg))
		return read_time_reg(r, reg);
	switch (reg) {
	case REG_A: {
		uint8_t v = r->cmos[REG_A] & ~A_UIP;
		struct timespec ts;
		host_now(&ts);
		if (!(r->cmos[REG_B] & B_SET) && ts.tv_nsec >= 1000000000L - UIP_NS)
			v |= A_UIP;
		return v;
	}
	case REG_C:
		return 0;	/* no interrupt flags: none are generated */
	case REG_D:
		return D_VRT;	/* the battery is fine */
	}
	return r->cmos[reg];
}

static void cmos_write(struct rtc *r, unsigned reg, uint8_t v)
{
	if (is_time_reg(reg)) {
		write_time_reg(r, reg, v);
		return;
	}
	switch (reg) {
	case REG_A:
		r->cmos[REG_A] = v & ~A_UIP;
		break;
	case REG_B: {
		bool was_set = r->cmos[REG_B] & B_SET;
		if ((v & B_SET) && !was_set)
			rtc_time(r, &r->frozen);	/* hold the registers where they are */
		if (v & B_SET)
			v &= ~0x10;	/* SET clears the update-ended interrupt enable */
		r->cmos[REG_B] = v;
		if (!(v & B_SET) && was_set)
			rtc_set_time(r, &r->frozen);	/* run again from the new time */
		break;
	}
	case REG_C:
	case REG_D:
		break;	/* read-only */
	default:
		r->cmos[reg] = v;
		break;
	}
}

static void rtc_read(void *ctx, uint64_t off, void *data, int len)
{
	struct rtc *r = ctx;
	uint8_t v = 0xff;
	pthread_mutex_lock(&r->lock);
	if (off == 0)
		v = r->index;
	else if (off == 1)
		v = cmos_read(r, r->index & 0x7f);
	pthread_mutex_unlock(&r->lock);
	u64_to_bytes(data, len, v);
}

static void rtc_write(void *ctx, uint64_t off, const void *data, int len)
{
	struct rtc *r = ctx;
	uint8_t v = *(const uint8_t *)data;
	pthread_mutex_lock(&r->lock);
	if (off == 0)
		r->index = v;	/* bit 7 masks NMIs on a PC: there are none to mask here */
	else if (off == 1)
		cmos_write(r, r->index & 0x7f, v);
	pthread_mutex_unlock(&r->lock);
}

static const struct bus_ops rtc_ops = { .read = rtc_read, .write = rtc_write };

void rtc_fill_memory(uint8_t cmos[128], uint64_t ram)
{
	uint64_t low = MIN(ram, PCI_HOLE_START);	/* RAM below the PCI hole */
	uint64_t high = ram - low;			/* the rest continues at 4 GiB */
	put_le16(cmos + 0x15, 640);	/* base memory, KiB */
	uint64_t ext = low > MiB(1) ? (low - MiB(1)) >> 10 : 0;
	ext = MIN(ext, 0xffff);
	put_le16(cmos + 0x17, ext);	/* extended memory, KiB */
	put_le16(cmos + 0x30, ext);
	uint64_t above16 = low > MiB(16) ? (low - MiB(16)) >> 16 : 0;
	put_le16(cmos + 0x34, MIN(above16, 0xffff));	/* 64 KiB blocks above 16 MiB */
	uint64_t above4g = MIN(high >> 16, 0xffffff);
	cmos[0x5b] = above4g;	/* 64 KiB blocks above 4 GiB */
	cmos[0x5c] = above4g >> 8;
	cmos[0x5d] = above4g >> 16;
	/* The standard checksum over 0x10-0x2d, big-endian at 0x2e. */
	unsigned sum = 0;
	for (int i = 0x10; i <= 0x2d; i++)
		sum += cmos[i];
	cmos[0x2e] = sum >> 8;
	cmos[0x2f] = sum;
}

int rtc_init(struct vm *vm)
{
	struct rtc *r = xcalloc(1, sizeof(*r));
	pthread_mutex_init(&r->lock, NULL);
	r->cmos[REG_A] = 0x26;	/* 32.768 kHz time base, 1024 Hz periodic rate */
	r->cmos[REG_B] = B_24H;	/* BCD, 24-hour, as PC firmware leaves it */
	rtc_fill_memory(r->cmos, vm->mem.ram_size);
	pthread_mutex_lock(&all_lock);
	r->next = all_rtcs;
	all_rtcs = r;
	pthread_mutex_unlock(&all_lock);
	return bus_register(&vm->pio, 0x70, 2, &rtc_ops, r, "rtc");
}
