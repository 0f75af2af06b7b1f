/* The smallest /init: one write(2) and exit. Shows whether guest user space can make a syscall. */
static long sys3(long nr, long a, long b, long c)
{
	long ret;
	__asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
	return ret;
}

void _start(void)
{
	static const char msg[] = "LKVM-USERSPACE-SYSCALL-OK\n";
	int fd = sys3(2, (long)"/dev/console", 1, 0);	/* open */
	sys3(1, fd < 0 ? 1 : fd, (long)msg, sizeof(msg) - 1);	/* write */
	for (;;)
		sys3(60, 0, 0, 0);	/* exit */
}
