//! engine-ipp: instructions per packet of tenge's ring engine and mempool on each device's
//! real descriptor ops, counted with callgrind against in-memory models of the device side
//! of the rings. Host-side and repeatable: no guest, no timing, the same count on every run.
//!
//! Devices: e1000e (`E1000eRx`/`E1000eTx`, 512-descriptor rings), igb (`IgbRx`/`IgbTx`,
//! advanced descriptors, 512-descriptor rings), virtio-net on split rings
//! (`VirtioRx`/`VirtioTx`) and on packed rings (`PackedRx`/`PackedTx`), both 256 descriptors
//! (QEMU's default queue size, to which `Port::open` clamps `PortConfig`'s 256 RX / 512 TX),
//! with the features QEMU 10.0 offers and tenge accepts: EVENT_IDX and mergeable RX buffers
//! on, no offloads. Workloads, a batch of 32 each, each counted in its own function:
//!
//! - `fwd` (`forward_burst`): `rx_burst` then the port's TX burst (`TxQueue::tx_burst`;
//!   virtio: `tenge::virtio::tx_burst`, which prepends the header), with the engine's
//!   refill, reclaim and buffer recycling: what an L2 forwarder does.
//! - `rx` (`receive_burst`): `rx_burst`, then the batch back into the cache
//!   (`Port::free_batch`): what `rx-sink` and testpmd's rxonly do.
//! - `tx` (`send_burst`): 32 buffers from the cache (`Port::alloc_tx`), each given the
//!   frame's length, then the port's TX burst: what `pktgen` and testpmd's txonly do, less
//!   writing the frame (the pool holds it as a template, `Mempool::fill_template`).
//!
//! The doorbell is a plain store. The device models (writing frames, headers and RX
//! write-backs, consuming TX descriptors and completing them, the notification-suppression
//! state a device keeps) run in `step`, outside the counted function, and are not counted.
//!
//! Fixed costs (setup, warm-up, process start-up, valgrind's own start) cancel: each case
//! runs twice under `--toggle-collect` with different iteration counts, and the figure is
//! the difference in instructions divided by the difference in packets.
//!
//! Usage:
//!   engine-ipp                 measure every case; prints, for e1000e forwarding,
//!                              `BENCH case=engine-ipp instructions_per_packet=<n>` (the line
//!                              issue 3's figure has always had), and for every other case
//!                              `BENCH case=engine-ipp device=<d> workload=<w> instructions_per_packet=<n>`
//!   engine-ipp --device D --workload W
//!                              measure only those (either may be left out: all of it)
//!   engine-ipp --keep DIR      the same, keeping the callgrind output files in DIR
//!                              (for `callgrind_annotate --auto=yes DIR/engine-ipp.<d>-<w>.<n>.out`)
//!   engine-ipp --inner N       run one case's workload with N measured iterations (what
//!                              the measurement runs under valgrind; e1000e fwd unless
//!                              --device / --workload say otherwise)

use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::sync::Arc;

use clap::{Parser, ValueEnum};
use tenge::e1000e::{E1000eRx, E1000eTx, MAX_FRAME};
use tenge::igb::{IgbRx, IgbTx};
use tenge::packet::mempool::host_pool;
use tenge::platform::dma::{DescRing, DmaRegion, HugepagePolicy, IdentityMapper};
use tenge::ring::{PacketBatch, RxDescOps, RxQueue, TxDescOps, TxQueue};
use tenge::virtio::packed::{PackedRing, PackedRx, PackedTx};
use tenge::virtio::{
    wanted_features, Doorbell as VirtqBell, RxHdrMode, SplitRing, TxSettings, VirtioRx, VirtioTx,
    HDR_LEN, MAX_FRAME as VIRTIO_MAX_FRAME, RX_QUEUE, TX_QUEUE,
};
use tenge::MempoolCache;
use tenge_descriptors::e1000e::{
    LegacyTxDesc, RxDescExtRead, RxDescExtWb, RXD_STAT_DD, RXD_STAT_EOP, TXD_CMD_RS, TXD_STAT_DD,
};
use tenge_descriptors::igb::{
    AdvRxDescRead, AdvRxDescWb, AdvTxDataDesc, ADVTXD_DCMD_RS, ADVTXD_DTALEN_MASK, ADVTXD_STA_DD,
};
use tenge_descriptors::virtio::{
    PvirtqDesc, PvirtqEventSuppress, RING_EVENT_FLAGS_DESC, RING_EVENT_FLAGS_DISABLE,
    VIRTQ_DESC_F_AVAIL, VIRTQ_DESC_F_USED, VIRTQ_DESC_F_WRITE,
};
use tenge_descriptors::virtio_net::VirtioNetHdr;
use tenge_firmware_iface::e1000e::regs;
use tenge_firmware_iface::igb::regs as igb_regs;
use tenge_firmware_iface::virtio::{negotiate, VIRTIO_F_EVENT_IDX, VIRTIO_F_RING_PACKED};
use tenge_firmware_iface::{Mmio, NarrowMmio};
use zerocopy::little_endian::{U16, U32};
use zerocopy::IntoBytes;

/// e1000e and igb descriptors per ring (RX and TX).
const RING: u32 = 512;
/// virtio descriptors per queue (RX and TX): QEMU's default and offered queue size.
const VIRTIO_RING: u16 = 256;
/// Packets per burst.
const BURST: usize = 32;
/// TX report (RS) interval, in descriptors (`PortConfig::tx_rs_interval`'s default).
const RS_INTERVAL: u32 = 32;
/// RX refill threshold, in free descriptors (`PortConfig::rx_free_thresh`'s default).
const RX_FREE_THRESH: u32 = 32;
/// Buffers in the pool.
const POOL: u32 = 2048;
/// Per-queue cache size.
const CACHE: usize = 256;
/// Bytes of every received, forwarded and sent frame.
const FRAME_LEN: u16 = 60;
/// Bytes of a frame with its virtio-net header: a virtio buffer's used length (RX) and
/// descriptor length (TX).
const VIRTIO_LEN: usize = HDR_LEN + FRAME_LEN as usize;

/// Every workload is periodic, with a period that divides 112 bursts:
/// - e1000e: the rings (512 descriptors) wrap every 16 bursts of 32;
/// - virtio: the rings (256) wrap every 8 bursts, and a packed ring's wrap counters (which
///   set the AVAIL/USED bits written and tested) come back to their start every 2 laps, 16
///   bursts. Counted, a lap is not 8 equal bursts: packed TX and forwarding cost 1
///   instruction more per 8 bursts than 8 times their cheapest;
/// - TX reclaims every burst (the model completes everything published before the next
///   burst, and a burst reclaims whenever a report is outstanding), and the per-queue cache
///   gets back per burst what it gives, so after the warm-up it neither refills from nor
///   spills to the pool.
///
/// 112 (7 x 16) is kept from when the e1000e forwarding figure was first measured, under a
/// reclaim policy that reclaimed every 14 bursts (once 448 of 512 descriptors were in
/// flight), so that figure is still counted over the same iterations. The warm-up and both
/// iteration counts are multiples of it, so the difference covers whole periods and no
/// partial lap, reclaim or cache refill/spill cycle skews the figure. (Were the period to
/// change, the error is small: 1000 and 3000 iterations gave 422.1 where whole periods gave
/// 422.1, a difference of 0.09.)
const PERIOD: u32 = 112;
const WARMUP: u32 = 4 * PERIOD;
const N_LO: u32 = 10 * PERIOD;
const N_HI: u32 = 30 * PERIOD;

/// The device whose descriptor ops are driven.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Device {
    E1000e,
    Igb,
    VirtioSplit,
    VirtioPacked,
}

/// What the counted function does each iteration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// rx_burst then tx_burst.
    Fwd,
    /// tx_burst of freshly allocated buffers.
    Tx,
    /// rx_burst, then the buffers freed.
    Rx,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Fwd => "fwd",
            Workload::Tx => "tx",
            Workload::Rx => "rx",
        }
    }

    /// Symbol pattern for callgrind's `--toggle-collect`: the counted function (matches the
    /// demangled `engine_ipp::forward_burst` etc.; callgrind accepts `*` and `?` wildcards).
    /// No counted function calls another, and nothing in tenge or std has these names.
    fn toggle(self) -> &'static str {
        match self {
            Workload::Fwd => "*forward_burst*",
            Workload::Tx => "*send_burst*",
            Workload::Rx => "*receive_burst*",
        }
    }

    fn receives(self) -> bool {
        self != Workload::Tx
    }

    fn sends(self) -> bool {
        self != Workload::Rx
    }
}

impl Device {
    fn name(self) -> &'static str {
        match self {
            Device::E1000e => "e1000e",
            Device::Igb => "igb",
            Device::VirtioSplit => "virtio-split",
            Device::VirtioPacked => "virtio-packed",
        }
    }
}

/// A workload as a type: the counted function it runs. The queue types of every device
/// carry it too (their register models are generic over it), so that each workload drives
/// its own instantiation of the engine's `rx_burst`/`tx_burst`, called from its counted
/// function only, as in an application that runs one of them. (With one instantiation
/// shared by two counted functions LLVM stops inlining them into either, which cost the
/// e1000e forwarding figure 1.1 instructions a packet.)
trait Work: 'static {
    const KIND: Workload;
    fn burst<N: Nic>(
        rxq: &mut RxQueue<N::Rx>,
        txq: &mut TxQueue<N::Tx>,
        cache: &mut MempoolCache,
        batch: &mut PacketBatch,
    );
}

/// [`Workload::Fwd`] as a type.
struct Fwd;
/// [`Workload::Tx`] as a type.
struct TxOnly;
/// [`Workload::Rx`] as a type.
struct RxOnly;

impl Work for Fwd {
    const KIND: Workload = Workload::Fwd;
    #[inline(always)]
    fn burst<N: Nic>(
        rxq: &mut RxQueue<N::Rx>,
        txq: &mut TxQueue<N::Tx>,
        cache: &mut MempoolCache,
        batch: &mut PacketBatch,
    ) {
        forward_burst::<N>(rxq, txq, cache, batch);
    }
}

impl Work for TxOnly {
    const KIND: Workload = Workload::Tx;
    #[inline(always)]
    fn burst<N: Nic>(
        _rxq: &mut RxQueue<N::Rx>,
        txq: &mut TxQueue<N::Tx>,
        cache: &mut MempoolCache,
        batch: &mut PacketBatch,
    ) {
        send_burst::<N>(txq, cache, batch);
    }
}

impl Work for RxOnly {
    const KIND: Workload = Workload::Rx;
    #[inline(always)]
    fn burst<N: Nic>(
        rxq: &mut RxQueue<N::Rx>,
        _txq: &mut TxQueue<N::Tx>,
        cache: &mut MempoolCache,
        batch: &mut PacketBatch,
    ) {
        receive_burst::<N>(rxq, cache, batch);
    }
}

/// Instructions per packet of the tenge ring engine on each device, counted with callgrind.
#[derive(Parser, Debug)]
#[command(verbatim_doc_comment)]
struct Args {
    /// Run the workload with this many measured iterations (used under valgrind).
    #[arg(long, value_name = "N")]
    inner: Option<u32>,
    /// Only this device (default: every one; with --inner, e1000e).
    #[arg(long, value_enum)]
    device: Option<Device>,
    /// Only this workload (default: every one; with --inner, fwd).
    #[arg(long, value_enum)]
    workload: Option<Workload>,
    /// Keep the callgrind output files in this directory.
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
}

/// What the workloads need of a device: its queues' ops, the port's TX burst on them, and
/// a model of the device side.
trait Nic {
    type Rx: RxDescOps;
    type Tx: TxDescOps;

    /// Sends the front of `pkts` as `Port::tx_burst` does on this device.
    fn send(txq: &mut TxQueue<Self::Tx>, cache: &mut MempoolCache, pkts: &mut PacketBatch)
        -> usize;

    /// One device step, between two counted bursts: completes the next `rx_frames` posted
    /// RX buffers with a frame each, and consumes and completes everything published on
    /// TX. Kept out of line so callgrind's toggle never counts it.
    fn step(&mut self, rxq: &RxQueue<Self::Rx>, txq: &TxQueue<Self::Tx>, rx_frames: usize);

    /// Checks after the run: the notifications the device asked for, and only those.
    fn check(
        &self,
        _rxq: &RxQueue<Self::Rx>,
        _txq: &TxQueue<Self::Tx>,
        _w: Workload,
        _bursts: u64,
    ) -> Result<(), String> {
        Ok(())
    }
}

/// A device's queues and the model of its side of them.
type Setup<N> = (RxQueue<<N as Nic>::Rx>, TxQueue<<N as Nic>::Tx>, N);

/// The frame every workload receives, forwards and sends.
fn test_frame() -> [u8; FRAME_LEN as usize] {
    let mut frame = [0u8; FRAME_LEN as usize];
    frame[..6].fill(0xff); // broadcast
    frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    frame[12..14].copy_from_slice(&0x88b5u16.to_be_bytes()); // local experimental ethertype
    for (i, b) in frame[14..].iter_mut().enumerate() {
        *b = i as u8;
    }
    frame
}

/// Writes `bytes` at `iova`, as a device's DMA write.
fn dma_write(iova: u64, bytes: &[u8]) {
    assert!(iova != 0, "model: DMA to address 0");
    // SAFETY: the pool is identity-mapped (IOVA = address), and every IOVA the models write
    // is a buffer the engine posted to the device (at least 2048 bytes of data room, plus
    // the 12 bytes of headroom virtio's descriptors start at) and does not touch until the
    // write-back says it is done.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), iova as *mut u8, bytes.len()) };
}

/// Reads `out.len()` bytes at `iova`, as a device's DMA read.
fn dma_read(iova: u64, out: &mut [u8]) {
    assert!(iova != 0, "model: DMA from address 0");
    // SAFETY: as in `dma_write`: a buffer the engine handed to the device for sending, of at
    // least the descriptor's length, which the caller checked is `out.len()`.
    unsafe { std::ptr::copy_nonoverlapping(iova as *const u8, out.as_mut_ptr(), out.len()) };
}

// ---------------------------------------------------------------------------------------
// e1000e

/// The device registers: the tail register write (the doorbell) is one plain store. (An
/// `AtomicU32` with `Relaxed` rather than a `Cell`: the same single `mov` on x86-64, and the
/// ops take an `Arc<M>`, which wants `M: Send + Sync`.) `W`: the workload (see [`Work`]).
struct Doorbell<W> {
    tail: AtomicU32,
    _work: PhantomData<fn() -> W>,
}

impl<W> Default for Doorbell<W> {
    fn default() -> Self {
        Doorbell {
            tail: AtomicU32::new(0),
            _work: PhantomData,
        }
    }
}

impl<W> Mmio for Doorbell<W> {
    #[inline(always)]
    fn read32(&self, _offset: u32) -> u32 {
        self.tail.load(Ordering::Relaxed)
    }

    #[inline(always)]
    fn write32(&self, _offset: u32, value: u32) {
        self.tail.store(value, Ordering::Relaxed);
    }
}

type E1000eRxQ<W> = RxQueue<E1000eRx<Doorbell<W>>>;
type E1000eTxQ<W> = TxQueue<E1000eTx<Doorbell<W>>>;

/// An in-memory Intel NIC, the 82574 (`K` = [`E1000eKind`]) or the 82576 ([`IgbKind`]):
/// consumes what the driver posts, up to the tail it last rang.
struct IntelModel<W, K> {
    rx_regs: Arc<Doorbell<W>>,
    tx_regs: Arc<Doorbell<W>>,
    /// Next RX descriptor the device fills (RDH) and next TX descriptor it processes (TDH).
    heads: (u32, u32),
    frame: [u8; FRAME_LEN as usize],
    _kind: PhantomData<K>,
}

/// The 82574's descriptors (legacy TX, extended RX).
struct E1000eKind;
/// The 82576's (advanced).
struct IgbKind;

/// The in-memory e1000e.
type DeviceModel<W> = IntelModel<W, E1000eKind>;
/// The in-memory igb, writing advanced write-backs as QEMU's igb does
/// (`igb_write_adv_rx_descr`, `igb_txdesc_writeback`).
type IgbModel<W> = IntelModel<W, IgbKind>;

/// An Intel NIC's queues and its model.
type IntelSetup<R, T, W, K> = (RxQueue<R>, TxQueue<T>, IntelModel<W, K>);

/// What a descriptor ring holds.
trait Desc: zerocopy::FromBytes + IntoBytes + zerocopy::Immutable {}
impl<D: zerocopy::FromBytes + IntoBytes + zerocopy::Immutable> Desc for D {}

/// An Intel NIC's queues over one region of two `RING`-descriptor rings (RX first), made by
/// `queues` from the rings and the RX and TX tail registers, and the model of its side.
fn intel_setup<W, K, R: RxDescOps, T: TxDescOps, RD: Desc, TD: Desc>(
    queues: impl FnOnce(
        DescRing<RD>,
        DescRing<TD>,
        Arc<Doorbell<W>>,
        Arc<Doorbell<W>>,
    ) -> (RxQueue<R>, TxQueue<T>),
) -> Result<IntelSetup<R, T, W, K>, String> {
    let desc_bytes = RING as usize * size_of::<RD>();
    let region = Arc::new(
        DmaRegion::allocate(
            Arc::new(IdentityMapper),
            desc_bytes + RING as usize * size_of::<TD>(),
            HugepagePolicy::Never,
        )
        .map_err(|e| format!("descriptor region: {e}"))?,
    );
    let rx_regs = Arc::new(Doorbell::default());
    let tx_regs = Arc::new(Doorbell::default());
    let (rxq, txq) = queues(
        DescRing::new(region.clone(), 0, RING),
        DescRing::new(region, desc_bytes, RING),
        rx_regs.clone(),
        tx_regs.clone(),
    );
    let model = IntelModel {
        rx_regs,
        tx_regs,
        heads: (0, 0),
        frame: test_frame(),
        _kind: PhantomData,
    };
    Ok((rxq, txq, model))
}

impl<W: Work> Nic for IntelModel<W, E1000eKind> {
    type Rx = E1000eRx<Doorbell<W>>;
    type Tx = E1000eTx<Doorbell<W>>;

    #[inline(always)]
    fn send(txq: &mut E1000eTxQ<W>, cache: &mut MempoolCache, pkts: &mut PacketBatch) -> usize {
        txq.tx_burst(cache, pkts)
    }

    /// Completes the next `rx_frames` posted RX descriptors with a 60-byte frame each, and
    /// processes every TX descriptor up to the tail, setting DD where RS is set.
    #[inline(never)]
    fn step(&mut self, rxq: &E1000eRxQ<W>, txq: &E1000eTxQ<W>, rx_frames: usize) {
        let (rx_ring, tx_ring) = (rxq.ops().ring(), txq.ops().ring());
        let frame = self.frame;
        intel_step(
            &mut self.heads,
            (
                self.rx_regs.read32(regs::RDT),
                self.tx_regs.read32(regs::TDT),
            ),
            rx_frames,
            |idx| {
                // The frame, then the extended write-back with DD|EOP and the length.
                let read = rx_ring.read(idx);
                dma_write(read.buffer_addr.get(), &frame);
                let wb = RxDescExtWb {
                    mrq: U32::new(0),
                    rss_or_csum: U32::new(0),
                    status_error: U32::new(RXD_STAT_DD | RXD_STAT_EOP),
                    length: U16::new(FRAME_LEN),
                    vlan: U16::new(0),
                };
                rx_ring.write(idx, zerocopy::transmute!(wb));
            },
            |idx| {
                let mut d = tx_ring.read(idx);
                assert_eq!(
                    d.length.get(),
                    FRAME_LEN,
                    "model: TX descriptor {idx} length"
                );
                if d.cmd & TXD_CMD_RS != 0 {
                    d.status |= TXD_STAT_DD;
                    tx_ring.write(idx, d);
                }
            },
        );
    }
}

/// The ring walk of the Intel models' step: completes the next `rx_frames` RX descriptors
/// posted below the tail `tails.0` (`receive` each), and hands every TX descriptor up to
/// the tail `tails.1` to `transmit`, moving the heads `heads` (RX, TX) on.
fn intel_step(
    heads: &mut (u32, u32),
    tails: (u32, u32),
    rx_frames: usize,
    mut receive: impl FnMut(u32),
    mut transmit: impl FnMut(u32),
) {
    let mask = RING - 1;
    let posted = tails.0.wrapping_sub(heads.0) & mask;
    assert!(
        posted as usize >= rx_frames,
        "model: only {posted} RX descriptors posted"
    );
    for _ in 0..rx_frames {
        receive(heads.0);
        heads.0 = (heads.0 + 1) & mask;
    }
    while heads.1 != tails.1 {
        transmit(heads.1);
        heads.1 = (heads.1 + 1) & mask;
    }
}

/// The e1000e queues and their model.
fn e1000e<W: Work>() -> Result<Setup<DeviceModel<W>>, String> {
    intel_setup::<W, E1000eKind, _, _, RxDescExtRead, LegacyTxDesc>(|rx, tx, rdt, tdt| {
        (
            RxQueue::new(E1000eRx::new(rx, rdt), RX_FREE_THRESH),
            TxQueue::new(E1000eTx::new(tx, tdt), RS_INTERVAL, MAX_FRAME),
        )
    })
}

// ---------------------------------------------------------------------------------------
// igb

type IgbRxQ<W> = RxQueue<IgbRx<Doorbell<W>>>;
type IgbTxQ<W> = TxQueue<IgbTx<Doorbell<W>>>;

impl<W: Work> Nic for IntelModel<W, IgbKind> {
    type Rx = IgbRx<Doorbell<W>>;
    type Tx = IgbTx<Doorbell<W>>;

    #[inline(always)]
    fn send(txq: &mut IgbTxQ<W>, cache: &mut MempoolCache, pkts: &mut PacketBatch) -> usize {
        txq.tx_burst(cache, pkts)
    }

    /// Completes the next `rx_frames` posted RX descriptors with a 60-byte frame each (the
    /// advanced write-back, DD|EOP and the length), and processes every TX data descriptor
    /// up to the tail, writing DD into `olinfo_status` where RS is set.
    #[inline(never)]
    fn step(&mut self, rxq: &IgbRxQ<W>, txq: &IgbTxQ<W>, rx_frames: usize) {
        let (rx_ring, tx_ring) = (rxq.ops().ring(), txq.ops().ring());
        let frame = self.frame;
        intel_step(
            &mut self.heads,
            (
                self.rx_regs.read32(igb_regs::RDT0),
                self.tx_regs.read32(igb_regs::TDT0),
            ),
            rx_frames,
            |idx| {
                let read = rx_ring.read(idx);
                dma_write(read.pkt_addr.get(), &frame);
                let wb = AdvRxDescWb {
                    pkt_info: U32::new(0),
                    rss_or_csum: U32::new(0),
                    status_error: U32::new(RXD_STAT_DD | RXD_STAT_EOP),
                    length: U16::new(FRAME_LEN),
                    vlan: U16::new(0),
                };
                rx_ring.write(idx, zerocopy::transmute!(wb));
            },
            |idx| {
                let mut d: AdvTxDataDesc = tx_ring.read(idx);
                let cmd = d.cmd_type_len.get();
                assert_eq!(
                    cmd & ADVTXD_DTALEN_MASK,
                    u32::from(FRAME_LEN),
                    "model: TX descriptor {idx} length"
                );
                if cmd & ADVTXD_DCMD_RS != 0 {
                    d.olinfo_status = U32::new(d.olinfo_status.get() | ADVTXD_STA_DD);
                    tx_ring.write(idx, d);
                }
            },
        );
    }
}

/// The igb queues (queue 0) and their model.
fn igb<W: Work>() -> Result<Setup<IgbModel<W>>, String> {
    intel_setup::<W, IgbKind, _, _, AdvRxDescRead, AdvTxDataDesc>(|rx, tx, rdt, tdt| {
        (
            RxQueue::new(IgbRx::for_queue(rx, rdt, 0, false), RX_FREE_THRESH),
            TxQueue::new(
                IgbTx::for_queue(tx, tdt, 0),
                RS_INTERVAL,
                tenge::igb::MAX_FRAME,
            ),
        )
    })
}

// ---------------------------------------------------------------------------------------
// virtio-net

/// What QEMU 10.0 offers for `virtio-net-pci,disable-legacy=on,iommu_platform=on` on a
/// hub backend, as measured in firmware-iface's model; `packed=on` adds RING_PACKED.
const QEMU_OFFER: u64 = tenge_firmware_iface::virtio::model::QemuVirtioNet::HUB_FEATURES;

/// The features `VirtioNet::open` accepts from QEMU's offer (no offloads asked for): the
/// RX header mode and whether EVENT_IDX is on.
fn negotiated(packed: bool) -> Result<(RxHdrMode, bool), String> {
    let offered = QEMU_OFFER | if packed { VIRTIO_F_RING_PACKED } else { 0 };
    let f = negotiate(offered, wanted_features(0, offered)).map_err(|e| e.to_string())?;
    let (mode, event_idx) = (
        RxHdrMode::from_features(f, false),
        f & VIRTIO_F_EVENT_IDX != 0,
    );
    if !mode.mergeable || mode.offloads || !event_idx || (f & VIRTIO_F_RING_PACKED != 0) != packed {
        return Err(format!("unexpected features negotiated: {f:#x}"));
    }
    Ok((mode, event_idx))
}

/// A queue's notify register: a doorbell write is one plain 16-bit store, as e1000e's
/// tail write is one 32-bit store. `W`: the workload (see [`Work`]).
struct Notify<W> {
    queue: AtomicU16,
    _work: PhantomData<fn() -> W>,
}

impl<W> Default for Notify<W> {
    fn default() -> Self {
        Notify {
            queue: AtomicU16::new(0),
            _work: PhantomData,
        }
    }
}

impl<W> Mmio for Notify<W> {
    fn read32(&self, _offset: u32) -> u32 {
        0
    }

    fn write32(&self, _offset: u32, _value: u32) {}
}

impl<W> NarrowMmio for Notify<W> {
    fn read8(&self, _offset: u32) -> u8 {
        0
    }

    #[inline(always)]
    fn read16(&self, _offset: u32) -> u16 {
        self.queue.load(Ordering::Relaxed)
    }

    fn write8(&self, _offset: u32, _value: u8) {}

    #[inline(always)]
    fn write16(&self, _offset: u32, value: u16) {
        self.queue.store(value, Ordering::Relaxed);
    }
}

/// The header QEMU writes in front of a received frame with MRG_RXBUF and no offloads
/// (`virtio_net_receive_rcu`): everything 0 but `num_buffers`, 1 for a frame in one buffer.
fn rx_header() -> VirtioNetHdr {
    VirtioNetHdr {
        num_buffers: 1.into(),
        ..VirtioNetHdr::default()
    }
}

/// Checks a TX buffer as QEMU's `virtio_net_flush_tx` takes it: device-readable, one
/// descriptor, a zero header (no offloads) and then the frame.
fn check_tx_buffer(addr: u64, len: u32, flags: u16, frame: &[u8], what: &str) {
    assert_eq!(
        flags, 0,
        "model: {what}: TX buffers are device-readable, unchained"
    );
    assert_eq!(len as usize, VIRTIO_LEN, "model: {what}: TX length");
    let mut bytes = [0u8; VIRTIO_LEN];
    dma_read(addr, &mut bytes);
    assert_eq!(bytes[..HDR_LEN], [0u8; HDR_LEN], "model: {what}: header");
    assert_eq!(&bytes[HDR_LEN..], frame, "model: {what}: frame");
}

/// Writes a received frame into a posted RX buffer as QEMU does: the header at its start,
/// the frame after it.
fn fill_rx_buffer(addr: u64, len: u32, frame: &[u8], what: &str) {
    assert!(
        len as usize >= VIRTIO_LEN,
        "model: {what}: RX buffer of {len}"
    );
    dma_write(addr, rx_header().as_bytes());
    dma_write(addr + HDR_LEN as u64, frame);
}

type SplitRxQ<W> = RxQueue<VirtioRx<Notify<W>>>;
type SplitTxQ<W> = TxQueue<VirtioTx<Notify<W>>>;

/// The device side of two split rings as QEMU 10.0's virtio-net plays them with EVENT_IDX
/// (`hw/virtio/virtio.c`, `hw/net/virtio-net.c`):
/// - every pop (`virtqueue_split_pop`) takes the descriptor `avail.ring[last_avail]` names
///   and then sets `avail_event` to the new `last_avail`;
/// - RX: per frame, one buffer (a 60-byte frame fits one), the header with `num_buffers`
///   1 and the frame written into it, one used element (that id, 72 bytes: header and
///   frame) and `used.idx` moved (`virtqueue_fill` + `virtqueue_flush`). Before its pop
///   QEMU also turns notifications off (`virtio_net_has_buffers`, which with EVENT_IDX
///   writes `avail_event` = `avail.idx`); the pop overwrites that, so it is not modelled.
///   The device is never starved: `avail_event` stays behind what the driver publishes, and
///   its refills need no kick;
/// - TX runs when kicked (`virtio_net_handle_tx_bh`): notifications off (`avail_event` =
///   `avail.idx`), every available buffer popped, sent and pushed back used with length 0
///   (a device-readable buffer: nothing written, as `virtqueue_push(q->tx_vq, elem, 0)`),
///   then notifications on again (`avail_event` = `avail.idx`): the driver's next publish
///   kicks. The model asserts that kick came, and that no other did.
struct SplitDev<W> {
    /// RX: next avail index the device takes, next used index it writes.
    rx_avail: u16,
    rx_used: u16,
    /// TX: likewise.
    tx_avail: u16,
    tx_used: u16,
    /// TX doorbell writes the device has seen.
    tx_kicks: u64,
    frame: [u8; FRAME_LEN as usize],
    _work: PhantomData<fn() -> W>,
}

impl<W: Work> Nic for SplitDev<W> {
    type Rx = VirtioRx<Notify<W>>;
    type Tx = VirtioTx<Notify<W>>;

    #[inline(always)]
    fn send(txq: &mut SplitTxQ<W>, cache: &mut MempoolCache, pkts: &mut PacketBatch) -> usize {
        tenge::virtio::tx_burst(txq, cache, pkts)
    }

    #[inline(never)]
    fn step(&mut self, rxq: &SplitRxQ<W>, txq: &SplitTxQ<W>, rx_frames: usize) {
        let ring = rxq.ops().ring();
        let avail = ring.avail_idx();
        assert!(
            avail.wrapping_sub(self.rx_avail) as usize >= rx_frames,
            "model: RX ring short: {} buffers available",
            avail.wrapping_sub(self.rx_avail)
        );
        for _ in 0..rx_frames {
            let id = ring.avail_entry(self.rx_avail);
            self.rx_avail = self.rx_avail.wrapping_add(1);
            ring.device_set_avail_event(self.rx_avail);
            let d = ring.descs().read(u32::from(id));
            assert_eq!(
                d.flags.get(),
                VIRTQ_DESC_F_WRITE,
                "model: RX buffers are device-writable, unchained"
            );
            fill_rx_buffer(d.addr.get(), d.len.get(), &self.frame, "split RX");
            ring.device_push_used(self.rx_used, u32::from(id), VIRTIO_LEN as u32);
            self.rx_used = self.rx_used.wrapping_add(1);
        }

        let ring = txq.ops().ring();
        let avail = ring.avail_idx();
        let kicks = txq.ops().bell().notifies();
        if avail == self.tx_avail {
            assert_eq!(kicks, self.tx_kicks, "model: TX kicked with nothing new");
            return;
        }
        assert_eq!(
            kicks,
            self.tx_kicks + 1,
            "model: TX published without the one kick the device asked for"
        );
        self.tx_kicks = kicks;
        ring.device_set_avail_event(avail);
        while self.tx_avail != avail {
            let id = ring.avail_entry(self.tx_avail);
            self.tx_avail = self.tx_avail.wrapping_add(1);
            ring.device_set_avail_event(self.tx_avail);
            let d = ring.descs().read(u32::from(id));
            check_tx_buffer(
                d.addr.get(),
                d.len.get(),
                d.flags.get(),
                &self.frame,
                "split TX",
            );
            ring.device_push_used(self.tx_used, u32::from(id), 0);
            self.tx_used = self.tx_used.wrapping_add(1);
        }
        ring.device_set_avail_event(ring.avail_idx());
    }

    fn check(
        &self,
        rxq: &SplitRxQ<W>,
        txq: &SplitTxQ<W>,
        w: Workload,
        bursts: u64,
    ) -> Result<(), String> {
        virtio_kicks(
            rxq.ops().bell().notifies(),
            txq.ops().bell().notifies(),
            w,
            bursts,
        )
    }
}

/// The kicks a virtio device that never runs out of RX buffers and drains TX between
/// bursts asks for: the first RX fill (the device had not yet looked at the ring) and
/// every TX burst.
fn virtio_kicks(rx: u64, tx: u64, w: Workload, bursts: u64) -> Result<(), String> {
    let want_tx = if w.sends() { bursts } else { 0 };
    if rx != 1 || tx != want_tx {
        return Err(format!(
            "kicks: RX {rx} (want 1, the first fill), TX {tx} (want {want_tx})"
        ));
    }
    Ok(())
}

/// Split-ring virtio queues, with the features negotiated from QEMU's offer.
fn virtio_split<W: Work>() -> Result<Setup<SplitDev<W>>, String> {
    let (mode, event_idx) = negotiated(false)?;
    let ring_bytes = SplitRing::bytes(VIRTIO_RING);
    let region = Arc::new(
        DmaRegion::allocate(
            Arc::new(IdentityMapper),
            2 * ring_bytes,
            HugepagePolicy::Never,
        )
        .map_err(|e| format!("ring region: {e}"))?,
    );
    let bell = |queue| VirtqBell::new(Arc::new(Notify::default()), 0, queue, event_idx);
    let rxq = RxQueue::new(
        VirtioRx::new(
            SplitRing::new(region.clone(), 0, VIRTIO_RING, event_idx),
            bell(RX_QUEUE),
            mode,
        ),
        RX_FREE_THRESH,
    );
    let txq = TxQueue::new(
        VirtioTx::new(
            SplitRing::new(region, ring_bytes, VIRTIO_RING, event_idx),
            bell(TX_QUEUE),
            TxSettings::default(),
        ),
        RS_INTERVAL,
        VIRTIO_MAX_FRAME,
    );
    let dev = SplitDev {
        rx_avail: 0,
        rx_used: 0,
        tx_avail: 0,
        tx_used: 0,
        tx_kicks: 0,
        frame: test_frame(),
        _work: PhantomData,
    };
    Ok((rxq, txq, dev))
}

type PackedRxQ<W> = RxQueue<PackedRx<Notify<W>>>;
type PackedTxQ<W> = TxQueue<PackedTx<Notify<W>>>;

/// The device side of two packed rings as QEMU 10.0's virtio-net plays them with EVENT_IDX:
/// - it takes available descriptors in ring order (`virtqueue_packed_pop`: AVAIL equal to
///   its wrap counter, USED not) and writes each back used in place, in order (used
///   position = avail position): `id`, `len`, then flags AVAIL = USED = its used wrap
///   counter, nothing else (`virtqueue_packed_fill_desc`); the address is left as it was;
/// - RX: per frame, notifications off first (`virtio_net_has_buffers`: device event flags
///   DISABLE, the offset left as it was), then one buffer with the header (`num_buffers`
///   = 1) and the frame, written back with length 72. The device is never starved, so
///   DISABLE stays and refills need no kick;
/// - TX runs when kicked: DISABLE, every available descriptor sent and written back with
///   length 0, then notifications on again (`virtio_queue_packed_set_notification`: DESC
///   naming its next descriptor and wrap counter): the driver's next publish covers it and
///   kicks. The model asserts that kick came, and that no other did.
struct PackedDev<W> {
    /// Free-running position of the next RX / TX descriptor the device takes.
    rx_next: u32,
    tx_next: u32,
    /// TX doorbell writes the device has seen.
    tx_kicks: u64,
    frame: [u8; FRAME_LEN as usize],
    _work: PhantomData<fn() -> W>,
}

impl<W> PackedDev<W> {
    /// The descriptor at free-running position `pos` if the driver made it available.
    fn avail(ring: &PackedRing, pos: u32) -> Option<PvirtqDesc> {
        let d = ring.descs().read(pos);
        let f = d.flags.get();
        let wrap = ring.wrap(pos);
        ((f & VIRTQ_DESC_F_AVAIL != 0) == wrap && (f & VIRTQ_DESC_F_USED != 0) != wrap).then_some(d)
    }

    /// Writes the descriptor at `pos` back used.
    fn push_used(ring: &PackedRing, pos: u32, id: u16, len: u32) {
        let flags = if ring.wrap(pos) {
            VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED
        } else {
            0
        };
        ring.device_write(pos, id, len, flags);
    }

    /// Writes the device event flags, the offset left as it was.
    fn set_event_flags(ring: &PackedRing, flags: u16) {
        ring.device_set_event(ring.device_event().off_wrap.get(), flags);
    }
}

impl<W: Work> Nic for PackedDev<W> {
    type Rx = PackedRx<Notify<W>>;
    type Tx = PackedTx<Notify<W>>;

    #[inline(always)]
    fn send(txq: &mut PackedTxQ<W>, cache: &mut MempoolCache, pkts: &mut PacketBatch) -> usize {
        tenge::virtio::tx_burst(txq, cache, pkts)
    }

    #[inline(never)]
    fn step(&mut self, rxq: &PackedRxQ<W>, txq: &PackedTxQ<W>, rx_frames: usize) {
        let ring = rxq.ops().ring();
        let mask = u32::from(VIRTIO_RING) - 1;
        for _ in 0..rx_frames {
            Self::set_event_flags(ring, RING_EVENT_FLAGS_DISABLE);
            let Some(d) = Self::avail(ring, self.rx_next) else {
                panic!("model: RX ring short at position {}", self.rx_next);
            };
            assert_eq!(
                d.flags.get() & !(VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED),
                VIRTQ_DESC_F_WRITE,
                "model: RX buffers are device-writable, unchained"
            );
            assert_eq!(u32::from(d.id.get()), self.rx_next & mask, "model: RX id");
            fill_rx_buffer(d.addr.get(), d.len.get(), &self.frame, "packed RX");
            Self::push_used(ring, self.rx_next, d.id.get(), VIRTIO_LEN as u32);
            self.rx_next = self.rx_next.wrapping_add(1);
        }

        let ring = txq.ops().ring();
        let kicks = txq.ops().bell().notifies();
        if Self::avail(ring, self.tx_next).is_none() {
            assert_eq!(kicks, self.tx_kicks, "model: TX kicked with nothing new");
            return;
        }
        assert_eq!(
            kicks,
            self.tx_kicks + 1,
            "model: TX published without the one kick the device asked for"
        );
        self.tx_kicks = kicks;
        Self::set_event_flags(ring, RING_EVENT_FLAGS_DISABLE);
        while let Some(d) = Self::avail(ring, self.tx_next) {
            let flags = d.flags.get() & !(VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED);
            check_tx_buffer(d.addr.get(), d.len.get(), flags, &self.frame, "packed TX");
            Self::push_used(ring, self.tx_next, d.id.get(), 0);
            self.tx_next = self.tx_next.wrapping_add(1);
        }
        ring.device_set_event(
            PvirtqEventSuppress::pack_off_wrap(
                (self.tx_next & mask) as u16,
                ring.wrap(self.tx_next),
            ),
            RING_EVENT_FLAGS_DESC,
        );
    }

    fn check(
        &self,
        rxq: &PackedRxQ<W>,
        txq: &PackedTxQ<W>,
        w: Workload,
        bursts: u64,
    ) -> Result<(), String> {
        virtio_kicks(
            rxq.ops().bell().notifies(),
            txq.ops().bell().notifies(),
            w,
            bursts,
        )
    }
}

/// Packed-ring virtio queues, with the features negotiated from QEMU's offer (`packed=on`).
fn virtio_packed<W: Work>() -> Result<Setup<PackedDev<W>>, String> {
    let (mode, event_idx) = negotiated(true)?;
    let ring_bytes = PackedRing::bytes(VIRTIO_RING);
    let region = Arc::new(
        DmaRegion::allocate(
            Arc::new(IdentityMapper),
            2 * ring_bytes,
            HugepagePolicy::Never,
        )
        .map_err(|e| format!("ring region: {e}"))?,
    );
    let bell = |queue| VirtqBell::new(Arc::new(Notify::default()), 0, queue, event_idx);
    let rxq = RxQueue::new(
        PackedRx::new(
            PackedRing::new(region.clone(), 0, VIRTIO_RING),
            bell(RX_QUEUE),
            mode,
        ),
        RX_FREE_THRESH,
    );
    let txq = TxQueue::new(
        PackedTx::new(
            PackedRing::new(region, ring_bytes, VIRTIO_RING),
            bell(TX_QUEUE),
            TxSettings::default(),
        ),
        RS_INTERVAL,
        VIRTIO_MAX_FRAME,
    );
    let dev = PackedDev {
        rx_next: 0,
        tx_next: 0,
        tx_kicks: 0,
        frame: test_frame(),
        _work: PhantomData,
    };
    Ok((rxq, txq, dev))
}

// ---------------------------------------------------------------------------------------
// The counted functions and the workload

/// Counted (fwd): one receive burst and its retransmission, with the engine's refill,
/// reclaim and buffer recycling.
#[inline(never)]
fn forward_burst<N: Nic>(
    rxq: &mut RxQueue<N::Rx>,
    txq: &mut TxQueue<N::Tx>,
    cache: &mut MempoolCache,
    batch: &mut PacketBatch,
) {
    let got = rxq.rx_burst(cache, batch);
    let sent = N::send(txq, cache, batch);
    assert!(
        got == BURST && sent == BURST,
        "forwarded {sent} of {got} received, want {BURST}"
    );
}

/// Counted (rx): one receive burst, with the engine's refill, and the frames freed.
#[inline(never)]
fn receive_burst<N: Nic>(
    rxq: &mut RxQueue<N::Rx>,
    cache: &mut MempoolCache,
    batch: &mut PacketBatch,
) {
    let got = rxq.rx_burst(cache, batch);
    batch.free_into(cache);
    assert!(got == BURST, "received {got}, want {BURST}");
}

/// Counted (tx): a burst of fresh buffers holding the frame (the pool's template), sent,
/// with the engine's reclaim.
#[inline(never)]
fn send_burst<N: Nic>(txq: &mut TxQueue<N::Tx>, cache: &mut MempoolCache, batch: &mut PacketBatch) {
    for _ in 0..BURST {
        let Some(mut p) = cache.alloc() else {
            panic!("mempool exhausted");
        };
        p.set_len(FRAME_LEN as usize);
        let pushed = batch.push(p);
        assert!(pushed.is_ok(), "batch full");
    }
    let sent = N::send(txq, cache, batch);
    assert!(sent == BURST, "sent {sent}, want {BURST}");
}

/// The workload `w` on a device's queues and model: warm-up, then `n` measured iterations,
/// each a model step and a counted burst; then the counters checked.
fn run<N: Nic, W: Work>((mut rxq, mut txq, mut model): Setup<N>, n: u32) -> Result<(), String> {
    let w = W::KIND;
    let pool = host_pool(POOL).map_err(|e| format!("mempool: {e}"))?;
    if w == Workload::Tx {
        pool.fill_template(&test_frame())
            .map_err(|e| format!("template: {e}"))?;
    }
    let mut cache = pool.cache(CACHE);
    let mut batch = PacketBatch::new(BURST);
    let entries = rxq.ops().entries();
    if rxq.fill(&mut cache) != entries - 1 {
        return Err(format!(
            "RX fill posted {} of {}",
            rxq.posted(),
            entries - 1
        ));
    }
    let rx_frames = if w.receives() { BURST } else { 0 };
    for _ in 0..WARMUP + n {
        model.step(&rxq, &txq, rx_frames);
        W::burst::<N>(&mut rxq, &mut txq, &mut cache, &mut batch);
    }

    let bursts = u64::from(WARMUP + n);
    let want = bursts * BURST as u64;
    let (want_rx, want_tx) = (
        if w.receives() { want } else { 0 },
        if w.sends() { want } else { 0 },
    );
    let (rs, ts) = (*rxq.stats(), *txq.stats());
    let rx_drops = rs.no_buf + rs.bad_len + rs.errors + rs.bad_slot + rs.multi_buffer;
    if rs.packets != want_rx
        || ts.packets != want_tx
        || rx_drops != 0
        || rs.chains != 0
        || ts.ring_full != 0
        || ts.bad_packet != 0
    {
        return Err(format!(
            "unexpected counters: rx {rs:?}, tx {ts:?} (want {want_rx} received, {want_tx} sent)"
        ));
    }
    if ts.completed + u64::from(txq.in_flight()) != want_tx {
        return Err(format!(
            "TX recycled {} with {} in flight of {want_tx}",
            ts.completed,
            txq.in_flight()
        ));
    }
    model.check(&rxq, &txq, w, bursts)?;
    // Every buffer back before the pool goes.
    rxq.release(&mut cache);
    txq.release(&mut cache);
    Ok(())
}

/// One case's workload with `n` measured iterations.
fn inner(d: Device, w: Workload, n: u32) -> Result<(), String> {
    match w {
        Workload::Fwd => on_device::<Fwd>(d, n),
        Workload::Tx => on_device::<TxOnly>(d, n),
        Workload::Rx => on_device::<RxOnly>(d, n),
    }
}

/// Workload `W` on device `d`, with `n` measured iterations.
fn on_device<W: Work>(d: Device, n: u32) -> Result<(), String> {
    match d {
        Device::E1000e => run::<_, W>(e1000e::<W>()?, n),
        Device::Igb => run::<_, W>(igb::<W>()?, n),
        Device::VirtioSplit => run::<_, W>(virtio_split::<W>()?, n),
        Device::VirtioPacked => run::<_, W>(virtio_packed::<W>()?, n),
    }
}

// ---------------------------------------------------------------------------------------
// Measurement

/// Runs `--inner n` of one case under callgrind, collecting only inside its counted
/// function; returns the instruction count.
fn callgrind(exe: &Path, d: Device, w: Workload, n: u32, out: &Path) -> Result<u64, String> {
    let res = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--toggle-collect={}", w.toggle()))
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(exe)
        .args(["--device", d.name(), "--workload", w.name()])
        .arg("--inner")
        .arg(n.to_string())
        .output();
    let res = match res {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(
                "valgrind not found: install it with `apt-get install valgrind` \
                        (qemu/install-deps.sh installs it)"
                    .into(),
            )
        }
        Err(e) => return Err(format!("cannot run valgrind: {e}")),
    };
    if !res.status.success() {
        return Err(format!(
            "valgrind --tool=callgrind {} --device {} --workload {} --inner {n} failed ({}):\n{}{}",
            exe.display(),
            d.name(),
            w.name(),
            res.status,
            String::from_utf8_lossy(&res.stdout),
            String::from_utf8_lossy(&res.stderr)
        ));
    }
    let text = std::fs::read_to_string(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let total = text
        .lines()
        .filter_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .find_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .ok_or_else(|| format!("{}: no `totals:` or `summary:` line", out.display()))?;
    if total == 0 {
        return Err(format!(
            "callgrind counted nothing in `{}`: is the binary stripped of symbols, or was \
             the counted function inlined?",
            w.toggle()
        ));
    }
    Ok(total)
}

/// Instructions per packet of one case.
fn measure(d: Device, w: Workload, keep: Option<&Path>) -> Result<f64, String> {
    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let dir = match keep {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
            d.to_path_buf()
        }
        None => std::env::temp_dir(),
    };
    let tag = if keep.is_some() {
        String::new()
    } else {
        format!(".{}", std::process::id())
    };
    let files: Vec<PathBuf> = [N_LO, N_HI]
        .iter()
        .map(|n| dir.join(format!("engine-ipp.{}-{}.{n}{tag}.out", d.name(), w.name())))
        .collect();
    let counts = [N_LO, N_HI]
        .iter()
        .zip(&files)
        .map(|(&n, f)| callgrind(&exe, d, w, n, f))
        .collect::<Result<Vec<u64>, String>>();
    if keep.is_none() {
        for f in &files {
            let _ = std::fs::remove_file(f);
        }
    }
    let counts = counts?;
    let (lo, hi) = (counts[0], counts[1]);
    let packets = u64::from(N_HI - N_LO) * BURST as u64;
    if hi <= lo {
        return Err(format!("Ir({N_HI}) = {hi} is not above Ir({N_LO}) = {lo}"));
    }
    let ipp = (hi - lo) as f64 / packets as f64;
    // A burst's instructions under a few per packet, or above ten thousand, means the
    // toggle caught the wrong function or something else.
    if !(5.0..10_000.0).contains(&ipp) {
        return Err(format!(
            "implausible {ipp:.1} instructions per packet (Ir {lo} and {hi})"
        ));
    }
    Ok(ipp)
}

/// Measures the cases `args` selects and prints a BENCH line for each.
fn measure_all(args: &Args) -> Result<(), String> {
    let devices = [
        Device::E1000e,
        Device::Igb,
        Device::VirtioSplit,
        Device::VirtioPacked,
    ];
    let workloads = [Workload::Fwd, Workload::Tx, Workload::Rx];
    for d in devices
        .into_iter()
        .filter(|&d| args.device.is_none_or(|x| x == d))
    {
        for w in workloads
            .into_iter()
            .filter(|&w| args.workload.is_none_or(|x| x == w))
        {
            let ipp = measure(d, w, args.keep.as_deref())
                .map_err(|e| format!("{} {}: {e}", d.name(), w.name()))?;
            if (d, w) == (Device::E1000e, Workload::Fwd) {
                // Issue 3's figure, in the form it has always had (parsed as such).
                println!("BENCH case=engine-ipp instructions_per_packet={ipp:.1}");
            } else {
                println!(
                    "BENCH case=engine-ipp device={} workload={} instructions_per_packet={ipp:.1}",
                    d.name(),
                    w.name()
                );
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let r = match args.inner {
        Some(n) => inner(
            args.device.unwrap_or(Device::E1000e),
            args.workload.unwrap_or(Workload::Fwd),
            n,
        ),
        None => measure_all(&args),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("engine-ipp: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every case runs natively, as the measurement runs it under valgrind: the models
    /// accept what the driver posts, and every counter and kick is what it should be.
    #[test]
    fn every_case_runs_and_checks_out() {
        for d in [
            Device::E1000e,
            Device::Igb,
            Device::VirtioSplit,
            Device::VirtioPacked,
        ] {
            for w in [Workload::Fwd, Workload::Tx, Workload::Rx] {
                if let Err(e) = inner(d, w, PERIOD) {
                    panic!("{} {}: {e}", d.name(), w.name());
                }
            }
        }
    }
}
