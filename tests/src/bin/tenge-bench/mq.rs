//! Multi-queue benchmarks (issue 9): tenge on a virtio-net with two queue pairs, a thread
//! per queue, against tenge on the same device with one queue pair, alternating in one boot
//! against the same host testpmd (docs/benchmarks/README.md, "Multi-queue cases").
//!
//! - `vhost-mq-rx64`: one vhost port with two queue pairs; the host runs txonly (64-byte
//!   frames) on both of its queues, which fill the guest's receive queues 0 and 1; the guest
//!   drains them with `rxdump --queues 2` (a thread per queue), then `rxdump --queues 1`.
//!   With one pair the device's queue 1 is never enabled: the host's bursts on it fail and
//!   testpmd counts them as TX drops of that stream, not as frames sent, so the host's
//!   per-second TX rate (what went into the guest's rings) stays what the guest received.
//! - `vhost-mq-l2fwd64`: two vhost ports with two queue pairs each, the host's chain
//!   (net_null -> A, B -> net_null, [`HostMode::Chain`]) on both queues; the guest runs
//!   `l2fwd A B --queues 2`, then `--queues 1`; the rate is what the host received on B.
//!
//! The judge is the host, as in the other vhost cases; `BENCH-DETAIL` adds each queue's
//! counts, the host's per stream and the guest's own.

use std::collections::BTreeMap;
use std::time::Duration;

use tenge_testbed::{HostMode, Nic, NicModel, VhostHost, VhostHostConfig};

use super::vhost::{host_rate, run_with_host, rx_side, FwdStream, HostPhase};
use super::{field, guest_bin, phase, stats};

/// The receive case's name.
pub const RX_CASE: &str = "vhost-mq-rx64";
/// The forwarding case's name.
pub const L2FWD_CASE: &str = "vhost-mq-l2fwd64";

/// Queue pairs of the device (the host's vhost ports) in both cases.
const PAIRS: u16 = 2;
/// The sides of a round, in the order they run: (name, queue pairs the guest opens).
const SIDES: [(&str, u16); 2] = [("tenge2q", PAIRS), ("tenge1q", 1)];

/// Waits (up to 20 s) for `READY` in `log`.
fn wait_ready(log: &str) -> String {
    format!("for i in $(seq 200); do grep -q READY {log} && break; sleep 0.1; done")
}

fn rx_script(d: u32, rounds: u32) -> String {
    let a0 = Nic::pci_addr(0);
    let rxdump = guest_bin("rxdump").display().to_string();
    let mut s = String::new();
    for r in 0..rounds {
        for (side, q) in SIDES {
            // No pinning on either side: the scheduler spreads the receive threads over
            // both vCPUs; only the queue count differs.
            s += &rx_side(
                &format!("{side}{r}"),
                &format!(
                    "{rxdump} {a0} --queues {q} --quiet --interval 1 --duration {sd} > /tmp/sink.log 2>&1 &\n\
                     sink=$!\n{}",
                    wait_ready("/tmp/sink.log"),
                    sd = d + 60
                ),
                d,
                "kill -INT $sink; wait $sink\ncat /tmp/sink.log",
            );
        }
    }
    s + "echo BENCH-PHASE end\n"
}

fn l2fwd_script(d: u32, rounds: u32) -> String {
    let (a0, a1) = (Nic::pci_addr(0), Nic::pci_addr(1));
    let l2fwd = guest_bin("l2fwd").display().to_string();
    let mut s = String::new();
    for r in 0..rounds {
        for (side, q) in SIDES {
            // l2fwd's default threading on both sides (a thread per direction and queue
            // pair), unpinned over both vCPUs: see docs/benchmarks/README.md for why the
            // one-queue side does not run --single-thread.
            s += &rx_side(
                &format!("{side}{r}"),
                &format!(
                    "{l2fwd} {a0} {a1} --queues {q} --interval 0 > /tmp/fwd.log 2>&1 &\n\
                     fwd=$!\n{}",
                    wait_ready("/tmp/fwd.log")
                ),
                d,
                "kill -INT $fwd; wait $fwd\ngrep l2fwd: /tmp/fwd.log",
            );
        }
    }
    s + "echo BENCH-PHASE end\n"
}

/// `name_q0=v0 name_q1=v1` from `value(stream)` over the streams `pick` selects, by the
/// queue `queue(stream)`; every queue of the device, 0 when its stream moved nothing.
fn per_queue(
    streams: &[FwdStream],
    name: &str,
    pick: impl Fn(&FwdStream) -> bool,
    queue: impl Fn(&FwdStream) -> u32,
    value: impl Fn(&FwdStream) -> u64,
) -> String {
    (0..u32::from(PAIRS))
        .map(|q| {
            let v: u64 = streams
                .iter()
                .filter(|s| pick(s) && queue(s) == q)
                .map(&value)
                .sum();
            format!(" {name}_q{q}={v}")
        })
        .collect()
}

fn rate_field(rate: Option<f64>) -> String {
    rate.map_or("none".into(), |v| format!("{v:.4}"))
}

/// Prints the rounds and the BENCH line: tenge with two queue pairs against one.
fn report(case: &str, rates: &BTreeMap<&str, Vec<f64>>, left_out: &[String]) -> Result<(), String> {
    let get = |side: &str| rates.get(side).cloned().unwrap_or_default();
    let (two, one) = (get(SIDES[0].0), get(SIDES[1].0));
    println!("BENCH-ROUNDS case={case} tenge2q={two:.3?} tenge1q={one:.3?}");
    stats::report_vs(
        case,
        &two,
        &one,
        "tenge-1q",
        left_out,
        &format!(" size=64 queues={PAIRS}"),
    )
}

/// The receive case: host txonly on two queues of one vhost port; `rxdump --queues 2`
/// against `--queues 1`; the rate is what the host put into the guest's rings.
pub fn run_rx(d: u32, rounds: u32) -> Result<(), String> {
    let case = RX_CASE;
    let mut cfg = VhostHostConfig::new(HostMode::TxOnly { size: 64 });
    cfg.ports = vec![PAIRS];
    let mut host = VhostHost::start(&cfg).map_err(|e| format!("host: {e}"))?;
    let nic = Nic::new(NicModel::virtio(), host.backend(0));
    let timeout = Duration::from_secs(120 + u64::from(rounds) * 2 * (u64::from(d) + 30));
    let (lines, phases) = run_with_host(vec![nic], &rx_script(d, rounds), timeout, &mut host)?;
    let mut rates: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut left_out = Vec::new();
    for r in 0..rounds {
        let mut detail = format!("BENCH-DETAIL case={case} round={r}");
        for (side, _) in SIDES {
            let name = format!("{side}{r}");
            let Some(p) = phases.get(&name) else {
                left_out.push(format!("round={r} side={side} why=no-host-phase"));
                continue;
            };
            let rate = host_rate(p, 0, false);
            detail += &rx_detail(side, rate, p, &phase(&lines, &name));
            match rate {
                Some(v) => rates.entry(side).or_default().push(v),
                None => left_out.push(format!("round={r} side={side} why=no-steady-rate")),
            }
        }
        println!("{detail}");
    }
    report(case, &rates, &left_out)
}

/// One side's part of a receive round's BENCH-DETAIL: the rate, what the host sent into
/// each queue and dropped on it (a full ring; on a queue the guest did not enable, every
/// burst), and what rxdump counted on each of its queues.
fn rx_detail(side: &str, rate: Option<f64>, p: &HostPhase, g: &[&str]) -> String {
    let fwd = p.fwd.first().copied().unwrap_or_default();
    let to_guest = |s: &FwdStream| s.tx_port == 0;
    let mut out = format!(
        " {side}_mpps={} {side}_host_sent={} {side}_host_dropped={}",
        rate_field(rate),
        fwd.tx_packets,
        fwd.tx_dropped
    );
    out += &per_queue(
        &p.streams,
        &format!("{side}_host_sent"),
        to_guest,
        |s| s.tx_queue,
        |s| s.tx_packets,
    );
    out += &per_queue(
        &p.streams,
        &format!("{side}_host_dropped"),
        to_guest,
        |s| s.tx_queue,
        |s| s.tx_dropped,
    );
    out += &format!(
        " {side}_guest_received={}",
        field(g, "frames").unwrap_or(0.0)
    );
    for q in 0..PAIRS {
        out += &format!(
            " {side}_guest_q{q}={}",
            field(g, &format!("q{q}")).unwrap_or(0.0)
        );
    }
    out + &format!(
        " {side}_guest_no_buf={}",
        field(g, "rx_no_buf").unwrap_or(0.0)
    )
}

/// The forwarding case: the host's chain on two queues of each of two vhost ports;
/// `l2fwd A B --queues 2` against `--queues 1`; the rate is what the host received on B.
pub fn run_l2fwd(d: u32, rounds: u32) -> Result<(), String> {
    let case = L2FWD_CASE;
    let mut cfg = VhostHostConfig::new(HostMode::Chain { size: 64 });
    cfg.ports = vec![PAIRS, PAIRS];
    // As vhost-l2fwd64: a burst A's full ring did not take is tried once more after 10 us.
    cfg.retry = Some(1);
    let mut host = VhostHost::start(&cfg).map_err(|e| format!("host: {e}"))?;
    let nics = (0..2)
        .map(|i| Nic::new(NicModel::virtio(), host.backend(i)))
        .collect();
    let timeout = Duration::from_secs(120 + u64::from(rounds) * 2 * (u64::from(d) + 30));
    let (lines, phases) = run_with_host(nics, &l2fwd_script(d, rounds), timeout, &mut host)?;
    let mut rates: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut left_out = Vec::new();
    for r in 0..rounds {
        let mut detail = format!("BENCH-DETAIL case={case} round={r}");
        for (side, _) in SIDES {
            let name = format!("{side}{r}");
            let Some(p) = phases.get(&name) else {
                left_out.push(format!("round={r} side={side} why=no-host-phase"));
                continue;
            };
            let rate = host_rate(p, 1, true);
            detail += &l2fwd_detail(side, rate, p, &phase(&lines, &name));
            match rate {
                Some(v) => rates.entry(side).or_default().push(v),
                None => left_out.push(format!("round={r} side={side} why=no-steady-rate")),
            }
        }
        println!("{detail}");
    }
    report(case, &rates, &left_out)
}

/// One side's part of a forwarding round's BENCH-DETAIL: the rate; per queue, what the
/// host sent into A and dropped there, what l2fwd received on A and sent on B, and what the
/// host received on B.
fn l2fwd_detail(side: &str, rate: Option<f64>, p: &HostPhase, g: &[&str]) -> String {
    let fwd = |i: usize| p.fwd.get(i).copied().unwrap_or_default();
    // l2fwd's summary: `l2fwd: port N: rx=.. tx=..` and, with several queues,
    // `l2fwd: port N queues: q0_rx=.. q0_tx=.. ...`.
    let summary = |prefix: &str, key: &str| {
        let l: Vec<&str> = g
            .iter()
            .copied()
            .filter(|l| l.starts_with(prefix))
            .collect();
        field(&l, key)
    };
    let into_a = |s: &FwdStream| s.tx_port == 0;
    let from_b = |s: &FwdStream| s.rx_port == 1;
    let mut out = format!(
        " {side}_mpps={} {side}_host_sent={} {side}_host_dropped={} {side}_guest_received={} {side}_guest_sent={} {side}_host_received={}",
        rate_field(rate),
        fwd(0).tx_packets,
        fwd(0).tx_dropped,
        summary("l2fwd: port 0:", "rx").unwrap_or(0.0),
        summary("l2fwd: port 1:", "tx").unwrap_or(0.0),
        fwd(1).rx_packets,
    );
    out += &per_queue(
        &p.streams,
        &format!("{side}_host_sent"),
        into_a,
        |s| s.tx_queue,
        |s| s.tx_packets,
    );
    out += &per_queue(
        &p.streams,
        &format!("{side}_host_dropped"),
        into_a,
        |s| s.tx_queue,
        |s| s.tx_dropped,
    );
    for q in 0..PAIRS {
        // With one queue pair l2fwd prints no per-queue line: its port totals are queue 0.
        let (rx, tx) = match (
            summary("l2fwd: port 0 queues:", &format!("q{q}_rx")),
            summary("l2fwd: port 1 queues:", &format!("q{q}_tx")),
        ) {
            (Some(rx), Some(tx)) => (rx, tx),
            _ if q == 0 => (
                summary("l2fwd: port 0:", "rx").unwrap_or(0.0),
                summary("l2fwd: port 1:", "tx").unwrap_or(0.0),
            ),
            _ => (0.0, 0.0),
        };
        out += &format!(" {side}_guest_received_q{q}={rx} {side}_guest_sent_q{q}={tx}");
    }
    out + &per_queue(
        &p.streams,
        &format!("{side}_host_received"),
        from_b,
        |s| s.rx_queue,
        |s| s.rx_packets,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_queue_counts_every_queue() {
        let streams = [
            FwdStream {
                tx_port: 0,
                tx_queue: 1,
                tx_dropped: 9,
                ..Default::default()
            },
            FwdStream {
                rx_port: 1,
                tx_port: 2,
                rx_packets: 5,
                ..Default::default()
            },
        ];
        let to_a = |s: &FwdStream| s.tx_port == 0;
        assert_eq!(
            per_queue(&streams, "x", to_a, |s| s.tx_queue, |s| s.tx_dropped),
            " x_q0=0 x_q1=9"
        );
        assert_eq!(
            per_queue(
                &streams,
                "y",
                |s| s.rx_port == 1,
                |s| s.rx_queue,
                |s| s.rx_packets
            ),
            " y_q0=5 y_q1=0"
        );
    }

    #[test]
    fn reads_guest_summaries() {
        let p = HostPhase::default();
        let rx = [
            "[   1.0s] rx   0.500 Mpps (q0 0.250, q1 0.250)",
            "rxdump: done: seconds=4.0 frames=100 q0=60 q1=40 rx_no_buf=0 rx_errors=0",
        ];
        let d = rx_detail("tenge2q", Some(0.5), &p, &rx);
        assert!(d.contains(" tenge2q_mpps=0.5000 "), "{d}");
        assert!(
            d.contains(" tenge2q_guest_received=100 tenge2q_guest_q0=60 tenge2q_guest_q1=40 "),
            "{d}"
        );
        let fwd = [
            "l2fwd: port 0: rx=10 forwarded=0 tx_full_drops=0 tx_retries=0 tx=0 rx_no_buf=0",
            "l2fwd: port 1: rx=0 forwarded=10 tx_full_drops=0 tx_retries=0 tx=10 rx_no_buf=0",
        ];
        let d = l2fwd_detail("tenge1q", None, &p, &fwd);
        assert!(d.contains(" tenge1q_mpps=none "), "{d}");
        assert!(
            d.contains(" tenge1q_guest_received=10 tenge1q_guest_sent=10 "),
            "{d}"
        );
        assert!(d.contains(" tenge1q_guest_received_q0=10 tenge1q_guest_sent_q0=10 tenge1q_guest_received_q1=0 "), "{d}");
        let fwd2 = [
            "l2fwd: port 0: rx=10 forwarded=0 tx=0",
            "l2fwd: port 0 queues: q0_rx=6 q0_tx=0 q1_rx=4 q1_tx=0",
            "l2fwd: port 1: rx=0 forwarded=10 tx=10",
            "l2fwd: port 1 queues: q0_rx=0 q0_tx=6 q1_rx=0 q1_tx=4",
        ];
        let d = l2fwd_detail("tenge2q", None, &p, &fwd2);
        assert!(
            d.contains(" tenge2q_guest_received_q1=4 tenge2q_guest_sent_q1=4"),
            "{d}"
        );
    }
}
