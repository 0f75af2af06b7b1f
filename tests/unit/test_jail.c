/*
 * lib/jail.c on this host, in a child process (the jail cannot be left):
 * every step is done in order, and afterwards the child is the jail user
 * with no capabilities, no_new_privs, not dumpable, in an empty read-only
 * root (with a kept folder at its own path) and new mount/IPC/UTS
 * namespaces; a step that cannot be done is named. The supervisor
 * (lib/supervise.c): its child is PID 1 of a new PID namespace, gets the
 * signals it is sent, and when it ends (or is killed) its socket and its
 * cgroup (lib/cgroup.c, in a cgroup2 mount of the test's own) are removed.
 * Needs root; runs inside tests/ro_sandbox.h.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "test.h"
#include "cgroup.h"
#include "jail.h"
#include "supervise.h"
#include "util.h"
#include "../ro_sandbox.h"

__attribute__((constructor)) static void confine(void)
{
	if (ro_sandbox(NULL, 0, "/etc/.lkvm-test-jail-probe") == 0)
		return;
	if (geteuid() == 0) {
		fprintf(stderr, "test_jail: refusing to run as root without a read-only sandbox\n");
		exit(1);
	}
}

static char steps[256];
static void record(const char *step)
{
	strcat(steps, step);
	strcat(steps, ",");
}

/* Run body in a child; its exit status (0 when every check there held). */
static int in_child(int (*body)(void))
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0)
		_exit(body());
	int st = -1;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
}

static int jailed_body(void)
{
	jail_hook = record;
	mkdir("/tmp/kept", 0755);
	int fd = open("/tmp/kept/file", O_CREAT | O_WRONLY, 0644);
	close(fd);
	struct jail_opts o = { .mode = JAIL_ON, .user = "54321:54322" };
	struct jail_limits l = { .mem_bytes = MiB(512), .nproc = 100, .keep = { "/tmp/kept" }, .nr_keep = 1 };
	int held = open("/etc/passwd", O_RDONLY);	/* opened before: still usable after */
	if (jail_enter(&o, &l) < 0) {
		fprintf(stderr, "jail_enter: %s\n", err_msg());
		return 1;
	}
	int bad = 0;
#define EXPECT(c) do { if (!(c)) { fprintf(stderr, "child: %s failed\n", #c); bad++; } } while (0)
	EXPECT(!strcmp(steps, "threads,user,namespaces,mounts,empty root,pivot_root,rlimits,capabilities,setuid,"
			      "no_new_privs,dumpable,"));
	uid_t r, e, s;
	getresuid(&r, &e, &s);
	EXPECT(r == 54321 && e == 54321 && s == 54321);
	EXPECT(getgid() == 54322 && getegid() == 54322);
	EXPECT(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1);
	EXPECT(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0);
	int cap = 0;	/* every capability the kernel has is out of the bounding set */
	while (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 0)
		cap++;
	EXPECT(cap > 21 /* CAP_SYS_ADMIN */ && prctl(PR_CAPBSET_READ, cap, 0, 0, 0) < 0 && errno == EINVAL);
	EXPECT(open("/proc/self/status", O_RDONLY) < 0);
	EXPECT(open("/etc/passwd", O_RDONLY) < 0);
	EXPECT(access("/tmp/kept/file", F_OK) == 0);	/* the kept folder, at its path */
	EXPECT(mkdir("/x", 0755) < 0);			/* the root is read-only */
	DIR *d = opendir("/");
	int names = 0;
	for (struct dirent *de; d && (de = readdir(d));)
		names += de->d_name[0] != '.';
	if (d)
		closedir(d);
	EXPECT(names == 1);				/* tmp (the kept folder's path), nothing else */
	char c;
	EXPECT(held >= 0 && read(held, &c, 1) == 1);
	struct rlimit rl;
	EXPECT(!getrlimit(RLIMIT_NPROC, &rl) && rl.rlim_cur == 100);
	EXPECT(!getrlimit(RLIMIT_CORE, &rl) && rl.rlim_max == 0);
	EXPECT(!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur == rl.rlim_max);
	return bad;
}

TEST(every_step_in_order_and_what_it_left)
{
	if (geteuid() != 0)
		SKIP("needs root (the jail is what lkvm started as root does)");
	CHECK_EQ(in_child(jailed_body), 0);
}

static void *idle(void *arg) { pause(); return arg; }

static int threaded_body(void)
{
	pthread_t t;
	pthread_create(&t, NULL, idle, NULL);
	struct jail_opts o = { .mode = JAIL_ON };
	struct jail_limits l = { .mem_bytes = MiB(512), .nproc = 100 };
	if (jail_enter(&o, &l) == 0)
		return 1;
	return strstr(err_msg(), "jail: threads: lkvm runs 2 threads") ? 0 : (fprintf(stderr, "%s\n", err_msg()), 2);
}

static int user_body(void)
{
	if (setresuid(65534, 65534, 65534))
		return 3;
	struct jail_opts o = { .mode = JAIL_ON, .user = "12345" };
	struct jail_limits l = { .mem_bytes = MiB(512), .nproc = 100 };
	if (jail_enter(&o, &l) == 0)
		return 1;
	return strstr(err_msg(), "jail: namespaces: unshare") ? 0 : (fprintf(stderr, "%s\n", err_msg()), 2);
}

TEST(a_step_that_cannot_be_done_is_named)
{
	if (geteuid() != 0)
		SKIP("needs root");
	CHECK_EQ(in_child(threaded_body), 0);
	CHECK_EQ(in_child(user_body), 0);
	struct jail_opts o = { .user = "root" };
	uid_t u;
	gid_t g;
	CHECK_EQ(jail_user(&o, &u, &g), -1);
	CHECK(strstr(err_msg(), "is root") != NULL);
	o.user = "no-such-user-here";
	CHECK_EQ(jail_user(&o, &u, &g), -1);
	o.user = NULL;
	setenv("SUDO_UID", "1234", 1);
	setenv("SUDO_GID", "5678", 1);
	CHECK_EQ(jail_user(&o, &u, &g), 0);
	CHECK(u == 1234 && g == 5678);
	unsetenv("SUDO_UID");
	unsetenv("SUDO_GID");
	CHECK_EQ(jail_user(&o, &u, &g), 0);
	CHECK(u == 65534);
	o.mode = JAIL_OFF;
	CHECK(!jail_wanted(&o));
	o.mode = JAIL_DEFAULT;
	CHECK(jail_wanted(&o) == (geteuid() == 0));
}

/* ---- the supervisor ---- */

#define SOCK "/tmp/supervised.sock"

struct seen {		/* what the supervised child says of itself */
	pid_t pid, host_pid;
};
struct result {		/* what the supervisor says at the end */
	int r, status;
	char cgroup[4096], no_cgroup[256], err[256];
};

/* The supervisor's process: its child reports on `seen`, then waits for SIGTERM (exit 42; 43 after 30 s). */
static void supervisor(const char *cgmnt, int seen_fd, int res_fd)
{
	struct supervise s = { .name = "ut", .mem_max = MiB(300), .pids_max = 77, .cgroup_mnt = cgmnt };
	struct result res = { .status = -1 };
	res.r = supervise_start(&s, &res.status);
	if (res.r == 0) {
		sigset_t term;
		sigemptyset(&term);
		sigaddset(&term, SIGTERM);
		sigprocmask(SIG_BLOCK, &term, NULL);	/* as the runner does: PID 1 gets what it takes */
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);
		struct sockaddr_un sa = { .sun_family = AF_UNIX, .sun_path = SOCK };
		const char *paths[] = { SOCK };
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || supervise_reap(paths, 1) < 0)
			_exit(3);
		struct seen me = { getpid(), supervise_host_pid() };
		if (write(seen_fd, &me, sizeof(me)) != sizeof(me))
			_exit(4);
		struct timespec t = { 30, 0 };	/* never forwarded: 43, not a hang */
		_exit(sigtimedwait(&term, NULL, &t) == SIGTERM ? 42 : 43);
	}
	snprintf(res.cgroup, sizeof(res.cgroup), "%s", s.cgroup);
	snprintf(res.no_cgroup, sizeof(res.no_cgroup), "%s", s.no_cgroup);
	snprintf(res.err, sizeof(res.err), "%s", res.r < 0 ? err_msg() : "");
	if (write(res_fd, &res, sizeof(res)) != sizeof(res))
		_exit(5);
	_exit(0);
}

static void read_line(const char *path, const char *key, char *out, size_t len)
{
	FILE *f = fopen(path, "r");
	char line[4200];
	*out = 0;
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, key, strlen(key))) {
			line[strcspn(line, "\n")] = 0;
			snprintf(out, len, "%s", line + strlen(key));
		}
	if (f)
		fclose(f);
}

/*
 * Run a supervisor with cgroup2 mount cgmnt; end its child by SIGTERM to the
 * supervisor (kill9 false: exit 42 expected) or SIGKILL to the child
 * (status 137). cg_checks: the cgroup must be made, limited and removed.
 */
static void supervised_run(const char *cgmnt, bool kill9, bool cg_checks)
{
	int seen_p[2], res_p[2];
	CHECK(pipe(seen_p) == 0 && pipe(res_p) == 0);
	unlink(SOCK);
	fflush(NULL);
	pid_t sup = fork();
	if (sup == 0) {
		close(seen_p[0]);
		close(res_p[0]);
		supervisor(cgmnt, seen_p[1], res_p[1]);
	}
	close(seen_p[1]);
	close(res_p[1]);
	struct seen me = { 0 };
	CHECK_EQ(read(seen_p[0], &me, sizeof(me)), sizeof(me));
	CHECK_EQ(me.pid, 1);				/* PID 1 inside */
	CHECK(me.host_pid > 1 && me.host_pid != sup);	/* and another outside */
	char path[128], val[4200], a[128], b[128];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)me.host_pid);
	read_line(path, "NSpid:", val, sizeof(val));
	char want[64];
	snprintf(want, sizeof(want), "\t%d\t1", (int)me.host_pid);
	CHECK(!strcmp(val, want));
	snprintf(path, sizeof(path), "/proc/%d/ns/pid", (int)me.host_pid);
	ssize_t na = readlink(path, a, sizeof(a) - 1), nb = readlink("/proc/self/ns/pid", b, sizeof(b) - 1);
	CHECK(na > 0 && nb > 0 && (na != nb || memcmp(a, b, na)));	/* a PID namespace of its own */
	struct stat st;
	CHECK(lstat(SOCK, &st) == 0 && S_ISSOCK(st.st_mode));
	char cgdir[4300] = "";
	if (cg_checks) {
		snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)me.host_pid);
		read_line(path, "0::", val, sizeof(val));
		char name[64];
		snprintf(name, sizeof(name), "/lkvm-ut-%d", (int)sup);
		CHECK(strlen(val) >= strlen(name) && !strcmp(val + strlen(val) - strlen(name), name));
		snprintf(cgdir, sizeof(cgdir), "%s%s", cgmnt, val);
		char f[4400], v[64];
		snprintf(f, sizeof(f), "%s/memory.max", cgdir);
		read_line(f, "", v, sizeof(v));
		CHECK(!strcmp(v, "314572800"));
		snprintf(f, sizeof(f), "%s/pids.max", cgdir);
		read_line(f, "", v, sizeof(v));
		CHECK(!strcmp(v, "77"));
	}
	kill(kill9 ? me.host_pid : sup, kill9 ? SIGKILL : SIGTERM);
	struct result res = { .r = -2 };
	CHECK_EQ(read(res_p[0], &res, sizeof(res)), sizeof(res));
	int wst;
	waitpid(sup, &wst, 0);
	close(seen_p[0]);
	close(res_p[0]);
	CHECK_EQ(res.r, 1);
	CHECK_EQ(res.status, kill9 ? 128 + SIGKILL : 42);
	CHECK(lstat(SOCK, &st) < 0 && errno == ENOENT);	/* the supervisor removed it */
	if (cg_checks) {
		CHECK(res.cgroup[0] && !res.no_cgroup[0]);
		CHECK(cgdir[0] && access(cgdir, F_OK) < 0 && errno == ENOENT);
	} else {
		CHECK(!res.cgroup[0] && res.no_cgroup[0]);	/* and says why none was made */
	}
}

TEST(supervisor_pid_namespace_signals_and_clean_up)
{
	if (geteuid() != 0)
		SKIP("needs root (unshare(CLONE_NEWPID))");
	mkdir("/tmp/not-cgroup", 0755);
	supervised_run("/tmp/not-cgroup", false, false);	/* SIGTERM to the supervisor reaches PID 1 */
	supervised_run("/tmp/not-cgroup", true, false);		/* kill -9 of the VM's process: still cleaned */
	struct cgroup cg;
	CHECK_EQ(cgroup_make(&cg, "/tmp/not-cgroup", "ut", MiB(1), 1), -1);
	CHECK(strstr(err_msg(), "/tmp/not-cgroup is not a cgroup2 mount") != NULL);
}

static int unprivileged_supervisor(void)
{
	if (setresuid(65534, 65534, 65534))
		return 3;
	struct supervise s = { .name = "ut", .cgroup_mnt = "/nonexistent" };
	int st;
	if (supervise_start(&s, &st) >= 0)
		return 1;
	return strstr(err_msg(), "jail: pid namespace: unshare(CLONE_NEWPID)") ? 0 : (fprintf(stderr, "%s\n", err_msg()), 2);
}

TEST(supervisor_without_privilege_names_the_step)
{
	if (geteuid() != 0)
		SKIP("needs root (to drop it)");
	CHECK_EQ(in_child(unprivileged_supervisor), 0);
}

/* A cgroup2 mount of the test's own (its mount namespace is private): made, limited, removed. */
TEST(supervisor_cgroup_made_limited_removed)
{
	if (geteuid() != 0)
		SKIP("needs root (a cgroup2 mount)");
	const char *mnt = "/tmp/cgroup2";
	mkdir(mnt, 0755);
	if (mount("cgroup2", mnt, "cgroup2", 0, NULL) < 0)
		SKIP("cannot mount cgroup2 here: %s", strerror(errno));
	struct cgroup cg;
	if (cgroup_make(&cg, mnt, "probe", MiB(300), 77) < 0) {
		char why[300];
		snprintf(why, sizeof(why), "no cgroup can be made on this host: %s", err_msg());
		umount(mnt);
		SKIP("%s", why);
	}
	CHECK_EQ(cgroup_remove(&cg), 0);
	supervised_run(mnt, false, true);
	supervised_run(mnt, true, true);
	umount(mnt);
}

TEST_MAIN()
