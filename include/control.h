/*
 * Per-VM control socket: a unix stream socket, mode 0600, speaking JSON lines
 * (protocol in docs/control-protocol.md). One request line, one reply line.
 */
#ifndef LKVM_CONTROL_H
#define LKVM_CONTROL_H

#include <stddef.h>
#include <stdbool.h>

struct vm;

#define CONTROL_PROTO_VERSION 1
#define CONTROL_MAX_LINE 4096

/* Directory for sockets: $XDG_RUNTIME_DIR/lkvm, else ~/.lkvm (created 0700). */
int control_dir(char *buf, size_t len);
/* Create the socket for vm->cfg.name (cleaning a stale one) and serve it. */
int control_start(struct vm *vm);
void control_stop(struct vm *vm);

/* Handle one request line; writes a NUL-terminated reply line into out. */
void control_handle(struct vm *vm, const char *line, char *out, size_t outlen);

/* Client side: send one request to VM name, read the reply. */
int control_request(const char *name, const char *request, char *reply, size_t len);

/* Tiny JSON helpers for flat objects of strings and numbers. */
bool json_get_str(const char *json, const char *key, char *out, size_t len);
bool json_get_num(const char *json, const char *key, long long *out);
bool json_valid_object(const char *json);

#endif
