/* virtio-rng (--rng): fills the driver's buffers from the host's getrandom(). */
#include <sys/random.h>
#include "util.h"
#include "virtio.h"
#include "vm.h"

#define RNG_MAX_PER_REQUEST 65536	/* bytes: keeps a kick short on the vCPU thread */

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

int virtio_rng_init(struct vm *vm)
{
	if (!vm->cfg.rng)
		return 0;
	struct virtio_dev *d = xcalloc(1, sizeof(*d));
	d->name = "virtio-rng";
	d->device_id = 4;
	d->nr_queues = 1;
	d->ops = &rng_ops;
	return virtio_pci_register(vm, d);
}
