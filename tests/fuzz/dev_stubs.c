/*
 * What the device fuzz targets replace in lkvm (linked with -Wl,--wrap=...):
 * nothing may reach the real terminal, and warnings are formatted but not
 * printed (a guest that breaks a device is warned about once per device, and
 * the fuzzers make a new one for every input).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include "util.h"

/* Every fuzzed UART has its own output. */
void __wrap_term_output(const void *buf, size_t len)
{
	abort();
}

void __wrap_pr_warn(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
}
