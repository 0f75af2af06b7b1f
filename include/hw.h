/*
 * Legacy PC devices (hw/): 8250 UARTs, i8042, MC146818 RTC, 8254 PIT, debug ports and
 * the PCI host bridge. Each is a device type (include/devices.h); what other
 * code needs of them is here.
 */
#ifndef LKVM_HW_H
#define LKVM_HW_H

#include <stddef.h>
#include <stdint.h>

struct vm;
struct pci_dev;

/* The PC's fixed legacy IRQ numbers. */
#define IRQ_PIT 0
#define IRQ_KBD 1
#define IRQ_COM2 3
#define IRQ_COM1 4
#define IRQ_RTC 8

/* hw/serial.c: ttyS0-3 at 0x3f8/0x2f8/0x3e8/0x2e8 on IRQ 4/3/4/3. */
#define SERIAL_NR_PORTS 4
/* One UART of this VM (NULL, err set, if there is none). */
void *serial_port(struct vm *vm, int idx);
/* Host input for a port's receiver: the terminal's sink for ttyS0 (any thread). */
void serial_input(void *port, const uint8_t *buf, size_t len);
/* Where a port's transmitter goes: ttyS0 defaults to term_output, the others to nothing. */
typedef void (*serial_out_fn)(void *ctx, const void *buf, size_t len);
void serial_set_output(void *port, serial_out_fn out, void *ctx);

/* hw/rtc.c: the CMOS memory-size bytes for ram bytes of guest RAM. */
void rtc_fill_memory(uint8_t cmos[128], uint64_t ram);

/* hw/debug_ports.c: a write of V to this 4-byte port ends the VM with status V & 0xff. */
#define DEBUG_EXIT_PORT 0xf4
/* hw/debug_ports.c: a write of the magic byte here records the time since the VM was made
 * (`lkvm stat` boot_timer_us; `-v` prints it): an init marks the end of its boot. */
#define BOOT_TIMER_PORT 0xf8
#define BOOT_TIMER_MAGIC 123
/* The last POST code written to port 0x80, -1 if none yet. */
int debug_post_code(struct vm *vm);

/* hw/pci_host.c */
struct pci_host *pci_host(struct vm *vm);
/* GSI of INTA# for a device in slot 1..31, what the MP/ACPI tables describe; -1 otherwise. */
int pci_host_irq_map(struct vm *vm, int slot);
/* Drive a function's INTx line, honouring Command.INTx-disable and tracking Status.INT. */
void pci_dev_irq(struct pci_dev *d, int level);

#endif
