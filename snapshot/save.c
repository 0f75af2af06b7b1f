/*
 * Taking a snapshot of the running VM, on its control thread: every vCPU
 * parked, the event loop stopped and every device quiesced (virtio-blk
 * finishes what is in flight and flushes), then guest RAM, the records and
 * the disks' fate, then everything runs again (or the VM stops).
 *
 * Disks keep the snapshot's view fixed: a read-only image is used as it is;
 * a writable qcow2 image becomes the base of a new overlay the running VM
 * writes from now on (the client made it); a writable raw image is copied
 * into the snapshot (--disk-copy); with --stop nothing writes any of them
 * again. Anything else is refused before the VM is even paused.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "board.h"
#include "commands.h"
#include "control.h"
#include "device.h"
#include "disk.h"
#include "evloop.h"
#include "json.h"
#include "options.h"
#include "snapshot.h"
#include "util.h"
#include "virtio.h"
#include "vm.h"
#include "vm_snapshot.h"

#define PAGE 4096
#define RUN_MAX (8u << 20)	/* bytes per write of consecutive non-zero pages */

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *q = (const uint64_t *)p;
	for (int i = 0; i < PAGE / 8; i += 4)
		if (q[i] | q[i + 1] | q[i + 2] | q[i + 3])
			return false;
	return true;
}

static int pwrite_all(int fd, const uint8_t *p, size_t len, uint64_t off, const char *path)
{
	while (len) {
		ssize_t n = pwrite(fd, p, len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return err_errno("%s: cannot write guest RAM", path);
		p += n;
		len -= n;
		off += n;
	}
	return 0;
}

/* Guest RAM, zero pages left as holes; *written: the bytes that were not. */
static int write_ram(struct vm *vm, int fd, const char *path, uint64_t *written)
{
	const struct guest_mem *m = &vm->mem;
	if (ftruncate(fd, 0) < 0 || ftruncate(fd, m->map_size) < 0)
		return err_errno("%s", path);
	uint64_t start = 0, len = 0;
	*written = 0;
	for (uint64_t off = 0; off <= m->map_size; off += PAGE) {
		bool data = off < m->map_size && !page_is_zero(m->base + off);
		if (data) {
			if (!len)
				start = off;
			len += PAGE;
			if (len < RUN_MAX)
				continue;
		}
		if (len && pwrite_all(fd, m->base + start, len, start, path) < 0)
			return -1;
		*written += len;
		len = 0;
	}
	if (fsync(fd) < 0)
		return err_errno("%s", path);
	return 0;
}

/* What the request asks of each disk, from its "fds" roles and "diskN_overlay" paths. */
struct request {
	char dir[3072];
	bool stop;
	int state_fd, mem_fd;
	int copy_fd[SNAPSHOT_MAX_DISKS], overlay_fd[SNAPSHOT_MAX_DISKS];
	char overlay[SNAPSHOT_MAX_DISKS][4096];
};

static int parse_request(const char *req, const int *fds, int nfds, struct request *q)
{
	char roles[256], key[32];
	q->state_fd = q->mem_fd = -1;
	for (int i = 0; i < SNAPSHOT_MAX_DISKS; i++)
		q->copy_fd[i] = q->overlay_fd[i] = -1;
	if (!json_get_str(req, "dir", q->dir, sizeof(q->dir)) || q->dir[0] != '/')
		return err_set("snapshot: the request names no directory (an absolute path)");
	json_get_bool(req, "stop", &q->stop);
	if (!json_get_str(req, "fds", roles, sizeof(roles)))
		return err_set("snapshot: the request says nothing of its descriptors");
	int k = 0;
	char *save, *tok;
	for (tok = strtok_r(roles, " ", &save); tok; tok = strtok_r(NULL, " ", &save), k++) {
		if (k >= nfds)
			return err_set("snapshot: %d descriptors came with the request, its roles name more", nfds);
		int disk = (tok[0] == 'c' || tok[0] == 'o') ? atoi(tok + 1) : -1;
		if (!strcmp(tok, "s"))
			q->state_fd = fds[k];
		else if (!strcmp(tok, "m"))
			q->mem_fd = fds[k];
		else if (disk >= 0 && disk < SNAPSHOT_MAX_DISKS && tok[0] == 'c')
			q->copy_fd[disk] = fds[k];
		else if (disk >= 0 && disk < SNAPSHOT_MAX_DISKS && tok[0] == 'o') {
			q->overlay_fd[disk] = fds[k];
			snprintf(key, sizeof(key), "disk%d_overlay", disk);
			if (!json_get_str(req, key, q->overlay[disk], sizeof(q->overlay[disk])) || q->overlay[disk][0] != '/')
				return err_set("snapshot: disk %d's overlay comes without its path", disk);
		} else
			return err_set("snapshot: unknown descriptor role '%s'", tok);
	}
	if (k != nfds)
		return err_set("snapshot: %d descriptors came with the request, its roles name %d", nfds, k);
	if (q->state_fd < 0 || q->mem_fd < 0)
		return err_set("snapshot: the state and memory files did not come with the request");
	return 0;
}

/* Before anything stops: every writable disk has a way to keep the snapshot's view. */
static int check_disks(struct vm *vm, const struct request *q)
{
	for (int i = 0; i < SNAPSHOT_MAX_DISKS; i++) {
		struct device *dev = device_find(vm, "virtio-blk", i);
		if (!dev) {
			if (q->copy_fd[i] >= 0 || q->overlay_fd[i] >= 0)
				return err_set("snapshot: there is no disk %d", i);
			continue;
		}
		const char *path;
		struct disk *dk = virtio_blk_disk(dev, &path);
		struct stat st;
		if (fstat(dk->fd, &st) < 0 || !S_ISREG(st.st_mode))
			return err_set("disk %d (%s) is not an image file: snapshots need files", i, path);
		if (dk->ro || q->stop)
			continue;
		if (disk_is_qcow2(dk) && q->overlay_fd[i] < 0)
			return err_set("disk %d (%s): a writable qcow2 image needs an overlay to go on with", i, path);
		if (!disk_is_qcow2(dk) && q->copy_fd[i] < 0)
			return err_set("disk %d (%s) is a raw image the VM writes: give --disk-copy to copy it into the "
				       "snapshot, or --stop, or run the VM with a qcow2 image or ',ro'", i, path);
	}
	return 0;
}

/* The "disks" record, and each disk's new overlay where the VM goes on. */
static int save_disks(struct vm *vm, struct request *q, struct snap_writer *w, struct disk *overlays[])
{
	int n = 0;
	while (n < SNAPSHOT_MAX_DISKS && device_find(vm, "virtio-blk", n))
		n++;
	snap_begin(w, "disks", 1);
	snap_u32(w, n);
	for (int i = 0; i < n; i++) {
		struct device *dev = device_find(vm, "virtio-blk", i);
		const char *path;
		struct disk *dk = virtio_blk_disk(dev, &path);
		char base[4096];
		struct disk_identity id;
		const char *format = disk_is_qcow2(dk) ? "qcow2" : "raw";
		if (!dk->ro && !q->stop && !disk_is_qcow2(dk)) {
			snprintf(base, sizeof(base), "%s/disk%d.raw", q->dir, i);
			if (disk_copy_fd(dk->fd, q->copy_fd[i], base) < 0 || disk_identity_fd(q->copy_fd[i], base, &id) < 0)
				return -1;
		} else {
			snprintf(base, sizeof(base), "%s", path);
			if (disk_identity_fd(dk->fd, path, &id) < 0)
				return -1;
		}
		if (!dk->ro && !q->stop && disk_is_qcow2(dk)) {
			/* The overlay's path must outlive the disk: kept like an option's text. */
			const char *ov = opt_strdup(q->overlay[i]);
			overlays[i] = disk_open_overlay(q->overlay_fd[i], ov, dk);
			q->overlay_fd[i] = -1;	/* taken over, even on failure */
			if (!overlays[i])
				return -1;
		}
		snap_str(w, base);
		snap_str(w, format);
		snap_bool(w, dk->ro);
		snap_u64(w, dk->size);
		snap_u64(w, id.size);
		snap_i64(w, id.mtime_sec);
		snap_i64(w, id.mtime_nsec);
		snap_u32(w, id.crc);
	}
	return snap_end(w);
}

static void save_header(struct vm *vm, struct snap_writer *w)
{
	snap_begin(w, "lkvm", 1);
	snap_str(w, LKVM_VERSION);
	snap_u64(w, (uint64_t)time(NULL));
	snap_str(w, vm->cfg.name ? vm->cfg.name : "");
	snap_u64(w, vm->generation);
	snap_end(w);
	snap_begin(w, "config", 1);
	snap_u64(w, vm->cfg.ram_size);
	snap_u32(w, vm->nr_vcpus);
	snap_u32(w, vm->cfg.nr_args);
	for (int i = 0; i < vm->cfg.nr_args; i++)
		snap_str(w, vm->cfg.args[i]);
	snap_end(w);
	const struct guest_mem *m = &vm->mem;
	snap_begin(w, "memory", 1);
	snap_u64(w, m->ram_size);
	snap_u64(w, m->map_size);
	snap_u32(w, m->nr);
	for (int i = 0; i < m->nr; i++) {
		snap_u64(w, m->r[i].gpa);
		snap_u64(w, m->r[i].size);
		snap_u64(w, m->r[i].host - m->base);
	}
	snap_end(w);
}

static int take(struct vm_snapshot_ctx *ctx, struct request *q, struct json_writer *reply)
{
	struct vm *vm = ctx->vm;
	if (vm_stopping(vm))
		return err_set("the VM is stopping");
	if (check_disks(vm, q) < 0)
		return -1;
	char state_path[3200], mem_path[3200];
	snprintf(state_path, sizeof(state_path), "%s/state", q->dir);
	snprintf(mem_path, sizeof(mem_path), "%s/memory", q->dir);
	uint64_t t0 = mono_ms();
	bool was_paused = __atomic_load_n(&vm->paused, __ATOMIC_ACQUIRE);
	vm_pause(vm);
	evloop_stop(vm->loop);
	devices_stop(vm);
	uint64_t ram = 0;
	struct disk *overlays[SNAPSHOT_MAX_DISKS] = { 0 };
	struct snap_writer *w = NULL;
	int ret = -1;
	if (vm_stopping(vm)) {
		err_set("the VM stopped meanwhile");
		goto resume;
	}
	if (write_ram(vm, q->mem_fd, mem_path, &ram) < 0)
		goto resume;
	w = snap_writer_new(q->state_fd, state_path);
	save_header(vm, w);
	if (save_disks(vm, q, w, overlays) < 0 || ctx->board->save(vm, w) < 0 || devices_save(vm, w) < 0)
		goto resume;
	ret = snap_writer_close(w);
	w = NULL;
	if (!ret && fsync(q->state_fd) < 0)
		ret = err_errno("%s", state_path);
resume:
	if (w)
		snap_writer_abort(w);
	/* The running VM writes its new overlays from here on; on failure it keeps its disks. */
	for (int i = 0; i < SNAPSHOT_MAX_DISKS; i++) {
		if (!overlays[i])
			continue;
		struct device *dev = device_find(vm, "virtio-blk", i);
		if (ret == 0 && virtio_blk_replace_disk(dev, overlays[i], overlays[i]->path) == 0) {
			char key[32];
			snprintf(key, sizeof(key), "disk%d_overlay", i);
			json_str(reply, key, overlays[i]->path);
		} else {
			/* Not used: its backing image is still the device's own disk, which stays. */
			disk_discard_overlay(overlays[i]);
		}
	}
	uint64_t paused = mono_ms() - t0;
	if (ret == 0 && q->stop) {
		vm_request_exit(vm, VM_POWEROFF, 0);
	} else {
		if (devices_start(vm) < 0 || evloop_start(vm->loop) < 0) {
			pr_warn("after the snapshot: %s", err_msg());
			vm_request_exit(vm, VM_ERROR, 1);
		} else if (!was_paused) {
			vm_resume(vm);
		}
	}
	if (ret == 0) {
		json_u64(reply, "ram_bytes", ram);
		json_u64(reply, "paused_ms", paused);
		json_bool(reply, "stopped", q->stop);
	}
	return ret;
}

static int snapshot_cmd(void *ctx, const char *req, const int *fds, int nfds, struct json_writer *reply)
{
	struct request *q = xcalloc(1, sizeof(*q));
	int ret = parse_request(req, fds, nfds, q);
	if (ret < 0) {
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
		free(q);
		return -1;
	}
	ret = take(ctx, q, reply);
	/* Every descriptor has its role; an overlay taken over by its disk is -1 by now. */
	close(q->state_fd);
	close(q->mem_fd);
	for (int i = 0; i < SNAPSHOT_MAX_DISKS; i++) {
		if (q->copy_fd[i] >= 0)
			close(q->copy_fd[i]);
		if (q->overlay_fd[i] >= 0)
			close(q->overlay_fd[i]);
	}
	free(q);
	return ret;
}

/* What the client needs to prepare the files: each disk's path, format, writability and size. */
static int info_cmd(void *ctx, const char *req, struct json_writer *j)
{
	struct vm *vm = ((struct vm_snapshot_ctx *)ctx)->vm;
	int n = 0;
	char key[32];
	for (; n < SNAPSHOT_MAX_DISKS; n++) {
		struct device *dev = device_find(vm, "virtio-blk", n);
		if (!dev)
			break;
		const char *path;
		struct disk *dk = virtio_blk_disk(dev, &path);
		snprintf(key, sizeof(key), "disk%d_path", n);
		json_str(j, key, path);
		snprintf(key, sizeof(key), "disk%d_format", n);
		json_str(j, key, disk_is_qcow2(dk) ? "qcow2" : "raw");
		snprintf(key, sizeof(key), "disk%d_ro", n);
		json_bool(j, key, dk->ro);
		snprintf(key, sizeof(key), "disk%d_size", n);
		json_u64(j, key, dk->size);
	}
	json_u64(j, "disks", n);
	json_u64(j, "mem_mib", vm->mem.ram_size >> 20);
	return 0;
}

int vm_snapshot_register(struct control *c, struct vm_snapshot_ctx *ctx)
{
	if (control_register(c, "snapshot-info", info_cmd, ctx) < 0 ||
	    control_register_fds(c, "snapshot", snapshot_cmd, ctx) < 0)
		return -1;
	return 0;
}
