/*
 * The fid table. Requests run on several threads at once, so a fid is
 * reference-counted: the table holds one reference and every request using
 * it another, and it is freed (its descriptors closed) by the last one. Each
 * fid has its own lock for its node and state; a request that needs two
 * (Tlink, Trename, Trenameat) takes them in address order. The table's lock
 * is only ever taken after a fid's, never before, and freeing happens with
 * no table lock held.
 *
 * Caps per share: fids (each holds up to P9_FID_DESCRIPTORS descriptors, so
 * the cap bounds the share's descriptors) and the bytes of xattr buffers.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "p9_int.h"
#include "util.h"

#define BUCKET(id) ((id) % 256)

static void fid_free(struct p9_server *s, struct p9_fid *f)
{
	node_clear(&f->n);
	close_fd(&f->open_fd);
	free(f->xbuf);
	free(f->xname);
	pthread_mutex_destroy(&f->lock);
	pthread_mutex_lock(&s->fids_lock);
	s->nfids--;
	s->bytes -= f->held;
	pthread_mutex_unlock(&s->fids_lock);
	free(f);
}

void fid_put(struct p9_server *s, struct p9_fid *f)
{
	if (f && __atomic_sub_fetch(&f->refs, 1, __ATOMIC_ACQ_REL) == 0)
		fid_free(s, f);
}

static struct p9_fid *find_locked(struct p9_server *s, uint32_t id)
{
	for (struct p9_fid *f = s->fids[BUCKET(id)]; f; f = f->next)
		if (f->id == id)
			return f;
	return NULL;
}

struct p9_fid *fid_get(struct p9_server *s, uint32_t id)
{
	pthread_mutex_lock(&s->fids_lock);
	struct p9_fid *f = find_locked(s, id);
	if (f)
		__atomic_add_fetch(&f->refs, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&s->fids_lock);
	return f;
}

bool fid_exists(struct p9_server *s, uint32_t id)
{
	pthread_mutex_lock(&s->fids_lock);
	bool there = find_locked(s, id) != NULL;
	pthread_mutex_unlock(&s->fids_lock);
	return there;
}

struct p9_fid *fid_new(struct p9_server *s, uint32_t uid, struct p9_node *n, int *err)
{
	pthread_mutex_lock(&s->fids_lock);
	bool full = s->nfids >= s->o.max_fids;
	if (!full)
		s->nfids++;
	pthread_mutex_unlock(&s->fids_lock);
	if (full) {
		*err = EMFILE;
		return NULL;
	}
	struct p9_fid *f = xcalloc(1, sizeof(*f));
	pthread_mutex_init(&f->lock, NULL);
	f->refs = 1;
	f->uid = uid;
	f->n = *n;
	node_init(n);	/* taken over */
	f->open_fd = -1;
	*err = 0;
	return f;
}

int fid_insert(struct p9_server *s, struct p9_fid *f, uint32_t id)
{
	pthread_mutex_lock(&s->fids_lock);
	bool taken = id == P9_NOFID || find_locked(s, id);
	if (!taken) {
		f->id = id;
		f->next = s->fids[BUCKET(id)];
		s->fids[BUCKET(id)] = f;
		f->in_table = true;
		__atomic_add_fetch(&f->refs, 1, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&s->fids_lock);
	if (taken) {
		fid_put(s, f);
		return EBADF;
	}
	return 0;
}

static void unlink_locked(struct p9_server *s, struct p9_fid *f)
{
	for (struct p9_fid **pp = &s->fids[BUCKET(f->id)]; *pp; pp = &(*pp)->next) {
		if (*pp == f) {
			*pp = f->next;
			break;
		}
	}
	f->next = NULL;
	f->in_table = false;
}

struct p9_fid *fid_take(struct p9_server *s, uint32_t id)
{
	pthread_mutex_lock(&s->fids_lock);
	struct p9_fid *f = find_locked(s, id);
	if (f)
		unlink_locked(s, f);
	pthread_mutex_unlock(&s->fids_lock);
	return f;
}

void fid_drop_all(struct p9_server *s)
{
	struct p9_fid *all = NULL;
	pthread_mutex_lock(&s->fids_lock);
	for (int b = 0; b < 256; b++) {
		while (s->fids[b]) {
			struct p9_fid *f = s->fids[b];
			unlink_locked(s, f);
			f->next = all;
			all = f;
		}
	}
	pthread_mutex_unlock(&s->fids_lock);
	while (all) {
		struct p9_fid *f = all;
		all = f->next;
		fid_put(s, f);
	}
}

int fid_hold_bytes(struct p9_server *s, struct p9_fid *f, size_t n)
{
	pthread_mutex_lock(&s->fids_lock);
	bool over = n > s->o.max_bytes - s->bytes;
	if (!over) {
		s->bytes += n;
		f->held += n;
	}
	pthread_mutex_unlock(&s->fids_lock);
	return over ? ENOMEM : 0;
}

void fid_lock2(struct p9_fid *a, struct p9_fid *b)
{
	if (a == b) {
		pthread_mutex_lock(&a->lock);
	} else if (a < b) {
		pthread_mutex_lock(&a->lock);
		pthread_mutex_lock(&b->lock);
	} else {
		pthread_mutex_lock(&b->lock);
		pthread_mutex_lock(&a->lock);
	}
}

void fid_unlock2(struct p9_fid *a, struct p9_fid *b)
{
	pthread_mutex_unlock(&a->lock);
	if (a != b)
		pthread_mutex_unlock(&b->lock);
}

void fids_renamed(struct p9_server *s, const struct stat *olddir, const char *oldname, int newdir,
		  const char *newname)
{
	/* References to every fid first, then each one's lock on its own: no lock held twice. */
	pthread_mutex_lock(&s->fids_lock);
	size_t n = 0, cap = s->nfids;
	struct p9_fid **all = xcalloc(cap ? cap : 1, sizeof(*all));
	for (int b = 0; b < 256; b++)
		for (struct p9_fid *f = s->fids[b]; f && n < cap; f = f->next) {
			__atomic_add_fetch(&f->refs, 1, __ATOMIC_RELAXED);
			all[n++] = f;
		}
	pthread_mutex_unlock(&s->fids_lock);
	for (size_t i = 0; i < n; i++) {
		struct p9_fid *f = all[i];
		struct stat st;
		pthread_mutex_lock(&f->lock);
		if (f->n.parent >= 0 && f->n.name && !strcmp(f->n.name, oldname) && !fstat(f->n.parent, &st) &&
		    same_inode(&st, olddir)) {
			int nd = dup_fd(newdir);
			if (nd >= 0) {	/* else fs_locate finds it later */
				close(f->n.parent);
				free(f->n.name);
				f->n.parent = nd;
				f->n.name = xstrdup(newname);
			}
		}
		pthread_mutex_unlock(&f->lock);
		fid_put(s, f);
	}
	free(all);
}
