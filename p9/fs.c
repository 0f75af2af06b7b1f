/*
 * The host side of a share, and its security boundary.
 *
 * Confinement: every fid holds an O_PATH descriptor of its object, never a
 * path re-resolved later. A walk resolves one name at a time with openat2()
 * (RESOLVE_BENEATH, O_NOFOLLOW, and RESOLVE_NO_XDEV unless the share allows
 * other mounts), names with '/' or "." are refused, and ".." is answered
 * here: the root's parent is the root, anything else's parent is checked to
 * lie under the root. Symlinks are never followed on the host; the guest
 * reads them and walks their targets itself. A mount point the share does not
 * cross, and any kernel pseudo-filesystem (proc, sysfs, debugfs, ...), is
 * shown as an empty read-only directory that nothing enters, so a guest can
 * still mount its own file systems over it. Files are reopened for I/O
 * through /proc/self/fd (the very inode the fid holds, whatever happened to
 * its name) or, without /proc, by name from their directory and checked to be
 * that inode. All of this holds per request, with no lock across requests.
 *
 * Attributes (the share's model, include/p9.h): in passthrough the guest's
 * mode reaches the host without its setuid and setgid bits, writes clear
 * those bits on host files that had them (as the kernel does for an
 * unprivileged writer), device nodes and sockets are refused, and when lkvm
 * runs as root the guest's ids are given to what it creates and chowns. In
 * the mapped model host files stay lkvm's own, 0600 or 0700, and the guest's
 * view lives in user.lkvm.* xattrs; special files and symlinks the guest
 * makes are regular host files carrying their type there. Either way the
 * share's root itself is never chmod'ed or chown'ed, and trusted.*,
 * security.*, system.* and user.lkvm.* xattrs are neither shown nor set.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include "p9_int.h"
#include "util.h"

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452	/* Linux 6.6; older kernel headers lack it */
#endif

#define MAX_ANCESTRY 4096	/* ".." checks give up past this depth */
#define SUID_BITS (S_ISUID | S_ISGID)

/* The mapped model's record of what the guest set (little-endian binary values). */
#define XA_PREFIX "user.lkvm."
#define XA_MODE XA_PREFIX "mode"	/* le32: type and permission bits */
#define XA_UID XA_PREFIX "uid"		/* le32 */
#define XA_GID XA_PREFIX "gid"		/* le32 */
#define XA_RDEV XA_PREFIX "rdev"	/* le64: makedev(major, minor) */

static bool mapped(const struct p9_server *s)
{
	return s->o.model == P9_MAPPED;
}

bool same_inode(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

bool is_root(const struct p9_server *s, const struct stat *st)
{
	return st->st_dev == s->root_dev && st->st_ino == s->root_ino;
}

/* A name the guest may create or look up: one component, not "." or "..". */
int name_ok(const char *name)
{
	if (!*name || !strcmp(name, ".") || !strcmp(name, "..") || strchr(name, '/'))
		return EINVAL;
	return strlen(name) > NAME_MAX ? ENAMETOOLONG : 0;
}

int dup_fd(int fd)
{
	return fcntl(fd, F_DUPFD_CLOEXEC, 0);
}

void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

void node_init(struct p9_node *n)
{
	memset(n, 0, sizeof(*n));
	n->fd = n->parent = -1;
}

void node_clear(struct p9_node *n)
{
	close_fd(&n->fd);
	close_fd(&n->parent);
	free(n->name);
	free(n->vpath);
	node_init(n);
}

int node_dup(const struct p9_node *from, struct p9_node *to)
{
	node_init(to);
	to->opaque = from->opaque;
	to->ost = from->ost;
	if ((from->fd >= 0 && (to->fd = dup_fd(from->fd)) < 0) ||
	    (from->parent >= 0 && (to->parent = dup_fd(from->parent)) < 0)) {
		int e = errno;
		node_clear(to);
		return e;
	}
	to->name = from->name ? xstrdup(from->name) : NULL;
	to->vpath = from->vpath ? xstrdup(from->vpath) : NULL;
	return 0;
}

/* ---- resolving names ---- */

/*
 * openat2 for one component. Callers have already refused '/' and give ".."
 * only on purpose, so where openat2 is missing (Linux < 5.6, valgrind < 3.21)
 * openat with O_NOFOLLOW resolves exactly the same single step; a mount
 * crossing is then told by the device number (a bind mount of the same file
 * system is not).
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
	fd = openat(dirfd, name, (int)flags | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
	struct stat st, dst;
	if (fd >= 0 && (resolve & RESOLVE_NO_XDEV) && strcmp(name, "..") && !fstat(fd, &st) &&
	    !fstat(dirfd, &dst) && st.st_dev != dst.st_dev) {
		close(fd);
		errno = EXDEV;
		return -1;
	}
	return fd;
}

static uint64_t walk_resolve(const struct p9_server *s)
{
	return RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | (s->o.xdev ? 0 : RESOLVE_NO_XDEV);
}

/*
 * Kernel pseudo-filesystems: their files are the kernel's state (a write to
 * /proc/sys or /sys can reconfigure the host; reading a debugfs file can have
 * effects), never a user's data. devtmpfs says TMPFS_MAGIC and cannot be told
 * apart here; its device nodes are never opened (fs_reopen, fs_create).
 */
static bool pseudo_fs(int fd)
{
	struct statfs sf;
	if (fstatfs(fd, &sf))
		return true;
	switch ((unsigned long)sf.f_type) {
	case PROC_SUPER_MAGIC: case SYSFS_MAGIC: case DEBUGFS_MAGIC: case TRACEFS_MAGIC:
	case SECURITYFS_MAGIC: case CGROUP_SUPER_MAGIC: case CGROUP2_SUPER_MAGIC: case BPF_FS_MAGIC:
	case DEVPTS_SUPER_MAGIC: case SELINUX_MAGIC: case SMACK_MAGIC: case EFIVARFS_MAGIC:
	case PSTOREFS_MAGIC: case BINFMTFS_MAGIC: case AUTOFS_SUPER_MAGIC: case NSFS_MAGIC:
	case 0x62656570:	/* configfs */
	case 0x65735543:	/* fusectl */
	case 0x7655821:		/* resctrl */
	case 0x19800202:	/* mqueue */
		return true;
	}
	return false;
}

/* dir/name is a mount point the share does not enter: an empty directory in its place. */
static int opaque_node(int dirfd, const char *name, struct p9_node *out)
{
	int fd = openat2_fd(dirfd, name, O_PATH | O_NOFOLLOW, 0, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS);
	struct stat st;
	if (fd < 0 || fstat(fd, &st)) {	/* the mounted root's identity gives its qid */
		int e = errno;
		close_fd(&fd);
		return e;
	}
	close(fd);
	node_init(out);
	out->opaque = true;
	out->ost = (struct stat){
		.st_dev = st.st_dev, .st_ino = st.st_ino, .st_mode = S_IFDIR | 0555, .st_nlink = 2,
		.st_blksize = 4096, .st_atim = st.st_atim, .st_mtim = st.st_mtim, .st_ctim = st.st_ctim,
	};
	return 0;
}

/* One name under dirfd, as an O_PATH descriptor of whatever it is (symlinks too). */
static int lookup(const struct p9_server *s, int dirfd, const char *name, struct p9_node *out)
{
	node_init(out);
	int fd = openat2_fd(dirfd, name, O_PATH | O_NOFOLLOW, 0, walk_resolve(s));
	if (fd < 0)
		return errno == EXDEV && !s->o.xdev ? opaque_node(dirfd, name, out) : errno;
	if (s->o.xdev) {
		struct stat st, dst;
		if (fstat(fd, &st) || fstat(dirfd, &dst)) {
			int e = errno;
			close(fd);
			return e;
		}
		if (st.st_dev != dst.st_dev && pseudo_fs(fd)) {
			close(fd);
			return opaque_node(dirfd, name, out);
		}
	}
	out->fd = fd;
	return 0;
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

int fs_root_node(const struct p9_server *s, struct p9_node *out)
{
	node_init(out);
	out->fd = dup_fd(s->root);
	if (out->fd >= 0 && s->o.view)
		out->vpath = xstrdup("");
	return out->fd < 0 ? errno : 0;
}

/*
 * The share's view on the node just walked to (name under dir): hidden is
 * ENOENT, an "empty" path becomes an opaque folder (as a mount point the
 * share does not cross), anything else carries its path for the next step.
 */
static int view_step(const struct p9_server *s, const struct p9_node *dir, const char *name, struct p9_node *out)
{
	char *path = view_child(dir->vpath ? dir->vpath : "", name);
	struct stat st;
	if (out->opaque)
		st = out->ost;
	else if (fstat(out->fd, &st)) {
		free(path);
		return errno;
	}
	switch (view_check(s->o.view, path, &st)) {
	case VIEW_HIDDEN:
		free(path);
		return ENOENT;
	case VIEW_EMPTY:
		if (!out->opaque) {
			close_fd(&out->fd);
			out->opaque = true;
			out->ost = (struct stat){
				.st_dev = st.st_dev, .st_ino = st.st_ino, .st_mode = S_IFDIR | 0555, .st_nlink = 2,
				.st_blksize = 4096, .st_atim = st.st_atim, .st_mtim = st.st_mtim, .st_ctim = st.st_ctim,
			};
		}
		break;
	case VIEW_SHOWN:
		break;
	}
	out->vpath = path;
	return 0;
}

int fs_walk(const struct p9_server *s, const struct p9_node *dir, const char *name, struct p9_node *out)
{
	node_init(out);
	bool up = !strcmp(name, "..");
	if (up && dir->vpath)	/* a view: the path walked, one level up (the root's parent is the root) */
		out->vpath = view_parent(dir->vpath);
	if (dir->opaque) {	/* nothing inside; ".." is where it was found */
		if (!up)
			return ENOENT;
		out->fd = dup_fd(dir->parent);
		if (out->fd < 0) {
			int e = errno;
			node_clear(out);
			return e;
		}
		return 0;
	}
	if (up) {
		int e = walk_dotdot(s, dir->fd, &out->fd);
		if (e)
			node_clear(out);
		return e;
	}
	int e = name_ok(name);
	if (e || (e = lookup(s, dir->fd, name, out)))
		return e;
	out->parent = dup_fd(dir->fd);
	if (out->parent < 0) {
		e = errno;
		node_clear(out);
		return e;
	}
	out->name = xstrdup(name);
	if (s->o.view && (e = view_step(s, dir, name, out)))
		node_clear(out);
	return e;
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
	/*
	 * Pass 0 matches d_ino; a mount point's d_ino is the covered folder's,
	 * not the mounted root's (xdev shares cross them), so a folder not found
	 * so is looked for once more among the subfolders, by stat.
	 */
	for (int pass = 0; pass < (S_ISDIR(self->st_mode) ? 2 : 1) && !found; pass++) {
		if (pass && lseek(dfd, 0, SEEK_SET) < 0)
			break;
		while (!found && (n = getdents64(dfd, buf, sizeof(buf))) > 0) {
			for (ssize_t off = 0; off < n && !found;) {
				struct dirent64 *d = (struct dirent64 *)(buf + off);
				struct stat st;
				off += d->d_reclen;
				if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
					continue;
				if (pass ? d->d_ino == self->st_ino || (d->d_type != DT_DIR && d->d_type != DT_UNKNOWN)
					 : d->d_ino != self->st_ino)
					continue;
				if (!fstatat(parent, d->d_name, &st, AT_SYMLINK_NOFOLLOW) && same_inode(&st, self))
					found = xstrdup(d->d_name);
			}
		}
	}
	close(dfd);
	return found;
}

/*
 * Make n->parent/n->name name n's object again (renames by other fids or on
 * the host move it). Directories find their parent through ".."; other
 * objects are looked for in the directory they were found in.
 */
int fs_locate(const struct p9_server *s, struct p9_node *n)
{
	struct stat self, st;
	if (n->opaque)
		return EBUSY;	/* a mount point */
	if (fstat(n->fd, &self))
		return errno;
	if (is_root(s, &self))
		return EBUSY;
	if (n->parent >= 0 && n->name && !fstatat(n->parent, n->name, &st, AT_SYMLINK_NOFOLLOW) &&
	    same_inode(&st, &self))
		return 0;
	int parent = -1;
	if (S_ISDIR(self.st_mode)) {
		int e = walk_dotdot(s, n->fd, &parent);
		if (e)
			return e;
	} else if (n->parent >= 0) {
		parent = dup_fd(n->parent);
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
	close_fd(&n->parent);
	free(n->name);
	n->parent = parent;
	n->name = name;
	return 0;
}

/*
 * Snapshots: "" for the root, else "a/b/c", the names from the root down to
 * n's object, found from the object itself (renames since the walk are
 * followed). An opaque mount point is named by where it was found.
 */
int fs_path(const struct p9_server *s, struct p9_node *n, char *out, size_t cap)
{
	enum { MAX_DEPTH = 256 };
	char *names[MAX_DEPTH];
	int depth = 0, e = 0, cur = -1;
	struct stat st;
	out[0] = 0;
	if (n->opaque) {
		if (n->parent < 0 || !n->name)
			return ESTALE;
		names[depth++] = xstrdup(n->name);
		cur = dup_fd(n->parent);
	} else if (fstat(n->fd, &st)) {
		return errno;
	} else if (is_root(s, &st)) {
		return 0;
	} else if (S_ISDIR(st.st_mode)) {
		cur = dup_fd(n->fd);
	} else {
		if (st.st_nlink == 0)
			return ESTALE;	/* deleted while the guest holds it */
		if ((e = fs_locate(s, n)))
			return e;
		names[depth++] = xstrdup(n->name);
		cur = dup_fd(n->parent);
	}
	if (cur < 0)
		e = errno;
	while (!e) {
		struct stat cst;
		if (fstat(cur, &cst)) {
			e = errno;
			break;
		}
		if (is_root(s, &cst))
			break;
		int up;
		if (depth == MAX_DEPTH) {
			e = ENAMETOOLONG;
			break;
		}
		if ((e = walk_dotdot(s, cur, &up)))
			break;
		char *name = find_name(up, &cst);
		close(cur);
		cur = up;
		if (!name)
			e = ESTALE;
		else
			names[depth++] = name;
	}
	close_fd(&cur);
	size_t len = 0;
	for (int i = depth - 1; i >= 0 && !e; i--) {
		size_t k = strlen(names[i]);
		if (len + k + 2 > cap) {
			e = ENAMETOOLONG;
			break;
		}
		if (len)
			out[len++] = '/';
		memcpy(out + len, names[i], k + 1);
		len += k;
	}
	for (int i = 0; i < depth; i++)
		free(names[i]);
	return e;
}

/*
 * /proc/self/fd/N of one of our descriptors: the very inode it holds, with
 * no name involved (resolved anew each time: a forked child has its own).
 */
static void proc_path(char *buf, size_t cap, int fd)
{
	snprintf(buf, cap, "/proc/self/fd/%d", fd);
}

/*
 * After a call through proc_path() that returned r: was it refused because
 * /proc itself is gone (lkvm jailed in an empty root after the share was
 * opened)? Then the caller goes by name, as without /proc.
 */
static bool proc_gone(int r)
{
	if (r >= 0 || errno != ENOENT)
		return false;
	int fd = open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC);	/* openat: on the seccomp list */
	if (fd >= 0)
		close(fd);
	errno = ENOENT;
	return fd < 0;
}

/*
 * A real descriptor (flags: access mode and status flags) for n's object:
 * directories reopen themselves through "."; a regular file must still be
 * found by its name in its directory (else ESTALE: moved away on the host),
 * and is then opened through /proc/self/fd, or without /proc by that name
 * without following symlinks, and must turn out to be the same inode. So a
 * name swapped meanwhile for a fifo or a device node never gets it opened.
 * Nothing else is opened on the host (symlinks: ELOOP; device nodes, fifos
 * and sockets: EOPNOTSUPP).
 */
int fs_reopen(const struct p9_server *s, struct p9_node *n, int flags, int *out)
{
	struct stat self, st;
	if (n->opaque)
		return EACCES;
	if (fstat(n->fd, &self))
		return errno;
	if (S_ISDIR(self.st_mode)) {
		if (s->o.view && !view_may_list(s->o.view, &self))
			return EACCES;	/* its reader could not list it on the host */
		*out = openat2_fd(n->fd, ".", flags | O_DIRECTORY, 0, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
		return *out < 0 ? errno : 0;
	}
	if (S_ISLNK(self.st_mode))
		return ELOOP;
	if (!S_ISREG(self.st_mode))
		return EOPNOTSUPP;
	int fd, e = fs_locate(s, n);
	if (e)
		return e;
	fd = -1;
	if (s->use_proc) {
		char path[32];
		proc_path(path, sizeof(path), n->fd);
		fd = open(path, flags | O_CLOEXEC | O_NOCTTY);
	}
	if (!s->use_proc || proc_gone(fd)) {
		/* O_NONBLOCK: if the name became a fifo meanwhile, opening it must not hang. */
		fd = openat2_fd(n->parent, n->name, flags | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, 0,
				RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
	}
	if (fd < 0)
		return errno;
	if (fstat(fd, &st) || !same_inode(&st, &self)) {
		close(fd);
		return ESTALE;
	}
	*out = fd;
	return 0;
}

/* ---- the mapped model's attributes ---- */

struct meta {
	uint32_t mode, uid, gid;
	uint64_t rdev;
};
enum { META_MODE = 1, META_UID = 2, META_GID = 4, META_RDEV = 8 };

static int meta_set(int fd, const struct meta *m, unsigned which)
{
	uint8_t b[8];
	int e = 0;
	if (!e && (which & META_MODE) && (put_le32(b, m->mode), fsetxattr(fd, XA_MODE, b, 4, 0)))
		e = errno;
	if (!e && (which & META_UID) && (put_le32(b, m->uid), fsetxattr(fd, XA_UID, b, 4, 0)))
		e = errno;
	if (!e && (which & META_GID) && (put_le32(b, m->gid), fsetxattr(fd, XA_GID, b, 4, 0)))
		e = errno;
	if (!e && (which & META_RDEV) && (put_le64(b, m->rdev), fsetxattr(fd, XA_RDEV, b, 8, 0)))
		e = errno;
	return e;
}

/* The type the guest may see for a host object of type host (a file may stand for anything but a directory). */
static mode_t guest_type(mode_t host, uint32_t stored)
{
	mode_t t = stored & S_IFMT;
	if (S_ISREG(host) && (t == S_IFREG || t == S_IFLNK || t == S_IFCHR || t == S_IFBLK || t == S_IFIFO ||
			      t == S_IFSOCK))
		return t;
	return host & S_IFMT;
}

/* Overlay what the guest set on st (the host's view of fd); what is missing stays the host's. */
static void meta_overlay(int fd, struct stat *st)
{
	uint8_t b[8];
	if (fgetxattr(fd, XA_MODE, b, 4) == 4) {
		uint32_t m = get_le32(b);
		st->st_mode = guest_type(st->st_mode, m) | (m & 07777);
	}
	if (fgetxattr(fd, XA_UID, b, 4) == 4)
		st->st_uid = get_le32(b);
	if (fgetxattr(fd, XA_GID, b, 4) == 4)
		st->st_gid = get_le32(b);
	if ((S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode)) && fgetxattr(fd, XA_RDEV, b, 8) == 8)
		st->st_rdev = get_le64(b);
}

/* A descriptor xattrs can be read and set through: regular files and directories only. */
static int meta_fd(const struct p9_server *s, struct p9_node *n, const struct stat *host, int *out)
{
	if (!S_ISREG(host->st_mode) && !S_ISDIR(host->st_mode))
		return EOPNOTSUPP;
	return fs_reopen(s, n, O_RDONLY, out);
}

int fs_stat(const struct p9_server *s, struct p9_node *n, struct stat *st)
{
	if (n->opaque) {
		*st = n->ost;
		return 0;
	}
	if (fstat(n->fd, st))
		return errno;
	int fd;
	if (mapped(s) && !meta_fd(s, n, st, &fd)) {	/* unreadable: the host's view */
		meta_overlay(fd, st);
		close(fd);
	}
	return 0;
}

/* ---- changing attributes ---- */

static int fchmodat2_empty(int fd, mode_t mode)
{
	return syscall(SYS_fchmodat2, fd, "", mode, AT_EMPTY_PATH) ? errno : 0;
}

/*
 * chmod for kernels before 6.6 without /proc (no fchmodat2, and fchmod
 * refuses O_PATH): through a descriptor of dirfd/name, which must be self.
 */
static int chmod_by_name(int dirfd, const char *name, const struct stat *self, mode_t mode)
{
	if (!S_ISREG(self->st_mode) && !S_ISDIR(self->st_mode) && !S_ISFIFO(self->st_mode))
		return EOPNOTSUPP;	/* opening a device node could have effects */
	const uint64_t resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS;
	int fd = openat2_fd(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, 0, resolve);
	if (fd < 0 && errno == EACCES && S_ISREG(self->st_mode))
		fd = openat2_fd(dirfd, name, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, 0, resolve);
	if (fd < 0)
		return errno;
	struct stat st;
	int e = fstat(fd, &st) ? errno : !same_inode(&st, self) ? ESTALE : fchmod(fd, mode) ? errno : 0;
	close(fd);
	return e;
}

/* The host mode of n's object (not a symlink) becomes mode; by name only where it is still there. */
static int host_chmod(const struct p9_server *s, struct p9_node *n, const struct stat *st, mode_t mode)
{
	int e = fchmodat2_empty(n->fd, mode);
	if (e != ENOSYS)
		return e;
	if (!S_ISDIR(st->st_mode) && (e = fs_locate(s, n)))
		return e;
	if (s->use_proc) {	/* the inode itself, through its magic link */
		char path[32];
		proc_path(path, sizeof(path), n->fd);
		int r = fchmodat(AT_FDCWD, path, mode, 0);
		if (!proc_gone(r))
			return r ? errno : 0;
	}
	if (S_ISDIR(st->st_mode))
		return chmod_by_name(n->fd, ".", st, mode);
	return chmod_by_name(n->parent, n->name, st, mode);
}

int fs_chmod(const struct p9_server *s, struct p9_node *n, uint32_t mode)
{
	struct stat st;
	if (n->opaque)
		return EROFS;
	if (fstat(n->fd, &st))
		return errno;
	if (S_ISLNK(st.st_mode))
		return EOPNOTSUPP;	/* Linux has no mode of a symlink's own */
	if (mapped(s)) {
		int fd, e = meta_fd(s, n, &st, &fd);
		if (e)
			return e;
		struct stat gst = st;
		meta_overlay(fd, &gst);
		struct meta m = { .mode = (gst.st_mode & S_IFMT) | (mode & 07777) };
		e = meta_set(fd, &m, META_MODE);
		close(fd);
		return e;
	}
	return host_chmod(s, n, &st, mode & 07777 & ~SUID_BITS);
}

bool fs_needs_kill_suid(int fd)
{
	struct stat st;
	return !fstat(fd, &st) && S_ISREG(st.st_mode) &&
	       ((st.st_mode & S_ISUID) || (st.st_mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP));
}

int fs_kill_suid(int fd)
{
	struct stat st;
	if (fstat(fd, &st))
		return errno;
	mode_t keep = st.st_mode & 07777 & ~S_ISUID;
	if ((keep & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP))
		keep &= ~S_ISGID;
	if (keep == (st.st_mode & 07777))
		return 0;
	return fchmod(fd, keep) ? errno : 0;
}

int fs_chown(const struct p9_server *s, struct p9_node *n, uint32_t uid, uint32_t gid, uint32_t valid)
{
	struct stat st;
	if (n->opaque)
		return EROFS;
	if (fstat(n->fd, &st))
		return errno;
	if (mapped(s)) {
		int fd, e = meta_fd(s, n, &st, &fd);
		if (e)
			return e;
		struct meta m = { .uid = uid, .gid = gid };
		e = meta_set(fd, &m, (valid & P9_SETATTR_UID ? META_UID : 0) | (valid & P9_SETATTR_GID ? META_GID : 0));
		close(fd);
		return e;
	}
	uid_t u = valid & P9_SETATTR_UID ? uid : (uid_t)-1;
	gid_t g = valid & P9_SETATTR_GID ? gid : (gid_t)-1;
	if (fchownat(n->fd, "", u, g, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))
		return errno;
	/* The kernel drops setuid on a chown; a host file's setgid may survive it. */
	int fd;
	if (S_ISREG(st.st_mode) && (st.st_mode & SUID_BITS) && !fs_reopen(s, n, O_RDONLY, &fd)) {
		fs_kill_suid(fd);
		close(fd);
	}
	return 0;
}

/* ---- new objects ---- */

/* The new object dir/name (just made: a rename may still race us) as a node, checked against want if given. */
static int new_node(const struct p9_server *s, struct p9_node *dir, const char *name, const struct stat *want,
		    struct p9_node *out)
{
	int e = lookup(s, dir->fd, name, out);
	if (e)
		return e;
	struct stat st;
	if (out->opaque || fstat(out->fd, &st) || (want && !same_inode(&st, want))) {
		node_clear(out);
		return ESTALE;
	}
	out->parent = dup_fd(dir->fd);
	out->name = xstrdup(name);
	if (out->parent < 0) {
		e = errno;
		node_clear(out);
	}
	return e;
}

/* Passthrough: the exact mode asked for (lkvm's umask and an inherited setgid undone), the guest's ids as root. */
static void finish_host(const struct p9_server *s, struct p9_node *n, mode_t perm, const struct fs_new *nw)
{
	struct stat st;
	if (fstat(n->fd, &st))
		return;
	if (!S_ISLNK(st.st_mode) && (st.st_mode & 07777) != perm && host_chmod(s, n, &st, perm)) {
		/* the umask stays applied: stricter, not wrong */
	}
	if (s->as_root && fchownat(n->fd, "", nw->uid == P9_NONUNAME ? (uid_t)-1 : nw->uid, nw->gid,
				   AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW)) {
		/* best effort, as the object exists either way */
	}
}

/* Mapped: a host file of lkvm's, 0600, standing for what the guest made; its open descriptor in *fd. */
static int mapped_file(struct p9_node *dir, const char *name, const struct fs_new *nw, int flags, int *fd)
{
	*fd = openat2_fd(dir->fd, name, flags | O_CREAT | O_EXCL | O_NOFOLLOW, 0600,
			 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
	if (*fd < 0)
		return errno;
	struct stat st;
	struct meta m = { .mode = nw->mode, .uid = nw->uid, .gid = nw->gid, .rdev = nw->rdev };
	unsigned which = META_MODE | META_UID | META_GID | (S_ISCHR(nw->mode) || S_ISBLK(nw->mode) ? META_RDEV : 0);
	int e = fstat(*fd, &st) ? errno : 0;
	if (!e && (st.st_mode & 07777) != 0600 && fchmod(*fd, 0600))
		e = errno;
	if (!e)
		e = meta_set(*fd, &m, which);
	if (e) {	/* no xattrs here: undo, the guest's view could not be kept */
		unlinkat(dir->fd, name, 0);
		close_fd(fd);
	}
	return e;
}

int fs_mkdir(const struct p9_server *s, struct p9_node *dir, const char *name, const struct fs_new *nw,
	     struct p9_node *out)
{
	mode_t perm = mapped(s) ? 0700 : nw->mode & 01777;
	if (mkdirat(dir->fd, name, perm))
		return errno;
	int e = new_node(s, dir, name, NULL, out);
	if (e)
		return e;
	if (!mapped(s)) {
		finish_host(s, out, perm, nw);
		return 0;
	}
	struct stat st;
	int fd = -1;
	struct meta m = { .mode = S_IFDIR | (nw->mode & 07777), .uid = nw->uid, .gid = nw->gid };
	e = fstat(out->fd, &st) ? errno : 0;
	if (!e && (st.st_mode & 07777) != 0700)
		e = host_chmod(s, out, &st, 0700);
	if (!e)
		e = fs_reopen(s, out, O_RDONLY, &fd);
	if (!e)
		e = meta_set(fd, &m, META_MODE | META_UID | META_GID);
	close_fd(&fd);
	if (e) {
		unlinkat(dir->fd, name, AT_REMOVEDIR);
		node_clear(out);
	}
	return e;
}

int fs_mknod(const struct p9_server *s, struct p9_node *dir, const char *name, const struct fs_new *nw,
	     struct p9_node *out)
{
	mode_t type = nw->mode & S_IFMT;
	if (mapped(s)) {
		if (type != 0 && type != S_IFREG && type != S_IFIFO && type != S_IFSOCK && type != S_IFCHR &&
		    type != S_IFBLK)
			return EINVAL;
		struct fs_new m = *nw;
		m.mode = (type ? type : S_IFREG) | (nw->mode & 07777);
		int fd, e = mapped_file(dir, name, &m, O_WRONLY, &fd);
		if (e)
			return e;
		struct stat st;
		e = fstat(fd, &st) ? errno : new_node(s, dir, name, &st, out);
		close(fd);
		return e;
	}
	if (type != 0 && type != S_IFREG && type != S_IFIFO)
		return EPERM;	/* no device nodes or sockets on the host */
	mode_t perm = nw->mode & 01777;
	if (mknodat(dir->fd, name, (type ? type : S_IFREG) | perm, 0))
		return errno;
	int e = new_node(s, dir, name, NULL, out);
	if (!e)
		finish_host(s, out, perm, nw);
	return e;
}

int fs_symlink(const struct p9_server *s, struct p9_node *dir, const char *name, const struct fs_new *nw,
	       struct p9_node *out)
{
	if (!mapped(s)) {
		if (symlinkat(nw->target, dir->fd, name))	/* stored as given; the guest resolves it */
			return errno;
		int e = new_node(s, dir, name, NULL, out);
		if (!e)
			finish_host(s, out, 0, nw);
		return e;
	}
	/* Mapped: a file holding the target, so that it can carry the guest's owner. */
	struct fs_new m = *nw;
	m.mode = S_IFLNK | 0777;
	size_t len = strlen(nw->target);
	int fd, e = mapped_file(dir, name, &m, O_WRONLY, &fd);
	if (e)
		return e;
	struct stat st;
	if (pwrite(fd, nw->target, len, 0) != (ssize_t)len || fstat(fd, &st)) {
		e = errno ? errno : EIO;
		unlinkat(dir->fd, name, 0);
		close(fd);
		return e;
	}
	e = new_node(s, dir, name, &st, out);
	close(fd);
	return e;
}

int fs_create(const struct p9_server *s, struct p9_node *dir, const char *name, int flags, bool excl,
	      const struct fs_new *nw, struct p9_node *out, int *openfd, bool *made)
{
	node_init(out);
	*openfd = -1;
	*made = false;
	int fd = -1, e;
	/* Exclusive first, to know whether the file is new (and gets its mode). */
	if (mapped(s)) {
		struct fs_new m = *nw;
		m.mode = S_IFREG | (nw->mode & 07777);
		e = mapped_file(dir, name, &m, flags, &fd);
	} else {
		fd = openat2_fd(dir->fd, name, flags | O_CREAT | O_EXCL | O_NOFOLLOW, nw->mode & 01777,
				RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
		e = fd < 0 ? errno : 0;
	}
	struct stat st;
	if (!e) {
		*made = true;
		if (fstat(fd, &st) || (e = new_node(s, dir, name, &st, out))) {
			e = e ? e : errno;
			close(fd);
			return e;
		}
		if (!mapped(s))
			finish_host(s, out, nw->mode & 01777, nw);
		*openfd = fd;
		return 0;
	}
	if (e != EEXIST || excl)
		return e;
	/* It exists: what it is decides before anything is opened (a device node or fifo never is). */
	if ((e = lookup(s, dir->fd, name, out)))
		return e;
	if (out->opaque) {
		node_clear(out);
		return EISDIR;
	}
	out->parent = dup_fd(dir->fd);
	out->name = xstrdup(name);
	if (out->parent < 0 || (e = fs_stat(s, out, &st))) {
		e = e ? e : errno;
		node_clear(out);
		return e;
	}
	e = S_ISREG(st.st_mode) ? fs_reopen(s, out, flags, openfd) : S_ISDIR(st.st_mode) ? EISDIR :
	    S_ISLNK(st.st_mode) ? ELOOP : EOPNOTSUPP;
	if (e)
		node_clear(out);
	return e;
}

int fs_readlink(const struct p9_server *s, struct p9_node *n, char *buf, size_t cap, size_t *len)
{
	struct stat st;
	int e = fs_stat(s, n, &st);
	if (e)
		return e;
	if (!S_ISLNK(st.st_mode))
		return EINVAL;
	ssize_t k;
	if (n->opaque || fstat(n->fd, &st))
		return EINVAL;
	if (S_ISLNK(st.st_mode)) {
		k = readlinkat(n->fd, "", buf, cap);
	} else {	/* mapped: the file holds the target */
		int fd;
		if ((e = fs_reopen(s, n, O_RDONLY, &fd)))
			return e;
		k = pread(fd, buf, cap, 0);
		close(fd);
	}
	if (k < 0)
		return errno;
	if ((size_t)k == cap)
		return ENAMETOOLONG;
	*len = k;
	return 0;
}

/* ---- xattr names ---- */

bool fs_xattr_readable(const char *name)
{
	return !strncmp(name, "user.", 5) && strncmp(name, XA_PREFIX, strlen(XA_PREFIX));
}

bool fs_xattr_writable(const char *name)
{
	return fs_xattr_readable(name);
}

size_t fs_xattr_filter_list(char *list, size_t len)
{
	size_t out = 0;
	for (size_t i = 0; i < len;) {
		size_t n = strnlen(list + i, len - i);
		if (fs_xattr_readable(list + i)) {
			memmove(list + out, list + i, n);
			list[out + n] = 0;
			out += n + 1;
		}
		i += n + 1;
	}
	return out;
}

/* ---- the root ---- */

int fs_open_root(struct p9_server *s, const char *root)
{
	/* O_NOFOLLOW: a symlink put in the share's place does not move it elsewhere. */
	int fd = s->o.has_root_fd ? fcntl(s->o.root_fd, F_DUPFD_CLOEXEC, 0) :
				    open(root, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) || !S_ISDIR(st.st_mode)) {
		if (fd >= 0)
			errno = ENOTDIR;
		err_errno("9p: %s", root);
		close_fd(&fd);
		return -1;
	}
	if (pseudo_fs(fd)) {
		close(fd);
		return err_set("9p: %s: a kernel pseudo-filesystem (proc, sysfs, ...) cannot be shared", root);
	}
	s->root = fd;
	s->root_dev = st.st_dev;
	s->root_ino = st.st_ino;
	struct statfs sf;	/* the kernel's /proc, or names are used instead */
	s->use_proc = !statfs("/proc/self/fd", &sf) && sf.f_type == PROC_SUPER_MAGIC;
	return 0;
}
