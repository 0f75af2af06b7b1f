/*
 * Placeholder until the userspace instruction emulator lands: report the
 * instruction KVM could not emulate so the VM stops with a clear message.
 */
#include "util.h"
#include "vm.h"

int emulate_kvm_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	char bytes[64] = "";
	if (run->emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)
		for (unsigned i = 0; i < run->emulation_failure.insn_size && i < 15; i++)
			snprintf(bytes + 3 * i, sizeof(bytes) - 3 * i, "%02x ", run->emulation_failure.insn_bytes[i]);
	return err_set("KVM could not emulate the instruction %sand lkvm has no emulator for it", bytes);
}
