//! Process figures every example prints in its summary.

/// Peak resident set size of this process in bytes (VmHWM in /proc/self/status).
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Formats a byte count as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    #[test]
    fn peak_rss_is_read() {
        let v = super::peak_rss_bytes().unwrap();
        assert!(v > 100 * 1024, "{v}");
        assert_eq!(super::mib(3 << 20), "3.0 MiB");
    }
}
