/*
 * The boot-to-init bench's /init (bench/boot-init.sh): one byte on the console (the
 * timer's first-byte mark), the boot-timer port's mark (lkvm records it; QEMU ignores
 * the port), then the debug-exit port 0xf4 (lkvm's own; QEMU's isa-debug-exit). Raw
 * syscalls: no libc, so nothing runs before the mark but the kernel and this.
 */
#define BOOT_TIMER_PORT 0xf8
#define BOOT_TIMER_MAGIC 123
static long sys4(long nr, long a, long b, long c, long d)
{
	long ret;
	register long r10 __asm__("r10") = d;
	__asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
	return ret;
}

enum { SYS_write = 1, SYS_open = 2, SYS_pwrite64 = 18, SYS_exit = 60, SYS_mknod = 133 };

void _start(void)
{
	int con = sys4(SYS_open, (long)"/dev/console", 1, 0, 0);
	sys4(SYS_write, con < 0 ? 1 : con, (long)"I", 1, 0);
	int port = sys4(SYS_open, (long)"/dev/port", 2, 0, 0);
	if (port < 0) {	/* an initramfs without it: /dev/port is char 1:4 */
		sys4(SYS_mknod, (long)"/dev/port", 020600, (1 << 8) | 4, 0);
		port = sys4(SYS_open, (long)"/dev/port", 2, 0, 0);
	}
	static const char mark = BOOT_TIMER_MAGIC, status = 0;
	sys4(SYS_pwrite64, port, (long)&mark, 1, BOOT_TIMER_PORT);
	sys4(SYS_pwrite64, port, (long)&status, 1, 0xf4);
	for (;;)
		sys4(SYS_exit, 1, 0, 0, 0);	/* no port: the kernel panics, panic=-1 ends the VM */
}
