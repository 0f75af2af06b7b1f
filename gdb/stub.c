/*
 * The gdb stub: GDB's remote serial protocol for a running VM, every vCPU a
 * thread. One thread of its own ("lkvm-gdb") listens, serves one client at a
 * time and refuses others. While gdb looks, every vCPU is held outside KVM_RUN
 * (vm_hold); gdb's c/s/vCont release all of them or one, with the vCPU's
 * KVM_SET_GUEST_DEBUG flags set for single-stepping, software breakpoints
 * (int3) and the debug registers. A vCPU thread hands each #DB/#BP to
 * on_debug_event(): one of ours holds every vCPU and wakes the stub thread,
 * which sends the stop reply; any other goes back to the guest.
 *
 * Software breakpoints are in guest memory only while the vCPUs run: they are
 * written when gdb lets the vCPUs go and taken out as soon as all are stopped,
 * so gdb's memory reads, and the guest's own reads of its code while stopped,
 * never see a 0xcc of ours. (A guest reading its own code while it runs can
 * see one, as under every stub that uses int3.)
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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
#include <unistd.h>
#include "commands.h"
#include "control.h"
#include "json.h"
#include "options.h"
#include "gdb.h"
#include "util.h"
#include "vm.h"

#define MAX_SW_BPS 64
#define MAX_WATCH_LEN 32	/* bytes one Z2-Z4 may cover (split over the four slots) */
#define SIGTRAP_NR 5
#define SIGINT_NR 2

enum ev_kind { EV_NONE, EV_SWBP, EV_HWBP, EV_WATCH, EV_STEP };

struct gdb_event {
	enum ev_kind kind;
	enum gdb_hw_kind watch;	/* EV_WATCH: write, read or access */
	uint64_t addr;		/* EV_WATCH: the address gdb asked to watch */
	unsigned long seq;	/* the first to happen is reported first */
};

struct gdb_cpu {
	bool step;		/* single-stepping: a #DB with BS is ours */
	struct gdb_event ev;	/* what stopped it, until reported */
};

struct sw_bp {
	uint64_t addr, gpa;
	uint8_t orig;
	bool inserted;
};

/* One Z1-Z4 as gdb asked for it, over one or more debug-register slots. */
struct hw_bp {
	enum gdb_hw_kind kind;
	uint64_t addr, len;
	unsigned slots;		/* bit n: slot n */
};

enum action { ACT_STOP, ACT_CONT, ACT_STEP };

struct gdb_stub {
	struct vm *vm;
	struct control *ctl;	/* for monitor debug/stat; may be NULL */
	bool thread_started;
	char where[160];	/* what we listen on, for messages */
	char unix_path[GDB_UNIX_PATH_MAX];
	int listen_fd, client_fd, wake_fd;
	pthread_t thread;
	bool quit;		/* atomic: the VM ended */
	uint32_t caps;		/* KVM_GUESTDBG_* flags this KVM takes */

	/* Shared with the vCPU threads' on_debug_event(). */
	pthread_mutex_t lock;
	bool attached;
	unsigned long seq;
	struct gdb_cpu *cpus;
	uint8_t seen[GDB_HW_SLOTS][8];	/* read watchpoints: the bytes when the vCPUs last ran */
	bool seen_ok[GDB_HW_SLOTS];

	/* The stub thread's own. */
	bool running;		/* gdb let vCPUs go and waits for a stop reply */
	bool noack;
	bool gdb_swbreak, gdb_hwbreak;	/* gdb understands these stop reasons */
	int g_cpu, c_cpu;	/* Hg, Hc; c_cpu -1: all */
	struct gdb_rx rx;
	char stop[128];		/* the last stop reply, for '?' */
	struct sw_bp sw[MAX_SW_BPS];
	int nr_sw;
	struct hw_bp hw[GDB_HW_SLOTS];
	int nr_hw;
	struct gdb_hw_slot slots[GDB_HW_SLOTS];
	size_t last_len;
	char last[2 * GDB_PACKET_MAX + 8];	/* the last packet sent, framed: '-' sends it again */
	char reply[GDB_PACKET_MAX + 1];
};

/* ---- sending ---- */

static void send_raw(struct gdb_stub *s, const void *buf, size_t len)
{
	const char *p = buf;
	while (len && s->client_fd >= 0) {
		ssize_t n = send(s->client_fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;	/* the reader finds the connection gone */
		p += n;
		len -= n;
	}
}

static void put_bin(struct gdb_stub *s, const void *payload, size_t len)
{
	s->last_len = gdb_frame(payload, len, s->last, sizeof(s->last));
	send_raw(s, s->last, s->last_len);
}

static void put(struct gdb_stub *s, const char *payload)
{
	put_bin(s, payload, strlen(payload));
}

static void putf(struct gdb_stub *s, const char *fmt, ...) PRINTF(2, 3);
static void putf(struct gdb_stub *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->reply, sizeof(s->reply), fmt, ap);
	va_end(ap);
	put(s, s->reply);
}

/* Console output for gdb (qRcmd): O packets of hex, a few hundred bytes each. */
static void put_console(struct gdb_stub *s, const char *text)
{
	size_t len = strlen(text);
	while (len) {
		size_t n = MIN(len, 512);
		s->reply[0] = 'O';
		gdb_hex_encode(text, n, s->reply + 1);
		put(s, s->reply);
		text += n;
		len -= n;
	}
}

/* ---- vCPU control ---- */

static bool cpu_ok(struct gdb_stub *s, long tid)
{
	return tid >= 1 && tid <= s->vm->nr_vcpus;
}

static struct vcpu *gcpu(struct gdb_stub *s)
{
	return &s->vm->vcpus[s->g_cpu];
}

static uint8_t *bp_byte(struct gdb_stub *s, const struct sw_bp *b)
{
	return guest_ptr(&s->vm->mem, b->gpa, 1);
}

static void insert_sw_bps(struct gdb_stub *s)
{
	for (int i = 0; i < s->nr_sw; i++) {
		struct sw_bp *b = &s->sw[i];
		uint8_t *p = bp_byte(s, b);
		if (!p || b->inserted)
			continue;
		b->orig = *p;
		*p = 0xcc;	/* int3 */
		b->inserted = true;
	}
}

/* In the reverse order: two addresses on one byte get their original back. */
static void remove_sw_bps(struct gdb_stub *s)
{
	for (int i = s->nr_sw - 1; i >= 0; i--) {
		struct sw_bp *b = &s->sw[i];
		uint8_t *p = bp_byte(s, b);
		if (!b->inserted || !p)
			continue;
		if (*p == 0xcc)	/* else the guest wrote there itself: keep its byte */
			*p = b->orig;
		b->inserted = false;
	}
}

/* Every vCPU outside KVM_RUN, our int3s out of guest memory. */
static void stop_all(struct gdb_stub *s)
{
	vm_hold(s->vm, true);
	remove_sw_bps(s);
	s->running = false;
}

static unsigned used_slots(struct gdb_stub *s)
{
	unsigned m = 0;
	for (int i = 0; i < GDB_HW_SLOTS; i++)
		if (s->slots[i].kind != GDB_HW_FREE)
			m |= 1u << i;
	return m;
}

/* Bytes of guest memory at a virtual address as vCPU v translates it; false if not all RAM. */
static bool read_virt(struct vm *vm, struct vcpu *v, uint64_t va, void *buf, size_t len)
{
	struct gdb_paging pg;
	uint8_t *b = buf;
	if (gdb_target_paging(v, &pg) < 0)
		return false;
	while (len) {
		uint64_t gpa, left;
		if (gdb_translate(&vm->mem, &pg, va, &gpa, &left) < 0)
			return false;
		size_t n = MIN(len, left);
		const uint8_t *p = guest_ptr(&vm->mem, gpa, n);
		if (!p)
			return false;
		memcpy(b, p, n);
		b += n;
		va += n;
		len -= n;
	}
	return true;
}

static void build_debug(struct gdb_stub *s, bool step, struct kvm_guest_debug *d)
{
	memset(d, 0, sizeof(*d));
	d->control = KVM_GUESTDBG_ENABLE;
	if (s->nr_sw)
		d->control |= KVM_GUESTDBG_USE_SW_BP;
	if (used_slots(s)) {
		d->control |= KVM_GUESTDBG_USE_HW_BP;
		gdb_target_debugregs(s->slots, d->arch.debugreg);
	}
	if (step)	/* interrupts held off, so a step is one instruction of this code */
		d->control |= KVM_GUESTDBG_SINGLESTEP | (s->caps & KVM_GUESTDBG_BLOCKIRQ);
}

static void send_stop(struct gdb_stub *s, int cpu, const struct gdb_event *ev)
{
	int n = snprintf(s->stop, sizeof(s->stop), "T%02xthread:%x;", ev ? SIGTRAP_NR : SIGINT_NR, cpu + 1);
	if (ev && ev->kind == EV_SWBP && s->gdb_swbreak)
		snprintf(s->stop + n, sizeof(s->stop) - n, "swbreak:;");
	else if (ev && ev->kind == EV_HWBP && s->gdb_hwbreak)
		snprintf(s->stop + n, sizeof(s->stop) - n, "hwbreak:;");
	else if (ev && ev->kind == EV_WATCH)
		snprintf(s->stop + n, sizeof(s->stop) - n, "%s:%llx;",
			 ev->watch == GDB_HW_WRITE ? "watch" : ev->watch == GDB_HW_READ ? "rwatch" : "awatch",
			 (unsigned long long)ev->addr);
	s->g_cpu = cpu;
	put(s, s->stop);
}

/* After stop_all(): report the first event that happened, or an interrupt. */
static void report(struct gdb_stub *s)
{
	int best = -1;
	struct gdb_event ev;
	pthread_mutex_lock(&s->lock);
	for (int i = 0; i < s->vm->nr_vcpus; i++) {
		struct gdb_event *e = &s->cpus[i].ev;
		if (e->kind != EV_NONE && (best < 0 || e->seq < s->cpus[best].ev.seq))
			best = i;
	}
	if (best >= 0) {
		ev = s->cpus[best].ev;
		s->cpus[best].ev.kind = EV_NONE;
	}
	pthread_mutex_unlock(&s->lock);
	send_stop(s, best >= 0 ? best : s->g_cpu, best >= 0 ? &ev : NULL);
}

/*
 * Let the vCPUs go as act[] says. A watchpoint another vCPU hit meanwhile is reported
 * at once instead (gdb has not seen it); other leftover stops recur or are moot.
 */
static void resume(struct gdb_stub *s, const enum action *act)
{
	struct vm *vm = s->vm;
	pthread_mutex_lock(&s->lock);
	int pending = -1;
	for (int i = 0; i < vm->nr_vcpus; i++) {
		struct gdb_cpu *c = &s->cpus[i];
		if (c->ev.kind == EV_WATCH && act[i] != ACT_STOP && (pending < 0 || c->ev.seq < s->cpus[pending].ev.seq))
			pending = i;
		else if (c->ev.kind != EV_WATCH)
			c->ev.kind = EV_NONE;
		c->step = act[i] == ACT_STEP;
	}
	pthread_mutex_unlock(&s->lock);
	if (pending >= 0) {
		report(s);
		return;
	}
	/* Read watchpoints tell a read from a write by the value: remember it. */
	for (int i = 0; i < GDB_HW_SLOTS; i++)
		if (s->slots[i].kind == GDB_HW_READ)
			s->seen_ok[i] = read_virt(vm, gcpu(s), s->slots[i].addr, s->seen[i], s->slots[i].len);
	for (int i = 0; i < vm->nr_vcpus; i++) {
		struct kvm_guest_debug d;
		build_debug(s, act[i] == ACT_STEP, &d);
		if (vcpu_set_guest_debug(&vm->vcpus[i], &d) < 0)
			pr_warn("gdb: %s", err_msg());
	}
	insert_sw_bps(s);
	s->running = true;
	for (int i = 0; i < vm->nr_vcpus; i++)
		if (act[i] != ACT_STOP)
			vm_release(vm, i);
}

/* ---- what the vCPU threads hand us ---- */

/*
 * Is the int3 at pc one of ours? By its address, or else by where pc lands in guest RAM:
 * code reached through another mapping (a kernel that maps itself later) runs our int3
 * too, and must not get it as its own.
 */
static bool is_our_int3(struct gdb_stub *s, struct vcpu *v, uint64_t pc)
{
	struct gdb_paging pg;
	uint64_t gpa, left;
	bool have_gpa = false;
	for (int i = 0; i < s->nr_sw; i++) {
		if (!s->sw[i].inserted)
			continue;
		if (s->sw[i].addr == pc)
			return true;
		if (!have_gpa && (gdb_target_paging(v, &pg) < 0 || gdb_translate(&v->vm->mem, &pg, pc, &gpa, &left) < 0))
			return false;
		have_gpa = true;
		if (s->sw[i].gpa == gpa)
			return true;
	}
	return false;
}

static uint64_t watch_addr(struct gdb_stub *s, int slot)
{
	for (int i = 0; i < s->nr_hw; i++)
		if (s->hw[i].slots & (1u << slot))
			return s->hw[i].addr;
	return s->slots[slot].addr;
}

/* On a vCPU thread: a #DB or #BP. True when it is ours (a stop, or a read watchpoint's write). */
static bool on_debug_event(struct vcpu *v, const struct kvm_debug_exit_arch *e, void *ctx)
{
	struct gdb_stub *s = ctx;
	struct gdb_event ev = { EV_NONE };
	pthread_mutex_lock(&s->lock);
	if (!s->attached) {
		pthread_mutex_unlock(&s->lock);
		return false;
	}
	if (e->exception == GDB_EXC_BREAKPOINT) {
		if (is_our_int3(s, v, e->pc))
			ev.kind = EV_SWBP;
	} else if (e->exception == GDB_EXC_DEBUG) {
		unsigned hit = gdb_target_dr6_slots(e->dr6) & used_slots(s);
		if (hit) {
			int i = __builtin_ctz(hit);
			const struct gdb_hw_slot *sl = &s->slots[i];
			if (sl->kind == GDB_HW_EXEC) {
				ev.kind = EV_HWBP;
			} else {
				uint8_t now[8];
				if (sl->kind == GDB_HW_READ && s->seen_ok[i] && read_virt(v->vm, v, sl->addr, now, sl->len) &&
				    memcmp(now, s->seen[i], sl->len)) {
					/* x86 traps reads and writes alike: a changed value was a write. */
					memcpy(s->seen[i], now, sl->len);
					pthread_mutex_unlock(&s->lock);
					return true;
				}
				ev.kind = EV_WATCH;
				ev.watch = sl->kind;
				ev.addr = watch_addr(s, i);
			}
		} else if (gdb_target_dr6_step(e->dr6) && s->cpus[v->id].step) {
			ev.kind = EV_STEP;
		}
	}
	if (ev.kind == EV_NONE) {
		pthread_mutex_unlock(&s->lock);
		return false;
	}
	ev.seq = ++s->seq;
	s->cpus[v->id].ev = ev;
	s->cpus[v->id].step = false;
	pthread_mutex_unlock(&s->lock);
	vm_hold(v->vm, false);	/* this vCPU parks as its loop goes round; the others are kicked */
	uint64_t one = 1;
	if (write(s->wake_fd, &one, sizeof(one)) < 0) {}
	return true;
}

/* ---- commands ---- */

static void put_error(struct gdb_stub *s, int code)
{
	putf(s, "E%02x", code);
}
#define E_MALFORMED 0x01
#define E_THREAD 0x02
#define E_REGS 0x03
#define E_FAULT 0x0e	/* EFAULT: memory not accessible */
#define E_INVAL 0x16
#define E_NOSPC 0x1c	/* no breakpoint slot left */

static void pkt_read_mem(struct gdb_stub *s, const char *p)
{
	uint64_t addr, len;
	struct gdb_paging pg;
	if (!gdb_parse_addr_len(&p, &addr, &len) || *p)
		return put_error(s, E_MALFORMED);
	len = MIN(len, (uint64_t)GDB_PACKET_MAX / 2);	/* a shorter reply is allowed */
	if (gdb_target_paging(gcpu(s), &pg) < 0)
		return put_error(s, E_FAULT);
	static uint8_t data[GDB_PACKET_MAX / 2];
	size_t got = 0;
	while (got < len) {
		uint64_t gpa, left;
		if (gdb_translate(&s->vm->mem, &pg, addr + got, &gpa, &left) < 0)
			break;
		size_t n = MIN(len - got, left);
		const uint8_t *src = guest_ptr(&s->vm->mem, gpa, n);
		if (!src)
			break;	/* not RAM (MMIO): a debugger's read must not reach a device */
		memcpy(data + got, src, n);
		got += n;
	}
	if (!got && len)
		return put_error(s, E_FAULT);
	gdb_hex_encode(data, got, s->reply);
	put(s, s->reply);
}

/* Write len bytes at a guest-virtual address, all of it or nothing. */
static int write_virt(struct gdb_stub *s, uint64_t addr, const uint8_t *data, size_t len)
{
	struct gdb_paging pg;
	if (gdb_target_paging(gcpu(s), &pg) < 0)
		return -1;
	for (int pass = 0; pass < 2; pass++) {	/* check every page first, then write */
		size_t done = 0;
		while (done < len) {
			uint64_t gpa, left;
			if (gdb_translate(&s->vm->mem, &pg, addr + done, &gpa, &left) < 0)
				return -1;
			size_t n = MIN(len - done, left);
			uint8_t *dst = guest_ptr(&s->vm->mem, gpa, n);
			if (!dst)
				return -1;
			if (pass)
				memcpy(dst, data + done, n);
			done += n;
		}
	}
	return 0;
}

static void pkt_write_mem(struct gdb_stub *s, const char *p, size_t plen, bool binary)
{
	const char *start = p;
	uint64_t addr, len;
	static uint8_t data[GDB_PACKET_MAX];
	if (!gdb_parse_addr_len(&p, &addr, &len) || *p++ != ':' || len > sizeof(data))
		return put_error(s, E_MALFORMED);
	size_t rest = plen - (p - start);
	ssize_t n = binary ? gdb_unescape(p, rest, data, sizeof(data)) : gdb_hex_decode(p, rest, data, sizeof(data));
	if (n < 0 || (uint64_t)n != len)
		return put_error(s, E_MALFORMED);
	if (len && write_virt(s, addr, data, len) < 0)
		return put_error(s, E_FAULT);
	put(s, "OK");
}

static void pkt_read_regs(struct gdb_stub *s)
{
	uint8_t regs[GDB_REGS_MAX];
	int n = gdb_target_read_regs(gcpu(s), regs);
	if (n < 0)
		return put_error(s, E_REGS);
	gdb_hex_encode(regs, n, s->reply);
	put(s, s->reply);
}

static void pkt_write_regs(struct gdb_stub *s, const char *p, size_t plen)
{
	uint8_t regs[GDB_REGS_MAX];
	ssize_t n = gdb_hex_decode(p, plen, regs, sizeof(regs));
	if (n < 0)
		return put_error(s, E_MALFORMED);
	if (gdb_target_write_regs(gcpu(s), regs, n) < 0) {
		pr_warn("gdb: %s", err_msg());
		return put_error(s, E_REGS);
	}
	put(s, "OK");
}

static void pkt_reg(struct gdb_stub *s, const char *p, bool write)
{
	uint64_t n;
	uint8_t val[64];
	if (!gdb_parse_hex(&p, &n) || n > 0xffff)
		return put_error(s, E_MALFORMED);
	if (!write) {
		if (*p)
			return put_error(s, E_MALFORMED);
		int len = gdb_target_read_reg(gcpu(s), n, val);
		if (len < 0)
			return put_error(s, E_INVAL);
		gdb_hex_encode(val, len, s->reply);
		return put(s, s->reply);
	}
	if (*p++ != '=')
		return put_error(s, E_MALFORMED);
	ssize_t len = gdb_hex_decode(p, strlen(p), val, sizeof(val));
	if (len < 0)
		return put_error(s, E_MALFORMED);
	if (gdb_target_write_reg(gcpu(s), n, val, len) < 0) {
		pr_warn("gdb: %s", err_msg());
		return put_error(s, E_INVAL);
	}
	put(s, "OK");
}

/* Cover [addr, addr+len) with naturally aligned pieces of 1, 2, 4 or 8 bytes, in free slots. */
static int place_watch(struct gdb_stub *s, enum gdb_hw_kind kind, uint64_t addr, uint64_t len, unsigned *slots)
{
	struct gdb_hw_slot want[GDB_HW_SLOTS];
	int n = 0;
	while (len) {
		unsigned size = 8;
		while (size > 1 && ((addr & (size - 1)) || size > len))
			size >>= 1;
		if (n == GDB_HW_SLOTS)
			return -1;
		want[n++] = (struct gdb_hw_slot){ kind, addr, size };
		addr += size;
		len -= size;
	}
	unsigned free_mask = ~used_slots(s) & ((1u << GDB_HW_SLOTS) - 1);
	if (__builtin_popcount(free_mask) < n)
		return -1;
	*slots = 0;
	for (int i = 0, k = 0; i < GDB_HW_SLOTS && k < n; i++) {
		if (free_mask & (1u << i)) {
			s->slots[i] = want[k++];
			*slots |= 1u << i;
		}
	}
	return 0;
}

static void pkt_breakpoint(struct gdb_stub *s, const char *p, bool insert)
{
	uint64_t type, addr, kind;
	if (!gdb_parse_hex(&p, &type) || *p++ != ',' || !gdb_parse_addr_len(&p, &addr, &kind) || (*p && *p != ';'))
		return put_error(s, E_MALFORMED);
	if (type > 4)
		return put(s, "");	/* unsupported kind */
	if (type == 0) {
		int i;
		for (i = 0; i < s->nr_sw && s->sw[i].addr != addr; i++)
			;
		if (!insert) {
			if (i == s->nr_sw)
				return put_error(s, E_INVAL);
			s->sw[i] = s->sw[--s->nr_sw];
			return put(s, "OK");
		}
		if (i < s->nr_sw)
			return put(s, "OK");	/* gdb may send one again */
		if (s->nr_sw == MAX_SW_BPS)
			return put_error(s, E_NOSPC);
		struct gdb_paging pg;
		uint64_t gpa, left;
		if (gdb_target_paging(gcpu(s), &pg) < 0 || gdb_translate(&s->vm->mem, &pg, addr, &gpa, &left) < 0 ||
		    !guest_ptr(&s->vm->mem, gpa, 1))
			return put_error(s, E_FAULT);
		s->sw[s->nr_sw++] = (struct sw_bp){ .addr = addr, .gpa = gpa };
		return put(s, "OK");
	}
	enum gdb_hw_kind k = type == 1 ? GDB_HW_EXEC : type == 2 ? GDB_HW_WRITE : type == 3 ? GDB_HW_READ : GDB_HW_ACCESS;
	uint64_t len = type == 1 ? 1 : kind;
	int i;
	for (i = 0; i < s->nr_hw && !(s->hw[i].kind == k && s->hw[i].addr == addr && s->hw[i].len == len); i++)
		;
	if (!insert) {
		if (i == s->nr_hw)
			return put_error(s, E_INVAL);
		for (int j = 0; j < GDB_HW_SLOTS; j++)
			if (s->hw[i].slots & (1u << j))
				s->slots[j].kind = GDB_HW_FREE;
		s->hw[i] = s->hw[--s->nr_hw];
		return put(s, "OK");
	}
	if (i < s->nr_hw)
		return put(s, "OK");
	if (!len || len > MAX_WATCH_LEN)
		return put_error(s, E_INVAL);
	struct hw_bp b = { k, addr, len, 0 };
	if (s->nr_hw == GDB_HW_SLOTS || place_watch(s, k, addr, len, &b.slots) < 0)
		return put_error(s, E_NOSPC);
	s->hw[s->nr_hw++] = b;
	put(s, "OK");
}

/* c, s, C, S [sig;][addr]: the legacy resume packets. */
static void pkt_resume(struct gdb_stub *s, const char *p)
{
	bool step = *p == 's' || *p == 'S';
	uint64_t addr, sig;
	bool sigform = *p == 'C' || *p == 'S';
	p++;
	if (sigform && (!gdb_parse_hex(&p, &sig) || (*p && *p++ != ';')))
		return put_error(s, E_MALFORMED);
	int cpu = s->c_cpu >= 0 ? s->c_cpu : s->g_cpu;
	if (*p) {	/* resume at addr */
		uint8_t b[8];
		if (!gdb_parse_hex(&p, &addr) || *p)
			return put_error(s, E_MALFORMED);
		put_le64(b, addr);
		if (gdb_target_write_reg(&s->vm->vcpus[cpu], 16, b, 8) < 0)
			return put_error(s, E_REGS);
	}
	enum action act[s->vm->nr_vcpus];
	for (int i = 0; i < s->vm->nr_vcpus; i++)
		act[i] = step ? (i == cpu ? ACT_STEP : ACT_STOP) : ACT_CONT;
	resume(s, act);
}

/* vCont;ACTION[:THREAD]...: the leftmost action that names a thread (or none) applies to it. */
static void pkt_vcont(struct gdb_stub *s, const char *p)
{
	int n = s->vm->nr_vcpus;
	enum action act[n];
	bool set[n];
	memset(set, 0, sizeof(set));
	while (*p == ';') {
		p++;
		char a = *p++;
		uint64_t sig;
		if (a == 'C' || a == 'S') {
			if (!gdb_parse_hex(&p, &sig))
				return put_error(s, E_MALFORMED);
			a = a == 'C' ? 'c' : 's';	/* no signals to give a vCPU */
		}
		if (a != 'c' && a != 's' && a != 't')
			return put_error(s, E_MALFORMED);
		long tid = -1;
		if (*p == ':' && (p++, !gdb_parse_thread(&p, &tid)))
			return put_error(s, E_MALFORMED);
		if (tid > 0 && !cpu_ok(s, tid))
			return put_error(s, E_THREAD);
		for (int i = 0; i < n; i++) {
			if (set[i] || (tid > 0 && tid != i + 1))
				continue;
			act[i] = a == 'c' ? ACT_CONT : a == 's' ? ACT_STEP : ACT_STOP;
			set[i] = true;
		}
	}
	if (*p)
		return put_error(s, E_MALFORMED);
	bool any = false;
	for (int i = 0; i < n; i++) {
		if (!set[i])
			act[i] = ACT_STOP;
		any |= act[i] != ACT_STOP;
	}
	if (!any)
		return put_error(s, E_INVAL);
	resume(s, act);
}

static void pkt_thread_info(struct gdb_stub *s, long tid)
{
	struct vcpu *v = &s->vm->vcpus[tid - 1];
	struct kvm_mp_state mp;
	const char *state = "?";
	if (ioctl(v->fd, KVM_GET_MP_STATE, &mp) == 0)
		state = mp.mp_state == KVM_MP_STATE_RUNNABLE ? "runnable" : mp.mp_state == KVM_MP_STATE_HALTED ? "halted" :
			mp.mp_state == KVM_MP_STATE_INIT_RECEIVED ? "waiting for SIPI" :
			mp.mp_state == KVM_MP_STATE_UNINITIALIZED ? "not started" : "other";
	char text[64];
	snprintf(text, sizeof(text), "vCPU %ld, %s", tid - 1, state);
	gdb_hex_encode(text, strlen(text), s->reply);
	put(s, s->reply);
}

/* monitor CMD: lkvm's own debug and stat output, as 'lkvm debug/stat NAME' print it. */
static void pkt_monitor(struct gdb_stub *s, const char *hex)
{
	char cmd[128];
	ssize_t n = gdb_hex_decode(hex, strlen(hex), (uint8_t *)cmd, sizeof(cmd) - 1);
	if (n < 0)
		return put_error(s, E_MALFORMED);
	cmd[n] = 0;
	if (!strcmp(cmd, "debug") || !strcmp(cmd, "stat")) {
		char req[160];
		static char out[65536], text[65536];
		if (!s->ctl) {
			put_console(s, "this VM has no control socket to ask\n");
			return put_error(s, E_INVAL);
		}
		snprintf(req, sizeof(req), "{\"cmd\":\"%s\"}", cmd);
		control_handle(s->ctl, req, out, sizeof(out));
		if (json_get_str(out, "text", text, sizeof(text)))
			put_console(s, text);
		else
			put_console(s, out);
	} else if (!strcmp(cmd, "info version")) {	/* what the kernel's gdb scripts ask a QEMU-like stub */
		put_console(s, "lkvm " LKVM_VERSION "\n");
	} else if (!strcmp(cmd, "help") || !*cmd) {
		put_console(s, "monitor debug: registers, segments and stack top of every vCPU (as 'lkvm debug')\n"
			       "monitor stat: exit and I/O counters (as 'lkvm stat')\n"
			       "monitor info version: lkvm's version\n");
	} else {
		put_console(s, "unknown monitor command (try 'monitor help')\n");
		return put_error(s, E_INVAL);
	}
	put(s, "OK");
}

static void pkt_query(struct gdb_stub *s, const char *p)
{
	if (!strncmp(p, "qSupported", 10)) {
		s->gdb_swbreak = strstr(p, "swbreak+") != NULL;
		s->gdb_hwbreak = strstr(p, "hwbreak+") != NULL;
		putf(s, "PacketSize=%x;qXfer:features:read+;QStartNoAckMode+;swbreak+;hwbreak+", GDB_PACKET_MAX);
	} else if (!strncmp(p, "qXfer:features:read:", 20)) {
		uint64_t off, len;
		p += 20;
		if (strncmp(p, "target.xml:", 11))
			return put_error(s, E_INVAL);	/* the one annex we have */
		p += 11;
		if (!gdb_parse_addr_len(&p, &off, &len) || *p)
			return put_error(s, E_MALFORMED);
		size_t total = strlen(gdb_target_xml);
		if (off > total)
			return put_error(s, E_INVAL);
		size_t n = MIN(len, MIN(total - off, (uint64_t)GDB_PACKET_MAX - 1));
		s->reply[0] = off + n < total ? 'm' : 'l';
		memcpy(s->reply + 1, gdb_target_xml + off, n);
		put_bin(s, s->reply, n + 1);
	} else if (!strcmp(p, "qfThreadInfo")) {
		size_t at = 0;
		s->reply[at++] = 'm';
		for (int i = 0; i < s->vm->nr_vcpus; i++)
			at += snprintf(s->reply + at, sizeof(s->reply) - at, "%s%x", i ? "," : "", i + 1);
		put(s, s->reply);
	} else if (!strcmp(p, "qsThreadInfo")) {
		put(s, "l");
	} else if (!strcmp(p, "qC")) {
		putf(s, "QC%x", s->g_cpu + 1);
	} else if (!strncmp(p, "qAttached", 9)) {
		put(s, "1");	/* an existing VM: gdb's quit detaches, it does not kill */
	} else if (!strncmp(p, "qThreadExtraInfo,", 17)) {
		const char *q = p + 17;
		long tid;
		if (!gdb_parse_thread(&q, &tid) || *q)
			return put_error(s, E_MALFORMED);
		if (!cpu_ok(s, tid))
			return put_error(s, E_THREAD);
		pkt_thread_info(s, tid);
	} else if (!strncmp(p, "qRcmd,", 6)) {
		pkt_monitor(s, p + 6);
	} else if (!strncmp(p, "qSymbol:", 8)) {
		put(s, "OK");
	} else {
		put(s, "");	/* qOffsets, qTStatus, ...: not supported */
	}
}

static void detach(struct gdb_stub *s, bool ending);

static void pkt_set_thread(struct gdb_stub *s, const char *p)
{
	char which = *p++;
	long tid;
	if ((which != 'g' && which != 'c') || !gdb_parse_thread(&p, &tid) || *p)
		return put_error(s, E_MALFORMED);
	if (tid > 0 && !cpu_ok(s, tid))
		return put_error(s, E_THREAD);
	if (which == 'g') {
		if (tid < 0)
			return put_error(s, E_THREAD);
		if (tid > 0)
			s->g_cpu = tid - 1;
	} else {
		s->c_cpu = tid > 0 ? tid - 1 : -1;
	}
	put(s, "OK");
}

static void end_vm(struct gdb_stub *s)
{
	pr_info("gdb: the debugger ended the VM");
	vm_request_exit(s->vm, VM_QUIT, 0);
	detach(s, true);
}

/* One packet, the vCPUs stopped. */
static void handle_packet(struct gdb_stub *s, const char *p, size_t len)
{
	long tid;
	switch (p[0]) {
	case '?':
		return put(s, s->stop);
	case 'q':
		return pkt_query(s, p);
	case 'Q':
		if (!strcmp(p, "QStartNoAckMode")) {
			put(s, "OK");
			s->noack = true;
			return;
		}
		return put(s, "");
	case 'H':
		return pkt_set_thread(s, p + 1);
	case 'T':
		p++;
		if (!gdb_parse_thread(&p, &tid) || *p)
			return put_error(s, E_MALFORMED);
		return cpu_ok(s, tid) ? put(s, "OK") : put_error(s, E_THREAD);
	case 'g':
		return len == 1 ? pkt_read_regs(s) : put_error(s, E_MALFORMED);
	case 'G':
		return pkt_write_regs(s, p + 1, len - 1);
	case 'p':
		return pkt_reg(s, p + 1, false);
	case 'P':
		return pkt_reg(s, p + 1, true);
	case 'm':
		return pkt_read_mem(s, p + 1);
	case 'M':
		return pkt_write_mem(s, p + 1, len - 1, false);
	case 'X':
		return pkt_write_mem(s, p + 1, len - 1, true);
	case 'Z':
	case 'z':
		return pkt_breakpoint(s, p + 1, p[0] == 'Z');
	case 'c':
	case 's':
	case 'C':
	case 'S':
		return pkt_resume(s, p);
	case 'v':
		if (!strcmp(p, "vCont?"))
			return put(s, "vCont;c;C;s;S;t");
		if (!strncmp(p, "vCont;", 6))
			return pkt_vcont(s, p + 5);
		if (!strncmp(p, "vKill", 5)) {
			put(s, "OK");
			return end_vm(s);
		}
		return put(s, "");	/* vMustReplyEmpty and the rest */
	case 'D':
		put(s, "OK");
		return detach(s, false);
	case 'k':
		return end_vm(s);
	default:
		return put(s, "");
	}
}

/* ---- connections ---- */

static void detach(struct gdb_stub *s, bool ending)
{
	struct vm *vm = s->vm;
	if (s->client_fd < 0)
		return;
	if (s->running)
		stop_all(s);
	remove_sw_bps(s);
	s->nr_sw = s->nr_hw = 0;
	memset(s->slots, 0, sizeof(s->slots));
	pthread_mutex_lock(&s->lock);
	s->attached = false;
	for (int i = 0; i < vm->nr_vcpus; i++)
		s->cpus[i] = (struct gdb_cpu){ 0 };
	pthread_mutex_unlock(&s->lock);
	struct kvm_guest_debug off = { 0 };
	for (int i = 0; i < vm->nr_vcpus; i++)
		if (vcpu_set_guest_debug(&vm->vcpus[i], &off) < 0)
			pr_warn("gdb: %s", err_msg());
	close(s->client_fd);
	s->client_fd = -1;
	if (!ending)
		pr_info("gdb: debugger detached, the VM runs on");
	vm_release(vm, -1);
}

static void attach(struct gdb_stub *s, int fd)
{
	int one = 1;
	struct timeval tv = { .tv_sec = 10 };	/* a debugger that stops reading must not hang us */
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));	/* fails harmlessly on unix sockets */
	vm_hold(s->vm, true);
	s->client_fd = fd;
	s->running = false;
	s->noack = false;
	s->g_cpu = 0;
	s->c_cpu = -1;
	gdb_rx_init(&s->rx);
	pthread_mutex_lock(&s->lock);
	s->attached = true;
	pthread_mutex_unlock(&s->lock);
	snprintf(s->stop, sizeof(s->stop), "T%02xthread:1;", SIGTRAP_NR);
	pr_info("gdb: debugger attached on %s; the VM is stopped", s->where);
}

static void on_accept(struct gdb_stub *s)
{
	int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	if (s->client_fd >= 0) {	/* one debugger at a time */
		pr_warn("gdb: refused a second debugger on %s (one is attached)", s->where);
		close(fd);
		return;
	}
	attach(s, fd);
}

/* What the client sent: acknowledgements, packets, Ctrl-C. */
static void on_bytes(struct gdb_stub *s, const uint8_t *buf, size_t n)
{
	for (size_t i = 0; i < n && s->client_fd >= 0; i++) {
		switch (gdb_rx_byte(&s->rx, buf[i])) {
		case GDB_RX_PACKET:
			if (!s->noack)
				send_raw(s, "+", 1);
			if (!s->running)	/* all-stop: gdb sends nothing else while the vCPUs run */
				handle_packet(s, s->rx.buf, s->rx.len);
			break;
		case GDB_RX_BAD_CHECKSUM:
			if (!s->noack)
				send_raw(s, "-", 1);
			break;
		case GDB_RX_TOO_LONG:
			if (!s->noack)
				send_raw(s, "+", 1);
			if (!s->running)
				put_error(s, E_MALFORMED);
			break;
		case GDB_RX_INTERRUPT:
			if (s->running) {
				stop_all(s);
				report(s);
			}
			break;
		case GDB_RX_NAK:
			if (s->last_len)
				send_raw(s, s->last, s->last_len);
			break;
		default:
			break;
		}
	}
}

static void on_client_data(struct gdb_stub *s)
{
	static uint8_t buf[4096];
	ssize_t n = recv(s->client_fd, buf, sizeof(buf), 0);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0)
		return detach(s, false);
	on_bytes(s, buf, n);
}

static void *stub_thread(void *arg)
{
	struct gdb_stub *s = arg;
	pthread_setname_np(pthread_self(), "lkvm-gdb");
	while (!__atomic_load_n(&s->quit, __ATOMIC_ACQUIRE)) {
		struct pollfd p[3] = { { s->wake_fd, POLLIN, 0 }, { s->listen_fd, POLLIN, 0 }, { s->client_fd, POLLIN, 0 } };
		if (poll(p, 3, -1) < 0)
			continue;	/* EINTR */
		if (p[0].revents) {
			uint64_t v;
			if (read(s->wake_fd, &v, sizeof(v)) < 0) {}
			if (__atomic_load_n(&s->quit, __ATOMIC_ACQUIRE))
				break;
			if (s->running) {	/* a vCPU stopped for us */
				stop_all(s);
				report(s);
			}
		}
		if (p[2].revents && s->client_fd >= 0)
			on_client_data(s);
		if (p[1].revents & POLLIN)
			on_accept(s);
	}
	/* The VM ended: a debugger waiting for a stop hears how. */
	if (s->client_fd >= 0) {
		if (s->running)
			putf(s, "W%02x", __atomic_load_n(&s->vm->exit_status, __ATOMIC_ACQUIRE) & 0xff);
		close(s->client_fd);
		s->client_fd = -1;
	}
	return NULL;
}

/* ---- start and end ---- */

/* Can this KVM debug guests? The capability, and a real KVM_SET_GUEST_DEBUG on vCPU 0. */
static int probe_debug(struct vm *vm, uint32_t *caps)
{
	if (ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SET_GUEST_DEBUG) <= 0)
		return err_set("gdb stub: this host's KVM cannot debug guests (no KVM_CAP_SET_GUEST_DEBUG)");
	int mask = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SET_GUEST_DEBUG2);
	/* Before KVM_CAP_SET_GUEST_DEBUG2 (Linux 5.16) the x86 set was fixed, without BLOCKIRQ. */
	*caps = mask > 0 ? (uint32_t)mask : KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP | KVM_GUESTDBG_USE_SW_BP |
						   KVM_GUESTDBG_USE_HW_BP | KVM_GUESTDBG_INJECT_DB | KVM_GUESTDBG_INJECT_BP;
	uint32_t need = KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP | KVM_GUESTDBG_USE_SW_BP | KVM_GUESTDBG_USE_HW_BP;
	if ((*caps & need) != need)
		return err_set("gdb stub: this host's KVM lacks guest debug flags 0x%x", need & ~*caps);
	struct kvm_guest_debug on = { .control = need }, off = { 0 };
	if (vcpu_set_guest_debug(&vm->vcpus[0], &on) < 0 || vcpu_set_guest_debug(&vm->vcpus[0], &off) < 0) {
		char why[256];
		snprintf(why, sizeof(why), "%s", err_msg());
		return err_set("gdb stub: this host's KVM cannot debug guests (%s)", why);
	}
	return 0;
}

/*
 * lkvm gdb NAME ADDR: {"cmd":"gdb","addr":"..."} opens the stub on a running VM, on
 * the listening socket that comes with the request (lkvm gdb makes it: a jailed VM has
 * no path to bind), or else binds addr itself; "path" is the unix socket file to remove.
 */
static int control_gdb(void *ctx, const char *req, const int *fds, int nfds, struct json_writer *reply)
{
	struct gdb_stub *s = ctx;
	char addr[200], path[GDB_UNIX_PATH_MAX] = "";
	for (int i = 1; i < nfds; i++)
		close(fds[i]);
	if (!json_get_str(req, "addr", addr, sizeof(addr)) || !*addr) {
		if (nfds > 0)
			close(fds[0]);
		return err_set("gdb needs addr (tcp:[HOST:]PORT, unix:PATH or PORT)");
	}
	if (nfds > 0) {
		int listening = 0, type = 0;
		socklen_t l1 = sizeof(listening), l2 = sizeof(type);
		if (getsockopt(fds[0], SOL_SOCKET, SO_ACCEPTCONN, &listening, &l1) < 0 || !listening ||
		    getsockopt(fds[0], SOL_SOCKET, SO_TYPE, &type, &l2) < 0 || type != SOCK_STREAM) {
			close(fds[0]);
			return err_set("gdb: the descriptor that came with the request is not a listening stream socket");
		}
		json_get_str(req, "path", path, sizeof(path));
		if (gdb_stub_start_fd(s->vm, fds[0], addr, path, false) < 0)
			return -1;
	} else if (gdb_stub_start(s->vm, addr, false) < 0) {
		return -1;
	}
	json_str(reply, "listen", s->where);
	return 0;
}

int gdb_stub_init(struct vm *vm, struct control *ctl)
{
	struct gdb_stub *s = xcalloc(1, sizeof(*s));
	s->vm = vm;
	s->ctl = ctl;
	s->listen_fd = s->client_fd = s->wake_fd = -1;
	pthread_mutex_init(&s->lock, NULL);
	vm->debug_ctx = s;
	return ctl ? control_register_fds(ctl, "gdb", control_gdb, s) : 0;
}

int gdb_stub_start(struct vm *vm, const char *addr, bool wait)
{
	struct gdb_stub *s = vm->debug_ctx;
	if (!s)
		return err_set("gdb stub: not set up for this VM");
	if (s->listen_fd >= 0)
		return err_set("a gdb stub is already open for this VM, on %s", s->where);
	char where[sizeof(s->where)], path[sizeof(s->unix_path)];
	int fd = gdb_listen(addr, where, sizeof(where), path, sizeof(path));
	return fd < 0 ? -1 : gdb_stub_start_fd(vm, fd, where, path, wait);
}

/* The stub's socket file, if it is one: the path may come from a control request. */
static void remove_socket(const char *path)
{
	struct stat st;
	if (path[0] && lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
}

int gdb_stub_start_fd(struct vm *vm, int fd, const char *where, const char *unix_path, bool wait)
{
	struct gdb_stub *s = vm->debug_ctx;
	if (!s || s->listen_fd >= 0) {
		close(fd);
		return !s ? err_set("gdb stub: not set up for this VM")
			  : err_set("a gdb stub is already open for this VM, on %s", s->where);
	}
	/* Before the vCPU threads start nothing runs; later they must be out of KVM_RUN for the probe. */
	bool live = vm->vcpus[0].running;
	if (live)
		vm_hold(vm, true);
	int r = probe_debug(vm, &s->caps);
	if (live)
		vm_release(vm, -1);
	if (r < 0) {
		close(fd);
		return -1;
	}
	if (!s->cpus)
		s->cpus = xcalloc(vm->nr_vcpus, sizeof(*s->cpus));
	s->listen_fd = fd;
	snprintf(s->where, sizeof(s->where), "%s", where);
	snprintf(s->unix_path, sizeof(s->unix_path), "%s", unix_path);
	if ((s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		err_errno("gdb stub: eventfd");
		goto undo;
	}
	if (wait)
		vm_hold(vm, false);	/* the vCPU threads park as soon as they start */
	__atomic_store_n(&vm->debug_fn, on_debug_event, __ATOMIC_RELEASE);
	int e = thread_start(&s->thread, stub_thread, s);
	if (e) {
		err_set("gdb stub: cannot start its thread");
		vm->debug_fn = NULL;
		if (wait)
			vm_release(vm, -1);
		goto undo;
	}
	s->thread_started = true;
	pr_info("gdb: listening on %s%s", s->where, wait ? "; the vCPUs wait for the debugger" : "");
	return 0;
undo:
	close(s->listen_fd);
	if (s->wake_fd >= 0)
		close(s->wake_fd);
	s->listen_fd = s->wake_fd = -1;
	remove_socket(s->unix_path);
	s->unix_path[0] = 0;
	return -1;
}

void gdb_stub_stop(struct vm *vm)
{
	struct gdb_stub *s = vm->debug_ctx;
	if (!s)
		return;
	if (s->thread_started) {
		__atomic_store_n(&s->quit, true, __ATOMIC_RELEASE);
		uint64_t one = 1;
		if (write(s->wake_fd, &one, sizeof(one)) < 0) {}
		pthread_join(s->thread, NULL);
	}
	vm->debug_fn = NULL;
	vm->debug_ctx = NULL;
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	if (s->wake_fd >= 0)
		close(s->wake_fd);
	remove_socket(s->unix_path);
	pthread_mutex_destroy(&s->lock);
	free(s->cpus);
	free(s);
}

/* lkvm run's options. */
static int opt_gdb(void *own, const char *arg)
{
	if (gdb_check_addr(arg) < 0)
		return -1;
	((struct gdb_opts *)own)->addr = arg;
	return 0;
}

static int opt_gdb_wait(void *own, const char *arg)
{
	((struct gdb_opts *)own)->wait = true;
	return 0;
}

const struct opt gdb_run_opts[] = {
	{ "gdb", 0, "tcp:[HOST:]PORT|unix:PATH",
	  "a gdb stub there: TCP on 127.0.0.1 unless HOST is given (port 0: a free one), a unix socket 0600", opt_gdb },
	{ "gdb-wait", 0, NULL, "with --gdb: the vCPUs wait until gdb attaches and continues (QEMU's -S)", opt_gdb_wait },
	{ 0 }
};
