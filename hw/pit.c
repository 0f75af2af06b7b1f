/*
 * Intel 8254 programmable interval timer at ports 0x40-0x43, and port 0x61's
 * channel-2 gate and output (the PC speaker port), after the 8254 data sheet.
 *
 * In user space rather than KVM's in-kernel PIT: a guest only needs it early
 * (Linux switches to the local APIC timer), and KVM's in-kernel one costs an
 * SRCU grace period when the VM is destroyed (about 12 ms per VM exit here).
 * Counters are not stepped: each is computed from the host's monotonic clock
 * and the time its count was loaded. Channel 0 drives IRQ 0 through one
 * timerfd on the event loop, armed for the next edge only.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include "bus.h"
#include "device.h"
#include "devices.h"
#include "evloop.h"
#include "hw.h"
#include "snapshot.h"
#include "util.h"
#include "vm.h"

#define PIT_HZ 1193182ULL
#define NS 1000000000ULL
#define MIN_PERIOD_NS 200000ULL	/* 5 kHz at most, KVM's default floor too */
#define MAX_AGE_NS (INT64_C(1) << 62)	/* snapshots: times further off are not ours */

enum { RW_LATCH, RW_LSB, RW_MSB, RW_WORD };

struct chan {
	uint8_t mode, rw, bcd;
	uint32_t reload;	/* 1..65536: a written 0 means 65536 */
	bool loaded;		/* a count was written since the mode was set */
	bool gate;
	int64_t start;		/* ns when counting began (reload, or gate rising) */
	bool write_msb;		/* RW_WORD: the next write is the high byte */
	uint8_t lsb;		/* RW_WORD: the low byte written first */
	bool read_msb;		/* RW_WORD: the next read is the high byte */
	int latched;		/* bytes left of a latched count (0: read live) */
	uint16_t latch;
	bool status_latched;
	uint8_t status;
	bool null_count;	/* status bit 6: written but not yet loaded */
};

struct pit {
	struct vm *vm;
	pthread_mutex_t lock;
	struct chan ch[3];
	bool speaker;		/* port 0x61 bit 1 */
	bool refresh;		/* port 0x61 bit 4 toggles on every read */
	int tfd;
	int64_t armed;		/* absolute ns the timer is armed for; 0: disarmed */
	int64_t irq_at;		/* channel 0's edge that has been delivered last */
};

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * (int64_t)NS + ts.tv_nsec;
}

static uint64_t ticks_since(const struct chan *c, int64_t now)
{
	return now <= c->start ? 0 : (uint64_t)(((__int128)(now - c->start) * PIT_HZ) / NS);
}

static int64_t ns_of_ticks(const struct chan *c, uint64_t ticks)
{
	return c->start + (int64_t)(((__int128)ticks * NS + PIT_HZ - 1) / PIT_HZ);
}

static bool periodic(const struct chan *c) { return c->mode == 2 || c->mode == 3; }

static bool counting(const struct chan *c) { return c->loaded && c->gate; }

/* The count a read would see now. */
static uint16_t count_now(const struct chan *c, int64_t now)
{
	if (!c->loaded)
		return 0;
	if (!c->gate)
		return (uint16_t)c->reload;
	uint64_t t = ticks_since(c, now);
	if (c->mode == 3) {	/* counts down by two, twice a period */
		uint32_t half = (c->reload + 1) / 2;
		return (uint16_t)(c->reload - 2 * (t % half));
	}
	if (periodic(c))
		return (uint16_t)(c->reload - t % c->reload);
	return (uint16_t)(c->reload - t);	/* one-shot: wraps past zero, as the chip does */
}

/* The OUT pin now. */
static bool out_now(const struct chan *c, int64_t now)
{
	if (!c->loaded)
		return c->mode != 0;	/* mode 0 starts low, the others high */
	if (!c->gate)
		return c->mode != 0;	/* held: mode 0 stays low, the others high */
	uint64_t t = ticks_since(c, now);
	switch (c->mode) {
	case 0: return t >= c->reload;
	case 1: case 5: case 4: return t != c->reload;	/* low for one clock at the terminal count */
	case 2: return t % c->reload != c->reload - 1;
	default: return t % c->reload < (c->reload + 1) / 2;	/* mode 3: high for the first half */
	}
}

/* Channel 0's next rising edge of IRQ 0 after the one delivered last; 0 if none. */
static int64_t next_edge(struct pit *p, int64_t now)
{
	struct chan *c = &p->ch[0];
	if (!counting(c))
		return 0;
	uint64_t t = ticks_since(c, now);
	if (periodic(c)) {
		/*
		 * Edges every reload clocks from the start, but no closer than
		 * MIN_PERIOD_NS (as KVM's in-kernel PIT): a guest programming a
		 * count of 2 must not turn our event loop into a 600 kHz spin.
		 */
		uint64_t every = c->reload;
		if ((uint64_t)every * NS < MIN_PERIOD_NS * PIT_HZ)
			every = (MIN_PERIOD_NS * PIT_HZ + NS - 1) / NS;
		return ns_of_ticks(c, (t / every + 1) * every);
	}
	if (c->mode == 0 || c->mode == 4) {	/* one edge, at the terminal count */
		int64_t at = ns_of_ticks(c, c->reload);
		return at > p->irq_at ? at : 0;
	}
	return 0;
}

static void arm(struct pit *p, int64_t at)
{
	if (p->tfd < 0 || at == p->armed)
		return;
	p->armed = at;
	struct itimerspec its = { .it_value = { .tv_sec = at / (int64_t)NS, .tv_nsec = at % (int64_t)NS } };
	if (at == 0)
		its.it_value.tv_nsec = 0;
	timerfd_settime(p->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* Deliver channel 0's edge if it is due and arm for the next one. Under p->lock. */
static void sync_timer(struct pit *p)
{
	int64_t now = now_ns();
	int64_t at = next_edge(p, now);
	struct chan *c = &p->ch[0];
	if (counting(c) && !periodic(c) && (c->mode == 0 || c->mode == 4)) {
		int64_t tc = ns_of_ticks(c, c->reload);
		if (tc <= now && tc > p->irq_at) {
			p->irq_at = tc;
			vm_irq_pulse(p->vm, 0);
			at = 0;
		}
	}
	arm(p, at);
}

static void on_timer(void *ctx, uint32_t events)
{
	struct pit *p = ctx;
	uint64_t n;
	pthread_mutex_lock(&p->lock);
	/* Nothing to read: the guest re-armed or stopped the timer since it fired. */
	if (read(p->tfd, &n, sizeof(n)) != sizeof(n)) {
		pthread_mutex_unlock(&p->lock);
		return;
	}
	p->armed = 0;
	struct chan *c = &p->ch[0];
	/* Late wake-ups deliver one interrupt, not a burst: Linux counts time by its clocksource. */
	if (counting(c) && periodic(c))
		vm_irq_pulse(p->vm, 0);
	sync_timer(p);
	pthread_mutex_unlock(&p->lock);
}

static void load(struct pit *p, int i, uint32_t v)
{
	struct chan *c = &p->ch[i];
	c->reload = v ? v : 65536;
	c->loaded = true;
	c->null_count = false;
	c->start = now_ns();
	if (i == 0) {
		p->irq_at = 0;
		sync_timer(p);
	}
}

static void write_count(struct pit *p, int i, uint8_t v)
{
	struct chan *c = &p->ch[i];
	switch (c->rw) {
	case RW_LSB: load(p, i, v); break;
	case RW_MSB: load(p, i, (uint32_t)v << 8); break;
	case RW_WORD:
		if (!c->write_msb) {
			c->lsb = v;
			c->write_msb = true;
			c->null_count = true;
			if (c->mode == 0 && i == 0) {	/* the first byte stops a mode-0 count */
				c->loaded = false;
				sync_timer(p);
			}
		} else {
			c->write_msb = false;
			load(p, i, c->lsb | (uint32_t)v << 8);
		}
		break;
	}
}

static uint8_t status_of(const struct chan *c, int64_t now)
{
	return (uint8_t)(out_now(c, now) << 7 | c->null_count << 6 | c->rw << 4 | c->mode << 1 | c->bcd);
}

static void latch_count(struct chan *c, int64_t now)
{
	if (c->latched)
		return;	/* a second latch before the first is read is ignored */
	c->latch = count_now(c, now);
	c->latched = c->rw == RW_WORD ? 2 : 1;
}

static uint8_t read_count(struct chan *c, int64_t now)
{
	if (c->status_latched) {
		c->status_latched = false;
		return c->status;
	}
	uint16_t v = c->latched ? c->latch : count_now(c, now);
	uint8_t b;
	switch (c->rw) {
	case RW_LSB: b = v; break;
	case RW_MSB: b = v >> 8; break;
	default:
		b = c->read_msb ? v >> 8 : v;
		c->read_msb = !c->read_msb;
		break;
	}
	if (c->latched && (c->rw != RW_WORD || !c->read_msb))
		c->latched = 0;
	else if (c->latched == 2)
		c->latched = 1;
	return b;
}

static void control(struct pit *p, uint8_t v)
{
	int64_t now = now_ns();
	int sel = v >> 6;
	if (sel == 3) {	/* read-back: bit 5 clear latches counts, bit 4 clear latches status */
		for (int i = 0; i < 3; i++) {
			if (!(v & (2 << i)))
				continue;
			struct chan *c = &p->ch[i];
			if (!(v & 0x10) && !c->status_latched) {
				c->status = status_of(c, now);
				c->status_latched = true;
			}
			if (!(v & 0x20))
				latch_count(c, now);
		}
		return;
	}
	struct chan *c = &p->ch[sel];
	int rw = (v >> 4) & 3;
	if (rw == RW_LATCH) {
		latch_count(c, now);
		return;
	}
	c->rw = rw;
	c->mode = (v >> 1) & 7;
	if (c->mode > 5)
		c->mode -= 4;	/* 6 and 7 are aliases of 2 and 3 */
	c->bcd = v & 1;
	c->loaded = false;
	c->null_count = true;
	c->write_msb = c->read_msb = false;
	c->latched = 0;
	c->status_latched = false;
	if (sel == 0)
		sync_timer(p);
}

static void set_gate2(struct pit *p, bool gate)
{
	struct chan *c = &p->ch[2];
	if (gate && !c->gate)
		c->start = now_ns();	/* a rising gate (re)starts the count in every mode we keep */
	c->gate = gate;
}

static void pit_read(void *ctx, uint64_t off, void *data, int len)
{
	struct pit *p = ctx;
	pthread_mutex_lock(&p->lock);
	uint8_t v = 0xff;
	if (off < 3)
		v = read_count(&p->ch[off], now_ns());
	pthread_mutex_unlock(&p->lock);
	memset(data, 0, len);
	*(uint8_t *)data = v;
}

static void pit_write(void *ctx, uint64_t off, const void *data, int len)
{
	struct pit *p = ctx;
	uint8_t v = *(const uint8_t *)data;
	pthread_mutex_lock(&p->lock);
	if (off < 3)
		write_count(p, (int)off, v);
	else
		control(p, v);
	pthread_mutex_unlock(&p->lock);
}

static void port61_read(void *ctx, uint64_t off, void *data, int len)
{
	struct pit *p = ctx;
	pthread_mutex_lock(&p->lock);
	p->refresh = !p->refresh;
	uint8_t v = (uint8_t)(p->ch[2].gate | p->speaker << 1 | p->refresh << 4 | out_now(&p->ch[2], now_ns()) << 5);
	pthread_mutex_unlock(&p->lock);
	memset(data, 0, len);
	*(uint8_t *)data = v;
}

static void port61_write(void *ctx, uint64_t off, const void *data, int len)
{
	struct pit *p = ctx;
	uint8_t v = *(const uint8_t *)data;
	pthread_mutex_lock(&p->lock);
	set_gate2(p, v & 1);
	p->speaker = v & 2;
	pthread_mutex_unlock(&p->lock);
}

static const struct bus_ops pit_ops = { .read = pit_read, .write = pit_write };
static const struct bus_ops port61_ops = { .read = port61_read, .write = port61_write };

/* After the event loop stopped: no timer callback can be running. */
static void pit_destroy(struct device *d)
{
	struct pit *p = d->priv;
	if (p->tfd >= 0) {
		evloop_del(p->vm->loop, p->tfd);
		close(p->tfd);
	}
	bus_unregister_all(&p->vm->pio, p);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

/*
 * Snapshots: times are kept relative to the moment of the save, so the
 * restored counters go on from where the guest left them, however long the
 * snapshot lay on disk (the guest's own clocks stood still that long too).
 */
static int pit_save(struct device *d, struct snap_writer *w)
{
	struct pit *p = d->priv;
	pthread_mutex_lock(&p->lock);
	int64_t now = now_ns();
	for (int i = 0; i < 3; i++) {
		struct chan *c = &p->ch[i];
		snap_u8(w, c->mode);
		snap_u8(w, c->rw);
		snap_u8(w, c->bcd);
		snap_u32(w, c->reload);
		snap_bool(w, c->loaded);
		snap_bool(w, c->gate);
		snap_i64(w, now - c->start);
		snap_bool(w, c->write_msb);
		snap_u8(w, c->lsb);
		snap_bool(w, c->read_msb);
		snap_u8(w, c->latched);
		snap_u16(w, c->latch);
		snap_bool(w, c->status_latched);
		snap_u8(w, c->status);
		snap_bool(w, c->null_count);
	}
	snap_bool(w, p->speaker);
	snap_bool(w, p->refresh);
	snap_i64(w, p->irq_at ? now - p->irq_at : INT64_MIN);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

static int pit_load(struct device *d, struct snap_reader *r)
{
	struct pit *p = d->priv;
	struct chan ch[3];
	memset(ch, 0, sizeof(ch));
	int64_t ago[3];
	for (int i = 0; i < 3; i++) {
		struct chan *c = &ch[i];
		c->mode = snap_get_u8(r);
		c->rw = snap_get_u8(r);
		c->bcd = snap_get_u8(r);
		c->reload = snap_get_u32(r);
		c->loaded = snap_get_bool(r);
		c->gate = snap_get_bool(r);
		ago[i] = snap_get_i64(r);
		c->write_msb = snap_get_bool(r);
		c->lsb = snap_get_u8(r);
		c->read_msb = snap_get_bool(r);
		c->latched = snap_get_u8(r);
		c->latch = snap_get_u16(r);
		c->status_latched = snap_get_bool(r);
		c->status = snap_get_u8(r);
		c->null_count = snap_get_bool(r);
		/* Counts divide by reload: a loaded channel needs 1..65536. */
		if (c->mode > 5 || c->rw > RW_WORD || c->bcd > 1 || c->reload > 65536 || (c->loaded && !c->reload) ||
		    c->latched > 2 || ago[i] > MAX_AGE_NS || ago[i] < -MAX_AGE_NS)
			return snap_bad(r, "channel %d: mode %u, access %u, count %u out of range", i, c->mode, c->rw,
					c->reload);
	}
	bool speaker = snap_get_bool(r), refresh = snap_get_bool(r);
	int64_t irq_ago = snap_get_i64(r);
	if (irq_ago != INT64_MIN && (irq_ago > MAX_AGE_NS || irq_ago < -MAX_AGE_NS))
		return snap_bad(r, "last interrupt time out of range");
	if (snap_failed(r))
		return -1;
	pthread_mutex_lock(&p->lock);
	int64_t now = now_ns();
	for (int i = 0; i < 3; i++) {
		ch[i].start = now - ago[i];
		p->ch[i] = ch[i];
	}
	p->speaker = speaker;
	p->refresh = refresh;
	p->irq_at = irq_ago == INT64_MIN ? 0 : now - irq_ago;
	p->armed = -1;	/* whatever the timerfd holds: sync_timer sets it */
	sync_timer(p);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

static const struct device_ops pit_ops_dev = {
	.destroy = pit_destroy, .save = pit_save, .load = pit_load, .snap_version = 1,
};

static int pit_create(struct vm *vm, void *own)
{
	struct pit *p = xcalloc(1, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	p->vm = vm;
	p->tfd = -1;
	for (int i = 0; i < 3; i++) {
		p->ch[i].gate = i != 2;	/* channels 0 and 1 are always gated on; 2 by port 0x61 */
		p->ch[i].mode = 0;
	}
	device_add(vm, "pit", &pit_ops_dev, p);
	p->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (p->tfd < 0)
		return err_errno("pit: timerfd_create");
	if (evloop_add(vm->loop, p->tfd, EPOLLIN, on_timer, p) < 0) {
		close(p->tfd);
		p->tfd = -1;
		return -1;
	}
	if (bus_register(&vm->pio, 0x40, 4, &pit_ops, p, "pit") < 0)
		return -1;
	return bus_register(&vm->pio, 0x61, 1, &port61_ops, p, "port61");
}

const struct device_type pit_device = { .name = "pit", .create = pit_create };
