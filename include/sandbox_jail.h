/*
 * Whether `lkvm sandbox`'s VM jails itself, and what the jail needs made
 * before it (cmd/sandbox_jail.c): the agent's vsock folder and socket given
 * to the jail user, an id-mapped clone of each writable share (include/
 * idmap.h). Library code: errors are values (err_set).
 */
#ifndef LKVM_SANDBOX_JAIL_H
#define LKVM_SANDBOX_JAIL_H

#include <stdbool.h>
#include <sys/types.h>

#define SANDBOX_JAIL_MAX_SHARES 32

struct sandbox_jail {
	bool on;		/* the VM jails itself (lkvm run gets --jail, else --no-jail) */
	bool asked;		/* --jail was given: what cannot be done is an error, not a step back */
	bool verbose;		/* --verbose: a step back is said on stderr */
	uid_t uid, inv_uid;	/* the jail user; the invoking user (SUDO_UID's under sudo) */
	gid_t gid, inv_gid;
	int fds[SANDBOX_JAIL_MAX_SHARES];	/* id-mapped clones made, closed by sandbox_jail_done() */
	int nr_fds;
};

/*
 * From lkvm run's options the sandbox passes on (--jail, --no-jail,
 * --jail-user, --gdb, --no-seccomp, --verbose), the snapshot cache and a
 * --vsock of the user's: on as root by default, stepping back (quietly)
 * where the jail cannot go; with --jail those are errors. 0, or -1 with err.
 */
int sandbox_jail_decide(struct sandbox_jail *j, char **rargs, int nr, bool cache, bool user_vsock);

/* A step back from the default: on goes off, said with --verbose; with --jail, -1 with err (why). */
int sandbox_jail_step_back(struct sandbox_jail *j, const char *why);

/*
 * The jail user must read the guest's init (lkvm's own binary) and the
 * working tree (a folder: read and search), both through the read-only root
 * share with its own rights: else a step back (or, with --jail, -1).
 */
int sandbox_jail_check_read(struct sandbox_jail *j, const char *path, bool is_dir);

/*
 * A writable share's folder as the jail user sees it: the descriptor of its
 * id-mapped clone (the invoking user's ids as the jail user's), or -2 when
 * none is needed (the jail user is the invoking user, or no jail); a file
 * system that cannot be id-mapped steps back (-2, j->on now false) or, with
 * --jail, -1 with err naming the share, the step and the errno.
 */
int sandbox_jail_share(struct sandbox_jail *j, const char *dir);

/* The vsock folder dir (made, 0700) and, later, the agent's socket path: the jail user's. 0, or -1 with err. */
int sandbox_jail_give(const struct sandbox_jail *j, const char *path, bool is_dir);

/* Close the clones' descriptors (the parent's copies). */
void sandbox_jail_done(struct sandbox_jail *j);

#endif
