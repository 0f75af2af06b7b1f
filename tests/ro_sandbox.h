/*
 * A read-only view of the host for tests that attack a file server.
 *
 * test_9p and fuzz_9p send requests meant to escape a 9P share, and run as
 * root in CI. A server that regressed would carry them out on the host: while
 * the 9P server was written, a run against a build with its name checks
 * taken out moved the host's /etc into a share, and the clean-up deleted it.
 * So such a process first enters a private mount namespace (a user namespace
 * too where that is all it may make) in which every mount is read-only but a
 * few kept directories, and /tmp is a fresh tmpfs that vanishes with it.
 */
#ifndef LKVM_TESTS_RO_SANDBOX_H
#define LKVM_TESTS_RO_SANDBOX_H

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

/* Mount flags a read-only remount must keep (they are locked in a user namespace). */
static unsigned long ro_sandbox_kept_flags(const char *opts)
{
	static const struct { const char *name; unsigned long flag; } map[] = {
		{ "nosuid", MS_NOSUID }, { "nodev", MS_NODEV }, { "noexec", MS_NOEXEC },
		{ "noatime", MS_NOATIME }, { "nodiratime", MS_NODIRATIME }, { "relatime", MS_RELATIME },
	};
	unsigned long f = 0;
	char buf[512], *save;
	snprintf(buf, sizeof(buf), "%s", opts);
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
		for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
			if (!strcmp(t, map[i].name))
				f |= map[i].flag;
	return f;
}

/* mountinfo writes a space as \040 and so on: decode in place. */
static void ro_sandbox_unescape(char *s)
{
	char *o = s;
	for (; *s; s++, o++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] && s[3]) {
			*o = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 | (s[3] - '0'));
			s += 3;
		} else {
			*o = *s;
		}
	}
	*o = 0;
}

static int ro_sandbox_write(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY);
	int ok = fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text);
	if (fd >= 0)
		close(fd);
	return ok ? 0 : -1;
}

/* A mount namespace of our own; a user namespace mapping only ourselves if we may not make one. */
static int ro_sandbox_unshare(void)
{
	uid_t uid = geteuid();
	gid_t gid = getegid();
	if (!unshare(CLONE_NEWNS))
		return 0;
	char map[64];
	if (unshare(CLONE_NEWUSER | CLONE_NEWNS))
		return -1;
	snprintf(map, sizeof(map), "%u %u 1", (unsigned)uid, (unsigned)uid);
	if (ro_sandbox_write("/proc/self/setgroups", "deny") || ro_sandbox_write("/proc/self/uid_map", map))
		return -1;
	snprintf(map, sizeof(map), "%u %u 1", (unsigned)gid, (unsigned)gid);
	return ro_sandbox_write("/proc/self/gid_map", map);
}

/*
 * Enter the sandbox. The directories in keep[] (made if missing) stay
 * writable; probe, a path under /etc, proves that the host cannot be written.
 * 0 when confined, -1 (with a line on stderr) when not.
 */
static int ro_sandbox(const char *const *keep, size_t nkeep, const char *probe)
{
	char kept[8][PATH_MAX];
	if (nkeep > 8 || ro_sandbox_unshare() || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL))
		return -1;
	for (size_t i = 0; i < nkeep; i++) {
		mkdir(keep[i], 0755);
		if (!realpath(keep[i], kept[i]) || mount(kept[i], kept[i], "none", MS_BIND, NULL))
			kept[i][0] = 0;
	}
	FILE *mi = fopen("/proc/self/mountinfo", "r");
	if (!mi)
		return -1;
	char line[8192], mp[4096], opts[512];
	int bad = 0;
	while (fgets(line, sizeof(line), mi)) {
		if (sscanf(line, "%*s %*s %*s %*s %4095s %511s", mp, opts) != 2)
			continue;
		ro_sandbox_unescape(mp);
		bool keep_it = false;
		for (size_t i = 0; i < nkeep; i++)
			keep_it |= kept[i][0] && !strcmp(mp, kept[i]);
		if (!keep_it && mount("none", mp, "none", MS_REMOUNT | MS_BIND | MS_RDONLY | ro_sandbox_kept_flags(opts), NULL) &&
		    errno != ENOENT) {
			fprintf(stderr, "sandbox: cannot make %s read-only: %s\n", mp, strerror(errno));
			bad++;
		}
	}
	fclose(mi);
	if (bad || mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"))
		return -1;
	if (mkdir(probe, 0700) == 0) {
		rmdir(probe);
		return -1;
	}
	return errno == EROFS ? 0 : -1;
}

#endif
