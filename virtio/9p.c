/*
 * virtio-9p (--9p HOSTDIR,TAG[,...]): one request queue; each chain carries a
 * T-message in its readable buffers and room for the R-message in its
 * writable ones. The guest mounts it with `mount -t 9p -o trans=virtio TAG DIR`.
 * The protocol lives in p9/; this file only moves bytes.
 *
 * Requests are served by a few worker threads of the device's own, never on
 * the thread that kicked (the event loop, which also fires the PIT and RTC
 * timers, or a vCPU): a kick wakes one worker, and a worker that takes a
 * chain while more are waiting wakes another before serving it, so a
 * guest's parallel requests (a build opening many files) are in flight
 * together even when one kick announces several. A worker done with its
 * request watches the ring a little while before it sleeps (poll_ring()).
 */
#include <dirent.h>
#include <errno.h>
#include <linux/virtio_ids.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <limits.h>
#include <sys/stat.h>
#include "device.h"
#include "devices.h"
#include "json.h"
#include "options.h"
#include "p9.h"
#include "snapshot.h"
#include "util.h"
#include "virtio.h"
#include "vm.h"

#define VIRTIO_9P_MOUNT_TAG 0	/* feature: the tag is in config space */
#define TAG_MAX 255
#define V9P_WORKERS 4		/* requests in flight per device */
#define FD_RESERVE 256		/* descriptors kept for the rest of lkvm */
#define FD_PER_REQUEST 8	/* descriptors one request may hold for a moment */
#define MIN_FIDS 64		/* fewer would not run a guest: refuse instead */
#define V9P_POLL_NS 32768	/* the longest one worker watches an empty ring (QEMU's IOThread poll-max-ns) */
#define V9P_POLL_START 4096	/* the first watch after none */

struct v9p;

struct v9p_worker {
	struct v9p *v;
	pthread_t thread;
	uint8_t *req, *resp;	/* P9_MAX_MSIZE each */
};

struct v9p {
	struct virtio_dev vdev;
	struct p9_server *srv;
	pthread_mutex_t lock;	/* kicks, stopping */
	pthread_cond_t wake;
	uint64_t kicks;		/* bumped by every reason to look at the queue */
	bool stopping;
	bool polling;		/* a worker watches the ring: a kick need not wake one */
	uint32_t watch_ns;	/* how long the next watch lasts (atomic; poll_ring()) */
	uint64_t empty_at;	/* under lock: when the last watch began that found nothing, 0: none since */
	uint64_t requests, watch_hits, wakeups;	/* atomic; lkvm stat */
	int nworkers;		/* running */
	struct v9p_worker w[V9P_WORKERS];
	uint8_t config[2 + TAG_MAX];	/* le16 tag length, tag bytes (no NUL) */
};

static void wake_one(struct v9p *v)
{
	pthread_mutex_lock(&v->lock);
	v->kicks++;
	pthread_cond_signal(&v->wake);
	pthread_mutex_unlock(&v->lock);
}

/* Twrite's fields before its data: size[4] type[1] tag[2] fid[4] offset[8] count[4]. */
#define TWRITE_FIELDS 23
/* Rread's before its data: size[4] type[1] tag[2] count[4]. */
#define RREAD_FIELDS 11

/*
 * Reads and writes move their data straight between the file and the
 * chain's buffers in guest memory (preadv/pwritev on them): only the
 * message's fields pass through the worker's buffers.
 */
static void serve(struct v9p_worker *me, struct virtq_chain *c)
{
	struct iovec *in = c->iov + c->nout;
	size_t cap = MIN(c->in_len, (uint64_t)P9_MAX_MSIZE);
	uint8_t hdr[TWRITE_FIELDS];
	size_t n = iov_to_buf(c->iov, c->nout, 0, hdr, sizeof(hdr));
	struct iovec xv[VIRTQ_MAX_SEGS];
	int nxv = 0;
	size_t got;
	if (n == TWRITE_FIELDS && hdr[4] == P9_TWRITE && get_le32(hdr) == TWRITE_FIELDS + (uint64_t)get_le32(hdr + 19) &&
	    get_le32(hdr) <= c->out_len) {
		memcpy(me->req, hdr, n);
		nxv = iov_sub(c->iov, c->nout, n, get_le32(hdr + 19), xv, VIRTQ_MAX_SEGS, &got);
	} else {
		/* A longer message is cut short; the server refuses it by its size field. */
		n = iov_to_buf(c->iov, c->nout, 0, me->req, MIN(c->out_len, (uint64_t)P9_MAX_MSIZE));
	}
	struct iovec rv[VIRTQ_MAX_SEGS];
	int nrv = 0;
	if (n >= 5 && me->req[4] == P9_TREAD && cap > RREAD_FIELDS)
		nrv = iov_sub(in, c->nin, RREAD_FIELDS, cap - RREAD_FIELDS, rv, VIRTQ_MAX_SEGS, &got);
	size_t inresp;
	size_t len = p9_handle_iov(me->v->srv, me->req, n, nxv ? xv : NULL, nxv, me->resp, cap, nrv ? rv : NULL, nrv,
				   &inresp);
	size_t put = buf_to_iov(in, c->nin, 0, me->resp, inresp);
	virtq_push(&me->v->vdev, 0, c->head, put < inresp ? put : len);
}

/*
 * A guest reading or writing a file sends its next request right after the
 * last one's interrupt; a worker asleep by then costs a wake-up on the
 * kicking side and one on its own, more than a 128 KiB read from the page
 * cache (bench/README.md). So one worker at a time watches the ring before
 * it sleeps, and kicks meanwhile wake nobody. How long adapts as QEMU's
 * IOThread polling does: a request that came after the watch but within
 * V9P_POLL_NS doubles it (up to V9P_POLL_NS), one that came later ends
 * watching (0) until requests come close together again (v9p_notify()), so
 * a guest whose requests are far apart costs no spinning. While it watches,
 * the driver is asked not to kick (a guest's kick is a VM exit and a wake-up
 * of lkvm's event loop). Returns -1 when
 * another worker is watching; else whether a request came, and the caller
 * holds v->polling until it has popped (watch_done()).
 */
static int poll_ring(struct v9p *v, uint64_t *began)
{
	if (__atomic_exchange_n(&v->polling, true, __ATOMIC_ACQUIRE))
		return -1;
	uint32_t ns = __atomic_load_n(&v->watch_ns, __ATOMIC_RELAXED);
	uint64_t end = (*began = mono_ns()) + ns;
	bool hit;
	if (ns)
		virtq_want_kicks(&v->vdev, 0, false);	/* no VM exit per request while watched */
	while (!(hit = virtq_has_avail(&v->vdev, 0)) && !__atomic_load_n(&v->stopping, __ATOMIC_RELAXED) &&
	       mono_ns() < end)
		for (int i = 0; i < 4; i++)	/* ~100 ns between looks: a request waits less */
			__builtin_ia32_pause();	/* than with 32 (0.35 us against 0.6), the lock still rests */
	if (ns) {
		virtq_want_kicks(&v->vdev, 0, true);
		hit = hit || virtq_has_avail(&v->vdev, 0);	/* added as the watch ended, without a kick */
	}
	if (hit)
		__atomic_add_fetch(&v->watch_hits, 1, __ATOMIC_RELAXED);
	return hit;
}

/* Under v->lock: kicks from here on wake a worker again (v9p_notify reads it under the lock). */
static void watch_done(struct v9p *v)
{
	__atomic_store_n(&v->polling, false, __ATOMIC_RELEASE);
}

static void *v9p_worker(void *arg)
{
	struct v9p_worker *me = arg;
	struct v9p *v = me->v;
	pthread_setname_np(pthread_self(), "lkvm-9p");
	struct virtq_chain c;
	bool watching = false;	/* this worker holds v->polling */
	pthread_mutex_lock(&v->lock);
	while (!v->stopping) {
		uint64_t seen = v->kicks;
		pthread_mutex_unlock(&v->lock);
		int got = virtq_pop(&v->vdev, 0, &c);
		if (watching) {
			pthread_mutex_lock(&v->lock);
			watch_done(v);
			pthread_mutex_unlock(&v->lock);
			watching = false;
		}
		if (got == 1) {
			__atomic_add_fetch(&v->requests, 1, __ATOMIC_RELAXED);
			if (virtq_has_avail(&v->vdev, 0))
				wake_one(v);	/* more waiting: another worker takes it while this one serves */
			serve(me, &c);
			pthread_mutex_lock(&v->lock);
			continue;
		}
		uint64_t began;
		int polled = poll_ring(v, &began);
		watching = polled == 1;
		pthread_mutex_lock(&v->lock);
		if (polled == 0) {
			watch_done(v);
			v->empty_at = began;	/* the next kick that must wake a worker sizes the next watch */
		}
		if (polled == 1)
			continue;
		/* A kick that came while this worker (or another) watched bumped kicks: no sleep then. */
		while (!v->stopping && v->kicks == seen)
			pthread_cond_wait(&v->wake, &v->lock);
	}
	if (watching)
		watch_done(v);
	pthread_mutex_unlock(&v->lock);
	return NULL;
}

/*
 * A kick wakes a worker only when a request waits that no worker has: none
 * is watching the ring, and none has already taken what this kick announces.
 * Such a kick also sizes the next watch (poll_ring()).
 */
static void v9p_notify(struct virtio_dev *d, int qi)
{
	struct v9p *v = d->priv;
	pthread_mutex_lock(&v->lock);
	v->kicks++;
	if (!__atomic_load_n(&v->polling, __ATOMIC_ACQUIRE) && virtq_has_avail(d, 0)) {
		if (v->empty_at) {
			uint32_t ns = __atomic_load_n(&v->watch_ns, __ATOMIC_RELAXED);
			ns = mono_ns() - v->empty_at > V9P_POLL_NS ? 0 : !ns ? V9P_POLL_START : MIN(2 * ns, (uint32_t)V9P_POLL_NS);
			__atomic_store_n(&v->watch_ns, ns, __ATOMIC_RELAXED);
			v->empty_at = 0;
		}
		__atomic_add_fetch(&v->wakeups, 1, __ATOMIC_RELAXED);
		pthread_cond_signal(&v->wake);
	}
	pthread_mutex_unlock(&v->lock);
}

/* lkvm stat: requests served, how many a watching worker found, how many needed a wake-up, the watch now. */
static void v9p_stat_members(struct device *dev, struct json_writer *j)
{
	struct v9p *v = dev->priv;
	char key[64];
	static const char *const names[3] = { "requests", "watch_hits", "wakeups" };
	const uint64_t *f[3] = { &v->requests, &v->watch_hits, &v->wakeups };
	for (int k = 0; k < 3; k++) {
		snprintf(key, sizeof(key), "9p%d_%s", dev->index, names[k]);
		json_u64(j, key, __atomic_load_n(f[k], __ATOMIC_RELAXED));
	}
	snprintf(key, sizeof(key), "9p%d_watch_ns", dev->index);
	json_u64(j, key, __atomic_load_n(&v->watch_ns, __ATOMIC_RELAXED));
}

static const struct virtio_ops v9p_ops = { .notify = v9p_notify };

/* ---- the lifecycle ---- */

static int v9p_start(struct device *dev)
{
	struct v9p *v = dev->priv;
	v->stopping = false;
	int e = 0;
	for (; v->nworkers < V9P_WORKERS; v->nworkers++) {
		struct v9p_worker *w = &v->w[v->nworkers];
		w->v = v;
		if (!w->req)
			w->req = xcalloc(1, P9_MAX_MSIZE);
		if (!w->resp)
			w->resp = xcalloc(1, P9_MAX_MSIZE);
		if ((e = thread_start(&w->thread, v9p_worker, w)))
			break;
	}
	if (e && !v->nworkers)
		return err_set("virtio-9p: cannot start its worker threads: %s", strerror(e));
	return 0;	/* fewer workers than planned still serve */
}

/* Workers finish the request in hand and end; the queue is left as it is. */
static void v9p_stop(struct device *dev)
{
	struct v9p *v = dev->priv;
	pthread_mutex_lock(&v->lock);
	__atomic_store_n(&v->stopping, true, __ATOMIC_RELAXED);
	pthread_cond_broadcast(&v->wake);
	pthread_mutex_unlock(&v->lock);
	for (int i = 0; i < v->nworkers; i++)
		pthread_join(v->w[i].thread, NULL);
	v->nworkers = 0;
}

static void v9p_destroy(struct device *dev)
{
	struct v9p *v = dev->priv;
	if (v->nworkers)
		v9p_stop(dev);
	if (v->vdev.vm)
		virtio_pci_unregister(&v->vdev);
	for (int i = 0; i < V9P_WORKERS; i++) {
		free(v->w[i].req);
		free(v->w[i].resp);
	}
	p9_server_free(v->srv);
	pthread_cond_destroy(&v->wake);
	pthread_mutex_destroy(&v->lock);
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
	.start = v9p_start, .stop = v9p_stop, .destroy = v9p_destroy, .save = v9p_save, .load = v9p_load, .snap_version = 1,
	.stats = v9p_stat_members,
};

static int v9p_add(struct vm *vm, const struct share_opt *o, unsigned max_fids)
{
	size_t tag_len = o->tag ? strlen(o->tag) : 0;
	if (!tag_len || tag_len > TAG_MAX)
		return err_set("--9p %s: the mount tag must be 1 to %d bytes", o->dir, TAG_MAX);
	struct p9_server_opts so = { .ro = o->ro, .model = o->mapped ? P9_MAPPED : P9_PASSTHROUGH, .xdev = o->xdev, .view = o->view,
				     .max_fids = max_fids, .has_root_fd = o->has_fd, .root_fd = o->fd };
	struct p9_server *srv = p9_server_new(o->dir, &so);
	if (!srv)
		return -1;
	struct v9p *v = xcalloc(1, sizeof(*v));
	v->srv = srv;
	pthread_mutex_init(&v->lock, NULL);
	pthread_cond_init(&v->wake, NULL);
	v->watch_ns = V9P_POLL_NS;
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

/* ---- options: --9p HOSTDIR,TAG[,ro][,security_model=passthrough|mapped][,xdev], repeatable ---- */

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
	if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return err_set("%s: not a directory (a symlink is not followed)", dir);
	memset(sh, 0, sizeof(*sh));
	sh->dir = dir;
	sh->tag = tag;
	while ((tok = strtok_r(NULL, ",", &save))) {
		if (!strcmp(tok, "ro"))
			sh->ro = true;
		else if (!strcmp(tok, "xdev"))
			sh->xdev = true;
		else if (!strcmp(tok, "security_model=mapped"))
			sh->mapped = true;
		else if (!strcmp(tok, "security_model=passthrough"))
			sh->mapped = false;
		else if (!strncmp(tok, "view=", 5)) {
			p9_view_free(sh->view);
			if (!(sh->view = p9_view_load(tok + 5)))
				return -1;
		} else if (!strncmp(tok, "fd=", 3)) {
			char *end;
			long fd = strtol(tok + 3, &end, 10);
			struct stat fst;
			if (*end || end == tok + 3 || fd < 0 || fd > INT_MAX || fstat(fd, &fst) < 0 || !S_ISDIR(fst.st_mode))
				return err_set("%s: fd=%s: not an open descriptor of a folder", dir, tok + 3);
			sh->fd = fd;
			sh->has_fd = true;
		} else
			return err_set("unknown option '%s' (ro, xdev, view=FILE, fd=N, security_model=passthrough|mapped)", tok);
	}
	if (sh->view && !sh->ro)
		return err_set("%s: view=FILE needs ro", dir);
	all->n++;
	return 0;
}

static const struct opt v9p_opts[] = {
	{ "9p", 0, "HOSTDIR,TAG[,ro][,security_model=passthrough|mapped][,xdev][,view=FILE][,fd=N]",
	  "share a host folder (virtio-9p, 9P2000.L), repeatable", parse_share, OPT_COMPLETE_FILE },
	{ 0 }
};

/* Descriptors this process has open now. */
static unsigned fds_in_use(void)
{
	DIR *d = opendir("/proc/self/fd");
	unsigned n = 0;
	for (struct dirent *e; d && (e = readdir(d));)
		n += e->d_name[0] != '.';
	if (d)
		closedir(d);
	return d ? n : 64;	/* without /proc: a guess that errs high */
}

/*
 * Every share's fids hold descriptors: raise RLIMIT_NOFILE as far as the
 * shares' caps need (no further), and where the hard limit is lower, give
 * each share fewer fids so that FD_RESERVE descriptors always stay free for
 * the rest of lkvm. The cap per share in *max_fids.
 */
static int budget_descriptors(int nr_shares, unsigned *max_fids)
{
	struct rlimit rl;
	unsigned per_share = P9_DEFAULT_MAX_FIDS * P9_FID_DESCRIPTORS + V9P_WORKERS * FD_PER_REQUEST;
	*max_fids = P9_DEFAULT_MAX_FIDS;
	if (getrlimit(RLIMIT_NOFILE, &rl))
		return 0;
	unsigned used = fds_in_use();
	uint64_t want = (uint64_t)used + FD_RESERVE + (uint64_t)nr_shares * per_share;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
		rl.rlim_cur = rl.rlim_max == RLIM_INFINITY ? want : MIN(want, (uint64_t)rl.rlim_max);
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= want)
		return 0;
	uint64_t room = rl.rlim_cur > (uint64_t)used + FD_RESERVE ? rl.rlim_cur - used - FD_RESERVE : 0;
	uint64_t share_room = room / nr_shares;
	uint64_t fids = share_room > V9P_WORKERS * FD_PER_REQUEST ?
			(share_room - V9P_WORKERS * FD_PER_REQUEST) / P9_FID_DESCRIPTORS : 0;
	if (fids < MIN_FIDS)
		return err_set("--9p: %d shares need about %llu file descriptors, RLIMIT_NOFILE allows %llu "
			       "(raise it with ulimit -n)", nr_shares,
			       (unsigned long long)((uint64_t)used + FD_RESERVE + (uint64_t)nr_shares *
						    (MIN_FIDS * P9_FID_DESCRIPTORS + V9P_WORKERS * FD_PER_REQUEST)),
			       (unsigned long long)rl.rlim_cur);
	*max_fids = fids;
	return 0;
}

static int v9p_create(struct vm *vm, void *own)
{
	struct p9_opts *all = own;
	if (!all->n)
		return 0;
	unsigned max_fids;
	if (budget_descriptors(all->n, &max_fids) < 0)
		return -1;
	for (int i = 0; i < all->n; i++)
		if (v9p_add(vm, &all->share[i], max_fids) < 0)
			return -1;
	vm->needs_files = true;	/* seccomp: the path syscalls the server makes */
	return 0;
}

const struct device_type virtio_9p_device = {
	.name = "virtio-9p", .opts = v9p_opts, .cfg_size = sizeof(struct p9_opts), .create = v9p_create,
};
