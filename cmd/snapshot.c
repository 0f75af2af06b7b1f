/*
 * lkvm snapshot NAME DIR [--stop] [--disk-copy]: save the running VM NAME
 * into the new directory DIR (include/vm_snapshot.h says what it holds), then
 * let it run on, or stop it.
 *
 * The files are made here, with the user's own permissions (DIR and all in
 * it private: guest RAM holds the guest's secrets), and passed to the VM as
 * descriptors with the request: the VM never opens a path for a snapshot.
 * A writable qcow2 disk gets its overlay here too: the running VM writes it
 * from the snapshot on (NAME-after-DIR.qcow2 next to the image), so the image
 * itself stays what the snapshot saw. On any failure what was made is removed.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "commands.h"
#include "control.h"
#include "disk.h"
#include "util.h"
#include "vm_snapshot.h"

#define REPLY_MAX 65536
#define SNAPSHOT_TIMEOUT_S 600	/* writing many GiB of RAM takes a while */

struct made {
	char paths[2 + 2 * SNAPSHOT_MAX_DISKS][4200];
	int n;
	char dir[4096];
	bool made_dir;
};

static void undo(struct made *m)
{
	for (int i = m->n - 1; i >= 0; i--)
		unlink(m->paths[i]);
	if (m->made_dir)
		rmdir(m->dir);
}

/* A new file, only ours; its path remembered for undo(). */
static int create(struct made *m, const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return err_errno("%s", path);
	snprintf(m->paths[m->n++], sizeof(m->paths[0]), "%s", path);
	return fd;
}

static int usage(FILE *out, int status)
{
	fprintf(out, "usage: lkvm snapshot NAME DIR [--stop] [--disk-copy]\n"
		     "Save the running VM NAME into the new directory DIR, then let it run on (--stop: stop it).\n"
		     "Writable disks: a qcow2 image becomes the snapshot's and the VM goes on in an overlay next to it\n"
		     "(IMAGE-after-DIR.qcow2); a raw image is copied into DIR with --disk-copy (or needs --stop).\n"
		     "Restore with: lkvm run --restore DIR [--clone] [--name N] [--network ...]\n");
	return status;
}

int cmd_snapshot(int argc, char **argv)
{
	const char *name = NULL, *dir_arg = NULL;
	bool stop = false, copy = false;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
			return usage(stdout, 0);
		if (!strcmp(argv[i], "--stop"))
			stop = true;
		else if (!strcmp(argv[i], "--disk-copy"))
			copy = true;
		else if (argv[i][0] == '-') {
			fprintf(stderr, "lkvm snapshot: unknown option '%s' (--stop, --disk-copy)\n", argv[i]);
			return EXIT_USAGE;
		} else if (!name)
			name = argv[i];
		else if (!dir_arg)
			dir_arg = argv[i];
		else
			return usage(stderr, EXIT_USAGE);
	}
	if (!name || !dir_arg)
		return usage(stderr, EXIT_USAGE);

	char info[REPLY_MAX], err[512];
	if (control_request(name, "{\"v\":1,\"cmd\":\"snapshot-info\"}", info, sizeof(info)) < 0) {
		fprintf(stderr, "lkvm snapshot: %s\n", err_msg());
		return EXIT_USAGE;
	}
	if (json_get_str(info, "error", err, sizeof(err))) {
		fprintf(stderr, "lkvm snapshot: VM '%s': %s\n", name, err);
		return EXIT_USAGE;
	}
	long long ndisks = 0;
	json_get_num(info, "disks", &ndisks);
	if (ndisks < 0 || ndisks > SNAPSHOT_MAX_DISKS) {
		fprintf(stderr, "lkvm snapshot: VM '%s' answered with %lld disks\n", name, ndisks);
		return EXIT_USAGE;
	}

	struct made *m = xcalloc(1, sizeof(*m));
	int fds[2 + 2 * SNAPSHOT_MAX_DISKS], nfds = 0, status = EXIT_USAGE;
	char roles[256] = "s m", extra[2 * 4096 + 64] = "", path[4200];
	/* DIR: new, or an empty directory of ours. */
	if (mkdir(dir_arg, 0700) == 0) {
		m->made_dir = true;
	} else if (errno != EEXIST) {
		err_errno("%s", dir_arg);
		goto out;
	} else {
		struct stat st;
		snprintf(path, sizeof(path), "%s/state", dir_arg);
		if (stat(dir_arg, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() || access(path, F_OK) == 0) {
			err_set("%s: exists and is not an empty directory of ours", dir_arg);
			goto out;
		}
	}
	if (!realpath(dir_arg, m->dir)) {
		err_errno("%s", dir_arg);
		goto out;
	}
	snprintf(path, sizeof(path), "%s/state", m->dir);
	if ((fds[nfds++] = create(m, path)) < 0)
		goto out;
	snprintf(path, sizeof(path), "%s/memory", m->dir);
	if ((fds[nfds++] = create(m, path)) < 0)
		goto out;
	for (int i = 0; i < ndisks; i++) {
		char key[32], dpath[4096], format[16];
		bool ro = false;
		long long size = 0;
		snprintf(key, sizeof(key), "disk%d_path", i);
		json_get_str(info, key, dpath, sizeof(dpath));
		snprintf(key, sizeof(key), "disk%d_format", i);
		json_get_str(info, key, format, sizeof(format));
		snprintf(key, sizeof(key), "disk%d_ro", i);
		json_get_bool(info, key, &ro);
		snprintf(key, sizeof(key), "disk%d_size", i);
		json_get_num(info, key, &size);
		if (ro || stop)
			continue;
		if (strcmp(format, "qcow2")) {
			if (!copy) {
				err_set("disk %d (%s) is a raw image the VM writes: give --disk-copy to copy it into the "
					"snapshot, or --stop, or run the VM with a qcow2 image or ',ro'", i, dpath);
				goto out;
			}
			snprintf(path, sizeof(path), "%s/disk%d.raw", m->dir, i);
			if ((fds[nfds++] = create(m, path)) < 0)
				goto out;
			snprintf(roles + strlen(roles), sizeof(roles) - strlen(roles), " c%d", i);
			continue;
		}
		/* IMAGE-after-DIR.qcow2 next to the image: where the running VM goes on. */
		char *copy1 = xstrdup(dpath), *copy2 = xstrdup(dpath), *copy3 = xstrdup(m->dir);
		char *base = basename(copy2), *dot = strrchr(base, '.');
		if (dot && !strcmp(dot, ".qcow2"))
			*dot = 0;
		snprintf(path, sizeof(path), "%s/%s-after-%s.qcow2", dirname(copy1), base, basename(copy3));
		free(copy1);
		free(copy2);
		free(copy3);
		int fd = create(m, path);
		if (fd < 0 || (fds[nfds++] = fd, disk_write_overlay(fd, path, dpath, "qcow2", size) < 0))
			goto out;
		snprintf(roles + strlen(roles), sizeof(roles) - strlen(roles), " o%d", i);
		size_t el = strlen(extra);
		char *esc = xcalloc(2, strlen(path) + 1), *q = esc;
		for (const char *p = path; *p; p++) {	/* a JSON string */
			if (*p == '"' || *p == '\\')
				*q++ = '\\';
			*q++ = *p;
		}
		snprintf(extra + el, sizeof(extra) - el, ",\"disk%d_overlay\":\"%s\"", i, esc);
		free(esc);
	}
	char *req = xcalloc(1, CONTROL_MAX_LINE + 1), dir_esc[8200], *q = dir_esc;
	for (const char *p = m->dir; *p; p++) {
		if (*p == '"' || *p == '\\')
			*q++ = '\\';
		*q++ = *p;
	}
	*q = 0;
	int len = snprintf(req, CONTROL_MAX_LINE + 1, "{\"v\":%d,\"cmd\":\"snapshot\",\"dir\":\"%s\",\"stop\":%s,\"fds\":\"%s\"%s}",
			   CONTROL_PROTO_VERSION, dir_esc, stop ? "true" : "false", roles, extra);
	if (len >= CONTROL_MAX_LINE) {
		free(req);
		err_set("%s: the paths are too long for one request", m->dir);
		goto out;
	}
	char *reply = xcalloc(1, REPLY_MAX);
	int r = control_request_fds(name, req, fds, nfds, reply, REPLY_MAX, SNAPSHOT_TIMEOUT_S);
	free(req);
	if (r < 0 && m->n > 2) {
		/* Sent, but no answer: the VM may be writing an overlay made here. Nothing is removed. */
		fprintf(stderr, "lkvm snapshot: %s; %s and the overlays made for the VM are left as they are\n",
			err_msg(), m->dir);
		m->n = 0;
		m->made_dir = false;
		free(reply);
		goto out;
	}
	if (r < 0) {
		free(reply);
		goto out;
	}
	if (json_get_str(reply, "error", err, sizeof(err))) {
		err_set("VM '%s': %s", name, err);
		free(reply);
		goto out;
	}
	long long ram = 0, paused = 0;
	json_get_num(reply, "ram_bytes", &ram);
	json_get_num(reply, "paused_ms", &paused);
	printf("VM '%s' saved in %s: %lld MiB of RAM in use, paused %lld ms%s\n", name, m->dir, ram >> 20, paused,
	       stop ? ", then stopped" : "");
	for (int i = 0; i < ndisks; i++) {
		char key[32], ov[4096];
		snprintf(key, sizeof(key), "disk%d_overlay", i);
		if (json_get_str(reply, key, ov, sizeof(ov)))
			printf("disk %d: the VM now writes %s\n", i, ov);
	}
	free(reply);
	status = 0;
out:
	for (int i = 0; i < nfds; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	if (status) {
		fprintf(stderr, "lkvm snapshot: %s\n", err_msg());
		undo(m);
	}
	free(m);
	return status;
}
