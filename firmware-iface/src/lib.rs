//! Device register maps and control-plane sequences.
//!
//! Everything here talks to a device only through the [`Mmio`] trait (32-bit register reads
//! and writes at byte offsets into BAR0) and waits only through the [`Delay`] trait, so every
//! sequence runs unchanged against a VFIO-mapped BAR, against QEMU's emulated device, and in
//! unit tests against a scripted register file ([`mmio::RecordedRegs`], behind the `testing`
//! feature).
//!
//! Devices:
//! - [`e1000e`]: Intel 82574L (PCI 8086:10d3), QEMU's `-device e1000e`.
//!
//! The crate has no `unsafe`: mapping the BAR and the volatile accesses live in the driver.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod e1000e;
pub mod mmio;

pub use mmio::{Delay, Mmio, NarrowMmio, StdDelay};
