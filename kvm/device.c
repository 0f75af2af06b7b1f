/* The VM's device registry and the lifecycle calls every device goes through. */
#include <stdlib.h>
#include <string.h>
#include "device.h"
#include "options.h"
#include "util.h"
#include "vm.h"

int device_type_create(struct vm *vm, const struct device_type *t)
{
	return t->create(vm, vm_config_part(&vm->cfg, t, t->cfg_size));
}

int device_type_check(struct vm_config *cfg, const struct device_type *t)
{
	return t->check ? t->check(cfg, vm_config_part(cfg, t, t->cfg_size)) : 0;
}

int device_type_option(struct vm_config *cfg, const struct device_type *t, const char *name, const char *arg)
{
	for (const struct opt *o = t->opts; o && o->name; o++)
		if (!strcmp(o->name, name))
			return o->parse(vm_config_part(cfg, t, t->cfg_size), arg);
	return err_set("%s has no option --%s", t->name, name);
}

struct device *device_add(struct vm *vm, const char *type, const struct device_ops *ops, void *priv)
{
	struct device *d = xcalloc(1, sizeof(*d));
	d->type = type;
	d->ops = ops;
	d->priv = priv;
	d->vm = vm;
	struct device **tail = &vm->devices;
	for (; *tail; tail = &(*tail)->next)
		if (!strcmp((*tail)->type, type))
			d->index++;
	*tail = d;
	return d;
}

struct device *device_find(const struct vm *vm, const char *type, int index)
{
	for (struct device *d = vm->devices; d; d = d->next)
		if (!strcmp(d->type, type) && d->index == index)
			return d;
	return NULL;
}

void *device_priv(const struct vm *vm, const char *type, int index)
{
	struct device *d = device_find(vm, type, index);
	return d ? d->priv : NULL;
}

int devices_start(struct vm *vm)
{
	for (struct device *d = vm->devices; d; d = d->next) {
		if (d->started)
			continue;
		if (d->ops->start && d->ops->start(d) < 0)
			return -1;
		d->started = true;
	}
	return 0;
}

/* Reverse creation order: a device is stopped before what it was built on. */
static void stop_from(struct device *d)
{
	if (!d)
		return;
	stop_from(d->next);
	if (d->started && d->ops->stop)
		d->ops->stop(d);
	d->started = false;
}

void devices_stop(struct vm *vm)
{
	stop_from(vm->devices);
}

void devices_destroy(struct vm *vm)
{
	devices_stop(vm);
	/* Reverse order again, iteratively: unlink the newest each time. */
	while (vm->devices) {
		struct device **pp = &vm->devices;
		while ((*pp)->next)
			pp = &(*pp)->next;
		struct device *d = *pp;
		*pp = NULL;
		if (d->ops->destroy)
			d->ops->destroy(d);
		free(d);
	}
}
