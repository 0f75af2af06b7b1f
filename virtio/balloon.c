/*
 * virtio-balloon (--balloon): `lkvm balloon NAME inflate|deflate MiB` moves
 * the target (config num_pages); the guest's driver hands pages over on the
 * inflate queue and we release them to the host with MADV_DONTNEED, so the
 * process's RSS falls. Deflated pages need nothing: the guest may touch them
 * again at once (no MUST_TELL_HOST) and they fault back in, zero-filled.
 */
#include <linux/virtio_ids.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "device.h"
#include "devices.h"
#include "json.h"
#include "options.h"
#include "snapshot.h"
#include "util.h"
#include "virtio.h"
#include "vm.h"

#define BALLOON_PFN_SHIFT 12	/* the protocol's page size, whatever the guest's */
enum { Q_INFLATE, Q_DEFLATE };

struct balloon {
	struct virtio_dev dev;
	uint8_t config[8];	/* le32 num_pages (ours), le32 actual (the driver's) */
	uint64_t inflated, deflated;
};

static uint32_t le32_at(const uint8_t *b) { return b[0] | b[1] << 8 | b[2] << 16 | (uint32_t)b[3] << 24; }

static void release_page(struct vm *vm, uint32_t pfn)
{
	void *p = guest_ptr(&vm->mem, (uint64_t)pfn << BALLOON_PFN_SHIFT, 1u << BALLOON_PFN_SHIFT);
	if (p)	/* PFNs outside RAM are the guest's mistake: ignored */
		madvise(p, 1u << BALLOON_PFN_SHIFT, MADV_DONTNEED);
}

static void balloon_notify(struct virtio_dev *d, int qi)
{
	struct balloon *b = d->priv;
	struct virtq_chain c;
	while (virtq_pop(d, qi, &c) == 1) {
		uint8_t pfn[4];
		uint64_t n = c.out_len / 4;
		for (uint64_t i = 0; i < n; i++) {
			iov_to_buf(c.iov, c.nout, i * 4, pfn, 4);
			if (qi == Q_INFLATE)
				release_page(d->vm, le32_at(pfn));
		}
		pthread_mutex_lock(&d->lock);
		if (qi == Q_INFLATE)
			b->inflated += n;
		else
			b->deflated += n;
		pthread_mutex_unlock(&d->lock);
		virtq_push(d, qi, c.head, 0);
	}
}

/* Only `actual` (bytes 4-7) is the driver's to write. */
static void balloon_config_write(struct virtio_dev *d, uint32_t off, const void *data, int len)
{
	struct balloon *b = d->priv;
	if (off >= 4)
		memcpy(b->config + off, data, len);
}

static const struct virtio_ops balloon_ops = { .notify = balloon_notify, .config_write = balloon_config_write };

static struct balloon *find(struct vm *vm)
{
	return device_priv(vm, "virtio-balloon", 0);
}

int balloon_adjust(struct vm *vm, long delta_mib)
{
	struct balloon *b = find(vm);
	if (!b)
		return err_set("this VM has no balloon device (start it with --balloon)");
	struct virtio_dev *d = &b->dev;
	int64_t max = vm->mem.ram_size >> BALLOON_PFN_SHIFT;
	pthread_mutex_lock(&d->lock);
	int64_t target = (int64_t)le32_at(b->config) + delta_mib * (int64_t)(MiB(1) >> BALLOON_PFN_SHIFT);
	target = target < 0 ? 0 : target > max ? max : target;
	put_le32(b->config, (uint32_t)target);
	pthread_mutex_unlock(&d->lock);
	virtio_config_irq(d);
	return 0;
}

int balloon_stats(struct vm *vm, struct balloon_stats *st)
{
	struct balloon *b = find(vm);
	if (!b)
		return -1;
	pthread_mutex_lock(&b->dev.lock);
	st->target_pages = le32_at(b->config);
	st->actual_pages = le32_at(b->config + 4);
	st->inflated = b->inflated;
	st->deflated = b->deflated;
	pthread_mutex_unlock(&b->dev.lock);
	return 0;
}

/* lkvm stat's members. */
static void balloon_stat_members(struct device *dev, struct json_writer *j)
{
	struct balloon_stats st;
	if (balloon_stats(dev->vm, &st) < 0)
		return;
	json_u64(j, "balloon_target_pages", st.target_pages);
	json_u64(j, "balloon_actual_pages", st.actual_pages);
	json_u64(j, "balloon_inflated_pages", st.inflated);
	json_u64(j, "balloon_deflated_pages", st.deflated);
}

/* {"cmd":"balloon","op":"inflate"|"deflate","mib":N} */
static int balloon_cmd(struct device *dev, const char *req, struct json_writer *reply)
{
	char op[16];
	long long mib = 0;
	if (!json_get_str(req, "op", op, sizeof(op)) || (strcmp(op, "inflate") && strcmp(op, "deflate")) ||
	    !json_get_num(req, "mib", &mib) || mib <= 0 || mib > (1LL << 30))
		return err_set("balloon needs op inflate|deflate and mib > 0");
	if (balloon_adjust(dev->vm, strcmp(op, "inflate") ? -mib : mib) < 0)
		return -1;
	struct balloon_stats st;
	balloon_stats(dev->vm, &st);
	json_u64(reply, "target_mib", st.target_pages >> 8);
	json_u64(reply, "actual_mib", st.actual_pages >> 8);
	return 0;
}

static const struct device_cmd balloon_cmds[] = { { "balloon", balloon_cmd }, { 0 } };

static void balloon_destroy(struct device *dev)
{
	struct balloon *b = dev->priv;
	virtio_pci_unregister(&b->dev);
	free(b);
}

/* Snapshots: the transport, the target and the driver's count, and the counters. */
static int balloon_save(struct device *dev, struct snap_writer *w)
{
	struct balloon *b = dev->priv;
	virtio_pci_save(&b->dev, w);
	pthread_mutex_lock(&b->dev.lock);
	snap_bytes(w, b->config, sizeof(b->config));
	snap_u64(w, b->inflated);
	snap_u64(w, b->deflated);
	pthread_mutex_unlock(&b->dev.lock);
	return 0;
}

static int balloon_load(struct device *dev, struct snap_reader *r)
{
	struct balloon *b = dev->priv;
	if (virtio_pci_load(&b->dev, r) < 0)
		return -1;
	uint8_t config[sizeof(b->config)];
	snap_get_bytes(r, config, sizeof(config));
	uint64_t inflated = snap_get_u64(r), deflated = snap_get_u64(r);
	if (snap_failed(r))
		return -1;
	if (le32_at(config) > dev->vm->mem.ram_size >> BALLOON_PFN_SHIFT)
		return snap_bad(r, "balloon target of %u pages is more than the guest's RAM", le32_at(config));
	pthread_mutex_lock(&b->dev.lock);
	memcpy(b->config, config, sizeof(config));
	b->inflated = inflated;
	b->deflated = deflated;
	pthread_mutex_unlock(&b->dev.lock);
	return 0;
}

static const struct device_ops balloon_dev_ops = {
	.destroy = balloon_destroy, .stats = balloon_stat_members, .cmds = balloon_cmds,
	.save = balloon_save, .load = balloon_load, .snap_version = 1,
};

struct balloon_opts {
	bool on;
};

static int parse_balloon(void *own, const char *arg)
{
	((struct balloon_opts *)own)->on = true;
	return 0;
}

static const struct opt balloon_opts[] = {
	{ "balloon", 0, NULL, "virtio-balloon, driven by `lkvm balloon NAME inflate|deflate MiB`", parse_balloon },
	{ 0 }
};

static int balloon_create(struct vm *vm, void *own)
{
	if (!((struct balloon_opts *)own)->on)
		return 0;
	struct balloon *b = xcalloc(1, sizeof(*b));
	struct virtio_dev *d = &b->dev;
	d->name = "virtio-balloon";
	d->device_id = VIRTIO_ID_BALLOON;
	d->nr_queues = 2;
	d->config = b->config;
	d->config_len = sizeof(b->config);
	d->ops = &balloon_ops;
	d->priv = b;
	device_add(vm, "virtio-balloon", &balloon_dev_ops, b);
	return virtio_pci_register(vm, d);
}

const struct device_type virtio_balloon_device = {
	.name = "virtio-balloon", .opts = balloon_opts, .cfg_size = sizeof(struct balloon_opts), .create = balloon_create,
};
