//! MSI-X on the 82576 (82576 §7.3, interrupts; §8.8, the interrupt registers), in the
//! manner of [`crate::e1000e::irq`]: GPIE.MSIX_MODE makes EICR a bit per vector; IVAR puts
//! RX and TX queue q on vector q, IVAR_MISC the other causes (link) on the vector after the
//! queues'; EIAC clears a vector's EICR bit once its message is sent, so the next event
//! interrupts again.
//!
//! QEMU's model (`hw/net/igb_core.c`, `igb_raise_interrupts`) interrupts on a rising
//! `EICR & EIMS` and does not auto-mask (EIAM) on its own, so a queue is armed by clearing
//! its EICR bit and setting it in EIMS, and disarmed through EIMC after it woke.

use super::regs::*;
use crate::e1000e::{link_status, LinkStatus};
use crate::mmio::Mmio;

/// MSI-X vectors of the 82576's physical function (QEMU `IGB_MSIX_VEC_NUM`).
pub const MSIX_VECTORS: u32 = 10;

/// The vector of the other causes on a port of `queues` queue pairs.
pub const fn other_vector(queues: u32) -> u32 {
    queues
}

/// Byte `n` of the IVAR array (IVAR0 + n / 4, byte n % 4) holding RX queue `q`.
const fn ivar_rx_entry(q: u32) -> u32 {
    if q < 8 {
        q * 4
    } else {
        (q - 8) * 4 + 2
    }
}

/// The IVAR register values (IVAR0 upwards) for `queues` queue pairs: RX and TX queue q on
/// vector q.
pub fn ivar_values(queues: u32) -> [u32; 8] {
    let mut v = [0u32; 8];
    for q in 0..queues.min(16) {
        let rx = ivar_rx_entry(q);
        let tx = rx + 1;
        for (n, vector) in [(rx, q), (tx, q)] {
            v[(n / 4) as usize] |= (vector | IVAR_VALID) << (8 * (n % 4));
        }
    }
    v
}

/// Sets MSI-X mode up: every cause masked, GPIE.MSIX_MODE (before EIAC, which QEMU takes
/// only in that mode), queue and other-cause vectors, auto-clear of every vector's EICR
/// bit, latched causes dropped, and link status changes enabled on the other vector.
pub fn configure_msix(regs: &impl Mmio, queues: u32) {
    regs.write32(IMC, IMC_ALL);
    regs.write32(EIMC, EIMC_ALL);
    regs.write32(GPIE, GPIE_MSIX_MODE | GPIE_PBA);
    for (i, v) in ivar_values(queues).iter().enumerate() {
        regs.write32(IVAR0 + 4 * i as u32, *v);
    }
    let other = other_vector(queues);
    regs.write32(IVAR_MISC, (other | IVAR_VALID) << 8);
    regs.write32(EIAC, (1u32 << (other + 1)) - 1);
    regs.write32(ICR, IMC_ALL);
    regs.write32(EICR, EIMC_ALL);
    regs.write32(IMS, ICR_LSC);
    regs.write32(EIMS, 1 << other);
}

/// Arms RX queue `q`'s vector (q): drops its latched EICR bit, then unmasks it. Poll the
/// ring once more afterwards.
pub fn arm_rx(regs: &impl Mmio, q: u32) {
    regs.write32(EICR, 1 << q);
    regs.write32(EIMS, 1 << q);
}

/// Masks RX queue `q`'s vector.
pub fn disarm_rx(regs: &impl Mmio, q: u32) {
    regs.write32(EIMC, 1 << q);
}

/// Acknowledges a link status change (ICR.LSC, write 1 to clear: QEMU raises the other
/// vector only on a new cause) and reads the link.
pub fn ack_other(regs: &impl Mmio) -> LinkStatus {
    regs.write32(ICR, ICR_LSC);
    link_status(regs)
}

/// EITR for `us` microseconds (bits 14:2, 1 us units; 0: no throttling).
pub fn eitr_value(us: u32) -> u32 {
    (us.min(0x1FFF)) << 2
}

/// Sets vector `vector`'s throttling interval to `us` microseconds.
pub fn set_eitr(regs: &impl Mmio, vector: u32, us: u32) {
    regs.write32(EITR(vector), eitr_value(us));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmio::RecordedRegs;

    #[test]
    fn ivar_entries_as_qemu_reads_them() {
        let v = ivar_values(2);
        // RX0 byte 0, TX0 byte 1 of IVAR0; RX1/TX1 bytes 0/1 of IVAR1.
        assert_eq!(v[0], 0x8080);
        assert_eq!(v[1], 0x8181);
        let v = ivar_values(16);
        // Queue 9: RX in byte 2, TX in byte 3 of IVAR1, next to queue 1.
        assert_eq!(v[1], 0x8989_8181);
    }

    #[test]
    fn msix_mode_before_auto_clear_and_link_on_the_other_vector() {
        let r = RecordedRegs::new();
        configure_msix(&r, 4);
        let w = r.writes();
        let pos = |off| w.iter().position(|(o, _)| *o == off).unwrap();
        assert!(pos(GPIE) < pos(EIAC));
        assert_eq!(r.last_write(IVAR_MISC), Some((4 | 0x80) << 8));
        assert_eq!(r.last_write(EIAC), Some(0x1f));
        assert_eq!(r.last_write(EIMS), Some(1 << 4));
        assert_eq!(r.last_write(IMS), Some(ICR_LSC));
        arm_rx(&r, 3);
        assert_eq!(r.writes()[w.len()..], [(EICR, 8), (EIMS, 8)]);
    }

    #[test]
    fn eitr_interval_in_bits_14_2() {
        assert_eq!(eitr_value(0), 0);
        assert_eq!(eitr_value(100), 400);
        assert_eq!(eitr_value(1_000_000), 0x7FFC);
    }
}
