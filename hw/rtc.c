/*
 * MC146818 RTC and CMOS RAM at 0x70 (index) / 0x71 (data). The clock is the
 * host's UTC plus an offset the guest sets by writing the time registers;
 * register B's binary/BCD and 12/24-hour modes apply to every read and write,
 * and its SET bit freezes the registers while the guest writes a new time.
 * The CMOS holds the memory sizes that firmware and old loaders read.
 * Register C's flags are worked out from the clock when they are looked at;
 * periodic, alarm and update-ended interrupts on IRQ 8 come from one timerfd
 * on the event loop, armed only while an interrupt is enabled and not already
 * pending, so an idle guest costs nothing.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include "bus.h"
#include "device.h"
#include "devices.h"
#include "e820.h"
#include "evloop.h"
#include "hw.h"
#include "snapshot.h"
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
#define A_DIV_MASK 0x70
#define A_DIV_32K 0x20	/* the normal 32.768 kHz time base */
#define A_RATE_MASK 0x0f
#define B_SET 0x80
#define B_PIE 0x40
#define B_AIE 0x20
#define B_UIE 0x10
#define C_IRQF 0x80
#define C_PF 0x40
#define C_AF 0x20
#define C_UF 0x10
#define ALARM_ANY 0xc0	/* alarm byte matching every value */
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

	struct vm *vm;
	uint8_t flags;		/* PF/AF/UF raised since register C was last read */
	int irq;		/* IRQ 8 level */
	int64_t seen_sec;	/* last guest second checked for update/alarm */
	int64_t seen_tick;	/* last periodic tick counted */
	int tfd;		/* interrupt timer, -1 without an event loop */
	int64_t armed;		/* when it fires (ns, CLOCK_REALTIME), 0 if disarmed */
};

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
	if (t != (time_t)-1) {
		r->offset = t - ts.tv_sec;
		r->seen_sec = t;	/* a new time is not a run of missed updates */
	}
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

static int64_t now_ns(void)
{
	struct timespec ts;
	host_now(&ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The periodic rate as a power of two of 1/65536 s (rates 1 and 2 alias 8 and 9), -1 if off. */
static int periodic_shift(struct rtc *r)
{
	int rate = r->cmos[REG_A] & A_RATE_MASK;
	if (!rate || (r->cmos[REG_A] & A_DIV_MASK) != A_DIV_32K)
		return -1;
	return rate <= 2 ? rate + 7 : rate;
}

static int64_t periodic_tick(int64_t ns, int shift)
{
	return (int64_t)(((__int128)ns * 65536 / 1000000000) >> shift);
}

static bool alarm_matches(struct rtc *r, int64_t sec)
{
	time_t t = sec;
	struct tm tm;
	gmtime_r(&t, &tm);
	uint8_t hour = r->cmos[REG_B] & B_24H ? encode(r, tm.tm_hour) :
		       (encode(r, tm.tm_hour % 12 ? tm.tm_hour % 12 : 12) | (tm.tm_hour >= 12 ? HOUR_PM : 0));
	uint8_t want[3] = { r->cmos[0x01], r->cmos[0x03], r->cmos[0x05] };
	uint8_t have[3] = { encode(r, tm.tm_sec), encode(r, tm.tm_min), hour };
	for (int i = 0; i < 3; i++)
		if ((want[i] & ALARM_ANY) != ALARM_ANY && want[i] != have[i])
			return false;
	return true;
}

/* Bring the flags up to now: every second passed is an update (and maybe an alarm), every tick a period. */
static void catch_up(struct rtc *r)
{
	int64_t ns = now_ns();
	if (!(r->cmos[REG_B] & B_SET)) {
		int64_t sec = ns / 1000000000 + r->offset;
		if (sec > r->seen_sec) {
			r->flags |= C_UF;
			/* A guest that has not looked for a day gets at most a day's alarm checks. */
			for (int64_t s = MAX(r->seen_sec + 1, sec - 86400); s <= sec; s++)
				if (alarm_matches(r, s)) {
					r->flags |= C_AF;
					break;
				}
		}
		r->seen_sec = sec;
	}
	int shift = periodic_shift(r);
	if (shift >= 0) {
		int64_t tick = periodic_tick(ns, shift);
		if (tick > r->seen_tick)
			r->flags |= C_PF;
		r->seen_tick = tick;
	}
}

/* Forget what happened before now, e.g. when the guest sets the clock or a rate. */
static void restart_counting(struct rtc *r)
{
	int64_t ns = now_ns();
	r->seen_sec = ns / 1000000000 + r->offset;
	int shift = periodic_shift(r);
	r->seen_tick = shift >= 0 ? periodic_tick(ns, shift) : 0;
}

static bool irqf(struct rtc *r)
{
	uint8_t b = r->cmos[REG_B];
	return ((r->flags & C_PF) && (b & B_PIE)) || ((r->flags & C_AF) && (b & B_AIE)) ||
	       ((r->flags & C_UF) && (b & B_UIE));
}

/* Raise IRQ 8 for a new interrupt and arm the timer for the next possible one. Under r->lock. */
static void sync_irq(struct rtc *r)
{
	catch_up(r);
	int level = irqf(r);
	if (level != r->irq) {
		r->irq = level;
		vm_irq_line(r->vm, IRQ_RTC, level);
	}
	if (r->tfd < 0)
		return;
	/* Nothing to wait for while an interrupt is pending: register C's read re-arms. */
	int64_t next = 0;
	uint8_t b = r->cmos[REG_B];
	if (!level) {
		int64_t ns = now_ns();
		if ((b & (B_UIE | B_AIE)) && !(b & B_SET))
			next = (ns / 1000000000 + 1) * 1000000000;
		int shift = periodic_shift(r);
		if ((b & B_PIE) && shift >= 0) {
			int64_t tick = periodic_tick(ns, shift) + 1;
			int64_t at = (int64_t)((((__int128)tick << shift) * 1000000000 + 65535) / 65536);
			if (!next || at < next)
				next = at;
		}
	}
	if (next == r->armed)
		return;	/* most accesses change nothing: spare the syscall */
	r->armed = next;
	struct itimerspec its = { .it_value = { .tv_sec = next / 1000000000, .tv_nsec = next % 1000000000 } };
	timerfd_settime(r->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void on_timer(void *ctx, uint32_t events)
{
	struct rtc *r = ctx;
	uint64_t n;
	if (read(r->tfd, &n, sizeof(n)) < 0) {}
	pthread_mutex_lock(&r->lock);
	r->armed = 0;	/* a fired one-shot timer is disarmed */
	sync_irq(r);
	pthread_mutex_unlock(&r->lock);
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
	case REG_C: {
		catch_up(r);
		uint8_t v = r->flags | (irqf(r) ? C_IRQF : 0);
		r->flags = 0;	/* reading acknowledges */
		return v;
	}
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
		catch_up(r);
		r->cmos[REG_A] = v & ~A_UIP;
		restart_counting(r);	/* a new rate starts counting now */
		break;
	case REG_B: {
		catch_up(r);	/* flags raised so far stand, whatever the new enables */
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
	if (off == 0) {
		v = r->index;
	} else if (off == 1) {
		v = cmos_read(r, r->index & 0x7f);
		sync_irq(r);
	}
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
	else if (off == 1) {
		cmos_write(r, r->index & 0x7f, v);
		sync_irq(r);
	}
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

/* After the event loop stopped: no timer callback can be running. */
static void rtc_destroy(struct device *d)
{
	struct rtc *r = d->priv;
	if (r->tfd >= 0) {
		evloop_del(r->vm->loop, r->tfd);
		close(r->tfd);
	}
	bus_unregister_all(&r->vm->pio, r);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

/* Snapshots: the clock goes on from the host's time plus the guest's offset, as a battery-backed RTC would. */
static int rtc_save(struct device *d, struct snap_writer *w)
{
	struct rtc *r = d->priv;
	pthread_mutex_lock(&r->lock);
	snap_u8(w, r->index);
	snap_bytes(w, r->cmos, sizeof(r->cmos));
	snap_i64(w, r->offset);
	const int tm[8] = { r->frozen.tm_sec, r->frozen.tm_min, r->frozen.tm_hour, r->frozen.tm_mday,
			    r->frozen.tm_mon, r->frozen.tm_year, r->frozen.tm_wday, r->frozen.tm_yday };
	for (int i = 0; i < 8; i++)
		snap_i64(w, tm[i]);
	snap_u8(w, r->flags);
	snap_bool(w, r->irq);
	snap_i64(w, r->seen_sec);
	snap_i64(w, r->seen_tick);
	pthread_mutex_unlock(&r->lock);
	return 0;
}

static bool in(int64_t v, int64_t lo, int64_t hi) { return v >= lo && v <= hi; }

static int rtc_load(struct device *d, struct snap_reader *rd)
{
	struct rtc *r = d->priv;
	uint8_t index = snap_get_u8(rd), cmos[128];
	snap_get_bytes(rd, cmos, sizeof(cmos));
	int64_t offset = snap_get_i64(rd), tm[8];
	for (int i = 0; i < 8; i++)
		tm[i] = snap_get_i64(rd);
	uint8_t flags = snap_get_u8(rd);
	bool irq = snap_get_bool(rd);
	int64_t seen_sec = snap_get_i64(rd), seen_tick = snap_get_i64(rd);
	if (snap_failed(rd))
		return -1;
	/* Times that keep every sum in range; register fields an RTC can hold. */
	const int64_t lim = INT64_C(1) << 40;
	if (!in(offset, -lim, lim) || !in(seen_sec, -lim, lim) || !in(seen_tick, -(lim << 16), lim << 16) ||
	    !in(tm[0], 0, 60) || !in(tm[1], 0, 59) || !in(tm[2], 0, 23) || !in(tm[3], 0, 31) || !in(tm[4], 0, 11) ||
	    !in(tm[5], -1900, 8099) || !in(tm[6], 0, 6) || !in(tm[7], 0, 365) || (flags & ~(C_PF | C_AF | C_UF)))
		return snap_bad(rd, "clock or register values out of range");
	pthread_mutex_lock(&r->lock);
	r->index = index;
	memcpy(r->cmos, cmos, sizeof(cmos));
	r->offset = offset;
	r->frozen = (struct tm){ .tm_sec = tm[0], .tm_min = tm[1], .tm_hour = tm[2], .tm_mday = tm[3],
				 .tm_mon = tm[4], .tm_year = tm[5], .tm_wday = tm[6], .tm_yday = tm[7] };
	r->flags = flags;
	r->seen_sec = seen_sec;
	r->seen_tick = seen_tick;
	r->irq = irq;
	/* KVM's irqchip came back with the line's state; its per-source level comes from this. */
	if (irq)
		vm_irq_line(r->vm, IRQ_RTC, 1);
	r->armed = -1;	/* whatever the timerfd holds: sync_irq sets it */
	sync_irq(r);
	pthread_mutex_unlock(&r->lock);
	return 0;
}

static const struct device_ops rtc_dev_ops = {
	.destroy = rtc_destroy, .save = rtc_save, .load = rtc_load, .snap_version = 1,
};

static int rtc_create(struct vm *vm, void *own)
{
	struct rtc *r = xcalloc(1, sizeof(*r));
	pthread_mutex_init(&r->lock, NULL);
	r->cmos[REG_A] = 0x26;	/* 32.768 kHz time base, 1024 Hz periodic rate */
	r->cmos[REG_B] = B_24H;	/* BCD, 24-hour, as PC firmware leaves it */
	rtc_fill_memory(r->cmos, vm->mem.ram_size);
	r->vm = vm;
	r->tfd = -1;
	restart_counting(r);
	device_add(vm, "rtc", &rtc_dev_ops, r);
	r->tfd = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC);
	if (r->tfd < 0)
		return err_errno("rtc: timerfd_create");
	if (evloop_add(vm->loop, r->tfd, EPOLLIN, on_timer, r) < 0) {
		close(r->tfd);
		r->tfd = -1;
		return -1;
	}
	return bus_register(&vm->pio, 0x70, 2, &rtc_ops, r, "rtc");
}

const struct device_type rtc_device = { .name = "rtc", .create = rtc_create };
