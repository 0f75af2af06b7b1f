/*
 * virtio-console (--console virtio): the guest's hvc0. Transmit buffers go to
 * the terminal; terminal input waits in a bounded buffer until the guest posts
 * receive buffers. One port, no multiport.
 */
#include <linux/virtio_ids.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "device.h"
#include "devices.h"
#include "options.h"
#include "snapshot.h"
#include "term.h"
#include "util.h"
#include "virtio.h"
#include "vm.h"

#define RXQ 0
#define TXQ 1
#define PENDING_MAX 65536

struct vcon {
	struct virtio_dev vdev;
	pthread_mutex_t lock;
	uint8_t pending[PENDING_MAX];
	size_t npending;
};

/* Move waiting input into whatever receive buffers the guest has posted. */
static void deliver(struct vcon *c)
{
	struct virtq_chain ch;
	pthread_mutex_lock(&c->lock);
	while (c->npending && virtq_pop(&c->vdev, RXQ, &ch) == 1) {
		size_t n = buf_to_iov(ch.iov + ch.nout, ch.nin, 0, c->pending, c->npending);
		memmove(c->pending, c->pending + n, c->npending - n);
		c->npending -= n;
		virtq_push(&c->vdev, RXQ, ch.head, n);
	}
	pthread_mutex_unlock(&c->lock);
}

static void input(struct device *dev, const uint8_t *buf, size_t len)
{
	struct vcon *c = dev->priv;
	pthread_mutex_lock(&c->lock);
	size_t n = MIN(len, PENDING_MAX - c->npending);	/* beyond the bound, typing is dropped */
	memcpy(c->pending + c->npending, buf, n);
	c->npending += n;
	pthread_mutex_unlock(&c->lock);
	deliver(c);
}

static void con_notify(struct virtio_dev *d, int qi)
{
	struct vcon *c = d->priv;
	if (qi == RXQ) {
		deliver(c);
		return;
	}
	struct virtq_chain ch;
	while (virtq_pop(d, TXQ, &ch) == 1) {
		for (int i = 0; i < ch.nout; i++)
			term_output(ch.iov[i].iov_base, ch.iov[i].iov_len);
		virtq_push(d, TXQ, ch.head, 0);
	}
}

static const struct virtio_ops con_ops = { .notify = con_notify };

static void con_destroy(struct device *dev)
{
	struct vcon *c = dev->priv;
	if (c->vdev.vm)
		virtio_pci_unregister(&c->vdev);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* Snapshots: the transport and the typed input the guest has not taken yet. */
static int con_save(struct device *dev, struct snap_writer *w)
{
	struct vcon *c = dev->priv;
	virtio_pci_save(&c->vdev, w);
	pthread_mutex_lock(&c->lock);
	snap_u32(w, c->npending);
	snap_bytes(w, c->pending, c->npending);
	pthread_mutex_unlock(&c->lock);
	return 0;
}

static int con_load(struct device *dev, struct snap_reader *r)
{
	struct vcon *c = dev->priv;
	if (virtio_pci_load(&c->vdev, r) < 0)
		return -1;
	uint32_t n = snap_get_u32(r);
	if (n > PENDING_MAX)
		return snap_bad(r, "%u bytes of pending input for a %d-byte buffer", n, PENDING_MAX);
	pthread_mutex_lock(&c->lock);
	snap_get_bytes(r, c->pending, n);
	c->npending = snap_failed(r) ? 0 : n;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

static const struct device_ops con_dev_ops = {
	.destroy = con_destroy, .console_input = input, .save = con_save, .load = con_load, .snap_version = 1,
};

struct con_opts {
	bool virtio;
};

static int parse_console(void *own, const char *arg)
{
	struct con_opts *o = own;
	if (!strcmp(arg, "serial"))
		o->virtio = false;
	else if (!strcmp(arg, "virtio"))
		o->virtio = true;
	else
		return err_set("use serial or virtio");
	return 0;
}

static const struct opt con_opts[] = {
	{ "console", 0, "serial|virtio", "guest console on ttyS0 (default) or virtio-console (hvc0)", parse_console },
	{ 0 }
};

static int con_create(struct vm *vm, void *own)
{
	struct con_opts *o = own;
	if (!o->virtio)
		return 0;
	struct vcon *c = xcalloc(1, sizeof(*c));
	pthread_mutex_init(&c->lock, NULL);
	struct virtio_dev *d = &c->vdev;
	d->name = "virtio-console";
	d->device_id = VIRTIO_ID_CONSOLE;
	d->nr_queues = 2;
	d->ops = &con_ops;
	d->priv = c;
	device_add(vm, "virtio-console", &con_dev_ops, c);
	return virtio_pci_register(vm, d);
}

const struct device_type virtio_console_device = {
	.name = "virtio-console", .opts = con_opts, .cfg_size = sizeof(struct con_opts), .create = con_create,
};
