/* The user's terminal: raw mode while the guest runs, Ctrl-A escapes. */
#ifndef LKVM_TERM_H
#define LKVM_TERM_H

#include <stddef.h>
#include <stdint.h>

struct vm;

/* Put stdin in raw mode if it is a tty and watch it on the event loop. */
int term_init(struct vm *vm);
/* Restore the terminal; safe to call many times and from a signal handler. */
void term_restore(void);
/* Guest console output to stdout (all of it, retrying short writes). */
void term_output(const void *buf, size_t len);
/* The one device that takes console input (8250 ttyS0 or virtio-console). */
typedef void (*term_sink)(void *ctx, const uint8_t *buf, size_t len);
void term_set_sink(term_sink sink, void *ctx);

#endif
