/*
 * The sandbox's snapshot cache (include/sandbox_cache.h): where entries are,
 * their key, and whether one may be used. Another local user must never be
 * able to plant a VM we restore: the folder and every entry must be ours and
 * writable by nobody else, or they are refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include "sandbox_cache.h"
#include "snapshot.h"
#include "util.h"

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ ((const uint8_t *)p)[i]) * 0x100000001b3ULL;
	return h;
}

/* mkdir -p, the last one 0700. */
static int make_dirs(const char *path)
{
	char buf[PATH_MAX];
	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; *p; p++)
		if (*p == '/') {
			*p = 0;
			if (mkdir(buf, 0700) < 0 && errno != EEXIST)
				return err_errno("--snapshot-cache %s", buf);
			*p = '/';
		}
	if (mkdir(buf, 0700) < 0 && errno != EEXIST)
		return err_errno("--snapshot-cache %s", buf);
	return 0;
}

/* Ours, not a symlink, of the type wanted, writable by nobody else: 0, or -1 with err naming what. */
static int ours(const char *path, mode_t type, const char *what)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return err_errno("%s %s", what, path);
	if ((st.st_mode & S_IFMT) != type)
		return err_set("%s %s: not a %s (refused)", what, path, type == S_IFDIR ? "folder" : "regular file");
	if (st.st_uid != geteuid())
		return err_set("%s %s: owned by uid %u, not by you (refused: another user could plant a VM there)", what,
			       path, (unsigned)st.st_uid);
	if (st.st_mode & 022)
		return err_set("%s %s: writable by others (mode %03o; refused: another user could plant a VM there)", what,
			       path, (unsigned)(st.st_mode & 0777));
	return 0;
}

/* lkvm's own bytes: CRC32 and size (another build, even at the same path and mtime, is another VM). */
static int self_id(const char *self, char *out, size_t len)
{
	int fd = open(self, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		if (fd >= 0)
			close(fd);
		return err_errno("%s", self);
	}
	uLong crc = crc32(0, NULL, 0);
	void *m = st.st_size ? mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
	close(fd);
	if (m == MAP_FAILED)
		return err_errno("%s", self);
	for (off_t off = 0; off < st.st_size; off += 1 << 30)
		crc = crc32(crc, (const Bytef *)m + off, MIN(st.st_size - off, (off_t)1 << 30));
	munmap(m, st.st_size);
	snprintf(out, len, "lkvm %s crc %08lx size %lld\n", self, (unsigned long)crc, (long long)st.st_size);
	return 0;
}

static int file_id(const char *what, const char *path, char *out, size_t len)
{
	struct stat st;
	char real[PATH_MAX];
	if (!realpath(path, real) || stat(real, &st) < 0)
		return err_errno("%s %s", what, path);
	snprintf(out, len, "%s %s size %lld mtime %lld.%09ld ino %llu\n", what, real, (long long)st.st_size,
		 (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec, (unsigned long long)st.st_ino);
	return 0;
}

int sandbox_cache_open(struct sandbox_cache *c, const char *dir, const char *desc, const char *kernel,
		       const char *initrd, const char *self)
{
	memset(c, 0, sizeof(*c));
	if (dir && *dir) {
		if ((size_t)snprintf(c->dir, sizeof(c->dir), "%s", dir) >= sizeof(c->dir) - 64)
			return err_set("--snapshot-cache %s: path too long", dir);
	} else {
		const char *x = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
		if (x && *x == '/')
			snprintf(c->dir, sizeof(c->dir) - 64, "%s/lkvm/sandbox", x);
		else if (home && *home == '/')
			snprintf(c->dir, sizeof(c->dir) - 64, "%s/.cache/lkvm/sandbox", home);
		else
			return err_set("--snapshot-cache: neither XDG_CACHE_HOME nor HOME is set: give --snapshot-cache=DIR");
	}
	if (make_dirs(c->dir) < 0 || ours(c->dir, S_IFDIR, "--snapshot-cache folder") < 0)
		return -1;
	char k[PATH_MAX + 128], i[PATH_MAX + 128], s[PATH_MAX + 128] = "";
	if (file_id("kernel", kernel, k, sizeof(k)) < 0 || self_id(self, s, sizeof(s)) < 0)
		return -1;
	if (initrd && file_id("initrd", initrd, i, sizeof(i)) < 0)
		return -1;
	snprintf(c->ident, sizeof(c->ident), "%s%s%s", k, initrd ? i : "", s);
	/* The key: the options and the files' paths; their identities are checked against ident. */
	uint64_t h = fnv(0xcbf29ce484222325ULL, desc, strlen(desc) + 1);
	h = fnv(h, kernel, strlen(kernel) + 1);
	if (initrd)
		h = fnv(h, initrd, strlen(initrd) + 1);
	h = fnv(h, self, strlen(self) + 1);
	snprintf(c->entry, sizeof(c->entry), "%s/%016llx", c->dir, (unsigned long long)h);
	snprintf(c->tmp, sizeof(c->tmp), "%s/.tmp-%016llx-%d", c->dir, (unsigned long long)h, (int)getpid());
	return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return flag == FTW_DP ? rmdir(path) : unlink(path), 0;
}

void sandbox_cache_remove(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int sandbox_cache_lookup(struct sandbox_cache *c, char *why, size_t len)
{
	char p[PATH_MAX + 64], ident[sizeof(c->ident)];
	struct stat st;
	*why = 0;
	if (lstat(c->entry, &st) < 0 && errno == ENOENT)
		return 0;
	if (ours(c->entry, S_IFDIR, "snapshot cache entry") < 0)
		return -1;
	static const char *const files[] = { "ident", "state", "memory" };
	for (int i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/%s", c->entry, files[i]);
		if (lstat(p, &st) < 0 && errno == ENOENT) {
			snprintf(why, len, "snapshot cache entry %s: no %s (corrupt)", c->entry, files[i]);
			goto drop;
		}
		if (ours(p, S_IFREG, "snapshot cache file") < 0)
			return -1;
	}
	snprintf(p, sizeof(p), "%s/ident", c->entry);
	int fd = open(p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, ident, sizeof(ident) - 1) : -1;
	if (fd >= 0)
		close(fd);
	ident[n > 0 ? n : 0] = 0;
	if (strcmp(ident, c->ident)) {
		snprintf(why, len, "snapshot cache entry %s is stale (the kernel, initrd or lkvm changed)", c->entry);
		goto drop;
	}
	snprintf(p, sizeof(p), "%s/state", c->entry);
	struct snap_reader *r = snap_reader_open(p);	/* every record's checksum */
	if (!r) {
		snprintf(why, len, "%s", err_msg());
		goto drop;
	}
	snap_reader_free(r);
	return 1;
drop:
	sandbox_cache_remove(c->entry);
	return 0;
}

int sandbox_cache_commit(struct sandbox_cache *c)
{
	char p[PATH_MAX + 96];
	snprintf(p, sizeof(p), "%s/ident", c->tmp);
	int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	size_t n = strlen(c->ident);
	if (fd < 0 || write(fd, c->ident, n) != (ssize_t)n || fsync(fd) < 0) {
		err_errno("%s", p);
		if (fd >= 0)
			close(fd);
		sandbox_cache_remove(c->tmp);
		return -1;
	}
	close(fd);
	if (rename(c->tmp, c->entry) < 0) {	/* another run made it first: theirs stays */
		int e = errno;
		sandbox_cache_remove(c->tmp);
		errno = e;
		return err_errno("snapshot cache entry %s", c->entry);
	}
	return 0;
}
