/* Disk images in snapshots: their identity (size, mtime, a CRC of the head) and raw copies. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include "snapshot.h"
#include "util.h"
#include "vm_snapshot.h"

int disk_identity_fd(int fd, const char *path, struct disk_identity *id)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return err_errno("%s", path);
	uint8_t *buf = xcalloc(1, SNAPSHOT_IDENTITY_BYTES);
	ssize_t n = pread(fd, buf, SNAPSHOT_IDENTITY_BYTES, 0);
	if (n < 0) {
		free(buf);
		return err_errno("%s: cannot read", path);
	}
	memset(id, 0, sizeof(*id));
	id->size = st.st_size;
	id->mtime_sec = st.st_mtim.tv_sec;
	id->mtime_nsec = st.st_mtim.tv_nsec;
	id->crc = crc32(0, buf, n);
	free(buf);
	return 0;
}

int disk_copy_fd(int src, int dst, const char *dst_path)
{
	struct stat st;
	if (fstat(src, &st) < 0 || ftruncate(dst, st.st_size) < 0)
		return err_errno("%s", dst_path);
	off_t end = st.st_size, off = 0;
	while (off < end) {
		/* Data extents only: a sparse image stays sparse in the copy. */
		off_t data = lseek(src, off, SEEK_DATA);
		if (data < 0) {
			if (errno == ENXIO)
				break;	/* only a hole is left */
			data = off;	/* no SEEK_DATA here: copy everything */
		}
		off_t hole = lseek(src, data, SEEK_HOLE);
		if (hole < 0)
			hole = end;
		off_t in = data, out = data;
		while (in < hole) {
			ssize_t k = copy_file_range(src, &in, dst, &out, hole - in, 0);
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0)
				return err_errno("%s: copying the disk", dst_path);
		}
		off = hole;
	}
	if (fsync(dst) < 0)
		return err_errno("%s", dst_path);
	return 0;
}

int snapshot_read_disks(struct snap_reader *r, struct snapshot_disk *d, int *n)
{
	if (snap_open(r, "disks", 1) < 0)
		return -1;
	uint32_t k = snap_get_u32(r);
	if (k > SNAPSHOT_MAX_DISKS)
		return snap_bad(r, "%u disks", k);
	for (uint32_t i = 0; i < k; i++) {
		snap_get_str(r, d[i].base, sizeof(d[i].base));
		snap_get_str(r, d[i].format, sizeof(d[i].format));
		d[i].ro = snap_get_bool(r);
		d[i].virtual_size = snap_get_u64(r);
		d[i].id.size = snap_get_u64(r);
		d[i].id.mtime_sec = snap_get_i64(r);
		d[i].id.mtime_nsec = snap_get_i64(r);
		d[i].id.crc = snap_get_u32(r);
		if (snap_failed(r))
			break;
		if (d[i].base[0] != '/' || (strcmp(d[i].format, "qcow2") && strcmp(d[i].format, "raw")))
			return snap_bad(r, "disk %u: base '%s' of format '%s'", i, d[i].base, d[i].format);
	}
	*n = k;
	return snap_close(r);
}

int snapshot_check_disk(const struct snapshot_disk *d, int index)
{
	int fd = open(d->base, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_errno("disk %d: the snapshot's image %s", index, d->base);
	struct disk_identity now;
	int r = disk_identity_fd(fd, d->base, &now);
	close(fd);
	if (r < 0)
		return -1;
	if (now.size != d->id.size)
		return err_set("disk %d: %s changed since the snapshot (%llu bytes, then %llu)", index, d->base,
			       (unsigned long long)now.size, (unsigned long long)d->id.size);
	if (now.mtime_sec != d->id.mtime_sec || now.mtime_nsec != d->id.mtime_nsec)
		return err_set("disk %d: %s changed since the snapshot (modified after it was taken)", index, d->base);
	if (now.crc != d->id.crc)
		return err_set("disk %d: %s changed since the snapshot (its header differs)", index, d->base);
	return 0;
}
