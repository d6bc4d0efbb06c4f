//! End-to-end tests against QEMU's e1000e, in a guest booted by the test bed. Each test
//! checks against something tenge did not write: QEMU's pcap of the wire, frames injected
//! from the host, the kernel's own driver for the "not bound" case.
//!
//! They boot QEMU, so they are `#[ignore]`d in a plain `cargo test`; the project's test
//! command (`./tenge.sh test`) builds the guest binaries and runs them with `--ignored`.

use std::time::Duration;

use tenge_testbed::{Backend, Guest, GuestConfig, Nic, NicModel};
use tenge_tests::{
    bin, check_wire, inject_after_ready, nic, run_ok, scratch_dir, tail, wait_ok, DgramPeer,
    TEST_DST, TEST_SRC,
};

fn e1000e(backend: Backend) -> Nic {
    nic(NicModel::E1000e, backend)
}

fn config(nics: Vec<Nic>) -> GuestConfig {
    GuestConfig {
        nics,
        timeout: Duration::from_secs(300),
        ..GuestConfig::default()
    }
}

const SRC: &str = TEST_SRC;
const DST: &str = TEST_DST;

/// An e1000e wired to a host UDP peer (`-netdev dgram`), and that peer.
fn dgram_nic() -> (Nic, DgramPeer) {
    tenge_tests::dgram_nic(NicModel::E1000e)
}

#[test]
#[ignore = "boots a QEMU guest"]
fn tx_wire_holds_exactly_the_frames_sent_in_order() {
    let dir = scratch_dir("tx-wire");
    let (mut nic, peer) = dgram_nic();
    let pcap64 = dir.join("tx64.pcap");
    nic.dump = Some(pcap64.clone());
    let pktgen = bin("pktgen");
    // Two runs in one boot would share one pcap; the size sweep runs on a second NIC.
    let (mut nic2, peer2) = dgram_nic();
    let pcap1514 = dir.join("tx1514.pcap");
    nic2.dump = Some(pcap1514.clone());
    let a0 = Nic::pci_addr(0);
    let a1 = Nic::pci_addr(1);
    let script = format!(
        "set -e\n\
         {pktgen} {a0} --count 20000 --size 64 --src-mac {SRC} --dst-mac {DST} --interval 0\n\
         {pktgen} {a1} --count 2000 --size 1514 --src-mac {SRC} --dst-mac {DST} --interval 0 --batch 7 --tx-ring 64\n"
    );
    let log = run_ok(&config(vec![nic, nic2]), &script);
    assert!(log.contains("sent=20000"), "{}", tail(&log, 20));
    check_wire(&pcap64, 20000, 64);
    check_wire(&pcap1514, 2000, 1514);
    // The UDP peer saw the frames too (loopback may drop a few under load: not asserted
    // exactly, the pcap is the oracle).
    assert!(peer.received() > 0 && peer2.received() > 0);
}

/// A port dropped before the queue handles it gave out, then opened again in the same
/// process: the first open's device file stays open while its BAR mappings live (the
/// queues'), and its group leaves the VFIO container when the last goes, so the reopen
/// works and its frames reach the wire (QEMU's pcap), and nothing logs the group stuck in
/// the container (`VFIO_GROUP_UNSET_CONTAINER` answering EBUSY).
#[test]
#[ignore = "boots a QEMU guest"]
fn a_port_dropped_before_its_queues_opens_again_and_sends() {
    let dir = scratch_dir("drop-order");
    let (mut nic, _peer) = dgram_nic();
    let pcap = dir.join("wire.pcap");
    nic.dump = Some(pcap.clone());
    let script = format!(
        "{} drop-order {} --count 10\n",
        bin("tenge-e2e"),
        Nic::pci_addr(0)
    );
    let log = run_ok(&config(vec![nic]), &script);
    assert!(
        log.contains("drop-order: reopened, sent=10"),
        "{}",
        tail(&log, 20)
    );
    assert!(
        !log.contains("UNSET_CONTAINER"),
        "the group stuck in the container: {}",
        tail(&log, 20)
    );
    let frames = tenge_tests::read_pcap(&pcap).expect("read pcap");
    let want: Vec<Vec<u8>> = (0..10)
        .map(|i| tenge_examples::frame::build(&tenge_examples::frame::Flow::default(), 60, i))
        .collect();
    assert_eq!(frames, want, "the reopened port's frames on the wire");
}

/// TX chains of 1 to 8 segments, frames of 60 to 1514 bytes: each chain leaves as one
/// frame (a descriptor per segment, EOP on the last), byte for byte, on QEMU's pcap.
#[test]
#[ignore = "boots a QEMU guest"]
fn tx_chains_leave_as_whole_frames_byte_exact() {
    let dir = scratch_dir("tx-chains");
    let (mut nic, _peer) = dgram_nic();
    let pcap = dir.join("chains.pcap");
    nic.dump = Some(pcap.clone());
    run_ok(
        &config(vec![nic]),
        &tenge_tests::chain_script(&Nic::pci_addr(0)),
    );
    tenge_tests::check_chain_wire(&tenge_tests::read_pcap(&pcap).expect("QEMU's pcap"));
}

#[test]
#[ignore = "boots a QEMU guest"]
fn rx_from_host_arrives_in_order_byte_exact_through_a_small_ring() {
    tenge_tests::retry_on_qemu_failure(|| {
        let (nic, peer) = dgram_nic();
        let a0 = Nic::pci_addr(0);
        let e2e = bin("tenge-e2e");
        let count = 3000;
        // A 16-entry ring drained 64 at a time: the ring wraps ~190 times.
        let script = format!(
            "{e2e} rx-check {a0} --count {count} --min-size 60 --max-size 1514 --rx-ring 16 --batch 64 --timeout 120 --rx-checksum\n"
        );
        let mut guest = Guest::boot(&config(vec![nic]), &script).unwrap();
        inject_after_ready(&mut guest, &peer, count, 60, 1514, 2000);
        let log = wait_ok(guest);
        assert!(
            log.contains(&format!("received={count} in_order=true")),
            "{}",
            tail(&log, 20)
        );
    })
}

/// Frames over several RX buffers: with 256-byte buffers (RCTL.BSIZE, 82574 §10.2.5.1)
/// the 82574 writes a frame over as many descriptors as it takes, EOP on the last; the
/// engine hands each over as one chain, byte-exact, in order.
#[test]
#[ignore = "boots a QEMU guest"]
fn rx_frames_over_small_buffers_arrive_as_chains() {
    tenge_tests::retry_on_qemu_failure(|| {
        let (nic, peer) = dgram_nic();
        let a0 = Nic::pci_addr(0);
        let e2e = bin("tenge-e2e");
        let count = 3000;
        let script = format!(
            "{e2e} rx-check {a0} --count {count} --min-size 60 --max-size 1514 --rx-ring 64 --buf-size 256 --batch 64 --timeout 120\n"
        );
        let mut guest = Guest::boot(&config(vec![nic]), &script).unwrap();
        inject_after_ready(&mut guest, &peer, count, 60, 1514, 2000);
        let log = wait_ok(guest);
        assert!(
            log.contains(&format!("received={count} in_order=true")),
            "{}",
            tail(&log, 20)
        );
        // Sizes cycle 60..=1514: the 2,516 frames over 256 bytes are chains.
        assert!(log.contains(" chains=2516 "), "{}", tail(&log, 20));
    })
}

#[test]
#[ignore = "boots a QEMU guest"]
fn mempool_exhaustion_is_counted_and_receive_recovers() {
    tenge_tests::retry_on_qemu_failure(|| {
        let (nic, peer) = dgram_nic();
        let a0 = Nic::pci_addr(0);
        let e2e = bin("tenge-e2e");
        let script = format!("{e2e} mempool-exhaust {a0} --buffers 48 --timeout 120\n");
        let mut guest = Guest::boot(&config(vec![nic]), &script).unwrap();
        // Enough frames for both phases; the guest stops when it has recovered.
        inject_after_ready(&mut guest, &peer, 400, 60, 60, 1000);
        let log = wait_ok(guest);
        assert!(
            log.contains("mempool-exhaust: recovered"),
            "{}",
            tail(&log, 20)
        );
    })
}

#[test]
#[ignore = "boots a QEMU guest"]
fn two_nics_on_a_hub_tenge_to_tenge() {
    let a0 = Nic::pci_addr(0);
    let a1 = Nic::pci_addr(1);
    let e2e = bin("tenge-e2e");
    let pktgen = bin("pktgen");
    let count = 5000;
    // The receiver starts first (on vCPU 1) with a ring deep enough that it does not fill at
    // this paced rate while it keeps up. Once it fills, QEMU's hub reorders frames: when the
    // receiving NIC refills, qemu_flush_or_purge_queued_packets (net/net.c) first flushes
    // the hub's other ports (newer frames, delivered straight into the ring) and only then
    // the NIC's own incoming queue (older frames parked there when the ring was full). Seen
    // as "frame 123 arrived when 62 was expected" with a 32-entry ring, and with this
    // 512-entry one when a loaded host stalled the guest ("frame 2242 arrived when 1791 was
    // expected"). So every frame must arrive exactly once and byte-exact, and in order
    // whenever the receiver never found its ring run dry (`ring_dry`: QEMU counts no RNBC,
    // it holds frames back instead); small rings are covered by the host-injected RX test,
    // which has no hub.
    let script = format!(
        "taskset -c 1 {e2e} rx-check {a1} --any-order --count {count} --rx-ring 512 --batch 32 --timeout 120 > /tmp/rx.log 2>&1 &\n\
         rx=$!\n\
         for i in $(seq 50); do grep -q READY /tmp/rx.log && break; sleep 0.2; done\n\
         taskset -c 0 {pktgen} {a0} --count {count} --size 60 --rate 20000 --interval 0 --dst-mac ff:ff:ff:ff:ff:ff --src-mac 02:00:00:00:00:01\n\
         wait $rx; st=$?\n\
         cat /tmp/rx.log\n\
         exit $st\n"
    );
    let cfg = config(vec![e1000e(Backend::Hub(0)), e1000e(Backend::Hub(0))]);
    let log = run_ok(&cfg, &script);
    let line = log
        .lines()
        .find(|l| l.starts_with("rx-check: any-order"))
        .unwrap_or_else(|| panic!("no rx-check summary: {}", tail(&log, 20)));
    assert!(
        line.contains(&format!(
            "received={count} duplicates=0 missing=0 corrupt=0 "
        )),
        "{line}"
    );
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line}"))
    };
    if field("ring_dry=") == 0 {
        assert_eq!(field("out_of_order="), 0, "no backpressure, yet: {line}");
    } else {
        eprintln!("the receiver's ring filled (hub backpressure): order not asserted: {line}");
    }
}

#[test]
#[ignore = "boots a QEMU guest"]
fn bad_input_gives_errors_that_say_what_to_do() {
    let e2e = bin("tenge-e2e");
    let pktgen = bin("pktgen");
    let a0 = Nic::pci_addr(0);
    let a1 = Nic::pci_addr(1);
    // NIC 1 is left to the kernel's own e1000e driver; two more NICs sit behind a
    // conventional PCI bridge, which puts them in one IOMMU group: one goes to vfio-pci,
    // the other to the kernel driver, so that group is not viable.
    let mut unbound = e1000e(Backend::Hub(1));
    unbound.bind_vfio = false;
    let mut cfg = config(vec![e1000e(Backend::Hub(0)), unbound]);
    cfg.hugepages_2m = 0;
    cfg.extra_qemu_args = [
        "-device",
        "pci-bridge,id=tbr,chassis_nr=7,addr=0x18",
        "-netdev",
        "hubport,id=tb1,hubid=5",
        "-device",
        "e1000e,netdev=tb1,bus=tbr,addr=0x1",
        "-netdev",
        "hubport,id=tb2,hubid=5",
        "-device",
        "e1000e,netdev=tb2,bus=tbr,addr=0x2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let script = format!(
        "set -e\n\
         modprobe e1000e\n\
         b1=$(ls /sys/bus/pci/devices | grep -v '^0000:00:' | grep ':01.0$' | head -1)\n\
         b2=${{b1%01.0}}02.0\n\
         echo \"bridge devices: $b1 $b2\"\n\
         echo $b1 > /sys/bus/pci/devices/$b1/driver/unbind\n\
         echo vfio-pci > /sys/bus/pci/devices/$b1/driver_override\n\
         echo $b1 > /sys/bus/pci/drivers_probe\n\
         {e2e} expect-error 00:03 --kind bad-address --expect 'DDDD:BB:DD.F'\n\
         {e2e} expect-error 0000:00:1b.0 --kind no-device --expect 'lspci'\n\
         {e2e} expect-error {a1} --kind not-vfio --expect 'bound to e1000e' --expect 'driver_override' --expect 'drivers_probe'\n\
         {e2e} expect-error $b1 --kind group-not-viable --expect \"$b2 (bound to e1000e)\"\n\
         {e2e} expect-error {a0} --require-hugepages --kind no-hugepages --expect 'nr_hugepages'\n\
         {pktgen} {a0} --count 100 --interval 0 2>&1 | tee /tmp/p.log\n\
         grep -q 'using 4 KiB pages' /tmp/p.log\n\
         grep -q 'sent=100' /tmp/p.log\n"
    );
    let log = run_ok(&cfg, &script);
    assert_eq!(log.matches("E2E-PASS").count(), 5, "{}", tail(&log, 40));
}
