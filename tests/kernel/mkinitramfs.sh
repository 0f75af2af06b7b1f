#!/bin/sh
# mkinitramfs.sh OUT.cpio.gz INIT_SCRIPT: a busybox-static initramfs whose /init
# sets up /proc, /sys, /dev and the applet links, then runs INIT_SCRIPT.
set -eu
out=$1 script=$2
bb=$(command -v busybox || echo /bin/busybox)
[ -x "$bb" ] && "$bb" --list >/dev/null 2>&1 || { echo "mkinitramfs: busybox-static is missing" >&2; exit 2; }
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
mkdir -p "$d/bin" "$d/sbin" "$d/proc" "$d/sys" "$d/dev" "$d/tmp" "$d/etc" "$d/root" "$d/mnt"
cp "$bb" "$d/bin/busybox"
cat > "$d/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs tmp /tmp
exec /bin/sh /etc/lkvm-init
INIT
cp "$script" "$d/etc/lkvm-init"
chmod +x "$d/init"
(cd "$d" && find . | cpio -o -H newc 2>/dev/null | gzip -1) > "$out"
