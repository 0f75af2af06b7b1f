/*
 * The user's terminal. Raw mode while the guest runs (restored on every exit
 * path), Ctrl-A escapes: Ctrl-A x quits, Ctrl-A Ctrl-A sends one Ctrl-A.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>
#include "device.h"
#include "evloop.h"
#include "term.h"
#include "util.h"

#define ESCAPE_KEY 0x01	/* Ctrl-A */

static struct termios saved;
static volatile sig_atomic_t raw_active;
static struct device *console;	/* where input goes */
static struct evloop *term_loop;
static void (*quit_fn)(void *ctx);
static void *quit_ctx;
static bool escape_pending;

void term_restore(void)
{
	if (raw_active) {
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
		raw_active = 0;
	}
}


void term_output(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = write(STDOUT_FILENO, p, len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			return;	/* stdout gone: drop guest output rather than stall the guest */
		p += n;
		len -= n;
	}
}

/* Strip escapes from the input; returns the bytes for the guest. */
static size_t filter_escapes(uint8_t *buf, size_t n)
{
	size_t out = 0;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = buf[i];
		if (escape_pending) {
			escape_pending = false;
			if (c == 'x' || c == 'X') {
				if (quit_fn)
					quit_fn(quit_ctx);
				return out;
			}
			if (c == ESCAPE_KEY) {
				buf[out++] = c;
				continue;
			}
			/* Unknown escape: pass both through, as typed. */
			buf[out++] = ESCAPE_KEY;
			buf[out++] = c;
			continue;
		}
		if (c == ESCAPE_KEY && raw_active) {
			escape_pending = true;
			continue;
		}
		buf[out++] = c;
	}
	return out;
}

static void on_stdin(void *ctx, uint32_t events)
{
	uint8_t buf[512 + 1];
	ssize_t n = read(STDIN_FILENO, buf, 512);
	if (n <= 0) {
		if (n == 0 || (errno != EINTR && errno != EAGAIN))
			evloop_del(term_loop, STDIN_FILENO);	/* EOF: guest keeps running */
		return;
	}
	size_t len = filter_escapes(buf, n);
	if (len && console && console->ops->console_input)
		console->ops->console_input(console, buf, len);
}

void term_stop(void)
{
	if (term_loop)
		evloop_del(term_loop, STDIN_FILENO);
	term_loop = NULL;
	console = NULL;
	term_restore();
}

int term_start(struct evloop *loop, struct device *con, void (*on_quit)(void *ctx), void *ctx)
{
	term_loop = loop;
	console = con;
	quit_fn = on_quit;
	quit_ctx = ctx;
	/* In the background (lkvm run ... &, timeout(1)) the terminal is not ours:
	 * touching it would stop us with SIGTTOU/SIGTTIN. Leave it, take no input. */
	if (isatty(STDIN_FILENO) && tcgetpgrp(STDIN_FILENO) != getpgrp()) {
		pr_debug("not the terminal's foreground process: console input disabled");
		return 0;
	}
	if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0) {
		struct termios raw = saved;
		cfmakeraw(&raw);
		raw.c_oflag |= OPOST | ONLCR;	/* keep host-side messages readable */
		if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0) {
			raw_active = 1;
			atexit(term_restore);
		}
	}
	/* stdin that is a file or /dev/null: epoll refuses regular files, skip them. */
	if (evloop_add(loop, STDIN_FILENO, 0x001 /* EPOLLIN */, on_stdin, NULL) < 0)
		pr_debug("stdin is not pollable; guest console input disabled");
	return 0;
}
