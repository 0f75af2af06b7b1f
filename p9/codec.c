/*
 * The 9P wire format: little-endian integers and strings of a 16-bit length.
 * Reading never runs past the message (a short one only sets r->bad, and the
 * handler answers EPROTO); writing never runs past the reply buffer (w->over,
 * answered EMSGSIZE). Strings are copied NUL-terminated into a scratch area.
 */
#include <errno.h>
#include <string.h>
#include "p9_int.h"
#include "util.h"

const uint8_t *rd_take(struct rd *r, size_t n)
{
	if (r->bad || n > r->len - r->off) {
		r->bad = true;
		return NULL;
	}
	const uint8_t *q = r->p + r->off;
	r->off += n;
	return q;
}

uint8_t r8(struct rd *r) { const uint8_t *q = rd_take(r, 1); return q ? q[0] : 0; }
uint16_t r16(struct rd *r) { const uint8_t *q = rd_take(r, 2); return q ? get_le16(q) : 0; }
uint32_t r32(struct rd *r) { const uint8_t *q = rd_take(r, 4); return q ? get_le32(q) : 0; }
uint64_t r64(struct rd *r) { const uint8_t *q = rd_take(r, 8); return q ? get_le64(q) : 0; }

const char *rstr(struct rd *r)
{
	uint16_t n = r16(r);
	const uint8_t *q = rd_take(r, n);
	if (!q || (size_t)n + 1 > r->scap - r->soff) {
		r->bad = true;
		return "";
	}
	char *s = r->scratch + r->soff;
	memcpy(s, q, n);
	s[n] = 0;
	r->soff += n + 1;
	if (memchr(q, 0, n))
		r->nul = true;
	return s;
}

int rd_parsed(const struct rd *r)
{
	return r->bad ? EPROTO : r->nul ? EINVAL : 0;
}

uint8_t *wr_put(struct wr *w, size_t n)
{
	if (w->over || n > w->cap - w->off) {
		w->over = true;
		return NULL;
	}
	uint8_t *q = w->p + w->off;
	w->off += n;
	return q;
}

void w8(struct wr *w, uint8_t v) { uint8_t *q = wr_put(w, 1); if (q) *q = v; }
void w16(struct wr *w, uint16_t v) { uint8_t *q = wr_put(w, 2); if (q) put_le16(q, v); }
void w32(struct wr *w, uint32_t v) { uint8_t *q = wr_put(w, 4); if (q) put_le32(q, v); }
void w64(struct wr *w, uint64_t v) { uint8_t *q = wr_put(w, 8); if (q) put_le64(q, v); }

void wstr(struct wr *w, const char *s, size_t n)
{
	if (n > UINT16_MAX) {
		w->over = true;
		return;
	}
	w16(w, n);
	uint8_t *q = wr_put(w, n);
	if (q)
		memcpy(q, s, n);
}
