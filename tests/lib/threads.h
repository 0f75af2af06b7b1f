/*
 * This process's threads as /proc/self/task shows them now, for tests that
 * check which threads a device started: fn gets each thread's id (the task
 * folder's name) and its name (comm, without the newline).
 */
#ifndef LKVM_TEST_THREADS_H
#define LKVM_TEST_THREADS_H

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static inline void each_thread(void (*fn)(const char *tid, const char *comm, void *arg), void *arg)
{
	DIR *d = opendir("/proc/self/task");
	for (struct dirent *e; d && (e = readdir(d));) {
		if (e->d_name[0] == '.')
			continue;
		char path[300], comm[32] = "";
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		int fd = open(path, O_RDONLY);
		if (fd < 0)
			continue;	/* it ended meanwhile */
		if (read(fd, comm, sizeof(comm) - 1) < 0) {}
		close(fd);
		comm[strcspn(comm, "\n")] = 0;
		fn(e->d_name, comm, arg);
	}
	if (d)
		closedir(d);
}

#endif
