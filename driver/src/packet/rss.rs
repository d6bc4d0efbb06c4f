//! Receive-side scaling, the same for every device: which header fields a device hashes
//! ([`RssHashTypes`]), the Toeplitz key and the indirection table that maps a hash to a
//! queue ([`RssConfig`]), and what a received packet says it was hashed as ([`RssType`],
//! in [`crate::PacketMeta`]).
//!
//! The numbering follows virtio-net's (virtio 1.2 §5.1.6.4.3.1 hash types,
//! §5.1.6.4.5 hash report), the most complete of tenge's devices; the 82574 and igb's RSS
//! type field is translated to it.

use std::fmt;

/// The 40-byte Toeplitz key Microsoft's RSS verification vectors use, which Linux and DPDK
/// also take as their default: a port spreads flows the way those stacks would.
pub const DEFAULT_RSS_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// A set of header fields a device may hash (virtio's `VIRTIO_NET_RSS_HASH_TYPE_*` bits).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RssHashTypes(u32);

impl RssHashTypes {
    /// IPv4 source and destination address.
    pub const IPV4: Self = Self(1 << 0);
    /// TCP over IPv4: addresses and ports.
    pub const TCP_IPV4: Self = Self(1 << 1);
    /// UDP over IPv4: addresses and ports.
    pub const UDP_IPV4: Self = Self(1 << 2);
    /// IPv6 source and destination address.
    pub const IPV6: Self = Self(1 << 3);
    /// TCP over IPv6: addresses and ports.
    pub const TCP_IPV6: Self = Self(1 << 4);
    /// UDP over IPv6: addresses and ports.
    pub const UDP_IPV6: Self = Self(1 << 5);
    /// IPv6 with the addresses of its extension headers (home address, routing header).
    pub const IPV6_EX: Self = Self(1 << 6);
    /// TCP over IPv6 with extension-header addresses.
    pub const TCP_IPV6_EX: Self = Self(1 << 7);
    /// UDP over IPv6 with extension-header addresses.
    pub const UDP_IPV6_EX: Self = Self(1 << 8);
    /// Nothing hashed.
    pub const NONE: Self = Self(0);
    /// What every tenge device hashes: IPv4, TCP/IPv4, IPv6, TCP/IPv6 (the 82574 has no UDP
    /// hash; a UDP frame is then hashed by its addresses).
    pub const DEFAULT: Self =
        Self(Self::IPV4.0 | Self::TCP_IPV4.0 | Self::IPV6.0 | Self::TCP_IPV6.0);

    const NAMES: [(Self, &'static str); 9] = [
        (Self::IPV4, "ipv4"),
        (Self::TCP_IPV4, "tcp-ipv4"),
        (Self::UDP_IPV4, "udp-ipv4"),
        (Self::IPV6, "ipv6"),
        (Self::TCP_IPV6, "tcp-ipv6"),
        (Self::UDP_IPV6, "udp-ipv6"),
        (Self::IPV6_EX, "ipv6-ex"),
        (Self::TCP_IPV6_EX, "tcp-ipv6-ex"),
        (Self::UDP_IPV6_EX, "udp-ipv6-ex"),
    ];

    /// The virtio bit mask.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// From a virtio bit mask (unknown bits dropped).
    pub const fn from_bits_truncate(bits: u32) -> Self {
        Self(bits & 0x1ff)
    }

    /// Whether every type of `other` is in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The types of `self` not in `supported`.
    pub const fn difference(self, supported: Self) -> Self {
        Self(self.0 & !supported.0)
    }

    /// No type at all.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::BitOr for RssHashTypes {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl std::str::FromStr for RssHashTypes {
    type Err = String;

    /// Names as [`Display`](fmt::Display) writes them, joined by `|` or `,`: `ipv4,tcp-ipv4`.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut t = Self::NONE;
        for name in s.split(['|', ',']).map(str::trim).filter(|n| !n.is_empty()) {
            match Self::NAMES.iter().find(|(_, n)| *n == name) {
                Some((bit, _)) => t = t | *bit,
                None if name == "none" => {}
                None => {
                    let known: Vec<&str> = Self::NAMES.iter().map(|(_, n)| *n).collect();
                    return Err(format!(
                        "'{name}' is not an RSS hash type; use {}",
                        known.join(", ")
                    ));
                }
            }
        }
        Ok(t)
    }
}

impl fmt::Debug for RssHashTypes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for RssHashTypes {
    /// `ipv4|tcp-ipv4`, or `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        let names: Vec<&str> = Self::NAMES
            .iter()
            .filter(|(t, _)| self.contains(*t))
            .map(|(_, n)| *n)
            .collect();
        f.write_str(&names.join("|"))
    }
}

/// What the device hashed a received packet as (virtio's `VIRTIO_NET_HASH_REPORT_*`
/// numbering): [`crate::PacketMeta::rss_type`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum RssType {
    /// No hash: RSS off, not IP, or a type the port does not hash.
    #[default]
    None = 0,
    /// Hashed as IPv4 (addresses).
    Ipv4 = 1,
    /// Hashed as TCP/IPv4.
    TcpIpv4 = 2,
    /// Hashed as UDP/IPv4.
    UdpIpv4 = 3,
    /// Hashed as IPv6 (addresses).
    Ipv6 = 4,
    /// Hashed as TCP/IPv6.
    TcpIpv6 = 5,
    /// Hashed as UDP/IPv6.
    UdpIpv6 = 6,
    /// Hashed as IPv6 with extension-header addresses.
    Ipv6Ex = 7,
    /// Hashed as TCP/IPv6 with extension-header addresses.
    TcpIpv6Ex = 8,
    /// Hashed as UDP/IPv6 with extension-header addresses.
    UdpIpv6Ex = 9,
}

impl RssType {
    /// From virtio's hash report number; anything unknown is `None`.
    pub const fn from_report(n: u32) -> Self {
        match n {
            1 => Self::Ipv4,
            2 => Self::TcpIpv4,
            3 => Self::UdpIpv4,
            4 => Self::Ipv6,
            5 => Self::TcpIpv6,
            6 => Self::UdpIpv6,
            7 => Self::Ipv6Ex,
            8 => Self::TcpIpv6Ex,
            9 => Self::UdpIpv6Ex,
            _ => Self::None,
        }
    }

    /// A short name: `tcp-ipv4`, `none`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Ipv4 => "ipv4",
            Self::TcpIpv4 => "tcp-ipv4",
            Self::UdpIpv4 => "udp-ipv4",
            Self::Ipv6 => "ipv6",
            Self::TcpIpv6 => "tcp-ipv6",
            Self::UdpIpv6 => "udp-ipv6",
            Self::Ipv6Ex => "ipv6-ex",
            Self::TcpIpv6Ex => "tcp-ipv6-ex",
            Self::UdpIpv6Ex => "udp-ipv6-ex",
        }
    }
}

/// How a port spreads received frames over its queues: the device computes the Toeplitz
/// hash of each frame's [`types`](Self::types) fields under [`key`](Self::key), and the
/// frame goes to queue `table[hash % table.len()]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RssConfig {
    /// The Toeplitz key (40 bytes on every tenge device).
    pub key: Vec<u8>,
    /// The indirection table: a queue index per entry. Its length is the device's (128 on
    /// the 82574; a power of two up to the device's maximum on virtio-net).
    pub table: Vec<u16>,
    /// The header fields hashed.
    pub types: RssHashTypes,
}

impl RssConfig {
    /// The default for `queues` queues and a table of `entries`: [`DEFAULT_RSS_KEY`],
    /// entries round-robin over the queues, [`RssHashTypes::DEFAULT`].
    pub fn new(queues: u16, entries: usize) -> Self {
        RssConfig {
            key: DEFAULT_RSS_KEY.to_vec(),
            table: (0..entries)
                .map(|i| (i % usize::from(queues.max(1))) as u16)
                .collect(),
            types: RssHashTypes::DEFAULT,
        }
    }

    /// The queue a frame with `hash` goes to.
    pub fn queue_of(&self, hash: u32) -> Option<u16> {
        let n = self.table.len();
        (n > 0).then(|| self.table[hash as usize % n])
    }

    /// What is wrong with this configuration for a device with `queues` queues, a key of
    /// `key_len` bytes, a table of exactly `table_len` entries (or, `table_len_pow2`, a
    /// power of two up to it) and the hash types `supported`; `device` names it in the
    /// message.
    pub(crate) fn problem(
        &self,
        device: &str,
        queues: u16,
        key_len: usize,
        table_len: usize,
        table_len_pow2: bool,
        supported: RssHashTypes,
    ) -> Option<String> {
        if self.key.len() != key_len {
            return Some(format!(
                "a {}-byte key, but {device} takes a {key_len}-byte key",
                self.key.len()
            ));
        }
        let n = self.table.len();
        if table_len_pow2 {
            if !n.is_power_of_two() || n > table_len {
                return Some(format!(
                    "an indirection table of {n} entries, but {device} takes a power of two \
                     up to {table_len}"
                ));
            }
        } else if n != table_len {
            return Some(format!(
                "an indirection table of {n} entries, but {device} has exactly {table_len}"
            ));
        }
        if let Some(q) = self.table.iter().find(|&&q| q >= queues) {
            return Some(format!(
                "the indirection table names queue {q}, but the port has {queues} queue \
                 pair(s)"
            ));
        }
        let missing = self.types.difference(supported);
        if !missing.is_empty() {
            return Some(format!(
                "hash types {missing}, which {device} cannot hash (it hashes {supported}); \
                 leave them out"
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_spreads_round_robin_over_the_queues() {
        let c = RssConfig::new(2, 128);
        assert_eq!(c.key, DEFAULT_RSS_KEY);
        assert_eq!(&c.table[..4], &[0, 1, 0, 1]);
        assert_eq!(c.queue_of(0x8000_0003), Some(1));
        assert_eq!(c.types.to_string(), "ipv4|tcp-ipv4|ipv6|tcp-ipv6");
    }

    #[test]
    fn problems_name_what_the_device_cannot_do() {
        let e1000e =
            |c: &RssConfig| c.problem("the 82574", 2, 40, 128, false, RssHashTypes::DEFAULT);
        assert_eq!(e1000e(&RssConfig::new(2, 128)), None);
        let mut udp = RssConfig::new(2, 128);
        udp.types = udp.types | RssHashTypes::UDP_IPV4;
        let e = e1000e(&udp).unwrap();
        assert!(e.contains("udp-ipv4") && e.contains("cannot hash"), "{e}");
        let e = e1000e(&RssConfig::new(4, 128)).unwrap();
        assert!(e.contains("queue 2"), "{e}");
        let e = e1000e(&RssConfig::new(2, 64)).unwrap();
        assert!(e.contains("exactly 128"), "{e}");
        let mut key = RssConfig::new(2, 128);
        key.key.pop();
        assert!(e1000e(&key).unwrap().contains("39-byte key"));
        let virtio =
            |c: &RssConfig| c.problem("virtio-net", 4, 40, 128, true, RssHashTypes::DEFAULT);
        assert_eq!(virtio(&RssConfig::new(4, 64)), None);
        assert!(virtio(&RssConfig::new(4, 96))
            .unwrap()
            .contains("power of two"));
        assert!(virtio(&RssConfig::new(4, 256)).is_some());
    }

    #[test]
    fn hash_type_names_round_trip() {
        let t: RssHashTypes = "ipv4,udp-ipv6|tcp-ipv4".parse().unwrap();
        assert_eq!(
            t,
            RssHashTypes::IPV4 | RssHashTypes::UDP_IPV6 | RssHashTypes::TCP_IPV4
        );
        assert_eq!(t.to_string().parse::<RssHashTypes>().unwrap(), t);
        assert!("ipv5"
            .parse::<RssHashTypes>()
            .unwrap_err()
            .contains("tcp-ipv6"));
        assert_eq!("none".parse::<RssHashTypes>().unwrap(), RssHashTypes::NONE);
    }

    #[test]
    fn report_numbers_round_trip() {
        for n in 0..12u32 {
            let t = RssType::from_report(n);
            assert_eq!(t as u32, if n <= 9 { n } else { 0 });
        }
    }
}
