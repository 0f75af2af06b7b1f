#!/bin/sh
# mkinitramfs.sh OUT.cpio.gz INIT_SCRIPT [FILE[:DEST]...]: a busybox-static
# initramfs whose /init sets up /proc, /sys, /dev, /tmp and the applet links,
# then runs INIT_SCRIPT (as /etc/lkvm-init). Each extra FILE is copied to DEST
# (default /FILE's base name). OUT is left alone when it is newer than all inputs and whole
# (gzip -t: a stall of the nested machine can leave what it wrote to the checkout, a
# cache=loose 9p mount there, empty or cut short on the host, yet newer than its inputs).
set -eu
[ $# -ge 2 ] || { echo "usage: mkinitramfs.sh OUT.cpio.gz INIT_SCRIPT [FILE[:DEST]...]" >&2; exit 2; }
out=$1 script=$2
shift 2
bb=$(command -v busybox || echo /bin/busybox)
[ -x "$bb" ] && "$bb" --list >/dev/null 2>&1 || { echo "mkinitramfs: busybox-static is missing" >&2; exit 2; }
if [ -f "$out" ] && gzip -t "$out" 2> /dev/null; then
	fresh=1
	for f in "$0" "$script" "$bb" "$@"; do [ "${f%%:*}" -nt "$out" ] && fresh=0; done
	[ $fresh = 1 ] && exit 0
fi
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
for f in "$@"; do
	src=${f%%:*} dest=${f#*:}
	[ "$dest" = "$f" ] && dest=/$(basename "$src")
	mkdir -p "$d$(dirname "$dest")"
	cp "$src" "$d$dest"
done
(cd "$d" && find . | cpio -o -H newc 2>/dev/null | gzip -1) > "$out.tmp"
mv "$out.tmp" "$out"
