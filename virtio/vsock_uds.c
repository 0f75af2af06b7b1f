/*
 * The host side of virtio-vsock's Unix-socket protocol: where PATH is, how it
 * is made (mode 0600, never replacing anything but a stale socket of ours),
 * PATH_P names, and the client's CONNECT handshake (include/vsock.h).
 */
#include <errno.h>
#include <libgen.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include "control.h"	/* control_dir(): the default PATH goes next to the control sockets */
#include "util.h"
#include "vsock.h"

#define SUN_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path))

int vsock_default_path(const char *vm_name, char *buf, size_t len)
{
	char dir[200], name[64];
	if (control_dir(dir, sizeof(dir)) < 0)
		return -1;
	if (vm_name)
		snprintf(name, sizeof(name), "%s", vm_name);
	else
		snprintf(name, sizeof(name), "lkvm-%d", (int)getpid());	/* the control socket's default name */
	if (!*name || strchr(name, '/') || (vm_name && strlen(vm_name) > 63))
		return err_set("bad VM name '%s' (1-63 characters, no '/')", vm_name);
	if ((size_t)snprintf(buf, len, "%s/%s.vsock", dir, name) >= len)
		return err_set("vsock socket path %s/%s.vsock is too long", dir, name);
	return 0;
}

static int fill_addr(struct sockaddr_un *sa, const char *path)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= SUN_PATH_MAX)
		return err_set("%s: longer than a Unix socket path may be (%zu bytes)", path, SUN_PATH_MAX - 1);
	memcpy(sa->sun_path, path, strlen(path));
	return 0;
}

/* 1: something listens at path; 0: nothing does (refused); -1 with err: cannot tell. */
static int listening(const char *path)
{
	struct sockaddr_un sa;
	if (fill_addr(&sa, path) < 0)
		return -1;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return err_errno("vsock socket %s", path);
	int r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	int e = errno;
	close(fd);
	if (r == 0 || e == EAGAIN)	/* EAGAIN: alive, its backlog full */
		return 1;
	if (e == ECONNREFUSED)
		return 0;
	errno = e;
	return err_errno("vsock socket %s", path);
}

int vsock_check_path(const char *path)
{
	if (!*path)
		return err_set("vsock socket path is empty");
	if (strlen(path) + VSOCK_PORT_SUFFIX_MAX >= SUN_PATH_MAX)
		return err_set("vsock socket path %s is too long (at most %zu bytes, leaving room for _PORT)", path,
			       SUN_PATH_MAX - 1 - VSOCK_PORT_SUFFIX_MAX);
	struct stat st;
	if (lstat(path, &st) < 0) {
		if (errno != ENOENT)
			return err_errno("vsock socket %s", path);
		char copy[SUN_PATH_MAX];
		snprintf(copy, sizeof(copy), "%s", path);
		const char *dir = dirname(copy);
		if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
			return err_set("vsock socket %s: folder %s does not exist", path, dir);
		return 0;
	}
	if (!S_ISSOCK(st.st_mode))
		return err_set("vsock socket %s: exists and is not a socket; not replacing it", path);
	if (st.st_uid != geteuid())
		return err_set("vsock socket %s: a socket of another user; not replacing it", path);
	int r = listening(path);
	if (r < 0)
		return -1;
	if (r)
		return err_set("vsock socket %s: in use (another VM or program listens there)", path);
	return 0;	/* a stale socket of ours (a VM that was killed) */
}

int vsock_listen_path(const char *path, dev_t *dev, ino_t *ino)
{
	struct sockaddr_un sa;
	if (vsock_check_path(path) < 0 || fill_addr(&sa, path) < 0)
		return -1;
	struct stat st;
	if (lstat(path, &st) == 0 && unlink(path) < 0)	/* the check found it stale */
		return err_errno("vsock socket %s: cannot remove the stale socket", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return err_errno("vsock socket %s", path);
	/* bind() never follows a symlink in the last component: it fails with EADDRINUSE instead. */
	mode_t old = umask(0177);
	int r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r < 0 || listen(fd, 64) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		if (e == EADDRINUSE)
			return err_set("vsock socket %s: in use (created by another program just now)", path);
		return err_errno("vsock socket %s", path);
	}
	if (lstat(path, &st) < 0) {
		close(fd);
		return err_errno("vsock socket %s", path);
	}
	*dev = st.st_dev;
	*ino = st.st_ino;
	return fd;
}

void vsock_unlink_path(const char *path, dev_t dev, ino_t ino)
{
	struct stat st;
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == dev && st.st_ino == ino)
		unlink(path);
}

int vsock_port_path(const char *path, uint32_t port, char *buf, size_t len)
{
	if ((size_t)snprintf(buf, len, "%s_%u", path, port) >= len)
		return err_set("vsock socket path %s_%u is too long", path, port);
	return 0;
}


int vsock_host_connect(const char *path, uint32_t port, int timeout_ms, uint32_t *host_port)
{
	struct sockaddr_un sa;
	if (fill_addr(&sa, path) < 0)
		return -1;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return err_errno("vsock socket %s", path);
	char line[32];
	int n = snprintf(line, sizeof(line), "CONNECT %u\n", port);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || send(fd, line, n, MSG_NOSIGNAL) != n) {
		err_errno("vsock socket %s", path);
		close(fd);
		return -1;
	}
	/* One byte at a time: nothing of the stream after the line is taken. */
	long long end = (long long)mono_ms() + timeout_ms;
	size_t got = 0;
	while (got < sizeof(line) - 1) {
		long long left = end - (long long)mono_ms();
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (left <= 0 || poll(&p, 1, (int)left) <= 0) {
			close(fd);
			return err_set("vsock %s: no answer to CONNECT %u within %d ms", path, port, timeout_ms);
		}
		ssize_t r = recv(fd, line + got, 1, 0);
		if (r <= 0) {
			close(fd);
			return err_set("vsock %s: the guest refused the connection to port %u (no listener?)", path, port);
		}
		if (line[got++] == '\n')
			break;
	}
	line[got] = 0;
	unsigned hp;
	char nl;
	if (sscanf(line, "OK %u%c", &hp, &nl) != 2 || nl != '\n') {
		close(fd);
		return err_set("vsock %s: unexpected answer to CONNECT %u: '%.20s'", path, port, line);
	}
	if (host_port)
		*host_port = hp;
	return fd;
}
