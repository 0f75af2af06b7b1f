/*
 * Where control sockets live, and the socket files themselves: nothing here
 * follows a symlink or removes what is not a socket, so a user who can point
 * lkvm's HOME or XDG_RUNTIME_DIR somewhere (sudo -E) gains nothing by it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include "control.h"
#include "control_int.h"
#include "util.h"

int control_dir(char *buf, size_t len)
{
	const char *rt = getenv("XDG_RUNTIME_DIR");
	const char *home = getenv("HOME");
	int n;
	if (rt && *rt)
		n = snprintf(buf, len, "%s/lkvm", rt);
	else if (home && *home)
		n = snprintf(buf, len, "%s/.lkvm", home);
	else
		return err_set("neither XDG_RUNTIME_DIR nor HOME is set: nowhere to put control sockets");
	if (n < 0 || (size_t)n >= len)
		return err_set("control socket directory name too long");
	if (mkdir(buf, 0700) < 0 && errno != EEXIST)
		return err_errno("%s", buf);
	struct stat st;
	if (lstat(buf, &st) < 0)
		return err_errno("%s", buf);
	if (!S_ISDIR(st.st_mode))
		return err_set("%s: not a directory (a symlink or a file is not trusted for control sockets)", buf);
	if (st.st_uid != geteuid())
		return err_set("%s: owned by uid %u, not by us (uid %u): refusing to use it for control sockets", buf,
			       (unsigned)st.st_uid, (unsigned)geteuid());
	if (st.st_mode & 022)
		return err_set("%s: writable by group or others (mode %03o): refusing to use it for control sockets",
			       buf, (unsigned)(st.st_mode & 0777));
	return 0;
}

int control_socket_path(const char *name, char *out, size_t len)
{
	char dir[200];
	if (control_dir(dir, sizeof(dir)) < 0)
		return -1;
	if (!*name || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, "..") || strlen(name) > 63)
		return err_set("bad VM name '%s' (1-63 characters, no '/')", name);
	if ((size_t)snprintf(out, len, "%s/%s.sock", dir, name) >= len)
		return err_set("control socket path too long");
	return 0;
}

int control_connect(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

bool control_remove_stale(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0 || !S_ISSOCK(st.st_mode) || st.st_uid != geteuid())
		return false;	/* not a socket of ours: left alone */
	int fd = control_connect(path);
	if (fd >= 0) {
		close(fd);
		return false;	/* a VM answers there */
	}
	if (errno != ECONNREFUSED)
		return false;
	return unlink(path) == 0;
}
