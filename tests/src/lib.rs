//! Host-side support for the end-to-end tests: where the guest binaries are, UDP peers for
//! `-netdev dgram`, and reading QEMU's pcap of the wire.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub mod offload;
pub mod rss;
pub mod seq;
pub mod tcp;
pub mod toeplitz;
pub use seq::{parse_summary, Arrival, SeqTally};

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

/// Writes `frames` to a pcap file (Ethernet link type), e.g. for a host-side sender.
pub fn write_pcap(path: &Path, frames: &[Vec<u8>]) -> Result<(), String> {
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    let f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let header = PcapHeader {
        datalink: pcap_file::DataLink::ETHERNET,
        ..PcapHeader::default()
    };
    let mut w =
        PcapWriter::with_header(f, header).map_err(|e| format!("{}: {e}", path.display()))?;
    for (i, frame) in frames.iter().enumerate() {
        let ts = Duration::from_micros(i as u64);
        w.write_packet(&PcapPacket::new(ts, frame.len() as u32, frame))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
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

/// A guest binary's absolute path as a string, for scripts.
pub fn bin(name: &str) -> String {
    guest_bin(name).display().to_string()
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A NIC bound to vfio-pci.
pub fn nic(model: tenge_testbed::NicModel, backend: tenge_testbed::Backend) -> tenge_testbed::Nic {
    tenge_testbed::Nic::new(model, backend)
}

/// A NIC of `model` wired to a host UDP peer (`-netdev dgram`), and that peer.
pub fn dgram_nic(model: tenge_testbed::NicModel) -> (tenge_testbed::Nic, DgramPeer) {
    let (qemu_port, our_port) = free_udp_ports();
    let peer = DgramPeer::bind(our_port, qemu_port).expect("bind the host end of -netdev dgram");
    let n = nic(
        model,
        tenge_testbed::Backend::Dgram {
            local_port: qemu_port,
            remote_port: our_port,
        },
    );
    (n, peer)
}

/// What QEMU 10.0 prints when its TCG aborts on a stale memory map: a vCPU's TLB entry
/// for an MMIO page points into a dispatch map that another thread's memory-map change has
/// just replaced (QEMU issue 3040; upstream later removed `iotlb_to_section` altogether).
/// Here the map changes whenever a vhost-user device starts or stops (QEMU adds and removes
/// the notify area's ioeventfds) and whenever a function's BARs are toggled by its reset
/// on a port's open, so a test that opens a device while another vCPU runs a driver can
/// lose its guest to it. docs/vhost-user.md has the sightings.
pub const QEMU_TCG_MAP_RACE: &str = "iotlb_to_section: Assertion";

/// Runs `test`, and once more if it failed on QEMU's own fault, not the guest's: QEMU
/// aborted on [`QEMU_TCG_MAP_RACE`], a timed-out run found a QEMU thread blocked on a
/// vhost-user reply ([`tenge_testbed::QEMU_WEDGED`], from the test bed's thread report), or
/// the guest kernel said its timers stopped firing ([`tenge_testbed::GUEST_TIMER_LOST`]) or a
/// CPU locked up in it ([`tenge_testbed::GUEST_LOCKUP`]).
/// Any other panic, and a second such failure, fail the test. `test` must set everything
/// up itself (host processes, captures), so the second run starts from nothing left by the
/// first.
pub fn retry_on_qemu_failure<T>(test: impl Fn() -> T + std::panic::RefUnwindSafe) -> T {
    match std::panic::catch_unwind(&test) {
        Ok(v) => v,
        Err(e) => {
            let msg = e
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| e.downcast_ref::<&str>().copied())
                .unwrap_or("");
            let Some(why) = [
                QEMU_TCG_MAP_RACE,
                tenge_testbed::QEMU_WEDGED,
                tenge_testbed::GUEST_TIMER_LOST,
                tenge_testbed::GUEST_LOCKUP,
            ]
            .into_iter()
            .find(|m| msg.contains(m)) else {
                std::panic::resume_unwind(e);
            };
            eprintln!("tenge: QEMU failed, not the test ({why}); running it once more");
            test()
        }
    }
}

/// Waits for the guest to end; returns its serial log, asserting the script exited 0.
pub fn wait_ok(guest: tenge_testbed::RunningGuest) -> String {
    let out = guest.wait().expect("wait for guest");
    let log = std::fs::read_to_string(&out.log).unwrap_or_default();
    if let Some(line) = log.lines().find(|l| l.contains(QEMU_TCG_MAP_RACE)) {
        panic!(
            "QEMU died, not the guest script: {line}\nserial log: {}\n{}",
            out.log.display(),
            tail(&log, 30)
        );
    }
    assert!(
        !out.timed_out && out.exit_code == Some(0),
        "guest script failed: {}\n{}",
        out.describe(),
        tail(&log, 60)
    );
    log
}

/// Boots, runs `script`, returns the serial log; panics with the log's tail on failure.
/// A guest that QEMU itself killed with [`QEMU_TCG_MAP_RACE`], or froze with
/// [`tenge_testbed::QEMU_WEDGED`], is booted once more: any
/// open of a device in the guest changes QEMU's memory map (the function's reset toggles
/// its BARs), so the race can hit any test whose guest opens a port while another vCPU
/// touches MMIO (seen on the igb and e1000e hub test). What a test checks after `run_ok`
/// comes from this boot alone (its captures are rewritten by the new QEMU); a test with a
/// host process of its own wraps itself in [`retry_on_qemu_failure`] instead.
pub fn run_ok(cfg: &tenge_testbed::GuestConfig, script: &str) -> String {
    retry_on_qemu_failure(|| wait_ok(tenge_testbed::Guest::boot(cfg, script).expect("boot guest")))
}

/// `frame` with an 802.1Q tag of `tci` after its addresses: what a NIC that inserts the
/// tag puts on the wire.
pub fn vlan_tagged(frame: &[u8], tci: u16) -> Vec<u8> {
    let mut t = frame[..12].to_vec();
    t.extend_from_slice(&0x8100u16.to_be_bytes());
    t.extend_from_slice(&tci.to_be_bytes());
    t.extend_from_slice(&frame[12..]);
    t
}

/// Source MAC the wire tests give pktgen.
pub const TEST_SRC: &str = "02:00:00:00:00:01";
/// Destination MAC the wire tests give pktgen.
pub const TEST_DST: &str = "02:00:00:00:00:02";

/// The flow pktgen sends with `--src-mac TEST_SRC --dst-mac TEST_DST`.
pub fn test_flow() -> tenge_examples::frame::Flow {
    tenge_examples::frame::Flow {
        src_mac: [2, 0, 0, 0, 0, 1],
        dst_mac: [2, 0, 0, 0, 0, 2],
        ..Default::default()
    }
}

/// The pcap holds exactly `count` frames, each byte for byte what pktgen was asked to send
/// (frame `i` has sequence number `i`), and an independent parser sees Ethernet / IPv4
/// with a valid header checksum / UDP to the discard port in each.
pub fn check_wire(pcap: &Path, count: u64, size: usize) {
    check_frames(&read_pcap(pcap).expect("read pcap"), count, size);
}

/// [`check_wire`] on frames already read: exactly `count`, frame `i` byte for byte pktgen's
/// frame with sequence number `i`, each parsed as Ethernet / IPv4 / UDP by etherparse.
pub fn check_frames(frames: &[Vec<u8>], count: u64, size: usize) {
    use tenge_examples::frame;
    assert_eq!(frames.len() as u64, count, "frames on the wire");
    for (i, f) in frames.iter().enumerate() {
        let p = etherparse::SlicedPacket::from_ethernet(f).expect("frame parses");
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
            panic!("frame {i} is not IPv4")
        };
        let h = ip.header().to_header();
        assert_eq!(
            h.header_checksum,
            h.calc_header_checksum(),
            "frame {i} IPv4 checksum"
        );
        assert!(
            matches!(p.transport, Some(etherparse::TransportSlice::Udp(u)) if u.destination_port() == frame::UDP_PORT),
            "frame {i} is not UDP to the discard port"
        );
        let want = frame::build(&test_flow(), size, i as u64);
        assert_eq!(
            f.as_slice(),
            want.as_slice(),
            "frame {i} on the wire differs from what pktgen was asked to send"
        );
    }
}

/// Sends `count` frames into the guest NIC once the guest prints READY, paced at `pps`.
pub fn inject_after_ready(
    guest: &mut tenge_testbed::RunningGuest,
    peer: &DgramPeer,
    count: u64,
    min: usize,
    max: usize,
    pps: u64,
) {
    let line = guest
        .wait_for_line(|l| {
            l.contains("READY") || l.contains("TENGE-GUEST-EXIT") || l.contains("E2E-FAIL")
        })
        .expect("guest output");
    assert!(line.contains("READY"), "guest never said READY: {line}");
    let start = std::time::Instant::now();
    for seq in 0..count {
        while start.elapsed().as_secs_f64() * (pps as f64) < seq as f64 {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        peer.send(&tenge_examples::frame::build(
            &tenge_examples::frame::Flow::default(),
            size_for(seq, min, max),
            seq,
        ))
        .unwrap();
    }
}

/// The TX chain runs: (segments, frame size) of each pktgen run, 1 to 8 segments over sizes
/// from 60 to 1514.
pub const CHAIN_RUNS: [(u16, usize); 8] = [
    (1, 60),
    (2, 60),
    (3, 128),
    (4, 512),
    (5, 1000),
    (6, 1514),
    (7, 1514),
    (8, 1514),
];

/// Frames per chain run.
pub const CHAIN_FRAMES: u64 = 200;

/// A guest script that sends [`CHAIN_RUNS`] from the NIC at `pci` with pktgen
/// (`--segments`), run `r` numbering its frames from `r * 1000`.
pub fn chain_script(pci: &str) -> String {
    let pktgen = bin("pktgen");
    let mut script = String::from("set -e\n");
    for (r, (segments, size)) in CHAIN_RUNS.iter().enumerate() {
        script += &format!(
            "{pktgen} {pci} --count {CHAIN_FRAMES} --size {size} --segments {segments} --first-seq {} --src-mac {TEST_SRC} --dst-mac {TEST_DST} --interval 0\n",
            r * 1000
        );
    }
    script
}

/// The wire after [`chain_script`]: each chain left as one frame, byte for byte the frame
/// pktgen split over its segments, in order, and nothing else.
pub fn check_chain_wire(frames: &[Vec<u8>]) {
    let want: Vec<Vec<u8>> = CHAIN_RUNS
        .iter()
        .enumerate()
        .flat_map(|(r, &(_, size))| {
            (0..CHAIN_FRAMES)
                .map(move |i| tenge_examples::frame::build(&test_flow(), size, r as u64 * 1000 + i))
        })
        .collect();
    assert_eq!(frames.len(), want.len(), "frames on the wire");
    for (i, (got, want)) in frames.iter().zip(&want).enumerate() {
        assert!(
            got == want,
            "frame {i} (run {}, {} segments): {} bytes on the wire, {} sent",
            i as u64 / CHAIN_FRAMES,
            CHAIN_RUNS[(i as u64 / CHAIN_FRAMES) as usize].0,
            got.len(),
            want.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn a_qemu_abort_wedge_or_lost_timer_runs_the_test_once_more_and_nothing_else_does() {
        let runs = AtomicU32::new(0);
        retry_on_qemu_failure(|| {
            if runs.fetch_add(1, Ordering::Relaxed) == 0 {
                panic!("QEMU died, not the guest script: qemu: x: {QEMU_TCG_MAP_RACE} `y' failed.");
            }
        });
        assert_eq!(runs.load(Ordering::Relaxed), 2);

        let runs = AtomicU32::new(0);
        let r = std::panic::catch_unwind(|| {
            retry_on_qemu_failure(|| {
                runs.fetch_add(1, Ordering::Relaxed);
                panic!("guest script failed (exit Some(1))");
            })
        });
        assert!(r.is_err());
        assert_eq!(
            runs.load(Ordering::Relaxed),
            1,
            "other failures are not retried"
        );

        let runs = AtomicU32::new(0);
        let r = std::panic::catch_unwind(|| {
            retry_on_qemu_failure(|| {
                runs.fetch_add(1, Ordering::Relaxed);
                panic!("{QEMU_TCG_MAP_RACE}");
            })
        });
        assert!(r.is_err(), "a second abort fails the test");
        assert_eq!(runs.load(Ordering::Relaxed), 2);

        // Each failure that is QEMU's, as the messages that carry it read: run once more.
        for (message, what) in [
            (
                format!(
                    "timed out: {} (a vhost-user reply that never came)",
                    tenge_testbed::QEMU_WEDGED
                ),
                "a wedged QEMU",
            ),
            (
                format!(
                    "guest output: Custom {{ kind: TimedOut, error: \"no awaited line: {} (`[ 27.8] rcu: ...`); serial log: x\" }}",
                    tenge_testbed::GUEST_TIMER_LOST
                ),
                "a guest whose timers stopped",
            ),
            (
                format!(
                    "guest script failed: ended: {} (`[ 56.2] watchdog: BUG: soft lockup ...`)",
                    tenge_testbed::GUEST_LOCKUP
                ),
                "a guest whose kernel locked up",
            ),
        ] {
            let runs = AtomicU32::new(0);
            retry_on_qemu_failure(|| {
                if runs.fetch_add(1, Ordering::Relaxed) == 0 {
                    panic!("{message}");
                }
            });
            assert_eq!(runs.load(Ordering::Relaxed), 2, "{what} runs it again");
        }
    }
}
