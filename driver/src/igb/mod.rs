//! Intel 82576 (QEMU `igb`) data path: the descriptor ops the ring engine drives.
//!
//! TX uses the advanced data descriptor (82576 §7.2.2.3): one per buffer, DEXT | DTYP 0011 |
//! IFCS on each, EOP on a packet's last and RS only where the engine asks for a report;
//! PAYLEN (the whole packet's length) in the first descriptor's `olinfo_status`. QEMU
//! writes DD back only on descriptors with RS (`igb_txdesc_writeback`) and emulates no
//! legacy descriptors at all (`igb_process_tx_desc`).
//!
//! RX uses advanced one-buffer descriptors (SRRCTL.DESCTYPE 001, 82576 §7.1.5): the read
//! format carries the buffer address (and a zero header address, whose bit 0 is where DD
//! lands); the write-back carries the RSS type and hash, the packet type, status, errors,
//! length and VLAN tag. The status and error bits the driver reads sit where the 82574's
//! extended write-back has them, so the checksum decoding is e1000e's.
//!
//! TX offloads (checksums, TSO) go through a context descriptor ahead of the packet's data
//! descriptors ([`offload`]), with e1000e's checks of the request.

use std::cell::Cell;
use std::sync::Arc;

use tenge_descriptors::igb::{
    AdvRxDescRead, AdvRxDescWb, AdvTxDataDesc, ADVTXD_DCMD_EOP, ADVTXD_DCMD_IFCS, ADVTXD_DCMD_RS,
    ADVTXD_STA_DD, PKT_TYPE_IPV4, PKT_TYPE_IPV4_EX, PKT_TYPE_IPV6, PKT_TYPE_IPV6_EX, PKT_TYPE_TCP,
    PKT_TYPE_UDP, RXD_ERR_FRAME, RXD_STAT_DD, RXD_STAT_EOP, RXD_STAT_VP, RX_PKT_TYPE_SHIFT,
    RX_WB_STATUS_OFFSET,
};
use tenge_firmware_iface::igb::regs;
use tenge_firmware_iface::Mmio;

use crate::e1000e::offload::{TxOffload, VlanInsert, NO_CONTEXT};
use crate::e1000e::{rx_slow_flags, RX_SLOW_STAT};
use crate::packet::mempool::{PacketBuf, PacketMeta};
use crate::packet::ptype::{L3Type, L4Type, PacketType};
use crate::packet::rss::RssType;
use crate::platform::dma::{DescRing, RingView};
use crate::ring::{RxCompletion, RxDescOps, RxView, TxDescOps, TxView};

pub mod offload;

/// PCI device ID of the 82576 (QEMU's `igb`).
pub const DEVICE_82576: u16 = 0x10c9;

/// Largest frame without jumbo support: 1518 bytes less the 4-byte FCS the device appends.
pub const MAX_FRAME: usize = 1514;

/// Most segments of a chain sent as one frame (a data descriptor each).
pub const TX_MAX_SEGS: u32 = 64;

/// Byte offset of the DCMD byte (bits 31:24 of `cmd_type_len`) in a TX data descriptor.
const TX_CMD_OFFSET: usize = 11;
/// Byte offset of the status byte (STA, bits 3:0 of `olinfo_status`).
const TX_STATUS_OFFSET: usize = 12;

/// The command bits every data descriptor carries: DEXT, DTYP data, IFCS (82576 §7.2.2.3.1;
/// QEMU recognises a data descriptor by DEXT and DTYP 0011).
const TX_CMD_BASE: u32 = AdvTxDataDesc::cmd_dword(0, ADVTXD_DCMD_IFCS);

/// The second quadword of a data descriptor: `cmd_type_len` for a buffer of `len` bytes
/// with `dcmd` added, and PAYLEN `paylen` in `olinfo_status` (0 on all but a packet's first
/// descriptor).
#[inline(always)]
fn tx_hi(len: u32, dcmd: u32, paylen: u32) -> u64 {
    u64::from(TX_CMD_BASE | dcmd | (len & 0xffff))
        | u64::from(AdvTxDataDesc::olinfo(paylen, 0, 0)) << 32
}

/// The igb TX descriptor ops over an advanced-descriptor ring.
pub struct IgbTx<M: Mmio> {
    ring: DescRing<AdvTxDataDesc>,
    regs: Arc<M>,
    /// TDT of this ring's queue.
    tdt: u32,
    /// The checksum context the device holds in slot 0 for this queue (`NO_CONTEXT`:
    /// none known), updated as context descriptors are written.
    ctx: Cell<u64>,
}

impl<M: Mmio> IgbTx<M> {
    /// Ops over `ring` as transmit queue `queue` (0..=15), ringing its TDT.
    pub fn for_queue(ring: DescRing<AdvTxDataDesc>, regs: Arc<M>, queue: u32) -> Self {
        IgbTx {
            ring,
            regs,
            tdt: regs::queue_reg(regs::TDT0, queue),
            ctx: Cell::new(NO_CONTEXT),
        }
    }

    /// The descriptor ring.
    pub fn ring(&self) -> &DescRing<AdvTxDataDesc> {
        &self.ring
    }

    /// Whether the device is done with every descriptor handed to it: its head has caught
    /// up with the tail.
    pub fn idle(&self) -> bool {
        // TDH sits 8 bytes below TDT in every queue's block.
        self.regs.read32(self.tdt - (regs::TDT0 - regs::TDH0)) == self.regs.read32(self.tdt)
    }
}

impl<M: Mmio> TxDescOps for IgbTx<M> {
    type View<'a>
        = IgbTxView<'a>
    where
        M: 'a;

    #[inline(always)]
    fn view(&self) -> IgbTxView<'_> {
        IgbTxView {
            ring: self.ring.view(),
            ctx: &self.ctx,
        }
    }

    #[inline(always)]
    fn entries(&self) -> u32 {
        self.ring.entries()
    }

    #[inline(always)]
    fn flush(&mut self, pidx: u32) {
        // QEMU transmits inside this write (`igb_set_tdt`).
        self.regs
            .write32(self.tdt, pidx & (self.ring.entries() - 1));
    }
}

/// The igb TX descriptor accesses, on a view of the ring.
#[derive(Clone, Copy)]
pub struct IgbTxView<'a> {
    ring: RingView<'a, AdvTxDataDesc>,
    ctx: &'a Cell<u64>,
}

impl TxView for IgbTxView<'_> {
    const SINGLE_DESC: bool = true;

    #[inline(always)]
    fn descs_needed(&self, pkt: &PacketBuf) -> u32 {
        crate::e1000e::offload::descs_needed(pkt, self.ctx.get(), VlanInsert::Context)
    }

    /// Unchained and no offload asked: one plain data descriptor.
    #[inline(always)]
    fn single(&self, pkt: &PacketBuf) -> bool {
        crate::e1000e::offload::single(pkt)
    }

    /// An offload request must match the packet's headers.
    #[inline(always)]
    fn sendable(&self, pkt: &PacketBuf) -> bool {
        crate::e1000e::offload::sendable(pkt, VlanInsert::Context)
    }

    #[inline(always)]
    fn refusal(&self, pkt: &PacketBuf) -> Option<crate::ring::BadOffload> {
        crate::e1000e::offload::refusal(pkt, VlanInsert::Context)
    }

    /// A TSO packet may be up to an IPv4 datagram's 64 KiB with its L2 header.
    #[inline(always)]
    fn max_len(&self, pkt: &PacketBuf, max_frame: usize) -> usize {
        crate::e1000e::offload::max_len(pkt, max_frame)
    }

    #[inline(always)]
    fn max_segs(&self) -> u32 {
        TX_MAX_SEGS
    }

    #[inline(always)]
    fn encap_single(&self, pidx: u32, pkt: &mut PacketBuf) {
        let len = pkt.len() as u32;
        self.ring
            .write_qwords(pidx, pkt.data_iova(), tx_hi(len, ADVTXD_DCMD_EOP, len));
    }

    #[inline(always)]
    fn encap_run(
        &self,
        pidx: u32,
        n: usize,
        mut next: impl FnMut(usize) -> Option<PacketBuf>,
        mut park: impl FnMut(usize, PacketBuf),
    ) -> usize {
        let span = self.ring.span(pidx, n);
        for k in 0..span.len() {
            let Some(pkt) = next(k) else {
                return k;
            };
            let len = pkt.len() as u32;
            span.write_qwords(k, pkt.data_iova(), tx_hi(len, ADVTXD_DCMD_EOP, len));
            park(k, pkt);
        }
        span.len()
    }

    #[inline(always)]
    fn encap(&self, pidx: u32, pkt: &mut PacketBuf, report: bool) -> u32 {
        let end = ADVTXD_DCMD_EOP | if report { ADVTXD_DCMD_RS } else { 0 };
        if pkt.meta().flags & PacketMeta::TX_OFFLOAD_MASK != 0 {
            if let Ok(Some(o)) = TxOffload::of_for(pkt, VlanInsert::Context) {
                return self.encap_offload(pidx, pkt, &o, end);
            }
        }
        if !pkt.is_chained() {
            let len = pkt.len() as u32;
            self.ring
                .write_qwords(pidx, pkt.data_iova(), tx_hi(len, end, len));
            return 1;
        }
        self.encap_chain(pidx, pkt, end)
    }

    /// RS on the packet's last descriptor: its DCMD byte gains the bit.
    #[inline(always)]
    fn set_report(&self, idx: u32) {
        let cmd = self.ring.read_u8_at(idx, TX_CMD_OFFSET);
        self.ring
            .write_u8_at(idx, TX_CMD_OFFSET, cmd | (ADVTXD_DCMD_RS >> 24) as u8);
    }

    #[inline(always)]
    fn is_done(&self, idx: u32) -> bool {
        u32::from(self.ring.read_u8_at(idx, TX_STATUS_OFFSET)) & ADVTXD_STA_DD != 0
    }
}

impl IgbTxView<'_> {
    /// A packet with offloads: its headers prepared, a context descriptor (index 0) first
    /// when the device's differs (the queue's state updated), then a data descriptor per
    /// segment, `end` on the last.
    #[cold]
    #[inline(never)]
    fn encap_offload(&self, pidx: u32, pkt: &mut PacketBuf, o: &TxOffload, end: u32) -> u32 {
        o.prepare(pkt, crate::offload::tx::PseudoHeader::Intel);
        let mut i = 0u32;
        if o.needs_context(self.ctx.get()) {
            let (lo, hi) = offload::context(o);
            self.ring.write_qwords(pidx, lo, hi);
            self.ctx.set(o.state_after());
            i = 1;
        }
        let total = pkt.pkt_len();
        let mut first = true;
        let mut seg = Some(&*pkt);
        while let Some(s) = seg {
            seg = s.next();
            let last = if seg.is_none() { end } else { 0 };
            self.ring.write_qwords(
                pidx.wrapping_add(i),
                s.data_iova(),
                offload::data_hi(o, s.len(), total, first, last),
            );
            first = false;
            i += 1;
        }
        i
    }

    /// A data descriptor per segment of `pkt` from `pidx`: PAYLEN (the whole packet) on the
    /// first (82576 §7.2.2.3.2: PAYLEN is read from a packet's first descriptor), `end`
    /// (EOP, RS if asked) on the last.
    #[cold]
    #[inline(never)]
    fn encap_chain(&self, pidx: u32, pkt: &PacketBuf, end: u32) -> u32 {
        let paylen = pkt.pkt_len() as u32;
        let mut i = 0u32;
        let mut seg = Some(pkt);
        while let Some(s) = seg {
            seg = s.next();
            let dcmd = if seg.is_none() { end } else { 0 };
            let first_paylen = if i == 0 { paylen } else { 0 };
            self.ring.write_qwords(
                pidx.wrapping_add(i),
                s.data_iova(),
                tx_hi(s.len() as u32, dcmd, first_paylen),
            );
            i += 1;
        }
        i
    }
}

/// The igb RX descriptor ops over an advanced-descriptor ring.
pub struct IgbRx<M: Mmio> {
    ring: DescRing<AdvRxDescRead>,
    regs: Arc<M>,
    /// RDT of this ring's queue.
    rdt: u32,
    /// RSS is on: each write-back carries the hash and its type.
    rss: bool,
}

impl<M: Mmio> IgbRx<M> {
    /// Ops over `ring` as receive queue `queue` (0..=15), ringing its RDT; with `rss`, each
    /// received packet's metadata carries the device's RSS hash and type.
    pub fn for_queue(ring: DescRing<AdvRxDescRead>, regs: Arc<M>, queue: u32, rss: bool) -> Self {
        IgbRx {
            ring,
            regs,
            rdt: regs::queue_reg(regs::RDT0, queue),
            rss,
        }
    }

    /// Reads the RSS fields of write-backs from now on (or stops).
    pub fn set_rss(&mut self, on: bool) {
        self.rss = on;
    }

    /// The descriptor ring.
    pub fn ring(&self) -> &DescRing<AdvRxDescRead> {
        &self.ring
    }
}

impl<M: Mmio> RxDescOps for IgbRx<M> {
    type View<'a>
        = IgbRxView<'a>
    where
        M: 'a;

    #[inline(always)]
    fn view(&self) -> IgbRxView<'_> {
        IgbRxView {
            ring: self.ring.view(),
            rss: self.rss,
        }
    }

    #[inline(always)]
    fn entries(&self) -> u32 {
        self.ring.entries()
    }

    #[inline(always)]
    fn flush(&mut self, pidx: u32) {
        self.regs
            .write32(self.rdt, pidx & (self.ring.entries() - 1));
    }
}

/// The igb RX descriptor accesses, on a view of the ring.
#[derive(Clone, Copy)]
pub struct IgbRxView<'a> {
    ring: RingView<'a, AdvRxDescRead>,
    rss: bool,
}

/// The 82576's RSS types (bits 3:0 of the write-back, 82576 §7.1.5.2, numbered as QEMU's
/// `E1000_MRQ_RSS_TYPE_*`) in order, as tenge's [`RssType`]; 10-15 mean no hash.
const RSS_TYPES: [RssType; 10] = [
    RssType::None,
    RssType::TcpIpv4,
    RssType::Ipv4,
    RssType::TcpIpv6,
    RssType::Ipv6Ex,
    RssType::Ipv6,
    RssType::TcpIpv6Ex,
    RssType::UdpIpv4,
    RssType::UdpIpv6,
    RssType::UdpIpv6Ex,
];

/// [`RSS_TYPES`] as `PacketMeta` flag bits, for a frame whose packet type says it has IPv6
/// extension headers (`plain` false), or not (`plain` true): then an "-ex" type is reported
/// as the plain one. With no extension header there is no other address to hash, so the
/// two hashes are the same, and QEMU reports the -ex type for every TCP/IPv6 frame once
/// MRQC's TCP/IPv6-ex bit is set (`igb_rss_get_hash_type` tests only that bit), which
/// tenge sets for TCP/IPv6.
const fn rss_type_flags(plain: bool) -> [u32; 16] {
    let mut t = [0u32; 16];
    let mut i = 0;
    while i < RSS_TYPES.len() {
        let ty = match (plain, RSS_TYPES[i]) {
            (true, RssType::Ipv6Ex) => RssType::Ipv6,
            (true, RssType::TcpIpv6Ex) => RssType::TcpIpv6,
            (true, RssType::UdpIpv6Ex) => RssType::UdpIpv6,
            (_, ty) => ty,
        };
        t[i] = (ty as u32) << PacketMeta::RX_RSS_TYPE_SHIFT;
        i += 1;
    }
    t
}
const RSS_TYPE_FLAGS_EXT: [u32; 16] = rss_type_flags(false);

/// The packet-type bits a table index keeps: IPv4, IPv4 with options, IPv6, IPv6 with
/// extensions, TCP, UDP, SCTP (bits 6:0 of the packet type, 82576 §7.1.5.2).
const PTYPE_INDEX_MASK: u32 = 0x7f;

/// The 82576's packet type (bits 6:0, with bit 11 clear) as `PacketMeta` flags: L3 from
/// the IPv4/IPv6 bits (with or without options and extensions), "other" when neither is
/// set (QEMU writes 0 for a frame that is not IP, `igb_rx_desc_get_packet_type`), and L4
/// from TCP and UDP, "other" for IP with neither (SCTP included). Bit 11 would make the
/// rest an ethertype filter's index instead; tenge programs no ETQF filter, so the device
/// never sets it.
const PTYPE_FLAGS: [u32; 128] = {
    let mut t = [0u32; 128];
    let mut i = 0;
    while i < 128 {
        let p = i as u32;
        let l3 = if p & (PKT_TYPE_IPV4 | PKT_TYPE_IPV4_EX) != 0 {
            L3Type::Ipv4
        } else if p & (PKT_TYPE_IPV6 | PKT_TYPE_IPV6_EX) != 0 {
            L3Type::Ipv6
        } else {
            L3Type::Other
        };
        let l4 = match l3 {
            L3Type::Other => L4Type::Unknown,
            _ if p & PKT_TYPE_TCP != 0 => L4Type::Tcp,
            _ if p & PKT_TYPE_UDP != 0 => L4Type::Udp,
            _ => L4Type::Other,
        };
        t[i] = PacketType::new(l3, l4).flags();
        i += 1;
    }
    t
};

/// A completion that is not plain: whether it is still whole (a stripped tag takes the
/// engine's slow path, which stores it) and its flags (a frame's earlier descriptors say
/// nothing of its type). Out of line, as e1000e's: inline, its temporaries spilled the
/// plain loop's registers (+11 instructions a plain frame in `engine-ipp`).
#[inline(never)]
#[cold]
fn rx_not_plain(status_error: u32, info: u32) -> (bool, u32) {
    let eop = status_error & RXD_STAT_EOP != 0;
    (
        eop && status_error & (RXD_ERR_FRAME | RXD_STAT_VP) == 0,
        rx_slow_flags(status_error) | if eop { ptype_flags(info) } else { 0 },
    )
}

/// The packet type of a last descriptor's `pkt_info` (QEMU writes it on a frame's last
/// descriptor only) as `PacketMeta` flags.
#[inline(always)]
pub(crate) fn ptype_flags(pkt_info: u32) -> u32 {
    PTYPE_FLAGS[((pkt_info >> RX_PKT_TYPE_SHIFT) & PTYPE_INDEX_MASK) as usize]
}
const RSS_TYPE_FLAGS_PLAIN: [u32; 16] = rss_type_flags(true);

impl RxView for IgbRxView<'_> {
    const SLOT_IS_INDEX: bool = true;

    #[inline(always)]
    fn refill(&self, pidx: u32, iova: u64, _len: u32) {
        // The buffer size is per queue (SRRCTL), not per descriptor. A zero header address
        // also clears the previous write-back's DD, which lives in that quadword.
        self.ring.write_qwords(pidx, iova, 0);
    }

    #[inline(always)]
    fn is_done(&self, cidx: u32) -> bool {
        self.ring.read_u32_at(cidx, RX_WB_STATUS_OFFSET) & RXD_STAT_DD != 0
    }

    #[inline(always)]
    fn done_count(&self, cidx: u32, n: u32) -> u32 {
        self.ring
            .count_set_u32(cidx, n, RX_WB_STATUS_OFFSET, RXD_STAT_DD)
    }

    /// The hash is in the write-back only with RSS on (RXCSUM.PCSD).
    #[inline(always)]
    fn fast_hash(&self) -> bool {
        self.rss
    }

    #[inline(always)]
    fn completion(&self, cidx: u32) -> RxCompletion {
        // Status/errors and length in one read (PKT_LEN is bytes 12..14).
        self.decode(
            cidx,
            self.ring.read_u64_at(cidx, RX_WB_STATUS_OFFSET),
            self.ring.read_u64_at(cidx, 0),
        )
    }

    #[inline(always)]
    fn completion_run(
        &self,
        cidx: u32,
        n: usize,
        mut take: impl FnMut(usize, RxCompletion) -> bool,
    ) -> usize {
        let span = self.ring.span(cidx, n);
        for k in 0..span.len() {
            let c = self.decode(
                cidx.wrapping_add(k as u32),
                span.read_u64_at(k, RX_WB_STATUS_OFFSET),
                span.read_u64_at(k, 0),
            );
            if !take(k, c) {
                return k;
            }
        }
        span.len()
    }
}

impl IgbRxView<'_> {
    /// The completion at `cidx` from its write-back's second quadword `q` (status, errors,
    /// length, VLAN) and its first, `lower` (RSS and packet type, the RSS hash).
    #[inline(always)]
    fn decode(&self, cidx: u32, q: u64, lower: u64) -> RxCompletion {
        let status_error = q as u32;
        let len = (q >> 32) as u32 & 0xffff;
        // IPCS/L4CS/UDPCS, VP and IPE/L4E sit where the 82574 has IPCS/TCPCS/UDPCS, VP and
        // IPE/TCPE (82576 §7.1.5.2), so e1000e's decoding serves.
        let plain = status_error & (RXD_STAT_EOP | RXD_ERR_FRAME | RX_SLOW_STAT) == RXD_STAT_EOP;
        // The first quadword: RSS type and packet type, then the RSS hash (with
        // RXCSUM.PCSD). QEMU writes them on a frame's last descriptor only.
        let info = lower as u32;
        let (whole, flags) = if plain {
            (true, ptype_flags(info))
        } else {
            rx_not_plain(status_error, info)
        };
        let (flags, hash) = if self.rss {
            let table = if AdvRxDescWb::pkt_type(info) & PKT_TYPE_IPV6_EX != 0 {
                &RSS_TYPE_FLAGS_EXT
            } else {
                &RSS_TYPE_FLAGS_PLAIN
            };
            (
                flags | table[AdvRxDescWb::rss_type(info) as usize],
                (lower >> 32) as u32,
            )
        } else {
            (flags, 0)
        };
        RxCompletion {
            slot: cidx,
            len,
            eop: status_error & RXD_STAT_EOP != 0,
            error: status_error & RXD_ERR_FRAME != 0,
            whole,
            bufs: 0,
            flags,
            hash,
            // The VLAN field (bytes 14..16), valid with VP (QEMU writes it on a frame's
            // last descriptor, zero elsewhere).
            vlan: (q >> 48) as u16,
        }
    }
}

const _: () = assert!(size_of::<AdvRxDescWb>() == size_of::<AdvRxDescRead>());

#[cfg(test)]
mod tests;
