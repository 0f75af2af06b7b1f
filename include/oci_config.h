/*
 * An OCI bundle's config.json, as much of it as an lkvm VM can honour
 * (cmd/oci_config.c, docs/oci.md). Every path and value is checked here,
 * before anything touches the host: a hostile bundle gets a one-line error.
 * Library-style code: -1 with err_set().
 */
#ifndef LKVM_OCI_CONFIG_H
#define LKVM_OCI_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#define OCI_MAX_MOUNTS 64
#define OCI_MAX_GROUPS 64
#define OCI_MAX_RLIMITS 16
#define OCI_MAX_FILE (1 << 20)	/* a bind-mounted host file is copied in: at most this much */

struct json_node;

struct oci_process {
	char **args, **env;		/* NULL-terminated */
	int nargs, nenv;
	char cwd[PATH_MAX];
	uint32_t uid, gid;
	uint32_t gids[OCI_MAX_GROUPS];
	int ngids;
	bool terminal;
	struct { int res; unsigned long long soft, hard; } rlim[OCI_MAX_RLIMITS];
	int nrlim;
};

enum oci_mount_kind { OCI_MOUNT_GUEST, OCI_MOUNT_DIR, OCI_MOUNT_FILE };

struct oci_mount {
	enum oci_mount_kind kind;
	char type[32];			/* OCI_MOUNT_GUEST: proc, sysfs, tmpfs, devpts, mqueue */
	char dest[PATH_MAX];		/* absolute in the container, no "..", no spaces */
	char src[PATH_MAX];		/* binds: the host path, resolved */
	unsigned long flags;		/* MS_* */
	char data[1024];		/* the other options, comma-separated, or "-" */
	bool ro;
};

struct oci_config {
	struct oci_process proc;
	char root[PATH_MAX];		/* resolved, no symlink on the way */
	bool root_ro;
	struct oci_mount mounts[OCI_MAX_MOUNTS];
	int nmounts;
	char hostname[65];
	uint64_t mem;			/* bytes; 0: the default */
	int cpus;			/* 0: the default */
	char kernel[PATH_MAX];		/* org.lkvm.kernel, or "" */
	char *annotations_json;		/* {"k":"v",...} for the state */
	char skipped[512];		/* what was ignored, for the log */
};

/* Parse bundle/config.json (bundle: an absolute, resolved folder). */
int oci_config_load(struct oci_config *c, const char *bundle);
/* Parse a process object (config.process, or exec --process FILE's). */
int oci_process_parse(struct oci_process *p, const struct json_node *n);
void oci_config_free(struct oci_config *c);
void oci_process_free(struct oci_process *p);

/* A container id: letters, digits, '_', '-', '.', not starting with '.' or '-', at most 64 chars. */
bool oci_id_ok(const char *id);
/* A signal by name (TERM, SIGTERM) or number; -1 if none. */
int oci_signal(const char *s);

#endif
