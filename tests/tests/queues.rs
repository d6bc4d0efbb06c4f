//! Every queue of a port on its own thread, receiving and sending at once: two e1000e ports
//! with both queue pairs each, on one QEMU hub, run `queue-threads` side by side for about
//! ten seconds. Each thread sends a sequenced stream from its TX queue to the other port
//! (source addresses varying, so the other port's RSS spreads it over both RX queues) and
//! receives on its RX queue. Every frame each queue sent must arrive exactly once, QEMU's
//! own counters (GPTC of one port, GPRC of the other) must agree with what tenge counted,
//! both RX queues of each port must carry traffic, and each pool must hold every buffer
//! at the end.
//!
//! They boot QEMU, so they are `#[ignore]`d in a plain `cargo test`; run them with
//! `--ignored` after `cargo build --release --bins`.

use std::time::Duration;

use tenge_testbed::{Backend, GuestConfig, Nic, NicModel};
use tenge_tests::{bin, nic, run_ok, tail};

/// Frames each queue sends, at [`RATE`] a second: ten seconds of traffic.
const FRAMES: u64 = 15_000;
const RATE: u64 = 1_500;

fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {name}= in {line}"))
}

fn numbers(line: &str, name: &str) -> Vec<u64> {
    field(line, name)
        .split(',')
        .map(|n| n.parse().unwrap())
        .collect()
}

#[test]
#[ignore = "boots a QEMU guest"]
fn e1000e_two_queue_pairs_each_on_its_own_thread() {
    let qt = bin("queue-threads");
    let (a0, a1) = (Nic::pci_addr(0), Nic::pci_addr(1));
    let (m0, m1) = (Nic::mac(0), Nic::mac(1));
    let common = format!("--queues 2 --frames {FRAMES} --rate {RATE} --sync /tmp/sync");
    let script = format!(
        "mkdir -p /tmp/sync\n\
         {qt} {a0} --tag 1 --peer-tag 2 --peer-mac {m1} {common} > /tmp/a.log 2>&1 &\n\
         a=$!\n\
         {qt} {a1} --tag 2 --peer-tag 1 --peer-mac {m0} {common} > /tmp/b.log 2>&1\n\
         sb=$?\n\
         wait $a; sa=$?\n\
         cat /tmp/a.log /tmp/b.log\n\
         [ $sa = 0 ] && [ $sb = 0 ]\n"
    );
    let cfg = GuestConfig {
        nics: vec![
            nic(NicModel::E1000e, Backend::Hub(0)),
            nic(NicModel::E1000e, Backend::Hub(0)),
        ],
        timeout: Duration::from_secs(300),
        ..GuestConfig::default()
    };
    let log = run_ok(&cfg, &script);
    let line = |tag: &str| {
        log.lines()
            .find(|l| l.starts_with(&format!("QUEUE-THREADS tag={tag} ")))
            .unwrap_or_else(|| panic!("no summary of port {tag}: {}", tail(&log, 30)))
            .to_string()
    };
    let (a, b) = (line("1"), line("2"));
    for (me, peer) in [(&a, &b), (&b, &a)] {
        assert_eq!(numbers(me, "sent"), vec![FRAMES, FRAMES], "{me}");
        // Every frame of each of the peer's queues, once.
        assert_eq!(numbers(me, "from_peer"), numbers(peer, "sent"), "{me}");
        for f in ["dups", "missing", "strangers"] {
            assert_eq!(field(me, f), "0", "{f}: {me}");
        }
        let received = numbers(me, "received");
        assert!(
            received.iter().all(|&r| r > FRAMES / 4),
            "RSS left a queue idle: received {received:?}: {me}"
        );
        // QEMU's counters: what the peer's device sent is what this one took in.
        assert_eq!(
            field(me, "hw_gprc"),
            field(peer, "hw_gptc"),
            "{me} / {peer}"
        );
        assert_eq!(
            field(me, "hw_gprc").parse::<u64>().unwrap(),
            received.iter().sum::<u64>(),
            "{me}"
        );
        let pool = field(me, "pool_free");
        let (free, cap) = pool.split_once('/').unwrap();
        assert_eq!(free, cap, "buffers missing from the pool: {me}");
    }
}
