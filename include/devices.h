/*
 * Device registration. Each device file defines one init function and gets one
 * line in kvm/devices.c; vm_create() calls them in order after RAM and irqchip.
 */
#ifndef LKVM_DEVICES_H
#define LKVM_DEVICES_H

struct vm;

struct device_init {
	const char *name;
	int (*init)(struct vm *vm);	/* returns 0, or -1 with err set */
};

extern const struct device_init device_inits[];
extern const int nr_device_inits;

#endif
