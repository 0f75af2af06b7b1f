/* The guest virtio-pci driver of tests/lib/virtio_driver.h. */
#include <string.h>
#include "fake_vm.h"
#include "util.h"
#include "virtio.h"
#include "virtio_driver.h"

/* The modern common configuration structure (virtio 1.2, 4.1.4.3), at BAR0 + VPCI_COMMON. */
#define C_DFSELECT	0x00
#define C_DF		0x04
#define C_GFSELECT	0x08
#define C_GF		0x0c
#define C_MSIX		0x10
#define C_STATUS	0x14
#define C_Q_SELECT	0x16
#define C_Q_SIZE	0x18
#define C_Q_MSIX	0x1a
#define C_Q_ENABLE	0x1c
#define C_Q_DESC	0x20
#define C_Q_AVAIL	0x28
#define C_Q_USED	0x30
#define PCI_CAP_MSIX	0x11

void vdev_attach(struct vdev *d, struct vm *vm, struct pci_dev *p)
{
	d->vm = vm;
	d->pci = p;
	d->bar = pci_cfg_read(p, 0x10, 4) & ~0xfULL;
}

uint64_t vdev_read(struct vdev *d, uint64_t off, int len)
{
	uint64_t v = 0;
	bus_access(&d->vm->mmio, d->bar + off, &v, len, false);
	return v;
}

void vdev_write(struct vdev *d, uint64_t off, uint64_t val, int len)
{
	bus_access(&d->vm->mmio, d->bar + off, &val, len, true);
}

int vdev_find_cap(struct vdev *d, uint8_t id)
{
	for (int o = pci_cfg_read(d->pci, 0x34, 1); o; o = pci_cfg_read(d->pci, o + 1, 1))
		if (pci_cfg_read(d->pci, o, 1) == id)
			return o;
	return 0;
}

void vdev_reset(struct vdev *d)
{
	vdev_write(d, VPCI_COMMON + C_STATUS, 0, 1);
}

uint64_t vdev_offered(struct vdev *d)
{
	uint64_t f = 0;
	for (int i = 0; i < 2; i++) {
		vdev_write(d, VPCI_COMMON + C_DFSELECT, i, 4);
		f |= vdev_read(d, VPCI_COMMON + C_DF, 4) << (32 * i);
	}
	return f;
}

int vdev_negotiate(struct vdev *d, uint64_t features)
{
	uint8_t st = VIRTIO_STATUS_ACK | VIRTIO_STATUS_DRIVER;
	vdev_write(d, VPCI_COMMON + C_STATUS, st, 1);
	vdev_write(d, VPCI_COMMON + C_GFSELECT, 0, 4);
	vdev_write(d, VPCI_COMMON + C_GF, (uint32_t)features, 4);
	vdev_write(d, VPCI_COMMON + C_GFSELECT, 1, 4);
	vdev_write(d, VPCI_COMMON + C_GF, features >> 32, 4);
	vdev_write(d, VPCI_COMMON + C_STATUS, st | VIRTIO_STATUS_FEATURES_OK, 1);
	return vdev_read(d, VPCI_COMMON + C_STATUS, 1) & VIRTIO_STATUS_FEATURES_OK ? 0 : -1;
}

void vdev_msix(struct vdev *d, int nvec, uint32_t data0, uint16_t config_vector)
{
	int cap = vdev_find_cap(d, PCI_CAP_MSIX);
	if (cap)
		pci_cfg_write(d->pci, cap + 2, nvec ? 0x8000 : 0, 2);	/* MSI-X enable */
	for (int v = 0; v < nvec; v++) {
		vdev_write(d, VPCI_MSIX_TABLE + 16 * v, 0xfee00000, 4);
		vdev_write(d, VPCI_MSIX_TABLE + 16 * v + 4, 0, 4);
		vdev_write(d, VPCI_MSIX_TABLE + 16 * v + 8, data0 + v, 4);
		vdev_write(d, VPCI_MSIX_TABLE + 16 * v + 12, 0, 4);	/* unmasked */
	}
	if (nvec)
		vdev_write(d, VPCI_COMMON + C_MSIX, config_vector, 2);
}

int vdev_driver_ok(struct vdev *d)
{
	uint8_t st = VIRTIO_STATUS_ACK | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK;
	vdev_write(d, VPCI_COMMON + C_STATUS, st, 1);
	return vdev_read(d, VPCI_COMMON + C_STATUS, 1) == st ? 0 : -1;
}

int vq_bind(struct vq *q, struct vdev *d, uint16_t qi, uint16_t size, uint64_t desc, uint64_t avail, uint64_t used)
{
	memset(q, 0, sizeof(*q));
	q->dev = d;
	q->qi = qi;
	q->size = size;
	q->desc = desc;
	q->avail = avail;
	q->used = used;
	q->avail_p = guest_ptr(&d->vm->mem, avail, 6 + 2 * size);
	q->used_p = guest_ptr(&d->vm->mem, used, 6 + 8 * size);
	if (!q->avail_p || !q->used_p || !guest_ptr(&d->vm->mem, desc, 16 * size))
		return -1;
	q->avail_idx = get_le16(q->avail_p + 2);
	q->last_used = get_le16(q->used_p + 2);
	return 0;
}

int vq_enable(struct vq *q, int vector)
{
	struct vdev *d = q->dev;
	vdev_write(d, VPCI_COMMON + C_Q_SELECT, q->qi, 2);
	vdev_write(d, VPCI_COMMON + C_Q_SIZE, q->size, 2);
	if (vector >= 0)
		vdev_write(d, VPCI_COMMON + C_Q_MSIX, vector, 2);
	vdev_write(d, VPCI_COMMON + C_Q_DESC, (uint32_t)q->desc, 4);
	vdev_write(d, VPCI_COMMON + C_Q_DESC + 4, q->desc >> 32, 4);
	vdev_write(d, VPCI_COMMON + C_Q_AVAIL, (uint32_t)q->avail, 4);
	vdev_write(d, VPCI_COMMON + C_Q_AVAIL + 4, q->avail >> 32, 4);
	vdev_write(d, VPCI_COMMON + C_Q_USED, (uint32_t)q->used, 4);
	vdev_write(d, VPCI_COMMON + C_Q_USED + 4, q->used >> 32, 4);
	vdev_write(d, VPCI_COMMON + C_Q_ENABLE, 1, 2);
	if (vdev_read(d, VPCI_COMMON + C_Q_ENABLE, 2) != 1)
		return -1;
	if (vector >= 0 && vdev_read(d, VPCI_COMMON + C_Q_MSIX, 2) != (uint16_t)vector)
		return -1;
	return 0;
}

int vq_setup(struct vq *q, struct vdev *d, uint16_t qi, uint16_t size, uint64_t desc, uint64_t avail,
	     uint64_t used, int vector)
{
	if (vq_bind(q, d, qi, size, desc, avail, used))
		return -1;
	memset(guest_ptr(&d->vm->mem, desc, 16 * size), 0, 16 * size);
	memset(q->avail_p, 0, 6 + 2 * size);
	memset(q->used_p, 0, 6 + 8 * size);
	q->avail_idx = q->last_used = 0;
	return vq_enable(q, vector);
}

int vq_setup_at(struct vq *q, struct vdev *d, uint16_t qi, uint16_t size, uint64_t ring, int vector)
{
	return vq_setup(q, d, qi, size, ring, ring + 0x1000, ring + 0x2000, vector);
}

void vdesc_put(struct vm *vm, uint64_t table, int i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	uint8_t *e = guest_ptr(&vm->mem, table + 16 * (uint64_t)i, 16);
	put_le64(e, addr);
	put_le32(e + 8, len);
	put_le16(e + 12, flags);
	put_le16(e + 14, next);
}

void vq_desc(struct vq *q, int i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	vdesc_put(q->dev->vm, q->desc, i, addr, len, flags, next);
}

void vq_add(struct vq *q, uint16_t head)
{
	put_le16(q->avail_p + 4 + 2 * (q->avail_idx % q->size), head);
	q->avail_idx++;
	/* The entry before the index: a device thread may be reading the ring right now. */
	__atomic_store_n((uint16_t *)(q->avail_p + 2), q->avail_idx, __ATOMIC_RELEASE);
}

void vq_kick(struct vq *q)
{
	vdev_write(q->dev, VPCI_NOTIFY + VPCI_NOTIFY_MULT * q->qi, q->qi, 2);
}

bool vq_kick_prepared(struct vq *q)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);	/* Linux: virtio_mb() before it reads the flags */
	if (__atomic_load_n((uint16_t *)q->used_p, __ATOMIC_RELAXED) & VRING_USED_F_NO_NOTIFY)
		return false;
	vq_kick(q);
	return true;
}

void vq_avail_flags(struct vq *q, uint16_t flags)
{
	__atomic_store_n((uint16_t *)q->avail_p, flags, __ATOMIC_RELAXED);
}

uint16_t vq_used_idx(struct vq *q)
{
	return __atomic_load_n((uint16_t *)(q->used_p + 2), __ATOMIC_ACQUIRE);
}

bool vq_pending(struct vq *q)
{
	return vq_used_idx(q) != q->last_used;
}

bool vq_used(struct vq *q, uint16_t *id, uint32_t *len)
{
	if (!vq_pending(q))
		return false;
	const uint8_t *e = q->used_p + 4 + 8 * (q->last_used % q->size);
	*id = get_le32(e);
	*len = get_le32(e + 4);
	q->last_used++;
	return true;
}

static bool pending(void *q) { return vq_pending(q); }

int vq_wait(struct vq *q, int timeout_ms)
{
	return fake_irq_wait(pending, q, timeout_ms, 0);
}
