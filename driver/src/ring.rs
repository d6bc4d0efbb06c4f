//! The ring engine: one implementation of batching, refill, completion and doorbell policy
//! for every device, in the manner of FreeBSD's iflib. A device supplies only a small
//! [`TxDescOps`]/[`RxDescOps`] impl: write a descriptor, ring the doorbell, look at a
//! write-back. Generic over the ops, so nothing is dispatched dynamically per packet.
//!
//! Index arithmetic: producer and consumer indices are free-running `u32`s; a ring position
//! is `index & mask` with a power-of-two ring, and `pidx.wrapping_sub(cidx)` is the number
//! in flight, correct across the 2^32 wrap.

use std::sync::atomic::{fence, Ordering};

use crate::mempool::{BufRing, MempoolCache, PacketBuf};

/// Stores `b` in a slot known to be empty, without a drop check of the old value.
#[inline(always)]
fn put(slot: &mut Option<PacketBuf>, b: PacketBuf) {
    let old = slot.replace(b);
    debug_assert!(old.is_none(), "slot still holds a buffer");
    std::mem::forget(old);
}

/// A burst of packets: a fixed-capacity queue that never reallocates on the data path.
/// `rx_burst` appends at the back; `tx_burst` takes from the front.
pub struct PacketBatch {
    /// `cap` slots; the packets are `slots[head..tail]`.
    slots: Box<[Option<PacketBuf>]>,
    head: usize,
    tail: usize,
}

impl PacketBatch {
    /// An empty batch holding at most `cap` packets (DPDK's usual burst is 32).
    pub fn new(cap: usize) -> Self {
        PacketBatch {
            slots: (0..cap).map(|_| None).collect(),
            head: 0,
            tail: 0,
        }
    }

    /// Packets in the batch.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.tail - self.head
    }

    /// Whether the batch is empty.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.tail == self.head
    }

    /// The most packets the batch holds.
    #[inline(always)]
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Free places.
    #[inline(always)]
    pub fn room(&self) -> usize {
        self.slots.len() - self.len()
    }

    /// Appends a packet; gives it back if the batch is full.
    #[inline(always)]
    pub fn push(&mut self, buf: PacketBuf) -> Result<(), PacketBuf> {
        if self.tail == self.slots.len() {
            if self.head == 0 {
                return Err(buf);
            }
            self.compact();
        }
        put(&mut self.slots[self.tail], buf);
        self.tail += 1;
        Ok(())
    }

    #[cold]
    fn compact(&mut self) {
        let n = self.len();
        for i in 0..n {
            self.slots.swap(i, self.head + i);
        }
        self.head = 0;
        self.tail = n;
    }

    /// Puts back a packet just popped, at the front.
    #[inline(always)]
    fn unpop(&mut self, buf: PacketBuf) {
        if self.head == 0 {
            // The pop emptied the batch (and rewound it).
            debug_assert_eq!(self.tail, 0);
            self.tail = 1;
        } else {
            self.head -= 1;
        }
        put(&mut self.slots[self.head], buf);
    }

    /// Removes and returns the first packet.
    #[inline(always)]
    pub fn pop(&mut self) -> Option<PacketBuf> {
        if self.head == self.tail {
            return None;
        }
        let b = self.slots[self.head].take();
        self.head += 1;
        if self.head == self.tail {
            self.head = 0;
            self.tail = 0;
        }
        b
    }

    /// The packet at `i`.
    pub fn get(&self, i: usize) -> Option<&PacketBuf> {
        if i >= self.len() {
            return None;
        }
        self.slots[self.head + i].as_ref()
    }

    /// The packets, in order.
    pub fn iter(&self) -> impl Iterator<Item = &PacketBuf> {
        self.slots[self.head..self.tail]
            .iter()
            .filter_map(|b| b.as_ref())
    }

    /// The packets, in order, mutable.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut PacketBuf> {
        self.slots[self.head..self.tail]
            .iter_mut()
            .filter_map(|b| b.as_mut())
    }

    /// Takes every packet out, in order.
    pub fn drain(&mut self) -> impl Iterator<Item = PacketBuf> + '_ {
        std::iter::from_fn(move || self.pop())
    }

    /// Returns every packet to `cache`.
    pub fn free_into(&mut self, cache: &mut MempoolCache) {
        while let Some(b) = self.pop() {
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
    bufs: BufRing,
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
            bufs: BufRing::new(n),
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
        let start = self.pidx;
        let end = self.cidx.wrapping_add(self.mask); // entries - 1 posted at most
        let mut pidx = start;
        while pidx != end {
            if self.bufs.is_occupied(pidx) {
                break; // the device still holds this slot (out-of-order completion)
            }
            let Some(buf) = cache.alloc() else {
                self.stats.no_buf += 1;
                break;
            };
            self.ops
                .refill(pidx, buf.data_iova(), buf.capacity() as u32);
            self.bufs.put(pidx, buf);
            pidx = pidx.wrapping_add(1);
        }
        self.pidx = pidx;
        let n = pidx.wrapping_sub(start);
        if n > 0 {
            // Descriptor stores before the tail store (see mmio.rs on x86 ordering).
            fence(Ordering::Release);
            self.ops.flush(pidx);
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
        let mut cidx = self.cidx;
        let pidx = self.pidx;
        while got < room && cidx != pidx {
            let Some(c) = self.ops.poll(cidx) else {
                break;
            };
            cidx = cidx.wrapping_add(1);
            let Some(mut buf) = self.bufs.take(c.slot) else {
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
            buf.meta_mut().flags = c.flags;
            bytes += c.len as u64;
            // Cannot fail: got < room.
            let _ = out.push(buf);
            got += 1;
        }
        self.cidx = cidx;
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
    bufs: BufRing,
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
            bufs: BufRing::new(n),
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
        let mut cidx = start;
        let mut completed = 0u64;
        while self.rs_head != self.rs_tail {
            let idx = self.rs[(self.rs_head & self.mask) as usize];
            if !self.ops.is_done(idx) {
                break;
            }
            // The device wrote DD after it had read every earlier descriptor.
            fence(Ordering::Acquire);
            let end = idx.wrapping_add(1);
            while cidx != end {
                if let Some(b) = self.bufs.take(cidx) {
                    cache.free(b);
                    completed += 1;
                }
                cidx = cidx.wrapping_add(1);
            }
            self.rs_head = self.rs_head.wrapping_add(1);
        }
        self.cidx = cidx;
        self.stats.completed += completed;
        cidx.wrapping_sub(start)
    }

    /// Queues the front of `pkts` for transmission, as many as fit, and rings the doorbell
    /// once. Sent packets leave `pkts`; the rest stay for the caller to retry or free.
    /// Returns the number sent.
    #[inline]
    pub fn tx_burst(&mut self, cache: &mut MempoolCache, pkts: &mut PacketBatch) -> usize {
        let entries = self.mask + 1;
        if self.rs_head != self.rs_tail {
            self.reclaim(cache);
        }
        let mut sent = 0;
        let mut bytes = 0u64;
        let mut pidx = self.pidx;
        let mut since_rs = self.since_rs;
        // Keep one descriptor free: tail == head means empty to the device.
        let mut free = entries - 1 - pidx.wrapping_sub(self.cidx);
        while let Some(pkt) = pkts.pop() {
            if pkt.is_empty() || pkt.len() > self.max_frame {
                // Cannot be sent: drop it here rather than hand the device a bad descriptor.
                cache.free(pkt);
                self.stats.bad_packet += 1;
                continue;
            }
            let need = self.ops.descs_needed(&pkt);
            if need > free {
                pkts.unpop(pkt);
                self.stats.ring_full += 1;
                break;
            }
            let report = since_rs + need >= self.rs_interval;
            let used = self.ops.encap(pidx, &pkt, report);
            debug_assert_eq!(used, need);
            let last = pidx.wrapping_add(used - 1);
            bytes += pkt.len() as u64;
            self.bufs.put(last, pkt);
            if report {
                self.rs[(self.rs_tail & self.mask) as usize] = last;
                self.rs_tail = self.rs_tail.wrapping_add(1);
                since_rs = 0;
            } else {
                since_rs += used;
            }
            pidx = pidx.wrapping_add(used);
            free -= used;
            sent += 1;
        }
        self.pidx = pidx;
        self.since_rs = since_rs;
        if sent > 0 {
            // Descriptor stores before the tail store (see mmio.rs on x86 ordering).
            fence(Ordering::Release);
            self.ops.flush(pidx);
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
