/*
 * lkvm sandbox's scratch folder (include/scratch.h), made so that no other
 * host user can touch it, as root or not:
 *  - $TMPDIR (else /tmp) is used only when it and every folder above it
 *    belong to us or to root and are writable by nobody else but with the
 *    sticky bit (as /tmp is): nobody can rename our folder away;
 *  - in it a folder of ours, mode 0700, made by mkdirat under a random name
 *    and opened without following symlinks;
 *  - inside that the guest's /tmp: the job file is written into it with
 *    O_CREAT|O_EXCL|O_NOFOLLOW (a name already there is an error, never
 *    followed), and only then is it opened (01777) for the guest's users; a
 *    host user still cannot reach it through our 0700 folder, so neither a
 *    planted file nor what the guest leaves (a setuid binary) is theirs;
 *  - removal goes through directory descriptors only (openat, unlinkat,
 *    O_NOFOLLOW, never into another file system), climbing back through ".."
 *    checked against the inode it came down from: a name swapped for a
 *    symlink is unlinked as a symlink, never followed, at any depth.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
#include "scratch.h"
#include "util.h"

#define GUEST_TMP "tmp"

void (*scratch_hook)(const char *moment, const char *what);

static void hook(const char *moment, const char *what)
{
	if (scratch_hook)
		scratch_hook(moment, what);
}

/* path (without symlinks) and every folder above it: ours or root's, and open to others only if sticky. */
static int safe_dir(const char *real, const char *given)
{
	char p[PATH_MAX];
	size_t len = strlen(real);
	for (size_t end = 1; end <= len; end++) {
		if (end < len && real[end] != '/')
			continue;
		memcpy(p, real, end);
		p[end] = 0;
		struct stat st;
		if (lstat(p, &st))
			return err_errno("TMPDIR %s: %s", given, p);
		if (!S_ISDIR(st.st_mode))
			return err_set("TMPDIR %s: %s is not a directory", given, p);
		if (st.st_uid != 0 && st.st_uid != geteuid())
			return err_set("TMPDIR %s: %s belongs to uid %u, not to you or root: another user could "
				       "move the scratch folder", given, p, (unsigned)st.st_uid);
		if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX))
			return err_set("TMPDIR %s: %s is writable by others without the sticky bit", given, p);
	}
	return 0;
}

static int close_parent(struct scratch *sc)
{
	close(sc->parent);
	sc->parent = -1;
	return -1;
}

static int write_all(int fd, const void *buf, size_t len)
{
	for (size_t done = 0; done < len;) {
		ssize_t n = write(fd, (const char *)buf + done, len - done);
		if (n < 0 && errno != EINTR)
			return -1;
		done += n > 0 ? (size_t)n : 0;
	}
	return 0;
}

int scratch_create(struct scratch *sc, const void *job, size_t len)
{
	const char *tmp = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char real[PATH_MAX];
	int top = -1, gtmp = -1, jf = -1;
	memset(sc, 0, sizeof(*sc));
	sc->parent = -1;
	if (!realpath(tmp, real))
		return err_errno("TMPDIR %s", tmp);
	if (safe_dir(real, tmp) < 0)
		return -1;
	sc->parent = open(real, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (sc->parent < 0)
		return err_errno("TMPDIR %s", tmp);
	for (int tries = 0;; tries++) {
		uint8_t r[6];
		if (getrandom(r, sizeof(r), 0) != sizeof(r) || tries == 100) {
			err_set("%s: cannot make a scratch folder there", real);
			return close_parent(sc);
		}
		snprintf(sc->name, sizeof(sc->name), "lkvm-sandbox-%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3],
			 r[4], r[5]);
		if (!mkdirat(sc->parent, sc->name, 0700))
			break;
		if (errno != EEXIST) {
			err_errno("%s/%s", real, sc->name);
			return close_parent(sc);
		}
	}
	snprintf(sc->path, sizeof(sc->path), "%s/%s", real, sc->name);
	snprintf(sc->share, sizeof(sc->share), "%s/" GUEST_TMP, sc->path);
	struct stat st;
	top = openat(sc->parent, sc->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (top < 0 || fstat(top, &st) || st.st_uid != geteuid() || (st.st_mode & 077)) {
		err_set("%s: not the folder just made", sc->path);
		goto fail;
	}
	if (mkdirat(top, GUEST_TMP, 0700) ||
	    (gtmp = openat(top, GUEST_TMP, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
		err_errno("%s", sc->share);
		goto fail;
	}
	hook("made", sc->path);
	jf = openat(gtmp, SCRATCH_JOB, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (jf < 0 || write_all(jf, job, len) < 0) {
		err_errno("%s/" SCRATCH_JOB, sc->share);
		goto fail;
	}
	close(jf);
	jf = -1;
	hook("job-written", sc->share);
	if (fchmod(gtmp, 01777)) {	/* the guest's /tmp; host users cannot get past our 0700 */
		err_errno("%s", sc->share);
		goto fail;
	}
	close(gtmp);
	close(top);
	return 0;
fail:
	if (jf >= 0)
		close(jf);
	if (gtmp >= 0)
		close(gtmp);
	if (top >= 0)
		close(top);
	char msg[512];
	snprintf(msg, sizeof(msg), "%s", err_msg());
	scratch_remove(sc);
	return err_set("%s", msg);
}

/* ---- removal ---- */

struct level {
	dev_t dev;
	ino_t ino;
	char *name;	/* in the level above */
};

struct skip {		/* what could not be removed: not visited again */
	ino_t *ino;
	size_t n, cap;
};

static bool skipped(const struct skip *sk, ino_t ino)
{
	for (size_t i = 0; i < sk->n; i++)
		if (sk->ino[i] == ino)
			return true;
	return false;
}

static void add_skip(struct skip *sk, ino_t ino)
{
	if (sk->n == sk->cap) {
		sk->cap = sk->cap ? 2 * sk->cap : 16;
		sk->ino = realloc(sk->ino, sk->cap * sizeof(*sk->ino));
		if (!sk->ino)
			abort();
	}
	sk->ino[sk->n++] = ino;
}

/*
 * One pass over directory fd: every entry that is not a directory is
 * unlinked; the first directory not skipped is returned (its name in
 * child, opened in *childfd), else *childfd is -1.
 */
static int pass(int fd, dev_t dev, struct skip *sk, char *child, int *childfd)
{
	char buf[16384] __attribute__((aligned(8)));
	*childfd = -1;
	if (lseek(fd, 0, SEEK_SET) < 0)
		return -1;
	for (;;) {
		ssize_t n = getdents64(fd, buf, sizeof(buf));
		if (n <= 0)
			return n < 0 ? -1 : 0;
		for (ssize_t off = 0; off < n; off += ((struct dirent64 *)(buf + off))->d_reclen) {
			struct dirent64 *d = (struct dirent64 *)(buf + off);
			if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, "..") || skipped(sk, d->d_ino))
				continue;
			unsigned char type = d->d_type;
			struct stat st;
			if (type == DT_UNKNOWN)
				type = fstatat(fd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) ? DT_UNKNOWN :
				       S_ISDIR(st.st_mode) ? DT_DIR : DT_REG;
			if (type != DT_DIR) {
				hook("remove", d->d_name);
				if (unlinkat(fd, d->d_name, 0) == 0 || errno == ENOENT)
					continue;
				if (errno != EISDIR) {
					add_skip(sk, d->d_ino);
					continue;
				}
			}
			if (*childfd >= 0)
				continue;	/* one folder at a time; the next pass finds the others */
			int c = openat(fd, d->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (c < 0 && errno == EACCES && !fchmodat(fd, d->d_name, 0700, AT_SYMLINK_NOFOLLOW))
				c = openat(fd, d->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (c < 0 && (errno == ENOTDIR || errno == ELOOP)) {	/* swapped meanwhile */
				hook("remove", d->d_name);
				if (!unlinkat(fd, d->d_name, 0))
					continue;
			}
			if (c < 0 && errno == ENOENT)
				continue;	/* gone */
			if (c < 0 || fstat(c, &st) || st.st_dev != dev) {	/* another file system: stays */
				if (c >= 0)
					close(c);
				add_skip(sk, d->d_ino);
				continue;
			}
			fchmod(c, 0700);	/* ours to empty */
			snprintf(child, NAME_MAX + 1, "%s", d->d_name);
			*childfd = c;
		}
	}
}

/* Remove parent/name and everything below it; 0, or -1 if something had to stay. */
static int remove_tree_at(int parent, const char *name)
{
	struct stat st, pst;
	int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	if (fstat(fd, &st) || fstat(parent, &pst) || st.st_dev != pst.st_dev) {
		close(fd);
		return -1;
	}
	dev_t dev = st.st_dev;
	struct level *lv = xcalloc(1, sizeof(*lv));
	size_t depth = 0, cap = 1;
	lv[0] = (struct level){ st.st_dev, st.st_ino, xstrdup(name) };
	struct skip sk = { 0 };
	char child[NAME_MAX + 1];
	int ok = 0;
	for (;;) {
		int c;
		if (pass(fd, dev, &sk, child, &c) < 0) {
			ok = -1;
			break;
		}
		if (c >= 0) {	/* down */
			if (fstat(c, &st)) {
				close(c);
				ok = -1;
				break;
			}
			if (++depth == cap) {
				cap *= 2;
				lv = realloc(lv, cap * sizeof(*lv));
				if (!lv)
					abort();
			}
			lv[depth] = (struct level){ st.st_dev, st.st_ino, xstrdup(child) };
			close(fd);
			fd = c;
			continue;
		}
		/* empty (but for what had to stay): up, and remove it if its name still is it */
		int up = depth ? openat(fd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC) : dup(parent);
		if (up < 0 || fstat(up, &pst) ||
		    (depth && (pst.st_dev != lv[depth - 1].dev || pst.st_ino != lv[depth - 1].ino))) {
			if (up >= 0)
				close(up);
			ok = -1;	/* moved from under us: stop here */
			break;
		}
		close(fd);
		fd = up;
		if (!fstatat(up, lv[depth].name, &st, AT_SYMLINK_NOFOLLOW) && st.st_dev == lv[depth].dev &&
		    st.st_ino == lv[depth].ino && unlinkat(up, lv[depth].name, AT_REMOVEDIR) && errno != ENOENT)
			add_skip(&sk, lv[depth].ino);
		free(lv[depth].name);
		if (depth == 0)
			break;
		depth--;	/* a folder renamed meanwhile is met again by its new name */
	}
	close(fd);
	for (size_t i = 0; ok < 0 && i <= depth; i++)
		free(lv[i].name);
	free(lv);
	if (!ok && (sk.n || !fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW)))
		ok = -1;
	free(sk.ino);
	return ok;
}

int scratch_remove(struct scratch *sc)
{
	if (sc->parent < 0)
		return 0;
	int r = remove_tree_at(sc->parent, sc->name);
	close(sc->parent);
	sc->parent = -1;
	return r < 0 ? err_set("%s: could not be removed entirely", sc->path) : 0;
}
