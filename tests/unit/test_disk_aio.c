/*
 * The asynchronous I/O engines (include/disk_aio.h): each one by itself,
 * then each behind virtio-blk with the same requests, data checked
 * byte-exact in the file; the fallback when the kernel refuses io_uring
 * (a seccomp filter in a child), lkvm's own filter with a ring, and the
 * ring's restriction to reads and writes.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <time.h>
#include <liburing.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include "child.h"
#include "test.h"
#include "threads.h"
#include "device.h"
#include "devices.h"
#include "disk.h"
#include "disk_aio.h"
#include "fake_vm.h"
#include "json.h"
#include "seccomp.h"
#include "util.h"
#include "virtio.h"

#include "virtio_fixture.h"

static const enum disk_aio_kind kinds[] = { DISK_AIO_URING, DISK_AIO_NATIVE, DISK_AIO_THREADS };

static int tmp_file(char *path, uint64_t size)
{
	strcpy(path, "/tmp/lkvm-test-aio-XXXXXX");
	int fd = mkstemp(path);
	CHECK(fd >= 0 && ftruncate(fd, size) == 0);
	return fd;
}

/* Byte i of a request's pattern, different for every request and offset. */
static uint8_t pat(int req, size_t i) { return (uint8_t)(req * 37 + i * 7 + (i >> 9)); }

/* ---- the fallback, first: these tests fork, best before other tests start threads ---- */

/* A filter in this (child) process: io_uring_setup fails with EPERM (refuse >= 1), and io_setup too (refuse 2). */
static void refuse_calls(int refuse)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_io_uring_setup, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, refuse > 1 ? SYS_io_setup : 0xfffff, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
	};
	struct sock_fprog prog = { .len = ARRAY_SIZE(f), .filter = f };
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog))
		_exit(100);
}

/* Child exit status: the engine's kind, or 100+ for a failure; -1 if it did not exit. */
static int child_status(pid_t pid)
{
	int st;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* In a child under the filter: the engine disk_aio_open(want) gives, once a write through it checked out. */
static int kind_under(enum disk_aio_kind want, int refuse)
{
	pid_t pid = fork();
	if (pid)
		return child_status(pid);
	if (refuse)
		refuse_calls(refuse);
	char path[64];
	int fd = tmp_file(path, 4096);
	unlink(path);
	int efd = eventfd(0, EFD_CLOEXEC);
	struct disk_aio *a = disk_aio_open(want, 8, efd);
	if (!a)
		_exit(101);
	uint8_t buf[512], back[512];
	memset(buf, 0x3c, sizeof(buf));
	struct iovec v = { buf, sizeof(buf) };
	struct disk_aio_done d;
	if (disk_aio_submit(a, true, fd, 512, &v, 1, buf) || disk_aio_reap(a, &d, 1, 1) != 1 || d.res != 512 ||
	    d.cookie != buf)
		_exit(102);
	if (pread(fd, back, 512, 512) != 512 || memcmp(back, buf, 512))
		_exit(103);
	_exit(a->kind);
}

TEST(fallback_when_io_uring_is_refused)
{
	t_name = "nothing refused";
	CHECK_EQ(kind_under(DISK_AIO_URING, 0), DISK_AIO_URING);
	CHECK_EQ(kind_under(DISK_AIO_DEFAULT, 0), DISK_AIO_URING);	/* the measured default */
	CHECK_EQ(kind_under(DISK_AIO_NATIVE, 0), DISK_AIO_NATIVE);
	CHECK_EQ(kind_under(DISK_AIO_THREADS, 0), DISK_AIO_THREADS);
	t_name = "io_uring refused: Linux AIO";
	CHECK_EQ(kind_under(DISK_AIO_URING, 1), DISK_AIO_NATIVE);
	CHECK_EQ(kind_under(DISK_AIO_DEFAULT, 1), DISK_AIO_NATIVE);
	t_name = "both refused: the thread pool";
	CHECK_EQ(kind_under(DISK_AIO_URING, 2), DISK_AIO_THREADS);
	CHECK_EQ(kind_under(DISK_AIO_NATIVE, 2), DISK_AIO_THREADS);
	t_name = "the refusal is named";
	pid_t pid = fork();
	if (pid == 0) {
		refuse_calls(1);
		struct disk_aio *u = disk_aio_uring_open(8, eventfd(0, EFD_CLOEXEC));
		_exit(u ? 1 : strstr(err_msg(), "io_uring_setup: Operation not permitted") ? 0 : 2);
	}
	CHECK_EQ(child_status(pid), 0);
}

/* The same through virtio-blk: aio=uring refused, the device runs Linux AIO, and a guest's write and read work. */
TEST(device_falls_back_when_io_uring_is_refused)
{
	pid_t pid = fork();
	if (pid == 0) {
		refuse_calls(1);
		setup_vm();
		char path[64];
		int fd = tmp_file(path, MiB(1));
		unlink(path);
		char proc[64];
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		struct disk *dk = disk_open(proc, false, false);
		if (!dk || virtio_blk_add_aio(&vm, dk, 1, DISK_AIO_URING) || devices_start(&vm))
			_exit(101);
		avail_idx = 0;
		if (driver_init(dev_at(1), 1ULL << VIRTIO_F_VERSION_1))
			_exit(102);
		for (int i = 0; i < 4096; i++)
			*g(BUF + 0x1000 + i) = pat(7, i);
		uint8_t back[4096];
		if (blk_request(1, 40, 4096, true) != 0 || pread(fd, back, 4096, 40 * 512) != 4096 ||
		    memcmp(back, g(BUF + 0x1000), 4096))
			_exit(103);
		memset(g(BUF + 0x1000), 0, 4096);
		if (blk_request(0, 40, 4096, false) != 0 || memcmp(back, g(BUF + 0x1000), 4096))
			_exit(104);
		_exit(virtio_blk_aio_kind(device_find(&vm, "virtio-blk", 0), 0));
	}
	CHECK_EQ(child_status(pid), DISK_AIO_NATIVE);
}

/*
 * lkvm's own filter: a ring made before it still works (io_uring_enter is
 * allowed), a new ring afterwards is refused as any unlisted call is.
 */
static void ring_then_filter(int unused)
{
	char path[64];
	int fd = tmp_file(path, 4096);
	unlink(path);
	struct disk_aio *a = disk_aio_uring_open(8, eventfd(0, EFD_CLOEXEC));
	if (!a)
		_exit(101);
	if (seccomp_install(false) < 0)
		_exit(102);
	uint8_t buf[1024], back[1024];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = pat(5, i);
	struct iovec v[2] = { { buf, 512 }, { buf + 512, 512 } };
	struct disk_aio_done d;
	if (disk_aio_submit(a, true, fd, 1024, v, 2, v) || disk_aio_reap(a, &d, 1, 1) != 1 || d.res != 1024)
		_exit(103);
	if (pread(fd, back, 1024, 1024) != 1024 || memcmp(back, buf, 1024))
		_exit(104);
	struct io_uring r;
	io_uring_queue_init(4, &r, 0);	/* SIGSYS: exit status 2 */
}

TEST(ring_under_lkvm_seccomp)
{
	char err[512];
	CHECK_EQ(in_child(ring_then_filter, 0, err, sizeof(err)), 2);
	CHECK(strstr(err, "seccomp blocked syscall io_uring_setup") != NULL);	/* not io_uring_enter */
}

/* Whoever writes the ring's memory can ask only for reads and writes, and cannot change that. */
TEST(ring_is_restricted_to_reads_and_writes)
{
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	struct disk_aio *a = disk_aio_uring_open(8, efd);
	CHECK(a != NULL);
	if (!a)
		return;
	struct io_uring *ring = disk_aio_uring_ring(a);
	CHECK(ring != NULL);
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	io_uring_prep_openat(sqe, AT_FDCWD, "/etc/hostname", O_RDONLY, 0);
	io_uring_sqe_set_data(sqe, (void *)1);
	CHECK_EQ(io_uring_submit(ring), 1);
	struct io_uring_cqe *cqe;
	CHECK_EQ(io_uring_wait_cqe(ring, &cqe), 0);
	CHECK_EQ(cqe->res, -EACCES);
	io_uring_cqe_seen(ring, cqe);
	sqe = io_uring_get_sqe(ring);
	io_uring_prep_fsync(sqe, 0, 0);
	CHECK_EQ(io_uring_submit(ring), 1);
	CHECK_EQ(io_uring_wait_cqe(ring, &cqe), 0);
	CHECK_EQ(cqe->res, -EACCES);
	io_uring_cqe_seen(ring, cqe);
	/* No registration either: not another eventfd, not files. */
	CHECK_EQ(io_uring_register_eventfd(ring, efd), -EACCES);
	int fds[1] = { 0 };
	CHECK_EQ(io_uring_register_files(ring, fds, 1), -EACCES);
	disk_aio_close(a);
	close(efd);
}

struct count { const char *prefix; int n; };

static void count_one(const char *tid, const char *comm, void *arg)
{
	struct count *c = arg;
	c->n += !strncmp(comm, c->prefix, strlen(c->prefix)) && strncmp(comm, "iou-", 4);
}

/* This process's threads now whose name starts with prefix (""; all but io_uring's kernel workers, which come and go). */
static int nthreads(const char *prefix)
{
	struct count c = { prefix, 0 };
	each_thread(count_one, &c);
	return c.n;
}

/*
 * Opening an engine starts no thread: the devices are made before the jail,
 * which refuses a process of more than one thread. The pool's threads start
 * with its first request.
 */
TEST(engines_start_no_thread_when_opened)
{
	char path[64];
	int fd = tmp_file(path, 4096);
	unlink(path);
	for (size_t k = 0; k < ARRAY_SIZE(kinds); k++) {
		t_name = disk_aio_name(kinds[k]);
		int efd = eventfd(0, EFD_CLOEXEC), before = nthreads(""), pool = nthreads("lkvm-blk-pool");
		struct disk_aio *a = disk_aio_open(kinds[k], 8, efd);
		CHECK(a != NULL);
		if (!a)
			continue;
		CHECK_EQ(nthreads(""), before);
		uint8_t buf[512] = { 1 };
		struct iovec v = { buf, 512 };
		struct disk_aio_done d;
		CHECK_EQ(disk_aio_submit(a, true, fd, 0, &v, 1, buf), 0);
		CHECK_EQ(disk_aio_reap(a, &d, 1, 1), 1);
		CHECK_EQ(d.res, 512);
		if (kinds[k] == DISK_AIO_THREADS)	/* each names itself as it starts */
			for (int t = 0; t < 200 && nthreads("lkvm-blk-pool") < pool + 4; t++)
				usleep(10000);
		CHECK_EQ(nthreads("lkvm-blk-pool"), pool + (kinds[k] == DISK_AIO_THREADS ? 4 : 0));
		disk_aio_close(a);
		close(efd);
	}
	close(fd);
}

/* ---- each engine by itself ---- */

#define NREQ 8
TEST(engines_read_and_write)
{
	for (size_t k = 0; k < ARRAY_SIZE(kinds); k++) {
		t_name = disk_aio_name(kinds[k]);
		char path[64];
		int fd = tmp_file(path, MiB(1));
		int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		struct disk_aio *a = disk_aio_open(kinds[k], NREQ, efd);
		CHECK(a != NULL);
		if (!a)
			continue;
		CHECK_EQ(a->kind, kinds[k]);
		/* NREQ writes in flight, each of two segments of different lengths, at scattered offsets. */
		static uint8_t buf[NREQ][8192], back[8192];
		struct iovec v[NREQ][2];
		for (int r = 0; r < NREQ; r++) {
			for (size_t i = 0; i < sizeof(buf[r]); i++)
				buf[r][i] = pat(r, i);
			v[r][0] = (struct iovec){ buf[r], 512 * (r + 1) };
			v[r][1] = (struct iovec){ buf[r] + 512 * (r + 1), 8192 - 512 * (r + 1) };
			CHECK_EQ(disk_aio_submit(a, true, fd, KiB(64) * (NREQ - r), v[r], 2, &v[r]), 0);
		}
		/* Full: one more is refused, not queued. */
		struct iovec extra = { back, 512 };
		CHECK_EQ(disk_aio_submit(a, true, fd, 0, &extra, 1, NULL), -EAGAIN);
		struct disk_aio_done d[NREQ];
		int got = disk_aio_reap(a, d, NREQ, NREQ);
		CHECK_EQ(got, NREQ);
		bool seen[NREQ] = { 0 };
		for (int i = 0; i < got; i++) {
			int r = (struct iovec(*)[2])d[i].cookie - v;
			CHECK(r >= 0 && r < NREQ && !seen[r]);
			if (r >= 0 && r < NREQ)
				seen[r] = true;
			CHECK_EQ(d[i].res, 8192);
		}
		uint64_t ev = 0;
		CHECK(read(efd, &ev, sizeof(ev)) == sizeof(ev) && ev >= 1);	/* completions were signalled */
		for (int r = 0; r < NREQ; r++) {
			CHECK_EQ(pread(fd, back, 8192, KiB(64) * (NREQ - r)), 8192);
			CHECK(!memcmp(back, buf[r], 8192));
		}
		/* Reads back what the host wrote, into segments. */
		for (size_t i = 0; i < 4096; i++)
			back[i] = (uint8_t)~pat(9, i);
		CHECK_EQ(pwrite(fd, back, 4096, KiB(900)), 4096);
		memset(buf[0], 0, 4096);
		struct iovec rv[3] = { { buf[0], 1024 }, { buf[0] + 1024, 512 }, { buf[0] + 1536, 2560 } };
		CHECK_EQ(disk_aio_submit(a, false, fd, KiB(900), rv, 3, rv), 0);
		CHECK_EQ(disk_aio_reap(a, d, NREQ, 1), 1);
		CHECK(d[0].cookie == rv && d[0].res == 4096);
		CHECK(!memcmp(buf[0], back, 4096));
		/* Past the end of the file: short; a bad descriptor: an error, at submit or as the result. */
		CHECK_EQ(disk_aio_submit(a, false, fd, MiB(1) - 512, rv, 3, rv), 0);
		CHECK_EQ(disk_aio_reap(a, d, NREQ, 1), 1);
		CHECK_EQ(d[0].res, 512);
		int e = disk_aio_submit(a, false, 999, 0, rv, 3, rv);
		if (e == 0) {
			CHECK_EQ(disk_aio_reap(a, d, NREQ, 1), 1);
			CHECK_EQ(d[0].res, -EBADF);
		} else {
			CHECK_EQ(e, -EBADF);
		}
		/* Nothing left: a reap that does not wait returns at once. */
		CHECK_EQ(disk_aio_reap(a, d, NREQ, 0), 0);
		disk_aio_close(a);
		close(efd);
		close(fd);
		unlink(path);
	}
}

/*
 * What the issue asked for: with io_uring a request that cannot finish yet
 * does not hold its submitter. A read of an empty pipe stands for a
 * page-cache miss: submit returns at once, nothing is reaped, and the
 * completion comes (eventfd signalled) once the data does. (Linux AIO
 * cannot take a pipe, and on a buffered file waits in io_submit; the pool
 * uses preadv, which a pipe refuses, and its submit only queues.)
 */
TEST(a_waiting_request_does_not_hold_the_submitter)
{
	const enum disk_aio_kind k2[] = { DISK_AIO_URING };
	for (size_t k = 0; k < ARRAY_SIZE(k2); k++) {
		t_name = disk_aio_name(k2[k]);
		int p[2], efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		CHECK_EQ(pipe(p), 0);
		struct disk_aio *a = disk_aio_open(k2[k], 8, efd);
		CHECK(a != NULL && a->kind == k2[k]);
		if (!a)
			continue;
		char buf[16] = "";
		struct iovec v = { buf, 5 };
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		CHECK_EQ(disk_aio_submit(a, false, p[0], 0, &v, 1, buf), 0);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		CHECK((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 < 1000);
		struct disk_aio_done d;
		usleep(50000);
		CHECK_EQ(disk_aio_reap(a, &d, 1, 0), 0);	/* still in flight */
		CHECK_EQ(write(p[1], "later", 5), 5);
		struct pollfd pf = { .fd = efd, .events = POLLIN };
		CHECK_EQ(poll(&pf, 1, 5000), 1);	/* its completion is signalled */
		CHECK_EQ(disk_aio_reap(a, &d, 1, 1), 1);
		CHECK(d.cookie == buf && d.res == 5 && !memcmp(buf, "later", 5));
		disk_aio_close(a);
		close(p[0]);
		close(p[1]);
		close(efd);
	}
}

/* ---- each engine behind virtio-blk ---- */

/* Two requests in flight at once on queue 0: chain c (descriptors 3c..3c+2), 4 KiB at sector. */
static void blk_chain(int c, uint32_t type, uint64_t sector, bool out)
{
	uint64_t h = BUF + 0x4000 + 32 * c, data = BUF + 0x8000 + 0x1000 * c;
	put_le32(g(h), type); put_le32(g(h + 4), 0); put_le64(g(h + 8), sector);
	*g(h + 16) = 0xee;
	desc(3 * c, h, 16, VD_F_NEXT, 3 * c + 1);
	desc(3 * c + 1, data, 4096, VD_F_NEXT | (out ? 0 : VD_F_WRITE), 3 * c + 2);
	desc(3 * c + 2, h + 16, 1, VD_F_WRITE, 0);
	add(3 * c);
}

static void device_with(enum disk_aio_kind kind)
{
	setup_vm();
	char path[64];
	int fd = tmp_file(path, MiB(1));
	struct disk *dk = disk_open(path, false, false);
	CHECK(dk != NULL);
	if (!dk)
		return;
	CHECK_EQ(virtio_blk_add_aio(&vm, dk, 1, kind), 0);
	CHECK_EQ(devices_start(&vm), 0);
	struct device *dev = device_find(&vm, "virtio-blk", 0);
	CHECK(dev != NULL);
	if (dev) {
		CHECK_EQ(virtio_blk_aio_kind(dev, 0), kind);
		/* lkvm stat names the engine that runs. */
		struct json_writer j;
		json_init(&j);
		json_begin(&j, NULL, '{');
		dev->ops->stats(dev, &j);
		json_end(&j);
		char got[16] = "";
		CHECK(json_get_str(j.buf, "blk0_aio", got, sizeof(got)));
		CHECK(!strcmp(got, disk_aio_name(kind)));
		json_free(&j);
	}
	avail_idx = 0;
	CHECK_EQ(driver_init(dev_at(1), 1ULL << VIRTIO_F_VERSION_1), 0);
	/* A write, checked in the file; a read of what the host wrote, checked in guest memory. */
	for (int i = 0; i < 4096; i++)
		*g(BUF + 0x1000 + i) = pat(1, i);
	CHECK_EQ(blk_request(1, 17, 4096, true), 0);
	uint8_t back[4096], want[4096];
	CHECK_EQ(pread(fd, back, 4096, 17 * 512), 4096);
	CHECK(!memcmp(back, g(BUF + 0x1000), 4096));
	for (int i = 0; i < 4096; i++)
		want[i] = pat(2, i);
	CHECK_EQ(pwrite(fd, want, 4096, 300 * 512), 4096);
	CHECK_EQ(blk_request(0, 300, 4096, false), 0);
	CHECK(!memcmp(g(BUF + 0x1000), want, 4096));
	/* Two in flight at once: a write and a read, each data checked. */
	for (int i = 0; i < 4096; i++)
		*g(BUF + 0x8000 + i) = pat(3, i);
	memset(g(BUF + 0x9000), 0, 4096);
	uint16_t before = get_le16(g(USED + 2));
	blk_chain(0, 1, 1000, true);
	blk_chain(1, 0, 300, false);
	kick();
	CHECK_EQ(wait_used(before + 2), 0);
	CHECK_EQ(*g(BUF + 0x4000 + 16), 0);
	CHECK_EQ(*g(BUF + 0x4000 + 32 + 16), 0);
	CHECK_EQ(pread(fd, back, 4096, 1000 * 512), 4096);
	CHECK(!memcmp(back, g(BUF + 0x8000), 4096));
	CHECK(!memcmp(g(BUF + 0x9000), want, 4096));
	CHECK_EQ(blk_request(4, 0, 0, false), 0);	/* FLUSH, after both */
	/* Bad requests: I/O errors, nothing written. */
	memset(g(BUF + 0x1000), 0x99, 4096);
	CHECK_EQ(blk_request(1, 2047, 1024, true), 1);	/* past the end */
	CHECK_EQ(blk_request(1, UINT64_MAX / 512, 512, true), 1);	/* overflowing */
	CHECK_EQ(blk_request(1, 0, 100, true), 1);	/* not whole sectors */
	CHECK_EQ(pread(fd, back, 512, MiB(1) - 512), 512);
	CHECK(back[0] == 0 && back[511] == 0);
	/* A hostile chain (a loop) breaks the device only; a reset serves again. */
	desc(0, BUF, 16, VD_F_NEXT, 1);
	desc(1, BUF + 16, 16, VD_F_NEXT, 0);
	post(0);
	for (int i = 0; i < 5000 && !(rd(0x14, 1) & VIRTIO_STATUS_NEEDS_RESET); i++)
		usleep(1000);
	CHECK(rd(0x14, 1) & VIRTIO_STATUS_NEEDS_RESET);
	avail_idx = 0;
	CHECK_EQ(driver_init(dev_at(1), 1ULL << VIRTIO_F_VERSION_1), 0);
	CHECK_EQ(blk_request(0, 17, 4096, false), 0);
	for (int i = 0; i < 4096; i++)
		want[i] = pat(1, i);
	CHECK(!memcmp(g(BUF + 0x1000), want, 4096));
	/* The workers stop with their requests finished and start again (a snapshot's save). */
	devices_stop(&vm);
	CHECK_EQ(devices_start(&vm), 0);
	CHECK_EQ(blk_request(0, 1000, 4096, false), 0);
	for (int i = 0; i < 4096; i++)
		want[i] = pat(3, i);
	CHECK(!memcmp(g(BUF + 0x1000), want, 4096));
	close(fd);
	unlink(path);
}

TEST(virtio_blk_uring) { device_with(DISK_AIO_URING); }
TEST(virtio_blk_native) { device_with(DISK_AIO_NATIVE); }
TEST(virtio_blk_threads) { device_with(DISK_AIO_THREADS); }

TEST(aio_option)
{
	char path[64];
	close(tmp_file(path, MiB(1)));
	char arg[128];
	const char *bad[] = { "", "io_uring", "default", "URING", "threads2" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		setup_vm();
		snprintf(arg, sizeof(arg), "%s,aio=%s", path, bad[i]);
		CHECK_EQ(device_type_option(&vm.cfg, &virtio_blk_device, "disk", arg), -1);
		CHECK(strstr(err_msg(), "aio=") != NULL);
	}
	for (size_t k = 0; k < ARRAY_SIZE(kinds); k++) {
		setup_vm();
		snprintf(arg, sizeof(arg), "%s,aio=%s", path, disk_aio_name(kinds[k]));
		CHECK_EQ(device_type_option(&vm.cfg, &virtio_blk_device, "disk", arg), 0);
		CHECK_EQ(device_type_create(&vm, &virtio_blk_device), 0);
		CHECK_EQ(virtio_blk_aio_kind(device_find(&vm, "virtio-blk", 0), 0), kinds[k]);
	}
	unlink(path);
}

TEST_MAIN()
