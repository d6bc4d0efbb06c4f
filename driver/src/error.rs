//! Error types. Each message says what went wrong and what to do about it.

use std::io;

use crate::platform::pci::PciAddress;

/// Opening a device through VFIO.
#[derive(Debug, thiserror::Error)]
pub enum VfioError {
    /// The string is not a PCI address.
    #[error("'{0}' is not a PCI address: write it as DDDD:BB:DD.F, e.g. 0000:00:03.0")]
    BadPciAddress(String),
    /// Nothing at that address.
    #[error("no PCI device at {addr}: list devices with `lspci -D` (or ls /sys/bus/pci/devices)")]
    NoSuchDevice {
        /// The address asked for.
        addr: PciAddress,
    },
    /// The device is bound to another driver, or to none.
    #[error(
        "{addr} is {}, not vfio-pci: bind it with `modprobe vfio-pci; {}echo vfio-pci > /sys/bus/pci/devices/{addr}/driver_override; echo {addr} > /sys/bus/pci/drivers_probe`",
        match driver { Some(d) => format!("bound to {d}"), None => "bound to no driver".to_string() },
        match driver { Some(_) => format!("echo {addr} > /sys/bus/pci/devices/{addr}/driver/unbind; "), None => String::new() }
    )]
    NotBoundToVfio {
        /// The device.
        addr: PciAddress,
        /// The driver it is bound to, if any.
        driver: Option<String>,
    },
    /// The kernel put the device in no IOMMU group.
    #[error("{addr} has no IOMMU group: enable an IOMMU (intel_iommu=on or amd_iommu=on on the kernel command line; in QEMU add `-device intel-iommu`)")]
    NoIommuGroup {
        /// The device.
        addr: PciAddress,
    },
    /// Some device that shares the IOMMU group is bound to a host driver.
    #[error("IOMMU group {group} is not viable: every device in it must be bound to vfio-pci or to no driver; unbind these: {devices}")]
    GroupNotViable {
        /// The group number.
        group: u32,
        /// The devices that make it not viable, with their drivers.
        devices: String,
    },
    /// `/dev/vfio/vfio` is missing or unusable.
    #[error("cannot open the VFIO container /dev/vfio/vfio ({0}): load the module with `modprobe vfio-pci` and run as root (or give this user the /dev/vfio nodes)")]
    Container(#[source] vfio_ioctls::VfioError),
    /// vfio-ioctls refused to open the device.
    #[error("VFIO could not open {addr}: {source}")]
    OpenDevice {
        /// The device.
        addr: PciAddress,
        /// What vfio-ioctls said.
        #[source]
        source: vfio_ioctls::VfioError,
    },
    /// A VFIO ioctl or a read/write of a device region failed.
    #[error("VFIO {op} on {addr} failed: {source}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// The device.
        addr: PciAddress,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Setting up interrupts failed.
    #[error("interrupts of {addr}: {what} failed: {source}; raise the process's open-file limit (ulimit -n) or open the port without interrupts")]
    Irq {
        /// The device.
        addr: PciAddress,
        /// What was attempted.
        what: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A BAR the driver needs is absent or cannot be mapped.
    #[error("BAR{bar} of {addr} is {why}")]
    Bar {
        /// The device.
        addr: PciAddress,
        /// BAR index.
        bar: u32,
        /// What is wrong with it.
        why: String,
    },
    /// The IOMMU reported no IOVA range large enough.
    #[error("the IOMMU has no free IOVA range of {size} bytes (ranges: {ranges}); give the vIOMMU more address bits (QEMU: -device intel-iommu,aw-bits=48)")]
    NoIova {
        /// Bytes asked for.
        size: u64,
        /// The ranges the IOMMU reported.
        ranges: String,
    },
}

/// Allocating and mapping DMA memory.
#[derive(Debug, thiserror::Error)]
pub enum DmaError {
    /// mmap failed even with 4 KiB pages.
    #[error("cannot allocate {size} bytes of DMA memory: {source}")]
    Alloc {
        /// Bytes asked for.
        size: usize,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Hugepages were required but none are free.
    #[error("no free 2 MiB hugepages for {size} bytes of DMA memory ({source}): reserve some with `echo 64 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages`, or allow the 4 KiB fallback")]
    NoHugepages {
        /// Bytes asked for.
        size: usize,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The IOMMU refused the mapping.
    #[error("IOMMU map of {size} bytes at IOVA {iova:#x} failed: {reason}")]
    IommuMap {
        /// IOVA asked for.
        iova: u64,
        /// Bytes asked for.
        size: usize,
        /// What the kernel said.
        reason: String,
    },
    /// Out of IOVA space.
    #[error(transparent)]
    Iova(#[from] VfioError),
}

/// Anything a port can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The device is being removed (hot-unplug): the kernel asked tenge to release it.
    #[error("{addr} is being removed (the kernel asked to release it, e.g. a hot-unplug): drop the port to let the removal finish; nothing more can be done on it")]
    DeviceRemoved {
        /// The device.
        addr: PciAddress,
    },
    /// Opening the device through VFIO.
    #[error(transparent)]
    Vfio(#[from] VfioError),
    /// DMA memory.
    #[error(transparent)]
    Dma(#[from] DmaError),
    /// The device's control plane (reset, NVM, link).
    #[error("{addr}: {source}")]
    E1000e {
        /// The device.
        addr: PciAddress,
        /// The failed sequence.
        #[source]
        source: tenge_firmware_iface::e1000e::E1000eError,
    },
    /// The 82576's control plane (reset, link, queue enable).
    #[error("{addr}: {source}")]
    Igb {
        /// The device.
        addr: PciAddress,
        /// The failed sequence.
        #[source]
        source: tenge_firmware_iface::igb::IgbError,
    },
    /// The virtio transport or device configuration (capabilities, features, queues).
    #[error("{addr}: {source}")]
    Virtio {
        /// The device.
        addr: PciAddress,
        /// The failed step.
        #[source]
        source: tenge_firmware_iface::virtio::VirtioError,
    },
    /// No driver in tenge for this device.
    #[error("{addr} is {vendor:04x}:{device:04x}, which tenge does not drive (it drives 8086:10d3 e1000e, 8086:10c9 igb and 1af4:1041 modern virtio-net; a transitional virtio-net 1af4:1000 becomes 1af4:1041 with QEMU's disable-legacy=on)")]
    Unsupported {
        /// The device.
        addr: PciAddress,
        /// PCI vendor ID.
        vendor: u16,
        /// PCI device ID.
        device: u16,
    },
    /// A configuration value out of range.
    #[error("invalid port configuration: {0}")]
    Config(String),
    /// A receive filter change the device cannot make.
    #[error(
        "{addr}: cannot {request}: the virtio-net device did not negotiate \
         VIRTIO_NET_F_CTRL_RX (negotiated: {}), so tenge cannot program its receive filter \
         (virtio 1.2 §5.1.6.5.1) and it receives what it always does (QEMU's virtio-net: \
         every frame); start the device with its control queue and RX filtering \
         (QEMU: ctrl_vq=on,ctrl_rx=on, the default), or keep promiscuous mode on and filter \
         in software",
        tenge_firmware_iface::virtio::FeatureNames(*features)
    )]
    RxFilterUnsupported {
        /// The device.
        addr: PciAddress,
        /// What was asked, e.g. "turn promiscuous mode off".
        request: String,
        /// The negotiated features.
        features: u64,
    },
    /// A virtio-net control queue command failed.
    #[error("{addr}: virtio-net control queue: {source}")]
    VirtioCtrl {
        /// The device.
        addr: PciAddress,
        /// What went wrong.
        #[source]
        source: crate::virtio::ctrl::CtrlError,
    },
    /// A unicast filter the port cannot take.
    #[error("{addr}: unicast filter not set: {reason}")]
    UnicastFilter {
        /// The device.
        addr: PciAddress,
        /// What is wrong with it and what would be accepted.
        reason: String,
    },
    /// An RSS configuration the port cannot apply.
    #[error("{addr}: cannot apply the RSS configuration: {reason}")]
    Rss {
        /// The device.
        addr: PciAddress,
        /// What is wrong with it and what the device takes.
        reason: String,
    },
}
