/* Subcommands: one file each in cmd/, dispatched by main.c. */
#ifndef LKVM_COMMANDS_H
#define LKVM_COMMANDS_H

struct command {
	const char *name;
	const char *summary;
	int (*fn)(int argc, char **argv);	/* argv[0] is the subcommand name */
};

extern const struct command commands[];
extern const int nr_commands;

int cmd_run(int argc, char **argv);
int cmd_version(int argc, char **argv);
int cmd_help(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_stop(int argc, char **argv);
int cmd_pause(int argc, char **argv);
int cmd_resume(int argc, char **argv);
int cmd_debug(int argc, char **argv);
int cmd_stat(int argc, char **argv);
int cmd_balloon(int argc, char **argv);
int cmd_gdb(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_sandbox(int argc, char **argv);
int cmd_sandbox_init(int argc, char **argv);
int cmd_exec(int argc, char **argv);
int cmd_oci(int argc, char **argv);
int cmd_agent_init(int argc, char **argv);
/* The guest agent's side of one session (cmd/agent.c): runs EXEC's command, relays its
 * stdio over sock, returns its status. Exported for tests/unit/test_agent.c. */
int agent_guest_session(int sock, unsigned char *exec, unsigned int len);
int cmd_setup(int argc, char **argv);
/* ~/.lkvm/NAME (or NAME itself when it holds a '/'): 0, or -1 without $HOME. */
int lkvm_rootfs_path(const char *name, char *out, unsigned long len);

/* Exit codes of lkvm itself (a guest's own status passes through otherwise). */
#define EXIT_USAGE 1	/* bad command line, bad input file, no KVM */
#define EXIT_GUEST_CRASH 2	/* triple fault, KVM internal error */

#define LKVM_VERSION "0.1"

#endif
