//! Device register maps and control-plane sequences.
//!
//! Everything here talks to a device only through the [`Mmio`] trait (32-bit register reads
//! and writes at byte offsets into a BAR; [`NarrowMmio`] adds 8- and 16-bit ones) and waits
//! only through the [`Delay`] trait, so every sequence runs unchanged against a VFIO-mapped BAR, against QEMU's emulated device, and in
//! unit tests against a scripted register file ([`mmio::RecordedRegs`], behind the `testing`
//! feature).
//!
//! Devices:
//! - [`e1000e`]: Intel 82574L (PCI 8086:10d3), QEMU's `-device e1000e`.
//! - [`igb`]: Intel 82576 (PCI 8086:10c9), QEMU's `-device igb`: advanced descriptors, 16
//!   queue pairs, RSS with UDP.
//! - [`virtio`]: the modern virtio-pci transport and virtio-net's configuration and control
//!   commands (PCI 1af4:1041), QEMU's `-device virtio-net-pci,disable-legacy=on,
//!   iommu_platform=on`. Its register blocks have 8- and 16-bit fields, reached through
//!   [`NarrowMmio`].
//!
//! The crate has no `unsafe`: mapping the BAR and the volatile accesses live in the driver.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod e1000e;
pub mod igb;
pub mod mmio;
pub mod virtio;

pub use mmio::{Delay, Mmio, NarrowMmio, StdDelay};
