//! tenge-bench: in-guest benchmarks, tenge and DPDK testpmd side by side in one guest boot,
//! on the same NIC, the same frame size and duration, alternating over several rounds.
//! Prints per case `BENCH case=<name> tenge_mpps=<median> tenge_range=<min>..<max>
//! peer=dpdk-testpmd peer_mpps=.. peer_range=.. ratio=<median/median>
//! ratio_range=<lo>..<hi> verdict=tenge-faster|peer-faster|within-noise rounds=N left_out=K`
//! (see `stats.rs`), with `BENCH-ROUNDS` (every round's figure) and `BENCH-DETAIL` lines.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tenge_testbed::{Backend, Guest, GuestConfig, Nic, NicModel};
use tenge_tests::{dgram_nic, guest_bin, DgramPeer};

mod irq;
mod mq;
mod offload;
mod stats;
mod tcp;
mod vhost;

/// Run tenge against DPDK testpmd on QEMU's emulated NICs inside one guest boot per case,
/// and print one BENCH line per case.
///
/// Cases:
///   e1000e-tx64  tenge pktgen vs testpmd txonly, 64-byte frames, e1000e on a lone hub
///   e1000e-rx64  a second e1000e on the hub sends (testpmd txonly, the same source for
///                both); the measured port is drained by tenge, then by testpmd rxonly
///   igb-tx64, igb-rx64
///                the same on the 82576 (QEMU igb) against DPDK's igb PMD
///                (net_e1000_igb); rx64's source is an e1000e (testpmd txonly), since two
///                igb functions at adjacent slots cannot coexist in QEMU
///   virtio-tx64  tenge pktgen vs testpmd txonly (DPDK's virtio PMD), 64-byte frames,
///                modern virtio-net (split rings) wired to a host UDP port (-netdev dgram,
///                drained by this program); tenge also runs once on a second virtio-net
///                without EVENT_IDX (BENCH-DETAIL: what EVENT_IDX buys); the host end
///                counts the datagrams it took per phase (a lower bound: the host's UDP
///                socket drops when its reader falls behind)
///   virtio-rx64  as e1000e-rx64 with a virtio-net sink (e1000e testpmd txonly as the
///                source); tenge also drains, once, a virtio-net without EVENT_IDX fed by a
///                second e1000e on its own hub
///   virtio-packed-tx64, virtio-packed-rx64
///                the same with packed rings (packed=on; both drivers take RING_PACKED)
///   vhost-tx64, vhost-rx64, vhost-packed-tx64, vhost-packed-rx64, vhost-tx1514,
///   vhost-rx1514, vhost-packed-tx1514, vhost-packed-rx1514
///                virtio-net served by a host DPDK vhost port (vhost-user): tenge vs DPDK's
///                virtio PMD (--iova-mode=pa); the
///                host testpmd (rxonly for tx cases, txonly for rx cases) counts what each
///                side moved, and its per-second throughput is the rate reported
///   vhost-l2fwd64
///                tenge l2fwd (--single-thread, on vCPU 1) vs testpmd io forwarding (its
///                forwarding lcore on vCPU 1) between two
///                virtio-net NICs served by one host testpmd, which sends 64-byte frames into
///                the first (a net_null source, io forwarding along a chain) and counts what
///                comes back on the second: the rate is what the host received
///   e1000e-l2fwd64
///                the same between two e1000e: testpmd txonly on a third e1000e (vCPU 0) is
///                the source on hub 0 with port A, port B alone on hub 1; the rate is port
///                B's transmitted frames by the device's counter (GPTC) every second
///   vhost-mq-rx64
///                tenge with two queue pairs against tenge with one (peer=tenge-1q): a
///                virtio-net with two queue pairs served by a host DPDK vhost port, the host
///                txonly (64-byte frames) on both queues; the guest drains it with
///                `rxdump --queues 2` (a thread per queue), then `rxdump --queues 1`; the
///                rate is what the host put into the guest's rings
///   vhost-mq-l2fwd64
///                the same for forwarding: two such NICs, the host's chain as in
///                vhost-l2fwd64 on both queues, `l2fwd A B --queues 2` against
///                `--queues 1` (a thread per direction and queue pair on both sides); the
///                rate is what the host received on the second NIC
///   e1000e-tso, sw-gso, virtio-tso
///                tenge against itself (peer=mss-frames): one TCP flow as 62,000-byte TSO
///                packets against the same stream as 1448-byte frames the application
///                builds, on e1000e (TSE), on virtio-net without HOST_TSO (the software
///                GSO) and on a vhost-user virtio-net with HOST_TSO (`tso=1`); payload
///                Gbit/s accepted by the port
///   lro          TCP frames of one flow forwarded by a host vhost port to a second
///                virtio-net, received with tenge's software LRO on against off
///                (peer=lro-off); TCP payload Gbit/s delivered, frames per wire frame in
///                the BENCH-DETAIL line
///   irq          what sleeping costs and saves: an e1000e receiver busy-polling, sleeping
///                with a fixed 128 us interval, and sleeping with adaptive moderation, fed
///                1,000 frames/s and a flood by an e1000e on its hub; BENCH compares the
///                flood's rate adaptive vs busy poll (peer=tenge-busy-poll), BENCH-DETAIL
///                gives CPU use, send-to-receive latency (median, p99) and interrupts/s
///   tcp          bulk TCP payload Gbit/s, smoltcp over tenge (tcp-bulk) against the guest
///                kernel's stack and virtio_net driver, each on its own virtio-net on a tap
///                of one namespace (the same Linux peer), both directions (BENCH lines
///                tcp-send and tcp-recv, peer=linux-kernel)
///   flood        tcp-echo's goodput (Mbit/s) on one bulk connection while the namespace
///                floods the port with 64-byte UDP and SYN junk: dropped in the ingress
///                filter against dropped by the application after the burst
///                (peer=app-drop)
/// The virtio cases' BENCH-DETAIL lines also give notifications (doorbell writes the
/// device received) per 1000 frames with and without EVENT_IDX. Every case alternates the
/// sides over --rounds rounds in one boot and reports each side's median and spread; a
/// ratio whose spread crosses 1.0 is "within-noise".
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
struct Args {
    /// Seconds each side runs.
    #[arg(long, default_value_t = 10)]
    duration: u32,
    /// Comma-separated cases to run.
    #[arg(
        long,
        default_value = "e1000e-tx64,e1000e-rx64,igb-tx64,igb-rx64,virtio-tx64,virtio-rx64,virtio-packed-tx64,virtio-packed-rx64,vhost-tx64,vhost-rx64,vhost-packed-tx64,vhost-packed-rx64,vhost-tx1514,vhost-rx1514,vhost-packed-tx1514,vhost-packed-rx1514,e1000e-l2fwd64,vhost-l2fwd64,vhost-mq-rx64,vhost-mq-l2fwd64,e1000e-tso,sw-gso,virtio-tso,lro,irq,tcp,flood,flood-vhost"
    )]
    cases: String,
    /// Rounds per case, alternating tenge and the peer in one boot; the median and spread
    /// are reported (TCG timing is noisy: one round can be off by a third).
    #[arg(long, default_value_t = 5)]
    rounds: u32,
}

pub(crate) const TESTPMD: &str = "dpdk-testpmd -n 1 --no-telemetry";

fn main() -> ExitCode {
    let args = Args::parse();
    let mut failed = Vec::new();
    for case in args.cases.split(',') {
        let run = || match case {
            "e1000e-tx64" => tx64(NicModel::E1000e, args.duration, args.rounds),
            "e1000e-rx64" => rx64(NicModel::E1000e, args.duration, args.rounds),
            "igb-tx64" => tx64(NicModel::Igb, args.duration, args.rounds),
            "igb-rx64" => rx64(NicModel::Igb, args.duration, args.rounds),
            "virtio-tx64" => virtio_tx64("virtio-tx64", false, args.duration, args.rounds),
            "virtio-rx64" => virtio_rx64("virtio-rx64", false, args.duration, args.rounds),
            "virtio-packed-tx64" => {
                virtio_tx64("virtio-packed-tx64", true, args.duration, args.rounds)
            }
            "virtio-packed-rx64" => {
                virtio_rx64("virtio-packed-rx64", true, args.duration, args.rounds)
            }
            "e1000e-l2fwd64" => e1000e_l2fwd64(args.duration, args.rounds),
            "e1000e-tso" => offload::e1000e_tso(args.duration, args.rounds),
            "sw-gso" => offload::sw_gso(args.duration, args.rounds),
            "virtio-tso" => offload::virtio_tso(args.duration, args.rounds),
            "lro" => offload::lro(args.duration, args.rounds),
            vhost::L2FWD_CASE => vhost::run_l2fwd(args.duration, args.rounds),
            mq::RX_CASE => mq::run_rx(args.duration, args.rounds),
            mq::L2FWD_CASE => mq::run_l2fwd(args.duration, args.rounds),
            irq::CASE => irq::run_case(args.duration, args.rounds),
            tcp::TCP_CASE => tcp::run_tcp(args.duration, args.rounds),
            tcp::FLOOD_CASE => tcp::run_flood(args.duration, args.rounds, false),
            tcp::FLOOD_VHOST_CASE => tcp::run_flood(args.duration, args.rounds, true),
            other => match vhost::CASES.iter().find(|c| c.name == other) {
                Some(c) => vhost::run(c, args.duration, args.rounds),
                None => Err(format!("unknown case {other}")),
            },
        };
        // A case whose guest or host failed runs once more (a boot under TCG on a loaded
        // machine can miss a deadline); both failures are reported, and a second one fails
        // the run.
        if let Err(first) = run() {
            eprintln!("tenge-bench: {case}: {first}");
            if first.starts_with("unknown case") {
                failed.push(format!("{case}: {first}"));
                continue;
            }
            println!("BENCH-RETRY case={case} why={:?}", first_line(&first));
            if let Err(second) = run() {
                eprintln!("tenge-bench: {case} (second try): {second}");
                failed.push(format!(
                    "{case}: {} / second try: {}",
                    first_line(&first),
                    first_line(&second)
                ));
            }
        }
    }
    // Last, so the end of a long log says what failed.
    for f in &failed {
        eprintln!("tenge-bench: FAILED {f}");
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The first line of an error, for one-line summaries.
fn first_line(e: &str) -> &str {
    e.lines().next().unwrap_or("")
}

fn e1000e(backend: Backend) -> Nic {
    Nic::new(NicModel::E1000e, backend)
}

/// virtio-net (split or packed rings, mergeable RX buffers) with or without EVENT_IDX.
fn virtio(packed: bool, event_idx: bool) -> NicModel {
    NicModel::VirtioNet {
        packed,
        event_idx,
        mrg_rxbuf: true,
    }
}

/// Runs the script, returns the console lines (also streamed to stdout).
pub(crate) fn run(
    nics: Vec<Nic>,
    script: &str,
    duration: u32,
    rounds: u32,
) -> Result<Vec<String>, String> {
    run_with(nics, script, duration, rounds, |_| {})
}

/// As [`run`], calling `on_line` with each console line as it arrives.
pub(crate) fn run_with(
    nics: Vec<Nic>,
    script: &str,
    duration: u32,
    rounds: u32,
    mut on_line: impl FnMut(&str),
) -> Result<Vec<String>, String> {
    let cfg = GuestConfig {
        timeout: Duration::from_secs(120 + 6 * (duration * rounds) as u64),
        ..GuestConfig::with_nics(nics)
    };
    let mut g = Guest::boot(&cfg, script).map_err(|e| e.to_string())?;
    let mut lines = Vec::new();
    while let Some(l) = g.next_line() {
        on_line(&l);
        lines.push(l);
    }
    let out = g.wait().map_err(|e| e.to_string())?;
    if !out.success() {
        return Err(out.describe());
    }
    Ok(lines)
}

/// Lines between `BENCH-PHASE <name>` and the next phase marker.
pub(crate) fn phase<'a>(lines: &'a [String], name: &str) -> Vec<&'a str> {
    let marker = format!("BENCH-PHASE {name}");
    lines
        .iter()
        .skip_while(|l| l.trim() != marker)
        .skip(1)
        .take_while(|l| !l.starts_with("BENCH-PHASE"))
        .map(|s| s.as_str())
        .collect()
}

/// The steady-state rate of a series of per-second samples: idle samples (below a tenth
/// of the peak) are dropped, then the first and last active ones (partial seconds at
/// start-up and shut-down), and the rest averaged. The same rule for tenge and the peer.
pub(crate) fn steady(samples: &[f64]) -> Option<f64> {
    let peak = samples.iter().cloned().fold(0.0, f64::max);
    let active: Vec<f64> = samples
        .iter()
        .cloned()
        .filter(|v| *v >= peak / 10.0 && *v > 0.0)
        .collect();
    let core = if active.len() > 2 {
        &active[1..active.len() - 1]
    } else {
        &active[..]
    };
    mean(core)
}

/// The arithmetic mean; None for no samples.
pub(crate) fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Per-second Mpps from tenge's live lines (`[  1.0s] tx   2.367 Mpps ...`).
pub(crate) fn tenge_samples(lines: &[&str], dir: &str) -> Vec<f64> {
    lines
        .iter()
        .filter_map(|l| {
            let rest = l.split("s] ").nth(1)?;
            let mut w = rest.split_whitespace();
            (w.next()? == dir).then_some(())?;
            w.next()?.parse().ok()
        })
        .collect()
}

/// Per-second Mpps from testpmd's periodic statistics (`Tx-pps: 1631413`).
fn testpmd_samples(lines: &[&str], key: &str) -> Vec<f64> {
    lines
        .iter()
        .filter_map(|l| {
            let i = l.find(key)?;
            let v: f64 = l[i + key.len()..].split_whitespace().next()?.parse().ok()?;
            Some(v / 1e6)
        })
        .collect()
}

/// `key=value` from the first line that has it.
pub(crate) fn field(lines: &[&str], key: &str) -> Option<f64> {
    let k = format!("{key}=");
    lines.iter().find_map(|l| {
        let i = l.find(&k)?;
        l[i + k.len()..].split_whitespace().next()?.parse().ok()
    })
}

/// testpmd's final accumulated "TX-packets: N" or "RX-packets: N".
pub(crate) fn testpmd_total(lines: &[&str], key: &str) -> Option<f64> {
    let mut after_accum = false;
    let mut v = None;
    for l in lines {
        if l.contains("Accumulated forward statistics") {
            after_accum = true;
        }
        if after_accum {
            if let Some(i) = l.find(key) {
                v = l[i + key.len()..].split_whitespace().next()?.parse().ok();
                break;
            }
        }
    }
    v
}

/// Every value of `key` in testpmd's per-port blocks of port `port` whose header contains
/// `header` (`NIC statistics`: the periodic and `show port stats` blocks, device
/// counters; `Forward statistics`: the totals at stop), in order.
fn testpmd_port_values(lines: &[&str], header: &str, port: u32, key: &str) -> Vec<f64> {
    const AT: &str = "statistics for port ";
    let mut cur = None;
    let mut out = Vec::new();
    for l in lines {
        if let Some(i) = l.find(AT) {
            cur = l[i + AT.len()..]
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|_| l.contains(header));
            continue;
        }
        if l.contains("Accumulated") {
            cur = None;
        }
        if cur != Some(port) {
            continue;
        }
        if let Some(v) = l
            .find(key)
            .and_then(|i| l[i + key.len()..].split_whitespace().next())
            .and_then(|v| v.parse().ok())
        {
            out.push(v);
        }
    }
    out
}

/// testpmd's count `key` (e.g. `RX-packets:`) of port `port` in its forward statistics at
/// stop.
pub(crate) fn testpmd_port_total(lines: &[&str], port: u32, key: &str) -> Option<f64> {
    testpmd_port_values(lines, "Forward statistics", port, key)
        .first()
        .copied()
}

/// Per-second device-counter Mpps of l2fwd's port `port` from its live lines
/// (`[  1.0s] port 1: rx ... Mpps (...) hw rx 0.000 tx 0.412`): `dir` is `rx` or `tx`.
fn l2fwd_hw_samples(lines: &[&str], port: u32, dir: &str) -> Vec<f64> {
    let at = format!("] port {port}: ");
    lines
        .iter()
        .filter(|l| l.contains(&at))
        .filter_map(|l| {
            let hw = &l[l.find(" hw rx ")? + 4..];
            let mut w = hw.split_whitespace();
            let (rx, _, tx) = (w.nth(1)?, w.next()?, w.next()?);
            (if dir == "rx" { rx } else { tx }).parse().ok()
        })
        .collect()
}

fn median(v: &[f64]) -> Option<f64> {
    stats::Spread::of(v).map(|s| s.median)
}

/// The case name of a 64-byte case on `model` (`e1000e-tx64`, `igb-rx64`).
fn case_name(model: NicModel, dir: &str) -> String {
    let dev = match model {
        NicModel::Igb => "igb",
        _ => "e1000e",
    };
    format!("{dev}-{dir}64")
}

/// tenge pktgen against testpmd txonly on one `model` NIC alone on a hub (e1000e: DPDK's
/// net_e1000_em; igb: net_e1000_igb).
fn tx64(model: NicModel, d: u32, rounds: u32) -> Result<(), String> {
    let nics = vec![Nic::new(model, Backend::Hub(0))];
    tx_bench(&case_name(model, "tx"), nics, None, d, rounds, None)
}

/// tenge's TX port against DPDK's virtio PMD on a virtio-net wired to a host UDP port that
/// always accepts; the same once more on a second virtio-net (also on a UDP port) that
/// offers no EVENT_IDX. The host ends count what reached them in each phase.
fn virtio_tx64(case: &str, packed: bool, d: u32, rounds: u32) -> Result<(), String> {
    // Both peers stay alive (and drain) until the guest is gone.
    let (n0, p0) = dgram_nic(virtio(packed, true));
    let (n1, p1) = dgram_nic(virtio(packed, false));
    let peers = [p0, p1];
    tx_bench(
        case,
        vec![n0, n1],
        Some(Nic::pci_addr(1)),
        d,
        rounds,
        Some(&peers),
    )
}

/// Frames the host ends of `-netdev dgram` received, in all.
fn host_received(peers: Option<&[DgramPeer]>) -> u64 {
    peers.map_or(0, |ps| ps.iter().map(DgramPeer::received).sum())
}

/// From `(phase, running count when its marker appeared)` in console order, the count
/// each phase added (up to the next marker); a phase with no next marker gets none.
fn phase_counts(marks: &[(String, u64)]) -> Vec<(String, u64)> {
    marks
        .windows(2)
        .map(|w| (w[0].0.clone(), w[1].1.saturating_sub(w[0].1)))
        .collect()
}

fn count_of(counts: &[(String, u64)], phase: &str) -> Option<u64> {
    counts.iter().find(|(p, _)| p == phase).map(|(_, c)| *c)
}

/// Alternating rounds of tenge pktgen and testpmd txonly on NIC 0; with `no_evidx`, tenge
/// once more on that port after the first round (a NIC without EVENT_IDX).
fn tx_bench(
    case: &str,
    nics: Vec<Nic>,
    no_evidx: Option<String>,
    d: u32,
    rounds: u32,
    peers: Option<&[DgramPeer]>,
) -> Result<(), String> {
    let pktgen = guest_bin("pktgen").display().to_string();
    let a0 = Nic::pci_addr(0);
    let mut script = String::from("set -e\n");
    for r in 0..rounds {
        script += &format!(
            "echo BENCH-PHASE tenge{r}\n\
             {pktgen} {a0} --duration {d} --size 64 --interval 1\n\
             echo BENCH-PHASE peer{r}\n\
             timeout -s INT {t} {TESTPMD} -l 0-1 -a {a0} -- --total-num-mbufs=8192 --forward-mode=txonly --stats-period 1 --txpkts=64 2>&1 | tr -d '\\033' | grep -E 'pps|packets|Accumulated|Bye'\n",
            t = d + 3
        );
        if let (0, Some(a1)) = (r, &no_evidx) {
            script += &format!(
                "echo BENCH-PHASE tenge-noevidx\n\
                 {pktgen} {a1} --duration {d} --size 64 --interval 1\n"
            );
        }
    }
    script += "echo BENCH-PHASE end\n";
    let extra = u32::from(no_evidx.is_some());
    let mut marks = Vec::new();
    let lines = run_with(nics, &script, d, rounds + extra, |l| {
        if let Some(p) = l.trim().strip_prefix("BENCH-PHASE ") {
            marks.push((p.to_string(), host_received(peers)));
        }
    })?;
    let counts = phase_counts(&marks);
    let mut tenge = Vec::new();
    let mut peer = Vec::new();
    let mut left_out = Vec::new();
    for r in 0..rounds {
        let t = phase(&lines, &format!("tenge{r}"));
        let p = phase(&lines, &format!("peer{r}"));
        // A round where either side never got going (testpmd's txonly sometimes stalls
        // after a few thousand frames under TCG) is reported and left out of the median.
        match (
            steady(&tenge_samples(&t, "tx")),
            steady(&testpmd_samples(&p, "Tx-pps:")),
        ) {
            (Some(t), Some(p)) => {
                tenge.push(t);
                peer.push(p);
            }
            (t, p) => left_out.push(format!(
                "round={r} why=no-steady-rate tenge={t:?} peer={p:?}"
            )),
        }
        if peers.is_some() {
            let host = |ph: String| count_of(&counts, &ph).unwrap_or(0);
            println!(
                "BENCH-DETAIL case={case} round={r} tenge_sent={} tenge_host_received={} peer_sent={} peer_host_received={}",
                field(&t, "sent").unwrap_or(0.0),
                host(format!("tenge{r}")),
                testpmd_total(&p, "TX-packets:").unwrap_or(0.0),
                host(format!("peer{r}")),
            );
        }
    }
    println!("BENCH-ROUNDS case={case} tenge={tenge:.3?} peer={peer:.3?}");
    if no_evidx.is_some() {
        let n = phase(&lines, "tenge-noevidx");
        let with = median(&tenge);
        let without = steady(&tenge_samples(&n, "tx"));
        evidx_detail(
            case,
            with,
            without,
            &format!(
                "tenge_no_event_idx_sent={} host_received_no_event_idx={} {}",
                field(&n, "sent").unwrap_or(0.0),
                count_of(&counts, "tenge-noevidx").unwrap_or(0),
                notifies_detail(&phase(&lines, "tenge0"), &n, "sent", "tx_notifies"),
            ),
        );
    }
    stats::report(case, &tenge, &peer, &left_out, "")
}

/// Notifications the device received per 1000 frames, in tenge's first round (EVENT_IDX
/// on) and in its round without EVENT_IDX: `frames` and `notifies` name the counters of
/// its summary line.
fn notifies_detail(with: &[&str], without: &[&str], frames: &str, notifies: &str) -> String {
    let per_k = |l: &[&str]| match (field(l, frames), field(l, notifies)) {
        (Some(f), Some(n)) if f > 0.0 => format!("{:.2}", n * 1000.0 / f),
        _ => "none".into(),
    };
    format!(
        "notifies_per_1000_event_idx={} notifies_per_1000_no_event_idx={}",
        per_k(with),
        per_k(without)
    )
}

/// The BENCH-DETAIL line for tenge with and without EVENT_IDX.
fn evidx_detail(case: &str, with: Option<f64>, without: Option<f64>, rest: &str) {
    let fmt = |v: Option<f64>| v.map_or("none".to_string(), |v| format!("{v:.4}"));
    let gain = match (with, without) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.3}", a / b),
        _ => "none".into(),
    };
    println!(
        "BENCH-DETAIL case={case} tenge_event_idx_mpps={} tenge_no_event_idx_mpps={} event_idx_gain={gain} {rest}",
        fmt(with),
        fmt(without)
    );
}

/// A `model` NIC drained by tenge, then by testpmd rxonly, fed by testpmd txonly on an
/// e1000e on the same hub (the same source for both sides; for igb an e1000e, as a
/// second igb next to it would collide over its VFs' slots).
fn rx64(model: NicModel, d: u32, rounds: u32) -> Result<(), String> {
    let nics = vec![e1000e(Backend::Hub(0)), Nic::new(model, Backend::Hub(0))];
    rx_bench(&case_name(model, "rx"), nics, None, d, rounds)
}

/// e1000e testpmd txonly into a virtio-net on hub 0 (tenge vs DPDK's virtio PMD); once,
/// a second e1000e into a virtio-net without EVENT_IDX on hub 1, drained by tenge.
fn virtio_rx64(case: &str, packed: bool, d: u32, rounds: u32) -> Result<(), String> {
    let nics = vec![
        e1000e(Backend::Hub(0)),
        Nic::new(virtio(packed, true), Backend::Hub(0)),
        e1000e(Backend::Hub(1)),
        Nic::new(virtio(packed, false), Backend::Hub(1)),
    ];
    rx_bench(
        case,
        nics,
        Some((Nic::pci_addr(2), Nic::pci_addr(3))),
        d,
        rounds,
    )
}

/// A source that sent fewer frames than this stalled (testpmd's txonly sometimes stops
/// after a few thousand frames under TCG): the rate of that side is left out.
const MIN_SOURCE_FRAMES: f64 = 100_000.0;

fn source_ran(sent: f64) -> bool {
    sent >= MIN_SOURCE_FRAMES
}

/// Shows the source's own log when it never reached its final statistics (it failed to
/// start, or started too late for its time limit).
const WHY_NO_SOURCE: &str =
    "grep -q Accumulated /tmp/src.log || { echo 'source: no final statistics:'; tail -15 /tmp/src.log; }";

/// NIC 0 sends (testpmd txonly), NIC 1 is drained by tenge, then by testpmd rxonly, in
/// alternating rounds; with `no_evidx` (source, sink), tenge once more on that pair.
fn rx_bench(
    case: &str,
    nics: Vec<Nic>,
    no_evidx: Option<(String, String)>,
    d: u32,
    rounds: u32,
) -> Result<(), String> {
    let e2e = guest_bin("tenge-e2e").display().to_string();
    let (src, dst) = (Nic::pci_addr(0), Nic::pci_addr(1));
    // The source is testpmd txonly with its forwarding lcore on vCPU 0 (main lcore 1);
    // the sink runs on vCPU 1, started first (QEMU-RECIPE: this pairing works).
    let source = |src: &str| {
        format!(
            "timeout -s INT {t} {TESTPMD} -l 0-1 --main-lcore 1 --file-prefix src -a {src} -- --total-num-mbufs=8192 --forward-mode=txonly --stats-period 1 --txpkts=64 > /tmp/src.log 2>&1",
            t = d + 3
        )
    };
    let show = "tr -d '\\033' | grep -E 'pps|packets|Accumulated'";
    let tenge_phase = |name: &str, src: &str, dst: &str| {
        format!(
            "echo BENCH-PHASE {name}\n\
             taskset -c 1 {e2e} rx-sink {dst} --duration {sd} --idle-stop 2 > /tmp/sink.log 2>&1 &\n\
             sink=$!\n\
             for i in $(seq 100); do grep -q READY /tmp/sink.log && break; sleep 0.1; done\n\
             {source}\n\
             wait $sink\n\
             cat /tmp/sink.log\n\
             echo BENCH-PHASE {name}-source\n\
             {show} < /tmp/src.log\n\
             {WHY_NO_SOURCE}\n",
            sd = d + 30,
            source = source(src),
        )
    };
    let mut script = String::new();
    for r in 0..rounds {
        script += &tenge_phase(&format!("tenge{r}"), &src, &dst);
        script += &format!(
            "echo BENCH-PHASE peer{r}\n\
             {TESTPMD} -l 0-1 --main-lcore 0 --file-prefix dst -a {dst} -- --total-num-mbufs=8192 --forward-mode=rxonly --stats-period 1 > /tmp/psink.log 2>&1 &\n\
             psink=$!\n\
             for i in $(seq 200); do grep -q 'Port statistics' /tmp/psink.log && break; sleep 0.1; done\n\
             {source}\n\
             sleep 1; kill -INT $psink; wait $psink\n\
             {show} < /tmp/psink.log\n\
             echo BENCH-PHASE peer{r}-source\n\
             {show} < /tmp/src.log\n\
             {WHY_NO_SOURCE}\n",
            source = source(&src),
        );
        if let (0, Some((s2, d2))) = (r, &no_evidx) {
            script += &tenge_phase("tenge-noevidx", s2, d2);
        }
    }
    script += "echo BENCH-PHASE end\n";
    let extra = u32::from(no_evidx.is_some());
    let lines = run(nics, &script, 2 * d, rounds + extra)?;
    let loss = |rx: f64, tx: f64| if tx > 0.0 { 1.0 - rx / tx } else { f64::NAN };
    let (mut tenge, mut peer) = (Vec::new(), Vec::new());
    let (mut t_loss, mut p_loss) = (Vec::new(), Vec::new());
    let mut left_out = Vec::new();
    for r in 0..rounds {
        let t = phase(&lines, &format!("tenge{r}"));
        let ts = phase(&lines, &format!("tenge{r}-source"));
        let p = phase(&lines, &format!("peer{r}"));
        let ps = phase(&lines, &format!("peer{r}-source"));
        let t_rx = field(&t, "received").unwrap_or(0.0);
        let t_tx = testpmd_total(&ts, "TX-packets:").unwrap_or(0.0);
        let p_rx = testpmd_total(&p, "RX-packets:").unwrap_or(0.0);
        let p_tx = testpmd_total(&ps, "TX-packets:").unwrap_or(0.0);
        // A side whose source stalled measured the source, not the sink.
        match (
            steady(&tenge_samples(&t, "rx")).filter(|_| source_ran(t_tx)),
            steady(&testpmd_samples(&p, "Rx-pps:")).filter(|_| source_ran(p_tx)),
        ) {
            (Some(a), Some(b)) => {
                tenge.push(a);
                peer.push(b);
            }
            (a, b) => left_out.push(format!(
                "round={r} why=no-rate-or-source-stalled tenge={a:?} peer={b:?}"
            )),
        }
        println!(
            "BENCH-DETAIL case={case} round={r} tenge_source_sent={t_tx} tenge_received={t_rx} tenge_loss={:.3} peer_source_sent={p_tx} peer_received={p_rx} peer_loss={:.3}",
            loss(t_rx, t_tx),
            loss(p_rx, p_tx)
        );
        t_loss.push(loss(t_rx, t_tx));
        p_loss.push(loss(p_rx, p_tx));
    }
    println!("BENCH-ROUNDS case={case} tenge={tenge:.3?} peer={peer:.3?} tenge_loss={t_loss:.3?} peer_loss={p_loss:.3?}");
    if no_evidx.is_some() {
        let n = phase(&lines, "tenge-noevidx");
        let ns = phase(&lines, "tenge-noevidx-source");
        let (n_rx, n_tx) = (
            field(&n, "received").unwrap_or(0.0),
            testpmd_total(&ns, "TX-packets:").unwrap_or(0.0),
        );
        evidx_detail(
            case,
            median(&tenge),
            steady(&tenge_samples(&n, "rx")).filter(|_| source_ran(n_tx)),
            &format!(
                "no_event_idx_source_sent={n_tx} no_event_idx_received={n_rx} no_event_idx_loss={:.3} {}",
                loss(n_rx, n_tx),
                notifies_detail(&phase(&lines, "tenge0"), &n, "received", "rx_notifies"),
            ),
        );
    }
    stats::report(case, &tenge, &peer, &left_out, "")
}

/// tenge's `l2fwd` against testpmd's io forwarding between two e1000e (A at NIC 1 on hub 0,
/// B at NIC 2 alone on hub 1), on vCPU 1; the source is testpmd txonly on NIC 0 on hub 0,
/// its forwarding lcore on vCPU 0, the same for both sides. The rate is what port B sent by
/// its device counter (GPTC), every second: tenge's live lines, testpmd's periodic port
/// statistics (its e1000 PMD reports GPTC as `TX-packets`).
fn e1000e_l2fwd64(d: u32, rounds: u32) -> Result<(), String> {
    let case = "e1000e-l2fwd64";
    let nics = vec![
        e1000e(Backend::Hub(0)),
        e1000e(Backend::Hub(0)),
        e1000e(Backend::Hub(1)),
    ];
    let l2fwd = guest_bin("l2fwd").display().to_string();
    let (src, a, b) = (Nic::pci_addr(0), Nic::pci_addr(1), Nic::pci_addr(2));
    let source = format!(
        "timeout -s INT {t} {TESTPMD} -l 0-1 --main-lcore 1 --file-prefix src -a {src} -- --total-num-mbufs=8192 --forward-mode=txonly --stats-period 1 --txpkts=64 > /tmp/src.log 2>&1",
        t = d + 3
    );
    let show = "tr -d '\\033' | grep -E 'pps|packets|Accumulated|statistics for port'";
    let mut script = String::new();
    for r in 0..rounds {
        script += &format!(
            "echo BENCH-PHASE tenge{r}\n\
             taskset -c 1 {l2fwd} {a} {b} --single-thread > /tmp/fwd.log 2>&1 &\n\
             fwd=$!\n\
             for i in $(seq 200); do grep -q READY /tmp/fwd.log && break; sleep 0.1; done\n\
             {source}\n\
             kill -INT $fwd; wait $fwd\n\
             cat /tmp/fwd.log\n\
             echo BENCH-PHASE tenge{r}-source\n\
             {show} < /tmp/src.log\n\
             {WHY_NO_SOURCE}\n\
             echo BENCH-PHASE peer{r}\n\
             {TESTPMD} -l 0-1 --main-lcore 0 --file-prefix fwd -a {a} -a {b} -- --total-num-mbufs=8192 --forward-mode=io --stats-period 1 > /tmp/pfwd.log 2>&1 &\n\
             pfwd=$!\n\
             for i in $(seq 300); do grep -q 'Port statistics' /tmp/pfwd.log && break; sleep 0.1; done\n\
             {source}\n\
             sleep 1; kill -INT $pfwd; wait $pfwd\n\
             {show} < /tmp/pfwd.log\n\
             echo BENCH-PHASE peer{r}-source\n\
             {show} < /tmp/src.log\n\
             {WHY_NO_SOURCE}\n"
        );
    }
    script += "echo BENCH-PHASE end\n";
    let lines = run(nics, &script, 2 * d, rounds)?;
    let (mut tenge, mut peer) = (Vec::new(), Vec::new());
    let mut left_out = Vec::new();
    for r in 0..rounds {
        let t = phase(&lines, &format!("tenge{r}"));
        let ts = phase(&lines, &format!("tenge{r}-source"));
        let p = phase(&lines, &format!("peer{r}"));
        let ps = phase(&lines, &format!("peer{r}-source"));
        let t_src = testpmd_total(&ts, "TX-packets:").unwrap_or(0.0);
        let p_src = testpmd_total(&ps, "TX-packets:").unwrap_or(0.0);
        // tenge's summary: each port's device counters.
        let summary = |n: u32, key: &str| {
            let prefix = format!("l2fwd: port {n}:");
            let l: Vec<&str> = t
                .iter()
                .copied()
                .filter(|l| l.starts_with(&prefix))
                .collect();
            field(&l, key).unwrap_or(0.0)
        };
        let last = |port: u32, key: &str| {
            testpmd_port_values(&p, "NIC statistics", port, key)
                .last()
                .copied()
                .unwrap_or(0.0)
        };
        // A side whose source stalled measured the source, not the forwarder.
        match (
            steady(&l2fwd_hw_samples(&t, 1, "tx")).filter(|_| source_ran(t_src)),
            steady(&testpmd_port_values(&p, "NIC statistics", 1, "Tx-pps:"))
                .map(|v| v / 1e6)
                .filter(|_| source_ran(p_src)),
        ) {
            (Some(x), Some(y)) => {
                tenge.push(x);
                peer.push(y);
            }
            (x, y) => left_out.push(format!(
                "round={r} why=no-rate-or-source-stalled tenge={x:?} peer={y:?}"
            )),
        }
        println!(
            "BENCH-DETAIL case={case} round={r} tenge_source_sent={t_src} tenge_a_hw_received={} tenge_b_hw_sent={} tenge_b_sent={} tenge_tx_full_drops={} peer_source_sent={p_src} peer_a_hw_received={} peer_b_hw_sent={} peer_b_sent={} peer_rx_missed={}",
            summary(0, "hw_gprc"),
            summary(1, "hw_gptc"),
            summary(1, "tx"),
            summary(0, "tx_full_drops"),
            last(0, "RX-packets:"),
            last(1, "TX-packets:"),
            testpmd_port_total(&p, 1, "TX-packets:").unwrap_or(0.0),
            last(0, "RX-missed:"),
        );
    }
    println!("BENCH-ROUNDS case={case} tenge={tenge:.3?} peer={peer:.3?}");
    stats::report(case, &tenge, &peer, &left_out, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_drops_idle_and_partial_seconds() {
        let s = steady(&[0.0, 0.5, 2.0, 2.2, 2.4, 1.0, 0.0]).unwrap();
        assert!((s - 2.2).abs() < 1e-9, "{s}");
        assert_eq!(steady(&[]), None);
        assert_eq!(steady(&[1.0]), Some(1.0));
    }

    #[test]
    fn parses_both_tools() {
        let lines = [
            "[   1.0s] tx   2.367 Mpps   1.212 Gbit/s  total 2367488",
            "  Tx-pps:      1631413          Tx-bps:    887497848",
            "  +++++++++++++++ Accumulated forward statistics for all ports+++++++++++++++",
            "  RX-packets: 0              RX-dropped: 0             RX-total: 0",
            "  TX-packets: 10113248       TX-dropped: 0             TX-total: 10113248",
            "rx-sink: done: received=123 seconds=1.0",
        ];
        assert_eq!(tenge_samples(&lines, "tx"), vec![2.367]);
        assert_eq!(testpmd_samples(&lines, "Tx-pps:"), vec![1.631413]);
        assert_eq!(testpmd_total(&lines, "TX-packets:"), Some(10113248.0));
        assert_eq!(field(&lines, "received"), Some(123.0));
    }

    #[test]
    fn parses_per_port_counters() {
        let lines = [
            "  ######################## NIC statistics for port 0  ########################",
            "  RX-packets: 100        RX-missed: 5          RX-bytes:  6000",
            "  TX-packets: 0          TX-errors: 0          TX-bytes:  0",
            "  Tx-pps:            0          Tx-bps:            0",
            "  ######################## NIC statistics for port 1  ########################",
            "  RX-packets: 0          RX-missed: 0          RX-bytes:  0",
            "  TX-packets: 95         TX-errors: 0          TX-bytes:  5700",
            "  Tx-pps:       412000          Tx-bps:    197760000",
            "  ---------------------- Forward statistics for port 1  ----------------------",
            "  RX-packets: 0              RX-dropped: 0             RX-total: 0",
            "  TX-packets: 94             TX-dropped: 1             TX-total: 95",
            "  +++++++++++++++ Accumulated forward statistics for all ports+++++++++++++++",
            "  TX-packets: 94             TX-dropped: 1             TX-total: 95",
            "[   1.0s] port 1: rx   0.000 Mpps tx   0.410 Mpps (q0 rx 0.000 tx 0.410) hw rx 0.000 tx 0.412",
            "[   1.0s] port 0: rx   0.410 Mpps tx   0.000 Mpps (q0 rx 0.410 tx 0.000)",
        ];
        assert_eq!(
            testpmd_port_values(&lines, "NIC statistics", 1, "Tx-pps:"),
            vec![412000.0]
        );
        assert_eq!(
            testpmd_port_values(&lines, "NIC statistics", 0, "RX-missed:"),
            vec![5.0]
        );
        assert_eq!(testpmd_port_total(&lines, 1, "TX-packets:"), Some(94.0));
        assert_eq!(testpmd_port_total(&lines, 0, "TX-packets:"), None);
        assert_eq!(l2fwd_hw_samples(&lines, 1, "tx"), vec![0.412]);
        assert_eq!(l2fwd_hw_samples(&lines, 1, "rx"), vec![0.0]);
        assert!(l2fwd_hw_samples(&lines, 0, "tx").is_empty());
    }

    #[test]
    fn phase_counts_are_differences_between_markers() {
        let marks: Vec<(String, u64)> = [
            ("tenge0", 0),
            ("peer0", 1000),
            ("tenge-noevidx", 1500),
            ("end", 1900),
        ]
        .iter()
        .map(|(p, c)| (p.to_string(), *c))
        .collect();
        let counts = phase_counts(&marks);
        assert_eq!(count_of(&counts, "tenge0"), Some(1000));
        assert_eq!(count_of(&counts, "peer0"), Some(500));
        assert_eq!(count_of(&counts, "tenge-noevidx"), Some(400));
        assert_eq!(count_of(&counts, "end"), None);
        assert!(phase_counts(&marks[..1]).is_empty());
        assert!(!source_ran(2880.0) && source_ran(3_488_000.0));
    }
}
