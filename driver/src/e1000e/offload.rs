//! e1000e TX offloads: the IPv4 header checksum, the TCP and UDP checksums over IPv4 and
//! IPv6, and TCP segmentation (TSO), through a TCP/IP context descriptor (82574
//! §7.2.10.2) ahead of extended data descriptors (§7.2.10.3) with IXSM/TXSM and TSE.
//!
//! The context is per queue: the device keeps the last one it read, so a packet whose
//! header layout matches it needs none. A TSO context also carries the payload length, so
//! every TSO packet writes its own (as Linux's e1000e does).
//!
//! What the hardware expects in the packet (82574 §7.2.5 and §7.2.6; Linux `e1000_tso`,
//! `e1000_tx_csum`): the TCP or UDP checksum field holds the pseudo-header checksum (with
//! the L4 length for a plain checksum, with length 0 for TSO, since the device adds each
//! segment's), the IPv4 checksum field 0 when the device fills it, and for TSO the IPv4
//! total length 0 (IPv6: payload length 0); the device writes each segment's. tenge
//! prepares that itself, so the application only sets the request flags and header
//! lengths, the same on every port. (QEMU's model parses the headers and computes every
//! checksum itself, whatever the fields hold; a real 82574 uses them.)
//!
//! VLAN insertion (`PacketMeta::TX_VLAN`, the tag in `vlan_tci`) rides along as one more
//! request: on the 82574 the data descriptor carries the tag with DCMD.VLE (§7.2.10.1 and
//! §7.2.10.3, honoured only with CTRL.VME); on the 82576 the context descriptor carries it
//! and the data descriptor's VLE asks for it (`VlanInsert`). An 82574 port that keeps
//! received tags (CTRL.VME off) writes the tag into the frame itself, in the packet's
//! headroom, before the device reads it.

use tenge_descriptors::e1000e::{
    TxContextDesc, CMD_SHIFT, DTYP_DATA, DTYP_SHIFT, LEN_MASK, POPTS_IXSM, POPTS_TXSM, TUCMD_DEXT,
    TUCMD_IP, TUCMD_TCP, TUCMD_TSE, TXD_CMD_DEXT, TXD_CMD_IFCS, TXD_CMD_TSE, TXD_CMD_VLE,
};

use crate::packet::mempool::{PacketBuf, PacketMeta};

pub(crate) use crate::offload::tx::{BadOffload, TxOffload, VlanInsert, TSO_MAX_IP_LEN};

/// The TX view questions an Intel device with context descriptors (82574, 82576) answers
/// the same way, its queue's context state being `ctx`: descriptors `pkt` needs (a context
/// first when it asks for an offload the device's context does not hold).
#[inline(always)]
pub(crate) fn descs_needed(pkt: &PacketBuf, ctx: u64, vlan: VlanInsert) -> u32 {
    let with_ctx = match TxOffload::of_for(pkt, vlan) {
        Ok(Some(o)) => o.needs_context(ctx),
        _ => false,
    };
    pkt.nb_segs() as u32 + u32::from(with_ctx)
}

/// Whether `pkt` goes out in one plain data descriptor: unchained, no offload asked.
#[inline(always)]
pub(crate) fn single(pkt: &PacketBuf) -> bool {
    !pkt.is_chained() && pkt.meta().flags & PacketMeta::TX_OFFLOAD_MASK == 0
}

/// Whether the device can take `pkt`: an offload request must match its headers
/// ([`BadOffload`]).
#[inline(always)]
pub(crate) fn sendable(pkt: &PacketBuf, vlan: VlanInsert) -> bool {
    pkt.meta().flags & PacketMeta::TX_OFFLOAD_MASK == 0 || TxOffload::of_for(pkt, vlan).is_ok()
}

/// Why the device refuses `pkt`'s request (what [`sendable`] said no to), for its count.
#[inline]
pub(crate) fn refusal(pkt: &PacketBuf, vlan: VlanInsert) -> Option<BadOffload> {
    TxOffload::of_for(pkt, vlan).err()
}

/// The longest `pkt` may be: a TSO packet up to an IPv4 datagram's 64 KiB with its L2
/// header, any other `max_frame` (as given, untagged: a tag to insert makes the wire frame
/// 4 bytes longer, as 802.3 allows a tagged frame).
#[inline(always)]
pub(crate) fn max_len(pkt: &PacketBuf, max_frame: usize) -> usize {
    if pkt.meta().flags & PacketMeta::TX_TSO != 0 {
        usize::from(pkt.meta().l2_len) + TSO_MAX_IP_LEN
    } else {
        max_frame
    }
}

/// The queue's context state when no checksum context is known to be in the device (after
/// a reset, after a TSO context): no key equals it.
pub(crate) const NO_CONTEXT: u64 = u64::MAX;

impl TxOffload {
    /// What a context holds, as one number: equal keys, same context (the 82576's with
    /// the tag, bits 55:40 and a bit 56 that says there is one). TSO packets always
    /// write their own context (it holds the payload length), and leave the queue's state
    /// at [`NO_CONTEXT`].
    pub(crate) fn key(&self) -> u64 {
        let vlan = match self.vlan {
            Some(tci) if self.vlan_in_context => 1 << 56 | u64::from(tci) << 40,
            _ => 0,
        };
        u64::from(self.l2)
            | u64::from(self.l3) << 8
            | u64::from(self.l4) << 16
            | u64::from(self.l4_csum_at) << 24
            | u64::from(self.ipv4) << 32
            | u64::from(self.ip_csum) << 33
            | vlan
    }

    /// Whether the packet needs a context descriptor, the queue's device holding `state`:
    /// never for a tag alone on the 82574, which takes it from the data descriptor.
    pub(crate) fn needs_context(&self, state: u64) -> bool {
        let uses_context = self.csum || (self.vlan_in_context && self.vlan.is_some());
        self.tso || (uses_context && self.key() != state)
    }

    /// The queue's state once this packet's context (if any) is written.
    pub(crate) fn state_after(&self) -> u64 {
        if self.tso {
            NO_CONTEXT
        } else {
            self.key()
        }
    }

    /// The context descriptor for this packet, as its two quadwords.
    pub(crate) fn context(&self, pkt_len: usize) -> (u64, u64) {
        let ipcss = self.l2;
        let tucss = u16::from(self.l2) + u16::from(self.l3);
        let (ipcso, ipcse) = if self.ipv4 {
            (self.l2 + 10, tucss - 1)
        } else {
            (0, 0)
        };
        let tucso = tucss
            + u16::from(if self.l4_csum_at == 0 {
                0
            } else {
                self.l4_csum_at
            });
        let hdr = tucss + u16::from(self.l4);
        let mut tucmd = TUCMD_DEXT;
        if self.tcp {
            tucmd |= TUCMD_TCP;
        }
        if self.ipv4 {
            tucmd |= TUCMD_IP;
        }
        let (paylen, hdr_len, mss) = if self.tso {
            tucmd |= TUCMD_TSE;
            ((pkt_len - usize::from(hdr)) as u32, hdr as u8, self.mss)
        } else {
            (0, 0, 0)
        };
        // Offsets beyond a byte (a header over 255 bytes) cannot be described: `of` keeps
        // l2 + l3 within what the fields hold by the u8 lengths (255 + 255 < 2^16 for
        // TUCSE; TUCSS and TUCSO are bytes, so a larger start is cut: refused in `of`).
        let lo = u64::from(ipcss)
            | u64::from(ipcso) << 8
            | u64::from(ipcse) << 16
            | u64::from(tucss as u8) << 32
            | u64::from(tucso as u8) << 40;
        let hi = u64::from(TxContextDesc::cmd_dword(paylen, tucmd))
            | u64::from(hdr_len) << 40
            | u64::from(mss) << 48;
        (lo, hi)
    }

    /// The second quadword of a data descriptor for a segment of `len` bytes: DEXT, DTYP
    /// data, IFCS, TSE for TSO, `end` (EOP and RS if asked) on the last; POPTS IXSM/TXSM.
    pub(crate) fn data_hi(&self, len: usize, end: u8) -> u64 {
        let mut dcmd = TXD_CMD_DEXT | TXD_CMD_IFCS | end;
        if self.tso {
            dcmd |= TXD_CMD_TSE;
        }
        // The tag in the VLAN field (bits 63:48) of every descriptor of the packet: QEMU
        // reads it, and VLE, from the last (`e1000e_process_tx_desc`).
        let vlan = match self.vlan {
            Some(tci) => {
                dcmd |= TXD_CMD_VLE;
                u64::from(tci) << 48
            }
            None => 0,
        };
        let mut popts = 0;
        if self.ip_csum {
            popts |= POPTS_IXSM;
        }
        if self.l4_csum_at != 0 {
            popts |= POPTS_TXSM;
        }
        (len as u32 & LEN_MASK) as u64
            | u64::from(DTYP_DATA) << DTYP_SHIFT
            | u64::from(dcmd) << CMD_SHIFT
            | u64::from(popts) << 40
            | vlan
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::tx::{BadOffload, PseudoHeader};
    use crate::packet::csum;
    use crate::packet::mempool::host_pool;

    fn tcp4(payload: usize) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(1000, 2000, 7, 1024);
        let mut f = Vec::new();
        b.write(&mut f, &vec![0xab; payload]).unwrap();
        f
    }

    fn buf(frame: &[u8], flags: u32, l4: u8, mss: u16) -> (crate::Mempool, PacketBuf) {
        let pool = host_pool(4).unwrap();
        let mut b = pool.cache(0).alloc().unwrap();
        assert!(b.copy_from(frame));
        let m = b.meta_mut();
        m.flags = flags;
        (m.l2_len, m.l3_len, m.l4_len, m.mss) = (14, 20, l4, mss);
        (pool, b)
    }

    #[test]
    fn requests_are_checked_against_the_headers() {
        let f = tcp4(100);
        let ok = PacketMeta::TX_IPV4 | PacketMeta::TX_TCP_CSUM;
        assert!(TxOffload::of(&buf(&f, ok, 20, 0).1).unwrap().is_some());
        assert_eq!(TxOffload::of(&buf(&f, 0, 20, 0).1), Ok(None));
        for (flags, l4, mss, why) in [
            (PacketMeta::TX_TCP_CSUM, 20, 0, BadOffload::L3Type),
            (ok | PacketMeta::TX_IPV6, 20, 0, BadOffload::L3Type),
            (ok, 24, 0, BadOffload::HeaderLength),
            (
                PacketMeta::TX_IPV4 | PacketMeta::TX_UDP_CSUM,
                20,
                0,
                BadOffload::Protocol,
            ),
            (
                PacketMeta::TX_IPV4 | PacketMeta::TX_TSO,
                20,
                0,
                BadOffload::ZeroMss,
            ),
            (
                PacketMeta::TX_IPV4 | PacketMeta::TX_TSO | PacketMeta::TX_UDP_CSUM,
                20,
                1448,
                BadOffload::TsoNotTcp,
            ),
        ] {
            assert_eq!(
                TxOffload::of(&buf(&f, flags, l4, mss).1),
                Err(why),
                "{flags:#x}"
            );
        }
        // Headers longer than the packet.
        let (_p, mut b) = buf(&f[..40], ok, 20, 0);
        b.meta_mut().l3_len = 20;
        assert_eq!(TxOffload::of(&b), Err(BadOffload::TooShort));
    }

    /// The pseudo-header sum in the TCP field completes, with the device's sum over the
    /// segment, to a checksum etherparse accepts.
    #[test]
    fn prepare_leaves_the_pseudo_header_sum_for_the_device() {
        let f = tcp4(333);
        let (_p, mut b) = buf(&f, PacketMeta::TX_IPV4 | PacketMeta::TX_TCP_CSUM, 20, 0);
        let o = TxOffload::of(&b).unwrap().unwrap();
        o.prepare(&mut b, PseudoHeader::Intel);
        // What the device does: sum the TCP header and payload, field included, and store
        // the complement.
        let l4 = &b.data()[34..];
        let full = !csum::fold(csum::add_bytes(0, l4, false));
        let mut wire = b.data().to_vec();
        wire[34 + 16..34 + 18].copy_from_slice(&full.to_be_bytes());
        let p = etherparse::SlicedPacket::from_ethernet(&wire).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else {
            panic!()
        };
        let Some(etherparse::TransportSlice::Tcp(tcp)) = p.transport else {
            panic!()
        };
        let want = tcp
            .to_header()
            .calc_checksum_ipv4(&ip.header().to_header(), tcp.payload())
            .unwrap();
        assert_eq!(full, want);
    }

    #[test]
    fn contexts_match_for_the_same_layout_and_never_for_tso() {
        let f = tcp4(1400);
        let csum = PacketMeta::TX_IPV4 | PacketMeta::TX_TCP_CSUM | PacketMeta::TX_IP_CSUM;
        let a = TxOffload::of(&buf(&f, csum, 20, 0).1).unwrap().unwrap();
        assert!(a.needs_context(NO_CONTEXT));
        assert!(!a.needs_context(a.state_after()));
        let t = TxOffload::of(&buf(&f, PacketMeta::TX_IPV4 | PacketMeta::TX_TSO, 20, 1448).1)
            .unwrap()
            .unwrap();
        assert!(t.needs_context(t.state_after()) && t.needs_context(a.state_after()));
        assert!(a.needs_context(t.state_after()));
        let (lo, hi) = t.context(f.len());
        // IPCSS 14, IPCSO 24, IPCSE 33, TUCSS 34, TUCSO 50 (82574 table 7-41).
        assert_eq!(lo, 14 | 24 << 8 | 33 << 16 | 34 << 32 | 50 << 40);
        let paylen = (f.len() - 54) as u64;
        assert_eq!(hi & 0xf_ffff, paylen);
        assert_eq!(
            (hi >> 24) as u8,
            TUCMD_DEXT | TUCMD_TCP | TUCMD_IP | TUCMD_TSE
        );
        assert_eq!((hi >> 40) as u8, 54, "HDRLEN");
        assert_eq!((hi >> 48) as u16, 1448, "MSS");
    }

    /// A tag alone: no context on the 82574, VLE and the tag in the data descriptor.
    #[test]
    fn a_tag_alone_needs_no_context_and_rides_in_the_data_descriptor() {
        let f = tcp4(10);
        let (_p, mut b) = buf(&f, PacketMeta::TX_VLAN, 0, 0);
        b.meta_mut().vlan_tci = 0x6064;
        let o = TxOffload::of_for(&b, VlanInsert::Descriptor)
            .unwrap()
            .unwrap();
        assert!(!o.needs_context(NO_CONTEXT));
        let hi = o.data_hi(f.len(), 0);
        assert_eq!((hi >> 48) as u16, 0x6064);
        assert_eq!((hi >> CMD_SHIFT) as u8 & TXD_CMD_VLE, TXD_CMD_VLE);
        assert_eq!((hi >> 40) as u8, 0, "no POPTS");
        // In the 82576's context instead: one is needed, and then not for the same tag.
        let c = TxOffload::of_for(&b, VlanInsert::Context).unwrap().unwrap();
        assert!(c.needs_context(NO_CONTEXT));
        assert!(!c.needs_context(c.state_after()));
        b.meta_mut().vlan_tci = 7;
        let d = TxOffload::of_for(&b, VlanInsert::Context).unwrap().unwrap();
        assert!(d.needs_context(c.state_after()));
    }

    /// In software the tag lands after the addresses, the headers the checksum request
    /// names move with it, and etherparse reads the result as a tagged TCP/IPv4 frame.
    #[test]
    fn a_tag_inserted_in_software_moves_the_headers() {
        let f = tcp4(100);
        let flags = PacketMeta::TX_VLAN | PacketMeta::TX_IPV4 | PacketMeta::TX_TCP_CSUM;
        let (_p, mut b) = buf(&f, flags, 20, 0);
        b.meta_mut().vlan_tci = 0xa123;
        let o = TxOffload::of_for(&b, VlanInsert::Software)
            .unwrap()
            .unwrap();
        assert_eq!(o.header_lens(), (18, 20, 20));
        assert_eq!(o.vlan(), None, "the device inserts nothing");
        o.prepare(&mut b, PseudoHeader::Intel);
        assert_eq!(b.len(), f.len() + 4);
        let p = etherparse::SlicedPacket::from_ethernet(b.data()).unwrap();
        let Some(etherparse::LinkSlice::Ethernet2(eth)) = &p.link else {
            panic!()
        };
        assert_eq!(eth.source(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(eth.destination(), [2, 0, 0, 0, 0, 2]);
        let Some(etherparse::VlanSlice::SingleVlan(v)) = p.vlan() else {
            panic!()
        };
        assert_eq!(v.vlan_identifier().value(), 0x123);
        assert_eq!(v.priority_code_point().value(), 5);
        assert!(matches!(
            p.transport,
            Some(etherparse::TransportSlice::Tcp(_))
        ));
        // The IP header and the payload as they were (the TCP checksum field now holds the
        // pseudo-header sum).
        assert_eq!(&b.data()[18..38], &f[14..34]);
        assert_eq!(&b.data()[58..], &f[54..]);
        // No headroom: refused, never sent untagged.
        let (_p, mut b) = buf(&f, PacketMeta::TX_VLAN, 0, 0);
        assert!(b.prepend(b.headroom()));
        assert_eq!(
            TxOffload::of_for(&b, VlanInsert::Software),
            Err(BadOffload::VlanRoom)
        );
    }
}
