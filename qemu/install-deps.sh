#!/usr/bin/env bash
# Installs what the in-guest test bed needs on a fresh Debian 12 machine:
# QEMU 10 (bookworm-backports, for the `igb` model), a guest kernel, busybox-static
# for the initramfs, DPDK's testpmd as the benchmark peer, valgrind for callgrind; and for
# the host-side fuzz targets (fuzz/), g++ (libfuzzer-sys builds libFuzzer) and cargo-fuzz.
# Idempotent: does nothing when everything is present.
set -euo pipefail

need=()
# bookworm's own QEMU 7.2 lacks the `igb` model: take it as missing so backports' 10 replaces it.
if ! command -v qemu-system-x86_64 >/dev/null ||
    ! qemu-system-x86_64 -device help 2>/dev/null | grep -q '"igb"'; then
    need+=(qemu-system-x86)
fi
ls /boot/vmlinuz-* >/dev/null 2>&1 || need+=(linux-image-amd64)
[ -x /bin/busybox ] && /bin/busybox --list >/dev/null 2>&1 && dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
# dpdk-testpmd ships in dpdk-dev (the `dpdk` package has only the runtime scripts).
command -v dpdk-testpmd >/dev/null || need+=(dpdk-dev)
command -v valgrind >/dev/null || need+=(valgrind)
command -v ip >/dev/null || need+=(iproute2)
# The virtio TSO test turns a veth's offloads off so Linux segments what tenge sent.
command -v ethtool >/dev/null || need+=(ethtool)
command -v python3 >/dev/null || need+=(python3)
command -v cpio >/dev/null || need+=(cpio)
command -v modinfo >/dev/null || need+=(kmod)
# mkinitramfs.sh serialises concurrent builds with flock and hashes its inputs.
command -v flock >/dev/null || need+=(util-linux)
command -v sha256sum >/dev/null || need+=(coreutils)
command -v gzip >/dev/null || need+=(gzip)
# extract-vmlinux.sh unpacks Debian's xz-compressed kernel for a PVH boot.
command -v xz >/dev/null || need+=(xz-utils)
# libfuzzer-sys compiles libFuzzer (C++) for the fuzz targets.
command -v g++ >/dev/null || need+=(g++)

# cargo-fuzz, from crates.io (runs on the stable toolchain, see tenge.sh).
install_cargo_fuzz() {
    cargo fuzz --version >/dev/null 2>&1 && return
    echo "tenge: installing cargo-fuzz" >&2
    cargo install --locked cargo-fuzz --version '^0.13' >&2
}

if [ ${#need[@]} -eq 0 ]; then
    install_cargo_fuzz
    exit 0
fi

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

backports=/etc/apt/sources.list.d/tenge-bookworm-backports.sources
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "tenge: adding bookworm-backports (QEMU 10) to apt sources" >&2
    $SUDO tee "$backports" >/dev/null <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi

echo "tenge: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
for p in "${need[@]}"; do
    if [ "$p" = qemu-system-x86 ]; then
        $SUDO apt-get install -y -qq --no-install-recommends -t bookworm-backports qemu-system-x86 >/dev/null
    else
        $SUDO apt-get install -y -qq --no-install-recommends "$p" >/dev/null
    fi
done
qemu-system-x86_64 --version | head -1 >&2
install_cargo_fuzz
