# lkvm: build, test and benchmark. Sources are found by wildcard, so a new
# device file needs no Makefile edit.
CC      ?= cc
CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers \
           -Iinclude -D_GNU_SOURCE -pthread -MMD -MP
LDLIBS  += -pthread -lz -laio -luring

# Sanitized builds stop at the first report, UBSan's included (its default is to
# print and go on with status 0); tests/host/sanitizers.sh proves it.
ifeq ($(SANITIZE),1)
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all
CFLAGS  += $(SAN_FLAGS) -fno-omit-frame-pointer
LDFLAGS += $(SAN_FLAGS)
BUILD   := build-san
else
BUILD   := build
endif

LIB_SRCS := $(sort $(wildcard lib/*.c kvm/*.c control/*.c x86/*.c hw/*.c virtio/*.c p9/*.c disk/*.c net/*.c term/*.c gdb/*.c snapshot/*.c))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o) $(BUILD)/bios/bios_blob.o
CMD_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(sort $(wildcard cmd/*.c)))
# The test library (tests/lib): fake VM, virtio driver; unit tests, fuzz targets and bench/devices link it.
TESTLIB_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(sort $(wildcard tests/lib/*.c)))
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:%.c=$(BUILD)/%)
KVM_TEST_BINS := $(patsubst %.c,$(BUILD)/%,$(wildcard tests/kvm/*.c))
LKVM := $(BUILD)/lkvm

all: $(LKVM) $(BUILD)/lkvm-oci lkvm guests $(KVM_TEST_BINS) $(BUILD)/tests/kernel/reseed

lkvm: $(LKVM)
	@ln -sf $(LKVM) lkvm

$(LKVM): $(BUILD)/main.o $(CMD_OBJS) $(LIB_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# An engine's runtime path: lkvm-oci behaves as lkvm oci.
$(BUILD)/lkvm-oci: $(LKVM)
	@ln -sf lkvm $@

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

# Syscall names for seccomp reports, from the installed kernel headers.
$(BUILD)/gen/syscall_names.h: /usr/include/x86_64-linux-gnu/asm/unistd_64.h
	@mkdir -p $(dir $@)
	sed -n 's/^#define __NR_\([a-z0-9_]*\) \([0-9]*\)$$/[\2] = "\1",/p' $< > $@

$(BUILD)/lib/seccomp.o: $(BUILD)/gen/syscall_names.h
CFLAGS += -I$(BUILD)/gen

# The bundled BIOS: 16-bit code assembled from source, linked flat, embedded.
$(BUILD)/bios/bios.bin: bios/bios.S bios/bios.ld
	@mkdir -p $(dir $@)
	$(CC) -m32 -nostdlib -c -o $(BUILD)/bios/bios.o bios/bios.S
	ld -m elf_i386 -T bios/bios.ld -o $(BUILD)/bios/bios.elf $(BUILD)/bios/bios.o
	objcopy -O binary $(BUILD)/bios/bios.elf $@

$(BUILD)/bios/bios_blob.o: $(BUILD)/bios/bios.bin
	cd $(BUILD)/bios && ld -r -b binary -z noexecstack -o bios_blob.o bios.bin

$(TESTLIB_OBJS): CFLAGS += -Itests/lib

$(BUILD)/tests/unit/%: tests/unit/%.c $(LIB_OBJS) $(TESTLIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/lib $(LDFLAGS) -o $@ $(filter %.c %.o,$^) $(LDLIBS)

# Tests that need KVM and lkvm's runner in their own process (run by the KVM suites).
$(BUILD)/tests/kvm/%: tests/kvm/%.c $(BUILD)/cmd/run.o $(BUILD)/cmd/restore.o $(BUILD)/cmd/setup.o $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.o,$^) $(LDLIBS)

# Command-layer code with a unit test of its own links its object too.
$(BUILD)/tests/unit/test_scratch: $(BUILD)/cmd/scratch.o
$(BUILD)/tests/unit/test_sandbox_confine: $(BUILD)/cmd/sandbox_confine.o
$(BUILD)/tests/unit/test_agent: $(BUILD)/cmd/agent_host.o $(BUILD)/cmd/agent.o
$(BUILD)/tests/unit/test_sandbox_cache: $(BUILD)/cmd/sandbox_cache.o
$(BUILD)/tests/unit/test_sandbox_jail: $(BUILD)/cmd/sandbox_jail.o
$(BUILD)/tests/unit/test_oci_config: $(BUILD)/cmd/oci_config.o

# The KVM glue of the emulator meets a fake vCPU: the test answers its ioctls.
$(BUILD)/tests/unit/test_emulate_kvm: LDFLAGS += -Wl,--wrap=ioctl

# Programs with a deliberate bug, built with the flags above (tests/host/sanitizers.sh).
$(BUILD)/tests/host/%: tests/host/%.c Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c,$^)

# Device-layer benchmarks (bench/devices.sh): the device code without KVM, like the unit tests.
$(BUILD)/bench/devices: bench/devices.c $(LIB_OBJS) $(TESTLIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/lib $(LDFLAGS) -o $@ $(filter %.c %.o,$^) $(LDLIBS)

# Run inside a restored test guest (static: the guest has busybox only).
$(BUILD)/tests/kernel/reseed: tests/kernel/reseed.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -static -o $@ $<

# Small test guests, built from source (see tests/guests/Makefile.inc).
-include tests/guests/Makefile.inc

unit: $(UNIT_BINS)
	@sh tests/run-unit.sh $(UNIT_BINS)

check: all $(UNIT_BINS)
	@sh tests/run-all.sh $(BUILD)

# The README's `lkvm run` option table, made from the option tables (make check compares them).
readme-options: $(LKVM)
	@awk -v table="$$($(LKVM) help --markdown run)" \
		'/^<!-- options: run -->$$/ { print; print table; skip = 1; next } /^<!-- end of options -->$$/ { skip = 0 } !skip' \
		README.md > README.md.tmp && mv README.md.tmp README.md

$(BUILD)/lkvm.1: $(LKVM)
	$(LKVM) help --man > $@

$(BUILD)/lkvm.bash: $(LKVM)
	$(LKVM) help --bash-completion > $@

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
COMPLETIONDIR ?= $(PREFIX)/share/bash-completion/completions

install: $(LKVM) $(BUILD)/lkvm.1 $(BUILD)/lkvm.bash
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(COMPLETIONDIR)
	install -m 0755 $(LKVM) $(DESTDIR)$(BINDIR)/lkvm
	ln -sf lkvm $(DESTDIR)$(BINDIR)/lkvm-oci
	install -m 0644 $(BUILD)/lkvm.1 $(DESTDIR)$(MANDIR)/man1/lkvm.1
	install -m 0644 $(BUILD)/lkvm.bash $(DESTDIR)$(COMPLETIONDIR)/lkvm

demo: all
	@sh tests/demo.sh

fuzz:
	@sh tests/fuzz/run.sh $(FUZZ_SECONDS)

bench: all
	@sh bench/run.sh

clean:
	rm -rf build build-san build-fuzz lkvm

.PHONY: all lkvm unit check demo bench clean guests fuzz install readme-options

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
