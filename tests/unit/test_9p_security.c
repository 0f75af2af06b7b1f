/*
 * What a hostile guest must not be able to do to the host through a 9P share
 * (issue 21), driven through p9_handle() and, for descriptor limits, through
 * the virtio device. Each case runs as root (lkvm is often run so) and again
 * in a child that dropped to uid 65534 (lkvm as an ordinary user); both run
 * inside the read-only sandbox of tests/ro_sandbox.h.
 *
 * The host must never get a setuid/setgid file or directory, a device node,
 * a device or fifo opened on the guest's say, its share root's owner or mode
 * changed, trusted.* or security.* xattrs shown, a mount crossed that the
 * share does not allow, or lkvm's memory and descriptors run out.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>
#include "test.h"
#include "p9.h"
#include "snapshot.h"
#include "util.h"

#include "virtio_fixture.h"
#include "../ro_sandbox.h"
#include "p9_client.h"

#define NOBODY 65534

__attribute__((constructor)) static void confine(void)
{
	if (ro_sandbox(NULL, 0, "/etc/.lkvm-test-9p-security-probe") == 0)
		return;
	if (geteuid() == 0) {
		fprintf(stderr, "test_9p_security: refusing to run as root without a read-only sandbox\n");
		exit(1);
	}
	fprintf(stderr, "test_9p_security: note: no sandbox (no user namespaces); as a normal user the host is safe enough\n");
}

static int skips;
static bool as_user;	/* this run is the unprivileged one */
#define PART_SKIP(...) do { printf("SKIP %s (%s): ", t_name, as_user ? "as a user" : "as root"); printf(__VA_ARGS__); \
	printf("\n"); skips++; } while (0)

/* Run body as root (when we are) and then, in a child, as uid 65534 (or as ourselves). */
static void root_and_user(void (*body)(void))
{
	if (geteuid() == 0) {
		as_user = false;
		body();
	} else {
		printf("SKIP %s (as root): the test does not run as root\n", t_name);
		skips++;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		int before = t_fail, sk = skips;
		if (geteuid() == 0 && (setgroups(0, NULL) || setresgid(NOBODY, NOBODY, NOBODY) ||
				       setresuid(NOBODY, NOBODY, NOBODY)))
			_exit(100);
		as_user = true;
		body();
		fflush(NULL);
		_exit(MIN(t_fail - before, 50) + 64 * (skips > sk));
	}
	int status = -1;
	CHECK_EQ(waitpid(pid, &status, 0), pid);
	CHECK(WIFEXITED(status));
	CHECK_EQ(WEXITSTATUS(status) & 63, 0);
	skips += (WEXITSTATUS(status) & 64) != 0;
}

/* ---- a share and a client ---- */

static char share[96];
static uint8_t reqbuf[P9_MAX_MSIZE + 64], respbuf[P9_MAX_MSIZE];
static struct p9c cl = { .req = reqbuf, .resp = respbuf, .resp_cap = sizeof(respbuf) };

struct share_cfg {
	bool ro, mapped, xdev;
	unsigned max_fids;
	size_t max_bytes;
};

static struct p9_server *server_for(const char *dir, const struct share_cfg *cfg)
{
	struct p9_server_opts o = { .ro = cfg->ro, .model = cfg->mapped ? P9_MAPPED : P9_PASSTHROUGH, .xdev = cfg->xdev,
			     .max_fids = cfg->max_fids, .max_bytes = cfg->max_bytes };
	return p9_server_new(dir, &o);
}

static const char *hp(const char *rel)
{
	static char bufs[4][512];
	static int k;
	char *b = bufs[k++ % 4];
	snprintf(b, 512, "%s/%s", share, rel);
	return b;
}

static mode_t host_mode(const char *path)
{
	struct stat st;
	return lstat(path, &st) ? (mode_t)-1 : st.st_mode;
}

static void put_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, mode);
	if (fd >= 0) {
		if (write(fd, text, strlen(text)) < 0) {}
		fchmod(fd, mode);
		close(fd);
	}
}

/* A fresh share directory (mode 0755, ours) served with cfg, a session, fid 0 its root as guest uid. */
static bool open_share(const struct share_cfg *cfg, uint32_t uid)
{
	umask(022);
	strcpy(share, "/tmp/lkvm-9psec-XXXXXX");
	if (!mkdtemp(share) || chmod(share, 0755))
		return false;
	cl.srv = server_for(share, cfg);
	CHECK(cl.srv != NULL);
	if (!cl.srv)
		return false;
	uint32_t msize;
	char v[32];
	CHECK_EQ(p9c_version(&cl, 65536, "9P2000.L", &msize, v, sizeof(v)), 0);
	CHECK_EQ(p9c_attach(&cl, 0, uid, NULL), 0);
	return true;
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	if (type == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

static void close_share(void)
{
	p9_server_free(cl.srv);
	cl.srv = NULL;
	nftw(share, rm_one, 16, FTW_PHYS | FTW_DEPTH | FTW_MOUNT);
}

/* Every object under the share: none setuid, setgid or a device node. Returns how many are. */
static int bad_found;
static int scan_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	bool bad = (S_ISREG(st->st_mode) && (st->st_mode & (S_ISUID | S_ISGID))) ||
		   (S_ISDIR(st->st_mode) && (st->st_mode & (S_ISUID | S_ISGID))) ||
		   S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode);
	if (bad) {
		fprintf(stderr, "FAIL %s: the host has %s, mode %o, owner %u\n", t_name, path, st->st_mode, st->st_uid);
		bad_found++;
	}
	return 0;
}
static int privileged_objects(void)
{
	bad_found = 0;
	nftw(share, scan_one, 16, FTW_PHYS);
	return bad_found;
}

/* ---- finding 1: setuid/setgid bits ---- */

static void setuid_body(void)
{
	struct share_cfg cfg = { 0 };
	if (!open_share(&cfg, 1000))
		return;
	/* The attack of the issue: create, give to root, chmod 06755. */
	CHECK_EQ(p9c_walk1(&cl, 0, 1, NULL, NULL), 0);
	CHECK_EQ(p9c_lcreate(&cl, 1, "b", P9_DOTL_RDWR, 0755, 0, NULL), 0);
	if (!as_user)
		p9c_setattr(&cl, 1, P9_SETATTR_UID | P9_SETATTR_GID, 0, 0, 0, 0, 0, 0);
	CHECK_EQ(p9c_setattr(&cl, 1, P9_SETATTR_MODE, 06755, 0, 0, 0, 0, 0), 0);
	CHECK_EQ(host_mode(hp("b")) & 07777, 0755);
	/* chown after the chmod: still nothing. */
	if (!as_user)
		p9c_setattr(&cl, 1, P9_SETATTR_UID | P9_SETATTR_GID, 0, 0, 0, 0, 0, 0);
	CHECK_EQ(host_mode(hp("b")) & 06000, 0);
	/* Created with the bits: Tlcreate, Tmknod, Tmkdir. */
	CHECK_EQ(p9c_walk1(&cl, 0, 2, NULL, NULL), 0);
	CHECK_EQ(p9c_lcreate(&cl, 2, "c", P9_DOTL_WRONLY, 04755, 0, NULL), 0);
	CHECK_EQ(host_mode(hp("c")), S_IFREG | 0755);
	CHECK_EQ(p9c_mknod(&cl, 0, "n", S_IFREG | 06755, 0, 0, 0), 0);
	CHECK_EQ(host_mode(hp("n")), S_IFREG | 0755);
	CHECK_EQ(p9c_mkdir(&cl, 0, "d", 03777, 0, NULL), 0);
	CHECK_EQ(host_mode(hp("d")), S_IFDIR | 01777);	/* sticky is fine, setgid is not */
	CHECK_EQ(p9c_walk1(&cl, 0, 3, "d", NULL), 0);
	CHECK_EQ(p9c_setattr(&cl, 3, P9_SETATTR_MODE, 02755, 0, 0, 0, 0, 0), 0);
	CHECK_EQ(host_mode(hp("d")), S_IFDIR | 0755);
	/* A setuid file the host had: a write through the share clears the bit, as the kernel does. */
	put_file(hp("s"), "old", 04755);
	CHECK_EQ(host_mode(hp("s")), S_IFREG | 04755);
	CHECK_EQ(p9c_walk1(&cl, 0, 4, "s", NULL), 0);
	CHECK_EQ(p9c_lopen(&cl, 4, P9_DOTL_WRONLY), 0);
	CHECK_EQ(p9c_write(&cl, 4, 0, "new", 3), 3);
	CHECK_EQ(host_mode(hp("s")) & 06000, 0);
	CHECK_EQ(privileged_objects(), 0);
	close_share();
}
TEST(setuid_bits_never_reach_the_host) { root_and_user(setuid_body); }

/* ---- finding 4: Tlcreate must not open what is not a regular file ---- */

static void lcreate_special_body(void)
{
	struct share_cfg cfg = { 0 };
	if (!open_share(&cfg, 0))
		return;
	/* A fifo with a reader: a writer's open and close would show as a hang-up. */
	CHECK_EQ(mkfifo(hp("p"), 0666), 0);
	int rd = open(hp("p"), O_RDONLY | O_NONBLOCK);
	CHECK(rd >= 0);
	CHECK_EQ(p9c_walk1(&cl, 0, 1, NULL, NULL), 0);
	CHECK_EQ(p9c_lcreate(&cl, 1, "p", P9_DOTL_WRONLY, 0644, 0, NULL), EOPNOTSUPP);
	struct pollfd pf = { .fd = rd, .events = POLLIN };
	CHECK_EQ(poll(&pf, 1, 0), 0);	/* nobody opened it for writing */
	close(rd);
	/* A device node (root only can make one; /tmp is nodev here, so opening it would fail anyway). */
	if (mknod(hp("null"), S_IFCHR | 0666, makedev(1, 3)) == 0) {
		CHECK_EQ(p9c_lcreate(&cl, 1, "null", P9_DOTL_RDWR, 0644, 0, NULL), EOPNOTSUPP);
	} else {
		PART_SKIP("device node: mknod refused (%s)", strerror(errno));
	}
	close_share();
}
TEST(lcreate_never_opens_special_files) { root_and_user(lcreate_special_body); }

/* ---- finding 4: the share root's own attributes ---- */

static void root_attr_body(void)
{
	struct share_cfg cfg = { 0 };
	if (!open_share(&cfg, 0))
		return;
	struct stat before, after;
	CHECK_EQ(stat(share, &before), 0);
	CHECK_EQ(p9c_setattr(&cl, 0, P9_SETATTR_MODE, 0777, 0, 0, 0, 0, 0), EPERM);
	CHECK_EQ(p9c_setattr(&cl, 0, P9_SETATTR_UID | P9_SETATTR_GID, 0, 1234, 1234, 0, 0, 0), EPERM);
	CHECK_EQ(p9c_setattr(&cl, 0, P9_SETATTR_MTIME | P9_SETATTR_MTIME_SET, 0, 0, 0, 0, 0, 12345), EPERM);
	/* Reached again through "..": the same directory, the same answer. */
	CHECK_EQ(p9c_mkdir(&cl, 0, "sub", 0755, 0, NULL), 0);
	const char *up[] = { "sub", ".." };
	int n;
	CHECK_EQ(p9c_walk(&cl, 0, 1, 2, up, NULL, &n), 0);
	CHECK_EQ(n, 2);
	CHECK_EQ(p9c_setattr(&cl, 1, P9_SETATTR_MODE, 0777, 0, 0, 0, 0, 0), EPERM);
	CHECK_EQ(stat(share, &after), 0);
	CHECK_EQ(after.st_mode, before.st_mode);
	CHECK_EQ(after.st_uid, before.st_uid);
	CHECK_EQ(after.st_gid, before.st_gid);
	CHECK_EQ(after.st_mtime, before.st_mtime);
	close_share();
}
TEST(share_root_attributes_refused) { root_and_user(root_attr_body); }

/* The root opened without following a symlink in its last component. */
static void root_symlink_body(void)
{
	char dir[64] = "/tmp/lkvm-9psec-XXXXXX", link[96];
	CHECK(mkdtemp(dir) != NULL);
	snprintf(link, sizeof(link), "%s-link", dir);
	CHECK_EQ(symlink(dir, link), 0);
	struct share_cfg cfg = { 0 };
	struct p9_server *s = server_for(link, &cfg);
	CHECK(s == NULL);
	p9_server_free(s);
	unlink(link);
	rmdir(dir);
}
TEST(share_root_symlink_refused) { root_and_user(root_symlink_body); }

/* ---- finding 4: xattr namespaces ---- */

static bool listed(const char *list, long n, const char *name)
{
	for (long i = 0; i < n; i += strlen(list + i) + 1)
		if (!strcmp(list + i, name))
			return true;
	return false;
}

static void xattr_ns_body(void)
{
	struct share_cfg cfg = { 0 };
	if (!open_share(&cfg, 0))
		return;
	put_file(hp("f"), "x", 0644);
	if (setxattr(hp("f"), "user.visible", "u", 1, 0)) {
		PART_SKIP("no user xattrs on %s: %s", share, strerror(errno));
		close_share();
		return;
	}
	bool priv = !setxattr(hp("f"), "trusted.lkvm", "t", 1, 0);
	bool sec = !setxattr(hp("f"), "security.lkvm", "s", 1, 0);
	if (!priv)
		PART_SKIP("trusted.* cannot be set here (%s)", strerror(errno));
	CHECK_EQ(p9c_walk1(&cl, 0, 1, "f", NULL), 0);
	char buf[1024];
	long n = p9c_getxattr(&cl, 1, 2, "", buf, sizeof(buf));
	CHECK(n > 0);
	CHECK(listed(buf, n, "user.visible"));
	CHECK(!listed(buf, n, "trusted.lkvm"));
	CHECK(!listed(buf, n, "security.lkvm"));
	CHECK_EQ(p9c_getxattr(&cl, 1, 2, "user.visible", buf, sizeof(buf)), 1);
	if (priv)
		CHECK_EQ(p9c_getxattr(&cl, 1, 2, "trusted.lkvm", buf, sizeof(buf)), -ENODATA);
	if (sec)
		CHECK_EQ(p9c_getxattr(&cl, 1, 2, "security.lkvm", buf, sizeof(buf)), -ENODATA);
	close_share();
}
TEST(trusted_and_security_xattrs_hidden) { root_and_user(xattr_ns_body); }

/* ---- finding 3: memory ---- */

static long rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kib = -1;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld", &kib) == 1)
			break;
	if (f)
		fclose(f);
	return kib;
}

#define RSS_BOUND_KIB (32 * 1024)	/* stated bound: xattr fids cost lkvm at most 32 MiB more */

static void xattr_memory_body(void)
{
	struct share_cfg cfg = { 0 };
	if (!open_share(&cfg, 0))
		return;
	put_file(hp("f"), "x", 0644);
	put_file(hp("g"), "x", 0644);
	static char big[60000];
	memset(big, 'v', sizeof(big));
	if (setxattr(hp("f"), "user.small", "12345678", 8, 0)) {
		PART_SKIP("no user xattrs on %s: %s", share, strerror(errno));
		close_share();
		return;
	}
	bool have_big = !setxattr(hp("g"), "user.big", big, sizeof(big), 0);
	if (!have_big)
		PART_SKIP("a 60000-byte xattr value is refused here (%s)", strerror(errno));
	CHECK_EQ(p9c_walk1(&cl, 0, 1, "f", NULL), 0);
	CHECK_EQ(p9c_walk1(&cl, 0, 2, "g", NULL), 0);
	long before = rss_kib();
	/* 16378 small values, as in the issue: each fid must cost what it holds, not 64 KiB. */
	int made = 0, refused = 0;
	for (uint32_t i = 0; i < 16378; i++) {
		int e = p9c_xattrwalk(&cl, 1, 1000 + i, "user.small", NULL);
		made += e == 0;
		refused += e == EMFILE;
	}
	long mid = rss_kib();
	printf("  %d xattr fids of 8 bytes (%d refused at the share's cap): RSS %ld -> %ld KiB\n", made, refused,
	       before, mid);
	CHECK(mid - before < RSS_BOUND_KIB);
	CHECK_EQ(made + refused, 16378);
	for (uint32_t i = 0; i < 16378; i++)
		p9c_clunk(&cl, 1000 + i);
	/* Large values: the bytes held per share are capped. */
	if (have_big) {
		made = refused = 0;
		for (uint32_t i = 0; i < 4000; i++) {
			int e = p9c_xattrwalk(&cl, 2, 30000 + i, "user.big", NULL);
			made += e == 0;
			refused += e == ENOMEM || e == EMFILE;
		}
		long after = rss_kib();
		printf("  %d xattr fids of 60000 bytes (%d refused): RSS %ld -> %ld KiB\n", made, refused, mid, after);
		CHECK(after - before < RSS_BOUND_KIB);
		CHECK(refused > 0);
		CHECK_EQ(made + refused, 4000);
		for (uint32_t i = 0; i < 4000; i++)
			p9c_clunk(&cl, 30000 + i);
		/* and what was given back can be held again */
		CHECK_EQ(p9c_xattrwalk(&cl, 2, 3, "user.big", NULL), 0);
		CHECK_EQ(p9c_read(&cl, 3, 59990, 100, big), 10);
	}
	close_share();
}
TEST(xattr_fids_memory_bound) { root_and_user(xattr_memory_body); }

/* ---- finding 3: descriptors, through the device ---- */

#define REQ_AT (BUF)
#define RESP_AT (BUF + 0x20000)

/* The client's transport through virtqueue 0 of the device under test. */
static size_t queue_xfer(struct p9c *c, size_t len)
{
	memcpy(g(REQ_AT), c->req, len);
	desc(0, REQ_AT, len, 1, 1);
	desc(1, RESP_AT, 8192, 2, 0);
	uint16_t before = get_le16(g(USED + 2));
	post(0);
	if (wait_used(before + 1) < 0)
		return 0;
	size_t n = get_le32(g(USED + 4 + 8 * (before % QSIZE) + 4));
	memcpy(c->resp, g(RESP_AT), MIN(n, c->resp_cap));
	return n;
}

static int free_descriptors(int want)
{
	int got = 0, fds[256];
	while (got < want && got < 256 && (fds[got] = dup(0)) >= 0)
		got++;
	for (int i = 0; i < got; i++)
		close(fds[i]);
	return got;
}

static void descriptors_child(void)
{
	/* A soft limit below the hard one grows only as far as the shares need, not to the hard limit. */
	struct rlimit rl;
	CHECK_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
	rl.rlim_cur = 1024;
	if (rl.rlim_max < 16384 || setrlimit(RLIMIT_NOFILE, &rl)) {
		PART_SKIP("the hard descriptor limit (%llu) is too low to tell", (unsigned long long)rl.rlim_max);
	} else {
		strcpy(share, "/tmp/lkvm-9psec-XXXXXX");
		CHECK(mkdtemp(share) != NULL);
		setup_vm();
		struct p9_opts *one = vm_config_part(&vm.cfg, &virtio_9p_device, sizeof(*one));
		one->n = 1;
		one->share[0] = (struct share_opt){ .dir = share, .tag = "a" };
		CHECK_EQ(device_type_create(&vm, &virtio_9p_device), 0);
		CHECK_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
		printf("  one share: RLIMIT_NOFILE soft %llu, hard %llu\n", (unsigned long long)rl.rlim_cur,
		       (unsigned long long)rl.rlim_max);
		CHECK(rl.rlim_cur > 1024);
		CHECK(rl.rlim_cur < rl.rlim_max);
		rmdir(share);
	}

	/* Two shares and 4096 descriptors in all: fids must run out before lkvm's descriptors do. */
	rl = (struct rlimit){ 4096, 4096 };
	CHECK_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0);
	strcpy(share, "/tmp/lkvm-9psec-XXXXXX");
	CHECK(mkdtemp(share) != NULL);
	put_file(hp("f"), "x", 0644);
	setup_vm();
	struct p9_opts *two = vm_config_part(&vm.cfg, &virtio_9p_device, sizeof(*two));
	two->n = 2;
	two->share[0] = (struct share_opt){ .dir = share, .tag = "a" };
	two->share[1] = (struct share_opt){ .dir = share, .tag = "b" };
	CHECK_EQ(device_type_create(&vm, &virtio_9p_device), 0);
	CHECK_EQ(devices_start(&vm), 0);
	CHECK_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
	CHECK_EQ(rl.rlim_cur, 4096);
	struct pci_dev *p = dev_at(1);
	avail_idx = 0;
	CHECK(p && driver_init(p, 1ULL << VIRTIO_F_VERSION_1 | 1ULL << 0) == 0);
	struct p9c q = { .req = reqbuf, .resp = respbuf, .resp_cap = sizeof(respbuf), .xfer = queue_xfer };
	uint32_t msize;
	char v[32];
	CHECK_EQ(p9c_version(&q, 8192, "9P2000.L", &msize, v, sizeof(v)), 0);
	CHECK_EQ(p9c_attach(&q, 0, 0, NULL), 0);
	int made = 0, e = 0;
	for (uint32_t i = 1; i < 5000 && !(e = p9c_walk1(&q, 0, i, "f", NULL)); i++)
		made++;
	printf("  %d fids walked to a file before: %s\n", made, strerror(e));
	CHECK_EQ(e, EMFILE);
	CHECK(made >= 100);
	CHECK_EQ(free_descriptors(64), 64);	/* the rest of lkvm still has descriptors */
	/* Clunked fids give their room back. */
	for (uint32_t i = 1; i <= 10; i++)
		CHECK_EQ(p9c_clunk(&q, i), 0);
	CHECK_EQ(p9c_walk1(&q, 0, 1, "f", NULL), 0);
	nftw(share, rm_one, 16, FTW_PHYS | FTW_DEPTH);
}

/* In a child: the devices made here keep their descriptors, and a fresh table counts only ours. */
static void descriptors_body(void)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		int before = t_fail, sk = skips;
		descriptors_child();
		fflush(NULL);
		_exit(MIN(t_fail - before, 50) + 64 * (skips > sk));
	}
	int status = -1;
	CHECK_EQ(waitpid(pid, &status, 0), pid);
	CHECK(WIFEXITED(status) && (WEXITSTATUS(status) & 63) == 0);
	skips += WIFEXITED(status) && (WEXITSTATUS(status) & 64);
}
TEST(descriptors_bounded) { root_and_user(descriptors_body); }

/* ---- finding 4: mounts under the share ---- */

static void mounts_body(void)
{
	if (as_user) {
		PART_SKIP("mounting needs root");
		return;
	}
	struct share_cfg cfg = { 0 };
	if (!open_share(&cfg, 0))
		return;
	CHECK_EQ(mkdir(hp("m"), 0755), 0);
	CHECK_EQ(mkdir(hp("proc"), 0755), 0);
	put_file(hp("m/under"), "hidden by the mount", 0644);
	CHECK_EQ(mount("tmpfs", hp("m"), "tmpfs", 0, "size=1m"), 0);
	CHECK_EQ(mount("proc", hp("proc"), "proc", 0, NULL), 0);
	put_file(hp("m/inner"), "on the other mount", 0644);
	/* Default: walks stay on the share's mount; a mount point shows as an empty directory. */
	struct p9c_qid q = { 0 };
	CHECK_EQ(p9c_walk1(&cl, 0, 1, "m", &q), 0);
	CHECK_EQ(q.type, P9_QTDIR);
	const char *in[] = { "m", "inner" };
	int n;
	CHECK_EQ(p9c_walk(&cl, 0, 2, 2, in, NULL, &n), 0);
	CHECK_EQ(n, 1);	/* partial: "inner" is not there */
	CHECK_EQ(p9c_walk1(&cl, 0, 3, NULL, NULL), 0);
	CHECK(p9c_lcreate(&cl, 1, "planted", P9_DOTL_WRONLY, 0644, 0, NULL) != 0);
	CHECK_EQ(access(hp("m/planted"), F_OK), -1);
	CHECK_EQ(p9c_lopen(&cl, 1, 0), 0);
	p9c_msg(&cl, P9_TREADDIR); p9c_32(&cl, 1); p9c_64(&cl, 0); p9c_32(&cl, 4096);
	CHECK_EQ(p9c_rpc(&cl), 0);
	CHECK_EQ(p9c_r32(&cl), 0);	/* empty */
	p9_server_free(cl.srv);

	/* xdev: ordinary mounts are crossed, kernel pseudo-filesystems never. */
	cfg.xdev = true;
	cl.srv = server_for(share, &cfg);
	uint32_t msize;
	char v[32];
	CHECK_EQ(p9c_version(&cl, 65536, "9P2000.L", &msize, v, sizeof(v)), 0);
	CHECK_EQ(p9c_attach(&cl, 0, 0, NULL), 0);
	CHECK_EQ(p9c_walk(&cl, 0, 2, 2, in, NULL, &n), 0);
	CHECK_EQ(n, 2);
	CHECK_EQ(p9c_lopen(&cl, 2, 0), 0);
	char buf[64] = { 0 };
	CHECK_EQ(p9c_read(&cl, 2, 0, sizeof(buf), buf), 18);
	/* A snapshot finds the file's path across the mount point (its d_ino is the covered folder's). */
	char sp[] = "/tmp/lkvm-test-9pmnt-XXXXXX";
	int sfd = mkstemp(sp);
	unlink(sp);
	struct snap_writer *w = snap_writer_new(sfd, sp);
	snap_begin(w, "p9", 1);
	CHECK_EQ(p9_server_save(cl.srv, w), 0);
	CHECK_EQ(snap_end(w), 0);
	CHECK_EQ(snap_writer_close(w), 0);
	struct stat sst;
	fstat(sfd, &sst);
	uint8_t *sb = xcalloc(1, sst.st_size);
	CHECK_EQ(pread(sfd, sb, sst.st_size, 0), (ssize_t)sst.st_size);
	close(sfd);
	p9_server_free(cl.srv);
	cl.srv = server_for(share, &cfg);
	struct snap_reader *sr = snap_reader_new(sb, sst.st_size, "t");
	CHECK(sr && !snap_open(sr, "p9", 1) && p9_server_load(cl.srv, sr) == 0);
	snap_reader_free(sr);
	free(sb);
	memset(buf, 0, sizeof(buf));
	CHECK_EQ(p9c_read(&cl, 2, 0, sizeof(buf), buf), 18);
	CHECK(!memcmp(buf, "on the other mount", 18));
	const char *pr[] = { "proc", "self", "status" };
	CHECK_EQ(p9c_walk(&cl, 0, 3, 3, pr, NULL, &n), 0);
	CHECK_EQ(n, 1);	/* into /proc: refused */
	CHECK_EQ(p9c_walk1(&cl, 0, 4, "proc", NULL), 0);
	CHECK_EQ(p9c_lopen(&cl, 4, 0), 0);
	p9c_msg(&cl, P9_TREADDIR); p9c_32(&cl, 4); p9c_64(&cl, 0); p9c_32(&cl, 4096);
	CHECK_EQ(p9c_rpc(&cl), 0);
	CHECK_EQ(p9c_r32(&cl), 0);
	p9_server_free(cl.srv);
	cl.srv = NULL;
	CHECK_EQ(umount2(hp("proc"), MNT_DETACH), 0);
	CHECK_EQ(umount2(hp("m"), MNT_DETACH), 0);
	close_share();
}
TEST(mounts_not_crossed) { root_and_user(mounts_body); }

/* ---- the mapped model ---- */

/* Every object under the share is the runner's, 0600 or 0700, and no symlink or special file. */
static int foreign_objects;
static int owned_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	bool ok = st->st_uid == geteuid() && ((S_ISREG(st->st_mode) && (st->st_mode & 07777) == 0600) ||
					      (S_ISDIR(st->st_mode) && (st->st_mode & 07777) == 0700) ||
					      ftw->level == 0);
	if (!ok) {
		fprintf(stderr, "FAIL %s: the host has %s, mode %o, owner %u\n", t_name, path, st->st_mode, st->st_uid);
		foreign_objects++;
	}
	return 0;
}

static void mapped_body(void)
{
	struct share_cfg cfg = { .mapped = true };
	if (!open_share(&cfg, 0))
		return;
	if (setxattr(share, "user.probe", "1", 1, 0)) {
		PART_SKIP("no user xattrs on %s: %s", share, strerror(errno));
		close_share();
		return;
	}
	removexattr(share, "user.probe");
	struct p9c_attr a = { 0 };
	struct p9c_qid q = { 0 };
	/* A root guest creates, chowns and chmods as it likes: it sees what it set. */
	CHECK_EQ(p9c_walk1(&cl, 0, 1, NULL, NULL), 0);
	CHECK_EQ(p9c_lcreate(&cl, 1, "f", P9_DOTL_RDWR, 04755, 0, NULL), 0);
	CHECK_EQ(p9c_write(&cl, 1, 0, "data", 4), 4);
	CHECK_EQ(p9c_getattr(&cl, 1, &a), 0);
	CHECK_EQ(a.mode, S_IFREG | 04755);
	CHECK_EQ(a.uid, 0);
	CHECK_EQ(a.size, 4);
	CHECK_EQ(p9c_setattr(&cl, 1, P9_SETATTR_UID | P9_SETATTR_GID, 0, 1234, 5678, 0, 0, 0), 0);
	CHECK_EQ(p9c_setattr(&cl, 1, P9_SETATTR_MODE, 06711, 0, 0, 0, 0, 0), 0);
	CHECK_EQ(p9c_getattr(&cl, 1, &a), 0);
	CHECK_EQ(a.mode, S_IFREG | 06711);
	CHECK_EQ(a.uid, 1234);
	CHECK_EQ(a.gid, 5678);
	CHECK_EQ(host_mode(hp("f")), S_IFREG | 0600);
	struct stat st;
	CHECK_EQ(stat(hp("f"), &st), 0);
	CHECK_EQ(st.st_uid, geteuid());
	CHECK_EQ(st.st_size, 4);
	CHECK_EQ(p9c_mkdir(&cl, 0, "d", 03777, 42, &q), 0);
	CHECK_EQ(q.type, P9_QTDIR);
	CHECK_EQ(host_mode(hp("d")), S_IFDIR | 0700);
	CHECK_EQ(p9c_walk1(&cl, 0, 2, "d", NULL), 0);
	CHECK_EQ(p9c_getattr(&cl, 2, &a), 0);
	CHECK_EQ(a.mode, S_IFDIR | 03777);
	CHECK_EQ(a.gid, 42);
	/* Device nodes, fifos and sockets: the guest's, regular files on the host, never opened. */
	CHECK_EQ(p9c_mknod(&cl, 2, "null", S_IFCHR | 0666, 1, 3, 0), 0);
	CHECK_EQ(p9c_mknod(&cl, 2, "disk", S_IFBLK | 0660, 8, 0, 6), 0);
	CHECK_EQ(p9c_mknod(&cl, 2, "fifo", S_IFIFO | 0600, 0, 0, 0), 0);
	CHECK_EQ(p9c_mknod(&cl, 2, "sock", S_IFSOCK | 0755, 0, 0, 0), 0);
	CHECK_EQ(p9c_walk1(&cl, 2, 3, "null", NULL), 0);
	CHECK_EQ(p9c_getattr(&cl, 3, &a), 0);
	CHECK_EQ(a.mode, S_IFCHR | 0666);
	CHECK_EQ(a.rdev, makedev(1, 3));
	CHECK_EQ(p9c_lopen(&cl, 3, P9_DOTL_RDWR), EOPNOTSUPP);
	CHECK_EQ(p9c_walk1(&cl, 2, 4, "disk", NULL), 0);
	CHECK_EQ(p9c_getattr(&cl, 4, &a), 0);
	CHECK_EQ(a.mode, S_IFBLK | 0660);
	CHECK_EQ(a.rdev, makedev(8, 0));
	CHECK_EQ(a.gid, 6);
	CHECK_EQ(host_mode(hp("d/null")), S_IFREG | 0600);
	CHECK_EQ(host_mode(hp("d/fifo")), S_IFREG | 0600);
	CHECK_EQ(host_mode(hp("d/sock")), S_IFREG | 0600);
	/* Symlinks: a file holding the target; the guest sees a symlink and nothing follows it. */
	CHECK_EQ(p9c_symlink(&cl, 0, "l", "/etc/passwd", 0, &q), 0);
	CHECK_EQ(q.type, P9_QTSYMLINK);
	CHECK_EQ(host_mode(hp("l")), S_IFREG | 0600);
	CHECK_EQ(p9c_walk1(&cl, 0, 5, "l", &q), 0);
	CHECK_EQ(q.type, P9_QTSYMLINK);
	CHECK_EQ(p9c_getattr(&cl, 5, &a), 0);
	CHECK_EQ(a.mode, S_IFLNK | 0777);
	char target[64] = "";
	CHECK_EQ(p9c_readlink(&cl, 5, target, sizeof(target)), 0);
	CHECK(!strcmp(target, "/etc/passwd"));
	CHECK_EQ(p9c_lopen(&cl, 5, 0), ELOOP);
	CHECK_EQ(p9c_setattr(&cl, 5, P9_SETATTR_UID, 0, 77, 0, 0, 0, 0), 0);	/* lchown works */
	CHECK_EQ(p9c_getattr(&cl, 5, &a), 0);
	CHECK_EQ(a.uid, 77);
	const char *through[] = { "l", "x" };
	int n;
	CHECK_EQ(p9c_walk(&cl, 0, 6, 2, through, NULL, &n), 0);
	CHECK_EQ(n, 1);
	/* The record is not the guest's to read or forge. */
	char buf[1024];
	long len = p9c_getxattr(&cl, 1, 7, "", buf, sizeof(buf));
	CHECK_EQ(len, 0);
	CHECK_EQ(p9c_getxattr(&cl, 1, 7, "user.lkvm.mode", buf, sizeof(buf)), -ENODATA);
	CHECK_EQ(p9c_setxattr(&cl, 1, 7, "user.lkvm.uid", "\0\0\0\0", 4), EPERM);
	CHECK_EQ(p9c_setxattr(&cl, 1, 7, "user.mine", "v", 1), 0);
	CHECK_EQ(p9c_getxattr(&cl, 1, 7, "user.mine", buf, sizeof(buf)), 1);
	CHECK_EQ(p9c_getattr(&cl, 1, &a), 0);
	CHECK_EQ(a.uid, 1234);
	/* What the host made keeps the host's attributes. */
	put_file(hp("hostfile"), "h", 0644);
	CHECK_EQ(p9c_walk1(&cl, 0, 8, "hostfile", NULL), 0);
	CHECK_EQ(p9c_getattr(&cl, 8, &a), 0);
	CHECK_EQ(a.mode, S_IFREG | 0644);
	CHECK_EQ(a.uid, geteuid());
	CHECK_EQ(p9c_setattr(&cl, 8, P9_SETATTR_MODE, 04777, 0, 0, 0, 0, 0), 0);
	CHECK_EQ(host_mode(hp("hostfile")), S_IFREG | 0644);
	CHECK_EQ(p9c_getattr(&cl, 8, &a), 0);
	CHECK_EQ(a.mode, S_IFREG | 04777);
	unlink(hp("hostfile"));
	/* The root stays the host's. */
	CHECK_EQ(p9c_setattr(&cl, 0, P9_SETATTR_MODE, 0777, 0, 0, 0, 0, 0), EPERM);
	CHECK_EQ(privileged_objects(), 0);
	foreign_objects = 0;
	nftw(share, owned_one, 16, FTW_PHYS);
	CHECK_EQ(foreign_objects, 0);
	close_share();
}
TEST(mapped_model) { root_and_user(mapped_body); }

/* Parts of the tests above that could not run here (as a user: mknod, trusted.*, mounts) count as one skip. */
TEST(zz_parts_skipped)
{
	if (skips) {
		test_skip("%d parts of the tests above could not run here (each named above)", skips);
		return;
	}
	CHECK_EQ(skips, 0);
}

TEST_MAIN()
