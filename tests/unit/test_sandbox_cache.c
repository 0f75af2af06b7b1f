/*
 * lkvm sandbox's snapshot cache (cmd/sandbox_cache.c) without a VM: the
 * folder made 0700 and refused when others may write to it; an entry found,
 * a stale one (lkvm's bytes changed) and a corrupt one (a flipped byte of its
 * state) removed with the reason; another user's entry or one others may
 * write to refused and left alone; an entry committed whole by its rename.
 */
#include <fcntl.h>
#include <sys/stat.h>
#include "../ro_sandbox.h"
#include "sandbox_cache.h"
#include "snapshot.h"
#include "test.h"
#include "util.h"

__attribute__((constructor)) static void confine(void)
{
	if (ro_sandbox(NULL, 0, "/etc/.lkvm-test-sandbox-cache-probe") == 0)
		return;
	if (geteuid() == 0) {
		fprintf(stderr, "test_sandbox_cache: refusing to run as root without a read-only sandbox\n");
		exit(1);
	}
}

static char dir[64], kernel[128], self[128];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/lkvm-test-cache-XXXXXX");
	CHECK(mkdtemp(dir) != NULL);
	snprintf(kernel, sizeof(kernel), "%s/bzImage", dir);
	snprintf(self, sizeof(self), "%s/lkvm", dir);
	int fd = open(kernel, O_WRONLY | O_CREAT, 0644);
	CHECK_EQ(write(fd, "kernel", 6), 6);
	close(fd);
	fd = open(self, O_WRONLY | O_CREAT, 0755);
	CHECK_EQ(write(fd, "lkvm-1", 6), 6);
	close(fd);
}

/* A real (empty) state file and a memory file into the folder p, as lkvm snapshot makes them. */
static void fill(const char *p)
{
	char f[512];
	mkdir(p, 0700);
	snprintf(f, sizeof(f), "%s/state", p);
	int fd = open(f, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	struct snap_writer *w = snap_writer_new(fd, f);
	snap_begin(w, "lkvm", 1);
	snap_str(w, "test");
	CHECK_EQ(snap_end(w), 0);
	CHECK_EQ(snap_writer_close(w), 0);
	close(fd);
	snprintf(f, sizeof(f), "%s/memory", p);
	fd = open(f, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK_EQ(ftruncate(fd, 1 << 20), 0);
	close(fd);
}

static int lookup(struct sandbox_cache *c, char *why)
{
	return sandbox_cache_lookup(c, why, 512);
}

TEST(folder_and_entries)
{
	setup();
	char cdir[128], why[512], f[PATH_MAX + 64];
	snprintf(cdir, sizeof(cdir), "%s/cache/sub", dir);
	struct sandbox_cache c;
	CHECK_EQ(sandbox_cache_open(&c, cdir, "run -m 512\n", kernel, NULL, self), 0);
	struct stat st;
	CHECK(stat(cdir, &st) == 0 && (st.st_mode & 0777) == 0700);
	CHECK_EQ(lookup(&c, why), 0);
	CHECK_EQ(why[0], 0);
	/* Another key for other options; the same for the same. */
	struct sandbox_cache c2;
	CHECK_EQ(sandbox_cache_open(&c2, cdir, "run -m 384\n", kernel, NULL, self), 0);
	CHECK(strcmp(c.entry, c2.entry) != 0);
	CHECK_EQ(sandbox_cache_open(&c2, cdir, "run -m 512\n", kernel, NULL, self), 0);
	CHECK(!strcmp(c.entry, c2.entry));

	/* Committed whole: tmp renamed, ident written; then found. */
	fill(c.tmp);
	CHECK_EQ(sandbox_cache_commit(&c), 0);
	CHECK(access(c.tmp, F_OK) < 0);
	CHECK_EQ(lookup(&c, why), 1);

	/* Others may write to a file of it, or another user owns one: refused, left alone. */
	snprintf(f, sizeof(f), "%s/state", c.entry);
	chmod(f, 0666);
	CHECK_EQ(lookup(&c, why), -1);
	CHECK(strstr(err_msg(), "state: writable by others (mode 666") != NULL);
	chmod(f, 0600);
	if (geteuid() == 0) {
		snprintf(f, sizeof(f), "%s/memory", c.entry);
		CHECK_EQ(chown(f, 65534, 65534), 0);
		CHECK_EQ(lookup(&c, why), -1);
		CHECK(strstr(err_msg(), "memory: owned by uid 65534, not by you") != NULL);
		CHECK_EQ(chown(f, 0, 0), 0);
	}
	CHECK_EQ(lookup(&c, why), 1);

	/* A flipped byte of the state: removed, with the reason. */
	snprintf(f, sizeof(f), "%s/state", c.entry);
	int fd = open(f, O_RDWR);
	uint8_t b;
	CHECK_EQ(pread(fd, &b, 1, 20), 1);
	b ^= 0x40;
	CHECK_EQ(pwrite(fd, &b, 1, 20), 1);
	close(fd);
	CHECK_EQ(lookup(&c, why), 0);
	CHECK(strstr(why, "checksum") != NULL);
	CHECK(access(c.entry, F_OK) < 0);

	/* Stale: lkvm's bytes changed (same size). */
	fill(c.tmp);
	CHECK_EQ(sandbox_cache_commit(&c), 0);
	fd = open(self, O_WRONLY);
	CHECK_EQ(write(fd, "lkvm-2", 6), 6);
	close(fd);
	CHECK_EQ(sandbox_cache_open(&c, cdir, "run -m 512\n", kernel, NULL, self), 0);
	CHECK_EQ(lookup(&c, why), 0);
	CHECK(strstr(why, "is stale") != NULL);
	CHECK(access(c.entry, F_OK) < 0);

	/* A folder others may write to, or another user's: refused. */
	chmod(cdir, 0777);
	CHECK_EQ(sandbox_cache_open(&c, cdir, "x", kernel, NULL, self), -1);
	CHECK(strstr(err_msg(), "writable by others (mode 777") != NULL);
	chmod(cdir, 0700);
	if (geteuid() == 0) {
		CHECK_EQ(chown(cdir, 65534, 65534), 0);
		CHECK_EQ(sandbox_cache_open(&c, cdir, "x", kernel, NULL, self), -1);
		CHECK(strstr(err_msg(), "owned by uid 65534") != NULL);
	}
	sandbox_cache_remove(dir);
	CHECK(access(dir, F_OK) < 0);
}

TEST_MAIN()
