//! The ring engine: one implementation of batching, refill, completion and doorbell policy
//! for every device, in the manner of FreeBSD's iflib. A device supplies only a small
//! [`TxDescOps`]/[`RxDescOps`] impl: write a descriptor, ring the doorbell, look at a
//! write-back. Generic over the ops, so nothing is dispatched dynamically per packet.
//!
//! Index arithmetic: producer and consumer indices are free-running `u32`s; a ring position
//! is `index & mask` with a power-of-two ring, and `pidx.wrapping_sub(cidx)` is the number
//! in flight, correct across the 2^32 wrap.

use crate::platform::barrier;

use crate::packet::mempool::{BufRing, MempoolCache, PacketBuf};

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

    /// Keeps the packets from position `from` on for which `keep` is true, in order, and
    /// returns the others to `cache`; returns how many went.
    pub fn retain_from(
        &mut self,
        from: usize,
        mut keep: impl FnMut(&mut PacketBuf) -> bool,
        cache: &mut MempoolCache,
    ) -> usize {
        let start = self.head + from.min(self.len());
        let mut kept = start;
        for i in start..self.tail {
            let Some(mut pkt) = self.slots[i].take() else {
                continue;
            };
            if keep(&mut pkt) {
                put(&mut self.slots[kept], pkt);
                kept += 1;
            } else {
                cache.free(pkt);
            }
        }
        let gone = self.tail - kept;
        self.tail = kept;
        if self.head == self.tail {
            self.head = 0;
            self.tail = 0;
        }
        gone
    }

    /// Moves the packets from position `from` on to the back of `other`, in order
    /// (`other` grows if it has no room for them: once, then it is large enough).
    pub fn move_from_into(&mut self, from: usize, other: &mut PacketBatch) {
        let start = self.head + from.min(self.len());
        let n = self.tail - start;
        if other.room() < n {
            other.grow(n);
        }
        for i in start..self.tail {
            if let Some(p) = self.slots[i].take() {
                // Room was made above.
                let _ = other.push(p);
            }
        }
        self.tail = start;
        if self.head == self.tail {
            self.head = 0;
            self.tail = 0;
        }
    }

    /// Appends `other`'s packets in order, as many as fit; the rest stay in `other`.
    pub fn append(&mut self, other: &mut PacketBatch) {
        while self.room() > 0 {
            match other.pop() {
                Some(p) => {
                    let _ = self.push(p);
                }
                None => break,
            }
        }
    }

    #[cold]
    fn grow(&mut self, n: usize) {
        let cap = self.len() + n;
        let mut slots: Box<[Option<PacketBuf>]> = (0..cap).map(|_| None).collect();
        let len = self.len();
        for (i, s) in slots.iter_mut().enumerate().take(len) {
            *s = self.slots[self.head + i].take();
        }
        self.slots = slots;
        self.head = 0;
        self.tail = len;
    }

    /// The free places after the last packet, all of them (the batch is compacted first):
    /// every one is `None`. A burst loop fills a prefix and calls [`PacketBatch::commit_back`].
    #[inline(always)]
    pub(crate) fn back_room(&mut self) -> &mut [Option<PacketBuf>] {
        if self.head != 0 {
            self.compact();
        }
        &mut self.slots[self.tail..]
    }

    /// Appends the first `n` places [`PacketBatch::back_room`] gave, which the caller filled.
    #[inline(always)]
    pub(crate) fn commit_back(&mut self, n: usize) {
        debug_assert!(n <= self.room());
        self.tail += n;
    }

    /// The packets, in place. A burst loop takes a prefix and calls
    /// [`PacketBatch::consume_front`].
    #[inline(always)]
    pub(crate) fn front(&mut self) -> &mut [Option<PacketBuf>] {
        &mut self.slots[self.head..self.tail]
    }

    /// Drops the first `n` places [`PacketBatch::front`] gave, which the caller emptied.
    #[inline(always)]
    pub(crate) fn consume_front(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.head += n;
        if self.head == self.tail {
            self.head = 0;
            self.tail = 0;
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
    /// `eop && !error`, which a device can test in one go, and nothing left for
    /// [`RxView::finish`] to do: the fast path's test.
    pub whole: bool,
    /// Buffers the frame spans, when its first buffer says so (virtio's `num_buffers`);
    /// 0 when its last buffer says so (`eop`, as e1000e does).
    pub bufs: u32,
    /// `PacketMeta::RX_*` flags: checksum results, the packet type and the RSS type. A
    /// frame over several buffers gets its first and its last buffer's.
    pub flags: u32,
    /// The RSS hash (meaningful when `flags` has an RSS type; 0 otherwise).
    pub hash: u32,
    /// The VLAN tag the device stripped (meaningful with `RX_VLAN_STRIPPED` in `flags`).
    /// Only the slow path stores it into the metadata: a completion with a tag is not
    /// `whole`, so frames without one pay nothing for it.
    pub vlan: u16,
}

/// Per-device RX descriptor operations.
pub trait RxDescOps {
    /// What the burst loops use: a `Copy` of what descriptor accesses need (the ring's
    /// address and mask), which they keep in registers.
    type View<'a>: RxView
    where
        Self: 'a;
    /// The data-path view of the ops.
    fn view(&self) -> Self::View<'_>;
    /// Ring size (a power of two).
    fn entries(&self) -> u32;
    /// Hands every descriptor before producer index `pidx` to the device.
    fn flush(&mut self, pidx: u32);
    /// As [`RxDescOps::flush`], from a burst that took frames: the device is delivering,
    /// and one that can say whether it needs a doorbell may owe it until the next
    /// [`RxDescOps::idle`] (virtio: `Doorbell::hold`). Every refill of a burst that took
    /// frames comes here.
    #[inline(always)]
    fn flush_busy(&mut self, pidx: u32) {
        self.flush(pidx)
    }
    /// A burst found nothing: the moment for a doorbell `flush_busy` held.
    #[inline(always)]
    fn idle(&mut self) {}
}

/// Per-device RX descriptor accesses, on a [`RxDescOps::View`].
pub trait RxView: Copy {
    /// Writes a receive descriptor for the buffer at `iova` at producer index `pidx`.
    fn refill(&self, pidx: u32, iova: u64, len: u32);
    /// Whether the device is done with the descriptor at consumer index `cidx` (reads only
    /// the done bit).
    fn is_done(&self, cidx: u32) -> bool;
    /// How many descriptors from consumer index `cidx` on, at most `n`, the device is done
    /// with, in a row ([`RxView::is_done`] on each; a device may do it faster).
    #[inline(always)]
    fn done_count(&self, cidx: u32, n: u32) -> u32 {
        let mut ready = 0;
        while ready < n && self.is_done(cidx.wrapping_add(ready)) {
            ready += 1;
        }
        ready
    }
    /// The write-back at consumer index `cidx`, which [`RxView::is_done`] has seen done:
    /// the caller fences (acquire) between the two.
    fn completion(&self, cidx: u32) -> RxCompletion;
    /// Hands the completions from consumer index `cidx` on, at most `n` (all seen done), to
    /// `take` with each one's position from `cidx`, while `take` says true; returns how many
    /// it took. May hand fewer than `n` (a device stops at the end of its ring). The
    /// default reads each with [`RxView::completion`]; a device whose write-backs are its
    /// descriptors walks them with a pointer ([`crate::platform::dma::RingView::span`]).
    #[inline(always)]
    fn completion_run(
        &self,
        cidx: u32,
        n: usize,
        mut take: impl FnMut(usize, RxCompletion) -> bool,
    ) -> usize {
        for k in 0..n {
            if !take(k, self.completion(cidx.wrapping_add(k as u32))) {
                return k;
            }
        }
        n
    }
    /// Whether a completion's `slot` can name a posted buffer at all. Buffers sit at masked
    /// slots, so an out-of-range id a device wrote (virtio's used-ring id) would alias
    /// another slot; such a completion is counted as `bad_slot`. A device whose slots are
    /// the engine's own indices (e1000e) keeps the default, which costs nothing.
    #[inline(always)]
    fn slot_in_range(&self, _slot: u32) -> bool {
        true
    }
    /// Every completion's `slot` is the consumer index it was read at (e1000e): buffers
    /// leave their slots in ring order, so the slots from the producer index on are always
    /// empty and the refill does not test them. False (virtio): a device names the buffer,
    /// and one it holds past others keeps its slot.
    const SLOT_IS_INDEX: bool = false;
    /// Whether a fast-path completion ([`RxCompletion::whole`]) may carry an RSS hash: false
    /// (RSS off, or a device whose hashed frames take the slow path) and the engine leaves
    /// the metadata's `rss_hash` as the refill reset it (0), one store a frame fewer. A
    /// device that reports a hash on the fast path returns true whenever it may.
    #[inline(always)]
    fn fast_hash(&self) -> bool {
        true
    }
    /// Whether a completion is only known once [`RxView::inspect`] has read what the device
    /// wrote into the buffer itself (virtio's header). A device that writes everything into
    /// its descriptors keeps `false`, and the engine never calls `inspect`.
    const INSPECT: bool = false;
    /// Completes `c`, the completion of a frame's first buffer, from what the device wrote
    /// into `buf` (virtio's `num_buffers` and checksum flags): clears `whole` when the frame
    /// spans several buffers or needs [`RxView::finish`].
    #[inline(always)]
    fn inspect(&self, _c: &mut RxCompletion, _buf: &PacketBuf) {}
    /// Sets the data of `buf`, a buffer that continues a frame (not its first), from its
    /// completion; false if it does not fit.
    #[inline(always)]
    fn continuation(&self, c: &RxCompletion, buf: &mut PacketBuf) -> bool {
        buf.set_len(c.len as usize)
    }
    /// Finishes a frame the fast path did not deliver (a chain, or a frame `inspect` marked):
    /// virtio completes a partial checksum and records a coalesced segment's size. False:
    /// the device described the frame inconsistently (dropped, counted as an error).
    #[inline(always)]
    fn finish(&self, _pkt: &mut PacketBuf) -> bool {
        true
    }
}

/// Per-device TX descriptor operations.
pub trait TxDescOps {
    /// What the burst loops use: see [`RxDescOps::View`].
    type View<'a>: TxView
    where
        Self: 'a;
    /// The data-path view of the ops.
    fn view(&self) -> Self::View<'_>;
    /// Ring size (a power of two).
    fn entries(&self) -> u32;
    /// Hands every descriptor before producer index `pidx` to the device (the doorbell).
    fn flush(&mut self, pidx: u32);
}

/// Per-device TX descriptor accesses, on a [`TxDescOps::View`].
///
/// The engine calls [`TxView::encap`] exactly once per packet, in ring order, after
/// [`TxView::descs_needed`] for the same packet (with no other packet between): a device
/// may keep per-queue state in its ops, which its view reaches through a `Cell` (the
/// context its hardware holds, as the 82574's and 82576's TX context descriptors), read it
/// in `descs_needed`, and update it in `encap`, which may write descriptors that carry no
/// packet data ahead of the packet's own. They count in `descs_needed`; the packet's buffer
/// is held at its last descriptor, so completion needs nothing more.
pub trait TxView: Copy {
    /// Descriptors `pkt` needs, those that are not packet data included.
    fn descs_needed(&self, pkt: &PacketBuf) -> u32;
    /// Writes `pkt`'s descriptors from producer index `pidx`; `report` asks the device to
    /// write back completion on the last one. Returns the number of descriptors written
    /// (what `descs_needed` said). May write into the packet's headroom (a header the
    /// device reads in front of the data, as virtio-net's).
    fn encap(&self, pidx: u32, pkt: &mut PacketBuf, report: bool) -> u32;
    /// [`TxView::encap`] for a packet [`TxView::single`] accepted (the engine's runs),
    /// without a report: one descriptor. A device with a faster way for that case
    /// overrides it.
    #[inline(always)]
    fn encap_single(&self, pidx: u32, pkt: &mut PacketBuf) {
        self.encap(pidx, pkt, false);
    }
    /// [`TxView::encap_single`] for a run: writes a descriptor from producer index `pidx`
    /// on, at most `n`, for each packet `next` hands out (given its position from `pidx`),
    /// and gives it to `park` once written; stops when `next` has none. Returns how many it
    /// wrote. May write fewer than `n` (a device stops at the end of its ring). A device
    /// whose descriptors lie in one ring walks them with a pointer
    /// ([`crate::platform::dma::RingView::span`]).
    #[inline(always)]
    fn encap_run(
        &self,
        pidx: u32,
        n: usize,
        mut next: impl FnMut(usize) -> Option<PacketBuf>,
        mut park: impl FnMut(usize, PacketBuf),
    ) -> usize {
        let mut k = 0;
        while k < n {
            let Some(mut pkt) = next(k) else {
                break;
            };
            self.encap_single(pidx.wrapping_add(k as u32), &mut pkt);
            park(k, pkt);
            k += 1;
        }
        k
    }
    /// Asks for a completion report on the descriptor at `idx`, the last of a packet
    /// [`TxView::encap_single`] wrote, not yet handed to the device. A device that reports
    /// every descriptor (virtio's used ring) keeps the default, which does nothing.
    #[inline(always)]
    fn set_report(&self, _idx: u32) {}
    /// Whether `pkt` goes out in one descriptor with nothing else (with
    /// [`TxView::SINGLE_DESC`], the engine's runs send such packets with no per-packet ring
    /// or report test; any other packet goes through its checked loop). The default: an
    /// unchained packet. A device that writes a context descriptor for an offload says
    /// false for a packet that asks for one.
    #[inline(always)]
    fn single(&self, pkt: &PacketBuf) -> bool {
        !pkt.is_chained()
    }
    /// The longest `pkt` may be, `max_frame` for most: a device that segments (TSO) takes
    /// more for a packet that asks for it. Asked only of packets [`TxView::single`] refused.
    #[inline(always)]
    fn max_len(&self, _pkt: &PacketBuf, max_frame: usize) -> usize {
        max_frame
    }
    /// Whether the device can take `pkt` at all, beyond the engine's checks of its length
    /// and segments; one it cannot is dropped and counted (`bad_packet`, or `bad_offload`
    /// for a packet with an offload request). Default: yes. Asked only of packets
    /// [`TxView::single`] refused: a device says false there for any packet it may not
    /// take.
    #[inline(always)]
    fn sendable(&self, _pkt: &PacketBuf) -> bool {
        true
    }
    /// Why the device refuses `pkt`'s offload request, if it does (asked only of a packet
    /// the engine drops, to count it by reason). Default: no request is refused.
    #[inline(always)]
    fn refusal(&self, _pkt: &PacketBuf) -> Option<BadOffload> {
        None
    }
    /// Whether the descriptor at index `idx`, written with `report`, is complete (not
    /// called when [`TxView::COMPLETES_BY_ID`]).
    fn is_done(&self, idx: u32) -> bool;
    /// Most segments a chain may have (one descriptor, or one indirect-table entry, each);
    /// a longer chain is dropped and counted (`bad_packet`). 1: the device takes no chains.
    #[inline(always)]
    fn max_segs(&self) -> u32 {
        1
    }
    /// Every packet [`TxView::single`] accepts takes exactly one descriptor
    /// (`descs_needed` and `encap` return 1): the engine then sends runs of them with no
    /// per-packet ring or report test (any other goes through the checked loop).
    const SINGLE_DESC: bool = false;
    /// The device names each buffer it is done with in a used entry of its own, and may
    /// finish them in any order (virtio without `VIRTIO_F_IN_ORDER`, §2.7.8 and §2.8.21):
    /// the engine takes buffers back by the ids of [`TxView::used_end`] and
    /// [`TxView::used_id`], never by position, and needs `SINGLE_DESC` (id == the slot of
    /// the packet's one descriptor). False (e1000e): a descriptor written with `report`
    /// reads done once the device is done with it and with every one before it.
    const COMPLETES_BY_ID: bool = false;
    /// With `COMPLETES_BY_ID`: the free-running index up to which the device has written
    /// used entries, from `seen` (the engine's count of entries read) on, at most `n` past
    /// it. Reads only what says an entry is there (an index, flags); the engine fences
    /// before it reads an id.
    #[inline(always)]
    fn used_end(&self, seen: u32, _n: u32) -> u32 {
        seen
    }
    /// With `COMPLETES_BY_ID`: how many used entries from `seen` on, at most `n`, are there
    /// and name the slots from `slot` on, in order (masked): the usual completion, checked
    /// as one run; and whether a used entry follows the run (out of order, or naming no
    /// buffer in flight). Each id is read after what says its entry is there (a fence
    /// between, or the same load).
    #[inline(always)]
    fn used_in_order(&self, _seen: u32, _n: u32, _slot: u32) -> (u32, bool) {
        (0, false)
    }
    /// With `COMPLETES_BY_ID`: the buffer id in the used entry at free-running index `idx`,
    /// as the device wrote it (the engine checks it).
    #[inline(always)]
    fn used_id(&self, _idx: u32) -> u32 {
        u32::MAX
    }
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
    /// Frames dropped because the device flagged a receive error or described the frame
    /// inconsistently.
    pub errors: u64,
    /// Completions naming a buffer that was not posted (dropped, and with it a frame it was
    /// part of).
    pub bad_slot: u64,
    /// Frames dropped because they spanned more buffers than the queue assembles.
    pub multi_buffer: u64,
    /// Frames delivered as chains of several buffers (counted in `packets` too).
    pub chains: u64,
    /// Polls that found the device done with every buffer posted: the ring ran dry, and the
    /// device held back (QEMU) or dropped (hardware: MPC/RNBC) what arrived meanwhile.
    pub ring_dry: u64,
    /// Frames the port's software receive filter dropped (see [`crate::port::soft_filter`]):
    /// counted in `packets` too, which counts what the device delivered.
    pub filtered: u64,
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
    /// Frames refused because they cannot be sent (empty, longer than the device takes in
    /// all, or chains of more segments than it takes, see `TxView::max_segs`); they are
    /// dropped.
    pub bad_packet: u64,
    /// Frames with an offload request the device cannot serve (header lengths that do not
    /// match the headers, TSO with an MSS of 0 or on something not TCP, a checksum of a
    /// protocol the packet is not); dropped, nothing sent. By reason in
    /// `bad_offload_reasons`.
    pub bad_offload: u64,
    /// `bad_offload` by reason.
    pub bad_offload_reasons: OffloadDrops,
    /// Doorbell (tail) writes.
    pub doorbells: u64,
    /// Buffers recycled after the device finished with them.
    pub completed: u64,
    /// Completions naming no buffer in flight (an id beyond the ring, or a slot already
    /// returned or never posted), from a device that completes by buffer id (virtio):
    /// counted and skipped, never trusted. The buffer the entry was meant for stays held
    /// until the device is idle (`TxQueue::reclaim_all`) or the queue is released.
    pub bad_completion: u64,
}

/// Why a packet's offload request cannot be served: each a counted drop
/// ([`TxStats::bad_offload`], by reason in [`OffloadDrops`]), never a packet sent
/// half-served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadOffload {
    /// Neither or both of `TX_IPV4` and `TX_IPV6`, an IPv4 checksum on IPv6, or (software
    /// GSO) an EtherType that is not the IP version asked for.
    L3Type,
    /// Header lengths that are not what the headers say (IPv4 IHL, the fixed IPv6 header,
    /// the TCP data offset, an L2 header shorter than Ethernet's).
    HeaderLength,
    /// A packet (its first buffer) shorter than the headers its request names.
    TooShort,
    /// A checksum of a protocol the packet is not (a TCP checksum on UDP), or both.
    Protocol,
    /// TSO with an MSS of 0.
    ZeroMss,
    /// TSO on a packet that is not TCP.
    TsoNotTcp,
    /// Longer than the device takes: a TSO packet beyond an IP datagram's 64 KiB, or
    /// (software GSO) segments longer than the port's frame.
    TooLong,
    /// A tag to insert in software without 4 bytes of headroom, or into a first buffer
    /// shorter than the two addresses.
    VlanRoom,
    /// An offload the device has not got and tenge does not do for it (virtio-net and a
    /// VLAN tag).
    Unsupported,
    /// The software GSO's segments found no buffers (the pool ran dry, or the queue's
    /// batch of pending segments was full): the whole packet dropped.
    NoBuffers,
}

/// [`TxStats::bad_offload`] by reason, one counter per [`BadOffload`]: the device paths'
/// refusals (an Intel context descriptor, a virtio-net header) and the software GSO's,
/// per queue and summed in a port's totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffloadDrops {
    /// [`BadOffload::L3Type`].
    pub l3_type: u64,
    /// [`BadOffload::HeaderLength`].
    pub header_length: u64,
    /// [`BadOffload::TooShort`].
    pub too_short: u64,
    /// [`BadOffload::Protocol`].
    pub protocol: u64,
    /// [`BadOffload::ZeroMss`].
    pub zero_mss: u64,
    /// [`BadOffload::TsoNotTcp`].
    pub tso_not_tcp: u64,
    /// [`BadOffload::TooLong`].
    pub too_long: u64,
    /// [`BadOffload::VlanRoom`].
    pub vlan_room: u64,
    /// [`BadOffload::Unsupported`].
    pub unsupported: u64,
    /// [`BadOffload::NoBuffers`].
    pub no_buffers: u64,
}

impl OffloadDrops {
    /// Counts one refusal.
    pub fn count(&mut self, why: BadOffload) {
        *self.counter(why) += 1;
    }

    /// The counter of `why`.
    fn counter(&mut self, why: BadOffload) -> &mut u64 {
        match why {
            BadOffload::L3Type => &mut self.l3_type,
            BadOffload::HeaderLength => &mut self.header_length,
            BadOffload::TooShort => &mut self.too_short,
            BadOffload::Protocol => &mut self.protocol,
            BadOffload::ZeroMss => &mut self.zero_mss,
            BadOffload::TsoNotTcp => &mut self.tso_not_tcp,
            BadOffload::TooLong => &mut self.too_long,
            BadOffload::VlanRoom => &mut self.vlan_room,
            BadOffload::Unsupported => &mut self.unsupported,
            BadOffload::NoBuffers => &mut self.no_buffers,
        }
    }

    /// Every reason and its count, in declaration order, named as in `Display`.
    pub fn fields(&self) -> [(&'static str, u64); 10] {
        [
            ("l3_type", self.l3_type),
            ("header_length", self.header_length),
            ("too_short", self.too_short),
            ("protocol", self.protocol),
            ("zero_mss", self.zero_mss),
            ("tso_not_tcp", self.tso_not_tcp),
            ("too_long", self.too_long),
            ("vlan_room", self.vlan_room),
            ("unsupported", self.unsupported),
            ("no_buffers", self.no_buffers),
        ]
    }

    /// Every refusal, all reasons.
    pub fn total(&self) -> u64 {
        self.fields().iter().map(|(_, n)| n).sum()
    }
}

impl std::fmt::Display for OffloadDrops {
    /// The reasons with a count, `name=n` each, space-separated (`-` for none).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut any = false;
        for (name, n) in self.fields() {
            if n != 0 {
                write!(f, "{}{name}={n}", if any { " " } else { "" })?;
                any = true;
            }
        }
        if !any {
            f.write_str("-")?;
        }
        Ok(())
    }
}

impl std::ops::AddAssign for OffloadDrops {
    /// Sums another queue's counters into these.
    fn add_assign(&mut self, o: OffloadDrops) {
        self.l3_type += o.l3_type;
        self.header_length += o.header_length;
        self.too_short += o.too_short;
        self.protocol += o.protocol;
        self.zero_mss += o.zero_mss;
        self.tso_not_tcp += o.tso_not_tcp;
        self.too_long += o.too_long;
        self.vlan_room += o.vlan_room;
        self.unsupported += o.unsupported;
        self.no_buffers += o.no_buffers;
    }
}

impl std::ops::AddAssign for RxStats {
    /// Sums another queue's counters into these (a port's totals).
    fn add_assign(&mut self, o: RxStats) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.no_buf += o.no_buf;
        self.bad_len += o.bad_len;
        self.errors += o.errors;
        self.bad_slot += o.bad_slot;
        self.multi_buffer += o.multi_buffer;
        self.chains += o.chains;
        self.ring_dry += o.ring_dry;
        self.filtered += o.filtered;
        self.doorbells += o.doorbells;
    }
}

impl std::ops::AddAssign for TxStats {
    /// Sums another queue's counters into these (a port's totals).
    fn add_assign(&mut self, o: TxStats) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.ring_full += o.ring_full;
        self.bad_packet += o.bad_packet;
        self.bad_offload += o.bad_offload;
        self.bad_offload_reasons += o.bad_offload_reasons;
        self.doorbells += o.doorbells;
        self.completed += o.completed;
        self.bad_completion += o.bad_completion;
    }
}

/// `Assembly::left` when the frame's last buffer says it is the last (`eop`).
const UNTIL_EOP: u32 = u32::MAX;

/// Most buffers one received frame may span by default: a 64 KiB coalesced segment in
/// 2 KiB buffers takes 33.
pub const DEFAULT_MAX_SEGS: usize = 64;

/// What the slow path is doing between completions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AsmState {
    /// The next completion starts a frame.
    Idle,
    /// Collecting the buffers of a frame into `segs`.
    Collecting,
    /// Dropping the rest of a frame whose first buffers were dropped.
    Discarding,
}

/// The RX slow path: every completion the fast runs do not deliver, and frames that span
/// several buffers, assembled into chains. Lives across bursts (a frame may straddle two).
struct Assembly {
    state: AsmState,
    /// The frame's buffers so far, first first (capacity `max_segs`, never grown).
    segs: Vec<PacketBuf>,
    /// Buffers of the frame still to come, or [`UNTIL_EOP`].
    left: u32,
    max_segs: usize,
}

impl Assembly {
    fn new(max_segs: usize) -> Self {
        let max_segs = max_segs.max(1);
        Assembly {
            state: AsmState::Idle,
            segs: Vec::with_capacity(max_segs),
            left: UNTIL_EOP,
            max_segs,
        }
    }

    /// Whether the completion `c`, which continues a frame, is its last buffer.
    fn last(&mut self, c: &RxCompletion) -> bool {
        if self.left == UNTIL_EOP {
            c.eop
        } else {
            self.left = self.left.saturating_sub(1);
            self.left == 0
        }
    }

    /// Drops the frame in progress; `last`: the current completion ended it.
    fn drop_frame(&mut self, cache: &mut MempoolCache, last: bool) {
        for s in self.segs.drain(..) {
            cache.free(s);
        }
        self.state = if last {
            AsmState::Idle
        } else {
            AsmState::Discarding
        };
    }

    /// Buffers still to come after a first buffer whose completion is `c`.
    fn rest_of(c: &RxCompletion) -> u32 {
        if c.bufs == 0 {
            UNTIL_EOP
        } else {
            c.bufs - 1
        }
    }

    /// Takes one completion and the buffer it names (`None`: not a posted buffer); returns
    /// a frame when this completed one. Every frame dropped is counted under one reason.
    #[inline(never)]
    fn step<V: RxView>(
        &mut self,
        view: V,
        mut c: RxCompletion,
        buf: Option<PacketBuf>,
        stats: &mut RxStats,
        cache: &mut MempoolCache,
    ) -> Option<PacketBuf> {
        match self.state {
            AsmState::Idle => {
                // The first buffer of a frame.
                let Some(mut buf) = buf else {
                    stats.bad_slot += 1;
                    return None;
                };
                if V::INSPECT {
                    view.inspect(&mut c, &buf);
                }
                let single = c.eop && c.bufs <= 1;
                let dropped = if c.error {
                    Some(&mut stats.errors)
                } else if c.len == 0 || !buf.set_len(c.len as usize) {
                    Some(&mut stats.bad_len)
                } else if !single && self.max_segs == 1 {
                    Some(&mut stats.multi_buffer)
                } else {
                    None
                };
                if let Some(counter) = dropped {
                    *counter += 1;
                    cache.free(buf);
                    if !single {
                        self.left = Self::rest_of(&c);
                        self.state = AsmState::Discarding;
                    }
                    return None;
                }
                let meta = buf.meta_mut();
                meta.flags = c.flags;
                meta.rss_hash = c.hash;
                meta.vlan_tci = c.vlan;
                if single {
                    return self.finish(view, buf, stats);
                }
                self.left = Self::rest_of(&c);
                self.segs.push(buf);
                self.state = AsmState::Collecting;
                None
            }
            AsmState::Collecting => {
                let last = self.last(&c);
                let Some(mut buf) = buf else {
                    stats.bad_slot += 1;
                    self.drop_frame(cache, last);
                    return None;
                };
                let dropped = if c.error {
                    Some(&mut stats.errors)
                } else if !view.continuation(&c, &mut buf) {
                    Some(&mut stats.bad_len)
                } else if self.segs.len() == self.max_segs {
                    Some(&mut stats.multi_buffer)
                } else {
                    None
                };
                if let Some(counter) = dropped {
                    *counter += 1;
                    cache.free(buf);
                    self.drop_frame(cache, last);
                    return None;
                }
                self.segs.push(buf);
                if !last {
                    return None;
                }
                // What an Intel device writes on a frame's last descriptor only (checksum
                // verdicts, packet type, RSS, a stripped tag) joins what the first said
                // (virtio's, from its header: later completions carry no flags).
                if c.flags != 0 {
                    if let Some(first) = self.segs.first_mut() {
                        let m = first.meta_mut();
                        m.flags |= c.flags;
                        if c.flags & crate::PacketMeta::RX_RSS_TYPE_MASK != 0 {
                            m.rss_hash = c.hash;
                        }
                        if c.flags & crate::PacketMeta::RX_VLAN_STRIPPED != 0 {
                            m.vlan_tci = c.vlan;
                        }
                    }
                }
                // Linked back to front: each segment takes the rest as its next.
                let mut rest = None;
                while let Some(mut seg) = self.segs.pop() {
                    seg.set_next(rest);
                    rest = Some(seg);
                }
                self.state = AsmState::Idle;
                let head = rest?;
                stats.chains += 1;
                self.finish(view, head, stats)
            }
            AsmState::Discarding => {
                if self.last(&c) {
                    self.state = AsmState::Idle;
                }
                match buf {
                    Some(b) => cache.free(b),
                    None => stats.bad_slot += 1,
                }
                None
            }
        }
    }

    /// A whole frame, finished by the device's ops; dropped if they refuse it.
    fn finish<V: RxView>(
        &mut self,
        view: V,
        mut pkt: PacketBuf,
        stats: &mut RxStats,
    ) -> Option<PacketBuf> {
        if view.finish(&mut pkt) {
            Some(pkt)
        } else {
            stats.errors += 1;
            // Dropped here: its segments go back to the pool.
            None
        }
    }

    /// Returns the frame in progress to `cache`.
    fn release(&mut self, cache: &mut MempoolCache) {
        self.drop_frame(cache, true);
    }
}

/// What [`rx_run`] did.
struct RxRun {
    /// Frames delivered.
    got: usize,
    /// Their bytes.
    bytes: u64,
}

/// Delivers the completions from consumer index `cidx` on into `dst`, one for each place of
/// `slots` (the slots of those indices, where the buffers were posted), while each is a
/// whole good frame that fits in the buffer posted at its own index (`mask` masks a slot the
/// device names). Stops at the first that is not, leaving its slot as it was. Out of line:
/// a loop of its own whose few values stay in registers.
#[inline(never)]
fn rx_run<V: RxView>(
    view: V,
    slots: &mut [Option<PacketBuf>],
    dst: &mut [Option<PacketBuf>],
    cidx: u32,
    mask: u32,
) -> RxRun {
    let mut bytes = 0u64;
    let n = slots.len().min(dst.len());
    let (slots, dst) = (&mut slots[..n], &mut dst[..n]);
    let got = view.completion_run(cidx, n, |k, mut c| {
        let idx = cidx.wrapping_add(k as u32);
        if !(c.whole && view.slot_in_range(c.slot) && (c.slot ^ idx) & mask == 0) {
            return false;
        }
        let s = &mut slots[k];
        let Some(mut buf) = s.take() else {
            return false;
        };
        if V::INSPECT {
            view.inspect(&mut c, &buf);
            if !c.whole {
                put(s, buf);
                return false;
            }
        }
        // A length of 0 (a device may say so) or beyond the buffer: the slow path drops
        // and counts it (bad_len).
        if !buf.set_rx_len(c.len as usize) {
            put(s, buf);
            return false;
        }
        let meta = buf.meta_mut();
        meta.flags = c.flags;
        if view.fast_hash() {
            meta.rss_hash = c.hash;
        }
        bytes += c.len as u64;
        put(&mut dst[k], buf);
        true
    });
    RxRun { got, bytes }
}

/// What [`tx_run`] did.
struct TxRun {
    /// Packets written.
    sent: u32,
    /// Bytes written.
    bytes: u64,
    /// Places of the batch looked at (emptied).
    looked: usize,
    /// A packet it stopped at, which the device cannot send.
    bad: Option<PacketBuf>,
    /// It stopped at a chain (left in its place, not counted in `looked`): the checked
    /// loop sends it.
    chain: bool,
}

/// Writes one descriptor for each packet of `src` from `pidx`, without a report, parking
/// each in the place of `dst` alike (the slots of those descriptors, empty); stops at a
/// packet that is empty or longer than `max_frame`, at a chain (left in place for the
/// checked loop, which writes a descriptor per segment), and at an empty place of `src`. The
/// caller has checked the ring has room for all of them. Out of line: a loop of its own
/// whose few values stay in registers.
#[inline(never)]
fn tx_run<V: TxView>(
    view: V,
    dst: &mut [Option<PacketBuf>],
    src: &mut [Option<PacketBuf>],
    pidx: u32,
    max_frame: usize,
) -> TxRun {
    let n = dst.len().min(src.len());
    let (dst, src) = (&mut dst[..n], &mut src[..n]);
    let mut bytes = 0u64;
    let mut bad = None;
    let mut chain = false;
    let sent = view.encap_run(
        pidx,
        n,
        |k| {
            let s = &mut src[k];
            // An empty place: the run stops there.
            let pkt = s.take()?;
            if !view.single(&pkt) {
                put(s, pkt);
                chain = true;
                return None;
            }
            // Empty or too long: the caller drops it. (What `single` takes, the device can
            // send: `sendable` is the checked loop's.)
            let len = pkt.len();
            if len.wrapping_sub(1) >= max_frame {
                bad = Some(pkt);
                return None;
            }
            bytes += len as u64;
            Some(pkt)
        },
        |k, pkt| put(&mut dst[k], pkt),
    );
    // A place it stopped at was looked at, and emptied, unless it holds a chain (left for
    // the checked loop); a run the device cut short at its ring's end stops at a packet it
    // did not look at, still in place.
    let stopped = src.get(sent).is_some_and(|s| s.is_none());
    TxRun {
        sent: sent as u32,
        bytes,
        looked: sent + usize::from(stopped),
        bad,
        chain,
    }
}

/// Drops a packet the device cannot send: `bad_offload` by the reason its device gives
/// for refusing its request, else (no request, or a valid one on a packet that is empty,
/// too long or in too many segments) `bad_packet`.
#[cold]
#[inline(never)]
fn tx_drop<V: TxView>(view: V, stats: &mut TxStats, pkt: PacketBuf, cache: &mut MempoolCache) {
    match view.refusal(&pkt) {
        Some(why) if pkt.meta().flags & crate::PacketMeta::TX_OFFLOAD_MASK != 0 => {
            stats.bad_offload += 1;
            stats.bad_offload_reasons.count(why);
        }
        _ => stats.bad_packet += 1,
    }
    cache.free(pkt);
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
    /// The slow path's frame in progress.
    asm: Assembly,
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
            asm: Assembly::new(DEFAULT_MAX_SEGS),
            free_thresh,
            stats: RxStats::default(),
        }
    }

    /// The device ops.
    pub fn ops(&self) -> &D {
        &self.ops
    }

    /// The device ops, to change their state between bursts (arming an interrupt).
    pub fn ops_mut(&mut self) -> &mut D {
        &mut self.ops
    }

    /// The free-running index of the next descriptor the engine polls (virtio: the next
    /// used entry it reads).
    pub fn next_index(&self) -> u32 {
        self.cidx
    }

    /// Whether the device has finished the next posted descriptor: a frame (or its first
    /// buffer) waits for the next burst. Reads only the done bit.
    pub fn frame_ready(&self) -> bool {
        self.pidx != self.cidx && self.ops.view().is_done(self.cidx)
    }

    /// Descriptors in the ring.
    pub fn entries(&self) -> u32 {
        self.mask + 1
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
        self.fill_from(cache, false)
    }

    /// [`RxQueue::fill`], from a burst that took frames when `busy`.
    #[inline]
    fn fill_from(&mut self, cache: &mut MempoolCache, busy: bool) -> u32 {
        let start = self.pidx;
        let end = self.cidx.wrapping_add(self.mask); // entries - 1 posted at most
        let view = self.ops.view();
        let mut slots = self.bufs.view_sized(self.ops.entries());
        // A fresh buffer's capacity is its pool's data room: one value for the whole loop,
        // not read back from each buffer's header.
        let room = cache.pool().data_room();
        let mut pidx = start;
        while pidx != end {
            if !cache.refill_if_empty() {
                self.stats.no_buf += 1;
                break;
            }
            // What the cache holds, in one go, each into its slot; stops at a slot the
            // device still holds (out-of-order completion), which a device whose completions
            // name their own index never leaves.
            let want = end.wrapping_sub(pidx);
            let post = |idx, buf: &PacketBuf| {
                debug_assert_eq!(buf.capacity(), room as usize);
                view.refill(idx, buf.data_iova(), room);
            };
            let posted = if <D::View<'_> as RxView>::SLOT_IS_INDEX {
                cache.alloc_into_slots::<false>(&mut slots, pidx, want, post)
            } else {
                cache.alloc_into_slots::<true>(&mut slots, pidx, want, post)
            };
            pidx = pidx.wrapping_add(posted.got);
            if posted.blocked {
                break;
            }
        }
        self.pidx = pidx;
        let n = pidx.wrapping_sub(start);
        if n > 0 {
            // Descriptor stores before the tail store (see mmio.rs on x86 ordering).
            barrier::dma_wmb();
            if busy {
                self.ops.flush_busy(pidx);
            } else {
                self.ops.flush(pidx);
            }
            self.stats.doorbells += 1;
        }
        n
    }

    /// Receives up to `out.room()` frames into `out`, then refills what it took and writes
    /// the tail once. Returns the number of frames received.
    #[inline]
    pub fn rx_burst(&mut self, cache: &mut MempoolCache, out: &mut PacketBatch) -> usize {
        let view = self.ops.view();
        let mut cidx = self.cidx;
        let dst = out.back_room();
        // At most `room` frames, and never past what was posted.
        let n = (dst.len() as u32).min(self.pidx.wrapping_sub(cidx));
        // How many the device is done with, then one `dma_rmb` for all of them: every
        // write-back read below comes after the done bit it depends on.
        let ready = view.done_count(cidx, n);
        // Dry: the device has used every buffer posted. A burst that took fewer than it
        // could has not; otherwise the last posted buffer says (every device here uses
        // them in ring order), one read a full burst.
        let posted = self.pidx.wrapping_sub(cidx);
        if ready == n
            && ready > 0
            && (ready == posted || view.is_done(cidx.wrapping_add(posted - 1)))
        {
            self.stats.ring_dry += 1;
        }
        let mut got = 0;
        let mut bytes = 0u64;
        if ready > 0 {
            barrier::dma_rmb();
            let mut slots = self.bufs.view_sized(self.ops.entries());
            let end = cidx.wrapping_add(ready);
            let mask = self.mask;
            'burst: while cidx != end {
                if self.asm.state == AsmState::Idle {
                    // The common case: runs of completions, each of the buffer posted at its
                    // own index, a whole good frame that fits, out of line with no call.
                    loop {
                        let want = end.wrapping_sub(cidx) as usize;
                        // The slots from `cidx` on, up to the end of the ring.
                        let run_slots = slots.contiguous(cidx, want);
                        let len = run_slots.len();
                        let run = rx_run(view, run_slots, &mut dst[got..], cidx, mask);
                        cidx = cidx.wrapping_add(run.got as u32);
                        got += run.got;
                        bytes += run.bytes;
                        if cidx == end {
                            break 'burst;
                        }
                        if run.got < len {
                            // Stopped at a completion it does not deliver.
                            break;
                        }
                    }
                }
                // The slow path, one completion: a buffer posted anywhere (a device may
                // complete out of order), a frame over several buffers, a drop. A slot the
                // device names outside the ring would alias another slot once masked: it is
                // a bad slot, never a buffer.
                let c = view.completion(cidx);
                let posted = if view.slot_in_range(c.slot) {
                    slots.take(c.slot)
                } else {
                    None
                };
                if let Some(pkt) = self.asm.step(view, c, posted, &mut self.stats, cache) {
                    bytes += pkt.pkt_len() as u64;
                    // At most `room` completions are taken, so there is a place for each frame.
                    if let Some(d) = dst.get_mut(got) {
                        put(d, pkt);
                        got += 1;
                    }
                }
                cidx = cidx.wrapping_add(1);
            }
            self.cidx = cidx;
            out.commit_back(got);
        }
        self.stats.packets += got as u64;
        self.stats.bytes += bytes;
        // Refill in batches of free_thresh, one tail write each. The device is never left
        // with an empty ring by this: it keeps at least 3/4 of it. (QEMU's e1000e disables a
        // port with no free descriptor until the tail moves, stalling its hub's senders.)
        if ready == 0 {
            self.ops.idle();
        }
        if self.mask - self.pidx.wrapping_sub(self.cidx) >= self.free_thresh {
            self.fill_from(cache, ready > 0);
        }
        got
    }

    /// Most buffers one frame may span (at least 1: frames over several buffers dropped
    /// as `multi_buffer`); [`DEFAULT_MAX_SEGS`] unless set.
    pub fn set_max_segs(&mut self, max_segs: usize) {
        self.asm = Assembly::new(max_segs);
    }

    /// Returns every posted buffer, and a frame half assembled, to `cache` (after the
    /// device's receiver is off).
    pub fn release(&mut self, cache: &mut MempoolCache) {
        for b in self.bufs.iter_mut() {
            if let Some(b) = b.take() {
                cache.free(b);
            }
        }
        self.asm.release(cache);
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
    /// Oldest descriptor not yet reclaimed. With [`TxView::COMPLETES_BY_ID`], the oldest
    /// slot still holding a buffer (or `pidx`): later slots may be empty already.
    cidx: u32,
    /// With [`TxView::COMPLETES_BY_ID`]: used entries read so far (free-running).
    used: u32,
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
    /// A chain may be in flight (one was posted since the ring was last empty): freeing
    /// then checks each buffer for one.
    chains: bool,
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
            used: 0,
            rs: vec![0; n as usize].into_boxed_slice(),
            rs_head: 0,
            rs_tail: 0,
            since_rs: 0,
            rs_interval,
            max_frame,
            chains: false,
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

    /// Recycles the buffers of every completed report into `cache` (with
    /// [`TxView::COMPLETES_BY_ID`]: of every used entry); returns descriptors reclaimed.
    #[inline]
    pub fn reclaim(&mut self, cache: &mut MempoolCache) -> u32 {
        if <D::View<'_> as TxView>::COMPLETES_BY_ID {
            return self.reclaim_by_id(cache);
        }
        let view = self.ops.view();
        // The newest completed report, then one `dma_rmb`: the device wrote DD after it
        // had read every earlier descriptor.
        let mut rs_head = self.rs_head;
        let mut end = self.cidx;
        while rs_head != self.rs_tail {
            let idx = self.rs[(rs_head & self.mask) as usize];
            if !view.is_done(idx) {
                break;
            }
            end = idx.wrapping_add(1);
            rs_head = rs_head.wrapping_add(1);
        }
        if rs_head == self.rs_head {
            return 0;
        }
        barrier::dma_rmb();
        self.rs_head = rs_head;
        let start = self.cidx;
        let mut slots = self.bufs.view_sized(self.ops.entries());
        let completed = Self::free_run(self.chains, cache, &mut slots, start, end);
        if end == self.pidx {
            // The ring is empty: no chain in flight.
            self.chains = false;
        }
        self.cidx = end;
        self.stats.completed += completed;
        end.wrapping_sub(start)
    }

    /// [`TxQueue::reclaim`] for a device that names the buffers it is done with: frees the
    /// buffer in each slot a new used entry names; an id beyond the ring, or naming a slot
    /// with no buffer (returned already, or never posted), is counted (`bad_completion`)
    /// and skipped. `cidx` then moves over the empty slots from it and stops at the first
    /// buffer the device still holds: the burst's room (`cidx + mask`) never reaches that
    /// slot, so its descriptor and buffer id are not written again while the device may
    /// read them. Returns the slots `cidx` moved over.
    #[inline]
    fn reclaim_by_id(&mut self, cache: &mut MempoolCache) -> u32 {
        let view = self.ops.view();
        let seen = self.used;
        let start = self.cidx;
        let pidx = self.pidx;
        // The usual case: the new entries name the slots from `cidx` on, in order (as QEMU
        // uses TX buffers), checked as one run and freed as one, like a report's. At most
        // one used entry for each buffer posted since `seen`, and only slots in
        // [cidx, pidx) hold buffers.
        let max = pidx.wrapping_sub(seen).min(pidx.wrapping_sub(start));
        let (run, more) = view.used_in_order(seen, max, start);
        if run != 0 {
            // The ids read before the buffers are freed.
            barrier::dma_rmb();
            let mut slots = self.bufs.view_sized(self.ops.entries());
            let freed = Self::free_run(
                self.chains,
                cache,
                &mut slots,
                start,
                start.wrapping_add(run),
            );
            // Slots of the run already empty (returned out of order before).
            self.stats.bad_completion += u64::from(run) - freed;
            self.stats.completed += freed;
            self.used = seen.wrapping_add(run);
        }
        // An entry after the run: out of order, or an id naming no buffer in flight.
        if more {
            self.reclaim_unordered(cache);
        } else if run == 0 {
            return 0;
        }
        let mut slots = self.bufs.view_sized(self.ops.entries());
        let mut cidx = start.wrapping_add(run);
        while cidx != pidx && !slots.is_occupied(cidx) {
            cidx = cidx.wrapping_add(1);
        }
        self.cidx = cidx;
        if cidx == pidx {
            // The ring is empty: no chain in flight.
            self.chains = false;
        }
        // Reports `cidx` has passed are done.
        let mask = self.mask;
        let passed = cidx.wrapping_sub(start);
        while self.rs_head != self.rs_tail
            && self.rs[(self.rs_head & mask) as usize].wrapping_sub(start) < passed
        {
            self.rs_head = self.rs_head.wrapping_add(1);
        }
        passed
    }

    /// The slow path of [`TxQueue::reclaim_by_id`], from the first used entry that is not
    /// the next in order: frees the buffer in each slot a new used entry names; an id
    /// beyond the ring, or naming a slot with no buffer (returned already, or never
    /// posted), is counted (`bad_completion`) and skipped. Moves `used` past the entries
    /// read, not `cidx`.
    #[cold]
    #[inline(never)]
    fn reclaim_unordered(&mut self, cache: &mut MempoolCache) {
        let view = self.ops.view();
        let seen = self.used;
        let end = view.used_end(seen, self.pidx.wrapping_sub(seen));
        // The index or flags that said the entries are there, before their ids.
        barrier::dma_rmb();
        let mask = self.mask;
        let mut slots = self.bufs.view_sized(self.ops.entries());
        let mut completed = 0u64;
        let mut u = seen;
        while u != end {
            let id = view.used_id(u);
            u = u.wrapping_add(1);
            // Only slots in [cidx, pidx) hold buffers (at most a ring's worth, so one id
            // names one of them).
            let buf = if id <= mask { slots.take(id) } else { None };
            match buf {
                Some(b) => {
                    cache.free(b);
                    completed += 1;
                }
                None => self.stats.bad_completion += 1,
            }
        }
        self.used = end;
        self.stats.completed += completed;
    }

    /// Queues the front of `pkts` for transmission, as many as fit, and rings the doorbell
    /// once. Sent packets leave `pkts`; the rest stay for the caller to retry or free.
    /// Returns the number sent.
    #[inline]
    pub fn tx_burst(&mut self, cache: &mut MempoolCache, pkts: &mut PacketBatch) -> usize {
        if <D::View<'_> as TxView>::COMPLETES_BY_ID {
            debug_assert!(<D::View<'_> as TxView>::SINGLE_DESC);
            if self.cidx != self.pidx {
                self.reclaim_by_id(cache);
            }
        } else if self.rs_head != self.rs_tail {
            self.reclaim(cache);
        }
        // No report outstanding: the device finished everything reported.
        let idle_rs_tail = (self.rs_head == self.rs_tail).then_some(self.rs_tail);
        let view = self.ops.view();
        let mut slots = self.bufs.view_sized(self.ops.entries());
        let start = self.pidx;
        let mut pidx = start;
        let max_frame = self.max_frame;
        // Keep one descriptor free: tail == head means empty to the device.
        let limit = self.cidx.wrapping_add(self.mask);
        let mut bytes = 0u64;
        let mut dropped = 0;
        let mut full = false;
        let src = pkts.front();
        let total = src.len();
        // The index of the next descriptor that asks for a report: a packet whose
        // descriptors cover it is written with `report` (a run's last, marked after).
        let mut rs_at = pidx.wrapping_add(self.rs_interval - self.since_rs - 1);
        // Packets of `src` looked at so far.
        let mut pos = 0;
        if <D::View<'_> as TxView>::SINGLE_DESC {
            // One descriptor a packet: runs of packets that fit and reach the report point at
            // most at their last, with no per-packet ring or report test. A full ring leaves
            // what is left to the checked loop below.
            loop {
                let room = limit.wrapping_sub(pidx) as usize;
                let n = (total - pos)
                    .min(room)
                    .min(rs_at.wrapping_sub(pidx) as usize + 1);
                if n == 0 {
                    break;
                }
                // The slots of the run's descriptors, up to the end of the ring.
                let dst = slots.contiguous(pidx, n);
                let run = tx_run(view, dst, &mut src[pos..pos + n], pidx, max_frame);
                pidx = pidx.wrapping_add(run.sent);
                bytes += run.bytes;
                pos += run.looked;
                if pidx == rs_at.wrapping_add(1) {
                    // The run's last packet reached the report point: it asks for one.
                    view.set_report(rs_at);
                    self.rs[(self.rs_tail & self.mask) as usize] = rs_at;
                    self.rs_tail = self.rs_tail.wrapping_add(1);
                    rs_at = rs_at.wrapping_add(self.rs_interval);
                }
                if let Some(pkt) = run.bad {
                    tx_drop(view, &mut self.stats, pkt, cache);
                    dropped += 1;
                }
                if run.chain || pos == total {
                    break;
                }
            }
        }
        // Packet by packet: what the runs left (at a full ring), or every packet of a device
        // that may take several descriptors for one.
        let mut src = src[pos..].iter_mut();
        'burst: loop {
            // With no call in the loop: a sendable packet that fits.
            let slot = loop {
                let Some(slot) = src.next() else {
                    break 'burst;
                };
                let Some(mut pkt) = slot.take() else {
                    continue;
                };
                // The whole frame: every segment of a chain.
                let len = pkt.pkt_len();
                if len.wrapping_sub(1) >= view.max_len(&pkt, max_frame)
                    || (pkt.is_chained() && pkt.nb_segs() > view.max_segs() as usize)
                    || !view.sendable(&pkt)
                {
                    // Empty, too long, or a chain of more segments than the device takes:
                    // dropped below, rather than hand the device bad descriptors.
                    put(slot, pkt);
                    break slot;
                }
                let need = view.descs_needed(&pkt);
                if need > limit.wrapping_sub(pidx) {
                    put(slot, pkt);
                    self.stats.ring_full += 1;
                    full = true;
                    break 'burst;
                }
                // With a report if this packet's descriptors reach the report point.
                let report = rs_at.wrapping_sub(pidx) < need;
                let used = view.encap(pidx, &mut pkt, report);
                debug_assert_eq!(used, need);
                let last = pidx.wrapping_add(used - 1);
                if report {
                    self.rs[(self.rs_tail & self.mask) as usize] = last;
                    self.rs_tail = self.rs_tail.wrapping_add(1);
                    rs_at = last.wrapping_add(self.rs_interval);
                }
                bytes += len as u64;
                // From now until the ring is empty, completions may free a chain.
                self.chains |= pkt.is_chained();
                slots.put(last, pkt);
                pidx = pidx.wrapping_add(used);
            };
            if let Some(pkt) = slot.take() {
                tx_drop(view, &mut self.stats, pkt, cache);
                dropped += 1;
            }
        }
        // Every slot before where `src` stopped is empty now, except the one a ring_full
        // stop put its packet back in.
        let taken = total - src.len() - full as usize;
        pkts.consume_front(taken);
        let sent = taken - dropped;
        // A burst that reached no report point, onto a ring with no report outstanding (a
        // sender at a low rate), asks for a report on its last packet, so its buffers come
        // back without waiting for `rs_interval` more descriptors, which may never be sent.
        // A busy ring has a report outstanding, and a burst that reached a report point
        // will have its buffers back by the next burst's report or by Port::tx_drain: both
        // keep the interval.
        if sent > 0 && idle_rs_tail == Some(self.rs_tail) {
            let last = pidx.wrapping_sub(1);
            view.set_report(last);
            self.rs[(self.rs_tail & self.mask) as usize] = last;
            self.rs_tail = self.rs_tail.wrapping_add(1);
            rs_at = last.wrapping_add(self.rs_interval);
        }
        self.pidx = pidx;
        // Descriptors written since the last report.
        self.since_rs = self.rs_interval - 1 - rs_at.wrapping_sub(pidx);
        if sent > 0 {
            // Descriptor stores before the tail store (see mmio.rs on x86 ordering).
            barrier::dma_wmb();
            self.ops.flush(pidx);
            self.stats.doorbells += 1;
            self.stats.packets += sent as u64;
            self.stats.bytes += bytes;
        }
        sent
    }

    /// Recycles every in-flight buffer into `cache`, reported or not: for a caller that
    /// knows the device is done with every descriptor written: an e1000e whose head has
    /// caught up with its tail (the 82574 datasheet's TDH holds the descriptor in progress,
    /// so every one before it is done), a virtio device that has used everything. Returns
    /// descriptors reclaimed.
    pub fn reclaim_all(&mut self, cache: &mut MempoolCache) -> u32 {
        let (start, end) = (self.cidx, self.pidx);
        if start == end {
            return 0;
        }
        // The caller's idle test read a device register or ring after the device's last
        // write: order the buffer reuse after it.
        barrier::dma_rmb();
        let mut slots = self.bufs.view_sized(self.ops.entries());
        self.stats.completed += Self::free_run(self.chains, cache, &mut slots, start, end);
        self.cidx = end;
        self.chains = false;
        // An idle device has written one used entry for each buffer.
        self.used = end;
        self.rs_head = self.rs_tail;
        // The next report counts from here again.
        self.since_rs = 0;
        end.wrapping_sub(start)
    }

    /// Returns every in-flight buffer to `cache` (after the device's transmitter is off).
    pub fn release(&mut self, cache: &mut MempoolCache) {
        for b in self.bufs.iter_mut() {
            if let Some(b) = b.take() {
                cache.free(b);
            }
        }
        self.cidx = self.pidx;
        self.used = self.pidx;
        self.rs_head = self.rs_tail;
        self.chains = false;
    }

    /// Frees the buffers in slots `start..end`, chains among them only if one may be in
    /// flight (see `chains`): the usual run has no chain test.
    #[inline(always)]
    fn free_run(
        chains: bool,
        cache: &mut MempoolCache,
        slots: &mut crate::packet::mempool::BufSlots<'_>,
        start: u32,
        end: u32,
    ) -> u64 {
        if chains {
            cache.free_slots::<true>(slots, start, end)
        } else {
            cache.free_slots::<false>(slots, start, end)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::mempool::host_pool;

    #[test]
    fn retain_from_keeps_order_and_returns_the_rest_to_the_pool() {
        let pool = host_pool(16).unwrap();
        let mut cache = pool.cache(0);
        let mut batch = PacketBatch::new(8);
        for i in 0..6u8 {
            let mut b = cache.alloc().unwrap();
            assert!(b.copy_from(&[i; 60]));
            batch.push(b).unwrap();
        }
        // Packets 0 and 1 are before `from` and stay whatever `keep` says.
        let gone = batch.retain_from(2, |p| p.data()[0] % 2 == 1, &mut cache);
        assert_eq!(gone, 2);
        let firsts: Vec<u8> = batch.iter().map(|p| p.data()[0]).collect();
        assert_eq!(firsts, [0, 1, 3, 5]);
        drop(cache);
        assert_eq!(pool.free_count(), 12);
        let mut cache = pool.cache(0);
        assert_eq!(batch.retain_from(0, |_| false, &mut cache), 4);
        assert!(batch.is_empty());
        drop(cache);
        assert_eq!(pool.free_count(), 16);
    }

    /// A model device whose TX keeps per-queue state and writes a descriptor that is not a
    /// packet: a "context" (here: the packet's `l3_len`) goes ahead of a packet whose
    /// context differs from the one the queue last programmed, as the 82574's and 82576's
    /// TX context descriptors do; packets without one (`l3_len` 0) take the engine's runs.
    mod context {
        use super::super::*;
        use crate::packet::mempool::host_pool;
        use crate::platform::dma::{DescRing, DmaRegion, HugepagePolicy, IdentityMapper};
        use std::cell::Cell;
        use std::sync::Arc;
        use tenge_descriptors::e1000e::LegacyTxDesc;

        /// `cso` of a context descriptor; a data descriptor's is 0.
        const CTX: u8 = 0xc0;
        const EOP: u8 = 1;
        const RS: u8 = 8;

        pub(super) struct CtxTx {
            pub(super) ring: DescRing<LegacyTxDesc>,
            /// The context the device holds: per-queue state, updated by `encap`.
            pub(super) ctx: Cell<u8>,
        }

        #[derive(Clone, Copy)]
        pub(super) struct CtxView<'a>(
            crate::platform::dma::RingView<'a, LegacyTxDesc>,
            &'a Cell<u8>,
        );

        impl TxDescOps for CtxTx {
            type View<'a> = CtxView<'a>;
            fn view(&self) -> CtxView<'_> {
                CtxView(self.ring.view(), &self.ctx)
            }
            fn entries(&self) -> u32 {
                self.ring.entries()
            }
            fn flush(&mut self, _pidx: u32) {}
        }

        impl TxView for CtxView<'_> {
            const SINGLE_DESC: bool = true;
            fn descs_needed(&self, pkt: &PacketBuf) -> u32 {
                let l3 = pkt.meta().l3_len;
                1 + u32::from(l3 != 0 && l3 != self.1.get())
            }
            fn single(&self, pkt: &PacketBuf) -> bool {
                !pkt.is_chained() && pkt.meta().l3_len == 0
            }
            fn encap(&self, pidx: u32, pkt: &mut PacketBuf, report: bool) -> u32 {
                let l3 = pkt.meta().l3_len;
                let mut n = 0;
                if l3 != 0 && l3 != self.1.get() {
                    self.0
                        .write_qwords(pidx, u64::from(l3), u64::from(CTX) << 16);
                    self.1.set(l3);
                    n = 1;
                }
                let cmd = EOP | if report { RS } else { 0 };
                self.0.write_qwords(
                    pidx.wrapping_add(n),
                    pkt.data_iova(),
                    pkt.len() as u64 | u64::from(cmd) << 24,
                );
                n + 1
            }
            fn set_report(&self, idx: u32) {
                let cmd = self.0.read_u8_at(idx, 11);
                self.0.write_u8_at(idx, 11, cmd | RS);
            }
            fn is_done(&self, idx: u32) -> bool {
                self.0.read_u8_at(idx, 12) & 1 != 0
            }
        }

        /// Each descriptor as the test reads it: `C<l3>` a context, `D`/`D+RS` packet data.
        pub(super) fn ring_contents(ring: &DescRing<LegacyTxDesc>, n: u32) -> Vec<String> {
            (0..n)
                .map(|i| {
                    let d = ring.read(i);
                    if d.cso == CTX {
                        format!("C{}", d.buffer_addr.get())
                    } else if d.cmd & RS != 0 {
                        "D+RS".to_string()
                    } else {
                        "D".to_string()
                    }
                })
                .collect()
        }

        /// The device completes everything up to descriptor `end` (DD on RS ones).
        pub(super) fn complete(ring: &DescRing<LegacyTxDesc>, end: u32) {
            for i in 0..end {
                let mut d = ring.read(i);
                if d.cmd & RS != 0 {
                    d.status = 1;
                    ring.write(i, d);
                }
            }
        }

        pub(super) fn setup(entries: u32) -> (TxQueue<CtxTx>, crate::Mempool) {
            let region = Arc::new(
                DmaRegion::allocate(Arc::new(IdentityMapper), 1 << 16, HugepagePolicy::Never)
                    .unwrap(),
            );
            let ops = CtxTx {
                ring: DescRing::new(region, 0, entries),
                ctx: Cell::new(0),
            };
            (TxQueue::new(ops, 4, 1514), host_pool(64).unwrap())
        }
    }

    /// The TX ops keep per-queue state and write context descriptors: the engine calls
    /// `encap` once per packet after `descs_needed`, sends plain packets in runs and the
    /// rest packet by packet, leaves a packet whose descriptors do not fit in the batch (the
    /// context unchanged, so it comes again with it), and gets every buffer back although a
    /// packet's first descriptor is not its data.
    #[test]
    fn tx_ops_keep_per_queue_state_and_write_context_descriptors() {
        let (mut txq, pool) = context::setup(8);
        let mut cache = pool.cache(8);
        let mut batch = PacketBatch::new(16);
        for l3 in [0u8, 20, 20, 0, 40, 40] {
            let mut b = cache.alloc().unwrap();
            assert!(b.copy_from(&[l3; 60]));
            b.meta_mut().l3_len = l3;
            batch.push(b).unwrap();
        }
        // Room for 7 descriptors (one stays free): D, C20 D, D, D, C40 D take 7, the last D
        // would be an eighth.
        assert_eq!(txq.tx_burst(&mut cache, &mut batch), 5);
        assert_eq!(
            context::ring_contents(&txq.ops().ring, 7),
            // A report every 4 descriptors: on the 4th (index 3), the next at index 7.
            ["D", "C20", "D", "D+RS", "D", "C40", "D"]
        );
        assert_eq!(txq.ops().ctx.get(), 40);
        assert_eq!(
            batch.len(),
            1,
            "the packet that did not fit stays with the caller"
        );
        assert_eq!(txq.stats().ring_full, 1);
        context::complete(&txq.ops().ring, 7);
        assert_eq!(
            txq.reclaim(&mut cache),
            4,
            "the descriptors up to the report"
        );
        assert_eq!(txq.stats().completed, 3, "their packets' buffers");
        // The context is still 40: the last packet goes out without one.
        assert_eq!(txq.tx_burst(&mut cache, &mut batch), 1);
        assert_eq!(context::ring_contents(&txq.ops().ring, 8)[7], "D+RS");
        context::complete(&txq.ops().ring, 8);
        assert_eq!(txq.reclaim(&mut cache), 4);
        assert_eq!(txq.stats().completed, 6);
        drop(cache);
        assert_eq!(pool.free_count(), 64, "every buffer home");
    }
}
