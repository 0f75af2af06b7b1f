/*
 * libFuzzer target: qcow2 images (disk/qcow2.c) as the host hands them to
 * lkvm. The input becomes a temporary image file; it is opened with
 * disk_open(), read and written at offsets the input gives, and closed.
 *
 *   byte 0   flags: bit 0 open read-only, bits 1-2 the backing file the
 *            image names (whatever name the input holds is replaced: 0 a raw
 *            image, 1 a qcow2 image backed by that raw one, 2 the image
 *            itself, a loop, 3 a file that does not exist)
 *   byte 1   number of operations (at most 8), 8 bytes each:
 *            kind (bits 0-1: read, write, flush, read; bit 2: split into
 *            three iovecs; bit 3: the offset is not reduced to the disk's
 *            size), le32 offset in sectors, le16 length in sectors - 1
 *            (at most 1024), a fill byte for writes
 *   then     the image; its first four bytes are always the qcow2 magic
 *
 * Every file is unlinked as soon as it is made and reached through
 * /proc/self/fd/N, so nothing is left behind however the fuzzer ends, and a
 * backing file name is only ever one of those numbers. Oracle: no
 * crash, no leak, no hang (a 30 s timeout unless -timeout is given);
 * read-only images stay byte for byte what they were and read the same bytes
 * twice; the backing images never change; a writable image grows by a
 * bounded amount per write.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "disk.h"
#include "util.h"
#define FUZZ_NAME "fuzz_qcow2"
#include "fuzz_harness.h"

#define MAX_OPS 8
#define MAX_OP_BYTES (1024 * 512)
#define GROWTH_PER_WRITE (24u << 20)	/* new L2, data, refcount blocks and a bigger refcount table */

static char img[32], raw_b[32], qcow_b[32];
static char names[3][16];	/* the numbers of the files above, as backing file names */
static int img_fd;
static uint8_t *raw_b_data, *qcow_b_data;
static size_t raw_b_len, qcow_b_len;

static void put_be(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = v >> (8 * (n - 1 - i));
}

static uint64_t get_be(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* A temporary file, unlinked at once: its path is /proc/self/fd/N, its name in there N. */
static int temp_file(char *path, size_t path_len, char *name, size_t name_len)
{
	char tmpl[64];
	snprintf(tmpl, sizeof(tmpl), "%s/lkvm-fuzz-qcow2-XXXXXX", access("/dev/shm", W_OK) ? "/tmp" : "/dev/shm");
	int fd = mkstemp(tmpl);
	if (fd < 0)
		fail("mkstemp: %s", strerror(errno));
	unlink(tmpl);
	snprintf(path, path_len, "/proc/self/fd/%d", fd);
	snprintf(name, name_len, "%d", fd);
	return fd;
}

static void put_file(int fd, const void *buf, size_t len)
{
	if (ftruncate(fd, 0) || pwrite(fd, buf, len, 0) != (ssize_t)len)
		fail("cannot write a temporary file: %s", strerror(errno));
}

static uint8_t *slurp(const char *path, size_t *len)
{
	uint8_t *b;
	if (read_file(path, &b, len))
		fail("%s", err_msg());
	return b;
}

/* A 64 KiB raw image, and a 64 KiB qcow2 image (512-byte clusters) backed by it. */
static void make_backing(int raw_fd, int qcow_fd)
{
	uint8_t raw[65536];
	for (size_t i = 0; i < sizeof(raw); i++)
		raw[i] = (uint8_t)(i * 7 + i / 512);
	put_file(raw_fd, raw, sizeof(raw));
	/* header, L1 (1 entry), refcount table, refcount block, L2, one data cluster, the name */
	uint8_t q[7 * 512] = { 0 };
	put_be(q, 0x514649fb, 4);
	put_be(q + 4, 2, 4);
	put_be(q + 8, 6 * 512, 8);		/* backing_file_offset */
	put_be(q + 16, strlen(names[0]), 4);	/* the raw image */
	put_be(q + 20, 9, 4);			/* cluster_bits */
	put_be(q + 24, 64 * 1024, 8);
	put_be(q + 36, 2, 4);			/* l1_size: 32 KiB per L2 table */
	put_be(q + 40, 512, 8);
	put_be(q + 48, 1024, 8);
	put_be(q + 56, 1, 4);
	put_be(q + 512, 4 * 512 | 1ULL << 63, 8);
	put_be(q + 1024, 3 * 512, 8);
	for (int c = 0; c < 7; c++)
		put_be(q + 3 * 512 + 2 * c, 1, 2);
	put_be(q + 4 * 512 + 8 * 3, 5 * 512 | 1ULL << 63, 8);	/* guest cluster 3 */
	memset(q + 5 * 512, 0xb2, 512);
	memcpy(q + 6 * 512, names[0], strlen(names[0]));
	put_file(qcow_fd, q, sizeof(q));
	raw_b_data = slurp(raw_b, &raw_b_len);
	qcow_b_data = slurp(qcow_b, &qcow_b_len);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_add_timeout(argc, argv);
	/* On tmpfs where there is one: qcow2 syncs its metadata. */
	int raw_fd = temp_file(raw_b, sizeof(raw_b), names[0], sizeof(names[0]));
	int qcow_fd = temp_file(qcow_b, sizeof(qcow_b), names[1], sizeof(names[1]));
	img_fd = temp_file(img, sizeof(img), names[2], sizeof(names[2]));
	make_backing(raw_fd, qcow_fd);
	return 0;
}

/* The image names only files of ours: rewrite whatever name it would read. */
static void safe_backing(uint8_t *f, size_t len, int choice)
{
	uint64_t bo = get_be(f + 8, 8);
	uint32_t blen = get_be(f + 16, 4);
	if (!bo || !blen || blen > 1023 || bo >= len || len - bo < blen)
		return;	/* qcow2.c refuses it (or has none) before reading a name */
	if (bo < 20) {
		put_be(f + 8, 0, 8);	/* a name over the magic or the fields that place it: no backing file */
		return;
	}
	const char *name = choice < 3 ? names[choice] : "missing";
	if (strlen(name) > len - bo)
		name = "x";	/* no room: a one-letter name that does not exist */
	memcpy(f + bo, name, strlen(name));
	put_be(f + 16, strlen(name), 4);
}

static void check_unchanged(const char *path, const uint8_t *want, size_t want_len)
{
	size_t len;
	uint8_t *b = slurp(path, &len);
	if (len != want_len || memcmp(b, want, len))
		fail("%s changed (%zu bytes, was %zu)", path, len, want_len);
	free(b);
}

static int rw(struct disk *d, bool write, uint64_t off, uint8_t *buf, size_t len, bool split)
{
	struct iovec v[3] = { { buf, len } };
	int n = 1;
	if (split && len >= 3 * 512) {
		/* Three pieces at sector boundaries that are not cluster ones. */
		size_t a = 512, b = (len / 512 - 1) / 2 * 512;
		v[0] = (struct iovec){ buf, a };
		v[1] = (struct iovec){ buf + a, b };
		v[2] = (struct iovec){ buf + a + b, len - a - b };
		n = 3;
	}
	return write ? d->ops->writev(d, off, v, n) : d->ops->readv(d, off, v, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	uint8_t flags = data[0];
	size_t nops = MIN((size_t)data[1], (size_t)MAX_OPS);
	size_t hdr = 2 + 8 * nops;
	if (size < hdr + 4)
		return 0;
	bool ro = flags & 1;
	size_t len = size - hdr;
	uint8_t *f = malloc(len);
	memcpy(f, data + hdr, len);
	put_be(f, 0x514649fb, 4);	/* safe_backing never writes over it */
	if (len >= 20)
		safe_backing(f, len, (flags >> 1) & 3);
	put_file(img_fd, f, len);

	struct disk *d = disk_open(img, ro, false);
	if (!d) {
		check_unchanged(img, f, len);	/* a refused image is never touched */
		free(f);
		return 0;
	}
	struct stat st;
	int writes = 0;
	uint8_t *first = NULL, *buf = NULL;
	uint64_t first_off = 0;
	size_t first_len = 0;
	for (size_t i = 0; i < nops; i++) {
		const uint8_t *op = data + 2 + 8 * i;
		uint64_t sectors = d->size / 512;
		uint64_t off = get_le32(op + 1);
		size_t n = ((get_le16(op + 5) & 1023) + 1) * 512;
		if (!(op[0] & 8))
			off = sectors ? off % sectors : 0;
		off *= 512;
		buf = malloc(n);	/* exactly the size asked for: ASan sees any overrun */
		int kind = op[0] & 3, r = 0;
		if (kind == 1) {
			memset(buf, op[7], n);
			r = rw(d, true, off, buf, n, op[0] & 4);
			writes++;
			if (ro && r == 0)
				fail("a write to a read-only image succeeded");
		} else if (kind == 2) {
			r = d->ops->flush(d);
		} else {
			r = rw(d, false, off, buf, n, op[0] & 4);
			if (r == 0 && ro && !first) {
				first = buf;
				buf = NULL;
				first_off = off;
				first_len = n;
			}
		}
		if (r > 0)
			fail("an operation returned %d, neither 0 nor -errno", r);
		free(buf);
		buf = NULL;
	}
	/* Read-only: the same bytes again, whatever was read (and cached) in between. */
	if (first) {
		uint8_t *again = malloc(first_len);
		if (rw(d, false, first_off, again, first_len, false) || memcmp(again, first, first_len))
			fail("a read-only image read other bytes the second time at %llu+%zu",
			     (unsigned long long)first_off, first_len);
		free(again);
		free(first);
	}
	disk_close(d);
	if (ro)
		check_unchanged(img, f, len);
	else if (fstat(img_fd, &st) || (uint64_t)st.st_size > len + (uint64_t)writes * GROWTH_PER_WRITE + 4096)
		fail("the image grew from %zu to %lld bytes with %d writes", len, (long long)st.st_size, writes);
	check_unchanged(raw_b, raw_b_data, raw_b_len);
	check_unchanged(qcow_b, qcow_b_data, qcow_b_len);
	free(f);
	return 0;
}
