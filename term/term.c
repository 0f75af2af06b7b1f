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
#include "evloop.h"
#include "term.h"
#include "util.h"
#include "vm.h"

#define ESCAPE_KEY 0x01	/* Ctrl-A */

static struct termios saved;
static volatile sig_atomic_t raw_active;
static term_sink sink;
static void *sink_ctx;
static bool escape_pending;
static struct vm *term_vm;

void term_restore(void)
{
	if (raw_active) {
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
		raw_active = 0;
	}
}

void term_set_sink(term_sink s, void *ctx)
{
	sink_ctx = ctx;
	__atomic_store_n(&sink, s, __ATOMIC_RELEASE);
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
				vm_request_exit(term_vm, VM_QUIT, 0);
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
			evloop_del(term_vm->loop, STDIN_FILENO);	/* EOF: guest keeps running */
		return;
	}
	size_t len = filter_escapes(buf, n);
	term_sink s = __atomic_load_n(&sink, __ATOMIC_ACQUIRE);
	if (len && s)
		s(sink_ctx, buf, len);
}

int term_init(struct vm *vm)
{
	term_vm = vm;
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
	if (evloop_add(vm->loop, STDIN_FILENO, 0x001 /* EPOLLIN */, on_stdin, NULL) < 0)
		pr_debug("stdin is not pollable; guest console input disabled");
	return 0;
}
