//! A virtio-net device served by a host process: QEMU's `vhost-user` backend connected to a
//! DPDK vhost port (`net_vhost`) that a host `dpdk-testpmd` polls.
//!
//! With QEMU's own virtio-net model every frame costs QEMU's device emulation, which under
//! TCG sets the rate whichever driver runs. Here the rings are served by a host process
//! polling shared guest memory, so the guest driver is the bottleneck, and the device side
//! is an implementation nobody in this project wrote (see `shared/QEMU-RECIPE.md`).
//!
//! [`VhostHost::start`] reserves host hugepages, starts one interactive `dpdk-testpmd` with a
//! `net_vhost` vdev per port (and optionally a `net_pcap` vdev: testpmd's io mode then
//! forwards vhost port 0 to the pcap file and the pcap's frames to the guest), and waits for
//! the sockets; give each guest NIC [`VhostHost::backend`]. The guest must boot after this
//! and end before the host is dropped (which quits testpmd, flushing a pcap file). Commands
//! go to testpmd's prompt: [`VhostHost::start_forwarding`], [`VhostHost::stop_forwarding`]
//! (the forward statistics, with the share of empty polls), [`VhostHost::port_stats`].

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use crate::config::Backend;

/// 2 MiB hugepages the host testpmd needs (its mbuf pool and rings; 16,384 mbufs).
const HOST_HUGEPAGES: u64 = 512;
/// testpmd's interactive prompt, printed without a newline when it waits for a command.
const PROMPT: &str = "testpmd> ";
/// How long testpmd may take to start (EAL init, hugepages, vhost sockets).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

fn err(kind: io::ErrorKind, msg: impl Into<String>) -> io::Error {
    io::Error::new(kind, msg.into())
}

/// What the host testpmd does with the frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostMode {
    /// Receives from every port and drops (counts) the frames: a sink for guest TX.
    RxOnly,
    /// Sends `size`-byte UDP frames on every port as fast as it can: a source for guest RX.
    TxOnly {
        /// Frame length without the FCS (testpmd `--txpkts`).
        size: u16,
    },
    /// Forwards between port pairs (0<->1, 2<->3, ...). With [`VhostHostConfig::pcap`], the
    /// pcap port is the last one, paired with vhost port 0.
    Io,
    /// A source into vhost port 0 and a sink behind the last vhost port, for a guest that
    /// forwards from its first NIC to its next: a `net_null` port after the vhost ports
    /// makes `size`-byte frames (zeroed) as fast as they are taken, and testpmd forwards
    /// along a chain in io mode (`--port-topology=chained`): null -> vhost 0 -> vhost 1
    /// -> ... -> last vhost port -> null, which drops them. All on one forwarding lcore,
    /// so the host sends on port 0 what its ring takes (the rest counted as TX drops) and
    /// counts what comes back on the last port. The null port is the last port.
    Chain {
        /// Frame length without the FCS (`net_null`'s `size`).
        size: u16,
    },
}

/// The host side's set-up.
#[derive(Clone, Debug)]
pub struct VhostHostConfig {
    /// Queue pairs of each vhost port (one entry per guest NIC).
    pub ports: Vec<u16>,
    /// What testpmd does with the frames.
    pub mode: HostMode,
    /// A `net_pcap` port after the vhost ports: `(rx, tx)`, frames read from `rx` are sent
    /// to the guest in io mode, and frames from the guest are written to `tx`.
    pub pcap: Option<(PathBuf, PathBuf)>,
    /// A `net_af_packet` port after the vhost ports on this host interface (e.g. the outer
    /// end of [`crate::TapPeer::veth`]): in io mode testpmd forwards between it and vhost
    /// port 0, so the guest's NIC is on a wire with that interface's peer (a Linux stack in
    /// a namespace) at host speed. Not with `pcap`.
    pub af_packet: Option<String>,
    /// testpmd's forwarding retries a burst the guest's ring could not take (`set fwd MODE
    /// retry`, with a delay of 10 us and this many tries): a test that needs every frame the
    /// host sends to arrive sets it; a benchmark does not (drops are then counted).
    pub retry: Option<u32>,
    /// Extra EAL arguments (e.g. `--log-level=lib.vhost.*:debug`).
    pub extra_eal: Vec<String>,
    /// The vhost ports offer HOST_TSO4/6 (and CSUM): `net_vhost`'s `tso=1`, without which
    /// DPDK's vhost hides them.
    pub tso: bool,
}

impl HostMode {
    /// testpmd's name for the forwarding mode.
    fn name(&self) -> &'static str {
        match self {
            HostMode::RxOnly => "rxonly",
            HostMode::TxOnly { .. } => "txonly",
            HostMode::Io | HostMode::Chain { .. } => "io",
        }
    }
}

impl VhostHostConfig {
    /// One vhost port with one queue pair, in `mode`.
    pub fn new(mode: HostMode) -> Self {
        VhostHostConfig {
            ports: vec![1],
            mode,
            pcap: None,
            af_packet: None,
            retry: None,
            extra_eal: Vec::new(),
            tso: false,
        }
    }
}

/// Counters of one port, from `show port stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortCounters {
    pub rx_packets: u64,
    pub rx_missed: u64,
    pub rx_bytes: u64,
    pub rx_errors: u64,
    pub rx_nombuf: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_bytes: u64,
    /// Frames per second received since the previous `show port stats` (testpmd's own
    /// throughput figure).
    pub rx_pps: u64,
    /// Frames per second sent since the previous `show port stats`.
    pub tx_pps: u64,
}

/// One port's forward statistics, from `stop`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FwdCounters {
    pub rx_packets: u64,
    pub rx_dropped: u64,
    pub tx_packets: u64,
    pub tx_dropped: u64,
    /// Receive polls of the forwarding loop on this port.
    pub rx_bursts: u64,
    /// The share of those polls that returned no frame (0.0-1.0): the host's idle polls.
    pub rx_empty_share: f64,
}

/// The host `dpdk-testpmd` serving vhost-user ports. Quits testpmd when dropped.
#[derive(Debug)]
pub struct VhostHost {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    output: Receiver<String>,
    dir: PathBuf,
    sockets: Vec<PathBuf>,
    queues: Vec<u16>,
    /// Everything testpmd printed, for error messages.
    transcript: String,
}

impl VhostHost {
    /// Reserves host hugepages, starts testpmd and waits until its vhost sockets exist and
    /// it takes commands.
    pub fn start(config: &VhostHostConfig) -> io::Result<VhostHost> {
        if config.ports.is_empty() || config.ports.contains(&0) {
            return Err(err(
                io::ErrorKind::InvalidInput,
                "vhost host: give at least one port, each with at least one queue pair",
            ));
        }
        // testpmd sets up the same number of queues on every port.
        if config.ports.iter().any(|&q| q != config.ports[0]) {
            return Err(err(
                io::ErrorKind::InvalidInput,
                format!(
                    "vhost host: ports of {:?} queue pairs: testpmd gives every port the same number; use one VhostHost per queue count",
                    config.ports
                ),
            ));
        }
        let testpmd = crate::host::find_in_path("dpdk-testpmd").ok_or_else(|| {
            err(
                io::ErrorKind::NotFound,
                "dpdk-testpmd not found: run qemu/install-deps.sh (Debian's dpdk-dev)",
            )
        })?;
        remove_stale_hugepage_files();
        ensure_hugepages(HOST_HUGEPAGES)?;
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("tenge-vhost-{}-{n}", std::process::id());
        // Sockets under /tmp: QEMU and testpmd are both host processes, and unix socket
        // paths are limited to 108 bytes.
        let dir = PathBuf::from(format!("/tmp/{prefix}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let sockets: Vec<PathBuf> = (0..config.ports.len())
            .map(|i| dir.join(format!("vhost{i}.sock")))
            .collect();

        // testpmd prints with stdio, block-buffered into a pipe, while its prompt is written
        // straight to the descriptor: line-buffer stdout so a command's output comes before
        // the next prompt.
        let mut cmd = Command::new("stdbuf");
        cmd.arg("-oL").arg(&testpmd);
        // The forwarding lcore on CPU 1, the main lcore (which sleeps at the prompt) on 0.
        cmd.args(["-l", "0-1", "--main-lcore", "0", "-n", "1", "--no-pci"])
            .arg("--no-telemetry")
            .arg("--file-prefix")
            .arg(&prefix)
            .args(&config.extra_eal);
        for (i, (sock, q)) in sockets.iter().zip(&config.ports).enumerate() {
            // iommu-support: the guest's virtio-net sits behind the vIOMMU, so the device
            // translates IOVAs through QEMU's IOTLB messages.
            cmd.arg("--vdev").arg(format!(
                "net_vhost{i},iface={},queues={q},iommu-support=1{}",
                sock.display(),
                if config.tso { ",tso=1" } else { "" }
            ));
        }
        if let Some((rx, tx)) = &config.pcap {
            cmd.arg("--vdev").arg(format!(
                "net_pcap0,rx_pcap={},tx_pcap={}",
                rx.display(),
                tx.display()
            ));
        }
        match (&config.af_packet, &config.pcap) {
            (Some(_), Some(_)) => {
                return Err(err(
                    io::ErrorKind::InvalidInput,
                    "vhost host: an af_packet port and a pcap port both pair with vhost port 0: give one",
                ))
            }
            (Some(iface), None) => {
                // One queue pair, frames whole (the interface's checksum and segmentation
                // offloads are the caller's to turn off: af_packet has no vnet header).
                cmd.arg("--vdev")
                    .arg(format!("net_af_packet0,iface={iface},qpairs=1"));
            }
            _ => {}
        }
        if let HostMode::Chain { size } = config.mode {
            cmd.arg("--vdev")
                .arg(format!("net_null0,size={size},copy=1"));
        }
        let queues = config.ports[0];
        cmd.args(["--", "-i", "--total-num-mbufs=16384"])
            .arg(format!("--rxq={queues}"))
            .arg(format!("--txq={queues}"));
        cmd.arg(format!("--forward-mode={}", config.mode.name()));
        match config.mode {
            HostMode::TxOnly { size } => {
                cmd.arg(format!("--txpkts={size}"));
            }
            HostMode::Chain { .. } => {
                cmd.arg("--port-topology=chained");
            }
            _ => {}
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = crate::run::spawn_guarded(cmd)
            .map_err(|e| err(e.kind(), format!("cannot start {}: {e}", testpmd.display())))?;
        let stdin = child.stdin.take();
        let (tx, output) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            let tx = tx.clone();
            thread::spawn(move || read_chunks(stdout, tx));
        }
        if let Some(stderr) = child.stderr.take() {
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if tx.send(format!("{line}\n")).is_err() {
                        break;
                    }
                }
            });
        }
        let mut host = VhostHost {
            child: Some(child),
            stdin,
            output,
            dir,
            sockets,
            queues: config.ports.clone(),
            transcript: String::new(),
        };
        host.read_until_prompt(START_TIMEOUT)?;
        if let Some(missing) = host.sockets.iter().find(|s| !s.exists()) {
            return Err(err(
                io::ErrorKind::NotFound,
                format!(
                    "testpmd did not create {}: {}",
                    missing.display(),
                    host.tail()
                ),
            ));
        }
        if let Some(tries) = config.retry {
            host.command(&format!("set fwd {} retry", config.mode.name()))?;
            host.command(&format!("set burst tx delay 10 retry {tries}"))?;
        }
        host.command("set record-burst-stats on")?;
        Ok(host)
    }

    /// The backend for the guest NIC served by vhost port `port`.
    pub fn backend(&self, port: usize) -> Backend {
        Backend::VhostUser {
            socket: self.sockets[port].clone(),
            queues: self.queues[port],
        }
    }

    /// Runs one testpmd command and returns what it printed before the next prompt.
    pub fn command(&mut self, line: &str) -> io::Result<String> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| err(io::ErrorKind::BrokenPipe, "testpmd's input is closed"))?;
        writeln!(stdin, "{line}")
            .and_then(|_| stdin.flush())
            .map_err(|e| err(e.kind(), format!("testpmd `{line}`: {e}: {}", self.tail())))?;
        self.read_until_prompt(COMMAND_TIMEOUT)
    }

    /// Starts forwarding (`start`).
    pub fn start_forwarding(&mut self) -> io::Result<()> {
        self.command("start").map(drop)
    }

    /// Stops forwarding (`stop`) and returns each port's forward statistics since `start`.
    pub fn stop_forwarding(&mut self) -> io::Result<Vec<FwdCounters>> {
        let text = self.command("stop")?;
        Ok(parse_fwd_stats(&text))
    }

    /// Every port's counters (`show port stats all`), since start or the last
    /// [`VhostHost::clear_port_stats`].
    pub fn port_stats(&mut self) -> io::Result<Vec<PortCounters>> {
        let text = self.command("show port stats all")?;
        Ok(parse_port_stats(&text))
    }

    /// Zeroes every port's counters.
    pub fn clear_port_stats(&mut self) -> io::Result<()> {
        self.command("clear port stats all").map(drop)
    }

    /// Quits testpmd (closing its ports, which flushes a pcap file) and waits for it.
    pub fn quit(&mut self) -> io::Result<()> {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(stdin, "quit");
        }
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait()? {
                while let Ok(chunk) = self.output.try_recv() {
                    self.transcript.push_str(&chunk);
                }
                return if status.success() {
                    Ok(())
                } else {
                    Err(err(
                        io::ErrorKind::Other,
                        format!("testpmd exited {status}: {}", self.tail()),
                    ))
                };
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(err(
                    io::ErrorKind::TimedOut,
                    "testpmd did not quit within 20 s; killed",
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops (SIGSTOP) or continues (SIGCONT) the host testpmd: a backend that stops
    /// answering QEMU's vhost-user requests, to test how the test bed reports the hang.
    pub fn set_frozen(&self, frozen: bool) -> io::Result<()> {
        let child = self
            .child
            .as_ref()
            .ok_or_else(|| err(io::ErrorKind::NotFound, "testpmd has exited"))?;
        let signal = if frozen {
            rustix::process::Signal::STOP
        } else {
            rustix::process::Signal::CONT
        };
        rustix::process::kill_process(rustix::process::Pid::from_child(child), signal)
            .map_err(io::Error::from)
    }

    /// Where each of testpmd's threads waits ([`crate::thread_report`]), and the tail of
    /// what it printed: for the message of a test whose guest hung.
    pub fn diagnosis(&self) -> String {
        let threads = match &self.child {
            Some(c) => crate::thread_report(c.id()),
            None => "(testpmd has exited)".into(),
        };
        format!(
            "host testpmd's threads:\n{threads}\nits last lines:\n{}",
            self.tail()
        )
    }

    /// The directory holding the vhost sockets.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Everything testpmd printed so far.
    pub fn transcript(&self) -> &str {
        &self.transcript
    }

    fn tail(&self) -> String {
        let lines: Vec<&str> = self.transcript.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    fn read_until_prompt(&mut self, within: Duration) -> io::Result<String> {
        let deadline = Instant::now() + within;
        let mut text = String::new();
        loop {
            if text.ends_with(PROMPT) {
                text.truncate(text.len() - PROMPT.len());
                return Ok(text);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(chunk) => {
                    self.transcript.push_str(&chunk);
                    text.push_str(&chunk);
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(err(
                        io::ErrorKind::TimedOut,
                        format!("testpmd gave no prompt within {within:?}: {}", self.tail()),
                    ))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(err(
                        io::ErrorKind::UnexpectedEof,
                        format!("testpmd exited: {}", self.tail()),
                    ))
                }
            }
        }
    }
}

impl Drop for VhostHost {
    fn drop(&mut self) {
        if let Err(e) = self.quit() {
            eprintln!("tenge-testbed: vhost host: {e}");
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Forwards stdout as it arrives (the prompt ends without a newline).
fn read_chunks(mut from: impl Read, to: mpsc::Sender<String>) {
    let mut buf = [0u8; 4096];
    let mut pending = Vec::new();
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
        // Send whole UTF-8 only; testpmd prints ASCII, so this splits nothing in practice.
        let valid = match std::str::from_utf8(&pending) {
            Ok(s) => s.len(),
            Err(e) => e.valid_up_to(),
        };
        let text = String::from_utf8_lossy(&pending[..valid]).into_owned();
        pending.drain(..valid);
        if to.send(text).is_err() {
            break;
        }
    }
}

/// Deletes the hugepage files and runtime directories of host testpmds started by a process
/// that is gone (DPDK removes its own only on a clean exit; a killed run would otherwise
/// keep its hugepages reserved for good).
fn remove_stale_hugepage_files() {
    for dir in ["/dev/hugepages", "/var/run/dpdk"] {
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix("tenge-vhost-"))
                .and_then(|rest| rest.split('-').next())
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if !Path::new("/proc").join(pid.to_string()).exists() {
                let path = entry.path();
                let _ = if path.is_dir() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
            }
        }
    }
}

/// Makes sure `pages` 2 MiB hugepages are free on the host and hugetlbfs is mounted at
/// `/dev/hugepages`.
fn ensure_hugepages(pages: u64) -> io::Result<()> {
    let meminfo = fs::read_to_string("/proc/meminfo")?;
    let value = |key: &str| -> u64 {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let (total, free) = (value("HugePages_Total:"), value("HugePages_Free:"));
    if free < pages {
        let want = total + pages - free;
        fs::write("/proc/sys/vm/nr_hugepages", want.to_string()).map_err(|e| {
            err(
                e.kind(),
                format!("cannot reserve {want} host hugepages (/proc/sys/vm/nr_hugepages, needs root): {e}"),
            )
        })?;
        let got = fs::read_to_string("/proc/sys/vm/nr_hugepages")?;
        if got.trim().parse::<u64>().unwrap_or(0) < want {
            return Err(err(
                io::ErrorKind::OutOfMemory,
                format!(
                    "asked the host for {want} hugepages, got {}: free some memory",
                    got.trim()
                ),
            ));
        }
    }
    let mounts = fs::read_to_string("/proc/mounts")?;
    if !mounts
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs"))
    {
        fs::create_dir_all("/dev/hugepages")?;
        let status = Command::new("mount")
            .args(["-t", "hugetlbfs", "none", "/dev/hugepages"])
            .status()?;
        if !status.success() {
            return Err(err(
                io::ErrorKind::Other,
                "cannot mount hugetlbfs at /dev/hugepages (needs root)",
            ));
        }
    }
    Ok(())
}

/// The number after `key` on a line.
fn number_after(line: &str, key: &str) -> Option<u64> {
    let i = line.find(key)?;
    line[i + key.len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Parses `show port stats all`.
pub(crate) fn parse_port_stats(text: &str) -> Vec<PortCounters> {
    let mut ports = Vec::new();
    let mut cur: Option<PortCounters> = None;
    for line in text.lines() {
        if line.contains("NIC statistics for port") {
            ports.extend(cur.take());
            cur = Some(PortCounters::default());
        }
        let Some(c) = cur.as_mut() else { continue };
        let set = |v: &mut u64, key: &str| {
            if let Some(n) = number_after(line, key) {
                *v = n;
            }
        };
        set(&mut c.rx_packets, "RX-packets:");
        set(&mut c.rx_missed, "RX-missed:");
        set(&mut c.rx_bytes, "RX-bytes:");
        set(&mut c.rx_errors, "RX-errors:");
        set(&mut c.rx_nombuf, "RX-nombuf:");
        set(&mut c.tx_packets, "TX-packets:");
        set(&mut c.tx_errors, "TX-errors:");
        set(&mut c.tx_bytes, "TX-bytes:");
        set(&mut c.rx_pps, "Rx-pps:");
        set(&mut c.tx_pps, "Tx-pps:");
    }
    ports.extend(cur);
    ports
}

/// Parses the per-port blocks of `stop`'s forward statistics (the accumulated block is not
/// a port and is skipped).
pub(crate) fn parse_fwd_stats(text: &str) -> Vec<FwdCounters> {
    let mut ports = Vec::new();
    let mut cur: Option<FwdCounters> = None;
    for line in text.lines() {
        if line.contains("Forward statistics for port") {
            ports.extend(cur.take());
            cur = Some(FwdCounters::default());
            continue;
        }
        if line.contains("Accumulated forward statistics") {
            ports.extend(cur.take());
            continue;
        }
        let Some(c) = cur.as_mut() else { continue };
        if let Some(n) = number_after(line, "RX-packets:") {
            c.rx_packets = n;
            c.rx_dropped = number_after(line, "RX-dropped:").unwrap_or(0);
        }
        if let Some(n) = number_after(line, "TX-packets:") {
            c.tx_packets = n;
            c.tx_dropped = number_after(line, "TX-dropped:").unwrap_or(0);
        }
        // `RX-bursts : 1008 [100% of 0 pkts]` or `[75% of 0 pkts + 25% of 32 pkts]`.
        if let Some(n) = number_after(line, "RX-bursts :") {
            c.rx_bursts = n;
            c.rx_empty_share = line
                .split(['[', '+'])
                .find_map(|part| {
                    let part = part.trim();
                    let (pct, what) = part.split_once("% of ")?;
                    (what.trim_end_matches(']').trim() == "0 pkts")
                        .then(|| pct.parse::<f64>().ok())
                        .flatten()
                })
                .map_or(0.0, |p| p / 100.0);
        }
    }
    ports.extend(cur);
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_testpmd_port_stats() {
        let text = "
  ######################## NIC statistics for port 0  ########################
  RX-packets: 12         RX-missed: 0          RX-bytes:  720
  RX-errors: 0
  RX-nombuf:  0
  TX-packets: 34         TX-errors: 2          TX-bytes:  2040

  Throughput (since last show)
  Rx-pps:            7          Rx-bps:            0
  Tx-pps:           99          Tx-bps:            0
  ############################################################################
  ######################## NIC statistics for port 1  ########################
  RX-packets: 5          RX-missed: 1          RX-bytes:  300
  TX-packets: 0          TX-errors: 0          TX-bytes:  0
";
        let p = parse_port_stats(text);
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[0],
            PortCounters {
                rx_packets: 12,
                rx_bytes: 720,
                tx_packets: 34,
                tx_errors: 2,
                tx_bytes: 2040,
                rx_pps: 7,
                tx_pps: 99,
                ..Default::default()
            }
        );
        assert_eq!((p[1].rx_packets, p[1].rx_missed), (5, 1));
    }

    #[test]
    fn parses_testpmd_forward_stats_with_bursts() {
        let text = "
  ---------------------- Forward statistics for port 0  ----------------------
  RX-packets: 100            RX-dropped: 0             RX-total: 100
  TX-packets: 0              TX-dropped: 0             TX-total: 0
  RX-bursts : 1008 [75% of 0 pkts + 25% of 32 pkts]
  ----------------------------------------------------------------------------

  ---------------------- Forward statistics for port 1  ----------------------
  RX-packets: 0              RX-dropped: 0             RX-total: 0
  TX-packets: 90             TX-dropped: 10            TX-total: 100
  RX-bursts : 5 [100% of 0 pkts]
  ----------------------------------------------------------------------------

  +++++++++++++++ Accumulated forward statistics for all ports+++++++++++++++
  RX-packets: 100            RX-dropped: 0             RX-total: 100
  TX-packets: 90             TX-dropped: 10            TX-total: 100
";
        let f = parse_fwd_stats(text);
        assert_eq!(f.len(), 2);
        assert_eq!((f[0].rx_packets, f[0].rx_bursts), (100, 1008));
        assert!((f[0].rx_empty_share - 0.75).abs() < 1e-9);
        assert_eq!((f[1].tx_packets, f[1].tx_dropped), (90, 10));
        assert!((f[1].rx_empty_share - 1.0).abs() < 1e-9);
    }
}
