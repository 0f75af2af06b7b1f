/*
 * lkvm sandbox [options] -- COMMAND [ARGS]: run one command in a fresh VM
 * whose root is the host's own / (read-only over virtio-9p, with a tmpfs
 * overlay on top by default), and return the command's exit status.
 *
 * The guest's init is this very binary (on the shared root at the same
 * path): the kernel starts it as `lkvm sandbox-init`, lkvm's agent
 * (cmd/agent.c), which connects back over virtio-vsock. The command, its
 * environment and the mounts travel in frames (docs/agent-protocol.md), so
 * nothing is re-parsed by the kernel's command-line splitter, and its stdin,
 * stdout and stderr are streams of their own, apart from the console (kernel
 * messages go to --console-log FILE or nowhere).
 *
 * This process keeps the session (cmd/agent_host.c): the VM runs in a child
 * process of its own group (a terminal's ^C reaches this process, which
 * forwards it to the command, not the VM). The scratch folder
 * (cmd/scratch.c), closed to every other host user, holds the guest's /tmp
 * and the vsock sockets.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "agent_host.h"
#include "commands.h"
#include "control.h"
#include "run.h"
#include "sandbox_cache.h"
#include "sandbox_confine.h"
#include "sandbox_jail.h"
#include "scratch.h"
#include "util.h"
#include "vsock.h"

#define SCRATCH_TAG "lkvm-scratch"
#define CWD_TAG "lkvm-cwd"	/* the working directory, when the guest's /tmp would hide it */
#define SANDBOX_CID "3"
#define MAX_VOLUMES 32
#define WARM_CONNECT_MS 60000	/* a restored VM's agent connects long before (it runs, no boot) */

static int usage(void)
{
	fprintf(stderr,
		"usage: lkvm sandbox [options] [run options] -- COMMAND [ARGS...]\n"
		"Run COMMAND in a new VM whose root is a read-only view of this host's / (its\n"
		"programs, libraries, /etc without secrets, the working tree; a throw-away overlay\n"
		"on top) and a scratch /tmp; its stdin, stdout, stderr and exit status are lkvm's.\n"
		"  -e NAME[=VALUE]     set a variable (bare NAME: the host's value); repeatable\n"
		"  --env-file FILE     NAME=VALUE lines (# comments)\n"
		"  -v HOST[:GUEST][:ro|:rw]  share a host folder (default GUEST = HOST); repeatable\n"
		"  -w DIR              working directory (default: the current one)\n"
		"  -t                  give the command a terminal (the default when stdin is one)\n"
		"  --timeout SECS      end the command (SIGTERM, SIGKILL 2 s later): status 124\n"
		"  --console-log FILE  the guest's console (kernel messages) goes there\n"
		"  --root              run as root, not as your uid and gid\n"
		"  --no-overlay        no overlay: the root stays read-only\n"
		"  --kdir DIR          a kernel build tree whose modules modprobe finds in the guest\n"
		"  --name NAME         the VM's name (lkvm exec NAME -- CMD runs more in it)\n"
		"  --expose PATH       add a host path to the view (repeatable)\n"
		"  --host-root         share the host's whole / instead (read-only)\n"
		"  --host-loopback     let 10.0.2.2 reach the host's 127.0.0.1\n"
		"  --net-allow HOST[/BITS][:PORT]  reach a private or link-local address (repeatable)\n"
		"  --snapshot-cache[=DIR]  boot once to the agent, save the VM in DIR (default\n"
		"                      $XDG_CACHE_HOME/lkvm/sandbox), restore it on later runs\n"
		"  --jail, --no-jail, --jail-user USER  (lkvm run's) started as root, the VM's lkvm is\n"
		"                      jailed by default; writable -v shares through id-mapped clones\n"
		"The kernel (-k, or $LKVM_KERNEL) needs virtio-pci, 9p, vsock and overlayfs built in.\n");
	return EXIT_USAGE;
}

struct sb {
	char **env;
	int nr_env;
	const char *workdir, *console_log, *kdir, *name, *kernel, *vsock_opt, *initrd, *cache_dir;
	bool cache;
	char volumes[MAX_VOLUMES][PATH_MAX + 80];	/* the --9p options */
	char vol_guest[MAX_VOLUMES][PATH_MAX];
	char vol_host[MAX_VOLUMES][PATH_MAX];
	bool vol_ro[MAX_VOLUMES];
	int nr_vol;
	bool tty, root, no_overlay, no_net;
	int timeout;
};

/* -v HOST[:GUEST][:ro|:rw] */
static int parse_volume(struct sb *o, const char *spec)
{
	char buf[2 * PATH_MAX], real[PATH_MAX];
	if (o->nr_vol == MAX_VOLUMES)
		return err_set("-v %s: at most %d shared folders", spec, MAX_VOLUMES);
	snprintf(buf, sizeof(buf), "%s", spec);
	char *host = buf, *guest = NULL, *mode = NULL, *c = strchr(buf, ':');
	if (c) {
		*c = 0;
		guest = c + 1;
		if ((c = strchr(guest, ':'))) {
			*c = 0;
			mode = c + 1;
		} else if (!strcmp(guest, "ro") || !strcmp(guest, "rw")) {
			mode = guest;
			guest = NULL;
		}
	}
	if (mode && strcmp(mode, "ro") && strcmp(mode, "rw"))
		return err_set("-v %s: the mode is ro or rw, not '%s'", spec, mode);
	struct stat st;
	if (!*host || !realpath(host, real) || stat(real, &st) < 0)
		return err_set("-v %s: no such folder %s", spec, host);
	if (!S_ISDIR(st.st_mode))
		return err_set("-v %s: %s is not a folder", spec, host);
	if (strchr(real, ','))
		return err_set("-v %s: a comma in the folder's path cannot be shared", spec);
	if (guest && (guest[0] != '/' || strchr(guest, ' ') || strstr(guest, "/../")))
		return err_set("-v %s: the guest path must be absolute (and without spaces or /../)", spec);
	snprintf(o->vol_guest[o->nr_vol], PATH_MAX, "%s", guest && *guest ? guest : real);
	o->vol_ro[o->nr_vol] = mode && !strcmp(mode, "ro");
	snprintf(o->vol_host[o->nr_vol], PATH_MAX, "%s", real);
	snprintf(o->volumes[o->nr_vol], sizeof(o->volumes[0]), "%s,lkvm-v%d%s", real, o->nr_vol,
		 o->vol_ro[o->nr_vol] ? ",ro" : "");
	o->nr_vol++;
	return 0;
}

/* --opt VALUE or --opt=VALUE: the value, or NULL when argv[*i] is not opt. */
static const char *value_of(int argc, char **argv, int *i, const char *shrt, const char *lng, bool *missing)
{
	const char *a = argv[*i];
	size_t n = strlen(lng);
	if ((shrt && !strcmp(a, shrt)) || !strcmp(a, lng)) {
		if (*i + 1 >= argc) {
			*missing = true;
			return NULL;
		}
		return argv[++*i];
	}
	if (!strncmp(a, lng, n) && a[n] == '=')
		return a + n + 1;
	return NULL;
}

/* Our options out of argv[1..dash); the rest (lkvm run's) into rargs. */
static int parse_options(struct sb *o, int argc, char **argv, int dash, char **rargs, int *nr)
{
	for (int i = 1; i < dash; i++) {
		const char *v;
		bool missing = false;
		if ((v = value_of(dash, argv, &i, "-e", "--env", &missing))) {
			if (agent_env_add(&o->env, &o->nr_env, v) < 0)
				return -1;
		} else if ((v = value_of(dash, argv, &i, NULL, "--env-file", &missing))) {
			if (agent_env_file(&o->env, &o->nr_env, v) < 0)
				return -1;
		} else if ((v = value_of(dash, argv, &i, "-v", "--volume", &missing))) {
			if (parse_volume(o, v) < 0)
				return -1;
		} else if ((v = value_of(dash, argv, &i, "-w", "--workdir", &missing))) {
			if (v[0] != '/')
				return err_set("-w %s: the working directory must be an absolute path", v);
			o->workdir = v;
		} else if ((v = value_of(dash, argv, &i, NULL, "--timeout", &missing))) {
			char *end;
			long t = strtol(v, &end, 10);
			if (*end || end == v || t < 1 || t > 86400 * 365)
				return err_set("--timeout %s: a number of seconds, at least 1", v);
			o->timeout = t;
		} else if ((v = value_of(dash, argv, &i, NULL, "--console-log", &missing))) {
			o->console_log = v;
		} else if ((v = value_of(dash, argv, &i, NULL, "--kdir", &missing))) {
			o->kdir = v;
		} else if ((v = value_of(dash, argv, &i, NULL, "--name", &missing))) {
			o->name = v;
		} else if (!missing && !strcmp(argv[i], "-t")) {
			o->tty = true;
		} else if (!strcmp(argv[i], "--snapshot-cache") || !strncmp(argv[i], "--snapshot-cache=", 17)) {
			o->cache = true;
			if (argv[i][16] == '=')
				o->cache_dir = argv[i] + 17;
			else if (i + 1 < dash && argv[i + 1][0] != '-')
				o->cache_dir = argv[++i];
		} else if (!strcmp(argv[i], "--root")) {
			o->root = true;
		} else if (!strcmp(argv[i], "--overlay")) {
			o->no_overlay = false;
		} else if (!strcmp(argv[i], "--no-overlay")) {
			o->no_overlay = true;
		} else if (!missing) {
			/* lkvm run's: noted where the sandbox needs them, passed on */
			const char *a = argv[i];
			if ((!strcmp(a, "-k") || !strcmp(a, "--kernel")) && i + 1 < dash)
				o->kernel = argv[i + 1];
			else if (!strncmp(a, "--kernel=", 9))
				o->kernel = a + 9;
			if ((!strcmp(a, "-i") || !strcmp(a, "--initrd")) && i + 1 < dash)
				o->initrd = argv[i + 1];
			else if (!strncmp(a, "--initrd=", 9))
				o->initrd = a + 9;
			if (!strcmp(a, "--vsock") && i + 1 < dash)
				o->vsock_opt = argv[i + 1];
			else if (!strncmp(a, "--vsock=", 8))
				o->vsock_opt = a + 8;
			const char *net = !strcmp(a, "--network") && i + 1 < dash ? argv[i + 1] :
					  !strncmp(a, "--network=", 10) ? a + 10 : NULL;
			if (net && !strstr(net, "mode=user"))
				o->no_net = true;
			rargs[(*nr)++] = argv[i];
		}
		if (missing)
			return err_set("%s needs a value", argv[i]);
	}
	return 0;
}

static int pidfd_open(pid_t pid) { return syscall(SYS_pidfd_open, pid, 0); }

/* The VM's process: its own group (a terminal's ^C is for the command), gone with us. */
static void vm_child_setup(int log_fd, const sigset_t *mask)
{
	setpgid(0, 0);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	int null = open("/dev/null", O_RDWR);
	dup2(null, 0);
	dup2(log_fd >= 0 ? log_fd : null, 1);
	sigprocmask(SIG_SETMASK, mask, NULL);
}

static void vm_child(int log_fd, int argc, char **rargv, const sigset_t *mask)
{
	vm_child_setup(log_fd, mask);
	_exit(cmd_run(argc, rargv));
}

/* The same, restored from the snapshot cache's entry with this run's shares, socket, name and network. */
static void vm_restore_child(int log_fd, const char *entry, int nr, char **args, const sigset_t *mask)
{
	vm_child_setup(log_fd, mask);
	_exit(run_restore(entry, false, nr, args));
}

/* `lkvm snapshot NAME DIR` in a child (its words are not the command's output): 0, or -1 with err set. */
static int take_snapshot(const char *name, const char *dir)
{
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return err_errno("pipe");
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return err_errno("fork");
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		dup2(null, 0);
		dup2(null, 1);
		dup2(pfd[1], 2);
		char *av[] = { "snapshot", (char *)name, (char *)dir, NULL };
		_exit(cmd_snapshot(3, av));
	}
	close(pfd[1]);
	char msg[512];
	size_t got = 0;
	for (ssize_t r; got < sizeof(msg) - 1 && (r = read(pfd[0], msg + got, sizeof(msg) - 1 - got)) > 0;)
		got += r;
	close(pfd[0]);
	msg[got] = 0;
	msg[strcspn(msg, "\n")] = 0;
	int st = 0;
	waitpid(pid, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		return err_set("%s", *msg ? msg : "lkvm snapshot failed");
	return 0;
}

/* The text of everything but the files that shapes the VM booted to the agent's ready point: the cache key's. */
static int cache_desc(char *out, size_t len, const struct sb *o, const struct sandbox_confine *conf, char **rargs,
		      int nr, bool cwd_shared, const char *kdir, bool has_net)
{
	size_t n = 0;
#define ADD(...) do { if (n < len) n += snprintf(out + n, len - n, __VA_ARGS__); } while (0)
	ADD("lkvm sandbox cache 1\n");
	for (int i = 0; i < nr; i++)
		ADD("run %s\n", rargs[i]);
	ADD("host-root %d host-loopback %d net %d %s\n", conf->host_root, conf->host_loopback, has_net, has_net ? "" : conf->net);
	for (int i = 0; i < conf->nr_allow; i++)
		ADD("net-allow %s\n", conf->allow[i]);
	for (int i = 0; i < conf->nr_expose; i++)
		ADD("expose %s\n", conf->expose[i]);
	ADD("cwd-share %d volumes %d", cwd_shared, o->nr_vol);
	for (int i = 0; i < o->nr_vol; i++)
		ADD(" %s", o->vol_ro[i] ? "ro" : "rw");
	ADD("\nkdir %s console-log %d vsock %s\n", kdir, o->console_log != NULL, o->vsock_opt ? o->vsock_opt : "");
#undef ADD
	return n < len ? 0 : err_set("--snapshot-cache: too many options to make a key of");
}

/* Wait up to ms for the VM process; then it is killed. Its exit status. */
static int reap_vm(pid_t pid, int pidfd, int ms)
{
	struct pollfd p = { .fd = pidfd, .events = POLLIN };
	if (pidfd < 0 || poll(&p, 1, ms) <= 0)
		kill(pid, SIGKILL);
	int st = 0;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Why the agent never connected, if it could say (the scratch /tmp). */
static bool agent_left_error(const struct scratch *sc)
{
	char path[PATH_MAX + 64], msg[512];
	snprintf(path, sizeof(path), "%s/" AGENT_ERROR_FILE, sc->share);
	int fd = open(path, O_RDONLY | O_NOFOLLOW);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, msg, sizeof(msg) - 1);
	close(fd);
	if (n <= 0)
		return false;
	for (ssize_t i = 0; i < n; i++)
		if (msg[i] < ' ' || msg[i] > '~')
			msg[i] = '?';
	msg[n] = 0;
	fprintf(stderr, "lkvm sandbox: %s\n", msg);
	return true;
}

/* A kernel build tree: -k points into it (its arch/x86/boot/bzImage or vmlinux) and it built modules. */
static bool kernel_tree_of(const char *dir, const char *kernel)
{
	char d[PATH_MAX], k[PATH_MAX], mod[PATH_MAX + 32];
	if (!kernel || !realpath(dir, d) || !realpath(kernel, k))
		return false;
	size_t n = strlen(d);
	snprintf(mod, sizeof(mod), "%s/modules.order", d);
	return !strncmp(k, d, n) && k[n] == '/' && access(mod, R_OK) == 0;
}

int cmd_sandbox(int argc, char **argv)
{
	int dash = 1;
	while (dash < argc && strcmp(argv[dash], "--"))
		dash++;
	if (dash >= argc - 1)
		return usage();
	/* The view and the network policy (cmd/sandbox_confine.c) take their options out first. */
	static struct sandbox_confine conf;
	if (sandbox_confine_parse(&conf, argc, argv, &dash) < 0)
		return fprintf(stderr, "lkvm sandbox: %s\n", err_msg()), EXIT_USAGE;
	for (argc = dash; argv[argc]; argc++)	/* argv[dash] is "--" still */
		;
	bool has_net;
	sandbox_confine_network(&conf, dash, argv, &has_net);
	static struct sb o;
	char **rargs = calloc(argc + 32, sizeof(char *));
	int nr = 0;
	o.tty = isatty(0);
	if (agent_env_defaults(&o.env, &o.nr_env) < 0 || parse_options(&o, argc, argv, dash, rargs, &nr) < 0) {
		fprintf(stderr, "lkvm sandbox: %s\n", err_msg());
		return EXIT_USAGE;
	}
	/* Jailed as root by default (cmd/sandbox_jail.c): what the jail cannot do steps back, or fails --jail. */
	static struct sandbox_jail sj;
	if (sandbox_jail_decide(&sj, rargs, nr, o.cache, o.vsock_opt != NULL) < 0) {
		fprintf(stderr, "lkvm sandbox: %s\n", err_msg());
		return EXIT_USAGE;
	}
	if (!o.kernel)
		o.kernel = getenv("LKVM_KERNEL");
	if (!o.kernel) {
		fprintf(stderr, "lkvm sandbox: no kernel: give -k KERNEL or set LKVM_KERNEL\n");
		return EXIT_USAGE;
	}
	char self[PATH_MAX], cwd[PATH_MAX], kdir[PATH_MAX] = "";
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return fprintf(stderr, "lkvm sandbox: cannot find my own binary (/proc/self/exe)\n"), EXIT_USAGE;
	self[n] = 0;
	if (!getcwd(cwd, sizeof(cwd)))
		strcpy(cwd, "/");
	if (o.kdir || kernel_tree_of(cwd, o.kernel)) {
		if (!realpath(o.kdir ? o.kdir : cwd, kdir) || strchr(kdir, ',')) {
			fprintf(stderr, "lkvm sandbox: --kdir %s: no such folder (or a comma in its path)\n", o.kdir);
			return EXIT_USAGE;
		}
		char order[PATH_MAX + 32];
		snprintf(order, sizeof(order), "%s/modules.order", kdir);
		if (access(order, R_OK) < 0) {
			fprintf(stderr, "lkvm sandbox: --kdir %s: no modules.order there (build the modules first)\n", kdir);
			return EXIT_USAGE;
		}
	}
	int log_fd = -1;
	if (o.console_log && (log_fd = open(o.console_log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0) {
		fprintf(stderr, "lkvm sandbox: --console-log %s: %s\n", o.console_log, strerror(errno));
		return EXIT_USAGE;
	}
	static struct scratch sc;
	if (scratch_create(&sc, "", 1) < 0) {
		fprintf(stderr, "lkvm sandbox: %s\n", err_msg());
		return EXIT_USAGE;
	}
	char junk[PATH_MAX + 64];
	snprintf(junk, sizeof(junk), "%s/" SCRATCH_JOB, sc.share);
	unlink(junk);
	/* The working tree through the root share (not a -v share's folder): the jail user reads it as itself. */
	const char *wd = o.workdir ? o.workdir : cwd;
	bool wd_shared = false;
	for (int i = 0; i < o.nr_vol; i++) {
		size_t n = strlen(o.vol_guest[i]);
		wd_shared |= !strncmp(wd, o.vol_guest[i], n) && (wd[n] == '/' || !wd[n] || n == 1);
	}
	if (sandbox_confine_views(&conf, sc.path, cwd, self) < 0 || sandbox_jail_check_read(&sj, self, false) < 0 ||
	    (!wd_shared && sandbox_jail_check_read(&sj, wd, true) < 0)) {
		fprintf(stderr, "lkvm sandbox: %s\n", err_msg());
		scratch_remove(&sc);
		return EXIT_USAGE;
	}
	/* Each writable share through an id-mapped clone; one that cannot be steps the jail back. */
	for (int i = 0; i < o.nr_vol && sj.on; i++) {
		if (o.vol_ro[i])
			continue;
		int fd = sandbox_jail_share(&sj, o.vol_host[i]);
		if (fd == -1) {
			fprintf(stderr, "lkvm sandbox: %s\n", err_msg());
			sandbox_jail_done(&sj);
			scratch_remove(&sc);
			return EXIT_USAGE;
		}
		if (fd >= 0)
			snprintf(o.volumes[i] + strlen(o.volumes[i]), sizeof(o.volumes[0]) - strlen(o.volumes[i]), ",fd=%d", fd);
	}
	if (!sj.on) {	/* stepped back after some clones: the shares are opened by path again */
		for (int i = 0; i < o.nr_vol; i++) {
			char *f = strstr(o.volumes[i], ",fd=");
			if (f)
				*f = 0;
		}
		sandbox_jail_done(&sj);
	}
	if (conf.host_root)
		fprintf(stderr, "lkvm sandbox: --host-root: the guest sees this host's whole / (read-only)\n");

	int status = EXIT_USAGE, lis = -1;
	char name[64], vpath[PATH_MAX + 16], lpath[PATH_MAX + 32] = "", link[PATH_MAX] = "", vsock_arg[PATH_MAX + 32];
	char **rargv = NULL;
	struct agent_buf setup = { 0 }, exec = { 0 };
	dev_t ldev = 0;
	ino_t lino = 0;
	if (o.name)
		snprintf(name, sizeof(name), "%s", o.name);
	else
		snprintf(name, sizeof(name), "sandbox-%d", (int)getpid());
	/* vsock: the user's --vsock (its uds= or the default path), else ours in the scratch folder. */
	if (o.vsock_opt) {
		const char *u = strstr(o.vsock_opt, "uds=");
		if (u)
			snprintf(vpath, sizeof(vpath), "%s", u + 4);
		else if (vsock_default_path(name, vpath, sizeof(vpath)) < 0)
			goto fail;
	} else {	/* jailed: in a folder of the jail user's, whose sockets the jailed lkvm may connect to */
		snprintf(vpath, sizeof(vpath), "%s/%sv.sock", sc.path, sj.on ? "vsock/" : "");
		snprintf(vsock_arg, sizeof(vsock_arg), SANDBOX_CID ",uds=%s", vpath);
		if (sj.on) {
			char vdir[PATH_MAX + 16];
			snprintf(vdir, sizeof(vdir), "%s/vsock", sc.path);
			if (sandbox_jail_give(&sj, vdir, true) < 0)
				goto fail;
		}
	}
	if (vsock_check_path(vpath) < 0 || vsock_port_path(vpath, AGENT_PORT_MAIN, lpath, sizeof(lpath)) < 0 ||
	    (lis = vsock_listen_path(lpath, &ldev, &lino)) < 0 || (!o.vsock_opt && sandbox_jail_give(&sj, lpath, false) < 0))
		goto fail;
	/* lkvm exec NAME finds the socket through <control dir>/NAME.agent. */
	char dir[256];
	if (control_dir(dir, sizeof(dir)) == 0) {
		snprintf(link, sizeof(link), "%s/%s.agent", dir, name);
		char prev[PATH_MAX];
		ssize_t pl = readlink(link, prev, sizeof(prev) - 1);
		if (pl > 0) {	/* another sandbox's, if its socket still listens */
			prev[pl] = 0;
			if (vsock_check_path(prev) < 0 && strstr(err_msg(), "in use")) {
				link[0] = 0;
				err_set("a sandbox named %s is running (lkvm exec %s -- ... reaches it)", name, name);
				goto fail;
			}
		}
		unlink(link);
		if (symlink(vpath, link) < 0)
			link[0] = 0;
	}

	/*
	 * lkvm run -p PARAMS [user's options] -k K --9p /,/dev/root,ro,xdev [--9p cwd] --9p SCRATCH
	 *   [-v shares] [--9p kdir] [--vsock 3,uds=PATH] --name NAME
	 * xdev: the host's /usr, /home or /boot may be mounts of their own, and the
	 * command needs them; the server still never enters proc, sysfs, debugfs and
	 * the like (they show as empty folders, which the guest mounts its own over).
	 */
	char params[PATH_MAX + 256], scratch_share[PATH_MAX + 32], cwd_share[2 * PATH_MAX + 32], kdir_share[PATH_MAX + 32];
	char root_share[PATH_MAX + 64];
	snprintf(root_share, sizeof(root_share), "/,/dev/root,ro,xdev%s%s", conf.view[0] ? ",view=" : "", conf.view);
	snprintf(params, sizeof(params),
		 "root=/dev/root rootfstype=9p rootflags=trans=virtio,version=9p2000.L,msize=262144 ro panic=-1 %s init=%s -- sandbox-init",
		 o.console_log ? "" : "quiet loglevel=1", self);
	rargv = calloc(argc + 64 + 2 * MAX_VOLUMES, sizeof(char *));
	int k = 0;
	rargv[k++] = "run";
	rargv[k++] = "-p";	/* first: the user's own -p comes later and wins (e.g. loglevel=7) */
	rargv[k++] = params;
	for (int i = 0; i < nr; i++)
		rargv[k++] = rargs[i];
	bool given = false;
	for (int i = 0; i < nr; i++)
		if (!strcmp(rargs[i], "-k") || !strncmp(rargs[i], "--kernel", 8))
			given = true;
	if (!given) {	/* from $LKVM_KERNEL */
		rargv[k++] = "-k";
		rargv[k++] = (char *)o.kernel;
	}
	if (!has_net) {	/* the internet, not what only this host reaches (net/user_policy.c) */
		rargv[k++] = "--network";
		rargv[k++] = conf.net;
	}
	rargv[k++] = "--9p";
	rargv[k++] = root_share;
	const char *workdir = o.workdir ? o.workdir : cwd;
	bool cwd_shared = !o.workdir && !strncmp(cwd, "/tmp/", 5) && !strchr(cwd, ',');
	if (cwd_shared) {	/* under the guest's scratch /tmp: shared on its own, read-only */
		snprintf(cwd_share, sizeof(cwd_share), "%s," CWD_TAG ",ro%s%s", cwd, conf.cwd_view[0] ? ",view=" : "",
			 conf.cwd_view);
		rargv[k++] = "--9p";
		rargv[k++] = cwd_share;
	}
	snprintf(scratch_share, sizeof(scratch_share), "%s," SCRATCH_TAG, sc.share);
	rargv[k++] = "--9p";
	rargv[k++] = scratch_share;
	for (int i = 0; i < o.nr_vol; i++) {
		rargv[k++] = "--9p";
		rargv[k++] = o.volumes[i];
	}
	if (*kdir) {
		snprintf(kdir_share, sizeof(kdir_share), "%s,lkvm-kdir,ro", kdir);
		rargv[k++] = "--9p";
		rargv[k++] = kdir_share;
	}
	if (!o.vsock_opt) {
		rargv[k++] = "--vsock";
		rargv[k++] = vsock_arg;
	}
	rargv[k++] = sj.on ? "--jail" : "--no-jail";	/* decided here: the run's default would step back for vsock */
	if (!o.name) {
		rargv[k++] = "--name";
		rargv[k++] = name;
	} else {
		rargv[k++] = "--name";	/* ours was taken out of the user's options */
		rargv[k++] = (char *)o.name;
	}
	rargv[k] = NULL;

	/*
	 * --snapshot-cache: a saved VM of these options, restored with this run's
	 * shares (same tags, this run's folders and views), socket, name and
	 * network; the mounts, the command and its environment come through the
	 * agent after the restore, as they do after a boot.
	 */
	static struct sandbox_cache cache;
	static char desc[16384], rname[96], rshares[2 + MAX_VOLUMES + 2][2 * PATH_MAX + 64], rvsock[PATH_MAX + 64];
	char *rst[2 + MAX_VOLUMES + 2 + 8 + SANDBOX_MAX_RULES];
	int nrst = 0;
	bool warm = false;
	if (o.cache) {
		char why[2 * PATH_MAX + 600];
		if (cache_desc(desc, sizeof(desc), &o, &conf, rargs, nr, cwd_shared, kdir, has_net) < 0 ||
		    sandbox_cache_open(&cache, o.cache_dir, desc, o.kernel, o.initrd, self) < 0)
			goto fail;
		int r = sandbox_cache_lookup(&cache, why, sizeof(why));
		if (r < 0)
			goto fail;
		if (*why)
			fprintf(stderr, "lkvm sandbox: %s; rebuilding it\n", why);
		warm = r == 1;
		snprintf(rname, sizeof(rname), "--name=%s", o.name ? o.name : name);
		rst[nrst++] = rname;
		int ns = 0;
		for (int i = 1; i < k; i++)	/* this run's --9p, in order */
			if (!strcmp(rargv[i - 1], "--9p") && ns < (int)ARRAY_SIZE(rshares)) {
				snprintf(rshares[ns], sizeof(rshares[0]), "--9p=%s", rargv[i]);
				rst[nrst++] = rshares[ns++];
			}
		snprintf(rvsock, sizeof(rvsock), "--vsock=%s", o.vsock_opt ? o.vsock_opt : vsock_arg);
		rst[nrst++] = rvsock;
		static char rnet[8][2200];
		int nn = 0;
		for (int i = 1; i < k && nn < 8; i++)	/* the network: ours, or the user's (policy added) */
			if (!strcmp(rargv[i - 1], "--network")) {
				snprintf(rnet[nn], sizeof(rnet[0]), "--network=%s", rargv[i]);
				rst[nrst++] = rnet[nn++];
			} else if (!strncmp(rargv[i], "--network=", 10)) {
				rst[nrst++] = rargv[i];
			}
	}

	/* SETUP and EXEC */
	char rec[PATH_MAX + 128];
	if (!o.no_overlay)
		agent_rec_add(&setup, REC_OVERLAY, "");
	if (!o.no_net)
		agent_rec_add(&setup, REC_NET, "");
	if (cwd_shared)
		agent_rec_add(&setup, REC_CWDSHARE, cwd);
	for (int i = 0; i < o.nr_vol; i++) {
		snprintf(rec, sizeof(rec), "lkvm-v%d %s %s", i, o.vol_ro[i] ? "ro" : "rw", o.vol_guest[i]);
		agent_rec_add(&setup, REC_VOLUME, rec);
	}
	if (*kdir) {
		snprintf(rec, sizeof(rec), "lkvm-kdir %s", kdir);
		agent_rec_add(&setup, REC_KDIR, rec);
	}
	/* The guest's random pool gets bytes of ours: VMs restored from one snapshot must not share it. */
	uint8_t seed[AGENT_SEED_BYTES];
	if (getrandom(seed, sizeof(seed), 0) == (ssize_t)sizeof(seed)) {
		for (int i = 0; i < AGENT_SEED_BYTES; i++)
			snprintf(rec + 2 * i, 3, "%02x", seed[i]);
		agent_rec_add(&setup, REC_SEED, rec);
		memset(seed, 0, sizeof(seed));
	}
	struct agent_cmd cmd = { .argv = argv + dash + 1, .env = o.env, .nr_env = o.nr_env, .cwd = workdir,
				 .root = o.root, .tty = o.tty };
	if (agent_exec_records(&exec, &cmd) < 0)
		goto fail;

	sigset_t old;	/* SIGCHLD too: the VM's end is read on its pidfd */
	int sigfd = agent_session_signals(true, &old);
again:
	fflush(NULL);
	pid_t vm = fork();
	if (vm < 0) {
		err_errno("fork");
		sigprocmask(SIG_SETMASK, &old, NULL);
		goto fail;
	}
	if (vm == 0) {
		close(lis);
		if (warm)
			vm_restore_child(log_fd, cache.entry, nrst, rst, &old);
		vm_child(log_fd, k, rargv, &old);
	}
	int pidfd = pidfd_open(vm);
	/* Until the agent connects: the VM may fail, or a signal end it all. */
	int conn = -1, sig = 0;
	/* A restored agent reconnects at once; one that does not (its guest broke) makes us boot instead. */
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (conn < 0) {
		struct pollfd p[3] = { { .fd = lis, .events = POLLIN }, { .fd = pidfd, .events = POLLIN },
				       { .fd = sigfd, .events = POLLIN } };
		int wait_ms = -1;
		if (warm) {
			struct timespec now;
			clock_gettime(CLOCK_MONOTONIC, &now);
			long long gone = (now.tv_sec - start.tv_sec) * 1000LL + (now.tv_nsec - start.tv_nsec) / 1000000;
			if (gone >= WARM_CONNECT_MS) {
				kill(vm, SIGKILL);
				break;
			}
			wait_ms = WARM_CONNECT_MS - gone;
		}
		if (poll(p, 3, wait_ms) < 0 && errno != EINTR)
			break;
		struct signalfd_siginfo si;
		if ((p[2].revents & POLLIN) && read(sigfd, &si, sizeof(si)) == sizeof(si) && si.ssi_signo != SIGWINCH) {
			sig = si.ssi_signo;
			break;
		}
		if (p[1].revents & POLLIN)
			break;
		if (p[0].revents & POLLIN)
			conn = accept4(lis, NULL, NULL, SOCK_CLOEXEC);
	}
	if (conn < 0 && !sig && warm) {	/* the entry did not restore (it said why): booted afresh and saved again */
		int st = reap_vm(vm, pidfd, 5000);
		close(pidfd);
		fprintf(stderr, "lkvm sandbox: snapshot cache entry %s could not be restored (status %d); rebuilding it\n",
			cache.entry, st);
		sandbox_cache_remove(cache.entry);
		warm = false;
		goto again;
	}
	if (conn >= 0 && o.cache && !warm) {	/* booted to the agent's ready point: save it (it goes on) */
		if (take_snapshot(o.name ? o.name : name, cache.tmp) < 0 || sandbox_cache_commit(&cache) < 0)
			fprintf(stderr, "lkvm sandbox: --snapshot-cache: not saved: %s\n", err_msg());
	}
	if (conn < 0) {
		if (sig) {
			kill(vm, SIGTERM);
			reap_vm(vm, pidfd, 5000);
			status = 128 + sig;
		} else {
			int st = reap_vm(vm, pidfd, 5000);
			if (!agent_left_error(&sc) && st != EXIT_USAGE)	/* 1: lkvm run said why */
				fprintf(stderr, "lkvm sandbox: the VM ended (status %d) before its agent connected%s\n", st,
					o.console_log ? "" : " (--console-log FILE keeps the kernel's messages)");
			status = st ? st : EXIT_USAGE;
		}
	} else {
		close(lis);
		lis = -1;
		struct agent_session s = { .fd = conn, .setup = &setup, .exec = &exec, .tty = o.tty, .timeout_s = o.timeout,
					   .sigfd = sigfd, .vm_fd = pidfd, .in_fd = 0, .out_fd = 1, .err_fd = 2 };
		status = agent_host_run(&s);
		close(conn);
		if (status < 0) {
			fprintf(stderr, "lkvm sandbox: %s\n", err_msg());
			/* A guest whose kernel or agent died ends its VM by itself: say so, and where to look. */
			struct pollfd vp = { .fd = pidfd, .events = POLLIN };
			bool ended = poll(&vp, 1, 3000) > 0;
			if (!ended)
				kill(vm, SIGTERM);
			int st = reap_vm(vm, pidfd, 5000);
			if (ended && !agent_left_error(&sc))
				fprintf(stderr, "lkvm sandbox: the VM ended by itself (status %d)%s\n", st,
					o.console_log ? "" : " (--console-log FILE keeps the kernel's messages)");
			status = st && st != 128 + SIGTERM ? st : EXIT_USAGE;
		} else {
			/* The agent powers off after the command; a VM that does not is stopped. */
			if (s.gave_up)
				kill(vm, SIGTERM);
			reap_vm(vm, pidfd, s.gave_up ? 5000 : 10000);
		}
	}
	if (pidfd >= 0)
		close(pidfd);
	if (sigfd >= 0)
		close(sigfd);
	sigprocmask(SIG_SETMASK, &old, NULL);
	goto out;
fail:
	fprintf(stderr, "lkvm sandbox: %s\n", err_msg());
out:
	free(rargv);
	sandbox_jail_done(&sj);
	if (lis >= 0)
		close(lis);
	vsock_unlink_path(lpath, ldev, lino);
	if (link[0])
		unlink(link);
	if (scratch_remove(&sc) < 0)
		fprintf(stderr, "lkvm sandbox: warning: %s\n", err_msg());
	free(setup.data);
	free(exec.data);
	return status;
}
