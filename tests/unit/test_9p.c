/*
 * The 9P2000.L server on a temporary directory: a full cycle of file
 * operations checked on the host after each step, confinement (".." at and
 * below the root, symlinks to outside, a directory renamed or moved away
 * while a fid holds it, names with '/'), malformed messages, read-only
 * shares, chmod on kernels without fchmodat2, and one device driven through
 * its virtqueue.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>
#include "snap_buf.h"
#include "test.h"
#include "p9.h"
#include "seccomp.h"
#include "snapshot.h"
#include "util.h"

#include "virtio_fixture.h"
#include "../ro_sandbox.h"
#include "p9_client.h"

/* ---- a sandbox for the whole test (tests/ro_sandbox.h says why) ---- */

__attribute__((constructor)) static void confine(void)
{
	if (ro_sandbox(NULL, 0, "/etc/.lkvm-test-9p-probe") == 0)
		return;
	if (geteuid() == 0) {
		fprintf(stderr, "test_9p: refusing to run as root without a read-only sandbox (unshare/mount failed)\n");
		exit(1);
	}
	fprintf(stderr, "test_9p: note: no sandbox (no user namespaces); as a normal user the host is safe enough\n");
}

/* ---- the shared 9P client (tests/lib/p9_client.h), under this test's own names ---- */

static uint8_t req[P9_MAX_MSIZE + 64], resp[P9_MAX_MSIZE];
static struct p9c cl = { .req = req, .resp = resp, .resp_cap = sizeof(resp) };
#define srv cl.srv
#define reqlen cl.len
#define resplen cl.resplen
#define respcap cl.resp_cap
#define rpos cl.rpos

struct qid { uint8_t type; uint32_t version; uint64_t path; };

static void to_qid(struct qid *q, const struct p9c_qid *p) { q->type = p->type; q->version = p->version; q->path = p->path; }

static void msg(uint8_t type) { p9c_msg(&cl, type); }
static void m8(uint8_t v) { p9c_8(&cl, v); }
static void m16(uint16_t v) { p9c_16(&cl, v); }
static void m32(uint32_t v) { p9c_32(&cl, v); }
static void m64(uint64_t v) { p9c_64(&cl, v); }
static void mstr(const char *s) { p9c_str(&cl, s); }
static void mstrn(const char *s, size_t n) { p9c_strn(&cl, s, n); }
static void mbytes(const void *p, size_t n) { p9c_bytes(&cl, p, n); }
static uint8_t in8(void) { return p9c_r8(&cl); }
static uint16_t in16(void) { return p9c_r16(&cl); }
static uint32_t in32(void) { return p9c_r32(&cl); }
static uint64_t in64(void) { return p9c_r64(&cl); }
static void inqid(struct qid *q) { struct p9c_qid p; p9c_rqid(&cl, &p); to_qid(q, &p); }
static void instr(char *out, size_t cap) { p9c_rstr(&cl, out, cap); }
static int rpc(void) { return p9c_rpc(&cl); }

static int version(uint32_t msize, const char *v, uint32_t *got_msize, char *got_v)
{
	return p9c_version(&cl, msize, v, got_msize, got_v, 32);
}

static int attach(uint32_t fid, struct qid *q)
{
	struct p9c_qid p;
	int e = p9c_attach(&cl, fid, 0, &p);
	if (!e && q)
		to_qid(q, &p);
	return e;
}

static struct qid wqids[P9_MAX_WALK];
static int nwqid;
static int walkv(uint32_t fid, uint32_t newfid, int n, const char *const *names)
{
	struct p9c_qid p[P9_MAX_WALK];
	int e = p9c_walk(&cl, fid, newfid, n, names, p, &nwqid);
	for (int i = 0; i < nwqid && i < P9_MAX_WALK; i++)
		to_qid(&wqids[i], &p[i]);
	return e;
}
#define WALK(fid, newfid, ...) \
	walkv(fid, newfid, sizeof((const char *[]){ __VA_ARGS__ }) / sizeof(char *), (const char *[]){ __VA_ARGS__ })
static int clonefid(uint32_t fid, uint32_t newfid) { return walkv(fid, newfid, 0, NULL); }

static int lopen(uint32_t fid, uint32_t flags) { return p9c_lopen(&cl, fid, flags); }

static int lcreate(uint32_t fid, const char *name, uint32_t flags, uint32_t mode, struct qid *q)
{
	struct p9c_qid p;
	int e = p9c_lcreate(&cl, fid, name, flags, mode, 0, &p);
	if (!e && q)
		to_qid(q, &p);
	return e;
}

static long p9read(uint32_t fid, uint64_t off, uint32_t count, void *buf) { return p9c_read(&cl, fid, off, count, buf); }
static long p9write(uint32_t fid, uint64_t off, const void *data, uint32_t count)
{
	return p9c_write(&cl, fid, off, data, count);
}

struct attr { struct qid qid; uint32_t mode, uid, gid; uint64_t nlink, size, atime, mtime; };
static int getattr(uint32_t fid, struct attr *a)
{
	struct p9c_attr p;
	int e = p9c_getattr(&cl, fid, &p);
	if (!e) {
		to_qid(&a->qid, &p.qid);
		a->mode = p.mode; a->uid = p.uid; a->gid = p.gid;
		a->nlink = p.nlink; a->size = p.size; a->atime = p.atime; a->mtime = p.mtime;
	}
	return e;
}

static int setattr(uint32_t fid, uint32_t valid, uint32_t mode, uint32_t uid, uint32_t gid, uint64_t size,
		   uint64_t atime, uint64_t mtime)
{
	return p9c_setattr(&cl, fid, valid, mode, uid, gid, size, atime, mtime);
}

static int mkdir9(uint32_t dfid, const char *name, uint32_t mode, struct qid *q)
{
	struct p9c_qid p;
	int e = p9c_mkdir(&cl, dfid, name, mode, 0, &p);
	if (!e && q)
		to_qid(q, &p);
	return e;
}

static int symlink9(uint32_t dfid, const char *name, const char *target, struct qid *q)
{
	struct p9c_qid p;
	int e = p9c_symlink(&cl, dfid, name, target, 0, &p);
	if (!e && q)
		to_qid(q, &p);
	return e;
}

static int readlink9(uint32_t fid, char *out, size_t cap) { return p9c_readlink(&cl, fid, out, cap); }
static int link9(uint32_t dfid, uint32_t fid, const char *name) { return p9c_link(&cl, dfid, fid, name); }
static int renameat9(uint32_t od, const char *on, uint32_t nd, const char *nn) { return p9c_renameat(&cl, od, on, nd, nn); }
static int rename9(uint32_t fid, uint32_t dfid, const char *name) { return p9c_rename(&cl, fid, dfid, name); }
static int unlinkat9(uint32_t dfid, const char *name, uint32_t flags) { return p9c_unlinkat(&cl, dfid, name, flags); }
static int mknod9(uint32_t dfid, const char *name, uint32_t mode) { return p9c_mknod(&cl, dfid, name, mode, 1, 3, 0); }
static int fid1(uint8_t type, uint32_t fid) { return p9c_fid1(&cl, type, fid); }
static int clunk(uint32_t fid) { return p9c_clunk(&cl, fid); }

/* Names returned by Treaddir calls of count bytes until the end, joined by ' ' (sorted by the caller). */
static int readdir_all(uint32_t fid, uint32_t count, char *names, size_t cap, int *calls)
{
	uint64_t off = 0;
	names[0] = 0;
	*calls = 0;
	for (;;) {
		msg(P9_TREADDIR); m32(fid); m64(off); m32(count);
		int e = rpc();
		if (e)
			return e;
		++*calls;
		uint32_t n = in32();
		if (n == 0)
			return 0;
		size_t end = rpos + n;
		while (rpos < end) {
			struct qid q;
			char name[256];
			inqid(&q);
			off = in64();
			in8();
			instr(name, sizeof(name));
			if (strcmp(name, ".") && strcmp(name, "..")) {
				strncat(names, name, cap - strlen(names) - 2);
				strcat(names, " ");
			}
		}
	}
}

/* ---- the host side ---- */

static char base[64], share[96], outside[96];

static const char *hp(const char *rel)
{
	static char bufs[4][512];
	static int k;
	char *b = bufs[k++ % 4];
	snprintf(b, 512, "%s/%s", share, rel);
	return b;
}

static void put_file(const char *path, const char *text)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	if (fd >= 0) {
		if (write(fd, text, strlen(text)) < 0) {}
		close(fd);
	}
}

static bool file_is(const char *path, const char *text)
{
	char buf[256] = { 0 };
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n == (ssize_t)strlen(text) && !memcmp(buf, text, n);
}

static mode_t host_mode(const char *path)
{
	struct stat st;
	return lstat(path, &st) ? (mode_t)-1 : st.st_mode;
}

/*
 * base/share is served; base/outside/secret is what an escape would reach.
 * share holds sub/, file "data", and links etc -> /etc, up -> ../../..,
 * abs -> base/outside, sec -> base/outside/secret, esc -> ../outside.
 * Only read-only requests go through etc and up: anything that could modify
 * aims at base/outside, so a server that regressed (the test runs as root)
 * damages the temporary tree, never the host, and check_outside() sees it.
 */
static void make_tree(bool ro)
{
	umask(022);
	strcpy(base, "/tmp/lkvm-test-9p-XXXXXX");
	if (!mkdtemp(base))
		abort();
	snprintf(share, sizeof(share), "%s/share", base);
	snprintf(outside, sizeof(outside), "%s/outside", base);
	mkdir(share, 0755);
	mkdir(outside, 0755);
	char secret[128];
	snprintf(secret, sizeof(secret), "%s/secret", outside);
	put_file(secret, "secret");
	mkdir(hp("sub"), 0755);
	put_file(hp("data"), "0123456789");
	CHECK_EQ(symlink("/etc", hp("etc")), 0);
	CHECK_EQ(symlink("../../..", hp("up")), 0);
	CHECK_EQ(symlink(secret, hp("sec")), 0);
	CHECK_EQ(symlink(outside, hp("abs")), 0);
	CHECK_EQ(symlink("../outside", hp("esc")), 0);
	srv = p9_server_new(share, &(struct p9_server_opts){ .ro = ro });
	CHECK(srv != NULL);
	uint32_t msize;
	char v[32];
	CHECK_EQ(version(65536, "9P2000.L", &msize, v), 0);
	CHECK_EQ(attach(0, NULL), 0);
}

/* Nothing outside the share changed: the secret file and its directory as made. */
static void check_outside(void)
{
	char secret[128];
	snprintf(secret, sizeof(secret), "%s/secret", outside);
	CHECK(file_is(secret, "secret"));
	CHECK_EQ(host_mode(secret), S_IFREG | 0644);
	CHECK_EQ(host_mode(outside), S_IFDIR | 0755);
	char path[160];
	snprintf(path, sizeof(path), "%s/esc", base);
	CHECK_EQ(access(path, F_OK), -1);
	CHECK_EQ(getxattr(secret, "user.t", NULL, 0), -1);
}

static void drop_tree(void)
{
	p9_server_free(srv);
	srv = NULL;
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "chmod -R u+rwx %s 2>/dev/null; rm -rf %s", base, base);
	CHECK_EQ(system(cmd), 0);
}

/* ---- tests ---- */

TEST(version_negotiation)
{
	make_tree(false);
	uint32_t msize;
	char v[32];
	CHECK_EQ(version(1 << 30, "9P2000.L", &msize, v), 0);
	CHECK_EQ(msize, P9_MAX_MSIZE);
	CHECK(!strcmp(v, "9P2000.L"));
	CHECK_EQ(get_le16(resp + 5), P9_NOTAG);
	CHECK_EQ(version(8192, "9P2000.u", &msize, v), 0);
	CHECK(!strcmp(v, "unknown"));
	CHECK_EQ(attach(1, NULL), EPROTO);	/* no session after "unknown" */
	CHECK_EQ(version(100, "9P2000.L", &msize, v), EINVAL);
	CHECK_EQ(version(8192, "9P2000.L", &msize, v), 0);
	CHECK_EQ(msize, 8192);
	/* Tversion ends the session: fid 0 from make_tree is gone. */
	CHECK_EQ(fid1(P9_TCLUNK, 0), EBADF);
	CHECK_EQ(attach(0, NULL), 0);
	drop_tree();
}

TEST(full_cycle)
{
	make_tree(false);
	struct qid root = { 0 }, q = { 0 };
	struct attr a = { 0 };
	CHECK_EQ(attach(1, &root), 0);
	CHECK_EQ(root.type, P9_QTDIR);
	CHECK_EQ(WALK(1, 2, "missing"), ENOENT);

	/* lcreate: the fid becomes the new open file, with the exact mode asked for. */
	CHECK_EQ(clonefid(1, 2), 0);
	CHECK_EQ(nwqid, 0);
	CHECK_EQ(lcreate(2, "f", P9_DOTL_RDWR | P9_DOTL_CREATE, 0664, &q), 0);
	CHECK_EQ(q.type, P9_QTFILE);
	CHECK_EQ(host_mode(hp("f")), S_IFREG | 0664);	/* umask 022 undone */
	CHECK_EQ(p9write(2, 0, "hello world", 11), 11);
	CHECK(file_is(hp("f"), "hello world"));
	CHECK_EQ(p9write(2, 6, "WORLD", 5), 5);
	CHECK(file_is(hp("f"), "hello WORLD"));
	char buf[64] = { 0 };
	CHECK_EQ(p9read(2, 0, sizeof(buf), buf), 11);
	CHECK(!memcmp(buf, "hello WORLD", 11));
	CHECK_EQ(p9read(2, 6, 3, buf), 3);
	CHECK(!memcmp(buf, "WOR", 3));
	CHECK_EQ(p9read(2, 100, 10, buf), 0);
	msg(P9_TFSYNC); m32(2); m32(0);
	CHECK_EQ(rpc(), 0);
	msg(P9_TFSYNC); m32(2); m32(1);
	CHECK_EQ(rpc(), 0);
	CHECK_EQ(clonefid(1, 3), 0);
	CHECK_EQ(lcreate(3, "f", P9_DOTL_CREATE | P9_DOTL_EXCL, 0644, NULL), EEXIST);
	CHECK_EQ(clunk(2), 0);
	CHECK_EQ(clunk(2), EBADF);

	/* walk + getattr + lopen read-only on another fid */
	CHECK_EQ(WALK(1, 4, "f"), 0);
	CHECK_EQ(nwqid, 1);
	CHECK_EQ(wqids[0].path, q.path);
	CHECK_EQ(getattr(4, &a), 0);
	CHECK_EQ(a.size, 11);
	CHECK_EQ(a.mode, S_IFREG | 0664);
	CHECK_EQ(a.nlink, 1);
	CHECK_EQ(a.qid.path, q.path);
	CHECK_EQ(lopen(4, 0), 0);
	CHECK_EQ(p9write(4, 0, "x", 1), -EBADF);	/* opened read-only */
	CHECK_EQ(p9read(4, 0, 5, buf), 5);
	CHECK(!memcmp(buf, "hello", 5));
	CHECK_EQ(lopen(4, 0), EBADF);	/* already open */

	/* renameat: the open fid keeps its file, and is found under the new name. */
	CHECK_EQ(renameat9(1, "f", 1, "g"), 0);
	CHECK_EQ(access(hp("f"), F_OK), -1);
	CHECK(file_is(hp("g"), "hello world") == false && file_is(hp("g"), "hello WORLD"));
	CHECK_EQ(p9read(4, 6, 5, buf), 5);
	CHECK(!memcmp(buf, "WORLD", 5));

	/* readdir lists it */
	CHECK_EQ(clonefid(1, 5), 0);
	CHECK_EQ(lopen(5, 0), 0);
	char names[4096];
	int calls;
	CHECK_EQ(readdir_all(5, 8192, names, sizeof(names), &calls), 0);
	CHECK(strstr(names, "g ") != NULL);
	CHECK(strstr(names, "f ") == NULL);
	CHECK(strstr(names, "sub ") != NULL);
	CHECK_EQ(p9read(5, 0, 10, buf), -EISDIR);	/* directories are read with Treaddir */

	/* mkdir with its mode; symlink and readlink; link */
	CHECK_EQ(mkdir9(1, "d", 0775, &q), 0);
	CHECK_EQ(q.type, P9_QTDIR);
	CHECK_EQ(host_mode(hp("d")), S_IFDIR | 0775);
	CHECK_EQ(mkdir9(1, "d", 0775, NULL), EEXIST);
	CHECK_EQ(symlink9(1, "s", "g", &q), 0);
	CHECK_EQ(q.type, P9_QTSYMLINK);
	char target[256];
	CHECK_EQ(readlink(hp("s"), target, sizeof(target)), 1);
	CHECK_EQ(WALK(1, 6, "s"), 0);
	CHECK_EQ(readlink9(6, target, sizeof(target)), 0);
	CHECK(!strcmp(target, "g"));
	CHECK_EQ(readlink9(4, target, sizeof(target)), EINVAL);	/* not a symlink */
	CHECK_EQ(WALK(1, 7, "g"), 0);
	CHECK_EQ(link9(1, 7, "h"), 0);
	struct stat st;
	CHECK_EQ(stat(hp("h"), &st), 0);
	CHECK_EQ(st.st_nlink, 2);
	CHECK_EQ(getattr(7, &a), 0);
	CHECK_EQ(a.nlink, 2);
	CHECK_EQ(WALK(1, 8, "d"), 0);
	CHECK_EQ(link9(1, 8, "dlink"), EPERM);	/* no hard links to directories */

	/* setattr: truncate through a fid that is not open, mode, times, owner */
	CHECK_EQ(setattr(7, P9_SETATTR_SIZE, 0, 0, 0, 3, 0, 0), 0);
	CHECK(file_is(hp("g"), "hel"));
	CHECK_EQ(setattr(7, P9_SETATTR_MODE, 0600, 0, 0, 0, 0, 0), 0);
	CHECK_EQ(host_mode(hp("g")), S_IFREG | 0600);
	CHECK_EQ(setattr(7, P9_SETATTR_ATIME | P9_SETATTR_ATIME_SET | P9_SETATTR_MTIME | P9_SETATTR_MTIME_SET,
			 0, 0, 0, 0, 1000000, 2000000), 0);
	CHECK_EQ(stat(hp("g"), &st), 0);
	CHECK_EQ(st.st_atime, 1000000);
	CHECK_EQ(st.st_mtime, 2000000);
	CHECK_EQ(getattr(7, &a), 0);
	CHECK_EQ(a.mtime, 2000000);
	CHECK_EQ(setattr(7, P9_SETATTR_MTIME, 0, 0, 0, 0, 0, 0), 0);	/* "now" */
	CHECK_EQ(stat(hp("g"), &st), 0);
	CHECK(st.st_mtime > 2000000);
	CHECK_EQ(st.st_atime, 1000000);
	if (geteuid() == 0) {
		CHECK_EQ(setattr(7, P9_SETATTR_UID | P9_SETATTR_GID, 0, 1234, 5678, 0, 0, 0), 0);
		CHECK_EQ(stat(hp("g"), &st), 0);
		CHECK_EQ(st.st_uid, 1234);
		CHECK_EQ(st.st_gid, 5678);
		CHECK_EQ(setattr(7, P9_SETATTR_GID, 0, 0, 42, 0, 0, 0), 0);
		CHECK_EQ(stat(hp("g"), &st), 0);
		CHECK_EQ(st.st_uid, 1234);
		CHECK_EQ(st.st_gid, 42);
	}
	CHECK_EQ(setattr(8, P9_SETATTR_SIZE, 0, 0, 0, 0, 0, 0), EISDIR);

	/* statfs matches the host's */
	msg(P9_TSTATFS); m32(1);
	CHECK_EQ(rpc(), 0);
	struct statfs sf;
	CHECK_EQ(statfs(share, &sf), 0);
	CHECK_EQ(in32(), (uint32_t)sf.f_type);
	CHECK_EQ(in32(), (uint32_t)sf.f_bsize);
	CHECK_EQ(in64(), sf.f_blocks);

	/* flush answers at once; lock and getlock say yes and unlocked */
	msg(P9_TFLUSH); m16(7);
	CHECK_EQ(rpc(), 0);
	CHECK_EQ(resplen, P9_HDR_SIZE);
	msg(P9_TLOCK); m32(4); m8(1); m32(0); m64(0); m64(0); m32(99); mstr("guest");
	CHECK_EQ(rpc(), 0);
	CHECK_EQ(in8(), P9_LOCK_SUCCESS);
	msg(P9_TGETLOCK); m32(4); m8(1); m64(10); m64(20); m32(99); mstr("guest");
	CHECK_EQ(rpc(), 0);
	CHECK_EQ(in8(), P9_LOCK_TYPE_UNLCK);
	CHECK_EQ(in64(), 10);
	CHECK_EQ(in64(), 20);
	CHECK_EQ(in32(), 99);
	instr(target, sizeof(target));
	CHECK(!strcmp(target, "guest"));

	/* Trename moves the fid's own file; the fid follows. */
	CHECK_EQ(rename9(7, 8, "moved"), 0);
	CHECK_EQ(access(hp("g"), F_OK), -1);
	CHECK(file_is(hp("d/moved"), "hel"));
	CHECK_EQ(lopen(7, P9_DOTL_RDWR), 0);
	CHECK_EQ(p9write(7, 3, "p!", 2), 2);
	CHECK(file_is(hp("d/moved"), "help!"));

	/* mknod: regular files and fifos only */
	CHECK_EQ(mknod9(1, "fifo", S_IFIFO | 0640), 0);
	CHECK_EQ(host_mode(hp("fifo")), S_IFIFO | 0640);
	CHECK_EQ(mknod9(1, "reg", S_IFREG | 0600), 0);
	CHECK_EQ(host_mode(hp("reg")), S_IFREG | 0600);
	CHECK_EQ(mknod9(1, "dev", S_IFCHR | 0600), EPERM);
	CHECK_EQ(mknod9(1, "blk", S_IFBLK | 0600), EPERM);
	CHECK_EQ(mknod9(1, "sock", S_IFSOCK | 0600), EPERM);
	CHECK_EQ(access(hp("dev"), F_OK), -1);
	CHECK_EQ(WALK(1, 9, "fifo"), 0);
	CHECK_EQ(lopen(9, 0), EOPNOTSUPP);	/* special files are not opened on the host */
	CHECK_EQ(clunk(9), 0);

	/* unlinkat, and Tremove (which clunks) */
	CHECK_EQ(unlinkat9(1, "h", 0), 0);
	CHECK_EQ(access(hp("h"), F_OK), -1);
	CHECK_EQ(unlinkat9(1, "d", 0), EISDIR);
	CHECK_EQ(unlinkat9(1, "d", P9_DOTL_AT_REMOVEDIR), ENOTEMPTY);
	CHECK_EQ(unlinkat9(1, "nothere", 0), ENOENT);
	CHECK_EQ(fid1(P9_TREMOVE, 7), 0);
	CHECK_EQ(access(hp("d/moved"), F_OK), -1);
	CHECK_EQ(clunk(7), EBADF);
	CHECK_EQ(fid1(P9_TREMOVE, 8), 0);
	CHECK_EQ(access(hp("d"), F_OK), -1);
	CHECK_EQ(fid1(P9_TREMOVE, 1), EBUSY);	/* not the root; and fid 1 is gone */
	CHECK_EQ(clunk(1), EBADF);

	/* unknown and legacy messages */
	msg(200); m32(0);
	CHECK_EQ(rpc(), EOPNOTSUPP);
	msg(P9_TAUTH); m32(5); mstr("u"); mstr(""); m32(0);
	CHECK_EQ(rpc(), EOPNOTSUPP);
	msg(112); m32(0); m8(0);	/* 9P2000 Topen */
	CHECK_EQ(rpc(), EOPNOTSUPP);
	check_outside();
	drop_tree();
}

TEST(readdir_cookies)
{
	make_tree(false);
	/* 60 files read back with small counts: each name exactly once. */
	for (int i = 0; i < 60; i++) {
		char name[32];
		snprintf(name, sizeof(name), "file-%02d", i);
		put_file(hp(name), "x");
	}
	CHECK_EQ(clonefid(0, 1), 0);
	CHECK_EQ(lopen(1, P9_DOTL_DIRECTORY), 0);
	char names[8192];
	int calls;
	CHECK_EQ(readdir_all(1, 100, names, sizeof(names), &calls), 0);
	CHECK(calls > 20);
	for (int i = 0; i < 60; i++) {
		char name[32];
		snprintf(name, sizeof(name), "file-%02d ", i);
		char *at = strstr(names, name);
		CHECK(at != NULL && strstr(at + 1, name) == NULL);
	}
	/* The same listing in one go. */
	char all[8192];
	CHECK_EQ(readdir_all(1, 65000, all, sizeof(all), &calls), 0);
	CHECK_EQ(calls, 2);
	CHECK_EQ(strlen(all), strlen(names));
	/* A count too small for one entry is an error, not the end. */
	msg(P9_TREADDIR); m32(1); m64(0); m32(10);
	CHECK_EQ(rpc(), EINVAL);
	CHECK_EQ(clonefid(0, 2), 0);
	msg(P9_TREADDIR); m32(2); m64(0); m32(1000);
	CHECK_EQ(rpc(), EBADF);	/* not opened */
	CHECK_EQ(WALK(0, 3, "data"), 0);
	CHECK_EQ(lopen(3, 0), 0);
	msg(P9_TREADDIR); m32(3); m64(0); m32(1000);
	CHECK_EQ(rpc(), ENOTDIR);
	drop_tree();
}

TEST(dotdot_stays_inside)
{
	make_tree(false);
	struct qid root = { 0 }, sub = { 0 };
	CHECK_EQ(attach(1, &root), 0);
	/* From the root, ".." is the root. */
	CHECK_EQ(WALK(1, 2, ".."), 0);
	CHECK_EQ(nwqid, 1);
	CHECK_EQ(wqids[0].path, root.path);
	CHECK_EQ(getattr(2, &(struct attr){ 0 }), 0);
	CHECK_EQ(WALK(1, 3, "..", "..", "..", "outside"), 0);	/* partial: "outside" is not in the root */
	CHECK_EQ(nwqid, 3);
	for (int i = 0; i < 3; i++)
		CHECK_EQ(wqids[i].path, root.path);
	CHECK_EQ(clunk(3), EBADF);	/* a partial walk makes no fid */
	CHECK_EQ(WALK(1, 3, "..", "share", "data"), 0);
	CHECK_EQ(nwqid, 1);
	/* From a subdirectory: up to the root, then no further. */
	CHECK_EQ(WALK(1, 4, "sub"), 0);
	sub = wqids[0];
	CHECK_EQ(WALK(4, 5, "..", "..", "..", "sub", ".."), 0);
	CHECK_EQ(nwqid, 5);
	CHECK_EQ(wqids[0].path, root.path);
	CHECK_EQ(wqids[1].path, root.path);
	CHECK_EQ(wqids[2].path, root.path);
	CHECK_EQ(wqids[3].path, sub.path);
	CHECK_EQ(wqids[4].path, root.path);
	/* The fid from ".." works like any other: create through it. */
	CHECK_EQ(lcreate(5, "made-via-dotdot", P9_DOTL_WRONLY, 0644, NULL), 0);
	CHECK_EQ(access(hp("made-via-dotdot"), F_OK), 0);
	/* ".." from a file is not a thing */
	CHECK_EQ(WALK(1, 6, "data", ".."), 0);
	CHECK_EQ(nwqid, 1);
	CHECK_EQ(WALK(4, 4, ".."), 0);	/* newfid == fid: the fid moves */
	CHECK_EQ(getattr(4, &(struct attr){ 0 }), 0);
	struct attr a = { 0 };
	CHECK_EQ(getattr(4, &a), 0);
	CHECK_EQ(a.qid.path, root.path);
	check_outside();
	drop_tree();
}

TEST(symlinks_not_followed)
{
	make_tree(false);
	char target[256] = "";
	struct attr a = { 0 };
	/* Absolute symlink to /etc: the walk gives the link, readlink its text. */
	CHECK_EQ(WALK(0, 1, "etc"), 0);
	CHECK_EQ(wqids[0].type, P9_QTSYMLINK);
	CHECK_EQ(readlink9(1, target, sizeof(target)), 0);
	CHECK(!strcmp(target, "/etc"));
	CHECK_EQ(getattr(1, &a), 0);
	CHECK(S_ISLNK(a.mode));
	CHECK_EQ(WALK(0, 2, "etc", "passwd"), 0);	/* partial: a link is not a directory */
	CHECK_EQ(nwqid, 1);
	CHECK_EQ(clunk(2), EBADF);
	CHECK_EQ(WALK(1, 2, "passwd"), ENOTDIR);
	CHECK_EQ(WALK(1, 2, ".."), ENOTDIR);
	CHECK_EQ(lopen(1, 0), ELOOP);

	/* Creating through an absolute link (to our own outside/): refused. */
	CHECK_EQ(WALK(0, 8, "abs"), 0);
	CHECK_EQ(wqids[0].type, P9_QTSYMLINK);
	CHECK_EQ(clonefid(8, 2), 0);
	CHECK_EQ(lcreate(2, "x", P9_DOTL_WRONLY, 0644, NULL), ENOTDIR);
	CHECK_EQ(mkdir9(8, "x", 0755, NULL), ENOTDIR);
	CHECK_EQ(symlink9(8, "x", "t", NULL), ENOTDIR);
	CHECK_EQ(unlinkat9(8, "secret", 0), ENOTDIR);
	CHECK_EQ(renameat9(8, "secret", 0, "stolen"), ENOTDIR);
	char x[160];
	snprintf(x, sizeof(x), "%s/x", outside);
	CHECK_EQ(access(x, F_OK), -1);

	/* Relative symlink climbing out: same. */
	CHECK_EQ(WALK(0, 3, "up"), 0);
	CHECK_EQ(wqids[0].type, P9_QTSYMLINK);
	CHECK_EQ(readlink9(3, target, sizeof(target)), 0);
	CHECK(!strcmp(target, "../../.."));
	CHECK_EQ(WALK(0, 4, "up", "etc"), 0);
	CHECK_EQ(nwqid, 1);
	CHECK_EQ(WALK(0, 4, "esc", "secret"), 0);
	CHECK_EQ(nwqid, 1);

	/* A link to a file outside: nothing done through it reaches the file. */
	CHECK_EQ(WALK(0, 5, "sec"), 0);
	CHECK_EQ(lopen(5, 0), ELOOP);
	CHECK_EQ(lopen(5, P9_DOTL_RDWR | P9_DOTL_TRUNC), ELOOP);
	CHECK_EQ(setattr(5, P9_SETATTR_SIZE, 0, 0, 0, 0, 0, 0), ELOOP);
	CHECK_EQ(setattr(5, P9_SETATTR_MODE, 0777, 0, 0, 0, 0, 0), EOPNOTSUPP);
	CHECK_EQ(setattr(5, P9_SETATTR_MTIME | P9_SETATTR_MTIME_SET, 0, 0, 0, 0, 0, 12345), 0);
	struct stat st;
	CHECK_EQ(lstat(hp("sec"), &st), 0);
	CHECK_EQ(st.st_mtime, 12345);	/* the link's own time changed */
	if (geteuid() == 0)
		CHECK_EQ(setattr(5, P9_SETATTR_UID, 0, 4321, 0, 0, 0, 0), 0);
	CHECK_EQ(lstat(hp("sec"), &st), 0);
	CHECK_EQ(st.st_uid, geteuid() == 0 ? 4321 : geteuid());
	msg(P9_TXATTRCREATE); m32(5); mstr("user.t"); m64(1); m32(0);
	CHECK_EQ(rpc(), 0);
	CHECK_EQ(p9write(5, 0, "v", 1), 1);
	CHECK_EQ(clunk(5), EOPNOTSUPP);
	msg(P9_TXATTRWALK); m32(0); m32(6); mstr("");
	CHECK_EQ(rpc(), 0);
	CHECK_EQ(clunk(6), 0);
	CHECK_EQ(WALK(0, 5, "sec"), 0);
	msg(P9_TXATTRWALK); m32(5); m32(6); mstr("user.t");
	CHECK_EQ(rpc(), ENODATA);
	CHECK_EQ(link9(0, 5, "hardlink-to-link"), 0);	/* links the symlink itself */
	CHECK_EQ(lstat(hp("hardlink-to-link"), &st), 0);
	CHECK(S_ISLNK(st.st_mode));
	CHECK_EQ(rename9(5, 0, "sec2"), 0);
	CHECK_EQ(lstat(hp("sec2"), &st), 0);
	CHECK(S_ISLNK(st.st_mode));
	CHECK_EQ(fid1(P9_TREMOVE, 5), 0);	/* removes the link, not its target */
	CHECK_EQ(lstat(hp("sec2"), &st), -1);

	/* A symlink made by the guest is stored as given and not followed either. */
	CHECK_EQ(symlink9(0, "mine", "/", NULL), 0);
	CHECK_EQ(WALK(0, 7, "mine", "etc"), 0);
	CHECK_EQ(nwqid, 1);
	check_outside();
	drop_tree();
}

TEST(renamed_dir_keeps_its_fid)
{
	make_tree(false);
	struct qid root = { 0 };
	CHECK_EQ(attach(1, &root), 0);
	CHECK_EQ(mkdir(hp("a"), 0755), 0);
	CHECK_EQ(mkdir(hp("a/b"), 0755), 0);
	CHECK_EQ(mkdir(hp("a/b/c"), 0755), 0);
	CHECK_EQ(WALK(1, 2, "a", "b", "c"), 0);
	CHECK_EQ(nwqid, 3);
	struct qid b = wqids[1], c = wqids[2];

	/* Renamed on the host: the fid follows the directory, ".." is its new parent. */
	CHECK_EQ(rename(hp("a/b/c"), hp("x")), 0);
	CHECK_EQ(WALK(2, 3, ".."), 0);
	CHECK_EQ(wqids[0].path, root.path);
	CHECK_EQ(clunk(3), 0);
	CHECK_EQ(WALK(2, 3, "..", ".."), 0);
	CHECK_EQ(nwqid, 2);
	CHECK_EQ(wqids[1].path, root.path);
	CHECK_EQ(clonefid(2, 4), 0);
	CHECK_EQ(lcreate(4, "in-c", P9_DOTL_WRONLY, 0644, NULL), 0);
	CHECK_EQ(access(hp("x/in-c"), F_OK), 0);
	CHECK_EQ(lopen(2, 0), 0);	/* directories reopen themselves, wherever they are */
	CHECK_EQ(clunk(2), 0);

	/* Renamed by another fid: same. */
	CHECK_EQ(WALK(1, 2, "x"), 0);
	CHECK_EQ(wqids[0].path, c.path);
	CHECK_EQ(mkdir9(1, "y", 0755, NULL), 0);
	CHECK_EQ(WALK(1, 5, "y"), 0);
	struct qid y = wqids[0];
	CHECK_EQ(renameat9(2, "..", 5, "z"), EINVAL);
	CHECK_EQ(renameat9(1, "x", 5, "z"), 0);
	CHECK_EQ(access(hp("y/z/in-c"), F_OK), 0);
	CHECK_EQ(WALK(2, 7, ".."), 0);	/* c's parent is now y */
	CHECK_EQ(wqids[0].path, y.path);
	CHECK_EQ(clunk(7), 0);
	CHECK_EQ(WALK(2, 7, "..", "..", "..", ".."), 0);
	CHECK_EQ(nwqid, 4);
	CHECK_EQ(wqids[0].path, y.path);
	CHECK_EQ(wqids[1].path, root.path);
	CHECK_EQ(wqids[2].path, root.path);
	CHECK_EQ(wqids[3].path, root.path);
	CHECK(wqids[0].path != b.path);
	/* Tremove of an entry renamed by another fid finds it under its new name. */
	CHECK_EQ(mkdir9(2, "gone", 0755, NULL), 0);
	CHECK_EQ(WALK(2, 8, "gone"), 0);
	CHECK_EQ(renameat9(2, "gone", 5, "gone2"), 0);
	CHECK_EQ(fid1(P9_TREMOVE, 8), 0);
	CHECK_EQ(access(hp("y/gone2"), F_OK), -1);
	CHECK_EQ(access(hp("y/z"), F_OK), 0);

	/* Moved out of the share on the host: the fid holds it, but ".." is refused. */
	CHECK_EQ(WALK(1, 9, "y", "z"), 0);
	char away[160];
	snprintf(away, sizeof(away), "%s/away", outside);
	CHECK_EQ(rename(hp("y/z"), away), 0);
	CHECK_EQ(WALK(9, 10, ".."), EACCES);
	CHECK_EQ(WALK(9, 10, "..", ".."), EACCES);
	CHECK_EQ(getattr(9, &(struct attr){ 0 }), 0);	/* still its directory */
	CHECK_EQ(fid1(P9_TREMOVE, 9), EACCES);
	CHECK_EQ(access(away, F_OK), 0);
	CHECK_EQ(rename(away, hp("back")), 0);
	check_outside();
	drop_tree();
}

TEST(file_fid_follows_renames)
{
	make_tree(false);
	CHECK_EQ(WALK(0, 1, "data"), 0);
	/* Renamed on the host within its directory: found again by its inode. */
	CHECK_EQ(rename(hp("data"), hp("data2")), 0);
	CHECK_EQ(lopen(1, 0), 0);
	char buf[16];
	CHECK_EQ(p9read(1, 0, 4, buf), 4);
	CHECK(!memcmp(buf, "0123", 4));
	CHECK_EQ(clunk(1), 0);
	/* Replaced by another file of the same name: the old fid is stale, not confused. */
	CHECK_EQ(WALK(0, 2, "data2"), 0);
	CHECK_EQ(rename(hp("data2"), hp("sub/data3")), 0);
	put_file(hp("data2"), "impostor");
	CHECK_EQ(lopen(2, 0), ESTALE);
	CHECK_EQ(setattr(2, P9_SETATTR_SIZE, 0, 0, 0, 1, 0, 0), ESTALE);
	CHECK(file_is(hp("data2"), "impostor"));
	CHECK(file_is(hp("sub/data3"), "0123456789"));
	/* chmod goes by descriptor where fchmodat2 exists (Linux 6.6), else by name: stale */
	bool fchmodat2 = syscall(452, AT_FDCWD, share, 0755, 0) == 0 || errno != ENOSYS;
	CHECK_EQ(setattr(2, P9_SETATTR_MODE, 0640, 0, 0, 0, 0, 0), fchmodat2 ? 0 : ESTALE);
	CHECK_EQ(host_mode(hp("sub/data3")), S_IFREG | (fchmodat2 ? 0640 : 0644));
	drop_tree();
}

TEST(bad_names)
{
	make_tree(false);
	/* Absolute names point into our own tree (see make_tree): never at the host's files. */
	char secret[160];
	snprintf(secret, sizeof(secret), "%s/secret", outside);
	const char *const bad[] = { "a/b", outside, secret, "../outside", ".", "", "sub/..", "x/" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		const char *n = bad[i];
		CHECK_EQ(walkv(0, 1, 1, &n), EINVAL);
		CHECK_EQ(clonefid(0, 1), 0);
		CHECK_EQ(lcreate(1, n, P9_DOTL_WRONLY, 0644, NULL), EINVAL);
		CHECK_EQ(clunk(1), 0);
		CHECK_EQ(mkdir9(0, n, 0755, NULL), EINVAL);
		CHECK_EQ(symlink9(0, n, "t", NULL), EINVAL);
		CHECK_EQ(mknod9(0, n, S_IFREG | 0644), EINVAL);
		CHECK_EQ(renameat9(0, "data", 0, n), EINVAL);
		CHECK_EQ(renameat9(0, n, 0, "q"), EINVAL);
		CHECK_EQ(unlinkat9(0, n, 0), EINVAL);
		CHECK_EQ(WALK(0, 2, "data"), 0);
		CHECK_EQ(link9(0, 2, n), EINVAL);
		CHECK_EQ(rename9(2, 0, n), EINVAL);
		CHECK_EQ(clunk(2), 0);
	}
	/* ".." cannot be created, renamed or unlinked either */
	CHECK_EQ(mkdir9(0, "..", 0755, NULL), EINVAL);
	CHECK_EQ(unlinkat9(0, "..", P9_DOTL_AT_REMOVEDIR), EINVAL);
	/* A NUL inside a name */
	msg(P9_TWALK); m32(0); m32(1); m16(1); mstrn("sub\0x", 5);
	CHECK_EQ(rpc(), EINVAL);
	msg(P9_TMKDIR); m32(0); mstrn("a\0/../../x", 10); m32(0755); m32(0);
	CHECK_EQ(rpc(), EINVAL);
	/* Longer than NAME_MAX */
	char longname[300];
	memset(longname, 'n', 256);
	longname[256] = 0;
	const char *ln = longname;
	CHECK_EQ(walkv(0, 1, 1, &ln), ENAMETOOLONG);
	CHECK_EQ(mkdir9(0, longname, 0755, NULL), ENAMETOOLONG);
	/* A bad name after good ones: a partial walk */
	CHECK_EQ(WALK(0, 1, "sub", "a/b"), 0);
	CHECK_EQ(nwqid, 1);
	/* The host tree is as made, nothing outside appeared. */
	CHECK_EQ(access(hp("q"), F_OK), -1);
	char esc[160];
	snprintf(esc, sizeof(esc), "%s/x", base);
	CHECK_EQ(access(esc, F_OK), -1);
	CHECK(file_is(hp("data"), "0123456789"));
	check_outside();
	drop_tree();
}

TEST(malformed_messages)
{
	make_tree(false);
	/* Shorter than a header: Rlerror with NOTAG. */
	memcpy(req, "\x05\x00\x00\x00\x6e", 5);
	CHECK_EQ(p9_handle(srv, req, 5, resp, sizeof(resp)), 11);
	CHECK_EQ(resp[4], P9_RLERROR);
	CHECK_EQ(get_le16(resp + 5), P9_NOTAG);
	CHECK_EQ(get_le32(resp + 7), EINVAL);
	/* Size field below the header size, and above the buffer. */
	msg(P9_TCLUNK); m32(0);
	put_le32(req, 3);
	CHECK_EQ(p9_handle(srv, req, reqlen, resp, sizeof(resp)), 11);
	CHECK_EQ(get_le32(resp + 7), EINVAL);
	put_le32(req, reqlen + 1);
	CHECK_EQ(p9_handle(srv, req, reqlen, resp, sizeof(resp)), 11);
	CHECK_EQ(get_le32(resp + 7), EINVAL);
	put_le32(req, 0xffffffff);
	CHECK_EQ(p9_handle(srv, req, reqlen, resp, sizeof(resp)), 11);
	CHECK_EQ(get_le32(resp + 7), EINVAL);
	/* Bigger than msize (65536 here). */
	msg(P9_TWRITE); m32(0); m64(0); m32(70000); reqlen += 70000;
	CHECK_EQ(rpc(), EMSGSIZE);
	/* Fields or a string past the end. */
	msg(P9_TCLUNK); m16(0);
	CHECK_EQ(rpc(), EPROTO);
	msg(P9_TWALK); m32(0); m32(1); m16(1); m16(200); mbytes("abc", 3);
	CHECK_EQ(rpc(), EPROTO);
	msg(P9_TWALK); m32(0); m32(1); m16(3); mstr("sub");
	CHECK_EQ(rpc(), EPROTO);
	CHECK_EQ(clunk(1), EBADF);
	msg(P9_TWRITE); m32(0); m64(0); m32(100); mbytes("short", 5);
	CHECK_EQ(rpc(), EPROTO);
	msg(P9_TATTACH); m32(9); m32(P9_NOFID); mstr("u");
	CHECK_EQ(rpc(), EPROTO);
	CHECK_EQ(clunk(9), EBADF);
	/* Too many names. */
	const char *many[17];
	for (int i = 0; i < 17; i++)
		many[i] = "sub";
	CHECK_EQ(walkv(0, 1, 17, many), EINVAL);
	CHECK_EQ(walkv(0, 1, 16, many), 0);
	CHECK_EQ(nwqid, 1);	/* sub/sub does not exist */
	/* Unknown fids, and fids already in use. */
	CHECK_EQ(getattr(77, &(struct attr){ 0 }), EBADF);
	CHECK_EQ(lopen(77, 0), EBADF);
	CHECK_EQ(WALK(77, 78, "sub"), EBADF);
	CHECK_EQ(p9read(77, 0, 1, NULL), -EBADF);
	CHECK_EQ(attach(0, NULL), EBADF);
	CHECK_EQ(clonefid(0, 1), 0);
	CHECK_EQ(WALK(0, 1, "sub"), EBADF);
	CHECK_EQ(clonefid(0, 1), EBADF);
	CHECK_EQ(attach(P9_NOFID, NULL), EBADF);
	CHECK_EQ(clonefid(0, P9_NOFID), EBADF);
	msg(P9_TATTACH); m32(9); m32(5); mstr("u"); mstr(""); m32(0);
	CHECK_EQ(rpc(), EINVAL);	/* no authentication fids */
	msg(P9_TXATTRWALK); m32(0); m32(1); mstr("");
	CHECK_EQ(rpc(), EBADF);
	/* Replies bounded by the caller's buffer. */
	CHECK_EQ(p9_handle(srv, req, reqlen, resp, 10), 0);
	CHECK_EQ(WALK(0, 2, "data"), 0);
	CHECK_EQ(lopen(2, 0), 0);
	respcap = 15;
	char buf[16];
	CHECK_EQ(p9read(2, 0, 100, buf), 4);	/* 11 bytes of header, 4 of data */
	CHECK(!memcmp(buf, "0123", 4));
	respcap = 40;
	CHECK_EQ(getattr(2, &(struct attr){ 0 }), EMSGSIZE);
	CHECK_EQ(resplen, 11);
	CHECK_EQ(WALK(0, 3, "sub", "..", "sub"), EMSGSIZE);
	respcap = sizeof(resp);
	CHECK_EQ(clunk(3), EBADF);	/* no fid for a walk whose reply did not fit */
	/* An R-message type, and T-messages before any Tversion. */
	msg(P9_TWALK + 1); m32(0);
	CHECK_EQ(rpc(), EOPNOTSUPP);
	p9_server_free(srv);
	srv = p9_server_new(share, NULL);
	CHECK_EQ(attach(0, NULL), EPROTO);
	CHECK(p9_server_new("/nonexistent/dir", NULL) == NULL);
	CHECK(p9_server_new("/etc/passwd", NULL) == NULL);
	drop_tree();
}

TEST(xattrs)
{
	make_tree(false);
	char path[160];
	snprintf(path, sizeof(path), "%s", hp("data"));
	if (setxattr(path, "user.probe", "1", 1, 0)) {
		drop_tree();
		SKIP("%s has no user xattrs", share);
	}
	CHECK_EQ(WALK(0, 1, "data"), 0);
	CHECK_EQ(clonefid(1, 2), 0);
	msg(P9_TXATTRCREATE); m32(2); mstr("user.color"); m64(4); m32(0);
	CHECK_EQ(rpc(), 0);
	CHECK_EQ(p9write(2, 0, "bl", 2), 2);
	CHECK_EQ(p9write(2, 2, "ue", 2), 2);
	CHECK_EQ(p9write(2, 3, "xx", 2), -EINVAL);	/* past the declared size */
	CHECK_EQ(getattr(2, &(struct attr){ 0 }), 0);
	CHECK_EQ(WALK(2, 3, ".."), EBADF);
	CHECK_EQ(clunk(2), 0);
	char val[16] = { 0 };
	CHECK_EQ(getxattr(path, "user.color", val, sizeof(val)), 4);
	CHECK(!memcmp(val, "blue", 4));
	/* List and get through xattrwalk + read. */
	msg(P9_TXATTRWALK); m32(1); m32(3); mstr("");
	uint64_t n = 0;
	CHECK_EQ(rpc(), 0);
	if (resp[4] == P9_TXATTRWALK + 1)
		n = in64();
	CHECK(n >= strlen("user.probe") + strlen("user.color") + 2);
	char list[256] = { 0 };
	CHECK_EQ(p9read(3, 0, sizeof(list), list), n);
	bool has_color = false;
	for (size_t i = 0; i < n && i < sizeof(list) - 1; i += strlen(list + i) + 1)
		has_color |= !strcmp(list + i, "user.color");
	CHECK(has_color);
	CHECK_EQ(p9write(3, 0, "x", 1), -EBADF);
	CHECK_EQ(clunk(3), 0);
	msg(P9_TXATTRWALK); m32(1); m32(3); mstr("user.color");
	CHECK_EQ(rpc(), 0);
	CHECK_EQ(in64(), 4);
	CHECK_EQ(p9read(3, 1, 10, val), 3);
	CHECK(!memcmp(val, "lue", 3));
	CHECK_EQ(clunk(3), 0);
	msg(P9_TXATTRWALK); m32(1); m32(3); mstr("user.none");
	CHECK_EQ(rpc(), ENODATA);
	/* A written size short of the declared one fails at clunk. */
	CHECK_EQ(clonefid(1, 2), 0);
	msg(P9_TXATTRCREATE); m32(2); mstr("user.short"); m64(4); m32(0);
	CHECK_EQ(rpc(), 0);
	CHECK_EQ(p9write(2, 0, "ab", 2), 2);
	CHECK_EQ(clunk(2), EINVAL);
	CHECK_EQ(getxattr(path, "user.short", NULL, 0), -1);
	/* Size 0 with XATTR_REPLACE removes. */
	CHECK_EQ(clonefid(1, 2), 0);
	msg(P9_TXATTRCREATE); m32(2); mstr("user.color"); m64(0); m32(XATTR_REPLACE);
	CHECK_EQ(rpc(), 0);
	CHECK_EQ(clunk(2), 0);
	CHECK_EQ(getxattr(path, "user.color", NULL, 0), -1);
	/* Only the user namespace is writable; sizes and flags are checked. */
	CHECK_EQ(clonefid(1, 2), 0);
	msg(P9_TXATTRCREATE); m32(2); mstr("security.capability"); m64(4); m32(0);
	CHECK_EQ(rpc(), EOPNOTSUPP);
	msg(P9_TXATTRCREATE); m32(2); mstr("trusted.x"); m64(4); m32(0);
	CHECK_EQ(rpc(), EOPNOTSUPP);
	msg(P9_TXATTRCREATE); m32(2); mstr("user.big"); m64(1 << 20); m32(0);
	CHECK_EQ(rpc(), E2BIG);
	msg(P9_TXATTRCREATE); m32(2); mstr("user.f"); m64(1); m32(8);
	CHECK_EQ(rpc(), EINVAL);
	CHECK_EQ(clunk(2), 0);
	drop_tree();
}

TEST(read_only_share)
{
	make_tree(true);
	CHECK_EQ(WALK(0, 1, "data"), 0);
	CHECK_EQ(lopen(1, 0), 0);
	char buf[16];
	CHECK_EQ(p9read(1, 0, 10, buf), 10);
	CHECK_EQ(WALK(0, 2, "data"), 0);
	CHECK_EQ(lopen(2, P9_DOTL_WRONLY), EROFS);
	CHECK_EQ(lopen(2, P9_DOTL_RDWR), EROFS);
	CHECK_EQ(lopen(2, P9_DOTL_TRUNC), EROFS);
	CHECK_EQ(clonefid(0, 3), 0);
	CHECK_EQ(lcreate(3, "new", P9_DOTL_WRONLY, 0644, NULL), EROFS);
	CHECK_EQ(mkdir9(0, "newdir", 0755, NULL), EROFS);
	CHECK_EQ(symlink9(0, "newlink", "data", NULL), EROFS);
	CHECK_EQ(mknod9(0, "newnod", S_IFIFO | 0644), EROFS);
	CHECK_EQ(link9(0, 2, "newhard"), EROFS);
	CHECK_EQ(rename9(2, 0, "renamed"), EROFS);
	CHECK_EQ(renameat9(0, "data", 0, "renamed"), EROFS);
	CHECK_EQ(unlinkat9(0, "data", 0), EROFS);
	CHECK_EQ(setattr(2, P9_SETATTR_SIZE, 0, 0, 0, 0, 0, 0), EROFS);
	CHECK_EQ(setattr(2, P9_SETATTR_MODE, 0777, 0, 0, 0, 0, 0), EROFS);
	CHECK_EQ(setattr(2, P9_SETATTR_MTIME, 0, 0, 0, 0, 0, 0), EROFS);
	msg(P9_TXATTRCREATE); m32(2); mstr("user.x"); m64(1); m32(0);
	CHECK_EQ(rpc(), EROFS);
	CHECK_EQ(fid1(P9_TREMOVE, 2), EROFS);
	CHECK_EQ(clunk(2), EBADF);	/* Tremove clunked it anyway */
	msg(P9_TFSYNC); m32(1); m32(0);
	CHECK_EQ(rpc(), 0);
	CHECK_EQ(getattr(1, &(struct attr){ 0 }), 0);
	CHECK_EQ(clonefid(0, 4), 0);
	CHECK_EQ(lopen(4, 0), 0);
	char names[1024];
	int calls;
	CHECK_EQ(readdir_all(4, 4096, names, sizeof(names), &calls), 0);
	CHECK(strstr(names, "data ") != NULL);
	CHECK(file_is(hp("data"), "0123456789"));
	CHECK_EQ(host_mode(hp("data")), S_IFREG | 0644);
	CHECK_EQ(access(hp("new"), F_OK), -1);
	CHECK_EQ(access(hp("newdir"), F_OK), -1);
	CHECK_EQ(access(hp("renamed"), F_OK), -1);
	drop_tree();
}

#define NO_SECCOMP 77

/* A forked test's failures are its exit status. */
static void child_passed(pid_t pid)
{
	int status = -1;
	CHECK_EQ(waitpid(pid, &status, 0), pid);
	CHECK(WIFEXITED(status));
	if (WEXITSTATUS(status) == NO_SECCOMP)
		test_skip("no seccomp filters here (valgrind?)");
	else
		CHECK_EQ(WEXITSTATUS(status), 0);
}

/* Make syscall nr fail with ENOSYS in this process, as on older kernels. */
static int hide_syscall(int nr)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = ARRAY_SIZE(f), .filter = f };
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -1;
	return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

TEST(chmod_without_fchmodat2)
{
	make_tree(false);
	fflush(NULL);	/* the child must not repeat our buffered output */
	pid_t pid = fork();
	if (pid == 0) {
		int before = t_fail;
		if (hide_syscall(452))	/* fchmodat2, Linux 6.6 */
			_exit(NO_SECCOMP);
		CHECK_EQ(syscall(452, AT_FDCWD, share, 0755, 0), -1);
		CHECK_EQ(errno, ENOSYS);
		CHECK_EQ(WALK(0, 1, "data"), 0);
		CHECK_EQ(setattr(1, P9_SETATTR_MODE, 0600, 0, 0, 0, 0, 0), 0);
		CHECK_EQ(host_mode(hp("data")), S_IFREG | 0600);
		CHECK_EQ(setattr(1, P9_SETATTR_MODE, 0, 0, 0, 0, 0, 0), 0);
		CHECK_EQ(host_mode(hp("data")), S_IFREG);
		CHECK_EQ(WALK(0, 2, "sub"), 0);
		CHECK_EQ(setattr(2, P9_SETATTR_MODE, 0711, 0, 0, 0, 0, 0), 0);
		CHECK_EQ(host_mode(hp("sub")), S_IFDIR | 0711);
		CHECK_EQ(mkdir9(0, "wide", 0777, NULL), 0);
		CHECK_EQ(host_mode(hp("wide")), S_IFDIR | 0777);
		CHECK_EQ(mknod9(0, "fifo", S_IFIFO | 0666), 0);
		CHECK_EQ(host_mode(hp("fifo")), S_IFIFO | 0666);
		CHECK_EQ(WALK(0, 3, "sec"), 0);
		CHECK_EQ(setattr(3, P9_SETATTR_MODE, 0777, 0, 0, 0, 0, 0), EOPNOTSUPP);
		check_outside();
		fflush(NULL);
		_exit(t_fail - before);
	}
	child_passed(pid);
	drop_tree();
}

TEST(confinement_without_openat2)
{
	make_tree(false);
	fflush(NULL);	/* the child must not repeat our buffered output */
	pid_t pid = fork();
	if (pid == 0) {
		int before = t_fail;
		if (hide_syscall(SYS_openat2))	/* Linux 5.6; valgrind 3.21 */
			_exit(NO_SECCOMP);
		struct qid root = { 0 };
		CHECK_EQ(attach(1, &root), 0);
		CHECK_EQ(WALK(1, 2, "..", "..", "outside"), 0);
		CHECK_EQ(nwqid, 2);
		CHECK_EQ(wqids[1].path, root.path);
		CHECK_EQ(WALK(1, 2, "sub", "..", ".."), 0);
		CHECK_EQ(wqids[2].path, root.path);
		CHECK_EQ(WALK(1, 3, "etc", "passwd"), 0);
		CHECK_EQ(nwqid, 1);
		CHECK_EQ(WALK(1, 3, "abs"), 0);
		CHECK_EQ(lcreate(3, "x", P9_DOTL_WRONLY, 0644, NULL), ENOTDIR);
		CHECK_EQ(WALK(1, 4, "sec"), 0);
		CHECK_EQ(lopen(4, P9_DOTL_RDWR | P9_DOTL_TRUNC), ELOOP);
		CHECK_EQ(setattr(4, P9_SETATTR_SIZE, 0, 0, 0, 0, 0, 0), ELOOP);
		const char *n = outside;
		CHECK_EQ(walkv(1, 5, 1, &n), EINVAL);
		CHECK_EQ(mkdir9(1, "../made", 0755, NULL), EINVAL);
		/* and the ordinary operations still work */
		CHECK_EQ(WALK(1, 5, "sub"), 0);
		CHECK_EQ(lcreate(5, "f", P9_DOTL_RDWR, 0600, NULL), 0);
		CHECK_EQ(p9write(5, 0, "ok", 2), 2);
		CHECK(file_is(hp("sub/f"), "ok"));
		CHECK_EQ(WALK(1, 6, "data"), 0);
		CHECK_EQ(setattr(6, P9_SETATTR_SIZE, 0, 0, 0, 4, 0, 0), 0);
		CHECK(file_is(hp("data"), "0123"));
		CHECK_EQ(clonefid(1, 7), 0);
		CHECK_EQ(lopen(7, 0), 0);
		char names[1024];
		int calls;
		CHECK_EQ(readdir_all(7, 4096, names, sizeof(names), &calls), 0);
		CHECK(strstr(names, "data ") != NULL);
		check_outside();
		fflush(NULL);
		_exit(t_fail - before);
	}
	child_passed(pid);
	drop_tree();
}

/*
 * Every message under lkvm's own syscall allowlist (cfg.needs_files): a call
 * outside it kills the child with "seccomp blocked syscall" on stderr.
 */
TEST(under_lkvm_seccomp)
{
	make_tree(false);
	CHECK_EQ(WALK(0, 1, "data"), 0);	/* fids made before: the device is set up before seccomp */
	gid_t gid = getegid();
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		int before = t_fail;
		if (seccomp_install(true))
			_exit(NO_SECCOMP);
		struct qid q;
		char buf[64];
		CHECK_EQ(attach(2, NULL), 0);
		CHECK_EQ(WALK(2, 3, "sub", "..", "sub"), 0);
		CHECK_EQ(lcreate(3, "f", P9_DOTL_RDWR, 0664, &q), 0);
		CHECK_EQ(p9write(3, 0, "abc", 3), 3);
		CHECK_EQ(p9read(3, 0, sizeof(buf), buf), 3);
		msg(P9_TFSYNC); m32(3); m32(1);
		CHECK_EQ(rpc(), 0);
		CHECK_EQ(getattr(3, &(struct attr){ 0 }), 0);
		CHECK_EQ(setattr(3, P9_SETATTR_MODE | P9_SETATTR_SIZE | P9_SETATTR_ATIME | P9_SETATTR_MTIME |
				 P9_SETATTR_MTIME_SET, 0600, 0, 0, 1, 0, 5), 0);
		CHECK_EQ(setattr(1, P9_SETATTR_SIZE | P9_SETATTR_GID, 0, 0, gid, 2, 0, 0), 0);
		msg(P9_TSTATFS); m32(2);
		CHECK_EQ(rpc(), 0);
		CHECK_EQ(mkdir9(2, "d", 0777, NULL), 0);
		CHECK_EQ(symlink9(2, "s", "f", NULL), 0);
		CHECK_EQ(WALK(2, 4, "s"), 0);
		CHECK_EQ(readlink9(4, buf, sizeof(buf)), 0);
		CHECK_EQ(link9(2, 1, "hard"), 0);
		CHECK_EQ(mknod9(2, "fifo", S_IFIFO | 0666), 0);
		CHECK_EQ(rename9(1, 2, "data2"), 0);
		CHECK_EQ(renameat9(2, "data2", 2, "data3"), 0);
		CHECK_EQ(lopen(1, 0), 0);	/* found under its new name */
		CHECK_EQ(WALK(2, 5, "d", ".."), 0);
		CHECK_EQ(clonefid(2, 6), 0);
		CHECK_EQ(lopen(6, 0), 0);
		char names[1024];
		int calls;
		CHECK_EQ(readdir_all(6, 4096, names, sizeof(names), &calls), 0);
		CHECK(strstr(names, "data3 ") != NULL);
		msg(P9_TXATTRWALK); m32(2); m32(7); mstr("");
		int e = rpc();
		CHECK(e == 0 || e == EOPNOTSUPP);
		CHECK_EQ(WALK(2, 8, "hard"), 0);
		msg(P9_TXATTRCREATE); m32(8); mstr("user.k"); m64(1); m32(0);
		CHECK_EQ(rpc(), 0);
		CHECK_EQ(p9write(8, 0, "v", 1), 1);
		e = clunk(8);
		CHECK(e == 0 || e == EOPNOTSUPP);
		msg(P9_TLOCK); m32(1); m8(1); m32(0); m64(0); m64(0); m32(1); mstr("c");
		CHECK_EQ(rpc(), 0);
		CHECK_EQ(unlinkat9(2, "fifo", 0), 0);
		CHECK_EQ(unlinkat9(2, "d", P9_DOTL_AT_REMOVEDIR), 0);
		CHECK_EQ(fid1(P9_TREMOVE, 3), 0);
		CHECK_EQ(WALK(2, 9, ".."), 0);
		CHECK_EQ(clunk(9), 0);
		uint32_t msize;
		char v[32];
		CHECK_EQ(version(8192, "9P2000.L", &msize, v), 0);	/* frees every fid */
		fflush(NULL);
		_exit(t_fail - before);
	}
	child_passed(pid);
	drop_tree();
}

/* ---- through the virtio device ---- */

#define REQ_AT (BUF)
#define RESP_AT (BUF + 0x1000)

/* One request in two readable descriptors, its reply in two writable ones; returns the used length. */
static int queue_rpc(const uint8_t *m, uint32_t len, uint32_t resp_len)
{
	memcpy(g(REQ_AT), m, len);
	memset(g(RESP_AT), 0xee, resp_len);
	uint32_t first = len / 2;
	desc(0, REQ_AT, first, 1, 1);
	desc(1, REQ_AT + first, len - first, 1, 2);
	desc(2, RESP_AT, 16, 1 | 2, 3);
	desc(3, RESP_AT + 16, resp_len - 16, 2, 0);
	uint16_t before = get_le16(g(USED + 2));
	post(0);
	if (wait_used(before + 1) < 0)
		return -1;
	return get_le32(g(USED + 4 + 8 * (before % QSIZE) + 4));
}

TEST(virtio_device)
{
	make_tree(false);
	setup_vm();
	/* Refused: a missing directory, a tag too long. */
	struct p9_opts *shares = vm_config_part(&vm.cfg, &virtio_9p_device, sizeof(*shares));
	shares->n = 1;
	shares->share[0] = (struct share_opt){ .dir = "/nonexistent", .tag = "t" };
	CHECK_EQ(device_type_create(&vm, &virtio_9p_device), -1);
	char longtag[300];
	memset(longtag, 't', 299);
	longtag[299] = 0;
	shares->share[0] = (struct share_opt){ .dir = share, .tag = longtag };
	CHECK_EQ(device_type_create(&vm, &virtio_9p_device), -1);
	CHECK(!vm.needs_files);

	shares->share[0] = (struct share_opt){ .dir = share, .tag = "hostshare" };
	CHECK_EQ(device_type_create(&vm, &virtio_9p_device), 0);
	CHECK(vm.needs_files);
	CHECK_EQ(devices_start(&vm), 0);	/* its worker threads */
	struct pci_dev *p = dev_at(1);
	CHECK(p != NULL);
	if (!p) {
		drop_tree();
		return;
	}
	CHECK_EQ(pci_cfg_read(p, 0, 4), 0x10491af4);	/* virtio 1.x device 9 */
	avail_idx = 0;
	CHECK_EQ(driver_init(p, 0), -1);	/* VERSION_1 is required */
	avail_idx = 0;
	CHECK_EQ(driver_init(p, 1ULL << VIRTIO_F_VERSION_1 | 1ULL << 1), -1);	/* not offered */
	avail_idx = 0;
	CHECK_EQ(driver_init(p, 1ULL << VIRTIO_F_VERSION_1 | 1ULL << 0), 0);
	wr(0x00, 0, 4);
	CHECK_EQ(rd(0x04, 4) & 1, 1);	/* MOUNT_TAG offered */
	/* Config space: le16 length, then the tag without a NUL. */
	CHECK_EQ(rd(VPCI_DEVICE, 2), 9);
	char tag[10] = { 0 };
	for (int i = 0; i < 9; i++)
		tag[i] = rd(VPCI_DEVICE + 2 + i, 1);
	CHECK(!strcmp(tag, "hostshare"));

	/* Tversion through the queue. */
	msg(P9_TVERSION); m32(8192); mstr("9P2000.L");
	put_le32(req, reqlen);
	CHECK_EQ(queue_rpc(req, reqlen, 4096), 21);
	uint8_t *r = g(RESP_AT);
	CHECK_EQ(get_le32(r), 21);
	CHECK_EQ(r[4], P9_TVERSION + 1);
	CHECK_EQ(get_le16(r + 5), P9_NOTAG);
	CHECK_EQ(get_le32(r + 7), 8192);
	CHECK_EQ(get_le16(r + 11), 8);
	CHECK(!memcmp(r + 13, "9P2000.L", 8));
	CHECK_EQ(r[21], 0xee);	/* nothing past the reply */
	/* Attach, walk, read the file back through the queue. */
	msg(P9_TATTACH); m32(0); m32(P9_NOFID); mstr("root"); mstr(""); m32(0);
	put_le32(req, reqlen);
	CHECK_EQ(queue_rpc(req, reqlen, 4096), 20);
	CHECK_EQ(r[4], P9_TATTACH + 1);
	CHECK_EQ(r[7], P9_QTDIR);
	msg(P9_TWALK); m32(0); m32(1); m16(1); mstr("data");
	put_le32(req, reqlen);
	CHECK_EQ(queue_rpc(req, reqlen, 4096), 22);
	msg(P9_TLOPEN); m32(1); m32(0);
	put_le32(req, reqlen);
	CHECK_EQ(queue_rpc(req, reqlen, 4096), 24);
	msg(P9_TREAD); m32(1); m64(2); m32(100);
	put_le32(req, reqlen);
	CHECK_EQ(queue_rpc(req, reqlen, 4096), 11 + 8);
	CHECK_EQ(get_le32(r + 7), 8);
	CHECK(!memcmp(r + 11, "23456789", 8));	/* split across the two writable buffers */
	/* A message whose size field lies: an Rlerror, and the device keeps going. */
	put_le32(req, 9999);
	CHECK_EQ(queue_rpc(req, reqlen, 4096), 11);
	CHECK_EQ(r[4], P9_RLERROR);
	CHECK_EQ(get_le32(r + 7), EINVAL);
	msg(P9_TCLUNK); m32(1);
	put_le32(req, reqlen);
	CHECK_EQ(queue_rpc(req, reqlen, 4096), 7);
	CHECK_EQ(r[4], P9_TCLUNK + 1);
	CHECK_EQ(intx_level, 1);	/* no MSI-X vector set: the used buffers raised INTx */
	drop_tree();
}

/* ---- snapshots: fids by path (p9_server_save/load) ---- */

static uint8_t *saved;
static size_t saved_len;

static void save_server(void)
{
	int fd;
	struct snap_writer *w = snap_buf_open(&fd);
	snap_begin(w, "p9", 1);
	CHECK_EQ(p9_server_save(srv, w), 0);
	CHECK_EQ(snap_end(w), 0);
	CHECK_EQ(snap_buf_close(w, fd, &saved, &saved_len), 0);
}

/* A fresh server on the same folder takes the saved fids: 0 or the load's -1. */
static int load_server(void)
{
	p9_server_free(srv);
	srv = p9_server_new(share, false);
	struct snap_reader *r = snap_reader_new(saved, saved_len, "t");
	CHECK(r != NULL);
	int ret = r && !snap_open(r, "p9", 1) ? p9_server_load(srv, r) : -1;
	if (!ret)
		ret = snap_close(r);
	snap_reader_free(r);
	return ret;
}

TEST(snapshot_fids_by_path)
{
	make_tree(false);
	mkdir(hp("sub/deep"), 0755);
	put_file(hp("sub/deep/f"), "deep-file");
	put_file(hp("gone"), "to-be-deleted");
	put_file(hp("moved"), "renamed-later");
	CHECK_EQ(WALK(0, 1, "sub", "deep"), 0);	/* a directory */
	CHECK_EQ(WALK(1, 2, "f"), 0);			/* a file, opened */
	CHECK_EQ(lopen(2, P9_DOTL_RDWR), 0);
	CHECK_EQ(WALK(0, 3, "gone"), 0);
	CHECK_EQ(lopen(3, 0), 0);
	CHECK_EQ(WALK(0, 4, "moved"), 0);		/* renamed on the host before the save */
	CHECK_EQ(rename(hp("moved"), hp("moved2")), 0);
	CHECK_EQ(WALK(0, 5, "data"), 0);		/* deleted on the host after the save */
	save_server();
	CHECK_EQ(unlink(hp("data")), 0);
	CHECK_EQ(load_server(), 0);
	/* Open fid 2 reads and writes its file; the directory fid walks on. */
	char buf[32] = { 0 };
	CHECK_EQ(p9read(2, 0, 9, buf), 9);
	CHECK(!memcmp(buf, "deep-file", 9));
	CHECK_EQ(p9write(2, 0, "DEEP", 4), 4);
	CHECK(file_is(hp("sub/deep/f"), "DEEP-file"));
	CHECK_EQ(WALK(1, 6, "f"), 0);
	CHECK_EQ(clunk(6), 0);
	/* The file found under its new name; the file deleted since: ESTALE, and clunk works. */
	CHECK_EQ(lopen(4, 0), 0);
	CHECK_EQ(p9read(4, 0, 13, buf), 13);
	CHECK(!memcmp(buf, "renamed-later", 13));
	struct attr a;
	CHECK_EQ(getattr(5, &a), ESTALE);
	CHECK_EQ(lopen(5, 0), ESTALE);
	CHECK_EQ(WALK(5, 7, "x"), ESTALE);
	CHECK_EQ(clunk(5), 0);
	/* The root fid 0 is there as before. */
	CHECK_EQ(WALK(0, 8, "sub"), 0);
	/* A session whose open file was deleted before the save: that fid is stale after the load. */
	CHECK_EQ(unlink(hp("gone")), 0);
	save_server();
	CHECK_EQ(load_server(), 0);
	CHECK_EQ(p9read(3, 0, 4, buf), -ESTALE);
	CHECK_EQ(p9read(2, 0, 4, buf), 4);
	drop_tree();
	free(saved);
	saved = NULL;
}

TEST_MAIN()
