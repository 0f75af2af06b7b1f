/* Shared by the control server and its clients (control/). */
#ifndef LKVM_CONTROL_INT_H
#define LKVM_CONTROL_INT_H

#include <stdbool.h>
#include <stddef.h>

/* DIR/NAME.sock for a VM name (checked: no '/', 1-63 bytes). */
int control_socket_path(const char *name, char *out, size_t len);
/* A connected stream socket, or -1 with errno. */
int control_connect(const char *path);
/* Remove path if it is a socket of ours that nobody answers on; true if removed. */
bool control_remove_stale(const char *path);

#endif
