#!/usr/bin/env bash
# Unpacks a compressed kernel image (bzImage, /boot/vmlinuz-*) into the plain ELF vmlinux, so
# QEMU can boot it through its PVH entry point. Under TCG this skips the guest's own xz
# decompression, which takes 1 to 4 s of every boot (more when the host is busy).
#
# usage: qemu/extract-vmlinux.sh IMAGE OUT
# Prints OUT when it holds a PVH-bootable vmlinux; exits 3 (printing nothing) when the image
# cannot be booted that way (kernel without CONFIG_PVH, unknown compression): boot IMAGE then.
# Cached: redone only when IMAGE or this script changes (hash in OUT.stamp). Safe to run
# concurrently.
set -euo pipefail

img="${1:?usage: extract-vmlinux.sh IMAGE OUT}"
out="${2:?usage: extract-vmlinux.sh IMAGE OUT}"
[ -r "$img" ] || { echo "extract-vmlinux.sh: cannot read $img" >&2; exit 1; }

kver=${img##*/vmlinuz-}
config=/boot/config-$kver
# QEMU refuses an ELF kernel without the PVH note, and only CONFIG_PVH kernels carry it.
if [ ! -r "$config" ] || ! grep -qx 'CONFIG_PVH=y' "$config"; then
    exit 3
fi

mkdir -p "$(dirname "$out")"
exec 9>"$out.lock"
flock 9

stamp=$(sha256sum "${BASH_SOURCE[0]}" "$img" | sha256sum | cut -d' ' -f1)
if [ -f "$out" ] && [ "$(cat "$out.stamp" 2>/dev/null)" = "$stamp" ]; then
    echo "$out"
    exit 0
fi

is_elf() { [ "$(head -c 4 "$1" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; }

# The compressed payload starts at the first offset holding its format's magic; try each
# candidate (the magic may also occur by chance in the setup code).
try() {
    local magic="$1" tool="$2" off
    for off in $(LC_ALL=C grep -obUaP "$magic" "$img" | cut -d: -f1); do
        if tail -c +$((off + 1)) "$img" | $tool >"$out.tmp" 2>/dev/null || [ -s "$out.tmp" ]; then
            if is_elf "$out.tmp"; then
                return 0
            fi
        fi
    done
    return 1
}

if try '\xfd\x37\x7a\x58\x5a\x00' 'xz -dc --single-stream' ||
    try '\x28\xb5\x2f\xfd' 'zstd -dcq' ||
    try '\x1f\x8b\x08' 'gzip -dc'; then
    mv -f "$out.tmp" "$out"
    echo "$stamp" >"$out.stamp"
    echo "extract-vmlinux.sh: unpacked $img into $out" >&2
    echo "$out"
    exit 0
fi
rm -f "$out.tmp"
exit 3
