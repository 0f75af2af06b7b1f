/* Address-range dispatch for port I/O and MMIO. */
#include <stdlib.h>
#include <string.h>
#include "bus.h"
#include "util.h"

void bus_init(struct bus *b, const char *name)
{
	memset(b, 0, sizeof(*b));
	b->name = name;
	pthread_rwlock_init(&b->lock, NULL);
}

void bus_destroy(struct bus *b)
{
	free(b->ranges);
	b->ranges = NULL;
	b->nr = b->cap = 0;
	pthread_rwlock_destroy(&b->lock);
}

int bus_register(struct bus *b, uint64_t base, uint64_t len, const struct bus_ops *ops, void *ctx, const char *name)
{
	if (!len || base + len < base)
		return err_set("%s bus: bad range 0x%llx+0x%llx for %s", b->name,
			       (unsigned long long)base, (unsigned long long)len, name);
	pthread_rwlock_wrlock(&b->lock);
	int i = 0;
	while (i < b->nr && b->ranges[i].base < base)
		i++;
	/* Neighbours on both sides must not overlap. */
	if ((i > 0 && b->ranges[i - 1].base + b->ranges[i - 1].len > base) ||
	    (i < b->nr && base + len > b->ranges[i].base)) {
		const char *other = i > 0 && b->ranges[i - 1].base + b->ranges[i - 1].len > base ?
				    b->ranges[i - 1].name : b->ranges[i].name;
		pthread_rwlock_unlock(&b->lock);
		return err_set("%s bus: %s at 0x%llx+0x%llx overlaps %s", b->name, name,
			       (unsigned long long)base, (unsigned long long)len, other);
	}
	if (b->nr == b->cap) {
		int cap = b->cap ? b->cap * 2 : 16;
		struct bus_range *r = realloc(b->ranges, cap * sizeof(*r));
		if (!r) {
			pthread_rwlock_unlock(&b->lock);
			return err_set("out of memory");
		}
		b->ranges = r;
		b->cap = cap;
	}
	memmove(&b->ranges[i + 1], &b->ranges[i], (b->nr - i) * sizeof(b->ranges[0]));
	b->ranges[i] = (struct bus_range){ base, len, ops, ctx, name };
	b->nr++;
	pthread_rwlock_unlock(&b->lock);
	return 0;
}

int bus_unregister(struct bus *b, uint64_t base, void *ctx)
{
	int ret = -1;
	pthread_rwlock_wrlock(&b->lock);
	for (int i = 0; i < b->nr; i++) {
		if (b->ranges[i].base == base && b->ranges[i].ctx == ctx) {
			memmove(&b->ranges[i], &b->ranges[i + 1], (b->nr - i - 1) * sizeof(b->ranges[0]));
			b->nr--;
			ret = 0;
			break;
		}
	}
	pthread_rwlock_unlock(&b->lock);
	return ret;
}

void bus_unregister_all(struct bus *b, void *ctx)
{
	pthread_rwlock_wrlock(&b->lock);
	int k = 0;
	for (int i = 0; i < b->nr; i++)
		if (b->ranges[i].ctx != ctx)
			b->ranges[k++] = b->ranges[i];
	b->nr = k;
	pthread_rwlock_unlock(&b->lock);
}

bool bus_access(struct bus *b, uint64_t addr, void *data, int len, bool is_write)
{
	pthread_rwlock_rdlock(&b->lock);
	int lo = 0, hi = b->nr - 1;
	while (lo <= hi) {
		int mid = (lo + hi) / 2;
		struct bus_range *r = &b->ranges[mid];
		if (addr < r->base) {
			hi = mid - 1;
		} else if (addr - r->base >= r->len) {
			lo = mid + 1;
		} else {
			/* An access straddling the end is clipped to the device. */
			uint64_t off = addr - r->base;
			const struct bus_ops *ops = r->ops;
			void *ctx = r->ctx;
			pthread_rwlock_unlock(&b->lock);
			if (is_write) {
				if (ops->write)
					ops->write(ctx, off, data, len);
			} else {
				memset(data, 0xff, len);
				if (ops->read)
					ops->read(ctx, off, data, len);
			}
			return true;
		}
	}
	pthread_rwlock_unlock(&b->lock);
	__atomic_add_fetch(&b->unhandled, 1, __ATOMIC_RELAXED);
	if (!is_write)
		memset(data, 0xff, len);
	if (b->log_unhandled)
		pr_info("unhandled %s %s at 0x%llx len %d", b->name, is_write ? "write" : "read",
			(unsigned long long)addr, len);
	return false;
}
