//! Intel 82574L (PCI 8086:10d3), as in QEMU's `-device e1000e`: register map and
//! control-plane sequences.
//!
//! Bring-up, in order (82574 §4.6, software initialization sequence):
//! 1. [`reset`]: quiesce, global reset, wait for the NVM auto-load, mask interrupts, clear
//!    statistics.
//! 2. [`read_mac`]: the station address from RAL0/RAH0 or the NVM.
//! 3. [`setup_link`]: CTRL.SLU and wait for STATUS.LU.
//! 4. [`configure_rx`] / [`configure_tx`]: one queue each, extended RX descriptors, no
//!    interrupt moderation (the driver polls).
//! 5. The driver posts RX buffers and writes RDT, queues TX descriptors and writes TDT.
//! 6. [`HwStats::accumulate`] now and then; [`set_promisc`] and [`set_unicast_filter`]
//!    (receive filtering) whenever the application asks; [`disable`] on drop.
//!
//! Nothing here enables PCI bus mastering: that is the PCI command register, which the
//! driver sets through VFIO. QEMU drops every received frame while it is off
//! (`e1000x_rx_ready`, `hw/net/e1000x_common.c:37-49`).
//!
//! Timeouts are counted in microseconds requested from the [`Delay`]; all sequences are
//! bounded and report a timeout as an error instead of hanging.

use crate::mmio::{Delay, Mmio};

mod filter;
pub mod irq;
mod link;
mod nvm;
pub mod regs;
mod reset;
mod rings;
mod rss;
mod stats;
mod vlan;

pub use filter::{set_unicast_filter, unicast_filter, UNICAST_FILTER_ENTRIES};
pub use link::{
    link_status, setup_link, LinkStatus, DEFAULT_LINK_TIMEOUT_US, LINK_POLL_US, QEMU_AUTONEG_US,
};
pub use nvm::{
    is_valid_unicast, nvm_checksum_ok, nvm_read_word, program_mac, read_mac, NVM_POLL_US,
    NVM_TIMEOUT_US,
};
pub use reset::{
    disable, reset, AUTO_READ_TIMEOUT_US, MASTER_DISABLE_TIMEOUT_US, POST_RESET_SETTLE_US,
    RESET_POLL_US, RESET_QUIESCE_US, RESET_TIMEOUT_US,
};
pub use rings::{
    configure_rx, configure_rx_queue, configure_tx, configure_tx_queue, set_promisc, RxRingConfig,
    TxRingConfig, DESC_LEN, MAX_RING_DESCS, RING_DESC_MULTIPLE, RX_BUF_SIZES,
};
pub use rss::{configure_rss, disable_rss, RssSetup};
pub use stats::{clear_stats, HwStats};
pub use vlan::{set_vlan_strip, vlan_strip, ETHERTYPE_VLAN};

/// What can go wrong in a control-plane sequence. Each message says what to check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum E1000eError {
    /// CTRL.RST did not clear.
    #[error(
        "device reset did not complete: CTRL.RST still set {waited_us} us after it was written; \
         the device is hung or BAR0 is not an 82574's register BAR (check the PCI ID is \
         8086:10d3 and that the BAR is mapped), try a PCI function-level reset"
    )]
    ResetTimeout {
        /// Microseconds waited after setting CTRL.RST.
        waited_us: u32,
    },
    /// EECD.AUTO_RD did not set after reset.
    #[error(
        "the device did not finish loading its NVM after reset (EECD.AUTO_RD still 0 after \
         {waited_us} us): the NVM is blank, corrupt or absent, so the MAC address and \
         power-on configuration were not loaded; check the NVM image"
    )]
    AutoReadTimeout {
        /// Microseconds waited for EECD.AUTO_RD.
        waited_us: u32,
    },
    /// An EERD read never reported DONE.
    #[error(
        "NVM read of word {word:#06x} through EERD did not complete (EERD.DONE never set): \
         the word lies beyond the NVM (QEMU's holds 64 words, 0x00-0x3f) or the NVM is busy \
         or absent"
    )]
    NvmTimeout {
        /// The NVM word address.
        word: u16,
    },
    /// A word address EERD cannot express.
    #[error("NVM word {word:#06x} is beyond EERD's 14-bit address field (0x0000-0x3fff)")]
    NvmWordOutOfRange {
        /// The NVM word address.
        word: u16,
    },
    /// Neither RAL0/RAH0 nor the NVM hold a usable station address.
    #[error(
        "no valid unicast MAC address: RAL0/RAH0 hold none and NVM words 0-2 hold {mac:02x?} \
         (all zero, broadcast or multicast); give the device one (QEMU: -device \
         e1000e,mac=52:54:00:xx:xx:xx) or program one with program_mac"
    )]
    InvalidMac {
        /// What the NVM held.
        mac: [u8; 6],
    },
    /// More unicast addresses than the receive address table holds.
    #[error(
        "{count} unicast addresses do not fit the receive address table: it holds {max} \
         besides the station address (RAL/RAH entries 1-15); filter on fewer, or turn on \
         promiscuous mode and filter in software"
    )]
    TooManyUnicastAddresses {
        /// Addresses asked for.
        count: usize,
        /// Entries available.
        max: usize,
    },
    /// A ring configuration the device cannot take.
    #[error("invalid ring configuration: {reason}")]
    InvalidRingConfig {
        /// What is wrong and what would be accepted.
        reason: String,
    },
}

/// Reads a register to push posted writes out to the device (any read does; STATUS has
/// no side effects).
fn flush(regs: &impl Mmio) {
    let _ = regs.read32(regs::STATUS);
}

/// Polls `offset` until `done(value)`, reading first and then waiting `interval_us`
/// between reads, for at most `timeout_us` in total. Returns the value that satisfied
/// `done`, or the microseconds waited.
pub(crate) fn poll_until(
    regs: &impl Mmio,
    delay: &mut impl Delay,
    offset: u32,
    interval_us: u32,
    timeout_us: u32,
    done: impl Fn(u32) -> bool,
) -> Result<u32, u32> {
    let mut waited = 0u32;
    loop {
        let value = regs.read32(offset);
        if done(value) {
            return Ok(value);
        }
        if waited >= timeout_us {
            return Err(waited);
        }
        let step = interval_us.clamp(1, timeout_us - waited);
        delay.delay_us(step);
        waited += step;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmio::RecordedRegs;

    #[test]
    fn poll_reads_first_and_stops_at_the_timeout() {
        let r = RecordedRegs::new();
        let mut d = r.delay();
        assert_eq!(poll_until(&r, &mut d, 0x8, 30, 100, |v| v != 0), Err(100));
        // 100 us in steps of 30: 30, 30, 30, 10, with a read before each wait and one
        // after the last.
        assert_eq!(r.reads_of(0x8), 5);
        assert_eq!(r.elapsed_us(), 100);

        r.set(0x8, 1);
        assert_eq!(poll_until(&r, &mut d, 0x8, 30, 100, |v| v != 0), Ok(1));
        assert_eq!(poll_until(&r, &mut d, 0x8, 30, 0, |v| v == 0), Err(0));
    }

    #[test]
    fn errors_say_what_to_do() {
        let e = E1000eError::ResetTimeout { waited_us: 5 };
        assert!(e.to_string().contains("function-level reset"));
        let e = E1000eError::InvalidMac { mac: [0; 6] };
        assert!(e.to_string().contains("[00, 00, 00, 00, 00, 00]"));
        assert!(E1000eError::NvmTimeout { word: 0x40 }
            .to_string()
            .contains("0x0040"));
    }
}
