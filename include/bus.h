/*
 * Port-I/O and MMIO buses. Devices register address ranges with an ops table;
 * the vCPU loop dispatches exits by address and never names a device.
 */
#ifndef LKVM_BUS_H
#define LKVM_BUS_H

#include <stdint.h>
#include <stdbool.h>
#include <pthread.h>

struct bus_ops {
	/* off is relative to the registered base; len is 1, 2, 4 or 8. */
	void (*read)(void *ctx, uint64_t off, void *data, int len);
	void (*write)(void *ctx, uint64_t off, const void *data, int len);
};

struct bus_range {
	uint64_t base, len;
	const struct bus_ops *ops;
	void *ctx;
	const char *name;
};

struct bus {
	const char *name;	/* "pio" or "mmio", for logs */
	pthread_rwlock_t lock;
	struct bus_range *ranges;	/* sorted by base, never overlapping */
	int nr, cap;
	uint64_t unhandled;	/* accesses nobody claimed */
	bool log_unhandled;
};

void bus_init(struct bus *b, const char *name);
void bus_destroy(struct bus *b);
/* Fails (err set) if the range overlaps one already registered. */
int bus_register(struct bus *b, uint64_t base, uint64_t len, const struct bus_ops *ops, void *ctx, const char *name);
/* Remove the range starting at base owned by ctx; returns 0 if found. */
int bus_unregister(struct bus *b, uint64_t base, void *ctx);
/* Remove every range owned by ctx (a device being destroyed). */
void bus_unregister_all(struct bus *b, void *ctx);
/*
 * Dispatch one access. Returns true if a device handled it. Unclaimed reads
 * return all ones, unclaimed writes are dropped, both are counted.
 */
bool bus_access(struct bus *b, uint64_t addr, void *data, int len, bool is_write);

#endif
