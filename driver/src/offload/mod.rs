//! Software offloads: what tenge does itself where a device cannot.
//!
//! - [`gso`]: software GSO, the fallback for TSO (`PacketMeta::TX_TSO`): one TCP packet of
//!   up to 64 KB of payload cut into MSS-sized frames with every header and checksum right.
//!
//! Both are pure library code over [`PacketBuf`](crate::PacketBuf) chains and a
//! [`MempoolCache`](crate::MempoolCache): a port or queue decides when to call them (LRO is
//! off by default: it is wrong for a forwarding application, which must send what it got).
//! Neither panics on any input: a packet they cannot handle is an error or a counted pass.

pub mod gso;

pub use gso::{Gso, GsoChecksum, GsoError, GsoStats};

/// Ethernet II header length (IEEE 802.3 §3.1.1: two addresses and the EtherType).
pub(crate) const ETH_HLEN: usize = 14;
/// EtherType of IPv4.
pub(crate) const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub(crate) const ETHERTYPE_IPV6: u16 = 0x86dd;
/// EtherType of an IEEE 802.1Q VLAN tag.
#[allow(dead_code)] // LRO's, next
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
#[allow(dead_code)] // LRO's, next
pub(crate) fn seq_ge(a: u32, b: u32) -> bool {
    a.wrapping_sub(b) as i32 >= 0
}

#[cfg(test)]
pub(crate) mod testutil;
