/*
 * A cgroup (v2) per jailed VM (include/cgroup.h). Where: next to the
 * supervisor's own cgroup, under its parent. A cgroup other than the root
 * that holds processes cannot enable controllers for its children ("no
 * internal processes"), so lkvm's own cgroup cannot hold the VM's; its parent
 * normally holds none. Only cgroup2 is used; a v1 or hybrid host gets none.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>
#include "cgroup.h"
#include "util.h"

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

static int cg_write(const char *dir, const char *file, const char *text)
{
	char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return err_errno("%s", path);
	ssize_t n = write(fd, text, strlen(text));
	int e = errno;
	close(fd);
	if (n != (ssize_t)strlen(text)) {
		errno = n < 0 ? e : EIO;
		return err_errno("writing '%s' to %s", text, path);
	}
	return 0;
}

static int cg_read(const char *dir, const char *file, char *buf, size_t len)
{
	char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_errno("%s", path);
	ssize_t n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return err_errno("%s", path);
	buf[n] = 0;
	return 0;
}

/* Is word one of the space-separated words of list? */
static int has_word(const char *list, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = list; (p = strstr(p, word)); p += n)
		if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\n' || !p[n]))
			return 1;
	return 0;
}

/* This process's cgroup2 path ("0::PATH" in /proc/self/cgroup). */
static int own_cgroup(char *buf, size_t len)
{
	FILE *f = fopen("/proc/self/cgroup", "re");
	if (!f)
		return err_errno("/proc/self/cgroup");
	char line[PATH_MAX + 16];
	int found = 0;
	while (!found && fgets(line, sizeof(line), f))
		if (!strncmp(line, "0::/", 4)) {
			line[strcspn(line, "\n")] = 0;
			found = (size_t)snprintf(buf, len, "%s", line + 3) < len ? 1 : -1;
		}
	fclose(f);
	if (found < 0)
		return err_set("/proc/self/cgroup: the cgroup's path is too long");
	return found ? 0 : err_set("/proc/self/cgroup: lkvm is in no cgroup2 cgroup");
}

int cgroup_make(struct cgroup *cg, const char *mnt, const char *name, uint64_t mem_max, uint64_t pids_max)
{
	cg->dir[0] = 0;
	if (!mnt)
		mnt = CGROUP_MNT;
	struct statfs sf;
	if (statfs(mnt, &sf) < 0)
		return err_errno("%s", mnt);
	if (sf.f_type != CGROUP2_SUPER_MAGIC)
		return err_set("%s is not a cgroup2 mount", mnt);
	char own[PATH_MAX], parent[PATH_MAX + 8];
	if (own_cgroup(own, sizeof(own)) < 0)
		return -1;
	char *slash = strrchr(own, '/');
	*slash = 0;	/* its parent: "" for the root */
	if ((size_t)snprintf(parent, sizeof(parent), "%s%s", mnt, own) >= sizeof(parent))
		return err_set("%s%s: path too long", mnt, own);
	if (access(parent, W_OK) < 0)
		return err_errno("%s (the parent of lkvm's cgroup)", parent);
	char ctl[512];
	if (cg_read(parent, "cgroup.controllers", ctl, sizeof(ctl)) < 0)
		return -1;
	if (!has_word(ctl, "memory") || !has_word(ctl, "pids"))
		return err_set("%s/cgroup.controllers: the memory or pids controller is not available", parent);
	if (cg_read(parent, "cgroup.subtree_control", ctl, sizeof(ctl)) < 0)
		return -1;
	if ((!has_word(ctl, "memory") || !has_word(ctl, "pids")) &&
	    cg_write(parent, "cgroup.subtree_control", "+memory +pids") < 0)
		return -1;
	char safe[64];
	snprintf(safe, sizeof(safe), "%s", name ? name : "vm");
	for (char *p = safe; *p; p++)
		if (*p == '/' || *p == '\n')
			*p = '_';
	if ((size_t)snprintf(cg->dir, sizeof(cg->dir), "%s/lkvm-%s-%d", parent, safe, (int)getpid()) >= sizeof(cg->dir)) {
		cg->dir[0] = 0;
		return err_set("%s: path too long", parent);
	}
	if (mkdir(cg->dir, 0755) < 0) {
		err_errno("mkdir %s", cg->dir);
		cg->dir[0] = 0;
		return -1;
	}
	char num[32];
	snprintf(num, sizeof(num), "%llu", (unsigned long long)mem_max);
	int r = cg_write(cg->dir, "memory.max", num);
	snprintf(num, sizeof(num), "%llu", (unsigned long long)pids_max);
	if (r == 0)
		r = cg_write(cg->dir, "pids.max", num);
	if (r < 0) {
		char why[512];
		snprintf(why, sizeof(why), "%s", err_msg());
		rmdir(cg->dir);
		cg->dir[0] = 0;
		return err_set("%s", why);
	}
	return 0;
}

int cgroup_enter(const struct cgroup *cg, pid_t pid)
{
	char num[32];
	snprintf(num, sizeof(num), "%d", (int)pid);
	return cg_write(cg->dir, "cgroup.procs", num);
}

/* Nothing left in it ("populated 0" in cgroup.events)? */
static int empty(const char *dir)
{
	char ev[512];
	return cg_read(dir, "cgroup.events", ev, sizeof(ev)) < 0 || strstr(ev, "populated 0") != NULL;
}

int cgroup_remove(struct cgroup *cg)
{
	if (!cg->dir[0])
		return 0;
	char path[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/cgroup.kill", cg->dir);
	if (access(path, F_OK) < 0 || cg_write(cg->dir, "cgroup.kill", "1") < 0) {
		/* Before 5.14: each process by hand (pids.max stops new ones). */
		char procs[4096];
		if (cg_read(cg->dir, "cgroup.procs", procs, sizeof(procs)) == 0)
			for (char *p = procs, *end; *p; p = end) {
				long pid = strtol(p, &end, 10);
				if (end == p)
					break;
				if (pid > 0)
					kill((pid_t)pid, SIGKILL);
			}
	}
	/* The killed leave a moment later: wait up to 5 s for the cgroup to empty. */
	for (int i = 0; i < 500 && !empty(cg->dir); i++)
		nanosleep(&(struct timespec){ 0, 10000000 }, NULL);
	for (int i = 0; rmdir(cg->dir) < 0; i++) {
		if (errno != EBUSY || i == 100)
			return err_errno("rmdir %s", cg->dir);
		nanosleep(&(struct timespec){ 0, 10000000 }, NULL);
	}
	cg->dir[0] = 0;
	return 0;
}
