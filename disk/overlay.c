/*
 * qcow2 overlays for snapshots: an empty qcow2 v3 image over a backing image,
 * so writes land in the overlay and the backing image stays as it was. The
 * layout is the smallest the format allows (QEMU's docs/interop/qcow2.txt):
 *   cluster 0  header, a backing-format extension, the backing file's name
 *   cluster 1  refcount table (its first entry: the block in cluster 2)
 *   cluster 2  refcount block: clusters 0 .. 2 + L1 clusters in use, once
 *   cluster 3+ the L1 table, all zero (nothing allocated yet)
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "qcow2.h"
#include "util.h"

#define CLUSTER_BITS 16
#define CLUSTER (1u << CLUSTER_BITS)
#define L2_ENTRIES (CLUSTER / 8)
#define EXT_BACKING_FORMAT 0xE2792ACAu

static void be32_at(uint8_t *p, uint32_t v) { v = htobe32(v); memcpy(p, &v, 4); }
static void be64_at(uint8_t *p, uint64_t v) { v = htobe64(v); memcpy(p, &v, 8); }

static int pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = pwrite(fd, p, len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= n;
		off += n;
	}
	return 0;
}

int disk_write_overlay(int fd, const char *path, const char *backing, const char *backing_fmt, uint64_t size)
{
	size_t blen = strlen(backing), flen = strlen(backing_fmt);
	if (!blen || blen > 1023 || backing[0] != '/')
		return err_set("%s: the backing image's name must be an absolute path of at most 1023 bytes", path);
	if (size > (1ULL << 50))
		return err_set("%s: %llu bytes is more than an overlay is made for", path, (unsigned long long)size);
	uint64_t per_l1 = (uint64_t)CLUSTER * L2_ENTRIES;	/* guest bytes one L2 table maps */
	uint64_t l1_size = (size + per_l1 - 1) / per_l1;
	uint64_t l1_clusters = (l1_size * 8 + CLUSTER - 1) / CLUSTER;
	if (!l1_clusters)
		l1_clusters = 1;
	uint64_t clusters = 3 + l1_clusters;
	if (clusters > CLUSTER / 2)	/* one refcount block of 16-bit entries covers them */
		return err_set("%s: too large an overlay", path);
	uint8_t *c = xcalloc(3, CLUSTER);
	uint8_t *h = c;
	memcpy(h, "QFI\xfb", 4);
	be32_at(h + 4, 3);			/* version */
	size_t ext = 104, name_at;
	/* Backing format extension, padded to 8 bytes, then the end of extensions. */
	be32_at(h + ext, EXT_BACKING_FORMAT);
	be32_at(h + ext + 4, flen);
	memcpy(h + ext + 8, backing_fmt, flen);
	ext += 8 + ALIGN_UP(flen, 8);
	ext += 8;				/* type 0: end */
	name_at = ext;
	memcpy(h + name_at, backing, blen);
	be64_at(h + 8, name_at);		/* backing_file_offset */
	be32_at(h + 16, blen);			/* backing_file_size */
	be32_at(h + 20, CLUSTER_BITS);
	be64_at(h + 24, size);
	be32_at(h + 32, 0);			/* no encryption */
	be32_at(h + 36, l1_size);
	be64_at(h + 40, 3ULL * CLUSTER);	/* l1_table_offset */
	be64_at(h + 48, 1ULL * CLUSTER);	/* refcount_table_offset */
	be32_at(h + 56, 1);			/* refcount_table_clusters */
	be32_at(h + 60, 0);			/* nb_snapshots */
	be64_at(h + 64, 0);
	be64_at(h + 72, 0);			/* incompatible features */
	be64_at(h + 80, 0);			/* compatible */
	be64_at(h + 88, 0);			/* autoclear */
	be32_at(h + 96, 4);			/* refcount_order: 16-bit */
	be32_at(h + 100, 104);			/* header_length */
	be64_at(c + CLUSTER, 2ULL * CLUSTER);	/* refcount table[0]: the block */
	for (uint64_t i = 0; i < clusters; i++) {
		uint16_t one = htobe16(1);
		memcpy(c + 2 * CLUSTER + 2 * i, &one, 2);
	}
	int r = pwrite_full(fd, c, 3 * CLUSTER, 0);
	free(c);
	if (r < 0 || ftruncate(fd, clusters * CLUSTER) < 0 || fsync(fd) < 0)
		return err_errno("%s: cannot write the overlay", path);
	return 0;
}

struct disk *disk_open_overlay(int fd, const char *path, struct disk *backing)
{
	return qcow2_open_fd(fd, path, false, 0, backing);
}

void disk_discard_overlay(struct disk *ov)
{
	qcow2_take_backing(ov);
	disk_close(ov);
}
