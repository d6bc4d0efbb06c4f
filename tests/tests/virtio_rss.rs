//! End-to-end tests of virtio-net's multi-queue and receive-side scaling.
//!
//! RSS against QEMU's own virtio-net (`mq=on,rss=on,hash=on` on a multi-queue tap, QEMU's
//! software RSS in `hw/net/virtio-net.c`: `virtio_net_process_rss` picks the queue,
//! `virtio_set_packet_hash` writes the hash report): the host sends a few hundred flows
//! (TCP and UDP over IPv4 and IPv6, built with etherparse, and some non-IP frames) into the
//! tap from its namespace; the guest's `rxdump` receives on every queue pair, a thread
//! each, and prints each frame with its queue, hash and type. Every frame must be on the
//! queue that an independent Toeplitz implementation (`tenge_tests::toeplitz`, checked
//! against Microsoft's verification vectors) predicts from the key and table the port
//! reports, with that hash and type in its metadata (VIRTIO_NET_F_HASH_REPORT); every frame
//! sent must arrive once; non-IP frames go to queue 0 (the unclassified queue tenge sets).
//!
//! Multi-queue without RSS against DPDK's vhost device (QEMU hides RSS with vhost-user):
//! `VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET` raises the pairs, the host's testpmd sends on both
//! queues, and every frame it counted as sent reaches rxdump, on both queues.
//!
//! They boot QEMU and need root (network namespaces, hugepages), so they are `#[ignore]`d
//! in a plain `cargo test`; run them with `--ignored` after `cargo build --release --bins`.

use std::time::Duration;

use tenge_examples::parse_mac;
use tenge_testbed::{
    Backend, Guest, GuestConfig, HostMode, Nic, NicModel, RunningGuest, TapPeer, VhostHost,
    VhostHostConfig,
};
use tenge_tests::rss::{flows, RxdumpReport};
use tenge_tests::{bin, tail, wait_ok};

/// Flows of each kind (TCP/IPv4, UDP/IPv4, TCP/IPv6, UDP/IPv6) per run.
const PER_KIND: usize = 80;

/// Every hash type QEMU's virtio-net has but the IPv6 extension-header ones.
const ALL_TYPES: &str = "ipv4,tcp-ipv4,udp-ipv4,ipv6,tcp-ipv6,udp-ipv6";

fn virtio(packed: bool) -> NicModel {
    NicModel::VirtioNet {
        packed,
        event_idx: true,
        mrg_rxbuf: true,
    }
}

/// Waits for rxdump's READY, sends `frames` into the tap at about 1,000 a second (the TCG
/// guest drains slowly and a tap queue holds 1,000 frames), and waits for rxdump's
/// summary; returns what the run printed.
fn send_and_collect(guest: &mut RunningGuest, peer: &TapPeer, frames: &[Vec<u8>]) -> String {
    let stop = |l: &str| l.contains("TENGE-GUEST-EXIT");
    let mut out = String::new();
    loop {
        let line = guest.next_line().expect("guest output");
        out.push_str(&line);
        out.push('\n');
        if line.contains("READY") {
            break;
        }
        assert!(!stop(&line), "rxdump never got READY: {}", tail(&out, 20));
    }
    let socket = peer.frame_socket().expect("packet socket on the tap");
    for f in frames {
        socket.send(f).expect("send a frame into the tap");
        std::thread::sleep(Duration::from_millis(1));
    }
    loop {
        let line = guest.next_line().expect("guest output");
        out.push_str(&line);
        out.push('\n');
        if line.contains("rxdump: done:") || stop(&line) {
            return out;
        }
    }
}

/// `name=a/b` from rxdump's summary, as (a, b).
fn ratio(out: &str, name: &str) -> Option<(u64, u64)> {
    let v = out
        .split_whitespace()
        .filter_map(|w| w.strip_prefix(name)?.strip_prefix('='))
        .next_back()?;
    let (a, b) = v.split_once('/')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// `queues` queue pairs of a virtio-net on a tap of as many queues: rxdump with every hash
/// type (UDP by its ports), then with the port's default types (UDP by its addresses
/// only), each run checked frame by frame against the Toeplitz prediction; then the
/// refusals: more pairs than the device has, and several pairs or RSS on a second NIC
/// that offers neither MQ nor RSS.
fn rss_spreads_flows(queues: u16, packed: bool) {
    tenge_tests::retry_on_qemu_failure(|| {
        let peer = TapPeer::multi_queue(queues).expect("multi-queue tap (needs root, iproute2)");
        let rxdump = bin("rxdump");
        let pci = Nic::pci_addr(0);
        let sent = flows(PER_KIND, parse_mac(&Nic::mac(0)).unwrap());
        let n = sent.len();
        let run = |types: &str| {
            format!(
                "RUST_LOG=info {rxdump} {pci} --queues {queues} {types} --count {n} --duration 240 \
                 --interval 0 || exit 1\n"
            )
        };
        // Then what a device cannot do is refused, with the fix named: more pairs than it has;
        // on a second NIC without MQ or RSS (QEMU's defaults, on slirp), several pairs or RSS.
        let other = Nic::pci_addr(1);
        let errors = format!(
            "{rxdump} {pci} --queues {} --duration 1 && exit 1\n\
             {rxdump} {other} --queues 2 --duration 1 && exit 1\n\
             {rxdump} {other} --rss-types ipv4 --duration 1 && exit 1\n",
            queues + 1
        );
        let script = run(&format!("--rss-types {ALL_TYPES}")) + &run("") + &errors + "exit 0\n";
        let cfg = GuestConfig {
            timeout: Duration::from_secs(900),
            ..GuestConfig::with_nics(vec![
                Nic::new(virtio(packed), peer.backend()),
                Nic::new(virtio(packed), Backend::User),
            ])
        };
        let mut guest = Guest::boot(&cfg, &script).expect("boot guest");
        for (what, want_types) in [
            (
                "every hash type",
                "ipv4|tcp-ipv4|udp-ipv4|ipv6|tcp-ipv6|udp-ipv6",
            ),
            ("default hash types", "ipv4|tcp-ipv4|ipv6|tcp-ipv6"),
        ] {
            let what = format!("{queues} queue pairs, {what}");
            let out = send_and_collect(&mut guest, &peer, &sent);
            assert!(
                out.contains(&format!(
                    "{queues} of {queues} queue pair(s), header 20 bytes"
                )),
                "{what}: not opened with every pair and the hash header: {}",
                tail(&out, 30)
            );
            let report = RxdumpReport::parse(&out);
            assert_eq!(
                report.types.join("|"),
                want_types,
                "{what}: {}",
                tail(&out, 5)
            );
            assert_eq!(report.table.len(), 128, "{what}: QEMU's table maximum");
            let per_queue = report.check(&sent, &what);
            // Hundreds of random flows over a round-robin table: every queue gets a fair share.
            let fair = n / usize::from(queues) / 2;
            assert!(
                per_queue.len() == usize::from(queues) && per_queue.iter().all(|&q| q > fair),
                "{what}: frames per queue {per_queue:?} of {n}"
            );
            assert!(
                out.contains(&format!("frames={n} ")),
                "{what}: {}",
                tail(&out, 3)
            );
            let (free, all) = ratio(&out, "pool_free").expect("pool_free in the summary");
            assert_eq!(free, all, "{what}: every buffer home");
        }
        let log = wait_ok(guest);
        for refusal in [
            format!(
                "queues = {}: {pci} has at most {queues} queue pairs (max_virtqueue_pairs)",
                queues + 1
            ),
            format!("queues = 2: {other} offers one queue pair (neither VIRTIO_NET_F_MQ nor"),
            "does not offer VIRTIO_NET_F_RSS: start QEMU's virtio-net with rss=on".to_string(),
        ] {
            assert!(
                log.contains(&refusal),
                "not refused: {refusal}\n{}",
                tail(&log, 20)
            );
        }
    })
}

#[test]
#[ignore = "boots a QEMU guest"]
fn virtio_rss_two_queue_pairs_spread_flows_as_the_toeplitz_hash_predicts() {
    rss_spreads_flows(2, false);
}

#[test]
#[ignore = "boots a QEMU guest"]
fn virtio_packed_rss_four_queue_pairs_spread_flows_as_the_toeplitz_hash_predicts() {
    rss_spreads_flows(4, true);
}

/// A vhost-user virtio-net of two queue pairs (DPDK's vhost port with `queues=2`; QEMU
/// offers MQ and hides RSS, which it can only run in eBPF for a vhost backend): tenge opens
/// both pairs and raises them with `VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET`; the host's testpmd
/// (txonly, one stream per queue) sends 64-byte frames for a few seconds; rxdump receives
/// on both queues, and every frame the host counted as sent arrives (the host stops before
/// the guest closes the port).
#[test]
#[ignore = "boots a QEMU guest"]
fn vhost_two_queue_pairs_receive_on_both_queues_every_frame_accounted() {
    tenge_tests::retry_on_qemu_failure(vhost_two_queue_pairs_every_frame_accounted);
}

fn vhost_two_queue_pairs_every_frame_accounted() {
    let mut host = VhostHost::start(&VhostHostConfig {
        ports: vec![2],
        ..VhostHostConfig::new(HostMode::TxOnly { size: 64 })
    })
    .expect("start the host testpmd");
    let rxdump = bin("rxdump");
    let pci = Nic::pci_addr(0);
    let script = format!(
        "RUST_LOG=info {rxdump} {pci} --queues 2 --quiet --interval 0 > /tmp/rx.log 2>&1 &\n\
         pid=$!\n\
         n=0\n\
         until grep -q '^READY' /tmp/rx.log; do\n\
           if ! kill -0 $pid 2>/dev/null || [ $n -ge 600 ]; then cat /tmp/rx.log; exit 1; fi\n\
           n=$((n + 1)); sleep 0.1\n\
         done\n\
         cat /tmp/rx.log\n\
         echo GUEST_READY\n\
         n=0\n\
         until [ -e /out/done ] || [ $n -ge 1200 ]; do n=$((n + 1)); sleep 0.1; done\n\
         sleep 2\n\
         kill -INT $pid\n\
         st=0; wait $pid || st=$?\n\
         grep -v '^READY' /tmp/rx.log | tail -n 5\n\
         exit $st\n"
    );
    let cfg = GuestConfig {
        timeout: Duration::from_secs(300),
        ..GuestConfig::with_nics(vec![Nic::new(virtio(false), host.backend(0))])
    };
    let mut guest = Guest::boot(&cfg, &script).expect("boot guest");
    let mut startup = Vec::new();
    guest
        .wait_for_line(|l| {
            startup.push(l.to_owned());
            l == "GUEST_READY"
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", tail(&startup.join("\n"), 40)));
    let startup = startup.join("\n");
    assert!(
        startup.contains("2 of 2 queue pair(s), header 12 bytes")
            && startup.contains("VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET 2")
            && startup.contains("RSS off"),
        "opened with both pairs, VQ_PAIRS_SET, no RSS: {}",
        tail(&startup, 30)
    );
    host.start_forwarding().expect("start the host");
    std::thread::sleep(Duration::from_secs(4));
    let fwd = host.stop_forwarding().expect("stop the host");
    std::fs::write(guest.out_dir().join("done"), b"").expect("signal the guest");
    let log = wait_ok(guest);
    host.quit().expect("quit the host testpmd");
    let sent: u64 = fwd.iter().map(|f| f.tx_packets).sum();
    let summary = log
        .lines()
        .rfind(|l| l.contains("rxdump: done:"))
        .unwrap_or_else(|| panic!("no rxdump summary: {}", tail(&log, 20)));
    let field = |name: &str| {
        summary
            .split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name}= in {summary}"))
    };
    let (q0, q1, frames) = (field("q0"), field("q1"), field("frames"));
    assert!(sent > 0, "the host sent nothing: {fwd:?}");
    assert_eq!(
        frames, sent,
        "every frame the host sent (into the guest's rings) received: {summary}; host {fwd:?}"
    );
    assert!(q0 > 0 && q1 > 0, "frames on both queues: {summary}");
    assert_eq!(q0 + q1, frames, "{summary}");
    let (free, all) = ratio(summary, "pool_free").expect("pool_free in the summary");
    assert_eq!(free, all, "every buffer home: {summary}");
}
