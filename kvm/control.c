/* The per-VM control socket: serve list/stop/pause/resume/debug/stat requests. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>
#include "control.h"
#include "evloop.h"
#include "util.h"
#include "virtio.h"
#include "vm.h"

struct control {
	int fd;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char name[64];
};

int control_dir(char *buf, size_t len)
{
	const char *rt = getenv("XDG_RUNTIME_DIR");
	const char *home = getenv("HOME");
	int n;
	if (rt && *rt)
		n = snprintf(buf, len, "%s/lkvm", rt);
	else if (home && *home)
		n = snprintf(buf, len, "%s/.lkvm", home);
	else
		return err_set("neither XDG_RUNTIME_DIR nor HOME is set: nowhere to put control sockets");
	if (n < 0 || (size_t)n >= len)
		return err_set("control socket directory name too long");
	if (mkdir(buf, 0700) < 0 && errno != EEXIST)
		return err_errno("%s", buf);
	return 0;
}

static int socket_path(const char *name, char *out, size_t len)
{
	char dir[200];
	if (control_dir(dir, sizeof(dir)) < 0)
		return -1;
	if (!*name || strchr(name, '/') || strlen(name) > 63)
		return err_set("bad VM name '%s' (1-63 characters, no '/')", name);
	if ((size_t)snprintf(out, len, "%s/%s.sock", dir, name) >= len)
		return err_set("control socket path too long");
	return 0;
}

static int connect_path(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* Append printf output to a bounded buffer. */
static void append(char *out, size_t len, const char *fmt, ...)
{
	size_t used = strlen(out);
	if (used + 1 >= len)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(out + used, len - used, fmt, ap);
	va_end(ap);
}

/* JSON-escape text into out. */
static void append_json_str(char *out, size_t len, const char *s)
{
	append(out, len, "\"");
	for (; *s; s++) {
		unsigned char c = *s;
		if (c == '"' || c == '\\')
			append(out, len, "\\%c", c);
		else if (c == '\n')
			append(out, len, "\\n");
		else if (c == '\r' || c < 0x20)
			continue;
		else
			append(out, len, "%c", c);
	}
	append(out, len, "\"");
}

/* Registers and the top of the stack of every vCPU, the VM paused meanwhile. */
static char *debug_text(struct vm *vm)
{
	char *text = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&text, &size);
	if (!f)
		return NULL;
	bool was_paused = vm->paused;
	vm_pause(vm);
	for (int i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		vcpu_dump(v, f);
		struct kvm_regs r;
		if (ioctl(v->fd, KVM_GET_REGS, &r) < 0)
			continue;
		struct kvm_translation tr = { .linear_address = r.rsp };
		struct kvm_sregs s;
		if (ioctl(v->fd, KVM_GET_SREGS, &s) == 0 && !(s.cr0 & 0x80000000ULL))
			tr.linear_address += s.ss.base;
		if (ioctl(v->fd, KVM_TRANSLATE, &tr) < 0 || !tr.valid)
			continue;
		const uint64_t *stk = guest_ptr(&vm->mem, tr.physical_address, 64);
		if (!stk)
			continue;
		fprintf(f, " stack at %016llx:", (unsigned long long)r.rsp);
		for (int j = 0; j < 8; j++)
			fprintf(f, "%s%016llx", j % 4 ? " " : "\n  ", (unsigned long long)stk[j]);
		fprintf(f, "\n");
	}
	if (!was_paused)
		vm_resume(vm);
	fclose(f);
	return text;
}

void control_handle(struct vm *vm, const char *line, char *out, size_t len)
{
	char cmd[32];
	out[0] = 0;
	if (!json_valid_object(line) || !json_get_str(line, "cmd", cmd, sizeof(cmd))) {
		snprintf(out, len, "{\"ok\":false,\"error\":\"bad request: expected a JSON object with \\\"cmd\\\"\"}\n");
		return;
	}
	long long ver = CONTROL_PROTO_VERSION;
	if (json_get_num(line, "v", &ver) && ver != CONTROL_PROTO_VERSION) {
		snprintf(out, len, "{\"ok\":false,\"error\":\"protocol version %lld not supported (this VM speaks %d)\"}\n",
			 ver, CONTROL_PROTO_VERSION);
		return;
	}
	if (!strcmp(cmd, "info")) {
		append(out, len, "{\"ok\":true,\"v\":%d,\"name\":", CONTROL_PROTO_VERSION);
		append_json_str(out, len, vm->control ? vm->control->name : "");
		append(out, len, ",\"pid\":%d,\"state\":\"%s\",\"vcpus\":%d,\"mem_mib\":%llu}\n", (int)getpid(),
		       vm->paused ? "paused" : "running", vm->nr_vcpus, (unsigned long long)(vm->mem.ram_size >> 20));
	} else if (!strcmp(cmd, "stop")) {
		vm_request_exit(vm, VM_POWEROFF, 0);
		append(out, len, "{\"ok\":true}\n");
	} else if (!strcmp(cmd, "pause")) {
		vm_pause(vm);
		append(out, len, "{\"ok\":true,\"state\":\"paused\"}\n");
	} else if (!strcmp(cmd, "resume")) {
		vm_resume(vm);
		append(out, len, "{\"ok\":true,\"state\":\"running\"}\n");
	} else if (!strcmp(cmd, "debug")) {
		char *text = debug_text(vm);
		append(out, len, "{\"ok\":true,\"text\":");
		append_json_str(out, len, text ? text : "");
		append(out, len, "}\n");
		free(text);
	} else if (!strcmp(cmd, "stat")) {
		uint64_t t[8] = { 0 };
		for (int i = 0; i < vm->nr_vcpus; i++) {
			struct vcpu *v = &vm->vcpus[i];
			t[0] += v->exits; t[1] += v->exits_io; t[2] += v->exits_mmio; t[3] += v->exits_emulated;
			t[4] += v->pio_reads; t[5] += v->pio_writes; t[6] += v->mmio_reads; t[7] += v->mmio_writes;
		}
		append(out, len, "{\"ok\":true,\"mem_mib\":%llu,\"exits\":%llu,\"exits_io\":%llu,\"exits_mmio\":%llu,"
		       "\"exits_emulated\":%llu,\"pio_reads\":%llu,\"pio_writes\":%llu,\"mmio_reads\":%llu,"
		       "\"mmio_writes\":%llu,\"pio_unhandled\":%llu,\"mmio_unhandled\":%llu,\"ioeventfd_kicks\":%llu,\"irqfd_msis\":%llu}\n",
		       (unsigned long long)(vm->mem.ram_size >> 20), (unsigned long long)t[0], (unsigned long long)t[1],
		       (unsigned long long)t[2], (unsigned long long)t[3], (unsigned long long)t[4],
		       (unsigned long long)t[5], (unsigned long long)t[6], (unsigned long long)t[7],
		       (unsigned long long)vm->pio.unhandled, (unsigned long long)vm->mmio.unhandled,
		       (unsigned long long)__atomic_load_n(&vm->ioeventfd_kicks, __ATOMIC_RELAXED),
		       (unsigned long long)__atomic_load_n(&vm->irqfd_msis, __ATOMIC_RELAXED));
		struct balloon_stats bs;
		if (balloon_stats(vm, &bs) == 0) {	/* one more member before the closing brace */
			size_t at = strlen(out);
			if (at >= 2)
				out[at - 2] = 0;
			append(out, len, ",\"balloon_target_pages\":%u,\"balloon_actual_pages\":%u,"
			       "\"balloon_inflated_pages\":%llu,\"balloon_deflated_pages\":%llu}\n", bs.target_pages,
			       bs.actual_pages, (unsigned long long)bs.inflated, (unsigned long long)bs.deflated);
		}
	} else if (!strcmp(cmd, "balloon")) {
		char op[16];
		long long mib = 0;
		struct balloon_stats bs;
		if (!json_get_str(line, "op", op, sizeof(op)) || (strcmp(op, "inflate") && strcmp(op, "deflate")) ||
		    !json_get_num(line, "mib", &mib) || mib <= 0 || mib > (1LL << 30)) {
			append(out, len, "{\"ok\":false,\"error\":\"balloon needs op inflate|deflate and mib > 0\"}\n");
		} else if (balloon_adjust(vm, strcmp(op, "inflate") ? -mib : mib) < 0) {
			append(out, len, "{\"ok\":false,\"error\":");
			append_json_str(out, len, err_msg());
			append(out, len, "}\n");
		} else {
			balloon_stats(vm, &bs);
			append(out, len, "{\"ok\":true,\"target_mib\":%u,\"actual_mib\":%u}\n", bs.target_pages >> 8,
			       bs.actual_pages >> 8);
		}
	} else {
		append(out, len, "{\"ok\":false,\"error\":\"unknown command\"}\n");
	}
}

static void on_client(struct vm *vm, int fd)
{
	/* A client gets a short time to send its line; the loop must not stall. */
	struct timeval tv = { .tv_sec = 0, .tv_usec = 200000 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	char line[CONTROL_MAX_LINE + 1];
	size_t n = 0;
	while (n < CONTROL_MAX_LINE) {
		ssize_t r = read(fd, line + n, CONTROL_MAX_LINE - n);
		if (r <= 0)
			break;
		n += r;
		if (memchr(line, '\n', n))
			break;
	}
	line[n] = 0;
	char *nl = strchr(line, '\n');
	static char reply[65536];
	if (!nl && n >= CONTROL_MAX_LINE) {
		snprintf(reply, sizeof(reply), "{\"ok\":false,\"error\":\"request longer than %d bytes\"}\n",
			 CONTROL_MAX_LINE);
	} else {
		if (nl)
			*nl = 0;
		control_handle(vm, line, reply, sizeof(reply));
	}
	size_t len = strlen(reply), off = 0;
	while (off < len) {
		ssize_t w = send(fd, reply + off, len - off, MSG_NOSIGNAL);
		if (w <= 0)
			break;
		off += w;
	}
}

static void on_listen(void *ctx, uint32_t events)
{
	struct vm *vm = ctx;
	int fd = accept4(vm->control->fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	on_client(vm, fd);
	close(fd);
}

int control_start(struct vm *vm)
{
	struct control *c = xcalloc(1, sizeof(*c));
	if (vm->cfg.name)
		snprintf(c->name, sizeof(c->name), "%s", vm->cfg.name);
	else
		snprintf(c->name, sizeof(c->name), "lkvm-%d", (int)getpid());
	if (socket_path(c->name, c->path, sizeof(c->path)) < 0) {
		free(c);
		return -1;
	}
	int probe = connect_path(c->path);
	if (probe >= 0) {
		close(probe);
		err_set("a VM named '%s' is already running (%s)", c->name, c->path);
		free(c);
		return -1;
	}
	unlink(c->path);	/* stale socket of a VM that died */
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", c->path);
	mode_t old = umask(077);
	int r = c->fd < 0 ? -1 : bind(c->fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r < 0 || listen(c->fd, 8) < 0) {
		err_errno("control socket %s", c->path);
		if (c->fd >= 0)
			close(c->fd);
		free(c);
		return -1;
	}
	chmod(c->path, 0600);
	vm->control = c;
	if (evloop_add(vm->loop, c->fd, 0x001, on_listen, vm) < 0) {
		control_stop(vm);
		return -1;
	}
	return 0;
}

void control_stop(struct vm *vm)
{
	struct control *c = vm->control;
	if (!c)
		return;
	unlink(c->path);
	close(c->fd);
	free(c);
	vm->control = NULL;
}

int control_request(const char *name, const char *request, char *reply, size_t len)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	if (socket_path(name, path, sizeof(path)) < 0)
		return -1;
	int fd = connect_path(path);
	if (fd < 0) {
		if (errno == ENOENT)
			return err_set("no VM named '%s' (see 'lkvm list')", name);
		if (errno == EACCES || errno == EPERM)
			return err_set("%s: permission denied (the VM belongs to another user)", path);
		if (errno == ECONNREFUSED) {
			unlink(path);
			return err_set("no VM named '%s' (removed its stale socket)", name);
		}
		return err_errno("%s", path);
	}
	struct timeval tv = { .tv_sec = 5 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	size_t rl = strlen(request);
	if (send(fd, request, rl, MSG_NOSIGNAL) != (ssize_t)rl || send(fd, "\n", 1, MSG_NOSIGNAL) != 1) {
		close(fd);
		return err_errno("VM '%s': cannot send request", name);
	}
	size_t n = 0;
	while (n + 1 < len) {
		ssize_t r = read(fd, reply + n, len - 1 - n);
		if (r < 0) {
			close(fd);
			return err_set("VM '%s' is not responding", name);
		}
		if (r == 0)
			break;
		n += r;
		if (memchr(reply, '\n', n))
			break;
	}
	close(fd);
	reply[n] = 0;
	if (!n)
		return err_set("VM '%s' closed the connection without replying", name);
	return 0;
}
