/*
 * lib/jail.c on this host, in a child process (the jail cannot be left):
 * every step is done in order, and afterwards the child is the jail user
 * with no capabilities, no_new_privs, not dumpable, in an empty read-only
 * root (with a kept folder at its own path) and new mount/IPC/UTS
 * namespaces; a step that cannot be done is named. Needs root; runs inside
 * tests/ro_sandbox.h.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "test.h"
#include "jail.h"
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
	EXPECT(prctl(PR_CAPBSET_READ, 21 /* CAP_SYS_ADMIN */, 0, 0, 0) == 0);
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

TEST_MAIN()
