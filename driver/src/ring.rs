//! The ring engine: one implementation of batching, refill, completion and doorbell policy
//! for every device, in the manner of FreeBSD's iflib. A device supplies only a small
//! [`TxDescOps`]/[`RxDescOps`] impl: write a descriptor, ring the doorbell, look at a
//! write-back. Generic over the ops, so nothing is dispatched dynamically per packet.
//!
//! Index arithmetic: producer and consumer indices are free-running `u32`s; a ring position
//! is `index & mask` with a power-of-two ring, and `pidx.wrapping_sub(cidx)` is the number
//! in flight, correct across the 2^32 wrap.

use std::collections::VecDeque;
use std::sync::atomic::{fence, Ordering};

use crate::mempool::{MempoolCache, PacketBuf};

/// A burst of packets: a fixed-capacity queue that never reallocates on the data path.
/// `rx_burst` appends at the back; `tx_burst` takes from the front.
pub struct PacketBatch {
    bufs: VecDeque<PacketBuf>,
    cap: usize,
}

impl PacketBatch {
    /// An empty batch holding at most `cap` packets (DPDK's usual burst is 32).
    pub fn new(cap: usize) -> Self {
        PacketBatch {
            bufs: VecDeque::with_capacity(cap),
            cap,
        }
    }

    /// Packets in the batch.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.bufs.len()
    }

    /// Whether the batch is empty.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.bufs.is_empty()
    }

    /// The most packets the batch holds.
    #[inline(always)]
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Free places.
    #[inline(always)]
    pub fn room(&self) -> usize {
        self.cap - self.bufs.len()
    }

    /// Appends a packet; gives it back if the batch is full.
    #[inline(always)]
    pub fn push(&mut self, buf: PacketBuf) -> Result<(), PacketBuf> {
        if self.bufs.len() >= self.cap {
            return Err(buf);
        }
        self.bufs.push_back(buf);
        Ok(())
    }

    /// Removes and returns the first packet.
    #[inline(always)]
    pub fn pop(&mut self) -> Option<PacketBuf> {
        self.bufs.pop_front()
    }

    /// The packet at `i`.
    pub fn get(&self, i: usize) -> Option<&PacketBuf> {
        self.bufs.get(i)
    }

    /// The packets, in order.
    pub fn iter(&self) -> impl Iterator<Item = &PacketBuf> {
        self.bufs.iter()
    }

    /// The packets, in order, mutable.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut PacketBuf> {
        self.bufs.iter_mut()
    }

    /// Takes every packet out, in order.
    pub fn drain(&mut self) -> std::collections::vec_deque::Drain<'_, PacketBuf> {
        self.bufs.drain(..)
    }

    /// Returns every packet to `cache`.
    pub fn free_into(&mut self, cache: &mut MempoolCache) {
        for b in self.bufs.drain(..) {
            cache.free(b);
        }
    }
}

/// What a device writes back for one received buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxCompletion {
    /// Which posted buffer the device used: a ring position for e1000e, a descriptor id
    /// for virtio. Checked by the engine, never trusted.
    pub slot: u32,
    /// Bytes the device says it wrote. Checked against the buffer, never trusted.
    pub len: u32,
    /// Last buffer of the frame.
    pub eop: bool,
    /// The device flagged the frame as bad (CRC, symbol, length errors).
    pub error: bool,
    /// `PacketMeta::RX_*` checksum results.
    pub flags: u32,
}

/// Per-device RX descriptor operations.
pub trait RxDescOps {
    /// Ring size (a power of two).
    fn entries(&self) -> u32;
    /// Writes a receive descriptor for the buffer at `iova` at producer index `pidx`.
    fn refill(&mut self, pidx: u32, iova: u64, len: u32);
    /// Hands every descriptor before producer index `pidx` to the device.
    fn flush(&mut self, pidx: u32);
    /// The write-back at consumer index `cidx`, or `None` if the device is not done with it.
    /// Must read the done bit first and fence before reading the rest.
    fn poll(&mut self, cidx: u32) -> Option<RxCompletion>;
}

/// Per-device TX descriptor operations.
pub trait TxDescOps {
    /// Ring size (a power of two).
    fn entries(&self) -> u32;
    /// Descriptors `pkt` needs.
    fn descs_needed(&self, pkt: &PacketBuf) -> u32;
    /// Writes `pkt`'s descriptors from producer index `pidx`; `report` asks the device to
    /// write back completion on the last one. Returns the number of descriptors written.
    fn encap(&mut self, pidx: u32, pkt: &PacketBuf, report: bool) -> u32;
    /// Hands every descriptor before producer index `pidx` to the device (the doorbell).
    fn flush(&mut self, pidx: u32);
    /// Whether the descriptor at index `idx`, written with `report`, is complete.
    fn is_done(&self, idx: u32) -> bool;
}

/// Receive counters: every dropped frame is counted under one reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxStats {
    /// Frames delivered.
    pub packets: u64,
    /// Bytes delivered.
    pub bytes: u64,
    /// Refills that found the mempool empty (the ring ran short of buffers).
    pub no_buf: u64,
    /// Frames dropped because the device reported a length beyond the buffer.
    pub bad_len: u64,
    /// Frames dropped because the device flagged a receive error.
    pub errors: u64,
    /// Completions naming a buffer that was not posted (dropped).
    pub bad_slot: u64,
    /// Frames dropped because they spanned several buffers (no chain support configured).
    pub multi_buffer: u64,
    /// Doorbell (tail) writes.
    pub doorbells: u64,
}

/// Transmit counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxStats {
    /// Frames handed to the device.
    pub packets: u64,
    /// Bytes handed to the device.
    pub bytes: u64,
    /// Bursts cut short because the ring was full (the caller keeps the rest).
    pub ring_full: u64,
    /// Frames refused because they cannot be sent (empty, or longer than the device takes);
    /// they are dropped.
    pub bad_packet: u64,
    /// Doorbell (tail) writes.
    pub doorbells: u64,
    /// Buffers recycled after the device finished with them.
    pub completed: u64,
}

/// A receive ring driven by the engine.
pub struct RxQueue<D: RxDescOps> {
    ops: D,
    bufs: Box<[Option<PacketBuf>]>,
    mask: u32,
    /// Next index to poll.
    cidx: u32,
    /// Next index to refill.
    pidx: u32,
    /// Discarding the rest of a frame whose first buffer was dropped.
    discarding: bool,
    /// Refill (and write the tail) once this many descriptors are free.
    free_thresh: u32,
    stats: RxStats,
}

impl<D: RxDescOps> RxQueue<D> {
    /// Wraps `ops`; call [`RxQueue::fill`] before enabling the device's receiver.
    /// Refills happen once `free_thresh` descriptors are free (clamped to a quarter of the
    /// ring, so the device never runs short), one tail write each: DPDK's rx_free_thresh.
    pub fn new(ops: D, free_thresh: u32) -> Self {
        let n = ops.entries();
        assert!(n.is_power_of_two() && n >= 2);
        let free_thresh = free_thresh.clamp(1, (n / 4).max(1));
        RxQueue {
            ops,
            bufs: (0..n).map(|_| None).collect(),
            mask: n - 1,
            cidx: 0,
            pidx: 0,
            discarding: false,
            free_thresh,
            stats: RxStats::default(),
        }
    }

    /// The device ops.
    pub fn ops(&self) -> &D {
        &self.ops
    }

    /// Counters.
    pub fn stats(&self) -> &RxStats {
        &self.stats
    }

    /// Buffers posted to the device.
    pub fn posted(&self) -> u32 {
        self.pidx.wrapping_sub(self.cidx)
    }

    /// Posts buffers until the ring is full (one slot is always left empty: a ring whose
    /// tail equals its head is empty to the device) and rings the doorbell once.
    pub fn fill(&mut self, cache: &mut MempoolCache) -> u32 {
        let limit = self.mask; // entries - 1
        let start = self.pidx;
        while self.pidx.wrapping_sub(self.cidx) < limit {
            let slot = (self.pidx & self.mask) as usize;
            if self.bufs[slot].is_some() {
                break; // the device still holds this slot (out-of-order completion)
            }
            let Some(buf) = cache.alloc() else {
                self.stats.no_buf += 1;
                break;
            };
            self.ops
                .refill(self.pidx, buf.data_iova(), buf.capacity() as u32);
            self.bufs[slot] = Some(buf);
            self.pidx = self.pidx.wrapping_add(1);
        }
        let n = self.pidx.wrapping_sub(start);
        if n > 0 {
            // Descriptor stores before the tail store (see mmio.rs on x86 ordering).
            fence(Ordering::Release);
            self.ops.flush(self.pidx);
            self.stats.doorbells += 1;
        }
        n
    }

    /// Receives up to `out.room()` frames into `out`, then refills what it took and writes
    /// the tail once. Returns the number of frames received.
    #[inline]
    pub fn rx_burst(&mut self, cache: &mut MempoolCache, out: &mut PacketBatch) -> usize {
        let mut got = 0;
        let room = out.room();
        let mut bytes = 0u64;
        while got < room && self.cidx != self.pidx {
            let Some(c) = self.ops.poll(self.cidx) else {
                break;
            };
            self.cidx = self.cidx.wrapping_add(1);
            let Some(mut buf) = self.bufs[(c.slot & self.mask) as usize].take() else {
                self.stats.bad_slot += 1;
                continue;
            };
            if self.discarding || !c.eop {
                // Frames spanning buffers are not assembled (no chain support yet): drop
                // every buffer of the frame, counted once, at its last buffer.
                self.discarding = !c.eop;
                if c.eop {
                    self.stats.multi_buffer += 1;
                }
                cache.free(buf);
                continue;
            }
            if c.error {
                self.stats.errors += 1;
                cache.free(buf);
                continue;
            }
            if !buf.set_len(c.len as usize) {
                self.stats.bad_len += 1;
                cache.free(buf);
                continue;
            }
            buf.meta.flags = c.flags;
            bytes += c.len as u64;
            // Cannot fail: got < room.
            let _ = out.push(buf);
            got += 1;
        }
        self.stats.packets += got as u64;
        self.stats.bytes += bytes;
        // Refill in batches of free_thresh, one tail write each. The device is never left
        // with an empty ring by this: it keeps at least 3/4 of it. (QEMU's e1000e disables a
        // port with no free descriptor until the tail moves, stalling its hub's senders.)
        if self.mask - self.pidx.wrapping_sub(self.cidx) >= self.free_thresh {
            self.fill(cache);
        }
        got
    }

    /// Returns every posted buffer to `cache` (after the device's receiver is off).
    pub fn release(&mut self, cache: &mut MempoolCache) {
        for b in self.bufs.iter_mut() {
            if let Some(b) = b.take() {
                cache.free(b);
            }
        }
        self.cidx = self.pidx;
    }
}

/// A transmit ring driven by the engine.
pub struct TxQueue<D: TxDescOps> {
    ops: D,
    /// The buffer of each in-flight packet, at the index of its last descriptor.
    bufs: Box<[Option<PacketBuf>]>,
    mask: u32,
    /// Next descriptor to fill.
    pidx: u32,
    /// Oldest descriptor not yet reclaimed.
    cidx: u32,
    /// Indices of descriptors written with `report`, oldest first (a ring of `entries`).
    rs: Box<[u32]>,
    rs_head: u32,
    rs_tail: u32,
    /// Descriptors since the last reported one.
    since_rs: u32,
    /// Ask for a completion every this many descriptors.
    rs_interval: u32,
    /// Largest frame the device takes.
    max_frame: usize,
    stats: TxStats,
}

impl<D: TxDescOps> TxQueue<D> {
    /// Wraps `ops`, asking for a completion write-back every `rs_interval` descriptors.
    pub fn new(ops: D, rs_interval: u32, max_frame: usize) -> Self {
        let n = ops.entries();
        assert!(n.is_power_of_two() && n >= 4);
        // At most n-1 descriptors are in flight; a report must come at least that often or
        // a full ring would have nothing left to complete.
        let rs_interval = rs_interval.clamp(1, n / 2);
        TxQueue {
            ops,
            bufs: (0..n).map(|_| None).collect(),
            mask: n - 1,
            pidx: 0,
            cidx: 0,
            rs: vec![0; n as usize].into_boxed_slice(),
            rs_head: 0,
            rs_tail: 0,
            since_rs: 0,
            rs_interval,
            max_frame,
            stats: TxStats::default(),
        }
    }

    /// The device ops.
    pub fn ops(&self) -> &D {
        &self.ops
    }

    /// Counters.
    pub fn stats(&self) -> &TxStats {
        &self.stats
    }

    /// Descriptors in flight (written, not yet reclaimed).
    pub fn in_flight(&self) -> u32 {
        self.pidx.wrapping_sub(self.cidx)
    }

    /// Recycles the buffers of every completed report into `cache`; returns descriptors
    /// reclaimed.
    #[inline]
    pub fn reclaim(&mut self, cache: &mut MempoolCache) -> u32 {
        let start = self.cidx;
        while self.rs_head != self.rs_tail {
            let idx = self.rs[(self.rs_head & self.mask) as usize];
            if !self.ops.is_done(idx) {
                break;
            }
            // The device wrote DD after it had read every earlier descriptor.
            fence(Ordering::Acquire);
            let end = idx.wrapping_add(1);
            while self.cidx != end {
                if let Some(b) = self.bufs[(self.cidx & self.mask) as usize].take() {
                    cache.free(b);
                    self.stats.completed += 1;
                }
                self.cidx = self.cidx.wrapping_add(1);
            }
            self.rs_head = self.rs_head.wrapping_add(1);
        }
        self.cidx.wrapping_sub(start)
    }

    /// Queues the front of `pkts` for transmission, as many as fit, and rings the doorbell
    /// once. Sent packets leave `pkts`; the rest stay for the caller to retry or free.
    /// Returns the number sent.
    #[inline]
    pub fn tx_burst(&mut self, cache: &mut MempoolCache, pkts: &mut PacketBatch) -> usize {
        let entries = self.mask + 1;
        if self.in_flight() + pkts.len() as u32 >= entries - self.rs_interval {
            self.reclaim(cache);
        }
        let mut sent = 0;
        let mut bytes = 0u64;
        while let Some(front) = pkts.bufs.front() {
            if front.is_empty() || front.len() > self.max_frame {
                // Cannot be sent: drop it here rather than hand the device a bad descriptor.
                if let Some(b) = pkts.pop() {
                    cache.free(b);
                }
                self.stats.bad_packet += 1;
                continue;
            }
            let need = self.ops.descs_needed(front);
            // Keep one descriptor free: tail == head means empty to the device.
            if self.in_flight() + need > entries - 1 {
                self.stats.ring_full += 1;
                break;
            }
            let Some(pkt) = pkts.pop() else { break };
            let report = self.since_rs + need >= self.rs_interval;
            let used = self.ops.encap(self.pidx, &pkt, report);
            debug_assert_eq!(used, need);
            let last = self.pidx.wrapping_add(used - 1);
            bytes += pkt.len() as u64;
            self.bufs[(last & self.mask) as usize] = Some(pkt);
            if report {
                self.rs[(self.rs_tail & self.mask) as usize] = last;
                self.rs_tail = self.rs_tail.wrapping_add(1);
                self.since_rs = 0;
            } else {
                self.since_rs += used;
            }
            self.pidx = self.pidx.wrapping_add(used);
            sent += 1;
        }
        if sent > 0 {
            // Descriptor stores before the tail store (see mmio.rs on x86 ordering).
            fence(Ordering::Release);
            self.ops.flush(self.pidx);
            self.stats.doorbells += 1;
            self.stats.packets += sent as u64;
            self.stats.bytes += bytes;
        }
        sent
    }

    /// Returns every in-flight buffer to `cache` (after the device's transmitter is off).
    pub fn release(&mut self, cache: &mut MempoolCache) {
        for b in self.bufs.iter_mut() {
            if let Some(b) = b.take() {
                cache.free(b);
            }
        }
        self.cidx = self.pidx;
        self.rs_head = self.rs_tail;
    }
}
