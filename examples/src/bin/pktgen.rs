//! pktgen: sends UDP test frames as fast as the NIC takes them (or at a set rate) and prints
//! live rates. Each frame carries a sequence number, so a capture can check the wire.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use tenge::platform::dma::HugepagePolicy;
use tenge::{MempoolConfig, PacketBatch, Port, PortConfig};
use tenge_examples::frame::{self, Flow};
use tenge_examples::{memory_summary, parse_mac, parse_secs};

/// Send test frames from a NIC driven by tenge, printing live rates every second.
///
/// The NIC must be bound to vfio-pci. Example, in the test guest:
///   pktgen 0000:00:03.0 --duration 10
///   pktgen 0000:00:03.0 --count 1000 --size 128 --rate 10000
///   pktgen 0000:00:03.0 --count 1000 --vlan 0x2005   (802.1Q tag: priority 1, VLAN 5)
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
struct Args {
    /// PCI address of the NIC, e.g. 0000:00:03.0 (see `lspci -D`).
    pci: String,
    /// Frame size in bytes, without the 4-byte FCS the NIC appends (60..=1514).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(60..=1514))]
    size: u16,
    /// Send exactly this many frames (sequence numbers 0..N-1), then stop.
    #[arg(long, conflicts_with = "duration")]
    count: Option<u64>,
    /// The first frame's sequence number (the next ones count up from it).
    #[arg(long, default_value_t = 0)]
    first_seq: u64,
    /// Send for this many seconds (default 10 when --count is not given).
    #[arg(long, value_parser = parse_secs)]
    duration: Option<Duration>,
    /// Limit the rate to this many frames per second (default: as fast as possible).
    #[arg(long)]
    rate: Option<u64>,
    /// Destination MAC address.
    #[arg(long, default_value = "ff:ff:ff:ff:ff:ff", value_parser = parse_mac)]
    dst_mac: [u8; 6],
    /// Source MAC address (default: the NIC's own).
    #[arg(long, value_parser = parse_mac)]
    src_mac: Option<[u8; 6]>,
    /// Send each frame as a chain of this many segments (of about equal size, built per
    /// frame: slower, for testing a device's scatter-gather), not one buffer.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    segments: u16,
    /// Cycle through this many flows (source addresses 198.19.0.0 on; frame i is flow
    /// i % N), so a receiver's RSS spreads them over its queues. 1: every frame the same
    /// flow (198.18.0.1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=65536))]
    flows: u32,
    /// Frames per burst (one doorbell write each).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=512))]
    batch: u16,
    /// TX descriptors (power of two, 8..=4096).
    #[arg(long, default_value_t = 512)]
    tx_ring: u32,
    /// Seconds between live rate lines (0: none).
    #[arg(long, default_value = "1", value_parser = parse_secs)]
    interval: Duration,
    /// Fail instead of falling back to 4 KiB pages when no hugepages are free.
    #[arg(long)]
    require_hugepages: bool,
    /// Learn link changes from the device's interrupt (MSI-X) instead of reading the link
    /// every 16 bursts.
    #[arg(long)]
    interrupts: bool,
    /// Ask the port to insert an 802.1Q tag with this tag control information (priority
    /// in bits 15:13, DEI 12, VLAN id 11:0; decimal or 0x hex) into every frame
    /// (`PacketMeta::TX_VLAN`): the wire frame is 4 bytes longer than --size.
    #[arg(long, value_parser = parse_tci)]
    vlan: Option<u16>,
    /// Open the port with VLAN stripping on (`PortConfig::vlan_strip`): on e1000e the
    /// device then inserts --vlan's tag itself (the 82574 inserts only with CTRL.VME);
    /// without it tenge writes the tag into the frame.
    #[arg(long)]
    vlan_strip: bool,
    /// Give up (and exit 1) when the device has taken no frame for this long while frames
    /// wait: a ring that never drains is a stalled device or backend, and a bounded run
    /// says so instead of hanging (0: wait forever).
    #[arg(long, default_value = "10", value_parser = parse_secs)]
    stall_timeout: Duration,
}

/// A tag control information value, decimal or 0x hex.
fn parse_tci(s: &str) -> Result<u16, String> {
    match s.strip_prefix("0x") {
        Some(h) => u16::from_str_radix(h, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("'{s}': {e} (a 16-bit value, e.g. 5 or 0x2005)"))
}

fn main() -> ExitCode {
    tenge_examples::run_main("pktgen", Args::parse(), run)
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let cfg = PortConfig {
        tx_ring: args.tx_ring,
        // pktgen receives nothing: a small RX pool is enough.
        rx_ring: 64,
        mempool_buffers: 128,
        cache_size: 32,
        hugepages: if args.require_hugepages {
            HugepagePolicy::Require
        } else {
            HugepagePolicy::Prefer
        },
        interrupts: args.interrupts,
        vlan_strip: args.vlan_strip,
        ..PortConfig::default()
    };
    let mut port = Port::open(&args.pci, &cfg)?;
    if args.vlan.is_some() {
        println!("pktgen: VLAN tag insertion by {}", port.offloads().tx_vlan);
    }
    let flow = Flow {
        src_mac: args.src_mac.unwrap_or(port.mac()),
        dst_mac: args.dst_mac,
        ..Flow::default()
    };
    let size = args.size as usize;
    // A TX pool of pre-built frames: receive never writes into it, so each buffer keeps the
    // template and only the sequence number changes per frame.
    let tx_pool = port.create_mempool(&MempoolConfig {
        buffers: (args.tx_ring * 2).max(512),
        hugepages: cfg.hugepages,
        ..MempoolConfig::default()
    })?;
    let template = frame::template(&flow, size);
    let mut template_addrs = [0u8; 12];
    template_addrs.copy_from_slice(&template[..12]);
    tx_pool.fill_template(&template)?;
    port.set_tx_mempool(&tx_pool, 256);

    let limit = args.count;
    let duration = match (args.count, args.duration) {
        (Some(_), _) => None,
        (None, d) => Some(d.unwrap_or(Duration::from_secs(10))),
    };
    println!(
        "pktgen: {} -> {} size={size} batch={} {}",
        args.pci,
        tenge::port::fmt_mac(&flow.dst_mac),
        args.batch,
        match (limit, duration) {
            (Some(n), _) => format!("count={n}"),
            (_, Some(d)) => format!("duration={:.1}s", d.as_secs_f64()),
            _ => String::new(),
        }
    );

    let mut batch = PacketBatch::new(args.batch as usize);
    // Frames built so far; frame i carries sequence number first_seq + i.
    let mut seq: u64 = 0;
    let mut sent: u64 = 0;
    let start = Instant::now();
    let mut last_report = start;
    let mut last_sent = 0u64;
    // The clock and the link are looked at once a tick (or every burst when pacing), not
    // every few bursts: see Ticker.
    let mut ticker = tenge_examples::Ticker::new(Duration::from_millis(20))?;
    let mut deadline_hit = false;
    // Frames handed to the device while the port knew its link down (the device drops
    // them: QEMU's models discard what a NIC sends with its link down).
    let mut link_up = port.link().up;
    let mut sent_link_down = 0u64;
    let mut link_changes = 0u64;
    let mut removed = false;
    // Since when (to a tick) the device has refused every frame offered (None: it took
    // some lately), and whether the last burst was refused.
    let mut refusing_since: Option<Instant> = None;
    let mut refused = false;
    let mut stalled = false;
    loop {
        // Fill the batch up to its capacity (frames a full ring left behind stay in it).
        while batch.room() > 0 && limit.is_none_or(|n| seq < n) {
            if let Some(r) = args.rate {
                // Pace: never ahead of rate * elapsed.
                let allowed = (start.elapsed().as_secs_f64() * r as f64) as u64 + 1;
                if seq >= allowed {
                    break;
                }
            }
            let mut b = if args.segments > 1 {
                let mut frame = frame::build(&flow, size, args.first_seq.wrapping_add(seq));
                if args.flows > 1 {
                    frame::set_flow(&mut frame, (seq % u64::from(args.flows)) as u16);
                }
                let Some(b) = chain_of(&mut port, &frame, args.segments as usize) else {
                    break;
                };
                b
            } else {
                let Some(mut b) = port.alloc_tx() else { break };
                b.set_len(size);
                if args.vlan.is_some() {
                    // A tag inserted in software moved the addresses into the headroom
                    // and overwrote their old place: the template's again.
                    b.data_mut()[..12].copy_from_slice(&template_addrs);
                }
                frame::set_seq(b.data_mut(), args.first_seq.wrapping_add(seq));
                if args.flows > 1 {
                    frame::set_flow(b.data_mut(), (seq % u64::from(args.flows)) as u16);
                }
                b
            };
            if let Some(tci) = args.vlan {
                let m = b.meta_mut();
                m.flags |= tenge::PacketMeta::TX_VLAN;
                m.vlan_tci = tci;
            }
            let _ = batch.push(b);
            seq += 1;
        }
        if !batch.is_empty() {
            let n = port.tx_burst(&mut batch) as u64;
            sent += n;
            refused = n == 0;
            if n > 0 {
                refusing_since = None;
            }
            if !link_up {
                sent_link_down += n;
            }
        } else if limit.is_some_and(|n| seq >= n) {
            break;
        } else {
            // The TX pool ran dry (chains take several buffers a frame): what the device has
            // finished comes back only through a reclaim, which no burst does while the
            // batch is empty.
            port.tx_reclaim();
        }
        if ticker.ticked() || args.rate.is_some() {
            if let Some(e) = port.poll_link() {
                link_up = e.status.up;
                link_changes += 1;
                println!("{}", tenge_examples::link_line("pktgen", &e, start));
            }
            if port.removal_requested() {
                println!(
                    "pktgen: device removed at {:.3}s: stopping",
                    start.elapsed().as_secs_f64()
                );
                removed = true;
                break;
            }
            let now = Instant::now();
            if refused {
                refusing_since.get_or_insert(now);
            }
            if !args.stall_timeout.is_zero()
                && refusing_since.is_some_and(|t| now - t >= args.stall_timeout)
            {
                println!(
                    "pktgen: stalled: the device took no frame for {:.1} s with {} waiting (its TX ring never drained)",
                    args.stall_timeout.as_secs_f64(),
                    batch.len()
                );
                stalled = true;
                break;
            }
            if duration.is_some_and(|d| now - start >= d) {
                deadline_hit = true;
                break;
            }
            if !args.interval.is_zero() && now - last_report >= args.interval {
                let dt = (now - last_report).as_secs_f64();
                let pps = (sent - last_sent) as f64 / dt;
                println!(
                    "[{:6.1}s] tx {:7.3} Mpps {:7.3} Gbit/s  total {sent}",
                    (now - start).as_secs_f64(),
                    pps / 1e6,
                    pps * size as f64 * 8.0 / 1e9
                );
                last_report = now;
                last_sent = sent;
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    // Frames left in the batch at the deadline were never handed to the device.
    let unsent = batch.len();
    port.free_batch(&mut batch);
    // A device being removed is not waited for: the kernel waits for us to let it go.
    let drained = !removed && !stalled && port.tx_drain(Duration::from_secs(5));
    let stats = port.stats();
    let mpps = sent as f64 / elapsed / 1e6;
    println!(
        "pktgen: done: removed={removed} stalled={stalled} sent={sent} sent_link_down={sent_link_down} link_changes={link_changes} seconds={elapsed:.3} mpps={mpps:.4} gbps={:.4} hw_gptc={} hw_gotc={} tx_doorbells={} tx_notifies={} unsent={unsent} drained={drained} {}",
        mpps * size as f64 * 8.0 / 1e3,
        stats.hw.gptc,
        stats.hw.gotc,
        stats.tx.doorbells,
        port.notifies().1,
        memory_summary()
    );
    if stalled {
        return Err(format!("TX stalled after {sent} frames").into());
    }
    if !deadline_hit && !removed && limit.is_some_and(|n| sent != n) {
        return Err(format!("sent {sent} of {} frames", limit.unwrap_or(0)).into());
    }
    Ok(())
}

/// `frame` split over `segments` buffers of the TX pool (the last takes the remainder; no
/// segment is empty), linked as one chain; None when the pool is short.
fn chain_of(port: &mut Port, frame: &[u8], segments: usize) -> Option<tenge::PacketBuf> {
    let segments = segments.min(frame.len());
    let per = frame.len() / segments;
    let mut head: Option<tenge::PacketBuf> = None;
    for k in (0..segments).rev() {
        let end = if k == segments - 1 {
            frame.len()
        } else {
            (k + 1) * per
        };
        let mut b = port.alloc_tx()?;
        if !b.copy_from(&frame[k * per..end]) {
            return None;
        }
        b.set_next(head.take());
        head = Some(b);
    }
    head
}
