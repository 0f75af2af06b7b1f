/*
 * VMs made and destroyed in one process, as `lkvm sandbox` and the snapshot
 * cache will do: N times over, `lkvm run` with every device type (disk, user
 * NIC, 9p share, rng, balloon, virtio console, vsock, the board's own) boots a test
 * guest that prints and exits 0, and is destroyed. Afterwards only the main
 * thread remains and the fd count is where it started; under SANITIZE=1
 * LeakSanitizer checks at exit that nothing was left allocated.
 *   lifecycle GUEST.bin [N]
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "commands.h"

static int count(const char *dir)
{
	DIR *d = opendir(dir);
	int n = 0;
	if (!d)
		return -1;
	for (struct dirent *e; (e = readdir(d));)
		n += e->d_name[0] != '.';
	closedir(d);
	return n - (!strcmp(dir, "/proc/self/fd"));	/* the DIR's own descriptor */
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: lifecycle GUEST.bin [N]\n");
		return 2;
	}
	int n = argc > 2 ? atoi(argv[2]) : 100;
	char tmp[] = "/tmp/lkvm-lifecycle-XXXXXX", disk[64], share[80], sock[64];
	if (!mkdtemp(tmp))
		return perror("mkdtemp"), 2;
	snprintf(disk, sizeof(disk), "%s/disk.img", tmp);
	snprintf(sock, sizeof(sock), "%s/run", tmp);
	snprintf(share, sizeof(share), "%s,share", tmp);
	int fd = open(disk, O_CREAT | O_RDWR, 0600);
	if (fd < 0 || ftruncate(fd, 1 << 20) < 0)
		return perror(disk), 2;
	close(fd);
	mkdir(sock, 0700);
	setenv("XDG_RUNTIME_DIR", sock, 1);

	int fds0 = count("/proc/self/fd"), threads0 = count("/proc/self/task");
	int failed = 0;
	for (int i = 0; i < n && !failed; i++) {
		char *args[] = { "run", "-k", argv[1], "--flat", "-m", "16", "-d", disk, "--network", "mode=user",
				 "--9p", share, "--rng", "--balloon", "--console", "virtio", "--vsock", "3", "--no-seccomp",
				 "-q", NULL };
		int st = cmd_run(sizeof(args) / sizeof(args[0]) - 1, args);
		if (st != 0) {
			fprintf(stderr, "FAIL lifecycle: VM %d of %d exited with %d\n", i + 1, n, st);
			failed = 1;
		}
	}
	int fds = count("/proc/self/fd"), threads = count("/proc/self/task");
	if (!failed && (fds != fds0 || threads != threads0)) {
		fprintf(stderr, "FAIL lifecycle: after %d VMs: %d fds (%d before), %d threads (%d before)\n", n, fds, fds0,
			threads, threads0);
		failed = 1;
	}
	unlink(disk);
	rmdir(sock);
	rmdir(tmp);
	if (!failed)
		printf("PASS lifecycle: %d VMs with every device type made and destroyed in one process; %d fds and "
		       "%d thread after, as before\n", n, fds, threads);
	return failed;
}
