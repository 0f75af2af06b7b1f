/*
 * net/tcp_merge.c: a guest's consecutive TCP segments become one GSO frame,
 * and cutting that frame up again the way the host kernel's GSO does gives back
 * the guest's segments byte for byte; anything that cannot be merged goes out
 * as it came, in order; hostile frames (any byte, any length, any split over
 * descriptors) change nothing but what is merged.
 */
#include <stdint.h>
#include <stdlib.h>
#include "inet.h"
#include "tcp_merge.h"
#include "test.h"

#define MSS 1448
#define MAXF 4096	/* frames one test sends or gets */

struct frame { uint8_t hdr[VNET_HDR_LEN]; uint8_t *b; size_t len; bool merged; };

static struct tcp_merge m;
static struct frame outs[MAXF];
static int nout;

static void collect(void *arg, const uint8_t *hdr, const struct iovec *iov, int n, size_t len)
{
	struct frame *f = &outs[nout++];
	struct tcp_merge *m = arg;
	memcpy(f->hdr, hdr, VNET_HDR_LEN);
	/* Built from the merge buffer under a header of its own: a merged frame (else one as it came). */
	f->merged = n == 1 && iov[0].iov_base == m->frame && hdr != m->hdr;
	f->b = malloc(len ? len : 1);
	f->len = 0;
	for (int i = 0; i < n; i++) {
		memcpy(f->b + f->len, iov[i].iov_base, iov[i].iov_len);
		f->len += iov[i].iov_len;
	}
	if (f->len != len) {
		fprintf(stderr, "out: iovecs hold %zu bytes, len says %zu\n", f->len, len);
		abort();
	}
}

static void reset_out(void)
{
	for (int i = 0; i < nout; i++)
		free(outs[i].b);
	nout = 0;
}

static void ip_csum(uint8_t *f)
{
	wbe16(f + 24, 0);
	wbe16(f + 24, inet_csum_fold(inet_csum_add(0, f + 14, 20)));
}

static void tcp_csum(uint8_t *f, size_t len)
{
	wbe16(f + 34 + 16, 0);
	uint32_t s = inet_pseudo_sum(be32(f + 26), be32(f + 30), 6, len - 34);
	wbe16(f + 34 + 16, inet_csum_fold(inet_csum_add(s, f + 34, len - 34)));
}

/* One segment of the test stream: 12 bytes of timestamp option, payload from the stream offset. */
struct segopt { uint32_t seq, ack; uint16_t id, plen, win; uint8_t flags; bool partial; };

static size_t make_seg(uint8_t *hdr, uint8_t *f, const struct segopt *o)
{
	static const uint8_t eth[14] = { 0x02, 0, 0, 0, 0, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x08, 0x00 };
	size_t len = 34 + 32 + o->plen;
	memset(hdr, 0, VNET_HDR_LEN);
	memcpy(f, eth, 14);
	uint8_t *ip = f + 14, *t = f + 34;
	memset(ip, 0, 20);
	ip[0] = 0x45;
	wbe16(ip + 2, len - 14);
	wbe16(ip + 4, o->id);
	wbe16(ip + 6, 0x4000);
	ip[8] = 64;
	ip[9] = 6;
	wbe32(ip + 12, 0x0a000302);
	wbe32(ip + 16, 0x0a000301);
	ip_csum(f);
	wbe16(t, 40000);
	wbe16(t + 2, 5001);
	wbe32(t + 4, o->seq);
	wbe32(t + 8, o->ack);
	t[12] = 8 << 4;
	t[13] = o->flags;
	wbe16(t + 14, o->win);
	wbe16(t + 18, 0);
	static const uint8_t ts[12] = { 1, 1, 8, 10, 0, 0, 0x10, 0, 0, 0, 0x20, 0 };
	memcpy(t + 20, ts, 12);
	for (unsigned i = 0; i < o->plen; i++)
		t[32 + i] = (uint8_t)((o->seq + i) * 7 + ((o->seq + i) >> 8));
	if (o->partial) {
		hdr[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
		hdr[6] = 34;
		hdr[8] = 16;
		wbe16(t + 16, (uint16_t)~inet_csum_fold(inet_pseudo_sum(0x0a000302, 0x0a000301, 6, len - 34)));
	} else {
		tcp_csum(f, len);
	}
	return len;
}

/*
 * The host kernel's GSO, as tcp_gso_segment() does it: each segment gets the
 * headers, the IP length, ID and checksum, its sequence number, PSH only on
 * the last, and its whole TCP checksum. A frame without GSO comes back as it is.
 */
static int resegment(const struct frame *in, struct frame *segs, int max)
{
	if (!in->merged) {
		segs[0] = (struct frame){ .len = in->len, .b = malloc(in->len) };
		memcpy(segs[0].hdr, in->hdr, VNET_HDR_LEN);
		memcpy(segs[0].b, in->b, in->len);
		return 1;
	}
	unsigned hlen = in->hdr[2] | in->hdr[3] << 8, mss = in->hdr[4] | in->hdr[5] << 8;
	/* What the host requires of a GSO frame before it cuts it. */
	CHECK_EQ(in->hdr[0], VIRTIO_NET_HDR_F_NEEDS_CSUM);
	CHECK_EQ(in->hdr[1], VIRTIO_NET_HDR_GSO_TCPV4);
	CHECK_EQ(in->hdr[6] | in->hdr[7] << 8, 34);
	CHECK_EQ(in->hdr[8] | in->hdr[9] << 8, 16);
	CHECK_EQ(be16(in->b + 16), in->len - 14);
	CHECK_EQ(inet_csum_fold(inet_csum_add(0, in->b + 14, 20)), 0);
	CHECK_EQ(be16(in->b + 34 + 16),
		 (uint16_t)~inet_csum_fold(inet_pseudo_sum(be32(in->b + 26), be32(in->b + 30), 6, in->len - 34)));
	CHECK(in->len - hlen > mss);
	int n = 0;
	for (size_t off = hlen; off < in->len && n < max; off += mss, n++) {
		size_t p = in->len - off < mss ? in->len - off : mss;
		struct frame *s = &segs[n];
		memset(s->hdr, 0, VNET_HDR_LEN);
		s->len = hlen + p;
		s->b = malloc(s->len);
		memcpy(s->b, in->b, hlen);
		memcpy(s->b + hlen, in->b + off, p);
		wbe16(s->b + 16, s->len - 14);
		wbe16(s->b + 18, be16(in->b + 18) + n);
		ip_csum(s->b);
		wbe32(s->b + 34 + 4, be32(in->b + 34 + 4) + (off - hlen));
		if (off + p < in->len)
			s->b[34 + 13] &= ~0x08;
		tcp_csum(s->b, s->len);
	}
	return n;
}

/* The segments the host would put on the wire from everything that came out. */
static int wire(struct frame *segs, int max)
{
	int n = 0;
	for (int i = 0; i < nout; i++)
		n += resegment(&outs[i], segs + n, max - n);
	return n;
}

static void free_frames(struct frame *f, int n)
{
	for (int i = 0; i < n; i++)
		free(f[i].b);
}

static struct frame ins[MAXF], segs[MAXF];
static int nin;

static void send_frame(uint8_t *hdr, uint8_t *b, size_t len, int pieces)
{
	struct frame *f = &ins[nin++];
	memcpy(f->hdr, hdr, VNET_HDR_LEN);
	f->b = malloc(len ? len : 1);
	memcpy(f->b, b, len);
	f->len = len;
	/* Split over descriptors as a guest may: pieces of random sizes, some empty. */
	struct iovec iov[8];
	int n = 0;
	size_t off = 0;
	while (n < pieces - 1 && n < 7) {
		size_t k = len - off ? (size_t)rand() % (len - off + 1) : 0;
		iov[n++] = (struct iovec){ b + off, k };
		off += k;
	}
	iov[n++] = (struct iovec){ b + off, len - off };
	tcp_merge_frame(&m, hdr, iov, n, len, collect, &m);
}

static void send_seg(const struct segopt *o)
{
	static uint8_t hdr[VNET_HDR_LEN], f[70000];
	send_frame(hdr, f, make_seg(hdr, f, o), 1 + rand() % 3);
}

/* Everything on the wire equals what went in, frame by frame; the headers out may be our own. */
static void check_wire_is_input(bool compare_hdrs)
{
	int n = wire(segs, MAXF);
	CHECK_EQ(n, nin);
	for (int i = 0; i < n && i < nin; i++) {
		bool same = segs[i].len == ins[i].len && !memcmp(segs[i].b, ins[i].b, ins[i].len);
		if (!same)
			fprintf(stderr, "frame %d of %d differs (len %zu, sent %zu)\n", i, nin, segs[i].len, ins[i].len);
		CHECK(same);
		if (compare_hdrs && !outs[i].merged && nout == nin)
			CHECK(!memcmp(outs[i].hdr, ins[i].hdr, VNET_HDR_LEN));
	}
	free_frames(segs, n);
}

static void start(void)
{
	reset_out();
	free_frames(ins, nin);
	nin = 0;
	memset(&m, 0, sizeof(m));
	srand(1);
}

TEST(consecutive_segments_become_one_gso_frame)
{
	start();
	/* 46 full segments: 45 fit in one IPv4 packet (20 + 32 + 45 * 1448 = 65212 bytes), the 46th starts the next. */
	for (int i = 0; i < 46; i++)
		send_seg(&(struct segopt){ .seq = 1000 + i * MSS, .ack = 77, .id = 500 + i, .plen = MSS, .win = 501,
					   .flags = 0x10 });
	tcp_merge_flush(&m, collect, &m);
	CHECK_EQ(nout, 2);
	CHECK_EQ(outs[0].hdr[1], VIRTIO_NET_HDR_GSO_TCPV4);
	CHECK_EQ(outs[0].hdr[4] | outs[0].hdr[5] << 8, MSS);
	CHECK_EQ(outs[0].len, 14 + 20 + 32 + 45 * MSS);
	CHECK_EQ(outs[1].hdr[1], VIRTIO_NET_HDR_GSO_NONE);	/* alone: as it came */
	CHECK_EQ(m.merged, 44);
	check_wire_is_input(true);
}

TEST(psh_or_a_short_segment_ends_a_run)
{
	start();
	uint32_t seq = 5;
	uint16_t id = 65534;	/* IDs wrap */
	/* full, full, short | full, full+PSH | PSH alone | full, full */
	unsigned lens[] = { MSS, MSS, 100, MSS, MSS, 10, MSS, MSS };
	uint8_t flags[] = { 0x10, 0x10, 0x10, 0x10, 0x18, 0x18, 0x10, 0x10 };
	for (int i = 0; i < 8; i++) {
		send_seg(&(struct segopt){ .seq = seq, .ack = 9, .id = id++, .plen = lens[i], .win = 64, .flags = flags[i] });
		seq += lens[i];
	}
	/* The first run went out at its short segment, the second at its PSH, the PSH alone at once. */
	CHECK_EQ(nout, 3);
	tcp_merge_flush(&m, collect, &m);
	CHECK_EQ(nout, 4);
	CHECK_EQ(outs[1].b[34 + 13], 0x18);	/* the merged frame keeps the PSH of its last segment */
	CHECK_EQ(outs[2].hdr[1], VIRTIO_NET_HDR_GSO_NONE);
	check_wire_is_input(true);
}

TEST(partial_checksums_are_merged_and_left_to_the_host)
{
	start();
	for (int i = 0; i < 10; i++)
		send_seg(&(struct segopt){ .seq = i * MSS, .ack = 1, .id = i, .plen = MSS, .win = 9, .flags = 0x10,
					   .partial = true });
	tcp_merge_flush(&m, collect, &m);
	CHECK_EQ(nout, 1);
	/* On the wire each segment carries its whole checksum; the guest's carried only the pseudo-header's. */
	int n = wire(segs, MAXF);
	CHECK_EQ(n, 10);
	for (int i = 0; i < n && i < nin; i++) {
		tcp_csum(ins[i].b, ins[i].len);
		CHECK(segs[i].len == ins[i].len && !memcmp(segs[i].b, ins[i].b, ins[i].len));
	}
	free_frames(segs, n);
}

TEST(what_cannot_merge_goes_out_as_it_came_in_order)
{
	start();
	uint8_t hdr[VNET_HDR_LEN], f[2000];
	uint32_t seq = 100;
	uint16_t id = 1;
#define SEG(...) do { struct segopt o_ = { .seq = seq, .ack = 3, .id = id, .plen = MSS, .win = 7, .flags = 0x10, \
					   __VA_ARGS__ }; size_t l_ = make_seg(hdr, f, &o_); (void)l_; } while (0)
	int cases = 0;
	for (int c = 0; c < 14; c++) {
		/* A good segment to merge with, then one that must not join it. */
		SEG();
		send_frame(hdr, f, 34 + 32 + MSS, 1);
		seq += MSS; id++;
		SEG();
		size_t len = 34 + 32 + MSS;
		bool next_ok = true;	/* the case leaves seq and id where the stream goes on */
		switch (c) {
		case 0: f[34 + 17] ^= 1; break;					/* bad TCP checksum */
		case 1: wbe16(f + 14 + 4, id + 5); ip_csum(f); tcp_csum(f, len); break;	/* ID out of step */
		case 2: wbe32(f + 34 + 4, seq + 1); tcp_csum(f, len); next_ok = false; break;	/* a gap */
		case 3: wbe32(f + 34 + 8, 4); tcp_csum(f, len); break;			/* another ack */
		case 4: f[34 + 13] = 0x11; tcp_csum(f, len); next_ok = false; break;	/* FIN */
		case 5: f[34 + 13] = 0x30; tcp_csum(f, len); break;			/* URG */
		case 6: f[14 + 6] = 0x20; ip_csum(f); break;				/* more fragments */
		case 7: f[14 + 8] = 63; ip_csum(f); break;				/* TTL */
		case 8: f[12] = 0x86; break;						/* not IPv4 */
		case 9: f[14 + 10] ^= 0xff; break;					/* bad IP checksum */
		case 10: f[34 + 26] ^= 1; tcp_csum(f, len); break;			/* other timestamp */
		case 11: hdr[1] = VIRTIO_NET_HDR_GSO_TCPV4; break;			/* the guest's own GSO */
		case 12: wbe16(f + 34 + 14, 8); tcp_csum(f, len); break;		/* window */
		case 13: len -= 700; wbe16(f + 16, len - 14); ip_csum(f); tcp_csum(f, len); next_ok = false; break;
		}
		send_frame(hdr, f, len, 2);
		cases++;
		seq += MSS; id++;
		if (!next_ok) {	/* start the stream afresh: flush so the next case begins alone */
			tcp_merge_flush(&m, collect, &m);
			seq += 100000;
		}
	}
	tcp_merge_flush(&m, collect, &m);
	/* Case 13 (a short segment) does join; every other case went out alone after its partner. */
	CHECK_EQ(m.merged, 1);
	CHECK_EQ(cases, 14);
	CHECK_EQ(nout, 27);
	check_wire_is_input(false);
#undef SEG
}

/*
 * Hostile frames: a stream of good segments with random bytes of their headers
 * changed (half of them with checksums made right again, so they look good),
 * random lengths and random splits over descriptors, random batch ends. What
 * comes out must be what went in, after the host's segmentation.
 */
TEST(hostile_frames_change_nothing_but_the_merging)
{
	start();
	srand(12345);
	uint8_t hdr[VNET_HDR_LEN], f[70000];
	uint32_t seq = 0;
	uint16_t id = 0;
	uint64_t merged = 0;
	for (int round = 0; round < 400; round++) {
		for (int i = 0; i < 8 && nin < MAXF / 2; i++) {
			unsigned plen = rand() % 4 ? MSS : rand() % (MSS * 2);
			size_t len = make_seg(hdr, f, &(struct segopt){ .seq = seq, .ack = 3, .id = id, .plen = plen,
									.win = 7, .flags = 0x10 });
			seq += plen;
			id++;
			if (rand() % 3 == 0) {
				int k = 1 + rand() % 4;
				while (k--) {
					int at = rand() % 100;
					if (at == 0)	/* flags, checksum offsets */
						hdr[(int[]){ 0, 6, 7, 8, 9 }[rand() % 5]] = rand();
					else if ((size_t)at < len)
						f[at] = rand();
				}
				if (rand() % 2) {
					ip_csum(f);
					if (len >= 34 + 20)
						tcp_csum(f, len);
				}
			}
			if (rand() % 8 == 0)
				len = rand() % (len + 1);
			send_frame(hdr, f, len, 1 + rand() % 8);
		}
		if (rand() % 4 == 0)
			tcp_merge_flush(&m, collect, &m);
		if (nin >= MAXF / 2) {
			tcp_merge_flush(&m, collect, &m);
			check_wire_is_input(false);
			merged += m.merged;
			reset_out();
			free_frames(ins, nin);
			nin = 0;
			m.merged = 0;
		}
	}
	tcp_merge_flush(&m, collect, &m);
	check_wire_is_input(false);
	merged += m.merged;
	CHECK(merged > 400);	/* the stream did get merged between the hostile frames (851 with this seed) */
	printf("hostile: %" PRIu64 " segments merged\n", merged);
}

TEST_MAIN()
