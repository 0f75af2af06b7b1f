/*
 * A guest's TCP segments merged into one GSO frame on their way to a tap.
 *
 * Every write to a tap is one packet through the host's whole receive path.
 * A guest without TSO (or with it switched off) sends MSS-sized segments, one
 * write each, and the host kernel does no GRO on a tap's writes: so 1460-byte
 * uploads ran at a tenth of loopback (bench/README.md). Here consecutive
 * segments of one IPv4 TCP stream within one transmit batch become one frame
 * with a virtio-net GSO header (TCPV4, gso_size = the first segment's
 * payload), which the host delivers as one packet, or cuts back into the
 * same segments when it forwards it: what a NIC's GRO does.
 *
 * Only what GRO would merge is merged: IPv4 without options, DF and not a
 * fragment, IDs counting up; TCP with ACK and nothing but PSH beside it, the
 * same addresses, ports, ack, window and options, each segment starting where
 * the last ended, none longer than the first, and PSH or a short segment
 * ending the run. So the host's segmentation of the merged frame gives back
 * the guest's segments byte for byte (tests/unit/test_tcp_merge.c checks it). A
 * segment the guest checksummed itself is checked first (a bad one goes out
 * as it came, for the host to drop). Anything else passes unchanged, and in
 * order: what is held goes out before it.
 *
 * The guest may rewrite its buffers at any time, so every decision is taken
 * on bytes copied out of guest memory first, and the frame written is the copy.
 */
#include <string.h>
#include "inet.h"
#include "tcp_merge.h"
#include "virtio.h"

#define ETH	14
#define IP_END	(ETH + 20)		/* no IP options */
#define HDR_MAX	(IP_END + 60)		/* TCP header with the most options */
#define TCP_ACK	0x10
#define TCP_PSH	0x08

struct seg {
	unsigned hlen, plen;	/* headers, payload */
	uint32_t seq;
	uint8_t flags;
};

static uint16_t le16(const uint8_t *p) { return p[0] | p[1] << 8; }

/* A segment of the kind that can be merged; h holds the frame's first bytes. */
static bool mergeable(const uint8_t *hdr, const uint8_t *h, size_t len, struct seg *s)
{
	if (hdr[1] != VIRTIO_NET_HDR_GSO_NONE)
		return false;
	if (hdr[0] == VIRTIO_NET_HDR_F_NEEDS_CSUM) {
		if (le16(hdr + 6) != IP_END || le16(hdr + 8) != 16)
			return false;
	} else if (hdr[0] != 0) {
		return false;
	}
	if (len < IP_END + 20 || len > ETH + TCP_MERGE_IP_MAX || be16(h + 12) != 0x0800)
		return false;
	if (h[ETH] != 0x45 || be16(h + ETH + 2) != len - ETH || be16(h + ETH + 6) != 0x4000 || h[ETH + 9] != 6)
		return false;
	if (inet_csum_fold(inet_csum_add(0, h + ETH, 20)) != 0)
		return false;
	const uint8_t *t = h + IP_END;
	s->hlen = IP_END + (t[12] >> 4) * 4;
	s->flags = t[13];
	s->seq = be32(t + 4);
	if ((t[12] >> 4) < 5 || s->hlen >= len || (s->flags & ~TCP_PSH) != TCP_ACK)
		return false;
	s->plen = len - s->hlen;
	return true;
}

/* The guest computed this segment's checksum (no NEEDS_CSUM): is it right? f: the whole frame. */
static bool csum_ok(const uint8_t *hdr, const uint8_t *f, size_t len)
{
	if (hdr[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM)
		return true;	/* the guest left it to us, as to a NIC: the merged frame asks the host for it */
	uint32_t sum = inet_pseudo_sum(be32(f + ETH + 12), be32(f + ETH + 16), 6, len - IP_END);
	return inet_csum_fold(inet_csum_add(sum, f + IP_END, len - IP_END)) == 0;
}

/* Does s (headers in h) continue what is held? */
static bool continues(const struct tcp_merge *m, const uint8_t *h, const struct seg *s)
{
	const uint8_t *f = m->frame, *t = h + IP_END, *ft = f + IP_END;
	return m->held && !m->closed && s->hlen == m->hlen && s->plen <= m->mss &&
	       m->len + s->plen <= sizeof(m->frame) &&
	       !memcmp(h, f, ETH) && h[ETH + 1] == f[ETH + 1] && h[ETH + 8] == f[ETH + 8] &&	/* TOS, TTL */
	       be16(h + ETH + 4) == (uint16_t)(be16(f + ETH + 4) + m->segs) &&	/* IDs count up, as GSO's will */
	       !memcmp(h + ETH + 12, f + ETH + 12, 8) &&			/* addresses */
	       !memcmp(t, ft, 4) && s->seq == m->next_seq &&			/* ports, sequence */
	       !memcmp(t + 8, ft + 8, 4) && (t[13] & ~TCP_PSH) == ft[13] &&	/* ack, flags */
	       !memcmp(t + 14, ft + 14, 2) && !memcmp(t + 18, ft + 18, 2) &&	/* window, urgent pointer */
	       !memcmp(t + 20, ft + 20, s->hlen - IP_END - 20);			/* options */
}

void tcp_merge_flush(struct tcp_merge *m, tcp_merge_out_fn *out, void *arg)
{
	if (!m->held)
		return;
	m->held = false;
	uint8_t *f = m->frame;
	struct iovec v = { f, m->len };
	if (m->segs == 1) {
		out(arg, m->hdr, &v, 1, m->len);
		return;
	}
	uint8_t hdr[VNET_HDR_LEN];
	vnet_hdr_tcp4_partial(hdr, m->hlen, m->mss);
	wbe16(f + ETH + 2, m->len - ETH);
	wbe16(f + ETH + 10, 0);
	wbe16(f + ETH + 10, inet_csum_fold(inet_csum_add(0, f + ETH, 20)));
	/* With NEEDS_CSUM the field holds the pseudo-header's sum, not inverted: the host finishes it. */
	uint32_t pseudo = inet_pseudo_sum(be32(f + ETH + 12), be32(f + ETH + 16), 6, m->len - IP_END);
	wbe16(f + IP_END + 16, (uint16_t)~inet_csum_fold(pseudo));
	out(arg, hdr, &v, 1, m->len);
}

void tcp_merge_frame(struct tcp_merge *m, const uint8_t *hdr, const struct iovec *iov, int n, size_t len,
		     tcp_merge_out_fn *out, void *arg)
{
	uint8_t h[HDR_MAX];
	struct seg s;
	size_t got = iov_to_buf(iov, n, 0, h, len < sizeof(h) ? len : sizeof(h));
	if (got < IP_END + 20 || !mergeable(hdr, h, len, &s))
		goto as_is;
	if (continues(m, h, &s)) {
		uint8_t *p = m->frame + m->len;
		if (iov_to_buf(iov, n, s.hlen, p, s.plen) != s.plen)
			goto as_is;
		if (!(hdr[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM)) {
			/* The checksum covers this segment's own headers and the payload just copied. */
			uint32_t sum = inet_pseudo_sum(be32(h + ETH + 12), be32(h + ETH + 16), 6, len - IP_END);
			sum = inet_csum_add(sum, h + IP_END, s.hlen - IP_END);
			if (inet_csum_fold(inet_csum_add(sum, p, s.plen)) != 0)
				goto as_is;
		}
		m->len += s.plen;
		m->next_seq += s.plen;
		m->segs++;
		m->merged++;
		if (s.flags & TCP_PSH)
			m->frame[IP_END + 13] |= TCP_PSH;
		m->closed = (s.flags & TCP_PSH) || s.plen < m->mss;
		if (m->closed || m->len + m->mss > sizeof(m->frame))
			tcp_merge_flush(m, out, arg);
		return;
	}
	tcp_merge_flush(m, out, arg);
	if (s.flags & TCP_PSH)
		goto as_is;	/* nothing may follow it: no use copying it */
	if (iov_to_buf(iov, n, 0, m->frame, len) != len || memcmp(m->frame, h, s.hlen) || !csum_ok(hdr, m->frame, len))
		goto as_is;	/* short chain, headers rewritten meanwhile, or a bad checksum */
	memcpy(m->hdr, hdr, VNET_HDR_LEN);
	m->held = true;
	m->closed = false;
	m->hlen = s.hlen;
	m->mss = s.plen;
	m->segs = 1;
	m->len = len;
	m->next_seq = s.seq + s.plen;
	return;
as_is:
	tcp_merge_flush(m, out, arg);
	out(arg, hdr, iov, n, len);
}
