//! 82574L register offsets (bytes into BAR0) and bit fields, named as in the 82574 datasheet
//! (Intel 82574 GbE Controller Family Datasheet, chapter 10 "Programming Interface").
//!
//! Bit constants are prefixed with their register (`RCTL_EN` is RCTL bit EN). Multi-bit
//! fields have a `_SHIFT` and, where useful, a `_MASK` (already shifted).
//!
//! Values were cross-checked against QEMU 10.0's model (`hw/net/e1000x_regs.h`,
//! `hw/net/e1000_regs.h`).

#![allow(missing_docs)] // The names are the datasheet's; each group is documented.

// ---------------------------------------------------------------------------------------
// General registers (82574 §10.2.2)
// ---------------------------------------------------------------------------------------

/// Device Control (82574 §10.2.2.1).
pub const CTRL: u32 = 0x0_0000;
/// Device Status (read-only).
pub const STATUS: u32 = 0x0_0008;
/// EEPROM/Flash Control.
pub const EECD: u32 = 0x0_0010;
/// EEPROM Read: software reads one NVM word through it.
pub const EERD: u32 = 0x0_0014;
/// Extended Device Control.
pub const CTRL_EXT: u32 = 0x0_0018;
/// MDI Control: access to the internal PHY.
pub const MDIC: u32 = 0x0_0020;
/// Flow Control Address Low/High and Type.
pub const FCAL: u32 = 0x0_0028;
pub const FCAH: u32 = 0x0_002C;
pub const FCT: u32 = 0x0_0030;
/// VLAN Ether Type.
pub const VET: u32 = 0x0_0038;
/// Flow Control Transmit Timer Value.
pub const FCTTV: u32 = 0x0_0170;
/// LED Control.
pub const LEDCTL: u32 = 0x0_0E00;
/// Packet Buffer Allocation.
pub const PBA: u32 = 0x0_1000;
/// PCIe control (3GIO Control Register).
pub const GCR: u32 = 0x0_5B00;
/// Software Semaphore.
pub const SWSM: u32 = 0x0_5B50;
/// Firmware Semaphore.
pub const FWSM: u32 = 0x0_5B54;

// CTRL bits.
/// Full duplex (when forced).
pub const CTRL_FD: u32 = 1 << 0;
/// GIO Master Disable: stop issuing new PCIe master requests (DMA); STATUS bit 19 reads 0
/// once none are pending.
pub const CTRL_GIO_MASTER_DISABLE: u32 = 1 << 2;
/// Link Reset. Must be 0 for the copper PHY to establish link.
pub const CTRL_LRST: u32 = 1 << 3;
/// Auto-Speed Detection Enable.
pub const CTRL_ASDE: u32 = 1 << 5;
/// Set Link Up: lets the MAC follow the PHY's link indication.
pub const CTRL_SLU: u32 = 1 << 6;
/// Invert Loss-of-Signal; 0 for the internal copper PHY.
pub const CTRL_ILOS: u32 = 1 << 7;
/// Speed selection (when forced), bits 9:8.
pub const CTRL_SPEED_SHIFT: u32 = 8;
pub const CTRL_SPEED_MASK: u32 = 0b11 << CTRL_SPEED_SHIFT;
pub const CTRL_SPEED_10: u32 = 0b00 << CTRL_SPEED_SHIFT;
pub const CTRL_SPEED_100: u32 = 0b01 << CTRL_SPEED_SHIFT;
pub const CTRL_SPEED_1000: u32 = 0b10 << CTRL_SPEED_SHIFT;
/// Force Speed.
pub const CTRL_FRCSPD: u32 = 1 << 11;
/// Force Duplex.
pub const CTRL_FRCDPX: u32 = 1 << 12;
/// Software-definable pin 0/2 values.
pub const CTRL_SWDPIN0: u32 = 1 << 18;
pub const CTRL_SWDPIN2: u32 = 1 << 20;
/// Device Reset: a global reset of everything but PCI configuration space. Self-clearing.
pub const CTRL_RST: u32 = 1 << 26;
/// Receive / Transmit Flow Control Enable.
pub const CTRL_RFCE: u32 = 1 << 27;
pub const CTRL_TFCE: u32 = 1 << 28;
/// VLAN Mode Enable.
pub const CTRL_VME: u32 = 1 << 30;
/// PHY Reset.
pub const CTRL_PHY_RST: u32 = 1 << 31;

// STATUS bits.
/// Full duplex.
pub const STATUS_FD: u32 = 1 << 0;
/// Link Up.
pub const STATUS_LU: u32 = 1 << 1;
/// Transmission paused by flow control.
pub const STATUS_TXOFF: u32 = 1 << 4;
/// Link speed, bits 7:6: 00 = 10, 01 = 100, 1x = 1000 Mb/s.
pub const STATUS_SPEED_SHIFT: u32 = 6;
pub const STATUS_SPEED_MASK: u32 = 0b11 << STATUS_SPEED_SHIFT;
pub const STATUS_SPEED_10: u32 = 0b00 << STATUS_SPEED_SHIFT;
pub const STATUS_SPEED_100: u32 = 0b01 << STATUS_SPEED_SHIFT;
pub const STATUS_SPEED_1000: u32 = 0b10 << STATUS_SPEED_SHIFT;
/// Auto-speed detection value, bits 9:8.
pub const STATUS_ASDV_SHIFT: u32 = 8;
pub const STATUS_ASDV_1000: u32 = 0b10 << STATUS_ASDV_SHIFT;
/// PHY Reset Asserted.
pub const STATUS_PHYRA: u32 = 1 << 10;
/// GIO Master Enable: 1 while the device may still issue PCIe master requests.
pub const STATUS_GIO_MASTER_ENABLE: u32 = 1 << 19;

// EECD bits.
/// NVM present.
pub const EECD_PRES: u32 = 1 << 8;
/// NVM auto-read done: the device finished loading its configuration from the NVM after a
/// reset.
pub const EECD_AUTO_RD: u32 = 1 << 9;

// EERD fields (82574 layout; older 8254x parts put DONE at bit 4 and ADDR at bit 8).
/// Start a read.
pub const EERD_START: u32 = 1 << 0;
/// The read is done and DATA is valid.
pub const EERD_DONE: u32 = 1 << 1;
/// NVM word address, bits 15:2.
pub const EERD_ADDR_SHIFT: u32 = 2;
pub const EERD_ADDR_MASK: u32 = 0x3FFF;
/// The word read, bits 31:16.
pub const EERD_DATA_SHIFT: u32 = 16;

// CTRL_EXT bits.
/// Speed Select Bypass.
pub const CTRL_EXT_SPD_BYPS: u32 = 1 << 15;
/// Interrupt Acknowledge Auto-Mask Enable.
pub const CTRL_EXT_IAME: u32 = 1 << 27;
/// Driver Loaded: tells manageability firmware a driver owns the device.
pub const CTRL_EXT_DRV_LOAD: u32 = 1 << 28;
/// PBA Clear (MSI-X).
pub const CTRL_EXT_PBA_CLR: u32 = 1 << 31;

// MDIC fields.
pub const MDIC_DATA_MASK: u32 = 0xFFFF;
pub const MDIC_REGADD_SHIFT: u32 = 16;
pub const MDIC_PHYADD_SHIFT: u32 = 21;
pub const MDIC_OP_WRITE: u32 = 0b01 << 26;
pub const MDIC_OP_READ: u32 = 0b10 << 26;
pub const MDIC_R: u32 = 1 << 28;
pub const MDIC_I: u32 = 1 << 29;
pub const MDIC_E: u32 = 1 << 30;

// NVM layout.
/// Words 0..=2 hold the MAC address, each word little-endian.
pub const NVM_MAC_WORD0: u16 = 0x00;
/// Checksum word: words 0x00..=0x3F sum to [`NVM_SUM`].
pub const NVM_CHECKSUM_WORD: u16 = 0x3F;
pub const NVM_SUM: u16 = 0xBABA;

// ---------------------------------------------------------------------------------------
// Interrupt registers (82574 §10.2.4)
// ---------------------------------------------------------------------------------------

/// Interrupt Cause Read (read-to-clear).
pub const ICR: u32 = 0x0_00C0;
/// Interrupt Throttling Rate (82574 §10.2.4.2), in 256 ns units.
pub const ITR: u32 = 0x0_00C4;
/// Interrupt Cause Set.
pub const ICS: u32 = 0x0_00C8;
/// Interrupt Mask Set/Read.
pub const IMS: u32 = 0x0_00D0;
/// Interrupt Mask Clear (write-only): writing 1s masks those causes.
pub const IMC: u32 = 0x0_00D8;
/// Interrupt Acknowledge Auto-Mask.
pub const IAM: u32 = 0x0_00E0;
/// Extended Interrupt Auto Clear.
pub const EIAC: u32 = 0x0_00DC;
/// Interrupt Vector Allocation (MSI-X).
pub const IVAR: u32 = 0x0_00E4;
/// Extended Interrupt Throttling Rate for MSI-X vector `n` (0..=4).
#[allow(non_snake_case)]
pub const fn EITR(n: u32) -> u32 {
    0x0_00E8 + 4 * n
}

/// Every interrupt cause; written to IMC to mask all.
pub const IMC_ALL: u32 = 0xFFFF_FFFF;

// ICR/ICS/IMS/IMC cause bits.
pub const ICR_TXDW: u32 = 1 << 0;
pub const ICR_TXQE: u32 = 1 << 1;
pub const ICR_LSC: u32 = 1 << 2;
pub const ICR_RXDMT0: u32 = 1 << 4;
pub const ICR_RXO: u32 = 1 << 6;
pub const ICR_RXT0: u32 = 1 << 7;
pub const ICR_MDAC: u32 = 1 << 9;
pub const ICR_SRPD: u32 = 1 << 16;
pub const ICR_ACK: u32 = 1 << 17;
pub const ICR_RXQ0: u32 = 1 << 20;
pub const ICR_RXQ1: u32 = 1 << 21;
pub const ICR_TXQ0: u32 = 1 << 22;
pub const ICR_TXQ1: u32 = 1 << 23;
pub const ICR_OTHER: u32 = 1 << 24;
pub const ICR_INT_ASSERTED: u32 = 1 << 31;

// ---------------------------------------------------------------------------------------
// Receive registers (82574 §10.2, receive register descriptions)
// ---------------------------------------------------------------------------------------

/// Receive Control.
pub const RCTL: u32 = 0x0_0100;
/// Flow Control Receive Threshold Low/High.
pub const FCRTL: u32 = 0x0_2160;
pub const FCRTH: u32 = 0x0_2168;
/// Packet Split Receive Control.
pub const PSRCTL: u32 = 0x0_2170;
/// Receive Descriptor Base Address Low/High, queue 0.
pub const RDBAL: u32 = 0x0_2800;
pub const RDBAH: u32 = 0x0_2804;
/// Receive Descriptor Ring Length in bytes, queue 0 (a multiple of 128).
pub const RDLEN: u32 = 0x0_2808;
/// Receive Descriptor Head/Tail, queue 0.
pub const RDH: u32 = 0x0_2810;
pub const RDT: u32 = 0x0_2818;
/// Receive Interrupt Packet Delay Timer.
pub const RDTR: u32 = 0x0_2820;
/// Receive Descriptor Control, queue 0.
pub const RXDCTL: u32 = 0x0_2828;
/// Receive Interrupt Absolute Delay Timer.
pub const RADV: u32 = 0x0_282C;
/// Queue 1 ring registers.
pub const RDBAL1: u32 = 0x0_2900;
pub const RDBAH1: u32 = 0x0_2904;
pub const RDLEN1: u32 = 0x0_2908;
pub const RDH1: u32 = 0x0_2910;
pub const RDT1: u32 = 0x0_2918;
pub const RXDCTL1: u32 = 0x0_2928;
/// Receive Small Packet Detect Interrupt.
pub const RSRPD: u32 = 0x0_2C00;
/// Receive ACK Interrupt Delay.
pub const RAID: u32 = 0x0_2C08;
/// Receive Checksum Control.
pub const RXCSUM: u32 = 0x0_5000;
/// Receive Filter Control.
pub const RFCTL: u32 = 0x0_5008;
/// Multicast Table Array: 128 registers from here (4096 hash bits).
pub const MTA: u32 = 0x0_5200;
pub const MTA_LEN: u32 = 128;
/// Receive Address Low/High, entry 0 ([`RAR_ENTRIES`] entries of 8 bytes from here).
pub const RAL0: u32 = 0x0_5400;
pub const RAH0: u32 = 0x0_5404;
/// Receive address (RAL/RAH) pairs: 16 on the 82574 (0x05400 + 8*n, n = 0..=15), entry 0
/// holding the station address. QEMU's e1000e compares the same 16 (`e1000x_rx_group_filter`
/// walks `RA` to `RA + 32` registers).
pub const RAR_ENTRIES: u32 = 16;
/// VLAN Filter Table Array: 128 registers.
pub const VFTA: u32 = 0x0_5600;
/// Multiple Receive Queues Command (RSS).
pub const MRQC: u32 = 0x0_5818;
/// Redirection Table: 32 registers of four 8-bit entries, entry n in byte n % 4 of
/// register n / 4 (82574 §10.2.5.16); an entry's bit 7 is the queue.
pub const RETA: u32 = 0x0_5C00;
/// Entries in the redirection table, indexed by the hash's low 7 bits.
pub const RETA_ENTRIES: usize = 128;
/// The queue bit of a redirection table entry (82574 §7.1.1.7: "bit 7 selects the queue";
/// QEMU `E1000_RSS_QUEUE`).
pub const RETA_QUEUE1: u8 = 1 << 7;
/// RSS Random Key: 10 registers, key byte n in byte n % 4 of register n / 4 (82574
/// §10.2.5.17).
pub const RSSRK: u32 = 0x0_5C80;
/// Bytes in the RSS key.
pub const RSS_KEY_LEN: usize = 40;

/// Receive and transmit queues of the 82574 (§7.1.1.7 and §7.2.9: two of each).
pub const QUEUES: u32 = 2;

/// The register of queue `queue` whose queue-0 offset is `reg0`: the queue-1 block sits
/// 0x100 above queue 0's (RDBAL1 = RDBAL + 0x100, TDBAL1 = TDBAL + 0x100, TARC1 = TARC0 +
/// 0x100; QEMU `e1000e_mq_queue_idx`).
pub const fn queue_reg(reg0: u32, queue: u32) -> u32 {
    reg0 + 0x100 * queue
}

/// Receive Address Low of entry `n` (0..=15).
pub const fn ral(n: u32) -> u32 {
    RAL0 + 8 * n
}
/// Receive Address High of entry `n` (0..=15).
pub const fn rah(n: u32) -> u32 {
    RAH0 + 8 * n
}

// MRQC fields (82574 §10.2.5.15).
/// Multiple receive queues by RSS (bits 1:0 = 01).
pub const MRQC_RSS: u32 = 0b01;
/// Hash TCP over IPv4 (source and destination address and port).
pub const MRQC_TCPIPV4: u32 = 1 << 16;
/// Hash IPv4 (source and destination address).
pub const MRQC_IPV4: u32 = 1 << 17;
/// Hash TCP over IPv6 (with the extension headers' addresses where present).
pub const MRQC_TCPIPV6: u32 = 1 << 18;
/// Hash IPv6 with the extension headers' addresses where present.
pub const MRQC_IPV6EX: u32 = 1 << 19;
/// Hash IPv6 (source and destination address).
pub const MRQC_IPV6: u32 = 1 << 20;

// RSS type in bits 3:0 of an extended write-back's MRQ field (82574 §7.1.5.2, table 7-11).
/// No hash computed (not IP, or a type MRQC does not enable).
pub const MRQ_RSS_TYPE_NONE: u32 = 0;
/// Hashed as TCP/IPv4.
pub const MRQ_RSS_TYPE_TCPIPV4: u32 = 1;
/// Hashed as IPv4.
pub const MRQ_RSS_TYPE_IPV4: u32 = 2;
/// Hashed as TCP/IPv6.
pub const MRQ_RSS_TYPE_TCPIPV6: u32 = 3;
/// Hashed as IPv6 with extension-header addresses.
pub const MRQ_RSS_TYPE_IPV6EX: u32 = 4;
/// Hashed as IPv6.
pub const MRQ_RSS_TYPE_IPV6: u32 = 5;

// RCTL bits.
/// Receiver Enable.
pub const RCTL_EN: u32 = 1 << 1;
/// Store Bad Packets.
pub const RCTL_SBP: u32 = 1 << 2;
/// Unicast Promiscuous Enable.
pub const RCTL_UPE: u32 = 1 << 3;
/// Multicast Promiscuous Enable.
pub const RCTL_MPE: u32 = 1 << 4;
/// Long Packet Enable: accept frames over 1522 bytes (up to 16 KB).
pub const RCTL_LPE: u32 = 1 << 5;
/// Loopback mode, bits 7:6 (00 = none).
pub const RCTL_LBM_MASK: u32 = 0b11 << 6;
/// Receive Descriptor Minimum Threshold Size, bits 9:8 (fraction of the ring).
pub const RCTL_RDMTS_HALF: u32 = 0b00 << 8;
pub const RCTL_RDMTS_QUARTER: u32 = 0b01 << 8;
pub const RCTL_RDMTS_EIGHTH: u32 = 0b10 << 8;
/// Descriptor Type, bits 11:10: 00 = legacy or extended (chosen by RFCTL.EXSTEN),
/// 01 = packet split.
pub const RCTL_DTYP_MASK: u32 = 0b11 << 10;
pub const RCTL_DTYP_PS: u32 = 0b01 << 10;
/// Multicast Offset, bits 13:12: which destination address bits index the MTA.
pub const RCTL_MO_SHIFT: u32 = 12;
/// Broadcast Accept Mode.
pub const RCTL_BAM: u32 = 1 << 15;
/// Receive Buffer Size, bits 17:16, read together with BSEX (bit 25).
pub const RCTL_BSIZE_SHIFT: u32 = 16;
pub const RCTL_BSIZE_MASK: u32 = 0b11 << RCTL_BSIZE_SHIFT;
/// Buffer Size Extension: multiplies BSIZE's sizes by 16.
pub const RCTL_BSEX: u32 = 1 << 25;
pub const RCTL_BSIZE_2048: u32 = 0b00 << RCTL_BSIZE_SHIFT;
pub const RCTL_BSIZE_1024: u32 = 0b01 << RCTL_BSIZE_SHIFT;
pub const RCTL_BSIZE_512: u32 = 0b10 << RCTL_BSIZE_SHIFT;
pub const RCTL_BSIZE_256: u32 = 0b11 << RCTL_BSIZE_SHIFT;
pub const RCTL_BSIZE_16384: u32 = RCTL_BSEX | (0b01 << RCTL_BSIZE_SHIFT);
pub const RCTL_BSIZE_8192: u32 = RCTL_BSEX | (0b10 << RCTL_BSIZE_SHIFT);
pub const RCTL_BSIZE_4096: u32 = RCTL_BSEX | (0b11 << RCTL_BSIZE_SHIFT);
/// VLAN Filter Enable.
pub const RCTL_VFE: u32 = 1 << 18;
/// Discard Pause Frames.
pub const RCTL_DPF: u32 = 1 << 22;
/// Pass MAC Control Frames.
pub const RCTL_PMCF: u32 = 1 << 23;
/// Strip Ethernet CRC from the frame (and from the reported length).
pub const RCTL_SECRC: u32 = 1 << 26;
/// Flexible buffer size in KB, bits 30:27; 0 = use BSIZE/BSEX.
pub const RCTL_FLXBUF_SHIFT: u32 = 27;
pub const RCTL_FLXBUF_MASK: u32 = 0xF << RCTL_FLXBUF_SHIFT;

// RFCTL bits.
pub const RFCTL_ISCSI_DIS: u32 = 1 << 0;
pub const RFCTL_NFSW_DIS: u32 = 1 << 6;
pub const RFCTL_NFSR_DIS: u32 = 1 << 7;
pub const RFCTL_IPV6_DIS: u32 = 1 << 10;
pub const RFCTL_IPV6_XSUM_DIS: u32 = 1 << 11;
pub const RFCTL_ACK_DIS: u32 = 1 << 12;
pub const RFCTL_ACKD_DIS: u32 = 1 << 13;
pub const RFCTL_IPFRSP_DIS: u32 = 1 << 14;
/// Extended Status Enable: receive descriptors use the extended format (with RCTL.DTYP=00)
/// instead of the legacy one.
pub const RFCTL_EXSTEN: u32 = 1 << 15;
pub const RFCTL_IPV6_EX_DIS: u32 = 1 << 16;
pub const RFCTL_NEW_IPV6_EXT_DIS: u32 = 1 << 17;

// RXCSUM bits.
/// Packet Checksum Start, bits 7:0.
pub const RXCSUM_PCSS_MASK: u32 = 0xFF;
/// IPv4 checksum offload: report IPCS/IPE in the descriptor.
pub const RXCSUM_IPOFLD: u32 = 1 << 8;
/// TCP/UDP checksum offload: report TCPCS/UDPCS/TCPE in the descriptor.
pub const RXCSUM_TUOFLD: u32 = 1 << 9;
/// Packet Checksum Disable: the descriptor carries the RSS hash instead of IP ID and
/// packet checksum.
pub const RXCSUM_PCSD: u32 = 1 << 13;

// RXDCTL fields.
pub const RXDCTL_PTHRESH_SHIFT: u32 = 0;
pub const RXDCTL_HTHRESH_SHIFT: u32 = 8;
pub const RXDCTL_WTHRESH_SHIFT: u32 = 16;
/// Granularity: thresholds count descriptors (1) or cache lines (0).
pub const RXDCTL_GRAN: u32 = 1 << 24;

// RAH bits.
/// Address Valid: the entry takes part in unicast filtering.
pub const RAH_AV: u32 = 1 << 31;
/// Address Select, bits 17:16 (00 = destination address).
pub const RAH_ASEL_MASK: u32 = 0b11 << 16;

// ---------------------------------------------------------------------------------------
// Transmit registers (82574 §10.2, transmit register descriptions)
// ---------------------------------------------------------------------------------------

/// Transmit Control.
pub const TCTL: u32 = 0x0_0400;
/// Transmit IPG.
pub const TIPG: u32 = 0x0_0410;
/// Transmit Descriptor Base Address Low/High, queue 0.
pub const TDBAL: u32 = 0x0_3800;
pub const TDBAH: u32 = 0x0_3804;
/// Transmit Descriptor Ring Length in bytes, queue 0 (a multiple of 128).
pub const TDLEN: u32 = 0x0_3808;
/// Transmit Descriptor Head/Tail, queue 0.
pub const TDH: u32 = 0x0_3810;
pub const TDT: u32 = 0x0_3818;
/// Transmit Interrupt Delay Value.
pub const TIDV: u32 = 0x0_3820;
/// Transmit Descriptor Control, queue 0.
pub const TXDCTL: u32 = 0x0_3828;
/// Transmit Absolute Interrupt Delay Value.
pub const TADV: u32 = 0x0_382C;
/// Transmit Arbitration Count, queue 0.
pub const TARC0: u32 = 0x0_3840;
/// Queue 1 ring registers.
pub const TDBAL1: u32 = 0x0_3900;
pub const TDBAH1: u32 = 0x0_3904;
pub const TDLEN1: u32 = 0x0_3908;
pub const TDH1: u32 = 0x0_3910;
pub const TDT1: u32 = 0x0_3918;
pub const TXDCTL1: u32 = 0x0_3928;
pub const TARC1: u32 = 0x0_3940;

// TCTL bits.
/// Transmit Enable.
pub const TCTL_EN: u32 = 1 << 1;
/// Pad Short Packets to 64 bytes.
pub const TCTL_PSP: u32 = 1 << 3;
/// Collision Threshold, bits 11:4 (retries in half duplex).
pub const TCTL_CT_SHIFT: u32 = 4;
pub const TCTL_CT_MASK: u32 = 0xFF << TCTL_CT_SHIFT;
/// Collision Distance, bits 21:12.
pub const TCTL_COLD_SHIFT: u32 = 12;
pub const TCTL_COLD_MASK: u32 = 0x3FF << TCTL_COLD_SHIFT;
/// Re-transmit on Late Collision.
pub const TCTL_RTLC: u32 = 1 << 24;
/// Multiple Request Support.
pub const TCTL_MULR: u32 = 1 << 28;
/// Collision threshold the datasheet recommends (IEEE 802.3: 16 attempts).
pub const TCTL_CT_DEFAULT: u32 = 0x0F;
/// Collision distance for full duplex, in byte times (64-byte slot time).
pub const TCTL_COLD_FULL_DUPLEX: u32 = 0x3F;

// TIPG fields.
pub const TIPG_IPGT_SHIFT: u32 = 0;
pub const TIPG_IPGR1_SHIFT: u32 = 10;
pub const TIPG_IPGR2_SHIFT: u32 = 20;
/// IPGT 8, IPGR1 8, IPGR2 6: the recommended copper values (and QEMU's reset value).
pub const TIPG_COPPER_DEFAULT: u32 =
    (8 << TIPG_IPGT_SHIFT) | (8 << TIPG_IPGR1_SHIFT) | (6 << TIPG_IPGR2_SHIFT);

// TXDCTL fields.
pub const TXDCTL_PTHRESH_SHIFT: u32 = 0;
pub const TXDCTL_HTHRESH_SHIFT: u32 = 8;
pub const TXDCTL_WTHRESH_SHIFT: u32 = 16;
/// Bit 22: enable counting of descriptors still to be processed; the 82571 family (82574
/// included) expects it set.
pub const TXDCTL_COUNT_DESC: u32 = 1 << 22;
/// Granularity: thresholds count descriptors (1) or cache lines (0).
pub const TXDCTL_GRAN: u32 = 1 << 24;
pub const TXDCTL_LWTHRESH_SHIFT: u32 = 25;

// TARC bits.
/// Transmit arbitration count, bits 6:0.
pub const TARC_COUNT_MASK: u32 = 0x7F;
/// Bit 10, ENABLE: the queue takes part in transmit arbitration. QEMU sends nothing from a
/// queue whose TARC lacks it (`e1000e_set_tdt`, `hw/net/e1000e_core.c:2421-2434`).
pub const TARC_ENABLE: u32 = 1 << 10;

// ---------------------------------------------------------------------------------------
// Statistics (82574 §10.2, statistics register descriptions): all read-to-clear.
// ---------------------------------------------------------------------------------------

/// CRC Error Count.
pub const CRCERRS: u32 = 0x0_4000;
/// Alignment Error Count.
pub const ALGNERRC: u32 = 0x0_4004;
/// Symbol Error Count.
pub const SYMERRS: u32 = 0x0_4008;
/// RX Error Count.
pub const RXERRC: u32 = 0x0_400C;
/// Missed Packets Count (dropped for lack of packet buffer space).
pub const MPC: u32 = 0x0_4010;
/// Single / Excessive / Multiple / Late Collision Count, Collision Count, Defer Count,
/// Transmit with No CRS, Sequence Error, Carrier Extension Error, Receive Length Error.
pub const SCC: u32 = 0x0_4014;
pub const ECOL: u32 = 0x0_4018;
pub const MCC: u32 = 0x0_401C;
pub const LATECOL: u32 = 0x0_4020;
pub const COLC: u32 = 0x0_4028;
pub const DC: u32 = 0x0_4030;
pub const TNCRS: u32 = 0x0_4034;
pub const SEC: u32 = 0x0_4038;
pub const CEXTERR: u32 = 0x0_403C;
pub const RLEC: u32 = 0x0_4040;
/// XON/XOFF Received/Transmitted Count, FC Received Unsupported Count.
pub const XONRXC: u32 = 0x0_4048;
pub const XONTXC: u32 = 0x0_404C;
pub const XOFFRXC: u32 = 0x0_4050;
pub const XOFFTXC: u32 = 0x0_4054;
pub const FCRUC: u32 = 0x0_4058;
/// Packets Received by size: 64, 65-127, 128-255, 256-511, 512-1023, 1024-max bytes.
pub const PRC64: u32 = 0x0_405C;
pub const PRC127: u32 = 0x0_4060;
pub const PRC255: u32 = 0x0_4064;
pub const PRC511: u32 = 0x0_4068;
pub const PRC1023: u32 = 0x0_406C;
pub const PRC1522: u32 = 0x0_4070;
/// Good Packets Received Count.
pub const GPRC: u32 = 0x0_4074;
/// Broadcast Packets Received Count.
pub const BPRC: u32 = 0x0_4078;
/// Multicast Packets Received Count.
pub const MPRC: u32 = 0x0_407C;
/// Good Packets Transmitted Count.
pub const GPTC: u32 = 0x0_4080;
/// Good Octets Received Count, low/high.
pub const GORCL: u32 = 0x0_4088;
pub const GORCH: u32 = 0x0_408C;
/// Good Octets Transmitted Count, low/high.
pub const GOTCL: u32 = 0x0_4090;
pub const GOTCH: u32 = 0x0_4094;
/// Receive No Buffers Count (no free descriptor when a frame arrived).
pub const RNBC: u32 = 0x0_40A0;
/// Receive Undersize / Fragment / Oversize / Jabber Count.
pub const RUC: u32 = 0x0_40A4;
pub const RFC: u32 = 0x0_40A8;
pub const ROC: u32 = 0x0_40AC;
pub const RJC: u32 = 0x0_40B0;
/// Management Packets Received / Dropped / Transmitted Count.
pub const MGTPRC: u32 = 0x0_40B4;
pub const MGTPDC: u32 = 0x0_40B8;
pub const MGTPTC: u32 = 0x0_40BC;
/// Total Octets Received, low/high.
pub const TORL: u32 = 0x0_40C0;
pub const TORH: u32 = 0x0_40C4;
/// Total Octets Transmitted, low/high.
pub const TOTL: u32 = 0x0_40C8;
pub const TOTH: u32 = 0x0_40CC;
/// Total Packets Received / Transmitted.
pub const TPR: u32 = 0x0_40D0;
pub const TPT: u32 = 0x0_40D4;
/// Packets Transmitted by size.
pub const PTC64: u32 = 0x0_40D8;
pub const PTC127: u32 = 0x0_40DC;
pub const PTC255: u32 = 0x0_40E0;
pub const PTC511: u32 = 0x0_40E4;
pub const PTC1023: u32 = 0x0_40E8;
pub const PTC1522: u32 = 0x0_40EC;
/// Multicast / Broadcast Packets Transmitted Count.
pub const MPTC: u32 = 0x0_40F0;
pub const BPTC: u32 = 0x0_40F4;
/// TCP Segmentation Context Transmitted / Transmit Fail Count.
pub const TSCTC: u32 = 0x0_40F8;
pub const TSCTFC: u32 = 0x0_40FC;
/// Interrupt Assertion Count.
pub const IAC: u32 = 0x0_4100;

/// Every 32-bit statistics counter.
pub const STATS_32: &[u32] = &[
    CRCERRS, ALGNERRC, SYMERRS, RXERRC, MPC, SCC, ECOL, MCC, LATECOL, COLC, DC, TNCRS, SEC,
    CEXTERR, RLEC, XONRXC, XONTXC, XOFFRXC, XOFFTXC, FCRUC, PRC64, PRC127, PRC255, PRC511, PRC1023,
    PRC1522, GPRC, BPRC, MPRC, GPTC, RNBC, RUC, RFC, ROC, RJC, MGTPRC, MGTPDC, MGTPTC, TPR, TPT,
    PTC64, PTC127, PTC255, PTC511, PTC1023, PTC1522, MPTC, BPTC, TSCTC, TSCTFC, IAC,
];

/// Every 64-bit statistics counter as `(low, high)`. Read low first, then high: the
/// device latches the pair and clears it on the high read (QEMU:
/// `e1000e_mac_read_clr8`, `hw/net/e1000e_core.c:2629-2637`, clears both halves when the
/// high half is read and treats a low read as a plain read).
pub const STATS_64: &[(u32, u32)] = &[(GORCL, GORCH), (GOTCL, GOTCH), (TORL, TORH), (TOTL, TOTH)];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_match_the_datasheet_map() {
        // A few anchors from the 82574 register summary (and QEMU's e1000x_regs.h).
        assert_eq!(CTRL, 0x0000);
        assert_eq!(EERD, 0x0014);
        assert_eq!(ICR, 0x00C0);
        assert_eq!(IMC, 0x00D8);
        assert_eq!(EITR(0), 0x00E8);
        assert_eq!(EITR(4), 0x00F8);
        assert_eq!(RCTL, 0x0100);
        assert_eq!(TCTL, 0x0400);
        assert_eq!(RDT, 0x2818);
        assert_eq!(TDT, 0x3818);
        assert_eq!(TARC0, 0x3840);
        assert_eq!(RXCSUM, 0x5000);
        assert_eq!(RFCTL, 0x5008);
        assert_eq!(ral(1), 0x5408);
        assert_eq!(rah(15), 0x547C);
        assert_eq!(GCR, 0x5B00);
        assert_eq!(TOTH, 0x40CC);
        assert_eq!(IAC, 0x4100);
        assert_eq!(queue_reg(RDBAL, 1), RDBAL1);
        assert_eq!(queue_reg(RDT, 1), RDT1);
        assert_eq!(queue_reg(RXDCTL, 1), RXDCTL1);
        assert_eq!(queue_reg(TDBAL, 1), TDBAL1);
        assert_eq!(queue_reg(TDT, 1), TDT1);
        assert_eq!(queue_reg(TARC0, 1), TARC1);
        assert_eq!(MRQC, 0x5818);
        assert_eq!(RETA, 0x5C00);
        assert_eq!(RSSRK, 0x5C80);
    }

    #[test]
    fn bits_match_qemu_definitions() {
        assert_eq!(CTRL_RST, 0x0400_0000);
        assert_eq!(CTRL_SLU, 0x40);
        assert_eq!(CTRL_ASDE, 0x20);
        assert_eq!(RFCTL_EXSTEN, 0x8000);
        assert_eq!(RCTL_SECRC, 0x0400_0000);
        assert_eq!(RCTL_BSEX, 0x0200_0000);
        assert_eq!(RCTL_BSIZE_4096, 0x0203_0000);
        assert_eq!(TARC_ENABLE, 0x400);
        assert_eq!(RAH_AV, 0x8000_0000);
        assert_eq!(TIPG_COPPER_DEFAULT, 0x0060_2008);
        assert_eq!(TCTL_CT_MASK, 0xFF0);
        assert_eq!(TCTL_COLD_MASK, 0x003F_F000);
    }

    #[test]
    fn statistics_lists_are_complete_and_disjoint() {
        // 0x4000..=0x4100 minus reserved 0x4024, 0x402C, 0x4044, 0x4084, 0x4098, 0x409C
        // are the counters; 8 of them are the four 64-bit pairs.
        let mut all: Vec<u32> = STATS_32.to_vec();
        for &(l, h) in STATS_64 {
            assert_eq!(h, l + 4);
            all.push(l);
            all.push(h);
        }
        all.sort_unstable();
        let before = all.len();
        all.dedup();
        assert_eq!(before, all.len(), "a counter is listed twice");
        let reserved = [0x4024, 0x402C, 0x4044, 0x4084, 0x4098, 0x409C];
        let expected: Vec<u32> = (0x4000..=0x4100)
            .step_by(4)
            .filter(|o| !reserved.contains(o))
            .collect();
        assert_eq!(all, expected);
    }
}
