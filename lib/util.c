/* Logging, error values and small file helpers shared by every layer. */
#include <sys/uio.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "util.h"

int log_level = 1;
static __thread char err_buf[512];

int err_set(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err_buf, sizeof(err_buf), fmt, ap);
	va_end(ap);
	return -1;
}

int err_errno(const char *fmt, ...)
{
	int e = errno;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(err_buf, sizeof(err_buf), fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n < sizeof(err_buf))
		snprintf(err_buf + n, sizeof(err_buf) - n, ": %s", strerror(e));
	errno = e;
	return -1;
}

const char *err_msg(void)
{
	return err_buf[0] ? err_buf : "unknown error";
}

static void vlog(const char *prefix, const char *fmt, va_list ap)
{
	char line[1024];
	int n = snprintf(line, sizeof(line), "lkvm: %s", prefix);
	vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	/* \r\n: the terminal may be in raw mode while the guest runs. */
	fprintf(stderr, "%s\r\n", line);
}

void pr_info(const char *fmt, ...)
{
	if (log_level < 1)
		return;
	va_list ap;
	va_start(ap, fmt);
	vlog("", fmt, ap);
	va_end(ap);
}

void pr_warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog("warning: ", fmt, ap);
	va_end(ap);
}

void pr_debug(const char *fmt, ...)
{
	if (log_level < 2)
		return;
	va_list ap;
	va_start(ap, fmt);
	vlog("debug: ", fmt, ap);
	va_end(ap);
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p) {
		fprintf(stderr, "lkvm: out of memory\n");
		abort();
	}
	return p;
}

char *xstrdup(const char *s)
{
	char *p = strdup(s);
	if (!p) {
		fprintf(stderr, "lkvm: out of memory\n");
		abort();
	}
	return p;
}

int read_file(const char *path, uint8_t **buf, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_errno("%s", path);
	struct stat st;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return err_errno("%s", path);
	}
	if (S_ISDIR(st.st_mode)) {
		close(fd);
		return err_set("%s: is a directory", path);
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return err_set("%s: not a regular file", path);
	}
	size_t n = st.st_size;
	uint8_t *b = malloc(n ? n : 1);
	if (!b) {
		close(fd);
		return err_set("%s: file too large (%zu bytes)", path, n);
	}
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, b + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			free(b);
			close(fd);
			return r < 0 ? err_errno("%s", path) : err_set("%s: file shrank while reading", path);
		}
		got += r;
	}
	close(fd);
	*buf = b;
	*len = n;
	return 0;
}

int parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || end == s || *s == '-')
		return -1;
	uint64_t mul = MiB(1);
	switch (*end) {
	case 'k': case 'K': mul = KiB(1); end++; break;
	case 'm': case 'M': mul = MiB(1); end++; break;
	case 'g': case 'G': mul = GiB(1); end++; break;
	case 't': case 'T': mul = GiB(1024); end++; break;
	case '\0': break;
	default: return -1;
	}
	if (*end == 'i' || *end == 'B')
		end += (end[0] == 'i' && end[1] == 'B') ? 2 : 1;
	if (*end)
		return -1;
	if (v > UINT64_MAX / mul)
		return -1;
	*out = v * mul;
	return 0;
}

uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

uint64_t mono_ms(void)
{
	return mono_ns() / 1000000;
}

int thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	int e = pthread_create(t, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return e;
}

int iov_sub(const struct iovec *in, int n, size_t skip, size_t len, struct iovec *out, int max, size_t *got)
{
	int k = 0;
	size_t done = 0;
	for (int i = 0; i < n && done < len && k < max; i++) {
		if (skip >= in[i].iov_len) {
			skip -= in[i].iov_len;
			continue;
		}
		size_t take = MIN(in[i].iov_len - skip, len - done);
		uint8_t *base = (uint8_t *)in[i].iov_base + skip;
		if (k && (uint8_t *)out[k - 1].iov_base + out[k - 1].iov_len == base) {
			out[k - 1].iov_len += take;	/* adjacent: one segment fewer for the kernel */
		} else {
			out[k].iov_base = base;
			out[k].iov_len = take;
			k++;
		}
		done += take;
		skip = 0;
	}
	*got = done;
	return k;
}
