/*
 * The modern virtio-pci transport (virtio 1.2 section 4.1): one memory BAR
 * holding the common config, ISR, device config, notify region and the MSI-X
 * table, described by vendor capabilities so Linux's virtio_pci binds.
 */
#include <linux/virtio_pci.h>
#include <stddef.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include "hw.h"
#include "snapshot.h"
#include "evloop.h"
#include "util.h"
#include "virtio.h"
#include "vm.h"

#define PCI_CAP_VNDR 0x09
#define PCI_CAP_MSIX 0x11
#define CFG_COMMON VIRTIO_PCI_CAP_COMMON_CFG
#define CFG_NOTIFY VIRTIO_PCI_CAP_NOTIFY_CFG
#define CFG_ISR VIRTIO_PCI_CAP_ISR_CFG
#define CFG_DEVICE VIRTIO_PCI_CAP_DEVICE_CFG
/* A register's offset in the common configuration structure. */
#define CC(field) offsetof(struct virtio_pci_common_cfg, field)
#define MSIX_ENABLE 0x8000
#define MSIX_FMASK 0x4000

void virtio_irq(struct virtio_dev *d, uint16_t vector, uint8_t isr_bit);
static void sync_kicks(struct virtio_dev *d);

static uint16_t msix_control(struct virtio_dev *d)
{
	return get_le16(d->pci.cfg + d->msix_cap + 2);
}

/*
 * The vector's irqfd, routed (KVM_SET_GSI_ROUTING) to its current address and
 * data; the route is rewritten only when the guest reprograms the entry.
 * -1 where there is no KVM (device-level tests) or the host refuses. Under d->lock.
 */
static int vector_irqfd(struct virtio_dev *d, uint16_t v, uint64_t addr, uint32_t data)
{
	struct vm *vm = d->vm;
	if (!vm_has_eventfds(vm))
		return -1;
	if (d->irqfd[v].fd <= 0) {
		int gsi = vm_msi_route(vm, addr, data);
		int fd = gsi < 0 ? -1 : eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (fd < 0 || vm_irqfd(vm, fd, gsi, true) < 0) {
			if (fd >= 0)
				close(fd);
			d->irqfd[v].fd = -1;	/* do not try again: KVM_SIGNAL_MSI it is */
			return -1;
		}
		d->irqfd[v].fd = fd;
		d->irqfd[v].gsi = gsi;
	} else if (d->irqfd[v].addr != addr || d->irqfd[v].data != data) {
		if (vm_msi_route_update(vm, d->irqfd[v].gsi, addr, data) < 0)
			return -1;
	}
	d->irqfd[v].addr = addr;
	d->irqfd[v].data = data;
	return d->irqfd[v].fd;
}

/* Deliver an interrupt: MSI-X vector if enabled, else INTx with the ISR bit. */
void virtio_irq(struct virtio_dev *d, uint16_t vector, uint8_t isr_bit)
{
	pthread_mutex_lock(&d->lock);
	uint16_t ctl = msix_control(d);
	if (ctl & MSIX_ENABLE) {
		if (vector <= d->nr_queues) {
			struct virtio_msix_entry *e = &d->msix[vector];
			if ((ctl & MSIX_FMASK) || (e->ctrl & 1)) {
				d->msix_pending |= 1ULL << vector;
			} else {
				uint64_t addr = (uint64_t)e->addr_hi << 32 | e->addr_lo;
				uint32_t data = e->data;
				int fd = d->irqfd[vector].fd < 0 ? -1 : vector_irqfd(d, vector, addr, data);
				pthread_mutex_unlock(&d->lock);
				uint64_t one = 1;
				if (fd >= 0 && write(fd, &one, sizeof(one)) == sizeof(one))
					__atomic_add_fetch(&d->vm->irqfd_msis, 1, __ATOMIC_RELAXED);
				else
					vm_msi(d->vm, addr, data);
				return;
			}
		}
	} else {
		d->isr |= isr_bit;
		pci_dev_irq(&d->pci, 1);
	}
	pthread_mutex_unlock(&d->lock);
}

void virtio_config_irq(struct virtio_dev *d)
{
	d->config_gen++;
	virtio_irq(d, d->msix_config, 2);
}

static void reset(struct virtio_dev *d)
{
	d->status = 0;
	d->driver_features = 0;
	d->dfselect = d->gfselect = 0;
	d->queue_sel = 0;
	d->isr = 0;
	d->msix_config = VIRTIO_NO_VECTOR;
	for (int i = 0; i < d->nr_queues; i++) {
		struct virtq *q = &d->q[i];
		pthread_mutex_lock(&q->lock);
		q->enabled = false;
		q->size = VIRTQ_MAX_SIZE;
		q->desc = q->avail = q->used = 0;
		q->last_avail = q->used_idx = 0;
		q->msix_vector = VIRTIO_NO_VECTOR;
		pthread_mutex_unlock(&q->lock);
	}
	d->broken = false;	/* only now: no queue is enabled for a device thread to walk again */
	pci_dev_irq(&d->pci, 0);
	if (d->ops->reset)
		d->ops->reset(d);
}

static struct virtq *selected(struct virtio_dev *d)
{
	return d->queue_sel < d->nr_queues ? &d->q[d->queue_sel] : NULL;
}

/* Enabling a queue: its rings must lie in RAM, suitably aligned. */
static void enable_queue(struct virtio_dev *d, struct virtq *q)
{
	const struct guest_mem *m = &d->vm->mem;
	if ((q->desc & 15) || (q->avail & 1) || (q->used & 3) || !guest_ptr(m, q->desc, 16ULL * q->size) ||
	    !guest_ptr(m, q->avail, 6 + 2ULL * q->size) || !guest_ptr(m, q->used, 6 + 8ULL * q->size)) {
		pr_warn("%s: queue rings outside guest RAM or misaligned: device needs reset", d->name);
		d->broken = true;
		d->status |= VIRTIO_STATUS_NEEDS_RESET;
		return;
	}
	q->enabled = true;
}

static uint64_t common_read(struct virtio_dev *d, uint64_t off)
{
	struct virtq *q = selected(d);
	switch (off) {
	case CC(device_feature_select): return d->dfselect;
	case CC(device_feature): return d->dfselect < 2 ? (uint32_t)(d->features >> (32 * d->dfselect)) : 0;
	case CC(guest_feature_select): return d->gfselect;
	case CC(guest_feature): return d->gfselect < 2 ? (uint32_t)(d->driver_features >> (32 * d->gfselect)) : 0;
	case CC(msix_config): return d->msix_config;
	case CC(num_queues): return d->nr_queues;
	case CC(device_status): return d->status;
	case CC(config_generation): return d->config_gen;
	case CC(queue_select): return d->queue_sel;
	case CC(queue_size): return q ? q->size : 0;
	case CC(queue_msix_vector): return q ? q->msix_vector : VIRTIO_NO_VECTOR;
	case CC(queue_enable): return q ? q->enabled : 0;
	case CC(queue_notify_off): return d->queue_sel;	/* notify offset = queue index */
	case CC(queue_desc_lo): return q ? (uint32_t)q->desc : 0;
	case CC(queue_desc_hi): return q ? q->desc >> 32 : 0;
	case CC(queue_avail_lo): return q ? (uint32_t)q->avail : 0;
	case CC(queue_avail_hi): return q ? q->avail >> 32 : 0;
	case CC(queue_used_lo): return q ? (uint32_t)q->used : 0;
	case CC(queue_used_hi): return q ? q->used >> 32 : 0;
	}
	return 0;
}

static void set_lo(uint64_t *v, uint32_t x) { *v = (*v & ~0xffffffffULL) | x; }
static void set_hi(uint64_t *v, uint32_t x) { *v = (*v & 0xffffffffULL) | (uint64_t)x << 32; }

static void common_write(struct virtio_dev *d, uint64_t off, uint32_t v)
{
	struct virtq *q = selected(d);
	/* Queue layout is frozen once the queue is enabled. */
	bool q_open = q && !q->enabled;
	switch (off) {
	case CC(device_feature_select): d->dfselect = v; break;
	case CC(guest_feature_select): d->gfselect = v; break;
	case CC(guest_feature):
		if (d->gfselect < 2 && !(d->status & VIRTIO_STATUS_FEATURES_OK)) {
			uint64_t mask = 0xffffffffULL << (32 * d->gfselect);
			d->driver_features = (d->driver_features & ~mask) | (((uint64_t)v << (32 * d->gfselect)) & mask);
		}
		break;
	case CC(msix_config): d->msix_config = v; break;
	case CC(device_status):
		if (v == 0) {
			reset(d);
			sync_kicks(d);
			break;
		}
		/* FEATURES_OK only for a subset of what we offer that includes VERSION_1. */
		if ((v & VIRTIO_STATUS_FEATURES_OK) && !(d->status & VIRTIO_STATUS_FEATURES_OK) &&
		    ((d->driver_features & ~d->features) || !(d->driver_features & (1ULL << VIRTIO_F_VERSION_1))))
			v &= ~VIRTIO_STATUS_FEATURES_OK;
		d->status = (d->status & VIRTIO_STATUS_NEEDS_RESET) | (v & ~VIRTIO_STATUS_NEEDS_RESET);
		sync_kicks(d);
		break;
	case CC(queue_select): d->queue_sel = v; break;
	case CC(queue_size):
		if (q_open && v && v <= VIRTQ_MAX_SIZE && !(v & (v - 1)))
			q->size = v;
		break;
	case CC(queue_msix_vector): if (q) q->msix_vector = v; break;
	case CC(queue_enable): if (q_open && v == 1) enable_queue(d, q); break;
	case CC(queue_desc_lo): if (q_open) set_lo(&q->desc, v); break;
	case CC(queue_desc_hi): if (q_open) set_hi(&q->desc, v); break;
	case CC(queue_avail_lo): if (q_open) set_lo(&q->avail, v); break;
	case CC(queue_avail_hi): if (q_open) set_hi(&q->avail, v); break;
	case CC(queue_used_lo): if (q_open) set_lo(&q->used, v); break;
	case CC(queue_used_hi): if (q_open) set_hi(&q->used, v); break;
	}
}

static void msix_deliver_pending(struct virtio_dev *d)
{
	for (int v = 0; v <= d->nr_queues; v++) {
		if (!(d->msix_pending & (1ULL << v)) || (d->msix[v].ctrl & 1) || (msix_control(d) & MSIX_FMASK))
			continue;
		d->msix_pending &= ~(1ULL << v);
		vm_msi(d->vm, (uint64_t)d->msix[v].addr_hi << 32 | d->msix[v].addr_lo, d->msix[v].data);
	}
}

static void bar_read(void *ctx, uint64_t off, void *data, int len)
{
	struct virtio_dev *d = ctx;
	uint64_t v = 0;
	pthread_mutex_lock(&d->lock);
	if (off < VPCI_ISR) {
		v = common_read(d, off);	/* drivers use each register's own width */
	} else if (off == VPCI_ISR) {
		v = d->isr;	/* reading clears it and lowers INTx */
		d->isr = 0;
		pci_dev_irq(&d->pci, 0);
	} else if (off >= VPCI_DEVICE && off < VPCI_DEVICE + d->config_len) {
		uint8_t buf[8] = { 0 };
		uint64_t o = off - VPCI_DEVICE;
		memcpy(buf, d->config + o, MIN((uint64_t)len, d->config_len - o));
		v = bytes_to_u64(buf, len);
	} else if (off >= VPCI_MSIX_TABLE && off < VPCI_MSIX_TABLE + 16 * (uint64_t)(d->nr_queues + 1)) {
		uint32_t *e = (uint32_t *)&d->msix[(off - VPCI_MSIX_TABLE) / 16];
		v = e[(off & 15) / 4];
	} else if (off >= VPCI_MSIX_PBA && off < VPCI_MSIX_PBA + 8) {
		v = d->msix_pending >> (8 * (off - VPCI_MSIX_PBA));
	}
	pthread_mutex_unlock(&d->lock);
	u64_to_bytes(data, len, v);
}

static void bar_write(void *ctx, uint64_t off, const void *data, int len)
{
	struct virtio_dev *d = ctx;
	uint32_t v = (uint32_t)bytes_to_u64(data, MIN(len, 4));
	if (off >= VPCI_NOTIFY && off < VPCI_NOTIFY + VPCI_NOTIFY_MULT * (uint64_t)d->nr_queues) {
		/* Kicks skip the register lock: the device's own thread takes it from here. */
		if (d->status & VIRTIO_STATUS_DRIVER_OK)
			d->ops->notify(d, (off - VPCI_NOTIFY) / VPCI_NOTIFY_MULT);
		return;
	}
	pthread_mutex_lock(&d->lock);
	if (off < VPCI_ISR) {
		common_write(d, off, v);
	} else if (off >= VPCI_DEVICE && off < VPCI_DEVICE + d->config_len && d->ops->config_write) {
		if (off + len <= VPCI_DEVICE + d->config_len)
			d->ops->config_write(d, off - VPCI_DEVICE, data, len);
	} else if (off >= VPCI_MSIX_TABLE && off < VPCI_MSIX_TABLE + 16 * (uint64_t)(d->nr_queues + 1) && len == 4) {
		uint32_t *e = (uint32_t *)&d->msix[(off - VPCI_MSIX_TABLE) / 16];
		e[(off & 15) / 4] = v;
		msix_deliver_pending(d);
	}
	pthread_mutex_unlock(&d->lock);
}

static const struct bus_ops bar_ops = { .read = bar_read, .write = bar_write };

/*
 * Kicks through ioeventfd: KVM completes the guest's 16-bit write to a queue's
 * notify address itself and signals an eventfd, which the event loop turns
 * into ops->notify(). No exit to lkvm on the vCPU's path. Other widths, and
 * hosts without ioeventfd, still reach bar_write() as MMIO.
 */
static void kick_ready(void *ctx, uint32_t events)
{
	struct virtq *q = ctx;
	struct virtio_dev *d = q->dev;
	uint64_t v;
	int qi = q - d->q;
	if (read(d->kick_fd[qi], &v, sizeof(v)) == sizeof(v) && (d->status & VIRTIO_STATUS_DRIVER_OK)) {
		__atomic_add_fetch(&d->vm->ioeventfd_kicks, v, __ATOMIC_RELAXED);
		d->ops->notify(d, qi);
	}
}

/*
 * The ioeventfds are registered only while the driver runs the device
 * (DRIVER_OK) at a mapped BAR0, as QEMU does: a guest that never uses the
 * device costs KVM no bus entries, and tearing those down takes KVM a grace
 * period at exit (about 12 ms here). Under d->lock.
 */
static void sync_kicks(struct virtio_dev *d)
{
	struct pci_bar *b = &d->pci.bar[0];
	uint64_t want = (d->status & VIRTIO_STATUS_DRIVER_OK) && b->mapped ? b->addr : 0;
	if (want == d->kicks_at)
		return;
	for (int i = 0; i < d->nr_queues; i++) {
		if (d->kick_fd[i] < 0)
			continue;
		if (d->kicks_at)
			vm_ioeventfd(d->vm, d->kicks_at + VPCI_NOTIFY + VPCI_NOTIFY_MULT * i, 2, d->kick_fd[i], false, false);
		if (want && vm_ioeventfd(d->vm, want + VPCI_NOTIFY + VPCI_NOTIFY_MULT * i, 2, d->kick_fd[i], false, true) < 0)
			pr_debug("%s: queue %d kicks stay MMIO exits: %s", d->name, i, err_msg());
	}
	d->kicks_at = want;
}

static void bar_moved(struct pci_dev *p, int n, uint64_t addr, bool mapped)
{
	struct virtio_dev *d = p->priv;
	if (n != 0)
		return;
	pthread_mutex_lock(&d->lock);
	sync_kicks(d);
	pthread_mutex_unlock(&d->lock);
}

static void setup_kick_fds(struct virtio_dev *d)
{
	for (int i = 0; i < d->nr_queues; i++) {
		d->kick_fd[i] = -1;
		d->q[i].dev = d;
		if (!vm_has_eventfds(d->vm))
			continue;	/* no KVM (device-level tests): kicks are MMIO writes */
		int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (fd >= 0 && evloop_add(d->vm->loop, fd, EPOLLIN, kick_ready, &d->q[i]) == 0)
			d->kick_fd[i] = fd;
		else if (fd >= 0)
			close(fd);
	}
	d->pci.bar_moved = bar_moved;
}

/*
 * Undo virtio_pci_register for a device being destroyed (its threads are
 * stopped and the event loop no longer runs): kicks and irqfds released, the
 * function taken off the PCI bus.
 */
void virtio_pci_unregister(struct virtio_dev *d)
{
	pthread_mutex_lock(&d->lock);
	d->status = 0;
	sync_kicks(d);	/* no DRIVER_OK: every ioeventfd deassigned */
	pthread_mutex_unlock(&d->lock);
	for (int i = 0; i < d->nr_queues; i++) {
		if (d->kick_fd[i] >= 0) {
			evloop_del(d->vm->loop, d->kick_fd[i]);
			close(d->kick_fd[i]);
			d->kick_fd[i] = -1;
		}
	}
	for (int v = 0; v <= d->nr_queues; v++) {
		if (d->irqfd[v].fd > 0) {
			vm_irqfd(d->vm, d->irqfd[v].fd, d->irqfd[v].gsi, false);
			close(d->irqfd[v].fd);
		}
		d->irqfd[v].fd = 0;
	}
	pci_unregister(&d->pci);
	for (int i = 0; i < d->nr_queues; i++)
		pthread_mutex_destroy(&d->q[i].lock);
	pthread_mutex_destroy(&d->lock);
}

int virtio_pci_set_queues(struct virtio_dev *d, int n)
{
	if (n < 1 || n > d->nr_queues)
		return err_set("%s: %d queues, it has %d", d->name, n, d->nr_queues);
	pthread_mutex_lock(&d->lock);
	if (d->kicks_at || (d->status & VIRTIO_STATUS_DRIVER_OK)) {
		pthread_mutex_unlock(&d->lock);
		return err_set("%s: its queues change only before a driver runs it", d->name);
	}
	for (int i = n; i < d->nr_queues; i++) {
		if (d->kick_fd[i] >= 0) {
			evloop_del(d->vm->loop, d->kick_fd[i]);
			close(d->kick_fd[i]);
			d->kick_fd[i] = -1;
		}
		pthread_mutex_destroy(&d->q[i].lock);
		memset(&d->q[i], 0, sizeof(d->q[i]));
	}
	if (d->notify_cap > 0)
		put_le32(d->pci.cfg + d->notify_cap + 12, VPCI_NOTIFY_MULT * n);
	put_le16(d->pci.cfg + d->msix_cap + 2, (msix_control(d) & ~0x7ffu) | n);
	d->nr_queues = n;
	pthread_mutex_unlock(&d->lock);
	return 0;
}

/* Unmasking MSI-X (function mask or enable) may release pending vectors. */
static void cfg_written(struct pci_dev *p, unsigned off, int len)
{
	struct virtio_dev *d = p->priv;
	if (off + len > (unsigned)d->msix_cap + 2 && off <= (unsigned)d->msix_cap + 3) {
		pthread_mutex_lock(&d->lock);
		msix_deliver_pending(d);
		pthread_mutex_unlock(&d->lock);
	}
}

static int add_vndr_cap(struct pci_dev *p, uint8_t type, uint32_t off, uint32_t len, bool notify)
{
	uint8_t cap[20] = { PCI_CAP_VNDR, 0, notify ? 20 : 16, type, 0 /* BAR0 */ };
	put_le32(cap + 8, off);
	put_le32(cap + 12, len);
	if (notify)
		put_le32(cap + 16, VPCI_NOTIFY_MULT);
	return pci_dev_add_cap(p, cap, notify ? 20 : 16);
}

int virtio_pci_register(struct vm *vm, struct virtio_dev *d)
{
	d->vm = vm;
	d->features |= 1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_F_INDIRECT_DESC;
	pthread_mutex_init(&d->lock, NULL);
	for (int i = 0; i < d->nr_queues; i++)
		pthread_mutex_init(&d->q[i].lock, NULL);
	for (int i = 0; i <= d->nr_queues; i++)
		d->msix[i].ctrl = 1;	/* vectors start masked */
	reset(d);

	struct pci_dev *p = &d->pci;
	static const uint32_t classes[] = { [1] = 0x020000, [2] = 0x010000, [3] = 0x078000, [4] = 0x00ff00 };
	uint32_t cls = d->device_id < ARRAY_SIZE(classes) && classes[d->device_id] ? classes[d->device_id] : 0x00ff00;
	pci_dev_init(p, 0x1af4, 0x1040 + d->device_id, cls, 0x1af4, 0x1040 + d->device_id);
	p->cfg[0x08] = 1;	/* revision 1: modern only */
	p->name = d->name;
	p->priv = d;
	p->cfg_written = cfg_written;
	pci_dev_set_bar(p, 0, VPCI_BAR_SIZE, false, &bar_ops, d);
	setup_kick_fds(d);
	add_vndr_cap(p, CFG_COMMON, VPCI_COMMON, sizeof(struct virtio_pci_common_cfg), false);
	d->notify_cap = add_vndr_cap(p, CFG_NOTIFY, VPCI_NOTIFY, VPCI_NOTIFY_MULT * d->nr_queues, true);
	add_vndr_cap(p, CFG_ISR, VPCI_ISR, 1, false);
	add_vndr_cap(p, CFG_DEVICE, VPCI_DEVICE, d->config_len ? d->config_len : 4, false);
	uint8_t msix[12] = { PCI_CAP_MSIX, 0 };
	put_le16(msix + 2, d->nr_queues);	/* table size - 1: one vector per queue + config */
	put_le32(msix + 4, VPCI_MSIX_TABLE);	/* BAR0 */
	put_le32(msix + 8, VPCI_MSIX_PBA);
	d->msix_cap = pci_dev_add_cap(p, msix, sizeof(msix));
	if (d->msix_cap < 0)
		return err_set("%s: no room for the MSI-X capability", d->name);
	p->wmask[d->msix_cap + 3] = 0xc0;	/* enable and function mask */
	return pci_register(vm, p);
}

/* ---- snapshots ---- */

int virtio_pci_save(struct virtio_dev *d, struct snap_writer *w)
{
	pci_dev_save(&d->pci, w);
	pthread_mutex_lock(&d->lock);
	snap_u64(w, d->features);
	snap_u64(w, d->driver_features);
	snap_u8(w, d->status);
	snap_u32(w, d->dfselect);
	snap_u32(w, d->gfselect);
	snap_u16(w, d->queue_sel);
	snap_u16(w, d->msix_config);
	snap_u8(w, d->isr);
	snap_u8(w, d->config_gen);
	snap_bool(w, d->broken);
	snap_u64(w, d->msix_pending);
	snap_u8(w, d->nr_queues);
	for (int v = 0; v <= d->nr_queues; v++) {
		snap_u32(w, d->msix[v].addr_lo);
		snap_u32(w, d->msix[v].addr_hi);
		snap_u32(w, d->msix[v].data);
		snap_u32(w, d->msix[v].ctrl);
	}
	for (int i = 0; i < d->nr_queues; i++) {
		struct virtq *q = &d->q[i];
		pthread_mutex_lock(&q->lock);
		snap_u16(w, q->size);
		snap_bool(w, q->enabled);
		snap_u64(w, q->desc);
		snap_u64(w, q->avail);
		snap_u64(w, q->used);
		snap_u16(w, q->msix_vector);
		snap_u16(w, q->last_avail);
		snap_u16(w, q->used_idx);
		pthread_mutex_unlock(&q->lock);
	}
	pthread_mutex_unlock(&d->lock);
	return 0;
}

int virtio_pci_load(struct virtio_dev *d, struct snap_reader *r)
{
	if (pci_dev_load(&d->pci, r) < 0)
		return -1;
	uint64_t features = snap_get_u64(r), driver = snap_get_u64(r);
	uint8_t status = snap_get_u8(r);
	uint32_t dfselect = snap_get_u32(r), gfselect = snap_get_u32(r);
	uint16_t queue_sel = snap_get_u16(r), msix_config = snap_get_u16(r);
	uint8_t isr = snap_get_u8(r), config_gen = snap_get_u8(r);
	bool broken = snap_get_bool(r);
	uint64_t pending = snap_get_u64(r);
	int nq = snap_get_u8(r);
	if (snap_failed(r))
		return -1;
	if (nq != d->nr_queues)
		return snap_bad(r, "%s had %d queues, this one has %d", d->name, nq, d->nr_queues);
	/* The driver keeps what it negotiated: the device must still offer all of it. */
	if (driver & ~d->features)
		return snap_bad(r, "%s: the guest's driver uses features 0x%llx this device does not offer now "
				"(offered then 0x%llx, now 0x%llx)", d->name, (unsigned long long)(driver & ~d->features),
				(unsigned long long)features, (unsigned long long)d->features);
	struct virtio_msix_entry msix[VIRTIO_MAX_QUEUES + 1];
	for (int v = 0; v <= nq; v++) {
		msix[v].addr_lo = snap_get_u32(r);
		msix[v].addr_hi = snap_get_u32(r);
		msix[v].data = snap_get_u32(r);
		msix[v].ctrl = snap_get_u32(r);
	}
	struct virtq q[VIRTIO_MAX_QUEUES];
	const struct guest_mem *m = &d->vm->mem;
	for (int i = 0; i < nq; i++) {
		q[i].size = snap_get_u16(r);
		q[i].enabled = snap_get_bool(r);
		q[i].desc = snap_get_u64(r);
		q[i].avail = snap_get_u64(r);
		q[i].used = snap_get_u64(r);
		q[i].msix_vector = snap_get_u16(r);
		q[i].last_avail = snap_get_u16(r);
		q[i].used_idx = snap_get_u16(r);
		if (snap_failed(r))
			return -1;
		if (!q[i].size || q[i].size > VIRTQ_MAX_SIZE || (q[i].size & (q[i].size - 1)))
			return snap_bad(r, "%s queue %d: size %u", d->name, i, q[i].size);
		/* An enabled queue passed enable_queue()'s checks when the driver enabled it. */
		if (q[i].enabled && ((q[i].desc & 15) || (q[i].avail & 1) || (q[i].used & 3) ||
				     !guest_ptr(m, q[i].desc, 16ULL * q[i].size) ||
				     !guest_ptr(m, q[i].avail, 6 + 2ULL * q[i].size) ||
				     !guest_ptr(m, q[i].used, 6 + 8ULL * q[i].size)))
			return snap_bad(r, "%s queue %d: rings outside guest RAM or misaligned", d->name, i);
	}
	pthread_mutex_lock(&d->lock);
	d->driver_features = driver;
	d->status = status;
	d->dfselect = dfselect;
	d->gfselect = gfselect;
	d->queue_sel = queue_sel;
	d->msix_config = msix_config;
	d->isr = isr;
	d->config_gen = config_gen;
	d->broken = broken;
	d->msix_pending = pending & ((2ULL << nq) - 1);
	memcpy(d->msix, msix, (nq + 1) * sizeof(msix[0]));
	for (int i = 0; i < nq; i++) {
		struct virtq *dq = &d->q[i];
		pthread_mutex_lock(&dq->lock);
		dq->size = q[i].size;
		dq->enabled = q[i].enabled;
		dq->desc = q[i].desc;
		dq->avail = q[i].avail;
		dq->used = q[i].used;
		dq->msix_vector = q[i].msix_vector;
		dq->last_avail = q[i].last_avail;
		dq->used_idx = q[i].used_idx;
		pthread_mutex_unlock(&dq->lock);
	}
	sync_kicks(d);		/* ioeventfds at BAR0 again while the driver runs the device */
	/*
	 * A kick the guest made just before the save may have waited in its
	 * eventfd, unseen: one kick per running queue, taken when the event loop
	 * starts, makes the device look at every ring once.
	 */
	if (status & VIRTIO_STATUS_DRIVER_OK) {
		for (int i = 0; i < nq; i++) {
			uint64_t one = 1;
			if (q[i].enabled && d->kick_fd[i] >= 0 && write(d->kick_fd[i], &one, sizeof(one)) < 0) {}
		}
	}
	pthread_mutex_unlock(&d->lock);
	return 0;
}
