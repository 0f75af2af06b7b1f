/*
 * lkvm setup NAME: a reusable guest root folder in ~/.lkvm/NAME made of the
 * host's busybox-static (as kvmtool's setup does), booted with
 * `lkvm run -k KERNEL --rootfs NAME`: the folder becomes the guest's root
 * over virtio-9p and its /init gives a shell on the console.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "commands.h"

static const char init_script[] =
	"#!/bin/sh\n"
	"# lkvm setup's init: mounts, then a shell on the console (or, with\n"
	"# lkvm_poweroff on the command line, a marker and power-off for tests).\n"
	"mount -t proc proc /proc\n"
	"mount -t sysfs sys /sys\n"
	"mount -t devtmpfs dev /dev 2>/dev/null\n"
	"mount -t tmpfs tmp /tmp\n"
	"hostname lkvm\n"
	"if grep -q lkvm_poweroff /proc/cmdline; then\n"
	"\techo \"LKVM-SETUP-ROOT-OK $(ls /bin | wc -l) applets\"\n"
	"\tdd if=/dev/zero of=/dev/port bs=1 seek=244 count=1 2>/dev/null\n"
	"fi\n"
	"echo 'lkvm guest: poweroff -f (or Ctrl-A x) ends it'\n"
	"setsid cttyhack sh -l\n"
	"dd if=/dev/zero of=/dev/port bs=1 seek=244 count=1 2>/dev/null\n"
	"poweroff -f\n";

int lkvm_rootfs_path(const char *name, char *out, size_t len)
{
	const char *home = getenv("HOME");
	if (strchr(name, '/'))
		return snprintf(out, len, "%s", name) < (int)len ? 0 : -1;
	if (!home || !*home)
		return -1;
	return snprintf(out, len, "%s/.lkvm/%s", home, name) < (int)len ? 0 : -1;
}

/* busybox must be static: the guest root has no shared libraries. */
static const char *find_busybox(void)
{
	static const char *const cand[] = { "/bin/busybox", "/usr/bin/busybox", "/sbin/busybox" };
	for (unsigned i = 0; i < sizeof(cand) / sizeof(cand[0]); i++) {
		int fd = open(cand[i], O_RDONLY);
		if (fd < 0)
			continue;
		Elf64_Ehdr eh;
		bool is_static = pread(fd, &eh, sizeof(eh), 0) == sizeof(eh) && !memcmp(eh.e_ident, ELFMAG, SELFMAG);
		for (int k = 0; is_static && k < eh.e_phnum; k++) {
			Elf64_Phdr ph;
			if (pread(fd, &ph, sizeof(ph), eh.e_phoff + (off_t)k * sizeof(ph)) != sizeof(ph) || ph.p_type == PT_INTERP)
				is_static = false;
		}
		close(fd);
		if (is_static)
			return cand[i];
	}
	return NULL;
}

static int copy_file(const char *from, const char *to, mode_t mode)
{
	int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, mode);
	char buf[65536];
	ssize_t n = 0;
	while (in >= 0 && out >= 0 && (n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, n) != n) {
			n = -1;
			break;
		}
	int ok = in >= 0 && out >= 0 && n == 0;
	if (in >= 0) close(in);
	if (out >= 0) close(out);
	return ok ? 0 : -1;
}

static int put(const char *root, const char *rel, const char *text, mode_t mode)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/%s", root, rel);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, text, strlen(text));
	close(fd);
	return n == (ssize_t)strlen(text) ? 0 : -1;
}

int cmd_setup(int argc, char **argv)
{
	if (argc != 2 || argv[1][0] == '-') {
		fprintf(argc == 2 ? stdout : stderr, "usage: lkvm setup NAME\n"
			"Make ~/.lkvm/NAME a guest root folder from the host's busybox-static;\n"
			"boot it with 'lkvm run -k KERNEL --rootfs NAME'.\n");
		return argc == 2 && strcmp(argv[1], "-h") && strcmp(argv[1], "--help") ? EXIT_USAGE : 0;
	}
	char root[PATH_MAX], p[PATH_MAX + 256];
	if (strchr(argv[1], '/') || lkvm_rootfs_path(argv[1], root, sizeof(root)) < 0) {
		fprintf(stderr, "lkvm setup: '%s': a NAME without '/' (and $HOME set) is needed\n", argv[1]);
		return EXIT_USAGE;
	}
	const char *bb = find_busybox();
	if (!bb) {
		fprintf(stderr, "lkvm setup: no static busybox on this host (apt-get install busybox-static)\n");
		return EXIT_USAGE;
	}
	snprintf(p, sizeof(p), "%s/.lkvm", getenv("HOME"));
	mkdir(p, 0755);
	if (mkdir(root, 0755) < 0) {
		fprintf(stderr, "lkvm setup: %s: %s\n", root, errno == EEXIST ? "already exists" : strerror(errno));
		return EXIT_USAGE;
	}
	static const char *const dirs[] = { "bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev",
					    "tmp", "root", "home", "mnt", "var", "run" };
	for (unsigned i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", root, dirs[i]);
		mkdir(p, strcmp(dirs[i], "tmp") ? 0755 : 01777);
	}
	snprintf(p, sizeof(p), "%s/bin/busybox", root);
	if (copy_file(bb, p, 0755) < 0) {
		fprintf(stderr, "lkvm setup: copying %s to %s: %s\n", bb, p, strerror(errno));
		return EXIT_USAGE;
	}
	/* One link per applet, all in /bin: what `busybox --install -s /bin` would make. */
	char cmd[PATH_MAX + 32];
	snprintf(cmd, sizeof(cmd), "%s --list", bb);
	FILE *l = popen(cmd, "r");
	char name[128];
	int applets = 0;
	while (l && fgets(name, sizeof(name), l)) {
		name[strcspn(name, "\n")] = 0;
		if (!*name || strchr(name, '/') || !strcmp(name, "busybox"))
			continue;
		snprintf(p, sizeof(p), "%s/bin/%s", root, name);
		if (symlink("busybox", p) == 0)
			applets++;
	}
	if (l)
		pclose(l);
	if (put(root, "init", init_script, 0755) < 0 ||
	    put(root, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0644) < 0 ||
	    put(root, "etc/group", "root:x:0:\n", 0644) < 0 ||
	    put(root, "etc/hostname", "lkvm\n", 0644) < 0 ||
	    put(root, "etc/profile", "export PATH=/bin:/sbin:/usr/bin:/usr/sbin PS1='lkvm# '\n", 0644) < 0) {
		fprintf(stderr, "lkvm setup: writing %s: %s\n", root, strerror(errno));
		return EXIT_USAGE;
	}
	printf("%s: guest root with busybox (%d applets); boot it with: lkvm run -k KERNEL --rootfs %s\n", root,
	       applets, argv[1]);
	return 0;
}
