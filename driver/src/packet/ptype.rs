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

    /// As `PacketMeta::flags` bits ([`PacketMeta::RX_PTYPE_SHIFT`]): what a device's
    /// decoding table holds.
    pub const fn flags(self) -> u32 {
        ((self.l3 as u32) | (self.l4 as u32) << 2) << PacketMeta::RX_PTYPE_SHIFT
    }

    /// From `PacketMeta::flags`.
    pub const fn from_flags(flags: u32) -> Self {
        let bits = (flags & PacketMeta::RX_PTYPE_MASK) >> PacketMeta::RX_PTYPE_SHIFT;
        let l3 = match bits & 3 {
            1 => L3Type::Ipv4,
            2 => L3Type::Ipv6,
            3 => L3Type::Other,
            _ => L3Type::Unknown,
        };
        let l4 = match bits >> 2 {
            1 => L4Type::Tcp,
            2 => L4Type::Udp,
            3 => L4Type::Other,
            _ => L4Type::Unknown,
        };
        PacketType { l3, l4 }
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
                // Other flags around it change nothing.
                assert_eq!(PacketType::from_flags(f | !PacketMeta::RX_PTYPE_MASK), t);
            }
        }
        assert_eq!(PacketType::UNKNOWN.flags(), 0);
        assert_eq!(
            PacketType::new(L3Type::Ipv6, L4Type::Udp).to_string(),
            "ipv6/udp"
        );
    }
}
