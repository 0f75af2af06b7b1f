/*
 * A guest's virtio-pci driver played against lkvm's real device code on a
 * fake VM (fake_vm.h), for the device-level unit tests, the fuzz targets and
 * bench/devices.c: the modern transport reached through bus_access() on BAR0,
 * feature negotiation, MSI-X vectors, any number of split virtqueues with
 * their rings anywhere in guest RAM, descriptors (direct or in indirect
 * tables), batches of chains made available with one kick, several requests
 * in flight, and the used ring read back in order. It checks nothing itself:
 * set-up steps return -1 when the device refuses, callers assert.
 */
#ifndef LKVM_TESTS_VIRTIO_DRIVER_H
#define LKVM_TESTS_VIRTIO_DRIVER_H

#include <stdbool.h>
#include <stdint.h>
#include "pci.h"
#include "vm.h"

/* Descriptor flags (virtio 1.2, 2.7.5) and the avail ring's flag. */
#define VD_F_NEXT 1
#define VD_F_WRITE 2
#define VD_F_INDIRECT 4
#define VD_AVAIL_NO_INTERRUPT 1

struct vdev {			/* one virtio-pci function, as its driver sees it */
	struct vm *vm;
	struct pci_dev *pci;
	uint64_t bar;		/* BAR0: common config, ISR, device config, notify, MSI-X */
};

struct vq {			/* one split virtqueue the driver set up */
	struct vdev *dev;
	uint16_t qi, size;
	uint64_t desc, avail, used;	/* guest addresses of the three parts */
	uint8_t *avail_p, *used_p;	/* and the rings' host addresses */
	uint16_t avail_idx;	/* what the driver published */
	uint16_t last_used;	/* the next used entry it will read */
};

/* The function's BAR0 as its config space says now (after BAR assignment). */
void vdev_attach(struct vdev *d, struct vm *vm, struct pci_dev *p);
uint64_t vdev_read(struct vdev *d, uint64_t off, int len);
void vdev_write(struct vdev *d, uint64_t off, uint64_t val, int len);
/* Where the PCI capability with this ID starts in config space, 0 if none. */
int vdev_find_cap(struct vdev *d, uint8_t id);

/* Writing 0 to the status register: the device resets. */
void vdev_reset(struct vdev *d);
/* What the device offers, all 64 bits. */
uint64_t vdev_offered(struct vdev *d);
/* ACKNOWLEDGE, DRIVER, these features, FEATURES_OK: -1 if the device refuses them. */
int vdev_negotiate(struct vdev *d, uint64_t features);
/*
 * MSI-X on (or off with nvec 0): vectors 0..nvec-1 to 0xfee00000 with data
 * data0 + v, unmasked; config changes on config_vector (VIRTIO_NO_VECTOR: none).
 */
void vdev_msix(struct vdev *d, int nvec, uint32_t data0, uint16_t config_vector);
/* Status ACKNOWLEDGE, DRIVER, FEATURES_OK and DRIVER_OK: -1 if it does not read back so. */
int vdev_driver_ok(struct vdev *d);

/*
 * The driver's view of queue qi, set up before (by another driver, or before
 * a snapshot was restored): it goes on where the rings stand. -1 if they are
 * not in RAM.
 */
int vq_bind(struct vq *q, struct vdev *d, uint16_t qi, uint16_t size, uint64_t desc, uint64_t avail, uint64_t used);
/*
 * Queue qi of size entries with its rings at desc, avail and used (cleared
 * first), on MSI-X vector (< 0: the register is not written), enabled.
 * -1 if the device did not take it.
 */
int vq_setup(struct vq *q, struct vdev *d, uint16_t qi, uint16_t size, uint64_t desc, uint64_t avail,
	     uint64_t used, int vector);
/* Program the bound queue's size, rings and vector (< 0: not written) as they are, and enable it. */
int vq_enable(struct vq *q, int vector);
/* The usual layout: desc at ring, avail at ring + 0x1000, used at ring + 0x2000. */
int vq_setup_at(struct vq *q, struct vdev *d, uint16_t qi, uint16_t size, uint64_t ring, int vector);

/* Entry i of a descriptor table at gpa table (the ring's own, or an indirect one). */
void vdesc_put(struct vm *vm, uint64_t table, int i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next);
/* Entry i of the queue's own table. */
void vq_desc(struct vq *q, int i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next);
/* Make the chain at head available (no kick: a batch is kicked once). */
void vq_add(struct vq *q, uint16_t head);
void vq_kick(struct vq *q);
/*
 * Kick unless the used ring's flags say VRING_USED_F_NO_NOTIFY (the device
 * watches the ring), as Linux's driver does without event indices; whether
 * it kicked. The avail index is published before the flags are read.
 */
bool vq_kick_prepared(struct vq *q);
static inline void vq_post(struct vq *q, uint16_t head) { vq_add(q, head); vq_kick(q); }
/* The avail ring's flags (VD_AVAIL_NO_INTERRUPT). */
void vq_avail_flags(struct vq *q, uint16_t flags);

/* The used ring's index as the device left it. */
uint16_t vq_used_idx(struct vq *q);
/* Whether the device used a chain the driver has not read yet. */
bool vq_pending(struct vq *q);
/* The next used chain: its head and the bytes written; false if none. */
bool vq_used(struct vq *q, uint16_t *id, uint32_t *len);
/*
 * Until the queue has a used chain to read, at most timeout_ms: 0, or -1. Only
 * an interrupt wakes it (fake_irq_wait() without polling): for queues whose
 * interrupts are on.
 */
int vq_wait(struct vq *q, int timeout_ms);

#endif
