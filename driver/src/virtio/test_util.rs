//! Test doubles the split and packed ring unit tests share.

use std::sync::{Arc, Mutex};

use tenge_firmware_iface::{Mmio, NarrowMmio};

use crate::platform::dma::{DmaRegion, HugepagePolicy, IdentityMapper};

/// A notify structure that records doorbell writes (offset, value).
#[derive(Default)]
pub(super) struct Bells(Mutex<Vec<(u32, u16)>>);

impl Mmio for Bells {
    fn read32(&self, _off: u32) -> u32 {
        0
    }
    fn write32(&self, _off: u32, _v: u32) {}
}

impl NarrowMmio for Bells {
    fn read8(&self, _off: u32) -> u8 {
        0
    }
    fn read16(&self, _off: u32) -> u16 {
        0
    }
    fn write8(&self, _off: u32, _v: u8) {}
    fn write16(&self, off: u32, v: u16) {
        self.0.lock().unwrap().push((off, v));
    }
}

impl Bells {
    /// The writes since the last call, oldest first.
    pub(super) fn take(&self) -> Vec<(u32, u16)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// The RX and TX queues' doorbell offsets in the notify structure.
pub(super) const RX_BELL: u32 = 0x3000;
pub(super) const TX_BELL: u32 = 0x3004;

/// 64 KiB of identity-mapped DMA memory for rings and tables.
pub(super) fn region() -> Arc<DmaRegion> {
    Arc::new(DmaRegion::allocate(Arc::new(IdentityMapper), 1 << 16, HugepagePolicy::Never).unwrap())
}
