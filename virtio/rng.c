/* virtio-rng (--rng): fills the driver's buffers from the host's getrandom(). */
#include <linux/virtio_ids.h>
#include <stdlib.h>
#include <sys/random.h>
#include "device.h"
#include "devices.h"
#include "options.h"
#include "snapshot.h"
#include "util.h"
#include "virtio.h"
#include "vm.h"

#define RNG_MAX_PER_REQUEST 65536	/* bytes: keeps a kick short on the thread that serves it */

static void rng_notify(struct virtio_dev *d, int qi)
{
	struct virtq_chain c;
	while (virtq_pop(d, qi, &c) == 1) {
		size_t done = 0, want = MIN(c.in_len, (uint64_t)RNG_MAX_PER_REQUEST);
		for (int i = c.nout; i < c.nout + c.nin && done < want; i++) {
			size_t n = MIN(c.iov[i].iov_len, want - done);
			ssize_t r = getrandom(c.iov[i].iov_base, n, GRND_NONBLOCK);
			if (r <= 0)
				break;
			done += r;
			if ((size_t)r < n)
				break;
		}
		virtq_push(d, qi, c.head, done);
	}
}

static const struct virtio_ops rng_ops = { .notify = rng_notify };

static void rng_destroy(struct device *dev)
{
	struct virtio_dev *d = dev->priv;
	virtio_pci_unregister(d);
	free(d);
}

static int rng_save(struct device *dev, struct snap_writer *w) { return virtio_pci_save(dev->priv, w); }
static int rng_load(struct device *dev, struct snap_reader *r) { return virtio_pci_load(dev->priv, r); }

static const struct device_ops rng_dev_ops = {
	.destroy = rng_destroy, .save = rng_save, .load = rng_load, .snap_version = 1,
};

struct rng_opts {
	bool on;
};

static int parse_rng(void *own, const char *arg)
{
	((struct rng_opts *)own)->on = true;
	return 0;
}

static const struct opt rng_opts[] = {
	{ "rng", 0, NULL, "virtio-rng, fed from the host's getrandom()", parse_rng },
	{ 0 }
};

static int rng_create(struct vm *vm, void *own)
{
	if (!((struct rng_opts *)own)->on)
		return 0;
	struct virtio_dev *d = xcalloc(1, sizeof(*d));
	d->name = "virtio-rng";
	d->device_id = VIRTIO_ID_RNG;
	d->nr_queues = 1;
	d->ops = &rng_ops;
	device_add(vm, "virtio-rng", &rng_dev_ops, d);
	return virtio_pci_register(vm, d);
}

const struct device_type virtio_rng_device = {
	.name = "virtio-rng", .opts = rng_opts, .cfg_size = sizeof(struct rng_opts), .create = rng_create,
};
