//! VLAN tags: stripping on receive and the Ether Type the device recognises (82574
//! §10.2.2.1 CTRL.VME, VET; the 82576 keeps both where the 82574 has them, 82576 §8.2.1
//! and §8.2.8).
//!
//! With CTRL.VME a received frame whose Ether Type is VET's loses its 4-byte tag, which
//! the device writes into the descriptor's VLAN field with status VP; without it tagged
//! frames arrive as they were sent. On the 82574, CTRL.VME also gates TX tag insertion
//! (a descriptor's VLE is ignored without it; QEMU's `e1000e_process_tx_desc` tests
//! `e1000x_vlan_enabled`), so a port that keeps received tags inserts them in software.
//! The 82576 inserts whatever CTRL.VME says (QEMU `igb_tx_insert_vlan`).
//!
//! VLAN filtering (RCTL.VFE with the VFTA) is left off: every VLAN is received.

use super::regs::*;
use crate::mmio::Mmio;

/// The 802.1Q tag protocol identifier.
pub const ETHERTYPE_VLAN: u16 = 0x8100;

/// Strips VLAN tags on receive (`strip`) or keeps them: CTRL.VME, with the low half of VET
/// (the 82576's high half, VET_EXT for double VLAN, is kept) set to 802.1Q's 0x8100 first,
/// whatever the device came out of reset with (QEMU's e1000e reads VET through a copy
/// that only a VET write sets, in some versions).
pub fn set_vlan_strip(regs: &impl Mmio, strip: bool) {
    let vet = regs.read32(VET);
    regs.write32(VET, (vet & 0xffff_0000) | u32::from(ETHERTYPE_VLAN));
    let ctrl = regs.read32(CTRL);
    regs.write32(
        CTRL,
        if strip {
            ctrl | CTRL_VME
        } else {
            ctrl & !CTRL_VME
        },
    );
}

/// Whether received VLAN tags are stripped (CTRL.VME).
pub fn vlan_strip(regs: &impl Mmio) -> bool {
    regs.read32(CTRL) & CTRL_VME != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmio::RecordedRegs;

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    #[test]
    fn strip_sets_vme_and_vet_and_leaves_the_rest_of_ctrl() {
        let r = RecordedRegs::e1000e_qemu(MAC);
        let ctrl = r.get(CTRL);
        r.set(VET, 0);
        set_vlan_strip(&r, true);
        assert_eq!(r.get(VET), 0x8100);
        assert_eq!(r.get(CTRL), ctrl | CTRL_VME);
        assert!(vlan_strip(&r));
        set_vlan_strip(&r, false);
        assert_eq!(r.get(CTRL), ctrl & !CTRL_VME);
        assert!(!vlan_strip(&r));
    }

    #[test]
    fn the_82576s_vet_ext_is_kept() {
        let r = RecordedRegs::igb_qemu(MAC);
        assert_eq!(r.get(VET), 0x8100_8100);
        r.set(VET, 0x88a8_0000);
        set_vlan_strip(&r, true);
        assert_eq!(r.get(VET), 0x88a8_8100);
        assert_eq!(r.get(CTRL) & CTRL_VME, CTRL_VME);
    }
}
