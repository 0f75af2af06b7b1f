/*
 * The last steps of a restore, in the runner once the VM is built from the
 * snapshot's options (cmd/restore.c did the checks that need no KVM): guest
 * RAM's layout must be the one saved, then the board's records (irqchip,
 * vCPUs, clock) and every device's, in creation order. The VM's generation
 * counts restores; the devices that tell the guest about it (vmgenid) do so
 * in their load, as virtio-vsock sends its transport reset event (the
 * guest's connections were to the old process).
 */
#include <string.h>
#include "board.h"
#include "device.h"
#include "snapshot.h"
#include "util.h"
#include "vm.h"
#include "vm_snapshot.h"

static int check_memory(struct vm *vm, struct snap_reader *r)
{
	if (snap_open(r, "memory", 1) < 0)
		return -1;
	const struct guest_mem *m = &vm->mem;
	uint64_t ram = snap_get_u64(r), map = snap_get_u64(r);
	uint32_t nr = snap_get_u32(r);
	if (snap_failed(r) || nr > GUEST_MEM_MAX_REGIONS)
		return snap_bad(r, "%u RAM regions", nr);
	bool same = ram == m->ram_size && map == m->map_size && (int)nr == m->nr;
	for (uint32_t i = 0; i < nr; i++) {
		uint64_t gpa = snap_get_u64(r), size = snap_get_u64(r), off = snap_get_u64(r);
		if (same && (gpa != m->r[i].gpa || size != m->r[i].size || off != (uint64_t)(m->r[i].host - m->base)))
			same = false;
	}
	if (snap_close(r) < 0)
		return -1;
	if (!same)
		return err_set("%s: guest RAM is laid out differently here (another -m or another lkvm)", snap_path(r));
	return 0;
}

int vm_snapshot_load(struct vm *vm, const struct board *b)
{
	struct snap_reader *r = vm->cfg.restore;
	if (snap_open(r, "lkvm", 1) < 0)
		return -1;
	char version[64], name[128];
	snap_get_str(r, version, sizeof(version));
	snap_get_u64(r);	/* when it was taken */
	snap_get_str(r, name, sizeof(name));
	uint64_t generation = snap_get_u64(r);
	if (snap_close(r) < 0)
		return -1;
	vm->generation = generation + 1;
	if (check_memory(vm, r) < 0 || b->load(vm, r) < 0 || devices_load(vm, r) < 0)
		return -1;
	return 0;
}
