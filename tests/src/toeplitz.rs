//! An independent Toeplitz hash (Microsoft's RSS hash), for the RSS tests to predict which
//! queue a flow lands on from a port's key and indirection table. Written from the
//! definition (for each set bit of the input, left to right, XOR in the 32 bits of the key
//! that start at that bit's position), not from tenge's code, and checked against the
//! published verification vectors ("Verifying the RSS Hash Calculation", Microsoft's NDIS
//! documentation) before anything relies on it.

/// The 40-byte key Microsoft's verification vectors use, which Linux and DPDK also take as
/// their default RSS key.
pub const DEFAULT_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// The Toeplitz hash of `input` under `key` (which must be at least 4 bytes longer than
/// the input).
pub fn hash(key: &[u8], input: &[u8]) -> u32 {
    assert!(key.len() >= input.len() + 4, "key too short for the input");
    let mut result = 0u32;
    for (i, byte) in input.iter().enumerate() {
        for bit in 0..8 {
            if byte & (0x80 >> bit) == 0 {
                continue;
            }
            // The 32 key bits starting at bit 8 * i + bit.
            let start = 8 * i + bit;
            let mut window = 0u32;
            for k in 0..32 {
                let pos = start + k;
                let kbit = (key[pos / 8] >> (7 - pos % 8)) & 1;
                window = (window << 1) | u32::from(kbit);
            }
            result ^= window;
        }
    }
    result
}

/// The RSS input of an IPv4 packet: source address, destination address, and with
/// `ports` the source and destination ports (TCP or UDP), all in network order.
pub fn ipv4_input(src: [u8; 4], dst: [u8; 4], ports: Option<(u16, u16)>) -> Vec<u8> {
    let mut v = [src, dst].concat();
    if let Some((sp, dp)) = ports {
        v.extend_from_slice(&sp.to_be_bytes());
        v.extend_from_slice(&dp.to_be_bytes());
    }
    v
}

/// The RSS input of an IPv6 packet, as [`ipv4_input`].
pub fn ipv6_input(src: [u8; 16], dst: [u8; 16], ports: Option<(u16, u16)>) -> Vec<u8> {
    let mut v = [src, dst].concat();
    if let Some((sp, dp)) = ports {
        v.extend_from_slice(&sp.to_be_bytes());
        v.extend_from_slice(&dp.to_be_bytes());
    }
    v
}

/// What a device that hashes `types` (names as tenge prints them: `ipv4`, `tcp-ipv4`,
/// `udp-ipv4`, `ipv6`, `tcp-ipv6`, `udp-ipv6`) under `key` should report for the Ethernet
/// frame `frame`: the hash type's name (`none` for a frame it does not hash) and the hash.
/// The frame is parsed with etherparse, not with anything of tenge's; TCP and UDP are
/// hashed with their ports only when their type is enabled, else by the addresses (the
/// rule of the RSS specification, the 82574 and virtio 1.2 §5.1.6.4.3.1).
pub fn expected(frame: &[u8], key: &[u8], types: &[&str]) -> (&'static str, Option<u32>) {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    let Ok(p) = SlicedPacket::from_ethernet(frame) else {
        return ("none", None);
    };
    let ports = match &p.transport {
        Some(TransportSlice::Tcp(t)) => Some(("tcp", (t.source_port(), t.destination_port()))),
        Some(TransportSlice::Udp(u)) => Some(("udp", (u.source_port(), u.destination_port()))),
        _ => None,
    };
    let has = |t: &str| types.contains(&t);
    let pick = |v: &'static str, tcp: &'static str, udp: &'static str| match ports {
        Some(("tcp", p)) if has(tcp) => Some((tcp, Some(p))),
        Some(("udp", p)) if has(udp) => Some((udp, Some(p))),
        _ if has(v) => Some((v, None)),
        _ => None,
    };
    match &p.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header();
            match pick("ipv4", "tcp-ipv4", "udp-ipv4") {
                Some((name, ports)) => (
                    name,
                    Some(hash(key, &ipv4_input(h.source(), h.destination(), ports))),
                ),
                None => ("none", None),
            }
        }
        Some(NetSlice::Ipv6(ip)) => {
            let h = ip.header();
            match pick("ipv6", "tcp-ipv6", "udp-ipv6") {
                Some((name, ports)) => (
                    name,
                    Some(hash(key, &ipv6_input(h.source(), h.destination(), ports))),
                ),
                None => ("none", None),
            }
        }
        _ => ("none", None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An address and port.
    type Endpoint = ([u8; 4], u16);

    /// Microsoft's IPv4 verification vectors: (destination, source, IPv4-only hash,
    /// TCP/IPv4 hash).
    const IPV4: [(Endpoint, Endpoint, u32, u32); 5] = [
        (
            ([161, 142, 100, 80], 1766),
            ([66, 9, 149, 187], 2794),
            0x323e8fc2,
            0x51ccc178,
        ),
        (
            ([65, 69, 140, 83], 4739),
            ([199, 92, 111, 2], 14230),
            0xd718262a,
            0xc626b0ea,
        ),
        (
            ([12, 22, 207, 184], 38024),
            ([24, 19, 198, 95], 12898),
            0xd2d0a5de,
            0x5c2b394a,
        ),
        (
            ([209, 142, 163, 6], 2217),
            ([38, 27, 205, 30], 48228),
            0x82989176,
            0xafc7327f,
        ),
        (
            ([202, 188, 127, 2], 1303),
            ([153, 39, 163, 191], 44251),
            0x5d1809c5,
            0x10e828a2,
        ),
    ];

    #[test]
    fn matches_the_published_ipv4_vectors() {
        for ((dst, dport), (src, sport), ip, tcp) in IPV4 {
            assert_eq!(
                hash(&DEFAULT_KEY, &ipv4_input(src, dst, None)),
                ip,
                "{src:?} -> {dst:?}"
            );
            assert_eq!(
                hash(&DEFAULT_KEY, &ipv4_input(src, dst, Some((sport, dport)))),
                tcp,
                "{src:?}:{sport} -> {dst:?}:{dport}"
            );
        }
    }

    /// Microsoft's first IPv6 vector: 3ffe:2501:200:3::1 port 1766 from
    /// 3ffe:2501:200:1fff::7 port 2794: IPv6 0x2cc18cd5, TCP/IPv6 0x40207d3d.
    #[test]
    fn matches_the_published_ipv6_vector() {
        let dst = [
            0x3f, 0xfe, 0x25, 0x01, 0x02, 0x00, 0x00, 0x03, 0, 0, 0, 0, 0, 0, 0, 1,
        ];
        let src = [
            0x3f, 0xfe, 0x25, 0x01, 0x02, 0x00, 0x1f, 0xff, 0, 0, 0, 0, 0, 0, 0, 7,
        ];
        assert_eq!(hash(&DEFAULT_KEY, &ipv6_input(src, dst, None)), 0x2cc18cd5);
        assert_eq!(
            hash(&DEFAULT_KEY, &ipv6_input(src, dst, Some((2794, 1766)))),
            0x40207d3d
        );
    }

    /// `expected` parses a frame built by etherparse and hashes what its types say.
    #[test]
    fn expected_follows_the_enabled_types() {
        let (src, dst) = ([66, 9, 149, 187], [161, 142, 100, 80]);
        let frame = |udp: bool| {
            let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                .ipv4(src, dst, 64);
            let mut out = Vec::new();
            if udp {
                b.udp(2794, 1766).write(&mut out, &[0; 20]).unwrap();
            } else {
                b.tcp(2794, 1766, 1, 1000)
                    .write(&mut out, &[0; 20])
                    .unwrap();
            }
            out
        };
        let all = ["ipv4", "tcp-ipv4", "ipv6", "tcp-ipv6"];
        assert_eq!(
            expected(&frame(false), &DEFAULT_KEY, &all),
            ("tcp-ipv4", Some(0x51ccc178))
        );
        assert_eq!(
            expected(&frame(true), &DEFAULT_KEY, &all),
            ("ipv4", Some(0x323e8fc2))
        );
        assert_eq!(
            expected(&frame(true), &DEFAULT_KEY, &["udp-ipv4"]),
            ("udp-ipv4", Some(0x51ccc178))
        );
        assert_eq!(
            expected(&frame(false), &DEFAULT_KEY, &["ipv6"]),
            ("none", None)
        );
        assert_eq!(expected(&[0u8; 60], &DEFAULT_KEY, &all), ("none", None));
    }
}
