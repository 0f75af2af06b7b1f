#!/bin/sh
# containerd (Debian's 1.6) with lkvm-oci as its runc binary, in a real guest: a private
# containerd daemon (its own root, state, socket and config under a test folder, the native
# snapshotter, no CRI), an image imported from a docker-archive tarball made here from
# busybox-static (no registry), and `ctr run --runc-binary lkvm-oci` through containerd's own
# runc shim (containerd-shim-runc-v2). Output and exit status 3, the test kernel in the container,
# --env, a bind mount both ways, `ctr task exec` into a running container, `ctr task ps`,
# `ctr task kill` (SIGTERM reaching the process's trap).
BUILD=${1:-build}
cd "$(dirname "$0")/.." || exit 1
. tests/lib/suite.sh
# containerd 1.6 keeps its shims' sockets (/run/containerd/s) and ctr its fifos
# (/run/containerd/fifo) at fixed paths: the suite runs in a private mount namespace with a
# tmpfs there (over /run when that folder is missing), touching nothing outside.
if [ -z "${OCI_CTRD_NS:-}" ] && command -v unshare > /dev/null; then
	export OCI_CTRD_NS=1
	exec unshare -m --propagation private sh "$(pwd)/tests/oci-containerd-tests.sh" "$@"
fi
suite_init oci-containerd
if [ -z "${OCI_CTRD_NS:-}" ]; then
	skip "containerd with lkvm-oci" "no unshare (util-linux): the suite needs a private mount namespace"; suite_end; exit 0
fi
if [ -d /run/containerd ]; then
	mount -t tmpfs -o mode=0711 ctrd /run/containerd || { fail "containerd" "cannot mount a tmpfs on /run/containerd"; suite_end; exit 1; }
else	# no folder made on the host's /run: a tmpfs over all of it, in this namespace only
	mount -t tmpfs -o mode=0755 run /run && mkdir -p /run/containerd ||
		{ fail "containerd" "cannot mount a tmpfs on /run"; suite_end; exit 1; }
fi
need_tool containerd containerd "containerd with lkvm-oci" || { suite_end; exit 0; }
need_tool ctr containerd "containerd with lkvm-oci" || { suite_end; exit 0; }
need_tool containerd-shim-runc-v2 containerd "containerd with lkvm-oci" || { suite_end; exit 0; }
OCIBIN=$(pwd)/$BUILD/lkvm-oci
K=$(cd "$(cat .cache/kernel/current 2>/dev/null)" 2>/dev/null && pwd)/bzImage
R=$(mktemp -d)			# containerd's root, state, socket; the image; the volume
S=$(mktemp -d /tmp/cXXXXXX)	# lkvm-oci's state (--runc-root): short, it holds sockets
A=$R/containerd.sock
CTR="ctr --address $A --namespace lkvm-test"
DPID=
cleanup() {
	for c in $($CTR task ls -q 2> /dev/null); do $CTR task kill -s KILL "$c" > /dev/null 2>&1; done
	sleep 1
	for c in $($CTR container ls -q 2> /dev/null); do
		$CTR task delete -f "$c" > /dev/null 2>&1
		$CTR container rm "$c" > /dev/null 2>&1
	done
	[ -n "$DPID" ] && kill "$DPID" 2> /dev/null && wait "$DPID" 2> /dev/null
	# shims that outlived their daemon: those started for our socket, by pid
	for p in /proc/[0-9]*; do
		{ tr '\0' ' ' < "$p/cmdline"; } 2> /dev/null | grep -q -- "-address $A " && kill -KILL "${p#/proc/}" 2> /dev/null
	done
	# the snapshots' bind mounts (this namespace's own) before removing the folder
	grep -o " $R/[^ ]*" /proc/self/mounts | sort -r | while read -r m; do umount -l "$m"; done
	[ "$SUITE_FAIL" = 0 ] || cp "$R/containerd.log" "$BUILD/oci-containerd-daemon.log" 2> /dev/null	# kept for a look
	rm -rf "$R" "$S"
}
trap cleanup EXIT
if [ ! -f "$K" ]; then
	fail "containerd" "no test kernel (tests/prepare-kernels.sh)"; suite_end; exit 1
fi
if [ ! -x /bin/busybox ] || readelf -l /bin/busybox | grep -q "program interpreter"; then
	skip "containerd with lkvm-oci" "no static /bin/busybox (install busybox-static)"; suite_end; exit 0
fi
err1() { tr '\n' '|' < "$1" 2>/dev/null | cut -c1-600; }
tok=$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')

# The daemon: everything under $R, no CRI, plugins that want host paths (/opt) off.
cat > "$R/config.toml" <<EOF
version = 2
root = "$R/root"
state = "$R/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$A"
[ttrpc]
  address = "$R/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
EOF
containerd --config "$R/config.toml" --log-level debug > "$R/containerd.log" 2>&1 &
DPID=$!
up=0
for _ in $(seq 1 100); do
	$CTR version > /dev/null 2>&1 && { up=1; break; }
	kill -0 "$DPID" 2> /dev/null || break
	sleep 0.2
done
if [ $up = 0 ]; then
	fail "containerd" "the private daemon did not answer on $A: $(tail -5 "$R/containerd.log" | tr '\n' '|' | cut -c1-600)"
	suite_end; exit 1
fi
pass "containerd: a private daemon answers on the test folder's socket"

# A docker-archive image by hand: one layer (busybox and its applets), its config, the manifest.
mkdir -p "$R/rootfs/bin" "$R/rootfs/proc" "$R/rootfs/sys" "$R/rootfs/dev" "$R/rootfs/etc" "$R/rootfs/tmp" "$R/rootfs/run" "$R/img"
cp /bin/busybox "$R/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$R/rootfs/bin/$a"; done
tar -C "$R/rootfs" -cf "$R/img/layer.tar" .
diff=$(sha256sum "$R/img/layer.tar" | cut -d' ' -f1)
printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["sh"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$diff" > "$R/img/config.json"
cfg=$(sha256sum "$R/img/config.json" | cut -d' ' -f1)
mv "$R/img/config.json" "$R/img/$cfg.json"
printf '[{"Config":"%s.json","RepoTags":["localhost/lkvm-bb:1"],"Layers":["layer.tar"]}]' "$cfg" > "$R/img/manifest.json"
tar -C "$R/img" -cf "$R/bb.tar" manifest.json "$cfg.json" layer.tar
IMG=localhost/lkvm-bb:1
if ! $CTR image import --snapshotter native "$R/bb.tar" > "$R/import.out" 2>&1 || ! $CTR image ls -q | grep -qx "$IMG"; then
	fail "ctr image import" "$(err1 "$R/import.out")"; suite_end; exit 1
fi
pass "ctr image import: the busybox docker-archive became image $IMG"

RUN="timeout -k 10 600 $CTR run --snapshotter native --runc-binary $OCIBIN --runc-root $S --annotation org.lkvm.kernel=$K"
out=$($RUN --rm "$IMG" c-out sh -c "echo hi-$tok; exit 3" 2> "$R/run.err")
rc=$?
[ $rc = 3 ] && [ "$out" = "hi-$tok" ] && pass "ctr run --rm: output hi-$tok and exit status 3 through the runc shim and lkvm-oci" ||
	fail "ctr run" "rc=$rc out '$out' err $(err1 "$R/run.err")"
# The container ran in a VM of the test kernel: its uname is the bzImage's version string
# (the header's kernel_version field), not this machine's.
off=$(od -An -j526 -N2 -tu2 "$K" | tr -d ' ')
kver=$(dd if="$K" bs=1 skip=$((off + 512)) count=200 2> /dev/null | tr '\0' '\n' | head -n 1)
want="$(echo "$kver" | cut -d' ' -f1) $(echo "$kver" | sed 's/^[^)]*) //')"
out=$($RUN --rm "$IMG" c-vm sh -c 'echo "$(uname -r) $(uname -v)"' 2> "$R/vm.err")
[ -n "$kver" ] && [ "$out" = "$want" ] && [ "$out" != "$(uname -r) $(uname -v)" ] &&
	pass "ctr run: the container's kernel is the test kernel ($out), a VM's" ||
	fail "ctr run in a VM" "uname '$out', the bzImage says '$want', this machine '$(uname -r)' err $(err1 "$R/vm.err")"
out=$($RUN --rm --env "V=val $tok" "$IMG" c-env sh -c 'echo "$V"' 2> "$R/env.err")
[ "$out" = "val $tok" ] && pass "ctr run --env: the value reached the container" || fail "ctr --env" "out '$out' err $(err1 "$R/env.err")"
mkdir -p "$R/vol"
echo "host-$tok" > "$R/vol/in.txt"
out=$($RUN --rm --mount "type=bind,src=$R/vol,dst=/vol,options=rbind:rw" "$IMG" c-vol \
	sh -c "cat /vol/in.txt; echo guest-$tok > /vol/out.txt" 2> "$R/vol.err")
[ "$out" = "host-$tok" ] && [ "$(cat "$R/vol/out.txt" 2>/dev/null)" = "guest-$tok" ] &&
	pass "ctr run --mount bind: the container read the host's file and wrote one the host reads" ||
	fail "ctr --mount" "out '$out' host sees '$(cat "$R/vol/out.txt" 2>&1)' err $(err1 "$R/vol.err")"

# A running container: ctr task exec, then ctr task kill (SIGTERM through lkvm-oci kill to a trap).
if $RUN -d "$IMG" c-run sh -c 'trap "exit 7" TERM; sleep 1000 & wait' > "$R/d.out" 2> "$R/d.err"; then
	out=$(timeout -k 10 300 $CTR task exec --exec-id x1 c-run sh -c "echo exec-$tok; exit 4" 2> "$R/exec.err")
	rc=$?
	[ $rc = 4 ] && [ "$out" = "exec-$tok" ] && pass "ctr task exec: output and status 4 from the running container" ||
		fail "ctr task exec" "rc=$rc out '$out' err $(err1 "$R/exec.err")"
	st=$($CTR task ls 2>&1 | awk '$1 == "c-run" {print $3}')
	[ "$st" = RUNNING ] && pass "ctr task ls: c-run is RUNNING after the exec" || fail "ctr task ls" "c-run is '$st'"
	# ctr task ps (the shim runs `lkvm-oci ps --format json`): the task's pid and its VM, both lkvm
	tpid=$($CTR task ls 2>&1 | awk '$1 == "c-run" {print $2}')
	pids=$($CTR task ps c-run 2> "$R/ps.err" | awk 'NR > 1 {print $1}' | tr '\n' ' ')
	lk=$(readlink -f "$BUILD/lkvm") nl=0
	for p in $pids; do [ "$(readlink -f /proc/$p/exe)" = "$lk" ] && nl=$((nl + 1)); done
	case " $pids" in
	*" $tpid "*) [ $nl = 2 ] && [ "$(echo $pids | wc -w)" = 2 ] &&
		pass "ctr task ps: the task's pid $tpid and its VM ($pids), both lkvm" ||
		fail "ctr task ps" "pids '$pids' ($nl of them lkvm), task pid $tpid";;
	*) fail "ctr task ps" "pids '$pids' lack the task's pid '$tpid' err $(err1 "$R/ps.err")";;
	esac
	$CTR task kill -s SIGTERM c-run > /dev/null 2> "$R/kill.err"
	st=
	for _ in $(seq 1 150); do
		st=$($CTR task ls 2>&1 | awk '$1 == "c-run" {print $3}')
		[ "$st" = STOPPED ] && break
		sleep 0.2
	done
	$CTR task delete c-run > /dev/null 2> "$R/del.err"	# ctr warns of a non-zero exit code
	code=$(sed -n 's/.*exit with non-zero exit code \([0-9]*\).*/\1/p' "$R/del.err")
	[ "$st" = STOPPED ] && pass "ctr task kill: c-run stopped on SIGTERM" ||
		fail "ctr task kill" "state '$st' err $(err1 "$R/kill.err")"
	$CTR container rm c-run > /dev/null 2>&1
	[ "$code" = 7 ] && pass "ctr task delete: exit status 7 from the container's TERM trap (the signal reached its process)" ||
		fail "ctr task delete" "exit status '$code' err $(err1 "$R/del.err")"
else
	fail "ctr run -d" "$(err1 "$R/d.err")"
fi
# lkvm-oci's state is gone with the containers
left=$($OCIBIN --root "$S/lkvm-test" list -q 2>&1)
[ -z "$left" ] && pass "lkvm-oci list: no container left after the shim's deletes" || fail "lkvm-oci state" "left: $left"
suite_end
