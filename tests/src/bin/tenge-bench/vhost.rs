//! Benchmarks on a virtio-net device served at host speed: QEMU's vhost-user backend and a
//! DPDK vhost port polled by a host testpmd (see docs/vhost-user.md). The guest driver is
//! the bottleneck here, not QEMU's device model, and the host's counters judge every side.
//!
//! Each round runs tenge, then DPDK's virtio PMD (testpmd in the guest, `--iova-mode=pa`
//! with one NIC, `va` with two), one after the other in one boot against the same host
//! process. (A third phase once ran the PMD with `--force-max-simd-bitwidth=64` as its
//! "scalar paths"; the virtio PMD takes its vector paths only with the `vectorized=1`
//! device argument, so both phases ran the same code, and it was dropped:
//! docs/benchmarks/README.md.) The host's forwarding runs only while a side runs (`BENCH-HOST-START NAME` ..
//! `BENCH-HOST-STOP` on the console); meanwhile the harness reads the host's throughput
//! every second (`show port stats`), and a side's rate is the steady part of those samples
//! ([`super::steady`]): what the host received (TX cases) or managed to put in the guest's
//! ring (RX cases). The host's share of empty polls (TX) and its drops on a full guest ring
//! (RX) show it was not the limit.

use std::collections::BTreeMap;
use std::io;
use std::time::{Duration, Instant};

use tenge_testbed::{
    FwdCounters, Guest, GuestConfig, HostMode, Nic, NicModel, PortCounters, VhostHost,
    VhostHostConfig,
};

use super::{field, guest_bin, phase, stats, steady, testpmd_port_total, testpmd_total, TESTPMD};

/// DPDK's virtio PMD in the guest. PA mode maps through the same vIOMMU, and the device
/// translates its addresses through the same IOTLB as tenge's; its default IOVA-as-VA mode
/// ran as well here, within 1 % of PA (the stall after 32 frames reported once was not
/// reproduced: docs/vhost-user.md), so PA it is, the mode known to work.
const PMD_EAL: &str = "--iova-mode=pa -l 0-1 --main-lcore 0";
/// The PMD with two NICs (`vhost-l2fwd64`) runs in its default IOVA-as-VA mode. In PA mode
/// its rings sit at guest-physical addresses below the vIOMMU's interrupt window
/// (0xfee00000), where the whole-domain invalidation QEMU sends when the second NIC's VFIO
/// group joins the first's domain reaches the first NIC's rings, and the host's vhost
/// library then stops serving them for good (docs/vhost-user.md). tenge's IOVAs (from
/// 4 GiB) and the PMD's VA-mode ones lie above the window, where that invalidation misses.
const PMD_EAL_TWO_NICS: &str = "--iova-mode=va -l 0-1 --main-lcore 0";

/// What the host measured while one side ran.
#[derive(Debug, Default)]
pub(crate) struct HostPhase {
    /// `show port stats` of every port, about once a second.
    samples: Vec<Vec<PortCounters>>,
    /// Forward statistics at `stop`.
    pub(crate) fwd: Vec<FwdCounters>,
    /// Per-stream (queue) forward statistics at `stop`: testpmd prints them when it runs
    /// more streams than ports, i.e. with several queues (streams that moved nothing are
    /// not printed).
    pub(crate) streams: Vec<FwdStream>,
}

/// One forwarding stream's counts at `stop`: testpmd's `Forward Stats for RX Port= P/Queue=
/// Q -> TX Port= P2/Queue= Q2` block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FwdStream {
    pub rx_port: u32,
    pub rx_queue: u32,
    pub tx_port: u32,
    pub tx_queue: u32,
    pub rx_packets: u64,
    pub tx_packets: u64,
    /// Frames the TX queue did not take: a full guest ring, or (txonly, io) a queue the
    /// guest never enabled, whose every burst fails.
    pub tx_dropped: u64,
}

/// Parses the per-stream blocks of testpmd's `stop` output.
pub(crate) fn parse_streams(text: &str) -> Vec<FwdStream> {
    let num = |s: &str, key: &str| -> Option<u64> {
        let i = s.find(key)?;
        s[i + key.len()..]
            .trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let mut out = Vec::new();
    let mut cur: Option<FwdStream> = None;
    for line in text.lines() {
        if line.contains("Forward Stats for RX Port=") {
            let (rx, tx) = line.split_once("->").unwrap_or((line, ""));
            cur = Some(FwdStream {
                rx_port: num(rx, "Port=").unwrap_or(0) as u32,
                rx_queue: num(rx, "Queue=").unwrap_or(0) as u32,
                tx_port: num(tx, "Port=").unwrap_or(0) as u32,
                tx_queue: num(tx, "Queue=").unwrap_or(0) as u32,
                ..Default::default()
            });
            continue;
        }
        if let Some(mut st) = cur {
            if let Some(rx) = num(line, "RX-packets:") {
                st.rx_packets = rx;
                st.tx_packets = num(line, "TX-packets:").unwrap_or(0);
                st.tx_dropped = num(line, "TX-dropped:").unwrap_or(0);
                out.push(st);
                cur = None;
            }
        }
    }
    out
}

/// One vhost benchmark case.
pub struct Case {
    pub name: &'static str,
    pub packed: bool,
    pub size: u16,
    /// The guest sends (host rxonly) or receives (host txonly).
    pub tx: bool,
}

pub const CASES: &[Case] = &[
    Case {
        name: "vhost-tx64",
        packed: false,
        size: 64,
        tx: true,
    },
    Case {
        name: "vhost-rx64",
        packed: false,
        size: 64,
        tx: false,
    },
    Case {
        name: "vhost-packed-tx64",
        packed: true,
        size: 64,
        tx: true,
    },
    Case {
        name: "vhost-packed-rx64",
        packed: true,
        size: 64,
        tx: false,
    },
    Case {
        name: "vhost-tx1514",
        packed: false,
        size: 1514,
        tx: true,
    },
    Case {
        name: "vhost-rx1514",
        packed: false,
        size: 1514,
        tx: false,
    },
    Case {
        name: "vhost-packed-tx1514",
        packed: true,
        size: 1514,
        tx: true,
    },
    Case {
        name: "vhost-packed-rx1514",
        packed: true,
        size: 1514,
        tx: false,
    },
];

/// The sides of a round, in the order they run.
const SIDES: [&str; 2] = ["tenge", "peer"];

/// Guest script lines for one TX side: the host receives while `cmd` sends.
fn tx_side(name: &str, cmd: &str) -> String {
    format!("echo BENCH-PHASE {name}\necho BENCH-HOST-START {name}\n{cmd}\necho BENCH-HOST-STOP\n")
}

/// Guest script lines for one RX side: `start` launches the sink in the background and
/// waits until it is ready; the host then sends for `d` seconds; `finish` stops the sink
/// and prints its totals.
pub(crate) fn rx_side(name: &str, start: &str, d: u32, finish: &str) -> String {
    format!(
        "echo BENCH-PHASE {name}\n{start}\necho BENCH-HOST-START {name}\nsleep {d}\necho BENCH-HOST-STOP\n{finish}\n"
    )
}

fn script(case: &Case, d: u32, rounds: u32) -> String {
    let a0 = Nic::pci_addr(0);
    let size = case.size;
    let pktgen = guest_bin("pktgen").display().to_string();
    let e2e = guest_bin("tenge-e2e").display().to_string();
    let show = "tr -d '\\033' | grep -E 'pps|packets|Accumulated'";
    let mut s = String::new();
    for r in 0..rounds {
        for side in SIDES {
            let name = format!("{side}{r}");
            s += &if case.tx {
                let cmd = if side == "tenge" {
                    format!("taskset -c 1 {pktgen} {a0} --duration {d} --size {size} --interval 1")
                } else {
                    // EAL start-up takes a few seconds under TCG: the steady rate ignores it.
                    format!(
                        "timeout -s INT {t} {TESTPMD} {PMD_EAL} -a {a0} -- --total-num-mbufs=8192 --forward-mode=txonly --stats-period 1 --txpkts={size} 2>&1 | {show}",
                        t = d + 6
                    )
                };
                tx_side(&name, &cmd)
            } else if side == "tenge" {
                rx_side(
                    &name,
                    &format!(
                        "taskset -c 1 {e2e} rx-sink {a0} --duration {sd} --idle-stop 2 > /tmp/sink.log 2>&1 &\n\
                         sink=$!\n\
                         for i in $(seq 200); do grep -q READY /tmp/sink.log && break; sleep 0.1; done",
                        sd = d + 60
                    ),
                    d,
                    "wait $sink\ncat /tmp/sink.log",
                )
            } else {
                rx_side(
                    &name,
                    &format!(
                        "{TESTPMD} {PMD_EAL} -a {a0} -- --total-num-mbufs=8192 --forward-mode=rxonly --stats-period 1 > /tmp/psink.log 2>&1 &\n\
                         psink=$!\n\
                         for i in $(seq 300); do grep -q 'Port statistics' /tmp/psink.log && break; sleep 0.1; done"
                    ),
                    d,
                    &format!("sleep 1; kill -INT $psink; wait $psink\n{show} < /tmp/psink.log"),
                )
            };
        }
    }
    s + "echo BENCH-PHASE end\n"
}

/// Boots the guest with `nics` and runs `script`, driving `host` at the console's
/// `BENCH-HOST-START NAME` / `BENCH-HOST-STOP` lines and sampling its counters every second
/// in between. Returns the console lines and what the host measured per phase.
pub(crate) fn run_with_host(
    nics: Vec<Nic>,
    script: &str,
    timeout: Duration,
    host: &mut VhostHost,
) -> Result<(Vec<String>, BTreeMap<String, HostPhase>), String> {
    let cfg = GuestConfig {
        timeout,
        extra_qemu_args: env_args("TENGE_BENCH_QEMU_ARGS"),
        ..GuestConfig::with_nics(nics)
    };
    let mut guest = Guest::boot(&cfg, script).map_err(|e| e.to_string())?;
    let host_err = |e: io::Error| format!("host testpmd: {e}");
    let mut lines = Vec::new();
    let mut phases = BTreeMap::new();
    let mut open: Option<(String, HostPhase)> = None;
    let mut next_sample = Instant::now();
    loop {
        let wait = if open.is_some() {
            next_sample.saturating_duration_since(Instant::now())
        } else {
            timeout
        };
        match guest.next_line_within(wait) {
            Ok(Some(line)) => {
                let l = line.trim();
                if let Some(name) = l.strip_prefix("BENCH-HOST-START ") {
                    host.clear_port_stats().map_err(host_err)?;
                    host.start_forwarding().map_err(host_err)?;
                    open = Some((name.to_string(), HostPhase::default()));
                    next_sample = Instant::now() + Duration::from_secs(1);
                } else if l == "BENCH-HOST-STOP" {
                    if let Some((name, mut p)) = open.take() {
                        // `stop`'s per-stream blocks, from what it printed.
                        let at = host.transcript().len();
                        p.fwd = host.stop_forwarding().map_err(host_err)?;
                        p.streams = parse_streams(host.transcript().get(at..).unwrap_or(""));
                        phases.insert(name, p);
                    }
                }
                lines.push(line);
            }
            Ok(None) => break,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                if let Some((_, p)) = open.as_mut() {
                    p.samples.push(host.port_stats().map_err(host_err)?);
                }
                next_sample += Duration::from_secs(1);
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    let out = guest.wait().map_err(|e| e.to_string())?;
    if let Some(path) = std::env::var_os("TENGE_BENCH_VHOST_TRANSCRIPT") {
        if let Err(e) = std::fs::write(&path, host.transcript()) {
            eprintln!("tenge-bench: cannot write the host transcript: {e}");
        }
    }
    if !out.success() {
        return Err(out.describe());
    }
    Ok((lines, phases))
}

/// Debugging aids, from the environment, split at whitespace: `TENGE_BENCH_QEMU_ARGS`
/// (e.g. `-trace vtd_inv_desc_iotlb_domain`; the events land in the run's serial.log) and
/// `TENGE_BENCH_VHOST_EAL` (the host testpmd's, e.g. `--log-level=lib.vhost.*:debug`);
/// `TENGE_BENCH_VHOST_TRANSCRIPT=PATH` writes everything the host testpmd printed to PATH.
fn env_args(name: &str) -> Vec<String> {
    std::env::var(name)
        .map(|v| v.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

/// The host-side rate of `port` in a phase, in Mpps: received (the guest sent) or sent
/// (the guest received).
pub(crate) fn host_rate(p: &HostPhase, port: usize, guest_tx: bool) -> Option<f64> {
    let samples: Vec<f64> = p
        .samples
        .iter()
        .filter_map(|ports| ports.get(port))
        .map(|c| (if guest_tx { c.rx_pps } else { c.tx_pps }) as f64 / 1e6)
        .collect();
    steady(&samples)
}

/// Runs one case: `rounds` rounds of tenge and the PMD, `d` seconds each.
pub fn run(case: &Case, d: u32, rounds: u32) -> Result<(), String> {
    let mode = if case.tx {
        HostMode::RxOnly
    } else {
        HostMode::TxOnly { size: case.size }
    };
    let mut cfg = VhostHostConfig::new(mode);
    cfg.extra_eal = env_args("TENGE_BENCH_VHOST_EAL");
    let mut host = VhostHost::start(&cfg).map_err(|e| format!("host: {e}"))?;
    let nic = Nic::new(
        NicModel::VirtioNet {
            packed: case.packed,
            event_idx: true,
            mrg_rxbuf: true,
        },
        host.backend(0),
    );
    let timeout = Duration::from_secs(120 + u64::from(rounds) * 3 * (u64::from(d) + 25));
    let (lines, phases) = run_with_host(vec![nic], &script(case, d, rounds), timeout, &mut host)?;
    let mut rates: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut left_out = Vec::new();
    for r in 0..rounds {
        let mut detail = format!("BENCH-DETAIL case={} round={r}", case.name);
        for side in SIDES {
            let name = format!("{side}{r}");
            let Some(p) = phases.get(&name) else {
                left_out.push(format!("round={r} side={side} why=no-host-phase"));
                continue;
            };
            let g = phase(&lines, &name);
            let fwd = p.fwd.first().copied().unwrap_or_default();
            // What the guest side says it moved, from its own summary.
            let guest_count = match (case.tx, side) {
                (true, "tenge") => field(&g, "sent"),
                (true, _) => testpmd_total(&g, "TX-packets:"),
                (false, "tenge") => field(&g, "received"),
                (false, _) => testpmd_total(&g, "RX-packets:"),
            }
            .unwrap_or(0.0);
            let rate = host_rate(p, 0, case.tx);
            detail += &if case.tx {
                format!(
                    " {side}_mpps={} {side}_guest_sent={guest_count} {side}_host_received={} {side}_host_idle_polls={:.3}",
                    rate.map_or("none".into(), |v| format!("{v:.4}")),
                    fwd.rx_packets,
                    fwd.rx_empty_share
                )
            } else {
                format!(
                    " {side}_mpps={} {side}_guest_received={guest_count} {side}_host_sent={} {side}_host_ring_full_drops={}",
                    rate.map_or("none".into(), |v| format!("{v:.4}")),
                    fwd.tx_packets,
                    fwd.tx_dropped
                )
            };
            match rate {
                Some(v) => rates.entry(side).or_default().push(v),
                None => left_out.push(format!("round={r} side={side} why=no-steady-rate")),
            }
        }
        println!("{detail}");
    }
    let get = |side: &str| rates.get(side).cloned().unwrap_or_default();
    let (tenge, peer) = (get("tenge"), get("peer"));
    println!(
        "BENCH-ROUNDS case={} tenge={tenge:.3?} peer={peer:.3?}",
        case.name
    );
    let gbps = |v: &[f64]| {
        stats::Spread::of(v).map_or("none".into(), |s| {
            format!("{:.3}", s.median * f64::from(case.size) * 8.0 / 1000.0)
        })
    };
    let extra = format!(
        " size={} tenge_gbps={} peer_gbps={}",
        case.size,
        gbps(&tenge),
        gbps(&peer)
    );
    stats::report(case.name, &tenge, &peer, &left_out, &extra)
}

/// The forwarding case's name.
pub const L2FWD_CASE: &str = "vhost-l2fwd64";

/// Guest script lines for one forwarding side: `start` launches the forwarder in the
/// background and waits until it is ready; the host's chain runs for `d` seconds; `finish`
/// stops the forwarder and prints its totals.
fn l2fwd_script(d: u32, rounds: u32) -> String {
    let (a0, a1) = (Nic::pci_addr(0), Nic::pci_addr(1));
    let l2fwd = guest_bin("l2fwd").display().to_string();
    let mut s = String::new();
    for r in 0..rounds {
        for side in SIDES {
            let name = format!("{side}{r}");
            s += &if side == "tenge" {
                // One thread for both directions on vCPU 1, as testpmd's one forwarding
                // lcore.
                rx_side(
                    &name,
                    &format!(
                        "taskset -c 1 {l2fwd} {a0} {a1} --single-thread --interval 0 > /tmp/fwd.log 2>&1 &\n\
                         fwd=$!\n\
                         for i in $(seq 200); do grep -q READY /tmp/fwd.log && break; sleep 0.1; done"
                    ),
                    d,
                    "kill -INT $fwd; wait $fwd\ngrep l2fwd: /tmp/fwd.log",
                )
            } else {
                rx_side(
                    &name,
                    &format!(
                        "{TESTPMD} {PMD_EAL_TWO_NICS} -a {a0} -a {a1} -- --total-num-mbufs=8192 --forward-mode=io --stats-period 1 > /tmp/pfwd.log 2>&1 &\n\
                         pfwd=$!\n\
                         for i in $(seq 300); do grep -q 'Port statistics' /tmp/pfwd.log && break; sleep 0.1; done"
                    ),
                    d,
                    "sleep 1; kill -INT $pfwd; wait $pfwd\n\
                     tr -d '\\033' < /tmp/pfwd.log | sed -n '/Forward statistics for port/,$p' | grep -E 'statistics|packets'",
                )
            };
        }
    }
    s + "echo BENCH-PHASE end\n"
}

/// tenge's `l2fwd` against testpmd's io forwarding between two
/// virtio-net NICs served by one host testpmd that sends into the first and counts what
/// comes back on the second ([`HostMode::Chain`]); the rate is what the host received.
pub fn run_l2fwd(d: u32, rounds: u32) -> Result<(), String> {
    let case = L2FWD_CASE;
    let mut cfg = VhostHostConfig::new(HostMode::Chain { size: 64 });
    cfg.ports = vec![1, 1];
    // A burst the guest's full ring did not take is tried once more after 10 us, then
    // dropped. The pause was added when the PMD's stall was blamed on the host's lcore
    // retrying the full ring in a tight loop; that was not the cause (the PMD's IOVA mode
    // was, see PMD_EAL_TWO_NICS), and without it both sides forwarded in a check run. It
    // stays so that figures stay comparable with the earlier runs.
    cfg.retry = Some(1);
    cfg.extra_eal = env_args("TENGE_BENCH_VHOST_EAL");
    let mut host = VhostHost::start(&cfg).map_err(|e| format!("host: {e}"))?;
    let nics = (0..2)
        .map(|i| Nic::new(NicModel::virtio(), host.backend(i)))
        .collect();
    let timeout = Duration::from_secs(120 + u64::from(rounds) * 3 * (u64::from(d) + 25));
    let (lines, phases) = run_with_host(nics, &l2fwd_script(d, rounds), timeout, &mut host)?;
    let mut rates: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut left_out = Vec::new();
    for r in 0..rounds {
        let mut detail = format!("BENCH-DETAIL case={case} round={r}");
        for side in SIDES {
            let name = format!("{side}{r}");
            let Some(p) = phases.get(&name) else {
                left_out.push(format!("round={r} side={side} why=no-host-phase"));
                continue;
            };
            let g = phase(&lines, &name);
            // What the forwarder says it received on port 0 and sent on port 1.
            let (guest_rx, guest_tx) = if side == "tenge" {
                let port = |n: u32, key: &str| {
                    let prefix = format!("l2fwd: port {n}:");
                    let l: Vec<&str> = g
                        .iter()
                        .copied()
                        .filter(|l| l.starts_with(&prefix))
                        .collect();
                    field(&l, key)
                };
                (port(0, "rx"), port(1, "tx"))
            } else {
                (
                    testpmd_port_total(&g, 0, "RX-packets:"),
                    testpmd_port_total(&g, 1, "TX-packets:"),
                )
            };
            let fwd = |i: usize| p.fwd.get(i).copied().unwrap_or_default();
            let rate = host_rate(p, 1, true);
            detail += &format!(
                " {side}_mpps={} {side}_host_sent={} {side}_host_ring_full_drops={} {side}_guest_received={} {side}_guest_sent={} {side}_host_received={}",
                rate.map_or("none".into(), |v| format!("{v:.4}")),
                fwd(0).tx_packets,
                fwd(0).tx_dropped,
                guest_rx.unwrap_or(0.0),
                guest_tx.unwrap_or(0.0),
                fwd(1).rx_packets,
            );
            match rate {
                Some(v) => rates.entry(side).or_default().push(v),
                None => left_out.push(format!("round={r} side={side} why=no-steady-rate")),
            }
        }
        println!("{detail}");
    }
    let get = |side: &str| rates.get(side).cloned().unwrap_or_default();
    let (tenge, peer) = (get("tenge"), get("peer"));
    println!("BENCH-ROUNDS case={case} tenge={tenge:.3?} peer={peer:.3?}");
    stats::report(case, &tenge, &peer, &left_out, " size=64")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_per_stream_forward_stats() {
        let text = "Telling cores to stop...
  ------- Forward Stats for RX Port= 0/Queue= 0 -> TX Port= 0/Queue= 0 -------
  RX-packets: 0              TX-packets: 2208           TX-dropped: 5
  ------- Forward Stats for RX Port= 2/Queue= 1 -> TX Port= 0/Queue= 1 -------
  RX-packets: 7              TX-packets: 0              TX-dropped: 3616
  ---------------------- Forward statistics for port 0  ----------------------
  RX-packets: 0              RX-dropped: 0             RX-total: 0
  TX-packets: 2208           TX-dropped: 3621          TX-total: 5829
";
        let s = parse_streams(text);
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[0],
            FwdStream {
                tx_packets: 2208,
                tx_dropped: 5,
                ..Default::default()
            }
        );
        assert_eq!(
            (s[1].rx_port, s[1].rx_queue, s[1].tx_port, s[1].tx_queue),
            (2, 1, 0, 1)
        );
        assert_eq!((s[1].rx_packets, s[1].tx_dropped), (7, 3616));
    }
}
