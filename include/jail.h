/*
 * lkvm jailed (lib/jail.c): after set-up (/dev/kvm, the VM, its vCPUs,
 * disks, taps, shares and the control socket are open) and before any
 * device thread starts, lkvm (already PID 1 of a PID namespace of its own,
 * include/supervise.h) moves into new mount, IPC and UTS namespaces,
 * an empty root, resource limits and an unprivileged user without
 * capabilities; the runner then installs seccomp. Each step that fails is
 * named and the run ends: --jail never runs unjailed. docs/jail.md names
 * each step with its syscall.
 */
#ifndef LKVM_JAIL_H
#define LKVM_JAIL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include "options.h"

enum jail_mode { JAIL_DEFAULT, JAIL_ON, JAIL_OFF };

struct jail_opts {		/* --jail, --no-jail, --jail-user */
	enum jail_mode mode;
	const char *user;	/* NAME, UID or UID:GID; NULL: SUDO_UID's user, else nobody */
};

extern const struct opt jail_run_opts[];

/* Does the runner jail itself? --jail, --no-jail, else when started as root. */
bool jail_wanted(const struct jail_opts *o);
/* The user lkvm becomes: 0, or -1 with err set (unknown, or root). */
int jail_user(const struct jail_opts *o, uid_t *uid, gid_t *gid);

/* The runner's limits: RLIMIT_AS room over what is mapped at the jail (guest RAM), RLIMIT_NPROC; the cgroup's too. */
#define JAIL_MEM_ROOM (2ULL << 30)
#define JAIL_MEM_PER_CPU (16ULL << 20)
#define JAIL_NPROC 4096

#define JAIL_MAX_KEEP 4
struct jail_limits {
	uint64_t mem_bytes;	/* RLIMIT_AS: what lkvm maps now plus this much */
	unsigned nproc;		/* RLIMIT_NPROC (the jail user's processes and threads) */
	const char *keep[JAIL_MAX_KEEP];	/* host folders bound at their paths in the empty root */
	int nr_keep;
};

/* Enter the jail (single-threaded only): 0, or -1 with err naming the step. */
int jail_enter(const struct jail_opts *o, const struct jail_limits *l);

/* Tests: called with each step's name as it is done. */
extern void (*jail_hook)(const char *step);

#endif
