//! Intel 82574L (QEMU `e1000e`) data path: the descriptor ops the ring engine drives.
//!
//! TX uses the legacy descriptor (82574 §7.2.10.1) for frames without offloads: one
//! descriptor per frame, EOP|IFCS, and RS only where the engine asks for a report. QEMU
//! writes DD back only on descriptors with RS (e1000e_core.c, e1000e_txdesc_writeback), so
//! the engine's "RS every Nth descriptor" is what completion costs.
//!
//! RX uses extended descriptors (RFCTL.EXSTEN, 82574 §7.1.5.2): the read format carries the
//! buffer address; the write-back carries status, errors, length and checksum results.

use std::cell::Cell;
use std::sync::Arc;

use tenge_descriptors::e1000e::{
    LegacyTxDesc, RxDescExtRead, RxDescExtWb, RXD_ERR_FRAME, RXD_ERR_IPE, RXD_ERR_TCPE,
    RXD_PKT_IP4, RXD_PKT_IP4_XDP, RXD_PKT_IP6, RXD_PKT_IP6_XDP, RXD_PKT_MAC, RXD_PKT_TYPE_MASK,
    RXD_PKT_TYPE_SHIFT, RXD_STAT_DD, RXD_STAT_EOP, RXD_STAT_IPCS, RXD_STAT_TCPCS, RXD_STAT_UDPCS,
    RXD_STAT_VP, RX_WB_STATUS_OFFSET, TXD_CMD_EOP, TXD_CMD_IFCS, TXD_CMD_RS, TXD_STAT_DD,
};
use tenge_firmware_iface::e1000e::regs;
use tenge_firmware_iface::Mmio;

use crate::packet::mempool::{PacketBuf, PacketMeta};
use crate::packet::ptype::{L3Type, L4Type, PacketType};
use crate::packet::rss::RssType;
use offload::{TxOffload, VlanInsert};

pub mod offload;
use crate::platform::dma::{DescRing, RingView};
use crate::ring::{RxCompletion, RxDescOps, RxView, TxDescOps, TxView};

/// PCI vendor ID of Intel.
pub const VENDOR_INTEL: u16 = 0x8086;
/// PCI device ID of the 82574L.
pub const DEVICE_82574L: u16 = 0x10d3;

/// Largest frame without jumbo support: 1518 bytes less the 4-byte FCS the device appends.
pub const MAX_FRAME: usize = 1514;

/// Byte offset of the status byte in a legacy TX descriptor.
const TX_STATUS_OFFSET: usize = 12;
/// Byte offset of the command byte in a legacy TX descriptor (82574 §7.2.10.1).
const TX_CMD_OFFSET: usize = 11;

/// The e1000e TX descriptor ops over a legacy-descriptor ring.
pub struct E1000eTx<M: Mmio> {
    ring: DescRing<LegacyTxDesc>,
    regs: Arc<M>,
    /// TDT of this ring's queue.
    tdt: u32,
    /// The checksum context the device holds for this queue (`offload::NO_CONTEXT`: none
    /// known), updated as context descriptors are written.
    ctx: Cell<u64>,
    /// Who inserts the VLAN tags packets ask for.
    vlan: VlanInsert,
}

impl<M: Mmio> E1000eTx<M> {
    /// Ops over `ring` as queue 0, ringing TDT in `regs`.
    pub fn new(ring: DescRing<LegacyTxDesc>, regs: Arc<M>) -> Self {
        Self::for_queue(ring, regs, 0)
    }

    /// Ops over `ring` as transmit queue `queue` (0 or 1), ringing its TDT.
    pub fn for_queue(ring: DescRing<LegacyTxDesc>, regs: Arc<M>, queue: u32) -> Self {
        let tdt = regs::queue_reg(regs::TDT, queue);
        E1000eTx {
            ring,
            regs,
            tdt,
            ctx: Cell::new(offload::NO_CONTEXT),
            vlan: VlanInsert::Software,
        }
    }

    /// Whether the device inserts the VLAN tags packets ask for (`TX_VLAN`): only with
    /// CTRL.VME set, which also strips received tags (82574 §7.2.10.1, VLE). Otherwise
    /// (the default, CTRL.VME off after a reset) tenge writes each tag into the frame.
    pub fn set_device_vlan(&mut self, on: bool) {
        self.vlan = if on {
            VlanInsert::Descriptor
        } else {
            VlanInsert::Software
        };
    }

    /// The descriptor ring.
    pub fn ring(&self) -> &DescRing<LegacyTxDesc> {
        &self.ring
    }

    /// Whether the device is done with every descriptor handed to it: its head has caught up
    /// with the tail (the 82574's TDH holds the descriptor in progress).
    pub fn idle(&self) -> bool {
        // TDH sits 8 bytes below TDT in every queue's block.
        self.regs.read32(self.tdt - (regs::TDT - regs::TDH)) == self.regs.read32(self.tdt)
    }
}

impl<M: Mmio> TxDescOps for E1000eTx<M> {
    type View<'a>
        = E1000eTxView<'a>
    where
        M: 'a;

    #[inline(always)]
    fn view(&self) -> E1000eTxView<'_> {
        E1000eTxView {
            ring: self.ring.view(),
            ctx: &self.ctx,
            vlan: self.vlan,
        }
    }

    #[inline(always)]
    fn entries(&self) -> u32 {
        self.ring.entries()
    }

    #[inline(always)]
    fn flush(&mut self, pidx: u32) {
        self.regs
            .write32(self.tdt, pidx & (self.ring.entries() - 1));
    }
}

/// The e1000e TX descriptor accesses, on a view of the ring and the queue's context state.
#[derive(Clone, Copy)]
pub struct E1000eTxView<'a> {
    ring: RingView<'a, LegacyTxDesc>,
    ctx: &'a Cell<u64>,
    vlan: VlanInsert,
}

impl TxView for E1000eTxView<'_> {
    const SINGLE_DESC: bool = true;

    #[inline(always)]
    fn descs_needed(&self, pkt: &PacketBuf) -> u32 {
        offload::descs_needed(pkt, self.ctx.get(), self.vlan)
    }

    /// Unchained and no offload asked: one plain data descriptor.
    #[inline(always)]
    fn single(&self, pkt: &PacketBuf) -> bool {
        offload::single(pkt)
    }

    /// An offload request must match the packet's headers.
    #[inline(always)]
    fn sendable(&self, pkt: &PacketBuf) -> bool {
        offload::sendable(pkt, self.vlan)
    }

    #[inline(always)]
    fn refusal(&self, pkt: &PacketBuf) -> Option<crate::ring::BadOffload> {
        offload::refusal(pkt, self.vlan)
    }

    /// A TSO packet may be up to an IPv4 datagram's 64 KiB with its L2 header.
    #[inline(always)]
    fn max_len(&self, pkt: &PacketBuf, max_frame: usize) -> usize {
        offload::max_len(pkt, max_frame)
    }

    /// A chain takes a descriptor per segment (a packet may span several legacy
    /// descriptors; EOP marks its last, 82574 datasheet, legacy transmit descriptor), up to
    /// this many.
    #[inline(always)]
    fn max_segs(&self) -> u32 {
        TX_MAX_SEGS
    }

    #[inline(always)]
    fn encap_single(&self, pidx: u32, pkt: &mut PacketBuf) {
        let cmd = TXD_CMD_EOP | TXD_CMD_IFCS;
        self.ring
            .write_qwords(pidx, pkt.data_iova(), pkt.len() as u64 | (cmd as u64) << 24);
    }

    #[inline(always)]
    fn encap_run(
        &self,
        pidx: u32,
        n: usize,
        mut next: impl FnMut(usize) -> Option<PacketBuf>,
        mut park: impl FnMut(usize, PacketBuf),
    ) -> usize {
        let cmd = TXD_CMD_EOP | TXD_CMD_IFCS;
        let span = self.ring.span(pidx, n);
        for k in 0..span.len() {
            let Some(pkt) = next(k) else {
                return k;
            };
            span.write_qwords(k, pkt.data_iova(), pkt.len() as u64 | (cmd as u64) << 24);
            park(k, pkt);
        }
        span.len()
    }

    #[inline(always)]
    fn encap(&self, pidx: u32, pkt: &mut PacketBuf, report: bool) -> u32 {
        let mut cmd = TXD_CMD_EOP | TXD_CMD_IFCS;
        if report {
            cmd |= TXD_CMD_RS;
        }
        if pkt.meta().flags & PacketMeta::TX_OFFLOAD_MASK != 0 {
            if let Ok(Some(o)) = TxOffload::of_for(pkt, self.vlan) {
                return self.encap_offload(pidx, pkt, &o, cmd & !TXD_CMD_IFCS);
            }
        }
        if !pkt.is_chained() {
            // length (15:0), cso 0, cmd (31:24); status, css, special 0.
            self.ring
                .write_qwords(pidx, pkt.data_iova(), pkt.len() as u64 | (cmd as u64) << 24);
            return 1;
        }
        self.encap_chain(pidx, pkt, cmd)
    }

    /// RS on the packet's last descriptor (the only one `encap_single` wrote): its command
    /// byte gains the bit; QEMU writes DD back on RS descriptors only.
    #[inline(always)]
    fn set_report(&self, idx: u32) {
        let cmd = self.ring.read_u8_at(idx, TX_CMD_OFFSET);
        self.ring.write_u8_at(idx, TX_CMD_OFFSET, cmd | TXD_CMD_RS);
    }

    #[inline(always)]
    fn is_done(&self, idx: u32) -> bool {
        self.ring.read_u8_at(idx, TX_STATUS_OFFSET) & TXD_STAT_DD != 0
    }
}

/// Most segments of a chain sent as one frame (a descriptor each): a 64 KiB TSO packet
/// in 2 KiB buffers takes 33.
pub const TX_MAX_SEGS: u32 = 64;

impl E1000eTxView<'_> {
    /// A descriptor per segment of `pkt` from `pidx`; IFCS on each, EOP (and RS when asked)
    /// on the last only, as the device takes command bits that end a packet from its last
    /// descriptor.
    #[cold]
    #[inline(never)]
    fn encap_chain(&self, pidx: u32, pkt: &PacketBuf, last_cmd: u8) -> u32 {
        let mut i = 0u32;
        let mut seg = Some(pkt);
        while let Some(s) = seg {
            seg = s.next();
            let cmd = if seg.is_none() {
                last_cmd
            } else {
                TXD_CMD_IFCS
            };
            self.ring.write_qwords(
                pidx.wrapping_add(i),
                s.data_iova(),
                s.len() as u64 | (cmd as u64) << 24,
            );
            i += 1;
        }
        i
    }

    /// A packet with offloads (`offload`): its headers prepared, a context descriptor
    /// first when the device's differs (the queue's state updated), then an extended data
    /// descriptor per segment, `end` (EOP, RS if asked) on the last.
    #[cold]
    #[inline(never)]
    fn encap_offload(&self, pidx: u32, pkt: &mut PacketBuf, o: &TxOffload, end: u8) -> u32 {
        o.prepare(pkt, crate::offload::tx::PseudoHeader::Intel);
        let mut i = 0u32;
        if o.needs_context(self.ctx.get()) {
            let (lo, hi) = o.context(pkt.pkt_len());
            self.ring.write_qwords(pidx, lo, hi);
            self.ctx.set(o.state_after());
            i = 1;
        }
        let mut seg = Some(&*pkt);
        while let Some(s) = seg {
            seg = s.next();
            let last = if seg.is_none() { end } else { 0 };
            self.ring.write_qwords(
                pidx.wrapping_add(i),
                s.data_iova(),
                o.data_hi(s.len(), last),
            );
            i += 1;
        }
        i
    }
}

/// The e1000e RX descriptor ops over an extended-descriptor ring.
pub struct E1000eRx<M: Mmio> {
    ring: DescRing<RxDescExtRead>,
    regs: Arc<M>,
    /// RDT of this ring's queue.
    rdt: u32,
    /// RSS is on: each write-back carries the hash and its type.
    rss: bool,
}

impl<M: Mmio> E1000eRx<M> {
    /// Ops over `ring` as queue 0 without RSS, ringing RDT in `regs`.
    pub fn new(ring: DescRing<RxDescExtRead>, regs: Arc<M>) -> Self {
        Self::for_queue(ring, regs, 0, false)
    }

    /// Ops over `ring` as receive queue `queue` (0 or 1), ringing its RDT; with `rss`, each
    /// received packet's metadata carries the device's RSS hash and type.
    pub fn for_queue(ring: DescRing<RxDescExtRead>, regs: Arc<M>, queue: u32, rss: bool) -> Self {
        let rdt = regs::queue_reg(regs::RDT, queue);
        E1000eRx {
            ring,
            regs,
            rdt,
            rss,
        }
    }

    /// Reads the RSS fields of write-backs from now on (or stops): RSS was turned on or
    /// off for the port.
    pub fn set_rss(&mut self, on: bool) {
        self.rss = on;
    }

    /// The descriptor ring.
    pub fn ring(&self) -> &DescRing<RxDescExtRead> {
        &self.ring
    }
}

/// Decodes the checksum part of an extended write-back (82574 §7.1.5.2 and §10.2.2.5:
/// IPCS/TCPCS/UDPCS say a checksum was checked, IPE/TCPE say it was wrong).
#[inline(always)]
const fn rx_csum_flags(status_error: u32) -> u32 {
    let mut f = 0;
    if status_error & RXD_STAT_IPCS != 0 {
        f |= if status_error & RXD_ERR_IPE != 0 {
            PacketMeta::RX_IP_CSUM_BAD
        } else {
            PacketMeta::RX_IP_CSUM_GOOD
        };
    }
    if status_error & (RXD_STAT_TCPCS | RXD_STAT_UDPCS) != 0 {
        f |= if status_error & RXD_ERR_TCPE != 0 {
            PacketMeta::RX_L4_CSUM_BAD
        } else {
            PacketMeta::RX_L4_CSUM_GOOD
        };
    }
    f
}

/// The five status/error bits `rx_csum_flags` looks at, packed: UDPCS, TCPCS, IPCS in bits
/// 2:0 (status bits 6:4), TCPE, IPE in bits 4:3 (error bits 30:29). One multiply moves both
/// groups at once: `<< 23` takes bits 6:4 to 29:27, `<< 1` takes bits 30:29 to 31:30, and
/// neither product overlaps the other's bits there (the rest falls off the top or lands
/// below bit 27).
#[inline(always)]
const fn csum_key(status_error: u32) -> usize {
    ((status_error & 0x6000_0070).wrapping_mul((1 << 23) | (1 << 1)) >> 27) as usize
}

/// `rx_csum_flags` for every key, so the data path does a shift, two masks and a load.
const RX_CSUM_LUT: [u32; 32] = {
    let mut t = [0u32; 32];
    let mut k = 0;
    while k < 32 {
        let s = ((k as u32 & 0x7) << 4) | ((k as u32 & 0x18) << 26);
        t[k] = rx_csum_flags(s);
        k += 1;
    }
    t
};

/// The status bits that say a checksum was checked: without one, the flags are 0.
pub(crate) const RX_CSUM_STAT: u32 = RXD_STAT_IPCS | RXD_STAT_TCPCS | RXD_STAT_UDPCS;

#[inline(always)]
pub(crate) fn rx_csum_flags_lut(status_error: u32) -> u32 {
    RX_CSUM_LUT[csum_key(status_error)]
}

/// The status bits that call for flags: a checksum checked, or a VLAN tag stripped (VP).
pub(crate) const RX_SLOW_STAT: u32 = RX_CSUM_STAT | RXD_STAT_VP;

/// The flags of a write-back's status and errors: checksum verdicts, and
/// `RX_VLAN_STRIPPED` for VP (the tag is in the write-back's VLAN field; 82574 §7.1.5.2,
/// 82576 §7.1.5.2: VP is set only when CTRL.VME stripped a tag). VP moves to the flag's
/// place with a shift, no branch.
#[inline(always)]
pub(crate) fn rx_slow_flags(status_error: u32) -> u32 {
    rx_csum_flags_lut(status_error) | (status_error & RXD_STAT_VP) << VP_TO_FLAG
}

/// How far VP (status bit 3) moves to be `RX_VLAN_STRIPPED`.
const VP_TO_FLAG: u32 =
    PacketMeta::RX_VLAN_STRIPPED.trailing_zeros() - RXD_STAT_VP.trailing_zeros();
const _: () = assert!(RXD_STAT_VP << VP_TO_FLAG == PacketMeta::RX_VLAN_STRIPPED);

impl<M: Mmio> RxDescOps for E1000eRx<M> {
    type View<'a>
        = E1000eRxView<'a>
    where
        M: 'a;

    #[inline(always)]
    fn view(&self) -> E1000eRxView<'_> {
        E1000eRxView {
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

/// The e1000e RX descriptor accesses, on a view of the ring.
#[derive(Clone, Copy)]
pub struct E1000eRxView<'a> {
    ring: RingView<'a, RxDescExtRead>,
    rss: bool,
}

/// The packet type of a last descriptor's status as `PacketMeta` flags: QEMU's code
/// (`RXD_PKT_*`, bits 19:16) as tenge's own ([`PacketType::from_code`]: QEMU writes 0, 1,
/// 2, 5 and 6, which are tenge's codes of the same types, code 0 "MAC" read as unknown),
/// a "TCP or UDP" code made TCP or UDP by UDPCS and TCPCS (the L4 checksum verdict's
/// bits; without them the L4 is unknown).
const fn ptype_flags(status_error: u32) -> u32 {
    let code = (status_error >> RXD_PKT_TYPE_SHIFT) & RXD_PKT_TYPE_MASK;
    let l4 = if status_error & RXD_STAT_UDPCS != 0 {
        L4Type::Udp
    } else if status_error & RXD_STAT_TCPCS != 0 {
        L4Type::Tcp
    } else {
        L4Type::Unknown
    };
    let ty = match code {
        RXD_PKT_IP4_XDP => PacketType::new(L3Type::Ipv4, l4),
        RXD_PKT_IP6_XDP => PacketType::new(L3Type::Ipv6, l4),
        _ => PacketType::from_code(code),
    };
    ty.flags()
}

/// The slow path's table key: [`csum_key`]'s five checksum bits, the packet-type code
/// above them (bits 8:5).
#[inline(always)]
const fn slow_key(status_error: u32) -> usize {
    csum_key(status_error)
        | ((status_error >> (RXD_PKT_TYPE_SHIFT - 5)) & (RXD_PKT_TYPE_MASK << 5)) as usize
}

/// Checksum verdicts and packet type for every [`slow_key`]: one load for both.
const RX_SLOW_LUT: [u32; 512] = {
    let mut t = [0u32; 512];
    let mut k = 0;
    while k < 512 {
        let s = ((k as u32 & 0x7) << 4)
            | ((k as u32 & 0x18) << 26)
            | ((k as u32 >> 5) << RXD_PKT_TYPE_SHIFT);
        t[k] = rx_csum_flags(s) | ptype_flags(s);
        k += 1;
    }
    t
};

/// The flags of a completion that is not plain (a checksum checked, a tag stripped, not
/// a frame's last descriptor, an error): verdicts, packet type and `RX_VLAN_STRIPPED`.
#[inline(always)]
fn rx_slow_flags_with_ptype(status_error: u32) -> u32 {
    RX_SLOW_LUT[slow_key(status_error)] | (status_error & RXD_STAT_VP) << VP_TO_FLAG
}

/// A completion that is not plain: whether it is still whole (a stripped tag takes the
/// engine's slow path, which stores it) and its flags. Out of line: the plain loop keeps
/// its few values in registers (inline, this arm's temporaries spilled them, +8
/// instructions a plain frame in `engine-ipp`).
#[inline(never)]
#[cold]
fn rx_not_plain(status_error: u32) -> (bool, u32) {
    (
        status_error & (RXD_STAT_EOP | RXD_ERR_FRAME | RXD_STAT_VP) == RXD_STAT_EOP,
        rx_slow_flags_with_ptype(status_error),
    )
}

/// How far the status's packet-type code moves to be `PacketMeta`'s: QEMU's codes are
/// tenge's ([`PacketType::from_code`]), so a plain completion's type is a shift and a mask.
const PTYPE_CODE_TO_FLAG: u32 = RXD_PKT_TYPE_SHIFT - PacketMeta::RX_PTYPE_SHIFT;
const _: () = {
    assert!(RXD_PKT_TYPE_MASK << PacketMeta::RX_PTYPE_SHIFT == PacketMeta::RX_PTYPE_MASK);
    // Each code without a checksum bit is what the fast path's shift makes of it, and
    // QEMU's codes are the types they name.
    assert!(RX_SLOW_LUT.len() == 1 << 9);
    assert!(PacketType::from_code(RXD_PKT_MAC).code() == 0);
    assert!(PacketType::from_code(RXD_PKT_IP4).code() == 1);
    assert!(matches!(
        PacketType::from_code(RXD_PKT_IP4_XDP).l3,
        L3Type::Ipv4
    ));
    assert!(matches!(
        PacketType::from_code(RXD_PKT_IP6).l4,
        L4Type::Other
    ));
    assert!(matches!(
        PacketType::from_code(RXD_PKT_IP6_XDP).l3,
        L3Type::Ipv6
    ));
    let mut code = 0;
    while code < 16 {
        assert!(ptype_flags(code << RXD_PKT_TYPE_SHIFT) == PacketType::from_code(code).flags());
        code += 1;
    }
};

/// The 82574's RSS type (MRQ bits 3:0, 82574 §7.1.5.2) as `PacketMeta` flag bits of
/// tenge's [`RssType`]: 1 TCP/IPv4, 2 IPv4, 3 TCP/IPv6, 4 IPv6 with extension headers,
/// 5 IPv6; 0 and 6-15 no hash.
const RSS_TYPE_FLAGS: [u32; 16] = {
    let mut t = [0u32; 16];
    let types = [
        RssType::None,
        RssType::TcpIpv4,
        RssType::Ipv4,
        RssType::TcpIpv6,
        RssType::Ipv6Ex,
        RssType::Ipv6,
    ];
    let mut i = 0;
    while i < types.len() {
        t[i] = (types[i] as u32) << PacketMeta::RX_RSS_TYPE_SHIFT;
        i += 1;
    }
    t
};

impl RxView for E1000eRxView<'_> {
    // `completion` reports the index it reads as the slot.
    const SLOT_IS_INDEX: bool = true;

    #[inline(always)]
    fn refill(&self, pidx: u32, iova: u64, _len: u32) {
        // The buffer size is global (RCTL.BSIZE), not per descriptor. Writing the read format
        // also clears the previous write-back's DD, which lives in the upper quadword.
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
        // Status/errors and length in one read (the length is bytes 12..14).
        self.decode(
            cidx,
            self.ring.read_u64_at(cidx, RX_WB_STATUS_OFFSET),
            || self.ring.read_u64_at(cidx, 0),
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
            let q = span.read_u64_at(k, RX_WB_STATUS_OFFSET);
            let c = self.decode(cidx.wrapping_add(k as u32), q, || span.read_u64_at(k, 0));
            if !take(k, c) {
                return k;
            }
        }
        span.len()
    }
}

impl E1000eRxView<'_> {
    /// The completion at `cidx` from its write-back's second quadword `q` (status, errors,
    /// length, VLAN) and, read only with RSS on, its first (`lower`: MRQ and the hash).
    #[inline(always)]
    fn decode(&self, cidx: u32, q: u64, lower: impl FnOnce() -> u64) -> RxCompletion {
        let status_error = q as u32;
        let len = (q >> 32) as u32 & 0xffff;
        // The common case in one masked compare: the last buffer, no frame error, no
        // checksum-checked bit (offload off), no stripped tag, so no flags.
        let plain = status_error & (RXD_STAT_EOP | RXD_ERR_FRAME | RX_SLOW_STAT) == RXD_STAT_EOP;
        let (whole, flags) = if plain {
            // No checksum bit to refine it: the packet type is QEMU's code, which is
            // tenge's own, moved into place (`PTYPE_CODE_TO_FLAG`).
            (
                true,
                (status_error >> PTYPE_CODE_TO_FLAG) & PacketMeta::RX_PTYPE_MASK,
            )
        } else {
            rx_not_plain(status_error)
        };
        // With RSS (RXCSUM.PCSD), the first quadword is MRQ (type in 3:0) and the hash.
        let (flags, hash) = if self.rss {
            let lower = lower();
            (
                flags | RSS_TYPE_FLAGS[(lower & 0xf) as usize],
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
            // The VLAN field (bytes 14..16), valid with VP.
            vlan: (q >> 48) as u16,
        }
    }
}

const _: () = assert!(size_of::<RxDescExtWb>() == size_of::<RxDescExtRead>());

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::mempool::host_pool;
    use crate::platform::dma::{DmaRegion, HugepagePolicy, IdentityMapper};
    use crate::ring::{PacketBatch, RxQueue, TxQueue};
    use std::collections::HashMap;
    use std::sync::Mutex;
    use tenge_descriptors::e1000e::RXD_ERR_CE;
    use zerocopy::little_endian::{U16, U32};

    /// Registers as a plain map, recording every write.
    #[derive(Default)]
    struct Regs(Mutex<HashMap<u32, u32>>, Mutex<Vec<(u32, u32)>>);
    impl Mmio for Regs {
        fn read32(&self, off: u32) -> u32 {
            *self.0.lock().unwrap().get(&off).unwrap_or(&0)
        }
        fn write32(&self, off: u32, v: u32) {
            self.0.lock().unwrap().insert(off, v);
            self.1.lock().unwrap().push((off, v));
        }
    }
    impl Regs {
        fn writes(&self) -> Vec<(u32, u32)> {
            self.1.lock().unwrap().clone()
        }
        fn clear(&self) {
            self.1.lock().unwrap().clear();
        }
    }

    fn region() -> Arc<DmaRegion> {
        Arc::new(
            DmaRegion::allocate(Arc::new(IdentityMapper), 1 << 16, HugepagePolicy::Never).unwrap(),
        )
    }

    /// Plays the device: completes RX descriptor `idx` with `len` bytes of `fill`.
    fn device_receive(
        ring: &DescRing<RxDescExtRead>,
        idx: u32,
        len: u16,
        status_error: u32,
        fill: u8,
    ) {
        let read = ring.read(idx);
        let addr = read.buffer_addr.get() as *mut u8;
        // SAFETY (test): identity-mapped buffer of at least 2048 bytes posted by the engine.
        unsafe { std::ptr::write_bytes(addr, fill, len.min(2048) as usize) };
        let wb = RxDescExtWb {
            mrq: U32::new(0),
            rss_or_csum: U32::new(0),
            status_error: U32::new(status_error),
            length: U16::new(len),
            vlan: U16::new(0),
        };
        ring.write(idx, zerocopy::transmute!(wb));
    }

    #[test]
    fn rx_delivers_validates_and_refills_with_one_tail_write() {
        let regs = Arc::new(Regs::default());
        let ring = DescRing::new(region(), 0, 8);
        let pool = host_pool(64).unwrap();
        let mut cache = pool.cache(16);
        let mut rxq = RxQueue::new(E1000eRx::new(ring, regs.clone()), 1);
        assert_eq!(rxq.fill(&mut cache), 7, "one slot stays empty");
        assert_eq!(regs.read32(regs::RDT), 7);
        let r = rxq.ops().ring();
        device_receive(r, 0, 60, RXD_STAT_DD | RXD_STAT_EOP | RXD_STAT_IPCS, 0xaa);
        device_receive(r, 1, 5000, RXD_STAT_DD | RXD_STAT_EOP, 0xbb); // longer than the buffer
        device_receive(r, 2, 64, RXD_STAT_DD | RXD_STAT_EOP | RXD_ERR_CE, 0xcc);
        device_receive(r, 3, 100, RXD_STAT_DD, 0xdd); // first half of a two-buffer frame
        device_receive(r, 4, 100, RXD_STAT_DD | RXD_STAT_EOP, 0xdd);
        device_receive(
            r,
            5,
            1514,
            RXD_STAT_DD | RXD_STAT_EOP | RXD_STAT_TCPCS | RXD_ERR_TCPE,
            0xee,
        );
        regs.clear();
        let mut out = PacketBatch::new(32);
        assert_eq!(rxq.rx_burst(&mut cache, &mut out), 3);
        let a = out.pop().unwrap();
        assert_eq!(a.data(), &[0xaa; 60][..]);
        assert_eq!(a.meta().flags, PacketMeta::RX_IP_CSUM_GOOD);
        // The two-buffer frame: one packet, a chain of both buffers.
        let c = out.pop().unwrap();
        assert_eq!((c.nb_segs(), c.pkt_len()), (2, 200));
        let mut bytes = Vec::new();
        c.append_to(&mut bytes);
        assert_eq!(bytes, [0xdd; 200]);
        let b = out.pop().unwrap();
        assert_eq!(b.len(), 1514);
        assert_eq!(b.meta().flags, PacketMeta::RX_L4_CSUM_BAD);
        let s = *rxq.stats();
        assert_eq!(
            (s.packets, s.bad_len, s.errors, s.multi_buffer, s.chains),
            (3, 1, 1, 0, 1)
        );
        // Six consumed, six refilled, one tail write that keeps one slot empty.
        assert_eq!(regs.writes(), vec![(regs::RDT, 5)]);
        assert_eq!(rxq.posted(), 7);
        // Not-yet-done descriptors yield nothing.
        assert_eq!(rxq.rx_burst(&mut cache, &mut out), 0);
    }

    /// The packet-type code QEMU's model writes in status bits 19:16 (`E1000_RXD_PKT_TYPE`)
    /// reaches the metadata: IPv4 or IPv6 always, TCP or UDP only with the L4 checksum's
    /// TCPCS/UDPCS beside a "TCP or UDP" code (unknown without), code 0 unknown; on the
    /// fast path, beside checksum verdicts, and on a chain from its last descriptor.
    #[test]
    fn rx_reports_the_packet_type_code() {
        let regs = Arc::new(Regs::default());
        let pool = host_pool(64).unwrap();
        let mut cache = pool.cache(16);
        let mut rxq = RxQueue::new(E1000eRx::new(DescRing::new(region(), 0, 16), regs), 1);
        rxq.fill(&mut cache);
        let r = rxq.ops().ring();
        let done = RXD_STAT_DD | RXD_STAT_EOP;
        let code = |c: u32| c << RXD_PKT_TYPE_SHIFT;
        let t = PacketType::new;
        let tcp = RXD_STAT_IPCS | RXD_STAT_TCPCS;
        let udp = RXD_STAT_TCPCS | RXD_STAT_UDPCS;
        let cases = [
            (code(RXD_PKT_IP4_XDP), t(L3Type::Ipv4, L4Type::Unknown)),
            (code(RXD_PKT_IP6_XDP), t(L3Type::Ipv6, L4Type::Unknown)),
            (code(RXD_PKT_IP4), t(L3Type::Ipv4, L4Type::Other)),
            (code(RXD_PKT_IP6), t(L3Type::Ipv6, L4Type::Other)),
            (code(0), PacketType::UNKNOWN),
            // A code QEMU never writes: tenge's own meaning, unknown for 10-15.
            (code(12), PacketType::UNKNOWN),
            (code(RXD_PKT_IP4_XDP) | tcp, t(L3Type::Ipv4, L4Type::Tcp)),
            (code(RXD_PKT_IP6_XDP) | udp, t(L3Type::Ipv6, L4Type::Udp)),
            (
                code(RXD_PKT_IP4_XDP) | udp | RXD_ERR_TCPE,
                t(L3Type::Ipv4, L4Type::Udp),
            ),
        ];
        for (i, (st, _)) in cases.iter().enumerate() {
            device_receive(r, i as u32, 60, done | st, 1);
        }
        let n = cases.len() as u32;
        device_receive(r, n, 100, RXD_STAT_DD, 2);
        device_receive(
            r,
            n + 1,
            100,
            done | code(RXD_PKT_IP6_XDP) | RXD_STAT_TCPCS,
            2,
        );
        let mut out = PacketBatch::new(32);
        assert_eq!(rxq.rx_burst(&mut cache, &mut out), cases.len() + 1);
        for (i, (st, want)) in cases.iter().enumerate() {
            let m = *out.get(i).unwrap().meta();
            assert_eq!(m.packet_type(), *want, "case {i}");
            assert_eq!(
                m.flags & !PacketMeta::RX_PTYPE_MASK,
                rx_csum_flags(done | st),
                "case {i}"
            );
        }
        let chain = out.get(cases.len()).unwrap();
        assert_eq!(chain.nb_segs(), 2);
        assert_eq!(chain.meta().packet_type(), t(L3Type::Ipv6, L4Type::Tcp));
        assert_eq!(
            chain.meta().flags & !PacketMeta::RX_PTYPE_MASK,
            PacketMeta::RX_L4_CSUM_GOOD
        );
    }

    /// Queue 1 rings RDT1; with RSS the write-back's MRQ type and hash reach the metadata
    /// (82574 §7.1.5.2: type 1 TCP/IPv4, 2 IPv4, 3 TCP/IPv6, 5 IPv6); without RSS the same
    /// quadword (the IP ID and checksum then) is never read as a hash.
    #[test]
    fn rx_queue_1_reports_the_rss_hash_and_type() {
        for rss in [true, false] {
            let regs = Arc::new(Regs::default());
            let pool = host_pool(64).unwrap();
            let mut cache = pool.cache(16);
            let ring = DescRing::new(region(), 0, 8);
            let mut rxq = RxQueue::new(E1000eRx::for_queue(ring, regs.clone(), 1, rss), 1);
            assert_eq!(rxq.fill(&mut cache), 7);
            assert_eq!(regs.writes(), vec![(regs::RDT1, 7)]);
            let r = rxq.ops().ring();
            let types = [
                (1, RssType::TcpIpv4),
                (2, RssType::Ipv4),
                (3, RssType::TcpIpv6),
                (5, RssType::Ipv6),
                (0, RssType::None),
                (9, RssType::None),
            ];
            for (i, (mrq, _)) in types.iter().enumerate() {
                device_receive(r, i as u32, 60, RXD_STAT_DD | RXD_STAT_EOP, 1);
                let mut wb: RxDescExtWb = zerocopy::transmute!(r.read(i as u32));
                wb.mrq = U32::new(mrq | 1 << 8);
                wb.rss_or_csum = U32::new(0xdead_0000 + i as u32);
                r.write(i as u32, zerocopy::transmute!(wb));
            }
            let mut out = PacketBatch::new(32);
            assert_eq!(rxq.rx_burst(&mut cache, &mut out), types.len());
            for (i, (_, t)) in types.iter().enumerate() {
                let m = *out.get(i).unwrap().meta();
                if rss {
                    assert_eq!(m.rss_type(), *t, "entry {i}");
                    let want = (*t != RssType::None).then_some(0xdead_0000 + i as u32);
                    assert_eq!(m.rss_hash(), want, "entry {i}");
                } else {
                    assert_eq!((m.rss_type(), m.rss_hash()), (RssType::None, None));
                }
                assert_eq!(m.flags & !PacketMeta::RX_RSS_TYPE_MASK, 0);
            }
        }
    }

    /// A poll that finds every posted buffer used counts a dry ring (QEMU holds frames back
    /// then, and its RNBC stays 0); one that finds some still posted does not.
    #[test]
    fn rx_a_ring_used_up_is_counted_dry() {
        let regs = Arc::new(Regs::default());
        let pool = host_pool(64).unwrap();
        let mut cache = pool.cache(16);
        let mut rxq = RxQueue::new(E1000eRx::new(DescRing::new(region(), 0, 8), regs), 1);
        assert_eq!(rxq.fill(&mut cache), 7);
        let mut out = PacketBatch::new(32);
        for idx in 0..3 {
            device_receive(rxq.ops().ring(), idx, 60, RXD_STAT_DD | RXD_STAT_EOP, 1);
        }
        assert_eq!(rxq.rx_burst(&mut cache, &mut out), 3);
        assert_eq!(rxq.stats().ring_dry, 0);
        out.free_into(&mut cache);
        // The refill posted 3 more (indices 7..9): the device uses all 7 posted.
        for idx in 3..10 {
            device_receive(rxq.ops().ring(), idx % 8, 60, RXD_STAT_DD | RXD_STAT_EOP, 2);
        }
        assert_eq!(rxq.rx_burst(&mut cache, &mut out), 7);
        assert_eq!(rxq.stats().ring_dry, 1);
        out.free_into(&mut cache);
        // A burst smaller than the ring: the ring is dry all the same when the device has
        // used its last posted buffer (a 512-entry ring read 32 at a time).
        for idx in 10..17 {
            device_receive(rxq.ops().ring(), idx % 8, 60, RXD_STAT_DD | RXD_STAT_EOP, 3);
        }
        let mut small = PacketBatch::new(2);
        assert_eq!(rxq.rx_burst(&mut cache, &mut small), 2);
        assert_eq!(rxq.stats().ring_dry, 2);
    }

    #[test]
    fn rx_tail_writes_are_batched_by_free_thresh() {
        let regs = Arc::new(Regs::default());
        let pool = host_pool(64).unwrap();
        let mut cache = pool.cache(16);
        let mut rxq = RxQueue::new(
            E1000eRx::new(DescRing::new(region(), 0, 16), regs.clone()),
            4,
        );
        rxq.fill(&mut cache);
        regs.clear();
        let mut out = PacketBatch::new(32);
        for i in 0..3 {
            device_receive(rxq.ops().ring(), i, 60, RXD_STAT_DD | RXD_STAT_EOP, 1);
        }
        assert_eq!(rxq.rx_burst(&mut cache, &mut out), 3);
        assert!(
            regs.writes().is_empty(),
            "3 free < threshold 4: no tail write yet"
        );
        device_receive(rxq.ops().ring(), 3, 60, RXD_STAT_DD | RXD_STAT_EOP, 1);
        assert_eq!(rxq.rx_burst(&mut cache, &mut out), 1);
        assert_eq!(
            regs.writes(),
            vec![(regs::RDT, 3)],
            "one write for four refills"
        );
        assert_eq!(rxq.posted(), 15);
    }

    #[test]
    fn rx_exhausted_pool_counts_and_recovers() {
        let regs = Arc::new(Regs::default());
        let pool = host_pool(4).unwrap();
        let mut cache = pool.cache(2);
        let mut rxq = RxQueue::new(
            E1000eRx::new(DescRing::new(region(), 0, 8), regs.clone()),
            1,
        );
        assert_eq!(rxq.fill(&mut cache), 4);
        assert_eq!(rxq.stats().no_buf, 1);
        for i in 0..4 {
            device_receive(rxq.ops().ring(), i, 60, RXD_STAT_DD | RXD_STAT_EOP, i as u8);
        }
        let mut out = PacketBatch::new(8);
        assert_eq!(rxq.rx_burst(&mut cache, &mut out), 4);
        assert_eq!(rxq.posted(), 0, "every buffer is with the application");
        assert!(rxq.stats().no_buf >= 2);
        out.free_into(&mut cache);
        assert_eq!(rxq.rx_burst(&mut cache, &mut out), 0);
        assert_eq!(rxq.posted(), 4, "recovered once buffers came back");
        assert_eq!(
            regs.read32(regs::RDT),
            0,
            "tail moved past the refilled slots"
        );
    }

    #[test]
    fn tx_sets_rs_every_nth_and_recycles_on_dd() {
        let regs = Arc::new(Regs::default());
        let pool = host_pool(64).unwrap();
        let mut cache = pool.cache(16);
        let mut txq = TxQueue::new(
            E1000eTx::new(DescRing::new(region(), 0, 16), regs.clone()),
            4,
            MAX_FRAME,
        );
        let mut batch = PacketBatch::new(32);
        for i in 0..10u8 {
            let mut b = cache.alloc().unwrap();
            b.copy_from(&[i; 60]);
            batch.push(b).unwrap();
        }
        regs.clear();
        assert_eq!(txq.tx_burst(&mut cache, &mut batch), 10);
        assert!(batch.is_empty());
        assert_eq!(
            regs.writes(),
            vec![(regs::TDT, 10)],
            "one doorbell per burst"
        );
        let ring = txq.ops().ring();
        let rs: Vec<bool> = (0..10)
            .map(|i| ring.read(i).cmd & TXD_CMD_RS != 0)
            .collect();
        assert_eq!(
            rs,
            [false, false, false, true, false, false, false, true, false, false]
        );
        assert_eq!(ring.read(5).length.get(), 60);
        assert_eq!(
            ring.read(5).cmd & (TXD_CMD_EOP | TXD_CMD_IFCS),
            TXD_CMD_EOP | TXD_CMD_IFCS
        );
        // The device completes through descriptor 3 only.
        let mut d = ring.read(3);
        d.status = TXD_STAT_DD;
        ring.write(3, d);
        assert_eq!(txq.reclaim(&mut cache), 4);
        assert_eq!(txq.stats().completed, 4);
        assert_eq!(txq.in_flight(), 6);
    }

    /// A chain of 1 to 4 segments goes out as one frame: a descriptor per segment, EOP and
    /// RS on its last only; completion takes every segment back to the pool. A chain longer
    /// than TX_MAX_SEGS, or longer in all than a frame, is dropped and counted.
    #[test]
    fn tx_chains_take_a_descriptor_per_segment() {
        let regs = Arc::new(Regs::default());
        let pool = host_pool(128).unwrap();
        let mut cache = pool.cache(0);
        let mut txq = TxQueue::new(
            E1000eTx::new(DescRing::new(region(), 0, 64), regs.clone()),
            32,
            MAX_FRAME,
        );
        let chain = |cache: &mut crate::packet::mempool::MempoolCache, segs: usize, seg_len| {
            let mut head: Option<PacketBuf> = None;
            for i in (0..segs).rev() {
                let mut b = cache.alloc().unwrap();
                b.copy_from(&vec![i as u8; seg_len]);
                b.set_next(head.take());
                head = Some(b);
            }
            head.unwrap()
        };
        let mut batch = PacketBatch::new(8);
        for segs in 1..=4 {
            batch.push(chain(&mut cache, segs, 100)).unwrap();
        }
        assert_eq!(txq.tx_burst(&mut cache, &mut batch), 4);
        let ring = txq.ops().ring();
        let mut idx = 0;
        for segs in 1..=4u32 {
            for i in 0..segs {
                let d = ring.read(idx);
                assert_eq!(d.length.get(), 100);
                let last = i == segs - 1;
                assert_eq!(d.cmd & TXD_CMD_EOP != 0, last, "EOP of descriptor {idx}");
                assert!(d.cmd & TXD_CMD_IFCS != 0);
                idx += 1;
            }
        }
        assert_eq!(idx, 10);
        assert!(
            ring.read(9).cmd & TXD_CMD_RS != 0,
            "the burst's report on its last"
        );
        assert_eq!(regs.read32(regs::TDT), 10);
        assert_eq!(txq.stats().bytes, 1000);
        device_sent(ring, 9);
        assert_eq!(txq.reclaim(&mut cache), 10);
        drop(cache);
        assert_eq!(pool.free_count(), 128, "every segment back");
        let mut cache = pool.cache(0);
        batch
            .push(chain(&mut cache, TX_MAX_SEGS as usize + 1, 40))
            .unwrap();
        batch.push(chain(&mut cache, 2, 1000)).unwrap(); // 2000 bytes: too long
        assert_eq!(txq.tx_burst(&mut cache, &mut batch), 0);
        assert_eq!(txq.stats().bad_packet, 2);
        drop(cache);
        assert_eq!(pool.free_count(), 128);
    }

    /// Marks TX descriptor `idx` done, as the device does for one written with RS.
    fn device_sent(ring: &DescRing<LegacyTxDesc>, idx: u32) {
        let mut d = ring.read(idx);
        assert!(
            d.cmd & TXD_CMD_RS != 0,
            "descriptor {idx} asks for no report"
        );
        d.status = TXD_STAT_DD;
        ring.write(idx, d);
    }

    /// A sender of one frame at a time (a frame a second, say) gets every buffer back
    /// after each: the interval of 32 is never reached, so each burst onto the idle ring
    /// asks for its own report. Before, the buffers waited for a 32nd descriptor.
    #[test]
    fn tx_a_low_rate_sender_gets_every_buffer_back() {
        let regs = Arc::new(Regs::default());
        let pool = host_pool(8).unwrap();
        let mut cache = pool.cache(0);
        let mut txq = TxQueue::new(
            E1000eTx::new(DescRing::new(region(), 0, 64), regs.clone()),
            32,
            MAX_FRAME,
        );
        let mut batch = PacketBatch::new(4);
        for i in 0..100u32 {
            let mut b = cache.alloc().expect("every buffer came back");
            b.copy_from(&[i as u8; 60]);
            batch.push(b).unwrap();
            assert_eq!(txq.tx_burst(&mut cache, &mut batch), 1);
            device_sent(txq.ops().ring(), i % 64);
            assert_eq!(txq.reclaim(&mut cache), 1);
            assert_eq!(txq.in_flight(), 0);
        }
        assert_eq!(txq.stats().completed, 100);
        drop(cache);
        assert_eq!(pool.free_count(), 8);
    }

    /// reclaim_all (Port::tx_drain, once the head has caught up) takes back the buffers a
    /// busy ring left after its last report.
    #[test]
    fn tx_reclaim_all_takes_back_unreported_buffers() {
        let regs = Arc::new(Regs::default());
        let pool = host_pool(64).unwrap();
        let mut cache = pool.cache(0);
        let mut txq = TxQueue::new(
            E1000eTx::new(DescRing::new(region(), 0, 64), regs.clone()),
            8,
            MAX_FRAME,
        );
        let mut batch = PacketBatch::new(32);
        let mut burst =
            |txq: &mut TxQueue<_>, cache: &mut crate::packet::mempool::MempoolCache, n: u8| {
                for i in 0..n {
                    let mut b = cache.alloc().unwrap();
                    b.copy_from(&[i; 60]);
                    batch.push(b).unwrap();
                }
                assert_eq!(txq.tx_burst(cache, &mut batch), n as usize);
            };
        burst(&mut txq, &mut cache, 10); // a report at 7
        burst(&mut txq, &mut cache, 5); // 10..14: 7 outstanding, the next report at 15
        assert_eq!(txq.in_flight(), 15);
        let ring = txq.ops().ring();
        assert!((8..15).all(|i| ring.read(i).cmd & TXD_CMD_RS == 0));
        device_sent(ring, 7);
        assert_eq!(txq.reclaim(&mut cache), 8);
        assert_eq!(txq.in_flight(), 7, "8..14 wait for a report");
        assert_eq!(txq.reclaim_all(&mut cache), 7);
        assert_eq!(txq.in_flight(), 0);
        drop(cache);
        assert_eq!(pool.free_count(), 64);
    }

    #[test]
    fn tx_stops_at_a_full_ring_and_drops_unsendable_frames() {
        let regs = Arc::new(Regs::default());
        let pool = host_pool(64).unwrap();
        let mut cache = pool.cache(16);
        let mut txq = TxQueue::new(
            E1000eTx::new(DescRing::new(region(), 0, 8), regs.clone()),
            4,
            MAX_FRAME,
        );
        let mut batch = PacketBatch::new(32);
        batch.push(cache.alloc().unwrap()).unwrap(); // empty: unsendable
                                                     // A chain of two buffers: one frame over two descriptors.
        let mut head = cache.alloc().unwrap();
        head.set_len(64);
        let mut tail = cache.alloc().unwrap();
        tail.set_len(64);
        head.set_next(Some(tail));
        batch.push(head).unwrap();
        for _ in 0..10 {
            let mut b = cache.alloc().unwrap();
            b.set_len(64);
            batch.push(b).unwrap();
        }
        assert_eq!(
            txq.tx_burst(&mut cache, &mut batch),
            6,
            "8-entry ring holds 7 descriptors: the chain's two and five more"
        );
        assert_eq!(batch.len(), 5, "the caller keeps what did not fit");
        let s = *txq.stats();
        assert_eq!((s.bad_packet, s.ring_full, s.doorbells), (1, 1, 1));
        drop(batch);
        txq.release(&mut cache);
        drop(cache);
        assert_eq!(pool.free_count(), 64, "no buffer lost");
    }

    /// A model of QEMU's e1000e rings over the same memory: transmits descriptors from its
    /// head to TDT (writing DD where RS is set), receives into posted descriptors from its
    /// head to RDT. The engine and the ops are the code under test.
    struct ModelDevice {
        tdh: u32,
        rdh: u32,
        wire: Vec<Vec<u8>>,
    }

    impl ModelDevice {
        fn transmit(&mut self, regs: &Regs, ring: &DescRing<LegacyTxDesc>) {
            let tdt = regs.read32(regs::TDT);
            while self.tdh != tdt {
                let d = ring.read(self.tdh);
                let mut frame = vec![0u8; d.length.get() as usize];
                // SAFETY (test): identity-mapped buffer the engine handed to the device.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        d.buffer_addr.get() as *const u8,
                        frame.as_mut_ptr(),
                        frame.len(),
                    )
                };
                self.wire.push(frame);
                if d.cmd & TXD_CMD_RS != 0 {
                    let mut done = d;
                    done.status |= TXD_STAT_DD;
                    ring.write(self.tdh, done);
                }
                self.tdh = (self.tdh + 1) % ring.entries();
            }
        }

        /// Receives up to `n` frames (the ones numbered from `*next`); returns how many fit.
        fn receive(
            &mut self,
            regs: &Regs,
            ring: &DescRing<RxDescExtRead>,
            n: u32,
            next: &mut u32,
        ) -> u32 {
            let rdt = regs.read32(regs::RDT);
            let mut got = 0;
            while got < n && self.rdh != rdt {
                let len = 60 + (*next % 64) as u16;
                let read = ring.read(self.rdh);
                let addr = read.buffer_addr.get() as *mut u8;
                // SAFETY (test): identity-mapped 2048-byte buffer posted by the engine.
                unsafe {
                    std::ptr::write_bytes(addr, 0, len as usize);
                    std::ptr::copy_nonoverlapping(next.to_le_bytes().as_ptr(), addr, 4);
                }
                let wb = RxDescExtWb {
                    mrq: U32::new(0),
                    rss_or_csum: U32::new(0),
                    status_error: U32::new(RXD_STAT_DD | RXD_STAT_EOP),
                    length: U16::new(len),
                    vlan: U16::new(0),
                };
                ring.write(self.rdh, zerocopy::transmute!(wb));
                self.rdh = (self.rdh + 1) % ring.entries();
                *next += 1;
                got += 1;
            }
            got
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Tx(u8),
        DeviceTx,
        DeviceRx(u8),
        Rx(u8),
        FreeHeld,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            (1u8..80).prop_map(Op::Tx),
            Just(Op::DeviceTx),
            (1u8..80).prop_map(Op::DeviceRx),
            (1u8..80).prop_map(Op::Rx),
            Just(Op::FreeHeld),
        ]
    }

    proptest::proptest! {
        /// The lookup table the data path uses agrees with the plain decoder on every
        /// write-back, whatever else is set in it.
        #[test]
        fn csum_table_matches_the_decoder(status_error in proptest::prelude::any::<u32>()) {
            proptest::prop_assert_eq!(rx_csum_flags_lut(status_error), rx_csum_flags(status_error));
            proptest::prop_assert_eq!(
                rx_slow_flags_with_ptype(status_error),
                rx_slow_flags(status_error) | ptype_flags(status_error)
            );
        }

        /// Whatever the interleaving of bursts and device progress, on rings that wrap many
        /// times: TX puts every frame on the wire once, in order; RX delivers every frame the
        /// device wrote, once, in order; no buffer is lost or duplicated.
        #[test]
        fn engine_keeps_order_and_buffers_across_wraps(
            ring_log2 in 3u32..6,
            thresh in 1u32..8,
            rs in 1u32..8,
            ops in proptest::collection::vec(op(), 1..200),
        ) {
            let entries = 1 << ring_log2;
            let regs = Arc::new(Regs::default());
            let mem = region();
            let pool = host_pool(256).unwrap();
            let mut cache = pool.cache(32);
            let mut txq = TxQueue::new(E1000eTx::new(DescRing::new(mem.clone(), 0, entries), regs.clone()), rs, MAX_FRAME);
            let mut rxq = RxQueue::new(E1000eRx::new(DescRing::new(mem.clone(), 8192, entries), regs.clone()), thresh);
            rxq.fill(&mut cache);
            let mut dev = ModelDevice { tdh: 0, rdh: 0, wire: Vec::new() };
            let (mut tx_seq, mut rx_dev_seq, mut rx_seq) = (0u32, 0u32, 0u32);
            let mut pending = PacketBatch::new(128);
            let mut held: Vec<PacketBuf> = Vec::new();
            for op in ops {
                match op {
                    Op::Tx(n) => {
                        while pending.len() < n as usize {
                            let Some(mut b) = cache.alloc() else { break };
                            b.copy_from(&tx_seq.to_le_bytes().repeat(16));
                            tx_seq += 1;
                            pending.push(b).unwrap();
                        }
                        txq.tx_burst(&mut cache, &mut pending);
                        proptest::prop_assert!(txq.in_flight() < entries);
                    }
                    Op::DeviceTx => dev.transmit(&regs, txq.ops().ring()),
                    Op::DeviceRx(n) => { dev.receive(&regs, rxq.ops().ring(), n as u32, &mut rx_dev_seq); }
                    Op::Rx(n) => {
                        let mut out = PacketBatch::new(n as usize);
                        rxq.rx_burst(&mut cache, &mut out);
                        for b in out.drain() {
                            let seq = u32::from_le_bytes(b.data()[..4].try_into().unwrap());
                            proptest::prop_assert_eq!(seq, rx_seq);
                            proptest::prop_assert_eq!(b.len(), 60 + (seq % 64) as usize);
                            rx_seq += 1;
                            held.push(b);
                        }
                    }
                    Op::FreeHeld => for b in held.drain(..) { cache.free(b) },
                }
                proptest::prop_assert!(rxq.posted() < entries);
            }
            // Let the device finish, then every frame sent must be on the wire, in order.
            txq.tx_burst(&mut cache, &mut pending);
            dev.transmit(&regs, txq.ops().ring());
            let sent = (tx_seq as usize) - pending.len();
            proptest::prop_assert_eq!(dev.wire.len(), sent);
            for (i, f) in dev.wire.iter().enumerate() {
                proptest::prop_assert_eq!(&f[..4], &(i as u32).to_le_bytes()[..]);
            }
            // And every frame the device wrote is delivered, in order.
            held.drain(..).for_each(|b| cache.free(b));
            loop {
                let mut out = PacketBatch::new(64);
                if rxq.rx_burst(&mut cache, &mut out) == 0 {
                    break;
                }
                for b in out.drain() {
                    let seq = u32::from_le_bytes(b.data()[..4].try_into().unwrap());
                    proptest::prop_assert_eq!(seq, rx_seq);
                    rx_seq += 1;
                    cache.free(b);
                }
            }
            proptest::prop_assert_eq!(rx_seq, rx_dev_seq);
            proptest::prop_assert_eq!(rxq.stats().packets, rx_seq as u64);
            // Every buffer comes home.
            pending.free_into(&mut cache);
            held.drain(..).for_each(|b| cache.free(b));
            txq.release(&mut cache);
            rxq.release(&mut cache);
            drop(cache);
            proptest::prop_assert_eq!(pool.free_count(), 256);
        }
    }
}
