/* 16550A UART: driven through the port bus exactly as a vCPU would. */
#include "devices.h"
#include "test.h"
#include "fake_vm.h"
#include "bus.h"
#include "hw.h"
#include "util.h"
#include "vm.h"

#define COM1 0x3f8
#define COM3 0x3e8

static int irq_level[16];
static int irq_changes[16];

static void irq_rec(struct vm *vm, unsigned gsi, int level)
{
	if (gsi < 16) {
		irq_level[gsi] = level;
		irq_changes[gsi]++;
	}
}

static char outbuf[256];
static size_t outlen;

static void capture(void *ctx, const void *buf, size_t len)
{
	for (size_t i = 0; i < len && outlen < sizeof(outbuf); i++)
		outbuf[outlen++] = ((const char *)buf)[i];
}

static void setup(struct vm *vm)
{
	static const struct irq_ops rec_irqs = { .line = irq_rec };
	fake_vm_init(vm, &rec_irqs);
	memset(irq_level, 0, sizeof(irq_level));
	memset(irq_changes, 0, sizeof(irq_changes));
	outlen = 0;
	CHECK_EQ(device_type_create(vm, &serial_device), 0);
	serial_set_output(serial_port(vm, 0), capture, NULL);
}

TEST(transmit)
{
	struct vm vm;
	setup(&vm);
	CHECK_EQ(pio_in8(&vm, COM1 + 5) & 0x60, 0x60);	/* THRE and TEMT */
	pio_out8(&vm, COM1, 'h');
	pio_out8(&vm, COM1, 'i');
	CHECK_EQ(outlen, 2);
	CHECK(!memcmp(outbuf, "hi", 2));
	/* Other ports' output goes nowhere, and not to ttyS0's sink. */
	pio_out8(&vm, 0x2f8, 'x');
	CHECK_EQ(outlen, 2);
	fake_vm_free(&vm);
}

TEST(divisor_latch)
{
	struct vm vm;
	setup(&vm);
	pio_out8(&vm, COM1 + 3, 0x83);	/* DLAB, 8N1 */
	pio_out8(&vm, COM1 + 0, 0x01);
	pio_out8(&vm, COM1 + 1, 0x02);
	CHECK_EQ(pio_in8(&vm, COM1 + 0), 0x01);
	CHECK_EQ(pio_in8(&vm, COM1 + 1), 0x02);
	CHECK_EQ(outlen, 0);	/* DLL writes are not characters */
	pio_out8(&vm, COM1 + 3, 0x03);
	CHECK_EQ(pio_in8(&vm, COM1 + 1), 0);	/* IER again, untouched */
	pio_out8(&vm, COM1 + 1, 0xff);
	CHECK_EQ(pio_in8(&vm, COM1 + 1), 0x0f);	/* only the four 16550A enables stick */
	pio_out8(&vm, COM1 + 3, 0x83);
	CHECK_EQ(pio_in8(&vm, COM1 + 1), 0x02);	/* DLM kept */
	CHECK_EQ(pio_in8(&vm, COM1 + 3), 0x83);
	pio_out8(&vm, COM1 + 7, 0x5a);
	CHECK_EQ(pio_in8(&vm, COM1 + 7), 0x5a);	/* scratch */
	fake_vm_free(&vm);
}

TEST(fifo_fill_drain)
{
	struct vm vm;
	setup(&vm);
	void *p = serial_port(&vm, 0);
	CHECK(p != NULL);
	CHECK(serial_port(&vm, 4) == NULL);
	pio_out8(&vm, COM1 + 2, 0x07);	/* FIFO on, cleared, trigger 1 */
	CHECK_EQ(pio_in8(&vm, COM1 + 2) & 0xc0, 0xc0);	/* 16550A: both FIFO bits */
	uint8_t in[40];
	for (int i = 0; i < 40; i++)
		in[i] = 'A' + i;
	serial_input(p, in, sizeof(in));
	/* 40 bytes arrive, the 16-byte FIFO never overruns: the rest waits in the ring. */
	for (int i = 0; i < 40; i++) {
		CHECK_EQ(pio_in8(&vm, COM1 + 5) & 0x03, 0x01);	/* DR, no OE */
		CHECK_EQ(pio_in8(&vm, COM1), 'A' + i);
	}
	CHECK_EQ(pio_in8(&vm, COM1 + 5) & 0x01, 0);
	/* FCR clear-RX drops what the FIFO holds; the next input still arrives. */
	serial_input(p, (const uint8_t *)"xy", 2);
	pio_out8(&vm, COM1 + 2, 0x03);
	CHECK_EQ(pio_in8(&vm, COM1 + 5) & 0x01, 0);
	serial_input(p, (const uint8_t *)"z", 1);
	CHECK_EQ(pio_in8(&vm, COM1), 'z');
	fake_vm_free(&vm);
}

TEST(loopback)
{
	struct vm vm;
	setup(&vm);
	/* Linux's probe: loopback with RTS and OUT2 must read CTS and DCD. */
	pio_out8(&vm, COM1 + 4, 0x1a);
	CHECK_EQ(pio_in8(&vm, COM1 + 6) & 0xf0, 0x90);
	pio_out8(&vm, COM1 + 4, 0x1f);
	CHECK_EQ(pio_in8(&vm, COM1 + 6) & 0xf0, 0xf0);
	pio_out8(&vm, COM1 + 4, 0x10);
	CHECK_EQ(pio_in8(&vm, COM1 + 6) & 0xf0, 0x00);
	/* Characters come back to the receiver instead of going out. */
	pio_out8(&vm, COM1 + 2, 0x01);
	pio_out8(&vm, COM1, 0x42);
	pio_out8(&vm, COM1, 0x43);
	CHECK_EQ(outlen, 0);
	CHECK_EQ(pio_in8(&vm, COM1 + 5) & 1, 1);
	CHECK_EQ(pio_in8(&vm, COM1), 0x42);
	CHECK_EQ(pio_in8(&vm, COM1), 0x43);
	/* Overrun: 17 characters into a 16-byte FIFO sets OE, read once. */
	for (int i = 0; i < 17; i++)
		pio_out8(&vm, COM1, i);
	CHECK_EQ(pio_in8(&vm, COM1 + 5) & 0x03, 0x03);
	CHECK_EQ(pio_in8(&vm, COM1 + 5) & 0x03, 0x01);
	/* Host input waits while loopback disconnects the line. */
	pio_out8(&vm, COM1 + 2, 0x03);
	serial_input(serial_port(&vm, 0), (const uint8_t *)"k", 1);
	CHECK_EQ(pio_in8(&vm, COM1 + 5) & 1, 0);
	pio_out8(&vm, COM1 + 4, 0x08);
	CHECK_EQ(pio_in8(&vm, COM1 + 5) & 1, 1);
	CHECK_EQ(pio_in8(&vm, COM1), 'k');
	CHECK_EQ(pio_in8(&vm, COM1 + 6) & 0xb0, 0xb0);	/* CTS DSR DCD outside loopback */
	fake_vm_free(&vm);
}

TEST(iir_priorities)
{
	struct vm vm;
	setup(&vm);
	pio_out8(&vm, COM1 + 4, 0x0b);	/* DTR RTS OUT2 */
	CHECK_EQ(pio_in8(&vm, COM1 + 2), 0x01);
	CHECK_EQ(irq_level[4], 0);
	/* Enabling THRI with THR empty interrupts at once; reading IIR acknowledges it. */
	pio_out8(&vm, COM1 + 1, 0x02);
	CHECK_EQ(irq_level[4], 1);
	CHECK_EQ(pio_in8(&vm, COM1 + 2), 0x02);
	CHECK_EQ(irq_level[4], 0);
	CHECK_EQ(pio_in8(&vm, COM1 + 2), 0x01);
	/* Linux's THRE re-assert test: IER off and on again raises it again. */
	pio_out8(&vm, COM1 + 1, 0x00);
	pio_out8(&vm, COM1 + 1, 0x02);
	CHECK_EQ(pio_in8(&vm, COM1 + 2), 0x02);
	/* A transmitted byte empties THR again: another THRE. */
	pio_out8(&vm, COM1, 'a');
	CHECK_EQ(irq_level[4], 1);
	/* Received data outranks THRE; line status outranks received data. */
	pio_out8(&vm, COM1 + 1, 0x07);
	pio_out8(&vm, COM1 + 2, 0x01);	/* FIFO, trigger 1 */
	serial_input(serial_port(&vm, 0), (const uint8_t *)"q", 1);
	CHECK_EQ(pio_in8(&vm, COM1 + 2), 0xc4);
	pio_out8(&vm, COM1 + 4, 0x18);	/* loopback: make an overrun */
	for (int i = 0; i < 16; i++)
		pio_out8(&vm, COM1, 'o');
	CHECK_EQ(irq_level[4], 0);	/* loopback disconnects the interrupt */
	pio_out8(&vm, COM1 + 4, 0x08);
	CHECK_EQ(irq_level[4], 1);
	CHECK_EQ(pio_in8(&vm, COM1 + 2), 0xc6);
	CHECK_EQ(pio_in8(&vm, COM1 + 5) & 0x02, 0x02);	/* reading LSR clears it */
	CHECK_EQ(pio_in8(&vm, COM1 + 2), 0xc4);
	for (int i = 0; i < 16; i++)
		pio_in8(&vm, COM1);
	CHECK_EQ(pio_in8(&vm, COM1 + 2), 0xc2);	/* THRE still pending */
	CHECK_EQ(pio_in8(&vm, COM1 + 2), 0xc1);
	CHECK_EQ(irq_level[4], 0);
	/* Trigger level: below it the FIFO reports a character timeout. */
	pio_out8(&vm, COM1 + 2, 0x81);	/* trigger 8 */
	serial_input(serial_port(&vm, 0), (const uint8_t *)"abc", 3);
	CHECK_EQ(pio_in8(&vm, COM1 + 2), 0xcc);
	serial_input(serial_port(&vm, 0), (const uint8_t *)"defgh", 5);
	CHECK_EQ(pio_in8(&vm, COM1 + 2), 0xc4);
	/* OUT2 gates the line, as on a PC. */
	pio_out8(&vm, COM1 + 4, 0x03);
	CHECK_EQ(irq_level[4], 0);
	pio_out8(&vm, COM1 + 4, 0x0b);
	CHECK_EQ(irq_level[4], 1);
	/* Modem status: lowest priority, raised by MCR changes in loopback. */
	pio_out8(&vm, COM1 + 1, 0x08);
	pio_out8(&vm, COM1 + 2, 0x07);
	pio_in8(&vm, COM1 + 6);
	CHECK_EQ(pio_in8(&vm, COM1 + 2) & 0x0f, 0x01);
	pio_out8(&vm, COM1 + 4, 0x1a);
	CHECK_EQ(pio_in8(&vm, COM1 + 2), 0xc0);
	CHECK_EQ(pio_in8(&vm, COM1 + 6) & 0x0f, 0x02);	/* DSR dropped: DDSR */
	CHECK_EQ(pio_in8(&vm, COM1 + 2), 0xc1);
	pio_out8(&vm, COM1 + 4, 0x10);
	CHECK_EQ(pio_in8(&vm, COM1 + 6), 0x09);	/* CTS and DCD dropped: DCTS DDCD */
	pio_out8(&vm, COM1 + 4, 0x14);
	pio_out8(&vm, COM1 + 4, 0x10);
	CHECK_EQ(pio_in8(&vm, COM1 + 6), 0x04);	/* RI's trailing edge: TERI */
	fake_vm_free(&vm);
}

TEST(shared_irq_line)
{
	struct vm vm;
	setup(&vm);
	/* ttyS0 and ttyS2 share IRQ 4: the line stays up while either asserts. */
	pio_out8(&vm, COM1 + 4, 0x08);
	pio_out8(&vm, COM3 + 4, 0x08);
	pio_out8(&vm, COM1 + 1, 0x02);
	pio_out8(&vm, COM3 + 1, 0x02);
	CHECK_EQ(irq_level[4], 1);
	CHECK_EQ(irq_changes[4], 1);
	CHECK_EQ(pio_in8(&vm, COM1 + 2) & 0x0f, 0x02);
	CHECK_EQ(irq_level[4], 1);
	CHECK_EQ(pio_in8(&vm, COM3 + 2) & 0x0f, 0x02);
	CHECK_EQ(irq_level[4], 0);
	CHECK_EQ(irq_changes[4], 2);
	CHECK_EQ(irq_changes[3], 0);
	fake_vm_free(&vm);
}

TEST(wide_and_odd_accesses)
{
	struct vm vm;
	setup(&vm);
	/* A word write touches two consecutive registers; nothing past the port. */
	uint8_t w[4] = { 0x0b, 0x00, 0x00, 0x00 };
	CHECK(bus_access(&vm.pio, COM1 + 7, w, 4, true));
	CHECK_EQ(pio_in8(&vm, COM1 + 7), 0x0b);
	uint8_t r[4];
	CHECK(bus_access(&vm.pio, COM1 + 6, r, 4, false));
	CHECK_EQ(r[1], 0x0b);
	CHECK_EQ(r[2], 0xff);	/* beyond the device: unclaimed bytes read ones */
	/* Reading an empty RBR is harmless. */
	CHECK_EQ(pio_in8(&vm, COM1 + 5) & 1, 0);
	pio_in8(&vm, COM1);
	CHECK_EQ(pio_in8(&vm, COM1 + 5) & 1, 0);
	fake_vm_free(&vm);
}

/* The checks Linux's 8250 autoconfig and startup make, in their order: they must find a 16550A. */
TEST(linux_autoconfig)
{
	struct vm vm;
	setup(&vm);
	const uint16_t b = 0x2f8;	/* ttyS1: no test sink, same model */
	/* IER existence test. */
	uint8_t scratch = pio_in8(&vm, b + 1);
	pio_out8(&vm, b + 1, 0);
	CHECK_EQ(pio_in8(&vm, b + 1) & 0x0f, 0);
	pio_out8(&vm, b + 1, 0x0f);
	CHECK_EQ(pio_in8(&vm, b + 1) & 0x0f, 0x0f);
	pio_out8(&vm, b + 1, scratch);
	/* Loopback: MSR follows MCR. */
	uint8_t save_mcr = pio_in8(&vm, b + 4), save_lcr = pio_in8(&vm, b + 3);
	pio_out8(&vm, b + 4, 0x10 | 0x0a);
	CHECK_EQ(pio_in8(&vm, b + 6) & 0xf0, 0x90);
	pio_out8(&vm, b + 4, save_mcr);
	/* EFR poke, then FIFO enable: IIR's top bits say 16550A. */
	pio_out8(&vm, b + 3, 0xbf);
	pio_out8(&vm, b + 2, 0);
	pio_out8(&vm, b + 3, 0);
	pio_out8(&vm, b + 2, 0x01);
	CHECK_EQ(pio_in8(&vm, b + 2) >> 6, 3);
	/* 16550A variants: no EFR with DLAB or 0xBF, not NatSemi, not a 16750, not Xscale. */
	pio_out8(&vm, b + 3, 0x80);
	CHECK(pio_in8(&vm, b + 2) != 0);
	pio_out8(&vm, b + 3, 0xbf);
	CHECK(pio_in8(&vm, b + 2) != 0);
	pio_out8(&vm, b + 3, 0);
	uint8_t status1 = pio_in8(&vm, b + 4);
	pio_out8(&vm, b + 3, 0xe0);
	uint8_t status2 = pio_in8(&vm, b + 2);
	if (!((status2 ^ status1) & 0x10)) {
		pio_out8(&vm, b + 3, 0);
		pio_out8(&vm, b + 4, status1 ^ 0x10);
		pio_out8(&vm, b + 3, 0xe0);
		status2 = pio_in8(&vm, b + 2);
		pio_out8(&vm, b + 3, 0);
		pio_out8(&vm, b + 4, status1);
		CHECK_EQ((status2 ^ status1) & 0x10, 0);
	}
	pio_out8(&vm, b + 3, 0);
	pio_out8(&vm, b + 2, 0x21);
	status1 = pio_in8(&vm, b + 2) >> 5;
	pio_out8(&vm, b + 2, 0x01);
	pio_out8(&vm, b + 3, 0x80);
	pio_out8(&vm, b + 2, 0x21);
	status2 = pio_in8(&vm, b + 2) >> 5;
	pio_out8(&vm, b + 2, 0x01);
	pio_out8(&vm, b + 3, 0);
	CHECK(!(status1 == 6 && status2 == 7));
	pio_out8(&vm, b + 1, 0x40);
	CHECK_EQ(pio_in8(&vm, b + 1) & 0x40, 0);
	pio_out8(&vm, b + 1, 0);
	pio_out8(&vm, b + 3, save_lcr);
	/* Startup: clear FIFOs, LSR must not float to 0xff, THRE must (re)assert. */
	pio_out8(&vm, b + 2, 0x07);
	pio_in8(&vm, b + 5);
	pio_in8(&vm, b + 0);
	pio_in8(&vm, b + 2);
	pio_in8(&vm, b + 6);
	CHECK(pio_in8(&vm, b + 5) != 0xff);
	pio_out8(&vm, b + 4, 0x08);	/* OUT2 */
	pio_out8(&vm, b + 1, 0x02);
	uint8_t iir1 = pio_in8(&vm, b + 2);
	pio_out8(&vm, b + 1, 0);
	pio_out8(&vm, b + 1, 0x02);
	uint8_t iir = pio_in8(&vm, b + 2);
	pio_out8(&vm, b + 1, 0);
	CHECK_EQ(iir1 & 0x01, 0);
	CHECK_EQ(iir & 0x01, 0);	/* no UART_BUG_THRE */
	pio_out8(&vm, b + 1, 0x02);
	uint8_t lsr = pio_in8(&vm, b + 5);
	iir = pio_in8(&vm, b + 2);
	pio_out8(&vm, b + 1, 0);
	CHECK(!((lsr & 0x40) && (iir & 0x01)));	/* no UART_BUG_TXEN */
	CHECK_EQ(irq_level[3], 0);
	fake_vm_free(&vm);
}

TEST_MAIN()
