//! Memory ordering between the CPU and a device, written once per architecture. The ring
//! engine and every device's ops order their accesses to DMA memory and registers with these
//! three functions and nothing else, so porting tenge to another architecture is writing
//! them for it (a build for any other architecture fails here, on purpose, rather than run
//! with ordering nobody checked).
//!
//! What each one orders, in Linux's terms (Documentation/memory-barriers.txt, "DMA"):
//! - [`dma_wmb`]: stores to DMA memory before a later store that hands them to the device:
//!   descriptors before the index, flag or doorbell that publishes them, a descriptor's
//!   address before its flags on a packed ring.
//! - [`dma_rmb`]: a load of a device-written done bit, index or flag before the loads of what
//!   it guards (the rest of the write-back, the used entries).
//! - [`mb`]: a store to DMA memory before a later load of memory the device writes: virtio's
//!   publish of an index before the check of the device's notification suppression
//!   (virtio 1.2 §2.7.13.4, §2.8.22), where both sides skipping the notification would stall
//!   the queue.

#[cfg(target_arch = "x86_64")]
mod arch {
    use std::sync::atomic::{compiler_fence, fence, Ordering};

    /// x86-64 does not reorder a store with older stores (Intel SDM vol. 3A §9.2.2, "Memory
    /// Ordering in P6 and More Recent Processor Families"), to write-back memory or to an
    /// uncached BAR alike, and tenge uses no non-temporal stores: only the compiler must be
    /// kept from moving the stores before it past it (a release compiler fence).
    #[inline(always)]
    pub fn dma_wmb() {
        compiler_fence(Ordering::Release);
    }

    /// x86-64 does not reorder a load with older loads (same section): only the compiler
    /// must be kept from moving the loads after it before it (an acquire compiler fence).
    #[inline(always)]
    pub fn dma_rmb() {
        compiler_fence(Ordering::Acquire);
    }

    /// x86-64 may complete a load before an older store to another address (the store
    /// buffer; same section): this needs `mfence`, which a sequentially consistent fence
    /// is.
    #[inline(always)]
    pub fn mb() {
        fence(Ordering::SeqCst);
    }
}

#[cfg(not(target_arch = "x86_64"))]
compile_error!(
    "tenge's device memory barriers (driver/src/platform/barrier.rs) are written for x86-64 \
     only: write dma_wmb, dma_rmb and mb for this architecture there first (on AArch64: \
     dmb oshst, dmb oshld, dmb osh)"
);

pub use arch::{dma_rmb, dma_wmb, mb};
