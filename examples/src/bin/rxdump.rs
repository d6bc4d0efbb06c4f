//! rxdump: receives on every queue of a port, a thread per queue, and prints a line per
//! frame with the queue it arrived on and its RSS hash and type: what a user looks at to see
//! how a NIC spreads flows, and what the RSS tests read.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use tenge::{PacketBatch, PacketMeta, Port, PortConfig, RssConfig, RssHashTypes, RxQueueHandle};
use tenge_examples::{memory_summary, parse_secs, queue_rates};

/// Receive on every queue of a NIC driven by tenge and print each frame's queue, RSS type
/// and hash.
///
/// The NIC must be bound to vfio-pci. Prints the port's RSS key and indirection table
/// (`RSS key=.. table=.. types=..`, or `RSS off`), then `READY`, then a line per frame:
///   FRAME queue=Q len=BYTES rss_type=TYPE hash=0xHHHHHHHH|- ip_csum=V l4_csum=V ptype=L3/L4 segs=N vlan=T data=HEX
/// (V the checksum verdict: good, bad, or - for not checked, see --rx-checksum; L3/L4 the
/// packet type the device reported, ipv4|ipv6|other and tcp|udp|other, - where it did
/// not say; T the
/// 802.1Q tag the device stripped as 0xTTTT, priority and VLAN id, or - for none, see
/// --vlan-strip)
/// with --quiet only the live per-queue rates (each second) and the summary. Runs until
/// SIGINT or SIGTERM, --duration, or --count frames. Example, in the test guest:
///   rxdump 0000:00:03.0 --queues 2 --count 100
///   rxdump 0000:00:03.0 --queues 2 --rss-types ipv4,tcp-ipv4 --quiet --duration 10
#[derive(Parser, Debug, Clone)]
#[command(version, verbatim_doc_comment)]
struct Args {
    /// PCI address of the NIC, e.g. 0000:00:03.0 (see `lspci -D`).
    pci: String,
    /// Queue pairs to open (RSS spreads frames over them when more than one).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    queues: u16,
    /// Hash types, e.g. `ipv4,tcp-ipv4,ipv6,tcp-ipv6` (default: the port's default; with one
    /// queue, giving them turns RSS on for the hash in each frame).
    #[arg(long)]
    rss_types: Option<RssHashTypes>,
    /// Stop after this many seconds (default: run until SIGINT or SIGTERM).
    #[arg(long, value_parser = parse_secs)]
    duration: Option<Duration>,
    /// Stop after this many frames, over all queues.
    #[arg(long)]
    count: Option<u64>,
    /// Bytes of each frame shown in hex.
    #[arg(long, default_value_t = 128)]
    bytes: usize,
    /// Turn RX checksum offload on: each frame's verdicts in its line.
    #[arg(long)]
    rx_checksum: bool,
    /// Turn LRO on (the device's, or tenge's software LRO): coalesced frames show
    /// `segs=N` (N > 1).
    #[arg(long)]
    lro: bool,
    /// Strip 802.1Q tags on receive (the device's, PortConfig::vlan_strip): each frame
    /// arrives untagged, its tag in `vlan=`.
    #[arg(long)]
    vlan_strip: bool,
    /// No line per frame: only the rates and the summary.
    #[arg(long)]
    quiet: bool,
    /// Seconds between live rate lines (0: none).
    #[arg(long, default_value = "1", value_parser = parse_secs)]
    interval: Duration,
}

fn main() -> ExitCode {
    tenge_examples::run_main("rxdump", Args::parse(), run)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One queue's receive loop; returns the frames it counted.
fn receive(mut rx: RxQueueHandle, args: &Args, total: &AtomicU64, stop: &AtomicBool) -> u64 {
    let queue = rx.index();
    let mut batch = PacketBatch::new(32);
    let mut frames = 0u64;
    let mut polls = 0u32;
    while !stop.load(Ordering::Relaxed) || polls == 0 {
        let n = rx.rx_burst(&mut batch);
        if n > 0 {
            frames += n as u64;
            if !args.quiet {
                let mut out = std::io::stdout().lock();
                for p in batch.iter() {
                    let m = p.meta();
                    // The whole frame, every segment of a chain.
                    let mut data = Vec::with_capacity(p.pkt_len().min(args.bytes));
                    p.append_to(&mut data);
                    let verdict = |good: u32, bad: u32| {
                        if m.flags & bad != 0 {
                            "bad"
                        } else if m.flags & good != 0 {
                            "good"
                        } else {
                            "-"
                        }
                    };
                    let _ = writeln!(
                        out,
                        "FRAME queue={queue} len={} rss_type={} hash={} ip_csum={} l4_csum={} ptype={} segs={} vlan={} data={}",
                        p.pkt_len(),
                        m.rss_type().name(),
                        m.rss_hash()
                            .map_or_else(|| "-".to_string(), |h| format!("{h:#010x}")),
                        verdict(PacketMeta::RX_IP_CSUM_GOOD, PacketMeta::RX_IP_CSUM_BAD),
                        verdict(PacketMeta::RX_L4_CSUM_GOOD, PacketMeta::RX_L4_CSUM_BAD),
                        m.packet_type(),
                        if m.flags & PacketMeta::RX_LRO != 0 { m.segs.max(1) } else { 1 },
                        if m.flags & PacketMeta::RX_VLAN_STRIPPED != 0 {
                            format!("{:#06x}", m.vlan_tci)
                        } else {
                            "-".to_string()
                        },
                        hex(&data[..data.len().min(args.bytes)])
                    );
                }
            }
            rx.free_batch(&mut batch);
            let seen = total.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
            if args.count.is_some_and(|c| seen >= c) {
                stop.store(true, Ordering::Relaxed);
            }
        }
        polls = polls.wrapping_add(1);
    }
    rx.publish();
    frames
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut cfg = PortConfig {
        queues: args.queues,
        rx_checksum: args.rx_checksum,
        lro: args.lro,
        vlan_strip: args.vlan_strip,
        ..PortConfig::default()
    };
    cfg.mempool_buffers = cfg
        .mempool_buffers
        .max(u32::from(args.queues) * (cfg.rx_ring + 2 * cfg.cache_size as u32));
    if let Some(types) = args.rss_types {
        // The device's table length is only known once it is open: set the types after.
        if args.queues == 1 {
            cfg.rss = Some(RssConfig {
                types,
                ..RssConfig::new(1, 128)
            });
        }
    }
    let mut port = Port::open(&args.pci, &cfg)?;
    if let (Some(types), Some(current)) = (args.rss_types, port.rss().cloned()) {
        if current.types != types {
            port.set_rss(&RssConfig { types, ..current })?;
        }
    }
    match port.rss() {
        Some(r) => {
            let table: Vec<String> = r.table.iter().map(u16::to_string).collect();
            println!(
                "RSS key={} table={} types={}",
                hex(&r.key),
                table.join(","),
                r.types
            );
        }
        None => println!("RSS off"),
    }
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed))?;
    }
    let total = Arc::new(AtomicU64::new(0));
    println!(
        "rxdump: {} ({}) {} queue pair(s)",
        args.pci,
        port.driver_name(),
        port.queue_count()
    );
    println!("READY");
    let start = Instant::now();
    let args = Arc::new(args.clone());
    let threads: Vec<_> = port
        .take_queues()
        .into_iter()
        .map(|pair| {
            let (stop, total, args) = (stop.clone(), total.clone(), args.clone());
            std::thread::Builder::new()
                .name(format!("rxdump-q{}", pair.rx.index()))
                .spawn(move || receive(pair.rx, &args, &total, &stop))
        })
        .collect::<Result<_, _>>()?;
    let mut last = (start, port.stats());
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
        let now = Instant::now();
        if args.duration.is_some_and(|d| now - start >= d) {
            stop.store(true, Ordering::Relaxed);
        }
        if !args.interval.is_zero() && now - last.0 >= args.interval {
            let stats = port.stats();
            let dt = (now - last.0).as_secs_f64();
            let queues = queue_rates(&last.1, &stats, dt);
            eprintln!(
                "[{:6.1}s] rx {:7.3} Mpps ({})",
                (now - start).as_secs_f64(),
                stats.rx.packets.saturating_sub(last.1.rx.packets) as f64 / dt / 1e6,
                queues
            );
            last = (now, stats);
        }
    }
    let per_queue: Vec<u64> = threads
        .into_iter()
        .map(|t| t.join().map_err(|_| "a receive thread panicked"))
        .collect::<Result<_, _>>()?;
    let secs = start.elapsed().as_secs_f64();
    let stats = port.stats();
    let counted: Vec<String> = per_queue
        .iter()
        .enumerate()
        .map(|(q, n)| format!("q{q}={n}"))
        .collect();
    let pool = port.mempool().clone();
    drop(port);
    println!(
        "rxdump: done: seconds={secs:.3} frames={} {} rx_no_buf={} rx_errors={} rx_filtered={} pool_free={}/{} {}",
        per_queue.iter().sum::<u64>(),
        counted.join(" "),
        stats.rx.no_buf,
        stats.rx.errors + stats.rx.bad_len + stats.rx.bad_slot + stats.rx.multi_buffer,
        stats.rx.filtered,
        pool.free_count(),
        pool.capacity(),
        memory_summary()
    );
    Ok(())
}
