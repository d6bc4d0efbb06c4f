//! Intel 82576 advanced descriptors (82576 datasheet §7.1.5 receive, §7.2.2 transmit).
//!
//! The 82576 (QEMU `igb`) is driven with advanced descriptors only: QEMU's model emulates
//! neither legacy TX nor legacy RX. All descriptors are 16 bytes; each RX slot is written by
//! the driver in the read format and overwritten by the device in the write-back format.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Advanced transmit data descriptor, read format (82576 §7.2.2.3, table 7-43).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct AdvTxDataDesc {
    /// IOVA of the data buffer.
    pub buffer_addr: U64,
    /// DTALEN in bits 15:0, DTYP (0011) in bits 23:20, DCMD in bits 31:24.
    pub cmd_type_len: U32,
    /// STA (DD) in bits 3:0, IDX in 6:4, CC in 7, POPTS in 13:8, PAYLEN in 31:14.
    pub olinfo_status: U32,
}
const _: () = assert!(core::mem::size_of::<AdvTxDataDesc>() == 16);

/// Mask of DTALEN, the bytes in this descriptor's buffer (82576 §7.2.2.3.1).
pub const ADVTXD_DTALEN_MASK: u32 = 0xffff;
/// DTYP of an advanced data descriptor, in place (bits 23:20 = 0011).
pub const ADVTXD_DTYP_DATA: u32 = 0x3 << 20;
/// DTYP of an advanced context descriptor, in place (bits 23:20 = 0010).
pub const ADVTXD_DTYP_CTXT: u32 = 0x2 << 20;
/// DCMD.EOP: the last descriptor of a packet.
pub const ADVTXD_DCMD_EOP: u32 = 1 << 24;
/// DCMD.IFCS: insert the Ethernet CRC.
pub const ADVTXD_DCMD_IFCS: u32 = 1 << 25;
/// DCMD.RS: write DD back into this descriptor when done.
pub const ADVTXD_DCMD_RS: u32 = 1 << 27;
/// DCMD.DEXT: advanced (not legacy) descriptor; set on every descriptor igb gets.
pub const ADVTXD_DCMD_DEXT: u32 = 1 << 29;
/// DCMD.VLE: insert the VLAN tag of the context descriptor.
pub const ADVTXD_DCMD_VLE: u32 = 1 << 30;
/// DCMD.TSE: TCP segmentation with the context descriptor's MSS and L4LEN.
pub const ADVTXD_DCMD_TSE: u32 = 1 << 31;
/// STA.DD in `olinfo_status`, written back by the device on a descriptor with RS.
pub const ADVTXD_STA_DD: u32 = 1 << 0;
/// Shift of IDX (which of the two contexts applies) in `olinfo_status`.
pub const ADVTXD_IDX_SHIFT: u32 = 4;
/// POPTS.IXSM in place: insert the IPv4 header checksum.
pub const ADVTXD_POPTS_IXSM: u32 = 1 << 8;
/// POPTS.TXSM in place: insert the TCP/UDP checksum.
pub const ADVTXD_POPTS_TXSM: u32 = 1 << 9;
/// Shift of PAYLEN in `olinfo_status`: the packet's length (without the headers under TSO).
pub const ADVTXD_PAYLEN_SHIFT: u32 = 14;
/// PAYLEN is 18 bits wide.
pub const ADVTXD_PAYLEN_MAX: u32 = (1 << 18) - 1;

impl AdvTxDataDesc {
    /// The command dword of a data descriptor: DTALEN, DTYP_DATA, DEXT and `dcmd`.
    pub const fn cmd_dword(len: u32, dcmd: u32) -> u32 {
        (len & ADVTXD_DTALEN_MASK) | ADVTXD_DTYP_DATA | ADVTXD_DCMD_DEXT | (dcmd & 0xff00_0000)
    }

    /// The `olinfo_status` dword: PAYLEN, context index and POPTS (`ADVTXD_POPTS_*`).
    pub const fn olinfo(paylen: u32, idx: u32, popts: u32) -> u32 {
        ((paylen & ADVTXD_PAYLEN_MAX) << ADVTXD_PAYLEN_SHIFT)
            | ((idx & 0x7) << ADVTXD_IDX_SHIFT)
            | (popts & 0x3f00)
    }
}

/// Advanced transmit context descriptor (82576 §7.2.2.2, table 7-40).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct AdvTxContextDesc {
    /// IPLEN in bits 8:0, MACLEN in 15:9, VLAN tag in 31:16.
    pub vlan_macip_lens: U32,
    /// IPsec SA index and launch time: unused, zero.
    pub seqnum_seed: U32,
    /// IPS_ESP_LEN in 8:0, TUCMD in 19:9, DTYP (0010) in 23:20, DEXT in 29.
    pub type_tucmd_mlhl: U32,
    /// IDX in bits 6:4, L4LEN in 15:8, MSS in 31:16.
    pub mss_l4len_idx: U32,
}
const _: () = assert!(core::mem::size_of::<AdvTxContextDesc>() == 16);

/// Shift of MACLEN in `vlan_macip_lens` (IPLEN is bits 8:0).
pub const ADVTXD_MACLEN_SHIFT: u32 = 9;
/// Shift of the VLAN tag in `vlan_macip_lens`.
pub const ADVTXD_VLAN_SHIFT: u32 = 16;
/// TUCMD.IPV4 in place: the packet is IPv4.
pub const ADVTXD_TUCMD_IPV4: u32 = 1 << 10;
/// TUCMD.L4T = TCP in place (00 is UDP).
pub const ADVTXD_TUCMD_L4T_TCP: u32 = 1 << 11;
/// TUCMD.L4T = UDP (the zero value, named for readability).
pub const ADVTXD_TUCMD_L4T_UDP: u32 = 0;
/// Shift of L4LEN in `mss_l4len_idx`.
pub const ADVTXD_L4LEN_SHIFT: u32 = 8;
/// Shift of MSS in `mss_l4len_idx`.
pub const ADVTXD_MSS_SHIFT: u32 = 16;

/// Advanced receive descriptor, read format: what the driver writes (82576 §7.1.5.1,
/// table 7-10).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct AdvRxDescRead {
    /// IOVA of the packet buffer.
    pub pkt_addr: U64,
    /// IOVA of the header buffer (header split only); bit 0 is where DD is written back,
    /// so it must be zero. tenge uses one-buffer descriptors and writes 0.
    pub hdr_addr: U64,
}
const _: () = assert!(core::mem::size_of::<AdvRxDescRead>() == 16);

/// Advanced receive descriptor, write-back format: what the device writes (82576 §7.1.5.2,
/// table 7-11). Overlays [`AdvRxDescRead`] in the same 16 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct AdvRxDescWb {
    /// RSS type in bits 3:0, packet type in bits 16:4, HDR_LEN in 30:21, SPH in 31.
    pub pkt_info: U32,
    /// RSS hash (RXCSUM.PCSD=1), or IP identification (15:0) and packet checksum (31:16).
    pub rss_or_csum: U32,
    /// Extended status in bits 19:0, extended errors in bits 31:20 (`RXD_STAT_*`, `RXD_ERR_*`).
    pub status_error: U32,
    /// PKT_LEN: bytes written to this descriptor's packet buffer.
    pub length: U16,
    /// VLAN tag, valid with `RXD_STAT_VP`.
    pub vlan: U16,
}
const _: () = assert!(core::mem::size_of::<AdvRxDescWb>() == 16);

impl AdvRxDescWb {
    /// The RSS type (`RSS_TYPE_*`), bits 3:0 of the first dword.
    pub const fn rss_type(pkt_info: u32) -> u32 {
        pkt_info & RX_RSS_TYPE_MASK
    }

    /// The packet type (`PKT_TYPE_*`), bits 16:4 of the first dword.
    pub const fn pkt_type(pkt_info: u32) -> u32 {
        (pkt_info >> RX_PKT_TYPE_SHIFT) & RX_PKT_TYPE_MASK
    }
}

/// Byte offset of `status_error` in the write-back: the driver reads this dword first.
pub const RX_WB_STATUS_OFFSET: usize = 8;

/// Mask of the RSS type in `pkt_info`.
pub const RX_RSS_TYPE_MASK: u32 = 0xf;
/// Shift of the packet type in `pkt_info`.
pub const RX_PKT_TYPE_SHIFT: u32 = 4;
/// Mask of the packet type (13 bits) after the shift.
pub const RX_PKT_TYPE_MASK: u32 = 0x1fff;

/// RSS types of the write-back (82576 §7.1.5.2, RSS Type): no hash computed.
pub const RSS_TYPE_NONE: u32 = 0;
/// Hash over IPv4 addresses and TCP ports.
pub const RSS_TYPE_TCP_IPV4: u32 = 1;
/// Hash over IPv4 addresses.
pub const RSS_TYPE_IPV4: u32 = 2;
/// Hash over IPv6 addresses and TCP ports.
pub const RSS_TYPE_TCP_IPV6: u32 = 3;
/// Hash over IPv6 addresses, with extension headers.
pub const RSS_TYPE_IPV6_EX: u32 = 4;
/// Hash over IPv6 addresses.
pub const RSS_TYPE_IPV6: u32 = 5;
/// Hash over IPv6 addresses and TCP ports, with extension headers.
pub const RSS_TYPE_TCP_IPV6_EX: u32 = 6;
/// Hash over IPv4 addresses and UDP ports.
pub const RSS_TYPE_UDP_IPV4: u32 = 7;
/// Hash over IPv6 addresses and UDP ports.
pub const RSS_TYPE_UDP_IPV6: u32 = 8;
/// Hash over IPv6 addresses and UDP ports, with extension headers.
pub const RSS_TYPE_UDP_IPV6_EX: u32 = 9;

/// Packet type bits (82576 §7.1.5.2, Packet Type, with bit 11 clear): IPv4 header.
pub const PKT_TYPE_IPV4: u32 = 1 << 0;
/// IPv4 with options.
pub const PKT_TYPE_IPV4_EX: u32 = 1 << 1;
/// IPv6 header.
pub const PKT_TYPE_IPV6: u32 = 1 << 2;
/// IPv6 with extension headers.
pub const PKT_TYPE_IPV6_EX: u32 = 1 << 3;
/// TCP header.
pub const PKT_TYPE_TCP: u32 = 1 << 4;
/// UDP header.
pub const PKT_TYPE_UDP: u32 = 1 << 5;
/// SCTP header.
pub const PKT_TYPE_SCTP: u32 = 1 << 6;
/// Bit 11 set: the packet type is an ethertype filter index, not the bits above.
pub const PKT_TYPE_ETQF: u32 = 1 << 11;

/// Descriptor done (82576 §7.1.5.2, extended status).
pub const RXD_STAT_DD: u32 = 1 << 0;
/// End of packet: the last descriptor of a frame.
pub const RXD_STAT_EOP: u32 = 1 << 1;
/// VLAN packet: the tag was stripped into `vlan`.
pub const RXD_STAT_VP: u32 = 1 << 3;
/// UDP checksum calculated.
pub const RXD_STAT_UDPCS: u32 = 1 << 4;
/// L4 (TCP or UDP) checksum calculated.
pub const RXD_STAT_L4CS: u32 = 1 << 5;
/// IPv4 header checksum calculated.
pub const RXD_STAT_IPCS: u32 = 1 << 6;
/// Passed an exact unicast filter (PIF clear) or not.
pub const RXD_STAT_PIF: u32 = 1 << 7;
/// CRC or alignment error.
pub const RXD_ERR_CE: u32 = 1 << 24;
/// Symbol error.
pub const RXD_ERR_SE: u32 = 1 << 25;
/// Sequence error.
pub const RXD_ERR_SEQ: u32 = 1 << 26;
/// Carrier extension error.
pub const RXD_ERR_CXE: u32 = 1 << 28;
/// TCP/UDP checksum error.
pub const RXD_ERR_L4E: u32 = 1 << 29;
/// IPv4 header checksum error.
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
    fn tx_data_offsets_match_datasheet_table_7_43() {
        assert_eq!(offset_of!(AdvTxDataDesc, buffer_addr), 0);
        assert_eq!(offset_of!(AdvTxDataDesc, cmd_type_len), 8);
        assert_eq!(offset_of!(AdvTxDataDesc, olinfo_status), 12);
    }

    #[test]
    fn tx_context_offsets_match_datasheet_table_7_40() {
        assert_eq!(offset_of!(AdvTxContextDesc, vlan_macip_lens), 0);
        assert_eq!(offset_of!(AdvTxContextDesc, seqnum_seed), 4);
        assert_eq!(offset_of!(AdvTxContextDesc, type_tucmd_mlhl), 8);
        assert_eq!(offset_of!(AdvTxContextDesc, mss_l4len_idx), 12);
    }

    #[test]
    fn rx_offsets_match_datasheet_tables_7_10_and_7_11() {
        assert_eq!(offset_of!(AdvRxDescRead, pkt_addr), 0);
        assert_eq!(offset_of!(AdvRxDescRead, hdr_addr), 8);
        assert_eq!(offset_of!(AdvRxDescWb, pkt_info), 0);
        assert_eq!(offset_of!(AdvRxDescWb, rss_or_csum), 4);
        assert_eq!(offset_of!(AdvRxDescWb, status_error), RX_WB_STATUS_OFFSET);
        assert_eq!(offset_of!(AdvRxDescWb, length), 12);
        assert_eq!(offset_of!(AdvRxDescWb, vlan), 14);
    }

    #[test]
    fn tx_data_dwords_pack_as_linux_and_freebsd_igb_expect() {
        // The values igb drivers put in a 60-byte frame's descriptor: 0x2b30003c with
        // EOP|IFCS|RS, PAYLEN 60 at bit 14.
        let cmd = AdvTxDataDesc::cmd_dword(60, ADVTXD_DCMD_EOP | ADVTXD_DCMD_IFCS | ADVTXD_DCMD_RS);
        assert_eq!(cmd, 0x2b30_003c);
        assert_eq!(AdvTxDataDesc::olinfo(60, 0, 0), 60 << 14);
        // A length over 16 bits cannot spill into DTYP; PAYLEN over 18 bits is cut.
        assert_eq!(
            AdvTxDataDesc::cmd_dword(0x1_0000, 0) & 0x00f0_0000,
            ADVTXD_DTYP_DATA
        );
        assert_eq!(AdvTxDataDesc::olinfo(1 << 18, 0, 0), 0);
        let o = AdvTxDataDesc::olinfo(100, 1, ADVTXD_POPTS_IXSM | ADVTXD_POPTS_TXSM);
        assert_eq!(o, (100 << 14) | (1 << 4) | 0x300);
    }

    #[test]
    fn rx_write_back_decodes_from_little_endian_bytes() {
        // RSS type 7 (UDP/IPv4), packet type IPv4|UDP; hash 0x12345678; DD|EOP|IPCS|L4CS|UDPCS
        // and L4E; 1514 bytes; VLAN 5.
        let pkt_info: u32 = 7 | ((PKT_TYPE_IPV4 | PKT_TYPE_UDP) << 4);
        let mut bytes = [0u8; 16];
        bytes[0..4].copy_from_slice(&pkt_info.to_le_bytes());
        bytes[4..8].copy_from_slice(&0x1234_5678u32.to_le_bytes());
        let st = RXD_STAT_DD | RXD_STAT_EOP | RXD_STAT_IPCS | RXD_STAT_L4CS | RXD_STAT_UDPCS;
        bytes[8..12].copy_from_slice(&(st | RXD_ERR_L4E).to_le_bytes());
        bytes[12..14].copy_from_slice(&1514u16.to_le_bytes());
        bytes[14..16].copy_from_slice(&5u16.to_le_bytes());
        let wb = AdvRxDescWb::read_from_bytes(&bytes).unwrap();
        assert_eq!(AdvRxDescWb::rss_type(wb.pkt_info.get()), RSS_TYPE_UDP_IPV4);
        assert_eq!(
            AdvRxDescWb::pkt_type(wb.pkt_info.get()),
            PKT_TYPE_IPV4 | PKT_TYPE_UDP
        );
        assert_eq!(wb.rss_or_csum.get(), 0x1234_5678);
        assert_eq!(wb.status_error.get() & RXD_ERR_FRAME, 0);
        assert_eq!(wb.status_error.get() & RXD_ERR_L4E, RXD_ERR_L4E);
        assert_eq!(wb.length.get(), 1514);
        assert_eq!(wb.vlan.get(), 5);
    }
}
