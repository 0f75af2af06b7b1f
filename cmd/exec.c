/*
 * lkvm exec NAME [-e NAME[=VALUE]] [--env-file FILE] [-w DIR] [-t] [--root]
 *   [--timeout SECS] -- COMMAND [ARGS]: another command in a running sandbox
 * (or a VM whose guest runs lkvm's agent), with lkvm sandbox's stdio and
 * status semantics. The sandbox left <control dir>/NAME.agent, a symlink to
 * its vsock socket; we CONNECT to the agent's port there (include/vsock.h).
 */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include "agent_host.h"
#include "commands.h"
#include "control.h"
#include "util.h"
#include "vsock.h"

static int usage(void)
{
	fprintf(stderr, "usage: lkvm exec NAME [-e NAME[=VALUE]] [--env-file FILE] [-w DIR] [-t] [--root] [--timeout SECS]\n"
			"                 -- COMMAND [ARGS...]\n"
			"Run COMMAND in the running sandbox NAME (lkvm sandbox --name NAME); its stdin,\n"
			"stdout, stderr and exit status are lkvm's.\n");
	return EXIT_USAGE;
}

int cmd_exec(int argc, char **argv)
{
	int dash = 1;
	while (dash < argc && strcmp(argv[dash], "--"))
		dash++;
	if (argc < 2 || dash >= argc - 1 || dash < 2 || argv[1][0] == '-')
		return usage();
	const char *name = argv[1];
	char **env = NULL;
	int nr_env = 0, timeout = 0;
	bool tty = isatty(0), root = false;
	char cwd[PATH_MAX];
	const char *workdir = getcwd(cwd, sizeof(cwd)) ? cwd : "/";
	if (agent_env_defaults(&env, &nr_env) < 0)
		goto bad;
	for (int i = 2; i < dash; i++) {
		const char *a = argv[i];
		bool has = i + 1 < dash;
		if ((!strcmp(a, "-e") || !strcmp(a, "--env")) && has) {
			if (agent_env_add(&env, &nr_env, argv[++i]) < 0)
				goto bad;
		} else if (!strcmp(a, "--env-file") && has) {
			if (agent_env_file(&env, &nr_env, argv[++i]) < 0)
				goto bad;
		} else if ((!strcmp(a, "-w") || !strcmp(a, "--workdir")) && has) {
			workdir = argv[++i];
			if (workdir[0] != '/') {
				err_set("-w %s: the working directory must be an absolute path", workdir);
				goto bad;
			}
		} else if (!strcmp(a, "--timeout") && has) {
			char *end;
			long t = strtol(argv[++i], &end, 10);
			if (*end || t < 1 || t > 86400 * 365) {
				err_set("--timeout %s: a number of seconds, at least 1", argv[i]);
				goto bad;
			}
			timeout = t;
		} else if (!strcmp(a, "-t")) {
			tty = true;
		} else if (!strcmp(a, "--root")) {
			root = true;
		} else {
			err_set("unknown option or missing value: %s", a);
			goto bad;
		}
	}
	char dir[256], link[512];
	if (control_dir(dir, sizeof(dir)) < 0)
		goto bad;
	if (!*name || strchr(name, '/') || strlen(name) > 63) {
		err_set("bad VM name '%s'", name);
		goto bad;
	}
	snprintf(link, sizeof(link), "%s/%s.agent", dir, name);
	if (access(link, F_OK) < 0) {	/* lkvm run --agent: the VM's own vsock socket */
		char vs[512];
		if (vsock_default_path(name, vs, sizeof(vs)) < 0 || access(vs, F_OK) < 0) {
			err_set("no sandbox named %s is running (no %s)", name, link);
			goto bad;
		}
		snprintf(link, sizeof(link), "%s", vs);
	}
	int fd = vsock_host_connect(link, AGENT_PORT_EXEC, VSOCK_HANDSHAKE_MS, NULL);
	if (fd < 0)
		goto bad;
	struct agent_buf exec = { 0 };
	struct agent_cmd cmd = { .argv = argv + dash + 1, .env = env, .nr_env = nr_env, .cwd = workdir, .root = root, .tty = tty };
	if (agent_exec_records(&exec, &cmd) < 0)
		goto bad;
	sigset_t old;
	int sigfd = agent_session_signals(false, &old);
	struct agent_session s = { .fd = fd, .exec = &exec, .tty = tty, .timeout_s = timeout, .sigfd = sigfd, .vm_fd = -1,
				   .in_fd = 0, .out_fd = 1, .err_fd = 2 };
	int status = agent_host_run(&s);
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(fd);
	free(exec.data);
	if (status < 0)
		goto bad;
	return status;
bad:
	fprintf(stderr, "lkvm exec: %s\n", err_msg());
	return EXIT_USAGE;
}
