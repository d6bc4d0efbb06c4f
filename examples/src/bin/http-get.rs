//! http-get: fetches one URL over HTTP/1.1 with smoltcp on a tenge port, writes the body to
//! a file and prints its size, SHA-256 and rate (live while it downloads).

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use sha2::{Digest, Sha256};
use smoltcp::socket::tcp;
use smoltcp::wire::IpAddress;
use tenge_examples::net::StackArgs;
use tenge_examples::{memory_summary, parse_secs};

/// Download http://HOST:PORT/PATH through a NIC driven by tenge and smoltcp.
///
/// The NIC must be bound to vfio-pci. Example, in the test guest (Python's http.server
/// in the namespace at 10.99.0.1):
///   http-get 0000:00:03.0 --ip 10.99.0.2/24 http://10.99.0.1:8000/blob -o /tmp/blob
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
struct Args {
    #[command(flatten)]
    net: StackArgs,
    /// http://ADDRESS:PORT/PATH (the port 80 if left out), the server by its IPv4 address.
    url: String,
    /// Where the body goes (default: nowhere, only hashed).
    #[arg(short, long)]
    output: Option<std::path::PathBuf>,
    /// Give up after this many seconds.
    #[arg(long, default_value = "600", value_parser = parse_secs)]
    timeout: Duration,
}

fn main() -> ExitCode {
    tenge_examples::run_main("http-get", Args::parse(), run)
}

/// (address, port, path) of an `http://` URL.
fn parse_url(url: &str) -> Result<(Ipv4Addr, u16, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("'{url}' is not an http:// URL"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match hostport.split_once(':') {
        Some((h, p)) => (h, p.parse().map_err(|_| format!("bad port in '{url}'"))?),
        None => (hostport, 80),
    };
    let addr = host
        .parse()
        .map_err(|_| format!("'{host}': give the server as an IPv4 address (no DNS here)"))?;
    Ok((addr, port, path.to_owned()))
}

/// The response head parsed: status code and Content-Length (if any).
fn parse_head(head: &[u8]) -> Result<(u16, Option<u64>), String> {
    let text = std::str::from_utf8(head).map_err(|_| "a response head that is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line in '{}'", text.lines().next().unwrap_or("")))?;
    let len = lines.find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())
            .flatten()
    });
    Ok((status, len))
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let (server, port, path) = parse_url(&args.url)?;
    let mut st = args.net.open()?;
    let sock = args.net.socket();
    let h = st.sockets.add(sock);
    let local_port = 49152 + (std::process::id() % 16384) as u16;
    st.sockets
        .get_mut::<tcp::Socket>(h)
        .connect(
            st.iface.context(),
            (IpAddress::Ipv4(server), port),
            local_port,
        )
        .map_err(|e| format!("connect to {server}:{port}: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {server}:{port}\r\nUser-Agent: tenge-http-get\r\nConnection: close\r\n\r\n"
    );
    let mut out = match &args.output {
        Some(p) => Some(std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()))?,
        )),
        None => None,
    };
    let (mut sent_request, mut head, mut head_done) = (false, Vec::new(), false);
    let (mut status, mut length) = (0u16, None);
    let mut hash = Sha256::new();
    let (mut body, mut last, mut last_body) = (0u64, Duration::ZERO, 0u64);
    let mut started: Option<Duration> = None;
    let mut moved = false;
    loop {
        if st.elapsed() > args.timeout {
            return Err(format!("timed out after {body} body bytes").into());
        }
        st.poll(moved);
        moved = false;
        let t = st.elapsed();
        let s = st.sockets.get_mut::<tcp::Socket>(h);
        if !sent_request && s.can_send() {
            s.send_slice(request.as_bytes())
                .map_err(|e| format!("send the request: {e}"))?;
            sent_request = true;
            started = Some(t);
        }
        while s.can_recv() {
            let r = s.recv(|data| {
                let n = data.len();
                (n, data.to_vec())
            });
            let Ok(data) = r else { break };
            if data.is_empty() {
                break;
            }
            moved = true;
            let mut data = &data[..];
            if !head_done {
                head.extend_from_slice(data);
                let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                (status, length) = parse_head(&head[..end])?;
                if status != 200 {
                    return Err(format!("the server answered {status}").into());
                }
                head_done = true;
                let rest = head.split_off(end + 4);
                head.clear();
                body += rest.len() as u64;
                hash.update(&rest);
                if let Some(o) = out.as_mut() {
                    o.write_all(&rest)?;
                }
                data = &[];
            }
            body += data.len() as u64;
            hash.update(data);
            if let Some(o) = out.as_mut() {
                o.write_all(data)?;
            }
        }
        let done_by_length = length.is_some_and(|l| body >= l);
        if done_by_length || (sent_request && !s.is_active() && !s.can_recv()) {
            s.close();
            break;
        }
        if !args.net.interval.is_zero() && t - last >= args.net.interval {
            println!(
                "[{:6.1}s] rx {:8.3} Mbit/s  {body} bytes",
                t.as_secs_f64(),
                (body - last_body) as f64 * 8.0 / (t - last).as_secs_f64() / 1e6
            );
            (last, last_body) = (t, body);
        }
    }
    // Our FIN out before we go.
    for _ in 0..100 {
        st.poll(false);
    }
    if let Some(mut o) = out {
        o.flush()?;
    }
    if let Some(l) = length {
        if body != l {
            return Err(format!("the connection ended after {body} of {l} body bytes").into());
        }
    }
    let secs = (st.elapsed() - started.unwrap_or_default()).as_secs_f64();
    let digest: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    println!(
        "http-get: done: status={status} bytes={body} sha256={digest} seconds={secs:.3} mbps={:.3} {} {}",
        body as f64 * 8.0 / secs / 1e6,
        st.counters(),
        memory_summary()
    );
    Ok(())
}
