/*
 * lkvm sandbox [run options] -- COMMAND [ARGS]: run one command in a fresh
 * VM whose root is the host's own / (read-only, over virtio-9p) with a
 * writable scratch folder at /tmp, and return the command's exit status.
 *
 * The guest's init is this very binary (it is on the shared root at the same
 * path): the kernel starts it as `lkvm sandbox-init`, which mounts what the
 * command needs, runs it on the console and reports its status through the
 * debug-exit port. The command line travels in a file in the scratch folder,
 * so no argument is ever re-parsed by the kernel's command-line splitter. A
 * working directory under /tmp (which the scratch folder covers in the
 * guest) is shared on its own and mounted back at its path, read-only. The
 * scratch folder (cmd/scratch.c) is closed to every other host user, and the
 * guest mounts it nosuid,nodev.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>
#include "commands.h"
#include "jail.h"
#include "sandbox_confine.h"
#include "scratch.h"
#include "util.h"

#define SCRATCH_TAG "lkvm-scratch"
#define CWD_TAG "lkvm-cwd"	/* the working directory, when the guest's /tmp would hide it */
#define DEBUG_EXIT_PORT 0xf4

static int usage(void)
{
	fprintf(stderr, "usage: lkvm sandbox [sandbox options] [run options] -- COMMAND [ARGS...]\n"
			"Run COMMAND in a new VM whose root is a read-only view of this host's / (its\n"
			"programs, libraries, /etc without secrets, the working tree) with a writable\n"
			"scratch /tmp; its output passes through and its exit status is lkvm's.\n"
			"The kernel (-k, or $LKVM_KERNEL) needs virtio-pci and 9p built in.\n"
			"  --expose PATH            add a host path to the view (repeatable)\n"
			"  --host-root              share the host's whole / instead (read-only)\n"
			"  --host-loopback          let 10.0.2.2 reach the host's 127.0.0.1\n"
			"  --net-allow HOST[/BITS][:PORT]  reach a private or link-local address (repeatable)\n");
	return EXIT_USAGE;
}

/* The runner's jail options among the run options argv[1, end): what cmd_run will decide. */
static void jail_options(int end, char **argv, struct jail_opts *o)
{
	memset(o, 0, sizeof(*o));
	for (int i = 1; i < end; i++) {
		if (!strcmp(argv[i], "--jail"))
			o->mode = JAIL_ON;
		else if (!strcmp(argv[i], "--no-jail"))
			o->mode = JAIL_OFF;
		else if (!strcmp(argv[i], "--jail-user") && i + 1 < end)
			o->user = argv[++i];
		else if (!strncmp(argv[i], "--jail-user=", 12))
			o->user = argv[i] + 12;
	}
}

static pid_t runner;

static void forward(int sig)
{
	if (runner > 0)
		kill(runner, sig);
}

/*
 * cmd_run, jailed (lib/jail.c) when it will be: then in a child, so that
 * this process keeps the host's files to remove the scratch folder after it;
 * the jail user gets the guest's /tmp and its job file.
 */
static int run_jailable(struct scratch *sc, int k, char **rargv, int end, char **argv)
{
	struct jail_opts o;
	jail_options(end, argv, &o);
	if (!jail_wanted(&o))
		return cmd_run(k, rargv);
	uid_t uid;
	gid_t gid;
	char job[PATH_MAX + 32];
	snprintf(job, sizeof(job), "%s/" SCRATCH_JOB, sc->share);
	if (jail_user(&o, &uid, &gid) < 0) {
		fprintf(stderr, "lkvm sandbox: %s\n", err_msg());
		return EXIT_USAGE;
	}
	if (lchown(sc->share, uid, gid) < 0 || lchown(job, uid, gid) < 0) {
		fprintf(stderr, "lkvm sandbox: giving the scratch folder to the jail user: %s\n", strerror(errno));
		return EXIT_USAGE;
	}
	fflush(NULL);
	runner = fork();
	if (runner < 0) {
		fprintf(stderr, "lkvm sandbox: fork: %s\n", strerror(errno));
		return EXIT_USAGE;
	}
	if (runner == 0)
		_exit(cmd_run(k, rargv));
	struct sigaction sa = { .sa_handler = forward };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	int st = 0;
	while (waitpid(runner, &st, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int cmd_sandbox(int argc, char **argv)
{
	int dash = 1;
	while (dash < argc && strcmp(argv[dash], "--"))
		dash++;
	if (dash >= argc - 1)
		return usage();
	static struct sandbox_confine conf;
	if (sandbox_confine_parse(&conf, argc, argv, &dash) < 0)
		return fprintf(stderr, "lkvm sandbox: %s\n", err_msg()), EXIT_USAGE;
	for (argc = dash; argv[argc]; argc++)	/* argv[dash] is "--" still */
		;
	bool has_net;
	sandbox_confine_network(&conf, dash, argv, &has_net);
	char self[PATH_MAX], cwd[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return fprintf(stderr, "lkvm sandbox: cannot find my own binary (/proc/self/exe)\n"), EXIT_USAGE;
	self[n] = 0;
	if (!getcwd(cwd, sizeof(cwd)))
		strcpy(cwd, "/");
	/* The job: cwd, then argv, NUL-separated. */
	size_t len = strlen(cwd) + 1;
	for (int i = dash + 1; i < argc; i++)
		len += strlen(argv[i]) + 1;
	char *job = calloc(1, len), *p = job;
	p = stpcpy(p, cwd) + 1;
	for (int i = dash + 1; i < argc; i++)
		p = stpcpy(p, argv[i]) + 1;
	static struct scratch sc;
	int made = scratch_create(&sc, job, len);
	free(job);
	if (made < 0)
		return fprintf(stderr, "lkvm sandbox: %s\n", err_msg()), EXIT_USAGE;
	if (sandbox_confine_views(&conf, sc.path, cwd, self) < 0) {
		fprintf(stderr, "lkvm sandbox: %s\n", err_msg());
		scratch_remove(&sc);
		return EXIT_USAGE;
	}
	if (conf.host_root)
		fprintf(stderr, "lkvm sandbox: --host-root: the guest sees this host's whole / (read-only)\n");

	/*
	 * lkvm run [user's options] --9p /,/dev/root,ro,xdev --9p SCRATCH,lkvm-scratch -p ...
	 * xdev: the host's /usr, /home or /boot may be mounts of their own, and the
	 * command needs them; the server still never enters proc, sysfs, debugfs and
	 * the like (they show as empty folders, which the guest mounts its own over).
	 */
	char root_share[PATH_MAX + 64], scratch_share[PATH_MAX + 32], params[PATH_MAX + 256];
	snprintf(root_share, sizeof(root_share), "/,/dev/root,ro,xdev%s%s", conf.view[0] ? ",view=" : "", conf.view);
	snprintf(scratch_share, sizeof(scratch_share), "%s," SCRATCH_TAG, sc.share);
	snprintf(params, sizeof(params),
		 "root=/dev/root rootfstype=9p rootflags=trans=virtio,version=9p2000.L,msize=262144 ro "
		 "quiet loglevel=1 init=%s -- sandbox-init", self);
	char **rargv = calloc(argc + 14, sizeof(char *));
	int k = 0;
	rargv[k++] = "run";
	rargv[k++] = "-p";	/* first: the user's own -p comes later and wins (e.g. loglevel=7) */
	rargv[k++] = params;
	bool has_kernel = false;
	for (int i = 1; i < dash; i++) {
		if (!strcmp(argv[i], "-k") || !strncmp(argv[i], "--kernel", 8))
			has_kernel = true;
		rargv[k++] = argv[i];
	}
	if (!has_kernel) {
		const char *kernel = getenv("LKVM_KERNEL");
		if (!kernel) {
			scratch_remove(&sc);
			fprintf(stderr, "lkvm sandbox: no kernel: give -k KERNEL or set LKVM_KERNEL\n");
			return EXIT_USAGE;
		}
		rargv[k++] = "-k";
		rargv[k++] = (char *)kernel;
	}
	if (!has_net) {	/* the internet, not what only this host reaches (net/user_policy.c) */
		rargv[k++] = "--network";
		rargv[k++] = conf.net;
	}
	rargv[k++] = "--9p";
	rargv[k++] = root_share;
	char cwd_share[2 * PATH_MAX + 32];
	if (!strncmp(cwd, "/tmp/", 5)) {	/* under the guest's scratch /tmp: shared on its own */
		snprintf(cwd_share, sizeof(cwd_share), "%s," CWD_TAG ",ro%s%s", cwd, conf.cwd_view[0] ? ",view=" : "",
			 conf.cwd_view);
		rargv[k++] = "--9p";
		rargv[k++] = cwd_share;
	}
	rargv[k++] = "--9p";
	rargv[k++] = scratch_share;
	rargv[k] = NULL;
	int status = run_jailable(&sc, k, rargv, dash, argv);
	if (scratch_remove(&sc) < 0)
		fprintf(stderr, "lkvm sandbox: warning: %s\n", err_msg());
	free(rargv);
	return status;
}

/* ---- inside the guest: PID 1 ---- */

/* The status leaves through lkvm's debug-exit port: /dev/port (kernels without ioperm), else ioperm. */
static void report(int status)
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

int cmd_sandbox_init(int argc, char **argv)
{
	if (getpid() != 1) {
		fprintf(stderr, "lkvm sandbox-init: runs only as a sandbox guest's init\n");
		return EXIT_USAGE;
	}
	mount("proc", "/proc", "proc", 0, NULL);
	mount("sysfs", "/sys", "sysfs", 0, NULL);
	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	/* nosuid, nodev: nothing the command leaves in its /tmp runs with other rights (the server keeps
	 * setuid bits and device nodes off the host anyway) */
	if (mount(SCRATCH_TAG, "/tmp", "9p", MS_NOSUID | MS_NODEV, "trans=virtio,version=9p2000.L,msize=262144") < 0) {
		fprintf(stderr, "lkvm sandbox-init: mounting the scratch folder on /tmp: %s\n", strerror(errno));
		report(EXIT_USAGE);
	}
	mount("devpts", "/dev/pts", "devpts", 0, NULL);
	mount("tmpfs", "/dev/shm", "tmpfs", 0, NULL);
	mount("tmpfs", "/run", "tmpfs", 0, NULL);
	int fd = open("/dev/console", O_RDWR);
	if (fd >= 0) {
		dup2(fd, 0); dup2(fd, 1); dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	/* Output as the command wrote it: no \n -> \r\n on the way out. */
	struct termios t;
	if (tcgetattr(1, &t) == 0) {
		t.c_oflag &= ~OPOST;
		tcsetattr(1, TCSANOW, &t);
	}
	static char buf[65536];
	int jf = open("/tmp/" SCRATCH_JOB, O_RDONLY);
	ssize_t len = jf >= 0 ? read(jf, buf, sizeof(buf) - 1) : -1;
	if (len <= 0) {
		fprintf(stderr, "lkvm sandbox-init: no command in /tmp/" SCRATCH_JOB "\n");
		report(EXIT_USAGE);
	}
	close(jf);
	unlink("/tmp/" SCRATCH_JOB);
	buf[len] = 0;
	char *args[1024];
	int na = 0;
	const char *cwd = buf;
	for (char *p = buf + strlen(buf) + 1; p < buf + len && na < 1023; p += strlen(p) + 1)
		args[na++] = p;
	args[na] = NULL;
	char dir[PATH_MAX];
	size_t cwd_len = strnlen(cwd, sizeof(dir));
	if (!strncmp(cwd, "/tmp/", 5) && cwd_len < sizeof(dir)) {	/* the host's folder there, read-only */
		memcpy(dir, cwd, cwd_len + 1);
		for (char *p = dir + 5; (p = strchr(p, '/')); p++) {
			*p = 0;
			mkdir(dir, 0755);
			*p = '/';
		}
		mkdir(dir, 0755);
		if (mount(CWD_TAG, dir, "9p", MS_RDONLY | MS_NOSUID | MS_NODEV, "trans=virtio,version=9p2000.L,msize=262144") < 0)
			fprintf(stderr, "lkvm sandbox-init: mounting %s: %s\n", dir, strerror(errno));
	}
	setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 1);
	setenv("HOME", "/tmp", 1);
	setenv("TERM", "linux", 0);
	pid_t pid = fork();
	if (pid == 0) {
		if (chdir(cwd) < 0 && chdir("/") < 0)
			_exit(126);
		setsid();
		ioctl(0, TIOCSCTTY, 0);
		execvp(args[0], args);
		fprintf(stderr, "lkvm sandbox: %s: %s\n", args[0], strerror(errno));
		_exit(errno == ENOENT ? 127 : 126);
	}
	int st = 0;
	/* PID 1 reaps every orphan; the command's own status is the answer. */
	for (;;) {
		pid_t w = wait(&st);
		if (w == pid || (w < 0 && errno == ECHILD))
			break;
	}
	report(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	return 0;
}
