/*
 * The control socket's server: its own thread accepts one client at a time,
 * reads one request line (a client gets a second for it), answers, closes.
 * Core commands are here; devices answer theirs through their ops
 * (include/device.h), other owners through control_register().
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>
#include "control.h"
#include "control_int.h"
#include "device.h"
#include "supervise.h"
#include "util.h"
#include "vm.h"

#define MAX_EXTRA_CMDS 16
#define CLIENT_TIMEOUT_MS 1000
#define MAX_PASSED_FDS 16

struct control {
	struct vm *vm;
	char name[64];
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int fd;			/* listening socket, -1 until control_listen */
	int stop_fd;		/* eventfd: the thread leaves */
	pthread_t thread;
	bool running;
	pthread_mutex_t lock;	/* the extra commands */
	int nr_extra;
	struct { const char *cmd; control_fn fn; control_fd_fn fd_fn; void *ctx; } extra[MAX_EXTRA_CMDS];
	/* Descriptors that came with the request being served; a command that takes them sets nfds to 0. */
	int fds[MAX_PASSED_FDS];
	int nfds;
};

struct control *control_new(struct vm *vm, const char *name)
{
	struct control *c = xcalloc(1, sizeof(*c));
	c->vm = vm;
	c->fd = c->stop_fd = -1;
	pthread_mutex_init(&c->lock, NULL);
	if (name)
		snprintf(c->name, sizeof(c->name), "%s", name);
	else
		snprintf(c->name, sizeof(c->name), "lkvm-%d", (int)getpid());	/* a jailed run names itself before its PID becomes 1 */
	return c;
}

int control_register(struct control *c, const char *cmd, control_fn fn, void *ctx)
{
	pthread_mutex_lock(&c->lock);
	int ret = 0;
	if (c->nr_extra == MAX_EXTRA_CMDS)
		ret = err_set("too many control commands");
	else
		c->extra[c->nr_extra++] = (typeof(c->extra[0])){ cmd, fn, NULL, ctx };
	pthread_mutex_unlock(&c->lock);
	return ret;
}

int control_register_fds(struct control *c, const char *cmd, control_fd_fn fn, void *ctx)
{
	pthread_mutex_lock(&c->lock);
	int ret = 0;
	if (c->nr_extra == MAX_EXTRA_CMDS)
		ret = err_set("too many control commands");
	else
		c->extra[c->nr_extra++] = (typeof(c->extra[0])){ cmd, NULL, fn, ctx };
	pthread_mutex_unlock(&c->lock);
	return ret;
}

static void close_passed(struct control *c)
{
	for (int i = 0; i < c->nfds; i++)
		close(c->fds[i]);
	c->nfds = 0;
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
	for (int i = 0; vm->vcpus && i < vm->nr_vcpus; i++) {
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

static void stat_members(struct vm *vm, struct json_writer *j)
{
	uint64_t t[8] = { 0 };
	for (int i = 0; vm->vcpus && i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		t[0] += v->exits; t[1] += v->exits_io; t[2] += v->exits_mmio; t[3] += v->exits_emulated;
		t[4] += v->pio_reads; t[5] += v->pio_writes; t[6] += v->mmio_reads; t[7] += v->mmio_writes;
	}
	json_u64(j, "mem_mib", vm->mem.ram_size >> 20);
	static const char *const names[8] = { "exits", "exits_io", "exits_mmio", "exits_emulated",
					       "pio_reads", "pio_writes", "mmio_reads", "mmio_writes" };
	for (int i = 0; i < 8; i++)
		json_u64(j, names[i], t[i]);
	json_u64(j, "pio_unhandled", vm->pio.unhandled);
	json_u64(j, "mmio_unhandled", vm->mmio.unhandled);
	json_u64(j, "ioeventfd_kicks", __atomic_load_n(&vm->ioeventfd_kicks, __ATOMIC_RELAXED));
	json_u64(j, "irqfd_msis", __atomic_load_n(&vm->irqfd_msis, __ATOMIC_RELAXED));
	json_u64(j, "generation", vm->generation);	/* restores of a snapshot this VM went through */
	for (struct device *d = vm->devices; d; d = d->next)
		if (d->ops->stats)
			d->ops->stats(d, j);
}

/* The reply's members for cmd; -1 with err set for {"ok":false,...}. */
static int run_cmd(struct control *c, const char *cmd, const char *line, struct json_writer *j)
{
	struct vm *vm = c->vm;
	if (!strcmp(cmd, "info")) {
		json_u64(j, "v", CONTROL_PROTO_VERSION);
		json_str(j, "name", c->name);
		json_u64(j, "pid", (uint64_t)supervise_host_pid());
		json_str(j, "state", vm->paused ? "paused" : "running");
		json_u64(j, "vcpus", (uint64_t)vm->nr_vcpus);
		json_u64(j, "mem_mib", vm->mem.ram_size >> 20);
		return 0;
	}
	if (!strcmp(cmd, "stop")) {
		vm_request_exit(vm, VM_POWEROFF, 0);
		return 0;
	}
	if (!strcmp(cmd, "pause")) {
		vm_pause(vm);
		json_str(j, "state", "paused");
		return 0;
	}
	if (!strcmp(cmd, "resume")) {
		vm_resume(vm);
		json_str(j, "state", "running");
		return 0;
	}
	if (!strcmp(cmd, "debug")) {
		char *text = debug_text(vm);
		json_str(j, "text", text ? text : "");
		free(text);
		return 0;
	}
	if (!strcmp(cmd, "stat")) {
		stat_members(vm, j);
		return 0;
	}
	pthread_mutex_lock(&c->lock);
	for (int i = 0; i < c->nr_extra; i++) {
		if (!strcmp(c->extra[i].cmd, cmd)) {
			control_fn fn = c->extra[i].fn;
			control_fd_fn fd_fn = c->extra[i].fd_fn;
			void *ctx = c->extra[i].ctx;
			pthread_mutex_unlock(&c->lock);
			if (!fd_fn)
				return fn(ctx, line, j);
			int n = c->nfds;
			c->nfds = 0;	/* the command's now, to keep or close */
			return fd_fn(ctx, line, c->fds, n, j);
		}
	}
	pthread_mutex_unlock(&c->lock);
	for (struct device *d = vm->devices; d; d = d->next)
		for (const struct device_cmd *dc = d->ops->cmds; dc && dc->name; dc++)
			if (!strcmp(dc->name, cmd))
				return dc->fn(d, line, j);
	return err_set("unknown command");
}

static void error_reply(struct json_writer *j, const char *msg)
{
	json_begin(j, NULL, '{');
	json_bool(j, "ok", false);
	json_str(j, "error", msg);
	json_end(j);
}

void control_handle(struct control *c, const char *line, char *out, size_t len)
{
	struct json_writer j;
	json_init(&j);
	char cmd[32];
	long long ver = CONTROL_PROTO_VERSION;
	if (!json_valid_object(line) || !json_get_str(line, "cmd", cmd, sizeof(cmd))) {
		error_reply(&j, "bad request: expected a JSON object with \"cmd\"");
	} else if (json_get_num(line, "v", &ver) && ver != CONTROL_PROTO_VERSION) {
		char msg[128];
		snprintf(msg, sizeof(msg), "protocol version %lld not supported (this VM speaks %d)", ver,
			 CONTROL_PROTO_VERSION);
		error_reply(&j, msg);
	} else {
		json_begin(&j, NULL, '{');
		json_bool(&j, "ok", true);
		if (run_cmd(c, cmd, line, &j) < 0) {
			json_free(&j);
			json_init(&j);
			error_reply(&j, err_msg());
		} else {
			json_end(&j);
		}
	}
	/* One line, always: cut short where the buffer ends (then it is not valid JSON, but still one line). */
	snprintf(out, len, "%s\n", json_text(&j));
	if (len >= 2 && !strchr(out, '\n'))
		out[len - 2] = '\n';
	json_free(&j);
}

/* Read into buf, keeping any descriptors passed along (SCM_RIGHTS) in c->fds. */
static ssize_t read_with_fds(struct control *c, int fd, char *buf, size_t len)
{
	union {
		struct cmsghdr h;
		char space[CMSG_SPACE(sizeof(int) * MAX_PASSED_FDS)];
	} cm;
	struct iovec iov = { buf, len };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.space, .msg_controllen = sizeof(cm.space) };
	ssize_t r = recvmsg(fd, &m, MSG_CMSG_CLOEXEC);
	for (struct cmsghdr *h = r >= 0 ? CMSG_FIRSTHDR(&m) : NULL; h; h = CMSG_NXTHDR(&m, h)) {
		if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
			continue;
		int k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (int i = 0; i < k; i++) {
			int passed;
			memcpy(&passed, CMSG_DATA(h) + i * sizeof(int), sizeof(int));
			if (c->nfds < MAX_PASSED_FDS)
				c->fds[c->nfds++] = passed;
			else
				close(passed);
		}
	}
	return r;
}

/* One client: its line within CLIENT_TIMEOUT_MS, then the reply. */
static void serve(struct control *c, int fd)
{
	char line[CONTROL_MAX_LINE + 1];
	size_t n = 0;
	while (n < CONTROL_MAX_LINE) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, CLIENT_TIMEOUT_MS) <= 0)
			break;
		ssize_t r = read_with_fds(c, fd, line + n, CONTROL_MAX_LINE - n);
		if (r <= 0)
			break;
		n += r;
		if (memchr(line, '\n', n))
			break;
	}
	line[n] = 0;
	char *nl = strchr(line, '\n');
	size_t cap = 1 << 20;
	char *reply = xcalloc(1, cap);
	if (!nl && n >= CONTROL_MAX_LINE) {
		snprintf(reply, cap, "{\"ok\":false,\"error\":\"request longer than %d bytes\"}\n", CONTROL_MAX_LINE);
	} else {
		if (nl)
			*nl = 0;
		control_handle(c, line, reply, cap);
	}
	close_passed(c);	/* descriptors no command took */
	size_t len = strlen(reply), off = 0;
	while (off < len) {
		ssize_t w = send(fd, reply + off, len - off, MSG_NOSIGNAL);
		if (w <= 0)
			break;
		off += w;
	}
	free(reply);
}

static void *control_thread(void *arg)
{
	struct control *c = arg;
	pthread_setname_np(pthread_self(), "lkvm-control");
	for (;;) {
		struct pollfd p[2] = { { .fd = c->fd, .events = POLLIN }, { .fd = c->stop_fd, .events = POLLIN } };
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		if (!(p[0].revents & POLLIN))
			continue;
		int fd = accept4(c->fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		serve(c, fd);
		close(fd);
	}
	return NULL;
}

int control_bind(struct control *c)
{
	if (control_socket_path(c->name, c->path, sizeof(c->path)) < 0)
		return -1;
	int probe = control_connect(c->path);
	if (probe >= 0) {
		close(probe);
		return err_set("a VM named '%s' is already running (%s)", c->name, c->path);
	}
	if (errno == ECONNREFUSED)
		control_remove_stale(c->path);	/* a VM that died; anything else stays and bind fails */
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c->fd < 0)
		return err_errno("control socket");
	/* The file bind() makes takes the socket inode's mode (less the umask): 0600 from the start. */
	if (fchmod(c->fd, 0600) < 0)
		return err_errno("control socket: fchmod");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", c->path);
	if (bind(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(c->fd, 8) < 0) {
		err_errno("control socket %s", c->path);
		close(c->fd);
		c->fd = -1;
		return -1;
	}
	return 0;
}

int control_start(struct control *c)
{
	c->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (c->stop_fd < 0 || thread_start(&c->thread, control_thread, c)) {
		err_errno("control socket %s: cannot start its thread", c->path);
		unlink(c->path);
		return -1;
	}
	c->running = true;
	return 0;
}

const char *control_path(const struct control *c)
{
	return c && c->fd >= 0 ? c->path : NULL;
}

int control_listen(struct control *c)
{
	return control_bind(c) < 0 ? -1 : control_start(c);
}

void control_free(struct control *c)
{
	if (!c)
		return;
	if (c->running) {
		uint64_t one = 1;
		if (write(c->stop_fd, &one, sizeof(one)) < 0) {}
		pthread_join(c->thread, NULL);
	}
	if (c->fd >= 0) {
		unlink(c->path);
		close(c->fd);
	}
	if (c->stop_fd >= 0)
		close(c->stop_fd);
	pthread_mutex_destroy(&c->lock);
	free(c);
}
