/*
 * lkvm sandbox --snapshot-cache (cmd/sandbox_cache.c): VMs saved at the
 * agent's ready point, one per kernel, options and lkvm binary.
 *
 * The cache folder (default $XDG_CACHE_HOME/lkvm/sandbox, else
 * ~/.cache/lkvm/sandbox) is the user's own, mode 0700; an entry is
 * DIR/KEY/{state,memory,ident}, KEY a hash of everything that shapes the
 * booted VM but the files' contents, ident those files' identities (kernel,
 * initrd: path, size, mtime, inode; lkvm: its bytes' CRC and size). An entry
 * is built in DIR/.tmp-KEY-PID and renamed into place whole.
 */
#ifndef LKVM_SANDBOX_CACHE_H
#define LKVM_SANDBOX_CACHE_H

#include <limits.h>

struct sandbox_cache {
	char dir[PATH_MAX];
	char entry[PATH_MAX + 32];
	char tmp[PATH_MAX + 64];
	char ident[3 * PATH_MAX + 512];
};

/*
 * The cache folder (dir, or the default when NULL; made 0700 when missing)
 * and this run's entry: desc is the text of the options that shape the booted
 * VM, kernel, initrd (or NULL) and self the files. 0, or -1 with err set (a
 * folder of another user or one others may write to).
 */
int sandbox_cache_open(struct sandbox_cache *c, const char *dir, const char *desc, const char *kernel,
		       const char *initrd, const char *self);

/*
 * 1: the entry is there and usable; 0: there is none (a stale or corrupt one
 * was removed: *why says what it was, else ""); -1 with err set: an entry
 * another user owns or may write to (never used, never removed).
 */
int sandbox_cache_lookup(struct sandbox_cache *c, char *why, size_t len);

/* After `lkvm snapshot` filled c->tmp: the ident file, then the rename. 0, or -1 with err set (tmp removed). */
int sandbox_cache_commit(struct sandbox_cache *c);

/* Remove a folder of the cache and what it holds (never following a symlink). */
void sandbox_cache_remove(const char *path);

#endif
