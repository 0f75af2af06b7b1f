/*
 * lkvm run: the runner. The order of a VM's life is said once, here:
 *   options -> board and devices -> control socket -> terminal -> signals
 *   and seccomp -> device threads -> vCPUs -> wait -> stop -> destroy.
 * Signals are blocked in every thread from the start (each thread inherits
 * the mask) and read on a signalfd next to the VM's exit eventfd.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "board.h"
#include "commands.h"
#include "control.h"
#include "device.h"
#include "devices.h"
#include "evloop.h"
#include "gdb.h"
#include "jail.h"
#include "options.h"
#include "run.h"
#include "seccomp.h"
#include "snapshot.h"
#include "supervise.h"
#include "term.h"
#include "util.h"
#include "vm.h"
#include "vm_snapshot.h"
#include "vsock.h"

#define MAX_CPUS 255

/* ---- the runner's own options ---- */

struct run_ctx {
	struct vm_config *cfg;
	const char *params;	/* every -p, joined */
	const char *rootfs;	/* --rootfs folder, shared as the guest's root */
	const char *restore;	/* --restore DIR */
	bool clone;		/* --clone */
	bool agent;		/* --agent */
};

static int opt_kernel(void *own, const char *arg) { ((struct run_ctx *)own)->cfg->kernel = arg; return 0; }

static int opt_initrd(void *own, const char *arg)
{
	struct stat st;
	if (stat(arg, &st) < 0 || !S_ISREG(st.st_mode) || access(arg, R_OK) < 0)
		return err_set("cannot read the initrd (missing, not a file, or no permission)");
	((struct run_ctx *)own)->cfg->initrd = arg;
	return 0;
}

static int opt_params(void *own, const char *arg)
{
	struct run_ctx *rc = own;	/* repeatable: each adds to the command line */
	size_t n = (rc->params ? strlen(rc->params) + 1 : 0) + strlen(arg) + 1;
	char *joined = xcalloc(1, n);
	snprintf(joined, n, "%s%s%s", rc->params ? rc->params : "", rc->params ? " " : "", arg);
	rc->params = opt_strdup(joined);
	free(joined);
	return 0;
}

static int opt_mem(void *own, const char *arg)
{
	struct vm_config *cfg = ((struct run_ctx *)own)->cfg;
	if (parse_size(arg, &cfg->ram_size) < 0 || cfg->ram_size < MiB(1))
		return err_set("memory size must be a number of MiB, at least 1");
	if (cfg->ram_size > GiB(1024))
		return err_set("more than 1 TiB of guest memory is not supported");
	return 0;
}

static int opt_cpus(void *own, const char *arg)
{
	char *end;
	long n = strtol(arg, &end, 10);
	if (*end || end == arg || n < 1 || n > MAX_CPUS)
		return err_set("number of vCPUs must be 1 to %d", MAX_CPUS);
	((struct run_ctx *)own)->cfg->nr_cpus = n;
	return 0;
}

static int opt_name(void *own, const char *arg) { ((struct run_ctx *)own)->cfg->name = arg; return 0; }
static int opt_rootfs(void *own, const char *arg) { ((struct run_ctx *)own)->rootfs = arg; return 0; }
static int opt_debug_ioport(void *own, const char *arg) { ((struct run_ctx *)own)->cfg->debug_ioport = true; return 0; }
static int opt_no_seccomp(void *own, const char *arg) { ((struct run_ctx *)own)->cfg->no_seccomp = true; return 0; }
static int opt_no_thp(void *own, const char *arg) { ((struct run_ctx *)own)->cfg->no_thp = true; return 0; }
static int opt_restore(void *own, const char *arg) { ((struct run_ctx *)own)->restore = arg; return 0; }
static int opt_clone(void *own, const char *arg) { ((struct run_ctx *)own)->clone = true; return 0; }
static int opt_agent(void *own, const char *arg) { ((struct run_ctx *)own)->agent = true; return 0; }
static int opt_quiet(void *own, const char *arg) { log_level = 0; return 0; }
static int opt_verbose(void *own, const char *arg) { log_level = 2; return 0; }

static const struct opt run_opts[] = {
	{ "kernel", 'k', "FILE", "bzImage, ELF vmlinux (PVH or 64-bit entry), or with --flat a flat binary",
	  opt_kernel, OPT_COMPLETE_FILE },
	{ "initrd", 'i', "FILE", "initial ramdisk", opt_initrd, OPT_COMPLETE_FILE },
	{ "params", 'p', "CMDLINE", "kernel command line, after the board's defaults; repeatable", opt_params },
	{ "mem", 'm', "SIZE", "guest RAM, MiB unless suffixed K/M/G (default 256)", opt_mem },
	{ "cpus", 'c', "N", "number of vCPUs (default 1), each a host thread lkvm-vcpu-N", opt_cpus },
	{ "name", 0, "NAME", "name for the control socket (lkvm list etc.); default lkvm-PID", opt_name },
	{ "rootfs", 0, "NAME|DIR", "boot with a folder as the root over 9p (one made by `lkvm setup NAME`)",
	  opt_rootfs, OPT_COMPLETE_FILE },
	{ "debug-ioport", 0, NULL, "log port and MMIO accesses no device claims", opt_debug_ioport },
	{ "no-seccomp", 0, NULL, "do not confine lkvm to its syscall allowlist", opt_no_seccomp },
	{ "no-thp", 0, NULL, "guest RAM in 4 KiB pages only, even where the host would use huge pages (fewer resident "
	  "bytes for a guest that touches memory sparsely; default: transparent huge pages)", opt_no_thp },
	{ "restore", 0, "DIR", "run the VM saved in DIR by `lkvm snapshot` (its options come from there)", opt_restore,
	  OPT_COMPLETE_FILE },
	{ "clone", 0, NULL, "with --restore: a new VM with disk overlays of its own (DIR/clones/NAME)", opt_clone },
	{ "agent", 0, NULL, "start lkvm's agent beside the guest's init (lkvm must be at this path in the guest's root): "
	  "lkvm exec NAME runs commands in it", opt_agent },
	{ "quiet", 'q', NULL, "print only errors", opt_quiet },
	{ "verbose", 'v', NULL, "print debugging messages", opt_verbose },
	{ 0 }
};

void run_options(struct opt_set *set, struct vm_config *cfg, void *ctx)
{
	opt_set_add(set, "", run_opts, ctx);
	opt_set_add(set, "machine", pc_board.opts, vm_config_part(cfg, &pc_board, pc_board.cfg_size));
	for (int i = 0; pc_board.devices[i]; i++) {
		const struct device_type *t = pc_board.devices[i];
		opt_set_add(set, "devices", t->opts, vm_config_part(cfg, t, t->cfg_size));
	}
	opt_set_add(set, "debugging", gdb_run_opts, vm_config_part(cfg, gdb_run_opts, sizeof(struct gdb_opts)));
	opt_set_add(set, "confinement", jail_run_opts, vm_config_part(cfg, jail_run_opts, sizeof(struct jail_opts)));
}

/* Every option as "--name=value": what a snapshot keeps of the VM's configuration. */
static void record_option(void *ctx, const struct opt *o, const char *arg)
{
	struct vm_config *cfg = ctx;
	size_t n = strlen(o->name) + (arg ? strlen(arg) : 0) + 4;
	char *buf = xcalloc(1, n);
	snprintf(buf, n, "--%s%s%s", o->name, arg ? "=" : "", arg ? arg : "");
	char *s = opt_strdup(buf);	/* kept as long as the option text it records */
	free(buf);
	char **args = realloc(cfg->args, (cfg->nr_args + 1) * sizeof(*args));
	if (!args)
		abort();
	cfg->args = args;
	cfg->args[cfg->nr_args++] = s;
}

/* ---- one VM's life ---- */

static void on_quit(void *ctx)
{
	vm_request_exit(ctx, VM_QUIT, 0);
}

/* Sleep until the VM ends or a signal says to end it. */
static void wait_for_end(struct vm *vm, int sigfd)
{
	while (!vm_stopping(vm)) {
		struct pollfd p[2] = { { .fd = vm->exit_efd, .events = POLLIN }, { .fd = sigfd, .events = POLLIN } };
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		struct signalfd_siginfo si;
		if ((p[1].revents & POLLIN) && read(sigfd, &si, sizeof(si)) == sizeof(si))
			vm_request_exit(vm, VM_QUIT, 128 + (int)si.ssi_signo);
		uint64_t v;
		if ((p[0].revents & POLLIN) && read(vm->exit_efd, &v, sizeof(v)) < 0) {}
	}
}

/*
 * Is this run jailed? --jail: yes, or an error when it cannot be (the gdb
 * stub's thread starts before the jail could; seccomp is one of its steps;
 * a restore removes its clone's overlays by path when it ends). The default
 * (as root) steps back from those cases, and from vsock (-v says so).
 * Decided from the options alone: a jailed run forks its supervisor before
 * /dev/kvm is opened.
 */
static int jail_decide(const struct vm_config *cfg)
{
	const struct jail_opts *o = vm_config_find(cfg, jail_run_opts);
	if (!jail_wanted(o))
		return 0;
	const struct gdb_opts *gdb = vm_config_find(cfg, gdb_run_opts);
	const char *why = gdb && gdb->addr ? "--gdb" : cfg->no_seccomp ? "--no-seccomp" : cfg->restore ? "--restore" : NULL;
	bool on = o && o->mode == JAIL_ON;
	/* vsock: the guest's connections reach the host's PATH_PORT sockets, which the jail user may not */
	if (!why && !on && vsock_configured(cfg))
		why = "--vsock";
	if (!why)
		return 1;
	if (on) {
		err_set("--jail cannot go with %s (its thread, seccomp or clean-up needs the host after set-up)", why);
		return -1;
	}
	pr_debug("not jailed: %s (give --no-jail to say so)", why);	/* quietly: their output stays theirs */
	return 0;
}

/*
 * A jailed run: the rest happens in a child, PID 1 of a PID namespace of its
 * own (lib/supervise.c); this process supervises it. 0 in the child, 1 in
 * the supervisor when it is over (*status), -1 with err.
 */
static int supervised(struct vm_config *cfg, int *status)
{
	static char name[32];	/* the child's getpid() is 1: the default name is the supervisor's PID */
	if (!cfg->name) {
		snprintf(name, sizeof(name), "lkvm-%d", (int)getpid());
		cfg->name = name;
	}
	struct supervise s = { .name = cfg->name, .pids_max = JAIL_NPROC,
			       .mem_max = cfg->ram_size + JAIL_MEM_ROOM + (uint64_t)cfg->nr_cpus * JAIL_MEM_PER_CPU };
	int r = supervise_start(&s, status);
	if (r == 0 && s.no_cgroup[0])
		pr_debug("jail: no cgroup (limits are rlimits): %s", s.no_cgroup);
	return r;
}

int run_vm(struct vm_config *cfg)
{
	int jailed = jail_decide(cfg);
	if (jailed == 1) {
		int status, r = supervised(cfg, &status);
		if (r == 1)
			return status;	/* the supervisor: the child ran the VM */
		jailed = r < 0 ? -1 : 1;
	}
	if (jailed < 0) {
		fprintf(stderr, "lkvm: %s\n", err_msg());
		return EXIT_USAGE;
	}
	/* Before any thread exists: every thread inherits these blocked. */
	sigset_t sigs, old;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	if (jailed)	/* PID 1 of its namespace gets only the signals it takes: the supervisor forwards this one too */
		sigaddset(&sigs, SIGQUIT);
	int sigfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	sigaddset(&sigs, SIGUSR1);	/* only vCPU threads take it, to leave KVM_RUN */
	pthread_sigmask(SIG_BLOCK, &sigs, &old);
	signal(SIGPIPE, SIG_IGN);

	struct vm vm;
	struct control *ctl = NULL;
	int status = EXIT_USAGE;
	bool started = false;
	if (sigfd < 0) {
		memset(&vm, 0, sizeof(vm));
		vm.sys_fd = vm.vm_fd = vm.exit_efd = -1;
		err_errno("signalfd");
		goto fail;
	}
	struct vm_snapshot_ctx snap = { &vm, &pc_board };
	/* A restore: the host must run the snapshot's vCPUs before anything is built for them. */
	if (vm_create(&vm, cfg) < 0 || (cfg->restore && pc_board.check_restore(&vm, cfg->restore) < 0) ||
	    pc_board.create(&vm, vm_config_find(cfg, &pc_board)) < 0 || vm_create_vcpus(&vm) < 0 ||
	    (cfg->restore && vm_snapshot_load(&vm, &pc_board) < 0))
		goto fail;
	ctl = control_new(&vm, cfg->name);
	struct gdb_opts *gdb = vm_config_find(cfg, gdb_run_opts);
	if (control_bind(ctl) < 0 || (!jailed && control_start(ctl) < 0) || vm_snapshot_register(ctl, &snap) < 0 ||
	    gdb_stub_init(&vm, ctl) < 0 || (gdb && gdb->addr && gdb_stub_start(&vm, gdb->addr, gdb->wait) < 0) ||
	    term_start(vm.loop, pc_board.console(&vm), on_quit, &vm) < 0)
		goto fail;
	/* glibc reads /etc/localtime on the first gmtime_r (the RTC's); do it while files may be opened. */
	tzset();
	/* Set-up is over: the jail (lib/jail.c), then only the allowlisted syscalls. */
	if (jailed) {
		struct jail_limits lim = { .mem_bytes = JAIL_MEM_ROOM + (uint64_t)cfg->nr_cpus * JAIL_MEM_PER_CPU,
					   .nproc = JAIL_NPROC };
		for (int i = 0; i < vm.nr_jail_keep; i++)
			lim.keep[lim.nr_keep++] = vm.jail_keep[i];
		const char *reap[] = { control_path(ctl), vm.jail_sock };
		if (supervise_reap(reap, 2) < 0 || jail_enter(vm_config_find(cfg, jail_run_opts), &lim) < 0 ||
		    control_start(ctl) < 0)
			goto fail;
		prctl(PR_SET_PDEATHSIG, SIGKILL);	/* the new user cleared it: never outlive the supervisor */
	}
	seccomp_on_trap(term_restore);
	if (!cfg->no_seccomp && seccomp_install(vm.needs_files) < 0)
		goto fail;
	if (evloop_start(vm.loop) < 0 || devices_start(&vm) < 0 || vm_start_vcpus(&vm) < 0)
		goto fail;
	started = true;
	wait_for_end(&vm, sigfd);
	status = vm_exit_status(&vm);
	if (vm.exit_reason == VM_ERROR && status == 1) {
		fprintf(stderr, "lkvm: %s\r\n", err_msg());
		status = EXIT_USAGE;
	}
fail:
	if (!started)
		fprintf(stderr, "lkvm: %s\n", err_msg());
	/* Stop in reverse: vCPUs, then nothing new arrives by socket, loop or terminal, then devices. */
	vm_stop_vcpus(&vm);
	gdb_stub_stop(&vm);
	control_free(ctl);
	term_stop();
	vm_destroy(&vm);
	pc_board.destroy(&vm);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (sigfd >= 0)
		close(sigfd);
	return status;
}

/*
 * --agent: a vsock device (CID 3 unless --vsock gave one) and the kernel's init
 * becomes `lkvm agent-init INIT`, which starts the agent and execs the guest's
 * own init (the last init= given, else /init with --rootfs, else /sbin/init).
 */
static int agent_setup(struct vm_config *cfg, struct run_ctx *rc, const char *rootfs_params, char *out, size_t len)
{
	char self[PATH_MAX], init[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return err_set("cannot find my own binary (/proc/self/exe)");
	self[n] = 0;
	snprintf(init, sizeof(init), "%s", rootfs_params ? "/init" : "/sbin/init");
	for (const char *p = rc->params; p && (p = strstr(p, "init=")); p += 5)
		if (p == rc->params || p[-1] == ' ')
			snprintf(init, sizeof(init), "%.*s", (int)strcspn(p + 5, " "), p + 5);
	if (device_type_option(cfg, &virtio_vsock_device, "vsock", "3") < 0 && !strstr(err_msg(), "given twice"))
		return -1;
	if ((size_t)snprintf(out, len, " init=%s -- agent-init %s", self, init) >= len)
		return err_set("path too long");
	return 0;
}

/*
 * lkvm run's work on a command line; restore (with its RAM file) when it is
 * the one cmd/restore.c made from a snapshot's options.
 */
int run_command(int argc, char **argv, struct snap_reader *restore, const char *ram_file)
{
	struct vm_config cfg = { .ram_size = MiB(256), .nr_cpus = 1, .restore = restore, .ram_file = ram_file };
	struct run_ctx rc = { .cfg = &cfg };
	struct opt_set set = { .command = "run", .usage = "lkvm run -k KERNEL [options]" };
	run_options(&set, &cfg, &rc);
	set.seen = record_option;
	set.seen_ctx = &cfg;
	int next, r = opt_parse(&set, argc, argv, false, &next);
	if (r == 1) {
		opt_usage(&set, stdout);
		printf("Ctrl-A x quits; Ctrl-A Ctrl-A sends Ctrl-A.\n");
		vm_config_free(&cfg);
		return 0;
	}
	int status = EXIT_USAGE;
	const char *rootfs_params = NULL;
	struct gdb_opts *gdb = vm_config_find(&cfg, gdb_run_opts);
	if (r == 0 && gdb && gdb->wait && !gdb->addr)
		r = err_set("--gdb-wait needs --gdb tcp:[HOST:]PORT|unix:PATH");
	if (r < 0) {
		fprintf(stderr, "lkvm run: %s\n", err_msg());
		goto out;
	}
	if (rc.clone && !rc.restore) {
		fprintf(stderr, "lkvm run: --clone goes with --restore DIR\n");
		goto out;
	}
	if (rc.restore) {
		status = run_restore(rc.restore, rc.clone, cfg.nr_args, cfg.args);
		goto out;
	}
	if (rc.rootfs) {
		char path[4096], share[4200];
		if (lkvm_rootfs_path(rc.rootfs, path, sizeof(path)) < 0) {
			fprintf(stderr, "lkvm run: --rootfs %s: no $HOME to find ~/.lkvm in\n", rc.rootfs);
			goto out;
		}
		snprintf(share, sizeof(share), "%s,/dev/root", path);
		if (device_type_option(&cfg, &virtio_9p_device, "9p", share) < 0) {
			fprintf(stderr, "lkvm run: --rootfs %s: %s\n", rc.rootfs, err_msg());
			goto out;
		}
		rootfs_params = "root=/dev/root rootfstype=9p rootflags=trans=virtio,version=9p2000.L,msize=262144 rw "
				"init=/init";
	}
	char cmdline[8192], agent_params[PATH_MAX + 300] = "";
	if (rc.agent && agent_setup(&cfg, &rc, rootfs_params, agent_params, sizeof(agent_params)) < 0) {
		fprintf(stderr, "lkvm run: --agent: %s\n", err_msg());
		goto out;
	}
	snprintf(cmdline, sizeof(cmdline), "%s%s%s%s", rootfs_params ? rootfs_params : "",
		 rootfs_params && rc.params ? " " : "", rc.params ? rc.params : "", agent_params);
	cfg.cmdline = cmdline;
	/* Input is checked before /dev/kvm is even opened. */
	if (pc_board.check(&cfg, vm_config_part(&cfg, &pc_board, pc_board.cfg_size)) < 0) {
		fprintf(stderr, "lkvm run: %s\n", err_msg());
		goto out;
	}
	for (int i = 0; pc_board.devices[i]; i++) {
		if (device_type_check(&cfg, pc_board.devices[i]) < 0) {
			fprintf(stderr, "lkvm run: %s\n", err_msg());
			goto out;
		}
	}
	status = run_vm(&cfg);
out:
	vm_config_free(&cfg);
	return status;
}

int cmd_run(int argc, char **argv)
{
	return run_command(argc, argv, NULL, NULL);
}
