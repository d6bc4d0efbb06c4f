//! The test frame: Ethernet + IPv4 + UDP, with a sequence number in the payload, so the far
//! end (a pcap of the wire, a receiver) can check every frame byte for byte and in order.
//!
//! Layout (offsets in the frame): 0 Ethernet, 14 IPv4 (20 bytes, no options), 34 UDP,
//! 42 payload: `MAGIC` (4 bytes), sequence number (u64 big-endian), then a fixed pattern.

/// Marks a tenge test frame.
pub const MAGIC: [u8; 4] = *b"TNGE";
/// Offset of the magic.
pub const MAGIC_OFFSET: usize = 42;
/// Offset of the sequence number.
pub const SEQ_OFFSET: usize = 46;
/// Smallest frame that holds the header and the sequence number (the 60-byte Ethernet
/// minimum without FCS).
pub const MIN_SIZE: usize = 60;
/// Largest frame (1500-byte MTU + Ethernet header).
pub const MAX_SIZE: usize = 1514;
/// UDP port both ends use (the discard port).
pub const UDP_PORT: u16 = 9;

/// Addresses of a test flow.
#[derive(Clone, Copy, Debug)]
pub struct Flow {
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// Source IPv4 address.
    pub src_ip: [u8; 4],
    /// Destination IPv4 address.
    pub dst_ip: [u8; 4],
}

impl Default for Flow {
    fn default() -> Self {
        Flow {
            src_mac: [0x02, 0, 0, 0, 0, 0x01],
            dst_mac: [0xff; 6],
            src_ip: [198, 18, 0, 1],
            dst_ip: [198, 18, 0, 2],
        }
    }
}

fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The frame with sequence number 0, `size` bytes (clamped to MIN_SIZE..=MAX_SIZE).
pub fn template(flow: &Flow, size: usize) -> Vec<u8> {
    let size = size.clamp(MIN_SIZE, MAX_SIZE);
    let mut f = vec![0u8; size];
    f[0..6].copy_from_slice(&flow.dst_mac);
    f[6..12].copy_from_slice(&flow.src_mac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = (size - 14) as u16;
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[6] = 0x40; // don't fragment
    ip[8] = 64; // TTL
    ip[9] = 17; // UDP
    ip[12..16].copy_from_slice(&flow.src_ip);
    ip[16..20].copy_from_slice(&flow.dst_ip);
    let csum = ipv4_checksum(ip);
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    let udp_len = ip_len - 20;
    f[34..36].copy_from_slice(&UDP_PORT.to_be_bytes());
    f[36..38].copy_from_slice(&UDP_PORT.to_be_bytes());
    f[38..40].copy_from_slice(&udp_len.to_be_bytes());
    // UDP checksum 0: "no checksum" (RFC 768), so the sequence number can change alone.
    f[MAGIC_OFFSET..MAGIC_OFFSET + 4].copy_from_slice(&MAGIC);
    for (i, b) in f[SEQ_OFFSET + 8..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(7).wrapping_add(3);
    }
    f
}

/// Writes sequence number `seq` into a frame built from [`template`].
#[inline(always)]
pub fn set_seq(frame: &mut [u8], seq: u64) {
    frame[SEQ_OFFSET..SEQ_OFFSET + 8].copy_from_slice(&seq.to_be_bytes());
}

/// Makes a frame from [`template`] one of flow `k` of a set: source address 198.19.x.y
/// with x.y = `k` (RFC 2544's benchmarking range), the IPv4 header checksum redone. A
/// receiver's RSS hashes each such flow apart.
pub fn set_flow(frame: &mut [u8], k: u16) {
    let ip = &mut frame[14..34];
    ip[12..16].copy_from_slice(&[198, 19, (k >> 8) as u8, k as u8]);
    ip[10..12].fill(0);
    let csum = ipv4_checksum(ip);
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
}

/// The whole frame number `seq`.
pub fn build(flow: &Flow, size: usize, seq: u64) -> Vec<u8> {
    let mut f = template(flow, size);
    set_seq(&mut f, seq);
    f
}

/// The sequence number of a test frame, or None if `frame` is not one.
pub fn seq_of(frame: &[u8]) -> Option<u64> {
    if frame.len() < MIN_SIZE || frame[MAGIC_OFFSET..MAGIC_OFFSET + 4] != MAGIC {
        return None;
    }
    Some(u64::from_be_bytes(
        frame[SEQ_OFFSET..SEQ_OFFSET + 8].try_into().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_their_sequence_and_a_valid_ip_header() {
        let f = build(&Flow::default(), 64, 0x0102_0304_0506_0708);
        assert_eq!(f.len(), 64);
        assert_eq!(seq_of(&f), Some(0x0102_0304_0506_0708));
        assert_eq!(ipv4_checksum(&f[14..34]), 0, "a correct header sums to 0");
        assert_eq!(template(&Flow::default(), 10).len(), MIN_SIZE);
        let mut g = f.clone();
        set_flow(&mut g, 0x0102);
        assert_eq!(&g[26..30], &[198, 19, 1, 2]);
        assert_eq!(ipv4_checksum(&g[14..34]), 0, "redone for the new address");
        assert_eq!(seq_of(&g), seq_of(&f));
        assert_eq!(template(&Flow::default(), 9000).len(), MAX_SIZE);
        assert_eq!(seq_of(&f[..30]), None);
        let mut other = f.clone();
        other[MAGIC_OFFSET] ^= 1;
        assert_eq!(seq_of(&other), None);
    }
}
