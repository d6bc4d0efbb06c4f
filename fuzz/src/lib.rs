//! The harness of the fuzz targets: tenge's virtio-net RX and TX queues (the one ring
//! engine over split or packed rings, with or without MRG_RXBUF and receive offloads), or
//! the 82576's (igb: advanced descriptors), on an identity-mapped region, driven by a sequence of operations decoded from the fuzzer's
//! bytes. Some are a device writing back whatever it likes (used entries naming ids never
//! made available or beyond the ring, lengths beyond the buffer, duplicates, used index
//! jumps, any descriptor flags, any event suppression state, any `virtio_net_hdr`: buffer
//! counts, checksum offsets, GSO types), some a well-behaved device (frames over one or
//! several buffers), some the driver polling, sending and giving buffers back.
//!
//! The oracle: no panic and no out-of-bounds access (the targets run under AddressSanitizer),
//! every burst's count matches what it delivered and the packet counter, every delivered
//! buffer (each segment of a chain) is from the pool, fits its buffer and is not already
//! held by the application (a buffer handed out twice), and once everything is given back
//! and the queues released, the pool holds every buffer again: no buffer lost, none
//! returned twice.

use std::collections::HashSet;
use std::sync::Arc;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use tenge::packet::mempool::{host_pool, Mempool, MempoolCache, PacketBuf};
use tenge::platform::dma::{DmaRegion, HugepagePolicy, IdentityMapper};
use tenge::ring::{PacketBatch, RxDescOps, RxQueue, TxDescOps, TxQueue};
use tenge::virtio::{tx_burst, Doorbell, RxHdrMode, HDR_LEN, MAX_FRAME};
use tenge_firmware_iface::{Mmio, NarrowMmio};

/// Buffers in the pool: more than two of the largest rings hold.
pub const BUFFERS: u32 = 160;

/// Operations decoded per run, at most (longer inputs are cut).
pub const MAX_OPS: usize = 400;

/// A notify structure that ignores doorbell writes.
pub struct Bells;

impl Mmio for Bells {
    fn read32(&self, _off: u32) -> u32 {
        0
    }
    fn write32(&self, _off: u32, _v: u32) {}
}

impl NarrowMmio for Bells {
    fn read8(&self, _off: u32) -> u8 {
        0
    }
    fn read16(&self, _off: u32) -> u16 {
        0
    }
    fn write8(&self, _off: u32, _v: u8) {}
    fn write16(&self, _off: u32, _v: u16) {}
}

/// Doorbells of the RX and TX queues.
pub fn bells(queue: u16, event_idx: bool) -> Doorbell<Bells> {
    Doorbell::new(
        Arc::new(Bells),
        0x3000 + 4 * u32::from(queue),
        queue,
        event_idx,
    )
}

/// A zeroed, identity-mapped region for both rings: RX at 0, TX at [`TX_RING_OFFSET`].
pub fn region() -> Arc<DmaRegion> {
    Arc::new(DmaRegion::allocate(Arc::new(IdentityMapper), 1 << 16, HugepagePolicy::Never).unwrap())
}

/// Where the TX ring starts in [`region`].
pub const TX_RING_OFFSET: usize = 1 << 15;

/// The ring geometry and notification mode of a run.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Setup {
    /// Ring size `1 << (2 + log2 % 5)`: 4 to 64 descriptors.
    pub log2: u8,
    /// VIRTIO_F_EVENT_IDX negotiated.
    pub event_idx: bool,
    /// The RX refill threshold (the engine clamps it).
    pub free_thresh: u8,
    /// The TX report interval.
    pub rs_interval: u8,
    /// VIRTIO_NET_F_MRG_RXBUF negotiated: `num_buffers` in each header counts.
    pub mergeable: bool,
    /// VIRTIO_NET_F_GUEST_CSUM negotiated: header checksum flags and GSO types count.
    pub offloads: bool,
    /// Partial checksums flagged, not completed (`PortConfig::rx_fill_partial_checksums`
    /// off).
    pub leave_partial: bool,
}

impl Setup {
    /// Descriptors per ring.
    pub fn size(&self) -> u16 {
        1 << (2 + self.log2 % 5)
    }

    /// How the RX queue reads headers.
    pub fn hdr_mode(&self) -> RxHdrMode {
        RxHdrMode {
            hash: false,
            mergeable: self.mergeable,
            offloads: self.offloads,
            leave_partial: self.leave_partial,
        }
    }
}

/// A `virtio_net_hdr` a device writes in front of a frame.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Hdr {
    /// A plain frame of `n` buffers (`num_buffers = n`, no offloads).
    Plain,
    /// Any 12 bytes.
    Raw([u8; HDR_LEN]),
}

impl Hdr {
    /// The header bytes for a frame over `bufs` buffers.
    pub fn bytes(self, bufs: u16) -> [u8; HDR_LEN] {
        match self {
            Hdr::Plain => {
                let mut h = [0u8; HDR_LEN];
                h[10..12].copy_from_slice(&bufs.to_le_bytes());
                h
            }
            Hdr::Raw(b) => b,
        }
    }
}

/// Writes `bytes` into the buffer at `addr` as a device's DMA would (at most 2048 bytes:
/// every pool buffer's data room). Address 0 (a descriptor the driver never wrote) is left
/// alone.
pub fn device_write(addr: u64, bytes: &[u8]) {
    if addr == 0 {
        return;
    }
    let n = bytes.len().min(2048);
    // SAFETY: a nonzero buffer address in an RX descriptor was written by the driver's
    // refill: the IOVA of a pool buffer's data, which with IdentityMapper is that memory's
    // address, with 2048 bytes of data room behind it; the pool outlives the run, and no
    // reference into the buffer is live while this runs (as in `device_write_hdr`).
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as *mut u8, n) };
}

/// Writes `hdr` where the device writes a frame's header: the first bytes of the buffer a
/// descriptor with address `addr` names. Descriptors the driver never wrote hold address 0
/// and are left alone.
pub fn device_write_hdr(addr: u64, hdr: [u8; HDR_LEN]) {
    if addr == 0 {
        return;
    }
    // SAFETY: a nonzero descriptor address was written by the driver's refill: the IOVA of
    // a pool buffer's last HDR_LEN bytes of headroom, which with IdentityMapper is that
    // memory's address; the pool outlives the run, and no reference into the buffer is
    // live while this runs (a device's DMA, which may hit a buffer the driver already took
    // back if the device misbehaves: still pool memory).
    unsafe { std::ptr::copy_nonoverlapping(hdr.as_ptr(), addr as *mut u8, HDR_LEN) };
}

/// What the driver side does between device write-backs.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum DriverOp {
    /// `rx_burst` into a batch of `1 + n % 64`.
    Burst(u8),
    /// `tx_burst` of `1 + n % 64` frames of `len % 1600` bytes (0 and > 1514: refused).
    Send(u8, u16),
    /// Gives every held buffer back.
    Free,
}

/// How the port sends a burst on a TX queue (virtio: `tenge::virtio::tx_burst`, which
/// writes the header; the Intel NICs: the engine's `tx_burst`).
pub type SendFn<T> = fn(&mut TxQueue<T>, &mut MempoolCache, &mut PacketBatch) -> usize;

/// The application and the two queues, checked after every step.
pub struct Driver<R: RxDescOps, T: TxDescOps> {
    pub pool: Mempool,
    pub cache: MempoolCache,
    pub rxq: RxQueue<R>,
    pub txq: TxQueue<T>,
    send: SendFn<T>,
    /// The data address of every pool buffer as the RX refill posts it.
    buffer_addrs: HashSet<u64>,
    size: u16,
    held: Vec<PacketBuf>,
    held_idx: HashSet<u32>,
}

impl<R: RxDescOps, T: tenge::virtio::VirtioTxOps> Driver<R, T> {
    /// virtio queues over `rx` and `tx` of `setup.size()` entries, RX filled.
    pub fn new(setup: &Setup, rx: R, tx: T) -> Self {
        Driver::with_sender(setup, rx, tx, tx_burst, MAX_FRAME + tenge::virtio::HDR_LEN)
    }
}

impl<R: RxDescOps, T: TxDescOps> Driver<R, T> {
    /// Queues over `rx` and `tx` of `setup.size()` entries, RX filled, sending with `send`
    /// frames of up to `max_frame` bytes.
    pub fn with_sender(setup: &Setup, rx: R, tx: T, send: SendFn<T>, max_frame: usize) -> Self {
        let pool = host_pool(BUFFERS).unwrap();
        let mut cache = pool.cache(16);
        let mut all = Vec::new();
        while let Some(b) = cache.alloc() {
            all.push(b);
        }
        let buffer_addrs = all.iter().map(PacketBuf::data_iova).collect();
        for b in all {
            cache.free(b);
        }
        let mut rxq = RxQueue::new(rx, u32::from(setup.free_thresh));
        let txq = TxQueue::new(tx, u32::from(setup.rs_interval).max(1), max_frame);
        rxq.fill(&mut cache);
        Driver {
            pool,
            cache,
            rxq,
            txq,
            send,
            buffer_addrs,
            size: setup.size(),
            held: Vec::new(),
            held_idx: HashSet::new(),
        }
    }

    /// Sends `b` as the port does, and checks that what is left comes back as given.
    pub fn send(&mut self, b: &mut PacketBatch) -> usize {
        let offered = b.len();
        let sent = (self.send)(&mut self.txq, &mut self.cache, b);
        assert!(sent <= offered);
        assert!(self.txq.in_flight() < u32::from(self.size));
        sent
    }

    /// Runs one driver operation and checks what it returned.
    pub fn step(&mut self, op: DriverOp) {
        match op {
            DriverOp::Burst(n) => {
                let mut out = PacketBatch::new(1 + usize::from(n) % 64);
                let before = *self.rxq.stats();
                let got = self.rxq.rx_burst(&mut self.cache, &mut out);
                assert_eq!(got, out.len(), "rx_burst's count is what it delivered");
                assert_eq!(self.rxq.stats().packets - before.packets, got as u64);
                assert!(self.rxq.posted() < u32::from(self.size));
                for p in out.drain() {
                    assert!(p.pkt_len() > 0, "an empty frame delivered");
                    for seg in p.segments() {
                        assert!(seg.is_from(&self.pool), "a buffer from elsewhere");
                        assert!(seg.len() <= seg.capacity(), "len {}", seg.len());
                        assert!(
                            self.held_idx.insert(seg.index()),
                            "buffer {} delivered while the application still holds it",
                            seg.index()
                        );
                    }
                    self.held.push(p);
                }
            }
            DriverOp::Send(n, len) => {
                let len = usize::from(len) % 1600;
                let mut b = PacketBatch::new(1 + usize::from(n) % 64);
                while b.room() > 0 {
                    let Some(mut p) = self.cache.alloc() else {
                        break;
                    };
                    p.set_len(len.min(p.capacity()));
                    b.push(p).unwrap();
                }
                self.send(&mut b);
                for p in b.iter() {
                    assert_eq!(
                        p.len(),
                        len.min(p.capacity()),
                        "unsent frames come back as they were"
                    );
                }
                b.free_into(&mut self.cache);
            }
            DriverOp::Free => self.give_back(),
        }
    }

    /// Whether `addr` is where the RX refill posts a pool buffer's data: what a device that
    /// behaves finds in a descriptor the driver posted (one the device overwrote holds
    /// anything).
    pub fn is_rx_buffer(&self, addr: u64) -> bool {
        self.buffer_addrs.contains(&addr)
    }

    /// Frames the application holds (delivered, not given back).
    pub fn held_count(&self) -> usize {
        self.held.len()
    }

    /// The frames the application holds from the `i`-th on.
    pub fn held_from(&self, i: usize) -> impl Iterator<Item = &PacketBuf> {
        self.held.iter().skip(i)
    }

    fn give_back(&mut self) {
        for p in self.held.drain(..) {
            self.cache.free(p);
        }
        self.held_idx.clear();
    }

    /// Gives everything back, releases both queues and checks that the pool is whole.
    pub fn finish(mut self) {
        self.give_back();
        self.rxq.release(&mut self.cache);
        self.txq.release(&mut self.cache);
        drop(self.cache);
        assert_eq!(
            self.pool.free_count(),
            BUFFERS as usize,
            "every buffer back in the pool exactly once"
        );
    }
}
