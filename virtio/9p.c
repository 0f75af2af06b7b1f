/*
 * virtio-9p (--9p HOSTDIR,TAG[,ro]): one request queue; each chain carries a
 * T-message in its readable buffers and room for the R-message in its
 * writable ones. The guest mounts it with `mount -t 9p -o trans=virtio TAG DIR`.
 * The protocol lives in p9_server.c; this file only moves bytes.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include "p9.h"
#include "util.h"
#include "virtio.h"
#include "vm.h"

#define VIRTIO_ID_9P 9
#define VIRTIO_9P_MOUNT_TAG 0	/* feature: the tag is in config space */
#define TAG_MAX 255

struct v9p {
	struct virtio_dev vdev;
	struct p9_server *srv;
	pthread_mutex_t lock;	/* one request at a time through the buffers below */
	uint8_t *req, *resp;	/* P9_MAX_MSIZE each */
	uint8_t config[2 + TAG_MAX];	/* le16 tag length, tag bytes (no NUL) */
};

static void v9p_notify(struct virtio_dev *d, int qi)
{
	struct v9p *v = d->priv;
	struct virtq_chain c;
	pthread_mutex_lock(&v->lock);
	while (virtq_pop(d, qi, &c) == 1) {
		/* A longer message is cut short; the server refuses it by its size field. */
		size_t n = iov_to_buf(c.iov, c.nout, 0, v->req, MIN(c.out_len, (uint64_t)P9_MAX_MSIZE));
		size_t cap = MIN(c.in_len, (uint64_t)P9_MAX_MSIZE);
		size_t len = p9_handle(v->srv, v->req, n, v->resp, cap);
		len = buf_to_iov(c.iov + c.nout, c.nin, 0, v->resp, len);
		virtq_push(d, qi, c.head, len);
	}
	pthread_mutex_unlock(&v->lock);
}

static const struct virtio_ops v9p_ops = { .notify = v9p_notify };

static int v9p_add(struct vm *vm, const struct share_opt *o)
{
	size_t tag_len = o->tag ? strlen(o->tag) : 0;
	if (!tag_len || tag_len > TAG_MAX)
		return err_set("--9p %s: the mount tag must be 1 to %d bytes", o->dir, TAG_MAX);
	struct p9_server *srv = p9_server_new(o->dir, o->ro);
	if (!srv)
		return -1;
	struct v9p *v = xcalloc(1, sizeof(*v));
	v->srv = srv;
	pthread_mutex_init(&v->lock, NULL);
	v->req = xcalloc(1, P9_MAX_MSIZE);
	v->resp = xcalloc(1, P9_MAX_MSIZE);
	put_le16(v->config, tag_len);
	memcpy(v->config + 2, o->tag, tag_len);
	struct virtio_dev *d = &v->vdev;
	d->name = "virtio-9p";
	d->device_id = VIRTIO_ID_9P;
	d->nr_queues = 1;
	d->features = 1ULL << VIRTIO_9P_MOUNT_TAG;
	d->config = v->config;
	d->config_len = 2 + tag_len;
	d->ops = &v9p_ops;
	d->priv = v;
	return virtio_pci_register(vm, d);
}

int virtio_9p_init(struct vm *vm)
{
	for (int i = 0; i < vm->cfg.nr_shares; i++)
		if (v9p_add(vm, &vm->cfg.shares[i]) < 0)
			return -1;
	if (!vm->cfg.nr_shares)
		return 0;
	vm->cfg.needs_files = true;	/* seccomp: the path syscalls the server makes */
	/* Every guest fid holds host descriptors: allow as many as the hard limit. */
	struct rlimit rl;
	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	return 0;
}
