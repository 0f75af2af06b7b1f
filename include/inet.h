/* Internet headers as untrusted bytes: big-endian field access and the RFC 1071 checksum. */
#ifndef LKVM_INET_H
#define LKVM_INET_H

#include <stddef.h>
#include <stdint.h>

/* Frames are never cast to structs: a guest chooses every byte and every alignment. */
static inline uint16_t be16(const uint8_t *p) { return p[0] << 8 | p[1]; }
static inline uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }
static inline void wbe16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = v; }
static inline void wbe32(uint8_t *p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }

/* net/checksum.c. Sums are of big-endian 16-bit words; only a message's last piece may be odd. */
uint32_t inet_csum_add(uint32_t sum, const void *data, size_t len);
uint32_t inet_pseudo_sum(uint32_t src, uint32_t dst, uint8_t proto, uint16_t len);
uint16_t inet_csum_fold(uint32_t sum);	/* the value to store: ~folded sum */
struct iovec;
/* The same over pieces of any length: a piece that starts at an odd offset of the message counts swapped. */
uint32_t inet_csum_iov(uint32_t sum, const struct iovec *iov, int n);

#endif
