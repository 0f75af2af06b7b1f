/*
 * Both ends of tests/vsock-tests.sh, built with cc -static: in the guest over
 * AF_VSOCK, on the host over the device's Unix sockets (Firecracker's
 * protocol, spoken here independently of lkvm's own client code).
 *
 * A sender writes BYTES of a stream that SEED determines (xorshift64*); the
 * receiver generates the same stream and compares every byte, and both print
 * the FNV-1a hash of what went through, so each side checks the other.
 *
 *   cid                               the guest's CID (IOCTL_VM_SOCKETS_GET_LOCAL_CID)
 *   vsock-recv PORT BYTES SEED        guest: listen, take one connection, verify
 *   vsock-send CID PORT BYTES SEED    guest: connect and send
 *   vsock-refused CID PORT            guest: a connect to no listener must be reset
 *   unix-recv PATH BYTES SEED         host: listen at PATH (the device's PATH_P), verify
 *   unix-send PATH PORT BYTES SEED    host: CONNECT PORT through PATH, send
 *   unix-refused PATH PORT            host: CONNECT to a guest port with no listener
 *
 * Output: one line "NAME=ok bytes=N fnv=H ms=T" (or "NAME=fail ...: why"),
 * exit status 0 when ok.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

static const char *name = "VSOCK";

static int die(const char *why)
{
	printf("%s=fail %s: %s\n", name, why, strerror(errno));
	fflush(stdout);
	exit(1);
}

static uint64_t state;
static void seed(uint64_t s) { state = s * 0x9e3779b97f4a7c15ULL + 1; }
static uint64_t next64(void)
{
	state ^= state >> 12;
	state ^= state << 25;
	state ^= state >> 27;
	return state * 0x2545f4914f6cdd1dULL;
}
/* The stream's next n bytes (n a multiple of 8). */
static void gen(uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i += 8) {
		uint64_t v = next64();
		memcpy(b + i, &v, 8);
	}
}

/* FNV-1a over 64-bit words of each chunk (a short last word is zero-padded): cheap in a guest. */
static uint64_t fnv = 0xcbf29ce484222325ULL;
static void hash(const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i += 8) {
		uint64_t w = 0;
		memcpy(&w, b + i, n - i < 8 ? n - i : 8);
		fnv = (fnv ^ w) * 0x100000001b3ULL;
	}
}

static long long ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}

#define CHUNK 65536	/* the stream is generated, hashed and compared in chunks from its start */

static void send_stream(int fd, uint64_t bytes, uint64_t s)
{
	static uint8_t b[CHUNK];
	long long t0 = ms();
	seed(s);
	for (uint64_t off = 0; off < bytes;) {
		size_t n = bytes - off < CHUNK ? bytes - off : CHUNK;
		gen(b, CHUNK);
		hash(b, n);
		for (size_t done = 0; done < n;) {
			ssize_t w = send(fd, b + done, n - done, MSG_NOSIGNAL);
			if (w <= 0)
				die("send");
			done += w;
		}
		off += n;
	}
	if (shutdown(fd, SHUT_WR) < 0)
		die("shutdown");
	/* The receiver closes when it has everything: only then is it all there. */
	char c;
	if (read(fd, &c, 1) != 0)
		die("expected the receiver to close");
	printf("%s=ok bytes=%" PRIu64 " fnv=%016" PRIx64 " ms=%lld\n", name, bytes, fnv, ms() - t0);
}

static void recv_stream(int fd, uint64_t bytes, uint64_t s)
{
	static uint8_t b[CHUNK], want[CHUNK];
	uint64_t off = 0;
	long long t0 = ms();
	bool eof = false;
	seed(s);
	while (!eof) {
		size_t fill = 0;
		while (fill < CHUNK) {	/* a whole chunk, or what is left before EOF */
			ssize_t r = read(fd, b + fill, CHUNK - fill);
			if (r < 0)
				die("read");
			if (r == 0) {
				eof = true;
				break;
			}
			fill += r;
		}
		if (!fill)
			break;
		if (off + fill > bytes) {
			printf("%s=fail more than %" PRIu64 " bytes\n", name, bytes);
			exit(1);
		}
		gen(want, CHUNK);
		if (memcmp(b, want, fill)) {
			size_t i = 0;
			while (b[i] == want[i])
				i++;
			printf("%s=fail byte %" PRIu64 " is 0x%02x, expected 0x%02x\n", name, off + i, b[i], want[i]);
			exit(1);
		}
		hash(b, fill);
		off += fill;
	}
	if (off != bytes) {
		printf("%s=fail %" PRIu64 " of %" PRIu64 " bytes, then EOF\n", name, off, bytes);
		exit(1);
	}
	printf("%s=ok bytes=%" PRIu64 " fnv=%016" PRIx64 " ms=%lld\n", name, bytes, fnv, ms() - t0);
	close(fd);
}

static int unix_addr(struct sockaddr_un *sa, const char *path)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path))
		return -1;
	strcpy(sa->sun_path, path);
	return 0;
}

/* CONNECT port through the device's socket; the stream's fd, or -1 if the guest refused. */
static int unix_connect_port(const char *path, unsigned port)
{
	struct sockaddr_un sa;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0 || unix_addr(&sa, path) < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die(path);
	char line[32];
	int n = snprintf(line, sizeof(line), "CONNECT %u\n", port);
	if (write(fd, line, n) != n)
		die("write CONNECT");
	size_t got = 0;
	while (got < sizeof(line) - 1) {
		ssize_t r = read(fd, line + got, 1);
		if (r < 0)
			die("read OK");
		if (r == 0) {
			close(fd);
			return -1;
		}
		if (line[got++] == '\n')
			break;
	}
	line[got] = 0;
	unsigned hp;
	if (sscanf(line, "OK %u\n", &hp) != 1 || hp < 1024) {
		printf("%s=fail answer '%s'\n", name, line);
		exit(1);
	}
	return fd;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	const char *mode = argv[1];
	if (!strcmp(mode, "cid")) {
		int fd = open("/dev/vsock", O_RDONLY);
		unsigned cid;
		if (fd < 0 || ioctl(fd, IOCTL_VM_SOCKETS_GET_LOCAL_CID, &cid) < 0)
			die("/dev/vsock");
		printf("%u\n", cid);
		return 0;
	}
	if (!strcmp(mode, "vsock-recv") && argc == 5) {
		name = "VSOCK-RECV";
		int l = socket(AF_VSOCK, SOCK_STREAM, 0);
		struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = atoi(argv[2]) };
		if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(l, 4) < 0)
			die("listen");
		printf("VSOCK-LISTENING=%s\n", argv[2]);
		fflush(stdout);
		int fd = accept(l, NULL, NULL);
		if (fd < 0)
			die("accept");
		recv_stream(fd, strtoull(argv[3], NULL, 0), strtoull(argv[4], NULL, 0));
		return 0;
	}
	if (!strcmp(mode, "vsock-send") && argc == 6) {
		name = "VSOCK-SEND";
		int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
		struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = atoi(argv[2]), .svm_port = atoi(argv[3]) };
		if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			die("connect");
		send_stream(fd, strtoull(argv[4], NULL, 0), strtoull(argv[5], NULL, 0));
		return 0;
	}
	if (!strcmp(mode, "vsock-refused") && argc == 4) {
		name = "VSOCK-REFUSED";
		int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
		struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = atoi(argv[2]), .svm_port = atoi(argv[3]) };
		if (fd < 0)
			die("socket");
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			printf("%s=fail the connection was accepted\n", name);
			return 1;
		}
		if (errno != ECONNRESET)
			die("expected ECONNRESET");
		printf("%s=ok\n", name);
		return 0;
	}
	if (!strcmp(mode, "unix-recv") && argc == 5) {
		name = "HOST-RECV";
		struct sockaddr_un sa;
		int l = socket(AF_UNIX, SOCK_STREAM, 0);
		if (l < 0 || unix_addr(&sa, argv[2]) < 0 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(l, 4) < 0)
			die(argv[2]);
		printf("HOST-LISTENING\n");
		fflush(stdout);
		int fd = accept(l, NULL, NULL);
		if (fd < 0)
			die("accept");
		recv_stream(fd, strtoull(argv[3], NULL, 0), strtoull(argv[4], NULL, 0));
		return 0;
	}
	if (!strcmp(mode, "unix-send") && argc == 6) {
		name = "HOST-SEND";
		int fd = unix_connect_port(argv[2], atoi(argv[3]));
		if (fd < 0) {
			printf("%s=fail the guest refused port %s\n", name, argv[3]);
			return 1;
		}
		send_stream(fd, strtoull(argv[4], NULL, 0), strtoull(argv[5], NULL, 0));
		return 0;
	}
	if (!strcmp(mode, "unix-refused") && argc == 4) {
		name = "HOST-REFUSED";
		int fd = unix_connect_port(argv[2], atoi(argv[3]));
		if (fd >= 0) {
			printf("%s=fail port %s was accepted\n", name, argv[3]);
			return 1;
		}
		printf("%s=ok\n", name);
		return 0;
	}
	fprintf(stderr, "vsock-peer: bad arguments (see the source)\n");
	return 2;
}
