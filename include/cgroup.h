/*
 * A cgroup (v2) per jailed VM (lib/cgroup.c), made by its supervisor
 * (lib/supervise.c): lkvm-NAME-PID next to the supervisor's own cgroup (under
 * its parent; in the root when lkvm is in the root), with the memory and pids
 * controllers enabled there, memory.max and pids.max set. The VM process is
 * moved in before it opens /dev/kvm; the supervisor kills what is left in it
 * and removes it after the VM ends.
 */
#ifndef LKVM_CGROUP_H
#define LKVM_CGROUP_H

#include <limits.h>
#include <stdint.h>
#include <sys/types.h>

#define CGROUP_MNT "/sys/fs/cgroup"

struct cgroup {
	char dir[PATH_MAX];	/* "": none made */
};

/*
 * Make lkvm-NAME-PID under the cgroup2 mount mnt (CGROUP_MNT when NULL) with
 * these limits: 0, or -1 with err saying why none could be made (not cgroup2,
 * not writable, a controller missing...) and nothing left behind.
 */
int cgroup_make(struct cgroup *cg, const char *mnt, const char *name, uint64_t mem_max, uint64_t pids_max);
/* Move pid into it: 0, or -1 with err. */
int cgroup_enter(const struct cgroup *cg, pid_t pid);
/* Kill what is still in it (cgroup.kill where there is one) and remove it: 0, or -1 with err. */
int cgroup_remove(struct cgroup *cg);

#endif
