/*
 * Snapshots of a 9P session: a fid holds descriptors, which do not outlive
 * lkvm, so a snapshot records each fid's object by its path below the root
 * (found from the object itself, so renames since the walk are followed),
 * the user it acts for and how it was opened. A restore walks each path
 * again one name at a time, as Twalk does (the same confinement), and
 * reopens what was open. A fid whose object is gone (deleted, moved out of
 * the share) comes back as FID_GONE, which answers ESTALE to everything but
 * Tclunk; xattr transfers in progress do not survive either.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "p9_int.h"
#include "snapshot.h"
#include "util.h"

#define SNAP_PATH_MAX 4096

/* Open flags a restored fid may ask for again: what Tlopen/Tlcreate keep, without creation. */
#define RESTORE_FLAGS (O_ACCMODE | O_APPEND | O_DSYNC | O_SYNC | O_DIRECTORY | O_NOATIME | O_LARGEFILE)

int p9_server_save(struct p9_server *s, struct snap_writer *w)
{
	char *path = xcalloc(1, SNAP_PATH_MAX);
	pthread_mutex_lock(&s->fids_lock);
	uint32_t n = 0;
	for (int b = 0; b < 256; b++)
		for (struct p9_fid *f = s->fids[b]; f; f = f->next)
			n++;
	snap_u32(w, __atomic_load_n(&s->msize, __ATOMIC_ACQUIRE));
	snap_u32(w, n);
	for (int b = 0; b < 256; b++) {
		for (struct p9_fid *f = s->fids[b]; f; f = f->next) {
			pthread_mutex_lock(&f->lock);
			bool found = f->kind == FID_FILE && fs_path(s, &f->n, path, SNAP_PATH_MAX) == 0;
			snap_u32(w, f->id);
			snap_u32(w, f->uid);
			snap_bool(w, found);
			snap_str(w, found ? path : "");
			snap_bool(w, found && f->open);
			snap_u32(w, found && f->open ? (uint32_t)f->open_flags & RESTORE_FLAGS : 0);
			pthread_mutex_unlock(&f->lock);
		}
	}
	pthread_mutex_unlock(&s->fids_lock);
	free(path);
	return 0;
}

/* Walk path ("a/b", "" for the root) from the root as Twalk would: 0 with *out set, or errno. */
static int walk_path(struct p9_server *s, char *path, struct p9_node *out)
{
	int e = fs_root_node(s, out);
	char *save = NULL;
	for (char *c = strtok_r(path, "/", &save); c && !e; c = strtok_r(NULL, "/", &save)) {
		struct p9_node next;
		e = strcmp(c, "..") && strcmp(c, ".") ? fs_walk(s, out, c, &next) : EINVAL;
		node_clear(out);
		if (!e)
			*out = next;
	}
	if (e)
		node_clear(out);
	return e;
}

/* Reopen a restored fid as it was: 0 or errno. */
static int reopen(struct p9_server *s, struct p9_fid *f, int flags)
{
	bool writes = (flags & O_ACCMODE) != O_RDONLY;
	if (s->o.ro && writes)
		return EROFS;
	f->open = true;
	f->open_flags = flags;
	if (f->n.opaque)	/* an empty directory: nothing to open */
		return writes ? EISDIR : 0;
	int e = fs_reopen(s, &f->n, flags, &f->open_fd);
	if (e) {
		f->open = false;
		f->open_fd = -1;
		return e;
	}
	f->kill_suid = writes && fs_needs_kill_suid(f->open_fd);
	return 0;
}

int p9_server_load(struct p9_server *s, struct snap_reader *r)
{
	uint32_t msize = snap_get_u32(r), n = snap_get_u32(r);
	if (snap_failed(r))
		return -1;
	if ((msize && (msize < P9_MIN_MSIZE || msize > P9_MAX_MSIZE)) || n > s->o.max_fids)
		return snap_bad(r, "9p session of msize %u with %u fids (this share allows %u)", msize, n, s->o.max_fids);
	fid_drop_all(s);
	__atomic_store_n(&s->msize, msize, __ATOMIC_RELEASE);
	char *path = xcalloc(1, SNAP_PATH_MAX);
	int ret = 0;
	for (uint32_t i = 0; i < n && !ret; i++) {
		uint32_t id = snap_get_u32(r), uid = snap_get_u32(r);
		bool found = snap_get_bool(r);
		snap_get_str(r, path, SNAP_PATH_MAX);
		bool open = snap_get_bool(r);
		uint32_t flags = snap_get_u32(r);
		if (snap_failed(r) || id == P9_NOFID || fid_exists(s, id) || (flags & ~(uint32_t)RESTORE_FLAGS) ||
		    (flags & O_ACCMODE) == O_ACCMODE) {
			ret = snap_bad(r, "9p fid %u: a bad or repeated entry", id);
			break;
		}
		struct p9_node node;
		node_init(&node);
		int we = found ? walk_path(s, path, &node) : ESTALE, e;
		struct p9_fid *f = fid_new(s, uid, &node, &e);	/* (takes over node) */
		if (!f) {
			node_clear(&node);
			ret = snap_bad(r, "9p fid %u: no room for it", id);
			break;
		}
		if (we || (open && reopen(s, f, (int)flags))) {
			node_clear(&f->n);
			f->open = false;
			f->kind = FID_GONE;
		}
		if (fid_insert(s, f, id)) {
			ret = snap_bad(r, "9p fid %u: repeated", id);
			break;
		}
		fid_put(s, f);
	}
	free(path);
	if (ret)
		fid_drop_all(s);
	return ret;
}
