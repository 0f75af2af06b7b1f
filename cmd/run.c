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

enum { OPT_NAME = 256, OPT_CONSOLE, OPT_CPU, OPT_RNG, OPT_BALLOON, OPT_FLAT, OPT_DEBUG_IOPORT, OPT_NO_EMULATE, OPT_NO_DEFAULT, OPT_NO_SECCOMP, OPT_BIOS_BOOT };

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
	const char *user_params = NULL;
	bool no_default = false;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":k:i:p:m:c:d:qvh", run_opts, NULL)) != -1) {
		switch (c) {
		case 'k': cfg.kernel = optarg; break;
		case 'i': cfg.initrd = optarg; break;
		case 'p': user_params = optarg; break;
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
	if (cfg.cpu == CPU_AUTO) {
		cfg.cpu = kvm_host_emulates_ring0() ? CPU_BASELINE : CPU_HOST;
		if (cfg.cpu == CPU_BASELINE)
			pr_info("this host's KVM emulates guest ring 0 (kvm_pvm): using --cpu baseline");
	}
	const char *defaults = no_default ? "" :
			       cfg.console == CONSOLE_VIRTIO ? DEFAULT_PARAMS_VIRTIO : DEFAULT_PARAMS_SERIAL;
	/* CPUID masking does not reach the guest on such hosts: tell Linux too. */
	char *base = join_params(defaults, cfg.cpu == CPU_BASELINE && !no_default ? BASELINE_PARAMS : NULL);
	char *cmdline = join_params(base, user_params);
	free(base);
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
