/* Guest RAM allocation and the checked door from guest-physical to host. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sys/mman.h>
#include "guest_mem.h"
#include "util.h"

void *guest_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	if (!len || gpa + len < gpa)
		return NULL;
	for (int i = 0; i < m->nr; i++) {
		const struct mem_region *r = &m->r[i];
		if (gpa >= r->gpa && gpa - r->gpa < r->size && len <= r->size - (gpa - r->gpa))
			return r->host + (gpa - r->gpa);
	}
	return NULL;
}

int guest_copy_to(const struct guest_mem *m, uint64_t gpa, const void *src, uint64_t len)
{
	void *p = guest_ptr(m, gpa, len);
	if (!p)
		return err_set("guest range 0x%llx+0x%llx is not RAM", (unsigned long long)gpa,
			       (unsigned long long)len);
	memcpy(p, src, len);
	return 0;
}

int guest_copy_from(const struct guest_mem *m, void *dst, uint64_t gpa, uint64_t len)
{
	void *p = guest_ptr(m, gpa, len);
	if (!p)
		return err_set("guest range 0x%llx+0x%llx is not RAM", (unsigned long long)gpa,
			       (unsigned long long)len);
	memcpy(dst, p, len);
	return 0;
}

int guest_mem_alloc(struct guest_mem *m, uint64_t ram_size, uint64_t hole_start, uint64_t hole_end)
{
	memset(m, 0, sizeof(*m));
	if (ram_size < MiB(1))
		return err_set("memory size %llu bytes is too small (at least 1 MiB)", (unsigned long long)ram_size);
	ram_size = ALIGN_UP(ram_size, 4096);
	/*
	 * One reservation with the hole left unbacked: RAM below the hole maps at
	 * gpa 0, the rest at 4 GiB. MAP_NORESERVE: pages cost only when touched.
	 */
	m->map_size = ram_size;
	m->base = mmap(NULL, m->map_size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m->base == MAP_FAILED) {
		m->base = NULL;
		return err_errno("cannot reserve %llu MiB of guest memory", (unsigned long long)(ram_size >> 20));
	}
	madvise(m->base, m->map_size, MADV_MERGEABLE);
	m->ram_size = ram_size;
	uint64_t low = hole_end > hole_start ? MIN(ram_size, hole_start) : ram_size;
	m->r[0] = (struct mem_region){ 0, low, m->base };
	m->nr = 1;
	if (ram_size > low) {
		m->r[1] = (struct mem_region){ hole_end, ram_size - low, m->base + low };
		m->nr = 2;
	}
	return 0;
}

int guest_mem_thp(struct guest_mem *m, bool on)
{
	if (madvise(m->base, m->map_size, on ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) < 0)
		return err_errno("guest memory: madvise(%s)", on ? "MADV_HUGEPAGE" : "MADV_NOHUGEPAGE");
	return 0;
}

int guest_mem_map_file(struct guest_mem *m, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_errno("%s", path);
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != m->map_size) {
		close(fd);
		return err_set("%s: guest RAM file of %llu bytes, the VM has %llu (truncated or not this snapshot's)", path,
			       (unsigned long long)st.st_size, (unsigned long long)m->map_size);
	}
	/*
	 * Private and writable over a read-only file: pages load when the guest
	 * first touches them, stay shared in the page cache between every VM
	 * restored from the file until one writes, and the file never changes.
	 */
	void *p = mmap(m->base, m->map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, fd, 0);
	int e = errno;
	close(fd);
	if (p == MAP_FAILED) {
		errno = e;
		return err_errno("%s: cannot map guest RAM", path);
	}
	return 0;
}

void guest_mem_free(struct guest_mem *m)
{
	if (m->base)
		munmap(m->base, m->map_size);
	memset(m, 0, sizeof(*m));
}
