/*
 * The host side of the sandbox agent's protocol against a hostile guest:
 * the frame decoder (lib/agent_proto.c) and a whole session
 * (cmd/agent_host.c) whose "guest" is this test, on a socketpair. The
 * session runs in a child process, so a crash or a hang is seen as such, and
 * its peak memory is measured while the guest floods it.
 */
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "agent_host.h"
#include "agent_proto.h"
#include "commands.h"
#include "test.h"
#include "util.h"

struct seen { int n; uint8_t type[16]; uint32_t len[16]; uint8_t first[16]; };

static int record(void *ctx, uint8_t type, const uint8_t *p, uint32_t len)
{
	struct seen *s = ctx;
	if (s->n < 16) {
		s->type[s->n] = type;
		s->len[s->n] = len;
		s->first[s->n] = len ? p[0] : 0;
	}
	s->n++;
	return 0;
}

static size_t frame(uint8_t *b, uint8_t type, const void *p, uint32_t len)
{
	agent_hdr(b, type, len);
	if (len)
		memcpy(b + AGENT_HDR, p, len);
	return AGENT_HDR + len;
}

TEST(decoder_takes_frames_split_anywhere)
{
	uint8_t buf[256];
	size_t n = frame(buf, AGENT_STDOUT, "hello", 5);
	n += frame(buf + n, AGENT_STDERR, "x", 1);
	n += frame(buf + n, AGENT_EXIT, "\0\7\0\0", 4);
	for (size_t cut = 0; cut <= n; cut++) {
		struct agent_rx rx;
		struct seen s = { 0 };
		agent_rx_init(&rx, true);
		CHECK(agent_rx_feed(&rx, buf, cut, record, &s) == 0);
		for (size_t i = cut; i < n; i++)	/* the rest a byte at a time */
			CHECK(agent_rx_feed(&rx, buf + i, 1, record, &s) == 0);
		CHECK_EQ(s.n, 3);
		CHECK(s.type[0] == AGENT_STDOUT && s.len[0] == 5 && s.first[0] == 'h');
		CHECK(s.type[2] == AGENT_EXIT && s.len[2] == 4);
		agent_rx_free(&rx);
	}
}

TEST(decoder_refuses_bad_headers_and_stays_refused)
{
	struct { uint8_t type; uint32_t len; uint8_t pad; } bad[] = {
		{ AGENT_STDOUT, AGENT_MAX_DATA + 1, 0 }, { AGENT_STDOUT, 0xffffffff, 0 }, { AGENT_EXIT, 5, 0 },
		{ AGENT_ERROR, AGENT_MAX_ERROR + 1, 0 }, { 0, 0, 0 }, { 99, 1, 0 }, { 255, 0, 0 },
		{ AGENT_EXEC, 10, 0 } /* host's type from the guest */, { AGENT_STDIN, 1, 0 }, { AGENT_STDOUT, 1, 1 },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t h[AGENT_HDR + 1] = { 0 };
		agent_hdr(h, bad[i].type, bad[i].len);
		h[6] = bad[i].pad;
		struct agent_rx rx;
		struct seen s = { 0 };
		agent_rx_init(&rx, true);
		CHECK(agent_rx_feed(&rx, h, sizeof(h), record, &s) < 0);
		CHECK_EQ(s.n, 0);
		CHECK(rx.cap <= AGENT_MAX_DATA);	/* nothing allocated for a length it refused */
		uint8_t ok[AGENT_HDR + 1];
		frame(ok, AGENT_STDOUT, "y", 1);
		CHECK(agent_rx_feed(&rx, ok, sizeof(ok), record, &s) < 0);	/* broken for good */
		agent_rx_free(&rx);
	}
}

TEST(records_round_trip_and_malformed_ones_are_refused)
{
	struct agent_buf b = { 0 };
	CHECK(agent_rec_add(&b, REC_ARG, "sh") == 0);
	CHECK(agent_rec_add(&b, REC_ENV, "A=b c") == 0);
	uint32_t off = 0;
	char tag;
	const char *t;
	CHECK(agent_rec_next(b.data, b.len, &off, &tag, &t) == 1 && tag == REC_ARG && !strcmp(t, "sh"));
	CHECK(agent_rec_next(b.data, b.len, &off, &tag, &t) == 1 && tag == REC_ENV && !strcmp(t, "A=b c"));
	CHECK(agent_rec_next(b.data, b.len, &off, &tag, &t) == 0);
	off = 0;
	CHECK(agent_rec_next((const uint8_t *)"Aabc", 4, &off, &tag, &t) < 0);	/* no NUL */
	off = 0;
	CHECK(agent_rec_next((const uint8_t *)"\0", 1, &off, &tag, &t) < 0);	/* no tag */
	free(b.data);
}

TEST(env_names_are_checked_and_later_ones_win)
{
	char **env = NULL;
	int nr = 0;
	CHECK(agent_env_add(&env, &nr, "1X=a") < 0);
	CHECK(agent_env_add(&env, &nr, "A-B=a") < 0);
	CHECK(agent_env_add(&env, &nr, "=a") < 0);
	CHECK(agent_env_add(&env, &nr, "GOOD_1=a=b") == 0);
	CHECK(agent_env_add(&env, &nr, "GOOD_1=c") == 0);
	setenv("LKVM_T_FROM_HOST", "hv", 1);
	unsetenv("LKVM_T_UNSET");
	CHECK(agent_env_add(&env, &nr, "LKVM_T_FROM_HOST") == 0);
	CHECK(agent_env_add(&env, &nr, "LKVM_T_UNSET") == 0);
	CHECK_EQ(nr, 2);
	CHECK(nr == 2 && !strcmp(env[0], "GOOD_1=c") && !strcmp(env[1], "LKVM_T_FROM_HOST=hv"));
	for (int i = 0; i < nr; i++)
		free(env[i]);
	free(env);
}

/* ---- whole sessions against a scripted guest ---- */

static bool closed_stdout;	/* the session's stdout: a pipe nobody reads any more */

struct run {
	int status;		/* agent_host_run's */
	char out[4096], err[4096], msg[512];
	long maxrss_kb;
	bool crashed;
};

/*
 * The session in a child (stdin /dev/null, stdout and stderr into files);
 * guest() plays the agent on the other end. The child's result comes back
 * in its exit code (status + 1, 0 for -1) and its message in a file.
 */
static void session(struct run *r, void (*guest)(int fd, void *arg), void *arg, int timeout_s)
{
	char tmpl[] = "/tmp/lkvm-agent-test.XXXXXX";
	char *dir = mkdtemp(tmpl), path[3][64];
	for (int i = 0; i < 3; i++)
		snprintf(path[i], sizeof(path[i]), "%s/%d", dir, i);
	int sv[2];
	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	pid_t pid = fork();
	if (pid == 0) {
		close(sv[0]);
		int out = open(path[0], O_WRONLY | O_CREAT, 0600), err = open(path[1], O_WRONLY | O_CREAT, 0600);
		if (closed_stdout) {
			int pp[2];
			if (pipe(pp) == 0) {
				close(pp[0]);
				out = pp[1];
			}
			signal(SIGPIPE, SIG_IGN);
		}
		struct agent_buf exec = { 0 };
		agent_rec_add(&exec, REC_ARG, "true");
		struct agent_session s = { .fd = sv[1], .exec = &exec, .timeout_s = timeout_s, .sigfd = -1, .vm_fd = -1,
					   .in_fd = open("/dev/null", O_RDONLY), .out_fd = out, .err_fd = err };
		alarm(20);
		int st = agent_host_run(&s);
		FILE *m = fopen(path[2], "w");
		fprintf(m, "%d %s", st, st < 0 ? err_msg() : "");
		fclose(m);
		_exit(0);
	}
	close(sv[1]);
	signal(SIGPIPE, SIG_IGN);	/* a session that died must fail a check, not end the test */
	guest(sv[0], arg);
	close(sv[0]);
	int st;
	struct rusage ru;
	wait4(pid, &st, 0, &ru);
	r->crashed = !WIFEXITED(st) || WEXITSTATUS(st);
	r->maxrss_kb = ru.ru_maxrss;
	char *dst[3] = { r->out, r->err, r->msg };
	size_t cap[3] = { sizeof(r->out), sizeof(r->err), sizeof(r->msg) };
	for (int i = 0; i < 3; i++) {
		int fd = open(path[i], O_RDONLY);
		ssize_t n = fd >= 0 ? read(fd, dst[i], cap[i] - 1) : 0;
		dst[i][n > 0 ? n : 0] = 0;
		if (fd >= 0)
			close(fd);
		unlink(path[i]);
	}
	rmdir(dir);
	int k = 0;
	r->status = -99;
	if (sscanf(r->msg, "%d %n", &r->status, &k) >= 1)
		memmove(r->msg, r->msg + k, strlen(r->msg + k) + 1);
}

static void put(int fd, uint8_t type, const void *p, uint32_t len)
{
	uint8_t h[AGENT_HDR];
	agent_hdr(h, type, len);
	if (write(fd, h, sizeof(h)) != sizeof(h) || (len && write(fd, p, len) != (ssize_t)len)) {}
}

static void g_normal(int fd, void *arg)
{
	put(fd, AGENT_STDOUT, "out-bytes", 9);
	put(fd, AGENT_STDERR, "err-bytes", 9);
	put(fd, AGENT_STDOUT, "\0\r\n", 3);
	put(fd, AGENT_EXIT, arg, 4);
}

TEST(status_and_streams_come_through_apart)
{
	struct run r;
	session(&r, g_normal, "\0\7\0\0", 0);
	CHECK(!r.crashed);
	CHECK_EQ(r.status, 7);
	CHECK(!memcmp(r.out, "out-bytes\0\r\n", 12));
	CHECK(!strcmp(r.err, "err-bytes"));
	session(&r, g_normal, "\1\11\0\0", 0);	/* killed by signal 9 */
	CHECK_EQ(r.status, 137);
	session(&r, g_normal, "\0\377\0\0", 0);
	CHECK_EQ(r.status, 255);
}

static void g_bytes(int fd, void *arg)
{
	const uint8_t *b = arg;
	if (write(fd, b + 1, b[0]) < 0) {}
	shutdown(fd, SHUT_WR);
	char sink[4096];
	while (read(fd, sink, sizeof(sink)) > 0) {}	/* until the host hangs up */
}

TEST(hostile_frames_end_the_session_with_an_error_not_a_crash)
{
	static const struct { const char *what; uint8_t bytes[40]; const char *msg; } cases[] = {
		{ "4 GiB length", { 8, 0xff, 0xff, 0xff, 0xff, AGENT_STDOUT, 0, 0, 0 }, "broke the protocol" },
		{ "unknown type", { 8, 0, 0, 0, 0, 77, 0, 0, 0 }, "broke the protocol" },
		{ "stdin from the guest", { 9, 1, 0, 0, 0, AGENT_STDIN, 0, 0, 0, 'x' }, "broke the protocol" },
		{ "empty output", { 8, 0, 0, 0, 0, AGENT_STDOUT, 0, 0, 0 }, "broke the protocol" },
		{ "ACK of unsent stdin", { 12, 4, 0, 0, 0, AGENT_ACK, 0, 0, 0, 1, 0, 0, 0 }, "broke the protocol" },
		{ "exit how=2", { 12, 4, 0, 0, 0, AGENT_EXIT, 0, 0, 0, 2, 0, 0, 0 }, "broke the protocol" },
		{ "signal 0", { 12, 4, 0, 0, 0, AGENT_EXIT, 0, 0, 0, 1, 0, 0, 0 }, "broke the protocol" },
		{ "signal 200", { 12, 4, 0, 0, 0, AGENT_EXIT, 0, 0, 0, 1, 200, 0, 0 }, "broke the protocol" },
		{ "frame after exit", { 22, 4, 0, 0, 0, AGENT_EXIT, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, AGENT_STDOUT, 0, 0, 0, 'z' },
		  "broke the protocol" },
		{ "closed early", { 0 }, "closed the connection" },
		{ "half a header", { 3, 1, 0, 0 }, "closed the connection" },
		{ "error text", { 14, 6, 0, 0, 0, AGENT_ERROR, 0, 0, 0, 'b', '\n', 'a', '\033', 'd', '!' }, "in the guest: b?a?d!" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct run r;
		t_name = cases[i].what;
		session(&r, g_bytes, (void *)cases[i].bytes, 0);
		CHECK(!r.crashed);
		CHECK_EQ(r.status, -1);
		CHECK(strstr(r.msg, cases[i].msg) != NULL);
		if (!strstr(r.msg, cases[i].msg))
			fprintf(stderr, "  got '%s'\n", r.msg);
	}
	t_name = "hostile_frames";
}

static void g_flood(int fd, void *arg)
{
	static uint8_t b[AGENT_HDR + AGENT_MAX_DATA];
	agent_hdr(b, AGENT_STDOUT, AGENT_MAX_DATA);
	memset(b + AGENT_HDR, 'f', AGENT_MAX_DATA);
	for (int i = 0; i < 2048; i++)	/* 128 MiB */
		if (write(fd, b, sizeof(b)) != sizeof(b))
			return;
	put(fd, AGENT_EXIT, "\0\0\0\0", 4);
}

TEST(an_output_flood_is_relayed_in_bounded_memory)
{
	struct run r;
	session(&r, g_flood, NULL, 0);
	CHECK(!r.crashed);
	CHECK_EQ(r.status, 0);
	CHECK(r.maxrss_kb < 32 * 1024);	/* 128 MiB went through */
	if (r.maxrss_kb >= 32 * 1024)
		fprintf(stderr, "  peak RSS %ld KiB\n", r.maxrss_kb);
}

static void g_silent(int fd, void *arg)
{
	/* Reads what the host sends (EXEC, then the timeout's signals); never answers. */
	char b[4096];
	ssize_t n;
	int *sigs = arg;
	*sigs = 0;
	while ((n = read(fd, b, sizeof(b))) > 0)
		for (ssize_t i = 0; i + 8 < n; i++)
			if (b[i + 4] == AGENT_SIGNAL && b[i] == 4 && !b[i + 1] && !b[i + 5])
				*sigs = *sigs * 100 + (uint8_t)b[i + 8];
}

TEST(a_guest_that_never_answers_the_timeout_still_ends)
{
	struct run r;
	int sigs;
	session(&r, g_silent, &sigs, 1);
	CHECK(!r.crashed);
	CHECK_EQ(r.status, AGENT_TIMEOUT_STATUS);
	CHECK_EQ(sigs, SIGTERM * 100 + SIGKILL);	/* SIGTERM, then SIGKILL */
}

static void g_writer(int fd, void *arg)
{
	int *got = arg;
	*got = 0;
	put(fd, AGENT_STDOUT, "to-a-closed-pipe", 16);
	uint8_t b[4096];
	ssize_t n;
	while (!*got && (n = read(fd, b, sizeof(b))) > 0)	/* EXEC, then the SIGNAL */
		for (ssize_t i = 0; i + 8 < n; i++)
			if (b[i + 4] == AGENT_SIGNAL && b[i] == 4 && !b[i + 1] && !b[i + 5])
				*got = b[i + 8];
	put(fd, AGENT_EXIT, "\1\15\0\0", 4);	/* died of SIGPIPE */
	while (read(fd, b, sizeof(b)) > 0) {}
}

TEST(a_stdout_whose_reader_is_gone_sends_the_command_sigpipe)
{
	struct run r;
	int got = 0;
	closed_stdout = true;
	session(&r, g_writer, &got, 0);
	closed_stdout = false;
	CHECK(!r.crashed);
	CHECK_EQ(got, SIGPIPE);
	CHECK_EQ(r.status, 128 + SIGPIPE);
}

/* ---- the guest's side of a session (cmd/agent.c) ---- */

struct frames {
	size_t out, err;	/* bytes of STDOUT and STDERR */
	char err_text[64];
	int exit_how, exit_code;	/* -1: no EXIT frame */
	bool bad;
};

static int collect(void *ctx, uint8_t type, const uint8_t *p, uint32_t len)
{
	struct frames *f = ctx;
	if (type == AGENT_STDOUT) {
		f->out += len;
	} else if (type == AGENT_STDERR) {
		if (f->err + len < sizeof(f->err_text))
			memcpy(f->err_text + f->err, p, len);
		f->err += len;
	} else if (type == AGENT_EXIT && len == 4) {
		f->exit_how = p[0];
		f->exit_code = p[1];
	} else if (type != AGENT_ACK) {
		f->bad = true;
	}
	return 0;
}

/*
 * A real guest session (agent_guest_session) runs SCRIPT in sh; this test
 * plays a host that starts reading only after delay_ms, through a socket
 * with small buffers, so the agent's queue is full when the command ends.
 */
static void guest_session(struct frames *f, const char *script, int delay_ms)
{
	memset(f, 0, sizeof(*f));
	f->exit_how = f->exit_code = -1;
	int sv[2], small = 4096;
	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	struct agent_buf exec = { 0 };
	agent_rec_add(&exec, REC_ARG, "sh");
	agent_rec_add(&exec, REC_ARG, "-c");
	agent_rec_add(&exec, REC_ARG, script);
	agent_rec_add(&exec, REC_CWD, "/");
	pid_t pid = fork();
	if (pid == 0) {
		close(sv[0]);
		alarm(30);
		_exit(agent_guest_session(sv[1], exec.data, exec.len));
	}
	close(sv[1]);
	free(exec.data);
	usleep(delay_ms * 1000);
	struct agent_rx rx;
	agent_rx_init(&rx, true);
	static uint8_t b[AGENT_MAX_DATA];
	ssize_t n;
	while (f->exit_how < 0 && (n = read(sv[0], b, sizeof(b))) > 0)
		if (agent_rx_feed(&rx, b, n, collect, f) < 0)
			f->bad = true;
	agent_rx_free(&rx);
	close(sv[0]);
	int st;
	waitpid(pid, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != (f->exit_code < 0 ? 125 : f->exit_code))
		f->bad = true;
}

/* SCRIPT's session, read by a host that starts after delay_ms: exit code, out bytes of stdout, "err-tail\n" on stderr. */
static void check_relayed(const char *script, int delay_ms, int code, size_t out)
{
	struct frames f;
	guest_session(&f, script, delay_ms);
	CHECK(!f.bad);
	CHECK_EQ(f.exit_how, 0);
	CHECK_EQ(f.exit_code, code);
	CHECK_EQ(f.out, out);
	CHECK(!strcmp(f.err_text, "err-tail\n"));
	if (f.out != out || strcmp(f.err_text, "err-tail\n"))
		fprintf(stderr, "  stderr '%s' (%zu bytes), stdout %zu bytes\n", f.err_text, f.err, f.out);
}

TEST(guest_output_written_before_the_exit_reaches_a_host_that_reads_late)
{
	/* 360 KiB of stdout fills the pipe and the agent's queue; the stderr line comes last. */
	check_relayed("head -c 368640 /dev/zero; echo err-tail >&2; exit 3", 1500, 3, 368640);
}

TEST(guest_output_of_a_slow_command_is_all_relayed)
{
	/* The command runs longer than the agent's grace after an exit; its last words still come. */
	check_relayed("sleep 0.5; echo out; echo err-tail >&2; exit 4", 0, 4, 4);
}

TEST(a_leftover_process_holding_stdout_does_not_hold_the_session)
{
	/* A daemon the command left keeps the pipes open; the session ends anyway, soon. */
	struct frames f;
	struct timespec a, z;
	clock_gettime(CLOCK_MONOTONIC, &a);
	guest_session(&f, "sleep 4 & echo err-tail >&2; exit 5", 0);
	clock_gettime(CLOCK_MONOTONIC, &z);
	CHECK_EQ(f.exit_code, 5);
	CHECK(!strcmp(f.err_text, "err-tail\n"));
	CHECK(z.tv_sec - a.tv_sec < 10);
	/* One that never stops writing: cut 200 ms after the exit, once what the pipes held then is relayed. */
	clock_gettime(CLOCK_MONOTONIC, &a);
	guest_session(&f, "yes & exit 6", 0);
	clock_gettime(CLOCK_MONOTONIC, &z);
	CHECK_EQ(f.exit_code, 6);
	CHECK(f.out > 0);
	CHECK(z.tv_sec - a.tv_sec < 10);
}

TEST_MAIN()
