/* The 8254 PIT at ports 0x40-0x43 and 0x61: counts, latches, read-back, OUT2, and IRQ 0 edges. */
#include <time.h>
#include "devices.h"
#include "test.h"
#include "fake_vm.h"
#include "bus.h"
#include "evloop.h"
#include "hw.h"
#include "util.h"
#include "vm.h"

#define PIT_TEST_HZ 1193182

static int irq0_edges, irq0;

static void irq_rec(struct vm *vm, unsigned gsi, int level)
{
	if (gsi == 0) {
		if (level && !irq0)
			irq0_edges++;
		irq0 = level;
	}
}

static const struct irq_ops rec_irqs = { .line = irq_rec };

/* with_loop: the test polls the VM's event loop, so the PIT's timer fires. */
static void setup(struct vm *vm, bool with_loop)
{
	fake_vm_init(vm, &rec_irqs);
	irq0_edges = irq0 = 0;
	CHECK(vm->loop != NULL);
	CHECK_EQ(device_type_create(vm, &pit_device), 0);
}

static void teardown(struct vm *vm)
{
	fake_vm_free(vm);
}

static void sleep_us(long us) { nanosleep(&(struct timespec){ .tv_sec = us / 1000000, .tv_nsec = us % 1000000 * 1000 }, NULL); }

static int64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Linux's quick TSC calibration: channel 2, mode 0, gate on through port 0x61, read the count. */
TEST(channel2_counts_down_and_out2_rises)
{
	struct vm vm;
	setup(&vm, false);
	pio_out8(&vm, 0x61, (pio_in8(&vm, 0x61) & ~0x02) | 0x01);	/* gate 2 on, speaker off */
	pio_out8(&vm, 0x43, 0xb0);	/* channel 2, LSB then MSB, mode 0, binary */
	pio_out8(&vm, 0x42, 0xff);
	pio_out8(&vm, 0x42, 0xff);
	CHECK_EQ(pio_in8(&vm, 0x61) & 0x20, 0);	/* OUT2 low while counting */
	pio_in8(&vm, 0x42);
	uint8_t m1 = pio_in8(&vm, 0x42);
	sleep_us(20000);	/* 20 ms is about 23864 clocks */
	pio_in8(&vm, 0x42);
	uint8_t m2 = pio_in8(&vm, 0x42);
	CHECK(m2 < m1);
	int d = m1 - m2;	/* MSB steps of 256 clocks */
	CHECK(d >= 80 && d <= 255);
	/* A short count reaches zero: OUT2 goes high and stays high. */
	pio_out8(&vm, 0x42, 100);
	pio_out8(&vm, 0x42, 0);
	sleep_us(1000);
	CHECK(pio_in8(&vm, 0x61) & 0x20);
	CHECK(pio_in8(&vm, 0x61) & 0x20);
	/* Gate off: the count is held and OUT2 reads low again in mode 0. */
	pio_out8(&vm, 0x61, pio_in8(&vm, 0x61) & ~0x01);
	CHECK_EQ(pio_in8(&vm, 0x61) & 0x21, 0);
	teardown(&vm);
}

TEST(latch_freezes_one_value)
{
	struct vm vm;
	setup(&vm, false);
	pio_out8(&vm, 0x43, 0x34);	/* channel 0, LSB/MSB, mode 2 */
	pio_out8(&vm, 0x40, 0x00);
	pio_out8(&vm, 0x40, 0x80);	/* 0x8000 */
	pio_out8(&vm, 0x43, 0x00);	/* latch channel 0 */
	uint8_t lo = pio_in8(&vm, 0x40);
	sleep_us(5000);
	uint8_t hi = pio_in8(&vm, 0x40);
	uint16_t latched = lo | hi << 8;
	CHECK(latched <= 0x8000 && latched > 0x7000);
	/* After the latched pair, reads are live again: 5 ms later it is lower. */
	uint16_t live = pio_in8(&vm, 0x40);
	live |= pio_in8(&vm, 0x40) << 8;
	CHECK(live < latched);
	/* A second latch before the first is read is ignored. */
	pio_out8(&vm, 0x43, 0x00);
	sleep_us(2000);
	pio_out8(&vm, 0x43, 0x00);
	uint16_t a = pio_in8(&vm, 0x40);
	a |= pio_in8(&vm, 0x40) << 8;
	uint16_t b = pio_in8(&vm, 0x40);
	b |= pio_in8(&vm, 0x40) << 8;
	CHECK(b < a);
	teardown(&vm);
}

TEST(read_back_status_and_count)
{
	struct vm vm;
	setup(&vm, false);
	pio_out8(&vm, 0x43, 0x76);	/* channel 1, LSB/MSB, mode 3 */
	pio_out8(&vm, 0x43, 0xe4);	/* read-back: status only, channel 1 */
	uint8_t st = pio_in8(&vm, 0x41);
	CHECK_EQ(st & 0x3f, 0x36);	/* rw 3, mode 3, binary */
	CHECK(st & 0x40);		/* null count: nothing loaded yet */
	pio_out8(&vm, 0x41, 0x10);
	pio_out8(&vm, 0x41, 0x27);	/* 0x2710 = 10000 */
	pio_out8(&vm, 0x43, 0xc4);	/* read-back: status and count, channel 1 */
	st = pio_in8(&vm, 0x41);
	CHECK_EQ(st & 0x40, 0);	/* loaded */
	uint16_t c = pio_in8(&vm, 0x41);
	c |= pio_in8(&vm, 0x41) << 8;
	CHECK(c <= 10000 && c > 0 && c % 2 == 0);	/* mode 3 counts by two */
	/* Mode 6 is mode 2. */
	pio_out8(&vm, 0x43, 0x5c);	/* channel 1, LSB only, mode 6 */
	pio_out8(&vm, 0x43, 0xe4);
	CHECK_EQ(pio_in8(&vm, 0x41) & 0x3e, 0x14);
	teardown(&vm);
}

/* Run the event loop for ms milliseconds. */
static void run_loop(struct vm *vm, int ms)
{
	int64_t end = mono_us() + ms * 1000LL;
	while (mono_us() < end) {
		int left = (int)((end - mono_us()) / 1000);
		evloop_poll(vm->loop, left > 0 ? left : 0);
	}
}

TEST(periodic_irq0)
{
	struct vm vm;
	setup(&vm, true);
	run_loop(&vm, 50);
	CHECK_EQ(irq0_edges, 0);	/* nothing programmed: no interrupts */
	pio_out8(&vm, 0x43, 0x34);	/* channel 0, mode 2: Linux's periodic tick */
	uint16_t latch = (PIT_TEST_HZ + 500) / 1000;	/* 1000 Hz */
	pio_out8(&vm, 0x40, latch & 0xff);
	pio_out8(&vm, 0x40, latch >> 8);
	run_loop(&vm, 200);
	/* 200 periods; a loaded machine may lose some, never gains. */
	CHECK(irq0_edges >= 100 && irq0_edges <= 201);
	CHECK_EQ(irq0, 0);	/* edges: the line goes back down */
	/* Reprogramming the mode stops it. */
	pio_out8(&vm, 0x43, 0x30);	/* mode 0, no count yet */
	int n = irq0_edges;
	run_loop(&vm, 50);
	CHECK_EQ(irq0_edges, n);
	teardown(&vm);
}

/* A count of 2 would be 600 kHz: the rate is held at 5 kHz, as KVM's own PIT holds it. */
TEST(periodic_rate_is_bounded)
{
	struct vm vm;
	setup(&vm, true);
	pio_out8(&vm, 0x43, 0x34);
	pio_out8(&vm, 0x40, 2);
	pio_out8(&vm, 0x40, 0);
	run_loop(&vm, 100);
	CHECK(irq0_edges >= 20 && irq0_edges <= 501);
	teardown(&vm);
}

TEST(oneshot_irq0)
{
	struct vm vm;
	setup(&vm, true);
	pio_out8(&vm, 0x43, 0x30);	/* channel 0, mode 0: Linux's one-shot clockevent */
	uint16_t count = PIT_TEST_HZ / 100;	/* 10 ms */
	int64_t t0 = mono_us();
	pio_out8(&vm, 0x40, count & 0xff);
	pio_out8(&vm, 0x40, count >> 8);
	while (!irq0_edges && mono_us() - t0 < 1000000)
		evloop_poll(vm.loop, 100);
	int64_t took = mono_us() - t0;
	CHECK_EQ(irq0_edges, 1);
	CHECK(took >= 9000 && took < 500000);
	run_loop(&vm, 50);
	CHECK_EQ(irq0_edges, 1);	/* one shot only */
	/* Rewriting the count fires again. */
	pio_out8(&vm, 0x40, 100);
	pio_out8(&vm, 0x40, 0);
	run_loop(&vm, 20);
	CHECK_EQ(irq0_edges, 2);
	teardown(&vm);
}

TEST_MAIN()
