//! How tenge reaches a device from user space: VFIO (the device, its BARs and config
//! space, the IOMMU container), PCI addresses and sysfs checks, BAR register access, and
//! DMA memory mapped through the IOMMU. Nothing here knows a NIC.

pub mod barrier;
pub mod dma;
pub mod mmio;
pub mod pci;
pub mod sysinfo;
pub mod vfio;
