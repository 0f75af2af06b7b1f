/*
 * libFuzzer target: 9P2000.L messages against a server on a temporary
 * directory. Each input is a flags byte (bit 0: read-only share, bit 1: a
 * 64-byte reply buffer, bit 2: the mapped model, bit 3: xdev) and then
 * messages, cut by their own size fields, after a fixed Tversion + Tattach
 * (fid 0 is the root). The share holds
 * symlinks that point out of it; anything that changes next to the share
 * is an escape and aborts.
 *
 * The process first makes every mount read-only in a private mount
 * namespace (/tmp becomes a fresh tmpfs; libFuzzer's output directories
 * stay writable), so an escape found as root cannot harm the host.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
#include "p9.h"
#include "util.h"
#include "../ro_sandbox.h"
#include "p9_client.h"

static char base[64], share[96], outside[96], secret[128];
static uint8_t resp[P9_MAX_MSIZE];

/* Output directories libFuzzer writes to (tests/fuzz/run.sh): writable in the sandbox. */
static const char *const keep[] = { "build-fuzz", "tests/fuzz/crashes" };

static void put_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, mode);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		abort();
	close(fd);
}

static int open_up(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	if (type == FTW_D || type == FTW_DNR)
		chmod(path, 0700);	/* the guest may have locked a directory */
	return 0;
}

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	if (ftw->level > 0 && remove(path))
		abort();
	return 0;
}

/* The share as every input finds it. */
static void reset_share(void)
{
	nftw(share, open_up, 16, FTW_PHYS);
	nftw(share, remove_one, 16, FTW_PHYS | FTW_DEPTH);
	char p[192];
	snprintf(p, sizeof(p), "%s/data", share);
	put_file(p, "0123456789", 0644);
	snprintf(p, sizeof(p), "%s/sub", share);
	mkdir(p, 0755);
	static const char *const links[][2] = {
		{ "up", "../../.." }, { "esc", "../outside" }, { "root", "/" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(links); i++) {
		snprintf(p, sizeof(p), "%s/%s", share, links[i][0]);
		symlink(links[i][1], p);
	}
	snprintf(p, sizeof(p), "%s/abs", share);
	symlink(outside, p);
	snprintf(p, sizeof(p), "%s/sec", share);
	symlink(secret, p);
}

static int entries(const char *dir)
{
	DIR *d = opendir(dir);
	int n = 0;
	for (struct dirent *e; d && (e = readdir(d));)
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	if (d)
		closedir(d);
	return n;
}

/* An escape changed something next to the share. */
static void check_outside(void)
{
	struct stat st;
	char buf[16] = { 0 };
	int fd = open(secret, O_RDONLY);
	bool same = fd >= 0 && read(fd, buf, sizeof(buf)) == 6 && !memcmp(buf, "secret", 6) &&
		    !fstat(fd, &st) && st.st_mode == (S_IFREG | 0644) && st.st_size == 6;
	if (fd >= 0)
		close(fd);
	if (!same || entries(outside) != 1 || entries(base) != 2 || stat(outside, &st) ||
	    st.st_mode != (S_IFDIR | 0755)) {
		fprintf(stderr, "fuzz_9p: something outside the share changed: an escape\n");
		abort();
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	if (geteuid() == 0 && ro_sandbox(keep, ARRAY_SIZE(keep), "/etc/.lkvm-fuzz-9p-probe")) {
		fprintf(stderr, "fuzz_9p: refusing to fuzz as root without a read-only sandbox\n");
		exit(1);
	}
	strcpy(base, "/tmp/lkvm-fuzz-9p-XXXXXX");
	if (!mkdtemp(base))
		abort();
	snprintf(share, sizeof(share), "%s/share", base);
	snprintf(outside, sizeof(outside), "%s/outside", base);
	snprintf(secret, sizeof(secret), "%s/secret", outside);
	if (mkdir(share, 0755) || mkdir(outside, 0755))
		abort();
	put_file(secret, "secret", 0644);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	reset_share();
	struct p9_server_opts o = { .ro = data[0] & 1, .model = data[0] & 4 ? P9_MAPPED : P9_PASSTHROUGH, .xdev = data[0] & 8 };
	static struct p9_view *view;	/* bit 4: a read-only share seen through a view (p9/view.c) */
	if (data[0] & 16) {
		if (!view) {
			static const gid_t groups[] = { 4, 27 };
			view = p9_view_new();
			if (p9_view_allow(view, "a") || p9_view_allow(view, "d/e/f") || p9_view_deny(view, "a/*secret*") ||
			    p9_view_empty(view, "e") || p9_view_reader(view, 1000, 1000, groups, 2))
				abort();
		}
		o.ro = true;
		o.view = view;
	}
	struct p9_server *s = p9_server_new(share, &o);
	if (!s)
		abort();
	uint8_t m[64];
	struct p9c c = { .req = m, .resp = resp, .resp_cap = sizeof(resp), .srv = s };
	uint32_t msize;
	char v[16];
	if (p9c_version(&c, 65536, "9P2000.L", &msize, v, sizeof(v)) || p9c_attach(&c, 0, 0, NULL))
		abort();
	size_t cap = data[0] & 2 ? 64 : sizeof(resp);
	for (size_t off = 1; off < size;) {
		size_t rem = size - off;
		size_t len = rem >= 4 ? MIN(MAX((size_t)get_le32(data + off), (size_t)1), rem) : rem;
		size_t n = p9_handle(s, data + off, len, resp, cap);
		if (n > cap || (n && n < P9_HDR_SIZE))
			abort();	/* a reply outside its buffer or without a header */
		off += len;
	}
	p9_server_free(s);
	check_outside();
	return 0;
}
