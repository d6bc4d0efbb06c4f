//! Tallying sequence-numbered test frames that may arrive in any order: every number in
//! `0..count` must arrive exactly once and byte-exact; how far the order was disturbed is
//! measured, not judged. `tenge-e2e rx-check --any-order` keeps one of these, and the host
//! side reads its [`SeqTally::summary`] line back with [`parse_summary`].

use std::collections::BTreeMap;

/// What became of one received frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// First byte-exact copy of its sequence number.
    New,
    /// A byte-exact copy of a sequence number already received.
    Duplicate,
    /// Its bytes differ from what was sent, or its sequence number is not in `0..count`.
    Corrupt,
}

/// A bitmap of the sequence numbers `0..count` received so far, with counts of what went
/// wrong.
#[derive(Clone, Debug)]
pub struct SeqTally {
    count: u64,
    seen: Vec<u64>,
    /// Distinct sequence numbers received byte-exact.
    pub received: u64,
    /// Byte-exact frames whose sequence number had already been received.
    pub duplicates: u64,
    /// Frames whose bytes differ from what was sent, or whose sequence number lies beyond
    /// `count` (their sequence number, if in range, still counts as missing until a
    /// byte-exact copy arrives).
    pub corrupt: u64,
    /// Frames that arrived after one with a higher sequence number (reordering: reported,
    /// not an error).
    pub out_of_order: u64,
    /// The largest distance by which a frame trailed the highest sequence number already
    /// seen.
    pub max_late: u64,
    highest: Option<u64>,
}

impl SeqTally {
    /// A tally expecting sequence numbers `0..count`.
    pub fn new(count: u64) -> Self {
        SeqTally {
            count,
            seen: vec![0; count.div_ceil(64) as usize],
            received: 0,
            duplicates: 0,
            corrupt: 0,
            out_of_order: 0,
            max_late: 0,
            highest: None,
        }
    }

    /// Frames expected.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Records a frame carrying `seq`; `exact` says whether its bytes are what was sent.
    pub fn record(&mut self, seq: u64, exact: bool) -> Arrival {
        if seq >= self.count {
            self.corrupt += 1;
            return Arrival::Corrupt;
        }
        match self.highest {
            Some(h) if seq < h => {
                self.out_of_order += 1;
                self.max_late = self.max_late.max(h - seq);
            }
            _ => self.highest = Some(seq),
        }
        if !exact {
            self.corrupt += 1;
            return Arrival::Corrupt;
        }
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if self.seen[word] & bit != 0 {
            self.duplicates += 1;
            return Arrival::Duplicate;
        }
        self.seen[word] |= bit;
        self.received += 1;
        Arrival::New
    }

    /// Sequence numbers not (yet) received byte-exact.
    pub fn missing(&self) -> u64 {
        self.count - self.received
    }

    /// Whether every sequence number has been received byte-exact.
    pub fn complete(&self) -> bool {
        self.received == self.count
    }

    /// Every sequence number exactly once, byte-exact, nothing else (order aside).
    pub fn exact(&self) -> bool {
        self.complete() && self.duplicates == 0 && self.corrupt == 0
    }

    /// The first `n` sequence numbers not received, for diagnostics.
    pub fn first_missing(&self, n: usize) -> Vec<u64> {
        (0..self.count)
            .filter(|&s| self.seen[(s / 64) as usize] & (1 << (s % 64)) == 0)
            .take(n)
            .collect()
    }

    /// `received=R duplicates=D missing=M corrupt=C out_of_order=K max_late=L`, the
    /// figures [`parse_summary`] reads back.
    pub fn summary(&self) -> String {
        format!(
            "received={} duplicates={} missing={} corrupt={} out_of_order={} max_late={}",
            self.received,
            self.duplicates,
            self.missing(),
            self.corrupt,
            self.out_of_order,
            self.max_late
        )
    }
}

/// The `key=value` figures of a line (words without `=` are skipped), as numbers where they
/// parse.
pub fn parse_summary(line: &str) -> BTreeMap<String, u64> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_arrival_is_exact_with_nothing_out_of_order() {
        let mut t = SeqTally::new(130);
        for s in 0..130 {
            assert_eq!(t.record(s, true), Arrival::New);
        }
        assert!(t.exact());
        assert_eq!(
            t.summary(),
            "received=130 duplicates=0 missing=0 corrupt=0 out_of_order=0 max_late=0"
        );
    }

    #[test]
    fn reordering_is_measured_but_still_exact() {
        // A block of newer frames overtakes an older one, as QEMU's hub does.
        let mut t = SeqTally::new(10);
        for s in [0, 1, 5, 6, 7, 2, 3, 4, 8, 9] {
            assert_eq!(t.record(s, true), Arrival::New);
        }
        assert!(t.exact());
        assert_eq!((t.out_of_order, t.max_late), (3, 5));
    }

    #[test]
    fn duplicates_missing_and_corrupt_frames_are_counted_and_not_exact() {
        let mut t = SeqTally::new(100);
        for s in 0..100 {
            if s != 42 && s != 99 {
                t.record(s, true);
            }
        }
        assert_eq!(t.missing(), 2);
        assert_eq!(t.first_missing(5), vec![42, 99]);
        assert!(!t.exact());
        assert_eq!(t.record(7, true), Arrival::Duplicate);
        assert_eq!(t.record(42, false), Arrival::Corrupt, "bytes differ");
        assert_eq!(t.record(100, true), Arrival::Corrupt, "beyond count");
        assert_eq!(t.record(u64::MAX, true), Arrival::Corrupt);
        assert_eq!(t.missing(), 2, "a corrupt copy does not fill the gap");
        assert_eq!(t.record(42, true), Arrival::New);
        assert_eq!(t.record(99, true), Arrival::New);
        assert!(t.complete() && !t.exact());
        let f = parse_summary(&format!("rx-check: any-order {} other=3", t.summary()));
        assert_eq!(f["received"], 100);
        assert_eq!(f["duplicates"], 1);
        assert_eq!(f["missing"], 0);
        assert_eq!(f["corrupt"], 3);
        assert_eq!(f["other"], 3);
        assert!(!f.contains_key("any-order"));
    }

    #[test]
    fn nothing_received_is_all_missing() {
        let t = SeqTally::new(3000);
        assert_eq!(t.missing(), 3000);
        assert!(!t.exact());
        assert_eq!(SeqTally::new(0).summary().split(' ').count(), 6);
        assert!(SeqTally::new(0).exact());
    }
}
