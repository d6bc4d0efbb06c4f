//! Device reset and shutdown.

use super::regs::*;
use super::{clear_stats, flush, wait_bits, IgbError};
use crate::mmio::{Delay, Mmio};

/// Wait after stopping RX/TX before the reset, for DMA under way to drain.
pub const RESET_QUIESCE_US: u32 = 10_000;
/// Poll interval while waiting for GIO master disable, CTRL.RST and EECD.AUTO_RD.
pub const RESET_POLL_US: u32 = 100;
/// How long to wait for STATUS.GIO_MASTER_ENABLE to clear before resetting anyway.
pub const MASTER_DISABLE_TIMEOUT_US: u32 = 80_000;
/// How long to wait for CTRL.RST to clear.
pub const RESET_TIMEOUT_US: u32 = 100_000;
/// How long to wait for EECD.AUTO_RD after the reset. Not an error when it never sets:
/// QEMU's igb does not model it (`igb_mac_reg_init` has EECD without AUTO_RD), and Linux's
/// igb (`e1000_reset_hw_82575`) also goes on without it.
pub const AUTO_READ_WAIT_US: u32 = 10_000;

/// Resets the device to its power-on state (all but PCI configuration space) and leaves it
/// quiet: interrupts masked, RX and TX off, statistics zero.
///
/// 1. Mask every interrupt (IMC and EIMC), stop the receiver (RCTL = 0) and the transmitter
///    (TCTL = PSP), flush, wait [`RESET_QUIESCE_US`].
/// 2. CTRL.GIO_MASTER_DISABLE and wait for STATUS.GIO_MASTER_ENABLE to clear (82576
///    §5.2.3.3, master disable before a software reset); a timeout is logged, not fatal.
///    QEMU clears the bit at once (`igb_get_status`).
/// 3. CTRL.RST (82576 §4.3.1.2, software reset; self-clearing) and poll until it reads 0.
///    QEMU resets inside the write (`igb_set_ctrl` → `igb_reset`).
/// 4. Wait up to [`AUTO_READ_WAIT_US`] for EECD.AUTO_RD (the NVM reload).
/// 5. Mask again, read ICR and EICR to drop causes latched meanwhile, read every
///    statistics counter to zero it (they are read-to-clear).
///
/// After this, QEMU's igb has the link down (STATUS.LU clear, the PHY's autonegotiation
/// not complete) until [`super::setup_link`] restarts autonegotiation, and only queue 0
/// has RXDCTL/TXDCTL.ENABLE.
///
/// # Errors
/// [`IgbError::ResetTimeout`] if CTRL.RST does not clear within [`RESET_TIMEOUT_US`].
pub fn reset(regs: &impl Mmio, delay: &mut impl Delay) -> Result<(), IgbError> {
    mask_all(regs);
    regs.write32(RCTL, 0);
    regs.write32(TCTL, TCTL_PSP);
    flush(regs);
    delay.delay_us(RESET_QUIESCE_US);

    let ctrl = regs.read32(CTRL);
    regs.write32(CTRL, ctrl | CTRL_GIO_MASTER_DISABLE);
    if let Err(waited) = wait_bits(
        regs,
        delay,
        STATUS,
        STATUS_GIO_MASTER_ENABLE,
        false,
        RESET_POLL_US,
        MASTER_DISABLE_TIMEOUT_US,
    ) {
        log::warn!(
            "igb: master requests still pending {waited} us after GIO master disable; \
             resetting anyway"
        );
    }

    let ctrl = regs.read32(CTRL);
    log::debug!("igb: device reset (CTRL {ctrl:#010x})");
    regs.write32(CTRL, ctrl | CTRL_RST);
    wait_bits(
        regs,
        delay,
        CTRL,
        CTRL_RST,
        false,
        RESET_POLL_US,
        RESET_TIMEOUT_US,
    )
    .map_err(|waited_us| IgbError::ResetTimeout { waited_us })?;

    if wait_bits(
        regs,
        delay,
        EECD,
        EECD_AUTO_RD,
        true,
        RESET_POLL_US,
        AUTO_READ_WAIT_US,
    )
    .is_err()
    {
        log::debug!("igb: EECD.AUTO_RD not set after reset (QEMU does not model it)");
    }

    mask_all(regs);
    let _ = regs.read32(ICR);
    let _ = regs.read32(EICR);
    clear_stats(regs);
    Ok(())
}

/// Masks every legacy and extended interrupt cause: tenge polls.
fn mask_all(regs: &impl Mmio) {
    regs.write32(IMC, IMC_ALL);
    regs.write32(EIMC, EIMC_ALL);
}

/// Stops the device for [`Drop`]: receiver off first (no more DMA into host memory), then
/// the transmitter, then every interrupt masked; a final read flushes the writes so the
/// device has seen them before the caller frees DMA memory.
pub fn disable(regs: &impl Mmio) {
    let rctl = regs.read32(RCTL);
    regs.write32(RCTL, rctl & !RCTL_EN);
    let tctl = regs.read32(TCTL);
    regs.write32(TCTL, tctl & !TCTL_EN);
    mask_all(regs);
    flush(regs);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmio::RecordedRegs;

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x57];

    #[test]
    fn reset_against_qemu_model_restores_power_on_state() {
        let r = RecordedRegs::igb_qemu(MAC);
        // Leave the device configured and running, as a previous driver might.
        r.write32(RCTL, RCTL_EN | RCTL_UPE);
        r.write32(TCTL, TCTL_EN);
        r.write32(queue_reg(RXDCTL0, 3), XDCTL_ENABLE);
        r.write32(RAH0, 0);
        r.set(crate::e1000e::regs::GPRC, 7);
        reset(&r, &mut r.delay()).unwrap();
        assert_eq!(r.get(RCTL), 0);
        assert_eq!(r.get(TCTL) & TCTL_EN, 0);
        assert_eq!(r.get(queue_reg(RXDCTL0, 3)) & XDCTL_ENABLE, 0);
        assert_ne!(r.get(RXDCTL0) & XDCTL_ENABLE, 0, "queue 0 enabled at reset");
        assert_ne!(r.get(RAH0) & RAH_AV, 0, "QEMU puts the MAC back in RA0");
        assert_eq!(r.get(crate::e1000e::regs::GPRC), 0);
        assert_eq!(r.get(CTRL) & CTRL_RST, 0);
        // The link is down after the reset, as QEMU's igb has it.
        assert_eq!(r.read32(STATUS) & STATUS_LU, 0);
    }

    #[test]
    fn reset_order_quiesces_first_and_tolerates_no_auto_read() {
        let r = RecordedRegs::igb_qemu(MAC);
        reset(&r, &mut r.delay()).unwrap();
        let w = r.writes();
        assert_eq!(
            &w[..4],
            &[
                (IMC, IMC_ALL),
                (EIMC, EIMC_ALL),
                (RCTL, 0),
                (TCTL, TCTL_PSP)
            ]
        );
        let rst = r.last_write_index(CTRL).unwrap();
        let gio = r.first_write_index(CTRL).unwrap();
        assert!(gio < rst);
        assert_ne!(r.writes_to(CTRL)[0] & CTRL_GIO_MASTER_DISABLE, 0);
        assert_ne!(r.writes_to(CTRL)[1] & CTRL_RST, 0);
        // QEMU never sets AUTO_RD: the whole wait passes, then the masks again.
        assert_eq!(
            r.elapsed_us(),
            u64::from(RESET_QUIESCE_US + AUTO_READ_WAIT_US)
        );
        assert_eq!(r.writes_to(EIMC).len(), 2);
    }

    #[test]
    fn reset_timeout_is_an_error_not_a_hang() {
        let r = RecordedRegs::new();
        let err = reset(&r, &mut r.delay()).unwrap_err();
        assert_eq!(
            err,
            IgbError::ResetTimeout {
                waited_us: RESET_TIMEOUT_US
            }
        );
    }

    #[test]
    fn disable_turns_off_rx_then_tx_then_masks() {
        let r = RecordedRegs::new()
            .with(RCTL, RCTL_EN | RCTL_BAM)
            .with(TCTL, TCTL_EN | TCTL_PSP);
        disable(&r);
        assert_eq!(
            r.writes(),
            vec![
                (RCTL, RCTL_BAM),
                (TCTL, TCTL_PSP),
                (IMC, IMC_ALL),
                (EIMC, EIMC_ALL)
            ]
        );
    }
}
