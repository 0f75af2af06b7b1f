/*
 * ID-mapped clones (include/idmap.h). The mapping is a user namespace's: a
 * short-lived child is cloned into a new one, we (root outside) write its
 * uid_map and gid_map ("DISK AS 1": the namespace's id DISK is AS outside)
 * and keep a descriptor of it; the mount then maps each on-disk id as if it
 * were that namespace's, so DISK shows as AS, and AS's new files are DISK's.
 * glibc 2.36's <sys/mount.h> and <linux/mount.h> do not mix: the syscalls
 * are called by number with the kernel header's constants.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include "idmap.h"
#include "util.h"


static int write_map(pid_t pid, const char *which, unsigned inside, unsigned outside)
{
	char path[64], line[64];
	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, which);
	int n = snprintf(line, sizeof(line), "%u %u 1\n", inside, outside);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t w = write(fd, line, n);
	int e = errno;
	close(fd);
	errno = e;
	return w == n ? 0 : -1;
}

/* A user namespace whose id disk_* is as_* outside: its descriptor, or -1 (errno set). */
static int user_ns(uid_t disk_uid, gid_t disk_gid, uid_t as_uid, gid_t as_gid)
{
	/* Like fork, but the child starts in a new user namespace; it only waits to be killed. */
	pid_t pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, NULL, NULL, NULL, 0);
	if (pid < 0)
		return -1;
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (;;)
			pause();
	}
	int fd = -1, e = 0;
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)pid);
	if (write_map(pid, "uid_map", disk_uid, as_uid) < 0 || write_map(pid, "gid_map", disk_gid, as_gid) < 0 ||
	    (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		e = errno;
	kill(pid, SIGKILL);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	errno = e;
	return e ? -1 : fd;
}

int idmap_clone(const char *dir, uid_t disk_uid, gid_t disk_gid, uid_t as_uid, gid_t as_gid)
{
	int tree = syscall(SYS_open_tree, AT_FDCWD, dir, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW);
	if (tree < 0) {
		int e = errno;
		err_errno("%s: id-mapped clone: open_tree(OPEN_TREE_CLONE)", dir);
		errno = e;
		return -1;
	}
	int ns = user_ns(disk_uid, disk_gid, as_uid, as_gid);
	if (ns < 0) {
		int e = errno;
		close(tree);
		errno = e;
		err_errno("%s: id-mapped clone: user namespace (clone(CLONE_NEWUSER), uid_map, gid_map)", dir);
		errno = e;
		return -1;
	}
	struct mount_attr attr = { .attr_set = MOUNT_ATTR_IDMAP, .userns_fd = ns };
	int r = syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof(attr));
	int e = errno;
	close(ns);
	if (r < 0) {
		close(tree);
		errno = e;
		err_errno("%s: id-mapped clone: mount_setattr(MOUNT_ATTR_IDMAP)%s", dir,
			  e == EINVAL || e == EOPNOTSUPP || e == EPERM ? " (its file system cannot be id-mapped)" : "");
		errno = e;
		return -1;
	}
	return tree;
}
