//! The TX offload test's packets, built the same way on both sides: the guest's
//! `tenge-e2e tx-offload` sends them with offload requests (and their checksum fields
//! scrambled, so only the device's work can make them right), and the host test rebuilds
//! them to check what QEMU's pcap holds, parsed by etherparse.

use etherparse::PacketBuilder;

/// Source and destination MACs of every test packet.
pub const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0f, 0x01];
/// Destination MAC.
pub const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0f, 0x02];

/// One packet of the test: what it is and what it asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Case {
    /// IPv6 rather than IPv4.
    pub v6: bool,
    /// UDP rather than TCP.
    pub udp: bool,
    /// L4 payload bytes.
    pub payload: usize,
    /// TSO with this MSS (0: a checksum request only).
    pub mss: u16,
    /// UDP: the payload's last two bytes chosen so that the checksum computes to 0, which
    /// must go on the wire as 0xffff (RFC 768: 0 means "no checksum").
    pub zero_udp_csum: bool,
}

/// The cases, in the order they are sent: checksums of TCP and UDP over IPv4 and IPv6 at a
/// few sizes (odd ones, and a UDP payload whose checksum computes to 0), then TSO of IPv4
/// and IPv6 with odd payload lengths near 64 KB and MSS 536 and 1448 (1440 over IPv6).
pub fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for v6 in [false, true] {
        for udp in [false, true] {
            for payload in [1, 17, 333, 1000] {
                v.push(Case {
                    v6,
                    udp,
                    payload,
                    mss: 0,
                    zero_udp_csum: false,
                });
            }
        }
        v.push(Case {
            v6,
            udp: true,
            payload: 100,
            mss: 0,
            zero_udp_csum: true,
        });
        // The largest MSS whose frames fit a 1500-byte MTU: 1460 over IPv4, 1440 over
        // IPv6 (no TCP options); 1448 is IPv4's with timestamps.
        let big = if v6 { 1440 } else { 1448 };
        for (payload, mss) in [(64_001, big), (20_001, 536), (big as usize + 1, big)] {
            v.push(Case {
                v6,
                udp: false,
                payload,
                mss,
                zero_udp_csum: false,
            });
        }
    }
    v
}

/// The payload byte `i` of case `n`.
fn payload_byte(n: usize, i: usize) -> u8 {
    (i.wrapping_mul(31) ^ n.wrapping_mul(7)) as u8
}

/// Case `n`'s payload.
pub fn payload(n: usize, c: &Case) -> Vec<u8> {
    let mut p: Vec<u8> = (0..c.payload).map(|i| payload_byte(n, i)).collect();
    if c.zero_udp_csum && c.udp && p.len() >= 2 && p.len().is_multiple_of(2) {
        // The ones'-complement sum of the pseudo-header, the UDP header (checksum 0) and
        // the payload but its last word; that word then brings the sum to 0xffff, whose
        // complement, the checksum, is 0.
        let mut words: Vec<u16> = Vec::new();
        let mut push = |b: &[u8]| {
            words.extend(b.chunks(2).map(|w| u16::from_be_bytes([w[0], w[1]])));
        };
        if c.v6 {
            let (a, b) = addrs6(n);
            push(&a);
            push(&b);
        } else {
            let (a, b) = addrs4(n);
            push(&a);
            push(&b);
        }
        let udp_len = (8 + p.len()) as u16;
        push(&[0, 17]);
        push(&udp_len.to_be_bytes());
        push(&(4000 + n as u16).to_be_bytes());
        push(&9u16.to_be_bytes());
        push(&udp_len.to_be_bytes());
        let last = p.len() - 2;
        push(&p[..last]);
        let mut sum: u32 = words.iter().map(|&w| u32::from(w)).sum();
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        p[last..].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    }
    p
}

/// The addresses of case `n`: one flow per case.
fn addrs4(n: usize) -> ([u8; 4], [u8; 4]) {
    ([10, 7, 0, 1], [10, 7, (n >> 8) as u8, n as u8])
}

fn addrs6(n: usize) -> ([u8; 16], [u8; 16]) {
    let mut a = [0u8; 16];
    a[0] = 0xfd;
    let mut b = a;
    a[15] = 1;
    b[14] = (n >> 8) as u8;
    b[15] = n as u8 | 2;
    (a, b)
}

/// The TCP sequence number of case `n`'s first byte.
pub fn first_seq(n: usize) -> u32 {
    0x1000_0000u32
        .wrapping_mul(n as u32 + 1)
        .wrapping_add(12345)
}

/// Case `n` as one frame (its L3 length field as the whole payload would have it), with
/// correct checksums: the guest scrambles them before sending. Returns the frame and its
/// L2, L3 and L4 header lengths.
pub fn frame(n: usize, c: &Case) -> (Vec<u8>, [u8; 3]) {
    let b = PacketBuilder::ethernet2(SRC_MAC, DST_MAC);
    let b = if c.v6 {
        let (s, d) = addrs6(n);
        b.ipv6(s, d, 64)
    } else {
        let (s, d) = addrs4(n);
        b.ipv4(s, d, 64)
    };
    let mut f = Vec::new();
    let l4 = if c.udp {
        b.udp(4000 + n as u16, 9)
            .write(&mut f, &payload(n, c))
            .expect("udp");
        8
    } else {
        // ACK|PSH, as a stack's last write would be: PSH must end up on the last segment.
        b.tcp(5000 + n as u16, 80, first_seq(n), 4096)
            .ack(1)
            .psh()
            .write(&mut f, &payload(n, c))
            .expect("tcp");
        20
    };
    (f, [14, if c.v6 { 40 } else { 20 }, l4])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The forced cases' UDP checksum computes to 0: etherparse writes it as 0xffff.
    #[test]
    fn zero_checksum_cases_carry_0xffff() {
        let all = cases();
        let zeros: Vec<_> = all
            .iter()
            .enumerate()
            .filter(|(_, c)| c.zero_udp_csum)
            .collect();
        assert_eq!(zeros.len(), 2);
        for (n, c) in zeros {
            let (f, h) = frame(n, c);
            let at = usize::from(h[0]) + usize::from(h[1]) + 6;
            assert_eq!(f[at..at + 2], [0xff, 0xff], "case {n}");
        }
    }

    #[test]
    fn frames_parse_and_tso_cases_exceed_one_frame() {
        for (n, c) in cases().iter().enumerate() {
            let (f, h) = frame(n, c);
            assert_eq!(
                f.len(),
                h.iter().map(|&x| usize::from(x)).sum::<usize>() + c.payload
            );
            assert!(etherparse::SlicedPacket::from_ethernet(&f).is_ok());
            if c.mss > 0 {
                assert!(c.payload > usize::from(c.mss));
            }
        }
    }
}
