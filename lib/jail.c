/*
 * lkvm jailed (include/jail.h). The steps, in order, each reported by name:
 *   threads       lkvm is still one thread: unshare(CLONE_NEWNS) refuses a
 *                 process whose threads share its file system context
 *   user          the jail user (getpwnam/getpwuid, before / goes away)
 *   namespaces    unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS),
 *                 sethostname("lkvm")
 *   mounts        mount(MS_REC | MS_PRIVATE) of /: nothing propagates back
 *   empty root    mount("tmpfs") on /tmp, mode 0755, 1 MiB; each kept folder
 *                 bound (mount(MS_BIND)) at its own path inside it
 *   pivot_root    chdir, pivot_root(".", "."), umount2(".", MNT_DETACH):
 *                 the host's tree is gone from this mount namespace; then
 *                 the new / is remounted read-only (MS_REMOUNT | MS_BIND |
 *                 MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
 *   rlimits       setrlimit: RLIMIT_NOFILE hard limit down to the soft one,
 *                 RLIMIT_NPROC, RLIMIT_AS (what lkvm maps now plus room),
 *                 RLIMIT_CORE 0 (no dump of guest memory)
 *   capabilities  prctl(PR_CAPBSET_DROP) for every capability, and
 *                 PR_CAP_AMBIENT_CLEAR_ALL
 *   setuid        setgroups(0), setresgid, setresuid: the jail user, which
 *                 clears the permitted and effective capabilities; capget
 *                 checks that nothing is left
 *   no_new_privs  prctl(PR_SET_NO_NEW_PRIVS, 1)
 *   dumpable      prctl(PR_SET_DUMPABLE, 0): other processes of the jail
 *                 user cannot ptrace lkvm or read its memory
 * The runner then installs seccomp (lib/seccomp.c). The PID namespace and
 * the cgroup come before all this, from the supervisor (lib/supervise.c):
 * a PID namespace holds only the children of the process that makes it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "jail.h"
#include "options.h"
#include "util.h"

#define JAIL_DIR "/tmp"		/* where the empty root is mounted before pivot_root */

void (*jail_hook)(const char *step);

static void done(const char *step)
{
	if (jail_hook)
		jail_hook(step);
}

static int opt_jail(void *own, const char *arg) { ((struct jail_opts *)own)->mode = JAIL_ON; return 0; }
static int opt_no_jail(void *own, const char *arg) { ((struct jail_opts *)own)->mode = JAIL_OFF; return 0; }
static int opt_jail_user(void *own, const char *arg)
{
	if (!*arg)
		return err_set("needs NAME, UID or UID:GID");
	((struct jail_opts *)own)->user = arg;
	return 0;
}

const struct opt jail_run_opts[] = {
	{ "jail", 0, NULL, "after set-up, run in an empty root as an unprivileged user (default as root)", opt_jail },
	{ "no-jail", 0, NULL, "keep lkvm's user and file system after set-up", opt_no_jail },
	{ "jail-user", 0, "USER", "the user --jail becomes: NAME, UID or UID:GID (default SUDO_UID's, else nobody)",
	  opt_jail_user },
	{ 0 }
};

bool jail_wanted(const struct jail_opts *o)
{
	if (o && o->mode != JAIL_DEFAULT)
		return o->mode == JAIL_ON;
	return geteuid() == 0;
}

static bool number(const char *s, unsigned long *v)
{
	char *end;
	*v = strtoul(s, &end, 10);
	return *s && !*end && *v < 0xffffffffUL;
}

int jail_user(const struct jail_opts *o, uid_t *uid, gid_t *gid)
{
	const char *spec = o ? o->user : NULL;
	unsigned long u, g;
	if (!spec) {
		const char *su = getenv("SUDO_UID"), *sg = getenv("SUDO_GID");
		if (su && sg && number(su, &u) && number(sg, &g) && u) {
			*uid = u;
			*gid = g;
			return 0;
		}
		spec = "nobody";
	}
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", spec);
	char *colon = strchr(buf, ':');
	if (colon)
		*colon = 0;
	struct passwd *pw = NULL;
	if (number(buf, &u)) {
		pw = getpwuid(u);
		*uid = u;
		*gid = pw ? pw->pw_gid : u;
	} else if ((pw = getpwnam(buf))) {
		*uid = pw->pw_uid;
		*gid = pw->pw_gid;
	} else {
		return err_set("jail: user '%s' unknown", buf);
	}
	if (colon) {
		if (!number(colon + 1, &g))
			return err_set("jail: --jail-user %s: the group must be a number", spec);
		*gid = g;
	}
	if (*uid == 0 || *gid == 0)
		return err_set("jail: the jail user '%s' is root", spec);
	return 0;
}

static int threads(void)
{
	DIR *d = opendir("/proc/self/task");
	int n = 0;
	for (struct dirent *e; d && (e = readdir(d));)
		n += e->d_name[0] != '.';
	if (d)
		closedir(d);
	return d ? n : -1;
}

/* mkdir -p of path under root. */
static int make_path(const char *root, const char *path)
{
	char p[4096];
	if ((size_t)snprintf(p, sizeof(p), "%s%s", root, path) >= sizeof(p))
		return err_set("jail: %s: path too long", path);
	for (char *s = p + strlen(root) + 1; ; s++) {
		char c = *s;
		if (c == '/' || !c) {
			*s = 0;
			if (mkdir(p, 0755) < 0 && errno != EEXIST)
				return err_errno("jail: empty root: mkdir %s", p);
			*s = c;
		}
		if (!c)
			break;
	}
	return 0;
}

static uint64_t mapped_now(void)
{
	FILE *f = fopen("/proc/self/statm", "re");
	unsigned long long pages = 0;
	if (f) {
		if (fscanf(f, "%llu", &pages) != 1)
			pages = 0;
		fclose(f);
	}
	return pages * (uint64_t)sysconf(_SC_PAGESIZE);
}

static int limit(int res, const char *name, rlim_t soft, rlim_t hard)
{
	struct rlimit rl = { soft, hard };
	if (setrlimit(res, &rl) < 0)
		return err_errno("jail: rlimits: setrlimit(%s)", name);
	return 0;
}

int jail_enter(const struct jail_opts *o, const struct jail_limits *l)
{
	int n = threads();
	if (n != 1)
		return err_set("jail: threads: lkvm runs %d threads already (unshare(CLONE_NEWNS) needs one)", n);
	done("threads");
	uid_t uid;
	gid_t gid;
	if (jail_user(o, &uid, &gid) < 0)
		return -1;
	done("user");
	uint64_t as = mapped_now() + l->mem_bytes;	/* /proc is still there */
	if (unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS) < 0)
		return err_errno("jail: namespaces: unshare(CLONE_NEWNS|CLONE_NEWIPC|CLONE_NEWUTS)%s",
				 errno == EPERM ? " (needs root)" : "");
	if (sethostname("lkvm", 4) < 0)
		return err_errno("jail: namespaces: sethostname");
	done("namespaces");
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return err_errno("jail: mounts: mount(/, MS_REC|MS_PRIVATE)");
	done("mounts");
	/* The kept folders are held first: the empty root may hide them (one under /tmp). */
	int kept[JAIL_MAX_KEEP];
	for (int i = 0; i < l->nr_keep && i < JAIL_MAX_KEEP; i++)
		if ((kept[i] = open(l->keep[i], O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
			return err_errno("jail: empty root: %s", l->keep[i]);
	if (mount("lkvm-jail", JAIL_DIR, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=1m,mode=0755") < 0)
		return err_errno("jail: empty root: mount(tmpfs, " JAIL_DIR ")");
	for (int i = 0; i < l->nr_keep && i < JAIL_MAX_KEEP; i++) {
		char at[4096], from[32];
		snprintf(at, sizeof(at), JAIL_DIR "%s", l->keep[i]);
		snprintf(from, sizeof(from), "/proc/self/fd/%d", kept[i]);
		errno = 0;
		if (l->keep[i][0] != '/' || make_path(JAIL_DIR, l->keep[i]) < 0 ||
		    mount(from, at, NULL, MS_BIND | MS_REC, NULL) < 0)
			return errno ? err_errno("jail: empty root: binding %s", l->keep[i]) :
				       err_set("jail: empty root: %s is not an absolute path", l->keep[i]);
		close(kept[i]);
	}
	done("empty root");
	if (chdir(JAIL_DIR) < 0 || syscall(SYS_pivot_root, ".", ".") < 0)
		return err_errno("jail: pivot_root: pivot_root(" JAIL_DIR ")");
	if (umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
		return err_errno("jail: pivot_root: umount2 of the old root");
	if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		return err_errno("jail: pivot_root: remounting the empty root read-only");
	done("pivot_root");
	struct rlimit nofile;
	if (getrlimit(RLIMIT_NOFILE, &nofile) < 0 ||
	    limit(RLIMIT_NOFILE, "RLIMIT_NOFILE", nofile.rlim_cur, nofile.rlim_cur) < 0 ||
	    limit(RLIMIT_NPROC, "RLIMIT_NPROC", l->nproc, l->nproc) < 0 ||
	    limit(RLIMIT_AS, "RLIMIT_AS", as, as) < 0 || limit(RLIMIT_CORE, "RLIMIT_CORE", 0, 0) < 0)
		return -1;
	done("rlimits");
	/* Capabilities are numbered 0 to the kernel's last: the first EINVAL is past it (no call per
	 * unused number: each costs as much as any other set-up call, 0.1 ms under nested TCG). */
	for (int cap = 0; cap <= 63; cap++) {
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0)
			continue;
		if (errno != EINVAL || !cap)
			return err_errno("jail: capabilities: prctl(PR_CAPBSET_DROP, %d)", cap);
		break;
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return err_errno("jail: capabilities: prctl(PR_CAP_AMBIENT_CLEAR_ALL)");
	done("capabilities");
	if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
		return err_errno("jail: setuid: becoming uid %u gid %u", (unsigned)uid, (unsigned)gid);
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2];
	if (syscall(SYS_capget, &h, d) < 0)
		return err_errno("jail: setuid: capget");
	if (d[0].effective | d[1].effective | d[0].permitted | d[1].permitted | d[0].inheritable | d[1].inheritable)
		return err_set("jail: setuid: capabilities are left after setresuid");
	uid_t r, e, s;
	if (getresuid(&r, &e, &s) < 0 || r != uid || e != uid || s != uid)
		return err_set("jail: setuid: still not uid %u", (unsigned)uid);
	done("setuid");
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return err_errno("jail: no_new_privs: prctl(PR_SET_NO_NEW_PRIVS)");
	done("no_new_privs");
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		return err_errno("jail: dumpable: prctl(PR_SET_DUMPABLE, 0)");
	done("dumpable");
	return 0;
}
