/*
 * What the device models need from the rest of lkvm, for fuzzing them on a
 * fake VM without KVM, an event loop or a terminal (fuzz_virtq, fuzz_blk,
 * fuzz_qcow2, fuzz_devices).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include "evloop.h"
#include "term.h"
#include "util.h"
#include "vm.h"

void vm_request_exit(struct vm *vm, enum vm_exit_reason why, int status)
{
	if (!vm->exit_reason) {
		vm->exit_reason = why;
		vm->exit_status = status;
	}
}

/* The fuzzers drain their devices themselves. */
int vm_on_exit(struct vm *vm, void (*fn)(void *ctx), void *ctx) { return 0; }
int evloop_add(struct evloop *l, int fd, uint32_t events, ev_cb cb, void *ctx) { return -1; }

/* Every fuzzed UART has its own output; nothing may reach the real terminal. */
void term_set_sink(term_sink s, void *ctx) {}
void term_output(const void *buf, size_t len) { abort(); }

/*
 * Linked with -Wl,--wrap=pr_warn: a guest that breaks a device is warned
 * about once per device, and the fuzzers make a new one for every input.
 * The message is still formatted, so its arguments are checked.
 */
void __wrap_pr_warn(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
}
