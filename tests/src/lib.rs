//! Host-side support for the end-to-end tests: where the guest binaries are, UDP peers for
//! `-netdev dgram`, and reading QEMU's pcap of the wire.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The workspace root (holds the workspace Cargo.toml).
pub fn workspace_root() -> PathBuf {
    if let Ok(r) = std::env::var("TENGE_ROOT") {
        return PathBuf::from(r);
    }
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// Absolute path of a release binary the guest runs, built by the test command
/// (`cargo build --release --bins`) before the in-guest tests start.
pub fn guest_bin(name: &str) -> PathBuf {
    let dir = std::env::var("TENGE_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target/release"));
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: build the guest binaries first with `cargo build --release --bins` \
         (./tenge.sh test does)",
        p.display()
    );
    p
}

/// Two free UDP ports on 127.0.0.1 (QEMU's end, the test's end).
pub fn free_udp_ports() -> (u16, u16) {
    let a = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let b = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

/// The host end of a `-netdev dgram` link: receives the guest NIC's frames as datagrams
/// (counted, in a thread) and sends frames to it.
pub struct DgramPeer {
    sock: UdpSocket,
    qemu_port: u16,
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DgramPeer {
    /// Binds `our_port`; QEMU listens on `qemu_port`.
    pub fn bind(our_port: u16, qemu_port: u16) -> std::io::Result<Self> {
        let sock = UdpSocket::bind(("127.0.0.1", our_port))?;
        let rx = sock.try_clone()?;
        rx.set_read_timeout(Some(Duration::from_millis(100)))?;
        let received = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (received.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while !s.load(Ordering::Relaxed) {
                if rx.recv(&mut buf).is_ok() {
                    r.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Ok(DgramPeer {
            sock,
            qemu_port,
            received,
            stop,
            thread: Some(thread),
        })
    }

    /// Sends one frame into the guest NIC.
    pub fn send(&self, frame: &[u8]) -> std::io::Result<()> {
        self.sock
            .send_to(frame, ("127.0.0.1", self.qemu_port))
            .map(|_| ())
    }

    /// Frames received from the guest so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

impl Drop for DgramPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Every frame in a pcap file, in order.
pub fn read_pcap(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut r =
        pcap_file::pcap::PcapReader::new(f).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.map_err(|e| format!("{}: {e}", path.display()))?;
        if p.data.len() as u32 != p.orig_len {
            return Err(format!(
                "truncated capture: {} of {} bytes",
                p.data.len(),
                p.orig_len
            ));
        }
        out.push(p.data.into_owned());
    }
    Ok(out)
}

/// Frame size for sequence number `seq`, cycling through [min, max] (the rule the in-guest
/// receiver checks against).
pub fn size_for(seq: u64, min: usize, max: usize) -> usize {
    if max <= min {
        min
    } else {
        min + (seq as usize % (max - min + 1))
    }
}

/// A fresh scratch directory under target/.
pub fn scratch_dir(name: &str) -> PathBuf {
    let d = workspace_root()
        .join("target/e2e")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create scratch dir");
    d
}
