//! Link set-up.

use super::regs::*;
use super::{link_status, wait_bits, IgbError, LinkStatus};
use crate::mmio::{Delay, Mmio};

/// Poll interval while waiting for link.
pub const LINK_POLL_US: u32 = 10_000;
/// QEMU's autonegotiation time: after a PHY autonegotiation restart STATUS.LU reads 0 for
/// 500 ms of guest virtual time (`e1000x_restart_autoneg`, the `igb_autoneg_timer`).
pub const AUTONEG_RESTART_WAIT_US: u32 = 500_000;
/// A timeout for [`setup_link`] that covers real copper autonegotiation (2-3 s at
/// 1000BASE-T) with margin.
pub const DEFAULT_LINK_TIMEOUT_US: u32 = 5_000_000;
/// Poll interval and bound for an MDIC access.
const MDIC_POLL_US: u32 = 10;
const MDIC_TIMEOUT_US: u32 = 10_000;

/// Writes PHY register `reg` through MDIC (82576 §8.2.4) and waits for MDIC.R.
fn phy_write(
    regs: &impl Mmio,
    delay: &mut impl Delay,
    reg: u32,
    value: u16,
) -> Result<(), IgbError> {
    regs.write32(
        MDIC,
        u32::from(value)
            | (reg << MDIC_REGADD_SHIFT)
            | (PHY_ADDR << MDIC_PHYADD_SHIFT)
            | MDIC_OP_WRITE,
    );
    let mdic = wait_bits(
        regs,
        delay,
        MDIC,
        MDIC_R,
        true,
        MDIC_POLL_US,
        MDIC_TIMEOUT_US,
    )
    .map_err(|_| IgbError::PhyAccess {
        reg,
        what: "timed out",
    })?;
    if mdic & MDIC_E != 0 {
        return Err(IgbError::PhyAccess {
            reg,
            what: "error bit set",
        });
    }
    Ok(())
}

/// Brings the link up and waits up to `timeout_us` for it.
///
/// Sets CTRL.SLU and clears LRST (set at power-on: it holds the link in reset), ILOS,
/// FRCSPD and FRCDPX (82576 §8.2.1): the MAC follows the PHY's autonegotiated speed and
/// duplex. If STATUS.LU is clear, restarts the PHY's autonegotiation (PHY control register
/// with autonegotiation enable and restart, 82576 §8.24): a device reset leaves QEMU's igb
/// with its autonegotiation incomplete and the link down for good until then
/// (`igb_reset` stops the autonegotiation timer; `igb_set_phy_ctrl` restarts it), and
/// Linux's igb does the same in its copper link set-up. Then polls STATUS.LU every
/// [`LINK_POLL_US`].
///
/// Returns the state at the end; `up == false` means the timeout passed without link (not
/// an error: a cable may be plugged later, poll [`link_status`]).
///
/// # Errors
/// [`IgbError::PhyAccess`] if the PHY does not take the restart.
pub fn setup_link(
    regs: &impl Mmio,
    delay: &mut impl Delay,
    timeout_us: u32,
) -> Result<LinkStatus, IgbError> {
    let ctrl = regs.read32(CTRL);
    let ctrl = (ctrl | CTRL_SLU)
        & !(CTRL_LRST | CTRL_ILOS | CTRL_FRCSPD | CTRL_FRCDPX | CTRL_PHY_RST | CTRL_RST);
    regs.write32(CTRL, ctrl);
    if regs.read32(STATUS) & STATUS_LU == 0 {
        log::debug!("igb: link down, restarting autonegotiation");
        phy_write(
            regs,
            delay,
            PHY_CTRL,
            (PHY_CTRL_AUTONEG_EN
                | PHY_CTRL_RESTART_AUTONEG
                | PHY_CTRL_SPEED_1000
                | PHY_CTRL_FULL_DUPLEX) as u16,
        )?;
    }
    if let Err(waited) = wait_bits(
        regs,
        delay,
        STATUS,
        STATUS_LU,
        true,
        LINK_POLL_US,
        timeout_us,
    ) {
        log::info!("igb: no link after {waited} us");
    }
    let link = link_status(regs);
    log::debug!("igb: link {link}");
    Ok(link)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmio::RecordedRegs;

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x57];

    #[test]
    fn link_comes_up_after_qemus_autoneg_restart() {
        let r = RecordedRegs::igb_qemu(MAC);
        super::super::reset(&r, &mut r.delay()).unwrap();
        let t0 = r.elapsed_us();
        let link = setup_link(&r, &mut r.delay(), DEFAULT_LINK_TIMEOUT_US).unwrap();
        assert!(link.up);
        assert_eq!(link.speed_mbps, 1000);
        assert!(link.full_duplex);
        let waited = r.elapsed_us() - t0;
        assert!(
            (u64::from(AUTONEG_RESTART_WAIT_US)
                ..u64::from(AUTONEG_RESTART_WAIT_US + LINK_POLL_US) + 100)
                .contains(&waited),
            "{waited}"
        );
        let ctrl = r.get(CTRL);
        assert_ne!(ctrl & CTRL_SLU, 0);
        assert_eq!(ctrl & CTRL_LRST, 0);
        // One MDIC write: PHY 1, register 0, autoneg enable and restart.
        let mdic = r.writes_to(MDIC);
        assert_eq!(mdic.len(), 1);
        assert_eq!((mdic[0] >> MDIC_PHYADD_SHIFT) & 0x1f, 1);
        assert_eq!((mdic[0] >> MDIC_REGADD_SHIFT) & 0x1f, PHY_CTRL);
        assert_ne!(mdic[0] & PHY_CTRL_RESTART_AUTONEG, 0);
    }

    #[test]
    fn link_already_up_is_not_renegotiated() {
        let r = RecordedRegs::igb_qemu(MAC);
        r.set(STATUS, STATUS_LU);
        let link = setup_link(&r, &mut r.delay(), DEFAULT_LINK_TIMEOUT_US).unwrap();
        assert!(link.up);
        assert!(r.writes_to(MDIC).is_empty());
        assert_eq!(r.elapsed_us(), 0);
    }

    #[test]
    fn no_link_is_a_state_and_a_dead_phy_an_error() {
        // MDIC answers with the error bit: the restart fails.
        let r = RecordedRegs::new();
        r.on_write(MDIC, |file, off, v| file.set(off, v | MDIC_R | MDIC_E));
        assert_eq!(
            setup_link(&r, &mut r.delay(), 1000).unwrap_err(),
            IgbError::PhyAccess {
                reg: 0,
                what: "error bit set"
            }
        );
        // MDIC ready, but the link never comes: down after the timeout, no error.
        let r = RecordedRegs::new();
        r.on_write(MDIC, |file, off, v| file.set(off, v | MDIC_R));
        let link = setup_link(&r, &mut r.delay(), 50_000).unwrap();
        assert!(!link.up);
    }
}
