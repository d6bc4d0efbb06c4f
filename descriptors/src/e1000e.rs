//! Intel 82574L descriptors (82574 datasheet §7.1.5 receive, §7.2.10 transmit).
//!
//! All descriptors are 16 bytes. The driver uses the legacy TX descriptor for frames without
//! offloads, the context + data descriptor pair (DEXT=1) for checksum and TSO offloads, and the
//! extended RX descriptor (RFCTL.EXSTEN=1), whose write-back carries checksum status.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Legacy transmit descriptor (82574 §7.2.10.1, table 7-36).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct LegacyTxDesc {
    /// IOVA of the data buffer.
    pub buffer_addr: U64,
    /// Bytes to send from this buffer.
    pub length: U16,
    /// Checksum offset: where to insert the checksum (with `cmd & IC`).
    pub cso: u8,
    /// `TXD_CMD_*` bits.
    pub cmd: u8,
    /// `TXD_STAT_*` bits in the low nibble, written back by the device.
    pub status: u8,
    /// Checksum start.
    pub css: u8,
    /// VLAN tag, with `cmd & VLE`.
    pub special: U16,
}
const _: () = assert!(core::mem::size_of::<LegacyTxDesc>() == 16);

/// TX command bits shared by the legacy descriptor `cmd` byte and the data descriptor
/// `DCMD` byte (82574 §7.2.10.1.2 and §7.2.10.3.2).
pub const TXD_CMD_EOP: u8 = 1 << 0;
/// Insert FCS (the Ethernet CRC).
pub const TXD_CMD_IFCS: u8 = 1 << 1;
/// Insert checksum (legacy descriptor only).
pub const TXD_CMD_IC: u8 = 1 << 2;
/// TCP segmentation enable (data descriptor only).
pub const TXD_CMD_TSE: u8 = 1 << 2;
/// Report status: the device writes DD back into this descriptor when done.
pub const TXD_CMD_RS: u8 = 1 << 3;
/// Descriptor extension: context/data descriptor format instead of legacy.
pub const TXD_CMD_DEXT: u8 = 1 << 5;
/// VLAN packet enable.
pub const TXD_CMD_VLE: u8 = 1 << 6;
/// Interrupt delay enable.
pub const TXD_CMD_IDE: u8 = 1 << 7;
/// Descriptor done, written back in `status` of a descriptor with RS.
pub const TXD_STAT_DD: u8 = 1 << 0;

/// TCP/IP context transmit descriptor (82574 §7.2.10.2, table 7-41).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct TxContextDesc {
    /// IP checksum start: offset of the IP header.
    pub ipcss: u8,
    /// IP checksum offset: where the IP header checksum goes.
    pub ipcso: u8,
    /// IP checksum end (inclusive), 0 for "to the end of the packet".
    pub ipcse: U16,
    /// TCP/UDP checksum start.
    pub tucss: u8,
    /// TCP/UDP checksum offset.
    pub tucso: u8,
    /// TCP/UDP checksum end, 0 for "to the end of the packet".
    pub tucse: U16,
    /// PAYLEN in bits 19:0, DTYP (0000) in bits 23:20, TUCMD in bits 31:24.
    pub cmd_and_length: U32,
    /// Status (DD) in the low nibble.
    pub status: u8,
    /// Header length for TSO.
    pub hdr_len: u8,
    /// Maximum segment size for TSO.
    pub mss: U16,
}
const _: () = assert!(core::mem::size_of::<TxContextDesc>() == 16);

/// Context descriptor TUCMD bits (bits 31:24 of `cmd_and_length`, 82574 §7.2.10.2.2).
pub const TUCMD_TCP: u8 = 1 << 0;
/// The packet is IPv4 (IP checksum and IP total length are valid to touch).
pub const TUCMD_IP: u8 = 1 << 1;
/// TCP segmentation.
pub const TUCMD_TSE: u8 = 1 << 2;
/// Report status.
pub const TUCMD_RS: u8 = 1 << 3;
/// Extended descriptor (must be set for a context descriptor).
pub const TUCMD_DEXT: u8 = 1 << 5;
/// Interrupt delay enable.
pub const TUCMD_IDE: u8 = 1 << 7;

/// DTYP field (bits 23:20 of the command dword) of a context descriptor.
pub const DTYP_CONTEXT: u32 = 0x0;
/// DTYP field of a data descriptor.
pub const DTYP_DATA: u32 = 0x1;
/// Shift of the DTYP field in the command dword.
pub const DTYP_SHIFT: u32 = 20;
/// Shift of the command byte (DCMD/TUCMD) in the command dword.
pub const CMD_SHIFT: u32 = 24;
/// Mask of the 20-bit length (DTALEN / PAYLEN) in the command dword.
pub const LEN_MASK: u32 = 0x000f_ffff;

impl TxContextDesc {
    /// Builds the command dword from its three fields.
    pub const fn cmd_dword(paylen: u32, tucmd: u8) -> u32 {
        (paylen & LEN_MASK) | (DTYP_CONTEXT << DTYP_SHIFT) | ((tucmd as u32) << CMD_SHIFT)
    }
}

/// TCP/IP data transmit descriptor (82574 §7.2.10.3, table 7-44).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct TxDataDesc {
    /// IOVA of the data buffer.
    pub buffer_addr: U64,
    /// DTALEN in bits 19:0, DTYP (0001) in bits 23:20, DCMD in bits 31:24.
    pub cmd_type_len: U32,
    /// Status (DD) in the low nibble.
    pub status: u8,
    /// Packet options: `POPTS_*`.
    pub popts: u8,
    /// VLAN tag.
    pub special: U16,
}
const _: () = assert!(core::mem::size_of::<TxDataDesc>() == 16);

/// Insert the IP checksum (data descriptor POPTS, 82574 §7.2.10.3.3).
pub const POPTS_IXSM: u8 = 1 << 0;
/// Insert the TCP/UDP checksum.
pub const POPTS_TXSM: u8 = 1 << 1;

impl TxDataDesc {
    /// Builds the command dword from its three fields.
    pub const fn cmd_dword(len: u32, dcmd: u8) -> u32 {
        (len & LEN_MASK) | (DTYP_DATA << DTYP_SHIFT) | ((dcmd as u32) << CMD_SHIFT)
    }
}

/// Extended receive descriptor, read format: what the driver writes (82574 §7.1.5.2, table 7-9).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct RxDescExtRead {
    /// IOVA of the receive buffer.
    pub buffer_addr: U64,
    /// Must be zero: the write-back's DD bit lands in this quadword.
    pub reserved: U64,
}
const _: () = assert!(core::mem::size_of::<RxDescExtRead>() == 16);

/// Extended receive descriptor, write-back format: what the device writes (82574 §7.1.5.2,
/// table 7-10). Overlays [`RxDescExtRead`] in the same 16 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct RxDescExtWb {
    /// MRQ: RSS type in bits 3:0, queue in bits 8:4.
    pub mrq: U32,
    /// RSS hash, or IP identification (15:0) and packet checksum (31:16).
    pub rss_or_csum: U32,
    /// Extended status in bits 19:0, extended errors in bits 31:20 (`RXD_STAT_*`, `RXD_ERR_*`).
    pub status_error: U32,
    /// Bytes written to this descriptor's buffer.
    pub length: U16,
    /// VLAN tag.
    pub vlan: U16,
}
const _: () = assert!(core::mem::size_of::<RxDescExtWb>() == 16);

/// Byte offset of `status_error` in the write-back: the driver reads this dword first.
pub const RX_WB_STATUS_OFFSET: usize = 8;

/// Descriptor done (82574 §7.1.5.2, extended status).
pub const RXD_STAT_DD: u32 = 1 << 0;
/// End of packet: the last descriptor of a frame.
pub const RXD_STAT_EOP: u32 = 1 << 1;
/// VLAN packet.
pub const RXD_STAT_VP: u32 = 1 << 3;
/// UDP checksum calculated.
pub const RXD_STAT_UDPCS: u32 = 1 << 4;
/// TCP checksum calculated (TCP or UDP, qualified by UDPCS).
pub const RXD_STAT_TCPCS: u32 = 1 << 5;
/// IP checksum calculated.
pub const RXD_STAT_IPCS: u32 = 1 << 6;
/// The packet-type code in bits 19:16 of the extended status, as QEMU's 82574 model
/// writes it on a frame's last descriptor (`E1000_RXD_PKT_TYPE` in QEMU's
/// `hw/net/e1000x_regs.h`, set in `e1000e_build_rx_metadata` whatever RXCSUM says):
/// one of `RXD_PKT_*`. A part that leaves these bits 0 says "MAC", so a driver cannot
/// tell that code from silence.
pub const RXD_PKT_TYPE_SHIFT: u32 = 16;
/// The packet-type code's width, after [`RXD_PKT_TYPE_SHIFT`].
pub const RXD_PKT_TYPE_MASK: u32 = 0xf;
/// Packet type: neither IPv4 nor IPv6 (or IPv6 with RFCTL.IPV6_DIS).
pub const RXD_PKT_MAC: u32 = 0;
/// Packet type: IPv4 without TCP or UDP.
pub const RXD_PKT_IP4: u32 = 1;
/// Packet type: IPv4 with TCP or UDP (UDPCS tells which, with the L4 checksum on).
pub const RXD_PKT_IP4_XDP: u32 = 2;
/// Packet type: IPv6 without TCP or UDP.
pub const RXD_PKT_IP6: u32 = 5;
/// Packet type: IPv6 with TCP or UDP.
pub const RXD_PKT_IP6_XDP: u32 = 6;
/// CRC or alignment error.
pub const RXD_ERR_CE: u32 = 1 << 24;
/// Symbol error.
pub const RXD_ERR_SE: u32 = 1 << 25;
/// Sequence error.
pub const RXD_ERR_SEQ: u32 = 1 << 26;
/// Carrier extension error.
pub const RXD_ERR_CXE: u32 = 1 << 28;
/// TCP/UDP checksum error.
pub const RXD_ERR_TCPE: u32 = 1 << 29;
/// IP checksum error.
pub const RXD_ERR_IPE: u32 = 1 << 30;
/// RX data error.
pub const RXD_ERR_RXE: u32 = 1 << 31;
/// Errors that make a frame unusable (checksum errors are reported, not dropped).
pub const RXD_ERR_FRAME: u32 = RXD_ERR_CE | RXD_ERR_SE | RXD_ERR_SEQ | RXD_ERR_CXE | RXD_ERR_RXE;

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn legacy_tx_offsets_match_datasheet_table_7_36() {
        assert_eq!(offset_of!(LegacyTxDesc, buffer_addr), 0);
        assert_eq!(offset_of!(LegacyTxDesc, length), 8);
        assert_eq!(offset_of!(LegacyTxDesc, cso), 10);
        assert_eq!(offset_of!(LegacyTxDesc, cmd), 11);
        assert_eq!(offset_of!(LegacyTxDesc, status), 12);
        assert_eq!(offset_of!(LegacyTxDesc, css), 13);
        assert_eq!(offset_of!(LegacyTxDesc, special), 14);
    }

    #[test]
    fn context_offsets_match_datasheet_table_7_41() {
        assert_eq!(offset_of!(TxContextDesc, ipcss), 0);
        assert_eq!(offset_of!(TxContextDesc, ipcso), 1);
        assert_eq!(offset_of!(TxContextDesc, ipcse), 2);
        assert_eq!(offset_of!(TxContextDesc, tucss), 4);
        assert_eq!(offset_of!(TxContextDesc, tucso), 5);
        assert_eq!(offset_of!(TxContextDesc, tucse), 6);
        assert_eq!(offset_of!(TxContextDesc, cmd_and_length), 8);
        assert_eq!(offset_of!(TxContextDesc, status), 12);
        assert_eq!(offset_of!(TxContextDesc, hdr_len), 13);
        assert_eq!(offset_of!(TxContextDesc, mss), 14);
    }

    #[test]
    fn data_offsets_match_datasheet_table_7_44() {
        assert_eq!(offset_of!(TxDataDesc, buffer_addr), 0);
        assert_eq!(offset_of!(TxDataDesc, cmd_type_len), 8);
        assert_eq!(offset_of!(TxDataDesc, status), 12);
        assert_eq!(offset_of!(TxDataDesc, popts), 13);
        assert_eq!(offset_of!(TxDataDesc, special), 14);
    }

    #[test]
    fn rx_extended_offsets_match_datasheet_tables_7_9_and_7_10() {
        assert_eq!(offset_of!(RxDescExtRead, buffer_addr), 0);
        assert_eq!(offset_of!(RxDescExtRead, reserved), 8);
        assert_eq!(offset_of!(RxDescExtWb, mrq), 0);
        assert_eq!(offset_of!(RxDescExtWb, rss_or_csum), 4);
        assert_eq!(offset_of!(RxDescExtWb, status_error), RX_WB_STATUS_OFFSET);
        assert_eq!(offset_of!(RxDescExtWb, length), 12);
        assert_eq!(offset_of!(RxDescExtWb, vlan), 14);
    }

    #[test]
    fn bytes_are_little_endian_on_the_wire() {
        let d = LegacyTxDesc {
            buffer_addr: U64::new(0x0102_0304_0506_0708),
            length: U16::new(0x0a0b),
            cso: 0x11,
            cmd: TXD_CMD_EOP | TXD_CMD_IFCS | TXD_CMD_RS,
            status: 0,
            css: 0x22,
            special: U16::new(0x3344),
        };
        assert_eq!(
            d.as_bytes(),
            &[8, 7, 6, 5, 4, 3, 2, 1, 0x0b, 0x0a, 0x11, 0x0b, 0, 0x22, 0x44, 0x33]
        );
        let wb = RxDescExtWb::read_from_bytes(&[
            0, 0, 0, 0, 0, 0, 0, 0, 0x03, 0, 0, 0x80, 0xea, 0x05, 0, 0,
        ])
        .unwrap();
        assert_eq!(wb.status_error.get() & RXD_STAT_DD, RXD_STAT_DD);
        assert_eq!(wb.status_error.get() & RXD_STAT_EOP, RXD_STAT_EOP);
        assert_eq!(wb.status_error.get() & RXD_ERR_RXE, RXD_ERR_RXE);
        assert_eq!(wb.length.get(), 1514);
    }

    #[test]
    fn command_dwords_pack_length_type_and_command() {
        let d = TxDataDesc::cmd_dword(60, TXD_CMD_EOP | TXD_CMD_DEXT);
        assert_eq!(d & LEN_MASK, 60);
        assert_eq!((d >> DTYP_SHIFT) & 0xf, DTYP_DATA);
        assert_eq!((d >> CMD_SHIFT) as u8, TXD_CMD_EOP | TXD_CMD_DEXT);
        // An oversized length cannot spill into DTYP.
        assert_eq!(
            (TxDataDesc::cmd_dword(0xfff_ffff, 0) >> DTYP_SHIFT) & 0xf,
            DTYP_DATA
        );
        let c = TxContextDesc::cmd_dword(9000, TUCMD_TSE | TUCMD_DEXT);
        assert_eq!(c & LEN_MASK, 9000);
        assert_eq!((c >> DTYP_SHIFT) & 0xf, DTYP_CONTEXT);
    }
}
