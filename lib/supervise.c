/*
 * The supervisor of a jailed run (include/supervise.h). It touches no guest
 * data and opens nothing of the VM's: it forks before /dev/kvm is opened.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>
#include "cgroup.h"
#include "supervise.h"
#include "util.h"

#define MAX_REAP 4

/* One socket the supervisor removes at the end, if it is still this one. */
struct reap {
	char path[108];
	dev_t dev;
	ino_t ino;
};

static pid_t host_pid;		/* the child's PID on the host, sent by the supervisor */
static int reap_fd = -1;	/* the child's end of the pipe its sockets go by */

pid_t supervise_host_pid(void)
{
	return host_pid ? host_pid : getpid();
}

int supervise_reap(const char *const *paths, int n)
{
	for (int i = 0; i < n; i++) {
		struct reap r = { .dev = 0 };
		struct stat st;
		if (!paths[i] || lstat(paths[i], &st) < 0 || !S_ISSOCK(st.st_mode))
			continue;
		if (strlen(paths[i]) >= sizeof(r.path))
			return err_set("%s: path too long", paths[i]);
		snprintf(r.path, sizeof(r.path), "%s", paths[i]);
		r.dev = st.st_dev;
		r.ino = st.st_ino;
		if (reap_fd < 0 || write(reap_fd, &r, sizeof(r)) != sizeof(r))
			return err_errno("jail: the supervisor is gone");
	}
	return 0;
}

static void remove_sockets(const struct reap *r, int n)
{
	for (int i = 0; i < n; i++) {
		struct stat st;
		if (!lstat(r[i].path, &st) && S_ISSOCK(st.st_mode) && st.st_dev == r[i].dev && st.st_ino == r[i].ino)
			unlink(r[i].path);
	}
}

/* The child: wait for the supervisor's word (it has put us in the cgroup); 0, or -1 if it is gone. */
static int child_start(int go, int rep, const sigset_t *old)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);	/* before the word: a supervisor gone earlier leaves EOF */
	pid_t pid = 0;
	ssize_t n;
	while ((n = read(go, &pid, sizeof(pid))) < 0 && errno == EINTR)
		;
	close(go);
	sigprocmask(SIG_SETMASK, old, NULL);
	if (n != sizeof(pid) || pid <= 0) {
		close(rep);
		return err_set("jail: the supervisor is gone");
	}
	host_pid = pid;
	reap_fd = rep;
	return 0;
}

/* The supervisor: forward signals, collect the child's sockets, wait. Its wait status. */
static int watch(pid_t child, int sigfd, int rep, struct reap *reap, int *nr_reap)
{
	for (;;) {
		struct pollfd p[2] = { { .fd = sigfd, .events = POLLIN }, { .fd = rep, .events = POLLIN } };
		if (poll(p, rep >= 0 ? 2 : 1, -1) < 0 && errno != EINTR)
			break;
		if (rep >= 0 && (p[1].revents & (POLLIN | POLLHUP))) {
			struct reap r;
			ssize_t n = read(rep, &r, sizeof(r));
			if (n == sizeof(r) && *nr_reap < MAX_REAP) {
				r.path[sizeof(r.path) - 1] = 0;
				reap[(*nr_reap)++] = r;
			} else if (n == 0 || (n < 0 && errno != EINTR)) {
				close(rep);	/* the child closed it (or ended): only the signals are left */
				rep = -1;
			}
		}
		struct signalfd_siginfo si;
		if (!(p[0].revents & POLLIN) || read(sigfd, &si, sizeof(si)) != sizeof(si))
			continue;
		if (si.ssi_signo != SIGCHLD) {
			kill(child, (int)si.ssi_signo);
			continue;
		}
		int st;
		if (waitpid(child, &st, WNOHANG) == child) {
			if (rep >= 0) {	/* what it sent just before it ended */
				struct reap r;
				while (*nr_reap < MAX_REAP && read(rep, &r, sizeof(r)) == sizeof(r)) {
					r.path[sizeof(r.path) - 1] = 0;
					reap[(*nr_reap)++] = r;
				}
				close(rep);
			}
			return st;
		}
	}
	int st = 0;	/* poll failed: wait all the same */
	while (waitpid(child, &st, 0) < 0 && errno == EINTR)
		;
	if (rep >= 0)
		close(rep);
	return st;
}

int supervise_start(struct supervise *s, int *status)
{
	s->no_cgroup[0] = s->cgroup[0] = 0;
	struct cgroup cg;
	if (cgroup_make(&cg, s->cgroup_mnt, s->name, s->mem_max, s->pids_max) < 0)
		snprintf(s->no_cgroup, sizeof(s->no_cgroup), "%s", err_msg());
	sigset_t sigs, old;
	sigemptyset(&sigs);
	int fwd[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGCHLD };
	for (unsigned i = 0; i < sizeof(fwd) / sizeof(fwd[0]); i++)
		sigaddset(&sigs, fwd[i]);
	sigprocmask(SIG_BLOCK, &sigs, &old);
	int sigfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	int go[2] = { -1, -1 }, rep[2] = { -1, -1 };
	if (sigfd < 0 || pipe2(go, O_CLOEXEC) < 0 || pipe2(rep, O_CLOEXEC | O_DIRECT) < 0) {
		err_errno("jail: pid namespace: the supervisor's signalfd or pipes");
		goto fail;
	}
	if (unshare(CLONE_NEWPID) < 0) {
		err_errno("jail: pid namespace: unshare(CLONE_NEWPID)%s", errno == EPERM ? " (needs root)" : "");
		goto fail;
	}
	struct termios tio;	/* the terminal as it is now: restored if the child leaves it raw */
	int tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &tio) == 0;
	fflush(NULL);
	pid_t child = fork();
	if (child < 0) {
		err_errno("jail: pid namespace: fork");
		goto fail;
	}
	if (child == 0) {
		close(sigfd);
		close(go[1]);
		close(rep[0]);
		return child_start(go[0], rep[1], &old);
	}
	close(go[0]);
	close(rep[1]);
	if (cg.dir[0] && cgroup_enter(&cg, child) < 0) {
		snprintf(s->no_cgroup, sizeof(s->no_cgroup), "%s", err_msg());
		cgroup_remove(&cg);
	}
	snprintf(s->cgroup, sizeof(s->cgroup), "%s", cg.dir);
	if (write(go[1], &child, sizeof(child)) != sizeof(child))
		kill(child, SIGKILL);
	close(go[1]);
	struct reap reap[MAX_REAP];
	int nr_reap = 0;
	int st = watch(child, sigfd, rep[0], reap, &nr_reap);
	*status = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : 1;
	remove_sockets(reap, nr_reap);
	if (cgroup_remove(&cg) < 0)
		fprintf(stderr, "lkvm: jail: cgroup: %s\n", err_msg());
	struct termios now;
	if (tty && tcgetattr(STDIN_FILENO, &now) == 0 && memcmp(&now, &tio, sizeof(tio)))
		tcsetattr(STDIN_FILENO, TCSANOW, &tio);
	close(sigfd);
	sigprocmask(SIG_SETMASK, &old, NULL);
	return 1;
fail:
	for (int i = 0; i < 2; i++) {
		if (go[i] >= 0)
			close(go[i]);
		if (rep[i] >= 0)
			close(rep[i]);
	}
	if (sigfd >= 0)
		close(sigfd);
	sigprocmask(SIG_SETMASK, &old, NULL);
	char why[512];
	snprintf(why, sizeof(why), "%s", err_msg());
	cgroup_remove(&cg);
	err_set("%s", why);
	return -1;
}
