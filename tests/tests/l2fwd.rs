//! End-to-end tests of `l2fwd`, the two-port forwarder whose threads each own one port's
//! receive queue and the other port's transmit queue ([`tenge::Port::take_queues`]), in a
//! guest booted by the test bed. Four NICs: pktgen and rx-check on an e1000e (A) share QEMU
//! hub 0 with l2fwd's port 0 (an e1000e); l2fwd's port 1 (virtio-net) shares hub 1 with
//! another e1000e (B). Frames go A -> l2fwd -> B and B -> l2fwd -> A, and `rx-check` checks
//! each one byte for byte against pktgen's frame of its sequence number, exactly once (the
//! hubs may reorder under backpressure, see tests/tests/virtio.rs).
//!
//! They boot QEMU, so they are `#[ignore]`d in a plain `cargo test`; run them with
//! `--ignored` after `cargo build --release --bins`.

use std::time::Duration;

use tenge_testbed::{Backend, Guest, GuestConfig, Nic, NicModel};
use tenge_tests::{bin, read_pcap, run_ok, tail};

/// Frames per direction.
const COUNT: u64 = 3000;

/// A (e1000e) and l2fwd's port 0 (e1000e) on hub 0; l2fwd's port 1 (virtio-net) and B
/// (e1000e) on hub 1.
fn four_nics() -> Vec<Nic> {
    vec![
        Nic::new(NicModel::E1000e, Backend::Hub(0)),
        Nic::new(NicModel::E1000e, Backend::Hub(0)),
        Nic::new(NicModel::virtio(), Backend::Hub(1)),
        Nic::new(NicModel::E1000e, Backend::Hub(1)),
    ]
}

/// l2fwd's `pool_free=F/C,F/C` in `summary`: every buffer of both pools home.
fn assert_pools_home(summary: &str) {
    let home = summary
        .split("pool_free=")
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_default();
    assert!(
        !home.is_empty()
            && home
                .split(',')
                .all(|p| p.split_once('/').is_some_and(|(f, c)| f == c)),
        "pools not full: {summary}"
    );
}

/// rx-check on `rx` for `count` frames of `size` bytes (any order, each exactly once), then
/// pktgen on `tx` at 20,000 frames/s; the script fails if the check does.
fn one_way(rx: &str, tx: &str, count: u64, size: usize) -> String {
    let (e2e, pktgen) = (bin("tenge-e2e"), bin("pktgen"));
    format!(
        "{e2e} rx-check {rx} --any-order --count {count} --min-size {size} --max-size {size} --rx-ring 512 --batch 64 --timeout 60 > /tmp/rx.log 2>&1 &\n\
         rx=$!\n\
         for i in $(seq 100); do grep -q READY /tmp/rx.log && break; sleep 0.2; done\n\
         {pktgen} {tx} --count {count} --size {size} --rate 20000 --interval 0 --dst-mac ff:ff:ff:ff:ff:ff --src-mac 02:00:00:00:00:01\n\
         st=0; wait $rx || st=$?\n\
         echo \"== rx {rx} from {tx} size {size}\"\n\
         cat /tmp/rx.log\n\
         [ $st = 0 ] || fail=1\n"
    )
}

/// l2fwd (`--retry`: a full TX ring holds the burst back instead of dropping it) between
/// an e1000e and a virtio-net forwards every frame of a sequenced stream, byte-exact, both
/// ways (60-byte frames one way, 1514-byte the other), records the first
/// 100 in its pcap unchanged, and at the end every buffer of both ports' pools is home.
#[test]
#[ignore = "boots a QEMU guest"]
fn l2fwd_between_e1000e_and_virtio_forwards_every_frame_both_ways() {
    tenge_tests::retry_on_qemu_failure(|| {
        let nics = four_nics();
        let [a, fwd0, fwd1, b] = [0, 1, 2, 3].map(Nic::pci_addr);
        let l2fwd = bin("l2fwd");
        let script = format!(
            "fail=0\n\
             {l2fwd} {fwd0} {fwd1} --retry --pcap $TENGE_OUT/fwd.pcap --pcap-count 100 --interval 0 > /tmp/fwd.log 2>&1 &\n\
             fwd=$!\n\
             for i in $(seq 100); do grep -q READY /tmp/fwd.log && break; sleep 0.2; done\n\
             {}{}\
             kill -INT $fwd; st=0; wait $fwd || st=$?\n\
             cat /tmp/fwd.log\n\
             [ $st = 0 ] || fail=1\n\
             exit $fail\n",
            one_way(&b, &a, COUNT, 60),
            one_way(&a, &b, COUNT, 1514),
        );
        let cfg = GuestConfig {
            nics,
            timeout: Duration::from_secs(300),
            ..GuestConfig::default()
        };
        let outcome = Guest::run(&cfg, &script).expect("boot guest");
        let log = std::fs::read_to_string(&outcome.log).unwrap_or_default();
        assert!(
            outcome.success(),
            "{}: {}",
            outcome.describe(),
            tail(&log, 60)
        );
        // The guest's writable share: l2fwd's capture.
        let pcap = outcome.out_dir.join("fwd.pcap");
        for (to, size) in [(&b, 60), (&a, 1514)] {
            let section = log
                .split(&format!("== rx {to} from"))
                .nth(1)
                .unwrap_or_else(|| panic!("no rx-check on {to}: {}", tail(&log, 40)));
            assert!(
                section.contains(&format!(
                    "received={COUNT} duplicates=0 missing=0 corrupt=0 "
                )),
                "{size}-byte frames to {to}: {}",
                tail(section, 10)
            );
        }
        // Both directions forwarded everything (the guest kernel sends nothing on these NICs).
        let forwarded: u64 = log
            .lines()
            .find_map(|l| l.strip_prefix("l2fwd: done: "))
            .and_then(|l| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix("forwarded="))
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no l2fwd summary: {}", tail(&log, 30)));
        assert_eq!(forwarded, 2 * COUNT, "{}", tail(&log, 30));
        // Every buffer home once the ports are gone.
        assert_pools_home(
            log.lines()
                .find(|l| l.starts_with("l2fwd: done:"))
                .unwrap_or_default(),
        );
        // The capture holds the first 100 frames forwarded, as pktgen built them.
        let frames = read_pcap(&pcap).expect("l2fwd's pcap");
        assert_eq!(frames.len(), 100);
        let flow = tenge_examples::frame::Flow::default();
        for f in &frames {
            let seq = tenge_examples::frame::seq_of(f).expect("a pktgen frame");
            assert_eq!(
                f,
                &tenge_examples::frame::build(&flow, 60, seq),
                "frame {seq} changed on the way"
            );
        }
    })
}

/// Boots the four NICs of `nics`, runs l2fwd (`l2fwd_args`) between the middle two and a
/// pktgen on each outer one at once (`a_args`, `b_args`), stops l2fwd a second after
/// they are done; returns the log.
fn both_ways(nics: Vec<Nic>, l2fwd_args: &str, a_args: &str, b_args: &str) -> String {
    let [a, fwd0, fwd1, b] = [0, 1, 2, 3].map(Nic::pci_addr);
    let (l2fwd, pktgen) = (bin("l2fwd"), bin("pktgen"));
    let script = format!(
        "{l2fwd} {fwd0} {fwd1} {l2fwd_args} > /tmp/fwd.log 2>&1 &\n\
         fwd=$!\n\
         for i in $(seq 100); do grep -q READY /tmp/fwd.log && break; sleep 0.2; done\n\
         {pktgen} {a} {a_args} --interval 0 > /tmp/a.log 2>&1 &\n\
         pa=$!\n\
         {pktgen} {b} {b_args} --interval 0 > /tmp/b.log 2>&1\n\
         wait $pa; sleep 1\n\
         kill -INT $fwd; st=0; wait $fwd || st=$?\n\
         cat /tmp/a.log /tmp/b.log /tmp/fwd.log\n\
         exit $st\n"
    );
    let cfg = GuestConfig {
        nics,
        timeout: Duration::from_secs(300),
        ..GuestConfig::default()
    };
    run_ok(&cfg, &script)
}

/// The number after `name` (e.g. `rx=`) in `line`.
fn field(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(name)?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {line}"))
}

/// The first line of `log` that starts with `prefix`.
fn line_of<'a>(log: &'a str, prefix: &str) -> &'a str {
    log.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}`: {}", tail(log, 30)))
}

/// Each port's summary: it received plenty, every frame it received was forwarded or
/// dropped on a full TX ring (counted), and what the other port sent is what it forwarded.
/// Returns the two summary lines.
fn assert_accounted(log: &str) -> [&str; 2] {
    let ports = [0, 1].map(|p| line_of(log, &format!("l2fwd: port {p}: ")));
    for (p, line) in ports.iter().enumerate() {
        let (rx, fwd, drops) = (
            field(line, "rx="),
            field(line, "forwarded="),
            field(line, "tx_full_drops="),
        );
        assert!(rx > 10_000, "port {p} received only {rx}: {line}");
        assert_eq!(rx, fwd + drops, "port {p}: every frame accounted: {line}");
        let other = ports[1 - p];
        assert_eq!(
            field(other, "tx="),
            fwd,
            "port {} sent what port {p}'s direction forwarded: {other} / {line}",
            1 - p
        );
    }
    ports
}

/// Both ways at once for 10 s: each l2fwd thread receives on one port while the other
/// thread sends on it, so each port's RX queue and TX queue run on two threads at the same
/// time. pktgen on A and on B send 50,000 frames/s each, nobody drains A or B, so their
/// rings fill and l2fwd meets full TX rings too. Every frame a port received is accounted
/// for (forwarded, or dropped on a full TX ring, counted), what each port sent is exactly
/// what the other direction forwarded, and every buffer is home at the end.
#[test]
#[ignore = "boots a QEMU guest"]
fn l2fwd_queues_on_two_threads_account_for_every_frame() {
    let log = both_ways(
        four_nics(),
        "--interval 2",
        "--duration 10 --rate 50000",
        "--duration 10 --rate 50000 --size 1514",
    );
    assert_accounted(&log);
    assert_pools_home(line_of(&log, "l2fwd: done:"));
}

/// `--queues 2` between two e1000e ports: pktgen on A and B sends 64 flows each, RSS
/// spreads each port's input over both RX queues, and each of the four threads forwards
/// its queue into the same queue of the other port. Every frame a port received is
/// accounted for, both queues of each port carried traffic both ways, QEMU's counters
/// (GPTC of the forwarding port) agree with what l2fwd sent, and every buffer is home.
#[test]
#[ignore = "boots a QEMU guest"]
fn l2fwd_two_queue_pairs_a_thread_each_way() {
    let nics: Vec<Nic> = [0, 0, 1, 1]
        .map(|hub| Nic::new(NicModel::E1000e, Backend::Hub(hub)))
        .to_vec();
    let pktgen = "--duration 5 --rate 20000 --flows 64";
    let log = both_ways(nics, "--queues 2 --interval 2", pktgen, pktgen);
    let ports = assert_accounted(&log);
    for (p, port) in ports.iter().enumerate() {
        let other = ports[1 - p];
        assert_eq!(
            field(other, "hw_gptc="),
            field(port, "forwarded="),
            "QEMU's count: {other}"
        );
        let queues = line_of(&log, &format!("l2fwd: port {p} queues: "));
        for q in ["q0_rx=", "q1_rx=", "q0_tx=", "q1_tx="] {
            assert!(
                field(queues, q) > field(port, "rx=") / 10,
                "{q} idle: {queues}"
            );
        }
    }
    assert_pools_home(line_of(&log, "l2fwd: done:"));
}
