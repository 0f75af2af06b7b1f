/*
 * A share's view (p9/view.c) through p9_handle(): what is outside it answers
 * ENOENT to walks (also through "..", and a symlink's target is walked by
 * the guest, so it meets the view again), is not listed, and what the
 * view's reader could not read on the host stays closed. Runs inside the
 * read-only sandbox of tests/ro_sandbox.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include "test.h"
#include "p9.h"
#include "util.h"
#include "../ro_sandbox.h"
#include "p9_client.h"

#define READER 12345	/* the view's reader: owns nothing in the tree */

__attribute__((constructor)) static void confine(void)
{
	if (ro_sandbox(NULL, 0, "/etc/.lkvm-test-9p-view-probe") == 0)
		return;
	if (geteuid() == 0) {
		fprintf(stderr, "test_9p_view: refusing to run as root without a read-only sandbox\n");
		exit(1);
	}
}

static char top[64];
static uint8_t reqbuf[P9_MAX_MSIZE + 64], respbuf[P9_MAX_MSIZE];
static struct p9c cl = { .req = reqbuf, .resp = respbuf, .resp_cap = sizeof(respbuf) };
static struct p9_view *view;

static void put(const char *rel, const char *text, mode_t mode)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/%s", top, rel);
	int fd = open(p, O_CREAT | O_TRUNC | O_WRONLY, mode);
	if (fd >= 0) {
		if (write(fd, text, strlen(text)) < 0) {}
		fchmod(fd, mode);
		close(fd);
	}
}

static void dir(const char *rel, mode_t mode)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/%s", top, rel);
	mkdir(p, mode);
	chmod(p, mode);
}

static void link_to(const char *rel, const char *target)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/%s", top, rel);
	if (symlink(target, p)) {}
}

/* A host tree like a machine's /, served read-only through the view a sandbox uses. */
static bool setup(void)
{
	umask(022);
	strcpy(top, "/tmp/lkvm-9pview-XXXXXX");
	if (!mkdtemp(top) || chmod(top, 0755))
		return false;
	const char *dirs[] = { "usr", "usr/bin", "etc", "etc/ssh", "etc/sudoers.d", "home", "home/other",
			       "home/me", "home/me/tree", "var", "var/lib", "proc", "root" };
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
		dir(dirs[i], 0755);
	dir("home/me/tree/sub", 0711);	/* searchable, not listable */
	dir("home/me/tree/closed", 0700);
	put("usr/bin/tool", "tool\n", 0755);
	put("etc/passwd", "passwd\n", 0644);
	put("etc/shadow", "secret\n", 0640);
	put("etc/ssh/ssh_config", "config\n", 0644);
	put("etc/ssh/ssh_host_ed25519_key", "secret\n", 0644);
	put("etc/sudoers.d/ci", "secret\n", 0644);
	put("etc/private", "secret\n", 0600);
	put("home/other/secret", "secret\n", 0644);
	put("home/me/notes", "secret\n", 0644);
	put("home/me/tree/file", "file\n", 0644);
	put("home/me/tree/unreadable", "secret\n", 0600);
	put("home/me/tree/sub/x", "x\n", 0644);
	put("home/me/tree/closed/y", "secret\n", 0644);
	put("var/lib/db", "secret\n", 0644);
	put("root/key", "secret\n", 0644);
	link_to("usr/up", "../home/other");
	link_to("home/me/tree/abs", "/etc/shadow");
	view = p9_view_new();
	CHECK_EQ(p9_view_allow(view, "/usr"), 0);
	CHECK_EQ(p9_view_allow(view, "etc"), 0);
	CHECK_EQ(p9_view_allow(view, "/home/me/tree/"), 0);
	CHECK_EQ(p9_view_deny(view, "etc/shadow"), 0);
	CHECK_EQ(p9_view_deny(view, "etc/ssh/ssh_host_*"), 0);
	CHECK_EQ(p9_view_deny(view, "etc/sudoers.d"), 0);
	CHECK_EQ(p9_view_empty(view, "proc"), 0);
	gid_t none[1] = { 0 };
	CHECK_EQ(p9_view_reader(view, READER, READER, none, 0), 0);
	struct p9_server_opts o = { .ro = true, .xdev = true, .view = view };
	cl.srv = p9_server_new(top, &o);
	CHECK(cl.srv != NULL);
	if (!cl.srv)
		return false;
	uint32_t msize;
	char v[32];
	CHECK_EQ(p9c_version(&cl, 65536, "9P2000.L", &msize, v, sizeof(v)), 0);
	CHECK_EQ(p9c_attach(&cl, 0, 0, NULL), 0);
	return true;
}

static void teardown(void)
{
	p9_server_free(cl.srv);
	cl.srv = NULL;
	p9_view_free(view);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", top);
	if (system(cmd)) {}
}

/* Walk "a/b/c" from the root into fid 1 (clunked first): 0, or the errno; a walk cut short is ENOENT. */
static int walk(const char *path)
{
	p9c_clunk(&cl, 1);
	const char *names[P9_MAX_WALK];
	char buf[256], *save;
	int n = 0;
	snprintf(buf, sizeof(buf), "%s", path);
	for (char *t = strtok_r(buf, "/", &save); t && n < P9_MAX_WALK; t = strtok_r(NULL, "/", &save))
		names[n++] = t;
	struct p9c_qid q[P9_MAX_WALK];
	int got, e = p9c_walk(&cl, 0, 1, n, names, q, &got);
	return e ? e : got < n ? ENOENT : 0;
}

/* The names a Treaddir of path lists, space-separated, in readdir order ("." and ".." left out). */
static void list(const char *path, char *out, size_t cap)
{
	out[0] = 0;
	if (walk(path) || p9c_lopen(&cl, 1, 0)) {
		snprintf(out, cap, "(cannot open)");
		return;
	}
	uint64_t off = 0;
	size_t used = 0;
	for (;;) {
		p9c_msg(&cl, P9_TREADDIR); p9c_32(&cl, 1); p9c_64(&cl, off); p9c_32(&cl, 4096);
		if (p9c_rpc(&cl)) {
			snprintf(out, cap, "(readdir failed)");
			return;
		}
		uint32_t count = p9c_r32(&cl);
		if (!count)
			break;
		size_t end = cl.rpos + count;
		while (cl.rpos < end) {
			struct p9c_qid q;
			char name[256];
			p9c_rqid(&cl, &q);
			off = p9c_r64(&cl);
			p9c_r8(&cl);
			p9c_rstr(&cl, name, sizeof(name));
			if (strcmp(name, ".") && strcmp(name, ".."))
				used += snprintf(out + used, cap - used, "%s%s", used ? " " : "", name);
		}
	}
}

/* Is word one of the space-separated words of s? */
static bool has(const char *s, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = s; (p = strstr(p, word)); p += n)
		if ((p == s || p[-1] == ' ') && (p[n] == 0 || p[n] == ' '))
			return true;
	return false;
}

TEST(the_view_shows_what_it_allows)
{
	if (!setup())
		SKIP("no scratch folder");
	CHECK_EQ(walk("usr/bin/tool"), 0);
	CHECK_EQ(p9c_lopen(&cl, 1, 0), 0);
	char buf[16] = { 0 };
	CHECK_EQ(p9c_read(&cl, 1, 0, sizeof(buf) - 1, buf), 5);
	CHECK(!strcmp(buf, "tool\n"));
	CHECK_EQ(walk("etc/passwd"), 0);
	CHECK_EQ(walk("etc/ssh/ssh_config"), 0);
	CHECK_EQ(walk("home/me/tree/file"), 0);
	CHECK_EQ(walk("home/me/tree/sub/x"), 0);	/* a folder the reader may search */
	teardown();
}

TEST(what_is_outside_answers_enoent)
{
	if (!setup())
		SKIP("no scratch folder");
	const char *gone[] = { "var", "var/lib/db", "root", "root/key", "home/other", "home/other/secret",
			       "home/me/notes", "etc/shadow", "etc/ssh/ssh_host_ed25519_key", "etc/sudoers.d",
			       "etc/sudoers.d/ci", "etc/private", "home/me/tree/unreadable", "home/me/tree/closed",
			       "home/me/tree/closed/y", "proc/1" };
	for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++) {
		int e = walk(gone[i]);
		if (e != ENOENT)
			fprintf(stderr, "  %s: %d\n", gone[i], e);
		CHECK_EQ(e, ENOENT);
	}
	teardown();
}

TEST(dotdot_does_not_leave_the_view)
{
	if (!setup())
		SKIP("no scratch folder");
	CHECK_EQ(walk("usr/../home/other/secret"), ENOENT);
	CHECK_EQ(walk("home/me/tree/../../other"), ENOENT);
	CHECK_EQ(walk("home/me/tree/../notes"), ENOENT);
	CHECK_EQ(walk("home/me/tree/../../../../../var/lib"), ENOENT);
	CHECK_EQ(walk("../../root"), ENOENT);	/* the root's parent is the root */
	CHECK_EQ(walk("home/me/tree/../../me/tree/file"), 0);
	CHECK_EQ(walk("usr/../etc/passwd"), 0);
	/* ".." from an empty folder stand-in comes back to the root, in the view */
	CHECK_EQ(walk("proc/../etc/passwd"), 0);
	CHECK_EQ(walk("proc/../var"), ENOENT);
	teardown();
}

TEST(symlinks_are_walked_by_the_guest_through_the_view)
{
	if (!setup())
		SKIP("no scratch folder");
	/* the link itself is in the view; nothing is followed on the host */
	CHECK_EQ(walk("usr/up"), 0);
	char target[64];
	CHECK_EQ(p9c_readlink(&cl, 1, target, sizeof(target)), 0);
	CHECK(!strcmp(target, "../home/other"));
	CHECK(walk("usr/up/secret") != 0);
	/* where the guest then goes: the view again */
	CHECK_EQ(walk("usr/../home/other/secret"), ENOENT);
	CHECK_EQ(walk("home/me/tree/abs"), 0);
	CHECK_EQ(p9c_readlink(&cl, 1, target, sizeof(target)), 0);
	CHECK(!strcmp(target, "/etc/shadow"));
	CHECK_EQ(p9c_lopen(&cl, 1, 0), ELOOP);
	CHECK_EQ(walk("etc/shadow"), ENOENT);
	teardown();
}

TEST(listings_leave_out_what_the_view_hides)
{
	if (!setup())
		SKIP("no scratch folder");
	char names[1024];
	list("", names, sizeof(names));
	CHECK(has(names, "usr") && has(names, "etc") && has(names, "home") && has(names, "proc"));
	CHECK(!has(names, "var") && !has(names, "root"));
	list("home", names, sizeof(names));
	CHECK(!strcmp(names, "me"));
	list("home/me", names, sizeof(names));
	CHECK(!strcmp(names, "tree"));
	list("etc", names, sizeof(names));
	CHECK(has(names, "passwd") && has(names, "ssh"));
	CHECK(!has(names, "shadow") && !has(names, "private") && !has(names, "sudoers.d"));
	list("etc/ssh", names, sizeof(names));
	CHECK(!strcmp(names, "ssh_config"));
	list("home/me/tree", names, sizeof(names));
	CHECK(has(names, "file") && has(names, "sub") && has(names, "abs"));
	CHECK(!has(names, "unreadable") && !has(names, "closed"));
	list("proc", names, sizeof(names));
	CHECK(!strcmp(names, ""));
	/* searchable but not readable by the reader: not listed, as on the host */
	CHECK_EQ(walk("home/me/tree/sub"), 0);
	CHECK_EQ(p9c_lopen(&cl, 1, 0), EACCES);
	teardown();
}

TEST(a_view_needs_a_read_only_share_and_a_valid_file)
{
	struct p9_view *v = p9_view_new();
	struct p9_server_opts o = { .ro = false, .view = v };
	CHECK(p9_server_new("/tmp", &o) == NULL);
	CHECK(strstr(err_msg(), "read-only") != NULL);
	p9_view_free(v);
	CHECK(p9_view_allow(v = p9_view_new(), "usr/../root") == -1);
	p9_view_free(v);
	char f[] = "/tmp/lkvm-view-XXXXXX";
	int fd = mkstemp(f);
	CHECK(fd >= 0);
	const char *good = "# comment\nallow /usr\ndeny etc/shadow\nempty proc\nreader 1000 1000 4 27\n";
	CHECK(write(fd, good, strlen(good)) == (ssize_t)strlen(good));
	v = p9_view_load(f);
	CHECK(v != NULL);
	p9_view_free(v);
	CHECK(ftruncate(fd, 0) == 0);
	CHECK(pwrite(fd, "allow usr\nshow etc\n", 19, 0) == 19);
	CHECK(p9_view_load(f) == NULL);
	CHECK(strstr(err_msg(), ":2: unknown 'show'") != NULL);
	CHECK(pwrite(fd, "reader x\n\n\n\n\n\n\n\n\n\n", 19, 0) == 19);
	CHECK(p9_view_load(f) == NULL);
	CHECK(strstr(err_msg(), ":1: reader UID GID") != NULL);
	close(fd);
	unlink(f);
	CHECK(p9_view_load("/nonexistent/view") == NULL);
}

TEST_MAIN()
