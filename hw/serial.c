/*
 * 16550A UARTs: ttyS0-3 at the PC's COM1-4 ports. Transmission is instant
 * (THR is always empty again right after a write), input from the host waits
 * in a ring and enters the 16-byte receive FIFO as the guest drains it, so
 * nothing typed is lost to overruns.
 *
 * vCPU threads (register accesses) and the event-loop thread (terminal input)
 * both touch a port: each port has its own mutex.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "device.h"
#include "devices.h"
#include "hw.h"
#include "snapshot.h"
#include "term.h"
#include "util.h"
#include "vm.h"

/* Register offsets. */
enum { UART_RBR = 0, UART_IER = 1, UART_IIR = 2, UART_LCR = 3, UART_MCR = 4, UART_LSR = 5, UART_MSR = 6, UART_SCR = 7 };

#define IER_RDI  0x01	/* received data available */
#define IER_THRI 0x02	/* transmitter holding register empty */
#define IER_RLSI 0x04	/* receiver line status */
#define IER_MSI  0x08	/* modem status */

#define IIR_NO_INT 0x01
#define IIR_MSI    0x00
#define IIR_THRI   0x02
#define IIR_RDI    0x04
#define IIR_RLSI   0x06
#define IIR_CTI    0x0c	/* character timeout: data below the trigger level */
#define IIR_FIFO   0xc0

#define FCR_ENABLE   0x01
#define FCR_CLEAR_RX 0x02

#define LCR_DLAB 0x80

#define MCR_DTR  0x01
#define MCR_RTS  0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10

#define LSR_DR   0x01
#define LSR_OE   0x02
#define LSR_PE   0x04
#define LSR_FE   0x08
#define LSR_BI   0x10
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define LSR_ERRS (LSR_OE | LSR_PE | LSR_FE | LSR_BI)

#define MSR_DCTS 0x01
#define MSR_DDSR 0x02
#define MSR_TERI 0x04
#define MSR_DDCD 0x08
#define MSR_CTS  0x10
#define MSR_DSR  0x20
#define MSR_RI   0x40
#define MSR_DCD  0x80

#define FIFO_SIZE 16
#define INPUT_RING 4096

struct serial_set;

struct uart {
	pthread_mutex_t lock;
	struct serial_set *set;
	int index;
	unsigned irq;

	uint8_t ier, lcr, mcr, scr, dll, dlm;
	uint8_t lsr_errs;	/* latched error bits, cleared by reading LSR */
	uint8_t msr_lines;	/* CTS/DSR/RI/DCD as the guest sees them */
	uint8_t msr_deltas;	/* cleared by reading MSR */
	bool fifo_on;
	unsigned trigger;	/* receive FIFO interrupt level */
	bool thre_pending;	/* THRE interrupt not yet acknowledged */

	uint8_t rx[FIFO_SIZE];
	unsigned rx_head, rx_count;
	uint8_t rbr_last;	/* what RBR reads when the FIFO is empty */

	uint8_t ring[INPUT_RING];	/* host input not yet in the FIFO */
	unsigned ring_head, ring_count;

	serial_out_fn out;
	void *out_ctx;
	int level;		/* this port's interrupt output, atomic */
};

struct serial_set {
	struct vm *vm;
	struct uart port[SERIAL_NR_PORTS];
	pthread_mutex_t irq_lock;	/* orders line changes of ports sharing an IRQ */
	int line[16];			/* level last sent per GSI */
};

static const uint16_t port_base[SERIAL_NR_PORTS] = { 0x3f8, 0x2f8, 0x3e8, 0x2e8 };
static const unsigned port_irq[SERIAL_NR_PORTS] = { IRQ_COM1, IRQ_COM2, IRQ_COM1, IRQ_COM2 };
static const unsigned trigger_levels[4] = { 1, 4, 8, 14 };

static void stdout_sink(void *ctx, const void *buf, size_t len)
{
	term_output(buf, len);
}

static unsigned rx_capacity(struct uart *u)
{
	return u->fifo_on ? FIFO_SIZE : 1;
}

static uint8_t iir_source(struct uart *u)
{
	if ((u->ier & IER_RLSI) && (u->lsr_errs & LSR_ERRS))
		return IIR_RLSI;
	if ((u->ier & IER_RDI) && u->rx_count)
		return u->fifo_on && u->rx_count < u->trigger ? IIR_CTI : IIR_RDI;
	if ((u->ier & IER_THRI) && u->thre_pending)
		return IIR_THRI;
	if ((u->ier & IER_MSI) && (u->msr_deltas & 0x0f))
		return IIR_MSI;
	return IIR_NO_INT;
}

/* Called with u->lock held. OUT2 gates the interrupt onto the ISA bus as on a PC; loopback disconnects it. */
static void update_irq(struct uart *u)
{
	int level = iir_source(u) != IIR_NO_INT && (u->mcr & (MCR_OUT2 | MCR_LOOP)) == MCR_OUT2;
	if (level == __atomic_load_n(&u->level, __ATOMIC_RELAXED))
		return;
	__atomic_store_n(&u->level, level, __ATOMIC_RELAXED);

	struct serial_set *s = u->set;
	pthread_mutex_lock(&s->irq_lock);
	int line = 0;
	for (int i = 0; i < SERIAL_NR_PORTS; i++)
		if (s->port[i].irq == u->irq)
			line |= __atomic_load_n(&s->port[i].level, __ATOMIC_RELAXED);
	if (line != s->line[u->irq]) {
		s->line[u->irq] = line;
		vm_irq_line(s->vm, u->irq, line);
	}
	pthread_mutex_unlock(&s->irq_lock);
}

static void rx_clear(struct uart *u)
{
	u->rx_head = u->rx_count = 0;
}

/* A character arriving at the receiver; an overrun when there is no room. */
static void rx_put(struct uart *u, uint8_t c)
{
	if (u->rx_count == rx_capacity(u)) {
		u->lsr_errs |= LSR_OE;
		if (!u->fifo_on)
			u->rx[u->rx_head] = c;	/* the 8250 overwrites the holding register */
		return;
	}
	u->rx[(u->rx_head + u->rx_count) % FIFO_SIZE] = c;
	u->rx_count++;
}

/* Move host input into the receiver while it has room; in loopback the line is disconnected. */
static void rx_refill(struct uart *u)
{
	if (u->mcr & MCR_LOOP)
		return;
	while (u->ring_count && u->rx_count < rx_capacity(u)) {
		rx_put(u, u->ring[u->ring_head]);
		u->ring_head = (u->ring_head + 1) % INPUT_RING;
		u->ring_count--;
	}
}

static void update_msr(struct uart *u)
{
	uint8_t lines;
	if (u->mcr & MCR_LOOP) {
		lines = (u->mcr & MCR_RTS ? MSR_CTS : 0) | (u->mcr & MCR_DTR ? MSR_DSR : 0) |
			(u->mcr & MCR_OUT1 ? MSR_RI : 0) | (u->mcr & MCR_OUT2 ? MSR_DCD : 0);
	} else {
		lines = MSR_CTS | MSR_DSR | MSR_DCD;	/* a modem that is always there */
	}
	uint8_t changed = lines ^ u->msr_lines;
	if (changed & MSR_CTS)
		u->msr_deltas |= MSR_DCTS;
	if (changed & MSR_DSR)
		u->msr_deltas |= MSR_DDSR;
	if ((changed & MSR_RI) && !(lines & MSR_RI))
		u->msr_deltas |= MSR_TERI;	/* trailing edge only */
	if (changed & MSR_DCD)
		u->msr_deltas |= MSR_DDCD;
	u->msr_lines = lines;
}

static void transmit(struct uart *u, uint8_t c)
{
	if (u->mcr & MCR_LOOP)
		rx_put(u, c);
	else if (u->out)
		u->out(u->out_ctx, &c, 1);
	/* The byte leaves at once: THR is empty again, which is an interrupt of its own. */
	u->thre_pending = true;
}

static uint8_t uart_read(struct uart *u, unsigned reg)
{
	uint8_t v = 0xff;
	switch (reg) {
	case UART_RBR:
		if (u->lcr & LCR_DLAB) {
			v = u->dll;
		} else {
			if (u->rx_count) {
				u->rbr_last = u->rx[u->rx_head];
				u->rx_head = (u->rx_head + 1) % FIFO_SIZE;
				u->rx_count--;
				rx_refill(u);
			}
			v = u->rbr_last;
		}
		break;
	case UART_IER:
		v = u->lcr & LCR_DLAB ? u->dlm : u->ier;
		break;
	case UART_IIR:
		v = iir_source(u);
		/* Reading IIR acknowledges a THRE interrupt it reports. */
		if (v == IIR_THRI)
			u->thre_pending = false;
		if (u->fifo_on)
			v |= IIR_FIFO;
		break;
	case UART_LCR:
		v = u->lcr;
		break;
	case UART_MCR:
		v = u->mcr;
		break;
	case UART_LSR:
		v = LSR_THRE | LSR_TEMT | u->lsr_errs | (u->rx_count ? LSR_DR : 0);
		u->lsr_errs = 0;
		break;
	case UART_MSR:
		v = u->msr_lines | u->msr_deltas;
		u->msr_deltas = 0;
		break;
	case UART_SCR:
		v = u->scr;
		break;
	}
	return v;
}

static void uart_write(struct uart *u, unsigned reg, uint8_t v)
{
	switch (reg) {
	case UART_RBR:
		if (u->lcr & LCR_DLAB)
			u->dll = v;
		else
			transmit(u, v);
		break;
	case UART_IER:
		if (u->lcr & LCR_DLAB) {
			u->dlm = v;
		} else {
			/* Enabling THRI while THR is empty raises THRE at once (Linux probes this). */
			if (!(u->ier & IER_THRI) && (v & IER_THRI))
				u->thre_pending = true;
			u->ier = v & 0x0f;
		}
		break;
	case UART_IIR:	/* FCR */
		if ((bool)(v & FCR_ENABLE) != u->fifo_on)
			rx_clear(u);	/* switching FIFO mode empties the FIFOs */
		u->fifo_on = v & FCR_ENABLE;
		if (u->fifo_on) {
			if (v & FCR_CLEAR_RX)
				rx_clear(u);
			u->trigger = trigger_levels[v >> 6];
		} else {
			u->trigger = 1;
		}
		rx_refill(u);
		break;
	case UART_LCR:
		u->lcr = v;
		break;
	case UART_MCR:
		u->mcr = v & 0x1f;
		update_msr(u);
		rx_refill(u);	/* leaving loopback reconnects the input */
		break;
	case UART_LSR:	/* read-only: writes are for factory test */
	case UART_MSR:
		break;
	case UART_SCR:
		u->scr = v;
		break;
	}
}

/* Wider accesses touch consecutive registers, one byte each, as an 8-bit part would. */
static void port_read(void *ctx, uint64_t off, void *data, int len)
{
	struct uart *u = ctx;
	uint8_t *b = data;
	pthread_mutex_lock(&u->lock);
	for (int i = 0; i < len && off + i < 8; i++)
		b[i] = uart_read(u, off + i);
	update_irq(u);
	pthread_mutex_unlock(&u->lock);
}

static void port_write(void *ctx, uint64_t off, const void *data, int len)
{
	struct uart *u = ctx;
	const uint8_t *b = data;
	pthread_mutex_lock(&u->lock);
	for (int i = 0; i < len && off + i < 8; i++)
		uart_write(u, off + i, b[i]);
	update_irq(u);
	pthread_mutex_unlock(&u->lock);
}

static const struct bus_ops uart_ops = { .read = port_read, .write = port_write };

static void uart_input(struct uart *u, const uint8_t *buf, size_t len)
{
	pthread_mutex_lock(&u->lock);
	size_t room = INPUT_RING - u->ring_count;
	if (len > room) {
		pr_warn_once("serial: ttyS%d input buffer full, dropping input", u->index);
		len = room;
	}
	for (size_t i = 0; i < len; i++) {
		u->ring[(u->ring_head + u->ring_count) % INPUT_RING] = buf[i];
		u->ring_count++;
	}
	rx_refill(u);
	update_irq(u);
	pthread_mutex_unlock(&u->lock);
}

/* The terminal's sink, called on the event-loop thread; tests call it directly. */
void serial_input(void *port, const uint8_t *buf, size_t len)
{
	uart_input(port, buf, len);
}

void *serial_port(struct vm *vm, int idx)
{
	if (idx < 0 || idx >= SERIAL_NR_PORTS) {
		err_set("no serial port %d", idx);
		return NULL;
	}
	struct serial_set *s = device_priv(vm, "serial", 0);
	if (!s) {
		err_set("no serial ports in this VM");
		return NULL;
	}
	return &s->port[idx];
}

void serial_set_output(void *port, serial_out_fn out, void *ctx)
{
	struct uart *u = port;
	pthread_mutex_lock(&u->lock);
	u->out = out;
	u->out_ctx = ctx;
	pthread_mutex_unlock(&u->lock);
}

static void serial_destroy(struct device *d)
{
	struct serial_set *s = d->priv;
	for (int i = 0; i < SERIAL_NR_PORTS; i++) {
		bus_unregister_all(&s->vm->pio, &s->port[i]);
		pthread_mutex_destroy(&s->port[i].lock);
	}
	pthread_mutex_destroy(&s->irq_lock);
	free(s);
}

/* The terminal's input goes to ttyS0 when the serial port is the console. */
static void serial_console_input(struct device *d, const uint8_t *buf, size_t len)
{
	struct serial_set *s = d->priv;
	uart_input(&s->port[0], buf, len);
}

/* Snapshots: registers, both FIFOs and the host input not yet taken, per port. */
static int serial_save(struct device *d, struct snap_writer *w)
{
	struct serial_set *s = d->priv;
	for (int i = 0; i < SERIAL_NR_PORTS; i++) {
		struct uart *u = &s->port[i];
		pthread_mutex_lock(&u->lock);
		const uint8_t regs[] = { u->ier, u->lcr, u->mcr, u->scr, u->dll, u->dlm, u->lsr_errs, u->msr_lines,
					 u->msr_deltas, u->fifo_on, u->trigger, u->thre_pending, u->rbr_last };
		snap_bytes(w, regs, sizeof(regs));
		snap_u8(w, u->rx_count);
		for (unsigned k = 0; k < u->rx_count; k++)
			snap_u8(w, u->rx[(u->rx_head + k) % FIFO_SIZE]);
		snap_u16(w, u->ring_count);
		for (unsigned k = 0; k < u->ring_count; k++)
			snap_u8(w, u->ring[(u->ring_head + k) % INPUT_RING]);
		snap_bool(w, __atomic_load_n(&u->level, __ATOMIC_RELAXED));
		pthread_mutex_unlock(&u->lock);
	}
	return 0;
}

static int serial_load(struct device *d, struct snap_reader *r)
{
	struct serial_set *s = d->priv;
	struct uart in[SERIAL_NR_PORTS];
	memset(in, 0, sizeof(in));
	for (int i = 0; i < SERIAL_NR_PORTS; i++) {
		struct uart *u = &in[i];
		uint8_t regs[13];
		snap_get_bytes(r, regs, sizeof(regs));
		u->ier = regs[0], u->lcr = regs[1], u->mcr = regs[2], u->scr = regs[3], u->dll = regs[4];
		u->dlm = regs[5], u->lsr_errs = regs[6], u->msr_lines = regs[7], u->msr_deltas = regs[8];
		u->fifo_on = regs[9], u->trigger = regs[10], u->thre_pending = regs[11], u->rbr_last = regs[12];
		u->rx_count = snap_get_u8(r);
		if (regs[9] > 1 || regs[11] > 1 || (u->trigger != 1 && u->trigger != 4 && u->trigger != 8 && u->trigger != 14) ||
		    u->ier > 0x0f || u->mcr > 0x1f || u->rx_count > rx_capacity(u))
			return snap_bad(r, "ttyS%d: register values out of range", i);
		for (unsigned k = 0; k < u->rx_count; k++)
			u->rx[k] = snap_get_u8(r);
		u->ring_count = snap_get_u16(r);
		if (u->ring_count > INPUT_RING)
			return snap_bad(r, "ttyS%d: %u bytes of input for a %d-byte buffer", i, u->ring_count, INPUT_RING);
		for (unsigned k = 0; k < u->ring_count; k++)
			u->ring[k] = snap_get_u8(r);
		u->level = snap_get_bool(r);
		if (snap_failed(r))
			return -1;
	}
	for (int i = 0; i < SERIAL_NR_PORTS; i++) {
		struct uart *u = &s->port[i];
		pthread_mutex_lock(&u->lock);
		u->ier = in[i].ier, u->lcr = in[i].lcr, u->mcr = in[i].mcr, u->scr = in[i].scr;
		u->dll = in[i].dll, u->dlm = in[i].dlm, u->lsr_errs = in[i].lsr_errs;
		u->msr_lines = in[i].msr_lines, u->msr_deltas = in[i].msr_deltas, u->fifo_on = in[i].fifo_on;
		u->trigger = in[i].trigger, u->thre_pending = in[i].thre_pending, u->rbr_last = in[i].rbr_last;
		memcpy(u->rx, in[i].rx, sizeof(u->rx));
		u->rx_head = 0, u->rx_count = in[i].rx_count;
		memcpy(u->ring, in[i].ring, sizeof(u->ring));
		u->ring_head = 0, u->ring_count = in[i].ring_count;
		__atomic_store_n(&u->level, in[i].level, __ATOMIC_RELAXED);
		pthread_mutex_unlock(&u->lock);
	}
	/* The lines as the ports drive them; KVM's per-source level of each comes from this. */
	pthread_mutex_lock(&s->irq_lock);
	for (int i = 0; i < SERIAL_NR_PORTS; i++) {
		unsigned irq = s->port[i].irq;
		int line = 0;
		for (int k = 0; k < SERIAL_NR_PORTS; k++)
			if (s->port[k].irq == irq)
				line |= s->port[k].level;
		if (line && !s->line[irq])
			vm_irq_line(s->vm, irq, 1);
		s->line[irq] = line;
	}
	pthread_mutex_unlock(&s->irq_lock);
	return 0;
}

static const struct device_ops serial_ops = {
	.destroy = serial_destroy, .console_input = serial_console_input,
	.save = serial_save, .load = serial_load, .snap_version = 1,
};

static int serial_create(struct vm *vm, void *own)
{
	struct serial_set *s = xcalloc(1, sizeof(*s));
	s->vm = vm;
	pthread_mutex_init(&s->irq_lock, NULL);
	for (int i = 0; i < SERIAL_NR_PORTS; i++) {
		struct uart *u = &s->port[i];
		pthread_mutex_init(&u->lock, NULL);
		u->set = s;
		u->index = i;
		u->irq = port_irq[i];
		u->trigger = 1;
		u->dll = 12;	/* 9600 baud, as firmware leaves it */
		u->lcr = 0x03;	/* 8N1 */
		update_msr(u);
		u->msr_deltas = 0;
	}
	s->port[0].out = stdout_sink;
	device_add(vm, "serial", &serial_ops, s);

	for (int i = 0; i < SERIAL_NR_PORTS; i++) {
		static const char *names[SERIAL_NR_PORTS] = { "ttyS0", "ttyS1", "ttyS2", "ttyS3" };
		if (bus_register(&vm->pio, port_base[i], 8, &uart_ops, &s->port[i], names[i]) < 0)
			return -1;
	}
	return 0;
}

const struct device_type serial_device = { .name = "serial", .create = serial_create };
