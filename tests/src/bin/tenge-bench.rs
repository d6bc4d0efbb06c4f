//! tenge-bench: in-guest benchmarks, tenge and DPDK testpmd side by side in one guest boot,
//! on the same emulated NIC, the same frame size and duration, one after the other.
//! Prints `BENCH case=<name> tenge_mpps=<x> peer=dpdk-testpmd peer_mpps=<y> ratio=<x/y>`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tenge_testbed::{Backend, Guest, GuestConfig, Nic, NicModel};
use tenge_tests::guest_bin;

/// Run tenge against DPDK testpmd on QEMU's emulated NICs inside one guest boot per case,
/// and print one BENCH line per case.
///
/// Cases:
///   e1000e-tx64  tenge pktgen vs testpmd txonly, 64-byte frames, e1000e on a lone hub
///   e1000e-rx64  a second e1000e on the hub sends (testpmd txonly, the same source for
///                both); the measured port is drained by tenge, then by testpmd rxonly
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
struct Args {
    /// Seconds each side runs.
    #[arg(long, default_value_t = 10)]
    duration: u32,
    /// Comma-separated cases to run.
    #[arg(long, default_value = "e1000e-tx64,e1000e-rx64")]
    cases: String,
    /// Rounds per case, alternating tenge and the peer in one boot; the median is reported
    /// (TCG timing is noisy: one round can be off by a third).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
}

const TESTPMD: &str = "dpdk-testpmd -n 1 --no-telemetry";

fn main() -> ExitCode {
    let args = Args::parse();
    let mut ok = true;
    for case in args.cases.split(',') {
        let r = match case {
            "e1000e-tx64" => tx64(args.duration, args.rounds),
            "e1000e-rx64" => rx64(args.duration, args.rounds),
            other => Err(format!("unknown case {other}")),
        };
        if let Err(e) = r {
            eprintln!("tenge-bench: {case}: {e}");
            ok = false;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn e1000e(backend: Backend) -> Nic {
    Nic::new(NicModel::E1000e, backend)
}

/// Runs the script, returns the console lines (also streamed to stdout).
fn run(nics: Vec<Nic>, script: &str, duration: u32, rounds: u32) -> Result<Vec<String>, String> {
    let cfg = GuestConfig {
        timeout: Duration::from_secs(120 + 6 * (duration * rounds) as u64),
        ..GuestConfig::with_nics(nics)
    };
    let mut g = Guest::boot(&cfg, script).map_err(|e| e.to_string())?;
    let mut lines = Vec::new();
    while let Some(l) = g.next_line() {
        lines.push(l);
    }
    let out = g.wait().map_err(|e| e.to_string())?;
    if !out.success() {
        return Err(out.describe());
    }
    Ok(lines)
}

/// Lines between `BENCH-PHASE <name>` and the next phase marker.
fn phase<'a>(lines: &'a [String], name: &str) -> Vec<&'a str> {
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
fn steady(samples: &[f64]) -> Option<f64> {
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
    (!core.is_empty()).then(|| core.iter().sum::<f64>() / core.len() as f64)
}

/// Per-second Mpps from tenge's live lines (`[  1.0s] tx   2.367 Mpps ...`).
fn tenge_samples(lines: &[&str], dir: &str) -> Vec<f64> {
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
fn field(lines: &[&str], key: &str) -> Option<f64> {
    let k = format!("{key}=");
    lines.iter().find_map(|l| {
        let i = l.find(&k)?;
        l[i + k.len()..].split_whitespace().next()?.parse().ok()
    })
}

/// testpmd's final accumulated "TX-packets: N" or "RX-packets: N".
fn testpmd_total(lines: &[&str], key: &str) -> Option<f64> {
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

fn bench_line(case: &str, tenge: f64, peer: f64) {
    println!(
        "BENCH case={case} tenge_mpps={tenge:.4} peer=dpdk-testpmd peer_mpps={peer:.4} ratio={:.3}",
        tenge / peer
    );
}

/// The BENCH line from the medians of the rounds that produced rates on both sides.
fn report_median(case: &str, tenge: Vec<f64>, peer: Vec<f64>) -> Result<(), String> {
    match (median(tenge), median(peer)) {
        (Some(t), Some(p)) => {
            bench_line(case, t, p);
            Ok(())
        }
        _ => Err("no round produced rates on both sides".into()),
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied()
}

fn tx64(d: u32, rounds: u32) -> Result<(), String> {
    let pktgen = guest_bin("pktgen").display().to_string();
    let a0 = Nic::pci_addr(0);
    let mut script = String::from("set -e\n");
    for r in 0..rounds {
        script += &format!(
            "echo BENCH-PHASE tenge{r}\n\
             {pktgen} {a0} --duration {d} --size 64 --interval 1\n\
             echo BENCH-PHASE peer{r}\n\
             timeout -s INT {t} {TESTPMD} -l 0-1 -a {a0} -- --total-num-mbufs=8192 --forward-mode=txonly --stats-period 1 --txpkts=64 2>&1 | tr -d '\\033' | grep -E 'pps|packets|Bye'\n",
            t = d + 3
        );
    }
    script += "echo BENCH-PHASE end\n";
    let lines = run(vec![e1000e(Backend::Hub(0))], &script, d, rounds)?;
    let mut tenge = Vec::new();
    let mut peer = Vec::new();
    for r in 0..rounds {
        // A round where either side never got going (testpmd's txonly sometimes stalls
        // after a few thousand frames under TCG) is reported and left out of the median.
        match (
            steady(&tenge_samples(&phase(&lines, &format!("tenge{r}")), "tx")),
            steady(&testpmd_samples(
                &phase(&lines, &format!("peer{r}")),
                "Tx-pps:",
            )),
        ) {
            (Some(t), Some(p)) => {
                tenge.push(t);
                peer.push(p);
            }
            (t, p) => {
                eprintln!("tenge-bench: e1000e-tx64 round {r} left out: tenge {t:?} peer {p:?}")
            }
        }
    }
    println!("BENCH-ROUNDS case=e1000e-tx64 tenge={tenge:.3?} peer={peer:.3?}");
    report_median("e1000e-tx64", tenge, peer)
}

fn rx64(d: u32, rounds: u32) -> Result<(), String> {
    let e2e = guest_bin("tenge-e2e").display().to_string();
    let (src, dst) = (Nic::pci_addr(0), Nic::pci_addr(1));
    // The source is testpmd txonly with its forwarding lcore on vCPU 0 (main lcore 1);
    // the sink runs on vCPU 1, started first (QEMU-RECIPE: this pairing works).
    let source = format!(
        "timeout -s INT {t} {TESTPMD} -l 0-1 --main-lcore 1 --file-prefix src -a {src} -- --total-num-mbufs=8192 --forward-mode=txonly --stats-period 1 --txpkts=64 > /tmp/src.log 2>&1",
        t = d + 3
    );
    let show = "tr -d '\\033' | grep -E 'pps|packets|Accumulated'";
    let mut script = String::new();
    for r in 0..rounds {
        script += &format!(
            "echo BENCH-PHASE tenge{r}\n\
             taskset -c 1 {e2e} rx-sink {dst} --duration {sd} --idle-stop 2 > /tmp/sink.log 2>&1 &\n\
             sink=$!\n\
             for i in $(seq 100); do grep -q READY /tmp/sink.log && break; sleep 0.1; done\n\
             {source}\n\
             wait $sink\n\
             cat /tmp/sink.log\n\
             echo BENCH-PHASE tenge-source{r}\n\
             {show} < /tmp/src.log\n\
             echo BENCH-PHASE peer{r}\n\
             {TESTPMD} -l 0-1 --main-lcore 0 --file-prefix dst -a {dst} -- --total-num-mbufs=8192 --forward-mode=rxonly --stats-period 1 > /tmp/psink.log 2>&1 &\n\
             psink=$!\n\
             for i in $(seq 200); do grep -q 'Port statistics' /tmp/psink.log && break; sleep 0.1; done\n\
             {source}\n\
             sleep 1; kill -INT $psink; wait $psink\n\
             {show} < /tmp/psink.log\n\
             echo BENCH-PHASE peer-source{r}\n\
             {show} < /tmp/src.log\n",
            sd = d + 30
        );
    }
    script += "echo BENCH-PHASE end\n";
    let lines = run(
        vec![e1000e(Backend::Hub(0)), e1000e(Backend::Hub(0))],
        &script,
        2 * d,
        rounds,
    )?;
    let loss = |rx: f64, tx: f64| if tx > 0.0 { 1.0 - rx / tx } else { f64::NAN };
    let (mut tenge, mut peer) = (Vec::new(), Vec::new());
    let (mut t_loss, mut p_loss) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let t = phase(&lines, &format!("tenge{r}"));
        let ts = phase(&lines, &format!("tenge-source{r}"));
        let p = phase(&lines, &format!("peer{r}"));
        let ps = phase(&lines, &format!("peer-source{r}"));
        match (
            steady(&tenge_samples(&t, "rx")),
            steady(&testpmd_samples(&p, "Rx-pps:")),
        ) {
            (Some(a), Some(b)) => {
                tenge.push(a);
                peer.push(b);
            }
            (a, b) => {
                eprintln!("tenge-bench: e1000e-rx64 round {r} left out: tenge {a:?} peer {b:?}")
            }
        }
        let t_rx = field(&t, "received").unwrap_or(0.0);
        let t_tx = testpmd_total(&ts, "TX-packets:").unwrap_or(0.0);
        let p_rx = testpmd_total(&p, "RX-packets:").unwrap_or(0.0);
        let p_tx = testpmd_total(&ps, "TX-packets:").unwrap_or(0.0);
        println!(
            "BENCH-DETAIL case=e1000e-rx64 round={r} tenge_source_sent={t_tx} tenge_received={t_rx} tenge_loss={:.3} peer_source_sent={p_tx} peer_received={p_rx} peer_loss={:.3}",
            loss(t_rx, t_tx),
            loss(p_rx, p_tx)
        );
        t_loss.push(loss(t_rx, t_tx));
        p_loss.push(loss(p_rx, p_tx));
    }
    println!("BENCH-ROUNDS case=e1000e-rx64 tenge={tenge:.3?} peer={peer:.3?} tenge_loss={t_loss:.3?} peer_loss={p_loss:.3?}");
    report_median("e1000e-rx64", tenge, peer)
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
}
