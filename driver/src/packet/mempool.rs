//! The packet buffer pool: fixed-size buffers carved out of one DMA region, a lock-free free
//! list shared by all threads (crossbeam's `ArrayQueue`), and a per-queue cache in front of it
//! so the data path takes and returns buffers without an atomic per packet. Part of the DMA
//! memory home of `unsafe`: a [`PacketBuf`] turns its slot into a byte slice.
//!
//! Buffer slot layout, `stride` bytes each: `[headroom][data room]`. A fresh buffer's data
//! starts after the headroom, so a header (a VLAN tag, a virtio-net header) can be prepended
//! without a copy.
//!
//! No slot crosses a page of the region (2 MiB or 4 KiB) when a page can hold one: the
//! slots of a page are followed by the unused rest of it (as DPDK's mempool keeps objects
//! within pages of memory that is not physically contiguous). The region is contiguous in
//! IOVA space, which is all real hardware behind an IOMMU needs, but each page is its own
//! piece of guest-physical memory, and QEMU's e1000e maps a TX buffer in one piece
//! (`net_tx_pkt_add_raw_fragment_pci`, hw/net/net_tx_pkt.c: a mapping shorter than the
//! buffer fails) and drops a frame whose buffer crosses into the next page, silently: a
//! 1514-byte frame in slot 1927 of a pool (its data across the 4 MiB line) never left.

use crate::packet::ptype::PacketType;
use crate::packet::rss::RssType;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use crate::error::Error;
use crate::platform::dma::{DmaMapper, DmaRegion, HugepagePolicy, HUGEPAGE_SIZE};

/// The page of a region not on hugepages.
const SMALL_PAGE: usize = 4096;

/// Where `buffers` slots of `stride` bytes go in a region of `page`-byte pages: slots per
/// page (0: a slot is larger than a page, and slots simply follow each other), and the
/// bytes the region needs.
fn slot_layout(stride: usize, buffers: usize, page: usize) -> Option<(usize, usize)> {
    let per_page = page / stride;
    if per_page == 0 {
        return Some((0, stride.checked_mul(buffers)?));
    }
    Some((per_page, buffers.div_ceil(per_page).checked_mul(page)?))
}

/// The byte offset of slot `i` (see [`slot_layout`]).
fn slot_offset(i: usize, stride: usize, per_page: usize, page: usize) -> usize {
    match (i.checked_div(per_page), i.checked_rem(per_page)) {
        (Some(pages), Some(slot)) => pages * page + slot * stride,
        _ => i * stride,
    }
}

/// How a pool is laid out.
#[derive(Clone, Copy, Debug)]
pub struct MempoolConfig {
    /// Number of buffers.
    pub buffers: u32,
    /// Bytes of data room per buffer (what a device may write: 2048 for e1000e).
    pub data_room: u32,
    /// Bytes reserved in front of the data.
    pub headroom: u32,
    /// Hugepage use for the backing region.
    pub hugepages: HugepagePolicy,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            buffers: 2048,
            data_room: 2048,
            headroom: 128,
            hugepages: HugepagePolicy::Prefer,
        }
    }
}

/// Offload requests (TX) and results (RX) carried with a packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketMeta {
    /// `RX_*`/`TX_*` flag bits.
    pub flags: u32,
    /// Length of the L2 header (TX offloads).
    pub l2_len: u8,
    /// Length of the L3 header (TX offloads).
    pub l3_len: u8,
    /// Length of the L4 header (TSO).
    pub l4_len: u8,
    /// TSO segment size (TX); the size of the coalesced segments (RX, with `RX_LRO`).
    pub mss: u16,
    /// RX, with `RX_LRO`: how many segments were coalesced into the frame (0: unknown, as
    /// virtio's GUEST_TSO does not say).
    pub segs: u16,
    /// RX: the device's RSS hash, when [`PacketMeta::rss_type`] is not `None`.
    pub rss_hash: u32,
    /// The 802.1Q tag control information (priority, DEI, VLAN id): TX, the tag to insert
    /// with [`PacketMeta::TX_VLAN`]; RX, the tag the device stripped, with
    /// [`PacketMeta::RX_VLAN_STRIPPED`] (meaningless without it).
    pub vlan_tci: u16,
}

impl PacketMeta {
    /// RX: the device checked the IPv4 header checksum and found it good.
    pub const RX_IP_CSUM_GOOD: u32 = 1 << 0;
    /// RX: the device checked the IPv4 header checksum and found it bad.
    pub const RX_IP_CSUM_BAD: u32 = 1 << 1;
    /// RX: the device checked the TCP/UDP checksum and found it good.
    pub const RX_L4_CSUM_GOOD: u32 = 1 << 2;
    /// RX: the device checked the TCP/UDP checksum and found it bad.
    pub const RX_L4_CSUM_BAD: u32 = 1 << 3;
    /// RX: the frame is several TCP segments coalesced into one (by the device or its
    /// backend: virtio's GUEST_TSO, or LRO); `mss` is the size of the segments.
    pub const RX_LRO: u32 = 1 << 4;
    /// RX: the device stripped an 802.1Q tag from the frame; it is in `vlan_tci`
    /// (`PortConfig::vlan_strip`).
    pub const RX_VLAN_STRIPPED: u32 = 1 << 5;
    /// RX, with `RX_L4_CSUM_GOOD`: the sender left the TCP or UDP checksum partial (virtio's
    /// `NEEDS_CSUM`: the data came from a sender on the same host and crossed no wire, so it
    /// is good) and the port was asked not to complete it
    /// (`PortConfig::rx_fill_partial_checksums` off): the field holds the pseudo-header
    /// sum, not the checksum. A stack that trusts the verdict takes the frame as it is (the
    /// kernel's `CHECKSUM_PARTIAL`, DPDK's `RX_L4_CKSUM_NONE`); a frame sent on from here
    /// asks for its checksum (`TX_TCP_CSUM`/`TX_UDP_CSUM`).
    pub const RX_L4_CSUM_PARTIAL: u32 = 1 << 6;
    /// RX: bits 11:8 hold the [`RssType`] the device hashed the frame as (0: no hash).
    pub const RX_RSS_TYPE_SHIFT: u32 = 8;
    /// The bits of [`PacketMeta::RX_RSS_TYPE_SHIFT`].
    pub const RX_RSS_TYPE_MASK: u32 = 0xf << Self::RX_RSS_TYPE_SHIFT;
    /// RX: bits 15:12 hold the [`PacketType`] the device parsed the frame as (L3 in 13:12,
    /// L4 in 15:14; 0: the device did not say).
    pub const RX_PTYPE_SHIFT: u32 = 12;
    /// The bits of [`PacketMeta::RX_PTYPE_SHIFT`].
    pub const RX_PTYPE_MASK: u32 = 0xf << Self::RX_PTYPE_SHIFT;

    /// RX: bits 31:24 hold the mark an ingress filter gave the frame
    /// ([`crate::port::IngressVerdict::Mark`]; 0: none).
    pub const RX_MARK_SHIFT: u32 = 24;
    /// The bits of [`PacketMeta::RX_MARK_SHIFT`].
    pub const RX_MARK_MASK: u32 = 0xff << Self::RX_MARK_SHIFT;

    /// TX: the packet is IPv4 (with the L3 offloads below; `l2_len`, `l3_len` set).
    pub const TX_IPV4: u32 = 1 << 16;
    /// TX: the packet is IPv6.
    pub const TX_IPV6: u32 = 1 << 17;
    /// TX: compute the IPv4 header checksum.
    pub const TX_IP_CSUM: u32 = 1 << 18;
    /// TX: compute the TCP checksum (over IPv4 or IPv6, by `TX_IPV4`/`TX_IPV6`).
    pub const TX_TCP_CSUM: u32 = 1 << 19;
    /// TX: compute the UDP checksum.
    pub const TX_UDP_CSUM: u32 = 1 << 20;
    /// TX: segment the TCP payload into `mss`-byte frames (`l2_len`, `l3_len`, `l4_len`
    /// set; implies the TCP checksum, and the IPv4 header checksum on IPv4).
    pub const TX_TSO: u32 = 1 << 21;
    /// TX: insert an 802.1Q tag with `vlan_tci` after the source address (the frame is
    /// given untagged; its header lengths for the other offloads count no tag).
    pub const TX_VLAN: u32 = 1 << 22;
    /// Every TX offload request: a packet with none of them takes the plain path.
    pub const TX_OFFLOAD_MASK: u32 =
        Self::TX_IP_CSUM | Self::TX_TCP_CSUM | Self::TX_UDP_CSUM | Self::TX_TSO | Self::TX_VLAN;

    /// What the device hashed the frame as ([`RssType::None`]: no hash).
    #[inline]
    pub fn rss_type(&self) -> RssType {
        RssType::from_report((self.flags & Self::RX_RSS_TYPE_MASK) >> Self::RX_RSS_TYPE_SHIFT)
    }

    /// What the device parsed the frame as: IPv4, IPv6 or other, and TCP, UDP or other,
    /// each unknown where the device does not say (virtio-net; see [`crate::packet::ptype`]).
    #[inline]
    pub fn packet_type(&self) -> PacketType {
        PacketType::from_flags(self.flags)
    }

    /// The mark an ingress filter gave the frame (0: none).
    #[inline]
    pub fn mark(&self) -> u8 {
        ((self.flags & Self::RX_MARK_MASK) >> Self::RX_MARK_SHIFT) as u8
    }

    /// The RSS hash, if the device computed one.
    #[inline]
    pub fn rss_hash(&self) -> Option<u32> {
        (self.flags & Self::RX_RSS_TYPE_MASK != 0).then_some(self.rss_hash)
    }
}

struct PoolCore {
    region: DmaRegion,
    /// One header per buffer (host memory, never device-visible); a PacketBuf points at one.
    hdrs: Box<[std::cell::UnsafeCell<BufHdr>]>,
    free: ArrayQueue<u32>,
    stride: usize,
    /// Slots in each page of the region (0: slots follow each other across pages).
    per_page: usize,
    /// The region's page size.
    page: usize,
    headroom: u16,
    data_room: u32,
    buffers: u32,
    /// Buffers not in `free`: held by caches, devices or the application. Caches move it in
    /// bulk; a single buffer dropped by the application moves it by one.
    in_use: AtomicUsize,
}

/// Owns the pool core; dropped exactly once, when the last [`Mempool`] handle (the
/// application's, or a queue cache's) is gone.
struct PoolOwner {
    core: NonNull<PoolCore>,
}

// SAFETY: PoolCore is Send + Sync (DmaRegion is, ArrayQueue and atomics are); the pointer
// is only a stable address for it.
unsafe impl Send for PoolOwner {}
// SAFETY: as above.
unsafe impl Sync for PoolOwner {}

impl Drop for PoolOwner {
    fn drop(&mut self) {
        // SAFETY: `core` came from Box::into_raw in Mempool::new and is freed only here.
        let in_use = unsafe { self.core.as_ref() }.in_use.load(Ordering::Acquire);
        if in_use == 0 {
            // SAFETY: no handle and no buffer refers to the core any more: every buffer's
            // last access to it is the Release decrement of `in_use` observed above.
            drop(unsafe { Box::from_raw(self.core.as_ptr()) });
        } else {
            // Buffers still point at the core: keep it (and its DMA region) alive for them.
            log::warn!("mempool dropped with {in_use} buffers still in use; leaking it");
        }
    }
}

/// A pool of packet buffers. Cheap to clone (a reference count).
#[derive(Clone)]
pub struct Mempool {
    owner: Arc<PoolOwner>,
}

impl std::fmt::Debug for Mempool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mempool")
            .field("buffers", &self.capacity())
            .field("free", &self.free_count())
            .finish()
    }
}

impl Mempool {
    /// Carves `cfg.buffers` buffers out of a new DMA region mapped by `mapper`.
    pub fn new(mapper: Arc<dyn DmaMapper>, cfg: &MempoolConfig) -> Result<Self, Error> {
        if cfg.buffers == 0 || cfg.data_room < 64 || cfg.headroom > u16::MAX as u32 {
            return Err(Error::Config(format!(
                "mempool of {} buffers with {} bytes of data room and {} of headroom",
                cfg.buffers, cfg.data_room, cfg.headroom
            )));
        }
        // Slots are cache-line multiples so no two buffers share a line.
        let stride = ((cfg.headroom + cfg.data_room) as usize).div_ceil(64) * 64;
        let n = cfg.buffers as usize;
        let overflow = || Error::Config("mempool size overflows".into());
        let (huge_per_page, huge_bytes) =
            slot_layout(stride, n, HUGEPAGE_SIZE).ok_or_else(overflow)?;
        let mut region =
            DmaRegion::allocate(mapper.clone(), huge_bytes, cfg.hugepages).map_err(Error::from)?;
        let (per_page, page) = if region.is_hugepage() {
            (huge_per_page, HUGEPAGE_SIZE)
        } else {
            // 4 KiB pages (no hugepages free): fewer slots fit, so the region may need to
            // be larger.
            let (per_page, bytes) = slot_layout(stride, n, SMALL_PAGE).ok_or_else(overflow)?;
            if bytes > region.len() {
                region = DmaRegion::allocate(mapper, bytes, cfg.hugepages).map_err(Error::from)?;
            }
            (per_page, SMALL_PAGE)
        };
        let free = ArrayQueue::new(cfg.buffers as usize);
        for i in 0..cfg.buffers {
            let _ = free.push(i);
        }
        let hdrs: Box<[std::cell::UnsafeCell<BufHdr>]> = (0..cfg.buffers)
            .map(|i| {
                let off = slot_offset(i as usize, stride, per_page, page);
                std::cell::UnsafeCell::new(BufHdr {
                    core: NonNull::dangling(),
                    base: NonNull::new(region.base_ptr().wrapping_add(off))
                        .expect("non-null region"),
                    iova: region.iova() + off as u64,
                    idx: i,
                    end: cfg.headroom + cfg.data_room,
                    data_off: cfg.headroom as u16,
                    len: 0,
                    meta: PacketMeta::default(),
                    next: None,
                })
            })
            .collect();
        let core = Box::new(PoolCore {
            hdrs,
            region,
            free,
            stride,
            per_page,
            page,
            headroom: cfg.headroom as u16,
            data_room: cfg.data_room,
            buffers: cfg.buffers,
            in_use: AtomicUsize::new(0),
        });
        let core = NonNull::from(Box::leak(core));
        // SAFETY: just created, no buffer handed out yet.
        for h in unsafe { core.as_ref() }.hdrs.iter() {
            // SAFETY: as above: nothing else refers to the headers yet.
            unsafe { (*h.get()).core = core };
        }
        Ok(Mempool {
            owner: Arc::new(PoolOwner { core }),
        })
    }

    #[inline(always)]
    fn core(&self) -> &PoolCore {
        // SAFETY: the core lives while any PoolOwner handle does (see PoolOwner::drop).
        unsafe { self.owner.core.as_ref() }
    }

    /// Total number of buffers.
    pub fn capacity(&self) -> u32 {
        self.core().buffers
    }

    /// Buffers in the shared free list (not counting those parked in queue caches).
    pub fn free_count(&self) -> usize {
        self.core().free.len()
    }

    /// Bytes of data room per buffer.
    pub fn data_room(&self) -> u32 {
        self.core().data_room
    }

    /// Bytes of DMA memory behind the pool.
    pub fn dma_bytes(&self) -> usize {
        self.core().region.len()
    }

    /// Takes one buffer from the shared free list (one atomic operation; the data path
    /// uses a [`MempoolCache`] instead).
    pub fn alloc(&self) -> Option<PacketBuf> {
        let idx = self.core().free.pop()?;
        self.core().in_use.fetch_add(1, Ordering::Relaxed);
        Some(PacketBuf::from_index(self.owner.core, idx))
    }

    /// Writes `data` into the data room of every buffer in the pool, as a template that
    /// survives alloc/free cycles: a generator that sends the same frame with a few bytes
    /// changed touches only those bytes per packet. Fails, writing nothing, unless every
    /// buffer is in the shared free list (none held by a cache, a queue or the application):
    /// call it before creating queues or caches on the pool.
    pub fn fill_template(&self, data: &[u8]) -> Result<(), Error> {
        let core = self.core();
        if data.len() > core.data_room as usize {
            return Err(Error::Config(format!(
                "a {}-byte template does not fit a mempool buffer's {}-byte data room",
                data.len(),
                core.data_room
            )));
        }
        // Every buffer is taken out of the pool before any byte is written, so the writes
        // go to buffers this call owns: checking that the pool is idle and then writing
        // would race an allocation on another thread in between. A buffer that cannot be
        // taken is held by someone, and all taken go back (dropped) on the error path.
        let mut owned = Vec::with_capacity(core.buffers as usize);
        owned.extend(std::iter::from_fn(|| self.alloc()));
        if owned.len() != core.buffers as usize {
            return Err(Error::Config(format!(
                "mempool template needs every buffer free, but {} of {} are held \
                 (by queue caches, devices or the application): fill it before creating queues",
                core.buffers as usize - owned.len(),
                core.buffers
            )));
        }
        for b in &owned {
            // The data room of an owned buffer (data_room bytes after the headroom; the
            // template fits, checked above).
            core.region.copy_in(
                slot_offset(b.index() as usize, core.stride, core.per_page, core.page)
                    + core.headroom as usize,
                data,
            );
        }
        Ok(())
    }

    /// A cache of up to `size` buffers in front of this pool, for one queue or thread.
    pub fn cache(&self, size: usize) -> MempoolCache {
        let size = size.max(2);
        MempoolCache {
            pool: self.clone(),
            stack: vec![NonNull::dangling(); size].into_boxed_slice(),
            len: 0,
            core: self.owner.core,
            headroom: self.core().headroom,
            size,
        }
    }
}

/// One packet buffer, owned: while a `PacketBuf` exists, no device and no other handle
/// touches its slot. Dropping it returns it to its pool.
#[repr(transparent)]
pub struct PacketBuf {
    hdr: NonNull<BufHdr>,
}

/// Per-buffer state, in host memory: a PacketBuf is a pointer to one.
#[repr(C, align(64))]
struct BufHdr {
    base: NonNull<u8>,
    iova: u64,
    core: NonNull<PoolCore>,
    idx: u32,
    /// headroom + data room: the end of the data room, from the slot start.
    end: u32,
    data_off: u16,
    len: u16,
    meta: PacketMeta,
    /// The next segment of a packet that spans several buffers (a received frame larger
    /// than one buffer). Owned: a buffer in a free list or a cache always has `None` here.
    next: Option<PacketBuf>,
}

// A header stays one cache line: the data path reads and writes it once per packet.
const _: () = assert!(std::mem::size_of::<BufHdr>() == 64);

// SAFETY: a PacketBuf exclusively owns its slot; the core it points to is Sync and outlives
// it (PoolOwner leaks the core rather than free it under a live buffer).
unsafe impl Send for PacketBuf {}

impl PacketBuf {
    /// A handle for buffer `idx`, reset to a fresh buffer's offset, length and metadata.
    #[inline(always)]
    fn from_index(core_ptr: NonNull<PoolCore>, idx: u32) -> PacketBuf {
        // SAFETY: the caller holds a live handle to the pool or a buffer of it.
        let core = unsafe { core_ptr.as_ref() };
        let mut b =
            PacketBuf::from_hdr(NonNull::new(core.hdrs[idx as usize].get()).expect("non-null"));
        b.reset();
        b
    }

    #[inline(always)]
    fn from_hdr(hdr: NonNull<BufHdr>) -> PacketBuf {
        PacketBuf { hdr }
    }

    #[inline(always)]
    fn h(&self) -> &BufHdr {
        // SAFETY: the handle owns its header exclusively while it exists.
        unsafe { self.hdr.as_ref() }
    }

    #[inline(always)]
    fn hm(&mut self) -> &mut BufHdr {
        // SAFETY: as in h, and &mut self makes it exclusive.
        unsafe { self.hdr.as_mut() }
    }

    #[inline(always)]
    fn core(&self) -> &PoolCore {
        // SAFETY: see the Send impl: the core outlives every buffer.
        unsafe { self.h().core.as_ref() }
    }

    /// Offload requests (TX) and results (RX).
    #[inline(always)]
    pub fn meta(&self) -> &PacketMeta {
        &self.h().meta
    }

    /// Offload requests (TX) and results (RX), writable.
    #[inline(always)]
    pub fn meta_mut(&mut self) -> &mut PacketMeta {
        &mut self.hm().meta
    }

    /// Length of the packet data.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.h().len as usize
    }

    /// Whether the packet has no data.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.h().len == 0
    }

    /// Bytes that fit after the data offset.
    #[inline(always)]
    pub fn capacity(&self) -> usize {
        let h = self.h();
        h.end as usize - h.data_off as usize
    }

    /// Room in front of the data, for prepending headers.
    pub fn headroom(&self) -> usize {
        self.h().data_off as usize
    }

    /// Sets the data length. Returns false (and changes nothing) if it does not fit.
    #[inline(always)]
    pub fn set_len(&mut self, len: usize) -> bool {
        // `capacity() < len` as one add and a compare with the end, in memory (data_off + len
        // cannot overflow: len <= u16::MAX is tested first).
        let h = self.h();
        if len > u16::MAX as usize || h.data_off as usize + len > h.end as usize {
            return false;
        }
        self.hm().len = len as u16;
        true
    }

    /// [`PacketBuf::set_len`] for a length a device reported for a received frame, which
    /// must not be 0 either: 0 is refused by the compare that refuses a length over 16 bits
    /// (`len - 1` wraps to the top for 0).
    #[inline(always)]
    pub(crate) fn set_rx_len(&mut self, len: usize) -> bool {
        let h = self.h();
        if len.wrapping_sub(1) >= u16::MAX as usize || h.data_off as usize + len > h.end as usize {
            return false;
        }
        self.hm().len = len as u16;
        true
    }

    /// IOVA of the first data byte: what a descriptor points at.
    #[inline(always)]
    pub fn data_iova(&self) -> u64 {
        self.h().iova + self.h().data_off as u64
    }

    /// The packet data.
    #[inline(always)]
    pub fn data(&self) -> &[u8] {
        // SAFETY: [data_off, data_off + len) lies in this buffer's slot (set_len checks
        // against capacity); the slot is owned by `self`, so no device writes it now.
        unsafe {
            core::slice::from_raw_parts(
                self.h().base.as_ptr().add(self.h().data_off as usize),
                self.h().len as usize,
            )
        }
    }

    /// The packet data, writable.
    #[inline(always)]
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `data`, and `&mut self` makes the borrow exclusive.
        unsafe {
            core::slice::from_raw_parts_mut(
                self.h().base.as_ptr().add(self.h().data_off as usize),
                self.h().len as usize,
            )
        }
    }

    /// Replaces the data with `bytes`; false if it does not fit.
    pub fn copy_from(&mut self, bytes: &[u8]) -> bool {
        if !self.set_len(bytes.len()) {
            return false;
        }
        self.data_mut().copy_from_slice(bytes);
        true
    }

    /// Moves the data start `n` bytes earlier (to prepend a header); false if the headroom
    /// is too small.
    pub fn prepend(&mut self, n: usize) -> bool {
        if n > self.h().data_off as usize || self.h().len as usize + n > u16::MAX as usize {
            return false;
        }
        self.hm().data_off -= n as u16;
        self.hm().len += n as u16;
        true
    }

    /// Drops `n` bytes from the front (to strip a header); false if shorter than `n`.
    pub fn adj(&mut self, n: usize) -> bool {
        if n > self.h().len as usize {
            return false;
        }
        self.hm().data_off += n as u16;
        self.hm().len -= n as u16;
        true
    }

    /// Restores a fresh buffer's data offset, length and metadata.
    #[inline(always)]
    pub(crate) fn reset(&mut self) {
        let headroom = self.core().headroom;
        self.reset_to(headroom);
    }

    /// `reset` with the pool's headroom already at hand.
    #[inline(always)]
    fn reset_to(&mut self, headroom: u16) {
        let h = self.hm();
        h.data_off = headroom;
        h.len = 0;
        h.meta = PacketMeta::default();
    }

    /// The next segment, for a packet that spans several buffers.
    #[inline(always)]
    pub fn next(&self) -> Option<&PacketBuf> {
        self.h().next.as_ref()
    }

    /// The next segment, writable.
    #[inline(always)]
    pub fn next_mut(&mut self) -> Option<&mut PacketBuf> {
        self.hm().next.as_mut()
    }

    /// Whether the packet spans more than this buffer.
    #[inline(always)]
    pub fn is_chained(&self) -> bool {
        self.h().next.is_some()
    }

    /// Detaches and returns the rest of the chain.
    #[inline(always)]
    pub fn take_next(&mut self) -> Option<PacketBuf> {
        self.hm().next.take()
    }

    /// Makes `next` the next segment; returns the one it replaces.
    pub fn set_next(&mut self, next: Option<PacketBuf>) -> Option<PacketBuf> {
        std::mem::replace(&mut self.hm().next, next)
    }

    /// The buffers of the packet, this one first.
    pub fn segments(&self) -> Segments<'_> {
        Segments { next: Some(self) }
    }

    /// Buffers the packet spans.
    pub fn nb_segs(&self) -> usize {
        self.segments().count()
    }

    /// Bytes of the whole packet, over every segment.
    pub fn pkt_len(&self) -> usize {
        self.segments().map(PacketBuf::len).sum()
    }

    /// Appends the whole packet's bytes, every segment in order, to `out`.
    pub fn append_to(&self, out: &mut Vec<u8>) {
        for s in self.segments() {
            out.extend_from_slice(s.data());
        }
    }

    /// The headroom's bytes: what lies in front of the data (a device may have written a
    /// header there, as virtio-net does).
    #[inline(always)]
    pub fn headroom_bytes(&self) -> &[u8] {
        // SAFETY: [0, data_off) lies in this buffer's slot (data_off <= end), owned by `self`.
        unsafe { core::slice::from_raw_parts(self.h().base.as_ptr(), self.h().data_off as usize) }
    }

    /// The headroom, writable: a header a device reads in front of the data goes here
    /// (virtio-net's TX header, which the TX ops write without moving the data).
    #[inline(always)]
    pub fn headroom_mut(&mut self) -> &mut [u8] {
        // SAFETY: [0, data_off) lies in this buffer's slot (data_off <= end), owned by
        // `self`, borrowed mutably: no other view of these bytes exists meanwhile.
        unsafe {
            core::slice::from_raw_parts_mut(self.h().base.as_ptr(), self.h().data_off as usize)
        }
    }

    /// Whether `self` belongs to `pool`.
    pub fn is_from(&self, pool: &Mempool) -> bool {
        self.h().core == pool.owner.core
    }

    /// Index of the buffer in its pool (for debugging and tests).
    pub fn index(&self) -> u32 {
        self.h().idx
    }
}

impl Drop for PacketBuf {
    fn drop(&mut self) {
        // The rest of a chain, freed segment by segment after this one (a loop, not a
        // recursion as deep as the chain).
        let mut rest = self.take_next();
        while let Some(mut seg) = rest {
            rest = seg.take_next();
            drop(seg);
        }
        let core = self.core();
        // The free list holds every index at most once, so it cannot be full here.
        let _ = core.free.push(self.h().idx);
        // Last access to the core: see PoolOwner::drop.
        core.in_use.fetch_sub(1, Ordering::Release);
    }
}

impl std::fmt::Debug for PacketBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketBuf")
            .field("idx", &self.h().idx)
            .field("len", &self.h().len)
            .field("data_off", &self.h().data_off)
            .finish()
    }
}

/// The segments of a packet: see [`PacketBuf::segments`].
pub struct Segments<'a> {
    next: Option<&'a PacketBuf>,
}

impl<'a> Iterator for Segments<'a> {
    type Item = &'a PacketBuf;

    fn next(&mut self) -> Option<&'a PacketBuf> {
        let cur = self.next?;
        self.next = cur.next();
        Some(cur)
    }
}

/// A per-queue (single-thread) cache of free buffers in front of a [`Mempool`]: allocation
/// and release are a `Vec` pop/push; the shared free list is visited in bulk, half the
/// cache at a time.
pub struct MempoolCache {
    pool: Mempool,
    /// `stack[..len]` are owned free buffers (the rest is stale).
    stack: Box<[NonNull<BufHdr>]>,
    len: usize,
    core: NonNull<PoolCore>,
    headroom: u16,
    size: usize,
}

// SAFETY: the header pointers are owned buffers of the pool, like PacketBufs (which are Send).
unsafe impl Send for MempoolCache {}

impl MempoolCache {
    /// The pool behind the cache.
    pub fn pool(&self) -> &Mempool {
        &self.pool
    }

    /// Buffers parked in this cache.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the cache holds no buffer.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[cold]
    fn refill(&mut self) -> bool {
        let core = self.pool.core();
        let want = self.size / 2;
        let mut got = 0;
        while got < want {
            match core.free.pop() {
                Some(i) => {
                    let b = PacketBuf::from_index(self.pool.owner.core, i);
                    self.stack[self.len] = b.hdr;
                    self.len += 1;
                    std::mem::forget(b);
                    got += 1;
                }
                None => break,
            }
        }
        core.in_use.fetch_add(got, Ordering::Relaxed);
        got > 0
    }

    #[cold]
    fn spill(&mut self, keep: usize) {
        self.len = spill(&self.pool, &self.stack, self.len, keep);
    }

    /// A fresh buffer, or `None` if the pool is exhausted.
    #[inline(always)]
    pub fn alloc(&mut self) -> Option<PacketBuf> {
        if self.len == 0 && !self.refill() {
            return None;
        }
        self.len -= 1;
        // SAFETY: len < stack.len() by construction.
        let h = *unsafe { self.stack.get_unchecked(self.len) };
        let mut b = PacketBuf::from_hdr(h);
        // Buffers sit in the cache as they were freed: reset on the way out.
        b.reset_to(self.headroom);
        Some(b)
    }

    /// Up to `n` fresh buffers, fewer if the cache holds fewer (it does not go to the shared
    /// list for them: [`MempoolCache::refill_if_empty`] does). Buffers the caller does not
    /// take from the iterator stay in the cache.
    #[inline(always)]
    pub fn alloc_bulk(&mut self, n: usize) -> AllocBulk<'_> {
        let len = self.len;
        let start = len - n.min(len);
        AllocBulk {
            bufs: self.stack[start..len].iter(),
            start,
            len: &mut self.len,
            headroom: self.headroom,
        }
    }

    /// Moves up to `n` fresh buffers (fewer if the cache holds fewer) into slots `pidx`,
    /// `pidx + 1`, ... of `slots`, calling `post(idx, &buf)` for each before it is parked;
    /// stops at the first slot that is occupied. `MAY_BE_HELD`: whether one may be; false
    /// (the caller knows every slot from `pidx` on is empty) skips the test (were it wrong,
    /// a buffer would leak, see [`BufSlots::put`], never be freed twice).
    #[inline(always)]
    pub fn alloc_into_slots<const MAY_BE_HELD: bool>(
        &mut self,
        slots: &mut BufSlots<'_>,
        pidx: u32,
        n: u32,
        mut post: impl FnMut(u32, &PacketBuf),
    ) -> Posted {
        let take = (n as usize).min(self.len);
        let headroom = self.headroom;
        // The top `take` buffers, `stack[len - take..len]`, handed out first to last, so one
        // counter steps both the stack and the slots. What is not handed out (a stop at an
        // occupied slot, or an unwind from `post`) moves down when the guard drops, so the
        // cache owns `stack[..len]` again and no buffer is ever owned twice.
        let end = self.len;
        let mut g = TakeGuard {
            stack: &mut self.stack,
            len: &mut self.len,
            from: end - take,
            taken: 0,
            end,
        };
        while g.taken != take {
            let idx = pidx.wrapping_add(g.taken as u32);
            if MAY_BE_HELD && slots.is_occupied(idx) {
                break;
            }
            // SAFETY: from + taken < end <= stack.len(), and stack[from + taken] is an owned
            // free buffer: counted as taken, it moves here.
            let mut b = PacketBuf::from_hdr(*unsafe { g.stack.get_unchecked(g.from + g.taken) });
            g.taken += 1;
            b.reset_to(headroom);
            post(idx, &b);
            slots.put(idx, b);
        }
        let got = g.taken;
        drop(g);
        Posted {
            got: got as u32,
            // The loop stops early only there.
            blocked: got != take,
        }
    }

    /// Brings buffers from the shared list if the cache is empty; false if it stays empty.
    #[inline(always)]
    pub fn refill_if_empty(&mut self) -> bool {
        self.len != 0 || self.refill()
    }

    /// A cursor that frees buffers into the cache as [`MempoolCache::free`] does, with its
    /// state in registers, for a loop that frees many.
    #[inline(always)]
    pub fn free_bulk(&mut self) -> FreeBulk<'_> {
        FreeBulk {
            len: self.len,
            stack: &mut self.stack,
            len_slot: &mut self.len,
            core: self.core,
            pool: &self.pool,
        }
    }

    /// Returns the buffers in slots `start..end` of `slots` (free-running indices; empty
    /// slots are skipped), as [`MempoolCache::free`] would one by one; returns how many.
    /// Room is made before each run of at most half the cache, so the loop that moves the
    /// buffers has no spill test.
    #[inline(always)]
    ///
    /// `CHAINS`: a slot may hold a chain (a frame TX sent in several segments), which goes
    /// home segment by segment; the TX engine asks for that only while a chain may be in
    /// flight, so the usual run has no chain test.
    pub(crate) fn free_slots<const CHAINS: bool>(
        &mut self,
        slots: &mut BufSlots<'_>,
        start: u32,
        end: u32,
    ) -> u64 {
        let half = self.size / 2; // size >= 2
        let core = self.core;
        let mut idx = start;
        let mut freed = 0u64;
        while idx != end {
            let want = (end.wrapping_sub(idx) as usize).min(half);
            if self.len + want > self.size {
                self.spill(half);
            }
            // The slots from `idx` on, up to the end of the ring.
            let run = slots.contiguous(idx, want);
            let n = run.len();
            let start_len = self.len;
            let mut len = start_len;
            let mut foreign = 0u64;
            let stack = &mut *self.stack;
            for slot in run.iter_mut() {
                if let Some(b) = slot.take() {
                    // A chain (a frame TX sent in several segments) or a buffer of another
                    // pool goes home segment by segment as it drops.
                    if b.h().core != core || (CHAINS && b.h().next.is_some()) {
                        drop_foreign(b);
                        foreign += 1;
                    } else {
                        // SAFETY: len <= size - want before this run (the spill above
                        // leaves at most half), and at most n <= want buffers are stored in
                        // it, so len < size == stack.len() here.
                        *unsafe { stack.get_unchecked_mut(len) } = b.hdr;
                        len += 1;
                        // The index now lives in the cache (see `free`).
                        std::mem::forget(b);
                    }
                }
            }
            self.len = len;
            freed += (len - start_len) as u64 + foreign;
            idx = idx.wrapping_add(n as u32);
        }
        freed
    }

    /// Returns a buffer. A buffer of another pool goes back to its own pool.
    #[inline(always)]
    pub fn free(&mut self, buf: PacketBuf) {
        if buf.h().core != self.core || buf.h().next.is_some() {
            self.free_slow(buf);
            return;
        }
        if self.len >= self.size {
            self.spill(self.size / 2);
        }
        // Not reset here: `alloc` (or RX, which sets every field) does it on the way out.
        // SAFETY: len < size == stack.len() after the spill above.
        *unsafe { self.stack.get_unchecked_mut(self.len) } = buf.hdr;
        self.len += 1;
        // The index now lives in the cache; the handle must not return it a second time.
        std::mem::forget(buf);
    }
}

impl MempoolCache {
    /// A buffer of another pool (back to its own pool), or a chain (segment by segment).
    #[cold]
    #[inline(never)]
    fn free_slow(&mut self, mut buf: PacketBuf) {
        if buf.h().core != self.core {
            drop(buf);
            return;
        }
        loop {
            let next = buf.take_next();
            self.free(buf);
            match next {
                Some(n) => buf = n,
                None => return,
            }
        }
    }
}

/// A buffer of another pool, or a chain, freed into a cache: back to its pool.
#[cold]
#[inline(never)]
fn drop_foreign(b: PacketBuf) {
    drop(b);
}

/// Returns `stack[keep..len]`, buffers a cache owns, to the shared free list; returns the
/// new length.
#[cold]
#[inline(never)]
fn spill(pool: &Mempool, stack: &[NonNull<BufHdr>], mut len: usize, keep: usize) -> usize {
    let core = pool.core();
    let mut n = 0;
    while len > keep {
        len -= 1;
        let h = stack[len];
        // SAFETY: the cache owns the buffers it holds, and with them their headers.
        let _ = core.free.push(unsafe { h.as_ref() }.idx);
        n += 1;
    }
    core.in_use.fetch_sub(n, Ordering::Release);
    len
}

/// The buffers [`MempoolCache::alloc_into_slots`] hands out, `stack[from..end]`, first to
/// last: on drop, what it did not take moves down to `stack[from..]` and the cache's length
/// is set to what it still owns.
struct TakeGuard<'a> {
    stack: &'a mut [NonNull<BufHdr>],
    len: &'a mut usize,
    from: usize,
    taken: usize,
    end: usize,
}

impl Drop for TakeGuard<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        let rest = self.from + self.taken;
        if rest != self.end {
            self.stack.copy_within(rest..self.end, self.from);
        }
        *self.len = self.end - self.taken;
    }
}

/// What [`MempoolCache::alloc_into_slots`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Posted {
    /// Buffers parked in slots.
    pub got: u32,
    /// It stopped at an occupied slot.
    pub blocked: bool,
}

/// Fresh buffers taken from a cache in bulk: see [`MempoolCache::alloc_bulk`].
pub struct AllocBulk<'a> {
    /// What is left to hand out; taken from the back, like single allocations.
    bufs: std::slice::Iter<'a, NonNull<BufHdr>>,
    start: usize,
    len: &'a mut usize,
    headroom: u16,
}

impl Iterator for AllocBulk<'_> {
    type Item = PacketBuf;

    #[inline(always)]
    fn next(&mut self) -> Option<PacketBuf> {
        let mut b = PacketBuf::from_hdr(*self.bufs.next_back()?);
        b.reset_to(self.headroom);
        Some(b)
    }

    #[inline(always)]
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.bufs.size_hint()
    }
}

impl ExactSizeIterator for AllocBulk<'_> {}

impl Drop for AllocBulk<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        // What was not handed out stays in the cache, where it was.
        *self.len = self.start + self.bufs.len();
    }
}

/// Frees buffers into a cache in bulk: see [`MempoolCache::free_bulk`].
pub struct FreeBulk<'a> {
    len: usize,
    stack: &'a mut [NonNull<BufHdr>],
    len_slot: &'a mut usize,
    core: NonNull<PoolCore>,
    pool: &'a Mempool,
}

impl FreeBulk<'_> {
    /// Returns a buffer, as [`MempoolCache::free`] does.
    #[inline(always)]
    pub fn free(&mut self, buf: PacketBuf) {
        if buf.h().core != self.core || buf.h().next.is_some() {
            drop(buf);
            return;
        }
        if self.len >= self.stack.len() {
            self.len = spill(self.pool, self.stack, self.len, self.stack.len() / 2);
        }
        if let Some(slot) = self.stack.get_mut(self.len) {
            *slot = buf.hdr;
            self.len += 1;
            // The index now lives in the cache; the handle must not return it a second time.
            std::mem::forget(buf);
        }
    }
}

impl Drop for FreeBulk<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        *self.len_slot = self.len;
    }
}

impl Drop for MempoolCache {
    fn drop(&mut self) {
        self.spill(0);
    }
}

/// Convenience: a pool on an identity-mapped (device-less) region, for tests and models.
pub fn host_pool(buffers: u32) -> Result<Mempool, Error> {
    Mempool::new(
        Arc::new(crate::platform::dma::IdentityMapper),
        &MempoolConfig {
            buffers,
            hugepages: HugepagePolicy::Never,
            ..MempoolConfig::default()
        },
    )
}

/// Buffers parked at ring positions: `entries` (a power of two) slots addressed by a
/// free-running index, masked. Used by the ring engine for buffers the device holds.
pub struct BufRing {
    slots: Box<[Option<PacketBuf>]>,
    mask: u32,
}

impl BufRing {
    /// `entries` empty slots.
    pub fn new(entries: u32) -> Self {
        assert!(entries.is_power_of_two());
        BufRing {
            slots: (0..entries).map(|_| None).collect(),
            mask: entries - 1,
        }
    }

    /// Whether slot `idx` holds a buffer.
    #[inline(always)]
    pub fn is_occupied(&mut self, idx: u32) -> bool {
        self.view().is_occupied(idx)
    }

    /// Parks `b` in slot `idx`, which the engine knows is empty (see [`BufSlots::put`]).
    #[inline(always)]
    pub fn put(&mut self, idx: u32, b: PacketBuf) {
        self.view().put(idx, b)
    }

    /// Takes the buffer in slot `idx`, if any.
    #[inline(always)]
    pub fn take(&mut self, idx: u32) -> Option<PacketBuf> {
        self.view().take(idx)
    }

    /// Every slot, for releasing all buffers.
    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, Option<PacketBuf>> {
        self.slots.iter_mut()
    }

    /// The slots as a borrowed view whose address and mask a loop keeps in registers.
    #[inline(always)]
    pub fn view(&mut self) -> BufSlots<'_> {
        BufSlots {
            slots: &mut self.slots,
            mask: self.mask,
        }
    }

    /// [`BufRing::view`], masking with `entries - 1` computed from `entries` as the caller
    /// has it: a descriptor ring of the same size whose mask the compiler then keeps in the
    /// same register as this one. Panics unless `entries` is this ring's size.
    #[inline(always)]
    pub fn view_sized(&mut self, entries: u32) -> BufSlots<'_> {
        assert_eq!(
            entries.wrapping_sub(1),
            self.mask,
            "BufRing of another size"
        );
        BufSlots {
            slots: &mut self.slots,
            mask: entries.wrapping_sub(1),
        }
    }
}

/// A borrowed [`BufRing`]: the same operations, on a copy of its address and mask.
pub struct BufSlots<'a> {
    /// `mask + 1` slots.
    slots: &'a mut [Option<PacketBuf>],
    mask: u32,
}

impl BufSlots<'_> {
    #[inline(always)]
    fn slot(&mut self, idx: u32) -> &mut Option<PacketBuf> {
        let i = (idx & self.mask) as usize;
        debug_assert!(i < self.slots.len());
        // SAFETY: `slots` is a BufRing's, mask + 1 entries (built so in BufRing::new, never
        // resized), and i <= mask.
        unsafe { self.slots.get_unchecked_mut(i) }
    }

    /// Whether slot `idx` holds a buffer.
    #[inline(always)]
    pub fn is_occupied(&mut self, idx: u32) -> bool {
        self.slot(idx).is_some()
    }

    /// Slots `idx`, `idx + 1`, ... in place: `n` of them, fewer if the ring's end comes
    /// first.
    #[inline(always)]
    pub fn contiguous(&mut self, idx: u32, n: usize) -> &mut [Option<PacketBuf>] {
        let i = (idx & self.mask) as usize;
        let end = self.slots.len().min(i.saturating_add(n));
        &mut self.slots[i..end]
    }

    /// The buffer in slot `idx`, if any.
    #[inline(always)]
    pub fn get(&self, idx: u32) -> Option<&PacketBuf> {
        let i = (idx & self.mask) as usize;
        self.slots.get(i)?.as_ref()
    }

    /// Parks `b` in slot `idx`, which the engine knows is empty: no drop check of the old
    /// value on the data path (a broken invariant would leak a buffer, never free one twice).
    #[inline(always)]
    pub fn put(&mut self, idx: u32, b: PacketBuf) {
        let old = self.slot(idx).replace(b);
        debug_assert!(old.is_none(), "slot still holds a buffer");
        std::mem::forget(old);
    }

    /// Takes the buffer in slot `idx`, if any.
    #[inline(always)]
    pub fn take(&mut self, idx: u32) -> Option<PacketBuf> {
        self.slot(idx).take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// No slot crosses a page (QEMU's e1000e drops a TX frame whose buffer does), slots do
    /// not overlap, and the region holds them all: for 2 MiB and 4 KiB pages, and a slot
    /// larger than a page (which then simply follows the previous one).
    #[test]
    fn slots_stay_within_a_page() {
        for (stride, n, page) in [
            (2176, 2048, HUGEPAGE_SIZE),
            (2176, 2048, SMALL_PAGE),
            (4096, 10, SMALL_PAGE),
            (9088, 16, SMALL_PAGE),
        ] {
            let (per_page, bytes) = slot_layout(stride, n, page).unwrap();
            let mut last_end = 0;
            for i in 0..n {
                let off = slot_offset(i, stride, per_page, page);
                assert!(off >= last_end, "slot {i} overlaps the one before");
                assert!(off + stride <= bytes, "slot {i} outside the region");
                if stride <= page {
                    assert_eq!(
                        off / page,
                        (off + stride - 1) / page,
                        "slot {i} crosses a page"
                    );
                }
                last_end = off + stride;
            }
        }
        // The default pool: 963 slots a hugepage, three hugepages (what 4.25 MiB of slots
        // laid end to end took too); the third starts with slot 1926.
        assert_eq!(slot_layout(2176, 2048, HUGEPAGE_SIZE), Some((963, 6 << 20)));
        assert_eq!(slot_offset(1926, 2176, 963, HUGEPAGE_SIZE), 4 << 20);
    }

    /// A pool on 4 KiB pages (no hugepages): every buffer's slot, headroom and data room,
    /// lies within one page of IOVA space.
    #[test]
    fn a_pool_on_small_pages_keeps_each_buffer_in_a_page() {
        let pool = host_pool(64).unwrap();
        let bufs: Vec<PacketBuf> = std::iter::from_fn(|| pool.alloc()).collect();
        assert_eq!(bufs.len(), 64);
        for b in &bufs {
            let start = b.data_iova() - b.headroom() as u64;
            let end = b.data_iova() + b.capacity() as u64 - 1;
            assert_eq!(
                start / 4096,
                end / 4096,
                "buffer {} crosses a page",
                b.index()
            );
        }
    }

    #[test]
    fn buffers_are_distinct_and_return_to_the_pool() {
        let pool = host_pool(64).unwrap();
        let mut bufs: Vec<PacketBuf> = (0..64).map(|_| pool.alloc().unwrap()).collect();
        assert!(
            pool.alloc().is_none(),
            "65th allocation from a 64-buffer pool"
        );
        let idx: HashSet<u32> = bufs.iter().map(|b| b.index()).collect();
        assert_eq!(idx.len(), 64);
        let iovas: HashSet<u64> = bufs.iter().map(|b| b.data_iova()).collect();
        assert_eq!(iovas.len(), 64);
        for (i, b) in bufs.iter_mut().enumerate() {
            assert!(b.copy_from(&[i as u8; 60]));
        }
        for (i, b) in bufs.iter().enumerate() {
            assert_eq!(b.data(), &[i as u8; 60]);
        }
        bufs.truncate(10);
        assert_eq!(pool.free_count(), 54);
        drop(bufs);
        assert_eq!(pool.free_count(), 64);
    }

    #[test]
    fn lengths_and_headroom_are_checked() {
        let pool = host_pool(1).unwrap();
        let mut b = pool.alloc().unwrap();
        assert_eq!(b.headroom(), 128);
        assert_eq!(b.capacity(), 2048);
        assert!(!b.set_len(2049));
        assert!(b.set_len(2048));
        assert!(b.prepend(12));
        assert_eq!((b.len(), b.headroom()), (2060, 116));
        assert!(b.adj(12));
        assert!(!b.adj(5000));
        assert!(!b.prepend(200));
    }

    #[test]
    fn cache_serves_from_its_stack_and_spills_in_bulk() {
        let pool = host_pool(256).unwrap();
        let mut cache = pool.cache(32);
        let a = cache.alloc().unwrap();
        // One refill took half the cache size from the shared list.
        assert_eq!(pool.free_count(), 256 - 16);
        cache.free(a);
        let held: Vec<PacketBuf> = (0..100).map(|_| cache.alloc().unwrap()).collect();
        for b in held {
            cache.free(b);
        }
        assert!(cache.len() <= 32);
        drop(cache);
        assert_eq!(pool.free_count(), 256);
    }

    #[test]
    fn free_slots_skips_empty_slots_spills_and_sends_foreign_buffers_home() {
        let pool = host_pool(64).unwrap();
        let other = host_pool(4).unwrap();
        let mut cache = pool.cache(8);
        let mut ring = BufRing::new(16);
        let mut slots = ring.view();
        // Slots 14, 15, 0..10 across the wrap, every third empty, one foreign buffer.
        let mut held = 0;
        for i in 14u32..27 {
            if i % 3 != 0 {
                let b = if i == 20 {
                    other.alloc().unwrap()
                } else {
                    pool.alloc().unwrap()
                };
                slots.put(i, b);
                held += 1;
            }
        }
        assert_eq!(cache.free_slots::<false>(&mut slots, 14, 27), held);
        assert!(cache.len() <= 8);
        assert_eq!(other.free_count(), 4, "the foreign buffer went home");
        assert!((14u32..27).all(|i| slots.take(i).is_none()));
        drop(cache);
        assert_eq!(pool.free_count(), 64);
    }

    /// `alloc_into_slots` posts the cache's top buffers, stops at an occupied slot with the
    /// rest still in the cache, and an unwind from `post` leaves every buffer owned once:
    /// the pool gets each back exactly once.
    #[test]
    fn alloc_into_slots_stops_at_a_held_slot_and_survives_an_unwind() {
        let pool = host_pool(64).unwrap();
        let mut cache = pool.cache(16);
        assert!(cache.refill_if_empty());
        assert_eq!(cache.len(), 8);
        let mut ring = BufRing::new(16);
        let mut slots = ring.view();
        // Slot 5 is still held (out-of-order completion): 14, 15, 0..4 get buffers.
        slots.put(5, pool.alloc().unwrap());
        let mut seen = HashSet::new();
        let posted = cache.alloc_into_slots::<true>(&mut slots, 14, 16, |idx, b| {
            assert!(seen.insert(b.index()), "buffer {} posted twice", b.index());
            assert_eq!(
                (b.len(), b.headroom()),
                (0, 128),
                "slot {idx}: a fresh buffer"
            );
        });
        assert_eq!((posted.got, posted.blocked), (7, true));
        assert_eq!(cache.len(), 1);
        // All eight distinct between the slots and the cache.
        let last = cache.alloc().unwrap();
        assert!(seen.insert(last.index()));
        cache.free(last);
        // Posted without a stop: the cache's one buffer, not blocked.
        let posted = cache.alloc_into_slots::<true>(&mut slots, 6, 4, |_, _| {});
        assert_eq!((posted.got, posted.blocked), (1, false));
        assert!(cache.is_empty());

        // An unwind from the third `post`: two stay posted, the third goes home as it drops,
        // the cache keeps the other five.
        assert!(cache.refill_if_empty());
        let mut calls = 0;
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            cache.alloc_into_slots::<true>(&mut slots, 7, 8, |_, _| {
                calls += 1;
                assert!(calls < 3, "device refused the descriptor");
            })
        }));
        assert!(r.is_err());
        assert_eq!(cache.len(), 5);
        let mut all = HashSet::new();
        for b in ring.iter_mut().filter_map(Option::take) {
            assert!(all.insert(b.index()));
            drop(b);
        }
        let rest: Vec<PacketBuf> = (0..5).map(|_| cache.alloc().unwrap()).collect();
        for b in &rest {
            assert!(all.insert(b.index()), "buffer {} owned twice", b.index());
        }
        drop(rest);
        drop(cache);
        assert_eq!(pool.free_count(), 64);
    }

    /// A chain of `n` buffers holding `seg` bytes each, from `cache`.
    fn chain(cache: &mut MempoolCache, n: usize, seg: usize) -> PacketBuf {
        let mut bufs: Vec<PacketBuf> = (0..n)
            .map(|i| {
                let mut b = cache.alloc().unwrap();
                assert!(b.copy_from(&vec![i as u8; seg]));
                b
            })
            .collect();
        let mut head = bufs.pop().unwrap();
        while let Some(mut b) = bufs.pop() {
            b.set_next(Some(head));
            head = b;
        }
        head
    }

    #[test]
    fn chains_carry_their_bytes_and_every_segment_goes_home() {
        let pool = host_pool(16).unwrap();
        let mut cache = pool.cache(8);
        let c = chain(&mut cache, 3, 100);
        assert!(c.is_chained());
        assert_eq!((c.nb_segs(), c.pkt_len(), c.len()), (3, 300, 100));
        let mut bytes = Vec::new();
        c.append_to(&mut bytes);
        assert_eq!(&bytes[..], &[[0u8; 100], [1; 100], [2; 100]].concat()[..]);
        // Freed into a cache: three buffers, each unlinked (a fresh one has no next).
        cache.free(c);
        assert_eq!(cache.len() + pool.free_count(), 16);
        let all: Vec<PacketBuf> = (0..16).map(|_| cache.alloc().unwrap()).collect();
        assert!(all.iter().all(|b| !b.is_chained()));
        drop(all);
        drop(cache);
        // Dropped: every segment back in the shared list.
        let pool = host_pool(16).unwrap();
        let mut cache = pool.cache(8);
        let c = chain(&mut cache, 5, 10);
        drop(cache);
        assert_eq!(pool.free_count(), 11);
        drop(c);
        assert_eq!(pool.free_count(), 16);
    }

    #[test]
    fn exhaustion_is_reported_and_recovers() {
        let pool = host_pool(8).unwrap();
        let mut cache = pool.cache(4);
        let held: Vec<PacketBuf> = std::iter::from_fn(|| cache.alloc()).collect();
        assert_eq!(held.len(), 8);
        assert!(cache.alloc().is_none());
        drop(held);
        assert!(cache.alloc().is_some());
    }

    #[test]
    fn template_survives_alloc_free_cycles() {
        let pool = host_pool(4).unwrap();
        pool.fill_template(&[0xab; 64]).unwrap();
        let mut cache = pool.cache(4);
        for _ in 0..10 {
            let mut b = cache.alloc().unwrap();
            assert!(b.set_len(64));
            assert_eq!(b.data(), &[0xab; 64]);
            cache.free(b);
        }
    }

    #[test]
    fn a_template_never_lands_in_a_held_buffer() {
        let pool = host_pool(8).unwrap();
        let mut held = pool.alloc().unwrap();
        assert!(held.copy_from(&[0x55; 64]));
        let e = pool.fill_template(&[0xab; 64]).unwrap_err();
        assert!(e.to_string().contains("1 of 8"), "{e}");
        assert_eq!(held.data(), &[0x55; 64], "the holder's bytes are untouched");
        assert_eq!(
            pool.free_count(),
            7,
            "the buffers taken for the attempt went back"
        );
        // Nothing was written to the free ones either: the call writes all or nothing.
        let mut free: Vec<PacketBuf> = std::iter::from_fn(|| pool.alloc()).collect();
        assert_eq!(free.len(), 7);
        for b in &mut free {
            assert!(b.set_len(64));
            assert_eq!(b.data(), &[0; 64]);
        }
        drop(free);
        drop(held);
        pool.fill_template(&[0xab; 64]).unwrap();
        let mut b = pool.alloc().unwrap();
        assert!(b.set_len(64));
        assert_eq!(b.data(), &[0xab; 64]);
        drop(b);
        let too_big = vec![0u8; pool.data_room() as usize + 1];
        assert!(pool.fill_template(&too_big).is_err());
    }

    #[test]
    fn a_template_races_no_allocation_on_another_thread() {
        // One thread allocates, stamps and checks buffers while this one fills templates
        // over and over: a fill between another thread's alloc and free would show in its
        // bytes (an allocation between a check of the pool and the writes).
        let pool = host_pool(64).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (p2, stop2) = (pool.clone(), stop.clone());
        let holder = std::thread::spawn(move || {
            let mut torn = 0u32;
            while !stop2.load(Ordering::Relaxed) {
                let Some(mut b) = p2.alloc() else {
                    continue;
                };
                assert!(b.copy_from(&[0x55; 2048]));
                for _ in 0..50 {
                    std::hint::spin_loop();
                }
                if b.data().iter().any(|&x| x != 0x55) {
                    torn += 1;
                }
            }
            torn
        });
        // At least 100 ms, and at least 10 templates written unless that takes 5 s.
        let start = std::time::Instant::now();
        let mut filled = 0u32;
        while start.elapsed() < std::time::Duration::from_millis(100)
            || (filled < 10 && start.elapsed() < std::time::Duration::from_secs(5))
        {
            if pool.fill_template(&[0xab; 2048]).is_ok() {
                filled += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
        assert_eq!(
            holder.join().unwrap(),
            0,
            "a template landed in a held buffer"
        );
        assert!(filled > 0, "no template written: the race was never tried");
    }

    #[test]
    fn buffers_cross_threads_and_come_back() {
        let pool = host_pool(1024).unwrap();
        let (tx, rx) = std::sync::mpsc::sync_channel::<PacketBuf>(64);
        let p2 = pool.clone();
        let producer = std::thread::spawn(move || {
            let mut cache = p2.cache(64);
            for i in 0..20_000u32 {
                let mut b = loop {
                    if let Some(b) = cache.alloc() {
                        break b;
                    }
                    std::thread::yield_now();
                };
                b.copy_from(&i.to_le_bytes());
                tx.send(b).unwrap();
            }
        });
        let mut cache = pool.cache(64);
        for i in 0..20_000u32 {
            let b = rx.recv().unwrap();
            assert_eq!(b.data(), &i.to_le_bytes());
            cache.free(b);
        }
        producer.join().unwrap();
        drop(cache);
        assert_eq!(pool.free_count(), 1024);
    }

    #[test]
    fn a_pool_dropped_under_live_buffers_stays_valid() {
        let pool = host_pool(4).unwrap();
        let mut b = pool.alloc().unwrap();
        drop(pool);
        assert!(b.copy_from(b"still mine"));
        assert_eq!(b.data(), b"still mine");
    }
}
