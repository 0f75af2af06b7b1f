/*
 * virtio-blk (virtio 1.2 section 5.2): one PCI function per -d disk, with
 * up to 8 virtqueues (VIRTIO_BLK_F_MQ; one per vCPU by default) and a worker
 * thread per queue. Kicks only wake the queue's worker, so host I/O never
 * runs on a vCPU, and queues do not wait on each other.
 *
 * Reads and writes of raw images go through an asynchronous engine
 * (include/disk_aio.h: io_uring, Linux AIO or a thread pool, -d ...,aio=):
 * each queue has its own with up to AIO_DEPTH requests in flight,
 * completions signalled on an eventfd the worker polls next to its kick
 * eventfd.
 * Everything else (qcow2, FLUSH, DISCARD, GET_ID) runs synchronously on the
 * worker once its queue's requests in flight have completed.
 *
 * FLUSH across queues: a request is acknowledged (put in the used ring) only
 * once the backend finished it, and every queue writes through the same
 * descriptor, so the fdatasync a FLUSH on any queue makes covers every write
 * acknowledged before it on every queue. qcow2's metadata (L1/L2 tables,
 * refcounts, its caches) is shared by the workers: the backend takes its own
 * lock in every call (disk/qcow2.c), so a FLUSH there also writes back what
 * other queues' completed writes allocated, and qcow2 requests run one at a
 * time whichever queue they came on.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_ids.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "device.h"
#include "devices.h"
#include "disk.h"
#include "disk_aio.h"
#include "json.h"
#include "options.h"
#include "snapshot.h"
#include "util.h"
#include "virtio.h"
#include "vm.h"

#define T_IN VIRTIO_BLK_T_IN
#define T_OUT VIRTIO_BLK_T_OUT
#define T_FLUSH VIRTIO_BLK_T_FLUSH
#define T_GET_ID VIRTIO_BLK_T_GET_ID
#define T_DISCARD VIRTIO_BLK_T_DISCARD
#define T_WRITE_ZEROES VIRTIO_BLK_T_WRITE_ZEROES
#define RANGE_UNMAP VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP	/* the device may deallocate */
#define MAX_RANGES 32		/* max_discard_seg and max_write_zeroes_seg */
#define MAX_RANGE_SECTORS (1u << 22)	/* 2 GiB per range: bounded work per request */
#define S_OK VIRTIO_BLK_S_OK
#define S_IOERR VIRTIO_BLK_S_IOERR
#define S_UNSUPP VIRTIO_BLK_S_UNSUPP
#define SEG_MAX (VIRTQ_MAX_SEGS - 2)	/* data buffers; plus header and status */
#define AIO_DEPTH 64		/* requests in flight per queue */
#define ASYNC UINT32_MAX	/* handle(): submitted, completes later */
#define CFG_NUM_QUEUES 34	/* le16 in the device config (virtio_blk_config.num_queues) */
#define MAX_QUEUES VIRTIO_MAX_QUEUES

struct aio_req {
	uint16_t head;
	bool read;
	uint8_t *status;
	uint64_t len;
	struct iovec data[VIRTQ_MAX_SEGS];
};

struct blk;

/* One virtqueue and what serves it: its worker, its kicks, its requests in flight, its counters. */
struct blkq {
	struct blk *b;
	int qi;
	pthread_t worker;
	int kick_fd;
	struct disk_aio *aio;	/* NULL: synchronous I/O only */
	int aio_fd;		/* eventfd: completions ready */
	struct aio_req req[AIO_DEPTH];
	int free[AIO_DEPTH], nfree;
	uint64_t reads, writes, flushes, bytes_read, bytes_written, errors;
};

struct blk {
	struct virtio_dev vdev;
	struct disk *disk;
	uint8_t config[60];
	int nq;			/* queues offered (num_queues), each with its worker */
	struct blkq q[MAX_QUEUES];
	bool stopping;		/* the VM ended: finish what is in flight, flush, stop */
	bool running;		/* the workers were started and not yet joined */
	bool stuck;		/* a worker did not answer stopping in time */
	int done_fd;		/* the workers' answers to stopping, one count each */
	char *abs_path;		/* the image's absolute path (snapshots record it) */
	bool ranges_emulated;	/* restored: DISCARD/WRITE_ZEROES offered though the backend lacks them */
};

/* A finished request's status byte; its used-ring entry goes into heads/lens at k. */
static void complete(struct blkq *q, struct aio_req *r, long res, uint16_t *heads, uint32_t *lens, int k)
{
	uint8_t st = res == (long)r->len ? S_OK : S_IOERR;
	if (st == S_IOERR)
		q->errors++;
	*r->status = st;
	heads[k] = r->head;
	lens[k] = r->read && st == S_OK ? r->len + 1 : 1;
	q->free[q->nfree++] = r - q->req;
}

/*
 * Collect finished requests, waiting for at least min of them, and give them to the driver
 * together: one used-index update and one interrupt for the lot, not one per request.
 */
static void reap(struct blkq *q, int min)
{
	struct disk_aio_done done[AIO_DEPTH];
	uint16_t heads[AIO_DEPTH];
	uint32_t lens[AIO_DEPTH];
	int k = 0;
	while (q->nfree < AIO_DEPTH) {
		int n = disk_aio_reap(q->aio, done, AIO_DEPTH - q->nfree, min);
		if (n < 0)
			pr_warn_once("virtio-blk %s: reaping requests: %s", q->b->disk->path, strerror(-n));
		for (int i = 0; i < n; i++)
			complete(q, done[i].cookie, done[i].res, heads, lens, k++);
		if (n <= 0 || n >= min)
			break;
		min -= n;
	}
	if (k)
		virtq_push_n(&q->b->vdev, q->qi, heads, lens, k);
}

static void reap_all(struct blkq *q)
{
	reap(q, AIO_DEPTH - q->nfree);
}

/* Submit a read or write of a raw image; false if it must run synchronously instead. */
static bool submit(struct blkq *q, uint16_t head, bool read, uint64_t off, const struct iovec *data, int nd,
		   uint64_t len, uint8_t *status)
{
	if (!q->aio)
		return false;
	if (!q->nfree)
		reap(q, 1);
	if (!q->nfree)
		return false;
	struct aio_req *r = &q->req[q->free[--q->nfree]];
	r->head = head;
	r->read = read;
	r->status = status;
	r->len = len;
	memcpy(r->data, data, nd * sizeof(*data));
	if (disk_aio_submit(q->aio, !read, q->b->disk->fd, off, r->data, nd, r) < 0) {
		q->free[q->nfree++] = r - q->req;
		return false;
	}
	return true;
}

/*
 * Where the engine can move a request's bytes straight to or from the image file: a raw
 * image's own offset; a qcow2 read whose clusters follow one another in the file. Anything
 * else (qcow2 writes, which may allocate; backing images; compressed or zero clusters) goes
 * through the format's synchronous path.
 */
static bool direct_at(struct disk *dk, bool read, uint64_t off, uint64_t len, uint64_t *at)
{
	if (dk->plain) {
		*at = off;
		return true;
	}
	return read && dk->ops->map_read && dk->ops->map_read(dk, off, len, at) == len;
}

/* WRITE_ZEROES on a backend without it (a restored VM's overlay): the zeroes, written. */
static int write_zero_bytes(struct disk *dk, uint64_t off, uint64_t len)
{
	static const uint8_t zero[65536];
	while (len) {
		struct iovec v = { (void *)zero, MIN(len, sizeof(zero)) };
		int e = dk->ops->writev(dk, off, &v, 1);
		if (e < 0)
			return e;
		off += v.iov_len;
		len -= v.iov_len;
	}
	return 0;
}

/*
 * DISCARD and WRITE_ZEROES: an array of 16-byte ranges {le64 sector, le32
 * num_sectors, le32 flags} in the readable part. Each range is checked
 * before any is acted on, so a bad request changes nothing.
 */
static uint8_t do_ranges(struct blk *b, uint32_t type, const struct iovec *data, int nd, uint64_t len)
{
	struct disk *dk = b->disk;
	if (dk->ro)
		return S_IOERR;
	if (len == 0 || len % 16 || len / 16 > MAX_RANGES)
		return S_UNSUPP;
	uint8_t r[MAX_RANGES][16];
	unsigned n = len / 16;
	for (unsigned i = 0; i < n; i++) {
		iov_to_buf(data, nd, i * 16, r[i], 16);
		uint64_t sector = get_le64(r[i]);
		uint32_t count = get_le32(r[i] + 8), flags = get_le32(r[i] + 12);
		if (flags & ~RANGE_UNMAP || (type == T_DISCARD && flags))
			return S_UNSUPP;
		if (count > MAX_RANGE_SECTORS || sector > dk->size / 512 || count > dk->size / 512 - sector)
			return S_IOERR;
	}
	for (unsigned i = 0; i < n; i++) {
		uint64_t off = get_le64(r[i]) * 512, bytes = (uint64_t)get_le32(r[i] + 8) * 512;
		if (!bytes)
			continue;
		int e;
		if (type == T_DISCARD)	/* a hint: a backend without it ignores it */
			e = dk->ops->discard ? dk->ops->discard(dk, off, bytes) : 0;
		else if (dk->ops->write_zeroes)
			e = dk->ops->write_zeroes(dk, off, bytes, get_le32(r[i] + 12) & RANGE_UNMAP);
		else
			e = write_zero_bytes(dk, off, bytes);
		if (e < 0)
			return S_IOERR;
	}
	return S_OK;
}

/* One request: header in the readable part, status as the last writable byte. ASYNC if submitted. */
static uint32_t handle(struct blkq *q, struct virtq_chain *c)
{
	struct blk *b = q->b;
	struct iovec *out = c->iov, *in = c->iov + c->nout;
	uint8_t hdr[16];
	if (iov_to_buf(out, c->nout, 0, hdr, 16) != 16 || c->nin == 0) {
		pr_warn_once("virtio-blk: request without header or status byte");
		return 0;
	}
	/* The status byte is the last writable byte; data is everything between. */
	struct iovec data[VIRTQ_MAX_SEGS];
	int nd = 0;
	uint8_t *status = (uint8_t *)in[c->nin - 1].iov_base + in[c->nin - 1].iov_len - 1;
	uint32_t type = get_le32(hdr), written = 1;
	uint64_t sector = get_le64(hdr + 8), len = 0;
	if (type == T_IN || type == T_GET_ID) {
		for (int i = 0; i < c->nin; i++)
			data[nd++] = in[i];
		data[nd - 1].iov_len--;
		if (!data[nd - 1].iov_len)
			nd--;
	} else {
		size_t skip = 16;	/* the header may share a buffer with data */
		for (int i = 0; i < c->nout; i++) {
			if (skip >= out[i].iov_len) {
				skip -= out[i].iov_len;
				continue;
			}
			data[nd++] = (struct iovec){ (uint8_t *)out[i].iov_base + skip, out[i].iov_len - skip };
			skip = 0;
		}
	}
	for (int i = 0; i < nd; i++)
		len += data[i].iov_len;

	uint8_t st = S_OK;
	struct disk *dk = b->disk;
	uint64_t at;
	switch (type) {
	case T_IN:
	case T_OUT:
		if (len % 512 || sector > dk->size / 512 || len > dk->size - sector * 512) {
			st = S_IOERR;
		} else if (type == T_OUT && dk->ro) {
			st = S_IOERR;
		} else if (len && direct_at(dk, type == T_IN, sector * 512, len, &at) &&
			   submit(q, c->head, type == T_IN, at, data, nd, len, status)) {
			if (type == T_IN) {
				q->reads++;
				q->bytes_read += len;
			} else {
				q->writes++;
				q->bytes_written += len;
			}
			return ASYNC;
		} else if (len) {
			reap_all(q);	/* in order with what is in flight */
			int r = type == T_IN ? dk->ops->readv(dk, sector * 512, data, nd) : dk->ops->writev(dk, sector * 512, data, nd);
			st = r < 0 ? S_IOERR : S_OK;
			if (type == T_IN) {
				q->reads++;
				q->bytes_read += len;
				if (!r)
					written += len;
			} else {
				q->writes++;
				q->bytes_written += len;
			}
		}
		break;
	case T_FLUSH:
		/*
		 * This queue's writes in flight first (the driver may count on them);
		 * other queues' acknowledged writes are in the file already.
		 */
		reap_all(q);
		q->flushes++;
		if (!dk->ro)
			st = dk->ops->flush(dk) < 0 ? S_IOERR : S_OK;
		break;
	case T_GET_ID: {
		char id[20] = { 0 };
		memcpy(id, dk->serial, strnlen(dk->serial, 20));
		size_t n = buf_to_iov(data, nd, 0, id, MIN(len, (uint64_t)20));
		written += n;
		break;
	}
	case T_DISCARD:
	case T_WRITE_ZEROES:
		reap_all(q);
		if (!b->ranges_emulated &&
		    ((type == T_DISCARD && !dk->ops->discard) || (type == T_WRITE_ZEROES && !dk->ops->write_zeroes))) {
			st = S_UNSUPP;
		} else {
			st = do_ranges(b, type, data, nd, len);
		}
		break;
	default:
		st = S_UNSUPP;
		break;
	}
	if (st == S_IOERR)
		q->errors++;
	*status = st;
	return written;
}

static void *worker(void *arg)
{
	struct blkq *q = arg;
	struct blk *b = q->b;
	/* By itself: prctl. Naming another thread opens /proc, which seccomp refuses once devices start. */
	char name[16];
	snprintf(name, sizeof(name), "lkvm-blk-q%d", q->qi);
	pthread_setname_np(pthread_self(), name);
	for (;;) {
		/*
		 * The ring first, then sleep: a worker that starts again (after a
		 * snapshot) must serve what the driver queued while none ran, whose
		 * kick the stopping worker may have taken.
		 */
		struct virtq_chain c;
		while (virtq_pop(&b->vdev, q->qi, &c) == 1) {
			uint32_t n = handle(q, &c);
			if (n != ASYNC)
				virtq_push(&b->vdev, q->qi, c.head, n);
		}
		/*
		 * The batch to the kernel in one call; what it finished there (a read from
		 * the page cache) goes back to the driver before this thread sleeps.
		 */
		if (q->aio && q->nfree < AIO_DEPTH) {
			disk_aio_commit(q->aio);
			reap(q, 0);
		}
		struct pollfd p[2] = { { .fd = q->kick_fd, .events = POLLIN }, { .fd = q->aio_fd, .events = POLLIN } };
		if (poll(p, q->aio ? 2 : 1, -1) < 0 && errno != EINTR)
			break;
		uint64_t v;
		if ((p[0].revents & POLLIN) && read(q->kick_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			break;
		if (q->aio && (p[1].revents & POLLIN)) {
			if (read(q->aio_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				break;
			reap(q, 0);
		}
		if (__atomic_load_n(&b->stopping, __ATOMIC_ACQUIRE)) {
			/* Each worker flushes after its own requests: together they cover every write. */
			reap_all(q);
			if (!b->disk->ro && b->disk->ops->flush(b->disk) < 0)
				pr_warn("%s: flushing at exit failed", b->disk->path);
			uint64_t one = 1;
			if (write(b->done_fd, &one, sizeof(one)) < 0)
				break;
			break;
		}
	}
	return NULL;
}

static long ms_since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/*
 * stop: the VM ended (poweroff, SIGTERM, SIGINT, an error) or is being saved:
 * every worker finishes its requests in flight and flushes the image (qcow2
 * metadata included), so nothing the guest wrote waits in lkvm or the page
 * cache, then exits. Bounded wait: a stuck host disk must not hang lkvm's
 * exit forever (the threads are then left behind, and destroy leaks rather
 * than frees what they may still touch).
 */
static void blk_stop(struct device *dev)
{
	struct blk *b = dev->priv;
	if (!b->running)
		return;
	__atomic_store_n(&b->stopping, true, __ATOMIC_RELEASE);
	uint64_t v = 1;
	for (int i = 0; i < b->nq; i++)
		if (write(b->q[i].kick_fd, &v, sizeof(v)) < 0)
			return;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	uint64_t answered = 0;
	while (answered < (uint64_t)b->nq) {
		struct pollfd p = { .fd = b->done_fd, .events = POLLIN };
		long left = 10000 - ms_since(&t0);
		if (left <= 0 || poll(&p, 1, left) <= 0) {
			pr_warn("%s: the disk did not flush within 10 s of the VM's end", b->disk->path);
			b->stuck = true;
			return;
		}
		if (read(b->done_fd, &v, sizeof(v)) == sizeof(v))
			answered += v;
	}
	for (int i = 0; i < b->nq; i++)
		pthread_join(b->q[i].worker, NULL);
	b->running = false;
	__atomic_store_n(&b->stopping, false, __ATOMIC_RELEASE);
}

static int blk_start(struct device *dev)
{
	struct blk *b = dev->priv;
	for (int i = 0; i < b->nq; i++) {
		if (thread_start(&b->q[i].worker, worker, &b->q[i])) {
			/* The ones started stop again: a half-served device is no device. */
			__atomic_store_n(&b->stopping, true, __ATOMIC_RELEASE);
			uint64_t one = 1;
			for (int k = 0; k < i; k++) {
				if (write(b->q[k].kick_fd, &one, sizeof(one)) < 0) {}
				pthread_join(b->q[k].worker, NULL);
			}
			uint64_t v;
			if (read(b->done_fd, &v, sizeof(v)) < 0) {}
			__atomic_store_n(&b->stopping, false, __ATOMIC_RELEASE);
			return err_set("%s: cannot start the I/O thread of queue %d", b->disk->path, i);
		}
	}
	b->running = true;
	return 0;
}

static void blk_destroy(struct device *dev)
{
	struct blk *b = dev->priv;
	if (b->stuck)
		return;		/* its workers may still be in a host call on these */
	if (b->vdev.vm)
		virtio_pci_unregister(&b->vdev);
	for (int i = 0; i < MAX_QUEUES; i++) {
		struct blkq *q = &b->q[i];
		disk_aio_close(q->aio);
		if (q->aio_fd >= 0)
			close(q->aio_fd);
		if (q->kick_fd >= 0)
			close(q->kick_fd);
	}
	if (b->done_fd >= 0)
		close(b->done_fd);
	disk_close(b->disk);
	free(b->abs_path);
	free(b);
}

static void blk_stat_members(struct device *dev, struct json_writer *j)
{
	struct blk *b = dev->priv;
	char key[64];
	uint64_t sum[6] = { 0 };
	for (int i = 0; i < b->nq; i++) {
		struct blkq *q = &b->q[i];
		const uint64_t *f[6] = { &q->reads, &q->writes, &q->flushes, &q->bytes_read, &q->bytes_written, &q->errors };
		for (int k = 0; k < 6; k++)
			sum[k] += __atomic_load_n(f[k], __ATOMIC_RELAXED);
	}
	static const char *const names[6] = { "reads", "writes", "flushes", "bytes_read", "bytes_written", "errors" };
	for (int k = 0; k < 6; k++) {
		snprintf(key, sizeof(key), "blk%d_%s", dev->index, names[k]);
		json_u64(j, key, sum[k]);
	}
	snprintf(key, sizeof(key), "blk%d_queues", dev->index);
	json_u64(j, key, b->nq);
	/* The I/O engine that runs (after any fallback): the same on every queue, as each asked for the same. */
	snprintf(key, sizeof(key), "blk%d_aio", dev->index);
	json_str(j, key, b->q[0].aio ? disk_aio_name(b->q[0].aio->kind) : "sync");
	/* Which queues the guest's driver used: requests by queue. */
	for (int i = 0; i < b->nq; i++) {
		struct blkq *q = &b->q[i];
		snprintf(key, sizeof(key), "blk%d_q%d_reads", dev->index, i);
		json_u64(j, key, __atomic_load_n(&q->reads, __ATOMIC_RELAXED));
		snprintf(key, sizeof(key), "blk%d_q%d_writes", dev->index, i);
		json_u64(j, key, __atomic_load_n(&q->writes, __ATOMIC_RELAXED));
	}
}

/*
 * Snapshots: the disk's offered features and config, then the transport. The
 * requests in flight were finished by stop() before the save, so nothing else
 * is pending. A restored VM's disk is an overlay of the snapshot's image; if
 * that backend lacks DISCARD or WRITE_ZEROES while the guest's driver
 * negotiated them, they go on: discard as the hint it is, zeroes written.
 * The queue count is the config's num_queues (a snapshot from before
 * multi-queue has one): a device built with more queues serves that many.
 */
#define RANGE_FEATURES (1ULL << VIRTIO_BLK_F_DISCARD | 1ULL << VIRTIO_BLK_F_WRITE_ZEROES)

static int blk_save(struct device *dev, struct snap_writer *w)
{
	struct blk *b = dev->priv;
	snap_u64(w, b->vdev.features);
	snap_bytes(w, b->config, sizeof(b->config));
	return virtio_pci_save(&b->vdev, w);
}

static int blk_load(struct device *dev, struct snap_reader *r)
{
	struct blk *b = dev->priv;
	uint64_t then = snap_get_u64(r);
	uint8_t config[sizeof(b->config)];
	snap_get_bytes(r, config, sizeof(config));
	if (snap_failed(r))
		return -1;
	if (memcmp(config, b->config, CFG_NUM_QUEUES))	/* capacity, segment limits, block size */
		return snap_bad(r, "disk %d (%s) is %llu bytes, the snapshot's was %llu: not the same disk", dev->index,
				b->disk->path, (unsigned long long)b->disk->size,
				(unsigned long long)get_le64(config) * 512);
	int nq = then & (1ULL << VIRTIO_BLK_F_MQ) ? get_le16(config + CFG_NUM_QUEUES) : 1;
	if (nq < 1 || nq > b->nq)
		return snap_bad(r, "disk %d (%s) had %d queues, this one has %d", dev->index, b->disk->path, nq, b->nq);
	if (nq < b->nq) {
		if (b->running)
			return snap_bad(r, "disk %d (%s): queues change only before the device starts", dev->index,
					b->disk->path);
		if (virtio_pci_set_queues(&b->vdev, nq) < 0)
			return snap_bad(r, "disk %d: %s", dev->index, err_msg());
		b->nq = nq;
		put_le16(b->config + CFG_NUM_QUEUES, nq);
	}
	uint64_t missing = then & RANGE_FEATURES & ~b->vdev.features;
	if (missing) {
		if (b->disk->ro)
			return snap_bad(r, "disk %d (%s) is read-only now but was writable", dev->index, b->disk->path);
		b->ranges_emulated = true;
		b->vdev.features |= missing;
		memcpy(b->config + 36, config + 36, sizeof(config) - 36);
	}
	return virtio_pci_load(&b->vdev, r);
}

static const struct device_ops blk_dev_ops = {
	.start = blk_start, .stop = blk_stop, .destroy = blk_destroy, .stats = blk_stat_members,
	.save = blk_save, .load = blk_load, .snap_version = 1,
};

/* ---- what snapshots need of a disk ---- */

struct disk *virtio_blk_disk(struct device *dev, const char **abs_path)
{
	struct blk *b = dev->priv;
	if (abs_path)
		*abs_path = b->abs_path ? b->abs_path : b->disk->path;
	return b->disk;
}

int virtio_blk_aio_kind(struct device *dev, int qi)
{
	struct blk *b = dev->priv;
	return qi >= 0 && qi < b->nq && b->q[qi].aio ? (int)b->q[qi].aio->kind : -1;
}

int virtio_blk_replace_disk(struct device *dev, struct disk *dk, const char *abs_path)
{
	struct blk *b = dev->priv;
	if (b->running)
		return err_set("virtio-blk %d: the disk is replaced only while its workers are stopped", dev->index);
	if (dk->size != b->disk->size)
		return err_set("%s: %llu bytes, the disk it replaces has %llu", dk->path, (unsigned long long)dk->size,
			       (unsigned long long)b->disk->size);
	/* Snapshots put a qcow2 overlay over the image, never the other way round. */
	if (dk->plain && !b->disk->plain)
		return err_set("%s: a raw image cannot replace a qcow2 one", dk->path);
	b->disk = dk;	/* the old one is dk's backing image now, and dk's to close */
	free(b->abs_path);
	b->abs_path = xstrdup(abs_path);
	return 0;
}

/* A kick on queue qi wakes its worker; the transport gives only qi < nr_queues, checked again here. */
static void blk_notify(struct virtio_dev *d, int qi)
{
	struct blk *b = d->priv;
	uint64_t one = 1;
	if (qi < 0 || qi >= b->nq)
		return;
	if (write(b->q[qi].kick_fd, &one, sizeof(one)) < 0)
		pr_debug("virtio-blk: kick lost");
}

static const struct virtio_ops blk_ops = { .notify = blk_notify };

/*
 * One queue unless queues=N asks for more, whatever the format and the vCPU
 * count: on the 2-core machines measured (bench/README.md) a second queue
 * brought raw images nothing and cost qcow2 images a third (their requests
 * run one at a time under the image's lock). A restore keeps the snapshot's
 * count through the disk's queues=N.
 */
int virtio_blk_default_queues(const struct vm *vm)
{
	(void)vm;
	return 1;
}

int virtio_blk_add_queues(struct vm *vm, struct disk *dk, int nq)
{
	return virtio_blk_add_aio(vm, dk, nq, DISK_AIO_DEFAULT);
}

int virtio_blk_add_aio(struct vm *vm, struct disk *dk, int nq, enum disk_aio_kind aio)
{
	struct blk *b = xcalloc(1, sizeof(*b));
	b->disk = dk;
	b->abs_path = realpath(dk->path, NULL);
	b->nq = nq;
	for (int i = 0; i < MAX_QUEUES; i++)
		b->q[i].kick_fd = b->q[i].aio_fd = -1;
	b->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	device_add(vm, "virtio-blk", &blk_dev_ops, b);
	if (nq < 1 || nq > MAX_QUEUES)
		return err_set("%s: %d queues (1 to %d)", dk->path, nq, MAX_QUEUES);
	if (b->done_fd < 0)
		return err_errno("%s: eventfd", dk->path);
	for (int i = 0; i < nq; i++) {
		struct blkq *q = &b->q[i];
		q->b = b;
		q->qi = i;
		q->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (q->kick_fd < 0)
			return err_errno("%s: eventfd", dk->path);
		/* An engine (the one asked, else the next allowed) for raw images and qcow2 reads; without any, synchronous I/O. */
		q->aio_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (q->aio_fd >= 0 && !(q->aio = disk_aio_open(aio, AIO_DEPTH, q->aio_fd)))
			pr_debug("%s: %s: synchronous I/O on queue %d", dk->path, err_msg(), i);
		if (q->aio && i == 0 && aio != DISK_AIO_DEFAULT && q->aio->kind != aio)	/* asked for by name: say so */
			pr_warn("%s: aio=%s refused here (%s): aio=%s instead", dk->path, disk_aio_name(aio), err_msg(),
				disk_aio_name(q->aio->kind));
		else if (q->aio && i == 0)
			pr_debug("%s: asynchronous I/O through %s", dk->path, disk_aio_name(q->aio->kind));
		for (int k = 0; k < AIO_DEPTH; k++)
			q->free[q->nfree++] = k;
	}
	put_le64(b->config, dk->size / 512);	/* capacity */
	put_le32(b->config + 12, SEG_MAX);
	put_le32(b->config + 20, 512);		/* blk_size */
	put_le16(b->config + CFG_NUM_QUEUES, nq);
	bool discard = dk->ops->discard && !dk->ro, zeroes = dk->ops->write_zeroes && !dk->ro;
	if (discard) {
		put_le32(b->config + 36, MAX_RANGE_SECTORS);	/* max_discard_sectors */
		put_le32(b->config + 40, MAX_RANGES);		/* max_discard_seg */
		put_le32(b->config + 44, 1);			/* discard_sector_alignment */
	}
	if (zeroes) {
		put_le32(b->config + 48, MAX_RANGE_SECTORS);	/* max_write_zeroes_sectors */
		put_le32(b->config + 52, MAX_RANGES);		/* max_write_zeroes_seg */
		b->config[56] = 1;				/* write_zeroes_may_unmap */
	}
	struct virtio_dev *d = &b->vdev;
	d->name = "virtio-blk";
	d->device_id = VIRTIO_ID_BLOCK;
	d->nr_queues = nq;
	d->config = b->config;
	d->config_len = sizeof(b->config);
	d->features = 1ULL << VIRTIO_BLK_F_SEG_MAX | 1ULL << VIRTIO_BLK_F_BLK_SIZE | 1ULL << VIRTIO_BLK_F_FLUSH |
		      1ULL << VIRTIO_BLK_F_MQ | (dk->ro ? 1ULL << VIRTIO_BLK_F_RO : 0) |
		      (discard ? 1ULL << VIRTIO_BLK_F_DISCARD : 0) | (zeroes ? 1ULL << VIRTIO_BLK_F_WRITE_ZEROES : 0);
	d->ops = &blk_ops;
	d->priv = b;
	return virtio_pci_register(vm, d);
}

int virtio_blk_add(struct vm *vm, struct disk *dk)
{
	return virtio_blk_add_queues(vm, dk, virtio_blk_default_queues(vm));
}

/* ---- options: -d PATH[,ro][,direct][,queues=N][,aio=ENGINE], repeatable ---- */

#define MAX_DISKS 8
struct blk_opts {
	int n;
	struct { const char *path; bool ro, direct; int queues; enum disk_aio_kind aio; } disk[MAX_DISKS];
};

static int parse_disk(void *own, const char *arg)
{
	struct blk_opts *o = own;
	if (o->n == MAX_DISKS)
		return err_set("too many disks (at most %d)", MAX_DISKS);
	char *copy = opt_strdup(arg), *save, *tok = strtok_r(copy, ",", &save);
	if (!tok || !*tok)
		return err_set("needs a path");
	const char *path = tok;
	bool ro = false, direct = false;
	int queues = 0;
	enum disk_aio_kind aio = DISK_AIO_DEFAULT;
	while ((tok = strtok_r(NULL, ",", &save))) {
		if (!strcmp(tok, "ro")) {
			ro = true;
		} else if (!strcmp(tok, "direct")) {
			direct = true;
		} else if (!strncmp(tok, "queues=", 7)) {
			char *end;
			long v = strtol(tok + 7, &end, 10);
			if (!tok[7] || *end || v < 1 || v > MAX_QUEUES)
				return err_set("queues=%s: a number of queues from 1 to %d", tok + 7, MAX_QUEUES);
			queues = v;
		} else if (!strncmp(tok, "aio=", 4)) {
			if (disk_aio_parse(tok + 4, &aio) < 0 || aio == DISK_AIO_DEFAULT)
				return err_set("aio=%s: not an I/O engine (uring, native or threads)", tok + 4);
		} else {
			return err_set("unknown disk option '%s' (ro, direct, queues=N, aio=uring|native|threads)", tok);
		}
	}
	/* Input files are checked before /dev/kvm is even opened. */
	struct stat st;
	if (stat(path, &st) < 0 || access(path, ro ? R_OK : R_OK | W_OK) < 0)
		return err_set("%s: cannot open the disk image (missing or no permission)", path);
	o->disk[o->n].path = path;
	o->disk[o->n].ro = ro;
	o->disk[o->n].direct = direct;
	o->disk[o->n].queues = queues;
	o->disk[o->n].aio = aio;
	o->n++;
	return 0;
}

static const struct opt blk_opts[] = {
	{ "disk", 'd', "PATH[,ro][,direct][,queues=N][,aio=uring|native|threads]",
	  "virtio-blk disk (raw file, block device or qcow2, by its magic), repeatable; queues: 1-8 virtqueues, each with a worker (default 1); "
	  "aio: a raw image's I/O engine, io_uring, Linux AIO or a thread pool (default uring; one the kernel refuses falls back to the next)",
	  parse_disk, OPT_COMPLETE_FILE },
	{ 0 }
};

static int blk_create(struct vm *vm, void *own)
{
	struct blk_opts *o = own;
	for (int i = 0; i < o->n; i++) {
		struct disk *dk = disk_open(o->disk[i].path, o->disk[i].ro, o->disk[i].direct);
		if (!dk)
			return -1;
		snprintf(dk->serial, sizeof(dk->serial), "lkvm-disk-%d", i);
		int nq = o->disk[i].queues ? o->disk[i].queues : virtio_blk_default_queues(vm);
		if (virtio_blk_add_aio(vm, dk, nq, o->disk[i].aio) < 0)
			return -1;
	}
	return 0;
}

const struct device_type virtio_blk_device = {
	.name = "virtio-blk", .opts = blk_opts, .cfg_size = sizeof(struct blk_opts), .create = blk_create,
};
