/*
 * virtio-blk (virtio 1.2 section 5.2): one PCI function per -d disk. Kicks
 * only wake the disk's worker thread, so host I/O never runs on a vCPU; a
 * FLUSH completes only after the backend's flush (fdatasync) returned.
 *
 * Reads and writes of raw images go through Linux AIO (libaio): up to
 * AIO_DEPTH requests in flight, completions signalled on an eventfd the
 * worker polls next to its kick eventfd. Everything else (qcow2, FLUSH,
 * DISCARD, GET_ID) runs synchronously on the worker once the requests in
 * flight have completed, so a FLUSH covers every write acknowledged before it.
 */
#include <errno.h>
#include <libaio.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include "disk.h"
#include "util.h"
#include "virtio.h"
#include "vm.h"

#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_DISCARD 13
#define VIRTIO_BLK_F_WRITE_ZEROES 14
#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define T_GET_ID 8
#define T_DISCARD 11
#define T_WRITE_ZEROES 13
#define RANGE_UNMAP 1u		/* write-zeroes flag: the device may deallocate */
#define MAX_RANGES 32		/* max_discard_seg and max_write_zeroes_seg */
#define MAX_RANGE_SECTORS (1u << 22)	/* 2 GiB per range: bounded work per request */
#define S_OK 0
#define S_IOERR 1
#define S_UNSUPP 2
#define SEG_MAX (VIRTQ_MAX_SEGS - 2)	/* data buffers; plus header and status */
#define AIO_DEPTH 64		/* requests in flight per disk */
#define ASYNC UINT32_MAX	/* handle(): submitted, completes later */

struct aio_req {
	struct iocb cb;		/* first: the completion's obj points here */
	uint16_t head;
	bool read;
	uint8_t *status;
	uint64_t len;
	struct iovec data[VIRTQ_MAX_SEGS];
};

struct blk {
	struct virtio_dev vdev;
	struct disk *disk;
	uint8_t config[60];
	pthread_t worker;
	int kick_fd;
	io_context_t aio;	/* 0: synchronous I/O only */
	int aio_fd;		/* eventfd: completions ready */
	struct aio_req req[AIO_DEPTH];
	int free[AIO_DEPTH], nfree;
	bool stopping;		/* the VM ended: finish what is in flight, flush, stop */
	int done_fd;		/* the worker's answer to stopping */
	uint64_t reads, writes, flushes, bytes_read, bytes_written, errors;
};

static void complete(struct blk *b, struct aio_req *r, long res)
{
	uint8_t st = res == (long)r->len ? S_OK : S_IOERR;
	if (st == S_IOERR)
		b->errors++;
	*r->status = st;
	virtq_push(&b->vdev, 0, r->head, r->read && st == S_OK ? r->len + 1 : 1);
	b->free[b->nfree++] = r - b->req;
}

/* Collect finished requests; wait for at least min of them. */
static void reap(struct blk *b, int min)
{
	struct io_event ev[AIO_DEPTH];
	struct timespec zero = { 0, 0 };
	while (b->nfree < AIO_DEPTH) {
		int n = io_getevents(b->aio, min, AIO_DEPTH, ev, min ? NULL : &zero);
		if (n == -EINTR)
			continue;
		if (n < 0) {
			pr_warn_once("virtio-blk %s: io_getevents: %s", b->disk->path, strerror(-n));
			return;
		}
		for (int i = 0; i < n; i++)
			complete(b, (struct aio_req *)ev[i].obj, (long)ev[i].res);
		if (n <= 0 || n >= min)
			return;
		min -= n;
	}
}

/* Submit a read or write of a raw image; false if it must run synchronously instead. */
static bool submit(struct blk *b, uint16_t head, bool read, uint64_t off, const struct iovec *data, int nd,
		   uint64_t len, uint8_t *status)
{
	if (!b->aio)
		return false;
	if (!b->nfree)
		reap(b, 1);
	if (!b->nfree)
		return false;
	struct aio_req *r = &b->req[b->free[--b->nfree]];
	r->head = head;
	r->read = read;
	r->status = status;
	r->len = len;
	memcpy(r->data, data, nd * sizeof(*data));
	if (read)
		io_prep_preadv(&r->cb, b->disk->fd, r->data, nd, off);
	else
		io_prep_pwritev(&r->cb, b->disk->fd, r->data, nd, off);
	io_set_eventfd(&r->cb, b->aio_fd);
	struct iocb *cbs[1] = { &r->cb };
	if (io_submit(b->aio, 1, cbs) != 1) {
		b->free[b->nfree++] = r - b->req;
		return false;
	}
	return true;
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
		int e = type == T_DISCARD ? dk->ops->discard(dk, off, bytes)
					  : dk->ops->write_zeroes(dk, off, bytes, get_le32(r[i] + 12) & RANGE_UNMAP);
		if (e < 0)
			return S_IOERR;
	}
	return S_OK;
}

/* One request: header in the readable part, status as the last writable byte. ASYNC if submitted. */
static uint32_t handle(struct blk *b, struct virtq_chain *c)
{
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
	switch (type) {
	case T_IN:
	case T_OUT:
		if (len % 512 || sector > dk->size / 512 || len > dk->size - sector * 512) {
			st = S_IOERR;
		} else if (type == T_OUT && dk->ro) {
			st = S_IOERR;
		} else if (len && b->disk->plain &&
			   submit(b, c->head, type == T_IN, sector * 512, data, nd, len, status)) {
			if (type == T_IN) {
				b->reads++;
				b->bytes_read += len;
			} else {
				b->writes++;
				b->bytes_written += len;
			}
			return ASYNC;
		} else if (len) {
			reap(b, AIO_DEPTH - b->nfree);	/* in order with what is in flight */
			int r = type == T_IN ? dk->ops->readv(dk, sector * 512, data, nd) : dk->ops->writev(dk, sector * 512, data, nd);
			st = r < 0 ? S_IOERR : S_OK;
			if (type == T_IN) {
				b->reads++;
				b->bytes_read += len;
				if (!r)
					written += len;
			} else {
				b->writes++;
				b->bytes_written += len;
			}
		}
		break;
	case T_FLUSH:
		reap(b, AIO_DEPTH - b->nfree);	/* every acknowledged write is in the file first */
		b->flushes++;
		st = dk->ro ? S_OK : dk->ops->flush(dk) < 0 ? S_IOERR : S_OK;
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
		reap(b, AIO_DEPTH - b->nfree);
		if ((type == T_DISCARD && !dk->ops->discard) || (type == T_WRITE_ZEROES && !dk->ops->write_zeroes))
			st = S_UNSUPP;
		else
			st = do_ranges(b, type, data, nd, len);
		break;
	default:
		st = S_UNSUPP;
		break;
	}
	if (st == S_IOERR)
		b->errors++;
	*status = st;
	return written;
}

static void *worker(void *arg)
{
	struct blk *b = arg;
	pthread_setname_np(pthread_self(), "lkvm-blk");
	for (;;) {
		struct pollfd p[2] = { { .fd = b->kick_fd, .events = POLLIN }, { .fd = b->aio_fd, .events = POLLIN } };
		if (poll(p, b->aio ? 2 : 1, -1) < 0 && errno != EINTR)
			break;
		uint64_t v;
		if ((p[0].revents & POLLIN) && read(b->kick_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			break;
		if (b->aio && (p[1].revents & POLLIN)) {
			if (read(b->aio_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				break;
			reap(b, 0);
		}
		if (__atomic_load_n(&b->stopping, __ATOMIC_ACQUIRE)) {
			reap(b, AIO_DEPTH - b->nfree);
			if (!b->disk->ro && b->disk->ops->flush(b->disk) < 0)
				pr_warn("%s: flushing at exit failed", b->disk->path);
			uint64_t one = 1;
			if (write(b->done_fd, &one, sizeof(one)) < 0)
				break;
			break;
		}
		struct virtq_chain c;
		while (virtq_pop(&b->vdev, 0, &c) == 1) {
			uint32_t n = handle(b, &c);
			if (n != ASYNC)
				virtq_push(&b->vdev, 0, c.head, n);
		}
	}
	return NULL;
}

/*
 * The VM ended (poweroff, SIGTERM, SIGINT, an error): the worker finishes the
 * requests in flight and flushes the image (qcow2 metadata included), so
 * nothing the guest wrote waits in lkvm or the page cache. Bounded wait: a
 * stuck host disk must not hang lkvm's exit forever.
 */
static void blk_at_exit(void *ctx)
{
	struct blk *b = ctx;
	__atomic_store_n(&b->stopping, true, __ATOMIC_RELEASE);
	uint64_t v = 1;
	if (write(b->kick_fd, &v, sizeof(v)) < 0)
		return;
	struct pollfd p = { .fd = b->done_fd, .events = POLLIN };
	if (poll(&p, 1, 10000) <= 0)
		pr_warn("%s: the disk did not flush within 10 s of the VM's end", b->disk->path);
}

static void blk_notify(struct virtio_dev *d, int qi)
{
	struct blk *b = d->priv;
	uint64_t one = 1;
	if (write(b->kick_fd, &one, sizeof(one)) < 0)
		pr_debug("virtio-blk: kick lost");
}

static const struct virtio_ops blk_ops = { .notify = blk_notify };

int virtio_blk_add(struct vm *vm, struct disk *dk)
{
	struct blk *b = xcalloc(1, sizeof(*b));
	b->disk = dk;
	b->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	b->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (b->kick_fd < 0 || b->done_fd < 0)
		return err_errno("%s: eventfd", dk->path);
	/* Linux AIO for raw images; without it (limits, old kernels) I/O stays synchronous. */
	b->aio_fd = dk->plain ? eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC) : -1;
	if (b->aio_fd >= 0 && io_setup(AIO_DEPTH, &b->aio) < 0) {
		pr_debug("%s: io_setup failed: synchronous I/O", dk->path);
		b->aio = 0;
	}
	for (int i = 0; i < AIO_DEPTH; i++)
		b->free[b->nfree++] = i;
	put_le64(b->config, dk->size / 512);	/* capacity */
	put_le32(b->config + 12, SEG_MAX);
	put_le32(b->config + 20, 512);		/* blk_size */
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
	d->device_id = 2;
	d->nr_queues = 1;
	d->config = b->config;
	d->config_len = sizeof(b->config);
	d->features = 1ULL << VIRTIO_BLK_F_SEG_MAX | 1ULL << VIRTIO_BLK_F_BLK_SIZE | 1ULL << VIRTIO_BLK_F_FLUSH |
		      (dk->ro ? 1ULL << VIRTIO_BLK_F_RO : 0) | (discard ? 1ULL << VIRTIO_BLK_F_DISCARD : 0) |
		      (zeroes ? 1ULL << VIRTIO_BLK_F_WRITE_ZEROES : 0);
	d->ops = &blk_ops;
	d->priv = b;
	if (virtio_pci_register(vm, d) < 0)
		return -1;
	if (pthread_create(&b->worker, NULL, worker, b))
		return err_set("%s: cannot start its I/O thread", dk->path);
	if (vm_on_exit(vm, blk_at_exit, b) < 0)
		return -1;
	return 0;
}

int virtio_blk_init(struct vm *vm)
{
	for (int i = 0; i < vm->cfg.nr_disks; i++) {
		struct disk_opt *o = &vm->cfg.disks[i];
		struct disk *dk = disk_open(o->path, o->ro, o->direct);
		if (!dk)
			return -1;
		snprintf(dk->serial, sizeof(dk->serial), "lkvm-disk-%d", i);
		if (virtio_blk_add(vm, dk) < 0)
			return -1;
	}
	return 0;
}
