//! The virtio-net packet header (virtio 1.2 §5.1.6, `struct virtio_net_hdr`).
//!
//! Every frame in either direction is preceded by this header in the same descriptor chain.
//! With `VIRTIO_F_VERSION_1` it is always [`VirtioNetHdr`], 12 bytes, `num_buffers`
//! included whether or not `VIRTIO_NET_F_MRG_RXBUF` was negotiated (§5.1.6: "the legacy
//! driver only presented num_buffers ... when VIRTIO_NET_F_MRG_RXBUF was negotiated").
//! [`VirtioNetHdrLegacy`] is the 10-byte pre-1.0 form, for reference and for tests that
//! parse captures of legacy devices; a modern driver never uses it.

use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The virtio-net header (virtio 1.2 §5.1.6), 12 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct VirtioNetHdr {
    /// `VIRTIO_NET_HDR_F_*`.
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*`, possibly with `VIRTIO_NET_HDR_GSO_ECN`.
    pub gso_type: u8,
    /// TX with GSO: length of the headers to replicate in each segment (§5.1.6.2).
    pub hdr_len: U16,
    /// TX with GSO: maximum segment payload size (MSS).
    pub gso_size: U16,
    /// With `NEEDS_CSUM`: where checksumming starts (offset from the frame start).
    pub csum_start: U16,
    /// With `NEEDS_CSUM`: where to store the checksum, relative to `csum_start`.
    pub csum_offset: U16,
    /// RX: how many descriptor chains (buffers) this frame occupies; 1 unless
    /// `VIRTIO_NET_F_MRG_RXBUF` was negotiated (§5.1.6.4). TX: the driver writes 0.
    pub num_buffers: U16,
}
const _: () = assert!(core::mem::size_of::<VirtioNetHdr>() == 12);

/// Length of [`VirtioNetHdr`]: what precedes every frame on a modern device.
pub const VIRTIO_NET_HDR_LEN: usize = 12;

/// The RX header with `VIRTIO_NET_F_HASH_REPORT` (virtio 1.2 §5.1.6, `struct
/// virtio_net_hdr` with its hash fields; Linux's `virtio_net_hdr_v1_hash`), 20 bytes: the
/// 12-byte header, then the hash the device computed and what it hashed (§5.1.6.4.5,
/// `VIRTIO_NET_HASH_REPORT_*`). With the feature every header is this long, TX too (the
/// driver writes the hash fields as 0).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct VirtioNetHdrHash {
    /// The 12-byte header.
    pub hdr: VirtioNetHdr,
    /// The RSS hash of the frame (meaningful when `hash_report` is not 0).
    pub hash_value: U32,
    /// `VIRTIO_NET_HASH_REPORT_*`: 0 none, 1 IPv4, 2 TCP/IPv4, 3 UDP/IPv4, 4 IPv6, 5
    /// TCP/IPv6, 6 UDP/IPv6, 7 IPv6 ex, 8 TCP/IPv6 ex, 9 UDP/IPv6 ex.
    pub hash_report: U16,
    /// Reserved.
    pub padding: U16,
}
const _: () = assert!(core::mem::size_of::<VirtioNetHdrHash>() == 20);

/// Length of [`VirtioNetHdrHash`]: the header with `VIRTIO_NET_F_HASH_REPORT`.
pub const VIRTIO_NET_HASH_HDR_LEN: usize = 20;

/// The legacy header without `num_buffers` (virtio 1.2 §5.1.6, "legacy interface"), 10
/// bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct VirtioNetHdrLegacy {
    /// `VIRTIO_NET_HDR_F_*`.
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*`.
    pub gso_type: u8,
    /// GSO header length.
    pub hdr_len: U16,
    /// GSO segment size.
    pub gso_size: U16,
    /// Checksum start.
    pub csum_start: U16,
    /// Checksum offset from `csum_start`.
    pub csum_offset: U16,
}
const _: () = assert!(core::mem::size_of::<VirtioNetHdrLegacy>() == 10);

/// TX: the device must compute the checksum from `csum_start` and store it at
/// `csum_start + csum_offset` (needs `VIRTIO_NET_F_CSUM`). RX: the checksum is partial
/// (the packet came from a local sender that left it to the NIC); needs
/// `VIRTIO_NET_F_GUEST_CSUM` (§5.1.6.4.1).
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// RX: the device validated the checksum (needs `VIRTIO_NET_F_GUEST_CSUM`).
pub const VIRTIO_NET_HDR_F_DATA_VALID: u8 = 2;
/// RX: `csum_start`/`csum_offset` carry coalescing info (needs `VIRTIO_NET_F_RSC_EXT`).
pub const VIRTIO_NET_HDR_F_RSC_INFO: u8 = 4;

/// No segmentation.
pub const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
/// TCP over IPv4 segmentation (`HOST_TSO4` for TX, `GUEST_TSO4` for RX).
pub const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
/// UDP fragmentation offload (deprecated, `HOST_UFO`/`GUEST_UFO`).
pub const VIRTIO_NET_HDR_GSO_UDP: u8 = 3;
/// TCP over IPv6 segmentation (`HOST_TSO6`/`GUEST_TSO6`).
pub const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
/// UDP segmentation (`HOST_USO`/`GUEST_USO4/6`).
pub const VIRTIO_NET_HDR_GSO_UDP_L4: u8 = 5;
/// ECN bit, ORed into `gso_type` (`HOST_ECN`/`GUEST_ECN`).
pub const VIRTIO_NET_HDR_GSO_ECN: u8 = 0x80;

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn header_offsets_match_spec_5_1_6() {
        assert_eq!(offset_of!(VirtioNetHdr, flags), 0);
        assert_eq!(offset_of!(VirtioNetHdr, gso_type), 1);
        assert_eq!(offset_of!(VirtioNetHdr, hdr_len), 2);
        assert_eq!(offset_of!(VirtioNetHdr, gso_size), 4);
        assert_eq!(offset_of!(VirtioNetHdr, csum_start), 6);
        assert_eq!(offset_of!(VirtioNetHdr, csum_offset), 8);
        assert_eq!(offset_of!(VirtioNetHdr, num_buffers), 10);
        assert_eq!(core::mem::size_of::<VirtioNetHdr>(), VIRTIO_NET_HDR_LEN);
        // The legacy header is the modern one minus num_buffers.
        assert_eq!(offset_of!(VirtioNetHdrLegacy, csum_offset), 8);
    }

    #[test]
    fn header_bytes_are_little_endian() {
        let h = VirtioNetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN,
            hdr_len: U16::new(54),
            gso_size: U16::new(1448),
            csum_start: U16::new(34),
            csum_offset: U16::new(16),
            num_buffers: U16::new(0),
        };
        assert_eq!(
            h.as_bytes(),
            &[1, 0x81, 54, 0, 0xa8, 0x05, 34, 0, 16, 0, 0, 0]
        );
        let rx = VirtioNetHdr::read_from_bytes(&[2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0]).unwrap();
        assert_eq!(
            rx.flags & VIRTIO_NET_HDR_F_DATA_VALID,
            VIRTIO_NET_HDR_F_DATA_VALID
        );
        assert_eq!(rx.num_buffers.get(), 3);
    }
}
