//! responder: answers ARP requests for its IPv4 address and ICMP echo requests to it on any
//! tenge port, replying in place in the received buffer. Every other frame is counted by the
//! reason it got no reply.

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use tenge::platform::dma::HugepagePolicy;
use tenge::{PacketBatch, PacketMeta, Port, PortConfig};
use tenge_examples::responder::{l4_checksum, Counters, L4Checksum, Responder, Verdict};
use tenge_examples::{memory_summary, parse_secs};

/// Answer ARP and ICMP echo (ping) for one IPv4 address on a NIC driven by tenge.
///
/// The NIC must be bound to vfio-pci; e1000e and virtio-net work alike. Runs until killed
/// (SIGINT or SIGTERM end it with a summary) or for --duration seconds. Prints READY once
/// the port is open, live counters every --interval, and a summary at the end:
///   responder: done: seconds=.. rx=.. arp_replies=.. echo_replies=.. ignored=..
///     rx_REASON=.. (one per reason a frame got no reply) tx=.. tx_dropped=..
///     port_rx=.. port_rx_no_buf=.. ... dma_mapped=.. peak_rss=..
///
/// Example, in the test guest (the peer at 10.99.0.1 pings 10.99.0.2):
///   responder 0000:00:03.0 --ip 10.99.0.2
///   responder 0000:00:03.0 --ip 10.99.0.2 --duration 60 --interval 0
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
struct Args {
    /// PCI address of the NIC, e.g. 0000:00:03.0 (see `lspci -D`).
    pci: String,
    /// The IPv4 address to answer ARP and ping for.
    #[arg(long)]
    ip: Ipv4Addr,
    /// Stop after this many seconds (default: run until killed).
    #[arg(long, value_parser = parse_secs)]
    duration: Option<Duration>,
    /// Seconds between live counter lines (0: none).
    #[arg(long, default_value = "1", value_parser = parse_secs)]
    interval: Duration,
    /// Frames per burst.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=512))]
    batch: u16,
    /// RX and TX descriptors each (power of two, 8..=4096; virtio-net caps it at its queue
    /// size).
    #[arg(long, default_value_t = 256)]
    ring: u32,
    /// Fail instead of falling back to 4 KiB pages when no hugepages are free.
    #[arg(long)]
    require_hugepages: bool,
    /// Ask for every offload the device has: RX checksum, LRO (virtio-net's GUEST_TSO), TX
    /// checksum and TSO. The responder checks the TCP/UDP checksum of every IPv4 segment
    /// it receives in software either way and counts what it found.
    #[arg(long)]
    offloads: bool,
    /// Learn link changes from the device's interrupt (MSI-X) instead of reading the link
    /// every 256 polls.
    #[arg(long)]
    interrupts: bool,
}

fn main() -> ExitCode {
    tenge_examples::run_main("responder", Args::parse(), run)
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed))?;
    }
    let cfg = PortConfig {
        rx_ring: args.ring,
        tx_ring: args.ring,
        mempool_buffers: (args.ring * 4).max(1024),
        cache_size: 64,
        rx_checksum: args.offloads,
        lro: args.offloads,
        tx_checksum: args.offloads,
        tso: args.offloads,
        hugepages: if args.require_hugepages {
            HugepagePolicy::Require
        } else {
            HugepagePolicy::Prefer
        },
        interrupts: args.interrupts,
        ..PortConfig::default()
    };
    let mut port = Port::open(&args.pci, &cfg)?;
    let responder = Responder {
        mac: port.mac(),
        ip: args.ip.octets(),
    };
    println!(
        "responder: {} ({}) {} answers ARP and ping for {}",
        args.pci,
        port.driver_name(),
        tenge::port::fmt_mac(&responder.mac),
        args.ip
    );
    println!("READY");

    let burst = args.batch as usize;
    let mut rx = PacketBatch::new(burst);
    // Room for a whole RX burst on top of replies a full TX ring left behind.
    let mut tx = PacketBatch::new(burst * 2);
    let mut counters = Counters::default();
    let mut tx_dropped = 0u64;
    // TCP/UDP over IPv4: checksums found good, bad, absent (UDP); coalesced segments (LRO);
    // frames over several buffers (not answered: ARP and ping fit one buffer).
    let (mut l4_good, mut l4_bad, mut l4_absent, mut lro, mut chained) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let start = Instant::now();
    let mut last_report = start;
    let mut iter = 0u32;
    // Replies handed to the device while the port knew its link down (dropped on the wire).
    let mut link_up = port.link().up;
    let mut sent_link_down = 0u64;
    loop {
        if port.rx_burst(&mut rx) > 0 {
            while let Some(mut b) = rx.pop() {
                match l4_checksum(&b) {
                    Some(L4Checksum::Good) => l4_good += 1,
                    Some(L4Checksum::Bad) => l4_bad += 1,
                    Some(L4Checksum::Absent) => l4_absent += 1,
                    None => {}
                }
                if b.meta().flags & PacketMeta::RX_LRO != 0 {
                    lro += 1;
                }
                if b.is_chained() {
                    chained += 1;
                    port.free(b);
                    continue;
                }
                let v = responder.handle(b.data_mut());
                counters.count(v);
                match v {
                    Verdict::ArpReply(len) | Verdict::EchoReply(len) => {
                        b.set_len(len);
                        if let Err(b) = tx.push(b) {
                            tx_dropped += 1;
                            port.free(b);
                        }
                    }
                    Verdict::Ignore(_) => port.free(b),
                }
            }
        }
        if !tx.is_empty() {
            let n = port.tx_burst(&mut tx) as u64;
            if !link_up {
                sent_link_down += n;
            }
        }
        iter = iter.wrapping_add(1);
        if iter.is_multiple_of(256) || (args.interrupts && iter.is_multiple_of(16)) {
            if let Some(e) = port.poll_link() {
                link_up = e.status.up;
                println!("{}", tenge_examples::link_line("responder", &e, start));
            }
            if port.removal_requested() {
                println!(
                    "responder: device removed at {:.3}s: stopping",
                    start.elapsed().as_secs_f64()
                );
                break;
            }
        }
        if iter.is_multiple_of(256) {
            let now = Instant::now();
            if stop.load(Ordering::Relaxed) || args.duration.is_some_and(|d| now - start >= d) {
                break;
            }
            if !args.interval.is_zero() && now - last_report >= args.interval {
                println!(
                    "[{:6.1}s] {}",
                    (now - start).as_secs_f64(),
                    counters.summary()
                );
                last_report = now;
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    // Replies still waiting for TX room at the end: one last try, then counted as dropped.
    port.tx_burst(&mut tx);
    tx_dropped += tx.len() as u64;
    port.free_batch(&mut tx);
    port.tx_drain(Duration::from_secs(2));
    let s = port.stats();
    println!(
        "responder: done: seconds={seconds:.3} {} tx={} tx_dropped={tx_dropped} \
         sent_link_down={sent_link_down} port_rx={} \
         port_rx_no_buf={} port_rx_bad_len={} port_rx_errors={} port_rx_bad_slot={} \
         port_rx_multi_buffer={} port_rx_chains={} port_tx={} port_tx_ring_full={} \
         port_tx_bad_packet={} rx_chained={chained} l4_csum_good={l4_good} \
         l4_csum_bad={l4_bad} l4_csum_absent={l4_absent} lro={lro} {}",
        counters.summary(),
        counters.arp_replies + counters.echo_replies - tx_dropped,
        s.rx.packets,
        s.rx.no_buf,
        s.rx.bad_len,
        s.rx.errors,
        s.rx.bad_slot,
        s.rx.multi_buffer,
        s.rx.chains,
        s.tx.packets,
        s.tx.ring_full,
        s.tx.bad_packet,
        memory_summary()
    );
    Ok(())
}
