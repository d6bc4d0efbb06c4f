//! Statistics counters.

use super::regs::*;
use crate::mmio::Mmio;

/// Running totals of the device's statistics counters (82574 §10.2, statistics register
/// descriptions), one field per counter, named after its register. The 64-bit octet
/// counters (`gorc`, `gotc`, `tor`, `tot`) drop the L/H suffix.
///
/// The device counters are read-to-clear; [`accumulate`](Self::accumulate) adds what
/// they counted since the last read. Call it often enough that no 32-bit counter wraps
/// (at 1.49 Mpps, GPRC takes 48 minutes).
///
/// What QEMU 10.0 counts (everything else reads 0 there): GPRC, TPR, GORC, TOR, BPRC,
/// MPRC, PRC64-PRC1522, RUC, ROC, GPTC, TPT, GOTC, TOT, BPTC, MPTC, PTC64-PTC1522, TSCTC,
/// IAC. In particular MPC and RNBC stay 0: QEMU holds frames back instead of dropping
/// them when the ring is full.
#[derive(Default, Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // Fields are the registers of the same name.
pub struct HwStats {
    pub crcerrs: u64,
    pub algnerrc: u64,
    pub symerrs: u64,
    pub rxerrc: u64,
    pub mpc: u64,
    pub scc: u64,
    pub ecol: u64,
    pub mcc: u64,
    pub latecol: u64,
    pub colc: u64,
    pub dc: u64,
    pub tncrs: u64,
    pub sec: u64,
    pub cexterr: u64,
    pub rlec: u64,
    pub xonrxc: u64,
    pub xontxc: u64,
    pub xoffrxc: u64,
    pub xofftxc: u64,
    pub fcruc: u64,
    pub prc64: u64,
    pub prc127: u64,
    pub prc255: u64,
    pub prc511: u64,
    pub prc1023: u64,
    pub prc1522: u64,
    pub gprc: u64,
    pub bprc: u64,
    pub mprc: u64,
    pub gptc: u64,
    pub gorc: u64,
    pub gotc: u64,
    pub rnbc: u64,
    pub ruc: u64,
    pub rfc: u64,
    pub roc: u64,
    pub rjc: u64,
    pub mgtprc: u64,
    pub mgtpdc: u64,
    pub mgtptc: u64,
    pub tor: u64,
    pub tot: u64,
    pub tpr: u64,
    pub tpt: u64,
    pub ptc64: u64,
    pub ptc127: u64,
    pub ptc255: u64,
    pub ptc511: u64,
    pub ptc1023: u64,
    pub ptc1522: u64,
    pub mptc: u64,
    pub bptc: u64,
    pub tsctc: u64,
    pub tsctfc: u64,
    pub iac: u64,
}

impl HwStats {
    /// The 32-bit counters, each with the field it adds into.
    fn counters_32(&mut self) -> [(u32, &mut u64); 51] {
        [
            (CRCERRS, &mut self.crcerrs),
            (ALGNERRC, &mut self.algnerrc),
            (SYMERRS, &mut self.symerrs),
            (RXERRC, &mut self.rxerrc),
            (MPC, &mut self.mpc),
            (SCC, &mut self.scc),
            (ECOL, &mut self.ecol),
            (MCC, &mut self.mcc),
            (LATECOL, &mut self.latecol),
            (COLC, &mut self.colc),
            (DC, &mut self.dc),
            (TNCRS, &mut self.tncrs),
            (SEC, &mut self.sec),
            (CEXTERR, &mut self.cexterr),
            (RLEC, &mut self.rlec),
            (XONRXC, &mut self.xonrxc),
            (XONTXC, &mut self.xontxc),
            (XOFFRXC, &mut self.xoffrxc),
            (XOFFTXC, &mut self.xofftxc),
            (FCRUC, &mut self.fcruc),
            (PRC64, &mut self.prc64),
            (PRC127, &mut self.prc127),
            (PRC255, &mut self.prc255),
            (PRC511, &mut self.prc511),
            (PRC1023, &mut self.prc1023),
            (PRC1522, &mut self.prc1522),
            (GPRC, &mut self.gprc),
            (BPRC, &mut self.bprc),
            (MPRC, &mut self.mprc),
            (GPTC, &mut self.gptc),
            (RNBC, &mut self.rnbc),
            (RUC, &mut self.ruc),
            (RFC, &mut self.rfc),
            (ROC, &mut self.roc),
            (RJC, &mut self.rjc),
            (MGTPRC, &mut self.mgtprc),
            (MGTPDC, &mut self.mgtpdc),
            (MGTPTC, &mut self.mgtptc),
            (TPR, &mut self.tpr),
            (TPT, &mut self.tpt),
            (PTC64, &mut self.ptc64),
            (PTC127, &mut self.ptc127),
            (PTC255, &mut self.ptc255),
            (PTC511, &mut self.ptc511),
            (PTC1023, &mut self.ptc1023),
            (PTC1522, &mut self.ptc1522),
            (MPTC, &mut self.mptc),
            (BPTC, &mut self.bptc),
            (TSCTC, &mut self.tsctc),
            (TSCTFC, &mut self.tsctfc),
            (IAC, &mut self.iac),
        ]
    }

    /// The 64-bit counters as `(low, high)` registers, each with its field.
    fn counters_64(&mut self) -> [(u32, u32, &mut u64); 4] {
        [
            (GORCL, GORCH, &mut self.gorc),
            (GOTCL, GOTCH, &mut self.gotc),
            (TORL, TORH, &mut self.tor),
            (TOTL, TOTH, &mut self.tot),
        ]
    }

    /// Reads every counter (which clears it) and adds it to the totals.
    ///
    /// The 64-bit octet counters are read low dword first, then high: the pair is cleared
    /// when the high dword is read, so reading high first would lose the low half (QEMU
    /// `e1000e_mac_read_clr8`, `hw/net/e1000e_core.c:2629-2637`, clears both on the high
    /// read and treats a low read as a plain read; Linux's e1000e reads L then H too).
    pub fn accumulate(&mut self, regs: &impl Mmio) {
        for (offset, total) in self.counters_32() {
            *total = total.saturating_add(u64::from(regs.read32(offset)));
        }
        for (low, high, total) in self.counters_64() {
            let lo = u64::from(regs.read32(low));
            let hi = u64::from(regs.read32(high));
            *total = total.saturating_add((hi << 32) | lo);
        }
    }
}

/// Zeroes the device's statistics by reading every counter once (they are read-to-clear).
pub fn clear_stats(regs: &impl Mmio) {
    HwStats::default().accumulate(regs);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmio::{Access, RecordedRegs};

    fn counters_device() -> RecordedRegs {
        let r = RecordedRegs::new();
        for &off in STATS_32 {
            r.read_to_clear(off);
        }
        for &(lo, hi) in STATS_64 {
            r.read_to_clear_pair(lo, hi);
        }
        r
    }

    #[test]
    fn register_lists_agree() {
        let mut s = HwStats::default();
        let mine: Vec<u32> = s.counters_32().iter().map(|(o, _)| *o).collect();
        assert_eq!(mine, STATS_32);
        let mine64: Vec<(u32, u32)> = s.counters_64().iter().map(|(l, h, _)| (*l, *h)).collect();
        assert_eq!(mine64, STATS_64);
    }

    #[test]
    fn accumulates_across_two_reads_including_64_bit_octets() {
        let r = counters_device();
        r.set(GPRC, 10).set(GPTC, 7).set(MPC, 1).set(RNBC, 2);
        r.set(GORCL, 0xFFFF_FFF0).set(GORCH, 0x1);
        r.set(GOTCL, 600).set(GOTCH, 0);
        r.set(TORL, 0x10).set(TORH, 0x2);

        let mut s = HwStats::default();
        s.accumulate(&r);
        assert_eq!(s.gprc, 10);
        assert_eq!(s.gptc, 7);
        assert_eq!(s.mpc, 1);
        assert_eq!(s.rnbc, 2);
        assert_eq!(s.gorc, 0x1_FFFF_FFF0);
        assert_eq!(s.gotc, 600);
        assert_eq!(s.tor, 0x2_0000_0010);
        // Everything read was cleared.
        for &off in STATS_32 {
            assert_eq!(r.get(off), 0, "{off:#x}");
        }
        assert_eq!(r.get(GORCL), 0);

        // More traffic; the second read adds to the totals, and the low dword's carry is
        // the device's business: 0x1_FFFF_FFF0 + 0x20 crosses 2^33.
        r.set(GPRC, 5).set(GORCL, 0x20).set(GORCH, 0);
        r.set(GOTCL, 0).set(GOTCH, 0x3);
        s.accumulate(&r);
        assert_eq!(s.gprc, 15);
        assert_eq!(s.gptc, 7);
        assert_eq!(s.gorc, 0x2_0000_0010);
        assert_eq!(s.gotc, 0x3_0000_0000 + 600);
        assert_eq!(s.tor, 0x2_0000_0010);
    }

    #[test]
    fn reads_low_before_high() {
        let r = counters_device();
        HwStats::default().accumulate(&r);
        let log = r.log();
        for &(lo, hi) in STATS_64 {
            let l = log.iter().position(|a| *a == Access::Read(lo, 0)).unwrap();
            assert_eq!(log[l + 1], Access::Read(hi, 0));
        }
        // Each counter read exactly once, nothing written.
        assert_eq!(log.len(), STATS_32.len() + 2 * STATS_64.len());
        assert!(r.writes().is_empty());
    }

    #[test]
    fn high_first_would_lose_the_low_half() {
        // Documents why the order matters, against the QEMU semantics of the pair.
        let r = counters_device();
        r.set(GORCL, 100).set(GORCH, 1);
        let hi = r.read32(GORCH);
        let lo = r.read32(GORCL);
        assert_eq!((hi, lo), (1, 0));
    }

    #[test]
    fn totals_saturate() {
        let r = counters_device();
        r.set(GPRC, 5);
        let mut s = HwStats {
            gprc: u64::MAX - 1,
            ..HwStats::default()
        };
        s.accumulate(&r);
        assert_eq!(s.gprc, u64::MAX);
    }

    #[test]
    fn clear_stats_zeroes_the_device() {
        let r = counters_device();
        r.set(TPR, 3).set(TOTL, 9).set(TOTH, 9);
        clear_stats(&r);
        assert_eq!((r.get(TPR), r.get(TOTL), r.get(TOTH)), (0, 0, 0));
    }
}
