/*
 * lkvm oci's parts (docs/oci.md): cmd/oci.c (runc's command line, the state
 * folder) and cmd/oci_vm.c (the container's process: the VM booted to
 * lkvm's agent, then the session of config.process).
 */
#ifndef LKVM_OCI_H
#define LKVM_OCI_H

#include <limits.h>
#include <stdbool.h>
#include "oci_config.h"

#define OCI_VERSION "1.1.0"

struct oci_ctx {
	const char *id;
	char cdir[PATH_MAX];		/* the container's state folder (0700) */
	char bundle[PATH_MAX];
	char kernel[PATH_MAX];
	char self[PATH_MAX];		/* lkvm's binary: the guest's init */
	struct oci_config cfg;
	int tty;			/* the terminal's slave (terminal: true), else -1 */
	int ready_fd;			/* create waits on it: "ok" or the error line */
};

/* Log one line to stderr and --log (text or json); level "error", "warning" or "info". */
void oci_log(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The container's process (forked by create): never returns. */
void oci_container_main(struct oci_ctx *x) __attribute__((noreturn));

/* The EXEC records of a process (args, env, cwd, ids, terminal size, rlimits). */
struct agent_buf;
int oci_exec_records(struct agent_buf *b, const struct oci_process *p, int tty_fd);

/* status file in the container's folder: "created", "running", "stopped N". */
int oci_write_status(const char *cdir, const char *text);

#define OCI_SOCK_MAX 107	/* sun_path is 108 with its NUL: the container's folder + "/v.sock_1025" must fit */

#endif
