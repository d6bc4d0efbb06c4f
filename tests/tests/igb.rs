//! End-to-end tests against QEMU's igb (the Intel 82576, `hw/net/igb_core.c`), in a guest
//! booted by the test bed: the same checks as e1000e's, each against something tenge did
//! not write (QEMU's pcap of the wire, frames the host injects, an independent Toeplitz).
//!
//! They boot QEMU, so they are `#[ignore]`d in a plain `cargo test`; run them with
//! `--ignored` after `cargo build --release --bins`.

use std::time::Duration;

use tenge_examples::parse_mac;
use tenge_testbed::{Backend, Guest, GuestConfig, Nic, NicModel};
use tenge_tests::rss::{flows, rxdump_exchange, RxdumpReport};
use tenge_tests::{
    bin, check_wire, dgram_nic, inject_after_ready, nic, run_ok, scratch_dir, tail, wait_ok,
    TEST_DST, TEST_SRC,
};

fn config(nics: Vec<Nic>, secs: u64) -> GuestConfig {
    GuestConfig {
        nics,
        timeout: Duration::from_secs(secs),
        ..GuestConfig::default()
    }
}

/// pktgen on the igb: QEMU's pcap holds exactly the frames sent, in order, byte for byte
/// (advanced data descriptors, PAYLEN in olinfo), at 64 and 1514 bytes; the second run
/// with a 64-entry ring and bursts of 7, so the ring wraps at odd places. One boot per
/// size: two igb functions in one guest collide (QEMU places each igb's SR-IOV VFs 16
/// slots above it, so igbs at slots 3 and 4 both claim slot 20).
#[test]
#[ignore = "boots a QEMU guest"]
fn igb_tx_wire_holds_exactly_the_frames_sent_in_order() {
    let dir = scratch_dir("igb-tx-wire");
    let pktgen = bin("pktgen");
    let a0 = Nic::pci_addr(0);
    for (count, size, extra) in [
        (5000u64, 64usize, ""),
        (1000, 1514, " --batch 7 --tx-ring 64"),
    ] {
        let (mut nic, _peer) = dgram_nic(NicModel::Igb);
        let pcap = dir.join(format!("tx{size}.pcap"));
        nic.dump = Some(pcap.clone());
        let script = format!(
            "{pktgen} {a0} --count {count} --size {size} --src-mac {TEST_SRC} --dst-mac {TEST_DST} --interval 0{extra}\n"
        );
        let log = run_ok(&config(vec![nic], 300), &script);
        assert!(log.contains(&format!("sent={count}")), "{}", tail(&log, 20));
        check_wire(&pcap, count, size);
    }
}

/// TX chains of 1 to 8 segments, frames of 60 to 1514 bytes: each leaves as one frame (a
/// data descriptor per segment, PAYLEN on the first, EOP on the last), byte for byte, on
/// QEMU's pcap.
#[test]
#[ignore = "boots a QEMU guest"]
fn igb_tx_chains_leave_as_whole_frames_byte_exact() {
    let dir = scratch_dir("igb-tx-chains");
    let (mut nic, _peer) = dgram_nic(NicModel::Igb);
    let pcap = dir.join("chains.pcap");
    nic.dump = Some(pcap.clone());
    run_ok(
        &config(vec![nic], 300),
        &tenge_tests::chain_script(&Nic::pci_addr(0)),
    );
    tenge_tests::check_chain_wire(&tenge_tests::read_pcap(&pcap).expect("QEMU's pcap"));
}

/// Frames from the host (60 to 1514 bytes) through a 16-entry ring drained 64 at a time,
/// with RX checksum offload on: every frame arrives once, in order, byte for byte.
#[test]
#[ignore = "boots a QEMU guest"]
fn igb_rx_from_host_arrives_in_order_byte_exact_through_a_small_ring() {
    tenge_tests::retry_on_qemu_failure(|| {
        let (nic, peer) = dgram_nic(NicModel::Igb);
        let a0 = Nic::pci_addr(0);
        let e2e = bin("tenge-e2e");
        let count = 2000;
        let script = format!(
            "{e2e} rx-check {a0} --count {count} --min-size 60 --max-size 1514 --rx-ring 16 --batch 64 --timeout 120 --rx-checksum\n"
        );
        let mut guest = Guest::boot(&config(vec![nic], 300), &script).unwrap();
        inject_after_ready(&mut guest, &peer, count, 60, 1514, 2000);
        let log = wait_ok(guest);
        assert!(
            log.contains(&format!("received={count} in_order=true")),
            "{}",
            tail(&log, 20)
        );
    })
}

/// Frames over several RX buffers: with 1 KiB buffers (SRRCTL.BSIZEPACKET 1, the
/// smallest the 82576 takes) QEMU writes a frame over as many descriptors as it takes, EOP
/// on the last; the engine hands each over as one chain, byte-exact, in order.
#[test]
#[ignore = "boots a QEMU guest"]
fn igb_rx_frames_over_1k_buffers_arrive_as_chains() {
    tenge_tests::retry_on_qemu_failure(|| {
        let (nic, peer) = dgram_nic(NicModel::Igb);
        let a0 = Nic::pci_addr(0);
        let e2e = bin("tenge-e2e");
        let count = 2000;
        let script = format!(
            "{e2e} rx-check {a0} --count {count} --min-size 60 --max-size 1514 --rx-ring 64 --buf-size 1024 --batch 64 --timeout 120\n"
        );
        let mut guest = Guest::boot(&config(vec![nic], 300), &script).unwrap();
        inject_after_ready(&mut guest, &peer, count, 60, 1514, 2000);
        let log = wait_ok(guest);
        assert!(
            log.contains(&format!("received={count} in_order=true")),
            "{}",
            tail(&log, 20)
        );
        // Sizes cycle 60..=1514 (1455 sizes): frames 965..1454 of the first cycle are over
        // 1024 bytes, the 545 of the second cycle are not.
        assert!(log.contains(" chains=490 "), "{}", tail(&log, 20));
    })
}

/// Flows of each kind (TCP/IPv4, UDP/IPv4, TCP/IPv6, UDP/IPv6) per run.
const PER_KIND: usize = 60;

/// RSS over 4 queue pairs: first the default hash types, then every IPv4/IPv6 type with
/// UDP (which the 82576 has and the 82574 has not); then over all 16 queue pairs. Each frame must be on the queue an
/// independent Toeplitz computation predicts from the key and table the port reports, with
/// that hash and type in its metadata, and arrive once; every queue gets a share.
#[test]
#[ignore = "boots a QEMU guest"]
fn igb_rss_over_4_and_16_queues_spreads_flows_as_the_toeplitz_hash_predicts_udp_included() {
    tenge_tests::retry_on_qemu_failure(|| {
        let (nic, peer) = dgram_nic(NicModel::Igb);
        let rxdump = bin("rxdump");
        let pci = Nic::pci_addr(0);
        let sent = flows(PER_KIND, parse_mac(&Nic::mac(0)).unwrap());
        let n = sent.len();
        let script = format!(
            "{rxdump} {pci} --queues 4 --count {n} --duration 120 --interval 0 || exit 1\n\
             {rxdump} {pci} --queues 4 --rss-types ipv4,tcp-ipv4,udp-ipv4,ipv6,tcp-ipv6,udp-ipv6 --count {n} --duration 120 --interval 0 || exit 1\n\
             {rxdump} {pci} --queues 16 --rss-types ipv4,tcp-ipv4,udp-ipv4,ipv6,tcp-ipv6,udp-ipv6 --count {n} --duration 120 --interval 0 || exit 1\n\
             exit 0\n"
        );
        let mut guest = Guest::boot(&config(vec![nic], 600), &script).unwrap();
        let udp = "ipv4|tcp-ipv4|udp-ipv4|ipv6|tcp-ipv6|udp-ipv6";
        for (what, want_types, queues) in [
            ("default hash types", "ipv4|tcp-ipv4|ipv6|tcp-ipv6", 4),
            ("with UDP", udp, 4),
            ("16 queues", udp, 16),
        ] {
            let out = rxdump_exchange(&mut guest, &peer, &sent);
            let report = RxdumpReport::parse(&out);
            assert_eq!(
                report.types.join("|"),
                want_types,
                "{what}: {}",
                tail(&out, 5)
            );
            let per_queue = report.check(&sent, what);
            assert_eq!(per_queue.len(), queues, "{what}: {per_queue:?}");
            assert!(
                per_queue.iter().all(|&q| q > n / (4 * queues)),
                "{what}: frames per queue {per_queue:?} of {n}"
            );
            assert!(
                out.contains(&format!("frames={n} ")),
                "{what}: {}",
                tail(&out, 3)
            );
            if want_types == udp {
                assert!(
                    report.frames.iter().any(|f| f.1 == "udp-ipv4")
                        && report.frames.iter().any(|f| f.1 == "udp-ipv6"),
                    "{what}: no UDP hash type reported"
                );
            }
        }
        wait_ok(guest);
    })
}

/// A pool of 48 buffers against a 64-entry ring: receive runs dry (`no_buf` counted), then
/// recovers once the application frees what it held.
#[test]
#[ignore = "boots a QEMU guest"]
fn igb_mempool_exhaustion_is_counted_and_receive_recovers() {
    tenge_tests::retry_on_qemu_failure(|| {
        let (nic, peer) = dgram_nic(NicModel::Igb);
        let a0 = Nic::pci_addr(0);
        let e2e = bin("tenge-e2e");
        let script = format!("{e2e} mempool-exhaust {a0} --buffers 48 --timeout 120\n");
        let mut guest = Guest::boot(&config(vec![nic], 300), &script).unwrap();
        inject_after_ready(&mut guest, &peer, 400, 60, 60, 1000);
        let log = wait_ok(guest);
        assert!(
            log.contains("mempool-exhaust: recovered"),
            "{}",
            tail(&log, 20)
        );
    })
}

/// tenge's igb, e1000e and virtio-net on one QEMU hub, each way in turn between the igb
/// and each of the others: 3,000 frames of 60 and of 1514 bytes from pktgen on one arrive
/// exactly once, byte-exact, at `rx-check` on the other (order not asserted: QEMU's hub
/// reorders under backpressure, docs/testing.md).
#[test]
#[ignore = "boots a QEMU guest"]
fn igb_e1000e_and_virtio_on_one_hub_every_frame_once_both_ways() {
    let (igb, e1000e, virtio) = (Nic::pci_addr(0), Nic::pci_addr(1), Nic::pci_addr(2));
    let e2e = bin("tenge-e2e");
    let pktgen = bin("pktgen");
    let count = 3000;
    // No taskset here: the one run with the receiver pinned to vCPU 1 (as the e1000e hub
    // test does) stalled the guest (RCU stall warnings, rx-check never returned, the guest
    // timed out); not investigated yet.
    let mut script = String::new();
    let pairs = [
        (&e1000e, &igb, 60),
        (&igb, &e1000e, 1514),
        (&virtio, &igb, 60),
        (&igb, &virtio, 1514),
    ];
    for (tx, rx, size) in pairs {
        script += &format!(
            "{e2e} rx-check {rx} --any-order --count {count} --min-size {size} --max-size {size} --rx-ring 512 --batch 32 --timeout 120 > /tmp/rx.log 2>&1 &\n\
             rx=$!\n\
             for i in $(seq 50); do grep -q READY /tmp/rx.log && break; sleep 0.2; done\n\
             {pktgen} {tx} --count {count} --size {size} --rate 20000 --interval 0 --dst-mac ff:ff:ff:ff:ff:ff --src-mac 02:00:00:00:00:01\n\
             wait $rx || {{ cat /tmp/rx.log; exit 1; }}\n\
             cat /tmp/rx.log\n"
        );
    }
    let cfg = config(
        vec![
            nic(NicModel::Igb, Backend::Hub(0)),
            nic(NicModel::E1000e, Backend::Hub(0)),
            nic(NicModel::virtio(), Backend::Hub(0)),
        ],
        300,
    );
    let log = run_ok(&cfg, &script);
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("rx-check: any-order"))
        .collect();
    assert_eq!(lines.len(), 4, "{}", tail(&log, 20));
    for line in lines {
        assert!(
            line.contains(&format!(
                "received={count} duplicates=0 missing=0 corrupt=0 "
            )),
            "{line}"
        );
    }
}
