//! Receive-side scaling on the 82574: the device hashes each received IP frame with the
//! Toeplitz function over a 40-byte key and sends it to the queue its redirection table
//! names for the hash's low 7 bits (82574 §7.1.1.7, "Receive-Side Scaling").
//!
//! QEMU's e1000e runs RSS only with MRQC[1:0] = 01, RXCSUM.PCSD set (the write-back then
//! carries the hash instead of the IP ID and packet checksum) and extended descriptors
//! (RFCTL.EXSTEN) (`e1000e_rss_enabled`, `hw/net/e1000e_core.c`). The 82574 hashes IPv4,
//! TCP/IPv4, IPv6 and TCP/IPv6; it has no UDP hash type (a UDP frame is hashed as IP).

use super::regs::*;
use crate::mmio::{write_byte_array, Mmio};

/// What [`configure_rss`] programs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RssSetup {
    /// The Toeplitz key, byte 0 first (as the RSS specification writes it).
    pub key: [u8; RSS_KEY_LEN],
    /// Queue (0 or 1) of each of the 128 redirection table entries.
    pub queues: [u8; RETA_ENTRIES],
    /// `MRQC_TCPIPV4 | MRQC_IPV4 | ...`: the hash types enabled.
    pub fields: u32,
}

/// Programs and enables RSS, after [`super::configure_rx`] and
/// [`super::configure_rx_queue`]: MRQC cleared first, so no frame is steered by a
/// half-written table; the key (RSSRK, byte n in bits 8(n%4)+7:8(n%4) of register n/4,
/// which is how QEMU reads it as bytes); the table (RETA, entry n likewise, queue 1 as bit
/// 7); RXCSUM.PCSD; MRQC last.
pub fn configure_rss(regs: &impl Mmio, setup: &RssSetup) {
    regs.write32(MRQC, 0);
    write_byte_array(regs, RSSRK, &setup.key);
    write_byte_array(
        regs,
        RETA,
        &setup
            .queues
            .map(|q| if q & 1 != 0 { RETA_QUEUE1 } else { 0 }),
    );
    regs.write32(RXCSUM, regs.read32(RXCSUM) | RXCSUM_PCSD);
    regs.write32(MRQC, MRQC_RSS | setup.fields);
}

/// Turns RSS off: every frame to queue 0 again. PCSD stays set, so the write-back's hash
/// field is 0 rather than the IP ID.
pub fn disable_rss(regs: &impl Mmio) {
    regs.write32(MRQC, 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmio::RecordedRegs;

    #[test]
    fn key_and_table_land_byte_for_byte_and_mrqc_goes_last() {
        let mut key = [0u8; RSS_KEY_LEN];
        key.iter_mut().enumerate().for_each(|(i, k)| *k = i as u8);
        let mut queues = [0u8; RETA_ENTRIES];
        queues
            .iter_mut()
            .enumerate()
            .for_each(|(i, q)| *q = (i % 2) as u8);
        let r = RecordedRegs::new().with(RXCSUM, RXCSUM_IPOFLD);
        configure_rss(
            &r,
            &RssSetup {
                key,
                queues,
                fields: MRQC_IPV4 | MRQC_TCPIPV4,
            },
        );
        assert_eq!(r.get(RSSRK), 0x0302_0100);
        assert_eq!(r.get(RSSRK + 36), 0x2726_2524);
        assert_eq!(r.get(RETA), 0x8000_8000);
        assert_eq!(r.get(RETA + 124), 0x8000_8000);
        assert_eq!(r.get(RXCSUM), RXCSUM_IPOFLD | RXCSUM_PCSD);
        assert_eq!(
            r.writes_to(MRQC),
            vec![0, MRQC_RSS | MRQC_IPV4 | MRQC_TCPIPV4]
        );
        assert_eq!(r.last_write_index(MRQC), Some(r.log().len() - 1));
    }
}
