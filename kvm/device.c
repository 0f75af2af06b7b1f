/* The VM's device registry and the lifecycle calls every device goes through. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "device.h"
#include "options.h"
#include "snapshot.h"
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

static void record_name(const struct device *d, char *out, size_t len)
{
	snprintf(out, len, "dev:%s:%d", d->type, d->index);
}

int devices_save(struct vm *vm, struct snap_writer *w)
{
	for (struct device *d = vm->devices; d; d = d->next) {
		if (!d->ops->save)	/* its state would be lost: the guest's driver would hang */
			return err_set("%s %d cannot be saved in a snapshot (yet): run without it to snapshot",
				       d->type, d->index);
		char name[SNAP_NAME_MAX + 1];
		record_name(d, name, sizeof(name));
		snap_begin(w, name, d->ops->snap_version);
		if (d->ops->save(d, w) < 0 || snap_end(w) < 0)
			return -1;
	}
	return 0;
}

int devices_load(struct vm *vm, struct snap_reader *r)
{
	char name[SNAP_NAME_MAX + 1];
	for (struct device *d = vm->devices; d; d = d->next) {
		if (!d->ops->load)
			continue;
		record_name(d, name, sizeof(name));
		if (!snap_has(r, name))
			return err_set("%s: the snapshot has no %s %d, which this VM has (its options differ from the "
				       "snapshot's VM)", snap_path(r), d->type, d->index);
		if (snap_open(r, name, d->ops->snap_version) < 0 || d->ops->load(d, r) < 0 || snap_close(r) < 0)
			return -1;
	}
	/* Every device record must have found its device. */
	for (int i = 0; i < snap_count(r); i++) {
		const char *n = snap_name_at(r, i);
		if (strncmp(n, "dev:", 4))
			continue;
		bool found = false;
		for (struct device *d = vm->devices; d && !found; d = d->next) {
			record_name(d, name, sizeof(name));
			found = d->ops->load && !strcmp(name, n);
		}
		if (!found)
			return err_set("%s: the snapshot's VM had a device this VM lacks (%s): give the same devices",
				       snap_path(r), n + 4);
	}
	return 0;
}
