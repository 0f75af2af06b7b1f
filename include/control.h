/*
 * The control socket: one unix stream socket per VM, mode 0600, in a
 * directory only its user may write; JSON lines (docs/control-protocol.md),
 * one request line and one reply line per connection. The server runs on a
 * thread of its own and knows no device: devices declare their commands and
 * `lkvm stat` members in their ops, other owners (the gdb stub, snapshots)
 * register theirs here.
 */
#ifndef LKVM_CONTROL_H
#define LKVM_CONTROL_H

#include <stddef.h>
#include <stdbool.h>
#include "json.h"

struct vm;
struct control;

#define CONTROL_PROTO_VERSION 1
#define CONTROL_MAX_LINE 4096

/*
 * $XDG_RUNTIME_DIR/lkvm, else ~/.lkvm: created 0700, or, when it exists,
 * refused unless it is a real directory of ours that nobody else may write.
 */
int control_dir(char *buf, size_t len);

/* A server for vm named name (NULL: lkvm-PID), not yet listening. */
struct control *control_new(struct vm *vm, const char *name);
/* Bind the socket (refused if a VM of that name runs) and serve it on a thread of its own. */
int control_listen(struct control *c);
/* control_listen in two: the socket (before lkvm's jail), then its thread (after it). */
int control_bind(struct control *c);
int control_start(struct control *c);
/* The socket's path once bound, else NULL. */
const char *control_path(const struct control *c);
/* Stop serving, remove the socket, free. */
void control_free(struct control *c);

/* A command of an owner that is not a device: reply gets its members; 0, or -1 with err set. */
typedef int (*control_fn)(void *ctx, const char *req, struct json_writer *reply);
int control_register(struct control *c, const char *cmd, control_fn fn, void *ctx);

/*
 * A command that takes descriptors passed with its request (SCM_RIGHTS):
 * fds[0..nfds) are the handler's to use and close. Other commands never see
 * descriptors; the server closes any nobody took.
 */
typedef int (*control_fd_fn)(void *ctx, const char *req, const int *fds, int nfds, struct json_writer *reply);
int control_register_fds(struct control *c, const char *cmd, control_fd_fn fn, void *ctx);

/* Handle one request line; writes a NUL-terminated reply line (cut short to fit) into out. */
void control_handle(struct control *c, const char *line, char *out, size_t outlen);

/* Client side: send one request to VM name, read the reply. */
int control_request(const char *name, const char *request, char *reply, size_t len);
/* The same with descriptors passed along, waiting up to timeout_s seconds for the reply. */
int control_request_fds(const char *name, const char *request, const int *fds, int nfds, char *reply, size_t len,
			int timeout_s);
/* Call fn for every VM with a socket in the directory; stale sockets are removed. */
int control_for_each(int (*fn)(const char *name, void *arg), void *arg);

#endif
