//! A port's queues as handles an application moves to its own threads: an
//! [`RxQueueHandle`] and a [`TxQueueHandle`] per queue, each with its own mempool cache, so
//! a thread drives its queue with no lock and no atomic per packet. The device is matched
//! once per burst (a small enum), never per packet.
//!
//! The port keeps the control path (link, filters, counters) and what every handle shares
//! (`PortShared`): the software receive filter, each queue's published counters, and
//! where a handle dropped while the device still runs leaves its ring (parked) until the
//! port has stopped the device: buffers a device may still write never return to the pool
//! early.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tenge_firmware_iface::e1000e::irq as e1000e_irq;
use tenge_firmware_iface::igb::irq as igb_irq;

use crate::e1000e::{E1000eRx, E1000eTx};
use crate::igb::{IgbRx, IgbTx};
use crate::offload::gso::GsoStats;
use crate::offload::lro::{Lro, LroStats};
use crate::offload::soft_tx::SoftTx;
use crate::packet::mempool::{Mempool, MempoolCache, PacketBuf, PacketMeta};
use crate::platform::mmio::Bar;
use crate::port::dim::{self, Dim};
use crate::port::irq::{self, IrqDevice, IrqStats, Moderation, QueueIrq, DEFAULT_IDLE_POLLS};
use crate::port::soft_filter::SoftRxFilter;
use crate::ring::{OffloadDrops, PacketBatch, RxQueue, RxStats, TxQueue, TxStats};
use crate::virtio::packed::{PackedRx, PackedTx};
use crate::virtio::{self, VirtioRx, VirtioTx};

/// A queue's counters are published for [`crate::Port::stats`] every this many bursts (and
/// when its handle is dropped): a relaxed store per counter, never per packet.
const PUBLISH_EVERY: u32 = 32;

/// A receive ring of one of the devices, on the one engine.
pub(crate) enum RxRing {
    E1000e(RxQueue<E1000eRx<Bar>>),
    Igb(RxQueue<IgbRx<Bar>>),
    Split(RxQueue<VirtioRx<Bar>>),
    Packed(RxQueue<PackedRx<Bar>>),
}

/// A transmit ring of one of the devices, on the one engine.
pub(crate) enum TxRing {
    E1000e(TxQueue<E1000eTx<Bar>>),
    Igb(TxQueue<IgbTx<Bar>>),
    Split(TxQueue<VirtioTx<Bar>>),
    Packed(TxQueue<PackedTx<Bar>>),
}

impl RxRing {
    /// Whether the device can be asked for an interrupt at the n-th frame (virtio-net
    /// with EVENT_IDX), which frame-count moderation needs.
    fn counts_frames(&self) -> bool {
        match self {
            RxRing::Split(q) => q.ops().bell().event_idx,
            RxRing::Packed(q) => q.ops().bell().event_idx,
            _ => false,
        }
    }

    fn entries(&self) -> u32 {
        match self {
            RxRing::E1000e(q) => q.entries(),
            RxRing::Igb(q) => q.entries(),
            RxRing::Split(q) => q.entries(),
            RxRing::Packed(q) => q.entries(),
        }
    }

    #[inline]
    fn burst(&mut self, cache: &mut MempoolCache, out: &mut PacketBatch) -> usize {
        match self {
            RxRing::E1000e(q) => q.rx_burst(cache, out),
            RxRing::Igb(q) => q.rx_burst(cache, out),
            RxRing::Split(q) => q.rx_burst(cache, out),
            RxRing::Packed(q) => q.rx_burst(cache, out),
        }
    }

    pub(crate) fn fill(&mut self, cache: &mut MempoolCache) -> u32 {
        match self {
            RxRing::E1000e(q) => q.fill(cache),
            RxRing::Igb(q) => q.fill(cache),
            RxRing::Split(q) => q.fill(cache),
            RxRing::Packed(q) => q.fill(cache),
        }
    }

    fn stats(&self) -> &RxStats {
        match self {
            RxRing::E1000e(q) => q.stats(),
            RxRing::Igb(q) => q.stats(),
            RxRing::Split(q) => q.stats(),
            RxRing::Packed(q) => q.stats(),
        }
    }

    fn posted(&self) -> u32 {
        match self {
            RxRing::E1000e(q) => q.posted(),
            RxRing::Igb(q) => q.posted(),
            RxRing::Split(q) => q.posted(),
            RxRing::Packed(q) => q.posted(),
        }
    }

    /// Doorbell writes the device received (virtio suppresses some; e1000e writes each).
    fn notifies(&self) -> u64 {
        match self {
            RxRing::E1000e(q) => q.stats().doorbells,
            RxRing::Igb(q) => q.stats().doorbells,
            RxRing::Split(q) => q.ops().bell().notifies(),
            RxRing::Packed(q) => q.ops().bell().notifies(),
        }
    }

    /// The consumer index: the next descriptor a burst looks at.
    fn next_index(&self) -> u32 {
        match self {
            RxRing::E1000e(q) => q.next_index(),
            RxRing::Igb(q) => q.next_index(),
            RxRing::Split(q) => q.next_index(),
            RxRing::Packed(q) => q.next_index(),
        }
    }

    /// Whether a frame waits for the next burst.
    fn frame_ready(&self) -> bool {
        match self {
            RxRing::E1000e(q) => q.frame_ready(),
            RxRing::Igb(q) => q.frame_ready(),
            RxRing::Split(q) => q.frame_ready(),
            RxRing::Packed(q) => q.frame_ready(),
        }
    }

    /// Arms the queue's interrupt on its device (see [`irq`]), for the `frames`-th frame
    /// from now where the device counts frames (virtio-net with EVENT_IDX: split rings'
    /// `used_event`, packed rings' DESC event).
    fn arm_irq(&mut self, dev: &IrqDevice, frames: u16) {
        match (self, dev) {
            (RxRing::E1000e(_), IrqDevice::E1000e { regs, queue }) => {
                e1000e_irq::arm_rx(&**regs, *queue)
            }
            (RxRing::Igb(_), IrqDevice::Igb { regs, queue }) => igb_irq::arm_rx(&**regs, *queue),
            (RxRing::Split(q), IrqDevice::Virtio) => {
                let next = q.next_index().wrapping_add(u32::from(frames.max(1)) - 1);
                q.ops_mut().arm_irq(next)
            }
            (RxRing::Packed(q), IrqDevice::Virtio) => {
                let at = (frames > 1).then(|| q.next_index().wrapping_add(u32::from(frames) - 1));
                q.ops_mut().arm_irq(at)
            }
            _ => {}
        }
    }

    /// Suppresses the queue's interrupt again.
    fn disarm_irq(&mut self, dev: &IrqDevice) {
        match (self, dev) {
            (RxRing::E1000e(_), IrqDevice::E1000e { regs, queue }) => {
                e1000e_irq::disarm_rx(&**regs, *queue)
            }
            (RxRing::Igb(_), IrqDevice::Igb { regs, queue }) => igb_irq::disarm_rx(&**regs, *queue),
            (RxRing::Split(q), IrqDevice::Virtio) => q.ops_mut().disarm_irq(),
            (RxRing::Packed(q), IrqDevice::Virtio) => q.ops_mut().disarm_irq(),
            _ => {}
        }
    }

    fn release(&mut self, cache: &mut MempoolCache) {
        match self {
            RxRing::E1000e(q) => q.release(cache),
            RxRing::Igb(q) => q.release(cache),
            RxRing::Split(q) => q.release(cache),
            RxRing::Packed(q) => q.release(cache),
        }
    }
}

impl TxRing {
    #[inline]
    fn burst(&mut self, cache: &mut MempoolCache, pkts: &mut PacketBatch) -> usize {
        match self {
            TxRing::E1000e(q) => q.tx_burst(cache, pkts),
            TxRing::Igb(q) => q.tx_burst(cache, pkts),
            TxRing::Split(q) => virtio::tx_burst(q, cache, pkts),
            TxRing::Packed(q) => virtio::tx_burst(q, cache, pkts),
        }
    }

    fn reclaim(&mut self, cache: &mut MempoolCache) -> u32 {
        match self {
            TxRing::E1000e(q) => q.reclaim(cache),
            TxRing::Igb(q) => q.reclaim(cache),
            TxRing::Split(q) => q.reclaim(cache),
            TxRing::Packed(q) => q.reclaim(cache),
        }
    }

    /// Whether the device is done with every descriptor handed to it.
    fn idle(&self) -> bool {
        match self {
            TxRing::E1000e(q) => q.ops().idle(),
            TxRing::Igb(q) => q.ops().idle(),
            TxRing::Split(q) => q.ops().pending() == 0,
            TxRing::Packed(q) => q.ops().pending() == 0,
        }
    }

    fn reclaim_all(&mut self, cache: &mut MempoolCache) -> u32 {
        match self {
            TxRing::E1000e(q) => q.reclaim_all(cache),
            TxRing::Igb(q) => q.reclaim_all(cache),
            TxRing::Split(q) => q.reclaim_all(cache),
            TxRing::Packed(q) => q.reclaim_all(cache),
        }
    }

    /// The counters (frame bytes: virtio's header lives in the headroom, outside them).
    /// The software offloads the device needs in front of it (virtio-net without CSUM or
    /// HOST_TSO); none for e1000e and igb, which serve every request.
    fn soft_offloads(&self) -> Option<Box<SoftTx>> {
        let dev = match self {
            TxRing::E1000e(_) | TxRing::Igb(_) => return None,
            TxRing::Split(q) => q.ops().settings().offloads(),
            TxRing::Packed(q) => q.ops().settings().offloads(),
        };
        SoftTx::for_device(dev, crate::virtio::MAX_FRAME).map(Box::new)
    }

    fn stats(&self) -> TxStats {
        match self {
            TxRing::E1000e(q) => *q.stats(),
            TxRing::Igb(q) => *q.stats(),
            TxRing::Split(q) => *q.stats(),
            TxRing::Packed(q) => *q.stats(),
        }
    }

    fn notifies(&self) -> u64 {
        match self {
            TxRing::E1000e(q) => q.stats().doorbells,
            TxRing::Igb(q) => q.stats().doorbells,
            TxRing::Split(q) => q.ops().bell().notifies(),
            TxRing::Packed(q) => q.ops().bell().notifies(),
        }
    }

    fn release(&mut self, cache: &mut MempoolCache) {
        match self {
            TxRing::E1000e(q) => q.release(cache),
            TxRing::Igb(q) => q.release(cache),
            TxRing::Split(q) => q.release(cache),
            TxRing::Packed(q) => q.release(cache),
        }
    }
}

/// Counters a queue publishes for the port, one relaxed atomic each (written by the queue's
/// thread only, read by the control path: a reader may see one burst's counters half
/// updated, each counter itself whole).
struct Published<const N: usize = 12>([AtomicU64; N]);

impl<const N: usize> Default for Published<N> {
    fn default() -> Self {
        Published(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl<const N: usize> Published<N> {
    fn store(&self, values: [u64; N]) {
        for (a, v) in self.0.iter().zip(values) {
            a.store(v, Ordering::Relaxed);
        }
    }

    fn load(&self) -> [u64; N] {
        std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed))
    }
}

/// Counters a TX queue publishes: [`TxStats`]' eight and its ten offload refusal reasons.
const TX_FIELDS: usize = 18;

fn rx_fields(s: &RxStats) -> [u64; 12] {
    [
        s.packets,
        s.bytes,
        s.no_buf,
        s.bad_len,
        s.errors,
        s.bad_slot,
        s.multi_buffer,
        s.chains,
        s.ring_dry,
        s.filtered,
        s.doorbells,
        0,
    ]
}

fn rx_from(v: [u64; 12]) -> RxStats {
    RxStats {
        packets: v[0],
        bytes: v[1],
        no_buf: v[2],
        bad_len: v[3],
        errors: v[4],
        bad_slot: v[5],
        multi_buffer: v[6],
        chains: v[7],
        ring_dry: v[8],
        filtered: v[9],
        doorbells: v[10],
    }
}

fn tx_fields(s: &TxStats) -> [u64; TX_FIELDS] {
    let r = &s.bad_offload_reasons;
    [
        s.packets,
        s.bytes,
        s.ring_full,
        s.bad_packet,
        s.doorbells,
        s.completed,
        s.bad_completion,
        s.bad_offload,
        r.l3_type,
        r.header_length,
        r.too_short,
        r.protocol,
        r.zero_mss,
        r.tso_not_tcp,
        r.too_long,
        r.vlan_room,
        r.unsupported,
        r.no_buffers,
    ]
}

fn tx_from(v: [u64; TX_FIELDS]) -> TxStats {
    TxStats {
        packets: v[0],
        bytes: v[1],
        ring_full: v[2],
        bad_packet: v[3],
        doorbells: v[4],
        completed: v[5],
        bad_completion: v[6],
        bad_offload: v[7],
        bad_offload_reasons: OffloadDrops {
            l3_type: v[8],
            header_length: v[9],
            too_short: v[10],
            protocol: v[11],
            zero_mss: v[12],
            tso_not_tcp: v[13],
            too_long: v[14],
            vlan_room: v[15],
            unsupported: v[16],
            no_buffers: v[17],
        },
    }
}

/// What a stopped device's rings still hold, parked by handles dropped before the port.
#[derive(Default)]
struct Parked {
    /// The port has stopped the device: a handle dropped now releases its buffers itself.
    stopped: bool,
    rx: Vec<(RxRing, MempoolCache)>,
    tx: Vec<(TxRing, MempoolCache)>,
}

/// What a port and its queue handles share.
pub(crate) struct PortShared {
    /// Bumped on every change of `filter`; a handle compares it once per burst.
    filter_gen: AtomicU64,
    filter: RwLock<Option<SoftRxFilter>>,
    rx_counters: Box<[Published]>,
    tx_counters: Box<[Published<TX_FIELDS>]>,
    irq_counters: Box<[Published]>,
    parked: Mutex<Parked>,
    /// The device is being removed: the handles stop touching it.
    pub(crate) removed: std::sync::atomic::AtomicBool,
}

impl PortShared {
    pub(crate) fn new(queues: usize, filter: Option<SoftRxFilter>) -> Arc<Self> {
        Arc::new(PortShared {
            filter_gen: AtomicU64::new(0),
            filter: RwLock::new(filter),
            rx_counters: (0..queues).map(|_| Published::default()).collect(),
            tx_counters: (0..queues).map(|_| Published::default()).collect(),
            irq_counters: (0..queues).map(|_| Published::default()).collect(),
            parked: Mutex::new(Parked::default()),
            removed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Sets the software receive filter every RX handle applies from its next burst on.
    pub(crate) fn set_filter(&self, filter: Option<SoftRxFilter>) {
        *self.filter.write().unwrap_or_else(PoisonError::into_inner) = filter;
        self.filter_gen.fetch_add(1, Ordering::Release);
    }

    fn filter(&self) -> (u64, Option<SoftRxFilter>) {
        let g = self.filter_gen.load(Ordering::Acquire);
        let f = self
            .filter
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        (g, f)
    }

    /// The counters queue `i` last published.
    pub(crate) fn published(&self, i: usize) -> (RxStats, TxStats) {
        (
            rx_from(self.rx_counters[i].load()),
            tx_from(self.tx_counters[i].load()),
        )
    }

    /// The interrupt counters RX queue `i` last published.
    pub(crate) fn published_irq(&self, i: usize) -> IrqStats {
        IrqStats::from_fields(self.irq_counters[i].load())
    }

    /// After the device is stopped: releases what dropped handles parked, and makes later
    /// drops release their own.
    pub(crate) fn device_stopped(&self) {
        let mut p = self.parked.lock().unwrap_or_else(PoisonError::into_inner);
        p.stopped = true;
        for (mut ring, mut cache) in p.rx.drain(..) {
            ring.release(&mut cache);
        }
        for (mut ring, mut cache) in p.tx.drain(..) {
            ring.release(&mut cache);
        }
    }
}

/// What an ingress filter ([`RxQueueHandle::set_ingress_filter`]) decides for a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IngressVerdict {
    /// Deliver it.
    Pass,
    /// Recycle its buffer at once: the burst never returns it.
    Drop,
    /// Deliver it with this mark in its metadata (`PacketMeta::mark`; 0 is no mark).
    Mark(u8),
}

/// A per-queue early-drop hook: sees each received frame before the burst returns it.
pub type IngressFilter = Box<dyn FnMut(&PacketBuf) -> IngressVerdict + Send>;

/// What a queue's ingress filter decided, per verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IngressStats {
    /// Frames passed.
    pub passed: u64,
    /// Frames dropped (their buffers straight back to the ring's cache).
    pub dropped: u64,
    /// Frames passed with a mark.
    pub marked: u64,
}

/// A port's receive queue, to drive from one thread (it is `Send`): bursts, its own
/// mempool cache and counters. Obtained from [`crate::Port::take_queues`].
pub struct RxQueueHandle {
    index: u16,
    /// Always `Some` until dropped (taken out to park it).
    ring: Option<RxRing>,
    cache: MempoolCache,
    filter: Option<SoftRxFilter>,
    filter_gen: u64,
    /// Frames the software filter dropped.
    filtered_total: u64,
    /// Software LRO, when on (see [`RxQueueHandle::set_lro`]).
    lro: Option<Box<Lro>>,
    bursts: u32,
    shared: Arc<PortShared>,
    irq: QueueIrq,
    /// Empty polls before [`RxQueueHandle::rx_burst_wait`] sleeps.
    idle_polls: u32,
    /// Empty polls in a row so far.
    empty_polls: u32,
    irq_stats: IrqStats,
    moderation: Moderation,
    /// Adaptive moderation, when on.
    dim: Option<Box<Dim>>,
    /// The application's early-drop hook, and what it decided.
    ingress: Option<IngressFilter>,
    ingress_stats: IngressStats,
    /// The consumer index when the interrupt was armed (None: not armed).
    armed_at: Option<u32>,
}

impl AsFd for RxQueueHandle {
    /// The eventfd the queue's interrupt vector signals (one that never fires if the port
    /// has no interrupts): wait on it, after [`RxQueueHandle::arm_interrupt`], one more
    /// poll and [`RxQueueHandle::prepare_sleep`], in the application's own `poll`/`epoll`.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.irq.fd.as_fd()
    }
}

impl RxQueueHandle {
    pub(crate) fn new(
        index: u16,
        ring: RxRing,
        cache: MempoolCache,
        shared: Arc<PortShared>,
        irq: QueueIrq,
    ) -> Self {
        let (filter_gen, filter) = shared.filter();
        RxQueueHandle {
            index,
            ring: Some(ring),
            cache,
            filter,
            filter_gen,
            filtered_total: 0,
            lro: None,
            bursts: 0,
            shared,
            irq,
            idle_polls: DEFAULT_IDLE_POLLS,
            empty_polls: 0,
            irq_stats: IrqStats::default(),
            moderation: Moderation::default(),
            dim: None,
            ingress: None,
            ingress_stats: IngressStats::default(),
            armed_at: None,
        }
    }

    /// Sets the queue's interrupt moderation (see [`Moderation`] for which device honours
    /// what) and turns adaptive moderation off. Returns the moderation in force: the
    /// interval only where the device has one, the frame count only on virtio-net.
    pub fn set_moderation(&mut self, m: Moderation) -> Moderation {
        self.dim = None;
        self.apply_moderation(m)
    }

    fn apply_moderation(&mut self, m: Moderation) -> Moderation {
        let interval = self.irq.device.set_interval(m.usecs);
        let virtio = matches!(self.irq.device, IrqDevice::Virtio);
        // At most half the ring: a sleeping queue has refilled at least three quarters
        // (RxQueue's refill threshold), so the frame that interrupts always has a buffer.
        let most = self.ring.as_ref().map_or(1, |r| {
            (r.entries() / 2).clamp(1, u32::from(u16::MAX)) as u16
        });
        self.moderation = Moderation {
            usecs: if interval { m.usecs } else { 0 },
            frames: if virtio { m.frames.clamp(1, most) } else { 1 },
        };
        self.irq_stats.moderation_us = u64::from(self.moderation.usecs);
        self.moderation
    }

    /// The moderation in force.
    pub fn moderation(&self) -> Moderation {
        self.moderation
    }

    /// Turns adaptive moderation ([`crate::port::dim`]) on or off (off: back to no
    /// moderation). It moves the interval of a device that has one (e1000e, igb), and the
    /// frame count on virtio-net, which has no time-based coalescing on QEMU but counts
    /// frames with EVENT_IDX (the levels as frames at the current rate, at most
    /// [`dim::MAX_FRAMES`]); returns false, and does nothing, on a virtio-net without
    /// EVENT_IDX.
    pub fn set_adaptive(&mut self, on: bool) -> bool {
        let supported = match self.irq.device {
            IrqDevice::E1000e { .. } | IrqDevice::Igb { .. } => true,
            IrqDevice::Virtio => self.ring.as_ref().is_some_and(RxRing::counts_frames),
            _ => false,
        };
        self.dim = None;
        self.apply_moderation(Moderation::default());
        if on && supported {
            self.dim = Some(Box::new(Dim::new(
                std::time::Instant::now(),
                self.dim_sample(),
            )));
        }
        on && supported
    }

    fn dim_sample(&self) -> dim::Sample {
        let s = self.ring.as_ref().map(|r| *r.stats()).unwrap_or_default();
        dim::Sample {
            frames: s.packets,
            bytes: s.bytes,
            wakeups: self.irq_stats.wakeups + self.irq_stats.timeouts,
        }
    }

    /// At a wake-up (`quiet`: the sleep timed out): the adaptive moderation's epoch.
    fn dim_tick(&mut self, quiet: bool) {
        let Some(mut d) = self.dim.take() else {
            return;
        };
        let at = self.dim_sample();
        if let Some(decision) = d.on_wakeup(std::time::Instant::now(), at, quiet) {
            if matches!(self.irq.device, IrqDevice::Virtio) {
                // The frame count follows the rate too, not only the level.
                if d.frames() != self.moderation.frames {
                    self.apply_moderation(Moderation {
                        usecs: 0,
                        frames: d.frames(),
                    });
                }
            } else if decision != dim::DimDecision::Stay {
                self.apply_moderation(Moderation {
                    usecs: d.interval_us(),
                    frames: 1,
                });
            }
            self.irq_stats.epochs = d.epochs;
            self.irq_stats.moderation_ups = d.ups;
            self.irq_stats.moderation_downs = d.downs;
        }
        self.dim = Some(d);
    }

    /// Whether the device is being removed ([`crate::Port::removal_requested`] saw the
    /// kernel's request): bursts then receive and send nothing.
    pub fn device_removed(&self) -> bool {
        self.shared.removed.load(Ordering::Relaxed)
    }

    /// Whether the device interrupts for this queue (the port opened with
    /// `PortConfig::interrupts` and got a vector for it); without, waits end by timeout.
    pub fn has_interrupt(&self) -> bool {
        self.irq.live()
    }

    /// Empty polls in a row before [`RxQueueHandle::rx_burst_wait`] arms the interrupt and
    /// sleeps (default [`DEFAULT_IDLE_POLLS`]; 0 or 1: sleep at the first empty poll).
    pub fn set_idle_polls(&mut self, polls: u32) {
        self.idle_polls = polls;
    }

    /// Arms the queue's interrupt for one wake-up, after dropping any the eventfd holds.
    /// Poll the queue once more after this and sleep (on [`AsFd::as_fd`]) only if that
    /// poll is empty: a frame that arrived before the arming is found by that poll. Returns
    /// whether an interrupt will come at all.
    pub fn arm_interrupt(&mut self) -> bool {
        irq::drain(&self.irq.fd);
        if let Some(ring) = self.ring.as_mut() {
            ring.arm_irq(&self.irq.device, self.moderation.frames);
            self.armed_at = Some(ring.next_index());
        }
        self.irq_stats.arms += 1;
        self.irq.live()
    }

    /// Suppresses the queue's interrupt (it is one-shot anyway: this undoes an arming that
    /// no frame followed).
    pub fn disarm_interrupt(&mut self) {
        self.armed_at = None;
        if let Some(ring) = self.ring.as_mut() {
            ring.disarm_irq(&self.irq.device);
        }
    }

    /// Call right before sleeping on the armed interrupt ([`RxQueueHandle::wait_interrupt`]
    /// does): false if a frame waits, so do not sleep. Bursts after
    /// [`RxQueueHandle::arm_interrupt`] that took frames, even frames that never reached the
    /// caller (dropped by the ingress filter, the software receive filter or a bad
    /// checksum), moved the consumer index past the one the arming named. A device that
    /// suppresses interrupts by index (virtio-net's `used_event`, virtio 1.2 §2.7.10; the
    /// packed ring's descriptor event, §2.8.10) interrupts only when it crosses that index,
    /// which it has then passed already: it would never interrupt, and the sleeper would
    /// wait out its timeout with frames arriving (found under the `flood-vhost` bench: a
    /// server whose filter dropped the flood slept through its own connection for the
    /// 10 s of its socket timer). So the arming is renewed at the index now, then the ring
    /// is looked at once more.
    pub fn prepare_sleep(&mut self) -> bool {
        let (Some(at), Some(ring)) = (self.armed_at, self.ring.as_mut()) else {
            return true;
        };
        if ring.next_index() != at {
            ring.arm_irq(&self.irq.device, self.moderation.frames);
            self.armed_at = Some(ring.next_index());
            self.irq_stats.rearms += 1;
        }
        !ring.frame_ready()
    }

    /// Sleeps until the armed interrupt fires or `timeout` passes; true if it fired, or if
    /// a frame already waited ([`RxQueueHandle::prepare_sleep`]: then it does not sleep,
    /// and disarms). Takes the eventfd's count, so the next wait sleeps again.
    pub fn wait_interrupt(&mut self, timeout: Duration) -> bool {
        if !self.prepare_sleep() {
            self.disarm_interrupt();
            self.irq_stats.caught_on_arm += 1;
            return true;
        }
        let fired = irq::wait_readable(self.irq.fd.as_fd(), timeout);
        let n = irq::drain(&self.irq.fd);
        self.irq_stats.interrupts += n;
        fired && n > 0
    }

    /// Hybrid receive: a poll like [`RxQueueHandle::rx_burst`]; once
    /// [`RxQueueHandle::set_idle_polls`] polls in a row found nothing, it arms the queue's
    /// interrupt, polls once more (taking what raced in), and sleeps until the interrupt or
    /// `timeout`, then polls again. Returns the frames received (0 after a timeout). Call
    /// it in a loop: a queue that receives keeps polling and is never interrupted.
    pub fn rx_burst_wait(&mut self, out: &mut PacketBatch, timeout: Duration) -> usize {
        let got = self.rx_burst(out);
        if got > 0 {
            self.empty_polls = 0;
            return got;
        }
        self.empty_polls = self.empty_polls.saturating_add(1);
        if self.empty_polls < self.idle_polls {
            return 0;
        }
        self.empty_polls = 0;
        self.arm_interrupt();
        let got = self.rx_burst(out);
        if got > 0 {
            self.disarm_interrupt();
            self.irq_stats.caught_on_arm += 1;
            return got;
        }
        let fired = self.wait_interrupt(timeout);
        self.disarm_interrupt();
        let got = self.rx_burst(out);
        if fired {
            self.irq_stats.wakeups += 1;
            if got == 0 {
                self.irq_stats.empty_wakeups += 1;
            }
        } else {
            self.irq_stats.timeouts += 1;
        }
        self.dim_tick(!fired);
        got
    }

    /// The queue's sleep and interrupt counters.
    pub fn irq_stats(&self) -> IrqStats {
        self.irq_stats
    }

    /// Turns software LRO ([`crate::offload::lro`]) on or off for this queue: with it on,
    /// every burst's TCP segments of one flow, in order, come out merged into one frame
    /// (`RX_LRO`, `segs`, `mss` in its metadata), and the whole batch given to
    /// [`RxQueueHandle::rx_burst`] passes through the engine. Off by default: LRO is wrong
    /// for a forwarder. Turning it off drops its counters.
    pub fn set_lro(&mut self, on: bool) {
        self.lro = on.then(|| Box::new(Lro::default()));
    }

    /// Installs (or, with `None`, removes) an early-drop hook: it sees every frame this
    /// queue receives, after the receive filter and before LRO and the application, and
    /// decides: pass, drop (the buffer goes straight back to the ring's cache), or pass
    /// with a mark. A server under a flood keeps its cycles for the traffic it serves.
    /// One indirect call a frame while installed; nothing when not.
    pub fn set_ingress_filter(&mut self, filter: Option<IngressFilter>) {
        self.ingress = filter;
    }

    /// What the ingress filter decided so far.
    pub fn ingress_stats(&self) -> IngressStats {
        self.ingress_stats
    }

    /// The software LRO's counters, when it is on.
    pub fn lro_stats(&self) -> Option<LroStats> {
        self.lro.as_ref().map(|l| *l.stats())
    }

    /// The queue's index on its port.
    pub fn index(&self) -> u16 {
        self.index
    }

    /// Receives up to `out.room()` frames into `out` (appended); returns how many.
    #[inline]
    pub fn rx_burst(&mut self, out: &mut PacketBatch) -> usize {
        let Some(ring) = self.ring.as_mut() else {
            return 0;
        };
        if self.shared.removed.load(Ordering::Relaxed) {
            return 0;
        }
        let before = out.len();
        let got = ring.burst(&mut self.cache, out);
        if self.shared.filter_gen.load(Ordering::Relaxed) != self.filter_gen {
            self.reload_filter();
        }
        let got = match &self.filter {
            Some(f) if got > 0 => {
                let gone = out.retain_from(before, |p| f.accepts_packet(p), &mut self.cache);
                self.filtered_total += gone as u64;
                got - gone
            }
            _ => got,
        };
        let got = match &mut self.ingress {
            Some(f) if got > 0 => {
                let st = &mut self.ingress_stats;
                let gone = out.retain_from(
                    before,
                    |p| match f(p) {
                        IngressVerdict::Pass => {
                            st.passed += 1;
                            true
                        }
                        IngressVerdict::Drop => {
                            st.dropped += 1;
                            false
                        }
                        IngressVerdict::Mark(m) => {
                            st.marked += 1;
                            let meta = p.meta_mut();
                            meta.flags = meta.flags & !PacketMeta::RX_MARK_MASK
                                | u32::from(m) << PacketMeta::RX_MARK_SHIFT;
                            true
                        }
                    },
                    &mut self.cache,
                );
                got - gone
            }
            _ => got,
        };
        let got = match &mut self.lro {
            Some(lro) if got > 0 => {
                lro.input(out, &mut self.cache);
                out.len().saturating_sub(before)
            }
            _ => got,
        };
        self.bursts = self.bursts.wrapping_add(1);
        if self.bursts.is_multiple_of(PUBLISH_EVERY) {
            self.publish();
        }
        got
    }

    #[cold]
    fn reload_filter(&mut self) {
        let (g, f) = self.shared.filter();
        self.filter_gen = g;
        self.filter = f;
    }

    /// The queue's counters now (exact: this thread's own).
    pub fn stats(&self) -> RxStats {
        let mut s = self.ring.as_ref().map(|r| *r.stats()).unwrap_or_default();
        s.filtered = self.filtered_total;
        s
    }

    /// Publishes the counters for [`crate::Port::stats`] now (bursts do it every 32).
    pub fn publish(&self) {
        self.shared.rx_counters[usize::from(self.index)].store(rx_fields(&self.stats()));
        self.shared.irq_counters[usize::from(self.index)].store(self.irq_stats.fields());
    }

    /// Buffers posted to the device.
    pub fn posted(&self) -> u32 {
        self.ring.as_ref().map_or(0, RxRing::posted)
    }

    /// Doorbell writes the device received.
    pub fn notifies(&self) -> u64 {
        self.ring.as_ref().map_or(0, RxRing::notifies)
    }

    /// A fresh buffer from the port's pool, through this queue's cache.
    #[inline]
    pub fn alloc(&mut self) -> Option<PacketBuf> {
        self.cache.alloc()
    }

    /// Returns a buffer through this queue's cache.
    #[inline]
    pub fn free(&mut self, buf: PacketBuf) {
        self.cache.free(buf)
    }

    /// Returns a whole batch through this queue's cache.
    pub fn free_batch(&mut self, batch: &mut PacketBatch) {
        batch.free_into(&mut self.cache)
    }
}

impl Drop for RxQueueHandle {
    fn drop(&mut self) {
        self.publish();
        if let Some(ring) = self.ring.take() {
            park_or_release(&self.shared, ring, &mut self.cache);
        }
    }
}

/// A port's transmit queue, to drive from one thread (it is `Send`): bursts, its own
/// mempool cache (which completed buffers return to) and counters. Obtained from
/// [`crate::Port::take_queues`].
pub struct TxQueueHandle {
    index: u16,
    /// Always `Some` until dropped (taken out to park it).
    ring: Option<TxRing>,
    /// Where completed buffers go and [`TxQueueHandle::alloc`] takes from: a cache of the
    /// port's pool, or of the pool [`TxQueueHandle::set_mempool`] set.
    cache: MempoolCache,
    /// The offloads tenge does in software for this device, if it lacks any.
    soft: Option<Box<SoftTx>>,
    bursts: u32,
    shared: Arc<PortShared>,
}

impl TxQueueHandle {
    pub(crate) fn new(
        index: u16,
        ring: TxRing,
        cache: MempoolCache,
        shared: Arc<PortShared>,
    ) -> Self {
        TxQueueHandle {
            index,
            soft: ring.soft_offloads(),
            ring: Some(ring),
            cache,
            bursts: 0,
            shared,
        }
    }

    /// The queue's index on its port.
    pub fn index(&self) -> u16 {
        self.index
    }

    /// Sends frames from the front of `pkts`, as many as fit, with one doorbell; returns
    /// how many left the batch (the rest stay for the caller to retry or free).
    #[inline]
    pub fn tx_burst(&mut self, pkts: &mut PacketBatch) -> usize {
        let Some(ring) = self.ring.as_mut() else {
            return 0;
        };
        if self.shared.removed.load(Ordering::Relaxed) {
            return 0;
        }
        let sent = match self.soft.as_deref_mut() {
            None => ring.burst(&mut self.cache, pkts),
            Some(soft) => soft.burst(pkts, &mut self.cache, |c, b| ring.burst(c, b)),
        };
        self.bursts = self.bursts.wrapping_add(1);
        if self.bursts.is_multiple_of(PUBLISH_EVERY) {
            self.publish();
        }
        sent
    }

    /// Recycles the buffers of completed transmissions now (bursts do it when needed).
    pub fn tx_reclaim(&mut self) -> u32 {
        match self.ring.as_mut() {
            Some(r) => r.reclaim(&mut self.cache),
            None => 0,
        }
    }

    /// Waits until the device is done with every queued descriptor (e1000e: head caught up
    /// with tail; virtio: every descriptor used), then recycles every buffer, whether or not
    /// a completion was asked for on it. Returns false on timeout (then only what completed
    /// is recycled).
    pub fn tx_drain(&mut self, timeout: std::time::Duration) -> bool {
        let start = std::time::Instant::now();
        let Some(ring) = self.ring.as_mut() else {
            return true;
        };
        if self.shared.removed.load(Ordering::Relaxed) {
            // The device is going: waiting for it would only delay the release it waits
            // for. Its buffers go back once the port has stopped it.
            return false;
        }
        loop {
            // Segments the software GSO made that the ring has not taken yet go first.
            let flushed = match self.soft.as_deref_mut() {
                Some(soft) => soft.flush(&mut self.cache, |c, b| ring.burst(c, b)),
                None => true,
            };
            if flushed && ring.idle() {
                ring.reclaim_all(&mut self.cache);
                return true;
            }
            if start.elapsed() >= timeout {
                ring.reclaim(&mut self.cache);
                return false;
            }
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
    }

    /// Transmits from `pool` from now on: completed buffers return to a cache of it of
    /// `cache_size`, and [`TxQueueHandle::alloc`] takes from it (a generator's pool of
    /// pre-built frames that receive never writes into). Buffers of another pool still in
    /// flight go home to their own pool when they complete.
    pub fn set_mempool(&mut self, pool: &Mempool, cache_size: usize) {
        self.cache = pool.cache(cache_size);
    }

    /// A fresh buffer for transmission, through this queue's cache.
    #[inline]
    pub fn alloc(&mut self) -> Option<PacketBuf> {
        self.cache.alloc()
    }

    /// Returns a buffer through this queue's cache.
    #[inline]
    pub fn free(&mut self, buf: PacketBuf) {
        self.cache.free(buf)
    }

    /// Returns a whole batch through this queue's cache.
    pub fn free_batch(&mut self, batch: &mut PacketBatch) {
        batch.free_into(&mut self.cache)
    }

    /// The queue's counters now (exact: this thread's own). Packets and bytes count what
    /// went on the ring (a packet the software GSO cut counts as its segments), and
    /// `bad_offload` and its reasons include the packets the software GSO refused (in the
    /// GSO's own finer reasons in [`TxQueueHandle::gso_stats`]).
    pub fn stats(&self) -> TxStats {
        let mut s = self.ring.as_ref().map(TxRing::stats).unwrap_or_default();
        if let Some(soft) = &self.soft {
            let gso = soft.gso_stats();
            s.bad_offload += gso.dropped();
            s.bad_offload_reasons += gso.reasons();
        }
        s
    }

    /// The software GSO's counters, on a queue whose device cannot segment (virtio-net
    /// without HOST_TSO); `None` where the device serves every TX offload.
    pub fn gso_stats(&self) -> Option<GsoStats> {
        self.soft.as_ref().map(|s| *s.gso_stats())
    }

    /// Packets whose TCP or UDP checksum tenge computed in software on this queue (its
    /// device lacks the offload).
    pub fn sw_checksummed(&self) -> u64 {
        self.soft.as_ref().map_or(0, |s| s.checksummed())
    }

    /// Publishes the counters for [`crate::Port::stats`] now (bursts do it every 32).
    pub fn publish(&self) {
        self.shared.tx_counters[usize::from(self.index)].store(tx_fields(&self.stats()));
    }

    /// Doorbell writes the device received.
    pub fn notifies(&self) -> u64 {
        self.ring.as_ref().map_or(0, TxRing::notifies)
    }
}

impl Drop for TxQueueHandle {
    fn drop(&mut self) {
        self.publish();
        if let Some(soft) = self.soft.as_deref_mut() {
            soft.release(&mut self.cache);
        }
        if let Some(ring) = self.ring.take() {
            park_or_release(&self.shared, ring, &mut self.cache);
        }
    }
}

/// A ring a dropped handle leaves behind: released now if the port has stopped the device,
/// else parked with the port (the device may still use its buffers) until it has.
trait Parkable: Sized {
    fn release(&mut self, cache: &mut MempoolCache);
    /// Where the port keeps parked rings of this kind.
    fn parked(p: &mut Parked) -> &mut Vec<(Self, MempoolCache)>;
}

impl Parkable for RxRing {
    fn release(&mut self, cache: &mut MempoolCache) {
        RxRing::release(self, cache)
    }
    fn parked(p: &mut Parked) -> &mut Vec<(Self, MempoolCache)> {
        &mut p.rx
    }
}

impl Parkable for TxRing {
    fn release(&mut self, cache: &mut MempoolCache) {
        TxRing::release(self, cache)
    }
    fn parked(p: &mut Parked) -> &mut Vec<(Self, MempoolCache)> {
        &mut p.tx
    }
}

fn park_or_release<R: Parkable>(shared: &PortShared, mut ring: R, cache: &mut MempoolCache) {
    let mut p = shared.parked.lock().unwrap_or_else(PoisonError::into_inner);
    if p.stopped {
        ring.release(cache);
    } else {
        // A cache of its own: the handle's goes back to the pool as it drops.
        let parked_cache = cache.pool().cache(0);
        R::parked(&mut p).push((ring, parked_cache));
    }
}
