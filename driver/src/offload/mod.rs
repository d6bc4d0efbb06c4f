//! Software offloads: what tenge does itself where a device cannot.
//!
//! - [`gso`]: software GSO, the fallback for TSO (`PacketMeta::TX_TSO`): one TCP packet of
//!   up to 64 KB of payload cut into MSS-sized frames with every header and checksum right.
//! - [`lro`]: software LRO in the manner of FreeBSD's `tcp_lro.c`: in-order segments of one
//!   TCP flow within a receive burst merged into one chain, flushed at the end of the burst.
//!
//! Both are pure library code over [`PacketBuf`](crate::PacketBuf) chains and a
//! [`MempoolCache`](crate::MempoolCache): a port or queue decides when to call them (LRO is
//! off by default: it is wrong for a forwarding application, which must send what it got).
//! Neither panics on any input: a packet they cannot handle is an error or a counted pass.

pub mod gso;
pub mod lro;
pub mod soft_tx;
pub mod tx;

pub use gso::{Gso, GsoChecksum, GsoError, GsoStats};
pub use lro::{Lro, LroStats, NotEligible};

/// Ethernet II header length (IEEE 802.3 §3.1.1: two addresses and the EtherType).
pub(crate) const ETH_HLEN: usize = 14;
/// EtherType of IPv4.
pub(crate) const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub(crate) const ETHERTYPE_IPV6: u16 = 0x86dd;
/// EtherType of an IEEE 802.1Q VLAN tag.
pub(crate) const ETHERTYPE_VLAN: u16 = 0x8100;
/// IP protocol number of TCP (RFC 9293), also IPv6's next header value for it.
pub(crate) const IPPROTO_TCP: u8 = 6;
/// The fixed IPv4 header (RFC 791 §3.1, IHL 5).
pub(crate) const IPV4_HLEN: usize = 20;
/// The fixed IPv6 header (RFC 8200 §3).
pub(crate) const IPV6_HLEN: usize = 40;
/// The TCP header without options (RFC 9293 §3.1, data offset 5).
pub(crate) const TCP_HLEN: usize = 20;
/// The longest TCP header: data offset 15.
pub(crate) const TCP_MAX_HLEN: usize = 60;

/// TCP flag bits of byte 13 of the header (RFC 9293 §3.1; CWR and ECE from RFC 3168 §23.2).
pub mod tcp_flags {
    /// No more data from the sender.
    pub const FIN: u8 = 0x01;
    /// Synchronize sequence numbers.
    pub const SYN: u8 = 0x02;
    /// Reset the connection.
    pub const RST: u8 = 0x04;
    /// Push function.
    pub const PSH: u8 = 0x08;
    /// The acknowledgment field is significant.
    pub const ACK: u8 = 0x10;
    /// The urgent pointer is significant.
    pub const URG: u8 = 0x20;
    /// ECN-Echo.
    pub const ECE: u8 = 0x40;
    /// Congestion Window Reduced.
    pub const CWR: u8 = 0x80;
}

/// The big-endian `u16` at `at`, 0 past the end (callers check lengths first).
#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(w) => u16::from_be_bytes([w[0], w[1]]),
        None => 0,
    }
}

/// The big-endian `u32` at `at`, 0 past the end.
#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(w) => u32::from_be_bytes([w[0], w[1], w[2], w[3]]),
        None => 0,
    }
}

/// Writes `v` big-endian at `at` (nothing past the end).
#[inline]
pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    if let Some(w) = b.get_mut(at..at + 2) {
        w.copy_from_slice(&v.to_be_bytes());
    }
}

/// Writes `v` big-endian at `at` (nothing past the end).
#[inline]
pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    if let Some(w) = b.get_mut(at..at + 4) {
        w.copy_from_slice(&v.to_be_bytes());
    }
}

/// `a >= b` in sequence-number space (RFC 9293 §3.4: comparisons modulo 2^32), also the
/// rule for timestamps (RFC 7323 §5.3: TSval compared as a 32-bit signed difference).
#[inline]
pub(crate) fn seq_ge(a: u32, b: u32) -> bool {
    a.wrapping_sub(b) as i32 >= 0
}

#[cfg(test)]
pub(crate) mod testutil;

#[cfg(test)]
mod tests {
    use super::testutil::{bytes, check, tso, Spec};
    use super::*;
    use crate::packet::csum;
    use crate::packet::mempool::{host_pool, PacketMeta};
    use crate::ring::PacketBatch;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        /// The reference model: a TCP stream is its bytes from a sequence number on. Any
        /// packet cut by the GSO (any MSS, chain, flags, checksum mode) and received in
        /// bursts of any size by the LRO gives back frames that etherparse accepts with
        /// every checksum right, whose sequence numbers follow each other from the
        /// original's, whose payloads concatenate to the original, and whose segment
        /// counts add up to what the GSO made.
        #[test]
        fn gso_then_lro_gives_back_the_stream(
            v6 in any::<bool>(),
            len in prop_oneof![0usize..3000, 3000usize..30000],
            mss in prop_oneof![Just(536u16), Just(1448u16), 64u16..1500],
            ts in any::<bool>(),
            psh in any::<bool>(),
            fin in any::<bool>(),
            cwr in any::<bool>(),
            seq in any::<u32>(),
            cut in 1usize..2048,
            burst in 1usize..64,
            device_csum in any::<bool>(),
            trust in any::<bool>(),
        ) {
            let pool = host_pool(1024).unwrap();
            let mut cache = pool.cache(64);
            let flags = if psh { tcp_flags::PSH } else { 0 }
                | if fin { tcp_flags::FIN } else { 0 }
                | if cwr { tcp_flags::CWR } else { 0 };
            let spec = Spec { v6, seq, flags, ts: ts.then_some((7, 9)), ..Spec::default() };
            let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let pkt = tso(&mut cache, &spec, &data, mss, &[cut]);
            let mode = if device_csum { GsoChecksum::Device } else { GsoChecksum::Software };
            let mut gso = Gso::new(mode);
            let mut segs = PacketBatch::new(512);
            let n = gso.segment(&pkt, &mut cache, &mut segs).unwrap();
            drop(pkt);
            // The wire: the device finishes what it was asked to; the receiver's device
            // may vouch for the checksums.
            let mut wire = Vec::new();
            for mut s in segs.drain() {
                if device_csum {
                    let start = usize::from(s.meta().l2_len) + usize::from(s.meta().l3_len);
                    // What a device does for TCP: the complement of the sum, 0 kept as 0
                    // (complete_partial stores 0 as 0xffff, UDP's rule, which etherparse's
                    // canonical TCP checksum does not equal).
                    let sum = csum::sum_from(&s, start);
                    prop_assert!(sum.is_some());
                    let c = !csum::fold(sum.unwrap_or(0));
                    prop_assert!(csum::write_at(&mut s, start + 16, &c.to_be_bytes()));
                }
                check(&bytes(&s));
                *s.meta_mut() = PacketMeta::default();
                if trust {
                    s.meta_mut().flags = PacketMeta::RX_L4_CSUM_GOOD
                        | if v6 { 0 } else { PacketMeta::RX_IP_CSUM_GOOD };
                }
                wire.push(s);
            }
            let mut lro = Lro::default();
            let mut frames = Vec::new();
            let mut wire = wire.into_iter().peekable();
            while wire.peek().is_some() {
                let mut b = PacketBatch::new(burst);
                for s in wire.by_ref().take(burst) {
                    prop_assert!(b.push(s).is_ok());
                }
                lro.input(&mut b, &mut cache);
                for f in b.drain() {
                    frames.push((check(&bytes(&f)), *f.meta()));
                    cache.free(f);
                }
            }
            let mut next = seq;
            let mut got = Vec::new();
            let mut count = 0usize;
            for (i, (s, m)) in frames.iter().enumerate() {
                prop_assert_eq!(s.seq, next, "frame {} follows the one before", i);
                next = next.wrapping_add(s.payload.len() as u32);
                got.extend_from_slice(&s.payload);
                count += usize::from(m.segs.max(1));
                let last = i + 1 == frames.len();
                prop_assert_eq!(s.flags & tcp_flags::FIN != 0, fin && last);
                if m.flags & PacketMeta::RX_LRO != 0 {
                    prop_assert!(usize::from(m.mss) <= usize::from(mss));
                    prop_assert!(m.segs >= 2);
                }
            }
            prop_assert_eq!(got, data);
            prop_assert_eq!(count, n);
            // One burst for everything, nothing but the stream, under 64 KiB: the first
            // segment alone if it carries CWR, the last alone if it carries FIN (neither
            // is eligible), one frame for everything between.
            if burst >= n && n >= 2 && len + 100 < usize::from(u16::MAX) {
                let middle = n - usize::from(fin) - usize::from(cwr);
                let want = usize::from(fin) + usize::from(cwr) + usize::from(middle > 0);
                prop_assert_eq!(frames.len(), want);
            }
            drop(cache);
            prop_assert_eq!(pool.free_count(), 1024);
        }
    }
}
