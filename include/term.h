/* The user's terminal: raw mode while the guest runs, Ctrl-A escapes. */
#ifndef LKVM_TERM_H
#define LKVM_TERM_H

#include <stddef.h>
#include <stdint.h>

struct evloop;
struct device;

/*
 * Put stdin in raw mode if it is a tty and watch it on loop: input goes to
 * con's console_input, Ctrl-A x calls on_quit(ctx). One terminal per process.
 */
int term_start(struct evloop *loop, struct device *con, void (*on_quit)(void *ctx), void *ctx);
/* Stop reading and restore the terminal. */
void term_stop(void);
/* Restore the terminal; safe to call many times and from a signal handler. */
void term_restore(void);
/* Guest console output to stdout (all of it, retrying short writes). */
void term_output(const void *buf, size_t len);

#endif
