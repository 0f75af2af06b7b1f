/*
 * libFuzzer target: the split-virtqueue chain walker (virtio/virtqueue.c)
 * on a small guest RAM, with the device set up by hand (no transport).
 *
 * Guest RAM is two regions that touch in guest-physical space (0-32 KiB and
 * 32-64 KiB) but are separate host allocations, so ASan sees any access that
 * leaves one, and a buffer straddling 32 KiB must be refused. The input:
 *
 *   0      queue size: 1 << (b % 9) (the transport allows powers of two <= 256)
 *   1      flags: bit 0 push the chains back with one virtq_push_n (else one
 *          by one), bit 1 give them back with virtq_unpop and pop them again,
 *          bit 2 the avail ring asks for no interrupts
 *   2-7    le16 descriptor table, avail ring and used ring addresses (aligned
 *          as the transport demands: 16, 2 and 4)
 *   8-9    le16 avail index the driver published
 *   10-11  le16 where the device stands (last_avail and used_idx)
 *   12-13  le16 bytes to skip when copying out of the chains
 *   then   the descriptor table (16 bytes per entry, as many as given), the
 *          avail ring entries (2 bytes each), then records {le16 gpa, u8 len,
 *          bytes} written anywhere into RAM (indirect tables, say).
 *
 * Every chain is popped until none is left, then pushed back. Oracle: no
 * crash, every iovec lies inside one RAM region, chain lengths and the number
 * of chains are bounded, lengths add up, a bad chain breaks the device (and
 * says so once), unpop/pop returns the same chains, the used ring says what
 * was pushed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "util.h"
#include "virtio.h"
#include "vm.h"

#define REGION 0x8000
#define RAM (2 * REGION)

static struct vm vm;
static uint8_t *host[2];
static int irqs, config_irqs;

/* What virtqueue.c needs from the transport (virtio/pci.c), counted. */
void virtio_irq(struct virtio_dev *d, uint16_t vector, uint8_t isr_bit) { irqs++; }
void virtio_config_irq(struct virtio_dev *d) { config_irqs++; }

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	for (int i = 0; i < 2; i++) {
		host[i] = malloc(REGION);	/* malloc, not mmap: ASan red zones around each region */
		vm.mem.r[i] = (struct mem_region){ (uint64_t)i * REGION, REGION, host[i] };
	}
	vm.mem.nr = 2;
	vm.mem.ram_size = RAM;
	vm.vm_fd = vm.sys_fd = -1;
	return 0;
}

static void ram_write(uint64_t gpa, const uint8_t *src, size_t len)
{
	for (size_t i = 0; i < len && gpa + i < RAM; i++)
		host[(gpa + i) / REGION][(gpa + i) % REGION] = src[i];
}

static void check_iov(const struct iovec *v)
{
	const uint8_t *b = v->iov_base;
	for (int i = 0; i < 2; i++)
		if (b >= host[i] && b < host[i] + REGION && v->iov_len <= (size_t)(host[i] + REGION - b) &&
		    v->iov_len > 0)
			return;
	fprintf(stderr, "fuzz_virtq: iovec %p+%zu is not inside one guest RAM region\n", v->iov_base, v->iov_len);
	abort();
}

static void check_chain(const struct virtq_chain *c, uint16_t size)
{
	if (c->head >= size || c->nout < 0 || c->nin < 0 || c->nout + c->nin < 1 ||
	    c->nout + c->nin > VIRTQ_MAX_SEGS) {
		fprintf(stderr, "fuzz_virtq: bad chain: head %u of %u, %d out, %d in\n", c->head, size, c->nout, c->nin);
		abort();
	}
	uint64_t out = 0, in = 0;
	for (int i = 0; i < c->nout + c->nin; i++) {
		check_iov(&c->iov[i]);
		*(i < c->nout ? &out : &in) += c->iov[i].iov_len;
	}
	if (out != c->out_len || in != c->in_len) {
		fprintf(stderr, "fuzz_virtq: chain lengths %llu/%llu, buffers add up to %llu/%llu\n",
			(unsigned long long)c->out_len, (unsigned long long)c->in_len, (unsigned long long)out,
			(unsigned long long)in);
		abort();
	}
}

static bool same_chain(const struct virtq_chain *a, const struct virtq_chain *b)
{
	if (a->head != b->head || a->nout != b->nout || a->nin != b->nin)
		return false;
	for (int i = 0; i < a->nout + a->nin; i++)
		if (a->iov[i].iov_base != b->iov[i].iov_base || a->iov[i].iov_len != b->iov[i].iov_len)
			return false;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 14)
		return 0;
	config_irqs = 0;
	static struct virtio_dev d;
	static struct virtq_chain chains[VIRTQ_MAX_SIZE + 1], again;
	memset(&d, 0, sizeof(d));
	d.vm = &vm;
	d.name = "fuzz-virtq";
	d.nr_queues = 1;
	d.msix_config = VIRTIO_NO_VECTOR;
	struct virtq *q = &d.q[0];
	pthread_mutex_init(&q->lock, NULL);
	pthread_mutex_init(&d.lock, NULL);
	q->size = 1 << (data[0] % 9);
	q->desc = get_le16(data + 2) & ~15u;
	q->avail = get_le16(data + 4) & ~1u;
	q->used = get_le16(data + 6) & ~3u;
	q->last_avail = q->used_idx = get_le16(data + 10);
	q->msix_vector = 0;
	q->enabled = true;
	q->dev = &d;
	uint8_t flags = data[1];
	size_t skip = get_le16(data + 12);

	/* Guest RAM as the driver left it. */
	memset(host[0], 0, REGION);
	memset(host[1], 0, REGION);
	size_t off = 14, n = MIN(size - off, 16u * q->size);
	ram_write(q->desc, data + off, n);
	off += n;
	uint8_t avail_hdr[4] = { flags & 4 ? 1 : 0, 0, data[8], data[9] };
	ram_write(q->avail, avail_hdr, 4);
	n = MIN(size - off, 2u * q->size);
	ram_write(q->avail + 4, data + off, n);
	off += n;
	while (off + 3 <= size) {
		uint64_t gpa = get_le16(data + off);
		n = MIN(size - off - 3, (size_t)data[off + 2]);
		ram_write(gpa, data + off + 3, n);
		off += 3 + n;
	}

	/* Pop until none is left: never more chains than the ring holds. */
	const uint8_t *avail = guest_ptr(&vm.mem, q->avail, 4);	/* records may have overwritten its index */
	uint16_t pending = avail ? (uint16_t)(get_le16(avail + 2) - q->last_avail) : 0;
	int popped = 0, r;
	while ((r = virtq_pop(&d, 0, &chains[popped])) == 1) {
		check_chain(&chains[popped], q->size);
		if (++popped > q->size) {
			fprintf(stderr, "fuzz_virtq: %d chains popped from a ring of %u\n", popped, q->size);
			abort();
		}
	}
	if (r < 0 && (!d.broken || !(d.status & VIRTIO_STATUS_NEEDS_RESET) || config_irqs != 1)) {
		fprintf(stderr, "fuzz_virtq: a bad chain did not break the device (or did not say so once)\n");
		abort();
	}
	if (r == 0 && !d.broken && popped != pending) {
		fprintf(stderr, "fuzz_virtq: %d chains popped, %u were pending\n", popped, pending);
		abort();
	}
	if (virtq_pop(&d, 0, &again) != 0 || virtq_pop(&d, 1, &again) != 0) {
		fprintf(stderr, "fuzz_virtq: a drained (or broken, or missing) queue gave a chain\n");
		abort();
	}

	/* Given back, the same chains come again (RAM has not changed). */
	if ((flags & 2) && !d.broken && popped) {
		virtq_unpop(&d, 0, popped);
		for (int i = 0; i < popped; i++)
			if (virtq_pop(&d, 0, &again) != 1 || !same_chain(&again, &chains[i])) {
				fprintf(stderr, "fuzz_virtq: chain %d differs after virtq_unpop\n", i);
				abort();
			}
	}

	/* Use the buffers as a device would: read the readable part, fill the writable one. */
	static uint8_t buf[VIRTQ_MAX_SEGS * REGION];
	uint16_t heads[VIRTQ_MAX_SIZE];
	uint32_t lens[VIRTQ_MAX_SIZE];
	for (int i = 0; i < popped; i++) {
		struct virtq_chain *c = &chains[i];
		size_t want = c->out_len > skip ? c->out_len - skip : 0;
		size_t got = iov_to_buf(c->iov, c->nout, skip, buf, MIN(want, sizeof(buf)));
		if (got != MIN(want, sizeof(buf))) {
			fprintf(stderr, "fuzz_virtq: iov_to_buf copied %zu of %zu\n", got, want);
			abort();
		}
		want = c->in_len > skip ? c->in_len - skip : 0;
		memset(buf, 0x5a, MIN(want, sizeof(buf)));
		got = buf_to_iov(c->iov + c->nout, c->nin, skip, buf, MIN(want, sizeof(buf)));
		if (got != MIN(want, sizeof(buf))) {
			fprintf(stderr, "fuzz_virtq: buf_to_iov copied %zu of %zu\n", got, want);
			abort();
		}
		heads[i] = c->head;
		lens[i] = (uint32_t)c->in_len;
	}

	/* Push them back; the used ring then says so. */
	uint16_t used0 = q->used_idx;
	int irqs0 = irqs;
	bool quiet = host[q->avail / REGION][q->avail % REGION] & 1;	/* records and writes may have changed it */
	if (flags & 1) {
		if (popped)
			virtq_push_n(&d, 0, heads, lens, popped);
	} else {
		for (int i = 0; i < popped; i++)
			virtq_push(&d, 0, heads[i], lens[i]);
	}
	const uint8_t *used = guest_ptr(&vm.mem, q->used, 4 + 8ULL * q->size);
	if (popped && used) {
		if (q->used_idx != (uint16_t)(used0 + popped) || get_le16(used + 2) != q->used_idx) {
			fprintf(stderr, "fuzz_virtq: used index %u after %d pushes from %u\n", get_le16(used + 2), popped, used0);
			abort();
		}
		for (int i = 0; i < popped; i++) {
			const uint8_t *e = used + 4 + 8 * ((uint16_t)(used0 + i) % q->size);
			if (get_le32(e) != heads[i] || get_le32(e + 4) != lens[i]) {
				fprintf(stderr, "fuzz_virtq: used entry %d is %u/%u, pushed %u/%u\n", i, get_le32(e),
					get_le32(e + 4), heads[i], lens[i]);
				abort();
			}
		}
		/* One interrupt per push unless the driver asked for none (the used ring may cover that flag). */
		int want = (flags & 1) ? 1 : popped;
		bool flag_covered = q->avail + 2 > q->used && q->used + 4 + 8ULL * q->size > q->avail;
		if (!flag_covered && irqs - irqs0 != (quiet ? 0 : want)) {
			fprintf(stderr, "fuzz_virtq: %d interrupts for %d pushes\n", irqs - irqs0, want);
			abort();
		}
	}
	pthread_mutex_destroy(&q->lock);
	pthread_mutex_destroy(&d.lock);
	return 0;
}
