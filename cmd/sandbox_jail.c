/*
 * `lkvm sandbox`'s jail (include/sandbox_jail.h). The VM's lkvm jails itself
 * after set-up (lib/jail.c); what it still reaches by path or as its user is
 * prepared here, as root, before the VM's process starts:
 *  - the agent's channel: the vsock socket's folder (inside the scratch
 *    folder, which stays 0700 root: no other host user reaches it) and the
 *    agent's PATH_PORT socket are the jail user's, so the jailed lkvm may
 *    connect the guest's agent to us;
 *  - each writable share is served from an id-mapped clone of its mount, so
 *    the jail user reads the invoking user's files there and what the job
 *    makes is the invoking user's on disk (as docker would make it);
 *  - the read-only root share is not id-mapped: it is read with the jail
 *    user's own rights (the view already hides the host's secrets), which
 *    must include lkvm's own binary, the guest's init.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "idmap.h"
#include "jail.h"
#include "sandbox_jail.h"
#include "util.h"

static bool arg_is(const char *a, const char *opt)
{
	size_t n = strlen(opt);
	return !strncmp(a, opt, n) && (!a[n] || a[n] == '=');
}

int sandbox_jail_step_back(struct sandbox_jail *j, const char *why)
{
	if (!j->on)
		return 0;
	if (j->asked)
		return err_set("--jail: %s", why);
	j->on = false;
	if (j->verbose)
		fprintf(stderr, "lkvm sandbox: not jailed: %s (give --no-jail to say so)\n", why);
	return 0;
}

int sandbox_jail_decide(struct sandbox_jail *j, char **rargs, int nr, bool cache, bool user_vsock)
{
	struct jail_opts o = { .mode = JAIL_DEFAULT };
	const char *step = NULL;
	memset(j, 0, sizeof(*j));
	for (int i = 0; i < nr; i++) {
		const char *a = rargs[i];
		if (!strcmp(a, "--jail"))
			o.mode = JAIL_ON;
		else if (!strcmp(a, "--no-jail"))
			o.mode = JAIL_OFF;
		else if (!strcmp(a, "--jail-user") && i + 1 < nr)
			o.user = rargs[++i];
		else if (!strncmp(a, "--jail-user=", 12))
			o.user = a + 12;
		else if (!strcmp(a, "--verbose"))
			j->verbose = true;
		else if (arg_is(a, "--gdb") && !step)
			step = "--gdb (the stub's thread starts before the jail could)";
		else if (!strcmp(a, "--no-seccomp") && !step)
			step = "--no-seccomp (seccomp is one of the jail's steps)";
	}
	j->asked = o.mode == JAIL_ON;
	j->on = jail_wanted(&o);
	if (!j->on)
		return 0;
	if (jail_user(&o, &j->uid, &j->gid) < 0)
		return -1;
	const char *su = getenv("SUDO_UID"), *sg = getenv("SUDO_GID");
	char *e1 = NULL, *e2 = NULL;
	unsigned long u = su ? strtoul(su, &e1, 10) : 0, g = sg ? strtoul(sg, &e2, 10) : 0;
	if (geteuid() == 0 && su && sg && *su && *sg && !*e1 && !*e2) {
		j->inv_uid = u;
		j->inv_gid = g;
	} else {
		j->inv_uid = getuid();
		j->inv_gid = getgid();
	}
	if (!step && cache)
		step = "--snapshot-cache (a restored VM removes its clone's overlays by path)";
	if (!step && user_vsock)
		step = "--vsock (its folder is not given to the jail user)";
	return step ? sandbox_jail_step_back(j, step) : 0;
}

int sandbox_jail_check_read(struct sandbox_jail *j, const char *path, bool is_dir)
{
	if (!j->on)
		return 0;
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return err_errno("fork");
	if (pid == 0) {
		if (setgroups(0, NULL) || setresgid(j->gid, j->gid, j->gid) || setresuid(j->uid, j->uid, j->uid))
			_exit(2);
		_exit(access(path, R_OK | (is_dir ? X_OK : 0)) < 0);
	}
	int st = 0;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	char why[PATH_MAX + 96];
	snprintf(why, sizeof(why), "the jail user (uid %u) cannot read %s%s (give --jail-user its owner)",
		 (unsigned)j->uid, is_dir ? "the working tree " : "", path);
	return sandbox_jail_step_back(j, why);
}

int sandbox_jail_share(struct sandbox_jail *j, const char *dir)
{
	if (!j->on || (j->uid == j->inv_uid && j->gid == j->inv_gid))
		return -2;
	if (j->nr_fds == SANDBOX_JAIL_MAX_SHARES)
		return err_set("-v %s: too many shares to id-map", dir);
	int fd = idmap_clone(dir, j->inv_uid, j->inv_gid, j->uid, j->gid);
	if (fd >= 0)
		return j->fds[j->nr_fds++] = fd;
	int e = errno;
	char why[PATH_MAX + 400];
	snprintf(why, sizeof(why), "-v %s", err_msg());
	if (!j->asked && (e == EINVAL || e == EPERM || e == EOPNOTSUPP || e == ENOSYS)) {
		sandbox_jail_step_back(j, why);
		return -2;
	}
	return err_set("%s%s", j->asked ? "--jail: " : "", why);
}

int sandbox_jail_give(const struct sandbox_jail *j, const char *path, bool is_dir)
{
	if (!j->on)
		return 0;
	if (is_dir && mkdir(path, 0700) < 0)
		return err_errno("%s", path);
	if (fchownat(AT_FDCWD, path, j->uid, j->gid, AT_SYMLINK_NOFOLLOW) < 0)
		return err_errno("%s: giving it to the jail user (uid %u)", path, (unsigned)j->uid);
	return 0;
}

void sandbox_jail_done(struct sandbox_jail *j)
{
	for (int i = 0; i < j->nr_fds; i++)
		close(j->fds[i]);
	j->nr_fds = 0;
}
