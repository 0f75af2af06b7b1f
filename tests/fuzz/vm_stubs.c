/* What control.c needs from the VM, for fuzzing without KVM or threads. */
#include "util.h"
#include "virtio.h"
#include "vm.h"

void vm_pause(struct vm *vm) { vm->paused = true; }
void vm_resume(struct vm *vm) { vm->paused = false; }
void vm_request_exit(struct vm *vm, enum vm_exit_reason why, int status)
{
	vm->exit_reason = why;
	vm->exit_status = status;
}
void vcpu_dump(struct vcpu *v, FILE *out) {}
int evloop_add(struct evloop *l, int fd, uint32_t events, void (*cb)(void *, uint32_t), void *ctx) { return -1; }
/* The fuzzed VM has no balloon device: the control code's error path. */
int balloon_adjust(struct vm *vm, long delta_mib) { return err_set("this VM has no balloon device"); }
int balloon_stats(struct vm *vm, struct balloon_stats *st) { return -1; }
