/*
 * virtio-vsock (virtio 1.2 section 5.10) in user space, and its host side:
 * Firecracker's Unix-socket protocol.
 *
 *   host -> guest: a host program connects to the VM's socket PATH, sends
 *     "CONNECT <port>\n" and, once the guest's listener on <port> accepted,
 *     reads "OK <hostport>\n"; the rest is the byte stream. A refused
 *     connection (the guest answered RST), a bad line or no answer within
 *     VSOCK_HANDSHAKE_MS closes the host connection instead.
 *   guest -> host: a guest connecting to CID 2 port P reaches the program
 *     listening on the Unix socket "PATH_P"; none there: the guest gets RST.
 *
 * PATH defaults to <control dir>/<VM name>.vsock (control_dir(), include/control.h).
 */
#ifndef LKVM_VSOCK_H
#define LKVM_VSOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct vm_config;

struct vm;
struct vsock;
struct device;

#define VSOCK_HOST_CID 2
#define VSOCK_MIN_CID 3			/* 0-2 are reserved: hypervisor, local, host */
#define VSOCK_MAX_CID 0xfffffffeU	/* 0xffffffff is VMADDR_CID_ANY */
#define VSOCK_MAX_CONNS 1024		/* connections and host clients in their handshake */
#define VSOCK_CONN_BUF 65536		/* our buf_alloc: guest bytes held per connection */
#define VSOCK_HANDSHAKE_MS 5000		/* CONNECT line, then the guest's answer */
#define VSOCK_PORT_SUFFIX_MAX 11	/* "_4294967295" */

/*
 * The device type is virtio_vsock_device (include/devices.h, option --vsock).
 * vsock_create() makes one instance and adds it to the VM's registry, which
 * runs its lifecycle (include/device.h): start (its thread, after seccomp),
 * stop (the thread joined, connections kept), destroy (every connection
 * closed, PATH removed, freed). NULL with err set; the registry still owns
 * whatever was made.
 */
struct vsock *vsock_create(struct vm *vm, uint32_t guest_cid, const char *path);
struct vsock *vsock_of(const struct vm *vm);	/* the VM's device, or NULL */
/* Tell the driver its connections are gone (VIRTIO_VSOCK_EVENT_TRANSPORT_RESET); closes ours. */
void vsock_transport_reset(struct vsock *v);
/* One turn of the I/O loop on the caller's thread (the fuzzer's; never with the thread running). */
void vsock_poll_once(struct vsock *v, int timeout_ms);

struct vsock_stats {
	uint64_t tx_packets, rx_packets;	/* from / to the guest */
	uint64_t tx_bytes, rx_bytes;		/* stream payload */
	uint64_t rst_sent, dropped;		/* dropped: malformed, wrong CIDs, unusable buffers */
	uint64_t credit_violations, refused;	/* refused: no listener, no room, no fd */
	uint32_t conns, buffered;		/* open now; guest bytes held for host programs */
	uint32_t rx_waiting;			/* 1: host->guest traffic waits for the guest's receive buffers */
};
void vsock_get_stats(struct vsock *v, struct vsock_stats *st);

/* virtio/vsock_uds.c: the Unix-socket paths. All return -1 with err set. */
int vsock_default_path(const char *vm_name, char *buf, size_t len);	/* NULL name: lkvm-PID */
/* Does cfg ask for a vsock device (--vsock)? Known before /dev/kvm is opened. */
bool vsock_configured(const struct vm_config *cfg);
/* PATH is usable: absent (its folder exists) or a stale socket of ours, never anything else. */
int vsock_check_path(const char *path);
/* Listen on PATH (mode 0600, replacing only a stale socket of ours); its identity for removal. */
int vsock_listen_path(const char *path, dev_t *dev, ino_t *ino);
/* Remove PATH if it is still the socket we made. */
void vsock_unlink_path(const char *path, dev_t dev, ino_t ino);
int vsock_port_path(const char *path, uint32_t port, char *buf, size_t len);	/* PATH_P */
/*
 * Client side of the protocol (lkvm exec, tests): connect to PATH, CONNECT to
 * the guest's port, wait up to timeout_ms for "OK"; the stream's fd (blocking)
 * and the host port the device chose.
 */
int vsock_host_connect(const char *path, uint32_t port, int timeout_ms, uint32_t *host_port);

#endif
