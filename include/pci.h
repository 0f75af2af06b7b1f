/*
 * PCI host bridge (type-1 config access at 0xCF8/0xCFC) and the device model
 * every PCI function uses: a 256-byte config space with a write mask, and up
 * to six BARs the host places and the guest may move.
 */
#ifndef LKVM_PCI_H
#define LKVM_PCI_H

#include <stdint.h>
#include <stdbool.h>
#include <pthread.h>
#include "bus.h"

struct vm;
struct pci_dev;

#define PCI_CFG_SIZE 256
#define PCI_MAX_DEVS 32

/* 32-bit BAR window the host allocates from (inside the PCI hole). */
#define PCI_MMIO_BASE 0xD0000000ULL
#define PCI_MMIO_END  0xFE000000ULL
#define PCI_IO_BASE   0x6200
#define PCI_IO_END    0xFFFF

struct pci_bar {
	uint64_t size;		/* power of two, 0 = unused */
	bool io;		/* port I/O rather than memory */
	const struct bus_ops *ops;	/* handlers; off is relative to the BAR */
	void *ctx;
	uint64_t addr;		/* current guest address */
	bool mapped;		/* registered on its bus now */
};

struct pci_dev {
	const char *name;
	uint8_t cfg[PCI_CFG_SIZE];
	uint8_t wmask[PCI_CFG_SIZE];	/* bits the guest may change */
	struct pci_bar bar[6];
	int slot;			/* device number on bus 0, set by pci_register */
	uint8_t cap_end;		/* first free config byte after the capabilities */
	uint8_t cap_last;		/* offset of the last capability, 0 if none */
	unsigned irq_pin_gsi;		/* legacy INTx GSI */
	/* Optional: called after a config write the generic code applied. */
	void (*cfg_written)(struct pci_dev *d, unsigned off, int len);
	/* Optional: BAR n was mapped at addr (mapped) or unmapped from it. Under cfg_lock. */
	void (*bar_moved)(struct pci_dev *d, int n, uint64_t addr, bool mapped);
	void *priv;
	struct vm *vm;
	struct pci_host *host;		/* set by pci_register */
};

/* Fill the standard type-0 header (IDs, class) and the write mask. */
void pci_dev_init(struct pci_dev *d, uint16_t vendor, uint16_t device, uint32_t class_code,
		  uint16_t subsys_vendor, uint16_t subsys_id);
/* Declare a BAR before pci_register(); size must be a power of two. */
void pci_dev_set_bar(struct pci_dev *d, int n, uint64_t size, bool io, const struct bus_ops *ops, void *ctx);
/* Append a capability of len bytes (ID at byte 0); returns its offset or -1. */
int pci_dev_add_cap(struct pci_dev *d, const void *cap, int len);
/* Place the BARs, give the device a slot and an INTx line, map it. */
int pci_register(struct vm *vm, struct pci_dev *d);
/* Take it off the bus again (its device is being destroyed). */
void pci_unregister(struct pci_dev *d);

struct snap_writer;
struct snap_reader;
/* Snapshots: the function's slot and config space (its device's record holds them). */
void pci_dev_save(struct pci_dev *d, struct snap_writer *w);
/*
 * The same back into the function made by the same options: refused unless
 * slot and read-only bytes match; BARs mapped where the guest had put them.
 */
int pci_dev_load(struct pci_dev *d, struct snap_reader *r);

/* Config space accessors, also used by the device-level tests. */
uint32_t pci_cfg_read(struct pci_dev *d, unsigned off, int len);
void pci_cfg_write(struct pci_dev *d, unsigned off, uint32_t val, int len);

/* The host bridge, created by hw/pci_host.c's device init. */
struct pci_host {
	struct pci_dev *devs[PCI_MAX_DEVS];
	uint32_t cf8;
	uint64_t next_mmio, next_io;
	struct pci_dev bridge;
	pthread_mutex_t cfg_lock;	/* config space, BAR moves and INTx state of every function */
};

#endif
