//! TX offload requests (`PacketMeta::TX_*`) checked against the packet they came with,
//! once for every device: what each device then does with a valid request (an Intel
//! context descriptor, a virtio-net header, tenge's own software) lives with the device.
//!
//! A request is valid when the flags name one L3 type (IPv4 or IPv6) and at most one L4
//! checksum, the header lengths are those of the packet's own headers (IPv4 IHL, the fixed
//! IPv6 header, the TCP data offset) and lie in its first buffer, the L4 protocol in the
//! header is the one asked for, and TSO has an MSS and fits an IP datagram. Anything else
//! is a `BadOffload`: the packet is dropped and counted, never sent half-served.
//!
//! An 802.1Q tag (`TX_VLAN`, the tag in `vlan_tci`) is one more request, alone or with the
//! others: the Intel devices insert it (`VlanInsert`: the 82574 from its data descriptor,
//! only with CTRL.VME; the 82576 from its context descriptor), or tenge writes it into the
//! frame in `TxOffload::prepare` (the 82574 without CTRL.VME). virtio-net has no such
//! offload: its ring refuses the request.

use tenge_firmware_iface::e1000e::ETHERTYPE_VLAN;

use crate::packet::csum;
use crate::packet::mempool::{PacketBuf, PacketMeta};
pub use crate::ring::BadOffload;

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
/// The largest TSO packet: an IPv4 datagram's 64 KiB less one, plus its L2 header.
pub const TSO_MAX_IP_LEN: usize = 65535;
/// Bytes of an 802.1Q tag.
pub const VLAN_TAG_LEN: usize = 4;
/// The checksum and TSO requests, `TX_VLAN` aside.
const CSUM_REQUESTS: u32 =
    PacketMeta::TX_IP_CSUM | PacketMeta::TX_TCP_CSUM | PacketMeta::TX_UDP_CSUM | PacketMeta::TX_TSO;

/// Where a queue's Intel device takes the tag of a `TX_VLAN` packet from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VlanInsert {
    /// The data descriptor's VLAN field, with DCMD.VLE (the 82574 with CTRL.VME).
    Descriptor,
    /// The context descriptor's VLAN field, with DCMD.VLE in the data descriptor (the
    /// 82576): the tag is part of the context the queue keeps.
    Context,
    /// tenge writes the tag into the frame (the 82574 without CTRL.VME, which ignores
    /// VLE then).
    Software,
}

/// A TX offload request, checked against the packet it came with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TxOffload {
    pub(crate) l2: u8,
    pub(crate) l3: u8,
    pub(crate) l4: u8,
    pub(crate) ipv4: bool,
    /// The L4 checksum field's offset from the L4 header (TCP 16, UDP 6); 0: none asked.
    pub(crate) l4_csum_at: u8,
    pub(crate) tcp: bool,
    pub(crate) ip_csum: bool,
    pub(crate) tso: bool,
    pub(crate) mss: u16,
    /// A checksum or TSO is asked (the fields above mean something).
    pub(crate) csum: bool,
    /// The tag the device inserts (`VlanInsert::Descriptor` or `Context`).
    pub(crate) vlan: Option<u16>,
    /// The tag tenge inserts in [`TxOffload::prepare`] (`VlanInsert::Software`); `l2`
    /// already counts it.
    pub(crate) soft_vlan: Option<u16>,
    /// The tag is part of the context (the 82576).
    pub(crate) vlan_in_context: bool,
}

impl TxOffload {
    /// The request `pkt` carries, checked against its headers, for an Intel device that
    /// takes a tag as `vlan` says; `Ok(None)` for none.
    #[inline]
    pub(crate) fn of_for(
        pkt: &PacketBuf,
        vlan: VlanInsert,
    ) -> Result<Option<TxOffload>, BadOffload> {
        let Some(o) = Self::of(pkt)? else {
            return Ok(None);
        };
        let mut o = TxOffload {
            vlan_in_context: vlan == VlanInsert::Context,
            ..o
        };
        if vlan == VlanInsert::Software {
            if let Some(tci) = o.vlan.take() {
                if pkt.headroom() < VLAN_TAG_LEN || pkt.len() < 12 {
                    return Err(BadOffload::VlanRoom);
                }
                o.soft_vlan = Some(tci);
                if o.csum {
                    // The headers the other requests name move 4 bytes on.
                    o.l2 =
                        o.l2.checked_add(VLAN_TAG_LEN as u8)
                            .ok_or(BadOffload::HeaderLength)?;
                }
            }
        }
        Ok(Some(o))
    }

    /// The request `pkt` carries, checked against its headers; `Ok(None)` for none. A tag
    /// (`TX_VLAN`) is in [`TxOffload::vlan`], for the device to insert.
    pub(crate) fn of(pkt: &PacketBuf) -> Result<Option<TxOffload>, BadOffload> {
        let m = pkt.meta();
        if m.flags & PacketMeta::TX_OFFLOAD_MASK == 0 {
            return Ok(None);
        }
        let vlan = (m.flags & PacketMeta::TX_VLAN != 0).then_some(m.vlan_tci);
        if m.flags & CSUM_REQUESTS == 0 {
            // A tag alone.
            return Ok(Some(TxOffload {
                l2: 0,
                l3: 0,
                l4: 0,
                ipv4: false,
                l4_csum_at: 0,
                tcp: false,
                ip_csum: false,
                tso: false,
                mss: 0,
                csum: false,
                vlan,
                soft_vlan: None,
                vlan_in_context: false,
            }));
        }
        let ipv4 = m.flags & PacketMeta::TX_IPV4 != 0;
        if ipv4 == (m.flags & PacketMeta::TX_IPV6 != 0) {
            return Err(BadOffload::L3Type);
        }
        let tso = m.flags & PacketMeta::TX_TSO != 0;
        let tcp = tso || m.flags & PacketMeta::TX_TCP_CSUM != 0;
        let udp = m.flags & PacketMeta::TX_UDP_CSUM != 0;
        if tcp && udp {
            return Err(if tso {
                BadOffload::TsoNotTcp
            } else {
                BadOffload::Protocol
            });
        }
        let ip_csum = ipv4 && (tso || m.flags & PacketMeta::TX_IP_CSUM != 0);
        if !ipv4 && m.flags & PacketMeta::TX_IP_CSUM != 0 {
            return Err(BadOffload::L3Type);
        }
        let (l2, l3) = (usize::from(m.l2_len), usize::from(m.l3_len));
        let l4 = if tcp {
            usize::from(m.l4_len)
        } else if udp {
            8
        } else {
            0
        };
        let data = pkt.data();
        if l2 < 14 || l3 < if ipv4 { 20 } else { 40 } {
            return Err(BadOffload::HeaderLength);
        }
        // The IP header first, so a request is refused for what is wrong with it (a
        // header length that does not match, TSO of a UDP packet) before the packet's
        // length is held against headers it named wrongly.
        if l2 + l3 > data.len() {
            return Err(BadOffload::TooShort);
        }
        let ip = &data[l2..l2 + l3];
        let proto = if ipv4 {
            // Version 4 and the IHL the application gave.
            if ip[0] >> 4 != 4 || usize::from(ip[0] & 0xf) * 4 != l3 {
                return Err(BadOffload::HeaderLength);
            }
            ip[9]
        } else {
            // Version 6, no extension header between (l3 is the fixed header).
            if ip[0] >> 4 != 6 || l3 != 40 {
                return Err(BadOffload::HeaderLength);
            }
            ip[6]
        };
        if (tcp && proto != IPPROTO_TCP) || (udp && proto != IPPROTO_UDP) {
            return Err(if tso {
                BadOffload::TsoNotTcp
            } else {
                BadOffload::Protocol
            });
        }
        if l2 + l3 + l4 > data.len() {
            return Err(BadOffload::TooShort);
        }
        if tcp {
            // The data offset must be the TCP header length given (checked at least 20
            // first: the offset's byte, 12, is then inside the packet).
            if l4 < 20 || usize::from(data[l2 + l3 + 12] >> 4) * 4 != l4 {
                return Err(BadOffload::HeaderLength);
            }
        }
        if tso {
            if m.mss == 0 {
                return Err(BadOffload::ZeroMss);
            }
            if pkt.pkt_len() > l2 + TSO_MAX_IP_LEN {
                return Err(BadOffload::TooLong);
            }
        }
        Ok(Some(TxOffload {
            l2: m.l2_len,
            l3: m.l3_len,
            l4: l4 as u8,
            ipv4,
            l4_csum_at: if tcp {
                16
            } else if udp {
                6
            } else {
                0
            },
            tcp,
            ip_csum,
            tso,
            mss: m.mss,
            csum: true,
            vlan,
            soft_vlan: None,
            vlan_in_context: false,
        }))
    }

    /// The tag the device inserts, if any.
    pub(crate) fn vlan(&self) -> Option<u16> {
        self.vlan
    }

    /// The L2, L3 and L4 header lengths (L4: 0 with no L4 checksum asked, 8 for UDP).
    pub(crate) fn header_lens(&self) -> (u8, u8, u8) {
        (self.l2, self.l3, self.l4)
    }

    /// IPv4 (not IPv6).
    pub(crate) fn is_ipv4(&self) -> bool {
        self.ipv4
    }

    /// TCP (a TCP checksum or TSO), not UDP.
    pub(crate) fn is_tcp(&self) -> bool {
        self.tcp
    }

    /// Whether the IPv4 header checksum, the L4 checksum and TSO are asked.
    pub(crate) fn asks(&self) -> (bool, bool, bool) {
        (self.ip_csum, self.l4_csum_at != 0, self.tso)
    }

    /// The TSO segment size (0 without TSO).
    pub(crate) fn mss(&self) -> u16 {
        if self.tso {
            self.mss
        } else {
            0
        }
    }
}

/// What a device expects in the L4 checksum field (and the IP length fields) of a packet
/// it checksums or segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PseudoHeader {
    /// Intel's (82574 §7.2.5, 82576 §7.2.2.3; Linux `e1000_tso`): the pseudo-header sum
    /// with the L4 length for a plain checksum, with length 0 under TSO (the device adds
    /// each segment's), the IP length fields 0 under TSO and the IPv4 checksum field 0.
    Intel,
    /// Linux's CHECKSUM_PARTIAL and virtio's `NEEDS_CSUM` (virtio 1.2 §5.1.6.2): the
    /// pseudo-header sum with the packet's whole L4 length, TSO or not; the IP headers as
    /// they are, the IPv4 header checksum done here (virtio-net has no offload for it;
    /// under TSO the segmenting side writes each segment's).
    Partial,
}

impl TxOffload {
    /// Prepares the headers for a device that finishes the checksums (and segments) as
    /// `style` says.
    pub(crate) fn prepare(&self, pkt: &mut PacketBuf, style: PseudoHeader) {
        if let Some(tci) = self.soft_vlan {
            // `of_for` checked the headroom and the first segment's 12 bytes.
            if pkt.prepend(VLAN_TAG_LEN) {
                insert_vlan_tag(pkt.data_mut(), tci);
            }
        }
        if !self.csum {
            return;
        }
        let total = pkt.pkt_len();
        let (l2, l3) = (usize::from(self.l2), usize::from(self.l3));
        let intel_tso = self.tso && style == PseudoHeader::Intel;
        let data = pkt.data_mut();
        let ip = l2;
        let l4_len = total - l2 - l3;
        let mut sum = 0u64;
        if self.ipv4 {
            sum = csum::add_bytes(sum, &data[ip + 12..ip + 20], false);
            if intel_tso {
                data[ip + 2..ip + 4].fill(0);
            }
            if self.ip_csum {
                data[ip + 10..ip + 12].fill(0);
                if style == PseudoHeader::Partial {
                    let c = csum::ipv4_header_checksum(&data[ip..ip + l3]);
                    data[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
                }
            }
        } else {
            sum = csum::add_bytes(sum, &data[ip + 8..ip + 40], false);
            if intel_tso {
                data[ip + 4..ip + 6].fill(0);
            }
        }
        if self.l4_csum_at == 0 {
            return;
        }
        let proto = if self.tcp { IPPROTO_TCP } else { IPPROTO_UDP };
        let len = if intel_tso { 0 } else { l4_len as u64 };
        // Zero byte and protocol, then the length (IPv6's 32-bit length: the same sum).
        sum += u64::from(proto) + (len >> 16) + (len & 0xffff);
        let at = l2 + l3 + usize::from(self.l4_csum_at);
        data[at..at + 2].copy_from_slice(&csum::fold(sum).to_be_bytes());
    }

    /// Where the L4 checksum starts (the L4 header) and its field's offset from there
    /// (TCP 16, UDP 6); `None` with no L4 checksum asked.
    pub(crate) fn l4_csum(&self) -> Option<(u16, u16)> {
        (self.l4_csum_at != 0).then(|| {
            (
                u16::from(self.l2) + u16::from(self.l3),
                u16::from(self.l4_csum_at),
            )
        })
    }

    /// The checksums asked, computed here (a device without them): the IPv4 header's, and
    /// the TCP or UDP one over the whole chain. UDP's 0 is sent as 0xffff (RFC 768: 0 means
    /// no checksum); TCP's as computed. Not for TSO (the software GSO's).
    pub(crate) fn checksum_in_software(&self, pkt: &mut PacketBuf) {
        self.prepare(pkt, PseudoHeader::Partial);
        if let Some((start, at)) = self.l4_csum() {
            let start = usize::from(start);
            let c = csum::sum_from(pkt, start).map_or(0, |s| !csum::fold(s));
            let c = if c == 0 && !self.tcp { 0xffff } else { c };
            csum::write_at(pkt, start + usize::from(at), &c.to_be_bytes());
        }
    }
}

/// Writes an 802.1Q tag with `tci` after the addresses of `frame`, whose first 16 bytes
/// hold the two addresses at 4..16 (the frame was just moved 4 bytes earlier into them).
fn insert_vlan_tag(frame: &mut [u8], tci: u16) {
    frame.copy_within(VLAN_TAG_LEN..VLAN_TAG_LEN + 12, 0);
    frame[12..14].copy_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
    frame[14..16].copy_from_slice(&tci.to_be_bytes());
}

/// The TX offloads a device serves itself, for those (virtio-net) whose set depends on
/// what was negotiated; tenge does the rest in software ([`crate::offload::soft_tx`]).
/// The IPv4 header checksum is not among them: virtio-net has no such offload, and its TX
/// path computes it as it writes the header (a 20-byte sum).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceTxOffloads {
    /// TCP and UDP checksums over IPv4 and IPv6 (virtio `CSUM`).
    pub l4_csum: bool,
    /// TSO over IPv4 (`HOST_TSO4`).
    pub tso4: bool,
    /// TSO over IPv6 (`HOST_TSO6`).
    pub tso6: bool,
    /// TSO of a packet with CWR set (`HOST_ECN`; virtio 1.2 §5.1.6.2.1: without it the
    /// driver may not mark a GSO packet ECN, so such a packet is segmented here).
    pub tso_ecn: bool,
}

impl DeviceTxOffloads {
    /// The request bits of `pkt` the device does not serve: what tenge does in software
    /// before the packet reaches the ring. `TX_TSO` in the answer: the whole packet goes
    /// to the software GSO (whose segments then ask the device for their TCP checksum if
    /// it has that one).
    #[inline]
    pub(crate) fn software_part(&self, pkt: &PacketBuf) -> u32 {
        let flags = pkt.meta().flags;
        let asked = flags & PacketMeta::TX_OFFLOAD_MASK;
        if asked == 0 {
            return 0;
        }
        if asked & PacketMeta::TX_TSO != 0 {
            let tso = if flags & PacketMeta::TX_IPV6 != 0 {
                self.tso6
            } else {
                self.tso4
            };
            return if tso && (self.tso_ecn || !tcp_cwr(pkt)) {
                0
            } else {
                asked
            };
        }
        if self.l4_csum {
            0
        } else {
            asked & (PacketMeta::TX_TCP_CSUM | PacketMeta::TX_UDP_CSUM)
        }
    }

    /// Whether the device serves every request (no software part for any packet).
    pub(crate) fn serves_all(&self) -> bool {
        self.l4_csum && self.tso4 && self.tso6 && self.tso_ecn
    }
}

/// Whether the TCP header `pkt`'s lengths point at has CWR set (false if they point
/// nowhere: validation refuses such a packet later).
fn tcp_cwr(pkt: &PacketBuf) -> bool {
    let m = pkt.meta();
    let at = usize::from(m.l2_len) + usize::from(m.l3_len) + 13;
    pkt.data()
        .get(at)
        .is_some_and(|f| f & crate::offload::tcp_flags::CWR != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::mempool::host_pool;

    /// Ethernet, IPv4 (IHL 5) and a TCP header of 20 bytes or a UDP header, and `payload`
    /// bytes: what the checks read, nothing more.
    fn frame(proto: u8, payload: usize) -> Vec<u8> {
        let l4 = if proto == IPPROTO_TCP { 20 } else { 8 };
        let mut f = vec![0u8; 14 + 20 + l4 + payload];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        f[14 + 9] = proto;
        if proto == IPPROTO_TCP {
            f[14 + 20 + 12] = 5 << 4;
        }
        f
    }

    fn check(data: &[u8], meta: PacketMeta) -> Result<Option<TxOffload>, BadOffload> {
        let pool = host_pool(4).unwrap();
        let mut cache = pool.cache(4);
        let mut p = cache.alloc().unwrap();
        assert!(p.copy_from(data));
        *p.meta_mut() = meta;
        TxOffload::of(&p)
    }

    fn tcp_csum(l3: u8, l4: u8) -> PacketMeta {
        PacketMeta {
            flags: PacketMeta::TX_IPV4 | PacketMeta::TX_TCP_CSUM,
            l2_len: 14,
            l3_len: l3,
            l4_len: l4,
            ..PacketMeta::default()
        }
    }

    /// Each bad request is refused for what is wrong with it, even on a packet too short
    /// for the headers it names wrongly, and none reads past the packet.
    #[test]
    fn refusals_name_the_wrong_field_first_and_never_read_past_the_packet() {
        let tcp = frame(IPPROTO_TCP, 0);
        let udp = frame(IPPROTO_UDP, 4);
        assert!(matches!(check(&tcp, tcp_csum(20, 20)), Ok(Some(_))));
        // An IHL of 24 given for a header of 20, on a packet with no room for 24 + 20.
        assert_eq!(
            check(&tcp, tcp_csum(24, 20)).err(),
            Some(BadOffload::HeaderLength)
        );
        // A TCP header length under 20 (the data offset's byte would be past the end).
        let short_tcp = &tcp[..14 + 20 + 8];
        for l4 in [0, 5, 8] {
            assert_eq!(
                check(short_tcp, tcp_csum(20, l4)).err(),
                Some(BadOffload::HeaderLength),
                "l4_len {l4}"
            );
        }
        // TSO of a UDP packet whose TCP header would not fit: the protocol is what's wrong.
        let tso = PacketMeta {
            flags: PacketMeta::TX_IPV4 | PacketMeta::TX_TSO,
            mss: 100,
            ..tcp_csum(20, 32)
        };
        assert_eq!(check(&udp, tso).err(), Some(BadOffload::TsoNotTcp));
        assert_eq!(
            check(&udp, tcp_csum(20, 20)).err(),
            Some(BadOffload::Protocol)
        );
        // Headers right, packet too short for the UDP header, or even the IP header.
        let udp_csum = PacketMeta {
            flags: PacketMeta::TX_IPV4 | PacketMeta::TX_UDP_CSUM,
            ..tcp_csum(20, 0)
        };
        assert_eq!(
            check(&udp[..40], udp_csum).err(),
            Some(BadOffload::TooShort)
        );
        assert_eq!(
            check(&udp[..30], udp_csum).err(),
            Some(BadOffload::TooShort)
        );
        assert_eq!(
            check(
                &tcp,
                PacketMeta {
                    mss: 0,
                    l4_len: 20,
                    ..tso
                }
            )
            .err(),
            Some(BadOffload::ZeroMss)
        );
    }
}
