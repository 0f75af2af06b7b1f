/*
 * lib/idmap.c on this host: a folder's id-mapped clone, made as root for the
 * jail user 65534 standing for root (uid/gid 0 on disk), then used by a
 * child that became 65534 with no capabilities: it reads root's 0600 file
 * through the clone (and not through the folder itself: the control), what
 * it creates there is root's on disk, a folder of another owner stays
 * closed to it; a 9p server whose root is the clone (fd=) answers the same,
 * and its walks stay in the share (.. at the root stays there). A file
 * system that cannot be id-mapped (ramfs) fails naming the step with
 * EINVAL/EPERM/EOPNOTSUPP. Needs root; runs inside tests/ro_sandbox.h (a
 * private mount namespace, a fresh /tmp).
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>
#include "test.h"
#include "idmap.h"
#include "p9.h"
#include "util.h"
#include "../ro_sandbox.h"
#include "p9_client.h"

#define JAIL 65534

__attribute__((constructor)) static void confine(void)
{
	static const char *const keep[] = { "/proc" };	/* a user namespace's uid_map is written there */
	if (ro_sandbox(keep, 1, "/etc/.lkvm-test-idmap-probe") == 0)
		return;
	if (geteuid() == 0) {
		fprintf(stderr, "test_idmap: refusing to run as root without a read-only sandbox\n");
		exit(1);
	}
}

static void put(const char *path, const char *text, mode_t mode, uid_t uid)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, mode);
	if (fd >= 0) {
		if (write(fd, text, strlen(text)) < 0) {}
		fchmod(fd, mode);
		fchown(fd, uid, uid);
		close(fd);
	}
}

static bool become_jail_user(void)
{
	return !setgroups(0, NULL) && !setresgid(JAIL, JAIL, JAIL) && !setresuid(JAIL, JAIL, JAIL);
}

/* In a child as 65534: its exit status is the number of the first check that failed, 0 if none. */
static int as_jail_user(int (*body)(int), int arg)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0)
		_exit(become_jail_user() ? body(arg) : 99);
	int st = -1;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
}

static char dir[64];

/* A process in a chroot (or a container that forbids it) may not make a user namespace at all. */
static bool no_user_ns(int e)
{
	return e == EPERM && strstr(err_msg(), "user namespace");
}

/* A fresh folder (0755) with root's 0600 file and another owner's folder. */
static int make_tree(void)
{
	strcpy(dir, "/tmp/lkvm-idmap-XXXXXX");
	if (!mkdtemp(dir) || chmod(dir, 0755))
		return -1;
	char p[128];
	snprintf(p, sizeof(p), "%s/secret", dir);
	put(p, "root-only\n", 0600, 0);
	snprintf(p, sizeof(p), "%s/other", dir);
	mkdir(p, 0755);
	chown(p, 1234, 1234);
	return 0;
}

static int read_secret(int tree)
{
	char buf[64] = "";
	int fd = openat(tree, "secret", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, buf, sizeof(buf)) != 10 || strcmp(buf, "root-only\n"))
		return 1;
	close(fd);
	if ((fd = openat(tree, "made", O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0640)) < 0 || write(fd, "by-65534\n", 9) != 9)
		return 2;
	close(fd);
	errno = 0;
	if (openat(tree, "other/x", O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644) >= 0 || errno != EACCES)
		return 3;
	struct stat st;	/* root's file shows as the jail user's through the clone */
	if (fstatat(tree, "secret", &st, 0) || st.st_uid != JAIL || st.st_gid != JAIL)
		return 4;
	return 0;
}

static int control_body(int unused)
{
	char p[128];
	snprintf(p, sizeof(p), "%s/secret", dir);
	errno = 0;
	return open(p, O_RDONLY | O_CLOEXEC) < 0 && errno == EACCES ? 0 : 1;
}

TEST(clone_maps_root_to_the_jail_user)
{
	if (geteuid() != 0)
		SKIP("needs root (open_tree and mount_setattr need CAP_SYS_ADMIN)");
	CHECK_EQ(make_tree(), 0);
	int tree = idmap_clone(dir, 0, 0, JAIL, JAIL);
	if (tree < 0 && no_user_ns(errno))
		SKIP("this process may not make a user namespace (a chroot?): %s", err_msg());
	if (tree < 0 && (errno == EINVAL || errno == EOPNOTSUPP)) {
		struct utsname u;
		uname(&u);
		SKIP("this kernel (%s) cannot id-map /tmp's tmpfs (6.3 on can): %s", u.release, err_msg());
	}
	CHECK(tree >= 0);
	if (tree < 0) {
		fprintf(stderr, "  %s\n", err_msg());
		return;
	}
	CHECK_EQ(as_jail_user(control_body, 0), 0);	/* without the clone 65534 cannot read it */
	CHECK_EQ(as_jail_user(read_secret, tree), 0);
	char p[128];
	snprintf(p, sizeof(p), "%s/made", dir);
	struct stat st;
	CHECK(stat(p, &st) == 0 && st.st_uid == 0 && st.st_gid == 0 && (st.st_mode & 0777) == 0640);
	char buf[32] = "";
	int fd = open(p, O_RDONLY);
	CHECK(fd >= 0 && read(fd, buf, sizeof(buf)) == 9 && !strcmp(buf, "by-65534\n"));
	close(fd);
	close(tree);
}

/* ---- the 9p server on the clone ---- */

static uint8_t reqbuf[P9_MAX_MSIZE + 64], respbuf[P9_MAX_MSIZE];

static struct p9_server *srv_on(int tree)
{
	struct p9_server_opts o = { .model = P9_PASSTHROUGH, .has_root_fd = true, .root_fd = tree };
	return p9_server_new("/the-clone", &o);	/* made as root, as the jailed lkvm's shares are */
}

static struct p9_server *served;

static int p9_session(int unused)
{
	struct p9c cl = { .req = reqbuf, .resp = respbuf, .resp_cap = sizeof(respbuf), .srv = served };
	uint32_t msize;
	char v[32], buf[64] = "";
	struct p9c_qid root, q, up;
	if (p9c_version(&cl, 65536, "9P2000.L", &msize, v, sizeof(v)) || p9c_attach(&cl, 0, 0, &root))
		return 1;
	if (p9c_walk1(&cl, 0, 1, "secret", &q) || p9c_lopen(&cl, 1, O_RDONLY) || p9c_read(&cl, 1, 0, 64, buf) != 10 ||
	    strncmp(buf, "root-only\n", 10))
		return 2;
	if (p9c_walk1(&cl, 0, 2, NULL, NULL) || p9c_lcreate(&cl, 2, "via9p", O_WRONLY, 0644, 0, &q) ||
	    p9c_write(&cl, 2, 0, "guest-wrote\n", 12) != 12)
		return 3;
	/* .. at the share's root is the root (the detached mount has no parent to climb to) */
	const char *dd[] = { "..", ".." };
	struct p9c_qid qs[2];
	int n;
	if (p9c_walk(&cl, 0, 3, 2, dd, qs, &n) || n != 2 || qs[1].path != root.path)
		return 4;
	if (p9c_walk1(&cl, 0, 4, "other", &up) || p9c_lcreate(&cl, 4, "x", O_WRONLY, 0644, 0, &q) != EACCES)
		return 5;
	return 0;
}

TEST(p9_server_on_the_clone)
{
	if (geteuid() != 0)
		SKIP("needs root");
	CHECK_EQ(make_tree(), 0);
	int tree = idmap_clone(dir, 0, 0, JAIL, JAIL);
	if (tree < 0 && no_user_ns(errno))
		SKIP("this process may not make a user namespace (a chroot?): %s", err_msg());
	if (tree < 0 && (errno == EINVAL || errno == EOPNOTSUPP))
		SKIP("this kernel cannot id-map /tmp's tmpfs: %s", err_msg());
	CHECK(tree >= 0);
	if (tree < 0)
		return;
	served = srv_on(tree);
	close(tree);	/* the server holds its own duplicate */
	CHECK(served != NULL);
	if (!served)
		return;
	int r = as_jail_user(p9_session, 0);
	CHECK_EQ(r, 0);
	char p[128];
	snprintf(p, sizeof(p), "%s/via9p", dir);
	struct stat st;
	CHECK(stat(p, &st) == 0 && st.st_uid == 0 && st.st_gid == 0);
	char buf[32] = "";
	int fd = open(p, O_RDONLY);
	CHECK(fd >= 0 && read(fd, buf, sizeof(buf)) == 12 && !strcmp(buf, "guest-wrote\n"));
	close(fd);
	p9_server_free(served);
}

TEST(ramfs_cannot_be_id_mapped)
{
	if (geteuid() != 0)
		SKIP("needs root");
	mkdir("/tmp/ramfs", 0755);
	CHECK(mount("ramfs", "/tmp/ramfs", "ramfs", 0, NULL) == 0);
	errno = 0;
	int tree = idmap_clone("/tmp/ramfs", 0, 0, JAIL, JAIL);
	int e = errno;
	if (tree < 0 && no_user_ns(e)) {
		umount("/tmp/ramfs");
		SKIP("this process may not make a user namespace (a chroot?): %s", err_msg());
	}
	CHECK(tree < 0 && (e == EINVAL || e == EPERM || e == EOPNOTSUPP));
	CHECK(strstr(err_msg(), "/tmp/ramfs") && strstr(err_msg(), "mount_setattr(MOUNT_ATTR_IDMAP)"));
	if (tree >= 0)
		close(tree);
	umount("/tmp/ramfs");
}

TEST_MAIN()
