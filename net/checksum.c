/* The Internet checksum (RFC 1071) for every header the user-mode stack and the tap's merging send or check. */
#include <string.h>
#include <sys/uio.h>
#include "inet.h"

/*
 * Adds data as big-endian 16-bit words to sum. A 32-bit word hi:lo is
 * congruent to hi + lo modulo 0xffff, so big-endian 32-bit loads into a 64-bit
 * accumulator give the same folded result at twice the pace. An odd final
 * byte is the high half of a word padded with zero; only the last piece of a
 * message may be odd.
 */
uint32_t inet_csum_add(uint32_t sum, const void *data, size_t len)
{
	const uint8_t *p = data;
	uint64_t s = sum;
	while (len >= 4) {
		uint32_t w;
		memcpy(&w, p, 4);
		s += __builtin_bswap32(w);
		p += 4;
		len -= 4;
	}
	if (len >= 2) {
		s += (uint32_t)p[0] << 8 | p[1];
		p += 2;
		len -= 2;
	}
	if (len)
		s += (uint32_t)p[0] << 8;
	while (s >> 32)
		s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffff) + (s >> 16);	/* keep room for callers to add more */
	return (uint32_t)((s & 0xffff) + (s >> 16));
}

/*
 * RFC 1071 (section 2, byte order independence): a piece that starts at an
 * odd offset is summed as if it began a word, and its folded sum byte-swapped.
 */
uint32_t inet_csum_iov(uint32_t sum, const struct iovec *iov, int n)
{
	size_t off = 0;
	for (int i = 0; i < n; i++) {
		uint32_t s = inet_csum_add(0, iov[i].iov_base, iov[i].iov_len);
		s = (s & 0xffff) + (s >> 16);
		s = (s & 0xffff) + (s >> 16);
		if (off & 1)
			s = (s & 0xff) << 8 | s >> 8;
		sum += s;
		off += iov[i].iov_len;
	}
	return (sum & 0xffff) + (sum >> 16);
}

uint32_t inet_pseudo_sum(uint32_t src, uint32_t dst, uint8_t proto, uint16_t len)
{
	return (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + proto + len;
}

uint16_t inet_csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}
