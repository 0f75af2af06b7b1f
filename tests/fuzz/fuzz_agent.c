/*
 * libFuzzer target: the host side of the sandbox agent's protocol
 * (lib/agent_proto.c, cmd/agent_host.c) fed what a hostile guest sends.
 *
 * The input is the byte stream from the "agent". It goes (1) to the decoder
 * in chunks whose sizes the input's first byte seeds, and (2) whole through
 * a socketpair into a real session, whose stdout and stderr are /dev/null.
 *
 * Oracle: no crash, leak or hang; every frame the decoder hands on is of a
 * type the guest may send and within that type's bound, and its buffer never
 * exceeds the largest bound; the session ends with -1 (error set) or a
 * status 0-255.
 */
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#include "agent_host.h"
#include "agent_proto.h"
#define FUZZ_NAME "fuzz_agent"
#include "fuzz_harness.h"

static int check_frame(void *ctx, uint8_t type, const uint8_t *p, uint32_t len)
{
	uint32_t max = agent_max_payload(type, true);
	if (!max || len > max)
		fail("frame of type %u with %u bytes handed on", type, len);
	if (len)
		(void)*(volatile const uint8_t *)(p + len - 1);	/* ASan: the payload is there */
	return type == AGENT_EXIT && ctx ? -1 : 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_add_timeout(argc, argv);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct agent_rx rx;
	agent_rx_init(&rx, true);
	size_t step = size ? data[0] % 17 + 1 : 1;
	for (size_t off = 0; off < size; off += step)
		if (agent_rx_feed(&rx, data + off, size - off < step ? size - off : step, check_frame, NULL) < 0)
			break;
	if (rx.cap > AGENT_MAX_DATA)
		fail("decoder holds %u bytes", rx.cap);
	agent_rx_free(&rx);

	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return 0;
	int big = 1 << 20;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	if (size > 200000 || write(sv[0], data, size) != (ssize_t)size) {
		close(sv[0]);
		close(sv[1]);
		return 0;
	}
	shutdown(sv[0], SHUT_WR);
	int null = open("/dev/null", O_RDWR);
	struct agent_buf exec = { 0 };
	agent_rec_add(&exec, REC_ARG, "true");
	struct agent_session s = { .fd = sv[1], .exec = &exec, .sigfd = -1, .vm_fd = -1, .in_fd = null, .out_fd = null,
				   .err_fd = null };
	int st = agent_host_run(&s);
	if (st < -1 || st > 255)
		fail("session status %d", st);
	free(exec.data);
	close(null);
	close(sv[0]);
	close(sv[1]);
	return 0;
}
