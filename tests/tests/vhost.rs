//! End-to-end tests against an independent virtio-net device: QEMU's vhost-user backend
//! connected to a DPDK vhost port (`net_vhost`) polled by a host `dpdk-testpmd`
//! ([`tenge_testbed::VhostHost`]). The oracle is on the host: for TX, testpmd's io mode
//! forwards the vhost port to a `net_pcap` port, so every frame tenge sends lands in a pcap
//! file (parsed by etherparse, compared byte for byte); for RX, testpmd forwards one vhost
//! port to another, so pktgen's sequence frames reach `rx-check` through DPDK's enqueue
//! path. testpmd's own counters must agree with both.
//!
//! They boot QEMU, so they are `#[ignore]`d in a plain `cargo test`; run them with
//! `--ignored` after `cargo build --release --bins`.

use std::path::PathBuf;
use std::time::Duration;

use tenge_testbed::{
    FwdCounters, Guest, GuestConfig, HostMode, Nic, NicModel, VhostHost, VhostHostConfig,
};
use tenge_tests::{
    bin, check_frames, read_pcap, retry_on_qemu_failure, scratch_dir, tail, wait_ok, write_pcap,
};

const SRC: &str = tenge_tests::TEST_SRC;
const DST: &str = tenge_tests::TEST_DST;

fn virtio(packed: bool) -> NicModel {
    NicModel::VirtioNet {
        packed,
        event_idx: true,
        mrg_rxbuf: true,
    }
}

fn rings(packed: bool) -> &'static str {
    if packed {
        "packed rings"
    } else {
        "split rings"
    }
}

/// A host testpmd in io mode between one vhost port (port 0) and a pcap port (port 1):
/// the guest's frames go to `<dir>/from-guest.pcap` (the pcap port's input is an empty
/// file). Forwarding.
fn pcap_host(dir: &std::path::Path) -> (VhostHost, PathBuf) {
    let to_guest = dir.join("empty.pcap");
    let from_guest = dir.join("from-guest.pcap");
    write_pcap(&to_guest, &[]).expect("write pcap");
    let host = forwarding_host(&VhostHostConfig {
        pcap: Some((to_guest, from_guest.clone())),
        ..VhostHostConfig::new(HostMode::Io)
    });
    (host, from_guest)
}

/// The host testpmd of `config`, started and forwarding.
fn forwarding_host(config: &VhostHostConfig) -> VhostHost {
    let mut host = VhostHost::start(config).expect("start the host testpmd");
    host.start_forwarding().expect("start forwarding");
    host
}

fn config(nics: Vec<Nic>) -> GuestConfig {
    GuestConfig {
        // The longest of these runs takes under a minute: a hang costs 150 s, not 300.
        timeout: Duration::from_secs(150),
        ..GuestConfig::with_nics(nics)
    }
}

/// Stops the host's forwarding and quits it (flushing its pcap); returns the vhost port's
/// and the pcap port's forward statistics.
fn finish(mut host: VhostHost) -> (FwdCounters, FwdCounters) {
    let fwd = host.stop_forwarding().expect("stop the host");
    host.quit().expect("quit the host testpmd");
    assert_eq!(fwd.len(), 2, "two ports' statistics: {fwd:?}");
    (fwd[0], fwd[1])
}

/// The two runs of [`tx_wire`]: frames, size, and pktgen's options for the run.
const TX_RUNS: [(u64, usize, &str); 2] = [
    (100_000, 64, ""),
    (20_000, 1514, "--batch 7 --tx-ring 64 --rate 20000"),
];

/// pktgen sends 100,000 64-byte frames as fast as the port takes them, then (a second open
/// of the port) 20,000 1514-byte frames through a 64-entry ring 7 at a time, paced at
/// 20,000 a second: the host's pcap holds those frames, in order, byte for byte, and
/// testpmd counted as many.
///
/// On packed rings DPDK's vhost library drops a TX descriptor whose buffer misses its
/// IOTLB (`fill_vec_buf_packed` counts the descriptor before `map_one_desc` fails, and
/// `virtio_dev_tx_single_packed` then marks it used; the split ring's dequeue stops
/// without consuming it): the frames tenge posts while QEMU answers a miss never reach
/// the host. See docs/vhost-user.md. A miss comes with the first touch of each 2 MiB IOVA
/// page, at a run's start and, seen once, mid-run (27 and 10 frames near frame 81,322 of
/// 100,000; probably buffers from deeper in the pool's stack, on a page not yet used, when
/// the ring filled deeper). The answer waits for QEMU's main loop, 0.1 to 11 ms here, so the runs
/// are long enough that a late answer costs a part of a run, not all of it (a 12 ms run of
/// 2,000 full-size frames once lost every one): on packed rings at most a quarter of each
/// run may be lost, and every frame that arrives must be byte-exact and in order.
fn tx_wire(packed: bool) {
    let dir = scratch_dir(if packed {
        "vhost-packed-tx"
    } else {
        "vhost-split-tx"
    });
    let (host, from_guest) = pcap_host(&dir);
    let nic = Nic::new(virtio(packed), host.backend(0));
    let pktgen = bin("pktgen");
    let a0 = Nic::pci_addr(0);
    let mut script = String::from("set -e\n");
    for (count, size, options) in TX_RUNS {
        script.push_str(&format!(
            "{pktgen} {a0} --count {count} --size {size} --src-mac {SRC} --dst-mac {DST} --interval 0 {options}\n"
        ));
    }
    let log = wait_ok(Guest::boot(&config(vec![nic]), &script).expect("boot guest"));
    assert!(log.contains(rings(packed)), "{}", tail(&log, 30));
    for (count, _, _) in TX_RUNS {
        assert!(
            log.contains(&format!("sent={count} ")),
            "{}",
            tail(&log, 20)
        );
    }
    let (vhost, pcap) = finish(host);
    let frames = read_pcap(&from_guest).expect("read the host's pcap");
    assert_eq!(
        (vhost.rx_packets, pcap.tx_packets),
        (frames.len() as u64, frames.len() as u64),
        "host received / wrote to the pcap / pcap frames"
    );
    // The 64-byte run's frames come first, then the 1514-byte run's.
    let split_at = frames
        .iter()
        .position(|f| f.len() != 64)
        .unwrap_or(frames.len());
    for (part, (count, size, _)) in [&frames[..split_at], &frames[split_at..]]
        .into_iter()
        .zip(TX_RUNS)
    {
        if !packed {
            check_frames(part, count, size);
            continue;
        }
        let missing = check_in_order_subset(part, count, size);
        let lost = missing.len() as u64;
        eprintln!(
            "{size}-byte run: frames lost before the host: {}",
            ranges(&missing)
        );
        assert!(
            lost <= count / 4,
            "{size}-byte run: {lost} of {count} frames lost: {}",
            ranges(&missing)
        );
    }
}

/// Sequence numbers as ranges: `0-31, 40`.
fn ranges(seqs: &[u64]) -> String {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &s in seqs {
        match runs.last_mut() {
            Some(last) if last.1 + 1 == s => last.1 = s,
            _ => runs.push((s, s)),
        }
    }
    if runs.is_empty() {
        return "none".into();
    }
    let parts: Vec<String> = runs
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    parts.join(", ")
}

/// Every frame is pktgen's frame of its sequence number, byte for byte, and the sequence
/// numbers rise; returns the ones of `0..count` that are missing.
fn check_in_order_subset(frames: &[Vec<u8>], count: u64, size: usize) -> Vec<u64> {
    let flow = tenge_tests::test_flow();
    let mut next = 0;
    let mut missing = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let seq = tenge_examples::frame::seq_of(f)
            .unwrap_or_else(|| panic!("frame {i} ({size} bytes) has no sequence number"));
        assert!(
            seq >= next && seq < count,
            "frame {i} ({size} bytes): sequence {seq} after {next} (a duplicate or out of order)"
        );
        assert_eq!(
            f.as_slice(),
            tenge_examples::frame::build(&flow, size, seq).as_slice(),
            "frame {i}: sequence {seq} differs from what pktgen was asked to send"
        );
        missing.extend(next..seq);
        next = seq + 1;
    }
    missing.extend(next..count);
    missing
}

#[test]
#[ignore = "boots a QEMU guest"]
fn vhost_split_tx_reaches_the_host_byte_exact_in_order() {
    retry_on_qemu_failure(|| tx_wire(false));
}

#[test]
#[ignore = "boots a QEMU guest"]
fn vhost_packed_tx_reaches_the_host_byte_exact_in_order_but_for_iotlb_misses() {
    retry_on_qemu_failure(|| tx_wire(true));
}

/// Frames from the host: tenge's pktgen sends `count` sequence frames of `size` bytes on
/// vhost NIC 0 (split rings, whose TX loses nothing to IOTLB misses, see [`tx_wire`]); the
/// host testpmd forwards them (io mode, retrying while the receiver's ring
/// is full) from its vhost port 0 to vhost port 1, whose guest NIC runs `rx-check` on an
/// `rx_ring`-entry ring of `buf_size`-byte buffers. Every frame must arrive once, in order,
/// byte for byte what pktgen built, and the host must count `count` received and sent with
/// none dropped. (DPDK's `net_pcap` would be the natural source, but its non-replaying RX
/// reads nothing from a file in DPDK 22.11 here; see docs/vhost-user.md.) Returns the
/// guest log.
fn rx_from_host(packed: bool, size: usize, rx_ring: u32, buf_size: u32) -> String {
    let count = 3000;
    let mut host = forwarding_host(&VhostHostConfig {
        ports: vec![1, 1],
        // Up to 1 s per burst: a receiver that stops draining fails the run, not hangs it.
        retry: Some(100_000),
        ..VhostHostConfig::new(HostMode::Io)
    });
    let nics = vec![
        Nic::new(virtio(false), host.backend(0)),
        Nic::new(virtio(packed), host.backend(1)),
    ];
    let (e2e, pktgen) = (bin("tenge-e2e"), bin("pktgen"));
    let (tx, rx) = (Nic::pci_addr(0), Nic::pci_addr(1));
    let script = format!(
        "set -e\n\
         {e2e} rx-check {rx} --count {count} --min-size {size} --max-size {size} --rx-ring {rx_ring} --buf-size {buf_size} --batch 64 --timeout 120 > /tmp/rx.log 2>&1 &\n\
         checker=$!\n\
         for i in $(seq 100); do grep -q READY /tmp/rx.log && break; sleep 0.2; done\n\
         {pktgen} {tx} --count {count} --size {size} --src-mac 02:00:00:00:00:01 --interval 0\n\
         st=0; wait $checker || st=$?\n\
         cat /tmp/rx.log\n\
         exit $st\n"
    );
    let outcome = Guest::run(&config(nics), &script).expect("boot guest");
    let log = std::fs::read_to_string(&outcome.log).unwrap_or_default();
    // Before asking the host anything: a host that hung with the guest would not answer.
    assert!(
        outcome.success(),
        "{}: {}\n{}",
        outcome.describe(),
        tail(&log, 30),
        host.diagnosis()
    );
    let fwd = host.stop_forwarding().expect("stop the host");
    host.quit().expect("quit the host testpmd");
    assert!(
        log.contains(&format!(
            "0000:00:04.0: virtio-net {} link up, {}",
            Nic::mac(1),
            rings(packed)
        )),
        "{}",
        tail(&log, 30)
    );
    assert!(
        log.contains(&format!("received={count} in_order=true")),
        "{}",
        tail(&log, 20)
    );
    let count = count as u64;
    assert_eq!(
        (fwd[0].rx_packets, fwd[1].tx_packets, fwd[1].tx_dropped),
        (count, count, 0),
        "host received from NIC 0 / sent to NIC 1 / dropped: {fwd:?}"
    );
    log
}

#[test]
#[ignore = "boots a QEMU guest"]
fn vhost_split_rx_from_host_arrives_in_order_byte_exact_through_a_small_ring() {
    retry_on_qemu_failure(|| {
        for size in [60, 1514] {
            let log = rx_from_host(false, size, 16, 2048);
            assert!(log.contains(" chains=0 "), "{}", tail(&log, 20));
        }
    });
}

#[test]
#[ignore = "boots a QEMU guest"]
fn vhost_packed_rx_from_host_arrives_in_order_byte_exact_through_a_small_ring() {
    retry_on_qemu_failure(|| {
        for size in [60, 1514] {
            let log = rx_from_host(true, size, 16, 2048);
            assert!(log.contains(" chains=0 "), "{}", tail(&log, 20));
        }
    });
}

/// DPDK's vhost spreads a frame over as many 256-byte buffers as it takes (MRG_RXBUF,
/// `num_buffers`): 1514-byte frames arrive as chains of six, byte-exact, in order.
fn mergeable(packed: bool) {
    let log = rx_from_host(packed, 1514, 64, 256);
    assert!(log.contains("MRG_RXBUF"), "{}", tail(&log, 30));
    assert!(log.contains(" chains=3000 "), "{}", tail(&log, 20));
}

#[test]
#[ignore = "boots a QEMU guest"]
fn vhost_split_mergeable_rx_reassembles_frames_over_small_buffers() {
    retry_on_qemu_failure(|| mergeable(false));
}

#[test]
#[ignore = "boots a QEMU guest"]
fn vhost_packed_mergeable_rx_reassembles_frames_over_small_buffers() {
    retry_on_qemu_failure(|| mergeable(true));
}

/// Two vhost-user NICs of two queue pairs each in one guest (one host testpmd, a vhost port
/// each): both devices offer MQ (QEMU `mq=on`, from the host port's queue count), tenge
/// opens each on its first pair, and the host counts every frame pktgen sent on the split
/// one (the packed one within its IOTLB-miss loss, see `tx_wire`).
#[test]
#[ignore = "boots a QEMU guest"]
fn two_vhost_nics_of_two_queue_pairs_in_one_guest() {
    retry_on_qemu_failure(two_vhost_nics_of_two_queue_pairs);
}

fn two_vhost_nics_of_two_queue_pairs() {
    let count: u64 = 100_000;
    let mut host = forwarding_host(&VhostHostConfig {
        ports: vec![2, 2],
        ..VhostHostConfig::new(HostMode::RxOnly)
    });
    let nics = vec![
        Nic::new(virtio(false), host.backend(0)),
        Nic::new(virtio(true), host.backend(1)),
    ];
    let pktgen = bin("pktgen");
    let script = format!(
        "set -e\n{pktgen} {} --count {count} --size 64 --interval 0\n{pktgen} {} --count {count} --size 64 --interval 0\n",
        Nic::pci_addr(0),
        Nic::pci_addr(1)
    );
    let log = wait_ok(Guest::boot(&config(nics), &script).expect("boot guest"));
    let fwd = host.stop_forwarding().expect("stop the host");
    host.quit().expect("quit the host testpmd");
    let offers_mq = log
        .lines()
        .filter(|l| l.contains("virtio-net offers") && l.contains("|MQ|"))
        .count();
    assert_eq!(offers_mq, 2, "both devices offer MQ: {}", tail(&log, 30));
    assert_eq!(
        log.matches(&format!("sent={count} ")).count(),
        2,
        "{}",
        tail(&log, 20)
    );
    assert_eq!(fwd[0].rx_packets, count, "split NIC: host received {fwd:?}");
    assert!(
        fwd[1].rx_packets <= count && fwd[1].rx_packets >= count - count / 50,
        "packed NIC: host received {fwd:?}"
    );
}

/// Frames per destination in the receive filter test.
const PER_DST: u64 = 50;
/// The end marker's sequence number in the receive filter test.
const END_SEQ: u64 = 1_000_000;
/// A unicast MAC that is not the receiver's (locally administered).
const OTHER: &str = "02:00:00:5e:00:42";
/// A multicast group (IPv4 all-hosts).
const GROUP: &str = "01:00:5e:00:00:01";

/// The receive filter on DPDK's vhost device, which has none of its own: QEMU answers the
/// control queue's commands (it handles that queue itself for a vhost-user backend), but
/// frames go from DPDK straight into the guest's rings. pktgen on a split-ring NIC sends
/// [`PER_DST`] frames to each of the receiver's MAC, broadcast, [`GROUP`] and [`OTHER`],
/// then an end marker; the host forwards them to the receiver (split or packed), where
/// rx-sink counts them by destination. Each phase is a fresh open of the receiver. With
/// promiscuous mode off, the frames that reach the receiver and are not its own are what
/// the device did not filter: tenge's software filter (driver/src/port/soft_filter.rs) drops
/// them and counts them as `filtered`, so the count shows the device really did not filter.
fn rx_filter(packed: bool) {
    let mut host = forwarding_host(&VhostHostConfig {
        ports: vec![1, 1],
        retry: Some(100_000),
        ..VhostHostConfig::new(HostMode::Io)
    });
    let nics = vec![
        Nic::new(virtio(false), host.backend(0)),
        Nic::new(virtio(packed), host.backend(1)),
    ];
    let (e2e, pktgen) = (bin("tenge-e2e"), bin("pktgen"));
    let (tx, rx) = (Nic::pci_addr(0), Nic::pci_addr(1));
    let own = Nic::mac(1);
    let n = PER_DST;
    // rx-sink's flags, then the by-dst counts expected (own, broadcast, multicast, other)
    // and the frames the software filter must drop.
    let phases: [(String, [u64; 4], u64); 4] = [
        (String::new(), [n, n, n, n], 0),
        ("--no-promisc".into(), [n, n, 0, 0], 2 * n),
        (
            format!("--no-promisc --accept-mac {OTHER}"),
            [n, n, 0, n],
            n,
        ),
        ("--set-promisc off".into(), [n, n, 0, 0], 2 * n),
    ];
    let mut script = String::from("set -e\n");
    for (flags, _, _) in &phases {
        script += &format!(
            "{e2e} rx-sink {rx} --duration 120 --end-seq {END_SEQ} --by-dst {flags} > /tmp/rx.log 2>&1 &\n\
             sink=$!\n\
             for i in $(seq 100); do grep -q READY /tmp/rx.log && break; sleep 0.2; done\n"
        );
        for (k, dst) in [own.as_str(), "ff:ff:ff:ff:ff:ff", GROUP, OTHER]
            .iter()
            .enumerate()
        {
            script += &format!(
                "{pktgen} {tx} --count {n} --size 60 --dst-mac {dst} --first-seq {} --interval 0 > /dev/null\n",
                k as u64 * 10_000
            );
        }
        script += &format!(
            "{pktgen} {tx} --count 1 --size 60 --dst-mac {own} --first-seq {END_SEQ} --interval 0 > /dev/null\n\
             st=0; wait $sink || st=$?\n\
             cat /tmp/rx.log\n\
             [ $st = 0 ] || exit $st\n"
        );
    }
    let log = wait_ok(Guest::boot(&config(nics), &script).expect("boot guest"));
    host.stop_forwarding().expect("stop the host");
    host.quit().expect("quit the host testpmd");
    assert!(
        log.contains(&format!(
            "0000:00:04.0: virtio-net {own} link up, {}",
            rings(packed)
        )) && log.contains("control queue 8 descriptors with RX filtering"),
        "{}",
        tail(&log, 30)
    );
    let by_dst: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("rx-sink: by-dst:"))
        .collect();
    let done: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("rx-sink: done:"))
        .collect();
    assert_eq!(
        (by_dst.len(), done.len()),
        (phases.len(), phases.len()),
        "{}",
        tail(&log, 40)
    );
    for (((flags, [o, b, m, u], filtered), got), summary) in phases.iter().zip(by_dst).zip(done) {
        let want = format!("own={o} broadcast={b} multicast={m} other={u} end_seen=true");
        assert!(
            got.ends_with(&want),
            "rx-sink {flags}: expected `{want}`, got `{got}`"
        );
        assert!(
            summary.contains(&format!(" filtered={filtered} ")),
            "rx-sink {flags}: expected filtered={filtered}: {summary}"
        );
    }
}

#[test]
#[ignore = "boots a QEMU guest"]
fn vhost_split_rx_filter_holds_though_the_device_does_not_filter() {
    retry_on_qemu_failure(|| rx_filter(false));
}

#[test]
#[ignore = "boots a QEMU guest"]
fn vhost_packed_rx_filter_holds_though_the_device_does_not_filter() {
    retry_on_qemu_failure(|| rx_filter(true));
}

/// The test bed's diagnosis of a hang: the host testpmd is stopped (SIGSTOP) after the
/// guest booted, and the guest then opens the vhost NIC. QEMU sends the backend its
/// synchronous vhost-user requests from the vCPU that set DRIVER_OK and waits for a reply
/// that never comes, so the guest freezes. The run must time out with a thread report
/// that names QEMU's blocked thread and says [`tenge_testbed::QEMU_WEDGED`], which is
/// what lets `retry_on_qemu_failure` tell such a hang from one of tenge's.
#[test]
#[ignore = "boots a QEMU guest"]
fn a_backend_that_stops_answering_is_reported_as_qemu_wedged() {
    let mut host = forwarding_host(&VhostHostConfig::new(HostMode::RxOnly));
    let cfg = GuestConfig {
        timeout: Duration::from_secs(45),
        ..config(vec![Nic::new(virtio(false), host.backend(0))])
    };
    let pktgen = bin("pktgen");
    let script = format!(
        "echo FREEZE-BACKEND\nsleep 2\n{pktgen} {} --count 100 --interval 0\n",
        Nic::pci_addr(0)
    );
    let mut guest = Guest::boot(&cfg, &script).expect("boot guest");
    guest.wait_for("FREEZE-BACKEND").expect("guest output");
    host.set_frozen(true).expect("SIGSTOP testpmd");
    let outcome = guest.wait().expect("wait for guest");
    host.set_frozen(false).expect("SIGCONT testpmd");
    let _ = host.quit();
    assert!(outcome.timed_out, "{}", outcome.describe());
    let report = outcome.thread_report.clone().unwrap_or_default();
    assert!(outcome.qemu_wedged(), "{}\n{report}", outcome.describe());
    assert!(report.contains("CPU "), "QEMU's threads by name: {report}");
    let log = std::fs::read_to_string(&outcome.log).unwrap_or_default();
    assert!(
        log.contains(tenge_testbed::QEMU_WEDGED),
        "{}",
        tail(&log, 20)
    );
    assert!(!log.contains("pktgen: done"), "{}", tail(&log, 20));
}

/// pktgen's stall guard: the host testpmd is stopped while pktgen sends, so the device
/// stops draining the TX ring; pktgen must say `stalled` within its `--stall-timeout`
/// and exit 1 instead of waiting forever. (testpmd is continued once it has, so the
/// port's close, a vhost-user request, gets its answer.)
#[test]
#[ignore = "boots a QEMU guest"]
fn pktgen_gives_up_on_a_device_that_stops_taking_frames() {
    retry_on_qemu_failure(|| {
        let host = forwarding_host(&VhostHostConfig::new(HostMode::RxOnly));
        let cfg = config(vec![Nic::new(virtio(false), host.backend(0))]);
        let pktgen = bin("pktgen");
        let script = format!(
            "{pktgen} {} --duration 100 --stall-timeout 3 --interval 1\n",
            Nic::pci_addr(0)
        );
        let mut guest = Guest::boot(&cfg, &script).expect("boot guest");
        guest.wait_for("] tx ").expect("pktgen's first rate line");
        host.set_frozen(true).expect("SIGSTOP testpmd");
        let frozen = std::time::Instant::now();
        let line = guest.wait_for("pktgen: stalled");
        let waited = frozen.elapsed();
        host.set_frozen(false).expect("SIGCONT testpmd");
        let line = line.expect("pktgen says it stalled");
        let outcome = guest.wait().expect("wait for guest");
        let log = std::fs::read_to_string(&outcome.log).unwrap_or_default();
        assert_eq!(outcome.exit_code, Some(1), "{}", tail(&log, 20));
        assert!(line.contains("took no frame for 3.0 s"), "{line}");
        assert!(
            waited >= Duration::from_secs(3) && waited < Duration::from_secs(20),
            "stall reported {waited:?} after the freeze"
        );
        assert!(log.contains("stalled=true "), "{}", tail(&log, 20));
    });
}
