//! Register access and waiting, as traits.
//!
//! [`Mmio`] is implemented by the driver's mapped BAR (volatile 32-bit loads and stores) and,
//! for tests, by [`RecordedRegs`] (feature `testing`). [`NarrowMmio`] adds the 8- and 16-bit
//! accesses that virtio's register structures need. [`Delay`] is implemented by
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

/// 8- and 16-bit access, for register blocks with fields narrower than 32 bits.
///
/// virtio 1.2 §4.1.3.1: "The driver MUST access each field using the 'natural' access
/// method, i.e. 32-bit accesses for 32-bit fields, 16-bit accesses for 16-bit fields, and
/// 8-bit accesses for 8-bit fields." There are deliberately no default implementations in
/// terms of [`Mmio`]: a narrow write built from 32-bit accesses would be a read-modify-write
/// of the whole dword, and in the virtio common configuration `queue_select` (0x16) shares
/// its dword with `device_status` (0x14) and `config_generation` (0x15), so such a write
/// would also rewrite the device status. An implementation must do exactly one access of
/// exactly the given width per call.
pub trait NarrowMmio: Mmio {
    /// Reads the byte at `offset`.
    fn read8(&self, offset: u32) -> u8;
    /// Reads the 16-bit little-endian field at `offset` (a multiple of 2).
    fn read16(&self, offset: u32) -> u16;
    /// Writes the byte at `offset`.
    fn write8(&self, offset: u32, value: u8);
    /// Writes the 16-bit little-endian field at `offset` (a multiple of 2).
    fn write16(&self, offset: u32, value: u16);
}

impl<T: NarrowMmio + ?Sized> NarrowMmio for &T {
    fn read8(&self, offset: u32) -> u8 {
        (**self).read8(offset)
    }

    fn read16(&self, offset: u32) -> u16 {
        (**self).read16(offset)
    }

    fn write8(&self, offset: u32, value: u8) {
        (**self).write8(offset, value)
    }

    fn write16(&self, offset: u32, value: u16) {
        (**self).write16(offset, value)
    }
}

/// Writes `bytes` into consecutive 32-bit registers from `base`, byte n in bits
/// 8(n%4)+7:8(n%4) of register n/4: how the Intel NICs lay out their byte arrays (the RSS
/// key in RSSRK, the redirection table in RETA), and how QEMU reads them back as bytes.
/// A last partial register is padded with zero bytes.
pub fn write_byte_array(regs: &impl Mmio, base: u32, bytes: &[u8]) {
    for (i, c) in bytes.chunks(4).enumerate() {
        let mut w = [0u8; 4];
        w[..c.len()].copy_from_slice(c);
        regs.write32(base + 4 * i as u32, u32::from_le_bytes(w));
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

    #[test]
    fn narrow_references_forward_with_their_width() {
        let regs = RecordedRegs::new();
        let by_ref: &RecordedRegs = &regs;
        by_ref.write8(0x14, 0xab);
        by_ref.write16(0x16, 0x1234);
        assert_eq!((&by_ref).read8(0x14), 0xab);
        assert_eq!((&by_ref).read16(0x16), 0x1234);
        assert_eq!(
            regs.log_with_widths(),
            vec![
                (Access::Write(0x14, 0xab), 1),
                (Access::Write(0x16, 0x1234), 2),
                (Access::Read(0x14, 0xab), 1),
                (Access::Read(0x16, 0x1234), 2),
            ]
        );
    }
}
