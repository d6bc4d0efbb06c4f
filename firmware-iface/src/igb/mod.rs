//! Intel 82576 (PCI 8086:10c9), as in QEMU's `-device igb`: register map and control-plane
//! sequences.
//!
//! Bring-up, in order (82576 §4.5, software initialization):
//! 1. [`reset`]: quiesce, device reset, mask interrupts, clear statistics.
//! 2. [`read_mac`]: the station address from RAL0/RAH0 or the NVM (the 82576 keeps EERD and
//!    the receive address table where the 82574 has them, so the e1000e sequence serves).
//! 3. [`setup_link`]: CTRL.SLU, a PHY autonegotiation restart when the link is down (QEMU's
//!    igb comes out of a device reset with the link down until one), and the wait for
//!    STATUS.LU.
//! 4. [`configure_rx`], then [`configure_rx_queue`] per queue (advanced one-buffer
//!    descriptors, RXDCTL.ENABLE and its wait), then [`enable_rx`]; [`configure_tx_queue`]
//!    per queue, then [`enable_tx`]. Optionally [`configure_rss`].
//! 5. The driver posts RX buffers and writes RDT, queues TX descriptors and writes TDT.
//! 6. [`HwStats::accumulate`], [`set_promisc`], [`set_unicast_filter`]; [`disable`] on drop.
//!
//! Statistics, the unicast filter, the link status decoding, the MAC read and VLAN
//! stripping (CTRL.VME, VET) are the e1000e ones: the 82576 keeps those registers and bits
//! at the 8254x offsets (82576 §8.1.3 register summary).

use crate::e1000e::{poll_until, E1000eError};
use crate::mmio::{Delay, Mmio};

pub mod irq;
mod link;
pub mod regs;
mod reset;
mod rings;
mod rss;

pub use crate::e1000e::{
    clear_stats, link_status, read_mac, set_unicast_filter, set_vlan_strip, unicast_filter,
    vlan_strip, HwStats, LinkStatus, ETHERTYPE_VLAN, UNICAST_FILTER_ENTRIES,
};
pub use link::{setup_link, AUTONEG_RESTART_WAIT_US, DEFAULT_LINK_TIMEOUT_US, LINK_POLL_US};
pub use reset::{
    disable, reset, AUTO_READ_WAIT_US, MASTER_DISABLE_TIMEOUT_US, RESET_POLL_US, RESET_QUIESCE_US,
    RESET_TIMEOUT_US,
};
pub use rings::{
    configure_rx, configure_rx_queue, configure_tx_queue, disable_rx_queue, enable_rx, enable_tx,
    rctl, set_promisc, RxConfig, RxQueueConfig, TxQueueConfig, DESC_LEN, MAX_RING_DESCS,
    QUEUE_ENABLE_TIMEOUT_US, RING_ALIGN, RING_DESC_MULTIPLE,
};
pub use rss::{configure_rss, disable_rss, RssSetup};

/// What can go wrong in an 82576 control-plane sequence. Each message says what to check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IgbError {
    /// CTRL.RST did not clear.
    #[error(
        "igb device reset did not complete: CTRL.RST still set {waited_us} us after it was \
         written; the device is hung or BAR0 is not an 82576's register BAR (check the PCI \
         ID is 8086:10c9), try a PCI function-level reset"
    )]
    ResetTimeout {
        /// Microseconds waited after setting CTRL.RST.
        waited_us: u32,
    },
    /// A PHY register access through MDIC failed.
    #[error(
        "PHY register {reg} access through MDIC failed ({what}): the internal PHY at MDIO \
         address 1 did not answer; reset the device and retry"
    )]
    PhyAccess {
        /// PHY register number.
        reg: u32,
        /// "error bit set" or "timed out".
        what: &'static str,
    },
    /// RXDCTL.ENABLE or TXDCTL.ENABLE did not read back set.
    #[error(
        "{dir} queue {queue} did not report ENABLE in {reg} {waited_us} us after it was \
         set: the queue's ring is not usable; check its ring registers and that the device \
         has {max} queues",
        max = regs::QUEUES
    )]
    QueueEnableTimeout {
        /// "RX" or "TX".
        dir: &'static str,
        /// "RXDCTL" or "TXDCTL".
        reg: &'static str,
        /// The queue.
        queue: u32,
        /// Microseconds waited.
        waited_us: u32,
    },
    /// A ring or queue configuration the device cannot take.
    #[error("invalid igb ring configuration: {reason}")]
    InvalidRingConfig {
        /// What is wrong and what would be accepted.
        reason: String,
    },
    /// An error from a sequence shared with the 82574 (MAC, NVM, unicast filter).
    #[error(transparent)]
    Shared(#[from] E1000eError),
}

/// Reads a register to push posted writes out to the device (STATUS has no side effects).
fn flush(regs: &impl Mmio) {
    let _ = regs.read32(regs::STATUS);
}

/// Polls until `offset` has all of `mask` set (`set`) or clear (`!set`); the microseconds
/// waited on a timeout.
fn wait_bits(
    regs: &impl Mmio,
    delay: &mut impl Delay,
    offset: u32,
    mask: u32,
    set: bool,
    interval_us: u32,
    timeout_us: u32,
) -> Result<u32, u32> {
    poll_until(regs, delay, offset, interval_us, timeout_us, |v| {
        (v & mask == mask) == set
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_to_do() {
        let e = IgbError::QueueEnableTimeout {
            dir: "RX",
            reg: "RXDCTL",
            queue: 3,
            waited_us: 10,
        };
        assert!(e.to_string().contains("RX queue 3"));
        assert!(e.to_string().contains("16 queues"));
        assert!(IgbError::ResetTimeout { waited_us: 1 }
            .to_string()
            .contains("8086:10c9"));
        let shared: IgbError = E1000eError::InvalidMac { mac: [0; 6] }.into();
        assert!(shared.to_string().contains("no valid unicast MAC"));
    }

    #[test]
    fn mac_comes_from_receive_address_0_as_qemu_resets_it() {
        use crate::mmio::RecordedRegs;
        let mac = [0x52, 0x54, 0x00, 0xab, 0xcd, 0xef];
        let r = RecordedRegs::igb_qemu(mac);
        reset(&r, &mut r.delay()).unwrap();
        assert_eq!(read_mac(&r, &mut r.delay()).unwrap(), mac);
    }
}
