/*
 * GDB remote serial protocol framing: $payload#checksum, '+'/'-' acknowledgements,
 * 0x03 for Ctrl-C, '}' escapes for binary data, hex numbers and hex data. Nothing
 * here trusts its input: tests/fuzz/fuzz_gdb.c drives it with arbitrary bytes.
 */
#include <string.h>
#include "gdb.h"

enum { RX_IDLE, RX_DATA, RX_SUM1, RX_SUM2 };

void gdb_rx_init(struct gdb_rx *rx)
{
	rx->state = RX_IDLE;
	rx->len = 0;
	rx->buf[0] = 0;
}

int gdb_hex_digit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

enum gdb_rx_event gdb_rx_byte(struct gdb_rx *rx, uint8_t c)
{
	int d;
	switch (rx->state) {
	case RX_IDLE:
		if (c == '$') {
			rx->state = RX_DATA;
			rx->sum = 0;
			rx->len = 0;
			rx->overflow = false;
			return GDB_RX_NONE;
		}
		if (c == '+')
			return GDB_RX_ACK;
		if (c == '-')
			return GDB_RX_NAK;
		if (c == 0x03)
			return GDB_RX_INTERRUPT;
		return GDB_RX_NONE;	/* noise between packets */
	case RX_DATA:
		if (c == '#') {
			rx->state = RX_SUM1;
			return GDB_RX_NONE;
		}
		if (c == '$') {		/* never unescaped in a payload: gdb started over */
			rx->sum = 0;
			rx->len = 0;
			rx->overflow = false;
			return GDB_RX_NONE;
		}
		rx->sum += c;
		if (rx->len < GDB_PACKET_MAX)
			rx->buf[rx->len++] = c;
		else
			rx->overflow = true;
		return GDB_RX_NONE;
	case RX_SUM1:
		if ((d = gdb_hex_digit(c)) < 0) {
			rx->state = RX_IDLE;
			return GDB_RX_BAD_CHECKSUM;
		}
		rx->got = d << 4;
		rx->state = RX_SUM2;
		return GDB_RX_NONE;
	default:
		rx->state = RX_IDLE;
		if ((d = gdb_hex_digit(c)) < 0 || (rx->got | d) != rx->sum)
			return GDB_RX_BAD_CHECKSUM;
		if (rx->overflow)
			return GDB_RX_TOO_LONG;
		rx->buf[rx->len] = 0;
		return GDB_RX_PACKET;
	}
}

static const char hexchars[] = "0123456789abcdef";

size_t gdb_frame(const void *payload, size_t len, char *out, size_t cap)
{
	const uint8_t *p = payload;
	size_t n = 0;
	uint8_t sum = 0;
	if (cap < 4)
		return 0;
	out[n++] = '$';
	for (size_t i = 0; i < len; i++) {
		uint8_t c = p[i];
		bool esc = c == '$' || c == '#' || c == '}' || c == '*';
		if (n + (esc ? 2 : 1) + 3 > cap)
			return 0;
		if (esc) {
			out[n++] = '}';
			sum += '}';
			c ^= 0x20;
		}
		out[n++] = c;
		sum += c;
	}
	out[n++] = '#';
	out[n++] = hexchars[sum >> 4];
	out[n++] = hexchars[sum & 15];
	return n;
}

void gdb_hex_encode(const void *data, size_t len, char *out)
{
	const uint8_t *p = data;
	for (size_t i = 0; i < len; i++) {
		*out++ = hexchars[p[i] >> 4];
		*out++ = hexchars[p[i] & 15];
	}
	*out = 0;
}

ssize_t gdb_hex_decode(const char *hex, size_t hexlen, uint8_t *out, size_t cap)
{
	if (hexlen % 2 || hexlen / 2 > cap)
		return -1;
	for (size_t i = 0; i < hexlen / 2; i++) {
		int hi = gdb_hex_digit((unsigned char)hex[2 * i]), lo = gdb_hex_digit((unsigned char)hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		out[i] = hi << 4 | lo;
	}
	return hexlen / 2;
}

ssize_t gdb_unescape(const char *in, size_t len, uint8_t *out, size_t cap)
{
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		uint8_t c = in[i];
		if (c == '}') {
			if (++i == len)
				return -1;
			c = in[i] ^ 0x20;
		}
		if (n == cap)
			return -1;
		out[n++] = c;
	}
	return n;
}

bool gdb_parse_hex(const char **p, uint64_t *v)
{
	const char *s = *p;
	uint64_t x = 0;
	int digits = 0, d;
	while (*s == '0' && gdb_hex_digit((unsigned char)s[1]) >= 0)
		s++;	/* leading zeros do not count against the 16 digits */
	for (; (d = gdb_hex_digit((unsigned char)*s)) >= 0; s++) {
		if (++digits > 16)
			return false;
		x = x << 4 | d;
	}
	if (!digits)
		return false;
	*p = s;
	*v = x;
	return true;
}

bool gdb_parse_addr_len(const char **p, uint64_t *addr, uint64_t *len)
{
	const char *s = *p;
	if (!gdb_parse_hex(&s, addr) || *s++ != ',' || !gdb_parse_hex(&s, len))
		return false;
	*p = s;
	return true;
}

bool gdb_parse_thread(const char **p, long *tid)
{
	if ((*p)[0] == '-' && (*p)[1] == '1') {
		*p += 2;
		*tid = -1;
		return true;
	}
	uint64_t v;
	if (!gdb_parse_hex(p, &v) || v > 0x7fffffff)
		return false;
	*tid = v;
	return true;
}
