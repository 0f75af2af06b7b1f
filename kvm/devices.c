/* Every device's init, in the order vm_create() runs them: one line each. */
#include "devices.h"
#include "hw.h"
#include "net.h"
#include "p9.h"
#include "virtio.h"


const struct device_init device_inits[] = {
	{ "pci-host", pci_host_init },
	{ "serial", serial_init },
	{ "i8042", i8042_init },
	{ "rtc", rtc_init },
	{ "pit", pit_init },
	{ "debug-ports", debug_ports_init },
	{ "virtio-console", virtio_console_init },
	{ "virtio-rng", virtio_rng_init },
	{ "virtio-blk", virtio_blk_init },
	{ "virtio-balloon", virtio_balloon_init },
	{ "virtio-net", virtio_net_init },
	{ "virtio-9p", virtio_9p_init },
};
const int nr_device_inits = sizeof(device_inits) / sizeof(device_inits[0]);
