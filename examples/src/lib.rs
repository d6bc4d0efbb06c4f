//! Shared bits of the example applications: the test frame format, the responder's ARP and
//! ICMP logic, MAC parsing and the summary every example prints.

pub mod frame;
pub mod net;
pub mod responder;

use std::time::Duration;

/// The body of every example's `main`: control-path logging at info level (RUST_LOG
/// overrides), then `run`, whose error is printed as `<name>: <error>` with exit status 1.
pub fn run_main<A>(
    name: &str,
    args: A,
    run: impl FnOnce(&A) -> Result<(), Box<dyn std::error::Error>>,
) -> std::process::ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(format!("'{s}' is not a MAC address like 52:54:00:12:34:56"));
    }
    let mut mac = [0u8; 6];
    for (m, p) in mac.iter_mut().zip(parts) {
        *m = u8::from_str_radix(p, 16)
            .map_err(|_| format!("'{s}' is not a MAC address like 52:54:00:12:34:56"))?;
    }
    Ok(mac)
}

/// The memory figures every example ends with: DMA memory mapped (peak) and peak RSS.
pub fn memory_summary() -> String {
    format!(
        "dma_mapped={} peak_rss={}",
        tenge::platform::sysinfo::mib(tenge::platform::dma::dma_bytes_peak() as u64),
        tenge::platform::sysinfo::peak_rss_bytes()
            .map(tenge::platform::sysinfo::mib)
            .unwrap_or_else(|| "unknown".into())
    )
}

/// Each queue pair's receive and send rate between two readings of a port's counters,
/// `dt` seconds apart: `q0 rx 0.512 tx 0.510, q1 rx ...` (Mpps).
pub fn queue_rates(before: &tenge::PortStats, now: &tenge::PortStats, dt: f64) -> String {
    let rate = |a: u64, b: u64| b.saturating_sub(a) as f64 / dt / 1e6;
    before
        .queues
        .iter()
        .zip(&now.queues)
        .enumerate()
        .map(|(i, (b, n))| {
            format!(
                "q{i} rx {:.3} tx {:.3}",
                rate(b.0.packets, n.0.packets),
                rate(b.1.packets, n.1.packets)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses a duration in seconds (fractions allowed).
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !(0.0..=1e7).contains(&v) {
        return Err(format!("{s} seconds is out of range"));
    }
    Ok(Duration::from_secs_f64(v))
}

/// A link change as the examples print it: `<name>: link <state> at <s>s (unix <secs>)`,
/// seconds since `start` and the wall-clock time, and the changes so far.
pub fn link_line(name: &str, e: &tenge::LinkEvent, start: std::time::Instant) -> String {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    format!(
        "{name}: link {} at {:.3}s (unix {unix:.3}, change {})",
        e.status,
        start.elapsed().as_secs_f64(),
        e.changes
    )
}

/// A coarse clock for poll loops: a thread that wakes every `period` and bumps a counter,
/// so the loop learns that time has passed from one relaxed load and reads the real clock
/// only then.
///
/// Why not `Instant::now()` every few polls: where the TSC is not trusted (the TCG test
/// guest marks it unstable and keeps time with the HPET) it is a system call and an MMIO
/// read that waits for QEMU's big lock, which QEMU's main loop holds for as long as it
/// delivers frames. A receive loop reading the clock every 64 polls spent 40 % of its
/// time there and stopped recycling buffers while QEMU filled the ring
/// (docs/benchmarks/README.md, issue 8 item 5).
pub struct Ticker {
    ticks: std::sync::Arc<std::sync::atomic::AtomicU64>,
    seen: u64,
}

impl Ticker {
    /// Starts the ticking thread (it ends when the `Ticker` is dropped, within `period`).
    pub fn new(period: Duration) -> std::io::Result<Self> {
        use std::sync::atomic::Ordering;
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let weak = std::sync::Arc::downgrade(&ticks);
        std::thread::Builder::new()
            .name("ticker".into())
            .spawn(move || loop {
                std::thread::sleep(period);
                match weak.upgrade() {
                    Some(t) => t.fetch_add(1, Ordering::Relaxed),
                    None => break,
                };
            })?;
        Ok(Ticker { ticks, seen: 0 })
    }

    /// Whether a period has ended since the last call that said so.
    #[inline]
    pub fn ticked(&mut self) -> bool {
        let now = self.ticks.load(std::sync::atomic::Ordering::Relaxed);
        if now == self.seen {
            return false;
        }
        self.seen = now;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticker_ticks_once_per_period_and_not_between() {
        let mut t = Ticker::new(Duration::from_millis(20)).unwrap();
        assert!(!t.ticked(), "no period has ended yet");
        let start = std::time::Instant::now();
        while !t.ticked() {
            assert!(start.elapsed() < Duration::from_secs(5), "never ticked");
            std::thread::yield_now();
        }
        assert!(start.elapsed() >= Duration::from_millis(10));
        assert!(!t.ticked(), "said once");
    }

    #[test]
    fn macs_parse_or_say_why_not() {
        assert_eq!(
            parse_mac("52:54:00:12:34:5a").unwrap(),
            [0x52, 0x54, 0, 0x12, 0x34, 0x5a]
        );
        assert!(parse_mac("52:54:00:12:34")
            .unwrap_err()
            .contains("not a MAC"));
        assert!(parse_mac("52:54:00:12:34:zz").is_err());
        assert_eq!(parse_secs("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_secs("-1").is_err());
    }
}
