/*
 * The snapshot state file's records (include/snapshot.h). On disk:
 *   header: "LKVMSNAP", le32 format version, le32 0
 *   record: le16 name length, name, le32 version, le64 payload length,
 *           payload, le32 CRC32 of everything before it in the record
 *   last:   the record "end" whose payload is le32 the number of records before it
 * All integers little-endian.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include "snapshot.h"
#include "util.h"

#define HDR_LEN 16
#define REC_FIXED (2 + 4 + 8 + 4)	/* name length, version, payload length, CRC */

/* ---- writing ---- */

struct snap_writer {
	int fd;
	char path[256];
	uint8_t *buf;		/* the record being built */
	size_t len, cap;
	size_t payload_at;	/* where its payload starts */
	bool open;
	int records;
	bool failed;		/* a write failed: err holds the first failure */
	char err[512];
};

static void grow(struct snap_writer *w, size_t n)
{
	if (w->len + n <= w->cap)
		return;
	size_t cap = w->cap ? w->cap : 4096;
	while (cap < w->len + n)
		cap *= 2;
	uint8_t *p = realloc(w->buf, cap);
	if (!p)
		abort();	/* host out of memory, as xcalloc */
	w->buf = p;
	w->cap = cap;
}

static void put(struct snap_writer *w, const void *p, size_t n)
{
	if (!w->open)
		return;
	grow(w, n);
	memcpy(w->buf + w->len, p, n);
	w->len += n;
}

static void fail(struct snap_writer *w)
{
	if (!w->failed) {
		w->failed = true;
		snprintf(w->err, sizeof(w->err), "%s", err_msg());
	}
}

static int write_all(struct snap_writer *w, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n) {
		ssize_t k = write(w->fd, b, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			err_errno("%s: cannot write the snapshot", w->path);
			fail(w);
			return -1;
		}
		b += k;
		n -= k;
	}
	return 0;
}

struct snap_writer *snap_writer_new(int fd, const char *path)
{
	struct snap_writer *w = xcalloc(1, sizeof(*w));
	w->fd = fd;
	snprintf(w->path, sizeof(w->path), "%s", path);
	uint8_t h[HDR_LEN] = { 0 };
	memcpy(h, SNAP_MAGIC, 8);
	put_le32(h + 8, SNAP_FORMAT_VERSION);
	write_all(w, h, sizeof(h));
	return w;
}

void snap_begin(struct snap_writer *w, const char *name, uint32_t version)
{
	size_t n = strnlen(name, SNAP_NAME_MAX);
	w->len = 0;
	w->open = true;
	uint8_t b[2 + SNAP_NAME_MAX + 12];
	put_le16(b, n);
	memcpy(b + 2, name, n);
	put_le32(b + 2 + n, version);
	put_le64(b + 6 + n, 0);	/* the payload's length, filled by snap_end */
	put(w, b, 14 + n);
	w->payload_at = w->len;
}

void snap_u8(struct snap_writer *w, uint8_t v) { put(w, &v, 1); }
void snap_u16(struct snap_writer *w, uint16_t v) { uint8_t b[2]; put_le16(b, v); put(w, b, 2); }
void snap_u32(struct snap_writer *w, uint32_t v) { uint8_t b[4]; put_le32(b, v); put(w, b, 4); }
void snap_u64(struct snap_writer *w, uint64_t v) { uint8_t b[8]; put_le64(b, v); put(w, b, 8); }
void snap_i64(struct snap_writer *w, int64_t v) { snap_u64(w, (uint64_t)v); }
void snap_bool(struct snap_writer *w, bool v) { snap_u8(w, v ? 1 : 0); }
void snap_bytes(struct snap_writer *w, const void *p, size_t n) { put(w, p, n); }

void snap_str(struct snap_writer *w, const char *s)
{
	size_t n = strnlen(s, 65535);
	snap_u16(w, n);
	put(w, s, n);
}

int snap_end(struct snap_writer *w)
{
	if (!w->open)
		return err_set("%s: snap_end without snap_begin", w->path);
	w->open = false;
	put_le64(w->buf + w->payload_at - 8, w->len - w->payload_at);
	uint8_t c[4];
	put_le32(c, crc32(0, w->buf, w->len));
	w->open = true;
	put(w, c, 4);
	w->open = false;
	if (w->failed)
		return err_set("%s", w->err);
	if (write_all(w, w->buf, w->len) < 0)
		return -1;
	w->records++;
	return 0;
}

int snap_writer_close(struct snap_writer *w)
{
	int n = w->records;
	snap_begin(w, "end", 1);
	snap_u32(w, n);
	snap_end(w);
	int ret = 0;
	if (w->failed)
		ret = err_set("%s", w->err);
	free(w->buf);
	free(w);
	return ret;
}

void snap_writer_abort(struct snap_writer *w)
{
	free(w->buf);
	free(w);
}

/* ---- reading ---- */

struct rec {
	char name[SNAP_NAME_MAX + 1];
	uint32_t version;
	size_t off, len;	/* the payload in buf */
};

struct snap_reader {
	uint8_t *buf;
	size_t len;
	char path[256];
	struct rec *recs;
	int nr;
	int cur;		/* the open record, -1 for none */
	size_t pos;		/* read position in it */
	bool bad;
};

const char *snap_path(const struct snap_reader *r) { return r->path; }
int snap_count(const struct snap_reader *r) { return r->nr; }
const char *snap_name_at(const struct snap_reader *r, int i) { return i >= 0 && i < r->nr ? r->recs[i].name : NULL; }

static int find(const struct snap_reader *r, const char *name)
{
	for (int i = 0; i < r->nr; i++)
		if (!strcmp(r->recs[i].name, name))
			return i;
	return -1;
}

bool snap_has(const struct snap_reader *r, const char *name) { return find(r, name) >= 0; }

void snap_reader_free(struct snap_reader *r)
{
	if (!r)
		return;
	free(r->buf);
	free(r->recs);
	free(r);
}

static bool name_ok(const uint8_t *p, size_t n)
{
	if (!n || n > SNAP_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x21 || p[i] > 0x7e)
			return false;
	return true;
}

struct snap_reader *snap_reader_new(const uint8_t *buf, size_t len, const char *path)
{
	struct snap_reader *r = xcalloc(1, sizeof(*r));
	snprintf(r->path, sizeof(r->path), "%s", path);
	r->cur = -1;
	if (len < HDR_LEN || memcmp(buf, SNAP_MAGIC, 8)) {
		err_set("%s: not an lkvm snapshot (no LKVMSNAP header)", path);
		goto bad;
	}
	uint32_t fmt = get_le32(buf + 8);
	if (fmt != SNAP_FORMAT_VERSION || get_le32(buf + 12)) {
		err_set("%s: snapshot format version %u%s; this lkvm reads version %u only", path, fmt,
			get_le32(buf + 12) ? " with flags it does not know" : "", SNAP_FORMAT_VERSION);
		goto bad;
	}
	if (len > SNAP_FILE_MAX) {
		err_set("%s: %zu bytes, more than any snapshot lkvm writes", path, len);
		goto bad;
	}
	r->buf = xcalloc(1, len);
	memcpy(r->buf, buf, len);
	r->len = len;
	int cap = 0;
	bool ended = false;
	size_t off = HDR_LEN;
	while (off < len && !ended) {
		size_t left = len - off;
		if (left < REC_FIXED) {
			err_set("%s: truncated after %d records", path, r->nr);
			goto bad;
		}
		size_t n = get_le16(r->buf + off);
		if (left < REC_FIXED + n || !name_ok(r->buf + off + 2, n)) {
			err_set("%s: record %d has a bad name (corrupt or truncated file)", path, r->nr + 1);
			goto bad;
		}
		uint64_t plen = get_le64(r->buf + off + 6 + n);
		if (plen > left - REC_FIXED - n) {
			err_set("%s: record %d (%.*s) runs past the end of the file (truncated)", path, r->nr + 1,
				(int)n, (const char *)r->buf + off + 2);
			goto bad;
		}
		size_t body = 14 + n + plen;
		if (crc32(0, r->buf + off, body) != get_le32(r->buf + off + body)) {
			err_set("%s: record %d (%.*s) fails its checksum (the file is corrupt)", path, r->nr + 1,
				(int)n, (const char *)r->buf + off + 2);
			goto bad;
		}
		if (r->nr == cap) {
			cap = cap ? cap * 2 : 32;
			struct rec *nr = realloc(r->recs, cap * sizeof(*nr));
			if (!nr)
				abort();
			r->recs = nr;
		}
		struct rec *rc = &r->recs[r->nr];
		memcpy(rc->name, r->buf + off + 2, n);
		rc->name[n] = 0;
		rc->version = get_le32(r->buf + off + 2 + n);
		rc->off = off + 14 + n;
		rc->len = plen;
		if (find(r, rc->name) >= 0) {
			err_set("%s: record %s appears twice (corrupt file)", path, rc->name);
			goto bad;
		}
		if (!strcmp(rc->name, "end")) {
			if (plen != 4 || get_le32(r->buf + rc->off) != (uint32_t)r->nr) {
				err_set("%s: the end record does not count the %d records before it (corrupt file)", path, r->nr);
				goto bad;
			}
			ended = true;
		} else {
			r->nr++;
		}
		off += body + 4;
	}
	if (!ended) {
		err_set("%s: truncated (no end record after %d records)", path, r->nr);
		goto bad;
	}
	if (off != len) {
		err_set("%s: %zu bytes after the end record (corrupt file)", path, len - off);
		goto bad;
	}
	return r;
bad:
	snap_reader_free(r);
	return NULL;
}

struct snap_reader *snap_reader_open(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err_errno("%s", path);
		return NULL;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		err_set("%s: not a regular file", path);
		close(fd);
		return NULL;
	}
	if ((uint64_t)st.st_size > SNAP_FILE_MAX) {
		err_set("%s: %llu bytes, more than any snapshot lkvm writes", path, (unsigned long long)st.st_size);
		close(fd);
		return NULL;
	}
	size_t len = st.st_size;
	uint8_t *buf = xcalloc(1, len ? len : 1);
	size_t got = 0;
	while (got < len) {
		ssize_t k = read(fd, buf + got, len - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		got += k;
	}
	close(fd);
	struct snap_reader *r = snap_reader_new(buf, got, path);
	free(buf);
	return r;
}

int snap_open(struct snap_reader *r, const char *name, uint32_t version)
{
	int i = find(r, name);
	r->cur = -1;
	r->bad = false;
	if (i < 0)
		return err_set("%s: no record %s in the snapshot", r->path, name);
	if (r->recs[i].version != version)
		return err_set("%s: record %s has version %u; this lkvm reads version %u", r->path, name,
			       r->recs[i].version, version);
	r->cur = i;
	r->pos = 0;
	return 0;
}

static const uint8_t *take(struct snap_reader *r, size_t n)
{
	if (r->cur < 0 || r->bad || n > r->recs[r->cur].len - r->pos) {
		r->bad = true;
		return NULL;
	}
	const uint8_t *p = r->buf + r->recs[r->cur].off + r->pos;
	r->pos += n;
	return p;
}

uint8_t snap_get_u8(struct snap_reader *r) { const uint8_t *p = take(r, 1); return p ? p[0] : 0; }
uint16_t snap_get_u16(struct snap_reader *r) { const uint8_t *p = take(r, 2); return p ? get_le16(p) : 0; }
uint32_t snap_get_u32(struct snap_reader *r) { const uint8_t *p = take(r, 4); return p ? get_le32(p) : 0; }
uint64_t snap_get_u64(struct snap_reader *r) { const uint8_t *p = take(r, 8); return p ? get_le64(p) : 0; }
int64_t snap_get_i64(struct snap_reader *r) { return (int64_t)snap_get_u64(r); }

bool snap_get_bool(struct snap_reader *r)
{
	uint8_t v = snap_get_u8(r);
	if (v > 1)
		r->bad = true;
	return v == 1;
}

void snap_get_bytes(struct snap_reader *r, void *p, size_t n)
{
	const uint8_t *q = take(r, n);
	if (q)
		memcpy(p, q, n);
	else
		memset(p, 0, n);
}

void snap_get_str(struct snap_reader *r, char *out, size_t cap)
{
	size_t n = snap_get_u16(r);
	const uint8_t *q = take(r, n);
	if (cap)
		out[0] = 0;
	if (!q)
		return;
	if (n >= cap || memchr(q, 0, n)) {
		r->bad = true;
		return;
	}
	memcpy(out, q, n);
	out[n] = 0;
}

size_t snap_left(const struct snap_reader *r)
{
	return r->cur < 0 ? 0 : r->recs[r->cur].len - r->pos;
}

bool snap_failed(const struct snap_reader *r)
{
	return r->bad;
}

int snap_close(struct snap_reader *r)
{
	if (r->cur < 0)
		return err_set("%s: no record open", r->path);
	const char *name = r->recs[r->cur].name;
	int ret = 0;
	if (r->bad)
		ret = err_set("%s: record %s is malformed (a value is out of range or it ends too soon)", r->path, name);
	else if (r->pos != r->recs[r->cur].len)
		ret = err_set("%s: record %s has %zu bytes more than this lkvm reads", r->path, name,
			      r->recs[r->cur].len - r->pos);
	r->cur = -1;
	return ret;
}

int snap_bad(struct snap_reader *r, const char *fmt, ...)
{
	char msg[384];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	r->bad = true;
	return err_set("%s: record %s: %s", r->path, r->cur >= 0 ? r->recs[r->cur].name : "?", msg);
}
