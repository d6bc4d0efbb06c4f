//! The `irq` case: what sleeping costs and saves. An e1000e sender and an e1000e receiver
//! on one hub, `irq-check bench` in the guest: for a low-rate stream (1,000 frames/s, each
//! stamped with its send time) and for a flood, the receiver busy-polls, sleeps with a
//! fixed 128 us interval, or sleeps with adaptive moderation. The BENCH line compares the
//! flood's receive rate with adaptive moderation (tenge) against busy polling
//! (peer=tenge-busy-poll; goal: at least 0.95); BENCH-DETAIL lines give, per mode and
//! load, the receiving thread's CPU use, the send-to-receive latency (median, p99) and
//! the interrupts per second the guest kernel counted.

use tenge_testbed::{Backend, Nic, NicModel};
use tenge_tests::guest_bin;

use crate::{median, phase, run, stats};

/// The case's name.
pub(crate) const CASE: &str = "irq";

const MODES: [&str; 3] = ["busy", "fixed", "adaptive"];
/// (load name, frames per second; 0: a flood).
const LOADS: [(&str, u64); 2] = [("lowrate", 1000), ("flood", 0)];

/// `key=value` of a bench line.
fn value(line: &str, key: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
}

pub(crate) fn run_case(duration: u32, rounds: u32) -> Result<(), String> {
    let nics = vec![
        Nic::new(NicModel::E1000e, Backend::Hub(0)),
        Nic::new(NicModel::E1000e, Backend::Hub(0)),
    ];
    let (a0, a1) = (Nic::pci_addr(0), Nic::pci_addr(1));
    let check = guest_bin("irq-check");
    let check = check.display();
    let mut script = String::from("set -e\n");
    for r in 0..rounds {
        for (load, rate) in LOADS {
            for mode in MODES {
                script.push_str(&format!(
                    "echo 'BENCH-PHASE {mode}-{load}-{r}'\n\
                     {check} bench {a0} {a1} --mode {mode} --secs {duration} --rate {rate}\n"
                ));
            }
        }
    }
    script.push_str("echo 'BENCH-PHASE end'\n");
    let lines = run(nics, &script, duration * 3, rounds)?;
    // Per mode and load: the bench line of each round.
    let rows = |mode: &str, load: &str| -> Vec<String> {
        (0..rounds)
            .filter_map(|r| {
                phase(&lines, &format!("{mode}-{load}-{r}"))
                    .into_iter()
                    .find(|l| l.contains("irq-check: bench "))
                    .map(str::to_string)
            })
            .collect()
    };
    for (load, _) in LOADS {
        for mode in MODES {
            let rs = rows(mode, load);
            let med = |key: &str| {
                let v: Vec<f64> = rs.iter().filter_map(|l| value(l, key)).collect();
                median(&v).map_or("n/a".to_string(), |m| format!("{m:.4}"))
            };
            println!(
                "BENCH-DETAIL case={CASE} load={load} mode={mode} rounds={} mpps={} cpu_pct={} lat_median_us={} lat_p99_us={} irqs_per_s={} interval_us={}",
                rs.len(),
                med("mpps"),
                med("cpu_pct"),
                med("lat_median_us"),
                med("lat_p99_us"),
                med("irqs_per_s"),
                med("interval_us")
            );
        }
    }
    let mpps = |mode: &str| -> Vec<f64> {
        rows(mode, "flood")
            .iter()
            .filter_map(|l| value(l, "mpps"))
            .collect()
    };
    stats::report_vs(
        CASE,
        &mpps("adaptive"),
        &mpps("busy"),
        "tenge-busy-poll",
        &[],
        "",
    )
}
