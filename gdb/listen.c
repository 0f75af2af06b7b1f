/*
 * The gdb stub's socket: tcp:[HOST:]PORT (127.0.0.1 unless HOST is given; numeric
 * IPv4, [IPv6] or localhost, since name lookups cannot run under seccomp), a bare
 * PORT, or unix:PATH made 0600 without following a symlink.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include "gdb.h"
#include "util.h"

struct gdb_addr {
	bool is_unix;
	struct sockaddr_un un;
	struct sockaddr_storage ss;
	socklen_t len;
	char host[64];
};

static int parse_unix(const char *spec, const char *path, struct gdb_addr *a)
{
	struct stat st;
	a->is_unix = true;
	a->un.sun_family = AF_UNIX;
	if (!*path)
		return err_set("unix: needs a path");
	if (strlen(path) >= sizeof(a->un.sun_path))
		return err_set("the path is longer than %zu bytes", sizeof(a->un.sun_path) - 1);
	snprintf(a->un.sun_path, sizeof(a->un.sun_path), "%s", path);
	if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode))
		return err_set("%s exists and is not a socket", path);
	return 0;
}

static int parse_tcp(const char *spec, const char *hp, struct gdb_addr *a)
{
	const char *port = hp, *colon = strrchr(hp, ':');
	snprintf(a->host, sizeof(a->host), "127.0.0.1");
	if (colon) {
		size_t n = colon - hp;
		if (!n || n >= sizeof(a->host))
			return err_set("no host before the port");
		memcpy(a->host, hp, n);
		a->host[n] = 0;
		port = colon + 1;
		if (n > 2 && a->host[0] == '[' && a->host[n - 1] == ']') {
			memmove(a->host, a->host + 1, n - 2);
			a->host[n - 2] = 0;
		}
		if (!strcmp(a->host, "localhost"))
			snprintf(a->host, sizeof(a->host), "127.0.0.1");
	}
	char *end;
	long pn = strtol(port, &end, 10);
	if (!*port || *end || pn < 0 || pn > 65535)
		return err_set("the port must be a number 0-65535 (tcp:[HOST:]PORT, unix:PATH or PORT)");
	struct sockaddr_in *in4 = (struct sockaddr_in *)&a->ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->ss;
	memset(&a->ss, 0, sizeof(a->ss));
	if (inet_pton(AF_INET, a->host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons(pn);
		a->len = sizeof(*in4);
	} else if (inet_pton(AF_INET6, a->host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(pn);
		a->len = sizeof(*in6);
	} else {
		return err_set("'%s' is not a numeric IPv4 or [IPv6] address", a->host);
	}
	return 0;
}

static int parse(const char *spec, struct gdb_addr *a)
{
	memset(a, 0, sizeof(*a));
	if (!strncmp(spec, "unix:", 5))
		return parse_unix(spec, spec + 5, a);
	return parse_tcp(spec, !strncmp(spec, "tcp:", 4) ? spec + 4 : spec, a);
}

int gdb_check_addr(const char *addr)
{
	struct gdb_addr a;
	return parse(addr, &a);
}

/* A socket file at the path: refused if someone listens there, else a stale one removed. */
static int clear_stale(const char *spec, const struct gdb_addr *a)
{
	struct stat st;
	if (lstat(a->un.sun_path, &st) < 0)
		return 0;
	int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool live = probe >= 0 && connect(probe, (const struct sockaddr *)&a->un, sizeof(a->un)) == 0;
	if (probe >= 0)
		close(probe);
	if (live)
		return err_set("gdb stub %s: another program listens there", spec);
	unlink(a->un.sun_path);
	return 0;
}

int gdb_listen(const char *addr, char *where, size_t wlen, char *unix_path, size_t plen)
{
	struct gdb_addr a;
	int fd, one = 1;
	unix_path[0] = 0;
	if (parse(addr, &a) < 0) {
		char why[300];
		snprintf(why, sizeof(why), "%s", err_msg());
		return err_set("gdb stub %s: %s", addr, why);
	}
	if (a.is_unix) {
		if (clear_stale(addr, &a) < 0)
			return -1;
		if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
			return err_errno("gdb stub %s: socket", addr);
		/*
		 * The file bind() makes takes the socket's mode (less the umask): 0600 from the start,
		 * not chmod'ed after. bind() never follows a symlink at the path, so one planted
		 * meanwhile makes it fail.
		 */
		if (fchmod(fd, 0600) < 0 || bind(fd, (struct sockaddr *)&a.un, sizeof(a.un)) < 0 || listen(fd, 1) < 0) {
			err_errno("gdb stub %s", addr);
			close(fd);
			return -1;
		}
		snprintf(unix_path, plen, "%s", a.un.sun_path);
		snprintf(where, wlen, "unix:%s", a.un.sun_path);
		return fd;
	}
	if ((fd = socket(a.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return err_errno("gdb stub %s: socket", addr);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a.ss, a.len) < 0 || listen(fd, 1) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a.ss, &a.len) < 0) {
		err_errno("gdb stub %s", addr);
		close(fd);
		return -1;
	}
	bool v4 = a.ss.ss_family == AF_INET;
	unsigned port = ntohs(v4 ? ((struct sockaddr_in *)&a.ss)->sin_port : ((struct sockaddr_in6 *)&a.ss)->sin6_port);
	snprintf(where, wlen, v4 ? "%s:%u" : "[%s]:%u", a.host, port);
	return fd;
}
