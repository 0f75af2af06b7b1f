/*
 * Interrupts: level lines into the in-kernel PIC/IOAPIC, MSIs, and GSI
 * routing for irqfd, through vm->irq (KVM's here; a device-level test's
 * recorder elsewhere).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include "vm.h"
#include "util.h"

void vm_irq_line(struct vm *vm, unsigned gsi, int level)
{
	vm->irq->line(vm, gsi, level);
}

void vm_irq_pulse(struct vm *vm, unsigned gsi)
{
	vm_irq_line(vm, gsi, 1);
	vm_irq_line(vm, gsi, 0);
}

void vm_msi(struct vm *vm, uint64_t addr, uint32_t data)
{
	vm->irq->msi(vm, addr, data);
}

int vm_msi_route(struct vm *vm, uint64_t addr, uint32_t data)
{
	return vm->irq->msi_route ? vm->irq->msi_route(vm, addr, data) : err_set("no MSI routing here");
}

int vm_msi_route_update(struct vm *vm, int gsi, uint64_t addr, uint32_t data)
{
	return vm->irq->msi_route_update ? vm->irq->msi_route_update(vm, gsi, addr, data)
					 : err_set("no MSI routing here");
}

int vm_irqfd(struct vm *vm, int fd, unsigned gsi, bool assign)
{
	return vm->irq->irqfd ? vm->irq->irqfd(vm, fd, gsi, assign) : err_set("no irqfd here");
}

int vm_ioeventfd(struct vm *vm, uint64_t addr, int len, int fd, bool pio, bool assign)
{
	return vm->irq->ioeventfd ? vm->irq->ioeventfd(vm, addr, len, fd, pio, assign) : err_set("no ioeventfd here");
}

bool vm_has_eventfds(const struct vm *vm)
{
	return vm->irq->irqfd && vm->irq->ioeventfd;
}

/* ---- KVM ---- */

static void kvm_line(struct vm *vm, unsigned gsi, int level)
{
	struct kvm_irq_level irq = { .irq = gsi, .level = level };
	if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq) < 0)
		pr_warn_once("KVM_IRQ_LINE %u failed: %s", gsi, strerror(errno));
}

static void kvm_msi(struct vm *vm, uint64_t addr, uint32_t data)
{
	struct kvm_msi msi = { .address_lo = (uint32_t)addr, .address_hi = addr >> 32, .data = data };
	if (ioctl(vm->vm_fd, KVM_SIGNAL_MSI, &msi) < 0)
		pr_warn_once("KVM_SIGNAL_MSI failed: %s", strerror(errno));
}

/* The IOAPIC and PIC pins stay routed as KVM set them up; we append MSI routes. */
static int routing_init(struct vm *vm)
{
	if (vm->routing)
		return 0;
	int max = 1024;
	vm->routing = calloc(1, sizeof(*vm->routing) + max * sizeof(struct kvm_irq_routing_entry));
	if (!vm->routing)
		return err_set("out of memory");
	struct kvm_irq_routing *r = vm->routing;
	/* Default routes: GSI 0-15 to PIC and IOAPIC, 16-23 to IOAPIC. */
	for (unsigned gsi = 0; gsi < 24; gsi++) {
		if (gsi < 16) {
			r->entries[r->nr++] = (struct kvm_irq_routing_entry){
				.gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP,
				.u.irqchip = { .irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE, .pin = gsi % 8 } };
		}
		r->entries[r->nr++] = (struct kvm_irq_routing_entry){
			.gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP,
			.u.irqchip = { .irqchip = KVM_IRQCHIP_IOAPIC, .pin = gsi } };
	}
	vm->next_gsi = 24;
	return 0;
}

static int routing_commit(struct vm *vm)
{
	if (ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, vm->routing) < 0)
		return err_errno("KVM_SET_GSI_ROUTING");
	return 0;
}

static int kvm_msi_route(struct vm *vm, uint64_t addr, uint32_t data)
{
	pthread_mutex_lock(&vm->irq_lock);
	int gsi = -1;
	if (routing_init(vm) == 0 && vm->routing->nr < 1024) {
		gsi = vm->next_gsi++;
		vm->routing->entries[vm->routing->nr++] = (struct kvm_irq_routing_entry){
			.gsi = gsi, .type = KVM_IRQ_ROUTING_MSI,
			.u.msi = { .address_lo = (uint32_t)addr, .address_hi = addr >> 32, .data = data } };
		if (routing_commit(vm) < 0) {
			vm->routing->nr--;
			vm->next_gsi--;
			gsi = -1;
		}
	} else if (gsi < 0) {
		err_set("out of MSI routes");
	}
	pthread_mutex_unlock(&vm->irq_lock);
	return gsi;
}

static int kvm_msi_route_update(struct vm *vm, int gsi, uint64_t addr, uint32_t data)
{
	int ret = err_set("no MSI route %d", gsi);
	pthread_mutex_lock(&vm->irq_lock);
	for (unsigned i = 0; vm->routing && i < vm->routing->nr; i++) {
		struct kvm_irq_routing_entry *e = &vm->routing->entries[i];
		if (e->gsi == (unsigned)gsi && e->type == KVM_IRQ_ROUTING_MSI) {
			e->u.msi.address_lo = (uint32_t)addr;
			e->u.msi.address_hi = addr >> 32;
			e->u.msi.data = data;
			ret = routing_commit(vm);
			break;
		}
	}
	pthread_mutex_unlock(&vm->irq_lock);
	return ret;
}

static int kvm_irqfd(struct vm *vm, int fd, unsigned gsi, bool assign)
{
	struct kvm_irqfd i = { .fd = fd, .gsi = gsi, .flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN };
	if (ioctl(vm->vm_fd, KVM_IRQFD, &i) < 0)
		return err_errno("KVM_IRQFD");
	return 0;
}

static int kvm_ioeventfd(struct vm *vm, uint64_t addr, int len, int fd, bool pio, bool assign)
{
	struct kvm_ioeventfd e = { .addr = addr, .len = len, .fd = fd,
		.flags = (pio ? KVM_IOEVENTFD_FLAG_PIO : 0) | (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN) };
	if (ioctl(vm->vm_fd, KVM_IOEVENTFD, &e) < 0)
		return err_errno("KVM_IOEVENTFD");
	return 0;
}

const struct irq_ops kvm_irq_ops = {
	.line = kvm_line, .msi = kvm_msi, .msi_route = kvm_msi_route, .msi_route_update = kvm_msi_route_update,
	.irqfd = kvm_irqfd, .ioeventfd = kvm_ioeventfd,
};
