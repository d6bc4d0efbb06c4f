//! tcp-echo: a TCP echo server on smoltcp over one tenge queue pair: every byte a client
//! sends comes back, on many connections at once. Prints live rates and, at the end, what
//! it echoed with the DMA memory and peak RSS.

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use tenge::port::IngressVerdict;
use tenge_examples::net::{parse_cidr, Stack};
use tenge_examples::{memory_summary, parse_secs};

/// Echo TCP on a NIC driven by tenge, through smoltcp; answers ARP and ping too.
///
/// The NIC must be bound to vfio-pci. Example, in the test guest (the namespace's Linux at
/// 10.99.0.1 connects with `socat - TCP:10.99.0.2:7`):
///   tcp-echo 0000:00:03.0 --ip 10.99.0.2/24 --port 7
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
struct Args {
    /// PCI address of the NIC, e.g. 0000:00:03.0 (see `lspci -D`).
    pci: String,
    /// The interface's IPv4 address and prefix length.
    #[arg(long, value_parser = parse_cidr)]
    ip: (Ipv4Addr, u8),
    /// Default IPv4 route through this gateway.
    #[arg(long)]
    gateway: Option<Ipv4Addr>,
    /// TCP port to listen on.
    #[arg(long, default_value_t = 7)]
    port: u16,
    /// Connections served at once (a listening socket each).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    connections: u16,
    /// Bytes of each socket's receive and send buffer.
    #[arg(long, default_value_t = 256 * 1024)]
    buffer: usize,
    /// Exit once this many connections have closed (default: run until --duration).
    #[arg(long)]
    exit_after: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, default_value = "3600", value_parser = parse_secs)]
    duration: Duration,
    /// RX descriptors (the TCP window is kept within them).
    #[arg(long, default_value_t = 512)]
    rx_ring: u32,
    /// Seconds between live rate lines (0: none).
    #[arg(long, default_value = "1", value_parser = parse_secs)]
    interval: Duration,
    /// Drop every UDP frame in the receive queue's ingress filter, before smoltcp sees it
    /// (an echo server has no UDP to serve: a UDP flood costs it a pass over each frame's
    /// headers and no more).
    #[arg(long)]
    drop_udp: bool,
    /// Empty polls before the loop sleeps until smoltcp's next timer (at most 1 ms): an
    /// idle server does not burn a core.
    #[arg(long, default_value_t = 2000)]
    idle_polls: u32,
}

fn main() -> ExitCode {
    tenge_examples::run_main("tcp-echo", Args::parse(), run)
}

/// Whether `f` is UDP over IPv4 or IPv6 (Ethernet II, no VLAN tag).
fn is_udp(f: &[u8]) -> bool {
    const UDP: u8 = 17;
    match f.get(12..14) {
        Some([0x08, 0x00]) => f.get(23) == Some(&UDP),
        Some([0x86, 0xdd]) => f.get(20) == Some(&UDP),
        _ => false,
    }
}

/// How long a connection may say nothing before it is dropped.
const IDLE_TIMEOUT: smoltcp::time::Duration = smoltcp::time::Duration::from_secs(10);

fn listener(buffer: usize, port: u16) -> Result<tcp::Socket<'static>, String> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; buffer]),
        tcp::SocketBuffer::new(vec![0; buffer]),
    );
    // A connection that says nothing for this long is dropped: a SYN flood's half-open
    // connections give their socket back instead of holding it for ever.
    s.set_timeout(Some(IDLE_TIMEOUT));
    s.listen(port)
        .map_err(|e| format!("listen on {port}: {e}"))?;
    Ok(s)
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut st = Stack::open(
        &args.pci,
        args.ip,
        args.gateway,
        args.rx_ring,
        args.idle_polls,
    )?;
    if args.drop_udp {
        st.dev
            .rx_queue()
            .set_ingress_filter(Some(Box::new(|p: &tenge::PacketBuf| {
                if is_udp(p.data()) {
                    IngressVerdict::Drop
                } else {
                    IngressVerdict::Pass
                }
            })));
    }
    let handles: Vec<SocketHandle> = (0..args.connections)
        .map(|_| listener(args.buffer, args.port).map(|s| st.sockets.add(s)))
        .collect::<Result<_, _>>()?;
    let mut was_open = vec![false; handles.len()];
    let (ip, prefix) = args.ip;
    println!(
        "tcp-echo: {} {ip}/{prefix} port {} connections={} READY",
        args.pci, args.port, args.connections
    );
    let mut buf = vec![0u8; 64 * 1024];
    let (mut echoed, mut closed, mut accepted) = (0u64, 0u64, 0u64);
    let (mut last, mut last_echoed) = (Duration::ZERO, 0u64);
    let mut moved = false;
    while st.elapsed() < args.duration && args.exit_after.is_none_or(|n| closed < n) {
        st.poll(moved);
        moved = false;
        for (i, &h) in handles.iter().enumerate() {
            let s = st.sockets.get_mut::<tcp::Socket>(h);
            if s.is_active() && !was_open[i] {
                was_open[i] = true;
                accepted += 1;
            }
            // Echo what fits in the send buffer.
            while s.can_recv() && s.can_send() {
                let room = (s.send_capacity() - s.send_queue()).min(buf.len());
                let n = match s.recv_slice(&mut buf[..room]) {
                    Ok(n) => n,
                    Err(_) => break,
                };
                if n == 0 {
                    break;
                }
                // Room was checked: the whole slice fits.
                let _ = s.send_slice(&buf[..n]);
                echoed += n as u64;
                moved = true;
            }
            // The client is done sending and everything went back: close our side.
            if s.state() == tcp::State::CloseWait && s.send_queue() == 0 && !s.can_recv() {
                s.close();
            }
            if was_open[i] && !s.is_open() {
                was_open[i] = false;
                closed += 1;
                s.abort();
                s.set_timeout(Some(IDLE_TIMEOUT));
                s.listen(args.port)
                    .map_err(|e| format!("listen on {}: {e}", args.port))?;
            }
        }
        let t = st.elapsed();
        if !args.interval.is_zero() && t - last >= args.interval {
            println!(
                "[{:6.1}s] echo {:8.3} Mbit/s  connections open {} accepted {accepted} closed {closed}",
                t.as_secs_f64(),
                (echoed - last_echoed) as f64 * 8.0 / (t - last).as_secs_f64() / 1e6,
                was_open.iter().filter(|o| **o).count()
            );
            (last, last_echoed) = (t, echoed);
        }
    }
    let secs = st.elapsed().as_secs_f64();
    let ing = st.dev.rx_queue().ingress_stats();
    println!(
        "tcp-echo: done: echoed_bytes={echoed} accepted={accepted} closed={closed} seconds={secs:.3} mbps={:.3} {} ingress_passed={} ingress_dropped={} {}",
        echoed as f64 * 8.0 / secs / 1e6,
        st.counters(),
        ing.passed,
        ing.dropped,
        memory_summary()
    );
    Ok(())
}
