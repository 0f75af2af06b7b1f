/* i8042: the sequences Linux's probe uses, interrupts, and the resets that end the VM. */
#include "devices.h"
#include "test.h"
#include "fake_vm.h"
#include "bus.h"
#include "hw.h"
#include "util.h"
#include "vm.h"

static int irq_level[16], irq_raises[16];

static void irq_rec(struct vm *vm, unsigned gsi, int level)
{
	if (gsi < 16) {
		if (level && !irq_level[gsi])
			irq_raises[gsi]++;
		irq_level[gsi] = level;
	}
}

static void setup(struct vm *vm)
{
	static const struct irq_ops rec_irqs = { .line = irq_rec };
	fake_vm_init(vm, &rec_irqs);
	memset(irq_level, 0, sizeof(irq_level));
	memset(irq_raises, 0, sizeof(irq_raises));
	CHECK_EQ(device_type_create(vm, &i8042_device), 0);
}

/* i8042_command(): write the command, the parameter if any, poll OBF for the reply. */
static int command(struct vm *vm, uint8_t cmd, int param)
{
	CHECK_EQ(pio_in8(vm, 0x64) & 0x02, 0);	/* IBF never blocks */
	pio_out8(vm, 0x64, cmd);
	if (param >= 0)
		pio_out8(vm, 0x60, param);
	if (!(pio_in8(vm, 0x64) & 0x01))
		return -1;
	return pio_in8(vm, 0x60);
}

TEST(probe_sequence)
{
	struct vm vm;
	setup(&vm);
	/* Nothing to flush at first. */
	CHECK_EQ(pio_in8(&vm, 0x64) & 0x01, 0);
	CHECK(pio_in8(&vm, 0x64) & 0x10);	/* keylock off: no warning */
	int ctr = command(&vm, 0x20, -1);
	CHECK(ctr >= 0);
	CHECK_EQ(command(&vm, 0x20, -1), ctr);	/* stable CTR read */
	/* Linux disables the keyboard and its interrupt, then writes CTR back. */
	ctr = (ctr | 0x10) & ~0x01;
	CHECK_EQ(command(&vm, 0x60, ctr), -1);
	CHECK_EQ(command(&vm, 0x20, -1), ctr);
	CHECK_EQ(irq_level[1], 0);
	memset(irq_raises, 0, sizeof(irq_raises));
	CHECK_EQ(command(&vm, 0xaa, -1), 0x55);
	CHECK(pio_in8(&vm, 0x64) & 0x04);	/* SYS */
	CHECK(pio_in8(&vm, 0x64) & 0x08);	/* last write was a command */
	CHECK_EQ(command(&vm, 0xab, -1), 0x00);
	/* Aux: the loop command echoes with the aux bit, and the mux probe sees no mux. */
	pio_out8(&vm, 0x64, 0xd3);
	pio_out8(&vm, 0x60, 0x5a);
	CHECK_EQ(pio_in8(&vm, 0x64) & 0x21, 0x21);
	CHECK_EQ(pio_in8(&vm, 0x60), 0x5a);
	CHECK_EQ(pio_in8(&vm, 0x64) & 0x21, 0x00);
	CHECK_EQ(command(&vm, 0xd3, 0xa4), 0xa4);
	CHECK_EQ(command(&vm, 0xa9, -1), 0x00);
	/* Port enable/disable bits are visible in CTR. */
	command(&vm, 0xa7, -1);
	CHECK(command(&vm, 0x20, -1) & 0x20);
	command(&vm, 0xa8, -1);
	CHECK_EQ(command(&vm, 0x20, -1) & 0x20, 0);
	command(&vm, 0xae, -1);
	CHECK_EQ(command(&vm, 0x20, -1) & 0x10, 0);
	command(&vm, 0xad, -1);
	CHECK(command(&vm, 0x20, -1) & 0x10);
	/* Internal RAM beyond the command byte. */
	command(&vm, 0x65, 0x77);
	CHECK_EQ(command(&vm, 0x25, -1), 0x77);
	/* Output port reads, and no interrupts while they are disabled. */
	CHECK_EQ(command(&vm, 0xd0, -1) & 0x03, 0x03);
	CHECK_EQ(irq_raises[1] + irq_raises[12], 0);
	fake_vm_free(&vm);
}

TEST(keyboard_and_irqs)
{
	struct vm vm;
	setup(&vm);
	/* Keyboard interrupt on, translation on. */
	command(&vm, 0x60, 0x45);
	pio_out8(&vm, 0x60, 0xff);	/* keyboard reset */
	CHECK_EQ(irq_level[1], 1);
	CHECK_EQ(pio_in8(&vm, 0x60), 0xfa);
	CHECK_EQ(irq_level[1], 1);	/* the BAT code follows */
	CHECK_EQ(irq_raises[1], 2);	/* as a new edge */
	CHECK_EQ(pio_in8(&vm, 0x60), 0xaa);
	CHECK_EQ(irq_level[1], 0);
	pio_out8(&vm, 0x60, 0xf2);	/* identify */
	CHECK_EQ(pio_in8(&vm, 0x60), 0xfa);
	CHECK_EQ(pio_in8(&vm, 0x60), 0xab);
	CHECK_EQ(pio_in8(&vm, 0x60), 0x41);
	pio_out8(&vm, 0x60, 0xed);	/* LEDs with their parameter */
	CHECK_EQ(pio_in8(&vm, 0x60), 0xfa);
	pio_out8(&vm, 0x60, 0x07);
	CHECK_EQ(pio_in8(&vm, 0x60), 0xfa);
	pio_out8(&vm, 0x60, 0xee);
	CHECK_EQ(pio_in8(&vm, 0x60), 0xee);
	CHECK_EQ(irq_level[12], 0);
	/* Aux data raises IRQ 12 only when its interrupt is enabled. */
	pio_out8(&vm, 0x64, 0xd3);
	pio_out8(&vm, 0x60, 0x11);
	CHECK_EQ(irq_level[12], 0);
	CHECK_EQ(irq_level[1], 0);	/* aux data never raises the keyboard's line */
	CHECK_EQ(pio_in8(&vm, 0x60), 0x11);
	command(&vm, 0x60, 0x47);
	pio_out8(&vm, 0x64, 0xd3);
	pio_out8(&vm, 0x60, 0xa5);
	CHECK_EQ(irq_level[12], 1);
	CHECK_EQ(pio_in8(&vm, 0x60), 0xa5);
	CHECK_EQ(irq_level[12], 0);
	/* No mouse: a byte for it comes back as a timeout right away. */
	pio_out8(&vm, 0x64, 0xd4);
	pio_out8(&vm, 0x60, 0xf2);
	CHECK_EQ(pio_in8(&vm, 0x64) & 0x61, 0x61);
	CHECK_EQ(pio_in8(&vm, 0x60), 0xfe);
	/* Reading an empty buffer is harmless. */
	pio_in8(&vm, 0x60);
	CHECK_EQ(pio_in8(&vm, 0x64) & 0x01, 0);
	fake_vm_free(&vm);
}

TEST(reset_command)
{
	struct vm vm;
	setup(&vm);
	pio_out8(&vm, 0x64, 0xfe);
	CHECK_EQ(vm.exit_reason, VM_RESET);
	CHECK_EQ(vm.exit_status, 0);
	fake_vm_free(&vm);

	setup(&vm);
	pio_out8(&vm, 0x64, 0xff);	/* pulses nothing */
	CHECK_EQ(vm.exit_reason, VM_RUNNING);
	command(&vm, 0xd1, 0x03);	/* output port with reset high */
	CHECK_EQ(vm.exit_reason, VM_RUNNING);
	command(&vm, 0xd1, 0x02);	/* reset line low */
	CHECK_EQ(vm.exit_reason, VM_RESET);
	fake_vm_free(&vm);

	setup(&vm);
	CHECK_EQ(pio_in8(&vm, 0x92) & 0x01, 0);
	pio_out8(&vm, 0x92, 0x02);
	CHECK_EQ(vm.exit_reason, VM_RUNNING);
	pio_out8(&vm, 0x92, 0x03);	/* fast reset */
	CHECK_EQ(vm.exit_reason, VM_RESET);
	CHECK_EQ(vm.exit_status, 0);
	fake_vm_free(&vm);
}

TEST(queue_overflow)
{
	struct vm vm;
	setup(&vm);
	/* A flood of replies nobody reads is bounded, and drains. */
	for (int i = 0; i < 100; i++)
		pio_out8(&vm, 0x60, 0xff);
	int n = 0;
	while ((pio_in8(&vm, 0x64) & 1) && n < 1000) {
		pio_in8(&vm, 0x60);
		n++;
	}
	CHECK(n > 0 && n <= 16);	/* what i8042_flush() accepts */
	fake_vm_free(&vm);
}

/* The other ports that end the VM live in hw/debug_ports.c; tested here with the resets. */
TEST(debug_ports)
{
	struct vm vm;
	setup(&vm);
	CHECK_EQ(device_type_create(&vm, &debug_ports_device), 0);
	CHECK_EQ(debug_post_code(&vm), -1);
	pio_out8(&vm, 0x80, 0x42);
	CHECK_EQ(debug_post_code(&vm), 0x42);
	CHECK_EQ(pio_in8(&vm, 0x80), 0x42);
	CHECK_EQ(vm.exit_reason, VM_RUNNING);
	uint8_t v[4] = { 0x07, 0x01, 0, 0 };
	CHECK(bus_access(&vm.pio, DEBUG_EXIT_PORT, v, 4, true));
	CHECK_EQ(vm.exit_reason, VM_POWEROFF);
	CHECK_EQ(vm.exit_status, 7);	/* the low byte */
	pio_out8(&vm, 0x64, 0xfe);	/* the first reason wins */
	CHECK_EQ(vm.exit_reason, VM_POWEROFF);
	fake_vm_free(&vm);

	setup(&vm);
	CHECK_EQ(device_type_create(&vm, &debug_ports_device), 0);
	uint8_t w[2] = { 0x00, 0x20 };
	w[1] = 0x00;
	CHECK(bus_access(&vm.pio, 0x604, w, 2, true));
	CHECK_EQ(vm.exit_reason, VM_RUNNING);	/* no SLP_EN */
	w[1] = 0x20;
	CHECK(bus_access(&vm.pio, 0x604, w, 2, true));
	CHECK_EQ(vm.exit_reason, VM_POWEROFF);
	CHECK_EQ(vm.exit_status, 0);
	fake_vm_free(&vm);
}

TEST_MAIN()
