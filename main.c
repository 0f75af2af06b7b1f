/* lkvm: command dispatch only. */
#include <stdio.h>
#include <string.h>
#include "commands.h"

const struct command commands[] = {
	{ "run", "boot a kernel or test image in a new VM", cmd_run },
	{ "list", "list running VMs", cmd_list },
	{ "stop", "power a running VM off", cmd_stop },
	{ "pause", "pause a running VM", cmd_pause },
	{ "resume", "resume a paused VM", cmd_resume },
	{ "debug", "show a running VM's vCPU registers and stacks", cmd_debug },
	{ "stat", "show a running VM's exit and I/O counters", cmd_stat },
	{ "balloon", "inflate or deflate a VM's memory balloon", cmd_balloon },
	{ "gdb", "open a gdb stub on a running VM", cmd_gdb },
	{ "snapshot", "save a running VM into a directory (lkvm run --restore DIR runs it again)", cmd_snapshot },
	{ "sandbox", "run one command in a fresh VM on the host's own files", cmd_sandbox },
	{ "exec", "run another command in a running sandbox (lkvm sandbox --name NAME)", cmd_exec },
	{ "oci", "an OCI runtime (runc's command line): each container an lkvm VM; also as lkvm-oci", cmd_oci },
	{ "setup", "make a reusable busybox guest root folder", cmd_setup },
	{ "agent-init", "(inside a guest of lkvm run --agent: starts the agent, then the guest's init)", cmd_agent_init },
	{ "sandbox-init", "(inside a sandbox guest: its init)", cmd_sandbox_init },
	{ "version", "print the version", cmd_version },
	{ "help", "list the commands", cmd_help },
};
const int nr_commands = sizeof(commands) / sizeof(commands[0]);

#ifdef __SANITIZE_ADDRESS__
/* LeakSanitizer's exit-time scan ptrace()s the process, which lkvm's seccomp filter forbids. */
const char *__asan_default_options(void) { return "detect_leaks=0"; }
#endif

int main(int argc, char **argv)
{
	/* an engine's runtime path: lkvm-oci is lkvm oci */
	const char *base = argc > 0 ? strrchr(argv[0], '/') : NULL;
	base = base ? base + 1 : argc > 0 ? argv[0] : "";
	if (!strcmp(base, "lkvm-oci"))
		return cmd_oci(argc, argv);
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
		return cmd_help(argc, argv) ? EXIT_USAGE : (argc < 2 ? EXIT_USAGE : 0);
	if (!strcmp(argv[1], "--version"))
		return cmd_version(argc - 1, argv + 1);
	for (int i = 0; i < nr_commands; i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "lkvm: unknown command '%s' (see 'lkvm help')\n", argv[1]);
	return EXIT_USAGE;
}
