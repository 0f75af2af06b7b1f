/* The raw backend on a temporary file: vectored I/O, flush, discard, zeroes, bad opens. */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include "disk.h"
#include "util.h"
#include "test.h"

static int tmpfile_of(char *path, uint64_t size)
{
	int fd = mkstemp(path);
	if (fd >= 0 && ftruncate(fd, size) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

TEST(readv_writev_flush)
{
	char path[] = "/tmp/lkvm-test-raw-XXXXXX";
	int fd = tmpfile_of(path, MiB(1));
	CHECK(fd >= 0);
	struct disk *d = disk_open(path, false, false);
	CHECK(d != NULL);
	if (!d)
		return;
	CHECK_EQ(d->size, MiB(1));
	uint8_t a[512], b[1536], back[2048];
	memset(a, 0x11, sizeof(a));
	for (size_t i = 0; i < sizeof(b); i++)
		b[i] = i * 5;
	struct iovec v[2] = { { a, sizeof(a) }, { b, sizeof(b) } };
	CHECK_EQ(d->ops->writev(d, 4096, v, 2), 0);
	CHECK_EQ(d->ops->flush(d), 0);
	CHECK_EQ(pread(fd, back, 2048, 4096), 2048);
	CHECK(!memcmp(back, a, 512) && !memcmp(back + 512, b, 1536));
	memset(back, 0, sizeof(back));
	struct iovec r[3] = { { back, 100 }, { back + 100, 1000 }, { back + 1100, 948 } };
	CHECK_EQ(d->ops->readv(d, 4096, r, 3), 0);
	CHECK(!memcmp(back, a, 512) && !memcmp(back + 512, b, 1536));
	/* Reading past the end of the file is an error, not a short success. */
	struct iovec tail = { back, 1024 };
	CHECK(d->ops->readv(d, MiB(1) - 512, &tail, 1) < 0);
	disk_close(d);
	close(fd);
	unlink(path);
}

TEST(discard_and_write_zeroes)
{
	char path[] = "/tmp/lkvm-test-raw-XXXXXX";
	int fd = tmpfile_of(path, 0);
	uint8_t *ones = malloc(MiB(1));
	memset(ones, 0xff, MiB(1));
	CHECK_EQ(pwrite(fd, ones, MiB(1), 0), MiB(1));
	struct disk *d = disk_open(path, false, false);
	CHECK(d != NULL);
	if (!d)
		return;
	CHECK(d->ops->discard != NULL && d->ops->write_zeroes != NULL);
	CHECK_EQ(d->ops->discard(d, 65536, 65536), 0);
	CHECK_EQ(d->ops->write_zeroes(d, 4096, 4096, false), 0);
	CHECK_EQ(d->ops->write_zeroes(d, 262144, 8192, true), 0);
	uint8_t *now = malloc(MiB(1));
	CHECK_EQ(pread(fd, now, MiB(1), 0), MiB(1));
	int wrong = 0;
	for (size_t i = 0; i < MiB(1); i++) {
		bool zero = (i >= 65536 && i < 131072) || (i >= 4096 && i < 8192) || (i >= 262144 && i < 270336);
		wrong += now[i] != (zero ? 0 : 0xff);
	}
	CHECK_EQ(wrong, 0);
	struct stat st;
	fstat(fd, &st);
	CHECK_EQ(st.st_size, MiB(1));	/* KEEP_SIZE */
	disk_close(d);
	free(ones);
	free(now);
	close(fd);
	unlink(path);
}

TEST(read_only)
{
	char path[] = "/tmp/lkvm-test-raw-XXXXXX";
	int fd = tmpfile_of(path, 4096);
	struct disk *d = disk_open(path, true, false);
	CHECK(d != NULL);
	if (!d)
		return;
	uint8_t buf[512] = { 1 };
	struct iovec v = { buf, 512 };
	CHECK_EQ(d->ops->readv(d, 0, &v, 1), 0);
	CHECK(d->ops->writev(d, 0, &v, 1) < 0);	/* the descriptor is O_RDONLY */
	disk_close(d);
	close(fd);
	unlink(path);
}

TEST(bad_opens)
{
	CHECK(disk_open("/nonexistent/lkvm.img", false, false) == NULL);
	CHECK(strstr(err_msg(), "/nonexistent/lkvm.img") != NULL);
	CHECK(disk_open("/tmp", true, false) == NULL);	/* a directory */
	CHECK(strstr(err_msg(), "/tmp") != NULL);
	char path[] = "/tmp/lkvm-test-raw-XXXXXX";
	int fd = tmpfile_of(path, 0);
	CHECK(disk_open(path, false, false) == NULL);	/* empty */
	CHECK(strstr(err_msg(), "sector") != NULL);
	/* 1000 bytes: one visible sector, the rest ignored with a warning. */
	CHECK_EQ(ftruncate(fd, 1000), 0);
	struct disk *d = disk_open(path, false, false);
	CHECK(d != NULL);
	if (d)
		CHECK_EQ(d->size, 512);
	disk_close(d);
	if (geteuid() != 0) {
		chmod(path, 0);
		CHECK(disk_open(path, false, false) == NULL);
	}
	close(fd);
	unlink(path);
}

TEST_MAIN()
