//! l2fwd: forwards every frame received on one port out of the other, both ways, one thread
//! per direction and queue pair (each owns receive queue i of one port and transmit queue i
//! of the other; `--single-thread`: one thread polling all of them in turn), with live
//! per-port and per-queue rates and a summary.

use std::fs::File;
use std::io::BufWriter;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use pcap_file::pcap::{PcapPacket, PcapWriter};
use tenge::{PacketBatch, Port, PortConfig, PortStats, RxQueueHandle, TxQueueHandle};
use tenge_examples::{memory_summary, parse_secs, queue_rates};

/// Forward frames between two NICs driven by tenge, both ways, a thread per direction and
/// queue pair.
///
/// Both NICs must be bound to vfio-pci. Runs until SIGINT or SIGTERM, or for --duration
/// seconds, printing each second what each port received and sent; the summary counts
/// every frame, and every drop by reason. Example, in the test guest:
///   l2fwd 0000:00:03.0 0000:00:04.0 --duration 10
///   l2fwd 0000:00:03.0 0000:00:04.0 --rewrite --pcap /tmp/fwd.pcap --pcap-count 100
///   l2fwd 0000:00:03.0 0000:00:04.0 --queues 2   (RSS spreads each port's input)
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
struct Args {
    /// PCI address of port 0, e.g. 0000:00:03.0 (see `lspci -D`).
    port0: String,
    /// PCI address of port 1.
    port1: String,
    /// Stop after this many seconds (default: run until SIGINT or SIGTERM).
    #[arg(long, value_parser = parse_secs)]
    duration: Option<Duration>,
    /// Rewrite each forwarded frame's MACs as DPDK's l2fwd does: the source becomes the
    /// sending port's MAC, the destination 02:00:00:00:00:NN (NN the sending port's number).
    #[arg(long)]
    rewrite: bool,
    /// Record the first --pcap-count frames forwarded (either way, as sent) in this pcap
    /// file.
    #[arg(long)]
    pcap: Option<std::path::PathBuf>,
    /// Frames --pcap records.
    #[arg(long, default_value_t = 1000)]
    pcap_count: u64,
    /// Wait for room instead of dropping: a burst the other port's TX ring cannot take
    /// whole is sent again (the ring's completions recycled meanwhile) until it is, so the
    /// receiving port meets backpressure instead of frames being lost (testpmd's
    /// `set fwd io retry`).
    #[arg(long)]
    retry: bool,
    /// Frames per burst.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=512))]
    batch: u16,
    /// Poll both directions from one thread, in turn (as testpmd's io forwarding does on
    /// one forwarding lcore), instead of a thread per direction: pin it to one CPU with
    /// `taskset -c N` to give the forwarder one core.
    #[arg(long)]
    single_thread: bool,
    /// Queue pairs on each port: RSS spreads what a port receives over them, and queue i of
    /// one port forwards into queue i of the other, a thread each way.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    queues: u16,
    /// Seconds between live rate lines (0: none).
    #[arg(long, default_value = "1", value_parser = parse_secs)]
    interval: Duration,
    /// Learn link changes from the devices' interrupts (MSI-X) instead of reading the links
    /// every 50 ms.
    #[arg(long)]
    interrupts: bool,
}

fn main() -> ExitCode {
    tenge_examples::run_main("l2fwd", Args::parse(), run)
}

/// The capture of the first frames forwarded, shared by both directions.
struct Capture {
    writer: PcapWriter<BufWriter<File>>,
    left: u64,
    start: Instant,
}

/// One direction of one queue pair: receive on `rx` (port `from`), send on `tx` (the other
/// port, the same queue index).
struct Direction {
    from: usize,
    queue: u16,
    rx: RxQueueHandle,
    tx: TxQueueHandle,
    /// Set by the rewrite: (source, destination) MACs for frames leaving on `tx`.
    rewrite: Option<([u8; 6], [u8; 6])>,
    batch: usize,
    retry: bool,
    capture: Option<Arc<Mutex<Capture>>>,
    /// The sending port's link as the control thread last saw it.
    to_link_up: Arc<AtomicBool>,
}

/// What a direction counted, at its end.
#[derive(Debug, Default)]
struct Forwarded {
    /// Frames sent on the other port.
    frames: u64,
    /// Frames the other port's TX ring had no room for (dropped).
    tx_full_drops: u64,
    /// Bursts sent again for want of room (with --retry).
    tx_retries: u64,
    /// Frames sent while the sending port's link was known down (the device drops them).
    sent_link_down: u64,
}

impl Direction {
    /// One poll: receive a burst and send it on the other port.
    fn poll(&mut self, batch: &mut PacketBatch, done: &mut Forwarded, stop: &AtomicBool) {
        if self.rx.rx_burst(batch) == 0 {
            return;
        }
        if let Some((src, dst)) = self.rewrite {
            for p in batch.iter_mut() {
                if let Some(h) = p.data_mut().get_mut(..12) {
                    h[..6].copy_from_slice(&dst);
                    h[6..].copy_from_slice(&src);
                }
            }
        }
        if let Some(c) = &self.capture {
            record(c, batch);
        }
        let before = done.frames;
        done.frames += self.tx.tx_burst(batch) as u64;
        while self.retry && !batch.is_empty() && !stop.load(Ordering::Relaxed) {
            done.tx_retries += 1;
            std::hint::spin_loop();
            done.frames += self.tx.tx_burst(batch) as u64;
        }
        if !self.to_link_up.load(Ordering::Relaxed) {
            done.sent_link_down += done.frames - before;
        }
        // What the ring had no room for is dropped, not retried: a forwarder that
        // waits on a full ring stops receiving (DPDK's l2fwd drops too).
        done.tx_full_drops += batch.len() as u64;
        self.tx.free_batch(batch);
    }

    /// Gives back whatever is still in flight, before the handles go.
    fn finish(&mut self, done: &Forwarded) {
        self.tx.tx_drain(Duration::from_secs(1));
        self.rx.publish();
        self.tx.publish();
        log::debug!(
            "direction from port {} queue {}: {done:?}",
            self.from,
            self.queue
        );
    }
}

/// Polls every direction in turn until `stop` (one direction: a thread per direction;
/// both: --single-thread); returns what each forwarded.
fn forward(mut dirs: Vec<Direction>, stop: &AtomicBool) -> Vec<Forwarded> {
    let mut batches: Vec<PacketBatch> = dirs.iter().map(|d| PacketBatch::new(d.batch)).collect();
    let mut done: Vec<Forwarded> = dirs.iter().map(|_| Forwarded::default()).collect();
    let mut polls = 0u32;
    loop {
        for ((d, b), f) in dirs.iter_mut().zip(&mut batches).zip(&mut done) {
            d.poll(b, f, stop);
        }
        polls = polls.wrapping_add(1);
        if polls.is_multiple_of(256) && stop.load(Ordering::Relaxed) {
            break;
        }
    }
    for (d, f) in dirs.iter_mut().zip(&done) {
        d.finish(f);
    }
    done
}

/// Writes frames of `batch` into the capture while it wants more.
fn record(c: &Mutex<Capture>, batch: &PacketBatch) {
    let Ok(mut c) = c.lock() else { return };
    for p in batch.iter() {
        if c.left == 0 {
            return;
        }
        let data = p.data();
        let packet = PcapPacket::new(c.start.elapsed(), data.len() as u32, data);
        if c.writer.write_packet(&packet).is_err() {
            c.left = 0;
            return;
        }
        c.left -= 1;
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut cfg = PortConfig {
        queues: args.queues,
        interrupts: args.interrupts,
        ..PortConfig::default()
    };
    // A full RX and TX ring and a cache each per queue pair.
    cfg.mempool_buffers = cfg
        .mempool_buffers
        .max(u32::from(args.queues) * (cfg.rx_ring + cfg.tx_ring + 2 * cfg.cache_size as u32));
    let mut ports = [
        Port::open(&args.port0, &cfg)?,
        Port::open(&args.port1, &cfg)?,
    ];
    let macs = [ports[0].mac(), ports[1].mac()];
    let capture = match &args.pcap {
        Some(path) => {
            let file = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
            Some(Arc::new(Mutex::new(Capture {
                writer: PcapWriter::new(BufWriter::new(file))?,
                left: args.pcap_count,
                start: Instant::now(),
            })))
        }
        None => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed))?;
    }
    // Each port's link as the control thread (below) last saw it.
    let link_up: [Arc<AtomicBool>; 2] = [
        Arc::new(AtomicBool::new(ports[0].link().up)),
        Arc::new(AtomicBool::new(ports[1].link().up)),
    ];
    // Queue pair i of port p: its RX feeds direction (p, i), its TX serves (1 - p, i).
    let [q0, q1] = [ports[0].take_queues(), ports[1].take_queues()];
    let mut directions = Vec::new();
    for (queue, (a, b)) in (0u16..).zip(q0.into_iter().zip(q1)) {
        for (from, rx, tx) in [(0, a.rx, b.tx), (1, b.rx, a.tx)] {
            let to = 1 - from;
            directions.push(Direction {
                from,
                queue,
                rx,
                tx,
                rewrite: args
                    .rewrite
                    .then_some((macs[to], [2, 0, 0, 0, 0, to as u8])),
                batch: args.batch as usize,
                retry: args.retry,
                capture: capture.clone(),
                to_link_up: link_up[to].clone(),
            });
        }
    }
    println!(
        "l2fwd: port 0 {} <-> port 1 {}{}",
        args.port0,
        args.port1,
        if args.rewrite { ", MACs rewritten" } else { "" }
    );
    println!("READY");
    let start = Instant::now();
    // A thread per direction, or one for both.
    let directions_from: Vec<usize> = directions.iter().map(|d| d.from).collect();
    let groups: Vec<Vec<Direction>> = if args.single_thread {
        vec![directions.into_iter().collect()]
    } else {
        directions.into_iter().map(|d| vec![d]).collect()
    };
    let threads: Vec<_> = groups
        .into_iter()
        .map(|g| {
            let stop = stop.clone();
            let name = match g.as_slice() {
                [d] => format!("l2fwd-p{}q{}", d.from, d.queue),
                _ => "l2fwd".to_string(),
            };
            std::thread::Builder::new()
                .name(name)
                .spawn(move || forward(g, &stop))
        })
        .collect::<Result<_, _>>()?;
    let mut last = (start, [ports[0].stats(), ports[1].stats()]);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        let now = Instant::now();
        if args.duration.is_some_and(|d| now - start >= d) {
            stop.store(true, Ordering::Relaxed);
        }
        for (p, port) in ports.iter_mut().enumerate() {
            if port.removal_requested() && !stop.load(Ordering::Relaxed) {
                println!(
                    "l2fwd: port {p} removed at {:.3}s: stopping",
                    start.elapsed().as_secs_f64()
                );
                stop.store(true, Ordering::Relaxed);
            }
            if let Some(e) = port.poll_link() {
                link_up[p].store(e.status.up, Ordering::Relaxed);
                println!(
                    "{}",
                    tenge_examples::link_line(&format!("l2fwd: port {p}"), &e, start)
                );
            }
        }
        if !args.interval.is_zero() && now - last.0 >= args.interval {
            let stats = [ports[0].stats(), ports[1].stats()];
            print_rates(now - start, now - last.0, &last.1, &stats);
            last = (now, stats);
        }
    }
    let mut forwarded: Vec<Forwarded> = Vec::new();
    for t in threads {
        forwarded.extend(t.join().map_err(|_| "a forwarding thread panicked")?);
    }
    let secs = start.elapsed().as_secs_f64();
    if let Some(c) = capture {
        // The threads are done: this is the last reference.
        if let Ok(c) = Arc::try_unwrap(c) {
            let c = c
                .into_inner()
                .map_err(|_| "the capture's lock was poisoned")?;
            std::io::Write::flush(&mut c.writer.into_writer())?;
        }
    }
    let stats = [ports[0].stats(), ports[1].stats()];
    // Per port: the sum over its directions' queues (the threads return them in order).
    let mut per_port = [Forwarded::default(), Forwarded::default()];
    for (d, f) in directions_from.iter().zip(&forwarded) {
        let t = &mut per_port[*d];
        t.frames += f.frames;
        t.tx_full_drops += f.tx_full_drops;
        t.tx_retries += f.tx_retries;
        t.sent_link_down += f.sent_link_down;
    }
    for (p, (s, f)) in stats.iter().zip(&per_port).enumerate() {
        println!(
            "l2fwd: port {p}: rx={} forwarded={} tx_full_drops={} tx_retries={} sent_link_down={} tx={} rx_no_buf={} rx_errors={} rx_filtered={} tx_bad_packet={} hw_gprc={} hw_gptc={}",
            s.rx.packets,
            f.frames,
            f.tx_full_drops,
            f.tx_retries,
            f.sent_link_down,
            s.tx.packets,
            s.rx.no_buf,
            s.rx.errors + s.rx.bad_len + s.rx.bad_slot + s.rx.multi_buffer,
            s.rx.filtered,
            s.tx.bad_packet,
            s.hw.gprc,
            s.hw.gptc
        );
        if s.queues.len() > 1 {
            let queues: Vec<String> = s
                .queues
                .iter()
                .enumerate()
                .map(|(q, (rx, tx))| format!("q{q}_rx={} q{q}_tx={}", rx.packets, tx.packets))
                .collect();
            println!("l2fwd: port {p} queues: {}", queues.join(" "));
        }
    }
    // Every buffer must come home once the devices are stopped (the ports dropped): the
    // pools outlive them here.
    let pools = [ports[0].mempool().clone(), ports[1].mempool().clone()];
    drop(ports);
    let home: Vec<String> = pools
        .iter()
        .map(|p| format!("{}/{}", p.free_count(), p.capacity()))
        .collect();
    let total: u64 = forwarded.iter().map(|f| f.frames).sum();
    println!(
        "l2fwd: done: seconds={secs:.3} forwarded={total} mpps={:.4} pool_free={} {}",
        total as f64 / secs / 1e6,
        home.join(","),
        memory_summary()
    );
    Ok(())
}

/// One line per port: receive and send rates since the last line, each queue's too.
fn print_rates(at: Duration, dt: Duration, before: &[PortStats; 2], now: &[PortStats; 2]) {
    let dt = dt.as_secs_f64();
    let rate = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / dt / 1e6;
    for (p, (b, n)) in before.iter().zip(now).enumerate() {
        let queues = queue_rates(b, n, dt);
        // The device's own counters where it has them (e1000e: GPRC, GPTC).
        let hw = if n.hw.gprc + n.hw.gptc > 0 {
            format!(
                " hw rx {:.3} tx {:.3}",
                rate(b.hw.gprc, n.hw.gprc),
                rate(b.hw.gptc, n.hw.gptc)
            )
        } else {
            String::new()
        };
        println!(
            "[{:6.1}s] port {p}: rx {:7.3} Mpps tx {:7.3} Mpps ({}){hw}",
            at.as_secs_f64(),
            rate(b.rx.packets, n.rx.packets),
            rate(b.tx.packets, n.tx.packets),
            queues
        );
    }
}
