/*
 * virtio-9p (--9p HOSTDIR,TAG[,ro]): one request queue; each chain carries a
 * T-message in its readable buffers and room for the R-message in its
 * writable ones. The guest mounts it with `mount -t 9p -o trans=virtio TAG DIR`.
 * The protocol lives in p9_server.c; this file only moves bytes.
 */
#include <linux/virtio_ids.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include "device.h"
#include "devices.h"
#include "options.h"
#include "p9.h"
#include "snapshot.h"
#include "util.h"
#include "virtio.h"
#include "vm.h"

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

static void v9p_destroy(struct device *dev)
{
	struct v9p *v = dev->priv;
	if (v->vdev.vm)
		virtio_pci_unregister(&v->vdev);
	p9_server_free(v->srv);
	pthread_mutex_destroy(&v->lock);
	free(v->req);
	free(v->resp);
	free(v);
}

/* Snapshots: the transport, the mount tag (the guest mounted that one), and the server's fids. */
static int v9p_save(struct device *dev, struct snap_writer *w)
{
	struct v9p *v = dev->priv;
	virtio_pci_save(&v->vdev, w);
	snap_u16(w, v->vdev.config_len);
	snap_bytes(w, v->config, v->vdev.config_len);
	return p9_server_save(v->srv, w);
}

static int v9p_load(struct device *dev, struct snap_reader *r)
{
	struct v9p *v = dev->priv;
	if (virtio_pci_load(&v->vdev, r) < 0)
		return -1;
	uint8_t config[sizeof(v->config)];
	uint16_t n = snap_get_u16(r);
	if (n > sizeof(config))
		return snap_bad(r, "mount tag of %u bytes", n);
	snap_get_bytes(r, config, n);
	if (snap_failed(r))
		return -1;
	if (n != v->vdev.config_len || memcmp(config, v->config, n))
		return snap_bad(r, "9p share %d had the tag '%.*s', this one has '%.*s' (the guest mounted the old one)",
				dev->index, n > 2 ? n - 2 : 0, (const char *)config + 2, (int)v->vdev.config_len - 2,
				(const char *)v->config + 2);
	return p9_server_load(v->srv, r);
}

static const struct device_ops v9p_dev_ops = {
	.destroy = v9p_destroy, .save = v9p_save, .load = v9p_load, .snap_version = 1,
};

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
	device_add(vm, "virtio-9p", &v9p_dev_ops, v);
	return virtio_pci_register(vm, d);
}

/* ---- options: --9p HOSTDIR,TAG[,ro], repeatable ---- */

static int parse_share(void *own, const char *arg)
{
	struct p9_opts *all = own;
	if (all->n == P9_MAX_SHARES)
		return err_set("too many shares (at most %d)", P9_MAX_SHARES);
	struct share_opt *sh = &all->share[all->n];
	char *copy = opt_strdup(arg), *save, *dir = strtok_r(copy, ",", &save), *tag = strtok_r(NULL, ",", &save), *tok;
	if (!dir || !tag || !*tag)
		return err_set("needs HOSTDIR,TAG[,ro]: '%s'", arg);
	if (strlen(tag) > TAG_MAX)
		return err_set("the tag is longer than %d bytes: '%s'", TAG_MAX, tag);
	struct stat st;
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return err_set("%s: not a directory", dir);
	memset(sh, 0, sizeof(*sh));
	sh->dir = dir;
	sh->tag = tag;
	while ((tok = strtok_r(NULL, ",", &save))) {
		if (strcmp(tok, "ro"))
			return err_set("unknown option '%s' (ro)", tok);
		sh->ro = true;
	}
	all->n++;
	return 0;
}

static const struct opt v9p_opts[] = {
	{ "9p", 0, "HOSTDIR,TAG[,ro]", "share a host folder (virtio-9p, 9P2000.L), repeatable", parse_share,
	  OPT_COMPLETE_FILE },
	{ 0 }
};

static int v9p_create(struct vm *vm, void *own)
{
	struct p9_opts *all = own;
	for (int i = 0; i < all->n; i++)
		if (v9p_add(vm, &all->share[i]) < 0)
			return -1;
	if (!all->n)
		return 0;
	vm->needs_files = true;	/* seccomp: the path syscalls the server makes */
	/* Every guest fid holds host descriptors: allow as many as the hard limit. */
	struct rlimit rl;
	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	return 0;
}

const struct device_type virtio_9p_device = {
	.name = "virtio-9p", .opts = v9p_opts, .cfg_size = sizeof(struct p9_opts), .create = v9p_create,
};
