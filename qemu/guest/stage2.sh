#!/bin/sh
# tenge test bed: guest stage 2, run as PID 1 by the initramfs /init after switch_root.
#
# It runs from the host's tree (read-only over 9p), so it uses the host's own /bin/sh,
# modprobe, ip and /lib/modules. It prepares the NICs and hugepages the host asked for on the
# kernel command line, runs the requested script, prints the exit marker the host harness
# parses, and powers the guest off. It must never exit: PID 1 exiting panics the kernel.
#
# Kernel command line parameters (written by the host harness, qemu/src/lib.rs):
#   tenge.script=PATH      the script to run with /bin/sh (a host path, seen read-only)
#   tenge.root=PATH        the workspace root, the script's working directory
#   tenge.nics=A,B         every NIC's PCI address, in the order of the host configuration
#   tenge.vfio=A,B         the NICs to bind to vfio-pci
#   tenge.kernel=A,B       the NICs to hand to their Linux driver (loaded by modalias)
#   tenge.hugepages=N      2 MiB hugepages to reserve; 0 reserves none and mounts no hugetlbfs
#   tenge.watchdog=SECS    if the script still runs after SECS, print where tasks wait
#                          (watchdog.sh, beside this file); 0 or absent: no watchdog
#
# Console markers (the host matches them at the start of a line):
#   TENGE-GUEST-SETUP-ERROR=<why>   the guest could not be prepared; the script did not run
#   TENGE-GUEST-EXIT=<code>         the script's exit code

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# /root is the host's, read-only here; tools that want a writable home get the tmpfs.
export HOME=/tmp
export TERM=dumb

finish() {
    printf '\nTENGE-GUEST-EXIT=%s\n' "$1"
    sync
    umount /out 2>/dev/null
    # reboot(2) from PID 1 itself powers off synchronously. sysrq 'o' would do it from a
    # kernel worker while this shell runs on, and once the 9p device is shut down the shell's
    # next page fault on its (9p-backed) binary kills PID 1 and panics the kernel.
    busybox poweroff -f 2>/dev/null
    echo o >/proc/sysrq-trigger
    sleep 30
}

setup_error() {
    printf '\nTENGE-GUEST-SETUP-ERROR=%s\n' "$*"
    finish 125
}

script="" root="/" nics="" vfio="" kernel="" hugepages=0 watchdog=0
for p in $(cat /proc/cmdline); do
    case "$p" in
    tenge.script=*) script="${p#tenge.script=}" ;;
    tenge.root=*) root="${p#tenge.root=}" ;;
    tenge.nics=*) nics="${p#tenge.nics=}" ;;
    tenge.vfio=*) vfio="${p#tenge.vfio=}" ;;
    tenge.kernel=*) kernel="${p#tenge.kernel=}" ;;
    tenge.hugepages=*) hugepages="${p#tenge.hugepages=}" ;;
    tenge.watchdog=*) watchdog="${p#tenge.watchdog=}" ;;
    esac
done

[ -n "$script" ] || setup_error "no tenge.script= on the kernel command line"
[ -r "$script" ] || setup_error "script $script is not readable in the guest"

ip link set lo up 2>/dev/null || busybox ifconfig lo 127.0.0.1 up ||
    setup_error "cannot bring lo up"

mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out /out ||
    setup_error "cannot mount the writable 9p share (mount_tag=out) at /out"

if [ "$hugepages" -gt 0 ] 2>/dev/null; then
    hp=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
    echo "$hugepages" >"$hp" || setup_error "cannot write $hp"
    got=$(cat "$hp")
    [ "$got" -ge "$hugepages" ] ||
        setup_error "asked for $hugepages 2 MiB hugepages, got $got: give the guest more memory"
    mkdir -p /dev/hugepages
    mount -t hugetlbfs -o pagesize=2M nodev /dev/hugepages ||
        setup_error "cannot mount hugetlbfs at /dev/hugepages"
elif [ "$hugepages" != 0 ]; then
    setup_error "tenge.hugepages=$hugepages is not a number"
fi

IFS_SAVED=$IFS
if [ -n "$vfio" ]; then
    # vfio-pci pulls in vfio; the type1 IOMMU backend is requested lazily, load it now so a
    # missing module shows up here rather than as an ioctl error in the driver under test.
    modprobe vfio-pci || setup_error "modprobe vfio-pci failed"
    modprobe vfio_iommu_type1 || setup_error "modprobe vfio_iommu_type1 failed"
    IFS=,
    for a in $vfio; do
        d=/sys/bus/pci/devices/$a
        [ -e "$d" ] || setup_error "no PCI device at $a to bind to vfio-pci"
        # virtio-net is claimed by virtio_pci (loaded in the initramfs for 9p); others may be
        # unbound already since nothing autoloads drivers here (no udev).
        if [ -e "$d/driver" ]; then
            echo "$a" >"$d/driver/unbind" || setup_error "cannot unbind $a from its driver"
        fi
        echo vfio-pci >"$d/driver_override" || setup_error "cannot set driver_override on $a"
        echo "$a" >/sys/bus/pci/drivers_probe
        drv=$(readlink "$d/driver")
        [ "${drv##*/}" = vfio-pci ] || setup_error "$a is bound to '${drv##*/}', not vfio-pci"
        group=$(readlink "$d/iommu_group")
        group=${group##*/}
        [ -n "$group" ] || setup_error "$a has no IOMMU group: is intel_iommu=on and the vIOMMU there?"
        # devtmpfs creates the node asynchronously.
        n=0
        while [ ! -e "/dev/vfio/$group" ] && [ $n -lt 50 ]; do
            sleep 0.1
            n=$((n + 1))
        done
        [ -e "/dev/vfio/$group" ] || setup_error "/dev/vfio/$group did not appear for $a"
    done
    IFS=$IFS_SAVED
fi

if [ -n "$kernel" ]; then
    IFS=,
    for a in $kernel; do
        d=/sys/bus/pci/devices/$a
        [ -e "$d" ] || setup_error "no PCI device at $a"
        # No udev: load the driver the way udev would. A virtio device's PCI function is
        # virtio_pci's; virtio_net binds to the virtio bus device below it.
        modprobe -q "$(cat "$d/modalias")" 2>/dev/null
        for v in "$d"/virtio*; do
            [ -e "$v/modalias" ] && modprobe -q "$(cat "$v/modalias")" 2>/dev/null
        done
    done
    IFS=$IFS_SAVED
fi

export TENGE_ROOT="$root" TENGE_OUT=/out TENGE_SCRIPT="$script"
TENGE_NICS=$(echo "$nics" | tr , ' ')
export TENGE_NICS

read -r up _ </proc/uptime
echo "tenge: guest ready after ${up}s; running $script"
# The watchdog's text is read now, while the 9p root answers: bash -c holds all of it.
wd=""
if [ "$watchdog" -gt 0 ] 2>/dev/null && [ -x /bin/bash ] && mkfifo /tmp/tenge-watchdog &&
    wd_code=$(cat "${0%/*}/watchdog.sh"); then
    bash -c "$wd_code" tenge-watchdog "$watchdog" /tmp/tenge-watchdog &
    wd=$!
fi
cd "$root" || cd /
/bin/sh "$script" </dev/null
code=$?
[ -z "$wd" ] || kill "$wd" 2>/dev/null
finish $code
