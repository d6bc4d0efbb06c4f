//! A scripted register file for tests: values, an access log, per-register hooks, and a
//! virtual clock.
//!
//! Available in this crate's tests and, with the `testing` feature, to other crates:
//!
//! ```toml
//! [dev-dependencies]
//! tenge-firmware-iface = { workspace = true, features = ["testing"] }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Delay, Mmio, NarrowMmio};
use crate::e1000e::regs;

/// One register access, as logged by [`RecordedRegs`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// A read of `offset` that returned `value`.
    Read(u32, u32),
    /// A write of `value` to `offset`.
    Write(u32, u32),
}

impl Access {
    /// The register offset.
    pub fn offset(&self) -> u32 {
        match *self {
            Access::Read(off, _) | Access::Write(off, _) => off,
        }
    }

    /// The value read or written.
    pub fn value(&self) -> u32 {
        match *self {
            Access::Read(_, v) | Access::Write(_, v) => v,
        }
    }

    /// Whether this is a write.
    pub fn is_write(&self) -> bool {
        matches!(self, Access::Write(..))
    }
}

/// The register values and virtual clock behind a [`RecordedRegs`], as hooks see them.
///
/// Registers never written read as 0.
#[derive(Clone, Debug, Default)]
pub struct RegFile {
    values: BTreeMap<u32, u32>,
    elapsed_us: u64,
}

impl RegFile {
    /// The stored value of `offset` (0 if never set).
    pub fn get(&self, offset: u32) -> u32 {
        self.values.get(&offset).copied().unwrap_or(0)
    }

    /// Stores `value` at `offset`.
    pub fn set(&mut self, offset: u32, value: u32) {
        self.values.insert(offset, value);
    }

    /// Replaces every stored value with `values` (registers not in it read as 0). The
    /// clock keeps running.
    pub fn replace_all(&mut self, values: &BTreeMap<u32, u32>) {
        self.values.clone_from(values);
    }

    /// Microseconds of virtual time waited so far through [`RecordedDelay`] or
    /// [`RecordedRegs::advance_us`].
    pub fn elapsed_us(&self) -> u64 {
        self.elapsed_us
    }
}

/// Computes the value a read of `offset` returns; may change the file (read-to-clear).
pub type ReadHook = Box<dyn FnMut(&mut RegFile, u32) -> u32 + Send>;
/// Applies a write of `value` to `offset` (arguments: file, offset, value).
pub type WriteHook = Box<dyn FnMut(&mut RegFile, u32, u32) + Send>;

#[derive(Default)]
struct Inner {
    file: RegFile,
    log: Vec<Access>,
    /// Width in bytes of each access in `log` (same length).
    widths: Vec<u8>,
    read_hooks: HashMap<u32, ReadHook>,
    write_hooks: HashMap<u32, WriteHook>,
}

/// A register file that records every access, for unit tests of register sequences.
///
/// - Values: a map offset → value; unset registers read 0. [`set`](Self::set) and
///   [`get`](Self::get) bypass hooks and the log.
/// - Log: every [`Mmio`] access in order, as [`Access::Read`]/[`Access::Write`], with
///   helpers to assert on writes and their order. [`NarrowMmio`] accesses are logged the
///   same way (value zero-extended) and [`log_with_widths`](Self::log_with_widths) tells
///   them apart. A narrow access goes to the register at exactly its offset: registers are
///   keyed by offset, so a model of a block with 8- and 16-bit fields keys each field by
///   its own offset; a narrow read returns the low bytes of what the register (or its
///   read hook) holds, a narrow write stores (or hands its hook) the zero-extended value.
/// - Hooks: at most one read hook and one write hook per offset (installing another
///   replaces it). Without hooks a write stores and a read returns the stored value.
///   Ready-made hooks model the behaviours sequences wait for: self-clearing bits
///   ([`self_clearing`](Self::self_clearing)), read-to-clear counters
///   ([`read_to_clear`](Self::read_to_clear), [`read_to_clear_pair`](Self::read_to_clear_pair)),
///   the EERD NVM handshake ([`eerd`](Self::eerd)), bits that appear after some virtual time
///   ([`bits_set_after`](Self::bits_set_after)). [`e1000e_qemu`](Self::e1000e_qemu) builds a
///   whole 82574 as QEMU 10.0 models it.
/// - Clock: [`delay`](Self::delay) hands out a [`Delay`] that advances a virtual clock
///   instead of sleeping, so timeout paths run instantly and hooks can depend on time.
///
/// It is `Send + Sync` (a mutex inside), so it can stand in for a BAR shared by threads.
#[derive(Default)]
pub struct RecordedRegs {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for RecordedRegs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("RecordedRegs")
            .field("values", &inner.file.values)
            .field("elapsed_us", &inner.file.elapsed_us)
            .field("accesses", &inner.log.len())
            .finish()
    }
}

impl RecordedRegs {
    /// An empty register file: every register reads 0, no hooks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builder form of [`set`](Self::set).
    pub fn with(self, offset: u32, value: u32) -> Self {
        self.set(offset, value);
        self
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A hook that panicked poisons the mutex; the file is still usable for assertions.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `value` at `offset` without hooks or logging.
    pub fn set(&self, offset: u32, value: u32) -> &Self {
        self.lock().file.set(offset, value);
        self
    }

    /// The stored value at `offset`, without hooks or logging.
    pub fn get(&self, offset: u32) -> u32 {
        self.lock().file.get(offset)
    }

    /// Installs `hook` to compute reads of `offset`.
    pub fn on_read(
        &self,
        offset: u32,
        hook: impl FnMut(&mut RegFile, u32) -> u32 + Send + 'static,
    ) -> &Self {
        self.lock().read_hooks.insert(offset, Box::new(hook));
        self
    }

    /// Installs `hook` to apply writes to `offset`.
    pub fn on_write(
        &self,
        offset: u32,
        hook: impl FnMut(&mut RegFile, u32, u32) + Send + 'static,
    ) -> &Self {
        self.lock().write_hooks.insert(offset, Box::new(hook));
        self
    }

    // ---- ready-made hooks ----

    /// Bits `mask` of `offset` clear by themselves: a write that sets any of them stores
    /// the value, the next `after_reads` reads still see the bits, and reads after that see
    /// them clear. `after_reads == 0` clears them at once (QEMU's CTRL.RST).
    pub fn self_clearing(&self, offset: u32, mask: u32, after_reads: u32) -> &Self {
        let pending = Arc::new(AtomicU32::new(0));
        let on_write = Arc::clone(&pending);
        self.on_write(offset, move |file, off, value| {
            if value & mask != 0 && after_reads == 0 {
                file.set(off, value & !mask);
            } else {
                file.set(off, value);
                let reads = if value & mask != 0 { after_reads } else { 0 };
                on_write.store(reads, Ordering::Relaxed);
            }
        });
        self.on_read(offset, move |file, off| {
            let value = file.get(off);
            let left = pending.load(Ordering::Relaxed);
            if left > 0 {
                pending.store(left - 1, Ordering::Relaxed);
                if left == 1 {
                    file.set(off, value & !mask);
                }
            }
            value
        })
    }

    /// A read of `offset` returns its value and clears it (a statistics counter).
    pub fn read_to_clear(&self, offset: u32) -> &Self {
        self.on_read(offset, |file, off| {
            let value = file.get(off);
            file.set(off, 0);
            value
        })
    }

    /// A 64-bit counter split in `low`/`high` registers: reading `low` returns it without
    /// clearing; reading `high` returns the high half and clears both, as QEMU's
    /// `e1000e_mac_read_clr8` does. Software must read low first, then high.
    pub fn read_to_clear_pair(&self, low: u32, high: u32) -> &Self {
        self.on_read(high, move |file, off| {
            let value = file.get(off);
            file.set(off, 0);
            file.set(low, 0);
            value
        })
    }

    /// The 82574 EERD handshake (82574 §10.2.2, EERD register: START bit 0, DONE bit 1,
    /// ADDR bits 15:2, DATA bits 31:16) over the NVM image `nvm`.
    ///
    /// A write with START and an address inside `nvm` completes after `reads_until_done`
    /// further reads of EERD (0: at once, as QEMU does): DONE, the address and the data
    /// appear. A write with an address outside `nvm` never completes (QEMU ignores
    /// addresses past its 64 words).
    pub fn eerd(&self, nvm: Vec<u16>, reads_until_done: u32) -> &Self {
        let pending = Arc::new(AtomicU32::new(0));
        let done_value = Arc::new(AtomicU32::new(0));
        let (w_pending, w_done) = (Arc::clone(&pending), Arc::clone(&done_value));
        self.on_write(regs::EERD, move |file, off, value| {
            let addr = (value >> regs::EERD_ADDR_SHIFT) & regs::EERD_ADDR_MASK;
            let in_range = (addr as usize) < nvm.len();
            if value & regs::EERD_START == 0 || !in_range {
                w_pending.store(0, Ordering::Relaxed);
                file.set(off, addr << regs::EERD_ADDR_SHIFT);
                return;
            }
            let done = regs::EERD_DONE
                | (addr << regs::EERD_ADDR_SHIFT)
                | (u32::from(nvm[addr as usize]) << regs::EERD_DATA_SHIFT);
            if reads_until_done == 0 {
                file.set(off, done);
            } else {
                file.set(off, value & !regs::EERD_DONE);
                w_done.store(done, Ordering::Relaxed);
                w_pending.store(reads_until_done, Ordering::Relaxed);
            }
        });
        self.on_read(regs::EERD, move |file, off| {
            let value = file.get(off);
            let left = pending.load(Ordering::Relaxed);
            if left > 0 {
                pending.store(left - 1, Ordering::Relaxed);
                if left == 1 {
                    file.set(off, done_value.load(Ordering::Relaxed));
                }
            }
            value
        })
    }

    /// Reads of `offset` see bits `mask` set once the virtual clock reaches `at_us` (for
    /// example STATUS.LU after QEMU's 500 ms autonegotiation timer).
    pub fn bits_set_after(&self, offset: u32, mask: u32, at_us: u64) -> &Self {
        self.on_read(offset, move |file, off| {
            let value = file.get(off);
            if file.elapsed_us() >= at_us {
                value | mask
            } else {
                value & !mask
            }
        })
    }

    // ---- clock ----

    /// A [`Delay`] that advances this file's virtual clock instead of sleeping.
    pub fn delay(&self) -> RecordedDelay<'_> {
        RecordedDelay {
            regs: self,
            calls: 0,
        }
    }

    /// Advances the virtual clock by `us`.
    pub fn advance_us(&self, us: u64) {
        self.lock().file.elapsed_us += us;
    }

    /// Virtual microseconds waited so far.
    pub fn elapsed_us(&self) -> u64 {
        self.lock().file.elapsed_us
    }

    // ---- log ----

    /// Every access so far, in order.
    pub fn log(&self) -> Vec<Access> {
        self.lock().log.clone()
    }

    /// Every access so far, in order, with its width in bytes (1, 2 or 4).
    pub fn log_with_widths(&self) -> Vec<(Access, u8)> {
        let inner = self.lock();
        inner
            .log
            .iter()
            .copied()
            .zip(inner.widths.iter().copied())
            .collect()
    }

    /// Every access so far, in order, and forgets them.
    pub fn take_log(&self) -> Vec<Access> {
        let mut inner = self.lock();
        inner.widths.clear();
        std::mem::take(&mut inner.log)
    }

    /// Forgets the accesses so far (values and hooks stay).
    pub fn clear_log(&self) {
        let mut inner = self.lock();
        inner.log.clear();
        inner.widths.clear();
    }

    /// Every write so far as `(offset, value)`, in order.
    pub fn writes(&self) -> Vec<(u32, u32)> {
        self.lock()
            .log
            .iter()
            .filter_map(|a| match *a {
                Access::Write(off, v) => Some((off, v)),
                Access::Read(..) => None,
            })
            .collect()
    }

    /// The values written to `offset`, in order.
    pub fn writes_to(&self, offset: u32) -> Vec<u32> {
        self.writes()
            .into_iter()
            .filter(|&(off, _)| off == offset)
            .map(|(_, v)| v)
            .collect()
    }

    /// The last value written to `offset`, if any.
    pub fn last_write(&self, offset: u32) -> Option<u32> {
        self.writes_to(offset).last().copied()
    }

    /// How many times `offset` was read.
    pub fn reads_of(&self, offset: u32) -> usize {
        self.lock()
            .log
            .iter()
            .filter(|a| matches!(a, Access::Read(off, _) if *off == offset))
            .count()
    }

    /// The offsets written, in order (one entry per write).
    pub fn written_offsets(&self) -> Vec<u32> {
        self.writes().into_iter().map(|(off, _)| off).collect()
    }

    /// Index in [`log`](Self::log) of the first write to `offset`.
    pub fn first_write_index(&self, offset: u32) -> Option<usize> {
        self.lock()
            .log
            .iter()
            .position(|a| matches!(a, Access::Write(off, _) if *off == offset))
    }

    /// Index in [`log`](Self::log) of the last write to `offset`.
    pub fn last_write_index(&self, offset: u32) -> Option<usize> {
        self.lock()
            .log
            .iter()
            .rposition(|a| matches!(a, Access::Write(off, _) if *off == offset))
    }

    // ---- a whole device ----

    /// An 82574L as QEMU 10.0's `e1000e` model presents it right after reset, with `mac`
    /// as its `-device e1000e,mac=` address.
    ///
    /// Modelled (QEMU `hw/net/e1000e_core.c` line numbers):
    /// - reset values of the registers the sequences touch (`e1000e_mac_reg_init`, 3409):
    ///   CTRL with SLU, STATUS.LU (link is up at once), EECD.AUTO_RD|PRES, RXDCTL.WTHRESH=1,
    ///   TIPG, TARC0/1 = 0x403 (ENABLE set), RXCSUM = IPOFLD|TUOFLD, ITR = 500, and RAL0/RAH0
    ///   holding `mac` with RAH.AV (`e1000x_reset_mac_addr`);
    /// - CTRL.RST restores all of that at once and reads back clear (`e1000e_set_ctrl`,
    ///   1816, calling `e1000e_reset`, 3451);
    /// - STATUS reads add FD, speed 1000 and GIO_MASTER_ENABLE unless CTRL.GIO_MASTER_DISABLE
    ///   (`e1000e_get_status`, 2656); writes to it are ignored;
    /// - EERD completes in the write, over a 64-word NVM whose words 0..2 hold `mac`
    ///   (`e1000e_set_eerd`, 2739; `e1000x_core_prepare_eeprom`);
    /// - IMS/IMC set and clear the mask; ICR is read-to-clear;
    /// - RDBAL/TDBAL drop their low 4 bits, RDLEN/TDLEN keep bits 19:7, RDH/RDT/TDH/TDT
    ///   keep 16 bits (`e1000e_set_dbal`/`_dlen`/`_16bit`/`_rdt`/`_tdt`);
    /// - statistics are read-to-clear; 64-bit pairs clear on the high read.
    pub fn e1000e_qemu(mac: [u8; 6]) -> Self {
        let regs_file = Self::new();
        let defaults = e1000e_qemu_reset_values(mac);
        regs_file.lock().file.replace_all(&defaults);

        regs_file.on_write(regs::CTRL, move |file, off, value| {
            if value & regs::CTRL_RST != 0 {
                // QEMU resets synchronously inside the MMIO write; CTRL ends at its reset
                // value, RST clear.
                file.replace_all(&defaults);
            } else {
                file.set(off, value);
            }
        });
        regs_file.on_read(regs::STATUS, |file, off| {
            let mut v = file.get(off) | regs::STATUS_FD | regs::STATUS_SPEED_1000;
            if file.get(regs::CTRL) & regs::CTRL_GIO_MASTER_DISABLE == 0 {
                v |= regs::STATUS_GIO_MASTER_ENABLE;
            }
            v
        });
        regs_file.on_write(regs::STATUS, |_, _, _| {});
        regs_file.eerd(e1000e_nvm_image(mac), 0);
        regs_file.on_write(regs::IMS, |file, _, value| {
            let ims = file.get(regs::IMS) | value;
            file.set(regs::IMS, ims);
        });
        regs_file.on_write(regs::IMC, |file, _, value| {
            let ims = file.get(regs::IMS) & !value;
            file.set(regs::IMS, ims);
        });
        regs_file.read_to_clear(regs::ICR);
        for off in [regs::RDBAL, regs::TDBAL] {
            regs_file.on_write(off, |file, off, v| file.set(off, v & !0xF));
        }
        for off in [regs::RDLEN, regs::TDLEN] {
            regs_file.on_write(off, |file, off, v| file.set(off, v & 0x000F_FF80));
        }
        for off in [regs::RDH, regs::RDT, regs::TDH, regs::TDT] {
            regs_file.on_write(off, |file, off, v| file.set(off, v & 0xFFFF));
        }
        for &off in regs::STATS_32 {
            regs_file.read_to_clear(off);
        }
        for &(low, high) in regs::STATS_64 {
            regs_file.read_to_clear_pair(low, high);
        }
        regs_file
    }
}

impl RecordedRegs {
    /// An 82576 as QEMU 10's `igb` model presents it after a device reset, with `mac` as
    /// its `-device igb,mac=` address.
    ///
    /// Modelled (QEMU `hw/net/igb_core.c`):
    /// - reset values of the registers the sequences touch (`igb_mac_reg_init`): CTRL with
    ///   LRST, STATUS without LU (the link stays down until the PHY's autonegotiation is
    ///   restarted), EECD without AUTO_RD, RXDCTL0/TXDCTL0 with ENABLE and RXDCTL1-15
    ///   without, WTHRESH 1 in every RXDCTL, RXCSUM = IPOFLD|TUOFLD, TCTL with PSP, and
    ///   RAL0/RAH0 holding `mac` with AV (`e1000x_reset_mac_addr`);
    /// - CTRL.RST restores all of that inside the write and reads back clear (`igb_set_ctrl`);
    /// - STATUS reads add FD and speed 1000, and GIO_MASTER_ENABLE unless
    ///   CTRL.GIO_MASTER_DISABLE or CTRL.LRST (`igb_get_status`); writes are ignored;
    /// - an MDIC write to PHY 1's control register with autonegotiation enable and restart
    ///   clears STATUS.LU and sets it 500 ms of virtual time later (`igb_set_phy_ctrl`,
    ///   `e1000x_restart_autoneg`, `igb_autoneg_timer`); every MDIC access completes at once
    ///   with MDIC.R, and one to another PHY address sets MDIC.E (`igb_set_mdic`);
    /// - RXDCTL/TXDCTL store what is written (ENABLE reads back as written);
    /// - IMS/IMC set and clear the mask; ICR and EICR are read-to-clear;
    /// - statistics are read-to-clear, 64-bit pairs clear on the high read.
    pub fn igb_qemu(mac: [u8; 6]) -> Self {
        use crate::igb::regs as r;
        let regs_file = Self::new();
        let defaults = igb_qemu_reset_values(mac);
        regs_file.lock().file.replace_all(&defaults);
        // When the autonegotiation restarted by MDIC completes, in virtual microseconds;
        // u64::MAX while none is pending.
        let link_up_at = Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));

        let at = link_up_at.clone();
        regs_file.on_write(r::CTRL, move |file, off, value| {
            if value & r::CTRL_RST != 0 {
                file.replace_all(&defaults);
                at.store(u64::MAX, Ordering::Relaxed);
            } else {
                file.set(off, value);
            }
        });
        let at = link_up_at.clone();
        regs_file.on_read(r::STATUS, move |file, off| {
            let mut v = file.get(off) | r::STATUS_FD | r::STATUS_SPEED_1000;
            if file.elapsed_us() >= at.load(Ordering::Relaxed) {
                v |= r::STATUS_LU;
                file.set(off, file.get(off) | r::STATUS_LU);
                at.store(u64::MAX, Ordering::Relaxed);
            }
            let ctrl = file.get(r::CTRL);
            if ctrl & (r::CTRL_GIO_MASTER_DISABLE | r::CTRL_LRST) == 0 {
                v |= r::STATUS_GIO_MASTER_ENABLE;
            }
            v
        });
        regs_file.on_write(r::STATUS, |_, _, _| {});
        let at = link_up_at;
        regs_file.on_write(r::MDIC, move |file, off, value| {
            let phy = (value >> r::MDIC_PHYADD_SHIFT) & 0x1F;
            let reg = (value >> r::MDIC_REGADD_SHIFT) & 0x1F;
            if phy != r::PHY_ADDR {
                file.set(off, value | r::MDIC_R | r::MDIC_E);
                return;
            }
            let restart = r::PHY_CTRL_AUTONEG_EN | r::PHY_CTRL_RESTART_AUTONEG;
            if value & r::MDIC_OP_WRITE != 0 && reg == r::PHY_CTRL && value & restart == restart {
                file.set(r::STATUS, file.get(r::STATUS) & !r::STATUS_LU);
                at.store(file.elapsed_us() + 500_000, Ordering::Relaxed);
            }
            file.set(off, value | r::MDIC_R);
        });
        regs_file.on_write(r::IMS, |file, _, value| {
            let ims = file.get(r::IMS) | value;
            file.set(r::IMS, ims);
        });
        regs_file.on_write(r::IMC, |file, _, value| {
            let ims = file.get(r::IMS) & !value;
            file.set(r::IMS, ims);
        });
        regs_file.read_to_clear(r::ICR);
        regs_file.read_to_clear(r::EICR);
        for &off in regs::STATS_32 {
            regs_file.read_to_clear(off);
        }
        for &(low, high) in regs::STATS_64 {
            regs_file.read_to_clear_pair(low, high);
        }
        regs_file
    }
}

fn igb_qemu_reset_values(mac: [u8; 6]) -> BTreeMap<u32, u32> {
    use crate::igb::regs as r;
    let mut v = BTreeMap::new();
    // igb_mac_reg_init (hw/net/igb_core.c), the registers this crate uses.
    v.insert(r::CTRL, r::CTRL_FD | r::CTRL_LRST | (0b10 << 8));
    v.insert(r::STATUS, r::STATUS_PHYRA | (1 << 31));
    v.insert(r::EECD, r::EECD_PRES);
    for q in 0..r::QUEUES {
        v.insert(r::queue_reg(r::RXDCTL0, q), 1 << r::XDCTL_WTHRESH_SHIFT);
    }
    v.insert(r::RXDCTL0, r::XDCTL_ENABLE | (1 << r::XDCTL_WTHRESH_SHIFT));
    v.insert(r::TXDCTL0, r::XDCTL_ENABLE);
    v.insert(r::TIPG, 0x08 | (0x04 << 10) | (0x06 << 20));
    v.insert(r::RXCSUM, r::RXCSUM_IPOFLD | r::RXCSUM_TUOFLD);
    v.insert(
        r::TCTL,
        r::TCTL_PSP | (0xF << r::TCTL_CT_SHIFT) | (0x40 << r::TCTL_COLD_SHIFT),
    );
    v.insert(r::RLPML, 0x2600);
    v.insert(r::VET, 0x8100_8100);
    v.insert(
        r::RAL0,
        u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]),
    );
    v.insert(
        r::RAH0,
        u32::from(u16::from_le_bytes([mac[4], mac[5]])) | r::RAH_AV,
    );
    v
}

/// A 64-word 82574 NVM image holding `mac` in words 0..2 (each word little-endian: word
/// `i` = `mac[2i] | mac[2i+1] << 8`) and a checksum word 0x3F that makes words 0x00..=0x3F
/// sum to 0xBABA, as QEMU builds it (`e1000x_core_prepare_eeprom`). Other words are 0xFFFF.
pub fn e1000e_nvm_image(mac: [u8; 6]) -> Vec<u16> {
    let mut nvm = vec![0xFFFF_u16; 64];
    for i in 0..3 {
        nvm[i] = u16::from_le_bytes([mac[2 * i], mac[2 * i + 1]]);
    }
    let sum = nvm[..regs::NVM_CHECKSUM_WORD as usize]
        .iter()
        .fold(0u16, |acc, w| acc.wrapping_add(*w));
    nvm[regs::NVM_CHECKSUM_WORD as usize] = regs::NVM_SUM.wrapping_sub(sum);
    nvm
}

fn e1000e_qemu_reset_values(mac: [u8; 6]) -> BTreeMap<u32, u32> {
    let mut v = BTreeMap::new();
    // e1000e_mac_reg_init (hw/net/e1000e_core.c:3409-3449), the registers this crate uses.
    v.insert(
        regs::CTRL,
        regs::CTRL_FD
            | regs::CTRL_SWDPIN0
            | regs::CTRL_SWDPIN2
            | regs::CTRL_SPEED_1000
            | regs::CTRL_SLU,
    );
    v.insert(regs::STATUS, regs::STATUS_ASDV_1000 | regs::STATUS_LU);
    v.insert(regs::EECD, regs::EECD_AUTO_RD | regs::EECD_PRES);
    v.insert(regs::EERD, regs::EERD_DONE);
    v.insert(regs::RXDCTL, 1 << regs::RXDCTL_WTHRESH_SHIFT);
    v.insert(regs::TIPG, 0x0060_2008);
    v.insert(regs::TARC0, 0x3 | regs::TARC_ENABLE);
    v.insert(regs::TARC1, 0x3 | regs::TARC_ENABLE);
    v.insert(regs::RXCSUM, regs::RXCSUM_IPOFLD | regs::RXCSUM_TUOFLD);
    v.insert(regs::ITR, 500);
    v.insert(regs::PBA, 0x0014_0014);
    // e1000x_reset_mac_addr (hw/net/e1000x_common.c:169-184).
    v.insert(
        regs::RAL0,
        u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]),
    );
    v.insert(
        regs::RAH0,
        u32::from(u16::from_le_bytes([mac[4], mac[5]])) | regs::RAH_AV,
    );
    v
}

/// A [`Delay`] that advances a [`RecordedRegs`]'s virtual clock (see
/// [`RecordedRegs::delay`]).
#[derive(Debug)]
pub struct RecordedDelay<'a> {
    regs: &'a RecordedRegs,
    calls: u32,
}

impl RecordedDelay<'_> {
    /// How many times [`Delay::delay_us`] was called.
    pub fn calls(&self) -> u32 {
        self.calls
    }
}

impl Delay for RecordedDelay<'_> {
    fn delay_us(&mut self, us: u32) {
        self.calls += 1;
        self.regs.advance_us(u64::from(us));
    }
}

impl RecordedRegs {
    /// One read of `bytes` bytes at `offset`: the hook's or the stored value, truncated.
    fn read_sized(&self, offset: u32, bytes: u8) -> u32 {
        let mut guard = self.lock();
        let Inner {
            file,
            log,
            widths,
            read_hooks,
            ..
        } = &mut *guard;
        let value = match read_hooks.get_mut(&offset) {
            Some(hook) => hook(file, offset),
            None => file.get(offset),
        } & width_mask(bytes);
        log.push(Access::Read(offset, value));
        widths.push(bytes);
        value
    }

    /// One write of `bytes` bytes at `offset`.
    fn write_sized(&self, offset: u32, value: u32, bytes: u8) {
        let mut guard = self.lock();
        let Inner {
            file,
            log,
            widths,
            write_hooks,
            ..
        } = &mut *guard;
        log.push(Access::Write(offset, value));
        widths.push(bytes);
        match write_hooks.get_mut(&offset) {
            Some(hook) => hook(file, offset, value),
            None => file.set(offset, value),
        }
    }
}

fn width_mask(bytes: u8) -> u32 {
    match bytes {
        1 => 0xff,
        2 => 0xffff,
        _ => u32::MAX,
    }
}

impl Mmio for RecordedRegs {
    fn read32(&self, offset: u32) -> u32 {
        self.read_sized(offset, 4)
    }

    fn write32(&self, offset: u32, value: u32) {
        self.write_sized(offset, value, 4)
    }
}

impl NarrowMmio for RecordedRegs {
    fn read8(&self, offset: u32) -> u8 {
        self.read_sized(offset, 1) as u8
    }

    fn read16(&self, offset: u32) -> u16 {
        self.read_sized(offset, 2) as u16
    }

    fn write8(&self, offset: u32, value: u8) {
        self.write_sized(offset, u32::from(value), 1)
    }

    fn write16(&self, offset: u32, value: u16) {
        self.write_sized(offset, u32::from(value), 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_accesses_truncate_and_log_their_width() {
        let r = RecordedRegs::new().with(0x14, 0x1234_5678);
        assert_eq!(r.read8(0x14), 0x78);
        assert_eq!(r.read16(0x14), 0x5678);
        r.on_read(0x20, |_, _| 0xdead_beef);
        assert_eq!(r.read16(0x20), 0xbeef);
        r.write8(0x15, 0xff);
        assert_eq!(r.get(0x15), 0xff);
        r.write16(0x16, 0xabcd);
        assert_eq!(r.read32(0x16), 0xabcd);
        let widths: Vec<u8> = r.log_with_widths().iter().map(|&(_, w)| w).collect();
        assert_eq!(widths, vec![1, 2, 2, 1, 2, 4]);
        assert_eq!(r.log()[1], Access::Read(0x14, 0x5678));
        assert_eq!(r.take_log().len(), 6);
        assert!(r.log_with_widths().is_empty());
        r.write8(0x15, 1);
        r.clear_log();
        assert!(r.log_with_widths().is_empty());
    }

    #[test]
    fn plain_registers_store_and_log() {
        let r = RecordedRegs::new().with(0x8, 5);
        assert_eq!(r.read32(0x8), 5);
        r.write32(0x8, 6);
        assert_eq!(r.read32(0x8), 6);
        assert_eq!(r.read32(0x1234), 0);
        assert_eq!(
            r.log(),
            vec![
                Access::Read(0x8, 5),
                Access::Write(0x8, 6),
                Access::Read(0x8, 6),
                Access::Read(0x1234, 0),
            ]
        );
        assert_eq!(r.writes_to(0x8), vec![6]);
        assert_eq!(r.reads_of(0x8), 2);
        assert_eq!(r.first_write_index(0x8), Some(1));
        assert_eq!(r.take_log().len(), 4);
        assert!(r.log().is_empty());
    }

    #[test]
    fn self_clearing_bit_clears_after_the_given_reads() {
        let r = RecordedRegs::new();
        r.self_clearing(0x0, 1 << 26, 2);
        r.write32(0x0, (1 << 26) | 1);
        assert_eq!(r.read32(0x0), (1 << 26) | 1);
        assert_eq!(r.read32(0x0), (1 << 26) | 1);
        assert_eq!(r.read32(0x0), 1);
        // Immediate variant.
        r.self_clearing(0x0, 1 << 26, 0);
        r.write32(0x0, (1 << 26) | 3);
        assert_eq!(r.read32(0x0), 3);
    }

    #[test]
    fn read_to_clear_pair_clears_on_high_read_only() {
        let r = RecordedRegs::new()
            .with(0x10, 7)
            .with(0x14, 1)
            .with(0x20, 9);
        r.read_to_clear_pair(0x10, 0x14).read_to_clear(0x20);
        assert_eq!(r.read32(0x10), 7);
        assert_eq!(r.read32(0x10), 7);
        assert_eq!(r.read32(0x14), 1);
        assert_eq!(r.read32(0x10), 0);
        assert_eq!(r.read32(0x14), 0);
        assert_eq!(r.read32(0x20), 9);
        assert_eq!(r.read32(0x20), 0);
    }

    #[test]
    fn eerd_completes_after_reads_and_ignores_out_of_range_words() {
        let r = RecordedRegs::new();
        r.eerd(vec![0x1111, 0x2222], 1);
        r.write32(regs::EERD, (1 << regs::EERD_ADDR_SHIFT) | regs::EERD_START);
        assert_eq!(r.read32(regs::EERD) & regs::EERD_DONE, 0);
        let v = r.read32(regs::EERD);
        assert_ne!(v & regs::EERD_DONE, 0);
        assert_eq!(v >> regs::EERD_DATA_SHIFT, 0x2222);
        r.write32(regs::EERD, (2 << regs::EERD_ADDR_SHIFT) | regs::EERD_START);
        for _ in 0..10 {
            assert_eq!(r.read32(regs::EERD) & regs::EERD_DONE, 0);
        }
    }

    #[test]
    fn virtual_clock_drives_time_dependent_bits() {
        let r = RecordedRegs::new();
        r.bits_set_after(regs::STATUS, regs::STATUS_LU, 500_000);
        assert_eq!(r.read32(regs::STATUS) & regs::STATUS_LU, 0);
        let mut d = r.delay();
        d.delay_us(499_999);
        assert_eq!(r.read32(regs::STATUS) & regs::STATUS_LU, 0);
        d.delay_us(1);
        assert_ne!(r.read32(regs::STATUS) & regs::STATUS_LU, 0);
        assert_eq!(d.calls(), 2);
        assert_eq!(r.elapsed_us(), 500_000);
    }

    #[test]
    fn nvm_image_sums_to_0xbaba() {
        let nvm = e1000e_nvm_image([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        assert_eq!(nvm.len(), 64);
        assert_eq!(nvm[0], 0x5452);
        assert_eq!(nvm[1], 0x1200);
        assert_eq!(nvm[2], 0x5634);
        let sum = nvm.iter().fold(0u16, |a, w| a.wrapping_add(*w));
        assert_eq!(sum, 0xBABA);
    }

    #[test]
    fn qemu_model_resets_everything_in_the_ctrl_write() {
        let mac = [0x52, 0x54, 0x00, 0xab, 0xcd, 0xef];
        let r = RecordedRegs::e1000e_qemu(mac);
        r.write32(regs::RCTL, regs::RCTL_EN);
        r.write32(regs::RAH0, 0);
        r.write32(regs::IMS, 0xff);
        r.write32(regs::CTRL, r.read32(regs::CTRL) | regs::CTRL_RST);
        assert_eq!(r.read32(regs::CTRL) & regs::CTRL_RST, 0);
        assert_eq!(r.read32(regs::RCTL), 0);
        assert_eq!(r.read32(regs::IMS), 0);
        assert_eq!(r.read32(regs::RAL0), 0xab00_5452);
        assert_eq!(r.read32(regs::RAH0), regs::RAH_AV | 0xefcd);
        assert_ne!(r.read32(regs::STATUS) & regs::STATUS_LU, 0);
        assert_ne!(r.read32(regs::TARC0) & regs::TARC_ENABLE, 0);
    }

    #[test]
    fn is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<RecordedRegs>();
    }
}
