/*
 * 9P2000.L server over one host directory.
 *
 * Confinement: every fid holds an O_PATH descriptor of its object, never a
 * path re-resolved later. A walk resolves one name at a time with openat2()
 * (RESOLVE_BENEATH, O_NOFOLLOW), names with '/' or "." are refused, and ".."
 * is answered by the server: the root's parent is the root, anything else's
 * parent is checked to lie under the root. Symlinks are never followed on the
 * host; the guest reads them and walks their targets itself. Files are opened
 * for I/O by name from the directory they were found in (RESOLVE_NO_SYMLINKS),
 * and the result must be the very inode the fid holds.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>
#include "p9.h"
#include "snapshot.h"
#include "util.h"

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452	/* Linux 6.6; older kernel headers lack it */
#endif

#define FID_BUCKETS 256
#define MAX_FIDS 16384		/* each holds up to three descriptors */
#define XATTR_MAX 65536		/* XATTR_SIZE_MAX: value and list sizes */
#define MAX_ANCESTRY 4096	/* ".." checks give up past this depth */

enum fid_kind { FID_FILE, FID_XATTR_READ, FID_XATTR_WRITE };

struct fid {
	uint32_t id;
	struct fid *next;	/* hash chain */
	enum fid_kind kind;
	int fd;			/* O_PATH: the object itself */
	int parent;		/* O_PATH: the directory it was found in; -1 when unknown */
	char *name;		/* its name there */
	uint32_t uid;		/* n_uname of the attach it descends from */
	int open_fd;		/* after Tlopen/Tlcreate, else -1 */
	int open_flags;
	/* xattr fids: the value or list read, or the value being written */
	uint8_t *xbuf;
	size_t xlen;		/* bytes in xbuf (read) / declared size (write) */
	size_t xfilled;		/* write: highest byte written */
	char *xname;
	int xflags;
	bool gone;		/* restored, but its file was not found again: everything answers ESTALE */
};

struct p9_server {
	int root;		/* O_PATH of the shared directory */
	dev_t root_dev;
	ino_t root_ino;
	bool ro;
	mode_t umask;		/* lkvm's, undone on what the guest creates */
	bool as_root;		/* new objects get the guest user's ids (read once: seccomp) */
	uint32_t msize;		/* 0 until a Tversion succeeded */
	int nfids;
	struct fid *fids[FID_BUCKETS];
};

/*
 * One lock for every server: requests run one at a time, so no guest request
 * races another between a check of a name and its use, even across two
 * shares of overlapping directories.
 */
static pthread_mutex_t p9_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- message reading and writing ---- */

struct rd {
	const uint8_t *p;
	size_t len, off;
	char *scratch;		/* NUL-terminated copies of the strings */
	size_t scap, soff;
	bool bad;		/* ran past the end */
	bool nul;		/* a string held a NUL byte */
};

static const uint8_t *take(struct rd *r, size_t n)
{
	if (r->bad || n > r->len - r->off) {
		r->bad = true;
		return NULL;
	}
	const uint8_t *q = r->p + r->off;
	r->off += n;
	return q;
}

static uint8_t r8(struct rd *r) { const uint8_t *q = take(r, 1); return q ? q[0] : 0; }
static uint16_t r16(struct rd *r) { const uint8_t *q = take(r, 2); return q ? get_le16(q) : 0; }
static uint32_t r32(struct rd *r) { const uint8_t *q = take(r, 4); return q ? get_le32(q) : 0; }
static uint64_t r64(struct rd *r) { const uint8_t *q = take(r, 8); return q ? get_le64(q) : 0; }

static const char *rstr(struct rd *r)
{
	uint16_t n = r16(r);
	const uint8_t *q = take(r, n);
	if (!q || (size_t)n + 1 > r->scap - r->soff) {
		r->bad = true;
		return "";
	}
	char *s = r->scratch + r->soff;
	memcpy(s, q, n);
	s[n] = 0;
	r->soff += n + 1;
	if (memchr(q, 0, n))
		r->nul = true;
	return s;
}

/* After a handler read its fields: the message was whole and its strings clean. */
static int parsed(const struct rd *r)
{
	return r->bad ? EPROTO : r->nul ? EINVAL : 0;
}

struct wr {
	uint8_t *p;
	size_t cap, off;
	bool over;
};

static uint8_t *put(struct wr *w, size_t n)
{
	if (w->over || n > w->cap - w->off) {
		w->over = true;
		return NULL;
	}
	uint8_t *q = w->p + w->off;
	w->off += n;
	return q;
}

static void w8(struct wr *w, uint8_t v) { uint8_t *q = put(w, 1); if (q) *q = v; }
static void w16(struct wr *w, uint16_t v) { uint8_t *q = put(w, 2); if (q) put_le16(q, v); }
static void w32(struct wr *w, uint32_t v) { uint8_t *q = put(w, 4); if (q) put_le32(q, v); }
static void w64(struct wr *w, uint64_t v) { uint8_t *q = put(w, 8); if (q) put_le64(q, v); }

static void wstr(struct wr *w, const char *s, size_t n)
{
	if (n > UINT16_MAX) {
		w->over = true;
		return;
	}
	w16(w, n);
	uint8_t *q = put(w, n);
	if (q)
		memcpy(q, s, n);
}

/* ---- host objects ---- */

static bool same_inode(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

static bool is_root(const struct p9_server *s, const struct stat *st)
{
	return st->st_dev == s->root_dev && st->st_ino == s->root_ino;
}

/*
 * openat2 for one component. Callers have already refused '/' and give ".."
 * only on purpose, so where openat2 is missing (Linux < 5.6, valgrind < 3.21)
 * openat with O_NOFOLLOW resolves exactly the same single step.
 */
static int openat2_fd(int dirfd, const char *name, uint64_t flags, uint64_t mode, uint64_t resolve)
{
	struct open_how how = { .flags = flags | O_CLOEXEC, .mode = mode, .resolve = resolve };
	int fd = syscall(SYS_openat2, dirfd, name, &how, sizeof(how));
	if (fd >= 0 || errno != ENOSYS)
		return fd;
	if (strchr(name, '/')) {
		errno = EXDEV;
		return -1;
	}
	return openat(dirfd, name, (int)flags | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
}

static int dup_fd(int fd)
{
	return fcntl(fd, F_DUPFD_CLOEXEC, 0);
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* qid.path: the inode number, told apart from other file systems under the root. */
static uint64_t qid_path(const struct p9_server *s, dev_t dev, ino_t ino)
{
	return dev == s->root_dev ? (uint64_t)ino : (uint64_t)ino ^ ((uint64_t)dev << 40);
}

static uint8_t qid_type(mode_t mode)
{
	return S_ISDIR(mode) ? P9_QTDIR : S_ISLNK(mode) ? P9_QTSYMLINK : P9_QTFILE;
}

static void wqid(struct wr *w, const struct p9_server *s, const struct stat *st)
{
	w8(w, qid_type(st->st_mode));
	w32(w, (uint32_t)(st->st_mtim.tv_sec ^ st->st_mtim.tv_nsec));	/* changes when the file does */
	w64(w, qid_path(s, st->st_dev, st->st_ino));
}

/* A name the guest may create or look up: one component, not "." or "..". */
static int name_ok(const char *name)
{
	if (!*name || !strcmp(name, ".") || !strcmp(name, "..") || strchr(name, '/'))
		return EINVAL;
	return strlen(name) > NAME_MAX ? ENAMETOOLONG : 0;
}

/* One name under dirfd, as an O_PATH descriptor of whatever it is (symlinks too). */
static int lookup(int dirfd, const char *name, int *out)
{
	*out = openat2_fd(dirfd, name, O_PATH | O_NOFOLLOW, 0, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS);
	return *out < 0 ? errno : 0;
}

static int parent_of(int fd)
{
	return openat2_fd(fd, "..", O_PATH | O_DIRECTORY, 0, RESOLVE_NO_SYMLINKS);
}

/* Is fd the root or below it? Climbs ".." until the root or the host's "/". */
static bool under_root(const struct p9_server *s, int fd)
{
	int cur = dup_fd(fd);
	bool found = false;
	for (int depth = 0; cur >= 0 && depth < MAX_ANCESTRY; depth++) {
		struct stat st, up_st;
		if (fstat(cur, &st))
			break;
		if (is_root(s, &st)) {
			found = true;
			break;
		}
		int up = parent_of(cur);
		if (up < 0 || fstat(up, &up_st) || same_inode(&st, &up_st)) {
			if (up >= 0)
				close(up);
			break;	/* reached "/" without meeting the root */
		}
		close(cur);
		cur = up;
	}
	close_fd(&cur);
	return found;
}

/* The parent of directory dirfd, never above the root. */
static int walk_dotdot(const struct p9_server *s, int dirfd, int *out)
{
	struct stat st;
	if (fstat(dirfd, &st))
		return errno;
	if (!S_ISDIR(st.st_mode))
		return ENOTDIR;
	if (is_root(s, &st)) {
		*out = dup_fd(s->root);
		return *out < 0 ? errno : 0;
	}
	int up = parent_of(dirfd);
	if (up < 0)
		return errno;
	if (!under_root(s, up)) {	/* the directory was moved out of the share on the host */
		close(up);
		return EACCES;
	}
	*out = up;
	return 0;
}

/* Find the name under parent of the object self (after a rename we did not see). */
static char *find_name(int parent, const struct stat *self)
{
	int dfd = openat2_fd(parent, ".", O_RDONLY | O_DIRECTORY, 0, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
	if (dfd < 0)
		return NULL;
	char buf[4096] __attribute__((aligned(8)));
	char *found = NULL;
	ssize_t n;
	while (!found && (n = getdents64(dfd, buf, sizeof(buf))) > 0) {
		for (ssize_t off = 0; off < n && !found;) {
			struct dirent64 *d = (struct dirent64 *)(buf + off);
			struct stat st;
			off += d->d_reclen;
			if (d->d_ino != self->st_ino || !strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
				continue;
			if (!fstatat(parent, d->d_name, &st, AT_SYMLINK_NOFOLLOW) && same_inode(&st, self))
				found = xstrdup(d->d_name);
		}
	}
	close(dfd);
	return found;
}

/*
 * Make f->parent/f->name name f's object again (renames by other fids or on
 * the host move it). Directories find their parent through ".."; other
 * objects are looked for in the directory they were found in.
 */
static int fid_locate(const struct p9_server *s, struct fid *f)
{
	struct stat self, st;
	if (fstat(f->fd, &self))
		return errno;
	if (is_root(s, &self))
		return EBUSY;
	if (f->parent >= 0 && f->name && !fstatat(f->parent, f->name, &st, AT_SYMLINK_NOFOLLOW) &&
	    same_inode(&st, &self))
		return 0;
	int parent = -1;
	if (S_ISDIR(self.st_mode)) {
		int e = walk_dotdot(s, f->fd, &parent);
		if (e)
			return e;
	} else if (f->parent >= 0) {
		parent = dup_fd(f->parent);
		if (parent < 0)
			return errno;
	} else {
		return ESTALE;
	}
	char *name = find_name(parent, &self);
	if (!name) {
		close(parent);
		return ESTALE;
	}
	close_fd(&f->parent);
	free(f->name);
	f->parent = parent;
	f->name = name;
	return 0;
}

/*
 * A real descriptor (flags: access mode and status flags) for f's object:
 * directories reopen themselves through "."; regular files are opened by name
 * from their directory without following symlinks, and must turn out to be
 * the same inode. Nothing else is opened on the host (symlinks: ELOOP; device
 * nodes, fifos and sockets: EOPNOTSUPP).
 */
static int reopen(const struct p9_server *s, struct fid *f, int flags, int *out)
{
	struct stat self, st;
	if (fstat(f->fd, &self))
		return errno;
	if (S_ISDIR(self.st_mode)) {
		*out = openat2_fd(f->fd, ".", flags | O_DIRECTORY, 0, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
		return *out < 0 ? errno : 0;
	}
	if (S_ISLNK(self.st_mode))
		return ELOOP;
	if (!S_ISREG(self.st_mode))
		return EOPNOTSUPP;
	int e = fid_locate(s, f);
	if (e)
		return e;
	/* O_NONBLOCK: if the name became a fifo meanwhile, opening it must not hang. */
	int fd = openat2_fd(f->parent, f->name, flags | O_NOFOLLOW | O_NONBLOCK, 0,
			    RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
	if (fd < 0)
		return errno;
	if (fstat(fd, &st) || !same_inode(&st, &self)) {
		close(fd);
		return ESTALE;
	}
	*out = fd;
	return 0;
}

/*
 * chmod for kernels before 6.6 (no fchmodat2, and fchmod refuses O_PATH):
 * through a descriptor of dirfd/name, which must be the inode self.
 */
static int chmod_by_name(int dirfd, const char *name, const struct stat *self, mode_t mode)
{
	if (!S_ISREG(self->st_mode) && !S_ISDIR(self->st_mode) && !S_ISFIFO(self->st_mode))
		return EOPNOTSUPP;	/* opening a device node could have effects */
	const uint64_t resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS;
	int fd = openat2_fd(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK, 0, resolve);
	if (fd < 0 && errno == EACCES && S_ISREG(self->st_mode))
		fd = openat2_fd(dirfd, name, O_WRONLY | O_NOFOLLOW | O_NONBLOCK, 0, resolve);
	if (fd < 0)
		return errno;
	struct stat st;
	int e = fstat(fd, &st) ? errno : !same_inode(&st, self) ? ESTALE : fchmod(fd, mode) ? errno : 0;
	close(fd);
	return e;
}

static int fchmodat2_empty(int fd, mode_t mode)
{
	return syscall(SYS_fchmodat2, fd, "", mode, AT_EMPTY_PATH) ? errno : 0;
}

/* chmod without following symlinks (Linux cannot chmod a symlink itself). */
static int set_mode(const struct p9_server *s, struct fid *f, mode_t mode)
{
	struct stat st;
	if (fstat(f->fd, &st))
		return errno;
	if (S_ISLNK(st.st_mode))
		return EOPNOTSUPP;
	int e = fchmodat2_empty(f->fd, mode);
	if (e != ENOSYS)
		return e;
	if (S_ISDIR(st.st_mode))
		return chmod_by_name(f->fd, ".", &st, mode);
	if ((e = fid_locate(s, f)))
		return e;
	return chmod_by_name(f->parent, f->name, &st, mode);
}

/* ---- fids ---- */

static struct fid *fid_find(struct p9_server *s, uint32_t id)
{
	for (struct fid *f = s->fids[id % FID_BUCKETS]; f; f = f->next)
		if (f->id == id)
			return f;
	return NULL;
}

/* A fid usable for file operations (not one in the middle of an xattr transfer). */
static struct fid *fid_file(struct p9_server *s, uint32_t id, int *err)
{
	struct fid *f = fid_find(s, id);
	*err = f && f->gone ? ESTALE : f && f->kind == FID_FILE ? 0 : EBADF;
	return *err ? NULL : f;
}

/* A new fid taking over fd/parent/name; EBADF if id is taken. */
static int fid_add(struct p9_server *s, uint32_t id, uint32_t uid, int fd, int parent, const char *name)
{
	if (id == P9_NOFID || fid_find(s, id))
		return EBADF;
	if (s->nfids >= MAX_FIDS)
		return EMFILE;
	struct fid *f = xcalloc(1, sizeof(*f));
	f->id = id;
	f->uid = uid;
	f->fd = fd;
	f->parent = parent;
	f->name = name ? xstrdup(name) : NULL;
	f->open_fd = -1;
	f->next = s->fids[id % FID_BUCKETS];
	s->fids[id % FID_BUCKETS] = f;
	s->nfids++;
	return 0;
}

static void fid_free(struct p9_server *s, struct fid *f)
{
	for (struct fid **pp = &s->fids[f->id % FID_BUCKETS]; *pp; pp = &(*pp)->next) {
		if (*pp == f) {
			*pp = f->next;
			break;
		}
	}
	close_fd(&f->fd);
	close_fd(&f->parent);
	close_fd(&f->open_fd);
	free(f->name);
	free(f->xbuf);
	free(f->xname);
	free(f);
	s->nfids--;
}

static void fid_free_all(struct p9_server *s)
{
	for (int b = 0; b < FID_BUCKETS; b++)
		while (s->fids[b])
			fid_free(s, s->fids[b]);
}

/* After a rename, fids that named olddir/oldname name newdir/newname. */
static void fids_renamed(struct p9_server *s, const struct stat *olddir, const char *oldname,
			 int newdir, const char *newname)
{
	for (int b = 0; b < FID_BUCKETS; b++) {
		for (struct fid *f = s->fids[b]; f; f = f->next) {
			struct stat st;
			if (f->parent < 0 || !f->name || strcmp(f->name, oldname) || fstat(f->parent, &st) ||
			    !same_inode(&st, olddir))
				continue;
			int nd = dup_fd(newdir);
			if (nd < 0)
				continue;	/* fid_locate finds it later */
			close(f->parent);
			free(f->name);
			f->parent = nd;
			f->name = xstrdup(newname);
		}
	}
}

/* ---- new objects ---- */

/*
 * Finish an object the guest created under dir: exact mode (lkvm's umask
 * undone), owned by the guest user when lkvm runs as root (as on a local file
 * system), and its O_PATH descriptor in *out.
 */
static int created(const struct p9_server *s, const struct fid *dir, const char *name, mode_t mode,
		   uint32_t gid, int *out)
{
	int fd;
	int e = lookup(dir->fd, name, &fd);
	if (e)
		return e;
	struct stat st;
	if (fstat(fd, &st)) {
		e = errno;
		close(fd);
		return e;
	}
	if (!S_ISLNK(st.st_mode) && (mode & s->umask) && fchmodat2_empty(fd, mode) == ENOSYS &&
	    chmod_by_name(dir->fd, name, &st, mode)) {
		/* the umask stays applied: stricter, not wrong */
	}
	if (s->as_root) {
		uid_t uid = dir->uid == P9_NONUNAME ? (uid_t)-1 : dir->uid;
		if (fchownat(fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW)) {
			/* best effort, as the file exists either way */
		}
	}
	*out = fd;
	return 0;
}

/* Reply with the qid of a new object and drop its descriptor. */
static int reply_new(const struct p9_server *s, struct wr *w, int fd)
{
	struct stat st;
	int e = fstat(fd, &st) ? errno : 0;
	if (!e)
		wqid(w, s, &st);
	close(fd);
	return e;
}

/* Linux open flags from the client's P9_DOTL_* flags: only those we honour. */
static int open_flags(uint32_t f)
{
	int flags = (f & 3) == P9_DOTL_RDWR ? O_RDWR : (f & 3) == P9_DOTL_WRONLY ? O_WRONLY : O_RDONLY;
	if (f & P9_DOTL_APPEND)
		flags |= O_APPEND;
	if (f & P9_DOTL_DSYNC)
		flags |= O_DSYNC;
	if (f & P9_DOTL_SYNC)
		flags |= O_SYNC;
	if (f & P9_DOTL_DIRECTORY)
		flags |= O_DIRECTORY;
	return flags;
}

/* ---- messages ---- */

typedef int (*handler)(struct p9_server *s, struct rd *r, struct wr *w);

static int h_version(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t msize = r32(r);
	const char *version = rstr(r);
	int e = parsed(r);
	if (e)
		return e;
	fid_free_all(s);	/* a new session */
	s->msize = 0;
	if (msize < P9_MIN_MSIZE)
		return EINVAL;
	bool ours = !strncmp(version, "9P2000.L", 8) && (version[8] == 0 || version[8] == '.');
	if (ours)
		s->msize = MIN(msize, (uint32_t)P9_MAX_MSIZE);
	w32(w, ours ? s->msize : msize);
	const char *reply = ours ? "9P2000.L" : "unknown";
	wstr(w, reply, strlen(reply));
	return 0;
}

static int h_attach(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t fid = r32(r), afid = r32(r);
	rstr(r);	/* uname: n_uname says who */
	rstr(r);	/* aname: there is one tree */
	uint32_t uid = r32(r);
	int e = parsed(r);
	if (e)
		return e;
	if (afid != P9_NOFID)
		return EINVAL;	/* no authentication */
	struct stat st;
	if (fstat(s->root, &st))
		return errno;
	int fd = dup_fd(s->root);
	if (fd < 0)
		return errno;
	e = fid_add(s, fid, uid, fd, -1, NULL);
	if (e) {
		close(fd);
		return e;
	}
	wqid(w, s, &st);
	return 0;
}

static int h_walk(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t fid = r32(r), newfid = r32(r);
	uint16_t n = r16(r);
	if (n > P9_MAX_WALK)
		return EINVAL;
	const char *names[P9_MAX_WALK];
	for (int i = 0; i < n; i++)
		names[i] = rstr(r);
	int e = parsed(r);
	if (e)
		return e;
	struct fid *f = fid_file(s, fid, &e);
	if (!f)
		return e;
	if (newfid != fid && fid_find(s, newfid))
		return EBADF;
	if (newfid == fid && n && f->open_fd >= 0)
		return EBADF;	/* an open fid keeps its object */

	int cur = dup_fd(f->fd), parent = f->parent >= 0 ? dup_fd(f->parent) : -1;
	const char *name = f->name;
	if (cur < 0) {
		close_fd(&parent);
		return EMFILE;
	}
	size_t nwqid_at = w->off;
	w16(w, 0);
	int done = 0;
	for (; done < n; done++) {
		int next;
		bool up = !strcmp(names[done], "..");
		e = up ? walk_dotdot(s, cur, &next) : name_ok(names[done]);
		if (!e && !up)
			e = lookup(cur, names[done], &next);
		struct stat st;
		if (!e && fstat(next, &st)) {
			e = errno;
			close(next);
		}
		if (e)
			break;
		wqid(w, s, &st);
		close_fd(&parent);
		if (up) {	/* the parent of a ".." is found again when needed */
			close(cur);
			name = NULL;
		} else {
			parent = cur;
			name = names[done];
		}
		cur = next;
	}
	if (done == 0 && n > 0) {
		close(cur);
		close_fd(&parent);
		return e;
	}
	if (w->p && !w->over)
		put_le16(w->p + nwqid_at, done);
	if (done < n || w->over) {	/* partial walk: the qids so far, no newfid */
		close(cur);
		close_fd(&parent);
		return 0;
	}
	if (newfid == fid) {
		char *keep = name ? xstrdup(name) : NULL;
		close_fd(&f->fd);
		close_fd(&f->parent);
		free(f->name);
		f->fd = cur;
		f->parent = parent;
		f->name = keep;
		return 0;
	}
	e = fid_add(s, newfid, f->uid, cur, parent, name);
	if (e) {
		close(cur);
		close_fd(&parent);
	}
	return e;
}

static int h_lopen(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t fid = r32(r), flags = r32(r);
	int e = parsed(r);
	if (e)
		return e;
	struct fid *f = fid_file(s, fid, &e);
	if (!f)
		return e;
	if (f->open_fd >= 0)
		return EBADF;
	if ((flags & 3) == 3)
		return EINVAL;
	if (s->ro && ((flags & 3) != 0 || (flags & P9_DOTL_TRUNC)))
		return EROFS;
	int fd, oflags = open_flags(flags);
	e = reopen(s, f, oflags, &fd);
	if (e)
		return e;
	struct stat st;
	/* truncate only once the inode is known to be the fid's */
	if (((flags & P9_DOTL_TRUNC) && ftruncate(fd, 0)) || fstat(fd, &st)) {
		e = errno;
		close(fd);
		return e;
	}
	f->open_fd = fd;
	f->open_flags = oflags;
	wqid(w, s, &st);
	w32(w, 0);	/* iounit: the client's msize bound applies */
	return 0;
}

static int h_lcreate(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t fid = r32(r);
	const char *name = rstr(r);
	uint32_t flags = r32(r), mode = r32(r) & 07777, gid = r32(r);
	int e = parsed(r);
	if (e)
		return e;
	struct fid *f = fid_file(s, fid, &e);
	if (!f)
		return e;
	if (f->open_fd >= 0)
		return EBADF;
	if (s->ro)
		return EROFS;
	if ((e = name_ok(name)))
		return e;
	int oflags = open_flags(flags) & ~O_DIRECTORY;
	/* Try exclusive first, to know whether the file is new (and gets its mode). */
	int fd = openat2_fd(f->fd, name, oflags | O_CREAT | O_EXCL | O_NOFOLLOW, mode,
			    RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
	bool made = fd >= 0;
	if (fd < 0 && errno == EEXIST && !(flags & P9_DOTL_EXCL))
		fd = openat2_fd(f->fd, name, oflags | O_NOFOLLOW | O_NONBLOCK, 0,
				RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
	if (fd < 0)
		return errno;
	struct stat st;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		e = errno;
		if (!e || S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))
			e = EOPNOTSUPP;
		close(fd);
		return e;
	}
	if (made && (mode & s->umask) && fchmod(fd, mode)) {
		/* the umask stays applied: stricter, not wrong */
	}
	if ((flags & P9_DOTL_TRUNC) && !made && ftruncate(fd, 0)) {
		e = errno;
		close(fd);
		return e;
	}
	int path;
	e = made ? created(s, f, name, mode, gid, &path) : lookup(f->fd, name, &path);
	struct stat pst;
	if (!e && (fstat(path, &pst) || !same_inode(&pst, &st))) {
		e = ESTALE;
		close(path);
	}
	if (e) {
		close(fd);
		return e;
	}
	close_fd(&f->parent);
	free(f->name);
	f->parent = f->fd;	/* the fid now stands for the new file */
	f->name = xstrdup(name);
	f->fd = path;
	f->open_fd = fd;
	f->open_flags = oflags;
	fstat(fd, &st);
	wqid(w, s, &st);
	w32(w, 0);
	return 0;
}

static int h_read(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t fid = r32(r);
	uint64_t offset = r64(r);
	uint32_t count = r32(r);
	int e = parsed(r);
	if (e)
		return e;
	struct fid *f = fid_find(s, fid);
	if (!f || f->kind == FID_XATTR_WRITE)
		return EBADF;
	if (f->gone)
		return ESTALE;
	uint8_t *cnt = put(w, 4);
	if (!cnt)
		return EMSGSIZE;
	count = MIN((size_t)count, w->cap - w->off);
	uint8_t *data = w->p + w->off;
	size_t got;
	if (f->kind == FID_XATTR_READ) {
		got = offset < f->xlen ? MIN((uint64_t)count, f->xlen - offset) : 0;
		if (got)
			memcpy(data, f->xbuf + offset, got);
	} else {
		if (f->open_fd < 0)
			return EBADF;
		if (offset > INT64_MAX)
			return EINVAL;
		ssize_t n = pread(f->open_fd, data, count, (off_t)offset);
		if (n < 0)
			return errno;
		got = n;
	}
	put_le32(cnt, got);
	w->off += got;
	return 0;
}

static int h_write(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t fid = r32(r);
	uint64_t offset = r64(r);
	uint32_t count = r32(r);
	const uint8_t *data = take(r, count);
	int e = parsed(r);
	if (e)
		return e;
	struct fid *f = fid_find(s, fid);
	if (!f || f->kind == FID_XATTR_READ)
		return EBADF;
	if (f->gone)
		return ESTALE;
	if (f->kind == FID_XATTR_WRITE) {
		if (offset > f->xlen || count > f->xlen - offset)
			return EINVAL;	/* more than Txattrcreate declared */
		memcpy(f->xbuf + offset, data, count);
		f->xfilled = MAX(f->xfilled, offset + count);
		w32(w, count);
		return 0;
	}
	if (f->open_fd < 0)
		return EBADF;
	if (s->ro)
		return EROFS;
	if (offset > INT64_MAX)
		return EINVAL;
	ssize_t n = pwrite(f->open_fd, data, count, (off_t)offset);
	if (n < 0)
		return errno;
	w32(w, n);
	return 0;
}

static int h_readdir(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t fid = r32(r);
	uint64_t offset = r64(r);
	uint32_t count = r32(r);
	int e = parsed(r);
	if (e)
		return e;
	struct fid *f = fid_file(s, fid, &e);
	if (!f)
		return e;
	struct stat dir;
	if (f->open_fd < 0 || fstat(f->open_fd, &dir))
		return EBADF;
	if (!S_ISDIR(dir.st_mode))
		return ENOTDIR;
	if (offset > INT64_MAX)
		return EINVAL;
	/* Offsets are the kernel's own d_off cookies: valid across calls and renames. */
	if (lseek(f->open_fd, (off_t)offset, SEEK_SET) < 0)
		return errno;
	uint8_t *cnt = put(w, 4);
	if (!cnt)
		return EMSGSIZE;
	count = MIN((size_t)count, w->cap - w->off);
	size_t used = 0;
	char buf[8192] __attribute__((aligned(8)));
	bool full = false;
	while (!full) {
		ssize_t n = getdents64(f->open_fd, buf, sizeof(buf));
		if (n < 0 && used == 0)
			return errno;
		if (n <= 0)
			break;
		for (ssize_t off = 0; off < n; off += ((struct dirent64 *)(buf + off))->d_reclen) {
			struct dirent64 *d = (struct dirent64 *)(buf + off);
			size_t len = strlen(d->d_name), rec = 13 + 8 + 1 + 2 + len;
			if (used + rec > count) {	/* the rest comes with the next Treaddir */
				full = true;
				break;
			}
			struct wr ew = { .p = w->p + w->off + used, .cap = rec };
			w8(&ew, d->d_type == DT_DIR ? P9_QTDIR : d->d_type == DT_LNK ? P9_QTSYMLINK : P9_QTFILE);
			w32(&ew, 0);
			w64(&ew, qid_path(s, dir.st_dev, d->d_ino));
			w64(&ew, d->d_off);
			w8(&ew, d->d_type);
			wstr(&ew, d->d_name, len);
			used += rec;
		}
	}
	if (full && used == 0)
		return EINVAL;	/* count cannot hold the next entry: not the end */
	put_le32(cnt, used);
	w->off += used;
	return 0;
}

static int h_getattr(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t fid = r32(r);
	r64(r);		/* request_mask: the basic set is always there */
	int e = parsed(r);
	if (e)
		return e;
	struct fid *f = fid_find(s, fid);
	if (!f)
		return EBADF;
	if (f->gone)
		return ESTALE;
	struct stat st;
	if (fstat(f->fd, &st))
		return errno;
	w64(w, P9_GETATTR_BASIC);
	wqid(w, s, &st);
	w32(w, st.st_mode);
	w32(w, st.st_uid);
	w32(w, st.st_gid);
	w64(w, st.st_nlink);
	w64(w, st.st_rdev);
	w64(w, st.st_size);
	w64(w, st.st_blksize);
	w64(w, st.st_blocks);
	w64(w, st.st_atim.tv_sec);
	w64(w, st.st_atim.tv_nsec);
	w64(w, st.st_mtim.tv_sec);
	w64(w, st.st_mtim.tv_nsec);
	w64(w, st.st_ctim.tv_sec);
	w64(w, st.st_ctim.tv_nsec);
	for (int i = 0; i < 4; i++)
		w64(w, 0);	/* btime, gen, data_version: not provided */
	return 0;
}

static int truncate_to(struct p9_server *s, struct fid *f, uint64_t size)
{
	if (size > INT64_MAX)
		return EINVAL;
	if (f->open_fd >= 0 && (f->open_flags & O_ACCMODE) != O_RDONLY)
		return ftruncate(f->open_fd, (off_t)size) ? errno : 0;
	int fd, e = reopen(s, f, O_WRONLY, &fd);
	if (e)
		return e;
	e = ftruncate(fd, (off_t)size) ? errno : 0;
	close(fd);
	return e;
}

static struct timespec set_time(uint32_t valid, uint32_t bit, uint32_t set_bit, uint64_t sec, uint64_t nsec)
{
	if (!(valid & bit))
		return (struct timespec){ .tv_nsec = UTIME_OMIT };
	if (!(valid & set_bit))
		return (struct timespec){ .tv_nsec = UTIME_NOW };
	return (struct timespec){ .tv_sec = (time_t)sec, .tv_nsec = (long)MIN(nsec, 999999999ULL) };
}

static int h_setattr(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t fid = r32(r), valid = r32(r), mode = r32(r), uid = r32(r), gid = r32(r);
	uint64_t size = r64(r), asec = r64(r), ansec = r64(r), msec = r64(r), mnsec = r64(r);
	int e = parsed(r);
	if (e)
		return e;
	struct fid *f = fid_file(s, fid, &e);
	if (!f)
		return e;
	if (s->ro)
		return EROFS;
	if ((valid & P9_SETATTR_MODE) && (e = set_mode(s, f, mode & 07777)))
		return e;
	if (valid & (P9_SETATTR_UID | P9_SETATTR_GID)) {
		uid_t u = valid & P9_SETATTR_UID ? uid : (uid_t)-1;
		gid_t g = valid & P9_SETATTR_GID ? gid : (gid_t)-1;
		if (fchownat(f->fd, "", u, g, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))
			return errno;
	}
	if ((valid & P9_SETATTR_SIZE) && (e = truncate_to(s, f, size)))
		return e;
	if (valid & (P9_SETATTR_ATIME | P9_SETATTR_MTIME)) {
		struct timespec ts[2] = {
			set_time(valid, P9_SETATTR_ATIME, P9_SETATTR_ATIME_SET, asec, ansec),
			set_time(valid, P9_SETATTR_MTIME, P9_SETATTR_MTIME_SET, msec, mnsec),
		};
		if (utimensat(f->fd, "", ts, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))
			return errno;
	}
	return 0;
}

static int h_statfs(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t fid = r32(r);
	int e = parsed(r);
	if (e)
		return e;
	struct fid *f = fid_find(s, fid);
	if (!f)
		return EBADF;
	if (f->gone)
		return ESTALE;
	struct statfs sf;
	if (fstatfs(f->fd, &sf))
		return errno;
	w32(w, sf.f_type);
	w32(w, sf.f_bsize);
	w64(w, sf.f_blocks);
	w64(w, sf.f_bfree);
	w64(w, sf.f_bavail);
	w64(w, sf.f_files);
	w64(w, sf.f_ffree);
	w64(w, (uint32_t)sf.f_fsid.__val[0] | (uint64_t)(uint32_t)sf.f_fsid.__val[1] << 32);
	w32(w, sf.f_namelen);
	return 0;
}

/* The directory fid and the checked name every create message starts with. */
static struct fid *create_dir(struct p9_server *s, uint32_t dfid, const char *name, int *err)
{
	struct fid *d = fid_file(s, dfid, err);
	if (!d)
		return NULL;
	*err = s->ro ? EROFS : name_ok(name);
	return *err ? NULL : d;
}

static int h_mkdir(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t dfid = r32(r);
	const char *name = rstr(r);
	uint32_t mode = r32(r) & 07777, gid = r32(r);
	int e = parsed(r), fd;
	if (e)
		return e;
	struct fid *d = create_dir(s, dfid, name, &e);
	if (!d)
		return e;
	if (mkdirat(d->fd, name, mode))
		return errno;
	if ((e = created(s, d, name, mode, gid, &fd)))
		return e;
	return reply_new(s, w, fd);
}

static int h_symlink(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t dfid = r32(r);
	const char *name = rstr(r), *target = rstr(r);
	uint32_t gid = r32(r);
	int e = parsed(r), fd;
	if (e)
		return e;
	struct fid *d = create_dir(s, dfid, name, &e);
	if (!d)
		return e;
	if (symlinkat(target, d->fd, name))	/* stored as given; the guest resolves it */
		return errno;
	if ((e = created(s, d, name, 0, gid, &fd)))
		return e;
	return reply_new(s, w, fd);
}

static int h_mknod(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t dfid = r32(r);
	const char *name = rstr(r);
	uint32_t mode = r32(r);
	r32(r);		/* major */
	r32(r);		/* minor */
	uint32_t gid = r32(r);
	int e = parsed(r), fd;
	if (e)
		return e;
	struct fid *d = create_dir(s, dfid, name, &e);
	if (!d)
		return e;
	mode_t type = mode & S_IFMT;
	if (type != 0 && type != S_IFREG && type != S_IFIFO)
		return EPERM;	/* no device nodes or sockets on the host */
	if (mknodat(d->fd, name, (type ? type : S_IFREG) | (mode & 07777), 0))
		return errno;
	if ((e = created(s, d, name, mode & 07777, gid, &fd)))
		return e;
	return reply_new(s, w, fd);
}

static int h_link(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t dfid = r32(r), fid = r32(r);
	const char *name = rstr(r);
	int e = parsed(r);
	if (e)
		return e;
	struct fid *d = create_dir(s, dfid, name, &e);
	if (!d)
		return e;
	struct fid *f = fid_file(s, fid, &e);
	if (!f)
		return e;
	struct stat self, st;
	if (fstat(f->fd, &self))
		return errno;
	if (S_ISDIR(self.st_mode))
		return EPERM;
	if ((e = fid_locate(s, f)))
		return e;
	/* flags 0: the entry itself is linked, a symlink is not followed */
	if (linkat(f->parent, f->name, d->fd, name, 0))
		return errno;
	if (fstatat(d->fd, name, &st, AT_SYMLINK_NOFOLLOW) || !same_inode(&st, &self)) {
		unlinkat(d->fd, name, 0);	/* the name changed under us: undo */
		return ESTALE;
	}
	return 0;
}

static int h_readlink(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t fid = r32(r);
	int e = parsed(r);
	if (e)
		return e;
	struct fid *f = fid_file(s, fid, &e);
	if (!f)
		return e;
	struct stat st;
	if (fstat(f->fd, &st))
		return errno;
	if (!S_ISLNK(st.st_mode))
		return EINVAL;
	char buf[PATH_MAX];
	ssize_t n = readlinkat(f->fd, "", buf, sizeof(buf));
	if (n < 0)
		return errno;
	if (n == sizeof(buf))
		return ENAMETOOLONG;
	wstr(w, buf, n);
	return 0;
}

static int do_rename(struct p9_server *s, int olddir, const char *oldname, int newdir, const char *newname)
{
	struct stat od;
	if (fstat(olddir, &od))
		return errno;
	if (renameat(olddir, oldname, newdir, newname))
		return errno;
	fids_renamed(s, &od, oldname, newdir, newname);
	return 0;
}

static int h_rename(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t fid = r32(r), dfid = r32(r);
	const char *name = rstr(r);
	int e = parsed(r);
	if (e)
		return e;
	struct fid *d = create_dir(s, dfid, name, &e);
	if (!d)
		return e;
	struct fid *f = fid_file(s, fid, &e);
	if (!f)
		return e;
	if ((e = fid_locate(s, f)))
		return e;
	char *oldname = xstrdup(f->name);	/* fids_renamed replaces f->name */
	e = do_rename(s, f->parent, oldname, d->fd, name);
	free(oldname);
	return e;
}

static int h_renameat(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t olddfid = r32(r);
	const char *oldname = rstr(r);
	uint32_t newdfid = r32(r);
	const char *newname = rstr(r);
	int e = parsed(r);
	if (e)
		return e;
	struct fid *od = create_dir(s, olddfid, oldname, &e);
	if (!od)
		return e;
	struct fid *nd = create_dir(s, newdfid, newname, &e);
	if (!nd)
		return e;
	return do_rename(s, od->fd, oldname, nd->fd, newname);
}

static int h_unlinkat(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t dfid = r32(r);
	const char *name = rstr(r);
	uint32_t flags = r32(r);
	int e = parsed(r);
	if (e)
		return e;
	struct fid *d = create_dir(s, dfid, name, &e);
	if (!d)
		return e;
	return unlinkat(d->fd, name, flags & P9_DOTL_AT_REMOVEDIR ? AT_REMOVEDIR : 0) ? errno : 0;
}

static int h_remove(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t fid = r32(r);
	int e = parsed(r);
	if (e)
		return e;
	struct fid *f = fid_file(s, fid, &e);
	if (!f)
		return e;
	struct stat st;
	if (s->ro)
		e = EROFS;
	else if (fstat(f->fd, &st))
		e = errno;
	else if (!(e = fid_locate(s, f)))
		e = unlinkat(f->parent, f->name, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) ? errno : 0;
	fid_free(s, f);		/* Tremove clunks the fid whatever happened */
	return e;
}

static int h_fsync(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t fid = r32(r), datasync = r32(r);
	int e = parsed(r);
	if (e)
		return e;
	struct fid *f = fid_file(s, fid, &e);
	if (!f)
		return e;
	if (f->open_fd < 0)
		return EBADF;
	return (datasync ? fdatasync(f->open_fd) : fsync(f->open_fd)) ? errno : 0;
}

static int h_flush(struct p9_server *s, struct rd *r, struct wr *w)
{
	r16(r);		/* oldtag: requests complete before the next is read */
	return parsed(r);
}

/* Set the xattr an Txattrcreate fid collected: at its clunk, as 9P2000.L says. */
static int xattr_commit(struct p9_server *s, struct fid *f)
{
	if (f->xfilled != f->xlen)
		return EINVAL;
	int fd, e = reopen(s, f, O_RDONLY, &fd);
	if (e)
		return e == ELOOP ? EOPNOTSUPP : e;
	if (f->xlen == 0 && (f->xflags & XATTR_REPLACE))
		e = fremovexattr(fd, f->xname) ? errno : 0;	/* how removexattr arrives */
	else
		e = fsetxattr(fd, f->xname, f->xbuf, f->xlen, f->xflags) ? errno : 0;
	close(fd);
	return e;
}

static int h_clunk(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t fid = r32(r);
	int e = parsed(r);
	if (e)
		return e;
	struct fid *f = fid_find(s, fid);
	if (!f)
		return EBADF;
	if (f->kind == FID_XATTR_WRITE)
		e = xattr_commit(s, f);
	fid_free(s, f);
	return e;
}

/* The list (name "") or one value of f's xattrs, into a new buffer. */
static int xattr_fetch(struct p9_server *s, struct fid *f, const char *name, uint8_t **buf, size_t *len)
{
	struct stat st;
	if (fstat(f->fd, &st))
		return errno;
	if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
		*buf = NULL;	/* symlinks and special files: none we show */
		*len = 0;
		return *name ? ENODATA : 0;
	}
	int fd, e = reopen(s, f, O_RDONLY, &fd);
	if (e)
		return e;
	*buf = xcalloc(1, XATTR_MAX);
	ssize_t n = *name ? fgetxattr(fd, name, *buf, XATTR_MAX) : flistxattr(fd, (char *)*buf, XATTR_MAX);
	e = n < 0 ? errno : 0;
	close(fd);
	if (e) {
		free(*buf);
		*buf = NULL;
		return e == ERANGE ? E2BIG : e;
	}
	*len = n;
	return 0;
}

static int h_xattrwalk(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t fid = r32(r), newfid = r32(r);
	const char *name = rstr(r);
	int e = parsed(r);
	if (e)
		return e;
	struct fid *f = fid_file(s, fid, &e);
	if (!f)
		return e;
	if (fid_find(s, newfid))
		return EBADF;
	if (strlen(name) > XATTR_NAME_MAX)
		return ERANGE;
	uint8_t *buf = NULL;
	size_t len = 0;
	if ((e = xattr_fetch(s, f, name, &buf, &len)))
		return e;
	int fd = dup_fd(f->fd);
	if (fd < 0 || (e = fid_add(s, newfid, f->uid, fd, -1, NULL))) {
		e = fd < 0 ? errno : e;
		close_fd(&fd);
		free(buf);
		return e;
	}
	struct fid *x = fid_find(s, newfid);
	x->kind = FID_XATTR_READ;
	x->xbuf = buf;
	x->xlen = len;
	w64(w, len);
	return 0;
}

static int h_xattrcreate(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t fid = r32(r);
	const char *name = rstr(r);
	uint64_t size = r64(r);
	uint32_t flags = r32(r);
	int e = parsed(r);
	if (e)
		return e;
	struct fid *f = fid_file(s, fid, &e);
	if (!f)
		return e;
	if (f->open_fd >= 0)
		return EBADF;
	if (s->ro)
		return EROFS;
	if (flags & ~(uint32_t)(XATTR_CREATE | XATTR_REPLACE))
		return EINVAL;
	if (!*name || strlen(name) > XATTR_NAME_MAX)
		return ERANGE;
	/* Other namespaces could set capabilities or ACLs on the host. */
	if (strncmp(name, "user.", 5))
		return EOPNOTSUPP;
	if (size > XATTR_MAX)
		return E2BIG;
	f->kind = FID_XATTR_WRITE;
	f->xbuf = xcalloc(1, size ? size : 1);
	f->xlen = size;
	f->xfilled = 0;
	f->xname = xstrdup(name);
	f->xflags = flags;
	return 0;
}

static int h_lock(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t fid = r32(r);
	r8(r);		/* type */
	r32(r);		/* flags */
	r64(r);		/* start */
	r64(r);		/* length */
	r32(r);		/* proc_id */
	rstr(r);	/* client_id */
	int e = parsed(r);
	if (e)
		return e;
	if (!fid_file(s, fid, &e))
		return e;
	w8(w, P9_LOCK_SUCCESS);	/* locks are the guest's own business */
	return 0;
}

static int h_getlock(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t fid = r32(r);
	r8(r);		/* type */
	uint64_t start = r64(r), length = r64(r);
	uint32_t proc_id = r32(r);
	const char *client = rstr(r);
	int e = parsed(r);
	if (e)
		return e;
	if (!fid_file(s, fid, &e))
		return e;
	w8(w, P9_LOCK_TYPE_UNLCK);	/* nobody holds a conflicting lock */
	w64(w, start);
	w64(w, length);
	w32(w, proc_id);
	wstr(w, client, strlen(client));
	return 0;
}

static const handler handlers[256] = {
	[P9_TVERSION] = h_version, [P9_TATTACH] = h_attach, [P9_TWALK] = h_walk,
	[P9_TLOPEN] = h_lopen, [P9_TLCREATE] = h_lcreate, [P9_TREAD] = h_read,
	[P9_TWRITE] = h_write, [P9_TREADDIR] = h_readdir, [P9_TGETATTR] = h_getattr,
	[P9_TSETATTR] = h_setattr, [P9_TSTATFS] = h_statfs, [P9_TMKDIR] = h_mkdir,
	[P9_TSYMLINK] = h_symlink, [P9_TMKNOD] = h_mknod, [P9_TLINK] = h_link,
	[P9_TREADLINK] = h_readlink, [P9_TRENAME] = h_rename, [P9_TRENAMEAT] = h_renameat,
	[P9_TUNLINKAT] = h_unlinkat, [P9_TREMOVE] = h_remove, [P9_TFSYNC] = h_fsync,
	[P9_TFLUSH] = h_flush, [P9_TCLUNK] = h_clunk, [P9_TXATTRWALK] = h_xattrwalk,
	[P9_TXATTRCREATE] = h_xattrcreate, [P9_TLOCK] = h_lock, [P9_TGETLOCK] = h_getlock,
};

/* Check the header, run the handler, and frame its reply or an Rlerror. */
static int dispatch(struct p9_server *s, const uint8_t *req, size_t len, struct wr *w)
{
	if (len < P9_HDR_SIZE)
		return EINVAL;
	uint32_t size = get_le32(req);
	uint8_t type = req[4];
	if (size < P9_HDR_SIZE || size > len)
		return EINVAL;
	if (type != P9_TVERSION && !s->msize)
		return EPROTO;	/* no session yet */
	if (s->msize && size > s->msize)
		return EMSGSIZE;
	handler h = handlers[type];
	if (!h)
		return EOPNOTSUPP;
	struct rd r = { .p = req + P9_HDR_SIZE, .len = size - P9_HDR_SIZE };
	r.scap = r.len + P9_MAX_WALK + 1;	/* every string's bytes plus its NUL */
	r.scratch = xcalloc(1, r.scap);
	int e = h(s, &r, w);
	free(r.scratch);
	return e;
}

size_t p9_handle(struct p9_server *s, const uint8_t *req, size_t len, uint8_t *resp, size_t cap)
{
	if (cap < P9_HDR_SIZE + 4)
		return 0;
	uint8_t type = len > 4 ? req[4] : 0;
	uint16_t tag = len >= P9_HDR_SIZE ? get_le16(req + 5) : P9_NOTAG;
	pthread_mutex_lock(&p9_lock);
	struct wr w = { .p = resp, .cap = s->msize ? MIN(cap, (size_t)s->msize) : cap, .off = P9_HDR_SIZE };
	int e = dispatch(s, req, len, &w);
	if (!e && w.over)
		e = EMSGSIZE;	/* the reply does not fit the client's buffer */
	pthread_mutex_unlock(&p9_lock);
	if (e) {
		w.off = P9_HDR_SIZE;
		put_le32(resp + w.off, e);
		w.off += 4;
		type = P9_RLERROR;
	} else {
		type++;
	}
	put_le32(resp, w.off);
	resp[4] = type;
	put_le16(resp + 5, tag);
	return w.off;
}

struct p9_server *p9_server_new(const char *root, bool ro)
{
	int fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		err_errno("9p: %s", root);
		return NULL;
	}
	struct stat st;
	if (fstat(fd, &st)) {
		err_errno("9p: %s", root);
		close(fd);
		return NULL;
	}
	struct p9_server *s = xcalloc(1, sizeof(*s));
	s->root = fd;
	s->root_dev = st.st_dev;
	s->root_ino = st.st_ino;
	s->ro = ro;
	mode_t mask = umask(0);
	umask(mask);
	s->umask = mask;
	s->as_root = geteuid() == 0;
	return s;
}

void p9_server_free(struct p9_server *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&p9_lock);
	fid_free_all(s);
	pthread_mutex_unlock(&p9_lock);
	close(s->root);
	free(s);
}

/*
 * ---- snapshots: each fid by its path, walked again on restore ----
 *
 * A fid holds descriptors, which do not outlive lkvm: a snapshot records the
 * path of each fid's object below the root (found from the object itself, so
 * renames since the walk are followed), its user and how it was opened. A
 * restore walks each path again one name at a time, as Twalk does, and
 * reopens what was open. A fid whose object is gone (deleted, moved out of
 * the share) comes back as a fid that answers ESTALE to everything but
 * Tclunk. Xattr transfers in progress do not survive either.
 */

#define SNAP_PATH_MAX 4096

/* "" for the root, else "a/b/c": the names from the root down to f's object. */
static int fid_path(struct p9_server *s, struct fid *f, char *out, size_t cap)
{
	struct stat st;
	if (f->gone || f->kind != FID_FILE || fstat(f->fd, &st))
		return ESTALE;
	out[0] = 0;
	if (is_root(s, &st))
		return 0;
	char *names[MAX_ANCESTRY];
	int n = 0, e = 0, cur;
	if (S_ISDIR(st.st_mode)) {
		cur = dup_fd(f->fd);
	} else {
		if (st.st_nlink == 0)
			return ESTALE;	/* deleted while the guest holds it */
		if ((e = fid_locate(s, f)))
			return e;
		names[n++] = xstrdup(f->name);
		cur = dup_fd(f->parent);
	}
	while (cur >= 0 && !e) {
		struct stat cst;
		if (fstat(cur, &cst)) {
			e = errno;
			break;
		}
		if (is_root(s, &cst))
			break;
		if (n == MAX_ANCESTRY) {
			e = ENAMETOOLONG;
			break;
		}
		int up;
		if ((e = walk_dotdot(s, cur, &up)))
			break;
		char *name = find_name(up, &cst);
		close(cur);
		cur = up;
		if (!name)
			e = ESTALE;
		else
			names[n++] = name;
	}
	if (cur < 0 && !e)
		e = errno;
	close_fd(&cur);
	size_t len = 0;
	for (int i = n - 1; i >= 0 && !e; i--) {
		size_t k = strlen(names[i]);
		if (len + k + 2 > cap) {
			e = ENAMETOOLONG;
			break;
		}
		if (len)
			out[len++] = '/';
		memcpy(out + len, names[i], k);
		len += k;
		out[len] = 0;
	}
	for (int i = 0; i < n; i++)
		free(names[i]);
	return e;
}

int p9_server_save(struct p9_server *s, struct snap_writer *w)
{
	pthread_mutex_lock(&p9_lock);
	snap_u32(w, s->msize);
	snap_u32(w, s->nfids);
	char *path = xcalloc(1, SNAP_PATH_MAX);
	for (int b = 0; b < FID_BUCKETS; b++) {
		for (struct fid *f = s->fids[b]; f; f = f->next) {
			bool found = fid_path(s, f, path, SNAP_PATH_MAX) == 0;
			snap_u32(w, f->id);
			snap_u32(w, f->uid);
			snap_bool(w, found);
			snap_str(w, found ? path : "");
			snap_bool(w, found && f->open_fd >= 0);
			snap_u32(w, (uint32_t)f->open_flags);
		}
	}
	free(path);
	pthread_mutex_unlock(&p9_lock);
	return 0;
}

/* Walk path from the root, one name at a time: 0 with fd/parent/name set, or an errno. */
static int walk_path(struct p9_server *s, char *path, int *fd, int *parent, char **name)
{
	int cur = dup_fd(s->root), par = -1;
	char *last = NULL, *save = NULL;
	if (cur < 0)
		return errno;
	for (char *c = strtok_r(path, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		int next, e = name_ok(c);
		if (!e)
			e = lookup(cur, c, &next);
		if (e) {
			close(cur);
			close_fd(&par);
			return e;
		}
		close_fd(&par);
		par = cur;
		cur = next;
		last = c;
	}
	*fd = cur;
	*parent = par;
	*name = last;
	return 0;
}

/* Open flags a restored fid may ask for again: what h_lopen/h_lcreate keep, without creation. */
#define RESTORE_FLAGS (O_ACCMODE | O_APPEND | O_DSYNC | O_SYNC | O_DIRECTORY)

int p9_server_load(struct p9_server *s, struct snap_reader *r)
{
	uint32_t msize = snap_get_u32(r), n = snap_get_u32(r);
	if (snap_failed(r))
		return -1;
	if ((msize && (msize < P9_MIN_MSIZE || msize > P9_MAX_MSIZE)) || n > MAX_FIDS)
		return snap_bad(r, "9p session of msize %u with %u fids", msize, n);
	char *path = xcalloc(1, SNAP_PATH_MAX);
	int ret = 0;
	pthread_mutex_lock(&p9_lock);
	fid_free_all(s);
	s->msize = msize;
	for (uint32_t i = 0; i < n && !ret; i++) {
		uint32_t id = snap_get_u32(r), uid = snap_get_u32(r);
		bool found = snap_get_bool(r);
		snap_get_str(r, path, SNAP_PATH_MAX);
		bool open = snap_get_bool(r);
		uint32_t flags = snap_get_u32(r);
		if (snap_failed(r) || id == P9_NOFID || fid_find(s, id) || (flags & ~(uint32_t)RESTORE_FLAGS) ||
		    (flags & O_ACCMODE) == O_ACCMODE) {
			ret = snap_bad(r, "fid %u: bad or repeated entry", id);
			break;
		}
		int fd = -1, parent = -1, e = ENOENT;
		char *name = NULL;
		if (found)
			e = walk_path(s, path, &fd, &parent, &name);
		if (e || fid_add(s, id, uid, fd, parent, name)) {
			close_fd(&fd);
			close_fd(&parent);
			fid_add(s, id, uid, -1, -1, NULL);
			fid_find(s, id)->gone = true;
			continue;
		}
		struct fid *f = fid_find(s, id);
		if (open) {
			int ofd;
			if (s->ro && (flags & O_ACCMODE) != O_RDONLY)
				e = EROFS;
			else
				e = reopen(s, f, (int)flags, &ofd);
			if (e) {
				close_fd(&f->fd);
				close_fd(&f->parent);
				f->gone = true;
			} else {
				f->open_fd = ofd;
				f->open_flags = (int)flags;
			}
		}
	}
	pthread_mutex_unlock(&p9_lock);
	free(path);
	return ret;
}
