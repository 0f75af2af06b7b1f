/*
 * Merging a guest's consecutive TCP segments into one GSO frame on their way
 * to a tap (net/tcp_merge.c): what a host NIC's GRO does for received packets.
 */
#ifndef LKVM_TCP_MERGE_H
#define LKVM_TCP_MERGE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>
#include "net.h"

#define TCP_MERGE_IP_MAX 65535	/* an IPv4 packet's largest total length */

/* Where frames leave: a frame as it came, or a merged one with its own header. */
typedef void tcp_merge_out_fn(void *arg, const uint8_t *hdr, const struct iovec *iov, int n, size_t len);

struct tcp_merge {
	bool held;		/* a segment (or several, merged) waits in frame[] */
	bool closed;		/* its last segment had PSH or was short: nothing may follow */
	uint8_t hdr[VNET_HDR_LEN];	/* the first segment's, written as is if it stays alone */
	unsigned hlen;		/* Ethernet + IPv4 + TCP headers */
	unsigned mss;		/* the first segment's payload: the GSO size */
	unsigned segs;
	size_t len;		/* bytes in frame[] */
	uint32_t next_seq;
	uint64_t merged;	/* segments appended to an earlier one, for `lkvm stat` */
	uint8_t frame[14 + TCP_MERGE_IP_MAX];
};

/* One frame from the guest (hdr: its virtio-net header); may hold it for the next. */
void tcp_merge_frame(struct tcp_merge *m, const uint8_t *hdr, const struct iovec *iov, int n, size_t len,
		     tcp_merge_out_fn *out, void *arg);
/* The end of a transmit batch: what is held goes out. */
void tcp_merge_flush(struct tcp_merge *m, tcp_merge_out_fn *out, void *arg);

#endif
