/*
 * A container's process (include/oci.h): what `lkvm oci create` leaves
 * behind, whose pid the engine gets. It boots the VM (a child of its own,
 * gone with it) whose root is a view of lkvm's binary and libraries only;
 * the agent (cmd/agent.c) mounts the bundle's root share and the config's
 * mounts, chroots into it, and answers READY: create returns. `start`
 * (over the ctl socket) sends config.process as EXEC; this process then
 * carries its stdio and signals (cmd/agent_host.c) and exits with its
 * status, so the engine sees a normal child exit.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "agent_host.h"
#include "commands.h"
#include "oci.h"
#include "util.h"
#include "vsock.h"

#define ROOT_TAG "lkvm-root"
#define OCI_CID "3"

int oci_write_status(const char *cdir, const char *text)
{
	char tmp[PATH_MAX + 32], path[PATH_MAX + 32];
	snprintf(tmp, sizeof(tmp), "%s/status.tmp", cdir);
	snprintf(path, sizeof(path), "%s/status", cdir);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return err_errno("%s", tmp);
	bool ok = write(fd, text, strlen(text)) == (ssize_t)strlen(text);
	close(fd);
	if (!ok || rename(tmp, path) < 0)
		return err_errno("%s", path);
	return 0;
}

int oci_exec_records(struct agent_buf *b, const struct oci_process *p, int tty_fd)
{
	char num[96];
	for (int i = 0; i < p->nargs; i++)
		if (agent_rec_add(b, REC_ARG, p->args[i]) < 0)
			return -1;
	for (int i = 0; i < p->nenv; i++)
		if (agent_rec_add(b, REC_ENV, p->env[i]) < 0)
			return -1;
	if (agent_rec_add(b, REC_CWD, p->cwd) < 0)
		return -1;
	snprintf(num, sizeof(num), "%u", p->uid);
	if (agent_rec_add(b, REC_UID, num) < 0)
		return -1;
	snprintf(num, sizeof(num), "%u", p->gid);
	if (agent_rec_add(b, REC_GID, num) < 0)
		return -1;
	for (int i = 0; i < p->ngids; i++) {
		snprintf(num, sizeof(num), "%u", p->gids[i]);
		if (agent_rec_add(b, REC_GROUP, num) < 0)
			return -1;
	}
	for (int i = 0; i < p->nrlim; i++) {
		snprintf(num, sizeof(num), "%d %llu %llu", p->rlim[i].res, p->rlim[i].soft, p->rlim[i].hard);
		if (agent_rec_add(b, REC_RLIMIT, num) < 0)
			return -1;
	}
	if (p->terminal) {
		struct winsize ws = { .ws_row = 24, .ws_col = 80 };
		if (tty_fd >= 0 && (ioctl(tty_fd, TIOCGWINSZ, &ws) < 0 || !ws.ws_row || !ws.ws_col)) {
			ws.ws_row = 24;
			ws.ws_col = 80;
		}
		snprintf(num, sizeof(num), "%u %u", ws.ws_row, ws.ws_col);
		if (agent_rec_add(b, REC_TTY, num) < 0)
			return -1;
	}
	if (b->len > AGENT_MAX_JOB)
		return err_set("process: the command line and environment take %zu bytes (at most %u)", b->len, AGENT_MAX_JOB);
	return 0;
}

/* The boot root's view: lkvm's binary, the libraries it loads, the guest's mount points. */
static int write_view(const struct oci_ctx *x, char *path, size_t cap)
{
	snprintf(path, cap, "%s/view", x->cdir);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	FILE *f = fd < 0 ? NULL : fdopen(fd, "w");
	if (!f)
		return err_errno("%s", path);
	fprintf(f, "allow %s\nallow usr/lib\nallow usr/lib64\nallow etc/ld.so.cache\n", x->self);
	DIR *d = opendir("/");	/* /lib, /lib64...: often symlinks into /usr */
	for (struct dirent *e; d && (e = readdir(d));)
		if (!strncmp(e->d_name, "lib", 3) && !strchr(e->d_name, '\n'))
			fprintf(f, "allow %s\n", e->d_name);
	if (d)
		closedir(d);
	fprintf(f, "empty proc\nempty sys\nempty dev\nempty run\nempty tmp\n");
	return fclose(f) ? err_errno("%s", path) : 0;
}

/* The SETUP records: the root, then mounts in the config's order, the hostname, READY. */
static int setup_records(const struct oci_ctx *x, struct agent_buf *b)
{
	const struct oci_config *c = &x->cfg;
	char rec[PATH_MAX + 1200];
	snprintf(rec, sizeof(rec), ROOT_TAG " %s", c->root_ro ? "ro" : "rw");
	if (agent_rec_add(b, REC_ROOT, rec) < 0 || agent_rec_add(b, REC_NET, "") < 0)
		return -1;
	for (int i = 0; i < c->nmounts; i++) {
		const struct oci_mount *m = &c->mounts[i];
		if (m->kind == OCI_MOUNT_GUEST) {
			snprintf(rec, sizeof(rec), "%s %lu %s %s", m->type, m->flags, m->data, m->dest);
			if (agent_rec_add(b, REC_MOUNT, rec) < 0)
				return -1;
		} else if (m->kind == OCI_MOUNT_DIR) {
			snprintf(rec, sizeof(rec), "lkvm-m%d %s %s", i, m->ro ? "ro" : "rw", m->dest);
			if (agent_rec_add(b, REC_VOLUME, rec) < 0)
				return -1;
		} else {
			uint8_t *data = NULL;
			size_t len = 0;
			struct stat st;
			if (stat(m->src, &st) < 0 || read_file(m->src, &data, &len) < 0)
				return err_set("mounts %s: reading %s: %s", m->dest, m->src, err_msg());
			if (memchr(data, 0, len) || len > OCI_MAX_FILE) {
				free(data);
				oci_log("warning", "mounts %s: %s holds NUL bytes (not copied in)", m->dest, m->src);
				continue;
			}
			char *r = xcalloc(1, len + PATH_MAX + 16);
			int k = snprintf(r, PATH_MAX + 16, "%o %s\n", (unsigned)(st.st_mode & 07777), m->dest);
			memcpy(r + k, data, len);
			free(data);
			int rr = agent_rec_add(b, REC_FILE, r);
			free(r);
			if (rr < 0)
				return -1;
		}
	}
	if (agent_rec_add(b, REC_MKDIR, c->proc.cwd) < 0)	/* runc makes a missing cwd too */
		return -1;
	if (c->hostname[0] && agent_rec_add(b, REC_HOSTNAME, c->hostname) < 0)
		return -1;
	if (agent_rec_add(b, REC_READY, "") < 0)
		return -1;
	if (b->len > AGENT_MAX_JOB)
		return err_set("the mounts take %zu bytes (at most %u): copied files too big", b->len, AGENT_MAX_JOB);
	return 0;
}

static int read_exact_t(int fd, void *p, size_t n, int ms)
{
	for (size_t d = 0; d < n;) {
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		if (poll(&pf, 1, ms) <= 0)
			return err_set("the guest's agent did not answer");
		ssize_t r = read(fd, (char *)p + d, n - d);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return err_set("the guest's agent closed the connection during setup");
		d += r;
	}
	return 0;
}

/* After SETUP: READY, or ERROR's text. */
static int wait_ready(int fd)
{
	uint8_t h[AGENT_HDR], p[AGENT_MAX_ERROR + 1];
	if (read_exact_t(fd, h, sizeof(h), 120000) < 0)
		return -1;
	uint32_t len = get_le32(h);
	uint8_t type = h[4];
	uint32_t max = agent_max_payload(type, true);
	if ((type != AGENT_READY && type != AGENT_ERROR) || !max || len > max || h[5] || h[6] || h[7])
		return err_set("the guest's agent broke the protocol during setup (frame type %u, %u bytes)", type, len);
	if (read_exact_t(fd, p, len, 10000) < 0)
		return -1;
	if (type == AGENT_READY)
		return 0;
	for (uint32_t i = 0; i < len; i++)
		if (p[i] < ' ' || p[i] > '~')
			p[i] = '?';
	p[len] = 0;
	return err_set("in the guest: %s", (char *)p);
}

static void tell(int fd, const char *text)
{
	if (fd >= 0 && write(fd, text, strlen(text)) < 0) {}
}

static int pidfd_open_(pid_t pid) { return syscall(SYS_pidfd_open, pid, 0); }

static void stop_vm(pid_t vm, int pidfd, int ms)
{
	struct pollfd p = { .fd = pidfd, .events = POLLIN };
	if (pidfd < 0 || poll(&p, 1, ms) <= 0) {
		kill(vm, SIGTERM);
		if (pidfd < 0 || poll(&p, 1, 3000) <= 0)
			kill(vm, SIGKILL);
	}
	waitpid(vm, NULL, 0);
}

/* The last printable line of the console log, for an error message. */
static void console_tail(const char *cdir, char *out, size_t cap)
{
	char path[PATH_MAX + 32], buf[4096];
	snprintf(path, sizeof(path), "%s/console.log", cdir);
	out[0] = 0;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return;
	off_t end = lseek(fd, 0, SEEK_END);
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, end > (off_t)sizeof(buf) - 1 ? end - (off_t)sizeof(buf) + 1 : 0);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = 0;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = 0;
	char *l = strrchr(buf, '\n');
	l = l ? l + 1 : buf;
	size_t k = 0;
	for (; *l && k + 1 < cap; l++)
		out[k++] = *l >= ' ' && *l <= '~' ? *l : '?';
	out[k] = 0;
}

static void fail_create(struct oci_ctx *x, const char *msg)
{
	char line[1024];
	snprintf(line, sizeof(line), "%s\n", msg);
	tell(x->ready_fd, line);
	_exit(1);
}

void oci_container_main(struct oci_ctx *x)
{
	setsid();
	signal(SIGPIPE, SIG_IGN);
	if (x->tty >= 0) {
		dup2(x->tty, 0);
		dup2(x->tty, 1);
		dup2(x->tty, 2);
		if (x->tty > 2)
			close(x->tty);
		ioctl(0, TIOCSCTTY, 0);
	}
	char vpath[PATH_MAX + 16], lpath[PATH_MAX + 32], cpath[PATH_MAX + 16], view[PATH_MAX + 16], clog[PATH_MAX + 32];
	snprintf(vpath, sizeof(vpath), "%s/v.sock", x->cdir);
	snprintf(cpath, sizeof(cpath), "%s/ctl", x->cdir);
	snprintf(clog, sizeof(clog), "%s/console.log", x->cdir);
	dev_t ldev = 0;
	ino_t lino = 0;
	int lis = -1, ctl = -1;
	if (vsock_port_path(vpath, AGENT_PORT_MAIN, lpath, sizeof(lpath)) < 0 ||
	    (lis = vsock_listen_path(lpath, &ldev, &lino)) < 0 || write_view(x, view, sizeof(view)) < 0)
		fail_create(x, err_msg());
	struct sockaddr_un su = { .sun_family = AF_UNIX };
	if (strlen(cpath) >= sizeof(su.sun_path))
		fail_create(x, "the state folder's path is too long for its sockets");
	memcpy(su.sun_path, cpath, strlen(cpath) + 1);
	ctl = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (ctl < 0 || bind(ctl, (struct sockaddr *)&su, sizeof(su)) < 0 || listen(ctl, 4) < 0) {
		err_errno("%s", cpath);
		fail_create(x, err_msg());
	}
	struct agent_buf setup = { 0 }, exec = { 0 };
	if (setup_records(x, &setup) < 0 || oci_exec_records(&exec, &x->cfg.proc, 0) < 0)
		fail_create(x, err_msg());

	/* lkvm run's arguments */
	const struct oci_config *c = &x->cfg;
	char params[PATH_MAX + 256], boot[PATH_MAX * 2], rootsh[PATH_MAX + 64], vs[PATH_MAX + 32], mem[32], cpus[16],
	     name[80];
	char *shares[OCI_MAX_MOUNTS];
	snprintf(params, sizeof(params),
		 "root=/dev/root rootfstype=9p rootflags=trans=virtio,version=9p2000.L,msize=262144 ro panic=-1 quiet loglevel=3 "
		 "init=%s -- sandbox-init", x->self);
	snprintf(boot, sizeof(boot), "/,/dev/root,ro,xdev,view=%s", view);
	snprintf(rootsh, sizeof(rootsh), "%s," ROOT_TAG "%s", c->root, c->root_ro ? ",ro" : "");
	snprintf(vs, sizeof(vs), OCI_CID ",uds=%s", vpath);
	snprintf(mem, sizeof(mem), "%lluM", (unsigned long long)(c->mem ? c->mem >> 20 : 256));
	snprintf(cpus, sizeof(cpus), "%d", c->cpus ? c->cpus : 1);
	snprintf(name, sizeof(name), "oci-%.40s", x->id);	/* VM names: at most 63 */
	char *argv[64 + 2 * OCI_MAX_MOUNTS];
	int k = 0;
	argv[k++] = "run";
	argv[k++] = "-q";
	argv[k++] = "-p";
	argv[k++] = params;
	argv[k++] = "-k";
	argv[k++] = x->kernel;
	argv[k++] = "-m";
	argv[k++] = mem;
	argv[k++] = "-c";
	argv[k++] = cpus;
	argv[k++] = "--network";
	argv[k++] = "mode=user,policy=sandbox";
	argv[k++] = "--9p";
	argv[k++] = boot;
	argv[k++] = "--9p";
	argv[k++] = rootsh;
	for (int i = 0; i < c->nmounts; i++) {
		if (c->mounts[i].kind != OCI_MOUNT_DIR)
			continue;
		shares[i] = xcalloc(1, PATH_MAX + 32);
		snprintf(shares[i], PATH_MAX + 32, "%s,lkvm-m%d%s", c->mounts[i].src, i, c->mounts[i].ro ? ",ro" : "");
		argv[k++] = "--9p";
		argv[k++] = shares[i];
	}
	argv[k++] = "--vsock";
	argv[k++] = vs;
	argv[k++] = "--name";
	argv[k++] = name;
	argv[k] = NULL;

	/* SIGCHLD stays blocked: the VM's end is read on its pidfd */
	sigset_t sigs, old;
	sigemptyset(&sigs);
	int fwd[] = { SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGTERM, SIGWINCH, SIGCONT, SIGTSTP };
	for (size_t i = 0; i < ARRAY_SIZE(fwd); i++)
		sigaddset(&sigs, fwd[i]);
	int sigfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	sigaddset(&sigs, SIGCHLD);
	sigprocmask(SIG_BLOCK, &sigs, &old);
	int log_fd = open(clog, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	fflush(NULL);
	pid_t vm = fork();
	if (vm < 0)
		fail_create(x, "fork failed");
	if (vm == 0) {	/* no exec follows: what create, start and the agent wait on must not stay open here */
		close(x->ready_fd);
		close(ctl);
		close(lis);
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		int null = open("/dev/null", O_RDWR);
		dup2(null, 0);
		dup2(log_fd >= 0 ? log_fd : null, 1);
		dup2(log_fd >= 0 ? log_fd : null, 2);
		sigprocmask(SIG_SETMASK, &old, NULL);
		_exit(cmd_run(k, argv));
	}
	int pidfd = pidfd_open_(vm);
	const char *bt = getenv("LKVM_OCI_BOOT_TIMEOUT");
	int boot_ms = (bt && atoi(bt) > 0 ? atoi(bt) : 300) * 1000;
	int conn = -1;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (conn < 0) {
		struct pollfd p[3] = { { .fd = lis, .events = POLLIN }, { .fd = pidfd, .events = POLLIN },
				       { .fd = sigfd, .events = POLLIN } };
		clock_gettime(CLOCK_MONOTONIC, &t1);
		long left = boot_ms - ((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000);
		if (left <= 0 || (poll(p, 3, left) < 0 && errno != EINTR)) {
			kill(vm, SIGKILL);
			waitpid(vm, NULL, 0);
			fail_create(x, "the VM's agent did not connect in time (LKVM_OCI_BOOT_TIMEOUT seconds; console.log in the state folder)");
		}
		struct signalfd_siginfo si;
		if ((p[2].revents & POLLIN) && read(sigfd, &si, sizeof(si)) == sizeof(si) && si.ssi_signo != SIGWINCH) {
			kill(vm, SIGKILL);
			waitpid(vm, NULL, 0);
			fail_create(x, "stopped by a signal while the VM booted");
		}
		if (p[1].revents & POLLIN) {
			char tail[300], m[600];
			int st = 0;
			waitpid(vm, &st, 0);
			console_tail(x->cdir, tail, sizeof(tail));
			snprintf(m, sizeof(m), "the VM ended (status %d) before its agent connected: %s",
				 WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), tail[0] ? tail : "(no console output)");
			fail_create(x, m);
		}
		if (p[0].revents & POLLIN)
			conn = accept4(lis, NULL, NULL, SOCK_CLOEXEC);
	}
	close(lis);
	vsock_unlink_path(lpath, ldev, lino);
	uint8_t h[AGENT_HDR];
	agent_hdr(h, AGENT_SETUP, setup.len);
	if (write(conn, h, sizeof(h)) != sizeof(h) || write(conn, setup.data, setup.len) != (ssize_t)setup.len ||
	    wait_ready(conn) < 0) {
		char m[600];
		snprintf(m, sizeof(m), "%s", err_msg());
		stop_vm(vm, pidfd, 0);
		fail_create(x, m);
	}
	if (oci_write_status(x->cdir, "created") < 0) {
		stop_vm(vm, pidfd, 0);
		fail_create(x, err_msg());
	}
	tell(x->ready_fd, "ok\n");
	close(x->ready_fd);
	x->ready_fd = -1;

	/* created: until start, a signal, or the VM's end */
	int status = 0;
	struct agent_session s = { .fd = conn, .exec = &exec, .tty = x->cfg.proc.terminal, .sigfd = sigfd, .vm_fd = pidfd,
				   .in_fd = 0, .out_fd = 1, .err_fd = 2 };
	for (;;) {
		struct pollfd p[3] = { { .fd = ctl, .events = POLLIN }, { .fd = pidfd, .events = POLLIN },
				       { .fd = sigfd, .events = POLLIN } };
		if (poll(p, 3, -1) < 0 && errno != EINTR)
			continue;
		struct signalfd_siginfo si;
		if ((p[2].revents & POLLIN) && read(sigfd, &si, sizeof(si)) == sizeof(si) && si.ssi_signo != SIGWINCH &&
		    si.ssi_signo != SIGCONT) {
			status = 128 + si.ssi_signo;
			goto end;
		}
		if (p[1].revents & POLLIN) {
			status = 1;
			oci_log("error", "container %s: its VM ended before start", x->id);
			goto end;
		}
		if (p[0].revents & POLLIN) {
			int a = accept4(ctl, NULL, NULL, SOCK_CLOEXEC);
			char cmd[16] = "";
			struct pollfd ap = { .fd = a, .events = POLLIN };
			if (a >= 0 && poll(&ap, 1, 5000) > 0 && read(a, cmd, sizeof(cmd) - 1) > 0 && !strncmp(cmd, "start\n", 6)) {
				oci_write_status(x->cdir, "running");
				tell(a, "ok\n");
				close(a);
				break;
			}
			if (a >= 0)
				close(a);
		}
	}
	close(ctl);
	ctl = -1;
	unlink(cpath);
	status = agent_host_run(&s);
	if (status < 0) {
		oci_log("error", "container %s: %s", x->id, err_msg());
		status = 1;
	}
end:;
	char st[32];
	snprintf(st, sizeof(st), "stopped %d", status);
	oci_write_status(x->cdir, st);
	close(conn);	/* the agent powers the VM off after the main command */
	stop_vm(vm, pidfd, status >= 128 || s.gave_up ? 0 : 10000);
	if (ctl >= 0) {
		close(ctl);
		unlink(cpath);
	}
	_exit(status & 0xff);
}
