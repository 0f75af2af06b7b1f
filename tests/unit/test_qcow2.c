/*
 * qcow2 against qemu-img: images qemu-img makes read back as the raw bytes
 * qemu-img itself reports; lkvm's writes leave `qemu-img check` clean and
 * convert back to exactly the bytes written; bad headers are clean errors.
 * Without qemu-img these tests are skipped with that reason (a failure under CI).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <unistd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include "../../disk/qcow2.h"
#include "disk.h"
#include "util.h"
#include "test.h"

static char dir[64];

static bool have_qemu_img(void)
{
	return test_have_tool("qemu-img", "qemu-utils") && test_have_tool("qemu-io", "qemu-utils");
}

static int sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static const char *path(const char *name)
{
	static char buf[64][256];
	static int i;
	i = (i + 1) % 64;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name);
	return buf[i];
}

static uint8_t *slurp(const char *p, size_t *len)
{
	uint8_t *b = NULL;
	if (read_file(p, &b, len))
		return NULL;
	return b;
}

/* A raw file with a recognisable pattern, some zero runs to compress well. */
static void make_raw(const char *p, size_t size, unsigned seed)
{
	uint8_t *b = calloc(1, size);
	for (size_t i = 0; i < size; i++)
		b[i] = (i / 4096) % 3 == 2 ? 0 : (uint8_t)(i * 7 + seed + i / 511);
	int fd = open(p, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	CHECK(write(fd, b, size) == (ssize_t)size);
	close(fd);
	free(b);
}

/*
 * map_read (virtio-blk's asynchronous reads go by it): every run it names, read from the
 * file at the offset it gives, is the guest's bytes there (want), and no longer than asked.
 * Walks the disk in requests of 512 bytes to 1 MiB; returns the bytes it mapped.
 */
static uint64_t check_map_read(struct disk *d, const uint8_t *want)
{
	uint64_t mapped = 0, s = 42;
	uint8_t *buf = malloc(MiB(1));
	for (uint64_t off = 0; off < d->size;) {
		s = s * 6364136223846793005ULL + 1442695040888963407ULL;
		uint64_t len = MIN(d->size - off, ((s >> 33) % 2048 + 1) * 512), at = 0;
		uint64_t n = d->ops->map_read(d, off, len, &at);
		CHECK(n <= len);
		if (n && n <= len) {
			CHECK_EQ(pread(d->fd, buf, n, at), (ssize_t)n);
			if (memcmp(buf, want + off, n)) {
				fprintf(stderr, "  map_read(%llu, %llu) = %llu at %llu: not the guest's bytes\n",
					(unsigned long long)off, (unsigned long long)len, (unsigned long long)n,
					(unsigned long long)at);
				CHECK(0);
				break;
			}
			mapped += n;
		}
		off += len;
	}
	/* Past the end, and across it: nothing. */
	uint64_t at;
	CHECK_EQ(d->ops->map_read(d, d->size, 512, &at), 0);
	CHECK_EQ(d->ops->map_read(d, d->size - 512, 1024, &at), 0);
	free(buf);
	return mapped;
}

/* Everything lkvm reads from IMG equals what qemu-img converts it to; returns what map_read mapped. */
static uint64_t check_reads_like_qemu(const char *img)
{
	const char *raw = path("expect.raw");
	CHECK_EQ(sh("qemu-img convert -O raw %s %s", img, raw), 0);
	size_t len;
	uint8_t *want = slurp(raw, &len);
	struct disk *d = disk_open(img, true, false);
	CHECK(d != NULL);
	if (!d || !want) {
		if (!d)
			fprintf(stderr, "%s\n", err_msg());
		free(want);
		return 0;
	}
	CHECK_EQ(d->size, len);
	uint8_t *got = malloc(len);
	/* Odd-shaped vectors cross cluster boundaries at sector granularity. */
	struct iovec v[3] = { { got, 512 }, { got + 512, 3 * 512 }, { got + 2048, len - 2048 } };
	CHECK_EQ(d->ops->readv(d, 0, v, 3), 0);
	CHECK(memcmp(got, want, len) == 0);
	uint64_t mapped = d->size == len ? check_map_read(d, want) : 0;
	disk_close(d);
	free(got);
	free(want);
	return mapped;
}

static int writev1(struct disk *d, uint64_t off, void *buf, size_t len)
{
	struct iovec v = { buf, len };
	return d->ops->writev(d, off, &v, 1);
}

/* Writes at awkward places; the same writes go to a raw shadow copy. */
static void write_pattern(const char *img, const char *shadow, uint64_t size)
{
	struct disk *d = disk_open(img, false, false);
	CHECK(d != NULL);
	if (!d) {
		fprintf(stderr, "%s\n", err_msg());
		return;
	}
	int fd = open(shadow, O_WRONLY);
	uint64_t offs[] = { 0, 512, 65536 - 512, 65536 * 3 + 1024, size / 2, size - 4096, size - 512 };
	size_t lens[] = { 512, 4096, 1024, 200 * 1024, 65536, 4096, 512 };
	for (size_t i = 0; i < ARRAY_SIZE(offs); i++) {
		uint8_t *b = malloc(lens[i]);
		for (size_t j = 0; j < lens[i]; j++)
			b[j] = (uint8_t)(0xa0 + i + j * 13);
		CHECK_EQ(writev1(d, offs[i], b, lens[i]), 0);
		CHECK(pwrite(fd, b, lens[i], offs[i]) == (ssize_t)lens[i]);
		free(b);
	}
	/* Past the end is refused, not written. */
	uint8_t s[512] = { 0 };
	CHECK(writev1(d, size, s, 512) < 0);
	CHECK(writev1(d, size - 512, s, 1024) < 0);
	CHECK_EQ(d->ops->flush(d), 0);
	disk_close(d);
	close(fd);
}

static void check_clean_and_equal(const char *img, const char *shadow)
{
	CHECK_EQ(sh("qemu-img check -q %s", img), 0);
	const char *out = path("out.raw");
	CHECK_EQ(sh("qemu-img convert -O raw %s %s", img, out), 0);
	CHECK_EQ(sh("cmp -s %s %s", out, shadow), 0);
	check_reads_like_qemu(img);
}

static void roundtrip(const char *opts, uint64_t size)
{
	const char *img = path("t.qcow2"), *shadow = path("shadow.raw");
	CHECK_EQ(sh("qemu-img create -q -f qcow2 %s %s %llu", opts, img, (unsigned long long)size), 0);
	check_reads_like_qemu(img);	/* all zeroes */
	CHECK_EQ(sh("truncate -s %llu %s && rm -f %s && truncate -s %llu %s", 0ULL, shadow, shadow,
		    (unsigned long long)size, shadow), 0);
	write_pattern(img, shadow, size);
	check_clean_and_equal(img, shadow);
	/* Again over the now-allocated clusters: in-place writes. */
	write_pattern(img, shadow, size);
	check_clean_and_equal(img, shadow);
}

TEST(v3_default)
{
	if (have_qemu_img())
		roundtrip("", MiB(8));
}

TEST(v2_compat)
{
	if (have_qemu_img())
		roundtrip("-o compat=0.10", MiB(8));
}

/* The image shapes qemu-img can make: cluster sizes, preallocation, lazy refcounts. */
TEST(option_matrix)
{
	if (!have_qemu_img())
		return;
	static const char *opts[] = {
		"-o cluster_size=512", "-o cluster_size=4096", "-o cluster_size=2M",
		"-o compat=0.10,cluster_size=16384", "-o preallocation=metadata", "-o preallocation=falloc",
		"-o preallocation=full", "-o lazy_refcounts=on", "-o refcount_bits=16",
	};
	for (size_t i = 0; i < ARRAY_SIZE(opts); i++) {
		int before = t_fail;
		roundtrip(opts[i], MiB(8));
		if (t_fail != before)
			fprintf(stderr, "  ... with qemu-img create %s\n", opts[i]);
	}
	/* Other refcount widths are refused by name, not misread. */
	const char *img = path("r8.qcow2");
	CHECK_EQ(sh("qemu-img create -q -f qcow2 -o refcount_bits=8 %s 1M", img), 0);
	CHECK(disk_open(img, false, false) == NULL);
	CHECK(strstr(err_msg(), "refcount_order") != NULL);
}

TEST(small_clusters_grow_refcount_table)
{
	/* 512-byte clusters: 64 refcount-table entries cover 8 MiB, so 32 MiB of writes must grow it. */
	if (!have_qemu_img())
		return;
	const char *img = path("s.qcow2"), *shadow = path("s.raw");
	uint64_t size = MiB(32);
	CHECK_EQ(sh("qemu-img create -q -f qcow2 -o cluster_size=512 %s %llu", img, (unsigned long long)size), 0);
	make_raw(shadow, size, 5);
	size_t len;
	uint8_t *b = slurp(shadow, &len);
	struct disk *d = disk_open(img, false, false);
	CHECK(d != NULL);
	if (d && b) {
		for (uint64_t off = 0; off < size; off += MiB(1))
			CHECK_EQ(writev1(d, off, b + off, MiB(1)), 0);
		disk_close(d);
	}
	free(b);
	check_clean_and_equal(img, shadow);
}

TEST(compressed_read_and_overwrite)
{
	if (!have_qemu_img())
		return;
	const char *src = path("c.raw"), *img = path("c.qcow2");
	make_raw(src, MiB(4), 1);
	CHECK_EQ(sh("qemu-img convert -q -c -O qcow2 %s %s", src, img), 0);
	check_reads_like_qemu(img);
	/* Partial writes into compressed clusters move them; refcounts stay right. */
	write_pattern(img, src, MiB(4));
	check_clean_and_equal(img, src);
}

TEST(backing_file)
{
	if (!have_qemu_img())
		return;
	const char *base = path("base.raw"), *ov = path("ov.qcow2"), *shadow = path("ovs.raw");
	make_raw(base, MiB(4), 9);
	/* Relative name: resolved against the overlay's directory, not ours. */
	CHECK_EQ(sh("cd %s && qemu-img create -q -f qcow2 -b base.raw -F raw ov.qcow2", dir), 0);
	CHECK_EQ(check_reads_like_qemu(ov), 0);	/* all in the backing file: nothing mapped */
	CHECK_EQ(sh("cp %s %s", base, shadow), 0);
	write_pattern(ov, shadow, MiB(4));
	check_clean_and_equal(ov, shadow);
	/* The base is untouched. */
	const char *fresh = path("fresh.raw");
	make_raw(fresh, MiB(4), 9);
	CHECK_EQ(sh("cmp -s %s %s", base, fresh), 0);
	/* A qcow2 on a qcow2 on a raw. */
	CHECK_EQ(sh("cd %s && qemu-img create -q -f qcow2 -b ov.qcow2 -F qcow2 top.qcow2", dir), 0);
	check_reads_like_qemu(path("top.qcow2"));
}

/*
 * Reads and writes interleaved in one open image, against a shadow in memory: every
 * read sees the writes before it (the cached L2 tables follow the entries lkvm writes),
 * with 4 KiB clusters over 256 MiB (128 L2 tables, more than the cache holds: tables
 * are evicted and read again), vectors of 1-4 segments, runs of many clusters (read and
 * written straight to the file when they follow one another there), over a backing
 * file so unallocated clusters read as the base's bytes. The image ends clean and equal.
 */
TEST(interleaved_reads_see_writes)
{
	if (!have_qemu_img())
		return;
	const uint64_t size = MiB(256);
	const char *base = path("ib.raw"), *img = path("i.qcow2"), *shadowp = path("is.raw");
	make_raw(base, size, 3);
	CHECK_EQ(sh("cd %s && qemu-img create -q -f qcow2 -o cluster_size=4096 -b ib.raw -F raw i.qcow2", dir), 0);
	size_t len;
	uint8_t *shadow = slurp(base, &len), *buf = malloc(MiB(1) + 4096);
	struct disk *d = disk_open(img, false, false);
	CHECK(d != NULL && shadow != NULL && len == size);
	if (!d || !shadow || len != size) {
		free(shadow), free(buf);
		return;
	}
	uint64_t seed = 0x9e3779b97f4a7c15ULL;
	int bad = 0;
	for (int op = 0; op < 3000 && !bad; op++) {
		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		uint64_t r = seed >> 11;
		/* Mostly small, now and then up to 1 MiB; half the time near the last place written. */
		uint64_t n = (r % 8 ? 1 + (r >> 3) % 32 : 1 + (r >> 3) % 2048) * 512;
		static uint64_t last;
		uint64_t off = (r & (1ULL << 40) ? last + ((r >> 20) % 64) * 512 : (r >> 14) % (size / 512) * 512);
		if (off >= size)
			off = 0;
		n = MIN(n, size - off);
		int segs = 1 + (r >> 50) % 4;
		struct iovec v[4];
		uint64_t cut[5] = { 0 };
		for (int i = 1; i < segs; i++)
			cut[i] = MIN(n, ((r >> (8 * i)) % (n / 512 + 1)) * 512);
		cut[segs] = n;
		for (int i = 1; i < segs; i++)	/* sorted, so the segments tile buf */
			for (int j = i; j > 1 && cut[j] < cut[j - 1]; j--) {
				uint64_t t = cut[j]; cut[j] = cut[j - 1]; cut[j - 1] = t;
			}
		for (int i = 0; i < segs; i++)
			v[i] = (struct iovec){ buf + cut[i], cut[i + 1] - cut[i] };
		if (r & (1ULL << 41)) {
			for (uint64_t i = 0; i < n; i++)
				buf[i] = (uint8_t)(op * 31 + i * 7 + (i >> 9));
			CHECK_EQ(d->ops->writev(d, off, v, segs), 0);
			memcpy(shadow + off, buf, n);
			last = off;
		} else {
			memset(buf, 0xee, n);
			CHECK_EQ(d->ops->readv(d, off, v, segs), 0);
			if (memcmp(buf, shadow + off, n)) {
				fprintf(stderr, "  op %d: read of %llu bytes at %llu differs from what was written\n", op,
					(unsigned long long)n, (unsigned long long)off);
				bad = 1;
			}
		}
	}
	CHECK(!bad);
	/* The whole disk, in 1 MiB reads, then closed: qemu-img agrees. */
	for (uint64_t off = 0; off < size && !bad; off += MiB(1)) {
		struct iovec v = { buf, MiB(1) };
		CHECK_EQ(d->ops->readv(d, off, &v, 1), 0);
		if (memcmp(buf, shadow + off, MiB(1)))
			bad = 1;
	}
	CHECK(!bad);
	CHECK_EQ(d->ops->flush(d), 0);
	disk_close(d);
	int fd = open(shadowp, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	CHECK(write(fd, shadow, size) == (ssize_t)size);
	close(fd);
	free(shadow);
	free(buf);
	check_clean_and_equal(img, shadowp);
}

TEST(zero_clusters)
{
	if (!have_qemu_img())
		return;
	const char *src = path("z.raw"), *img = path("z.qcow2");
	make_raw(src, MiB(2), 3);
	CHECK_EQ(sh("qemu-img convert -q -O qcow2 %s %s", src, img), 0);
	/* Every cluster a normal one, in order: map_read maps the whole disk. */
	CHECK_EQ(check_reads_like_qemu(img), MiB(2));
	CHECK_EQ(sh("qemu-io -f qcow2 -c 'write -z 65536 131072' -c 'write -z -u 262144 65536' %s >/dev/null", img), 0);
	/* Zero clusters, and one given back (-u), are not mapped; the rest still is. */
	uint64_t m = check_reads_like_qemu(img);
	CHECK(m > 0 && m <= MiB(2) - KiB(192));
	CHECK_EQ(sh("qemu-io -f raw -c 'write -z 65536 131072' -c 'write -z 262144 65536' %s >/dev/null", src), 0);
	write_pattern(img, src, MiB(2));
	check_clean_and_equal(img, src);
}

static void patch(const char *p, uint64_t off, const void *bytes, size_t n)
{
	int fd = open(p, O_WRONLY);
	CHECK(pwrite(fd, bytes, n, off) == (ssize_t)n);
	close(fd);
}

static void expect_refused(const char *img, const char *words)
{
	struct disk *d = disk_open(img, false, false);
	CHECK(d == NULL);
	if (d) {
		disk_close(d);
		return;
	}
	if (!strstr(err_msg(), words))
		fprintf(stderr, "message '%s' lacks '%s'\n", err_msg(), words);
	CHECK(strstr(err_msg(), words) != NULL);
	CHECK(strstr(err_msg(), img) != NULL);
}

TEST(bad_headers)
{
	if (!have_qemu_img())
		return;
	const char *img = path("bad.qcow2");
	const char *mk = "qemu-img create -q -f qcow2 %s 4M";
	CHECK_EQ(sh(mk, img), 0);
	CHECK_EQ(sh("truncate -s 50 %s", img), 0);
	expect_refused(img, "truncated");

	CHECK_EQ(sh(mk, img), 0);
	uint8_t bits = 30;
	patch(img, 23, &bits, 1);	/* cluster_bits, big-endian low byte */
	expect_refused(img, "cluster_bits");

	CHECK_EQ(sh(mk, img), 0);
	uint8_t b4 = 1 << 2;
	patch(img, 79, &b4, 1);	/* incompatible bit 2 */
	expect_refused(img, "bit 2");
	b4 = 1 << 1;
	patch(img, 79, &b4, 1);
	expect_refused(img, "corrupt");
	b4 = 0;
	patch(img, 79, &b4, 1);
	b4 = 0x80;
	patch(img, 72, &b4, 1);	/* bit 63 */
	expect_refused(img, "bit 63");

	CHECK_EQ(sh(mk, img), 0);
	uint8_t far[8] = { 0, 0, 0, 0x10, 0, 0, 0, 0 };	/* L1 at 64 GiB */
	patch(img, 40, far, 8);
	expect_refused(img, "L1");

	CHECK_EQ(sh(mk, img), 0);
	uint8_t v = 4;
	patch(img, 7, &v, 1);
	expect_refused(img, "version");
}

TEST(l2_pointer_past_eof_is_eio)
{
	if (!have_qemu_img())
		return;
	const char *img = path("eof.qcow2");
	CHECK_EQ(sh("qemu-img create -q -f qcow2 %s 1G", img), 0);
	CHECK_EQ(sh("qemu-io -f qcow2 -c 'write -P 0x55 0 4096' %s >/dev/null", img), 0);
	/* Point L1[0] far past the end of the file. */
	struct disk *d = disk_open(img, true, false);
	CHECK(d != NULL);
	if (!d)
		return;
	uint8_t l1off_be[8];
	CHECK(pread(d->fd, l1off_be, 8, 40) == 8);
	disk_close(d);
	uint64_t l1off = be64toh(*(uint64_t *)l1off_be);
	uint64_t bad = htobe64(0x8000000100000000ULL);
	patch(img, l1off, &bad, 8);
	d = disk_open(img, false, false);
	CHECK(d != NULL);
	if (!d)
		return;
	uint8_t buf[4096];
	struct iovec iv = { buf, sizeof(buf) };
	CHECK_EQ(d->ops->readv(d, 0, &iv, 1), -EIO);
	CHECK_EQ(d->ops->writev(d, 0, &iv, 1), -EIO);
	/* Other L1 entries (512 MiB each) still work. */
	CHECK_EQ(d->ops->readv(d, MiB(600), &iv, 1), 0);
	CHECK_EQ(d->ops->writev(d, MiB(600), &iv, 1), 0);
	disk_close(d);
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/*
 * Many allocating writes of mixed sizes (512 bytes to 3 MiB, some as vectors of
 * more segments than one pwritev takes), at random sector offsets into an empty
 * image, with a flush now and then, against a raw shadow: reopened, lkvm and
 * qemu-img read exactly the shadow's bytes and `qemu-img check` finds nothing,
 * not even a leak (flush and close give the reservation back). 4 KiB clusters
 * make runs cross L2 tables (2 MiB each) and refcount blocks (8 MiB each).
 */
static void many_allocations(const char *opts, uint64_t size, unsigned seed)
{
	const char *img = path("m.qcow2"), *shadow = path("m.raw");
	CHECK_EQ(sh("qemu-img create -q -f qcow2 %s %s %llu", opts, img, (unsigned long long)size), 0);
	CHECK_EQ(sh("rm -f %s && truncate -s %llu %s", shadow, (unsigned long long)size, shadow), 0);
	struct disk *d = disk_open(img, false, false);
	int fd = open(shadow, O_WRONLY);
	CHECK(d != NULL);
	if (!d)
		return;
	uint64_t s = seed;
	uint8_t *b = malloc(MiB(3));
	for (int i = 0; i < 300; i++) {
		static const uint64_t lens[] = { 512, 4096, 4096, 65536, 65536 + 512, 200 * 1024, MiB(1), MiB(3) };
		uint64_t len = lens[rnd(&s) % ARRAY_SIZE(lens)];
		uint64_t off = rnd(&s) % ((size - len) / 512) * 512;
		for (uint64_t j = 0; j < len; j++)
			b[j] = (uint8_t)(i * 31 + j * 7 + (j >> 9));
		struct iovec v[100];
		int n = 1;
		if (len >= 100 * 512 && i % 3 == 0) {
			/* 99 sectors, then the rest: more segments than one pwritev is given */
			for (n = 0; n < 99; n++)
				v[n] = (struct iovec){ b + n * 512, 512 };
			v[n++] = (struct iovec){ b + 99 * 512, len - 99 * 512 };
		} else {
			v[0] = (struct iovec){ b, len };
		}
		CHECK_EQ(d->ops->writev(d, off, v, n), 0);
		CHECK(pwrite(fd, b, len, off) == (ssize_t)len);
		if (i % 50 == 49)
			CHECK_EQ(d->ops->flush(d), 0);
	}
	free(b);
	close(fd);
	disk_close(d);
	check_clean_and_equal(img, shadow);
}

TEST(many_allocations_mixed_sizes)
{
	if (!have_qemu_img())
		return;
	many_allocations("-o cluster_size=4096", MiB(64), 7);
	many_allocations("", MiB(256), 11);
	many_allocations("-o cluster_size=512", MiB(16), 13);	/* the refcount table grows */
	many_allocations("-o compat=0.10", MiB(64), 17);
}

/*
 * Killed at any point: a child writes a fixed sequence into an empty image (new L2
 * tables, new refcount blocks, runs across them, a flush, rewrites) and kills itself
 * with SIGKILL right before its k-th write to the file, for every k from the first
 * write to past the last. Then `qemu-img check` must find no corruption (leaked
 * clusters, exit status 3, are allowed: the reservation a kill leaves behind), and
 * once its flush returned, every write before it must read back, through lkvm
 * and in qemu-img's conversion alike (later ones may be lost, as a disk's write
 * cache loses them; after a clean close all must be there); nothing else, i.e.
 * no byte outside the writes, may have changed.
 */
#define KILL_WRITES 24
#define KILL_FLUSH_AFTER 11	/* the write the child flushes after */
static char kdir[300];
static void kill_writer_seq(int i, uint64_t *off, uint64_t *len)
{
	/* 4 KiB clusters: L2 tables map 2 MiB, refcount blocks count 8 MiB. */
	static const uint64_t offs[KILL_WRITES] = {
		0, 4096, MiB(2) - 4096, MiB(5) + 512, MiB(9), MiB(12) - 8192, MiB(20), MiB(3), 0, 700 * 512,
		MiB(30), MiB(31) + 4096, MiB(14), MiB(1), MiB(24) + 3 * 512, MiB(17), MiB(27), MiB(6), MiB(21), MiB(26) - 512,
		MiB(10), MiB(9), MiB(28), MiB(16) - 4096 };
	static const uint64_t lens[KILL_WRITES] = {
		512, 65536, 8192, 4096, MiB(1), 16384, 600 * 1024, 4096, 4096, 512,
		MiB(1) + 512, 4096, MiB(2), 200 * 1024, 9 * 512, 512, 8192, 65536, MiB(1), 1024,
		4096, 4096, 300 * 1024, 8192 };
	*off = offs[i];
	*len = lens[i];
}

static uint8_t kill_byte(int i, uint64_t j) { return (uint8_t)(i * 37 + 1 + j * 11 + (j >> 12)); }

/* The child: the writes, a byte on the pipe after each finished one. */
static void kill_writer(const char *img, int kill_after, int pfd)
{
	struct disk *d = disk_open(img, false, false);
	if (!d)
		_exit(2);
	qcow2_test_kill_after = kill_after;
	uint8_t *b = malloc(MiB(4));
	for (int i = 0; i < KILL_WRITES; i++) {
		uint64_t off, len;
		kill_writer_seq(i, &off, &len);
		for (uint64_t j = 0; j < len; j++)
			b[j] = kill_byte(i, j);
		struct iovec v = { b, len };
		if (d->ops->writev(d, off, &v, 1))
			_exit(3);
		if (i == KILL_FLUSH_AFTER && d->ops->flush(d))
			_exit(4);
		if (write(pfd, "x", 1) != 1)
			_exit(5);
	}
	disk_close(d);
	_exit(qcow2_test_kill_after >= 0 ? 0 : 6);	/* 0: it never reached the kill point */
}

/* Zeroed memory a forked child does not get (MADV_DONTFORK). */
static uint8_t *kept_buffer(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED || madvise(p, size, MADV_DONTFORK))
		abort();
	return p;
}

/* Run the child killed at its k-th write; 1 when it finished before reaching it. */
static int kill_at(const char *img, const char *base, int k)
{
	CHECK_EQ(sh("cp %s %s", base, img), 0);
	int p[2];
	CHECK_EQ(pipe(p), 0);
	pid_t pid = fork();
	if (pid == 0) {
		close(p[0]);
		kill_writer(img, k, p[1]);
	}
	close(p[1]);
	int done = 0;
	char c;
	while (read(p[0], &c, 1) == 1)
		done++;
	close(p[0]);
	int st;
	CHECK(waitpid(pid, &st, 0) == pid);
	bool finished = WIFEXITED(st) && WEXITSTATUS(st) == 0;
	CHECK(finished || (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL));
	/* 0 clean, 3 leaks only; 2 would be corruption */
	int rc = sh("qemu-img check -q %s >/dev/null 2>&1", img);
	CHECK(WIFEXITED(rc) && (WEXITSTATUS(rc) == 0 || WEXITSTATUS(rc) == 3));
	if (!WIFEXITED(rc) || (WEXITSTATUS(rc) != 0 && WEXITSTATUS(rc) != 3))
	{
		fprintf(stderr, "killed before write %d: qemu-img check says %d:\n", k, WEXITSTATUS(rc));
		sh("qemu-img check %s 2>&1 | grep -v Leaked | head -8 >&2", img);
	}
	if (finished && rc) {
		fprintf(stderr, "after a clean close, qemu-img check says %d:\n", WEXITSTATUS(rc));
		sh("qemu-img check %s >&2", img);
	}
	if (finished)
		CHECK_EQ(rc, 0);	/* a clean close leaves no leak */
	/*
	 * Once the flush returned, what it wrote before reads back (all it finished, if
	 * it was not killed); writes after the flush, or before an unfinished one, may
	 * be lost (new clusters' entries wait in the cache), the one in flight too.
	 */
	const size_t size = MiB(32);
	/*
	 * Kept from point to point, zero outside the writes' extents (cleared again
	 * below), and not inherited by the next point's child: fresh buffers, or ones
	 * that each fork made copy-on-write again, cost more in page faults than the test.
	 */
	static uint8_t *want, *mask, *got;
	if (!want) {
		want = kept_buffer(size);
		mask = kept_buffer(size);
		got = kept_buffer(size);
	}
	for (int i = 0; i < KILL_WRITES; i++) {
		uint64_t off, len;
		kill_writer_seq(i, &off, &len);
		memset(want + off, 0, len);
		memset(mask + off, 0, len);
	}
	for (int i = 0; i < KILL_WRITES && i <= done; i++) {
		uint64_t off, len;
		kill_writer_seq(i, &off, &len);
		for (uint64_t j = 0; j < len; j++) {
			if (i < done && (finished || (done > KILL_FLUSH_AFTER && i <= KILL_FLUSH_AFTER))) {
				want[off + j] = kill_byte(i, j);
				mask[off + j] = 0;
			} else {
				mask[off + j] = 1;	/* in flight */
			}
		}
	}
	struct disk *d = disk_open(img, true, false);
	CHECK(d != NULL);
	if (d) {
		struct iovec v = { got, size };
		CHECK_EQ(d->ops->readv(d, 0, &v, 1), 0);
		disk_close(d);
		/* In-flight bytes may read back either way: take what was read there, then compare whole. */
		for (int i = 0; i < KILL_WRITES && i <= done; i++) {
			uint64_t off, len;
			kill_writer_seq(i, &off, &len);
			for (uint64_t j = off; j < off + len; j++)
				if (mask[j])
					want[j] = got[j];
		}
		uint64_t bad = 0;
		size_t first_bad = 0;
		if (memcmp(got, want, size))
			for (size_t j = 0; j < size; j++)
				if (got[j] != want[j] && !bad++)
					first_bad = j;
		CHECK_EQ(bad, 0);
		if (bad)
			fprintf(stderr, "killed before write %d (%d finished): %llu bytes differ, the first at %zu\n", k, done,
				(unsigned long long)bad, first_bad);
		/* qemu-img reads the same bytes lkvm does (every 8th point: the conversion is slow) */
		char conv[400];	/* not path(): its buffers are reused after 64 calls, and img is one */
		snprintf(conv, sizeof(conv), "%s/k-conv.raw", kdir);
		if (k % 8 && !finished)
			goto out;
		CHECK_EQ(sh("qemu-img convert -O raw %s %s", img, conv), 0);
		size_t clen;
		uint8_t *c2 = slurp(conv, &clen);
		CHECK(c2 && clen == size && memcmp(c2, got, size) == 0);
		free(c2);
	}
out:
	return finished;
}

TEST(killed_at_every_write)
{
	if (!have_qemu_img())
		return;
	/* In memory where there is /dev/shm: each point makes the writer fdatasync a few times. */
	snprintf(kdir, sizeof(kdir), "%s/lkvm-qcow2-kill-XXXXXX", access("/dev/shm", W_OK) ? dir : "/dev/shm");
	CHECK(mkdtemp(kdir) != NULL);
	char base[400], img[400];
	snprintf(base, sizeof(base), "%s/kbase.qcow2", kdir);
	snprintf(img, sizeof(img), "%s/k.qcow2", kdir);
	CHECK_EQ(sh("qemu-img create -q -f qcow2 -o cluster_size=4096 %s 32M", base), 0);
	/* LKVM_TEST_KILL_FROM=k [LKVM_TEST_KILL_ONE=1]: start at (only) point k, to look at one */
	int k = getenv("LKVM_TEST_KILL_FROM") ? atoi(getenv("LKVM_TEST_KILL_FROM")) : 0;
	while (k < 1000 && !kill_at(img, base, k) && !getenv("LKVM_TEST_KILL_ONE"))
		k++;
	CHECK(k > KILL_WRITES);		/* it was killed at every write the sequence makes */
	CHECK(k < 1000);
	printf("killed_at_every_write: %d kill points\n", k);
	CHECK_EQ(sh("rm -rf %s", kdir), 0);
}

TEST(read_only_and_snapshots)
{
	if (!have_qemu_img())
		return;
	const char *img = path("snap.qcow2");
	CHECK_EQ(sh("qemu-img create -q -f qcow2 %s 4M && qemu-img snapshot -c s1 %s", img, img), 0);
	expect_refused(img, "snapshots");
	struct disk *d = disk_open(img, true, false);
	CHECK(d != NULL);
	if (d) {
		uint8_t buf[512];
		struct iovec iv = { buf, sizeof(buf) };
		CHECK_EQ(d->ops->readv(d, 0, &iv, 1), 0);
		CHECK(d->ops->writev(d, 0, &iv, 1) < 0);
		disk_close(d);
	}
}

__attribute__((constructor(101))) static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/lkvm-qcow2-XXXXXX");
	if (!mkdtemp(dir))
		abort();
}

__attribute__((destructor)) static void cleanup(void)
{
	sh("rm -rf %s", dir);
}

TEST_MAIN()
