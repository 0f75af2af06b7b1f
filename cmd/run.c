/* lkvm run: parse options, build the VM, run it, report how it ended. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include "boot.h"
#include "commands.h"
#include "util.h"
#include "vm.h"

#define MAX_CPUS 255
/* Sent ahead of -p: serial console, and resets through the i8042 end the VM. */
#define DEFAULT_PARAMS_SERIAL "console=ttyS0 reboot=k"
#define DEFAULT_PARAMS_VIRTIO "console=hvc0 reboot=k"
#define BASELINE_PARAMS "noxsave clearcpuid=cx16,popcnt,smap,smep,fsgsbase,invpcid,pcid,avx,avx2,rdtscp nopti"

static void run_usage(FILE *out)
{
	fprintf(out,
		"usage: lkvm run -k KERNEL [options]\n"
		"  -k, --kernel FILE      bzImage, ELF vmlinux (PVH or 64-bit entry) or flat binary\n"
		"  -i, --initrd FILE      initial ramdisk\n"
		"  -p, --params CMDLINE   kernel command line, added after the defaults\n"
		"      --no-default-params  do not add \"" DEFAULT_PARAMS_SERIAL "\"\n"
		"  -m, --mem SIZE         guest RAM, MiB unless suffixed K/M/G (default 256)\n"
		"  -c, --cpus N           number of vCPUs (default 1)\n"
		"      --name NAME        name of the VM\n"
		"      --console serial|virtio  guest console (default serial: ttyS0)\n"
		"      --cpu host|baseline  CPU model; baseline hides features emulating hosts cannot run\n"
		"  -d, --disk PATH[,ro][,direct]  virtio-blk disk (raw or qcow2), repeatable\n"
		"      --rng              virtio-rng device fed from the host's getrandom()\n"
		"      --network mode=user|tap|none[,tapif=NAME][,guest_mac=MAC][,hostfwd=tcp:HOSTPORT-:GUESTPORT]\n"
		"                 [,restrict=on]  virtio-net NIC, repeatable (default: one in user mode)\n"
		"      --9p HOSTDIR,TAG[,ro]  share a host folder (virtio-9p, 9P2000.L), repeatable\n"
		"      --rootfs NAME|DIR  boot with a folder as root over 9p (one made by 'lkvm setup NAME')\n"
		"      --balloon          virtio-balloon device, driven by 'lkvm balloon NAME ...'\n"
		"      --bios-boot        enter a bzImage at its 16-bit setup code, through the bundled BIOS\n"
		"      --flat[=ADDR]      load KERNEL as a flat real-mode binary at ADDR (default 0x10000)\n"
		"      --debug-ioport     log port and MMIO accesses no device claims\n"
		"      --no-emulate       stop on instructions KVM cannot emulate instead of emulating them\n"
		"      --no-seccomp       do not confine lkvm to its syscall allowlist\n"
		"  -q, --quiet / -v, --verbose\n"
		"  -h, --help\n"
		"Ctrl-A x quits; Ctrl-A Ctrl-A sends Ctrl-A.\n");
}

enum { OPT_NAME = 256, OPT_CONSOLE, OPT_CPU, OPT_RNG, OPT_NETWORK, OPT_9P, OPT_ROOTFS, OPT_BALLOON, OPT_FLAT, OPT_DEBUG_IOPORT, OPT_NO_EMULATE, OPT_NO_DEFAULT, OPT_NO_SECCOMP, OPT_BIOS_BOOT };

static const struct option run_opts[] = {
	{ "kernel", required_argument, 0, 'k' },
	{ "initrd", required_argument, 0, 'i' },
	{ "params", required_argument, 0, 'p' },
	{ "mem", required_argument, 0, 'm' },
	{ "cpus", required_argument, 0, 'c' },
	{ "disk", required_argument, 0, 'd' },
	{ "name", required_argument, 0, OPT_NAME },
	{ "console", required_argument, 0, OPT_CONSOLE },
	{ "cpu", required_argument, 0, OPT_CPU },
	{ "rng", no_argument, 0, OPT_RNG },
	{ "balloon", no_argument, 0, OPT_BALLOON },
	{ "network", required_argument, 0, OPT_NETWORK },
	{ "9p", required_argument, 0, OPT_9P },
	{ "rootfs", required_argument, 0, OPT_ROOTFS },
	{ "flat", optional_argument, 0, OPT_FLAT },
	{ "debug-ioport", no_argument, 0, OPT_DEBUG_IOPORT },
	{ "no-emulate", no_argument, 0, OPT_NO_EMULATE },
	{ "no-default-params", no_argument, 0, OPT_NO_DEFAULT },
	{ "no-seccomp", no_argument, 0, OPT_NO_SECCOMP },
	{ "bios-boot", no_argument, 0, OPT_BIOS_BOOT },
	{ "quiet", no_argument, 0, 'q' },
	{ "verbose", no_argument, 0, 'v' },
	{ "help", no_argument, 0, 'h' },
	{ 0 }
};

static int bad(const char *fmt, const char *arg)
{
	fprintf(stderr, "lkvm run: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n");
	return EXIT_USAGE;
}

static int parse_disk(struct vm_config *cfg, char *arg)
{
	if (cfg->nr_disks == MAX_DISKS)
		return bad("too many disks (at most 8): %s", arg);
	struct disk_opt *d = &cfg->disks[cfg->nr_disks];
	char *save, *tok = strtok_r(arg, ",", &save);
	if (!tok || !*tok)
		return bad("-d needs a path: '%s'", arg);
	d->path = tok;
	while ((tok = strtok_r(NULL, ",", &save))) {
		if (!strcmp(tok, "ro"))
			d->ro = true;
		else if (!strcmp(tok, "direct"))
			d->direct = true;
		else
			return bad("unknown disk option '%s' (ro, direct)", tok);
	}
	cfg->nr_disks++;
	return 0;
}

static int parse_port(const char *s, uint16_t *port)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (end == s || v < 1 || v > 65535)
		return -1;
	*port = v;
	return end - s;
}

/* hostfwd=tcp:HOSTPORT-:GUESTPORT (or udp:) */
static int parse_hostfwd(struct net_opt *n, const char *v)
{
	if (n->nr_fwds == 8)
		return bad("too many hostfwd= (at most 8): %s", v);
	bool udp = !strncmp(v, "udp:", 4);
	if (!udp && strncmp(v, "tcp:", 4))
		return bad("hostfwd must be tcp:HOSTPORT-:GUESTPORT or udp:...: '%s'", v);
	uint16_t hp = 0, gp = 0;
	int k = parse_port(v + 4, &hp);
	if (k < 0 || strncmp(v + 4 + k, "-:", 2) || parse_port(v + 6 + k, &gp) != (int)strlen(v + 6 + k))
		return bad("hostfwd must be tcp:HOSTPORT-:GUESTPORT (ports 1-65535): '%s'", v);
	n->fwds[n->nr_fwds].udp = udp;
	n->fwds[n->nr_fwds].host_port = hp;
	n->fwds[n->nr_fwds].guest_port = gp;
	n->nr_fwds++;
	return 0;
}

/* --9p HOSTDIR,TAG[,ro] */
static int parse_share(struct vm_config *cfg, char *arg)
{
	if (cfg->nr_shares == MAX_SHARES)
		return bad("too many --9p shares (at most 8): %s", arg);
	struct share_opt *sh = &cfg->shares[cfg->nr_shares];
	char *save, *dir = strtok_r(arg, ",", &save), *tag = strtok_r(NULL, ",", &save), *tok;
	if (!dir || !tag || !*tag)
		return bad("--9p needs HOSTDIR,TAG[,ro]: '%s'", arg);
	if (strlen(tag) > 255)
		return bad("--9p tag is longer than 255 bytes: '%s'", tag);
	struct stat st;
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return bad("%s: not a directory (--9p HOSTDIR,TAG)", dir);
	sh->dir = dir;
	sh->tag = tag;
	while ((tok = strtok_r(NULL, ",", &save))) {
		if (strcmp(tok, "ro"))
			return bad("unknown --9p option '%s' (ro)", tok);
		sh->ro = true;
	}
	cfg->nr_shares++;
	return 0;
}

/* --network mode=user|tap|none[,tapif=NAME][,guest_mac=MAC][,hostfwd=...][,restrict=on] */
static int parse_network(struct vm_config *cfg, char *arg)
{
	if (cfg->nr_nics == MAX_NICS)
		return bad("too many --network (at most 4): %s", arg);
	struct net_opt *n = &cfg->nics[cfg->nr_nics];
	memset(n, 0, sizeof(*n));
	char *save, *tok;
	bool mode = false;
	for (tok = strtok_r(arg, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *v = strchr(tok, '=');
		if (!v)
			return bad("--network options are KEY=VALUE: '%s'", tok);
		*v++ = 0;
		if (!strcmp(tok, "mode")) {
			mode = true;
			if (!strcmp(v, "user")) n->mode = NET_USER;
			else if (!strcmp(v, "tap")) n->mode = NET_TAP;
			else if (!strcmp(v, "none")) n->mode = NET_NONE;
			else return bad("--network mode must be user, tap or none: '%s'", v);
		} else if (!strcmp(tok, "tapif")) {
			if (!*v || strlen(v) >= 16)
				return bad("tapif must be an interface name of 1-15 characters: '%s'", v);
			n->tapif = v;
		} else if (!strcmp(tok, "guest_mac")) {
			unsigned m[6];
			char end;
			if (sscanf(v, "%x:%x:%x:%x:%x:%x%c", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5], &end) != 6 ||
			    m[0] > 255 || m[1] > 255 || m[2] > 255 || m[3] > 255 || m[4] > 255 || m[5] > 255 || (m[0] & 1))
				return bad("guest_mac must be a unicast MAC like 52:54:00:12:34:56: '%s'", v);
			for (int i = 0; i < 6; i++)
				n->mac[i] = m[i];
			n->mac_set = true;
		} else if (!strcmp(tok, "hostfwd")) {
			if (parse_hostfwd(n, v))
				return EXIT_USAGE;
		} else if (!strcmp(tok, "restrict")) {
			if (strcmp(v, "on") && strcmp(v, "off"))
				return bad("restrict must be on or off: '%s'", v);
			n->restricted = !strcmp(v, "on");
		} else {
			return bad("unknown --network option '%s' (mode, tapif, guest_mac, hostfwd, restrict)", tok);
		}
	}
	if (!mode)
		return bad("%s", "--network needs mode=user, mode=tap or mode=none");
	if ((n->tapif && n->mode != NET_TAP) || ((n->nr_fwds || n->restricted) && n->mode != NET_USER))
		return bad("%s", "tapif= goes with mode=tap; hostfwd= and restrict= with mode=user");
	cfg->nr_nics++;
	return 0;
}

static char *join_params(const char *defaults, const char *user)
{
	size_t n = strlen(defaults) + (user ? strlen(user) : 0) + 2;
	char *s = xcalloc(1, n);
	snprintf(s, n, "%s%s%s", defaults, *defaults && user ? " " : "", user ? user : "");
	return s;
}

int cmd_run(int argc, char **argv)
{
	struct vm_config cfg = { .ram_size = MiB(256), .nr_cpus = 1, .console = CONSOLE_SERIAL, .cpu = CPU_AUTO };
	const char *user_params = NULL, *rootfs_params = NULL;
	bool no_default = false;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":k:i:p:m:c:d:qvh", run_opts, NULL)) != -1) {
		switch (c) {
		case 'k': cfg.kernel = optarg; break;
		case 'i': cfg.initrd = optarg; break;
		case 'p': {	/* repeatable: each adds to the command line */
			char *joined = join_params(user_params ? user_params : "", optarg);
			user_params = joined;
			break;
		}
		case 'm':
			if (parse_size(optarg, &cfg.ram_size) < 0 || cfg.ram_size < MiB(1))
				return bad("-m %s: memory size must be a number of MiB, at least 1", optarg);
			if (cfg.ram_size > GiB(1024))
				return bad("-m %s: more than 1 TiB of guest memory is not supported", optarg);
			break;
		case 'c': {
			char *end;
			long n = strtol(optarg, &end, 10);
			if (*end || end == optarg || n < 1 || n > MAX_CPUS)
				return bad("-c %s: number of vCPUs must be 1 to 255", optarg);
			cfg.nr_cpus = n;
			break;
		}
		case 'd':
			if (parse_disk(&cfg, optarg))
				return EXIT_USAGE;
			break;
		case OPT_NAME: cfg.name = optarg; break;
		case OPT_CONSOLE:
			if (!strcmp(optarg, "serial")) cfg.console = CONSOLE_SERIAL;
			else if (!strcmp(optarg, "virtio")) cfg.console = CONSOLE_VIRTIO;
			else return bad("--console %s: use serial or virtio", optarg);
			break;
		case OPT_CPU:
			if (!strcmp(optarg, "host")) cfg.cpu = CPU_HOST;
			else if (!strcmp(optarg, "baseline")) cfg.cpu = CPU_BASELINE;
			else return bad("--cpu %s: use host or baseline", optarg);
			break;
		case OPT_RNG: cfg.rng = true; break;
		case OPT_BALLOON: cfg.balloon = true; break;
		case OPT_ROOTFS: {
			static char path[4096], share[4200];
			if (lkvm_rootfs_path(optarg, path, sizeof(path)) < 0)
				return bad("--rootfs %s: no $HOME to find ~/.lkvm in", optarg);
			snprintf(share, sizeof(share), "%s,/dev/root", path);
			if (parse_share(&cfg, share))
				return EXIT_USAGE;
			rootfs_params = "root=/dev/root rootfstype=9p rootflags=trans=virtio,version=9p2000.L,msize=262144 rw "
					"init=/init";
			break;
		}
		case OPT_9P:
			if (parse_share(&cfg, optarg))
				return EXIT_USAGE;
			break;
		case OPT_NETWORK:
			if (parse_network(&cfg, optarg))
				return EXIT_USAGE;
			break;
		case OPT_FLAT:
			cfg.flat = true;
			if (optarg) {
				char *end;
				cfg.flat_addr = strtoull(optarg, &end, 0);
				if (*end || end == optarg)
					return bad("--flat=%s: not an address", optarg);
			}
			break;
		case OPT_DEBUG_IOPORT: cfg.debug_ioport = true; break;
		case OPT_NO_EMULATE: cfg.no_emulate = true; break;
		case OPT_NO_DEFAULT: no_default = true; break;
		case OPT_NO_SECCOMP: cfg.no_seccomp = true; break;
		case OPT_BIOS_BOOT: cfg.bios_boot = true; break;
		case 'q': log_level = 0; break;
		case 'v': log_level = 2; break;
		case 'h': run_usage(stdout); return 0;
		case ':': return bad("option '%s' needs an argument", argv[optind - 1]);
		default: return bad("unknown option '%s' (see 'lkvm run --help')", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return bad("unexpected argument '%s' (see 'lkvm run --help')", argv[optind]);
	if (!cfg.kernel)
		return bad("%s", "no kernel given: use -k KERNEL (see 'lkvm run --help')");
	/* Input files are checked before /dev/kvm is even opened. */
	if (x86_check_kernel(cfg.kernel, cfg.flat) < 0) {
		fprintf(stderr, "lkvm run: %s\n", err_msg());
		return EXIT_USAGE;
	}
	struct stat st;
	if (cfg.initrd && (stat(cfg.initrd, &st) < 0 || !S_ISREG(st.st_mode) || access(cfg.initrd, R_OK) < 0))
		return bad("%s: cannot read the initrd (missing, not a file, or no permission)", cfg.initrd);
	for (int i = 0; i < cfg.nr_disks; i++)
		if (stat(cfg.disks[i].path, &st) < 0 || access(cfg.disks[i].path, cfg.disks[i].ro ? R_OK : R_OK | W_OK) < 0)
			return bad("%s: cannot open the disk image (missing or no permission)", cfg.disks[i].path);
	if (cfg.nr_nics == 0) {	/* like kvmtool: networking without set-up */
		cfg.nics[0].mode = NET_USER;
		cfg.nr_nics = 1;
	}
	if (cfg.cpu == CPU_AUTO) {
		cfg.cpu = kvm_host_emulates_ring0() ? CPU_BASELINE : CPU_HOST;
		if (cfg.cpu == CPU_BASELINE)
			pr_info("this host's KVM emulates guest ring 0 (kvm_pvm): using --cpu baseline");
	}
	const char *defaults = no_default ? "" :
			       cfg.console == CONSOLE_VIRTIO ? DEFAULT_PARAMS_VIRTIO : DEFAULT_PARAMS_SERIAL;
	/* CPUID masking does not reach the guest on such hosts: tell Linux too. */
	char *base = join_params(defaults, cfg.cpu == CPU_BASELINE && !no_default ? BASELINE_PARAMS : NULL);
	char *with_root = join_params(base, rootfs_params);
	char *cmdline = join_params(with_root, user_params);
	free(base);
	free(with_root);
	cfg.cmdline = cmdline;

	struct vm vm;
	int status;
	if (vm_create(&vm, &cfg) < 0) {
		fprintf(stderr, "lkvm: %s\n", err_msg());
		status = EXIT_USAGE;
	} else {
		status = vm_run(&vm);
		if (status < 0 || (vm.exit_reason == VM_ERROR && status == 1)) {
			fprintf(stderr, "lkvm: %s\r\n", err_msg());
			status = EXIT_USAGE;
		}
	}
	vm_destroy(&vm);
	free(cmdline);
	return status;
}
