/*
 * Device-layer benchmarks without KVM. lkvm's own device code is driven in
 * this process the way a guest driver drives it (a VM without KVM: guest RAM,
 * the PCI host, the modern virtio-pci transport through bus_access on BAR0,
 * MSI-X delivered to a condition variable the "guest" sleeps on), and each
 * workload is timed against the same work done directly on the host, in the
 * same run, interleaved repetition by repetition:
 *
 *   virtio-blk (raw file, qcow2 image)  vs  pread/pwrite on the raw file
 *   virtio-blk per I/O engine (aio=)    vs  the same, page cache kept or dropped
 *   writes that allocate (sparse raw,   vs  pwrite into fresh space of a sparse
 *     empty qcow2, qemu-img bench -w)       file
 *   virtio-9p and the 9p server alone   vs  read/write/open+write+close
 *   the user-mode network stack         vs  a 127.0.0.1 TCP connection
 *   virtio-net with the tap backend     vs  a 127.0.0.1 TCP connection, both in
 *     to the host kernel's TCP              a private network namespace
 *
 * Prints a markdown section on stdout (progress on stderr). Every file lives
 * in one fresh mkdtemp directory under $TMPDIR (default /tmp), and only
 * regular files directly inside it (and its "share" folder) are ever removed.
 *
 * Usage: devices [-r REPETITIONS] [-w blk,aio,alloc,9p,net,tap]
 *	-r: repetitions (default 5, after one warm-up run); -w: only these
 *	workloads (default all). The tap rows need CAP_NET_ADMIN (else a row
 *	says they were skipped).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/virtio_blk.h>
#include "devices.h"
#include "disk.h"
#include "device.h"
#include "disk_aio.h"
#include "fake_vm.h"
#include "hw.h"
#include "net.h"
#include "net_user.h"
#include "p9.h"
#include "p9_client.h"
#include "pci.h"
#include "util.h"
#include "virtio.h"
#include "virtio_driver.h"
#include "vm.h"

extern char **environ;

/* ---- sizes of the workloads ---- */

#define DISK_SIZE	MiB(256)
#define BLK_QSIZE	32		/* virtqueue entries */
#define BLK_QD		16		/* requests in flight */
#define RAND_COUNT	100000		/* 4 KiB random reads per measurement */
#define SEQ_READ_PASSES	8		/* over the whole disk, per measurement */
#define SEQ_WRITE_PASSES 4
#define SEQ_LEN		MiB(1)
#define COLD_COUNT	4000		/* 4 KiB random reads per measurement, page cache dropped first */
#define P9_FILE		MiB(64)
#define P9_CHUNK	KiB(128)	/* Tread/Twrite count */
#define P9_PASSES	16		/* over the 64 MiB file, per measurement */
#define P9_FILES	2000
#define P9_SMALL	4096
#define NET_BYTES	MiB(64)		/* per run, user-mode network */
#define TAP_BYTES	MiB(256)	/* per run, tap: runs of 64 MiB were too short to time at its rates */
#define NET_TSO_SEG	65000		/* payload of one TSO segment */
#define MAX_REPS	25

/* ---- small helpers ---- */

static double secs_since(uint64_t t0) { return (mono_ns() - t0) / 1e9; }

static void cleanup(void);

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "devices: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	cleanup();
	_exit(1);
}

static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1Dull;
}

/* Test data: a 1 MiB random period, followed by a copy of its first 64 KiB so
 * that any chunk of up to 64 KiB at (offset % 1 MiB) is contiguous. */
#define PAT_PERIOD MiB(1)
static uint8_t *pat;

static void pattern_init(void)
{
	pat = malloc(PAT_PERIOD + KiB(64));
	uint64_t s = 0x9E3779B97F4A7C15ull;
	for (uint64_t i = 0; i < PAT_PERIOD; i += 8) {
		uint64_t v = rng_next(&s);
		memcpy(pat + i, &v, 8);
	}
	memcpy(pat + PAT_PERIOD, pat, KiB(64));
}

static void write_full(int fd, const void *buf, size_t n, uint64_t off)
{
	while (n) {
		ssize_t w = pwrite(fd, buf, n, off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			die("pwrite: %s", strerror(errno));
		buf = (const uint8_t *)buf + w;
		n -= w;
		off += w;
	}
}

/* ---- the temporary directory: the only place anything is created or removed ---- */

static char tmpdir[4096], sharedir[4200];
static int tmpfd = -1, sharefd = -1;

static void make_tmpdir(void)
{
	const char *t = getenv("TMPDIR");
	snprintf(tmpdir, sizeof(tmpdir), "%s/lkvm-bench-devices-XXXXXX", t && *t ? t : "/tmp");
	if (!mkdtemp(tmpdir))
		die("mkdtemp %s: %s", tmpdir, strerror(errno));
	tmpfd = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (tmpfd < 0 || mkdirat(tmpfd, "share", 0700))
		die("%s: %s", tmpdir, strerror(errno));
	snprintf(sharedir, sizeof(sharedir), "%s/share", tmpdir);
	sharefd = openat(tmpfd, "share", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (sharefd < 0)
		die("%s: %s", sharedir, strerror(errno));
}

/* Unlink the regular files directly inside dirfd: no recursion, no symlink followed. */
static void empty_dir(int dirfd)
{
	for (int pass = 0; pass < 8; pass++) {
		int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
		if (!d)
			return;
		int removed = 0;
		struct dirent *e;
		while ((e = readdir(d)))
			if ((e->d_type == DT_REG || e->d_type == DT_UNKNOWN) && !unlinkat(dirfd, e->d_name, 0))
				removed++;
		closedir(d);
		if (!removed)
			return;
	}
}

static void cleanup(void)
{
	if (sharefd >= 0) {
		empty_dir(sharefd);
		close(sharefd);
		sharefd = -1;
		unlinkat(tmpfd, "share", AT_REMOVEDIR);
	}
	if (tmpfd >= 0) {
		empty_dir(tmpfd);
		close(tmpfd);
		tmpfd = -1;
		rmdir(tmpdir);
	}
}

static void on_signal(int sig)
{
	cleanup();
	_exit(128 + sig);
}

/* ---- results ---- */

struct row {
	char name[200];
	const char *unit;
	double dev[MAX_REPS], host[MAX_REPS];
	int n;
};
static struct row rows[96];
static int nrows, reps = 5;
static const char *workloads;	/* -w: comma-separated, NULL for all */
static double load_before = -1, load_after = -1;	/* 1-minute load average around the run */
static char notes[16][3000];
static int nnotes;

typedef double (*measure_fn)(void *arg);	/* one timed run: its rate in unit per second */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
	double s[MAX_REPS];
	memcpy(s, v, n * sizeof(*v));
	qsort(s, n, sizeof(*s), cmp_double);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* One warm-up of each, then host and device alternately, reps times. */
static void run_row(const char *name, const char *unit, measure_fn dev, void *darg, measure_fn host, void *harg)
{
	struct row *r = &rows[nrows++];
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->unit = unit;
	fprintf(stderr, "devices: %s ...", name);
	host(harg);
	dev(darg);
	for (int i = 0; i < reps; i++) {
		r->host[i] = host(harg);
		r->dev[i] = dev(darg);
		r->n++;
	}
	fprintf(stderr, " device %.0f, host %.0f %s\n", median(r->dev, r->n), median(r->host, r->n), unit);
}

/*
 * n rows measured together: in each repetition every row's host run then its
 * device run, row after row, so the rows compared with each other share the
 * machine's moments (it is shared and busy), not only each with its host.
 */
static void run_rows_together(int n, char names[][200], const char *unit, measure_fn dev, void **dargs, measure_fn host,
			      void **hargs)
{
	struct row *r = &rows[nrows];
	nrows += n;
	for (int k = 0; k < n; k++) {
		snprintf(r[k].name, sizeof(r[k].name), "%.199s", names[k]);
		r[k].unit = unit;
		fprintf(stderr, "devices: %s ...\n", names[k]);
		host(hargs[k]);
		dev(dargs[k]);
	}
	for (int i = 0; i < reps; i++)
		for (int k = 0; k < n; k++) {
			r[k].host[i] = host(hargs[k]);
			r[k].dev[i] = dev(dargs[k]);
			r[k].n++;
		}
	for (int k = 0; k < n; k++)
		fprintf(stderr, "devices: %s: device %.0f, host %.0f %s\n", names[k], median(r[k].dev, r[k].n),
			median(r[k].host, r[k].n), unit);
}

/* A row saying why a group of rows was not measured. */
static void skip_row(const char *fmt, ...)
{
	struct row *r = &rows[nrows++];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->name, sizeof(r->name), fmt, ap);
	va_end(ap);
}

static void note(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(notes[nnotes++], sizeof(notes[0]), fmt, ap);
	va_end(ap);
}

/* ---- a VM without KVM, and a guest's virtio-pci driver ---- */

#define GUEST_RAM	MiB(128)
#define RING(i)		(0x100000 + (uint64_t)(i) * 0x10000)	/* desc, avail +0x1000, used +0x2000 */
#define BLK_META(i)	(0x300000 + (uint64_t)(i) * 0x10000)	/* indirect tables, headers, status */
#define BLK_DATA(s)	(MiB(16) + (uint64_t)(s) * SEQ_LEN)	/* 16 x 1 MiB, shared by the disks */
#define P9_REQ		MiB(40)
#define P9_RESP		MiB(41)
#define P9_IND		MiB(42)	/* the request's indirect descriptor table */
#define P9_DATA		MiB(43)	/* the reader's or writer's own pages (page-aligned) */

static struct vm vm;

static uint8_t *gp(uint64_t gpa, uint64_t len)
{
	uint8_t *p = guest_ptr(&vm.mem, gpa, len);
	if (!p)
		die("guest address 0x%llx+0x%llx outside RAM", (unsigned long long)gpa, (unsigned long long)len);
	return p;
}

/*
 * The fake VM of tests/lib: MSIs go to fake_irq_recorder, which wakes the "guest" thread. Its RAM
 * has huge pages as lkvm run's has by default (LKVM_BENCH_NO_THP=1: as with --no-thp).
 */
static void vm_setup(void)
{
	fake_vm_init(&vm, &fake_irq_recorder);
	if (guest_mem_alloc(&vm.mem, GUEST_RAM, 0, 0) || guest_mem_thp(&vm.mem, !getenv("LKVM_BENCH_NO_THP")) ||
	    device_type_create(&vm, &pci_host_device))
		die("fake VM: %s", err_msg());
}

static struct pci_dev *newest_dev(void)
{
	for (int s = PCI_MAX_DEVS - 1; s > 0; s--)
		if (pci_host(&vm)->devs[s])
			return pci_host(&vm)->devs[s];
	die("no PCI device registered");
	return NULL;
}

/*
 * What a guest driver does at probe, with the shared test driver
 * (tests/lib/virtio_driver.h): reset, features, MSI-X vector 0 for every
 * queue, nq queues (queue i in q[i], its rings at ring + i * 0x10000), DRIVER_OK.
 */
static void drv_init_n(struct vdev *d, struct vq *q, int nq, uint64_t feats, uint64_t ring, const uint16_t *qsize)
{
	struct pci_dev *p = newest_dev();
	vdev_attach(d, &vm, p);
	vdev_reset(d);
	if (vdev_negotiate(d, feats))
		die("%s: features 0x%llx refused", p->name, (unsigned long long)feats);
	if (!vdev_find_cap(d, 0x11))
		die("%s: no MSI-X capability", p->name);
	vdev_msix(d, 1, 0x4041, VIRTIO_NO_VECTOR);	/* no config interrupts */
	for (int i = 0; i < nq; i++)
		if (vq_setup_at(&q[i], d, i, qsize[i], ring + i * 0x10000ULL, 0))
			die("%s: queue %d set-up failed", p->name, i);
	if (vdev_driver_ok(d))
		die("%s: device not ready", p->name);
}

static void drv_init(struct vdev *d, struct vq *q, uint64_t feats, uint64_t ring, uint16_t qsize)
{
	drv_init_n(d, q, 1, feats, ring, &qsize);
}

/*
 * The driver's wait for a reply. A guest's vCPU waiting for the interrupt
 * halts, and KVM polls a halted vCPU for halt_poll_ns (200 us on x86 by
 * default) before it puts the thread to sleep: with drv_halt_poll the driver
 * does the same, else it sleeps at once (the MSI wakes it).
 */
#define KVM_HALT_POLL_NS 200000
static bool drv_halt_poll;

static void drv_wait(struct vq *q)
{
	for (uint64_t end = drv_halt_poll ? mono_ns() + KVM_HALT_POLL_NS : 0; mono_ns() < end;
	     __builtin_ia32_pause())	/* KVM's loop: cpu_relax() between looks */
		if (vq_pending(q))
			return;
	if (vq_wait(q, 20000))
		die("a device did not answer within 20 s");
}

static void put_desc(uint64_t table, int i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	gp(table + 16 * i, 16);		/* the harness placed it: a stray address ends the run */
	vdesc_put(&vm, table, i, addr, len, flags, next);
}

/* ---- virtio-blk ---- */

struct blkdev {
	struct vdev dev;
	struct vq d;
	const char *what;
	int qd;			/* requests in flight on this queue (0: BLK_QD) */
	int data0;		/* its slots' data buffers start at BLK_DATA(data0) */
	uint8_t *hdr[BLK_QD], *status[BLK_QD];
	uint64_t ind[BLK_QD];
};

/* Slot s: ring descriptor s -> an indirect table of header, data, status (as Linux does), its metadata at m. */
static void blk_slots(struct blkdev *b, uint64_t m, int n)
{
	for (int s = 0; s < n; s++) {
		uint64_t hdr = m + 0x1000 + 16 * s, st = m + 0x2000 + s;
		b->ind[s] = m + 48 * s;
		b->hdr[s] = gp(hdr, 16);
		b->status[s] = gp(st, 1);
		put_desc(b->ind[s], 0, hdr, 16, VD_F_NEXT, 1);
		put_desc(b->ind[s], 2, st, 1, VD_F_WRITE, 0);
		put_desc(b->d.desc, s, b->ind[s], 48, VD_F_INDIRECT, 0);
	}
}

static void blk_setup_size(struct blkdev *b, int idx, const char *what, uint64_t size)
{
	b->what = what;
	drv_init(&b->dev, &b->d, 1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_F_INDIRECT_DESC, RING(idx), BLK_QSIZE);
	uint64_t cap = vdev_read(&b->dev, VPCI_DEVICE, 4) | vdev_read(&b->dev, VPCI_DEVICE + 4, 4) << 32;
	if (cap != size / 512)
		die("virtio-blk %s: capacity %llu sectors", what, (unsigned long long)cap);
	blk_slots(b, BLK_META(idx), BLK_QD);
}

static void blk_setup(struct blkdev *b, int idx, const char *what) { blk_setup_size(b, idx, what, DISK_SIZE); }

/*
 * A multi-queue device (VIRTIO_BLK_F_MQ) as Linux drives one: nq queues (their
 * rings and metadata at RING/BLK_META(idx + i)), qd requests in flight on each,
 * data buffers of their own (queue i: slots from i * qd). b[0].dev is the
 * device's; every queue's vq points there.
 */
static void blk_setup_mq(struct blkdev *b, int nq, int idx, int qd, const char *what)
{
	struct vq q[4];
	uint16_t sizes[4] = { BLK_QSIZE, BLK_QSIZE, BLK_QSIZE, BLK_QSIZE };
	drv_init_n(&b[0].dev, q, nq, 1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_F_INDIRECT_DESC | 1ULL << VIRTIO_BLK_F_MQ,
		   RING(idx), sizes);
	if (vdev_read(&b[0].dev, VPCI_DEVICE + 34, 2) != (uint64_t)nq)
		die("virtio-blk %s: num_queues %llu, not %d", what,
		    (unsigned long long)vdev_read(&b[0].dev, VPCI_DEVICE + 34, 2), nq);
	for (int i = 0; i < nq; i++) {
		struct blkdev *bi = &b[i];
		bi->what = what;
		bi->d = q[i];
		bi->qd = qd;
		bi->data0 = i * qd;
		blk_slots(bi, BLK_META(idx + i), qd);
	}
}

struct blk_job {
	struct blkdev *b;	/* device path */
	int fd;			/* host path */
	bool write, random;
	uint32_t len;
	uint64_t count, start;
	uint64_t seed;		/* random offsets' seed (0: the default, as the host side's) */
	/*
	 * Allocating jobs (span != 0): each run writes space nothing wrote before,
	 * the region [start + run * span, + span); random ones put request i at the
	 * start of cluster (i * ALLOC_STRIDE) mod (span / ALLOC_CLUSTER), so each
	 * request lands in a cluster of its own, far from the one before.
	 */
	uint64_t span;
	unsigned run;
};

#define ALLOC_CLUSTER	KiB(64)		/* qcow2's default cluster size */
#define ALLOC_STRIDE	2047		/* odd: a permutation of the region's clusters */
#define ALLOC_SPAN	MiB(256)	/* one run's fresh region */

static uint64_t job_offset(const struct blk_job *j, uint64_t *rs, uint64_t *seq)
{
	if (j->span && j->random) {
		uint64_t i = (*seq)++;
		return j->start + j->run * j->span + i * ALLOC_STRIDE % (j->span / ALLOC_CLUSTER) * ALLOC_CLUSTER;
	}
	if (j->span) {
		uint64_t off = j->start + j->run * j->span + *seq;
		*seq += j->len;
		return off;
	}
	uint64_t blocks = DISK_SIZE / j->len;
	if (j->random)
		return rng_next(rs) % blocks * j->len;
	uint64_t off = *seq;
	*seq = (*seq + j->len) % DISK_SIZE;
	return off;
}

static double job_rate(const struct blk_job *j, double secs)
{
	return j->random ? j->count / secs : j->count * (double)j->len / MiB(1) / secs;
}

static double blk_dev_run(void *arg)
{
	struct blk_job *j = arg;
	struct blkdev *b = j->b;
	struct vq *d = &b->d;
	uint16_t freel[BLK_QD];
	int nfree = 0, qd = b->qd ? b->qd : BLK_QD;
	for (int s = qd - 1; s >= 0; s--)
		freel[nfree++] = s;
	uint64_t rs = j->seed ? j->seed : 0x5eed, seq = j->span ? 0 : j->start, issued = 0, done = 0;
	uint64_t t0 = mono_ns();
	while (done < j->count) {
		bool added = false;
		while (nfree && issued < j->count) {
			int s = freel[--nfree];
			uint64_t off = job_offset(j, &rs, &seq);
			put_le32(b->hdr[s], j->write ? 1 : 0);
			put_le32(b->hdr[s] + 4, 0);
			put_le64(b->hdr[s] + 8, off / 512);
			*b->status[s] = 0xff;
			put_desc(b->ind[s], 1, BLK_DATA(b->data0 + s), j->len, VD_F_NEXT | (j->write ? 0 : VD_F_WRITE), 2);
			vq_add(d, s);
			issued++;
			added = true;
		}
		if (added)
			vq_kick(d);	/* one kick per batch, as blk-mq does for a plugged batch */
		drv_wait(d);
		uint16_t id;
		uint32_t len;
		while (vq_used(d, &id, &len)) {
			if (id >= qd || *b->status[id] != 0 || (!j->write && len != j->len + 1))
				die("virtio-blk %s: request failed (slot %u, status %u, len %u)", b->what, id,
				    id < qd ? *b->status[id] : 0, len);
			freel[nfree++] = id;
			done++;
		}
	}
	double rate = job_rate(j, secs_since(t0));
	j->run++;
	return rate;
}

/* The same job split over nq queues, a driver thread per queue (as a guest's CPUs submit): total rate. */
struct mq_job {
	struct blk_job j;	/* the whole job: count is the sum over the queues */
	struct blkdev *b;	/* nq queues */
	int nq;
};

static void *mq_queue_thread(void *arg)
{
	blk_dev_run(arg);
	return NULL;
}

static double blk_mq_run(void *arg)
{
	struct mq_job *m = arg;
	struct blk_job part[4];
	pthread_t t[4];
	uint64_t t0 = mono_ns();
	for (int i = 0; i < m->nq; i++) {
		part[i] = m->j;
		part[i].b = &m->b[i];
		part[i].count = m->j.count / m->nq;
		part[i].seed = 0x5eed + 7919 * (m->j.run * m->nq + i + 1);	/* each queue its own blocks */
		if (i && pthread_create(&t[i], NULL, mq_queue_thread, &part[i]))
			die("pthread_create failed");
	}
	blk_dev_run(&part[0]);
	for (int i = 1; i < m->nq; i++)
		pthread_join(t[i], NULL);
	double secs = secs_since(t0);
	m->j.run++;
	return job_rate(&(struct blk_job){ .random = m->j.random, .len = m->j.len, .count = part[0].count * m->nq }, secs);
}

static uint8_t *hbuf;	/* the host side's buffer, 1 MiB */

static double blk_host_run(void *arg)
{
	struct blk_job *j = arg;
	uint64_t rs = 0x5eed, seq = j->span ? 0 : j->start;
	uint64_t t0 = mono_ns();
	for (uint64_t i = 0; i < j->count; i++) {
		uint64_t off = job_offset(j, &rs, &seq);
		ssize_t n = j->write ? pwrite(j->fd, hbuf, j->len, off) : pread(j->fd, hbuf, j->len, off);
		if (n != (ssize_t)j->len)
			die("host %s: %s", j->write ? "pwrite" : "pread", n < 0 ? strerror(errno) : "short");
	}
	double rate = job_rate(j, secs_since(t0));
	j->run++;
	return rate;
}

/*
 * Cold rows: the raw file's pages are dropped from the page cache (written
 * back first) before each measurement, on both sides, so every read goes to
 * the disk under /tmp. That is where an engine that blocks in its submit
 * (Linux AIO on a buffered file) differs from one that keeps the requests
 * in flight (io_uring, the thread pool).
 */
struct cold_job {
	struct blk_job j;
	int fd;		/* the raw file, whichever side runs */
};

static void drop_cache(int fd)
{
	if (fdatasync(fd) || posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED))
		die("dropping the raw file's page cache: %s", strerror(errno));
}

static double cold_dev_run(void *arg)
{
	struct cold_job *c = arg;
	drop_cache(c->fd);
	return blk_dev_run(&c->j);
}

static double cold_host_run(void *arg)
{
	struct cold_job *c = arg;
	drop_cache(c->fd);
	return blk_host_run(&c->j);
}

/*
 * The peer: QEMU's own block layer, `qemu-img bench`, on the same file with the
 * same request size and depth, in one of its I/O modes. Its rate comes from the
 * time it reports itself (the run alone, not the process start or image open).
 * qemu-img bench has no random pattern: the 4 KiB "random" job uses a stride of
 * QIMG_STRIDE blocks, odd, so consecutive requests land far apart and one run
 * of 65536 requests touches every block of the disk once.
 */
#define QIMG_STRIDE 40503
struct qimg_job {
	struct blk_job j;	/* size, count, direction, pattern */
	const char *path, *fmt, *mode;
	bool fresh;		/* a new empty image of j.span bytes at path before each run */
};

static void spawn_wait(char *const argv[], const char *what)
{
	pid_t pid;
	int st, e = posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ);
	if (e || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
		die("%s failed", what);
}

static double qimg_run(void *arg)
{
	struct qimg_job *q = arg;
	char count[32], len[32], step[32];
	snprintf(count, sizeof(count), "%llu", (unsigned long long)q->j.count);
	snprintf(len, sizeof(len), "%u", q->j.len);
	snprintf(step, sizeof(step), "%llu", (unsigned long long)(q->j.random ? (uint64_t)q->j.len * QIMG_STRIDE : q->j.len));
	if (q->fresh) {
		char size[32];
		snprintf(size, sizeof(size), "%llu", (unsigned long long)q->j.span);
		snprintf(step, sizeof(step), "%llu", (unsigned long long)(q->j.random ? ALLOC_CLUSTER * ALLOC_STRIDE : q->j.len));
		unlink(q->path);
		spawn_wait((char *[]){ "qemu-img", "create", "-q", "-f", "qcow2", (char *)q->path, size, NULL }, "qemu-img create");
	}
	/* aio=native needs O_DIRECT in QEMU (cache=none): that mode reads the disk, not the page cache. */
	bool direct = !strcmp(q->mode, "native");
	char *argv[24];
	int a = 0;
	argv[a++] = "qemu-img"; argv[a++] = "bench"; argv[a++] = "-f"; argv[a++] = (char *)q->fmt;
	argv[a++] = "-c"; argv[a++] = count; argv[a++] = "-d"; argv[a++] = "16";
	argv[a++] = "-s"; argv[a++] = len; argv[a++] = "-S"; argv[a++] = step;
	argv[a++] = "-i"; argv[a++] = (char *)q->mode; argv[a++] = "-t"; argv[a++] = direct ? "none" : "writeback";
	if (q->j.write)
		argv[a++] = "-w";
	argv[a++] = (char *)q->path;
	argv[a] = NULL;
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC))
		die("pipe: %s", strerror(errno));
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], 2);
	pid_t pid;
	int e = posix_spawnp(&pid, "qemu-img", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(pfd[1]);
	if (e)
		die("qemu-img: %s", strerror(e));
	char out[4096];
	size_t n = 0;
	ssize_t r;
	while (n < sizeof(out) - 1 && ((r = read(pfd[0], out + n, sizeof(out) - 1 - n)) > 0 || (r < 0 && errno == EINTR)))
		if (r > 0)
			n += r;
	out[n] = 0;
	close(pfd[0]);
	int st;
	waitpid(pid, &st, 0);
	const char *t = strstr(out, "Run completed in ");
	double secs = t ? strtod(t + 17, NULL) : 0;
	if (!WIFEXITED(st) || WEXITSTATUS(st) || secs <= 0)
		die("qemu-img bench -i %s on %s failed: %s", q->mode, q->path, out);
	return job_rate(&q->j, secs);
}

/* Whether qemu-img bench runs in this I/O mode here (io_uring needs kernel and build support). */
static bool qimg_mode_works(const char *path, const char *mode, char *why, size_t whyn)
{
	struct qimg_job q = { .j = { .len = 4096, .count = 16 }, .path = path, .fmt = "raw", .mode = mode };
	pid_t pid = fork();
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, 2);
		qimg_run(&q);
		_exit(0);
	}
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) {
		snprintf(why, whyn, "qemu-img bench -i %s failed here", mode);
		return false;
	}
	return true;
}

/* Untimed: one 1 MiB read through the device must match the raw file. */
static void blk_verify(struct blkdev *b, int rawfd)
{
	struct blk_job j = { .b = b, .len = SEQ_LEN, .count = 1, .start = MiB(7) };
	memset(gp(BLK_DATA(0), SEQ_LEN), 0, SEQ_LEN);
	blk_dev_run(&j);
	if (pread(rawfd, hbuf, SEQ_LEN, MiB(7)) != (ssize_t)SEQ_LEN || memcmp(hbuf, gp(BLK_DATA(0), SEQ_LEN), SEQ_LEN))
		die("virtio-blk %s: data read through the device differs from the file", b->what);
}

/* qemu-img convert raw -> qcow2: 0 on success, 1 if qemu-img is missing, -1 if it failed. */
static int make_qcow2(const char *raw, const char *qcow2)
{
	char *argv[] = { "qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", (char *)raw, (char *)qcow2, NULL };
	pid_t pid;
	int e = posix_spawnp(&pid, "qemu-img", NULL, NULL, argv, environ);
	if (e == ENOENT)
		return 1;
	if (e)
		return -1;
	int st;
	if (waitpid(pid, &st, 0) < 0)
		return -1;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 127)
		return 1;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static void bench_blk(void)
{
	char raw[4200], qcow2[4200];
	snprintf(raw, sizeof(raw), "%s/disk.raw", tmpdir);
	snprintf(qcow2, sizeof(qcow2), "%s/disk.qcow2", tmpdir);
	int fd = openat(tmpfd, "disk.raw", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		die("%s: %s", raw, strerror(errno));
	fprintf(stderr, "devices: writing a %llu MiB raw disk\n", (unsigned long long)(DISK_SIZE >> 20));
	for (uint64_t off = 0; off < DISK_SIZE; off += PAT_PERIOD) {
		memcpy(hbuf, pat, PAT_PERIOD);
		put_le64(hbuf, off);	/* no two MiB alike */
		write_full(fd, hbuf, PAT_PERIOD, off);
	}
	int q = make_qcow2(raw, qcow2);
	if (q < 0)
		die("qemu-img convert to %s failed", qcow2);
	if (q > 0) {
		fprintf(stderr, "devices: qemu-img not found: qcow2 rows skipped\n");
		note("qcow2 rows skipped: qemu-img not installed (Debian: qemu-utils).");
	}

	static struct blkdev braw, bq;
	struct disk *dk = disk_open(raw, false, false);
	if (!dk || virtio_blk_add(&vm, dk) || devices_start(&vm))
		die("virtio-blk %s: %s", raw, err_msg());
	blk_setup(&braw, 0, "raw");
	blk_verify(&braw, fd);
	if (!q) {
		struct disk *dq = disk_open(qcow2, false, false);
		if (!dq || virtio_blk_add(&vm, dq) || devices_start(&vm))
			die("virtio-blk %s: %s", qcow2, err_msg());
		blk_setup(&bq, 1, "qcow2");
		blk_verify(&bq, fd);	/* still identical: nothing was written yet */
	}
	/*
	 * The same files again, read-only, behind 2-queue devices: the 16 requests
	 * of the 4 KiB random-read rows split 8 + 8 over two queues, a driver
	 * thread each, against one queue with all 16.
	 */
	static struct blkdev bmq[2][2];
	for (int f = 0; f < (q ? 1 : 2); f++) {
		struct disk *dm = disk_open(f ? qcow2 : raw, true, false);
		if (!dm || virtio_blk_add_queues(&vm, dm, 2) || devices_start(&vm))
			die("virtio-blk %s, 2 queues: %s", f ? qcow2 : raw, err_msg());
		blk_setup_mq(bmq[f], 2, 4 + 2 * f, BLK_QD / 2, f ? "qcow2, 2 queues" : "raw, 2 queues");
	}
	for (int s = 0; s < BLK_QD; s++)	/* touch every data page the writes use */
		memcpy(gp(BLK_DATA(s), SEQ_LEN), pat, SEQ_LEN);
	memcpy(hbuf, pat, SEQ_LEN);

	static const char *const qimg_modes[] = { "threads", "native", "io_uring" };
	bool qmode_ok[ARRAY_SIZE(qimg_modes)] = { 0 };
	for (size_t m = 0; m < ARRAY_SIZE(qimg_modes) && !q; m++) {
		char why[200];
		qmode_ok[m] = qimg_mode_works(raw, qimg_modes[m], why, sizeof(why));
		if (!qmode_ok[m])
			note("peer rows for `qemu-img bench -i %s` skipped: %s.", qimg_modes[m], why);
	}
	struct { const char *name; bool write, random; uint32_t len; uint64_t count; } w[] = {
		{ "4 KiB random reads", false, true, 4096, RAND_COUNT },
		{ "1 MiB sequential reads", false, false, SEQ_LEN, SEQ_READ_PASSES * DISK_SIZE / SEQ_LEN },
		{ "1 MiB sequential writes", true, false, SEQ_LEN, SEQ_WRITE_PASSES * DISK_SIZE / SEQ_LEN },
	};
	for (int f = 0; f < 2; f++) {
		struct blkdev *b = f ? &bq : &braw;
		if (f && q)
			continue;
		for (size_t i = 0; i < ARRAY_SIZE(w); i++) {
			struct blk_job dj = { .b = b, .write = w[i].write, .random = w[i].random, .len = w[i].len,
					      .count = w[i].count };
			struct blk_job hj = dj;
			hj.fd = fd;
			char name[200];
			snprintf(name, sizeof(name), "virtio-blk, %s image: %s", f ? "qcow2" : "raw", w[i].name);
			run_row(name, w[i].random ? "IOPS" : "MiB/s", blk_dev_run, &dj, blk_host_run, &hj);
			if (i == 0) {	/* the same work on 2 queues, right after */
				struct mq_job mj = { .j = dj, .b = bmq[f], .nq = 2 };
				struct blk_job hj2 = hj;
				snprintf(name, sizeof(name), "virtio-blk, %s image, 2 queues (8 + 8 in flight, a driver thread "
					 "each; 2 cores): %s", f ? "qcow2" : "raw", w[i].name);
				run_row(name, "IOPS", blk_mq_run, &mj, blk_host_run, &hj2);
			}
		}
		if (q)
			continue;
		for (size_t m = 0; m < ARRAY_SIZE(qimg_modes); m++) {
			if (!qmode_ok[m])
				continue;
			for (size_t i = 0; i < ARRAY_SIZE(w); i++) {
				struct blk_job hj = { .fd = fd, .write = w[i].write, .random = w[i].random, .len = w[i].len,
						      .count = w[i].count };
				struct qimg_job qj = { .j = hj, .path = f ? qcow2 : raw, .fmt = f ? "qcow2" : "raw",
						       .mode = qimg_modes[m] };
				char name[200];
				snprintf(name, sizeof(name), "peer: qemu-img bench -i %s%s, %s image: %s", qimg_modes[m],
					 strcmp(qimg_modes[m], "native") ? "" : " (O_DIRECT)", f ? "qcow2" : "raw",
					 w[i].random ? "4 KiB strided reads" : w[i].name);
				run_row(name, w[i].random ? "IOPS" : "MiB/s", qimg_run, &qj, blk_host_run, &hj);
			}
		}
	}
	note("virtio-blk: one virtqueue of %d entries with %d requests in flight (each an indirect table of header, "
	     "data, status; the data one contiguous buffer), one kick per batch of new requests, an MSI-X interrupt "
	     "per batch of completions waking the driver thread. The device has one worker thread per queue: it "
	     "hands the requests it popped to its I/O engine (io_uring) in one io_uring_enter and returns what "
	     "finished together (one used-index update, one interrupt), so raw reads and writes and qcow2 reads "
	     "of allocated clusters are in flight together; qcow2 writes run one at a time. The 2-queue rows: the same file opened again read-only "
	     "behind a device with 2 queues (VIRTIO_BLK_F_MQ), the same 16 requests in flight split 8 + 8, a "
	     "driver thread per queue as two guest CPUs would submit, each queue's worker its own; on this "
	     "machine's 2 cores those 4 threads share 2 CPUs, so the rows show what the second queue costs or "
	     "brings there, not what it would with a core per queue. Host: pread/pwrite from one thread on the same raw file. The raw "
	     "file (%llu MiB) and the qcow2 image (`qemu-img convert` of it, every cluster allocated) are in the "
	     "page cache on both sides: caches cannot be dropped reliably here, so this is the CPU cost of the "
	     "path, not of a disk. One run: %d random reads, %d sequential passes over the disk reading, %d writing.",
	     BLK_QSIZE, BLK_QD, (unsigned long long)(DISK_SIZE >> 20), RAND_COUNT, SEQ_READ_PASSES, SEQ_WRITE_PASSES);
	if (!q)
		note("peer rows: `qemu-img bench` (QEMU's block layer, from qemu-utils) on the same raw file and qcow2 image, "
		     "%d requests in flight of the same size and count, in each of its I/O modes; its rate is from the time "
		     "it reports for the run itself (process start and image open excluded), against the same host "
		     "pread/pwrite as lkvm's rows, interleaved. qemu-img bench has no random pattern: its 4 KiB row steps "
		     "%d blocks (odd) from one request to the next, so requests land far apart and %llu of them touch every "
		     "block once; lkvm's row is random. `-i native` needs cache=none in QEMU (O_DIRECT), so that mode reads "
		     "and writes the disk under the file, not the page cache: not the same work, shown for completeness.",
		     BLK_QD, QIMG_STRIDE, (unsigned long long)(DISK_SIZE / 4096));
	close(fd);
}

/*
 * The I/O engines (-d ...,aio=): one raw file behind a device per engine,
 * each engine's rows measured together (run_rows_together), against the same
 * host pread/pwrite; then with the page cache dropped before each run.
 */
static void bench_aio(void)
{
	int fd = openat(tmpfd, "aio.raw", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		die("%s/aio.raw: %s", tmpdir, strerror(errno));
	char raw[4200];
	snprintf(raw, sizeof(raw), "%s/aio.raw", tmpdir);
	fprintf(stderr, "devices: writing a %llu MiB raw disk\n", (unsigned long long)(DISK_SIZE >> 20));
	for (uint64_t off = 0; off < DISK_SIZE; off += PAT_PERIOD) {
		memcpy(hbuf, pat, PAT_PERIOD);
		put_le64(hbuf, off);
		write_full(fd, hbuf, PAT_PERIOD, off);
	}
	static const enum disk_aio_kind engines[] = { DISK_AIO_URING, DISK_AIO_NATIVE, DISK_AIO_THREADS };
	enum { NE = ARRAY_SIZE(engines) };
	static struct blkdev beng[NE];
	static char what[NE][32];
	for (int e = 0; e < NE; e++) {
		struct disk *de = disk_open(raw, false, false);
		if (!de || virtio_blk_add_aio(&vm, de, 1, engines[e]) || devices_start(&vm))
			die("virtio-blk %s, aio=%s: %s", raw, disk_aio_name(engines[e]), err_msg());
		struct device *dev = NULL;
		for (int k = 0; device_find(&vm, "virtio-blk", k); k++)	/* the one just added: the last */
			dev = device_find(&vm, "virtio-blk", k);
		if (virtio_blk_aio_kind(dev, 0) != (int)engines[e])
			die("virtio-blk aio=%s: the kernel refused it here (%s runs)", disk_aio_name(engines[e]),
			    disk_aio_name(virtio_blk_aio_kind(dev, 0)));
		snprintf(what[e], sizeof(what[e]), "raw, aio=%s", disk_aio_name(engines[e]));
		blk_setup(&beng[e], 10 + e, what[e]);
		blk_verify(&beng[e], fd);
	}
	for (int s = 0; s < BLK_QD; s++)
		memcpy(gp(BLK_DATA(s), SEQ_LEN), pat, SEQ_LEN);
	memcpy(hbuf, pat, SEQ_LEN);
	struct { const char *name; bool write, random, cold; uint32_t len; uint64_t count; } w[] = {
		{ "4 KiB random reads", false, true, false, 4096, RAND_COUNT },
		{ "1 MiB sequential reads", false, false, false, SEQ_LEN, SEQ_READ_PASSES * DISK_SIZE / SEQ_LEN },
		{ "1 MiB sequential writes", true, false, false, SEQ_LEN, SEQ_WRITE_PASSES * DISK_SIZE / SEQ_LEN },
		{ "4 KiB random reads, page cache dropped", false, true, true, 4096, COLD_COUNT },
	};
	for (size_t i = 0; i < ARRAY_SIZE(w); i++) {
		static struct cold_job dj[NE], hj[NE];
		void *da[NE], *ha[NE];
		char names[NE][200];
		for (int e = 0; e < NE; e++) {
			dj[e] = (struct cold_job){ .j = { .b = &beng[e], .write = w[i].write, .random = w[i].random,
							 .len = w[i].len, .count = w[i].count }, .fd = fd };
			hj[e] = dj[e];
			hj[e].j.fd = fd;
			da[e] = w[i].cold ? (void *)&dj[e] : (void *)&dj[e].j;
			ha[e] = w[i].cold ? (void *)&hj[e] : (void *)&hj[e].j;
			snprintf(names[e], sizeof(names[e]), "virtio-blk, raw image, aio=%s: %s", disk_aio_name(engines[e]),
				 w[i].name);
		}
		run_rows_together(NE, names, w[i].random ? "IOPS" : "MiB/s", w[i].cold ? cold_dev_run : blk_dev_run, da,
				  w[i].cold ? cold_host_run : blk_host_run, ha);
	}
	note("aio= rows: one raw file (%llu MiB) behind a device per I/O engine (io_uring, Linux AIO, a pool of 4 "
	     "threads), one queue with %d requests in flight each, as the virtio-blk rows above; the three engines' "
	     "rows of a workload are measured together, repetition by repetition, each against the same host "
	     "pread/pwrite from one thread. The page-cache-dropped rows write the file back and drop its pages "
	     "(POSIX_FADV_DONTNEED) before every run, on both sides: %d random 4 KiB reads from the disk under "
	     "$TMPDIR, where the host's pread has one read in flight and the device up to %d.",
	     (unsigned long long)(DISK_SIZE >> 20), BLK_QD, COLD_COUNT, BLK_QD);
	close(fd);
}

/*
 * Writes that allocate: every request writes space nothing wrote before, on a
 * sparse raw file (the filesystem allocates) and on an empty qcow2 image (lkvm
 * allocates clusters, then the filesystem), against pwrite into fresh space
 * of a sparse file, and against qemu-img bench -w on a new empty qcow2 image.
 */
static void punch_all(int fd, uint64_t size)
{
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, size))
		die("punching holes: %s", strerror(errno));
}

static double row_median(int i) { return rows[i].n ? median(rows[i].dev, rows[i].n) : 0; }

static void bench_alloc(void)
{
	char raw[4200], qcow2[4200], peer[4200];
	snprintf(raw, sizeof(raw), "%s/alloc.raw", tmpdir);
	snprintf(qcow2, sizeof(qcow2), "%s/alloc.qcow2", tmpdir);
	snprintf(peer, sizeof(peer), "%s/alloc-peer.qcow2", tmpdir);
	uint64_t runs = reps + 1, size = 2 * runs * ALLOC_SPAN;	/* two workloads, a fresh region per run */
	char sz[32];
	snprintf(sz, sizeof(sz), "%llu", (unsigned long long)size);
	int hfd = openat(tmpfd, "alloc-host.raw", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	int rfd = openat(tmpfd, "alloc.raw", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (hfd < 0 || rfd < 0 || ftruncate(hfd, runs * ALLOC_SPAN) || ftruncate(rfd, size))
		die("%s: %s", raw, strerror(errno));
	pid_t pid;
	int st;
	char *argv[] = { "qemu-img", "create", "-q", "-f", "qcow2", qcow2, sz, NULL };
	if (posix_spawnp(&pid, "qemu-img", NULL, NULL, argv, environ) || waitpid(pid, &st, 0) < 0 ||
	    !WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "devices: qemu-img create failed or is missing: allocating rows skipped\n");
		skip_row("allocating writes: not measured (qemu-img create failed or is missing; Debian: qemu-utils)");
		close(hfd);
		close(rfd);
		return;
	}
	static struct blkdev br, bq;
	struct disk *dr = disk_open(raw, false, false);
	if (!dr || virtio_blk_add(&vm, dr) || devices_start(&vm))
		die("virtio-blk %s: %s", raw, err_msg());
	blk_setup_size(&br, 8, "raw (allocating)", size);
	struct disk *dq = disk_open(qcow2, false, false);
	if (!dq || virtio_blk_add(&vm, dq) || devices_start(&vm))
		die("virtio-blk %s: %s", qcow2, err_msg());
	blk_setup_size(&bq, 9, "qcow2 (allocating)", size);
	for (int s = 0; s < BLK_QD; s++)
		memcpy(gp(BLK_DATA(s), SEQ_LEN), pat, SEQ_LEN);
	memcpy(hbuf, pat, SEQ_LEN);

	static const char *const modes[] = { "threads", "io_uring" };
	bool mode_ok[2];
	for (int m = 0; m < 2; m++) {
		char why[200];
		mode_ok[m] = qimg_mode_works(raw, modes[m], why, sizeof(why));
		if (!mode_ok[m])
			note("allocating peer rows for `qemu-img bench -i %s` skipped: %s.", modes[m], why);
	}
	struct { const char *name; bool random; uint32_t len; } w[] = {
		{ "4 KiB random writes, each into a new cluster", true, 4096 },
		{ "1 MiB sequential writes into new space", false, SEQ_LEN },
	};
	int first[2];
	for (int i = 0; i < 2; i++) {
		uint64_t count = w[i].random ? ALLOC_SPAN / ALLOC_CLUSTER : ALLOC_SPAN / SEQ_LEN;
		const char *unit = w[i].random ? "IOPS" : "MiB/s";
		first[i] = nrows;
		for (int f = 0; f < 2; f++) {
			struct blk_job dj = { .b = f ? &bq : &br, .write = true, .random = w[i].random, .len = w[i].len,
					      .count = count, .start = i * runs * ALLOC_SPAN, .span = ALLOC_SPAN };
			struct blk_job hj = { .fd = hfd, .write = true, .random = w[i].random, .len = w[i].len,
					      .count = count, .span = ALLOC_SPAN };
			char name[200];
			snprintf(name, sizeof(name), "virtio-blk, %s image: %s", f ? "empty qcow2" : "sparse raw", w[i].name);
			run_row(name, unit, blk_dev_run, &dj, blk_host_run, &hj);
			punch_all(hfd, runs * ALLOC_SPAN);
			if (!f)
				punch_all(rfd, size);	/* its runs are done: give the memory or disk back */
		}
		for (int m = 0; m < 2; m++) {
			if (!mode_ok[m])
				continue;
			struct blk_job hj = { .fd = hfd, .write = true, .random = w[i].random, .len = w[i].len,
					      .count = count, .span = ALLOC_SPAN };
			struct qimg_job qj = { .j = hj, .path = peer, .fmt = "qcow2", .mode = modes[m], .fresh = true };
			char name[200];
			snprintf(name, sizeof(name), "peer: qemu-img bench -w -i %s, new empty qcow2 image: %s", modes[m], w[i].name);
			run_row(name, unit, qimg_run, &qj, blk_host_run, &hj);
			punch_all(hfd, runs * ALLOC_SPAN);
			unlink(peer);
		}
	}
	/* Untimed: what the qcow2 device wrote reads back (its first sequential run; a random run's cluster). */
	struct blk_job rj = { .b = &bq, .len = SEQ_LEN, .count = 1, .start = runs * ALLOC_SPAN + MiB(3) };
	memset(gp(BLK_DATA(0), SEQ_LEN), 0, SEQ_LEN);
	blk_dev_run(&rj);
	if (memcmp(gp(BLK_DATA(0), SEQ_LEN), pat, SEQ_LEN))
		die("virtio-blk qcow2 (allocating): sequential data read back differs");
	rj = (struct blk_job){ .b = &bq, .len = ALLOC_CLUSTER, .count = 1, .start = 5 * ALLOC_CLUSTER };
	memset(gp(BLK_DATA(0), SEQ_LEN), 0xee, SEQ_LEN);
	blk_dev_run(&rj);
	uint8_t *c = gp(BLK_DATA(0), ALLOC_CLUSTER);
	if (memcmp(c, pat, 4096))
		die("virtio-blk qcow2 (allocating): random write read back differs");
	for (uint64_t k = 4096; k < ALLOC_CLUSTER; k++)
		if (c[k])
			die("virtio-blk qcow2 (allocating): a new cluster's unwritten bytes are not zero");
	for (int s = 0; s < BLK_QD; s++)
		memcpy(gp(BLK_DATA(s), SEQ_LEN), pat, SEQ_LEN);
	char ratios[600] = "";
	for (int i = 0; i < 2; i++) {
		double r = row_median(first[i]), qc = row_median(first[i] + 1), best = 0;
		for (int k = first[i] + 2; k < nrows && k < first[i] + 4; k++)
			best = MAX(best, row_median(k));
		snprintf(ratios + strlen(ratios), sizeof(ratios) - strlen(ratios), "%s%s: lkvm qcow2 / lkvm raw **%.2f**",
			 i ? "; " : "", w[i].name, r ? qc / r : 0);
		if (best)
			snprintf(ratios + strlen(ratios), sizeof(ratios) - strlen(ratios), ", lkvm qcow2 / qemu-img bench's best mode **%.2f**", qc / best);
	}
	note("allocating writes: each run writes %llu MiB of space nothing wrote before (a region of its own in a "
	     "sparse raw file and in an empty qcow2 image with 64 KiB clusters, both made for this bench, %d requests in "
	     "flight; the 4 KiB row writes the first 4 KiB of every cluster of the region once, cluster i*%d mod N, N "
	     "the region's clusters), against pwrite into fresh space of a sparse file (its holes punched again after "
	     "each row), and `qemu-img bench -w` with the same size, count, depth and step on a new empty qcow2 image "
	     "made before each of its runs (its own timing, the create excluded). Medians in this run: %s. Afterwards "
	     "one sequential and one random cluster are read back through the qcow2 device and compared.",
	     (unsigned long long)(ALLOC_SPAN >> 20), BLK_QD, ALLOC_STRIDE, ratios);
	close(hfd);
	close(rfd);
}

/* ---- 9p: the server alone (p9_handle) and the virtio-9p device ---- */

/* The shared test client (tests/lib/p9_client.h); here every error ends the benchmark. */
static void ok9(struct p9c *c, int e)
{
	if (e < 0)
		die("9p: malformed reply to message type %u", c->req[4]);
	if (e > 0)
		die("9p: message type %u: %s", c->req[4], strerror(e));
}

/*
 * Where a Tread's or Twrite's data lives, as the Linux client lays it out
 * (net/9p/client.c and trans_virtio.c, 6.1): above 1024 bytes it sends them
 * zero-copy, so a Tread's reply is an 11-byte header buffer followed by the
 * reader's own pages, a Twrite's data the writer's pages after the 23-byte
 * header, one descriptor per page (pack_sg_list_p()); everything else is the
 * message in one buffer and the reply in another. The pages here are every
 * other page of a buffer (in guest RAM for virtio-9p, on the host for the
 * server alone): a user buffer's pages are rarely adjacent in a guest, so no
 * side may treat them as one.
 */
#define P9_ZC_MIN	1024
#define P9_ZC_HDR	4096	/* the Linux client's reply buffer beside a Twrite's pages */
#define P9_ZC_SPAN	(2 * P9_CHUNK)	/* the buffer the pages lie in */
#define TREAD_HDR	11	/* size[4] type[1] tag[2] count[4] */
#define TWRITE_HDR	23	/* size[4] type[1] tag[2] fid[4] offset[8] count[4] */

/* The data's length if the message goes zero-copy, else 0. */
static uint32_t zc_len(const struct p9c *c)
{
	uint8_t type = c->req[4];
	if (type != P9_TREAD && type != P9_TWRITE)
		return 0;
	uint32_t n = get_le32(c->req + 19);
	if (n > P9_CHUNK)
		die("9p: %u bytes of data: more than the bench's pages hold", n);
	return n > P9_ZC_MIN ? n : 0;
}

/* The pages that hold n bytes of data in the buffer at base: how many. */
static int zc_pages(uint8_t *base, uint32_t n, struct iovec *v)
{
	int k = 0;
	for (uint32_t off = 0; off < n; off += 4096)
		v[k++] = (struct iovec){ base + 2 * off, MIN(4096u, n - off) };
	return k;
}

/* The bytes the pages hold, to or from a flat buffer. */
static void zc_fill(uint8_t *base, const uint8_t *src, uint32_t n)
{
	struct iovec v[P9_CHUNK / 4096];
	buf_to_iov(v, zc_pages(base, n, v), 0, src, n);
}
static bool zc_same(uint8_t *base, const uint8_t *want, uint32_t n)
{
	struct iovec v[P9_CHUNK / 4096];
	int k = zc_pages(base, n, v);
	for (int i = 0; i < k; i++)
		if (memcmp(v[i].iov_base, want + 4096 * i, v[i].iov_len))
			return false;
	return true;
}

/* Entries i... of the indirect table for the data pages pv (in the guest buffer at g0); the next free entry. */
static int put_pages(int i, const struct iovec *pv, int np, const uint8_t *g0, uint16_t flags, bool more)
{
	for (int k = 0; k < np; k++, i++)
		put_desc(P9_IND, i, P9_DATA + ((uint8_t *)pv[k].iov_base - g0), pv[k].iov_len,
			 flags | (k + 1 < np || more ? VD_F_NEXT : 0), i + 1);
	return i;
}

/* The device's transport: an indirect table in guest RAM, one chain, wait for the reply. */
static size_t dev_xfer(struct p9c *c, size_t len)
{
	struct vq *d = c->ctx;
	uint32_t zc = zc_len(c);
	struct iovec pv[P9_CHUNK / 4096];
	uint8_t *g0 = gp(P9_DATA, P9_ZC_SPAN);
	int np = zc ? zc_pages(g0, zc, pv) : 0, i = 0;
	if (zc && c->req[4] == P9_TWRITE) {
		put_desc(P9_IND, i, P9_REQ, TWRITE_HDR, VD_F_NEXT, i + 1), i++;
		i = put_pages(i, pv, np, g0, 0, true);
		put_desc(P9_IND, i, P9_RESP, P9_ZC_HDR, VD_F_WRITE, 0), i++;
	} else {
		put_desc(P9_IND, i, P9_REQ, len, VD_F_NEXT, i + 1), i++;
		if (zc) {
			put_desc(P9_IND, i, P9_RESP, TREAD_HDR, VD_F_WRITE | VD_F_NEXT, i + 1), i++;
			i = put_pages(i, pv, np, g0, VD_F_WRITE, false);
		} else {
			put_desc(P9_IND, i, P9_RESP, P9_MAX_MSIZE, VD_F_WRITE, 0), i++;
		}
	}
	put_desc(d->desc, 0, P9_IND, 16 * i, VD_F_INDIRECT, 0);
	vq_add(d, 0);
	vq_kick_prepared(d);
	if (!vq_pending(d))
		drv_wait(d);
	uint16_t id;
	uint32_t n = 0;
	vq_used(d, &id, &n);
	return n;
}

/* The server alone: p9_handle_iov() with the same layout, on host buffers. */
static uint8_t *srv_data;	/* page-aligned, P9_ZC_SPAN */

static size_t srv_xfer(struct p9c *c, size_t len)
{
	uint32_t zc = zc_len(c);
	struct iovec pv[P9_CHUNK / 4096];
	int np = zc ? zc_pages(srv_data, zc, pv) : 0;
	bool w = zc && c->req[4] == P9_TWRITE;
	size_t inresp;
	return p9_handle_iov(c->srv, c->req, w ? TWRITE_HDR : len, w ? pv : NULL, w ? np : 0, c->resp, c->resp_cap,
			     zc && !w ? pv : NULL, zc && !w ? np : 0, &inresp);
}

/* The data pages of a client's transport. */
static uint8_t *zc_base(const struct p9c *c)
{
	return c->srv ? srv_data : gp(P9_DATA, P9_ZC_SPAN);
}

static void t_walk(struct p9c *c, uint32_t fid, uint32_t newfid, const char *name)
{
	ok9(c, p9c_walk1(c, fid, newfid, name, NULL));
}
static void t_lopen(struct p9c *c, uint32_t fid, uint32_t flags) { ok9(c, p9c_lopen(c, fid, flags)); }
static void t_clunk(struct p9c *c, uint32_t fid) { ok9(c, p9c_clunk(c, fid)); }
static void t_lcreate(struct p9c *c, uint32_t fid, const char *name, uint32_t flags)
{
	ok9(c, p9c_lcreate(c, fid, name, flags, 0644, getgid(), NULL));
}
static uint32_t t_read(struct p9c *c, uint32_t fid, uint64_t off, uint32_t count)
{
	long n = p9c_read(c, fid, off, count, NULL);
	ok9(c, n < 0 ? (int)-n : 0);
	return n;
}
/* The data is whatever is at req + 23: the benchmark puts it there once, outside the timing. */
static uint32_t t_write(struct p9c *c, uint32_t fid, uint64_t off, uint32_t count)
{
	long n = p9c_write(c, fid, off, NULL, count);
	ok9(c, n < 0 ? (int)-n : 0);
	return n;
}

static void p9_session(struct p9c *c)
{
	uint32_t msize = 0;
	char v[16];
	ok9(c, p9c_version(c, P9_MAX_MSIZE, "9P2000.L", &msize, v, sizeof(v)));
	if (msize != P9_MAX_MSIZE)
		die("9p: msize %u", msize);
	ok9(c, p9c_attach(c, 0, getuid(), NULL));
}

enum { P9_READ, P9_WRITE, P9_CREATE };
struct p9_job {
	struct p9c *c;	/* NULL: the host */
	int kind;
};
static unsigned name_seq;

static void remove_small(char prefix, unsigned seq)
{
	char name[64];
	for (unsigned i = 0; i < P9_FILES; i++) {
		snprintf(name, sizeof(name), "%c%u-%u", prefix, seq, i);
		if (unlinkat(sharefd, name, 0))
			die("unlink %s/%s: %s", sharedir, name, strerror(errno));
	}
}

static double p9_dev_run(void *arg)
{
	struct p9_job *j = arg;
	struct p9c *c = j->c;
	char prefix = c->srv ? 's' : 'v';
	if (j->kind != P9_READ)	/* the writer's pages */
		zc_fill(zc_base(c), pat, P9_CHUNK);
	unsigned seq = ++name_seq;
	uint64_t t0 = mono_ns();
	switch (j->kind) {
	case P9_READ:
		for (int pass = 0; pass < P9_PASSES; pass++) {
			t_walk(c, 0, 1, "big");
			t_lopen(c, 1, 0);
			for (uint64_t off = 0; off < P9_FILE; off += P9_CHUNK)
				if (t_read(c, 1, off, P9_CHUNK) != P9_CHUNK)
					die("9p: short read");
			t_clunk(c, 1);
		}
		break;
	case P9_WRITE:
		for (int pass = 0; pass < P9_PASSES; pass++) {
			t_walk(c, 0, 1, "wfile");
			t_lopen(c, 1, P9_DOTL_WRONLY);
			for (uint64_t off = 0; off < P9_FILE; off += P9_CHUNK)
				if (t_write(c, 1, off, P9_CHUNK) != P9_CHUNK)
					die("9p: short write");
			t_clunk(c, 1);
		}
		break;
	case P9_CREATE: {
		char name[64];
		for (unsigned i = 0; i < P9_FILES; i++) {
			snprintf(name, sizeof(name), "%c%u-%u", prefix, seq, i);
			t_walk(c, 0, 2, NULL);	/* the directory fid becomes the file: clone it first */
			t_lcreate(c, 2, name, P9_DOTL_WRONLY | P9_DOTL_CREATE | P9_DOTL_EXCL);
			if (t_write(c, 2, 0, P9_SMALL) != P9_SMALL)
				die("9p: short write");
			t_clunk(c, 2);
		}
		break;
	}
	}
	double s = secs_since(t0);
	if (j->kind == P9_CREATE) {
		remove_small(prefix, seq);
		return P9_FILES / s;
	}
	return P9_PASSES * P9_FILE / (double)MiB(1) / s;
}

static double p9_host_run(void *arg)
{
	struct p9_job *j = arg;
	unsigned seq = ++name_seq;
	uint64_t t0 = mono_ns();
	int fd;
	switch (j->kind) {
	case P9_READ:
		for (int pass = 0; pass < P9_PASSES; pass++) {
			if ((fd = openat(sharefd, "big", O_RDONLY | O_CLOEXEC)) < 0)
				die("open big: %s", strerror(errno));
			for (uint64_t off = 0; off < P9_FILE; off += P9_CHUNK)
				if (read(fd, hbuf, P9_CHUNK) != (ssize_t)P9_CHUNK)
					die("host read: short");
			close(fd);
		}
		break;
	case P9_WRITE:
		for (int pass = 0; pass < P9_PASSES; pass++) {
			if ((fd = openat(sharefd, "wfile", O_WRONLY | O_CLOEXEC)) < 0)
				die("open wfile: %s", strerror(errno));
			for (uint64_t off = 0; off < P9_FILE; off += P9_CHUNK)
				if (write(fd, pat, P9_CHUNK) != (ssize_t)P9_CHUNK)
					die("host write: short");
			close(fd);
		}
		break;
	case P9_CREATE: {
		char name[64];
		for (unsigned i = 0; i < P9_FILES; i++) {
			snprintf(name, sizeof(name), "h%u-%u", seq, i);
			fd = openat(sharefd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
			if (fd < 0 || write(fd, pat, P9_SMALL) != P9_SMALL)
				die("host create %s: %s", name, strerror(errno));
			close(fd);
		}
		break;
	}
	}
	double s = secs_since(t0);
	if (j->kind == P9_CREATE) {
		remove_small('h', seq);
		return P9_FILES / s;
	}
	return P9_PASSES * P9_FILE / (double)MiB(1) / s;
}

/* Whether the shared file starts with these bytes. */
static bool share_has(const char *name, const uint8_t *want, size_t n)
{
	int fd = openat(sharefd, name, O_RDONLY | O_CLOEXEC);
	bool same = fd >= 0 && pread(fd, hbuf, n, 0) == (ssize_t)n && !memcmp(hbuf, want, n);
	if (fd >= 0)
		close(fd);
	return same;
}

static void bench_9p(void)
{
	for (int f = 0; f < 2; f++) {
		const char *name = f ? "wfile" : "big";
		int fd = openat(sharefd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0)
			die("%s/%s: %s", sharedir, name, strerror(errno));
		for (uint64_t off = 0; off < P9_FILE; off += PAT_PERIOD)
			write_full(fd, pat, PAT_PERIOD, off);
		close(fd);
	}

	/* The server alone: messages in ordinary buffers. */
	static struct p9c srv, dev;
	srv.srv = p9_server_new(sharedir, NULL);
	if (!srv.srv)
		die("9p: %s", err_msg());
	srv.req = calloc(1, P9_MAX_MSIZE + 64);
	srv.resp = calloc(1, P9_MAX_MSIZE);
	srv.resp_cap = P9_MAX_MSIZE;
	srv.xfer = srv_xfer;
	srv_data = aligned_alloc(4096, P9_ZC_SPAN);
	p9_session(&srv);

	/* The device: messages in guest RAM, one request at a time (a worker answers; the driver waits for it). */
	static struct vdev v9;
	static struct vq d9;
	struct p9_opts *shares = vm_config_part(&vm.cfg, &virtio_9p_device, sizeof(*shares));
	shares->share[0] = (struct share_opt){ sharedir, "bench", false };
	shares->n = 1;
	if (device_type_create(&vm, &virtio_9p_device) || devices_start(&vm))
		die("virtio-9p: %s", err_msg());
	drv_init(&v9, &d9, 1ULL << VIRTIO_F_VERSION_1, RING(2), 32);
	dev.ctx = &d9;
	dev.xfer = dev_xfer;
	dev.req = gp(P9_REQ, P9_MAX_MSIZE);
	dev.resp = gp(P9_RESP, P9_MAX_MSIZE);
	dev.resp_cap = P9_MAX_MSIZE;
	p9_session(&dev);

	/* Untimed: what a Tread brings back is the file, and what a Twrite sends lands in it, both ways. */
	for (int t = 0; t < 2; t++) {
		struct p9c *c = t ? &srv : &dev;
		memset(zc_base(c), 0, P9_ZC_SPAN);
		t_walk(c, 0, 1, "big");
		t_lopen(c, 1, 0);
		if (t_read(c, 1, PAT_PERIOD, P9_CHUNK) != P9_CHUNK || !zc_same(zc_base(c), pat, P9_CHUNK))
			die("%s: Tread data differs from the file", t ? "9p server" : "virtio-9p");
		t_clunk(c, 1);
		zc_fill(zc_base(c), pat + 4096, P9_CHUNK);
		t_walk(c, 0, 1, "wfile");
		t_lopen(c, 1, P9_DOTL_WRONLY);
		if (t_write(c, 1, 0, P9_CHUNK) != P9_CHUNK || !share_has("wfile", pat + 4096, P9_CHUNK))
			die("%s: Twrite data differs in the file", t ? "9p server" : "virtio-9p");
		t_clunk(c, 1);
	}

	static const struct { int kind; const char *what; const char *unit; } w[] = {
		{ P9_READ, "64 MiB file read, 128 KiB Tread", "MiB/s" },
		{ P9_WRITE, "64 MiB file written, 128 KiB Twrite", "MiB/s" },
		{ P9_CREATE, "2000 files: Twalk+Tlcreate+Twrite 4 KiB+Tclunk", "files/s" },
	};
	static const char *const how[] = { "virtio-9p", "virtio-9p, the driver halt-polling as KVM does",
					    "9p server alone (p9_handle)" };
	for (int t = 0; t < 3; t++) {
		drv_halt_poll = t == 1;
		for (size_t i = 0; i < ARRAY_SIZE(w); i++) {
			struct p9_job dj = { t == 2 ? &srv : &dev, w[i].kind }, hj = { NULL, w[i].kind };
			char name[200];
			snprintf(name, sizeof(name), "%s: %s", how[t], w[i].what);
			run_row(name, w[i].unit, p9_dev_run, &dj, p9_host_run, &hj);
		}
	}
	drv_halt_poll = false;
	note("9p: msize 512 KiB, one request at a time (virtio-9p answers on one of its worker threads; the "
	     "driver sleeps until the interrupt, or in the halt-polling rows first watches the used ring for 200 us, "
	     "as KVM watches a halted vCPU for halt_poll_ns before it sleeps); "
	     "the create loop clones the directory fid first (Twalk), as the Linux client does. The driver lays "
	     "out each message as Linux 6.1's does: an indirect table; Tread and Twrite above 1 KiB zero-copy, "
	     "the data in the reader's or writer's own pages, one descriptor per 4 KiB page (32 for 128 KiB), "
	     "no two pages adjacent; it kicks only when the used ring does not say VRING_USED_F_NO_NOTIFY. "
	     "\"Server alone\" calls p9_handle_iov() with the same pages on host buffers: the difference to "
	     "virtio-9p is the transport (the ring, the kick and the interrupt). Host: read/write of 128 KiB "
	     "from one buffer and openat+write 4 KiB+close in the same temporary directory; files in the page "
	     "cache on both sides. One run: the 64 MiB file %d times over (walk, open, 512 messages, clunk each "
	     "time), or %d new files. Tread and Twrite data moves between the file and the guest's pages with "
	     "one preadv/pwritev. A worker done with its request watches the ring for up to 32 us before it "
	     "sleeps (QEMU's IOThread poll-max-ns), so the driver's next request needs no kick. The sleeping-"
	     "driver rows pay the driver's own wake-up at every reply, which in a guest is KVM's; the "
	     "halt-polling rows take it away.", P9_PASSES, P9_FILES);
}

/* ---- the network: a minimal guest TCP over the user-mode stack or over virtio-net and tap ---- */

#define GUEST_IP	0x0a00020fu	/* user-mode: 10.0.2.15, its gateway 10.0.2.2 */
#define GW_IP		0x0a000202u
#define TAP_HOST_IP	0x0a000301u	/* tap: 10.0.3.1 on the tap, in a private namespace */
#define TAP_GUEST_IP	0x0a000302u	/* the bench's guest side, 10.0.3.2 */
#define GUEST_MSS	1460
#define T_FIN 0x01
#define T_SYN 0x02
#define T_RST 0x04
#define T_PSH 0x08
#define T_ACK 0x10
#define SEQ_GT(a, b)	((int32_t)((a) - (b)) > 0)

static const uint8_t gmac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
static const uint8_t gwmac[6] = { 0x52, 0x55, 0x0a, 0x00, 0x02, 0x02 };

static void w16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = v; }
static void w32(uint8_t *p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }
static uint16_t r16(const uint8_t *p) { return p[0] << 8 | p[1]; }
static uint32_t r32(const uint8_t *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }

/* RFC 1071 in native byte order (the sum does not depend on it). */
static uint64_t csum_add(uint64_t s, const uint8_t *p, size_t n)
{
	for (; n >= 4; p += 4, n -= 4) {
		uint32_t w;
		memcpy(&w, p, 4);
		s += w;
	}
	if (n >= 2) {
		uint16_t w;
		memcpy(&w, p, 2);
		s += w;
		p += 2;
		n -= 2;
	}
	if (n)
		s += *p;	/* little-endian: the odd byte is the high byte of a big-endian word */
	return s;
}
static uint16_t csum_fold(uint64_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return s;
}

/* Frames for the guest land in its "receive buffers": a ring of copies, as virtio-net RX would make. */
#define RXQ 1024
#define RX_FRAME_MAX (14 + 65535)	/* a GSO frame, when the guest takes them */
static uint8_t (*rxbuf)[RX_FRAME_MAX];	/* RXQ of them, allocated at first use; only pages written are touched */
static uint32_t rxlen[RXQ];
static unsigned rx_head, rx_tail;
static uint64_t rx_overflow;

/* The guest's receive buffers, as vnet_rx_iov() fills them: each piece copied once. */
static void to_guest(void *opaque, const uint8_t *hdr, const struct iovec *iov, int n, size_t len)
{
	if (!rxbuf)
		rxbuf = xcalloc(RXQ, sizeof(*rxbuf));
	if (rx_tail - rx_head == RXQ || len > sizeof(rxbuf[0])) {
		rx_overflow++;
		return;
	}
	iov_to_buf(iov, n, 0, rxbuf[rx_tail % RXQ], len);
	rxlen[rx_tail % RXQ] = len;
	rx_tail++;
}

enum { G_CLOSED, G_SYN_SENT, G_EST };

/*
 * The guest's TCP: one connection, in order, go-back-N. The link it runs over
 * says where the next frame is built (frame_buf: room for headers and 64 KiB,
 * NULL if there is none now) and sends it (xmit; partial: the TCP checksum
 * holds only the pseudo-header sum and the link offloads the rest); step
 * moves frames both ways and sleeps when there is nothing to do.
 */
struct gtcp {
	const uint8_t *mac, *peer_mac;
	uint32_t ip, peer_ip;
	void *link;
	uint8_t *(*frame_buf)(struct gtcp *g);
	void (*xmit)(struct gtcp *g, uint8_t *frame, size_t len, bool partial);
	void (*step)(struct gtcp *g, bool busy);
	int state;
	bool tso, need_ack, rst;
	bool wscale;			/* offer window scaling (RFC 7323) with rcv_shift */
	uint8_t snd_shift, rcv_shift;
	uint16_t lport, rport, ip_id;
	uint32_t iss, snd_una, snd_nxt, rcv_nxt, peer_wnd, rcv_wnd;
	uint64_t tx_total, rx_bytes, bad, last_progress;
};

/* Build and send one segment; false if the link has no room for it now. */
static bool g_send(struct gtcp *g, uint32_t seq, uint8_t flags, const uint8_t *data, size_t n)
{
	uint8_t *f = g->frame_buf(g);
	if (!f)
		return false;
	size_t hl = flags & T_SYN ? (g->wscale ? 28 : 24) : 20;
	memcpy(f, g->peer_mac, 6);
	memcpy(f + 6, g->mac, 6);
	f[12] = 8;
	f[13] = 0;
	uint8_t *ip = f + 14, *t = ip + 20;
	memset(ip, 0, 20 + hl);
	ip[0] = 0x45;
	w16(ip + 2, 20 + hl + n);
	w16(ip + 4, g->ip_id++);	/* as Linux: DF, and IDs counting up per segment */
	w16(ip + 6, 0x4000);
	ip[8] = 64;
	ip[9] = 6;
	w32(ip + 12, g->ip);
	w32(ip + 16, g->peer_ip);
	uint16_t c = ~csum_fold(csum_add(0, ip, 20));
	memcpy(ip + 10, &c, 2);
	w16(t, g->lport);
	w16(t + 2, g->rport);
	w32(t + 4, seq);
	w32(t + 8, flags & T_ACK ? g->rcv_nxt : 0);
	t[12] = hl / 4 << 4;
	t[13] = flags;
	w16(t + 14, MIN(flags & T_SYN ? g->rcv_wnd : g->rcv_wnd >> g->rcv_shift, 65535u));	/* a SYN's is unscaled */
	if (flags & T_SYN) {
		t[20] = 2;
		t[21] = 4;
		w16(t + 22, GUEST_MSS);
		if (g->wscale) {
			t[24] = 1;	/* NOP */
			t[25] = 3;
			t[26] = 3;
			t[27] = g->rcv_shift;
		}
	}
	if (n)
		memcpy(t + hl, data, n);
	uint8_t ph[12];
	memcpy(ph, ip + 12, 8);
	ph[8] = 0;
	ph[9] = 6;
	w16(ph + 10, hl + n);
	uint64_t s = csum_add(0, ph, 12);
	if (g->tso) {	/* CHECKSUM_PARTIAL: the pseudo-header sum only, the device is told not to check */
		c = csum_fold(s);
		memcpy(t + 16, &c, 2);
	} else {
		c = ~csum_fold(csum_add(s, t, hl + n));
		memcpy(t + 16, &c, 2);
	}
	g->xmit(g, f, 34 + hl + n, g->tso);
	if (flags & T_ACK)
		g->need_ack = false;
	return true;
}

/* Send what the peer's window allows; true if anything went out. */
static bool g_output(struct gtcp *g)
{
	bool sent = false;
	uint32_t seg = g->tso ? NET_TSO_SEG : GUEST_MSS;
	while (g->state == G_EST) {
		uint64_t off = (uint32_t)(g->snd_nxt - g->iss - 1);
		uint32_t inflight = g->snd_nxt - g->snd_una;
		if (off >= g->tx_total || inflight >= g->peer_wnd)
			break;
		uint32_t room = g->peer_wnd - inflight, n = MIN((uint64_t)seg, g->tx_total - off);
		if (room < n && inflight)	/* no silly small segments while data is in flight */
			break;
		n = MIN(n, room);
		/* PSH as Linux sets it: on the last segment the data or the window allows now, not on each. */
		bool last = off + n >= g->tx_total || inflight + n + seg > g->peer_wnd;
		if (!g_send(g, g->snd_nxt, T_ACK | (last ? T_PSH : 0), pat + off % PAT_PERIOD, n))
			break;
		g->snd_nxt += n;
		sent = true;
	}
	return sent;
}

/* Does the n bytes at offset off of the iovec equal the test stream from position pos? */
static bool stream_matches(const struct iovec *v, int nv, size_t off, size_t n, uint64_t pos)
{
	for (int i = 0; i < nv && n; i++) {
		const uint8_t *b = v[i].iov_base;
		size_t l = v[i].iov_len;
		if (off >= l) {
			off -= l;
			continue;
		}
		b += off;
		l -= off;
		off = 0;
		while (l && n) {
			size_t k = MIN(MIN(l, n), (size_t)KiB(64));	/* pat holds 64 KiB past its period */
			if (memcmp(b, pat + pos % PAT_PERIOD, k))
				return false;
			b += k;
			l -= k;
			n -= k;
			pos += k;
		}
	}
	return !n;
}

/* A frame for the guest, in nv pieces (mergeable receive buffers); all headers must be in the first. */
static void g_input(struct gtcp *g, const struct iovec *v, int nv)
{
	const uint8_t *f = v[0].iov_base;
	size_t len0 = v[0].iov_len, len = 0;
	for (int i = 0; i < nv; i++)
		len += v[i].iov_len;
	if (len0 < 54 || f[12] != 8 || f[13] != 0)
		return;
	const uint8_t *ip = f + 14;
	size_t ihl = (ip[0] & 15) * 4, tot = r16(ip + 2);
	if (ip[9] != 6 || ihl < 20 || tot + 14 > len || tot < ihl + 20 || 14 + ihl + 20 > len0)
		return;
	const uint8_t *t = ip + ihl;
	if (r16(t) != g->rport || r16(t + 2) != g->lport)
		return;
	uint32_t seq = r32(t + 4), ack = r32(t + 8);
	uint8_t flags = t[13];
	size_t hl = (t[12] >> 4) * 4;
	if (hl < 20 || tot < ihl + hl || 14 + ihl + hl > len0)
		return;
	size_t dlen = tot - ihl - hl, doff = 14 + ihl + hl;
	if (flags & T_RST) {
		g->rst = true;
		g->state = G_CLOSED;
		return;
	}
	if (g->state == G_SYN_SENT) {
		if ((flags & (T_SYN | T_ACK)) == (T_SYN | T_ACK) && ack == g->iss + 1) {
			int ws = -1;
			for (size_t o = 20; o < hl;) {
				if (t[o] == 0)
					break;
				if (t[o] == 1) {
					o++;
					continue;
				}
				if (o + 1 >= hl || t[o + 1] < 2)
					break;
				if (t[o] == 3 && t[o + 1] == 3 && o + 2 < hl)
					ws = t[o + 2];
				o += t[o + 1];
			}
			if (g->wscale && ws >= 0) {
				g->snd_shift = MIN(ws, 14);
			} else {	/* scaling only if both offered it */
				g->snd_shift = g->rcv_shift = 0;
				g->rcv_wnd = MIN(g->rcv_wnd, 65535u);
			}
			g->rcv_nxt = seq + 1;
			g->snd_una = ack;
			g->peer_wnd = r16(t + 14);
			g->state = G_EST;
			g->need_ack = true;
		}
		return;
	}
	if (g->state != G_EST)
		return;
	if ((flags & T_SYN) && seq + 1 == g->rcv_nxt)
		g->need_ack = true;	/* our handshake ACK was lost: the peer repeats its SYN-ACK */
	if (flags & T_ACK) {
		if (SEQ_GT(ack, g->snd_una) && !SEQ_GT(ack, g->snd_nxt)) {
			g->snd_una = ack;
			g->last_progress = mono_ns();
		}
		g->peer_wnd = (uint32_t)r16(t + 14) << g->snd_shift;
	}
	if (dlen) {
		if (seq == g->rcv_nxt) {	/* in order: check it against the stream */
			if (!stream_matches(v, nv, doff, dlen, g->rx_bytes))
				g->bad++;
			g->rx_bytes += dlen;
			g->rcv_nxt += dlen;
			g->last_progress = mono_ns();
		}
		g->need_ack = true;	/* out of order: a duplicate ACK */
	}
	if ((flags & T_FIN) && seq + dlen == g->rcv_nxt) {
		g->rcv_nxt++;
		g->need_ack = true;
	}
}

/* After the received frames: acknowledge them, and go back N if nothing was acknowledged for a while. */
static void g_after_input(struct gtcp *g)
{
	if (g->need_ack)
		g_send(g, g->snd_nxt, T_ACK, NULL, 0);
	/* Nothing is dropped on either link unless something is wrong, but be safe. */
	if (g->state == G_EST && g->snd_nxt != g->snd_una && mono_ns() - g->last_progress > 300000000ull) {
		g->snd_nxt = g->snd_una;
		g->last_progress = mono_ns();
	}
}

/* The user-mode stack as the link: frames built in one buffer, handed to net_user_from_guest*(). */
static uint8_t txf[14 + 20 + 28 + 65536];

static uint8_t *user_frame_buf(struct gtcp *g) { return txf; }

static void user_xmit(struct gtcp *g, uint8_t *f, size_t len, bool partial)
{
	if (partial)
		net_user_from_guest_csum_partial(g->link, f, len);
	else
		net_user_from_guest(g->link, f, len);
}

/* One round: host sockets and timers, then the guest reads its frames and acknowledges. */
static void user_step(struct gtcp *g, bool busy)
{
	struct net_user *nu = g->link;
	int t = net_user_timeout(nu);
	if (busy || rx_head != rx_tail)
		t = 0;
	else if (t < 0 || t > 10)
		t = 10;
	struct pollfd p = { net_user_fd(nu), POLLIN, 0 };
	if (poll(&p, 1, t) > 0)
		net_user_process(nu);
	net_user_timer(nu, net_user_now(nu));
	for (; rx_head != rx_tail; rx_head++) {
		struct iovec v = { rxbuf[rx_head % RXQ], rxlen[rx_head % RXQ] };
		g_input(g, &v, 1);
	}
	g_after_input(g);
}

/*
 * virtio-net with lkvm's tap backend as the link. The bench thread is the
 * guest's driver: queue 0 receives (NET_QSIZE buffers of RX_BUF_LEN posted,
 * mergeable), queue 1 transmits (one descriptor per frame: virtio-net header
 * and frame in one slot, slot = descriptor = ring position, since the device
 * completes in order). Transmit completions raise no interrupt: slots are
 * reclaimed when new frames need them (and when the ring is full the driver
 * asks for the interrupt, as Linux does). Receive interrupts are on only
 * while the driver sleeps, as with NAPI.
 */
#define TAP_NAME	"lkvm-bench0"
#define NET_QSIZE	256
#define RX_BUF_LEN	4096
#define RX_MAX_BUFS	64		/* mergeable buffers one frame may take (the device's limit) */
#define TX_SLOT		0x11000		/* virtio-net header + 64 KiB frame, rounded up */
#define NET_TX_BUF(s)	(MiB(64) + (uint64_t)(s) * TX_SLOT)	/* 256 slots: 64 MiB to 81 MiB */
#define NET_RX_BUF(s)	(MiB(84) + (uint64_t)(s) * RX_BUF_LEN)
#define TX_KICK_BATCH	32		/* kick at least every 32 frames so the device starts early */
#define TAP_RCV_WND	MiB(1)		/* what the guest advertises (scaled) */
#define TAP_RCV_SHIFT	5
#define GSO_TCPV4	1

static struct tapnet {
	struct vdev dev;
	struct vq q[2];	/* [0] receive, [1] transmit */
	uint16_t tx_kicked;	/* avail index at the last transmit kick */
	bool tx_full;		/* frame_buf found no slot: wait for a transmit completion too */
	uint8_t host_mac[6];	/* the tap interface's: where the guest's frames go */
	struct net_backend *be;	/* lkvm's tap backend, for its merge switch */
} tn;

static void tap_reclaim(void)
{
	struct vq *tx = &tn.q[1];
	uint16_t id;
	uint32_t len;
	for (uint16_t want = tx->last_used; vq_used(tx, &id, &len); want++)
		if (id != want % tx->size)
			die("tap: virtio-net completed transmit slot %u out of order (expected %u)", id, want % tx->size);
}

static uint8_t *tap_frame_buf(struct gtcp *g)
{
	struct vq *tx = &tn.q[1];
	tap_reclaim();
	tn.tx_full = (uint16_t)(tx->avail_idx - tx->last_used) >= tx->size;
	if (tn.tx_full)
		return NULL;
	return gp(NET_TX_BUF(tx->avail_idx % tx->size) + VNET_HDR_LEN, TX_SLOT - VNET_HDR_LEN);
}

static void tap_flush(void)
{
	struct vq *tx = &tn.q[1];
	if (tx->avail_idx != tn.tx_kicked) {
		tn.tx_kicked = tx->avail_idx;
		vq_kick(tx);
	}
}

static void tap_xmit(struct gtcp *g, uint8_t *f, size_t len, bool partial)
{
	struct vq *tx = &tn.q[1];
	uint16_t s = tx->avail_idx % tx->size;
	uint8_t *h = f - VNET_HDR_LEN;	/* struct virtio_net_hdr, little-endian */
	memset(h, 0, VNET_HDR_LEN);
	if (partial) {
		size_t hdrs = 34 + (f[46] >> 4) * 4;	/* Ethernet, IPv4 without options, TCP */
		h[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
		put_le16(h + 6, 34);	/* csum_start: the TCP header */
		put_le16(h + 8, 16);	/* csum_offset: its checksum field */
		if (len - hdrs > GUEST_MSS) {	/* TSO: the host kernel takes it as one GSO packet */
			h[1] = GSO_TCPV4;
			put_le16(h + 2, hdrs);
			put_le16(h + 4, GUEST_MSS);
		}
	}
	put_desc(tx->desc, s, NET_TX_BUF(s), VNET_HDR_LEN + len, 0, 0);
	vq_add(tx, s);
	if ((uint16_t)(tx->avail_idx - tn.tx_kicked) >= TX_KICK_BATCH)
		tap_flush();
}

/* Take every received frame (num_buffers pieces each) to the guest TCP, then give the buffers back. */
static void tap_rx(struct gtcp *g)
{
	struct vq *rx = &tn.q[0];
	bool refilled = false;
	uint16_t id[RX_MAX_BUFS];
	uint32_t len;
	while (vq_used(rx, &id[0], &len)) {
		if (id[0] >= rx->size || len < VNET_HDR_LEN || len > RX_BUF_LEN)
			die("tap: virtio-net returned receive buffer %u with %u bytes", id[0], len);
		uint8_t *b = gp(NET_RX_BUF(id[0]), RX_BUF_LEN);
		int nb = get_le16(b + 10);	/* num_buffers */
		if (nb < 1 || nb > RX_MAX_BUFS)
			die("tap: a received frame in %d buffers", nb);
		struct iovec v[RX_MAX_BUFS];
		v[0] = (struct iovec){ b + VNET_HDR_LEN, len - VNET_HDR_LEN };
		for (int k = 1; k < nb; k++) {
			if (!vq_used(rx, &id[k], &len) || id[k] >= rx->size || len > RX_BUF_LEN)
				die("tap: a frame's %d receive buffers were not all returned at once", nb);
			v[k] = (struct iovec){ gp(NET_RX_BUF(id[k]), RX_BUF_LEN), len };
		}
		g_input(g, v, nb);
		for (int k = 0; k < nb; k++)
			vq_add(rx, id[k]);
		refilled = true;
	}
	if (refilled)
		vq_kick(rx);	/* the device may be waiting for buffers */
}

/* Sleep until a receive (or, with the ring full, a transmit) interrupt, at most ms. */
static bool tap_ready(void *arg)
{
	return vq_pending(&tn.q[0]) || (tn.tx_full && vq_pending(&tn.q[1]));
}

static void tap_wait(int ms)
{
	struct vq *rx = &tn.q[0], *tx = &tn.q[1];
	vq_avail_flags(rx, 0);
	if (tn.tx_full)
		vq_avail_flags(tx, 0);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);	/* pairs with the device's: used index, then flags */
	fake_irq_wait(tap_ready, NULL, ms, 0);
	vq_avail_flags(rx, VD_AVAIL_NO_INTERRUPT);
	vq_avail_flags(tx, VD_AVAIL_NO_INTERRUPT);
}

static void tap_step(struct gtcp *g, bool busy)
{
	tap_flush();
	if (!busy && !vq_pending(&tn.q[0]))
		tap_wait(10);
	tap_rx(g);
	g_after_input(g);
	tap_flush();
}

/* The host end: a thread with one accepted TCP connection that sends or receives bytes. */
struct peer {
	int lfd, gofd;
	uint16_t port;
	bool sends;
	uint64_t bytes;
	uint64_t got, bad, t_end;
	int done;
	pthread_t th;
};

static void *peer_main(void *arg)
{
	struct peer *p = arg;
	static __thread uint8_t buf[KiB(64)];
	int fd = accept(p->lfd, NULL, NULL);
	if (fd < 0)
		die("accept: %s", strerror(errno));
	if (p->sends) {
		uint64_t go;
		if (read(p->gofd, &go, sizeof(go)) != sizeof(go))
			die("peer: go");
		for (uint64_t sent = 0; sent < p->bytes;) {
			ssize_t w = send(fd, pat + sent % PAT_PERIOD, MIN(KiB(64), p->bytes - sent), MSG_NOSIGNAL);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				die("peer send: %s", strerror(errno));
			sent += w;
		}
		shutdown(fd, SHUT_WR);
		while (recv(fd, buf, sizeof(buf), 0) > 0) {}	/* until the other end closes */
	} else {
		while (p->got < p->bytes) {
			ssize_t n = recv(fd, buf, sizeof(buf), 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			if (memcmp(buf, pat + p->got % PAT_PERIOD, n))
				p->bad++;
			p->got += n;
		}
	}
	p->t_end = mono_ns();
	__atomic_store_n(&p->done, 1, __ATOMIC_RELEASE);
	close(fd);
	return NULL;
}

/* Listen on ip (host order), an ephemeral port, in the calling thread's network namespace. */
static void peer_start(struct peer *p, bool sends, uint32_t ip, uint64_t bytes)
{
	memset(p, 0, sizeof(*p));
	p->sends = sends;
	p->bytes = bytes;
	p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	p->gofd = eventfd(0, EFD_CLOEXEC);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(ip) };
	socklen_t l = sizeof(a);
	if (p->lfd < 0 || p->gofd < 0 || bind(p->lfd, (struct sockaddr *)&a, sizeof(a)) ||
	    getsockname(p->lfd, (struct sockaddr *)&a, &l) || listen(p->lfd, 4))
		die("peer socket: %s", strerror(errno));
	p->port = ntohs(a.sin_port);
	if (pthread_create(&p->th, NULL, peer_main, p))
		die("pthread_create");
}

static void peer_go(struct peer *p)
{
	uint64_t one = 1;
	if (write(p->gofd, &one, sizeof(one)) != sizeof(one))
		die("peer: go");
}

static void peer_join(struct peer *p)
{
	pthread_join(p->th, NULL);
	close(p->lfd);
	close(p->gofd);
}

enum { NET_UP_MSS, NET_UP_TSO, NET_DOWN };
struct net_job {
	int kind;
	bool tap;	/* virtio-net + tap, else the user-mode stack */
	uint64_t bytes;	/* per run */
	bool offload;	/* user-mode: the guest takes checksum and GSO offloads (GUEST_CSUM, GUEST_TSO4) */
};
static uint16_t next_lport = 40000;

static double net_dev_run(void *arg)
{
	struct net_job *j = arg;
	bool up = j->kind != NET_DOWN;
	const char *what = j->tap ? "tap" : "user-mode net";
	struct peer p;
	peer_start(&p, !up, j->tap ? TAP_HOST_IP : INADDR_LOOPBACK, j->bytes);
	struct gtcp g = { .mac = gmac };
	if (j->tap) {
		g.peer_mac = tn.host_mac;
		g.ip = TAP_GUEST_IP;
		g.peer_ip = TAP_HOST_IP;
		g.frame_buf = tap_frame_buf;
		g.xmit = tap_xmit;
		g.step = tap_step;
		g.wscale = true;
		g.rcv_shift = TAP_RCV_SHIFT;
		g.rcv_wnd = TAP_RCV_WND;
	} else {	/* the stack connects 10.0.2.2:port to 127.0.0.1:port */
		struct net_user_cfg cfg = { .dns = "127.0.0.1:9" };
		memcpy(cfg.guest_mac, gmac, 6);
		g.link = net_user_new(&cfg, to_guest, NULL);
		if (!g.link)
			die("net_user_new: %s", err_msg());
		net_user_set_offload(g.link, j->offload, j->offload);
		rx_head = rx_tail = 0;
		g.peer_mac = gwmac;
		g.ip = GUEST_IP;
		g.peer_ip = GW_IP;
		g.frame_buf = user_frame_buf;
		g.xmit = user_xmit;
		g.step = user_step;
		g.wscale = true;	/* as Linux guests do; the stack scales since 2026-12-03 */
		g.rcv_shift = TAP_RCV_SHIFT;
		g.rcv_wnd = TAP_RCV_WND;	/* RXQ frames hold more than this: nothing is dropped */
	}
	g.tso = j->kind == NET_UP_TSO;
	g.lport = next_lport++;
	g.rport = p.port;
	g.iss = g.snd_una = g.snd_nxt = 0x10000000u + g.lport * 7919u;
	g.tx_total = up ? j->bytes : 0;
	g.state = G_SYN_SENT;
	g.last_progress = mono_ns();
	uint64_t limit = mono_ns() + 5000000000ull;
	while (!g_send(&g, g.iss, T_SYN, NULL, 0) && mono_ns() < limit)
		g.step(&g, false);
	g.snd_nxt = g.iss + 1;
	while (g.state == G_SYN_SENT && mono_ns() < limit)
		g.step(&g, false);
	if (g.state != G_EST)
		die("%s: no connection to the host's socket (port %u) through the device", what, p.port);

	uint64_t t0 = mono_ns(), t1;
	g.last_progress = t0;
	if (!up)
		peer_go(&p);
	limit = t0 + 120000000000ull;
	for (;;) {
		bool busy = up && g_output(&g);
		g.step(&g, busy);
		if (up ? __atomic_load_n(&p.done, __ATOMIC_ACQUIRE) : g.rx_bytes >= j->bytes)
			break;
		if (g.rst || mono_ns() > limit)
			die("%s: transfer %s (%llu bytes in)", what, g.rst ? "reset" : "stalled",
			    (unsigned long long)(up ? p.got : g.rx_bytes));
	}
	t1 = up ? p.t_end : mono_ns();
	if (j->tap) {	/* abort the connection: the sending peer sees the end */
		limit = mono_ns() + 5000000000ull;
		while (!g_send(&g, g.snd_nxt, T_RST | T_ACK, NULL, 0) && mono_ns() < limit)
			tap_wait(1);
		tap_flush();
	} else {
		net_user_free(g.link);	/* closes the host socket: the sending peer sees the end */
	}
	peer_join(&p);
	if (up ? p.got != j->bytes || p.bad : g.rx_bytes != j->bytes || g.bad)
		die("%s: data arrived wrong (%llu bytes, %llu bad chunks)", what,
		    (unsigned long long)(up ? p.got : g.rx_bytes), (unsigned long long)(up ? p.bad : g.bad));
	if (rx_overflow)
		die("user-mode net: %llu frames for the guest did not fit its ring", (unsigned long long)rx_overflow);
	return j->bytes / (double)MiB(1) / ((t1 - t0) / 1e9);
}

/* The same bytes over a 127.0.0.1 TCP connection between this thread and the peer thread. */
static double net_host_run(void *arg)
{
	struct net_job *j = arg;
	bool up = j->kind != NET_DOWN;
	struct peer p;
	peer_start(&p, !up, INADDR_LOOPBACK, j->bytes);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(p.port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)))
		die("connect: %s", strerror(errno));
	uint64_t t0 = mono_ns(), t1, got = 0, bad = 0;
	if (up) {
		for (uint64_t sent = 0; sent < j->bytes;) {
			ssize_t w = send(fd, pat + sent % PAT_PERIOD, MIN(KiB(64), j->bytes - sent), MSG_NOSIGNAL);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				die("send: %s", strerror(errno));
			sent += w;
		}
		close(fd);
		peer_join(&p);
		t1 = p.t_end;
		got = p.got;
		bad = p.bad;
	} else {
		peer_go(&p);
		while (got < j->bytes) {
			ssize_t n = recv(fd, hbuf, KiB(64), 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			if (memcmp(hbuf, pat + got % PAT_PERIOD, n))
				bad++;
			got += n;
		}
		t1 = mono_ns();
		close(fd);
		peer_join(&p);
	}
	if (got != j->bytes || bad)
		die("loopback: data arrived wrong");
	return j->bytes / (double)MiB(1) / ((t1 - t0) / 1e9);
}

static void bench_net(void)
{
	static struct net_job up = { NET_UP_MSS, false, NET_BYTES, true }, tso = { NET_UP_TSO, false, NET_BYTES, true },
			      down = { NET_DOWN, false, NET_BYTES, true }, down_plain = { NET_DOWN, false, NET_BYTES, false };
	run_row("user-mode net: TCP guest->host, 1460-byte segments, checksums verified", "MiB/s",
		net_dev_run, &up, net_host_run, &up);
	run_row("user-mode net: TCP guest->host, 64 KiB TSO segments, checksum offloaded", "MiB/s",
		net_dev_run, &tso, net_host_run, &tso);
	run_row("user-mode net: TCP host->guest, GSO frames with partial checksums", "MiB/s", net_dev_run, &down,
		net_host_run, &down);
	run_row("user-mode net: TCP host->guest, guest without offloads: 1460-byte frames, checksums filled in",
		"MiB/s", net_dev_run, &down_plain, net_host_run, &down_plain);
	note("user-mode net: 64 MiB per run through net_user_from_guest()/to_guest() with a minimal guest TCP on "
	     "this thread (in order, window scaling offered and a 1 MiB receive window, one ACK per batch of "
	     "received frames, payload compared with the sent stream; it does not verify the checksums of frames "
	     "it receives), the host end a thread on a 127.0.0.1 socket the stack connects to. The guest takes "
	     "checksum and GSO offloads as Linux's virtio_net does (net_user_set_offload(): frames to it of up to "
	     "64 KiB with partial checksums), but in the row that says it does not. Host: the same "
	     "64 MiB between this thread and that thread over a 127.0.0.1 connection, in the same direction. The "
	     "device path includes that same loopback hop, so 1.0 is its ceiling: a single pair above it is noise.");
}

/* ---- tap: virtio-net and net/tap.c to the host kernel, in a private network namespace ---- */

static int ifreq_ioctl(int s, unsigned long req, const char *ifname, struct ifreq *r, char *why, size_t n)
{
	snprintf(r->ifr_name, IFNAMSIZ, "%s", ifname);
	if (ioctl(s, req, r) == 0)
		return 0;
	snprintf(why, n, "%s: ioctl 0x%lx: %s", ifname, req, strerror(errno));
	return -1;
}

static int if_up(int s, const char *ifname, char *why, size_t n)
{
	struct ifreq r = { 0 };
	if (ifreq_ioctl(s, SIOCGIFFLAGS, ifname, &r, why, n))
		return -1;
	r.ifr_flags |= IFF_UP;
	return ifreq_ioctl(s, SIOCSIFFLAGS, ifname, &r, why, n);
}

static void sin_set(struct sockaddr *sa, uint32_t ip)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(ip) };
	memcpy(sa, &a, sizeof(a));
}

/*
 * On the calling thread (threads it creates later inherit this): a network
 * namespace of its own, lo up, the tap from lkvm's backend with 10.0.3.1/24
 * and a permanent ARP entry for the guest, and the virtio-net device driven
 * by this thread. The namespace, and the tap in it, go away with the process.
 * false (why says it) if any of it is not possible here.
 */
static bool tap_setup(char *why, size_t n)
{
	if (unshare(CLONE_NEWNET)) {
		snprintf(why, n, "needs CAP_NET_ADMIN: unshare(CLONE_NEWNET): %s", strerror(errno));
		return false;
	}
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);	/* a socket of the new namespace */
	if (s < 0) {
		snprintf(why, n, "socket: %s", strerror(errno));
		return false;
	}
	static struct net_opt o = { .mode = NET_TAP, .tapif = TAP_NAME, .mac_set = true };
	static struct net_backend be;
	memcpy(o.mac, gmac, 6);
	struct ifreq r = { 0 };
	struct arpreq arp = { .arp_flags = ATF_PERM | ATF_COM };
	bool ok = false;
	if (if_up(s, "lo", why, n))
		goto out;
	if (tap_open(&o, &be)) {
		snprintf(why, n, "%s", err_msg());
		goto out;
	}
	tn.be = &be;
	sin_set(&r.ifr_addr, TAP_HOST_IP);
	if (ifreq_ioctl(s, SIOCSIFADDR, TAP_NAME, &r, why, n))
		goto out;
	sin_set(&r.ifr_netmask, 0xffffff00u);
	if (ifreq_ioctl(s, SIOCSIFNETMASK, TAP_NAME, &r, why, n) || if_up(s, TAP_NAME, why, n) ||
	    ifreq_ioctl(s, SIOCGIFHWADDR, TAP_NAME, &r, why, n))
		goto out;
	memcpy(tn.host_mac, r.ifr_hwaddr.sa_data, 6);
	sin_set(&arp.arp_pa, TAP_GUEST_IP);
	arp.arp_ha.sa_family = ARPHRD_ETHER;
	memcpy(arp.arp_ha.sa_data, gmac, 6);
	snprintf(arp.arp_dev, sizeof(arp.arp_dev), "%s", TAP_NAME);
	if (ioctl(s, SIOCSARP, &arp)) {
		snprintf(why, n, "%s: SIOCSARP: %s", TAP_NAME, strerror(errno));
		goto out;
	}
	if (!virtio_net_add(&vm, &o, &be) || devices_start(&vm)) {
		snprintf(why, n, "virtio_net_add: %s", err_msg());
		goto out;
	}
	/* As Linux's virtio_net: mergeable buffers, checksum and TCPv4 segmentation offload both ways. */
	static const uint16_t qs[2] = { NET_QSIZE, NET_QSIZE };
	drv_init_n(&tn.dev, tn.q, 2, 1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_NET_F_MAC |
		   1ULL << VIRTIO_NET_F_MRG_RXBUF | 1ULL << VIRTIO_NET_F_CSUM | 1ULL << VIRTIO_NET_F_GUEST_CSUM |
		   1ULL << VIRTIO_NET_F_HOST_TSO4 | 1ULL << VIRTIO_NET_F_GUEST_TSO4, RING(3), qs);
	struct vq *rx = &tn.q[0];
	for (int i = 0; i < NET_QSIZE; i++) {
		put_desc(rx->desc, i, NET_RX_BUF(i), RX_BUF_LEN, VD_F_WRITE, 0);
		vq_add(rx, i);
	}
	vq_avail_flags(rx, VD_AVAIL_NO_INTERRUPT);
	vq_avail_flags(&tn.q[1], VD_AVAIL_NO_INTERRUPT);
	vq_kick(rx);	/* the device thread takes the features (TUNSETOFFLOAD) and starts receiving */
	ok = true;
out:
	close(s);
	return ok;
}

/* This thread's namespace's counters: frames the tap dropped on their way to the guest (its queue full), TCP retransmissions. */
static void tap_counters(uint64_t *dropped, uint64_t *retrans)
{
	char line[1024], head[1024] = "";
	*dropped = *retrans = 0;
	FILE *f = fopen("/proc/thread-self/net/dev", "r");
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long long v[12];
		char *c = strchr(line, ':');
		if (c && !strncmp(line + strspn(line, " "), TAP_NAME ":", strlen(TAP_NAME) + 1) &&
		    sscanf(c + 1, "%llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
			   &v[4], &v[5], &v[6], &v[7], &v[8], &v[9], &v[10], &v[11]) == 12)
			*dropped = v[11];	/* transmit drop */
	}
	if (f)
		fclose(f);
	f = fopen("/proc/thread-self/net/snmp", "r");
	while (f && fgets(line, sizeof(line), f)) {
		if (strncmp(line, "Tcp:", 4))
			continue;
		if (!*head) {
			snprintf(head, sizeof(head), "%s", line);
			continue;
		}
		char *hs, *vs, *h = strtok_r(head, " \n", &hs), *v = strtok_r(line, " \n", &vs);
		for (; h && v; h = strtok_r(NULL, " \n", &hs), v = strtok_r(NULL, " \n", &vs))
			if (!strcmp(h, "RetransSegs"))
				*retrans = strtoull(v, NULL, 10);
		break;
	}
	if (f)
		fclose(f);
}

static void *tap_thread(void *arg)
{
	char why[600];
	if (!tap_setup(why, sizeof(why))) {
		fprintf(stderr, "devices: tap rows skipped: %s\n", why);
		skip_row("tap: skipped (%s)", why);
		return NULL;
	}
	static struct net_job up = { NET_UP_MSS, true, TAP_BYTES }, tso = { NET_UP_TSO, true, TAP_BYTES },
			      down = { NET_DOWN, true, TAP_BYTES };
	uint64_t drop0, rt0, drop1, rt1, drop2, rt2;
	tap_counters(&drop0, &rt0);
	run_row("tap (virtio-net): TCP guest->host, 1460-byte segments, checksums by the guest", "MiB/s",
		net_dev_run, &up, net_host_run, &up);
	tap_set_merge(tn.be, false);
	run_row("tap (virtio-net), merge=off: TCP guest->host, 1460-byte segments, checksums by the guest", "MiB/s",
		net_dev_run, &up, net_host_run, &up);
	tap_set_merge(tn.be, true);
	run_row("tap (virtio-net): TCP guest->host, 64 KiB TSO segments, checksum offloaded", "MiB/s",
		net_dev_run, &tso, net_host_run, &tso);
	tap_counters(&drop1, &rt1);
	run_row("tap (virtio-net): TCP host->guest, GSO frames into 4 KiB mergeable buffers", "MiB/s",
		net_dev_run, &down, net_host_run, &down);
	tap_counters(&drop2, &rt2);
	note("tap: %llu MiB per run through lkvm's virtio-net device (virtio_net_add()) and its tap backend "
	     "(tap_open() with tapif=" TAP_NAME ") to and from the host kernel's TCP, all in a network namespace of "
	     "the bench's own (unshare(CLONE_NEWNET) on the bench thread; lo up, 10.0.3.1/24 on the tap and a "
	     "permanent ARP entry for the guest's 10.0.3.2, all by ioctl; the host's network is not touched and the "
	     "namespace ends with the process). The bench thread is the guest: its driver negotiates mergeable "
	     "receive buffers, checksum and TCPv4 segmentation offload both ways, as Linux's virtio_net does; puts "
	     "each segment with its virtio-net header on the transmit queue (a kick every %d frames and at the end "
	     "of a batch; no transmit interrupts: slots are reclaimed on the next send, and an interrupt is asked "
	     "for only when the ring is full); keeps %d receive buffers of %d bytes posted (a 64 KiB GSO frame takes "
	     "17); and sleeps for the MSI-X interrupt only when it has nothing to do. Its TCP is the minimal one "
	     "above, here with window scaling and a 1 MiB receive window; it opens the connection in both "
	     "directions. Like Linux's TCP it sets DF, counts IP IDs up and sets PSH only on the last segment the "
	     "data or the window allows at once (until 2026-12-03 it set PSH on every one, which nothing merges). "
	     "lkvm's tap backend merges consecutive segments of one transmit batch into one GSO frame "
	     "(net/tcp_merge.c); the merge=off row is the same device with merging switched off between rows "
	     "(tap_set_merge()), one write per segment. lkvm's virtio-net thread writes and reads the tap; the host end is a thread on a socket "
	     "bound to 10.0.3.1. Host: the same bytes between two threads over 127.0.0.1 in the same namespace. "
	     "Payload compared with the sent stream on the receiving side in both directions. The upload rows can "
	     "exceed 1.0: the device path's sender is the bench's minimal TCP, not the kernel's, and its work is "
	     "spread over three threads (driver, lkvm's device thread, the host socket's) where loopback has two, "
	     "on two cores. Frames the tap dropped on their way to the guest because its queue was full (lkvm's "
	     "device thread takes at most 128 transmit chains a turn before it reads the tap; before that bound "
	     "a fast sender kept it away for 3600-73000 drops a run), in this run: %llu during the upload rows (the kernel's ACKs; ACKs are cumulative, so the "
	     "sender only learns later) and %llu during the download row; TCP retransmissions in the namespace, "
	     "both paths: %llu and %llu.",
	     (unsigned long long)(TAP_BYTES >> 20), TX_KICK_BATCH, NET_QSIZE, RX_BUF_LEN, (unsigned long long)(drop1 - drop0),
	     (unsigned long long)(drop2 - drop1), (unsigned long long)(rt1 - rt0), (unsigned long long)(rt2 - rt1));
	return NULL;
}

/* In a thread of its own, so that only that thread (and the ones it starts) changes namespace. */
static void bench_tap(void)
{
	pthread_t t;
	if (pthread_create(&t, NULL, tap_thread, NULL))
		die("pthread_create");
	pthread_join(t, NULL);
}

/* ---- the report ---- */

static void fmt_rate(char *out, size_t n, double v, const char *unit)
{
	snprintf(out, n, v >= 100 ? "%.0f %s" : "%.1f %s", v, unit);
}

static void print_report(void)
{
	struct utsname u;
	uname(&u);
	time_t t = time(NULL);
	char when[64];
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M UTC", gmtime(&t));
	printf("### Device layer (no KVM: device code driven in-process, against the same work on the host)\n\n");
	char args[300] = "";
	if (reps != 5)
		snprintf(args, sizeof(args), " -r %d", reps);
	if (workloads)
		snprintf(args + strlen(args), sizeof(args) - strlen(args), " -w %s", workloads);
	printf("Measured %s by `sh bench/devices.sh%s` on %ld cores, %s (1-minute load average %.2f before "
	       "the run, all of it other work, and %.2f after, counting this run's own two or three threads): %d repetitions after one warm-up, host and "
	       "device alternating. Rates are medians (higher is better); device / host is their ratio (1.00: as "
	       "fast as the host), and the last column the lowest and highest ratio of one repetition's pair.\n\n",
	       when, args, sysconf(_SC_NPROCESSORS_ONLN), u.release, load_before, load_after, reps);
	printf("| workload | lkvm device path | host directly | device / host | ratio min-max |\n");
	printf("|---|---|---|---|---|\n");
	for (int i = 0; i < nrows; i++) {
		struct row *r = &rows[i];
		if (!r->n) {
			printf("| %s | - | - | - | - |\n", r->name);
			continue;
		}
		double ratio[MAX_REPS], lo = 1e30, hi = 0;
		for (int k = 0; k < r->n; k++) {
			ratio[k] = r->dev[k] / r->host[k];
			lo = MIN(lo, ratio[k]);
			hi = MAX(hi, ratio[k]);
		}
		double md = median(r->dev, r->n), mh = median(r->host, r->n);
		char a[64], b[64];
		fmt_rate(a, sizeof(a), md, r->unit);
		fmt_rate(b, sizeof(b), mh, r->unit);
		printf("| %s | %s | %s | **%.2f** | %.2f-%.2f |\n", r->name, a, b, md / mh, lo, hi);
	}
	printf("\n");
	for (int i = 0; i < nnotes; i++)
		printf("- %s\n", notes[i]);
}

static bool in_list(const char *list, const char *w)
{
	size_t n = strlen(w);
	for (const char *p = list; p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
		if (!strncmp(p, w, n) && (p[n] == ',' || !p[n]))
			return true;
	return false;
}

static bool wanted(const char *w) { return !workloads || in_list(workloads, w); }

static bool valid_workloads(const char *list)
{
	for (const char *p = list; p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
		size_t n = strchrnul(p, ',') - p;
		bool ok = false;
		for (const char *const *k = (const char *const[]){ "blk", "aio", "alloc", "9p", "net", "tap", NULL }; *k; k++)
			ok |= strlen(*k) == n && !strncmp(p, *k, n);
		if (!ok)
			return false;
	}
	return true;
}

int main(int argc, char **argv)
{
	int opt;
	while ((opt = getopt(argc, argv, "r:w:")) != -1) {
		if (opt == 'r' && atoi(optarg) >= 1 && atoi(optarg) <= MAX_REPS) {
			reps = atoi(optarg);
		} else if (opt == 'w' && valid_workloads(optarg)) {
			workloads = optarg;
		} else {
			fprintf(stderr, "usage: %s [-r REPETITIONS (1-%d)] [-w blk,aio,alloc,9p,net,tap]\n", argv[0], MAX_REPS);
			return 1;
		}
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGHUP, on_signal);
	signal(SIGPIPE, SIG_IGN);
	atexit(cleanup);
	make_tmpdir();
	fprintf(stderr, "devices: files in %s\n", tmpdir);
	pattern_init();
	hbuf = aligned_alloc(4096, SEQ_LEN);
	memset(hbuf, 0, SEQ_LEN);
	vm_setup();
	getloadavg(&load_before, 1);
	if (wanted("blk"))
		bench_blk();
	if (wanted("aio"))
		bench_aio();
	if (wanted("alloc"))
		bench_alloc();
	if (wanted("9p"))
		bench_9p();
	if (wanted("net"))
		bench_net();
	if (wanted("tap"))
		bench_tap();
	getloadavg(&load_after, 1);
	print_report();
	cleanup();
	return 0;
}
