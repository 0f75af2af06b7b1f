/*
 * lkvm run --restore DIR [--clone] [--name N] [--network ...] [--9p ...] [--vsock ...]:
 * the VM saved in DIR, built again from the options it was started with.
 *
 * Everything that needs no KVM is checked here first: the state file whole,
 * the options given (only those that may differ from the snapshot's VM), the
 * disks' images unchanged since the snapshot. Each writable disk then gets an
 * overlay over the snapshot's image: DIR/diskN.qcow2 for the one VM a plain
 * restore resumes (a second plain restore is refused once the first wrote
 * to it), DIR/clones/NAME/diskN.qcow2 for each --clone. The runner does the
 * rest (cmd/run.c, snapshot/load.c): guest RAM mapped from DIR/memory, the
 * board's and devices' records.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "commands.h"
#include "disk.h"
#include "run.h"
#include "snapshot.h"
#include "util.h"
#include "vm_snapshot.h"

/* Options a restore may give: everything else is the snapshot's. */
static const char *const may_differ[] = {
	"name", "network", "9p", "vsock", "quiet", "verbose", "no-seccomp", "debug-ioport", "restore", "clone", NULL,
};
/* Options of the snapshot's VM a restore does not take again: nothing is loaded, and disks are overlays. */
static const char *const not_again[] = { "kernel", "initrd", "params", "disk", "name", "quiet", "verbose", NULL };

static bool listed(const char *const *list, const char *arg)
{
	size_t n = strcspn(arg + 2, "=");
	for (int i = 0; list[i]; i++)
		if (strlen(list[i]) == n && !strncmp(arg + 2, list[i], n))
			return true;
	return false;
}

static bool given(int nr, char **args, const char *name)
{
	const char *one[] = { name, NULL };
	for (int i = 0; i < nr; i++)
		if (listed(one, args[i]))
			return true;
	return false;
}

static int fail(const char *dir, const char *msg)
{
	fprintf(stderr, "lkvm run: --restore %s: %s\n", dir, msg);
	return EXIT_USAGE;
}

/*
 * A fresh overlay over d, as bytes: an existing overlay that is the same was
 * never written to (its VM did not run, or wrote nothing). NULL if it cannot be made.
 */
static uint8_t *fresh_overlay(const struct snapshot_disk *d, size_t *len)
{
	int mf = memfd_create("overlay", MFD_CLOEXEC);
	struct stat st;
	uint8_t *buf = NULL;
	if (mf >= 0 && disk_write_overlay(mf, "overlay", d->base, d->format, d->virtual_size) == 0 && !fstat(mf, &st) &&
	    st.st_size <= (16 << 20)) {
		buf = xcalloc(1, st.st_size);
		*len = st.st_size;
		if (pread(mf, buf, st.st_size, 0) != st.st_size) {
			free(buf);
			buf = NULL;
		}
	}
	if (mf >= 0)
		close(mf);
	return buf;
}

/* Whether the open overlay fd holds exactly fresh[0..len): reads only (it runs under seccomp too). */
static bool same_as(int fd, const uint8_t *fresh, size_t len)
{
	struct stat st;
	if (fd < 0 || !fresh || fstat(fd, &st) || (size_t)st.st_size != len)
		return false;
	uint8_t *buf = xcalloc(1, len);
	bool same = pread(fd, buf, len, 0) == (ssize_t)len && !memcmp(buf, fresh, len);
	free(buf);
	return same;
}

static bool overlay_unused(const char *path, const struct snapshot_disk *d)
{
	size_t len = 0;
	uint8_t *fresh = fresh_overlay(d, &len);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	bool same = same_as(fd, fresh, len);
	if (fd >= 0)
		close(fd);
	free(fresh);
	return same;
}

static int make_overlay(const char *path, const struct snapshot_disk *d, bool reuse)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | (reuse ? O_TRUNC : O_EXCL), 0600);
	if (fd < 0)
		return err_errno("%s", path);
	int r = disk_write_overlay(fd, path, d->base, d->format, d->virtual_size);
	close(fd);
	if (r < 0)
		unlink(path);
	return r;
}

/* The name the restored VM will have: --name, else the runner's default. */
static void vm_name(int nr, char **args, char *out, size_t len)
{
	snprintf(out, len, "lkvm-%d", (int)getpid());
	for (int i = 0; i < nr; i++)
		if (!strncmp(args[i], "--name=", 7))
			snprintf(out, len, "%s", args[i] + 7);
}

int run_restore(const char *dir_arg, bool clone, int nr_args, char **args)
{
	for (int i = 0; i < nr_args; i++) {
		if (listed(may_differ, args[i]))
			continue;
		char msg[512];
		snprintf(msg, sizeof(msg), "%.*s comes from the snapshot and cannot be given again (only --name, --clone, "
			 "--network, --9p, --vsock, -q, -v, --no-seccomp and --debug-ioport can)", (int)strcspn(args[i], "="), args[i]);
		return fail(dir_arg, msg);
	}
	char dir[3072], path[4096], name[128];
	if (!realpath(dir_arg, dir)) {
		err_errno("%s", dir_arg);
		return fail(dir_arg, err_msg());
	}
	snprintf(path, sizeof(path), "%s/state", dir);
	struct snap_reader *r = snap_reader_open(path);
	if (!r)
		return fail(dir_arg, err_msg());
	int status = EXIT_USAGE, argc = 0;
	char **argv = NULL;
	char overlays[SNAPSHOT_MAX_DISKS][4096];
	int nr_overlays = 0, overlay_fd[SNAPSHOT_MAX_DISKS];
	uint8_t *fresh[SNAPSHOT_MAX_DISKS] = { 0 };
	size_t fresh_len[SNAPSHOT_MAX_DISKS] = { 0 };
	struct snapshot_disk *disks = xcalloc(SNAPSHOT_MAX_DISKS, sizeof(*disks));
	int nr_disks = 0;

	/* The snapshot VM's options. */
	if (snap_open(r, "config", 1) < 0)
		goto bad;
	snap_get_u64(r);	/* RAM and vCPUs: checked against what the options make */
	snap_get_u32(r);
	uint32_t nsaved = snap_get_u32(r);
	if (nsaved > 4096) {
		snap_bad(r, "%u options", nsaved);
		goto bad;
	}
	argv = xcalloc(nsaved + nr_args + SNAPSHOT_MAX_DISKS + 2, sizeof(*argv));
	argv[argc++] = "run";
	int disk_args = 0;
	char disk_queues[SNAPSHOT_MAX_DISKS][24] = { { 0 } };	/* each disk's ",queues=N", if it had one */
	for (uint32_t i = 0; i < nsaved; i++) {
		char *a = xcalloc(1, 4200);
		snap_get_str(r, a, 4200);
		if (snap_failed(r) || strncmp(a, "--", 2)) {
			free(a);
			snap_bad(r, "option %u is not one", i);
			goto bad;
		}
		if (!strncmp(a, "--disk=", 7)) {
			/* Its queue count goes along: the device's record holds that many queues. */
			const char *qn = strstr(a, ",queues=");
			if (qn && disk_args < SNAPSHOT_MAX_DISKS)
				snprintf(disk_queues[disk_args], sizeof(disk_queues[0]), "%.*s", (int)strcspn(qn + 1, ",") + 1, qn);
			disk_args++;
		}
		bool overridden = (listed((const char *[]){ "network", NULL }, a) && given(nr_args, args, "network")) ||
				  (listed((const char *[]){ "9p", NULL }, a) && given(nr_args, args, "9p")) ||
				  (listed((const char *[]){ "vsock", NULL }, a) && given(nr_args, args, "vsock"));
		if (listed(not_again, a) || overridden) {
			free(a);
			continue;
		}
		argv[argc++] = a;
	}
	if (snap_close(r) < 0)
		goto bad;

	/* The disks: their images as they were, an overlay for each writable one. */
	if (snapshot_read_disks(r, disks, &nr_disks) < 0)
		goto bad;
	if (nr_disks != disk_args) {
		err_set("%s: %d disks in the options, %d in the disks record (corrupt snapshot)", path, disk_args, nr_disks);
		goto bad;
	}
	vm_name(nr_args, args, name, sizeof(name));
	for (int i = 0; i < nr_disks; i++)
		if (snapshot_check_disk(&disks[i], i) < 0)
			goto bad;
	if (clone && nr_disks) {
		snprintf(path, sizeof(path), "%s/clones", dir);
		if (mkdir(path, 0700) < 0 && errno != EEXIST) {
			err_errno("%s", path);
			goto bad;
		}
		snprintf(path, sizeof(path), "%s/clones/%s", dir, name);
		if (mkdir(path, 0700) < 0) {
			if (errno == EEXIST)
				err_set("%s exists: a clone named '%s' was made before (give another --name)", path, name);
			else
				err_errno("%s", path);
			goto bad;
		}
	}
	for (int i = 0; i < nr_disks; i++) {
		char *a = xcalloc(1, 4200);
		if (disks[i].ro) {
			snprintf(a, 4200, "--disk=%s,ro%s", disks[i].base, disk_queues[i]);
		} else {
			char *ov = overlays[nr_overlays];
			if (clone)
				snprintf(ov, 4096, "%s/clones/%s/disk%d.qcow2", dir, name, i);
			else
				snprintf(ov, 4096, "%s/disk%d.qcow2", dir, i);
			bool exists = access(ov, F_OK) == 0;
			if (exists && !overlay_unused(ov, &disks[i])) {
				err_set("%s holds what the VM restored from this snapshot wrote: restore it again with --clone "
					"(a new VM of its own), or remove that file to start over", ov);
				free(a);
				goto bad;
			}
			if (make_overlay(ov, &disks[i], exists) < 0) {
				free(a);
				goto bad;
			}
			/* Kept open: after the VM, seccomp forbids opening it again to see whether it was used. */
			overlay_fd[nr_overlays] = open(ov, O_RDONLY | O_CLOEXEC);
			fresh[nr_overlays] = fresh_overlay(&disks[i], &fresh_len[nr_overlays]);
			nr_overlays++;
			snprintf(a, 4200, "--disk=%s%s", ov, disk_queues[i]);
		}
		argv[argc++] = a;
	}
	for (int i = 0; i < nr_args; i++)
		if (!listed((const char *[]){ "restore", "clone", NULL }, args[i]))
			argv[argc++] = args[i];
	snprintf(path, sizeof(path), "%s/memory", dir);
	status = run_command(argc, argv, r, path);
	goto out;
bad:
	fail(dir_arg, err_msg());
out:
	/*
	 * Overlays nothing was written to (the VM could not be built, or wrote
	 * nothing) go again; only unlink and unlinkat, which the seccomp filter
	 * the VM ran under allows.
	 */
	for (int k = 0; k < nr_overlays; k++) {
		if (same_as(overlay_fd[k], fresh[k], fresh_len[k]))
			unlink(overlays[k]);
		if (overlay_fd[k] >= 0)
			close(overlay_fd[k]);
		free(fresh[k]);
	}
	if (clone && nr_disks) {
		snprintf(path, sizeof(path), "%s/clones/%s", dir, name);
		unlinkat(AT_FDCWD, path, AT_REMOVEDIR);	/* only if empty */
	}
	snap_reader_free(r);
	free(disks);
	if (argv) {
		for (int i = 1; i < argc; i++) {
			bool theirs = false;
			for (int k = 0; k < nr_args; k++)
				theirs |= argv[i] == args[k];
			if (!theirs)
				free(argv[i]);
		}
		free(argv);
	}
	return status;
}
