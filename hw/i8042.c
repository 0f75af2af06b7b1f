/*
 * i8042 keyboard controller at 0x60 (data) / 0x64 (status, command), with a
 * minimal AT keyboard behind it (it acknowledges, identifies and resets, but
 * nobody types on it: console input comes through the UART) and an empty aux
 * port (mouse commands time out at once, so psmouse gives up without waiting).
 * The pulse-reset command and port 0x92's fast reset end the VM: we do not reboot.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "bus.h"
#include "hw.h"
#include "snapshot.h"
#include "util.h"
#include "device.h"
#include "devices.h"
#include "vm.h"

#define IRQ_AUX 12

/* Status register. */
#define STR_OBF     0x01
#define STR_IBF     0x02
#define STR_SYS     0x04
#define STR_CMDDAT  0x08	/* last write went to the command port */
#define STR_KEYLOCK 0x10	/* set: keyboard not inhibited */
#define STR_AUXDATA 0x20
#define STR_TIMEOUT 0x40

/* Controller command byte (internal RAM byte 0). */
#define CTR_KBDINT 0x01
#define CTR_AUXINT 0x02
#define CTR_SYS    0x04
#define CTR_KBDDIS 0x10
#define CTR_AUXDIS 0x20
#define CTR_XLATE  0x40

/* Output port bits. */
#define OUT_RESET  0x01	/* low: CPU held in reset */
#define OUT_A20    0x02

#define QUEUE_SIZE 15	/* with the output buffer, the 16 bytes Linux flushes at most */
#define Q_AUX     0x01
#define Q_TIMEOUT 0x02

struct i8042 {
	struct vm *vm;
	pthread_mutex_t lock;
	uint8_t ram[32];	/* ram[0] is the command byte */
	uint8_t status;		/* SYS and CMDDAT; the rest is derived */
	uint8_t pending;	/* command waiting for its data byte, 0 if none */
	uint8_t outport;
	uint8_t port92;

	/* The output buffer and the bytes queued behind it. */
	bool obf;
	uint8_t obf_byte, obf_flags, last_byte;
	uint8_t q[QUEUE_SIZE], qflags[QUEUE_SIZE];
	int qhead, qlen;

	uint8_t kbd_param_for;	/* keyboard command waiting for its parameter */
	int irq_kbd, irq_aux;	/* line levels last sent */
};

static void push(struct i8042 *k, uint8_t v, uint8_t flags)
{
	if (k->qlen == QUEUE_SIZE) {
		pr_warn_once("i8042: output queue full, byte dropped");
		return;
	}
	int i = (k->qhead + k->qlen++) % QUEUE_SIZE;
	k->q[i] = v;
	k->qflags[i] = flags;
}

static void load_obf(struct i8042 *k)
{
	if (k->obf || !k->qlen)
		return;
	k->obf = true;
	k->obf_byte = k->q[k->qhead];
	k->obf_flags = k->qflags[k->qhead];
	k->qhead = (k->qhead + 1) % QUEUE_SIZE;
	k->qlen--;
}

/* IRQ 1 / 12 follow a full output buffer of their kind while its interrupt is enabled. */
static void update_irq(struct i8042 *k)
{
	uint8_t ctr = k->ram[0];
	int kbd = k->obf && !(k->obf_flags & Q_AUX) && (ctr & CTR_KBDINT);
	int aux = k->obf && (k->obf_flags & Q_AUX) && (ctr & CTR_AUXINT);
	if (kbd != k->irq_kbd) {
		k->irq_kbd = kbd;
		vm_irq_line(k->vm, IRQ_KBD, kbd);
	}
	if (aux != k->irq_aux) {
		k->irq_aux = aux;
		vm_irq_line(k->vm, IRQ_AUX, aux);
	}
}

static void reset_vm(struct i8042 *k)
{
	vm_request_exit(k->vm, VM_RESET, 0);
}

/* A byte for the keyboard: answer as an MF2 keyboard would. */
static void kbd_write(struct i8042 *k, uint8_t v)
{
	if (k->kbd_param_for && v < 0xed) {
		uint8_t cmd = k->kbd_param_for;
		k->kbd_param_for = 0;
		push(k, 0xfa, 0);
		if (cmd == 0xf0 && v == 0)
			push(k, 0x02, 0);	/* current scan code set */
		return;
	}
	k->kbd_param_for = 0;
	switch (v) {
	case 0xed:	/* LEDs */
	case 0xf0:	/* scan code set */
	case 0xf3:	/* typematic rate */
		push(k, 0xfa, 0);
		k->kbd_param_for = v;
		break;
	case 0xee:	/* echo */
		push(k, 0xee, 0);
		break;
	case 0xf2:	/* identify: MF2, as translated when the controller translates */
		push(k, 0xfa, 0);
		push(k, 0xab, 0);
		push(k, k->ram[0] & CTR_XLATE ? 0x41 : 0x83, 0);
		break;
	case 0xff:	/* reset: acknowledge, then self-test passed */
		push(k, 0xfa, 0);
		push(k, 0xaa, 0);
		break;
	default:
		if (v >= 0xf4)
			push(k, 0xfa, 0);	/* enable, disable, defaults, set-all-keys, resend */
		else
			push(k, 0xfe, 0);	/* not a command: ask for a resend */
		break;
	}
}

static void controller_cmd(struct i8042 *k, uint8_t c)
{
	k->pending = 0;
	if (c >= 0x20 && c < 0x40) {
		push(k, k->ram[c & 0x1f], 0);
		return;
	}
	if (c >= 0x60 && c < 0x80) {
		k->pending = c;
		return;
	}
	switch (c) {
	case 0xa4: push(k, 0xf1, 0); break;	/* no password installed */
	case 0xa7: k->ram[0] |= CTR_AUXDIS; break;
	case 0xa8: k->ram[0] &= ~CTR_AUXDIS; break;
	case 0xa9: push(k, 0x00, 0); break;	/* aux interface test passed */
	case 0xaa:	/* controller self-test */
		push(k, 0x55, 0);
		k->status |= STR_SYS;
		break;
	case 0xab: push(k, 0x00, 0); break;	/* keyboard interface test passed */
	case 0xad: k->ram[0] |= CTR_KBDDIS; break;
	case 0xae: k->ram[0] &= ~CTR_KBDDIS; break;
	case 0xc0: push(k, 0x80, 0); break;	/* input port: keyboard not inhibited */
	case 0xd0:
		push(k, (k->outport & 0xcf) | (k->obf && !(k->obf_flags & Q_AUX) ? 0x10 : 0) |
			(k->obf && (k->obf_flags & Q_AUX) ? 0x20 : 0), 0);
		break;
	case 0xd1: case 0xd2: case 0xd3: case 0xd4:
		k->pending = c;
		break;
	case 0xe0: push(k, 0x00, 0); break;	/* test inputs */
	default:
		/* 0xf0-0xff pulse the output port bits whose mask bit is clear: bit 0 is reset. */
		if (c >= 0xf0 && !(c & 1))
			reset_vm(k);
		break;
	}
}

static void data_write(struct i8042 *k, uint8_t v)
{
	uint8_t c = k->pending;
	k->pending = 0;
	if (c >= 0x60 && c < 0x80) {
		k->ram[c & 0x1f] = v;
		if (c == 0x60)
			k->status = (k->status & ~STR_SYS) | (v & CTR_SYS ? STR_SYS : 0);
		return;
	}
	switch (c) {
	case 0xd1:
		k->outport = v;
		if (!(v & OUT_RESET))
			reset_vm(k);
		break;
	case 0xd2: push(k, v, 0); break;		/* as if from the keyboard */
	case 0xd3: push(k, v, Q_AUX); break;		/* as if from the aux device */
	case 0xd4: push(k, 0xfe, Q_AUX | Q_TIMEOUT); break;	/* no mouse answers */
	default: kbd_write(k, v); break;
	}
}

static uint8_t status_reg(struct i8042 *k)
{
	uint8_t v = k->status | STR_KEYLOCK;
	if (k->obf) {
		v |= STR_OBF;
		if (k->obf_flags & Q_AUX)
			v |= STR_AUXDATA;
		if (k->obf_flags & Q_TIMEOUT)
			v |= STR_TIMEOUT;
	}
	return v;
}

static void data_read(void *ctx, uint64_t off, void *data, int len)
{
	struct i8042 *k = ctx;
	pthread_mutex_lock(&k->lock);
	if (k->obf) {
		k->last_byte = k->obf_byte;
		k->obf = false;
	}
	/* Drop the line before the next byte raises it again: an edge per byte. */
	update_irq(k);
	load_obf(k);
	update_irq(k);
	uint8_t v = k->last_byte;
	pthread_mutex_unlock(&k->lock);
	u64_to_bytes(data, len, v);
}

static void data_write_op(void *ctx, uint64_t off, const void *data, int len)
{
	struct i8042 *k = ctx;
	pthread_mutex_lock(&k->lock);
	k->status &= ~STR_CMDDAT;
	data_write(k, *(const uint8_t *)data);
	load_obf(k);
	update_irq(k);
	pthread_mutex_unlock(&k->lock);
}

static void cmd_read(void *ctx, uint64_t off, void *data, int len)
{
	struct i8042 *k = ctx;
	pthread_mutex_lock(&k->lock);
	uint8_t v = status_reg(k);
	pthread_mutex_unlock(&k->lock);
	u64_to_bytes(data, len, v);
}

static void cmd_write(void *ctx, uint64_t off, const void *data, int len)
{
	struct i8042 *k = ctx;
	pthread_mutex_lock(&k->lock);
	k->status |= STR_CMDDAT;
	controller_cmd(k, *(const uint8_t *)data);
	load_obf(k);
	update_irq(k);	/* the command byte may have changed the enables */
	pthread_mutex_unlock(&k->lock);
}

/* Port 0x92, system control port A: bit 0 is the fast reset, bit 1 the A20 gate. */
static void port92_read(void *ctx, uint64_t off, void *data, int len)
{
	struct i8042 *k = ctx;
	u64_to_bytes(data, len, __atomic_load_n(&k->port92, __ATOMIC_RELAXED));
}

static void port92_write(void *ctx, uint64_t off, const void *data, int len)
{
	struct i8042 *k = ctx;
	uint8_t v = *(const uint8_t *)data;
	__atomic_store_n(&k->port92, v & ~1, __ATOMIC_RELAXED);
	if (v & 1)
		reset_vm(k);
}

static const struct bus_ops data_ops = { .read = data_read, .write = data_write_op };
static const struct bus_ops cmd_ops = { .read = cmd_read, .write = cmd_write };
static const struct bus_ops port92_ops = { .read = port92_read, .write = port92_write };

static void i8042_destroy(struct device *d)
{
	struct i8042 *k = d->priv;
	bus_unregister_all(&k->vm->pio, k);
	pthread_mutex_destroy(&k->lock);
	free(k);
}

static int i8042_save(struct device *d, struct snap_writer *w)
{
	struct i8042 *k = d->priv;
	pthread_mutex_lock(&k->lock);
	snap_bytes(w, k->ram, sizeof(k->ram));
	const uint8_t regs[] = { k->status, k->pending, k->outport, __atomic_load_n(&k->port92, __ATOMIC_RELAXED),
				 k->obf, k->obf_byte, k->obf_flags, k->last_byte, k->kbd_param_for,
				 (uint8_t)k->irq_kbd, (uint8_t)k->irq_aux };
	snap_bytes(w, regs, sizeof(regs));
	snap_u8(w, k->qlen);
	for (int i = 0; i < k->qlen; i++) {
		snap_u8(w, k->q[(k->qhead + i) % QUEUE_SIZE]);
		snap_u8(w, k->qflags[(k->qhead + i) % QUEUE_SIZE]);
	}
	pthread_mutex_unlock(&k->lock);
	return 0;
}

static int i8042_load(struct device *d, struct snap_reader *r)
{
	struct i8042 *k = d->priv;
	uint8_t ram[32], regs[11], q[QUEUE_SIZE], qflags[QUEUE_SIZE];
	snap_get_bytes(r, ram, sizeof(ram));
	snap_get_bytes(r, regs, sizeof(regs));
	int qlen = snap_get_u8(r);
	if (qlen > QUEUE_SIZE || regs[4] > 1 || regs[9] > 1 || regs[10] > 1)
		return snap_bad(r, "output queue of %d bytes or flags out of range", qlen);
	for (int i = 0; i < qlen; i++) {
		q[i] = snap_get_u8(r);
		qflags[i] = snap_get_u8(r);
	}
	if (snap_failed(r))
		return -1;
	pthread_mutex_lock(&k->lock);
	memcpy(k->ram, ram, sizeof(ram));
	k->status = regs[0], k->pending = regs[1], k->outport = regs[2];
	__atomic_store_n(&k->port92, regs[3], __ATOMIC_RELAXED);
	k->obf = regs[4], k->obf_byte = regs[5], k->obf_flags = regs[6], k->last_byte = regs[7];
	k->kbd_param_for = regs[8];
	k->irq_kbd = regs[9], k->irq_aux = regs[10];
	memcpy(k->q, q, qlen);
	memcpy(k->qflags, qflags, qlen);
	k->qhead = 0;
	k->qlen = qlen;
	/* KVM's per-source line levels come from the device. */
	if (k->irq_kbd)
		vm_irq_line(k->vm, IRQ_KBD, 1);
	if (k->irq_aux)
		vm_irq_line(k->vm, IRQ_AUX, 1);
	pthread_mutex_unlock(&k->lock);
	return 0;
}

static const struct device_ops i8042_ops = {
	.destroy = i8042_destroy, .save = i8042_save, .load = i8042_load, .snap_version = 1,
};

static int i8042_create(struct vm *vm, void *own)
{
	struct i8042 *k = xcalloc(1, sizeof(*k));
	k->vm = vm;
	pthread_mutex_init(&k->lock, NULL);
	/* As firmware leaves it: keyboard interrupt on, translation on, aux off. */
	k->ram[0] = CTR_KBDINT | CTR_SYS | CTR_AUXDIS | CTR_XLATE;
	k->status = STR_SYS;
	k->outport = OUT_RESET | OUT_A20;
	k->port92 = OUT_A20;
	device_add(vm, "i8042", &i8042_ops, k);
	if (bus_register(&vm->pio, 0x60, 1, &data_ops, k, "i8042-data") < 0 ||
	    bus_register(&vm->pio, 0x64, 1, &cmd_ops, k, "i8042-cmd") < 0 ||
	    bus_register(&vm->pio, 0x92, 1, &port92_ops, k, "port92") < 0)
		return -1;
	return 0;
}

const struct device_type i8042_device = { .name = "i8042", .create = i8042_create };
