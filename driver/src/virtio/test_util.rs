//! Test doubles the split and packed ring unit tests share.

use std::sync::Arc;

use tenge_firmware_iface::mmio::{Access, RecordedRegs};

use crate::platform::dma::{DmaRegion, HugepagePolicy, IdentityMapper};

/// The notify structure the tests' doorbells write into: the project's recording register
/// file (nothing reads it back).
pub(super) type Bells = RecordedRegs;

/// The doorbell writes a [`Bells`] took.
pub(super) trait DoorbellLog {
    /// The writes since the last call as (offset, value), oldest first.
    fn take(&self) -> Vec<(u32, u16)>;
}

impl DoorbellLog for RecordedRegs {
    fn take(&self) -> Vec<(u32, u16)> {
        self.take_log()
            .into_iter()
            .filter_map(|a| match a {
                // A doorbell is a 16-bit write, logged zero-extended.
                Access::Write(off, v) => Some((off, v as u16)),
                Access::Read(..) => None,
            })
            .collect()
    }
}

/// The RX and TX queues' doorbell offsets in the notify structure.
pub(super) const RX_BELL: u32 = 0x3000;
pub(super) const TX_BELL: u32 = 0x3004;

/// 64 KiB of identity-mapped DMA memory for rings and tables.
pub(super) fn region() -> Arc<DmaRegion> {
    Arc::new(DmaRegion::allocate(Arc::new(IdentityMapper), 1 << 16, HugepagePolicy::Never).unwrap())
}
