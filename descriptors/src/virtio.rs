//! virtio 1.2 virtqueue layouts: the split ring (§2.7) and the packed ring (§2.8).
//!
//! Split ring: three areas the driver allocates and hands to the device by IOVA
//! (§4.1.4.3 `queue_desc`, `queue_driver`, `queue_device`):
//! - descriptor table: `queue_size` × [`VirtqDesc`] (16 B each, 16-byte aligned);
//! - driver area ("available ring"): [`VirtqAvail`] header, `queue_size` × le16 ring
//!   entries, then le16 `used_event` (with `VIRTIO_F_EVENT_IDX`), 2-byte aligned;
//! - device area ("used ring"): [`VirtqUsed`] header, `queue_size` × [`VirtqUsedElem`],
//!   then le16 `avail_event` (with `VIRTIO_F_EVENT_IDX`), 4-byte aligned.
//!
//! The avail and used areas have a variable-length middle, so they are not one struct here:
//! the fixed headers and elements are structs and the offsets of the rest are `const fn`s
//! ([`avail_ring_offset`], [`avail_used_event_offset`], [`used_ring_offset`],
//! [`used_avail_event_offset`]); [`split_ring_layout`] and [`packed_ring_layout`] place a
//! whole queue in one allocation. The driver reads and writes each field with one volatile
//! access at `area base + offset`, never through a reference to the whole area (the device
//! writes it concurrently).
//!
//! Packed ring: one descriptor ring of [`PvirtqDesc`] (16 B, 16-byte aligned) plus two
//! [`PvirtqEventSuppress`] structures (4 B each, 4-byte aligned), one per direction.
//!
//! # Why not the `virtio-spec` crate
//!
//! `virtio-spec` 0.4.0 (rust-osdev) defines these types, and its `zerocopy` feature uses
//! zerocopy 0.8, but it does not fit here:
//! - with the `zerocopy` feature, only some types (for example `net::Hdr`) derive
//!   `FromBytes`/`IntoBytes`; the ring types (`virtq::Desc`, `virtq::UsedElem`,
//!   `pvirtq::Desc`, `pvirtq::EventSuppress`) do not, so they cannot be read or written
//!   through the driver's byte-region type;
//! - `virtq::Avail` and `virtq::Used` are unsized structs whose accessors hand out `&[le16]`
//!   and `&mut [UsedElem]` into the ring, which the device writes concurrently; tenge never
//!   puts device-written memory behind a Rust reference (STYLE.md, Unsafe), it accesses
//!   each field volatilely at an offset;
//! - it would add `endian-num`, `bitfield-struct`, `bitflags`, `num_enum`, `volatile` and
//!   `volatile-macro` to a crate that otherwise needs only zerocopy, and its `le16` is not
//!   the `zerocopy::little_endian::U16` every other layout here uses.
//!
//! The layouts are small and fixed by the spec; they are written out here with offset tests
//! citing the spec.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

// ---- split virtqueue (virtio 1.2 §2.7) ----

/// Split virtqueue descriptor (virtio 1.2 §2.7.5, `struct virtq_desc`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct VirtqDesc {
    /// IOVA of the buffer.
    pub addr: U64,
    /// Length of the buffer in bytes.
    pub len: U32,
    /// `VIRTQ_DESC_F_*`.
    pub flags: U16,
    /// Index of the next descriptor of the chain, with `VIRTQ_DESC_F_NEXT`.
    pub next: U16,
}
const _: () = assert!(core::mem::size_of::<VirtqDesc>() == 16);

/// The buffer continues in the descriptor named by `next` (§2.7.5; also in the packed
/// ring, §2.8.13, where the chain continues in the next ring slot).
pub const VIRTQ_DESC_F_NEXT: u16 = 1;
/// The buffer is device write-only (an RX buffer); otherwise device read-only.
pub const VIRTQ_DESC_F_WRITE: u16 = 2;
/// The buffer holds a table of indirect descriptors (§2.7.5.3, needs
/// `VIRTIO_F_INDIRECT_DESC`).
pub const VIRTQ_DESC_F_INDIRECT: u16 = 4;

/// Alignment of the split descriptor table (§2.7, table "Virtqueue Part Alignment").
pub const SPLIT_DESC_ALIGN: u64 = 16;
/// Alignment of the split driver area (available ring).
pub const SPLIT_AVAIL_ALIGN: u64 = 2;
/// Alignment of the split device area (used ring).
pub const SPLIT_USED_ALIGN: u64 = 4;
/// Largest queue size a split or packed virtqueue can have (§2.7, §2.8: 32768).
pub const MAX_QUEUE_SIZE: u16 = 32768;

/// Fixed header of the split driver area (virtio 1.2 §2.7.6, `struct virtq_avail` without
/// its `ring[]` and `used_event`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct VirtqAvail {
    /// `VIRTQ_AVAIL_F_*`.
    pub flags: U16,
    /// Where the driver will put the next entry, modulo the queue size; free-running and
    /// wrapping at 2^16.
    pub idx: U16,
}
const _: () = assert!(core::mem::size_of::<VirtqAvail>() == 4);

/// The driver asks the device not to interrupt when it uses a buffer (§2.7.7; ignored
/// as advice when `VIRTIO_F_EVENT_IDX` is negotiated, where `used_event` rules).
pub const VIRTQ_AVAIL_F_NO_INTERRUPT: u16 = 1;

/// Byte offset of `avail.idx` in the driver area.
pub const AVAIL_IDX_OFFSET: usize = 2;

/// Byte offset of `avail.ring[slot]` in the driver area.
pub const fn avail_ring_offset(slot: u16) -> usize {
    4 + 2 * slot as usize
}

/// Byte offset of `used_event` (after `ring[queue_size]`) in the driver area (§2.7.6,
/// with `VIRTIO_F_EVENT_IDX`).
pub const fn avail_used_event_offset(queue_size: u16) -> usize {
    avail_ring_offset(queue_size)
}

/// Bytes of the driver area for `queue_size` entries: flags, idx, ring, and `used_event`
/// (always counted; harmless without `VIRTIO_F_EVENT_IDX`, §2.7 "Queue Size").
pub const fn avail_area_size(queue_size: u16) -> usize {
    avail_used_event_offset(queue_size) + 2
}

/// Fixed header of the split device area (virtio 1.2 §2.7.8, `struct virtq_used` without
/// its `ring[]` and `avail_event`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct VirtqUsed {
    /// `VIRTQ_USED_F_*`.
    pub flags: U16,
    /// Where the device will put the next element, modulo the queue size; free-running.
    pub idx: U16,
}
const _: () = assert!(core::mem::size_of::<VirtqUsed>() == 4);

/// The device asks the driver not to notify it when buffers are added (§2.7.10; with
/// `VIRTIO_F_EVENT_IDX`, `avail_event` rules instead).
pub const VIRTQ_USED_F_NO_NOTIFY: u16 = 1;

/// Byte offset of `used.idx` in the device area.
pub const USED_IDX_OFFSET: usize = 2;

/// One element of the used ring (virtio 1.2 §2.7.8, `struct virtq_used_elem`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct VirtqUsedElem {
    /// Index of the head descriptor of the used chain (le32 for padding, §2.7.8).
    pub id: U32,
    /// Bytes the device wrote into the chain's device-writable buffers (for RX: the
    /// virtio-net header plus the frame).
    pub len: U32,
}
const _: () = assert!(core::mem::size_of::<VirtqUsedElem>() == 8);

/// Byte offset of `used.ring[slot]` in the device area.
pub const fn used_ring_offset(slot: u16) -> usize {
    4 + 8 * slot as usize
}

/// Byte offset of `avail_event` (after `ring[queue_size]`) in the device area (§2.7.8,
/// with `VIRTIO_F_EVENT_IDX`).
pub const fn used_avail_event_offset(queue_size: u16) -> usize {
    used_ring_offset(queue_size)
}

/// Bytes of the device area for `queue_size` elements, `avail_event` included.
pub const fn used_area_size(queue_size: u16) -> usize {
    used_avail_event_offset(queue_size) + 2
}

/// The event-index test (virtio 1.2 §2.7.10 and §2.7.7.1, `vring_need_event`): after
/// moving an index from `old` to `new`, must the other side be notified, given that it asked
/// to be notified once the index passes `event_idx`?
///
/// True iff `event_idx` lies in the half-open window `[old, new)` of indices just
/// published, computed modulo 2^16 so it works across the wrap of the free-running indices.
/// The driver uses it before a doorbell with the device's `avail_event` (`old` = avail idx
/// at the last notification, `new` = avail idx now).
#[inline]
pub const fn vring_need_event(event_idx: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event_idx).wrapping_sub(1) < new.wrapping_sub(old)
}

/// Byte offsets of a virtqueue's three areas when they share one DMA allocation, and the
/// allocation's length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingLayout {
    /// Offset of the descriptor area (`queue_desc`).
    pub desc: usize,
    /// Offset of the driver area (`queue_driver`).
    pub driver: usize,
    /// Offset of the device area (`queue_device`).
    pub device: usize,
    /// Bytes needed in total.
    pub len: usize,
}

const fn align_up(x: usize, align: usize) -> usize {
    (x + align - 1) & !(align - 1)
}

/// One split virtqueue in one allocation (which must be at least 16-byte aligned): the
/// descriptor table, the avail ring right after it (2-aligned), the used ring at the next
/// 4-byte boundary (§2.7 alignment table). Event-index fields are always included.
pub const fn split_ring_layout(queue_size: u16) -> RingLayout {
    let desc = 0;
    let driver = desc + 16 * queue_size as usize;
    let device = align_up(
        driver + avail_area_size(queue_size),
        SPLIT_USED_ALIGN as usize,
    );
    RingLayout {
        desc,
        driver,
        device,
        len: device + used_area_size(queue_size),
    }
}

// ---- packed virtqueue (virtio 1.2 §2.8) ----

/// Packed virtqueue descriptor (virtio 1.2 §2.8.13, `struct pvirtq_desc`).
///
/// The driver makes a descriptor available by writing `addr`, `len` and `id`, then (after a
/// write barrier) `flags` with AVAIL = its wrap counter and USED = the inverse; the device
/// marks it used by writing `id`, `len` and then `flags` with AVAIL = USED = its wrap
/// counter (§2.8.1, §2.8.21).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct PvirtqDesc {
    /// IOVA of the buffer.
    pub addr: U64,
    /// Length of the buffer; written back by the device with the bytes it wrote.
    pub len: U32,
    /// Buffer ID, echoed back by the device in the used descriptor.
    pub id: U16,
    /// `VIRTQ_DESC_F_*`, including the AVAIL/USED wrap bits.
    pub flags: U16,
}
const _: () = assert!(core::mem::size_of::<PvirtqDesc>() == 16);

/// Byte offset of `flags` in a packed descriptor: written last by either side, read first.
pub const PVIRTQ_DESC_FLAGS_OFFSET: usize = 14;

/// Packed ring: the driver's avail wrap bit (§2.8.1).
pub const VIRTQ_DESC_F_AVAIL: u16 = 1 << 7;
/// Packed ring: the device's used wrap bit (§2.8.1).
pub const VIRTQ_DESC_F_USED: u16 = 1 << 15;

/// Alignment of the packed descriptor ring (§2.8.10.1: descriptor ring 16, both event
/// suppression structures 4).
pub const PACKED_DESC_ALIGN: u64 = 16;
/// Alignment of the packed driver and device event suppression areas.
pub const PACKED_EVENT_ALIGN: u64 = 4;

/// Flags for a packed descriptor the driver makes available with wrap counter `wrap`:
/// AVAIL = `wrap`, USED = `!wrap` (§2.8.1), together with `other` (NEXT, WRITE, ...).
#[inline]
pub const fn pvirtq_avail_flags(wrap: bool, other: u16) -> u16 {
    if wrap {
        other | VIRTQ_DESC_F_AVAIL
    } else {
        other | VIRTQ_DESC_F_USED
    }
}

/// Is a packed descriptor with `flags` used by the device, for a driver whose used wrap
/// counter is `wrap`? Both AVAIL and USED must equal `wrap` (§2.8.1, §2.8.6).
#[inline]
pub const fn pvirtq_is_used(flags: u16, wrap: bool) -> bool {
    let avail = flags & VIRTQ_DESC_F_AVAIL != 0;
    let used = flags & VIRTQ_DESC_F_USED != 0;
    avail == used && used == wrap
}

/// Event suppression structure of a packed ring (virtio 1.2 §2.8.14,
/// `struct pvirtq_event_suppress`). One in the driver area (written by the driver, read by
/// the device) and one in the device area (written by the device).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct PvirtqEventSuppress {
    /// `desc_event_off` in bits 14:0 and `desc_event_wrap` in bit 15; meaningful with
    /// `flags == RING_EVENT_FLAGS_DESC` (needs `VIRTIO_F_EVENT_IDX`).
    pub off_wrap: U16,
    /// `desc_event_flags` in bits 1:0 (`RING_EVENT_FLAGS_*`); bits 15:2 reserved.
    pub flags: U16,
}
const _: () = assert!(core::mem::size_of::<PvirtqEventSuppress>() == 4);

/// One packed virtqueue in one allocation (at least 16-byte aligned): the descriptor ring,
/// then the driver and device event suppression structures (§2.8.10.1).
pub const fn packed_ring_layout(queue_size: u16) -> RingLayout {
    let driver = 16 * queue_size as usize;
    RingLayout {
        desc: 0,
        driver,
        device: driver + 4,
        len: driver + 8,
    }
}

/// Notify on every event (§2.8.14).
pub const RING_EVENT_FLAGS_ENABLE: u16 = 0x0;
/// Never notify.
pub const RING_EVENT_FLAGS_DISABLE: u16 = 0x1;
/// Notify when the descriptor at `off_wrap` is made available/used (with EVENT_IDX).
pub const RING_EVENT_FLAGS_DESC: u16 = 0x2;
/// Mask of `desc_event_flags` in `flags`.
pub const RING_EVENT_FLAGS_MASK: u16 = 0x3;
/// Mask of the descriptor offset in `off_wrap`.
pub const RING_EVENT_OFF_MASK: u16 = 0x7fff;
/// The wrap counter bit in `off_wrap`.
pub const RING_EVENT_WRAP: u16 = 1 << 15;

impl PvirtqEventSuppress {
    /// Splits `off_wrap` into (descriptor offset, wrap counter).
    pub const fn event_off_wrap(&self) -> (u16, bool) {
        let v = self.off_wrap.get();
        (v & RING_EVENT_OFF_MASK, v & RING_EVENT_WRAP != 0)
    }

    /// The `desc_event_flags` field.
    pub const fn event_flags(&self) -> u16 {
        self.flags.get() & RING_EVENT_FLAGS_MASK
    }

    /// Packs (offset, wrap) into `off_wrap` form.
    pub const fn pack_off_wrap(off: u16, wrap: bool) -> u16 {
        (off & RING_EVENT_OFF_MASK) | if wrap { RING_EVENT_WRAP } else { 0 }
    }
}

/// The packed-ring notification test (virtio 1.2 §2.8.14, §2.8.22): after making `added`
/// descriptors available, ending just before slot `next_avail` of a ring of `ring_size`
/// with the driver's avail wrap counter now `avail_wrap`, must the driver notify the
/// device, given the device event suppression structure `device_event`?
///
/// - `RING_EVENT_FLAGS_ENABLE`: always; `RING_EVENT_FLAGS_DISABLE`: never;
/// - `RING_EVENT_FLAGS_DESC` (needs `VIRTIO_F_EVENT_IDX`): iff the descriptor the device
///   named in `off_wrap` (slot and wrap counter) is among the `added` ones. The event
///   slot is moved back by one ring length when its wrap counter differs from the driver's,
///   which turns the question into the split ring's [`vring_need_event`].
///
/// `added` must be at most `ring_size` (one burst never exceeds the ring).
#[inline]
pub const fn pvirtq_need_event(
    device_event: PvirtqEventSuppress,
    next_avail: u16,
    avail_wrap: bool,
    added: u16,
    ring_size: u16,
) -> bool {
    match device_event.event_flags() {
        RING_EVENT_FLAGS_DESC => {
            let (mut event, event_wrap) = device_event.event_off_wrap();
            if event_wrap != avail_wrap {
                event = event.wrapping_sub(ring_size);
            }
            vring_need_event(event, next_avail, next_avail.wrapping_sub(added))
        }
        RING_EVENT_FLAGS_DISABLE => false,
        // ENABLE, and the reserved value 3, which a device must not use: notify.
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use core::mem::offset_of;
    use proptest::prelude::*;

    #[test]
    fn split_desc_offsets_match_spec_2_7_5() {
        assert_eq!(offset_of!(VirtqDesc, addr), 0);
        assert_eq!(offset_of!(VirtqDesc, len), 8);
        assert_eq!(offset_of!(VirtqDesc, flags), 12);
        assert_eq!(offset_of!(VirtqDesc, next), 14);
        let d = VirtqDesc {
            addr: U64::new(0x1122_3344_5566_7788),
            len: U32::new(0x600),
            flags: U16::new(VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE),
            next: U16::new(5),
        };
        assert_eq!(
            d.as_bytes(),
            &[0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0, 6, 0, 0, 3, 0, 5, 0]
        );
    }

    #[test]
    fn avail_and_used_offsets_match_spec_2_7_6_and_2_7_8() {
        assert_eq!(offset_of!(VirtqAvail, flags), 0);
        assert_eq!(offset_of!(VirtqAvail, idx), AVAIL_IDX_OFFSET);
        assert_eq!(avail_ring_offset(0), 4);
        assert_eq!(avail_ring_offset(255), 4 + 510);
        // §2.7: driver area = 6 + 2 * Queue Size bytes.
        assert_eq!(avail_used_event_offset(256), 4 + 512);
        assert_eq!(avail_area_size(256), 6 + 2 * 256);
        assert_eq!(offset_of!(VirtqUsed, flags), 0);
        assert_eq!(offset_of!(VirtqUsed, idx), USED_IDX_OFFSET);
        assert_eq!(offset_of!(VirtqUsedElem, id), 0);
        assert_eq!(offset_of!(VirtqUsedElem, len), 4);
        assert_eq!(used_ring_offset(1), 12);
        // §2.7: device area = 6 + 8 * Queue Size bytes.
        assert_eq!(used_avail_event_offset(256), 4 + 8 * 256);
        assert_eq!(used_area_size(256), 6 + 8 * 256);
        // The largest queue still fits usize arithmetic without overflow.
        assert_eq!(used_area_size(MAX_QUEUE_SIZE), 6 + 8 * 32768);
        let e = VirtqUsedElem::read_from_bytes(&[3, 0, 0, 0, 0x4e, 0x02, 0, 0]).unwrap();
        assert_eq!((e.id.get(), e.len.get()), (3, 12 + 578));
    }

    #[test]
    fn packed_offsets_match_spec_2_8_13_and_2_8_14() {
        assert_eq!(offset_of!(PvirtqDesc, addr), 0);
        assert_eq!(offset_of!(PvirtqDesc, len), 8);
        assert_eq!(offset_of!(PvirtqDesc, id), 12);
        assert_eq!(offset_of!(PvirtqDesc, flags), PVIRTQ_DESC_FLAGS_OFFSET);
        assert_eq!(offset_of!(PvirtqEventSuppress, off_wrap), 0);
        assert_eq!(offset_of!(PvirtqEventSuppress, flags), 2);
        let e = PvirtqEventSuppress::read_from_bytes(&[0x05, 0x80, 0x02, 0x00]).unwrap();
        assert_eq!(e.event_off_wrap(), (5, true));
        assert_eq!(e.event_flags(), RING_EVENT_FLAGS_DESC);
        assert_eq!(PvirtqEventSuppress::pack_off_wrap(5, true), 0x8005);
        assert_eq!(PvirtqEventSuppress::pack_off_wrap(0xffff, false), 0x7fff);
    }

    #[test]
    fn packed_wrap_bits_follow_spec_2_8_1() {
        // Wrap counter starts at 1: available = AVAIL set, USED clear.
        let f = pvirtq_avail_flags(true, VIRTQ_DESC_F_WRITE);
        assert_eq!(f, VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_WRITE);
        assert!(!pvirtq_is_used(f, true));
        // The device marks it used with both bits = its wrap counter (1).
        assert!(pvirtq_is_used(f | VIRTQ_DESC_F_USED, true));
        // After the ring wraps the driver's counter is 0: available = USED set, AVAIL clear.
        let f0 = pvirtq_avail_flags(false, 0);
        assert_eq!(f0, VIRTQ_DESC_F_USED);
        assert!(!pvirtq_is_used(f0, false));
        assert!(pvirtq_is_used(0, false));
        // A descriptor used in the previous lap is not used in this one.
        assert!(!pvirtq_is_used(
            VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED,
            false
        ));
    }

    #[test]
    fn need_event_examples() {
        // Notify when the published window [old, new) contains event_idx.
        assert!(vring_need_event(0, 1, 0));
        assert!(!vring_need_event(1, 1, 0));
        assert!(vring_need_event(5, 10, 3));
        assert!(!vring_need_event(10, 10, 3));
        assert!(!vring_need_event(2, 10, 3));
        // Across the 16-bit wrap.
        assert!(vring_need_event(0xffff, 2, 0xfffe));
        assert!(vring_need_event(1, 2, 0xfffe));
        assert!(!vring_need_event(2, 2, 0xfffe));
        // Nothing published: never notify.
        assert!(!vring_need_event(7, 7, 7));
    }

    #[test]
    fn ring_layouts_for_qemus_sizes() {
        // RX/TX 256: table 4096, avail 4 + 512 + 2 = 518, used at 4616 (4-aligned).
        assert_eq!(
            split_ring_layout(256),
            RingLayout {
                desc: 0,
                driver: 4096,
                device: 4616,
                len: 4616 + 6 + 8 * 256
            }
        );
        // Control 64: avail ends at 1024 + 134 = 1158, used at 1160.
        assert_eq!(split_ring_layout(64).device, 1160);
        assert_eq!(
            packed_ring_layout(256),
            RingLayout {
                desc: 0,
                driver: 4096,
                device: 4100,
                len: 4104
            }
        );
    }

    fn event(off: u16, wrap: bool, flags: u16) -> PvirtqEventSuppress {
        PvirtqEventSuppress {
            off_wrap: U16::new(PvirtqEventSuppress::pack_off_wrap(off, wrap)),
            flags: U16::new(flags),
        }
    }

    #[test]
    fn packed_need_event_examples() {
        // Ring of 8, driver wrap counter 1, published slots 2..5.
        let e = |off, wrap| event(off, wrap, RING_EVENT_FLAGS_DESC);
        assert!(pvirtq_need_event(e(3, true), 5, true, 3, 8));
        assert!(!pvirtq_need_event(e(5, true), 5, true, 3, 8));
        assert!(!pvirtq_need_event(e(3, false), 5, true, 3, 8));
        // Across the wrap: slots 6, 7 (wrap 1) then 0, 1 (wrap 0).
        assert!(pvirtq_need_event(e(7, true), 2, false, 4, 8));
        assert!(pvirtq_need_event(e(1, false), 2, false, 4, 8));
        assert!(!pvirtq_need_event(e(7, false), 2, false, 4, 8));
        assert!(pvirtq_need_event(
            event(0, false, RING_EVENT_FLAGS_ENABLE),
            1,
            true,
            1,
            8
        ));
        assert!(!pvirtq_need_event(
            event(0, false, RING_EVENT_FLAGS_DISABLE),
            1,
            true,
            1,
            8
        ));
    }

    proptest! {
        #[test]
        fn ring_layouts_are_aligned_and_disjoint(size in 1u16..=MAX_QUEUE_SIZE) {
            let s = split_ring_layout(size);
            prop_assert_eq!(s.desc as u64 % SPLIT_DESC_ALIGN, 0);
            prop_assert_eq!(s.driver as u64 % SPLIT_AVAIL_ALIGN, 0);
            prop_assert_eq!(s.device as u64 % SPLIT_USED_ALIGN, 0);
            prop_assert!(s.desc + 16 * size as usize <= s.driver);
            prop_assert!(s.driver + avail_area_size(size) <= s.device);
            prop_assert_eq!(s.device + used_area_size(size), s.len);
            let p = packed_ring_layout(size);
            prop_assert_eq!(p.driver as u64 % PACKED_EVENT_ALIGN, 0);
            prop_assert_eq!(p.device as u64 % PACKED_EVENT_ALIGN, 0);
            prop_assert_eq!(p.len, 16 * size as usize + 8);
        }

        #[test]
        fn packed_need_event_is_membership_in_the_published_slots(
            size_log2 in 0u32..=15,
            start in any::<u16>(),
            start_wrap in any::<bool>(),
            added_frac in any::<u16>(),
            event_off in any::<u16>(),
            event_wrap in any::<bool>(),
        ) {
            let size = 1u16 << size_log2;
            let start = start % size;
            let added = if size == 1 { added_frac % 2 } else { added_frac % (size + 1) };
            let event_off = event_off % size;
            // Reference: walk the published slots one by one.
            let (mut pos, mut wrap) = (start, start_wrap);
            let mut hit = false;
            for _ in 0..added {
                if pos == event_off && wrap == event_wrap {
                    hit = true;
                }
                pos += 1;
                if pos == size {
                    pos = 0;
                    wrap = !wrap;
                }
            }
            let e = event(event_off, event_wrap, RING_EVENT_FLAGS_DESC);
            prop_assert_eq!(pvirtq_need_event(e, pos, wrap, added, size), hit);
        }

        #[test]
        fn need_event_is_membership_in_the_published_window(
            old in any::<u16>(),
            published in 0u16..=0x7fff,
            event_off in any::<u16>(),
        ) {
            let new = old.wrapping_add(published);
            let event_idx = old.wrapping_add(event_off);
            // Reference: walk the window one index at a time.
            let in_window = (0..published).any(|i| old.wrapping_add(i) == event_idx);
            prop_assert_eq!(vring_need_event(event_idx, new, old), in_window);
        }

        #[test]
        fn need_event_is_invariant_under_rotation(
            event_idx in any::<u16>(),
            new in any::<u16>(),
            old in any::<u16>(),
            shift in any::<u16>(),
        ) {
            prop_assert_eq!(
                vring_need_event(event_idx, new, old),
                vring_need_event(
                    event_idx.wrapping_add(shift),
                    new.wrapping_add(shift),
                    old.wrapping_add(shift)
                )
            );
        }

        #[test]
        fn event_at_new_minus_one_always_notifies(new in any::<u16>(), n in 1u16..=0x7fff) {
            // The device asked for the last index published: always notify.
            prop_assert!(vring_need_event(new.wrapping_sub(1), new, new.wrapping_sub(n)));
        }
    }
}
