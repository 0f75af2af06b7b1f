/*
 * lkvm sandbox's confinement (include/sandbox_confine.h): the guest's root
 * is the host's / through a view (an allow list enforced by the 9P server on
 * every walk, not only by what the guest mounts), and its user-mode network
 * follows policy=sandbox (the internet, not what only this host reaches).
 *
 * The view: /usr, /bin, /sbin, /lib*, /opt and /etc, the working tree (not
 * when it is / itself), lkvm's own binary (the guest's init) and what
 * --expose names. Never: /etc's secrets (shadow and gshadow, SSH host keys,
 * sudoers and sudoers.d, ssl/private, security/opasswd) and anything the
 * invoking user could not read on the host (under sudo: SUDO_UID's user, by
 * the mode bits and its groups). /proc, /sys, /dev, /run and /tmp are empty
 * folders the guest mounts its own file systems on. So /root, /home (but
 * the working tree's path), /var, /srv, /mnt, /media and the host's /proc,
 * /sys and /dev are not there. --host-root shares the whole / as before.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "options.h"
#include "sandbox_confine.h"
#include "util.h"

static const char *const system_dirs[] = { "usr", "bin", "sbin", "opt", "etc" };
static const char *const secrets[] = {
	"etc/shadow", "etc/shadow-", "etc/gshadow", "etc/gshadow-", "etc/ssh/ssh_host_*", "etc/sudoers",
	"etc/sudoers.d", "etc/ssl/private", "etc/security/opasswd",
};
static const char *const mount_points[] = { "proc", "sys", "dev", "run", "tmp" };

/* --name VALUE or --name=VALUE at argv[*i]: the value (and *i past it), or NULL. */
static const char *value_of(const char *name, int *i, int end, char **argv, bool *missing)
{
	size_t n = strlen(name);
	*missing = false;
	if (strncmp(argv[*i], name, n))
		return NULL;
	if (argv[*i][n] == '=')
		return argv[*i] + n + 1;
	if (argv[*i][n])
		return NULL;
	if (*i + 1 >= end) {
		*missing = true;
		return NULL;
	}
	return argv[++*i];
}

int sandbox_confine_parse(struct sandbox_confine *c, int argc, char **argv, int *end)
{
	(void)argc;
	memset(c, 0, sizeof(*c));
	int out = 1;
	for (int i = 1; i < *end; i++) {
		const char *v;
		bool missing;
		if (!strcmp(argv[i], "--host-root")) {
			c->host_root = true;
		} else if (!strcmp(argv[i], "--host-loopback")) {
			c->host_loopback = true;
		} else if ((v = value_of("--net-allow", &i, *end, argv, &missing)) || missing) {
			if (missing)
				return err_set("--net-allow needs HOST[/BITS][:PORT]");
			if (c->nr_allow == SANDBOX_MAX_RULES)
				return err_set("--net-allow: at most %d", SANDBOX_MAX_RULES);
			if (!*v || strchr(v, ','))
				return err_set("--net-allow '%s': needs HOST[/BITS][:PORT]", v);
			c->allow[c->nr_allow++] = v;
		} else if ((v = value_of("--expose", &i, *end, argv, &missing)) || missing) {
			if (missing)
				return err_set("--expose needs PATH");
			if (c->nr_expose == SANDBOX_MAX_RULES)
				return err_set("--expose: at most %d", SANDBOX_MAX_RULES);
			if (v[0] != '/')
				return err_set("--expose '%s': needs an absolute path", v);
			c->expose[c->nr_expose++] = v;
		} else {
			argv[out++] = argv[i];
			continue;
		}
	}
	for (int i = *end; argv[i]; i++)	/* "--" and the command move up */
		argv[out + i - *end] = argv[i];
	argv[out + argc - *end] = NULL;
	*end = out;
	return 0;
}

/* The invoking user: SUDO_UID/SUDO_GID's under sudo as root, else ours; its groups. */
static int reader(uid_t *uid, gid_t *gid, gid_t *groups, int *n)
{
	const char *su = getenv("SUDO_UID"), *sg = getenv("SUDO_GID");
	if (geteuid() == 0 && su && sg) {
		char *e1, *e2;
		unsigned long u = strtoul(su, &e1, 10), g = strtoul(sg, &e2, 10);
		if (*e1 || *e2 || !*su || !*sg)
			return err_set("SUDO_UID/SUDO_GID are not numbers");
		*uid = u;
		*gid = g;
		struct passwd *pw = getpwuid(*uid);
		if (!pw || getgrouplist(pw->pw_name, *gid, groups, n) < 0)
			*n = 0;	/* unknown user, or too many groups: the primary group only (stricter) */
		return 0;
	}
	*uid = getuid();
	*gid = getgid();
	int k = getgroups(*n, groups);
	*n = k < 0 ? 0 : k;
	return 0;
}

static int put_line(FILE *f, const char *kind, const char *what)
{
	if (strchr(what, '\n'))
		return err_set("view: '%s' holds a newline", what);
	fprintf(f, "%s %s\n", kind, what);
	return 0;
}

static int write_reader(FILE *f)
{
	uid_t uid = 0;
	gid_t gid = 0, groups[256];
	int n = 256;
	if (reader(&uid, &gid, groups, &n) < 0)
		return -1;
	if (uid == 0)
		return 0;	/* root reads everything; the secrets are left out by name */
	fprintf(f, "reader %u %u", (unsigned)uid, (unsigned)gid);
	for (int i = 0; i < n && i < 256; i++)
		fprintf(f, " %u", (unsigned)groups[i]);
	fputc('\n', f);
	return 0;
}

/* A new file dir/name, ours alone, never following a planted name. */
static FILE *create(const char *dir, const char *name, char *path, size_t cap)
{
	snprintf(path, cap, "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	FILE *f = fd < 0 ? NULL : fdopen(fd, "w");
	if (!f) {
		err_errno("%s", path);
		if (fd >= 0)
			close(fd);
	}
	return f;
}

static int finish(FILE *f, const char *path, int r)
{
	if (fclose(f) && !r)
		r = err_errno("%s", path);
	return r;
}

int sandbox_confine_views(struct sandbox_confine *c, const char *dir, const char *cwd, const char *self)
{
	c->view[0] = c->cwd_view[0] = 0;
	if (c->host_root)
		return 0;
	FILE *f = create(dir, "view", c->view, sizeof(c->view));
	if (!f)
		return -1;
	int r = 0;
	for (size_t i = 0; i < sizeof(system_dirs) / sizeof(system_dirs[0]); i++)
		fprintf(f, "allow %s\n", system_dirs[i]);
	DIR *d = opendir("/");	/* /lib, /lib32, /lib64, /libx32: whichever this host has */
	for (struct dirent *e; d && (e = readdir(d));)
		if (!strncmp(e->d_name, "lib", 3) && !strchr(e->d_name, '\n'))
			fprintf(f, "allow %s\n", e->d_name);
	if (d)
		closedir(d);
	char real[PATH_MAX];
	/* the working tree, unless it is / or under /tmp (shared on its own there) */
	if (realpath(cwd, real) && strcmp(real, "/") && strncmp(real, "/tmp/", 5) && strcmp(real, "/tmp"))
		r = r ? r : put_line(f, "allow", real);
	else if (!strcmp(cwd, "/"))
		fprintf(stderr, "lkvm sandbox: the working directory is /: it is not shared (cd into your tree)\n");
	r = r ? r : put_line(f, "allow", self);
	for (int i = 0; i < c->nr_expose && !r; i++)
		r = put_line(f, "allow", realpath(c->expose[i], real) ? real : c->expose[i]);
	for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
		fprintf(f, "deny %s\n", secrets[i]);
	for (size_t i = 0; i < sizeof(mount_points) / sizeof(mount_points[0]); i++)
		fprintf(f, "empty %s\n", mount_points[i]);
	if (!r)
		r = write_reader(f);
	if ((r = finish(f, c->view, r)) < 0)
		return -1;
	/* the working directory's own share (under /tmp): only what its reader may read */
	if (!(f = create(dir, "cwd-view", c->cwd_view, sizeof(c->cwd_view))))
		return -1;
	return finish(f, c->cwd_view, write_reader(f));
}

void sandbox_confine_network(struct sandbox_confine *c, int end, char **argv, bool *has_net)
{
	char policy[sizeof(c->net) - 16];
	size_t n = snprintf(policy, sizeof(policy), "policy=sandbox%s", c->host_loopback ? ",host_loopback=on" : "");
	for (int i = 0; i < c->nr_allow && n < sizeof(policy); i++)
		n += snprintf(policy + n, sizeof(policy) - n, ",allow=%s", c->allow[i]);
	snprintf(c->net, sizeof(c->net), "mode=user,%s", policy);
	*has_net = false;
	for (int i = 1; i < end; i++) {
		char **arg = NULL;
		if (!strcmp(argv[i], "--network") && i + 1 < end)
			arg = &argv[++i];
		else if (!strncmp(argv[i], "--network=", 10))
			arg = &argv[i];
		if (!arg)
			continue;
		*has_net = true;
		if (!strstr(*arg, "mode=user") || strstr(*arg, "policy="))
			continue;	/* tap, none, or a policy of its own */
		size_t len = strlen(*arg) + strlen(policy) + 2;
		char *joined = xcalloc(1, len);
		snprintf(joined, len, "%s,%s", *arg, policy);
		*arg = opt_strdup(joined);
		free(joined);
	}
}
