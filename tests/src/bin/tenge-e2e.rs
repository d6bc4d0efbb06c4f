//! In-guest end-to-end scenarios, run by the host-side tests (tests/tests/*.rs) inside the
//! QEMU guest against QEMU's own device models. Each prints what it saw and exits non-zero
//! when an expectation fails; the host side checks the rest (pcaps, counts).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use tenge::platform::dma::HugepagePolicy;
use tenge::{Error, PacketBatch, PacketBuf, PacketMeta, Port, PortConfig, VfioError};
use tenge_examples::frame::{self, Flow};
use tenge_examples::{memory_summary, parse_mac, parse_secs, Ticker};
use tenge_tests::{size_for, Arrival, SeqTally};

/// tenge end-to-end scenarios (run inside the test guest).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Receive N test frames and check every byte and the order (with --any-order: that
    /// each arrives exactly once, byte-exact, in whatever order).
    RxCheck {
        /// PCI address of the receiving NIC.
        pci: String,
        /// Frames expected.
        #[arg(long)]
        count: u64,
        /// Frame sizes cycle from --min-size to --max-size (same rule as the sender).
        #[arg(long, default_value_t = 60)]
        min_size: usize,
        /// Largest frame size.
        #[arg(long, default_value_t = 60)]
        max_size: usize,
        /// RX descriptors.
        #[arg(long, default_value_t = 512)]
        rx_ring: u32,
        /// Frames per rx_burst.
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Give up after this many seconds.
        #[arg(long, default_value = "60", value_parser = parse_secs)]
        timeout: Duration,
        /// Turn on RX checksum offload and require every frame to be reported IPv4
        /// checksum good.
        #[arg(long)]
        rx_checksum: bool,
        /// Bytes of data per RX buffer: frames larger than this arrive as chains, which
        /// are checked byte for byte like the rest.
        #[arg(long, default_value_t = 2048)]
        buf_size: u32,
        /// Accept any order: every sequence number 0..count must arrive exactly once and
        /// byte-exact (duplicates, missing and corrupt frames are counted and fail the
        /// check); frames arriving after a newer one are reported as `out_of_order=`, not
        /// failed. Stops once all have arrived and --linger has passed, or after --idle
        /// without a frame, or at --timeout, and always prints the tally.
        #[arg(long)]
        any_order: bool,
        /// With --any-order: keep receiving this long after the last expected frame, to
        /// catch late duplicates.
        #[arg(long, default_value = "0.3", value_parser = parse_secs)]
        linger: Duration,
        /// With --any-order: give up this long after the last test frame (once one has
        /// arrived), reporting what is missing.
        #[arg(long, default_value = "5", value_parser = parse_secs)]
        idle: Duration,
        /// With --any-order: once this many test frames have arrived, stop polling for
        /// --pause, so the ring fills and the sender (or QEMU's hub) meets backpressure at a
        /// known point of every run.
        #[arg(long)]
        pause_after: Option<u64>,
        /// How long --pause-after stops polling.
        #[arg(long, default_value = "0.2", value_parser = parse_secs)]
        pause: Duration,
    },
    /// Receive while holding every buffer until the pool runs dry, check the drops are
    /// counted, give the buffers back, and check receive recovers.
    MempoolExhaust {
        /// PCI address of the receiving NIC.
        pci: String,
        /// Buffers in the pool.
        #[arg(long, default_value_t = 48)]
        buffers: u32,
        /// Give up after this many seconds.
        #[arg(long, default_value = "60", value_parser = parse_secs)]
        timeout: Duration,
    },
    /// Drain a NIC as fast as possible for a while and report the rate.
    RxSink {
        /// PCI address.
        pci: String,
        /// Seconds to run.
        #[arg(long, default_value = "10", value_parser = parse_secs)]
        duration: Duration,
        /// Frames per rx_burst.
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// RX descriptors.
        #[arg(long, default_value_t = 256)]
        rx_ring: u32,
        /// Refill once this many descriptors are free.
        #[arg(long, default_value_t = 32)]
        free_thresh: u32,
        /// Stop once no frame arrived for this many seconds (after the first one).
        #[arg(long, value_parser = parse_secs)]
        idle_stop: Option<Duration>,
        /// Turn on RX checksum offload.
        #[arg(long)]
        rx_checksum: bool,
        /// Open the port with promiscuous mode off (PortConfig::promisc = false).
        #[arg(long)]
        no_promisc: bool,
        /// After opening, turn promiscuous mode on or off (Port::set_promiscuous).
        #[arg(long, value_parser = parse_on_off)]
        set_promisc: Option<bool>,
        /// After opening, accept unicast frames to this MAC too (Port::set_unicast_filter
        /// with every --accept-mac given); repeatable.
        #[arg(long, value_parser = parse_mac)]
        accept_mac: Vec<[u8; 6]>,
        /// Stop when the test frame with this sequence number arrives (the sender's end
        /// marker; not counted in --by-dst).
        #[arg(long)]
        end_seq: Option<u64>,
        /// Count the frames received by destination (the port's MAC, broadcast, other
        /// multicast, other unicast) and print them on an `rx-sink: by-dst:` line.
        #[arg(long)]
        by_dst: bool,
        /// LRO on (PortConfig::lro: the device's, or tenge's software LRO).
        #[arg(long)]
        lro: bool,
        /// Sum the TCP payload bytes of what arrives (IPv4) and print them as
        /// `tcp_payload_bytes=` and live `tcp-gbps` lines.
        #[arg(long)]
        tcp: bool,
    },
    /// Send one TCP flow's stream for the offload benchmarks: TSO packets of --payload
    /// bytes (--tso), or --mss-sized frames built here, each with checksum requests (served
    /// by the device or in software, as the port says). Prints live payload Gbit/s.
    TcpSend {
        /// PCI address of the sending NIC.
        pci: String,
        /// Send TSO packets (the port segments them) instead of MSS-sized frames.
        #[arg(long)]
        tso: bool,
        /// TCP payload bytes per frame on the wire.
        #[arg(long, default_value_t = 1448)]
        mss: u16,
        /// TCP payload bytes per TSO packet.
        #[arg(long, default_value_t = 62_000)]
        payload: usize,
        /// Accept the device's TX checksum and TSO offloads (virtio-net CSUM, HOST_TSO).
        #[arg(long)]
        device_offloads: bool,
        /// Seconds to send.
        #[arg(long, default_value = "10", value_parser = parse_secs)]
        duration: Duration,
        /// Destination MAC address.
        #[arg(long, default_value = "02:00:00:00:0e:02", value_parser = parse_mac)]
        dst_mac: [u8; 6],
    },
    /// Send the TX offload test's packets (tenge_tests::offload) with checksum and TSO
    /// requests and their checksum fields scrambled, then four malformed requests, which
    /// must be dropped and counted (`bad_offload`), never sent.
    TxOffload {
        /// PCI address of the sending NIC.
        pci: String,
        /// Accept the device's TX checksum offload (virtio-net CSUM) where offered.
        #[arg(long)]
        tx_checksum: bool,
        /// Accept the device's TSO (virtio-net HOST_TSO4/6) where offered.
        #[arg(long)]
        tso: bool,
        /// Ask for this 802.1Q tag too on every packet (`PacketMeta::TX_VLAN`), decimal.
        #[arg(long)]
        vlan: Option<u16>,
        /// Open the port with VLAN stripping on (e1000e: the device inserts the tags).
        #[arg(long)]
        vlan_strip: bool,
    },
    /// Open a port expecting a specific error; the message must contain every --expect.
    /// Open the port, take its queue pair, drop the port before the queues, then open it
    /// again in the same process and send frames through the new queue pair: the first
    /// port's group must have left the container once its last BAR mapping went.
    DropOrder {
        /// PCI address to open.
        pci: String,
        /// Frames to send after the reopen.
        #[arg(long, default_value_t = 10)]
        count: u64,
    },
    ExpectError {
        /// PCI address to open.
        pci: String,
        /// Refuse the 4 KiB fallback.
        #[arg(long)]
        require_hugepages: bool,
        /// Which error variant: no-device, not-vfio, group-not-viable, bad-address,
        /// no-hugepages.
        #[arg(long)]
        kind: String,
        /// Substrings the message must contain.
        #[arg(long)]
        expect: Vec<String>,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    let r = match args.cmd {
        Cmd::RxCheck {
            pci,
            count,
            min_size,
            max_size,
            rx_ring,
            batch,
            timeout,
            rx_checksum,
            buf_size,
            any_order,
            linger,
            idle,
            pause_after,
            pause,
        } => {
            let want = RxCheck {
                count,
                min_size,
                max_size,
                rx_ring,
                batch,
                timeout,
                rx_checksum,
                buf_size,
            };
            if any_order {
                let pause = pause_after.map(|n| (n, pause));
                rx_check_any_order(&pci, &want, linger, idle, pause)
            } else {
                rx_check(&pci, &want)
            }
        }
        Cmd::MempoolExhaust {
            pci,
            buffers,
            timeout,
        } => mempool_exhaust(&pci, buffers, timeout),
        Cmd::RxSink {
            pci,
            duration,
            batch,
            rx_ring,
            free_thresh,
            idle_stop,
            rx_checksum,
            no_promisc,
            set_promisc,
            accept_mac,
            end_seq,
            by_dst,
            lro,
            tcp,
        } => rx_sink(
            &pci,
            &RxSink {
                duration,
                batch,
                idle_stop,
                set_promisc,
                accept_mac,
                end_seq,
                by_dst,
                tcp,
            },
            &PortConfig {
                rx_ring,
                rx_free_thresh: free_thresh,
                rx_checksum,
                promisc: !no_promisc,
                lro,
                ..PortConfig::default()
            },
        ),
        Cmd::TcpSend {
            pci,
            tso,
            mss,
            payload,
            device_offloads,
            duration,
            dst_mac,
        } => tcp_send(
            &pci,
            &TcpSend {
                tso,
                mss,
                payload,
                duration,
                dst_mac,
            },
            device_offloads,
        ),
        Cmd::ExpectError {
            pci,
            require_hugepages,
            kind,
            expect,
        } => expect_error(&pci, require_hugepages, &kind, &expect),
        Cmd::DropOrder { pci, count } => drop_order(&pci, count),
        Cmd::TxOffload {
            pci,
            tx_checksum,
            tso,
            vlan,
            vlan_strip,
        } => tx_offload(&pci, tx_checksum, tso, vlan, vlan_strip),
    };
    match r {
        Ok(()) => {
            println!("E2E-PASS");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("E2E-FAIL: {e}");
            ExitCode::FAILURE
        }
    }
}

type Res = Result<(), Box<dyn std::error::Error>>;

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("'{s}': say on or off")),
    }
}

/// What rx-check expects.
struct RxCheck {
    count: u64,
    min_size: usize,
    max_size: usize,
    rx_ring: u32,
    batch: usize,
    timeout: Duration,
    rx_checksum: bool,
    buf_size: u32,
}

fn rx_check(pci: &str, want: &RxCheck) -> Res {
    let RxCheck {
        count,
        rx_ring,
        batch,
        timeout,
        rx_checksum,
        buf_size,
        ..
    } = *want;
    let mut port = Port::open(
        pci,
        &PortConfig {
            rx_ring,
            rx_checksum,
            buf_size,
            ..PortConfig::default()
        },
    )?;
    let mut bytes = Vec::with_capacity(2048);
    println!("READY {pci}");
    let flow = Flow::default();
    let mut b = PacketBatch::new(batch);
    let mut next: u64 = 0;
    let mut other = 0u64;
    let start = Instant::now();
    while next < count {
        if start.elapsed() > timeout {
            return Err(format!("timeout: got {next} of {count} frames in order").into());
        }
        if port.rx_burst(&mut b) == 0 {
            continue;
        }
        for p in b.drain() {
            let Some(seq) = frame::seq_of(p.data()) else {
                other += 1; // e.g. a stray frame from the guest kernel: not ours
                port.free(p);
                continue;
            };
            if seq != next {
                let s = port.stats();
                return Err(format!(
                    "frame {seq} arrived when {next} was expected (rx {:?}, hw gprc {} mpc {})",
                    s.rx, s.hw.gprc, s.hw.mpc
                )
                .into());
            }
            check_frame(&p, &flow, seq, want, &mut bytes)?;
            next += 1;
            port.free(p);
        }
    }
    let s = port.stats();
    println!(
        "rx-check: received={next} in_order=true other={other} chains={} rx_doorbells={} no_buf={} bad_len={} hw_gprc={} hw_mpc={} {}",
        s.rx.chains,
        s.rx.doorbells,
        s.rx.no_buf,
        s.rx.bad_len,
        s.hw.gprc,
        s.hw.mpc,
        memory_summary()
    );
    if s.rx.packets < count {
        return Err("software counter below frames received".into());
    }
    Ok(())
}

/// Whether received frame `p` (a chain or one buffer) carrying `seq` is byte for byte the
/// frame sent with that number, with the checksum flags `want` asks for; if not, why.
/// `bytes` is scratch space for the frame gathered from its buffers.
fn check_frame(
    p: &PacketBuf,
    flow: &Flow,
    seq: u64,
    want: &RxCheck,
    bytes: &mut Vec<u8>,
) -> Result<(), String> {
    let flags = p.meta().flags;
    if want.rx_checksum && flags & PacketMeta::RX_IP_CSUM_GOOD == 0 {
        return Err(format!(
            "frame {seq}: IPv4 checksum not reported good (flags {flags:#x})"
        ));
    }
    // With the offload off no verdict; the packet type, where the device reports one,
    // comes either way.
    let verdicts = PacketMeta::RX_IP_CSUM_GOOD
        | PacketMeta::RX_IP_CSUM_BAD
        | PacketMeta::RX_L4_CSUM_GOOD
        | PacketMeta::RX_L4_CSUM_BAD;
    if !want.rx_checksum && flags & verdicts != 0 {
        return Err(format!(
            "frame {seq}: checksum flags {flags:#x} with offload off"
        ));
    }
    let sent = frame::build(flow, size_for(seq, want.min_size, want.max_size), seq);
    // The whole frame, over every buffer of a chain.
    bytes.clear();
    p.append_to(bytes);
    if *bytes != sent {
        return Err(format!(
            "frame {seq}: {} bytes in {} buffers differ from the {} sent",
            bytes.len(),
            p.nb_segs(),
            sent.len()
        ));
    }
    Ok(())
}

/// rx-check --any-order: a bitmap of the sequence numbers seen; see `Cmd::RxCheck`.
/// `pause`: (after this many test frames, stop polling this long), once.
fn rx_check_any_order(
    pci: &str,
    want: &RxCheck,
    linger: Duration,
    idle: Duration,
    mut pause: Option<(u64, Duration)>,
) -> Res {
    let mut port = Port::open(
        pci,
        &PortConfig {
            rx_ring: want.rx_ring,
            rx_checksum: want.rx_checksum,
            buf_size: want.buf_size,
            ..PortConfig::default()
        },
    )?;
    println!("READY {pci}");
    let flow = Flow::default();
    let mut b = PacketBatch::new(want.batch);
    let mut bytes = Vec::with_capacity(2048);
    let mut tally = SeqTally::new(want.count);
    let mut other = 0u64;
    let mut reasons = Vec::new();
    let start = Instant::now();
    let mut last_frame: Option<Instant> = None;
    let mut complete_at: Option<Instant> = None;
    let mut polls = 0u32;
    let stop = loop {
        if port.rx_burst(&mut b) > 0 {
            for p in b.drain() {
                let Some(seq) = frame::seq_of(p.data()) else {
                    other += 1; // e.g. a stray frame from the guest kernel: not ours
                    port.free(p);
                    continue;
                };
                let check = check_frame(&p, &flow, seq, want, &mut bytes);
                port.free(p);
                let arrival = tally.record(seq, check.is_ok());
                if arrival != Arrival::New && reasons.len() < 5 {
                    reasons.push(match (arrival, check) {
                        (Arrival::Duplicate, _) => format!("frame {seq} again"),
                        (_, Err(why)) => why,
                        _ => format!("frame {seq} beyond --count {}", want.count),
                    });
                }
            }
            last_frame = Some(Instant::now());
            let seen = tally.received + tally.duplicates + tally.corrupt;
            if let Some((_, d)) = pause.take_if(|(after, _)| seen >= *after) {
                std::thread::sleep(d);
            }
        }
        polls = polls.wrapping_add(1);
        if !polls.is_multiple_of(64) {
            continue;
        }
        let now = Instant::now();
        if tally.complete() {
            let at = *complete_at.get_or_insert(now);
            if now - at >= linger {
                break "all arrived";
            }
        } else if now - start >= want.timeout {
            break "timeout";
        } else if last_frame.is_some_and(|t| now - t >= idle) {
            break "idle";
        }
    };
    let s = port.stats();
    println!(
        "rx-check: any-order stop={stop} count={} {} other={other} chains={} rx_doorbells={} no_buf={} bad_len={} bad_slot={} ring_dry={} hw_gprc={} hw_mpc={} {}",
        want.count,
        tally.summary(),
        s.rx.chains,
        s.rx.doorbells,
        s.rx.no_buf,
        s.rx.bad_len,
        s.rx.bad_slot,
        s.rx.ring_dry,
        s.hw.gprc,
        s.hw.mpc,
        memory_summary()
    );
    if !tally.exact() {
        return Err(format!(
            "not every frame exactly once, byte-exact: {}; first missing {:?}; {}",
            tally.summary(),
            tally.first_missing(10),
            reasons.join("; ")
        )
        .into());
    }
    Ok(())
}

fn mempool_exhaust(pci: &str, buffers: u32, timeout: Duration) -> Res {
    let mut port = Port::open(
        pci,
        &PortConfig {
            rx_ring: 64,
            mempool_buffers: buffers,
            cache_size: 8,
            ..PortConfig::default()
        },
    )?;
    println!("READY {pci}");
    let start = Instant::now();
    let mut held = Vec::new();
    let mut b = PacketBatch::new(32);
    // Phase 1: take every buffer and keep it.
    while port.rx_posted() > 0 || held.len() < buffers as usize / 2 {
        if start.elapsed() > timeout {
            return Err(format!(
                "timeout holding buffers: held {} posted {}",
                held.len(),
                port.rx_posted()
            )
            .into());
        }
        port.rx_burst(&mut b);
        held.extend(b.drain());
    }
    // Poll a while with the ring empty: each refill attempt must count, none may panic.
    for _ in 0..1000 {
        port.rx_burst(&mut b);
        held.extend(b.drain());
    }
    let exhausted = port.stats();
    println!(
        "mempool-exhaust: held={} posted={} no_buf={} free_in_pool={}",
        held.len(),
        port.rx_posted(),
        exhausted.rx.no_buf,
        port.mempool().free_count()
    );
    if exhausted.rx.no_buf == 0 {
        return Err("pool ran dry but no_buf stayed 0".into());
    }
    // Phase 2: give everything back; receive must resume.
    let before = exhausted.rx.packets;
    for p in held.drain(..) {
        port.free(p);
    }
    while port.stats().rx.packets < before + 16 {
        if start.elapsed() > timeout {
            return Err("receive did not recover after buffers returned".into());
        }
        if port.rx_burst(&mut b) > 0 {
            port.free_batch(&mut b);
        }
    }
    let s = port.stats();
    println!(
        "mempool-exhaust: recovered received={} posted={} no_buf={} {}",
        s.rx.packets,
        port.rx_posted(),
        s.rx.no_buf,
        memory_summary()
    );
    Ok(())
}

/// What rx-sink does besides draining.
struct RxSink {
    duration: Duration,
    batch: usize,
    idle_stop: Option<Duration>,
    set_promisc: Option<bool>,
    accept_mac: Vec<[u8; 6]>,
    end_seq: Option<u64>,
    by_dst: bool,
    tcp: bool,
}

/// The TCP payload bytes of an IPv4 frame (0 for anything else): its IP total length less
/// the IP and TCP headers, as the headers say (a merged frame's are the merged length).
fn tcp_payload(p: &PacketBuf) -> u64 {
    let d = p.data();
    if d.len() < 54 || d[12..14] != [0x08, 0x00] || d[23] != 6 {
        return 0;
    }
    let ihl = usize::from(d[14] & 0xf) * 4;
    let total = usize::from(u16::from_be_bytes([d[16], d[17]]));
    let doff = d.get(14 + ihl + 12).map_or(0, |b| usize::from(b >> 4) * 4);
    total.saturating_sub(ihl + doff) as u64
}

/// What `tcp-send` sends.
struct TcpSend {
    tso: bool,
    mss: u16,
    payload: usize,
    duration: Duration,
    dst_mac: [u8; 6],
}

/// The stream's frame header (Ethernet, IPv4, TCP without options), its IP total length
/// and TCP sequence number patched per packet.
fn tcp_header(src: [u8; 6], dst: [u8; 6]) -> Vec<u8> {
    let mut h = Vec::new();
    etherparse::PacketBuilder::ethernet2(src, dst)
        .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
        .tcp(40000, 5001, 0, 65535)
        .ack(1)
        .write(&mut h, &[])
        .expect("a TCP header");
    h
}

fn tcp_send(pci: &str, t: &TcpSend, device_offloads: bool) -> Res {
    let mut port = Port::open(
        pci,
        &PortConfig {
            rx_ring: 64,
            mempool_buffers: 8192,
            tx_checksum: device_offloads,
            tso: device_offloads,
            ..PortConfig::default()
        },
    )?;
    let offloads = port.offloads();
    let hdr = tcp_header(port.mac(), t.dst_mac);
    let per_pkt = if t.tso { t.payload } else { usize::from(t.mss) };
    // Payload bytes: a fixed pattern, copied into every packet as an application would.
    let pattern: Vec<u8> = (0..per_pkt + 2048).map(|i| (i % 251) as u8).collect();
    println!(
        "tcp-send: {pci} {} mss={} payload_per_packet={per_pkt} offloads: {offloads}",
        if t.tso { "tso" } else { "mss-frames" },
        t.mss
    );
    let mut batch = PacketBatch::new(32);
    let (mut seq, mut id) = (0u32, 0u16);
    let (mut packets, mut payload_sent) = (0u64, 0u64);
    let start = Instant::now();
    let (mut last, mut last_bytes) = (start, 0u64);
    let mut built_payload = Vec::new();
    while start.elapsed() < t.duration {
        while batch.room() > 0 {
            let Some(p) = build_tcp(&mut port, &hdr, &pattern, per_pkt, seq, id, t) else {
                break;
            };
            let _ = batch.push(p);
            built_payload.push(per_pkt as u64);
            seq = seq.wrapping_add(per_pkt as u32);
            id = id.wrapping_add(1);
        }
        let n = port.tx_burst(&mut batch);
        if n == 0 {
            port.tx_reclaim();
        }
        for b in built_payload.drain(..n) {
            payload_sent += b;
            packets += 1;
        }
        let now = Instant::now();
        if now - last >= Duration::from_secs(1) {
            println!(
                "[{:6.1}s] gbps {:7.4}",
                (now - start).as_secs_f64(),
                (payload_sent - last_bytes) as f64 * 8.0 / (now - last).as_secs_f64() / 1e9
            );
            (last, last_bytes) = (now, payload_sent);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    port.free_batch(&mut batch);
    port.tx_drain(Duration::from_secs(5));
    let s = port.stats();
    println!(
        "tcp-send: done: packets={packets} payload_bytes={payload_sent} seconds={secs:.3} gbps={:.4} tx_frames={} bad_offload={} bad_packet={} hw_gptc={} {}",
        payload_sent as f64 * 8.0 / secs / 1e9,
        s.tx.packets,
        s.tx.bad_offload,
        s.tx.bad_packet,
        s.hw.gptc,
        memory_summary()
    );
    Ok(())
}

/// One packet of the stream at `seq`: the header patched (IP total length and ID, TCP
/// sequence), `len` payload bytes after it, in a chain of buffers for TSO; the offload
/// requests set. `None` when the pool is out of buffers (the caller sends what it has).
fn build_tcp(
    port: &mut Port,
    hdr: &[u8],
    pattern: &[u8],
    len: usize,
    seq: u32,
    id: u16,
    t: &TcpSend,
) -> Option<PacketBuf> {
    let total = hdr.len() + len;
    let room = 2048usize;
    let mut parts = Vec::with_capacity(total.div_ceil(room));
    let mut at = 0usize;
    while at < total {
        let n = (total - at).min(room);
        // Out of buffers: those taken go back as `parts` drops.
        let mut b = port.alloc_tx()?;
        if !b.set_len(n) {
            return None;
        }
        let d = b.data_mut();
        let h = hdr.len().saturating_sub(at).min(n);
        if h > 0 {
            d[..h].copy_from_slice(&hdr[at..at + h]);
        }
        let from = (at + h) - hdr.len();
        d[h..n].copy_from_slice(&pattern[from % 251..from % 251 + (n - h)]);
        parts.push(b);
        at += n;
    }
    let mut head: Option<PacketBuf> = None;
    while let Some(mut b) = parts.pop() {
        b.set_next(head.take());
        head = Some(b);
    }
    let mut p = head?;
    let d = p.data_mut();
    d[16..18].copy_from_slice(&((total - 14) as u16).to_be_bytes());
    d[18..20].copy_from_slice(&id.to_be_bytes());
    d[38..42].copy_from_slice(&seq.to_be_bytes());
    let m = p.meta_mut();
    m.flags = PacketMeta::TX_IPV4
        | PacketMeta::TX_IP_CSUM
        | if t.tso {
            PacketMeta::TX_TSO
        } else {
            PacketMeta::TX_TCP_CSUM
        };
    (m.l2_len, m.l3_len, m.l4_len, m.mss) = (14, 20, 20, t.mss);
    Some(p)
}

/// Frames received, by destination address.
#[derive(Default)]
struct ByDst {
    own: u64,
    broadcast: u64,
    multicast: u64,
    other: u64,
}

fn rx_sink(pci: &str, sink: &RxSink, cfg: &PortConfig) -> Res {
    let RxSink {
        duration,
        batch,
        idle_stop,
        end_seq,
        by_dst,
        ..
    } = *sink;
    let mut port = Port::open(pci, cfg)?;
    if let Some(on) = sink.set_promisc {
        port.set_promiscuous(on)?;
    }
    if !sink.accept_mac.is_empty() {
        port.set_unicast_filter(&sink.accept_mac)?;
    }
    let mac = port.mac();
    let mut dst = ByDst::default();
    let mut end_seen = false;
    println!("READY {pci}");
    let mut b = PacketBatch::new(batch);
    let mut got = 0u64;
    let (mut tcp_bytes, mut last_tcp) = (0u64, 0u64);
    let mut first: Option<Instant> = None;
    let start = Instant::now();
    let mut last = start;
    let mut last_got = 0;
    let mut ticker = Ticker::new(Duration::from_millis(20))?;
    let mut got_at_check = 0u64;
    let mut last_progress = start;
    loop {
        let n = port.rx_burst(&mut b);
        if n > 0 {
            got += n as u64;
            first.get_or_insert_with(Instant::now);
            if sink.tcp {
                tcp_bytes += b.iter().map(tcp_payload).sum::<u64>();
            }
            if by_dst || end_seq.is_some() {
                for p in b.iter() {
                    let d = p.data();
                    if end_seq.is_some() && frame::seq_of(d) == end_seq {
                        end_seen = true;
                        continue;
                    }
                    let Some(to) = d.get(..6) else { continue };
                    if to == mac {
                        dst.own += 1;
                    } else if to == [0xff; 6] {
                        dst.broadcast += 1;
                    } else if to[0] & 1 != 0 {
                        dst.multicast += 1;
                    } else {
                        dst.other += 1;
                    }
                }
            }
            port.free_batch(&mut b);
            if end_seen {
                break;
            }
        }
        // The clock only when a tick says time has passed (Ticker: under TCG a clock
        // read can stop this vCPU for milliseconds).
        if ticker.ticked() {
            let now = Instant::now();
            if now - start >= duration {
                break;
            }
            if got != got_at_check {
                got_at_check = got;
                last_progress = now;
            } else if idle_stop.is_some_and(|d| first.is_some() && now - last_progress >= d) {
                break;
            }
            if now - last >= Duration::from_secs(1) {
                let dt = (now - last).as_secs_f64();
                println!(
                    "[{:6.1}s] rx {:7.3} Mpps",
                    (now - start).as_secs_f64(),
                    (got - last_got) as f64 / dt / 1e6
                );
                if sink.tcp {
                    println!(
                        "[{:6.1}s] tcp-gbps {:7.4}",
                        (now - start).as_secs_f64(),
                        (tcp_bytes - last_tcp) as f64 * 8.0 / dt / 1e9
                    );
                    last_tcp = tcp_bytes;
                }
                last = now;
                last_got = got;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let s = port.stats();
    println!(
        "rx-sink: done: received={got} seconds={secs:.3} mpps={:.4} no_buf={} filtered={} rx_doorbells={} rx_notifies={} hw_gprc={} hw_mpc={} hw_rnbc={} {}",
        got as f64 / secs / 1e6,
        s.rx.no_buf,
        s.rx.filtered,
        s.rx.doorbells,
        port.notifies().0,
        s.hw.gprc,
        s.hw.mpc,
        s.hw.rnbc,
        memory_summary()
    );
    if sink.tcp {
        println!(
            "rx-sink: tcp: frames={got} tcp_payload_bytes={tcp_bytes} gbps={:.4} lro={:?}",
            tcp_bytes as f64 * 8.0 / secs / 1e9,
            port.lro_stats()
        );
    }
    if by_dst {
        println!(
            "rx-sink: by-dst: own={} broadcast={} multicast={} other={} end_seen={end_seen}",
            dst.own, dst.broadcast, dst.multicast, dst.other
        );
    }
    Ok(())
}

fn drop_order(pci: &str, count: u64) -> Res {
    let cfg = PortConfig::default();
    let mut port = Port::open(pci, &cfg)?;
    let queues = port.take_queues();
    drop(port);
    drop(queues);
    println!("drop-order: port dropped before its queues");
    let mut port = Port::open(pci, &cfg)?;
    let mut pair = port
        .take_queues()
        .into_iter()
        .next()
        .ok_or("no queue pair")?;
    let mut batch = PacketBatch::new(32);
    let mut sent = 0u64;
    let deadline = Instant::now() + Duration::from_secs(10);
    while sent < count && Instant::now() < deadline {
        while batch.len() < 32 && sent + (batch.len() as u64) < count {
            let mut b = pair.tx.alloc().ok_or("TX pool empty")?;
            let f = frame::build(&Flow::default(), 60, sent + batch.len() as u64);
            if !b.copy_from(&f) {
                return Err("frame larger than a buffer".into());
            }
            if let Err(b) = batch.push(b) {
                pair.tx.free(b);
                break;
            }
        }
        sent += pair.tx.tx_burst(&mut batch) as u64;
    }
    println!("drop-order: reopened, sent={sent}");
    if sent != count {
        return Err(format!("sent {sent} of {count} after the reopen").into());
    }
    Ok(())
}

fn expect_error(pci: &str, require_hugepages: bool, kind: &str, expect: &[String]) -> Res {
    let cfg = PortConfig {
        hugepages: if require_hugepages {
            HugepagePolicy::Require
        } else {
            HugepagePolicy::Prefer
        },
        link_timeout: Duration::from_millis(100),
        ..PortConfig::default()
    };
    let err = match Port::open(pci, &cfg) {
        Ok(_) => return Err(format!("opening {pci} succeeded; expected a {kind} error").into()),
        Err(e) => e,
    };
    let msg = err.to_string();
    println!("expect-error: {kind}: {msg}");
    let matches = match kind {
        "bad-address" => matches!(err, Error::Vfio(VfioError::BadPciAddress(_))),
        "no-device" => matches!(err, Error::Vfio(VfioError::NoSuchDevice { .. })),
        "not-vfio" => matches!(err, Error::Vfio(VfioError::NotBoundToVfio { .. })),
        "group-not-viable" => matches!(err, Error::Vfio(VfioError::GroupNotViable { .. })),
        "no-hugepages" => matches!(err, Error::Dma(tenge::DmaError::NoHugepages { .. })),
        other => return Err(format!("unknown --kind {other}").into()),
    };
    if !matches {
        return Err(format!("expected a {kind} error, got: {err:?}").into());
    }
    for e in expect {
        if !msg.contains(e.as_str()) {
            return Err(format!("message lacks '{e}': {msg}").into());
        }
    }
    Ok(())
}

/// `frame` as a chain of buffers of at most 2048 bytes from `port`'s TX pool.
fn chain_from(port: &mut Port, frame: &[u8]) -> Result<tenge::PacketBuf, String> {
    let mut head: Option<tenge::PacketBuf> = None;
    for piece in frame.chunks(2048).rev() {
        let mut b = port.alloc_tx().ok_or("the TX pool is empty")?;
        if !b.copy_from(piece) {
            return Err("a 2048-byte piece did not fit a buffer".into());
        }
        b.set_next(head.take());
        head = Some(b);
    }
    head.ok_or_else(|| "an empty frame".into())
}

/// The offload requests for `case` with header lengths `h`.
fn offload_meta(case: &tenge_tests::offload::Case, h: [u8; 3]) -> tenge::PacketMeta {
    use tenge::PacketMeta as M;
    let mut flags = if case.v6 {
        M::TX_IPV6
    } else {
        M::TX_IPV4 | M::TX_IP_CSUM
    };
    flags |= if case.mss > 0 {
        M::TX_TSO
    } else if case.udp {
        M::TX_UDP_CSUM
    } else {
        M::TX_TCP_CSUM
    };
    M {
        flags,
        l2_len: h[0],
        l3_len: h[1],
        l4_len: h[2],
        mss: case.mss,
        ..M::default()
    }
}

fn tx_offload(pci: &str, tx_checksum: bool, tso: bool, vlan: Option<u16>, vlan_strip: bool) -> Res {
    use tenge_tests::offload::{cases, frame};
    let mut port = Port::open(
        pci,
        &PortConfig {
            mempool_buffers: 4096,
            tx_checksum,
            tso,
            vlan_strip,
            ..PortConfig::default()
        },
    )?;
    println!("READY {pci}");
    println!("OFFLOADS {}", port.offloads());
    let send = |port: &mut Port, f: &[u8], meta: tenge::PacketMeta| -> Res {
        let mut b = chain_from(port, f)?;
        *b.meta_mut() = meta;
        if let Some(tci) = vlan {
            b.meta_mut().flags |= tenge::PacketMeta::TX_VLAN;
            b.meta_mut().vlan_tci = tci;
        }
        let mut batch = PacketBatch::new(1);
        let _ = batch.push(b);
        while !batch.is_empty() {
            if port.tx_burst(&mut batch) == 0 {
                port.tx_reclaim();
            }
        }
        Ok(())
    };
    let all = cases();
    for (n, c) in all.iter().enumerate() {
        let (mut f, h) = frame(n, c);
        // Scramble every checksum the device is asked for: only its work can fix them.
        let (l2, l3) = (usize::from(h[0]), usize::from(h[1]));
        if !c.v6 {
            f[l2 + 10..l2 + 12].copy_from_slice(&[0xde, 0xad]);
        }
        let at = l2 + l3 + if c.udp { 6 } else { 16 };
        f[at..at + 2].copy_from_slice(&[0xbe, 0xef]);
        send(&mut port, &f, offload_meta(c, h))?;
    }
    // Malformed requests: each dropped and counted, none on the wire.
    let (f, h) = frame(0, &all[0]); // TCP over IPv4
    let (u, hu) = frame(4, &all[4]); // UDP over IPv4
    let tso = |mss| tenge::PacketMeta {
        mss,
        ..offload_meta(
            &tenge_tests::offload::Case {
                mss: 1448,
                ..all[0]
            },
            h,
        )
    };
    let short = u[..40].to_vec();
    let bad = [
        (&f, tso(0)), // TSO with an MSS of 0
        (
            &u,
            tenge::PacketMeta {
                mss: 100,
                ..tso(100)
            },
        ), // TSO on UDP
        (
            &f,
            tenge::PacketMeta {
                l3_len: 24,
                ..offload_meta(&all[0], h)
            },
        ), // wrong IHL
        (
            &u,
            tenge::PacketMeta {
                flags: tenge::PacketMeta::TX_IPV4 | tenge::PacketMeta::TX_TCP_CSUM,
                ..offload_meta(&all[4], hu)
            },
        ), // TCP csum on UDP
        (&short, offload_meta(&all[4], hu)), // UDP csum on a packet too short for its UDP header
    ];
    const BAD: u64 = 5;
    for (frame, meta) in bad {
        send(&mut port, frame, meta)?;
    }
    if !port.tx_drain(Duration::from_secs(5)) {
        return Err("the device did not finish sending".into());
    }
    let s = port.stats();
    println!(
        "TX-OFFLOAD cases={} tx_packets={} bad_offload={} bad_packet={} hw_gptc={}",
        all.len(),
        s.tx.packets,
        s.tx.bad_offload,
        s.tx.bad_packet,
        s.hw.gptc
    );
    // By reason, in the port's totals and in the one queue's own counters.
    println!("BAD-OFFLOAD {}", s.tx.bad_offload_reasons);
    println!("BAD-OFFLOAD-QUEUE0 {}", s.queues[0].1.bad_offload_reasons);
    // A TSO the device does not do leaves as the software GSO's segments, each counted.
    let software_tso = port.offloads().tx_tso == tenge::port::caps::OffloadSupport::Software;
    let frames: u64 = all
        .iter()
        .map(|c| match c.mss {
            0 => 1,
            mss if software_tso => c.payload.div_ceil(usize::from(mss)) as u64,
            _ => 1,
        })
        .sum();
    if s.tx.packets != frames || s.tx.bad_offload != BAD {
        return Err(format!(
            "sent {} of {frames} frames, {} of {BAD} bad requests counted",
            s.tx.packets, s.tx.bad_offload
        )
        .into());
    }
    Ok(())
}
