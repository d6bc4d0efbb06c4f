//! virtio-net on **packed** virtqueues (virtio 1.2 §2.8), chosen when the device offers
//! `VIRTIO_F_RING_PACKED` (QEMU `packed=on`): the descriptor ops the ring engine drives,
//! next to the split ring's in `virtio.rs`, which has the rest (bring-up, the header, the
//! doorbell). Same engine, same contract:
//!
//! - **Descriptor id == ring slot.** The buffer posted at engine index `i` is written to
//!   descriptor `i & mask` with buffer id `i & mask`. The device writes used descriptors in
//!   ring order from its own used index, each naming the buffer id it used: for RX that id
//!   is the engine's slot, checked by the engine (an id beyond the ring or never posted is a
//!   counted `bad_slot`); the length is checked against the buffer (`bad_len`).
//! - **Wrap counters from the free-running indices.** Both wrap counters start at 1 and flip
//!   each lap (§2.8.1); the engine's indices are free-running `u32`s and the ring a power of
//!   two, so the counter of index `i` is `(i / size) % 2 == 0` — the avail counter at the
//!   producer index, the used counter at the consumer index — correct across the 2^32 wrap
//!   too (2^32 is an even number of laps). A view is therefore `Copy` and stateless.
//! - **Making a descriptor available** is one descriptor write: the address quadword, then
//!   `len | id << 32 | flags << 48` as one 8-byte store, so the flags (AVAIL = the avail wrap
//!   counter, USED = its inverse) become visible together with id and length and after the
//!   address, `barrier::dma_wmb` between the two stores (on x86 a compiler fence: stores
//!   stay in program order). The device may take it at once; the engine's flush afterwards
//!   only decides whether to notify.
//! - **Used** (§2.8.6): a descriptor at consumer index `i` is used when its AVAIL and USED
//!   bits both equal the used wrap counter of `i`; `id` and `len` are read after that, behind
//!   the engine's `dma_rmb`.
//! - **TX by buffer id.** As on the split ring, the device may use TX buffers in any order
//!   (§2.8.21, no `VIRTIO_F_IN_ORDER`): used descriptors come in ring order from the
//!   device's used position, each naming the buffer id it is done with, and the engine
//!   frees that slot's buffer (an id naming no buffer in flight is a counted
//!   `bad_completion`). A buffer id is posted again only once the engine's consumer index
//!   has passed it, so no id the device still holds is reused; and the driver's reads of
//!   used descriptors stay ahead of its writes of new ones. The engine's "write again with a
//!   report" is a no-op here: rewriting a descriptor the device may already have used would
//!   make it available again.
//! - **Notifications** (§2.8.10, §2.8.14): the driver event area says DISABLE (tenge polls, no
//!   interrupts). After a batch, `barrier::mb` (a full fence) orders the descriptor stores before the load of
//!   the device event area; with `VIRTIO_F_EVENT_IDX` the doorbell is written iff
//!   [`pvirtq_need_event`] finds the descriptor the device named (DESC, slot and wrap) among
//!   the ones just published, or the device said ENABLE; without it, unless it said DISABLE.
//!   QEMU writes DISABLE there while it works and DESC/ENABLE when it runs dry, so an RX
//!   refill after QEMU found the ring empty kicks it, and one while it still had buffers
//!   does not.

use crate::offload::tx::DeviceTxOffloads;
use crate::platform::barrier;
use std::sync::Arc;

use tenge_descriptors::virtio::{
    packed_ring_layout, pvirtq_avail_flags, pvirtq_is_used, pvirtq_need_event, PvirtqDesc,
    PvirtqEventSuppress, RING_EVENT_FLAGS_DESC, RING_EVENT_FLAGS_DISABLE, RING_EVENT_FLAGS_ENABLE,
    VIRTQ_DESC_F_AVAIL, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_USED, VIRTQ_DESC_F_WRITE,
};
use tenge_firmware_iface::NarrowMmio;

use crate::packet::mempool::PacketBuf;
use crate::platform::dma::{DescRing, DmaRegion, RingView};
use crate::ring::{RxDescOps, TxDescOps, TxView};
use crate::virtio::{
    Doorbell, IndirectView, RxHdrMode, TxSettings, VirtioRxView, VirtqView, INDIRECT_SEGS,
};

/// One packed virtqueue in DMA memory (virtio 1.2 §2.8): the descriptor ring and the
/// driver and device event suppression structures, placed by [`packed_ring_layout`].
pub struct PackedRing {
    desc: DescRing<PvirtqDesc>,
    region: Arc<DmaRegion>,
    /// Byte offset of the driver event suppression structure in `region`.
    driver: usize,
    /// Byte offset of the device event suppression structure in `region`.
    device: usize,
    size: u16,
}

/// The wrap counter of free-running index `idx` on a ring of `1 << shift`: 1 on the first
/// lap, flipping every lap.
#[inline(always)]
fn wrap_of(idx: u32, shift: u32) -> bool {
    (idx >> shift) & 1 == 0
}

impl PackedRing {
    /// A ring of `size` (a power of two) descriptors at byte `offset` (16-byte aligned) of
    /// `region`, which must be zeroed there (no AVAIL/USED bits: nothing available, nothing
    /// used, with both wrap counters 1). Asks for no interrupts (driver event flags DISABLE).
    pub fn new(region: Arc<DmaRegion>, offset: usize, size: u16) -> Self {
        assert!(
            size.is_power_of_two(),
            "queue size {size} is not a power of two"
        );
        let l = packed_ring_layout(size);
        assert!(
            offset.is_multiple_of(16) && offset + l.len <= region.len(),
            "packed ring of {size} at {offset:#x} does not fit a {:#x}-byte region",
            region.len()
        );
        let ring = PackedRing {
            desc: DescRing::new(region.clone(), offset + l.desc, u32::from(size)),
            region,
            driver: offset + l.driver,
            device: offset + l.device,
            size,
        };
        ring.region.write(
            ring.driver,
            PvirtqEventSuppress {
                off_wrap: 0.into(),
                flags: RING_EVENT_FLAGS_DISABLE.into(),
            },
        );
        ring
    }

    fn write_driver_event(&self, off_wrap: u16, flags: u16) {
        self.region.write(
            self.driver,
            PvirtqEventSuppress {
                off_wrap: off_wrap.into(),
                flags: flags.into(),
            },
        );
    }

    /// `desc_event_off_wrap` naming free-running index `idx`: its slot and the wrap
    /// counter of its lap (virtio 1.2 §2.8.10).
    fn off_wrap(&self, idx: u32) -> u16 {
        PvirtqEventSuppress::pack_off_wrap(
            (idx & (u32::from(self.size) - 1)) as u16,
            self.wrap(idx),
        )
    }

    /// Bytes a ring of `size` descriptors needs, rounded up to 64 so rings can follow each
    /// other in one region.
    pub const fn bytes(size: u16) -> usize {
        packed_ring_layout(size).len.div_ceil(64) * 64
    }

    /// Number of descriptors.
    pub fn size(&self) -> u16 {
        self.size
    }

    /// IOVAs of the descriptor ring and the driver and device event areas, for
    /// `queue_desc`/`_driver`/`_device`.
    pub fn iovas(&self) -> (u64, u64, u64) {
        let base = self.region.iova();
        (
            self.desc.iova(),
            base + self.driver as u64,
            base + self.device as u64,
        )
    }

    /// The descriptor ring.
    pub fn descs(&self) -> &DescRing<PvirtqDesc> {
        &self.desc
    }

    /// The driver event suppression structure (what the device reads).
    pub fn driver_event(&self) -> PvirtqEventSuppress {
        self.region.read(self.driver)
    }

    /// The device event suppression structure as the device wrote it.
    pub fn device_event(&self) -> PvirtqEventSuppress {
        self.region.read(self.device)
    }

    /// Writes the device event suppression structure: what a device does. For tests and
    /// models.
    pub fn device_set_event(&self, off_wrap: u16, flags: u16) {
        self.region.write(
            self.device,
            PvirtqEventSuppress {
                off_wrap: off_wrap.into(),
                flags: flags.into(),
            },
        );
    }

    /// Writes descriptor `pos` (masked) as a device writes a used one: `id`, `len`, `flags`,
    /// the address left as it was. For tests and models.
    pub fn device_write(&self, pos: u32, id: u16, len: u32, flags: u16) {
        let old = self.desc.read(pos);
        self.desc.write(
            pos,
            PvirtqDesc {
                addr: old.addr,
                len: len.into(),
                id: id.into(),
                flags: flags.into(),
            },
        );
    }

    /// The wrap counter of free-running index `idx` (avail or used alike).
    pub fn wrap(&self, idx: u32) -> bool {
        wrap_of(idx, self.size.trailing_zeros())
    }

    #[inline(always)]
    fn view(&self) -> PackedView<'_> {
        PackedView {
            desc: self.desc.view(),
            shift: self.size.trailing_zeros(),
            mask: u32::from(self.size) - 1,
        }
    }
}

/// A borrowed [`PackedRing`] for the burst loops. Every index is masked, so no id or index
/// the device wrote reaches outside the ring.
#[derive(Clone, Copy)]
pub struct PackedView<'a> {
    desc: RingView<'a, PvirtqDesc>,
    shift: u32,
    mask: u32,
}

impl PackedView<'_> {
    /// Makes the buffer at `iova` of `len` bytes available at free-running index `idx`,
    /// with buffer id = its slot and the other flags `other`.
    #[inline(always)]
    fn post(&self, idx: u32, iova: u64, len: u32, other: u16) {
        let flags = pvirtq_avail_flags(wrap_of(idx, self.shift), other);
        let id = idx & self.mask;
        // addr (63:0); then len (31:0) | id (47:32) | flags (63:48) in one store, last.
        self.desc.write_qwords_publishing(
            idx,
            iova,
            u64::from(len) | u64::from(id) << 32 | u64::from(flags) << 48,
        );
    }

    /// Whether the descriptor at free-running index `idx` reads used for its lap.
    #[inline(always)]
    fn is_used(&self, idx: u32) -> bool {
        // id (15:0) | flags (31:16) of the descriptor, one aligned load.
        let flags = (self.desc.read_u32_at(idx, 12) >> 16) as u16;
        pvirtq_is_used(flags, wrap_of(idx, self.shift))
    }

    /// How many descriptors from free-running index `idx` on, at most `n`, read used and
    /// name the buffer ids `id`, `id + 1`, ... (masked): the used-flags scan and the id check
    /// in one pass over each descriptor's id (15:0) | flags (31:16) word. The id comes from
    /// the same aligned 4-byte load as the flags that say it is written (the device writes
    /// flags last), so no fence is needed between them.
    #[inline(always)]
    fn used_ids_in_order(&self, idx: u32, n: u32, id: u32) -> u32 {
        let wrap_bits = (u32::from(VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED)) << 16;
        // Used in this lap: AVAIL and USED both equal the wrap counter; the lap after the
        // ring's end has the other one.
        let tag = if wrap_of(idx, self.shift) {
            wrap_bits
        } else {
            0
        };
        self.desc.count_seq_u32(
            idx,
            n,
            12,
            0xffff | wrap_bits,
            id,
            self.mask,
            [tag, tag ^ wrap_bits],
        )
    }

    /// (id, len) of the used descriptor at `idx`.
    #[inline(always)]
    fn used_elem(&self, idx: u32) -> (u32, u32) {
        let v = self.desc.read_u64_at(idx, 8);
        (((v >> 32) as u32) & 0xffff, v as u32)
    }
}

impl<M: NarrowMmio> Doorbell<M> {
    /// The packed ring's publish: the descriptors before `pidx` are already visible (their
    /// flags were the publish); notifies the device if its event area asks for it (with
    /// `hold`, see [`Doorbell::hold`]).
    #[inline]
    pub(crate) fn publish_packed(&mut self, ring: &PackedRing, pidx: u32, hold: bool) {
        // The flag stores before the load of the device's suppression state (§2.8.22;
        // Linux's virtqueue_kick_prepare_packed has virtio_mb here): store then load needs
        // a full fence on x86.
        barrier::mb();
        let need = self.packed_needs(ring, pidx, self.last);
        self.last_pidx = pidx;
        self.hold(need, hold, pidx as u16);
    }

    /// A receive burst found nothing (or the driver is about to sleep): writes a held
    /// doorbell if the device still asks for it over what was published since the first
    /// held publish (at most a ring's worth: an older request cannot be live).
    #[inline]
    pub(crate) fn release_packed(&mut self, ring: &PackedRing) {
        let Some(from) = self.held_from.take() else {
            return;
        };
        barrier::mb();
        if self.packed_needs(ring, self.last_pidx, from) {
            self.notify();
        }
    }

    /// Whether the device's event area asks to hear of the descriptors published from
    /// `from` (a truncated producer index) up to `pidx`, at most a ring's worth.
    #[inline]
    fn packed_needs(&self, ring: &PackedRing, pidx: u32, from: u16) -> bool {
        let ev = ring.device_event();
        if self.event_idx {
            stale_event(ring, ev)
                || pvirtq_need_event(
                    ev,
                    (pidx & (u32::from(ring.size) - 1)) as u16,
                    ring.wrap(pidx),
                    (pidx as u16).wrapping_sub(from).min(ring.size),
                    ring.size,
                )
        } else {
            ev.event_flags() != RING_EVENT_FLAGS_DISABLE
        }
    }
}

/// Whether the device asked to be notified at a descriptor it has already used: a request
/// it left behind and will not renew, so it waits for a notification that
/// `pvirtq_need_event` would never send. QEMU does this on TX: after a transmission its
/// hub could not take at once completes (`virtio_net_tx_complete`), it enables
/// notifications naming the descriptor after the one it parked, then goes on sending past
/// it without moving the event (its split ring moves `avail_event` on every pop, the
/// packed ring does not); once the driver's ring is full nothing would wake it. Notifying
/// then costs one doorbell and ends the stall.
#[inline]
fn stale_event(ring: &PackedRing, ev: PvirtqEventSuppress) -> bool {
    if ev.event_flags() != RING_EVENT_FLAGS_DESC {
        return false;
    }
    let (off, wrap) = ev.event_off_wrap();
    let flags = ring.descs().read(u32::from(off)).flags.get();
    pvirtq_is_used(flags, wrap)
}

/// The virtio-net RX descriptor ops over a packed ring.
pub struct PackedRx<M: NarrowMmio> {
    ring: PackedRing,
    bell: Doorbell<M>,
    hdr: RxHdrMode,
}

impl<M: NarrowMmio> PackedRx<M> {
    /// Ops over `ring`, notifying through `bell`; headers read as `hdr` says.
    pub fn new(ring: PackedRing, bell: Doorbell<M>, hdr: RxHdrMode) -> Self {
        PackedRx { ring, bell, hdr }
    }

    /// The ring.
    pub fn ring(&self) -> &PackedRing {
        &self.ring
    }

    /// The doorbell.
    pub fn bell(&self) -> &Doorbell<M> {
        &self.bell
    }

    /// Writes a held doorbell the device still asks for (`Doorbell::hold`), then asks the
    /// device for an interrupt: on its next used descriptor (`at` None: driver
    /// event flags ENABLE, virtio 1.2 §2.8.10), or, with EVENT_IDX, once it has used the
    /// descriptor at free-running index `at` (flags DESC with its slot and wrap counter:
    /// frame-count moderation). Then a full fence before the driver looks at the ring once
    /// more (a descriptor used in between is found then, or interrupts).
    pub fn arm_irq(&mut self, at: Option<u32>) {
        // A held doorbell first: the driver is about to sleep, and a device that waits
        // for a notification uses nothing, so no interrupt would come.
        self.bell.release_packed(&self.ring);
        match at.filter(|_| self.bell.event_idx) {
            Some(idx) => self
                .ring
                .write_driver_event(self.ring.off_wrap(idx), RING_EVENT_FLAGS_DESC),
            None => self.ring.write_driver_event(0, RING_EVENT_FLAGS_ENABLE),
        }
        crate::platform::barrier::mb();
    }

    /// Suppresses interrupts again (driver event flags DISABLE).
    pub fn disarm_irq(&mut self) {
        self.ring.write_driver_event(0, RING_EVENT_FLAGS_DISABLE);
    }
}

impl<M: NarrowMmio> RxDescOps for PackedRx<M> {
    type View<'a>
        = VirtioRxView<PackedView<'a>>
    where
        M: 'a;

    #[inline(always)]
    fn view(&self) -> VirtioRxView<PackedView<'_>> {
        VirtioRxView::new(self.ring.view(), self.hdr)
    }

    #[inline(always)]
    fn entries(&self) -> u32 {
        u32::from(self.ring.size)
    }

    #[inline(always)]
    fn flush(&mut self, pidx: u32) {
        self.bell.publish_packed(&self.ring, pidx, false);
    }

    #[inline(always)]
    fn flush_busy(&mut self, pidx: u32) {
        self.bell.publish_packed(&self.ring, pidx, true);
    }

    #[inline(always)]
    fn idle(&mut self) {
        self.bell.release_packed(&self.ring);
    }
}

impl VirtqView for PackedView<'_> {
    #[inline(always)]
    fn post_writable(&self, idx: u32, iova: u64, len: u32) {
        self.post(idx, iova, len, VIRTQ_DESC_F_WRITE);
    }

    #[inline(always)]
    fn is_used(&self, idx: u32) -> bool {
        PackedView::is_used(self, idx)
    }

    #[inline(always)]
    fn used_elem(&self, idx: u32) -> (u32, u32) {
        PackedView::used_elem(self, idx)
    }

    #[inline(always)]
    fn mask(&self) -> u32 {
        self.mask
    }
}

/// The virtio-net TX descriptor ops over a packed ring.
pub struct PackedTx<M: NarrowMmio> {
    ring: PackedRing,
    bell: Doorbell<M>,
    /// Producer index at the last flush: what [`PackedTx::pending`] counts from.
    published: u32,
    /// Header length, offloads and indirect tables.
    settings: TxSettings,
}

impl<M: NarrowMmio> PackedTx<M> {
    /// Ops over `ring`, notifying through `bell`, sending as `settings` says.
    pub fn new(ring: PackedRing, bell: Doorbell<M>, settings: TxSettings) -> Self {
        PackedTx {
            ring,
            bell,
            published: 0,
            settings,
        }
    }

    /// How the queue sends.
    pub fn settings(&self) -> &TxSettings {
        &self.settings
    }

    /// The ring.
    pub fn ring(&self) -> &PackedRing {
        &self.ring
    }

    /// The doorbell.
    pub fn bell(&self) -> &Doorbell<M> {
        &self.bell
    }

    /// Descriptors published but not yet used by the device (in order: the used ones are
    /// the oldest). Counts back from the newest, at most a ring.
    pub fn pending(&self) -> u16 {
        let view = self.ring.view();
        let mut n = 0u16;
        while n < self.ring.size {
            let idx = self.published.wrapping_sub(u32::from(n) + 1);
            if view.is_used(idx) {
                break;
            }
            n += 1;
        }
        n
    }
}

impl<M: NarrowMmio> super::VirtioTxOps for PackedTx<M> {
    #[inline(always)]
    fn hdr_len(&self) -> usize {
        self.settings.hdr_len()
    }
}

impl<M: NarrowMmio> TxDescOps for PackedTx<M> {
    type View<'a>
        = PackedTxView<'a>
    where
        M: 'a;

    #[inline(always)]
    fn view(&self) -> PackedTxView<'_> {
        let (indirect, hdr_len, offloads) = self.settings.view();
        PackedTxView(self.ring.view(), indirect, hdr_len, offloads)
    }

    #[inline(always)]
    fn entries(&self) -> u32 {
        u32::from(self.ring.size)
    }

    #[inline(always)]
    fn flush(&mut self, pidx: u32) {
        self.published = pidx;
        self.bell.publish_packed(&self.ring, pidx, false);
    }
}

/// The virtio-net TX descriptor accesses, on a view of a packed ring.
#[derive(Clone, Copy)]
pub struct PackedTxView<'a>(
    PackedView<'a>,
    Option<IndirectView<'a>>,
    u32,
    DeviceTxOffloads,
);

impl PackedTxView<'_> {
    /// A chain: its segments in the slot's indirect table, laid out in sequence (virtio
    /// 1.2 §2.8.19: the table's length gives their number; no NEXT, ids and flags other
    /// than WRITE unused), and one ring descriptor with INDIRECT pointing at it. The engine
    /// sends chains only up to `max_segs`.
    #[cold]
    #[inline(never)]
    fn post_chain(&self, pidx: u32, pkt: &mut PacketBuf) {
        let Some(ind) = self.1 else {
            debug_assert!(false, "a chain on a ring without indirect tables");
            return;
        };
        let first = super::write_tx_hdr(pkt, self.2);
        // len (31:0), id (47:32) and flags (63:48) 0: device-readable.
        let (iova, len) = ind.write(pidx & self.0.mask, first, pkt, |len, _, _| u64::from(len));
        self.0.post(pidx, iova, len, VIRTQ_DESC_F_INDIRECT);
    }
}

impl TxView for PackedTxView<'_> {
    const SINGLE_DESC: bool = true;
    // Buffer id == the slot it was posted at.
    const COMPLETES_BY_ID: bool = true;

    #[inline(always)]
    fn used_end(&self, seen: u32, n: u32) -> u32 {
        // Used descriptors are written in ring order from the device's used position,
        // which starts where the driver's first one did.
        let mut k = 0;
        while k < n && self.0.is_used(seen.wrapping_add(k)) {
            k += 1;
        }
        seen.wrapping_add(k)
    }

    #[inline(always)]
    fn used_in_order(&self, seen: u32, n: u32, slot: u32) -> (u32, bool) {
        let run = self.0.used_ids_in_order(seen, n, slot);
        (run, run != n && self.0.is_used(seen.wrapping_add(run)))
    }

    #[inline(always)]
    fn used_id(&self, idx: u32) -> u32 {
        self.0.used_elem(idx).0
    }

    #[inline(always)]
    fn descs_needed(&self, _pkt: &PacketBuf) -> u32 {
        1
    }

    /// Unchained, and no TX offload asked: a packet that asks goes to the checked loop,
    /// where `sendable` checks it.
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

    #[inline(always)]
    fn encap(&self, pidx: u32, pkt: &mut PacketBuf, _report: bool) -> u32 {
        // Every used descriptor is reported: `report` has nothing to add.
        if pkt.is_chained() {
            self.post_chain(pidx, pkt);
        } else {
            // The header with the packet's offload request, if any.
            let (iova, len) = super::write_tx_hdr(pkt, self.2);
            self.0.post(pidx, iova, len, 0);
        }
        1
    }

    #[inline(always)]
    fn encap_single(&self, pidx: u32, pkt: &mut PacketBuf) {
        // The header (no request: `single` said so) in front of the data, then one
        // descriptor over both.
        let (iova, len) = super::write_plain_tx_hdr(pkt, self.2);
        self.0.post(pidx, iova, len, 0);
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
    fn is_done(&self, idx: u32) -> bool {
        // Not used by the engine (COMPLETES_BY_ID); in ring order, whatever the ids.
        self.0.is_used(idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::mempool::{host_pool, MempoolCache};
    use crate::platform::dma::identity_dma;
    use crate::ring::{PacketBatch, RxQueue, TxQueue};
    use crate::virtio::test_util::{region, Bells, DoorbellLog, RX_BELL, TX_BELL};
    use crate::virtio::{tx_burst, IndirectTables, HDR_LEN, MAX_FRAME, RX_QUEUE, TX_QUEUE};
    use proptest::prelude::*;
    use tenge_descriptors::virtio::{
        PvirtqEventSuppress, RING_EVENT_FLAGS_DESC, RING_EVENT_FLAGS_ENABLE, VIRTQ_DESC_F_AVAIL,
        VIRTQ_DESC_F_USED,
    };
    use tenge_descriptors::virtio_net::VirtioNetHdr;
    use zerocopy::IntoBytes;

    fn rx_queue(
        mem: &Arc<DmaRegion>,
        bells: &Arc<Bells>,
        size: u16,
        event_idx: bool,
        thresh: u32,
    ) -> RxQueue<PackedRx<Bells>> {
        RxQueue::new(
            PackedRx::new(
                PackedRing::new(mem.clone(), 0, size),
                Doorbell::new(bells.clone(), RX_BELL, RX_QUEUE, event_idx),
                RxHdrMode {
                    hash: false,
                    mergeable: true,
                    offloads: false,
                    leave_partial: false,
                },
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
    ) -> TxQueue<PackedTx<Bells>> {
        TxQueue::new(
            PackedTx::new(
                PackedRing::new(mem.clone(), 1 << 15, size),
                Doorbell::new(bells.clone(), TX_BELL, TX_QUEUE, event_idx),
                TxSettings::default(),
            ),
            rs,
            MAX_FRAME,
        )
    }

    /// The device side of a packed ring as QEMU's virtio-net plays it: takes available
    /// descriptors in ring order with its own wrap counter, writes each back used in place
    /// (in order: used position == avail position), flags last; while it works it says
    /// DISABLE in the device event area, and when it finds the ring empty it asks to hear
    /// about the next descriptor (EVENT_IDX: DESC with its slot and wrap) or about every
    /// one (ENABLE).
    struct Dev {
        /// Free-running position of the next descriptor to take.
        next: u32,
        event_idx: bool,
    }

    impl Dev {
        fn new(event_idx: bool) -> Self {
            Dev { next: 0, event_idx }
        }

        fn arm(&self, ring: &PackedRing) {
            if self.event_idx {
                let mask = u32::from(ring.size()) - 1;
                ring.device_set_event(
                    PvirtqEventSuppress::pack_off_wrap(
                        (self.next & mask) as u16,
                        ring.wrap(self.next),
                    ),
                    RING_EVENT_FLAGS_DESC,
                );
            } else {
                ring.device_set_event(0, RING_EVENT_FLAGS_ENABLE);
            }
        }

        /// The available descriptor at the device's position, if any.
        fn avail(&self, ring: &PackedRing) -> Option<PvirtqDesc> {
            let d = ring.descs().read(self.next);
            let f = d.flags.get();
            let wrap = ring.wrap(self.next);
            let avail =
                (f & VIRTQ_DESC_F_AVAIL != 0) == wrap && (f & VIRTQ_DESC_F_USED != 0) != wrap;
            avail.then_some(d)
        }

        fn push_used(&mut self, ring: &PackedRing, id: u16, len: u32, write: bool) {
            let mut flags = if write { VIRTQ_DESC_F_WRITE } else { 0 };
            if ring.wrap(self.next) {
                flags |= VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED;
            }
            ring.device_write(self.next, id, len, flags);
            self.next = self.next.wrapping_add(1);
        }

        /// Receives `frame` into the next available buffer; false if there is none.
        fn receive(&mut self, ring: &PackedRing, frame: &[u8]) -> bool {
            let Some(d) = self.avail(ring) else {
                self.arm(ring);
                return false;
            };
            ring.device_set_event(0, RING_EVENT_FLAGS_DISABLE);
            assert_eq!(
                d.flags.get() & !(VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED),
                VIRTQ_DESC_F_WRITE,
                "RX buffers are device-writable, unchained"
            );
            let mask = u32::from(ring.size()) - 1;
            assert_eq!(u32::from(d.id.get()), self.next & mask, "id == slot");
            assert!(d.len.get() as usize >= HDR_LEN + frame.len());
            let hdr = VirtioNetHdr {
                num_buffers: 1.into(),
                ..VirtioNetHdr::default()
            };
            identity_dma::write(d.addr.get(), hdr.as_bytes());
            identity_dma::write(d.addr.get() + HDR_LEN as u64, frame);
            self.push_used(ring, d.id.get(), (HDR_LEN + frame.len()) as u32, true);
            true
        }

        /// Transmits everything available; returns the frames without their headers.
        fn transmit(&mut self, ring: &PackedRing) -> Vec<Vec<u8>> {
            let mut wire = Vec::new();
            if self.avail(ring).is_some() {
                ring.device_set_event(0, RING_EVENT_FLAGS_DISABLE);
            }
            while let Some(d) = self.avail(ring) {
                let flags = d.flags.get() & !(VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED);
                let bytes = if flags == VIRTQ_DESC_F_INDIRECT {
                    // A table of descriptors in sequence, as many as its length holds
                    // (§2.8.19); only the address and length of each matter.
                    let table = identity_dma::read(d.addr.get(), d.len.get() as usize);
                    assert_eq!(table.len() % 16, 0);
                    table
                        .chunks(16)
                        .flat_map(|e| {
                            let addr = u64::from_le_bytes(e[..8].try_into().unwrap());
                            let len = u32::from_le_bytes(e[8..12].try_into().unwrap());
                            let flags = u16::from_le_bytes(e[14..16].try_into().unwrap());
                            assert_eq!(flags, 0, "device-readable, no NEXT");
                            identity_dma::read(addr, len as usize)
                        })
                        .collect()
                } else {
                    assert_eq!(flags, 0, "TX buffers are device-readable, unchained");
                    identity_dma::read(d.addr.get(), d.len.get() as usize)
                };
                assert_eq!(&bytes[..HDR_LEN], &[0u8; HDR_LEN], "zero virtio_net_hdr");
                wire.push(bytes[HDR_LEN..].to_vec());
                self.push_used(ring, d.id.get(), 0, false);
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

    fn batch_of(cache: &mut MempoolCache, seqs: std::ops::Range<u32>, len: usize) -> PacketBatch {
        let mut b = PacketBatch::new(64);
        for s in seqs {
            let mut p = cache.alloc().unwrap();
            assert!(p.copy_from(&frame(s, len)));
            b.push(p).unwrap();
        }
        b
    }

    #[test]
    fn a_new_ring_has_nothing_available_and_asks_for_no_interrupts() {
        let mem = region();
        let ring = PackedRing::new(mem.clone(), 0, 8);
        assert_eq!(ring.driver_event().event_flags(), RING_EVENT_FLAGS_DISABLE);
        let (d, drv, dev) = ring.iovas();
        assert_eq!((drv - d, dev - d), (128, 132));
        assert!(Dev::new(true).avail(&ring).is_none());
        assert!(ring.wrap(0) && ring.wrap(7) && !ring.wrap(8) && ring.wrap(16));
        assert!(!ring.wrap(u32::MAX), "2^32 is an even number of laps");
    }

    #[test]
    fn rx_irq_armed_for_the_nth_frame_fires_at_that_frame_only_across_the_wrap() {
        let mem = region();
        let bells = Arc::new(Bells::default());
        let pool = host_pool(64).unwrap();
        let mut cache = pool.cache(16);
        let mut rxq = rx_queue(&mem, &bells, 8, true, 1);
        let mut dev = Dev::new(true);
        rxq.fill(&mut cache);
        let mut out = PacketBatch::new(32);
        let mut seq = 0;
        // Arm for the 4th frame from the driver's position, five times: the position runs
        // over the 8-slot ring's wrap, so the event's wrap bit flips.
        for round in 0..5 {
            let at = rxq.next_index().wrapping_add(3);
            rxq.ops_mut().arm_irq(Some(at));
            let event = rxq.ops().ring().driver_event();
            assert_eq!(event.event_flags(), RING_EVENT_FLAGS_DESC);
            let mut fired = Vec::new();
            for k in 1..=4u16 {
                let ring = rxq.ops().ring();
                assert!(dev.receive(ring, &frame(seq, 64)));
                seq += 1;
                // The device's test (virtio 1.2 §2.8.22) over the one descriptor it used,
                // with its used wrap counter after it.
                if pvirtq_need_event(event, (dev.next & 7) as u16, ring.wrap(dev.next), 1, 8) {
                    fired.push(k);
                }
            }
            assert_eq!(
                fired,
                vec![4],
                "round {round}: only the 4th frame interrupts"
            );
            rxq.ops_mut().disarm_irq();
            assert_eq!(rxq.rx_burst(&mut cache, &mut out), 4);
            for p in out.drain() {
                cache.free(p);
            }
        }
        rxq.ops_mut().arm_irq(None);
        assert_eq!(
            rxq.ops().ring().driver_event().event_flags(),
            RING_EVENT_FLAGS_ENABLE
        );
        rxq.release(&mut cache);
    }

    /// As the split ring's test of the same name: one scenario for both layouts.
    #[test]
    fn a_held_rx_doorbell_the_device_no_longer_needs_is_not_written() {
        for event_idx in [true, false] {
            let mem = region();
            let bells = Arc::new(Bells::default());
            let pool = host_pool(64).unwrap();
            let mut cache = pool.cache(16);
            let mut rxq = rx_queue(&mem, &bells, 8, event_idx, 1);
            let mut dev = Dev::new(event_idx);
            dev.arm(rxq.ops().ring());
            crate::virtio::tests::held_rx_doorbell_scenario(
                &mut rxq,
                &mut cache,
                || bells.take(),
                |ops, f| dev.receive(ops.ring(), f),
                |q| q.ops_mut().arm_irq(None),
                (RX_BELL, RX_QUEUE),
                event_idx,
            );
        }
    }

    #[test]
    fn rx_frames_arrive_byte_exact_and_refills_kick_when_the_device_asks() {
        for event_idx in [true, false] {
            let mem = region();
            let bells = Arc::new(Bells::default());
            let pool = host_pool(64).unwrap();
            let mut cache = pool.cache(16);
            let mut rxq = rx_queue(&mem, &bells, 8, event_idx, 1);
            let mut dev = Dev::new(event_idx);
            dev.arm(rxq.ops().ring());
            assert_eq!(rxq.fill(&mut cache), 7, "one slot stays empty");
            assert_eq!(bells.take(), vec![(RX_BELL, RX_QUEUE)], "first fill kicks");
            let ring = rxq.ops().ring();
            let d = ring.descs().read(3);
            assert_eq!(d.len.get() as usize, 2048 + HDR_LEN);
            assert_eq!(d.id.get(), 3);
            assert_eq!(d.flags.get(), VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_AVAIL);
            assert_eq!(ring.descs().read(7).flags.get(), 0, "slot 7 not posted");
            let sizes = [60usize, 1514, 100];
            for (i, &n) in sizes.iter().enumerate() {
                assert!(dev.receive(ring, &frame(i as u32, n)));
            }
            let mut out = PacketBatch::new(32);
            assert_eq!(rxq.rx_burst(&mut cache, &mut out), 3);
            for (i, &n) in sizes.iter().enumerate() {
                let p = out.pop().unwrap();
                assert_eq!(p.data(), frame(i as u32, n).as_slice());
                cache.free(p);
            }
            // The device is still working (DISABLE): the refill needs no doorbell. Slot 7
            // and then slots 0, 1 of the second lap, with the flipped wrap counter.
            assert!(
                bells.take().is_empty(),
                "event_idx {event_idx}: no kick needed"
            );
            let ring = rxq.ops().ring();
            assert_eq!(
                ring.descs().read(0).flags.get(),
                VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_USED,
                "second lap: AVAIL 0, USED 1"
            );
            // Drain until the device finds the ring empty and asks for a kick.
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
            for (i, p) in out.drain().enumerate() {
                assert_eq!(p.data(), frame(100 + i as u32, 64).as_slice());
                cache.free(p);
            }
            let s = *rxq.stats();
            assert_eq!((s.packets, s.bad_slot, s.bad_len), (10, 0, 0));
            assert_eq!(rxq.ops().bell().notifies(), 2);
        }
    }

    #[test]
    fn rx_bad_used_descriptors_are_counted_never_trusted() {
        let mem = region();
        let bells = Arc::new(Bells::default());
        let pool = host_pool(64).unwrap();
        let mut cache = pool.cache(16);
        let mut rxq = rx_queue(&mem, &bells, 8, true, 1);
        rxq.fill(&mut cache);
        let ring = rxq.ops().ring();
        let used = VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED;
        let l = (HDR_LEN + 60) as u32;
        // A one-buffer header in every posted buffer, as QEMU writes with MRG_RXBUF.
        let one = VirtioNetHdr {
            num_buffers: 1.into(),
            ..VirtioNetHdr::default()
        };
        for i in 0..7 {
            identity_dma::write(ring.descs().read(i).addr.get(), one.as_bytes());
        }
        ring.device_write(0, 0, l, used); // good
        ring.device_write(1, 0, l, used); // id 0 again: already returned
        ring.device_write(2, 8, l, used); // beyond the ring (aliases 0)
        ring.device_write(3, u16::MAX, 64, used); // far beyond
        ring.device_write(4, 1, 5, used); // shorter than the header
        ring.device_write(5, 2, HDR_LEN as u32, used); // a header and no frame
        ring.device_write(6, 3, 5000, used); // longer than the buffer
        ring.device_write(7, 4, l, VIRTQ_DESC_F_USED); // wrong wrap bits: not used
        let mut out = PacketBatch::new(32);
        assert_eq!(rxq.rx_burst(&mut cache, &mut out), 1);
        let s = *rxq.stats();
        assert_eq!((s.packets, s.bad_slot, s.bad_len), (1, 3, 3));
        out.free_into(&mut cache);
        rxq.release(&mut cache);
        drop(cache);
        assert_eq!(pool.free_count(), 64, "every buffer came home once");
    }

    /// A packed-ring device that holds TX buffers and uses them in any order: it takes
    /// available descriptors in ring order (`avail`) and writes used descriptors in ring
    /// order from its own used position (`used`), each naming the buffer id it is done with.
    #[derive(Default)]
    struct OooDev {
        avail: u32,
        used: u32,
    }

    impl OooDev {
        /// Takes every available descriptor: (buffer id, address, length) in ring order.
        fn take_all(&mut self, ring: &PackedRing) -> Vec<(u16, u64, u32)> {
            let mut taken = Vec::new();
            loop {
                let d = ring.descs().read(self.avail);
                let f = d.flags.get();
                let wrap = ring.wrap(self.avail);
                if (f & VIRTQ_DESC_F_AVAIL != 0) != wrap || (f & VIRTQ_DESC_F_USED != 0) == wrap {
                    return taken;
                }
                taken.push((d.id.get(), d.addr.get(), d.len.get()));
                self.avail = self.avail.wrapping_add(1);
            }
        }

        /// Writes the next used descriptor, naming buffer `id`.
        fn complete(&mut self, ring: &PackedRing, id: u16) {
            let flags = if ring.wrap(self.used) {
                VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED
            } else {
                0
            };
            ring.device_write(self.used, id, 0, flags);
            self.used = self.used.wrapping_add(1);
        }
    }

    /// The packed ring's TX completes by buffer id too (virtio 1.2 §2.8.21: without
    /// VIRTIO_F_IN_ORDER the device may use buffers in any order): a buffer the device holds
    /// is never freed, its id never posted again, while later ones come back; a used id
    /// naming a slot with no buffer (one already returned) is counted, not trusted.
    /// With INDIRECT_DESC a chain of 1 to 16 segments takes one ring descriptor (INDIRECT)
    /// pointing at its slot's table of segments in sequence; the device model reads each
    /// frame back whole across the ring's wrap; every segment returns to the pool; 17
    /// segments are dropped and counted.
    #[test]
    fn tx_chains_go_through_indirect_tables() {
        let mem = region();
        let bells = Arc::new(Bells::default());
        let pool = host_pool(256).unwrap();
        let mut cache = pool.cache(0);
        let mut txq = TxQueue::new(
            PackedTx::new(
                PackedRing::new(mem.clone(), 1 << 15, 8),
                Doorbell::new(bells.clone(), TX_BELL, TX_QUEUE, true),
                TxSettings::default().with_indirect(IndirectTables::new(mem.clone(), 1 << 14, 8)),
            ),
            2,
            MAX_FRAME,
        );
        let mut dev = Dev::new(true);
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
        let sizes = [60, 100, 600, 1514, 1514, 1000, 64];
        let segs = [1, 2, 3, 5, 8, 16, 4];
        for round in 0..3u32 {
            let mut b = PacketBatch::new(8);
            for (k, (&size, &n)) in sizes.iter().zip(&segs).enumerate() {
                b.push(chain(&mut cache, &frame(round * 10 + k as u32, size), n))
                    .unwrap();
            }
            assert_eq!(tx_burst(&mut txq, &mut cache, &mut b), 7, "round {round}");
            let wire = dev.transmit(txq.ops().ring());
            assert_eq!(wire.len(), 7);
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
    }

    #[test]
    fn tx_buffers_come_back_by_used_id_out_of_order() {
        let mem = region();
        let bells = Arc::new(Bells::default());
        let pool = host_pool(64).unwrap();
        let mut cache = pool.cache(16);
        let mut txq = tx_queue(&mem, &bells, 8, true, 2);
        let mut dev = OooDev::default();
        let mut b = batch_of(&mut cache, 0..7, 60);
        assert_eq!(tx_burst(&mut txq, &mut cache, &mut b), 7);
        let taken = dev.take_all(txq.ops().ring());
        assert_eq!(taken.len(), 7);
        let (held_id, held_addr, held_len) = taken[0];
        let held_bytes = identity_dma::read(held_addr, held_len as usize);
        // Used in reverse: 6..2, then buffer 1 named as 6 again (already returned); buffer 0
        // stays held.
        for &(id, _, _) in taken[2..].iter().rev() {
            dev.complete(txq.ops().ring(), id);
        }
        dev.complete(txq.ops().ring(), taken[6].0);
        let mut more = batch_of(&mut cache, 7..14, 60);
        assert_eq!(
            tx_burst(&mut txq, &mut cache, &mut more),
            0,
            "buffer 0 is held: the ring has no room"
        );
        let s = *txq.stats();
        assert_eq!((s.completed, s.bad_completion), (5, 1));
        assert_eq!(txq.in_flight(), 7);
        let mut grabbed = Vec::new();
        while let Some(mut p) = cache.alloc() {
            p.set_len(p.capacity().min(2048));
            p.data_mut().fill(0xee);
            grabbed.push(p);
        }
        assert_eq!(
            identity_dma::read(held_addr, held_len as usize),
            held_bytes,
            "a held buffer was reused"
        );
        for p in grabbed {
            cache.free(p);
        }
        // Buffer 0 comes back: the ring opens up to slot 1 (its used entry was garbage).
        dev.complete(txq.ops().ring(), held_id);
        assert_eq!(tx_burst(&mut txq, &mut cache, &mut more), 1);
        assert_eq!(txq.stats().completed, 6);
        let taken = dev.take_all(txq.ops().ring());
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].0, 7, "a new buffer id, not a held one");
        assert_eq!(
            &identity_dma::read(taken[0].1, taken[0].2 as usize)[HDR_LEN..],
            frame(7, 60).as_slice()
        );
        dev.complete(txq.ops().ring(), 7);
        assert_eq!(txq.ops().pending(), 0);
        assert_eq!(txq.reclaim_all(&mut cache), 7);
        assert_eq!(txq.in_flight(), 0);
        // Several laps (wrap counters flip), each burst used in reverse.
        let mut seq = 8;
        for _ in 0..20 {
            let mut b = batch_of(&mut cache, seq..seq + 5, 60);
            assert_eq!(tx_burst(&mut txq, &mut cache, &mut b), 5);
            let taken = dev.take_all(txq.ops().ring());
            assert_eq!(taken.len(), 5);
            for (i, &(_, addr, len)) in taken.iter().enumerate() {
                let bytes = identity_dma::read(addr, len as usize);
                assert_eq!(&bytes[HDR_LEN..], frame(seq + i as u32, 60).as_slice());
            }
            for &(id, _, _) in taken.iter().rev() {
                dev.complete(txq.ops().ring(), id);
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

    #[test]
    fn tx_prepends_the_header_and_notifies_once_per_burst_when_asked() {
        for event_idx in [true, false] {
            let mem = region();
            let bells = Arc::new(Bells::default());
            let pool = host_pool(64).unwrap();
            let mut cache = pool.cache(16);
            let mut txq = tx_queue(&mem, &bells, 8, event_idx, 2);
            let mut dev = Dev::new(event_idx);
            dev.arm(txq.ops().ring());
            let mut b = batch_of(&mut cache, 0..10, 60);
            assert_eq!(tx_burst(&mut txq, &mut cache, &mut b), 7);
            assert_eq!(bells.take(), vec![(TX_BELL, TX_QUEUE)], "one doorbell");
            assert_eq!(b.len(), 3);
            for (i, p) in b.iter().enumerate() {
                assert_eq!(p.data(), frame(7 + i as u32, 60).as_slice());
            }
            assert_eq!(txq.ops().pending(), 7);
            let wire = dev.transmit(txq.ops().ring());
            assert_eq!(wire.len(), 7);
            for (i, f) in wire.iter().enumerate() {
                assert_eq!(f, &frame(i as u32, 60));
            }
            assert_eq!(txq.ops().pending(), 0);
            // The device asked to hear again: the next burst notifies, once.
            assert_eq!(tx_burst(&mut txq, &mut cache, &mut b), 3);
            assert_eq!(bells.take(), vec![(TX_BELL, TX_QUEUE)]);
            // A burst while the device is still busy needs no doorbell.
            if event_idx {
                // It asked about a slot already published (0, wrap 1): not in the new ones.
                txq.ops().ring().device_set_event(
                    PvirtqEventSuppress::pack_off_wrap(0, true),
                    RING_EVENT_FLAGS_DESC,
                );
            } else {
                txq.ops()
                    .ring()
                    .device_set_event(0, RING_EVENT_FLAGS_DISABLE);
            }
            let mut more = batch_of(&mut cache, 10..11, 1514);
            assert_eq!(tx_burst(&mut txq, &mut cache, &mut more), 1);
            assert!(bells.take().is_empty(), "event_idx {event_idx}: suppressed");
            assert!(txq.stats().completed >= 6);
            let wire = dev.transmit(txq.ops().ring());
            assert_eq!(wire.len(), 4);
            assert_eq!(wire[3], frame(10, 1514));
            let s = *txq.stats();
            assert_eq!(
                (s.packets, s.bytes),
                (11, 10 * 60 + 1514),
                "frame bytes, no header"
            );
        }
    }

    /// QEMU's stale TX event (see `stale_event`): the device asks to hear at a descriptor,
    /// then uses it and more without moving the request. The next publish notifies, though
    /// the descriptor it names lies before the ones just published.
    #[test]
    fn a_request_for_a_descriptor_already_used_is_answered() {
        let mem = region();
        let bells = Arc::new(Bells::default());
        let pool = host_pool(64).unwrap();
        let mut cache = pool.cache(16);
        let mut txq = tx_queue(&mem, &bells, 8, true, 2);
        let dev = Dev::new(true);
        dev.arm(txq.ops().ring());
        let mut b = batch_of(&mut cache, 0..4, 60);
        assert_eq!(tx_burst(&mut txq, &mut cache, &mut b), 4);
        assert_eq!(bells.take().len(), 1);
        // The device sends all four but leaves its request at descriptor 1 (lap 0, wrap
        // counter 1): already used.
        let ring = txq.ops().ring();
        for pos in 0..4 {
            let flags = ring.descs().read(pos).flags.get();
            ring.device_write(pos, pos as u16, 0, flags | VIRTQ_DESC_F_USED);
        }
        ring.device_set_event(
            PvirtqEventSuppress::pack_off_wrap(1, true),
            RING_EVENT_FLAGS_DESC,
        );
        let mut more = batch_of(&mut cache, 4..6, 60);
        assert_eq!(tx_burst(&mut txq, &mut cache, &mut more), 2);
        assert_eq!(
            bells.take(),
            vec![(TX_BELL, TX_QUEUE)],
            "a stale request is answered"
        );
        // A request for a descriptor not yet used (5, published, not sent) stays suppressed
        // while the device has work: no doorbell for the next burst.
        txq.ops().ring().device_set_event(
            PvirtqEventSuppress::pack_off_wrap(5, true),
            RING_EVENT_FLAGS_DESC,
        );
        let mut last = batch_of(&mut cache, 6..7, 60);
        assert_eq!(tx_burst(&mut txq, &mut cache, &mut last), 1);
        assert!(bells.take().is_empty());
    }

    #[test]
    fn wrap_counters_flip_over_many_laps_and_past_two_to_the_sixteen() {
        for (size, event_idx) in [(4u16, true), (8, false), (16, true)] {
            let mem = region();
            let bells = Arc::new(Bells::default());
            let pool = host_pool(64).unwrap();
            let mut cache = pool.cache(16);
            let mut rxq = rx_queue(&mem, &bells, size, event_idx, 2);
            let mut txq = tx_queue(&mem, &bells, size, event_idx, 2);
            let (mut rdev, mut tdev) = (Dev::new(event_idx), Dev::new(event_idx));
            rdev.arm(rxq.ops().ring());
            tdev.arm(txq.ops().ring());
            rxq.fill(&mut cache);
            let (mut rx_seq, mut tx_seq, mut dev_seq, mut wire_seq) = (0u32, 0u32, 0u32, 0u32);
            let mut out = PacketBatch::new(8);
            let mut round = 0u32;
            while rx_seq < 70_000 || wire_seq < 70_000 {
                // Vary how much each side does per round, so the positions drift.
                for _ in 0..(1 + round % 5) {
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
                let n = 1 + round % 7;
                let mut b = batch_of(&mut cache, tx_seq..tx_seq + n, 64);
                tx_seq += tx_burst(&mut txq, &mut cache, &mut b) as u32;
                b.free_into(&mut cache);
                if round % 3 != 1 {
                    for f in tdev.transmit(txq.ops().ring()) {
                        assert_eq!(f, frame(wire_seq, 64));
                        wire_seq += 1;
                    }
                }
                round += 1;
            }
            let s = *rxq.stats();
            assert_eq!((s.bad_slot, s.bad_len, s.no_buf), (0, 0, 0));
            assert!(
                rdev.next >= 70_000 && tdev.next >= 70_000,
                "many laps of {size}"
            );
            // Never stalled: every kick the devices needed came.
            assert!(rxq.ops().bell().notifies() >= 1 && txq.ops().bell().notifies() >= 1);
        }
    }

    #[derive(Clone, Debug)]
    enum Fuzz {
        /// The device writes any id, length and flags into any descriptor.
        Write(u32, u16, u32, u16),
        /// The device writes a used descriptor with any id and length at its position.
        Used(u16, u32),
        /// The driver polls.
        Burst(u8),
        /// The driver sends.
        Send(u8),
        /// The device writes any event suppression state.
        Event(u16, u16),
    }

    fn fuzz_op() -> impl Strategy<Value = Fuzz> {
        prop_oneof![
            (any::<u32>(), any::<u16>(), any::<u32>(), any::<u16>())
                .prop_map(|(p, id, len, f)| Fuzz::Write(p, id, len, f)),
            (0u16..20, 0u32..3000).prop_map(|(id, len)| Fuzz::Used(id, len)),
            (any::<u16>(), any::<u32>()).prop_map(|(id, len)| Fuzz::Used(id, len)),
            (1u8..40).prop_map(Fuzz::Burst),
            (1u8..40).prop_map(Fuzz::Send),
            (any::<u16>(), any::<u16>()).prop_map(|(e, f)| Fuzz::Event(e, f)),
        ]
    }

    proptest! {
        /// Whatever a device writes into the packed rings (ids never posted or beyond the
        /// ring, any length, any flags and wrap bits, any event suppression state): no
        /// panic, every RX completion is a delivered frame or a counted drop, and every
        /// buffer comes home exactly once.
        #[test]
        fn device_writebacks_never_panic_and_lose_no_buffer(
            log2 in 2u32..5,
            event_idx in any::<bool>(),
            ops in proptest::collection::vec(fuzz_op(), 1..150),
        ) {
            let size = 1u16 << log2;
            let mem = region();
            let bells = Arc::new(Bells::default());
            let pool = host_pool(128).unwrap();
            let mut cache = pool.cache(16);
            let mut rxq = rx_queue(&mem, &bells, size, event_idx, 1);
            let mut txq = tx_queue(&mem, &bells, size, event_idx, 1);
            rxq.fill(&mut cache);
            let (mut rdev, mut tdev) = (Dev::new(event_idx), Dev::new(event_idx));
            let mut held = Vec::new();
            for op in ops {
                match op {
                    Fuzz::Write(pos, id, len, f) => {
                        rxq.ops().ring().device_write(pos, id, len, f);
                        txq.ops().ring().device_write(pos, id, len, f);
                    }
                    Fuzz::Used(id, len) => {
                        rdev.push_used(rxq.ops().ring(), id, len, true);
                        tdev.push_used(txq.ops().ring(), id, len, false);
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
                        prop_assert_eq!(rxq.stats().packets - before.packets, got as u64);
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
                        prop_assert!(txq.ops().pending() <= size);
                        for p in b.iter() {
                            prop_assert_eq!(p.len(), 60);
                        }
                        b.free_into(&mut cache);
                    }
                    Fuzz::Event(e, f) => {
                        rxq.ops().ring().device_set_event(e, f);
                        txq.ops().ring().device_set_event(e, f);
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
}
