/* Small helpers shared by every layer: logging, errors as values, sizes. */
#ifndef LKVM_UTIL_H
#define LKVM_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdarg.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define KiB(x) ((uint64_t)(x) << 10)
#define MiB(x) ((uint64_t)(x) << 20)
#define GiB(x) ((uint64_t)(x) << 30)
#define ALIGN_UP(x, a) (((x) + (a) - 1) & ~((uint64_t)(a) - 1))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define UNUSED __attribute__((unused))
#define PRINTF(a, b) __attribute__((format(printf, a, b)))

/*
 * Errors are values: library code records one message with err_set() and
 * returns -1; the command layer prints err_msg() once and picks the exit code.
 */
int err_set(const char *fmt, ...) PRINTF(1, 2);
int err_errno(const char *fmt, ...) PRINTF(1, 2); /* appends ": strerror(errno)" */
const char *err_msg(void);

extern int log_level; /* 0 quiet, 1 normal, 2 debug */
void pr_info(const char *fmt, ...) PRINTF(1, 2);
void pr_warn(const char *fmt, ...) PRINTF(1, 2);
void pr_debug(const char *fmt, ...) PRINTF(1, 2);
/* Warn once per call site: for guest misbehaviour that could otherwise flood. */
#define pr_warn_once(...) do { static int once_; if (!once_) { once_ = 1; pr_warn(__VA_ARGS__); } } while (0)

void *xcalloc(size_t n, size_t size); /* aborts only on host OOM */

/*
 * Start one of lkvm's own threads (device I/O, control, gdb...) with the
 * signals the main thread (SIGINT, SIGTERM, SIGHUP) and the vCPU kicks
 * (SIGUSR1) take blocked, whoever starts it. 0, or pthread_create's error.
 */
#include <pthread.h>
int thread_start(pthread_t *t, void *(*fn)(void *), void *arg);
uint64_t mono_ns(void);	/* CLOCK_MONOTONIC */
uint64_t mono_ms(void);
char *xstrdup(const char *s);

/* Whole-file helpers used by the loaders; they set err on failure. */
int read_file(const char *path, uint8_t **buf, size_t *len);
int parse_size(const char *s, uint64_t *out); /* "256", "256M", "4G" (MiB default) */

static inline uint16_t get_le16(const void *p) { const uint8_t *b = p; return b[0] | b[1] << 8; }
static inline uint32_t get_le32(const void *p) { const uint8_t *b = p; return b[0] | b[1] << 8 | b[2] << 16 | (uint32_t)b[3] << 24; }
static inline uint64_t get_le64(const void *p) { return get_le32(p) | (uint64_t)get_le32((const uint8_t *)p + 4) << 32; }
static inline void put_le16(void *p, uint16_t v) { uint8_t *b = p; b[0] = v; b[1] = v >> 8; }
static inline void put_le32(void *p, uint32_t v) { put_le16(p, v); put_le16((uint8_t *)p + 2, v >> 16); }
static inline void put_le64(void *p, uint64_t v) { put_le32(p, v); put_le32((uint8_t *)p + 4, v >> 32); }

/* Sum of n bytes mod 256; firmware tables store the byte that makes theirs 0. */
static inline uint8_t sum8(const void *p, size_t n)
{
	uint8_t s = 0;
	for (size_t i = 0; i < n; i++)
		s += ((const uint8_t *)p)[i];
	return s;
}
static inline uint8_t checksum8(const void *p, size_t n) { return (uint8_t)-sum8(p, n); }

/*
 * out[] = the bytes [skip, skip + len) of in[0, n), at most max entries (the
 * slice then ends short), pieces that follow one another in memory joined
 * into one entry (a guest's physically adjacent pages are adjacent here too).
 * Returns the entries used; *got the bytes they hold.
 */
struct iovec;
int iov_sub(const struct iovec *in, int n, size_t skip, size_t len, struct iovec *out, int max, size_t *got);

/* Copy a little-endian value of 1..8 bytes between a register and a bus buffer. */
static inline uint64_t bytes_to_u64(const void *data, int len)
{
	uint64_t v = 0;
	for (int i = 0; i < len && i < 8; i++)
		v |= (uint64_t)((const uint8_t *)data)[i] << (8 * i);
	return v;
}
static inline void u64_to_bytes(void *data, int len, uint64_t v)
{
	for (int i = 0; i < len && i < 8; i++)
		((uint8_t *)data)[i] = v >> (8 * i);
}

#endif
