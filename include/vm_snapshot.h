/*
 * Snapshots of a whole VM (snapshot/): a directory holding
 *   state     the records (include/snapshot.h): lkvm's version, the VM's
 *             options, guest RAM's layout, the disks' identities, the
 *             board's (irqchip, clock, every vCPU) and every device's
 *   memory    guest RAM, byte for byte from the reservation's start, with
 *             holes where pages are zero; restored copy-on-write
 *   diskN.raw a raw disk copied into the snapshot (lkvm snapshot --disk-copy)
 *   diskN.qcow2, clones/NAME/diskN.qcow2
 *             a restored VM's disk: an overlay over the snapshot's image
 *
 * Taking one runs in the VM's process, on the control thread, with
 * descriptors the `lkvm snapshot` client opened and passed along: a VM never
 * opens a path of the snapshot itself (it runs under its seccomp filter).
 * Restoring runs in `lkvm run --restore DIR`, before /dev/kvm is opened for
 * the checks, then in the runner once the VM is built.
 */
#ifndef LKVM_VM_SNAPSHOT_H
#define LKVM_VM_SNAPSHOT_H

#include <stdbool.h>
#include <stdint.h>

struct vm;
struct board;
struct control;
struct snap_reader;

#define SNAPSHOT_MAX_DISKS 8
#define SNAPSHOT_IDENTITY_BYTES 65536	/* the head of a disk image whose CRC is recorded */

/* snapshot/save.c: "snapshot-info" and "snapshot" on the VM's control socket (ctx lives as long as it). */
struct vm_snapshot_ctx {
	struct vm *vm;
	const struct board *board;
};
int vm_snapshot_register(struct control *c, struct vm_snapshot_ctx *ctx);

/* snapshot/load.c: in the runner, once board and vCPUs exist (vm->cfg.restore set). */
int vm_snapshot_load(struct vm *vm, const struct board *b);

/* snapshot/disks.c: what identifies a disk image (a snapshot's base must not change). */
struct disk_identity {
	uint64_t size;
	int64_t mtime_sec, mtime_nsec;
	uint32_t crc;		/* CRC32 of its first SNAPSHOT_IDENTITY_BYTES */
};
int disk_identity_fd(int fd, const char *path, struct disk_identity *id);
/* Copy a raw image (holes kept where the file system tells them) into dst: 0, or -1 with err set. */
int disk_copy_fd(int src, int dst, const char *dst_path);

/* One saved disk, as the "disks" record holds it. */
struct snapshot_disk {
	char base[4096];	/* absolute path of the image the snapshot's view is */
	char format[8];		/* "qcow2" or "raw" */
	bool ro;
	uint64_t virtual_size;
	struct disk_identity id;
};
/* Read the "disks" record: 0 with *n set, or -1 with err set. */
int snapshot_read_disks(struct snap_reader *r, struct snapshot_disk *d, int *n);
/* The base must be as the snapshot found it: 0, or -1 with err naming what changed. */
int snapshot_check_disk(const struct snapshot_disk *d, int index);

#endif
