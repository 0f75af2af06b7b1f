/*
 * What an `lkvm sandbox` guest may see and reach (cmd/sandbox_confine.c):
 * the sandbox's own options, the root share's view (include/p9.h) and the
 * user-mode network's policy (net/user_policy.c). Library code: errors are
 * values (err_set).
 */
#ifndef LKVM_SANDBOX_CONFINE_H
#define LKVM_SANDBOX_CONFINE_H

#include <limits.h>
#include <stdbool.h>

#define SANDBOX_MAX_RULES 16

struct sandbox_confine {
	bool host_root;		/* --host-root: the whole / (no view) */
	bool host_loopback;	/* --host-loopback */
	int nr_allow, nr_expose;
	const char *allow[SANDBOX_MAX_RULES];	/* --net-allow HOST[/BITS][:PORT] */
	const char *expose[SANDBOX_MAX_RULES];	/* --expose PATH: added to the view */
	char view[PATH_MAX];	/* the root share's view file ("" with --host-root) */
	char cwd_view[PATH_MAX];	/* the working directory share's (a reader only), or "" */
	char net[2048];		/* --network argument for a sandbox without one of its own */
};

/*
 * Take the sandbox's own options out of argv[1, *end) (the run options
 * before "--"); the others stay, in order, and *end moves back. 0, or -1
 * with err set naming the option.
 */
int sandbox_confine_parse(struct sandbox_confine *c, int argc, char **argv, int *end);

/*
 * Write the views into the private folder dir (the scratch folder, never
 * shared): the allow list (/usr, /bin, /sbin, /lib*, /opt, /etc, the working
 * tree cwd, lkvm's own binary self, --expose paths), the secrets left out,
 * the guest's own mount points as empty folders, and the invoking user as
 * the reader (SUDO_UID's under sudo). 0, or -1 with err set.
 */
int sandbox_confine_views(struct sandbox_confine *c, const char *dir, const char *cwd, const char *self);

/*
 * The user's --network options in argv[1, end) made to follow the sandbox
 * policy (mode=user ones without a policy get it appended, in place, as
 * option text that lives as long as the process); *has_net says whether
 * there was any. c->net holds the argument for the NIC a sandbox gets
 * otherwise.
 */
void sandbox_confine_network(struct sandbox_confine *c, int end, char **argv, bool *has_net);

#endif
