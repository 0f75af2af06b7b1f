/*
 * libFuzzer target: the gdb stub's packet parser and commands (gdb/packet.c,
 * gdb/stub.c, x86/gdb_target.c) on a fake two-vCPU VM: registers live in
 * memory behind a wrapped ioctl(), guest RAM is 256 KiB whose first bytes (page
 * tables, code, data) and paging registers come from the input, and debug
 * exits (#BP, #DB with any DR6) arrive when the input says. The client's bytes
 * go through the stub as they would from a socket.
 *
 * Input: mode byte (paging: off, 32-bit, PAE, 4-level, 5-level), CR3 (4 bytes),
 * a memory length (2 bytes) and that many bytes of RAM, then records:
 *   0 N BYTES...        N bytes from the client
 *   1 CPU EXC DR6 PC(8) a debug exit on a vCPU (EXC 1: #DB, else #BP)
 * Oracle: ASan/UBSan clean; every byte the stub sends is '+', '-' or a packet
 * with a good checksum; whenever the vCPUs are stopped no int3 of ours is in
 * guest memory.
 */
#include <stdarg.h>
#include <sys/socket.h>
#include "../../gdb/stub.c"

#define FAKE_FD 1000	/* vCPU "fds" the wrapped ioctl() answers for */
#define NR_CPUS 2
#define RAM KiB(256)

static struct vm vm;
static struct vcpu vcpus[NR_CPUS];
static struct {
	struct kvm_regs r;
	struct kvm_sregs s;
	struct kvm_fpu f;
	uint64_t kgs;
} fake[NR_CPUS];

int __real_ioctl(int fd, unsigned long req, ...);
int __wrap_ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	va_start(ap, req);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	if (fd < FAKE_FD || fd >= FAKE_FD + NR_CPUS)
		return __real_ioctl(fd, req, arg);
	int i = fd - FAKE_FD;
	struct kvm_msrs *m = arg;
	switch (req) {
	case KVM_GET_REGS: memcpy(arg, &fake[i].r, sizeof(fake[i].r)); return 0;
	case KVM_SET_REGS: memcpy(&fake[i].r, arg, sizeof(fake[i].r)); return 0;
	case KVM_GET_SREGS: memcpy(arg, &fake[i].s, sizeof(fake[i].s)); return 0;
	case KVM_SET_SREGS: memcpy(&fake[i].s, arg, sizeof(fake[i].s)); return 0;
	case KVM_GET_FPU: memcpy(arg, &fake[i].f, sizeof(fake[i].f)); return 0;
	case KVM_SET_FPU: memcpy(&fake[i].f, arg, sizeof(fake[i].f)); return 0;
	case KVM_GET_MSRS:
		for (unsigned k = 0; k < m->nmsrs; k++)
			m->entries[k].data = fake[i].kgs;
		return m->nmsrs;
	case KVM_SET_MSRS:
		if (m->nmsrs)
			fake[i].kgs = m->entries[0].data;
		return m->nmsrs;
	case KVM_GET_MP_STATE: ((struct kvm_mp_state *)arg)->mp_state = KVM_MP_STATE_RUNNABLE; return 0;
	default: errno = EINVAL; return -1;
	}
}

/* The VM around the stub: holding and releasing are the stub thread's business, not ours here. */
void vm_hold(struct vm *v, bool wait) {}
void vm_release(struct vm *v, int id) {}
int vcpu_set_guest_debug(struct vcpu *v, const struct kvm_guest_debug *dbg) { v->debug = *dbg; return 0; }
void vm_request_exit(struct vm *v, enum vm_exit_reason why, int status) { v->exit_reason = why; }
int control_register(struct control *c, const char *cmd, control_fn fn, void *ctx) { return 0; }
int control_register_fds(struct control *c, const char *cmd, control_fd_fn fn, void *ctx) { return 0; }
void control_handle(struct control *c, const char *line, char *out, size_t len)
{
	snprintf(out, len, "{\"ok\":true,\"text\":\"lkvm: vCPU 0 registers:\\n rip 0\\n\"}\n");
}
void __wrap_pr_warn(const char *fmt, ...) {}

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_gdb: %s\n", what);
	abort();
}

/* Every byte the stub sent: acknowledgements and well-formed packets only. */
static void check_output(int fd, struct gdb_rx *rx)
{
	static uint8_t buf[65536];
	ssize_t n;
	while ((n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
		for (ssize_t i = 0; i < n; i++) {
			enum gdb_rx_event ev = gdb_rx_byte(rx, buf[i]);
			if (ev == GDB_RX_BAD_CHECKSUM || ev == GDB_RX_TOO_LONG || ev == GDB_RX_INTERRUPT)
				fail("the stub sent a malformed packet");
		}
}

static void check_stopped(struct gdb_stub *s)
{
	if (s->running)
		return;
	for (int i = 0; i < s->nr_sw; i++)
		if (s->sw[i].inserted)
			fail("an int3 of ours is in guest memory while the vCPUs are stopped");
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static uint8_t ram[RAM];
	log_level = 0;
	vm.mem.r[0] = (struct mem_region){ 0, RAM, ram };
	vm.mem.nr = 1;
	vm.mem.ram_size = RAM;
	vm.nr_vcpus = NR_CPUS;
	vm.vcpus = vcpus;
	for (int i = 0; i < NR_CPUS; i++) {
		vcpus[i].vm = &vm;
		vcpus[i].id = i;
		vcpus[i].fd = FAKE_FD + i;
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct gdb_rx out_rx;
	if (size < 7)
		return 0;
	/* Paging as the input says, the same on both vCPUs. */
	static const struct { uint64_t cr0, cr4, efer; } modes[] = {
		{ 0x11, 0, 0 }, { 0x80000011, 0x10, 0 }, { 0x80000011, 0x20, 0 },
		{ 0x80000011, 0x20, 0x500 }, { 0x80000011, 0x1020, 0x500 },
	};
	const uint8_t *p = data, *end = data + size;
	unsigned mode = *p++ % ARRAY_SIZE(modes);
	uint32_t cr3 = get_le32(p) & (RAM - 1);
	p += 4;
	size_t memlen = MIN((size_t)get_le16(p), (size_t)(end - p - 2));
	p += 2;
	memset(vm.mem.r[0].host, 0, RAM);
	memcpy(vm.mem.r[0].host, p, memlen);
	p += memlen;
	memset(fake, 0, sizeof(fake));
	for (int i = 0; i < NR_CPUS; i++) {
		fake[i].s.cr0 = modes[mode].cr0;
		fake[i].s.cr3 = cr3;
		fake[i].s.cr4 = modes[mode].cr4;
		fake[i].s.efer = modes[mode].efer;
		fake[i].s.cs.l = modes[mode].efer != 0;
	}
	vm.exit_reason = VM_RUNNING;

	struct gdb_stub *s = xcalloc(1, sizeof(*s));
	s->vm = &vm;
	s->ctl = (struct control *)&vm;	/* any non-NULL: control_handle() above answers */
	s->cpus = xcalloc(NR_CPUS, sizeof(*s->cpus));
	s->caps = ~0u;
	pthread_mutex_init(&s->lock, NULL);
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
		abort();
	int big = 1 << 20;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	gdb_rx_init(&out_rx);
	attach(s, sv[0]);

	while (p < end && s->client_fd >= 0) {
		uint8_t kind = *p++;
		if (kind % 2 == 0 && p < end) {
			size_t n = MIN((size_t)*p, (size_t)(end - p - 1));
			p++;
			on_bytes(s, p, n);
			p += n;
		} else if (end - p >= 11) {
			struct kvm_debug_exit_arch e = { .exception = p[1] == 1 ? GDB_EXC_DEBUG : GDB_EXC_BREAKPOINT,
							 .dr6 = 0xffff0ff0 | (p[2] & 0x0f) | (p[2] & 0x10 ? 0x4000 : 0),
							 .pc = get_le64(p + 3) };
			struct vcpu *v = &vcpus[p[0] % NR_CPUS];
			p += 11;
			/* As the vCPU threads do: only while gdb lets them run. */
			if (s->running && on_debug_event(v, &e, s) && s->running) {
				stop_all(s);
				report(s);
			}
		} else {
			break;
		}
		check_stopped(s);
		check_output(sv[1], &out_rx);
	}
	detach(s, false);
	check_stopped(s);
	close(sv[1]);
	free(s->cpus);
	pthread_mutex_destroy(&s->lock);
	free(s);
	return 0;
}
