//! Register access and waiting, as traits.
//!
//! [`Mmio`] is implemented by the driver's mapped BAR (volatile 32-bit loads and stores) and,
//! for tests, by [`RecordedRegs`] (feature `testing`). [`Delay`] is implemented by
//! [`StdDelay`] (a thread sleep) and, for tests, by [`RecordedDelay`], which advances the
//! register file's virtual clock instead of sleeping.

#[cfg(any(test, feature = "testing"))]
mod recorded;

#[cfg(any(test, feature = "testing"))]
pub use recorded::{
    e1000e_nvm_image, Access, ReadHook, RecordedDelay, RecordedRegs, RegFile, WriteHook,
};

/// 32-bit access to a device's register BAR.
///
/// `offset` is a byte offset into the BAR and is always a multiple of 4. Both the 82574 and
/// QEMU's model of it accept only 32-bit accesses to their registers (QEMU `hw/net/e1000e.c`
/// `mmio_ops`: `min_access_size = max_access_size = 4`).
///
/// Reads can have side effects (read-to-clear statistics, ICR), so an implementation must
/// perform exactly one device access per call.
pub trait Mmio {
    /// Reads the register at `offset`.
    fn read32(&self, offset: u32) -> u32;
    /// Writes `value` to the register at `offset`.
    fn write32(&self, offset: u32, value: u32);
}

impl<T: Mmio + ?Sized> Mmio for &T {
    fn read32(&self, offset: u32) -> u32 {
        (**self).read32(offset)
    }

    fn write32(&self, offset: u32, value: u32) {
        (**self).write32(offset, value)
    }
}

/// A way to wait: sequences poll a register, then wait, then poll again.
pub trait Delay {
    /// Waits at least `us` microseconds.
    fn delay_us(&mut self, us: u32);
}

impl<T: Delay + ?Sized> Delay for &mut T {
    fn delay_us(&mut self, us: u32) {
        (**self).delay_us(us)
    }
}

/// [`Delay`] by sleeping the calling thread ([`std::thread::sleep`]).
///
/// A sleep lasts at least as long as asked and usually longer (tens of microseconds of
/// scheduler granularity), so timeouts counted in requested microseconds are lower bounds
/// on the real time waited.
#[derive(Clone, Copy, Debug, Default)]
pub struct StdDelay;

impl Delay for StdDelay {
    fn delay_us(&mut self, us: u32) {
        if us == 0 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(std::time::Duration::from_micros(u64::from(us)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn std_delay_sleeps_at_least_as_long_as_asked() {
        let start = std::time::Instant::now();
        StdDelay.delay_us(2_000);
        assert!(start.elapsed() >= std::time::Duration::from_micros(2_000));
        // Zero only yields.
        StdDelay.delay_us(0);
    }

    #[test]
    fn references_forward_to_the_register_file() {
        let regs = RecordedRegs::new();
        let by_ref: &RecordedRegs = &regs;
        by_ref.write32(0x10, 7);
        assert_eq!((&by_ref).read32(0x10), 7);
        assert_eq!(
            regs.log(),
            vec![Access::Write(0x10, 7), Access::Read(0x10, 7)]
        );
    }
}
