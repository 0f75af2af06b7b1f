/*
 * 9P2000.L messages: one handler per T-message, the dispatch that frames
 * every reply, and the server's lifetime. Handlers reach host files only
 * through fs.c and fids only through fid.c; each holds the lock of the fids
 * it uses for as long as it uses their nodes, and several run at once.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include "p9_int.h"
#include "util.h"

#define XATTR_MAX 65536		/* XATTR_SIZE_MAX: value and list sizes */

void (*p9_request_hook)(uint16_t tag);

/* A request being served: Tflush waits for the one it names. */
struct p9_flight {
	uint16_t tag;
	bool flush;
	struct p9_flight *next;
};

/* ---- qids ---- */

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

/* ---- fids for a request ---- */

/* The fid id, referenced: NULL with *err EBADF (none) or ESTALE (restored without its object). */
static struct p9_fid *get_live(struct p9_server *s, uint32_t id, int *err)
{
	struct p9_fid *f = fid_get(s, id);
	*err = !f ? EBADF : __atomic_load_n(&f->kind, __ATOMIC_RELAXED) == FID_GONE ? ESTALE : 0;
	if (*err && f) {
		fid_put(s, f);
		f = NULL;
	}
	return f;
}

/* The file fid id (not one in an xattr transfer), referenced and locked; NULL with *err set. */
static struct p9_fid *lock_file(struct p9_server *s, uint32_t id, int *err)
{
	struct p9_fid *f = get_live(s, id, err);
	if (!f)
		return NULL;
	pthread_mutex_lock(&f->lock);
	if (f->kind != FID_FILE) {
		pthread_mutex_unlock(&f->lock);
		fid_put(s, f);
		*err = EBADF;
		return NULL;
	}
	*err = 0;
	return f;
}

static void unlock_put(struct p9_server *s, struct p9_fid *f)
{
	pthread_mutex_unlock(&f->lock);
	fid_put(s, f);
}

/* Two file fids, both locked (a and b may be the same); 0 or EBADF. */
static int lock_files2(struct p9_server *s, uint32_t ida, uint32_t idb, struct p9_fid **a, struct p9_fid **b)
{
	int ea, eb;
	*a = get_live(s, ida, &ea);
	*b = get_live(s, idb, &eb);
	if (!*a || !*b) {
		fid_put(s, *a);
		fid_put(s, *b);
		return ea ? ea : eb;
	}
	fid_lock2(*a, *b);
	if ((*a)->kind != FID_FILE || (*b)->kind != FID_FILE) {
		fid_unlock2(*a, *b);
		fid_put(s, *a);
		fid_put(s, *b);
		return EBADF;
	}
	return 0;
}

static void unlock_put2(struct p9_server *s, struct p9_fid *a, struct p9_fid *b)
{
	fid_unlock2(a, b);
	fid_put(s, a);
	fid_put(s, b);
}

/* A directory fid new names are made in: locked, the name checked, the share writable. */
static int dir_checks(const struct p9_server *s, const struct p9_fid *d, const char *name)
{
	if (s->o.ro)
		return EROFS;
	int e = name_ok(name);
	return e ? e : d->n.opaque ? EROFS : 0;
}

static struct p9_fid *lock_dir(struct p9_server *s, uint32_t id, const char *name, int *err)
{
	struct p9_fid *d = lock_file(s, id, err);
	if (d && (*err = dir_checks(s, d, name))) {
		unlock_put(s, d);
		return NULL;
	}
	return d;
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

static bool writable(int oflags)
{
	return (oflags & O_ACCMODE) != O_RDONLY;
}

/* A fid just opened for writing on fd: whether a write must first clear setuid/setgid. */
static int opened(struct p9_fid *f, int fd, int oflags, bool trunc)
{
	bool kill = writable(oflags) && fs_needs_kill_suid(fd);
	if (trunc && ftruncate(fd, 0))
		return errno;
	if (trunc && kill) {
		fs_kill_suid(fd);
		kill = false;
	}
	f->open = true;
	f->open_fd = fd;
	f->open_flags = oflags;
	f->kill_suid = kill;
	return 0;
}

/* ---- messages ---- */

typedef int (*handler)(struct p9_server *s, struct rd *r, struct wr *w);

static int h_version(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t msize = r32(r);
	const char *version = rstr(r);
	int e = rd_parsed(r);
	if (e)
		return e;
	fid_drop_all(s);	/* a new session */
	__atomic_store_n(&s->msize, 0, __ATOMIC_RELEASE);
	if (msize < P9_MIN_MSIZE)
		return EINVAL;
	bool ours = !strncmp(version, "9P2000.L", 8) && (version[8] == 0 || version[8] == '.');
	uint32_t granted = MIN(msize, (uint32_t)P9_MAX_MSIZE);
	if (ours)
		__atomic_store_n(&s->msize, granted, __ATOMIC_RELEASE);
	w32(w, ours ? granted : msize);
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
	int e = rd_parsed(r);
	if (e)
		return e;
	if (afid != P9_NOFID)
		return EINVAL;	/* no authentication */
	struct p9_node n;
	struct stat st;
	if ((e = fs_root_node(s, &n)) || (e = fs_stat(s, &n, &st))) {
		node_clear(&n);
		return e;
	}
	struct p9_fid *f = fid_new(s, uid, &n, &e);
	if (!f) {
		node_clear(&n);
		return e;
	}
	if ((e = fid_insert(s, f, fid)))
		return e;
	fid_put(s, f);
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
	int e = rd_parsed(r);
	if (e)
		return e;
	struct p9_fid *f = lock_file(s, fid, &e);
	if (!f)
		return e;
	struct p9_node cur;
	if (newfid != fid && fid_exists(s, newfid))
		e = EBADF;
	else if (newfid == fid && n && f->open)
		e = EBADF;	/* an open fid keeps its object */
	else
		e = node_dup(&f->n, &cur);
	uint32_t uid = f->uid;
	pthread_mutex_unlock(&f->lock);	/* the walk works on its own copy */
	if (e) {
		fid_put(s, f);
		return e == EMFILE || e == ENFILE ? EMFILE : e;
	}
	size_t nwqid_at = w->off;
	w16(w, 0);
	int done = 0;
	for (; done < n; done++) {
		struct p9_node next;
		struct stat st;
		if ((e = fs_walk(s, &cur, names[done], &next)))
			break;
		if ((e = fs_stat(s, &next, &st))) {
			node_clear(&next);
			break;
		}
		wqid(w, s, &st);
		node_clear(&cur);
		cur = next;
	}
	if ((done == 0 && n > 0) || done < n || w->over) {
		node_clear(&cur);
		fid_put(s, f);
		if (done == 0 && n > 0)
			return e;
		if (w->p && !w->over)
			put_le16(w->p + nwqid_at, done);
		return 0;	/* partial walk: the qids so far, no newfid */
	}
	if (w->p)
		put_le16(w->p + nwqid_at, done);
	if (newfid == fid) {
		pthread_mutex_lock(&f->lock);
		if (f->open && n) {
			e = EBADF;	/* opened meanwhile */
		} else {
			node_clear(&f->n);
			f->n = cur;
			node_init(&cur);
		}
		unlock_put(s, f);
		node_clear(&cur);
		return e;
	}
	fid_put(s, f);
	struct p9_fid *nf = fid_new(s, uid, &cur, &e);
	if (!nf) {
		node_clear(&cur);
		return e;
	}
	if ((e = fid_insert(s, nf, newfid)))
		return e;
	fid_put(s, nf);
	return 0;
}

static int h_lopen(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t fid = r32(r), flags = r32(r);
	int e = rd_parsed(r);
	if (e)
		return e;
	struct p9_fid *f = lock_file(s, fid, &e);
	if (!f)
		return e;
	int fd = -1, oflags = open_flags(flags);
	struct stat st;
	if (f->open)
		e = EBADF;
	else if ((flags & 3) == 3)
		e = EINVAL;
	else if (s->o.ro && ((flags & 3) != 0 || (flags & P9_DOTL_TRUNC)))
		e = EROFS;
	else if (!(e = fs_stat(s, &f->n, &st)) && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
		e = S_ISLNK(st.st_mode) ? ELOOP : EOPNOTSUPP;	/* never opened on the host */
	if (!e && f->n.opaque) {	/* an empty directory: nothing to open */
		e = writable(oflags) || (flags & P9_DOTL_TRUNC) ? EISDIR : 0;
		if (!e) {
			f->open = true;
			f->open_flags = oflags;
			wqid(w, s, &st);
			w32(w, 0);
		}
		unlock_put(s, f);
		return e;
	}
	if (!e)
		e = fs_reopen(s, &f->n, oflags, &fd);
	/* truncate only once the inode is known to be the fid's */
	if (!e && ((e = opened(f, fd, oflags, flags & P9_DOTL_TRUNC)) || fstat(fd, &st))) {
		e = e ? e : errno;
		f->open = false;
		f->open_fd = -1;
		close(fd);
	}
	if (!e) {
		wqid(w, s, &st);
		w32(w, 0);	/* iounit: the client's msize bound applies */
	}
	unlock_put(s, f);
	return e;
}

static int h_lcreate(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t fid = r32(r);
	const char *name = rstr(r);
	uint32_t flags = r32(r), mode = r32(r) & 07777, gid = r32(r);
	int e = rd_parsed(r);
	if (e)
		return e;
	struct p9_fid *f = lock_file(s, fid, &e);
	if (!f)
		return e;
	if (f->open || (e = dir_checks(s, f, name))) {
		e = e ? e : EBADF;
		unlock_put(s, f);
		return e;
	}
	int oflags = open_flags(flags) & ~O_DIRECTORY, fd;
	struct fs_new nw = { .mode = S_IFREG | mode, .uid = f->uid, .gid = gid };
	struct p9_node n;
	bool made;
	struct stat st;
	e = fs_create(s, &f->n, name, oflags, flags & P9_DOTL_EXCL, &nw, &n, &fd, &made);
	if (!e && ((e = opened(f, fd, oflags, !made && (flags & P9_DOTL_TRUNC))) || fstat(fd, &st))) {
		e = e ? e : errno;
		f->open = false;
		f->open_fd = -1;
		close(fd);
		node_clear(&n);
	}
	if (!e) {
		node_clear(&f->n);
		f->n = n;	/* the fid now stands for the new file */
		wqid(w, s, &st);
		w32(w, 0);
	}
	unlock_put(s, f);
	return e;
}

static int h_read(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t fid = r32(r);
	uint64_t offset = r64(r);
	uint32_t count = r32(r);
	int e = rd_parsed(r);
	if (e)
		return e;
	struct p9_fid *f = get_live(s, fid, &e);
	if (!f)
		return e;
	/* An open fid's descriptor never changes, and an xattr-read fid's buffer neither. */
	pthread_mutex_lock(&f->lock);
	enum fid_kind kind = f->kind;
	bool open = f->open;
	int fd = f->open_fd;
	pthread_mutex_unlock(&f->lock);
	uint8_t *cnt = wr_put(w, 4);
	size_t got = 0;
	count = MIN((size_t)count, w->cap - w->off);
	uint8_t *data = w->p + w->off;
	/* Straight into the transport's buffers: the slice of them the reply may fill. */
	struct iovec dv[P9_MAX_IOV];
	int ndv = 0;
	if (w->xiov) {
		size_t room;
		ndv = iov_sub(w->xiov, w->nxiov, 0, count, dv, P9_MAX_IOV, &room);
		count = room;
	}
	if (kind == FID_XATTR_WRITE || !cnt) {
		e = cnt ? EBADF : EMSGSIZE;
	} else if (kind == FID_XATTR_READ) {
		got = offset < f->xlen ? MIN((uint64_t)count, f->xlen - offset) : 0;
		for (size_t done = 0, i = 0; w->xiov && done < got; done += dv[i++].iov_len)
			memcpy(dv[i].iov_base, f->xbuf + offset + done, MIN(dv[i].iov_len, got - done));
		if (got && !w->xiov)
			memcpy(data, f->xbuf + offset, got);
	} else if (!open) {
		e = EBADF;
	} else if (fd < 0) {
		e = EISDIR;	/* an opaque directory */
	} else if (offset > INT64_MAX) {
		e = EINVAL;
	} else {
		ssize_t n = !w->xiov ? pread(fd, data, count, (off_t)offset) :
			    ndv ? preadv(fd, dv, ndv, (off_t)offset) : 0;
		e = n < 0 ? errno : 0;
		got = n < 0 ? 0 : n;
	}
	fid_put(s, f);
	if (e)
		return e;
	put_le32(cnt, got);
	if (w->xiov)
		w->xused = got;
	else
		w->off += got;
	return 0;
}

static int h_write(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t fid = r32(r);
	uint64_t offset = r64(r);
	uint32_t count = r32(r);
	const uint8_t *data = NULL;
	struct iovec dv[P9_MAX_IOV];
	int ndv = 0;
	if (!r->xiov) {
		data = rd_take(r, count);
	} else if (count != r->xlen || r->off != r->len) {
		r->bad = true;	/* the data must be exactly what follows the fields */
	} else {
		size_t got;
		ndv = iov_sub(r->xiov, r->nxiov, 0, count, dv, P9_MAX_IOV, &got);
		if (got != count)
			r->bad = true;
	}
	int e = rd_parsed(r);
	if (e)
		return e;
	struct p9_fid *f = get_live(s, fid, &e);
	if (!f)
		return e;
	pthread_mutex_lock(&f->lock);
	int fd = f->open_fd;
	if (f->kind == FID_XATTR_READ) {
		e = EBADF;
	} else if (f->kind == FID_XATTR_WRITE) {
		if (offset > f->xlen || count > f->xlen - offset) {
			e = EINVAL;	/* more than Txattrcreate declared */
		} else {
			if (data)
				memcpy(f->xbuf + offset, data, count);
			else
				for (size_t done = 0, i = 0; done < count; done += dv[i++].iov_len)
					memcpy(f->xbuf + offset + done, dv[i].iov_base, dv[i].iov_len);
			f->xfilled = MAX(f->xfilled, offset + count);
			w32(w, count);
		}
		unlock_put(s, f);
		return e;
	} else if (!f->open || fd < 0) {
		e = EBADF;
	} else if (s->o.ro) {
		e = EROFS;
	} else if (offset > INT64_MAX) {
		e = EINVAL;
	} else if (f->kill_suid) {	/* before any byte lands: no moment a changed file keeps the bit */
		e = fs_kill_suid(fd);
		f->kill_suid = e != 0;
	}
	pthread_mutex_unlock(&f->lock);
	if (!e) {
		ssize_t n = data ? pwrite(fd, data, count, (off_t)offset) : ndv ? pwritev(fd, dv, ndv, (off_t)offset) : 0;
		e = n < 0 ? errno : 0;
		if (!e)
			w32(w, n);
	}
	fid_put(s, f);
	return e;
}

/* A view: is the entry name of f's directory in it? ("." and ".." always are) */
static enum view_is listed(struct p9_server *s, struct p9_fid *f, const char *name)
{
	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return VIEW_SHOWN;
	struct stat st;
	if (!f->n.vpath || fstatat(f->open_fd, name, &st, AT_SYMLINK_NOFOLLOW))
		return VIEW_HIDDEN;
	char *path = view_child(f->n.vpath, name);
	enum view_is vi = view_check(s->o.view, path, &st);
	free(path);
	return vi;
}

static int h_readdir(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t fid = r32(r);
	uint64_t offset = r64(r);
	uint32_t count = r32(r);
	int e = rd_parsed(r);
	if (e)
		return e;
	struct p9_fid *f = lock_file(s, fid, &e);	/* the directory's offset is shared: one at a time */
	if (!f)
		return e;
	struct stat dir;
	uint8_t *cnt = NULL;
	size_t used = 0;
	bool full = false;
	if (!f->open)
		e = EBADF;
	else if (f->n.opaque)
		e = 0;	/* empty */
	else if (fstat(f->open_fd, &dir))
		e = EBADF;
	else if (!S_ISDIR(dir.st_mode))
		e = ENOTDIR;
	else if (offset > INT64_MAX)
		e = EINVAL;
	/* Offsets are the kernel's own d_off cookies: valid across calls and renames. */
	else if (lseek(f->open_fd, (off_t)offset, SEEK_SET) < 0)
		e = errno;
	if (!e && !(cnt = wr_put(w, 4)))
		e = EMSGSIZE;
	count = MIN((size_t)count, w->cap - w->off);
	char buf[8192] __attribute__((aligned(8)));
	bool mapped = s->o.model == P9_MAPPED;
	while (!e && !f->n.opaque && !full) {
		ssize_t n = getdents64(f->open_fd, buf, sizeof(buf));
		if (n < 0 && used == 0)
			e = errno;
		if (n <= 0)
			break;
		for (ssize_t off = 0; off < n; off += ((struct dirent64 *)(buf + off))->d_reclen) {
			struct dirent64 *d = (struct dirent64 *)(buf + off);
			size_t len = strlen(d->d_name), rec = 13 + 8 + 1 + 2 + len;
			if (used + rec > count) {	/* the rest comes with the next Treaddir */
				full = true;
				break;
			}
			/* mapped: a host file may be the guest's symlink or device, so it must look */
			uint8_t type = mapped && d->d_type == DT_REG ? DT_UNKNOWN : d->d_type;
			if (s->o.view) {	/* what the view hides is not listed either */
				enum view_is vi = listed(s, f, d->d_name);
				if (vi == VIEW_HIDDEN)
					continue;
				if (vi == VIEW_EMPTY)
					type = DT_DIR;
			}
			struct wr ew = { .p = w->p + w->off + used, .cap = rec };
			w8(&ew, type == DT_DIR ? P9_QTDIR : type == DT_LNK ? P9_QTSYMLINK : P9_QTFILE);
			w32(&ew, 0);
			w64(&ew, qid_path(s, dir.st_dev, d->d_ino));
			w64(&ew, d->d_off);
			w8(&ew, type);
			wstr(&ew, d->d_name, len);
			used += rec;
		}
	}
	unlock_put(s, f);
	if (e)
		return e;
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
	int e = rd_parsed(r);
	if (e)
		return e;
	struct p9_fid *f = get_live(s, fid, &e);
	if (!f)
		return e;
	struct stat st;
	pthread_mutex_lock(&f->lock);
	e = fs_stat(s, &f->n, &st);
	unlock_put(s, f);
	if (e)
		return e;
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

/* Tsetattr's size: through the fid's own open file, else a descriptor of its own. */
static int truncate_to(struct p9_server *s, struct p9_fid *f, const struct stat *guest, uint64_t size)
{
	if (size > INT64_MAX)
		return EINVAL;
	if (!S_ISREG(guest->st_mode))
		return S_ISDIR(guest->st_mode) ? EISDIR : S_ISLNK(guest->st_mode) ? ELOOP : EINVAL;
	if (f->open && f->open_fd >= 0 && writable(f->open_flags)) {
		if (ftruncate(f->open_fd, (off_t)size))
			return errno;
		f->kill_suid = false;
		return fs_kill_suid(f->open_fd);
	}
	int fd, e = fs_reopen(s, &f->n, O_WRONLY, &fd);
	if (e)
		return e;
	e = ftruncate(fd, (off_t)size) ? errno : fs_kill_suid(fd);
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

static int setattr_locked(struct p9_server *s, struct p9_fid *f, uint32_t valid, uint32_t mode, uint32_t uid,
			  uint32_t gid, uint64_t size, const struct timespec ts[2])
{
	struct stat st;
	int e;
	if (s->o.ro)
		return EROFS;
	if ((e = fs_stat(s, &f->n, &st)))
		return e;
	if (is_root(s, &st) && valid)
		return EPERM;	/* the host folder itself is not the guest's to chmod, chown or touch */
	if (f->n.opaque && valid)
		return EROFS;
	if ((valid & P9_SETATTR_MODE) && (e = fs_chmod(s, &f->n, mode)))
		return e;
	if ((valid & (P9_SETATTR_UID | P9_SETATTR_GID)) && (e = fs_chown(s, &f->n, uid, gid, valid)))
		return e;
	if ((valid & P9_SETATTR_SIZE) && (e = truncate_to(s, f, &st, size)))
		return e;
	if ((valid & (P9_SETATTR_ATIME | P9_SETATTR_MTIME)) &&
	    utimensat(f->n.fd, "", ts, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))
		return errno;
	return 0;
}

static int h_setattr(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t fid = r32(r), valid = r32(r), mode = r32(r), uid = r32(r), gid = r32(r);
	uint64_t size = r64(r), asec = r64(r), ansec = r64(r), msec = r64(r), mnsec = r64(r);
	int e = rd_parsed(r);
	if (e)
		return e;
	struct p9_fid *f = lock_file(s, fid, &e);
	if (!f)
		return e;
	struct timespec ts[2] = {
		set_time(valid, P9_SETATTR_ATIME, P9_SETATTR_ATIME_SET, asec, ansec),
		set_time(valid, P9_SETATTR_MTIME, P9_SETATTR_MTIME_SET, msec, mnsec),
	};
	e = setattr_locked(s, f, valid, mode, uid, gid, size, ts);
	unlock_put(s, f);
	return e;
}

static int h_statfs(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t fid = r32(r);
	int e = rd_parsed(r);
	if (e)
		return e;
	struct p9_fid *f = get_live(s, fid, &e);
	if (!f)
		return e;
	struct statfs sf;
	pthread_mutex_lock(&f->lock);
	e = fstatfs(f->n.opaque ? s->root : f->n.fd, &sf) ? errno : 0;
	unlock_put(s, f);
	if (e)
		return e;
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

/* Reply with the qid of a new object (as the guest sees it) and let it go. */
static int reply_new(struct p9_server *s, struct wr *w, struct p9_node *n)
{
	struct stat st;
	int e = fs_stat(s, n, &st);
	if (!e)
		wqid(w, s, &st);
	node_clear(n);
	return e;
}

enum made_by { MKDIR, SYMLINK, MKNOD };

/* Tmkdir, Tsymlink, Tmknod: a new name in the directory dfid. */
static int make(struct p9_server *s, struct wr *w, enum made_by how, uint32_t dfid, const char *name,
		struct fs_new *nw)
{
	int e;
	struct p9_fid *d = lock_dir(s, dfid, name, &e);
	if (!d)
		return e;
	struct p9_node n;
	nw->uid = d->uid;
	e = how == MKDIR ? fs_mkdir(s, &d->n, name, nw, &n) : how == SYMLINK ? fs_symlink(s, &d->n, name, nw, &n) :
	    fs_mknod(s, &d->n, name, nw, &n);
	unlock_put(s, d);
	return e ? e : reply_new(s, w, &n);
}

static int h_mkdir(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t dfid = r32(r);
	const char *name = rstr(r);
	uint32_t mode = r32(r) & 07777, gid = r32(r);
	int e = rd_parsed(r);
	struct fs_new nw = { .mode = S_IFDIR | mode, .gid = gid };
	return e ? e : make(s, w, MKDIR, dfid, name, &nw);
}

static int h_symlink(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t dfid = r32(r);
	const char *name = rstr(r), *target = rstr(r);
	uint32_t gid = r32(r);
	int e = rd_parsed(r);
	struct fs_new nw = { .mode = S_IFLNK | 0777, .gid = gid, .target = target };
	return e ? e : make(s, w, SYMLINK, dfid, name, &nw);
}

static int h_mknod(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t dfid = r32(r);
	const char *name = rstr(r);
	uint32_t mode = r32(r), major = r32(r), minor = r32(r), gid = r32(r);
	int e = rd_parsed(r);
	struct fs_new nw = { .mode = mode & (S_IFMT | 07777), .gid = gid, .rdev = makedev(major, minor) };
	return e ? e : make(s, w, MKNOD, dfid, name, &nw);
}

static int h_link(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t dfid = r32(r), fid = r32(r);
	const char *name = rstr(r);
	int e = rd_parsed(r);
	if (e)
		return e;
	struct p9_fid *d, *f;
	if ((e = lock_files2(s, dfid, fid, &d, &f)))
		return e;
	struct stat self, st;
	if ((e = dir_checks(s, d, name)))
		;
	else if (f->n.opaque)
		e = EXDEV;
	else if (fstat(f->n.fd, &self))
		e = errno;
	else if (S_ISDIR(self.st_mode))
		e = EPERM;
	else if (!(e = fs_locate(s, &f->n))) {
		/* flags 0: the entry itself is linked, a symlink is not followed */
		if (linkat(f->n.parent, f->n.name, d->n.fd, name, 0)) {
			e = errno;
		} else if (fstatat(d->n.fd, name, &st, AT_SYMLINK_NOFOLLOW) || !same_inode(&st, &self)) {
			unlinkat(d->n.fd, name, 0);	/* the name changed under us: undo */
			e = ESTALE;
		}
	}
	unlock_put2(s, d, f);
	return e;
}

static int h_readlink(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t fid = r32(r);
	int e = rd_parsed(r);
	if (e)
		return e;
	struct p9_fid *f = lock_file(s, fid, &e);
	if (!f)
		return e;
	char buf[PATH_MAX];
	size_t n = 0;
	e = fs_readlink(s, &f->n, buf, sizeof(buf), &n);
	unlock_put(s, f);
	if (!e)
		wstr(w, buf, n);
	return e;
}

/* olddir/oldname became newdir/newname: other fids follow, with no fid locked. */
struct renamed {
	struct stat olddir;
	char *oldname;
	int newdir;
};

static int h_rename(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t fid = r32(r), dfid = r32(r);
	const char *name = rstr(r);
	int e = rd_parsed(r);
	if (e)
		return e;
	struct p9_fid *f, *d;
	if ((e = lock_files2(s, fid, dfid, &f, &d)))
		return e;
	struct renamed rn = { .newdir = -1 };
	if (!(e = dir_checks(s, d, name)) && !(e = fs_locate(s, &f->n))) {
		if (fstat(f->n.parent, &rn.olddir) || (rn.newdir = dup_fd(d->n.fd)) < 0)
			e = errno;
		else if (renameat(f->n.parent, f->n.name, d->n.fd, name))
			e = errno;
	}
	if (!e) {	/* the fid's own object moved with it */
		rn.oldname = f->n.name;
		f->n.name = xstrdup(name);
		close(f->n.parent);
		f->n.parent = dup_fd(d->n.fd);
	}
	unlock_put2(s, f, d);
	if (!e)
		fids_renamed(s, &rn.olddir, rn.oldname, rn.newdir, name);
	close_fd(&rn.newdir);
	free(rn.oldname);
	return e;
}

static int h_renameat(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t olddfid = r32(r);
	const char *oldname = rstr(r);
	uint32_t newdfid = r32(r);
	const char *newname = rstr(r);
	int e = rd_parsed(r);
	if (e)
		return e;
	struct p9_fid *od, *nd;
	if ((e = lock_files2(s, olddfid, newdfid, &od, &nd)))
		return e;
	struct renamed rn = { .newdir = -1 };
	if (!(e = dir_checks(s, od, oldname)) && !(e = dir_checks(s, nd, newname))) {
		if (fstat(od->n.fd, &rn.olddir) || (rn.newdir = dup_fd(nd->n.fd)) < 0)
			e = errno;
		else if (renameat(od->n.fd, oldname, nd->n.fd, newname))
			e = errno;
	}
	unlock_put2(s, od, nd);
	if (!e)
		fids_renamed(s, &rn.olddir, oldname, rn.newdir, newname);
	close_fd(&rn.newdir);
	return e;
}

static int h_unlinkat(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t dfid = r32(r);
	const char *name = rstr(r);
	uint32_t flags = r32(r);
	int e = rd_parsed(r);
	if (e)
		return e;
	struct p9_fid *d = lock_dir(s, dfid, name, &e);
	if (!d)
		return e;
	e = unlinkat(d->n.fd, name, flags & P9_DOTL_AT_REMOVEDIR ? AT_REMOVEDIR : 0) ? errno : 0;
	unlock_put(s, d);
	return e;
}

static int h_remove(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t fid = r32(r);
	int e = rd_parsed(r);
	if (e)
		return e;
	struct p9_fid *f = fid_take(s, fid);	/* Tremove clunks the fid whatever happens */
	if (!f)
		return EBADF;
	struct stat st;
	pthread_mutex_lock(&f->lock);
	if (f->kind != FID_FILE)
		e = EBADF;
	else if (s->o.ro)
		e = EROFS;
	else if (!(e = fs_locate(s, &f->n)) && fstat(f->n.fd, &st))
		e = errno;
	else if (!e)
		e = unlinkat(f->n.parent, f->n.name, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) ? errno : 0;
	unlock_put(s, f);
	return e;
}

static int h_fsync(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t fid = r32(r), datasync = r32(r);
	int e = rd_parsed(r);
	if (e)
		return e;
	struct p9_fid *f = lock_file(s, fid, &e);
	if (!f)
		return e;
	bool open = f->open;
	int fd = f->open_fd;
	pthread_mutex_unlock(&f->lock);
	if (!open)
		e = EBADF;
	else if (fd >= 0)
		e = (datasync ? fdatasync(fd) : fsync(fd)) ? errno : 0;
	fid_put(s, f);
	return e;
}

/* Rflush only once the request it names has answered (or there is none). */
static int h_flush(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint16_t oldtag = r16(r);
	int e = rd_parsed(r);
	if (e)
		return e;
	pthread_mutex_lock(&s->flight_lock);
	for (;;) {
		bool busy = false;
		for (struct p9_flight *q = s->flight; q && !busy; q = q->next)
			busy = q->tag == oldtag && !q->flush;	/* flushes never wait on each other */
		if (!busy)
			break;
		pthread_cond_wait(&s->flight_done, &s->flight_lock);
	}
	pthread_mutex_unlock(&s->flight_lock);
	return 0;
}

/* Set the xattr an Txattrcreate fid collected: at its clunk, as 9P2000.L says. */
static int xattr_commit(struct p9_server *s, struct p9_fid *f)
{
	if (f->xfilled != f->xlen)
		return EINVAL;
	struct stat st;
	int fd, e = fs_stat(s, &f->n, &st);
	if (e)
		return e;
	if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
		return EOPNOTSUPP;
	if ((e = fs_reopen(s, &f->n, O_RDONLY, &fd)))
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
	int e = rd_parsed(r);
	if (e)
		return e;
	struct p9_fid *f = fid_take(s, fid);
	if (!f)
		return EBADF;
	pthread_mutex_lock(&f->lock);
	if (f->kind == FID_XATTR_WRITE)
		e = xattr_commit(s, f);
	unlock_put(s, f);
	return e;
}

/* The list (name "") or one value of f's xattrs, into x's buffer, sized to it and counted against the share. */
static int xattr_fetch(struct p9_server *s, struct p9_fid *f, struct p9_fid *x, const char *name)
{
	struct stat st;
	int fd, e = fs_stat(s, &f->n, &st);
	if (e)
		return e;
	if (f->n.opaque || (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)))
		return *name ? ENODATA : 0;	/* symlinks and special files: none we show */
	if ((e = fs_reopen(s, &f->n, O_RDONLY, &fd)))
		return e;
	for (int tries = 0;; tries++) {	/* the value may grow between asking its size and reading it */
		ssize_t n = *name ? fgetxattr(fd, name, NULL, 0) : flistxattr(fd, NULL, 0);
		if (n < 0 || n > XATTR_MAX || tries == 3) {
			e = n < 0 ? errno : E2BIG;
			break;
		}
		if ((size_t)n > x->held && (e = fid_hold_bytes(s, x, n - x->held)))
			break;
		free(x->xbuf);
		x->xbuf = xcalloc(1, n ? n : 1);
		ssize_t got = !n ? 0 : *name ? fgetxattr(fd, name, x->xbuf, n) : flistxattr(fd, (char *)x->xbuf, n);
		if (got >= 0) {
			x->xlen = *name ? (size_t)got : fs_xattr_filter_list((char *)x->xbuf, got);
			break;
		}
		if (errno != ERANGE) {
			e = errno;
			break;
		}
	}
	close(fd);
	return e == ERANGE ? E2BIG : e;
}

static int h_xattrwalk(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t fid = r32(r), newfid = r32(r);
	const char *name = rstr(r);
	int e = rd_parsed(r);
	if (e)
		return e;
	struct p9_fid *f = lock_file(s, fid, &e);
	if (!f)
		return e;
	struct p9_node n;
	node_init(&n);
	struct p9_fid *x = NULL;
	if (fid_exists(s, newfid))
		e = EBADF;
	else if (strlen(name) > XATTR_NAME_MAX)
		e = ERANGE;
	else if (*name && !fs_xattr_readable(name))
		e = ENODATA;	/* trusted.*, security.*, ours: not there for the guest */
	else if (f->n.fd >= 0 && (n.fd = dup_fd(f->n.fd)) < 0)
		e = EMFILE;
	else if ((x = fid_new(s, f->uid, &n, &e)))
		e = xattr_fetch(s, f, x, name);
	unlock_put(s, f);
	node_clear(&n);
	if (e) {
		fid_put(s, x);
		return e;
	}
	x->kind = FID_XATTR_READ;
	uint64_t len = x->xlen;
	if ((e = fid_insert(s, x, newfid)))
		return e;
	fid_put(s, x);
	w64(w, len);
	return 0;
}

static int h_xattrcreate(struct p9_server *s, struct rd *r, struct wr *w)
{
	uint32_t fid = r32(r);
	const char *name = rstr(r);
	uint64_t size = r64(r);
	uint32_t flags = r32(r);
	int e = rd_parsed(r);
	if (e)
		return e;
	struct p9_fid *f = lock_file(s, fid, &e);
	if (!f)
		return e;
	if (f->open)
		e = EBADF;
	else if (s->o.ro)
		e = EROFS;
	else if (f->n.opaque)
		e = EROFS;
	else if (flags & ~(uint32_t)(XATTR_CREATE | XATTR_REPLACE))
		e = EINVAL;
	else if (!*name || strlen(name) > XATTR_NAME_MAX)
		e = ERANGE;
	/* Other namespaces could set capabilities or ACLs on the host; user.lkvm.* is the mapped model's. */
	else if (!fs_xattr_writable(name))
		e = strncmp(name, "user.", 5) ? EOPNOTSUPP : EPERM;
	else if (size > XATTR_MAX)
		e = E2BIG;
	else if (!(e = fid_hold_bytes(s, f, size))) {
		f->kind = FID_XATTR_WRITE;
		f->xbuf = xcalloc(1, size ? size : 1);
		f->xlen = size;
		f->xfilled = 0;
		f->xname = xstrdup(name);
		f->xflags = flags;
	}
	unlock_put(s, f);
	return e;
}

/* A file fid must exist; nothing else is looked at. */
static int file_fid_exists(struct p9_server *s, uint32_t fid)
{
	int e;
	struct p9_fid *f = lock_file(s, fid, &e);
	if (f)
		unlock_put(s, f);
	return e;
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
	int e = rd_parsed(r);
	if (e || (e = file_fid_exists(s, fid)))
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
	int e = rd_parsed(r);
	if (e || (e = file_fid_exists(s, fid)))
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
static int dispatch(struct p9_server *s, const uint8_t *req, size_t len, const struct iovec *xv, int nxv,
		    uint32_t msize, struct wr *w)
{
	if (len < P9_HDR_SIZE)
		return EINVAL;
	uint32_t size = get_le32(req);
	uint8_t type = req[4];
	size_t xlen = 0;
	for (int i = 0; xv && i < nxv; i++)
		xlen += xv[i].iov_len;
	if (size < P9_HDR_SIZE || size > len + xlen)
		return EINVAL;
	if (size > len && type != P9_TWRITE)
		return EINVAL;	/* only a Twrite's data may stay outside req */
	if (type != P9_TVERSION && !msize)
		return EPROTO;	/* no session yet */
	if (msize && size > msize)
		return EMSGSIZE;
	handler h = handlers[type];
	if (!h)
		return EOPNOTSUPP;
	struct rd r = { .p = req + P9_HDR_SIZE, .len = MIN((size_t)size, len) - P9_HDR_SIZE };
	if (size > len) {
		r.xiov = xv;
		r.nxiov = nxv;
		r.xlen = size - len;
	}
	r.scap = r.len + P9_MAX_WALK + 1;	/* every string's bytes plus its NUL */
	r.scratch = xcalloc(1, r.scap);
	int e = h(s, &r, w);
	free(r.scratch);
	return e;
}

size_t p9_handle(struct p9_server *s, const uint8_t *req, size_t len, uint8_t *resp, size_t cap)
{
	size_t inresp;
	return p9_handle_iov(s, req, len, NULL, 0, resp, cap, NULL, 0, &inresp);
}

size_t p9_handle_iov(struct p9_server *s, const uint8_t *req, size_t len, const struct iovec *wdata, int nwdata,
		     uint8_t *resp, size_t cap, const struct iovec *rdata, int nrdata, size_t *inresp)
{
	*inresp = 0;
	if (cap < P9_HDR_SIZE + 4)
		return 0;
	uint8_t type = len > 4 ? req[4] : 0;
	uint16_t tag = len >= P9_HDR_SIZE ? get_le16(req + 5) : P9_NOTAG;
	struct p9_flight me = { .tag = tag, .flush = type == P9_TFLUSH };
	pthread_mutex_lock(&s->flight_lock);
	me.next = s->flight;
	s->flight = &me;
	pthread_mutex_unlock(&s->flight_lock);
	void (*hook)(uint16_t) = __atomic_load_n(&p9_request_hook, __ATOMIC_ACQUIRE);
	if (hook)
		hook(tag);

	uint32_t msize = __atomic_load_n(&s->msize, __ATOMIC_ACQUIRE);
	struct wr w = { .p = resp, .cap = msize ? MIN(cap, (size_t)msize) : cap, .off = P9_HDR_SIZE };
	if (rdata && type == P9_TREAD) {
		w.xiov = rdata;
		w.nxiov = nrdata;
	}
	int e = dispatch(s, req, len, wdata, nwdata, msize, &w);
	if (!e && w.over)
		e = EMSGSIZE;	/* the reply does not fit the client's buffer */

	pthread_mutex_lock(&s->flight_lock);
	for (struct p9_flight **pp = &s->flight; *pp; pp = &(*pp)->next) {
		if (*pp == &me) {
			*pp = me.next;
			break;
		}
	}
	pthread_cond_broadcast(&s->flight_done);
	pthread_mutex_unlock(&s->flight_lock);
	if (e) {
		w.off = P9_HDR_SIZE;
		w.xused = 0;
		put_le32(resp + w.off, e);
		w.off += 4;
		type = P9_RLERROR;
	} else {
		type++;
	}
	put_le32(resp, w.off + w.xused);
	resp[4] = type;
	put_le16(resp + 5, tag);
	*inresp = w.off;
	return w.off + w.xused;
}

struct p9_server *p9_server_new(const char *root, const struct p9_server_opts *o)
{
	struct p9_server *s = xcalloc(1, sizeof(*s));
	s->o = o ? *o : (struct p9_server_opts){ 0 };
	if (!s->o.max_fids)
		s->o.max_fids = P9_DEFAULT_MAX_FIDS;
	if (!s->o.max_bytes)
		s->o.max_bytes = P9_DEFAULT_MAX_BYTES;
	s->root = -1;
	if (s->o.view && !s->o.ro) {
		free(s);
		err_set("9p: %s: a view needs a read-only share", root);
		return NULL;
	}
	if (fs_open_root(s, root) < 0) {
		free(s);
		return NULL;
	}
	s->as_root = geteuid() == 0;
	pthread_mutex_init(&s->fids_lock, NULL);
	pthread_mutex_init(&s->flight_lock, NULL);
	pthread_cond_init(&s->flight_done, NULL);
	return s;
}

void p9_server_free(struct p9_server *s)
{
	if (!s)
		return;
	fid_drop_all(s);
	close_fd(&s->root);
	pthread_mutex_destroy(&s->fids_lock);
	pthread_mutex_destroy(&s->flight_lock);
	pthread_cond_destroy(&s->flight_done);
	free(s);
}
