/*
 * Multi-queue virtio-blk (VIRTIO_BLK_F_MQ), driven through the transport the
 * way a guest's driver would: the queue count offered, a worker per queue
 * (requests on 2-4 queues in flight at once, data checked in the host file;
 * one queue stuck in the backend does not hold the others), FLUSH covering
 * writes acknowledged on other queues, qcow2 allocation from two queues at
 * once, a hostile driver's queue indexes, snapshots carrying every queue (and
 * a 1-queue snapshot restoring into a device made with more), the queues=N
 * disk option.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "snap_buf.h"
#include "devices.h"
#include "disk.h"
#include "snapshot.h"
#include "test.h"
#include "threads.h"
#include "virtio.h"
#include "virtio_fixture.h"

#define F_MQ 12
#define QS 32			/* entries per queue: slot s uses descriptors 3s..3s+2 */
#define RINGS 0x200000		/* queue i: desc at RINGS + i * 0x4000, avail +0x1000, used +0x2000 */
#define HDRS 0x300000		/* slot (i, s): header at HDRS + 32 * (16i + s) */
#define STATS 0x340000		/* status byte at STATS + 16i + s */
#define DATA 0x400000		/* 8 KiB of data at DATA + 0x2000 * (16i + s) */
#define SLOT(qi, s) ((qi) * 16 + (s))

static uint64_t ring(int qi) { return RINGS + 0x4000ULL * qi; }
static uint8_t *status_of(int qi, int s) { return g(STATS + SLOT(qi, s)); }
static uint8_t *data_of(int qi, int s) { return g(DATA + 0x2000ULL * SLOT(qi, s)); }

/* Reset, negotiate feats, queues 0..nq-1 of QS entries, DRIVER_OK: 0, or -1. */
static int mq_init(struct pci_dev *p, uint64_t feats, int nq)
{
	fx_attach(p);
	vdev_reset(&fx);
	if (vdev_negotiate(&fx, feats))
		return -1;
	for (int i = 0; i < nq; i++)
		if (vq_setup_at(&fxq[i], &fx, i, QS, ring(i), -1))
			return -1;
	return vdev_driver_ok(&fx);
}

/* Request slot s of queue qi (descriptors 3s..3s+2), made available, not kicked. */
static void mq_add(int qi, int s, uint32_t type, uint64_t sector, uint32_t len, bool data_out)
{
	uint64_t h = HDRS + 32ULL * SLOT(qi, s);
	put_le32(g(h), type);
	put_le32(g(h + 4), 0);
	put_le64(g(h + 8), sector);
	*status_of(qi, s) = 0xee;
	struct vq *q = &fxq[qi];
	int d = 3 * s;
	vq_desc(q, d, h, 16, VD_F_NEXT, d + 1);
	if (len) {
		vq_desc(q, d + 1, DATA + 0x2000ULL * SLOT(qi, s), len, VD_F_NEXT | (data_out ? 0 : VD_F_WRITE), d + 2);
		vq_desc(q, d + 2, STATS + SLOT(qi, s), 1, VD_F_WRITE, 0);
	} else {
		vq_desc(q, d + 1, STATS + SLOT(qi, s), 1, VD_F_WRITE, 0);
	}
	vq_add(q, d);
}

static int mq_wait(int qi, uint16_t idx) { return wait_idx(ring(qi) + 0x2000, idx); }

static char *tmp_image(uint64_t size)
{
	static char path[64];
	strcpy(path, "/tmp/lkvm-test-blkmq-XXXXXX");
	int fd = mkstemp(path);
	CHECK(fd >= 0 && ftruncate(fd, size) == 0);
	close(fd);
	return path;
}

/* A virtio-blk device of nq queues on the image at path; false (and a failed check) if it cannot open. */
static bool add_blk(const char *path, int nq)
{
	struct disk *dk = disk_open(path, false, false);
	CHECK(dk != NULL);
	if (!dk)
		return false;
	CHECK_EQ(virtio_blk_add_queues(&vm, dk, nq), 0);
	return true;
}

static void seen_worker(const char *tid, const char *comm, void *arg)
{
	bool *seen = arg;
	int i;
	if (sscanf(comm, "lkvm-blk-q%d", &i) == 1 && i >= 0 && i < 8)
		seen[i] = true;
}

/* How many of this process's threads are named lkvm-blk-q<i>, for i < n, each counted once per name. */
static int blk_worker_names_now(int n)
{
	bool seen[8] = { 0 };
	each_thread(seen_worker, seen);
	int k = 0;
	for (int i = 0; i < n; i++)
		k += seen[i];
	return k;
}

/* The same once every one of them named itself (each does as it starts), or after 2 s. */
static int blk_worker_names(int n)
{
	int k = 0;
	for (int t = 0; t < 200 && (k = blk_worker_names_now(n)) < n; t++)
		usleep(10000);
	return k;
}

TEST(four_queues_offered_and_served_at_once)
{
	setup_vm();
	char *path = tmp_image(MiB(4));
	int fd = open(path, O_RDWR);
	if (!add_blk(path, 4))
		return;
	CHECK_EQ(devices_start(&vm), 0);
	CHECK_EQ(blk_worker_names(4), 4);	/* a worker per queue */
	fx_attach(dev_at(1));
	CHECK(vdev_offered(&fx) >> F_MQ & 1);
	CHECK_EQ(rd(VPCI_DEVICE + 34, 2), 4);	/* num_queues in the device config */
	CHECK_EQ(rd(0x12, 2), 4);		/* and in the common config */
	int cap = vdev_find_cap(&fx, 0x11);
	CHECK_EQ(pci_cfg_read(dev_at(1), cap + 2, 2) & 0x7ff, 4);	/* MSI-X: 5 vectors */
	CHECK_EQ(mq_init(dev_at(1), 1ULL << VIRTIO_F_VERSION_1 | 1ULL << F_MQ, 4), 0);

	/* 4 queues x 5 writes of 8 KiB, all posted before any is waited for. */
	for (int qi = 0; qi < 4; qi++) {
		for (int s = 0; s < 5; s++) {
			memset(data_of(qi, s), SLOT(qi, s) + 1, 8192);
			mq_add(qi, s, 1, 16 * SLOT(qi, s), 8192, true);
		}
	}
	for (int qi = 0; qi < 4; qi++)
		vq_kick(&fxq[qi]);
	for (int qi = 0; qi < 4; qi++) {
		CHECK_EQ(mq_wait(qi, 5), 0);
		for (int s = 0; s < 5; s++)
			CHECK_EQ(*status_of(qi, s), 0);
	}
	/* The host file holds what each queue wrote, where it wrote it. */
	uint8_t buf[8192];
	int bad = 0;
	for (int qi = 0; qi < 4; qi++)
		for (int s = 0; s < 5; s++) {
			int k = SLOT(qi, s);
			CHECK_EQ(pread(fd, buf, 8192, 8192ULL * k), 8192);
			for (int i = 0; i < 8192; i++)
				bad += buf[i] != k + 1;
		}
	CHECK_EQ(bad, 0);
	/* Each queue reads back what the next one wrote. */
	for (int qi = 0; qi < 4; qi++) {
		memset(data_of(qi, 6), 0, 8192);
		mq_add(qi, 6, 0, 16 * SLOT((qi + 1) % 4, 2), 8192, false);
		vq_kick(&fxq[qi]);
	}
	for (int qi = 0; qi < 4; qi++) {
		CHECK_EQ(mq_wait(qi, 6), 0);
		CHECK_EQ(*status_of(qi, 6), 0);
		CHECK_EQ(data_of(qi, 6)[0], SLOT((qi + 1) % 4, 2) + 1);
		CHECK_EQ(data_of(qi, 6)[8191], SLOT((qi + 1) % 4, 2) + 1);
	}
	close(fd);
	unlink(path);
}

/* Each queue completes on its own MSI-X vector, as Linux sets them up (config on 0, queue i on i + 1). */
TEST(each_queue_interrupts_on_its_vector)
{
	setup_vm();
	char *path = tmp_image(MiB(1));
	if (!add_blk(path, 2))
		return;
	CHECK_EQ(devices_start(&vm), 0);
	fx_attach(dev_at(1));
	vdev_reset(&fx);
	CHECK_EQ(vdev_negotiate(&fx, 1ULL << VIRTIO_F_VERSION_1 | 1ULL << F_MQ), 0);
	vdev_msix(&fx, 3, 0x40, 0);
	for (int qi = 0; qi < 2; qi++)
		CHECK_EQ(vq_setup_at(&fxq[qi], &fx, qi, QS, ring(qi), qi + 1), 0);
	CHECK_EQ(vdev_driver_ok(&fx), 0);
	for (int round = 0; round < 20; round++) {
		for (int qi = 0; qi < 2; qi++) {
			mq_add(qi, round % 8, round & 1, 8 * qi, 4096, round & 1);
			vq_kick(&fxq[qi]);
		}
		for (int qi = 0; qi < 2; qi++) {
			CHECK_EQ(vq_wait(&fxq[qi], 2000), 0);	/* woken by an interrupt only */
			uint16_t id;
			uint32_t len;
			CHECK(vq_used(&fxq[qi], &id, &len));
			CHECK_EQ(id, 3 * (round % 8));
			CHECK_EQ(*status_of(qi, round % 8), 0);
		}
	}
	unlink(path);
}

/*
 * A backend in memory whose calls the test sees and holds: reads of sector 0
 * wait until released; flush records how many writes had completed when it
 * began, and sleeps before it returns.
 */
static struct {
	uint8_t bytes[MiB(1)];
	pthread_mutex_t lock;
	bool hold_reads, in_held_read;
	int writes_done, flushes, writes_at_flush;
	bool flush_returned;
} mem = { .lock = PTHREAD_MUTEX_INITIALIZER };

static int mem_rw(uint64_t off, const struct iovec *iov, int n, bool write)
{
	for (int i = 0; i < n; i++) {
		if (write)
			memcpy(mem.bytes + off, iov[i].iov_base, iov[i].iov_len);
		else
			memcpy(iov[i].iov_base, mem.bytes + off, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	return 0;
}

static int mem_readv(struct disk *d, uint64_t off, const struct iovec *iov, int n)
{
	if (off == 0) {
		__atomic_store_n(&mem.in_held_read, true, __ATOMIC_RELEASE);
		while (__atomic_load_n(&mem.hold_reads, __ATOMIC_ACQUIRE))
			usleep(1000);
		__atomic_store_n(&mem.in_held_read, false, __ATOMIC_RELEASE);
	}
	return mem_rw(off, iov, n, false);
}

static int mem_writev(struct disk *d, uint64_t off, const struct iovec *iov, int n)
{
	mem_rw(off, iov, n, true);
	__atomic_add_fetch(&mem.writes_done, 1, __ATOMIC_ACQ_REL);
	return 0;
}

static int mem_flush(struct disk *d)
{
	__atomic_store_n(&mem.writes_at_flush, __atomic_load_n(&mem.writes_done, __ATOMIC_ACQUIRE), __ATOMIC_RELEASE);
	__atomic_add_fetch(&mem.flushes, 1, __ATOMIC_ACQ_REL);
	usleep(50000);
	__atomic_store_n(&mem.flush_returned, true, __ATOMIC_RELEASE);
	return 0;
}

static void mem_close(struct disk *d) {}

static const struct disk_ops mem_ops = {
	.readv = mem_readv, .writev = mem_writev, .flush = mem_flush, .close = mem_close,
};

static struct disk *mem_disk(void)
{
	struct disk *d = xcalloc(1, sizeof(*d));
	d->ops = &mem_ops;
	d->path = "mem";
	d->size = sizeof(mem.bytes);
	d->fd = -1;
	return d;
}

static bool flag_set(void *p) { return __atomic_load_n((bool *)p, __ATOMIC_ACQUIRE); }

TEST(a_stuck_queue_does_not_hold_the_others)
{
	setup_vm();
	CHECK_EQ(virtio_blk_add_queues(&vm, mem_disk(), 2), 0);
	CHECK_EQ(devices_start(&vm), 0);
	CHECK_EQ(mq_init(dev_at(1), 1ULL << VIRTIO_F_VERSION_1 | 1ULL << F_MQ, 2), 0);
	__atomic_store_n(&mem.hold_reads, true, __ATOMIC_RELEASE);
	mq_add(0, 0, 0, 0, 4096, false);	/* held in the backend */
	vq_kick(&fxq[0]);
	CHECK_EQ(fake_irq_wait(flag_set, &mem.in_held_read, 2000, 1), 0);
	memset(data_of(1, 0), 0x42, 4096);
	mq_add(1, 0, 1, 64, 4096, true);
	vq_kick(&fxq[1]);
	CHECK_EQ(mq_wait(1, 1), 0);		/* queue 1 done while queue 0 waits */
	CHECK_EQ(*status_of(1, 0), 0);
	CHECK_EQ(mem.bytes[64 * 512], 0x42);
	CHECK_EQ(vq_used_idx(&fxq[0]), 0);
	__atomic_store_n(&mem.hold_reads, false, __ATOMIC_RELEASE);
	CHECK_EQ(mq_wait(0, 1), 0);
	CHECK_EQ(*status_of(0, 0), 0);
}

TEST(flush_covers_writes_acknowledged_on_other_queues)
{
	setup_vm();
	CHECK_EQ(virtio_blk_add_queues(&vm, mem_disk(), 3), 0);
	CHECK_EQ(devices_start(&vm), 0);
	CHECK_EQ(mq_init(dev_at(1), 1ULL << VIRTIO_F_VERSION_1 | 1ULL << F_MQ, 3), 0);
	int before = mem.writes_done, flushes = mem.flushes;
	mem.flush_returned = false;
	for (int qi = 1; qi < 3; qi++) {
		memset(data_of(qi, 0), 0x10 + qi, 4096);
		mq_add(qi, 0, 1, 8 * qi, 4096, true);
		vq_kick(&fxq[qi]);
		CHECK_EQ(mq_wait(qi, 1), 0);	/* acknowledged */
		CHECK_EQ(*status_of(qi, 0), 0);
	}
	mq_add(0, 0, 4, 0, 0, false);		/* FLUSH on a queue that wrote nothing */
	vq_kick(&fxq[0]);
	CHECK_EQ(mq_wait(0, 1), 0);
	/* Answered only after the backend's flush returned, which began after both writes. */
	CHECK(__atomic_load_n(&mem.flush_returned, __ATOMIC_ACQUIRE));
	CHECK_EQ(*status_of(0, 0), 0);
	CHECK_EQ(mem.flushes, flushes + 1);
	CHECK_EQ(mem.writes_at_flush, before + 2);
}

TEST(qcow2_allocating_writes_from_two_queues)
{
	NEED_TOOL("qemu-img", "qemu-utils");
	NEED_TOOL("qemu-io", "qemu-utils");
	setup_vm();
	char dir[] = "/tmp/lkvm-test-blkmq-XXXXXX", img[64], cmd[512];
	CHECK(mkdtemp(dir) != NULL);
	snprintf(img, sizeof(img), "%s/d.qcow2", dir);
	snprintf(cmd, sizeof(cmd), "qemu-img create -q -f qcow2 %s 8M", img);
	CHECK_EQ(system(cmd), 0);
	if (!add_blk(img, 2))
		return;
	CHECK_EQ(devices_start(&vm), 0);
	CHECK_EQ(mq_init(dev_at(1), 1ULL << VIRTIO_F_VERSION_1 | 1ULL << F_MQ, 2), 0);
	/* Each request a cluster nothing allocated yet, both queues at once, several rounds. */
	for (int round = 0; round < 4; round++) {
		for (int qi = 0; qi < 2; qi++)
			for (int s = 0; s < 5; s++) {
				int k = round * 10 + SLOT(qi, s) - qi * 11;	/* 0..39 */
				memset(data_of(qi, s), k + 1, 8192);
				mq_add(qi, s, 1, 128ULL * k, 8192, true);
			}
		vq_kick(&fxq[0]);
		vq_kick(&fxq[1]);
		for (int qi = 0; qi < 2; qi++) {
			CHECK_EQ(mq_wait(qi, 5 * (round + 1)), 0);
			for (int s = 0; s < 5; s++)
				CHECK_EQ(*status_of(qi, s), 0);
		}
	}
	mq_add(1, 0, 4, 0, 0, false);
	vq_kick(&fxq[1]);
	CHECK_EQ(mq_wait(1, 21), 0);
	CHECK_EQ(*status_of(1, 0), 0);
	snprintf(cmd, sizeof(cmd), "qemu-img check -q %s", img);
	CHECK_EQ(system(cmd), 0);
	int bad = 0;
	for (int k = 0; k < 40; k++) {
		snprintf(cmd, sizeof(cmd), "qemu-io -f qcow2 -c 'read -P %d %d 8192' %s >/dev/null", k + 1, 65536 * k, img);
		bad += system(cmd) != 0;
	}
	CHECK_EQ(bad, 0);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK_EQ(system(cmd), 0);
}

/* Queue indexes a hostile driver makes up: nothing is served, nothing crashes, queue 0 goes on. */
TEST(hostile_queue_indexes)
{
	setup_vm();
	char *path = tmp_image(MiB(1));
	if (!add_blk(path, 2))
		return;
	CHECK_EQ(devices_start(&vm), 0);
	CHECK_EQ(mq_init(dev_at(1), 1ULL << VIRTIO_F_VERSION_1 | 1ULL << F_MQ, 1), 0);	/* queue 1 never enabled */
	vdev_msix(&fx, 3, 0x40, VIRTIO_NO_VECTOR);
	/* Queue 1's ring holds a request, but the queue is not enabled: its kicks do nothing. */
	CHECK_EQ(vq_bind(&fxq[1], &fx, 1, QS, ring(1), ring(1) + 0x1000, ring(1) + 0x2000), 0);
	memset(g(ring(1)), 0, 0x3000);
	mq_add(1, 0, 0, 0, 512, false);
	vq_kick(&fxq[1]);
	/* Kicks for queues that do not exist, at and past the notify region's end, any width. */
	for (int qi = 2; qi < 64; qi++) {
		wr(VPCI_NOTIFY + VPCI_NOTIFY_MULT * qi, qi, 2);
		wr(VPCI_NOTIFY + VPCI_NOTIFY_MULT * qi, 0xffff, 4);
	}
	/* Queue registers of a selected queue out of range: ignored, read as nothing. */
	wr(0x16, 9, 2);
	wr(0x20, ring(2), 4);
	wr(0x1c, 1, 2);
	CHECK_EQ(rd(0x1c, 2), 0);
	CHECK_EQ(rd(0x18, 2), 0);
	wr(0x16, 0xffff, 2);
	wr(0x1a, 7, 2);
	CHECK_EQ(rd(0x1a, 2), VIRTIO_NO_VECTOR);
	/* Queue 0 on an MSI-X vector past the table: its interrupts go nowhere, its requests are served. */
	wr(0x16, 0, 2);
	wr(0x1a, 200, 2);
	usleep(20000);
	CHECK_EQ(vq_used_idx(&fxq[1]), 0);
	CHECK_EQ(*status_of(1, 0), 0xee);
	mq_add(0, 0, 1, 8, 512, true);
	vq_kick(&fxq[0]);
	CHECK_EQ(mq_wait(0, 1), 0);
	CHECK_EQ(*status_of(0, 0), 0);
	/* Huge sizes on queue 0: an error status, the device keeps serving. */
	mq_add(0, 1, 0, UINT64_MAX / 512, 8192, false);
	vq_kick(&fxq[0]);
	CHECK_EQ(mq_wait(0, 2), 0);
	CHECK_EQ(*status_of(0, 1), 1);
	mq_add(0, 2, 0, 0, 512, false);
	vq_kick(&fxq[0]);
	CHECK_EQ(mq_wait(0, 3), 0);
	CHECK_EQ(*status_of(0, 2), 0);
	unlink(path);
}

/*
 * Workers stopped (a snapshot being taken) and started again: what the driver
 * queued meanwhile is served though no kick comes after (the stopping worker
 * may have taken it), on every queue.
 */
TEST(restarted_workers_serve_what_waits)
{
	setup_vm();
	char *path = tmp_image(MiB(1));
	int fd = open(path, O_RDWR);
	if (!add_blk(path, 2))
		return;
	CHECK_EQ(devices_start(&vm), 0);
	CHECK_EQ(mq_init(dev_at(1), 1ULL << VIRTIO_F_VERSION_1 | 1ULL << F_MQ, 2), 0);
	for (int round = 0; round < 3; round++) {
		devices_stop(&vm);
		for (int qi = 0; qi < 2; qi++) {
			memset(data_of(qi, round), 0x70 + 2 * round + qi, 4096);
			mq_add(qi, round, 1, 8 * (2 * round + qi), 4096, true);	/* no kick */
		}
		CHECK_EQ(devices_start(&vm), 0);
		for (int qi = 0; qi < 2; qi++) {
			CHECK_EQ(mq_wait(qi, round + 1), 0);
			CHECK_EQ(*status_of(qi, round), 0);
			uint8_t b = 0;
			CHECK_EQ(pread(fd, &b, 1, 8 * 512 * (2 * round + qi)), 1);
			CHECK_EQ(b, 0x70 + 2 * round + qi);
		}
	}
	close(fd);
	unlink(path);
}

/* ---- snapshots ---- */

static uint8_t *snap_buf;
static size_t snap_len;
static struct vm *src_vm;

static void save_from(struct vm *src)
{
	int fd;
	struct snap_writer *w = snap_buf_open(&fd);
	CHECK_EQ(devices_save(src, w), 0);
	CHECK_EQ(snap_buf_close(w, fd, &snap_buf, &snap_len), 0);
}

/*
 * A VM with a saved_nq-queue device on path whose driver used used_nq queues
 * (one write each), saved; a fresh VM with a new_nq-queue device on the same
 * image loads it: devices_load's result. RAM goes along.
 */
static int save_and_load(const char *path, int saved_nq, int used_nq, int new_nq)
{
	setup_vm();
	struct disk *dk = disk_open(path, false, false);
	CHECK(dk != NULL);
	CHECK_EQ(virtio_blk_add_queues(&vm, dk, saved_nq), 0);
	CHECK_EQ(devices_start(&vm), 0);
	uint64_t feats = 1ULL << VIRTIO_F_VERSION_1 | (used_nq > 1 ? 1ULL << F_MQ : 0);
	CHECK_EQ(mq_init(dev_at(1), feats, used_nq), 0);
	for (int qi = 0; qi < used_nq; qi++) {
		memset(data_of(qi, 0), 0x30 + qi, 4096);
		mq_add(qi, 0, 1, 8 * qi, 4096, true);
		vq_kick(&fxq[qi]);
		CHECK_EQ(mq_wait(qi, 1), 0);
	}
	devices_stop(&vm);
	uint8_t *ram = xcalloc(1, MiB(16));
	memcpy(ram, vm.mem.base, MiB(16));
	struct vm old = vm;
	src_vm = &old;
	save_from(&old);
	devices_destroy(&old);
	fake_vm_free(&old);
	guest_mem_free(&old.mem);
	setup_vm();
	dk = disk_open(path, false, false);
	CHECK(dk != NULL);
	CHECK_EQ(virtio_blk_add_queues(&vm, dk, new_nq), 0);
	memcpy(vm.mem.base, ram, MiB(16));
	free(ram);
	struct snap_reader *r = snap_reader_new(snap_buf, snap_len, "t");
	int ret = devices_load(&vm, r);
	snap_reader_free(r);
	if (ret == 0)
		CHECK_EQ(devices_start(&vm), 0);
	fx_attach(dev_at(1));
	for (int qi = 0; qi < used_nq; qi++)	/* the driver goes on where its rings (in the RAM copied) stand */
		CHECK_EQ(vq_bind(&fxq[qi], &fx, qi, QS, ring(qi), ring(qi) + 0x1000, ring(qi) + 0x2000), 0);
	return ret;
}

TEST(snapshot_carries_every_queue)
{
	char *path = tmp_image(MiB(1));
	int fd = open(path, O_RDWR);
	CHECK_EQ(save_and_load(path, 3, 3, 3), 0);
	CHECK_EQ(rd(0x14, 1), 0xf);	/* still DRIVER_OK */
	for (int qi = 0; qi < 3; qi++) {
		wr(0x16, qi, 2);
		CHECK_EQ(rd(0x1c, 2), 1);	/* enabled, at its rings */
		CHECK_EQ(rd(0x20, 4), ring(qi));
		/* The second request on each queue: the device knew the first. */
		memset(data_of(qi, 1), 0x50 + qi, 4096);
		mq_add(qi, 1, 1, 64 + 8 * qi, 4096, true);
		vq_kick(&fxq[qi]);
		CHECK_EQ(mq_wait(qi, 2), 0);
		CHECK_EQ(get_le32(g(ring(qi) + 0x2000 + 4 + 8)), 3);	/* used[1].id: slot 1's head */
		CHECK_EQ(*status_of(qi, 1), 0);
	}
	uint8_t b[2];
	for (int qi = 0; qi < 3; qi++) {
		CHECK_EQ(pread(fd, b, 1, 8 * 512 * qi), 1);
		CHECK_EQ(b[0], 0x30 + qi);
		CHECK_EQ(pread(fd, b, 1, (64 + 8 * qi) * 512), 1);
		CHECK_EQ(b[0], 0x50 + qi);
	}
	close(fd);
	unlink(path);
}

TEST(one_queue_snapshot_restores_into_more)
{
	char *path = tmp_image(MiB(1));
	int fd = open(path, O_RDWR);
	/* Saved with one queue, restored where the options now give two (a VM with 2 vCPUs). */
	CHECK_EQ(save_and_load(path, 1, 1, 2), 0);
	CHECK_EQ(rd(0x12, 2), 1);			/* num_queues: what the guest's driver knew */
	CHECK_EQ(rd(VPCI_DEVICE + 34, 2), 1);
	CHECK_EQ(blk_worker_names(1), 1);
	memset(data_of(0, 1), 0x66, 4096);
	mq_add(0, 1, 1, 128, 4096, true);
	vq_kick(&fxq[0]);
	CHECK_EQ(mq_wait(0, 2), 0);
	CHECK_EQ(*status_of(0, 1), 0);
	uint8_t b;
	CHECK_EQ(pread(fd, &b, 1, 128 * 512), 1);
	CHECK_EQ(b, 0x66);
	wr(VPCI_NOTIFY + VPCI_NOTIFY_MULT, 1, 2);	/* the queue that is gone: ignored */
	/* More queues in the snapshot than the device has: refused, saying so. */
	CHECK_EQ(save_and_load(path, 4, 4, 2), -1);
	CHECK(strstr(err_msg(), "4 queues") != NULL);
	close(fd);
	unlink(path);
}

/* ---- the option ---- */

TEST(queues_option)
{
	char *path = tmp_image(MiB(1));
	char arg[128];
	const char *bad[] = { "0", "9", "", "2x", "-1", "99999999999" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		setup_vm();
		snprintf(arg, sizeof(arg), "%s,queues=%s", path, bad[i]);
		CHECK_EQ(device_type_option(&vm.cfg, &virtio_blk_device, "disk", arg), -1);
		CHECK(strstr(err_msg(), "queues=") != NULL);
	}
	/* queues=3 whatever the vCPUs, and the default: one queue, whatever the vCPUs. */
	const struct { const char *opt; int vcpus, want; } ok[] = { { ",queues=3", 1, 3 }, { ",queues=8", 12, 8 }, { "", 2, 1 }, { "", 12, 1 }, { "", 1, 1 } };
	for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
		setup_vm();
		vm.nr_vcpus = ok[i].vcpus;
		snprintf(arg, sizeof(arg), "%s%s", path, ok[i].opt);
		CHECK_EQ(device_type_option(&vm.cfg, &virtio_blk_device, "disk", arg), 0);
		CHECK_EQ(device_type_create(&vm, &virtio_blk_device), 0);
		vm.nr_vcpus = 0;
		fx_attach(dev_at(1));
		CHECK_EQ(rd(0x12, 2), ok[i].want);
		CHECK_EQ(rd(VPCI_DEVICE + 34, 2), ok[i].want);
	}
	/* A qcow2 image (an overlay over the raw one, as a restore opens every writable disk): the same. */
	char qpath[] = "/tmp/lkvm-test-blkmq-q-XXXXXX";
	int qfd = mkstemp(qpath);
	char *abs = realpath(path, NULL);
	CHECK_EQ(disk_write_overlay(qfd, qpath, abs, "raw", MiB(1)), 0);
	free(abs);
	close(qfd);
	for (int k = 0; k < 2; k++) {
		setup_vm();
		vm.nr_vcpus = 4;
		snprintf(arg, sizeof(arg), "%s%s", qpath, k ? ",queues=3" : "");
		CHECK_EQ(device_type_option(&vm.cfg, &virtio_blk_device, "disk", arg), 0);
		CHECK_EQ(device_type_create(&vm, &virtio_blk_device), 0);
		vm.nr_vcpus = 0;
		fx_attach(dev_at(1));
		CHECK_EQ(rd(0x12, 2), k ? 3 : 1);
	}
	unlink(qpath);
	unlink(path);
}

TEST_MAIN()
