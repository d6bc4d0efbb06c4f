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
//! `unsafe` lives in three modules only: [`mmio`] (BAR registers), [`dma`] and [`mempool`]
//! (DMA memory and packet buffer views) and [`vfio`] (ioctls).
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod csum;
pub mod dma;
pub mod e1000e;
pub mod error;
pub mod mempool;
pub mod mmio;
pub mod pci;
pub mod port;
pub mod ring;
pub mod soft_filter;
pub mod sysinfo;
pub mod vfio;
pub mod virtio;
pub mod virtio_ctrl;
pub mod virtio_packed;

pub use error::{DmaError, Error, VfioError};
pub use mempool::{Mempool, MempoolCache, MempoolConfig, PacketBuf, PacketMeta};
pub use pci::PciAddress;
pub use port::{Port, PortConfig, PortStats};
pub use ring::{PacketBatch, RxStats, TxStats};

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
        send::<crate::ring::RxQueue<crate::e1000e::E1000eRx<crate::mmio::Bar>>>();
        send::<crate::ring::TxQueue<crate::e1000e::E1000eTx<crate::mmio::Bar>>>();
        send::<crate::ring::RxQueue<crate::virtio::VirtioRx<crate::mmio::Bar>>>();
        send::<crate::ring::TxQueue<crate::virtio::VirtioTx<crate::mmio::Bar>>>();
        send::<crate::ring::RxQueue<crate::virtio_packed::PackedRx<crate::mmio::Bar>>>();
        send::<crate::ring::TxQueue<crate::virtio_packed::PackedTx<crate::mmio::Bar>>>();
    }
}
