//! Link state.

use super::poll_until;
use super::regs::*;
use crate::mmio::{Delay, Mmio};

/// Poll interval while waiting for link.
pub const LINK_POLL_US: u32 = 10_000;
/// QEMU's autonegotiation time: after the link is restarted (a PHY autonegotiation restart
/// through MDIC, or `set_link <id> on` in the monitor after it was off) STATUS.LU reads 0
/// for 500 ms of guest virtual time (`e1000x_restart_autoneg`,
/// `hw/net/e1000x_common.c:162-167`). After a reset QEMU reports link up at once.
pub const QEMU_AUTONEG_US: u32 = 500_000;
/// A timeout for [`setup_link`] that covers real copper autonegotiation (typically 2-3 s
/// at 1000BASE-T) with margin.
pub const DEFAULT_LINK_TIMEOUT_US: u32 = 5_000_000;

/// Link state from STATUS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStatus {
    /// STATUS.LU.
    pub up: bool,
    /// 10, 100 or 1000 while up; 0 while down.
    pub speed_mbps: u32,
    /// STATUS.FD while up; false while down.
    pub full_duplex: bool,
}

impl std::fmt::Display for LinkStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.up && self.speed_mbps == 0 {
            // virtio-net without VIRTIO_NET_F_SPEED_DUPLEX reports no speed.
            f.write_str("up")
        } else if self.up {
            let duplex = if self.full_duplex { "full" } else { "half" };
            write!(f, "up {} Mb/s {duplex} duplex", self.speed_mbps)
        } else {
            f.write_str("down")
        }
    }
}

impl LinkStatus {
    fn from_status(status: u32) -> Self {
        if status & STATUS_LU == 0 {
            return LinkStatus::default();
        }
        let speed_mbps = match status & STATUS_SPEED_MASK {
            STATUS_SPEED_10 => 10,
            STATUS_SPEED_100 => 100,
            _ => 1000, // 10b and 11b both mean 1000 Mb/s
        };
        LinkStatus {
            up: true,
            speed_mbps,
            full_duplex: status & STATUS_FD != 0,
        }
    }
}

/// Reads the link state (one read of STATUS).
pub fn link_status(regs: &impl Mmio) -> LinkStatus {
    LinkStatus::from_status(regs.read32(STATUS))
}

/// Lets the MAC take the link the PHY negotiates, then waits up to `timeout_us` for it.
///
/// Sets CTRL.SLU and CTRL.ASDE and clears LRST, ILOS, FRCSPD and FRCDPX (82574
/// §10.2.2.1): with the internal copper PHY the MAC follows the PHY's autonegotiated speed
/// and duplex. The PHY autonegotiates by itself after reset, so the PHY is not touched.
/// Then polls STATUS.LU every [`LINK_POLL_US`] (the first read comes before any wait).
///
/// In QEMU, CTRL writes do not change the link at all (`e1000e_set_ctrl`,
/// `hw/net/e1000e_core.c:1816-1841`) and STATUS.LU is already set after reset
/// (`e1000e_mac_reg_init`, line 3425) unless the netdev link is down; it takes
/// [`QEMU_AUTONEG_US`] only when autonegotiation was restarted.
///
/// Returns the state at the end; `up == false` means the timeout passed without link (not
/// an error: a cable may be plugged later, poll [`link_status`]).
pub fn setup_link(regs: &impl Mmio, delay: &mut impl Delay, timeout_us: u32) -> LinkStatus {
    let ctrl = regs.read32(CTRL);
    let ctrl = (ctrl | CTRL_SLU | CTRL_ASDE)
        & !(CTRL_LRST | CTRL_ILOS | CTRL_FRCSPD | CTRL_FRCDPX | CTRL_PHY_RST | CTRL_RST);
    regs.write32(CTRL, ctrl);
    let status = match poll_until(regs, delay, STATUS, LINK_POLL_US, timeout_us, |s| {
        s & STATUS_LU != 0
    }) {
        Ok(status) => status,
        Err(waited) => {
            log::info!("e1000e: no link after {waited} us");
            regs.read32(STATUS)
        }
    };
    let link = LinkStatus::from_status(status);
    log::debug!("e1000e: link {link}");
    link
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmio::RecordedRegs;

    #[test]
    fn status_decoding() {
        assert_eq!(LinkStatus::from_status(0), LinkStatus::default());
        // Speed bits are ignored while down.
        assert!(!LinkStatus::from_status(STATUS_SPEED_1000 | STATUS_FD).up);
        let cases = [
            (STATUS_SPEED_10, 10),
            (STATUS_SPEED_100, 100),
            (STATUS_SPEED_1000, 1000),
            (STATUS_SPEED_MASK, 1000),
        ];
        for (bits, mbps) in cases {
            let l = LinkStatus::from_status(STATUS_LU | bits);
            assert_eq!((l.up, l.speed_mbps, l.full_duplex), (true, mbps, false));
        }
        let l = LinkStatus::from_status(STATUS_LU | STATUS_FD | STATUS_SPEED_1000);
        assert_eq!(l.to_string(), "up 1000 Mb/s full duplex");
        assert_eq!(LinkStatus::default().to_string(), "down");
    }

    #[test]
    fn link_status_reads_status_once() {
        let r = RecordedRegs::new().with(STATUS, STATUS_LU | STATUS_FD | STATUS_SPEED_100);
        assert_eq!(
            link_status(&r),
            LinkStatus {
                up: true,
                speed_mbps: 100,
                full_duplex: true
            }
        );
        assert_eq!(r.reads_of(STATUS), 1);
        assert!(r.writes().is_empty());
    }

    #[test]
    fn setup_link_sets_slu_asde_without_lrst() {
        let r = RecordedRegs::new().with(
            CTRL,
            CTRL_LRST | CTRL_FRCSPD | CTRL_FRCDPX | CTRL_ILOS | CTRL_FD | CTRL_SPEED_1000,
        );
        r.set(STATUS, STATUS_LU | STATUS_FD | STATUS_SPEED_1000);
        let link = setup_link(&r, &mut r.delay(), 1_000_000);
        assert_eq!(
            r.writes(),
            vec![(CTRL, CTRL_SLU | CTRL_ASDE | CTRL_FD | CTRL_SPEED_1000)]
        );
        assert!(link.up);
        assert_eq!(r.elapsed_us(), 0, "link already up: no wait");
    }

    #[test]
    fn setup_link_waits_for_qemu_autoneg() {
        let r = RecordedRegs::e1000e_qemu([0x52, 0x54, 0, 1, 2, 3]);
        // Autonegotiation restarted: LU appears after 500 ms of virtual time.
        r.bits_set_after(STATUS, STATUS_LU, u64::from(QEMU_AUTONEG_US));
        r.set(STATUS, STATUS_FD | STATUS_SPEED_1000);
        let link = setup_link(&r, &mut r.delay(), DEFAULT_LINK_TIMEOUT_US);
        assert!(link.up);
        assert_eq!(link.speed_mbps, 1000);
        assert_eq!(r.elapsed_us(), u64::from(QEMU_AUTONEG_US));
    }

    #[test]
    fn setup_link_times_out_with_link_down() {
        let r = RecordedRegs::new();
        let link = setup_link(&r, &mut r.delay(), 35_000);
        assert!(!link.up);
        assert_eq!(r.elapsed_us(), 35_000);
        // Zero timeout: one look, no wait.
        let r = RecordedRegs::new();
        assert!(!setup_link(&r, &mut r.delay(), 0).up);
        assert_eq!(r.elapsed_us(), 0);
    }
}
