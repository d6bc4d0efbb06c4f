//! 82576 register offsets (bytes into BAR0) and bit fields, named as in the 82576 datasheet
//! (Intel 82576EB GbE Controller Datasheet, chapter 8 "Programming Interface").
//!
//! Bit constants are prefixed with their register (`RCTL_EN` is RCTL bit EN). Registers the
//! 82576 keeps at the 8254x offsets (statistics, RAL/RAH, MTA) are shared with
//! [`crate::e1000e`], whose sequences for them run on the 82576 unchanged.
//!
//! Values were cross-checked against QEMU 10's model (`hw/net/igb_regs.h`,
//! `hw/net/igb_core.c`). QEMU takes 4-byte accesses only (`igb_mmio_ops`), which is all the
//! [`crate::Mmio`] trait does.

#![allow(missing_docs)] // The names are the datasheet's; each group is documented.

// ---------------------------------------------------------------------------------------
// General registers (82576 §8.2)
// ---------------------------------------------------------------------------------------

/// Device Control (82576 §8.2.1).
pub const CTRL: u32 = 0x0_0000;
/// Device Status (82576 §8.2.2).
pub const STATUS: u32 = 0x0_0008;
/// EEPROM/Flash Control (82576 §8.2.3).
pub const EECD: u32 = 0x0_0010;
/// Extended Device Control (82576 §8.2.5).
pub const CTRL_EXT: u32 = 0x0_0018;
/// MDI Control: PHY register access (82576 §8.2.4).
pub const MDIC: u32 = 0x0_0020;
/// VLAN Ether Type (82576 §8.2.8).
pub const VET: u32 = 0x0_0038;

// CTRL bits (82576 §8.2.1).
pub const CTRL_FD: u32 = 1 << 0;
/// Blocks new master requests, so a reset finds no DMA in flight.
pub const CTRL_GIO_MASTER_DISABLE: u32 = 1 << 2;
/// Link reset: holds the link down while set (set at power-on).
pub const CTRL_LRST: u32 = 1 << 3;
pub const CTRL_ASDE: u32 = 1 << 5;
/// Set link up: the MAC takes the link the PHY reports.
pub const CTRL_SLU: u32 = 1 << 6;
pub const CTRL_ILOS: u32 = 1 << 7;
pub const CTRL_FRCSPD: u32 = 1 << 11;
pub const CTRL_FRCDPX: u32 = 1 << 12;
/// Device reset: self-clearing, resets everything but PCI configuration.
pub const CTRL_RST: u32 = 1 << 26;
/// VLAN mode: strip VLAN tags on receive.
pub const CTRL_VME: u32 = 1 << 30;
pub const CTRL_PHY_RST: u32 = 1 << 31;

// STATUS bits (82576 §8.2.2): the same as the 82574's.
pub const STATUS_FD: u32 = 1 << 0;
pub const STATUS_LU: u32 = 1 << 1;
pub const STATUS_SPEED_SHIFT: u32 = 6;
pub const STATUS_SPEED_MASK: u32 = 0b11 << STATUS_SPEED_SHIFT;
pub const STATUS_SPEED_1000: u32 = 0b10 << STATUS_SPEED_SHIFT;
pub const STATUS_PHYRA: u32 = 1 << 10;
pub const STATUS_GIO_MASTER_ENABLE: u32 = 1 << 19;

// EECD bits (82576 §8.2.3).
pub const EECD_PRES: u32 = 1 << 8;
/// NVM auto-read done. QEMU's igb never sets it (`igb_mac_reg_init`), so [`super::reset`]
/// waits for it only briefly and goes on, as Linux's igb does.
pub const EECD_AUTO_RD: u32 = 1 << 9;

// MDIC fields (82576 §8.2.4).
pub const MDIC_DATA_MASK: u32 = 0xFFFF;
pub const MDIC_REGADD_SHIFT: u32 = 16;
pub const MDIC_PHYADD_SHIFT: u32 = 21;
pub const MDIC_OP_WRITE: u32 = 0b01 << 26;
pub const MDIC_OP_READ: u32 = 0b10 << 26;
/// Ready: the PHY access completed.
pub const MDIC_R: u32 = 1 << 28;
/// Error: the PHY did not answer or refused the register.
pub const MDIC_E: u32 = 1 << 30;
/// The internal PHY's MDIO address (QEMU answers only address 1: `igb_set_mdic`).
pub const PHY_ADDR: u32 = 1;

// PHY registers (IEEE 802.3 clause 22, 82576 §8.24).
/// PHY Control (BMCR).
pub const PHY_CTRL: u32 = 0;
pub const PHY_CTRL_RESTART_AUTONEG: u32 = 1 << 9;
pub const PHY_CTRL_AUTONEG_EN: u32 = 1 << 12;
pub const PHY_CTRL_SPEED_1000: u32 = 1 << 6;
pub const PHY_CTRL_FULL_DUPLEX: u32 = 1 << 8;

// ---------------------------------------------------------------------------------------
// Interrupts (82576 §8.8)
// ---------------------------------------------------------------------------------------

pub const ICR: u32 = 0x0_00C0;
pub const IMS: u32 = 0x0_00D0;
pub const IMC: u32 = 0x0_00D8;
/// Extended Interrupt Mask Clear (82576 §8.8.7).
pub const EIMC: u32 = 0x0_1528;
/// Extended Interrupt Cause (82576 §8.8.4).
pub const EICR: u32 = 0x0_1580;
pub const IMC_ALL: u32 = 0xFFFF_FFFF;
/// Every extended cause bit QEMU honours in EIMC (`E1000_EICR_MSIX_MASK`, 25 bits).
pub const EIMC_ALL: u32 = 0x01FF_FFFF;
/// Extended Interrupt Mask Set (82576 §8.8).
pub const EIMS: u32 = 0x0_1524;
/// Extended Interrupt Auto Clear (82576 §8.8).
pub const EIAC: u32 = 0x0_152C;
/// General Purpose Interrupt Enable (82576 §8.8).
pub const GPIE: u32 = 0x0_1514;
/// GPIE: MSI-X mode, the extended causes are per vector (bit n of EICR = vector n).
pub const GPIE_MSIX_MODE: u32 = 1 << 4;
/// GPIE: PBA support (the MSI-X pending bits).
pub const GPIE_PBA: u32 = 1 << 31;
/// Interrupt Vector Allocation for queues n and n + 8 (82576 §8.8, IVAR): `IVAR0 + 4 n`
/// holds RX queue n (bits 7:0), TX queue n (15:8), RX queue n + 8 (23:16), TX queue n + 8
/// (31:24).
pub const IVAR0: u32 = 0x0_1700;
/// Interrupt Vector Allocation for the other causes (82576 §8.8, IVAR_MISC): bits 15:8.
pub const IVAR_MISC: u32 = 0x0_1740;
/// An IVAR entry's valid bit.
pub const IVAR_VALID: u32 = 0x80;
/// ICR: link status change.
pub const ICR_LSC: u32 = 1 << 2;

/// Extended Interrupt Throttle Rate of MSI-X vector `n` (82576 §8.8, EITR): the interval in
/// microseconds in bits 14:2.
#[allow(non_snake_case)]
pub const fn EITR(n: u32) -> u32 {
    0x0_1680 + 4 * n
}

// ---------------------------------------------------------------------------------------
// Receive (82576 §8.10)
// ---------------------------------------------------------------------------------------

/// Receive Control (82576 §8.10.1).
pub const RCTL: u32 = 0x0_0100;
pub const RCTL_EN: u32 = 1 << 1;
pub const RCTL_SBP: u32 = 1 << 2;
pub const RCTL_UPE: u32 = 1 << 3;
pub const RCTL_MPE: u32 = 1 << 4;
/// Long packet enable: frames up to RLPML bytes.
pub const RCTL_LPE: u32 = 1 << 5;
/// Descriptor type: must be 00 on the 82576 (the type is per queue, in SRRCTL).
pub const RCTL_DTYP_MASK: u32 = 0b11 << 10;
pub const RCTL_BAM: u32 = 1 << 15;
/// Strip the Ethernet CRC.
pub const RCTL_SECRC: u32 = 1 << 26;

/// Receive Checksum Control (82576 §8.10.13).
pub const RXCSUM: u32 = 0x0_5000;
pub const RXCSUM_IPOFLD: u32 = 1 << 8;
pub const RXCSUM_TUOFLD: u32 = 1 << 9;
/// Packet checksum disable: the write-back carries the RSS hash instead of the IP ID and
/// packet checksum; QEMU runs RSS only with it set (`igb_rss_enabled`).
pub const RXCSUM_PCSD: u32 = 1 << 13;
/// Receive Long Packet Maximum Length (82576 §8.10.4).
pub const RLPML: u32 = 0x0_5004;
/// Multicast Table Array: 128 registers.
pub const MTA: u32 = 0x0_5200;
pub const MTA_LEN: u32 = 128;
/// Receive Address Low/High 0 (82576 §8.10.16): 16 entries here, 8 more at RA2.
pub const RAL0: u32 = 0x0_5400;
pub const RAH0: u32 = 0x0_5404;
pub const RAH_AV: u32 = 1 << 31;
/// VLAN Filter Table Array: 128 registers.
pub const VFTA: u32 = 0x0_5600;
/// Multiple Receive Queues Command (82576 §8.10.19).
pub const MRQC: u32 = 0x0_5818;
/// Redirection table: 32 registers of 4 one-byte entries (82576 §8.10.20).
pub const RETA: u32 = 0x0_5C00;
pub const RETA_ENTRIES: usize = 128;
/// RSS Random Key: 10 registers (82576 §8.10.21).
pub const RSSRK: u32 = 0x0_5C80;
pub const RSS_KEY_LEN: usize = 40;

// MRQC fields (82576 §8.10.19).
/// Multiple receive queues by RSS (bits 2:0 = 010; 011 and 101 are VMDq modes).
pub const MRQC_ENABLE_RSS: u32 = 0b010;
pub const MRQC_ENABLE_MASK: u32 = 0b111;
pub const MRQC_TCPIPV4: u32 = 1 << 16;
pub const MRQC_IPV4: u32 = 1 << 17;
/// TCP/IPv6 with extension headers. QEMU tests this bit, not bit 21, for every TCP/IPv6
/// frame and reports RSS type 6 (`igb_rss_get_hash_type`); set both.
pub const MRQC_TCPIPV6EX: u32 = 1 << 18;
pub const MRQC_IPV6EX: u32 = 1 << 19;
pub const MRQC_IPV6: u32 = 1 << 20;
pub const MRQC_TCPIPV6: u32 = 1 << 21;
pub const MRQC_UDPIPV4: u32 = 1 << 22;
pub const MRQC_UDPIPV6: u32 = 1 << 23;
pub const MRQC_UDPIPV6EX: u32 = 1 << 24;
/// The queue bits of a redirection table entry (QEMU `E1000_RSS_QUEUE`: entry & 0xF).
pub const RETA_QUEUE_MASK: u8 = 0x0F;

// Per-queue receive registers (82576 §8.10.5-8.10.10): queue n's block at 0xC000 + 0x40 n.
// (Queues 0-3 are also reachable at the 82575's 0x2800 + 0x100 n aliases.)
pub const RDBAL0: u32 = 0x0_C000;
pub const RDBAH0: u32 = 0x0_C004;
pub const RDLEN0: u32 = 0x0_C008;
/// Split and Replication Receive Control (82576 §8.10.7).
pub const SRRCTL0: u32 = 0x0_C00C;
pub const RDH0: u32 = 0x0_C010;
pub const RDT0: u32 = 0x0_C018;
/// Receive Descriptor Control (82576 §8.10.10).
pub const RXDCTL0: u32 = 0x0_C028;

/// SRRCTL.BSIZEPACKET: packet buffer size in 1 KiB units, bits 6:0.
pub const SRRCTL_BSIZEPKT_SHIFT: u32 = 10;
pub const SRRCTL_BSIZEPKT_MASK: u32 = 0x7F;
/// SRRCTL.DESCTYPE = 001: advanced descriptors, one buffer.
pub const SRRCTL_DESCTYPE_ADV_ONEBUF: u32 = 0b001 << 25;
/// Drop frames for this queue when it has no descriptors instead of stalling the others.
pub const SRRCTL_DROP_EN: u32 = 1 << 31;

/// RXDCTL/TXDCTL.ENABLE: the queue takes part (82576 §8.10.10, §8.12.13). Only queue 0 has
/// it at reset (QEMU `igb_mac_reg_init`).
pub const XDCTL_ENABLE: u32 = 1 << 25;
/// WTHRESH field shift (bits 20:16).
pub const XDCTL_WTHRESH_SHIFT: u32 = 16;

// ---------------------------------------------------------------------------------------
// Transmit (82576 §8.12)
// ---------------------------------------------------------------------------------------

/// Transmit Control (82576 §8.12.1).
pub const TCTL: u32 = 0x0_0400;
pub const TCTL_EN: u32 = 1 << 1;
pub const TCTL_PSP: u32 = 1 << 3;
pub const TCTL_CT_SHIFT: u32 = 4;
pub const TCTL_COLD_SHIFT: u32 = 12;
/// Retransmit on late collision.
pub const TCTL_RTLC: u32 = 1 << 24;
/// Transmit IPG (82576 §8.12.2).
pub const TIPG: u32 = 0x0_0410;

pub const TDBAL0: u32 = 0x0_E000;
pub const TDBAH0: u32 = 0x0_E004;
pub const TDLEN0: u32 = 0x0_E008;
pub const TDH0: u32 = 0x0_E010;
pub const TDT0: u32 = 0x0_E018;
/// Transmit Descriptor Control (82576 §8.12.13).
pub const TXDCTL0: u32 = 0x0_E028;
/// TX descriptor completion write-back address: bit 0 turns head write-back on instead of
/// DD write-back; tenge keeps it 0.
pub const TDWBAL0: u32 = 0x0_E038;
pub const TDWBAH0: u32 = 0x0_E03C;

/// Queue pairs (82576 §7.1.1: 16 RX and 16 TX queues).
pub const QUEUES: u32 = 16;

/// The register of queue `queue` whose queue-0 offset is `reg0`: the 82576 lays the 16
/// queues' blocks 0x40 apart (QEMU `igb_mq_queue_idx`: (reg - reg0) / 16 dwords).
pub const fn queue_reg(reg0: u32, queue: u32) -> u32 {
    reg0 + 0x40 * queue
}

/// Receive Address Low of entry `n` (0..=15).
pub const fn ral(n: u32) -> u32 {
    RAL0 + 8 * n
}
/// Receive Address High of entry `n` (0..=15).
pub const fn rah(n: u32) -> u32 {
    RAH0 + 8 * n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_blocks_are_0x40_apart_as_in_the_datasheet() {
        // 82576 §8.1.3 register summary: RDBAL15 = 0xC3C0, TDT15 = 0xE3D8.
        assert_eq!(queue_reg(RDBAL0, 15), 0xC3C0);
        assert_eq!(queue_reg(TDT0, 15), 0xE3D8);
        assert_eq!(queue_reg(RXDCTL0, 1), 0xC068);
    }

    #[test]
    fn shared_8254x_registers_sit_where_the_e1000e_map_has_them() {
        use crate::e1000e::regs as e;
        assert_eq!(
            (RAL0, RAH0, MTA, RXCSUM, MRQC, RETA, RSSRK),
            (
                e::RAL0,
                e::RAH0,
                e::MTA,
                e::RXCSUM,
                e::MRQC,
                e::RETA,
                e::RSSRK
            )
        );
        assert_eq!(
            (CTRL_RST, STATUS_LU, RAH_AV),
            (e::CTRL_RST, e::STATUS_LU, e::RAH_AV)
        );
    }
}
