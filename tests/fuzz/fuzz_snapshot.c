/*
 * libFuzzer target: snapshot state files (lib/snapshot.c) and what the
 * devices load from them. The input is a whole state file: the reader checks
 * it; one it accepts is loaded into a fake VM with the PCI host, the four
 * UARTs, the i8042, RTC, PIT, debug ports, virtio-rng, virtio-console,
 * virtio-balloon and virtio-vsock (its socket in a folder of this process;
 * never started) (so dev:* records reach every load function, the PCI
 * config space and the virtio transport's), and its disks record is read.
 * Inputs fail the reader's checksums unless the fuzzer fixes them: a flags
 * byte first says whether the harness recomputes every record's CRC (and the
 * end record's count), so the loads see arbitrary values in well-formed
 * records.
 *
 * Oracle: no crash, ASan and UBSan clean; a load that succeeds leaves
 * devices that still answer port accesses and interrupt lines that are 0/1
 * on GSIs that exist.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include "devices.h"
#include "fake_vm.h"
#include "hw.h"
#include "snapshot.h"
#include "util.h"
#include "vm.h"
#include "vm_snapshot.h"

static void irq_hook(struct vm *v, unsigned gsi, int lvl)
{
	if (gsi >= 24 || (lvl != 0 && lvl != 1)) {
		fprintf(stderr, "fuzz_snapshot: interrupt line %u set to %d\n", gsi, lvl);
		abort();
	}
}

static void msi_hook(struct vm *v, uint64_t addr, uint32_t data) {}

static const struct irq_ops irqs = { .line = irq_hook, .msi = msi_hook };

/* Walk the records and make each CRC (and the end count) right: the loads get to see the values. */
static void fix_crcs(uint8_t *b, size_t len)
{
	size_t off = 16;
	uint32_t n = 0;
	while (off + 18 <= len) {
		size_t nl = get_le16(b + off);
		if (off + 18 + nl > len)
			return;
		uint64_t pl = get_le64(b + off + 6 + nl);
		if (pl > len - off - 18 - nl)
			return;
		if (nl == 3 && !memcmp(b + off + 2, "end", 3) && pl == 4)
			put_le32(b + off + 14 + nl, n);
		else
			n++;
		size_t body = 14 + nl + pl;
		put_le32(b + off + body, crc32(0, b + off, body));
		off += body + 4;
	}
}

static char vsock_dir[64], vsock_opt[128];

static void remove_vsock_dir(void) { rmdir(vsock_dir); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (!vsock_dir[0]) {
		snprintf(vsock_dir, sizeof(vsock_dir), "/tmp/lkvm-fuzz-snapshot-XXXXXX");
		if (!mkdtemp(vsock_dir))
			abort();
		snprintf(vsock_opt, sizeof(vsock_opt), "3,uds=%s/v.sock", vsock_dir);
		atexit(remove_vsock_dir);
	}
	uint8_t *buf = malloc(size);
	memcpy(buf, data + 1, size - 1);
	if (data[0] & 1)
		fix_crcs(buf, size - 1);
	struct snap_reader *r = snap_reader_new(buf, size - 1, "fuzz");
	free(buf);
	if (!r)
		return 0;
	struct vm vm;
	fake_vm_init(&vm, &irqs);
	guest_mem_alloc(&vm.mem, MiB(4), 0, 0);
	device_type_option(&vm.cfg, &virtio_rng_device, "rng", NULL);
	device_type_option(&vm.cfg, &virtio_console_device, "console", "virtio");
	device_type_option(&vm.cfg, &virtio_balloon_device, "balloon", NULL);
	device_type_option(&vm.cfg, &virtio_vsock_device, "vsock", vsock_opt);
	static const struct device_type *const types[] = {
		&pci_host_device, &serial_device, &i8042_device, &rtc_device, &pit_device, &debug_ports_device,
		&virtio_console_device, &virtio_rng_device, &virtio_balloon_device, &virtio_vsock_device, NULL,
	};
	for (int i = 0; types[i]; i++)
		if (device_type_create(&vm, types[i]) < 0)
			abort();
	for (int i = 0; i < 4; i++)
		serial_set_output(serial_port(&vm, i), NULL, NULL);
	if (devices_load(&vm, r) == 0) {
		/* Loaded devices still work: a few accesses as a guest would make them. */
		uint8_t v = 0;
		for (uint16_t port = 0x3f8; port < 0x400; port++)
			bus_access(&vm.pio, port, &v, 1, false);
		bus_access(&vm.pio, 0x60, &v, 1, false);
		bus_access(&vm.pio, 0x64, &v, 1, false);
		bus_access(&vm.pio, 0x40, &v, 1, false);
		v = 0x0c;
		bus_access(&vm.pio, 0x70, &v, 1, true);
		bus_access(&vm.pio, 0x71, &v, 1, false);
	}
	struct snapshot_disk *d = calloc(SNAPSHOT_MAX_DISKS, sizeof(*d));
	int n;
	snapshot_read_disks(r, d, &n);
	free(d);
	snap_reader_free(r);
	fake_vm_free(&vm);	/* the vsock device's socket goes with it */
	for (int i = 0; i < vm.nr_jail_keep; i++)
		free((void *)vm.jail_keep[i]);
	guest_mem_free(&vm.mem);
	return 0;
}
