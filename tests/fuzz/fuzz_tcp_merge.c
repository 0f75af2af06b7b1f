/*
 * libFuzzer target: a guest's transmit frames through the tap's segment
 * merging (net/tcp_merge.c).
 *
 * The input is a list of records: op (1 byte), length (2 bytes, little
 * endian), then that many bytes: a virtio-net header (12) and the frame, split
 * over op % 4 + 1 descriptors. op & 0x10 ends the batch after it (a flush);
 * op & 0x20 fixes the frame's IPv4 and TCP checksums first, so the fuzzer gets
 * past them to the merging itself. Every frame that comes out is read whole
 * (ASan sees a read past what was built), and a merged one must be a valid
 * GSO frame: its lengths consistent, its IPv4 checksum right.
 */
#include <stdlib.h>
#include <string.h>
#include "inet.h"
#include "tcp_merge.h"

static struct tcp_merge m;

static void sink(void *arg, const uint8_t *hdr, const struct iovec *iov, int n, size_t len)
{
	volatile uint8_t x = 0;
	size_t got = 0;
	for (int i = 0; i < VNET_HDR_LEN; i++)
		x ^= hdr[i];
	for (int i = 0; i < n; i++) {
		for (size_t k = 0; k < iov[i].iov_len; k++)
			x ^= ((const uint8_t *)iov[i].iov_base)[k];
		got += iov[i].iov_len;
	}
	(void)x;
	if (got != len)
		abort();
	if (hdr[1] == VIRTIO_NET_HDR_GSO_TCPV4 && n == 1 && iov[0].iov_base == m.frame) {
		const uint8_t *f = iov[0].iov_base;
		unsigned hlen = hdr[2] | hdr[3] << 8, gso = hdr[4] | hdr[5] << 8;
		if (len < 54 || be16(f + 16) != len - 14 || inet_csum_fold(inet_csum_add(0, f + 14, 20)) ||
		    hlen > len || !gso || len - hlen <= gso)
			abort();
	}
}

static void fix_csums(uint8_t *f, size_t len)
{
	if (len < 54 || be16(f + 16) != len - 14)
		return;
	wbe16(f + 24, 0);
	wbe16(f + 24, inet_csum_fold(inet_csum_add(0, f + 14, 20)));
	wbe16(f + 50, 0);
	uint32_t s = inet_pseudo_sum(be32(f + 26), be32(f + 30), 6, len - 34);
	wbe16(f + 50, inet_csum_fold(inet_csum_add(s, f + 34, len - 34)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[VNET_HDR_LEN + 65600];
	memset(&m, 0, sizeof(m));
	size_t i = 0;
	while (i + 3 <= size) {
		uint8_t op = data[i];
		size_t len = data[i + 1] | data[i + 2] << 8;
		i += 3;
		len = len < size - i ? len : size - i;
		memcpy(buf, data + i, len);
		i += len;
		if (len < VNET_HDR_LEN)
			continue;
		uint8_t *f = buf + VNET_HDR_LEN;
		size_t flen = len - VNET_HDR_LEN;
		if (op & 0x20)
			fix_csums(f, flen);
		struct iovec iov[4];
		int n = op % 4 + 1;
		size_t off = 0;
		for (int k = 0; k < n; k++) {
			size_t piece = k == n - 1 ? flen - off : (flen - off) / 2;
			iov[k] = (struct iovec){ f + off, piece };
			off += piece;
		}
		tcp_merge_frame(&m, buf, iov, n, flen, sink, NULL);
		if (op & 0x10)
			tcp_merge_flush(&m, sink, NULL);
	}
	tcp_merge_flush(&m, sink, NULL);
	return 0;
}
