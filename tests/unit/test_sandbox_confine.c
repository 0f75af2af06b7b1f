/*
 * lkvm sandbox's confinement (cmd/sandbox_confine.c): its options leave the
 * run options alone, the network follows policy=sandbox, and the view it
 * writes, served over this host's real / by the 9P server, shows the
 * system's programs and /etc but not /etc's secrets, files the invoking user
 * cannot read, /root, /home, /var/lib or the host's /proc. Runs inside the
 * read-only sandbox of tests/ro_sandbox.h (a private /tmp).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include "test.h"
#include "p9.h"
#include "sandbox_confine.h"
#include "util.h"
#include "../ro_sandbox.h"
#include "p9_client.h"

#define NOBODY 65534

__attribute__((constructor)) static void confine(void)
{
	if (ro_sandbox(NULL, 0, "/etc/.lkvm-test-sandbox-confine-probe") == 0)
		return;
	if (geteuid() == 0) {
		fprintf(stderr, "test_sandbox_confine: refusing to run as root without a read-only sandbox\n");
		exit(1);
	}
}

TEST(sandbox_options_are_taken_out)
{
	char *argv[] = { "sandbox", "-m", "256", "--host-loopback", "--net-allow", "10.1.2.3:80",
			 "--net-allow=169.254.169.254", "--expose", "/srv", "--network", "mode=user", "--", "cmd",
			 "--host-root", NULL };
	int argc = 14, end = 11;
	struct sandbox_confine c;
	CHECK_EQ(sandbox_confine_parse(&c, argc, argv, &end), 0);
	CHECK_EQ(end, 5);
	CHECK(!strcmp(argv[3], "--network") && !strcmp(argv[5], "--") && !strcmp(argv[6], "cmd"));
	CHECK(!strcmp(argv[7], "--host-root") && argv[8] == NULL);	/* the command's own arguments stay */
	CHECK(c.host_loopback && !c.host_root);
	CHECK_EQ(c.nr_allow, 2);
	CHECK(!strcmp(c.allow[1], "169.254.169.254"));
	CHECK_EQ(c.nr_expose, 1);
	bool has_net;
	sandbox_confine_network(&c, end, argv, &has_net);
	CHECK(has_net);
	CHECK(!strcmp(argv[4], "mode=user,policy=sandbox,host_loopback=on,allow=10.1.2.3:80,allow=169.254.169.254"));
	char *none[] = { "sandbox", "--network", "mode=none", "--", "x", NULL };
	sandbox_confine_network(&c, 3, none, &has_net);
	CHECK(has_net && !strcmp(none[2], "mode=none"));
	char *plain[] = { "sandbox", "--", "x", NULL };
	end = 1;
	CHECK_EQ(sandbox_confine_parse(&c, 3, plain, &end), 0);
	sandbox_confine_network(&c, end, plain, &has_net);
	CHECK(!has_net && !strcmp(c.net, "mode=user,policy=sandbox"));
	char *bad1[] = { "sandbox", "--net-allow", "--", "x", NULL };
	end = 2;
	CHECK_EQ(sandbox_confine_parse(&c, 4, bad1, &end), -1);
	CHECK(strstr(err_msg(), "--net-allow") != NULL);
	char *bad2[] = { "sandbox", "--expose", "rel", "--", "x", NULL };
	end = 3;
	CHECK_EQ(sandbox_confine_parse(&c, 5, bad2, &end), -1);
	CHECK(strstr(err_msg(), "absolute") != NULL);
}

static uint8_t reqbuf[P9_MAX_MSIZE + 64], respbuf[P9_MAX_MSIZE];
static struct p9c cl = { .req = reqbuf, .resp = respbuf, .resp_cap = sizeof(respbuf) };

static int walk(const char *path)
{
	p9c_clunk(&cl, 1);
	const char *names[P9_MAX_WALK];
	char buf[512], *save;
	int n = 0;
	snprintf(buf, sizeof(buf), "%s", path);
	for (char *t = strtok_r(buf, "/", &save); t && n < P9_MAX_WALK; t = strtok_r(NULL, "/", &save))
		names[n++] = t;
	int got, e = p9c_walk(&cl, 0, 1, n, names, NULL, &got);
	return e ? e : got < n ? ENOENT : 0;
}

static struct p9_view *served_view;

static bool serve(const char *root, const char *viewfile)
{
	struct p9_view *v = served_view = p9_view_load(viewfile);
	CHECK(v != NULL);
	struct p9_server_opts o = { .ro = true, .xdev = true, .view = v };
	cl.srv = v ? p9_server_new(root, &o) : NULL;
	CHECK(cl.srv != NULL);
	if (!cl.srv)
		return false;
	uint32_t msize;
	char ver[32];
	CHECK_EQ(p9c_version(&cl, 65536, "9P2000.L", &msize, ver, sizeof(ver)), 0);
	CHECK_EQ(p9c_attach(&cl, 0, 0, NULL), 0);
	return true;
}

static void gone(const char *path)
{
	int e = walk(path);
	if (e != ENOENT)
		fprintf(stderr, "  /%s is reachable (%d)\n", path, e);
	CHECK_EQ(e, ENOENT);
}

/* A regular file in /etc (depth 2) that others cannot read, not on the list of secrets by name. */
static bool unreadable_in_etc(char *out, size_t cap)
{
	const char *dirs[] = { "/etc", "/etc/default", "/etc/security", "/etc/ssl/private" };
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		DIR *d = opendir(dirs[i]);
		for (struct dirent *e; d && (e = readdir(d));) {
			char p[512];
			struct stat st;
			snprintf(p, sizeof(p), "%s/%s", dirs[i], e->d_name);
			if (lstat(p, &st) || !S_ISREG(st.st_mode) || (st.st_mode & 04) || st.st_uid == NOBODY ||
			    strstr(p, "shadow") || strstr(p, "opasswd") || strstr(p, "ssl/private"))
				continue;
			snprintf(out, cap, "%s", p + 1);
			closedir(d);
			return true;
		}
		if (d)
			closedir(d);
	}
	return false;
}

TEST(the_default_view_of_this_host)
{
	if (geteuid() != 0)
		SKIP("needs root (lkvm as root under sudo, a second user as the reader)");
	char dir[] = "/tmp/lkvm-confine-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	setenv("SUDO_UID", "65534", 1);
	setenv("SUDO_GID", "65534", 1);
	/* lkvm's binary must be in the view: this test's own stands for it, unless it lives
	   under /tmp, which the test's sandbox replaced (a clone checked out there): then a
	   folder the view otherwise leaves out does. */
	char self[PATH_MAX];
	if (!realpath("/proc/self/exe", self))
		snprintf(self, sizeof(self), "/var/backups");
	struct sandbox_confine c = { 0 };
	char *argv[] = { "sandbox", "--", "x", NULL };
	int end = 1;
	CHECK_EQ(sandbox_confine_parse(&c, 3, argv, &end), 0);
	/* the working tree: /var/cache, so that /var is a passage to it and nothing else */
	CHECK_EQ(sandbox_confine_views(&c, dir, "/var/cache", self), 0);
	unsetenv("SUDO_UID");
	unsetenv("SUDO_GID");
	if (!serve("/", c.view))
		return;
	CHECK_EQ(walk("usr/bin"), 0);
	CHECK_EQ(walk("etc/passwd"), 0);
	CHECK_EQ(walk("var/cache"), 0);
	CHECK_EQ(walk(self + 1), 0);	/* the guest's init */
	CHECK_EQ(walk("proc"), 0);	/* an empty folder to mount on */
	gone("etc/shadow");
	gone("etc/gshadow");
	gone("etc/sudoers.d");
	gone("etc/ssh/ssh_host_ed25519_key");
	gone("root");
	gone("root/.ssh");
	gone("home");
	gone("var/lib");
	gone("var/lib/dpkg/status");
	gone("srv");
	gone("mnt");
	gone("media");
	gone("proc/1/environ");
	gone("proc/self");
	gone("sys/kernel");
	gone("dev/null");
	gone("run/systemd");
	char other[PATH_MAX];
	snprintf(other, sizeof(other), "%s", self + 1);
	*strrchr(other, '/') = 0;
	strcat(other, "/../Makefile");	/* next to lkvm, outside the view */
	gone(other);
	char hidden[512];
	if (unreadable_in_etc(hidden, sizeof(hidden)))
		gone(hidden);
	else
		printf("  (no file in /etc unreadable by others on this host: that case is not checked)\n");
	p9_server_free(cl.srv);
	p9_view_free(served_view);

	/* --host-root: no view */
	c.host_root = true;
	CHECK_EQ(sandbox_confine_views(&c, dir, "/var/cache", self), 0);
	CHECK(c.view[0] == 0);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd)) {}
}

TEST(the_working_directory_share_keeps_what_its_user_cannot_read)
{
	if (geteuid() != 0)
		SKIP("needs root (a second user as the reader)");
	char dir[] = "/tmp/lkvm-confine-XXXXXX", tree[] = "/tmp/lkvm-tree-XXXXXX";
	CHECK(mkdtemp(dir) != NULL && mkdtemp(tree) != NULL);
	chmod(tree, 0755);
	char p[256];
	snprintf(p, sizeof(p), "%s/readable", tree);
	int fd = open(p, O_CREAT | O_WRONLY, 0644);
	CHECK(fd >= 0);
	close(fd);
	snprintf(p, sizeof(p), "%s/unreadable", tree);
	fd = open(p, O_CREAT | O_WRONLY, 0600);
	CHECK(fd >= 0);
	close(fd);
	setenv("SUDO_UID", "65534", 1);
	setenv("SUDO_GID", "65534", 1);
	struct sandbox_confine c = { 0 };
	CHECK_EQ(sandbox_confine_views(&c, dir, tree, "/bin/true"), 0);
	unsetenv("SUDO_UID");
	unsetenv("SUDO_GID");
	CHECK(c.cwd_view[0] != 0);
	if (!serve(tree, c.cwd_view))
		return;
	CHECK_EQ(walk("readable"), 0);
	gone("unreadable");
	p9_server_free(cl.srv);
	p9_view_free(served_view);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", dir, tree);
	if (system(cmd)) {}
}

TEST_MAIN()
