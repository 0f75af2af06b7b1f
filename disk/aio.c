/*
 * Choosing an asynchronous I/O engine for a raw image (include/disk_aio.h):
 * the one asked for, or the next that the kernel allows.
 */
#include <string.h>
#include "disk_aio.h"
#include "util.h"

/* What -d PATH without aio= gets: the winner of bench/devices.sh (bench/README.md). */
#define DISK_AIO_BEST DISK_AIO_URING

static const char *const names[] = {
	[DISK_AIO_DEFAULT] = "default", [DISK_AIO_URING] = "uring", [DISK_AIO_NATIVE] = "native",
	[DISK_AIO_THREADS] = "threads",
};

const char *disk_aio_name(enum disk_aio_kind k)
{
	return (unsigned)k < ARRAY_SIZE(names) ? names[k] : "?";
}

int disk_aio_parse(const char *s, enum disk_aio_kind *k)
{
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (!strcmp(s, names[i])) {
			*k = i;
			return 0;
		}
	return -1;
}

struct disk_aio *disk_aio_open(enum disk_aio_kind want, int depth, int event_fd)
{
	if (want == DISK_AIO_DEFAULT)
		want = DISK_AIO_BEST;
	struct disk_aio *a = NULL;
	if (want == DISK_AIO_URING) {
		a = disk_aio_uring_open(depth, event_fd);
		if (!a)
			pr_debug("%s; trying Linux AIO", err_msg());
	}
	if (!a && want != DISK_AIO_THREADS) {
		a = disk_aio_native_open(depth, event_fd);
		if (!a)
			pr_debug("%s; using a thread pool", err_msg());
	}
	if (!a)
		a = disk_aio_threads_open(depth, event_fd);
	return a;
}

void disk_aio_close(struct disk_aio *a)
{
	if (a)
		a->ops->close(a);
}
