//! engine-ipp: instructions per forwarded packet of tenge's ring engine and mempool, counted
//! with callgrind against an in-memory model of the e1000e rings. Host-side and repeatable:
//! no guest, no timing, the same count on every run.
//!
//! What is counted: `forward_burst`, which runs `RxQueue::rx_burst` then `TxQueue::tx_burst`
//! (with its reclaim of completed buffers into the cache) on the real `E1000eRx`/`E1000eTx`
//! descriptor ops, a batch of 32. The doorbell is a plain store. The device model (writing
//! frames and RX write-backs, setting TX DD bits) runs in `DeviceModel::step`, outside
//! `forward_burst`, and is not counted.
//!
//! Fixed costs (setup, warm-up, process start-up, valgrind's own start) cancel: the workload
//! runs twice under `--toggle-collect` with different iteration counts, and the figure is
//! the difference in instructions divided by the difference in packets.
//!
//! Usage:
//!   engine-ipp                 measure; prints `BENCH case=engine-ipp instructions_per_packet=<n>`
//!   engine-ipp --keep DIR      the same, keeping the callgrind output files in DIR
//!                              (for `callgrind_annotate --auto=yes DIR/engine-ipp.<n>.out`)
//!   engine-ipp --inner N       run the workload with N measured iterations (what the
//!                              measurement runs under valgrind)

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use clap::Parser;
use tenge::dma::{DescRing, DmaRegion, HugepagePolicy, IdentityMapper};
use tenge::e1000e::{E1000eRx, E1000eTx, MAX_FRAME};
use tenge::mempool::host_pool;
use tenge::ring::{PacketBatch, RxQueue, TxQueue};
use tenge::MempoolCache;
use tenge_descriptors::e1000e::{
    LegacyTxDesc, RxDescExtRead, RxDescExtWb, RXD_STAT_DD, RXD_STAT_EOP, TXD_CMD_RS, TXD_STAT_DD,
};
use tenge_firmware_iface::e1000e::regs;
use tenge_firmware_iface::Mmio;
use zerocopy::little_endian::{U16, U32};

/// Descriptors per ring (RX and TX).
const RING: u32 = 512;
/// Packets per burst.
const BURST: usize = 32;
/// TX report (RS) interval, in descriptors.
const RS_INTERVAL: u32 = 32;
/// RX refill threshold, in free descriptors (`PortConfig::rx_free_thresh`'s default).
const RX_FREE_THRESH: u32 = 32;
/// Buffers in the pool.
const POOL: u32 = 2048;
/// Per-queue cache size.
const CACHE: usize = 256;
/// Bytes of every received (and forwarded) frame.
const FRAME_LEN: u16 = 60;

/// The workload is periodic: with the engine's reclaim policy at the time of writing, TX
/// reclaims every 14 bursts (once 448 of 512 descriptors are in flight) and the RX ring wraps
/// every 16; 112 is a multiple of both. The warm-up and both iteration counts are multiples
/// of it, so the difference covers whole periods and no partial reclaim or cache refill/spill
/// cycle skews the figure. (Were the period to change, the error is small: 1000 and 3000
/// iterations gave 422.1 where whole periods gave 422.1, a difference of 0.09.)
const PERIOD: u32 = 112;
const WARMUP: u32 = 4 * PERIOD;
const N_LO: u32 = 10 * PERIOD;
const N_HI: u32 = 30 * PERIOD;

/// Symbol pattern for callgrind's `--toggle-collect` (matches the demangled
/// `engine_ipp::forward_burst`; callgrind accepts `*` and `?` wildcards).
const TOGGLE: &str = "*forward_burst*";

/// Instructions per forwarded packet of the tenge ring engine, counted with callgrind.
#[derive(Parser, Debug)]
#[command(verbatim_doc_comment)]
struct Args {
    /// Run the workload with this many measured iterations (used under valgrind).
    #[arg(long, value_name = "N")]
    inner: Option<u32>,
    /// Keep the callgrind output files in this directory.
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
}

/// The device registers: the tail register write (the doorbell) is one plain store. (An
/// `AtomicU32` with `Relaxed` rather than a `Cell`: the same single `mov` on x86-64, and the
/// ops take an `Arc<M>`, which wants `M: Send + Sync`.)
#[derive(Default)]
struct Doorbell {
    tail: AtomicU32,
}

impl Mmio for Doorbell {
    #[inline(always)]
    fn read32(&self, _offset: u32) -> u32 {
        self.tail.load(Ordering::Relaxed)
    }

    #[inline(always)]
    fn write32(&self, _offset: u32, value: u32) {
        self.tail.store(value, Ordering::Relaxed);
    }
}

type Rx = RxQueue<E1000eRx<Doorbell>>;
type Tx = TxQueue<E1000eTx<Doorbell>>;

/// The in-memory e1000e: consumes what the driver posts, up to the tail it last rang.
struct DeviceModel {
    rx_regs: Arc<Doorbell>,
    tx_regs: Arc<Doorbell>,
    /// Next RX descriptor the device fills (RDH).
    rx_head: u32,
    /// Next TX descriptor the device processes (TDH).
    tx_head: u32,
    frame: [u8; FRAME_LEN as usize],
}

impl DeviceModel {
    /// One device step: completes the next `BURST` posted RX descriptors with a 60-byte
    /// frame each, and processes every TX descriptor up to the tail, setting DD where RS is
    /// set. Kept out of line so callgrind's toggle on `forward_burst` never counts it.
    #[inline(never)]
    fn step(&mut self, rxq: &Rx, txq: &Tx) {
        let mask = RING - 1;
        let rx_ring = rxq.ops().ring();
        let posted = self.rx_regs.read32(regs::RDT).wrapping_sub(self.rx_head) & mask;
        assert!(
            posted as usize >= BURST,
            "model: only {posted} RX descriptors posted"
        );
        for _ in 0..BURST {
            self.receive(rx_ring, self.rx_head);
            self.rx_head = (self.rx_head + 1) & mask;
        }

        let tx_ring = txq.ops().ring();
        let tail = self.tx_regs.read32(regs::TDT);
        while self.tx_head != tail {
            let mut d = tx_ring.read(self.tx_head);
            assert_eq!(
                d.length.get(),
                FRAME_LEN,
                "model: TX descriptor {} length",
                self.tx_head
            );
            if d.cmd & TXD_CMD_RS != 0 {
                d.status |= TXD_STAT_DD;
                tx_ring.write(self.tx_head, d);
            }
            self.tx_head = (self.tx_head + 1) & mask;
        }
    }

    /// Completes RX descriptor `idx` as e1000e.rs's `device_receive` does: the frame into
    /// the posted buffer, then the extended write-back with DD|EOP and the length.
    fn receive(&self, ring: &DescRing<RxDescExtRead>, idx: u32) {
        let read = ring.read(idx);
        let addr = read.buffer_addr.get() as *mut u8;
        assert!(
            !addr.is_null(),
            "model: RX descriptor {idx} posted without a buffer"
        );
        // SAFETY: the pool is identity-mapped (IOVA = address), and the engine posted this
        // buffer (at least 2048 bytes of data room) to the device; it does not touch it
        // until the write-back below says DD.
        unsafe { std::ptr::copy_nonoverlapping(self.frame.as_ptr(), addr, self.frame.len()) };
        let wb = RxDescExtWb {
            mrq: U32::new(0),
            rss_or_csum: U32::new(0),
            status_error: U32::new(RXD_STAT_DD | RXD_STAT_EOP),
            length: U16::new(FRAME_LEN),
            vlan: U16::new(0),
        };
        ring.write(idx, zerocopy::transmute!(wb));
    }
}

/// The measured function: one receive burst and its retransmission, with the engine's
/// refill, reclaim and buffer recycling.
#[inline(never)]
fn forward_burst(rxq: &mut Rx, txq: &mut Tx, cache: &mut MempoolCache, batch: &mut PacketBatch) {
    let got = rxq.rx_burst(cache, batch);
    let sent = txq.tx_burst(cache, batch);
    assert!(
        got == BURST && sent == BURST,
        "forwarded {sent} of {got} received, want {BURST}"
    );
}

/// The workload: setup, warm-up, then `n` measured iterations.
fn inner(n: u32) -> Result<(), String> {
    let desc_bytes = RING as usize * size_of::<RxDescExtRead>();
    let region = Arc::new(
        DmaRegion::allocate(
            Arc::new(IdentityMapper),
            desc_bytes + RING as usize * size_of::<LegacyTxDesc>(),
            HugepagePolicy::Never,
        )
        .map_err(|e| format!("descriptor region: {e}"))?,
    );
    let pool = host_pool(POOL).map_err(|e| format!("mempool: {e}"))?;
    let mut cache = pool.cache(CACHE);
    let rx_regs = Arc::new(Doorbell::default());
    let tx_regs = Arc::new(Doorbell::default());
    let mut rxq = RxQueue::new(
        E1000eRx::new(DescRing::new(region.clone(), 0, RING), rx_regs.clone()),
        RX_FREE_THRESH,
    );
    let mut txq = TxQueue::new(
        E1000eTx::new(DescRing::new(region, desc_bytes, RING), tx_regs.clone()),
        RS_INTERVAL,
        MAX_FRAME,
    );
    let mut batch = PacketBatch::new(BURST);
    let mut frame = [0u8; FRAME_LEN as usize];
    frame[..6].fill(0xff); // broadcast
    frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    frame[12..14].copy_from_slice(&0x88b5u16.to_be_bytes()); // local experimental ethertype
    let mut model = DeviceModel {
        rx_regs,
        tx_regs,
        rx_head: 0,
        tx_head: 0,
        frame,
    };

    if rxq.fill(&mut cache) != RING - 1 {
        return Err(format!("RX fill posted {} of {}", rxq.posted(), RING - 1));
    }
    for _ in 0..WARMUP + n {
        model.step(&rxq, &txq);
        forward_burst(&mut rxq, &mut txq, &mut cache, &mut batch);
    }

    let want = u64::from(WARMUP + n) * BURST as u64;
    let (rs, ts) = (*rxq.stats(), *txq.stats());
    if rs.packets != want || ts.packets != want || rs.no_buf != 0 || ts.ring_full != 0 {
        return Err(format!(
            "unexpected counters: rx {rs:?}, tx {ts:?} (want {want} packets)"
        ));
    }
    if ts.completed + u64::from(txq.in_flight()) != want {
        return Err(format!(
            "TX recycled {} with {} in flight of {want}",
            ts.completed,
            txq.in_flight()
        ));
    }
    Ok(())
}

/// Runs `--inner n` under callgrind, collecting only inside `forward_burst`; returns the
/// instruction count.
fn callgrind(exe: &Path, n: u32, out: &Path) -> Result<u64, String> {
    let res = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--toggle-collect={TOGGLE}"))
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(exe)
        .arg("--inner")
        .arg(n.to_string())
        .output();
    let res = match res {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(
                "valgrind not found: install it with `apt-get install valgrind` \
                        (qemu/install-deps.sh installs it)"
                    .into(),
            )
        }
        Err(e) => return Err(format!("cannot run valgrind: {e}")),
    };
    if !res.status.success() {
        return Err(format!(
            "valgrind --tool=callgrind {} --inner {n} failed ({}):\n{}{}",
            exe.display(),
            res.status,
            String::from_utf8_lossy(&res.stdout),
            String::from_utf8_lossy(&res.stderr)
        ));
    }
    let text = std::fs::read_to_string(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let total = text
        .lines()
        .filter_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .find_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .ok_or_else(|| format!("{}: no `totals:` or `summary:` line", out.display()))?;
    if total == 0 {
        return Err(format!(
            "callgrind counted nothing in `{TOGGLE}`: is the binary stripped of symbols, or \
             was forward_burst inlined?"
        ));
    }
    Ok(total)
}

fn measure(keep: Option<PathBuf>) -> Result<f64, String> {
    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let dir = match &keep {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
            d.clone()
        }
        None => std::env::temp_dir(),
    };
    let tag = if keep.is_some() {
        String::new()
    } else {
        format!(".{}", std::process::id())
    };
    let files: Vec<PathBuf> = [N_LO, N_HI]
        .iter()
        .map(|n| dir.join(format!("engine-ipp.{n}{tag}.out")))
        .collect();
    let counts = [N_LO, N_HI]
        .iter()
        .zip(&files)
        .map(|(&n, f)| callgrind(&exe, n, f))
        .collect::<Result<Vec<u64>, String>>();
    if keep.is_none() {
        for f in &files {
            let _ = std::fs::remove_file(f);
        }
    }
    let counts = counts?;
    let (lo, hi) = (counts[0], counts[1]);
    let packets = u64::from(N_HI - N_LO) * BURST as u64;
    if hi <= lo {
        return Err(format!("Ir({N_HI}) = {hi} is not above Ir({N_LO}) = {lo}"));
    }
    let ipp = (hi - lo) as f64 / packets as f64;
    // A burst's instructions under a few per packet, or above ten thousand, means the
    // toggle caught the wrong function or something else.
    if !(5.0..10_000.0).contains(&ipp) {
        return Err(format!(
            "implausible {ipp:.1} instructions per packet (Ir {lo} and {hi})"
        ));
    }
    Ok(ipp)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let r = match args.inner {
        Some(n) => inner(n),
        None => measure(args.keep).map(|ipp| {
            println!("BENCH case=engine-ipp instructions_per_packet={ipp:.1}");
        }),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("engine-ipp: {e}");
            ExitCode::FAILURE
        }
    }
}
