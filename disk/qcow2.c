/*
 * qcow2 images, versions 2 and 3 (QEMU's docs/interop/qcow2.txt): two-level
 * L1/L2 mapping, 16-bit refcounts, deflate-compressed clusters (read; a write
 * moves the cluster to a new normal one), v3 zero clusters, backing images.
 *
 * Metadata is written through, except the entries of new clusters (below). The
 * L1 and refcount tables are held in memory, and a few recently used L2 tables
 * and refcount blocks are cached: every write to the file passes through
 * pwrite_all() or rw_iov(), which copy their bytes into any cached table they
 * overlap, so a cached table is what the file holds plus, in an L2 table, the
 * entries not written back yet (its dirty range). Guest data between the
 * guest's buffers and normal clusters moves with one preadv/pwritev per run of
 * clusters that are contiguous in the file. One mutex serialises each image.
 *
 * Allocation. New clusters go at the end of the file, taken from a
 * reservation: a run of clusters past the end whose refcounts are set to 1 in
 * one write per refcount block, the file extended over them (holes: they read
 * as zeroes) and fdatasync'd before any of them is handed out. Reservations
 * grow from RES_MIN to RES_MAX clusters as writes keep allocating. A run of
 * new clusters in one L2 table takes the guest's bytes in one pwritev; a new
 * cluster's bytes the guest did not write are zero already (a hole), so a
 * 4 KiB write into a new 64 KiB cluster writes 4 KiB.
 *
 * The order on disk: (1) refcounts, durable; (2) a new cluster's data; (3) the
 * L2 entries pointing at it, set in the cached table and written back, one
 * write per table, when the table leaves the cache or at the guest's FLUSH
 * (before its fdatasync); a new L2 table is zeroed and fdatasync'd before (4)
 * the L1 entry points at it; a new refcount block is counted and fdatasync'd
 * before the refcount table points at it. So a kill (or a power loss) at any
 * point leaves no entry pointing at a cluster whose refcount is 0: at worst
 * reserved clusters nothing points at, i.e. leaks, which `qemu-img check -r
 * leaks` reclaims. Writes into new clusters since the last FLUSH may be lost
 * then, as a disk's volatile write cache loses them (virtio-blk offers FLUSH;
 * all acknowledged before a FLUSH is on disk when the FLUSH completes). A
 * FLUSH (and close) also gives the unused rest of the reservation back (and
 * cuts the file when it is at its end), so an image lkvm flushed checks clean.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include "qcow2.h"
#include "util.h"

#define HDR_V2_LEN 72
#define HDR_V3_LEN 104
#define INCOMPAT_DIRTY (1ULL << 0)
#define INCOMPAT_CORRUPT (1ULL << 1)
#define INCOMPAT_DATA_FILE (1ULL << 2)
#define INCOMPAT_COMPRESSION (1ULL << 3)
#define INCOMPAT_EXTL2 (1ULL << 4)
#define OFLAG_COPIED (1ULL << 63)	/* refcount is exactly 1: writable in place */
#define OFLAG_COMPRESSED (1ULL << 62)
#define OFLAG_ZERO 1ULL			/* v3: reads as zeroes */
#define OFFSET_MASK 0x00fffffffffffe00ULL	/* bits 9..55 */
#define MAX_L1_BYTES (32u << 20)
#define MAX_REFTABLE_BYTES (8u << 20)
#define L2_CACHE_BYTES (4u << 20)	/* 64 tables of 64 KiB clusters: 32 GiB of disk mapped */
#define L2_CACHE_MAX 64
#define RB_CACHE_BYTES (1u << 20)	/* refcount blocks of 64 KiB clusters: 16 GiB of file counted */
#define RB_CACHE_MAX 16
#define RES_MIN 16			/* clusters in the first reservation */
#define RES_MAX 1024			/* and at most (64 MiB of 64 KiB clusters) */
#define RES_MAX_BYTES (64u << 20)	/* and at most this much, whatever the cluster size */
#define DIRECT_IOV 64			/* guest segments one preadv/pwritev takes; more go by the bounce buffer */

struct tslot {
	uint64_t off;			/* the table's place in the file; 0: empty */
	uint64_t used;			/* clock of its last use: the oldest goes first */
	uint8_t *tbl;			/* cluster_size bytes as in the file (big-endian entries), or NULL */
	uint32_t dlo, dhi;		/* L2 tables: bytes [dlo, dhi) are newer than the file's (dhi 0: none) */
};

/* A few metadata clusters (L2 tables or refcount blocks) as the file holds them. */
struct tcache {
	struct tslot *s;
	int n;
	uint64_t clock;
};

struct qcow2 {
	pthread_mutex_t lock;
	int version;
	unsigned cluster_bits;
	uint64_t cluster_size;
	unsigned l2_bits;		/* entries per L2 table = 1 << l2_bits */
	uint64_t *l1;			/* host byte order */
	uint32_t l1_size;
	uint64_t l1_offset;
	uint64_t *rt;			/* refcount table, host byte order */
	uint64_t rt_entries;
	uint64_t rt_offset;
	uint64_t file_end;		/* bytes in the file or taken for it: every metadata offset is checked against it */
	uint64_t phys_end;		/* bytes the file really holds (at least file_end once a reservation is made) */
	uint64_t res_next, res_end;	/* the reservation: refcounted clusters not handed out yet */
	uint64_t res_grow;		/* clusters the next reservation takes */
	uint64_t virt_size;		/* header size; the disk shows it rounded down to 512 */
	struct disk *backing;
	char *backing_path;
	uint8_t *cbuf;			/* last decompressed cluster */
	uint64_t cbuf_entry;		/* its L2 entry; 0 when empty */
	uint8_t *zbuf;			/* compressed input */
	uint8_t *work;			/* one cluster of copy-on-write staging */
	uint8_t *bounce;		/* one cluster for reads and writes that cannot go direct */
	struct tcache l2c, rbc;		/* L2 tables, refcount blocks */
};

/*
 * Tests only: after this many more writes to an image file (pwrite, pwritev,
 * ftruncate), the process kills itself with SIGKILL; negative: never.
 */
int qcow2_test_kill_after = -1;

static void test_kill_point(void)
{
	if (qcow2_test_kill_after >= 0 && qcow2_test_kill_after-- == 0)
		raise(SIGKILL);
}

static struct qcow2 *Q(struct disk *d) { return d->priv; }

static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pread(fd, buf, len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		buf = (uint8_t *)buf + n;
		len -= n;
		off += n;
	}
	return 0;
}

/*
 * Keep a cache what the file holds after a write of [off, off + len): copy buf's
 * overlapping bytes into each cached table (buf NULL: the write failed part way, or
 * guest data went there, so forget those tables instead). Only a damaged image has
 * data over its own tables.
 */
static void tcache_wrote(struct qcow2 *q, struct tcache *c, const uint8_t *buf, uint64_t len, uint64_t off)
{
	for (int i = 0; i < c->n; i++) {
		struct tslot *s = &c->s[i];
		if (!s->off || off >= s->off + q->cluster_size || s->off >= off + len)
			continue;
		if (!buf) {
			s->off = 0;	/* with entries not written back: those clusters leak */
			s->dhi = 0;
			continue;
		}
		uint64_t from = MAX(off, s->off), to = MIN(off + len, s->off + q->cluster_size);
		memmove(s->tbl + (from - s->off), buf + (from - off), to - from);	/* a write-back writes from tbl itself */
	}
}

static void l2_cache_wrote(struct qcow2 *q, const uint8_t *buf, uint64_t len, uint64_t off)
{
	tcache_wrote(q, &q->l2c, buf, len, off);
	tcache_wrote(q, &q->rbc, buf, len, off);
}

static void wrote_to(struct qcow2 *q, uint64_t end)
{
	q->file_end = MAX(q->file_end, end);
	q->phys_end = MAX(q->phys_end, end);
}

static int pwrite_all(struct qcow2 *q, int fd, const void *buf, size_t len, uint64_t off)
{
	uint64_t end = off + len;
	const uint8_t *p = buf;
	test_kill_point();
	for (size_t done = 0; done < len;) {
		ssize_t n = pwrite(fd, p + done, len - done, off + done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			l2_cache_wrote(q, NULL, len, off);
			return -errno;
		}
		done += n;
	}
	l2_cache_wrote(q, p, len, off);
	wrote_to(q, end);
	return 0;
}

/*
 * The metadata cluster at off through cache c (off checked by the caller: a cluster
 * inside the file). Bytes past the file's real end read as zeroes.
 */
static int pwrite_all(struct qcow2 *q, int fd, const void *buf, size_t len, uint64_t off);

/* A cached L2 table's new entries into the file. */
static int table_writeback(struct disk *d, struct tslot *s)
{
	if (!s->dhi)
		return 0;
	uint32_t lo = s->dlo, hi = s->dhi;
	s->dhi = 0;
	return pwrite_all(Q(d), d->fd, s->tbl + lo, hi - lo, s->off + lo);
}

static int table_slot(struct disk *d, struct tcache *c, uint64_t off, struct tslot **out)
{
	struct qcow2 *q = Q(d);
	struct tslot *victim = &c->s[0];
	for (int i = 0; i < c->n; i++) {
		struct tslot *s = &c->s[i];
		if (s->off == off) {
			s->used = ++c->clock;
			*out = s;
			return 0;
		}
		if (s->used < victim->used)
			victim = s;
	}
	int r = table_writeback(d, victim);
	if (r)
		return r;
	victim->off = 0;
	if (!victim->tbl && !(victim->tbl = malloc(q->cluster_size)))
		return -ENOMEM;
	uint64_t have = off < q->phys_end ? MIN(q->cluster_size, q->phys_end - off) : 0;
	memset(victim->tbl + have, 0, q->cluster_size - have);
	if ((r = pread_all(d->fd, victim->tbl, have, off)))
		return r;
	victim->off = off;
	victim->used = ++c->clock;
	*out = victim;
	return 0;
}

static int table_get(struct disk *d, struct tcache *c, uint64_t off, const uint8_t **tbl)
{
	struct tslot *s;
	int r = table_slot(d, c, off, &s);
	if (!r)
		*tbl = s->tbl;
	return r;
}

static int l2_table(struct disk *d, uint64_t off, const uint8_t **tbl) { return table_get(d, &Q(d)->l2c, off, tbl); }

static int put_be64_at(struct disk *d, uint64_t off, uint64_t v)
{
	uint64_t be = htobe64(v);
	return pwrite_all(Q(d), d->fd, &be, 8, off);
}

/* A host cluster offset taken from the file: aligned and inside it. */
static bool cluster_ok(struct qcow2 *q, uint64_t off)
{
	return off && !(off & (q->cluster_size - 1)) && off < q->file_end &&
	       q->file_end - off >= 1;
}

/* ---- refcounts ---- */

static int refcount_add(struct disk *d, uint64_t host_off, int delta);

/* Allocate n contiguous clusters at the end of the file; refcounts are set by the caller. */
static uint64_t take_clusters(struct qcow2 *q, uint64_t n)
{
	uint64_t off = ALIGN_UP(q->file_end, q->cluster_size);
	q->file_end = off + n * q->cluster_size;
	return off;
}

static int write_zero_clusters(struct disk *d, uint64_t off, uint64_t n)
{
	struct qcow2 *q = Q(d);
	uint8_t *z = calloc(1, q->cluster_size);
	if (!z)
		return -ENOMEM;
	int r = 0;
	for (uint64_t i = 0; i < n && !r; i++)
		r = pwrite_all(q, d->fd, z, q->cluster_size, off + i * q->cluster_size);
	free(z);
	return r;
}

/* A refcount table with room for index ti: a bigger copy at the end of the file. */
static int grow_reftable(struct disk *d, uint64_t ti)
{
	struct qcow2 *q = Q(d);
	uint64_t entries = MAX(q->rt_entries * 2, ti + 1);
	uint64_t clusters = ALIGN_UP(entries * 8, q->cluster_size) >> q->cluster_bits;
	entries = clusters * q->cluster_size / 8;
	if (entries * 8 > MAX_REFTABLE_BYTES)
		return -ENOSPC;
	uint64_t *nrt = calloc(entries, 8);
	if (!nrt)
		return -ENOMEM;
	memcpy(nrt, q->rt, q->rt_entries * 8);
	uint64_t old_off = q->rt_offset, old_clusters = ALIGN_UP(q->rt_entries * 8, q->cluster_size) >> q->cluster_bits;
	uint64_t noff = take_clusters(q, clusters);
	free(q->rt);
	q->rt = nrt;
	q->rt_entries = entries;
	q->rt_offset = noff;
	/* The new table's own clusters are counted through it (it may add blocks). */
	int r = write_zero_clusters(d, noff, clusters);
	for (uint64_t i = 0; i < clusters && !r; i++)
		r = refcount_add(d, noff + (i << q->cluster_bits), 1);
	if (r)
		return r;
	uint64_t *be = malloc(entries * 8);
	if (!be)
		return -ENOMEM;
	for (uint64_t i = 0; i < entries; i++)
		be[i] = htobe64(q->rt[i]);
	r = pwrite_all(q, d->fd, be, entries * 8, noff);
	free(be);
	if (r || fdatasync(d->fd) < 0)
		return r ? r : -errno;
	/* Switch the header to the new table, then release the old one. */
	uint8_t h[12];
	uint64_t o = htobe64(noff);
	uint32_t c = htobe32(clusters);
	memcpy(h, &o, 8);
	memcpy(h + 8, &c, 4);
	if ((r = pwrite_all(q, d->fd, h, 12, 48)) || fdatasync(d->fd) < 0)
		return r ? r : -errno;
	for (uint64_t i = 0; i < old_clusters && !r; i++)
		r = refcount_add(d, old_off + (i << q->cluster_bits), -1);
	return r;
}

/*
 * Add delta to the refcounts of the count clusters from host_off: one read (through
 * the refcount block cache) and one write per refcount block they fall in.
 */
static int refcount_range(struct disk *d, uint64_t host_off, uint64_t count, int delta)
{
	struct qcow2 *q = Q(d);
	unsigned per_block_bits = q->cluster_bits - 1;	/* 16-bit entries */
	uint64_t idx = host_off >> q->cluster_bits;
	int r;
	while (count) {
		uint64_t ti = idx >> per_block_bits, bi = idx & ((1ULL << per_block_bits) - 1);
		uint64_t k = MIN(count, (1ULL << per_block_bits) - bi);
		if (ti >= q->rt_entries && (r = grow_reftable(d, ti)))
			return r;
		uint64_t blk = q->rt[ti] & OFFSET_MASK;
		if (!blk) {
			if (delta < 0)
				return -EIO;
			/*
			 * A new refcount block, counted and durable before the table points
			 * at it: by its own entry when it covers itself, else first through
			 * the block that covers it.
			 */
			blk = take_clusters(q, 1);
			uint64_t self = blk >> q->cluster_bits;
			if (self >> per_block_bits == ti) {
				uint8_t *z = calloc(1, q->cluster_size);
				if (!z)
					return -ENOMEM;
				uint16_t one = htobe16(1);
				memcpy(z + (self & ((1ULL << per_block_bits) - 1)) * 2, &one, 2);
				r = pwrite_all(q, d->fd, z, q->cluster_size, blk);
				free(z);
			} else if (!(r = write_zero_clusters(d, blk, 1))) {
				r = refcount_range(d, blk, 1, 1);
			}
			if (r || (r = fdatasync(d->fd) < 0 ? -errno : 0))
				return r;
			q->rt[ti] = blk;
			if ((r = put_be64_at(d, q->rt_offset + ti * 8, blk)))
				return r;
		} else if (!cluster_ok(q, blk)) {
			return -EIO;
		}
		const uint8_t *tbl;
		if ((r = table_get(d, &q->rbc, blk, &tbl)))
			return r;
		uint16_t v[512];
		for (uint64_t done = 0; done < k;) {
			uint64_t m = MIN(k - done, ARRAY_SIZE(v));
			for (uint64_t i = 0; i < m; i++) {
				uint16_t be;
				memcpy(&be, tbl + (bi + done + i) * 2, 2);
				int64_t n = (int64_t)be16toh(be) + delta;
				if (n < 0 || n > 0xffff)
					return -EIO;
				v[i] = htobe16(n);
			}
			if ((r = pwrite_all(q, d->fd, v, m * 2, blk + (bi + done) * 2)))
				return r;
			done += m;
		}
		idx += k;
		count -= k;
	}
	return 0;
}

static int refcount_add(struct disk *d, uint64_t host_off, int delta) { return refcount_range(d, host_off, 1, delta); }

/* The file as long as file_end says: clusters taken but not written read as zeroes. */
static int extend_file(struct disk *d)
{
	struct qcow2 *q = Q(d);
	if (q->phys_end >= q->file_end)
		return 0;
	test_kill_point();
	if (ftruncate(d->fd, q->file_end) < 0)
		return -errno;
	q->phys_end = q->file_end;
	return 0;
}

/*
 * A new reservation of at least want clusters at the end of the file: refcounts
 * 1, the file extended over them, durable before any is used (see the top).
 */
static int reserve(struct disk *d, uint64_t want)
{
	struct qcow2 *q = Q(d);
	uint64_t n = MAX(want, MIN(q->res_grow, RES_MAX_BYTES >> q->cluster_bits));
	uint64_t start = take_clusters(q, n);
	int r = refcount_range(d, start, n, 1);
	if (!r)
		r = extend_file(d);
	if (!r && fdatasync(d->fd) < 0)
		r = -errno;
	if (r)
		return r;	/* the clusters stay taken: leaked at worst */
	q->res_next = start;
	q->res_end = start + (n << q->cluster_bits);
	q->res_grow = MIN(q->res_grow * 2, RES_MAX);
	return 0;
}

/*
 * Up to want new clusters that follow one another in the file, refcount 1, zeroes:
 * the first at *off, *got of them (at least one).
 */
static int alloc_clusters(struct disk *d, uint64_t want, uint64_t *off, uint64_t *got)
{
	struct qcow2 *q = Q(d);
	int r;
	if (q->res_next == q->res_end && (r = reserve(d, want)))
		return r;
	*got = MIN(want, (q->res_end - q->res_next) >> q->cluster_bits);
	*off = q->res_next;
	q->res_next += *got << q->cluster_bits;
	return 0;
}

static int alloc_cluster(struct disk *d, uint64_t *off)
{
	uint64_t got;
	return alloc_clusters(d, 1, off, &got);
}

/*
 * Everything written so far durable (a guest's FLUSH, and close), and the unused
 * rest of the reservation given back first, so that an image lkvm flushed shows
 * no leaks: its refcounts go to 0 with the same fdatasync, then, when it is at the
 * end of the file, the file is cut before it (a power loss before that cut is
 * durable leaves free clusters at the end, not leaks).
 */
static int sync_image(struct disk *d)
{
	struct qcow2 *q = Q(d);
	uint64_t keep = q->res_next;
	bool cut = false;
	int r = 0;
	for (int i = 0; i < q->l2c.n && !r; i++)
		r = table_writeback(d, &q->l2c.s[i]);
	if (!r && q->res_next < q->res_end) {
		r = refcount_range(d, q->res_next, (q->res_end - q->res_next) >> q->cluster_bits, -1);
		cut = !r && q->res_end == q->file_end;
		q->res_next = q->res_end = 0;
	}
	if (fdatasync(d->fd) < 0 && !r)
		r = -errno;
	if (!r && cut) {
		test_kill_point();
		if (ftruncate(d->fd, keep) == 0)
			q->file_end = q->phys_end = keep;
	}
	return r;
}

/* ---- mapping ---- */

/*
 * The L2 entry for guest offset vo, and where it lives (0: no L2 table).
 * With alloc, a missing L2 table is created.
 */
static int l2_lookup(struct disk *d, uint64_t vo, bool alloc, uint64_t *entry, uint64_t *entry_off)
{
	struct qcow2 *q = Q(d);
	uint64_t l1i = vo >> (q->cluster_bits + q->l2_bits);
	uint64_t l2i = (vo >> q->cluster_bits) & ((1ULL << q->l2_bits) - 1);
	*entry = 0;
	*entry_off = 0;
	if (l1i >= q->l1_size)
		return -EIO;
	uint64_t l2 = q->l1[l1i] & OFFSET_MASK;
	int r;
	if (!l2) {
		if (!alloc)
			return 0;
		/* Zeroed and durable before the L1 entry points at it (see the top). */
		if ((r = alloc_cluster(d, &l2)) || (r = write_zero_clusters(d, l2, 1)))
			return r;
		if (fdatasync(d->fd) < 0)
			return -errno;
		q->l1[l1i] = l2 | OFLAG_COPIED;
		if ((r = put_be64_at(d, q->l1_offset + l1i * 8, q->l1[l1i])))
			return r;
	} else if (!cluster_ok(q, l2) || q->file_end - l2 < q->cluster_size) {
		return -EIO;
	}
	const uint8_t *tbl;
	if ((r = l2_table(d, l2, &tbl)))
		return r;
	uint64_t be;
	memcpy(&be, tbl + l2i * 8, 8);
	*entry = be64toh(be);
	*entry_off = l2 + l2i * 8;
	return 0;
}

/* Where a compressed cluster's bytes are: offset and length. */
static void compressed_span(struct qcow2 *q, uint64_t e, uint64_t *off, uint64_t *len)
{
	unsigned x = 62 - (q->cluster_bits - 8);
	*off = e & ((1ULL << x) - 1);
	uint64_t sectors = ((e & ~OFLAG_COPIED & ~OFLAG_COMPRESSED) >> x) + 1;
	*len = sectors * 512 - (*off & 511);
}

static int read_compressed(struct disk *d, uint64_t e)
{
	struct qcow2 *q = Q(d);
	if (q->cbuf_entry == e)
		return 0;
	uint64_t off, len;
	compressed_span(q, e, &off, &len);
	if (off >= q->file_end)
		return -EIO;
	len = MIN(len, q->file_end - off);	/* the last one may end early */
	len = MIN(len, 2 * q->cluster_size);
	int r = pread_all(d->fd, q->zbuf, len, off);
	if (r)
		return r;
	z_stream zs = { 0 };
	if (inflateInit2(&zs, -12) != Z_OK)
		return -ENOMEM;
	zs.next_in = q->zbuf;
	zs.avail_in = len;
	zs.next_out = q->cbuf;
	zs.avail_out = q->cluster_size;
	int zr = inflate(&zs, Z_FINISH);
	bool full = zs.avail_out == 0;
	inflateEnd(&zs);
	if ((zr != Z_STREAM_END && zr != Z_BUF_ERROR && zr != Z_OK) || !full) {
		q->cbuf_entry = 0;
		return -EIO;
	}
	q->cbuf_entry = e;
	return 0;
}

/* Guest bytes [vo, vo+len) of one cluster through the backing image (zeroes past its end). */
static int read_backing(struct disk *d, uint64_t vo, uint8_t *buf, uint64_t len)
{
	struct qcow2 *q = Q(d);
	memset(buf, 0, len);
	if (!q->backing || vo >= q->backing->size)
		return 0;
	uint64_t n = MIN(len, q->backing->size - vo);
	/* The backing disk works in whole sectors. */
	uint64_t start = vo & ~511ULL, end = ALIGN_UP(vo + n, 512);
	if (end > q->backing->size)
		end = q->backing->size;
	if (start == vo && end == vo + n) {
		struct iovec v = { buf, n };
		return q->backing->ops->readv(q->backing, vo, &v, 1);
	}
	uint8_t *tmp = malloc(end - start);
	if (!tmp)
		return -ENOMEM;
	struct iovec v = { tmp, end - start };
	int r = q->backing->ops->readv(q->backing, start, &v, 1);
	if (!r)
		memcpy(buf, tmp + (vo - start), MIN(n, end - vo));
	free(tmp);
	return r;
}

/* Read within one cluster into a flat buffer. */
static int read_chunk(struct disk *d, uint64_t vo, uint8_t *buf, uint64_t len)
{
	struct qcow2 *q = Q(d);
	uint64_t e, eo;
	int r = l2_lookup(d, vo, false, &e, &eo);
	if (r)
		return r;
	uint64_t in = vo & (q->cluster_size - 1);
	if (e & OFLAG_COMPRESSED) {
		if ((r = read_compressed(d, e)))
			return r;
		memcpy(buf, q->cbuf + in, len);
		return 0;
	}
	if (q->version >= 3 && (e & OFLAG_ZERO)) {
		memset(buf, 0, len);
		return 0;
	}
	uint64_t host = e & OFFSET_MASK;
	if (!host)
		return read_backing(d, vo, buf, len);
	if (!cluster_ok(q, host))
		return -EIO;
	/* A cluster the file ends inside reads as zeroes past the end (qemu-img does that). */
	memset(buf, 0, len);
	if (host + in >= q->file_end)
		return 0;
	return pread_all(d->fd, buf, MIN(len, q->file_end - host - in), host + in);
}

/* Write within one cluster from a flat buffer. */
static int write_chunk(struct disk *d, uint64_t vo, const uint8_t *buf, uint64_t len)
{
	struct qcow2 *q = Q(d);
	uint64_t e, eo;
	int r = l2_lookup(d, vo, true, &e, &eo);
	if (r)
		return r;
	uint64_t in = vo & (q->cluster_size - 1), cvo = vo - in;
	uint64_t host = e & OFFSET_MASK;
	bool compressed = e & OFLAG_COMPRESSED, zero = q->version >= 3 && !compressed && (e & OFLAG_ZERO);
	if (!compressed && !zero && host) {
		if (!cluster_ok(q, host))
			return -EIO;
		/* Without snapshots a normal cluster has refcount 1: write in place. */
		return pwrite_all(q, d->fd, buf, len, host + in);
	}
	/* Copy-on-write: the whole new cluster, then the entry that points at it. */
	if (len < q->cluster_size) {
		if (compressed) {
			if ((r = read_compressed(d, e)))
				return r;
			memcpy(q->work, q->cbuf, q->cluster_size);
		} else if (zero) {
			memset(q->work, 0, q->cluster_size);
		} else if ((r = read_backing(d, cvo, q->work, q->cluster_size))) {
			return r;
		}
	}
	memcpy(q->work + in, buf, len);
	uint64_t nh;
	if (zero && host && cluster_ok(q, host)) {
		nh = host;	/* a preallocated zero cluster keeps its place */
	} else if ((r = alloc_cluster(d, &nh))) {
		return r;
	}
	if ((r = pwrite_all(q, d->fd, q->work, q->cluster_size, nh)))
		return r;
	if ((r = put_be64_at(d, eo, nh | OFLAG_COPIED)))
		return r;
	if (compressed) {
		/* Release every host cluster the compressed bytes touched. */
		uint64_t off, clen;
		compressed_span(q, e, &off, &clen);
		uint64_t first = off & ~(q->cluster_size - 1), last = (off + clen - 1) & ~(q->cluster_size - 1);
		for (uint64_t c = first; c <= last && !r; c += q->cluster_size)
			r = refcount_add(d, c, -1);
		q->cbuf_entry = 0;
	}
	return r;
}

/*
 * Where guest bytes [vo, vo + n) of one cluster can move to or from directly: a
 * normal cluster (written in place, as write_chunk() does; read only inside the
 * file). 0 when they cannot: unallocated, zero, compressed, damaged, or an error,
 * which the cluster-by-cluster path then meets and reports.
 */
static uint64_t direct_at(struct disk *d, uint64_t vo, uint64_t n, bool write)
{
	struct qcow2 *q = Q(d);
	uint64_t e, eo;
	if (l2_lookup(d, vo, false, &e, &eo) || (e & OFLAG_COMPRESSED) || (q->version >= 3 && (e & OFLAG_ZERO)))
		return 0;
	uint64_t host = e & OFFSET_MASK, at = host + (vo & (q->cluster_size - 1));
	if (!cluster_ok(q, host) || (!write && (at >= q->file_end || q->file_end - at < n)))
		return 0;
	return at;
}

/* The bytes from vo (at most len) in normal clusters one after another in the file, from *at on. */
static uint64_t direct_run(struct disk *d, uint64_t vo, uint64_t len, bool write, uint64_t *at)
{
	struct qcow2 *q = Q(d);
	uint64_t run = MIN(len, q->cluster_size - (vo & (q->cluster_size - 1)));
	if (!(*at = direct_at(d, vo, run, write)))
		return 0;
	while (run < len) {
		uint64_t m = MIN(len - run, q->cluster_size);
		if (direct_at(d, vo + run, m, write) != *at + run)
			break;
		run += m;
	}
	return run;
}

/* Up to max segments of iov from (vi, vo) covering at most len bytes; the bytes they cover. */
static uint64_t iov_slice(const struct iovec *iov, int iovcnt, int vi, size_t vo, uint64_t len,
			  struct iovec *out, int max, int *cnt)
{
	uint64_t got = 0;
	*cnt = 0;
	for (; vi < iovcnt && got < len && *cnt < max; vi++, vo = 0) {
		size_t k = MIN(len - got, iov[vi].iov_len - vo);
		if (!k)
			continue;
		out[(*cnt)++] = (struct iovec){ (uint8_t *)iov[vi].iov_base + vo, k };
		got += k;
	}
	return got;
}

/* Move the position (vi, vo) in iov past n bytes. */
static void iov_skip(const struct iovec *iov, int *vi, size_t *vo, uint64_t n)
{
	while (n) {
		size_t step = MIN(n, iov[*vi].iov_len - *vo);
		n -= step;
		if ((*vo += step) == iov[*vi].iov_len)
			(*vi)++, *vo = 0;
	}
}

/* preadv/pwritev of all of v (which it consumes) at off; a short read is -EIO. */
static int rw_iov(struct qcow2 *q, int fd, struct iovec *v, int cnt, uint64_t off, bool write)
{
	uint64_t start = off;
	int r = 0;
	if (write)
		test_kill_point();
	while (cnt) {
		ssize_t n = write ? pwritev(fd, v, cnt, off) : preadv(fd, v, cnt, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			break;
		}
		off += n;
		while (cnt && (size_t)n >= v->iov_len) {
			n -= v->iov_len;
			v++, cnt--;
		}
		if (cnt) {
			v->iov_base = (uint8_t *)v->iov_base + n;
			v->iov_len -= n;
		}
	}
	if (write) {
		l2_cache_wrote(q, NULL, off - start, start);	/* only a damaged image has data over its tables */
		wrote_to(q, off);
	}
	return r;
}

/* An L2 entry a write may replace with a new cluster of zeroes and the guest's bytes. */
static bool fresh_ok(struct qcow2 *q, uint64_t e)
{
	return (e == 0 && !q->backing) || (q->version >= 3 && e == OFLAG_ZERO);
}

/*
 * A write starting at guest offset vo (total bytes left) into clusters that can be
 * new (fresh_ok): new clusters for the run of such clusters in vo's L2 table, the
 * guest's bytes into them with one pwritev, then their L2 entries in one write.
 * *done: bytes written; 0 when vo's cluster is not one of those (nothing done).
 */
static int write_new(struct disk *d, uint64_t vo, const struct iovec *iov, int iovcnt, int vi, size_t vio,
		     uint64_t total, uint64_t *done)
{
	struct qcow2 *q = Q(d);
	uint64_t e, eo;
	*done = 0;
	int r = l2_lookup(d, vo, true, &e, &eo);
	if (r || !fresh_ok(q, e))
		return r;
	uint64_t in = vo & (q->cluster_size - 1), per = 1ULL << q->l2_bits;
	uint64_t l2 = eo & ~(q->cluster_size - 1), l2i = (eo - l2) / 8;
	uint64_t want = MIN(ALIGN_UP(in + total, q->cluster_size) >> q->cluster_bits, per - l2i);
	const uint8_t *tbl;
	if ((r = l2_table(d, l2, &tbl)))
		return r;
	uint64_t k = 1;
	for (; k < want; k++) {
		uint64_t be;
		memcpy(&be, tbl + (l2i + k) * 8, 8);
		if (!fresh_ok(q, be64toh(be)))
			break;
	}
	uint64_t host, got;
	if ((r = alloc_clusters(d, k, &host, &got)))
		return r;
	/* The data first: nothing points at these clusters yet. */
	struct iovec v[DIRECT_IOV];
	int cnt;
	uint64_t n = iov_slice(iov, iovcnt, vi, vio, MIN(total, (got << q->cluster_bits) - in), v, DIRECT_IOV, &cnt);
	if ((r = rw_iov(q, d->fd, v, cnt, host + in, true)))
		return r;
	/*
	 * Then the entries, in the cached table only: written back when the table
	 * leaves the cache and at a flush (see the top). Bytes of these clusters past
	 * n are zeroes, or the next write's.
	 */
	struct tslot *sl;
	if ((r = table_slot(d, &q->l2c, l2, &sl)))
		return r;
	for (uint64_t i = 0; i < got; i++) {
		uint64_t be = htobe64((host + (i << q->cluster_bits)) | OFLAG_COPIED);
		memcpy(sl->tbl + (l2i + i) * 8, &be, 8);
	}
	uint32_t lo = l2i * 8, hi = (l2i + got) * 8;
	sl->dlo = sl->dhi ? MIN(sl->dlo, lo) : lo;
	sl->dhi = MAX(sl->dhi, hi);
	*done = n;
	return 0;
}

/*
 * Guest bytes in cluster-sized chunks: runs of normal clusters that follow one
 * another in the file go straight between the guest's buffers and the file, one
 * preadv/pwritev each; so do runs of new clusters (write_new); anything else through
 * the bounce buffer, a cluster at a time.
 */
static int qcow2_rw(struct disk *d, uint64_t off, const struct iovec *iov, int iovcnt, bool write)
{
	struct qcow2 *q = Q(d);
	uint64_t total = 0;
	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	if (off > d->size || total > d->size - off)
		return -EIO;
	if (write && d->ro)
		return -EROFS;
	uint8_t *bounce = q->bounce;
	int r = 0, vi = 0;
	size_t vo = 0;	/* offset inside iov[vi] */
	pthread_mutex_lock(&q->lock);
	while (total && !r) {
		uint64_t n = MIN(total, q->cluster_size - (off & (q->cluster_size - 1)));
		uint64_t at, run = direct_run(d, off, total, write, &at);
		if (run) {
			struct iovec v[DIRECT_IOV];
			int cnt;
			run = iov_slice(iov, iovcnt, vi, vo, run, v, DIRECT_IOV, &cnt);
			if ((r = rw_iov(q, d->fd, v, cnt, at, write)))
				break;
			iov_skip(iov, &vi, &vo, run);
			off += run;
			total -= run;
			continue;
		}
		uint64_t moved = 0;
		if (write && (r = write_new(d, off, iov, iovcnt, vi, vo, total, &moved)))
			break;
		if (moved) {
			iov_skip(iov, &vi, &vo, moved);
			off += moved;
			total -= moved;
			continue;
		}
		if (write) {
			for (uint64_t got = 0; got < n;) {
				size_t k = MIN(n - got, iov[vi].iov_len - vo);
				memcpy(bounce + got, (uint8_t *)iov[vi].iov_base + vo, k);
				got += k;
				if ((vo += k) == iov[vi].iov_len)
					vi++, vo = 0;
			}
			r = write_chunk(d, off, bounce, n);
		} else {
			r = read_chunk(d, off, bounce, n);
			for (uint64_t put = 0; put < n && !r;) {
				size_t k = MIN(n - put, iov[vi].iov_len - vo);
				memcpy((uint8_t *)iov[vi].iov_base + vo, bounce + put, k);
				put += k;
				if ((vo += k) == iov[vi].iov_len)
					vi++, vo = 0;
			}
		}
		off += n;
		total -= n;
	}
	pthread_mutex_unlock(&q->lock);
	return r;
}

/* What qcow2_rw() would read directly, for virtio-blk's engine. */
static uint64_t qcow2_map_read(struct disk *d, uint64_t off, uint64_t len, uint64_t *at)
{
	struct qcow2 *q = Q(d);
	if (!len || off > d->size || len > d->size - off)
		return 0;
	pthread_mutex_lock(&q->lock);
	uint64_t run = direct_run(d, off, len, false, at);
	pthread_mutex_unlock(&q->lock);
	return run;
}

static int qcow2_readv(struct disk *d, uint64_t off, const struct iovec *iov, int n) { return qcow2_rw(d, off, iov, n, false); }
static int qcow2_writev(struct disk *d, uint64_t off, const struct iovec *iov, int n) { return qcow2_rw(d, off, iov, n, true); }

static int qcow2_flush(struct disk *d)
{
	if (d->ro)
		return 0;
	struct qcow2 *q = Q(d);
	pthread_mutex_lock(&q->lock);
	int r = sync_image(d);
	pthread_mutex_unlock(&q->lock);
	return r;
}

static void qcow2_free(struct qcow2 *q)
{
	if (!q)
		return;
	if (q->backing)
		disk_close(q->backing);
	free(q->backing_path);
	free(q->l1);
	free(q->rt);
	free(q->cbuf);
	free(q->zbuf);
	free(q->work);
	free(q->bounce);
	for (struct tcache *c = &q->l2c; c <= &q->rbc; c++) {
		for (int i = 0; c->s && i < c->n; i++)
			free(c->s[i].tbl);
		free(c->s);
	}
	pthread_mutex_destroy(&q->lock);
	free(q);
}

static void qcow2_close(struct disk *d)
{
	if (!d->ro) {
		pthread_mutex_lock(&Q(d)->lock);
		sync_image(d);
		pthread_mutex_unlock(&Q(d)->lock);
	}
	qcow2_free(Q(d));
	close(d->fd);
}

static const struct disk_ops qcow2_ops = {
	.readv = qcow2_readv, .writev = qcow2_writev, .flush = qcow2_flush, .close = qcow2_close,
	.map_read = qcow2_map_read,
};

/* ---- open ---- */

static uint64_t hdr64(const uint8_t *h, int off) { uint64_t v; memcpy(&v, h + off, 8); return be64toh(v); }
static uint32_t hdr32(const uint8_t *h, int off) { uint32_t v; memcpy(&v, h + off, 4); return be32toh(v); }

static int load_table(int fd, uint64_t off, uint64_t entries, uint64_t **out)
{
	uint64_t *t = calloc(entries ? entries : 1, 8);
	if (!t)
		return -ENOMEM;
	int r = pread_all(fd, t, entries * 8, off);
	for (uint64_t i = 0; i < entries; i++)
		t[i] = be64toh(t[i]);
	if (r)
		free(t);
	else
		*out = t;
	return r;
}

/* Check the header and load the tables; err names what is wrong. backing: already open, or NULL. */
static int qcow2_setup(struct disk *d, struct qcow2 *q, int depth, struct disk *backing)
{
	const char *p = d->path;
	struct stat st;
	if (fstat(d->fd, &st) < 0)
		return err_errno("%s", p);
	q->file_end = q->phys_end = st.st_size;
	q->res_grow = RES_MIN;
	uint8_t h[HDR_V3_LEN] = { 0 };
	if (q->file_end < HDR_V2_LEN || pread_all(d->fd, h, MIN(q->file_end, (uint64_t)HDR_V3_LEN), 0))
		return err_set("%s: qcow2 header is truncated", p);
	q->version = hdr32(h, 4);
	if (q->version != 2 && q->version != 3)
		return err_set("%s: qcow2 version %d is not supported (2 and 3 are)", p, q->version);
	q->cluster_bits = hdr32(h, 20);
	if (q->cluster_bits < 9 || q->cluster_bits > 21)
		return err_set("%s: qcow2 cluster_bits %u outside 9..21", p, q->cluster_bits);
	q->cluster_size = 1ULL << q->cluster_bits;
	q->l2_bits = q->cluster_bits - 3;
	if (hdr32(h, 32))
		return err_set("%s: encrypted qcow2 images are not supported", p);
	uint64_t incompat = 0;
	if (q->version == 3) {
		if (q->file_end < HDR_V3_LEN)
			return err_set("%s: qcow2 v3 header is truncated", p);
		uint32_t hlen = hdr32(h, 100);
		if (hlen < HDR_V3_LEN || hlen > q->cluster_size)
			return err_set("%s: qcow2 header_length %u is invalid", p, hlen);
		incompat = hdr64(h, 72);
		uint32_t order = hdr32(h, 96);
		if (order != 4)
			return err_set("%s: qcow2 refcount_order %u is not supported (only 16-bit refcounts)", p, order);
		if (incompat & INCOMPAT_CORRUPT)
			return err_set("%s: qcow2 image is marked corrupt (incompatible bit 1); repair it with qemu-img check -r all", p);
		if (incompat & INCOMPAT_DATA_FILE)
			return err_set("%s: qcow2 external data file (incompatible bit 2) is not supported", p);
		if (incompat & INCOMPAT_COMPRESSION)
			return err_set("%s: qcow2 compression type other than zlib (incompatible bit 3) is not supported", p);
		if (incompat & INCOMPAT_EXTL2)
			return err_set("%s: qcow2 extended L2 entries (incompatible bit 4) are not supported", p);
		for (int b = 5; b < 64; b++)
			if (incompat & (1ULL << b))
				return err_set("%s: unknown qcow2 incompatible feature bit %d", p, b);
		if ((incompat & INCOMPAT_DIRTY) && !d->ro)
			return err_set("%s: qcow2 image is dirty (incompatible bit 0, lazy refcounts); run qemu-img check -r all first or open it ro", p);
	}
	q->virt_size = hdr64(h, 24);
	q->l1_size = hdr32(h, 36);
	q->l1_offset = hdr64(h, 40);
	q->rt_offset = hdr64(h, 48);
	uint32_t rt_clusters = hdr32(h, 56);
	uint32_t nb_snapshots = hdr32(h, 60);
	uint64_t per_l1 = q->cluster_size << q->l2_bits;	/* guest bytes one L2 table maps */
	if (q->virt_size > (1ULL << 56) || (q->virt_size + per_l1 - 1) / per_l1 > q->l1_size)
		return err_set("%s: qcow2 L1 table (%u entries) too small for %llu bytes", p, q->l1_size,
			       (unsigned long long)q->virt_size);
	if ((uint64_t)q->l1_size * 8 > MAX_L1_BYTES)
		return err_set("%s: qcow2 L1 table of %u entries is too big", p, q->l1_size);
	if ((q->l1_offset & (q->cluster_size - 1)) || q->l1_offset >= q->file_end ||
	    q->file_end - q->l1_offset < (uint64_t)q->l1_size * 8)
		return err_set("%s: qcow2 L1 table offset 0x%llx is misaligned or outside the file", p,
			       (unsigned long long)q->l1_offset);
	q->rt_entries = (uint64_t)rt_clusters * q->cluster_size / 8;
	if (!rt_clusters || (uint64_t)rt_clusters * q->cluster_size > MAX_REFTABLE_BYTES ||
	    (q->rt_offset & (q->cluster_size - 1)) || q->rt_offset >= q->file_end ||
	    q->file_end - q->rt_offset < q->rt_entries * 8)
		return err_set("%s: qcow2 refcount table is misaligned, empty or outside the file", p);
	if (nb_snapshots && !d->ro)
		return err_set("%s: qcow2 image has %u internal snapshots; lkvm opens it only read-only", p, nb_snapshots);
	if (load_table(d->fd, q->l1_offset, q->l1_size, &q->l1) || load_table(d->fd, q->rt_offset, q->rt_entries, &q->rt))
		return err_set("%s: cannot read the qcow2 tables", p);
	q->cbuf = malloc(q->cluster_size);
	q->zbuf = malloc(2 * q->cluster_size);
	q->work = malloc(q->cluster_size);
	q->bounce = malloc(q->cluster_size);
	q->l2c.n = MIN(MAX(L2_CACHE_BYTES >> q->cluster_bits, 2u), L2_CACHE_MAX);
	q->l2c.s = calloc(q->l2c.n, sizeof(*q->l2c.s));	/* tables allocated as they are first used */
	q->rbc.n = MIN(MAX(RB_CACHE_BYTES >> q->cluster_bits, 2u), RB_CACHE_MAX);
	q->rbc.s = calloc(q->rbc.n, sizeof(*q->rbc.s));
	if (!q->cbuf || !q->zbuf || !q->work || !q->bounce || !q->l2c.s || !q->rbc.s)
		return err_set("%s: out of memory", p);

	uint64_t bo = hdr64(h, 8);
	uint32_t blen = hdr32(h, 16);
	if (bo) {
		if (!blen || blen > 1023 || bo >= q->file_end || q->file_end - bo < blen)
			return err_set("%s: qcow2 backing file name is outside the file or too long", p);
		char name[1024];
		if (pread_all(d->fd, name, blen, bo))
			return err_set("%s: cannot read the backing file name", p);
		name[blen] = 0;
		if (name[0] == '/') {
			q->backing_path = xstrdup(name);
		} else {
			/* Relative names are relative to the image's directory. */
			char *copy = xstrdup(p);
			const char *dir = dirname(copy);
			q->backing_path = xcalloc(1, strlen(dir) + blen + 2);
			sprintf(q->backing_path, "%s/%s", dir, name);
			free(copy);
		}
		q->backing = backing ? backing : disk_open_backing(q->backing_path, depth + 1);
		if (!q->backing)
			return -1;	/* err names the backing file */
	} else if (backing) {
		return err_set("%s: the qcow2 image names no backing file", p);
	}
	if (q->version == 3 && !d->ro && hdr64(h, 88)) {
		/* Autoclear bits we do not know must be cleared by a writer. */
		uint64_t zero = 0;
		if (pwrite_all(q, d->fd, &zero, 8, 88))
			return err_errno("%s: clearing autoclear features", p);
	}
	return 0;
}

struct disk *qcow2_open(const char *path, bool ro, int depth)
{
	int fd = open(path, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (fd < 0) {
		err_errno("%s", path);
		return NULL;
	}
	return qcow2_open_fd(fd, path, ro, depth, NULL);
}

struct disk *qcow2_open_fd(int fd, const char *path, bool ro, int depth, struct disk *backing)
{
	struct disk *d = xcalloc(1, sizeof(*d));
	struct qcow2 *q = xcalloc(1, sizeof(*q));
	pthread_mutex_init(&q->lock, NULL);
	d->ops = &qcow2_ops;
	d->path = path;
	d->ro = ro;
	d->fd = fd;
	d->priv = q;
	if (qcow2_setup(d, q, depth, backing)) {
		if (q->backing == backing)
			q->backing = NULL;	/* the caller's still, on failure */
		qcow2_free(q);
		close(fd);
		free(d);
		return NULL;
	}
	d->size = q->virt_size & ~511ULL;
	if (q->virt_size % 512)
		pr_warn("%s: size is not a multiple of 512; the last %llu bytes are not visible", path,
			(unsigned long long)(q->virt_size % 512));
	return d;
}

struct disk *qcow2_take_backing(struct disk *d)
{
	struct qcow2 *q = Q(d);
	struct disk *b = q->backing;
	q->backing = NULL;
	return b;
}
