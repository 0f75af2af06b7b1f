/*
 * The sandbox agent's framed protocol (docs/agent-protocol.md), shared by
 * the host side (cmd/agent_host.c) and the agent in the guest (cmd/agent.c).
 * Library code: no exits, errors through err_set().
 *
 * A frame: le32 payload length, u8 type, three zero bytes, the payload.
 */
#ifndef LKVM_AGENT_PROTO_H
#define LKVM_AGENT_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGENT_PORT_MAIN 1024	/* the agent connects to host port 1024: the sandbox's own command */
#define AGENT_PORT_EXEC 1025	/* the agent listens here: lkvm exec's sessions */
#define AGENT_HDR 8
#define AGENT_ERROR_FILE ".lkvm-agent-error"	/* in the scratch /tmp: why the agent never connected */
#define AGENT_MAX_DATA 65536		/* STDIN, STDOUT, STDERR payloads */
#define AGENT_MAX_JOB (1 << 20)		/* SETUP and EXEC payloads (host -> guest only) */
#define AGENT_MAX_ERROR 1024		/* ERROR text, guest -> host */
#define AGENT_STDIN_WINDOW (256 * 1024)	/* stdin bytes in flight before the agent's ACK */

enum agent_type {
	/* host -> guest */
	AGENT_SETUP = 1,	/* records: the sandbox's mounts and network (first frame of the main session) */
	AGENT_EXEC = 2,		/* records: argv, env, cwd, ids, terminal */
	AGENT_STDIN = 3,	/* data; empty: end of input */
	AGENT_SIGNAL = 4,	/* le32 signal number, for the command's process group */
	AGENT_WINSIZE = 5,	/* le16 rows, le16 cols */
	/* guest -> host */
	AGENT_STDOUT = 16,	/* data (len > 0) */
	AGENT_STDERR = 17,	/* data (len > 0) */
	AGENT_EXIT = 18,	/* u8 how (0 exited, 1 killed by a signal), u8 value, 2 zero bytes */
	AGENT_ERROR = 19,	/* text: the agent could not set up or start the command */
	AGENT_ACK = 20,		/* le32: stdin bytes the command's pipe took */
	AGENT_READY = 21,	/* le32 0: SETUP is done (only when SETUP asked with REC_READY) */
};

/* A frame's header into b[AGENT_HDR]. */
void agent_hdr(uint8_t *b, uint8_t type, uint32_t len);

/* The largest payload a frame of that type may carry in that direction; 0: the type is not allowed. */
uint32_t agent_max_payload(uint8_t type, bool from_guest);

/*
 * Incremental decoder: feed it bytes as they come; every complete frame goes
 * to fn. Memory is bounded by the largest allowed payload. A bad header
 * (unknown type for this direction, a length over its bound, nonzero padding)
 * or fn returning < 0 stops it: -1 with err set, and it stays stopped.
 */
struct agent_rx {
	bool from_guest;	/* which side's frames this decodes */
	uint8_t hdr[AGENT_HDR];
	uint32_t have;		/* bytes of the current frame (header included) */
	uint32_t len;		/* its payload length, once the header is in */
	uint8_t type;
	uint8_t *buf;		/* payload, allocated to the type's bound */
	uint32_t cap;
	bool broken;
};
typedef int (*agent_frame_fn)(void *ctx, uint8_t type, const uint8_t *payload, uint32_t len);
void agent_rx_init(struct agent_rx *rx, bool from_guest);
int agent_rx_feed(struct agent_rx *rx, const uint8_t *data, size_t n, agent_frame_fn fn, void *ctx);
void agent_rx_free(struct agent_rx *rx);

/*
 * SETUP and EXEC payloads are records: a tag byte, text, a NUL. A growing
 * buffer adds them; agent_rec_next() walks them (0 at the end, -1 malformed).
 */
struct agent_buf {
	uint8_t *data;
	size_t len, cap;
};
int agent_buf_put(struct agent_buf *b, const void *data, size_t len);
int agent_rec_add(struct agent_buf *b, char tag, const char *text);
int agent_rec_next(const uint8_t *payload, uint32_t len, uint32_t *off, char *tag, const char **text);

/* Record tags. */
#define REC_ARG 'A'	/* one argv element, in order */
#define REC_ENV 'E'	/* NAME=VALUE */
#define REC_CWD 'W'	/* working directory */
#define REC_UID 'U'	/* decimal */
#define REC_GID 'g'
#define REC_GROUP 'G'	/* one supplementary group, decimal */
#define REC_TTY 'T'	/* "ROWS COLS": give the command a terminal */
#define REC_OVERLAY 'O'	/* SETUP: overlayfs with a tmpfs upper over the read-only root */
#define REC_VOLUME 'V'	/* SETUP: "TAG ro|rw GUESTPATH" */
#define REC_CWDSHARE 'C'	/* SETUP: the cwd under /tmp is shared as lkvm-cwd (read-only) */
#define REC_NET 'N'	/* SETUP: configure eth0 for user-mode networking */
#define REC_KDIR 'K'	/* SETUP: "TAG HOSTPATH": a tree whose modules.order becomes /lib/modules/$(uname -r) */
#define REC_SEED 'S'	/* SETUP: 64 hex digits from the host's getrandom(): credited to the guest's pool, CRNG reseeded */
#define AGENT_SEED_BYTES 32
/* lkvm oci (docs/oci.md): a container's root, its mounts, its name; the guest then chroots into it. */
#define REC_ROOT 'R'	/* SETUP: "TAG ro|rw": the container's root share (ro: overlay, then / remounted read-only) */
#define REC_MOUNT 'M'	/* SETUP: "TYPE FLAGS DATA PATH" (FLAGS decimal MS_*, DATA "-" for none), in the new root */
#define REC_FILE 'F'	/* SETUP: "MODE PATH\nCONTENT": a file copied into the new root (a bind of a host file) */
#define REC_MKDIR 'D'	/* SETUP: a folder made in the new root before it turns read-only (the process's cwd) */
#define REC_HOSTNAME 'H'	/* SETUP: the guest's hostname */
#define REC_READY 'Y'	/* SETUP: answer AGENT_READY once SETUP is done, before waiting for EXEC */
#define REC_RLIMIT 'L'	/* EXEC: "RESOURCE SOFT HARD" (decimal RLIMIT_* number; 18446744073709551615: unlimited) */

#endif
