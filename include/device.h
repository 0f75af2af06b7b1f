/*
 * Devices and their one lifecycle.
 *
 * A device type (one per device file) declares its options and makes its
 * instances from them; the board lists the types it has. Each instance is
 * added to its VM's registry with an ops table:
 *   create  the type's create(): buses, PCI function, host files and fds;
 *   start   its threads, run after the signal mask and seccomp are in place;
 *   stop    quiesce: requests in flight finished, threads joined;
 *   save    its whole state as a versioned record (snapshots): called with
 *           the vCPUs parked, its threads stopped and the event loop still;
 *   load    the same state back into an instance created from the same
 *           options, before its threads start;
 *   destroy free everything create made.
 * The registry replaces global instance lists: a device is found by its type
 * name and index. Control commands and `lkvm stat` members are declared by
 * the device that owns them.
 */
#ifndef LKVM_DEVICE_H
#define LKVM_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;
struct vm_config;
struct device;
struct json_writer;
struct snap_writer;
struct snap_reader;
struct opt;

/*
 * A control command a device answers (lkvm balloon ...): req is the request
 * line (a JSON object); fn adds members to the {"ok":true,...} reply, or
 * returns -1 with err set for {"ok":false,"error":...}.
 */
struct device_cmd {
	const char *name;
	int (*fn)(struct device *d, const char *req, struct json_writer *reply);
};

struct device_ops {
	int (*start)(struct device *d);		/* optional; 0, or -1 with err set */
	void (*stop)(struct device *d);		/* optional */
	/*
	 * Optional (a device without state has neither): the fields of its record
	 * "dev:TYPE:INDEX", whose version is snap_version; load reads them back
	 * and refuses values out of range (a snapshot file is input like any other).
	 */
	int (*save)(struct device *d, struct snap_writer *w);
	int (*load)(struct device *d, struct snap_reader *r);
	uint32_t snap_version;
	void (*destroy)(struct device *d);	/* frees priv and what it holds */
	void (*stats)(struct device *d, struct json_writer *j);	/* optional: its `lkvm stat` members */
	const struct device_cmd *cmds;		/* optional, ends with a NULL name */
	/* Optional: the device can be the guest's console; the host terminal's input goes here. */
	void (*console_input)(struct device *d, const uint8_t *buf, size_t len);
};

struct device {
	const char *type;	/* "virtio-blk" */
	int index;		/* among its type's instances, in creation order */
	const struct device_ops *ops;
	void *priv;
	struct vm *vm;
	bool started;
	struct device *next;	/* creation order */
};

struct device_type {
	const char *name;
	const struct opt *opts;		/* its options, or NULL */
	size_t cfg_size;		/* what its parsers fill, kept in the VM's configuration */
	/* Optional: after every option was parsed, before /dev/kvm is opened (defaults, cross-checks). */
	int (*check)(struct vm_config *cfg, void *own);
	/* Its instances, as its options ask (often none): device_add() each. */
	int (*create)(struct vm *vm, void *own);
};

/* Make a type's instances from the options parsed into vm->cfg; the board calls it for each type it lists. */
int device_type_create(struct vm *vm, const struct device_type *t);
/* Apply one of a type's options to cfg, as the command line would: 0, or -1 with err set. */
int device_type_option(struct vm_config *cfg, const struct device_type *t, const char *name, const char *arg);
/* A type's check, when it has one. */
int device_type_check(struct vm_config *cfg, const struct device_type *t);

/* Add an instance (index: the next of its type); owned by the VM from here on. */
struct device *device_add(struct vm *vm, const char *type, const struct device_ops *ops, void *priv);
/* The index-th instance of a type, or NULL. */
struct device *device_find(const struct vm *vm, const char *type, int index);
void *device_priv(const struct vm *vm, const char *type, int index);

/* The whole VM's devices: start in creation order, stop and destroy in reverse. */
int devices_start(struct vm *vm);
void devices_stop(struct vm *vm);
void devices_destroy(struct vm *vm);
/* Every device's record, in creation order: 0, or -1 with err set. */
int devices_save(struct vm *vm, struct snap_writer *w);
/*
 * Every device's record back: each device with state must find its record and
 * every device record must find its device (the same options made the same
 * devices). 0, or -1 with err set.
 */
int devices_load(struct vm *vm, struct snap_reader *r);

#endif
