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
use tenge_examples::net::{is_junk, parse_cidr, StackArgs};
use tenge_examples::{memory_summary, parse_secs};

/// Echo TCP on a NIC driven by tenge, through smoltcp; answers ARP and ping too.
///
/// The NIC must be bound to vfio-pci. Example, in the test guest (the namespace's Linux at
/// 10.99.0.1 connects with `socat - TCP:10.99.0.2:7`):
///   tcp-echo 0000:00:03.0 --ip 10.99.0.2/24 --port 7
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
struct Args {
    #[command(flatten)]
    net: StackArgs,
    /// TCP port to listen on.
    #[arg(long, default_value_t = 7)]
    port: u16,
    /// Connections served at once (a listening socket each).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    connections: u16,
    /// Exit once this many connections have closed (default: run until --duration).
    #[arg(long)]
    exit_after: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, default_value = "3600", value_parser = parse_secs)]
    duration: Duration,
    /// Drop every UDP frame in the receive queue's ingress filter, before smoltcp sees it
    /// (an echo server has no UDP to serve: a UDP flood costs it a pass over each frame's
    /// headers and no more).
    #[arg(long)]
    drop_udp: bool,
    /// Drop every IPv4 frame whose source is outside this network (e.g. 10.99.0.1/32 for
    /// one known client), as --drop-udp does: a SYN flood from other addresses never
    /// reaches the listeners.
    #[arg(long, value_parser = parse_cidr)]
    only_from: Option<(Ipv4Addr, u8)>,
    /// Where --drop-udp and --only-from drop: `filter` (the receive queue's ingress filter,
    /// before the burst) or `app` (the application, after the burst and before smoltcp:
    /// what a server without the filter does; to compare the two).
    #[arg(long, default_value = "filter", value_parser = ["filter", "app"])]
    drop_at: String,
    /// Turn the port's promiscuous mode off: the device itself then drops frames to
    /// other unicast addresses before they reach the ring (virtio-net needs
    /// VIRTIO_NET_F_CTRL_RX; multicast, and with it IPv6 neighbour discovery, is dropped
    /// too).
    #[arg(long)]
    no_promisc: bool,
}

fn main() -> ExitCode {
    tenge_examples::run_main("tcp-echo", Args::parse(), run)
}

/// How long a connection may say nothing before it is dropped.
const IDLE_TIMEOUT: smoltcp::time::Duration = smoltcp::time::Duration::from_secs(10);

fn listener(net: &StackArgs, port: u16) -> Result<tcp::Socket<'static>, String> {
    let mut s = net.socket();
    // A connection that says nothing for this long is dropped: a SYN flood's half-open
    // connections give their socket back instead of holding it for ever.
    s.set_timeout(Some(IDLE_TIMEOUT));
    s.listen(port)
        .map_err(|e| format!("listen on {port}: {e}"))?;
    Ok(s)
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut st = args.net.open()?;
    if args.no_promisc {
        st.port
            .set_promiscuous(false)
            .map_err(|e| format!("--no-promisc: {e}"))?;
    }
    let (drop_udp, only_from) = (args.drop_udp, args.only_from);
    if drop_udp || only_from.is_some() {
        if args.drop_at == "app" {
            st.dev
                .set_rx_drop(Some(Box::new(move |f| is_junk(f, drop_udp, only_from))));
        } else {
            st.dev
                .rx_queue()
                .set_ingress_filter(Some(Box::new(move |p: &tenge::PacketBuf| {
                    if is_junk(p.data(), drop_udp, only_from) {
                        IngressVerdict::Drop
                    } else {
                        IngressVerdict::Pass
                    }
                })));
        }
    }
    let handles: Vec<SocketHandle> = (0..args.connections)
        .map(|_| listener(&args.net, args.port).map(|s| st.sockets.add(s)))
        .collect::<Result<_, _>>()?;
    let mut was_open = vec![false; handles.len()];
    let (ip, prefix) = args.net.ip;
    println!(
        "tcp-echo: {} {ip}/{prefix} port {} connections={} READY",
        args.net.pci, args.port, args.connections
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
        if !args.net.interval.is_zero() && t - last >= args.net.interval {
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
