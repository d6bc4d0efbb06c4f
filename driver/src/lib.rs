//! tenge: a userspace poll-mode NIC driver on VFIO.
//!
//! An application opens a [`Port`] by PCI address and moves packets in bursts:
//!
//! ```no_run
//! use tenge::{Port, PortConfig, PacketBatch};
//! let mut port = Port::open("0000:00:03.0", &PortConfig::default())?;
//! let mut batch = PacketBatch::new(32);
//! loop {
//!     port.rx_burst(&mut batch);
//!     port.tx_burst(&mut batch); // echo everything back
//!     # break;
//! }
//! # Ok::<(), tenge::Error>(())
//! ```
//!
//! # Layout
//! - [`platform`]: how tenge reaches a device: [`platform::vfio`] (container, group, device,
//!   BAR mmap, config space), [`platform::pci`] (addresses, sysfs checks),
//!   [`platform::mmio`] (BAR registers, memory ordering against the device) and
//!   [`platform::dma`] (hugepage regions mapped through the IOMMU, typed descriptor rings).
//! - [`packet`]: packet buffers and their metadata ([`packet::mempool`]) and checksums
//!   ([`packet::csum`]).
//! - [`ring`]: the one ring engine every device runs on (batching, refill, completion,
//!   doorbells); a device supplies small descriptor ops.
//! - One folder per device: [`e1000e`] (the 82574's descriptor ops; its register-level
//!   control path is the `tenge-firmware-iface` crate), [`igb`] (the 82576's advanced
//!   descriptor ops), [`virtio`] (the transport and
//!   device bring-up, with [`virtio::split`], [`virtio::packed`] and [`virtio::ctrl`]).
//! - [`offload`]: offloads done in software: GSO (TSO's fallback) and LRO, over packet
//!   chains ([`offload::gso`], [`offload::lro`]).
//! - [`port`]: the application's API over all of them (open, burst, filters, counters).
//!
//! `unsafe` lives in three modules only: [`platform::mmio`] (BAR registers),
//! [`platform::dma`] and [`packet::mempool`] (DMA memory and packet buffer views) and
//! [`platform::vfio`] (ioctls).
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod e1000e;
pub mod error;
pub mod igb;
pub mod offload;
pub mod packet;
pub mod platform;
pub mod port;
pub mod ring;
#[cfg(feature = "smoltcp")]
pub mod smoltcp;
pub mod virtio;

pub use error::{DmaError, Error, VfioError};
pub use packet::mempool::{Mempool, MempoolCache, MempoolConfig, PacketBuf, PacketMeta};
pub use packet::ptype::{L3Type, L4Type, PacketType};
pub use packet::rss::{RssConfig, RssHashTypes, RssType, DEFAULT_RSS_KEY};
pub use platform::pci::PciAddress;
pub use port::caps::{OffloadCaps, OffloadSupport};
pub use port::{
    IrqStats, LinkEvent, Moderation, Port, PortConfig, PortStats, QueuePair, RxQueueHandle,
    TxQueueHandle,
};
pub use ring::{BadOffload, OffloadDrops, PacketBatch, RxStats, TxStats};
pub use tenge_firmware_iface::e1000e::LinkStatus;

#[cfg(test)]
mod tests {
    /// Packet buffers and ports move to other threads (a queue per core).
    #[test]
    fn data_path_types_are_send() {
        fn send<T: Send>() {}
        send::<crate::PacketBuf>();
        send::<crate::PacketBatch>();
        send::<crate::MempoolCache>();
        send::<crate::Port>();
        send::<crate::RxQueueHandle>();
        send::<crate::TxQueueHandle>();
        send::<crate::QueuePair>();
        send::<crate::ring::RxQueue<crate::e1000e::E1000eRx<crate::platform::mmio::Bar>>>();
        send::<crate::ring::TxQueue<crate::e1000e::E1000eTx<crate::platform::mmio::Bar>>>();
        send::<crate::ring::RxQueue<crate::igb::IgbRx<crate::platform::mmio::Bar>>>();
        send::<crate::ring::TxQueue<crate::igb::IgbTx<crate::platform::mmio::Bar>>>();
        send::<crate::ring::RxQueue<crate::virtio::VirtioRx<crate::platform::mmio::Bar>>>();
        send::<crate::ring::TxQueue<crate::virtio::VirtioTx<crate::platform::mmio::Bar>>>();
        send::<crate::ring::RxQueue<crate::virtio::packed::PackedRx<crate::platform::mmio::Bar>>>();
        send::<crate::ring::TxQueue<crate::virtio::packed::PackedTx<crate::platform::mmio::Bar>>>();
    }
}
