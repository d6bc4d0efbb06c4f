//! virtio-net (modern virtio-pci, QEMU `virtio-net-pci,disable-legacy=on,iommu_platform=on`)
//! on split virtqueues: the descriptor ops the ring engine drives, and the device bring-up,
//! which picks packed rings (`packed.rs`) instead when the device offers
//! `VIRTIO_F_RING_PACKED`.
//!
//! Transport and device configuration are `tenge_firmware_iface::virtio`; the ring layouts
//! are `tenge_descriptors::virtio`; batching, refill, completion and doorbell policy are the
//! one ring engine (`ring.rs`). This module supplies only what is virtio's own:
//!
//! - **Descriptor id == ring slot.** The buffer posted at engine index `i` sits in
//!   descriptor `i & mask`, and the avail ring's entry `i & mask` always names descriptor
//!   `i & mask`; so the avail ring is written once, at setup, and a refill or a send writes
//!   one descriptor. The used ring names descriptors by id: for RX that id is the engine's
//!   slot, checked by the engine (an id never made available, or beyond the ring, is a
//!   counted `bad_slot`, never trusted).
//! - **RX** (virtio 1.2 §5.1.6.3, without `VIRTIO_NET_F_MRG_RXBUF`): one device-writable
//!   buffer per frame, posted 12 bytes before the packet's data start, so the device writes
//!   the `virtio_net_hdr` into the headroom and the frame lands where the packet's data
//!   begins; the used length less the header is the frame length, which the engine checks
//!   against the buffer.
//! - **TX** (§5.1.6.2): the 12-byte header (all zero: no offloads) is prepended into the
//!   packet's headroom, so a frame is one device-readable descriptor. Without
//!   `VIRTIO_F_IN_ORDER` (not negotiated) a device may use buffers in any order (§2.7.8;
//!   QEMU happens to use TX in order, a vhost backend need not), so a send is complete when
//!   a used element names its id (descriptor index == ring slot): the engine frees that
//!   slot's buffer (an id naming no buffer in flight is a counted `bad_completion`) and
//!   never writes a descriptor again while an older buffer before it is still held.
//! - **Notifications** (§2.7.10, §2.7.13.4): after a batch, `avail.idx` is published, a full
//!   fence orders that store before the load of the device's suppression state, and the
//!   doorbell is written only if the device asked for it: with `VIRTIO_F_EVENT_IDX` by
//!   [`vring_need_event`] on `avail_event`, without it unless `VIRTQ_USED_F_NO_NOTIFY` is set.
//!   Every RX refill goes through this: QEMU holds frames while the RX queue is empty and
//!   delivers again only after an RX notify.
//! - **No interrupts**: tenge polls; `VIRTQ_AVAIL_F_NO_INTERRUPT` is set and, with
//!   EVENT_IDX, `used_event` is kept half the index space ahead of `avail.idx`, where the
//!   device's used index never reaches.
//! - **Control queue** (`VIRTIO_NET_F_CTRL_VQ`, queue 2): set up at open when offered, in
//!   the same ring format and region as the data queues; its synchronous command driver and
//!   the receive filter commands are `ctrl.rs`.

use crate::platform::barrier;
use std::sync::Arc;

use tenge_descriptors::virtio::{vring_need_event, VIRTQ_USED_F_NO_NOTIFY};
use tenge_descriptors::virtio_net::{
    VirtioNetHdr, VirtioNetHdrHash, VIRTIO_NET_HASH_HDR_LEN, VIRTIO_NET_HDR_F_DATA_VALID,
    VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_ECN, VIRTIO_NET_HDR_GSO_NONE,
    VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6, VIRTIO_NET_HDR_LEN,
};
use tenge_firmware_iface::virtio::{
    VIRTIO_F_ACCESS_PLATFORM, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_PACKED,
    VIRTIO_F_VERSION_1, VIRTIO_NET_F_CSUM, VIRTIO_NET_F_CTRL_RX, VIRTIO_NET_F_CTRL_VQ,
    VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6,
    VIRTIO_NET_F_HASH_REPORT, VIRTIO_NET_F_HOST_ECN, VIRTIO_NET_F_HOST_TSO4,
    VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MQ, VIRTIO_NET_F_MRG_RXBUF,
    VIRTIO_NET_F_RSS, VIRTIO_NET_F_STATUS,
};
use tenge_firmware_iface::NarrowMmio;
use zerocopy::FromBytes;

use crate::offload::tx::{BadOffload, DeviceTxOffloads, PseudoHeader, TxOffload, TSO_MAX_IP_LEN};
use crate::packet::mempool::{MempoolCache, PacketBuf, PacketMeta};
use crate::packet::rss::RssType;
use crate::platform::dma::{DescRing, DmaRegion};
use crate::ring::{PacketBatch, RxCompletion, RxView, TxDescOps, TxQueue};

pub mod ctrl;
mod net;
pub mod packed;
pub mod split;
#[cfg(test)]
mod test_util;

pub use net::{
    multiqueue_features, OpenedVirtio, VirtioNet, VirtioNetPacked, VirtioQueueConfig, VirtioVectors,
};
pub use split::{SplitRing, SplitView, VirtioRx, VirtioTx, VirtioTxView};

use split::NO_INTERRUPT_DISTANCE;

/// PCI vendor ID of virtio devices (Red Hat, Inc.).
pub const VENDOR_VIRTIO: u16 = 0x1af4;
/// PCI device ID of a modern (virtio 1.x) network device: 0x1040 + device type 1.
pub const DEVICE_VIRTIO_NET: u16 = 0x1041;

/// Largest frame sent or received, as for e1000e (no MTU feature negotiated).
pub const MAX_FRAME: usize = 1514;

/// Bytes of `virtio_net_hdr` before every frame (VERSION_1, §5.1.6).
pub const HDR_LEN: usize = VIRTIO_NET_HDR_LEN;
/// Bytes of the header with `VIRTIO_NET_F_HASH_REPORT` (§5.1.6: the hash fields follow
/// `num_buffers`), in both directions.
pub const HASH_HDR_LEN: usize = VIRTIO_NET_HASH_HDR_LEN;

/// What this data path always asks for: a modern device behind the IOMMU, its MAC and link
/// status, mergeable RX buffers (a frame larger than one buffer arrives as a chain),
/// event-index notification suppression, packed rings when offered (split otherwise; see
/// `packed.rs`), and the control queue with receive filtering (promiscuous mode and
/// the MAC table; see `ctrl.rs`). Each is accepted only if offered. Offloads are
/// accepted only when the application asks ([`OFFLOAD_FEATURES`]).
pub const DRIVER_FEATURES: u64 = VIRTIO_F_VERSION_1
    | VIRTIO_F_ACCESS_PLATFORM
    | VIRTIO_NET_F_MAC
    | VIRTIO_NET_F_STATUS
    | VIRTIO_NET_F_MRG_RXBUF
    | VIRTIO_F_EVENT_IDX
    | VIRTIO_F_RING_PACKED
    | VIRTIO_NET_F_CTRL_VQ
    | VIRTIO_NET_F_CTRL_RX
    | VIRTIO_F_INDIRECT_DESC;

/// The offload features tenge can accept (an application asks for them through
/// `PortConfig`): RX checksum (GUEST_CSUM), RX coalesced TCP segments (GUEST_TSO4/6, which
/// need GUEST_CSUM and, with tenge's 2 KiB buffers, MRG_RXBUF, §5.1.6.3.1), TX checksum
/// (CSUM) and TSO (HOST_TSO4/6, which need CSUM; HOST_ECN, TSO of CWR segments).
pub const OFFLOAD_FEATURES: u64 = VIRTIO_NET_F_GUEST_CSUM
    | VIRTIO_NET_F_GUEST_TSO4
    | VIRTIO_NET_F_GUEST_TSO6
    | VIRTIO_NET_F_CSUM
    | VIRTIO_NET_F_HOST_TSO4
    | VIRTIO_NET_F_HOST_TSO6
    | VIRTIO_NET_F_HOST_ECN;

/// The feature set to ask for, given the offloads an application wants and what the
/// device offers. The spec's dependencies (GUEST_TSO on GUEST_CSUM, HOST_TSO on CSUM,
/// §5.1.3.1) are `negotiate`'s to enforce; this adds tenge's own: GUEST_TSO only with
/// MRG_RXBUF, since a 64 KiB segment needs many of tenge's 2 KiB buffers (without
/// MRG_RXBUF a driver taking GUEST_TSO must post 65562-byte buffers, §5.1.6.3.1).
pub fn wanted_features(offloads: u64, offered: u64) -> u64 {
    let mut f = DRIVER_FEATURES | (offloads & OFFLOAD_FEATURES);
    if offered & VIRTIO_NET_F_MRG_RXBUF == 0 {
        f &= !(VIRTIO_NET_F_GUEST_TSO4 | VIRTIO_NET_F_GUEST_TSO6);
    }
    f
}

/// The TX offloads a device with the negotiated `features` serves (virtio 1.2 §5.1.3.1:
/// CSUM the checksums, HOST_TSO4/6 TSO, which needs CSUM, HOST_ECN TSO of CWR segments).
pub fn tx_offloads(features: u64) -> DeviceTxOffloads {
    let csum = features & VIRTIO_NET_F_CSUM != 0;
    DeviceTxOffloads {
        l4_csum: csum,
        tso4: csum && features & VIRTIO_NET_F_HOST_TSO4 != 0,
        tso6: csum && features & VIRTIO_NET_F_HOST_TSO6 != 0,
        tso_ecn: csum && features & VIRTIO_NET_F_HOST_ECN != 0,
    }
}

/// How a virtio-net TX queue sends, the same on split and packed rings, set at open from
/// the negotiated features. The default: [`HDR_LEN`] bytes of header, no offload served,
/// chains refused.
pub struct TxSettings {
    /// With `VIRTIO_F_INDIRECT_DESC`: where chains go.
    indirect: Option<IndirectTables>,
    /// Bytes of header before each frame ([`VirtioTxOps::hdr_len`]).
    hdr_len: usize,
    /// The TX offloads the device serves.
    offloads: DeviceTxOffloads,
}

impl Default for TxSettings {
    fn default() -> Self {
        TxSettings {
            indirect: None,
            hdr_len: HDR_LEN,
            offloads: DeviceTxOffloads::default(),
        }
    }
}

impl TxSettings {
    /// Serves the TX offload requests `offloads` says the device takes (`CSUM`,
    /// `HOST_TSO4/6`, `HOST_ECN` negotiated); without, a request reaching the ring is
    /// refused (the queue's software offloads serve it before).
    pub fn with_offloads(mut self, offloads: DeviceTxOffloads) -> Self {
        self.offloads = offloads;
        self
    }

    /// Sends chains through `tables` (`VIRTIO_F_INDIRECT_DESC` negotiated).
    pub fn with_indirect(mut self, tables: IndirectTables) -> Self {
        self.indirect = Some(tables);
        self
    }

    /// Prepends `hdr_len` bytes of header ([`HASH_HDR_LEN`] with
    /// `VIRTIO_NET_F_HASH_REPORT`) instead of [`HDR_LEN`].
    pub fn with_hdr_len(mut self, hdr_len: usize) -> Self {
        self.hdr_len = hdr_len;
        self
    }

    /// The TX offloads the device serves.
    pub fn offloads(&self) -> DeviceTxOffloads {
        self.offloads
    }

    /// Bytes of header before each frame.
    pub fn hdr_len(&self) -> usize {
        self.hdr_len
    }

    /// What the burst loops read: the indirect tables, the header length, the offloads.
    #[inline(always)]
    pub(crate) fn view(&self) -> (Option<IndirectView<'_>>, u32, DeviceTxOffloads) {
        (
            self.indirect.as_ref().map(IndirectTables::view),
            self.hdr_len as u32,
            self.offloads,
        )
    }
}

/// Entries of each TX slot's indirect table: the most segments a chain sent on virtio-net
/// may have (a power of two).
pub const INDIRECT_SEGS: u32 = 64;

/// One indirect descriptor table per TX ring slot (`VIRTIO_F_INDIRECT_DESC`, virtio 1.2
/// §2.7.5.3 split, §2.8.19 packed): a chain of segments goes out as one ring descriptor
/// that points at its slot's table, so a packet still takes one ring slot and its buffer
/// id stays the slot (which the fixed split avail ring and by-id completion need). Slot
/// `s`'s table is entries `s * INDIRECT_SEGS ..` of `descs`.
pub struct IndirectTables {
    descs: DescRing<tenge_descriptors::virtio::VirtqDesc>,
}

impl IndirectTables {
    /// Bytes the tables of a ring of `slots` need.
    pub const fn bytes(slots: u16) -> usize {
        slots as usize * INDIRECT_SEGS as usize * 16
    }

    /// The tables of a ring of `slots` at byte `offset` (16-byte aligned) of `region`.
    pub fn new(region: Arc<DmaRegion>, offset: usize, slots: u16) -> Self {
        IndirectTables {
            descs: DescRing::new(region, offset, u32::from(slots) * INDIRECT_SEGS),
        }
    }

    pub(crate) fn view(&self) -> IndirectView<'_> {
        IndirectView {
            descs: self.descs.view(),
            iova: self.descs.iova(),
        }
    }
}

/// A borrowed [`IndirectTables`] for the burst loops.
#[derive(Clone, Copy)]
pub(crate) struct IndirectView<'a> {
    descs: crate::platform::dma::RingView<'a, tenge_descriptors::virtio::VirtqDesc>,
    iova: u64,
}

impl IndirectView<'_> {
    /// Writes `pkt`'s segments into the table of ring slot `slot`, the first as `first`
    /// (its address and length with the header in front, [`write_tx_hdr`]; `hi` makes each
    /// descriptor's second quadword from its length, its position and whether it is the
    /// last, in the ring layout's format); returns the table's IOVA and byte length.
    #[inline]
    pub(crate) fn write(
        &self,
        slot: u32,
        first: (u64, u32),
        pkt: &PacketBuf,
        hi: impl Fn(u32, u32, bool) -> u64,
    ) -> (u64, u32) {
        let base = slot * INDIRECT_SEGS;
        let mut seg = pkt.next();
        self.descs
            .write_qwords(base, first.0, hi(first.1, 0, seg.is_none()));
        let mut n = 1u32;
        while let Some(s) = seg {
            seg = s.next();
            self.descs.write_qwords(
                base + n,
                s.data_iova(),
                hi(s.len() as u32, n, seg.is_none()),
            );
            n += 1;
        }
        (self.iova + u64::from(base) * 16, n * 16)
    }
}

/// virtio-net's receive queue of the first queue pair (§5.1.2).
pub const RX_QUEUE: u16 = 0;
/// virtio-net's transmit queue of the first queue pair.
pub const TX_QUEUE: u16 = 1;

/// A queue's doorbell and its notification-suppression state.
pub struct Doorbell<M: NarrowMmio> {
    mmio: Arc<M>,
    /// Offset of the queue's doorbell in `mmio` (`cap.offset + queue_notify_off *
    /// notify_off_multiplier`).
    offset: u32,
    queue: u16,
    pub(crate) event_idx: bool,
    /// `avail.idx` at the last publish (packed: the producer index, truncated): with
    /// EVENT_IDX the device is notified if its `avail_event` lies in `[last, new)`.
    pub(crate) last: u16,
    notifies: u64,
    /// The queue's interrupt is armed (split RX with EVENT_IDX: `used_event` names the next
    /// entry and publishes leave it there).
    pub(crate) irq_armed: bool,
    /// A notification the device asked for during a held publish ([`Doorbell::hold`]) and
    /// not yet written: `last` before the first such publish, the start of the window
    /// [`Doorbell::release_split`] / `release_packed` look at again.
    pub(crate) held_from: Option<u16>,
    /// Split ring with EVENT_IDX: the device's `used.idx` at the last held publish it asked
    /// about. There `avail_event` trails every pop, so it cannot say whether the device
    /// stopped; a device that used nothing since has.
    held_used: u16,
    /// Packed ring: the producer index of the last publish (whole, for the wrap counter).
    pub(crate) last_pidx: u32,
}

impl<M: NarrowMmio> Doorbell<M> {
    /// The doorbell of `queue` at `offset` in `mmio`.
    pub fn new(mmio: Arc<M>, offset: u32, queue: u16, event_idx: bool) -> Self {
        Doorbell {
            mmio,
            offset,
            queue,
            event_idx,
            last: 0,
            notifies: 0,
            irq_armed: false,
            held_from: None,
            held_used: 0,
            last_pidx: 0,
        }
    }

    /// Doorbell writes so far (publishes the device did not need to hear about are not
    /// counted).
    pub fn notifies(&self) -> u64 {
        self.notifies
    }

    /// Publishes `avail.idx = new` on `ring` and notifies the device if it asked for it
    /// (with `hold`, see [`Doorbell::hold`]). The caller has fenced (release) after the
    /// descriptor stores.
    #[inline]
    pub(crate) fn publish(&mut self, ring: &SplitRing, new: u16, hold: bool) {
        ring.write_avail_idx(new);
        if self.event_idx && !self.irq_armed {
            ring.write_used_event(new.wrapping_add(NO_INTERRUPT_DISTANCE));
        }
        // The avail.idx store must be visible to the device before we load its
        // suppression state, or both sides could skip the notification (§2.7.13.4; Linux's
        // virtqueue_kick_prepare has virtio_mb here). Store then load: x86 reorders that
        // pair unless a full fence (mfence) sits between.
        barrier::mb();
        let need = if self.event_idx {
            vring_need_event(ring.avail_event(), new, self.last)
        } else {
            ring.used_flags() & VIRTQ_USED_F_NO_NOTIFY == 0
        };
        if need && hold {
            // At every held publish the device asks about, not only the first: a device
            // that went on after an earlier one and stopped again has used entries since
            // that one, and must still be told (found by review).
            self.held_used = ring.used_idx();
        }
        self.hold(need, hold, new);
    }

    /// After a publish up to `new` that the device `need`s to hear about: writes the
    /// doorbell, or, with `hold`, owes it until the queue's next idle burst
    /// ([`Doorbell::release_split`] / `release_packed`).
    ///
    /// Why hold: a receive burst that found frames means the device is delivering. QEMU
    /// asks for a notification (DESC/ENABLE, `avail_event`) each time it catches up with
    /// the driver, then looks at the ring again and, finding the refill, goes on and
    /// withdraws the request. A doorbell written in that window is a trapped MMIO write,
    /// which under TCG waits for QEMU's big lock, held by the main loop for as long as it
    /// delivers: the receiving vCPU stopped for up to milliseconds, no buffers recycled,
    /// the ring run dry and the hub dropping (issue 8 item 5; docs/benchmarks/README.md).
    /// A device that really stopped is told at the first burst that finds nothing, a
    /// poll later.
    #[inline]
    fn hold(&mut self, need: bool, hold: bool, new: u16) {
        let from = self.last;
        self.last = new;
        if !need {
            return;
        }
        if hold {
            self.held_from.get_or_insert(from);
        } else {
            self.held_from = None;
            self.notify();
        }
    }

    /// A receive burst found nothing (or the driver is about to sleep): writes a held
    /// doorbell if the device still asks for it over what was published since the first
    /// held publish (split ring; at most a ring's worth: an older request cannot be live).
    #[inline]
    pub(crate) fn release_split(&mut self, ring: &SplitRing) {
        let Some(from) = self.held_from.take() else {
            return;
        };
        let from = if self.last.wrapping_sub(from) > ring.size() {
            self.last.wrapping_sub(ring.size())
        } else {
            from
        };
        barrier::mb();
        let need = if self.event_idx {
            vring_need_event(ring.avail_event(), self.last, from)
                && ring.used_idx() == self.held_used
        } else {
            ring.used_flags() & VIRTQ_USED_F_NO_NOTIFY == 0
        };
        if need {
            self.notify();
        }
    }

    /// Writes the doorbell.
    #[inline]
    pub(crate) fn notify(&mut self) {
        // virtio 1.2 §4.1.5.2: the driver writes the queue index to the doorbell.
        self.mmio.write16(self.offset, self.queue);
        self.notifies += 1;
    }
}

/// What a device may write into the header of a received frame, from the negotiated
/// features (virtio 1.2 §5.1.6.4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxHdrMode {
    /// HASH_REPORT: the header is 20 bytes and carries the frame's RSS hash and what it
    /// hashed (§5.1.6.4.5), which go into the packet's metadata. Every such frame takes
    /// the slow path (its first 8 data bytes are the hash fields, which `finish` strips).
    pub hash: bool,
    /// MRG_RXBUF: `num_buffers` says how many buffers the frame spans.
    pub mergeable: bool,
    /// GUEST_CSUM (and GUEST_TSO4/6, which need it): `flags` may say the checksum is
    /// partial (`NEEDS_CSUM`) or checked (`DATA_VALID`), `gso_type` that the frame is a
    /// coalesced TCP segment.
    pub offloads: bool,
    /// A partial checksum is left as it is and flagged `RX_L4_CSUM_GOOD |
    /// RX_L4_CSUM_PARTIAL` instead of completed (`PortConfig::rx_fill_partial_checksums`
    /// off).
    pub leave_partial: bool,
}

impl RxHdrMode {
    /// The mode the negotiated `features` give; `leave_partial` as the port asks.
    pub fn from_features(features: u64, leave_partial: bool) -> Self {
        RxHdrMode {
            hash: features & VIRTIO_NET_F_HASH_REPORT != 0,
            mergeable: features & VIRTIO_NET_F_MRG_RXBUF != 0,
            offloads: features & VIRTIO_NET_F_GUEST_CSUM != 0,
            leave_partial,
        }
    }

    /// Bytes of the header before each frame: [`HASH_HDR_LEN`] with HASH_REPORT,
    /// [`HDR_LEN`] without.
    #[inline(always)]
    pub const fn hdr_len(self) -> usize {
        if self.hash {
            HASH_HDR_LEN
        } else {
            HDR_LEN
        }
    }

    /// See [`RxView::inspect`]: a frame over several buffers, or one with a partial
    /// checksum or a segment size, leaves the fast path; a checked checksum is flagged.
    #[inline(always)]
    pub(crate) fn inspect(self, c: &mut RxCompletion, buf: &PacketBuf) {
        if !(self.mergeable || self.offloads || self.hash) {
            return;
        }
        let Some(h) = rx_hdr(buf) else {
            c.error = true;
            c.whole = false;
            return;
        };
        if self.hash {
            // The hash fields lie in the first 8 bytes of the data: `finish` reads and strips
            // them (the slow path, so a port without HASH_REPORT keeps its fast path as it
            // was).
            c.whole = false;
        }
        if self.mergeable {
            let n = h.num_buffers.get();
            if n != 1 {
                c.whole = false;
                if n == 0 {
                    // Not a frame at all: a device that says so is wrong.
                    c.error = true;
                } else {
                    c.eop = false;
                    c.bufs = u32::from(n);
                }
            }
        }
        if self.offloads {
            if h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 || h.gso_type != VIRTIO_NET_HDR_GSO_NONE {
                c.whole = false;
            } else if h.flags & VIRTIO_NET_HDR_F_DATA_VALID != 0 {
                c.flags |= PacketMeta::RX_L4_CSUM_GOOD;
            }
        }
    }

    /// See [`RxView::finish`]: completes a partial checksum (the frame came from a local
    /// sender that left it to the NIC: as a driver that hands frames on, tenge finishes
    /// it, so a forwarded frame is valid on any wire; a pass over the frame, which a local
    /// stack does not need, so `leave_partial` flags it instead) and records a coalesced
    /// segment's MSS.
    pub(crate) fn finish(self, pkt: &mut PacketBuf) -> bool {
        if self.hash && !finish_hash(pkt) {
            return false;
        }
        if !self.offloads {
            return true;
        }
        let Some(h) = rx_hdr(pkt) else {
            return false;
        };
        if h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 && self.leave_partial {
            pkt.meta_mut().flags |= PacketMeta::RX_L4_CSUM_GOOD | PacketMeta::RX_L4_CSUM_PARTIAL;
        } else if h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
            let (start, offset) = (h.csum_start.get(), h.csum_offset.get());
            if !crate::packet::csum::complete_partial(pkt, start.into(), offset.into()) {
                return false;
            }
            pkt.meta_mut().flags |= PacketMeta::RX_L4_CSUM_GOOD;
        } else if h.flags & VIRTIO_NET_HDR_F_DATA_VALID != 0 {
            pkt.meta_mut().flags |= PacketMeta::RX_L4_CSUM_GOOD;
        }
        match h.gso_type & !VIRTIO_NET_HDR_GSO_ECN {
            VIRTIO_NET_HDR_GSO_NONE => {}
            VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_TCPV6 => {
                let m = pkt.meta_mut();
                m.flags |= PacketMeta::RX_LRO;
                m.mss = h.gso_size.get();
            }
            // UFO and UDP_L4 are never negotiated: a device that sends them is wrong.
            _ => return false,
        }
        true
    }
}

/// The header of a received frame: the last 12 bytes of `buf`'s headroom, where
/// [`RxView::refill`] had the device write it.
#[inline(always)]
fn rx_hdr(buf: &PacketBuf) -> Option<VirtioNetHdr> {
    let room = buf.headroom_bytes();
    let at = room.len().checked_sub(HDR_LEN)?;
    VirtioNetHdr::read_from_bytes(&room[at..]).ok()
}

/// With HASH_REPORT (§5.1.6.4.5): the 20-byte header's `hash_value` and `hash_report`
/// lie in the first 8 bytes of the first buffer's data (buffers are posted 12 bytes before
/// the data, as without it); puts the hash and its type into the packet's metadata (a
/// report number tenge does not know is no hash: `RssType::from_report`) and strips the 8
/// bytes. False if the first buffer holds no frame byte after them.
#[cold]
#[inline(never)]
fn finish_hash(pkt: &mut PacketBuf) -> bool {
    const FIELDS: usize = HASH_HDR_LEN - HDR_LEN;
    if pkt.len() <= FIELDS {
        return false;
    }
    let Ok((h, _)) = HashFields::read_from_prefix(pkt.data()) else {
        return false;
    };
    let t = RssType::from_report(u32::from(h.hash_report.get()));
    let m = pkt.meta_mut();
    m.flags &= !PacketMeta::RX_RSS_TYPE_MASK;
    if t != RssType::None {
        m.flags |= (t as u32) << PacketMeta::RX_RSS_TYPE_SHIFT;
        m.rss_hash = h.hash_value.get();
    } else {
        m.rss_hash = 0;
    }
    pkt.adj(FIELDS)
}

/// The last 8 bytes of [`VirtioNetHdrHash`]: `hash_value`, `hash_report`, padding.
#[derive(FromBytes, zerocopy::KnownLayout, zerocopy::Immutable)]
#[repr(C)]
struct HashFields {
    hash_value: zerocopy::little_endian::U32,
    hash_report: zerocopy::little_endian::U16,
    _padding: zerocopy::little_endian::U16,
}
const _: () = assert!(
    core::mem::size_of::<HashFields>() + HDR_LEN == core::mem::size_of::<VirtioNetHdrHash>()
);

/// The completion of a used buffer (split or packed ring) of `len` bytes, header included:
/// the frame's bytes after the header. A length that does not cover a header and one frame
/// byte is not a frame if the buffer is a frame's first: its `len` wraps to beyond any
/// buffer (bad_len), or is 0 (refused too), and it is never `whole`.
#[inline(always)]
fn rx_completion(id: u32, len: u32) -> RxCompletion {
    RxCompletion {
        slot: id,
        len: len.wrapping_sub(HDR_LEN as u32),
        eop: true,
        error: false,
        whole: len > HDR_LEN as u32,
        bufs: 0,
        flags: 0,
        hash: 0,
        vlan: 0,
    }
}

/// See [`RxView::continuation`]: a buffer after a frame's first holds no header (§5.1.6.4):
/// its data starts where a first buffer's header would, `HDR_LEN` before the packet's data
/// start, and all `len` bytes the device wrote are frame.
#[inline(always)]
fn rx_continuation(c: &RxCompletion, buf: &mut PacketBuf) -> bool {
    buf.prepend(HDR_LEN) && buf.set_len(c.len.wrapping_add(HDR_LEN as u32) as usize)
}

/// What the RX accesses need of a ring view, split or packed: the one place the two
/// layouts differ for [`VirtioRxView`].
pub trait VirtqView: Copy {
    /// Makes the device-writable buffer at `iova` of `len` bytes available at free-running
    /// index `idx`, as buffer id `idx & mask`.
    fn post_writable(&self, idx: u32, iova: u64, len: u32);
    /// Whether the device has used the entry at free-running index `idx`.
    fn is_used(&self, idx: u32) -> bool;
    /// (id, len) the device wrote for the entry at free-running index `idx` (masked).
    fn used_elem(&self, idx: u32) -> (u32, u32);
    /// Ring size - 1: the largest buffer id posted.
    fn mask(&self) -> u32;
}

/// The virtio-net RX descriptor accesses on a view of a split or packed ring, with the
/// header mode the negotiated features give.
#[derive(Clone, Copy)]
pub struct VirtioRxView<V>(V, RxHdrMode);

impl<V: VirtqView> RxView for VirtioRxView<V> {
    const INSPECT: bool = true;

    #[inline(always)]
    fn refill(&self, pidx: u32, iova: u64, len: u32) {
        // The header goes into the 12 bytes before the data start (the pool's headroom is
        // at least that, checked at open), so the frame lands at the packet's data; with
        // HASH_REPORT its last 8 bytes run into the data, and `finish` strips them.
        self.0.post_writable(
            pidx,
            iova.wrapping_sub(HDR_LEN as u64),
            len + HDR_LEN as u32,
        );
    }

    #[inline(always)]
    fn is_done(&self, cidx: u32) -> bool {
        self.0.is_used(cidx)
    }

    #[inline(always)]
    fn completion(&self, cidx: u32) -> RxCompletion {
        let (id, len) = self.0.used_elem(cidx);
        rx_completion(id, len)
    }

    #[inline(always)]
    fn slot_in_range(&self, slot: u32) -> bool {
        slot <= self.0.mask()
    }

    /// A hashed frame (HASH_REPORT) takes the slow path, where `finish` stores its hash.
    #[inline(always)]
    fn fast_hash(&self) -> bool {
        false
    }

    #[inline(always)]
    fn inspect(&self, c: &mut RxCompletion, buf: &PacketBuf) {
        self.1.inspect(c, buf);
    }

    #[inline(always)]
    fn continuation(&self, c: &RxCompletion, buf: &mut PacketBuf) -> bool {
        rx_continuation(c, buf)
    }

    fn finish(&self, pkt: &mut PacketBuf) -> bool {
        self.1.finish(pkt)
    }
}

impl<V> VirtioRxView<V> {
    /// Accesses over `view`, headers read as `hdr` says.
    #[inline(always)]
    pub(crate) fn new(view: V, hdr: RxHdrMode) -> Self {
        VirtioRxView(view, hdr)
    }
}

/// What [`tx_burst`] needs of a virtio TX queue's ops besides the engine's: the length of
/// the header it prepends.
pub trait VirtioTxOps: TxDescOps {
    /// Bytes of `virtio_net_hdr` before each frame: [`HASH_HDR_LEN`] with
    /// `VIRTIO_NET_F_HASH_REPORT` (the header has one length in both directions, §5.1.6),
    /// [`HDR_LEN`] without.
    fn hdr_len(&self) -> usize;
}

/// Sends frames from the front of `pkts` on a virtio TX queue (split or packed): the
/// engine's burst (one publish and at most one doorbell), whose TX ops write each packet's
/// `virtio_net_hdr` (zero: no offload requested) into its headroom as they write its
/// descriptor (`write_tx_hdr`), so the batch is walked once and the caller's packets stay
/// as they were. A packet with less headroom than [`TX_HDR_ROOM`] cannot be sent: the engine
/// drops and counts it (`bad_packet`).
#[inline]
pub fn tx_burst<D: TxDescOps>(
    txq: &mut TxQueue<D>,
    cache: &mut MempoolCache,
    pkts: &mut PacketBatch,
) -> usize {
    txq.tx_burst(cache, pkts)
}

/// Headroom a packet needs for virtio TX: the longest header (with HASH_REPORT), written
/// whole whatever the negotiated length, so the write is two fixed stores.
pub const TX_HDR_ROOM: usize = HASH_HDR_LEN;

/// Whether `pkt` takes the TX runs on virtio: unchained, no offload asked (a request
/// goes through the checked loop, where `sendable` looks at it), room for the header.
#[inline(always)]
pub(crate) fn tx_single(pkt: &PacketBuf) -> bool {
    !pkt.is_chained()
        && pkt.meta().flags & PacketMeta::TX_OFFLOAD_MASK == 0
        && pkt.headroom() >= TX_HDR_ROOM
}

/// Whether virtio TX can send `pkt` at all: room for the header, and any offload request
/// valid for its headers and one the device serves (`dev`, from the negotiated features;
/// the queue's [`crate::offload::soft_tx::SoftTx`] did the rest before). The IPv4 header
/// checksum, which virtio-net has no offload for, is computed as the header is written.
/// Anything else (a VLAN tag among them) is dropped and counted as `bad_offload`, never
/// sent as if served.
#[inline(always)]
pub(crate) fn tx_sendable(pkt: &PacketBuf, dev: DeviceTxOffloads) -> bool {
    if pkt.headroom() < TX_HDR_ROOM {
        return false;
    }
    let flags = pkt.meta().flags;
    // virtio-net has no VLAN insertion: a tag asked for is refused, never left out.
    flags & PacketMeta::TX_OFFLOAD_MASK == 0
        || (flags & PacketMeta::TX_VLAN == 0
            && TxOffload::of(pkt).is_ok()
            && dev.software_part(pkt) == 0)
}

/// Why virtio TX refuses `pkt`'s offload request, for its count: the request does not
/// match the packet, or asks for what the device has not got (a VLAN tag, or what was not
/// negotiated and the software did not do); `None` when only the headroom is missing
/// (a packet problem, `bad_packet`).
pub(crate) fn tx_refusal(pkt: &PacketBuf, dev: DeviceTxOffloads) -> Option<BadOffload> {
    let flags = pkt.meta().flags;
    if flags & PacketMeta::TX_OFFLOAD_MASK == 0 || pkt.headroom() < TX_HDR_ROOM {
        return None;
    }
    if flags & PacketMeta::TX_VLAN != 0 {
        return Some(BadOffload::Unsupported);
    }
    match TxOffload::of(pkt) {
        Err(why) => Some(why),
        Ok(_) if dev.software_part(pkt) != 0 => Some(BadOffload::Unsupported),
        Ok(_) => None,
    }
}

/// The longest `pkt` may be: a TSO packet up to an IP datagram's 64 KiB with its L2
/// header (virtio 1.2 §5.1.6.2: the device segments it), any other `max_frame`.
#[inline(always)]
pub(crate) fn tx_max_len(pkt: &PacketBuf, max_frame: usize) -> usize {
    if pkt.meta().flags & PacketMeta::TX_TSO != 0 {
        usize::from(pkt.meta().l2_len) + TSO_MAX_IP_LEN
    } else {
        max_frame
    }
}

/// Writes a zero `virtio_net_hdr` of `hdr` bytes (12, or 20 with HASH_REPORT; §5.1.6)
/// right in front of `pkt`'s data, with the offload request of a packet that has one
/// ([`write_tx_offload`]), and returns the device address and length of header and data
/// together: what the descriptor (or a chain's first table entry) points at. The caller
/// has checked [`tx_sendable`]. All [`TX_HDR_ROOM`] bytes in front are zeroed (two fixed
/// stores); the device reads the last `hdr` of them.
#[inline(always)]
pub(crate) fn write_tx_hdr(pkt: &mut PacketBuf, hdr: u32) -> (u64, u32) {
    let r = write_plain_tx_hdr(pkt, hdr);
    if pkt.meta().flags & PacketMeta::TX_OFFLOAD_MASK != 0 {
        write_tx_offload(pkt, hdr);
    }
    r
}

/// [`write_tx_hdr`] for a packet known to ask for nothing (the engine's runs, of packets
/// [`tx_single`] accepted): the zero header only.
#[inline(always)]
pub(crate) fn write_plain_tx_hdr(pkt: &mut PacketBuf, hdr: u32) -> (u64, u32) {
    let room = pkt.headroom_mut();
    let n = room.len();
    if let Some(h) = room.get_mut(n.wrapping_sub(TX_HDR_ROOM)..) {
        h.fill(0);
    }
    (pkt.data_iova() - u64::from(hdr), pkt.len() as u32 + hdr)
}

/// The header of a packet with an offload request (virtio 1.2 §5.1.6.2): its L4
/// checksum field prepared as `NEEDS_CSUM` wants it (the pseudo-header sum) and the IPv4
/// header checksum computed; `NEEDS_CSUM` with `csum_start` at the L4 header and
/// `csum_offset` at its checksum field; for TSO `GSO_TCPV4` or `GSO_TCPV6` (with
/// `GSO_ECN` when the segment carries CWR, which [`tx_sendable`] let through only with
/// HOST_ECN), `gso_size` the MSS and `hdr_len` the headers each segment repeats.
#[cold]
#[inline(never)]
fn write_tx_offload(pkt: &mut PacketBuf, hdr: u32) {
    let Ok(Some(o)) = TxOffload::of(pkt) else {
        return;
    };
    o.prepare(pkt, PseudoHeader::Partial);
    let mut h = VirtioNetHdr::default();
    if let Some((start, offset)) = o.l4_csum() {
        h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        h.csum_start = start.into();
        h.csum_offset = offset.into();
    }
    if o.tso {
        let cwr = pkt
            .data()
            .get(usize::from(o.l2) + usize::from(o.l3) + 13)
            .is_some_and(|f| f & crate::offload::tcp_flags::CWR != 0);
        h.gso_type = if o.ipv4 {
            VIRTIO_NET_HDR_GSO_TCPV4
        } else {
            VIRTIO_NET_HDR_GSO_TCPV6
        } | if cwr { VIRTIO_NET_HDR_GSO_ECN } else { 0 };
        h.gso_size = o.mss.into();
        h.hdr_len = (u16::from(o.l2) + u16::from(o.l3) + u16::from(o.l4)).into();
    }
    let room = pkt.headroom_mut();
    let at = room.len().wrapping_sub(hdr as usize);
    if let Some(d) = room.get_mut(at..at + VIRTIO_NET_HDR_LEN) {
        d.copy_from_slice(zerocopy::IntoBytes::as_bytes(&h));
    }
}

#[cfg(test)]
mod tests {
    use super::net::queue_size;
    use super::*;
    use crate::packet::mempool::host_pool;
    use crate::platform::dma::DmaRegion;
    use crate::platform::dma::{identity_dma, HugepagePolicy, IdentityMapper};
    use crate::ring::RxQueue;
    use crate::virtio::test_util::{region, Bells, DoorbellLog, RX_BELL, TX_BELL};
    use proptest::prelude::*;
    use tenge_descriptors::virtio::{
        VirtqDesc, VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT,
        VIRTQ_DESC_F_WRITE,
    };
    use tenge_descriptors::virtio_net::VirtioNetHdr;
    use tenge_firmware_iface::virtio as fw;
    use zerocopy::IntoBytes;

    /// virtio-net has no VLAN offload: a packet asking for a tag is refused (dropped and
    /// counted by the engine), alone or with a request the device serves, never sent
    /// untagged.
    #[test]
    fn a_vlan_tag_is_refused() {
        let pool = host_pool(4).unwrap();
        let mut b = pool.cache(0).alloc().unwrap();
        assert!(b.copy_from(&[0u8; 60]));
        let all = crate::offload::tx::DeviceTxOffloads {
            l4_csum: true,
            tso4: true,
            tso6: true,
            tso_ecn: true,
        };
        assert!(tx_sendable(&b, all));
        b.meta_mut().flags = PacketMeta::TX_VLAN;
        b.meta_mut().vlan_tci = 5;
        assert!(!tx_single(&b));
        assert!(!tx_sendable(&b, all));
        assert_eq!(tx_refusal(&b, all), Some(BadOffload::Unsupported));
        // A request the packet does not match says so first; a checksum the device has
        // not negotiated (and no SoftTx did) is unsupported.
        b.meta_mut().flags = PacketMeta::TX_IPV4 | PacketMeta::TX_UDP_CSUM;
        assert_eq!(tx_refusal(&b, all), Some(BadOffload::HeaderLength));
        let mut f = Vec::new();
        etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(1, 2)
            .write(&mut f, &[7; 20])
            .unwrap();
        assert!(b.copy_from(&f));
        (b.meta_mut().l2_len, b.meta_mut().l3_len) = (14, 20);
        assert_eq!(tx_refusal(&b, all), None);
        let none = crate::offload::tx::DeviceTxOffloads::default();
        assert_eq!(tx_refusal(&b, none), Some(BadOffload::Unsupported));
    }

    /// What the driver negotiates by default: mergeable buffers, no offloads.
    const MERGEABLE: RxHdrMode = RxHdrMode {
        hash: false,
        mergeable: true,
        offloads: false,
        leave_partial: false,
    };

    fn rx_queue(
        mem: &Arc<DmaRegion>,
        bells: &Arc<Bells>,
        size: u16,
        event_idx: bool,
        thresh: u32,
    ) -> RxQueue<VirtioRx<Bells>> {
        rx_queue_with(mem, bells, size, event_idx, thresh, MERGEABLE)
    }

    fn rx_queue_with(
        mem: &Arc<DmaRegion>,
        bells: &Arc<Bells>,
        size: u16,
        event_idx: bool,
        thresh: u32,
        mode: RxHdrMode,
    ) -> RxQueue<VirtioRx<Bells>> {
        RxQueue::new(
            VirtioRx::new(
                SplitRing::new(mem.clone(), 0, size, event_idx),
                Doorbell::new(bells.clone(), RX_BELL, RX_QUEUE, event_idx),
                mode,
            ),
            thresh,
        )
    }

    fn tx_queue(
        mem: &Arc<DmaRegion>,
        bells: &Arc<Bells>,
        size: u16,
        event_idx: bool,
        rs: u32,
    ) -> TxQueue<VirtioTx<Bells>> {
        TxQueue::new(
            VirtioTx::new(
                SplitRing::new(mem.clone(), 1 << 15, size, event_idx),
                Doorbell::new(bells.clone(), TX_BELL, TX_QUEUE, event_idx),
                TxSettings::default(),
            ),
            rs,
            MAX_FRAME,
        )
    }

    /// The device side of a split ring as QEMU's virtio-net plays it: uses available
    /// buffers in order; when it finds the ring empty it asks to be notified (EVENT_IDX:
    /// `avail_event` = the avail index it saw; otherwise clears `VIRTQ_USED_F_NO_NOTIFY`),
    /// and while it has buffers it asks not to be (sets NO_NOTIFY).
    #[derive(Default)]
    struct Dev {
        last_avail: u16,
        used: u16,
    }

    impl Dev {
        fn arm(&self, ring: &SplitRing) {
            ring.device_set_avail_event(ring.avail_idx());
            ring.device_set_used_flags(0);
        }

        /// Receives `frame` into the next available buffer; false if there is none.
        fn receive(&mut self, ring: &SplitRing, frame: &[u8]) -> bool {
            if self.last_avail == ring.avail_idx() {
                self.arm(ring);
                return false;
            }
            ring.device_set_used_flags(VIRTQ_USED_F_NO_NOTIFY);
            let id = ring.avail_entry(self.last_avail);
            let d = ring.descs().read(u32::from(id));
            assert_eq!(
                d.flags.get(),
                VIRTQ_DESC_F_WRITE,
                "RX buffers are device-writable"
            );
            assert!(d.len.get() as usize >= HDR_LEN + frame.len());
            let hdr = VirtioNetHdr {
                num_buffers: 1.into(),
                ..VirtioNetHdr::default()
            };
            identity_dma::write(d.addr.get(), hdr.as_bytes());
            identity_dma::write(d.addr.get() + HDR_LEN as u64, frame);
            ring.device_push_used(self.used, u32::from(id), (HDR_LEN + frame.len()) as u32);
            self.used = self.used.wrapping_add(1);
            self.last_avail = self.last_avail.wrapping_add(1);
            // QEMU's virtqueue_split_pop moves avail_event with every pop (EVENT_IDX).
            ring.device_set_avail_event(self.last_avail);
            true
        }

        /// Receives `frame` as QEMU does with MRG_RXBUF (virtio_net_receive_rcu): over as
        /// many available buffers as it takes, the header (with `num_buffers` set) at the
        /// start of the first, every next buffer filled from its start; the used entries
        /// are published together. False (nothing used) if too few buffers are available.
        fn receive_merged(&mut self, ring: &SplitRing, frame: &[u8], hdr: VirtioNetHdr) -> bool {
            let mut parts = Vec::new(); // (id, addr, frame bytes, first)
            let mut off = 0;
            let mut idx = self.last_avail;
            while off < frame.len() || parts.is_empty() {
                if idx == ring.avail_idx() {
                    self.arm(ring);
                    return false;
                }
                let id = ring.avail_entry(idx);
                let d = ring.descs().read(u32::from(id));
                let first = parts.is_empty();
                let room = d.len.get() as usize - if first { HDR_LEN } else { 0 };
                let take = room.min(frame.len() - off);
                parts.push((id, d.addr.get(), off..off + take, first));
                off += take;
                idx = idx.wrapping_add(1);
            }
            let hdr = VirtioNetHdr {
                num_buffers: (parts.len() as u16).into(),
                ..hdr
            };
            for (id, addr, range, first) in parts {
                let len = range.len();
                if first {
                    identity_dma::write(addr, hdr.as_bytes());
                    identity_dma::write(addr + HDR_LEN as u64, &frame[range]);
                } else {
                    identity_dma::write(addr, &frame[range]);
                }
                let used = len + if first { HDR_LEN } else { 0 };
                ring.device_push_used(self.used, u32::from(id), used as u32);
                self.used = self.used.wrapping_add(1);
            }
            self.last_avail = idx;
            true
        }

        /// Transmits everything available; returns the frames without their headers.
        fn transmit(&mut self, ring: &SplitRing) -> Vec<Vec<u8>> {
            let mut wire = Vec::new();
            while self.last_avail != ring.avail_idx() {
                let id = ring.avail_entry(self.last_avail);
                let d = ring.descs().read(u32::from(id));
                let bytes = if d.flags.get() == VIRTQ_DESC_F_INDIRECT {
                    // A table of descriptors chained by NEXT from its first (§2.7.5.3).
                    let table = identity_dma::read(d.addr.get(), d.len.get() as usize);
                    let entry = |i: usize| {
                        let e = &table[i * 16..i * 16 + 16];
                        let le64 = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap());
                        let (addr, hi) = (le64(&e[..8]), le64(&e[8..]));
                        (addr, hi as u32, (hi >> 32) as u16, (hi >> 48) as u16)
                    };
                    let mut bytes = Vec::new();
                    let mut i = 0;
                    loop {
                        let (addr, len, flags, next) = entry(i);
                        assert_eq!(flags & !VIRTQ_DESC_F_NEXT, 0, "device-readable");
                        bytes.extend(identity_dma::read(addr, len as usize));
                        if flags & VIRTQ_DESC_F_NEXT == 0 {
                            break;
                        }
                        i = usize::from(next);
                    }
                    bytes
                } else {
                    assert_eq!(
                        d.flags.get(),
                        0,
                        "TX buffers are device-readable, unchained"
                    );
                    identity_dma::read(d.addr.get(), d.len.get() as usize)
                };
                assert_eq!(
                    &bytes[..HDR_LEN],
                    &[0u8; HDR_LEN],
                    "zero virtio_net_hdr first"
                );
                wire.push(bytes[HDR_LEN..].to_vec());
                ring.device_push_used(self.used, u32::from(id), 0);
                self.used = self.used.wrapping_add(1);
                self.last_avail = self.last_avail.wrapping_add(1);
            }
            self.arm(ring);
            wire
        }
    }

    fn frame(seq: u32, len: usize) -> Vec<u8> {
        let mut f = vec![(seq % 251) as u8; len];
        f[..4].copy_from_slice(&seq.to_le_bytes());
        f
    }

    /// Arming asks the device (as QEMU's virtio_split_should_notify decides: flags without
    /// EVENT_IDX, vring_need_event on used_event with it) for an interrupt at the next used
    /// entry and for no other; refills while armed keep the request; disarming withdraws it.
    #[test]
    fn armed_split_rx_interrupts_at_the_next_used_entry_only() {
        for event_idx in [true, false] {
            let mem = region();
            let bells = Arc::new(Bells::default());
            let pool = host_pool(64).unwrap();
            let mut cache = pool.cache(16);
            let mut rxq = rx_queue(&mem, &bells, 8, event_idx, 1);
            let mut dev = Dev::default();
            dev.arm(rxq.ops().ring());
            rxq.fill(&mut cache);
            // Would the device interrupt after using entries [old, new)?
            let wants = |ring: &SplitRing, old: u16, new: u16| {
                if event_idx {
                    vring_need_event(ring.used_event(), new, old)
                } else {
                    ring.avail_flags() & VIRTQ_AVAIL_F_NO_INTERRUPT == 0
                }
            };
            assert!(!wants(rxq.ops().ring(), 0, 1), "suppressed at start");
            let mut out = PacketBatch::new(32);
            assert!(dev.receive(rxq.ops().ring(), &frame(0, 60)));
            assert_eq!(rxq.rx_burst(&mut cache, &mut out), 1);
            out.free_into(&mut cache);
            let next = rxq.next_index();
            rxq.ops_mut().arm_irq(next);
            assert!(wants(rxq.ops().ring(), 1, 2), "event_idx {event_idx}");
            // A burst that finds nothing but refills leaves the request in place.
            assert_eq!(rxq.rx_burst(&mut cache, &mut out), 0);
            assert!(wants(rxq.ops().ring(), 1, 2), "event_idx {event_idx}");
            rxq.ops_mut().disarm_irq();
            assert!(!wants(rxq.ops().ring(), 1, 2), "event_idx {event_idx}");
            // Publishes move used_event along again once disarmed.
            assert!(dev.receive(rxq.ops().ring(), &frame(1, 60)));
            assert_eq!(rxq.rx_burst(&mut cache, &mut out), 1);
            assert!(!wants(rxq.ops().ring(), 2, 3), "event_idx {event_idx}");
            out.free_into(&mut cache);
        }
    }

    /// An arming names the consumer index of its moment: frames the driver takes after it
    /// (a poll after arming whose frames an ingress filter dropped) leave the device past
    /// that index, and with EVENT_IDX it would never interrupt again. Arming anew at the
    /// index now (`RxQueueHandle::prepare_sleep`) asks for the next entry; `frame_ready`
    /// says whether one already waits.
    #[test]
    fn an_arming_the_driver_consumed_past_must_be_renewed() {
        let mem = region();
        let bells = Arc::new(Bells::default());
        let pool = host_pool(64).unwrap();
        let mut cache = pool.cache(16);
        let mut rxq = rx_queue(&mem, &bells, 8, true, 1);
        let mut dev = Dev::default();
        dev.arm(rxq.ops().ring());
        rxq.fill(&mut cache);
        assert!(!rxq.frame_ready());
        let mut out = PacketBatch::new(32);
        // Two frames race the arming.
        assert!(dev.receive(rxq.ops().ring(), &frame(0, 60)));
        assert!(dev.receive(rxq.ops().ring(), &frame(1, 60)));
        assert!(rxq.frame_ready());
        let at = rxq.next_index();
        rxq.ops_mut().arm_irq(at);
        // The poll after arming takes them (whatever becomes of them then).
        assert_eq!(rxq.rx_burst(&mut cache, &mut out), 2);
        assert!(!rxq.frame_ready());
        // The device used [0, 2) already; its next entry, [2, 3), crosses no used_event.
        let ring = rxq.ops().ring();
        assert!(!vring_need_event(ring.used_event(), 3, 2), "stale arming");
        let now = rxq.next_index();
        assert_ne!(now, at);
        rxq.ops_mut().arm_irq(now);
        assert!(
            vring_need_event(rxq.ops().ring().used_event(), 3, 2),
            "renewed"
        );
        assert!(dev.receive(rxq.ops().ring(), &frame(2, 60)));
        assert!(rxq.frame_ready());
        out.free_into(&mut cache);
    }

    /// QEMU asks for a doorbell each time it catches up with the driver, then looks at the
    /// ring again and goes on if a refill landed meanwhile: a doorbell held over that
    /// moment is not written once the device has shown it found the buffers.
    #[test]
    fn a_held_rx_doorbell_the_device_no_longer_needs_is_not_written() {
        for event_idx in [true, false] {
            let mem = region();
            let bells = Arc::new(Bells::default());
            let pool = host_pool(64).unwrap();
            let mut cache = pool.cache(16);
            let mut rxq = rx_queue(&mem, &bells, 8, event_idx, 1);
            let mut dev = Dev::default();
            dev.arm(rxq.ops().ring());
            held_rx_doorbell_scenario(
                &mut rxq,
                &mut cache,
                || bells.take(),
                |ops, f| dev.receive(ops.ring(), f),
                |q| {
                    let next = q.next_index();
                    q.ops_mut().arm_irq(next)
                },
                (RX_BELL, RX_QUEUE),
                event_idx,
            );
        }
    }

    /// The held-doorbell scenario both ring layouts run (`Doorbell::hold`), over an 8-entry
    /// RX queue with a refill threshold of 1, unfilled, whose device model (`receive`, as
    /// QEMU's virtio-net) is armed: `take` returns the doorbell writes since the last call,
    /// `arm` arms the queue's interrupt, `kick` is the one write a notification is.
    pub(super) fn held_rx_doorbell_scenario<O: crate::ring::RxDescOps>(
        rxq: &mut RxQueue<O>,
        cache: &mut MempoolCache,
        take: impl Fn() -> Vec<(u32, u16)>,
        mut receive: impl FnMut(&O, &[u8]) -> bool,
        arm: impl FnOnce(&mut RxQueue<O>),
        kick: (u32, u16),
        event_idx: bool,
    ) {
        assert_eq!(rxq.fill(cache), 7);
        take();
        // The device uses every buffer and asks to hear of the next.
        let mut n = 0;
        while receive(rxq.ops(), &frame(n, 64)) {
            n += 1;
        }
        assert_eq!(n, 7);
        let mut out = PacketBatch::new(32);
        assert_eq!(rxq.rx_burst(cache, &mut out), 7);
        assert!(take().is_empty(), "event_idx {event_idx}: held");
        // It looks again, finds the refill and goes on (withdrawing its request).
        assert!(receive(rxq.ops(), &frame(7, 64)));
        assert_eq!(rxq.rx_burst(cache, &mut out), 1);
        let mut none = PacketBatch::new(32);
        assert_eq!(rxq.rx_burst(cache, &mut none), 0);
        assert!(
            take().is_empty(),
            "event_idx {event_idx}: the device went on by itself"
        );
        // It runs dry and asks; the refill is held; it goes on by itself and stops again,
        // asking anew, before any burst finds nothing; the next refill is held too. The
        // idle burst must tell it: it has used entries since the first hold, but none since
        // the last.
        for _ in 0..2 {
            while receive(rxq.ops(), &frame(n, 64)) {
                n += 1;
            }
            assert!(rxq.rx_burst(cache, &mut out) > 0);
            assert!(take().is_empty(), "event_idx {event_idx}: held");
        }
        assert_eq!(rxq.rx_burst(cache, &mut none), 0);
        assert_eq!(
            take(),
            vec![kick],
            "event_idx {event_idx}: a stopped device is told"
        );
        // A driver about to sleep writes a held doorbell before arming its interrupt: a
        // device waiting for a notification would use nothing and never interrupt.
        while receive(rxq.ops(), &frame(n, 64)) {
            n += 1;
        }
        assert!(rxq.rx_burst(cache, &mut out) > 0);
        assert!(take().is_empty(), "event_idx {event_idx}: held");
        arm(rxq);
        assert_eq!(
            take(),
            vec![kick],
            "event_idx {event_idx}: arming the interrupt tells it"
        );
        for p in out.drain() {
            cache.free(p);
        }
        rxq.release(cache);
    }

    #[test]
    fn rx_frames_arrive_byte_exact_and_refills_kick_when_the_device_asks() {
        for event_idx in [true, false] {
            let mem = region();
            let bells = Arc::new(Bells::default());
            let pool = host_pool(64).unwrap();
            let mut cache = pool.cache(16);
            let mut rxq = rx_queue(&mem, &bells, 8, event_idx, 1);
            let mut dev = Dev::default();
            dev.arm(rxq.ops().ring());
            assert_eq!(rxq.fill(&mut cache), 7, "one slot stays empty");
            assert_eq!(bells.take(), vec![(RX_BELL, RX_QUEUE)], "first fill kicks");
            let ring = rxq.ops().ring();
            assert_eq!(ring.avail_idx(), 7);
            // Each buffer is posted with room for the header in front of the data room.
            let d = ring.descs().read(3);
            assert_eq!(d.len.get() as usize, 2048 + HDR_LEN);
            assert_eq!(d.flags.get(), VIRTQ_DESC_F_WRITE);
            if event_idx {
                assert_eq!(ring.used_event(), 7 + NO_INTERRUPT_DISTANCE);
            }
            let sizes = [60usize, 1514, 100];
            for (i, &n) in sizes.iter().enumerate() {
                assert!(dev.receive(ring, &frame(i as u32, n)));
            }
            let mut out = PacketBatch::new(32);
            assert_eq!(rxq.rx_burst(&mut cache, &mut out), 3);
            for (i, &n) in sizes.iter().enumerate() {
                let p = out.pop().unwrap();
                assert_eq!(
                    p.data(),
                    frame(i as u32, n).as_slice(),
                    "event_idx {event_idx}"
                );
                assert_eq!(p.meta().flags, 0);
                cache.free(p);
            }
            // The device still had buffers: the refill publishes without a doorbell.
            assert_eq!(rxq.ops().ring().avail_idx(), 10);
            assert!(
                bells.take().is_empty(),
                "event_idx {event_idx}: no kick needed"
            );
            // Drain the ring until the device finds it empty and asks for a kick.
            let ring = rxq.ops().ring();
            let mut n = 0;
            while dev.receive(ring, &frame(100 + n, 64)) {
                n += 1;
            }
            assert_eq!(n, 7);
            assert_eq!(rxq.rx_burst(&mut cache, &mut out), 7);
            // The burst took frames: the device may only be catching up, so the doorbell
            // it asks for is held (Doorbell::hold)...
            assert!(
                bells.take().is_empty(),
                "event_idx {event_idx}: held while a burst takes frames"
            );
            // ...until a burst finds nothing: the device has stopped. Written once.
            let mut none = PacketBatch::new(32);
            assert_eq!(rxq.rx_burst(&mut cache, &mut none), 0);
            assert_eq!(
                bells.take(),
                vec![(RX_BELL, RX_QUEUE)],
                "event_idx {event_idx}: the refill after an empty ring kicks at the next idle burst"
            );
            assert_eq!(rxq.rx_burst(&mut cache, &mut none), 0);
            assert!(bells.take().is_empty(), "event_idx {event_idx}: once");
            let s = *rxq.stats();
            assert_eq!((s.packets, s.bad_slot, s.bad_len), (10, 0, 0));
            assert_eq!(rxq.ops().bell().notifies(), 2);
        }
    }

    #[test]
    fn rx_bad_used_entries_are_counted_never_trusted() {
        let mem = region();
        let bells = Arc::new(Bells::default());
        let pool = host_pool(64).unwrap();
        let mut cache = pool.cache(16);
        let mut rxq = rx_queue(&mem, &bells, 8, true, 1);
        rxq.fill(&mut cache);
        let ring = rxq.ops().ring();
        stamp_headers(ring);
        ring.device_push_used(0, 0, (HDR_LEN + 60) as u32); // good
        ring.device_push_used(1, 0, (HDR_LEN + 60) as u32); // id 0 again: already returned
        ring.device_push_used(2, 8, (HDR_LEN + 60) as u32); // beyond the ring (aliases 0)
        ring.device_push_used(3, u32::MAX, 64); // far beyond
        ring.device_push_used(4, 1, 5); // shorter than the header
        ring.device_push_used(5, 2, HDR_LEN as u32); // a header and no frame
        ring.device_push_used(6, 3, 5000); // longer than the buffer
        let mut out = PacketBatch::new(32);
        assert_eq!(rxq.rx_burst(&mut cache, &mut out), 1);
        let s = *rxq.stats();
        assert_eq!((s.packets, s.bad_slot, s.bad_len), (1, 3, 3));
        out.free_into(&mut cache);
        rxq.release(&mut cache);
        drop(cache);
        assert_eq!(pool.free_count(), 64, "every buffer came home once");
    }

    /// Writes a one-buffer header (as QEMU does with MRG_RXBUF) into every posted buffer, for
    /// tests that write used entries by hand.
    fn stamp_headers(ring: &SplitRing) {
        let hdr = VirtioNetHdr {
            num_buffers: 1.into(),
            ..VirtioNetHdr::default()
        };
        for id in 0..u32::from(ring.size()) {
            let d = ring.descs().read(id);
            if d.addr.get() != 0 {
                identity_dma::write(d.addr.get(), hdr.as_bytes());
            }
        }
    }

    /// The set-up the RX tests share: a split RX queue of `size` descriptors (EVENT_IDX,
    /// refill threshold 1) reading headers as `mode`, filled from a pool of 64 buffers of
    /// `data_room` bytes, the device model armed on it.
    struct ArmedRx {
        mem: Arc<DmaRegion>,
        pool: crate::packet::mempool::Mempool,
        cache: crate::packet::mempool::MempoolCache,
        rxq: RxQueue<VirtioRx<Bells>>,
        dev: Dev,
    }

    fn armed_rx(size: u16, data_room: u32, mode: RxHdrMode) -> ArmedRx {
        let mem = region();
        let bells = Arc::new(Bells::default());
        let pool = small_pool(64, data_room);
        let mut cache = pool.cache(16);
        let mut rxq = rx_queue_with(&mem, &bells, size, true, 1, mode);
        let dev = Dev::default();
        dev.arm(rxq.ops().ring());
        rxq.fill(&mut cache);
        ArmedRx {
            mem,
            pool,
            cache,
            rxq,
            dev,
        }
    }

    /// A pool of small buffers (`data_room` bytes each), so frames span several.
    fn small_pool(buffers: u32, data_room: u32) -> crate::packet::mempool::Mempool {
        crate::packet::mempool::Mempool::new(
            Arc::new(IdentityMapper),
            &crate::packet::mempool::MempoolConfig {
                buffers,
                data_room,
                hugepages: HugepagePolicy::Never,
                ..crate::packet::mempool::MempoolConfig::default()
            },
        )
        .unwrap()
    }

    /// Receives from `rxq` until `n` frames came or nothing more does, in bursts of at most
    /// `burst`; returns each frame's bytes and segment count.
    fn receive_all(
        rxq: &mut RxQueue<VirtioRx<Bells>>,
        cache: &mut MempoolCache,
        n: usize,
        burst: usize,
    ) -> Vec<(Vec<u8>, usize, PacketMeta)> {
        let mut got = Vec::new();
        let mut out = PacketBatch::new(burst);
        for _ in 0..1000 {
            if got.len() == n {
                break;
            }
            rxq.rx_burst(cache, &mut out);
            while let Some(p) = out.pop() {
                let mut bytes = Vec::new();
                p.append_to(&mut bytes);
                got.push((bytes, p.nb_segs(), *p.meta()));
                cache.free(p);
            }
        }
        got
    }

    #[test]
    fn mergeable_frames_arrive_as_chains_byte_exact_across_bursts() {
        let ArmedRx {
            pool,
            mut cache,
            mut rxq,
            mut dev,
            ..
        } = armed_rx(16, 256, MERGEABLE);
        // 256 data bytes fit the first buffer (268 with the header); every next buffer
        // takes 268 frame bytes.
        let cases = [(60, 1), (256, 1), (257, 2), (524, 2), (525, 3), (1514, 6)];
        for (i, &(len, segs)) in cases.iter().enumerate() {
            let f = frame(i as u32, len);
            let ring = rxq.ops().ring();
            assert!(dev.receive_merged(ring, &f, VirtioNetHdr::default()));
            // Bursts of 2 completions: a 6-buffer frame straddles three bursts.
            let got = receive_all(&mut rxq, &mut cache, 1, 2);
            assert_eq!(got.len(), 1, "frame of {len}");
            assert_eq!(got[0].0, f, "frame of {len}");
            assert_eq!(got[0].1, segs, "frame of {len}");
        }
        let s = *rxq.stats();
        assert_eq!((s.packets, s.chains), (6, 4));
        assert_eq!(s.bytes, cases.iter().map(|c| c.0 as u64).sum::<u64>());
        assert_eq!(
            (s.bad_len, s.bad_slot, s.errors, s.multi_buffer),
            (0, 0, 0, 0)
        );
        rxq.release(&mut cache);
        drop(cache);
        assert_eq!(pool.free_count(), 64, "no buffer lost");
    }

    #[test]
    fn broken_chains_are_counted_and_the_next_frame_arrives() {
        let ArmedRx {
            pool,
            mut cache,
            mut rxq,
            mut dev,
            ..
        } = armed_rx(32, 256, MERGEABLE);
        let ring = rxq.ops().ring();
        // A 3-buffer frame whose second used entry names a descriptor never posted.
        assert!(dev.receive_merged(ring, &frame(1, 600), VirtioNetHdr::default()));
        let (id, _) = ring.view().used_elem(1);
        assert_eq!(id, 1);
        ring.device_push_used(1, 999, 268);
        // num_buffers 0: not a frame.
        assert!(dev.receive_merged(ring, &frame(2, 60), VirtioNetHdr::default()));
        let at = ring.descs().read(3).addr.get();
        identity_dma::write(at + 10, &0u16.to_le_bytes());
        // A good frame after both.
        assert!(dev.receive_merged(ring, &frame(3, 1000), VirtioNetHdr::default()));
        let got = receive_all(&mut rxq, &mut cache, 1, 32);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, frame(3, 1000));
        let s = *rxq.stats();
        assert_eq!((s.packets, s.bad_slot, s.errors), (1, 1, 1));
        // Longer than the queue assembles: dropped as multi_buffer, whole.
        rxq.set_max_segs(2);
        let ring = rxq.ops().ring();
        assert!(dev.receive_merged(ring, &frame(4, 1514), VirtioNetHdr::default()));
        assert!(dev.receive_merged(ring, &frame(5, 300), VirtioNetHdr::default()));
        let got = receive_all(&mut rxq, &mut cache, 1, 32);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, frame(5, 300));
        assert_eq!(rxq.stats().multi_buffer, 1);
        rxq.release(&mut cache);
        drop(cache);
        assert_eq!(pool.free_count(), 64, "no buffer lost");
    }

    /// An Ethernet + IPv4 + UDP frame of `payload` bytes, its UDP checksum left as a
    /// sender with checksum offload leaves it: the pseudo-header sum only.
    fn partial_udp(payload: usize) -> Vec<u8> {
        let udp_len = 8 + payload;
        let mut f = vec![0u8; 14 + 20 + udp_len];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
        ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
        let udp = &mut f[34..];
        udp[0..2].copy_from_slice(&1234u16.to_be_bytes());
        udp[2..4].copy_from_slice(&5678u16.to_be_bytes());
        udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        for (i, b) in udp[8..].iter_mut().enumerate() {
            *b = (i * 7) as u8;
        }
        let pseudo = [10, 0, 0, 1, 10, 0, 0, 2, 0, 17]
            .iter()
            .copied()
            .chain((udp_len as u16).to_be_bytes())
            .collect::<Vec<u8>>();
        let seed = crate::packet::csum::fold(crate::packet::csum::add_bytes(0, &pseudo, false));
        f[40..42].copy_from_slice(&seed.to_be_bytes());
        f
    }

    /// Whether the UDP checksum of `f` (from partial_udp) verifies.
    fn udp_checksum_ok(f: &[u8]) -> bool {
        let udp_len = f.len() - 34;
        let mut acc = crate::packet::csum::add_bytes(0, &f[26..34], false);
        acc += 17 + udp_len as u64;
        acc = crate::packet::csum::add_bytes(acc, &f[34..], false);
        crate::packet::csum::fold(acc) == 0xffff
    }

    /// Writes `frame` as a device with HASH_REPORT does (the 20-byte header, hash value
    /// and report after `num_buffers`) over as many available buffers as it takes.
    fn receive_hashed(dev: &mut Dev, ring: &SplitRing, frame: &[u8], hash: u32, report: u16) {
        let mut off = 0;
        let mut first = true;
        let mut parts = Vec::new();
        while off < frame.len() {
            let id = ring.avail_entry(dev.last_avail);
            dev.last_avail = dev.last_avail.wrapping_add(1);
            let d = ring.descs().read(u32::from(id));
            let room = d.len.get() as usize - if first { HASH_HDR_LEN } else { 0 };
            let take = room.min(frame.len() - off);
            let at = d.addr.get() + if first { HASH_HDR_LEN as u64 } else { 0 };
            identity_dma::write(at, &frame[off..off + take]);
            parts.push((
                id,
                take + if first { HASH_HDR_LEN } else { 0 },
                d.addr.get(),
            ));
            off += take;
            first = false;
        }
        let h = VirtioNetHdrHash {
            hdr: VirtioNetHdr {
                num_buffers: (parts.len() as u16).into(),
                ..VirtioNetHdr::default()
            },
            hash_value: hash.into(),
            hash_report: report.into(),
            padding: 0.into(),
        };
        identity_dma::write(parts[0].2, h.as_bytes());
        for (id, len, _) in parts {
            ring.device_push_used(dev.used, u32::from(id), len as u32);
            dev.used = dev.used.wrapping_add(1);
        }
    }

    #[test]
    fn hash_reports_reach_the_metadata_and_the_header_is_20_bytes() {
        let mode = RxHdrMode {
            hash: true,
            mergeable: true,
            offloads: false,
            leave_partial: false,
        };
        let ArmedRx {
            mem,
            mut cache,
            mut rxq,
            mut dev,
            ..
        } = armed_rx(32, 512, mode);
        let ring = rxq.ops().ring();
        // Each buffer is posted 12 bytes before its data, as without HASH_REPORT: the
        // header's hash fields run 8 bytes into the data.
        assert_eq!(ring.descs().read(0).len.get() as usize, 512 + HDR_LEN);
        receive_hashed(&mut dev, ring, &frame(1, 100), 0xdead_beef, 2); // TCP/IPv4
        receive_hashed(&mut dev, ring, &frame(2, 1200), 0x1234_5678, 6); // UDP/IPv6, a chain
        receive_hashed(&mut dev, ring, &frame(3, 64), 0x5555_5555, 0); // no hash
        receive_hashed(&mut dev, ring, &frame(4, 64), 0x6666_6666, 42); // unknown report
        let got = receive_all(&mut rxq, &mut cache, 4, 32);
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].0, frame(1, 100));
        assert_eq!(got[0].2.rss_type(), RssType::TcpIpv4);
        assert_eq!(got[0].2.rss_hash(), Some(0xdead_beef));
        assert_eq!(got[1].0, frame(2, 1200));
        assert_eq!(got[1].1, 3, "a chain of three 512-byte buffers");
        assert_eq!(got[1].2.rss_type(), RssType::UdpIpv6);
        assert_eq!(got[1].2.rss_hash(), Some(0x1234_5678));
        for g in &got[2..] {
            assert_eq!(g.2.rss_type(), RssType::None);
            assert_eq!(g.2.rss_hash(), None);
        }
        assert_eq!(got[3].0, frame(4, 64));
        let s = *rxq.stats();
        assert_eq!((s.errors, s.bad_len), (0, 0));
        rxq.release(&mut cache);

        // TX: 20 zero bytes before each frame; the caller gets its packet back unchanged.
        let bells = Arc::new(Bells::default());
        let ring = SplitRing::new(mem.clone(), 1 << 15, 16, true);
        let mut txq = TxQueue::new(
            VirtioTx::new(
                ring,
                Doorbell::new(bells.clone(), TX_BELL, TX_QUEUE, true),
                TxSettings::default().with_hdr_len(HASH_HDR_LEN),
            ),
            32,
            MAX_FRAME + HASH_HDR_LEN,
        );
        let mut batch = PacketBatch::new(4);
        let mut p = cache.alloc().unwrap();
        assert!(p.copy_from(&frame(5, 60)));
        batch.push(p).unwrap();
        assert_eq!(tx_burst(&mut txq, &mut cache, &mut batch), 1);
        let d = txq.ops().ring().descs().read(0);
        assert_eq!(d.len.get() as usize, HASH_HDR_LEN + 60);
        let bytes = identity_dma::read(d.addr.get(), d.len.get() as usize);
        assert_eq!(&bytes[..HASH_HDR_LEN], &[0u8; HASH_HDR_LEN]);
        assert_eq!(&bytes[HASH_HDR_LEN..], frame(5, 60).as_slice());
        txq.release(&mut cache);
    }

    #[test]
    fn offload_headers_complete_partial_checksums_and_record_coalesced_segments() {
        let mode = RxHdrMode {
            hash: false,
            mergeable: true,
            offloads: true,
            leave_partial: false,
        };
        let ArmedRx {
            pool,
            mut cache,
            mut rxq,
            mut dev,
            ..
        } = armed_rx(32, 512, mode);
        let partial = VirtioNetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            csum_start: 34.into(),
            csum_offset: 6.into(),
            ..VirtioNetHdr::default()
        };
        let ring = rxq.ops().ring();
        // Partial checksums, in one buffer and over a chain (the field in the first).
        let small = partial_udp(100);
        let big = partial_udp(1400);
        assert!(!udp_checksum_ok(&small) && !udp_checksum_ok(&big));
        assert!(dev.receive_merged(ring, &small, partial));
        assert!(dev.receive_merged(ring, &big, partial));
        // Checked by the device: flagged good, on the fast path.
        let valid = VirtioNetHdr {
            flags: VIRTIO_NET_HDR_F_DATA_VALID,
            ..VirtioNetHdr::default()
        };
        assert!(dev.receive_merged(ring, &frame(7, 200), valid));
        // A coalesced TCP segment: flagged, its MSS recorded.
        let gso = VirtioNetHdr {
            flags: VIRTIO_NET_HDR_F_DATA_VALID,
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
            gso_size: 1448.into(),
            ..VirtioNetHdr::default()
        };
        assert!(dev.receive_merged(ring, &frame(8, 3000), gso));
        // A checksum field beyond the frame: refused.
        let beyond = VirtioNetHdr {
            csum_start: 90.into(),
            ..partial
        };
        assert!(dev.receive_merged(ring, &frame(9, 80), beyond));
        let got = receive_all(&mut rxq, &mut cache, 4, 32);
        assert_eq!(got.len(), 4);
        let good = PacketMeta::RX_L4_CSUM_GOOD;
        assert!(udp_checksum_ok(&got[0].0), "completed in one buffer");
        assert_eq!(got[0].0[..40], small[..40]);
        assert_eq!(got[0].0[42..], small[42..]);
        assert_eq!(got[0].2.flags, good);
        assert!(udp_checksum_ok(&got[1].0), "completed over a chain");
        assert_eq!(got[1].1, 3);
        assert_eq!(got[1].2.flags, good);
        assert_eq!(got[2].0, frame(7, 200));
        assert_eq!(got[2].2.flags, good);
        assert_eq!(got[3].0, frame(8, 3000));
        assert_eq!(got[3].2.flags, good | PacketMeta::RX_LRO);
        assert_eq!(got[3].2.mss, 1448);
        assert_eq!(rxq.stats().errors, 1, "the checksum field beyond the frame");
        rxq.release(&mut cache);
        drop(cache);
        assert_eq!(pool.free_count(), 64, "no buffer lost");
    }

    /// `PortConfig::rx_fill_partial_checksums` off: a partial checksum stays as the
    /// device gave it (the frame byte for byte) and is flagged good and partial; a
    /// checked one is flagged good alone.
    #[test]
    fn partial_checksums_left_as_asked_are_flagged_and_untouched() {
        let mode = RxHdrMode {
            hash: false,
            mergeable: true,
            offloads: true,
            leave_partial: true,
        };
        let ArmedRx {
            pool,
            mut cache,
            mut rxq,
            mut dev,
            ..
        } = armed_rx(32, 512, mode);
        let partial = VirtioNetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            csum_start: 34.into(),
            csum_offset: 6.into(),
            ..VirtioNetHdr::default()
        };
        let valid = VirtioNetHdr {
            flags: VIRTIO_NET_HDR_F_DATA_VALID,
            ..VirtioNetHdr::default()
        };
        let ring = rxq.ops().ring();
        let (small, big) = (partial_udp(100), partial_udp(1400));
        assert!(dev.receive_merged(ring, &small, partial));
        assert!(dev.receive_merged(ring, &big, partial));
        assert!(dev.receive_merged(ring, &frame(7, 200), valid));
        let got = receive_all(&mut rxq, &mut cache, 3, 32);
        assert_eq!(got.len(), 3);
        let good = PacketMeta::RX_L4_CSUM_GOOD;
        let partial_good = good | PacketMeta::RX_L4_CSUM_PARTIAL;
        assert_eq!((&got[0].0, got[0].2.flags), (&small, partial_good));
        assert_eq!((&got[1].0, got[1].2.flags), (&big, partial_good));
        assert!(!udp_checksum_ok(&got[1].0), "left partial, not completed");
        assert_eq!((&got[2].0, got[2].2.flags), (&frame(7, 200), good));
        rxq.release(&mut cache);
        drop(cache);
        assert_eq!(pool.free_count(), 64, "no buffer lost");
    }

    #[test]
    fn guest_tso_is_asked_for_only_with_mergeable_buffers() {
        let all = OFFLOAD_FEATURES;
        let everything = u64::MAX;
        assert_eq!(wanted_features(0, everything), DRIVER_FEATURES);
        assert_eq!(wanted_features(all, everything), DRIVER_FEATURES | all);
        let no_mrg = everything & !VIRTIO_NET_F_MRG_RXBUF;
        let got = wanted_features(all, no_mrg);
        assert_eq!(got & (VIRTIO_NET_F_GUEST_TSO4 | VIRTIO_NET_F_GUEST_TSO6), 0);
        assert_ne!(got & VIRTIO_NET_F_GUEST_CSUM, 0);
        // With the spec's dependencies applied by negotiate: TSO without its checksum
        // feature is not accepted.
        let offered = fw::NET_DRIVER_FEATURES & !VIRTIO_NET_F_CSUM;
        let accepted = fw::negotiate(offered, wanted_features(all, offered)).unwrap();
        assert_eq!(
            accepted & (VIRTIO_NET_F_HOST_TSO4 | VIRTIO_NET_F_HOST_TSO6),
            0
        );
    }

    fn batch_of(cache: &mut MempoolCache, seqs: std::ops::Range<u32>, len: usize) -> PacketBatch {
        let mut b = PacketBatch::new(64);
        for s in seqs {
            let mut p = cache.alloc().unwrap();
            assert!(p.copy_from(&frame(s, len)));
            b.push(p).unwrap();
        }
        b
    }

    /// With INDIRECT_DESC a chain of 1 to 16 segments takes one ring slot whose descriptor
    /// points at the slot's table (INDIRECT), the segments chained there by NEXT; the device
    /// model reads the frame back whole, byte for byte; every segment returns to the pool;
    /// a chain of 17 segments is dropped and counted. Without indirect tables a chain is
    /// dropped too (the ring takes single buffers only).
    #[test]
    fn tx_chains_go_through_indirect_tables() {
        let mem = region();
        let bells = Arc::new(Bells::default());
        let pool = host_pool(256).unwrap();
        let mut cache = pool.cache(0);
        let tables = IndirectTables::new(mem.clone(), 1 << 14, 8);
        let mut txq = TxQueue::new(
            VirtioTx::new(
                SplitRing::new(mem.clone(), 1 << 15, 8, true),
                Doorbell::new(bells.clone(), TX_BELL, TX_QUEUE, true),
                TxSettings::default().with_indirect(tables),
            ),
            2,
            MAX_FRAME,
        );
        let mut dev = Dev::default();
        dev.arm(txq.ops().ring());
        let chain = |cache: &mut MempoolCache, f: &[u8], segs: usize| {
            let per = f.len().div_ceil(segs);
            let mut head: Option<PacketBuf> = None;
            for part in f.chunks(per).rev() {
                let mut b = cache.alloc().unwrap();
                b.copy_from(part);
                b.set_next(head.take());
                head = Some(b);
            }
            head.unwrap()
        };
        for round in 0..3u32 {
            let mut b = PacketBatch::new(8);
            let sizes = [60, 100, 600, 1514, 1514, 1000, 64];
            let segs = [1, 2, 3, 5, 8, 16, 4];
            for (k, (&size, &n)) in sizes.iter().zip(&segs).enumerate() {
                let f = frame(round * 10 + k as u32, size);
                b.push(chain(&mut cache, &f, n)).unwrap();
            }
            assert_eq!(tx_burst(&mut txq, &mut cache, &mut b), 7, "round {round}");
            let wire = dev.transmit(txq.ops().ring());
            for (k, (&size, w)) in sizes.iter().zip(&wire).enumerate() {
                assert_eq!(
                    w,
                    &frame(round * 10 + k as u32, size),
                    "round {round} frame {k}"
                );
            }
        }
        let mut b = PacketBatch::new(8);
        // One segment more than a table holds (1300 bytes in 65 pieces of 20).
        b.push(chain(
            &mut cache,
            &frame(99, 1300),
            INDIRECT_SEGS as usize + 1,
        ))
        .unwrap();
        assert_eq!(tx_burst(&mut txq, &mut cache, &mut b), 0);
        assert_eq!(txq.stats().bad_packet, 1);
        txq.reclaim(&mut cache);
        txq.release(&mut cache);
        drop(cache);
        assert_eq!(pool.free_count(), 256, "every segment home");
        // No tables: a chain is refused, not sent as its first segment.
        let mut plain = tx_queue(&mem, &bells, 8, true, 2);
        let mut cache = pool.cache(0);
        let mut b = PacketBatch::new(8);
        b.push(chain(&mut cache, &frame(1, 200), 2)).unwrap();
        assert_eq!(tx_burst(&mut plain, &mut cache, &mut b), 0);
        assert_eq!(plain.stats().bad_packet, 1);
        // A TX checksum request the device does not serve (no CSUM), in a chain or not: the
        // ring alone drops and counts it, never sends it with a header that ignores it (a
        // queue handle's SoftTx computes it before the ring).
        for n in [1, 2] {
            let mut p = chain(&mut cache, &frame(2, 300), n);
            p.meta_mut().flags = PacketMeta::TX_IPV4 | PacketMeta::TX_TCP_CSUM;
            b.push(p).unwrap();
            b.push(chain(&mut cache, &frame(3, 300), 1)).unwrap();
        }
        assert_eq!(tx_burst(&mut txq, &mut cache, &mut b), 2);
        assert_eq!(txq.stats().bad_offload, 2);
        // By reason: no header lengths given, which the request is checked against first.
        let why = txq.stats().bad_offload_reasons;
        assert_eq!((why.header_length, why.total()), (2, 2));
    }

    /// The header of a TSO request (virtio 1.2 §5.1.6.2): NEEDS_CSUM from the TCP header
    /// to its checksum field, GSO_TCPV4/6 with the MSS and the headers' length, GSO_ECN
    /// with CWR; the TCP field left as the pseudo-header sum over the whole L4 length, so
    /// that the device's sum over the segment completes to the checksum etherparse
    /// computes; the IPv4 header checksum written. A UDP checksum request over IPv6 the
    /// same, without GSO.
    #[test]
    fn tx_offload_requests_are_written_into_the_header() {
        use crate::offload::testutil::{frame, packet, tso, Spec};
        let pool = host_pool(64).unwrap();
        let mut cache = pool.cache(0);
        for (v6, cwr) in [(false, false), (true, true)] {
            let spec = Spec {
                v6,
                flags: if cwr {
                    crate::offload::tcp_flags::CWR
                } else {
                    0
                },
                ..Spec::default()
            };
            let data = vec![3u8; 4001];
            let want = frame(&spec, &data);
            // tso()'s metadata over the whole frame (its IP length right, as a stack sends).
            let meta = *tso(&mut cache, &spec, &[], 1448, &[]).meta();
            let mut p = packet(&mut cache, &want, &[]);
            *p.meta_mut() = meta;
            let (l3, l4) = (if v6 { 40 } else { 20 }, 32u16);
            write_tx_hdr(&mut p, HDR_LEN as u32);
            let room = p.headroom();
            let h = VirtioNetHdr::read_from_bytes(&p.headroom_bytes()[room - HDR_LEN..]).unwrap();
            assert_eq!(h.flags, VIRTIO_NET_HDR_F_NEEDS_CSUM);
            let gso = if v6 {
                VIRTIO_NET_HDR_GSO_TCPV6
            } else {
                VIRTIO_NET_HDR_GSO_TCPV4
            };
            let ecn = if cwr { VIRTIO_NET_HDR_GSO_ECN } else { 0 };
            assert_eq!(h.gso_type, gso | ecn);
            assert_eq!(h.gso_size.get(), 1448);
            assert_eq!(h.hdr_len.get(), 14 + l3 + l4);
            assert_eq!(h.csum_start.get(), 14 + l3);
            assert_eq!(h.csum_offset.get(), 16);
            assert_eq!(h.num_buffers.get(), 0);
            // What the device does: the complement of the sum from csum_start.
            let start = usize::from(14 + l3);
            let c = !crate::packet::csum::fold(crate::packet::csum::sum_from(&p, start).unwrap());
            let mut got = Vec::new();
            p.append_to(&mut got);
            got[start + 16..start + 18].copy_from_slice(&c.to_be_bytes());
            assert!(got == want, "v6 {v6}: the frame the device completes");
        }
    }

    #[test]
    fn tx_prepends_the_header_and_notifies_once_per_burst_when_asked() {
        for event_idx in [true, false] {
            let mem = region();
            let bells = Arc::new(Bells::default());
            let pool = host_pool(64).unwrap();
            let mut cache = pool.cache(16);
            let mut txq = tx_queue(&mem, &bells, 8, event_idx, 2);
            let mut dev = Dev::default();
            dev.arm(txq.ops().ring());
            let mut b = batch_of(&mut cache, 0..10, 60);
            assert_eq!(
                tx_burst(&mut txq, &mut cache, &mut b),
                7,
                "8-entry ring holds 7"
            );
            assert_eq!(
                bells.take(),
                vec![(TX_BELL, TX_QUEUE)],
                "one doorbell per burst"
            );
            // What did not fit comes back unchanged.
            assert_eq!(b.len(), 3);
            for (i, p) in b.iter().enumerate() {
                assert_eq!(p.data(), frame(7 + i as u32, 60).as_slice());
                assert_eq!(p.headroom(), 128);
            }
            let wire = dev.transmit(txq.ops().ring());
            assert_eq!(wire.len(), 7);
            for (i, f) in wire.iter().enumerate() {
                assert_eq!(f, &frame(i as u32, 60));
            }
            assert_eq!(txq.ops().pending(), 0);
            // The device asked to hear again: the next burst notifies, once.
            assert_eq!(tx_burst(&mut txq, &mut cache, &mut b), 3);
            assert_eq!(bells.take(), vec![(TX_BELL, TX_QUEUE)]);
            // A burst while the device is still busy (not re-armed) needs no doorbell.
            if event_idx {
                txq.ops().ring().device_set_avail_event(0);
            } else {
                txq.ops()
                    .ring()
                    .device_set_used_flags(VIRTQ_USED_F_NO_NOTIFY);
            }
            let mut more = batch_of(&mut cache, 10..11, 1514);
            // Completed buffers are reclaimed by later bursts.
            assert_eq!(tx_burst(&mut txq, &mut cache, &mut more), 1);
            assert!(bells.take().is_empty(), "event_idx {event_idx}: suppressed");
            assert!(txq.stats().completed >= 6);
            let wire = dev.transmit(txq.ops().ring());
            assert_eq!(wire.len(), 4);
            assert_eq!(wire[3], frame(10, 1514));
            // Unsendable frames: empty, too long, or no headroom for the header.
            let mut bad = PacketBatch::new(4);
            bad.push(cache.alloc().unwrap()).unwrap();
            let mut long = cache.alloc().unwrap();
            long.set_len(MAX_FRAME + 1);
            bad.push(long).unwrap();
            let mut nohead = cache.alloc().unwrap();
            nohead.set_len(60);
            assert!(nohead.prepend(nohead.headroom() - 4));
            bad.push(nohead).unwrap();
            assert_eq!(tx_burst(&mut txq, &mut cache, &mut bad), 0);
            assert!(bad.is_empty());
            assert_eq!(txq.stats().bad_packet, 3);
            let s = *txq.stats();
            assert_eq!(
                (s.packets, s.bytes),
                (11, 10 * 60 + 1514),
                "frame bytes, no header"
            );
        }
    }

    impl Dev {
        /// Takes every available buffer without using it (a device that holds buffers and
        /// completes them later, in any order): (id, descriptor) in avail order.
        fn take_all(&mut self, ring: &SplitRing) -> Vec<(u16, VirtqDesc)> {
            let mut taken = Vec::new();
            while self.last_avail != ring.avail_idx() {
                let id = ring.avail_entry(self.last_avail);
                taken.push((id, ring.descs().read(u32::from(id))));
                self.last_avail = self.last_avail.wrapping_add(1);
            }
            taken
        }

        /// Puts `id` in the used ring (the device is done with that buffer).
        fn complete(&mut self, ring: &SplitRing, id: u32) {
            ring.device_push_used(self.used, id, 0);
            self.used = self.used.wrapping_add(1);
        }
    }

    /// The bytes the device reads for a TX descriptor.
    fn tx_bytes(d: &VirtqDesc) -> Vec<u8> {
        identity_dma::read(d.addr.get(), d.len.get() as usize)
    }

    /// virtio 1.2 §2.7.8: without VIRTIO_F_IN_ORDER the device may use TX buffers in any
    /// order. A buffer is taken back by the id in its used element, never by its position:
    /// one the device still holds keeps its descriptor and its bytes, and blocks the ring
    /// behind it, however many later ones come back; a used id naming no buffer in flight
    /// is counted, not trusted.
    #[test]
    fn tx_buffers_come_back_by_used_id_out_of_order() {
        let mem = region();
        let bells = Arc::new(Bells::default());
        let pool = host_pool(64).unwrap();
        let mut cache = pool.cache(16);
        let mut txq = tx_queue(&mem, &bells, 8, true, 2);
        let mut dev = Dev::default();
        let mut b = batch_of(&mut cache, 0..7, 60);
        assert_eq!(tx_burst(&mut txq, &mut cache, &mut b), 7);
        let taken = dev.take_all(txq.ops().ring());
        assert_eq!(taken.len(), 7);
        let (held_id, held) = taken[0];
        let held_bytes = tx_bytes(&held);
        // Used in reverse: 6..2, then buffer 1 with a garbage id; buffer 0 stays held.
        for &(id, _) in taken[2..].iter().rev() {
            dev.complete(txq.ops().ring(), u32::from(id));
        }
        dev.complete(txq.ops().ring(), 0xdead);
        let mut more = batch_of(&mut cache, 7..14, 60);
        assert_eq!(
            tx_burst(&mut txq, &mut cache, &mut more),
            0,
            "slot 0 is held: the ring has no room"
        );
        let s = *txq.stats();
        assert_eq!((s.completed, s.bad_completion), (5, 1));
        assert_eq!(txq.in_flight(), 7);
        // The held buffer: its descriptor untouched, and not in the pool for anyone to
        // allocate and overwrite.
        let ring = txq.ops().ring();
        assert_eq!(ring.descs().read(u32::from(held_id)), held);
        let mut grabbed = Vec::new();
        while let Some(mut p) = cache.alloc() {
            p.set_len(p.capacity().min(2048));
            p.data_mut().fill(0xee);
            grabbed.push(p);
        }
        assert_eq!(tx_bytes(&held), held_bytes, "a held buffer was reused");
        for p in grabbed {
            cache.free(p);
        }
        // The device finishes buffer 0: the ring opens up to slot 1 (buffer 1's entry was
        // garbage, so the engine still counts it as held).
        dev.complete(txq.ops().ring(), u32::from(held_id));
        assert_eq!(tx_burst(&mut txq, &mut cache, &mut more), 1);
        assert_eq!(txq.stats().completed, 6);
        assert_eq!(txq.in_flight(), 7);
        let wire = dev.transmit(txq.ops().ring());
        assert_eq!(wire, vec![frame(7, 60)]);
        assert_eq!(txq.ops().pending(), 0);
        // The device is idle: everything comes back, buffer 1 included.
        assert_eq!(txq.reclaim_all(&mut cache), 7);
        assert_eq!(txq.in_flight(), 0);
        // And the ring goes on, over several laps, completing each burst in reverse.
        let mut seq = 8;
        for _ in 0..20 {
            let mut b = batch_of(&mut cache, seq..seq + 5, 60);
            assert_eq!(tx_burst(&mut txq, &mut cache, &mut b), 5);
            let taken = dev.take_all(txq.ops().ring());
            assert_eq!(taken.len(), 5);
            for (i, (_, d)) in taken.iter().enumerate() {
                assert_eq!(
                    &tx_bytes(d)[HDR_LEN..],
                    frame(seq + i as u32, 60).as_slice()
                );
            }
            for &(id, _) in taken.iter().rev() {
                dev.complete(txq.ops().ring(), u32::from(id));
            }
            seq += 5;
        }
        more.free_into(&mut cache);
        txq.reclaim(&mut cache);
        assert_eq!(txq.in_flight(), 0);
        assert_eq!(txq.stats().bad_completion, 1);
        drop(cache);
        assert_eq!(pool.free_count(), 64, "every buffer came home once");
    }

    /// virtio 1.2 §2.7.7.1: with VIRTIO_F_EVENT_IDX the driver MUST set the avail ring's
    /// flags to 0 and suppress interrupts through `used_event` alone; without it,
    /// VIRTQ_AVAIL_F_NO_INTERRUPT does. (The flags were NO_INTERRUPT either way before.)
    #[test]
    fn avail_flags_are_zero_with_event_idx() {
        let mem = Arc::new(
            DmaRegion::allocate(Arc::new(IdentityMapper), 1 << 16, HugepagePolicy::Never).unwrap(),
        );
        let with = SplitRing::new(mem.clone(), 0, 8, true);
        assert_eq!(with.avail_flags(), 0);
        assert_eq!(with.used_event(), NO_INTERRUPT_DISTANCE);
        let without = SplitRing::new(mem.clone(), 1 << 14, 8, false);
        assert_eq!(without.avail_flags(), VIRTQ_AVAIL_F_NO_INTERRUPT);
    }

    #[test]
    fn indices_wrap_past_two_to_the_sixteen() {
        let mem = region();
        let bells = Arc::new(Bells::default());
        let pool = host_pool(64).unwrap();
        let mut cache = pool.cache(16);
        let mut rxq = rx_queue(&mem, &bells, 8, true, 2);
        let mut txq = tx_queue(&mem, &bells, 8, true, 2);
        let (mut rdev, mut tdev) = (Dev::default(), Dev::default());
        rdev.arm(rxq.ops().ring());
        tdev.arm(txq.ops().ring());
        rxq.fill(&mut cache);
        let (mut rx_seq, mut tx_seq, mut dev_seq, mut wire_seq) = (0u32, 0u32, 0u32, 0u32);
        let mut out = PacketBatch::new(8);
        while rx_seq < 70_000 || wire_seq < 70_000 {
            for _ in 0..5 {
                if rdev.receive(rxq.ops().ring(), &frame(dev_seq, 60)) {
                    dev_seq += 1;
                }
            }
            rxq.rx_burst(&mut cache, &mut out);
            for p in out.drain() {
                assert_eq!(p.data(), frame(rx_seq, 60).as_slice());
                rx_seq += 1;
                cache.free(p);
            }
            let mut b = batch_of(&mut cache, tx_seq..tx_seq + 5, 64);
            tx_seq += tx_burst(&mut txq, &mut cache, &mut b) as u32;
            b.free_into(&mut cache);
            for f in tdev.transmit(txq.ops().ring()) {
                assert_eq!(f, frame(wire_seq, 64));
                wire_seq += 1;
            }
        }
        assert_eq!(rxq.stats().bad_slot + rxq.stats().bad_len, 0);
        assert!(rxq.ops().ring().avail_idx() < 10_000, "wrapped");
    }

    #[derive(Clone, Debug)]
    enum Fuzz {
        /// The device writes a used element with any id and length.
        Used(u32, u32),
        /// The device writes any used.idx.
        UsedIdx(u16),
        /// The driver polls.
        Burst(u8),
        /// The driver sends.
        Send(u8),
        /// The device writes any suppression state.
        Event(u16, u16),
    }

    fn fuzz_op() -> impl Strategy<Value = Fuzz> {
        prop_oneof![
            (0u32..20, any::<u32>()).prop_map(|(id, len)| Fuzz::Used(id, len % 3000)),
            (any::<u32>(), any::<u32>()).prop_map(|(id, len)| Fuzz::Used(id, len)),
            any::<u16>().prop_map(Fuzz::UsedIdx),
            (1u8..40).prop_map(Fuzz::Burst),
            (1u8..40).prop_map(Fuzz::Send),
            (any::<u16>(), any::<u16>()).prop_map(|(e, f)| Fuzz::Event(e, f)),
        ]
    }

    proptest! {
        /// Whatever a device writes into the used rings (ids never made available or beyond
        /// the ring, lengths short, long or absurd, used.idx anywhere, any suppression
        /// state): no panic, no out-of-bounds access, every RX completion is a delivered
        /// frame or a counted drop, and every buffer comes home exactly once.
        #[test]
        fn used_ring_writebacks_never_panic_and_lose_no_buffer(
            log2 in 2u32..5,
            event_idx in any::<bool>(),
            ops in proptest::collection::vec(fuzz_op(), 1..120),
        ) {
            let size = 1u16 << log2;
            let mem = region();
            let bells = Arc::new(Bells::default());
            let pool = host_pool(128).unwrap();
            let mut cache = pool.cache(16);
            let mut rxq = rx_queue(&mem, &bells, size, event_idx, 1);
            let mut txq = tx_queue(&mem, &bells, size, event_idx, 1);
            rxq.fill(&mut cache);
            let mut rx_used = 0u16;
            let mut held = Vec::new();
            for op in ops {
                match op {
                    Fuzz::Used(id, len) => {
                        rxq.ops().ring().device_push_used(rx_used, id, len);
                        txq.ops().ring().device_push_used(rx_used, id, len);
                        rx_used = rx_used.wrapping_add(1);
                    }
                    Fuzz::UsedIdx(i) => {
                        rx_used = i;
                        rxq.ops().ring().device_set_used_idx(i);
                        txq.ops().ring().device_set_used_idx(i);
                    }
                    Fuzz::Burst(n) => {
                        let mut out = PacketBatch::new(n as usize);
                        let before = *rxq.stats();
                        let got = rxq.rx_burst(&mut cache, &mut out);
                        prop_assert_eq!(got, out.len());
                        for p in out.drain() {
                            prop_assert!(p.len() <= 2048);
                            held.push(p);
                        }
                        let s = *rxq.stats();
                        prop_assert_eq!(s.packets - before.packets, got as u64);
                        prop_assert!(rxq.posted() < u32::from(size));
                    }
                    Fuzz::Send(n) => {
                        let mut b = PacketBatch::new(n as usize);
                        while b.room() > 0 {
                            let Some(mut p) = cache.alloc() else { break };
                            p.set_len(60);
                            b.push(p).unwrap();
                        }
                        tx_burst(&mut txq, &mut cache, &mut b);
                        prop_assert!(txq.in_flight() < u32::from(size));
                        for p in b.iter() {
                            prop_assert_eq!(p.len(), 60);
                        }
                        b.free_into(&mut cache);
                    }
                    Fuzz::Event(e, f) => {
                        for r in [rxq.ops().ring(), txq.ops().ring()] {
                            r.device_set_avail_event(e);
                            r.device_set_used_flags(f);
                        }
                    }
                }
                if held.len() > 64 {
                    held.drain(..).for_each(|p| cache.free(p));
                }
            }
            held.drain(..).for_each(|p| cache.free(p));
            rxq.release(&mut cache);
            txq.release(&mut cache);
            drop(cache);
            prop_assert_eq!(pool.free_count(), 128);
        }
    }

    #[test]
    fn queue_sizes_are_powers_of_two_within_the_device_maximum() {
        assert_eq!(queue_size(512, 256), 256);
        assert_eq!(queue_size(16, 256), 16);
        assert_eq!(queue_size(300, 1024), 256);
        assert_eq!(queue_size(512, 100), 64);
        assert_eq!(queue_size(1, 256), 4);
    }
}
