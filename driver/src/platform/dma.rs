//! DMA memory: hugepage-backed regions mapped once into the IOMMU, and typed descriptor
//! rings over them. One of the three modules allowed `unsafe`.
//!
//! A region is kept as a raw mapping (`MmapRaw`), never behind `&`/`&mut`, because the
//! device writes it at any time: all access goes through volatile reads and writes at
//! offsets checked against the region's length.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use memmap2::{MmapOptions, MmapRaw};
use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::error::DmaError;

/// Size of a 2 MiB hugepage.
pub const HUGEPAGE_SIZE: usize = 2 << 20;
const SMALL_PAGE_SIZE: usize = 4096;

static DMA_BYTES_MAPPED: AtomicUsize = AtomicUsize::new(0);
static DMA_BYTES_PEAK: AtomicUsize = AtomicUsize::new(0);

/// Bytes of DMA memory this process has mapped for devices right now.
pub fn dma_bytes_mapped() -> usize {
    DMA_BYTES_MAPPED.load(Ordering::Relaxed)
}

/// The most DMA memory this process has had mapped at once.
pub fn dma_bytes_peak() -> usize {
    DMA_BYTES_PEAK.load(Ordering::Relaxed)
}

/// Something that makes memory visible to a device at an IOVA: the VFIO container, or an
/// identity map for host-side tests and benchmarks without a device.
pub trait DmaMapper: Send + Sync {
    /// Maps `[vaddr, vaddr + len)` for device access; returns the IOVA chosen.
    ///
    /// # Safety
    /// The range must be a live mapping owned by the caller that stays mapped until after
    /// [`DmaMapper::unmap`], and is only accessed through raw pointers meanwhile (the device
    /// may write it at any time).
    unsafe fn map(&self, vaddr: *mut u8, len: usize) -> Result<u64, DmaError>;
    /// Undoes [`DmaMapper::map`].
    fn unmap(&self, iova: u64, len: usize);
}

/// IOVA = virtual address, no IOMMU: for host-side tests and the in-memory device models
/// used by benchmarks. Never hand its addresses to a real device.
pub struct IdentityMapper;

impl DmaMapper for IdentityMapper {
    unsafe fn map(&self, vaddr: *mut u8, _len: usize) -> Result<u64, DmaError> {
        Ok(vaddr as u64)
    }
    fn unmap(&self, _iova: u64, _len: usize) {}
}

/// Whether a region must, may or must not use 2 MiB hugepages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HugepagePolicy {
    /// Use hugepages; fall back to 4 KiB pages with a warning if none are free.
    #[default]
    Prefer,
    /// Use hugepages or fail with an error that says how to reserve them.
    Require,
    /// Use 4 KiB pages (host-side tests).
    Never,
}

/// A block of memory the device can reach at `iova`.
///
/// Shared (`Sync`, in an `Arc`) by the rings and pools carved out of it, so its bytes are
/// not for anyone holding a `&DmaRegion` to read or write: two threads could then race on
/// the same bytes. Outside this crate, a region is reached only through the types built
/// on it ([`DescRing`], the mempool):
///
/// ```compile_fail
/// # use std::sync::Arc;
/// # use tenge::platform::dma::{DmaRegion, HugepagePolicy, IdentityMapper};
/// let region = DmaRegion::allocate(Arc::new(IdentityMapper), 4096, HugepagePolicy::Never);
/// region.unwrap().write::<u32>(0, 1);
/// ```
pub struct DmaRegion {
    map: MmapRaw,
    iova: u64,
    len: usize,
    hugepages: bool,
    mapper: Arc<dyn DmaMapper>,
}

// SAFETY: the region is raw memory reached only through raw pointers with volatile access;
// nothing in it is tied to the creating thread.
unsafe impl Send for DmaRegion {}
// SAFETY: as above. Through `&DmaRegion` safe code outside this crate gets only the IOVA and
// length, and rings (DescRing, whose whole-descriptor and field accesses are in bounds and
// aligned); the byte accessors that could race on the same bytes (read, write, copy_in,
// copy_out) are crate-private, under the contract stated on `read`. Known gap: nothing yet
// stops two DescRings over the same bytes, used from two threads (DescRing::new does not
// claim its range).
unsafe impl Sync for DmaRegion {}

impl DmaRegion {
    /// Allocates at least `len` bytes, zeroed, and maps them for the device.
    pub fn allocate(
        mapper: Arc<dyn DmaMapper>,
        len: usize,
        policy: HugepagePolicy,
    ) -> Result<Self, DmaError> {
        let len = len.max(1);
        let (map, hugepages) = match policy {
            HugepagePolicy::Never => (Self::map_small(len)?, false),
            HugepagePolicy::Prefer | HugepagePolicy::Require => {
                let huge_len = len.div_ceil(HUGEPAGE_SIZE) * HUGEPAGE_SIZE;
                match MmapOptions::new()
                    .len(huge_len)
                    .huge(Some(21))
                    .populate()
                    .map_anon()
                {
                    Ok(m) => (MmapRaw::from(m), true),
                    Err(source) if policy == HugepagePolicy::Require => {
                        return Err(DmaError::NoHugepages { size: len, source })
                    }
                    Err(e) => {
                        log::warn!(
                            "no free 2 MiB hugepages for {len} bytes of DMA memory ({e}); using 4 KiB pages, \
                             which costs IOTLB misses: reserve hugepages with \
                             `echo 64 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages`"
                        );
                        (Self::map_small(len)?, false)
                    }
                }
            }
        };
        let map_len = map.len();
        // Every alignment argument below (accessors, rings) starts from a page-aligned base,
        // which mmap gives.
        assert!(
            (map.as_ptr() as usize).is_multiple_of(SMALL_PAGE_SIZE),
            "mmap returned an address that is not page-aligned"
        );
        // SAFETY: `map` is owned by the region being built, stays mapped until Drop (which
        // unmaps from the IOMMU first), and is only reached through raw pointers.
        let iova = unsafe { mapper.map(map.as_mut_ptr(), map_len) }?;
        let now = DMA_BYTES_MAPPED.fetch_add(map_len, Ordering::Relaxed) + map_len;
        DMA_BYTES_PEAK.fetch_max(now, Ordering::Relaxed);
        log::debug!(
            "DMA region: {map_len} bytes at IOVA {iova:#x} ({})",
            if hugepages {
                "2 MiB pages"
            } else {
                "4 KiB pages"
            }
        );
        Ok(DmaRegion {
            map,
            iova,
            len: map_len,
            hugepages,
            mapper,
        })
    }

    fn map_small(len: usize) -> Result<MmapRaw, DmaError> {
        let len = len.div_ceil(SMALL_PAGE_SIZE) * SMALL_PAGE_SIZE;
        MmapOptions::new()
            .len(len)
            .populate()
            .map_anon()
            .map(MmapRaw::from)
            .map_err(|source| DmaError::Alloc { size: len, source })
    }

    /// The IOVA of the first byte.
    pub fn iova(&self) -> u64 {
        self.iova
    }

    /// Length in bytes (rounded up to the page size).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region has no bytes (never: allocation rounds up to a page).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the region is backed by 2 MiB hugepages.
    pub fn is_hugepage(&self) -> bool {
        self.hugepages
    }

    /// The first byte, page-aligned, for the few modules that build typed views (rings,
    /// packet buffers).
    pub(crate) fn base_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    fn check(&self, off: usize, size: usize, align: usize) {
        assert!(
            off.checked_add(size).is_some_and(|end| end <= self.len) && off.is_multiple_of(align),
            "DMA access of {size} bytes at {off:#x} outside a {:#x}-byte region or misaligned",
            self.len
        );
    }

    /// Volatile read of a `T` at byte offset `off`.
    ///
    /// Crate-private, with a contract, because a region is `Sync`: no two threads may access
    /// overlapping bytes through [`DmaRegion::read`], [`DmaRegion::write`],
    /// [`DmaRegion::copy_in`] or [`DmaRegion::copy_out`] at the same time unless both only
    /// read (a device may, it is outside the program). Volatile does not make racing
    /// accesses sound, and atomics cannot either: a `T` of a size other than 1, 2, 4 or 8 is
    /// not one atomic access, and racing atomics of different sizes on the same bytes are
    /// undefined behaviour too. The crate keeps the contract by ownership: a ring's areas
    /// are accessed only by the queue that owns the ring (and by the device), a control
    /// queue's buffer only by the control queue.
    pub(crate) fn read<T: FromBytes>(&self, off: usize) -> T {
        self.check(off, size_of::<T>(), align_of::<T>());
        // SAFETY: in bounds and aligned (checked); any bit pattern is a valid T (FromBytes).
        unsafe { core::ptr::read_volatile(self.base_ptr().add(off).cast::<T>()) }
    }

    /// Volatile write of a `T` at byte offset `off`, under the contract of
    /// [`DmaRegion::read`].
    pub(crate) fn write<T: IntoBytes + Immutable>(&self, off: usize, value: T) {
        self.check(off, size_of::<T>(), align_of::<T>());
        // SAFETY: in bounds and aligned (checked); the region is raw memory with no live
        // references into it.
        unsafe { core::ptr::write_volatile(self.base_ptr().add(off).cast::<T>(), value) }
    }

    /// [`RingView::count_seq_u32`] over a ring of `entries` (a power of two) elements of
    /// `stride` bytes at byte `off` whose first field is a little-endian `u32` id (a split
    /// virtqueue's used ring): how many from index `start` on, at most `n`, name the ids
    /// from `id` on (masked by `entries - 1`). One bounds check for the whole ring. Under
    /// the contract of [`DmaRegion::read`].
    #[inline(always)]
    pub(crate) fn count_seq_u32(
        &self,
        off: usize,
        stride: usize,
        entries: u32,
        start: u32,
        n: u32,
        id: u32,
    ) -> u32 {
        assert!(entries.is_power_of_two() && stride.is_multiple_of(4));
        self.check(off, entries as usize * stride, 4);
        let mask = entries - 1;
        // SAFETY: the ring's entries * stride bytes are in the region and start 4-byte
        // aligned (checked just above), so each element's first u32 is mapped and aligned.
        unsafe {
            count_seq_u32(
                self.base_ptr().add(off),
                stride,
                mask,
                start,
                n,
                u32::MAX,
                id,
                mask,
                [0, 0],
            )
        }
    }

    /// Copies `data` into the region at `off`, under the contract of [`DmaRegion::read`].
    pub(crate) fn copy_in(&self, off: usize, data: &[u8]) {
        self.check(off, data.len(), 1);
        // SAFETY: destination in bounds (checked); the source is a Rust slice, which cannot
        // overlap a region that is never behind a reference.
        unsafe {
            core::ptr::copy_nonoverlapping(data.as_ptr(), self.base_ptr().add(off), data.len())
        }
    }

    /// Copies bytes at `off` out of the region, under the contract of [`DmaRegion::read`].
    /// What the device models of host tests read commands with.
    #[cfg(test)]
    pub(crate) fn copy_out(&self, off: usize, out: &mut [u8]) {
        self.check(off, out.len(), 1);
        // SAFETY: as in copy_in, in the other direction.
        unsafe {
            core::ptr::copy_nonoverlapping(self.base_ptr().add(off), out.as_mut_ptr(), out.len())
        }
    }
}

impl Drop for DmaRegion {
    fn drop(&mut self) {
        self.mapper.unmap(self.iova, self.len);
        DMA_BYTES_MAPPED.fetch_sub(self.len, Ordering::Relaxed);
    }
}

/// The walk of [`RingView::count_seq_u32`] and [`DmaRegion::count_seq_u32`]: over the ring
/// of `mask + 1` elements of `stride` bytes whose `u32` of interest is at `base`, from index
/// `start` (masked) on, at most `n` (clamped to the ring), counts how many in a row read,
/// under `keep`, `((id + k) & id_mask) | tag` (`tags[0]` up to the end of the ring, `tags[1]`
/// after it). A pointer walk: the ring's wrap is taken once, no per-element bounds check.
///
/// # Safety
///
/// For each index `i` in `0..=mask`, `base + i * stride` must be mapped, readable memory
/// holding a 4-byte aligned `u32`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn count_seq_u32(
    base: *const u8,
    stride: usize,
    mask: u32,
    start: u32,
    n: u32,
    keep: u32,
    id: u32,
    id_mask: u32,
    tags: [u32; 2],
) -> u32 {
    let n = n.min(mask + 1);
    let first = start & mask;
    let head = n.min(mask + 1 - first);
    let segs = [(first, head, tags[0]), (0, n - head, tags[1])];
    if id_mask == mask && id.wrapping_sub(start) & mask == 0 {
        // The usual case: the ids are the indices (they wrap with the ring, not inside a
        // segment), so the word wanted is the index with the tag, counted up: no mask.
        let mut got = 0;
        for (from, len, tag) in segs {
            let p = base.wrapping_add(from as usize * stride);
            let end = p.wrapping_add(len as usize * stride);
            let mut want = from | tag;
            let mut q = p;
            // Two at a time while two are left; the first that differs is then found one at
            // a time below.
            let two = 2 * stride;
            while end as usize - q as usize >= two {
                // SAFETY: as below, for the two elements from q (both before end).
                let (v0, v1) = unsafe {
                    (
                        core::ptr::read_volatile(q.cast::<u32>()),
                        core::ptr::read_volatile(q.wrapping_add(stride).cast::<u32>()),
                    )
                };
                if u32::from_le(v0) & keep != want
                    || u32::from_le(v1) & keep != want.wrapping_add(1)
                {
                    break;
                }
                want = want.wrapping_add(2);
                q = q.wrapping_add(two);
            }
            while q != end {
                // SAFETY: as below.
                let v = u32::from_le(unsafe { core::ptr::read_volatile(q.cast::<u32>()) });
                if v & keep != want {
                    return got + ((q as usize - p as usize) / stride) as u32;
                }
                want = want.wrapping_add(1);
                q = q.wrapping_add(stride);
            }
            got += len;
        }
        return got;
    }
    let mut want = id;
    let mut got = 0;
    for (from, len, tag) in segs {
        let p = base.wrapping_add(from as usize * stride);
        let end = p.wrapping_add(len as usize * stride);
        let mut q = p;
        while q != end {
            // SAFETY: q is at element from + j of the ring, j < len, from + len <= mask + 1
            // (head is at most the elements left to the end; the second run starts at 0 and
            // n <= mask + 1): mapped and 4-byte aligned by the caller's contract.
            let v = u32::from_le(unsafe { core::ptr::read_volatile(q.cast::<u32>()) });
            if v & keep != (want & id_mask) | tag {
                return got + ((q as usize - p as usize) / stride) as u32;
            }
            want = want.wrapping_add(1);
            q = q.wrapping_add(stride);
        }
        got += len;
    }
    got
}

/// A ring of `T` descriptors in DMA memory, power-of-two sized: every index is masked, so
/// no index (even one read back from a device) can reach outside the ring.
pub struct DescRing<T> {
    /// First descriptor, cached so a descriptor access is one add from it.
    base: *mut T,
    mask: u32,
    offset: usize,
    /// Keeps the mapping alive as long as the ring.
    region: Arc<DmaRegion>,
    _t: PhantomData<T>,
}

// SAFETY: `base` points into `region`, which is Send + Sync and kept alive by the ring; the
// pointer is only an address cache.
unsafe impl<T: Send> Send for DescRing<T> {}

impl<T: FromBytes + IntoBytes + Immutable> DescRing<T> {
    /// A ring of `entries` (a power of two) descriptors at byte `offset` of `region`.
    pub fn new(region: Arc<DmaRegion>, offset: usize, entries: u32) -> Self {
        assert!(
            entries.is_power_of_two(),
            "ring size {entries} is not a power of two"
        );
        let bytes = (entries as usize)
            .checked_mul(size_of::<T>())
            .expect("ring size overflows the address space");
        // Descriptor 0 at a multiple of 16 from the page-aligned base: every descriptor is
        // then aligned for T (its size is a multiple of its alignment), and a field access
        // is aligned when the descriptor size and the field offset are multiples of the
        // field size (see read_u32_at).
        region.check(offset, bytes, align_of::<T>().max(16));
        DescRing {
            base: region.base_ptr().wrapping_add(offset).cast::<T>(),
            mask: entries - 1,
            offset,
            region,
            _t: PhantomData,
        }
    }

    /// Number of descriptors.
    #[inline(always)]
    pub fn entries(&self) -> u32 {
        self.mask + 1
    }

    /// IOVA of descriptor 0, for the ring base registers.
    pub fn iova(&self) -> u64 {
        self.region.iova() + self.offset as u64
    }

    /// Size of the ring in bytes, for the ring length registers.
    pub fn bytes(&self) -> usize {
        self.entries() as usize * size_of::<T>()
    }

    /// The ring's address and mask as a `Copy` value, for a data-path loop that keeps them
    /// in registers (a loop reading them through the ring reloads them after every store
    /// the compiler cannot prove leaves them alone).
    #[inline(always)]
    pub fn view(&self) -> RingView<'_, T> {
        RingView {
            base: self.base,
            mask: self.mask,
            _ring: PhantomData,
        }
    }

    /// Volatile write of descriptor `idx` (masked).
    #[inline(always)]
    pub fn write(&self, idx: u32, desc: T) {
        self.view().write(idx, desc)
    }

    /// Volatile write of a 16-byte descriptor `idx` as two little-endian quadwords.
    #[inline(always)]
    pub fn write_qwords(&self, idx: u32, lo: u64, hi: u64) {
        self.view().write_qwords(idx, lo, hi)
    }

    /// See [`RingView::write_qwords_publishing`].
    #[inline(always)]
    pub fn write_qwords_publishing(&self, idx: u32, lo: u64, hi: u64) {
        self.view().write_qwords_publishing(idx, lo, hi)
    }

    /// Volatile read of descriptor `idx` (masked).
    #[inline(always)]
    pub fn read(&self, idx: u32) -> T {
        self.view().read(idx)
    }

    /// Volatile read of the `u32` at `byte_off` inside descriptor `idx`: the status word a
    /// driver polls before it reads the rest of a write-back (then `barrier::dma_rmb`).
    #[inline(always)]
    pub fn read_u32_at(&self, idx: u32, byte_off: usize) -> u32 {
        self.view().read_u32_at(idx, byte_off)
    }

    /// Volatile read of the byte at `byte_off` inside descriptor `idx`.
    #[inline(always)]
    pub fn read_u8_at(&self, idx: u32, byte_off: usize) -> u8 {
        self.view().read_u8_at(idx, byte_off)
    }
}

/// A borrowed [`DescRing`]: its first descriptor and mask, copied. Every access is masked
/// into the ring, which the borrow keeps alive.
pub struct RingView<'a, T> {
    base: *mut T,
    mask: u32,
    _ring: PhantomData<&'a DescRing<T>>,
}

impl<T> Clone for RingView<'_, T> {
    #[inline(always)]
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for RingView<'_, T> {}

impl<'a, T: FromBytes + IntoBytes + Immutable> RingView<'a, T> {
    #[inline(always)]
    fn slot(&self, idx: u32) -> *mut T {
        // In bounds: the index is masked and the whole ring was checked in DescRing::new.
        self.base.wrapping_add((idx & self.mask) as usize)
    }

    /// The descriptors from index `start` on, at most `n`, up to the end of the ring: a run
    /// that does not wrap, for a burst loop that walks it with a pointer rather than mask
    /// every index (the masking was three instructions a descriptor access).
    #[inline(always)]
    pub fn span(&self, start: u32, n: usize) -> RingSpan<'a, T> {
        let first = start & self.mask;
        RingSpan {
            base: self.base.wrapping_add(first as usize),
            len: n.min((self.mask + 1 - first) as usize),
            _ring: PhantomData,
        }
    }

    /// Volatile write of descriptor `idx` (masked).
    #[inline(always)]
    pub fn write(&self, idx: u32, desc: T) {
        // SAFETY: `slot` is in bounds and aligned for T (checked in DescRing::new, index
        // masked), and the borrowed ring keeps the region mapped; ring memory is never
        // behind a reference.
        unsafe { core::ptr::write_volatile(self.slot(idx), desc) }
    }

    /// Volatile write of a 16-byte descriptor `idx` as two little-endian quadwords, for a
    /// descriptor a later store publishes (an index, a tail): the two may become visible in
    /// either order.
    #[inline(always)]
    pub fn write_qwords(&self, idx: u32, lo: u64, hi: u64) {
        // SAFETY: as in write: the slot is a descriptor of the ring, in bounds.
        unsafe { write_qwords_at(self.slot(idx), lo, hi) }
    }

    /// [`RingView::write_qwords`] for a descriptor the second quadword publishes (a packed
    /// ring's flags): the first is ordered before it
    /// ([`crate::platform::barrier::dma_wmb`]), so the device never sees the descriptor
    /// available with an old address.
    #[inline(always)]
    pub fn write_qwords_publishing(&self, idx: u32, lo: u64, hi: u64) {
        const { assert!(size_of::<T>() == 16) };
        let p = self.slot(idx).cast::<u64>();
        // SAFETY: as in write_qwords.
        unsafe { core::ptr::write_volatile(p, lo.to_le()) };
        crate::platform::barrier::dma_wmb();
        // SAFETY: the slot's second quadword, as above.
        unsafe { core::ptr::write_volatile(p.add(1), hi.to_le()) };
    }

    /// Volatile read of descriptor `idx` (masked).
    #[inline(always)]
    pub fn read(&self, idx: u32) -> T {
        // SAFETY: as in write; any bit pattern is a valid T (FromBytes).
        unsafe { core::ptr::read_volatile(self.slot(idx)) }
    }

    /// Volatile read of the `u32` at `byte_off` inside descriptor `idx`, in one access.
    ///
    /// Only for descriptors whose size is a multiple of 4, so that the field is aligned in
    /// every descriptor, not just the first (a compile-time check: descriptor types are
    /// mostly of alignment 1, little-endian zerocopy fields, so their alignment says
    /// nothing):
    ///
    /// ```compile_fail
    /// # use std::sync::Arc;
    /// # use tenge::platform::dma::{DescRing, DmaRegion, HugepagePolicy, IdentityMapper};
    /// # let region = DmaRegion::allocate(Arc::new(IdentityMapper), 4096, HugepagePolicy::Never);
    /// // Descriptor 1 of a ring of 6-byte descriptors starts at byte 6.
    /// let ring: DescRing<[u8; 6]> = DescRing::new(Arc::new(region.unwrap()), 0, 8);
    /// ring.read_u32_at(1, 0);
    /// ```
    #[inline(always)]
    pub fn read_u32_at(&self, idx: u32, byte_off: usize) -> u32 {
        const {
            assert!(
                size_of::<T>().is_multiple_of(4),
                "u32 field access needs a descriptor size that is a multiple of 4"
            )
        };
        // byte_off < size with both multiples of 4: byte_off + 4 <= size, with no overflow.
        assert!(byte_off.is_multiple_of(4) && byte_off < size_of::<T>());
        // SAFETY: inside descriptor `idx` (checked against size_of::<T>, index masked into the
        // ring checked in DescRing::new); 4-byte aligned: the ring starts 16-byte aligned and
        // size_of::<T>() and byte_off are multiples of 4 (checked above).
        unsafe { core::ptr::read_volatile(self.slot(idx).cast::<u8>().add(byte_off).cast::<u32>()) }
    }

    /// Volatile read of the byte at `byte_off` inside descriptor `idx`.
    #[inline(always)]
    pub fn read_u8_at(&self, idx: u32, byte_off: usize) -> u8 {
        assert!(byte_off < size_of::<T>());
        // SAFETY: inside descriptor `idx` (checked against size_of::<T>).
        unsafe { core::ptr::read_volatile(self.slot(idx).cast::<u8>().add(byte_off)) }
    }

    /// Volatile write of the byte at `byte_off` inside descriptor `idx`: one field of a
    /// descriptor written before and not yet published (a TX command's report bit).
    #[inline(always)]
    pub fn write_u8_at(&self, idx: u32, byte_off: usize, value: u8) {
        assert!(byte_off < size_of::<T>());
        // SAFETY: inside descriptor `idx` (checked against size_of::<T>); ring memory is
        // never behind a reference.
        unsafe { core::ptr::write_volatile(self.slot(idx).cast::<u8>().add(byte_off), value) }
    }

    /// How many descriptors from index `start` on, at most `n` (at most the ring), have all
    /// of `bits` set in the little-endian `u32` at `byte_off`: the done-bit scan of a burst,
    /// as a pointer walk with the ring's wrap taken once.
    #[inline(always)]
    pub fn count_set_u32(&self, start: u32, n: u32, byte_off: usize, bits: u32) -> u32 {
        const {
            assert!(
                size_of::<T>().is_multiple_of(4),
                "u32 field access needs a descriptor size that is a multiple of 4"
            )
        };
        // As in read_u32_at.
        assert!(byte_off.is_multiple_of(4) && byte_off < size_of::<T>());
        let n = n.min(self.mask + 1);
        let first = start & self.mask;
        // Up to the end of the ring, then from its start.
        let head = n.min(self.mask + 1 - first);
        let mut got = 0;
        for (from, len) in [(first, head), (0, n - head)] {
            let p = self
                .base
                .wrapping_add(from as usize)
                .cast::<u8>()
                .wrapping_add(byte_off);
            let end = p.wrapping_add(len as usize * size_of::<T>());
            let mut q = p;
            // Sixteen descriptors a step while sixteen are left, their words ANDed and tested
            // once: a burst's descriptors are usually all done, and this takes the scan from
            // five instructions a descriptor to under two (eight a step was two; sixteen
            // halves the steps' overhead on a burst of 32, -0.3 a forwarded packet in
            // engine-ipp). A step that finds one not done leaves the sixteen to the loop
            // below, which finds which.
            const STEP: usize = 16;
            while end as usize - q as usize >= STEP * size_of::<T>() {
                let v = (0..STEP).fold(u32::MAX, |v, k| {
                    // SAFETY: the STEP descriptors from q lie before `end`, in the ring, as in
                    // the loop below, and each word read is aligned as there.
                    v & unsafe {
                        core::ptr::read_volatile(q.wrapping_add(k * size_of::<T>()).cast::<u32>())
                    }
                });
                // A byte swap commutes with AND: the little-endian words ANDed, then swapped.
                if u32::from_le(v) & bits != bits {
                    break;
                }
                q = q.wrapping_add(STEP * size_of::<T>());
            }
            while q != end {
                // SAFETY: descriptors from..from + len lie in the ring (from + len <= mask +
                // 1, the ring checked in DescRing::new), and q is at one of them; the u32 at
                // byte_off is inside it and 4-byte aligned, as in read_u32_at (the size of
                // T is a multiple of 4, so every descriptor's field is aligned).
                let v = unsafe { core::ptr::read_volatile(q.cast::<u32>()) };
                if u32::from_le(v) & bits != bits {
                    return got + ((q as usize - p as usize) / size_of::<T>()) as u32;
                }
                q = q.wrapping_add(size_of::<T>());
            }
            got += len;
            if got == n {
                // No wrap (the usual burst): the second part is empty.
                break;
            }
        }
        got
    }

    /// How many descriptors from index `start` on, at most `n` (at most the ring), have the
    /// little-endian `u32` at `byte_off`, under `keep`, equal to `((id + k) & id_mask) | tag`
    /// for the `k`-th of them, `tag` being `tags[0]` up to the end of the ring and `tags[1]`
    /// after it: a run of completions naming consecutive ids, with no per-descriptor bounds
    /// check (see the free function `count_seq_u32` below).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub fn count_seq_u32(
        &self,
        start: u32,
        n: u32,
        byte_off: usize,
        keep: u32,
        id: u32,
        id_mask: u32,
        tags: [u32; 2],
    ) -> u32 {
        assert!(byte_off.is_multiple_of(4) && byte_off + 4 <= size_of::<T>());
        // SAFETY: the ring's mask + 1 descriptors lie in the region (checked in
        // DescRing::new, at least 16-byte aligned), so the u32 at byte_off (inside a
        // descriptor, 4-byte aligned) of each is mapped and aligned.
        unsafe {
            count_seq_u32(
                self.base.cast::<u8>().wrapping_add(byte_off),
                size_of::<T>(),
                self.mask,
                start,
                n,
                keep,
                id,
                id_mask,
                tags,
            )
        }
    }

    /// Volatile read of the little-endian `u64` at `byte_off` inside descriptor `idx`, in one
    /// access. Only for descriptors whose size is a multiple of 8 (see
    /// [`RingView::read_u32_at`]):
    ///
    /// ```compile_fail
    /// # use std::sync::Arc;
    /// # use tenge::platform::dma::{DescRing, DmaRegion, HugepagePolicy, IdentityMapper};
    /// # let region = DmaRegion::allocate(Arc::new(IdentityMapper), 4096, HugepagePolicy::Never);
    /// // Descriptor 1 of a ring of 12-byte descriptors starts at byte 12.
    /// let ring: DescRing<[u8; 12]> = DescRing::new(Arc::new(region.unwrap()), 0, 8);
    /// ring.view().read_u64_at(1, 0);
    /// ```
    #[inline(always)]
    pub fn read_u64_at(&self, idx: u32, byte_off: usize) -> u64 {
        // SAFETY: the slot is descriptor `idx` of the ring, in bounds.
        unsafe { read_u64_in(self.slot(idx), byte_off) }
    }
}

/// Descriptors of a ring in a row, from [`RingView::span`]: `len` of them from `base`, none
/// past the ring's end. Accesses take a position in the span, checked against its length
/// (a loop bounded by it has the check removed), never masked.
pub struct RingSpan<'a, T> {
    base: *mut T,
    len: usize,
    _ring: PhantomData<&'a DescRing<T>>,
}

impl<T> Clone for RingSpan<'_, T> {
    #[inline(always)]
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for RingSpan<'_, T> {}

impl<T: FromBytes + IntoBytes + Immutable> RingSpan<'_, T> {
    /// Descriptors in the span.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the span has no descriptor.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline(always)]
    fn slot(&self, k: usize) -> *mut T {
        assert!(k < self.len, "descriptor {k} past a span of {}", self.len);
        // In bounds: the span's descriptors lie in the ring (RingView::span), checked in
        // DescRing::new.
        self.base.wrapping_add(k)
    }

    /// [`RingView::write_qwords`] for the `k`-th descriptor of the span.
    #[inline(always)]
    pub fn write_qwords(&self, k: usize, lo: u64, hi: u64) {
        // SAFETY: the slot is a descriptor of the ring (position checked in `slot`).
        unsafe { write_qwords_at(self.slot(k), lo, hi) }
    }

    /// [`RingView::read_u64_at`] for the `k`-th descriptor of the span.
    #[inline(always)]
    pub fn read_u64_at(&self, k: usize, byte_off: usize) -> u64 {
        // SAFETY: the slot is a descriptor of the ring (position checked in `slot`).
        unsafe { read_u64_in(self.slot(k), byte_off) }
    }
}

/// Volatile write of the 16-byte descriptor at `slot` as two little-endian quadwords,
/// which may become visible in either order ([`RingView::write_qwords`],
/// [`RingSpan::write_qwords`]).
///
/// # Safety
/// `slot` is a descriptor of a live ring: in its memory, which is never behind a
/// reference, and 16-byte aligned (rings start 16-byte aligned and these descriptors are
/// 16 bytes).
#[inline(always)]
unsafe fn write_qwords_at<T>(slot: *mut T, lo: u64, hi: u64) {
    const { assert!(size_of::<T>() == 16) };
    let p = slot.cast::<u64>();
    // SAFETY: the 16 bytes at `slot` are the descriptor (the caller's contract, and the
    // size asserted above), 8-byte aligned.
    unsafe {
        core::ptr::write_volatile(p, lo.to_le());
        core::ptr::write_volatile(p.add(1), hi.to_le());
    }
}

/// Volatile read of the little-endian `u64` at `byte_off` inside the descriptor at `slot`,
/// in one access ([`RingView::read_u64_at`], [`RingSpan::read_u64_at`]); only for
/// descriptors whose size is a multiple of 8.
///
/// # Safety
/// `slot` is a descriptor of a live ring, in its memory, which is never behind a reference.
#[inline(always)]
unsafe fn read_u64_in<T>(slot: *mut T, byte_off: usize) -> u64 {
    const {
        assert!(
            size_of::<T>().is_multiple_of(8),
            "u64 field access needs a descriptor size that is a multiple of 8"
        )
    };
    // As in read_u32_at, for 8 bytes.
    assert!(byte_off.is_multiple_of(8) && byte_off < size_of::<T>());
    // SAFETY: inside the descriptor (the caller's contract, `byte_off` checked against
    // size_of::<T>); 8-byte aligned: the ring starts 16-byte aligned and size_of::<T>() and
    // byte_off are multiples of 8.
    let v = unsafe { core::ptr::read_volatile(slot.cast::<u8>().add(byte_off).cast::<u64>()) };
    u64::from_le(v)
}

/// Device-side DMA for host tests whose memory is mapped by [`IdentityMapper`] (an IOVA
/// is the host address): what a model device reads and writes. Test-only: the caller
/// passes IOVAs of live buffers the engine handed to the model device.
#[cfg(test)]
pub(crate) mod identity_dma {
    /// Writes `bytes` at `iova`.
    pub(crate) fn write(iova: u64, bytes: &[u8]) {
        // SAFETY (test): `iova` is the address of an identity-mapped buffer of at least
        // `bytes.len()` bytes that the driver posted to the model device, so nothing else
        // holds a reference to it.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), iova as *mut u8, bytes.len()) }
    }

    /// Reads `len` bytes at `iova`.
    pub(crate) fn read(iova: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        // SAFETY (test): as in write; the driver handed the buffer to the device to read.
        unsafe { core::ptr::copy_nonoverlapping(iova as *const u8, out.as_mut_ptr(), len) };
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::little_endian::U64;

    #[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, Debug, PartialEq)]
    #[repr(C)]
    struct D {
        a: U64,
        b: U64,
    }

    #[test]
    fn region_is_zeroed_accounted_and_bounds_checked() {
        let r = DmaRegion::allocate(Arc::new(IdentityMapper), 100, HugepagePolicy::Never).unwrap();
        assert_eq!(r.len(), 4096);
        // Other tests map and unmap in parallel: only the monotonic peak is stable here.
        assert!(dma_bytes_peak() >= 4096);
        assert_eq!(r.read::<u64>(4088), 0);
        r.write::<u32>(8, 0xdead_beef);
        assert_eq!(r.read::<u32>(8), 0xdead_beef);
        let oob = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| r.read::<u64>(4092)));
        assert!(oob.is_err());
        let mis = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| r.read::<u32>(2)));
        assert!(mis.is_err());
    }

    #[test]
    fn done_scan_wraps_and_stops_at_the_first_clear() {
        let r = Arc::new(
            DmaRegion::allocate(Arc::new(IdentityMapper), 4096, HugepagePolicy::Never).unwrap(),
        );
        let ring: DescRing<D> = DescRing::new(r, 0, 8);
        for i in [6, 7, 8, 9, 11] {
            ring.write(
                i,
                D {
                    a: U64::new(0),
                    b: U64::new(1),
                },
            );
        }
        let v = ring.view();
        assert_eq!(v.count_set_u32(6, 8, 8, 1), 4, "6, 7, 0, 1 across the wrap");
        assert_eq!(v.count_set_u32(6, 3, 8, 1), 3, "at most n");
        assert_eq!(v.count_set_u32(14, 100, 8, 1), 4, "index masked, n clamped");
        assert_eq!(v.count_set_u32(2, 8, 8, 1), 0);
        assert_eq!(v.count_set_u32(3, 8, 8, 1), 1);
        assert_eq!(v.count_set_u32(6, 8, 8, 3), 0, "every bit asked for");
    }

    /// A span stops at the ring's end, its positions are the ring's descriptors from the
    /// (masked) start, and a position past it panics rather than reach past the ring.
    #[test]
    fn span_stops_at_the_ring_end_and_checks_positions() {
        let r = Arc::new(
            DmaRegion::allocate(Arc::new(IdentityMapper), 4096, HugepagePolicy::Never).unwrap(),
        );
        let ring: DescRing<D> = DescRing::new(r, 0, 8);
        let v = ring.view();
        assert_eq!(v.span(13, 10).len(), 3, "index 13 is 5: three to the end");
        assert_eq!(v.span(2, 4).len(), 4, "at most n");
        assert!(v.span(7, 0).is_empty());
        let s = v.span(14, 8);
        for k in 0..s.len() {
            s.write_qwords(k, 10 + k as u64, 20 + k as u64);
        }
        for k in 0..8u32 {
            let d = ring.read(k);
            let want = if k >= 6 { 10 + u64::from(k) - 6 } else { 0 };
            assert_eq!(d.a.get(), want, "descriptor {k}");
            if k >= 6 {
                assert_eq!(s.read_u64_at(k as usize - 6, 8), 20 + u64::from(k) - 6);
            }
        }
        let past = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.read_u64_at(2, 0)));
        assert!(past.is_err());
    }

    /// The scan's eight-at-a-time steps agree with a descriptor-by-descriptor count, wherever
    /// the first clear descriptor falls in a step, across the wrap, and for every `n`.
    #[test]
    fn done_scan_in_steps_matches_one_by_one() {
        let r = Arc::new(
            DmaRegion::allocate(Arc::new(IdentityMapper), 4096, HugepagePolicy::Never).unwrap(),
        );
        let ring: DescRing<D> = DescRing::new(r, 0, 64);
        let v = ring.view();
        for clear in [
            None,
            Some(0),
            Some(5),
            Some(7),
            Some(8),
            Some(13),
            Some(40),
            Some(63),
        ] {
            for i in 0..64u32 {
                let done = Some(i) != clear;
                ring.write_qwords(i, 0, u64::from(done) | 2);
            }
            for start in 0..70u32 {
                for n in 0..=70u32 {
                    let mut want = 0;
                    while want < n.min(64) && Some((start + want) % 64) != clear {
                        want += 1;
                    }
                    assert_eq!(
                        v.count_set_u32(start, n, 8, 1),
                        want,
                        "clear {clear:?}, start {start}, n {n}"
                    );
                    assert_eq!(v.count_set_u32(start, n, 8, 3), want, "two bits");
                }
            }
        }
    }

    #[test]
    fn field_reads_are_aligned_in_every_descriptor_of_alignment_one() {
        // Descriptor types are little-endian zerocopy structs of alignment 1: a field read is
        // aligned because the descriptor size is a multiple of the field size (checked at
        // compile time), which debug builds verify on every volatile read here.
        let r = Arc::new(
            DmaRegion::allocate(Arc::new(IdentityMapper), 4096, HugepagePolicy::Never).unwrap(),
        );
        let twelve: DescRing<[u8; 12]> = DescRing::new(r.clone(), 0, 8);
        let sixteen: DescRing<D> = DescRing::new(r, 1024, 8);
        for i in 0..8u32 {
            let mut d = [0u8; 12];
            d[8..].copy_from_slice(&(0x100 + i).to_le_bytes());
            twelve.write(i, d);
            sixteen.write_qwords(i, u64::from(i), 1 << 32 | 1);
        }
        for i in 0..8u32 {
            for off in [0, 4, 8] {
                let want = if off == 8 { 0x100 + i } else { 0 };
                assert_eq!(u32::from_le(twelve.read_u32_at(i, off)), want);
            }
            assert_eq!(sixteen.view().read_u64_at(i, 0), u64::from(i));
            assert_eq!(sixteen.view().read_u64_at(i, 8), 1 << 32 | 1);
        }
        assert_eq!(twelve.view().count_set_u32(0, 8, 8, 0x100), 8);
        assert_eq!(sixteen.view().count_set_u32(3, 8, 12, 1), 8);
    }

    #[test]
    fn field_offsets_outside_a_descriptor_are_refused() {
        let r = Arc::new(
            DmaRegion::allocate(Arc::new(IdentityMapper), 4096, HugepagePolicy::Never).unwrap(),
        );
        let ring: DescRing<D> = DescRing::new(r, 0, 8);
        let v = ring.view();
        // Offsets whose end (offset + 4 or + 8) wraps around usize, and the first past the end.
        for off in [16, usize::MAX - 3, usize::MAX - 7] {
            let r32 =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| v.read_u32_at(0, off)));
            assert!(r32.is_err(), "u32 at {off:#x}");
            let r64 =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| v.read_u64_at(0, off)));
            assert!(r64.is_err(), "u64 at {off:#x}");
            let scan = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                v.count_set_u32(0, 1, off, 1)
            }));
            assert!(scan.is_err(), "scan at {off:#x}");
        }
    }

    #[test]
    fn seq_scan_follows_ids_across_the_wrap_and_stops_at_the_first_mismatch() {
        let r = Arc::new(
            DmaRegion::allocate(Arc::new(IdentityMapper), 4096, HugepagePolicy::Never).unwrap(),
        );
        let ring: DescRing<D> = DescRing::new(r.clone(), 0, 8);
        // Slots 6, 7 (tagged) then 0..3 (not) name ids 3, 4, 5, 6, 7, 0; slot 4 names 0.
        for (i, v) in [
            (6, 0x1_0003),
            (7, 0x1_0004),
            (8, 5),
            (9, 6),
            (10, 7),
            (11, 0),
        ] {
            ring.write(
                i,
                D {
                    a: U64::new(0),
                    b: U64::new(v),
                },
            );
        }
        let v = ring.view();
        let tags = [0x1_0000, 0];
        assert_eq!(v.count_seq_u32(6, 8, 8, 0x1_ffff, 3, 7, tags), 6);
        assert_eq!(
            v.count_seq_u32(6, 4, 8, 0x1_ffff, 3, 7, tags),
            4,
            "at most n"
        );
        assert_eq!(
            v.count_seq_u32(14, 100, 8, 0x1_ffff, 3, 7, tags),
            6,
            "clamped"
        );
        assert_eq!(v.count_seq_u32(6, 8, 8, 0x1_ffff, 3, 7, [0, 0]), 0, "tag");
        assert_eq!(
            v.count_seq_u32(6, 8, 8, 0xffff, 3, 7, [0, 0]),
            6,
            "tag not kept"
        );
        assert_eq!(v.count_seq_u32(7, 8, 8, 0x1_ffff, 3, 7, tags), 0, "id");
        // The region's walk: the whole u32, ids masked by the ring.
        assert_eq!(r.count_seq_u32(8, 16, 8, 0, 8, 5), 4);
        assert_eq!(
            r.count_seq_u32(8, 16, 8, 8, 100, 13),
            4,
            "index masked, n clamped"
        );
        assert_eq!(r.count_seq_u32(8, 16, 8, 6, 8, 3), 0, "tag bits differ");
        // Ids that are the indices (the walk without a mask): slots 0..3 name 0..3, then
        // slot 4 names 5.
        for (i, v) in [(0, 0), (1, 1), (2, 2), (3, 3), (4, 5)] {
            ring.write(
                i,
                D {
                    a: U64::new(0),
                    b: U64::new(v),
                },
            );
        }
        assert_eq!(v.count_seq_u32(0, 8, 8, 0xffff, 0, 7, [0, 0]), 4);
        assert_eq!(
            v.count_seq_u32(8, 3, 8, 0xffff, 8, 7, [0, 0]),
            3,
            "at most n"
        );
        assert_eq!(
            r.count_seq_u32(8, 16, 8, 16, 8, 8),
            4,
            "free-running, masked"
        );
        assert_eq!(
            v.count_seq_u32(0, 8, 8, 0x1_ffff, 0, 7, [0x1_0000, 0]),
            0,
            "tag"
        );
    }

    #[test]
    fn ring_indices_wrap_and_never_escape() {
        let r = Arc::new(
            DmaRegion::allocate(Arc::new(IdentityMapper), 4096, HugepagePolicy::Never).unwrap(),
        );
        let ring: DescRing<D> = DescRing::new(r.clone(), 1024, 8);
        assert_eq!(ring.iova(), r.iova() + 1024);
        ring.write(
            9,
            D {
                a: U64::new(1),
                b: U64::new(2),
            },
        );
        assert_eq!(
            ring.read(1),
            D {
                a: U64::new(1),
                b: U64::new(2)
            }
        );
        assert_eq!(ring.read_u32_at(u32::MAX, 8), 0);
        assert_eq!(r.read::<u64>(1024 + 16), 1);
    }
}
