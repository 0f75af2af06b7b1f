/*
 * libFuzzer target: guest frames into the user-mode network stack.
 *
 * The input is a list of records: op (1 byte), length (2 bytes, little
 * endian), then that many bytes. op & 3 says what the record does:
 *   0  a frame, net_user_from_guest()
 *   1  a frame, net_user_from_guest_csum_partial()
 *   2  the clock moves on length x 10 ms and the timers run (no bytes follow)
 *   3  host sockets are serviced, net_user_process() (no bytes follow)
 * op & 4 on a frame fixes its IPv4 header checksum first, so the fuzzer gets
 * past it. The stack is restricted (no NAT: no packets leave the machine) and
 * deterministic (fixed seed and clock); a forwarded TCP connection and a
 * forwarded UDP flow are open before the frames come, so TCP and UDP state
 * can be reached: the SYN towards 10.0.2.15:80 has a fixed sequence number.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "net_user.h"

static uint64_t clock_now;
static uint16_t tcp_port, udp_port;

static uint64_t fake_clock(void *opaque)
{
	return clock_now;
}

static void to_guest(void *opaque, const uint8_t *hdr, const struct iovec *iov, int n, size_t len)
{
	/* Touch every byte, so ASan sees any read past what was built. */
	volatile uint8_t x = 0;
	size_t total = 0;
	for (int i = 0; hdr && i < 12; i++)
		x ^= hdr[i];
	for (int k = 0; k < n; k++, total += iov[k - 1].iov_len)
		for (size_t i = 0; i < iov[k].iov_len; i++)
			x ^= ((const uint8_t *)iov[k].iov_base)[i];
	(void)x;
	if (n < 1 || n > NET_USER_FRAME_IOV || total != len)
		abort();	/* the stack's own contract broken: a finding */
}

static uint16_t free_port(int type)
{
	int s = socket(AF_INET, type, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t l = sizeof(a);
	bind(s, (struct sockaddr *)&a, sizeof(a));
	getsockname(s, (struct sockaddr *)&a, &l);
	close(s);
	return ntohs(a.sin_port);
}

static int client(int type, uint16_t port)
{
	int s = socket(AF_INET, type, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct linger l = { 1, 0 };	/* reset on close: no TIME-WAIT piling up over millions of runs */
	setsockopt(s, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	if (connect(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(s);
		return -1;
	}
	if (type == SOCK_DGRAM)
		send(s, "hello", 5, 0);
	return s;
}

static void fix_ip_csum(uint8_t *f, size_t len)
{
	if (len < 34 || f[12] != 8 || f[13] != 0)
		return;
	size_t ihl = (f[14] & 15) * 4;
	if (ihl < 20 || 14 + ihl > len)
		return;
	f[24] = f[25] = 0;
	uint32_t s = 0;
	for (size_t i = 0; i < ihl; i += 2)
		s += f[14 + i] << 8 | f[15 + i];
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	f[24] = ~s >> 8;
	f[25] = ~s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!tcp_port) {
		tcp_port = free_port(SOCK_STREAM);
		udp_port = free_port(SOCK_DGRAM);
	}
	struct net_user_fwd fwds[] = { { false, tcp_port, 80 }, { true, udp_port, 53 } };
	struct net_user_cfg cfg = {
		.guest_mac = { 0x52, 0x54, 0, 0x12, 0x34, 0x56 },
		.nr_fwds = 2, .fwds = fwds, .dns = "127.0.0.1:9",
		.restricted = true, .seed = 0x1234567, .clock_ms = fake_clock,
	};
	clock_now = 1000;
	struct net_user *nu = net_user_new(&cfg, to_guest, NULL);
	if (!nu)
		return 0;
	/* Half the inputs run with the guest taking checksum and GSO offloads (frames of many segments to it). */
	net_user_set_offload(nu, size & 1, size & 1);
	int tc = client(SOCK_STREAM, tcp_port), uc = client(SOCK_DGRAM, udp_port);
	net_user_process(nu);	/* accept: our SYN goes to the guest; the datagram too */

	static uint8_t frame[65536 + 14];
	size_t i = 0;
	while (i + 3 <= size) {
		uint8_t op = data[i];
		size_t len = data[i + 1] | data[i + 2] << 8;
		i += 3;
		switch (op & 3) {
		case 0:
		case 1:
			len = len < size - i ? len : size - i;
			memcpy(frame, data + i, len);
			i += len;
			if (op & 4)
				fix_ip_csum(frame, len);
			if (op & 1)
				net_user_from_guest_csum_partial(nu, frame, len);
			else
				net_user_from_guest(nu, frame, len);
			break;
		case 2:
			clock_now += len * 10;
			net_user_timer(nu, clock_now);
			break;
		case 3:
			net_user_process(nu);
			break;
		}
	}
	struct net_user_stats st;
	net_user_get_stats(nu, &st);
	if (st.tcp_conns > NET_USER_MAX_TCP || st.udp_flows > NET_USER_MAX_UDP)
		abort();
	net_user_free(nu);
	if (tc >= 0)
		close(tc);
	if (uc >= 0)
		close(uc);
	return 0;
}
