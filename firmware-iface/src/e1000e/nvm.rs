//! NVM (EEPROM) reads through EERD, and the station MAC address.

use super::regs::*;
use super::{poll_until, E1000eError};
use crate::mmio::{Delay, Mmio};

/// Poll interval while waiting for EERD.DONE.
pub const NVM_POLL_US: u32 = 5;
/// How long to wait for one EERD read. A real 82574 answers in microseconds; QEMU in the
/// write itself.
pub const NVM_TIMEOUT_US: u32 = 50_000;

/// Reads NVM word `word` through EERD (82574 §10.2.2, EERD: write ADDR (bits 15:2) with
/// START (bit 0), poll for DONE (bit 1), take DATA (bits 31:16)).
///
/// QEMU completes the read inside the write and ignores addresses past its 64-word NVM,
/// leaving DONE clear (`e1000e_set_eerd`, `hw/net/e1000e_core.c:2738-2753`).
///
/// # Errors
/// [`E1000eError::NvmWordOutOfRange`] for `word > 0x3FFF`; [`E1000eError::NvmTimeout`] if
/// DONE does not set within [`NVM_TIMEOUT_US`].
pub fn nvm_read_word(
    regs: &impl Mmio,
    delay: &mut impl Delay,
    word: u16,
) -> Result<u16, E1000eError> {
    let addr = u32::from(word);
    if addr > EERD_ADDR_MASK {
        return Err(E1000eError::NvmWordOutOfRange { word });
    }
    regs.write32(EERD, (addr << EERD_ADDR_SHIFT) | EERD_START);
    let eerd = poll_until(regs, delay, EERD, NVM_POLL_US, NVM_TIMEOUT_US, |v| {
        v & EERD_DONE != 0
    })
    .map_err(|_| E1000eError::NvmTimeout { word })?;
    Ok((eerd >> EERD_DATA_SHIFT) as u16)
}

/// Whether NVM words 0x00..=0x3F sum to 0xBABA, the 82574's NVM checksum rule (QEMU
/// builds its NVM that way: `e1000x_core_prepare_eeprom`,
/// `hw/net/e1000x_common.c:194-219`).
///
/// # Errors
/// As [`nvm_read_word`].
pub fn nvm_checksum_ok(regs: &impl Mmio, delay: &mut impl Delay) -> Result<bool, E1000eError> {
    let mut sum = 0u16;
    for word in 0..=NVM_CHECKSUM_WORD {
        sum = sum.wrapping_add(nvm_read_word(regs, delay, word)?);
    }
    Ok(sum == NVM_SUM)
}

/// Whether `mac` can be a station address: not all zero and not a group (multicast or
/// broadcast) address.
pub fn is_valid_unicast(mac: &[u8; 6]) -> bool {
    mac.iter().any(|&b| b != 0) && mac[0] & 0x01 == 0
}

/// The station address.
///
/// Taken from receive address 0 (RAL0/RAH0) when RAH0.AV is set and the address is a valid
/// unicast one: the device loads it there from the NVM at reset, and QEMU puts its
/// `-device e1000e,mac=` address there at every reset (`e1000x_reset_mac_addr`,
/// `hw/net/e1000x_common.c:169-184`). Otherwise read from NVM words 0..=2 (each word
/// little-endian: word `i` holds bytes `2i` and `2i+1`) and programmed into RAL0/RAH0 with
/// [`program_mac`] so the unicast filter accepts it.
///
/// # Errors
/// [`E1000eError::InvalidMac`] if the NVM address is not a valid unicast one; NVM read
/// errors as [`nvm_read_word`].
pub fn read_mac(regs: &impl Mmio, delay: &mut impl Delay) -> Result<[u8; 6], E1000eError> {
    let ral = regs.read32(RAL0);
    let rah = regs.read32(RAH0);
    if rah & RAH_AV != 0 {
        let l = ral.to_le_bytes();
        let h = rah.to_le_bytes();
        let mac = [l[0], l[1], l[2], l[3], h[0], h[1]];
        if is_valid_unicast(&mac) {
            return Ok(mac);
        }
        log::debug!("e1000e: RAL0/RAH0 hold {mac:02x?}, not a unicast address; reading NVM");
    }

    let mut mac = [0u8; 6];
    for i in 0..3u16 {
        let w = nvm_read_word(regs, delay, NVM_MAC_WORD0 + i)?.to_le_bytes();
        mac[2 * usize::from(i)] = w[0];
        mac[2 * usize::from(i) + 1] = w[1];
    }
    if !is_valid_unicast(&mac) {
        return Err(E1000eError::InvalidMac { mac });
    }
    program_mac(regs, mac);
    Ok(mac)
}

/// Programs `mac` into receive address 0 and marks it valid: RAL0 first, then RAH0 with
/// AV, so the filter never matches a half-written address (AV lives in RAH0).
pub fn program_mac(regs: &impl Mmio, mac: [u8; 6]) {
    regs.write32(RAL0, u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]));
    regs.write32(
        RAH0,
        u32::from(u16::from_le_bytes([mac[4], mac[5]])) | RAH_AV,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmio::{e1000e_nvm_image, RecordedRegs};

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    #[test]
    fn nvm_word_read_handshake() {
        let r = RecordedRegs::new();
        r.eerd(vec![0xAAAA, 0xBBBB, 0xCCCC, 0x1234], 3);
        let mut d = r.delay();
        assert_eq!(nvm_read_word(&r, &mut d, 3).unwrap(), 0x1234);
        assert_eq!(r.writes(), vec![(EERD, (3 << 2) | EERD_START)]);
        // Three reads without DONE, the fourth with it.
        assert_eq!(r.reads_of(EERD), 4);
        assert_eq!(r.elapsed_us(), 3 * u64::from(NVM_POLL_US));
    }

    #[test]
    fn nvm_timeout() {
        // QEMU's NVM has 64 words; word 0x40 never completes.
        let r = RecordedRegs::e1000e_qemu(MAC);
        let mut d = r.delay();
        assert_eq!(
            nvm_read_word(&r, &mut d, 0x40),
            Err(E1000eError::NvmTimeout { word: 0x40 })
        );
        assert_eq!(r.elapsed_us(), u64::from(NVM_TIMEOUT_US));
        assert_eq!(
            nvm_read_word(&r, &mut d, 0x4000),
            Err(E1000eError::NvmWordOutOfRange { word: 0x4000 })
        );
    }

    #[test]
    fn nvm_checksum_of_qemu_image() {
        let r = RecordedRegs::e1000e_qemu(MAC);
        assert!(nvm_checksum_ok(&r, &mut r.delay()).unwrap());
        r.eerd(vec![0; 64], 0);
        assert!(!nvm_checksum_ok(&r, &mut r.delay()).unwrap());
    }

    #[test]
    fn mac_from_ral_rah_when_valid() {
        let r = RecordedRegs::e1000e_qemu(MAC);
        assert_eq!(read_mac(&r, &mut r.delay()).unwrap(), MAC);
        // Two reads, no NVM access, nothing written.
        assert_eq!(r.reads_of(RAL0), 1);
        assert_eq!(r.reads_of(RAH0), 1);
        assert_eq!(r.reads_of(EERD), 0);
        assert!(r.writes().is_empty());
    }

    #[test]
    fn mac_from_nvm_when_rah_not_valid_then_programmed() {
        let r = RecordedRegs::new();
        r.eerd(e1000e_nvm_image(MAC), 0);
        // RAL0 holds junk, AV clear.
        r.set(RAL0, 0xdead_beef).set(RAH0, 0xbeef);
        assert_eq!(read_mac(&r, &mut r.delay()).unwrap(), MAC);
        let w = r.writes();
        assert_eq!(
            w,
            vec![
                (EERD, EERD_START),
                (EERD, (1 << 2) | EERD_START),
                (EERD, (2 << 2) | EERD_START),
                (RAL0, 0x1200_5452),
                (RAH0, RAH_AV | 0x5634),
            ]
        );
    }

    #[test]
    fn mac_from_nvm_when_ral_rah_hold_multicast() {
        let r = RecordedRegs::new();
        r.eerd(e1000e_nvm_image(MAC), 0);
        r.set(RAL0, 0x0000_0001).set(RAH0, RAH_AV);
        assert_eq!(read_mac(&r, &mut r.delay()).unwrap(), MAC);
        assert_eq!(r.get(RAH0), RAH_AV | 0x5634);
    }

    #[test]
    fn invalid_nvm_mac_is_an_error() {
        let r = RecordedRegs::new();
        r.eerd(vec![0xFFFF; 64], 0);
        assert_eq!(
            read_mac(&r, &mut r.delay()),
            Err(E1000eError::InvalidMac { mac: [0xFF; 6] })
        );
        assert_eq!(r.last_write(RAH0), None, "nothing programmed");
    }

    #[test]
    fn unicast_check() {
        assert!(is_valid_unicast(&MAC));
        assert!(!is_valid_unicast(&[0; 6]));
        assert!(!is_valid_unicast(&[0xFF; 6]));
        assert!(!is_valid_unicast(&[0x01, 0, 0x5e, 0, 0, 1]));
    }
}
