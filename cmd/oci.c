/*
 * lkvm oci (and lkvm-oci): an OCI runtime with runc's command line, so an
 * engine (podman --runtime, CRI-O's runtime_path, containerd's runc shim
 * with BinaryName) runs each container as an lkvm VM. docs/oci.md says what
 * is honoured and what is ignored.
 *
 * The state folder (--root, default /run/lkvm-oci) is root's: made 0700,
 * refused when another user could write it or it is not ours. Each
 * container is a folder named by its id (checked: no path characters) with
 * state.json (written by create), status (by the container's process:
 * created, running, stopped N), the ctl socket start talks to, the VM's
 * vsock socket, console.log. A container whose process is gone (checked by
 * pid and start time, so a reused pid does not count) is stopped.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "agent_host.h"
#include "commands.h"
#include "json.h"
#include "json_tree.h"
#include "oci.h"
#include "util.h"
#include "vsock.h"

#define DEFAULT_ROOT "/run/lkvm-oci"
#define CONF_FILE "/etc/lkvm/oci.conf"

static const char *state_root = DEFAULT_ROOT;
static const char *log_path;
static bool log_json;

void oci_log(const char *level, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (strcmp(level, "info"))
		fprintf(stderr, "lkvm oci: %s%s\n", strcmp(level, "error") ? "warning: " : "", msg);
	if (!log_path)
		return;
	int fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return;
	char line[1400], ts[40];
	time_t now = time(NULL);
	struct tm tm;
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
	if (log_json) {
		struct json_writer w;
		json_init(&w);
		json_begin(&w, NULL, '{');
		json_str(&w, "level", level);
		json_str(&w, "msg", msg);
		json_str(&w, "time", ts);
		json_end(&w);
		snprintf(line, sizeof(line), "%s\n", json_text(&w));
		json_free(&w);
	} else {
		snprintf(line, sizeof(line), "time=\"%s\" level=%s msg=\"%s\"\n", ts, level, msg);
	}
	if (write(fd, line, strlen(line)) < 0) {}
	close(fd);
}

static int usage(void)
{
	fprintf(stderr,
		"usage: lkvm oci [--root DIR] [--log FILE] [--log-format text|json] COMMAND [ARGS]\n"
		"An OCI runtime with runc's command line: each container is an lkvm VM (docs/oci.md).\n"
		"  create ID --bundle DIR [--pid-file F] [--console-socket S]   boot its VM, process not started\n"
		"  start ID                      run config.process\n"
		"  state ID                      the OCI state JSON\n"
		"  kill [--all] ID [SIGNAL]      send a signal (default TERM)\n"
		"  delete [--force] ID           remove a stopped (or, forced, any) container\n"
		"  exec [options] ID [--process FILE | -- ARGS...]   another process in a running container\n"
		"  list [--format table|json] [-q]\n"
		"  ps [--format table|json] ID   the host processes that stand for it\n"
		"  features                      what this runtime supports (JSON)\n"
		"  --version\n"
		"The kernel: annotation org.lkvm.kernel, $LKVM_KERNEL, or kernel=PATH in " CONF_FILE ".\n");
	return EXIT_USAGE;
}

/* ---- the state folder ---- */

static int check_root(bool make)
{
	if (state_root[0] != '/' || strstr(state_root, "/../") || strlen(state_root) > 200)
		return err_set("--root %s: an absolute path (at most 200 characters)", state_root);
	if (make && mkdir(state_root, 0700) < 0 && errno != EEXIST)
		return err_errno("--root %s", state_root);
	struct stat st;
	if (lstat(state_root, &st) < 0) {
		if (errno == ENOENT && !make)
			return 1;	/* no containers yet */
		return err_errno("--root %s", state_root);
	}
	if (!S_ISDIR(st.st_mode))
		return err_set("--root %s: not a folder (a symlink is refused)", state_root);
	if (st.st_uid != geteuid() || (st.st_mode & 022))
		return err_set("--root %s: not ours alone (owner %u, mode %o): another user could plant state there",
			       state_root, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
	return 0;
}

static int cdir_of(const char *id, char *out, size_t cap)
{
	if (!oci_id_ok(id))
		return err_set("bad container id '%.80s' (letters, digits, '_', '-', '.'; at most 64; not starting with '.' or '-')",
			       id);
	snprintf(out, cap, "%s/%s", state_root, id);
	return 0;
}

/* The start time of pid (field 22 of /proc/PID/stat), 0 when gone or a zombie. */
static unsigned long long proc_start(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (pid <= 0 || fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	if (!p || p[1] != ' ' || p[2] == 'Z' || p[2] == 'X')
		return 0;
	p += 2;	/* field 3 */
	for (int f = 3; f < 22 && p; f++) {
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	return p ? strtoull(p, NULL, 10) : 0;
}

struct state {
	char id[80], bundle[PATH_MAX], created[40];
	char *annotations;
	pid_t pid;
	unsigned long long start;
	char status[16];	/* created, running, stopped */
	int exit;
};

/* The container's state from its folder; 0, or -1 with err set (unknown id). */
static int load_state(const char *id, struct state *s)
{
	char cdir[PATH_MAX], path[PATH_MAX + 32];
	memset(s, 0, sizeof(*s));
	if (cdir_of(id, cdir, sizeof(cdir)) < 0)
		return -1;
	snprintf(path, sizeof(path), "%s/state.json", cdir);
	uint8_t *text = NULL;
	size_t len = 0;
	struct stat st;
	if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode) || read_file(path, &text, &len) < 0)
		return err_set("container %s does not exist", id);
	struct json_node *n = json_parse((char *)text, len);
	free(text);
	const struct json_node *pid = json_member(n, "pid"), *start = json_member(n, "start");
	if (!n || !pid || !pid->is_int || !start || !start->is_int || !json_member_str(n, "bundle")) {
		json_tree_free(n);
		return err_set("container %s: its state file %s is damaged", id, path);
	}
	snprintf(s->id, sizeof(s->id), "%s", id);
	snprintf(s->bundle, sizeof(s->bundle), "%s", json_member_str(n, "bundle"));
	snprintf(s->created, sizeof(s->created), "%s", json_member_str(n, "created") ? json_member_str(n, "created") : "");
	s->annotations = xstrdup(json_member_str(n, "annotations") ? json_member_str(n, "annotations") : "{}");
	s->pid = pid->ival;
	s->start = start->ival;
	json_tree_free(n);
	char sf[PATH_MAX + 32], buf[64] = "";
	snprintf(sf, sizeof(sf), "%s/status", cdir);
	int fd = open(sf, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t r = read(fd, buf, sizeof(buf) - 1);
		buf[r > 0 ? r : 0] = 0;
		close(fd);
	}
	bool alive = s->start && proc_start(s->pid) == s->start;
	if (!strncmp(buf, "stopped", 7) || !alive) {
		strcpy(s->status, "stopped");
		s->exit = !strncmp(buf, "stopped ", 8) ? atoi(buf + 8) : -1;
	} else if (!strcmp(buf, "running")) {
		strcpy(s->status, "running");
	} else {
		strcpy(s->status, "created");
	}
	return 0;
}

static void print_state(const struct state *s, FILE *out)
{
	struct json_writer w;
	json_init(&w);
	json_begin(&w, NULL, '{');
	json_str(&w, "ociVersion", OCI_VERSION);
	json_str(&w, "id", s->id);
	json_str(&w, "status", s->status);
	json_i64(&w, "pid", strcmp(s->status, "stopped") ? s->pid : 0);
	json_str(&w, "bundle", s->bundle);
	if (s->created[0])
		json_str(&w, "created", s->created);
	json_end(&w);
	const char *t = json_text(&w);
	/* the annotations object was made by our own writer at create: spliced in as it is */
	fprintf(out, "%.*s,\"annotations\":%s}\n", (int)strlen(t) - 1, t, s->annotations);
	json_free(&w);
}

/* Remove the container's folder: its files only (there are no subfolders), never following a link. */
static int remove_cdir(const char *cdir)
{
	int dfd = open(cdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return errno == ENOENT ? 0 : err_errno("%s", cdir);
	DIR *d = fdopendir(dfd);
	for (struct dirent *e; d && (e = readdir(d));)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			unlinkat(dfd, e->d_name, 0);
	if (d)
		closedir(d);
	if (rmdir(cdir) < 0 && errno != ENOENT)
		return err_errno("removing %s", cdir);
	return 0;
}

/* ---- options ---- */

/* "--name VALUE", "--name=VALUE" (and "-s VALUE"): the value; NULL when argv[*i] is not it. */
static const char *opt_val(int argc, char **argv, int *i, const char *lng, const char *shrt, bool *missing)
{
	const char *a = argv[*i];
	size_t n = strlen(lng);
	if (!strcmp(a, lng) || (shrt && !strcmp(a, shrt))) {
		if (*i + 1 >= argc) {
			*missing = true;
			return NULL;
		}
		return argv[++*i];
	}
	if (!strncmp(a, lng, n) && a[n] == '=')
		return a + n + 1;
	/* runc's flags take one dash too */
	if (lng[0] == '-' && lng[1] == '-' && !strncmp(a, lng + 1, n - 1) && (a[n - 1] == '=' || !a[n - 1])) {
		if (a[n - 1] == '=')
			return a + n;
		if (*i + 1 >= argc) {
			*missing = true;
			return NULL;
		}
		return argv[++*i];
	}
	return NULL;
}

static bool is_flag(const char *a, const char *lng, const char *shrt)
{
	return !strcmp(a, lng) || (shrt && !strcmp(a, shrt)) || (lng[1] == '-' && !strcmp(a, lng + 1));
}

static int write_file_atomic(const char *path, const char *text, mode_t mode)
{
	char tmp[PATH_MAX + 32];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	unlink(tmp);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0)
		return err_errno("%s", tmp);
	bool ok = write(fd, text, strlen(text)) == (ssize_t)strlen(text);
	if (close(fd) < 0 || !ok || rename(tmp, path) < 0) {
		unlink(tmp);
		return err_errno("%s", path);
	}
	return 0;
}

static int find_kernel(const struct oci_config *c, char *out, size_t cap)
{
	const char *k = c->kernel[0] ? c->kernel : getenv("LKVM_KERNEL");
	if (k && !*k)
		k = NULL;
	char line[PATH_MAX + 16];
	FILE *f = k ? NULL : fopen(CONF_FILE, "r");
	while (f && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\r\n")] = 0;
		if (!strncmp(line, "kernel=", 7) && line[7] && strlen(line + 7) < cap) {
			memcpy(out, line + 7, strlen(line + 7) + 1);
			k = out;
		}
	}
	if (f)
		fclose(f);
	if (!k)
		return err_set("no kernel: set the annotation org.lkvm.kernel, $LKVM_KERNEL, or kernel=PATH in " CONF_FILE);
	if (k != out)
		snprintf(out, cap, "%s", k);
	if (strchr(out, ',') || access(out, R_OK) < 0)
		return err_set("kernel %s: not readable (or a comma in its path)", out);
	return 0;
}

/* Send fd over the console socket, as runc does (SCM_RIGHTS, the path as the data). */
static int send_console(const char *sock, int fd)
{
	struct sockaddr_un su = { .sun_family = AF_UNIX };
	if (strlen(sock) >= sizeof(su.sun_path))
		return err_set("--console-socket %s: path too long", sock);
	memcpy(su.sun_path, sock, strlen(sock) + 1);
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&su, sizeof(su)) < 0) {
		if (s >= 0)
			close(s);
		return err_errno("--console-socket %s", sock);
	}
	char name[] = "/dev/ptmx";
	struct iovec iov = { .iov_base = name, .iov_len = sizeof(name) - 1 };
	union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr a; } u;
	memset(&u, 0, sizeof(u));
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	int r = sendmsg(s, &m, MSG_NOSIGNAL) < 0 ? err_errno("--console-socket %s: sending the terminal", sock) : 0;
	close(s);
	return r;
}

/* A terminal for the process: the master to the console socket, the slave kept. */
static int make_console(const char *sock, int *slave)
{
	int master;
	if (!sock)
		return err_set("process.terminal is true but no --console-socket was given");
	if (openpty(&master, slave, NULL, NULL, NULL) < 0)
		return err_errno("openpty");
	fcntl(*slave, F_SETFD, FD_CLOEXEC);
	int r = send_console(sock, master);
	close(master);
	if (r < 0)
		close(*slave);
	return r;
}

static int write_pid_file(const char *path, pid_t pid)
{
	char buf[32], real[PATH_MAX];
	snprintf(buf, sizeof(buf), "%d", (int)pid);
	if (path[0] != '/' && realpath(".", real)) {	/* runc takes it relative to the cwd */
		char full[2 * PATH_MAX];
		snprintf(full, sizeof(full), "%s/%s", real, path);
		return write_file_atomic(full, buf, 0644);
	}
	return write_file_atomic(path, buf, 0644);
}

/* ---- create ---- */

static int oci_create(int argc, char **argv)
{
	const char *id = NULL, *bundle = ".", *pid_file = NULL, *console = NULL;
	for (int i = 1; i < argc; i++) {
		const char *v;
		bool missing = false;
		if ((v = opt_val(argc, argv, &i, "--bundle", "-b", &missing)))
			bundle = v;
		else if ((v = opt_val(argc, argv, &i, "--pid-file", NULL, &missing)))
			pid_file = v;
		else if ((v = opt_val(argc, argv, &i, "--console-socket", NULL, &missing)))
			console = v;
		else if ((v = opt_val(argc, argv, &i, "--preserve-fds", NULL, &missing)))
			;	/* no host fds reach a VM */
		else if (is_flag(argv[i], "--no-pivot", NULL) || is_flag(argv[i], "--no-new-keyring", NULL))
			;
		else if (missing)
			return err_set("create: %s needs a value", argv[i]);
		else if (argv[i][0] == '-')
			return err_set("create: unknown option %s", argv[i]);
		else if (!id)
			id = argv[i];
		else
			return err_set("create: one container id, not '%s' too", argv[i]);
	}
	if (!id)
		return err_set("create: needs a container id");
	static struct oci_ctx x;
	x.id = id;
	x.tty = -1;
	if (cdir_of(id, x.cdir, sizeof(x.cdir)) < 0)
		return -1;
	if (!realpath(bundle, x.bundle))
		return err_errno("--bundle %s", bundle);
	if (oci_config_load(&x.cfg, x.bundle) < 0 || find_kernel(&x.cfg, x.kernel, sizeof(x.kernel)) < 0)
		return -1;
	if (x.cfg.skipped[0])
		oci_log("info", "container %s: not applied in a VM: %s", id, x.cfg.skipped);
	ssize_t n = readlink("/proc/self/exe", x.self, sizeof(x.self) - 1);
	if (n <= 0)
		return err_set("cannot find lkvm's own binary (/proc/self/exe)");
	x.self[n] = 0;
	if (strlen(x.cdir) + strlen("/v.sock_1025") > OCI_SOCK_MAX)
		return err_set("--root %s: too long a path for the container's sockets (at most %d characters with the id)",
			       state_root, (int)(OCI_SOCK_MAX - strlen("/v.sock_1025") - 1));
	if (check_root(true) < 0)
		return -1;
	if (mkdir(x.cdir, 0700) < 0)
		return errno == EEXIST ? err_set("container %s already exists", id) : err_errno("%s", x.cdir);
	int r = -1;
	if (x.cfg.proc.terminal && make_console(console, &x.tty) < 0)
		goto fail;
	int pipefd[2];
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		err_errno("pipe");
		goto fail;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		err_errno("fork");
		goto fail;
	}
	if (pid == 0) {
		close(pipefd[0]);
		x.ready_fd = pipefd[1];
		oci_container_main(&x);
	}
	close(pipefd[1]);
	if (x.tty >= 0)
		close(x.tty);
	/* state.json now: the process is ours and its start time is known */
	char created[40], path[PATH_MAX + 32];
	time_t now = time(NULL);
	struct tm tm;
	strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
	struct json_writer w;
	json_init(&w);
	json_begin(&w, NULL, '{');
	json_str(&w, "id", id);
	json_i64(&w, "pid", pid);
	json_u64(&w, "start", proc_start(pid));
	json_str(&w, "bundle", x.bundle);
	json_str(&w, "created", created);
	json_str(&w, "annotations", x.cfg.annotations_json);
	json_end(&w);
	snprintf(path, sizeof(path), "%s/state.json", x.cdir);
	int wr = write_file_atomic(path, json_text(&w), 0600);
	json_free(&w);
	char msg[1100] = "";
	size_t got = 0;
	for (ssize_t k; got + 1 < sizeof(msg) && !memchr(msg, '\n', got) &&
			(k = read(pipefd[0], msg + got, sizeof(msg) - 1 - got)) != 0;)
		if (k > 0)
			got += k;
		else if (errno != EINTR)
			break;
	msg[got] = 0;
	close(pipefd[0]);
	msg[strcspn(msg, "\n")] = 0;
	if (wr < 0 || strcmp(msg, "ok")) {
		char m[1200];
		snprintf(m, sizeof(m), "%s", wr < 0 ? err_msg() : msg[0] ? msg : "the container's process ended");
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		err_set("create %s: %s", id, m);
		goto fail;
	}
	if (pid_file && write_pid_file(pid_file, pid) < 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		goto fail;
	}
	oci_config_free(&x.cfg);
	return 0;
fail:
	{
		char m[1200];
		snprintf(m, sizeof(m), "%s", err_msg());
		remove_cdir(x.cdir);
		err_set("%s", m);
	}
	oci_config_free(&x.cfg);
	return r;
}

/* ---- start, state, kill, delete, list ---- */

static int one_id(int argc, char **argv, const char *cmd, const char **id, bool *force, bool *all)
{
	*id = NULL;
	for (int i = 1; i < argc; i++) {
		if (force && is_flag(argv[i], "--force", "-f"))
			*force = true;
		else if (all && is_flag(argv[i], "--all", "-a"))
			*all = true;
		else if (argv[i][0] == '-' && argv[i][1])
			return err_set("%s: unknown option %s", cmd, argv[i]);
		else if (!*id)
			*id = argv[i];
		else if (!all)
			return err_set("%s: one container id, not '%s' too", cmd, argv[i]);
	}
	return *id ? 0 : err_set("%s: needs a container id", cmd);
}

static int oci_start(int argc, char **argv)
{
	const char *id;
	struct state s;
	if (one_id(argc, argv, "start", &id, NULL, NULL) < 0 || load_state(id, &s) < 0)
		return -1;
	free(s.annotations);
	if (strcmp(s.status, "created"))
		return err_set("container %s is %s, not created", id, s.status);
	char path[PATH_MAX + 32];
	snprintf(path, sizeof(path), "%s/%s/ctl", state_root, id);
	struct sockaddr_un su = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(su.sun_path))
		return err_set("%s: path too long", path);
	memcpy(su.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&su, sizeof(su)) < 0) {
		if (fd >= 0)
			close(fd);
		return err_errno("start %s: its process does not answer (%s)", id, path);
	}
	char reply[16] = "";
	struct pollfd p = { .fd = fd, .events = POLLIN };
	bool ok = send(fd, "start\n", 6, MSG_NOSIGNAL) == 6 && poll(&p, 1, 30000) > 0 && read(fd, reply, sizeof(reply) - 1) > 0 &&
		  !strcmp(reply, "ok\n");
	close(fd);
	return ok ? 0 : err_set("start %s: its process did not start the command", id);
}

static int oci_state(int argc, char **argv)
{
	const char *id;
	struct state s;
	if (one_id(argc, argv, "state", &id, NULL, NULL) < 0 || load_state(id, &s) < 0)
		return -1;
	print_state(&s, stdout);
	free(s.annotations);
	return 0;
}

static int oci_kill(int argc, char **argv)
{
	const char *id = NULL, *sig = "TERM";
	bool all = false;
	int nid = 0;
	for (int i = 1; i < argc; i++) {
		if (is_flag(argv[i], "--all", "-a"))
			all = true;
		else if (argv[i][0] == '-' && argv[i][1])
			return err_set("kill: unknown option %s", argv[i]);
		else if (nid++ == 0)
			id = argv[i];
		else if (nid == 2)
			sig = argv[i];
		else
			return err_set("kill: ID [SIGNAL], not '%s' too", argv[i]);
	}
	(void)all;	/* one VM: every process in it goes with the container */
	if (!id)
		return err_set("kill: needs a container id");
	int signo = oci_signal(sig);
	if (signo < 0)
		return err_set("kill: unknown signal '%.40s'", sig);
	struct state s;
	if (load_state(id, &s) < 0)
		return -1;
	free(s.annotations);
	if (!strcmp(s.status, "stopped"))
		return err_set("container %s is not running", id);
	/* the container's process forwards what it can to the guest; KILL ends it and its VM */
	static const int fwd[] = { SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGTERM, SIGWINCH, SIGCONT, SIGTSTP,
				   SIGKILL };
	bool ok = false;
	for (size_t i = 0; i < ARRAY_SIZE(fwd); i++)
		ok |= fwd[i] == signo;
	if (!ok)
		return err_set("kill: signal %d cannot be passed into the VM (HUP INT QUIT USR1 USR2 ALRM TERM WINCH CONT TSTP KILL can)",
			       signo);
	if (proc_start(s.pid) != s.start || kill(s.pid, signo) < 0)
		return err_set("container %s is not running", id);
	return 0;
}

static int oci_delete(int argc, char **argv)
{
	const char *id;
	bool force = false;
	struct state s;
	if (one_id(argc, argv, "delete", &id, &force, NULL) < 0)
		return -1;
	char cdir[PATH_MAX];
	if (cdir_of(id, cdir, sizeof(cdir)) < 0)
		return -1;
	if (load_state(id, &s) < 0) {
		struct stat st;
		if (force && lstat(cdir, &st) == 0 && S_ISDIR(st.st_mode))	/* half made: removed */
			return remove_cdir(cdir);
		return force && errno == ENOENT ? 0 : -1;
	}
	free(s.annotations);
	if (!strcmp(s.status, "running") && !force)
		return err_set("container %s is running: stop it first (kill), or delete --force", id);
	if (strcmp(s.status, "stopped")) {	/* created, or forced: the process and its VM go */
		if (proc_start(s.pid) == s.start)
			kill(s.pid, SIGKILL);
		for (int i = 0; i < 500 && proc_start(s.pid) == s.start; i++)
			usleep(10000);
	}
	return remove_cdir(cdir);
}

/* --format's value for list and ps: table or json. */
static int format_opt(const char *cmd, const char *v, bool *json)
{
	if (strcmp(v, "json") && strcmp(v, "table"))
		return err_set("%s: --format table or json, not '%.20s'", cmd, v);
	*json = !strcmp(v, "json");
	return 0;
}

static int oci_list(int argc, char **argv)
{
	bool json = false, quiet = false;
	for (int i = 1; i < argc; i++) {
		const char *v;
		bool missing = false;
		if ((v = opt_val(argc, argv, &i, "--format", "-f", &missing))) {
			if (format_opt("list", v, &json) < 0)
				return -1;
		} else if (is_flag(argv[i], "--quiet", "-q")) {
			quiet = true;
		} else {
			return err_set("list: unknown option %s", argv[i]);
		}
	}
	int r = check_root(false);
	if (r < 0)
		return -1;
	DIR *d = r ? NULL : opendir(state_root);
	if (!quiet && !json)
		printf("%-24s %-8s %-8s %-30s %s\n", "ID", "PID", "STATUS", "BUNDLE", "CREATED");
	if (json)
		printf("[");
	int k = 0;
	for (struct dirent *e; d && (e = readdir(d));) {
		struct state s;
		if (!oci_id_ok(e->d_name) || load_state(e->d_name, &s) < 0)
			continue;
		if (quiet)
			printf("%s\n", s.id);
		else if (json) {
			if (k)
				printf(",");
			print_state(&s, stdout);
		} else
			printf("%-24s %-8d %-8s %-30s %s\n", s.id, strcmp(s.status, "stopped") ? (int)s.pid : 0, s.status,
			       s.bundle, s.created);
		k++;
		free(s.annotations);
	}
	if (json)
		printf("]\n");
	if (d)
		closedir(d);
	return 0;
}

/* The host processes that stand for a container, as `runc ps` lists its cgroup's: the
 * container's process and the VM it runs (its children). */
static int oci_ps(int argc, char **argv)
{
	const char *id = NULL;
	bool json = false;
	for (int i = 1; i < argc; i++) {
		const char *v;
		bool missing = false;
		if ((v = opt_val(argc, argv, &i, "--format", "-f", &missing))) {
			if (format_opt("ps", v, &json) < 0)
				return -1;
		} else if (missing)
			return err_set("ps: %s needs a value", argv[i]);
		else if (!id && argv[i][0] == '-')
			return err_set("ps: unknown option %s", argv[i]);
		else if (!id)
			id = argv[i];
		/* after the id: ps(1)'s options under runc, meaningless here */
	}
	if (!id)
		return err_set("ps: needs a container id");
	struct state s;
	if (load_state(id, &s) < 0)
		return -1;
	free(s.annotations);
	pid_t pids[64];
	int n = 0;
	if (strcmp(s.status, "stopped")) {
		pids[n++] = s.pid;
		char path[96], buf[1024];
		snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)s.pid, (int)s.pid);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		ssize_t k = fd < 0 ? 0 : read(fd, buf, sizeof(buf) - 1);
		if (fd >= 0)
			close(fd);
		buf[k > 0 ? k : 0] = 0;
		for (char *p = buf, *e; n < (int)ARRAY_SIZE(pids) && *p; p = e) {
			long v = strtol(p, &e, 10);
			if (e == p)
				break;
			if (v > 0)
				pids[n++] = v;
		}
		if (proc_start(s.pid) != s.start)	/* gone while we looked */
			n = 0;
	}
	if (json) {
		printf("[");
		for (int i = 0; i < n; i++)
			printf("%s%d", i ? "," : "", (int)pids[i]);
		printf("]\n");
	} else {
		printf("PID\n");
		for (int i = 0; i < n; i++)
			printf("%d\n", (int)pids[i]);
	}
	return 0;
}

static int oci_features(void)
{
	printf("{\"ociVersionMin\":\"1.0.0\",\"ociVersionMax\":\"" OCI_VERSION "\","
	       "\"hooks\":[],"
	       "\"mountOptions\":[\"ro\",\"rw\",\"nosuid\",\"suid\",\"nodev\",\"dev\",\"noexec\",\"exec\",\"relatime\","
	       "\"strictatime\",\"noatime\",\"sync\",\"bind\",\"rbind\"],"
	       "\"linux\":{\"namespaces\":[],\"capabilities\":[],\"cgroup\":{\"v1\":false,\"v2\":false},"
	       "\"seccomp\":{\"enabled\":false},\"apparmor\":{\"enabled\":false},\"selinux\":{\"enabled\":false}},"
	       "\"annotations\":{\"org.lkvm.kernel\":\"the guest kernel\",\"org.lkvm.mem\":\"guest RAM (256M)\","
	       "\"org.lkvm.cpus\":\"vCPUs\",\"org.lkvm.isolation\":\"vm\"}}\n");
	return 0;
}

/* ---- exec ---- */

static int cmd_exec_oci(int argc, char **argv)
{
	const char *id = NULL, *process = NULL, *pid_file = NULL, *console = NULL, *cwd = NULL, *user = NULL;
	bool detach = false, tty = false;
	char **env = NULL;
	int nenv = 0, args_at = -1;
	for (int i = 1; i < argc; i++) {
		const char *v;
		bool missing = false;
		if (id && !strcmp(argv[i], "--")) {
			args_at = i + 1;
			break;
		}
		if ((v = opt_val(argc, argv, &i, "--process", "-p", &missing)))
			process = v;
		else if ((v = opt_val(argc, argv, &i, "--pid-file", NULL, &missing)))
			pid_file = v;
		else if ((v = opt_val(argc, argv, &i, "--console-socket", NULL, &missing)))
			console = v;
		else if ((v = opt_val(argc, argv, &i, "--cwd", NULL, &missing)))
			cwd = v;
		else if ((v = opt_val(argc, argv, &i, "--user", "-u", &missing)))
			user = v;
		else if ((v = opt_val(argc, argv, &i, "--env", "-e", &missing))) {
			env = realloc(env, (nenv + 2) * sizeof(char *));
			env[nenv++] = (char *)v;
		} else if ((v = opt_val(argc, argv, &i, "--preserve-fds", NULL, &missing)) ||
			   (v = opt_val(argc, argv, &i, "--cap", "-c", &missing)) ||
			   (v = opt_val(argc, argv, &i, "--apparmor", NULL, &missing)) ||
			   (v = opt_val(argc, argv, &i, "--process-label", NULL, &missing)) ||
			   (v = opt_val(argc, argv, &i, "--cgroup", NULL, &missing)))
			;
		else if (is_flag(argv[i], "--detach", "-d"))
			detach = true;
		else if (is_flag(argv[i], "--tty", "-t"))
			tty = true;
		else if (is_flag(argv[i], "--no-new-privs", NULL) || is_flag(argv[i], "--ignore-paused", NULL))
			;
		else if (missing)
			return err_set("exec: %s needs a value", argv[i]);
		else if (argv[i][0] == '-')
			return err_set("exec: unknown option %s", argv[i]);
		else if (!id)
			id = argv[i];
		else {
			args_at = i;
			break;
		}
	}
	if (!id)
		return err_set("exec: needs a container id");
	struct oci_process p;
	memset(&p, 0, sizeof(p));
	if (process) {
		uint8_t *text = NULL;
		size_t len = 0;
		if (read_file(process, &text, &len) < 0)
			return -1;
		struct json_node *n = json_parse((char *)text, len);
		free(text);
		if (!n)
			return err_set("--process %s: bad JSON: %s", process, err_msg());
		int r = oci_process_parse(&p, n);
		json_tree_free(n);
		if (r < 0) {
			char m[300];
			snprintf(m, sizeof(m), "%s", err_msg());
			return err_set("--process %s: %s", process, m);
		}
	} else {
		if (args_at < 0 || args_at >= argc)
			return err_set("exec %s: needs --process FILE or the command's arguments", id);
		p.nargs = argc - args_at;
		p.args = xcalloc(p.nargs + 1, sizeof(char *));
		for (int i = 0; i < p.nargs; i++)
			p.args[i] = xstrdup(argv[args_at + i]);
		p.env = xcalloc(nenv + 2, sizeof(char *));
		p.env[p.nenv++] = xstrdup("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
		strcpy(p.cwd, "/");
		p.terminal = tty;
	}
	for (int i = 0; i < nenv; i++) {
		if (!strchr(env[i], '='))
			return err_set("exec: --env %.60s: not NAME=VALUE", env[i]);
		p.env = realloc(p.env, (p.nenv + 2) * sizeof(char *));
		p.env[p.nenv++] = xstrdup(env[i]);
		p.env[p.nenv] = NULL;
	}
	free(env);
	if (cwd) {
		if (cwd[0] != '/')
			return err_set("exec: --cwd %s: an absolute path", cwd);
		snprintf(p.cwd, sizeof(p.cwd), "%s", cwd);
	}
	if (user) {
		unsigned u, g = 0;
		char c;
		int n = sscanf(user, "%u:%u%c", &u, &g, &c);
		if (n != 1 && n != 2)
			return err_set("exec: --user %s: UID[:GID] in numbers", user);
		p.uid = u;
		p.gid = g;
	}
	struct state s;
	if (load_state(id, &s) < 0)
		return -1;
	free(s.annotations);
	if (strcmp(s.status, "running"))
		return err_set("container %s is %s, not running", id, s.status);
	int slave = -1;
	if (p.terminal && make_console(console, &slave) < 0)
		return -1;
	char vpath[PATH_MAX + 16];
	snprintf(vpath, sizeof(vpath), "%s/%s/v.sock", state_root, id);
	struct agent_buf exec = { 0 };
	if (oci_exec_records(&exec, &p, slave) < 0)
		return -1;
	int sync[2] = { -1, -1 };
	if (detach && pipe2(sync, O_CLOEXEC) < 0)
		return err_errno("pipe");
	fflush(NULL);
	pid_t child = detach ? fork() : 0;
	if (child < 0)
		return err_errno("fork");
	if (child > 0) {	/* detached: the session's process is the exec'd process's stand-in */
		close(sync[1]);
		if (slave >= 0)
			close(slave);
		char msg[600] = "";
		ssize_t n = read(sync[0], msg, sizeof(msg) - 1);
		msg[n > 0 ? n : 0] = 0;
		close(sync[0]);
		msg[strcspn(msg, "\n")] = 0;
		if (strcmp(msg, "ok")) {
			waitpid(child, NULL, 0);
			return err_set("exec %s: %s", id, msg[0] ? msg : "the session ended at once");
		}
		if (pid_file && write_pid_file(pid_file, child) < 0)
			return -1;
		return 0;
	}
	if (detach) {
		close(sync[0]);
		setsid();
	}
	if (slave >= 0) {
		dup2(slave, 0);
		dup2(slave, 1);
		dup2(slave, 2);
		if (slave > 2)
			close(slave);
	}
	int fd = vsock_host_connect(vpath, AGENT_PORT_EXEC, VSOCK_HANDSHAKE_MS, NULL);
	if (fd < 0) {
		if (detach) {
			dprintf(sync[1], "%s\n", err_msg());
			_exit(1);
		}
		return -1;
	}
	if (detach) {
		if (write(sync[1], "ok\n", 3) < 0) {}
		close(sync[1]);
	}
	sigset_t old;
	int sigfd = agent_session_signals(false, &old);
	struct agent_session ss = { .fd = fd, .exec = &exec, .tty = p.terminal, .sigfd = sigfd, .vm_fd = -1,
				    .in_fd = 0, .out_fd = 1, .err_fd = 2 };
	int status = agent_host_run(&ss);
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(fd);
	free(exec.data);
	oci_process_free(&p);
	if (status < 0) {
		oci_log("error", "exec %s: %s", id, err_msg());
		status = 1;
	}
	if (detach)
		_exit(status);
	exit(status);
}

/* ---- dispatch ---- */

int cmd_oci(int argc, char **argv)
{
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		const char *v;
		bool missing = false;
		if ((v = opt_val(argc, argv, &i, "--root", NULL, &missing)))
			state_root = v;
		else if ((v = opt_val(argc, argv, &i, "--log", NULL, &missing)))
			log_path = v;
		else if ((v = opt_val(argc, argv, &i, "--log-format", NULL, &missing))) {
			if (strcmp(v, "json") && strcmp(v, "text")) {
				fprintf(stderr, "lkvm oci: --log-format json or text, not '%s'\n", v);
				return EXIT_USAGE;
			}
			log_json = !strcmp(v, "json");
		} else if ((v = opt_val(argc, argv, &i, "--criu", NULL, &missing)) ||
			   (v = opt_val(argc, argv, &i, "--rootless", NULL, &missing)) ||
			   (v = opt_val(argc, argv, &i, "--log-level", NULL, &missing)) ||
			   (v = opt_val(argc, argv, &i, "--cgroup-manager", NULL, &missing)))
			;	/* engines' flags that mean nothing for a VM */
		else if (is_flag(argv[i], "--systemd-cgroup", NULL) || is_flag(argv[i], "--debug", NULL) ||
			 is_flag(argv[i], "--no-subreaper", NULL))
			;
		else if (is_flag(argv[i], "--version", "-v")) {
			printf("lkvm-oci version 1.0\nspec: " OCI_VERSION "\n");
			return 0;
		} else if (is_flag(argv[i], "--help", "-h"))
			return usage(), 0;
		else {
			fprintf(stderr, "lkvm oci: %s\n", missing ? "an option needs a value" : "unknown global option");
			oci_log("error", "%s: %s", argv[i], missing ? "needs a value" : "unknown global option");
			return EXIT_USAGE;
		}
	}
	if (i >= argc)
		return usage();
	const char *cmd = argv[i];
	int sub_argc = argc - i;
	char **sub = argv + i;
	int r;
	if (!strcmp(cmd, "create"))
		r = oci_create(sub_argc, sub);
	else if (!strcmp(cmd, "run")) {
		/* create, then start, then wait as the container's parent would */
		r = oci_create(sub_argc, sub);
		const char *id = NULL;
		if (r == 0) {
			for (int k = 1; k < sub_argc; k++)
				if (sub[k][0] != '-' && (k == 1 || (strcmp(sub[k - 1], "--bundle") && strcmp(sub[k - 1], "-b") &&
							      strcmp(sub[k - 1], "--pid-file") &&
							      strcmp(sub[k - 1], "--console-socket"))))
					id = sub[k];
			char *sargv[] = { "start", (char *)id, NULL };
			struct state s;
			if (oci_start(2, sargv) < 0)
				r = -1;
			else if (load_state(id, &s) == 0) {
				while (proc_start(s.pid) == s.start)
					usleep(50000);
				free(s.annotations);
				load_state(id, &s);
				free(s.annotations);
				return s.exit < 0 ? 1 : s.exit;
			}
		}
	} else if (!strcmp(cmd, "start"))
		r = oci_start(sub_argc, sub);
	else if (!strcmp(cmd, "state"))
		r = oci_state(sub_argc, sub);
	else if (!strcmp(cmd, "kill"))
		r = oci_kill(sub_argc, sub);
	else if (!strcmp(cmd, "delete"))
		r = oci_delete(sub_argc, sub);
	else if (!strcmp(cmd, "exec"))
		r = cmd_exec_oci(sub_argc, sub);
	else if (!strcmp(cmd, "list"))
		r = oci_list(sub_argc, sub);
	else if (!strcmp(cmd, "ps"))
		r = oci_ps(sub_argc, sub);
	else if (!strcmp(cmd, "features"))
		r = oci_features();
	else if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
		printf("lkvm-oci version 1.0\nspec: " OCI_VERSION "\n");
		r = 0;
	} else
		r = err_set("unknown command '%.40s' (create start state kill delete exec list ps features)", cmd);
	if (r < 0) {
		oci_log("error", "%s", err_msg());
		return 1;
	}
	return 0;
}
