/* The client side of the control socket: lkvm list/stop/pause/resume/debug/stat/balloon. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>
#include "control.h"
#include "control_int.h"
#include "util.h"

int control_request(const char *name, const char *request, char *reply, size_t len)
{
	return control_request_fds(name, request, NULL, 0, reply, len, 5);
}

/* The request and its newline in one message, the descriptors riding on it. */
static int send_request(int fd, const char *request, const int *fds, int nfds)
{
	size_t rl = strlen(request);
	char *msg = malloc(rl + 1);
	if (!msg)
		return -1;
	memcpy(msg, request, rl);
	msg[rl] = '\n';
	union {
		struct cmsghdr h;
		char space[CMSG_SPACE(sizeof(int) * 16)];
	} cm;
	struct iovec iov = { msg, rl + 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (nfds > 0 && nfds <= 16) {
		memset(&cm, 0, sizeof(cm));
		m.msg_control = cm.space;
		m.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *h = CMSG_FIRSTHDR(&m);
		h->cmsg_level = SOL_SOCKET;
		h->cmsg_type = SCM_RIGHTS;
		h->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(h), fds, sizeof(int) * nfds);
	}
	ssize_t w = sendmsg(fd, &m, MSG_NOSIGNAL);
	int ret = w == (ssize_t)(rl + 1) ? 0 : -1;
	free(msg);
	return ret;
}

int control_request_fds(const char *name, const char *request, const int *fds, int nfds, char *reply, size_t len,
			int timeout_s)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	if (control_socket_path(name, path, sizeof(path)) < 0)
		return -1;
	int fd = control_connect(path);
	if (fd < 0) {
		if (errno == ENOENT)
			return err_set("no VM named '%s' (see 'lkvm list')", name);
		if (errno == EACCES || errno == EPERM)
			return err_set("%s: permission denied (the VM belongs to another user)", path);
		if (errno == ECONNREFUSED) {
			if (control_remove_stale(path))
				return err_set("no VM named '%s' (removed its stale socket)", name);
			return err_set("no VM named '%s' answers at %s", name, path);
		}
		return err_errno("%s", path);
	}
	struct timeval tv = { .tv_sec = timeout_s };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (nfds > 16) {
		close(fd);
		return err_set("VM '%s': at most 16 descriptors go with a request", name);
	}
	if (send_request(fd, request, fds, nfds) < 0) {
		close(fd);
		return err_errno("VM '%s': cannot send request", name);
	}
	size_t n = 0;
	while (n + 1 < len) {
		ssize_t r = read(fd, reply + n, len - 1 - n);
		if (r < 0) {
			close(fd);
			return err_set("VM '%s' is not responding", name);
		}
		if (r == 0)
			break;
		n += r;
		if (memchr(reply, '\n', n))
			break;
	}
	close(fd);
	reply[n] = 0;
	if (!n)
		return err_set("VM '%s' closed the connection without replying", name);
	return 0;
}

int control_for_each(int (*fn)(const char *name, void *arg), void *arg)
{
	char dir[200];
	if (control_dir(dir, sizeof(dir)) < 0)
		return -1;
	DIR *d = opendir(dir);
	if (!d)
		return err_errno("%s", dir);
	int ret = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name);
		if (n < 6 || n > 63 + 5 || strcmp(e->d_name + n - 5, ".sock") || e->d_type != DT_SOCK)
			continue;
		char name[64];
		snprintf(name, sizeof(name), "%.*s", (int)(n - 5), e->d_name);
		ret |= fn(name, arg);
	}
	closedir(d);
	return ret;
}
