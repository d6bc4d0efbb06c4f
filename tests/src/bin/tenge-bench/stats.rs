//! Rounds to figures: the median and spread of each side, the ratio and its range, and the
//! verdict, printed as one `BENCH` line per case.
//!
//! Under TCG a round can be off by a third, so one round says little: each case alternates
//! the sides over several rounds in one boot, and a ratio is called a win or a loss only when
//! the two sides' ranges do not overlap (every tenge round above every peer round, or
//! below); otherwise it is "within noise".

/// The median, smallest and largest of a side's rounds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Spread {
    /// `None` for no rounds. The median of an even count is the mean of the middle two.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
            n,
        })
    }
}

/// tenge's median over the peer's, the range the rounds allow (tenge's slowest over the
/// peer's fastest .. tenge's fastest over the peer's slowest) and the verdict.
pub fn compare(tenge: &Spread, peer: &Spread) -> (f64, f64, f64, &'static str) {
    let ratio = tenge.median / peer.median;
    let lo = tenge.min / peer.max;
    let hi = tenge.max / peer.min;
    let verdict = if lo > 1.0 {
        "tenge-faster"
    } else if hi < 1.0 {
        "peer-faster"
    } else {
        "within-noise"
    };
    (ratio, lo, hi, verdict)
}

/// `name_mpps=<median> name_range=<min>..<max>`.
pub fn side_fields(name: &str, s: &Spread) -> String {
    format!(
        "{name}_mpps={:.4} {name}_range={:.4}..{:.4}",
        s.median, s.min, s.max
    )
}

/// Prints the case's `BENCH` line (and a `BENCH-LEFT-OUT` line per round left out, with
/// why): both sides' medians and spreads, the ratio, its range and the verdict; `extra` is
/// appended (e.g. Gbit/s). Fails when a side has no round.
pub fn report(
    case: &str,
    tenge: &[f64],
    peer: &[f64],
    left_out: &[String],
    extra: &str,
) -> Result<(), String> {
    report_vs(case, tenge, peer, "dpdk-testpmd", left_out, extra)
}

/// As [`report`], with the peer named `peer_name` (`peer=<name>`): e.g. tenge itself with
/// one queue pair, against tenge with two.
pub fn report_vs(
    case: &str,
    tenge: &[f64],
    peer: &[f64],
    peer_name: &str,
    left_out: &[String],
    extra: &str,
) -> Result<(), String> {
    for why in left_out {
        println!("BENCH-LEFT-OUT case={case} {why}");
    }
    let (Some(t), Some(p)) = (Spread::of(tenge), Spread::of(peer)) else {
        return Err(format!(
            "no round produced rates on both sides ({} left out)",
            left_out.len()
        ));
    };
    let (ratio, lo, hi, verdict) = compare(&t, &p);
    println!(
        "BENCH case={case} {} peer={peer_name} {} ratio={ratio:.3} ratio_range={lo:.3}..{hi:.3} verdict={verdict} rounds={} left_out={}{extra}",
        side_fields("tenge", &t),
        side_fields("peer", &p),
        t.n.min(p.n),
        left_out.len(),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_range() {
        let s = Spread::of(&[3.0, 1.0, 2.0, f64::NAN]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(Spread::of(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert_eq!(Spread::of(&[]), None);
    }

    #[test]
    fn verdicts_need_ranges_that_do_not_overlap() {
        let s = |v: &[f64]| Spread::of(v).unwrap();
        let (r, lo, hi, v) = compare(&s(&[2.0, 2.2, 2.4]), &s(&[1.0, 1.1, 1.2]));
        assert!((r - 2.2 / 1.1).abs() < 1e-9 && lo > 1.0 && hi > lo);
        assert_eq!(v, "tenge-faster");
        assert_eq!(compare(&s(&[1.0, 1.3]), &s(&[1.2, 1.25])).3, "within-noise");
        assert_eq!(compare(&s(&[0.5, 0.6]), &s(&[1.0, 1.1])).3, "peer-faster");
    }
}
