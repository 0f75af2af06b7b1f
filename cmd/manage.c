/* lkvm list/stop/pause/resume/debug/stat/balloon: clients of the control socket. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "commands.h"
#include "control.h"
#include "gdb.h"
#include "util.h"

#define REPLY_MAX 65536

static int fail(const char *cmd)
{
	fprintf(stderr, "lkvm %s: %s\n", cmd, err_msg());
	return EXIT_USAGE;
}

/* Send {"v":1,"cmd":...}; print an error line and return non-zero if not ok. */
static int request(const char *cmd, const char *name, const char *extra, char *reply)
{
	char req[256];
	snprintf(req, sizeof(req), "{\"v\":%d,\"cmd\":\"%s\"%s}", CONTROL_PROTO_VERSION, cmd, extra ? extra : "");
	if (control_request(name, req, reply, REPLY_MAX) < 0)
		return fail(cmd);
	char err[256];
	if (json_get_str(reply, "error", err, sizeof(err))) {
		fprintf(stderr, "lkvm %s: VM '%s': %s\n", cmd, name, err);
		return EXIT_USAGE;
	}
	return 0;
}


static int list_one(const char *name, void *arg)
{
	char reply[REPLY_MAX], state[16] = "?";
	char req[64];
	snprintf(req, sizeof(req), "{\"v\":%d,\"cmd\":\"info\"}", CONTROL_PROTO_VERSION);
	if (control_request(name, req, reply, sizeof(reply)) < 0)
		return 0;	/* stale (now removed) or gone: not listed */
	long long pid = 0, vcpus = 0, mem = 0;
	json_get_num(reply, "pid", &pid);
	json_get_num(reply, "vcpus", &vcpus);
	json_get_num(reply, "mem_mib", &mem);
	json_get_str(reply, "state", state, sizeof(state));
	printf("%-24s %8lld %-8s %5lld %8lld\n", name, pid, state, vcpus, mem);
	return 0;
}

int cmd_list(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--all")) {
		if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
			printf("usage: lkvm list [--all]\nList running VMs (name, pid, state, vCPUs, memory in MiB).\n");
			return 0;
		}
		fprintf(stderr, "lkvm list: unknown argument '%s'\n", argv[1]);
		return EXIT_USAGE;
	}
	printf("%-24s %8s %-8s %5s %8s\n", "NAME", "PID", "STATE", "VCPUS", "MEM_MIB");
	if (control_for_each(list_one, NULL) < 0)
		return fail("list");
	return 0;
}

static int stop_one(const char *name, void *arg)
{
	char reply[REPLY_MAX];
	return request("stop", name, NULL, reply) ? 1 : 0;
}

/* One VM name argument, or --all where the command allows it. */
static int simple(int argc, char **argv, const char *cmd, bool allow_all, const char *help)
{
	if (argc != 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		bool h = argc == 2;
		fprintf(h ? stdout : stderr, "usage: lkvm %s %s\n%s\n", cmd, allow_all ? "NAME|--all" : "NAME", help);
		return h ? 0 : EXIT_USAGE;
	}
	if (allow_all && !strcmp(argv[1], "--all")) {
		int r = control_for_each(stop_one, NULL);
		return r < 0 ? fail(cmd) : r ? EXIT_USAGE : 0;
	}
	char reply[REPLY_MAX];
	int r = request(cmd, argv[1], NULL, reply);
	if (r)
		return r;
	char text[REPLY_MAX];
	if (json_get_str(reply, "text", text, sizeof(text)))
		fputs(text, stdout);
	else if (!strcmp(cmd, "stat"))
		fputs(reply, stdout);
	return 0;
}

int cmd_stop(int argc, char **argv) { return simple(argc, argv, "stop", true, "Power the VM off; lkvm run then exits 0."); }
int cmd_pause(int argc, char **argv) { return simple(argc, argv, "pause", false, "Park every vCPU."); }
int cmd_resume(int argc, char **argv) { return simple(argc, argv, "resume", false, "Restart parked vCPUs."); }
int cmd_debug(int argc, char **argv) { return simple(argc, argv, "debug", false, "Registers, segments and stack top of every vCPU."); }
int cmd_stat(int argc, char **argv) { return simple(argc, argv, "stat", false, "Exit and I/O counters (JSON)."); }

int cmd_balloon(int argc, char **argv)
{
	if (argc != 4 || (strcmp(argv[2], "inflate") && strcmp(argv[2], "deflate"))) {
		fprintf(stderr, "usage: lkvm balloon NAME inflate|deflate MiB\n");
		return EXIT_USAGE;
	}
	char *end;
	long mib = strtol(argv[3], &end, 10);
	if (*end || mib <= 0) {
		fprintf(stderr, "lkvm balloon: '%s' is not a positive number of MiB\n", argv[3]);
		return EXIT_USAGE;
	}
	char extra[64], reply[REPLY_MAX];
	snprintf(extra, sizeof(extra), ",\"op\":\"%s\",\"mib\":%ld", argv[2], mib);
	return request("balloon", argv[1], extra, reply);
}
/* lkvm gdb NAME tcp:[HOST:]PORT|unix:PATH|PORT: open a gdb stub on a running VM. */
int cmd_gdb(int argc, char **argv)
{
	if (argc != 3) {
		bool h = argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"));
		fprintf(h ? stdout : stderr, "usage: lkvm gdb NAME tcp:[HOST:]PORT|unix:PATH|PORT\n"
			"Open a gdb stub on a running VM (gdb: target remote :PORT, or target remote unix::PATH).\n");
		return h ? 0 : EXIT_USAGE;
	}
	/*
	 * The socket is made here, with this user's paths and rights, and handed to the VM
	 * with the request: a jailed VM has no path to bind (a unix path is made absolute).
	 */
	char addr[200], cwd[4096];
	const char *a = argv[2];
	if (!strncmp(a, "unix:", 5) && a[5] && a[5] != '/') {
		if (!getcwd(cwd, sizeof(cwd)) || snprintf(addr, sizeof(addr), "unix:%s/%s", cwd, a + 5) >= (int)sizeof(addr)) {
			fprintf(stderr, "lkvm gdb: %s: path too long\n", a);
			return EXIT_USAGE;
		}
		a = addr;
	}
	char where[160], path[GDB_UNIX_PATH_MAX];
	int fd = gdb_listen(a, where, sizeof(where), path, sizeof(path));
	if (fd < 0) {
		fprintf(stderr, "lkvm gdb: %s\n", err_msg());
		return EXIT_USAGE;
	}
	if (strpbrk(where, "\"\\") || strpbrk(path, "\"\\")) {
		fprintf(stderr, "lkvm gdb: '%s': a path with quotes or backslashes cannot go in a request\n", a);
		close(fd);
		if (path[0])
			unlink(path);
		return EXIT_USAGE;
	}
	char req[512], reply[REPLY_MAX], got[200], err[256];
	snprintf(req, sizeof(req), "{\"v\":%d,\"cmd\":\"gdb\",\"addr\":\"%s\",\"path\":\"%s\"}",
		 CONTROL_PROTO_VERSION, where, path);
	int r = 0;
	if (control_request_fds(argv[1], req, &fd, 1, reply, sizeof(reply), 5) < 0) {
		r = fail("gdb");
	} else if (json_get_str(reply, "error", err, sizeof(err))) {
		fprintf(stderr, "lkvm gdb: VM '%s': %s\n", argv[1], err);
		r = EXIT_USAGE;
	}
	close(fd);	/* the VM has its own copy */
	if (r) {
		if (path[0])
			unlink(path);
		return r;
	}
	if (json_get_str(reply, "listen", got, sizeof(got)))
		printf("gdb stub of '%s' listening on %s\n", argv[1], got);
	return 0;
}
