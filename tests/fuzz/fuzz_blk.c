/*
 * libFuzzer target: virtio-blk requests (virtio/blk.c) through the whole
 * device, as a guest driver would send them: a fake VM with the PCI host, two
 * virtio-blk functions (a raw image, served with Linux AIO, and a qcow2 one,
 * its reads of allocated runs through the same engine, the rest synchronous) on temporary files, rings and buffers in guest RAM,
 * kicks on the notify register, and the device's own worker thread.
 *
 * The input is a flags byte, then requests:
 *   flags  bit 0 qcow2 disk (else raw), bit 1 the disk is read-only,
 *          bit 2 one request at a time (else all at once), bit 3 kick after
 *          every request (else once), bit 4 the driver resets the device while it
 *          works on a bad ring (the reset/bad-chain deadlock it found is fixed;
 *          LKVM_FUZZ_BLK_NO_RACE=1 turns it off), bit 5 interrupts through MSI-X (else INTx),
 *          bit 6 every kick also goes to queue 1 (each device has 2 queues; the
 *          driver never enables the second, whose registers point at queue 0's
 *          rings) and to queue indexes past the device's
 *   request: type byte (< 0xf0: IN, OUT, FLUSH, GET_ID, DISCARD, WRITE_ZEROES
 *          by type % 6; else any type 0-15), sector byte (< 0xe0: that
 *          sector, else 8 bytes of it follow), a shape byte, a segment count,
 *          the segments, and for DISCARD and WRITE_ZEROES a range count and
 *          3 bytes per range (sector, sectors, flags; 0xff: a huge value).
 *   shape  bit 0 descriptors in an indirect table, bit 1 the header shares
 *          its buffer with the first data buffer, bit 2 the status byte ends
 *          the last data buffer, bit 3 data buffers the other way round
 *          (readable for IN), bit 4 no status byte, bit 5 an 8-byte header,
 *          bit 6 the header in two descriptors, bit 7 writable buffers first
 *   segment: byte, bits 0-5 the length in 128-byte units (63: le16 follows),
 *          bits 6-7 where: 0 a fresh buffer, 1 anywhere in the data area (le16
 *          follows, times 8: overlapping other requests), 2 any guest address
 *          (le32 follows), 3 the same buffer as the previous segment
 *
 * Oracle: no crash, no hang; the image file never grows and nothing past the
 * disk's last sector changes; the qcow2 file stays within a bound. When a
 * batch uses fresh buffers only, the harness predicts each request from the
 * chain the device sees: whether the chain breaks the device, the status
 * byte (0, 1 or 2: which), the used length, the bytes an IN or GET_ID
 * returns, and what OUT, DISCARD and WRITE_ZEROES leave on the disk.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "devices.h"
#include "disk.h"
#include "fake_vm.h"
#include "hw.h"
#include "pci.h"
#include "util.h"
#include "virtio.h"
#include "virtio_driver.h"
#include "vm.h"
#define FUZZ_NAME "fuzz_blk"
#include "fuzz_harness.h"

#define RAM 0x80000
#define DESC 0x0000
#define AVAIL 0x1000
#define USED 0x2000
#define ARENA 0x3000
#define QS 256
#define SECTORS 128			/* the disk: 64 KiB */
#define DISK_BYTES (SECTORS * 512)
#define RAW_FILE (DISK_BYTES + 300)	/* a tail the guest cannot see */
#define CLUSTER 4096
#define QCOW_FILE (9 * CLUSTER)
#define QCOW_MAX (1 << 20)		/* what 64 KiB of guest data may grow the qcow2 file to */
#define MAX_SEGS 200
#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define T_GET_ID 8
#define T_DISCARD 11
#define T_WRITE_ZEROES 13
#define S_SENTINEL 0xee			/* a status byte the device has not written */
#define D_FILL 0xcc			/* writable data before the device fills it */

static struct vm vm;
static uint8_t *ram;
static char raw_path[] = "/dev/shm/lkvm-fuzz-blk-XXXXXX", qcow_path[] = "/dev/shm/lkvm-fuzz-blk-XXXXXX";
static char qcow_reopen[64];
static int raw_fd, qcow_fd;
static struct disk *disks[2];
static struct pci_dev *devs[2];
static uint8_t qcow_image[QCOW_FILE];
static bool race;	/* resets while the device is busy (LKVM_FUZZ_BLK_NO_RACE: not) */

/* Interrupts: only their lines and messages are checked. */
static void irq_hook(struct vm *v, unsigned gsi, int level)
{
	if (gsi >= 24 || (level != 0 && level != 1))
		fail("interrupt line %u set to %d", gsi, level);
}

static void msi_hook(struct vm *v, uint64_t addr, uint32_t data)
{
	if (addr != 0xfee00000 || (data != 0x40 && data != 0x41))
		fail("MSI to 0x%llx with data 0x%x: not a vector the driver programmed", (unsigned long long)addr, data);
}

static uint8_t *g(uint64_t gpa) { return ram + gpa; }	/* only for addresses the harness placed */
static uint8_t pattern(uint64_t off) { return (uint8_t)(off * 13 + off / 512 + 1); }

/* ---- the images ---- */

static void put_be(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = v >> (8 * (n - 1 - i));
}

/*
 * qcow2 v3, 4 KiB clusters, 64 KiB: header, L1, refcount table, refcount
 * block, one L2 table; guest clusters 0-3 hold data, 4 is a v3 zero cluster,
 * the rest are unallocated (no backing file: zeroes).
 */
static void make_qcow2(void)
{
	uint8_t *q = qcow_image;
	memset(q, 0, sizeof(qcow_image));
	put_be(q + 0, 0x514649fb, 4);	/* "QFI\xfb" */
	put_be(q + 4, 3, 4);
	put_be(q + 20, 12, 4);			/* cluster_bits */
	put_be(q + 24, DISK_BYTES, 8);
	put_be(q + 36, 1, 4);			/* l1_size */
	put_be(q + 40, 1 * CLUSTER, 8);		/* l1_table_offset */
	put_be(q + 48, 2 * CLUSTER, 8);		/* refcount_table_offset */
	put_be(q + 56, 1, 4);			/* refcount_table_clusters */
	put_be(q + 96, 4, 4);			/* refcount_order */
	put_be(q + 100, 104, 4);		/* header_length */
	put_be(q + 1 * CLUSTER, 4 * CLUSTER | 1ULL << 63, 8);
	put_be(q + 2 * CLUSTER, 3 * CLUSTER, 8);
	for (int c = 0; c < 9; c++)
		put_be(q + 3 * CLUSTER + 2 * c, 1, 2);
	for (int c = 0; c < 4; c++)
		put_be(q + 4 * CLUSTER + 8 * c, (5 + c) * CLUSTER | 1ULL << 63, 8);
	put_be(q + 4 * CLUSTER + 8 * 4, 1, 8);	/* OFLAG_ZERO */
	for (int i = 0; i < 4 * CLUSTER; i++)
		q[5 * CLUSTER + i] = pattern(i);
}

static uint8_t model[SECTORS][512];
static bool known[SECTORS];

static void write_all(int fd, const void *buf, size_t len)
{
	if (ftruncate(fd, 0) || pwrite(fd, buf, len, 0) != (ssize_t)len)
		fail("cannot reset an image: %s", strerror(errno));
}

/* The disk as every input finds it; the model says what it holds. */
static void reset_disk(int kind)
{
	static uint8_t raw_image[RAW_FILE];
	if (kind == 0) {
		for (int i = 0; i < RAW_FILE; i++)
			raw_image[i] = i < DISK_BYTES ? pattern(i) : 0x77;
		write_all(raw_fd, raw_image, RAW_FILE);
	} else {
		/* The qcow2 state lives in the disk: close it and open the fresh file in its place. */
		struct disk *d = disks[1];
		d->ops->close(d);
		write_all(qcow_fd, qcow_image, QCOW_FILE);
		struct disk *n = disk_open(qcow_reopen, false, false);
		if (!n)
			fail("cannot reopen the qcow2 image: %s", err_msg());
		memcpy(n->serial, d->serial, sizeof(n->serial));
		*d = *n;
		free(n);
	}
	for (int s = 0; s < SECTORS; s++) {
		for (int i = 0; i < 512; i++)
			model[s][i] = kind == 0 || s < 32 ? pattern(s * 512 + i) : 0;
		known[s] = true;
	}
}

static void check_files(void)
{
	struct stat st;
	uint8_t tail[RAW_FILE - DISK_BYTES];
	if (fstat(raw_fd, &st) || st.st_size != RAW_FILE)
		fail("the raw image is %lld bytes, was %d", (long long)st.st_size, RAW_FILE);
	if (pread(raw_fd, tail, sizeof(tail), DISK_BYTES) != (ssize_t)sizeof(tail))
		fail("cannot read the raw image's tail");
	for (size_t i = 0; i < sizeof(tail); i++)
		if (tail[i] != 0x77)
			fail("byte %zu past the disk's end changed", DISK_BYTES + i);
	if (fstat(qcow_fd, &st) || st.st_size > QCOW_MAX)
		fail("the qcow2 image grew to %lld bytes", (long long)st.st_size);
}

/* ---- the driver side ---- */

/* The shared test driver (tests/lib/virtio_driver.h): the device in use, and its queue. */
static struct vdev drv;
static struct vq q0;

/*
 * Reset the device, then clear the first clear bytes of RAM (never before the
 * reset: the worker may look at the rings once more after its last request),
 * negotiate, one queue of QS at DESC/AVAIL/USED, DRIVER_OK.
 */
static bool use_msix, racing, stray_kicks;

/*
 * Reset the device, with its avail index where the device stands first:
 * reset() clears the broken flag before it disables the queue, and a worker
 * woken by a late kick in between would walk a bad ring again and break the
 * device inside the reset, which deadlocks today (tests/fuzz/README.md).
 */
static void reset_dev(struct virtio_dev *vd)
{
	struct virtq *q = &vd->q[0];
	if (!racing) {
		pthread_mutex_lock(&q->lock);
		__atomic_store_n((uint16_t *)g(AVAIL + 2), q->last_avail, __ATOMIC_RELEASE);
		pthread_mutex_unlock(&q->lock);
	}
	vdev_reset(&drv);
}

/* The rings stay as they are (a racing driver's scribbles too): only clear bytes of RAM are cleared. */
static struct virtio_dev *driver_init(int kind, size_t clear)
{
	struct pci_dev *p = devs[kind];
	vdev_attach(&drv, &vm, p);
	reset_dev(p->priv);
	memset(ram, 0, clear);
	if (!vdev_find_cap(&drv, 0x11))
		fail("no MSI-X capability");
	/* MSI-X on or off; config changes (a broken device) on vector 1. */
	vdev_msix(&drv, use_msix ? 2 : 0, 0x40, 1);
	vdev_negotiate(&drv, vdev_offered(&drv));	/* everything offered */
	int qok = vq_enable(&q0, use_msix ? 0 : -1);	/* the queue on vector 0 */
	/* Queue 1 set up over queue 0's rings but never enabled: kicks there must find nothing. */
	vdev_write(&drv, 0x16, 1, 2);
	vdev_write(&drv, 0x20, DESC, 4);
	vdev_write(&drv, 0x28, AVAIL, 4);
	vdev_write(&drv, 0x30, USED, 4);
	vdev_write(&drv, 0x16, 0, 2);
	int ok = vdev_driver_ok(&drv);
	if (!racing && (qok || ok))
		fail("driver set-up failed");	/* (a racing worker may break the device at once) */
	return p->priv;
}

static void desc(int i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	vq_desc(&q0, i, addr, len, flags, next);
}

/* ---- requests ---- */

struct seg {
	uint64_t gpa;
	uint32_t len;
	bool w;
	bool fresh;
};

struct req {
	int nseg;
	struct seg seg[MAX_SEGS + 8];
	bool indirect, predictable;
	uint16_t head;
	/* predictions */
	bool breaks, no_header;
	uint32_t type;
	uint64_t sector, len;
	uint8_t status, status_before;
	uint32_t used_len;
	uint64_t status_gpa;
	int nd;
	struct seg data[MAX_SEGS + 8];
	bool reads, writes;	/* the disk: IN; OUT, DISCARD, WRITE_ZEROES applied */
	int first, count;	/* sectors touched */
	uint8_t ranges[32][16];	/* DISCARD/WRITE_ZEROES as the device will see them */
	int nranges;
	bool zero;		/* the sectors become zeroes rather than data */
};

static struct req reqs[QS];
static int nreqs;
static uint64_t arena_next;
static int desc_next;

static bool alloc(uint32_t len, uint64_t *gpa)
{
	uint64_t a = ALIGN_UP(arena_next, 16);
	if (a + len > RAM)
		return false;
	*gpa = a;
	arena_next = a + len;
	return true;
}

static size_t seg_copy(const struct seg *s, int n, size_t skip, uint8_t *out, size_t len)
{
	size_t done = 0;
	for (int i = 0; i < n && done < len; i++) {
		if (skip >= s[i].len) {
			skip -= s[i].len;
			continue;
		}
		size_t k = MIN(s[i].len - skip, len - done);
		memcpy(out + done, g(s[i].gpa + skip), k);
		done += k;
		skip = 0;
	}
	return done;
}

/* What blk.c will make of a chain of fresh buffers, worked out on its own. */
static void predict(struct req *r, int kind, bool ro)
{
	struct seg rd_[MAX_SEGS + 8], wr_[MAX_SEGS + 8];
	int nr = 0, nw = 0;
	r->breaks = r->nseg > VIRTQ_MAX_SEGS;
	for (int i = 0; i < r->nseg; i++) {
		const struct seg *s = &r->seg[i];
		if (!s->len || (!s->w && nw))
			r->breaks = true;
		if (s->w)
			wr_[nw++] = *s;
		else
			rd_[nr++] = *s;
	}
	if (r->breaks)
		return;
	uint64_t rlen = 0;
	for (int i = 0; i < nr; i++)
		rlen += rd_[i].len;
	r->no_header = rlen < 16 || !nw;
	if (r->no_header) {
		r->used_len = 0;
		return;
	}
	uint8_t hdr[16];
	seg_copy(rd_, nr, 0, hdr, 16);
	r->type = get_le32(hdr);
	r->sector = get_le64(hdr + 8);
	r->status_gpa = wr_[nw - 1].gpa + wr_[nw - 1].len - 1;
	r->status_before = *g(r->status_gpa);
	r->nd = 0;
	if (r->type == T_IN || r->type == T_GET_ID) {
		for (int i = 0; i < nw; i++)
			r->data[r->nd++] = wr_[i];
		if (!--r->data[r->nd - 1].len)
			r->nd--;
	} else {
		size_t skip = 16;
		for (int i = 0; i < nr; i++) {
			if (skip >= rd_[i].len) {
				skip -= rd_[i].len;
				continue;
			}
			r->data[r->nd++] = (struct seg){ rd_[i].gpa + skip, rd_[i].len - skip, false, true };
			skip = 0;
		}
	}
	r->len = 0;
	for (int i = 0; i < r->nd; i++)
		r->len += r->data[i].len;
	r->used_len = 1;
	r->reads = r->writes = r->zero = false;
	uint64_t len = r->len, sector = r->sector;
	switch (r->type) {
	case T_IN:
	case T_OUT:
		if (len % 512 || sector > SECTORS || len > DISK_BYTES - sector * 512 || (r->type == T_OUT && ro)) {
			r->status = 1;
			break;
		}
		r->status = 0;
		r->first = sector;
		r->count = len / 512;
		r->reads = r->type == T_IN && len;
		r->writes = r->type == T_OUT && len;
		if (r->type == T_IN)
			r->used_len += len;
		break;
	case T_FLUSH:
		r->status = 0;
		break;
	case T_GET_ID:
		r->status = 0;
		r->used_len += MIN(len, 20);
		break;
	case T_DISCARD:
	case T_WRITE_ZEROES:
		if (kind == 1) {	/* qcow2 has neither */
			r->status = 2;
			break;
		}
		if (ro) {
			r->status = 1;
			break;
		}
		if (!len || len % 16 || len / 16 > 32) {
			r->status = 2;
			break;
		}
		r->nranges = len / 16;
		r->status = 0;
		for (int i = 0; i < r->nranges && !r->status; i++) {
			uint8_t *x = r->ranges[i];
			seg_copy(r->data, r->nd, 16 * i, x, 16);
			uint64_t s = get_le64(x);
			uint32_t n = get_le32(x + 8), fl = get_le32(x + 12);
			if ((fl & ~1u) || (r->type == T_DISCARD && fl))
				r->status = 2;
			else if (n > (1u << 22) || s > SECTORS || n > SECTORS - s)
				r->status = 1;
		}
		r->writes = r->zero = !r->status;
		break;
	default:
		r->status = 2;
		break;
	}
}

/* Random-looking bytes for data the guest writes. */
static uint32_t rng;
static uint8_t next_byte(void)
{
	rng = rng * 1103515245 + 12345;
	return rng >> 16;
}

struct input {
	const uint8_t *p;
	size_t n;
};

static bool take(struct input *in, void *out, size_t n)
{
	if (in->n < n)
		return false;
	memcpy(out, in->p, n);
	in->p += n;
	in->n -= n;
	return true;
}

/* Build the next request from the input into guest RAM; false when the input or room runs out. */
static bool build(struct input *in, struct req *r, int kind, bool ro)
{
	static const uint32_t types[6] = { T_IN, T_OUT, T_FLUSH, T_GET_ID, T_DISCARD, T_WRITE_ZEROES };
	uint8_t t, s, shape, n;
	uint64_t sector;
	if (!take(in, &t, 1) || !take(in, &s, 1))
		return false;
	uint32_t type = t < 0xf0 ? types[t % 6] : t & 15u;
	sector = s;
	if (s >= 0xe0 && !take(in, &sector, 8))
		return false;
	if (!take(in, &shape, 1) || !take(in, &n, 1))
		return false;
	memset(r, 0, sizeof(*r));
	r->predictable = true;
	r->indirect = shape & 1;
	bool in_type = type == T_IN || type == T_GET_ID;
	bool data_w = in_type ^ !!(shape & 8);

	/* Data buffers. */
	struct seg data[MAX_SEGS];
	int nd = 0;
	for (int i = 0; i < n && nd < MAX_SEGS; i++) {
		uint8_t b;
		if (!take(in, &b, 1))
			return false;
		uint32_t len = (b & 63) * 128;
		if ((b & 63) == 63) {
			uint16_t l;
			if (!take(in, &l, 2))
				return false;
			len = l;
		}
		struct seg sg = { 0, len, data_w, true };
		switch (b >> 6) {
		case 0:
			if (!alloc(len, &sg.gpa))
				return false;
			break;
		case 1: {
			uint16_t o;
			if (!take(in, &o, 2))
				return false;
			sg.gpa = ARENA + 8ULL * o;
			sg.fresh = false;
			break;
		}
		case 2: {
			uint32_t a;
			if (!take(in, &a, 4))
				return false;
			sg.gpa = a;
			sg.fresh = false;
			break;
		}
		default:
			sg.gpa = nd ? data[nd - 1].gpa : ARENA;
			sg.fresh = false;
			break;
		}
		if (!sg.fresh)
			r->predictable = false;
		data[nd++] = sg;
	}
	/* Their contents: ranges for DISCARD/WRITE_ZEROES, bytes for other writes, a fill for reads. */
	uint8_t ranges[32 * 16];
	size_t rlen = 0;
	if (type == T_DISCARD || type == T_WRITE_ZEROES) {
		uint8_t k;
		if (!take(in, &k, 1))
			return false;
		for (int i = 0; i < k && i < 32; i++) {
			uint8_t x[3];
			if (!take(in, x, 3))
				return false;
			put_le64(ranges + rlen, x[0] == 0xff ? UINT64_MAX / 512 - 1 : x[0]);
			put_le32(ranges + rlen + 8, x[1] == 0xff ? 1u << 23 : x[1]);
			put_le32(ranges + rlen + 12, x[2] & 0x80 ? x[2] : x[2] & 1);
			rlen += 16;
		}
	}
	size_t off = 0;
	for (int i = 0; i < nd; i++) {
		if (!data[i].fresh)
			continue;	/* somebody else's buffer: left as it is */
		for (uint32_t j = 0; j < data[i].len; j++, off++)
			*g(data[i].gpa + j) = data_w ? D_FILL : off < rlen ? ranges[off] : next_byte();
	}

	/* The header, readable data, writable data, the status byte. */
	int hlen = shape & 32 ? 8 : 16;
	uint64_t hgpa;
	bool merge_hdr = (shape & 2) && !data_w && nd && data[0].fresh;
	if (!alloc(hlen + (merge_hdr ? data[0].len : 0), &hgpa))
		return false;
	if (merge_hdr) {
		memmove(g(hgpa + hlen), g(data[0].gpa), data[0].len);
		data[0].gpa = hgpa + hlen;
	}
	uint8_t hdr[16];
	put_le32(hdr, type);
	put_le32(hdr + 4, 0);
	put_le64(hdr + 8, sector);
	memcpy(g(hgpa), hdr, hlen);
	struct seg rs[MAX_SEGS + 4], ws[MAX_SEGS + 4];
	int nr = 0, nw = 0;
	if (shape & 64 && hlen == 16) {
		rs[nr++] = (struct seg){ hgpa, 8, false, true };
		rs[nr++] = (struct seg){ hgpa + 8, 8 + (merge_hdr ? data[0].len : 0), false, true };
	} else {
		rs[nr++] = (struct seg){ hgpa, hlen + (merge_hdr ? data[0].len : 0), false, true };
	}
	for (int i = merge_hdr ? 1 : 0; i < nd; i++) {
		if (data_w)
			ws[nw++] = data[i];
		else
			rs[nr++] = data[i];
	}
	if (!(shape & 16)) {
		if ((shape & 4) && data_w && nw && ws[nw - 1].fresh) {
			/* The status byte right after the last data byte, in one buffer. */
			struct seg *last = &ws[nw - 1];
			uint64_t a;
			if (!alloc(last->len + 1, &a))
				return false;
			memset(g(a), D_FILL, last->len);
			last->gpa = a;
			last->len++;
			*g(a + last->len - 1) = S_SENTINEL;
		} else {
			uint64_t a;
			if (!alloc(1, &a))
				return false;
			*g(a) = S_SENTINEL;
			ws[nw++] = (struct seg){ a, 1, true, true };
		}
	}
	r->nseg = 0;
	if (shape & 128) {
		for (int i = 0; i < nw; i++)
			r->seg[r->nseg++] = ws[i];
		for (int i = 0; i < nr; i++)
			r->seg[r->nseg++] = rs[i];
	} else {
		for (int i = 0; i < nr; i++)
			r->seg[r->nseg++] = rs[i];
		for (int i = 0; i < nw; i++)
			r->seg[r->nseg++] = ws[i];
	}

	/* Descriptors: in the ring's table, or an indirect table the head points at. */
	if (r->indirect) {
		uint64_t t;
		if (desc_next >= QS || !alloc(16 * r->nseg, &t))
			return false;
		for (int i = 0; i < r->nseg; i++) {
			uint8_t *d = g(t + 16 * i);
			const struct seg *sg = &r->seg[i];
			put_le64(d, sg->gpa); put_le32(d + 8, sg->len);
			put_le16(d + 12, (i + 1 < r->nseg ? 1 : 0) | (sg->w ? 2 : 0)); put_le16(d + 14, i + 1);
		}
		r->head = desc_next++;
		desc(r->head, t, 16 * r->nseg, 4, 0);
	} else {
		if (desc_next + r->nseg > QS)
			return false;
		r->head = desc_next;
		for (int i = 0; i < r->nseg; i++) {
			const struct seg *sg = &r->seg[i];
			desc(desc_next, sg->gpa, sg->len, (i + 1 < r->nseg ? 1 : 0) | (sg->w ? 2 : 0), desc_next + 1);
			desc_next++;
		}
	}
	if (r->predictable)
		predict(r, kind, ro);
	return true;
}

/* ---- running them ---- */

static void post(const struct req *r, bool kick)
{
	vq_add(&q0, r->head);
	if (kick)
		vq_kick(&q0);
	for (int qi = 1; kick && stray_kicks && qi < 10; qi++)
		vdev_write(&drv, VPCI_NOTIFY + VPCI_NOTIFY_MULT * qi, qi, 2);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Wait until the worker has taken what it will take and returned all of it. */
static void settle(struct virtio_dev *vd)
{
	struct virtq *q = &vd->q[0];
	double deadline = now() + 10;
	for (unsigned spin = 0;; spin++) {
		pthread_mutex_lock(&q->lock);
		uint16_t last = q->last_avail, used = q->used_idx;
		pthread_mutex_unlock(&q->lock);
		bool broken = __atomic_load_n(&vd->broken, __ATOMIC_ACQUIRE);
		uint16_t idx = __atomic_load_n((uint16_t *)g(AVAIL + 2), __ATOMIC_ACQUIRE);
		if (used == last && (broken || last == idx)) {
			/* The worker may still be between its last push and its next pop: look again. */
			sched_yield();
			pthread_mutex_lock(&q->lock);
			bool same = q->last_avail == last && q->used_idx == used;
			pthread_mutex_unlock(&q->lock);
			if (same)
				return;
		}
		if ((spin & 1023) == 0 && now() > deadline)
			fail("the device did not finish its requests within 10 s (%u taken, %u returned, %u posted)",
			     last, used, idx);
		sched_yield();
	}
}

static void seg_fetch(const struct seg *s, int n, uint8_t *out)
{
	size_t off = 0;
	for (int i = 0; i < n; i++) {
		memcpy(out + off, g(s[i].gpa), s[i].len);
		off += s[i].len;
	}
}

/* Requests [from, to) ran together: check each against its prediction, then update the model. */
static void check_batch(struct virtio_dev *vd, int from, int to, uint16_t used_from)
{
	static const char id_expect[20] = "lkvm-fuzz-disk";
	int expect_done = to - from;
	bool expect_broken = false;
	for (int i = from; i < to; i++)
		if (reqs[i].breaks) {
			expect_done = i - from;
			expect_broken = true;
			break;
		}
	int done = (uint16_t)(vd->q[0].used_idx - used_from);
	if (vd->broken != expect_broken || done != expect_done)
		fail("requests %d-%d: %d completed, device %s; expected %d, %s", from, to - 1, done,
		     vd->broken ? "broken" : "working", expect_done, expect_broken ? "broken" : "working");
	/* Used entries by head. */
	static uint32_t used_len[QS];
	static bool used_seen[QS];
	memset(used_seen, 0, sizeof(used_seen));
	for (int i = 0; i < done; i++) {
		const uint8_t *e = g(USED + 4 + 8 * ((uint16_t)(used_from + i) % QS));
		uint32_t head = get_le32(e);
		if (head >= QS || used_seen[head])
			fail("used entry %d names head %u (again?)", i, head);
		used_seen[head] = true;
		used_len[head] = get_le32(e + 4);
	}
	/* Sectors two requests of the batch both touch, one of them writing: their order is open. */
	static int touched[SECTORS], written[SECTORS];
	memset(touched, 0, sizeof(touched));
	memset(written, 0, sizeof(written));
	for (int i = from; i < from + done; i++) {
		struct req *r = &reqs[i];
		if (r->no_header)
			continue;
		if (r->type == T_DISCARD || r->type == T_WRITE_ZEROES) {
			for (int k = 0; r->writes && k < r->nranges; k++)
				for (uint32_t s = 0; s < get_le32(r->ranges[k] + 8); s++) {
					touched[get_le64(r->ranges[k]) + s]++;
					written[get_le64(r->ranges[k]) + s]++;
				}
		} else if (r->reads || r->writes) {
			for (int s = r->first; s < r->first + r->count; s++) {
				touched[s]++;
				written[s] += r->writes;
			}
		}
	}
	static uint8_t buf[RAM];
	for (int i = from; i < to; i++) {
		struct req *r = &reqs[i];
		bool ran = i < from + done;
		if (r->breaks || !ran) {
			if (!r->breaks && !r->no_header && *g(r->status_gpa) != r->status_before)
				fail("request %d never ran but its status is %u", i, *g(r->status_gpa));
			continue;
		}
		if (!used_seen[r->head])
			fail("request %d (head %u) ran but is not in the used ring", i, r->head);
		if (used_len[r->head] != r->used_len)
			fail("request %d (type %u, %llu bytes): used length %u, expected %u", i, r->type,
			     (unsigned long long)r->len, used_len[r->head], r->used_len);
		if (r->no_header)
			continue;
		uint8_t st = *g(r->status_gpa);
		if (st != r->status)
			fail("request %d (type %u, sector %llu, %llu bytes): status %u, expected %u", i, r->type,
			     (unsigned long long)r->sector, (unsigned long long)r->len, st, r->status);
		if (r->type == T_GET_ID) {
			seg_fetch(r->data, r->nd, buf);
			size_t n = MIN(r->len, 20);
			if (memcmp(buf, id_expect, n))
				fail("request %d: GET_ID returned other bytes", i);
			for (size_t k = n; k < r->len; k++)
				if (buf[k] != D_FILL)
					fail("request %d: GET_ID wrote byte %zu of %llu", i, k, (unsigned long long)r->len);
		}
		if (r->reads) {
			seg_fetch(r->data, r->nd, buf);
			for (int s = 0; s < r->count; s++) {
				int sec = r->first + s;
				if (known[sec] && written[sec] == 0 && memcmp(buf + 512 * s, model[sec], 512))
					fail("request %d: sector %d read back other bytes than the disk holds", i, sec);
			}
		}
	}
	/* What the disk holds now. */
	for (int i = from; i < from + done; i++) {
		struct req *r = &reqs[i];
		if (r->no_header || !r->writes)
			continue;
		if (r->zero) {
			for (int k = 0; k < r->nranges; k++)
				for (uint32_t s = 0; s < get_le32(r->ranges[k] + 8); s++) {
					uint64_t sec = get_le64(r->ranges[k]) + s;
					memset(model[sec], 0, 512);
					known[sec] = known[sec] && touched[sec] == 1;
				}
		} else {
			seg_fetch(r->data, r->nd, buf);
			for (int s = 0; s < r->count; s++) {
				int sec = r->first + s;
				memcpy(model[sec], buf + 512 * s, 512);
				known[sec] = known[sec] && touched[sec] == 1;
			}
		}
	}
}

/* The raw file holds what the model says. */
static void check_raw_contents(void)
{
	static uint8_t file[DISK_BYTES];
	if (pread(raw_fd, file, DISK_BYTES, 0) != DISK_BYTES)
		fail("cannot read the raw image");
	for (int s = 0; s < SECTORS; s++)
		if (known[s] && memcmp(file + 512 * s, model[s], 512))
			fail("sector %d of the raw image is not what the guest wrote there", s);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_add_timeout(argc, argv);
	race = getenv("LKVM_FUZZ_BLK_NO_RACE") == NULL;
	static const struct irq_ops irqs = { .line = irq_hook, .msi = msi_hook };
	fake_vm_init(&vm, &irqs);
	ram = malloc(RAM);	/* malloc: ASan red zones around guest RAM */
	vm.mem.r[0] = (struct mem_region){ 0, RAM, ram };
	vm.mem.nr = 1;
	vm.mem.ram_size = RAM;
	if (device_type_create(&vm, &pci_host_device))
		fail("%s", err_msg());
	/* Temporary images, on tmpfs where there is one: FLUSH is cheap there. */
	if (access("/dev/shm", W_OK)) {
		memcpy(raw_path, "/tmp/lkvm-fuzz-blk-XXXXXX", sizeof(raw_path));
		memcpy(qcow_path, "/tmp/lkvm-fuzz-blk-XXXXXX", sizeof(qcow_path));
	}
	raw_fd = mkstemp(raw_path);
	qcow_fd = mkstemp(qcow_path);
	if (raw_fd < 0 || qcow_fd < 0)
		fail("mkstemp: %s", strerror(errno));
	snprintf(qcow_reopen, sizeof(qcow_reopen), "/proc/self/fd/%d", qcow_fd);
	make_qcow2();
	if (ftruncate(raw_fd, RAW_FILE))	/* zeroes for now: reset_disk fills it */
		fail("ftruncate: %s", strerror(errno));
	write_all(qcow_fd, qcow_image, QCOW_FILE);
	disks[0] = disk_open(raw_path, false, false);
	disks[1] = disk_open(qcow_reopen, false, false);
	/* Gone from the file system at once: nothing is left behind, whatever ends the fuzzer. */
	unlink(raw_path);
	unlink(qcow_path);
	for (int k = 0; k < 2; k++) {
		if (!disks[k])
			fail("disk_open: %s", err_msg());
		snprintf(disks[k]->serial, sizeof(disks[k]->serial), "lkvm-fuzz-disk");
		if (virtio_blk_add_queues(&vm, disks[k], 2) || devices_start(&vm))
			fail("virtio_blk_add: %s", err_msg());
		devs[k] = pci_host(&vm)->devs[k + 1];
	}
	if (!disks[0]->plain || disks[1]->plain)
		fail("the raw disk should be plain (guest offsets are file offsets), the qcow2 one not");
	vdev_attach(&drv, &vm, devs[0]);
	if (vq_bind(&q0, &drv, 0, QS, DESC, AVAIL, USED))
		fail("the rings are not in guest RAM");
	reset_disk(0);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t flags = data[0];
	int kind = flags & 1;
	bool ro = flags & 2, serial = flags & 4, kick_each = flags & 8;
	use_msix = flags & 32;
	stray_kicks = flags & 64;
	struct input in = { data + 1, size - 1 };
	reset_disk(kind);
	disks[kind]->ro = ro;
	struct virtio_dev *vd = driver_init(kind, RAM);
	q0.avail_idx = 0;
	arena_next = ARENA;
	desc_next = 0;
	nreqs = 0;
	rng = size;

	if (serial) {
		/* One at a time: post, wait, check. */
		while (nreqs < QS) {
			struct req *r = &reqs[nreqs];
			if (!build(&in, r, kind, ro))
				break;
			uint16_t used0 = vd->q[0].used_idx;
			post(r, true);
			settle(vd);
			if (r->predictable)
				check_batch(vd, nreqs, nreqs + 1, used0);
			nreqs++;
			/* Descriptors and buffers are free again for the next request. */
			desc_next = 0;
			arena_next = ARENA;
			if (!r->predictable)
				for (int s = 0; s < SECTORS; s++)
					known[s] = false;
			/* A broken device, or rings a hostile request may have written: the driver resets it. */
			if (vd->broken || !r->predictable) {
				vd = driver_init(kind, ARENA);
				q0.avail_idx = 0;
			}
		}
	} else {
		bool all_predictable = true;
		while (nreqs < QS && build(&in, &reqs[nreqs], kind, ro)) {
			all_predictable &= reqs[nreqs].predictable;
			post(&reqs[nreqs], kick_each);
			nreqs++;
		}
		if (!kick_each)
			vq_kick(&q0);
		if (race && (flags & 16)) {
			/*
			 * A driver that scribbles on its avail index and resets the
			 * device while it works: the worker breaks the device (under
			 * the queue lock) while the reset holds the register lock.
			 */
			racing = true;
			for (int k = 0; k < 1000; k++) {
				__atomic_store_n((uint16_t *)g(AVAIL + 2), q0.avail_idx + 0x8000, __ATOMIC_RELEASE);
				vq_kick(&q0);
				vd = driver_init(kind, 0);
			}
			racing = false;
			usleep(1000);	/* requests still in flight finish into RAM nobody checks */
			for (int s = 0; s < SECTORS; s++)
				known[s] = false;
			all_predictable = false;
		} else {
			settle(vd);
		}
		if (all_predictable)
			check_batch(vd, 0, nreqs, 0);
		else
			for (int s = 0; s < SECTORS; s++)
				known[s] = false;
	}
	/*
	 * Reset: the worker may still hold a kick it has not looked at, and the
	 * other device shares these rings. A disabled queue gives it nothing.
	 */
	reset_dev(vd);
	check_files();
	if (kind == 0)
		check_raw_contents();
	return 0;
}
