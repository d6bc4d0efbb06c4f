//! MSI-X on the 82574 (82574 §7.4, interrupts; §10.2.4, the interrupt registers): which
//! cause goes to which vector (IVAR), which causes the device clears and masks by itself
//! once their vector fires (EIAC), and the per-queue arm/disarm a sleeping driver needs.
//!
//! The scheme tenge uses:
//! - RX queue q and TX queue q share vector q; the "other" causes (link status change
//!   among them) get the vector after the queues'.
//! - EIAC holds the four queue causes: when a queue's vector fires, the device clears the
//!   cause in ICR and, with CTRL_EXT.IAME clear, the cause's IMS bit too (82574 §7.4.5,
//!   QEMU `e1000e_msix_notify_one`). An armed queue therefore interrupts exactly once; a
//!   busy-polling queue is never interrupted.
//! - The other causes stay enabled (IMS.OTHER | IMS.LSC) for the port's life; the control
//!   path acknowledges them by writing ICR.OTHER, which on QEMU's model also clears the
//!   causes behind it (`e1000e_set_icr`), so the next change interrupts again.

use super::link::{link_status, LinkStatus};
use super::regs::*;
use crate::mmio::Mmio;

/// IVAR: an entry's "valid" bit (bit 3 of each 4-bit field; 82574 §10.2.4, IVAR).
pub const IVAR_VALID: u32 = 1 << 3;
/// IVAR field of RX queue 0.
pub const IVAR_RXQ0_SHIFT: u32 = 0;
/// IVAR field of RX queue 1.
pub const IVAR_RXQ1_SHIFT: u32 = 4;
/// IVAR field of TX queue 0.
pub const IVAR_TXQ0_SHIFT: u32 = 8;
/// IVAR field of TX queue 1.
pub const IVAR_TXQ1_SHIFT: u32 = 12;
/// IVAR field of the other causes.
pub const IVAR_OTHER_SHIFT: u32 = 16;
/// MSI-X vectors the 82574 has (QEMU `E1000E_MSIX_VEC_NUM`).
pub const MSIX_VECTORS: u32 = 5;
/// The queue causes the device auto-clears and auto-masks (EIAC).
pub const QUEUE_CAUSES: u32 = ICR_RXQ0 | ICR_RXQ1 | ICR_TXQ0 | ICR_TXQ1;
/// The "other" causes enabled for the port's life: link status change, through OTHER.
pub const OTHER_CAUSES: u32 = ICR_OTHER | ICR_LSC;

/// RX queue `q`'s cause bit (ICR/IMS/IMC/EIAC).
pub const fn rx_cause(q: u32) -> u32 {
    if q == 0 {
        ICR_RXQ0
    } else {
        ICR_RXQ1
    }
}

/// The vector of the other causes on a port of `queues` queue pairs.
pub const fn other_vector(queues: u32) -> u32 {
    queues
}

/// IVAR for `queues` queue pairs (1 or 2): queue pair q on vector q, other causes after.
pub fn ivar_value(queues: u32) -> u32 {
    let entry = |vector: u32, shift: u32| (vector | IVAR_VALID) << shift;
    let mut v = entry(0, IVAR_RXQ0_SHIFT) | entry(0, IVAR_TXQ0_SHIFT);
    if queues > 1 {
        v |= entry(1, IVAR_RXQ1_SHIFT) | entry(1, IVAR_TXQ1_SHIFT);
    }
    v | entry(other_vector(queues), IVAR_OTHER_SHIFT)
}

/// Routes the causes to MSI-X vectors (IVAR), sets the queue causes to auto-clear and
/// auto-mask (EIAC, CTRL_EXT.IAME clear), masks every queue cause, drops what is latched,
/// and enables the other causes. MSI-X must already be on (through VFIO) for the device to
/// use the vectors; until then QEMU keeps the causes in ICR.
pub fn configure_msix(regs: &impl Mmio, queues: u32) {
    regs.write32(IMC, IMC_ALL);
    let ext = regs.read32(CTRL_EXT);
    regs.write32(CTRL_EXT, ext & !CTRL_EXT_IAME);
    regs.write32(IVAR, ivar_value(queues));
    regs.write32(EIAC, QUEUE_CAUSES);
    regs.write32(ICR, IMC_ALL);
    regs.write32(IMS, OTHER_CAUSES);
}

/// Arms RX queue `q`'s interrupt: drops a cause latched while the queue was polled (it
/// would fire at once for frames already taken), then unmasks it. The caller polls the
/// ring once more afterwards: a frame that landed between its last poll and this write
/// latched the cause and is taken by that poll (and its interrupt wakes nobody who waits).
pub fn arm_rx(regs: &impl Mmio, q: u32) {
    let cause = rx_cause(q);
    regs.write32(ICR, cause);
    regs.write32(IMS, cause);
}

/// Masks RX queue `q`'s interrupt (the queue polls again).
pub fn disarm_rx(regs: &impl Mmio, q: u32) {
    regs.write32(IMC, rx_cause(q));
}

/// Acknowledges the other causes (link status change among them) and reads the link.
/// Acknowledging first: a change after it interrupts again, and the state read is at
/// least as new as the interrupt.
pub fn ack_other(regs: &impl Mmio) -> LinkStatus {
    regs.write32(ICR, OTHER_CAUSES);
    link_status(regs)
}

/// The interrupt throttling interval register value (256 ns units, 82574 §10.2.4.2) for
/// `us` microseconds, 0 (no throttling) to 65535 units.
pub fn itr_units(us: u32) -> u32 {
    (u64::from(us) * 1000 / 256).min(0xffff) as u32
}

/// Sets MSI-X vector `vector`'s throttling interval (EITR) to `us` microseconds.
pub fn set_eitr(regs: &impl Mmio, vector: u32, us: u32) {
    regs.write32(EITR(vector), itr_units(us));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmio::RecordedRegs;

    #[test]
    fn ivar_routes_queue_pairs_and_other() {
        // One pair: RX0 and TX0 on vector 0, other on 1.
        assert_eq!(ivar_value(1), 0x8 | (0x8 << 8) | (0x9 << 16));
        // Two pairs: RX1/TX1 on 1, other on 2.
        assert_eq!(
            ivar_value(2),
            0x8 | (0x9 << 4) | (0x8 << 8) | (0x9 << 12) | (0xa << 16)
        );
    }

    #[test]
    fn configure_masks_then_routes_then_enables_other() {
        let r = RecordedRegs::new().with(CTRL_EXT, CTRL_EXT_IAME | 1);
        configure_msix(&r, 2);
        assert_eq!(r.get(CTRL_EXT), 1);
        assert_eq!(r.last_write(IVAR), Some(ivar_value(2)));
        assert_eq!(r.last_write(EIAC), Some(QUEUE_CAUSES));
        assert_eq!(r.writes_to(IMC), vec![IMC_ALL]);
        assert_eq!(r.last_write(IMS), Some(ICR_OTHER | ICR_LSC));
    }

    #[test]
    fn arm_clears_the_latched_cause_before_unmasking() {
        let r = RecordedRegs::new();
        arm_rx(&r, 1);
        assert_eq!(r.writes(), vec![(ICR, ICR_RXQ1), (IMS, ICR_RXQ1)]);
        disarm_rx(&r, 0);
        assert_eq!(r.last_write(IMC), Some(ICR_RXQ0));
    }

    #[test]
    fn itr_units_are_256_ns() {
        assert_eq!(itr_units(0), 0);
        assert_eq!(itr_units(128), 500);
        assert_eq!(itr_units(1_000_000), 0xffff);
    }
}
