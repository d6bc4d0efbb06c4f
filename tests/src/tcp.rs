//! The Linux ends of the TCP tests and benchmarks: Python programs run in the tap's
//! namespace (the host kernel's stack) or in the guest (the guest kernel's stack and
//! driver), each printing lines the tests and `tenge-bench` parse.

/// A server in the namespace: `python3 -c SERVER MODE PORT BYTES CONNS HASH`.
/// `sink` reads each connection to its end; `source` sends BYTES (0: until the peer
/// closes or resets) of a fixed random block, repeated, and closes. It serves CONNS
/// connections (0: for ever, a thread each) and prints `BULK-<MODE> bytes=N sha256=H`
/// for each (`sha256=none` unless HASH is 1), then `BULK-SERVER-DONE`. `BULK-LISTENING`
/// once the socket listens.
pub const SERVER: &str = r#"
import hashlib, os, socket, sys, threading
mode, port, n, conns, want_hash = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
block = os.urandom(1 << 20)
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("0.0.0.0", port))
ls.listen(16)
print("BULK-LISTENING", flush=True)
def serve(c):
    h = hashlib.sha256() if want_hash else None
    count = 0
    try:
        if mode == "sink":
            while True:
                b = c.recv(1 << 20)
                if not b:
                    break
                count += len(b)
                if h: h.update(b)
        else:
            while n == 0 or count < n:
                b = block if n == 0 else block[:min(len(block), n - count)]
                c.sendall(b)
                count += len(b)
                if h: h.update(b)
            c.shutdown(socket.SHUT_WR)
            while c.recv(65536):
                pass
    except OSError:
        pass
    c.close()
    print("BULK-%s bytes=%d sha256=%s" % (mode.upper(), count, h.hexdigest() if h else "none"), flush=True)
served = 0
ts = []
while conns == 0 or served < conns:
    c, _ = ls.accept()
    served += 1
    t = threading.Thread(target=serve, args=(c,), daemon=True)
    t.start()
    ts.append(t)
for t in ts:
    t.join()
print("BULK-SERVER-DONE", flush=True)
"#;

/// A client on the guest kernel's stack: `python3 CLIENT MODE HOST PORT SECONDS`.
/// `send` sends a fixed block for SECONDS and closes; `recv` reads for SECONDS and
/// closes. Prints `[   1.0s] tx|rx  <Mbit/s> Mbit/s  <bytes> bytes` every second, as
/// `tcp-bulk` does, then `kernel-bulk: done: bytes=N seconds=S`.
pub const CLIENT: &str = r#"
import os, socket, sys, time
mode, host, port, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
s = socket.create_connection((host, port), timeout=30)
block = os.urandom(1 << 20)
buf = bytearray(1 << 20)
start = last = time.monotonic()
count = last_count = 0
while True:
    now = time.monotonic()
    if now - start >= secs:
        break
    if now - last >= 1.0:
        print("[%6.1fs] %s %8.3f Mbit/s  %d bytes" % (now - start, "tx" if mode == "send" else "rx",
              (count - last_count) * 8 / (now - last) / 1e6, count), flush=True)
        last, last_count = now, count
    if mode == "send":
        count += s.send(block)
    else:
        k = s.recv_into(buf)
        if k == 0:
            break
        count += k
print("kernel-bulk: done: bytes=%d seconds=%.3f" % (count, time.monotonic() - start), flush=True)
s.close()
"#;

/// An echo client in the namespace for a bulk connection: `python3 -c ECHO_CLIENT HOST
/// PORT SECONDS`: sends a fixed block for SECONDS while reading the echo back, then
/// prints `ECHO-BULK sent=N got=M`. A reset by the server at its end is no error.
pub const ECHO_CLIENT: &str = r#"
import os, socket, sys, threading, time
host, port, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.create_connection((host, port), timeout=30)
block = os.urandom(1 << 16)
got = [0]
def rd():
    try:
        while True:
            b = s.recv(1 << 20)
            if not b:
                break
            got[0] += len(b)
    except OSError:
        pass
t = threading.Thread(target=rd, daemon=True)
t.start()
sent = 0
end = time.monotonic() + secs
try:
    while time.monotonic() < end:
        sent += s.send(block)
    s.shutdown(socket.SHUT_WR)
except OSError:
    pass
t.join(5)
print("ECHO-BULK sent=%d got=%d" % (sent, got[0]), flush=True)
"#;

/// A running [`SERVER`] in a namespace and its output after `BULK-LISTENING`.
pub struct Server {
    /// The process (`ip netns exec ... python3`).
    pub child: std::process::Child,
    /// Its stdout, from the line after `BULK-LISTENING`.
    pub out: std::io::BufReader<std::process::ChildStdout>,
}

/// Starts [`SERVER`] in `peer`'s namespace: `mode` (`sink` or `source`) on `port`,
/// `bytes` per connection (source; 0: endless), `conns` connections (0: for ever),
/// hashing or not; returns once it listens.
pub fn start_server(
    peer: &tenge_testbed::TapPeer,
    mode: &str,
    port: u16,
    bytes: u64,
    conns: u32,
    hash: bool,
) -> Result<Server, String> {
    use std::io::BufRead;
    let mut child = peer
        .command("python3")
        .args(["-c", SERVER, mode, &port.to_string(), &bytes.to_string()])
        .args([conns.to_string(), u8::from(hash).to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("python3 in the namespace: {e}"))?;
    let mut out = std::io::BufReader::new(child.stdout.take().ok_or("the server's stdout")?);
    let mut line = String::new();
    let _ = out.read_line(&mut line);
    if !line.contains("BULK-LISTENING") {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!(
            "the {mode} server on port {port} did not start: '{line}'"
        ));
    }
    Ok(Server { child, out })
}

/// A client in the namespace that sends: `python3 -c SEND_CLIENT HOST PORT BYTES`
/// connects, sends BYTES random bytes, closes, and prints `BULK-SENT bytes=N sha256=H`.
pub const SEND_CLIENT: &str = r#"
import hashlib, os, socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection((host, port), timeout=60)
h, sent = hashlib.sha256(), 0
while sent < n:
    b = os.urandom(min(1 << 20, n - sent))
    s.sendall(b)
    h.update(b)
    sent += len(b)
s.shutdown(socket.SHUT_WR)
while s.recv(65536):
    pass
s.close()
print("BULK-SENT bytes=%d sha256=%s" % (sent, h.hexdigest()), flush=True)
"#;

/// `key=value` from the first line of `text` that has it.
pub fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let k = format!("{key}=");
    text.lines().find_map(|l| {
        l.split_whitespace()
            .find_map(|w| w.strip_prefix(k.as_str()))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn fields_come_from_the_first_line_that_has_them() {
        let t = "x\nBULK-SINK bytes=10 sha256=ab\nBULK-SINK bytes=11 sha256=cd\n";
        assert_eq!(super::field(t, "bytes"), Some("10"));
        assert_eq!(super::field(t, "sha256"), Some("ab"));
        assert_eq!(super::field(t, "nope"), None);
    }
}
