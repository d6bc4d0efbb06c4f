//! MMIO: register access to a mapped BAR. One of the three modules allowed `unsafe`.
//!
//! Registers are read and written with `core::ptr::{read,write}_volatile` on raw pointers,
//! never through references: a `&` to MMIO (what volatile-register's `RW<T>` hands out, its
//! issue #10) lets the compiler assume the memory is dereferenceable and insert spurious
//! reads, and a read of a read-to-clear register is a side effect.
//!
//! Ordering: on x86-64 a volatile store compiles to a plain `mov`, and x86 does not reorder
//! stores with older stores (Intel SDM vol. 3A §9.2.2), so descriptor writes to write-back
//! memory are visible before a later doorbell write to uncached MMIO. The ring engine still
//! puts [`crate::platform::barrier::dma_wmb`] before every doorbell, which keeps the
//! compiler from moving descriptor stores past it and is where another architecture
//! writes its barrier.

use std::sync::Arc;

use memmap2::MmapRaw;
use tenge_firmware_iface::{Mmio, NarrowMmio};

/// A mapped memory BAR.
pub struct Bar {
    map: MmapRaw,
    index: u32,
    /// What the mapping was made from (the VFIO device file), kept open until the mapping
    /// is gone: the fields drop after the mapping (declaration order).
    _source: Arc<dyn Send + Sync>,
}

// SAFETY: the mapping is plain device memory addressed through raw pointers; moving it to
// another thread moves no Rust-visible state. Concurrent register access from several
// threads is the caller's policy (each queue writes only its own tail registers).
unsafe impl Send for Bar {}
// SAFETY: as above: every access is a single volatile load or store.
unsafe impl Sync for Bar {}

impl Bar {
    pub(crate) fn new(map: MmapRaw, index: u32, source: Arc<dyn Send + Sync>) -> Self {
        Bar {
            map,
            index,
            _source: source,
        }
    }

    /// BAR index.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Size of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the mapping is empty (never, for a mapped BAR).
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    #[inline(always)]
    fn reg_ptr(&self, offset: u32) -> *mut u32 {
        self.ptr_of(offset, 4).cast::<u32>()
    }

    /// Pointer to the `width`-byte register at `offset`, which must be naturally aligned
    /// and inside the BAR.
    #[inline(always)]
    fn ptr_of(&self, offset: u32, width: usize) -> *mut u8 {
        let off = offset as usize;
        // A register offset is a constant from a register map (or a capability the
        // transport checked against the BAR size); an out-of-range one is a driver bug,
        // caught here rather than as a stray access outside the BAR.
        assert!(
            off.is_multiple_of(width) && off + width <= self.map.len(),
            "{width}-byte register offset {off:#x} outside BAR{} ({:#x} bytes) or misaligned",
            self.index,
            self.map.len()
        );
        // The assert above keeps the pointer inside the mapping.
        self.map.as_mut_ptr().wrapping_add(off)
    }
}

impl Mmio for Bar {
    #[inline(always)]
    fn read32(&self, offset: u32) -> u32 {
        let p = self.reg_ptr(offset);
        // SAFETY: `p` is 4-byte aligned and inside the live BAR mapping (checked in reg_ptr);
        // device registers are read with a single volatile load.
        unsafe { core::ptr::read_volatile(p) }
    }

    #[inline(always)]
    fn write32(&self, offset: u32, value: u32) {
        let p = self.reg_ptr(offset);
        // SAFETY: as in read32: aligned, in bounds, a single volatile store.
        unsafe { core::ptr::write_volatile(p, value) }
    }
}

/// virtio 1.2 §4.1.3.1: every field at its natural width, one access each.
impl NarrowMmio for Bar {
    #[inline(always)]
    fn read8(&self, offset: u32) -> u8 {
        let p = self.ptr_of(offset, 1);
        // SAFETY: in bounds of the live BAR mapping (checked in ptr_of); one volatile load.
        unsafe { core::ptr::read_volatile(p) }
    }

    #[inline(always)]
    fn read16(&self, offset: u32) -> u16 {
        let p = self.ptr_of(offset, 2).cast::<u16>();
        // SAFETY: 2-byte aligned and in bounds (checked in ptr_of); one volatile load.
        u16::from_le(unsafe { core::ptr::read_volatile(p) })
    }

    #[inline(always)]
    fn write8(&self, offset: u32, value: u8) {
        let p = self.ptr_of(offset, 1);
        // SAFETY: as in read8: in bounds, a single volatile store.
        unsafe { core::ptr::write_volatile(p, value) }
    }

    #[inline(always)]
    fn write16(&self, offset: u32, value: u16) {
        let p = self.ptr_of(offset, 2).cast::<u16>();
        // SAFETY: as in read16: aligned, in bounds, a single volatile store.
        unsafe { core::ptr::write_volatile(p, value.to_le()) }
    }
}

/// A register structure inside a BAR (a virtio capability's region): offsets are relative
/// to its start and checked against its length, so a sequence written for the structure
/// cannot reach the rest of the BAR.
#[derive(Clone)]
pub struct BarWindow {
    bar: Arc<Bar>,
    base: u32,
    len: u32,
}

impl BarWindow {
    /// `len` bytes at `base` in `bar`; `None` if they do not lie inside the BAR.
    pub fn new(bar: Arc<Bar>, base: u32, len: u32) -> Option<Self> {
        let end = u64::from(base) + u64::from(len);
        (end <= bar.len() as u64).then_some(BarWindow { bar, base, len })
    }

    #[inline(always)]
    fn at(&self, offset: u32, width: u32) -> u32 {
        assert!(
            offset.checked_add(width).is_some_and(|end| end <= self.len),
            "offset {offset:#x} outside a {:#x}-byte register window",
            self.len
        );
        self.base + offset
    }
}

impl Mmio for BarWindow {
    #[inline(always)]
    fn read32(&self, offset: u32) -> u32 {
        self.bar.read32(self.at(offset, 4))
    }

    #[inline(always)]
    fn write32(&self, offset: u32, value: u32) {
        self.bar.write32(self.at(offset, 4), value)
    }
}

impl NarrowMmio for BarWindow {
    #[inline(always)]
    fn read8(&self, offset: u32) -> u8 {
        self.bar.read8(self.at(offset, 1))
    }

    #[inline(always)]
    fn read16(&self, offset: u32) -> u16 {
        self.bar.read16(self.at(offset, 2))
    }

    #[inline(always)]
    fn write8(&self, offset: u32, value: u8) {
        self.bar.write8(self.at(offset, 1), value)
    }

    #[inline(always)]
    fn write16(&self, offset: u32, value: u16) {
        self.bar.write16(self.at(offset, 2), value)
    }
}
