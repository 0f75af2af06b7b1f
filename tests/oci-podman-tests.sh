#!/bin/sh
# podman (Debian's) with lkvm-oci as its runtime, in a real guest: an image imported from a
# busybox rootfs tarball (no registry), storage, run root and libpod's tmpdir under a test
# folder, cgroupfs, the file events backend, no network. `podman run --rm` output and exit
# status 3, -e, -v (both ways), podman exec into a running container, podman stop.
BUILD=${1:-build}
cd "$(dirname "$0")/.." || exit 1
. tests/lib/suite.sh
# podman's locks live in /dev/shm, which a minimal machine (the nested one) lacks: the suite
# runs in a private mount namespace with a tmpfs there, touching nothing outside it.
if [ -z "${OCI_PODMAN_NS:-}" ] && command -v unshare > /dev/null && { [ ! -d /dev/shm ] || ! mountpoint -q /dev/shm; }; then
	export OCI_PODMAN_NS=1
	exec unshare -m --propagation private sh "$(pwd)/tests/oci-podman-tests.sh" "$@"
fi
if [ -n "${OCI_PODMAN_NS:-}" ]; then
	[ -d /dev/shm ] || mkdir -m 1777 /dev/shm
	mount -t tmpfs -o mode=1777 shm /dev/shm
fi
suite_init oci-podman
need_tool podman podman "podman with lkvm-oci" || { suite_end; exit 0; }
OCIBIN=$(pwd)/$BUILD/lkvm-oci
K=$(cd "$(cat .cache/kernel/current 2>/dev/null)" 2>/dev/null && pwd)/bzImage
R=$(mktemp -d)
S=$(mktemp -d /tmp/oXXXXXX)	# lkvm-oci's state: short, its sockets' paths hold the 64-character ids
export TMPDIR=$R XDG_RUNTIME_DIR=$R CONTAINERS_CONF=$R/containers.conf
# lkvm-oci ignores cgroups (the VM is the limit): podman may run it without any
printf '[engine]\nruntime_supports_nocgroup = ["lkvm-oci"]\nruntime_supports_json = ["lkvm-oci"]\n[engine.runtimes]\nlkvm-oci = ["%s"]\n' "$OCIBIN" > "$R/containers.conf"
PO="podman --root $R/storage --runroot $R/run --tmpdir $R/libpod --storage-driver vfs --cgroup-manager cgroupfs --events-backend file --runtime lkvm-oci --runtime-flag root=$S"
trap '$PO rm -af -t 0 > /dev/null 2>&1; rm -rf "$R" "$S"' EXIT
if [ ! -f "$K" ]; then
	fail "podman" "no test kernel (tests/prepare-kernels.sh)"; suite_end; exit 1
fi
if [ ! -x /bin/busybox ] || readelf -l /bin/busybox | grep -q "program interpreter"; then
	skip "podman with lkvm-oci" "no static /bin/busybox (install busybox-static)"; suite_end; exit 0
fi
tok=$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
mkdir -p "$R/rootfs/bin" "$R/rootfs/proc" "$R/rootfs/sys" "$R/rootfs/dev" "$R/rootfs/etc" "$R/rootfs/tmp"
cp /bin/busybox "$R/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$R/rootfs/bin/$a"; done
tar -C "$R/rootfs" -cf "$R/bb.tar" .
err1() { tr '\n' '|' < "$1" 2>/dev/null | cut -c1-600; }
if ! timeout 300 $PO import --change 'ENV PATH=/bin' "$R/bb.tar" localhost/lkvm-bb:1 > "$R/import.out" 2>&1; then
	fail "podman import" "$(err1 "$R/import.out")"; suite_end; exit 1
fi
RUN="timeout -k 10 600 $PO run --network host --cgroups disabled --annotation org.lkvm.kernel=$K"	# the VM is the isolation: no netns or cgroups needed
out=$($RUN --rm localhost/lkvm-bb:1 sh -c "echo hi-$tok; exit 3" 2> "$R/run.err")
rc=$?
[ $rc = 3 ] && [ "$out" = "hi-$tok" ] && pass "podman run --rm: output hi-$tok and exit status 3 through lkvm-oci" ||
	fail "podman run" "rc=$rc out '$out' err $(err1 "$R/run.err")"
out=$($RUN --rm -e "V=val $tok" localhost/lkvm-bb:1 sh -c 'echo "$V"' 2> "$R/env.err")
[ "$out" = "val $tok" ] && pass "podman run -e: the value reached the container" || fail "podman -e" "out '$out' err $(err1 "$R/env.err")"
mkdir -p "$R/vol"
echo "host-$tok" > "$R/vol/in.txt"
out=$($RUN --rm -v "$R/vol:/vol" localhost/lkvm-bb:1 sh -c "cat /vol/in.txt; echo guest-$tok > /vol/out.txt" 2> "$R/vol.err")
[ "$out" = "host-$tok" ] && [ "$(cat "$R/vol/out.txt" 2>/dev/null)" = "guest-$tok" ] &&
	pass "podman run -v: the container read the host's file and wrote one the host reads" ||
	fail "podman -v" "out '$out' host sees '$(cat "$R/vol/out.txt" 2>&1)' err $(err1 "$R/vol.err")"
# a running container: podman exec, then podman stop (SIGTERM through lkvm-oci kill)
if $RUN -d --name lkvm-c1 localhost/lkvm-bb:1 sleep 1000 > "$R/d.out" 2> "$R/d.err"; then
	out=$(timeout -k 10 300 $PO exec lkvm-c1 sh -c "echo exec-$tok; exit 4" 2> "$R/exec.err")
	rc=$?
	[ $rc = 4 ] && [ "$out" = "exec-$tok" ] && pass "podman exec: output and status 4 from the running container" ||
		fail "podman exec" "rc=$rc out '$out' err $(err1 "$R/exec.err")"
	timeout -k 10 300 $PO stop -t 20 lkvm-c1 > /dev/null 2> "$R/stop.err"
	st=$($PO inspect -f '{{.State.Status}} {{.State.ExitCode}}' lkvm-c1 2>&1)
	[ "$st" = "exited 143" ] && pass "podman stop: the container ended by SIGTERM (exit code 143)" ||
		fail "podman stop" "state '$st' err $(err1 "$R/stop.err")"
	$PO rm -f lkvm-c1 > /dev/null 2>&1
else
	fail "podman run -d" "$(err1 "$R/d.err")"
fi
suite_end
