#!/bin/sh
# The layers' includes: lib/ is generic host code and names nothing of a VM;
# kvm/ is the KVM wrapper and names no board, terminal, control socket or
# device; p9/, the 9P server, knows no VM and no virtio (virtio/9p.c carries it).
# A file that includes a header outside its layer's list fails here.
cd "$(dirname "$0")/../.." || exit 1
pass=0; fail=0
check() {	# check "FILES" ALLOWED-HEADERS...
	files=$1; shift
	for f in $files; do
		[ -f "$f" ] || continue
		bad=
		for h in $(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f"); do
			ok=0
			for a in "$@"; do [ "$h" = "$a" ] && ok=1; done
			[ $ok = 1 ] || bad="$bad $h"
		done
		if [ -n "$bad" ]; then
			echo "FAIL layering $f: includes$bad (not of its layer)"; fail=$((fail + 1))
		else
			pass=$((pass + 1))
		fi
	done
}
LIB="agent_proto.h util.h json.h json_tree.h evloop.h seccomp.h options.h snapshot.h syscall_names.h jail.h supervise.h cgroup.h idmap.h"
KVM="vm.h bus.h guest_mem.h device.h"
check "lib/*.c include/util.h include/json.h include/json_tree.h include/evloop.h include/seccomp.h include/options.h include/snapshot.h include/jail.h include/supervise.h include/cgroup.h include/idmap.h" $LIB
check "kvm/*.c include/vm.h include/bus.h include/guest_mem.h include/device.h" $LIB $KVM
check "p9/*.c p9/*.h include/p9.h" $LIB p9.h p9_int.h
echo "layering: $pass passed, $fail failed, 0 skipped"
[ $fail = 0 ]
