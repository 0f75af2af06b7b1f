/* libFuzzer target: control-socket request lines against a VM with no vCPUs. */
#include <stdlib.h>
#include <string.h>
#include "control.h"
#include "vm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct vm vm;
	static struct control *c;
	if (!c) {
		vm.exit_efd = -1;
		c = control_new(&vm, "fuzz");
	}
	char *line = malloc(size + 1);
	memcpy(line, data, size);
	line[size] = 0;
	char out[4096];
	vm.vm_fd = -1;
	vm.exit_reason = 0;
	control_handle(c, line, out, sizeof(out));
	free(line);
	return 0;
}
