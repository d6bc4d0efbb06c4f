//! Receive-side scaling on the 82576: the Toeplitz hash of each received IP frame over a
//! 40-byte key picks one of 128 redirection table entries, whose low 4 bits name the
//! queue (82576 §7.1.2.8, "Receive-Side Scaling").
//!
//! QEMU's igb runs RSS only with MRQC[2:0] = 010 and RXCSUM.PCSD set (the write-back then
//! carries the hash) (`igb_rss_enabled`); it hashes IPv4, TCP/IPv4, UDP/IPv4, IPv6(-ex),
//! TCP/IPv6 (as the -ex type) and UDP/IPv6 (`igb_rss_get_hash_type`), and takes the queue
//! as entry & 0xF (`E1000_RSS_QUEUE` in `igb_regs.h`).

use super::regs::*;
use crate::mmio::{write_byte_array, Mmio};

/// What [`configure_rss`] programs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RssSetup {
    /// The Toeplitz key, byte 0 first (as the RSS specification writes it).
    pub key: [u8; RSS_KEY_LEN],
    /// Queue (0..=15) of each of the 128 redirection table entries.
    pub queues: [u8; RETA_ENTRIES],
    /// `MRQC_TCPIPV4 | MRQC_UDPIPV4 | ...`: the hash types enabled.
    pub fields: u32,
}

/// Programs and enables RSS after the receive queues: MRQC cleared first, so no frame is
/// steered by a half-written table; the key (RSSRK, byte n in bits 8(n%4)+7:8(n%4) of
/// register n/4, which is how QEMU reads it as bytes); the table (RETA, entry n likewise,
/// the queue in its low 4 bits); RXCSUM.PCSD; MRQC last.
pub fn configure_rss(regs: &impl Mmio, setup: &RssSetup) {
    regs.write32(MRQC, 0);
    write_byte_array(regs, RSSRK, &setup.key);
    write_byte_array(regs, RETA, &setup.queues.map(|q| q & RETA_QUEUE_MASK));
    regs.write32(RXCSUM, regs.read32(RXCSUM) | RXCSUM_PCSD);
    regs.write32(MRQC, MRQC_ENABLE_RSS | setup.fields);
}

/// Turns RSS off: every frame to queue 0 again. PCSD stays set, so the write-back's hash
/// field reads 0 rather than the IP ID.
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
            .for_each(|(i, q)| *q = (i % 4) as u8);
        let r = RecordedRegs::new().with(RXCSUM, RXCSUM_IPOFLD | RXCSUM_TUOFLD);
        let fields = MRQC_IPV4 | MRQC_TCPIPV4 | MRQC_UDPIPV4;
        configure_rss(
            &r,
            &RssSetup {
                key,
                queues,
                fields,
            },
        );
        assert_eq!(r.get(RSSRK), 0x0302_0100);
        assert_eq!(r.get(RSSRK + 36), 0x2726_2524);
        // Entries 0..3 -> queues 0,1,2,3, byte n of the register is entry n.
        assert_eq!(r.get(RETA), 0x0302_0100);
        assert_eq!(r.get(RETA + 124), 0x0302_0100);
        assert_eq!(r.get(RXCSUM), RXCSUM_IPOFLD | RXCSUM_TUOFLD | RXCSUM_PCSD);
        assert_eq!(r.writes_to(MRQC), vec![0, MRQC_ENABLE_RSS | fields]);
        assert_eq!(r.last_write_index(MRQC), Some(r.log().len() - 1));
    }

    #[test]
    fn queue_numbers_keep_only_the_bits_qemu_reads() {
        let r = RecordedRegs::new();
        configure_rss(
            &r,
            &RssSetup {
                key: [0; RSS_KEY_LEN],
                queues: [0x1F; RETA_ENTRIES],
                fields: MRQC_IPV4,
            },
        );
        assert_eq!(r.get(RETA), 0x0F0F_0F0F);
        disable_rss(&r);
        assert_eq!(r.get(MRQC), 0);
    }
}
