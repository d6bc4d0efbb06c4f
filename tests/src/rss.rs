//! The RSS tests' two halves outside the guest: the flows the host sends (TCP and UDP over
//! IPv4 and IPv6, and some non-IP frames, built with etherparse), and the check of what
//! `rxdump` printed against [`crate::toeplitz::expected`] for the port's own key, table
//! and hash types: each frame on the queue the table gives for the predicted hash, with
//! that hash and type in its metadata, and every frame sent received once.

use std::collections::HashMap;

use crate::toeplitz;

/// An EtherType nobody hashes (IEEE 802 local experimental 1).
const NON_IP_ETHERTYPE: [u8; 2] = [0x88, 0xb5];

/// `per_kind` flows of each of TCP/IPv4, UDP/IPv4, TCP/IPv6 and UDP/IPv6, and `per_kind / 8`
/// non-IP frames, to `dst_mac`: each frame its own flow (addresses and ports drawn from a
/// fixed pseudo-random sequence), its index in the payload's first 4 bytes.
pub fn flows(per_kind: usize, dst_mac: [u8; 6]) -> Vec<Vec<u8>> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let src_mac = [0x02, 0, 0, 0, 0x5e, 0x01];
    let mut out = Vec::new();
    for i in 0..per_kind * 4 {
        let r = next();
        let (sport, dport) = ((r >> 16) as u16 | 1024, (r >> 32) as u16 | 1);
        let payload = (out.len() as u32).to_be_bytes().repeat(5);
        let b = etherparse::PacketBuilder::ethernet2(src_mac, dst_mac);
        let mut f = Vec::new();
        let v4 = |x: u64| [10, (x >> 8) as u8, (x >> 16) as u8, (x >> 24) as u8 | 1];
        let v6 = |x: u64| {
            let mut a = [0u8; 16];
            a[..2].copy_from_slice(&[0xfd, 0x00]);
            a[8..].copy_from_slice(&x.to_be_bytes());
            a
        };
        let r2 = next();
        match i % 4 {
            0 => b
                .ipv4(v4(r), v4(r2), 64)
                .tcp(sport, dport, 1, 1024)
                .write(&mut f, &payload),
            1 => b
                .ipv4(v4(r), v4(r2), 64)
                .udp(sport, dport)
                .write(&mut f, &payload),
            2 => b
                .ipv6(v6(r), v6(r2), 64)
                .tcp(sport, dport, 1, 1024)
                .write(&mut f, &payload),
            _ => b
                .ipv6(v6(r), v6(r2), 64)
                .udp(sport, dport)
                .write(&mut f, &payload),
        }
        .expect("build a frame");
        out.push(f);
    }
    for _ in 0..per_kind / 8 {
        let mut f = [dst_mac, src_mac].concat();
        f.extend_from_slice(&NON_IP_ETHERTYPE);
        f.extend_from_slice(&(out.len() as u32).to_be_bytes());
        f.resize(60, 0);
        out.push(f);
    }
    out
}

/// What `rxdump` printed: the port's RSS configuration and each frame.
#[derive(Debug, Default)]
pub struct RxdumpReport {
    /// The Toeplitz key.
    pub key: Vec<u8>,
    /// The indirection table.
    pub table: Vec<usize>,
    /// The hash types, by name.
    pub types: Vec<String>,
    /// (queue, hash type name, hash, frame bytes) per `FRAME` line.
    pub frames: Vec<(usize, String, Option<u32>, Vec<u8>)>,
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
}

impl RxdumpReport {
    /// Reads `RSS ...` and `FRAME ...` lines out of a guest log (other lines are ignored).
    pub fn parse(log: &str) -> RxdumpReport {
        let mut r = RxdumpReport::default();
        for line in log.lines() {
            let field = |name: &str| {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(name).and_then(|w| w.strip_prefix('=')))
                    .unwrap_or("")
                    .to_string()
            };
            if line.contains("RSS key=") {
                r.key = unhex(&field("key"));
                r.table = field("table")
                    .split(',')
                    .filter_map(|q| q.parse().ok())
                    .collect();
                r.types = field("types").split('|').map(str::to_string).collect();
            } else if line.contains("FRAME queue=") {
                let hash = u32::from_str_radix(field("hash").trim_start_matches("0x"), 16).ok();
                r.frames.push((
                    field("queue").parse().unwrap_or(usize::MAX),
                    field("rss_type"),
                    hash,
                    unhex(&field("data")),
                ));
            }
        }
        r
    }

    /// Checks every frame against the prediction and that `sent` arrived whole, each once;
    /// returns the frames per queue. Panics with the first mismatch.
    pub fn check(&self, sent: &[Vec<u8>], what: &str) -> Vec<usize> {
        assert_eq!(self.key.len(), 40, "{what}: no RSS line with a key");
        assert!(!self.table.is_empty(), "{what}: no indirection table");
        let types: Vec<&str> = self.types.iter().map(String::as_str).collect();
        let queues = self.table.iter().max().map_or(1, |m| m + 1);
        let mut per_queue = vec![0usize; queues];
        let mut seen: HashMap<&[u8], usize> = HashMap::new();
        for (n, (queue, rss_type, hash, data)) in self.frames.iter().enumerate() {
            let (want_type, want_hash) = toeplitz::expected(data, &self.key, &types);
            assert_eq!(
                (rss_type.as_str(), *hash),
                (want_type, want_hash),
                "{what}: frame {n} (queue {queue}): reported type and hash against the \
                 prediction for {}",
                hex(data)
            );
            let want_queue = want_hash.map_or(0, |h| self.table[h as usize % self.table.len()]);
            assert_eq!(
                *queue, want_queue,
                "{what}: frame {n} hash {want_hash:x?} arrived on queue {queue}, the table \
                 says {want_queue}"
            );
            per_queue[*queue] += 1;
            *seen.entry(data.as_slice()).or_default() += 1;
        }
        for (i, f) in sent.iter().enumerate() {
            let shown = &f[..f.len().min(128)];
            let got = seen.get(shown).copied().unwrap_or(0);
            assert_eq!(got, 1, "{what}: frame {i} sent, received {got} times");
        }
        assert_eq!(
            self.frames.len(),
            sent.len(),
            "{what}: received frames nobody sent"
        );
        per_queue
    }
}

/// Waits for rxdump's READY, sends `frames` at about 2,000 a second, and waits for its
/// summary; returns what the run printed.
pub fn rxdump_exchange(
    guest: &mut tenge_testbed::RunningGuest,
    peer: &crate::DgramPeer,
    frames: &[Vec<u8>],
) -> String {
    let stop = |l: &str| l.contains("TENGE-GUEST-EXIT");
    let mut out = String::new();
    loop {
        let line = guest
            .wait_for_line(|l| l.contains("READY") || l.contains("RSS ") || stop(l))
            .expect("guest output");
        out.push_str(&line);
        out.push('\n');
        if line.contains("READY") {
            break;
        }
        assert!(!stop(&line), "rxdump never got READY: {line}");
    }
    for f in frames {
        peer.send(f).unwrap();
        std::thread::sleep(std::time::Duration::from_micros(500));
    }
    loop {
        let line = guest.next_line().expect("guest output");
        out.push_str(&line);
        out.push('\n');
        if line.contains("rxdump: done:") || line.contains("TENGE-GUEST-EXIT") {
            return out;
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
