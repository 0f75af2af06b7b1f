/*
 * virtio 1.x devices over PCI: the virtqueue core (split rings, every
 * descriptor validated through guest_ptr) and the modern PCI transport.
 * A device fills a struct virtio_dev and calls virtio_pci_register().
 */
#ifndef LKVM_VIRTIO_H
#define LKVM_VIRTIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>
#include <linux/virtio_config.h>
#include <linux/virtio_pci.h>
#include <linux/virtio_ring.h>
#include "pci.h"
#include "disk_aio.h"

struct vm;

/* VIRTIO_F_VERSION_1, VIRTIO_CONFIG_S_*: <linux/virtio_config.h>; VIRTIO_RING_F_*: <linux/virtio_ring.h> */
#define VIRTIO_F_INDIRECT_DESC VIRTIO_RING_F_INDIRECT_DESC
#define VIRTQ_MAX_SIZE 256
#define VIRTQ_MAX_SEGS 130	/* per chain: bounded so a request never grows without limit */
#define VIRTIO_MAX_QUEUES 8
#define VIRTIO_NO_VECTOR VIRTIO_MSI_NO_VECTOR

#define VIRTIO_STATUS_ACK VIRTIO_CONFIG_S_ACKNOWLEDGE
#define VIRTIO_STATUS_DRIVER VIRTIO_CONFIG_S_DRIVER
#define VIRTIO_STATUS_DRIVER_OK VIRTIO_CONFIG_S_DRIVER_OK
#define VIRTIO_STATUS_FEATURES_OK VIRTIO_CONFIG_S_FEATURES_OK
#define VIRTIO_STATUS_NEEDS_RESET VIRTIO_CONFIG_S_NEEDS_RESET
#define VIRTIO_STATUS_FAILED VIRTIO_CONFIG_S_FAILED

struct virtq {
	uint16_t size;		/* chosen by the driver, power of two <= VIRTQ_MAX_SIZE */
	bool enabled;
	uint64_t desc, avail, used;	/* guest-physical ring addresses */
	uint16_t msix_vector;
	uint16_t last_avail;	/* next avail entry to consume */
	uint16_t used_idx;	/* next used entry to fill */
	pthread_mutex_t lock;
	struct virtio_dev *dev;	/* back-pointer for the kick eventfd's callback */
};

/* One descriptor chain: readable (out) buffers first, then writable (in) ones. */
struct virtq_chain {
	uint16_t head;
	int nout, nin;
	struct iovec iov[VIRTQ_MAX_SEGS];	/* [0, nout) readable, [nout, nout+nin) writable */
	uint64_t out_len, in_len;
};

struct virtio_dev;
struct virtio_ops {
	void (*notify)(struct virtio_dev *d, int queue);	/* the driver kicked a queue */
	void (*reset)(struct virtio_dev *d);			/* optional */
	/* optional: the driver wrote device config (d->lock held); else it is read-only */
	void (*config_write)(struct virtio_dev *d, uint32_t off, const void *data, int len);
};

struct virtio_msix_entry {
	uint32_t addr_lo, addr_hi, data, ctrl;	/* ctrl bit 0: masked */
};

struct virtio_dev {
	struct vm *vm;
	const char *name;
	uint16_t device_id;
	uint64_t features;		/* offered: device bits plus the transport's */
	uint64_t driver_features;	/* accepted by the driver */
	uint8_t status;
	uint32_t dfselect, gfselect;
	uint16_t queue_sel;
	int nr_queues;
	struct virtq q[VIRTIO_MAX_QUEUES];
	const uint8_t *config;		/* device config space (read-only to the guest) */
	uint32_t config_len;
	uint8_t config_gen;
	uint16_t msix_config;
	uint8_t isr;
	bool broken;			/* a bad chain was seen: stop until reset */
	struct virtio_msix_entry msix[VIRTIO_MAX_QUEUES + 1];
	uint64_t msix_pending;
	const struct virtio_ops *ops;
	void *priv;
	pthread_mutex_t lock;		/* transport registers and interrupt state */
	struct pci_dev pci;
	int msix_cap;			/* config offset of the MSI-X capability */
	int notify_cap;			/* config offset of the notify capability */
	int kick_fd[VIRTIO_MAX_QUEUES];	/* ioeventfd per queue (-1: kicks are MMIO exits) */
	uint64_t kicks_at;		/* BAR0 address the ioeventfds are registered at; 0: none */
	/* irqfd per MSI-X vector: its GSI routes the vector's current address/data. */
	struct { int fd, gsi; uint64_t addr; uint32_t data; } irqfd[VIRTIO_MAX_QUEUES + 1];
};

/* Register d (fields name, device_id, features, nr_queues, config, ops set) as a PCI function. */
int virtio_pci_register(struct vm *vm, struct virtio_dev *d);
/*
 * Fewer queues (1 <= n < nr_queues) before the device runs: a restore of a
 * snapshot whose device had n. The capabilities (notify length, MSI-X table
 * size) say n, the other queues' kick eventfds are released. 0, or -1 with err.
 */
int virtio_pci_set_queues(struct virtio_dev *d, int n);
/* Take it off the bus and release its eventfds (the device is being destroyed). */
void virtio_pci_unregister(struct virtio_dev *d);

struct snap_writer;
struct snap_reader;
/* Snapshots: the transport (PCI config, features, status, MSI-X table, every queue's rings and indexes). */
int virtio_pci_save(struct virtio_dev *d, struct snap_writer *w);
/*
 * The same into the device made by the same options; refused when the
 * driver's features are no longer offered or a ring lies outside RAM. Every
 * running queue gets one kick when the event loop starts.
 */
int virtio_pci_load(struct virtio_dev *d, struct snap_reader *r);

/*
 * Take the next available chain of queue qi: 1 with c filled, 0 if none, -1
 * if the chain is invalid (the device is then marked as needing a reset).
 */
int virtq_pop(struct virtio_dev *d, int qi, struct virtq_chain *c);
/* Return a chain to the driver with len bytes written, and interrupt it if it wants. */
void virtq_push(struct virtio_dev *d, int qi, uint16_t head, uint32_t len);
/* n chains at once, published with one used-index update. */
void virtq_push_n(struct virtio_dev *d, int qi, const uint16_t *heads, const uint32_t *lens, int n);
/* Does queue qi have chains the device has not popped yet? (A hint: the driver may add more.) */
bool virtq_has_avail(struct virtio_dev *d, int qi);
/*
 * Ask the driver for kicks on queue qi or not (VRING_USED_F_NO_NOTIFY, for a
 * device that watches the ring itself). After asking again, look at the ring
 * once more: a chain added just before may have come without its kick.
 */
void virtq_want_kicks(struct virtio_dev *d, int qi, bool want);
/* Give back the last n popped chains, unused (the driver will see them again). */
void virtq_unpop(struct virtio_dev *d, int qi, int n);
/* Raise the config-change interrupt (also used for needs-reset). */
void virtio_config_irq(struct virtio_dev *d);

/* Copy between a chain's buffers and flat memory; return bytes copied. */
size_t iov_to_buf(const struct iovec *iov, int n, size_t skip, void *buf, size_t len);
size_t buf_to_iov(const struct iovec *iov, int n, size_t skip, const void *buf, size_t len);

struct disk;
/*
 * One virtio-blk function for an open disk, which it owns from here on (tests
 * use it directly), with nq queues (1..VIRTIO_MAX_QUEUES) each served by its
 * own worker thread; virtio_blk_add gives the default.
 */
int virtio_blk_add_queues(struct vm *vm, struct disk *dk, int nq);
int virtio_blk_add(struct vm *vm, struct disk *dk);
/* The same with the I/O engine for a raw image chosen (include/disk_aio.h; it falls back when refused). */
int virtio_blk_add_aio(struct vm *vm, struct disk *dk, int nq, enum disk_aio_kind aio);
/* The default: one queue per vCPU, at most 8. */
int virtio_blk_default_queues(const struct vm *vm);
/* Snapshots: a virtio-blk device's disk and the image's absolute path. */
struct device;
struct disk *virtio_blk_disk(struct device *dev, const char **abs_path);
/* The engine queue qi runs (enum disk_aio_kind), or -1 for synchronous I/O. */
int virtio_blk_aio_kind(struct device *dev, int qi);
/*
 * Put dk (of the same size) in place of the device's disk, only while the
 * device is stopped; the old disk is not closed: it is dk's backing image.
 */
int virtio_blk_replace_disk(struct device *dev, struct disk *dk, const char *abs_path);
/* lkvm balloon: move the target by delta_mib (inflate > 0); 0, or -1 with err set. */
int balloon_adjust(struct vm *vm, long delta_mib);
struct balloon_stats {
	uint32_t target_pages, actual_pages;	/* what we asked for, what the driver says it holds */
	uint64_t inflated, deflated;		/* pages released to the host / given back */
};
int balloon_stats(struct vm *vm, struct balloon_stats *st);

/* BAR0 layout of every virtio-pci function lkvm creates. */
#define VPCI_BAR_SIZE 0x4000
#define VPCI_COMMON 0x0000
#define VPCI_ISR 0x1000
#define VPCI_DEVICE 0x2000
#define VPCI_NOTIFY 0x3000
#define VPCI_NOTIFY_MULT 4
#define VPCI_MSIX_TABLE 0x3800
#define VPCI_MSIX_PBA 0x3c00

#endif
