/*
 * virtio-9p (--9p HOSTDIR,TAG[,...]): a 9P2000.L file server confined to one
 * host directory (p9/), and the virtio device that carries its messages
 * (virtio/9p.c). The server knows nothing about virtio: it turns one
 * T-message into one R-message, from any number of threads at once, so tests
 * and the fuzzer drive it directly.
 */
#ifndef LKVM_P9_H
#define LKVM_P9_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include "util.h"

struct p9_server;

#define P9_MAX_MSIZE (512 * 1024)	/* largest msize Tversion is granted */
#define P9_MIN_MSIZE 4096		/* smaller is refused, as Linux clients do */
#define P9_HDR_SIZE 7			/* size[4] type[1] tag[2] */
#define P9_NOTAG 0xffff
#define P9_NOFID 0xffffffffu
#define P9_NONUNAME 0xffffffffu
#define P9_MAX_WALK 16			/* names per Twalk */

/* Message types: each R-message is its T-message + 1. */
enum p9_type {
	P9_RLERROR = 7,
	P9_TSTATFS = 8, P9_TLOPEN = 12, P9_TLCREATE = 14, P9_TSYMLINK = 16, P9_TMKNOD = 18,
	P9_TRENAME = 20, P9_TREADLINK = 22, P9_TGETATTR = 24, P9_TSETATTR = 26,
	P9_TXATTRWALK = 30, P9_TXATTRCREATE = 32, P9_TREADDIR = 40, P9_TFSYNC = 50,
	P9_TLOCK = 52, P9_TGETLOCK = 54, P9_TLINK = 70, P9_TMKDIR = 72, P9_TRENAMEAT = 74,
	P9_TUNLINKAT = 76, P9_TVERSION = 100, P9_TAUTH = 102, P9_TATTACH = 104,
	P9_TFLUSH = 108, P9_TWALK = 110, P9_TREAD = 116, P9_TWRITE = 118, P9_TCLUNK = 120,
	P9_TREMOVE = 122,
};

/* Qid types. */
#define P9_QTDIR 0x80
#define P9_QTSYMLINK 0x02
#define P9_QTFILE 0x00

/* Tgetattr request_mask / Rgetattr valid. */
#define P9_GETATTR_BASIC 0x7ffULL

/* Tsetattr valid bits. */
#define P9_SETATTR_MODE 0x1
#define P9_SETATTR_UID 0x2
#define P9_SETATTR_GID 0x4
#define P9_SETATTR_SIZE 0x8
#define P9_SETATTR_ATIME 0x10
#define P9_SETATTR_MTIME 0x20
#define P9_SETATTR_CTIME 0x40
#define P9_SETATTR_ATIME_SET 0x80
#define P9_SETATTR_MTIME_SET 0x100

/* Tlopen/Tlcreate flags (the Linux client's P9_DOTL_* values). */
#define P9_DOTL_WRONLY 01
#define P9_DOTL_RDWR 02
#define P9_DOTL_CREATE 0100
#define P9_DOTL_EXCL 0200
#define P9_DOTL_TRUNC 01000
#define P9_DOTL_APPEND 02000
#define P9_DOTL_DSYNC 010000
#define P9_DOTL_DIRECTORY 0200000
#define P9_DOTL_SYNC 04000000
#define P9_DOTL_AT_REMOVEDIR 0x200

#define P9_LOCK_SUCCESS 0
#define P9_LOCK_TYPE_UNLCK 2

/*
 * How the guest's file attributes reach the host:
 *  passthrough  the host files get the guest's mode (never setuid/setgid bits)
 *               and, when lkvm runs as root, the guest's uid and gid;
 *  mapped       host files stay the lkvm user's, mode 0600 (directories 0700);
 *               the guest's mode, ids and device numbers live in user.lkvm.*
 *               xattrs, so a root guest can chown, chmod and mknod freely.
 */
enum p9_model { P9_PASSTHROUGH, P9_MAPPED };

#define P9_DEFAULT_MAX_FIDS 4096	/* per share */
#define P9_FID_DESCRIPTORS 3		/* at most, per fid: the object, its directory, an open file */
#define P9_DEFAULT_MAX_BYTES MiB(8)	/* xattr values and lists held by a share's fids */

/*
 * A view (p9/view.c): the paths below the root a guest may see, and whose
 * reading rights apply. Walks and listings outside it answer ENOENT. Views
 * are built once and outlive every server that uses them.
 */
struct p9_view;
struct p9_view *p9_view_new(void);
/* The file's "allow PATH", "deny PATTERN", "empty PATH" and "reader UID GID [GROUP...]" lines. */
struct p9_view *p9_view_load(const char *file);
int p9_view_allow(struct p9_view *v, const char *path);
int p9_view_deny(struct p9_view *v, const char *pattern);
int p9_view_empty(struct p9_view *v, const char *path);
int p9_view_reader(struct p9_view *v, uid_t uid, gid_t gid, const gid_t *groups, int n);
void p9_view_free(struct p9_view *v);

struct p9_server_opts {
	bool ro;		/* every change is EROFS */
	const struct p9_view *view;	/* NULL: the whole tree (a view needs ro) */
	enum p9_model model;
	bool xdev;		/* walks may enter other mounts (never kernel pseudo-filesystems) */
	unsigned max_fids;	/* 0: P9_DEFAULT_MAX_FIDS */
	size_t max_bytes;	/* 0: P9_DEFAULT_MAX_BYTES */
	bool has_root_fd;	/* root_fd stands for the root (a detached, e.g. id-mapped, mount): */
	int root_fd;		/* the server takes a duplicate; the path names it in messages */
};

/*
 * A server for the directory root (o NULL: a writable passthrough share):
 * NULL with err set if root is not a directory (a symlink is refused) or is
 * a kernel pseudo-filesystem.
 */
struct p9_server *p9_server_new(const char *root, const struct p9_server_opts *o);
/*
 * Handle the T-message in req[0, len) and write the R-message (or Rlerror)
 * into resp[0, cap); return its length, 0 only if cap cannot hold an Rlerror.
 * Safe to call from several threads at once.
 */
size_t p9_handle(struct p9_server *s, const uint8_t *req, size_t len, uint8_t *resp, size_t cap);
/*
 * The same, with the bulk data of reads and writes left where the transport
 * has it (no copy through resp or req): a Twrite's data is wdata (the message
 * in req[0, len) ends where its data begins; the size field counts both), and
 * a Tread's data goes straight into rdata (resp gets the reply up to its
 * data, cap and the session's msize still bounding the whole reply). Both may
 * be NULL. Returns the whole reply's length; *inresp how much of it is in resp
 * (the rest, if any, is in rdata).
 */
size_t p9_handle_iov(struct p9_server *s, const uint8_t *req, size_t len, const struct iovec *wdata, int nwdata,
		     uint8_t *resp, size_t cap, const struct iovec *rdata, int nrdata, size_t *inresp);
/* Free the server; no p9_handle() may be running. */
void p9_server_free(struct p9_server *s);

/* Tests: called with each request's tag as its handling starts (NULL: nothing). */
extern void (*p9_request_hook)(uint16_t tag);

/*
 * Snapshots: the session (msize) and every fid by its path below the root;
 * load walks each path again (a fid whose object is gone answers ESTALE).
 * 0, or -1 with err set.
 */
struct snap_writer;
struct snap_reader;
int p9_server_save(struct p9_server *s, struct snap_writer *w);
int p9_server_load(struct p9_server *s, struct snap_reader *r);

/* The --9p options: one virtio-9p device each (virtio/9p.c). */
#define P9_MAX_SHARES 8
struct share_opt {		/* --9p HOSTDIR,TAG[,ro][,security_model=passthrough|mapped][,xdev] */
	const char *dir, *tag;
	bool ro;
	bool mapped;		/* security_model=mapped (else passthrough) */
	bool xdev;		/* walks may cross into other mounts */
	struct p9_view *view;	/* view=FILE: only what it shows */
	bool has_fd;		/* fd=N: this open descriptor is the root (else dir is opened) */
	int fd;
};
struct p9_opts {
	int n;
	struct share_opt share[P9_MAX_SHARES];
};

#endif
