/*
 * The supervisor of a jailed run (lib/supervise.c). A PID namespace holds
 * only the children of the process that makes it, and the kernel refuses
 * threads to a process whose children's PID namespace is not its own; and a
 * KVM VM works only in the mm that made it. So a jailed run decides first,
 * before /dev/kvm is opened: unshare(CLONE_NEWPID) and fork. The child, PID 1
 * of the new namespace, does all the rest (the VM, the jail). The parent
 * stays outside, holding nothing of the VM: it puts the child in a cgroup
 * (lib/cgroup.c) when one can be made, forwards SIGTERM, SIGINT, SIGHUP and
 * SIGQUIT to it, waits for it, and then removes what the jailed child could
 * not: its sockets (sent with supervise_reap()) and the cgroup.
 */
#ifndef LKVM_SUPERVISE_H
#define LKVM_SUPERVISE_H

#include <stdint.h>
#include <sys/types.h>

struct supervise {
	const char *name;	/* the VM's name, in the cgroup's */
	uint64_t mem_max;	/* the cgroup's memory.max */
	uint64_t pids_max;	/* its pids.max */
	const char *cgroup_mnt;	/* NULL: CGROUP_MNT */
	/* Out: why no cgroup was made ("" when one was); -v prints it. */
	char no_cgroup[256];
	char cgroup[4096];	/* the one made, "" if none */
};

/*
 * Fork the supervised child. 1 in the supervisor once the child has ended
 * and everything is removed, *status its exit status (128+N when signal N
 * ended it); 0 in the child (PID 1 of its PID namespace, in the cgroup if
 * one was made); -1 with err when it cannot be done (naming
 * unshare(CLONE_NEWPID)). Call with one thread, before anything is opened.
 */
int supervise_start(struct supervise *s, int *status);

/* The child: the sockets at these paths (as they are now) are the supervisor's to remove at the end. */
int supervise_reap(const char *const *paths, int n);

/* This process's PID as the host sees it (the child's is 1 in its namespace). */
pid_t supervise_host_pid(void);

#endif
