//! Split virtqueues (virtio 1.2 §2.7): the ring in DMA memory, its view for the burst
//! loops, and virtio-net's RX and TX descriptor ops on it.

use crate::offload::tx::DeviceTxOffloads;
use crate::platform::barrier;
use std::sync::Arc;

use tenge_descriptors::virtio::{
    avail_ring_offset, avail_used_event_offset, split_ring_layout, used_avail_event_offset,
    used_ring_offset, VirtqDesc, VirtqUsedElem, AVAIL_IDX_OFFSET, USED_IDX_OFFSET,
    VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE,
};
use tenge_firmware_iface::NarrowMmio;

use crate::packet::mempool::PacketBuf;
use crate::platform::dma::{DescRing, DmaRegion, RingView};
use crate::ring::{RxDescOps, TxDescOps, TxView};

use super::*;

/// `used_event` is kept this far ahead of `avail.idx`: the device's used index never gets
/// past `avail.idx`, so it never crosses `used_event` and never interrupts.
pub(super) const NO_INTERRUPT_DISTANCE: u16 = 0x8000;

/// One split virtqueue in DMA memory (virtio 1.2 §2.7): descriptor table, driver area
/// (avail ring) and device area (used ring), placed by [`split_ring_layout`].
pub struct SplitRing {
    desc: DescRing<VirtqDesc>,
    region: Arc<DmaRegion>,
    /// Byte offset of the driver area in `region`.
    avail: usize,
    /// Byte offset of the device area in `region`.
    used: usize,
    size: u16,
}

impl SplitRing {
    /// A ring of `size` (a power of two) descriptors at byte `offset` (16-byte aligned) of
    /// `region`, which must be zeroed there. Fills the avail ring with each slot's own
    /// index (descriptor id == ring slot) and asks for no interrupts: with `event_idx`
    /// (VIRTIO_F_EVENT_IDX negotiated) through `used_event` alone, as the avail ring's
    /// flags must then be 0 (virtio 1.2 §2.7.7.1), else with `VIRTQ_AVAIL_F_NO_INTERRUPT`.
    pub fn new(region: Arc<DmaRegion>, offset: usize, size: u16, event_idx: bool) -> Self {
        assert!(
            size.is_power_of_two(),
            "queue size {size} is not a power of two"
        );
        let l = split_ring_layout(size);
        assert!(
            offset.is_multiple_of(16) && offset + l.len <= region.len(),
            "split ring of {size} at {offset:#x} does not fit a {:#x}-byte region",
            region.len()
        );
        let ring = SplitRing {
            desc: DescRing::new(region.clone(), offset + l.desc, u32::from(size)),
            region,
            avail: offset + l.driver,
            used: offset + l.device,
            size,
        };
        for slot in 0..size {
            ring.region
                .write::<u16>(ring.avail + avail_ring_offset(slot), slot.to_le());
        }
        if event_idx {
            // Interrupts are suppressed by keeping used_event out of the device's reach; the
            // publishes move it along.
            ring.region.write::<u16>(ring.avail, 0);
            ring.write_used_event(NO_INTERRUPT_DISTANCE);
        } else {
            ring.region
                .write::<u16>(ring.avail, VIRTQ_AVAIL_F_NO_INTERRUPT.to_le());
        }
        ring
    }

    /// The avail ring's flags (what the device reads for interrupt suppression).
    pub fn avail_flags(&self) -> u16 {
        u16::from_le(self.region.read::<u16>(self.avail))
    }

    /// Bytes a ring of `size` descriptors needs, rounded up to 64 so rings can follow each
    /// other in one region.
    pub const fn bytes(size: u16) -> usize {
        split_ring_layout(size).len.div_ceil(64) * 64
    }

    /// Number of descriptors.
    pub fn size(&self) -> u16 {
        self.size
    }

    /// IOVAs of the descriptor, driver and device areas, for `queue_desc`/`_driver`/`_device`.
    pub fn iovas(&self) -> (u64, u64, u64) {
        let base = self.region.iova();
        (
            self.desc.iova(),
            base + self.avail as u64,
            base + self.used as u64,
        )
    }

    /// The descriptor table.
    pub fn descs(&self) -> &DescRing<VirtqDesc> {
        &self.desc
    }

    /// `avail.idx` as last published.
    pub fn avail_idx(&self) -> u16 {
        u16::from_le(self.region.read::<u16>(self.avail + AVAIL_IDX_OFFSET))
    }

    /// `avail.ring[slot]` (masked).
    pub fn avail_entry(&self, slot: u16) -> u16 {
        u16::from_le(
            self.region
                .read::<u16>(self.avail + avail_ring_offset(slot & (self.size - 1))),
        )
    }

    /// `used_event` (driver area, with EVENT_IDX).
    pub fn used_event(&self) -> u16 {
        u16::from_le(
            self.region
                .read::<u16>(self.avail + avail_used_event_offset(self.size)),
        )
    }

    /// `used.idx` as the device wrote it.
    pub fn used_idx(&self) -> u16 {
        self.view().used_idx()
    }

    /// `used.flags` as the device wrote it.
    pub fn used_flags(&self) -> u16 {
        u16::from_le(self.region.read::<u16>(self.used))
    }

    /// `avail_event` (device area, with EVENT_IDX) as the device wrote it.
    pub fn avail_event(&self) -> u16 {
        u16::from_le(
            self.region
                .read::<u16>(self.used + used_avail_event_offset(self.size)),
        )
    }

    /// Used element at free-running used index `idx` (masked): (id, len) as the device
    /// wrote them. Read it only once `used.idx` is past `idx`, behind `barrier::dma_rmb`.
    pub fn used_elem(&self, idx: u16) -> (u32, u32) {
        self.view().used_elem(u32::from(idx))
    }

    /// Writes used element `slot` (masked) and `used.idx`: what a device does. For tests
    /// and models.
    pub fn device_push_used(&self, used_idx: u16, id: u32, len: u32) {
        let slot = used_idx & (self.size - 1);
        self.region.write(
            self.used + used_ring_offset(slot),
            VirtqUsedElem {
                id: id.into(),
                len: len.into(),
            },
        );
        self.device_set_used_idx(used_idx.wrapping_add(1));
    }

    /// Writes `used.idx`: what a device does. For tests and models.
    pub fn device_set_used_idx(&self, idx: u16) {
        self.region
            .write::<u16>(self.used + USED_IDX_OFFSET, idx.to_le());
    }

    /// Writes `used.flags`: what a device does. For tests and models.
    pub fn device_set_used_flags(&self, flags: u16) {
        self.region.write::<u16>(self.used, flags.to_le());
    }

    /// Writes `avail_event`: what a device does. For tests and models.
    pub fn device_set_avail_event(&self, idx: u16) {
        self.region
            .write::<u16>(self.used + used_avail_event_offset(self.size), idx.to_le());
    }

    #[inline(always)]
    pub(super) fn view(&self) -> SplitView<'_> {
        SplitView {
            desc: self.desc.view(),
            region: &self.region,
            used: self.used,
            mask: u32::from(self.size) - 1,
        }
    }

    pub(super) fn write_avail_idx(&self, idx: u16) {
        self.region
            .write::<u16>(self.avail + AVAIL_IDX_OFFSET, idx.to_le());
    }

    fn write_avail_flags(&self, flags: u16) {
        self.region.write::<u16>(self.avail, flags.to_le());
    }

    pub(super) fn write_used_event(&self, idx: u16) {
        self.region
            .write::<u16>(self.avail + avail_used_event_offset(self.size), idx.to_le());
    }
}

/// A borrowed [`SplitRing`] for the burst loops: the descriptor table's view, the region
/// and the used ring's offset. Every index is masked, so no id or index the device wrote
/// reaches outside the ring.
#[derive(Clone, Copy)]
pub struct SplitView<'a> {
    desc: RingView<'a, VirtqDesc>,
    region: &'a DmaRegion,
    used: usize,
    mask: u32,
}

impl SplitView<'_> {
    /// `used.idx`: one 16-bit volatile load (the device writes it as one).
    #[inline(always)]
    fn used_idx(&self) -> u16 {
        u16::from_le(self.region.read::<u16>(self.used + USED_IDX_OFFSET))
    }

    /// Whether the device has used the entry at free-running index `idx`: `used.idx` is
    /// past it, modulo 2^16 (both sides count from 0 after reset).
    #[inline(always)]
    fn is_used(&self, idx: u32) -> bool {
        (self.used_idx().wrapping_sub(idx as u16) as i16) > 0
    }

    /// The id of the used element at free-running index `idx` (masked): one aligned 4-byte
    /// load (the element's fields are byte arrays, which a whole-element read loads byte
    /// by byte).
    #[inline(always)]
    fn used_id(&self, idx: u32) -> u32 {
        u32::from_le(
            self.region
                .read::<u32>(self.used + used_ring_offset((idx & self.mask) as u16)),
        )
    }

    /// How many used elements from free-running index `idx` on, at most `n`, have the ids
    /// `id`, `id + 1`, ... (masked): one bounds check for the run.
    #[inline(always)]
    fn used_ids_in_order(&self, idx: u32, n: u32, id: u32) -> u32 {
        self.region.count_seq_u32(
            self.used + used_ring_offset(0),
            size_of::<VirtqUsedElem>(),
            self.mask + 1,
            idx,
            n,
            id,
        )
    }

    /// Used element at free-running index `idx` (masked): (id, len).
    #[inline(always)]
    fn used_elem(&self, idx: u32) -> (u32, u32) {
        let e: VirtqUsedElem = self
            .region
            .read(self.used + used_ring_offset((idx & self.mask) as u16));
        (e.id.get(), e.len.get())
    }
}

/// The virtio-net RX descriptor ops over a split ring.
pub struct VirtioRx<M: NarrowMmio> {
    ring: SplitRing,
    bell: Doorbell<M>,
    hdr: RxHdrMode,
}

impl<M: NarrowMmio> VirtioRx<M> {
    /// Ops over `ring`, notifying through `bell`; headers read as `hdr` says.
    pub fn new(ring: SplitRing, bell: Doorbell<M>, hdr: RxHdrMode) -> Self {
        VirtioRx { ring, bell, hdr }
    }

    /// The ring.
    pub fn ring(&self) -> &SplitRing {
        &self.ring
    }

    /// The doorbell.
    pub fn bell(&self) -> &Doorbell<M> {
        &self.bell
    }

    /// Writes a held doorbell the device still asks for (`Doorbell::hold`), then asks the
    /// device for an interrupt once it uses the entry at free-running index
    /// `next` (the first the driver has not consumed): with EVENT_IDX `used_event = next`
    /// (virtio 1.2 §2.7.10: the device interrupts when its used index passes it), else
    /// the avail flags without `VIRTQ_AVAIL_F_NO_INTERRUPT` (§2.7.7). Then a full fence,
    /// so the device sees the request before the driver looks at the used ring once more
    /// (a frame used in between is then found by that look, or interrupts).
    pub fn arm_irq(&mut self, next: u32) {
        // A held doorbell first: the driver is about to sleep, and a device that waits
        // for a notification uses nothing, so no interrupt would come.
        self.bell.release_split(&self.ring);
        self.bell.irq_armed = true;
        if self.bell.event_idx {
            self.ring.write_used_event(next as u16);
        } else {
            self.ring.write_avail_flags(0);
        }
        crate::platform::barrier::mb();
    }

    /// Suppresses interrupts again (as at start: `used_event` out of reach, or
    /// `VIRTQ_AVAIL_F_NO_INTERRUPT`); publishes move `used_event` along from here on.
    pub fn disarm_irq(&mut self) {
        self.bell.irq_armed = false;
        if self.bell.event_idx {
            self.ring.write_used_event(
                self.ring
                    .avail_idx()
                    .wrapping_add(super::split::NO_INTERRUPT_DISTANCE),
            );
        } else {
            self.ring.write_avail_flags(VIRTQ_AVAIL_F_NO_INTERRUPT);
        }
    }
}

impl<M: NarrowMmio> RxDescOps for VirtioRx<M> {
    type View<'a>
        = VirtioRxView<SplitView<'a>>
    where
        M: 'a;

    #[inline(always)]
    fn view(&self) -> VirtioRxView<SplitView<'_>> {
        VirtioRxView::new(self.ring.view(), self.hdr)
    }

    #[inline(always)]
    fn entries(&self) -> u32 {
        u32::from(self.ring.size)
    }

    #[inline(always)]
    fn flush(&mut self, pidx: u32) {
        self.bell.publish(&self.ring, pidx as u16, false);
    }

    #[inline(always)]
    fn flush_busy(&mut self, pidx: u32) {
        self.bell.publish(&self.ring, pidx as u16, true);
    }

    #[inline(always)]
    fn idle(&mut self) {
        self.bell.release_split(&self.ring);
    }
}

impl VirtqView for SplitView<'_> {
    #[inline(always)]
    fn post_writable(&self, idx: u32, iova: u64, len: u32) {
        // addr, then len (31:0) | flags WRITE (47:32) | next 0.
        self.desc.write_qwords(
            idx,
            iova,
            u64::from(len) | u64::from(VIRTQ_DESC_F_WRITE) << 32,
        );
    }

    #[inline(always)]
    fn is_used(&self, idx: u32) -> bool {
        SplitView::is_used(self, idx)
    }

    #[inline(always)]
    fn used_elem(&self, idx: u32) -> (u32, u32) {
        SplitView::used_elem(self, idx)
    }

    #[inline(always)]
    fn mask(&self) -> u32 {
        self.mask
    }
}

/// The virtio-net TX descriptor ops over a split ring.
pub struct VirtioTx<M: NarrowMmio> {
    ring: SplitRing,
    bell: Doorbell<M>,
    /// Header length, offloads and indirect tables.
    settings: TxSettings,
}

impl<M: NarrowMmio> VirtioTx<M> {
    /// Ops over `ring`, notifying through `bell`, sending as `settings` says.
    pub fn new(ring: SplitRing, bell: Doorbell<M>, settings: TxSettings) -> Self {
        VirtioTx {
            ring,
            bell,
            settings,
        }
    }

    /// How the queue sends.
    pub fn settings(&self) -> &TxSettings {
        &self.settings
    }

    /// The ring.
    pub fn ring(&self) -> &SplitRing {
        &self.ring
    }

    /// The doorbell.
    pub fn bell(&self) -> &Doorbell<M> {
        &self.bell
    }

    /// Descriptors published but not yet used by the device.
    pub fn pending(&self) -> u16 {
        self.ring.avail_idx().wrapping_sub(self.ring.used_idx())
    }
}

impl<M: NarrowMmio> super::VirtioTxOps for VirtioTx<M> {
    #[inline(always)]
    fn hdr_len(&self) -> usize {
        self.settings.hdr_len()
    }
}

impl<M: NarrowMmio> TxDescOps for VirtioTx<M> {
    type View<'a>
        = VirtioTxView<'a>
    where
        M: 'a;

    #[inline(always)]
    fn view(&self) -> VirtioTxView<'_> {
        let (indirect, hdr_len, offloads) = self.settings.view();
        VirtioTxView(self.ring.view(), indirect, hdr_len, offloads)
    }

    #[inline(always)]
    fn entries(&self) -> u32 {
        u32::from(self.ring.size)
    }

    #[inline(always)]
    fn flush(&mut self, pidx: u32) {
        self.bell.publish(&self.ring, pidx as u16, false);
    }
}

/// The virtio-net TX descriptor accesses, on a view of the ring.
#[derive(Clone, Copy)]
pub struct VirtioTxView<'a>(
    SplitView<'a>,
    Option<IndirectView<'a>>,
    u32,
    DeviceTxOffloads,
);

impl VirtioTxView<'_> {
    /// A chain: its segments in the slot's indirect table, chained by `next` (virtio 1.2
    /// §2.7.5.3.1: NEXT within the table, never with INDIRECT), and one ring descriptor
    /// with INDIRECT pointing at it. The engine sends chains only up to `max_segs`.
    #[cold]
    #[inline(never)]
    fn encap_chain(&self, pidx: u32, pkt: &mut PacketBuf) -> u32 {
        let Some(ind) = self.1 else {
            debug_assert!(false, "a chain on a ring without indirect tables");
            return 1;
        };
        let first = super::write_tx_hdr(pkt, self.2);
        let (iova, len) = ind.write(pidx & self.0.mask, first, pkt, |len, i, last| {
            let (flags, next) = if last {
                (0, 0)
            } else {
                (VIRTQ_DESC_F_NEXT, i + 1)
            };
            u64::from(len) | u64::from(flags) << 32 | u64::from(next) << 48
        });
        self.0.desc.write_qwords(
            pidx,
            iova,
            u64::from(len) | u64::from(VIRTQ_DESC_F_INDIRECT) << 32,
        );
        1
    }
}

impl TxView for VirtioTxView<'_> {
    const SINGLE_DESC: bool = true;
    // Buffer id == descriptor index == ring slot (avail.ring[i] is i).
    const COMPLETES_BY_ID: bool = true;

    #[inline(always)]
    fn used_end(&self, seen: u32, n: u32) -> u32 {
        // used.idx counts entries modulo 2^16, as `seen` does truncated.
        let new = u32::from(self.0.used_idx().wrapping_sub(seen as u16));
        seen.wrapping_add(new.min(n))
    }

    #[inline(always)]
    fn used_in_order(&self, seen: u32, n: u32, slot: u32) -> (u32, bool) {
        // used.idx counts entries modulo 2^16, as `seen` does truncated.
        let new = u32::from(self.0.used_idx().wrapping_sub(seen as u16)).min(n);
        if new == 0 {
            return (0, false);
        }
        // used.idx before the ids of the entries it counts.
        barrier::dma_rmb();
        let run = self.0.used_ids_in_order(seen, new, slot);
        (run, run != new)
    }

    #[inline(always)]
    fn used_id(&self, idx: u32) -> u32 {
        self.0.used_id(idx)
    }

    #[inline(always)]
    fn descs_needed(&self, _pkt: &PacketBuf) -> u32 {
        1
    }

    /// Unchained, no TX offload asked (a packet that asks goes to the checked loop, where
    /// `sendable` checks it), room for the header.
    #[inline(always)]
    fn single(&self, pkt: &PacketBuf) -> bool {
        super::tx_single(pkt)
    }

    /// Room for the header, and a TX offload request only if valid and one the device
    /// serves (dropped and counted otherwise, `TxStats::bad_offload`).
    #[inline(always)]
    fn sendable(&self, pkt: &PacketBuf) -> bool {
        super::tx_sendable(pkt, self.3)
    }

    #[inline(always)]
    fn refusal(&self, pkt: &PacketBuf) -> Option<crate::ring::BadOffload> {
        super::tx_refusal(pkt, self.3)
    }

    /// A TSO packet up to an IP datagram's 64 KiB (the device segments it).
    #[inline(always)]
    fn max_len(&self, pkt: &PacketBuf, max_frame: usize) -> usize {
        super::tx_max_len(pkt, max_frame)
    }

    /// Chains through the slot's indirect table when negotiated.
    #[inline(always)]
    fn max_segs(&self) -> u32 {
        if self.1.is_some() {
            INDIRECT_SEGS
        } else {
            1
        }
    }

    #[inline(always)]
    fn encap_single(&self, pidx: u32, pkt: &mut PacketBuf) {
        // The header (no request: `single` said so) in front of the data, then one
        // device-readable descriptor over both (flags 0, next 0).
        let (iova, len) = super::write_plain_tx_hdr(pkt, self.2);
        self.0.desc.write_qwords(pidx, iova, u64::from(len));
    }

    #[inline(always)]
    fn encap(&self, pidx: u32, pkt: &mut PacketBuf, _report: bool) -> u32 {
        // The device reports every buffer in the used ring: `report` has nothing to add.
        if pkt.is_chained() {
            return self.encap_chain(pidx, pkt);
        }
        // The header with the packet's offload request, if any.
        let (iova, len) = super::write_tx_hdr(pkt, self.2);
        self.0.desc.write_qwords(pidx, iova, u64::from(len));
        1
    }

    #[inline(always)]
    fn is_done(&self, idx: u32) -> bool {
        self.0.is_used(idx)
    }
}
