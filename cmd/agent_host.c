/*
 * The host side of an agent session (include/agent_host.h): one poll loop,
 * non-blocking toward the guest, with bounded buffers everywhere:
 *  - toward the guest: stdin only while fewer than AGENT_STDIN_WINDOW bytes
 *    are unacknowledged, so a command that never reads its input stalls
 *    lkvm's reading of stdin, not memory;
 *  - from the guest: the socket is read only when what the last read gave
 *    has been written to stdout and stderr, so a guest flooding output is
 *    slowed to what lkvm's readers take.
 * lkvm's stdout and stderr are shared with other processes, so they stay
 * blocking: writes to a pipe, terminal or socket go in PIPE_BUF pieces after
 * POLLOUT (a pipe with room for one page takes one whole), so a reader that
 * stalls stalls only those writes, never signals or the timeout.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include "agent_host.h"
#include "util.h"

struct out {
	int fd;
	bool whole;		/* a regular file or block device: write all at once */
	struct agent_buf b;
	size_t off;
};

struct hs {
	struct agent_session *s;
	struct agent_buf q;	/* frames toward the guest */
	size_t qoff;
	struct out out[2];	/* stdout, stderr */
	uint32_t inflight;	/* stdin bytes not yet acknowledged */
	bool in_eof, exited;
	int sent_sigpipe;
	int status;
};

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static int queue(struct hs *h, uint8_t type, const void *p, uint32_t len)
{
	uint8_t hdr[AGENT_HDR];
	agent_hdr(hdr, type, len);
	if (h->qoff && (h->qoff == h->q.len || h->qoff > AGENT_MAX_DATA)) {	/* what was sent goes */
		memmove(h->q.data, h->q.data + h->qoff, h->q.len - h->qoff);
		h->q.len -= h->qoff;
		h->qoff = 0;
	}
	return agent_buf_put(&h->q, hdr, sizeof(hdr)) < 0 || (len && agent_buf_put(&h->q, p, len) < 0) ? -1 : 0;
}

static int queue_u32(struct hs *h, uint8_t type, uint32_t v)
{
	uint8_t b[4] = { v, v >> 8, v >> 16, v >> 24 };
	return queue(h, type, b, 4);
}

static int queue_winsize(struct hs *h)
{
	struct winsize ws;
	if (ioctl(h->s->in_fd, TIOCGWINSZ, &ws) < 0)
		return 0;
	uint8_t b[4] = { ws.ws_row, ws.ws_row >> 8, ws.ws_col, ws.ws_col >> 8 };
	return queue(h, AGENT_WINSIZE, b, 4);
}

/* Text from the guest, made one printable line. */
static void clean_text(char *dst, size_t cap, const uint8_t *p, uint32_t len)
{
	size_t k = 0;
	for (uint32_t i = 0; i < len && k + 1 < cap; i++)
		dst[k++] = isprint(p[i]) ? (char)p[i] : '?';
	dst[k] = 0;
}

static int on_frame(void *ctx, uint8_t type, const uint8_t *p, uint32_t len)
{
	struct hs *h = ctx;
	if (h->exited)
		return err_set("frame of type %u after the exit status", type);
	switch (type) {
	case AGENT_STDOUT:
	case AGENT_STDERR:
		if (!len)
			return err_set("empty output frame");
		return agent_buf_put(&h->out[type == AGENT_STDERR].b, p, len);
	case AGENT_ACK: {
		if (len != 4)
			return err_set("ACK of %u bytes", len);
		uint32_t n = p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
		if (n > h->inflight)
			return err_set("ACK of %u stdin bytes, %u were sent", n, h->inflight);
		h->inflight -= n;
		return 0;
	}
	case AGENT_EXIT:
		if (len != 4 || p[0] > 1 || p[2] || p[3] || (p[0] == 1 && (p[1] == 0 || p[1] > 64)))
			return err_set("malformed exit status");
		h->status = p[0] ? 128 + p[1] : p[1];
		h->exited = true;
		return 0;
	case AGENT_ERROR: {
		char msg[AGENT_MAX_ERROR + 1];
		clean_text(msg, sizeof(msg), p, len);
		err_set("in the guest: %s", msg);
		h->status = -2;	/* not a protocol error: the agent's own report */
		return -1;
	}
	}
	return err_set("frame of type %u", type);
}

/* Write some of what is pending for one output; false when its fd is gone. */
static bool out_write(struct out *o)
{
	size_t left = o->b.len - o->off, n = o->whole || left < PIPE_BUF ? left : PIPE_BUF;
	ssize_t w = write(o->fd, o->b.data + o->off, n);
	if (w < 0 && errno != EINTR && errno != EAGAIN)
		return false;
	if (w > 0)
		o->off += w;
	if (o->off == o->b.len)
		o->b.len = o->off = 0;
	return true;
}

static bool out_pending(const struct hs *h)
{
	return h->out[0].b.len || h->out[1].b.len;
}

static void out_init(struct out *o, int fd)
{
	struct stat st;
	o->fd = fd;
	o->whole = fstat(fd, &st) == 0 && (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode));
}

int agent_host_run(struct agent_session *s)
{
	struct hs h = { .s = s, .status = -1 };
	struct agent_rx rx;
	agent_rx_init(&rx, true);
	out_init(&h.out[0], s->out_fd);
	out_init(&h.out[1], s->err_fd);
	fcntl(s->fd, F_SETFL, fcntl(s->fd, F_GETFL) | O_NONBLOCK);
	struct termios saved;
	bool raw = s->tty && tcgetattr(s->in_fd, &saved) == 0;
	if (raw) {
		struct termios t = saved;
		cfmakeraw(&t);
		tcsetattr(s->in_fd, TCSANOW, &t);
	}
	int ret = -1;
	if ((s->setup && queue(&h, AGENT_SETUP, s->setup->data, s->setup->len) < 0) ||
	    queue(&h, AGENT_EXEC, s->exec->data, s->exec->len) < 0)
		goto out;
	long long deadline = s->timeout_s ? now_ms() + s->timeout_s * 1000LL : 0;
	int timed_out = 0;	/* 1: SIGTERM sent, 2: SIGKILL sent */
	int nr_sigs = 0;	/* SIGINT, SIGTERM, SIGHUP forwarded */
	static uint8_t buf[AGENT_MAX_DATA + AGENT_HDR];
	for (;;) {
		if (h.exited && !out_pending(&h)) {
			ret = timed_out ? AGENT_TIMEOUT_STATUS : h.status;
			break;
		}
		struct pollfd p[7];
		int np = 0, i_sock = -1, i_in = -1, i_out[2] = { -1, -1 }, i_sig = -1, i_vm = -1;
		short ev = 0;
		if (!out_pending(&h) && !h.exited)
			ev |= POLLIN;
		if (h.q.len > h.qoff)
			ev |= POLLOUT;
		p[i_sock = np++] = (struct pollfd){ .fd = s->fd, .events = ev };
		if (!h.in_eof && h.inflight < AGENT_STDIN_WINDOW && h.q.len - h.qoff < AGENT_MAX_DATA)
			p[i_in = np++] = (struct pollfd){ .fd = s->in_fd, .events = POLLIN };
		for (int k = 0; k < 2; k++)
			if (h.out[k].b.len)
				p[i_out[k] = np++] = (struct pollfd){ .fd = h.out[k].fd, .events = POLLOUT };
		if (s->sigfd >= 0)
			p[i_sig = np++] = (struct pollfd){ .fd = s->sigfd, .events = POLLIN };
		if (s->vm_fd >= 0)
			p[i_vm = np++] = (struct pollfd){ .fd = s->vm_fd, .events = POLLIN };
		/* The timeout's steps: SIGTERM at the deadline, SIGKILL later, then the VM is given up. */
		long long step_at = deadline + (timed_out >= 1 ? AGENT_KILL_AFTER_MS : 0) +
				    (timed_out >= 2 ? 3 * AGENT_KILL_AFTER_MS : 0);
		int wait = -1;
		if (deadline)
			wait = step_at - now_ms() < 0 ? 0 : (int)(step_at - now_ms());
		if (poll(p, np, wait) < 0 && errno != EINTR) {
			err_errno("poll");
			goto out;
		}
		if (deadline && now_ms() >= step_at) {
			if (timed_out == 2) {
				s->gave_up = true;
				ret = AGENT_TIMEOUT_STATUS;
				break;
			}
			if (queue_u32(&h, AGENT_SIGNAL, timed_out ? SIGKILL : SIGTERM) < 0)
				goto out;
			timed_out++;
		}
		for (int k = 0; k < 2; k++)
			if (i_out[k] >= 0 && p[i_out[k]].revents && !out_write(&h.out[k])) {
				/* Its reader is gone: what is left is dropped, and the command learns it
				 * as it would on a local pipe (once: SIGPIPE to its process group). */
				h.out[k].b.len = h.out[k].off = 0;
				if (errno == EPIPE && !h.sent_sigpipe++ && queue_u32(&h, AGENT_SIGNAL, SIGPIPE) < 0)
					goto out;
			}
		if (i_sig >= 0 && (p[i_sig].revents & POLLIN)) {
			struct signalfd_siginfo si;
			while (read(s->sigfd, &si, sizeof(si)) == sizeof(si)) {
				if (si.ssi_signo == SIGWINCH) {
					if (s->tty && queue_winsize(&h) < 0)
						goto out;
				} else if (++nr_sigs >= 3) {	/* the third: the guest does not answer; give up */
					fprintf(stderr, "lkvm: signal %d a third time: stopping the VM\n", (int)si.ssi_signo);
					s->gave_up = true;
					ret = 128 + si.ssi_signo;
					goto out;
				} else if (queue_u32(&h, AGENT_SIGNAL, si.ssi_signo) < 0) {
					goto out;
				}
			}
		}
		if (i_in >= 0 && (p[i_in].revents & (POLLIN | POLLHUP | POLLERR))) {
			size_t room = AGENT_STDIN_WINDOW - h.inflight;
			ssize_t n = read(s->in_fd, buf, room < AGENT_MAX_DATA ? room : AGENT_MAX_DATA);
			if (n > 0) {
				if (queue(&h, AGENT_STDIN, buf, n) < 0)
					goto out;
				h.inflight += n;
			} else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
				h.in_eof = true;
				if (queue(&h, AGENT_STDIN, NULL, 0) < 0)
					goto out;
			}
		}
		if (p[i_sock].revents & POLLOUT) {
			ssize_t w = send(s->fd, h.q.data + h.qoff, h.q.len - h.qoff, MSG_NOSIGNAL);
			if (w > 0)
				h.qoff += w;
			else if (w < 0 && errno != EAGAIN && errno != EINTR)
				h.q.len = h.qoff = 0;	/* the agent stopped reading: what it sent still counts */
			if (w < 0 && errno != EAGAIN && errno != EINTR)
				h.in_eof = true;
		}
		if (p[i_sock].revents & (POLLIN | POLLHUP | POLLERR) && (ev & POLLIN)) {
			ssize_t n = recv(s->fd, buf, sizeof(buf), 0);
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
				err_set("the guest's agent closed the connection before the command's exit status");
				goto out;
			}
			if (n > 0 && agent_rx_feed(&rx, buf, n, on_frame, &h) < 0) {
				if (h.status != -2) {
					char m[300];
					snprintf(m, sizeof(m), "%s", err_msg());
					err_set("the guest's agent broke the protocol: %s", m);
				}
				goto out;
			}
		}
		if (i_vm >= 0 && (p[i_vm].revents & POLLIN) && !h.exited) {
			err_set("the VM ended before the command's exit status came");
			goto out;
		}
	}
out:
	if (raw)
		tcsetattr(s->in_fd, TCSANOW, &saved);
	agent_rx_free(&rx);
	free(h.q.data);
	free(h.out[0].b.data);
	free(h.out[1].b.data);
	return ret;
}

/* ---- building the EXEC records ---- */

int agent_exec_records(struct agent_buf *b, const struct agent_cmd *c)
{
	char num[32];
	for (int i = 0; c->argv[i]; i++)
		if (agent_rec_add(b, REC_ARG, c->argv[i]) < 0)
			return -1;
	for (int i = 0; i < c->nr_env; i++)
		if (agent_rec_add(b, REC_ENV, c->env[i]) < 0)
			return -1;
	if (c->cwd && agent_rec_add(b, REC_CWD, c->cwd) < 0)
		return -1;
	if (!c->root) {
		snprintf(num, sizeof(num), "%u", (unsigned)getuid());
		if (agent_rec_add(b, REC_UID, num) < 0)
			return -1;
		snprintf(num, sizeof(num), "%u", (unsigned)getgid());
		if (agent_rec_add(b, REC_GID, num) < 0)
			return -1;
		gid_t groups[256];
		int n = getgroups(256, groups);
		for (int i = 0; i < n; i++) {
			snprintf(num, sizeof(num), "%u", (unsigned)groups[i]);
			if (agent_rec_add(b, REC_GROUP, num) < 0)
				return -1;
		}
	}
	if (c->tty) {
		struct winsize ws = { .ws_row = 24, .ws_col = 80 };
		ioctl(0, TIOCGWINSZ, &ws);
		snprintf(num, sizeof(num), "%u %u", ws.ws_row, ws.ws_col);
		if (agent_rec_add(b, REC_TTY, num) < 0)
			return -1;
	}
	if (b->len > AGENT_MAX_JOB)
		return err_set("the command line and environment take %zu bytes (at most %u)", b->len, AGENT_MAX_JOB);
	return 0;
}

/* ---- the environment ---- */

static bool good_name(const char *s, size_t n)
{
	if (!n || isdigit((unsigned char)s[0]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_')
			return false;
	return true;
}

static int env_set(char ***env, int *nr, const char *name, size_t nlen, const char *value)
{
	size_t n = nlen + strlen(value) + 2;
	char *e = xcalloc(1, n);
	snprintf(e, n, "%.*s=%s", (int)nlen, name, value);
	for (int i = 0; i < *nr; i++)
		if (!strncmp((*env)[i], e, nlen + 1)) {
			free((*env)[i]);
			(*env)[i] = e;
			return 0;
		}
	char **ne = realloc(*env, (*nr + 1) * sizeof(char *));
	if (!ne) {
		free(e);
		return err_set("out of memory");
	}
	*env = ne;
	(*env)[(*nr)++] = e;
	return 0;
}

int agent_env_add(char ***env, int *nr, const char *spec)
{
	const char *eq = strchr(spec, '=');
	size_t nlen = eq ? (size_t)(eq - spec) : strlen(spec);
	if (!good_name(spec, nlen))
		return err_set("-e %s: bad variable name '%.*s' (letters, digits and _, not starting with a digit)",
			       spec, (int)nlen, spec);
	if (eq)
		return env_set(env, nr, spec, nlen, eq + 1);
	const char *v = getenv(spec);
	return v ? env_set(env, nr, spec, nlen, v) : 0;
}

int agent_env_defaults(char ***env, int *nr)
{
	static const char *const names[] = { "PATH", "HOME", "USER", "TERM", "LANG", "TZ" };
	extern char **environ;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (agent_env_add(env, nr, names[i]) < 0)
			return -1;
	for (char **e = environ; *e; e++) {
		const char *eq = strchr(*e, '=');
		if (!strncmp(*e, "LC_", 3) && eq && good_name(*e, eq - *e) && env_set(env, nr, *e, eq - *e, eq + 1) < 0)
			return -1;
	}
	return 0;
}

int agent_env_file(char ***env, int *nr, const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return err_errno("--env-file %s", path);
	char line[8192];
	int lineno = 0, r = 0;
	while (r == 0 && fgets(line, sizeof(line), f)) {
		lineno++;
		line[strcspn(line, "\r\n")] = 0;
		const char *s = line;
		while (*s == ' ' || *s == '\t')
			s++;
		if (!*s || *s == '#')
			continue;
		if (agent_env_add(env, nr, s) < 0) {
			char m[300];
			snprintf(m, sizeof(m), "%s", err_msg());
			r = err_set("--env-file %s line %d: %s", path, lineno, m);
		}
	}
	fclose(f);
	return r;
}

int agent_session_signals(bool block_chld, sigset_t *old)
{
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGWINCH);
	int sigfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	if (block_chld)
		sigaddset(&sigs, SIGCHLD);
	sigprocmask(SIG_BLOCK, &sigs, old);
	signal(SIGPIPE, SIG_IGN);
	return sigfd;
}
