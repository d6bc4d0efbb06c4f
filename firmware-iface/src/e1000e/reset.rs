//! Global reset and shutdown.

use super::regs::*;
use super::{flush, poll_until, stats::clear_stats, E1000eError};
use crate::mmio::{Delay, Mmio};

/// Wait after stopping RX/TX before the reset, for DMA already under way to drain.
pub const RESET_QUIESCE_US: u32 = 10_000;
/// Poll interval while waiting for GIO master disable, CTRL.RST and EECD.AUTO_RD.
pub const RESET_POLL_US: u32 = 100;
/// How long to wait for STATUS.GIO_MASTER_ENABLE to clear before resetting anyway.
pub const MASTER_DISABLE_TIMEOUT_US: u32 = 80_000;
/// How long to wait for CTRL.RST to clear.
pub const RESET_TIMEOUT_US: u32 = 100_000;
/// How long to wait for EECD.AUTO_RD after the reset.
pub const AUTO_READ_TIMEOUT_US: u32 = 10_000;
/// Wait after the NVM auto-load for the PHY to take its configuration, before the PHY or
/// the NVM is touched (the 82574's PHY loads its settings after EECD.AUTO_RD sets).
pub const POST_RESET_SETTLE_US: u32 = 25_000;

/// Resets the device to its power-on state (all but PCI configuration space) and leaves it
/// quiet: interrupts masked, RX and TX off, statistics zero.
///
/// 1. Mask every interrupt (IMC), stop the receiver (RCTL = 0) and the transmitter
///    (TCTL = PSP only), flush, and wait [`RESET_QUIESCE_US`].
/// 2. Set CTRL.GIO_MASTER_DISABLE (82574 §10.2.2.1: blocks new PCIe master requests) and
///    wait for STATUS.GIO_MASTER_ENABLE to clear, so no DMA is in flight when the reset
///    hits; Linux's e1000e does the same before its reset. A timeout here is logged, not
///    fatal: the reset follows. QEMU clears the status bit at once (`e1000e_get_status`,
///    `hw/net/e1000e_core.c:2656-2662`).
/// 3. Set CTRL.RST (82574 §10.2.2.1: global reset, self-clearing) and poll until it reads
///    0. QEMU resets synchronously inside the MMIO write, so the first read already shows
///    it clear (`e1000e_set_ctrl`, `hw/net/e1000e_core.c:1816-1841`).
/// 4. Wait for EECD.AUTO_RD (the NVM reload), then [`POST_RESET_SETTLE_US`] for the PHY.
/// 5. Mask every interrupt again and read ICR to drop causes latched during the reset.
/// 6. Read every statistics counter to zero them ([`clear_stats`]); the statistics
///    registers are read-to-clear.
///
/// # Errors
/// [`E1000eError::ResetTimeout`] if CTRL.RST does not clear within [`RESET_TIMEOUT_US`];
/// [`E1000eError::AutoReadTimeout`] if EECD.AUTO_RD does not set within
/// [`AUTO_READ_TIMEOUT_US`].
pub fn reset(regs: &impl Mmio, delay: &mut impl Delay) -> Result<(), E1000eError> {
    regs.write32(IMC, IMC_ALL);
    regs.write32(RCTL, 0);
    regs.write32(TCTL, TCTL_PSP);
    flush(regs);
    delay.delay_us(RESET_QUIESCE_US);

    let ctrl = regs.read32(CTRL);
    regs.write32(CTRL, ctrl | CTRL_GIO_MASTER_DISABLE);
    if let Err(waited) = poll_until(
        regs,
        delay,
        STATUS,
        RESET_POLL_US,
        MASTER_DISABLE_TIMEOUT_US,
        |s| s & STATUS_GIO_MASTER_ENABLE == 0,
    ) {
        log::warn!(
            "e1000e: PCIe master requests still pending {waited} us after GIO master \
             disable; resetting anyway"
        );
    }

    let ctrl = regs.read32(CTRL);
    log::debug!("e1000e: global reset (CTRL {ctrl:#010x})");
    regs.write32(CTRL, ctrl | CTRL_RST);
    poll_until(regs, delay, CTRL, RESET_POLL_US, RESET_TIMEOUT_US, |c| {
        c & CTRL_RST == 0
    })
    .map_err(|waited_us| E1000eError::ResetTimeout { waited_us })?;

    poll_until(
        regs,
        delay,
        EECD,
        RESET_POLL_US,
        AUTO_READ_TIMEOUT_US,
        |e| e & EECD_AUTO_RD != 0,
    )
    .map_err(|waited_us| E1000eError::AutoReadTimeout { waited_us })?;
    delay.delay_us(POST_RESET_SETTLE_US);

    regs.write32(IMC, IMC_ALL);
    let _ = regs.read32(ICR);
    clear_stats(regs);
    Ok(())
}

/// Stops the device for [`Drop`]: receiver off first (no more DMA into host memory), then
/// the transmitter, then every interrupt masked; a final read flushes the writes so the
/// device has seen them before the caller frees DMA memory.
///
/// The rest of the configuration (rings, MAC address) stays; a later [`reset`] clears it.
pub fn disable(regs: &impl Mmio) {
    let rctl = regs.read32(RCTL);
    regs.write32(RCTL, rctl & !RCTL_EN);
    let tctl = regs.read32(TCTL);
    regs.write32(TCTL, tctl & !TCTL_EN);
    regs.write32(IMC, IMC_ALL);
    flush(regs);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmio::{Access, RecordedRegs};

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    /// A device whose CTRL.RST clears after `reads` reads, with AUTO_RD set.
    fn device(reset_reads: u32) -> RecordedRegs {
        let r = RecordedRegs::new().with(EECD, EECD_AUTO_RD | EECD_PRES);
        r.self_clearing(CTRL, CTRL_RST, reset_reads);
        r
    }

    #[test]
    fn reset_sequence_order() {
        let r = device(2);
        let mut d = r.delay();
        reset(&r, &mut d).unwrap();

        let w = r.writes();
        // Quiesce before the reset: IMC, RCTL, TCTL, then GIO master disable, then RST.
        assert_eq!(w[0], (IMC, IMC_ALL));
        assert_eq!(w[1], (RCTL, 0));
        assert_eq!(w[2], (TCTL, TCTL_PSP));
        assert_eq!(w[3], (CTRL, CTRL_GIO_MASTER_DISABLE));
        assert_eq!(w[4], (CTRL, CTRL_GIO_MASTER_DISABLE | CTRL_RST));
        // After the reset: mask again, nothing else written.
        assert_eq!(&w[5..], &[(IMC, IMC_ALL)]);

        let log = r.log();
        let rst = r.last_write_index(CTRL).unwrap();
        // CTRL polled until RST clear: 2 reads still set, the 3rd clear.
        let ctrl_reads: Vec<u32> = log[rst..]
            .iter()
            .filter_map(|a| match a {
                Access::Read(CTRL, v) => Some(*v),
                _ => None,
            })
            .collect();
        assert_eq!(ctrl_reads.len(), 3);
        assert_ne!(ctrl_reads[1] & CTRL_RST, 0);
        assert_eq!(ctrl_reads[2] & CTRL_RST, 0);
        // EECD polled after RST cleared, ICR read after the second IMC.
        let eecd = log.iter().position(|a| a.offset() == EECD).unwrap();
        assert!(eecd > rst);
        let imc2 = r.last_write_index(IMC).unwrap();
        assert!(imc2 > eecd);
        assert_eq!(log[imc2 + 1], Access::Read(ICR, 0));
        // Then every statistics register, 64-bit pairs low before high.
        let stats_reads: Vec<u32> = log[imc2 + 2..].iter().map(Access::offset).collect();
        assert_eq!(stats_reads.len(), STATS_32.len() + 2 * STATS_64.len());
        for &(lo, hi) in STATS_64 {
            let l = stats_reads.iter().position(|&o| o == lo).unwrap();
            let h = stats_reads.iter().position(|&o| o == hi).unwrap();
            assert_eq!(h, l + 1, "{lo:#x} must be read right before {hi:#x}");
        }
        // Waited: quiesce + 2 RST polls + settle.
        assert_eq!(
            r.elapsed_us(),
            u64::from(RESET_QUIESCE_US + 2 * RESET_POLL_US + POST_RESET_SETTLE_US)
        );
    }

    #[test]
    fn reset_clears_statistics() {
        let r = RecordedRegs::e1000e_qemu(MAC);
        r.set(GPRC, 5).set(GORCL, 100).set(GORCH, 1).set(MPC, 2);
        reset(&r, &mut r.delay()).unwrap();
        assert_eq!(r.get(GPRC), 0);
        assert_eq!(r.get(GORCL), 0);
        assert_eq!(r.get(GORCH), 0);
        assert_eq!(r.get(MPC), 0);
    }

    #[test]
    fn reset_against_qemu_model_restores_power_on_state() {
        let r = RecordedRegs::e1000e_qemu(MAC);
        // Leave the device configured and running, as a previous driver might.
        r.write32(RCTL, RCTL_EN | RCTL_UPE);
        r.write32(TCTL, TCTL_EN);
        r.write32(IMS, 0xFFFF);
        r.write32(RAH0, 0);
        reset(&r, &mut r.delay()).unwrap();
        assert_eq!(r.get(RCTL), 0);
        assert_eq!(r.get(TCTL), 0);
        assert_eq!(r.get(IMS), 0);
        assert_eq!(r.get(RAH0) & RAH_AV, RAH_AV);
        assert_eq!(r.get(CTRL) & (CTRL_RST | CTRL_GIO_MASTER_DISABLE), 0);
    }

    #[test]
    fn reset_timeout_returns_error_instead_of_hanging() {
        // RST never clears: no hook, CTRL just stores what was written.
        let r = RecordedRegs::new().with(EECD, EECD_AUTO_RD);
        let err = reset(&r, &mut r.delay()).unwrap_err();
        assert_eq!(
            err,
            E1000eError::ResetTimeout {
                waited_us: RESET_TIMEOUT_US
            }
        );
        // Bounded: RESET_TIMEOUT_US / RESET_POLL_US waits, one read more.
        let polls = (RESET_TIMEOUT_US / RESET_POLL_US) as usize + 1;
        let rst = r.last_write_index(CTRL).unwrap();
        let reads = r.log()[rst..]
            .iter()
            .filter(|a| matches!(a, Access::Read(CTRL, _)))
            .count();
        assert_eq!(reads, polls);
        // Nothing written after giving up.
        assert_eq!(r.last_write_index(CTRL), Some(r.log().len() - polls - 1));
        assert!(err.to_string().contains("CTRL.RST"));
    }

    #[test]
    fn auto_read_timeout_is_an_error() {
        let r = RecordedRegs::new();
        r.self_clearing(CTRL, CTRL_RST, 0);
        assert_eq!(
            reset(&r, &mut r.delay()).unwrap_err(),
            E1000eError::AutoReadTimeout {
                waited_us: AUTO_READ_TIMEOUT_US
            }
        );
    }

    #[test]
    fn stuck_master_disable_is_not_fatal() {
        let r = device(0).with(STATUS, STATUS_GIO_MASTER_ENABLE);
        reset(&r, &mut r.delay()).unwrap();
        // Waited the full master-disable timeout, then reset.
        assert!(r.elapsed_us() >= u64::from(MASTER_DISABLE_TIMEOUT_US));
        assert_ne!(r.writes_to(CTRL).last().unwrap() & CTRL_RST, 0);
    }

    #[test]
    fn disable_turns_off_rx_then_tx_then_masks() {
        let r = RecordedRegs::new()
            .with(RCTL, RCTL_EN | RCTL_BAM | RCTL_SECRC)
            .with(TCTL, TCTL_EN | TCTL_PSP);
        disable(&r);
        assert_eq!(
            r.writes(),
            vec![
                (RCTL, RCTL_BAM | RCTL_SECRC),
                (TCTL, TCTL_PSP),
                (IMC, IMC_ALL)
            ]
        );
        assert_eq!(r.log().last(), Some(&Access::Read(STATUS, 0)));
    }
}
