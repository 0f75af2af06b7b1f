/*
 * lkvm sandbox's scratch folder (cmd/scratch.c) against a local user who
 * races it (issue 21, finding 2). The moments are the code's own hooks, so
 * each attack lands exactly between two of its steps: no sleeps. The
 * attacker is a child that dropped to uid 65534; the victims are root's
 * files next to the scratch folder. Runs as root inside tests/ro_sandbox.h
 * (a private /tmp); as an ordinary user only what needs no second user runs.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "test.h"
#include "scratch.h"
#include "util.h"
#include "../ro_sandbox.h"

#define NOBODY 65534

__attribute__((constructor)) static void confine(void)
{
	if (ro_sandbox(NULL, 0, "/etc/.lkvm-test-scratch-probe") == 0)
		return;
	if (geteuid() == 0) {
		fprintf(stderr, "test_scratch: refusing to run as root without a read-only sandbox\n");
		exit(1);
	}
}

static bool need_root(void)
{
	if (geteuid() == 0)
		return true;
	printf("SKIP %s: needs root (a second user to attack with)\n", t_name);
	return false;
}

/* Run attack(arg) as uid 65534 in a child: did it succeed? */
static bool as_nobody(bool (*attack)(const char *), const char *arg)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		if (setgroups(0, NULL) || setresgid(NOBODY, NOBODY, NOBODY) || setresuid(NOBODY, NOBODY, NOBODY))
			_exit(2);
		_exit(attack(arg) ? 0 : 1);
	}
	int st = -1;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static void put_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, mode);
	if (fd >= 0) {
		if (write(fd, text, strlen(text)) < 0) {}
		fchmod(fd, mode);
		close(fd);
	}
}

static bool file_is(const char *path, const char *text)
{
	char buf[256] = { 0 };
	int fd = open(path, O_RDONLY | O_NOFOLLOW);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n == (ssize_t)strlen(text) && !memcmp(buf, text, n);
}

#define VICTIM "/tmp/victim"
#define JOB "cwd\0echo\0hi"
#define JOB_LEN 12

static struct scratch sc;
static char job_path[PATH_MAX + 32];

static void reset(void)
{
	setenv("TMPDIR", "/tmp", 1);
	chmod("/tmp", 01777);
	put_file(VICTIM, "root's own file", 0644);
	scratch_hook = NULL;
}

/* ---- the job file ---- */

static bool plant_symlink(const char *at) { return symlink(VICTIM, at) == 0; }
static bool plant_file(const char *at)
{
	int fd = open(at, O_CREAT | O_EXCL | O_WRONLY, 0666);
	if (fd < 0)
		return false;
	bool ok = write(fd, "attacker\0sh\0-c\0evil", 20) == 20;
	close(fd);
	return ok;
}
static bool overwrite(const char *at)
{
	int fd = open(at, O_WRONLY | O_TRUNC);
	if (fd < 0)
		return false;
	bool ok = write(fd, "x\0evil", 6) == 6;
	close(fd);
	return ok;
}

static bool planted;
static bool (*plant)(const char *);
static bool plant_as_root;

/* At "made": the folder exists, the job is not written yet. */
static void plant_hook(const char *moment, const char *what)
{
	if (strcmp(moment, "made"))
		return;
	snprintf(job_path, sizeof(job_path), "%s/" SCRATCH_JOB, sc.share);
	planted = plant_as_root ? plant(job_path) : as_nobody(plant, job_path);
}

TEST(job_file_cannot_be_planted)
{
	if (!need_root())
		return;
	/* A local user's symlink at the job path, or a file of theirs there. */
	bool (*attacks[])(const char *) = { plant_symlink, plant_file };
	for (int i = 0; i < 2; i++) {
		reset();
		plant = attacks[i];
		plant_as_root = false;
		scratch_hook = plant_hook;
		CHECK_EQ(scratch_create(&sc, JOB, JOB_LEN), 0);
		scratch_hook = NULL;
		CHECK(!planted);
		CHECK(file_is(VICTIM, "root's own file"));
		struct stat st;
		CHECK_EQ(lstat(job_path, &st), 0);
		CHECK(S_ISREG(st.st_mode));
		CHECK_EQ(st.st_uid, 0);
		CHECK_EQ(st.st_mode & 022, 0);
		char buf[64];
		int fd = open(job_path, O_RDONLY | O_NOFOLLOW);
		CHECK_EQ(read(fd, buf, sizeof(buf)), JOB_LEN);
		CHECK(!memcmp(buf, JOB, JOB_LEN));
		close(fd);
		CHECK(!as_nobody(overwrite, job_path));	/* and it cannot be changed afterwards */
		scratch_remove(&sc);
		CHECK_EQ(access(sc.path, F_OK), -1);
	}
	/* Were a link there anyway (planted by root here): refused, never followed. */
	reset();
	plant = plant_symlink;
	plant_as_root = true;
	scratch_hook = plant_hook;
	CHECK_EQ(scratch_create(&sc, JOB, JOB_LEN), -1);
	scratch_hook = NULL;
	CHECK(planted);
	CHECK(strstr(err_msg(), SCRATCH_JOB) != NULL);
	CHECK(file_is(VICTIM, "root's own file"));
	CHECK_EQ(access(sc.path, F_OK), -1);	/* nothing left behind */
}

/* ---- what other users can reach ---- */

static bool create_in(const char *dir)
{
	char p[PATH_MAX + 16];
	snprintf(p, sizeof(p), "%s/planted", dir);
	int fd = open(p, O_CREAT | O_EXCL | O_WRONLY, 0644);
	if (fd >= 0)
		close(fd);
	return fd >= 0;
}

static bool run_it(const char *path)
{
	char *const argv[] = { (char *)path, NULL };
	execv(path, argv);
	return false;
}

TEST(scratch_is_closed_to_other_users)
{
	if (!need_root())
		return;
	reset();
	CHECK_EQ(scratch_create(&sc, JOB, JOB_LEN), 0);
	struct stat st;
	CHECK_EQ(stat(sc.path, &st), 0);
	CHECK_EQ(st.st_mode & 07777, 0700);
	CHECK_EQ(st.st_uid, geteuid());
	CHECK_EQ(stat(sc.share, &st), 0);
	CHECK_EQ(st.st_mode & 07777, 01777);	/* the guest's /tmp */
	CHECK(!as_nobody(create_in, sc.share));
	CHECK(!as_nobody(create_in, sc.path));
	/* A setuid binary left in the guest's /tmp: not runnable by another host user. */
	char suid[PATH_MAX + 16];
	snprintf(suid, sizeof(suid), "%s/suid", sc.share);
	put_file(suid, "#!/bin/sh\nexit 0\n", 04755);
	CHECK(!as_nobody(run_it, suid));
	scratch_remove(&sc);
	CHECK_EQ(access(sc.path, F_OK), -1);
}

/* ---- $TMPDIR ---- */

TEST(tmpdir_must_be_safe)
{
	if (!need_root())
		return;
	reset();
	struct { const char *dir; uid_t owner; mode_t mode; bool ok; } cases[] = {
		{ "/tmp/t-theirs", NOBODY, 0755, false },	/* another user's */
		{ "/tmp/t-open", 0, 0777, false },		/* anyone may rename in it */
		{ "/tmp/t-ours", 0, 0700, true },
		{ "/tmp/t-sticky", 0, 01777, true },		/* like /tmp itself */
		{ "/tmp/t-theirs/t-inside", 0, 0700, false },	/* below another user's folder */
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		mkdir(cases[i].dir, 0700);
		CHECK_EQ(chown(cases[i].dir, cases[i].owner, cases[i].owner), 0);
		CHECK_EQ(chmod(cases[i].dir, cases[i].mode), 0);
	}
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		setenv("TMPDIR", cases[i].dir, 1);
		int r = scratch_create(&sc, JOB, JOB_LEN);
		CHECK_EQ(r, cases[i].ok ? 0 : -1);
		if (r == 0) {
			CHECK(!strncmp(sc.path, cases[i].dir, strlen(cases[i].dir)));
			scratch_remove(&sc);
		} else {
			printf("  TMPDIR=%s: %s\n", cases[i].dir, err_msg());
			CHECK(strstr(err_msg(), "TMPDIR") != NULL);
			CHECK(strstr(err_msg(), cases[i].dir) != NULL || strstr(err_msg(), "/tmp/t-theirs"));
		}
		char cmd[128];	/* nothing made in a refused one */
		snprintf(cmd, sizeof(cmd), "ls -A %s | grep -q lkvm-sandbox", cases[i].dir);
		CHECK(system(cmd) != 0);
	}
	setenv("TMPDIR", "/tmp", 1);
}

/* ---- removal ---- */

static int swaps;
static char moved[PATH_MAX + 32], sub[PATH_MAX + 32];

/* Just before the first "file" goes: its folder becomes a symlink to root's. */
static void swap_hook(const char *moment, const char *what)
{
	const char *base = strrchr(what, '/') ? strrchr(what, '/') + 1 : what;
	if (strcmp(moment, "remove") || strcmp(base, "file") || swaps++)
		return;
	CHECK_EQ(rename(sub, moved), 0);
	CHECK_EQ(symlink("/tmp/victimdir", sub), 0);
}

TEST(removal_never_follows_a_swapped_symlink)
{
	if (!need_root())
		return;
	reset();
	mkdir("/tmp/victimdir", 0755);
	put_file("/tmp/victimdir/file", "keep me", 0644);
	CHECK_EQ(scratch_create(&sc, JOB, JOB_LEN), 0);
	snprintf(sub, sizeof(sub), "%s/sub", sc.share);
	snprintf(moved, sizeof(moved), "%s/sub.moved", sc.share);
	CHECK_EQ(mkdir(sub, 0755), 0);
	char f[PATH_MAX + 64];
	snprintf(f, sizeof(f), "%s/file", sub);
	put_file(f, "guest's", 0644);
	swaps = 0;
	scratch_hook = swap_hook;
	scratch_remove(&sc);
	scratch_hook = NULL;
	CHECK_EQ(swaps, 1);
	CHECK(file_is("/tmp/victimdir/file", "keep me"));
	struct stat st;
	CHECK_EQ(lstat("/tmp/victimdir", &st), 0);
	CHECK(S_ISDIR(st.st_mode));
	CHECK_EQ(access(sc.path, F_OK), -1);	/* and everything of the scratch is gone */
}

/* What a guest may leave: unreadable folders, deep nesting, links out, fifos. */
TEST(removal_takes_everything_the_guest_left)
{
	reset();
	if (geteuid() != 0)
		setenv("TMPDIR", "/tmp", 1);
	CHECK_EQ(scratch_create(&sc, JOB, JOB_LEN), 0);
	mkdir("/tmp/outside", 0755);
	put_file("/tmp/outside/keep", "keep", 0644);
	int fd = open(sc.share, O_RDONLY | O_DIRECTORY);
	CHECK(fd >= 0);
	CHECK_EQ(symlinkat("/tmp/outside", fd, "link-out"), 0);
	CHECK_EQ(symlinkat("/tmp/outside/keep", fd, "link-file"), 0);
	CHECK_EQ(mkfifoat(fd, "fifo", 0600), 0);
	CHECK_EQ(mkdirat(fd, "locked", 0755), 0);
	int l = openat(fd, "locked", O_RDONLY | O_DIRECTORY);
	CHECK_EQ(mkdirat(l, "inner", 0755), 0);
	int in = openat(l, "inner", O_RDONLY | O_DIRECTORY);
	CHECK_EQ(symlinkat("/tmp/outside", in, "again"), 0);
	int x = openat(in, "f", O_CREAT | O_WRONLY, 0);
	close(x);
	fchmod(in, 0);
	fchmod(l, 0);
	close(in);
	close(l);
	/* 3000 levels: deeper than PATH_MAX allows a path to name */
	int cur = dup(fd);
	for (int i = 0; i < 3000 && cur >= 0; i++) {
		CHECK_EQ(mkdirat(cur, "deep", 0700), 0);
		int next = openat(cur, "deep", O_RDONLY | O_DIRECTORY);
		close(cur);
		cur = next;
	}
	if (cur >= 0) {
		int y = openat(cur, "bottom", O_CREAT | O_WRONLY, 0644);
		close(y);
		close(cur);
	}
	close(fd);
	scratch_remove(&sc);
	CHECK_EQ(access(sc.path, F_OK), -1);
	CHECK(file_is("/tmp/outside/keep", "keep"));
}

TEST_MAIN()
