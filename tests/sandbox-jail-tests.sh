#!/bin/sh
# lkvm sandbox jailed by default as root (issue 22), in a real guest, lkvm
# started as root without sudo (the jail user is nobody). The work tree is a
# root-owned 0700 folder on an ext4 file system (a loop file of the test's):
# read from the host's /proc, the running VM's lkvm is uid 65534 with no
# capabilities, NoNewPrivs 1, Seccomp 2 and a mount namespace of its own,
# while the job (through the id-mapped clone of its share) reads root's 0600
# file there and writes a file the host finds root's with the job's bytes;
# the job's stdout, stderr and status come back byte-exact. A work tree on a
# file system that cannot be id-mapped (tmpfs before Linux 6.3, ramfs after):
# the default steps back to unjailed (--verbose says which share and why) and
# the job still runs; --jail fails with one line naming the share, the step
# and the errno, before any VM starts.
# The test confines itself: a private mount namespace with a fresh /tmp.
BUILD=${1:-build}
cd "$(dirname "$0")/.." || exit 1
. tests/lib/suite.sh
suite_init sandbox-jail
if [ -z "${LKVM_CONFINED:-}" ]; then
	if [ "$(id -u)" != 0 ]; then
		skip "sandbox jail" "needs root (lkvm started as root jails itself; loop mounts)"
		suite_end; exit 0
	fi
	exec env LKVM_CONFINED=1 unshare -m --propagation private sh "$0" "$@"
fi
# The nested machine runs its job chrooted into /host (tests/kvm-env.sh), where the kernel refuses
# clone(CLONE_NEWUSER), which an id-mapped mount needs: in our own mount namespace, /host is moved
# onto its root (as switch_root does) and we chroot into it there, which is no chroot any more.
if [ -z "${LKVM_UNCHROOTED:-}" ] && [ -n "${LKVM_ENV_NESTED:-}" ] && ! unshare -U true 2>/dev/null; then
	exec env LKVM_UNCHROOTED=1 nsenter --mount=/proc/self/ns/mnt sh -c 'cd /host && mount --move . / && exec chroot . sh -c "cd \"\$1\" && exec sh tests/sandbox-jail-tests.sh \"\$2\"" - "$1" "$2"' - "$(pwd)" "$BUILD"
fi
unset SUDO_UID SUDO_GID SUDO_USER	# root without sudo: the jail user is nobody
LKVM=$(pwd)/$BUILD/lkvm
K=$(cd "$(cat .cache/kernel/current 2>/dev/null)" 2>/dev/null && pwd)/bzImage
if [ ! -f "$K" ]; then
	fail "sandbox jail" "needs the test kernel (tests/prepare-kernels.sh)"
	suite_end; exit 1
fi
mount -t tmpfs tmp /tmp || { fail "sandbox jail" "cannot mount a fresh /tmp"; suite_end; exit 1; }
T=$(mktemp -d)
export XDG_RUNTIME_DIR=$T
# Mount points outside /tmp (the guest's /tmp is the scratch share): in the build folder.
W=$(mktemp -d "$(pwd)/$BUILD/sbjail-ext4.XXXXXX") W2=$(mktemp -d "$(pwd)/$BUILD/sbjail-tmpfs.XXXXXX")
sb=
cleanup() { [ -n "$sb" ] && kill "$sb" 2>/dev/null; umount -l "$W" 2>/dev/null; umount -l "$W2" 2>/dev/null; rmdir "$W" "$W2"; rm -rf "$T"; }
trap cleanup EXIT
why() { echo "rc=$(cat "$T/$1.rc" 2>/dev/null) out: $(tr -d '\r' < "$T/$1.out" | tail -n 5 | tr '\n' '|') err: $(tail -n 4 "$T/$1.err" | tr '\n' '|')"; }

# The ext4 file system: a loop file of ours on the fresh /tmp, never anything else.
ext4=no
if ! command -v mkfs.ext4 > /dev/null; then
	fail "ext4 work tree" "mkfs.ext4 is missing (e2fsprogs)"
elif ! truncate -s 64M "$T/ext4.img" || ! mkfs.ext4 -q "$T/ext4.img" 2> "$T/mkfs.err"; then
	fail "ext4 work tree" "mkfs.ext4 on $T/ext4.img: $(cat "$T/mkfs.err")"
elif ! mount -o loop "$T/ext4.img" "$W" 2> "$T/mount.err"; then
	fail "ext4 work tree" "mount -o loop: $(cat "$T/mount.err") (loop devices: $(ls /dev/loop* 2>/dev/null | head -n 3 | tr '\n' ' '))"
else
	ext4=yes
fi

# 1. Jailed, writing a root-owned work tree through its id-mapped clone.
if [ $ext4 = yes ]; then
	chown 0:0 "$W" && chmod 0700 "$W"
	printf 'root-secret-42\n' > "$W/secret" && chmod 0600 "$W/secret"
	printf 'root-secret-42\n' > "$T/want.out"
	printf 'to-stderr\n' > "$T/want.err"
	(cd "$W" && timeout -k 10 300 "$LKVM" sandbox -k "$K" -m 384 -v "$W:$W" -w "$W" -- sh -c \
		'cat secret && echo made-by-job > out.txt && echo ready > ready || exit 9
		 i=0; while [ ! -e go ] && [ $i -lt 1500 ]; do sleep 0.2; i=$((i + 1)); done
		 echo to-stderr >&2; exit 7' < /dev/null > "$T/j.out" 2> "$T/j.err"; echo $? > "$T/j.rc") &
	sb=$!
	i=0; while [ $i -lt 2400 ] && [ ! -e "$W/ready" ] && kill -0 $sb 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
	# The VM's lkvm: of the processes running `lkvm sandbox` (the sandbox, its VM, the VM's reaper), the one not root.
	vm=
	for p in $(pgrep -f "$LKVM sandbox" 2>/dev/null); do
		[ "$(sed -n 's/^Uid:[[:space:]]*//p' /proc/$p/status 2>/dev/null | cut -f1)" = 65534 ] && vm=$p
	done
	field() { sed -n "s/^$2:[[:space:]]*//p" "/proc/$1/status" | tr -s '\t ' ' '; }
	if [ -n "$vm" ]; then
		uid=$(field $vm Uid) capeff=$(field $vm CapEff) nnp=$(field $vm NoNewPrivs) sec=$(field $vm Seccomp)
		mnt=$([ "$(readlink /proc/$vm/ns/mnt)" != "$(readlink /proc/self/ns/mnt)" ] && echo own || echo host)
	fi
	owner=$(stat -c %u:%g "$W/out.txt" 2>/dev/null) content=$(cat "$W/out.txt" 2>/dev/null)
	rowner=$(stat -c %u:%g "$W/ready" 2>/dev/null)
	touch "$W/go"
	wait $sb; sb=
	if [ -n "$vm" ] && [ "$uid" = "65534 65534 65534 65534" ] && [ "$capeff" = 0000000000000000 ] && [ "$nnp" = 1 ] &&
	   [ "$sec" = 2 ] && [ "$mnt" = own ]; then
		pass "lkvm sandbox as root is jailed by default: the VM's lkvm has uid 65534, CapEff 0, NoNewPrivs 1, Seccomp 2, its own mount namespace"
	else
		fail "jailed sandbox" "no lkvm process of uid 65534 ($(for p in $(pgrep -f "$LKVM sandbox"); do echo "$p:$(sed -n 's/^Uid:[[:space:]]*//p' /proc/$p/status | cut -f1)"; done | tr '\n' ' ')) Uid='$uid' CapEff=$capeff NoNewPrivs=$nnp Seccomp=$sec mnt=$mnt; $(why j)"
	fi
	if [ "$owner" = 0:0 ] && [ "$content" = made-by-job ] && [ "$rowner" = 0:0 ]; then
		pass "the jailed job's files land in the root-owned ext4 work tree as root's (0:0), with the job's bytes"
	else
		fail "id-mapped work tree" "out.txt owner '$owner' content '$content', ready owner '$rowner'; $(why j)"
	fi
	if [ "$(cat "$T/j.rc")" = 7 ] && cmp -s "$T/j.out" "$T/want.out" && cmp -s "$T/j.err" "$T/want.err"; then
		pass "the job read root's 0600 file of the tree; stdout, stderr and status 7 byte-exact"
	else
		fail "jailed job's output" "$(why j)"
	fi
else
	skip "jailed sandbox on ext4" "no ext4 work tree (said above)"
fi

# 2. A work tree that cannot be id-mapped: tmpfs before 6.3, else ramfs (never).
fs=tmpfs
kv=$(uname -r | sed 's/^\([0-9]*\)\.\([0-9]*\).*/\1 \2/')
set -- $kv
[ "$1" -gt 6 ] || { [ "$1" = 6 ] && [ "$2" -ge 3 ]; } && fs=ramfs
if mount -t $fs sbjail "$W2"; then
	chmod 0700 "$W2"
	(cd "$W2" && timeout -k 10 300 "$LKVM" sandbox --verbose -k "$K" -m 384 -v "$W2:$W2" -w "$W2" -- sh -c 'echo made > made; id -u' \
		< /dev/null > "$T/s.out" 2> "$T/s.err"; echo $? > "$T/s.rc")
	if [ "$(cat "$T/s.rc")" = 0 ] && [ "$(tr -d '\r' < "$T/s.out")" = 0 ] && [ "$(stat -c %u "$W2/made" 2>/dev/null)" = 0 ] &&
	   grep -q "^lkvm sandbox: not jailed: -v $W2: id-mapped clone: mount_setattr(MOUNT_ATTR_IDMAP)" "$T/s.err"; then
		pass "a $fs work tree: the default steps back to unjailed (--verbose: $(grep 'not jailed' "$T/s.err" | head -n 1)) and the job runs"
	else
		fail "$fs work tree, default" "$(why s)"
	fi
	(cd "$W2" && timeout -k 10 60 "$LKVM" sandbox --jail -k "$K" -m 384 -v "$W2:$W2" -w "$W2" -- true \
		< /dev/null > "$T/f.out" 2> "$T/f.err"; echo $? > "$T/f.rc")
	if [ "$(cat "$T/f.rc")" != 0 ] && [ "$(wc -l < "$T/f.err")" = 1 ] &&
	   grep -Eq "^lkvm sandbox: --jail: -v $W2: id-mapped clone: mount_setattr\(MOUNT_ATTR_IDMAP\).*: (Invalid argument|Operation not permitted|Operation not supported)$" "$T/f.err"; then
		pass "a $fs work tree with --jail: refused in one line ($(cat "$T/f.err"))"
	else
		fail "$fs work tree, --jail" "$(why f)"
	fi
else
	fail "$fs work tree" "cannot mount $fs on $W2"
fi
suite_end
