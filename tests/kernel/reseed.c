/*
 * Inside a restored guest: reseed the kernel's random pool from virtio-rng
 * now, as lkvm's guest agent is to do after every restore (clones of one
 * snapshot start with the same pool; Linux reseeds on its own only on a
 * timer, or at once on a vmgenid change where the kernel has ACPI).
 * 64 bytes from /dev/hwrng are credited to the pool (RNDADDENTROPY), then
 * the CRNG takes a new key from it (RNDRESEEDCRNG). Root only.
 */
#include <fcntl.h>
#include <linux/random.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(void)
{
	struct {
		int entropy_count;
		int buf_size;
		unsigned char buf[64];
	} e = { .entropy_count = 64 * 8, .buf_size = 64 };
	int h = open("/dev/hwrng", O_RDONLY);
	if (h < 0 || read(h, e.buf, sizeof(e.buf)) != (ssize_t)sizeof(e.buf)) {
		perror("reseed: /dev/hwrng");
		return 1;
	}
	close(h);
	int u = open("/dev/urandom", O_WRONLY);
	if (u < 0 || ioctl(u, RNDADDENTROPY, &e) < 0 || ioctl(u, RNDRESEEDCRNG) < 0) {
		perror("reseed: /dev/urandom");
		return 1;
	}
	close(u);
	return 0;
}
