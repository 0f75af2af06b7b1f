/*
 * Every device type lkvm has: one per device file. A board lists the ones it
 * assembles (x86/machine.c); tests create them one by one.
 */
#ifndef LKVM_DEVICES_H
#define LKVM_DEVICES_H

#include "device.h"

/* hw/ */
extern const struct device_type pci_host_device;
extern const struct device_type serial_device;
extern const struct device_type i8042_device;
extern const struct device_type rtc_device;
extern const struct device_type pit_device;
extern const struct device_type debug_ports_device;
/* virtio/ */
extern const struct device_type virtio_console_device;
extern const struct device_type virtio_rng_device;
extern const struct device_type virtio_blk_device;
extern const struct device_type virtio_balloon_device;
extern const struct device_type virtio_net_device;
extern const struct device_type virtio_9p_device;
extern const struct device_type virtio_vsock_device;

#endif
