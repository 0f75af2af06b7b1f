/*
 * The sandbox agent's frames (include/agent_proto.h, docs/agent-protocol.md):
 * headers, per-type bounds, the incremental decoder both sides use, and the
 * tagged records of SETUP and EXEC. The decoder is what a hostile guest
 * talks to: nothing it sends may grow memory past one frame's bound.
 */
#include <stdlib.h>
#include <string.h>
#include "agent_proto.h"
#include "util.h"

void agent_hdr(uint8_t *b, uint8_t type, uint32_t len)
{
	b[0] = len; b[1] = len >> 8; b[2] = len >> 16; b[3] = len >> 24;
	b[4] = type;
	b[5] = b[6] = b[7] = 0;
}

uint32_t agent_max_payload(uint8_t type, bool from_guest)
{
	if (from_guest) {
		switch (type) {
		case AGENT_STDOUT: case AGENT_STDERR: return AGENT_MAX_DATA;
		case AGENT_EXIT: case AGENT_ACK: case AGENT_READY: return 4;
		case AGENT_ERROR: return AGENT_MAX_ERROR;
		}
		return 0;
	}
	switch (type) {
	case AGENT_SETUP: case AGENT_EXEC: return AGENT_MAX_JOB;
	case AGENT_STDIN: return AGENT_MAX_DATA;
	case AGENT_SIGNAL: case AGENT_WINSIZE: return 4;
	}
	return 0;
}

void agent_rx_init(struct agent_rx *rx, bool from_guest)
{
	memset(rx, 0, sizeof(*rx));
	rx->from_guest = from_guest;
}

void agent_rx_free(struct agent_rx *rx)
{
	free(rx->buf);
	rx->buf = NULL;
	rx->cap = 0;
}

static int header_in(struct agent_rx *rx)
{
	const uint8_t *h = rx->hdr;
	rx->len = h[0] | h[1] << 8 | h[2] << 16 | (uint32_t)h[3] << 24;
	rx->type = h[4];
	uint32_t max = agent_max_payload(rx->type, rx->from_guest);
	if (!max)
		return err_set("frame of unknown type %u", rx->type);
	if (h[5] || h[6] || h[7])
		return err_set("frame header with nonzero padding");
	if (rx->len > max)
		return err_set("frame of type %u with %u bytes (at most %u)", rx->type, rx->len, max);
	if (rx->len > rx->cap) {
		/* Grown to what frames need, never past the largest bound (a few MiB at most). */
		uint8_t *nb = realloc(rx->buf, rx->len);
		if (!nb)
			return err_set("out of memory for a %u-byte frame", rx->len);
		rx->buf = nb;
		rx->cap = rx->len;
	}
	return 0;
}

int agent_rx_feed(struct agent_rx *rx, const uint8_t *data, size_t n, agent_frame_fn fn, void *ctx)
{
	if (rx->broken)
		return err_set("protocol already broken");
	while (n) {
		if (rx->have < AGENT_HDR) {
			size_t k = AGENT_HDR - rx->have < n ? AGENT_HDR - rx->have : n;
			memcpy(rx->hdr + rx->have, data, k);
			rx->have += k; data += k; n -= k;
			if (rx->have < AGENT_HDR)
				break;
			if (header_in(rx) < 0)
				goto broken;
		} else {
			uint32_t got = rx->have - AGENT_HDR, k = rx->len - got < n ? rx->len - got : (uint32_t)n;
			memcpy(rx->buf + got, data, k);
			rx->have += k; data += k; n -= k;
		}
		if (rx->have == AGENT_HDR + rx->len) {
			rx->have = 0;
			if (fn(ctx, rx->type, rx->buf, rx->len) < 0)
				goto broken;
		}
	}
	return 0;
broken:
	rx->broken = true;
	return -1;
}

int agent_buf_put(struct agent_buf *b, const void *data, size_t len)
{
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + len)
			cap *= 2;
		uint8_t *nd = realloc(b->data, cap);
		if (!nd)
			return err_set("out of memory");
		b->data = nd;
		b->cap = cap;
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
	return 0;
}

int agent_rec_add(struct agent_buf *b, char tag, const char *text)
{
	return agent_buf_put(b, &tag, 1) < 0 || agent_buf_put(b, text, strlen(text) + 1) < 0 ? -1 : 0;
}

int agent_rec_next(const uint8_t *payload, uint32_t len, uint32_t *off, char *tag, const char **text)
{
	if (*off >= len)
		return 0;
	const uint8_t *nul = memchr(payload + *off, 0, len - *off);
	if (!nul || nul == payload + *off)
		return err_set("malformed record at byte %u", *off);
	*tag = payload[*off];
	*text = (const char *)payload + *off + 1;
	*off = nul - payload + 1;
	return 1;
}
