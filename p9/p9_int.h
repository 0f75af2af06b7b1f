/*
 * Inside the 9P2000.L server: the wire codec (codec.c), the confined host
 * filesystem access (fs.c: the security boundary), the fid table (fid.c)
 * and the message handlers (handlers.c). include/p9.h is the public API.
 */
#ifndef LKVM_P9_INT_H
#define LKVM_P9_INT_H

#include <sys/uio.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include "p9.h"

/* ---- codec.c: reading a T-message, writing an R-message ---- */

#define P9_MAX_IOV 160	/* buffers of one transfer (a virtio chain has fewer) */

struct rd {
	const uint8_t *p;
	size_t len, off;
	char *scratch;		/* NUL-terminated copies of the strings */
	size_t scap, soff;
	bool bad;		/* ran past the end */
	bool nul;		/* a string held a NUL byte */
	/* Twrite from p9_handle_iov: the data is here, not in p, xlen bytes of it */
	const struct iovec *xiov;
	int nxiov;
	size_t xlen;
};

const uint8_t *rd_take(struct rd *r, size_t n);
uint8_t r8(struct rd *r);
uint16_t r16(struct rd *r);
uint32_t r32(struct rd *r);
uint64_t r64(struct rd *r);
const char *rstr(struct rd *r);
/* After a handler read its fields: 0 when the message was whole and its strings clean. */
int rd_parsed(const struct rd *r);

struct wr {
	uint8_t *p;
	size_t cap, off;
	bool over;		/* the reply did not fit */
	/* Tread from p9_handle_iov: the data goes here, xused bytes of it, after p[0, off) */
	const struct iovec *xiov;
	int nxiov;
	size_t xused;
};

uint8_t *wr_put(struct wr *w, size_t n);
void w8(struct wr *w, uint8_t v);
void w16(struct wr *w, uint16_t v);
void w32(struct wr *w, uint32_t v);
void w64(struct wr *w, uint64_t v);
void wstr(struct wr *w, const char *s, size_t n);

/* ---- fs.c: host objects, reached only from the share's root ---- */

/* A host object a fid stands for. Owned by its fid, under the fid's lock. */
struct p9_node {
	int fd;			/* O_PATH of the object; -1 when opaque */
	int parent;		/* O_PATH of the directory it was found in; -1 when unknown */
	char *name;		/* its name there; NULL when unknown */
	bool opaque;		/* a mount point the share does not cross: an empty directory */
	struct stat ost;	/* opaque: what the guest is told about it */
	char *vpath;		/* a share with a view: the path walked from the root ("" for it) */
};

struct p9_server {
	int root;		/* O_PATH of the shared directory */
	dev_t root_dev;
	ino_t root_ino;
	struct p9_server_opts o;	/* max_fids and max_bytes filled in */
	bool use_proc;		/* /proc/self/fd reopens a fid's own inode */
	bool as_root;		/* passthrough: new objects get the guest user's ids */
	uint32_t msize;		/* 0 until a Tversion succeeded (atomic) */

	pthread_mutex_t fids_lock;	/* the table, nfids, bytes */
	unsigned nfids;		/* fids alive, in the table or in a request's hands */
	size_t bytes;		/* xattr buffers held by fids */
	struct p9_fid *fids[256];

	pthread_mutex_t flight_lock;	/* requests being served, for Tflush */
	pthread_cond_t flight_done;
	struct p9_flight *flight;
};

void node_init(struct p9_node *n);
void node_clear(struct p9_node *n);
/* A copy holding its own descriptors; 0 or errno. */
int node_dup(const struct p9_node *from, struct p9_node *to);

bool same_inode(const struct stat *a, const struct stat *b);
bool is_root(const struct p9_server *s, const struct stat *st);
int name_ok(const char *name);
int dup_fd(int fd);
void close_fd(int *fd);

/* Open the share's root; 0 or -1 with err set. */
int fs_open_root(struct p9_server *s, const char *root);
/* The root as a node. */
int fs_root_node(const struct p9_server *s, struct p9_node *out);
/* One step of a walk: name (checked by name_ok, or "..") under dir. */
int fs_walk(const struct p9_server *s, const struct p9_node *dir, const char *name, struct p9_node *out);
/* What the guest sees of n (the mapped model's ids and mode, an opaque mount point's). */
int fs_stat(const struct p9_server *s, struct p9_node *n, struct stat *st);
/* Make n->parent/n->name name n's object again after renames. */
int fs_locate(const struct p9_server *s, struct p9_node *n);
/* Snapshots: the names from the root to n's object, "a/b" ("" for the root); 0 or errno. */
int fs_path(const struct p9_server *s, struct p9_node *n, char *out, size_t cap);
/* A real descriptor (open flags) for n's object: regular files and directories only. */
int fs_reopen(const struct p9_server *s, struct p9_node *n, int flags, int *out);

/* Tsetattr's mode and ids, by the share's model and its rules. */
int fs_chmod(const struct p9_server *s, struct p9_node *n, uint32_t mode);
int fs_chown(const struct p9_server *s, struct p9_node *n, uint32_t uid, uint32_t gid, uint32_t valid);
/* Clear setuid (and group-executable setgid) on fd, as the kernel does for an unprivileged write. */
int fs_kill_suid(int fd);
/* Does fd carry bits a write must clear? */
bool fs_needs_kill_suid(int fd);

/* New objects under dir, by the share's model. out: the new object (lcreate: *openfd too). */
struct fs_new {
	uint32_t mode;		/* type and permission bits the guest asked for */
	uint32_t uid, gid;	/* the guest's ids for it */
	uint64_t rdev;		/* mknod */
	const char *target;	/* symlink */
};
int fs_mkdir(const struct p9_server *s, struct p9_node *dir, const char *name, const struct fs_new *nw,
	     struct p9_node *out);
int fs_mknod(const struct p9_server *s, struct p9_node *dir, const char *name, const struct fs_new *nw,
	     struct p9_node *out);
int fs_symlink(const struct p9_server *s, struct p9_node *dir, const char *name, const struct fs_new *nw,
	       struct p9_node *out);
/* Tlcreate: flags are open(2) flags; *made says whether the file is new. */
int fs_create(const struct p9_server *s, struct p9_node *dir, const char *name, int flags, bool excl,
	      const struct fs_new *nw, struct p9_node *out, int *openfd, bool *made);
int fs_readlink(const struct p9_server *s, struct p9_node *n, char *buf, size_t cap, size_t *len);

/* xattr names the guest may read / set; the list with the others taken out. */
bool fs_xattr_readable(const char *name);
bool fs_xattr_writable(const char *name);
size_t fs_xattr_filter_list(char *list, size_t len);

/* ---- view.c: what of the share the guest may see ---- */

enum view_is { VIEW_HIDDEN, VIEW_SHOWN, VIEW_EMPTY };
/* The object st at path (below the root, "a/b") by the view: hidden, shown, or an empty folder. */
enum view_is view_check(const struct p9_view *v, const char *path, const struct stat *st);
/* May the view's reader list the folder st? */
bool view_may_list(const struct p9_view *v, const struct stat *st);
/* "dir/name" ("name" under the root); the path one level up. Both allocated. */
char *view_child(const char *dir, const char *name);
char *view_parent(const char *path);

/* ---- fid.c: the fid table ---- */

/* FID_GONE: restored from a snapshot, its object not found again: ESTALE to all but Tclunk. */
enum fid_kind { FID_FILE, FID_XATTR_READ, FID_XATTR_WRITE, FID_GONE };

struct p9_fid {
	uint32_t id;
	struct p9_fid *next;	/* hash chain (fids_lock) */
	bool in_table;		/* (fids_lock) */
	int refs;		/* the table's and each request's (atomic) */
	pthread_mutex_t lock;	/* everything below */
	enum fid_kind kind;	/* FID_XATTR_READ is set at creation and never changes */
	struct p9_node n;
	uint32_t uid;		/* n_uname of the attach it descends from */
	bool open;		/* after Tlopen/Tlcreate */
	int open_fd;		/* then: its descriptor (-1 for an opaque directory); never changes */
	int open_flags;
	bool kill_suid;		/* the first write clears setuid/setgid */
	/* xattr fids: the value or list read, or the value being written */
	uint8_t *xbuf;
	size_t xlen;		/* bytes in xbuf (read) / declared size (write) */
	size_t xfilled;		/* write: highest byte written */
	size_t held;		/* bytes of xbuf counted against the share */
	char *xname;
	int xflags;
};

/* The fid with this id, with a reference the caller puts back; NULL if none. */
struct p9_fid *fid_get(struct p9_server *s, uint32_t id);
void fid_put(struct p9_server *s, struct p9_fid *f);
/* A new fid (not yet in the table) for the node n (taken over on success); *err EMFILE past the cap. */
struct p9_fid *fid_new(struct p9_server *s, uint32_t uid, struct p9_node *n, int *err);
/* Enter f under id: EBADF if the id is taken (f is then freed). The caller's reference stays. */
int fid_insert(struct p9_server *s, struct p9_fid *f, uint32_t id);
/* Take the fid out of the table (Tclunk, Tremove): the table's reference passes to the caller. */
struct p9_fid *fid_take(struct p9_server *s, uint32_t id);
/* Every fid out of the table (Tversion, the end). */
void fid_drop_all(struct p9_server *s);
bool fid_exists(struct p9_server *s, uint32_t id);
/* Count n more bytes held by f against the share's cap: 0 or ENOMEM. */
int fid_hold_bytes(struct p9_server *s, struct p9_fid *f, size_t n);
/* Two fids' locks in a fixed order (the same fid once). */
void fid_lock2(struct p9_fid *a, struct p9_fid *b);
void fid_unlock2(struct p9_fid *a, struct p9_fid *b);
/* After a rename of olddir/oldname to newdir/newname: fids that named it follow (no fid lock held). */
void fids_renamed(struct p9_server *s, const struct stat *olddir, const char *oldname, int newdir,
		  const char *newname);

#endif
