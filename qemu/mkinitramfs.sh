#!/usr/bin/env bash
# Builds the test bed's initramfs: busybox-static, qemu/guest/init as /init, and the virtio and
# 9p modules the init needs to reach the host's file tree. Everything else comes from the host
# tree after switch_root (see qemu/guest/stage2.sh), so this stays small and rarely changes.
#
# usage: qemu/mkinitramfs.sh [--kver KVER] [OUT]
#   KVER  guest kernel release (default: the newest /boot/vmlinuz-* with /lib/modules/KVER)
#   OUT   output file (default: <workspace>/target/testbed/initramfs-KVER.cpio.gz)
#
# Cached: rebuilt only when an input (this script, the init, busybox, a module file, the kernel
# release) changes; a hash of them is kept in OUT.stamp. Safe to run concurrently (flock).
# Prints the output path on stdout.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")

kver=""
out=""
while [ $# -gt 0 ]; do
    case "$1" in
    --kver) kver="${2:?--kver needs a kernel release}"; shift 2 ;;
    --kver=*) kver="${1#--kver=}"; shift ;;
    -h | --help) sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "mkinitramfs.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) out="$1"; shift ;;
    esac
done

if [ -z "$kver" ]; then
    for k in $(ls /boot/vmlinuz-* 2>/dev/null | sed 's|^/boot/vmlinuz-||' | sort -V -r); do
        if [ -d "/lib/modules/$k" ]; then kver=$k; break; fi
    done
    [ -n "$kver" ] || {
        echo "mkinitramfs.sh: no /boot/vmlinuz-* with matching /lib/modules: run qemu/install-deps.sh" >&2
        exit 1
    }
fi
[ -d "/lib/modules/$kver" ] || {
    echo "mkinitramfs.sh: /lib/modules/$kver missing: install that kernel's image package" >&2
    exit 1
}
[ -n "$out" ] || out="$root/target/testbed/initramfs-$kver.cpio.gz"

busybox=/bin/busybox
[ -x "$busybox" ] && ! ldd "$busybox" >/dev/null 2>&1 || {
    echo "mkinitramfs.sh: $busybox missing or not static: run qemu/install-deps.sh (busybox-static)" >&2
    exit 1
}
for tool in cpio gzip modinfo sha256sum flock; do
    command -v "$tool" >/dev/null || {
        echo "mkinitramfs.sh: $tool not found: run qemu/install-deps.sh" >&2
        exit 1
    }
done

# The order is the load order: each module's dependencies come before it.
modules="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p"
declare -a mod_names mod_files
for m in $modules; do
    f=$(modinfo -k "$kver" -n "$m" 2>/dev/null || true)
    if [ -z "$f" ] || [ ! -f "$f" ]; then
        # Builtin (modinfo says "(builtin)") or absent from this kernel: nothing to load.
        # If 9p is really missing, the init says so when its mount fails.
        continue
    fi
    mod_names+=("$m")
    mod_files+=("$f")
done

mkdir -p "$(dirname "$out")"
exec 9>"$out.lock"
flock 9

stamp=$(
    {
        echo "$kver ${mod_names[*]}"
        sha256sum "${BASH_SOURCE[0]}" "$here/guest/init" "$busybox" "${mod_files[@]}"
    } | sha256sum | cut -d' ' -f1
)
if [ -f "$out" ] && [ "$(cat "$out.stamp" 2>/dev/null)" = "$stamp" ]; then
    echo "$out"
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"/{bin,dev,proc,sys,newroot,lib/modules}
cp "$busybox" "$work/bin/busybox"
# The kernel opens /dev/console for init before init can mount devtmpfs; without the node the
# first messages of a failing init would go nowhere. Only root can make it; cpio keeps it.
mknod -m 600 "$work/dev/console" c 5 1 2>/dev/null || true
install -m 0755 "$here/guest/init" "$work/init"
: >"$work/modules.list"
for i in "${!mod_names[@]}"; do
    m=${mod_names[$i]}
    f=${mod_files[$i]}
    # busybox insmod takes plain .ko only.
    case "$f" in
    *.ko.xz) xz -dc "$f" >"$work/lib/modules/$m.ko" ;;
    *.ko.zst) zstd -qdc "$f" >"$work/lib/modules/$m.ko" ;;
    *.ko.gz) gzip -dc "$f" >"$work/lib/modules/$m.ko" ;;
    *) cp "$f" "$work/lib/modules/$m.ko" ;;
    esac
    echo "$m" >>"$work/modules.list"
done

# Write next to the target and rename, so a concurrent reader never sees half a file.
(cd "$work" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) |
    gzip -1 >"$out.tmp"
mv -f "$out.tmp" "$out"
echo "$stamp" >"$out.stamp"
echo "mkinitramfs.sh: built $out (kernel $kver; modules: ${mod_names[*]})" >&2
echo "$out"
