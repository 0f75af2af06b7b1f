/*
 * The gdb stub: GDB's remote serial protocol on a TCP or unix socket, one
 * client at a time, every vCPU a thread (gdb/stub.c); the byte-level framing
 * it rests on (gdb/packet.c); the x86 register layout, target description
 * and page-table walk (x86/gdb_target.c).
 */
#ifndef LKVM_GDB_H
#define LKVM_GDB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <linux/types.h>
#include "options.h"

struct vm;
struct vcpu;
struct guest_mem;
struct control;

/* gdb/stub.c */
/*
 * The VM's gdb stub, not listening yet: ctl (may be NULL) gets the "gdb" command (lkvm gdb
 * NAME ADDR) and answers gdb's monitor debug and monitor stat.
 */
int gdb_stub_init(struct vm *vm, struct control *ctl);
/*
 * Listen on addr (tcp:[HOST:]PORT, unix:PATH, or a bare PORT) for gdb. TCP listens on
 * 127.0.0.1 unless a host is given; a unix socket is made 0600 and never through a symlink.
 * wait: the vCPUs stay stopped until gdb attaches and lets them go (QEMU's -S). Fails,
 * saying why, where this host's KVM cannot debug guests.
 */
int gdb_stub_start(struct vm *vm, const char *addr, bool wait);
/*
 * The same on a listening socket someone else made (lkvm gdb NAME passes one, so a
 * jailed VM needs no path on the host): the stub owns fd from here on, even on failure.
 * where names it in messages; unix_path ("" for none) is removed when the stub ends,
 * where the VM still can.
 */
int gdb_stub_start_fd(struct vm *vm, int fd, const char *where, const char *unix_path, bool wait);
/* After the vCPUs stopped: a debugger waiting for a stop hears how the VM ended; all freed. */
void gdb_stub_stop(struct vm *vm);
/* lkvm run's --gdb and --gdb-wait. */
struct gdb_opts {
	const char *addr;
	bool wait;
};
extern const struct opt gdb_run_opts[];

/* gdb/listen.c: the stub's socket. */
#define GDB_UNIX_PATH_MAX 108	/* sun_path */
/* Is addr well formed (and a unix path free or a socket)? Before /dev/kvm is opened. */
int gdb_check_addr(const char *addr);
/*
 * Listen on addr: the fd; where (for messages) names the address, with the TCP port the
 * kernel chose for port 0; unix_path is the socket file to remove at the end ("" for TCP).
 */
int gdb_listen(const char *addr, char *where, size_t wlen, char *unix_path, size_t plen);

/* gdb/packet.c: what arrives, one byte at a time. */
#define GDB_PACKET_MAX 0x4000	/* payload bytes; we announce PacketSize so */

enum gdb_rx_event {
	GDB_RX_NONE,		/* byte taken, nothing complete yet */
	GDB_RX_PACKET,		/* a packet with a good checksum: rx->buf, rx->len */
	GDB_RX_BAD_CHECKSUM,	/* answer '-': gdb sends it again */
	GDB_RX_TOO_LONG,	/* good checksum, but longer than GDB_PACKET_MAX: refused */
	GDB_RX_INTERRUPT,	/* 0x03 outside a packet: Ctrl-C */
	GDB_RX_ACK,		/* '+' */
	GDB_RX_NAK,		/* '-': send the last packet again */
};

struct gdb_rx {
	int state;
	uint8_t sum, got;
	size_t len;
	bool overflow;
	char buf[GDB_PACKET_MAX + 1];	/* payload as sent (binary escapes kept), NUL after len */
};

void gdb_rx_init(struct gdb_rx *rx);
enum gdb_rx_event gdb_rx_byte(struct gdb_rx *rx, uint8_t c);

/* $payload#cs into out, escaping '$', '#', '}' and '*'; the framed length, or 0 if out is too small. */
size_t gdb_frame(const void *payload, size_t len, char *out, size_t cap);
int gdb_hex_digit(int c);	/* 0-15, or -1 */
/* Two hex digits a byte; writes 2*len characters and a NUL. */
void gdb_hex_encode(const void *data, size_t len, char *out);
/* Exactly hexlen/2 bytes from hexlen digits into out (cap bytes at most): their number, or -1. */
ssize_t gdb_hex_decode(const char *hex, size_t hexlen, uint8_t *out, size_t cap);
/* Undo the binary escapes of an X packet's data: the byte count, or -1 (bad escape, too long). */
ssize_t gdb_unescape(const char *in, size_t len, uint8_t *out, size_t cap);
/* A hex number at *p, at most 16 digits: advances *p; false if none or too many. */
bool gdb_parse_hex(const char **p, uint64_t *v);
/* "ADDR,LEN" (m, M, X, Z): advances *p past them. */
bool gdb_parse_addr_len(const char **p, uint64_t *addr, uint64_t *len);
/* A thread id: -1 (all), 0 (any) or a positive hex number. */
bool gdb_parse_thread(const char **p, long *tid);

/* x86/gdb_target.c: the target's registers and memory as gdb sees them. */
extern const char gdb_target_xml[];
#define GDB_REGS_MAX 1024	/* bytes of the 'g' packet, at most */
/* Every register in the target description's order: the byte count, or -1 (err set). */
int gdb_target_read_regs(struct vcpu *v, uint8_t *buf);
/* The same layout back, len bytes of it (registers beyond len stay as they are). */
int gdb_target_write_regs(struct vcpu *v, const uint8_t *buf, size_t len);
/* One register: its size, or -1 for a number we do not have. */
int gdb_target_read_reg(struct vcpu *v, unsigned n, uint8_t *buf);
int gdb_target_write_reg(struct vcpu *v, unsigned n, const uint8_t *buf, size_t len);
uint64_t gdb_target_pc(struct vcpu *v);

/* The paging state a virtual address is translated with. */
struct gdb_paging {
	uint64_t cr0, cr3, cr4, efer;
};
int gdb_target_paging(struct vcpu *v, struct gdb_paging *pg);
/*
 * A guest-virtual address through the guest's own page tables (32-bit, PAE, 4- and
 * 5-level; 4 KiB, 2/4 MiB and 1 GiB pages; physical when paging is off): 0 with the
 * guest-physical address and the bytes left in its page, or -1 when it is not mapped.
 * Writability is not checked: a debugger's write to a read-only page lands, as in QEMU.
 */
int gdb_translate(const struct guest_mem *mem, const struct gdb_paging *pg, uint64_t va, uint64_t *gpa,
		  uint64_t *left);

/* Hardware breakpoints and watchpoints: the debug registers' four slots. */
enum gdb_hw_kind { GDB_HW_FREE, GDB_HW_EXEC, GDB_HW_WRITE, GDB_HW_READ, GDB_HW_ACCESS };
struct gdb_hw_slot {
	enum gdb_hw_kind kind;
	uint64_t addr;		/* aligned to len */
	unsigned len;		/* 1, 2, 4 or 8 (exec: 1) */
};
#define GDB_HW_SLOTS 4
/* DR0-DR3 and DR7 for these slots (debugreg[] of struct kvm_guest_debug_arch). */
void gdb_target_debugregs(const struct gdb_hw_slot *slots, __u64 debugreg[8]);
/* The slots a #DB's DR6 says fired (bit n for slot n), and whether it was a single step. */
unsigned gdb_target_dr6_slots(uint64_t dr6);
bool gdb_target_dr6_step(uint64_t dr6);
#define GDB_EXC_DEBUG 1		/* #DB: single step, hardware breakpoint or watchpoint */
#define GDB_EXC_BREAKPOINT 3	/* #BP: int3 */

#endif
