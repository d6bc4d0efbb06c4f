//! Receive and transmit queue 0 setup.

use super::regs::*;
use super::E1000eError;
use crate::mmio::Mmio;

/// Bytes per descriptor: legacy and extended RX, and every TX descriptor, are 16 bytes
/// (82574 §7.1.5, §7.2.10).
pub const DESC_LEN: u32 = 16;
/// Ring lengths are multiples of 128 bytes, i.e. of 8 descriptors (RDLEN/TDLEN bits 6:0
/// are zero; QEMU masks them off: `E1000_XDLEN_MASK`, `hw/net/e1000_regs.h:149`).
pub const RING_DESC_MULTIPLE: u32 = 8;
/// The largest ring RDLEN/TDLEN (bits 19:7) can describe: 0xFFF80 bytes.
pub const MAX_RING_DESCS: u32 = 0x000F_FF80 / DESC_LEN;
/// Ring bases are 16-byte aligned (RDBAL/TDBAL bits 3:0 are zero; QEMU masks them off:
/// `E1000_XDBAL_MASK`, `hw/net/e1000_regs.h:148`).
const RING_ALIGN: u64 = 16;
/// Receive buffer sizes RCTL.BSIZE/BSEX can express.
pub const RX_BUF_SIZES: [u32; 7] = [256, 512, 1024, 2048, 4096, 8192, 16384];

/// Receive queue 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxRingConfig {
    /// Device address (IOVA) of the descriptor ring; 16-byte aligned.
    pub ring_iova: u64,
    /// Descriptors in the ring: a multiple of 8, from 8 to [`MAX_RING_DESCS`].
    pub ring_descs: u32,
    /// Bytes per receive buffer, one of [`RX_BUF_SIZES`]; normally 2048.
    pub buf_size: u32,
    /// Accept every unicast and multicast frame (RCTL.UPE | RCTL.MPE).
    pub promisc: bool,
    /// RX checksum offload: the device checks IPv4 header and TCP/UDP checksums and
    /// reports the result in the write-back (RXCSUM.IPOFLD | TUOFLD). Off, QEMU skips its
    /// software checksum pass over every received frame.
    pub checksum: bool,
}

/// Transmit queue 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxRingConfig {
    /// Device address (IOVA) of the descriptor ring; 16-byte aligned.
    pub ring_iova: u64,
    /// Descriptors in the ring: a multiple of 8, from 8 to [`MAX_RING_DESCS`].
    pub ring_descs: u32,
}

fn check_ring(which: &str, iova: u64, descs: u32) -> Result<(), E1000eError> {
    if iova % RING_ALIGN != 0 {
        return Err(E1000eError::InvalidRingConfig {
            reason: format!(
                "{which} ring IOVA {iova:#x} is not 16-byte aligned (the device ignores the \
                 low 4 bits of the base); allocate the ring page-aligned"
            ),
        });
    }
    if descs < RING_DESC_MULTIPLE || descs % RING_DESC_MULTIPLE != 0 || descs > MAX_RING_DESCS {
        return Err(E1000eError::InvalidRingConfig {
            reason: format!(
                "{which} ring of {descs} descriptors: the length must be a multiple of \
                 {RING_DESC_MULTIPLE} descriptors (128 bytes) between {RING_DESC_MULTIPLE} and \
                 {MAX_RING_DESCS}"
            ),
        });
    }
    Ok(())
}

impl RxRingConfig {
    /// Checks the ring and buffer size against what the registers can hold.
    ///
    /// # Errors
    /// [`E1000eError::InvalidRingConfig`] saying what is wrong.
    pub fn validate(&self) -> Result<(), E1000eError> {
        check_ring("RX", self.ring_iova, self.ring_descs)?;
        if self.rctl_bsize().is_none() {
            return Err(E1000eError::InvalidRingConfig {
                reason: format!(
                    "RX buffer size {} is not one RCTL.BSIZE/BSEX can express: use one of \
                     {RX_BUF_SIZES:?}",
                    self.buf_size
                ),
            });
        }
        Ok(())
    }

    /// The RCTL BSIZE/BSEX bits for `buf_size`, if it has any.
    pub fn rctl_bsize(&self) -> Option<u32> {
        Some(match self.buf_size {
            256 => RCTL_BSIZE_256,
            512 => RCTL_BSIZE_512,
            1024 => RCTL_BSIZE_1024,
            2048 => RCTL_BSIZE_2048,
            4096 => RCTL_BSIZE_4096,
            8192 => RCTL_BSIZE_8192,
            16384 => RCTL_BSIZE_16384,
            _ => return None,
        })
    }

    /// The RCTL value [`configure_rx`] enables the receiver with.
    ///
    /// EN; BAM (broadcasts); SECRC (strip the CRC: QEMU has no CRC and would otherwise
    /// append 4 zero bytes to every frame and count them in the length,
    /// `e1000x_fcs_len`, `hw/net/e1000x_common.h:68-75`); BSIZE/BSEX for `buf_size`;
    /// RDMTS half; DTYP 00 (with RFCTL.EXSTEN: extended descriptors); UPE|MPE when
    /// promiscuous; LPE only for buffers over 2048 bytes, the only case where frames over
    /// 1522 bytes are wanted (without LPE such frames are dropped and counted in ROC).
    ///
    /// # Panics
    /// If `buf_size` is not one of [`RX_BUF_SIZES`] (see [`validate`](Self::validate)).
    pub fn rctl(&self) -> u32 {
        let bsize = self
            .rctl_bsize()
            .unwrap_or_else(|| panic!("RX buffer size {} not valid", self.buf_size));
        let mut rctl = RCTL_EN | RCTL_BAM | RCTL_SECRC | RCTL_RDMTS_HALF | bsize;
        if self.promisc {
            rctl |= RCTL_UPE | RCTL_MPE;
        }
        if self.buf_size > 2048 {
            rctl |= RCTL_LPE;
        }
        rctl
    }
}

impl TxRingConfig {
    /// Checks the ring against what the registers can hold.
    ///
    /// # Errors
    /// [`E1000eError::InvalidRingConfig`] saying what is wrong.
    pub fn validate(&self) -> Result<(), E1000eError> {
        check_ring("TX", self.ring_iova, self.ring_descs)
    }
}

/// RXDCTL: descriptor granularity, write back every descriptor (WTHRESH 1) so a polling
/// driver sees DD as soon as a frame lands; no prefetch/host thresholds.
const RXDCTL_VALUE: u32 = RXDCTL_GRAN | (1 << RXDCTL_WTHRESH_SHIFT);
/// TXDCTL: descriptor granularity, write back every RS descriptor (WTHRESH 1), and bit 22
/// (COUNT_DESC), which the 82571 family expects set. QEMU stores TXDCTL without acting on
/// it (`hw/net/e1000e_core.c:3092`, marked partial at 3267).
const TXDCTL_VALUE: u32 = TXDCTL_GRAN | (1 << TXDCTL_WTHRESH_SHIFT) | TXDCTL_COUNT_DESC;
/// TCTL: enable, pad short frames, collision threshold 15, full-duplex collision distance.
const TCTL_VALUE: u32 = TCTL_EN
    | TCTL_PSP
    | (TCTL_CT_DEFAULT << TCTL_CT_SHIFT)
    | (TCTL_COLD_FULL_DUPLEX << TCTL_COLD_SHIFT);

/// Sets up receive queue 0 and enables the receiver, with no buffers posted yet.
///
/// Order (82574 §4.6, receive initialization: program the ring before enabling):
/// 1. RCTL.EN cleared, so nothing is received into a half-built ring.
/// 2. RDBAL, RDBAH, RDLEN; RDH = 0 and RDT = 0 (an empty ring: head == tail); RXDCTL
///    (see `RXDCTL_VALUE`).
/// 3. RFCTL.EXSTEN: extended RX descriptors (with RCTL.DTYP = 00 below). QEMU picks the
///    descriptor format and size when RCTL is written with EN (`e1000e_set_rx_control` →
///    `e1000e_calc_rxdesclen`, `hw/net/e1000e_core.c:1909-1937`), so RFCTL goes first.
/// 4. RXCSUM = IPOFLD | TUOFLD if `checksum` (PCSD clear): the write-back reports
///    IPCS/TCPCS/UDPCS and IPE/TCPE, and the IP ID instead of an RSS hash; else 0.
///    [`super::configure_rss`] adds PCSD.
/// 5. RDTR = RADV = 0 and RSRPD = 0: no interrupt delay, no small-packet interrupt.
/// 6. MTA cleared (128 registers): its content is undefined after power-up and would let
///    random multicast groups through.
/// 7. RCTL = [`RxRingConfig::rctl`] (EN last).
///
/// The caller then writes receive descriptors and moves RDT past them. Keep one descriptor
/// unposted: the device treats RDH == RDT as "no buffers", so a ring of N descriptors holds
/// at most N - 1 buffers (QEMU `e1000e_ring_free_descr_num`, `hw/net/e1000e_core.c:827-843`).
///
/// # Errors
/// What [`RxRingConfig::validate`] finds, before any register is written: programming a
/// misaligned or mis-sized ring would make the device DMA outside it.
pub fn configure_rx(regs: &impl Mmio, cfg: &RxRingConfig) -> Result<(), E1000eError> {
    cfg.validate()?;
    let rctl = regs.read32(RCTL);
    regs.write32(RCTL, rctl & !RCTL_EN);

    write_rx_ring(regs, 0, cfg.ring_iova, cfg.ring_descs);

    regs.write32(RFCTL, RFCTL_EXSTEN);
    regs.write32(
        RXCSUM,
        if cfg.checksum {
            RXCSUM_IPOFLD | RXCSUM_TUOFLD
        } else {
            0
        },
    );
    regs.write32(RDTR, 0);
    regs.write32(RADV, 0);
    regs.write32(RSRPD, 0);
    for i in 0..MTA_LEN {
        regs.write32(MTA + 4 * i, 0);
    }

    regs.write32(RCTL, cfg.rctl());
    Ok(())
}

/// Sets up transmit queue 0 and enables the transmitter, with an empty ring.
///
/// Order (82574 §4.6, transmit initialization):
/// 1. TCTL.EN cleared.
/// 2. TDBAL, TDBAH, TDLEN; TDH = 0 and TDT = 0.
/// 3. TXDCTL (see `TXDCTL_VALUE`).
/// 4. TARC0 with ENABLE (bit 10) added to what it holds: QEMU transmits from a queue only
///    when its TARC has ENABLE (`e1000e_set_tdt`/`e1000e_set_tctl`,
///    `hw/net/e1000e_core.c:2404-2434`). QEMU resets TARC0 to 0x403, ENABLE already set
///    (line 3429), but a previous driver may have cleared it.
/// 5. TIDV = TADV = 0 (no interrupt delay); TIPG = IPGT 8, IPGR1 8, IPGR2 6 (copper).
/// 6. TCTL = EN | PSP | CT 15 | COLD 63 (full duplex).
///
/// The caller then writes descriptors and moves TDT past them; QEMU transmits inside the
/// TDT write. As with RX, TDH == TDT means empty, so at most N - 1 descriptors can be
/// outstanding.
///
/// # Errors
/// What [`TxRingConfig::validate`] finds, before any register is written.
pub fn configure_tx(regs: &impl Mmio, cfg: &TxRingConfig) -> Result<(), E1000eError> {
    cfg.validate()?;
    let tctl = regs.read32(TCTL);
    regs.write32(TCTL, tctl & !TCTL_EN);

    write_tx_ring(regs, 0, cfg.ring_iova, cfg.ring_descs);
    regs.write32(TIDV, 0);
    regs.write32(TADV, 0);
    regs.write32(TIPG, TIPG_COPPER_DEFAULT);

    regs.write32(TCTL, TCTL_VALUE);
    Ok(())
}

/// Programs receive ring `queue`: base, length, head = tail = 0 (empty), RXDCTL.
fn write_rx_ring(regs: &impl Mmio, queue: u32, iova: u64, descs: u32) {
    regs.write32(queue_reg(RDBAL, queue), iova as u32);
    regs.write32(queue_reg(RDBAH, queue), (iova >> 32) as u32);
    regs.write32(queue_reg(RDLEN, queue), descs * DESC_LEN);
    regs.write32(queue_reg(RDH, queue), 0);
    regs.write32(queue_reg(RDT, queue), 0);
    regs.write32(queue_reg(RXDCTL, queue), RXDCTL_VALUE);
}

/// Programs transmit ring `queue`: base, length, head = tail = 0 (empty), TXDCTL, and
/// TARC's ENABLE bit, without which QEMU sends nothing from the queue.
fn write_tx_ring(regs: &impl Mmio, queue: u32, iova: u64, descs: u32) {
    regs.write32(queue_reg(TDBAL, queue), iova as u32);
    regs.write32(queue_reg(TDBAH, queue), (iova >> 32) as u32);
    regs.write32(queue_reg(TDLEN, queue), descs * DESC_LEN);
    regs.write32(queue_reg(TDH, queue), 0);
    regs.write32(queue_reg(TDT, queue), 0);
    regs.write32(queue_reg(TXDCTL, queue), TXDCTL_VALUE);
    let tarc = queue_reg(TARC0, queue);
    regs.write32(tarc, regs.read32(tarc) | TARC_ENABLE);
}

fn check_queue(queue: u32) -> Result<(), E1000eError> {
    if queue == 0 || queue >= QUEUES {
        return Err(E1000eError::InvalidRingConfig {
            reason: format!(
                "queue {queue}: the 82574 has queues 0 and 1, and queue 0 is set up by \
                 configure_rx/configure_tx"
            ),
        });
    }
    Ok(())
}

/// Sets up receive queue 1 (82574 §7.1.1.7), after [`configure_rx`]: its ring empty, so
/// nothing lands there until buffers are posted and RSS ([`super::configure_rss`]) sends
/// frames to it; RCTL, RFCTL and RXCSUM are shared with queue 0.
///
/// # Errors
/// [`E1000eError::InvalidRingConfig`] for a queue other than 1 or a ring
/// [`RxRingConfig::validate`] would refuse, before any register is written.
pub fn configure_rx_queue(
    regs: &impl Mmio,
    queue: u32,
    ring_iova: u64,
    ring_descs: u32,
) -> Result<(), E1000eError> {
    checked_queue(regs, "RX", queue, ring_iova, ring_descs, write_rx_ring)
}

/// Sets up transmit queue 1 after [`configure_tx`] (TCTL, TIPG and the delays are shared):
/// an empty ring whose TDT writes QEMU serves like queue 0's.
///
/// # Errors
/// As [`configure_rx_queue`].
pub fn configure_tx_queue(
    regs: &impl Mmio,
    queue: u32,
    ring_iova: u64,
    ring_descs: u32,
) -> Result<(), E1000eError> {
    checked_queue(regs, "TX", queue, ring_iova, ring_descs, write_tx_ring)
}

/// `write` of queue `queue`'s ring once queue and ring are checked.
fn checked_queue<M: Mmio>(
    regs: &M,
    which: &str,
    queue: u32,
    iova: u64,
    descs: u32,
    write: fn(&M, u32, u64, u32),
) -> Result<(), E1000eError> {
    check_queue(queue)?;
    check_ring(which, iova, descs)?;
    write(regs, queue, iova, descs);
    Ok(())
}

/// Turns unicast and multicast promiscuous mode (RCTL.UPE | RCTL.MPE, 82574 §10.2.5 RCTL
/// bits 3 and 4) on or off, leaving the rest of RCTL as it is. Broadcasts are governed by
/// RCTL.BAM, which [`configure_rx`] sets; with both off, unicast frames must match a
/// receive address entry ([`super::set_unicast_filter`]) and multicast frames the MTA,
/// which [`configure_rx`] clears.
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

    const RX: RxRingConfig = RxRingConfig {
        ring_iova: 0x0000_0001_2345_6000,
        ring_descs: 256,
        buf_size: 2048,
        promisc: false,
        checksum: true,
    };
    const TX: TxRingConfig = TxRingConfig {
        ring_iova: 0x0000_0002_0000_1000,
        ring_descs: 512,
    };

    #[test]
    fn rx_checksum_offload_follows_the_config() {
        let on = RecordedRegs::new();
        configure_rx(&on, &RX).unwrap();
        assert_eq!(on.last_write(RXCSUM), Some(RXCSUM_IPOFLD | RXCSUM_TUOFLD));
        let off = RecordedRegs::new();
        configure_rx(
            &off,
            &RxRingConfig {
                checksum: false,
                ..RX
            },
        )
        .unwrap();
        assert_eq!(off.last_write(RXCSUM), Some(0));
    }

    #[test]
    fn configure_rx_writes_ring_before_enable() {
        let r = RecordedRegs::new().with(RCTL, RCTL_EN | RCTL_UPE);
        configure_rx(&r, &RX).unwrap();
        let w: Vec<(u32, u32)> = r
            .writes()
            .into_iter()
            .filter(|&(off, _)| !(MTA..MTA + 4 * MTA_LEN).contains(&off))
            .collect();
        assert_eq!(
            w,
            vec![
                (RCTL, RCTL_UPE),
                (RDBAL, 0x2345_6000),
                (RDBAH, 0x1),
                (RDLEN, 256 * 16),
                (RDH, 0),
                (RDT, 0),
                (RXDCTL, RXDCTL_GRAN | (1 << RXDCTL_WTHRESH_SHIFT)),
                (RFCTL, RFCTL_EXSTEN),
                (RXCSUM, RXCSUM_IPOFLD | RXCSUM_TUOFLD),
                (RDTR, 0),
                (RADV, 0),
                (RSRPD, 0),
                (RCTL, RCTL_EN | RCTL_BAM | RCTL_SECRC | RCTL_BSIZE_2048),
            ]
        );
        // All 128 MTA registers zeroed, before the enabling RCTL write.
        let mta: Vec<(u32, u32)> = r
            .writes()
            .into_iter()
            .filter(|&(off, _)| (MTA..MTA + 4 * MTA_LEN).contains(&off))
            .collect();
        assert_eq!(mta.len(), 128);
        assert!(mta.iter().all(|&(_, v)| v == 0));
        assert_eq!(r.last_write_index(RCTL), Some(r.log().len() - 1));
        // The enabling write is the only one with EN, and comes after every ring register.
        let enable = r.last_write_index(RCTL).unwrap();
        for off in [RDBAL, RDBAH, RDLEN, RDH, RDT, RFCTL, RXCSUM] {
            assert!(r.last_write_index(off).unwrap() < enable);
        }
    }

    #[test]
    fn configure_rx_buffer_sizes_and_lpe() {
        let cases = [
            (256, RCTL_BSIZE_256, false),
            (512, RCTL_BSIZE_512, false),
            (1024, RCTL_BSIZE_1024, false),
            (2048, RCTL_BSIZE_2048, false),
            (4096, RCTL_BSIZE_4096, true),
            (8192, RCTL_BSIZE_8192, true),
            (16384, RCTL_BSIZE_16384, true),
        ];
        for (size, bits, lpe) in cases {
            let cfg = RxRingConfig {
                buf_size: size,
                ..RX
            };
            let r = RecordedRegs::new();
            configure_rx(&r, &cfg).unwrap();
            let rctl = r.last_write(RCTL).unwrap();
            assert_eq!(rctl & (RCTL_BSIZE_MASK | RCTL_BSEX), bits, "size {size}");
            assert_eq!(rctl & RCTL_LPE != 0, lpe, "size {size}");
            assert_eq!(rctl & RCTL_DTYP_MASK, 0);
            assert_eq!(rctl & RCTL_FLXBUF_MASK, 0);
        }
    }

    #[test]
    fn configure_rx_promisc() {
        let r = RecordedRegs::new();
        configure_rx(
            &r,
            &RxRingConfig {
                promisc: true,
                ..RX
            },
        )
        .unwrap();
        let rctl = r.last_write(RCTL).unwrap();
        assert_eq!(rctl & (RCTL_UPE | RCTL_MPE), RCTL_UPE | RCTL_MPE);
    }

    #[test]
    fn configure_rx_against_qemu_model_leaves_an_empty_enabled_ring() {
        let r = RecordedRegs::e1000e_qemu([0x52, 0x54, 0, 0, 0, 1]);
        configure_rx(&r, &RX).unwrap();
        assert_eq!(r.get(RDBAL), 0x2345_6000);
        assert_eq!(r.get(RDLEN), 4096);
        assert_eq!(r.get(RDH), r.get(RDT));
        assert_ne!(r.get(RCTL) & RCTL_EN, 0);
        assert_ne!(r.get(RFCTL) & RFCTL_EXSTEN, 0);
    }

    #[test]
    fn rx_and_tx_configs_are_validated() {
        let bad_rx = [
            RxRingConfig {
                ring_iova: 0x1008,
                ..RX
            },
            RxRingConfig {
                ring_descs: 0,
                ..RX
            },
            RxRingConfig {
                ring_descs: 100,
                ..RX
            },
            RxRingConfig {
                ring_descs: MAX_RING_DESCS + 8,
                ..RX
            },
            RxRingConfig {
                buf_size: 1500,
                ..RX
            },
        ];
        for cfg in bad_rx {
            let err = cfg.validate().unwrap_err();
            assert!(
                matches!(err, E1000eError::InvalidRingConfig { .. }),
                "{cfg:?}"
            );
        }
        assert!(RxRingConfig {
            ring_descs: MAX_RING_DESCS,
            ..RX
        }
        .validate()
        .is_ok());
        assert!(TxRingConfig {
            ring_descs: 12,
            ..TX
        }
        .validate()
        .unwrap_err()
        .to_string()
        .contains("multiple of 8"));
        assert!(TX.validate().is_ok());
    }

    #[test]
    fn configure_rx_refuses_a_bad_ring() {
        let r = RecordedRegs::new();
        let e = configure_rx(
            &r,
            &RxRingConfig {
                ring_iova: 0x1004,
                ..RX
            },
        );
        assert!(
            matches!(e, Err(E1000eError::InvalidRingConfig { .. })),
            "{e:?}"
        );
        assert!(r.writes().is_empty(), "nothing written for a refused ring");
    }

    #[test]
    fn configure_tx_refuses_a_bad_ring() {
        let r = RecordedRegs::new();
        let e = configure_tx(
            &r,
            &TxRingConfig {
                ring_descs: 4,
                ..TX
            },
        );
        assert!(
            matches!(e, Err(E1000eError::InvalidRingConfig { .. })),
            "{e:?}"
        );
        assert!(r.writes().is_empty(), "nothing written for a refused ring");
    }

    #[test]
    fn configure_tx_sequence_and_tarc_enable() {
        let r = RecordedRegs::new()
            .with(TCTL, TCTL_EN | TCTL_PSP)
            .with(TARC0, 0x3);
        configure_tx(&r, &TX).unwrap();
        assert_eq!(
            r.writes(),
            vec![
                (TCTL, TCTL_PSP),
                (TDBAL, 0x1000),
                (TDBAH, 0x2),
                (TDLEN, 512 * 16),
                (TDH, 0),
                (TDT, 0),
                (
                    TXDCTL,
                    TXDCTL_GRAN | (1 << TXDCTL_WTHRESH_SHIFT) | TXDCTL_COUNT_DESC
                ),
                (TARC0, 0x3 | TARC_ENABLE),
                (TIDV, 0),
                (TADV, 0),
                (TIPG, 0x0060_2008),
                (TCTL, TCTL_EN | TCTL_PSP | (0x0F << 4) | (0x3F << 12)),
            ]
        );
        assert_ne!(r.get(TARC0) & (1 << 10), 0, "TARC0 bit 10 must be set");
    }

    #[test]
    fn configure_tx_enables_last() {
        let r = RecordedRegs::e1000e_qemu([0x52, 0x54, 0, 0, 0, 1]);
        configure_tx(&r, &TX).unwrap();
        let enable = r.last_write_index(TCTL).unwrap();
        assert_eq!(enable, r.log().len() - 1);
        for off in [TDBAL, TDBAH, TDLEN, TDH, TDT, TARC0] {
            assert!(r.last_write_index(off).unwrap() < enable);
        }
        assert_eq!(r.get(TARC0), 0x403);
    }

    #[test]
    fn queue_1_rings_use_the_queue_1_registers() {
        let r = RecordedRegs::new().with(TARC1, 0x3);
        configure_rx_queue(&r, 1, 0x1_0000_2000, 64).unwrap();
        configure_tx_queue(&r, 1, 0x3000, 128).unwrap();
        assert_eq!(
            (r.get(RDBAL1), r.get(RDBAH1), r.get(RDLEN1)),
            (0x2000, 1, 64 * 16)
        );
        assert_eq!((r.get(TDBAL1), r.get(TDLEN1)), (0x3000, 128 * 16));
        assert_eq!(r.get(TARC1), 0x3 | TARC_ENABLE);
        assert!(r.writes_to(RDBAL).is_empty() && r.writes_to(TDBAL).is_empty());
        for q in [0, 2] {
            assert!(configure_rx_queue(&r, q, 0x2000, 64).is_err());
        }
        assert!(configure_tx_queue(&r, 1, 0x3008, 128).is_err());
    }

    #[test]
    fn promisc_toggles_only_upe_mpe() {
        let base = RCTL_EN | RCTL_BAM | RCTL_SECRC;
        let r = RecordedRegs::new().with(RCTL, base);
        set_promisc(&r, true);
        assert_eq!(r.get(RCTL), base | RCTL_UPE | RCTL_MPE);
        set_promisc(&r, false);
        assert_eq!(r.get(RCTL), base);
        assert_eq!(r.writes_to(RCTL).len(), 2);
    }
}
