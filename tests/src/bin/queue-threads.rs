//! queue-threads: every queue pair of one port on its own thread, sending and receiving at
//! once. Two of these run on two NICs that see each other (a QEMU hub): each thread sends
//! `--frames` sequenced frames from its TX queue to the other port, paced at `--rate`, with
//! the source IPv4 address changing per frame so RSS spreads them over the other port's
//! queues, and receives on its RX queue. At the end it prints what it sent per queue, what
//! arrived per queue, and whether every frame the peer sent arrived exactly once:
//!
//! `QUEUE-THREADS tag=<t> queues=<n> sent=<q0>,<q1> received=<q0>,<q1> from_peer=<q0>,<q1>
//!  dups=<d> missing=<m> strangers=<s> pool_free=<free>/<capacity> hw_gptc=<n> hw_gprc=<n>`
//!
//! (`from_peer` by the peer's sending queue; the device's own counters last, for the host
//! to compare across the two ports.)

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use tenge::{PacketBatch, Port, PortConfig, QueuePair};
use tenge_examples::frame::{self, Flow};
use tenge_examples::{memory_summary, parse_mac, parse_secs};

/// Send and receive on every queue pair of a port at once, a thread per pair.
#[derive(Parser, Debug, Clone)]
#[command(version)]
struct Args {
    /// PCI address of the NIC.
    pci: String,
    /// MAC address of the peer port (where frames go).
    #[arg(long, value_parser = parse_mac)]
    peer_mac: [u8; 6],
    /// This port's tag in the sequence numbers (the peer runs with another).
    #[arg(long)]
    tag: u8,
    /// The peer's tag.
    #[arg(long)]
    peer_tag: u8,
    /// Queue pairs.
    #[arg(long, default_value_t = 2)]
    queues: u16,
    /// Frames each queue sends (the peer sends as many per queue).
    #[arg(long, default_value_t = 20_000)]
    frames: u64,
    /// Frames per second each queue sends.
    #[arg(long, default_value_t = 2_000)]
    rate: u64,
    /// After sending, keep receiving until every frame of the peer arrived or this long
    /// passed without one.
    #[arg(long, default_value = "5", value_parser = parse_secs)]
    idle: Duration,
    /// Start sending only once both ports are open: create `<DIR>/ready.<tag>` and wait
    /// (up to 60 s) for `<DIR>/ready.<peer-tag>`, so no frame goes to a port not yet open.
    #[arg(long)]
    sync: Option<std::path::PathBuf>,
}

/// What one queue's thread counted.
#[derive(Default)]
struct Tally {
    sent: u64,
    received: u64,
    /// Sequence numbers received from the peer, per the peer's sending queue.
    seen: Vec<HashSet<u64>>,
    dups: u64,
    /// Frames that were not the peer's test frames.
    strangers: u64,
}

/// The sequence number of frame `n` of queue `q` of the port tagged `tag`.
fn seq(tag: u8, q: u16, n: u64) -> u64 {
    u64::from(tag) << 56 | u64::from(q) << 40 | n
}

fn run_queue(pair: QueuePair, args: &Args, mac: [u8; 6], got: &AtomicU64) -> Tally {
    let QueuePair { mut rx, mut tx } = pair;
    let q = rx.index();
    let mut t = Tally {
        seen: vec![HashSet::new(); usize::from(args.queues)],
        ..Tally::default()
    };
    let expected = args.frames * u64::from(args.queues);
    let mut batch = PacketBatch::new(32);
    let start = Instant::now();
    let mut last_rx = Instant::now();
    loop {
        // Send what the pace allows by now, a burst at a time.
        let due = (start.elapsed().as_secs_f64() * args.rate as f64) as u64;
        let due = due.min(args.frames);
        while t.sent < due {
            let mut out = PacketBatch::new(32);
            while t.sent + (out.len() as u64) < due && out.room() > 0 {
                let n = t.sent + out.len() as u64;
                let flow = Flow {
                    src_mac: mac,
                    dst_mac: args.peer_mac,
                    src_ip: [10, args.tag, (n >> 8) as u8, n as u8],
                    dst_ip: [10, args.peer_tag, 0, 1],
                };
                let Some(mut buf) = tx.alloc() else { break };
                let f = frame::build(&flow, 64, seq(args.tag, q, n));
                if !buf.set_len(f.len()) {
                    break;
                }
                buf.data_mut().copy_from_slice(&f);
                if out.push(buf).is_err() {
                    break;
                }
            }
            if out.is_empty() {
                tx.tx_reclaim();
                break;
            }
            // Every frame goes: wait for room rather than drop, so the tally is exact.
            while !out.is_empty() {
                t.sent += tx.tx_burst(&mut out) as u64;
                if !out.is_empty() {
                    tx.tx_reclaim();
                    std::hint::spin_loop();
                }
            }
        }
        let n = rx.rx_burst(&mut batch);
        if n > 0 {
            last_rx = Instant::now();
            t.received += n as u64;
            for p in batch.iter() {
                match frame::seq_of(p.data()) {
                    Some(s) if (s >> 56) as u8 == args.peer_tag => {
                        let from = ((s >> 40) & 0xffff) as usize;
                        match t.seen.get_mut(from) {
                            Some(set) => {
                                if !set.insert(s & 0xff_ffff_ffff) {
                                    t.dups += 1;
                                }
                            }
                            None => t.strangers += 1,
                        }
                    }
                    _ => t.strangers += 1,
                }
            }
            got.fetch_add(n as u64, Ordering::Relaxed);
            rx.free_batch(&mut batch);
        }
        let all_sent = t.sent >= args.frames;
        if all_sent && (got.load(Ordering::Relaxed) >= expected || last_rx.elapsed() > args.idle) {
            break;
        }
    }
    tx.tx_drain(Duration::from_secs(1));
    rx.publish();
    tx.publish();
    t
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let cfg = PortConfig {
        queues: args.queues,
        mempool_buffers: 2048 * u32::from(args.queues),
        ..PortConfig::default()
    };
    let mut port = Port::open(&args.pci, &cfg)?;
    let mac = port.mac();
    let got = Arc::new(AtomicU64::new(0));
    println!("READY {}", args.pci);
    if let Some(dir) = &args.sync {
        std::fs::write(dir.join(format!("ready.{}", args.tag)), b"")?;
        let peer = dir.join(format!("ready.{}", args.peer_tag));
        let until = Instant::now() + Duration::from_secs(60);
        while !peer.exists() {
            if Instant::now() > until {
                return Err(format!("the peer never created {}", peer.display()).into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let threads: Vec<_> = port
        .take_queues()
        .into_iter()
        .map(|pair| {
            let (args, got) = (args.clone(), got.clone());
            std::thread::Builder::new()
                .name(format!("queue-{}", pair.rx.index()))
                .spawn(move || run_queue(pair, &args, mac, &got))
        })
        .collect::<Result<_, _>>()?;
    let tallies: Vec<Tally> = threads
        .into_iter()
        .map(|t| t.join().map_err(|_| "a queue thread panicked"))
        .collect::<Result<_, _>>()?;
    let stats = port.stats();
    let pool = port.mempool().clone();
    drop(port);
    let queues = usize::from(args.queues);
    let mut from_peer = vec![HashSet::new(); queues];
    for t in &tallies {
        for (all, s) in from_peer.iter_mut().zip(&t.seen) {
            all.extend(s.iter().copied());
        }
    }
    // A frame seen by two receive queues is a duplicate too.
    let seen_total: usize = tallies
        .iter()
        .flat_map(|t| t.seen.iter().map(HashSet::len))
        .sum();
    let merged: usize = from_peer.iter().map(HashSet::len).sum();
    let dups = tallies.iter().map(|t| t.dups).sum::<u64>() + (seen_total - merged) as u64;
    let missing: u64 = from_peer
        .iter()
        .map(|s| args.frames - (s.len() as u64).min(args.frames))
        .sum();
    let join = |v: Vec<u64>| v.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    println!(
        "QUEUE-THREADS tag={} queues={queues} sent={} received={} from_peer={} dups={dups} missing={missing} strangers={} pool_free={}/{} hw_gptc={} hw_gprc={} {}",
        args.tag,
        join(tallies.iter().map(|t| t.sent).collect()),
        join(tallies.iter().map(|t| t.received).collect()),
        join(from_peer.iter().map(|s| s.len() as u64).collect()),
        tallies.iter().map(|t| t.strangers).sum::<u64>(),
        pool.free_count(),
        pool.capacity(),
        stats.hw.gptc,
        stats.hw.gprc,
        memory_summary()
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("queue-threads: {e}");
            ExitCode::FAILURE
        }
    }
}
