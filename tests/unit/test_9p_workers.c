/*
 * 9P requests off the kicking thread and in parallel: the virtio-9p device's
 * worker threads (several requests in flight, signals blocked, started,
 * stopped, restarted and destroyed through the device lifecycle), Tflush answered only after the request it names,
 * a worker watching the ring between requests (no kick lost as it gives up, no CPU
 * burnt once idle), and the server under many client threads at once (fids of their own and
 * shared ones, renames under other fids' feet) with every byte checked.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "test.h"
#include "threads.h"
#include "device.h"
#include "json.h"
#include "p9.h"
#include "util.h"

#include "virtio_fixture.h"
#include "../ro_sandbox.h"
#include "p9_client.h"

__attribute__((constructor)) static void confine(void)
{
	if (ro_sandbox(NULL, 0, "/etc/.lkvm-test-9p-workers-probe") == 0)
		return;
	if (geteuid() == 0) {
		fprintf(stderr, "test_9p_workers: refusing to run as root without a read-only sandbox\n");
		exit(1);
	}
}

static char share[96];

static void make_share(void)
{
	strcpy(share, "/tmp/lkvm-9pw-XXXXXX");
	if (!mkdtemp(share))
		abort();
	char p[160];
	snprintf(p, sizeof(p), "%s/data", share);
	int fd = open(p, O_CREAT | O_WRONLY, 0644);
	if (fd < 0 || write(fd, "0123456789", 10) != 10)
		abort();
	close(fd);
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	return type == FTW_DP ? rmdir(path) : unlink(path), 0;
}

static void drop_share(void)
{
	nftw(share, rm_one, 16, FTW_PHYS | FTW_DEPTH);
}

/* ---- the device ---- */

#define REQ(i) (BUF + 0x10000 * (i))		/* chain i's request */
#define RESP(i) (BUF + 0x10000 * (i) + 0x8000)	/* and its reply */

static uint8_t msgbuf[P9_MAX_MSIZE + 64], respbuf[P9_MAX_MSIZE];

/* Queue a message as chain i (descriptors 2i, 2i+1) without kicking. */
static void queue_msg(int i, struct p9c *c)
{
	put_le32(c->req, c->len);
	memcpy(g(REQ(i)), c->req, c->len);
	memset(g(RESP(i)), 0, 64);
	desc(2 * i, REQ(i), c->len, 1, 2 * i + 1);
	desc(2 * i + 1, RESP(i), 0x8000, 2, 0);
	add(2 * i);
}

/* A queue transport for the client: one chain (0) at a time, waiting for its reply. */
static size_t queue_xfer(struct p9c *c, size_t len)
{
	uint16_t before = get_le16(g(USED + 2));
	queue_msg(0, c);
	kick();
	if (wait_used(before + 1) < 0)
		return 0;
	size_t n = get_le32(g(USED + 4 + 8 * (before % QSIZE) + 4));
	memcpy(c->resp, g(RESP(0)), MIN(n, c->resp_cap));
	return n;
}

static struct p9c qc = { .req = msgbuf, .resp = respbuf, .resp_cap = sizeof(respbuf), .xfer = queue_xfer };

/* A fresh fake VM with one share, the driver up, and a session with fid 0 at the root. */
static bool device_up(void)
{
	make_share();
	setup_vm();
	struct p9_opts *shares = vm_config_part(&vm.cfg, &virtio_9p_device, sizeof(*shares));
	shares->n = 1;
	shares->share[0] = (struct share_opt){ .dir = share, .tag = "w" };
	CHECK_EQ(device_type_create(&vm, &virtio_9p_device), 0);
	CHECK_EQ(devices_start(&vm), 0);
	struct pci_dev *p = dev_at(1);
	avail_idx = 0;
	if (!p || driver_init(p, 1ULL << VIRTIO_F_VERSION_1 | 1ULL << 0))
		return false;
	uint32_t msize;
	char v[32];
	CHECK_EQ(p9c_version(&qc, 8192, "9P2000.L", &msize, v, sizeof(v)), 0);
	CHECK_EQ(p9c_attach(&qc, 0, 0, NULL), 0);
	return true;
}

struct named { const char *name; uint64_t mask; int n, blocking; };

static void count_named(const char *tid, const char *comm, void *arg)
{
	struct named *w = arg;
	if (strcmp(comm, w->name))
		return;
	w->n++;
	char path[300], line[256];
	snprintf(path, sizeof(path), "/proc/self/task/%s/status", tid);
	FILE *f = fopen(path, "r");
	unsigned long long blk = 0;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "SigBlk: %llx", &blk) == 1)
			break;
	if (f)
		fclose(f);
	w->blocking += (blk & w->mask) == w->mask;
}

/* The threads named name: how many, and whether each blocks the signals in mask. */
static int threads_named(const char *name, uint64_t mask, int *blocking)
{
	struct named w = { name, mask, 0, 0 };
	each_thread(count_named, &w);
	*blocking = w.blocking;
	return w.n;
}

#define SIGBIT(s) (1ULL << ((s) - 1))

/* ---- a hook that holds one request until another has started ---- */

static pthread_mutex_t hk_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hk_cond = PTHREAD_COND_INITIALIZER;
static uint16_t hold_tag, release_tag;
static bool released, held_timed_out;
static pid_t served_by[65536 / 8];	/* thread that served a tag (first of the tags used) */
static int seen_tags;

static void hold_hook(uint16_t tag)
{
	pthread_mutex_lock(&hk_lock);
	if (tag < ARRAY_SIZE(served_by))
		served_by[tag] = syscall(SYS_gettid);
	seen_tags++;
	if (tag == release_tag) {
		released = true;
		pthread_cond_broadcast(&hk_cond);
	}
	if (tag == hold_tag) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 5;
		while (!released && !held_timed_out)
			held_timed_out = pthread_cond_timedwait(&hk_cond, &hk_lock, &until) == ETIMEDOUT;
	}
	pthread_mutex_unlock(&hk_lock);
}

TEST(requests_off_the_kicking_thread_and_in_parallel)
{
	if (!device_up())
		return;
	int blocking;
	for (int i = 0; i < 2000 && threads_named("lkvm-9p", 0, &blocking) < 4; i++)
		usleep(1000);	/* each worker names itself as it starts */
	CHECK_EQ(threads_named("lkvm-9p", 0, &blocking), 4);
	CHECK_EQ(threads_named("lkvm-9p", SIGBIT(SIGUSR1) | SIGBIT(SIGINT) | SIGBIT(SIGTERM) | SIGBIT(SIGHUP),
			       &blocking), 4);
	CHECK_EQ(blocking, 4);

	/* Request A (tag 100) is held until request B (tag 200) has started: only a second worker can. */
	hold_tag = 100;
	release_tag = 200;
	released = held_timed_out = false;
	__atomic_store_n(&p9_request_hook, hold_hook, __ATOMIC_RELEASE);
	uint16_t before = get_le16(g(USED + 2));
	struct p9c a = { .req = msgbuf, .resp = respbuf, .resp_cap = sizeof(respbuf) };
	p9c_msg(&a, P9_TGETATTR); p9c_32(&a, 0); p9c_64(&a, P9_GETATTR_BASIC);
	put_le16(a.req + 5, 100);
	queue_msg(0, &a);
	p9c_msg(&a, P9_TWALK); p9c_32(&a, 0); p9c_32(&a, 9); p9c_16(&a, 1); p9c_str(&a, "data");
	put_le16(a.req + 5, 200);
	queue_msg(1, &a);
	kick();
	CHECK_EQ(wait_used(before + 2), 0);
	__atomic_store_n(&p9_request_hook, NULL, __ATOMIC_RELEASE);
	CHECK(released);
	CHECK(!held_timed_out);
	/* Both answered, each in its own buffer: A's Rgetattr, B's Rwalk with one qid. */
	CHECK_EQ(g(RESP(0))[4], P9_TGETATTR + 1);
	CHECK_EQ(get_le16(g(RESP(0)) + 5), 100);
	CHECK_EQ(g(RESP(1))[4], P9_TWALK + 1);
	CHECK_EQ(get_le16(g(RESP(1)) + 7), 1);
	/* ... by two different threads, neither of them this one (which kicked). */
	pid_t me = syscall(SYS_gettid);
	CHECK(served_by[100] && served_by[200] && served_by[100] != served_by[200]);
	CHECK(served_by[100] != me && served_by[200] != me);
	/* The walk made its fid: the device keeps working. */
	CHECK_EQ(p9c_lopen(&qc, 9, 0), 0);
	char buf[16];
	CHECK_EQ(p9c_read(&qc, 9, 2, 3, buf), 3);
	CHECK(!memcmp(buf, "234", 3));

	/* stop joins the workers; destroy frees the device; a stopped device can start again. */
	devices_stop(&vm);
	CHECK_EQ(threads_named("lkvm-9p", 0, &blocking), 0);
	CHECK_EQ(devices_start(&vm), 0);
	for (int i = 0; i < 2000 && threads_named("lkvm-9p", 0, &blocking) < 4; i++)
		usleep(1000);
	CHECK_EQ(threads_named("lkvm-9p", 0, &blocking), 4);
	CHECK_EQ(p9c_read(&qc, 9, 0, 3, buf), 3);
	devices_destroy(&vm);
	CHECK_EQ(threads_named("lkvm-9p", 0, &blocking), 0);
	drop_share();
}

/* A burst of requests filling the ring: every one answered, in whatever order. */
TEST(a_full_ring_of_requests)
{
	if (!device_up())
		return;
	uint16_t before = get_le16(g(USED + 2));
	struct p9c m = { .req = msgbuf, .resp = respbuf, .resp_cap = sizeof(respbuf) };
	for (int i = 0; i < QSIZE / 2; i++) {
		p9c_msg(&m, P9_TWALK); p9c_32(&m, 0); p9c_32(&m, 10 + i); p9c_16(&m, 1); p9c_str(&m, "data");
		queue_msg(i, &m);
	}
	kick();
	CHECK_EQ(wait_used(before + QSIZE / 2), 0);
	for (int i = 0; i < QSIZE / 2; i++) {
		CHECK_EQ(g(RESP(i))[4], P9_TWALK + 1);
		CHECK_EQ(p9c_getattr(&qc, 10 + i, &(struct p9c_attr){ 0 }), 0);
	}
	drop_share();
}


/* ---- reads and writes straight between the file and the chain's buffers ---- */

struct seg { uint64_t gpa; uint32_t len; bool in; };

/* Post one chain of n segments (descriptors 0..n-1), kick, and wait: the used length. */
static int64_t post_chain(const struct seg *sg, int n)
{
	uint16_t before = get_le16(g(USED + 2));
	for (int i = 0; i < n; i++)
		desc(i, sg[i].gpa, sg[i].len, (i + 1 < n ? 1 : 0) | (sg[i].in ? 2 : 0), i + 1);
	post(0);
	if (wait_used(before + 1) < 0)
		return -1;
	return get_le32(g(USED + 4 + 8 * (before % QSIZE) + 4));
}

/* Copy a message into guest memory, cut at the lengths in cuts[] (then the rest): one segment each. */
static int lay_out(const uint8_t *msg, size_t len, uint64_t gpa, const uint32_t *cuts, int ncuts, struct seg *sg)
{
	int n = 0;
	size_t off = 0;
	for (int i = 0; i <= ncuts && off < len; i++) {
		size_t k = i < ncuts ? MIN((size_t)cuts[i], len - off) : len - off;
		memcpy(g(gpa + 0x1000 * n), msg + off, k);
		sg[n] = (struct seg){ gpa + 0x1000 * n, k, false };
		n++;
		off += k;
	}
	return n;
}

static size_t file_bytes(const char *name, uint8_t *buf, size_t cap)
{
	char p[160];
	snprintf(p, sizeof(p), "%s/%s", share, name);
	int fd = open(p, O_RDONLY);
	ssize_t n = fd >= 0 ? read(fd, buf, cap) : -1;
	close(fd);
	return n < 0 ? 0 : n;
}

TEST(reads_and_writes_across_scattered_buffers)
{
	if (!device_up())
		return;
	CHECK_EQ(p9c_walk1(&qc, 0, 9, "data", NULL), 0);
	CHECK_EQ(p9c_lopen(&qc, 9, P9_DOTL_RDWR), 0);
	uint8_t data[3000], back[4096];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = i * 7 + 3;
	struct p9c m = { .req = msgbuf, .resp = respbuf, .resp_cap = sizeof(respbuf) };
	struct seg sg[8];

	/* Twrite of 3000 bytes at 5: its fields cut at 10 and 20 bytes, the data over three more buffers. */
	p9c_msg(&m, P9_TWRITE); p9c_32(&m, 9); p9c_64(&m, 5); p9c_32(&m, sizeof(data)); p9c_bytes(&m, data, sizeof(data));
	put_le32(m.req, m.len);
	int n = lay_out(m.req, m.len, BUF, (const uint32_t[]){ 10, 20, 1, 1000 }, 4, sg);
	sg[n++] = (struct seg){ BUF + 0x8000, 64, true };
	memset(g(BUF + 0x8000), 0xee, 64);
	CHECK_EQ(post_chain(sg, n), 11);
	CHECK_EQ(g(BUF + 0x8000)[4], P9_TWRITE + 1);
	CHECK_EQ(get_le32(g(BUF + 0x8000) + 7), sizeof(data));
	CHECK_EQ(file_bytes("data", back, sizeof(back)), 5 + sizeof(data));
	CHECK(!memcmp(back, "01234", 5) && !memcmp(back + 5, data, sizeof(data)));

	/* Tread of 2000 bytes at 100 into reply buffers of 5, 100 and 4000 bytes: header split, data after it. */
	p9c_msg(&m, P9_TREAD); p9c_32(&m, 9); p9c_64(&m, 100); p9c_32(&m, 2000);
	put_le32(m.req, m.len);
	memcpy(g(BUF), m.req, m.len);
	sg[0] = (struct seg){ BUF, m.len, false };
	sg[1] = (struct seg){ BUF + 0x1000, 5, true };
	sg[2] = (struct seg){ BUF + 0x2000, 100, true };
	sg[3] = (struct seg){ BUF + 0x3000, 4000, true };
	memset(g(BUF + 0x1000), 0, 0x3000 + 4000);
	CHECK_EQ(post_chain(sg, 4), 11 + 2000);
	uint8_t r[11 + 2000];
	memcpy(r, g(BUF + 0x1000), 5);
	memcpy(r + 5, g(BUF + 0x2000), 100);
	memcpy(r + 105, g(BUF + 0x3000), sizeof(r) - 105);
	CHECK_EQ(get_le32(r), 11 + 2000);
	CHECK_EQ(r[4], P9_TREAD + 1);
	CHECK_EQ(get_le32(r + 7), 2000);
	CHECK(!memcmp(r + 11, back + 100, 2000));

	/* A Tread asking more than the reply buffers hold gets what they hold. */
	p9c_msg(&m, P9_TREAD); p9c_32(&m, 9); p9c_64(&m, 0); p9c_32(&m, 4000);
	put_le32(m.req, m.len);
	memcpy(g(BUF), m.req, m.len);
	sg[0] = (struct seg){ BUF, m.len, false };
	sg[1] = (struct seg){ BUF + 0x1000, 11 + 50, true };
	sg[2] = (struct seg){ BUF + 0x2000, 30, true };
	memset(g(BUF + 0x1000), 0, 0x2000);
	memset(g(BUF + 0x2000 + 30), 0x5a, 16);
	CHECK_EQ(post_chain(sg, 3), 11 + 80);
	CHECK_EQ(get_le32(g(BUF + 0x1000) + 7), 80);
	CHECK(!memcmp(g(BUF + 0x1000) + 11, back, 50) && !memcmp(g(BUF + 0x2000), back + 50, 30));
	CHECK_EQ(g(BUF + 0x2000 + 30)[0], 0x5a);	/* nothing past the buffer */

	/* Hostile Twrites: a count beyond the chain's bytes, and a size field that disagrees with the count. */
	for (int k = 0; k < 2; k++) {
		p9c_msg(&m, P9_TWRITE); p9c_32(&m, 9); p9c_64(&m, 0); p9c_32(&m, k ? 100 : 5000);
		p9c_bytes(&m, data, 100);
		put_le32(m.req, k ? m.len + 1 : 23 + 5000);
		memcpy(g(BUF), m.req, m.len);
		sg[0] = (struct seg){ BUF, m.len, false };
		sg[1] = (struct seg){ BUF + 0x8000, 64, true };
		CHECK_EQ(post_chain(sg, 2), 11);
		CHECK_EQ(g(BUF + 0x8000)[4], P9_RLERROR);
	}
	uint8_t now[8192];
	CHECK_EQ(file_bytes("data", now, sizeof(now)), 5 + sizeof(data));
	CHECK(!memcmp(now, back, 5 + sizeof(data)));

	/* Bytes in the chain past the message's size are not written. */
	p9c_msg(&m, P9_TWRITE); p9c_32(&m, 9); p9c_64(&m, 4000); p9c_32(&m, 100); p9c_bytes(&m, data, 100);
	put_le32(m.req, m.len);
	memcpy(g(BUF), m.req, m.len);
	memset(g(BUF) + m.len, 0x77, 50);
	sg[0] = (struct seg){ BUF, m.len + 50, false };
	sg[1] = (struct seg){ BUF + 0x8000, 64, true };
	CHECK_EQ(post_chain(sg, 2), 11);
	CHECK_EQ(get_le32(g(BUF + 0x8000) + 7), 100);
	CHECK_EQ(file_bytes("data", now, sizeof(now)), 4100);
	CHECK(!memcmp(now + 4000, data, 100));
	drop_share();
}

/* ---- Tflush ---- */

static struct p9_server *fsrv;
static char written_when_flushed[32];	/* the file, as the flush's answer found it */

/* Tag 300: a Twrite of "written-by-300" to fid 1 (the file "data"). */
static void *send_held(void *arg)
{
	uint8_t req[128], resp[256];
	struct p9c c = { .req = req, .resp = resp, .resp_cap = sizeof(resp), .srv = fsrv };
	p9c_msg(&c, P9_TWRITE); p9c_32(&c, 1); p9c_64(&c, 0); p9c_32(&c, 14); p9c_bytes(&c, "written-by-300", 14);
	put_le16(c.req + 5, 300);
	return (void *)(intptr_t)p9c_rpc(&c);
}

/* Tag 301: Tflush of 300; once answered, what is in the file says whether 300 had finished. */
static void *send_flush(void *arg)
{
	uint8_t req[64], resp[256];
	struct p9c c = { .req = req, .resp = resp, .resp_cap = sizeof(resp), .srv = fsrv };
	p9c_msg(&c, P9_TFLUSH); p9c_16(&c, 300);
	put_le16(c.req + 5, 301);
	int e = p9c_rpc(&c);
	char p[160];
	snprintf(p, sizeof(p), "%s/data", share);
	int fd = open(p, O_RDONLY);
	if (fd >= 0) {
		if (read(fd, written_when_flushed, 14) < 0) {}
		close(fd);
	}
	return (void *)(intptr_t)e;
}

/*
 * Tag 300 says it is in (the test then sends the flush, tag 301) and waits
 * until the flush has started; then it takes 100 ms more, which the flush
 * must wait out.
 */
static bool a_in;
static void flush_hook(uint16_t tag)
{
	pthread_mutex_lock(&hk_lock);
	if (tag == 300) {
		a_in = true;
		pthread_cond_broadcast(&hk_cond);
	}
	if (tag == 301) {
		released = true;
		pthread_cond_broadcast(&hk_cond);
	}
	if (tag == 300) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 5;
		while (!released && !held_timed_out)
			held_timed_out = pthread_cond_timedwait(&hk_cond, &hk_lock, &until) == ETIMEDOUT;
		pthread_mutex_unlock(&hk_lock);
		usleep(100000);	/* the flush has started: it must still wait for this request */
		return;
	}
	pthread_mutex_unlock(&hk_lock);
}

TEST(flush_answers_after_the_flushed_request)
{
	make_share();
	fsrv = p9_server_new(share, NULL);
	uint8_t req[64], resp[256];
	struct p9c c = { .req = req, .resp = resp, .resp_cap = sizeof(resp), .srv = fsrv };
	uint32_t msize;
	char v[32];
	CHECK_EQ(p9c_version(&c, 8192, "9P2000.L", &msize, v, sizeof(v)), 0);
	CHECK_EQ(p9c_attach(&c, 0, 0, NULL), 0);
	CHECK_EQ(p9c_walk1(&c, 0, 1, "data", NULL), 0);
	CHECK_EQ(p9c_lopen(&c, 1, P9_DOTL_WRONLY), 0);
	released = held_timed_out = a_in = false;
	memset(written_when_flushed, 0, sizeof(written_when_flushed));
	__atomic_store_n(&p9_request_hook, flush_hook, __ATOMIC_RELEASE);
	pthread_t a, b;
	pthread_create(&a, NULL, send_held, NULL);
	pthread_mutex_lock(&hk_lock);
	while (!a_in)
		pthread_cond_wait(&hk_cond, &hk_lock);
	pthread_mutex_unlock(&hk_lock);
	pthread_create(&b, NULL, send_flush, NULL);
	void *ra, *rb;
	pthread_join(a, &ra);
	pthread_join(b, &rb);
	__atomic_store_n(&p9_request_hook, NULL, __ATOMIC_RELEASE);
	CHECK_EQ((intptr_t)ra, 0);
	CHECK_EQ((intptr_t)rb, 0);
	CHECK(!held_timed_out);
	CHECK(!strcmp(written_when_flushed, "written-by-300"));	/* Rflush came after the write was done */
	/* A flush of a tag nobody uses answers at once; so does one that names itself. */
	p9c_msg(&c, P9_TFLUSH); p9c_16(&c, 4242);
	CHECK_EQ(p9c_rpc(&c), 0);
	p9c_msg(&c, P9_TFLUSH); p9c_16(&c, c.tag);
	CHECK_EQ(p9c_rpc(&c), 0);
	p9_server_free(fsrv);
	drop_share();
}

/* ---- many clients on one server ---- */

#define CLIENTS 8
#define ROUNDS 300

static struct p9_server *ssrv;

struct client {
	int id;
	int failures;
	pthread_t thread;
};

#define EXPECT(cond) do { if (!(cond)) { fprintf(stderr, "FAIL client %d: %s:%d: %s\n", cl->id, __FILE__, __LINE__, #cond); cl->failures++; } } while (0)

static void *client_run(void *arg)
{
	struct client *cl = arg;
	static __thread uint8_t req[16384], resp[16384];
	struct p9c c = { .req = req, .resp = resp, .resp_cap = sizeof(resp), .srv = ssrv };
	uint32_t base = 1000 * (cl->id + 1);	/* fids of its own */
	char dir[16], name[32], other[32], data[64], buf[64];
	snprintf(dir, sizeof(dir), "c%d", cl->id);
	EXPECT(p9c_mkdir(&c, 0, dir, 0755, 0, NULL) == 0);
	EXPECT(p9c_walk1(&c, 0, base, dir, NULL) == 0);
	for (int r = 0; r < ROUNDS; r++) {
		snprintf(name, sizeof(name), "f%d", r % 7);
		snprintf(other, sizeof(other), "g%d", r % 7);
		snprintf(data, sizeof(data), "client %d round %d", cl->id, r);
		size_t len = strlen(data);
		/* create, write, read back through another fid, rename, remove */
		EXPECT(p9c_walk1(&c, base, base + 1, NULL, NULL) == 0);
		int e = p9c_lcreate(&c, base + 1, name, P9_DOTL_RDWR, 0644, 0, NULL);
		EXPECT(e == 0);
		EXPECT(p9c_write(&c, base + 1, 0, data, len) == (long)len);
		EXPECT(p9c_walk1(&c, base, base + 2, name, NULL) == 0);
		EXPECT(p9c_lopen(&c, base + 2, 0) == 0);
		memset(buf, 0, sizeof(buf));
		EXPECT(p9c_read(&c, base + 2, 0, sizeof(buf), buf) == (long)len && !memcmp(buf, data, len));
		EXPECT(p9c_renameat(&c, base, name, base, other) == 0);
		EXPECT(p9c_read(&c, base + 1, 0, sizeof(buf), buf) == (long)len);	/* the open fid keeps it */
		EXPECT(p9c_clunk(&c, base + 1) == 0);
		EXPECT(p9c_clunk(&c, base + 2) == 0);
		/* shared: the root fid and the file "data" everyone reads */
		EXPECT(p9c_walk1(&c, 0, base + 3, "data", NULL) == 0);
		EXPECT(p9c_lopen(&c, base + 3, 0) == 0);
		EXPECT(p9c_read(&c, base + 3, 3, 4, buf) == 4 && !memcmp(buf, "3456", 4));
		EXPECT(p9c_getattr(&c, 0, &(struct p9c_attr){ 0 }) == 0);
		EXPECT(p9c_getattr(&c, 5, &(struct p9c_attr){ 0 }) == 0);	/* one open fid, shared */
		EXPECT(p9c_read(&c, 5, 0, 10, buf) == 10 && !memcmp(buf, "0123456789", 10));
		EXPECT(p9c_clunk(&c, base + 3) == 0);
		EXPECT(p9c_unlinkat(&c, base, other, 0) == 0);
		/* one fid id every client makes and clunks: EBADF when another has it, never a crash */
		e = p9c_walk1(&c, 0, 7777, NULL, NULL);
		EXPECT(e == 0 || e == EBADF);
		e = p9c_clunk(&c, 7777);
		EXPECT(e == 0 || e == EBADF);
		/* walks through a directory others rename */
		const char *path[] = { "moving", ".." };
		int n;
		e = p9c_walk(&c, 0, base + 5, 2, path, NULL, &n);
		EXPECT(e == 0 || e == ENOENT);
		if (!e && n == 2)
			EXPECT(p9c_clunk(&c, base + 5) == 0);
		if (cl->id == 0) {
			e = p9c_renameat(&c, 0, r % 2 ? "moved" : "moving", 0, r % 2 ? "moving" : "moved");
			EXPECT(e == 0);
		}
	}
	EXPECT(p9c_clunk(&c, base) == 0);
	return NULL;
}

TEST(many_clients_at_once)
{
	make_share();
	ssrv = p9_server_new(share, NULL);
	uint8_t req[256], resp[256];
	struct p9c c = { .req = req, .resp = resp, .resp_cap = sizeof(resp), .srv = ssrv };
	uint32_t msize;
	char v[32];
	CHECK_EQ(p9c_version(&c, 16384, "9P2000.L", &msize, v, sizeof(v)), 0);
	CHECK_EQ(p9c_attach(&c, 0, 0, NULL), 0);
	CHECK_EQ(p9c_mkdir(&c, 0, "moving", 0755, 0, NULL), 0);
	CHECK_EQ(p9c_walk1(&c, 0, 5, "data", NULL), 0);
	CHECK_EQ(p9c_lopen(&c, 5, 0), 0);
	struct client cls[CLIENTS];
	for (int i = 0; i < CLIENTS; i++) {
		cls[i] = (struct client){ .id = i };
		pthread_create(&cls[i].thread, NULL, client_run, &cls[i]);
	}
	for (int i = 0; i < CLIENTS; i++) {
		pthread_join(cls[i].thread, NULL);
		CHECK_EQ(cls[i].failures, 0);
	}
	/* Every client's directory is there and empty; nothing else appeared. */
	for (int i = 0; i < CLIENTS; i++) {
		char p[160];
		snprintf(p, sizeof(p), "%s/c%d", share, i);
		CHECK_EQ(rmdir(p), 0);
	}
	CHECK_EQ(p9c_clunk(&c, 5), 0);
	p9_server_free(ssrv);
	drop_share();
}

/* ---- the watch between requests (poll_ring) ---- */

static void cpu_named(const char *tid, const char *comm, void *arg)
{
	if (strcmp(comm, "lkvm-9p"))
		return;
	char path[300];
	snprintf(path, sizeof(path), "/proc/self/task/%s/schedstat", tid);
	FILE *f = fopen(path, "r");
	unsigned long long ns = 0;
	if (f && fscanf(f, "%llu", &ns) == 1)
		*(uint64_t *)arg += ns;
	if (f)
		fclose(f);
}

/* The workers' CPU time so far (ns, /proc/.../schedstat). */
static uint64_t workers_cpu_ns(void)
{
	uint64_t ns = 0;
	each_thread(cpu_named, &ns);
	return ns;
}

/*
 * The client's transport for this test: like queue_xfer, but it spins for the
 * reply (as a vCPU's halt polling would) so that its next kick comes while the
 * worker still watches, and, as Linux's driver does, it kicks only when the
 * used ring's flags do not say VRING_USED_F_NO_NOTIFY; a reply not there
 * within 2 s is a lost request.
 */
static unsigned kicks_skipped;

static size_t spin_xfer(struct p9c *c, size_t len)
{
	uint16_t before = get_le16(g(USED + 2));
	queue_msg(0, c);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);	/* the avail index before the flags (Linux: virtio_mb) */
	if (__atomic_load_n((uint16_t *)g(USED), __ATOMIC_RELAXED) & VRING_USED_F_NO_NOTIFY)
		kicks_skipped++;
	else
		kick();
	struct used_want w = { USED, before + 1 };
	uint64_t end = mono_ns() + 2000000000ULL;
	while (!used_reached(&w))
		if (mono_ns() > end)
			return 0;
	size_t n = get_le32(g(USED + 4 + 8 * (before % QSIZE) + 4));
	memcpy(c->resp, g(RESP(0)), MIN(n, c->resp_cap));
	return n;
}

/* One of the share's `lkvm stat` members (9p0_...). */
static long long stat_of(const char *name)
{
	struct device *dev = device_find(&vm, "virtio-9p", 0);
	long long v = -1;
	if (!dev || !dev->ops->stats)
		return -1;
	struct json_writer j;
	json_init(&j);
	json_begin(&j, NULL, '{');
	dev->ops->stats(dev, &j);
	json_end(&j);
	char key[64];
	snprintf(key, sizeof(key), "9p0_%s", name);
	if (!json_get_num(json_text(&j), key, &v))
		v = -1;
	json_free(&j);
	return v;
}

/* n reads of fid 9, each sent gap_us after the last reply (spun), over sc; how many came back right. */
static int reads_spaced(struct p9c *sc, int n, int gap_us)
{
	int right = 0;
	for (int i = 0; i < n; i++) {
		uint64_t until = mono_ns() + (uint64_t)gap_us * 1000;
		while (mono_ns() < until)
			;
		char buf[4] = { 0 };
		if (p9c_read(sc, 9, i % 7, 3, buf) != 3 || buf[0] != '0' + i % 7)
			break;	/* lost (2 s) or wrong: stop here */
		right++;
	}
	return right;
}

/*
 * Requests close together (12 us apart) lengthen the watch again: from none
 * to 8 us or more (two doublings) within 1000 of them. Looked at after every
 * request: on a busy machine a thread preempted for longer than the watch
 * resets it now and then, which is the policy, not a fault.
 */
static bool watch_grows(struct p9c *sc)
{
	for (int i = 0; i < 1000; i++) {
		if (reads_spaced(sc, 1, 12) != 1)
			return false;
		if (stat_of("watch_ns") >= 8192)
			return true;
	}
	return false;
}

/* While a worker watches, the driver is asked not to kick: within 1000 close requests some go unkicked. */
static bool kicks_skipped_while_watched(struct p9c *sc)
{
	unsigned before = kicks_skipped;
	for (int i = 0; i < 1000 && kicks_skipped == before; i++)
		if (reads_spaced(sc, 1, 2) != 1)
			return false;
	return kicks_skipped > before;
}

/*
 * One request at a time, each sent after a pause from none to past the
 * worker's 32 us watch: a kick that comes as the watcher gives up must still be
 * served. The watch's length adapts to the requests' spacing. Then, idle, the
 * workers use no CPU.
 */
TEST(single_requests_around_the_watch_and_no_cpu_when_idle)
{
	if (!device_up())
		return;
	CHECK_EQ(p9c_walk1(&qc, 0, 9, "data", NULL), 0);
	CHECK_EQ(p9c_lopen(&qc, 9, 0), 0);
	struct p9c sc = { .req = msgbuf, .resp = respbuf, .resp_cap = sizeof(respbuf), .xfer = spin_xfer };
	int right = 0;
	for (int i = 0; i < 3000; i++) {
		uint64_t until = mono_ns() + (i % 50) * 1000;	/* 0-49 us, spun: usleep's slack is 50 us */
		while (mono_ns() < until)
			;
		char buf[4] = { 0 };
		if (p9c_read(&sc, 9, i % 7, 3, buf) != 3 || buf[0] != '0' + i % 7 || buf[2] != '0' + i % 7 + 2)
			break;	/* a lost request took 2 s: the rest would too */
		right++;
	}
	CHECK_EQ(right, 3000);
	CHECK_EQ(stat_of("requests"), 3000 + 4);	/* version, attach, walk, open before */

	/*
	 * The watch adapts: requests 200 us apart, longer than any watch, end it
	 * (each then needs a wake-up); close together again, it comes back.
	 */
	CHECK(watch_grows(&sc));
	CHECK_EQ(reads_spaced(&sc, 40, 200), 40);
	CHECK_EQ(stat_of("watch_ns"), 0);
	long long w0 = stat_of("wakeups"), h0 = stat_of("watch_hits");
	CHECK_EQ(reads_spaced(&sc, 40, 200), 40);
	CHECK(stat_of("wakeups") - w0 >= 39);	/* no watch: every request woke a worker */
	CHECK(stat_of("watch_hits") - h0 <= 1);
	CHECK(watch_grows(&sc));
	long long h1 = stat_of("watch_hits");
	bool skipped = kicks_skipped_while_watched(&sc);	/* and each of them was still served */
	if (!skipped && stat_of("watch_hits") == h1)	/* every request came after the watch ended */
		test_skip("no kick skipped: in 1000 requests 2 us apart no watch found one (a machine too busy to show it)");
	else
		CHECK(skipped);
	usleep(100 * 1000);	/* past any watch */
	CHECK_EQ(get_le16(g(USED)), 0);	/* kicks wanted again: a guest that does not kick would wait forever */
	uint64_t before = workers_cpu_ns();
	CHECK(before > 0);	/* schedstat is there and counts the workers */
	usleep(300 * 1000);
	uint64_t spent = workers_cpu_ns() - before;
	CHECK(spent < 10 * 1000 * 1000);	/* a watch that never ends would take the whole 300 ms */
	CHECK_EQ(p9c_clunk(&qc, 9), 0);
	devices_destroy(&vm);
	drop_share();
}

TEST_MAIN()
