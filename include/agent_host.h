/*
 * The host side of one agent session (cmd/agent_host.c): lkvm sandbox's own
 * command and lkvm exec's. It relays lkvm's stdin, stdout and stderr to and
 * from the command, forwards signals, enforces the timeout, and returns the
 * command's status. What the guest sends is untrusted: bad frames end the
 * session with an error, never more memory than one frame's bound.
 */
#ifndef LKVM_AGENT_HOST_H
#define LKVM_AGENT_HOST_H

#include <stdbool.h>
#include "agent_proto.h"

#define AGENT_TIMEOUT_STATUS 124	/* as timeout(1) */
#define AGENT_KILL_AFTER_MS 2000	/* SIGTERM at the timeout, SIGKILL this much later */

struct agent_session {
	int fd;				/* the stream to the agent (made non-blocking here) */
	const struct agent_buf *setup;	/* sent first when not NULL (the sandbox's boot) */
	const struct agent_buf *exec;	/* the command */
	bool tty;			/* the command has a terminal: lkvm's stdin goes raw */
	int timeout_s;			/* 0: none */
	int sigfd;			/* signalfd for SIGINT, SIGTERM, SIGHUP, SIGWINCH; -1: none */
	int vm_fd;			/* readable when the VM has ended (a pidfd); -1: none */
	int in_fd, out_fd, err_fd;	/* normally 0, 1, 2 */
	bool gave_up;			/* out: the guest did not answer (the timeout's SIGKILL, a third signal) */
};

/*
 * The command's status (0-255; 128+N for signal N; 124 when the timeout
 * ended it), or -1 with err set: the agent reported an error, broke the
 * protocol, or the connection or the VM ended before the command's status came.
 */
int agent_host_run(struct agent_session *s);

/*
 * A session's signals: SIGINT, SIGTERM, SIGHUP (forwarded to the command)
 * and SIGWINCH (its terminal size) blocked and read on the signalfd this
 * returns; SIGCHLD blocked too with block_chld; SIGPIPE ignored. *old gets
 * the mask to put back afterwards.
 */
#include <signal.h>
#include <stdbool.h>
int agent_session_signals(bool block_chld, sigset_t *old);

/* The records every EXEC carries: argv, environment, cwd, ids, terminal size. */
struct agent_cmd {
	char **argv;
	char **env;		/* NAME=VALUE */
	int nr_env;
	const char *cwd;
	bool root;		/* run as root, not as the caller's uid and gid */
	bool tty;
};
int agent_exec_records(struct agent_buf *b, const struct agent_cmd *c);

/*
 * The environment from -e NAME=VALUE / -e NAME / --env-file FILE: env_add
 * checks the name (letters, digits, _; not starting with a digit), takes the
 * host's value for a bare NAME (skipped when unset), and a later NAME wins.
 */
int agent_env_defaults(char ***env, int *nr);
int agent_env_add(char ***env, int *nr, const char *spec);
int agent_env_file(char ***env, int *nr, const char *path);

#endif
