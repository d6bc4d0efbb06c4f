//! Receive address filtering: the unicast exact-match table (RAL/RAH, 82574 §10.2.5
//! receive register descriptions).
//!
//! A unicast frame is accepted when RCTL.UPE is set or its destination matches a receive
//! address entry with RAH.AV set; entry 0 holds the station address ([`super::read_mac`]
//! programs it), entries 1..=15 are free for extra addresses. Multicast frames are
//! accepted by RCTL.MPE, an exact entry or the MTA hash ([`super::configure_rx`] clears the
//! MTA); broadcasts by RCTL.BAM. QEMU's e1000e decides in the same order
//! (`hw/net/e1000x_common.c` `e1000x_rx_group_filter`); promiscuous mode itself is
//! [`super::set_promisc`].

use super::regs::*;
use super::E1000eError;
use crate::mmio::Mmio;

/// How many addresses [`set_unicast_filter`] can hold besides the station address: every
/// receive address entry but entry 0.
pub const UNICAST_FILTER_ENTRIES: usize = RAR_ENTRIES as usize - 1;

/// Makes the device accept unicast frames to `macs` too, besides its station address in
/// entry 0: entries `1..=macs.len()` get the addresses with RAH.AV, every later entry is
/// invalidated. An empty `macs` leaves only the station address.
///
/// Each entry is first invalidated (RAH with AV clear), then written low before high, AV
/// last, so the filter never compares against a half-written address (the 8254x manual's
/// RAH note: write low-to-high, clear high-to-low). Entry 0 is never touched.
///
/// # Errors
/// [`E1000eError::TooManyUnicastAddresses`] if `macs` has more than
/// [`UNICAST_FILTER_ENTRIES`] addresses (nothing is written then).
pub fn set_unicast_filter(regs: &impl Mmio, macs: &[[u8; 6]]) -> Result<(), E1000eError> {
    if macs.len() > UNICAST_FILTER_ENTRIES {
        return Err(E1000eError::TooManyUnicastAddresses {
            count: macs.len(),
            max: UNICAST_FILTER_ENTRIES,
        });
    }
    for n in 1..RAR_ENTRIES {
        // Clear high first: AV off before the address changes.
        regs.write32(rah(n), 0);
        regs.write32(ral(n), 0);
        if let Some(mac) = macs.get(n as usize - 1) {
            regs.write32(ral(n), u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]));
            regs.write32(
                rah(n),
                u32::from(u16::from_le_bytes([mac[4], mac[5]])) | RAH_AV,
            );
        }
    }
    Ok(())
}

/// The valid addresses in receive address entries `1..`, in entry order: what
/// [`set_unicast_filter`] left there.
pub fn unicast_filter(regs: &impl Mmio) -> Vec<[u8; 6]> {
    (1..RAR_ENTRIES)
        .filter_map(|n| {
            let rah = regs.read32(rah(n));
            (rah & RAH_AV != 0).then(|| {
                let l = regs.read32(ral(n)).to_le_bytes();
                let h = (rah as u16).to_le_bytes();
                [l[0], l[1], l[2], l[3], h[0], h[1]]
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmio::RecordedRegs;

    const STATION: [u8; 6] = [0x52, 0x54, 0x00, 0x7e, 0x00, 0x00];
    const A: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0xaa, 0x01];
    const B: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0xbb, 0x02];

    fn device() -> RecordedRegs {
        RecordedRegs::e1000e_qemu(STATION)
    }

    #[test]
    fn addresses_land_in_entries_from_one_with_av_little_endian() {
        let r = device();
        set_unicast_filter(&r, &[A, B]).unwrap();
        assert_eq!(r.get(ral(1)), 0x0000_0002);
        assert_eq!(r.get(rah(1)), RAH_AV | 0x01aa);
        assert_eq!(r.get(ral(2)), 0x0000_0002);
        assert_eq!(r.get(rah(2)), RAH_AV | 0x02bb);
        for n in 3..RAR_ENTRIES {
            assert_eq!(r.get(rah(n)) & RAH_AV, 0, "entry {n} invalid");
        }
        assert_eq!(unicast_filter(&r), vec![A, B]);
        // The station address in entry 0 is never written.
        assert!(r.writes_to(RAL0).is_empty() && r.writes_to(RAH0).is_empty());
        assert_eq!(r.get(RAH0) & RAH_AV, RAH_AV);
    }

    #[test]
    fn each_entry_is_invalidated_before_its_address_changes_and_validated_last() {
        let r = device();
        set_unicast_filter(&r, &[A]).unwrap();
        r.clear_log();
        set_unicast_filter(&r, &[B]).unwrap();
        let writes: Vec<(u32, u32)> = r
            .writes()
            .into_iter()
            .filter(|&(off, _)| off == ral(1) || off == rah(1))
            .collect();
        assert_eq!(
            writes,
            vec![
                (rah(1), 0),
                (ral(1), 0),
                (ral(1), 0x0000_0002),
                (rah(1), RAH_AV | 0x02bb)
            ]
        );
    }

    #[test]
    fn empty_clears_every_extra_entry() {
        let r = device();
        let all: Vec<[u8; 6]> = (0..UNICAST_FILTER_ENTRIES as u8)
            .map(|i| [2, 0, 0, 0, 1, i])
            .collect();
        set_unicast_filter(&r, &all).unwrap();
        assert_eq!(unicast_filter(&r), all);
        set_unicast_filter(&r, &[]).unwrap();
        assert!(unicast_filter(&r).is_empty());
        for n in 1..RAR_ENTRIES {
            assert_eq!((r.get(ral(n)), r.get(rah(n))), (0, 0));
        }
    }

    #[test]
    fn more_than_fifteen_is_refused_untouched() {
        let r = device();
        let many = vec![A; UNICAST_FILTER_ENTRIES + 1];
        let e = set_unicast_filter(&r, &many).unwrap_err();
        assert_eq!(
            e,
            E1000eError::TooManyUnicastAddresses { count: 16, max: 15 }
        );
        assert!(e.to_string().contains("15"), "{e}");
        assert!(r.writes().is_empty());
    }
}
