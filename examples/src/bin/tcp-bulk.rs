//! tcp-bulk: sends or receives N bytes over one TCP connection with smoltcp on a tenge
//! port, for measurement: live rates, then the bytes, seconds, Gbit/s and SHA-256 of the
//! payload with the DMA memory and peak RSS.

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use sha2::{Digest, Sha256};
use smoltcp::socket::tcp;
use smoltcp::wire::IpAddress;
use tenge_examples::net::{StackArgs, Step};
use tenge_examples::{memory_summary, parse_secs};

/// Send or receive a stream of bytes over TCP through a NIC driven by tenge and smoltcp.
///
/// With --connect it connects to ADDRESS:--port, else it listens on --port for one
/// connection. --send sends --bytes (or for --duration) of a fixed pseudo-random pattern
/// and closes; --recv reads until the peer closes (or --bytes, or --duration). The
/// summary's sha256 is over the payload sent or received (the same stream on both ends
/// if nothing was lost). The NIC must be bound to vfio-pci. Examples, in the test guest
/// with the namespace's Linux at 10.99.0.1:
///   tcp-bulk 0000:00:03.0 --ip 10.99.0.2/24 --send --connect 10.99.0.1 --port 5001 --bytes 100M
///   tcp-bulk 0000:00:03.0 --ip 10.99.0.2/24 --recv --port 5001
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
#[command(group(clap::ArgGroup::new("dir").required(true).args(["send", "recv"])))]
struct Args {
    #[command(flatten)]
    net: StackArgs,
    /// Send the payload.
    #[arg(long)]
    send: bool,
    /// Receive the payload.
    #[arg(long)]
    recv: bool,
    /// Connect to this IPv4 address (default: listen for one connection).
    #[arg(long)]
    connect: Option<Ipv4Addr>,
    /// TCP port to connect to or listen on.
    #[arg(long, default_value_t = 5001)]
    port: u16,
    /// Bytes to send or to receive at most: a number, or with K, M or G (2^10, 2^20,
    /// 2^30). A sender needs it or --duration.
    #[arg(long, value_parser = parse_bytes)]
    bytes: Option<u64>,
    /// Stop after this many seconds of transfer (a sender closes, a receiver resets a
    /// peer that is still sending).
    #[arg(long, value_parser = parse_secs)]
    duration: Option<Duration>,
    /// Give up (an error) if the transfer has not ended after this many seconds.
    #[arg(long, default_value = "600", value_parser = parse_secs)]
    timeout: Duration,
    /// Skip the SHA-256 (sha256=none): for measuring the stack alone.
    #[arg(long)]
    no_sha: bool,
}

fn main() -> ExitCode {
    tenge_examples::run_main("tcp-bulk", Args::parse(), run)
}

/// Parses `1000`, `64K`, `100M`, `2G` (binary multiples).
fn parse_bytes(s: &str) -> Result<u64, String> {
    let (num, shift) = match s.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&s[..s.len() - 1], 10),
        Some('M') => (&s[..s.len() - 1], 20),
        Some('G') => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a byte count like 1000, 64K, 100M or 2G"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s} bytes is too many"))
}

/// The payload: a fixed pseudo-random pattern (xorshift, which no compressor or
/// pattern-matching peer can fake), repeated; byte `i` of the stream is `PATTERN[i % len]`.
struct Payload {
    pattern: Vec<u8>,
}

impl Payload {
    fn new() -> Payload {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let pattern = (0..1 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        Payload { pattern }
    }

    /// Fills `buf` with the stream from `offset`.
    fn fill(&self, buf: &mut [u8], offset: u64) {
        let len = self.pattern.len();
        let mut at = (offset % len as u64) as usize;
        for chunk in buf.chunks_mut(len) {
            let n = chunk.len();
            let first = n.min(len - at);
            chunk[..first].copy_from_slice(&self.pattern[at..at + first]);
            chunk[first..].copy_from_slice(&self.pattern[..n - first]);
            at = (at + n) % len;
        }
    }
}

/// Where the transfer is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Waiting for the connection.
    Opening,
    /// Moving data.
    Transfer,
    /// Our side closed (or reset): waiting for what is in flight to be acknowledged and
    /// the close to complete.
    Closing,
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    if args.send && args.bytes.is_none() && args.duration.is_none() {
        return Err("--send needs --bytes or --duration (how much to send)".into());
    }
    let mut st = args.net.open()?;
    let mut sock = args.net.socket();
    // A peer that vanishes mid-transfer ends the run instead of holding it for ever.
    sock.set_timeout(Some(smoltcp::time::Duration::from_secs(10)));
    match args.connect {
        Some(peer) => {
            let local_port = 49152 + (std::process::id() % 16384) as u16;
            sock.connect(
                st.iface.context(),
                (IpAddress::Ipv4(peer), args.port),
                local_port,
            )
            .map_err(|e| format!("connect to {peer}:{}: {e}", args.port))?;
        }
        None => sock
            .listen(args.port)
            .map_err(|e| format!("listen on {}: {e}", args.port))?,
    }
    let h = st.sockets.add(sock);
    let dir = if args.send { "send" } else { "recv" };
    let (ip, prefix) = args.net.ip;
    println!(
        "tcp-bulk: {} {ip}/{prefix} {dir} {} port {} READY",
        args.net.pci,
        args.connect
            .map_or("listening".to_string(), |a| format!("to {a}")),
        args.port
    );
    let payload = Payload::new();
    let limit = args.bytes.unwrap_or(u64::MAX);
    let mut hash = (!args.no_sha).then(Sha256::new);
    let mut moved = 0u64;
    let mut phase = Phase::Opening;
    let (mut started, mut ended) = (Duration::ZERO, None::<Duration>);
    let mut peer_reset = false;
    let mut closing_since = Duration::ZERO;
    st.run(
        args.net.interval,
        |st| {
            let t = st.elapsed();
            if t > args.timeout {
                return Err(format!(
                    "timed out after {} s in phase {phase:?} with {moved} bytes {}",
                    args.timeout.as_secs(),
                    if args.send { "sent" } else { "received" }
                )
                .into());
            }
            let s = st.sockets.get_mut::<tcp::Socket>(h);
            let mut step = Step {
                bytes: moved,
                ..Step::default()
            };
            if phase == Phase::Opening {
                if s.state() == tcp::State::Closed {
                    return Err(match args.connect {
                        Some(a) => format!(
                            "{a}:{} refused the connection (or did not answer)",
                            args.port
                        ),
                        None => "the listening socket closed before a connection came".into(),
                    }
                    .into());
                }
                if !s.may_send() && !s.may_recv() {
                    return Ok(step);
                }
                phase = Phase::Transfer;
                started = t;
                step.moved = true;
            }
            let time_up = args.duration.is_some_and(|d| t - started >= d);
            if phase == Phase::Transfer {
                if args.send {
                    while s.can_send() && moved < limit && !time_up {
                        let n = s
                            .send(|buf| {
                                let n = buf.len().min((limit - moved) as usize);
                                payload.fill(&mut buf[..n], moved);
                                if let Some(h) = hash.as_mut() {
                                    h.update(&buf[..n]);
                                }
                                (n, n)
                            })
                            .map_err(|e| format!("send after {moved} bytes: {e}"))?;
                        if n == 0 {
                            break;
                        }
                        moved += n as u64;
                        step.moved = true;
                    }
                    if moved >= limit || time_up {
                        s.close();
                        phase = Phase::Closing;
                    } else if !s.may_send() {
                        peer_reset = true;
                        phase = Phase::Closing;
                    }
                } else {
                    while s.can_recv() && moved < limit {
                        let n = s
                            .recv(|d| {
                                let n = d.len().min((limit - moved) as usize);
                                if let Some(h) = hash.as_mut() {
                                    h.update(&d[..n]);
                                }
                                (n, n)
                            })
                            .map_err(|e| format!("receive after {moved} bytes: {e}"))?;
                        if n == 0 {
                            break;
                        }
                        moved += n as u64;
                        step.moved = true;
                    }
                    let peer_done = !s.may_recv() && !s.can_recv();
                    if peer_done || moved >= limit || time_up {
                        ended = Some(t);
                        if peer_done {
                            s.close();
                        } else {
                            // The peer still sends and we want no more: reset it.
                            s.abort();
                        }
                        phase = Phase::Closing;
                    }
                }
                if phase == Phase::Closing {
                    closing_since = t;
                }
            }
            if phase == Phase::Closing {
                // A sender is done when the peer acknowledged every byte (smoltcp keeps
                // them in the send buffer until then).
                if args.send && ended.is_none() && s.send_queue() == 0 {
                    ended = Some(t);
                }
                if s.state() == tcp::State::Closed && args.send && s.send_queue() > 0 {
                    peer_reset = true;
                }
                let finished = matches!(s.state(), tcp::State::Closed | tcp::State::TimeWait);
                // Our FIN acknowledged, or a second of waiting for it after the data.
                step.done = peer_reset
                    || finished
                    || ended.is_some_and(|e| t - e.max(closing_since) > Duration::from_secs(1));
            }
            step.bytes = moved;
            Ok(step)
        },
        |_, mbps, bytes| {
            format!(
                "{} {mbps:8.3} Mbit/s  {bytes} bytes",
                if args.send { "tx" } else { "rx" }
            )
        },
    )?;
    if peer_reset {
        return Err(format!("the peer reset the connection after {moved} bytes").into());
    }
    if args.bytes.is_some() && args.duration.is_none() && moved != limit {
        return Err(format!("the connection ended after {moved} of {limit} bytes").into());
    }
    let secs = (ended.unwrap_or_else(|| st.elapsed()) - started).as_secs_f64();
    let digest: String = hash.map_or("none".into(), |h| {
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    });
    println!(
        "tcp-bulk: done: dir={dir} bytes={moved} seconds={secs:.3} gbps={:.4} sha256={digest} {} {}",
        moved as f64 * 8.0 / secs.max(1e-9) / 1e9,
        st.counters(),
        memory_summary()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_take_binary_suffixes_or_say_why_not() {
        assert_eq!(parse_bytes("1000").unwrap(), 1000);
        assert_eq!(parse_bytes("64K").unwrap(), 64 << 10);
        assert_eq!(parse_bytes("100m").unwrap(), 100 << 20);
        assert_eq!(parse_bytes("2G").unwrap(), 2 << 30);
        assert!(parse_bytes("x").unwrap_err().contains("byte count"));
        assert!(parse_bytes("99999999999999G").is_err());
    }

    #[test]
    fn the_payload_is_one_stream_whatever_the_pieces() {
        let p = Payload::new();
        let mut whole = vec![0u8; 3 << 20];
        p.fill(&mut whole, 0);
        let mut pieces = vec![0u8; 3 << 20];
        let mut off = 0usize;
        for n in [1, 1000, (1 << 20) - 1001, 5, (2 << 20) - 5] {
            p.fill(&mut pieces[off..off + n], off as u64);
            off += n;
        }
        assert_eq!(off, 3 << 20);
        assert!(whole == pieces);
        assert_eq!(&whole[..1 << 20], &whole[1 << 20..2 << 20]);
    }
}
