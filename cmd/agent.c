/*
 * lkvm's agent inside a sandbox guest (docs/agent-protocol.md): the guest's
 * init, PID 1, started by the kernel as `lkvm sandbox-init` (this binary, on
 * the host's / shared read-only). It connects to the host over vsock, takes
 * SETUP (mounts, overlay, network) and the EXEC of the sandbox's command,
 * then serves lkvm exec's sessions on AGENT_PORT_EXEC until that command
 * ends, and powers the VM off.
 *
 * Each session is a process of its own: it starts the command in a new
 * session (its process group is what signals reach), with pipes for stdin,
 * stdout and stderr (or one pty with a terminal), and relays them as frames
 * without ever blocking on one side while the other waits.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/random.h>
#include <linux/vm_sockets.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include "agent_proto.h"
#include "commands.h"
#include "scratch.h"
#include "util.h"

#define SCRATCH_TAG "lkvm-scratch"
#define CWD_TAG "lkvm-cwd"
#define DEBUG_EXIT_PORT 0xf4
#define P9_OPTS "trans=virtio,version=9p2000.L,msize=262144"
#define OUTQ_MAX (256 * 1024)	/* frames toward the host before the command's output waits */
#define AGENT_CONNECT_S 60	/* a connect to the host: the kernel's own 2 s is short for a loaded nested machine */

static char agent_error[512];

static int fail(const char *fmt, ...) PRINTF(1, 2);
static int fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(agent_error, sizeof(agent_error), fmt, ap);
	va_end(ap);
	return -1;
}

/* The status leaves through lkvm's debug-exit port too: /dev/port, else ioperm. */
static void power_off(int status)
{
	unsigned char b = status & 0xff;
	sync();
	int fd = open("/dev/port", O_WRONLY);
	if (fd < 0 || pwrite(fd, &b, 1, DEBUG_EXIT_PORT) != 1) {
		if (ioperm(DEBUG_EXIT_PORT, 1, 1) == 0)
			outb(b, DEBUG_EXIT_PORT);
	}
	reboot(RB_POWER_OFF);
	_exit(status);
}

static int write_all(int fd, const void *p, size_t n)
{
	for (size_t d = 0; d < n;) {
		ssize_t w = write(fd, (const char *)p + d, n - d);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		d += w;
	}
	return 0;
}

static int send_frame(int fd, uint8_t type, const void *p, uint32_t len)
{
	uint8_t h[AGENT_HDR];
	agent_hdr(h, type, len);
	return write_all(fd, h, sizeof(h)) < 0 || (len && write_all(fd, p, len) < 0) ? -1 : 0;
}

static int read_exact(int fd, void *p, size_t n)
{
	for (size_t d = 0; d < n;) {
		ssize_t r = read(fd, (char *)p + d, n - d);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		d += r;
	}
	return 0;
}

/* One whole frame, reading nothing past it (what follows belongs to the session). */
static int read_frame(int fd, uint8_t *type, uint8_t **payload, uint32_t *len)
{
	uint8_t h[AGENT_HDR];
	if (read_exact(fd, h, sizeof(h)) < 0)
		return -1;
	*len = h[0] | h[1] << 8 | h[2] << 16 | (uint32_t)h[3] << 24;
	*type = h[4];
	uint32_t max = agent_max_payload(*type, false);
	if (!max || *len > max)
		return -1;
	*payload = malloc(*len + 1);
	if (!*payload || read_exact(fd, *payload, *len) < 0)
		return -1;
	(*payload)[*len] = 0;
	return 0;
}

/* Wait (a few seconds at most) for the host to close: what was sent has reached it. */
static void linger_close(int fd)
{
	shutdown(fd, SHUT_WR);
	char b[4096];
	struct pollfd p = { .fd = fd, .events = POLLIN };
	while (poll(&p, 1, 5000) > 0 && read(fd, b, sizeof(b)) > 0) {}
	close(fd);
}

/* ---- SETUP: the file systems and the network ---- */

static int mkdir_p(const char *path)
{
	char d[PATH_MAX];
	if (snprintf(d, sizeof(d), "%s", path) >= (int)sizeof(d))
		return -1;
	for (char *p = d + 1; (p = strchr(p, '/')); p++) {
		*p = 0;
		mkdir(d, 0755);
		*p = '/';
	}
	return mkdir(d, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

static bool has_fs(const char *name)
{
	FILE *f = fopen("/proc/filesystems", "r");
	char line[128];
	bool found = false;
	while (f && fgets(line, sizeof(line), f)) {
		char *t = strrchr(line, '\t');
		line[strcspn(line, "\n")] = 0;
		if (t && !strcmp(t + 1, name))
			found = true;
	}
	if (f)
		fclose(f);
	return found;
}

/* overlayfs: the read-only root as the lower layer, a tmpfs as the upper; then it becomes /. */
static int overlay_root(void)
{
	if (!has_fs("overlay"))
		return fail("the kernel lacks overlayfs (CONFIG_OVERLAY_FS), which --overlay needs (--no-overlay runs without)");
	if (mount("lkvm-overlay", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0)
		return fail("tmpfs for the overlay: %s", strerror(errno));
	mkdir("/tmp/upper", 0755);
	mkdir("/tmp/work", 0755);
	mkdir("/tmp/root", 0755);
	if (mount("overlay", "/tmp/root", "overlay", 0, "lowerdir=/,upperdir=/tmp/upper,workdir=/tmp/work") < 0)
		return fail("mounting the overlay over /: %s", strerror(errno));
	static const char *const moved[] = { "/proc", "/sys", "/dev" };
	for (int i = 0; i < 3; i++) {
		char to[64];
		snprintf(to, sizeof(to), "/tmp/root%s", moved[i]);
		if (mount(moved[i], to, NULL, MS_MOVE, NULL) < 0)
			return fail("moving %s onto the overlay: %s", moved[i], strerror(errno));
	}
	if (chdir("/tmp/root") < 0 || mount(".", "/", NULL, MS_MOVE, NULL) < 0 || chroot(".") < 0 || chdir("/") < 0)
		return fail("switching to the overlay root: %s", strerror(errno));
	return 0;
}

static int if_up(int s, const char *name, const char *addr, const char *mask)
{
	struct ifreq ifr = { 0 };
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
	struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
	if (addr) {
		sin->sin_family = AF_INET;
		inet_pton(AF_INET, addr, &sin->sin_addr);
		if (ioctl(s, SIOCSIFADDR, &ifr) < 0)
			return -1;
		inet_pton(AF_INET, mask, &sin->sin_addr);
		if (ioctl(s, SIOCSIFNETMASK, &ifr) < 0)
			return -1;
	}
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		return -1;
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	return ioctl(s, SIOCSIFFLAGS, &ifr);
}

/* User-mode networking's fixed plan (include/net_user.h): 10.0.2.15/24, router .2, DNS .3. */
static int setup_net(bool overlay)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return 0;	/* a kernel without IPv4: nothing to configure */
	if_up(s, "lo", NULL, NULL);
	struct stat st;
	int r = 0;
	if (stat("/sys/class/net/eth0", &st) == 0) {
		struct rtentry rt = { 0 };
		struct sockaddr_in *gw = (struct sockaddr_in *)&rt.rt_gateway, *dst = (struct sockaddr_in *)&rt.rt_dst,
				   *mask = (struct sockaddr_in *)&rt.rt_genmask;
		gw->sin_family = dst->sin_family = mask->sin_family = AF_INET;
		inet_pton(AF_INET, "10.0.2.2", &gw->sin_addr);
		rt.rt_flags = RTF_UP | RTF_GATEWAY;
		if (if_up(s, "eth0", "10.0.2.15", "255.255.255.0") < 0 || ioctl(s, SIOCADDRT, &rt) < 0)
			r = fail("configuring eth0 (10.0.2.15/24 via 10.0.2.2): %s", strerror(errno));
		else if (overlay) {
			unlink("/etc/resolv.conf");	/* often a symlink into the host's /run */
			int fd = open("/etc/resolv.conf", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0644);
			if (fd < 0 || write_all(fd, "nameserver 10.0.2.3\n", 20) < 0)
				r = fail("writing /etc/resolv.conf: %s", strerror(errno));
			if (fd >= 0)
				close(fd);
		}
	}
	close(s);
	return r;
}

static int mount_9p(const char *tag, const char *at, unsigned long flags, bool overlay)
{
	if (mkdir_p(at) < 0)
		return fail("cannot make %s in the guest%s: %s", at, overlay ? "" : " (its root is read-only without --overlay)",
			    strerror(errno));
	if (mount(tag, at, "9p", flags | MS_NOSUID | MS_NODEV, P9_OPTS) < 0)
		return fail("mounting %s on %s: %s", tag, at, strerror(errno));
	return 0;
}

static int copy_file(const char *from, const char *to)
{
	int in = open(from, O_RDONLY), out = in < 0 ? -1 : open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	char b[65536];
	ssize_t n;
	while (out >= 0 && (n = read(in, b, sizeof(b))) > 0)
		write_all(out, b, n);
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	return out >= 0 ? 0 : -1;
}

/*
 * --kdir: the modules a tree (or an out-of-tree module's folder) built, as
 * /lib/modules/$(uname -r): its modules.order names the .ko files (relative,
 * or absolute under the host's path of the tree), each linked under kernel/
 * to the shared tree, then depmod (the host's, on the shared root) indexes them.
 */
#define KDIR_AT "/run/lkvm-kdir"
static int setup_kdir(const char *rec)
{
	char tag[64], base[PATH_MAX], line[PATH_MAX], path[2 * PATH_MAX + 64];
	int hp = 0;
	if (sscanf(rec, "%63s %n", tag, &hp) != 1 || !hp || rec[hp] != '/')
		return fail("bad kernel tree record");
	const char *host_path = rec + hp;
	size_t hl = strlen(host_path);
	if (mount_9p(tag, KDIR_AT, MS_RDONLY, true) < 0)
		return -1;
	struct utsname u;
	uname(&u);
	snprintf(base, sizeof(base), "/lib/modules/%s", u.release);
	if (mkdir_p(base) < 0 && (mount("tmpfs", "/lib/modules", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0 ||
				  mkdir_p(base) < 0))
		return fail("--kdir: cannot make %s: %s", base, strerror(errno));
	FILE *f = fopen(KDIR_AT "/modules.order", "r");
	snprintf(path, sizeof(path), "%s/modules.order", base);
	FILE *o = fopen(path, "w");
	if (!f || !o)
		return fail("--kdir: modules.order: %s", strerror(errno));
	int n = 0;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		char *rel = line;
		if (rel[0] == '/') {	/* an out-of-tree build names its modules by their host path */
			if (strncmp(rel, host_path, hl) || rel[hl] != '/')
				continue;
			rel += hl + 1;
		}
		size_t l = strlen(rel);
		if (l > 2 && !strcmp(rel + l - 2, ".o"))	/* newer kernels list the objects */
			strcpy(rel + l - 2, ".ko");
		if (!*rel || strstr(rel, "..") || strlen(rel) < 4 || strcmp(rel + strlen(rel) - 3, ".ko"))
			continue;
		snprintf(path, sizeof(path), "%s/kernel/%s", base, rel);
		char *slash = strrchr(path, '/');
		*slash = 0;
		mkdir_p(path);
		*slash = '/';
		char target[PATH_MAX + 32];
		snprintf(target, sizeof(target), KDIR_AT "/%s", rel);
		unlink(path);
		if (symlink(target, path) == 0) {
			fprintf(o, "kernel/%s\n", rel);
			n++;
		}
	}
	fclose(f);
	fclose(o);
	static const char *const extra[] = { "modules.builtin", "modules.builtin.modinfo" };
	for (int i = 0; i < 2; i++) {
		char from[PATH_MAX];
		snprintf(from, sizeof(from), KDIR_AT "/%s", extra[i]);
		snprintf(path, sizeof(path), "%s/%s", base, extra[i]);
		if (access(from, R_OK) == 0)
			copy_file(from, path);
	}
	pid_t pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		dup2(null, 1);
		setenv("PATH", "/usr/sbin:/sbin:/usr/bin:/bin", 1);
		execlp("depmod", "depmod", "-a", u.release, (char *)NULL);
		_exit(127);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		return fail("--kdir: depmod -a %s failed (status %d%s)", u.release, WIFEXITED(st) ? WEXITSTATUS(st) : -1,
			    WIFEXITED(st) && WEXITSTATUS(st) == 127 ? ": no depmod on the host; install kmod" : "");
	if (!n)
		return fail("--kdir: modules.order names no module of the tree");
	return 0;
}

/*
 * The host's bytes into the guest's pool, credited, and a new CRNG key from
 * it at once: VMs restored from one snapshot started with the same pool.
 */
static int reseed(const char *hex)
{
	struct { int entropy_count, buf_size; unsigned char buf[AGENT_SEED_BYTES]; } e = {
		.entropy_count = AGENT_SEED_BYTES * 8, .buf_size = AGENT_SEED_BYTES };
	for (int i = 0; i < AGENT_SEED_BYTES; i++) {
		unsigned v;
		if (sscanf(hex + 2 * i, "%2x", &v) != 1)
			return fail("bad seed record");
		e.buf[i] = v;
	}
	if (strlen(hex) != 2 * AGENT_SEED_BYTES)
		return fail("bad seed record");
	int u = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
	int r = u < 0 || ioctl(u, RNDADDENTROPY, &e) < 0 || ioctl(u, RNDRESEEDCRNG) < 0 ? -1 : 0;
	int err = errno;
	if (u >= 0)
		close(u);
	memset(&e, 0, sizeof(e));
	return r < 0 ? fail("reseeding the random pool: %s", strerror(err)) : 0;
}

/*
 * lkvm oci: the container's root share becomes / (with a tmpfs overlay when
 * it is read-only, so its mount points can be made, then / is remounted
 * read-only). The boot root (lkvm and its libraries) stays below, unreachable
 * but for a chroot escape, which finds nothing else of the host there.
 */
static int container_root(const char *rec, bool *ro)
{
	char tag[64], mode[4];
	if (sscanf(rec, "%63s %3s", tag, mode) != 2 || (strcmp(mode, "ro") && strcmp(mode, "rw")))
		return fail("bad root record");
	*ro = !strcmp(mode, "ro");
	if (mount("lkvm-oci", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700") < 0)
		return fail("tmpfs for the container's root: %s", strerror(errno));
	mkdir("/tmp/lower", 0755);
	if (mount(tag, "/tmp/lower", "9p", *ro ? MS_RDONLY : 0, P9_OPTS) < 0)
		return fail("mounting the container's root (%s): %s", tag, strerror(errno));
	const char *root = "/tmp/lower";
	if (*ro) {
		if (!has_fs("overlay"))
			return fail("the kernel lacks overlayfs (CONFIG_OVERLAY_FS), which a read-only container root needs");
		mkdir("/tmp/upper", 0755);
		mkdir("/tmp/work", 0755);
		mkdir("/tmp/root", 0755);
		if (mount("overlay", "/tmp/root", "overlay", 0, "lowerdir=/tmp/lower,upperdir=/tmp/upper,workdir=/tmp/work") < 0)
			return fail("the overlay over the container's root: %s", strerror(errno));
		root = "/tmp/root";
	}
	char to[64];
	snprintf(to, sizeof(to), "%s/dev", root);
	mkdir(to, 0755);
	if (mount("/dev", to, NULL, MS_MOVE, NULL) < 0)	/* devtmpfs: /dev/null and friends */
		return fail("moving /dev into the container's root: %s", strerror(errno));
	if (chdir(root) < 0 || mount(".", "/", NULL, MS_MOVE, NULL) < 0 || chroot(".") < 0 || chdir("/") < 0)
		return fail("switching to the container's root: %s", strerror(errno));
	return 0;
}

/* "TYPE FLAGS DATA PATH": proc, sysfs, tmpfs, devpts, mqueue as the config asked. */
static int guest_mount(const char *rec)
{
	char type[32], data[1024];
	unsigned long flags;
	int n = 0;
	if (sscanf(rec, "%31s %lu %1023s %n", type, &flags, data, &n) != 3 || !n || rec[n] != '/')
		return fail("bad mount record");
	const char *path = rec + n;
	if (!strcmp(type, "tmpfs") && !strcmp(path, "/dev"))
		return 0;	/* the devtmpfs moved there already holds the device nodes */
	if (mkdir_p(path) < 0)
		return fail("cannot make the mount point %s in the container: %s", path, strerror(errno));
	if (mount(type, path, type, flags, strcmp(data, "-") ? data : NULL) < 0) {
		if (errno == ENODEV && !strcmp(type, "mqueue"))
			return 0;	/* a kernel without POSIX message queues */
		return fail("mounting %s on %s: %s", type, path, strerror(errno));
	}
	return 0;
}

/* "MODE PATH\nCONTENT": a host file the config binds, copied (a snapshot, not a live view). */
static int guest_file(const char *rec)
{
	unsigned mode;
	int n = 0;
	const char *nl = strchr(rec, '\n');
	if (!nl || sscanf(rec, "%o %n", &mode, &n) != 1 || !n || rec[n] != '/' || nl - (rec + n) >= PATH_MAX)
		return fail("bad file record");
	char path[PATH_MAX], dir[PATH_MAX];
	snprintf(path, sizeof(path), "%.*s", (int)(nl - (rec + n)), rec + n);
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = 0;
		mkdir_p(dir);
	}
	unlink(path);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode & 07777);
	if (fd < 0 || write_all(fd, nl + 1, strlen(nl + 1)) < 0) {
		if (fd >= 0)
			close(fd);
		return fail("writing %s in the container: %s", path, strerror(errno));
	}
	close(fd);
	return 0;
}

static int do_setup(const uint8_t *p, uint32_t len)
{
	uint32_t off = 0;
	char tag;
	const char *t;
	bool overlay = false, net = false, oci = false, ro = false;
	for (int r; (r = agent_rec_next(p, len, &off, &tag, &t)) > 0;)
		if (tag == REC_OVERLAY)
			overlay = true;
		else if (tag == REC_NET)
			net = true;
		else if (tag == REC_SEED && reseed(t) < 0)
			return -1;
		else if (tag == REC_ROOT) {
			if (oci || container_root(t, &ro) < 0)
				return oci ? fail("two root records") : -1;
			oci = overlay = true;	/* mount points can be made */
		}
	if (overlay && !oci && overlay_root() < 0)
		return -1;
	if (!oci) {
		if (mount(SCRATCH_TAG, "/tmp", "9p", MS_NOSUID | MS_NODEV, P9_OPTS) < 0)
			return fail("mounting the scratch folder on /tmp: %s", strerror(errno));
		mkdir("/dev/pts", 0755);
		mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "ptmxmode=0666,mode=0620");
		mkdir("/dev/shm", 01777);
		mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
		mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
	}
	off = 0;
	for (int r; (r = agent_rec_next(p, len, &off, &tag, &t)) > 0;) {
		if (tag == REC_CWDSHARE && mount_9p(CWD_TAG, t, MS_RDONLY, overlay) < 0)
			return -1;
		if (tag == REC_VOLUME) {
			char vtag[64], mode[4];
			int n = 0;
			if (sscanf(t, "%63s %3s %n", vtag, mode, &n) != 2 || !n || t[n] != '/')
				return fail("bad volume record");
			if (mount_9p(vtag, t + n, strcmp(mode, "ro") ? 0 : MS_RDONLY, overlay) < 0)
				return -1;
		}
		if (tag == REC_KDIR && setup_kdir(t) < 0)
			return -1;
		if (tag == REC_MOUNT && oci && guest_mount(t) < 0)
			return -1;
		if (tag == REC_FILE && oci && guest_file(t) < 0)
			return -1;
		if (tag == REC_MKDIR && oci && t[0] == '/' && mkdir_p(t) < 0)
			return fail("cannot make the working directory %s in the container: %s", t, strerror(errno));
		if (tag == REC_HOSTNAME && sethostname(t, strlen(t)) < 0)
			return fail("hostname %s: %s", t, strerror(errno));
	}
	/* resolv.conf is written on an overlay only: a container's writable root is the host's folder */
	if (net && setup_net(overlay && (!oci || ro)) < 0)
		return -1;
	if (oci && ro && mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0)
		return fail("making the container's root read-only: %s", strerror(errno));
	return 0;
}

/* ---- one session: a command and its stdio ---- */

struct cmd {
	char *argv[4096];
	char *env[4096];
	int argc, envc;
	const char *cwd;
	long uid, gid;
	gid_t groups[256];
	int ngroups;
	bool tty;
	struct winsize ws;
	struct { int res; struct rlimit lim; } rlim[RLIM_NLIMITS];
	int nrlim;
};

static int parse_exec(uint8_t *p, uint32_t len, struct cmd *c)
{
	memset(c, 0, sizeof(*c));
	c->uid = c->gid = -1;
	uint32_t off = 0;
	char tag;
	const char *t;
	int r;
	while ((r = agent_rec_next(p, len, &off, &tag, &t)) > 0) {
		switch (tag) {
		case REC_ARG: if (c->argc < 4095) c->argv[c->argc++] = (char *)t; break;
		case REC_ENV: if (c->envc < 4095) c->env[c->envc++] = (char *)t; break;
		case REC_CWD: c->cwd = t; break;
		case REC_UID: c->uid = atol(t); break;
		case REC_GID: c->gid = atol(t); break;
		case REC_GROUP: if (c->ngroups < 256) c->groups[c->ngroups++] = atol(t); break;
		case REC_RLIMIT: {
			unsigned long long soft, hard;
			int res;
			if (sscanf(t, "%d %llu %llu", &res, &soft, &hard) == 3 && res >= 0 && res < RLIM_NLIMITS &&
			    c->nrlim < RLIM_NLIMITS) {
				c->rlim[c->nrlim].res = res;
				c->rlim[c->nrlim].lim.rlim_cur = soft;
				c->rlim[c->nrlim++].lim.rlim_max = hard;
			}
			break;
		}
		case REC_TTY: {
			unsigned rows = 24, cols = 80;
			sscanf(t, "%u %u", &rows, &cols);
			c->tty = true;
			c->ws.ws_row = rows;
			c->ws.ws_col = cols;
			break;
		}
		}
	}
	if (r < 0 || !c->argc)
		return fail("EXEC without a command");
	return 0;
}

/* In the command's process: its session, terminal, ids, folder, environment, then exec. */
static void start_command(struct cmd *c, int in, int out, int err, const sigset_t *mask)
{
	setsid();
	if (c->tty)
		ioctl(in, TIOCSCTTY, 0);
	dup2(in, 0); dup2(out, 1); dup2(err, 2);
	for (int fd = 3; fd < 1024; fd++)
		close(fd);
	signal(SIGPIPE, SIG_DFL);
	sigprocmask(SIG_SETMASK, mask, NULL);
	const char *cwd = c->cwd ? c->cwd : "/";
	if (chdir(cwd) < 0 && (mkdir_p(cwd) < 0 || chdir(cwd) < 0)) {
		fprintf(stderr, "lkvm: working directory %s: %s\n", cwd, strerror(errno));
		_exit(126);
	}
	for (int i = 0; i < c->nrlim; i++)
		if (setrlimit(c->rlim[i].res, &c->rlim[i].lim) < 0) {
			fprintf(stderr, "lkvm: resource limit %d (%llu %llu): %s\n", c->rlim[i].res,
				(unsigned long long)c->rlim[i].lim.rlim_cur, (unsigned long long)c->rlim[i].lim.rlim_max,
				strerror(errno));
			_exit(126);
		}
	if (c->uid >= 0) {
		if (setgroups(c->ngroups, c->groups) < 0 || setgid(c->gid) < 0 || setuid(c->uid) < 0) {
			fprintf(stderr, "lkvm: running as uid %ld gid %ld: %s\n", c->uid, c->gid, strerror(errno));
			_exit(126);
		}
	}
	clearenv();
	for (int i = 0; i < c->envc; i++)
		putenv(c->env[i]);
	if (!getenv("PATH"))
		setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 1);
	execvp(c->argv[0], c->argv);
	fprintf(stderr, "lkvm: %s: %s\n", c->argv[0], strerror(errno));
	_exit(errno == ENOENT ? 127 : 126);
}

struct sess {
	int sock, sfd;
	struct agent_buf q;	/* frames toward the host */
	size_t qoff;
	struct agent_buf in;	/* stdin for the command */
	size_t inoff;
	bool in_eof;
	int in_fd, pty;		/* the command's stdin (pipe or pty master); the master when a terminal */
	pid_t pid;
};

static void squeue(struct sess *s, uint8_t type, const void *p, uint32_t len)
{
	uint8_t h[AGENT_HDR];
	agent_hdr(h, type, len);
	if (s->qoff == s->q.len)
		s->q.len = s->qoff = 0;
	if (agent_buf_put(&s->q, h, sizeof(h)) < 0 || (len && agent_buf_put(&s->q, p, len) < 0))
		_exit(125);
}

static int on_host_frame(void *ctx, uint8_t type, const uint8_t *p, uint32_t len)
{
	struct sess *s = ctx;
	switch (type) {
	case AGENT_STDIN:
		if (!len)
			s->in_eof = true;
		else if (s->in.len - s->inoff + len > 2 * AGENT_STDIN_WINDOW)
			return err_set("stdin past the window");
		else if (s->in_fd >= 0 && agent_buf_put(&s->in, p, len) < 0)
			return -1;
		else if (s->in_fd < 0) {	/* nobody reads: acknowledged at once */
			uint8_t a[4] = { len, len >> 8, len >> 16, len >> 24 };
			squeue(s, AGENT_ACK, a, 4);
		}
		return 0;
	case AGENT_SIGNAL:
		if (len == 4 && s->pid > 0) {
			int sig = p[0] | p[1] << 8;
			if (sig > 0 && sig < 65)
				kill(-s->pid, sig);
		}
		return 0;
	case AGENT_WINSIZE:
		if (len == 4 && s->pty >= 0) {
			struct winsize ws = { .ws_row = p[0] | p[1] << 8, .ws_col = p[2] | p[3] << 8 };
			ioctl(s->pty, TIOCSWINSZ, &ws);
		}
		return 0;
	}
	return err_set("unexpected frame %u", type);
}

/* Runs a session to its end in this (forked) process; returns the command's status. */
int agent_guest_session(int sock, uint8_t *exec, uint32_t len)
{
	struct cmd c;
	if (parse_exec(exec, len, &c) < 0) {
		send_frame(sock, AGENT_ERROR, agent_error, strlen(agent_error));
		linger_close(sock);
		return 125;
	}
	sigset_t chld, old;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, &old);
	struct sess s = { .sock = sock, .sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK), .pty = -1, .in_fd = -1 };
	int out_fd[2] = { -1, -1 };	/* our ends of the command's stdout and stderr */
	int cin = -1, cout = -1, cerr = -1;
	if (c.tty) {
		int slave;
		if (openpty(&s.pty, &slave, NULL, NULL, &c.ws) < 0) {
			fail("no terminal for the command (openpty): %s", strerror(errno));
			send_frame(sock, AGENT_ERROR, agent_error, strlen(agent_error));
			linger_close(sock);
			return 125;
		}
		if (c.uid >= 0 && fchown(slave, c.uid, -1) < 0) {}
		s.in_fd = out_fd[0] = s.pty;
		cin = cout = cerr = slave;
	} else {
		int pi[2], po[2], pe[2];
		if (pipe2(pi, O_CLOEXEC) < 0 || pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0)
			_exit(125);
		s.in_fd = pi[1]; cin = pi[0];
		out_fd[0] = po[0]; cout = po[1];
		out_fd[1] = pe[0]; cerr = pe[1];
	}
	s.pid = fork();
	if (s.pid == 0)
		start_command(&c, cin, cout, cerr, &old);
	close(cin);
	if (cout != cin)
		close(cout);
	if (cerr != cout)
		close(cerr);
	fcntl(sock, F_SETFL, O_NONBLOCK);
	fcntl(s.in_fd, F_SETFL, O_NONBLOCK);
	for (int k = 0; k < 2; k++)
		if (out_fd[k] >= 0)
			fcntl(out_fd[k], F_SETFL, O_NONBLOCK);
	struct agent_rx rx;
	agent_rx_init(&rx, false);
	int status = -1;
	uint8_t how[4] = { 0, 0, 0, 0 };
	bool host_gone = false;
	/* At the exit: what the outputs held then (FIONREAD), and when. */
	int pending[2] = { 0, 0 };
	long long exited_at = 0;
	static uint8_t buf[AGENT_MAX_DATA];
	for (;;) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		long long now = ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
		bool outs_open = out_fd[0] >= 0 || out_fd[1] >= 0;
		/*
		 * The command ended: every byte it wrote before its exit goes (however slowly the host
		 * reads), then what follows until EOF or 200 ms after the exit (a daemon it left).
		 */
		if (status >= 0 && !pending[0] && !pending[1] && (!outs_open || now - exited_at > 200))
			break;
		if (host_gone && status < 0) {
			kill(-s.pid, SIGKILL);
		}
		struct pollfd p[5];
		int np = 0, i_in = -1, i_out[2] = { -1, -1 };
		short ev = host_gone ? 0 : POLLIN;
		if (s.q.len > s.qoff)
			ev |= POLLOUT;
		p[np++] = (struct pollfd){ .fd = sock, .events = ev };
		p[np++] = (struct pollfd){ .fd = s.sfd, .events = POLLIN };
		if (s.in_fd >= 0 && (s.in.len > s.inoff || s.in_eof) && !c.tty)
			p[i_in = np++] = (struct pollfd){ .fd = s.in_fd, .events = POLLOUT };
		else if (s.in_fd >= 0 && s.in.len > s.inoff && c.tty)
			p[i_in = np++] = (struct pollfd){ .fd = s.in_fd, .events = POLLOUT };
		for (int k = 0; k < 2; k++)
			if (out_fd[k] >= 0 && s.q.len - s.qoff < OUTQ_MAX)
				p[i_out[k] = np++] = (struct pollfd){ .fd = out_fd[k], .events = POLLIN };
		poll(p, np, status >= 0 ? 50 : -1);
		if (p[0].revents & POLLOUT) {
			ssize_t w = send(sock, s.q.data + s.qoff, s.q.len - s.qoff, MSG_NOSIGNAL);
			if (w > 0)
				s.qoff += w;
			else if (w < 0 && errno != EAGAIN && errno != EINTR)
				host_gone = true;
		}
		if (p[0].revents & (POLLIN | POLLHUP | POLLERR) && !host_gone) {
			ssize_t n = read(sock, buf, sizeof(buf));
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) ||
			    (n > 0 && agent_rx_feed(&rx, buf, n, on_host_frame, &s) < 0))
				host_gone = true;	/* lkvm went away: the command goes too */
		}
		if (i_in >= 0 && p[i_in].revents) {
			if (s.in.len > s.inoff) {
				ssize_t w = write(s.in_fd, s.in.data + s.inoff, s.in.len - s.inoff);
				if (w > 0) {
					s.inoff += w;
					uint8_t a[4] = { w, w >> 8, w >> 16, w >> 24 };
					squeue(&s, AGENT_ACK, a, 4);
					if (s.inoff == s.in.len)
						s.in.len = s.inoff = 0;
				} else if (w < 0 && errno == EPIPE) {	/* the command closed its stdin */
					uint32_t left = s.in.len - s.inoff;
					uint8_t a[4] = { left, left >> 8, left >> 16, left >> 24 };
					squeue(&s, AGENT_ACK, a, 4);
					s.in.len = s.inoff = 0;
					close(s.in_fd);
					s.in_fd = -1;
				}
			}
			if (s.in_fd >= 0 && s.in_eof && s.in.len == s.inoff && !c.tty) {
				close(s.in_fd);
				s.in_fd = -1;
			}
		}
		if (c.tty && s.in_eof && s.in.len == s.inoff && s.in_fd >= 0) {
			unsigned char eof = 4;	/* end of input on a terminal: ^D at the line discipline */
			if (write(s.pty, &eof, 1) < 0) {}
			s.in_eof = false;
		}
		for (int k = 0; k < 2; k++) {
			if (i_out[k] < 0 || !p[i_out[k]].revents)
				continue;
			ssize_t n = read(out_fd[k], buf, sizeof(buf));
			if (n > 0) {
				squeue(&s, k ? AGENT_STDERR : AGENT_STDOUT, buf, n);
				pending[k] = pending[k] > n ? pending[k] - n : 0;
			} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {	/* EIO: a pty whose slave closed */
				if (out_fd[k] != s.in_fd)
					close(out_fd[k]);
				out_fd[k] = -1;
				pending[k] = 0;
			}
		}
		struct signalfd_siginfo si;
		while (read(s.sfd, &si, sizeof(si)) == sizeof(si)) {}
		int st;
		if (status < 0 && waitpid(s.pid, &st, WNOHANG) == s.pid) {
			status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
			how[0] = !WIFEXITED(st);
			how[1] = WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st);
			for (int k = 0; k < 2; k++)
				if (out_fd[k] >= 0 && ioctl(out_fd[k], FIONREAD, &pending[k]) < 0)
					pending[k] = 0;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			exited_at = ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
		}
		if (host_gone && status >= 0)
			break;
	}
	/* The exit frame goes last, after every byte of output. */
	squeue(&s, AGENT_EXIT, how, 4);
	fcntl(sock, F_SETFL, 0);
	if (!host_gone && write_all(sock, s.q.data + s.qoff, s.q.len - s.qoff) == 0)
		linger_close(sock);
	return status < 0 ? 125 : status;
}

/* ---- PID 1 ---- */

static int vsock_socket(void)
{
	int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 && (errno == EAFNOSUPPORT || errno == EINVAL))
		return fail("the kernel lacks vsock (CONFIG_VSOCKETS and CONFIG_VIRTIO_VSOCKETS), which the sandbox needs");
	if (fd < 0)
		return fail("vsock socket: %s", strerror(errno));
	struct timeval tv = { .tv_sec = AGENT_CONNECT_S };
	setsockopt(fd, AF_VSOCK, SO_VM_SOCKETS_CONNECT_TIMEOUT, &tv, sizeof(tv));
	return fd;
}

/* No connection to the host: the reason goes into the scratch folder, where lkvm looks. */
static void early_failure(void)
{
	if (mount(SCRATCH_TAG, "/tmp", "9p", MS_NOSUID | MS_NODEV, P9_OPTS) == 0) {
		int fd = open("/tmp/" AGENT_ERROR_FILE, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600);
		if (fd >= 0) {
			write_all(fd, agent_error, strlen(agent_error));
			close(fd);
		}
		umount("/tmp");
	}
	power_off(EXIT_USAGE);
}

/*
 * One lkvm exec connection on lis (only the host, CID 2, may connect): its
 * session runs in a child of its own with no signal blocked; we go back to
 * listening at once.
 */
static void serve_exec(int lis)
{
	struct sockaddr_vm peer;
	socklen_t pl = sizeof(peer);
	int c = accept4(lis, (struct sockaddr *)&peer, &pl, SOCK_CLOEXEC);
	if (c < 0)
		return;
	if (peer.svm_cid == VMADDR_CID_HOST && fork() == 0) {
		close(lis);
		signal(SIGCHLD, SIG_DFL);
		uint8_t t, *e = NULL;
		uint32_t el;
		if (read_frame(c, &t, &e, &el) < 0 || t != AGENT_EXEC)
			_exit(125);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		_exit(agent_guest_session(c, e, el));
	}
	close(c);
}

static pid_t fork_session(int sock, uint8_t *exec, uint32_t len, int listener)
{
	pid_t pid = fork();
	if (pid == 0) {
		if (listener >= 0)
			close(listener);
		signal(SIGCHLD, SIG_DFL);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		_exit(agent_guest_session(sock, exec, len));
	}
	close(sock);
	return pid;
}

int cmd_sandbox_init(int argc, char **argv)
{
	if (getpid() != 1) {
		fprintf(stderr, "lkvm sandbox-init: runs only as a sandbox guest's init\n");
		return EXIT_USAGE;
	}
	mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, NULL);
	/* Kernel messages stay on the console; the command never sees it. */
	int con = open("/dev/console", O_RDWR);
	if (con >= 0) {
		dup2(con, 0); dup2(con, 1); dup2(con, 2);
		if (con > 2)
			close(con);
	}
	signal(SIGPIPE, SIG_IGN);
	int sock = vsock_socket();
	struct sockaddr_vm host = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_HOST, .svm_port = AGENT_PORT_MAIN };
	if (sock < 0)
		early_failure();
	if (connect(sock, (struct sockaddr *)&host, sizeof(host)) < 0) {
		fail("connecting to the host over vsock (CID 2, port %d): %s", AGENT_PORT_MAIN, strerror(errno));
		early_failure();
	}
	uint8_t type, *setup = NULL, *exec = NULL;
	uint32_t slen = 0, elen;
	/*
	 * A VM restored from lkvm sandbox's snapshot cache was saved here: the
	 * transport reset ended this connection (it was to the old process).
	 * Connect again, to the sandbox that restored us, for up to 10 s.
	 */
	for (int tries = 0; read_frame(sock, &type, &setup, &slen) < 0 || type != AGENT_SETUP; tries++) {
		free(setup);
		setup = NULL;
		close(sock);
		sock = -1;
		for (; tries < 100 && sock < 0; tries++) {
			usleep(100000);
			if ((sock = vsock_socket()) >= 0 && connect(sock, (struct sockaddr *)&host, sizeof(host)) < 0) {
				close(sock);
				sock = -1;
			}
		}
		if (sock < 0) {
			fprintf(stderr, "lkvm sandbox-init: no SETUP from the host\n");
			power_off(EXIT_USAGE);
		}
	}
	bool ready = false;	/* lkvm oci create waits for this before it returns */
	uint32_t roff = 0;
	char rtag;
	const char *rt;
	while (agent_rec_next(setup, slen, &roff, &rtag, &rt) > 0)
		ready |= rtag == REC_READY;
	static const uint8_t zero4[4];
	if (do_setup(setup, slen) < 0 || (ready && send_frame(sock, AGENT_READY, zero4, 4) < 0) ||
	    read_frame(sock, &type, &exec, &elen) < 0 || type != AGENT_EXEC) {
		if (!agent_error[0])
			fail("no EXEC from the host");
		send_frame(sock, AGENT_ERROR, agent_error, strlen(agent_error));
		linger_close(sock);
		power_off(EXIT_USAGE);
	}
	/* lkvm exec's sessions: on our port, from the host only. */
	int lis = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_vm me = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = AGENT_PORT_EXEC };
	if (lis >= 0 && (bind(lis, (struct sockaddr *)&me, sizeof(me)) < 0 || listen(lis, 16) < 0)) {
		close(lis);
		lis = -1;
	}
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
	pid_t main_pid = fork_session(sock, exec, elen, lis);
	free(exec);
	int status = 125;
	for (;;) {
		struct pollfd p[2] = { { .fd = sfd, .events = POLLIN }, { .fd = lis, .events = POLLIN } };
		poll(p, lis >= 0 ? 2 : 1, -1);
		struct signalfd_siginfo si;
		while (read(sfd, &si, sizeof(si)) == sizeof(si)) {}
		int st;
		pid_t w;
		bool done = false;
		while ((w = waitpid(-1, &st, WNOHANG)) > 0)	/* PID 1 reaps every orphan */
			if (w == main_pid) {
				status = WIFEXITED(st) ? WEXITSTATUS(st) : 125;
				done = true;
			}
		if (done)
			break;
		if (lis >= 0 && (p[1].revents & POLLIN))
			serve_exec(lis);
	}
	power_off(status);
	return 0;
}

/*
 * lkvm run --agent: the kernel runs `lkvm agent-init INIT` as PID 1; the
 * agent goes to a child of its own (lkvm exec's sessions on AGENT_PORT_EXEC)
 * and PID 1 becomes the guest's own init.
 */
static void agent_daemon(void)
{
	signal(SIGPIPE, SIG_IGN);
	signal(SIGCHLD, SIG_IGN);	/* sessions reap themselves; each sets SIGCHLD back for its command */
	int lis = -1;
	for (int tries = 0; lis < 0 && tries < 50; tries++) {
		lis = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_vm me = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = AGENT_PORT_EXEC };
		if (lis >= 0 && (bind(lis, (struct sockaddr *)&me, sizeof(me)) < 0 || listen(lis, 16) < 0)) {
			close(lis);
			lis = -1;
		}
		if (lis < 0)
			usleep(100000);
	}
	if (lis < 0)
		_exit(1);
	for (;;)
		serve_exec(lis);
}

int cmd_agent_init(int argc, char **argv)
{
	if (getpid() != 1 || argc < 2) {
		fprintf(stderr, "lkvm agent-init: runs only as a guest's init (lkvm run --agent)\n");
		return EXIT_USAGE;
	}
	if (fork() == 0) {
		setsid();
		agent_daemon();
		_exit(0);
	}
	execv(argv[1], argv + 1);
	fprintf(stderr, "lkvm agent-init: cannot start the guest's init %s: %s\n", argv[1], strerror(errno));
	power_off(EXIT_USAGE);
	return 0;
}
