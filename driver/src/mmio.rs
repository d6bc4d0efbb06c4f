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
//! puts an explicit `fence(Release)` before every doorbell, which keeps the compiler from
//! moving descriptor stores past it and makes the requirement visible on other targets.

use memmap2::MmapRaw;
use tenge_firmware_iface::Mmio;

/// A mapped memory BAR.
pub struct Bar {
    map: MmapRaw,
    index: u32,
}

// SAFETY: the mapping is plain device memory addressed through raw pointers; moving it to
// another thread moves no Rust-visible state. Concurrent register access from several
// threads is the caller's policy (each queue writes only its own tail registers).
unsafe impl Send for Bar {}
// SAFETY: as above: every access is a single volatile load or store.
unsafe impl Sync for Bar {}

impl Bar {
    pub(crate) fn new(map: MmapRaw, index: u32) -> Self {
        Bar { map, index }
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
        let off = offset as usize;
        // A register offset is a constant from a register map; an out-of-range one is a
        // driver bug, caught here rather than as a stray access outside the BAR.
        assert!(
            off.is_multiple_of(4) && off + 4 <= self.map.len(),
            "register offset {off:#x} outside BAR{} ({:#x} bytes)",
            self.index,
            self.map.len()
        );
        // The assert above keeps the pointer inside the mapping.
        self.map.as_mut_ptr().wrapping_add(off).cast::<u32>()
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
