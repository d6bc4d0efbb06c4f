//! Receive and transmit queues: global RX/TX control and per-queue rings.

use super::regs::*;
use super::{wait_bits, IgbError};
use crate::mmio::{Delay, Mmio};

/// Bytes per advanced descriptor (82576 §7.1.5, §7.2.2).
pub const DESC_LEN: u32 = 16;
/// Ring lengths are multiples of 128 bytes, i.e. of 8 descriptors (82576 §8.10.6 RDLEN,
/// §8.12.7 TDLEN).
pub const RING_DESC_MULTIPLE: u32 = 8;
/// The largest ring RDLEN/TDLEN can describe (bits 19:7): 0xFFF80 bytes.
pub const MAX_RING_DESCS: u32 = 0x000F_FF80 / DESC_LEN;
/// Ring bases are 128-byte aligned (82576 §8.10.5 RDBAL: bits 6:0 ignored; QEMU's
/// `E1000_XDBAL_IGB_MASK`).
pub const RING_ALIGN: u64 = 128;
/// How long to wait for RXDCTL/TXDCTL.ENABLE to read back set (82576 §4.5.9/§4.5.10:
/// software polls it after enabling a queue).
pub const QUEUE_ENABLE_TIMEOUT_US: u32 = 10_000;
const QUEUE_ENABLE_POLL_US: u32 = 100;

/// What the receiver does, for every queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxConfig {
    /// Accept every unicast and multicast frame (RCTL.UPE | RCTL.MPE).
    pub promisc: bool,
    /// RX checksum offload: IPv4 header and TCP/UDP checksums checked, the verdicts in
    /// the write-back (RXCSUM.IPOFLD | TUOFLD).
    pub checksum: bool,
    /// Accept frames longer than 1522 bytes, up to this many (RCTL.LPE, RLPML); 0 for no.
    pub long_frames: u32,
}

/// One receive queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxQueueConfig {
    /// Device address (IOVA) of the descriptor ring; [`RING_ALIGN`]-aligned.
    pub ring_iova: u64,
    /// Descriptors in the ring: a multiple of 8, from 8 to [`MAX_RING_DESCS`].
    pub ring_descs: u32,
    /// Bytes per receive buffer: a multiple of 1024 from 1024 to 127 KiB (SRRCTL
    /// BSIZEPACKET).
    pub buf_size: u32,
}

/// One transmit queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxQueueConfig {
    /// Device address (IOVA) of the descriptor ring; [`RING_ALIGN`]-aligned.
    pub ring_iova: u64,
    /// Descriptors in the ring: a multiple of 8, from 8 to [`MAX_RING_DESCS`].
    pub ring_descs: u32,
}

fn check_queue(queue: u32) -> Result<(), IgbError> {
    if queue >= QUEUES {
        return Err(IgbError::InvalidRingConfig {
            reason: format!("queue {queue}: the 82576 has queues 0 to {}", QUEUES - 1),
        });
    }
    Ok(())
}

fn check_ring(which: &str, iova: u64, descs: u32) -> Result<(), IgbError> {
    if iova % RING_ALIGN != 0 {
        return Err(IgbError::InvalidRingConfig {
            reason: format!(
                "{which} ring IOVA {iova:#x} is not {RING_ALIGN}-byte aligned (the device \
                 ignores the low 7 bits of the base); allocate the ring page-aligned"
            ),
        });
    }
    if descs < RING_DESC_MULTIPLE || descs % RING_DESC_MULTIPLE != 0 || descs > MAX_RING_DESCS {
        return Err(IgbError::InvalidRingConfig {
            reason: format!(
                "{which} ring of {descs} descriptors: the length must be a multiple of \
                 {RING_DESC_MULTIPLE} descriptors (128 bytes) between {RING_DESC_MULTIPLE} and \
                 {MAX_RING_DESCS}"
            ),
        });
    }
    Ok(())
}

impl RxQueueConfig {
    /// Checks the ring and buffer size against what the registers can hold.
    ///
    /// # Errors
    /// [`IgbError::InvalidRingConfig`] saying what is wrong.
    pub fn validate(&self) -> Result<(), IgbError> {
        check_ring("RX", self.ring_iova, self.ring_descs)?;
        let kib = self.buf_size >> SRRCTL_BSIZEPKT_SHIFT;
        if self.buf_size % 1024 != 0 || kib == 0 || kib > SRRCTL_BSIZEPKT_MASK {
            return Err(IgbError::InvalidRingConfig {
                reason: format!(
                    "RX buffer size {} is not one SRRCTL.BSIZEPACKET can express: a multiple \
                     of 1024 from 1024 to {}",
                    self.buf_size,
                    SRRCTL_BSIZEPKT_MASK << SRRCTL_BSIZEPKT_SHIFT
                ),
            });
        }
        Ok(())
    }

    /// The SRRCTL value: advanced one-buffer descriptors (DESCTYPE 001, 82576 §8.10.7) and
    /// the buffer size in KiB. QEMU takes the size from BSIZEPACKET (`igb_rxbufsize`) and
    /// always writes advanced descriptors (`igb_rx_use_legacy_descriptor`).
    pub fn srrctl(&self) -> u32 {
        SRRCTL_DESCTYPE_ADV_ONEBUF
            | ((self.buf_size >> SRRCTL_BSIZEPKT_SHIFT) & SRRCTL_BSIZEPKT_MASK)
    }
}

/// Sets the receiver's queue-independent state with RCTL.EN clear, before the queues:
/// RCTL.EN off (nothing lands in a half-built ring); RXCSUM (IPOFLD | TUOFLD if
/// `checksum`, PCSD clear; [`super::configure_rss`] adds PCSD); RLPML; the MTA cleared (its
/// content is undefined at power-up and would let random multicast groups through).
pub fn configure_rx(regs: &impl Mmio, cfg: &RxConfig) {
    let rctl = regs.read32(RCTL);
    regs.write32(RCTL, rctl & !RCTL_EN);
    regs.write32(
        RXCSUM,
        if cfg.checksum {
            RXCSUM_IPOFLD | RXCSUM_TUOFLD
        } else {
            0
        },
    );
    if cfg.long_frames != 0 {
        regs.write32(RLPML, cfg.long_frames & 0x3FFF);
    }
    for i in 0..MTA_LEN {
        regs.write32(MTA + 4 * i, 0);
    }
}

/// The RCTL value [`enable_rx`] writes: EN; BAM (broadcasts); SECRC (strip the CRC: QEMU
/// would append 4 zero bytes otherwise, `e1000x_fcs_len`); DTYP 00 (the 82576 takes the
/// descriptor type from SRRCTL; QEMU complains about anything else); UPE|MPE when
/// promiscuous; LPE with `long_frames`.
pub fn rctl(cfg: &RxConfig) -> u32 {
    let mut rctl = RCTL_EN | RCTL_BAM | RCTL_SECRC;
    if cfg.promisc {
        rctl |= RCTL_UPE | RCTL_MPE;
    }
    if cfg.long_frames != 0 {
        rctl |= RCTL_LPE;
    }
    rctl
}

/// Sets up receive queue `queue` with an empty ring (82576 §4.5.9, receive queue enable):
/// RXDCTL.ENABLE cleared first; RDBAL, RDBAH, RDLEN; SRRCTL ([`RxQueueConfig::srrctl`]);
/// RDH = RDT = 0; RXDCTL = ENABLE | WTHRESH 1 (write back every descriptor, so a polling
/// driver sees DD as soon as a frame lands); then polls RXDCTL until ENABLE reads set.
///
/// The caller then writes descriptors and moves RDT past them. RDH == RDT means "no
/// buffers", so a ring of N holds at most N - 1 (QEMU `igb_ring_free_descr_num`).
///
/// # Errors
/// [`IgbError::InvalidRingConfig`] for a bad queue or ring, before any register is written;
/// [`IgbError::QueueEnableTimeout`] if ENABLE never reads back.
pub fn configure_rx_queue(
    regs: &impl Mmio,
    delay: &mut impl Delay,
    queue: u32,
    cfg: &RxQueueConfig,
) -> Result<(), IgbError> {
    check_queue(queue)?;
    cfg.validate()?;
    let rxdctl = queue_reg(RXDCTL0, queue);
    regs.write32(rxdctl, regs.read32(rxdctl) & !XDCTL_ENABLE);
    regs.write32(queue_reg(RDBAL0, queue), cfg.ring_iova as u32);
    regs.write32(queue_reg(RDBAH0, queue), (cfg.ring_iova >> 32) as u32);
    regs.write32(queue_reg(RDLEN0, queue), cfg.ring_descs * DESC_LEN);
    regs.write32(queue_reg(SRRCTL0, queue), cfg.srrctl());
    regs.write32(queue_reg(RDH0, queue), 0);
    regs.write32(queue_reg(RDT0, queue), 0);
    regs.write32(rxdctl, XDCTL_ENABLE | (1 << XDCTL_WTHRESH_SHIFT));
    wait_bits(
        regs,
        delay,
        rxdctl,
        XDCTL_ENABLE,
        true,
        QUEUE_ENABLE_POLL_US,
        QUEUE_ENABLE_TIMEOUT_US,
    )
    .map(|_| ())
    .map_err(|waited_us| IgbError::QueueEnableTimeout {
        dir: "RX",
        reg: "RXDCTL",
        queue,
        waited_us,
    })
}

/// Turns receive queue `queue` off (RXDCTL.ENABLE clear): a queue the port does not use
/// gets no frames even if a stale redirection table names it.
pub fn disable_rx_queue(regs: &impl Mmio, queue: u32) {
    let rxdctl = queue_reg(RXDCTL0, queue);
    regs.write32(rxdctl, regs.read32(rxdctl) & !XDCTL_ENABLE);
}

/// Enables the receiver (RCTL = [`rctl`]) after every queue is set up.
pub fn enable_rx(regs: &impl Mmio, cfg: &RxConfig) {
    regs.write32(RCTL, rctl(cfg));
}

/// Sets up transmit queue `queue` with an empty ring (82576 §4.5.10): TXDCTL.ENABLE
/// cleared; TDBAL, TDBAH, TDLEN; TDWBAL/TDWBAH = 0 (DD written back into the descriptors,
/// not the head to memory); TDH = TDT = 0; TXDCTL = ENABLE | WTHRESH 1; the wait for
/// ENABLE. QEMU sends from a queue only while TCTL.EN and its TXDCTL.ENABLE are set
/// (`igb_tx_enabled`), inside the TDT write.
///
/// # Errors
/// As [`configure_rx_queue`].
pub fn configure_tx_queue(
    regs: &impl Mmio,
    delay: &mut impl Delay,
    queue: u32,
    cfg: &TxQueueConfig,
) -> Result<(), IgbError> {
    check_queue(queue)?;
    check_ring("TX", cfg.ring_iova, cfg.ring_descs)?;
    let txdctl = queue_reg(TXDCTL0, queue);
    regs.write32(txdctl, regs.read32(txdctl) & !XDCTL_ENABLE);
    regs.write32(queue_reg(TDBAL0, queue), cfg.ring_iova as u32);
    regs.write32(queue_reg(TDBAH0, queue), (cfg.ring_iova >> 32) as u32);
    regs.write32(queue_reg(TDLEN0, queue), cfg.ring_descs * DESC_LEN);
    regs.write32(queue_reg(TDWBAL0, queue), 0);
    regs.write32(queue_reg(TDWBAH0, queue), 0);
    regs.write32(queue_reg(TDH0, queue), 0);
    regs.write32(queue_reg(TDT0, queue), 0);
    regs.write32(txdctl, XDCTL_ENABLE | (1 << XDCTL_WTHRESH_SHIFT));
    wait_bits(
        regs,
        delay,
        txdctl,
        XDCTL_ENABLE,
        true,
        QUEUE_ENABLE_POLL_US,
        QUEUE_ENABLE_TIMEOUT_US,
    )
    .map(|_| ())
    .map_err(|waited_us| IgbError::QueueEnableTimeout {
        dir: "TX",
        reg: "TXDCTL",
        queue,
        waited_us,
    })
}

/// TCTL: enable, pad short frames, collision threshold 15, full-duplex collision distance
/// 0x3F, retransmit on late collision (82576 §8.12.1).
const TCTL_VALUE: u32 =
    TCTL_EN | TCTL_PSP | (0xF << TCTL_CT_SHIFT) | (0x3F << TCTL_COLD_SHIFT) | TCTL_RTLC;
/// TIPG: IPGT 8, IPGR1 8, IPGR2 6 (82576 §8.12.2, copper).
const TIPG_VALUE: u32 = 8 | (8 << 10) | (6 << 20);

/// Enables the transmitter after the queues are set up: TIPG, then TCTL.
pub fn enable_tx(regs: &impl Mmio) {
    regs.write32(TIPG, TIPG_VALUE);
    regs.write32(TCTL, TCTL_VALUE);
}

/// Turns unicast and multicast promiscuous mode (RCTL.UPE | RCTL.MPE) on or off, the rest
/// of RCTL as it is; with both off, unicast frames must match a receive address entry and
/// multicast ones the MTA (QEMU `e1000x_rx_group_filter`, then the RA2 entries).
pub fn set_promisc(regs: &impl Mmio, on: bool) {
    let rctl = regs.read32(RCTL);
    let rctl = if on {
        rctl | RCTL_UPE | RCTL_MPE
    } else {
        rctl & !(RCTL_UPE | RCTL_MPE)
    };
    regs.write32(RCTL, rctl);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmio::RecordedRegs;

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x57];
    const RXQ: RxQueueConfig = RxQueueConfig {
        ring_iova: 0x1_2345_6000,
        ring_descs: 256,
        buf_size: 2048,
    };
    const TXQ: TxQueueConfig = TxQueueConfig {
        ring_iova: 0x2_0000_1000,
        ring_descs: 512,
    };
    const RX: RxConfig = RxConfig {
        promisc: false,
        checksum: true,
        long_frames: 0,
    };

    #[test]
    fn rx_queue_is_programmed_disabled_then_enabled_and_waited_for() {
        let r = RecordedRegs::igb_qemu(MAC);
        configure_rx_queue(&r, &mut r.delay(), 5, &RXQ).unwrap();
        let q = |reg| queue_reg(reg, 5);
        assert_eq!(
            r.writes(),
            vec![
                (q(RXDCTL0), 1 << 16),
                (q(RDBAL0), 0x2345_6000),
                (q(RDBAH0), 1),
                (q(RDLEN0), 256 * 16),
                (q(SRRCTL0), SRRCTL_DESCTYPE_ADV_ONEBUF | 2),
                (q(RDH0), 0),
                (q(RDT0), 0),
                (q(RXDCTL0), XDCTL_ENABLE | (1 << 16)),
            ]
        );
        // ENABLE polled after the enabling write.
        let en = r.last_write_index(q(RXDCTL0)).unwrap();
        assert!(r.log()[en + 1..]
            .iter()
            .any(|a| a.offset() == q(RXDCTL0) && !a.is_write()));
    }

    #[test]
    fn queue_that_never_enables_times_out() {
        let r = RecordedRegs::new();
        r.on_write(queue_reg(TXDCTL0, 2), |file, off, v| {
            file.set(off, v & !XDCTL_ENABLE)
        });
        assert_eq!(
            configure_tx_queue(&r, &mut r.delay(), 2, &TXQ).unwrap_err(),
            IgbError::QueueEnableTimeout {
                dir: "TX",
                reg: "TXDCTL",
                queue: 2,
                waited_us: QUEUE_ENABLE_TIMEOUT_US
            }
        );
    }

    #[test]
    fn tx_queue_and_enable() {
        let r = RecordedRegs::igb_qemu(MAC);
        configure_tx_queue(&r, &mut r.delay(), 15, &TXQ).unwrap();
        enable_tx(&r);
        assert_eq!(r.get(queue_reg(TDBAL0, 15)), 0x1000);
        assert_eq!(r.get(queue_reg(TDBAH0, 15)), 2);
        assert_eq!(r.get(queue_reg(TDLEN0, 15)), 512 * 16);
        assert_ne!(r.get(queue_reg(TXDCTL0, 15)) & XDCTL_ENABLE, 0);
        assert_eq!(r.last_write(queue_reg(TDWBAL0, 15)), Some(0));
        let tctl = r.get(TCTL);
        assert_ne!(tctl & TCTL_EN, 0);
        assert_ne!(tctl & TCTL_PSP, 0);
        assert_eq!(r.last_write_index(TCTL), Some(r.log().len() - 1));
    }

    #[test]
    fn bad_configs_are_refused_before_any_write() {
        let r = RecordedRegs::new();
        let mut d = r.delay();
        let bad = [
            RxQueueConfig {
                ring_iova: 0x1040,
                ..RXQ
            },
            RxQueueConfig {
                ring_descs: 12,
                ..RXQ
            },
            RxQueueConfig {
                buf_size: 1500,
                ..RXQ
            },
            RxQueueConfig {
                buf_size: 128 * 1024,
                ..RXQ
            },
        ];
        for cfg in bad {
            assert!(matches!(
                configure_rx_queue(&r, &mut d, 0, &cfg),
                Err(IgbError::InvalidRingConfig { .. })
            ));
        }
        assert!(configure_tx_queue(&r, &mut d, 16, &TXQ).is_err());
        assert!(r.writes().is_empty());
    }

    #[test]
    fn receiver_global_state_and_enable() {
        let r = RecordedRegs::igb_qemu(MAC);
        r.write32(RCTL, RCTL_EN | RCTL_UPE);
        configure_rx(&r, &RX);
        assert_eq!(r.get(RCTL) & RCTL_EN, 0);
        assert_eq!(r.get(RXCSUM), RXCSUM_IPOFLD | RXCSUM_TUOFLD);
        assert_eq!(
            r.writes()
                .iter()
                .filter(|(o, v)| (MTA..MTA + 4 * MTA_LEN).contains(o) && *v == 0)
                .count(),
            128
        );
        enable_rx(&r, &RX);
        assert_eq!(r.get(RCTL), RCTL_EN | RCTL_BAM | RCTL_SECRC);
        set_promisc(&r, true);
        assert_eq!(r.get(RCTL) & (RCTL_UPE | RCTL_MPE), RCTL_UPE | RCTL_MPE);
        let off = RecordedRegs::new();
        configure_rx(
            &off,
            &RxConfig {
                checksum: false,
                long_frames: 9018,
                ..RX
            },
        );
        assert_eq!(off.get(RXCSUM), 0);
        assert_eq!(off.get(RLPML), 9018);
        assert_ne!(
            rctl(&RxConfig {
                long_frames: 9018,
                ..RX
            }) & RCTL_LPE,
            0
        );
    }
}
