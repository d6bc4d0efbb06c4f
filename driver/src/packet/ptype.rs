//! The packet type a device reports for a received frame, the same on every port
//! ([`crate::PacketMeta::packet_type`]): the L3 and the L4 protocol it parsed, or
//! [`L3Type::Unknown`]/[`L4Type::Unknown`] where it does not say.
//!
//! Who says what: the 82576 (igb) writes a packet type into every frame's advanced RX
//! write-back (82576 §7.1.5.2: IPv4, IPv6, with or without extensions; TCP, UDP, SCTP);
//! QEMU's 82574 model (e1000e) writes a coarser code into the extended status (IPv4 or
//! IPv6, "with TCP or UDP"), which tells TCP from UDP only together with the checksum
//! bits (`PortConfig::rx_checksum`); virtio-net's header has no packet type, so its
//! frames are unknown. Each device maps its own fields through a small table into the
//! bits below, one load a frame.

use crate::packet::mempool::PacketMeta;

/// The network-layer protocol of a received frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum L3Type {
    /// The device did not say.
    #[default]
    Unknown = 0,
    /// IPv4 (with or without options).
    Ipv4 = 1,
    /// IPv6 (with or without extension headers).
    Ipv6 = 2,
    /// The device parsed the frame and found neither IPv4 nor IPv6.
    Other = 3,
}

/// The transport-layer protocol of a received frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum L4Type {
    /// The device did not say (or the frame is not IP).
    #[default]
    Unknown = 0,
    /// TCP.
    Tcp = 1,
    /// UDP.
    Udp = 2,
    /// IP carrying neither TCP nor UDP (SCTP, ICMP, a fragment the device did not parse,
    /// ...).
    Other = 3,
}

/// A received frame's packet type: [`PacketMeta::packet_type`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PacketType {
    /// The L3 protocol.
    pub l3: L3Type,
    /// The L4 protocol.
    pub l4: L4Type,
}

impl PacketType {
    /// Neither layer known.
    pub const UNKNOWN: PacketType = PacketType {
        l3: L3Type::Unknown,
        l4: L4Type::Unknown,
    };

    /// The type `l3`/`l4`.
    pub const fn new(l3: L3Type, l4: L4Type) -> Self {
        PacketType { l3, l4 }
    }

    /// Its code, 0..=9 (see [`PacketType::from_code`]).
    pub const fn code(self) -> u32 {
        match (self.l3, self.l4) {
            (L3Type::Ipv4, L4Type::Other) => 1,
            (L3Type::Ipv4, L4Type::Unknown) => 2,
            (L3Type::Ipv4, L4Type::Tcp) => 3,
            (L3Type::Ipv4, L4Type::Udp) => 4,
            (L3Type::Ipv6, L4Type::Other) => 5,
            (L3Type::Ipv6, L4Type::Unknown) => 6,
            (L3Type::Ipv6, L4Type::Tcp) => 7,
            (L3Type::Ipv6, L4Type::Udp) => 8,
            (L3Type::Other, _) => 9,
            (L3Type::Unknown, _) => 0,
        }
    }

    /// The type of a 4-bit code: 0 unknown; 1 IPv4 with neither TCP nor UDP, 2 IPv4 with
    /// an L4 not said, 3 TCP/IPv4, 4 UDP/IPv4; 5 to 8 the same over IPv6; 9 not IP; 10-15
    /// unknown. The numbering is tenge's, chosen so that the codes QEMU's 82574 model
    /// writes (`RXD_PKT_*`: 0 MAC, 1 IPv4, 2 IPv4 with TCP or UDP, 5 IPv6, 6 IPv6 with TCP
    /// or UDP) are their own codes: its fast path moves the field into place, no table.
    /// (Its 0 says "not IP", but a part that leaves the bits 0 says nothing: unknown.)
    pub const fn from_code(code: u32) -> Self {
        let (l3, l4) = match code {
            1 => (L3Type::Ipv4, L4Type::Other),
            2 => (L3Type::Ipv4, L4Type::Unknown),
            3 => (L3Type::Ipv4, L4Type::Tcp),
            4 => (L3Type::Ipv4, L4Type::Udp),
            5 => (L3Type::Ipv6, L4Type::Other),
            6 => (L3Type::Ipv6, L4Type::Unknown),
            7 => (L3Type::Ipv6, L4Type::Tcp),
            8 => (L3Type::Ipv6, L4Type::Udp),
            9 => (L3Type::Other, L4Type::Unknown),
            _ => (L3Type::Unknown, L4Type::Unknown),
        };
        PacketType { l3, l4 }
    }

    /// As `PacketMeta::flags` bits: its code at [`PacketMeta::RX_PTYPE_SHIFT`] (what a
    /// device's decoding table holds). The L4 of a type that is not IP is not kept.
    pub const fn flags(self) -> u32 {
        self.code() << PacketMeta::RX_PTYPE_SHIFT
    }

    /// From `PacketMeta::flags`.
    pub const fn from_flags(flags: u32) -> Self {
        Self::from_code((flags & PacketMeta::RX_PTYPE_MASK) >> PacketMeta::RX_PTYPE_SHIFT)
    }
}

impl std::fmt::Display for PacketType {
    /// `ipv4/tcp`, `ipv6/udp`, `other/-`, `-/-` (unknown).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l3 = match self.l3 {
            L3Type::Unknown => "-",
            L3Type::Ipv4 => "ipv4",
            L3Type::Ipv6 => "ipv6",
            L3Type::Other => "other",
        };
        let l4 = match self.l4 {
            L4Type::Unknown => "-",
            L4Type::Tcp => "tcp",
            L4Type::Udp => "udp",
            L4Type::Other => "other",
        };
        write!(f, "{l3}/{l4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_goes_through_the_flags_and_back() {
        let l3s = [L3Type::Unknown, L3Type::Ipv4, L3Type::Ipv6, L3Type::Other];
        let l4s = [L4Type::Unknown, L4Type::Tcp, L4Type::Udp, L4Type::Other];
        for l3 in l3s {
            for l4 in l4s {
                let t = PacketType::new(l3, l4);
                let f = t.flags();
                assert_eq!(f & !PacketMeta::RX_PTYPE_MASK, 0);
                // Other flags around it change nothing; no L4 is kept for what is not IP,
                // nothing for what is unknown.
                let want = match l3 {
                    L3Type::Other => PacketType::new(l3, L4Type::Unknown),
                    L3Type::Unknown => PacketType::UNKNOWN,
                    _ => t,
                };
                assert_eq!(PacketType::from_flags(f | !PacketMeta::RX_PTYPE_MASK), want);
            }
        }
        for code in 0..16 {
            let t = PacketType::from_code(code);
            assert_eq!(t.code(), if code <= 9 { code } else { 0 });
        }
        assert_eq!(PacketType::UNKNOWN.flags(), 0);
        assert_eq!(
            PacketType::new(L3Type::Ipv6, L4Type::Udp).to_string(),
            "ipv6/udp"
        );
    }
}
