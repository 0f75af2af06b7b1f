/*
 * Snapshots without KVM: the state file's records (round trip, versions,
 * every truncation and every flipped byte refused), and devices saved from
 * one fake VM and loaded into a fresh one made by the same options, which
 * then behaves as the first would have: the PIT's counts, the RTC's clock
 * and registers, a UART's pending input, the i8042's queue, a virtio
 * device's rings (a request after the restore is served from where the
 * driver left off), a qcow2 overlay over a snapshot's image, and bad values
 * in a record refused with the record named.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "snap_buf.h"
#include "devices.h"
#include "disk.h"
#include "hw.h"
#include "snapshot.h"
#include "test.h"
#include "virtio.h"
#include "vm_snapshot.h"
#include "virtio_fixture.h"

/* A state file in memory: records written by fn, read back. */
static uint8_t *file_buf;
static size_t file_len;

static void capture(void (*fn)(struct snap_writer *w))
{
	int fd;
	struct snap_writer *w = snap_buf_open(&fd);
	fn(w);
	CHECK_EQ(snap_buf_close(w, fd, &file_buf, &file_len), 0);
}

static void two_records(struct snap_writer *w)
{
	snap_begin(w, "alpha", 3);
	snap_u8(w, 0x12);
	snap_u16(w, 0x3456);
	snap_u32(w, 0x789abcde);
	snap_u64(w, 0x0123456789abcdefULL);
	snap_i64(w, -5);
	snap_bool(w, true);
	snap_str(w, "a string");
	snap_bytes(w, "raw", 3);
	CHECK_EQ(snap_end(w), 0);
	snap_begin(w, "beta", 1);
	snap_u32(w, 7);
	CHECK_EQ(snap_end(w), 0);
}

TEST(records_round_trip)
{
	capture(two_records);
	struct snap_reader *r = snap_reader_new(file_buf, file_len, "t");
	CHECK(r != NULL);
	if (!r)
		return;
	CHECK_EQ(snap_count(r), 2);
	CHECK(snap_has(r, "alpha") && snap_has(r, "beta") && !snap_has(r, "gamma"));
	CHECK_EQ(snap_open(r, "beta", 1), 0);
	CHECK_EQ(snap_get_u32(r), 7);
	CHECK_EQ(snap_close(r), 0);
	CHECK_EQ(snap_open(r, "alpha", 3), 0);
	CHECK_EQ(snap_get_u8(r), 0x12);
	CHECK_EQ(snap_get_u16(r), 0x3456);
	CHECK_EQ(snap_get_u32(r), 0x789abcde);
	CHECK_EQ(snap_get_u64(r), 0x0123456789abcdefULL);
	CHECK_EQ(snap_get_i64(r), (uint64_t)-5);
	CHECK(snap_get_bool(r));
	char s[16];
	snap_get_str(r, s, sizeof(s));
	CHECK(!strcmp(s, "a string"));
	char raw[3];
	snap_get_bytes(r, raw, 3);
	CHECK(!memcmp(raw, "raw", 3));
	CHECK_EQ(snap_left(r), 0);
	CHECK_EQ(snap_close(r), 0);
	/* Another version than the reader's; a record read short; one read past its end. */
	CHECK_EQ(snap_open(r, "alpha", 4), -1);
	CHECK(strstr(err_msg(), "has version 3; this lkvm reads version 4") != NULL);
	CHECK_EQ(snap_open(r, "gamma", 1), -1);
	CHECK_EQ(snap_open(r, "alpha", 3), 0);
	snap_get_u8(r);
	CHECK_EQ(snap_close(r), -1);
	CHECK(strstr(err_msg(), "bytes more than this lkvm reads") != NULL);
	CHECK_EQ(snap_open(r, "beta", 1), 0);
	CHECK_EQ(snap_get_u64(r), 0);
	CHECK(snap_failed(r));
	CHECK_EQ(snap_close(r), -1);
	/* A string longer than its buffer is bad, not cut. */
	CHECK_EQ(snap_open(r, "alpha", 3), 0);
	snap_get_u8(r); snap_get_u16(r); snap_get_u32(r); snap_get_u64(r); snap_get_i64(r); snap_get_bool(r);
	char small[4];
	snap_get_str(r, small, sizeof(small));
	CHECK(snap_failed(r));
	snap_reader_free(r);
}

TEST(every_truncation_and_flip_refused)
{
	capture(two_records);
	int refused = 0, tries = 0;
	for (size_t n = 0; n < file_len; n++, tries++) {
		struct snap_reader *r = snap_reader_new(file_buf, n, "t");
		refused += r == NULL;
		snap_reader_free(r);
	}
	CHECK_EQ(refused, tries);
	refused = tries = 0;
	uint8_t *copy = xcalloc(1, file_len);
	for (size_t i = 0; i < file_len; i++) {
		for (int bit = 0; bit < 8; bit++, tries++) {
			memcpy(copy, file_buf, file_len);
			copy[i] ^= 1 << bit;
			struct snap_reader *r = snap_reader_new(copy, file_len, "t");
			refused += r == NULL;
			snap_reader_free(r);
		}
	}
	CHECK_EQ(refused, tries);
	memcpy(copy, file_buf, file_len);
	put_le32(copy + 8, 2);
	CHECK(snap_reader_new(copy, file_len, "t") == NULL);
	CHECK(strstr(err_msg(), "snapshot format version 2; this lkvm reads version 1 only") != NULL);
	CHECK(snap_reader_new((const uint8_t *)"garbage-garbage-garbage", 23, "t") == NULL);
	CHECK(strstr(err_msg(), "not an lkvm snapshot") != NULL);
	free(copy);
}

/* ---- devices: save from one fake VM, load into a fresh one ---- */

static struct vm *new_vm(const struct device_type *const *types)
{
	struct vm *v = xcalloc(1, sizeof(*v));
	fake_vm_init(v, &fake_irq_recorder);
	guest_mem_alloc(&v->mem, MiB(16), 0, 0);
	for (int i = 0; types[i]; i++)
		CHECK_EQ(device_type_create(v, types[i]), 0);
	return v;
}

static void free_vm(struct vm *v)
{
	fake_vm_free(v);
	guest_mem_free(&v->mem);
	free(v);
}

static struct vm *src_vm;
static void save_devices(struct snap_writer *w) { CHECK_EQ(devices_save(src_vm, w), 0); }

/* Save src's devices and load them into dst: 0, or -1 with err set. */
static int transfer(struct vm *src, struct vm *dst)
{
	src_vm = src;
	capture(save_devices);
	struct snap_reader *r = snap_reader_new(file_buf, file_len, "t");
	CHECK(r != NULL);
	int ret = r ? devices_load(dst, r) : -1;
	snap_reader_free(r);
	return ret;
}

static uint8_t in8(struct vm *v, uint16_t port) { uint8_t x = 0; bus_access(&v->pio, port, &x, 1, false); return x; }
static void out8(struct vm *v, uint16_t port, uint8_t x) { bus_access(&v->pio, port, &x, 1, true); }

TEST(legacy_devices_go_on)
{
	static const struct device_type *const types[] = { &pit_device, &rtc_device, &serial_device, &i8042_device, NULL };
	struct vm *a = new_vm(types);
	/* PIT channel 2: mode 0 from 0xffff, gate on; the count keeps falling across the move. */
	out8(a, 0x61, 0x01);
	out8(a, 0x43, 0xb0);
	out8(a, 0x42, 0xff);
	out8(a, 0x42, 0xff);
	/* RTC: binary mode, the scratch byte, the clock set a year ahead. */
	out8(a, 0x70, 0x0b);
	out8(a, 0x71, 0x06);	/* binary, 24 h */
	out8(a, 0x70, 0x40);
	out8(a, 0x71, 0x5a);
	out8(a, 0x70, 0x09);
	uint8_t year = in8(a, 0x71);
	out8(a, 0x71, year + 1);
	/* ttyS0: FIFO on, input waiting; ttyS1's scratch register. */
	out8(a, 0x3fa, 0x01);
	serial_input(serial_port(a, 0), (const uint8_t *)"typed", 5);
	out8(a, 0x2ff, 0x77);
	/* i8042: a command whose answer waits in the output buffer, and a queue behind it. */
	out8(a, 0x64, 0xd2);
	out8(a, 0x60, 0x41);
	out8(a, 0x64, 0xd2);
	out8(a, 0x60, 0x42);
	usleep(20000);
	struct vm *b = new_vm(types);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CHECK_EQ(transfer(a, b), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	/*
	 * Both PITs' counts, read back to back: the restored one goes on from
	 * where it was saved (no reset to 0xffff), behind the first by the time
	 * the transfer took, during which its clock stood still.
	 */
	out8(a, 0x43, 0x80);
	out8(b, 0x43, 0x80);
	uint16_t ca = in8(a, 0x42), cb = in8(b, 0x42);	/* low bytes, then high: in this order */
	ca |= in8(a, 0x42) << 8;
	cb |= in8(b, 0x42) << 8;
	double gap = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	CHECK(ca < 0xff00 && cb < 0xff00);
	CHECK(cb + 50 >= ca && cb - ca <= gap * 1193182 + 500);
	out8(b, 0x70, 0x09);
	CHECK_EQ(in8(b, 0x71), (uint8_t)(year + 1));
	out8(b, 0x70, 0x40);
	CHECK_EQ(in8(b, 0x71), 0x5a);
	char got[6] = { 0 };
	for (int i = 0; i < 5; i++)
		got[i] = in8(b, 0x3f8);
	CHECK(!strcmp(got, "typed"));
	CHECK_EQ(in8(b, 0x3f8 + 5) & 1, 0);	/* then nothing */
	CHECK_EQ(in8(b, 0x2ff), 0x77);
	CHECK_EQ(in8(b, 0x64) & 1, 1);
	CHECK_EQ(in8(b, 0x60), 0x41);
	CHECK_EQ(in8(b, 0x60), 0x42);
	free_vm(a);
	free_vm(b);
}

static void bad_pit(struct snap_writer *w)
{
	snap_begin(w, "dev:pit:0", 1);
	for (int i = 0; i < 3; i++) {
		snap_u8(w, i == 1 ? 9 : 0);	/* mode 9 */
		snap_u8(w, 3); snap_u8(w, 0); snap_u32(w, 100); snap_bool(w, true); snap_bool(w, true);
		snap_i64(w, 0); snap_bool(w, false); snap_u8(w, 0); snap_bool(w, false); snap_u8(w, 0);
		snap_u16(w, 0); snap_bool(w, false); snap_u8(w, 0); snap_bool(w, false);
	}
	snap_bool(w, false); snap_bool(w, false); snap_i64(w, INT64_MIN);
	snap_end(w);
}

static void extra_device(struct snap_writer *w)
{
	snap_begin(w, "dev:frobnicator:0", 1);
	snap_end(w);
}

TEST(bad_records_refused)
{
	static const struct device_type *const types[] = { &pit_device, NULL };
	struct vm *v = new_vm(types);
	capture(bad_pit);
	struct snap_reader *r = snap_reader_new(file_buf, file_len, "state");
	CHECK_EQ(devices_load(v, r), -1);
	CHECK(strstr(err_msg(), "state: record dev:pit:0: channel 1: mode 9") != NULL);
	snap_reader_free(r);
	capture(extra_device);
	r = snap_reader_new(file_buf, file_len, "state");
	CHECK_EQ(devices_load(v, r), -1);
	CHECK(strstr(err_msg(), "no pit 0") != NULL);	/* the PIT's record is missing */
	snap_reader_free(r);
	static const struct device_type *const none[] = { NULL };
	struct vm *empty = new_vm(none);
	r = snap_reader_new(file_buf, file_len, "state");
	CHECK_EQ(devices_load(empty, r), -1);
	CHECK(strstr(err_msg(), "a device this VM lacks (frobnicator:0)") != NULL);
	snap_reader_free(r);
	free_vm(v);
	free_vm(empty);
}

/* virtio-rng with a queue in use: after the move the next request is served from the same ring. */
TEST(virtio_rings_go_on)
{
	setup_vm();
	CHECK_EQ(device_type_option(&vm.cfg, &virtio_rng_device, "rng", NULL), 0);
	CHECK_EQ(device_type_create(&vm, &virtio_rng_device), 0);
	avail_idx = 0;
	CHECK_EQ(driver_init(dev_at(1), 1ULL << VIRTIO_F_VERSION_1), 0);
	desc(0, BUF, 64, 2, 0);
	post(0);
	post(0);
	CHECK_EQ(get_le16(g(USED + 2)), 2);
	uint64_t feat = rd(0x0c, 4);
	/* RAM goes along (the snapshot's memory file), the devices through their records. */
	uint8_t *ram = xcalloc(1, MiB(16));
	memcpy(ram, vm.mem.base, MiB(16));
	struct vm old = vm;
	src_vm = &old;
	capture(save_devices);
	fake_vm_free(&old);
	guest_mem_free(&old.mem);
	setup_vm();
	CHECK_EQ(device_type_option(&vm.cfg, &virtio_rng_device, "rng", NULL), 0);
	CHECK_EQ(device_type_create(&vm, &virtio_rng_device), 0);
	memcpy(vm.mem.base, ram, MiB(16));
	free(ram);
	struct snap_reader *r = snap_reader_new(file_buf, file_len, "t");
	CHECK_EQ(devices_load(&vm, r), 0);
	snap_reader_free(r);
	fx_attach(dev_at(1));
	CHECK_EQ(rd(0x14, 1), 0xf);	/* still DRIVER_OK, no reset */
	CHECK_EQ(rd(0x0c, 4), feat);
	wr(0x16, 0, 2);
	CHECK_EQ(rd(0x1c, 2), 1);	/* the queue still enabled, at the same rings */
	CHECK_EQ(rd(0x20, 4), DESC);
	memset(g(BUF), 0, 64);
	post(0);
	CHECK_EQ(get_le16(g(USED + 2)), 3);	/* the third request: the device knew the first two */
	CHECK_EQ(get_le32(g(USED + 4 + 8 * 2 + 4)), 64);
	uint8_t zero[64] = { 0 };
	CHECK(memcmp(g(BUF), zero, 64) != 0);
	fake_vm_free(&vm);
	guest_mem_free(&vm.mem);
}

/* A qcow2 overlay over a snapshot's raw image: reads through to it, writes stay in the overlay. */
TEST(overlay_keeps_the_base)
{
	char base[] = "/tmp/lkvm-test-base-XXXXXX", ov[] = "/tmp/lkvm-test-ov-XXXXXX";
	int bfd = mkstemp(base), ofd = mkstemp(ov);
	CHECK(ftruncate(bfd, MiB(4)) == 0);
	CHECK_EQ(pwrite(bfd, "base-data", 9, 3 * 512), 9);
	struct disk_identity before, after;
	CHECK_EQ(disk_identity_fd(bfd, base, &before), 0);
	CHECK_EQ(disk_write_overlay(ofd, ov, base, "raw", MiB(4)), 0);
	close(ofd);
	/* qemu-img agrees it is a sound image over that base. */
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "qemu-img check -q %s && qemu-img info %s | grep -q 'backing file: %s'", ov, ov, base);
	if (system("command -v qemu-img > /dev/null") == 0)
		CHECK_EQ(system(cmd), 0);
	struct disk *d = disk_open(ov, false, false);
	CHECK(d != NULL);
	if (d) {
		CHECK_EQ(d->size, MiB(4));
		uint8_t buf[512];
		struct iovec v = { buf, 512 };
		CHECK_EQ(d->ops->readv(d, 3 * 512, &v, 1), 0);
		CHECK(!memcmp(buf, "base-data", 9));
		memcpy(buf, "overlaid!", 9);
		CHECK_EQ(d->ops->writev(d, 3 * 512, &v, 1), 0);
		CHECK_EQ(d->ops->flush(d), 0);
		memset(buf, 0, 512);
		CHECK_EQ(d->ops->readv(d, 3 * 512, &v, 1), 0);
		CHECK(!memcmp(buf, "overlaid!", 9));
		disk_close(d);
	}
	CHECK_EQ(disk_identity_fd(bfd, base, &after), 0);
	CHECK(!memcmp(&before, &after, sizeof(before)));
	if (system("command -v qemu-img > /dev/null") == 0) {
		snprintf(cmd, sizeof(cmd), "qemu-img check -q %s", ov);
		CHECK_EQ(system(cmd), 0);
	}
	/* A changed base is noticed. */
	struct snapshot_disk sd = { .ro = false, .virtual_size = MiB(4), .id = before };
	snprintf(sd.base, sizeof(sd.base), "%s", base);
	strcpy(sd.format, "raw");
	CHECK_EQ(snapshot_check_disk(&sd, 0), 0);
	CHECK_EQ(pwrite(bfd, "x", 1, 0), 1);
	CHECK_EQ(snapshot_check_disk(&sd, 0), -1);
	CHECK(strstr(err_msg(), "changed since the snapshot") != NULL);
	close(bfd);
	unlink(base);
	unlink(ov);
}

TEST_MAIN()
