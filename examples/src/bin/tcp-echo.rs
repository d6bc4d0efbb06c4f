//! tcp-echo: a TCP echo server on smoltcp over one tenge queue pair: every byte a client
//! sends comes back, on many connections at once. Prints live rates and, at the end, what
//! it echoed with the DMA memory and peak RSS.

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};
use tenge::smoltcp::SmolDevice;
use tenge::{Port, PortConfig};
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
    /// Empty polls before the loop sleeps until smoltcp's next timer (at most 1 ms): an
    /// idle server does not burn a core.
    #[arg(long, default_value_t = 2000)]
    idle_polls: u32,
}

fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let (a, p) = s
        .split_once('/')
        .ok_or_else(|| format!("'{s}' is not an address with a prefix like 10.99.0.2/24"))?;
    let a: Ipv4Addr = a.parse().map_err(|e| format!("'{a}': {e}"))?;
    let p: u8 = p
        .parse()
        .ok()
        .filter(|p| *p <= 32)
        .ok_or_else(|| format!("'{p}' is not a prefix length 0..=32"))?;
    Ok((a, p))
}

fn main() -> ExitCode {
    tenge_examples::run_main("tcp-echo", Args::parse(), run)
}

/// smoltcp's clock from ours.
fn now(start: Instant) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(start.elapsed().as_micros() as i64)
}

fn listener(buffer: usize, port: u16) -> Result<tcp::Socket<'static>, String> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; buffer]),
        tcp::SocketBuffer::new(vec![0; buffer]),
    );
    s.listen(port)
        .map_err(|e| format!("listen on {port}: {e}"))?;
    Ok(s)
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let cfg = PortConfig {
        rx_ring: args.rx_ring,
        // The RX ring, a TX ring in flight and the batches, with room to spare.
        mempool_buffers: (args.rx_ring * 2 + 2048).max(4096),
        ..PortConfig::default()
    };
    let mut port = Port::open(&args.pci, &cfg)?;
    let mac = port.mac();
    let pair = port
        .take_queues()
        .into_iter()
        .next()
        .ok_or("the port has no queue pair")?;
    let mut dev = SmolDevice::new(pair, args.rx_ring as usize);
    let start = Instant::now();
    let mut iface = Interface::new(
        Config::new(HardwareAddress::Ethernet(EthernetAddress(mac))),
        &mut dev,
        now(start),
    );
    let (ip, prefix) = args.ip;
    iface.update_ip_addrs(|a| {
        let _ = a.push(IpCidr::new(IpAddress::Ipv4(ip), prefix));
    });
    if let Some(gw) = args.gateway {
        iface
            .routes_mut()
            .add_default_ipv4_route(gw)
            .map_err(|e| format!("default route via {gw}: {e}"))?;
    }
    let mut sockets = SocketSet::new(Vec::new());
    let handles: Vec<SocketHandle> = (0..args.connections)
        .map(|_| listener(args.buffer, args.port).map(|s| sockets.add(s)))
        .collect::<Result<_, _>>()?;
    let mut was_open = vec![false; handles.len()];
    println!(
        "tcp-echo: {} {}/{prefix} port {} connections={} READY",
        args.pci, ip, args.port, args.connections
    );
    let mut buf = vec![0u8; 64 * 1024];
    let (mut echoed, mut closed, mut accepted) = (0u64, 0u64, 0u64);
    let (mut last, mut last_echoed) = (start, 0u64);
    let mut idle = 0u32;
    while start.elapsed() < args.duration && args.exit_after.is_none_or(|n| closed < n) {
        let t = now(start);
        let changed = iface.poll(t, &mut dev, &mut sockets);
        let mut moved = false;
        for (i, &h) in handles.iter().enumerate() {
            let s = sockets.get_mut::<tcp::Socket>(h);
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
                s.listen(args.port)
                    .map_err(|e| format!("listen on {}: {e}", args.port))?;
            }
        }
        if moved {
            // What the echo queued goes out in this round, not the next.
            iface.poll(now(start), &mut dev, &mut sockets);
        }
        let sent = dev.flush();
        if moved || sent > 0 || changed == smoltcp::iface::PollResult::SocketStateChanged {
            idle = 0;
        } else {
            idle = idle.saturating_add(1);
        }
        if idle > args.idle_polls && !dev.rx_pending() {
            let delay = iface
                .poll_delay(now(start), &sockets)
                .map_or(Duration::from_millis(1), |d| {
                    Duration::from_micros(d.total_micros())
                })
                .min(Duration::from_millis(1));
            std::thread::sleep(delay);
        }
        let n = Instant::now();
        if !args.interval.is_zero() && n - last >= args.interval {
            println!(
                "[{:6.1}s] echo {:8.3} Mbit/s  connections open {} accepted {accepted} closed {closed}",
                (n - start).as_secs_f64(),
                (echoed - last_echoed) as f64 * 8.0 / (n - last).as_secs_f64() / 1e6,
                was_open.iter().filter(|o| **o).count()
            );
            (last, last_echoed) = (n, echoed);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let st = dev.stats();
    let rx = dev.rx_queue().stats();
    let tx = dev.tx_queue().stats();
    println!(
        "tcp-echo: done: echoed_bytes={echoed} accepted={accepted} closed={closed} seconds={secs:.3} mbps={:.3} rx_frames={} tx_frames={} tx_no_buffer={} rx_bad_checksum={} rx_no_buf={} tx_ring_full={} {}",
        echoed as f64 * 8.0 / secs / 1e6,
        st.rx_frames,
        st.tx_frames,
        st.tx_no_buffer,
        st.rx_bad_checksum,
        rx.no_buf,
        tx.ring_full,
        memory_summary()
    );
    Ok(())
}
